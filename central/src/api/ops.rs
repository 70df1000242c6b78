//! `/health`, `/metrics` and `/v1/ca`: open to any TLS client.

use super::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

#[derive(Serialize)]
pub struct Health {
    pub status: &'static str,
    pub database: &'static str,
    pub index: IndexHealth,
}

#[derive(Serialize)]
pub struct IndexHealth {
    pub entries: usize,
    pub providers: usize,
    /// Sum of the providers' rate versions in the live index: it changes
    /// with every accepted upload once the index has picked it up.
    pub rate_version: u64,
    pub generation: u64,
    pub built_at: chrono::DateTime<chrono::Utc>,
}

pub async fn health(State(state): State<AppState>) -> Response {
    let db = state.db.clone();
    let db_ok = tokio::task::spawn_blocking(move || db.ping())
        .await
        .unwrap_or(false);
    let snap = state.index.snapshot();
    let body = Health {
        status: if db_ok { "ok" } else { "degraded" },
        database: if db_ok { "reachable" } else { "unreachable" },
        index: IndexHealth {
            entries: snap.index.entry_count(),
            providers: snap.providers.len(),
            rate_version: snap.rate_version_sum,
            generation: snap.generation,
            built_at: snap.built_at,
        },
    };
    let status = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

pub async fn ca_certificate(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        state.ca.root_cert_pem().to_string(),
    )
        .into_response()
}
