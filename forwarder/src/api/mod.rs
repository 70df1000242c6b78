//! The HTTPS JSON API under `/v1/` (plus `/health` and `/metrics`).
//!
//! [`router`] builds the axum router from [`endpoints`], the single table
//! of (method, path, handler) that `forwarder/openapi.yaml` must describe
//! (a test checks it). Who may call what is decided in [`auth`]: the
//! operator (client certificate from the forwarder's CA) everything, a
//! subscriber (bearer token) only its own numbers, rules, calls, account and
//! statements.
//! Every error is problem+json ([`crate::problem`]).

pub mod account;
pub mod auth;
pub mod calls;
pub mod extract;
pub mod numbers;
pub mod ops;
pub mod rules;
pub mod statements;
pub mod subscribers;

use crate::config::Config;
use crate::db::Database;
use crate::metrics::{Metrics, RequestLabels};
use crate::problem::Problem;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Router;
use provider_sdk::pki::RootCertificate;
use std::sync::Arc;

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    pub db: Database,
    /// The forwarder's CA root: operator certificates must chain to it.
    pub root: Arc<RootCertificate>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<Config>,
}

/// Every endpoint: method, path template, handler.
pub fn endpoints() -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    use axum::routing::{delete, get, patch, post, put};
    vec![
        (Method::GET, "/health", get(ops::health)),
        (Method::GET, "/metrics", get(ops::metrics)),
        (Method::GET, "/v1/me", get(ops::me)),
        (Method::GET, "/v1/subscribers", get(subscribers::list)),
        (Method::POST, "/v1/subscribers", post(subscribers::add)),
        (Method::GET, "/v1/subscribers/{id}", get(subscribers::show)),
        (
            Method::PATCH,
            "/v1/subscribers/{id}",
            patch(subscribers::change),
        ),
        (
            Method::POST,
            "/v1/subscribers/{id}/suspend",
            post(subscribers::suspend),
        ),
        (
            Method::POST,
            "/v1/subscribers/{id}/resume",
            post(subscribers::resume),
        ),
        (
            Method::POST,
            "/v1/subscribers/{id}/close",
            post(subscribers::close),
        ),
        (
            Method::POST,
            "/v1/subscribers/{id}/token",
            post(subscribers::token),
        ),
        (
            Method::GET,
            "/v1/subscribers/{id}/numbers",
            get(numbers::list),
        ),
        (
            Method::POST,
            "/v1/subscribers/{id}/numbers",
            post(numbers::add),
        ),
        (
            Method::DELETE,
            "/v1/numbers/{number}",
            delete(numbers::remove),
        ),
        (Method::GET, "/v1/subscribers/{id}/rules", get(rules::show)),
        (
            Method::PUT,
            "/v1/subscribers/{id}/rules",
            put(rules::replace),
        ),
        (Method::GET, "/v1/subscribers/{id}/calls", get(calls::list)),
        (
            Method::GET,
            "/v1/subscribers/{id}/calls/{call_id}",
            get(calls::show),
        ),
        (
            Method::GET,
            "/v1/subscribers/{id}/balance",
            get(account::balance),
        ),
        (
            Method::GET,
            "/v1/subscribers/{id}/ledger",
            get(account::entries),
        ),
        (
            Method::POST,
            "/v1/subscribers/{id}/ledger",
            post(account::record),
        ),
        (
            Method::GET,
            "/v1/subscribers/{id}/statements",
            get(statements::list),
        ),
        (
            Method::GET,
            "/v1/subscribers/{id}/statements/{statement_id}",
            get(statements::show),
        ),
    ]
}

/// The full router with middleware (metrics, timeout) and problem+json
/// fallbacks.
pub fn router(state: AppState) -> Router {
    // One method router per path (merged), so a wrong method gets a 405
    // problem instead of axum's empty answer.
    let mut by_path: std::collections::BTreeMap<&str, MethodRouter<AppState>> =
        std::collections::BTreeMap::new();
    for (_, path, handler) in endpoints() {
        let merged = match by_path.remove(path) {
            Some(existing) => existing.merge(handler),
            None => handler,
        };
        by_path.insert(path, merged);
    }
    let mut r: Router<AppState> = Router::new();
    for (path, handler) in by_path {
        // Tag responses with the route template for the request metrics.
        let tag = middleware::map_response(move |mut res: Response| async move {
            res.extensions_mut().insert(RouteTemplate(path));
            res
        });
        r = r.route(path, handler.fallback(method_not_allowed).layer(tag));
    }
    let limit = state.config.max_body_bytes;
    r.fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), timeout))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn not_found() -> Problem {
    Problem::not_found("no such endpoint")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}

async fn timeout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(state.config.request_timeout, next.run(req)).await {
        Ok(res) => res,
        // Storage work already handed to a blocking thread still finishes
        // (in its own transaction: all or nothing).
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request timed out; a change may still have been applied",
        )
        .into_response(),
    }
}

/// The path template that served a response (bounded metric labels).
#[derive(Clone, Copy)]
struct RouteTemplate(&'static str);

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let res = next.run(req).await;
    let route = res
        .extensions()
        .get::<RouteTemplate>()
        .map_or("unmatched", |t| t.0);
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: res.status().as_u16(),
        })
        .inc();
    res
}

/// Runs blocking storage work off the async threads with a pooled
/// connection.
pub(crate) async fn with_db<T, F>(state: &AppState, f: F) -> Result<T, Problem>
where
    F: FnOnce(&mut crate::db::DbConnection) -> Result<T, Problem> + Send + 'static,
    T: Send + 'static,
{
    let db = state.db.clone();
    match tokio::task::spawn_blocking(move || {
        let mut conn = db.conn()?;
        f(&mut conn)
    })
    .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "blocking task failed");
            Err(Problem::internal())
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every (method, path) the router serves is described in openapi.yaml.
    #[test]
    fn every_route_is_in_openapi() {
        let doc = include_str!("../../openapi.yaml");
        let lines: Vec<&str> = doc.lines().collect();
        for (method, path, _) in super::endpoints() {
            let header = format!("  {path}:");
            let start = lines
                .iter()
                .position(|l| *l == header)
                .unwrap_or_else(|| panic!("{path} missing from openapi.yaml"));
            let op = format!("    {}:", method.as_str().to_ascii_lowercase());
            let found = lines[start + 1..]
                .iter()
                .take_while(|l| l.starts_with("   ") || l.is_empty())
                .any(|l| *l == op);
            assert!(found, "{method} {path} missing from openapi.yaml");
        }
    }
}
