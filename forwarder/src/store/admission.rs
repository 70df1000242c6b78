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
use super::{ledger, numbers, subscribers, StoreError};
use crate::authorize::{authorize, Refusal, Standing};
use crate::db::DbConnection;
use crate::rules::{select, Rule};
use crate::subscriber::Subscriber;
use chrono::{DateTime, Utc};
use diesel::Connection;
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
pub fn admit(
    conn: &mut DbConnection,
    call: &InboundCall,
    now: DateTime<Utc>,
) -> Result<Admission, StoreError> {
    let Some(owner) = numbers::get(conn, &call.called_number)? else {
        return Ok(Admission::Refused(Refusal::unknown_number()));
    };
    let id = owner.subscriber_id;
    conn.transaction(|conn| {
        let (subscriber, money) = subscribers::lock_and_get_money(conn, id)?;
        // The number may have moved between the lookup and the lock.
        match numbers::get(conn, &call.called_number)? {
            Some(n) if n.subscriber_id == id => {}
            _ => return Ok(Admission::Refused(Refusal::unknown_number())),
        }
        let standing = ledger::standing_for_call(conn, &subscriber, money, now)?;
        if let Err(r) = authorize(Some(&subscriber), &standing) {
            return Ok(Admission::Refused(r));
        }
        let rules = super::rules::of_existing(conn, id)?;
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
