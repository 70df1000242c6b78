//! Billing statements: what a period holds, and each statement's life from
//! creation to "sent".
//!
//! A statement is created once per (subscriber, period start) — the unique
//! key makes a second run find the first one — together with its rendered
//! message and Message-ID, so every (re)send is the very same bytes. Its
//! status then moves `pending` → `sent`, or `pending` → `failed` (with
//! `attempts`, `next_attempt_at`, `last_error`) → … → `sent`.
//!
//! Period membership: a call belongs to the period holding its *end* time
//! (`ended_at`), and so does its charge; every other ledger entry to the
//! period holding its `created_at`. [`gather`] refuses (a [`Hold`]) while
//! any call of the period is open or was closed without a rating.

use super::{is_unique_violation, time_of, StoreError};
use crate::db::money::StoredMoney;
use crate::db::schema::{
    cdrs, ledger_entries as le, statement_holds as holds, statement_schedules as scheds,
    statements as st,
};
use crate::db::{to_micros, DbConnection, DbError};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use provider_sdk::money::Currency;
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

/// A statement period: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Period {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// Where a statement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StatementStatus {
    /// Stored, not sent yet.
    Pending,
    /// The mail server accepted it (250 to the end of DATA).
    Sent,
    /// The last attempt failed; retried at `next_attempt_at`.
    Failed,
}

impl StatementStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StatementStatus::Pending => "pending",
            StatementStatus::Sent => "sent",
            StatementStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<StatementStatus> {
        Some(match s {
            "pending" => StatementStatus::Pending,
            "sent" => StatementStatus::Sent,
            "failed" => StatementStatus::Failed,
            _ => return None,
        })
    }
}

/// A stored statement (without its message; see [`message`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Statement {
    pub id: i64,
    pub subscriber_id: i64,
    pub period: Period,
    pub currency: Currency,
    pub opening_balance: Decimal,
    pub closing_balance: Decimal,
    /// Totals, payments and credits, totals per destination type (JSON).
    pub summary: serde_json::Value,
    pub recipient: String,
    pub message_id: String,
    pub status: StatementStatus,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// A statement about to be stored.
#[derive(Debug, Clone)]
pub struct NewStatement {
    pub subscriber_id: i64,
    pub period: Period,
    pub currency: Currency,
    pub opening_balance: Decimal,
    pub closing_balance: Decimal,
    pub summary: serde_json::Value,
    pub recipient: String,
    pub message_id: String,
    pub message: String,
}

/// A call as a statement lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodCall {
    pub id: Uuid,
    pub received_at: DateTime<Utc>,
    pub answered_at: Option<DateTime<Utc>>,
    pub ended_at: DateTime<Utc>,
    pub caller_number: Option<String>,
    pub caller_name: Option<String>,
    pub called_number: String,
    pub target: Option<String>,
    pub billable_seconds: u64,
    /// What the ledger charged (zero for a free call).
    pub charge: Decimal,
}

/// A payment, credit or adjustment of the period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeriodEntry {
    pub id: i64,
    pub kind: String,
    pub amount: Decimal,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Everything a statement is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodData {
    pub period: Period,
    pub opening_balance: Decimal,
    pub calls: Vec<PeriodCall>,
    pub entries: Vec<PeriodEntry>,
}

/// Why a period cannot be issued yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hold {
    pub subscriber_id: i64,
    pub period: Period,
    pub reason: String,
}

/// [`gather`]'s answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Gathered {
    Ready(PeriodData),
    Held(Hold),
}

type CallRow = (
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<i64>,
    Option<StoredMoney>,
);

/// How long after its period's end a call's charge is looked for in the
/// period's range of charges (a call closed late, by crash recovery, is
/// still found, by its own key).
const CHARGE_WINDOW_MICROS: i64 = 24 * 3600 * 1_000_000;

