//! Every query the forwarder runs, written once for SQLite and PostgreSQL.
//!
//! Functions take a `&mut DbConnection` (from [`crate::db::Database::conn`])
//! and block: call them from `spawn_blocking` in async code. Writes that must
//! be all-or-nothing run in one transaction *here*, so a caller cannot
//! forget it.
//!
//! - [`admission`]: an inbound call decided and its CDR opened in one step
//!   (five statements).
//! - [`subscribers`]: add, read, change, suspend/resume/close.
//! - [`numbers`]: numbers of a subscriber; who owns a called number.
//! - [`rules`]: a subscriber's forwarding rules (read, replace).
//! - [`ledger`]: the account ledger, balance, spend totals, [`ledger::standing`].
//! - [`cdrs`]: call detail records: open at call start, progress, close and
//!   charge in one transaction (on PostgreSQL one statement), open ones for
//!   crash recovery.
//! - [`statements`]: billing statements (period contents, creation exactly
//!   once, send state) and held periods.
//! - [`credentials`]: subscribers' bearer tokens (hashed) and operator
//!   certificates on record.
//!
//! Every write to a subscriber's money or calls first locks the subscriber's
//! row as the transaction's first statement: in PostgreSQL a `SELECT … FOR
//! UPDATE`, which serialises writers per subscriber (a row lock, no new row
//! version, and a statement the connection keeps prepared: diesel prepares
//! no UPDATE); in SQLite a no-op UPDATE, which takes the write lock before
//! anything is read, so no transaction works from a stale snapshot.
//!
//! Writes that need what they wrote (a generated id, the row as stored)
//! read it back in the same statement with `RETURNING` (SQLite ≥ 3.35),
//! and a lock that needs the locked row reads it the same way: on
//! PostgreSQL every statement is a round trip to the server.
//!
//! Statements of a fixed shape that diesel would prepare again on every
//! use (`UPDATE`s, `INSERT`s, SQLite's `IN` lists) are marked
//! to be kept prepared (`prepared::keep_prepared`) on the call path.
//!
//! Lookups of one row by a unique key use `get_result`, not `first`:
//! `first` adds `LIMIT ?`, and SQLite re-prepares a statement whose LIMIT
//! parameter is bound again, which on the call path cost more than the
//! queries themselves.

pub mod admission;
pub mod cdrs;
pub mod credentials;
pub mod ledger;
pub mod numbers;
mod prepared;
pub mod rules;
pub mod statements;
pub mod subscribers;

use crate::db::{from_micros, DbConnection, DbError};
use chrono::{DateTime, Utc};
use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// Outcomes a caller must tell apart from storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// What was asked for does not exist ("subscriber", "call record", …).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request contradicts what is stored (a number owned by someone
    /// else, an idempotency key reused with other content, …).
    #[error("{0}")]
    Conflict(String),
    /// The request itself is wrong (checked before anything is written).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<DieselError> for StoreError {
    fn from(e: DieselError) -> Self {
        StoreError::Db(DbError::Query(e))
    }
}

pub(crate) fn time_of(us: i64) -> Result<DateTime<Utc>, DbError> {
    from_micros(us).ok_or_else(|| DbError::Corrupt(format!("timestamp {us}")))
}

pub(crate) fn is_unique_violation(e: &DieselError) -> bool {
    matches!(
        e,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

/// Locks one row of a table with an `updated_at` column for the rest of the
/// transaction and reads it, in one statement (see the module docs): `SELECT
/// … FOR UPDATE` on PostgreSQL, a no-op `UPDATE … RETURNING` on SQLite.
/// Must be the transaction's first statement. `lock_row!(conn, table_module,
/// key)` locks the row with that key, `lock_row!(conn, table_module, where
/// rows)` the one `rows` (the table filtered) selects; either is a
/// `QueryResult<Option<Row>>`, the row type from the context.
macro_rules! lock_row {
    ($conn:expr, $table:ident, where $rows:expr) => {
        match $conn {
            DbConnection::Postgres(c) => $rows.for_update().get_result(c),
            DbConnection::Sqlite(c) => $crate::store::prepared::keep_prepared(
                diesel::update($rows)
                    .set($table::updated_at.eq($table::updated_at))
                    .returning($table::all_columns),
            )
            .get_result(c),
        }
        .optional()
    };
    ($conn:expr, $table:ident, $key:expr) => {
        $crate::store::lock_row!($conn, $table, where $table::table.find($key))
    };
}
pub(crate) use lock_row;

/// Takes the subscriber's row lock for the rest of the transaction (see the
/// module docs). Must be the transaction's first statement.
pub(crate) fn lock_subscriber(conn: &mut DbConnection, id: i64) -> Result<(), StoreError> {
    subscribers::lock_and_get(conn, id).map(drop)
}

/// Text from the outside world made safe to store: PostgreSQL refuses NUL
/// characters in text, so they become U+FFFD; and at most `max` characters
/// are kept.
pub fn clean_text(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c == '\0' { '\u{FFFD}' } else { c })
        .collect()
}
