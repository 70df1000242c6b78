//! A subscriber's calls (CDRs), newest first, paginated, by date.

use super::auth::Caller;
use super::extract::{PathParams, QueryParams, SubscriberId};
use super::{with_db, AppState};
use crate::problem::Problem;
use crate::store::cdrs::{self, Cdr, CdrQuery, Cursor};
use crate::store::{ledger, subscribers};
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Most calls per page, and the default.
pub const MAX_PAGE: i64 = 500;
pub const DEFAULT_PAGE: i64 = 50;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallsQuery {
    /// Received at or after: RFC 3339, or a date (YYYY-MM-DD) in the
    /// subscriber's time zone.
    pub from: Option<String>,
    /// Received before: RFC 3339, or a date, meaning up to the end of that
    /// local day (inclusive).
    pub to: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Serialize)]
pub struct CallPage {
    pub calls: Vec<Cdr>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// An instant, or the local day boundary a date names.
fn bound(raw: &str, tz: Tz, end: bool, name: &str) -> Result<DateTime<Utc>, Problem> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        let day = if end { d.succ_opt().unwrap_or(d) } else { d };
        return Ok(ledger::local_day_start(tz, day));
    }
    Err(Problem::bad_request(format!(
        "{name}: expected an RFC 3339 time or a date YYYY-MM-DD, got {:?}",
        raw.chars().take(40).collect::<String>()
    )))
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    SubscriberId(id): SubscriberId,
    QueryParams(q): QueryParams<CallsQuery>,
) -> Result<Json<CallPage>, Problem> {
    caller.require_access(id)?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit must be 1 to {MAX_PAGE}"
        )));
    }
    let after = q
        .cursor
        .as_deref()
        .map(|c| Cursor::decode(c).ok_or_else(|| Problem::bad_request("bad cursor")))
        .transpose()?;
    let page = with_db(&state, move |conn| {
        let s = subscribers::get(conn, id)?;
        let tz = s.time_zone;
        let query = CdrQuery {
            from: q
                .from
                .as_deref()
                .map(|f| bound(f, tz, false, "from"))
                .transpose()?,
            to: q
                .to
                .as_deref()
                .map(|t| bound(t, tz, true, "to"))
                .transpose()?,
            after,
            limit,
        };
        Ok(cdrs::list(conn, id, &query)?)
    })
    .await?;
    let next_cursor = (page.len() as i64 == limit)
        .then(|| page.last().map(|c| Cursor::of(c).encode()))
        .flatten();
    Ok(Json(CallPage {
        calls: page,
        next_cursor,
    }))
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    SubscriberId(id): SubscriberId,
    params: PathParams,
) -> Result<Json<Cdr>, Problem> {
    caller.require_access(id)?;
    let raw = params.get("call_id")?;
    let call_id = uuid::Uuid::try_parse(raw)
        .map_err(|_| Problem::bad_request(format!("call id {raw:?} is not a UUID")))?;
    let cdr = with_db(&state, move |conn| Ok(cdrs::get(conn, call_id)?)).await?;
    // Another subscriber's call is "not found", not "forbidden": ids are
    // not to be probed.
    if cdr.subscriber_id != id {
        return Err(Problem::not_found("call record not found"));
    }
    Ok(Json(cdr))
}
