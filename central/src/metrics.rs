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

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub route_query_seconds: Histogram,
    pub index_entries: Gauge,
    pub index_rebuild_seconds: Histogram,
    pub uploads: Family<UploadLabels, Counter>,
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
        Metrics {
            registry,
            requests,
            route_query_seconds,
            index_entries,
            index_rebuild_seconds,
            uploads,
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
