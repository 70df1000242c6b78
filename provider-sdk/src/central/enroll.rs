//! Enrolling with central: the participant's own Ed25519 key (created once,
//! PKCS#8 PEM, mode 0600), a CSR, `POST /v1/certificates` with the one-time
//! token the operator handed out, and the issued certificate stored next to
//! the key after checking it against the pinned root.

use std::fmt;
use std::path::{Path, PathBuf};

use chrono::Utc;
use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::certificates::RawCertificate;
use super::client::{CentralClient, ClientBuilder};
use super::durable::write_atomic;
use super::error::CentralError;
use crate::pki::{CertifiedKey, ParticipantKey, PkiError, Role, RootCertificate};

/// Where a daemon keeps its credential, as read from its config file:
///
/// ```toml
/// [central]
/// central_url = "https://central.example.net:8443"
/// root_certificate = "/etc/provider/central-root.crt"
/// key = "/var/lib/provider/provider.key"
/// certificate = "/var/lib/provider/provider.crt"
/// name = "carrier-a"
/// enrollment_token = "enr_..."   # only for the first start
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentConfig {
    /// Central's base URL.
    pub central_url: String,
    /// Central's root certificate (PEM), obtained out of band and pinned.
    pub root_certificate: PathBuf,
    /// The participant's private key; created on first enrollment.
    pub key: PathBuf,
    /// The certificate central issued; written on enrollment.
    pub certificate: PathBuf,
    /// Common name for the certificate request (the provider's name).
    pub name: String,
    /// The operator's one-time enrollment token; needed only until a
    /// certificate is stored. Secret: never printed.
    #[serde(default)]
    pub enrollment_token: Option<String>,
}

impl fmt::Debug for EnrollmentConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrollmentConfig")
            .field("central_url", &self.central_url)
            .field("root_certificate", &self.root_certificate)
            .field("key", &self.key)
            .field("certificate", &self.certificate)
            .field("name", &self.name)
            .field(
                "enrollment_token",
                &self.enrollment_token.as_ref().map(|_| "<secret>"),
            )
            .finish()
    }
}

/// A participant's credential, checked against the pinned root.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub key: ParticipantKey,
    /// The certificate (PEM) as stored.
    pub certificate_pem: String,
    /// What it certifies (key id, role, validity).
    pub certified: CertifiedKey,
    /// The pinned root (PEM).
    pub root_pem: String,
    /// `true` when this call enrolled; `false` when stored files were reused.
    pub newly_enrolled: bool,
}

impl Enrolled {
    /// The provider id of the certificate, when it is a provider's.
    pub fn provider_id(&self) -> Option<u64> {
        match self.certified.role {
            Role::Provider(id) => Some(id),
            _ => None,
        }
    }

    /// A client builder for `base_url` presenting this credential.
    pub fn client_builder(&self, base_url: &str) -> ClientBuilder {
        CentralClient::builder(base_url, &self.root_pem).identity(&self.certificate_pem, &self.key)
    }
}

/// Reads and checks a pinned root certificate file.
pub fn read_root(path: &Path) -> Result<String, CentralError> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| CentralError::io("cannot read central's root certificate", path, e))?;
    RootCertificate::from_pem(&pem)?;
    Ok(pem)
}

/// Loads the key at `path`, or creates it (mode 0600) when there is none.
pub fn load_or_create_key(path: &Path) -> Result<ParticipantKey, CentralError> {
    match ParticipantKey::load_pem(path) {
        Ok(key) => return Ok(key),
        Err(PkiError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| CentralError::io("cannot create key directory", dir, e))?;
    }
    let key = ParticipantKey::generate();
    match key.save_pem(path) {
        Ok(()) => {
            tracing::info!(path = %path.display(), key_id = %key.key_id(), "created participant key");
            Ok(key)
        }
        // Another process created it first: use that one.
        Err(PkiError::KeyFileExists(_)) => Ok(ParticipantKey::load_pem(path)?),
        Err(e) => Err(e.into()),
    }
}

