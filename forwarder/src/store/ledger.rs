//! The account ledger: every change of a subscriber's money is an entry,
//! and the balance is the sum of the entries.
//!
//! Entries are call charges (written by [`super::cdrs::close_and_charge`]),
//! payments, credits and adjustments (with a mandatory reason). Amounts are
//! the signed effect on the balance: charges are negative. Each entry has a
//! unique idempotency key: recording the same entry again (same key, same
//! content) returns the stored one and changes nothing; the same key with
//! other content is a [`StoreError::Conflict`].
//!
//! The subscriber row keeps the balance as a cache, updated in the same
//! transaction as every entry, so reading it is one row; [`ledger_sum`]
//! recomputes it from the entries (the tests check that both agree).

use super::prepared::keep_prepared;
use super::subscribers::{Money, SpendTotals};
use super::{clean_text, is_unique_violation, subscribers, time_of, StoreError};
use crate::amount;
use crate::authorize::Standing;
use crate::db::money::StoredMoney;
use crate::db::schema::{ledger_entries as le, subscribers as subs};
use crate::db::{to_micros, DbConnection, DbError};
use crate::subscriber::Subscriber;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use diesel::prelude::*;
use provider_sdk::money::Currency;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest idempotency key and reason accepted.
pub const MAX_KEY_LEN: usize = 200;
pub const MAX_REASON_LEN: usize = 500;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    CallCharge,
    Payment,
    Credit,
    Adjustment,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::CallCharge => "call_charge",
            EntryKind::Payment => "payment",
            EntryKind::Credit => "credit",
            EntryKind::Adjustment => "adjustment",
        }
    }

    fn parse(s: &str) -> Option<EntryKind> {
        Some(match s {
            "call_charge" => EntryKind::CallCharge,
            "payment" => EntryKind::Payment,
            "credit" => EntryKind::Credit,
            "adjustment" => EntryKind::Adjustment,
            _ => return None,
        })
    }
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    pub id: i64,
    pub subscriber_id: i64,
    pub kind: EntryKind,
    /// Signed effect on the balance (charges are negative).
    pub amount: Decimal,
    pub currency: Currency,
    pub reason: Option<String>,
    /// The call a charge is for.
    pub cdr_id: Option<Uuid>,
    pub idempotency_key: String,
    pub created_at: DateTime<Utc>,
}

/// A payment, credit or adjustment from the operator.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    pub kind: EntryKind,
    /// Payments and credits: positive. Adjustments: either sign, not zero.
    #[serde(deserialize_with = "amount::de_signed")]
    pub amount: Decimal,
    #[serde(default)]
    pub reason: Option<String>,
    /// Retrying with the same key records the entry once. Absent: a fresh
    /// key is made (no protection against a retry).
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

impl NewEntry {
    /// Checks kind, sign and reason; returns the key to use.
    pub fn validate(&self) -> Result<String, StoreError> {
        let invalid = |m: &str| Err(StoreError::Invalid(m.to_string()));
        match self.kind {
            EntryKind::CallCharge => {
                return invalid("call charges are recorded by calls, not entered by hand")
            }
            EntryKind::Payment | EntryKind::Credit if self.amount <= Decimal::ZERO => {
                return invalid("amount: a payment or credit must be positive")
            }
            EntryKind::Adjustment if self.amount.is_zero() => {
                return invalid("amount: an adjustment cannot be zero")
            }
            _ => {}
        }
        match &self.reason {
            Some(r) if r.trim().is_empty() || r.chars().count() > MAX_REASON_LEN => {
                return invalid("reason: must be 1 to 500 characters");
            }
            Some(r) if r.chars().any(|c| c.is_control() && c != '\n') => {
                return invalid("reason: contains control characters");
            }
            None if self.kind == EntryKind::Adjustment => {
                return invalid("reason: an adjustment needs a reason");
            }
            _ => {}
        }
        match &self.idempotency_key {
            None => Ok(Uuid::new_v4().to_string()),
            Some(k) => {
                check_key(k)?;
                Ok(k.clone())
            }
        }
    }
}

