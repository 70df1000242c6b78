//! The reference terminating-provider gateway: what a provider runs to
//! join the network.
//!
//! At start it enrolls with central (first start: creates its Ed25519 key,
//! sends a CSR with the operator's one-time token, keeps the certificate),
//! publishes its rate deck, and listens for SIP. It answers OPTIONS (the
//! payers' latency probes) and accepts an INVITE only with a valid ticket
//! in `X-LCR-Ticket`: signed by a payer certified by central, addressed to
//! this provider, for the INVITE's destination and Call-ID, not expired or
//! replayed, at a rate no lower than this provider's own for the
//! destination. Anything else gets 403 with the reason in a Warning header
//! (and the refusal code in `X-LCR-Ticket-Error`); 503 when the payer's
//! certificate cannot be fetched from central.
//!
//! An accepted call is bridged to the termination target (a SIP URI with
//! the dialed number in it) with its media relayed. After hangup the
//! payer's usage receipt (`X-LCR-Receipt`, on its BYE or its answer to
//! ours) is verified and countersigned when its duration agrees with the
//! one measured here (within `receipt_tolerance_secs`); otherwise the
//! gateway signs its own receipt, and central records a dispute (or a
//! provider-only ticket when the payer sent no valid receipt). Ticket and
//! receipts go to a durable local queue and on to central's ledger,
//! retried while central is unreachable: none is lost across a restart.
//!
//! With a `[metrics]` table it serves `/health` and `/metrics` (Prometheus
//! text format; the metric names are listed in the `metrics` module's
//! source) over plain HTTP, by default on `127.0.0.1:9102`. The `[demo]`
//! table has two knobs for demonstrations and tests: a delay on every SIP
//! datagram (a distant provider) and a status every call is refused with
//! (a failing one).
//!
//! The binary `provider-gateway` runs it from a TOML file (see
//! [`GatewayConfig`]; `ops/provider-gateway.toml` is an annotated sample).

mod config;
mod control;
mod delay;
mod metrics;

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

pub use config::{
    ConfigError, DemoConfig, GatewayConfig, LedgerConfig, MediaConfig, MetricsConfig, RatesConfig,
    SipConfig,
};
pub use control::GatewayCounts;

use crate::central::{
    ensure_enrolled, CacheSettings, CentralError, QueueCounts, QueueError, QueueOptions,
    QueueSender, RateUpload, SubmissionQueue,
};
use crate::media::{MediaRelay, RelayConfig};
use crate::pki::RootCertificate;
use crate::ratedeck::RateDeck;
use crate::sip::anchor::RelayAnchor;
use crate::sip::b2bua::{B2bua, B2buaConfig};
use crate::ticket::{TicketSigner, TicketVerifier, RECEIPT_HEADER};

