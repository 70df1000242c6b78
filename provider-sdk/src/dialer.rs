//! The dialer: a plain client of the network placing its own call.
//!
//! [`Dialer::dial`] asks central which providers will carry a call to the
//! number (with a price cap), probes them with OPTIONS in parallel under a
//! deadline, ranks them with [`crate::select`], signs a ticket for each
//! attempt (naming the provider, the destination, the attempt's Call-ID
//! and the provider's rate terms), and places the call through the best
//! one, failing over to the next on failure. Once answered it plays a WAV
//! file as G.711 RTP (or silence), records what it receives, hangs up after
//! the given time with a signed usage receipt on the BYE (or on its 200 to
//! the provider's BYE), and returns a [`DialReport`]: candidates, rates,
//! latencies, scores, the choice, every attempt and the call's outcome.
//!
//! The dialer is a participant like any provider: it has its own key and a
//! certificate from central (enrolled on first use with the operator's
//! one-time token), because it pays for its calls.

pub mod answer;
pub mod direct;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::central::{
    ensure_enrolled, CentralClient, CentralError, Enrolled, EnrollmentConfig, Route, RouteQuery,
    Transport as CentralTransport,
};
use crate::media::endpoint::{AfterAudio, EndpointConfig, EndpointReport, RtpEndpoint};
use crate::media::ua_sdp::SdpOffer;
use crate::media::wav;
use crate::money::Currency;
use crate::number::E164;
use crate::select::{self, Candidate, Decision, Latency, Policy};
use crate::sip::call::{Leg, Outcome};
use crate::sip::control::{new_call_id, AttemptRecord, PlannedAttempt};
use crate::sip::prober::{ProbeConfig, Prober};
use crate::sip::uac::Uac;
use crate::sip::SipTarget;
use crate::ticket::{RateTerms, Ticket, TicketSigner, UsageReceipt, RECEIPT_HEADER, TICKET_HEADER};

/// The dialer's configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialerConfig {
    /// Central, and the dialer's own credential.
    pub central: EnrollmentConfig,
    pub call: CallSettings,
    /// How providers are ranked.
    #[serde(default)]
    pub selection: Policy,
}

/// How calls are placed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSettings {
    /// The calling number (the ticket's origin, the From user).
    pub from: E164,
    /// The currency the dialer pays in; only providers priced in it are asked.
    pub currency: Currency,
    /// Local address for SIP (UDP).
    #[serde(default = "default_sip_bind")]
    pub sip_bind: SocketAddr,
    /// Local IPv4 address for RTP (written into the SDP offer).
    #[serde(default = "default_media_ip")]
    pub media_ip: IpAddr,
    /// Deadline of the on-demand OPTIONS probes, milliseconds.
    #[serde(default = "default_probe_ms")]
    pub probe_deadline_ms: u64,
    /// No ringing from a provider by then: next provider.
    #[serde(default = "default_setup_secs")]
    pub setup_timeout_secs: u64,
    /// No answer by then: the callee did not pick up.
    #[serde(default = "default_answer_secs")]
    pub answer_timeout_secs: u64,
    /// Most providers asked of central.
    #[serde(default = "default_limit")]
    pub route_limit: u16,
}

fn default_sip_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
fn default_media_ip() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}
fn default_probe_ms() -> u64 {
    500
}
fn default_setup_secs() -> u64 {
    5
}
fn default_answer_secs() -> u64 {
    60
}
fn default_limit() -> u16 {
    10
}

