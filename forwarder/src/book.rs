//! The subscriber side of the call path over the database and the plans:
//! admission (authorization, rule, open CDR in one transaction), the
//! prepaid limit, the answered note, and close-and-charge with rating.
//! Also the crash recovery that closes and bills calls left open.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use diesel::Connection;
use provider_sdk::number::E164;
use provider_sdk::ticket::RateTerms;
use uuid::Uuid;

use crate::authorize::{headroom, Refusal as StoreRefusal};
use crate::calls::{AnsweredInfo, Begun, CallBook, CallEnd, CallStart, ForwardTo, Refusal};
use crate::db::Database;
use crate::rating::{Call, MaxDuration, Plans};
use crate::store::admission::{self, Admission, InboundCall};
use crate::store::cdrs::{self, Cdr, CdrClose, CdrProgress, FinalStatus, Rating};
use crate::subscriber::Subscriber;

/// The [`CallBook`] of a running forwarder.
pub struct StoreBook {
    db: Database,
    plans: Arc<Plans>,
}

/// Calls noted as up per heartbeat transaction.
const HEARTBEAT_CHUNK: usize = 128;

fn utc(t: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(t)
}

fn refusal(r: StoreRefusal) -> Refusal {
    Refusal {
        status: r.status,
        reason: r.reason,
    }
}

fn internal(what: &str, e: impl std::fmt::Display) -> Refusal {
    tracing::error!(error = %e, "{what}");
    Refusal {
        status: 500,
        reason: format!("{what} failed"),
    }
}

/// Whole seconds from answer to end.
fn seconds(answered: DateTime<Utc>, ended: DateTime<Utc>) -> u64 {
    u64::try_from((ended - answered).num_seconds()).unwrap_or(0)
}

impl StoreBook {
    pub fn new(db: Database, plans: Arc<Plans>) -> StoreBook {
        StoreBook { db, plans }
    }

    /// Rates an answered call for `subscriber` (None when its plan cannot
    /// price it: the CDR then says why and nothing is charged).
    fn rate(
        &self,
        subscriber: &Subscriber,
        dest: &E164,
        terms: &RateTerms,
        answered: DateTime<Utc>,
        secs: u64,
    ) -> Result<(u64, Rating), String> {
        let plan = self
            .plans
            .get(&subscriber.plan)
            .ok_or_else(|| format!("plan {:?} is not configured", subscriber.plan))?;
        let rated = plan
            .rate(
                &Call {
                    destination: dest,
                    answered_at: answered,
                    time_zone: subscriber.time_zone,
                    provider: terms,
                },
                secs,
            )
            .map_err(|e| e.to_string())?;
        Ok((
            rated.billable_seconds,
            Rating {
                price: rated.price,
                provider_cost: rated.cost,
                margin: rated.margin,
                currency: rated.currency,
            },
        ))
    }

    /// Closes and bills every call left open by an earlier run (a crash):
    /// answered ones from their answer to the last time media was seen,
    /// the others as failed. Returns how many were closed.
    pub fn recover(&self) -> Result<usize, crate::store::StoreError> {
        let mut conn = self.db.conn().map_err(crate::store::StoreError::from)?;
        let open = cdrs::open_cdrs(&mut conn)?;
        let now = Utc::now();
        let mut closed = 0;
        for cdr in open {
            let close = self.recovery_close(&mut conn, &cdr, now);
            match cdrs::close_and_charge(&mut conn, cdr.id, &close, now) {
                Ok(_) => closed += 1,
                Err(e) => {
                    tracing::error!(cdr = %cdr.id, error = %e, "cannot close a call left open")
                }
            }
        }
        Ok(closed)
    }

