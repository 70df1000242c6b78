//! Provider selection: which of the willing providers carries a call, in
//! which order the others are tried, and why.
//!
//! Central says who is willing and at what price ([`Candidate`]s); the
//! caller measures latency (an on-demand OPTIONS probe blended with the
//! prober's background [`Health`]). [`select`] turns both into a
//! [`Decision`] that keeps every candidate with its cost, latency, score
//! and verdict, so "why this provider" can be answered for every call.
//!
//! The default [`Policy`] makes unit cost dominant: candidates are compared
//! by their cost for a typical call ([`Policy::typical_call_secs`], so that
//! connect fees and billing increments count, not only the per-minute
//! rate); those within [`Policy::cost_tolerance`] of the cheapest form a
//! band ordered by latency, the rest follow by cost (then latency). A
//! candidate is excluded when it is down (background probes), did not
//! answer the on-demand probe, is over [`Policy::latency_ceiling`], or is
//! priced in another currency than the call.
//!
//! ```
//! use std::time::Duration;
//! use provider_sdk::select::{select, Candidate, Latency, Policy};
//! use provider_sdk::ticket::RateTerms;
//! use provider_sdk::sip::SipTarget;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rate = |per_minute: &str| -> Result<RateTerms, Box<dyn std::error::Error>> {
//!     Ok(RateTerms { per_minute: per_minute.parse()?, connect_fee: "0".parse()?,
//!         first_increment: 60, next_increment: 60, currency: "EUR".parse()?, version: 1 })
//! };
//! let candidates = vec![
//!     Candidate { provider_id: 1, name: "a".into(), prefix: "44".into(), rate: rate("0.0100")?,
//!                 target: SipTarget::parse("sip:127.0.0.1:5071")? },
//!     Candidate { provider_id: 2, name: "b".into(), prefix: "4420".into(), rate: rate("0.0101")?,
//!                 target: SipTarget::parse("sip:127.0.0.1:5072")? },
//! ];
//! let latency = vec![
//!     Latency::probed(Duration::from_millis(80)),
//!     Latency::probed(Duration::from_millis(5)),
//! ];
//! let decision = select(&candidates, &latency, &Policy::default(), "EUR".parse()?);
//! // Both are within 5 % of the cheapest: the faster one goes first.
//! assert_eq!(decision.order(), vec![1, 0]);
//! # Ok(()) }
//! ```

use std::cmp::Ordering;
use std::time::Duration;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::Currency;
use crate::sip::prober::{Health, ProbeResult, State};
use crate::sip::SipTarget;
use crate::ticket::RateTerms;

/// A provider willing to carry the call, as central answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub provider_id: u64,
    pub name: String,
    /// The provider's own longest prefix matching the number.
    pub prefix: String,
    pub rate: RateTerms,
    /// Where to send the INVITE (and the OPTIONS probes).
    pub target: SipTarget,
}

/// What is known about a candidate's latency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Latency {
    /// The on-demand probe for this call, if one was made.
    pub probe: Option<ProbeResult>,
    /// Background statistics, if any.
    pub health: Option<Health>,
}

impl Latency {
    /// Only an on-demand probe that answered after `rtt`.
    pub fn probed(rtt: Duration) -> Latency {
        Latency {
            probe: Some(ProbeResult::Answered { status: 200, rtt }),
            health: None,
        }
    }
}

/// How candidates are ranked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Relative cost band within which latency decides, e.g. 0.05 = 5 %.
    pub cost_tolerance: Decimal,
    /// Candidates slower than this are excluded.
    #[serde(with = "millis")]
    pub latency_ceiling: Duration,
    /// Call length the cost comparison assumes (connect fee and billing
    /// increments are spread over it).
    pub typical_call_secs: u32,
    /// Weight of the on-demand probe against the background average (0..=1).
    pub probe_weight: Decimal,
    /// Added to the latency per unit of background failure ratio (a
    /// provider that failed half its probes gets half of this added).
    #[serde(with = "millis")]
    pub failure_penalty: Duration,
    /// Most candidates kept in the attempt order (0 = all).
    pub max_attempts: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            cost_tolerance: Decimal::new(5, 2),
            latency_ceiling: Duration::from_millis(500),
            typical_call_secs: 180,
            probe_weight: Decimal::new(5, 1),
            failure_penalty: Duration::from_millis(200),
            max_attempts: 0,
        }
    }
}

