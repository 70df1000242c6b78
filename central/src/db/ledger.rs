//! The settlement ledger's queries: storing verified tickets, idempotent on
//! the ticket id, and summing them per payer, provider and currency.
//!
//! Sums are computed in Rust over exact decimals (SQLite has no exact
//! decimal `SUM`), reading the window page by page so memory stays bounded.

use super::money::StoredMoney;
use super::schema::tickets;
use super::store::StoreError;
use super::{from_micros, to_micros, DbConnection, DbError};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use provider_sdk::ticket::SettlementStatus;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Ticket ids per `IN (...)` lookup.
const LOOKUP_CHUNK: usize = 500;
/// Rows per multi-row INSERT: 31 bound values each stays below the bind
/// limits of SQLite (32,766) and PostgreSQL (65,535).
const INSERT_CHUNK: usize = 500;
/// Rows read per page by the settlement report.
const REPORT_PAGE: i64 = 10_000;
/// A concurrent writer storing one of the same ticket ids makes a batch
/// start over (it then sees that row); this bounds the retries.
const MAX_ATTEMPTS: usize = 5;

/// One side's claim about the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Claim {
    pub answer_at: DateTime<Utc>,
    pub end_at: DateTime<Utc>,
    pub billable_seconds: i64,
}

/// A verified ticket, ready to store.
#[derive(Debug, Clone)]
pub struct NewTicket {
    /// The ticket's `jti`, hyphenated lowercase.
    pub ticket_id: String,
    pub payer_id: i64,
    pub provider_id: i64,
    pub orig: String,
    pub dest: String,
    pub call_id: String,
    pub per_minute: Decimal,
    pub connect_fee: Decimal,
    pub first_increment: i32,
    pub next_increment: i32,
    pub currency: String,
    pub rate_version: i64,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub status: SettlementStatus,
    /// The claim the call settles on.
    pub settled: Claim,
    pub amount: Decimal,
    pub payer_claim: Option<Claim>,
    pub provider_claim: Claim,
    pub ticket_token: String,
    pub payer_receipt_token: Option<String>,
    pub provider_receipt_token: String,
    /// SHA-256 (hex) of the three tokens.
    pub submission_sha256: String,
    pub submitted_at: DateTime<Utc>,
    /// Key id of the submitting client certificate.
    pub submitted_by: String,
}

/// What a stored (or just stored) ticket settled as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketSummary {
    pub ticket_id: String,
    pub status: SettlementStatus,
    pub amount: Decimal,
    pub currency: String,
}

/// What happened to one ticket of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Stored now.
    Inserted(TicketSummary),
    /// The identical submission was stored before (possibly earlier in the
    /// same batch): nothing changed.
    Duplicate(TicketSummary),
    /// Another submission for the same ticket id is stored: nothing changed.
    Conflict { ticket_id: String },
}

enum TxError {
    Store(StoreError),
    /// A concurrent transaction stored one of our ticket ids first.
    Raced,
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        TxError::Store(StoreError::from(e))
    }
}

impl From<DbError> for TxError {
    fn from(e: DbError) -> Self {
        TxError::Store(StoreError::Db(e))
    }
}

fn status_of(s: &str) -> Result<SettlementStatus, DbError> {
    SettlementStatus::parse(s).ok_or_else(|| DbError::Corrupt(format!("ticket status {s:?}")))
}

fn time_of(us: i64) -> Result<DateTime<Utc>, DbError> {
    from_micros(us).ok_or_else(|| DbError::Corrupt(format!("timestamp {us}")))
}

