//! SMTP connections to one server, opened by us and kept between messages.
//!
//! lettre speaks the protocol (EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA); the
//! sockets are ours because lettre's own transport leaves Nagle's algorithm
//! on: the end of DATA (`CRLF.CRLF`, written apart from the message) then
//! waits for the server's delayed ACK of the message, about 40 ms per
//! statement on Linux. With `TCP_NODELAY` it goes out at once.

use super::config::{SmtpSettings, TlsMode};
use super::mail::MailError;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// A connection idle longer than this is checked with NOOP before reuse:
/// servers close idle sessions after a while.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(5);

enum Security {
    None,
    /// STARTTLS after the greeting (lettre upgrades our socket).
    StartTls(TlsParameters),
    /// TLS from the first byte (SMTPS).
    Implicit(tokio_rustls::TlsConnector, ServerName<'static>),
}

/// What an implicit-TLS session runs on: lettre takes any tokio stream that
/// can tell its peer.
struct TlsStream(tokio_rustls::client::TlsStream<TcpStream>);

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsStream")
    }
}

impl tokio::io::AsyncRead for TlsStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsStream {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

/// One server and the sessions open to it.
pub struct SmtpClient {
    host: String,
    port: u16,
    security: Security,
    hello: ClientId,
    credentials: Option<Credentials>,
    timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

impl SmtpClient {
    /// `max_idle`: sessions kept open between messages (the number sent
    /// at once).
    pub fn new(
        smtp: &SmtpSettings,
        password: Option<String>,
        timeout: Duration,
        max_idle: usize,
    ) -> Result<SmtpClient, MailError> {
        let security = match smtp.tls {
            TlsMode::None => Security::None,
            TlsMode::Starttls => Security::StartTls(lettre_tls(smtp)?),
            TlsMode::Implicit => {
                let name = ServerName::try_from(smtp.host.clone())
                    .map_err(|e| MailError::Settings(format!("host {:?}: {e}", smtp.host)))?;
                Security::Implicit(rustls_connector(smtp)?, name)
            }
        };
        let credentials =
            match (&smtp.username, password) {
                (Some(user), Some(p)) => Some(Credentials::new(user.clone(), p)),
                (Some(_), None) => return Err(MailError::Settings(
                    "username is set but no password (FORWARDER_SMTP_PASSWORD or password_file)"
                        .into(),
                )),
                (None, _) => None,
            };
        Ok(SmtpClient {
            host: smtp.host.clone(),
            port: smtp.port,
            security,
            hello: ClientId::default(),
            credentials,
            timeout,
            max_idle: max_idle.max(1),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends one message (its bytes as stored) to the envelope's recipients.
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<(), MailError> {
        let mut conn = match self.reuse().await {
            Some(c) => c,
            None => self.open().await?,
        };
        // lettre closes the session itself on any error (`has_broken`).
        conn.send(envelope, message)
            .await
            .map_err(|e| MailError::Send(describe(&e)))?;
        self.keep(conn);
        Ok(())
    }

    /// An idle session, checked if it has been idle a while.
    async fn reuse(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let (mut conn, since) = self.lock().pop()?;
            if conn.has_broken() {
                continue;
            }
            if since.elapsed() < CHECK_AFTER_IDLE || conn.test_connected().await {
                return Some(conn);
            }
        }
    }

    fn keep(&self, conn: AsyncSmtpConnection) {
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push((conn, Instant::now()));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(AsyncSmtpConnection, Instant)>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn open(&self) -> Result<AsyncSmtpConnection, MailError> {
        let addr = format!("{}:{}", self.host, self.port);
        let fail =
            |what: &str, e: &dyn std::fmt::Display| MailError::Send(format!("{what} {addr}: {e}"));
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect(addr.as_str()))
            .await
            .map_err(|_| fail("connecting to", &"timed out"))?
            .map_err(|e| fail("connecting to", &e))?;
        tcp.set_nodelay(true)
            .map_err(|e| fail("TCP_NODELAY on", &e))?;
        let stream: Box<dyn AsyncTokioStream> = match &self.security {
            Security::Implicit(tls, name) => {
                let s = tokio::time::timeout(self.timeout, tls.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| fail("TLS handshake with", &"timed out"))?
                    .map_err(|e| fail("TLS handshake with", &e))?;
                Box::new(TlsStream(s))
            }
            _ => Box::new(tcp),
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
            .await
            .map_err(|e| MailError::Send(describe(&e)))?;
        if let Security::StartTls(params) = &self.security {
            conn.starttls(params.clone(), &self.hello)
                .await
                .map_err(|e| MailError::Send(describe(&e)))?;
        }
        if let Some(c) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, c)
                .await
                .map_err(|e| MailError::Send(describe(&e)))?;
        }
        Ok(conn)
    }
}

/// lettre's errors, with the server's answer when there is one.
fn describe(e: &lettre::transport::smtp::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn read_roots(smtp: &SmtpSettings) -> Result<Option<Vec<u8>>, MailError> {
    smtp.tls_roots
        .as_ref()
        .map(|path| {
            std::fs::read(path)
                .map_err(|e| MailError::Settings(format!("tls_roots {}: {e}", path.display())))
        })
        .transpose()
}

/// STARTTLS parameters: the `tls_roots` file only, or the system's roots.
fn lettre_tls(smtp: &SmtpSettings) -> Result<TlsParameters, MailError> {
    let mut params = TlsParameters::builder(smtp.host.clone());
    if let Some(pem) = read_roots(smtp)? {
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| MailError::Settings(format!("tls_roots: {e}")))?;
        params = params
            .certificate_store(CertificateStore::None)
            .add_root_certificate(cert);
    }
    params
        .build_rustls()
        .map_err(|e| MailError::Settings(format!("TLS: {e}")))
}

/// Implicit TLS: the same roots as [`lettre_tls`].
fn rustls_connector(smtp: &SmtpSettings) -> Result<tokio_rustls::TlsConnector, MailError> {
    let mut roots = rustls::RootCertStore::empty();
    match read_roots(smtp)? {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| MailError::Settings(format!("tls_roots: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| MailError::Settings(format!("tls_roots: {e}")))?;
            }
            if roots.is_empty() {
                return Err(MailError::Settings("tls_roots: no certificate".into()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(MailError::Settings(
                    "no system root certificates found; set tls_roots".into(),
                ));
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| MailError::Settings(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}
