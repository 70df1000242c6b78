//! The call path: what the forwarder does with an INVITE for a subscriber's
//! number, as the B2BUA's [`CallControl`].
//!
//! 1. The subscriber side ([`CallBook::begin`]) authorizes the call (known
//!    number, active subscriber in good standing, within caps), picks the
//!    forwarding rule for now and opens the CDR; a refusal becomes the SIP
//!    answer with a `Reason` and a `Warning` saying why.
//! 2. For every forwarding target of the rule, in order: central's willing
//!    providers (cached per destination, used stale while central is
//!    unreachable), probed with OPTIONS in parallel and blended with the
//!    background statistics, ranked by [`select`]. Every provider of a
//!    target is one attempt of that target's group, with a ticket signed
//!    for the attempt's Call-ID; the target's ring timeout is the answer
//!    timeout, so a ring-out moves on to the next target.
//! 3. While the call is torn down, the provider leg's BYE (or our 200 to
//!    its BYE) carries the signed usage receipt.
//! 4. After hangup the CDR (decision, attempts, times, media) is closed and
//!    the subscriber charged ([`CallBook::finish`]) off the SIP task.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use provider_sdk::central::Route;
use provider_sdk::money::Currency;
use provider_sdk::number::E164;
use provider_sdk::select::{self, Candidate, Decision, Policy};
use provider_sdk::sip::call::{HangupCause, Leg};
use provider_sdk::sip::control::{
    new_call_id, CallControl, CallPlan, CallRecord, Hangup, InboundCall, PlannedAttempt,
    RouteFuture, Routing,
};
use provider_sdk::sip::{Reply, SipTarget};
use provider_sdk::ticket::{
    RateTerms, Ticket, TicketSigner, UsageReceipt, RECEIPT_HEADER, TICKET_HEADER,
};
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use crate::call_metrics::{CallMetrics, ProviderLabels, StatusLabels};
use crate::latency::Latencies;
use crate::route_cache::{RouteCache, RouteError};

/// A call as it starts, for the subscriber side.
#[derive(Debug, Clone)]
pub struct CallStart {
    pub call_id: String,
    pub called: E164,
    pub caller: Option<String>,
    pub caller_name: Option<String>,
    pub source: SocketAddr,
    pub received_at: SystemTime,
}

/// One forwarding target of the rule in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardTo {
    pub number: E164,
    pub ring_timeout: Duration,
}

/// An authorized call.
#[derive(Debug, Clone)]
pub struct Begun {
    pub cdr_id: Uuid,
    pub subscriber: crate::subscriber::Subscriber,
    /// Money and calls before this one.
    pub standing: crate::authorize::Standing,
    pub targets: Vec<ForwardTo>,
    /// The highest rate per minute we pay a provider for this call, if any.
    pub max_rate: Option<Decimal>,
}

/// What the CDR learns when the call is answered (enough to bill it even
/// if the forwarder stops during the call).
#[derive(Debug, Clone, Serialize)]
pub struct AnsweredInfo {
    pub at: SystemTime,
    pub forwarded_to: E164,
    pub provider_id: u64,
    pub provider: String,
    pub terms: RateTerms,
    pub ticket_id: Uuid,
    pub decisions: serde_json::Value,
}

/// Why a call is refused: the SIP status and a reason for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: String,
}

/// One attempt as the CDR keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptSummary {
    pub target: String,
    pub forward_to: String,
    pub provider_id: Option<u64>,
    pub provider: String,
    pub call_id: String,
    pub outcome: String,
    pub status: Option<u16>,
    pub started_at: i64,
    /// From the caller's INVITE to this attempt's INVITE, ms (for the
    /// first attempt: the post-dial delay the forwarder adds).
    pub started_after_ms: f64,
    pub provisional_after_ms: Option<u64>,
    pub ended_after_ms: u64,
}

/// The decision for one forwarding target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetDecision {
    pub forward_to: E164,
    /// Where the candidates came from: `central`, `cached`, `stale`, or `none`.
    pub routes: &'static str,
    pub decision: Option<Decision>,
    pub error: Option<String>,
    /// Time spent on the route lookup and on the on-demand probes, ms.
    pub lookup_ms: f64,
    pub probe_ms: f64,
}

