//! Keys, certificates and mutual TLS for participants of the network.
//!
//! Central runs a certificate authority with an Ed25519 root key. Every
//! participant (a provider, the operator, central's own TLS server) holds an
//! Ed25519 key of its own and a certificate for it signed by that root. The
//! root certificate is obtained once, out of band, and pinned in config.
//!
//! # Enrolling as a provider
//!
//! ```no_run
//! use provider_sdk::pki::{ParticipantKey, RootCertificate};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // 1. Once: create the key. The file is written with mode 0600 and an
//! //    existing file is never overwritten.
//! let key = ParticipantKey::generate();
//! key.save_pem("provider.key")?;
//! // 2. Build a CSR and post it to central with the enrollment token the
//! //    operator handed out (`POST /v1/certificates`).
//! let csr_pem = key.csr_pem("Example Telecom")?;
//! # let cert_pem = String::new();
//! // 3. Check what central sent back against the pinned root before using it.
//! let root = RootCertificate::from_pem(&std::fs::read_to_string("central-root.crt")?)?;
//! let certified = root.verify_pem(&cert_pem, chrono::Utc::now())?;
//! assert_eq!(certified.key_id, key.key_id());
//! # Ok(()) }
//! ```
//!
//! Later runs load the key with [`ParticipantKey::load_pem`], which refuses
//! files readable by group or others.
//!
//! # Modules
//!
//! - [`key`]: [`ParticipantKey`] (generate, save/load PKCS#8 PEM, CSR) and [`KeyId`].
//! - [`cert`]: [`Role`], [`Serial`], [`RootCertificate`] and
//!   [`verify_certificate`], which checks a certificate against the pinned
//!   root and returns the [`CertifiedKey`] it certifies.
//! - [`tls`]: rustls configurations (ring provider) for mutual TLS with
//!   certificates of this network, and [`peer_certified_key`] to learn who is
//!   on the other end of a connection.

/// Serde as the `Display` / `FromStr` string, so ids read the same in JSON,
/// logs and URLs.
macro_rules! serde_as_string {
    ($ty:ty) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

pub mod cert;
mod error;
pub mod key;
pub mod tls;

pub use cert::{verify_certificate, CertifiedKey, Role, RootCertificate, Serial, CLOCK_SKEW};
pub use error::PkiError;
pub use key::{KeyId, ParticipantKey};
pub use tls::{client_config, peer_certified_key, server_config, ClientAuth, TlsIdentity};
