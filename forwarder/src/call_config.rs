//! Settings of the SIP call path, from the same `forwarder.toml`:
//!
//! ```toml
//! [sip]
//! listen = "127.0.0.1:5060"          # UDP (and TCP with tcp_listen)
//! # tcp_listen = "127.0.0.1:5060"
//! # tls_listen = "127.0.0.1:5061"   # with tls_certificate and tls_key (PEM)
//! # tls_roots = "providers-ca.pem"  # roots for providers reached over TLS
//! setup_timeout_ms = 3000            # a provider with no ringing by then: next provider
//! heartbeat_secs = 10                # answered calls noted in their CDR (a crash bills up to it)
//! # metrics_listen = "127.0.0.1:9101"  # plain-HTTP /metrics and /health of the call path
//! [sip.ingress]
//! trusted = ["127.0.0.1", "198.51.100.0/24"]   # upstream carriers allowed to send calls
//! rate_per_sec = 50
//! burst = 100
//!
//! [central]                          # central, and the forwarder's own credential (it pays)
//! central_url = "https://127.0.0.1:8443"
//! root_certificate = "central-ca.crt"
//! key = "forwarder.key"
//! certificate = "forwarder.crt"
//! name = "home-telecom"
//! # enrollment_token = "enr_..."    # first start only; better FORWARDER_ENROLLMENT_TOKEN
//!
//! [routing]
//! currency = "EUR"                   # providers are asked for prices in it
//! cache_ttl_secs = 300               # route answers reused this long per destination
//! stale_for_secs = 3600              # and this much longer while central is unreachable
//! probe_deadline_ms = 300            # on-demand OPTIONS to the candidates (0: none)
//! probe_interval_secs = 30           # background OPTIONS to known providers (0: none)
//! ticket_lifetime_secs = 300
//! # max_rate = "0.05"                # never pay a provider more per minute
//!
//! [selection]                        # provider_sdk::select::Policy (defaults shown)
//! cost_tolerance = "0.05"
//! latency_ceiling = 500
//!
//! [media]                            # the RTP relay every call is anchored in
//! first_port = 30000
//! last_port = 30999
//! timeout_secs = 30
//!
//! [plans.standard]                   # rating plans: see forwarder::rating
//! kind = "markup"
//! currency = "EUR"
//! markup_percent = "20"
//! ```
//!
//! Without a `[sip]` table the forwarder serves its HTTPS API only. The
//! least that runs calls is `[sip] listen` and `[central] central_url` (with
//! central's root certificate in `DIR/central-ca.crt`): every other key has
//! a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use provider_sdk::central::EnrollmentConfig;
use provider_sdk::gateway::MediaConfig;
use provider_sdk::money::Currency;
use provider_sdk::select::Policy;
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::ingress::IngressConfig;
use crate::rating::RatingConfig;

/// `[sip]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SipSection {
    pub listen: SocketAddr,
    #[serde(default)]
    pub tcp_listen: Option<SocketAddr>,
    /// SIP over TLS: where to listen, and the certificate chain and key (PEM).
    #[serde(default)]
    pub tls_listen: Option<SocketAddr>,
    #[serde(default)]
    pub tls_certificate: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Roots trusted for providers reached over TLS (`sips:`), PEM.
    #[serde(default)]
    pub tls_roots: Option<PathBuf>,
    #[serde(default = "default_setup_ms")]
    pub setup_timeout_ms: u64,
    /// How often answered calls are noted as still up in their CDR (what a
    /// restart after a crash bills up to).
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    /// Who may send calls (default: loopback only).
    #[serde(default = "default_ingress")]
    pub ingress: IngressConfig,
    /// Plain-HTTP `/metrics` and `/health` of the call path (see
    /// [`crate::call_metrics`]); none when unset.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
}

fn default_ingress() -> IngressConfig {
    IngressConfig {
        trusted: vec!["127.0.0.1".into(), "::1".into()],
        rate_per_sec: 50.0,
        burst: 100.0,
    }
}