/// Why a candidate is not tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Exclusion {
    /// Background probes say the provider is down.
    Down,
    /// The on-demand OPTIONS got no answer in time.
    NoProbeAnswer,
    /// The on-demand OPTIONS could not be sent.
    ProbeFailed { detail: String },
    /// Slower than the latency ceiling.
    TooSlow {
        #[serde(with = "millis")]
        latency: Duration,
    },
    /// Priced in another currency than the call.
    Currency { currency: Currency },
    /// Beyond [`Policy::max_attempts`].
    BeyondMaxAttempts,
}

/// One candidate in a [`Decision`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scored {
    pub provider_id: u64,
    pub name: String,
    pub prefix: String,
    pub target: String,
    pub rate: RateTerms,
    /// Cost of a typical call divided by its minutes (per-minute equivalent).
    pub unit_cost: Decimal,
    /// Blended latency used for ranking, with the failure penalty.
    #[serde(with = "opt_millis")]
    pub latency: Option<Duration>,
    /// Background state, if known.
    pub state: Option<String>,
    /// Within the cost band of the cheapest eligible candidate.
    pub in_band: bool,
    /// Position in the attempt order (0 = chosen), or why it is excluded.
    pub rank: Option<usize>,
    pub excluded: Option<Exclusion>,
}

/// The outcome of [`select`]: every candidate, scored, in central's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub policy: Policy,
    pub candidates: Vec<Scored>,
}

impl Decision {
    /// Indexes into `candidates` in attempt order (the first is chosen).
    pub fn order(&self) -> Vec<usize> {
        let mut ranked: Vec<(usize, usize)> = self
            .candidates
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.rank.map(|r| (r, i)))
            .collect();
        ranked.sort_unstable();
        ranked.into_iter().map(|(_, i)| i).collect()
    }

    /// The chosen candidate, if any is eligible.
    pub fn chosen(&self) -> Option<&Scored> {
        self.order().first().map(|&i| &self.candidates[i])
    }
}

/// Cost of a call of `secs` seconds under `rate`, per minute of it.
pub fn unit_cost(rate: &RateTerms, secs: u32) -> Decimal {
    let secs = secs.max(1);
    let billable = rate
        .billable_seconds(u64::from(secs))
        .unwrap_or(u64::from(secs));
    let minutes = Decimal::from(secs) / Decimal::from(60);
    let cost = rate.connect_fee + rate.per_minute * Decimal::from(billable) / Decimal::from(60);
    cost / minutes
}

