//! Call detail records: one per inbound call, from its arrival to its
//! charge.
//!
//! The call path uses them in this order:
//!
//! 1. [`open`] when the call is authorized: status `open`.
//! 2. [`update`] as the call goes on: the forwarding target, the provider
//!    chosen, the decision and attempts so far, the answer (status
//!    `answered`); [`media_seen`] now and then while media flows, so a crash
//!    leaves the last moment the call was known to be up.
//! 3. [`close_and_charge`] at hangup: the final fields *and* the ledger's
//!    call charge (idempotency key: the CDR id) in one transaction (one
//!    statement on PostgreSQL when the close goes as it should). A call
//!    is never left closed but unbilled, nor billed twice: a retry with the
//!    same content returns what is stored.
//!
//! After a crash, [`open_cdrs`] lists the calls that were in progress; the
//! call path closes and bills each from its `last_media_at` (or answer time).
//! [`active_calls`] counts a subscriber's open CDRs for the concurrent-call cap.

use super::ledger::{self, EntryKind, Insert, LedgerEntry};
use super::prepared::keep_prepared;
use super::subscribers::{Money, SubscriberRow};
use super::{clean_text, is_unique_violation, lock_subscriber, subscribers, time_of, StoreError};
use crate::db::money::StoredMoney;
use crate::db::schema::{cdrs, subscribers as subs};
use crate::db::{to_micros, DbConnection, DbError};
use crate::subscriber::Subscriber;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use diesel::prelude::*;
use provider_sdk::money::Currency;
use provider_sdk::number::E164;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod one_statement;

/// Longest caller number / name and hangup cause kept (longer text is cut).
pub const MAX_CALLER_LEN: usize = 256;
pub const MAX_CAUSE_LEN: usize = 256;
/// Largest JSON document (decision, attempts, media statistics) stored.
pub const MAX_JSON_BYTES: usize = 256 * 1024;

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CdrStatus {
    /// Received and authorized, not answered yet.
    Open,
    /// Answered, in progress.
    Answered,
    /// Answered and ended.
    Completed,
    /// Ended without an answer (every attempt failed, the callee refused).
    Failed,
    /// The caller hung up before an answer.
    Cancelled,
}

impl CdrStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CdrStatus::Open => "open",
            CdrStatus::Answered => "answered",
            CdrStatus::Completed => "completed",
            CdrStatus::Failed => "failed",
            CdrStatus::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> Option<CdrStatus> {
        Some(match s {
            "open" => CdrStatus::Open,
            "answered" => CdrStatus::Answered,
            "completed" => CdrStatus::Completed,
            "failed" => CdrStatus::Failed,
            "cancelled" => CdrStatus::Cancelled,
            _ => return None,
        })
    }

    /// Still in progress (counts against the concurrent-call cap).
    pub fn is_open(self) -> bool {
        matches!(self, CdrStatus::Open | CdrStatus::Answered)
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinalStatus {
    Completed,
    Failed,
    Cancelled,
}

impl From<FinalStatus> for CdrStatus {
    fn from(f: FinalStatus) -> CdrStatus {
        match f {
            FinalStatus::Completed => CdrStatus::Completed,
            FinalStatus::Failed => CdrStatus::Failed,
            FinalStatus::Cancelled => CdrStatus::Cancelled,
        }
    }
}

/// What rating said a call costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rating {
    /// Charged to the subscriber (in the subscriber's currency).
    pub price: Decimal,
    /// What the provider charges the home provider.
    pub provider_cost: Decimal,
    /// Price minus cost, as rating computed it.
    pub margin: Decimal,
    pub currency: Currency,
}

