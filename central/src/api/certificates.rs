//! Key certification: a participant posts a CSR (with its one-time
//! enrollment token, or as the operator) and gets a certificate signed by
//! central's root; anyone can fetch a certificate by key id and see whether
//! it is revoked; the operator revokes.

use super::auth::Caller;
use super::providers::{json_body, token_hash};
use super::rates::body_or_problem;
use super::{blocking, AppState};
use crate::ca::Validity;
use crate::db::store::{self, CertOwner, StoreError, StoredCertificate};
use crate::problem::Problem;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use diesel::Connection;
use provider_sdk::pki::{verify_certificate, Role};
use serde::{Deserialize, Serialize};

pub const DEFAULT_VALIDITY_DAYS: u32 = 365;
pub const MAX_VALIDITY_DAYS: u32 = 825;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    /// PEM `CERTIFICATE REQUEST`, Ed25519, signed by the key to certify.
    pub csr: String,
    /// The provider's one-time enrollment token (no client certificate yet).
    pub enrollment_token: Option<String>,
    /// Operator only: certify for this provider (absent: an operator key).
    pub provider_id: Option<i64>,
    pub validity_days: Option<u32>,
}

#[derive(Debug, Serialize)]
pub struct CertificateView {
    pub key_id: String,
    pub serial: String,
    pub status: &'static str,
    #[serde(flatten)]
    pub owner: CertOwner,
    pub subject_cn: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// PEM.
    pub certificate: String,
}

impl CertificateView {
    pub fn of(c: StoredCertificate, now: DateTime<Utc>) -> CertificateView {
        let status = if c.revoked_at.is_some() {
            "revoked"
        } else if now > c.not_after {
            "expired"
        } else if now < c.not_before {
            "not_yet_valid"
        } else {
            "valid"
        };
        CertificateView {
            key_id: c.key_id,
            serial: c.serial,
            status,
            owner: c.owner,
            subject_cn: c.subject_cn,
            not_before: c.not_before,
            not_after: c.not_after,
            revoked_at: c.revoked_at,
            certificate: c.cert_pem,
        }
    }
}

