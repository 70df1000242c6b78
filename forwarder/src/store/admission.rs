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

mod one_statement;

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
/// For an admitted call, on PostgreSQL four statements: BEGIN, the
/// number's owner locked and read, the calls in progress counted with the
/// CDR written when under the cap and the rules read (one statement,
/// `one_statement`), COMMIT. On SQLite five: the count and rules, then
/// the CDR. A number of no one's: BEGIN, the lookup, COMMIT.
pub fn admit(
    conn: &mut DbConnection,
    call: &InboundCall,
    now: DateTime<Utc>,
) -> Result<Admission, StoreError> {
    let decided = conn.transaction(|conn| {
        let Some((subscriber, money)) = subscribers::lock_owner_of(conn, &call.called_number)?
        else {
            return Ok(Admission::Refused(Refusal::unknown_number()));
        };
        let id = subscriber.id;
        // Everything but the calls in progress, which are counted with the
        // number's owner once more after the lock.
        let standing = ledger::standing_for_call(conn, &subscriber, money, 0, now)?;
        if let Err(r) = authorize(Some(&subscriber), &standing) {
            return Ok(Admission::Refused(r));
        }
        let new = NewCdr {
            id: call.id,
            subscriber_id: id,
            called_number: call.called_number,
            caller_number: call.caller_number.clone(),
            caller_name: call.caller_name.clone(),
            received_at: now,
        };
        let opened = match conn {
            DbConnection::Postgres(pg) => {
                one_statement::open_under_cap(pg, &new, subscriber.max_concurrent_calls)?
            }
            DbConnection::Sqlite(_) => open_under_cap(conn, &new, subscriber.max_concurrent_calls)?,
        };
        let standing = Standing {
            active_calls: opened.active_calls,
            ..standing
        };
        // The number may have moved while the lock was awaited.
        if !opened.held {
            return Ok(Admission::Refused(Refusal::unknown_number()));
        }
        let Some(cdr) = opened.cdr else {
            let over = authorize(Some(&subscriber), &standing).err();
            return Ok(Admission::Refused(
                over.unwrap_or_else(Refusal::unknown_number),
            ));
        };
        let rules = super::rules::parse(id, &opened.rule_bodies)?;
        let Some(rule) = select(&rules, now, subscriber.time_zone).cloned() else {
            // Written already on PostgreSQL: undone with the transaction.
            return Err(Undo::Refused(Refusal::no_matching_rule()));
        };
        Ok(Admission::Admitted(Box::new(Admitted {
            subscriber,
            standing,
            rule,
            cdr,
        })))
    });
    match decided {
        Ok(a) => Ok(a),
        Err(Undo::Refused(r)) => Ok(Admission::Refused(r)),
        Err(Undo::Failed(e)) => Err(e),
    }
}

/// Why admission's transaction rolled back.
enum Undo {
    /// Refused after the CDR was written.
    Refused(Refusal),
    Failed(StoreError),
}

impl From<StoreError> for Undo {
    fn from(e: StoreError) -> Undo {
        Undo::Failed(e)
    }
}

impl From<diesel::result::Error> for Undo {
    fn from(e: diesel::result::Error) -> Undo {
        Undo::Failed(e.into())
    }
}

/// What admission finds, and writes, after the subscriber's lock.
struct Opened {
    /// The subscriber still owns the called number.
    held: bool,
    /// The subscriber's calls in progress before this one.
    active_calls: u32,
    /// The open record, when the number is held and the calls are under
    /// the cap.
    cdr: Option<Cdr>,
    /// The subscriber's rules as stored, in order.
    rule_bodies: Vec<String>,
}

/// SQLite: the count, owner and rules, then the CDR when under the cap.
fn open_under_cap(
    conn: &mut DbConnection,
    new: &NewCdr,
    cap: Option<u32>,
) -> Result<Opened, StoreError> {
    let now_held = under_lock(conn, &new.called_number, new.subscriber_id)?;
    let held = now_held.owner == Some(new.subscriber_id);
    let under = cap.is_none_or(|c| now_held.active_calls < c);
    let cdr = match held && under {
        true => Some(cdrs::open_in_admission(conn, new)?),
        false => None,
    };
    Ok(Opened {
        held,
        active_calls: now_held.active_calls,
        cdr,
        rule_bodies: now_held.rule_bodies,
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
