//! Admission of an inbound call in one step: who owns the called number,
//! may the call go ahead, which forwarding rule applies, and the open CDR —
//! decided and written in one transaction under the subscriber's lock, so
//! two calls arriving together cannot both slip under the concurrent-call
//! cap or the last of the balance.
//!
//! ```no_run
//! use forwarder::store::admission::{admit, Admission, InboundCall};
//! # fn f(conn: &mut forwarder::db::DbConnection, call: InboundCall) -> Result<(), forwarder::store::StoreError> {
//! match admit(conn, &call, chrono::Utc::now())? {
//!     Admission::Admitted(a) => { /* ring a.rule.targets in order; a.cdr.id is the call's id */ }
//!     Admission::Refused(r) => { /* answer r.status with r.reason in Reason/Warning */ }
//! }
//! # Ok(()) }
//! ```

use super::cdrs::{self, Cdr, NewCdr};
use super::prepared::keep_prepared;
use super::{ledger, subscribers, StoreError};
use crate::authorize::{authorize, Refusal, Standing};
use crate::db::schema::{forwarding_rules as fr, numbers};
use crate::db::DbConnection;
use crate::rules::{select, Rule};
use crate::subscriber::Subscriber;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use provider_sdk::number::E164;
use uuid::Uuid;

/// A call as it arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundCall {
    /// The id the CDR gets (the call path chooses it, e.g. `Uuid::now_v7()`).
    pub id: Uuid,
    pub called_number: E164,
    pub caller_number: Option<String>,
    pub caller_name: Option<String>,
}

/// An admitted call: everything the call path needs to go on.
#[derive(Debug, Clone, PartialEq)]
pub struct Admitted {
    pub subscriber: Subscriber,
    /// Before this call (its CDR is not counted in `active_calls`).
    pub standing: Standing,
    /// The rule in force now; its targets are tried in order.
    pub rule: Rule,
    /// The open record of this call.
    pub cdr: Cdr,
}

/// The outcome of [`admit`].
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    Admitted(Box<Admitted>),
    Refused(Refusal),
}

/// Decides on a call at `now` and, when admitted, opens its CDR (received
/// at `now`). Refused calls leave nothing behind.
///
/// Five statements for an admitted call: BEGIN, the number's owner locked
/// and read, the owner again with its calls in progress and rules, the CDR
/// written, COMMIT (an unknown number: BEGIN, the lookup, COMMIT).
pub fn admit(
    conn: &mut DbConnection,
    call: &InboundCall,
    now: DateTime<Utc>,
) -> Result<Admission, StoreError> {
    conn.transaction(|conn| {
        let Some((subscriber, money)) = subscribers::lock_owner_of(conn, &call.called_number)?
        else {
            return Ok(Admission::Refused(Refusal::unknown_number()));
        };
        let id = subscriber.id;
        let now_held = under_lock(conn, &call.called_number, id)?;
        // The number may have moved while the lock was awaited.
        if now_held.owner != Some(id) {
            return Ok(Admission::Refused(Refusal::unknown_number()));
        }
        let standing =
            ledger::standing_for_call(conn, &subscriber, money, now_held.active_calls, now)?;
        if let Err(r) = authorize(Some(&subscriber), &standing) {
            return Ok(Admission::Refused(r));
        }
        let rules = super::rules::parse(id, &now_held.rule_bodies)?;
        let Some(rule) = select(&rules, now, subscriber.time_zone).cloned() else {
            return Ok(Admission::Refused(Refusal::no_matching_rule()));
        };
        let cdr = cdrs::open_in_admission(
            conn,
            &NewCdr {
                id: call.id,
                subscriber_id: id,
                called_number: call.called_number,
                caller_number: call.caller_number.clone(),
                caller_name: call.caller_name.clone(),
                received_at: now,
            },
        )?;
        Ok(Admission::Admitted(Box::new(Admitted {
            subscriber,
            standing,
            rule,
            cdr,
        })))
    })
}

/// What admission reads under the subscriber's lock.
struct UnderLock {
    /// Who owns the number now.
    owner: Option<i64>,
    /// The subscriber's calls in progress.
    active_calls: u32,
    /// Its rules as stored, in order.
    rule_bodies: Vec<String>,
}

/// The number's owner, the calls in progress and the rules of subscriber
/// `id`, in one statement (each is a round trip on PostgreSQL): one row per
/// rule, or one without a rule when there is none, or none when the number
/// is gone.
fn under_lock(conn: &mut DbConnection, number: &E164, id: i64) -> Result<UnderLock, StoreError> {
    let active = cdrs::open_calls_of(id).count().single_value();
    let rows: Vec<(i64, Option<i64>, Option<String>)> = keep_prepared(
        numbers::table
            .left_join(fr::table.on(fr::subscriber_id.eq(numbers::subscriber_id)))
            .filter(numbers::number.eq(number.to_string()))
            .select((numbers::subscriber_id, active, fr::body.nullable()))
            .order(fr::position.nullable()),
    )
    .load(conn)?;
    let active = rows.first().and_then(|r| r.1).unwrap_or(0);
    Ok(UnderLock {
        owner: rows.first().map(|r| r.0),
        active_calls: u32::try_from(active).unwrap_or(u32::MAX),
        rule_bodies: rows.into_iter().filter_map(|r| r.2).collect(),
    })
}
