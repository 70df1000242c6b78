//! The forwarder's own small certificate authority for its HTTPS API: an
//! Ed25519 root that signs the API's TLS server certificate and the
//! operator's client certificates (mutual TLS). It has nothing to do with
//! central's CA; subscribers use bearer tokens instead
//! ([`crate::store::credentials`]).
//!
//! The same shape as central's CA (`central/src/ca.rs`), trimmed to what the
//! forwarder needs; both could move to `provider_sdk::pki`.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::VerifyingKey;
use provider_sdk::pki::cert::pem_encode_cert;
use provider_sdk::pki::key::check_common_name;
use provider_sdk::pki::{KeyId, ParticipantKey, PkiError, Role, RootCertificate, Serial};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use time::OffsetDateTime;

/// File names inside the CA directory.
pub const ROOT_KEY_FILE: &str = "root.key";
pub const ROOT_CERT_FILE: &str = "root.crt";

/// How long a new root certificate is valid.
const ROOT_VALIDITY_DAYS: i64 = 20 * 365;

/// Certificates start this long before "now", so a relying party whose
/// clock is a little behind accepts a fresh certificate at once.
const BACKDATE: Duration = Duration::minutes(5);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} already exists; refusing to overwrite a certificate authority")]
    AlreadyExists(PathBuf),
    #[error("root certificate does not match root key")]
    KeyMismatch,
    #[error("invalid validity period: {0}")]
    InvalidValidity(String),
    #[error("invalid subject alternative name {0:?}")]
    InvalidName(String),
    #[error("a server certificate needs at least one DNS name or IP address")]
    NoServerNames,
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CaError + 'a {
    move |source| CaError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

fn gen_err(e: rcgen::Error) -> CaError {
    CaError::Generate(e.to_string())
}

/// When a certificate is valid: `not_before < not_after`, second precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
}

impl Validity {
    pub fn new(not_before: DateTime<Utc>, not_after: DateTime<Utc>) -> Result<Validity, CaError> {
        if not_before >= not_after {
            return Err(CaError::InvalidValidity(format!(
                "not_before {not_before} is not before not_after {not_after}"
            )));
        }
        // Certificates carry whole seconds; keep what we report equal to what is signed.
        let trunc = |t: DateTime<Utc>| {
            DateTime::from_timestamp(t.timestamp(), 0)
                .ok_or_else(|| CaError::InvalidValidity(format!("{t} out of range")))
        };
        Ok(Validity {
            not_before: trunc(not_before)?,
            not_after: trunc(not_after)?,
        })
    }

    /// From a few minutes ago (clock skew) until `days` days from now.
    pub fn days(days: u32) -> Validity {
        let now = Utc::now();
        let start = now - BACKDATE;
        let end = now + Duration::days(i64::from(days.max(1)));
        Validity {
            not_before: DateTime::from_timestamp(start.timestamp(), 0).unwrap_or(start),
            not_after: DateTime::from_timestamp(end.timestamp(), 0).unwrap_or(end),
        }
    }

    pub fn not_before(&self) -> DateTime<Utc> {
        self.not_before
    }

    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }
}

fn offset_time(t: DateTime<Utc>) -> Result<OffsetDateTime, CaError> {
    OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|e| CaError::InvalidValidity(e.to_string()))
}

/// A certificate the CA has just signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCert {
    pub key_id: KeyId,
    pub role: Role,
    pub serial: Serial,
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// A certificate together with the key the CA generated for it (the API's
/// TLS server certificate, the operator's credential).
#[derive(Clone, Debug)]
pub struct IssuedKeyPair {
    pub cert: IssuedCert,
    pub key: ParticipantKey,
}

/// An Ed25519 public key as rcgen wants to see it.
struct Ed25519Public([u8; 32]);

impl PublicKeyData for Ed25519Public {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

/// The forwarder's certificate authority.
pub struct CertificateAuthority {
    key: ParticipantKey,
    root: RootCertificate,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("subject_cn", &self.root.subject_cn())
            .field("key_id", &self.key.key_id())
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new root: fresh Ed25519 key, self-signed certificate (CA:true,
    /// pathlen 0, keyCertSign and cRLSign) valid for 20 years.
    pub fn create(common_name: &str) -> Result<CertificateAuthority, CaError> {
        let validity = Validity::days(ROOT_VALIDITY_DAYS as u32);
        Self::create_with_validity(common_name, validity)
    }

    /// As [`create`](Self::create), with an explicit validity period.
    pub fn create_with_validity(
        common_name: &str,
        validity: Validity,
    ) -> Result<CertificateAuthority, CaError> {
        check_common_name(common_name)?;
        let key = ParticipantKey::generate();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(SerialNumber::from_slice(Serial::generate().as_bytes()));
        params.not_before = offset_time(validity.not_before)?;
        params.not_after = offset_time(validity.not_after)?;
        let key_pair = key.rcgen_key_pair()?;
        let cert = params.self_signed(&key_pair).map_err(gen_err)?;
        let root = RootCertificate::from_der(cert.der())?;
        Ok(CertificateAuthority {
            key,
            root,
            issuer: Issuer::new(params, key_pair),
        })
    }

    /// Writes `root.key` (mode 0600) and `root.crt` into `dir` (created with
    /// mode 0700 if missing). Refuses to overwrite either file.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), CaError> {
        let dir = dir.as_ref();
        create_private_dir(dir)?;
        let key_path = dir.join(ROOT_KEY_FILE);
        let cert_path = dir.join(ROOT_CERT_FILE);
        if cert_path.exists() {
            return Err(CaError::AlreadyExists(cert_path));
        }
        self.key.save_pem(&key_path).map_err(|e| match e {
            PkiError::KeyFileExists(p) => CaError::AlreadyExists(p),
            other => other.into(),
        })?;
        write_new(&cert_path, self.root.pem().as_bytes())
    }

