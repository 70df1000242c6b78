//! PostgreSQL: a call's close, and its charge, in one statement.
//!
//! Every statement is a round trip to the server, and on a busy forwarder
//! the round trips cost the database more than the work in them. The
//! locking close ([`super::close_and_charge`]) is five: BEGIN, the record
//! and its subscriber locked and read, the close, the charge, COMMIT. When
//! the call closes as it should (the record still in progress, the
//! subscriber still in the zone the call was rated in and paying in the
//! rating's currency), one data-modifying `WITH`, its own transaction, does
//! all of it:
//!
//! - `closed`: the record's UPDATE, guarded by what the locking close
//!   checks (in progress, not ended before it was received, a completed
//!   call answered), returning the record as closed;
//! - for a charge, `moved`: the subscriber's balance and running spend
//!   totals, under the row's lock, matched on the zone and currency;
//! - `entry`: the ledger's call charge, whose subscriber is the one `moved`
//!   returned: when the subscriber row did not match, that column is NULL
//!   and the whole statement fails, so nothing is written.
//!
//! PostgreSQL runs every part whether or not the outer query reads it, all
//! or nothing. No row back, or an error, and the locking close runs
//! instead: it says precisely what is wrong (or answers a retried close
//! with what is stored). The unique key of the charge still refuses a
//! second one.
//!
//! The spend totals advance as [`ledger::totals_after_charge`] advances
//! them, in SQL: added to when they count the charge's period, kept when
//! they count a later one, otherwise summed from the ledger for the period
//! plus this charge. The sum reads the statement's snapshot, taken before
//! the subscriber's row was locked; a charge committed in between has moved
//! the totals into this period already, and the locked row (which
//! PostgreSQL reads again when the lock is granted) takes the first branch.

use super::{open_status, Cdr, CdrClose, CdrRow, CdrStatus, ClosedCall, FinalSet, ProgressSet};
use crate::db::money::{Money, StoredMoney};
use crate::db::schema::cdrs;
use crate::db::{to_micros, DbError};
use crate::store::ledger::{self, EntryKind, LedgerEntry};
use crate::store::prepared::keep_prepared;
use crate::store::{time_of, StoreError};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::expression::IntoSql;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use provider_sdk::money::Currency;
use rust_decimal::Decimal;
use uuid::Uuid;

diesel::define_sql_function! {
    /// The larger of the two, a NULL ignored (PostgreSQL's `GREATEST`).
    fn greatest(a: Nullable<BigInt>, b: BigInt) -> Nullable<BigInt>;
}

/// The close in one statement, or `None` when it is for the locking close
/// (see the module docs). `key` is `id` as stored, `fields` the close's
/// final columns.
pub(super) fn close(
    c: &mut PgConnection,
    id: Uuid,
    key: &str,
    close: &CdrClose,
    fields: &FinalSet,
    now: DateTime<Utc>,
) -> Result<Option<ClosedCall>, StoreError> {
    // Inside a caller's transaction a failed statement would abort it.
    if !matches!(
        AnsiTransactionManager::transaction_manager_status_mut(c).transaction_depth(),
        Ok(None)
    ) {
        return Ok(None);
    }
    let charge = match (close.rating, close.rated_in) {
        (None, _) => None,
        (Some(r), Some(zone)) if r.price > Decimal::ZERO => {
            Some(Charge::new(r.price, r.currency, zone, now))
        }
        // No zone to date the spend totals in; or rated free, when nothing
        // moves but the currency is still checked.
        (Some(_), _) => return Ok(None),
    };
    let status: CdrStatus = close.status.into();
    // A completed call needs an answer time: this close's or the record's.
    let answer_given =
        close.status != super::FinalStatus::Completed || close.progress.answered_at.is_some();
    let media = close
        .progress
        .last_media_at
        .map(|t| cdrs::last_media_at.eq(greatest(cdrs::last_media_at, to_micros(t))));
    let update = diesel::update(
        cdrs::table
            .find(key)
            .filter(open_status())
            .filter(cdrs::received_at.le(to_micros(close.ended_at)))
            .filter(
                cdrs::answered_at
                    .is_not_null()
                    .or(answer_given.into_sql::<Bool>()),
            ),
    )
    .set((
        ProgressSet::of(&close.progress, Some(status), now)?,
        fields,
        media,
    ))
    .returning(cdrs::all_columns);
    let statement = keep_prepared(OneStatement {
        closed: update,
        charge: charge.as_ref(),
    });
    let (row, entry_id, balance) = match statement
        .get_result::<(CdrRow, Option<i64>, StoredMoney)>(c)
        .optional()
    {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(None),
        Err(e) => {
            tracing::debug!(cdr = %id, error = %e, "one-statement close refused; closing under lock");
            return Ok(None);
        }
    };
    let cdr = Cdr::try_from(row)?;
    let charge = match (charge, entry_id) {
        (Some(ch), Some(entry)) => Some(LedgerEntry {
            id: entry,
            subscriber_id: cdr.subscriber_id,
            kind: EntryKind::CallCharge,
            amount: (-ch.price.0).normalize(),
            currency: ch.currency,
            reason: None,
            cdr_id: Some(id),
            idempotency_key: key.to_owned(),
            created_at: time_of(ch.at)?,
        }),
        (None, None) => None,
        // The statement's text returns an entry exactly when it charges.
        _ => {
            return Err(DbError::Corrupt(format!(
                "CDR {id}: one-statement close without its entry"
            ))
            .into())
        }
    };
    Ok(Some(ClosedCall {
        cdr,
        charge,
        balance: balance.0.normalize(),
        newly_closed: true,
    }))
}

