//! Call control: the seam between the [`B2bua`](super::b2bua::B2bua) and the
//! application that decides where calls go (a forwarder picking providers, a
//! provider gateway checking tickets).
//!
//! For every new inbound INVITE the B2BUA answers `100 Trying` at once and
//! asks [`CallControl::route`] what to do, off its own task: the answer is a
//! [`Routing`]: refuse with a [`Reply`], or a [`CallPlan`] of
//! [`PlannedAttempt`]s tried in order. While the call is torn down the
//! B2BUA asks [`CallControl::hangup_headers`] for headers to put on the BYE
//! (or on its 200 to a BYE) of each leg, e.g. a signed usage receipt, and
//! hands the finished [`CallRecord`] to [`CallControl::ended`].
//!
//! Nothing here names a SIP library type: an application sees the caller's
//! numbers and headers as text, targets as [`SipTarget`], answers as
//! [`Outcome`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use super::call::{HangupCause, Leg, MediaReport, Outcome, SipTarget};
use super::message::Reply;

/// What the caller's INVITE said, owned and in plain text.
#[derive(Debug, Clone)]
pub struct InboundCall {
    /// The caller's Call-ID (the key of the call in records).
    pub call_id: String,
    /// Where the INVITE came from.
    pub source: SocketAddr,
    /// The Request-URI as sent.
    pub request_uri: String,
    /// The user part of the Request-URI (the dialed number), if any.
    pub dialed: Option<String>,
    /// The URI of the From header.
    pub from_uri: String,
    /// The user part of the From URI (the caller's number), if any.
    pub from_user: Option<String>,
    /// The display name of the From header, if any (may contain anything).
    pub from_display: Option<String>,
    /// Every header field in order (name as sent, value).
    pub headers: Vec<(String, String)>,
    /// When the INVITE arrived.
    pub received_at: SystemTime,
}

impl InboundCall {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One attempt the B2BUA makes for a call.
#[derive(Debug, Clone)]
pub struct PlannedAttempt {
    pub target: SipTarget,
    /// Call-ID of the outbound INVITE (a ticket names it, so the planner
    /// chooses it); [`PlannedAttempt::new`] makes a random one.
    pub call_id: String,
    /// Extra header fields on the outbound INVITE (e.g. a ticket).
    pub headers: Vec<(String, String)>,
    /// No provisional answer (other than 100) by then: the target is taken
    /// as unresponsive, the attempt ends as [`Outcome::Timeout`] and the
    /// next attempt of the same group is tried.
    pub setup_timeout: Duration,
    /// No final answer by then (counted from the INVITE): CANCEL. If the
    /// target had been ringing, the callee did not answer: the rest of the
    /// group is skipped (another route would only ring the same phone).
    pub answer_timeout: Duration,
    /// Attempts with the same group reach the same callee (e.g. providers
    /// for one forwarding number). A callee's own answer (a stop code of
    /// the failover policy) or a ring-out ends its group; later groups are
    /// still tried.
    pub group: u32,
    /// The application's name for the attempt (e.g. a provider id), kept
    /// in the record.
    pub label: String,
}

impl PlannedAttempt {
    /// An attempt with a fresh Call-ID, no extra headers, one timeout for
    /// both setup and answer, in group 0.
    pub fn new(target: SipTarget, timeout: Duration) -> PlannedAttempt {
        PlannedAttempt {
            target,
            call_id: new_call_id("b2bua"),
            headers: Vec::new(),
            setup_timeout: timeout,
            answer_timeout: timeout,
            group: 0,
            label: String::new(),
        }
    }
}

/// A fresh, globally unique Call-ID with `host` after the `@`.
pub fn new_call_id(host: &str) -> String {
    format!("{}@{host}", uuid::Uuid::new_v4().simple())
}

/// Where a call goes.
#[derive(Debug, Clone, Default)]
pub struct CallPlan {
    pub attempts: Vec<PlannedAttempt>,
    /// An answered call is ended (BYE to both legs) after this long, e.g.
    /// when a prepaid balance runs out.
    pub max_duration: Option<Duration>,
}

/// What [`CallControl::route`] decides.
#[derive(Debug, Clone)]
pub enum Routing {
    /// Refuse the call with this final answer (a status >= 300).
    Reject(Reply),
    /// Try these attempts in order.
    Plan(CallPlan),
}

/// How one outbound attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    pub target: SipTarget,
    /// The attempt's Call-ID.
    pub call_id: String,
    pub label: String,
    pub group: u32,
    pub outcome: Outcome,
    pub started_at: SystemTime,
    /// First provisional answer other than 100 (ringing, early media).
    pub provisional_at: Option<SystemTime>,
    /// When the final answer (or the timeout, or the caller's CANCEL) came.
    pub ended_at: SystemTime,
}