fn check_key(k: &str) -> Result<(), StoreError> {
    if k.is_empty() || k.len() > MAX_KEY_LEN || !k.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StoreError::Invalid(format!(
            "idempotency_key: 1 to {MAX_KEY_LEN} printable ASCII characters without spaces"
        )));
    }
    Ok(())
}

/// Whether [`record`] wrote a new entry or found the same one already there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Created(LedgerEntry),
    Existing(LedgerEntry),
}

impl Recorded {
    pub fn entry(&self) -> &LedgerEntry {
        match self {
            Recorded::Created(e) | Recorded::Existing(e) => e,
        }
    }
    pub fn into_entry(self) -> LedgerEntry {
        match self {
            Recorded::Created(e) | Recorded::Existing(e) => e,
        }
    }
    pub fn is_new(&self) -> bool {
        matches!(self, Recorded::Created(_))
    }
}

type EntryRow = (
    i64,
    i64,
    String,
    StoredMoney,
    String,
    Option<String>,
    Option<String>,
    String,
    i64,
);

fn entry_of(r: EntryRow) -> Result<LedgerEntry, DbError> {
    let (id, subscriber_id, kind, amount, currency, reason, cdr_id, key, created_at) = r;
    let corrupt = |what: &str| DbError::Corrupt(format!("ledger entry {id}: {what}"));
    Ok(LedgerEntry {
        id,
        subscriber_id,
        kind: EntryKind::parse(&kind).ok_or_else(|| corrupt("kind"))?,
        amount: amount.0,
        currency: currency.parse().map_err(|_| corrupt("currency"))?,
        reason,
        cdr_id: cdr_id
            .map(|c| Uuid::parse_str(&c))
            .transpose()
            .map_err(|_| corrupt("cdr id"))?,
        idempotency_key: key,
        created_at: time_of(created_at)?,
    })
}

fn by_key(conn: &mut DbConnection, key: &str) -> Result<Option<LedgerEntry>, StoreError> {
    let row: Option<EntryRow> = le::table
        .filter(le::idempotency_key.eq(key))
        .get_result(conn)
        .optional()?;
    Ok(row.map(entry_of).transpose()?)
}

/// Records an operator's payment, credit or adjustment.
pub fn record(
    conn: &mut DbConnection,
    subscriber_id: i64,
    new: &NewEntry,
    now: DateTime<Utc>,
) -> Result<Recorded, StoreError> {
    let key = new.validate()?;
    let reason = new.reason.as_deref().map(str::trim);
    let e = Insert {
        subscriber_id,
        kind: new.kind,
        amount: new.amount,
        reason,
        cdr_id: None,
        key: &key,
    };
    conn.transaction(|conn| {
        let (subscriber, balance) = subscribers::lock_and_get(conn, subscriber_id)?;
        if let Some(existing) = by_key(conn, &key)? {
            let same = existing.subscriber_id == subscriber_id
                && existing.kind == e.kind
                && existing.amount == e.amount
                && existing.reason == e.reason.map(|r| clean_text(r, MAX_REASON_LEN))
                && existing.cdr_id.is_none();
            if same {
                return Ok(Recorded::Existing(existing));
            }
            return Err(StoreError::Conflict(format!(
                "idempotency key {:?} was already used for a different entry (id {})",
                key, existing.id
            )));
        }
        // Never a call charge (validated above): the spend totals stand.
        insert_new_locked(conn, &e, subscriber.currency.as_str(), balance, None, now)
            .map(Recorded::Created)
    })
}

/// An entry about to be written.
pub(crate) struct Insert<'a> {
    pub subscriber_id: i64,
    pub kind: EntryKind,
    pub amount: Decimal,
    pub reason: Option<&'a str>,
    pub cdr_id: Option<Uuid>,
    pub key: &'a str,
}