/// Stores verified tickets in one transaction: each one is inserted, found
/// to be a duplicate of what is stored (same SHA-256 of the tokens), or in
/// conflict with it. Results are in the order of `batch`.
pub fn store_tickets(
    conn: &mut DbConnection,
    batch: &[NewTicket],
) -> Result<Vec<StoreOutcome>, StoreError> {
    for _ in 0..MAX_ATTEMPTS {
        match conn.transaction(|conn| store_once(conn, batch)) {
            Ok(out) => return Ok(out),
            Err(TxError::Store(e)) => return Err(e),
            Err(TxError::Raced) => {
                tracing::debug!("ticket batch raced a concurrent one for the same ids; retrying");
                continue;
            }
        }
    }
    Err(StoreError::Db(DbError::Corrupt(
        "ticket batch kept racing concurrent submissions of the same tickets".into(),
    )))
}

type ExistingRow = (String, String, String, StoredMoney, String);

fn store_once(conn: &mut DbConnection, batch: &[NewTicket]) -> Result<Vec<StoreOutcome>, TxError> {
    if let DbConnection::Sqlite(c) = conn {
        // Take SQLite's write lock before reading: a transaction that read
        // first and then writes fails at once (SQLITE_BUSY on a stale
        // snapshot) when another batch committed meanwhile; holding the lock
        // from the start makes the other batch wait (busy_timeout) instead.
        diesel::sql_query("UPDATE tickets SET ticket_id = ticket_id WHERE 0").execute(c)?;
    }
    let mut existing: HashMap<String, (String, TicketSummary)> = HashMap::new();
    let ids: Vec<&str> = batch.iter().map(|t| t.ticket_id.as_str()).collect();
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let rows: Vec<ExistingRow> = tickets::table
            .filter(tickets::ticket_id.eq_any(chunk))
            .select((
                tickets::ticket_id,
                tickets::submission_sha256,
                tickets::status,
                tickets::amount,
                tickets::currency,
            ))
            .load(conn)?;
        for (ticket_id, sha, status, amount, currency) in rows {
            let summary = TicketSummary {
                ticket_id: ticket_id.clone(),
                status: status_of(&status)?,
                amount: amount.0,
                currency,
            };
            existing.insert(ticket_id, (sha, summary));
        }
    }
    let mut out = Vec::with_capacity(batch.len());
    let mut fresh: Vec<&NewTicket> = Vec::new();
    for t in batch {
        let summary = || TicketSummary {
            ticket_id: t.ticket_id.clone(),
            status: t.status,
            amount: t.amount,
            currency: t.currency.clone(),
        };
        match existing.get(&t.ticket_id) {
            Some((sha, stored)) if *sha == t.submission_sha256 => {
                out.push(StoreOutcome::Duplicate(stored.clone()))
            }
            Some(_) => out.push(StoreOutcome::Conflict {
                ticket_id: t.ticket_id.clone(),
            }),
            None => {
                // Later items of this batch see this one as stored.
                existing.insert(
                    t.ticket_id.clone(),
                    (t.submission_sha256.clone(), summary()),
                );
                fresh.push(t);
                out.push(StoreOutcome::Inserted(summary()));
            }
        }
    }
    for chunk in fresh.chunks(INSERT_CHUNK) {
        let inserted = insert_chunk(conn, chunk)?;
        if inserted != chunk.len() {
            return Err(TxError::Raced);
        }
    }
    Ok(out)
}

