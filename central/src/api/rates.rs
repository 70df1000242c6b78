//! Rate decks: `PUT` replaces a provider's whole deck (CSV or JSON), `PATCH`
//! applies a delta (JSON), `GET` returns the current deck (CSV or JSON by
//! `Accept`). Uploads are validated completely first (every bad line is
//! reported, nothing is stored), then written in one transaction; the route
//! index is rebuilt afterwards, off the request path.

use super::auth::Caller;
use super::{blocking, path_id, AppState};
use crate::db::store::{self, RateRow, RateVersion};
use crate::problem::{FieldError, Problem};
use crate::routing::row_of;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use provider_sdk::ratedeck::{DeckErrors, RateDeck, RateDelta};
use serde::Serialize;

/// The body, or 413 when over the configured cap / 400 when unreadable.
pub(crate) fn body_or_problem(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Problem> {
    body.map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(status, "request body exceeds the configured size limit")
        } else {
            Problem::new(status, format!("cannot read request body: {rejection}"))
        }
    })
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

fn deck_problem(errors: DeckErrors) -> Problem {
    let list: Vec<FieldError> = errors
        .errors
        .iter()
        .map(|e| FieldError {
            line: e.line,
            column: e.column.map(str::to_string),
            message: e.message.clone(),
        })
        .collect();
    let omitted = if errors.omitted > 0 {
        format!(" ({} more not listed)", errors.omitted)
    } else {
        String::new()
    };
    Problem::bad_request(format!(
        "rate deck rejected: {} error(s){omitted}; nothing was stored",
        errors.total()
    ))
    .with_errors(list)
}

fn unsupported(ct: &str, allowed: &str) -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("Content-Type {ct:?} not supported here; send {allowed}"),
    )
}

#[derive(Debug, Serialize)]
pub struct Accepted {
    pub provider_id: i64,
    #[serde(flatten)]
    pub version: RateVersion,
}

async fn store_upload(
    state: &AppState,
    id: i64,
    work: impl FnOnce(&mut crate::db::DbConnection) -> Result<RateVersion, store::StoreError>
        + Send
        + 'static,
) -> Result<Response, Problem> {
    let db = state.db.clone();
    let result = blocking(move || {
        let mut conn = db.conn()?;
        let version = work(&mut conn)?;
        // After commit: other instances rebuild too. A failed NOTIFY does
        // not undo the upload; they catch up on their next rebuild.
        if let Err(e) = crate::notify::announce(&mut conn) {
            tracing::warn!(error = %e, "NOTIFY after rate upload failed");
        }
        Ok(version)
    })
    .await;
    state.metrics.upload(result.is_ok());
    let version = result?;
    tracing::info!(provider = id, version = version.version, kind = ?version.kind, lines = version.line_count, "rate upload accepted");
    state.index.request_rebuild();
    Ok((
        StatusCode::OK,
        Json(Accepted {
            provider_id: id,
            version,
        }),
    )
        .into_response())
}

pub async fn replace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = path_id(&id)?;
    caller.require_owner(id)?;
    let body = body_or_problem(body)?;
    let ct = content_type(&headers);
    let parsed = match ct.as_str() {
        "text/csv" => {
            let b = body.clone();
            blocking(move || Ok(RateDeck::parse_csv(&b))).await?
        }
        "application/json" => {
            let b = body.clone();
            blocking(move || Ok(RateDeck::parse_json(&b))).await?
        }
        other => return Err(unsupported(other, "text/csv or application/json")),
    };
    let deck = match parsed {
        Ok(d) => d,
        Err(errors) => {
            state.metrics.upload(false);
            return Err(deck_problem(errors));
        }
    };
    let rows: Vec<RateRow> = deck.entries().iter().map(row_of).collect();
    store_upload(&state, id, move |conn| {
        store::replace_rates(conn, id, &rows, chrono::Utc::now())
    })
    .await
}

pub async fn delta(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = path_id(&id)?;
    caller.require_owner(id)?;
    let body = body_or_problem(body)?;
    let ct = content_type(&headers);
    if ct != "application/json" {
        return Err(unsupported(&ct, "application/json"));
    }
    let delta = match RateDelta::parse_json(&body) {
        Ok(d) => d,
        Err(errors) => {
            state.metrics.upload(false);
            return Err(deck_problem(errors));
        }
    };
    let upserts: Vec<RateRow> = delta.upsert.iter().map(row_of).collect();
    let deletes: Vec<String> = delta
        .delete
        .iter()
        .map(|p| p.digits().to_string())
        .collect();
    store_upload(&state, id, move |conn| {
        store::apply_delta(conn, id, &upserts, &deletes, chrono::Utc::now())
    })
    .await
}

/// A stored line as JSON (prices as exact decimal strings).
#[derive(Debug, Serialize)]
pub struct RateLine {
    pub prefix: String,
    pub rate_per_minute: rust_decimal::Decimal,
    pub connect_fee: rust_decimal::Decimal,
    pub first_increment: u32,
    pub next_increment: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_from: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.to_ascii_lowercase().contains("text/csv"))
        .unwrap_or(false)
}

/// Writes rows in the upload CSV format (with header), so a downloaded
/// deck can be uploaded again unchanged.
pub fn to_csv(rows: &[RateRow]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "prefix",
        "rate_per_minute",
        "connect_fee",
        "first_increment",
        "next_increment",
        "effective_from",
        "description",
    ])?;
    for r in rows {
        w.write_record([
            r.prefix.clone(),
            r.rate_per_minute.normalize().to_string(),
            r.connect_fee.normalize().to_string(),
            r.first_increment.to_string(),
            r.next_increment.to_string(),
            r.effective_from
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                .unwrap_or_default(),
            r.description.clone().unwrap_or_default(),
        ])?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

pub async fn current(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let id = path_id(&id)?;
    caller.require_owner(id)?;
    let db = state.db.clone();
    let rows = blocking(move || {
        let mut conn = db.conn()?;
        store::get_provider(&mut conn, id)?;
        Ok(store::provider_rates(&mut conn, id)?)
    })
    .await?;
    if wants_csv(&headers) {
        let body = to_csv(&rows).map_err(|e| {
            tracing::error!(error = %e, "CSV encoding failed");
            Problem::internal()
        })?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response());
    }
    let lines: Vec<RateLine> = rows
        .into_iter()
        .map(|r| RateLine {
            prefix: r.prefix,
            rate_per_minute: r.rate_per_minute,
            connect_fee: r.connect_fee,
            first_increment: r.first_increment,
            next_increment: r.next_increment,
            effective_from: r.effective_from,
            description: r.description,
        })
        .collect();
    Ok(Json(lines).into_response())
}

pub async fn versions(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<RateVersion>>, Problem> {
    let id = path_id(&id)?;
    caller.require_owner(id)?;
    let db = state.db.clone();
    let v = blocking(move || {
        let mut conn = db.conn()?;
        store::get_provider(&mut conn, id)?;
        Ok(store::rate_versions(&mut conn, id)?)
    })
    .await?;
    Ok(Json(v))
}