/// Writes an entry whose key is known to be unused and moves the balance,
/// from the subscriber's `currency` and `balance` read under the lock the
/// caller holds, and sets the running spend `totals` when given (those
/// after a call charge, from [`totals_after_charge`]): one statement on
/// PostgreSQL ([`insert_and_move_pg`]), two on SQLite. A key used after all
/// is a conflict.
pub(crate) fn insert_new_locked(
    conn: &mut DbConnection,
    e: &Insert<'_>,
    currency: &str,
    balance: Decimal,
    totals: Option<SpendTotals>,
    now: DateTime<Utc>,
) -> Result<LedgerEntry, StoreError> {
    let row = EntryValues {
        subscriber_id: e.subscriber_id,
        kind: e.kind.as_str(),
        amount: StoredMoney(e.amount),
        currency,
        reason: e.reason.map(|r| clean_text(r, MAX_REASON_LEN)),
        cdr_id: e.cdr_id.map(|u| u.to_string()),
        idempotency_key: e.key,
        created_at: to_micros(now),
    };
    let balance = StoredMoney(balance + e.amount);
    let written = match conn {
        DbConnection::Postgres(c) => insert_and_move_pg(c, &row, balance, totals),
        DbConnection::Sqlite(_) => insert_then_move(conn, &row, balance, totals),
    };
    let id = match written {
        // Another entry took the key meanwhile.
        Err(err) if is_unique_violation(&err) => {
            return Err(StoreError::Conflict(format!(
                "idempotency key {:?} was already used for a different entry",
                e.key
            )))
        }
        other => other?,
    };
    let EntryValues {
        reason, created_at, ..
    } = row;
    Ok(LedgerEntry {
        id,
        subscriber_id: e.subscriber_id,
        kind: e.kind,
        // As it reads back: money is stored normalised ("25.50" as 25.5).
        amount: e.amount.normalize(),
        currency: currency
            .parse()
            .map_err(|_| DbError::Corrupt(format!("subscriber {}: currency", e.subscriber_id)))?,
        reason,
        cdr_id: e.cdr_id,
        idempotency_key: e.key.to_string(),
        created_at: time_of(created_at)?,
    })
}

/// A ledger row about to be inserted.
#[derive(Insertable)]
#[diesel(table_name = le)]
struct EntryValues<'a> {
    subscriber_id: i64,
    kind: &'static str,
    amount: StoredMoney,
    currency: &'a str,
    reason: Option<String>,
    cdr_id: Option<String>,
    idempotency_key: &'a str,
    created_at: i64,
}

/// The entry, then the balance (and spend totals) of its subscriber, whose
/// row is locked and so there to update: two statements.
fn insert_then_move(
    conn: &mut DbConnection,
    row: &EntryValues<'_>,
    balance: StoredMoney,
    totals: Option<SpendTotals>,
) -> QueryResult<i64> {
    let id = keep_prepared(diesel::insert_into(le::table).values(row).returning(le::id))
        .get_result::<i64>(conn)?;
    let target = diesel::update(subs::table.find(row.subscriber_id));
    let balance = subs::balance.eq(balance);
    let _: i64 = match totals {
        None => keep_prepared(target.set(balance).returning(subs::id)).get_result(conn)?,
        Some(t) => keep_prepared(
            target
                .set((
                    balance,
                    subs::spend_day_from.eq(t.day.map(|d| d.0)),
                    subs::spend_day.eq(t.day.map(|d| StoredMoney(d.1))),
                    subs::spend_month_from.eq(t.month.map(|m| m.0)),
                    subs::spend_month.eq(t.month.map(|m| StoredMoney(m.1))),
                ))
                .returning(subs::id),
        )
        .get_result(conn)?,
    };
    Ok(id)
}

