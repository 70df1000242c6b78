//! Prometheus metrics served at `/metrics` (text exposition format).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route template (e.g. `/v1/subscribers/{id}`), never the
    /// raw path, so label cardinality stays bounded.
    pub route: &'static str,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EntryLabels {
    pub kind: &'static str,
}

/// The forwarder's metrics registry (the SIP side registers its own next
/// to these through [`Metrics::registry_mut`] before the server starts).
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub ledger_entries: Family<EntryLabels, Counter>,
    /// Statements created, sent, and send attempts that failed.
    pub statements_created: Counter,
    pub statements_sent: Counter,
    pub statement_send_failures: Counter,
    /// Statements waiting for their first attempt / for a retry, and
    /// periods held back (a call open or unrated), as of the last run.
    pub statements_pending: Gauge,
    pub statements_failed: Gauge,
    pub statements_held: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("forwarder");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route template, method and status",
            requests.clone(),
        );
        let ledger_entries = Family::<EntryLabels, Counter>::default();
        registry.register(
            "api_ledger_entries",
            "Ledger entries recorded through the API, by kind",
            ledger_entries.clone(),
        );
        let c = |registry: &mut Registry, name: &str, help: &str| {
            let m = Counter::default();
            registry.register(name, help, m.clone());
            m
        };
        let g = |registry: &mut Registry, name: &str, help: &str| {
            let m = Gauge::default();
            registry.register(name, help, m.clone());
            m
        };
        let statements_created = c(&mut registry, "statements_created", "Statements created");
        let statements_sent = c(
            &mut registry,
            "statements_sent",
            "Statements accepted by the mail server",
        );
        let statement_send_failures = c(
            &mut registry,
            "statement_send_failures",
            "Statement send attempts that failed (retried with backoff)",
        );
        let statements_pending = g(
            &mut registry,
            "statements_pending",
            "Statements not yet tried",
        );
        let statements_failed = g(
            &mut registry,
            "statements_failed",
            "Statements whose last send attempt failed, waiting for a retry",
        );
        let statements_held = g(
            &mut registry,
            "statements_held",
            "Statement periods held back because a call is open or unrated",
        );
        Metrics {
            registry,
            requests,
            ledger_entries,
            statements_created,
            statements_sent,
            statement_send_failures,
            statements_pending,
            statements_failed,
            statements_held,
        }
    }

    /// For registering more metrics before the server starts.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
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
