//! Who is calling, and what they may do.
//!
//! - **Operator**: a TLS client certificate issued by the forwarder's CA
//!   with the operator role, on record and not revoked. May do everything.
//! - **Subscriber**: `Authorization: Bearer fwd_…`, a token issued by
//!   `forwarder credential subscriber ID` (stored hashed). May read its own
//!   subscriber, numbers, calls, balance and ledger, and read and replace
//!   its own rules.
//! - **Anonymous**: neither. May read `/health` and `/metrics` only.
//!
//! Anything not allowed is 403; a token that is presented but unknown or
//! revoked is 401; a client certificate that does not verify is 403.

use super::{with_db, AppState};
use crate::problem::Problem;
use crate::server::PeerCertificate;
use crate::store::credentials;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use provider_sdk::pki::Role;
use serde::Serialize;

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Caller {
    Anonymous,
    Operator { key_id: String },
    Subscriber { subscriber_id: i64 },
}

impl Caller {
    pub fn require_operator(&self) -> Result<(), Problem> {
        match self {
            Caller::Operator { .. } => Ok(()),
            Caller::Anonymous => Err(Problem::forbidden(
                "this operation needs the operator's client certificate",
            )),
            Caller::Subscriber { .. } => Err(Problem::forbidden("only the operator may do this")),
        }
    }

    /// The operator, or subscriber `id` itself.
    pub fn require_access(&self, id: i64) -> Result<(), Problem> {
        match self {
            Caller::Operator { .. } => Ok(()),
            Caller::Subscriber { subscriber_id } if *subscriber_id == id => Ok(()),
            Caller::Subscriber { .. } => Err(Problem::forbidden(
                "a subscriber may see only its own account",
            )),
            Caller::Anonymous => Err(Problem::forbidden(
                "this operation needs a credential: the operator's client certificate or a subscriber's bearer token",
            )),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, Problem> {
        if let Some(cert) = parts
            .extensions
            .get::<PeerCertificate>()
            .and_then(|p| p.0.clone())
        {
            let certified = state
                .root
                .verify(cert.as_ref(), chrono::Utc::now())
                .map_err(|e| Problem::forbidden(format!("client certificate not accepted: {e}")))?;
            if certified.role != Role::Operator {
                return Err(Problem::forbidden(
                    "only operator certificates are accepted as client credentials",
                ));
            }
            let key_id = certified.key_id.to_string();
            let lookup = key_id.clone();
            let active = with_db(state, move |conn| {
                Ok(credentials::operator_key_active(conn, &lookup)?)
            })
            .await?;
            if !active {
                return Err(Problem::forbidden(
                    "client certificate is not on record or has been revoked",
                ));
            }
            return Ok(Caller::Operator { key_id });
        }
        let Some(auth) = parts.headers.get(header::AUTHORIZATION) else {
            return Ok(Caller::Anonymous);
        };
        let token = auth
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .ok_or_else(|| Problem::unauthorized("Authorization must be \"Bearer <token>\""))?
            .to_string();
        let found = with_db(state, move |conn| {
            Ok(credentials::subscriber_for_token(conn, &token)?)
        })
        .await?;
        match found {
            Some(subscriber_id) => Ok(Caller::Subscriber { subscriber_id }),
            None => Err(Problem::unauthorized("unknown or revoked token")),
        }
    }
}