/// The latency used for ranking: the on-demand probe and the background
/// average blended by `probe_weight`, plus the failure penalty.
fn blended(latency: &Latency, policy: &Policy) -> Option<Duration> {
    let probe = match &latency.probe {
        Some(ProbeResult::Answered { rtt, .. }) => Some(*rtt),
        _ => None,
    };
    let background = latency.health.as_ref().and_then(|h| h.srtt);
    let weight = policy.probe_weight.clamp(Decimal::ZERO, Decimal::ONE);
    let micros = |d: Duration| Decimal::from(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let base = match (probe, background) {
        (Some(p), Some(b)) => Some(micros(p) * weight + micros(b) * (Decimal::ONE - weight)),
        (Some(p), None) => Some(micros(p)),
        (None, Some(b)) => Some(micros(b)),
        (None, None) => None,
    }?;
    let penalty = latency.health.as_ref().map_or(Decimal::ZERO, |h| {
        let total = h.answers + h.timeouts + h.failures;
        if total == 0 {
            Decimal::ZERO
        } else {
            micros(policy.failure_penalty) * Decimal::from(h.timeouts + h.failures)
                / Decimal::from(total)
        }
    });
    let total = (base + penalty).round();
    Some(Duration::from_micros(total.to_u64().unwrap_or(u64::MAX)))
}

fn exclusion(
    candidate: &Candidate,
    latency: &Latency,
    blended: Option<Duration>,
    policy: &Policy,
    currency: Currency,
) -> Option<Exclusion> {
    if candidate.rate.currency != currency {
        return Some(Exclusion::Currency {
            currency: candidate.rate.currency,
        });
    }
    if latency.health.as_ref().map(|h| h.state) == Some(State::Down) {
        return Some(Exclusion::Down);
    }
    match &latency.probe {
        Some(ProbeResult::Timeout) => return Some(Exclusion::NoProbeAnswer),
        Some(ProbeResult::Failed { detail }) => {
            return Some(Exclusion::ProbeFailed {
                detail: detail.clone(),
            })
        }
        _ => {}
    }
    match blended {
        Some(l) if l > policy.latency_ceiling => Some(Exclusion::TooSlow { latency: l }),
        _ => None,
    }
}

/// Ranks `candidates` (with `latency[i]` for `candidates[i]`; missing
/// entries count as unknown latency) for a call priced in `currency`.
pub fn select(
    candidates: &[Candidate],
    latency: &[Latency],
    policy: &Policy,
    currency: Currency,
) -> Decision {
    let unknown = Latency::default();
    let mut scored: Vec<Scored> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let l = latency.get(i).unwrap_or(&unknown);
            let b = blended(l, policy);
            Scored {
                provider_id: c.provider_id,
                name: c.name.clone(),
                prefix: c.prefix.clone(),
                target: c.target.uri().to_owned(),
                rate: c.rate.clone(),
                unit_cost: unit_cost(&c.rate, policy.typical_call_secs).round_dp(6),
                latency: b,
                state: l
                    .health
                    .as_ref()
                    .map(|h| format!("{:?}", h.state).to_lowercase()),
                in_band: false,
                rank: None,
                excluded: exclusion(c, l, b, policy, currency),
            }
        })
        .collect();
    let cheapest = scored
        .iter()
        .filter(|s| s.excluded.is_none())
        .map(|s| s.unit_cost)
        .min();
    if let Some(cheapest) = cheapest {
        let limit = cheapest * (Decimal::ONE + policy.cost_tolerance.max(Decimal::ZERO));
        for s in scored.iter_mut().filter(|s| s.excluded.is_none()) {
            s.in_band = s.unit_cost <= limit;
        }
    }
    let mut eligible: Vec<usize> = (0..scored.len())
        .filter(|&i| scored[i].excluded.is_none())
        .collect();
    // Unknown latency sorts after every measured one.
    let lat = |s: &Scored| s.latency.unwrap_or(Duration::MAX);
    eligible.sort_by(|&a, &b| {
        let (x, y) = (&scored[a], &scored[b]);
        match (x.in_band, y.in_band) {
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (true, true) => lat(x)
                .cmp(&lat(y))
                .then(x.unit_cost.cmp(&y.unit_cost))
                .then(a.cmp(&b)),
            (false, false) => x
                .unit_cost
                .cmp(&y.unit_cost)
                .then(lat(x).cmp(&lat(y)))
                .then(a.cmp(&b)),
        }
    });
    for (rank, &i) in eligible.iter().enumerate() {
        if policy.max_attempts > 0 && rank >= policy.max_attempts {
            scored[i].excluded = Some(Exclusion::BeyondMaxAttempts);
        } else {
            scored[i].rank = Some(rank);
        }
    }
    Decision {
        policy: policy.clone(),
        candidates: scored,
    }
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_micros() as f64 / 1000.0)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = u64::deserialize(d)?;
        Ok(Duration::from_millis(ms))
    }
}