/// A charge's parameters: the price, what the subscriber must still be, and
/// the periods of the spend totals it counts in.
struct Charge {
    price: StoredMoney,
    currency: Currency,
    zone: &'static str,
    day: (i64, i64),
    month: (i64, i64),
    at: i64,
}

impl Charge {
    fn new(price: Decimal, currency: Currency, zone: Tz, now: DateTime<Utc>) -> Charge {
        let micros = |(from, to): (DateTime<Utc>, DateTime<Utc>)| (to_micros(from), to_micros(to));
        Charge {
            price: StoredMoney(price),
            currency,
            zone: zone.name(),
            day: micros(ledger::local_day(zone, now)),
            month: micros(ledger::local_month(zone, now)),
            at: to_micros(now),
        }
    }
}

/// `WITH closed AS (the record's UPDATE …)` and what follows it.
struct OneStatement<'a, U> {
    closed: U,
    charge: Option<&'a Charge>,
}

/// Without a charge: the record closed, and the balance as it stands.
const UNCHARGED: &str = " SELECT closed.*, NULL::bigint, s.balance \
    FROM closed JOIN subscribers AS s ON s.id = closed.subscriber_id";

/// After `p` (the charge's parameters): balance, totals, entry. A total's
/// three cases are those of `ledger::totals_after_charge`.
macro_rules! advance {
    ($from:literal, $total:literal, $p_from:literal, $p_to:literal) => {
        concat!(
            $from,
            " = CASE WHEN s.",
            $from,
            " > p.",
            $p_from,
            " THEN s.",
            $from,
            " ELSE p.",
            $p_from,
            " END, ",
            $total,
            " = CASE WHEN s.",
            $from,
            " = p.",
            $p_from,
            " THEN trim_scale(s.",
            $total,
            " + p.price) WHEN s.",
            $from,
            " > p.",
            $p_from,
            " THEN s.",
            $total,
            " ELSE trim_scale(p.price - COALESCE((SELECT sum(e.amount) ",
            "FROM ledger_entries AS e WHERE e.subscriber_id = s.id AND e.kind = 'call_charge' ",
            "AND e.created_at >= p.",
            $p_from,
            " AND e.created_at < p.",
            $p_to,
            "), 0)) END"
        )
    };
}
const CHARGED: &str = concat!(
    ", moved AS (UPDATE subscribers AS s SET balance = trim_scale(s.balance - p.price), ",
    advance!("spend_day_from", "spend_day", "day_from", "day_to"),
    ", ",
    advance!("spend_month_from", "spend_month", "month_from", "month_to"),
    " FROM closed, p WHERE s.id = closed.subscriber_id AND s.currency = p.currency ",
    "AND s.time_zone = p.zone RETURNING s.id, s.balance), ",
    "entry AS (INSERT INTO ledger_entries ",
    "(subscriber_id, kind, amount, currency, cdr_id, idempotency_key, created_at) ",
    "SELECT moved.id, 'call_charge', -p.price, p.currency, closed.id, closed.id, p.at ",
    "FROM closed CROSS JOIN p LEFT JOIN moved ON true RETURNING id) ",
    "SELECT closed.*, entry.id, moved.balance FROM closed, moved, entry"
);

impl<U: QueryFragment<Pg>> QueryFragment<Pg> for OneStatement<'_, U> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH closed AS (");
        self.closed.walk_ast(out.reborrow())?;
        out.push_sql(")");
        let Some(p) = self.charge else {
            out.push_sql(UNCHARGED);
            return Ok(());
        };
        // Typed in the text too, so the statement also prepares as text
        // alone (the plan tests do).
        out.push_sql(", p AS (SELECT ");
        out.push_bind_param::<Money, _>(&p.price)?;
        out.push_sql("::numeric AS price, ");
        out.push_bind_param::<Text, _>(p.currency.as_str())?;
        out.push_sql("::text AS currency, ");
        out.push_bind_param::<Text, _>(p.zone)?;
        out.push_sql("::text AS zone");
        for (value, name) in [
            (&p.day.0, "day_from"),
            (&p.day.1, "day_to"),
            (&p.month.0, "month_from"),
            (&p.month.1, "month_to"),
            (&p.at, "at"),
        ] {
            out.push_sql(", ");
            out.push_bind_param::<BigInt, _>(value)?;
            out.push_sql("::bigint AS ");
            out.push_sql(name);
        }
        out.push_sql(")");
        out.push_sql(CHARGED);
        Ok(())
    }
}

/// No static id: the connection keys it by its SQL text.
impl<U> QueryId for OneStatement<'_, U> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<U> Query for OneStatement<'_, U> {
    type SqlType = (cdrs::SqlType, Nullable<BigInt>, Money);
}
