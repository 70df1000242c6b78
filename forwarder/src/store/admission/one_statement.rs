//! PostgreSQL: after the subscriber's lock, admission's reads and its
//! write in one statement.
//!
//! Every statement is a round trip to the server. Once the subscriber's
//! row is locked (the transaction's first statement), one data-modifying
//! `WITH` counts the subscriber's calls in progress, checks that it still
//! owns the called number, writes the open CDR when both allow it, and
//! reads the forwarding rules:
//!
//! - `p`: the parameters, each bound once;
//! - `c`: the count and the owner, in this statement's snapshot, which is
//!   taken after the lock was granted: it sees every call that a
//!   concurrent admission of the same subscriber wrote and committed while
//!   holding the lock (a statement that took the lock itself would count
//!   from a snapshot older than the lock);
//! - `opened`: the CDR, written only when the number is held and the count
//!   is under the cap;
//! - one row per rule (or one without a rule), each with the count, the
//!   owner and the record.
//!
//! The caller chooses the rule afterwards: when none applies, its
//! transaction rolls back, and the record with it.

use super::Opened;
use crate::db::schema::cdrs;
use crate::db::{to_micros, DbError};
use crate::store::cdrs::{caller_text, Cdr, CdrRow, CdrStatus, NewCdr};
use crate::store::prepared::keep_prepared;
use crate::store::{is_unique_violation, StoreError};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, Nullable, Text};

/// See the module docs. `cap`: the subscriber's concurrent-call cap.
pub(super) fn open_under_cap(
    c: &mut PgConnection,
    new: &NewCdr,
    cap: Option<u32>,
) -> Result<Opened, StoreError> {
    let statement = OpenUnderCap {
        subscriber_id: new.subscriber_id,
        number: new.called_number.to_string(),
        cap: cap.map(i64::from),
        id: new.id.to_string(),
        caller_number: caller_text(&new.caller_number),
        caller_name: caller_text(&new.caller_name),
        at: to_micros(new.received_at),
    };
    let rows = match keep_prepared(statement).load::<(i64, bool, Option<CdrRow>, Option<String>)>(c)
    {
        Err(e) if is_unique_violation(&e) => {
            return Err(StoreError::Conflict(format!(
                "call record {} already exists",
                new.id
            )))
        }
        other => other?,
    };
    let Some((active, held, _, _)) = rows.first() else {
        // `c` is one row and the joins keep it.
        return Err(
            DbError::Corrupt("admission: the count of calls returned no row".into()).into(),
        );
    };
    let (active, held) = (u32::try_from(*active).unwrap_or(u32::MAX), *held);
    let mut cdr = None;
    let mut rule_bodies = Vec::with_capacity(rows.len());
    for (_, _, row, body) in rows {
        if cdr.is_none() {
            cdr = row.map(Cdr::try_from).transpose()?;
        }
        rule_bodies.extend(body);
    }
    Ok(Opened {
        held,
        active_calls: active,
        cdr,
        rule_bodies,
    })
}

struct OpenUnderCap {
    subscriber_id: i64,
    number: String,
    cap: Option<i64>,
    id: String,
    caller_number: Option<String>,
    caller_name: Option<String>,
    at: i64,
}

const COUNT_AND_OWNER: &str = ", c AS (SELECT p.sub, \
    (SELECT count(*) FROM cdrs WHERE cdrs.subscriber_id = p.sub AND cdrs.ended_at IS NULL) AS active, \
    EXISTS (SELECT 1 FROM numbers WHERE numbers.number = p.number AND numbers.subscriber_id = p.sub) AS held \
    FROM p), \
    opened AS (INSERT INTO cdrs \
    (id, subscriber_id, called_number, caller_number, caller_name, status, received_at, updated_at) \
    SELECT p.id, p.sub, p.number, p.caller_number, p.caller_name, p.status, p.at, p.at FROM p, c \
    WHERE c.held AND (p.cap IS NULL OR c.active < p.cap) RETURNING ";

const ROWS: &str = ") SELECT c.active, c.held, opened.*, r.body FROM c LEFT JOIN opened ON true \
    LEFT JOIN forwarding_rules AS r ON r.subscriber_id = c.sub ORDER BY r.position";

impl QueryFragment<Pg> for OpenUnderCap {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // Typed in the text too, so the statement also prepares as text.
        out.push_sql("WITH p AS (SELECT ");
        out.push_bind_param::<BigInt, _>(&self.subscriber_id)?;
        out.push_sql("::bigint AS sub, ");
        out.push_bind_param::<Text, _>(&self.number)?;
        out.push_sql("::text AS number, ");
        out.push_bind_param::<Nullable<BigInt>, _>(&self.cap)?;
        out.push_sql("::bigint AS cap, ");
        out.push_bind_param::<Text, _>(&self.id)?;
        out.push_sql("::text AS id, ");
        out.push_bind_param::<Nullable<Text>, _>(&self.caller_number)?;
        out.push_sql("::text AS caller_number, ");
        out.push_bind_param::<Nullable<Text>, _>(&self.caller_name)?;
        out.push_sql("::text AS caller_name, ");
        out.push_bind_param::<Text, _>(CdrStatus::Open.as_str())?;
        out.push_sql("::text AS status, ");
        out.push_bind_param::<BigInt, _>(&self.at)?;
        out.push_sql("::bigint AS at)");
        out.push_sql(COUNT_AND_OWNER);
        // The record's columns in the order the row type reads them.
        cdrs::all_columns.walk_ast(out.reborrow())?;
        out.push_sql(ROWS);
        Ok(())
    }
}

/// No static id: the connection keys it by its SQL text.
impl QueryId for OpenUnderCap {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for OpenUnderCap {
    type SqlType = (BigInt, Bool, Nullable<cdrs::SqlType>, Nullable<Text>);
}