fn key_id_ok(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Failures inside the issuing transaction (it rolls back on any of them,
/// so a token is consumed only by a certificate actually stored).
enum IssueFailure {
    Problem(Problem),
    Store(StoreError),
}

impl From<diesel::result::Error> for IssueFailure {
    fn from(e: diesel::result::Error) -> Self {
        IssueFailure::Store(StoreError::from(e))
    }
}

impl From<StoreError> for IssueFailure {
    fn from(e: StoreError) -> Self {
        IssueFailure::Store(e)
    }
}

pub async fn issue(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let body = body_or_problem(body)?;
    let req: IssueRequest = json_body(&body)?;
    let days = req.validity_days.unwrap_or(DEFAULT_VALIDITY_DAYS);
    if !(1..=MAX_VALIDITY_DAYS).contains(&days) {
        return Err(Problem::bad_request(format!(
            "validity_days must be in 1..={MAX_VALIDITY_DAYS}"
        )));
    }
    let validity = Validity::days(days);
    // Who the certificate is for: decided before touching the database.
    enum For {
        Token(String),
        Operator,
        Provider(i64),
    }
    let target = match (&req.enrollment_token, req.provider_id) {
        (Some(_), Some(_)) => {
            return Err(Problem::bad_request(
                "give either enrollment_token or provider_id, not both",
            ))
        }
        (Some(t), None) => For::Token(token_hash(t)),
        (None, pid) => {
            caller.require_operator().map_err(|_| {
                Problem::forbidden(
                    "a CSR needs an enrollment token or the operator's client certificate",
                )
            })?;
            match pid {
                Some(id) if id > 0 => For::Provider(id),
                Some(_) => return Err(Problem::bad_request("provider_id must be positive")),
                None => For::Operator,
            }
        }
    };
    let db = state.db.clone();
    let ca = state.ca.clone();
    let csr = req.csr;
    let view = blocking(move || {
        let mut conn = db.conn()?;
        let now = Utc::now();
        let result = conn.transaction::<_, IssueFailure, _>(|conn| {
            let (role, owner) = match target {
                For::Token(hash) => {
                    let p = store::take_enrollment_token(conn, &hash)?.ok_or_else(|| {
                        IssueFailure::Problem(Problem::forbidden(
                            "enrollment token unknown or already used",
                        ))
                    })?;
                    let pid = u64::try_from(p.id)
                        .map_err(|_| IssueFailure::Problem(Problem::internal()))?;
                    (Role::Provider(pid), CertOwner::Provider(p.id))
                }
                For::Operator => (Role::Operator, CertOwner::Operator),
                For::Provider(id) => {
                    store::get_provider(conn, id)?;
                    let pid = u64::try_from(id)
                        .map_err(|_| IssueFailure::Problem(Problem::internal()))?;
                    (Role::Provider(pid), CertOwner::Provider(id))
                }
            };
            let issued = ca.certify_csr(&csr, role, validity).map_err(|e| {
                IssueFailure::Problem(Problem::bad_request(format!("CSR rejected: {e}")))
            })?;
            // Read back what was issued (subject, key id) from the
            // certificate itself, checked against the root like any other.
            let certified =
                verify_certificate(&issued.cert_der, ca.root_cert_der(), now).map_err(|e| {
                    tracing::error!(error = %e, "freshly issued certificate does not verify");
                    IssueFailure::Problem(Problem::internal())
                })?;
            let stored = StoredCertificate {
                key_id: issued.key_id.to_string(),
                serial: issued.serial.to_string(),
                owner,
                subject_cn: certified.subject_cn,
                cert_pem: issued.cert_pem.clone(),
                not_before: issued.not_before,
                not_after: issued.not_after,
                revoked_at: None,
            };
            store::insert_certificate(conn, &stored, now)?;
            Ok(stored)
        });
        match result {
            Ok(c) => Ok(CertificateView::of(c, now)),
            Err(IssueFailure::Problem(p)) => Err(p),
            Err(IssueFailure::Store(e)) => Err(Problem::from(e)),
        }
    })
    .await?;
    tracing::info!(key_id = %view.key_id, owner = ?view.owner, "certificate issued");
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

pub async fn show(
    State(state): State<AppState>,
    Path(key_id): Path<String>,
) -> Result<Json<CertificateView>, Problem> {
    if !key_id_ok(&key_id) {
        return Err(Problem::bad_request(
            "key id must be 32 lowercase hexadecimal characters",
        ));
    }
    let db = state.db.clone();
    let c = blocking(move || Ok(store::get_certificate(&mut *db.conn()?, &key_id)?)).await?;
    Ok(Json(CertificateView::of(c, Utc::now())))
}

pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(key_id): Path<String>,
) -> Result<Json<CertificateView>, Problem> {
    caller.require_operator()?;
    if !key_id_ok(&key_id) {
        return Err(Problem::bad_request(
            "key id must be 32 lowercase hexadecimal characters",
        ));
    }
    if let Ok(kid) = key_id.parse::<provider_sdk::pki::KeyId>() {
        // Forgotten before and after: a lookup racing the revocation
        // cannot leave the unrevoked state cached.
        state.ledger.certificates().forget(&kid);
    }
    let db = state.db.clone();
    let kid = key_id.clone();
    let c = blocking(move || {
        Ok(store::revoke_certificate(
            &mut *db.conn()?,
            &key_id,
            Utc::now(),
        )?)
    })
    .await?;
    if let Ok(kid) = kid.parse::<provider_sdk::pki::KeyId>() {
        state.ledger.certificates().forget(&kid);
    }
    tracing::warn!(key_id = %c.key_id, "certificate revoked");
    Ok(Json(CertificateView::of(c, Utc::now())))
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_ids() {
        assert!(super::key_id_ok("0123456789abcdef0123456789abcdef"));
        assert!(!super::key_id_ok("0123456789ABCDEF0123456789abcdef"));
        assert!(!super::key_id_ok("../etc/passwd"));
        assert!(!super::key_id_ok(""));
    }
}