/// A call detail record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cdr {
    pub id: Uuid,
    pub subscriber_id: i64,
    pub called_number: E164,
    /// As the caller sent it: any text (cut to [`MAX_CALLER_LEN`]).
    pub caller_number: Option<String>,
    pub caller_name: Option<String>,
    /// The forwarding target the call went to.
    pub target: Option<E164>,
    pub status: CdrStatus,
    pub received_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub last_media_at: Option<DateTime<Utc>>,
    /// Final SIP status answered to the caller (200 for an answered call).
    pub sip_status: Option<u16>,
    pub hangup_cause: Option<String>,
    pub provider_id: Option<i64>,
    pub provider_name: Option<String>,
    /// The selection decision (candidates, scores, chosen), as recorded.
    pub decision: Option<serde_json::Value>,
    /// Every attempt (provider, response, timings), as recorded.
    pub attempts: Option<serde_json::Value>,
    pub billable_seconds: Option<u64>,
    /// Media statistics per leg, as recorded.
    pub media_stats: Option<serde_json::Value>,
    pub rating: Option<Rating>,
    pub ticket_id: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A call that just arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCdr {
    /// Chosen by the caller (a v4 or v7 UUID); the primary key.
    pub id: Uuid,
    pub subscriber_id: i64,
    pub called_number: E164,
    pub caller_number: Option<String>,
    pub caller_name: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// Fields learnt while the call goes on; `None` leaves a field as it is.
/// Setting `answered_at` moves the status to `answered`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CdrProgress {
    pub target: Option<E164>,
    pub answered_at: Option<DateTime<Utc>>,
    pub provider_id: Option<i64>,
    pub provider_name: Option<String>,
    pub decision: Option<serde_json::Value>,
    pub attempts: Option<serde_json::Value>,
    pub ticket_id: Option<String>,
    pub last_media_at: Option<DateTime<Utc>>,
}

/// The end of a call. `None` fields keep what [`update`] recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct CdrClose {
    pub status: FinalStatus,
    pub ended_at: DateTime<Utc>,
    pub sip_status: Option<u16>,
    pub hangup_cause: Option<String>,
    pub billable_seconds: u64,
    pub media_stats: Option<serde_json::Value>,
    /// `None`: not charged (an unanswered call). A price above zero writes
    /// the call charge.
    pub rating: Option<Rating>,
    /// The subscriber's time zone as the call was rated (the one admission
    /// read). With it, PostgreSQL writes a charged close in one statement
    /// while the subscriber is still in that zone; without it, or in
    /// another zone by now, the close takes the locking transaction. The
    /// outcome is the same either way.
    pub rated_in: Option<Tz>,
    /// Everything [`CdrProgress`] can carry may also come at the end.
    pub progress: CdrProgress,
}

/// What [`close_and_charge`] stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedCall {
    pub cdr: Cdr,
    /// The call charge (`None`: nothing charged).
    pub charge: Option<LedgerEntry>,
    /// The balance after the charge.
    pub balance: Decimal,
    /// False when this was a retry of a close already stored.
    pub newly_closed: bool,
}

/// A record as stored.
#[derive(Queryable)]
pub(crate) struct CdrRow {
    id: String,
    subscriber_id: i64,
    called_number: String,
    caller_number: Option<String>,
    caller_name: Option<String>,
    target: Option<String>,
    status: String,
    received_at: i64,
    answered_at: Option<i64>,
    ended_at: Option<i64>,
    last_media_at: Option<i64>,
    sip_status: Option<i32>,
    hangup_cause: Option<String>,
    provider_id: Option<i64>,
    provider_name: Option<String>,
    decision: Option<String>,
    attempts: Option<String>,
    billable_seconds: Option<i64>,
    media_stats: Option<String>,
    price: Option<StoredMoney>,
    provider_cost: Option<StoredMoney>,
    margin: Option<StoredMoney>,
    rating_currency: Option<String>,
    ticket_id: Option<String>,
    updated_at: i64,
}

