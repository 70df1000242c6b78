//! The gateway's call control: a call is accepted only with a valid ticket,
//! goes to the termination target, and after hangup its ticket and receipts
//! go to the ledger queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::Utc;
use parking_lot::Mutex;

use super::config::GatewayConfig;
use super::metrics::GatewayMetrics;
use crate::central::{CentralClient, CertificateCache, Submission, SubmissionQueue};
use crate::number::E164;
use crate::ratedeck::{RateDeck, RateTable};
use crate::sip::call::Leg;
use crate::sip::control::{
    new_call_id, AttemptRecord, CallControl, CallPlan, CallRecord, InboundCall, PlannedAttempt,
    RouteFuture, Routing,
};
use crate::sip::Reply;
use crate::ticket::{
    CallExpectation, MinimumTerms, TicketError, TicketSigner, TicketVerifier, UsageReceipt,
    VerifiedTicket, RECEIPT_HEADER, TICKET_HEADER,
};

/// How often the rates in effect are recomputed from the deck (a rate with
/// a future `effective_from` takes effect within this).
const RATE_REFRESH: Duration = Duration::from_secs(60);

/// Counters for logs and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GatewayCounts {
    pub accepted: u64,
    pub refused: u64,
    pub settled: u64,
    pub disputed: u64,
    pub provider_only: u64,
}

pub(crate) struct GatewayControl {
    config: GatewayConfig,
    central: CentralClient,
    verifier: TicketVerifier<Arc<CertificateCache>>,
    signer: TicketSigner,
    deck: RateDeck,
    rates: Mutex<(Instant, Arc<RateTable>)>,
    queue: Arc<SubmissionQueue>,
    /// Accepted tickets of calls in progress, by the payer's Call-ID.
    calls: Mutex<HashMap<String, VerifiedTicket>>,
    counts: Mutex<GatewayCounts>,
    pub(crate) metrics: Arc<GatewayMetrics>,
    host: String,
}