impl DialerConfig {
    /// Reads a TOML file; relative paths are taken from its directory, and
    /// `DIALER_ENROLLMENT_TOKEN` / `DIALER_CENTRAL_URL` override the file.
    pub fn load(path: &Path) -> Result<DialerConfig, DialError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| DialError::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut config: DialerConfig = toml::from_str(&text)
            .map_err(|e| DialError::Config(format!("{}: {e}", path.display())))?;
        if let Ok(v) = std::env::var("DIALER_ENROLLMENT_TOKEN") {
            config.central.enrollment_token = Some(v);
        }
        if let Ok(v) = std::env::var("DIALER_CENTRAL_URL") {
            config.central.central_url = v;
        }
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.central.root_certificate,
            &mut config.central.key,
            &mut config.central.certificate,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if !config.call.media_ip.is_ipv4() {
            return Err(DialError::Config(
                "call.media_ip must be an IPv4 address".into(),
            ));
        }
        Ok(config)
    }
}

/// One call to place.
#[derive(Debug, Clone)]
pub struct DialRequest {
    pub number: E164,
    /// Highest rate per minute accepted.
    pub max_rate: Option<Decimal>,
    /// Audio to play (8 kHz mono WAV); silence when absent.
    pub play: Option<PathBuf>,
    /// Where to write what was received (WAV).
    pub record: Option<PathBuf>,
    /// Hang up after this long once answered.
    pub duration: Duration,
}

/// Why a call could not even be tried.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("central: {0}")]
    Central(#[from] CentralError),
    #[error("the certificate is not a provider's: a payer needs a provider certificate")]
    NotAProvider,
    #[error("audio file: {0}")]
    Audio(#[from] wav::WavError),
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("signing the ticket: {0}")]
    Ticket(#[from] crate::ticket::TicketError),
}

/// One attempt as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptReport {
    pub provider_id: Option<u64>,
    pub provider: String,
    pub target: String,
    pub call_id: String,
    /// `answered`, `rejected 503 Service Unavailable`, `timeout after 5 s`, ...
    pub outcome: String,
    pub status: Option<u16>,
    /// From INVITE to the final answer, milliseconds.
    pub took_ms: u64,
}

/// How the answered call went.
#[derive(Debug, Clone, Serialize)]
pub struct AnsweredReport {
    pub provider_id: u64,
    pub provider: String,
    pub duration_secs: u64,
    pub billable_secs: u64,
    /// What the call costs at the ticket's rate terms (exact).
    pub cost: Decimal,
    pub currency: Currency,
    /// `us` or `far end`.
    pub ended_by: String,
    /// Our BYE was never answered.
    pub bye_unanswered: bool,
    pub ticket_id: uuid::Uuid,
    pub receipt_sent: bool,
    pub media: Option<MediaSummary>,
    /// The SDP answer could not be used for audio (the call was hung up at once).
    pub media_error: Option<String>,
}

/// RTP sent and received.
#[derive(Debug, Clone, Serialize)]
pub struct MediaSummary {
    pub codec: String,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub packets_lost: i64,
    pub jitter_ms: f64,
    pub recorded_secs: f64,
    pub recording: Option<String>,
}

/// Everything about one dial.
#[derive(Debug, Clone, Serialize)]
pub struct DialReport {
    pub number: E164,
    pub currency: Currency,
    pub max_rate: Option<Decimal>,
    /// Providers central named that the dialer cannot reach over UDP.
    pub unreachable_by_udp: Vec<String>,
    pub decision: Decision,
    pub attempts: Vec<AttemptReport>,
    pub answered: Option<AnsweredReport>,
    /// The final status when no attempt was answered (none: nobody to try).
    pub failed_status: Option<u16>,
}

impl DialReport {
    /// Whether the call was answered.
    pub fn succeeded(&self) -> bool {
        self.answered.is_some()
    }
}

/// A payer that places calls.
pub struct Dialer {
    config: DialerConfig,
    me: Enrolled,
    provider_id: u64,
    central: CentralClient,
    signer: TicketSigner,
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The SIP target of a route: its first UDP address, with the number.
fn udp_target(route: &Route, number: &E164) -> Option<SipTarget> {
    let addr = route
        .sip_addresses
        .iter()
        .find(|a| a.transport == CentralTransport::Udp)?;
    SipTarget::parse(&format!("sip:{number}@{}", addr.address)).ok()
}

impl Dialer {
    /// Enrolls on first use (or reuses the stored credential).
    pub async fn new(config: DialerConfig) -> Result<Dialer, DialError> {
        let me = ensure_enrolled(&config.central).await?;
        let provider_id = me.provider_id().ok_or(DialError::NotAProvider)?;
        let central = me.client_builder(&config.central.central_url).build()?;
        let signer = TicketSigner::new(me.key.clone(), &config.central.central_url);
        Ok(Dialer {
            config,
            me,
            provider_id,
            central,
            signer,
        })
    }