impl TryFrom<CdrRow> for Cdr {
    type Error = DbError;
    fn try_from(r: CdrRow) -> Result<Self, DbError> {
        let id = r.id.clone();
        let corrupt = |what: &str| DbError::Corrupt(format!("CDR {id}: {what}"));
        let number = |n: &str| E164::parse(n).map_err(|_| corrupt("number"));
        let json = |j: Option<String>| -> Result<Option<serde_json::Value>, DbError> {
            j.map(|t| serde_json::from_str(&t).map_err(|_| corrupt("JSON field")))
                .transpose()
        };
        let rating = match (r.price, r.provider_cost, r.margin, r.rating_currency) {
            (None, None, None, None) => None,
            (Some(p), Some(c), Some(m), Some(cur)) => Some(Rating {
                price: p.0,
                provider_cost: c.0,
                margin: m.0,
                currency: cur.parse().map_err(|_| corrupt("currency"))?,
            }),
            _ => return Err(corrupt("partial rating")),
        };
        Ok(Cdr {
            id: Uuid::parse_str(&r.id).map_err(|_| corrupt("id"))?,
            subscriber_id: r.subscriber_id,
            called_number: number(&r.called_number)?,
            caller_number: r.caller_number,
            caller_name: r.caller_name,
            target: r.target.as_deref().map(number).transpose()?,
            status: CdrStatus::parse(&r.status).ok_or_else(|| corrupt("status"))?,
            received_at: time_of(r.received_at)?,
            answered_at: r.answered_at.map(time_of).transpose()?,
            ended_at: r.ended_at.map(time_of).transpose()?,
            last_media_at: r.last_media_at.map(time_of).transpose()?,
            sip_status: r
                .sip_status
                .map(u16::try_from)
                .transpose()
                .map_err(|_| corrupt("sip status"))?,
            hangup_cause: r.hangup_cause,
            provider_id: r.provider_id,
            provider_name: r.provider_name,
            decision: json(r.decision)?,
            attempts: json(r.attempts)?,
            billable_seconds: r
                .billable_seconds
                .map(u64::try_from)
                .transpose()
                .map_err(|_| corrupt("billable seconds"))?,
            media_stats: json(r.media_stats)?,
            rating,
            ticket_id: r.ticket_id,
            updated_at: time_of(r.updated_at)?,
        })
    }
}

fn json_text(what: &str, v: &Option<serde_json::Value>) -> Result<Option<String>, StoreError> {
    let Some(v) = v else { return Ok(None) };
    let text = serde_json::to_string(v).map_err(|e| StoreError::Invalid(format!("{what}: {e}")))?;
    if text.len() > MAX_JSON_BYTES {
        return Err(StoreError::Invalid(format!(
            "{what}: larger than {MAX_JSON_BYTES} bytes"
        )));
    }
    // PostgreSQL text cannot hold NUL; JSON escapes it as \u0000, which is
    // plain text, so only a literal NUL (never produced by serde_json) could
    // reach the database.
    Ok(Some(text))
}

/// One CDR.
pub fn get(conn: &mut DbConnection, id: Uuid) -> Result<Cdr, StoreError> {
    let row: Option<CdrRow> = cdrs::table
        .find(id.to_string())
        .get_result(conn)
        .optional()?;
    match row {
        Some(r) => Ok(Cdr::try_from(r)?),
        None => Err(StoreError::NotFound("call record")),
    }
}

/// Opens the record of a call at its start (status `open`). Opening the
/// same id again with the same content returns the stored record; another
/// call under an existing id is a conflict.
pub fn open(conn: &mut DbConnection, new: &NewCdr) -> Result<Cdr, StoreError> {
    conn.transaction(|conn| {
        lock_subscriber(conn, new.subscriber_id)?;
        open_locked(conn, new)
    })
}

/// [`open`] of a call the caller gave a fresh id (`Uuid::now_v7()`), inside
/// a transaction that holds the subscriber's lock already (admission: no
/// nested transaction, one commit per call start, one INSERT). An id in
/// use after all is a conflict.
pub(crate) fn open_in_admission(conn: &mut DbConnection, new: &NewCdr) -> Result<Cdr, StoreError> {
    insert_new(conn, new)
}