/// A header field received from a leg while the call ended (on its BYE or
/// its answer to ours), kept when its name is in
/// [`B2buaConfig::capture_headers`](super::b2bua::B2buaConfig::capture_headers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedHeader {
    pub leg: Leg,
    pub name: String,
    pub value: String,
}

/// What happened to one inbound call (kept after it ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub call_id: String,
    pub received_at: SystemTime,
    /// One entry per outbound attempt, in order.
    pub attempts: Vec<AttemptRecord>,
    /// The final status sent to the caller for the INVITE.
    pub final_status: Option<u16>,
    /// When the caller got the 2xx.
    pub answered_at: Option<SystemTime>,
    /// When the answered call ended.
    pub ended_at: Option<SystemTime>,
    /// Which leg hung up first, if the call was answered and ended by BYE.
    pub ended_by: Option<Leg>,
    /// Why the answered call ended (`None` if it was never answered).
    pub hangup: Option<HangupCause>,
    /// Per-leg RTP statistics when the media was anchored.
    pub media: Option<MediaReport>,
    /// Header fields the legs sent while the call ended.
    pub captured: Vec<CapturedHeader>,
}

impl CallRecord {
    /// The attempt that was answered, if any.
    pub fn answered_attempt(&self) -> Option<&AttemptRecord> {
        self.attempts
            .iter()
            .find(|a| a.outcome == Outcome::Answered)
    }

    /// A captured header's value from `leg`, by case-insensitive name.
    pub fn captured(&self, leg: Leg, name: &str) -> Option<&str> {
        self.captured
            .iter()
            .find(|c| c.leg == leg && c.name.eq_ignore_ascii_case(name))
            .map(|c| c.value.as_str())
    }

    /// Seconds from answer to end (0 for an unanswered call).
    pub fn duration(&self) -> Duration {
        match (self.answered_at, self.ended_at) {
            (Some(a), Some(e)) => e.duration_since(a).unwrap_or_default(),
            _ => Duration::ZERO,
        }
    }
}

/// What an answered call looks like while it is being torn down.
#[derive(Debug, Clone, Copy)]
pub struct Hangup<'a> {
    /// The caller's Call-ID.
    pub call_id: &'a str,
    /// The answered attempt.
    pub attempt: &'a AttemptRecord,
    pub answered_at: SystemTime,
    pub ended_at: SystemTime,
    pub cause: HangupCause,
    /// The leg that hung up, when it was a BYE.
    pub ended_by: Option<Leg>,
}

/// A boxed future, as [`CallControl::route`] returns.
pub type RouteFuture = Pin<Box<dyn Future<Output = Routing> + Send + 'static>>;

/// The application side of the B2BUA.
///
/// `route` runs on its own task; `hangup_headers` and `ended` run on the
/// B2BUA's task and must not block (hand slow work such as database writes
/// to another task).
pub trait CallControl: Send + Sync + 'static {
    /// Decides what to do with a new inbound call.
    fn route(&self, call: InboundCall) -> RouteFuture;

    /// Header fields for the request or answer that ends the answered call
    /// on `leg`: the BYE the B2BUA sends to it, or the 200 to its BYE.
    fn hangup_headers(&self, _leg: Leg, _hangup: &Hangup<'_>) -> Vec<(String, String)> {
        Vec::new()
    }

    /// The call was answered through `attempt` (e.g. to note it durably,
    /// so a crash during the call still leaves a billable record).
    fn answered(&self, _call_id: &str, _attempt: &AttemptRecord) {}

    /// The call is over; `record` is final.
    fn ended(&self, _record: &CallRecord) {}
}

/// Every call goes to the same targets in order, all in one group (they
/// are alternative routes to the same callee) with one timeout: the test
/// harness and load-test configuration.
#[derive(Debug, Clone)]
pub struct FixedTargets {
    pub targets: Vec<SipTarget>,
    pub attempt_timeout: Duration,
}

impl CallControl for FixedTargets {
    fn route(&self, _call: InboundCall) -> RouteFuture {
        let attempts = self
            .targets
            .iter()
            .map(|t| PlannedAttempt::new(t.clone(), self.attempt_timeout))
            .collect();
        let plan = CallPlan {
            attempts,
            max_duration: None,
        };
        Box::pin(std::future::ready(Routing::Plan(plan)))
    }
}
