//! `GET /v1/routes`: which providers will carry a call to a number, at what
//! price, cheapest first.

use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde::Deserialize;

use super::client::CentralClient;
use super::error::CentralError;
use crate::money::{check_price, Currency};
use crate::number::{Prefix, E164};
use crate::ratedeck::MAX_INCREMENT_SECONDS;

/// Most routes central answers per query.
pub const MAX_ROUTE_LIMIT: u16 = 1000;

/// A route query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteQuery {
    pub number: E164,
    /// Leave out providers charging more per minute.
    pub max_rate: Option<Decimal>,
    /// Leave out providers pricing in another currency.
    pub currency: Option<Currency>,
    /// At most this many routes (central's default is 20, its maximum
    /// [`MAX_ROUTE_LIMIT`]).
    pub limit: Option<u16>,
}

impl RouteQuery {
    /// Every willing provider for `number`, central's default limit.
    pub fn new(number: E164) -> RouteQuery {
        RouteQuery {
            number,
            max_rate: None,
            currency: None,
            limit: None,
        }
    }
}

/// How a SIP address is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// Where a provider accepts calls.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SipAddress {
    /// `host:port` or `[v6]:port`.
    pub address: String,
    pub transport: Transport,
}

/// One willing provider: its own longest prefix matching the number and
/// the terms in effect for it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Route {
    pub provider_id: u64,
    /// The provider's name.
    #[serde(rename = "provider")]
    pub provider_name: String,
    pub sip_addresses: Vec<SipAddress>,
    pub prefix: Prefix,
    pub rate_per_minute: Decimal,
    pub connect_fee: Decimal,
    /// First billed block, seconds.
    pub first_increment: u32,
    /// Every following block, seconds.
    pub next_increment: u32,
    pub currency: Currency,
    /// The provider's rate version these terms come from (goes in the ticket).
    pub rate_version: u64,
}

#[derive(Deserialize)]
struct RouteAnswer {
    routes: Vec<Route>,
}

impl Route {
    /// What central must never send: a negative or over-precise price, a
    /// zero or absurd increment, a provider without an address.
    fn check(&self) -> Result<(), String> {
        check_price(self.rate_per_minute).map_err(|e| format!("rate_per_minute: {e}"))?;
        check_price(self.connect_fee).map_err(|e| format!("connect_fee: {e}"))?;
        for (name, v) in [
            ("first_increment", self.first_increment),
            ("next_increment", self.next_increment),
        ] {
            if !(1..=MAX_INCREMENT_SECONDS).contains(&v) {
                return Err(format!("{name} {v} out of range"));
            }
        }
        if self.sip_addresses.is_empty() {
            return Err(format!("provider {} has no SIP address", self.provider_id));
        }
        Ok(())
    }
}

impl CentralClient {
    /// The willing providers for `query.number`, cheapest first (works
    /// without a client certificate).
    pub async fn routes(&self, query: &RouteQuery) -> Result<Vec<Route>, CentralError> {
        let mut params: Vec<(&str, String)> = vec![("number", query.number.to_string())];
        if let Some(max) = query.max_rate {
            params.push(("max_rate", max.normalize().to_string()));
        }
        if let Some(c) = query.currency {
            params.push(("currency", c.to_string()));
        }
        if let Some(limit) = query.limit {
            params.push(("limit", limit.to_string()));
        }
        let answer = self
            .send(Method::GET, "/v1/routes", self.timeouts().request, |r| {
                r.query(&params)
            })
            .await?;
        let parsed: RouteAnswer = answer.json(&[StatusCode::OK])?;
        for route in &parsed.routes {
            route.check().map_err(|e| answer.bad(e))?;
            if !route.prefix.matches(&query.number) {
                return Err(answer.bad(format!(
                    "route prefix {} does not match {}",
                    route.prefix, query.number
                )));
            }
        }
        Ok(parsed.routes)
    }
}