/// Enrolls with central: loads the key at `key_path` (or creates it),
/// sends a CSR for `name` with the one-time `token`, checks the issued
/// certificate against `root_pem` (issued by the root, for this key, a
/// provider's) and writes it to `cert_path` (atomically; an older file is
/// replaced). A refused token is [`CentralError::Status`] 403.
pub async fn enroll(
    base_url: &str,
    root_pem: &str,
    token: &str,
    key_path: &Path,
    cert_path: &Path,
    name: &str,
) -> Result<Enrolled, CentralError> {
    let root = RootCertificate::from_pem(root_pem)?;
    let key = load_or_create_key(key_path)?;
    let csr = key.csr_pem(name)?;
    let client = CentralClient::anonymous(base_url, root_pem)?;
    let body = serde_json::to_vec(&serde_json::json!({
        "csr": csr,
        "enrollment_token": token,
    }))
    .map_err(|e| CentralError::InvalidRequest(e.to_string()))?;
    let answer = client
        .send(
            Method::POST,
            "/v1/certificates",
            client.timeouts().request,
            |r| r.header(CONTENT_TYPE, "application/json").body(body),
        )
        .await?;
    let raw: RawCertificate = answer.json(&[StatusCode::CREATED])?;
    let info = raw.into_info().map_err(|e| answer.bad(e))?;
    let certified = root
        .verify_pem(&info.pem, Utc::now())
        .map_err(|e| answer.bad(format!("issued certificate does not verify: {e}")))?;
    if certified.key_id != key.key_id() {
        return Err(answer.bad(format!(
            "issued certificate is for key {}, not ours ({})",
            certified.key_id,
            key.key_id()
        )));
    }
    if !matches!(certified.role, Role::Provider(_)) {
        return Err(answer.bad(format!(
            "issued certificate is for {}, not a provider",
            certified.role
        )));
    }
    write_atomic(cert_path, info.pem.as_bytes(), Some(0o644))
        .map_err(|e| CentralError::io("cannot write certificate", cert_path, e))?;
    tracing::info!(
        key_id = %certified.key_id,
        role = %certified.role,
        not_after = %certified.not_after,
        path = %cert_path.display(),
        "enrolled with central"
    );
    Ok(Enrolled {
        key,
        certificate_pem: info.pem,
        certified,
        root_pem: root_pem.to_owned(),
        newly_enrolled: true,
    })
}

/// For daemons at start-up: reuses the stored key and certificate when
/// both exist and the certificate is issued by the pinned root, valid now
/// and for that key; otherwise enrolls with the configured token. Without
/// a usable certificate and without a token it fails with
/// [`CentralError::NotEnrolled`] saying what is missing.
pub async fn ensure_enrolled(config: &EnrollmentConfig) -> Result<Enrolled, CentralError> {
    let root_pem = read_root(&config.root_certificate)?;
    let why_not = match stored_credential(config, &root_pem)? {
        Ok(enrolled) => return Ok(enrolled),
        Err(why_not) => why_not,
    };
    let Some(token) = config.enrollment_token.as_deref().filter(|t| !t.is_empty()) else {
        return Err(CentralError::NotEnrolled(format!(
            "{why_not}, and no enrollment_token is configured (ask central's operator for one)"
        )));
    };
    tracing::info!(reason = %why_not, "enrolling with central");
    enroll(
        &config.central_url,
        &root_pem,
        token,
        &config.key,
        &config.certificate,
        &config.name,
    )
    .await
}

/// The stored credential, or why it cannot be used (`Err` outside for
/// failures that enrolling would not fix, such as an unreadable key).
fn stored_credential(
    config: &EnrollmentConfig,
    root_pem: &str,
) -> Result<Result<Enrolled, String>, CentralError> {
    let cert_pem = match std::fs::read_to_string(&config.certificate) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Err(format!(
                "no certificate at {}",
                config.certificate.display()
            )))
        }
        Err(e) => {
            return Err(CentralError::io(
                "cannot read certificate",
                &config.certificate,
                e,
            ))
        }
    };
    let key = match ParticipantKey::load_pem(&config.key) {
        Ok(key) => key,
        Err(PkiError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Err(format!("no key at {}", config.key.display())))
        }
        Err(e) => return Err(e.into()),
    };
    let root = RootCertificate::from_pem(root_pem)?;
    let certified = match root.verify_pem(&cert_pem, Utc::now()) {
        Ok(c) => c,
        Err(e) => {
            return Ok(Err(format!(
                "the certificate at {} is not usable: {e}",
                config.certificate.display()
            )))
        }
    };
    if certified.key_id != key.key_id() {
        return Ok(Err(format!(
            "the certificate at {} is for key {}, not for the key at {}",
            config.certificate.display(),
            certified.key_id,
            config.key.display()
        )));
    }
    Ok(Ok(Enrolled {
        key,
        certificate_pem: cert_pem,
        certified,
        root_pem: root_pem.to_owned(),
        newly_enrolled: false,
    }))
}