/// The entry and the balance (and spend totals) in one statement, a
/// data-modifying `WITH`: every statement is a round trip to the server,
/// and this one is on every charged call. PostgreSQL runs both parts
/// whether or not the outer query reads them, all or nothing; the join
/// yields the entry's id only when the subscriber's row was updated too.
fn insert_and_move_pg(
    c: &mut diesel::PgConnection,
    row: &EntryValues<'_>,
    balance: StoredMoney,
    totals: Option<SpendTotals>,
) -> QueryResult<i64> {
    use crate::db::money::Money as MoneySql;
    use diesel::sql_types::{BigInt, Nullable, Text};

    #[derive(QueryableByName)]
    struct Written {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    // The subscriber's columns set after the balance ($9) differ between
    // the two shapes; the rest is the same text.
    macro_rules! entry_and_move {
        ($more:literal) => {
            concat!(
                "WITH entry AS (INSERT INTO ledger_entries ",
                "(subscriber_id, kind, amount, currency, reason, cdr_id, idempotency_key, created_at) ",
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id), ",
                "moved AS (UPDATE subscribers SET balance = $9",
                $more,
                " WHERE id = $1 RETURNING id) SELECT entry.id FROM entry, moved"
            )
        };
    }
    let entry = |sql: &'static str| {
        diesel::sql_query(sql)
            .bind::<BigInt, _>(row.subscriber_id)
            .bind::<Text, _>(row.kind)
            .bind::<MoneySql, _>(row.amount)
            .bind::<Text, _>(row.currency)
            .bind::<Nullable<Text>, _>(row.reason.as_deref())
            .bind::<Nullable<Text>, _>(row.cdr_id.as_deref())
            .bind::<Text, _>(row.idempotency_key)
            .bind::<BigInt, _>(row.created_at)
            .bind::<MoneySql, _>(balance)
    };
    // Two shapes, each kept prepared by the connection.
    let written: Written = match totals {
        None => keep_prepared(entry(entry_and_move!(""))).get_result(c)?,
        Some(t) => keep_prepared(
            entry(entry_and_move!(
                ", spend_day_from = $10, spend_day = $11, \
                 spend_month_from = $12, spend_month = $13"
            ))
            .bind::<Nullable<BigInt>, _>(t.day.map(|d| d.0))
            .bind::<Nullable<MoneySql>, _>(t.day.map(|d| StoredMoney(d.1)))
            .bind::<Nullable<BigInt>, _>(t.month.map(|m| m.0))
            .bind::<Nullable<MoneySql>, _>(t.month.map(|m| StoredMoney(m.1))),
        )
        .get_result(c)?,
    };
    Ok(written.id)
}

/// The balance (the cached sum of the ledger).
pub fn balance(conn: &mut DbConnection, subscriber_id: i64) -> Result<Decimal, StoreError> {
    let b: Option<StoredMoney> = subs::table
        .find(subscriber_id)
        .select(subs::balance)
        .get_result(conn)
        .optional()?;
    b.map(|m| m.0).ok_or(StoreError::NotFound("subscriber"))
}

/// The sum of every ledger entry of the subscriber, computed from the
/// entries (exact decimals, summed here rather than by SQL, which would
/// turn SQLite's text into floats).
pub fn ledger_sum(conn: &mut DbConnection, subscriber_id: i64) -> Result<Decimal, StoreError> {
    let amounts: Vec<StoredMoney> = le::table
        .filter(le::subscriber_id.eq(subscriber_id))
        .select(le::amount)
        .load(conn)?;
    Ok(amounts.into_iter().map(|m| m.0).sum())
}

