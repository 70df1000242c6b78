//! Numbers (E.164, stored with the leading `+`), each belonging to one
//! subscriber.

use super::{is_unique_violation, lock_subscriber, time_of, StoreError};
use crate::db::schema::{numbers, subscribers as subs};
use crate::db::{to_micros, DbConnection, DbError};
use crate::subscriber::{Subscriber, SubscriberStatus};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use provider_sdk::number::E164;
use serde::Serialize;

/// A number and when it was assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NumberEntry {
    pub number: E164,
    pub subscriber_id: i64,
    pub created_at: DateTime<Utc>,
}

fn entry(row: (String, i64, i64)) -> Result<NumberEntry, DbError> {
    let (n, subscriber_id, created_at) = row;
    Ok(NumberEntry {
        number: E164::parse(&n).map_err(|e| DbError::Corrupt(format!("number {n:?}: {e}")))?,
        subscriber_id,
        created_at: time_of(created_at)?,
    })
}

/// Assigns `number` to the subscriber. Assigning it again to the same
/// subscriber is a no-op; a number of another subscriber is a conflict, and
/// a closed subscriber gets no new numbers.
pub fn add(
    conn: &mut DbConnection,
    subscriber_id: i64,
    number: &E164,
    now: DateTime<Utc>,
) -> Result<NumberEntry, StoreError> {
    let text = number.to_string();
    conn.transaction(|conn| {
        lock_subscriber(conn, subscriber_id)?;
        let status: String = subs::table
            .find(subscriber_id)
            .select(subs::status)
            .get_result(conn)?;
        if let Some(existing) = get(conn, number)? {
            if existing.subscriber_id == subscriber_id {
                return Ok(existing);
            }
            return Err(StoreError::Conflict(format!(
                "{number} already belongs to subscriber {}",
                existing.subscriber_id
            )));
        }
        if status == SubscriberStatus::Closed.as_str() {
            return Err(StoreError::Conflict(format!(
                "subscriber {subscriber_id} is closed"
            )));
        }
        let inserted = diesel::insert_into(numbers::table)
            .values((
                numbers::number.eq(&text),
                numbers::subscriber_id.eq(subscriber_id),
                numbers::created_at.eq(to_micros(now)),
            ))
            .execute(conn);
        match inserted {
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "{number} was just assigned to another subscriber"
            ))),
            Err(e) => Err(e.into()),
            Ok(_) => get(conn, number)?.ok_or(StoreError::NotFound("number")),
        }
    })
}

/// Unassigns a number; returns what it was.
pub fn remove(conn: &mut DbConnection, number: &E164) -> Result<NumberEntry, StoreError> {
    let key = number.to_string();
    conn.transaction(|conn| {
        // Write first: the lock comes before the read (see `super`).
        diesel::update(numbers::table.find(&key))
            .set(numbers::number.eq(numbers::number))
            .execute(conn)?;
        let existing = get(conn, number)?.ok_or(StoreError::NotFound("number"))?;
        diesel::delete(numbers::table.find(&key)).execute(conn)?;
        Ok(existing)
    })
}

/// Who a number is assigned to, if anyone.
pub fn get(conn: &mut DbConnection, number: &E164) -> Result<Option<NumberEntry>, StoreError> {
    let row: Option<(String, i64, i64)> = numbers::table
        .find(number.to_string())
        .get_result(conn)
        .optional()?;
    Ok(row.map(entry).transpose()?)
}

/// A subscriber's numbers, in number order.
pub fn of_subscriber(
    conn: &mut DbConnection,
    subscriber_id: i64,
) -> Result<Vec<NumberEntry>, StoreError> {
    let rows: Vec<(String, i64, i64)> = numbers::table
        .filter(numbers::subscriber_id.eq(subscriber_id))
        .order(numbers::number)
        .load(conn)?;
    Ok(rows.into_iter().map(entry).collect::<Result<_, _>>()?)
}

/// The subscriber a called number belongs to (`None`: not in service).
/// This is the call path's first lookup.
pub fn subscriber_by_number(
    conn: &mut DbConnection,
    number: &E164,
) -> Result<Option<Subscriber>, StoreError> {
    let row: Option<super::subscribers::SubscriberRow> = numbers::table
        .inner_join(subs::table)
        .filter(numbers::number.eq(number.to_string()))
        .select(subs::all_columns)
        .get_result(conn)
        .optional()?;
    Ok(row.map(Subscriber::try_from).transpose()?)
}
