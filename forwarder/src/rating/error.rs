//! Why a plan was refused at load, and why a call could not be rated.

use std::path::PathBuf;

use provider_sdk::money::Currency;
use provider_sdk::number::E164;
use rust_decimal::Decimal;

/// A plan (or the rounding table) refused when the configuration is loaded.
/// Every variant names the plan and the offending setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("plan {plan:?}: {field} must be at least 1 second")]
    ZeroIncrement { plan: String, field: &'static str },
    #[error("plan {plan:?}: {field} must not be negative (got {value})")]
    Negative {
        plan: String,
        field: String,
        value: Decimal,
    },
    #[error("plan {plan:?}: {field} = {value} has more than {max} decimal places")]
    TooPrecise {
        plan: String,
        field: String,
        value: Decimal,
        max: u32,
    },
    #[error("plan {plan:?}: {field} = {value} is out of range ({limit})")]
    OutOfRange {
        plan: String,
        field: String,
        value: String,
        limit: &'static str,
    },
    #[error(
        "plan {plan:?}: unknown currency {currency:?} (add a [rounding.{currency}] table to use it)"
    )]
    UnknownCurrency { plan: String, currency: String },
    #[error("rounding: {currency:?} is not an ISO 4217 code of three uppercase letters")]
    BadCurrencyCode { currency: String },
    #[error("rounding for {currency}: at most {max} decimal places, got {decimals}")]
    BadRoundingDecimals {
        currency: Currency,
        decimals: u32,
        max: u32,
    },
    #[error("plan {plan:?}: unknown time zone {name:?} (expected an IANA name such as \"Europe/Berlin\")")]
    UnknownTimeZone { plan: String, name: String },
    #[error("plan {plan:?}: {setting} is only for {kind} plans")]
    WrongKind {
        plan: String,
        setting: String,
        kind: &'static str,
    },
    #[error("plan {plan:?}: {setting} is required for {kind} plans")]
    Missing {
        plan: String,
        setting: &'static str,
        kind: &'static str,
    },
    #[error("plan {plan:?}: period {period:?} sets more than one of multiplier, markup_percent and deck")]
    PeriodPriceConflict { plan: String, period: String },
    #[error("plan {plan:?}: period {period:?} has no windows")]
    PeriodWithoutWindows { plan: String, period: String },
    #[error("plan {plan:?}: period {period:?}: {message}")]
    BadWindow {
        plan: String,
        period: String,
        message: String,
    },
    #[error("plan {plan:?}: periods {first:?} and {second:?} overlap on {day} at {time}")]
    PeriodOverlap {
        plan: String,
        first: String,
        second: String,
        day: &'static str,
        time: String,
    },
    #[error("plan {plan:?}: no period covers {day} {time} (periods must cover the whole week)")]
    PeriodGap {
        plan: String,
        day: &'static str,
        time: String,
    },
    #[error("plan {plan:?}: more than {max} periods")]
    TooManyPeriods { plan: String, max: usize },
    #[error("plan {plan:?}: rate deck {path:?}: {message}")]
    Deck {
        plan: String,
        path: PathBuf,
        message: String,
    },
}

/// A call that could not be rated with a valid plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error(
        "plan {plan:?} has no rate for {destination} (no deck prefix matches it at that time)"
    )]
    NoRate { plan: String, destination: E164 },
    #[error("plan {plan:?} bills in {plan_currency} but the provider's terms are in {provider_currency}")]
    CurrencyMismatch {
        plan: String,
        plan_currency: Currency,
        provider_currency: Currency,
    },
    #[error("the provider's billing increments must be at least 1 second")]
    BadProviderTerms,
    #[error("a call of {seconds} s is longer than the {max} s a call may last")]
    DurationTooLong { seconds: u64, max: u64 },
    #[error("the price of the call is out of the range of exact decimals")]
    Overflow,
}