fn open_locked(conn: &mut DbConnection, new: &NewCdr) -> Result<Cdr, StoreError> {
    if let Some(existing) = cdrs::table
        .find(new.id.to_string())
        .get_result::<CdrRow>(conn)
        .optional()?
    {
        let existing = Cdr::try_from(existing)?;
        let same = existing.subscriber_id == new.subscriber_id
            && existing.called_number == new.called_number
            && existing.received_at == trunc_micros(new.received_at)
            && existing.caller_number.as_deref() == caller_text(&new.caller_number).as_deref()
            && existing.caller_name.as_deref() == caller_text(&new.caller_name).as_deref();
        if same {
            return Ok(existing);
        }
        return Err(StoreError::Conflict(format!(
            "call record {} already exists for another call",
            new.id
        )));
    }
    insert_new(conn, new)
}

/// Caller text from the outside world as it is stored.
pub(crate) fn caller_text(s: &Option<String>) -> Option<String> {
    s.as_deref().map(|s| clean_text(s, MAX_CALLER_LEN))
}

fn insert_new(conn: &mut DbConnection, new: &NewCdr) -> Result<Cdr, StoreError> {
    let t = to_micros(new.received_at);
    let inserted = keep_prepared(
        diesel::insert_into(cdrs::table)
            .values((
                cdrs::id.eq(new.id.to_string()),
                cdrs::subscriber_id.eq(new.subscriber_id),
                cdrs::called_number.eq(new.called_number.to_string()),
                cdrs::caller_number.eq(caller_text(&new.caller_number)),
                cdrs::caller_name.eq(caller_text(&new.caller_name)),
                cdrs::status.eq(CdrStatus::Open.as_str()),
                cdrs::received_at.eq(t),
                cdrs::updated_at.eq(t),
            ))
            .returning(cdrs::all_columns),
    )
    .get_result::<CdrRow>(conn);
    match inserted {
        Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
            "call record {} already exists",
            new.id
        ))),
        other => Ok(Cdr::try_from(other?)?),
    }
}

/// Locks the record's row and its subscriber's and reads both, as the
/// transaction's first statement (see [`super`]). Lock order: CDR, then
/// subscriber. One `SELECT … FOR UPDATE` of the join on PostgreSQL, which
/// locks the rows in the order of its FROM list; on SQLite the record's
/// lock takes the database's write lock, and the subscriber is then read.
fn lock_cdr_and_subscriber(
    conn: &mut DbConnection,
    key: &str,
) -> Result<(Cdr, Subscriber, Money), StoreError> {
    let rows: Option<(CdrRow, SubscriberRow)> = match conn {
        DbConnection::Postgres(c) => keep_prepared(
            cdrs::table
                .inner_join(subs::table)
                .filter(cdrs::id.eq(key))
                .for_update(),
        )
        .get_result(c)
        .optional()?,
        DbConnection::Sqlite(_) => match super::lock_row!(conn, cdrs, key)? {
            Some(cdr @ CdrRow { subscriber_id, .. }) => {
                Some((cdr, subs::table.find(subscriber_id).get_result(conn)?))
            }
            None => None,
        },
    };
    let Some((cdr, sub)) = rows else {
        return Err(StoreError::NotFound("call record"));
    };
    let (subscriber, money) = subscribers::with_money(sub)?;
    Ok((Cdr::try_from(cdr)?, subscriber, money))
}

fn trunc_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// The record is still in progress (open or answered): it has no end
/// time yet. Every close sets `ended_at` with the final status (PostgreSQL
/// also checks the pair, `cdrs_open_until_ended`), and this condition is the
/// predicate of the partial index of calls in progress,
/// `cdrs_open_by_subscriber`: so counting a subscriber's calls reads only
/// the calls up, however long the history, and a status change at answer
/// touches no indexed column. For sets of records (a subscriber's, all of
/// them at recovery); a record found by its id is guarded by
/// [`OpenStatus`] instead.
pub(crate) type StillOpen = diesel::dsl::IsNull<cdrs::ended_at>;

