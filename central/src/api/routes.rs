//! `GET /v1/routes?number=&max_rate=&currency=&limit=`: the willing providers
//! for a number, each with its own longest matching prefix, cheapest first,
//! answered from the live index (no database access on this path).

use super::AppState;
use crate::db::store::SipAddress;
use crate::index::RouteCriteria;
use crate::problem::Problem;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use provider_sdk::money::Currency;
use provider_sdk::number::E164;
use rust_decimal::Decimal;
use serde::Serialize;
use std::str::FromStr;
use std::time::Instant;

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 1000;

/// Validated query parameters.
#[derive(Debug)]
pub struct RouteQuery {
    pub number: E164,
    pub criteria: RouteCriteria,
}

impl RouteQuery {
    /// Parses the raw parameters; unknown or repeated ones are errors.
    pub fn parse(params: &[(String, String)]) -> Result<RouteQuery, Problem> {
        let mut number = None;
        let mut max_rate = None;
        let mut currency = None;
        let mut limit = None;
        for (k, v) in params {
            let slot_taken = match k.as_str() {
                "number" => number.replace(v.as_str()).is_some(),
                "max_rate" => max_rate.replace(v.as_str()).is_some(),
                "currency" => currency.replace(v.as_str()).is_some(),
                "limit" => limit.replace(v.as_str()).is_some(),
                other => {
                    return Err(Problem::bad_request(format!(
                        "unknown query parameter {other:?} (expected number, max_rate, currency, limit)"
                    )))
                }
            };
            if slot_taken {
                return Err(Problem::bad_request(format!("parameter {k:?} given twice")));
            }
        }
        let number =
            number.ok_or_else(|| Problem::bad_request("parameter \"number\" is required"))?;
        let number = E164::parse(number)
            .map_err(|e| Problem::bad_request(format!("number {number:?}: {e}")))?;
        let max_rate = match max_rate {
            None => None,
            Some(s) => {
                let d = Decimal::from_str(s.trim()).map_err(|e| {
                    Problem::bad_request(format!("max_rate {s:?} is not a decimal number: {e}"))
                })?;
                if d.is_sign_negative() {
                    return Err(Problem::bad_request("max_rate must not be negative"));
                }
                Some(d)
            }
        };
        let currency = currency
            .map(|c| {
                Currency::parse(c).map_err(|e| Problem::bad_request(format!("currency {c:?}: {e}")))
            })
            .transpose()?;
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(s) => match s.trim().parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(Problem::bad_request(format!(
                        "limit must be an integer in 1..={MAX_LIMIT}, got {s:?}"
                    )))
                }
            },
        };
        Ok(RouteQuery {
            number,
            criteria: RouteCriteria {
                max_rate,
                currency,
                limit,
            },
        })
    }
}

#[derive(Debug, Serialize)]
pub struct RouteAnswer<'a> {
    pub number: String,
    pub routes: Vec<Route<'a>>,
}

/// One answer line; borrows provider details from the index snapshot.
#[derive(Debug, Serialize)]
pub struct Route<'a> {
    pub provider_id: i64,
    pub provider: &'a str,
    pub sip_addresses: &'a [SipAddress],
    pub prefix: String,
    pub rate_per_minute: Decimal,
    pub connect_fee: Decimal,
    pub first_increment: u32,
    pub next_increment: u32,
    pub currency: String,
    pub rate_version: u64,
}

pub async fn query(
    State(state): State<AppState>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(params) =
        params.map_err(|e| Problem::bad_request(format!("malformed query string: {e}")))?;
    let q = RouteQuery::parse(&params)?;
    let started = Instant::now();
    let snap = state.index.snapshot();
    let matches = snap.index.query(&q.number, &q.criteria);
    let routes = matches
        .into_iter()
        .filter_map(|m| {
            // Every indexed provider has info in the same snapshot.
            let info = snap.providers.get(&m.provider)?;
            Some(Route {
                provider_id: info.id,
                provider: info.name.as_str(),
                sip_addresses: info.sip_addresses.as_slice(),
                prefix: m.prefix.digits().to_string(),
                rate_per_minute: m.rate_per_minute,
                connect_fee: m.connect_fee,
                first_increment: m.first_increment,
                next_increment: m.next_increment,
                currency: m.currency.to_string(),
                rate_version: m.rate_version,
            })
        })
        .collect();
    state
        .metrics
        .route_query_seconds
        .observe(started.elapsed().as_secs_f64());
    Ok(Json(RouteAnswer {
        number: q.number.to_string(),
        routes,
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
    fn parses_and_defaults() {
        let q = RouteQuery::parse(&p(&[("number", "+49 30 123-456")])).unwrap();
        assert_eq!(q.number.digits(), "4930123456");
        assert_eq!(q.criteria.limit, DEFAULT_LIMIT);
        assert!(q.criteria.max_rate.is_none());
        let q = RouteQuery::parse(&p(&[
            ("number", "004930123"),
            ("max_rate", "0.015"),
            ("currency", "EUR"),
            ("limit", "5"),
        ]))
        .unwrap();
        assert_eq!(q.criteria.max_rate, Some(Decimal::new(15, 3)));
        assert_eq!(q.criteria.limit, 5);
    }

    #[test]
    fn rejects_bad_parameters() {
        for bad in [
            p(&[]),
            p(&[("number", "abc")]),
            p(&[("number", "+4930"), ("max_rate", "cheap")]),
            p(&[("number", "+4930"), ("max_rate", "-1")]),
            p(&[("number", "+4930"), ("currency", "euro")]),
            p(&[("number", "+4930"), ("limit", "0")]),
            p(&[("number", "+4930"), ("limit", "x")]),
            p(&[("number", "+4930"), ("colour", "red")]),
            p(&[("number", "+4930"), ("number", "+4931")]),
        ] {
            let e = RouteQuery::parse(&bad).unwrap_err();
            assert_eq!(e.status, 400, "{bad:?}");
        }
    }
}