/// What the period holds, or why it cannot be issued yet. `opening` is the
/// balance at the period's start (the previous statement's closing
/// balance, or computed from the ledger when there is none).
pub fn gather(
    conn: &mut DbConnection,
    subscriber_id: i64,
    period: Period,
    opening: Option<Decimal>,
) -> Result<Gathered, StoreError> {
    let (start, end) = (to_micros(period.start), to_micros(period.end));
    conn.transaction(|conn| {
        // A call received before the end and still open may yet end inside
        // the period (crash recovery ends it at its last sign of life).
        // By the index of calls in progress: a subscriber has few open
        // calls but all of history before `end`, so the received time is
        // checked here.
        let open: Vec<(String, i64)> = cdrs::table
            .filter(cdrs::subscriber_id.eq(subscriber_id))
            .filter(super::cdrs::still_open())
            .select((cdrs::id, cdrs::received_at))
            .load(conn)?;
        let open: Vec<String> = open
            .into_iter()
            .filter(|(_, received)| *received < end)
            .map(|(id, _)| id)
            .take(5)
            .collect();
        if !open.is_empty() {
            return Ok(Gathered::Held(Hold {
                subscriber_id,
                period,
                reason: format!("call(s) still open: {}", open.join(", ")),
            }));
        }
        let rows: Vec<CallRow> = cdrs::table
            .filter(cdrs::subscriber_id.eq(subscriber_id))
            .filter(cdrs::ended_at.ge(start))
            .filter(cdrs::ended_at.lt(end))
            .filter(cdrs::status.eq("completed"))
            .order((cdrs::ended_at, cdrs::id))
            .select((
                cdrs::id,
                cdrs::received_at,
                cdrs::answered_at,
                cdrs::ended_at,
                cdrs::caller_number,
                cdrs::caller_name,
                cdrs::called_number,
                cdrs::target,
                cdrs::billable_seconds,
                cdrs::price,
            ))
            .load(conn)?;
        // The charges by the (subscriber, kind, created_at) index, in one
        // range: a call is charged when it ends, so within the period or
        // just after it. One looked up by its key (the CDR id) otherwise.
        let charges: std::collections::HashMap<String, Decimal> = le::table
            .filter(le::subscriber_id.eq(subscriber_id))
            .filter(le::kind.eq("call_charge"))
            .filter(le::created_at.ge(start))
            .filter(le::created_at.lt(end.saturating_add(CHARGE_WINDOW_MICROS)))
            .select((le::idempotency_key, le::amount))
            .load::<(String, StoredMoney)>(conn)?
            .into_iter()
            .map(|(key, amount)| (key, amount.0))
            .collect();
        let mut calls = Vec::with_capacity(rows.len());
        let mut unrated = Vec::new();
        for r in rows {
            let (id, received, answered, ended, caller, name, called, target, secs, price) = r;
            let corrupt = |what: &str| DbError::Corrupt(format!("CDR {id}: {what}"));
            let Some(price) = price else {
                unrated.push(id);
                continue;
            };
            let charged = match charges.get(&id) {
                Some(a) => Some(*a),
                None => le::table
                    .filter(le::idempotency_key.eq(&id))
                    .filter(le::kind.eq("call_charge"))
                    .select(le::amount)
                    .get_result::<StoredMoney>(conn)
                    .optional()?
                    .map(|a| a.0),
            };
            // The ledger is the truth; a CDR price it disagrees with is
            // never put on a statement.
            let charge = charged.map_or(Decimal::ZERO, |a| -a);
            if charge != price.0 {
                return Err(corrupt("its ledger charge differs from its price").into());
            }
            calls.push(PeriodCall {
                id: Uuid::parse_str(&id).map_err(|_| corrupt("id"))?,
                received_at: time_of(received)?,
                answered_at: answered.map(time_of).transpose()?,
                ended_at: time_of(ended.ok_or_else(|| corrupt("no end"))?)?,
                caller_number: caller,
                caller_name: name,
                called_number: called,
                target,
                billable_seconds: secs.and_then(|s| u64::try_from(s).ok()).unwrap_or_default(),
                charge,
            });
        }
        if !unrated.is_empty() {
            unrated.truncate(5);
            return Ok(Gathered::Held(Hold {
                subscriber_id,
                period,
                reason: format!("call(s) not rated: {}", unrated.join(", ")),
            }));
        }
        let entry_rows: Vec<(i64, String, StoredMoney, Option<String>, i64)> = le::table
            .filter(le::subscriber_id.eq(subscriber_id))
            .filter(not_a_charge())
            .filter(le::created_at.ge(start))
            .filter(le::created_at.lt(end))
            .order(le::id)
            .select((le::id, le::kind, le::amount, le::reason, le::created_at))
            .load(conn)?;
        let entries = entry_rows
            .into_iter()
            .map(|(id, kind, amount, reason, created)| {
                Ok(PeriodEntry {
                    id,
                    kind,
                    amount: amount.0,
                    reason,
                    created_at: time_of(created)?,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        let opening_balance = match opening {
            Some(o) => o,
            None => balance_before(conn, subscriber_id, start)?,
        };
        Ok(Gathered::Ready(PeriodData {
            period,
            opening_balance,
            calls,
            entries,
        }))
    })
}

type KindIs = diesel::dsl::Eq<le::kind, &'static str>;

/// Ledger entries that are not call charges, as equalities on the kind so
/// that the (subscriber, kind, created_at) index serves the time range.
fn not_a_charge() -> diesel::dsl::Or<diesel::dsl::Or<KindIs, KindIs>, KindIs> {
    le::kind
        .eq("payment")
        .or(le::kind.eq("credit"))
        .or(le::kind.eq("adjustment"))
}

/// The balance at `before` (micros) by the period rule: entries created
/// before it, and charges of calls that ended before it.
fn balance_before(
    conn: &mut DbConnection,
    subscriber_id: i64,
    before: i64,
) -> Result<Decimal, StoreError> {
    let others: Vec<StoredMoney> = le::table
        .filter(le::subscriber_id.eq(subscriber_id))
        .filter(not_a_charge())
        .filter(le::created_at.lt(before))
        .select(le::amount)
        .load(conn)?;
    // From the calls that ended before (by the (subscriber, ended_at)
    // index) to their charges: a subscriber's first statement reads only
    // what precedes its period.
    let charges: Vec<StoredMoney> = cdrs::table
        .inner_join(le::table.on(le::idempotency_key.eq(cdrs::id)))
        .filter(cdrs::subscriber_id.eq(subscriber_id))
        .filter(cdrs::ended_at.lt(before))
        .filter(le::kind.eq("call_charge"))
        .select(le::amount)
        .load(conn)?;
    Ok(others.iter().chain(&charges).map(|m| m.0).sum())
}

/// The subscriber's latest statement's period and closing balance.
pub fn last_period(
    conn: &mut DbConnection,
    subscriber_id: i64,
) -> Result<Option<(Period, Decimal)>, StoreError> {
    let row: Option<(i64, i64, StoredMoney)> = st::table
        .filter(st::subscriber_id.eq(subscriber_id))
        .order(st::period_start.desc())
        .select((st::period_start, st::period_end, st::closing_balance))
        .first(conn)
        .optional()?;
    row.map(|(s, e, c)| {
        Ok((
            Period {
                start: time_of(s)?,
                end: time_of(e)?,
            },
            c.0,
        ))
    })
    .transpose()
}

/// Every subscriber's latest period end and closing balance, by subscriber
/// (one query for a whole run).
pub fn last_periods(
    conn: &mut DbConnection,
) -> Result<std::collections::HashMap<i64, (Period, Decimal)>, StoreError> {
    use diesel::dsl::max;
    let latest: Vec<(i64, Option<i64>)> = st::table
        .group_by(st::subscriber_id)
        .select((st::subscriber_id, max(st::period_start)))
        .load(conn)?;
    let mut out = std::collections::HashMap::with_capacity(latest.len());
    let wanted: std::collections::HashMap<i64, i64> = latest
        .into_iter()
        .filter_map(|(s, p)| p.map(|p| (s, p)))
        .collect();
    let rows: Vec<(i64, i64, i64, StoredMoney)> = st::table
        .select((
            st::subscriber_id,
            st::period_start,
            st::period_end,
            st::closing_balance,
        ))
        .load(conn)?;
    for (sub, s, e, c) in rows {
        if wanted.get(&sub) == Some(&s) {
            out.insert(
                sub,
                (
                    Period {
                        start: time_of(s)?,
                        end: time_of(e)?,
                    },
                    c.0,
                ),
            );
        }
    }
    Ok(out)
}

/// Whether [`insert_all`] stored a new statement or found the period's one.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    New(Issued),
    Existing(Issued),
}

/// What the next period needs of a stored statement (the message itself is
/// not read back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Issued {
    pub id: i64,
    pub period: Period,
    pub closing_balance: Decimal,
}

/// Stores statements in one transaction, clearing each one's hold. A
/// period whose statement exists already (a second run, a run racing
/// another) keeps it: that insert alone is undone (a savepoint) and the
/// stored one is returned.
pub fn insert_all(
    conn: &mut DbConnection,
    news: &[NewStatement],
    now: DateTime<Utc>,
) -> Result<Vec<Created>, StoreError> {
    conn.transaction(|conn| {
        news.iter()
            .map(|new| {
                let r = conn.transaction(|c| insert_row(c, new, now));
                let created = match r {
                    Ok(()) => true,
                    Err(StoreError::Db(DbError::Query(e))) if is_unique_violation(&e) => false,
                    Err(e) => return Err(e),
                };
                clear_hold(conn, new.subscriber_id, new.period.start)?;
                let stored = issued(conn, new)?;
                Ok(if created {
                    Created::New(stored)
                } else {
                    Created::Existing(stored)
                })
            })
            .collect()
    })
}

fn insert_row(
    conn: &mut DbConnection,
    new: &NewStatement,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let summary = serde_json::to_string(&new.summary)
        .map_err(|e| StoreError::Invalid(format!("summary: {e}")))?;
    diesel::insert_into(st::table)
        .values((
            st::subscriber_id.eq(new.subscriber_id),
            st::period_start.eq(to_micros(new.period.start)),
            st::period_end.eq(to_micros(new.period.end)),
            st::currency.eq(new.currency.as_str()),
            st::opening_balance.eq(StoredMoney(new.opening_balance)),
            st::closing_balance.eq(StoredMoney(new.closing_balance)),
            st::summary.eq(&summary),
            st::recipient.eq(&new.recipient),
            st::message_id.eq(&new.message_id),
            st::message.eq(&new.message),
            st::status.eq(StatementStatus::Pending.as_str()),
            st::attempts.eq(0),
            st::next_attempt_at.eq(Some(to_micros(now))),
            st::created_at.eq(to_micros(now)),
        ))
        .execute(conn)?;
    Ok(())
}

/// The stored statement of `new`'s period (the message is not read back).
fn issued(conn: &mut DbConnection, new: &NewStatement) -> Result<Issued, StoreError> {
    let (id, period_end, closing): (i64, i64, StoredMoney) = st::table
        .filter(st::subscriber_id.eq(new.subscriber_id))
        .filter(st::period_start.eq(to_micros(new.period.start)))
        .select((st::id, st::period_end, st::closing_balance))
        .get_result(conn)
        .optional()?
        .ok_or(StoreError::NotFound("statement"))?;
    Ok(Issued {
        id,
        period: Period {
            start: new.period.start,
            end: time_of(period_end)?,
        },
        closing_balance: closing.0,
    })
}

type StatementRow = (
    i64,
    i64,
    i64,
    i64,
    String,
    StoredMoney,
    StoredMoney,
    String,
    String,
    String,
    String,
    i32,
    Option<i64>,
    Option<String>,
    i64,
    Option<i64>,
);

macro_rules! statement_columns {
    () => {
        (
            st::id,
            st::subscriber_id,
            st::period_start,
            st::period_end,
            st::currency,
            st::opening_balance,
            st::closing_balance,
            st::summary,
            st::recipient,
            st::message_id,
            st::status,
            st::attempts,
            st::next_attempt_at,
            st::last_error,
            st::created_at,
            st::sent_at,
        )
    };
}

fn statement_of(r: StatementRow) -> Result<Statement, DbError> {
    let (
        id,
        sub,
        ps,
        pe,
        cur,
        open,
        close,
        summary,
        to,
        mid,
        status,
        att,
        next,
        err,
        created,
        sent,
    ) = r;
    let corrupt = |what: &str| DbError::Corrupt(format!("statement {id}: {what}"));
    Ok(Statement {
        id,
        subscriber_id: sub,
        period: Period {
            start: time_of(ps)?,
            end: time_of(pe)?,
        },
        currency: cur.parse().map_err(|_| corrupt("currency"))?,
        opening_balance: open.0,
        closing_balance: close.0,
        summary: serde_json::from_str(&summary).map_err(|_| corrupt("summary"))?,
        recipient: to,
        message_id: mid,
        status: StatementStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        attempts: u32::try_from(att).map_err(|_| corrupt("attempts"))?,
        next_attempt_at: next.map(time_of).transpose()?,
        last_error: err,
        created_at: time_of(created)?,
        sent_at: sent.map(time_of).transpose()?,
    })
}

/// One statement.
pub fn get(conn: &mut DbConnection, id: i64) -> Result<Statement, StoreError> {
    let row: Option<StatementRow> = st::table
        .find(id)
        .select(statement_columns!())
        .first(conn)
        .optional()?;
    row.map(statement_of)
        .transpose()?
        .ok_or(StoreError::NotFound("statement"))
}

/// The stored message (RFC 5322 text) of a statement.
pub fn message(conn: &mut DbConnection, id: i64) -> Result<String, StoreError> {
    st::table
        .find(id)
        .select(st::message)
        .first(conn)
        .optional()?
        .ok_or(StoreError::NotFound("statement"))
}

/// Which statements [`list`] returns.
#[derive(Debug, Clone, Default)]
pub struct StatementQuery {
    pub subscriber_id: Option<i64>,
    pub status: Option<StatementStatus>,
    /// Ids below this (the previous page's last id).
    pub before: Option<i64>,
    pub limit: i64,
}

/// Statements newest first.
pub fn list(conn: &mut DbConnection, q: &StatementQuery) -> Result<Vec<Statement>, StoreError> {
    let mut query = st::table.select(statement_columns!()).into_boxed();
    if let Some(s) = q.subscriber_id {
        query = query.filter(st::subscriber_id.eq(s));
    }
    if let Some(s) = q.status {
        query = query.filter(st::status.eq(s.as_str()));
    }
    if let Some(b) = q.before {
        query = query.filter(st::id.lt(b));
    }
    let rows: Vec<StatementRow> = query.order(st::id.desc()).limit(q.limit).load(conn)?;
    Ok(rows
        .into_iter()
        .map(statement_of)
        .collect::<Result<_, _>>()?)
}

/// A statement to send: id, recipient, Message-ID, message, attempts so far.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub id: i64,
    pub recipient: String,
    pub message_id: String,
    pub message: String,
    pub attempts: u32,
}

/// Statements not sent whose next attempt is due, oldest first.
pub fn due(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Outgoing>, StoreError> {
    let rows: Vec<(i64, String, String, String, i32)> = st::table
        .filter(st::status.ne(StatementStatus::Sent.as_str()))
        .filter(st::next_attempt_at.le(to_micros(now)))
        .order(st::id)
        .select((
            st::id,
            st::recipient,
            st::message_id,
            st::message,
            st::attempts,
        ))
        .limit(limit)
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, recipient, message_id, message, attempts)| Outgoing {
            id,
            recipient,
            message_id,
            message,
            attempts: u32::try_from(attempts).unwrap_or_default(),
        })
        .collect())
}

