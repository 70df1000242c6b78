//! Provider directory: the operator registers, lists, suspends and resumes
//! providers; a provider may read its own record.

use super::auth::Caller;
use super::{blocking, path_id, AppState};
use crate::db::store::{self, NewProvider, Provider, ProviderStatus, SipAddress};
use crate::problem::Problem;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use provider_sdk::money::Currency;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub name: String,
    pub sip_addresses: Vec<SipAddress>,
    pub currency: String,
    pub contact: String,
}

#[derive(Debug, Serialize)]
pub struct Registered {
    #[serde(flatten)]
    pub provider: Provider,
    /// One-time token the provider sends with its CSR; shown only here.
    pub enrollment_token: String,
}

/// SHA-256 (hex) of an enrollment token: only the hash is stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_token() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    format!("enr_{}", hex::encode(raw))
}

/// Checks `host:port` / `[v6]:port`: a non-empty host of sane characters and
/// a port 1..=65535.
fn check_address(a: &SipAddress) -> Result<(), String> {
    let s = a.address.trim();
    if s != a.address || s.is_empty() || s.len() > 255 {
        return Err(format!("SIP address {:?}: expected host:port", a.address));
    }
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("SIP address {s:?}: missing :port"))?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(format!("SIP address {s:?}: bad port {port:?}")),
    }
    let ok_host = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !ok_host {
        return Err(format!("SIP address {s:?}: bad host {host:?}"));
    }
    Ok(())
}

fn validate(req: RegisterRequest) -> Result<NewProvider, Problem> {
    let name = req.name.trim().to_string();
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(Problem::bad_request(
            "name must be 1..=200 printable characters",
        ));
    }
    if req.sip_addresses.is_empty() || req.sip_addresses.len() > 16 {
        return Err(Problem::bad_request(
            "sip_addresses must list 1..=16 addresses",
        ));
    }
    for a in &req.sip_addresses {
        check_address(a).map_err(Problem::bad_request)?;
    }
    let currency = Currency::parse(&req.currency)
        .map_err(|e| Problem::bad_request(format!("currency: {e}")))?;
    let contact = req.contact.trim().to_string();
    if contact.is_empty() || contact.len() > 500 || contact.chars().any(char::is_control) {
        return Err(Problem::bad_request(
            "contact must be 1..=500 printable characters",
        ));
    }
    Ok(NewProvider {
        name,
        sip_addresses: req.sip_addresses,
        currency: currency.to_string(),
        contact,
    })
}

/// Parses a JSON body with a clear 400 for syntax and shape errors.
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(body).map_err(|e| Problem::bad_request(format!("invalid JSON: {e}")))
}

pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, Problem> {
    caller.require_operator()?;
    let body = super::rates::body_or_problem(body)?;
    let new = validate(json_body(&body)?)?;
    let token = new_token();
    let hash = token_hash(&token);
    let db = state.db.clone();
    let provider = blocking(move || {
        let mut conn = db.conn()?;
        Ok(store::insert_provider(
            &mut conn,
            &new,
            &hash,
            chrono::Utc::now(),
        )?)
    })
    .await?;
    tracing::info!(provider = provider.id, name = %provider.name, "provider registered");
    Ok((
        StatusCode::CREATED,
        Json(Registered {
            provider,
            enrollment_token: token,
        }),
    )
        .into_response())
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Provider>>, Problem> {
    caller.require_operator()?;
    let db = state.db.clone();
    let all = blocking(move || Ok(store::list_providers(&mut *db.conn()?)?)).await?;
    Ok(Json(all))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Provider>, Problem> {
    let id = path_id(&id)?;
    caller.require_owner(id)?;
    let db = state.db.clone();
    let p = blocking(move || Ok(store::get_provider(&mut *db.conn()?, id)?)).await?;
    Ok(Json(p))
}

async fn set_status(
    state: AppState,
    caller: Caller,
    id: String,
    status: ProviderStatus,
) -> Result<Json<Provider>, Problem> {
    caller.require_operator()?;
    let id = path_id(&id)?;
    let db = state.db.clone();
    let p = blocking(move || {
        let mut conn = db.conn()?;
        let p = store::set_provider_status(&mut conn, id, status)?;
        crate::notify::announce(&mut conn).map_err(crate::db::DbError::from)?;
        Ok(p)
    })
    .await?;
    tracing::info!(provider = id, ?status, "provider status changed");
    state.index.request_rebuild();
    Ok(Json(p))
}

pub async fn suspend(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Provider>, Problem> {
    set_status(state, caller, id, ProviderStatus::Suspended).await
}

pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Provider>, Problem> {
    set_status(state, caller, id, ProviderStatus::Active).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::store::Transport;

    fn addr(s: &str) -> SipAddress {
        SipAddress {
            address: s.into(),
            transport: Transport::Udp,
        }
    }

    #[test]
    fn addresses() {
        assert!(check_address(&addr("127.0.0.1:5060")).is_ok());
        assert!(check_address(&addr("[::1]:5061")).is_ok());
        assert!(check_address(&addr("sip.example.net:5060")).is_ok());
        for bad in [
            "",
            "host",
            "host:0",
            "host:99999",
            "ho st:5060",
            ":5060",
            " a:1",
        ] {
            assert!(check_address(&addr(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let a = new_token();
        assert_ne!(a, new_token());
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }
}
