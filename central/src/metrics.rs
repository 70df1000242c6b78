//! Prometheus metrics served at `/metrics` (text exposition format).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route template (e.g. `/v1/providers/{id}`), never the raw
    /// path, so label cardinality stays bounded.
    pub route: &'static str,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UploadLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LedgerLabels {
    /// `agreed`, `disputed`, `provider_only` (stored), `duplicate`,
    /// `conflict`, `refused`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// The refusal's stable code (a bounded set).
    pub reason: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub route_query_seconds: Histogram,
    pub index_entries: Gauge,
    pub index_rebuild_seconds: Histogram,
    pub uploads: Family<UploadLabels, Counter>,
    pub ledger_submissions: Family<LedgerLabels, Counter>,
    pub ledger_refusals: Family<RefusalLabels, Counter>,
    pub ledger_verify_seconds: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("central");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route template, method and status",
            requests.clone(),
        );
        // 1 µs .. ~0.5 s
        let route_query_seconds = Histogram::new(exponential_buckets(1e-6, 2.0, 20));
        registry.register(
            "route_query_duration_seconds",
            "Time to answer a route query from the index",
            route_query_seconds.clone(),
        );
        let index_entries = Gauge::default();
        registry.register(
            "index_entries",
            "Rate entries in the live route index",
            index_entries.clone(),
        );
        // 1 ms .. ~130 s
        let index_rebuild_seconds = Histogram::new(exponential_buckets(1e-3, 2.0, 18));
        registry.register(
            "index_rebuild_duration_seconds",
            "Time to load the rate tables and build a new route index",
            index_rebuild_seconds.clone(),
        );
        let uploads = Family::<UploadLabels, Counter>::default();
        registry.register(
            "rate_uploads",
            "Rate deck uploads by outcome (accepted/rejected)",
            uploads.clone(),
        );
        let ledger_submissions = Family::<LedgerLabels, Counter>::default();
        registry.register(
            "ledger_submissions",
            "Ticket submissions to the ledger by outcome",
            ledger_submissions.clone(),
        );
        let ledger_refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "ledger_refusals",
            "Refused ticket submissions by reason",
            ledger_refusals.clone(),
        );
        // 10 µs .. ~10 s
        let ledger_verify_seconds = Histogram::new(exponential_buckets(1e-5, 2.0, 20));
        registry.register(
            "ledger_verify_duration_seconds",
            "Time to verify one POST /v1/tickets body (all its submissions)",
            ledger_verify_seconds.clone(),
        );
        Metrics {
            registry,
            requests,
            route_query_seconds,
            index_entries,
            index_rebuild_seconds,
            uploads,
            ledger_submissions,
            ledger_refusals,
            ledger_verify_seconds,
        }
    }

    /// Counts one ledger submission's outcome (and its reason if refused).
    pub fn ledger(&self, outcome: &'static str, refusal: Option<&'static str>) {
        self.ledger_submissions
            .get_or_create(&LedgerLabels { outcome })
            .inc();
        if let Some(reason) = refusal {
            self.ledger_refusals
                .get_or_create(&RefusalLabels { reason })
                .inc();
        }
    }

    pub fn upload(&self, accepted: bool) {
        let outcome = if accepted { "accepted" } else { "rejected" };
        self.uploads.get_or_create(&UploadLabels { outcome }).inc();
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