/// Records that the mail server accepted the statement. A statement
/// already marked sent keeps its first `sent_at`.
pub fn mark_sent(conn: &mut DbConnection, id: i64, now: DateTime<Utc>) -> Result<(), StoreError> {
    diesel::update(
        st::table
            .find(id)
            .filter(st::status.ne(StatementStatus::Sent.as_str())),
    )
    .set((
        st::status.eq(StatementStatus::Sent.as_str()),
        st::attempts.eq(st::attempts + 1),
        st::sent_at.eq(Some(to_micros(now))),
        st::next_attempt_at.eq(None::<i64>),
        st::last_error.eq(None::<String>),
    ))
    .execute(conn)?;
    Ok(())
}

/// Records a failed attempt and when to try again.
pub fn mark_failed(
    conn: &mut DbConnection,
    id: i64,
    error: &str,
    next_attempt_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    diesel::update(
        st::table
            .find(id)
            .filter(st::status.ne(StatementStatus::Sent.as_str())),
    )
    .set((
        st::status.eq(StatementStatus::Failed.as_str()),
        st::attempts.eq(st::attempts + 1),
        st::next_attempt_at.eq(Some(to_micros(next_attempt_at))),
        st::last_error.eq(Some(super::clean_text(error, 1000))),
    ))
    .execute(conn)?;
    Ok(())
}