mod opt_millis {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_micros() as f64 / 1000.0),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_minute: &str, connect: &str, first: u32, next: u32) -> RateTerms {
        RateTerms {
            per_minute: per_minute.parse().unwrap(),
            connect_fee: connect.parse().unwrap(),
            first_increment: first,
            next_increment: next,
            currency: "EUR".parse().unwrap(),
            version: 1,
        }
    }

    fn candidate(id: u64, rate: RateTerms) -> Candidate {
        Candidate {
            provider_id: id,
            name: format!("p{id}"),
            prefix: "44".into(),
            rate,
            target: SipTarget::parse(&format!("sip:127.0.0.1:{}", 5000 + id)).unwrap(),
        }
    }

    fn ms(n: u64) -> Latency {
        Latency::probed(Duration::from_millis(n))
    }

    fn eur() -> Currency {
        "EUR".parse().unwrap()
    }

    fn ids(d: &Decision) -> Vec<u64> {
        d.order()
            .into_iter()
            .map(|i| d.candidates[i].provider_id)
            .collect()
    }

    #[test]
    fn unit_cost_counts_connect_fees_and_increments() {
        // 180 s at 0.01/min, 60/60: 3 minutes → 0.01 per minute.
        assert_eq!(
            unit_cost(&rate("0.01", "0", 60, 60), 180),
            "0.01".parse().unwrap()
        );
        // A connect fee of 0.03 spread over 3 minutes adds 0.01 per minute.
        assert_eq!(
            unit_cost(&rate("0.01", "0.03", 60, 60), 180),
            "0.02".parse().unwrap()
        );
        // 100 s billed 60/60 is 120 s: 0.012 per minute of call.
        assert_eq!(
            unit_cost(&rate("0.01", "0", 60, 60), 100),
            "0.012".parse().unwrap()
        );
        assert_eq!(
            unit_cost(&rate("0.01", "0", 1, 1), 100),
            "0.01".parse().unwrap()
        );
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            rates: Vec<RateTerms>,
            latency: Vec<Latency>,
            expected: Vec<u64>,
        }
        let cases = vec![
            Case {
                name: "cheapest first when prices differ beyond the band",
                rates: vec![rate("0.020", "0", 1, 1), rate("0.010", "0", 1, 1)],
                latency: vec![ms(1), ms(100)],
                expected: vec![2, 1],
            },
            Case {
                name: "within the band the faster wins",
                rates: vec![rate("0.0100", "0", 1, 1), rate("0.0104", "0", 1, 1)],
                latency: vec![ms(90), ms(10)],
                expected: vec![2, 1],
            },
            Case {
                name: "same price: lower latency",
                rates: vec![rate("0.01", "0", 1, 1), rate("0.01", "0", 1, 1)],
                latency: vec![ms(30), ms(20)],
                expected: vec![2, 1],
            },
            Case {
                name: "a connect fee can make the lower rate dearer",
                rates: vec![rate("0.009", "0.05", 1, 1), rate("0.010", "0", 1, 1)],
                latency: vec![ms(10), ms(10)],
                expected: vec![2, 1],
            },
            Case {
                name: "no probe answer and over the ceiling are excluded",
                rates: vec![
                    rate("0.001", "0", 1, 1),
                    rate("0.002", "0", 1, 1),
                    rate("0.003", "0", 1, 1),
                ],
                latency: vec![
                    Latency {
                        probe: Some(ProbeResult::Timeout),
                        health: None,
                    },
                    ms(900),
                    ms(10),
                ],
                expected: vec![3],
            },
            Case {
                name: "unknown latency ranks after measured ones in the band",
                rates: vec![rate("0.01", "0", 1, 1), rate("0.01", "0", 1, 1)],
                latency: vec![Latency::default(), ms(50)],
                expected: vec![2, 1],
            },
        ];
        for case in cases {
            let candidates: Vec<Candidate> = case
                .rates
                .into_iter()
                .enumerate()
                .map(|(i, r)| candidate(i as u64 + 1, r))
                .collect();
            let d = select(&candidates, &case.latency, &Policy::default(), eur());
            assert_eq!(ids(&d), case.expected, "{}", case.name);
        }
    }

    #[test]
    fn down_providers_and_other_currencies_are_excluded_with_reasons() {
        let mut usd = rate("0.001", "0", 1, 1);
        usd.currency = "USD".parse().unwrap();
        let candidates = vec![
            candidate(1, usd),
            candidate(2, rate("0.002", "0", 1, 1)),
            candidate(3, rate("0.003", "0", 1, 1)),
        ];
        let config = crate::sip::prober::ProbeConfig::default();
        let mut down = Health::default();
        for _ in 0..config.down_after {
            down.record(&ProbeResult::Timeout, &config);
        }
        let latency = vec![
            ms(5),
            Latency {
                probe: None,
                health: Some(down),
            },
            ms(5),
        ];
        let d = select(&candidates, &latency, &Policy::default(), eur());
        assert_eq!(ids(&d), vec![3]);
        assert!(matches!(
            d.candidates[0].excluded,
            Some(Exclusion::Currency { .. })
        ));
        assert_eq!(d.candidates[1].excluded, Some(Exclusion::Down));
        assert_eq!(d.chosen().map(|s| s.provider_id), Some(3));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["candidates"][1]["excluded"]["reason"], "down");
    }

    #[test]
    fn background_failures_add_latency() {
        let config = crate::sip::prober::ProbeConfig::default();
        let mut flaky = Health::default();
        flaky.record(
            &ProbeResult::Answered {
                status: 200,
                rtt: Duration::from_millis(10),
            },
            &config,
        );
        flaky.record(&ProbeResult::Timeout, &config);
        let policy = Policy::default();
        let l = Latency {
            probe: Some(ProbeResult::Answered {
                status: 200,
                rtt: Duration::from_millis(10),
            }),
            health: Some(flaky),
        };
        // 10 ms blended, plus half the 200 ms penalty.
        assert_eq!(blended(&l, &policy), Some(Duration::from_millis(110)));
    }

    #[test]
    fn max_attempts_cuts_the_order() {
        let candidates: Vec<Candidate> = (1..=4)
            .map(|i| candidate(i, rate(&format!("0.0{i}"), "0", 1, 1)))
            .collect();
        let policy = Policy {
            max_attempts: 2,
            ..Policy::default()
        };
        let d = select(&candidates, &[ms(1), ms(1), ms(1), ms(1)], &policy, eur());
        assert_eq!(ids(&d), vec![1, 2]);
        assert_eq!(d.candidates[3].excluded, Some(Exclusion::BeyondMaxAttempts));
    }
}
