//! Metrics of the call path, served with `/health` over plain HTTP at
//! `[sip] metrics_listen` (for a Prometheus on the operator's network; the
//! API's `/metrics` carries the API's own).
//!
//! | metric | what |
//! |---|---|
//! | `forwarder_calls_offered_total` | INVITEs that asked for a call |
//! | `forwarder_calls_refused_total{status}` | refused before any provider was tried (404 unknown number, 403, 402, 486, 480, 503 …) |
//! | `forwarder_calls_answered_total` | calls a provider's callee answered |
//! | `forwarder_calls_failed_total{status}` | admitted calls never answered, by the final status the caller got (487: cancelled) |
//! | `forwarder_attempts_total{provider,outcome}` | attempts through each provider: `answered`, `rejected`, `timeout`, `unreachable`, `cancelled` |
//! | `forwarder_failovers_total{provider}` | attempts that failed and were followed by another provider |
//! | `forwarder_active_calls` | admitted calls not yet ended |
//! | `forwarder_post_dial_delay_seconds` | caller's INVITE in → first INVITE out (histogram) |
//! | `forwarder_route_lookups_total{result}` | `cached`, `central` (a miss, asked of central), `stale` (central unreachable, old answer used), `unavailable`, `none` (no provider) |
//! | `forwarder_probe_rtt_seconds{provider}` | the OPTIONS round trip (EWMA) last used for a provider |
//!
//! Provider labels are provider names from central: their number is the
//! number of providers, not of calls.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttemptLabels {
    pub provider: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    pub result: &'static str,
}

/// The call path's counters (cheap to update: atomics behind the labels).
pub struct CallMetrics {
    registry: Registry,
    pub offered: Counter,
    pub refused: Family<StatusLabels, Counter>,
    pub answered: Counter,
    pub failed: Family<StatusLabels, Counter>,
    pub attempts: Family<AttemptLabels, Counter>,
    pub failovers: Family<ProviderLabels, Counter>,
    pub active: Gauge,
    pub post_dial_delay: Histogram,
    pub route_lookups: Family<LookupLabels, Counter>,
    pub probe_rtt: Family<ProviderLabels, Gauge<f64, AtomicU64>>,
}

impl Default for CallMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl CallMetrics {
    pub fn new() -> CallMetrics {
        let mut registry = Registry::with_prefix("forwarder");
        let offered = Counter::default();
        registry.register(
            "calls_offered",
            "INVITEs that asked for a call",
            offered.clone(),
        );
        let refused = Family::<StatusLabels, Counter>::default();
        registry.register(
            "calls_refused",
            "Calls refused before any provider was tried, by status",
            refused.clone(),
        );
        let answered = Counter::default();
        registry.register("calls_answered", "Calls answered", answered.clone());
        let failed = Family::<StatusLabels, Counter>::default();
        registry.register(
            "calls_failed",
            "Admitted calls never answered, by the caller's final status",
            failed.clone(),
        );
        let attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "attempts",
            "Attempts through each provider, by outcome",
            attempts.clone(),
        );
        let failovers = Family::<ProviderLabels, Counter>::default();
        registry.register(
            "failovers",
            "Failed attempts followed by another provider",
            failovers.clone(),
        );
        let active = Gauge::default();
        registry.register(
            "active_calls",
            "Admitted calls not yet ended",
            active.clone(),
        );
        // 0.25 ms … ~4 s: a warm call takes about a millisecond, a cold
        // route lookup or probes tens to hundreds.
        let post_dial_delay = Histogram::new(exponential_buckets(0.000_25, 2.0, 15));
        registry.register(
            "post_dial_delay_seconds",
            "Caller's INVITE in to the first INVITE out",
            post_dial_delay.clone(),
        );
        let route_lookups = Family::<LookupLabels, Counter>::default();
        registry.register(
            "route_lookups",
            "Route lookups by where the answer came from",
            route_lookups.clone(),
        );
        let probe_rtt = Family::<ProviderLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "probe_rtt_seconds",
            "OPTIONS round trip (EWMA) last used for a provider",
            probe_rtt.clone(),
        );
        CallMetrics {
            registry,
            offered,
            refused,
            answered,
            failed,
            attempts,
            failovers,
            active,
            post_dial_delay,
            route_lookups,
            probe_rtt,
        }
    }

    pub fn lookup(&self, result: &'static str) {
        self.route_lookups
            .get_or_create(&LookupLabels { result })
            .inc();
    }

    pub fn attempt(&self, provider: &str, outcome: &'static str) {
        self.attempts
            .get_or_create(&AttemptLabels {
                provider: provider.to_owned(),
                outcome,
            })
            .inc();
    }

    /// The text exposition (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[derive(Clone)]
struct MetricsState {
    metrics: Arc<CallMetrics>,
    enrolled: Arc<dyn Fn() -> bool + Send + Sync>,
}

/// 200 once the forwarder holds its credential (it can take calls), 503
/// before.
async fn health(State(s): State<MetricsState>) -> impl IntoResponse {
    let enrolled = (s.enrolled)();
    let status = if enrolled {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if enrolled { "ok" } else { "starting" },
        "enrolled": enrolled,
    });
    (status, axum::Json(body))
}

async fn exposition(State(s): State<MetricsState>) -> impl IntoResponse {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
}

/// Binds `listen` and serves `/health` and `/metrics` until `stop`.
pub async fn serve(
    listen: SocketAddr,
    metrics: Arc<CallMetrics>,
    enrolled: Arc<dyn Fn() -> bool + Send + Sync>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(exposition))
        .with_state(MetricsState { metrics, enrolled });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "call metrics server failed");
        }
    });
    Ok(addr)
}