/// Queues a statement to be sent again now — the same message with the
/// same Message-ID (an operator's resend, or a retry without waiting).
pub fn resend(
    conn: &mut DbConnection,
    id: i64,
    now: DateTime<Utc>,
) -> Result<Statement, StoreError> {
    let n = diesel::update(st::table.find(id))
        .set((
            st::status.eq(StatementStatus::Pending.as_str()),
            st::sent_at.eq(None::<i64>),
            st::next_attempt_at.eq(Some(to_micros(now))),
        ))
        .execute(conn)?;
    if n == 0 {
        return Err(StoreError::NotFound("statement"));
    }
    get(conn, id)
}

/// A subscriber's own schedule, if set.
pub fn schedule_of(
    conn: &mut DbConnection,
    subscriber_id: i64,
) -> Result<Option<String>, StoreError> {
    Ok(scheds::table
        .find(subscriber_id)
        .select(scheds::schedule)
        .first(conn)
        .optional()?)
}

/// Every subscriber's own schedule.
pub fn schedules(
    conn: &mut DbConnection,
) -> Result<std::collections::HashMap<i64, String>, StoreError> {
    let rows: Vec<(i64, String)> = scheds::table
        .select((scheds::subscriber_id, scheds::schedule))
        .load(conn)?;
    Ok(rows.into_iter().collect())
}

