//! Certificates of the network: roles, serial numbers, and verification of a
//! participant's certificate against central's pinned root.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, VerifyingKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::OID_SIG_ED25519;

use super::{KeyId, PkiError};

/// How far the verifier's clock may be off from the issuer's: certificates
/// are accepted this long before `not_before` and after `not_after`.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Largest serial number RFC 5280 allows (20 octets).
const MAX_SERIAL_LEN: usize = 20;

/// What a certificate entitles its holder to, written in the subject's
/// organizational unit (OU) as `operator`, `server` or `provider:<id>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The operator of central: registers providers, suspends, revokes.
    Operator,
    /// Provider with this id in central's directory: changes only its own entries.
    Provider(u64),
    /// Central's own TLS server certificate.
    Server,
}

impl Role {
    /// Certificates of this role are for TLS servers (serverAuth) rather than
    /// for clients and signatures (clientAuth).
    pub fn is_server(self) -> bool {
        matches!(self, Role::Server)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Operator => f.write_str("operator"),
            Role::Server => f.write_str("server"),
            Role::Provider(id) => write!(f, "provider:{id}"),
        }
    }
}

impl FromStr for Role {
    type Err = PkiError;

    /// Accepts only the canonical spellings written by `Display`
    /// (`provider:042` or `provider:+42` are refused).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || PkiError::InvalidRole(s.chars().take(80).collect());
        match s {
            "operator" => Ok(Role::Operator),
            "server" => Ok(Role::Server),
            _ => {
                let digits = s.strip_prefix("provider:").ok_or_else(invalid)?;
                let id: u64 = digits.parse().map_err(|_| invalid())?;
                if id.to_string() != digits {
                    return Err(invalid());
                }
                Ok(Role::Provider(id))
            }
        }
    }
}

serde_as_string!(Role);

/// A certificate serial number; `Display` is lowercase hex of its DER
/// integer bytes. Central issues random 16-byte serials.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// 16 random bytes, most significant bit clear (a positive DER integer)
    /// and the next bit set (no leading zero octet to strip), so the serial
    /// reads back from the certificate exactly as generated.
    pub fn generate() -> Serial {
        let mut bytes: [u8; 16] = rand::random();
        bytes[0] = (bytes[0] & 0x7f) | 0x40;
        Serial(bytes.to_vec())
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Serial, PkiError> {
        if bytes.is_empty() || bytes.len() > MAX_SERIAL_LEN {
            return Err(PkiError::InvalidSerial(hex::encode(bytes)));
        }
        Ok(Serial(bytes.to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl FromStr for Serial {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || PkiError::InvalidSerial(s.chars().take(80).collect());
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid());
        }
        let bytes = hex::decode(s).map_err(|_| invalid())?;
        Serial::from_bytes(&bytes).map_err(|_| invalid())
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({self})")
    }
}

serde_as_string!(Serial);

/// What a verified certificate certifies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertifiedKey {
    pub key_id: KeyId,
    pub verifying_key: VerifyingKey,
    pub subject_cn: String,
    pub role: Role,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub serial: Serial,
}

/// Central's root certificate, parsed and checked once, ready to verify
/// participants' certificates.
#[derive(Clone, Debug)]
pub struct RootCertificate {
    der: CertificateDer<'static>,
    anchor: TrustAnchor<'static>,
    verifying_key: VerifyingKey,
    subject_raw: Vec<u8>,
    /// webpki does not check a trust anchor's validity; this does.
    not_after: DateTime<Utc>,
    subject_key_id: Option<Vec<u8>>,
    subject_cn: String,
}

impl RootCertificate {
    /// Parses a PEM root certificate (the first `CERTIFICATE` block).
    pub fn from_pem(pem: &str) -> Result<RootCertificate, PkiError> {
        let der = cert_der_from_pem(pem)?;
        Self::from_der(der.as_ref())
    }