/// [`StillOpen`].
pub(crate) fn still_open() -> StillOpen {
    cdrs::ended_at.is_null()
}

/// The status of a record still in progress (open or answered): the guard
/// on a record found by its id. The same records as [`StillOpen`]
/// (PostgreSQL checks the two agree), but no index has this condition: with
/// `ended_at IS NULL` the planner may look a record up by id through the
/// index of calls in progress, reading every call up (a generic plan made
/// while the table was nearly empty does, and costs grow with the load).
type OpenStatus = diesel::dsl::Or<
    diesel::dsl::Eq<cdrs::status, &'static str>,
    diesel::dsl::Eq<cdrs::status, &'static str>,
>;

/// [`OpenStatus`] (`OR`, not an `IN` list: SQLite's `IN (?, ?)` is never
/// kept prepared).
fn open_status() -> OpenStatus {
    cdrs::status
        .eq(CdrStatus::Open.as_str())
        .or(cdrs::status.eq(CdrStatus::Answered.as_str()))
}

/// The columns a [`CdrProgress`] sets; `None` fields are left out of the
/// UPDATE (kept as stored).
#[derive(AsChangeset)]
#[diesel(table_name = cdrs)]
struct ProgressSet {
    updated_at: i64,
    status: Option<&'static str>,
    target: Option<String>,
    answered_at: Option<i64>,
    provider_id: Option<i64>,
    provider_name: Option<String>,
    decision: Option<String>,
    attempts: Option<String>,
    ticket_id: Option<String>,
}

impl ProgressSet {
    fn of(
        p: &CdrProgress,
        status: Option<CdrStatus>,
        now: DateTime<Utc>,
    ) -> Result<ProgressSet, StoreError> {
        Ok(ProgressSet {
            updated_at: to_micros(now),
            status: status.map(CdrStatus::as_str),
            target: p.target.map(|v| v.to_string()),
            answered_at: p.answered_at.map(to_micros),
            provider_id: p.provider_id,
            provider_name: p
                .provider_name
                .as_deref()
                .map(|v| clean_text(v, MAX_CALLER_LEN)),
            decision: json_text("decision", &p.decision)?,
            attempts: json_text("attempts", &p.attempts)?,
            ticket_id: p
                .ticket_id
                .as_deref()
                .map(|v| clean_text(v, MAX_CALLER_LEN)),
        })
    }
}

/// Writes what `p` says in one UPDATE of a record still in progress
/// (fields it leaves out are kept) and stamps `updated_at`; an answer time
/// moves the status to `answered`. Returns whether the record was in
/// progress.
fn apply_progress(
    conn: &mut DbConnection,
    id: &str,
    p: &CdrProgress,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let answered = p.answered_at.map(|_| CdrStatus::Answered);
    // A handful of shapes: the fields a progress note carries.
    let updated = keep_prepared(
        diesel::update(cdrs::table.find(id).filter(open_status()))
            .set(ProgressSet::of(p, answered, now)?)
            .returning(cdrs::id),
    )
    .get_result::<String>(conn)
    .optional()?;
    if updated.is_none() {
        return Ok(false);
    }
    if let Some(v) = p.last_media_at {
        media_seen_inner(conn, id, v)?;
    }
    Ok(true)
}

/// Records what was learnt about a call in progress. Refused on a closed
/// record.
pub fn update(
    conn: &mut DbConnection,
    id: Uuid,
    progress: &CdrProgress,
    now: DateTime<Utc>,
) -> Result<Cdr, StoreError> {
    conn.transaction(|conn| {
        note_progress(conn, id, progress, now)?;
        get(conn, id)
    })
}

