use std::path::PathBuf;

use chrono::{DateTime, Utc};

/// Everything that can go wrong with keys, certificates and TLS set-up.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refusing to overwrite existing key file {0}")]
    KeyFileExists(PathBuf),
    #[error(
        "key file {path} is accessible by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    InsecureKeyFile { path: PathBuf, mode: u32 },
    #[error("bad PEM: {0}")]
    BadPem(String),
    #[error("wrong key type: {0} (only Ed25519 keys are accepted)")]
    WrongKeyType(String),
    #[error("malformed private key: {0}")]
    MalformedKey(String),
    #[error("malformed certificate: {0}")]
    MalformedCertificate(String),
    #[error("unusable root certificate: {0}")]
    InvalidRoot(String),
    #[error("certificate is not signed by the pinned root")]
    NotSignedByRoot,
    #[error("certificate signature is invalid")]
    BadSignature,
    #[error("certificate expired at {not_after}")]
    Expired { not_after: DateTime<Utc> },
    #[error("certificate is not valid before {not_before}")]
    NotYetValid { not_before: DateTime<Utc> },
    #[error("certificate may not be used for this purpose: {0}")]
    WrongUsage(String),
    #[error("certificate names no role (subject OU)")]
    MissingRole,
    #[error("invalid role {0:?} (expected operator, server or provider:<id>)")]
    InvalidRole(String),
    #[error("invalid common name: {0}")]
    InvalidCommonName(String),
    #[error("invalid key id {0:?} (expected 32 lowercase hex digits)")]
    InvalidKeyId(String),
    #[error("invalid serial number {0:?} (expected 1 to 20 bytes as lowercase hex)")]
    InvalidSerial(String),
    #[error("cannot build certificate signing request: {0}")]
    Csr(String),
    #[error("certificate rejected: {0}")]
    Rejected(String),
    #[error("TLS configuration: {0}")]
    Tls(String),
}

impl PkiError {
    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        PkiError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}