/// Sets (`Some`) or clears (`None`) a subscriber's own schedule. The
/// expression is checked by the caller.
pub fn set_schedule(
    conn: &mut DbConnection,
    subscriber_id: i64,
    schedule: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    conn.transaction(|conn| {
        // The write first (see `insert`), then the check.
        diesel::delete(scheds::table.find(subscriber_id)).execute(conn)?;
        super::subscribers::get(conn, subscriber_id)?;
        if let Some(s) = schedule {
            diesel::insert_into(scheds::table)
                .values((
                    scheds::subscriber_id.eq(subscriber_id),
                    scheds::schedule.eq(s),
                    scheds::updated_at.eq(to_micros(now)),
                ))
                .execute(conn)?;
        }
        Ok(())
    })
}

/// A held period as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredHold {
    pub subscriber_id: i64,
    pub period: Period,
    pub reason: String,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub notified_at: Option<DateTime<Utc>>,
}

/// Records (or refreshes) a hold; returns it as stored.
pub fn record_hold(
    conn: &mut DbConnection,
    hold: &Hold,
    now: DateTime<Utc>,
) -> Result<StoredHold, StoreError> {
    let start = to_micros(hold.period.start);
    let t = to_micros(now);
    let reason = super::clean_text(&hold.reason, 1000);
    conn.transaction(|conn| {
        let n = diesel::update(holds::table.find((hold.subscriber_id, start)))
            .set((holds::reason.eq(&reason), holds::last_seen_at.eq(t)))
            .execute(conn)?;
        if n == 0 {
            diesel::insert_into(holds::table)
                .values((
                    holds::subscriber_id.eq(hold.subscriber_id),
                    holds::period_start.eq(start),
                    holds::period_end.eq(to_micros(hold.period.end)),
                    holds::reason.eq(&reason),
                    holds::first_seen_at.eq(t),
                    holds::last_seen_at.eq(t),
                ))
                .execute(conn)?;
        }
        hold_of(conn, hold.subscriber_id, start)?.ok_or(StoreError::NotFound("hold"))
    })
}