fn insert_chunk(conn: &mut DbConnection, chunk: &[&NewTicket]) -> Result<usize, TxError> {
    let values: Vec<_> = chunk
        .iter()
        .map(|t| {
            (
                (
                    tickets::ticket_id.eq(t.ticket_id.as_str()),
                    tickets::payer_id.eq(t.payer_id),
                    tickets::provider_id.eq(t.provider_id),
                    tickets::orig.eq(t.orig.as_str()),
                    tickets::dest.eq(t.dest.as_str()),
                    tickets::call_id.eq(t.call_id.as_str()),
                    tickets::per_minute.eq(StoredMoney(t.per_minute)),
                    tickets::connect_fee.eq(StoredMoney(t.connect_fee)),
                    tickets::first_increment.eq(t.first_increment),
                    tickets::next_increment.eq(t.next_increment),
                    tickets::currency.eq(t.currency.as_str()),
                    tickets::rate_version.eq(t.rate_version),
                    tickets::issued_at.eq(to_micros(t.issued_at)),
                    tickets::expires_at.eq(to_micros(t.expires_at)),
                    tickets::status.eq(t.status.as_str()),
                    tickets::answer_at.eq(to_micros(t.settled.answer_at)),
                ),
                (
                    tickets::end_at.eq(to_micros(t.settled.end_at)),
                    tickets::billable_seconds.eq(t.settled.billable_seconds),
                    tickets::amount.eq(StoredMoney(t.amount)),
                    tickets::payer_answer_at.eq(t.payer_claim.map(|c| to_micros(c.answer_at))),
                    tickets::payer_end_at.eq(t.payer_claim.map(|c| to_micros(c.end_at))),
                    tickets::payer_billable_seconds.eq(t.payer_claim.map(|c| c.billable_seconds)),
                    tickets::provider_answer_at.eq(to_micros(t.provider_claim.answer_at)),
                    tickets::provider_end_at.eq(to_micros(t.provider_claim.end_at)),
                    tickets::provider_billable_seconds.eq(t.provider_claim.billable_seconds),
                    tickets::ticket_token.eq(t.ticket_token.as_str()),
                    tickets::payer_receipt_token.eq(t.payer_receipt_token.as_deref()),
                    tickets::provider_receipt_token.eq(t.provider_receipt_token.as_str()),
                    tickets::submission_sha256.eq(t.submission_sha256.as_str()),
                    tickets::submitted_at.eq(to_micros(t.submitted_at)),
                    tickets::submitted_by.eq(t.submitted_by.as_str()),
                ),
            )
        })
        .collect();
    // Multi-row INSERT is backend-specific in diesel (as for rate lines).
    // ON CONFLICT DO NOTHING: a row a concurrent transaction committed in
    // the meantime is skipped, the count tells, and the batch starts over.
    let n = match conn {
        DbConnection::Sqlite(c) => diesel::insert_into(tickets::table)
            .values(values)
            .on_conflict(tickets::ticket_id)
            .do_nothing()
            .execute(c)?,
        DbConnection::Postgres(c) => diesel::insert_into(tickets::table)
            .values(values)
            .on_conflict(tickets::ticket_id)
            .do_nothing()
            .execute(c)?,
    };
    Ok(n)
}

/// A stored ticket (what a settlement can be checked against later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredTicket {
    pub ticket_id: String,
    pub payer_id: i64,
    pub provider_id: i64,
    pub orig: String,
    pub dest: String,
    pub call_id: String,
    pub per_minute: Decimal,
    pub connect_fee: Decimal,
    pub first_increment: i32,
    pub next_increment: i32,
    pub currency: String,
    pub rate_version: i64,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub status: SettlementStatus,
    pub settled: Claim,
    pub amount: Decimal,
    pub payer_claim: Option<Claim>,
    pub provider_claim: Claim,
    pub ticket_token: String,
    pub payer_receipt_token: Option<String>,
    pub provider_receipt_token: String,
    pub submitted_at: DateTime<Utc>,
    pub submitted_by: String,
}

#[derive(Queryable)]
struct TicketRow {
    ticket_id: String,
    payer_id: i64,
    provider_id: i64,
    orig: String,
    dest: String,
    call_id: String,
    per_minute: StoredMoney,
    connect_fee: StoredMoney,
    first_increment: i32,
    next_increment: i32,
    currency: String,
    rate_version: i64,
    issued_at: i64,
    expires_at: i64,
    status: String,
    answer_at: i64,
    end_at: i64,
    billable_seconds: i64,
    amount: StoredMoney,
    payer_answer_at: Option<i64>,
    payer_end_at: Option<i64>,
    payer_billable_seconds: Option<i64>,
    provider_answer_at: i64,
    provider_end_at: i64,
    provider_billable_seconds: i64,
    ticket_token: String,
    payer_receipt_token: Option<String>,
    provider_receipt_token: String,
    _submission_sha256: String,
    submitted_at: i64,
    submitted_by: String,
}

