//! A subscriber's forwarding rules, stored in order, each as checked JSON.

use super::{lock_subscriber, StoreError};
use crate::db::schema::forwarding_rules as fr;
use crate::db::{to_micros, DbConnection, DbError};
use crate::rules::{validate, Rule};
use chrono::{DateTime, Utc};
use diesel::prelude::*;

/// The subscriber's rules in order (empty when none are set).
pub fn get(conn: &mut DbConnection, subscriber_id: i64) -> Result<Vec<Rule>, StoreError> {
    // Tells "no rules" from "no such subscriber".
    super::subscribers::get(conn, subscriber_id)?;
    of_existing(conn, subscriber_id)
}

/// [`get`] for a subscriber the caller knows exists (it holds its lock).
pub(crate) fn of_existing(
    conn: &mut DbConnection,
    subscriber_id: i64,
) -> Result<Vec<Rule>, StoreError> {
    let bodies: Vec<String> = fr::table
        .filter(fr::subscriber_id.eq(subscriber_id))
        .order(fr::position)
        .select(fr::body)
        .load(conn)?;
    parse(subscriber_id, &bodies)
}

/// Rules as stored (JSON bodies, in order) read back.
pub(crate) fn parse(subscriber_id: i64, bodies: &[String]) -> Result<Vec<Rule>, StoreError> {
    bodies
        .iter()
        .map(|b| {
            serde_json::from_str(b).map_err(|e| {
                StoreError::Db(DbError::Corrupt(format!(
                    "rule of subscriber {subscriber_id}: {e}"
                )))
            })
        })
        .collect()
}

/// Replaces all of the subscriber's rules at once (checked first; on any
/// error nothing changes).
pub fn replace(
    conn: &mut DbConnection,
    subscriber_id: i64,
    rules: &[Rule],
    now: DateTime<Utc>,
) -> Result<Vec<Rule>, StoreError> {
    validate(rules).map_err(|e| StoreError::Invalid(e.to_string()))?;
    let bodies = rules
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StoreError::Invalid(format!("rule: {e}")))?;
    conn.transaction(|conn| {
        lock_subscriber(conn, subscriber_id)?;
        diesel::delete(fr::table.filter(fr::subscriber_id.eq(subscriber_id))).execute(conn)?;
        for (i, body) in bodies.iter().enumerate() {
            let position = i32::try_from(i).unwrap_or(i32::MAX);
            diesel::insert_into(fr::table)
                .values((
                    fr::subscriber_id.eq(subscriber_id),
                    fr::position.eq(position),
                    fr::body.eq(body),
                    fr::created_at.eq(to_micros(now)),
                ))
                .execute(conn)?;
        }
        get(conn, subscriber_id)
    })
}
