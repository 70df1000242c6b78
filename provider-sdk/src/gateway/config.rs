//! The gateway's configuration: a TOML file, with the environment
//! overriding single settings (`PROVIDER_GATEWAY_*`).

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::central::EnrollmentConfig;
use crate::money::Currency;
use crate::number::E164;
use crate::sip::SipTarget;

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("environment variable {name}: {detail}")]
    Env { name: &'static str, detail: String },
    #[error("{0}")]
    Invalid(String),
}

/// Everything the gateway needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Central, and this provider's credential (enrolled on first start).
    pub central: EnrollmentConfig,
    pub sip: SipConfig,
    #[serde(default)]
    pub media: MediaConfig,
    pub rates: RatesConfig,
    pub ledger: LedgerConfig,
    /// `/health` and `/metrics` over plain HTTP (off without the table).
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// Knobs for demos and tests that make the gateway behave like a
    /// distant or failing provider. Never set them in production.
    #[serde(default)]
    pub demo: DemoConfig,
}

/// Where `/health` and `/metrics` are served (plain HTTP: keep it on
/// loopback or a management network).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    #[serde(default = "default_metrics_listen")]
    pub listen: SocketAddr,
}

/// Demo and test knobs (see [`GatewayConfig::demo`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    /// Every SIP datagram to and from the payers waits this long each way
    /// (a relay in front of the listener): the provider looks this much
    /// farther away to OPTIONS probes and calls.
    #[serde(default)]
    pub sip_delay_ms: u64,
    /// Refuse every call whose ticket is valid with this status (e.g. 503):
    /// a provider whose own network is failing, for showing failover.
    #[serde(default)]
    pub reject_calls: Option<u16>,
}

/// Where calls come in and where they go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// UDP address to listen on (the address registered at central).
    pub listen: SocketAddr,
    /// Termination target: a SIP URI in which `{number}` is replaced by
    /// the dialed E.164 number (with its `+`), e.g.
    /// `sip:{number}@pstn-gw.example.net:5060`.
    pub termination: String,
    /// No provisional answer from the termination target by then: the
    /// call fails (503 to the payer, who tries its next provider).
    #[serde(default = "default_setup_timeout")]
    pub setup_timeout_secs: u64,
    /// No answer by then: the call fails (the callee did not pick up).
    #[serde(default = "default_answer_timeout")]
    pub answer_timeout_secs: u64,
}

/// The RTP relay every call's media goes through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Address the relay binds to.
    #[serde(default = "default_ip")]
    pub bind: IpAddr,
    /// Address written into SDP (the public one; defaults to `bind`).
    #[serde(default)]
    pub advertise: Option<IpAddr>,
    /// First and last port of the relay's range.
    #[serde(default = "default_first_port")]
    pub first_port: u16,
    #[serde(default = "default_last_port")]
    pub last_port: u16,
    /// A call without RTP for this long is ended.
    #[serde(default = "default_media_timeout")]
    pub timeout_secs: u64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            bind: default_ip(),
            advertise: None,
            first_port: default_first_port(),
            last_port: default_last_port(),
            timeout_secs: default_media_timeout(),
        }
    }
}

/// This provider's prices.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatesConfig {
    /// The rate deck (CSV, the format central takes).
    pub deck: PathBuf,
    /// The currency of the deck (the one registered at central).
    pub currency: Currency,
    /// Publish the deck to central at start (a full replacement).
    #[serde(default = "yes")]
    pub publish: bool,
}

/// Where tickets and receipts wait for central.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerConfig {
    /// The durable submission queue's directory.
    pub spool: PathBuf,
    /// The payer's receipt is countersigned when its duration is within
    /// this many seconds of the one measured here; otherwise our own
    /// receipt goes to central and the call is a dispute.
    #[serde(default = "default_tolerance")]
    pub receipt_tolerance_secs: u64,
}

fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9102))
}
fn default_setup_timeout() -> u64 {
    5
}
fn default_answer_timeout() -> u64 {
    90
}
fn default_ip() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}
fn default_first_port() -> u16 {
    40000
}
fn default_last_port() -> u16 {
    40999
}
fn default_media_timeout() -> u64 {
    30
}
fn default_tolerance() -> u64 {
    2
}
fn yes() -> bool {
    true
}