    fn recovery_close(
        &self,
        conn: &mut crate::db::DbConnection,
        cdr: &Cdr,
        now: DateTime<Utc>,
    ) -> CdrClose {
        let end = cdrs::recovery_end(cdr);
        let base = CdrClose {
            status: FinalStatus::Failed,
            ended_at: end,
            sip_status: cdr.sip_status,
            hangup_cause: Some("forwarder restarted during the call".into()),
            billable_seconds: 0,
            media_stats: None,
            rating: None,
            rated_in: None,
            progress: CdrProgress::default(),
        };
        let (Some(answered), Some(target)) = (cdr.answered_at, cdr.target) else {
            return base;
        };
        let terms: Option<RateTerms> = cdr
            .decision
            .as_ref()
            .and_then(|d| d.get("carrier_terms"))
            .and_then(|t| serde_json::from_value(t.clone()).ok());
        let subscriber = crate::store::subscribers::get(conn, cdr.subscriber_id).ok();
        let zone = subscriber.as_ref().map(|s| s.time_zone);
        let rated = match (terms, subscriber) {
            (Some(terms), Some(s)) => {
                self.rate(&s, &target, &terms, answered, seconds(answered, end))
            }
            _ => Err("the carrier's terms were not recorded".into()),
        };
        let _ = now;
        match rated {
            Ok((billable, rating)) => CdrClose {
                status: FinalStatus::Completed,
                sip_status: Some(200),
                billable_seconds: billable,
                rating: Some(rating),
                rated_in: zone,
                ..base
            },
            Err(why) => CdrClose {
                status: FinalStatus::Completed,
                sip_status: Some(200),
                hangup_cause: Some(format!(
                    "forwarder restarted during the call; not rated: {why}"
                )),
                ..base
            },
        }
    }
}

impl CallBook for StoreBook {
    fn begin(&self, call: &CallStart) -> Result<Begun, Refusal> {
        let inbound = InboundCall {
            id: Uuid::now_v7(),
            called_number: call.called,
            caller_number: call.caller.clone(),
            caller_name: call.caller_name.clone(),
        };
        let admitted = self
            .db
            .write(|conn| admission::admit(conn, &inbound, Utc::now()))
            .map_err(|e| internal("database", e))?;
        match admitted {
            Ok(Admission::Admitted(a)) => Ok(Begun {
                cdr_id: a.cdr.id,
                targets: a
                    .rule
                    .targets
                    .iter()
                    .map(|t| ForwardTo {
                        number: t.number,
                        ring_timeout: Duration::from_secs(u64::from(t.ring_timeout_secs.max(1))),
                    })
                    .collect(),
                subscriber: a.subscriber,
                standing: a.standing,
                max_rate: None,
            }),
            Ok(Admission::Refused(r)) => Err(refusal(r)),
            Err(e) => Err(internal("admission", e)),
        }
    }

    fn max_duration(
        &self,
        begun: &Begun,
        attempts: &[(E164, RateTerms)],
    ) -> Result<Option<Duration>, Refusal> {
        let s = &begun.subscriber;
        let Some(plan) = self.plans.get(&s.plan) else {
            return Err(Refusal {
                status: 500,
                reason: format!("plan {:?} is not configured", s.plan),
            });
        };
        // The money left: the account's headroom and what the caps allow.
        let mut funds = headroom(&s.account, begun.standing.balance);
        if let Some(cap) = s.daily_spend_cap {
            funds = funds.min(cap - begun.standing.spend_today);
        }
        if let Some(cap) = s.monthly_spend_cap {
            funds = funds.min(cap - begun.standing.spend_month);
        }
        let now = Utc::now();
        let mut limit: Option<u64> = None;
        for (dest, terms) in attempts {
            let call = Call {
                destination: dest,
                answered_at: now,
                time_zone: s.time_zone,
                provider: terms,
            };
            match plan.max_duration(&call, funds) {
                Ok(MaxDuration::Seconds(n)) => limit = Some(limit.map_or(n, |l| l.min(n))),
                Ok(MaxDuration::Unlimited) => {}
                Err(e) => {
                    return Err(Refusal {
                        status: 403,
                        reason: format!("the plan cannot price a call to {dest}: {e}"),
                    })
                }
            }
        }
        Ok(limit.map(Duration::from_secs))
    }

    fn answered(&self, cdr_id: Uuid, info: AnsweredInfo) {
        // The same shape as at the end of the call, with the carrier's
        // terms: what a restart after a crash rates the call with.
        let decision = serde_json::json!({
            "targets": info.decisions,
            "carrier_terms": info.terms,
        });
        let progress = CdrProgress {
            target: Some(info.forwarded_to),
            answered_at: Some(utc(info.at)),
            provider_id: i64::try_from(info.provider_id).ok(),
            provider_name: Some(info.provider.clone()),
            decision: Some(decision),
            ticket_id: Some(info.ticket_id.to_string()),
            ..CdrProgress::default()
        };
        let result = self
            .db
            .write(|c| cdrs::note_progress(c, cdr_id, &progress, Utc::now()))
            .map_err(|e| e.to_string())
            .and_then(|r| match r {
                // A short call closed first, with its answer time: nothing lost.
                Err(crate::store::StoreError::Conflict(_)) => Ok(()),
                other => other.map_err(|e| e.to_string()),
            });
        if let Err(e) = result {
            tracing::error!(cdr = %cdr_id, error = %e, "cannot note the answer in the CDR");
        }
    }