    fn ticket(&self, route: &Route, number: &E164, call_id: &str) -> Ticket {
        let now = unix(SystemTime::now());
        let c = &self.config.call;
        // Valid for the whole search plus some slack, within what providers accept.
        let lifetime = i64::try_from(c.setup_timeout_secs + c.answer_timeout_secs + 60)
            .unwrap_or(i64::MAX)
            .min(crate::ticket::MAX_TICKET_LIFETIME_SECS);
        Ticket {
            iss: self.provider_id,
            payer: self.me.certified.subject_cn.clone(),
            aud: route.provider_id,
            orig: c.from,
            dest: *number,
            call_id: call_id.to_owned(),
            rate: RateTerms {
                per_minute: route.rate_per_minute,
                connect_fee: route.connect_fee,
                first_increment: route.first_increment,
                next_increment: route.next_increment,
                currency: route.currency,
                version: route.rate_version,
            },
            iat: now,
            exp: now + lifetime,
            jti: uuid::Uuid::now_v7(),
        }
    }

    /// Places one call and reports everything about it. An `Err` means the
    /// call could not be tried at all (central unreachable, bad audio file);
    /// a call nobody answered is an `Ok` report without `answered`.
    pub async fn dial(
        &self,
        request: &DialRequest,
        stop: CancellationToken,
    ) -> Result<DialReport, DialError> {
        let audio = match &request.play {
            Some(p) => wav::read_wav(p)?,
            None => Vec::new(),
        };
        let c = &self.config.call;
        let query = RouteQuery {
            max_rate: request.max_rate,
            currency: Some(c.currency),
            limit: Some(c.route_limit),
            ..RouteQuery::new(request.number)
        };
        let routes = self.central.routes(&query).await?;
        let mut unreachable_by_udp = Vec::new();
        let mut usable: Vec<(Route, Candidate)> = Vec::new();
        for route in routes {
            match udp_target(&route, &request.number) {
                Some(target) => {
                    let candidate = Candidate {
                        provider_id: route.provider_id,
                        name: route.provider_name.clone(),
                        prefix: route.prefix.digits().to_owned(),
                        rate: self.ticket(&route, &request.number, "-").rate,
                        target,
                    };
                    usable.push((route, candidate));
                }
                None => unreachable_by_udp.push(route.provider_name.clone()),
            }
        }
        let latency = self.probe(&usable).await?;
        let candidates: Vec<Candidate> = usable.iter().map(|(_, c)| c.clone()).collect();
        let decision = select::select(&candidates, &latency, &self.config.selection, c.currency);
        let mut tickets: HashMap<String, (Ticket, Route)> = HashMap::new();
        let mut plan = Vec::new();
        let host = c.sip_bind.ip().to_string();
        for i in decision.order() {
            let (route, candidate) = &usable[i];
            let call_id = new_call_id(&host);
            let ticket = self.ticket(route, &request.number, &call_id);
            let token = self.signer.sign_ticket(&ticket)?;
            plan.push(PlannedAttempt {
                target: candidate.target.clone(),
                call_id: call_id.clone(),
                headers: vec![(TICKET_HEADER.to_owned(), token)],
                setup_timeout: Duration::from_secs(c.setup_timeout_secs),
                answer_timeout: Duration::from_secs(c.answer_timeout_secs),
                group: 0,
                label: route.provider_name.clone(),
            });
            tickets.insert(call_id, (ticket, route.clone()));
        }
        let mut report = DialReport {
            number: request.number,
            currency: c.currency,
            max_rate: request.max_rate,
            unreachable_by_udp,
            decision,
            attempts: Vec::new(),
            answered: None,
            failed_status: None,
        };
        if plan.is_empty() {
            return Ok(report);
        }
        let rtp = UdpSocket::bind(SocketAddr::new(c.media_ip, 0))
            .await
            .map_err(|source| DialError::Io {
                what: "binding the RTP socket",
                source,
            })?;
        let rtp_addr = match rtp.local_addr() {
            Ok(SocketAddr::V4(a)) => a,
            Ok(other) => SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, other.port()),
            Err(source) => {
                return Err(DialError::Io {
                    what: "reading the RTP socket's address",
                    source,
                })
            }
        };
        let offer = SdpOffer::new(rtp_addr);
        let uac = Uac::bind(c.sip_bind)
            .await
            .map_err(|source| DialError::Io {
                what: "binding the SIP socket",
                source,
            })?;
        let from_uri = format!("sip:{}@{}", c.from, uac.local_addr());
        let placed = uac
            .place(&from_uri, plan, offer.to_sdp().into_bytes())
            .await;
        let call = match placed {
            Ok(call) => call,
            Err(failed) => {
                report.attempts = attempt_reports(&failed.attempts, &tickets);
                report.failed_status = failed.last_status;
                return Ok(report);
            }
        };
        report.attempts = attempt_reports(&call.attempts, &tickets);
        let Some((ticket, route)) = call
            .answered()
            .and_then(|a| tickets.get(&a.call_id))
            .cloned()
        else {
            return Ok(report);
        };
        let answered_at = call.answered_at;
        let media = offer.parse_answer(&call.answer_sdp);
        let (endpoint, media_error, codec) = match &media {
            Ok(answer) => {
                let after = if audio.is_empty() {
                    AfterAudio::Silence
                } else {
                    AfterAudio::Loop
                };
                let config = EndpointConfig::from_answer(answer).after_audio(after);
                let codec = format!("{:?}", answer.codec).to_uppercase();
                (
                    Some(RtpEndpoint::start(rtp, config, audio, &stop)),
                    None,
                    codec,
                )
            }
            Err(e) => (None, Some(e.to_string()), String::new()),
        };
        // Unusable media: hang up at once (still with a receipt).
        let duration = if endpoint.is_some() {
            request.duration
        } else {
            Duration::ZERO
        };
        let signer = &self.signer;
        let receipt_ticket = ticket.clone();
        let mut receipt_sent = false;
        let ended = call
            .run_until(duration, stop.cancelled(), |ended_at| {
                let answer = unix(answered_at);
                let end = unix(ended_at).max(answer);
                let secs = u64::try_from(end - answer).unwrap_or(0);
                let receipt = UsageReceipt {
                    iss: receipt_ticket.iss,
                    aud: receipt_ticket.aud,
                    tid: receipt_ticket.jti,
                    answer,
                    end,
                    billable: receipt_ticket.rate.billable_seconds(secs).unwrap_or(0),
                    iat: unix(SystemTime::now()).max(end),
                };
                match signer.sign_receipt(&receipt) {
                    Ok(token) => {
                        receipt_sent = true;
                        vec![(RECEIPT_HEADER.to_owned(), token)]
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot sign the usage receipt");
                        Vec::new()
                    }
                }
            })
            .await;
        let media_report = match endpoint {
            Some(e) => e.stop().await.ok(),
            None => None,
        };
        let media_summary = match &media_report {
            Some(r) => Some(summarise_media(r, codec, request.record.as_deref())?),
            None => None,
        };
        let answer = unix(ended.answered_at);
        let secs = u64::try_from(unix(ended.ended_at).max(answer) - answer).unwrap_or(0);
        let billable = ticket.rate.billable_seconds(secs).unwrap_or(0);
        let cost = if billable == 0 {
            Decimal::ZERO
        } else {
            ticket.rate.connect_fee
                + ticket.rate.per_minute * Decimal::from(billable) / Decimal::from(60)
        };
        report.answered = Some(AnsweredReport {
            provider_id: route.provider_id,
            provider: route.provider_name.clone(),
            duration_secs: secs,
            billable_secs: billable,
            cost,
            currency: ticket.rate.currency,
            ended_by: match ended.ended_by {
                Leg::Caller => "us".into(),
                Leg::Callee => "far end".into(),
            },
            bye_unanswered: ended.bye_unanswered,
            ticket_id: ticket.jti,
            receipt_sent,
            media: media_summary,
            media_error,
        });
        Ok(report)
    }

