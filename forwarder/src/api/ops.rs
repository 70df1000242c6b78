//! `/health`, `/metrics` (open to any TLS client) and `/v1/me`.

use super::auth::Caller;
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
}

pub async fn health(State(state): State<AppState>) -> Response {
    let db = state.db.clone();
    let db_ok = tokio::task::spawn_blocking(move || db.ping())
        .await
        .unwrap_or(false);
    let body = Health {
        status: if db_ok { "ok" } else { "degraded" },
        database: if db_ok { "reachable" } else { "unreachable" },
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

/// Who the credential of this request belongs to.
pub async fn me(caller: Caller) -> Json<Caller> {
    Json(caller)
}