/// How the call ended, for the CDR and the charge.
#[derive(Debug, Clone)]
pub struct CallEnd {
    pub cdr_id: Uuid,
    pub subscriber: crate::subscriber::Subscriber,
    pub final_status: Option<u16>,
    pub forwarded_to: Option<E164>,
    pub decisions: Vec<TargetDecision>,
    pub attempts: Vec<AttemptSummary>,
    pub answered_at: Option<SystemTime>,
    pub ended_at: Option<SystemTime>,
    pub hangup: Option<String>,
    /// The provider that carried it and the terms its ticket names.
    pub carrier: Option<(u64, String, RateTerms)>,
    pub ticket_id: Option<Uuid>,
    pub media: Option<serde_json::Value>,
}

/// The subscriber side of the call path (storage, rules, rating).
/// Calls are made from blocking threads, except [`CallBook::max_duration`]:
/// arithmetic on what `begin` returned, called inline between the route
/// lookup and the first INVITE (a thread hop there would add to post-dial
/// delay).
pub trait CallBook: Send + Sync + 'static {
    /// Authorizes the call, picks the rule, opens the CDR.
    fn begin(&self, call: &CallStart) -> Result<Begun, Refusal>;
    /// The longest the answered call may last (the money left), over every
    /// destination and provider terms an attempt may use; a refusal when a
    /// destination cannot be priced for the subscriber. Must not block.
    fn max_duration(
        &self,
        begun: &Begun,
        attempts: &[(E164, RateTerms)],
    ) -> Result<Option<Duration>, Refusal>;
    /// The call was answered (kept in the CDR so a crash can still bill it).
    fn answered(&self, cdr_id: Uuid, info: AnsweredInfo);
    /// Answered calls still up at `at` (a crash bills them up to the last note).
    fn still_up(&self, cdr_ids: &[Uuid], at: SystemTime);
    /// Closes the CDR and charges the subscriber, in one transaction.
    fn finish(&self, end: CallEnd);
}

/// Settings of the call path.
#[derive(Debug, Clone)]
pub struct CallSettings {
    pub currency: Currency,
    pub setup_timeout: Duration,
    pub ticket_lifetime: Duration,
    pub policy: Policy,
    /// Host part of our Call-IDs.
    pub host: String,
}

/// What the forwarder knows of a call in progress.
struct Active {
    begun: Begun,
    decisions: Vec<TargetDecision>,
    /// By attempt Call-ID: the ticket, the provider and the forwarding target.
    tickets: HashMap<String, (Ticket, Route, E164)>,
    answered: bool,
}

/// The forwarder's [`CallControl`].
pub struct Forwarding {
    pub book: Arc<dyn CallBook>,
    pub routes: Arc<RouteCache>,
    pub latency: Arc<Latencies>,
    /// The forwarder's own participant id and signer (it pays for the
    /// calls); empty until it is enrolled with central.
    pub payer: arc_swap::ArcSwapOption<Payer>,
    pub settings: CallSettings,
    pub metrics: Arc<CallMetrics>,
    active: Mutex<HashMap<String, Active>>,
}

/// The forwarder as a payer: its provider id, certificate name and key.
pub struct Payer {
    pub id: u64,
    pub name: String,
    pub signer: TicketSigner,
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '\''
            } else {
                c
            }
        })
        .collect()
}

/// A refusal as a SIP answer with `Reason` and `Warning` headers.
pub fn refusal_reply(r: &Refusal) -> Reply {
    let text = sanitize(&r.reason);
    Reply::new(r.status, reason_phrase(r.status))
        .header("Reason", format!("SIP;cause={};text=\"{text}\"", r.status))
        .header("Warning", format!("399 forwarder \"{text}\""))
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        480 => "Temporarily Unavailable",
        486 => "Busy Here",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        _ => "Refused",
    }
}

fn terms_of(route: &Route) -> RateTerms {
    RateTerms {
        per_minute: route.rate_per_minute,
        connect_fee: route.connect_fee,
        first_increment: route.first_increment,
        next_increment: route.next_increment,
        currency: route.currency,
        version: route.rate_version,
    }
}

/// The UDP target of a route for `number`.
fn target_of(route: &Route, number: &E164) -> Option<SipTarget> {
    use provider_sdk::central::Transport;
    let addr = route
        .sip_addresses
        .iter()
        .find(|a| a.transport == Transport::Udp)?;
    SipTarget::parse(&format!("sip:{number}@{}", addr.address)).ok()
}