    async fn probe(&self, usable: &[(Route, Candidate)]) -> Result<Vec<Latency>, DialError> {
        if usable.is_empty() {
            return Ok(Vec::new());
        }
        let deadline = Duration::from_millis(self.config.call.probe_deadline_ms);
        let bind = SocketAddr::new(self.config.call.sip_bind.ip(), 0);
        let prober = Prober::bind(
            bind,
            ProbeConfig {
                timeout: deadline,
                ..ProbeConfig::default()
            },
        )
        .await
        .map_err(|source| DialError::Io {
            what: "binding the probe socket",
            source,
        })?;
        let targets: Vec<SipTarget> = usable.iter().map(|(_, c)| c.target.clone()).collect();
        let results = prober.probe_all(&targets, deadline).await;
        prober.stop();
        Ok(results
            .into_iter()
            .map(|(_, r)| Latency {
                probe: Some(r),
                health: None,
            })
            .collect())
    }
}

/// Writes the recording (when asked) and sums up an endpoint's report.
pub(crate) fn summarise_media(
    r: &EndpointReport,
    codec: String,
    record: Option<&Path>,
) -> Result<MediaSummary, DialError> {
    if let Some(path) = record {
        wav::write_wav(path, &r.recording)?;
    }
    Ok(MediaSummary {
        codec,
        packets_sent: r.sent.packets,
        packets_received: r.received.rtp.packets,
        packets_lost: r.received.rtp.lost,
        jitter_ms: r.received.rtp.jitter.as_secs_f64() * 1000.0,
        recorded_secs: r.recording.len() as f64 / 8000.0,
        recording: record.map(|p| p.display().to_string()),
    })
}