    /// Parses a DER root certificate. It must be a self-signed Ed25519 CA
    /// certificate whose signature verifies.
    pub fn from_der(der: &[u8]) -> Result<RootCertificate, PkiError> {
        let cert = parse_der(der).map_err(|e| PkiError::InvalidRoot(e.to_string()))?;
        let verifying_key = ed25519_key(&cert).map_err(|e| PkiError::InvalidRoot(e.to_string()))?;
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        if !is_ca {
            return Err(PkiError::InvalidRoot(
                "not a CA certificate (basicConstraints CA:true missing)".into(),
            ));
        }
        if cert.tbs_certificate.issuer.as_raw() != cert.tbs_certificate.subject.as_raw() {
            return Err(PkiError::InvalidRoot("not self-issued".into()));
        }
        check_ed25519_signature(&cert, &verifying_key)
            .map_err(|_| PkiError::InvalidRoot("self-signature does not verify".into()))?;
        let subject_raw = cert.tbs_certificate.subject.as_raw().to_vec();
        let not_after = asn1_time(cert.validity().not_after)
            .map_err(|e| PkiError::InvalidRoot(e.to_string()))?;
        let subject_key_id = subject_key_id(&cert);
        let subject_cn = common_name(&cert).unwrap_or_default();
        let der = CertificateDer::from(der.to_vec());
        let anchor = webpki::anchor_from_trusted_cert(&der)
            .map_err(|e| PkiError::InvalidRoot(e.to_string()))?
            .to_owned();
        Ok(RootCertificate {
            der,
            anchor,
            verifying_key,
            subject_raw,
            not_after,
            subject_key_id,
            subject_cn,
        })
    }

    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    pub fn pem(&self) -> String {
        pem_encode_cert(self.der.as_ref())
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.verifying_key
    }

    pub fn subject_cn(&self) -> &str {
        &self.subject_cn
    }

    /// When the root, and so every certificate under it, stops being valid.
    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }

    /// Verifies a PEM certificate; see [`verify`](Self::verify).
    pub fn verify_pem(&self, cert_pem: &str, now: DateTime<Utc>) -> Result<CertifiedKey, PkiError> {
        let der = cert_der_from_pem(cert_pem)?;
        self.verify(der.as_ref(), now)
    }

    /// Verifies that `cert_der` was issued by this root, is within its
    /// validity period at `now` (give or take [`CLOCK_SKEW`]), holds an
    /// Ed25519 key, names a role, and may be used as its role requires
    /// (serverAuth for [`Role::Server`], clientAuth and digitalSignature for
    /// the others). Returns what it certifies.
    pub fn verify(&self, cert_der: &[u8], now: DateTime<Utc>) -> Result<CertifiedKey, PkiError> {
        let cert = parse_der(cert_der)?;
        let verifying_key = ed25519_key(&cert)?;

        // Name the real problem before webpki's generic path search does.
        if cert.tbs_certificate.issuer.as_raw() != self.subject_raw.as_slice() {
            return Err(PkiError::NotSignedByRoot);
        }
        if let (Some(aki), Some(ski)) = (authority_key_id(&cert), &self.subject_key_id) {
            if aki != *ski {
                return Err(PkiError::NotSignedByRoot);
            }
        }

        let not_before = asn1_time(cert.validity().not_before)?;
        let not_after = asn1_time(cert.validity().not_after)?;
        let skew = chrono::Duration::from_std(CLOCK_SKEW).unwrap_or(chrono::Duration::zero());
        if now - skew > self.not_after {
            return Err(PkiError::InvalidRoot(format!(
                "root certificate expired at {}",
                self.not_after
            )));
        }
        if now + skew < not_before {
            return Err(PkiError::NotYetValid { not_before });
        }
        if now - skew > not_after {
            return Err(PkiError::Expired { not_after });
        }
        // Within the skew: let webpki check at the nearest instant inside the window.
        let check_at = now.clamp(not_before, not_after);

        // The role decides which extended key usage to require; a missing or
        // bad role is reported only after the signature has been checked, so
        // a forgery is always reported as one.
        let role = role(&cert);
        let usage = if matches!(role, Ok(Role::Server)) {
            webpki::KeyUsage::server_auth()
        } else {
            webpki::KeyUsage::client_auth()
        };

        let cert_der = CertificateDer::from(cert_der);
        let end_entity = webpki::EndEntityCert::try_from(&cert_der)
            .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
        let secs = u64::try_from(check_at.timestamp())
            .map_err(|_| PkiError::MalformedCertificate("validity period before 1970".into()))?;
        end_entity
            .verify_for_usage(
                &[webpki::ring::ED25519],
                std::slice::from_ref(&self.anchor),
                &[],
                UnixTime::since_unix_epoch(Duration::from_secs(secs)),
                usage,
                None,
                None,
            )
            .map_err(map_webpki_error)?;

        let subject_cn = common_name(&cert)
            .ok_or_else(|| PkiError::MalformedCertificate("subject has no common name".into()))?;
        let role = role?;
        if !role.is_server() {
            match cert.key_usage() {
                Ok(Some(ku)) if !ku.value.digital_signature() => {
                    return Err(PkiError::WrongUsage(
                        "key usage lacks digitalSignature".into(),
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(PkiError::MalformedCertificate(e.to_string())),
            }
        }
        let serial = Serial::from_bytes(cert.raw_serial())?;
        Ok(CertifiedKey {
            key_id: KeyId::of(&verifying_key),
            verifying_key,
            subject_cn,
            role,
            not_before,
            not_after,
            serial,
        })
    }
}

/// Verifies a participant's certificate (DER) against the pinned root (DER)
/// at `now`. Parses the root on every call: keep a [`RootCertificate`] and
/// call [`RootCertificate::verify`] when verifying many.
pub fn verify_certificate(
    cert_der: &[u8],
    root_der: &[u8],
    now: DateTime<Utc>,
) -> Result<CertifiedKey, PkiError> {
    RootCertificate::from_der(root_der)?.verify(cert_der, now)
}

/// The DER of the first certificate in `pem`.
pub fn cert_der_from_pem(pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => {
            PkiError::BadPem("no CERTIFICATE block found".into())
        }
        other => PkiError::BadPem(other.to_string()),
    })
}

