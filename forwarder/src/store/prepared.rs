//! Statements the connection keeps prepared although diesel would not.
//!
//! diesel caches a prepared statement only when its shape cannot grow
//! without bound: every `UPDATE`, every `INSERT` with a column that may be
//! `DEFAULT` (PostgreSQL), and every `IN (…)` list (SQLite) is prepared
//! again on each use — parsed and planned by the server on PostgreSQL,
//! compiled by SQLite — and on the call path they are most of its
//! statements. [`keep_prepared`] marks one of those as safe to cache; the
//! connection then keys it by its SQL text, so each distinct shape is
//! prepared once per connection.
//!
//! The mark works for statements that return rows (`get_result`, `load`):
//! those reach the cache by value. `execute` hands the cache a reference,
//! and diesel's impl for references asks the statement inside again, so a
//! marked `UPDATE` returns a column (`RETURNING id`) and is read with
//! `get_result`. [`keep_prepared`] takes only statements that return rows.
//!
//! Only for statements of a bounded number of shapes (fixed columns, an
//! `IN` list of constant length, a changeset whose optional fields make a
//! handful of combinations): each shape stays in the connection's cache
//! for the connection's life.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::{QueryResult, RunQueryDsl};

/// A statement of bounded shape, cached by the connection by its SQL.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeepPrepared<Q>(Q);

/// Marks `query` as one the connection keeps prepared (see the module docs).
/// Read it with `get_result` or `load`, never `execute`.
pub(crate) fn keep_prepared<Q: Query>(query: Q) -> KeepPrepared<Q> {
    KeepPrepared(query)
}

impl<Q, DB> QueryFragment<DB> for KeepPrepared<Q>
where
    DB: Backend,
    Q: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }

    fn is_noop(&self, backend: &DB) -> QueryResult<bool> {
        self.0.is_noop(backend)
    }
}

/// No static id: the cache keys the statement by its SQL text (and bind
/// types), so different shapes never share a prepared statement.
impl<Q> QueryId for KeepPrepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for KeepPrepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, Conn> RunQueryDsl<Conn> for KeepPrepared<Q> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::DbConnection;
    use diesel::connection::{Instrumentation, InstrumentationEvent};
    use diesel::prelude::*;
    use diesel::sqlite::SqliteConnection;
    use std::sync::{Arc, Mutex};

    diesel::table! {
        t (id) {
            id -> BigInt,
            v -> BigInt,
        }
    }

    /// Counts the statements SQLite had to prepare (cache misses).
    #[derive(Default, Clone)]
    struct Prepares(Arc<Mutex<Vec<String>>>);

    impl Instrumentation for Prepares {
        fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
            if let InstrumentationEvent::CacheQuery { sql, .. } = event {
                self.0.lock().unwrap().push(sql.to_owned());
            }
        }
    }

    fn db() -> (DbConnection, Prepares) {
        let mut c = DbConnection::Sqlite(SqliteConnection::establish(":memory:").unwrap());
        diesel::connection::SimpleConnection::batch_execute(
            &mut c,
            "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT NOT NULL); \
             INSERT INTO t VALUES (1, 0), (2, 0);",
        )
        .unwrap();
        let p = Prepares::default();
        c.set_instrumentation(p.clone());
        (c, p)
    }

    #[test]
    fn an_update_is_prepared_once_and_still_runs_with_new_binds() {
        let (mut c, prepares) = db();
        for i in 1..=5i64 {
            let id: i64 = keep_prepared(
                diesel::update(t::table.find(1))
                    .set(t::v.eq(i))
                    .returning(t::id),
            )
            .get_result(&mut c)
            .unwrap();
            assert_eq!(id, 1);
        }
        let v: i64 = t::table.find(1).select(t::v).get_result(&mut c).unwrap();
        assert_eq!(v, 5, "every execution bound its own value");
        let updates = prepares.0.lock().unwrap().clone();
        assert_eq!(
            updates.len(),
            2,
            "one UPDATE and one SELECT cached: {updates:?}"
        );
        // Without the marker diesel prepares the UPDATE afresh each time.
        let (mut c, prepares) = db();
        for i in 1..=5i64 {
            diesel::update(t::table.find(1))
                .set(t::v.eq(i))
                .execute(&mut c)
                .unwrap();
        }
        assert!(prepares.0.lock().unwrap().is_empty());
    }

    #[test]
    fn shapes_do_not_share_a_statement() {
        let (mut c, prepares) = db();
        let rows: Vec<i64> = keep_prepared(
            diesel::update(t::table.filter(t::id.eq_any([1i64, 2])))
                .set(t::v.eq(7))
                .returning(t::id),
        )
        .load(&mut c)
        .unwrap();
        assert_eq!(rows.len(), 2);
        let one: Vec<i64> = keep_prepared(
            diesel::update(t::table.filter(t::id.eq_any([2i64])))
                .set(t::v.eq(8))
                .returning(t::id),
        )
        .load(&mut c)
        .unwrap();
        assert_eq!(one, vec![2]);
        assert_eq!(prepares.0.lock().unwrap().len(), 2);
        let v: Vec<i64> = t::table.order(t::id).select(t::v).load(&mut c).unwrap();
        assert_eq!(v, vec![7, 8]);
    }
}
