//! Starts the SIP call path next to the API: plans, crash recovery, the
//! central client and route cache, latency probes, the forwarder's own
//! credential (enrolled in the background when central is not reachable
//! yet), the media relay and the B2BUA with the forwarder's call control.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use provider_sdk::central::{ensure_enrolled, CentralClient, EnrollmentConfig, Timeouts};
use provider_sdk::media::{MediaRelay, RelayConfig};
use provider_sdk::ratedeck::RateDeck;
use provider_sdk::sip::anchor::RelayAnchor;
use provider_sdk::sip::b2bua::{B2bua, B2buaConfig};
use provider_sdk::ticket::TicketSigner;
use tokio_util::sync::CancellationToken;

use crate::book::StoreBook;
use crate::call_config::CallConfig;
use crate::calls::{CallSettings, Control, Forwarding, Payer};
use crate::db::Database;
use crate::ingress::Ingress;
use crate::latency::Latencies;
use crate::rating::Plans;
use crate::route_cache::RouteCache;

/// How often enrollment is retried while central cannot be reached.
const ENROLL_RETRY: Duration = Duration::from_secs(10);

/// The running call path.
pub struct CallService {
    b2bua: B2bua,
    /// Where `/metrics` and `/health` of the call path are served.
    pub metrics_addr: Option<SocketAddr>,
    pub forwarding: Arc<Forwarding>,
    pub routes: Arc<RouteCache>,
    pub ingress: Arc<Ingress>,
    latency: Arc<Latencies>,
    stop: CancellationToken,
}

impl CallService {
    pub fn sip_addr(&self) -> SocketAddr {
        self.b2bua.local_addr()
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.b2bua.tcp_addr()
    }

    pub fn active_calls(&self) -> usize {
        self.b2bua.active_calls()
    }

    /// Whether the forwarder holds its credential (calls get 503 before).
    pub fn enrolled(&self) -> bool {
        self.forwarding.payer.load().is_some()
    }

    pub fn shutdown(&self) {
        self.stop.cancel();
        self.latency.stop();
        self.b2bua.shutdown();
    }
}