impl Forwarding {
    pub fn new(
        book: Arc<dyn CallBook>,
        routes: Arc<RouteCache>,
        latency: Arc<Latencies>,
        payer: Option<Arc<Payer>>,
        settings: CallSettings,
    ) -> Arc<Forwarding> {
        Arc::new(Forwarding {
            book,
            routes,
            latency,
            payer: arc_swap::ArcSwapOption::new(payer),
            settings,
            metrics: Arc::new(CallMetrics::new()),
            active: Mutex::new(HashMap::new()),
        })
    }

    /// Calls in progress.
    pub fn active_calls(&self) -> usize {
        self.active.lock().len()
    }

    /// Notes every `every` that answered calls are still up, until `stop`.
    pub fn spawn_heartbeat(
        self: &Arc<Self>,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let up: Vec<Uuid> = me
                    .active
                    .lock()
                    .values()
                    .filter(|a| a.answered)
                    .map(|a| a.begun.cdr_id)
                    .collect();
                if up.is_empty() {
                    continue;
                }
                let book = me.book.clone();
                let at = SystemTime::now();
                let _ = tokio::task::spawn_blocking(move || book.still_up(&up, at)).await;
            }
        });
    }

    fn ticket(
        &self,
        payer: &Payer,
        route: &Route,
        orig: E164,
        dest: E164,
        call_id: &str,
    ) -> Ticket {
        let now = unix(SystemTime::now());
        let lifetime = i64::try_from(self.settings.ticket_lifetime.as_secs())
            .unwrap_or(i64::MAX)
            .clamp(1, provider_sdk::ticket::MAX_TICKET_LIFETIME_SECS);
        Ticket {
            iss: payer.id,
            payer: payer.name.clone(),
            aud: route.provider_id,
            orig,
            dest,
            call_id: call_id.to_owned(),
            rate: terms_of(route),
            iat: now,
            exp: now + lifetime,
            jti: Uuid::now_v7(),
        }
    }

    async fn decide(self: Arc<Self>, call: InboundCall) -> Routing {
        self.metrics.offered.inc();
        let routing = self.clone().route_call(call).await;
        if let Routing::Reject(reply) = &routing {
            self.metrics
                .refused
                .get_or_create(&StatusLabels {
                    status: reply.status,
                })
                .inc();
        }
        routing
    }

    async fn route_call(self: Arc<Self>, call: InboundCall) -> Routing {
        let called: E164 = match call.dialed.as_deref().map(str::parse) {
            Some(Ok(n)) => n,
            _ => {
                return Routing::Reject(refusal_reply(&Refusal {
                    status: 404,
                    reason: "the Request-URI has no E.164 number".into(),
                }))
            }
        };
        let Some(payer) = self.payer.load_full() else {
            return Routing::Reject(refusal_reply(&Refusal {
                status: 503,
                reason: "the forwarder is not enrolled with central yet".into(),
            }));
        };
        let start = CallStart {
            call_id: call.call_id.clone(),
            called,
            caller: call.from_user.clone(),
            caller_name: call.from_display.clone(),
            source: call.source,
            received_at: call.received_at,
        };
        let book = self.book.clone();
        let begun = match tokio::task::spawn_blocking(move || book.begin(&start)).await {
            Ok(Ok(b)) => b,
            Ok(Err(refusal)) => {
                tracing::info!(call_id = %call.call_id, status = refusal.status, reason = %refusal.reason, "call refused");
                return Routing::Reject(refusal_reply(&refusal));
            }
            Err(e) => {
                tracing::error!(error = %e, "authorization task failed");
                return Routing::Reject(Reply::new(500, "Server Internal Error"));
            }
        };
        // The caller's number on the ticket: theirs when it is E.164, else the called number.
        let orig: E164 = call
            .from_user
            .as_deref()
            .and_then(|u| u.parse().ok())
            .unwrap_or(called);
        let mut attempts = Vec::new();
        let mut decisions = Vec::new();
        let mut tickets = HashMap::new();
        let mut unavailable = None;
        for (group, to) in begun.targets.iter().enumerate() {
            let group = u32::try_from(group).unwrap_or(u32::MAX);
            let lookup_start = std::time::Instant::now();
            let looked_up = self.routes.lookup(to.number, begun.max_rate).await;
            let lookup_ms = lookup_start.elapsed().as_micros() as f64 / 1000.0;
            let (routes, freshness) = match looked_up {
                Ok(r) => {
                    let result = if r.0.is_empty() { "none" } else { r.1.as_str() };
                    self.metrics.lookup(result);
                    r
                }
                Err(e) => {
                    if matches!(e, RouteError::Unavailable(_)) {
                        self.metrics.lookup("unavailable");
                        unavailable = Some(e.to_string());
                    } else {
                        self.metrics.lookup("refused");
                    }
                    decisions.push(TargetDecision {
                        forward_to: to.number,
                        routes: "none",
                        decision: None,
                        error: Some(e.to_string()),
                        lookup_ms,
                        probe_ms: 0.0,
                    });
                    continue;
                }
            };
            let usable: Vec<(&Route, Candidate)> = routes
                .iter()
                .filter_map(|r| {
                    let target = target_of(r, &to.number)?;
                    Some((
                        r,
                        Candidate {
                            provider_id: r.provider_id,
                            name: r.provider_name.clone(),
                            prefix: r.prefix.digits().to_owned(),
                            rate: terms_of(r),
                            target,
                        },
                    ))
                })
                .collect();
            let candidates: Vec<Candidate> = usable.iter().map(|(_, c)| c.clone()).collect();
            let probe_start = std::time::Instant::now();
            let latency = self.latency.measure(&candidates).await;
            let probe_ms = probe_start.elapsed().as_micros() as f64 / 1000.0;
            for (c, l) in candidates.iter().zip(&latency) {
                let rtt = match &l.probe {
                    Some(provider_sdk::sip::prober::ProbeResult::Answered { rtt, .. }) => {
                        Some(*rtt)
                    }
                    _ => l.health.as_ref().and_then(|h| h.srtt),
                };
                if let Some(rtt) = rtt {
                    self.metrics
                        .probe_rtt
                        .get_or_create(&ProviderLabels {
                            provider: c.name.clone(),
                        })
                        .set(rtt.as_secs_f64());
                }
            }
            let decision = select::select(
                &candidates,
                &latency,
                &self.settings.policy,
                self.settings.currency,
            );
            for i in decision.order() {
                let (route, candidate) = &usable[i];
                let call_id = new_call_id(&self.settings.host);
                let ticket = self.ticket(&payer, route, orig, to.number, &call_id);
                let token = match payer.signer.sign_ticket(&ticket) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot sign a ticket");
                        continue;
                    }
                };
                attempts.push(PlannedAttempt {
                    target: candidate.target.clone(),
                    call_id: call_id.clone(),
                    headers: vec![(TICKET_HEADER.to_owned(), token)],
                    setup_timeout: self.settings.setup_timeout.min(to.ring_timeout),
                    answer_timeout: to.ring_timeout,
                    group,
                    label: route.provider_name.clone(),
                });
                // The attempt's Call-ID and the ticket id are what the
                // provider's gateway and central log for this call.
                tracing::info!(call_id = %call.call_id, attempt = %call_id, provider = %route.provider_name, ticket = %ticket.jti, forward_to = %to.number, "attempt planned");
                tickets.insert(call_id, (ticket, (*route).clone(), to.number));
            }
            decisions.push(TargetDecision {
                forward_to: to.number,
                routes: freshness.as_str(),
                decision: Some(decision),
                error: None,
                lookup_ms,
                probe_ms,
            });
        }
        let priced: Vec<(E164, RateTerms)> = tickets
            .values()
            .map(|(t, _, to)| (*to, t.rate.clone()))
            .collect();
        let max_duration = if attempts.is_empty() {
            Ok(None)
        } else {
            self.book.max_duration(&begun, &priced)
        };
        let (max_duration, unpriced) = match max_duration {
            Ok(d) => (d, None),
            Err(r) => (None, Some(r)),
        };
        let refusal = if let Some(r) = unpriced {
            Some(r)
        } else if attempts.is_empty() {
            Some(match unavailable {
                Some(why) => Refusal {
                    status: 503,
                    reason: format!("no route: {why}"),
                },
                None => Refusal {
                    status: 480,
                    reason: "no provider will carry the call".into(),
                },
            })
        } else if max_duration == Some(Duration::ZERO) {
            Some(Refusal {
                status: 402,
                reason: "balance too low for this destination".into(),
            })
        } else {
            None
        };
        let cdr_id = begun.cdr_id;
        let subscriber_id = begun.subscriber.id;
        {
            let mut active = self.active.lock();
            active.insert(
                call.call_id.clone(),
                Active {
                    begun,
                    decisions,
                    tickets,
                    answered: false,
                },
            );
            self.metrics.active.set(active.len() as i64);
        }
        if let Some(refusal) = refusal {
            tracing::info!(call_id = %call.call_id, %cdr_id, subscriber_id, status = refusal.status, reason = %refusal.reason, "call not routed");
            return Routing::Reject(refusal_reply(&refusal));
        }
        tracing::info!(call_id = %call.call_id, %cdr_id, subscriber_id, attempts = attempts.len(), "call routed");
        Routing::Plan(CallPlan {
            attempts,
            max_duration,
        })
    }

    /// The metrics of a call that went to providers (refusals are counted
    /// when refused).
    fn count(&self, record: &CallRecord) {
        use provider_sdk::sip::Outcome;
        let Some(first) = record.attempts.first() else {
            return;
        };
        let m = &self.metrics;
        if let Ok(pdd) = first.started_at.duration_since(record.received_at) {
            m.post_dial_delay.observe(pdd.as_secs_f64());
        }
        for (i, a) in record.attempts.iter().enumerate() {
            let outcome = match a.outcome {
                Outcome::Answered => "answered",
                Outcome::Rejected { .. } => "rejected",
                Outcome::Timeout { .. } => "timeout",
                Outcome::TransportError { .. } => "unreachable",
                Outcome::Cancelled => "cancelled",
            };
            m.attempt(&a.label, outcome);
            if a.outcome != Outcome::Answered && i + 1 < record.attempts.len() {
                m.failovers
                    .get_or_create(&ProviderLabels {
                        provider: a.label.clone(),
                    })
                    .inc();
            }
        }
        if record.answered_at.is_none() {
            m.failed
                .get_or_create(&StatusLabels {
                    status: record.final_status.unwrap_or(0),
                })
                .inc();
        }
    }

    fn end(&self, record: &CallRecord) -> Option<CallEnd> {
        let active = {
            let mut calls = self.active.lock();
            let active = calls.remove(&record.call_id)?;
            self.metrics.active.set(calls.len() as i64);
            active
        };
        self.count(record);
        let attempts = record
            .attempts
            .iter()
            .map(|a| {
                let (provider_id, forward_to) = active
                    .tickets
                    .get(&a.call_id)
                    .map_or((None, String::new()), |(_, r, to)| {
                        (Some(r.provider_id), to.to_string())
                    });
                let (outcome, status) = describe(&a.outcome, a.provisional_at.is_some());
                AttemptSummary {
                    target: a.target.uri().to_owned(),
                    forward_to,
                    provider_id,
                    provider: a.label.clone(),
                    call_id: a.call_id.clone(),
                    outcome,
                    status,
                    started_at: unix(a.started_at),
                    started_after_ms: a
                        .started_at
                        .duration_since(record.received_at)
                        .map(|d| d.as_micros() as f64 / 1000.0)
                        .unwrap_or(0.0),
                    provisional_after_ms: a
                        .provisional_at
                        .and_then(|p| p.duration_since(a.started_at).ok())
                        .map(millis),
                    ended_after_ms: millis(
                        a.ended_at.duration_since(a.started_at).unwrap_or_default(),
                    ),
                }
            })
            .collect();
        let answered = record
            .answered_attempt()
            .and_then(|a| active.tickets.get(&a.call_id));
        Some(CallEnd {
            cdr_id: active.begun.cdr_id,
            subscriber: active.begun.subscriber.clone(),
            final_status: record.final_status,
            forwarded_to: answered.map(|(_, _, to)| *to),
            decisions: active.decisions,
            attempts,
            answered_at: record.answered_at,
            ended_at: record.ended_at,
            hangup: record.hangup.map(|h| match h {
                HangupCause::Bye => match record.ended_by {
                    Some(Leg::Caller) => "caller hung up".to_owned(),
                    Some(Leg::Callee) => "callee hung up".to_owned(),
                    None => "bye".to_owned(),
                },
                HangupCause::MediaTimeout { idle } => format!("media timeout ({} s)", idle.as_secs()),
                HangupCause::MaxDuration { limit } => {
                    format!("balance limit reached ({} s)", limit.as_secs())
                }
            }),
            carrier: answered.map(|(t, r, _)| (r.provider_id, r.provider_name.clone(), t.rate.clone())),
            ticket_id: answered.map(|(t, _, _)| t.jti),
            media: record.media.map(|m| {
                serde_json::json!({
                    "caller": {"packets": m.caller.packets, "bytes": m.caller.bytes, "lost": m.caller.lost,
                               "jitter_ms": m.caller.jitter.as_secs_f64() * 1000.0, "forwarded": m.caller.forwarded},
                    "provider": {"packets": m.callee.packets, "bytes": m.callee.bytes, "lost": m.callee.lost,
                                 "jitter_ms": m.callee.jitter.as_secs_f64() * 1000.0, "forwarded": m.callee.forwarded},
                })
            }),
        })
    }
}

