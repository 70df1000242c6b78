//! Validated plans, built from the configuration.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use provider_sdk::money::{check_price, Currency, PriceError, MAX_PRICE_DECIMALS};
use provider_sdk::ratedeck::{RateDeck, MAX_INCREMENT_SECONDS};
use rust_decimal::Decimal;

use super::config::{PeriodConfig, PlanConfig, PlanKind, RatingConfig, WindowConfig};
use super::deck::DeckIndex;
use super::error::PlanError;
use super::increments::Increments;
use super::periods::WeekSchedule;
use super::rounding::{Rounding, RoundingTable};

/// Longest minimum billable duration accepted, in seconds (one day).
pub const MAX_MINIMUM_SECONDS: u32 = 86_400;
/// Largest period multiplier accepted.
pub const MAX_MULTIPLIER: u32 = 1000;
/// Largest markup accepted, in percent.
pub const MAX_MARKUP_PERCENT: u32 = 100_000;

/// The name of the one period of a plan that defines none.
pub const DEFAULT_PERIOD: &str = "all";

/// One period of a plan with its pricing resolved.
#[derive(Debug)]
pub(crate) struct Period {
    pub(crate) name: Arc<str>,
    /// Multiplies the per-minute rate.
    pub(crate) multiplier: Decimal,
    /// Markup plans: the markup in force (the plan's or the period's).
    pub(crate) markup_percent: Decimal,
    /// Retail plans: the deck in force (the plan's or the period's).
    pub(crate) deck: Option<Arc<DeckIndex>>,
}

/// A validated plan: how one subscriber's calls are priced.
///
/// Built by [`Plans::from_config`] (or [`Plan::from_config`]); rate calls
/// with [`Plan::rate`] and bound prepaid calls with [`Plan::max_duration`].
#[derive(Debug)]
pub struct Plan {
    pub(crate) name: Arc<str>,
    pub(crate) kind: PlanKind,
    pub(crate) currency: Currency,
    pub(crate) rounding: Rounding,
    pub(crate) connect_fee: Decimal,
    pub(crate) increments: Increments,
    pub(crate) time_zone: Tz,
    pub(crate) markup_per_call: Decimal,
    pub(crate) periods: Vec<Period>,
    pub(crate) schedule: WeekSchedule,
}

