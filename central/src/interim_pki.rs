//! Key certification primitives central needs: participant keys and CSRs,
//! the certificate authority, and verification of presented certificates
//! with the role they carry.
//!
//! The API follows the shared `provider_sdk::pki` / `central::ca` interface
//! (same names and shapes) so call sites switch over by changing imports.
//! The role is encoded in the subject's organizational unit: `operator`,
//! `provider:<id>` or `server`.

use chrono::{DateTime, Utc};
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber, PKCS_ED25519,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("CSR: {0}")]
    Csr(String),
    #[error("key: {0}")]
    Key(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub type CaError = PkiError;

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Lowercase hex of the first 16 bytes of SHA-256 of the raw public key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    pub fn of_public_key(raw: &[u8]) -> KeyId {
        KeyId(hex::encode(&Sha256::digest(raw)[..16]))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a certificate entitles its holder to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Operator,
    Provider(u64),
    Server,
}

impl Role {
    fn unit(self) -> String {
        match self {
            Role::Operator => "operator".into(),
            Role::Provider(id) => format!("provider:{id}"),
            Role::Server => "server".into(),
        }
    }
    fn parse_unit(s: &str) -> Option<Role> {
        match s {
            "operator" => Some(Role::Operator),
            "server" => Some(Role::Server),
            _ => s
                .strip_prefix("provider:")
                .and_then(|id| id.parse().ok())
                .map(Role::Provider),
        }
    }
}

/// A participant's Ed25519 key.
pub struct ParticipantKey {
    pair: KeyPair,
}

impl ParticipantKey {
    pub fn generate() -> ParticipantKey {
        // Generating an Ed25519 key with ring only fails if the system RNG
        // is unusable, in which case nothing can work.
        #[allow(clippy::expect_used)]
        let pair = KeyPair::generate_for(&PKCS_ED25519).expect("system RNG unavailable");
        ParticipantKey { pair }
    }

    /// Writes the PKCS#8 PEM with mode 0600; refuses to overwrite.
    pub fn save_pem(&self, path: &Path) -> Result<(), PkiError> {
        write_private(path, &self.pair.serialize_pem())
    }

    pub fn load_pem(path: &Path) -> Result<ParticipantKey, PkiError> {
        let pem = std::fs::read_to_string(path).map_err(io_err(path))?;
        let pair = KeyPair::from_pem(&pem).map_err(|e| PkiError::Key(e.to_string()))?;
        if pair.algorithm() != &PKCS_ED25519 {
            return Err(PkiError::Key("not an Ed25519 key".into()));
        }
        Ok(ParticipantKey { pair })
    }

    pub fn key_id(&self) -> KeyId {
        KeyId::of_public_key(self.pair.public_key_raw())
    }

    /// A CSR for this key with the given common name.
    pub fn csr_pem(&self, common_name: &str) -> Result<String, PkiError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .serialize_request(&self.pair)
            .and_then(|csr| csr.pem())
            .map_err(|e| PkiError::Csr(e.to_string()))
    }
}

pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(contents.as_bytes()).map_err(io_err(path))
}

/// A certificate whose chain, validity and role were checked.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    pub key_id: KeyId,
    pub subject_cn: String,
    pub role: Role,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub serial: String,
}