fn describe(outcome: &provider_sdk::sip::Outcome, rang: bool) -> (String, Option<u16>) {
    use provider_sdk::sip::Outcome;
    match outcome {
        Outcome::Answered => ("answered".into(), Some(200)),
        Outcome::Rejected { status, reason } => (format!("{status} {reason}"), Some(*status)),
        Outcome::Timeout { after } => (
            if rang {
                format!("no answer within {} s", after.as_secs())
            } else {
                format!("no response within {} ms", after.as_millis())
            },
            None,
        ),
        Outcome::TransportError { detail } => (format!("unreachable: {detail}"), None),
        Outcome::Cancelled => ("cancelled by the caller".into(), None),
    }
}

/// The [`CallControl`] handed to the B2BUA.
pub struct Control(pub Arc<Forwarding>);

impl CallControl for Control {
    fn route(&self, call: InboundCall) -> RouteFuture {
        Box::pin(self.0.clone().decide(call))
    }

    fn hangup_headers(&self, leg: Leg, hangup: &Hangup<'_>) -> Vec<(String, String)> {
        if leg != Leg::Callee {
            return Vec::new();
        }
        let active = self.0.active.lock();
        let Some((ticket, _, _)) = active
            .get(hangup.call_id)
            .and_then(|a| a.tickets.get(&hangup.attempt.call_id))
        else {
            return Vec::new();
        };
        let answer = unix(hangup.answered_at);
        let end = unix(hangup.ended_at).max(answer);
        let secs = u64::try_from(end - answer).unwrap_or(0);
        let receipt = UsageReceipt {
            iss: ticket.iss,
            aud: ticket.aud,
            tid: ticket.jti,
            answer,
            end,
            billable: ticket.rate.billable_seconds(secs).unwrap_or(0),
            iat: unix(SystemTime::now()).max(end),
        };
        let Some(payer) = self.0.payer.load_full() else {
            return Vec::new();
        };
        match payer.signer.sign_receipt(&receipt) {
            Ok(token) => vec![(RECEIPT_HEADER.to_owned(), token)],
            Err(e) => {
                tracing::error!(error = %e, "cannot sign the usage receipt");
                Vec::new()
            }
        }
    }

    fn answered(&self, call_id: &str, attempt: &provider_sdk::sip::control::AttemptRecord) {
        self.0.metrics.answered.inc();
        let found = {
            let mut active = self.0.active.lock();
            active.get_mut(call_id).and_then(|a| {
                a.answered = true;
                let (ticket, route, to) = a.tickets.get(&attempt.call_id)?;
                Some((
                    a.begun.cdr_id,
                    AnsweredInfo {
                        at: SystemTime::now(),
                        forwarded_to: *to,
                        provider_id: route.provider_id,
                        provider: route.provider_name.clone(),
                        terms: ticket.rate.clone(),
                        ticket_id: ticket.jti,
                        decisions: serde_json::to_value(&a.decisions).unwrap_or_default(),
                    },
                ))
            })
        };
        let Some((cdr_id, info)) = found else {
            return;
        };
        let book = self.0.book.clone();
        tokio::task::spawn_blocking(move || book.answered(cdr_id, info));
    }

    fn ended(&self, record: &CallRecord) {
        let Some(end) = self.0.end(record) else {
            return;
        };
        let book = self.0.book.clone();
        tokio::task::spawn_blocking(move || book.finish(end));
    }
}
