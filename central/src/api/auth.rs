//! Who is calling: derived from the TLS client certificate.
//!
//! rustls already checked the chain to central's root; here the certificate
//! is verified again for its role and validity ([`verify_certificate`]), and
//! looked up in the database: a certificate central never recorded, or one
//! that is revoked, is refused (403).

use super::{blocking, AppState};
use crate::db::store::{self, StoreError};
use crate::problem::Problem;
use crate::server::PeerCertificate;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use provider_sdk::pki::{verify_certificate, Role};

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// TLS without a client certificate.
    Anonymous,
    Operator {
        key_id: String,
    },
    Provider {
        id: i64,
        key_id: String,
    },
}

impl Caller {
    pub fn require_operator(&self) -> Result<(), Problem> {
        match self {
            Caller::Operator { .. } => Ok(()),
            Caller::Anonymous => Err(Problem::forbidden(
                "this operation needs the operator's client certificate",
            )),
            Caller::Provider { .. } => Err(Problem::forbidden("only the operator may do this")),
        }
    }

    /// The operator, or the provider `id` itself.
    pub fn require_owner(&self, id: i64) -> Result<(), Problem> {
        match self {
            Caller::Operator { .. } => Ok(()),
            Caller::Provider { id: own, .. } if *own == id => Ok(()),
            Caller::Provider { .. } => Err(Problem::forbidden(
                "a provider may read and change only its own entries",
            )),
            Caller::Anonymous => Err(Problem::forbidden(
                "this operation needs a client certificate issued by central",
            )),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, Problem> {
        let Some(cert) = parts
            .extensions
            .get::<PeerCertificate>()
            .and_then(|p| p.0.clone())
        else {
            return Ok(Caller::Anonymous);
        };
        let now = chrono::Utc::now();
        let certified = verify_certificate(cert.as_ref(), state.ca.root_cert_der(), now)
            .map_err(|e| Problem::forbidden(format!("client certificate not accepted: {e}")))?;
        let key_id = certified.key_id.to_string();
        let db = state.db.clone();
        let lookup = key_id.clone();
        let stored = blocking(move || {
            let mut conn = db.conn()?;
            match store::get_certificate(&mut conn, &lookup) {
                Ok(c) => Ok(Some(c)),
                Err(StoreError::NotFound(_)) => Ok(None),
                Err(e) => Err(Problem::from(e)),
            }
        })
        .await?;
        let Some(stored) = stored else {
            return Err(Problem::forbidden(
                "client certificate is not on record at central",
            ));
        };
        if stored.revoked_at.is_some() {
            return Err(Problem::forbidden("client certificate has been revoked"));
        }
        match certified.role {
            Role::Operator => Ok(Caller::Operator { key_id }),
            Role::Provider(id) => {
                let id = i64::try_from(id)
                    .map_err(|_| Problem::forbidden("certificate names no valid provider"))?;
                Ok(Caller::Provider { id, key_id })
            }
            Role::Server => Err(Problem::forbidden(
                "a server certificate cannot be used as a client credential",
            )),
        }
    }
}