/// Verifies `cert_der` chains to `root_der` and is valid at `now` (client
/// or server usage), and reads its key id and role.
pub fn verify_certificate(
    cert_der: &[u8],
    root_der: &[u8],
    now: DateTime<Utc>,
) -> Result<CertifiedKey, PkiError> {
    let bad = |e: &dyn fmt::Display| PkiError::Certificate(e.to_string());
    let root = CertificateDer::from(root_der);
    let anchor = webpki::anchor_from_trusted_cert(&root).map_err(|e| bad(&e))?;
    let cert = CertificateDer::from(cert_der);
    let ee = webpki::EndEntityCert::try_from(&cert).map_err(|e| bad(&e))?;
    let secs = u64::try_from(now.timestamp())
        .map_err(|_| PkiError::Certificate("clock before 1970".into()))?;
    let time = UnixTime::since_unix_epoch(Duration::from_secs(secs));
    let algs = [webpki::ring::ED25519];
    let anchors = [anchor];
    let client = ee.verify_for_usage(
        &algs,
        &anchors,
        &[],
        time,
        webpki::KeyUsage::client_auth(),
        None,
        None,
    );
    if client.is_err() {
        ee.verify_for_usage(
            &algs,
            &anchors,
            &[],
            time,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(|e| bad(&e))?;
    }
    let (_, x509) = x509_parser::parse_x509_certificate(cert_der).map_err(|e| bad(&e))?;
    let subject = x509.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or("")
        .to_string();
    let role = subject
        .iter_organizational_unit()
        .filter_map(|a| a.as_str().ok())
        .find_map(Role::parse_unit)
        .ok_or_else(|| PkiError::Certificate("certificate carries no role".into()))?;
    let spki = x509.public_key();
    let raw: &[u8] = &spki.subject_public_key.data;
    let ts = |t: i64| {
        DateTime::from_timestamp(t, 0)
            .ok_or_else(|| PkiError::Certificate("validity out of range".into()))
    };
    Ok(CertifiedKey {
        key_id: KeyId::of_public_key(raw),
        subject_cn: cn,
        role,
        not_before: ts(x509.validity().not_before.timestamp())?,
        not_after: ts(x509.validity().not_after.timestamp())?,
        serial: hex::encode(x509.raw_serial()),
    })
}

/// A certificate issued from a CSR.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    pub key_id: KeyId,
    pub serial: String,
    pub subject_cn: String,
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
}

/// A certificate issued with a fresh key (central's TLS credential).
#[derive(Debug, Clone)]
pub struct IssuedKeyPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Central's root: an Ed25519 key and its self-signed CA certificate.
pub struct CertificateAuthority {
    key: KeyPair,
    cert_pem: String,
    cert_der: Vec<u8>,
}

const CA_KEY: &str = "ca.key";
const CA_CERT: &str = "ca.crt";

fn to_offset(t: DateTime<Utc>) -> Result<time::OffsetDateTime, PkiError> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp())
        .map_err(|e| PkiError::Certificate(e.to_string()))
}

fn random_serial() -> (SerialNumber, String) {
    let mut b = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b[0] &= 0x7f; // positive INTEGER
    if b[0] == 0 {
        b[0] = 1; // no leading zero octet to strip
    }
    (SerialNumber::from_slice(&b), hex::encode(b))
}

impl CertificateAuthority {
    pub fn create(common_name: &str) -> Result<CertificateAuthority, CaError> {
        let key = KeyPair::generate_for(&PKCS_ED25519).map_err(|e| PkiError::Key(e.to_string()))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = Utc::now();
        params.not_before = to_offset(now - chrono::Duration::minutes(5))?;
        params.not_after = to_offset(now + chrono::Duration::days(3650))?;
        params.serial_number = Some(random_serial().0);
        let cert = params
            .self_signed(&key)
            .map_err(|e| PkiError::Certificate(e.to_string()))?;
        Ok(CertificateAuthority {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key,
        })
    }