fn refuse(status: u16, reason: &str, why: &str) -> Routing {
    let why: String = why
        .chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '\''
            } else {
                c
            }
        })
        .collect();
    Routing::Reject(
        Reply::new(status, reason).header("Warning", format!("399 provider-gateway \"{why}\"")),
    )
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl GatewayControl {
    pub(crate) fn new(
        config: GatewayConfig,
        central: CentralClient,
        verifier: TicketVerifier<Arc<CertificateCache>>,
        signer: TicketSigner,
        deck: RateDeck,
        queue: Arc<SubmissionQueue>,
    ) -> GatewayControl {
        let table = Arc::new(deck.effective_at(Utc::now()));
        let host = config.sip.listen.to_string();
        GatewayControl {
            config,
            central,
            verifier,
            signer,
            deck,
            rates: Mutex::new((Instant::now(), table)),
            queue,
            calls: Mutex::new(HashMap::new()),
            counts: Mutex::new(GatewayCounts::default()),
            metrics: Arc::new(GatewayMetrics::new()),
            host,
        }
    }

    pub(crate) fn counts(&self) -> GatewayCounts {
        *self.counts.lock()
    }

    pub(crate) fn config_reject(&self) -> Option<u16> {
        self.config.demo.reject_calls
    }

    /// Accepted calls in progress.
    pub(crate) fn active_calls(&self) -> usize {
        self.calls.lock().len()
    }

    fn rates(&self) -> Arc<RateTable> {
        let mut rates = self.rates.lock();
        if rates.0.elapsed() >= RATE_REFRESH {
            *rates = (Instant::now(), Arc::new(self.deck.effective_at(Utc::now())));
        }
        rates.1.clone()
    }

    async fn decide(&self, call: InboundCall) -> Routing {
        self.metrics.offered.inc();
        let routing = self.check(&call).await;
        let mut counts = self.counts.lock();
        match &routing {
            Routing::Plan(_) => counts.accepted += 1,
            Routing::Reject(r) => {
                counts.refused += 1;
                tracing::info!(call_id = %call.call_id, status = r.status, "call refused");
            }
        }
        routing
    }

    async fn check(&self, call: &InboundCall) -> Routing {
        let dest: E164 = match call.dialed.as_deref().map(str::parse) {
            Some(Ok(n)) => n,
            _ => {
                self.metrics.refused("no_number");
                return refuse(404, "Not Found", "the Request-URI has no E.164 number");
            }
        };
        let Some(token) = call.header(TICKET_HEADER) else {
            self.metrics.refused("no_ticket");
            return refuse(403, "Forbidden", "ticket required (X-LCR-Ticket)");
        };
        let Some(entry) = self.rates().lookup(&dest).cloned() else {
            self.metrics.refused("no_rate");
            return refuse(404, "Not Found", "no rate for this destination");
        };
        let minimum = MinimumTerms {
            per_minute: entry.rate_per_minute,
            connect_fee: entry.connect_fee,
            first_increment: entry.first_increment,
            next_increment: entry.next_increment,
            currency: self.config.rates.currency,
        };
        // Fetch the payer's certificate first (async); verification reads it
        // from memory. A failed fetch shows up in verification as
        // "certificate unavailable".
        if let Err(e) = self.central.prefetch_for_token(token).await {
            tracing::debug!(error = %e, "certificate prefetch failed");
        }
        let expectation = CallExpectation {
            dest: &dest,
            call_id: &call.call_id,
            minimum: &minimum,
        };
        let verified = match self.verifier.verify_ticket(token, &expectation, Utc::now()) {
            Ok(v) => v,
            Err(e) => {
                self.metrics.verified(e.code());
                self.metrics.refused("ticket");
                return ticket_refused(&e);
            }
        };
        self.metrics.verified("valid");
        if let Some(status) = self.config.demo.reject_calls {
            self.metrics.refused("demo_reject");
            return refuse(
                status,
                "Service Unavailable",
                "refused by demo.reject_calls (a failing provider, for demonstration)",
            );
        }
        let target = match self.config.termination_for(&dest) {
            Ok(t) => t,
            Err(e) => {
                self.metrics.refused("misconfigured");
                tracing::error!(error = %e, "termination target");
                return refuse(
                    500,
                    "Server Internal Error",
                    "termination target misconfigured",
                );
            }
        };
        tracing::info!(
            call_id = %call.call_id,
            payer = verified.ticket.iss,
            ticket = %verified.ticket.jti,
            %dest,
            "ticket accepted"
        );
        self.calls.lock().insert(call.call_id.clone(), verified);
        let attempt = PlannedAttempt {
            call_id: new_call_id(&self.host),
            setup_timeout: self.config.setup_timeout(),
            answer_timeout: self.config.answer_timeout(),
            label: "termination".into(),
            ..PlannedAttempt::new(target, self.config.answer_timeout())
        };
        Routing::Plan(CallPlan {
            attempts: vec![attempt],
            max_duration: None,
        })
    }

    /// Builds the ledger submission of an answered call: the payer's
    /// receipt countersigned when it agrees with what was measured here,
    /// our own receipt otherwise (a dispute, or provider-only when the
    /// payer sent none or an invalid one).
    fn submission(&self, ticket: &VerifiedTicket, record: &CallRecord) -> Option<Submission> {
        let (Some(answered), Some(ended)) = (record.answered_at, record.ended_at) else {
            return None;
        };
        let (answer, end) = (unix(answered), unix(ended));
        let own_secs = u64::try_from(end.saturating_sub(answer)).unwrap_or(0);
        let payer_receipt = record.captured(Leg::Caller, RECEIPT_HEADER);
        let payer = payer_receipt.and_then(|r| {
            match self.verifier.verify_receipt(r, ticket, Utc::now()) {
                Ok(v) => Some((r.to_owned(), v.receipt)),
                Err(e) => {
                    tracing::warn!(ticket = %ticket.ticket.jti, error = %e, "payer's receipt refused");
                    None
                }
            }
        });
        let tolerance = self.config.ledger.receipt_tolerance_secs;
        let mut counts = self.counts.lock();
        let provider_receipt = match &payer {
            Some((token, claims))
                if u64::try_from(claims.end.saturating_sub(claims.answer))
                    .unwrap_or(0)
                    .abs_diff(own_secs)
                    <= tolerance =>
            {
                counts.settled += 1;
                self.metrics.receipt("countersigned");
                self.signer.countersign_receipt(token)
            }
            _ => {
                if payer.is_some() {
                    counts.disputed += 1;
                    self.metrics.receipt("disputed");
                    tracing::warn!(ticket = %ticket.ticket.jti, "payer's receipt disagrees with the measured duration");
                } else {
                    counts.provider_only += 1;
                    self.metrics.receipt("provider_only");
                }
                let own = UsageReceipt {
                    iss: ticket.ticket.iss,
                    aud: ticket.ticket.aud,
                    tid: ticket.ticket.jti,
                    answer,
                    end,
                    billable: ticket.ticket.rate.billable_seconds(own_secs).unwrap_or(0),
                    iat: unix(SystemTime::now()).max(end),
                };
                self.signer.sign_receipt(&own)
            }
        };
        match provider_receipt {
            Ok(provider_receipt) => Some(Submission {
                ticket: ticket.token.clone(),
                receipt: payer.map(|(t, _)| t),
                provider_receipt,
            }),
            Err(e) => {
                tracing::error!(error = %e, "cannot sign the receipt");
                None
            }
        }
    }
}

fn ticket_refused(e: &TicketError) -> Routing {
    let status = match e {
        TicketError::CertificateUnavailable(_) => 503,
        _ => 403,
    };
    let reason = if status == 503 {
        "Service Unavailable"
    } else {
        "Forbidden"
    };
    match refuse(
        status,
        reason,
        &format!("ticket refused: {}: {e}", e.code()),
    ) {
        Routing::Reject(r) => Routing::Reject(r.header("X-LCR-Ticket-Error", e.code())),
        other => other,
    }
}

/// The [`CallControl`] handed to the B2BUA.
pub(crate) struct Control(pub(crate) Arc<GatewayControl>);

impl CallControl for Control {
    fn route(&self, call: InboundCall) -> RouteFuture {
        let me = self.0.clone();
        Box::pin(async move { me.decide(call).await })
    }

    fn answered(&self, _call_id: &str, _attempt: &AttemptRecord) {
        self.0.metrics.answered.inc();
    }

    fn ended(&self, record: &CallRecord) {
        let Some(ticket) = self.0.calls.lock().remove(&record.call_id) else {
            return;
        };
        if record.answered_at.is_none() {
            let status = record.final_status.unwrap_or(0);
            self.0
                .metrics
                .failed
                .get_or_create(&super::metrics::StatusLabels { status })
                .inc();
            // Nothing is owed for an unanswered call: its ticket is not submitted.
            return;
        }
        let Some(submission) = self.0.submission(&ticket, record) else {
            return;
        };
        let queue = self.0.queue.clone();
        tokio::spawn(async move {
            if let Err(e) = queue.push(submission).await {
                tracing::error!(error = %e, "cannot queue a ticket for central");
            }
        });
    }
}
