//! `GET /v1/certificates/{key_id}`: a participant's certificate and whether
//! central has revoked it; [`CentralClient::prefetch`] keeps the
//! [`CertificateCache`](super::CertificateCache) filled for ticket verification.

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::client::CentralClient;
use super::error::CentralError;
use crate::pki::cert::cert_der_from_pem;
use crate::pki::{KeyId, Role, Serial};
use crate::ticket::{jws, CertificateStatus, TicketError, PPT_RECEIPT, PPT_TICKET};

/// A certificate's standing at central.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertificateState {
    Valid,
    Revoked,
    Expired,
    NotYetValid,
}

/// A certificate as central serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    pub key_id: KeyId,
    pub serial: Serial,
    pub state: CertificateState,
    pub role: Role,
    pub subject_cn: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// PEM, as central sent it.
    pub pem: String,
    /// The same certificate, DER.
    pub der: Vec<u8>,
}

impl CertificateInfo {
    /// What [`TicketVerifier`](crate::ticket::TicketVerifier) needs (it
    /// checks the chain and validity itself).
    pub fn status(&self) -> CertificateStatus {
        CertificateStatus {
            der: self.der.clone(),
            revoked: self.state == CertificateState::Revoked,
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct RawCertificate {
    key_id: KeyId,
    serial: Serial,
    status: CertificateState,
    role: String,
    #[serde(default)]
    provider_id: Option<u64>,
    subject_cn: String,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    #[serde(default)]
    revoked_at: Option<DateTime<Utc>>,
    certificate: String,
}

impl RawCertificate {
    pub(crate) fn into_info(self) -> Result<CertificateInfo, String> {
        let role = match (self.role.as_str(), self.provider_id) {
            ("provider", Some(id)) => Role::Provider(id),
            ("operator", None) => Role::Operator,
            ("server", None) => Role::Server,
            (role, id) => return Err(format!("role {role:?} with provider_id {id:?}")),
        };
        let der = cert_der_from_pem(&self.certificate)
            .map_err(|e| format!("certificate: {e}"))?
            .to_vec();
        let certified = key_id_of_certificate(&der)?;
        if certified != self.key_id {
            return Err(format!(
                "the certificate is for key {certified}, not {}",
                self.key_id
            ));
        }
        Ok(CertificateInfo {
            key_id: self.key_id,
            serial: self.serial,
            state: self.status,
            role,
            subject_cn: self.subject_cn,
            not_before: self.not_before,
            not_after: self.not_after,
            revoked_at: self.revoked_at,
            pem: self.certificate,
            der,
        })
    }
}

/// The key id of the Ed25519 key a certificate holds (chain and validity
/// are the verifier's business; this only ties the answer to the request).
fn key_id_of_certificate(der: &[u8]) -> Result<KeyId, String> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| format!("certificate: {e}"))?;
    let raw: [u8; 32] = cert
        .public_key()
        .subject_public_key
        .data
        .as_ref()
        .try_into()
        .map_err(|_| "certificate key is not an Ed25519 key".to_owned())?;
    let key = VerifyingKey::from_bytes(&raw)
        .map_err(|_| "certificate key is not a valid Ed25519 key".to_owned())?;
    Ok(KeyId::of(&key))
}

impl CentralClient {
    /// The certificate of `kid` with its standing (no client certificate
    /// needed). A key central never certified is [`CentralError::Status`] 404.
    pub async fn certificate(&self, kid: &KeyId) -> Result<CertificateInfo, CentralError> {
        let path = format!("/v1/certificates/{kid}");
        let answer = self
            .send(Method::GET, &path, self.timeouts().request, |r| r)
            .await?;
        let raw: RawCertificate = answer.json(&[StatusCode::OK])?;
        if raw.key_id != *kid {
            return Err(answer.bad(format!("answered key {} for {kid}", raw.key_id)));
        }
        raw.into_info().map_err(|e| answer.bad(e))
    }

    /// Makes sure the [certificate cache](Self::certificate_cache) can
    /// answer for `kid`: nothing to do while its entry is fresh; otherwise
    /// fetches it from central. "Unknown key" is an answer (remembered for
    /// the negative TTL), not an error. When central cannot be reached a
    /// valid entry is marked so that it may be served stale for a while
    /// (see [`CertificateCache`](super::CertificateCache)); other errors
    /// leave the cache as it was.
    pub async fn prefetch(&self, kid: &KeyId) -> Result<(), CentralError> {
        if self.certificate_cache().skip_fetch(kid) {
            return Ok(());
        }
        match self.certificate(kid).await {
            Ok(info) => {
                self.certificate_cache().record(kid, Some(info.status()));
                Ok(())
            }
            Err(e) if e.status() == Some(404) => {
                self.certificate_cache().record(kid, None);
                Ok(())
            }
            Err(e) => {
                if matches!(
                    e,
                    CentralError::Unreachable { .. } | CentralError::Timeout { .. }
                ) || e.status().is_some_and(|s| s >= 500)
                {
                    self.certificate_cache().mark_unreachable(kid);
                }
                Err(e)
            }
        }
    }

    /// [`prefetch`](Self::prefetch) for the signer of a ticket or receipt
    /// (compact JWS); returns its key id. Call it before
    /// [`TicketVerifier::verify_ticket`](crate::ticket::TicketVerifier::verify_ticket).
    /// A token that does not decode is [`CentralError::Token`]: the
    /// verifier would refuse it anyway, with the same reason.
    pub async fn prefetch_for_token(&self, token: &str) -> Result<KeyId, CentralError> {
        let kid = signer_of(token)?;
        self.prefetch(&kid).await?;
        Ok(kid)
    }
}

/// The `kid` of a ticket or a receipt.
fn signer_of(token: &str) -> Result<KeyId, TicketError> {
    match jws::decode(token, PPT_TICKET) {
        Ok(d) => Ok(d.kid),
        Err(TicketError::WrongTokenType { .. }) => jws::decode(token, PPT_RECEIPT).map(|d| d.kid),
        Err(e) => Err(e),
    }
}
