//! The gateway's `/health` and `/metrics` (Prometheus text format) over
//! plain HTTP, served when the configuration has a `[metrics]` table.
//!
//! | metric | what |
//! |---|---|
//! | `provider_gateway_calls_offered_total` | INVITEs that asked for a call |
//! | `provider_gateway_calls_refused_total{reason}` | refused before the termination leg: `no_number`, `no_ticket`, `no_rate`, `ticket`, `misconfigured`, `demo_reject` |
//! | `provider_gateway_calls_answered_total` | accepted calls the far end answered |
//! | `provider_gateway_calls_failed_total{status}` | accepted calls never answered, by the final status sent back |
//! | `provider_gateway_ticket_verifications_total{outcome}` | `valid`, or the refusal code (`expired`, `replayed`, `wrong-audience`, …) |
//! | `provider_gateway_receipts_total{outcome}` | `countersigned`, `disputed`, `provider_only` |
//! | `provider_gateway_ledger_queued` | tickets and receipts waiting for central |
//! | `provider_gateway_ledger_sent_total`, `provider_gateway_ledger_rejected_total` | delivered to central; refused for good |
//! | `provider_gateway_active_calls` | accepted calls in progress |

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::central::SubmissionQueue;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StatusLabels {
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabels {
    pub outcome: &'static str,
}

/// Every metric the gateway keeps.
pub(crate) struct GatewayMetrics {
    registry: Registry,
    pub offered: Counter,
    pub refused: Family<ReasonLabels, Counter>,
    pub answered: Counter,
    pub failed: Family<StatusLabels, Counter>,
    pub verifications: Family<OutcomeLabels, Counter>,
    pub receipts: Family<OutcomeLabels, Counter>,
    ledger_queued: Gauge,
    ledger_sent: Counter,
    ledger_rejected: Counter,
    active_calls: Gauge,
}

impl GatewayMetrics {
    pub(crate) fn new() -> GatewayMetrics {
        let mut registry = Registry::with_prefix("provider_gateway");
        let offered = Counter::default();
        registry.register(
            "calls_offered",
            "INVITEs that asked for a call",
            offered.clone(),
        );
        let refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "calls_refused",
            "Calls refused before the termination leg, by reason",
            refused.clone(),
        );
        let answered = Counter::default();
        registry.register(
            "calls_answered",
            "Accepted calls that were answered",
            answered.clone(),
        );
        let failed = Family::<StatusLabels, Counter>::default();
        registry.register(
            "calls_failed",
            "Accepted calls never answered, by the final status sent to the payer",
            failed.clone(),
        );
        let verifications = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "ticket_verifications",
            "Ticket verifications by outcome (valid, or the refusal code)",
            verifications.clone(),
        );
        let receipts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "receipts",
            "Usage receipts of answered calls: countersigned, disputed, provider_only",
            receipts.clone(),
        );
        let ledger_queued = Gauge::default();
        registry.register(
            "ledger_queued",
            "Tickets and receipts waiting in the spool for central",
            ledger_queued.clone(),
        );
        let ledger_sent = Counter::default();
        registry.register(
            "ledger_sent",
            "Submissions central recorded (new or duplicate)",
            ledger_sent.clone(),
        );
        let ledger_rejected = Counter::default();
        registry.register(
            "ledger_rejected",
            "Submissions central refused for good (moved to rejected/)",
            ledger_rejected.clone(),
        );
        let active_calls = Gauge::default();
        registry.register(
            "active_calls",
            "Accepted calls in progress",
            active_calls.clone(),
        );
        GatewayMetrics {
            registry,
            offered,
            refused,
            answered,
            failed,
            verifications,
            receipts,
            ledger_queued,
            ledger_sent,
            ledger_rejected,
            active_calls,
        }
    }

    pub(crate) fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub(crate) fn verified(&self, outcome: &'static str) {
        self.verifications
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub(crate) fn receipt(&self, outcome: &'static str) {
        self.receipts
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// The text exposition, with the values read at scrape time brought up
    /// to date first.
    fn encode(&self, queue: &SubmissionQueue, active_calls: usize) -> String {
        let counts = queue.counts();
        self.ledger_queued
            .set(i64::try_from(counts.queued).unwrap_or(i64::MAX));
        // The queue keeps totals; the counters follow them (they only grow).
        self.ledger_sent
            .inc_by(counts.sent.saturating_sub(self.ledger_sent.get()));
        self.ledger_rejected
            .inc_by(counts.rejected.saturating_sub(self.ledger_rejected.get()));
        self.active_calls
            .set(i64::try_from(active_calls).unwrap_or(i64::MAX));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// What the HTTP handlers read.
#[derive(Clone)]
pub(crate) struct MetricsState {
    pub metrics: Arc<GatewayMetrics>,
    pub queue: Arc<SubmissionQueue>,
    pub active_calls: Arc<dyn Fn() -> usize + Send + Sync>,
    pub provider_id: u64,
}

async fn health(State(s): State<MetricsState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/json")],
        format!(
            "{{\"status\":\"ok\",\"provider_id\":{},\"active_calls\":{}}}",
            s.provider_id,
            (s.active_calls)()
        ),
    )
}

async fn metrics(State(s): State<MetricsState>) -> impl IntoResponse {
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(&s.queue, (s.active_calls)()),
    )
}

/// Binds `listen` and serves `/health` and `/metrics` until `stop`.
pub(crate) async fn serve(
    listen: SocketAddr,
    state: MetricsState,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state);
    tokio::spawn(async move {
        let shutdown = async move { stop.cancelled().await };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "metrics server failed");
        }
    });
    Ok(addr)
}