    fn still_up(&self, cdr_ids: &[Uuid], at: SystemTime) {
        // One transaction per chunk: one commit for many calls, and the
        // writer's turn is given back often enough not to hold up new calls.
        for chunk in cdr_ids.chunks(HEARTBEAT_CHUNK) {
            let noted = self.db.write(|conn| {
                conn.transaction(|conn| {
                    for id in chunk {
                        match cdrs::media_seen(conn, *id, utc(at)) {
                            // Closed or gone meanwhile: nothing to note.
                            Ok(()) | Err(crate::store::StoreError::NotFound(_)) => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(())
                })
            });
            match noted {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot note that calls are up"),
                Err(e) => {
                    tracing::warn!(error = %e, "no database connection for the call heartbeat")
                }
            }
        }
    }

    fn finish(&self, end: CallEnd) {
        let now = Utc::now();
        let ended_at = end.ended_at.map(utc).unwrap_or(now);
        let (status, rating, billable, not_rated) =
            match (&end.answered_at, &end.carrier, &end.forwarded_to) {
                (Some(answered), Some((_, _, terms)), Some(dest)) => {
                    let answered = utc(*answered);
                    match self.rate(
                        &end.subscriber,
                        dest,
                        terms,
                        answered,
                        seconds(answered, ended_at),
                    ) {
                        Ok((billable, rating)) => {
                            (FinalStatus::Completed, Some(rating), billable, None)
                        }
                        Err(why) => (FinalStatus::Completed, None, 0, Some(why)),
                    }
                }
                _ if end.final_status == Some(487) => (FinalStatus::Cancelled, None, 0, None),
                _ => (FinalStatus::Failed, None, 0, None),
            };
        let mut decision = serde_json::json!({ "targets": end.decisions });
        if let (Some(obj), Some((_, _, terms))) = (decision.as_object_mut(), &end.carrier) {
            obj.insert(
                "carrier_terms".into(),
                serde_json::to_value(terms).unwrap_or_default(),
            );
        }
        let hangup = match (&end.hangup, not_rated) {
            (h, Some(why)) => Some(format!(
                "{}; not rated: {why}",
                h.clone().unwrap_or_default()
            )),
            (h, None) => h.clone(),
        };
        let close = CdrClose {
            status,
            ended_at,
            sip_status: end.final_status,
            hangup_cause: hangup,
            billable_seconds: billable,
            media_stats: end.media.clone(),
            rating,
            rated_in: Some(end.subscriber.time_zone),
            progress: CdrProgress {
                target: end.forwarded_to,
                provider_id: end
                    .carrier
                    .as_ref()
                    .and_then(|(id, _, _)| i64::try_from(*id).ok()),
                provider_name: end.carrier.as_ref().map(|(_, n, _)| n.clone()),
                decision: Some(decision),
                attempts: serde_json::to_value(&end.attempts).ok(),
                ticket_id: end.ticket_id.map(|t| t.to_string()),
                // The answer note runs on its own thread and may not have
                // been written yet (a short call): the close carries it too.
                answered_at: end.answered_at.map(utc),
                ..CdrProgress::default()
            },
        };
        let close_once = || {
            self.db
                .write(|c| cdrs::close_and_charge(c, end.cdr_id, &close, now))
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
        };
        // Once more on failure: the connection may have died since its last
        // check (a database restart), and the pool has replaced it now. A
        // close is idempotent: a call closed already is not charged twice.
        let result = close_once().or_else(|e| {
            tracing::warn!(cdr = %end.cdr_id, error = %e, "CDR close failed; trying once more");
            close_once()
        });
        match result {
            Ok(closed) => tracing::info!(
                cdr = %end.cdr_id,
                status = ?status,
                billable,
                balance = %closed.balance,
                "call closed"
            ),
            Err(e) => {
                tracing::error!(cdr = %end.cdr_id, error = %e, "cannot close the CDR (it is closed at the next start)")
            }
        }
    }
}
