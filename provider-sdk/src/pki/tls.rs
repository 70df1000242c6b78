//! rustls configurations (ring provider) for mutual TLS between participants
//! and central, with certificates issued by central's root.
//!
//! - A client builds [`client_config`] from the pinned root PEM and, once
//!   enrolled, its own certificate and key ([`TlsIdentity`]).
//! - Central builds [`server_config`] with [`ClientAuth::Optional`]: every
//!   TLS client may connect, and those presenting a certificate must present
//!   one issued by the root. After the handshake, [`peer_certified_key`]
//!   tells the server who is connected (and in which role).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, CommonState, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::cert::cert_der_from_pem;
use super::{CertifiedKey, ParticipantKey, PkiError, RootCertificate};

/// Whether a TLS server asks its clients for certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Never asks.
    None,
    /// Asks; a client without a certificate is let in (the application
    /// decides what it may do), one with a certificate not issued by the
    /// root is refused in the handshake.
    Optional,
    /// Refuses clients without a certificate issued by the root.
    Required,
}

/// A certificate chain and its private key, as presented in a handshake.
#[derive(Debug)]
pub struct TlsIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        TlsIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl TlsIdentity {
    /// From PEM text: the certificate (chain) and a PKCS#8 Ed25519 key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<TlsIdentity, PkiError> {
        let key = ParticipantKey::from_pkcs8_pem(key_pem)?;
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PkiError::BadPem(e.to_string()))?;
        if chain.is_empty() {
            return Err(PkiError::BadPem("no CERTIFICATE block found".into()));
        }
        Self::new(chain, &key)
    }

    /// From a certificate chain (leaf first) and the leaf's key.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: &ParticipantKey,
    ) -> Result<TlsIdentity, PkiError> {
        let der = key.to_pkcs8_der()?;
        let key =
            PrivateKeyDer::try_from(der.to_vec()).map_err(|e| PkiError::MalformedKey(e.into()))?;
        Ok(TlsIdentity { chain, key })
    }

    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
}

/// The process-independent ring provider (the design's single provider).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn root_store(root_pem: &str) -> Result<RootCertStore, PkiError> {
    // Parse through RootCertificate so a bad root is reported as such.
    let root = RootCertificate::from_der(cert_der_from_pem(root_pem)?.as_ref())?;
    let mut store = RootCertStore::empty();
    store
        .add(root.der().clone())
        .map_err(|e| PkiError::InvalidRoot(e.to_string()))?;
    Ok(store)
}

fn tls_error(e: rustls::Error) -> PkiError {
    PkiError::Tls(e.to_string())
}

/// A client configuration that trusts only the pinned root and, when
/// `identity` is given, presents that certificate for mutual TLS.
pub fn client_config(
    root_pem: &str,
    identity: Option<&TlsIdentity>,
) -> Result<ClientConfig, PkiError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?
        .with_root_certificates(root_store(root_pem)?);
    match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .map_err(tls_error),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// A server configuration presenting `identity` and checking client
/// certificates against the root as `client_auth` says.
pub fn server_config(
    root_pem: &str,
    identity: &TlsIdentity,
    client_auth: ClientAuth,
) -> Result<ServerConfig, PkiError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?;
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional | ClientAuth::Required => {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(root_store(root_pem)?),
                provider,
            );
            let verifier = if client_auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| PkiError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(tls_error)
}

/// Who is on the other end of an established connection: `None` when the
/// peer presented no certificate, otherwise its certificate verified again
/// against `root` (rustls checked the chain; this also extracts the key id
/// and role, and enforces the role's key usage).
///
/// Pass `&conn` for a `rustls::ServerConnection` (with tokio-rustls:
/// `stream.get_ref().1`); it dereferences to [`CommonState`].
pub fn peer_certified_key(
    conn: &CommonState,
    root: &RootCertificate,
    now: DateTime<Utc>,
) -> Result<Option<CertifiedKey>, PkiError> {
    match conn.peer_certificates().and_then(|chain| chain.first()) {
        None => Ok(None),
        Some(leaf) => root.verify(leaf.as_ref(), now).map(Some),
    }
}