    /// Reads a CA written by [`save`](Self::save) and checks that key and
    /// certificate belong together.
    pub fn load(dir: impl AsRef<Path>) -> Result<CertificateAuthority, CaError> {
        let dir = dir.as_ref();
        let key = ParticipantKey::load_pem(dir.join(ROOT_KEY_FILE))?;
        let cert_path = dir.join(ROOT_CERT_FILE);
        let pem = std::fs::read_to_string(&cert_path)
            .map_err(io_err("cannot read root certificate", &cert_path))?;
        let root = RootCertificate::from_pem(&pem)?;
        if root.verifying_key() != key.verifying_key() {
            return Err(CaError::KeyMismatch);
        }
        let issuer =
            Issuer::from_ca_cert_der(root.der(), key.rcgen_key_pair()?).map_err(gen_err)?;
        Ok(CertificateAuthority { key, root, issuer })
    }

    pub fn root(&self) -> &RootCertificate {
        &self.root
    }

    pub fn root_cert_pem(&self) -> String {
        self.root.pem()
    }

    pub fn root_cert_der(&self) -> &[u8] {
        self.root.der().as_ref()
    }

    /// The API's TLS server certificate with a fresh Ed25519 key: the given
    /// DNS names and IP addresses as subject alternative names, serverAuth,
    /// role [`Role::Server`].
    pub fn issue_server_cert(
        &self,
        dns_names: &[String],
        ip_addrs: &[IpAddr],
        validity: Validity,
    ) -> Result<IssuedKeyPair, CaError> {
        let mut sans = Vec::with_capacity(dns_names.len() + ip_addrs.len());
        for name in dns_names {
            let ia5 = rcgen::string::Ia5String::try_from(name.as_str())
                .map_err(|_| CaError::InvalidName(name.clone()))?;
            if name.is_empty() || name.len() > 253 {
                return Err(CaError::InvalidName(name.clone()));
            }
            sans.push(SanType::DnsName(ia5));
        }
        sans.extend(ip_addrs.iter().map(|ip| SanType::IpAddress(*ip)));
        let common_name = match (dns_names.first(), ip_addrs.first()) {
            (Some(name), _) => name.clone(),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => return Err(CaError::NoServerNames),
        };
        let key = ParticipantKey::generate();
        let cert = self.sign(
            &key.verifying_key(),
            &common_name,
            Role::Server,
            sans,
            validity,
        )?;
        Ok(IssuedKeyPair { cert, key })
    }

    /// A certificate for a key whose holder is trusted without a CSR: the
    /// operator's credential made by `forwarder init`.
    pub fn issue_for_key(
        &self,
        key: &VerifyingKey,
        common_name: &str,
        role: Role,
        validity: Validity,
    ) -> Result<IssuedCert, CaError> {
        self.sign(key, common_name, role, Vec::new(), validity)
    }

    /// A new key and its certificate, e.g. the operator's credential.
    pub fn issue_key_pair(
        &self,
        common_name: &str,
        role: Role,
        validity: Validity,
    ) -> Result<IssuedKeyPair, CaError> {
        let key = ParticipantKey::generate();
        let cert = self.issue_for_key(&key.verifying_key(), common_name, role, validity)?;
        Ok(IssuedKeyPair { cert, key })
    }

    fn sign(
        &self,
        key: &VerifyingKey,
        common_name: &str,
        role: Role,
        sans: Vec<SanType>,
        validity: Validity,
    ) -> Result<IssuedCert, CaError> {
        check_common_name(common_name)?;
        let serial = Serial::generate();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, role.to_string());
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if role.is_server() {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        params.serial_number = Some(SerialNumber::from_slice(serial.as_bytes()));
        params.not_before = offset_time(validity.not_before)?;
        params.not_after = offset_time(validity.not_after)?;
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&Ed25519Public(key.to_bytes()), &self.issuer)
            .map_err(gen_err)?;
        let cert_der = cert.der().to_vec();
        Ok(IssuedCert {
            key_id: KeyId::of(key),
            role,
            serial,
            cert_pem: pem_encode_cert(&cert_der),
            cert_der,
            not_before: validity.not_before,
            not_after: validity.not_after,
        })
    }
}

fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(io_err("cannot create CA directory", dir))
}

fn write_new(path: &Path, contents: &[u8]) -> Result<(), CaError> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                CaError::AlreadyExists(path.to_path_buf())
            } else {
                CaError::Io {
                    action: "cannot create",
                    path: path.to_path_buf(),
                    source: e,
                }
            }
        })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(io_err("cannot write", path))
}