/// PEM text of a DER certificate.
pub fn pem_encode_cert(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, PkiError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError::MalformedCertificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PkiError::MalformedCertificate(format!(
            "{} bytes of trailing data",
            rest.len()
        )));
    }
    Ok(cert)
}

fn ed25519_key(cert: &X509Certificate<'_>) -> Result<VerifyingKey, PkiError> {
    let spki = cert.public_key();
    if spki.algorithm.algorithm != OID_SIG_ED25519 {
        return Err(PkiError::WrongKeyType(format!(
            "certificate key algorithm {}",
            spki.algorithm.algorithm
        )));
    }
    let raw: [u8; 32] = spki
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| PkiError::WrongKeyType("Ed25519 key is not 32 bytes".into()))?;
    VerifyingKey::from_bytes(&raw)
        .map_err(|_| PkiError::WrongKeyType("not a valid Ed25519 point".into()))
}

fn check_ed25519_signature(cert: &X509Certificate<'_>, key: &VerifyingKey) -> Result<(), PkiError> {
    if cert.signature_algorithm.algorithm != OID_SIG_ED25519 {
        return Err(PkiError::WrongKeyType(format!(
            "signature algorithm {}",
            cert.signature_algorithm.algorithm
        )));
    }
    let signature = Signature::from_slice(cert.signature_value.data.as_ref())
        .map_err(|_| PkiError::BadSignature)?;
    key.verify_strict(cert.tbs_certificate.as_ref(), &signature)
        .map_err(|_| PkiError::BadSignature)
}

fn common_name(cert: &X509Certificate<'_>) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

fn role(cert: &X509Certificate<'_>) -> Result<Role, PkiError> {
    let mut units = cert.subject().iter_organizational_unit();
    let ou = units.next().ok_or(PkiError::MissingRole)?;
    if units.next().is_some() {
        return Err(PkiError::InvalidRole("more than one OU".into()));
    }
    let text = ou
        .as_str()
        .map_err(|_| PkiError::InvalidRole("OU is not a string".into()))?;
    text.parse()
}

fn subject_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

fn authority_key_id(cert: &X509Certificate<'_>) -> Option<Vec<u8>> {
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        })
}

fn asn1_time(t: x509_parser::time::ASN1Time) -> Result<DateTime<Utc>, PkiError> {
    DateTime::from_timestamp(t.timestamp(), 0)
        .ok_or_else(|| PkiError::MalformedCertificate("validity time out of range".into()))
}

fn map_webpki_error(e: webpki::Error) -> PkiError {
    use webpki::Error as W;
    let at = |t: UnixTime| {
        i64::try_from(t.as_secs())
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .unwrap_or_default()
    };
    match e {
        W::UnknownIssuer => PkiError::NotSignedByRoot,
        W::InvalidSignatureForPublicKey | W::SignatureAlgorithmMismatch => PkiError::BadSignature,
        W::CertExpired { not_after, .. } => PkiError::Expired {
            not_after: at(not_after),
        },
        W::CertNotValidYet { not_before, .. } => PkiError::NotYetValid {
            not_before: at(not_before),
        },
        W::RequiredEkuNotFoundContext(_) | W::EmptyEkuExtension | W::CaUsedAsEndEntity => {
            PkiError::WrongUsage(e.to_string())
        }
        #[allow(deprecated)]
        W::RequiredEkuNotFound => PkiError::WrongUsage(e.to_string()),
        W::UnsupportedSignatureAlgorithmContext(_)
        | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            PkiError::WrongKeyType(e.to_string())
        }
        W::BadDer | W::BadDerTime | W::TrailingData(_) | W::MalformedExtensions => {
            PkiError::MalformedCertificate(e.to_string())
        }
        other => PkiError::Rejected(other.to_string()),
    }
}
