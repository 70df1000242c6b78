//! A subscriber's balance and ledger; payments, credits and adjustments
//! (operator).

use super::auth::Caller;
use super::extract::{JsonBody, QueryParams, SubscriberId};
use super::{with_db, AppState};
use crate::authorize::headroom;
use crate::metrics::EntryLabels;
use crate::problem::Problem;
use crate::store::ledger::{self, LedgerEntry, NewEntry};
use crate::store::subscribers;
use crate::subscriber::Account;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use provider_sdk::money::Currency;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub const MAX_PAGE: i64 = 500;
pub const DEFAULT_PAGE: i64 = 100;

#[derive(Serialize)]
pub struct Balance {
    pub subscriber_id: i64,
    pub currency: Currency,
    pub account: Account,
    /// Sum of the ledger.
    pub balance: Decimal,
    /// What calls may still spend (balance, plus the credit limit for
    /// postpaid).
    pub available: Decimal,
    pub spend_today: Decimal,
    pub spend_month: Decimal,
    pub daily_spend_cap: Option<Decimal>,
    pub monthly_spend_cap: Option<Decimal>,
    pub active_calls: u32,
}

pub async fn balance(
    State(state): State<AppState>,
    caller: Caller,
    SubscriberId(id): SubscriberId,
) -> Result<Json<Balance>, Problem> {
    caller.require_access(id)?;
    let b = with_db(&state, move |conn| {
        let s = subscribers::get(conn, id)?;
        let st = ledger::standing(conn, &s, chrono::Utc::now())?;
        Ok(Balance {
            subscriber_id: id,
            currency: s.currency,
            account: s.account,
            balance: st.balance,
            available: headroom(&s.account, st.balance),
            spend_today: st.spend_today,
            spend_month: st.spend_month,
            daily_spend_cap: s.daily_spend_cap,
            monthly_spend_cap: s.monthly_spend_cap,
            active_calls: st.active_calls,
        })
    })
    .await?;
    Ok(Json(b))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntriesQuery {
    pub limit: Option<i64>,
    /// Entries with ids below this (the previous page's `next_before`).
    pub before: Option<i64>,
}

#[derive(Serialize)]
pub struct EntryPage {
    pub entries: Vec<LedgerEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

pub async fn entries(
    State(state): State<AppState>,
    caller: Caller,
    SubscriberId(id): SubscriberId,
    QueryParams(q): QueryParams<EntriesQuery>,
) -> Result<Json<EntryPage>, Problem> {
    caller.require_access(id)?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit must be 1 to {MAX_PAGE}"
        )));
    }
    let entries = with_db(&state, move |conn| {
        subscribers::get(conn, id)?;
        Ok(ledger::entries(conn, id, q.before, limit)?)
    })
    .await?;
    let next_before = (entries.len() as i64 == limit)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(Json(EntryPage {
        entries,
        next_before,
    }))
}

/// 201 with the new entry; 200 with the stored one when the same entry
/// (same idempotency key and content) was recorded before.
pub async fn record(
    State(state): State<AppState>,
    caller: Caller,
    SubscriberId(id): SubscriberId,
    JsonBody(new): JsonBody<NewEntry>,
) -> Result<(StatusCode, Json<LedgerEntry>), Problem> {
    caller.require_operator()?;
    new.validate()?;
    let recorded = with_db(&state, move |conn| {
        Ok(ledger::record(conn, id, &new, chrono::Utc::now())?)
    })
    .await?;
    let status = if recorded.is_new() {
        state
            .metrics
            .ledger_entries
            .get_or_create(&EntryLabels {
                kind: recorded.entry().kind.as_str(),
            })
            .inc();
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(recorded.into_entry())))
}