/// [`update`] without reading the record back: what the call path uses,
/// where nobody looks at the answer.
pub fn note_progress(
    conn: &mut DbConnection,
    id: Uuid,
    progress: &CdrProgress,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let key = id.to_string();
    let applied = if progress.last_media_at.is_some() {
        conn.transaction(|conn| apply_progress(conn, &key, progress, now))?
    } else {
        // One UPDATE is atomic by itself: no BEGIN and COMMIT to pay for
        // (two round trips on PostgreSQL, on every answered call).
        apply_progress(conn, &key, progress, now)?
    };
    if !applied {
        // Closed, or no such record: tell which.
        get(conn, id)?;
        return Err(StoreError::Conflict(format!(
            "call record {id} is already closed"
        )));
    }
    Ok(())
}

fn media_seen_inner(
    conn: &mut DbConnection,
    id: &str,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let t = to_micros(at);
    // Only forward: a late, out-of-order report never moves it back.
    keep_prepared(
        diesel::update(
            cdrs::table
                .find(id)
                .filter(cdrs::last_media_at.is_null().or(cdrs::last_media_at.lt(t))),
        )
        .set(cdrs::last_media_at.eq(t))
        .returning(cdrs::id),
    )
    .get_result::<String>(conn)
    .optional()?;
    Ok(())
}

/// Notes that media was flowing at `at` (one UPDATE, meant to be called
/// every few seconds per call). Ignored for closed records; never moves the
/// time backwards.
pub fn media_seen(conn: &mut DbConnection, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
    let t = to_micros(at);
    let updated = keep_prepared(
        diesel::update(
            cdrs::table
                .find(id.to_string())
                .filter(open_status())
                .filter(cdrs::last_media_at.is_null().or(cdrs::last_media_at.lt(t))),
        )
        .set(cdrs::last_media_at.eq(t))
        .returning(cdrs::id),
    )
    .get_result::<String>(conn)
    .optional()?;
    if updated.is_none() {
        // Either nothing to change or no such record: tell the latter.
        get(conn, id)?;
    }
    Ok(())
}

