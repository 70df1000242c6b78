//! [`CentralClient`]: HTTPS to central with the pinned root, optionally with
//! the participant's certificate (mutual TLS), and the request plumbing the
//! endpoint modules share.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::cache::{CacheSettings, CertificateCache};
use super::error::{CentralError, Problem};
use crate::pki::{self, ParticipantKey, PkiError, Role, RootCertificate, TlsIdentity};

/// Largest answer read from central (a route answer of 1000 routes is far
/// smaller); anything longer is a bad answer, not a reason to run out of memory.
pub const MAX_ANSWER_BYTES: usize = 32 << 20;

/// How long to wait for central.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connection and TLS handshake.
    pub connect: Duration,
    /// A whole request and its answer.
    pub request: Duration,
    /// A rate-deck upload and its answer (central validates every line
    /// before answering; a million-line deck takes a while).
    pub upload: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
            upload: Duration::from_secs(300),
        }
    }
}

/// Builds a [`CentralClient`]; see [`CentralClient::builder`].
#[derive(Debug)]
pub struct ClientBuilder {
    base_url: String,
    root_pem: String,
    identity: Option<(String, ParticipantKey)>,
    timeouts: Timeouts,
    cache: CacheSettings,
}

impl ClientBuilder {
    /// Presents `cert_pem` (issued by central for `key`) in the TLS
    /// handshake: needed to publish rates and submit tickets.
    pub fn identity(mut self, cert_pem: &str, key: &ParticipantKey) -> Self {
        self.identity = Some((cert_pem.to_owned(), key.clone()));
        self
    }

    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Settings of the certificate cache ([`CentralClient::certificate_cache`]).
    pub fn cache(mut self, settings: CacheSettings) -> Self {
        self.cache = settings;
        self
    }

    /// Checks the URL, the root and the identity (the certificate must be
    /// issued by the root, valid now, and for `key`), and builds the client.
    /// Nothing is sent yet.
    pub fn build(self) -> Result<CentralClient, CentralError> {
        let base = parse_base_url(&self.base_url)?;
        let root = RootCertificate::from_pem(&self.root_pem)?;
        let (identity, role) = match &self.identity {
            None => (None, None),
            Some((cert_pem, key)) => {
                let certified = root.verify_pem(cert_pem, Utc::now())?;
                if certified.key_id != key.key_id() {
                    return Err(PkiError::Rejected(format!(
                        "the certificate is for key {}, not for this key {}",
                        certified.key_id,
                        key.key_id()
                    ))
                    .into());
                }
                let chain = vec![pki::cert::cert_der_from_pem(cert_pem)?];
                (Some(TlsIdentity::new(chain, key)?), Some(certified.role))
            }
        };
        let mut tls = pki::client_config(&self.root_pem, identity.as_ref())?;
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.timeouts.connect)
            .timeout(self.timeouts.request)
            .user_agent(concat!("provider-sdk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        Ok(CentralClient {
            http,
            base,
            role,
            timeouts: self.timeouts,
            cache: Arc::new(CertificateCache::new(self.cache)),
        })
    }
}