impl TryFrom<TicketRow> for StoredTicket {
    type Error = DbError;
    fn try_from(r: TicketRow) -> Result<Self, DbError> {
        let payer_claim = match (r.payer_answer_at, r.payer_end_at, r.payer_billable_seconds) {
            (Some(a), Some(e), Some(b)) => Some(Claim {
                answer_at: time_of(a)?,
                end_at: time_of(e)?,
                billable_seconds: b,
            }),
            (None, None, None) => None,
            _ => {
                return Err(DbError::Corrupt(format!(
                    "ticket {}: partial payer claim",
                    r.ticket_id
                )))
            }
        };
        Ok(StoredTicket {
            payer_id: r.payer_id,
            provider_id: r.provider_id,
            orig: r.orig,
            dest: r.dest,
            call_id: r.call_id,
            per_minute: r.per_minute.0,
            connect_fee: r.connect_fee.0,
            first_increment: r.first_increment,
            next_increment: r.next_increment,
            currency: r.currency,
            rate_version: r.rate_version,
            issued_at: time_of(r.issued_at)?,
            expires_at: time_of(r.expires_at)?,
            status: status_of(&r.status)?,
            settled: Claim {
                answer_at: time_of(r.answer_at)?,
                end_at: time_of(r.end_at)?,
                billable_seconds: r.billable_seconds,
            },
            amount: r.amount.0,
            payer_claim,
            provider_claim: Claim {
                answer_at: time_of(r.provider_answer_at)?,
                end_at: time_of(r.provider_end_at)?,
                billable_seconds: r.provider_billable_seconds,
            },
            ticket_token: r.ticket_token,
            payer_receipt_token: r.payer_receipt_token,
            provider_receipt_token: r.provider_receipt_token,
            submitted_at: time_of(r.submitted_at)?,
            submitted_by: r.submitted_by,
            ticket_id: r.ticket_id,
        })
    }
}

/// The stored ticket with this id, if any.
pub fn get_ticket(
    conn: &mut DbConnection,
    ticket_id: &str,
) -> Result<Option<StoredTicket>, StoreError> {
    let row: Option<TicketRow> = tickets::table.find(ticket_id).first(conn).optional()?;
    Ok(row.map(StoredTicket::try_from).transpose()?)
}

/// How many tickets the ledger holds.
pub fn count_tickets(conn: &mut DbConnection) -> Result<i64, StoreError> {
    Ok(tickets::table.count().get_result(conn)?)
}

/// Which tickets a settlement report sums.
#[derive(Debug, Clone)]
pub struct SettlementQuery {
    /// Answer time from (inclusive).
    pub from: DateTime<Utc>,
    /// Answer time to (exclusive).
    pub to: DateTime<Utc>,
    pub payer: Option<i64>,
    pub provider: Option<i64>,
    /// Only tickets this provider is payer or provider of (a provider's own view).
    pub party: Option<i64>,
}

/// One line of a settlement report: what `payer` owes `provider` in
/// `currency` for calls answered in the window.
///
/// `tickets`, `billable_seconds` and `amount` cover the undisputed tickets
/// (agreed, and provider-only, which are also counted on their own).
/// Disputed tickets are left out of them and reported apart, at the lower
/// of the two claims: the part neither side contests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettlementRow {
    pub payer_id: i64,
    pub provider_id: i64,
    pub currency: String,
    pub tickets: u64,
    pub billable_seconds: i64,
    pub amount: Decimal,
    pub provider_only_tickets: u64,
    pub provider_only_amount: Decimal,
    pub disputed_tickets: u64,
    pub disputed_billable_seconds: i64,
    pub disputed_amount: Decimal,
}