/// Writes the end of a call and its charge in one transaction: the CDR's
/// final fields, the rating, and the ledger's call charge (idempotency key
/// = the CDR id) with the balance moved. Any failure leaves neither.
///
/// Calling it again with the same close (a retry after a lost answer)
/// returns what is stored; a different close of an already closed record is
/// a conflict.
///
/// On PostgreSQL a close that goes as it should (and carries
/// [`CdrClose::rated_in`] when charged) is one statement: see
/// `one_statement`. Anything else, and every close on SQLite, runs as a
/// transaction that locks the record and its subscriber first.
pub fn close_and_charge(
    conn: &mut DbConnection,
    id: Uuid,
    close: &CdrClose,
    now: DateTime<Utc>,
) -> Result<ClosedCall, StoreError> {
    let key = id.to_string();
    let media = json_text("media_stats", &close.media_stats)?;
    let billable = i64::try_from(close.billable_seconds)
        .map_err(|_| StoreError::Invalid("billable_seconds: too large".into()))?;
    let hangup_cause = close
        .hangup_cause
        .as_deref()
        .map(|c| clean_text(c, MAX_CAUSE_LEN));
    if let Some(r) = &close.rating {
        if r.price < Decimal::ZERO || r.provider_cost < Decimal::ZERO {
            return Err(StoreError::Invalid(
                "rating: price and provider cost cannot be negative".into(),
            ));
        }
    }
    let fields = FinalSet {
        ended_at: to_micros(close.ended_at),
        sip_status: close.sip_status.map(i32::from),
        hangup_cause,
        billable_seconds: billable,
        media_stats: media,
        price: close.rating.map(|r| StoredMoney(r.price)),
        provider_cost: close.rating.map(|r| StoredMoney(r.provider_cost)),
        margin: close.rating.map(|r| StoredMoney(r.margin)),
        rating_currency: close.rating.map(|r| r.currency.to_string()),
    };
    if let DbConnection::Postgres(c) = conn {
        if let Some(closed) = one_statement::close(c, id, &key, close, &fields, now)? {
            return Ok(closed);
        }
    }
    // Under lock, five statements on PostgreSQL: BEGIN, the record and the
    // subscriber locked and read, the close written and read back, for a
    // charge the ledger entry with the balance (one statement), COMMIT.
    conn.transaction(|conn| {
        let (current, subscriber, money) = lock_cdr_and_subscriber(conn, &key)?;
        let subscriber_id = current.subscriber_id;
        let balance = money.balance;
        if !current.status.is_open() {
            return retried_close(conn, current, close, fields.hangup_cause.as_deref());
        }
        if let Some(r) = &close.rating {
            if r.currency != subscriber.currency {
                return Err(StoreError::Invalid(format!(
                    "rating: price in {} but the subscriber pays in {}",
                    r.currency, subscriber.currency
                )));
            }
        }
        let answered = close.progress.answered_at.or(current.answered_at);
        if close.status == FinalStatus::Completed && answered.is_none() {
            return Err(StoreError::Invalid(
                "a completed call needs an answer time".into(),
            ));
        }
        if close.ended_at < current.received_at {
            return Err(StoreError::Invalid(
                "ended_at is before the call was received".into(),
            ));
        }
        if let Some(v) = close.progress.last_media_at {
            media_seen_inner(conn, &key, v)?;
        }
        let status: CdrStatus = close.status.into();
        // Open: checked above under the record's lock. What the progress
        // carries and the final fields in one UPDATE, which returns the
        // record as closed.
        let row: CdrRow = keep_prepared(
            diesel::update(cdrs::table.find(&key))
                .set((
                    ProgressSet::of(&close.progress, Some(status), now)?,
                    &fields,
                ))
                .returning(cdrs::all_columns),
        )
        .get_result(conn)?;
        let charge = match close.rating {
            // The record was open under its lock, so no charge carries its
            // key yet (the unique index would still refuse a second one).
            Some(r) if r.price > Decimal::ZERO => {
                let totals =
                    ledger::totals_after_charge(conn, &subscriber, money.spend, r.price, now)?;
                Some(ledger::insert_new_locked(
                    conn,
                    &Insert {
                        subscriber_id,
                        kind: EntryKind::CallCharge,
                        amount: -r.price,
                        reason: None,
                        cdr_id: Some(id),
                        key: &key,
                    },
                    subscriber.currency.as_str(),
                    balance,
                    Some(totals),
                    now,
                )?)
            }
            _ => None,
        };
        let balance = (balance + charge.as_ref().map_or(Decimal::ZERO, |c| c.amount)).normalize();
        Ok(ClosedCall {
            cdr: Cdr::try_from(row)?,
            charge,
            balance,
            newly_closed: true,
        })
    })
}

/// The columns a close sets besides the progress; `None` is written as
/// NULL.
#[derive(AsChangeset)]
#[diesel(table_name = cdrs, treat_none_as_null = true)]
struct FinalSet {
    ended_at: i64,
    sip_status: Option<i32>,
    hangup_cause: Option<String>,
    billable_seconds: i64,
    media_stats: Option<String>,
    price: Option<StoredMoney>,
    provider_cost: Option<StoredMoney>,
    margin: Option<StoredMoney>,
    rating_currency: Option<String>,
}

/// A close of a record that is already closed: the same close again is
/// answered with what is stored, anything else is a conflict.
fn retried_close(
    conn: &mut DbConnection,
    current: Cdr,
    close: &CdrClose,
    cause: Option<&str>,
) -> Result<ClosedCall, StoreError> {
    let same = current.status == close.status.into()
        && current.ended_at == Some(trunc_micros(close.ended_at))
        && current.billable_seconds == Some(close.billable_seconds)
        && current.rating.map(|r| (r.price, r.currency))
            == close.rating.map(|r| (r.price, r.currency))
        && current.hangup_cause.as_deref() == cause;
    if !same {
        return Err(StoreError::Conflict(format!(
            "call record {} is already closed with other values",
            current.id
        )));
    }
    Ok(ClosedCall {
        charge: ledger::charge_of(conn, current.id)?,
        balance: ledger::balance(conn, current.subscriber_id)?,
        cdr: current,
        newly_closed: false,
    })
}

