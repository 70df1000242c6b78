//! Rating one call, and the longest call a prepaid balance pays for.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use provider_sdk::money::Currency;
use provider_sdk::number::{Prefix, E164};
use provider_sdk::ticket::settle::amount;
use provider_sdk::ticket::RateTerms;
use rust_decimal::Decimal;

use super::config::PlanKind;
use super::error::RateError;
use super::increments::MAX_DURATION_SECONDS;
use super::plan::Plan;

/// What is known of a call before its duration: where it went, when it was
/// answered, the subscriber's zone and the carrying provider's terms (the
/// ones on the ticket).
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub destination: &'a E164,
    /// Answer time; it alone picks the period (see the module docs).
    pub answered_at: DateTime<Utc>,
    /// The subscriber's zone (or [`Plan::default_time_zone`]).
    pub time_zone: Tz,
    pub provider: &'a RateTerms,
}

/// Which rule priced the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Unanswered (0 s): nothing billed, no rule looked up.
    Unanswered,
    /// The provider's terms with this markup in percent.
    Markup { percent: Decimal },
    /// The retail deck's entry for this prefix.
    Retail { prefix: Prefix },
}

/// One rated call. `price` and `cost` are each rounded once with the
/// currency's rounding; `margin` is their difference and may be negative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rated {
    /// Billable seconds on the subscriber side (plan increments, minimum).
    pub billable_seconds: u64,
    /// The price to the subscriber.
    pub price: Decimal,
    /// The per-minute rate the subscriber paid (after multiplier and markup).
    pub rate_per_minute: Decimal,
    /// Billable seconds under the provider's own increments.
    pub provider_billable_seconds: u64,
    /// What the home provider owes the provider, rounded.
    pub cost: Decimal,
    /// The same, unrounded: the amount the settlement ledger computes from
    /// the ticket (`provider_sdk::ticket::settle::amount`).
    pub cost_exact: Decimal,
    /// `price - cost`.
    pub margin: Decimal,
    pub currency: Currency,
    /// The period at answer time.
    pub period: Arc<str>,
    pub rule: Rule,
}

/// The longest call a balance pays for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxDuration {
    /// At most this many seconds (0: not even one second is affordable).
    Seconds(u64),
    /// The balance covers a call of [`MAX_DURATION_SECONDS`]: no limit.
    Unlimited,
}

/// A call's prices resolved for its period and destination; the price of
/// `b` billable seconds is `fixed + (connect60 + rate × b) × factor / 6000`,
/// with the one division last so nothing is rounded on the way.
struct Tariff {
    fixed: Decimal,
    connect60: Decimal,
    rate: Decimal,
    factor: Decimal,
    period: usize,
    rule: Rule,
}

const SIXTY: Decimal = Decimal::from_parts(60, 0, 0, false, 0);
const HUNDRED: Decimal = Decimal::from_parts(100, 0, 0, false, 0);
const SIX_THOUSAND: Decimal = Decimal::from_parts(6000, 0, 0, false, 0);

impl Tariff {
    fn price(&self, billable: u64) -> Option<Decimal> {
        if billable == 0 {
            return Some(Decimal::ZERO);
        }
        let usage = self.rate.checked_mul(Decimal::from(billable))?;
        let scaled = self
            .connect60
            .checked_add(usage)?
            .checked_mul(self.factor)?;
        self.fixed.checked_add(scaled.checked_div(SIX_THOUSAND)?)
    }
}