type HoldRow = (i64, i64, i64, String, i64, i64, Option<i64>);

fn stored_hold(r: HoldRow) -> Result<StoredHold, DbError> {
    let (sub, s, e, reason, first, last, notified) = r;
    Ok(StoredHold {
        subscriber_id: sub,
        period: Period {
            start: time_of(s)?,
            end: time_of(e)?,
        },
        reason,
        first_seen_at: time_of(first)?,
        last_seen_at: time_of(last)?,
        notified_at: notified.map(time_of).transpose()?,
    })
}

fn hold_of(
    conn: &mut DbConnection,
    subscriber_id: i64,
    start: i64,
) -> Result<Option<StoredHold>, StoreError> {
    let row: Option<HoldRow> = holds::table
        .find((subscriber_id, start))
        .first(conn)
        .optional()?;
    Ok(row.map(stored_hold).transpose()?)
}

/// Periods still held (those issued since are removed by [`clear_hold`]).
pub fn holds(conn: &mut DbConnection) -> Result<Vec<StoredHold>, StoreError> {
    let rows: Vec<HoldRow> = holds::table
        .order((holds::subscriber_id, holds::period_start))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(stored_hold)
        .collect::<Result<_, _>>()?)
}

/// The operator was told about a hold.
pub fn hold_notified(
    conn: &mut DbConnection,
    subscriber_id: i64,
    period_start: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    diesel::update(holds::table.find((subscriber_id, to_micros(period_start))))
        .set(holds::notified_at.eq(Some(to_micros(now))))
        .execute(conn)?;
    Ok(())
}

/// A period was issued: its hold (if any) is over.
pub fn clear_hold(
    conn: &mut DbConnection,
    subscriber_id: i64,
    period_start: DateTime<Utc>,
) -> Result<(), StoreError> {
    diesel::delete(holds::table.find((subscriber_id, to_micros(period_start)))).execute(conn)?;
    Ok(())
}
