//! Rating: what a call costs the subscriber, what it costs the home
//! provider, and the margin between them. Pure logic on exact decimals
//! (`rust_decimal`): no I/O, no database, no clock.
//!
//! # Plans
//!
//! A deployment configures named plans (`[plans.<name>]`) of two kinds:
//!
//! - **markup**: the provider's rate terms (those on the ticket) with a
//!   markup. The price of `b` billable seconds (the *plan's* increments and
//!   minimum) is
//!   `connect_fee + markup_per_call + (provider connect fee + provider rate
//!   per minute × multiplier × b / 60) × (1 + markup_percent / 100)`.
//!   The provider's increments do not enter the price, only the cost, so a
//!   plan billing 60/60 over a provider billing 1/1 earns on the rounding
//!   up, and a plan billing 1/1 over a provider billing 60/60 can lose.
//! - **retail**: the home provider's own rate deck (a CSV file as read by
//!   [`provider_sdk::ratedeck::RateDeck`]): the entry of the longest prefix
//!   matching the destination, in force at the answer time, gives the rate
//!   per minute; its connect fee is added to the plan's. The deck's own
//!   increments are not used: the plan's are the subscriber's.
//!
//! Both have a currency, connect fee, first and next increments (60/60,
//! 30/6, 1/1, ...) and a minimum billable duration (an answered call
//! shorter than it bills as if it lasted the minimum, then increments
//! apply: see [`Increments`]).
//!
//! # Periods
//!
//! Optional named periods (`[plans.<name>.periods.<period>]`) split the
//! week by day and local time *in the subscriber's time zone*; together
//! they must cover every minute of the week exactly once (overlaps and gaps
//! are refused at load). A period may set a `multiplier` on the per-minute
//! rate, its own `markup_percent` (markup plans) or its own `deck` (retail
//! plans). A plan without periods has one, named `all`.
//!
//! **A call is rated entirely by the period at its answer time**, as local
//! wall-clock time in the subscriber's zone: a call answered at 07:59 in an
//! off-peak period stays off-peak when it runs past 08:00. Across a
//! daylight-saving change the local time is taken from the UTC instant, so
//! a call answered at 01:59:30 before the spring change is in the 01:xx
//! period, and both passes through a repeated autumn hour (02:30 CEST and
//! 02:30 CET) are in the 02:xx period.
//!
//! # Rounding
//!
//! Nothing is rounded during the computation. The final price of a call,
//! and separately its cost, are rounded once, to the decimal places and
//! mode of the currency ([`RoundingTable`]: 2 places half-up for EUR, USD,
//! GBP, ...; 0 for JPY, KRW, ...; 3 for BHD, KWD, ...), overridable per
//! currency with `[rounding.<CODE>]` (`mode` is `half-up`, `half-even`,
//! `up` or `down`). A plan in a currency absent from the table is refused.
//!
//! # Results
//!
//! [`Plan::rate`] returns a [`Rated`]: billable seconds, price, the cost at
//! the provider's terms (rounded, and exact as the settlement ledger
//! computes it), the margin (may be negative: it is recorded as it is),
//! currency, period and [`Rule`]. **An unanswered call (0 s) rates to zero:
//! no connect fee, no cost.** [`Plan::max_duration`] gives the longest call
//! a prepaid balance pays for.
//!
//! # Configuration
//!
//! ```toml
//! [rounding.JPY]                 # optional: override or add a currency
//! decimals = 0
//! mode = "half-up"
//!
//! [plans.standard]
//! kind = "markup"
//! currency = "EUR"
//! connect_fee = "0"              # amounts: strings or integers, never floats
//! first_increment = 60
//! next_increment = 60
//! minimum_seconds = 0
//! time_zone = "Europe/Berlin"    # for subscribers without their own (default UTC)
//! markup_percent = "20"
//! markup_per_call = "0.01"
//!
//! [plans.standard.periods.peak]
//! windows = [{ days = ["mon-fri"], from = "08:00", to = "18:00" }]
//!
//! [plans.standard.periods.off-peak]
//! markup_percent = "10"
//! windows = [
//!     { days = ["mon-fri"], from = "00:00", to = "08:00" },
//!     { days = ["mon-fri"], from = "18:00", to = "24:00" },
//!     { days = ["sat-sun"], from = "00:00", to = "24:00" },
//! ]
//!
//! [plans.retail]
//! kind = "retail"
//! currency = "EUR"
//! deck = "/etc/forwarder/retail.csv"
//! connect_fee = "0.02"
//! first_increment = 30
//! next_increment = 6
//! minimum_seconds = 30
//!
//! [plans.retail.periods.day]
//! windows = [{ days = ["mon-sun"], from = "07:00", to = "21:00" }]
//!
//! [plans.retail.periods.night]
//! multiplier = "0.5"             # a window ending before it starts runs past midnight
//! windows = [{ days = ["mon-sun"], from = "21:00", to = "07:00" }]
//! ```
//!
//! # Example
//!
//! ```
//! use chrono::{TimeZone, Utc};
//! use forwarder::rating::{Call, MaxDuration, Plans, RatingConfig, Rule};
//! use provider_sdk::number::E164;
//! use provider_sdk::ratedeck::RateDeck;
//! use provider_sdk::ticket::RateTerms;
//! use rust_decimal_macros::dec;
//!
//! let config = RatingConfig::from_toml(r#"
//!     [plans.standard]
//!     kind = "markup"
//!     currency = "EUR"
//!     first_increment = 60
//!     next_increment = 60
//!     markup_percent = "20"
//!     markup_per_call = "0.01"
//!
//!     [plans.retail]
//!     kind = "retail"
//!     currency = "EUR"
//!     deck = "retail.csv"
//!     connect_fee = "0.02"
//!     first_increment = 30
//!     next_increment = 6
//!     minimum_seconds = 30
//!     [plans.retail.periods.day]
//!     windows = [{ days = ["mon-sun"], from = "07:00", to = "21:00" }]
//!     [plans.retail.periods.night]
//!     multiplier = "0.5"
//!     windows = [{ days = ["mon-sun"], from = "21:00", to = "07:00" }]
//! "#)?;
//! // The caller reads deck files; here the deck is in memory.
//! let plans = Plans::from_config(&config, |_path| {
//!     RateDeck::parse_csv(b"49,0.0500,0,60,60\n4930,0.0200,0,60,60\n")
//! })?;
//!
//! let provider = RateTerms {
//!     per_minute: dec!(0.0100),
//!     connect_fee: dec!(0),
//!     first_increment: 1,
//!     next_increment: 1,
//!     currency: "EUR".parse()?,
//!     version: 1,
//! };
//! let berlin: chrono_tz::Tz = "Europe/Berlin".parse()?;
//! let to = E164::parse("+49 30 123456")?;
//! let call = Call {
//!     destination: &to,
//!     // Saturday 23:00 in Berlin (CET): night.
//!     answered_at: Utc.with_ymd_and_hms(2026, 11, 28, 22, 0, 0).unwrap(),
//!     time_zone: berlin,
//!     provider: &provider,
//! };
//!
//! // Markup: 90 s bills 120 s: 0.01 + 0.0100 × 2 min × 1.20 = 0.034 → 0.03;
//! // the provider bills 90 s: 0.015 → 0.02 (half-up).
//! let r = plans.get("standard").unwrap().rate(&call, 90)?;
//! assert_eq!((r.billable_seconds, r.price, r.cost, r.margin), (120, dec!(0.03), dec!(0.02), dec!(0.01)));
//! assert_eq!(r.cost_exact, dec!(0.015));
//!
//! // Retail at night: 4930 at 0.0200 × 0.5; 45 s bills 48 s:
//! // 0.02 + 0.01 × 48 / 60 = 0.028 → 0.03.
//! let retail = plans.get("retail").unwrap();
//! let r = retail.rate(&call, 45)?;
//! assert_eq!((r.billable_seconds, r.price, &*r.period), (48, dec!(0.03), "night"));
//! assert_eq!(r.rule, Rule::Retail { prefix: "4930".parse()? });
//!
//! // Unanswered: zero, no connect fee.
//! assert_eq!(retail.rate(&call, 0)?.price, dec!(0.00));
//!
//! // Prepaid with 0.10 left: 504 s costs 0.02 + 0.084 = 0.104 → 0.10;
//! // 505 s bills 510 s: 0.105 → 0.11, over the balance.
//! assert_eq!(retail.max_duration(&call, dec!(0.10))?, MaxDuration::Seconds(504));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod deck;
mod error;
mod increments;
mod periods;
mod plan;
mod rate;
mod rounding;

pub use config::{PeriodConfig, PlanConfig, PlanKind, RatingConfig, WindowConfig};
pub use error::{PlanError, RateError};
pub use increments::{Increments, MAX_DURATION_SECONDS};
pub use periods::MAX_PERIODS;
pub use plan::{
    Plan, Plans, DEFAULT_PERIOD, MAX_MARKUP_PERCENT, MAX_MINIMUM_SECONDS, MAX_MULTIPLIER,
};
pub use rate::{Call, MaxDuration, Rated, Rule};
pub use rounding::{Rounding, RoundingMode, RoundingTable, MAX_ROUNDING_DECIMALS};

#[cfg(test)]
mod tests;