/// `[central]`: only the URL is required; the files default to names in
/// the data directory.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CentralSection {
    pub central_url: String,
    #[serde(default = "default_root")]
    pub root_certificate: PathBuf,
    #[serde(default = "default_key")]
    pub key: PathBuf,
    #[serde(default = "default_cert")]
    pub certificate: PathBuf,
    /// The name central's operator registered (the certificate's common name).
    #[serde(default = "default_name")]
    pub name: String,
    #[serde(default)]
    pub enrollment_token: Option<String>,
}

fn default_root() -> PathBuf {
    "central-ca.crt".into()
}
fn default_key() -> PathBuf {
    "forwarder.key".into()
}
fn default_cert() -> PathBuf {
    "forwarder.crt".into()
}
fn default_name() -> String {
    "forwarder".into()
}

impl CentralSection {
    pub fn enrollment(&self) -> EnrollmentConfig {
        EnrollmentConfig {
            central_url: self.central_url.clone(),
            root_certificate: self.root_certificate.clone(),
            key: self.key.clone(),
            certificate: self.certificate.clone(),
            name: self.name.clone(),
            enrollment_token: self.enrollment_token.clone(),
        }
    }
}

fn default_setup_ms() -> u64 {
    3000
}
fn default_heartbeat() -> u64 {
    10
}

/// `[routing]` (every key has a default).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoutingSection {
    #[serde(default = "default_currency")]
    pub currency: Currency,
    #[serde(default = "default_ttl")]
    pub cache_ttl_secs: u64,
    #[serde(default = "default_stale")]
    pub stale_for_secs: u64,
    #[serde(default = "default_limit")]
    pub route_limit: u16,
    #[serde(default = "default_probe_ms")]
    pub probe_deadline_ms: u64,
    #[serde(default = "default_probe_interval")]
    pub probe_interval_secs: u64,
    #[serde(default = "default_ticket_lifetime")]
    pub ticket_lifetime_secs: u64,
    #[serde(default)]
    pub max_rate: Option<Decimal>,
}

fn default_currency() -> Currency {
    Currency::parse("EUR").unwrap_or_else(|_| unreachable!("EUR is a currency code"))
}
fn default_ttl() -> u64 {
    300
}
fn default_stale() -> u64 {
    3600
}
fn default_limit() -> u16 {
    10
}
fn default_probe_ms() -> u64 {
    300
}
fn default_probe_interval() -> u64 {
    30
}
fn default_ticket_lifetime() -> u64 {
    300
}

/// Everything the call path needs.
#[derive(Debug, Clone)]
pub struct CallConfig {
    pub sip: SipSection,
    pub central: EnrollmentConfig,
    pub routing: RoutingSection,
    pub selection: Policy,
    pub media: MediaConfig,
    pub rating: RatingConfig,
}

impl Default for RoutingSection {
    fn default() -> Self {
        RoutingSection {
            currency: default_currency(),
            cache_ttl_secs: default_ttl(),
            stale_for_secs: default_stale(),
            route_limit: default_limit(),
            probe_deadline_ms: default_probe_ms(),
            probe_interval_secs: default_probe_interval(),
            ticket_lifetime_secs: default_ticket_lifetime(),
            max_rate: None,
        }
    }
}

impl CallConfig {
    pub fn setup_timeout(&self) -> Duration {
        Duration::from_millis(self.sip.setup_timeout_ms.max(1))
    }

    /// Relative paths (certificates, keys, rate decks) are taken from `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.central.root_certificate);
        resolve(&mut self.central.key);
        resolve(&mut self.central.certificate);
        for p in [
            &mut self.sip.tls_certificate,
            &mut self.sip.tls_key,
            &mut self.sip.tls_roots,
        ]
        .into_iter()
        .flatten()
        {
            resolve(p);
        }
        for plan in self.rating.plans.values_mut() {
            if let Some(d) = plan.deck.as_mut() {
                resolve(d);
            }
            for period in plan.periods.values_mut() {
                if let Some(d) = period.deck.as_mut() {
                    resolve(d);
                }
            }
        }
    }
}