type ReportRow = (String, i64, i64, i64, String, String, i64, StoredMoney);

/// Sums the tickets answered in `[from, to)`, one row per (payer, provider,
/// currency), ordered by those.
pub fn settlements(
    conn: &mut DbConnection,
    q: &SettlementQuery,
) -> Result<Vec<SettlementRow>, StoreError> {
    let mut sums: BTreeMap<(i64, i64, String), SettlementRow> = BTreeMap::new();
    // Keyset pagination on (answer_at, ticket_id), the index's order.
    let mut after: Option<(i64, String)> = None;
    loop {
        let mut query = tickets::table
            .select((
                tickets::ticket_id,
                tickets::answer_at,
                tickets::payer_id,
                tickets::provider_id,
                tickets::currency,
                tickets::status,
                tickets::billable_seconds,
                tickets::amount,
            ))
            .filter(tickets::answer_at.ge(to_micros(q.from)))
            .filter(tickets::answer_at.lt(to_micros(q.to)))
            .order((tickets::answer_at, tickets::ticket_id))
            .limit(REPORT_PAGE)
            .into_boxed();
        if let Some(p) = q.payer {
            query = query.filter(tickets::payer_id.eq(p));
        }
        if let Some(p) = q.provider {
            query = query.filter(tickets::provider_id.eq(p));
        }
        if let Some(p) = q.party {
            query = query.filter(tickets::payer_id.eq(p).or(tickets::provider_id.eq(p)));
        }
        if let Some((at, id)) = &after {
            query = query.filter(
                tickets::answer_at.gt(*at).or(tickets::answer_at
                    .eq(*at)
                    .and(tickets::ticket_id.gt(id.clone()))),
            );
        }
        let rows: Vec<ReportRow> = query.load(conn)?;
        let full = rows.len() as i64 == REPORT_PAGE;
        for (ticket_id, answer_at, payer_id, provider_id, currency, status, billable, amount) in
            rows
        {
            let line = sums
                .entry((payer_id, provider_id, currency.clone()))
                .or_insert_with(|| SettlementRow {
                    payer_id,
                    provider_id,
                    currency,
                    tickets: 0,
                    billable_seconds: 0,
                    amount: Decimal::ZERO,
                    provider_only_tickets: 0,
                    provider_only_amount: Decimal::ZERO,
                    disputed_tickets: 0,
                    disputed_billable_seconds: 0,
                    disputed_amount: Decimal::ZERO,
                });
            let overflow = || DbError::Corrupt("settlement sum out of range".into());
            match status_of(&status)? {
                SettlementStatus::Disputed => {
                    line.disputed_tickets += 1;
                    line.disputed_billable_seconds = line
                        .disputed_billable_seconds
                        .checked_add(billable)
                        .ok_or_else(overflow)?;
                    line.disputed_amount = line
                        .disputed_amount
                        .checked_add(amount.0)
                        .ok_or_else(overflow)?;
                }
                undisputed => {
                    line.tickets += 1;
                    line.billable_seconds = line
                        .billable_seconds
                        .checked_add(billable)
                        .ok_or_else(overflow)?;
                    line.amount = line.amount.checked_add(amount.0).ok_or_else(overflow)?;
                    if undisputed == SettlementStatus::ProviderOnly {
                        line.provider_only_tickets += 1;
                        line.provider_only_amount = line
                            .provider_only_amount
                            .checked_add(amount.0)
                            .ok_or_else(overflow)?;
                    }
                }
            }
            after = Some((answer_at, ticket_id));
        }
        if !full {
            break;
        }
    }
    Ok(sums
        .into_values()
        .map(|mut r| {
            r.amount = r.amount.normalize();
            r.provider_only_amount = r.provider_only_amount.normalize();
            r.disputed_amount = r.disputed_amount.normalize();
            r
        })
        .collect())
}