impl Plan {
    /// Validates one plan. `load_deck` is called for each deck path the
    /// plan names (it is the only way decks come in: this module does no
    /// I/O); a path used twice is loaded once.
    pub fn from_config<F, E>(
        name: &str,
        config: &PlanConfig,
        rounding: &RoundingTable,
        mut load_deck: F,
    ) -> Result<Plan, PlanError>
    where
        F: FnMut(&Path) -> Result<RateDeck, E>,
        E: Display,
    {
        let mut decks = HashMap::new();
        build_plan(name, config, rounding, &mut load_deck, &mut decks)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> PlanKind {
        self.kind
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// How prices and costs in this plan's currency are rounded.
    pub fn rounding(&self) -> Rounding {
        self.rounding
    }

    /// The plan's own connect fee (a retail deck entry's is added to it).
    pub fn connect_fee(&self) -> Decimal {
        self.connect_fee
    }

    pub fn increments(&self) -> Increments {
        self.increments
    }

    /// The zone for subscribers who have none of their own.
    pub fn default_time_zone(&self) -> Tz {
        self.time_zone
    }

    /// The period names, sorted by name.
    pub fn period_names(&self) -> impl Iterator<Item = &str> {
        self.periods.iter().map(|p| &*p.name)
    }

    /// The period in force at `at` for a subscriber in `time_zone`.
    pub fn period_at(&self, at: DateTime<Utc>, time_zone: Tz) -> &str {
        &self.periods[self.period_index(at, time_zone)].name
    }

    pub(crate) fn period_index(&self, at: DateTime<Utc>, time_zone: Tz) -> usize {
        self.schedule.period_at(&at.with_timezone(&time_zone))
    }
}

/// All plans of a deployment, by name, with the rounding table they use.
///
/// ```
/// use forwarder::rating::{Plans, RatingConfig};
/// use provider_sdk::ratedeck::RateDeck;
///
/// let config = RatingConfig::from_toml(r#"
///     [plans.basic]
///     kind = "markup"
///     currency = "EUR"
///     first_increment = 60
///     next_increment = 60
///     markup_percent = 20
/// "#).unwrap();
/// // Decks come from the caller; this plan has none.
/// let plans = Plans::from_config(&config, |path| {
///     std::fs::read(path)
///         .map_err(|e| e.to_string())
///         .and_then(|bytes| RateDeck::parse_csv(&bytes).map_err(|e| e.to_string()))
/// }).unwrap();
/// assert_eq!(plans.get("basic").unwrap().currency().as_str(), "EUR");
/// ```
#[derive(Debug)]
pub struct Plans {
    plans: BTreeMap<String, Plan>,
    rounding: RoundingTable,
}

impl Plans {
    /// Validates every plan and the rounding overrides; the first problem
    /// found is returned. Each distinct deck path is loaded once.
    pub fn from_config<F, E>(config: &RatingConfig, mut load_deck: F) -> Result<Plans, PlanError>
    where
        F: FnMut(&Path) -> Result<RateDeck, E>,
        E: Display,
    {
        let rounding = RoundingTable::with_overrides(&config.rounding)?;
        let mut decks = HashMap::new();
        let mut plans = BTreeMap::new();
        for (name, plan) in &config.plans {
            let built = build_plan(name, plan, &rounding, &mut load_deck, &mut decks)?;
            plans.insert(name.clone(), built);
        }
        Ok(Plans { plans, rounding })
    }

    pub fn get(&self, name: &str) -> Option<&Plan> {
        self.plans.get(name)
    }

    /// Takes a plan out (e.g. to keep it in an `Arc` of its own).
    pub fn remove(&mut self, name: &str) -> Option<Plan> {
        self.plans.remove(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.plans.keys().map(String::as_str)
    }

    pub fn rounding(&self) -> &RoundingTable {
        &self.rounding
    }

    pub fn len(&self) -> usize {
        self.plans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }
}

type DeckCache = HashMap<PathBuf, Arc<DeckIndex>>;

fn build_plan<F, E>(
    name: &str,
    c: &PlanConfig,
    rounding_table: &RoundingTable,
    load_deck: &mut F,
    decks: &mut DeckCache,
) -> Result<Plan, PlanError>
where
    F: FnMut(&Path) -> Result<RateDeck, E>,
    E: Display,
{
    let plan = || name.to_owned();
    let currency = Currency::parse(&c.currency)
        .ok()
        .and_then(|cur| Some((cur, rounding_table.get(cur)?)));
    let Some((currency, rounding)) = currency else {
        return Err(PlanError::UnknownCurrency {
            plan: plan(),
            currency: c.currency.chars().take(16).collect(),
        });
    };
    for (field, value) in [
        ("first_increment", c.first_increment),
        ("next_increment", c.next_increment),
    ] {
        if value == 0 {
            return Err(PlanError::ZeroIncrement {
                plan: plan(),
                field,
            });
        }
        if value > MAX_INCREMENT_SECONDS {
            return Err(PlanError::OutOfRange {
                plan: plan(),
                field: field.into(),
                value: value.to_string(),
                limit: "at most 3600 seconds",
            });
        }
    }
    if c.minimum_seconds > MAX_MINIMUM_SECONDS {
        return Err(PlanError::OutOfRange {
            plan: plan(),
            field: "minimum_seconds".into(),
            value: c.minimum_seconds.to_string(),
            limit: "at most 86400 seconds",
        });
    }
    let increments = Increments::new(c.first_increment, c.next_increment, c.minimum_seconds)
        .ok_or(PlanError::ZeroIncrement {
            plan: plan(),
            field: "first_increment",
        })?;
    let connect_fee = price(name, "connect_fee", c.connect_fee)?;
    let time_zone = match &c.time_zone {
        None => Tz::UTC,
        Some(tz) => tz.parse::<Tz>().map_err(|_| PlanError::UnknownTimeZone {
            plan: plan(),
            name: tz.chars().take(64).collect(),
        })?,
    };

    let wrong_kind = |setting: &str, kind: PlanKind| PlanError::WrongKind {
        plan: plan(),
        setting: setting.to_owned(),
        kind: kind.as_str(),
    };
    let (markup_percent, markup_per_call, deck) = match c.kind {
        PlanKind::Markup => {
            if c.deck.is_some() {
                return Err(wrong_kind("deck", PlanKind::Retail));
            }
            let percent = match c.markup_percent {
                Some(p) => factor(name, "markup_percent", p, MAX_MARKUP_PERCENT)?,
                None => Decimal::ZERO,
            };
            let per_call = match c.markup_per_call {
                Some(p) => price(name, "markup_per_call", p)?,
                None => Decimal::ZERO,
            };
            (percent, per_call, None)
        }
        PlanKind::Retail => {
            if c.markup_percent.is_some() {
                return Err(wrong_kind("markup_percent", PlanKind::Markup));
            }
            if c.markup_per_call.is_some() {
                return Err(wrong_kind("markup_per_call", PlanKind::Markup));
            }
            let path = c.deck.as_deref().ok_or(PlanError::Missing {
                plan: plan(),
                setting: "deck",
                kind: "retail",
            })?;
            let deck = deck_index(name, path, load_deck, decks)?;
            (Decimal::ZERO, Decimal::ZERO, Some(deck))
        }
    };

    let mut periods = Vec::with_capacity(c.periods.len().max(1));
    let schedule = if c.periods.is_empty() {
        periods.push(Period {
            name: DEFAULT_PERIOD.into(),
            multiplier: Decimal::ONE,
            markup_percent,
            deck: deck.clone(),
        });
        WeekSchedule::single()
    } else {
        let mut windows: Vec<(&str, &[WindowConfig])> = Vec::with_capacity(c.periods.len());
        for (period_name, p) in &c.periods {
            periods.push(build_period(
                name,
                c.kind,
                period_name,
                p,
                markup_percent,
                &deck,
                load_deck,
                decks,
            )?);
            windows.push((period_name, &p.windows));
        }
        WeekSchedule::build(name, &windows)?
    };

    Ok(Plan {
        name: name.into(),
        kind: c.kind,
        currency,
        rounding,
        connect_fee,
        increments,
        time_zone,
        markup_per_call,
        periods,
        schedule,
    })
}

#[allow(clippy::too_many_arguments)] // one call site; the plan's resolved parts
fn build_period<F, E>(
    plan: &str,
    kind: PlanKind,
    name: &str,
    p: &PeriodConfig,
    plan_markup: Decimal,
    plan_deck: &Option<Arc<DeckIndex>>,
    load_deck: &mut F,
    decks: &mut DeckCache,
) -> Result<Period, PlanError>
where
    F: FnMut(&Path) -> Result<RateDeck, E>,
    E: Display,
{
    let set = [
        p.multiplier.is_some(),
        p.markup_percent.is_some(),
        p.deck.is_some(),
    ];
    if set.iter().filter(|&&s| s).count() > 1 {
        return Err(PlanError::PeriodPriceConflict {
            plan: plan.to_owned(),
            period: name.to_owned(),
        });
    }
    let field = |f: &str| format!("periods.{name}.{f}");
    let wrong = |setting: &str, kind: PlanKind| PlanError::WrongKind {
        plan: plan.to_owned(),
        setting: field(setting),
        kind: kind.as_str(),
    };
    if kind == PlanKind::Retail && p.markup_percent.is_some() {
        return Err(wrong("markup_percent", PlanKind::Markup));
    }
    if kind == PlanKind::Markup && p.deck.is_some() {
        return Err(wrong("deck", PlanKind::Retail));
    }
    let multiplier = match p.multiplier {
        Some(m) => factor(plan, &field("multiplier"), m, MAX_MULTIPLIER)?,
        None => Decimal::ONE,
    };
    let markup_percent = match p.markup_percent {
        Some(m) => factor(plan, &field("markup_percent"), m, MAX_MARKUP_PERCENT)?,
        None => plan_markup,
    };
    let deck = match &p.deck {
        Some(path) => Some(deck_index(plan, path, load_deck, decks)?),
        None => plan_deck.clone(),
    };
    Ok(Period {
        name: name.into(),
        multiplier,
        markup_percent,
        deck,
    })
}

fn deck_index<F, E>(
    plan: &str,
    path: &Path,
    load_deck: &mut F,
    decks: &mut DeckCache,
) -> Result<Arc<DeckIndex>, PlanError>
where
    F: FnMut(&Path) -> Result<RateDeck, E>,
    E: Display,
{
    if let Some(d) = decks.get(path) {
        return Ok(d.clone());
    }
    let err = |message: String| PlanError::Deck {
        plan: plan.to_owned(),
        path: path.to_owned(),
        message,
    };
    let deck = load_deck(path).map_err(|e| err(e.to_string()))?;
    if deck.is_empty() {
        return Err(err("the deck has no entries".into()));
    }
    let index = Arc::new(DeckIndex::new(&deck));
    decks.insert(path.to_owned(), index.clone());
    Ok(index)
}

/// A non-negative price as a rate deck would accept it.
fn price(plan: &str, field: &str, value: Decimal) -> Result<Decimal, PlanError> {
    check_price(value).map_err(|e| match e {
        PriceError::Negative => PlanError::Negative {
            plan: plan.to_owned(),
            field: field.to_owned(),
            value,
        },
        PriceError::TooManyDecimals => PlanError::TooPrecise {
            plan: plan.to_owned(),
            field: field.to_owned(),
            value,
            max: MAX_PRICE_DECIMALS,
        },
        _ => PlanError::OutOfRange {
            plan: plan.to_owned(),
            field: field.to_owned(),
            value: value.to_string(),
            limit: "below 1,000,000,000",
        },
    })
}

/// A non-negative multiplier or percentage up to `max`, at most 6 places.
fn factor(plan: &str, field: &str, value: Decimal, max: u32) -> Result<Decimal, PlanError> {
    if value.is_sign_negative() && !value.is_zero() {
        return Err(PlanError::Negative {
            plan: plan.to_owned(),
            field: field.to_owned(),
            value,
        });
    }
    if value.normalize().scale() > MAX_PRICE_DECIMALS {
        return Err(PlanError::TooPrecise {
            plan: plan.to_owned(),
            field: field.to_owned(),
            value,
            max: MAX_PRICE_DECIMALS,
        });
    }
    if value > Decimal::from(max) {
        return Err(PlanError::OutOfRange {
            plan: plan.to_owned(),
            field: field.to_owned(),
            value: value.to_string(),
            limit: if max == MAX_MULTIPLIER {
                "at most 1000"
            } else {
                "at most 100000 percent"
            },
        });
    }
    Ok(value.abs())
}
