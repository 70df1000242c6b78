//! Subscribers.

use super::{lock_subscriber, time_of, StoreError};
use crate::db::money::StoredMoney;
use crate::db::schema::{numbers, subscribers as subs};
use crate::db::{to_micros, DbConnection, DbError};
use crate::subscriber::{
    parse_time_zone, Account, NewSubscriber, Subscriber, SubscriberPatch, SubscriberStatus,
};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use provider_sdk::number::E164;
use rust_decimal::Decimal;

#[derive(Queryable)]
pub(crate) struct SubscriberRow {
    id: i64,
    name: String,
    status: String,
    email: String,
    time_zone: String,
    plan: String,
    currency: String,
    account_kind: String,
    credit_limit: Option<StoredMoney>,
    daily_spend_cap: Option<StoredMoney>,
    monthly_spend_cap: Option<StoredMoney>,
    max_concurrent_calls: Option<i32>,
    balance: StoredMoney,
    created_at: i64,
    updated_at: i64,
    spend_day_from: Option<i64>,
    spend_day: Option<StoredMoney>,
    spend_month_from: Option<i64>,
    spend_month: Option<StoredMoney>,
}

impl TryFrom<SubscriberRow> for Subscriber {
    type Error = DbError;
    fn try_from(r: SubscriberRow) -> Result<Self, DbError> {
        let corrupt = |what: &str| DbError::Corrupt(format!("subscriber {}: {what}", r.id));
        let account = match (r.account_kind.as_str(), r.credit_limit) {
            ("prepaid", None) => Account::Prepaid,
            ("postpaid", Some(l)) => Account::Postpaid { credit_limit: l.0 },
            _ => return Err(corrupt("account kind and credit limit disagree")),
        };
        Ok(Subscriber {
            id: r.id,
            status: SubscriberStatus::parse(&r.status).ok_or_else(|| corrupt("status"))?,
            time_zone: parse_time_zone(&r.time_zone).map_err(|_| corrupt("time zone"))?,
            currency: r.currency.parse().map_err(|_| corrupt("currency"))?,
            account,
            daily_spend_cap: r.daily_spend_cap.map(|m| m.0),
            monthly_spend_cap: r.monthly_spend_cap.map(|m| m.0),
            max_concurrent_calls: r
                .max_concurrent_calls
                .map(u32::try_from)
                .transpose()
                .map_err(|_| corrupt("max_concurrent_calls"))?,
            created_at: time_of(r.created_at)?,
            updated_at: time_of(r.updated_at)?,
            name: r.name,
            email: r.email,
            plan: r.plan,
        })
    }
}

fn calls_cap(v: Option<u32>) -> Result<Option<i32>, StoreError> {
    v.map(|n| {
        i32::try_from(n).map_err(|_| StoreError::Invalid("max_concurrent_calls: too large".into()))
    })
    .transpose()
}

/// Adds a subscriber (status active, balance zero).
pub fn add(
    conn: &mut DbConnection,
    new: &NewSubscriber,
    now: DateTime<Utc>,
) -> Result<Subscriber, StoreError> {
    new.validate()
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    let cap = calls_cap(new.max_concurrent_calls)?;
    let t = to_micros(now);
    let row: SubscriberRow = diesel::insert_into(subs::table)
        .values((
            subs::name.eq(&new.name),
            subs::status.eq(SubscriberStatus::Active.as_str()),
            subs::email.eq(&new.email),
            subs::time_zone.eq(new.time_zone.name()),
            subs::plan.eq(&new.plan),
            subs::currency.eq(new.currency.as_str()),
            subs::account_kind.eq(new.account.kind()),
            subs::credit_limit.eq(new.account.credit_limit().map(StoredMoney)),
            subs::daily_spend_cap.eq(new.daily_spend_cap.map(StoredMoney)),
            subs::monthly_spend_cap.eq(new.monthly_spend_cap.map(StoredMoney)),
            subs::max_concurrent_calls.eq(cap),
            subs::balance.eq(StoredMoney(Decimal::ZERO)),
            subs::created_at.eq(t),
            subs::updated_at.eq(t),
        ))
        .get_result(conn)?;
    Ok(Subscriber::try_from(row)?)
}

/// One subscriber.
pub fn get(conn: &mut DbConnection, id: i64) -> Result<Subscriber, StoreError> {
    let row: Option<SubscriberRow> = subs::table.find(id).get_result(conn).optional()?;
    match row {
        Some(r) => Ok(Subscriber::try_from(r)?),
        None => Err(StoreError::NotFound("subscriber")),
    }
}

/// Takes the subscriber's lock (see [`super`]) and reads the row in the
/// same statement: the subscriber and its cached balance. Must be the
/// transaction's first statement.
pub(crate) fn lock_and_get(
    conn: &mut DbConnection,
    id: i64,
) -> Result<(Subscriber, Decimal), StoreError> {
    let (subscriber, money) = lock_and_get_money(conn, id)?;
    Ok((subscriber, money.balance))
}

/// [`lock_and_get`] with the running spend totals, for the call path.
pub(crate) fn lock_and_get_money(
    conn: &mut DbConnection,
    id: i64,
) -> Result<(Subscriber, Money), StoreError> {
    let row: Option<SubscriberRow> = super::lock_row!(conn, subs, id)?;
    match row {
        Some(row) => with_money(row),
        None => Err(StoreError::NotFound("subscriber")),
    }
}