    /// Writes `dir/ca.key` (0600) and `dir/ca.crt`; refuses to overwrite.
    pub fn save(&self, dir: &Path) -> Result<(), CaError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        write_private(&dir.join(CA_KEY), &self.key.serialize_pem())?;
        let cert = dir.join(CA_CERT);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&cert)
            .and_then(|mut f| std::io::Write::write_all(&mut f, self.cert_pem.as_bytes()))
            .map_err(io_err(&cert))
    }

    pub fn load(dir: &Path) -> Result<CertificateAuthority, CaError> {
        let kp = dir.join(CA_KEY);
        let cp = dir.join(CA_CERT);
        let key_pem = std::fs::read_to_string(&kp).map_err(io_err(&kp))?;
        let cert_pem = std::fs::read_to_string(&cp).map_err(io_err(&cp))?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::Key(e.to_string()))?;
        let der = crate::tls::certs_from_pem(&cert_pem, "CA certificate")
            .map_err(|e| PkiError::Certificate(e.to_string()))?;
        let cert_der = der
            .into_iter()
            .next()
            .map(|c| c.to_vec())
            .ok_or_else(|| PkiError::Certificate("empty CA certificate".into()))?;
        Ok(CertificateAuthority {
            key,
            cert_pem,
            cert_der,
        })
    }

    pub fn root_cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn root_cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>, CaError> {
        Issuer::from_ca_cert_der(&CertificateDer::from(self.cert_der.as_slice()), &self.key)
            .map_err(|e| PkiError::Certificate(e.to_string()))
    }

    fn leaf_params(
        cn: &str,
        role: Role,
        validity: Duration,
    ) -> Result<(CertificateParams, String, DateTime<Utc>, DateTime<Utc>), CaError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, role.unit());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match role {
            Role::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            _ => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        let now = Utc::now();
        let nb = now - chrono::Duration::minutes(5);
        let na = now
            + chrono::Duration::from_std(validity)
                .map_err(|e| PkiError::Certificate(e.to_string()))?;
        params.not_before = to_offset(nb)?;
        params.not_after = to_offset(na)?;
        let (serial, serial_hex) = random_serial();
        params.serial_number = Some(serial);
        params.use_authority_key_identifier_extension = true;
        Ok((params, serial_hex, nb, na))
    }

    /// Central's own TLS certificate with a fresh Ed25519 key.
    pub fn issue_server_cert(
        &self,
        dns_names: &[String],
        ip_addrs: &[IpAddr],
    ) -> Result<IssuedKeyPair, CaError> {
        let key = KeyPair::generate_for(&PKCS_ED25519).map_err(|e| PkiError::Key(e.to_string()))?;
        let cn = dns_names
            .first()
            .cloned()
            .or_else(|| ip_addrs.first().map(|i| i.to_string()))
            .unwrap_or_else(|| "central".into());
        let (mut params, _, _, _) =
            Self::leaf_params(&cn, Role::Server, Duration::from_secs(825 * 86_400))?;
        for d in dns_names {
            let name = d
                .clone()
                .try_into()
                .map_err(|e: rcgen::Error| PkiError::Certificate(format!("DNS name {d:?}: {e}")))?;
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        for ip in ip_addrs {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        let cert = params
            .signed_by(&key, &self.issuer()?)
            .map_err(|e| PkiError::Certificate(e.to_string()))?;
        Ok(IssuedKeyPair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Certifies the Ed25519 key of a CSR (whose own signature is checked)
    /// for `role`, valid for `validity` from now.
    pub fn certify_csr(
        &self,
        csr_pem: &str,
        role: Role,
        validity: Duration,
    ) -> Result<IssuedCert, CaError> {
        if csr_pem.len() > 16 * 1024 {
            return Err(PkiError::Csr("CSR larger than 16 KiB".into()));
        }
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::Csr(e.to_string()))?;
        if csr.public_key.algorithm() != &PKCS_ED25519 {
            return Err(PkiError::Csr("only Ed25519 keys are certified".into()));
        }
        let cn = csr
            .params
            .distinguished_name
            .get(&DnType::CommonName)
            .and_then(|v| match v {
                rcgen::DnValue::Utf8String(s) => Some(s.clone()),
                rcgen::DnValue::PrintableString(s) => Some(s.as_str().to_string()),
                _ => None,
            })
            .filter(|s| !s.is_empty() && s.len() <= 200 && !s.chars().any(char::is_control))
            .ok_or_else(|| PkiError::Csr("subject common name missing or invalid".into()))?;
        let (params, serial, nb, na) = Self::leaf_params(&cn, role, validity)?;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer()?)
            .map_err(|e| PkiError::Certificate(e.to_string()))?;
        Ok(IssuedCert {
            key_id: KeyId::of_public_key(csr.public_key.der_bytes()),
            serial,
            subject_cn: cn,
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            not_before: nb,
            not_after: na,
        })
    }
}
