//! The HTTP API under `/v1/` (plus `/health` and `/metrics`).
//!
//! [`router`] builds the axum router from [`endpoints`], the single table of
//! (method, path, handler) that `central/openapi.yaml` must describe (a test
//! checks it). Every error is problem+json ([`crate::problem`]).

pub mod auth;
pub mod certificates;
pub mod ops;
pub mod providers;
pub mod rates;
pub mod routes;
pub mod settlements;
pub mod tickets;

use crate::ca::CertificateAuthority;
use crate::config::Config;
use crate::db::Database;
use crate::ledger::Ledger;
use crate::metrics::{Metrics, RequestLabels};
use crate::problem::Problem;
use crate::routing::LiveIndex;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::Router;
use std::sync::Arc;

/// Everything handlers share.
#[derive(Clone)]
pub struct AppState {
    pub db: Database,
    pub ca: Arc<CertificateAuthority>,
    pub index: Arc<LiveIndex>,
    pub metrics: Arc<Metrics>,
    pub config: Arc<Config>,
    /// The settlement ledger's verifier (certificates from `db`).
    pub ledger: Arc<Ledger>,
}

/// Every endpoint: method, path template, handler.
pub fn endpoints() -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    use axum::routing::{get, patch, post, put};
    vec![
        (Method::GET, "/health", get(ops::health)),
        (Method::GET, "/metrics", get(ops::metrics)),
        (Method::GET, "/v1/ca", get(ops::ca_certificate)),
        (Method::GET, "/v1/routes", get(routes::query)),
        (Method::POST, "/v1/providers", post(providers::register)),
        (Method::GET, "/v1/providers", get(providers::list)),
        (Method::GET, "/v1/providers/{id}", get(providers::show)),
        (
            Method::POST,
            "/v1/providers/{id}/suspend",
            post(providers::suspend),
        ),
        (
            Method::POST,
            "/v1/providers/{id}/resume",
            post(providers::resume),
        ),
        (Method::PUT, "/v1/providers/{id}/rates", put(rates::replace)),
        (
            Method::PATCH,
            "/v1/providers/{id}/rates",
            patch(rates::delta),
        ),
        (Method::GET, "/v1/providers/{id}/rates", get(rates::current)),
        (
            Method::GET,
            "/v1/providers/{id}/rates/versions",
            get(rates::versions),
        ),
        (Method::POST, "/v1/certificates", post(certificates::issue)),
        (
            Method::GET,
            "/v1/certificates/{key_id}",
            get(certificates::show),
        ),
        (
            Method::POST,
            "/v1/certificates/{key_id}/revoke",
            post(certificates::revoke),
        ),
        (Method::POST, "/v1/tickets", post(tickets::submit)),
        (Method::GET, "/v1/settlements", get(settlements::report)),
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
    r.fallback(not_found)
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
        // Storage work already handed to a blocking thread still finishes:
        // say so, so a client checks before retrying an upload.
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request timed out; an upload may still have been applied (see its rates/versions)",
        )
        .into_response(),
    }
}

/// The path template that served a response (bounded metric labels).
#[derive(Clone, Copy)]
struct RouteTemplate(&'static str);

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Static label values: no allocation per request.
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

/// Runs blocking storage work off the async threads.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, Problem>
where
    F: FnOnce() -> Result<T, Problem> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "blocking task failed");
            Err(Problem::internal())
        }
    }
}

/// Parses a numeric path id with a clear 400.
pub(crate) fn path_id(raw: &str) -> Result<i64, Problem> {
    raw.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| {
        Problem::bad_request(format!(
            "provider id must be a positive integer, got {raw:?}"
        ))
    })
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
            // The path's operations: indented lines until the next path.
            let op = format!("    {}:", method.as_str().to_ascii_lowercase());
            let found = lines[start + 1..]
                .iter()
                .take_while(|l| l.starts_with("   ") || l.is_empty())
                .any(|l| *l == op);
            assert!(found, "{method} {path} missing from openapi.yaml");
        }
    }

    #[test]
    fn path_ids() {
        assert_eq!(super::path_id("42").unwrap(), 42);
        for bad in ["0", "-1", "x", "", "99999999999999999999"] {
            assert_eq!(super::path_id(bad).unwrap_err().status, 400);
        }
    }
}
