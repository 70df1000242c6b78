//! A participant's Ed25519 key: generation, PKCS#8 PEM files, key ids, CSRs.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

use super::PkiError;

/// id-Ed25519 (RFC 8410) in dotted form.
const ED25519_OID: &str = "1.3.101.112";

/// Longest common name accepted (the X.520 upper bound for CN).
const MAX_COMMON_NAME: usize = 64;

/// Identifies an Ed25519 public key: lowercase hex of the first 16 bytes of
/// SHA-256 over the raw 32-byte key. Always 32 hex digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// The id of `key`.
    pub fn of(key: &VerifyingKey) -> KeyId {
        let digest = Sha256::digest(key.as_bytes());
        KeyId(hex::encode(&digest[..16]))
    }

    /// The 32 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyId {
    type Err = PkiError;

    /// Accepts exactly 32 lowercase hex digits (the canonical form, so a key
    /// id has one spelling in URLs and database rows).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(KeyId(s.to_owned()))
        } else {
            Err(PkiError::InvalidKeyId(s.chars().take(80).collect()))
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

serde_as_string!(KeyId);

/// A participant's Ed25519 private key.
///
/// `Debug` never prints the secret.
#[derive(Clone)]
pub struct ParticipantKey {
    signing: SigningKey,
}

impl fmt::Debug for ParticipantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParticipantKey")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl From<SigningKey> for ParticipantKey {
    fn from(signing: SigningKey) -> Self {
        ParticipantKey { signing }
    }
}

impl ParticipantKey {
    /// A fresh key from the operating system's random number generator.
    pub fn generate() -> ParticipantKey {
        ParticipantKey {
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// The underlying ed25519-dalek key (for signing tickets and receipts).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.signing.verifying_key())
    }

    /// Signs `message` (plain Ed25519, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }

    /// The key as PKCS#8 v1 DER (RFC 8410 without the optional public key).
    /// Secret. v1 because OpenSSL 3.0, and so curl, cannot read the v2 form
    /// with the public key; rustls and ed25519-dalek read both.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, PkiError> {
        let doc = self
            .keypair_bytes()
            .to_pkcs8_der()
            .map_err(|e| PkiError::MalformedKey(e.to_string()))?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// The key as PKCS#8 v1 PEM (`-----BEGIN PRIVATE KEY-----`). Secret.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, PkiError> {
        self.keypair_bytes()
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| PkiError::MalformedKey(e.to_string()))
    }

    fn keypair_bytes(&self) -> ed25519_dalek::pkcs8::KeypairBytes {
        ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.signing.to_bytes(),
            public_key: None,
        }
    }

    /// Parses a PKCS#8 PEM private key. Other PEM kinds (RSA, EC) and PKCS#8
    /// keys of other algorithms are refused with [`PkiError::WrongKeyType`].
    pub fn from_pkcs8_pem(pem: &str) -> Result<ParticipantKey, PkiError> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| PkiError::BadPem(describe_pem_error(&e)))?;
        match der {
            PrivateKeyDer::Pkcs8(pkcs8) => Self::from_pkcs8_der(pkcs8.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(_) => Err(PkiError::WrongKeyType("RSA (PKCS#1) key".into())),
            PrivateKeyDer::Sec1(_) => Err(PkiError::WrongKeyType("EC (SEC1) key".into())),
            _ => Err(PkiError::WrongKeyType("unknown private key kind".into())),
        }
    }

    /// Parses a PKCS#8 DER private key (v1 or v2).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<ParticipantKey, PkiError> {
        let info = ed25519_dalek::pkcs8::PrivateKeyInfo::try_from(der)
            .map_err(|e| PkiError::MalformedKey(e.to_string()))?;
        let oid = info.algorithm.oid.to_string();
        if oid != ED25519_OID {
            return Err(PkiError::WrongKeyType(format!(
                "PKCS#8 key with algorithm {oid}"
            )));
        }
        let signing =
            SigningKey::from_pkcs8_der(der).map_err(|e| PkiError::MalformedKey(e.to_string()))?;
        Ok(ParticipantKey { signing })
    }

    /// Writes the key as PKCS#8 PEM to a new file created with mode 0600 (the
    /// mode is set at creation, so the secret is never briefly readable by
    /// others). Refuses to overwrite an existing file.
    pub fn save_pem(&self, path: impl AsRef<Path>) -> Result<(), PkiError> {
        let path = path.as_ref();
        let pem = self.to_pkcs8_pem()?;
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                PkiError::KeyFileExists(path.to_path_buf())
            } else {
                PkiError::io("cannot create key file", path, e)
            }
        })?;
        let written = file
            .write_all(pem.as_bytes())
            .and_then(|()| file.sync_all());
        if let Err(e) = written {
            // Leave no truncated key behind: a later load would fail confusingly.
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(PkiError::io("cannot write key file", path, e));
        }
        Ok(())
    }

    /// Reads a key written by [`save_pem`](Self::save_pem) (or any PKCS#8
    /// Ed25519 PEM file).
    ///
    /// On Unix a file readable or writable by group or others is refused with
    /// [`PkiError::InsecureKeyFile`]: the key is the participant's identity
    /// (it signs tickets that move money), and a warning in a log is too easy
    /// to miss. The error says how to fix the mode.
    pub fn load_pem(path: impl AsRef<Path>) -> Result<ParticipantKey, PkiError> {
        let path = path.as_ref();
        let pem = std::fs::read(path).map_err(|e| PkiError::io("cannot read key file", path, e))?;
        let pem = Zeroizing::new(pem);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| PkiError::io("cannot inspect key file", path, e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(PkiError::InsecureKeyFile {
                    path: path.to_path_buf(),
                    mode: mode & 0o7777,
                });
            }
        }
        let text = std::str::from_utf8(&pem)
            .map_err(|_| PkiError::BadPem(format!("{} is not text", path.display())))?;
        Self::from_pkcs8_pem(text)
    }

    /// This key as an rcgen key pair (ring backend), for signing CSRs and,
    /// at the certificate authority, certificates.
    pub fn rcgen_key_pair(&self) -> Result<rcgen::KeyPair, PkiError> {
        let der = self.to_pkcs8_der()?;
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(der.as_slice()),
            &rcgen::PKCS_ED25519,
        )
        .map_err(|e| PkiError::MalformedKey(e.to_string()))
    }

    /// A PEM certificate signing request (PKCS#10) for this key, signed by
    /// it, with `common_name` as the subject. Central decides everything
    /// else in the certificate (role, validity, usages).
    pub fn csr_pem(&self, common_name: &str) -> Result<String, PkiError> {
        check_common_name(common_name)?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let key_pair = self.rcgen_key_pair()?;
        params
            .serialize_request(&key_pair)
            .and_then(|csr| csr.pem())
            .map_err(|e| PkiError::Csr(e.to_string()))
    }
}

/// A common name is 1..=64 characters, no control characters and no
/// leading or trailing white space (it is shown to people and logged).
pub fn check_common_name(name: &str) -> Result<(), PkiError> {
    let len = name.chars().count();
    if len == 0 || len > MAX_COMMON_NAME {
        return Err(PkiError::InvalidCommonName(format!(
            "must be 1 to {MAX_COMMON_NAME} characters, got {len}"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(PkiError::InvalidCommonName(
            "contains control characters".into(),
        ));
    }
    if name.trim() != name {
        return Err(PkiError::InvalidCommonName(
            "has leading or trailing white space".into(),
        ));
    }
    Ok(())
}

fn describe_pem_error(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::NoItemsFound => "no private key found in PEM".into(),
        other => other.to_string(),
    }
}