/// Every call still in progress (open or answered), oldest first: after a
/// restart these are the calls a crash interrupted. Close each with
/// [`close_and_charge`], ending it at `last_media_at` (or `answered_at`,
/// or `received_at` when it was never answered).
pub fn open_cdrs(conn: &mut DbConnection) -> Result<Vec<Cdr>, StoreError> {
    let rows: Vec<CdrRow> = cdrs::table
        .filter(still_open())
        .order((cdrs::received_at, cdrs::id))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(Cdr::try_from)
        .collect::<Result<_, _>>()?)
}

/// The moment a crashed call is taken to have ended.
pub fn recovery_end(cdr: &Cdr) -> DateTime<Utc> {
    let base = cdr.answered_at.unwrap_or(cdr.received_at);
    cdr.last_media_at.map_or(base, |m| m.max(base))
}

/// Calls in progress for the subscriber (the concurrent-call count).
pub fn active_calls(conn: &mut DbConnection, subscriber_id: i64) -> Result<u32, StoreError> {
    let n: i64 = open_calls_of(subscriber_id).count().get_result(conn)?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// The subscriber's records in progress (the calls the concurrent-call cap
/// counts).
pub(crate) fn open_calls_of(
    subscriber_id: i64,
) -> diesel::dsl::Filter<
    diesel::dsl::Filter<cdrs::table, diesel::dsl::Eq<cdrs::subscriber_id, i64>>,
    StillOpen,
> {
    cdrs::table
        .filter(cdrs::subscriber_id.eq(subscriber_id))
        .filter(still_open())
}

/// Which calls [`list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CdrQuery {
    /// Received at or after.
    pub from: Option<DateTime<Utc>>,
    /// Received before.
    pub to: Option<DateTime<Utc>>,
    /// Continue after this position (from the previous page's last call).
    pub after: Option<Cursor>,
    pub limit: i64,
}

/// A position in the newest-first order of calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub received_at_micros: i64,
    pub id: Uuid,
}

impl Cursor {
    pub fn of(cdr: &Cdr) -> Cursor {
        Cursor {
            received_at_micros: to_micros(cdr.received_at),
            id: cdr.id,
        }
    }

    /// `MICROS.UUID`, opaque to clients.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.received_at_micros, self.id.simple())
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let (t, id) = s.split_once('.')?;
        Some(Cursor {
            received_at_micros: t.parse().ok()?,
            id: Uuid::try_parse(id).ok()?,
        })
    }
}

/// A subscriber's calls, newest first.
pub fn list(
    conn: &mut DbConnection,
    subscriber_id: i64,
    q: &CdrQuery,
) -> Result<Vec<Cdr>, StoreError> {
    let mut query = cdrs::table
        .filter(cdrs::subscriber_id.eq(subscriber_id))
        .into_boxed();
    if let Some(f) = q.from {
        query = query.filter(cdrs::received_at.ge(to_micros(f)));
    }
    if let Some(t) = q.to {
        query = query.filter(cdrs::received_at.lt(to_micros(t)));
    }
    if let Some(c) = &q.after {
        let id = c.id.to_string();
        query = query.filter(
            cdrs::received_at
                .lt(c.received_at_micros)
                .or(cdrs::received_at
                    .eq(c.received_at_micros)
                    .and(cdrs::id.lt(id))),
        );
    }
    let rows: Vec<CdrRow> = query
        .order((cdrs::received_at.desc(), cdrs::id.desc()))
        .limit(q.limit)
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(Cdr::try_from)
        .collect::<Result<_, _>>()?)
}
