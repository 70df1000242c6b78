//! `GET /v1/settlements?from=&to=[&payer=][&provider=]`: what each payer
//! owes each provider, per currency, for the calls answered in `[from, to)`
//! (RFC 3339 times). JSON, or CSV with `Accept: text/csv`.
//!
//! The operator sees every row; a provider only rows it is payer or
//! provider of. Disputed tickets are left out of the totals and reported in
//! their own columns at the lower of the two claims
//! ([`crate::db::ledger::SettlementRow`]).

use super::auth::Caller;
use super::{blocking, AppState};
use crate::db::ledger::{self, SettlementQuery, SettlementRow};
use crate::problem::Problem;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct SettlementAnswer {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub settlements: Vec<SettlementRow>,
}

/// The CSV columns, in order (also the JSON field names).
pub const CSV_COLUMNS: [&str; 11] = [
    "payer_id",
    "provider_id",
    "currency",
    "tickets",
    "billable_seconds",
    "amount",
    "provider_only_tickets",
    "provider_only_amount",
    "disputed_tickets",
    "disputed_billable_seconds",
    "disputed_amount",
];

/// Parses the query parameters; unknown or repeated ones are errors.
pub fn parse_query(params: &[(String, String)]) -> Result<SettlementQuery, Problem> {
    let mut from = None;
    let mut to = None;
    let mut payer = None;
    let mut provider = None;
    for (k, v) in params {
        let taken = match k.as_str() {
            "from" => from.replace(v.as_str()).is_some(),
            "to" => to.replace(v.as_str()).is_some(),
            "payer" => payer.replace(v.as_str()).is_some(),
            "provider" => provider.replace(v.as_str()).is_some(),
            other => {
                return Err(Problem::bad_request(format!(
                    "unknown query parameter {other:?} (expected from, to, payer, provider)"
                )))
            }
        };
        if taken {
            return Err(Problem::bad_request(format!("parameter {k:?} given twice")));
        }
    }
    let time = |name: &str, v: Option<&str>| -> Result<DateTime<Utc>, Problem> {
        let v = v.ok_or_else(|| {
            Problem::bad_request(format!(
                "parameter {name:?} is required (RFC 3339, e.g. 2026-11-01T00:00:00Z)"
            ))
        })?;
        DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| Problem::bad_request(format!("{name} {v:?} is not an RFC 3339 time: {e}")))
    };
    let id = |name: &str, v: Option<&str>| -> Result<Option<i64>, Problem> {
        v.map(|v| {
            v.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
                Problem::bad_request(format!("{name} must be a positive provider id, got {v:?}"))
            })
        })
        .transpose()
    };
    let from = time("from", from)?;
    let to = time("to", to)?;
    if from >= to {
        return Err(Problem::bad_request("from must be before to"));
    }
    Ok(SettlementQuery {
        from,
        to,
        payer: id("payer", payer)?,
        provider: id("provider", provider)?,
        party: None,
    })
}

fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("text/csv"))
}

/// The report as CSV with a header row.
pub fn to_csv(rows: &[SettlementRow]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_COLUMNS)?;
    for r in rows {
        w.write_record([
            r.payer_id.to_string(),
            r.provider_id.to_string(),
            r.currency.clone(),
            r.tickets.to_string(),
            r.billable_seconds.to_string(),
            r.amount.to_string(),
            r.provider_only_tickets.to_string(),
            r.provider_only_amount.to_string(),
            r.disputed_tickets.to_string(),
            r.disputed_billable_seconds.to_string(),
            r.disputed_amount.to_string(),
        ])?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, Problem> {
    let party = match caller {
        Caller::Operator { .. } => None,
        Caller::Provider { id, .. } => Some(id),
        Caller::Anonymous => {
            return Err(Problem::forbidden(
                "settlements need a client certificate issued by central",
            ))
        }
    };
    let Query(params) =
        params.map_err(|e| Problem::bad_request(format!("malformed query string: {e}")))?;
    let mut q = parse_query(&params)?;
    q.party = party;
    let db = state.db.clone();
    let query = q.clone();
    let rows = blocking(move || Ok(ledger::settlements(&mut *db.conn()?, &query)?)).await?;
    if wants_csv(&headers) {
        let body = to_csv(&rows).map_err(|e| {
            tracing::error!(error = %e, "CSV encoding failed");
            Problem::internal()
        })?;
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response());
    }
    Ok(Json(SettlementAnswer {
        from: q.from,
        to: q.to,
        settlements: rows,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_windows() {
        let q = parse_query(&p(&[
            ("from", "2026-11-01T00:00:00Z"),
            ("to", "2026-12-01T01:00:00+01:00"),
            ("payer", "7"),
        ]))
        .unwrap();
        assert_eq!(q.to.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(q.payer, Some(7));
        assert_eq!(q.provider, None);
        for bad in [
            p(&[]),
            p(&[("from", "2026-11-01T00:00:00Z")]),
            p(&[("from", "2026-11-01"), ("to", "2026-12-01T00:00:00Z")]),
            p(&[
                ("from", "2026-12-01T00:00:00Z"),
                ("to", "2026-11-01T00:00:00Z"),
            ]),
            p(&[
                ("from", "2026-11-01T00:00:00Z"),
                ("to", "2026-12-01T00:00:00Z"),
                ("payer", "x"),
            ]),
            p(&[
                ("from", "2026-11-01T00:00:00Z"),
                ("to", "2026-12-01T00:00:00Z"),
                ("colour", "red"),
            ]),
        ] {
            assert_eq!(parse_query(&bad).unwrap_err().status, 400, "{bad:?}");
        }
    }
}
