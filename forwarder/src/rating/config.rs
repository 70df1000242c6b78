//! The configuration as written in TOML, before validation.
//!
//! These types only describe the shape; [`Plans::from_config`] checks every
//! value and turns them into [`Plan`]s.
//!
//! [`Plans::from_config`]: super::Plans::from_config
//! [`Plan`]: super::Plan

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use rust_decimal::Decimal;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::rounding::Rounding;

/// The rating part of the forwarder's configuration: named plans and
/// per-currency rounding overrides (`[plans.<name>]`, `[rounding.<CODE>]`).
/// It can be embedded in a larger configuration with `#[serde(flatten)]`,
/// so it does not refuse other top-level keys (the tables inside do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RatingConfig {
    #[serde(default)]
    pub plans: BTreeMap<String, PlanConfig>,
    #[serde(default)]
    pub rounding: BTreeMap<String, Rounding>,
}

impl RatingConfig {
    /// Reads a TOML document holding only `[plans.*]` and `[rounding.*]`.
    pub fn from_toml(text: &str) -> Result<RatingConfig, toml::de::Error> {
        toml::from_str(text)
    }
}

/// How a plan prices calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanKind {
    /// The provider's cost with a markup.
    Markup,
    /// The home provider's own retail rate deck.
    Retail,
}

impl PlanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanKind::Markup => "markup",
            PlanKind::Retail => "retail",
        }
    }
}

/// One `[plans.<name>]` table. Amounts are written as strings (`"0.05"`) or
/// integers (`20`); floats are refused because they are not exact.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    pub kind: PlanKind,
    /// ISO 4217 code; must be in the rounding table.
    pub currency: String,
    /// Fee per answered call, added to the price.
    #[serde(default, deserialize_with = "decimal")]
    pub connect_fee: Decimal,
    /// First billing block in seconds.
    pub first_increment: u32,
    /// Every following block in seconds.
    pub next_increment: u32,
    /// An answered call bills at least this long (before increments).
    #[serde(default)]
    pub minimum_seconds: u32,
    /// IANA zone for subscribers without their own (default `UTC`).
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Markup plans: percent added to the provider's cost (`20` = ×1.20).
    #[serde(default, deserialize_with = "optional_decimal")]
    pub markup_percent: Option<Decimal>,
    /// Markup plans: fixed amount added per answered call.
    #[serde(default, deserialize_with = "optional_decimal")]
    pub markup_per_call: Option<Decimal>,
    /// Retail plans: the rate deck file (CSV, as `provider_sdk::ratedeck`).
    #[serde(default)]
    pub deck: Option<PathBuf>,
    /// Named periods; none means one period, `all`, all week.
    #[serde(default)]
    pub periods: BTreeMap<String, PeriodConfig>,
}

/// One `[plans.<name>.periods.<period>]` table: when it applies and how it
/// changes the price. At most one of `multiplier`, `markup_percent` (markup
/// plans) and `deck` (retail plans); none means the plan's own prices.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodConfig {
    pub windows: Vec<WindowConfig>,
    /// Multiplies the per-minute rate (not the connect fee).
    #[serde(default, deserialize_with = "optional_decimal")]
    pub multiplier: Option<Decimal>,
    /// Markup plans: this period's markup instead of the plan's.
    #[serde(default, deserialize_with = "optional_decimal")]
    pub markup_percent: Option<Decimal>,
    /// Retail plans: this period's own rate deck instead of the plan's.
    #[serde(default)]
    pub deck: Option<PathBuf>,
}

/// Days and local times: `{ days = ["mon-fri"], from = "08:00", to = "18:00" }`.
/// `to` may be `"24:00"`; a `to` not after `from` runs past midnight.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    pub days: Vec<String>,
    pub from: String,
    pub to: String,
}

struct DecimalVisitor;

impl Visitor<'_> for DecimalVisitor {
    type Value = Decimal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decimal number written as a string (\"0.05\") or an integer")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Decimal, E> {
        let plain = !s.is_empty()
            && s.bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_digit() || b == b'.' || (i == 0 && b == b'-'));
        if !plain {
            return Err(E::custom(format!("{s:?} is not a plain decimal number")));
        }
        Decimal::from_str_exact(s).map_err(|e| E::custom(format!("{s:?}: {e}")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
        Err(E::custom(format!(
            "{v} is a float; write amounts as strings (\"{v}\") so they are exact"
        )))
    }
}

fn decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    d.deserialize_any(DecimalVisitor)
}

fn optional_decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    d.deserialize_any(DecimalVisitor).map(Some)
}