/// Locks the subscriber who owns `number` and reads its row, in one
/// statement (see [`super`]): the lock of [`lock_and_get_money`] without a
/// lookup of the number first. `None`: the number belongs to no one. Must
/// be the transaction's first statement.
pub(crate) fn lock_owner_of(
    conn: &mut DbConnection,
    number: &E164,
) -> Result<Option<(Subscriber, Money)>, StoreError> {
    let owner = numbers::table
        .filter(numbers::number.eq(number.to_string()))
        .select(numbers::subscriber_id);
    let row: Option<SubscriberRow> =
        super::lock_row!(conn, subs, where subs::table.filter(subs::id.eq_any(owner)))?;
    row.map(with_money).transpose()
}

/// The row as the subscriber and its money.
pub(crate) fn with_money(row: SubscriberRow) -> Result<(Subscriber, Money), StoreError> {
    let money = Money {
        balance: row.balance.0,
        spend: SpendTotals {
            day: row.spend_day_from.zip(row.spend_day.map(|m| m.0)),
            month: row.spend_month_from.zip(row.spend_month.map(|m| m.0)),
        },
    };
    Ok((Subscriber::try_from(row)?, money))
}

/// What a locked subscriber row says about its money.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Money {
    /// The cached sum of the ledger.
    pub balance: Decimal,
    pub spend: SpendTotals,
}

/// The running totals of call charges: for the local day and the local
/// month of the latest charge, each as (start of the period in UTC
/// microseconds, total spent). `None`: not known, sum the ledger.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct SpendTotals {
    pub day: Option<(i64, Decimal)>,
    pub month: Option<(i64, Decimal)>,
}

/// Every subscriber, by id.
pub fn list(conn: &mut DbConnection) -> Result<Vec<Subscriber>, StoreError> {
    let rows: Vec<SubscriberRow> = subs::table.order(subs::id).load(conn)?;
    Ok(rows
        .into_iter()
        .map(Subscriber::try_from)
        .collect::<Result<_, _>>()?)
}

/// Changes the fields a patch names; the rest stay.
pub fn update(
    conn: &mut DbConnection,
    id: i64,
    patch: &SubscriberPatch,
    now: DateTime<Utc>,
) -> Result<Subscriber, StoreError> {
    patch
        .validate()
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    conn.transaction(|conn| {
        lock_subscriber(conn, id)?;
        let target = subs::table.find(id);
        if let Some(v) = &patch.name {
            diesel::update(target).set(subs::name.eq(v)).execute(conn)?;
        }
        if let Some(v) = &patch.email {
            diesel::update(target)
                .set(subs::email.eq(v))
                .execute(conn)?;
        }
        if let Some(v) = &patch.time_zone {
            // The running spend totals are per local day and month: in
            // another zone they are unknown until the next charge.
            diesel::update(target)
                .set((
                    subs::time_zone.eq(v.name()),
                    subs::spend_day_from.eq(None::<i64>),
                    subs::spend_day.eq(None::<StoredMoney>),
                    subs::spend_month_from.eq(None::<i64>),
                    subs::spend_month.eq(None::<StoredMoney>),
                ))
                .execute(conn)?;
        }
        if let Some(v) = &patch.plan {
            diesel::update(target).set(subs::plan.eq(v)).execute(conn)?;
        }
        if let Some(a) = &patch.account {
            diesel::update(target)
                .set((
                    subs::account_kind.eq(a.kind()),
                    subs::credit_limit.eq(a.credit_limit().map(StoredMoney)),
                ))
                .execute(conn)?;
        }
        if let Some(v) = patch.daily_spend_cap {
            diesel::update(target)
                .set(subs::daily_spend_cap.eq(v.map(StoredMoney)))
                .execute(conn)?;
        }
        if let Some(v) = patch.monthly_spend_cap {
            diesel::update(target)
                .set(subs::monthly_spend_cap.eq(v.map(StoredMoney)))
                .execute(conn)?;
        }
        if let Some(v) = patch.max_concurrent_calls {
            diesel::update(target)
                .set(subs::max_concurrent_calls.eq(calls_cap(v)?))
                .execute(conn)?;
        }
        diesel::update(target)
            .set(subs::updated_at.eq(to_micros(now)))
            .execute(conn)?;
        get(conn, id)
    })
}

/// Suspends, resumes (to active) or closes. Closed is final: a closed
/// subscriber cannot be resumed or suspended. Setting the current status
/// again is a no-op.
pub fn set_status(
    conn: &mut DbConnection,
    id: i64,
    status: SubscriberStatus,
    now: DateTime<Utc>,
) -> Result<Subscriber, StoreError> {
    conn.transaction(|conn| {
        lock_subscriber(conn, id)?;
        let current = get(conn, id)?;
        if current.status == status {
            return Ok(current);
        }
        if current.status == SubscriberStatus::Closed {
            return Err(StoreError::Conflict(format!(
                "subscriber {id} is closed; a closed account cannot be {}",
                match status {
                    SubscriberStatus::Active => "resumed",
                    _ => "changed",
                }
            )));
        }
        diesel::update(subs::table.find(id))
            .set((
                subs::status.eq(status.as_str()),
                subs::updated_at.eq(to_micros(now)),
            ))
            .execute(conn)?;
        get(conn, id)
    })
}
