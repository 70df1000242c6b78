//! How the final price (and the cost) of a call is rounded, per currency.
//!
//! Rounding happens once, on the final amount of a call; every step before
//! it is exact. The defaults follow the ISO 4217 minor units of common
//! currencies (2 decimals for EUR, USD, GBP, ...; 0 for JPY, KRW, ...;
//! 3 for BHD, KWD, ...), all rounding half-up. A `[rounding.<CODE>]` table
//! in the configuration overrides a default or adds a currency.

use std::collections::HashMap;

use provider_sdk::money::Currency;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use super::error::PlanError;

/// Most decimal places a currency may be rounded to.
pub const MAX_ROUNDING_DECIMALS: u32 = 8;

/// How an amount is brought to its decimal places. Amounts rounded here are
/// never negative, so `up` is the ceiling and `down` the floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoundingMode {
    /// Nearest; a tie goes away from zero (0.125 → 0.13).
    HalfUp,
    /// Nearest; a tie goes to the even digit (0.125 → 0.12, 0.135 → 0.14).
    HalfEven,
    /// Away from zero: any fraction of the last place counts (0.121 → 0.13).
    #[serde(alias = "ceiling")]
    Up,
    /// Towards zero: the fraction is dropped (0.129 → 0.12).
    #[serde(alias = "floor")]
    Down,
}

impl RoundingMode {
    fn strategy(self) -> RoundingStrategy {
        match self {
            RoundingMode::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            RoundingMode::HalfEven => RoundingStrategy::MidpointNearestEven,
            RoundingMode::Up => RoundingStrategy::AwayFromZero,
            RoundingMode::Down => RoundingStrategy::ToZero,
        }
    }
}

/// Decimal places and mode of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rounding {
    pub decimals: u32,
    pub mode: RoundingMode,
}

impl Rounding {
    /// `amount` rounded, written with exactly `decimals` places
    /// (`1.2` → `1.20`), so statements line up.
    pub fn apply(&self, amount: Decimal) -> Decimal {
        let mut r = amount.round_dp_with_strategy(self.decimals, self.mode.strategy());
        r.rescale(self.decimals);
        r
    }
}

/// The default table: (decimals, codes), all half-up.
const DEFAULTS: &[(u32, &[&str])] = &[
    (
        2,
        &[
            "EUR", "USD", "GBP", "CHF", "CAD", "AUD", "NZD", "SEK", "NOK", "DKK", "PLN", "CZK",
            "HUF", "RON", "BGN", "TRY", "ZAR", "BRL", "MXN", "ARS", "INR", "CNY", "HKD", "SGD",
            "TWD", "ILS", "AED", "SAR", "QAR", "EGP", "MAD", "THB", "PHP", "MYR", "IDR", "NGN",
            "KES", "UAH", "RUB", "RSD",
        ],
    ),
    (
        0,
        &[
            "JPY", "KRW", "CLP", "ISK", "VND", "PYG", "UGX", "XOF", "XAF", "RWF",
        ],
    ),
    (3, &["BHD", "KWD", "OMR", "JOD", "TND", "LYD", "IQD"]),
];

/// Rounding per currency: the defaults plus the configuration's overrides.
/// A currency absent from the table is unknown, and a plan in it is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoundingTable {
    by_currency: HashMap<Currency, Rounding>,
}

impl Default for RoundingTable {
    fn default() -> Self {
        let mut by_currency = HashMap::new();
        for &(decimals, codes) in DEFAULTS {
            for code in codes {
                if let Ok(c) = Currency::parse(code) {
                    by_currency.insert(
                        c,
                        Rounding {
                            decimals,
                            mode: RoundingMode::HalfUp,
                        },
                    );
                }
            }
        }
        RoundingTable { by_currency }
    }
}

impl RoundingTable {
    /// The defaults with `overrides` (currency code → rounding) applied.
    pub fn with_overrides<'a>(
        overrides: impl IntoIterator<Item = (&'a String, &'a Rounding)>,
    ) -> Result<RoundingTable, PlanError> {
        let mut table = RoundingTable::default();
        for (code, rounding) in overrides {
            let currency = Currency::parse(code).map_err(|_| PlanError::BadCurrencyCode {
                currency: code.chars().take(16).collect(),
            })?;
            if rounding.decimals > MAX_ROUNDING_DECIMALS {
                return Err(PlanError::BadRoundingDecimals {
                    currency,
                    decimals: rounding.decimals,
                    max: MAX_ROUNDING_DECIMALS,
                });
            }
            table.by_currency.insert(currency, *rounding);
        }
        Ok(table)
    }

    /// The rounding of `currency`, if it is known.
    pub fn get(&self, currency: Currency) -> Option<Rounding> {
        self.by_currency.get(&currency).copied()
    }
}