/// Call charges (as a positive total) in `[from, to)`.
pub fn spend_between(
    conn: &mut DbConnection,
    subscriber_id: i64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Decimal, StoreError> {
    let amounts: Vec<StoredMoney> = le::table
        .filter(le::subscriber_id.eq(subscriber_id))
        .filter(le::kind.eq(EntryKind::CallCharge.as_str()))
        .filter(le::created_at.ge(to_micros(from)))
        .filter(le::created_at.lt(to_micros(to)))
        .select(le::amount)
        .load(conn)?;
    // Charges are negative entries. normalize(): no charges read "0", not
    // the "-0" a negated zero prints.
    Ok((-amounts.into_iter().map(|m| m.0).sum::<Decimal>()).normalize())
}

/// The first instant of a local date in `tz` (midnight, or the first
/// minute that exists when a daylight-saving change skips midnight).
pub fn local_day_start(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_time(chrono::NaiveTime::MIN);
    (0..=24 * 4)
        .find_map(|q| {
            tz.from_local_datetime(&(midnight + Duration::minutes(15 * q)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
        // No zone skips a whole day at midnight; fall back to UTC midnight.
        .unwrap_or_else(|| midnight.and_utc())
}

/// `[start, end)` of the local day containing `now` in `tz`.
pub fn local_day(tz: Tz, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let date = now.with_timezone(&tz).date_naive();
    let next = date.succ_opt().unwrap_or(date);
    (local_day_start(tz, date), local_day_start(tz, next))
}

/// `[start, end)` of the local month containing `now` in `tz`.
pub fn local_month(tz: Tz, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let date = now.with_timezone(&tz).date_naive();
    let first = date.with_day(1).unwrap_or(date);
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .unwrap_or(first);
    (local_day_start(tz, first), local_day_start(tz, next))
}

/// Call charges of the local day of `now` (subscriber's zone).
pub fn spend_today(
    conn: &mut DbConnection,
    subscriber: &Subscriber,
    now: DateTime<Utc>,
) -> Result<Decimal, StoreError> {
    let (from, to) = local_day(subscriber.time_zone, now);
    spend_between(conn, subscriber.id, from, to)
}

/// Call charges of the local month of `now` (subscriber's zone).
pub fn spend_month(
    conn: &mut DbConnection,
    subscriber: &Subscriber,
    now: DateTime<Utc>,
) -> Result<Decimal, StoreError> {
    let (from, to) = local_month(subscriber.time_zone, now);
    spend_between(conn, subscriber.id, from, to)
}

/// Everything [`crate::authorize::authorize`] needs about the subscriber's
/// money and calls at `now`.
pub fn standing(
    conn: &mut DbConnection,
    subscriber: &Subscriber,
    now: DateTime<Utc>,
) -> Result<Standing, StoreError> {
    Ok(Standing {
        balance: balance(conn, subscriber.id)?,
        spend_today: spend_today(conn, subscriber, now)?,
        spend_month: spend_month(conn, subscriber, now)?,
        active_calls: super::cdrs::active_calls(conn, subscriber.id)?,
    })
}

/// Like [`standing`], for deciding on a call: the spend totals are summed
/// only when the subscriber has the matching cap (they decide nothing
/// otherwise, and summing a busy month's charges costs time on every call);
/// an uncapped total reads as zero. `money` is the one read under the
/// subscriber's lock (the row read with the lock, in the same statement),
/// and `active_calls` counted under it.
pub(crate) fn standing_for_call(
    conn: &mut DbConnection,
    subscriber: &Subscriber,
    money: Money,
    active_calls: u32,
    now: DateTime<Utc>,
) -> Result<Standing, StoreError> {
    let tz = subscriber.time_zone;
    Ok(Standing {
        balance: money.balance,
        spend_today: match subscriber.daily_spend_cap {
            None => Decimal::ZERO,
            Some(_) => match known_spend(money.spend.day, local_day(tz, now).0) {
                Some(v) => v,
                None => spend_today(conn, subscriber, now)?,
            },
        },
        spend_month: match subscriber.monthly_spend_cap {
            None => Decimal::ZERO,
            Some(_) => match known_spend(money.spend.month, local_month(tz, now).0) {
                Some(v) => v,
                None => spend_month(conn, subscriber, now)?,
            },
        },
        active_calls,
    })
}

/// The spend of the period starting at `from` as a running total tells it:
/// the total when it counts that period; zero when it counts an earlier one
/// (every charge moves the total to its own period, so none came since);
/// unknown otherwise (no total, or a clock set back).
fn known_spend(total: Option<(i64, Decimal)>, from: DateTime<Utc>) -> Option<Decimal> {
    let from = to_micros(from);
    match total {
        Some((f, v)) if f == from => Some(v),
        Some((f, _)) if f < from => Some(Decimal::ZERO),
        _ => None,
    }
}

/// The running spend totals once a call charge of `spent` (positive),
/// created at `at`, is recorded: added to the total of its day and month,
/// or, for a period the totals do not count yet, summed from the ledger
/// (which does not hold this charge yet) once, at the period's first charge.
pub(crate) fn totals_after_charge(
    conn: &mut DbConnection,
    subscriber: &Subscriber,
    totals: SpendTotals,
    spent: Decimal,
    at: DateTime<Utc>,
) -> Result<SpendTotals, StoreError> {
    let tz = subscriber.time_zone;
    let mut advance = |total: Option<(i64, Decimal)>,
                       (from, to): (DateTime<Utc>, DateTime<Utc>)| {
        let start = to_micros(from);
        Ok::<_, StoreError>(match total {
            Some((f, v)) if f == start => Some((f, v + spent)),
            // Dated before the period the total counts (a clock set
            // back): the charge is in the ledger, the total stands.
            Some((f, _)) if f > start => total,
            _ => Some((start, spend_between(conn, subscriber.id, from, to)? + spent)),
        })
    };
    let day = advance(totals.day, local_day(tz, at))?;
    let month = advance(totals.month, local_month(tz, at))?;
    Ok(SpendTotals { day, month })
}

/// Entries newest first: at most `limit`, with ids below `before` when given
/// (pass the last id of a page to get the next one).
pub fn entries(
    conn: &mut DbConnection,
    subscriber_id: i64,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<LedgerEntry>, StoreError> {
    let mut q = le::table
        .filter(le::subscriber_id.eq(subscriber_id))
        .into_boxed();
    if let Some(b) = before {
        q = q.filter(le::id.lt(b));
    }
    let rows: Vec<EntryRow> = q.order(le::id.desc()).limit(limit).load(conn)?;
    Ok(rows.into_iter().map(entry_of).collect::<Result<_, _>>()?)
}

/// The charge entry of a call, if it was charged.
pub fn charge_of(conn: &mut DbConnection, cdr_id: Uuid) -> Result<Option<LedgerEntry>, StoreError> {
    by_key(conn, &cdr_id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_periods() {
        let berlin = chrono_tz::Europe::Berlin;
        // 2026-03-29 is 23 hours long in Berlin.
        let (a, b) = local_day(berlin, "2026-03-29T12:00:00Z".parse().unwrap());
        assert_eq!(a.to_rfc3339(), "2026-03-28T23:00:00+00:00");
        assert_eq!(b.to_rfc3339(), "2026-03-29T22:00:00+00:00");
        // Late on the 31st UTC is already April in Berlin.
        let (a, b) = local_month(berlin, "2026-03-31T22:30:00Z".parse().unwrap());
        assert_eq!(a.to_rfc3339(), "2026-03-31T22:00:00+00:00");
        assert_eq!(b.to_rfc3339(), "2026-04-30T22:00:00+00:00");
        // A zone whose clocks skipped midnight: America/Santiago on
        // 2022-09-11 went from 00:00 to 01:00; the day starts at 01:00 local.
        let santiago = chrono_tz::America::Santiago;
        let start = local_day_start(santiago, NaiveDate::from_ymd_opt(2022, 9, 11).unwrap());
        assert_eq!(start.to_rfc3339(), "2022-09-11T04:00:00+00:00");
    }

    #[test]
    fn entry_validation() {
        let e = |kind, amount: i64, reason: Option<&str>| NewEntry {
            kind,
            amount: Decimal::from(amount),
            reason: reason.map(String::from),
            idempotency_key: Some("k-1".into()),
        };
        assert!(e(EntryKind::Payment, 10, None).validate().is_ok());
        assert!(e(EntryKind::Payment, -10, None).validate().is_err());
        assert!(e(EntryKind::Credit, 0, None).validate().is_err());
        assert!(e(EntryKind::Adjustment, -3, None).validate().is_err());
        assert!(e(EntryKind::Adjustment, -3, Some("refund"))
            .validate()
            .is_ok());
        assert!(e(EntryKind::Adjustment, -3, Some("  ")).validate().is_err());
        assert!(e(EntryKind::CallCharge, -3, None).validate().is_err());
        let mut k = e(EntryKind::Payment, 1, None);
        k.idempotency_key = Some("has space".into());
        assert!(k.validate().is_err());
    }
}
