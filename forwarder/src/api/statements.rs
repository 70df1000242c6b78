//! A subscriber's billing statements: the list, one statement's record,
//! and the parts of the message as it was sent (`?format=text|html|csv|eml`).

use super::auth::Caller;
use super::extract::{parse_id, PathParams, QueryParams, SubscriberId};
use super::{with_db, AppState};
use crate::problem::Problem;
use crate::statements::render;
use crate::store::statements::{self as stored, Statement, StatementQuery};
use crate::store::subscribers;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

pub const MAX_PAGE: i64 = 500;
pub const DEFAULT_PAGE: i64 = 50;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<i64>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

#[derive(Serialize)]
pub struct StatementPage {
    pub statements: Vec<Statement>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    SubscriberId(id): SubscriberId,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<StatementPage>, Problem> {
    caller.require_access(id)?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Problem::bad_request(format!(
            "limit must be 1 to {MAX_PAGE}"
        )));
    }
    let before = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| Problem::bad_request("bad cursor"))
        })
        .transpose()?;
    let page = with_db(&state, move |conn| {
        subscribers::get(conn, id)?;
        Ok(stored::list(
            conn,
            &StatementQuery {
                subscriber_id: Some(id),
                status: None,
                before,
                limit,
            },
        )?)
    })
    .await?;
    let next_cursor = (page.len() as i64 == limit)
        .then(|| page.last().map(|s| s.id.to_string()))
        .flatten();
    Ok(Json(StatementPage {
        statements: page,
        next_cursor,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShowQuery {
    /// `json` (default), `text`, `html`, `csv` or `eml`.
    pub format: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    SubscriberId(id): SubscriberId,
    params: PathParams,
    QueryParams(q): QueryParams<ShowQuery>,
) -> Result<Response, Problem> {
    caller.require_access(id)?;
    let sid = parse_id(params.get("statement_id")?)?;
    let format = q.format.unwrap_or_else(|| "json".into());
    let (ctype, part): (&str, fn(render::Parts) -> Option<String>) = match format.as_str() {
        "json" => ("application/json", |_| None),
        "text" => ("text/plain; charset=utf-8", |p| p.text),
        "html" => ("text/html; charset=utf-8", |p| p.html),
        "csv" => ("text/csv; charset=utf-8", |p| p.csv),
        "eml" => ("message/rfc822", |_| None),
        _ => return Err(Problem::bad_request("format: json, text, html, csv or eml")),
    };
    let (statement, message) = with_db(&state, move |conn| {
        let s = stored::get(conn, sid)?;
        // Another subscriber's statement is "not found": ids are not probed.
        if s.subscriber_id != id {
            return Err(Problem::not_found("statement not found"));
        }
        let m = stored::message(conn, sid)?;
        Ok((s, m))
    })
    .await?;
    let body = match format.as_str() {
        "json" => return Ok(Json(statement).into_response()),
        "eml" => message,
        _ => {
            let parts = render::parts(&message).map_err(|e| {
                tracing::error!(statement = sid, error = %e, "stored message unreadable");
                Problem::internal()
            })?;
            part(parts).ok_or_else(|| Problem::not_found("the message has no such part"))?
        }
    };
    Ok(([(header::CONTENT_TYPE, ctype)], body).into_response())
}