impl GatewayConfig {
    /// Reads `path`, applies the environment and checks the result.
    /// Relative paths in the file are taken relative to its directory.
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: GatewayConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        config.apply_env(|name| std::env::var(name).ok())?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.check()?;
        Ok(config)
    }

    /// Overrides from the environment (`PROVIDER_GATEWAY_CENTRAL_URL`,
    /// `PROVIDER_GATEWAY_ENROLLMENT_TOKEN`, `PROVIDER_GATEWAY_SIP_LISTEN`,
    /// `PROVIDER_GATEWAY_TERMINATION`, `PROVIDER_GATEWAY_SPOOL`,
    /// `PROVIDER_GATEWAY_METRICS_LISTEN`, and the demo knobs
    /// `PROVIDER_GATEWAY_DEMO_SIP_DELAY_MS`, `PROVIDER_GATEWAY_DEMO_REJECT_CALLS`
    /// (`0` or empty: off)).
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = var("PROVIDER_GATEWAY_CENTRAL_URL") {
            self.central.central_url = v;
        }
        if let Some(v) = var("PROVIDER_GATEWAY_ENROLLMENT_TOKEN") {
            self.central.enrollment_token = Some(v);
        }
        if let Some(v) = var("PROVIDER_GATEWAY_SIP_LISTEN") {
            self.sip.listen = v.parse().map_err(|_| ConfigError::Env {
                name: "PROVIDER_GATEWAY_SIP_LISTEN",
                detail: format!("not an address:port: {v:?}"),
            })?;
        }
        if let Some(v) = var("PROVIDER_GATEWAY_TERMINATION") {
            self.sip.termination = v;
        }
        if let Some(v) = var("PROVIDER_GATEWAY_SPOOL") {
            self.ledger.spool = v.into();
        }
        if let Some(v) = var("PROVIDER_GATEWAY_METRICS_LISTEN") {
            let listen = v.parse().map_err(|_| ConfigError::Env {
                name: "PROVIDER_GATEWAY_METRICS_LISTEN",
                detail: format!("not an address:port: {v:?}"),
            })?;
            self.metrics = Some(MetricsConfig { listen });
        }
        if let Some(v) = var("PROVIDER_GATEWAY_DEMO_SIP_DELAY_MS") {
            self.demo.sip_delay_ms = v.trim().parse().map_err(|_| ConfigError::Env {
                name: "PROVIDER_GATEWAY_DEMO_SIP_DELAY_MS",
                detail: format!("not a number of milliseconds: {v:?}"),
            })?;
        }
        if let Some(v) = var("PROVIDER_GATEWAY_DEMO_REJECT_CALLS") {
            self.demo.reject_calls = match v.trim() {
                "" | "0" => None,
                s => Some(s.parse().map_err(|_| ConfigError::Env {
                    name: "PROVIDER_GATEWAY_DEMO_REJECT_CALLS",
                    detail: format!("not a SIP status: {v:?}"),
                })?),
            };
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.central.root_certificate,
            &mut self.central.key,
            &mut self.central.certificate,
            &mut self.rates.deck,
            &mut self.ledger.spool,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        let probe: E164 = "+10000000000"
            .parse()
            .map_err(|e| ConfigError::Invalid(format!("{e}")))?;
        if !self.sip.termination.contains("{number}") {
            return Err(ConfigError::Invalid(
                "sip.termination must contain {number}".into(),
            ));
        }
        self.termination_for(&probe)?;
        if self.media.first_port > self.media.last_port || self.media.first_port % 2 != 0 {
            return Err(ConfigError::Invalid(
                "media ports: first_port must be even and not above last_port".into(),
            ));
        }
        if let Some(status) = self.demo.reject_calls {
            if !(400..=699).contains(&status) {
                return Err(ConfigError::Invalid(format!(
                    "demo.reject_calls must be a final failure status (400-699), not {status}"
                )));
            }
        }
        if self.demo.sip_delay_ms > 10_000 {
            return Err(ConfigError::Invalid(
                "demo.sip_delay_ms is at most 10000".into(),
            ));
        }
        if self.sip.setup_timeout_secs == 0 || self.sip.answer_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "SIP timeouts must be at least 1 s".into(),
            ));
        }
        Ok(())
    }

    /// The termination target for a dialed number.
    pub fn termination_for(&self, number: &E164) -> Result<SipTarget, ConfigError> {
        let uri = self
            .sip
            .termination
            .replace("{number}", &number.to_string());
        SipTarget::parse(&uri)
            .map_err(|e| ConfigError::Invalid(format!("sip.termination {uri:?}: {e}")))
    }

    pub fn media_ports(&self) -> RangeInclusive<u16> {
        self.media.first_port..=self.media.last_port
    }

    pub fn setup_timeout(&self) -> Duration {
        Duration::from_secs(self.sip.setup_timeout_secs)
    }

    pub fn answer_timeout(&self) -> Duration {
        Duration::from_secs(self.sip.answer_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[central]
central_url = "https://127.0.0.1:8443"
root_certificate = "ca.crt"
key = "gw.key"
certificate = "gw.crt"
name = "carrier-a"

[sip]
listen = "127.0.0.1:5071"
termination = "sip:{number}@127.0.0.1:5090"

[rates]
deck = "rates.csv"
currency = "EUR"

[ledger]
spool = "spool"
"#;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("gateway.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn sample_loads_with_defaults_and_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let c = GatewayConfig::load(&write(dir.path(), SAMPLE)).unwrap();
        assert_eq!(c.central.key, dir.path().join("gw.key"));
        assert_eq!(c.ledger.spool, dir.path().join("spool"));
        assert_eq!(c.media_ports(), 40000..=40999);
        assert_eq!(c.answer_timeout(), Duration::from_secs(90));
        let t = c
            .termination_for(&"+441632960001".parse().unwrap())
            .unwrap();
        assert_eq!(t.uri(), "sip:+441632960001@127.0.0.1:5090");
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (SAMPLE.replace("{number}@", "x@"), "must contain {number}"),
            (
                SAMPLE.replace("listen = \"127.0.0.1:5071\"", "listen = \"nowhere\""),
                "listen",
            ),
            (format!("{SAMPLE}\n[extra]\nx = 1\n"), "unknown field"),
            (
                SAMPLE.replace("currency = \"EUR\"", "currency = \"euro\""),
                "currency",
            ),
            (
                SAMPLE.replace("sip:{number}", "tel:{number}"),
                "sip.termination",
            ),
            (
                format!("{SAMPLE}\n[demo]\nreject_calls = 200\n"),
                "demo.reject_calls",
            ),
            (format!("{SAMPLE}\n[metrics]\nlisten = \"x\"\n"), "listen"),
        ];
        for (text, expected) in cases {
            let err = GatewayConfig::load(&write(dir.path(), &text)).unwrap_err();
            assert!(err.to_string().contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn environment_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let mut c: GatewayConfig = toml::from_str(SAMPLE).unwrap();
        c.apply_env(|n| match n {
            "PROVIDER_GATEWAY_SIP_LISTEN" => Some("127.0.0.1:6000".into()),
            "PROVIDER_GATEWAY_ENROLLMENT_TOKEN" => Some("enr_x".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.sip.listen.port(), 6000);
        assert!(c.metrics.is_none());
        c.apply_env(|n| match n {
            "PROVIDER_GATEWAY_METRICS_LISTEN" => Some("127.0.0.1:9999".into()),
            "PROVIDER_GATEWAY_DEMO_REJECT_CALLS" => Some("503".into()),
            "PROVIDER_GATEWAY_DEMO_SIP_DELAY_MS" => Some("40".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.metrics.as_ref().map(|m| m.listen.port()), Some(9999));
        assert_eq!(c.demo.reject_calls, Some(503));
        assert_eq!(c.demo.sip_delay_ms, 40);
        assert_eq!(c.central.enrollment_token.as_deref(), Some("enr_x"));
        let err = c
            .apply_env(|n| (n == "PROVIDER_GATEWAY_SIP_LISTEN").then(|| "x".into()))
            .unwrap_err();
        assert!(err.to_string().contains("PROVIDER_GATEWAY_SIP_LISTEN"));
        drop(dir);
    }
}