/// The base URL without a trailing slash: `https://host:port[/prefix]`.
fn parse_base_url(raw: &str) -> Result<String, CentralError> {
    let invalid = |detail: &str| CentralError::InvalidUrl {
        url: raw.to_owned(),
        detail: detail.to_owned(),
    };
    let url = reqwest::Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
    if url.scheme() != "https" {
        return Err(invalid("central is reached over https:// only"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(invalid("a base URL has no query, fragment or user"));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// A client of central's API. Cheap to clone (clones share connections and
/// the certificate cache).
#[derive(Debug, Clone)]
pub struct CentralClient {
    http: reqwest::Client,
    base: String,
    role: Option<Role>,
    timeouts: Timeouts,
    cache: Arc<CertificateCache>,
}

impl CentralClient {
    /// A builder for `base_url` (`https://central.example:8443`) trusting
    /// only `root_pem`, central's root certificate obtained out of band.
    pub fn builder(base_url: &str, root_pem: &str) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.to_owned(),
            root_pem: root_pem.to_owned(),
            identity: None,
            timeouts: Timeouts::default(),
            cache: CacheSettings::default(),
        }
    }

    /// A client without a certificate (route queries, certificate fetches,
    /// health), with default timeouts.
    pub fn anonymous(base_url: &str, root_pem: &str) -> Result<CentralClient, CentralError> {
        Self::builder(base_url, root_pem).build()
    }

    /// Central's base URL as configured (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The role of this client's certificate; `None` when anonymous.
    pub fn role(&self) -> Option<Role> {
        self.role
    }

    /// The provider id of this client's certificate, when it is a provider's.
    pub fn provider_id(&self) -> Option<u64> {
        match self.role {
            Some(Role::Provider(id)) => Some(id),
            _ => None,
        }
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The certificate cache that [`prefetch`](Self::prefetch) fills; give
    /// it to [`TicketVerifier::new`](crate::ticket::TicketVerifier::new).
    pub fn certificate_cache(&self) -> Arc<CertificateCache> {
        self.cache.clone()
    }

    /// The provider id, or a clear error for an anonymous or operator client.
    pub(crate) fn require_provider(&self, what: &str) -> Result<u64, CentralError> {
        self.provider_id().ok_or_else(|| {
            CentralError::Credential(format!(
                "{what} needs a provider's client certificate; this client has {}",
                match self.role {
                    None => "none".to_owned(),
                    Some(r) => format!("one for {r}"),
                }
            ))
        })
    }

    /// `GET /health`. A degraded central (database unreachable, 503) is an
    /// answer too: see [`Health::status`].
    pub async fn health(&self) -> Result<Health, CentralError> {
        let path = "/health";
        let answer = self
            .send(Method::GET, path, self.timeouts.request, |r| r)
            .await?;
        if answer.status == StatusCode::SERVICE_UNAVAILABLE {
            // Central sends the same document with status "degraded".
            if let Ok(h) = serde_json::from_slice::<Health>(&answer.body) {
                return Ok(h);
            }
        }
        answer.json(&[StatusCode::OK])
    }

    /// Sends one request and reads the whole answer (at most
    /// [`MAX_ANSWER_BYTES`]).
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        timeout: Duration,
        build: impl FnOnce(RequestBuilder) -> RequestBuilder,
    ) -> Result<Answer, CentralError> {
        let url = format!("{}{}", self.base, path);
        let request = build(self.http.request(method.clone(), &url).timeout(timeout));
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(&e, timeout))?;
        let status = response.status();
        let body = read_body(response).await.map_err(|e| match e {
            BodyError::Transport(e) => self.transport_error(&e, timeout),
            BodyError::TooLong => CentralError::BadAnswer {
                path: path.to_owned(),
                detail: format!("answer longer than {MAX_ANSWER_BYTES} bytes"),
            },
        })?;
        Ok(Answer {
            method: method_name(&method),
            path: path.to_owned(),
            status,
            body,
        })
    }

    fn transport_error(&self, e: &reqwest::Error, timeout: Duration) -> CentralError {
        let url = self.base.clone();
        if e.is_timeout() {
            let after = if e.is_connect() {
                self.timeouts.connect.min(timeout)
            } else {
                timeout
            };
            return CentralError::Timeout { url, after };
        }
        if let Some(detail) = tls_cause(e) {
            return CentralError::Tls { url, detail };
        }
        if e.is_builder() {
            return CentralError::InvalidRequest(error_chain(e));
        }
        CentralError::Unreachable {
            url,
            detail: error_chain(e),
        }
    }
}

/// A complete answer from central.
pub(crate) struct Answer {
    pub method: &'static str,
    pub path: String,
    pub status: StatusCode,
    pub body: Bytes,
}

impl Answer {
    /// The body as `T` when the status is one of `ok`; the problem as
    /// [`CentralError::Status`] for an error status; a bad answer otherwise.
    pub fn json<T: DeserializeOwned>(&self, ok: &[StatusCode]) -> Result<T, CentralError> {
        self.check(ok)?;
        serde_json::from_slice(&self.body).map_err(|e| self.bad(format!("unreadable JSON: {e}")))
    }

    /// `Ok` when the status is one of `ok`, else the error as in [`json`](Self::json).
    pub fn check(&self, ok: &[StatusCode]) -> Result<(), CentralError> {
        if ok.contains(&self.status) {
            return Ok(());
        }
        if self.status.is_client_error() || self.status.is_server_error() {
            return Err(self.problem());
        }
        Err(self.bad(format!("unexpected status {}", self.status)))
    }

    pub fn problem(&self) -> CentralError {
        CentralError::Status {
            method: self.method,
            path: self.path.clone(),
            problem: Box::new(Problem::from_answer(self.status.as_u16(), &self.body)),
        }
    }

    pub fn bad(&self, detail: String) -> CentralError {
        CentralError::BadAnswer {
            path: self.path.clone(),
            detail,
        }
    }
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "request",
    }
}

enum BodyError {
    Transport(reqwest::Error),
    TooLong,
}

async fn read_body(mut response: reqwest::Response) -> Result<Bytes, BodyError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
    {
        return Err(BodyError::TooLong);
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(BodyError::TooLong);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The rustls error somewhere in the cause chain. tokio-rustls wraps it in
/// an `io::Error`, whose `source()` skips the wrapped error, so the walk
/// goes through `get_ref` there.
fn tls_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        current = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            // hyper-rustls wraps tokio-rustls's io::Error in another one.
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// `e: cause: cause`, without repeating a cause already in its parent's text.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut current = e.source();
    while let Some(err) = current {
        let text = err.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        current = err.source();
    }
    out
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    /// `reachable` or `unreachable`.
    pub database: String,
    pub index: IndexHealth,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    /// Serving from memory, but the database is unreachable (no uploads).
    Degraded,
}

/// The live route index.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IndexHealth {
    pub entries: u64,
    pub providers: u64,
    /// Sum of the providers' rate versions in the index.
    pub rate_version: u64,
    pub generation: u64,
    pub built_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            parse_base_url("https://127.0.0.1:8443/").unwrap(),
            "https://127.0.0.1:8443"
        );
        assert_eq!(
            parse_base_url("https://central.example/api/").unwrap(),
            "https://central.example/api"
        );
        for bad in [
            "http://127.0.0.1:8443",
            "127.0.0.1:8443",
            "https://",
            "https://h/?x=1",
            "https://u:p@h/",
        ] {
            assert!(
                matches!(parse_base_url(bad), Err(CentralError::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }
}