fn attempt_reports(
    attempts: &[AttemptRecord],
    tickets: &HashMap<String, (Ticket, Route)>,
) -> Vec<AttemptReport> {
    attempts
        .iter()
        .map(|a| {
            let (outcome, status) = match &a.outcome {
                Outcome::Answered => ("answered".to_owned(), Some(200)),
                Outcome::Rejected { status, reason } => {
                    (format!("rejected {status} {reason}"), Some(*status))
                }
                Outcome::Timeout { after } => {
                    let what = if a.provisional_at.is_some() {
                        "no answer"
                    } else {
                        "no response"
                    };
                    (format!("{what} within {} s", after.as_secs_f64()), None)
                }
                Outcome::TransportError { detail } => (format!("unreachable: {detail}"), None),
                Outcome::Cancelled => ("cancelled".to_owned(), None),
            };
            AttemptReport {
                provider_id: tickets.get(&a.call_id).map(|(_, r)| r.provider_id),
                provider: a.label.clone(),
                target: a.target.uri().to_owned(),
                call_id: a.call_id.clone(),
                outcome,
                status,
                took_ms: millis(a.ended_at.duration_since(a.started_at).unwrap_or_default()),
            }
        })
        .collect()
}

impl DialReport {
    /// The report as a person reads it.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let cap = self
            .max_rate
            .map_or(String::new(), |m| format!(", at most {m}/min"));
        let _ = writeln!(
            s,
            "candidates for {} ({}{cap}), unit cost = cost of a {} s call per minute:",
            self.number, self.currency, self.decision.policy.typical_call_secs
        );
        let _ = writeln!(
            s,
            "  {:<4} {:<14} {:<10} {:>9} {:>8} {:>7} {:>10} {:>9}  verdict",
            "rank", "provider", "prefix", "rate/min", "connect", "incr", "unit cost", "latency"
        );
        for c in &self.decision.candidates {
            let rank = c.rank.map_or("-".to_owned(), |r| (r + 1).to_string());
            let latency = c.latency.map_or("-".to_owned(), |l| {
                format!("{:.1} ms", l.as_secs_f64() * 1000.0)
            });
            let verdict = match (&c.rank, &c.excluded) {
                (Some(0), _) => format!(
                    "chosen{}",
                    if c.in_band {
                        " (cost band, by latency)"
                    } else {
                        " (cheapest)"
                    }
                ),
                (Some(_), _) if c.in_band => "in the cost band".to_owned(),
                (Some(_), _) => "fallback".to_owned(),
                (None, Some(e)) => format!("excluded: {}", exclusion_text(e)),
                (None, None) => "-".to_owned(),
            };
            let _ = writeln!(
                s,
                "  {:<4} {:<14} {:<10} {:>9} {:>8} {:>7} {:>10} {:>9}  {verdict}",
                rank,
                c.name,
                c.prefix,
                c.rate.per_minute.to_string(),
                c.rate.connect_fee.to_string(),
                format!("{}/{}", c.rate.first_increment, c.rate.next_increment),
                c.unit_cost.to_string(),
                latency,
            );
        }
        if self.decision.candidates.is_empty() {
            let _ = writeln!(s, "  (no provider is willing at this price)");
        }
        for name in &self.unreachable_by_udp {
            let _ = writeln!(s, "  {name}: no UDP address, not tried");
        }
        let _ = writeln!(s, "attempts:");
        for (i, a) in self.attempts.iter().enumerate() {
            let _ = writeln!(
                s,
                "  {}. {:<14} {}  {} ({} ms)",
                i + 1,
                a.provider,
                a.target,
                a.outcome,
                a.took_ms
            );
        }
        if self.attempts.is_empty() {
            let _ = writeln!(s, "  (none)");
        }
        match &self.answered {
            Some(a) => {
                let _ = writeln!(
                    s,
                    "call: answered by {}, {} s, ended by {}; billable {} s, cost {} {}; ticket {}{}",
                    a.provider,
                    a.duration_secs,
                    a.ended_by,
                    a.billable_secs,
                    a.cost.normalize(),
                    a.currency,
                    a.ticket_id,
                    if a.receipt_sent { ", receipt sent" } else { ", no receipt sent" }
                );
                if let Some(m) = &a.media {
                    let _ = writeln!(
                        s,
                        "media: {} sent {} packets, received {} (lost {}, jitter {:.2} ms), {:.1} s recorded{}",
                        m.codec,
                        m.packets_sent,
                        m.packets_received,
                        m.packets_lost,
                        m.jitter_ms,
                        m.recorded_secs,
                        m.recording.as_ref().map_or(String::new(), |p| format!(" to {p}"))
                    );
                }
                if let Some(e) = &a.media_error {
                    let _ = writeln!(s, "media: unusable answer, hung up: {e}");
                }
            }
            None => {
                let _ = writeln!(
                    s,
                    "call: not answered{}",
                    self.failed_status
                        .map_or(String::new(), |st| format!(" (last status {st})"))
                );
            }
        }
        s
    }
}

fn exclusion_text(e: &select::Exclusion) -> String {
    use select::Exclusion::*;
    match e {
        Down => "down (background probes)".into(),
        NoProbeAnswer => "no answer to OPTIONS in time".into(),
        ProbeFailed { detail } => format!("probe failed: {detail}"),
        TooSlow { latency } => format!("too slow ({:.1} ms)", latency.as_secs_f64() * 1000.0),
        Currency { currency } => format!("priced in {currency}"),
        BeyondMaxAttempts => "beyond the attempt limit".into(),
    }
}