impl Plan {
    /// Rates a call that lasted `duration_seconds` from answer to hangup.
    ///
    /// A call of 0 s (unanswered) always rates to zero: no connect fee, no
    /// lookup, no error. Otherwise the provider's terms must be in the
    /// plan's currency, and a retail plan must have a rate for the
    /// destination at the answer time.
    pub fn rate(&self, call: &Call<'_>, duration_seconds: u64) -> Result<Rated, RateError> {
        if duration_seconds > MAX_DURATION_SECONDS {
            return Err(RateError::DurationTooLong {
                seconds: duration_seconds,
                max: MAX_DURATION_SECONDS,
            });
        }
        if duration_seconds == 0 {
            let zero = self.rounding.apply(Decimal::ZERO);
            let period = self.period_index(call.answered_at, call.time_zone);
            return Ok(Rated {
                billable_seconds: 0,
                price: zero,
                rate_per_minute: Decimal::ZERO,
                provider_billable_seconds: 0,
                cost: zero,
                cost_exact: Decimal::ZERO,
                margin: zero,
                currency: self.currency,
                period: self.periods[period].name.clone(),
                rule: Rule::Unanswered,
            });
        }
        let tariff = self.tariff(call)?;
        let billable = self.increments.billable_seconds(duration_seconds);
        let price = self
            .rounding
            .apply(tariff.price(billable).ok_or(RateError::Overflow)?);
        let provider_billable = call
            .provider
            .billable_seconds(duration_seconds)
            .ok_or(RateError::BadProviderTerms)?;
        let cost_exact = amount(call.provider, provider_billable).ok_or(RateError::Overflow)?;
        let cost = self.rounding.apply(cost_exact);
        let rate_per_minute = tariff
            .rate
            .checked_mul(tariff.factor)
            .and_then(|r| r.checked_div(HUNDRED))
            .ok_or(RateError::Overflow)?
            .normalize();
        Ok(Rated {
            billable_seconds: billable,
            price,
            rate_per_minute,
            provider_billable_seconds: provider_billable,
            cost,
            cost_exact,
            margin: price - cost,
            currency: self.currency,
            period: self.periods[tariff.period].name.clone(),
            rule: tariff.rule,
        })
    }

    /// The longest call (seconds from answer) whose price stays within
    /// `balance`, for ending a prepaid call when the balance runs out.
    ///
    /// Exact: a call of the returned length costs at most `balance`, one
    /// second more costs more (the connect fee, minimum, increments and
    /// rounding all count). Priced at `call.answered_at`'s period; compute
    /// it at answer time, since the period may change while a call rings.
    pub fn max_duration(
        &self,
        call: &Call<'_>,
        balance: Decimal,
    ) -> Result<MaxDuration, RateError> {
        let tariff = self.tariff(call)?;
        let first = self.increments.smallest_block();
        let next = u64::from(self.increments.next());
        let affordable = |n: u64| {
            tariff
                .price(first + n * next)
                .is_some_and(|p| self.rounding.apply(p) <= balance)
        };
        if first > MAX_DURATION_SECONDS || !affordable(0) {
            return Ok(MaxDuration::Seconds(0));
        }
        let n_max = (MAX_DURATION_SECONDS - first) / next;
        if affordable(n_max) {
            return Ok(MaxDuration::Unlimited);
        }
        // The price is non-decreasing in n: affordable(lo), !affordable(hi).
        let (mut lo, mut hi) = (0, n_max);
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if affordable(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Ok(MaxDuration::Seconds(first + lo * next))
    }

    fn tariff(&self, call: &Call<'_>) -> Result<Tariff, RateError> {
        if call.provider.currency != self.currency {
            return Err(RateError::CurrencyMismatch {
                plan: self.name.to_string(),
                plan_currency: self.currency,
                provider_currency: call.provider.currency,
            });
        }
        let period_index = self.period_index(call.answered_at, call.time_zone);
        let period = &self.periods[period_index];
        let overflow = RateError::Overflow;
        match self.kind {
            PlanKind::Markup => Ok(Tariff {
                fixed: self
                    .connect_fee
                    .checked_add(self.markup_per_call)
                    .ok_or(overflow)?,
                connect60: call
                    .provider
                    .connect_fee
                    .checked_mul(SIXTY)
                    .ok_or(RateError::Overflow)?,
                rate: call
                    .provider
                    .per_minute
                    .checked_mul(period.multiplier)
                    .ok_or(RateError::Overflow)?,
                factor: HUNDRED + period.markup_percent,
                period: period_index,
                rule: Rule::Markup {
                    percent: period.markup_percent,
                },
            }),
            PlanKind::Retail => {
                let entry = period
                    .deck
                    .as_ref()
                    .and_then(|d| d.lookup(call.answered_at, call.destination))
                    .ok_or_else(|| RateError::NoRate {
                        plan: self.name.to_string(),
                        destination: *call.destination,
                    })?;
                Ok(Tariff {
                    fixed: self
                        .connect_fee
                        .checked_add(entry.connect_fee)
                        .ok_or(overflow)?,
                    connect60: Decimal::ZERO,
                    rate: entry
                        .rate_per_minute
                        .checked_mul(period.multiplier)
                        .ok_or(RateError::Overflow)?,
                    factor: HUNDRED,
                    period: period_index,
                    rule: Rule::Retail {
                        prefix: entry.prefix,
                    },
                })
            }
        }
    }
}