/// Why the gateway could not start.
#[derive(Debug, Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("central: {0}")]
    Central(#[from] CentralError),
    #[error("rate deck {path}: {detail}")]
    Deck { path: String, detail: String },
    #[error("the certificate is not a provider's (role {0})")]
    NotAProvider(String),
    #[error("ledger queue: {0}")]
    Queue(#[from] QueueError),
    #[error("media relay: {0}")]
    Media(String),
    #[error("SIP listener on {addr}: {source}")]
    Sip {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Pki(#[from] crate::pki::PkiError),
    #[error("metrics listener on {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// A running gateway.
pub struct Gateway {
    b2bua: B2bua,
    control: Arc<control::GatewayControl>,
    queue: Arc<SubmissionQueue>,
    sender: Option<QueueSender>,
    provider_id: u64,
    rate_version: Option<u64>,
    sip_addr: std::net::SocketAddr,
    metrics_addr: Option<std::net::SocketAddr>,
    stop: tokio_util::sync::CancellationToken,
}

impl Gateway {
    /// Enrolls (or reuses the stored credential), publishes the deck when
    /// configured, opens the ledger queue and starts listening.
    pub async fn start(config: GatewayConfig) -> Result<Gateway, GatewayError> {
        let deck_text =
            std::fs::read_to_string(&config.rates.deck).map_err(|e| GatewayError::Deck {
                path: config.rates.deck.display().to_string(),
                detail: e.to_string(),
            })?;
        let deck = RateDeck::parse_csv(deck_text.as_bytes()).map_err(|e| GatewayError::Deck {
            path: config.rates.deck.display().to_string(),
            detail: e.to_string(),
        })?;
        let me = ensure_enrolled(&config.central).await?;
        let provider_id = me
            .provider_id()
            .ok_or_else(|| GatewayError::NotAProvider(me.certified.role.to_string()))?;
        let central = me
            .client_builder(&config.central.central_url)
            .cache(CacheSettings::default())
            .build()?;
        let rate_version = if config.rates.publish {
            let v = central.publish_rates(RateUpload::Csv(&deck_text)).await?;
            tracing::info!(
                version = v.version,
                lines = v.line_count,
                "rate deck published"
            );
            Some(v.version)
        } else {
            None
        };
        let queue = Arc::new(SubmissionQueue::open(
            &config.ledger.spool,
            QueueOptions::default(),
        )?);
        let sender = queue.start(central.clone())?;
        let root = RootCertificate::from_pem(&me.root_pem)?;
        let verifier = TicketVerifier::new(root, central.certificate_cache(), provider_id);
        let signer = TicketSigner::new(me.key.clone(), &config.central.central_url);
        let mut relay_config = RelayConfig::loopback(config.media_ports());
        relay_config.bind = config.media.bind;
        relay_config.advertise = config.media.advertise.unwrap_or(config.media.bind);
        relay_config.media_timeout = Duration::from_secs(config.media.timeout_secs);
        let relay =
            MediaRelay::new(relay_config).map_err(|e| GatewayError::Media(e.to_string()))?;
        let listen = config.sip.listen;
        let delay = Duration::from_millis(config.demo.sip_delay_ms);
        let metrics_listen = config.metrics.as_ref().map(|m| m.listen);
        let control = Arc::new(control::GatewayControl::new(
            config,
            central,
            verifier,
            signer,
            deck,
            queue.clone(),
        ));
        let mut b2bua_config =
            B2buaConfig::with_control(Arc::new(control::Control(control.clone())));
        // With a delay the B2BUA listens on a port of its own behind the relay.
        b2bua_config.bind = if delay.is_zero() {
            listen
        } else {
            std::net::SocketAddr::new(listen.ip(), 0)
        };
        b2bua_config.media = RelayAnchor::factory(relay);
        b2bua_config.capture_headers = vec![RECEIPT_HEADER.to_owned()];
        let b2bua = B2bua::bind(b2bua_config)
            .await
            .map_err(|source| GatewayError::Sip {
                addr: listen,
                source,
            })?;
        let stop = tokio_util::sync::CancellationToken::new();
        let sip_addr = if delay.is_zero() {
            b2bua.local_addr()
        } else {
            let front = delay::start(listen, b2bua.local_addr(), delay, stop.clone())
                .await
                .map_err(|source| GatewayError::Sip {
                    addr: listen,
                    source,
                })?;
            tracing::warn!(
                delay_ms = delay.as_millis(),
                "demo.sip_delay_ms: every SIP datagram is delayed"
            );
            front
        };
        if let Some(status) = control.config_reject() {
            tracing::warn!(status, "demo.reject_calls: every call is refused");
        }
        let metrics_addr = match metrics_listen {
            Some(addr) => {
                let for_active = control.clone();
                let state = metrics::MetricsState {
                    metrics: control.metrics.clone(),
                    queue: queue.clone(),
                    active_calls: Arc::new(move || for_active.active_calls()),
                    provider_id,
                };
                let bound = metrics::serve(addr, state, stop.clone())
                    .await
                    .map_err(|source| GatewayError::Metrics { addr, source })?;
                tracing::info!(%bound, "metrics listening");
                Some(bound)
            }
            None => None,
        };
        tracing::info!(provider_id, sip = %sip_addr, "gateway running");
        Ok(Gateway {
            b2bua,
            control,
            queue,
            sender: Some(sender),
            provider_id,
            rate_version,
            sip_addr,
            metrics_addr,
            stop,
        })
    }

    /// Where payers send SIP (the delay relay's address with `demo.sip_delay_ms`).
    pub fn sip_addr(&self) -> std::net::SocketAddr {
        self.sip_addr
    }

    /// Where `/health` and `/metrics` are served, with a `[metrics]` table.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_addr
    }

    pub fn provider_id(&self) -> u64 {
        self.provider_id
    }

    /// The rate version central gave the deck published at start.
    pub fn rate_version(&self) -> Option<u64> {
        self.rate_version
    }

    pub fn counts(&self) -> GatewayCounts {
        self.control.counts()
    }

    pub fn queue_counts(&self) -> QueueCounts {
        self.queue.counts()
    }

    pub fn active_calls(&self) -> usize {
        self.b2bua.active_calls()
    }

    /// Stops taking calls and stops the ledger sender (what is queued stays
    /// on disk for the next start).
    pub async fn shutdown(mut self) {
        self.b2bua.shutdown();
        self.stop.cancel();
        if let Some(sender) = self.sender.take() {
            sender.stop().await;
        }
    }
}