impl Drop for CallService {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn payer_of(enrolled: &provider_sdk::central::Enrolled, url: &str) -> Option<Payer> {
    Some(Payer {
        id: enrolled.provider_id()?,
        name: enrolled.certified.subject_cn.clone(),
        signer: TicketSigner::new(enrolled.key.clone(), url),
    })
}

/// Starts the call path on `db`.
pub async fn start(calls: &CallConfig, db: Database) -> Result<CallService> {
    let plans = Arc::new(
        Plans::from_config(&calls.rating, |path| {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            RateDeck::parse_csv(&bytes).map_err(|e| format!("{}: {e}", path.display()))
        })
        .context("rating plans")?,
    );
    let book = Arc::new(StoreBook::new(db, plans));
    let recover = book.clone();
    let recovered = tokio::task::spawn_blocking(move || recover.recover())
        .await
        .context("recovery task")?
        .context("closing calls left open by the last run")?;
    if recovered > 0 {
        tracing::warn!(
            calls = recovered,
            "closed and billed calls left open by the last run"
        );
    }
    let root_pem = std::fs::read_to_string(&calls.central.root_certificate).with_context(|| {
        format!(
            "cannot read central's root certificate {}",
            calls.central.root_certificate.display()
        )
    })?;
    // Route queries need no client certificate; short timeouts so a call
    // never waits long on an unreachable central.
    let central = CentralClient::builder(&calls.central.central_url, &root_pem)
        .timeouts(Timeouts {
            connect: Duration::from_millis(700),
            request: Duration::from_secs(2),
            ..Timeouts::default()
        })
        .build()
        .context("central client")?;
    let routes = Arc::new(RouteCache::new(
        central,
        Duration::from_secs(calls.routing.cache_ttl_secs),
        Duration::from_secs(calls.routing.stale_for_secs),
        calls.routing.currency,
        calls.routing.route_limit,
    ));
    let latency = Latencies::start(
        SocketAddr::new(calls.sip.listen.ip(), 0),
        Duration::from_millis(calls.routing.probe_deadline_ms),
        Duration::from_secs(calls.routing.probe_interval_secs),
    )
    .await
    .context("binding the OPTIONS prober")?;
    let settings = CallSettings {
        currency: calls.routing.currency,
        setup_timeout: calls.setup_timeout(),
        ticket_lifetime: Duration::from_secs(calls.routing.ticket_lifetime_secs),
        policy: calls.selection.clone(),
        host: calls.sip.listen.ip().to_string(),
    };
    let forwarding = Forwarding::new(book, routes.clone(), latency.clone(), None, settings);
    let stop = CancellationToken::new();
    forwarding.spawn_heartbeat(
        Duration::from_secs(calls.sip.heartbeat_secs.max(1)),
        stop.clone(),
    );
    spawn_enrollment(calls.central.clone(), forwarding.clone(), stop.clone());
    let ingress = Arc::new(Ingress::new(&calls.sip.ingress).context("[sip.ingress]")?);
    let mut relay_config = RelayConfig::loopback(calls.media.first_port..=calls.media.last_port);
    relay_config.bind = calls.media.bind;
    relay_config.advertise = calls.media.advertise.unwrap_or(calls.media.bind);
    relay_config.media_timeout = Duration::from_secs(calls.media.timeout_secs.max(1));
    let relay = MediaRelay::new(relay_config).context("starting the media relay")?;
    let mut config = B2buaConfig::with_control(Arc::new(Control(forwarding.clone())));
    config.bind = calls.sip.listen;
    config.tcp = calls.sip.tcp_listen;
    config.tls = tls_inbound(calls)?;
    if let Some(roots) = &calls.sip.tls_roots {
        let pem = std::fs::read_to_string(roots)
            .with_context(|| format!("cannot read {}", roots.display()))?;
        let client = provider_sdk::pki::tls::client_config(&pem, None)
            .with_context(|| format!("TLS roots {}", roots.display()))?;
        config.tls_client = Some(Arc::new(client));
    }
    config.media = RelayAnchor::factory(relay);
    config.admission = Some(ingress.clone());
    let b2bua = B2bua::bind(config)
        .await
        .with_context(|| format!("binding SIP on {}", calls.sip.listen))?;
    tracing::info!(sip = %b2bua.local_addr(), "forwarder SIP listening");
    let metrics_addr = match calls.sip.metrics_listen {
        Some(listen) => {
            let f = forwarding.clone();
            let addr = crate::call_metrics::serve(
                listen,
                forwarding.metrics.clone(),
                Arc::new(move || f.payer.load().is_some()),
                stop.clone(),
            )
            .await
            .with_context(|| format!("binding [sip] metrics_listen {listen}"))?;
            tracing::info!(%addr, "call metrics on http://{addr}/metrics");
            Some(addr)
        }
        None => None,
    };
    Ok(CallService {
        b2bua,
        metrics_addr,
        forwarding,
        routes,
        ingress,
        latency,
        stop,
    })
}

/// The TLS listener's configuration, when `[sip] tls_listen` is set.
fn tls_inbound(calls: &CallConfig) -> Result<Option<provider_sdk::sip::b2bua::TlsInbound>> {
    let Some(bind) = calls.sip.tls_listen else {
        return Ok(None);
    };
    let (Some(cert), Some(key)) = (&calls.sip.tls_certificate, &calls.sip.tls_key) else {
        anyhow::bail!("[sip] tls_listen needs tls_certificate and tls_key");
    };
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let identity = provider_sdk::pki::tls::TlsIdentity::from_pem(&read(cert)?, &read(key)?)
        .context("the SIP TLS certificate and key")?;
    let server = provider_sdk::pki::tls::server_config(
        "",
        &identity,
        provider_sdk::pki::tls::ClientAuth::None,
    )
    .context("the SIP TLS configuration")?;
    Ok(Some(provider_sdk::sip::b2bua::TlsInbound {
        bind,
        config: Arc::new(server),
    }))
}

/// Loads the stored credential, or enrolls; retried in the background
/// while central cannot be reached, so the forwarder starts regardless.
fn spawn_enrollment(
    config: EnrollmentConfig,
    forwarding: Arc<Forwarding>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            match ensure_enrolled(&config).await {
                Ok(enrolled) => match payer_of(&enrolled, &config.central_url) {
                    Some(payer) => {
                        tracing::info!(provider_id = payer.id, "forwarder credential ready");
                        forwarding.payer.store(Some(Arc::new(payer)));
                        return;
                    }
                    None => {
                        tracing::error!(
                            "the forwarder's certificate is not a provider's: it cannot sign tickets"
                        );
                        return;
                    }
                },
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "cannot enroll with central yet; retrying");
                }
                Err(e) => {
                    tracing::error!(error = %e, "enrollment with central failed; calls get 503");
                    return;
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(ENROLL_RETRY) => {}
            }
        }
    });
}
