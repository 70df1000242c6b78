//! Table-driven tests of rating: increments, minimum, connect fees,
//! rounding, markup and retail plans, periods in time zones across
//! daylight-saving changes, margins, prepaid limits and plan validation.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use provider_sdk::number::E164;
use provider_sdk::ratedeck::RateDeck;
use provider_sdk::ticket::RateTerms;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use super::*;

fn terms(per_minute: Decimal, connect_fee: Decimal, first: u32, next: u32) -> RateTerms {
    terms_in(per_minute, connect_fee, first, next, "EUR")
}

fn terms_in(
    per_minute: Decimal,
    connect_fee: Decimal,
    first: u32,
    next: u32,
    cur: &str,
) -> RateTerms {
    RateTerms {
        per_minute,
        connect_fee,
        first_increment: first,
        next_increment: next,
        currency: cur.parse().unwrap(),
        version: 1,
    }
}

fn number(s: &str) -> E164 {
    E164::parse(s).unwrap()
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

/// A Wednesday, 10:00 UTC.
fn wednesday() -> DateTime<Utc> {
    utc(2026, 11, 25, 10, 0, 0)
}

/// Plans from TOML with in-memory decks (path → CSV).
fn plans_with(toml: &str, decks: &[(&str, &str)]) -> Result<Plans, PlanError> {
    let decks: HashMap<String, Vec<u8>> = decks
        .iter()
        .map(|(p, csv)| (p.to_string(), csv.as_bytes().to_vec()))
        .collect();
    let config = RatingConfig::from_toml(toml).expect("test TOML parses");
    Plans::from_config(&config, |path| {
        let key = path.to_string_lossy().into_owned();
        match decks.get(&key) {
            Some(csv) => RateDeck::parse_csv(csv).map_err(|e| e.to_string()),
            None => Err(format!("no such file {key}")),
        }
    })
}

fn plans(toml: &str) -> Plans {
    plans_with(toml, &[]).unwrap()
}

/// A markup plan with the given increments, minimum, fees and markup.
fn markup_plan(
    first: u32,
    next: u32,
    minimum: u32,
    connect: &str,
    percent: &str,
    per_call: &str,
) -> Plan {
    let p = plans(&format!(
        r#"[plans.p]
        kind = "markup"
        currency = "EUR"
        first_increment = {first}
        next_increment = {next}
        minimum_seconds = {minimum}
        connect_fee = "{connect}"
        markup_percent = "{percent}"
        markup_per_call = "{per_call}""#
    ));
    take(p, "p")
}

fn take(mut p: Plans, name: &str) -> Plan {
    p.remove(name).expect("the plan is configured")
}

fn call<'a>(to: &'a E164, at: DateTime<Utc>, tz: Tz, provider: &'a RateTerms) -> Call<'a> {
    Call {
        destination: to,
        answered_at: at,
        time_zone: tz,
        provider,
    }
}

#[test]
fn increments_table() {
    // (first, next, minimum, duration, billable)
    let table: &[(u32, u32, u32, u64, u64)] = &[
        (60, 60, 0, 0, 0),
        (60, 60, 0, 1, 60),
        (60, 60, 0, 60, 60),
        (60, 60, 0, 61, 120),
        (60, 60, 0, 3599, 3600),
        (30, 6, 0, 1, 30),
        (30, 6, 0, 30, 30),
        (30, 6, 0, 31, 36),
        (30, 6, 0, 36, 36),
        (30, 6, 0, 37, 42),
        (1, 1, 0, 1, 1),
        (1, 1, 0, 59, 59),
        (1, 1, 0, 3601, 3601),
        // Odd ones.
        (45, 15, 0, 46, 60),
        (7, 3, 0, 8, 10),
        (7, 3, 0, 10, 10),
        (7, 3, 0, 11, 13),
        (1, 60, 0, 2, 61),
        (60, 1, 0, 61, 61),
        (3600, 3600, 0, 1, 3600),
        // Minimum billable duration, raised before the increments.
        (1, 1, 30, 1, 30),
        (1, 1, 30, 30, 30),
        (1, 1, 30, 31, 31),
        (60, 60, 90, 10, 120),
        (30, 6, 40, 1, 42),
        (30, 6, 40, 43, 48),
        (60, 60, 30, 1, 60),
        (60, 60, 30, 0, 0),
    ];
    for &(first, next, min, duration, billable) in table {
        let i = Increments::new(first, next, min).unwrap();
        assert_eq!(
            i.billable_seconds(duration),
            billable,
            "{first}/{next} min {min}, {duration} s"
        );
        // The plan reports the same billable seconds.
        let plan = markup_plan(first, next, min, "0", "0", "0");
        let t = terms(dec!(0.6), dec!(0), 1, 1);
        let to = number("+4930123456");
        let r = plan
            .rate(&call(&to, wednesday(), Tz::UTC, &t), duration)
            .unwrap();
        assert_eq!(
            r.billable_seconds, billable,
            "{first}/{next} min {min}, {duration} s"
        );
        // 0.60 per minute = 0.01 per second: the price counts the seconds.
        assert_eq!(r.price, Decimal::new(billable as i64, 2));
    }
    assert!(Increments::new(0, 1, 0).is_none());
    assert!(Increments::new(1, 0, 0).is_none());
    // Huge durations saturate instead of overflowing.
    assert_eq!(
        Increments::new(1, 7, 0).unwrap().billable_seconds(u64::MAX),
        u64::MAX
    );
}

#[test]
fn connect_fees_and_unanswered_calls() {
    let deck = "49,0.0600,0.0500,60,60\n4930,0.0600,0,60,60\n";
    let p = plans_with(
        r#"[plans.r]
        kind = "retail"
        currency = "EUR"
        deck = "d.csv"
        connect_fee = "0.10"
        first_increment = 60
        next_increment = 60
        [plans.m]
        kind = "markup"
        currency = "EUR"
        connect_fee = "0.10"
        first_increment = 60
        next_increment = 60
        markup_percent = "50"
        markup_per_call = "0.01""#,
        &[("d.csv", deck)],
    )
    .unwrap();
    let provider = terms(dec!(0.0400), dec!(0.0200), 1, 1);
    let (berlin, hamburg) = (number("+4930123"), number("+4940123"));
    let retail = p.get("r").unwrap();
    let markup = p.get("m").unwrap();
    // (plan, destination, seconds, price, cost)
    let table: &[(&Plan, &E164, u64, Decimal, Decimal)] = &[
        // Plan fee only (4930's entry has none): 0.10 + 0.06.
        (retail, &berlin, 60, dec!(0.16), dec!(0.06)),
        // Plan fee plus the deck entry's: 0.10 + 0.05 + 0.06.
        (retail, &hamburg, 60, dec!(0.21), dec!(0.06)),
        // Markup: 0.10 + 0.01 + (0.02 + 0.04) × 1.5 = 0.20.
        (markup, &berlin, 60, dec!(0.20), dec!(0.06)),
        // Provider cost per second: 0.02 + 0.04 × 30/60.
        (markup, &berlin, 30, dec!(0.20), dec!(0.04)),
        // Unanswered: nothing at all.
        (retail, &hamburg, 0, dec!(0.00), dec!(0.00)),
        (markup, &berlin, 0, dec!(0.00), dec!(0.00)),
    ];
    for (i, &(plan, to, secs, price, cost)) in table.iter().enumerate() {
        let r = plan
            .rate(&call(to, wednesday(), Tz::UTC, &provider), secs)
            .unwrap();
        assert_eq!((r.price, r.cost), (price, cost), "row {i}");
        assert_eq!(r.margin, price - cost, "row {i}");
        if secs == 0 {
            assert_eq!(r.rule, Rule::Unanswered);
            assert_eq!((r.billable_seconds, r.provider_billable_seconds), (0, 0));
            assert!(r.cost_exact.is_zero());
        }
    }
    // An unanswered call rates to zero even where the deck has no rate.
    let nowhere = number("+331234");
    let r = retail
        .rate(&call(&nowhere, wednesday(), Tz::UTC, &provider), 0)
        .unwrap();
    assert_eq!(r.price, dec!(0.00));
    assert_eq!(
        retail.rate(&call(&nowhere, wednesday(), Tz::UTC, &provider), 1),
        Err(RateError::NoRate {
            plan: "r".into(),
            destination: nowhere
        })
    );
}

#[test]
fn rounding_modes_table() {
    use RoundingMode::*;
    // (mode, decimals, amount, rounded)
    let table: &[(RoundingMode, u32, Decimal, &str)] = &[
        (HalfUp, 2, dec!(0.125), "0.13"),
        (HalfUp, 2, dec!(0.1249999), "0.12"),
        (HalfUp, 2, dec!(0.135), "0.14"),
        (HalfEven, 2, dec!(0.125), "0.12"),
        (HalfEven, 2, dec!(0.135), "0.14"),
        (HalfEven, 2, dec!(0.1251), "0.13"),
        (Up, 2, dec!(0.1201), "0.13"),
        (Up, 2, dec!(0.12), "0.12"),
        (Down, 2, dec!(0.1299), "0.12"),
        (HalfUp, 0, dec!(12.5), "13"),
        (HalfEven, 0, dec!(12.5), "12"),
        (HalfEven, 0, dec!(13.5), "14"),
        (Up, 0, dec!(12.01), "13"),
        (Down, 0, dec!(12.99), "12"),
        (HalfUp, 3, dec!(0.0005), "0.001"),
        (Down, 3, dec!(1.2), "1.200"),
        // Always written with exactly the currency's places.
        (HalfUp, 2, dec!(1), "1.00"),
        (HalfUp, 2, dec!(0), "0.00"),
    ];
    for &(mode, decimals, amount, expected) in table {
        let r = Rounding { decimals, mode }.apply(amount);
        assert_eq!(r.to_string(), expected, "{mode:?} {decimals} {amount}");
    }
}

#[test]
fn rounding_per_currency_defaults_and_overrides() {
    let table = RoundingTable::default();
    for (code, decimals) in [
        ("EUR", 2),
        ("USD", 2),
        ("GBP", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("BHD", 3),
    ] {
        let r = table.get(code.parse().unwrap()).unwrap();
        assert_eq!(
            (r.decimals, r.mode),
            (decimals, RoundingMode::HalfUp),
            "{code}"
        );
    }
    assert!(table.get("XYZ".parse().unwrap()).is_none());

    // The same call in three currencies and one overridden: 37 s at
    // 1.5/min with 1/1 increments = 0.925 per unit of currency.
    let toml = |cur: &str| {
        format!(
            r#"[plans.p]
            kind = "markup"
            currency = "{cur}"
            first_increment = 1
            next_increment = 1
            [rounding.GBP]
            decimals = 2
            mode = "half-even"
            [rounding.XTS]
            decimals = 1
            mode = "up""#
        )
    };
    let to = number("+4930123456");
    // (currency, per minute, price)
    let table: &[(&str, Decimal, &str)] = &[
        ("EUR", dec!(1.5), "0.93"),
        ("JPY", dec!(1.5), "1"),
        ("JPY", dec!(150), "93"), // 92.5 half-up
        ("BHD", dec!(1.5), "0.925"),
        ("GBP", dec!(1.5), "0.92"), // overridden: half-even
        ("XTS", dec!(1.5), "1.0"),  // added by config: 1 place, up
    ];
    for &(cur, per_minute, price) in table {
        let plan = take(plans(&toml(cur)), "p");
        let t = terms_in(per_minute, dec!(0), 1, 1, cur);
        let r = plan.rate(&call(&to, wednesday(), Tz::UTC, &t), 37).unwrap();
        assert_eq!(r.price.to_string(), price, "{cur} {per_minute}");
        // The cost is rounded on its own, the same way.
        assert_eq!(r.cost.to_string(), price, "{cur} {per_minute}");
        assert_eq!(r.cost_exact, per_minute * dec!(37) / dec!(60));
        assert_eq!(r.currency.as_str(), cur);
    }
}

#[test]
fn rounding_is_applied_once_to_the_final_price() {
    // 1/1 over three calls of 1 s at 0.0100/min with a 20% markup: each
    // second is 0.0002; a per-step rounding would make the price 0.00 or
    // 0.01 per step. 25 s: 0.0100 × 25/60 × 1.2 = 0.005 exactly → 0.01.
    let plan = markup_plan(1, 1, 0, "0", "20", "0");
    let t = terms(dec!(0.0100), dec!(0), 1, 1);
    let to = number("+4930123456");
    let r = plan.rate(&call(&to, wednesday(), Tz::UTC, &t), 25).unwrap();
    assert_eq!(r.price, dec!(0.01));
    // 24 s: 0.0048 → 0.00; the division by 60 is done once, last.
    let r = plan.rate(&call(&to, wednesday(), Tz::UTC, &t), 24).unwrap();
    assert_eq!(r.price, dec!(0.00));
    assert_eq!(r.rate_per_minute, dec!(0.012));
}

#[test]
fn markup_versus_retail_deck() {
    let deck = "44,0.0900,0,60,60\n447,0.1500,0,60,60\n";
    let p = plans_with(
        r#"[plans.markup]
        kind = "markup"
        currency = "GBP"
        first_increment = 60
        next_increment = 60
        markup_percent = "25"
        [plans.retail]
        kind = "retail"
        currency = "GBP"
        deck = "uk.csv"
        first_increment = 60
        next_increment = 60"#,
        &[("uk.csv", deck)],
    )
    .unwrap();
    let provider = terms_in(dec!(0.0800), dec!(0), 1, 1, "GBP");
    let landline = number("+44 20 7946 0000");
    let mobile = number("+44 7700 900123");
    // (plan, destination, seconds, price, cost, rule)
    let table: Vec<(&str, &E164, u64, Decimal, Decimal, Rule)> = vec![
        // 0.08 × 2 min × 1.25 = 0.20; cost 0.08 × 90/60 = 0.12.
        (
            "markup",
            &landline,
            90,
            dec!(0.20),
            dec!(0.12),
            Rule::Markup { percent: dec!(25) },
        ),
        (
            "markup",
            &mobile,
            90,
            dec!(0.20),
            dec!(0.12),
            Rule::Markup { percent: dec!(25) },
        ),
        // The deck: 0.09 × 2 = 0.18 for 44; the longer 447 wins for mobiles.
        (
            "retail",
            &landline,
            90,
            dec!(0.18),
            dec!(0.12),
            Rule::Retail {
                prefix: "44".parse().unwrap(),
            },
        ),
        (
            "retail",
            &mobile,
            90,
            dec!(0.30),
            dec!(0.12),
            Rule::Retail {
                prefix: "447".parse().unwrap(),
            },
        ),
    ];
    for (name, to, secs, price, cost, rule) in table {
        let r = p
            .get(name)
            .unwrap()
            .rate(&call(to, wednesday(), Tz::UTC, &provider), secs)
            .unwrap();
        assert_eq!(
            (r.price, r.cost, r.rule),
            (price, cost, rule),
            "{name} {to}"
        );
        assert_eq!(r.billable_seconds, 120);
        assert_eq!(r.provider_billable_seconds, 90);
        assert_eq!(&*r.period, DEFAULT_PERIOD);
    }
}

#[test]
fn retail_deck_follows_scheduled_rates() {
    // 49 goes from 0.06 to 0.03 on 1 December; 4930 exists only from then.
    let deck = "49,0.0600,0,60,60\n\
                49,0.0300,0,60,60,2026-12-01T00:00:00Z\n\
                4930,0.0100,0,60,60,2026-12-01T00:00:00Z\n";
    let p = plans_with(
        r#"[plans.r]
        kind = "retail"
        currency = "EUR"
        deck = "d.csv"
        first_increment = 60
        next_increment = 60"#,
        &[("d.csv", deck)],
    )
    .unwrap();
    let parsed = RateDeck::parse_csv(deck.as_bytes()).unwrap();
    let plan = p.get("r").unwrap();
    let provider = terms(dec!(0.01), dec!(0), 1, 1);
    let to = number("+4930123456");
    for (at, price) in [
        (utc(2026, 11, 30, 23, 59, 59), dec!(0.06)),
        (utc(2026, 12, 1, 0, 0, 0), dec!(0.01)),
        (utc(2027, 1, 1, 0, 0, 0), dec!(0.01)),
    ] {
        let r = plan.rate(&call(&to, at, Tz::UTC, &provider), 60).unwrap();
        assert_eq!(r.price, price, "{at}");
        // The same entry as the deck's own lookup at that time.
        let entry = parsed.effective_at(at).lookup(&to).cloned().unwrap();
        assert_eq!(
            r.rule,
            Rule::Retail {
                prefix: entry.prefix
            }
        );
        assert_eq!(r.rate_per_minute, entry.rate_per_minute.normalize());
    }
}

/// Peak Mon–Fri 08:00–18:00, off-peak otherwise (at half the rate).
const PEAK_PLAN: &str = r#"
    [plans.p]
    kind = "markup"
    currency = "EUR"
    first_increment = 60
    next_increment = 60
    time_zone = "Europe/Berlin"
    [plans.p.periods.peak]
    windows = [{ days = ["mon-fri"], from = "08:00", to = "18:00" }]
    [plans.p.periods.off-peak]
    multiplier = "0.5"
    windows = [
        { days = ["mon-fri"], from = "00:00", to = "08:00" },
        { days = ["mon-fri"], from = "18:00", to = "24:00" },
        { days = ["sat-sun"], from = "00:00", to = "24:00" },
    ]
"#;

#[test]
fn peak_and_off_peak_by_weekday_and_time_in_the_subscribers_zone() {
    let plan = take(plans(PEAK_PLAN), "p");
    let provider = terms(dec!(0.1000), dec!(0), 60, 60);
    let to = number("+4930123456");
    let berlin: Tz = "Europe/Berlin".parse().unwrap();
    let new_york: Tz = "America/New_York".parse().unwrap();
    let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
    assert_eq!(plan.default_time_zone(), berlin);
    // (UTC answer time, zone, period)
    let table: &[(DateTime<Utc>, Tz, &str)] = &[
        // Wednesday 25 Nov 2026; Berlin is UTC+1.
        (utc(2026, 11, 25, 6, 59, 59), berlin, "off-peak"), // 07:59:59
        (utc(2026, 11, 25, 7, 0, 0), berlin, "peak"),       // 08:00
        (utc(2026, 11, 25, 16, 59, 59), berlin, "peak"),    // 17:59:59
        (utc(2026, 11, 25, 17, 0, 0), berlin, "off-peak"),  // 18:00
        // The same instant in New York (UTC-5) is 05:00 / 12:00.
        (utc(2026, 11, 25, 10, 0, 0), berlin, "peak"),
        (utc(2026, 11, 25, 10, 0, 0), new_york, "off-peak"),
        (utc(2026, 11, 25, 17, 0, 0), new_york, "peak"),
        // Friday 23:00 UTC is already Saturday 08:00 in Tokyo: weekend.
        (utc(2026, 11, 27, 23, 0, 0), tokyo, "off-peak"),
        (utc(2026, 11, 27, 23, 0, 0), Tz::UTC, "off-peak"),
        // Sunday 23:30 UTC is Monday 08:30 in Tokyo: peak.
        (utc(2026, 11, 29, 23, 30, 0), tokyo, "peak"),
        (utc(2026, 11, 29, 23, 30, 0), berlin, "off-peak"),
        // Saturday midday.
        (utc(2026, 11, 28, 11, 0, 0), berlin, "off-peak"),
    ];
    for &(at, tz, period) in table {
        let r = plan.rate(&call(&to, at, tz, &provider), 60).unwrap();
        assert_eq!(&*r.period, period, "{at} in {tz}");
        assert_eq!(plan.period_at(at, tz), period);
        let price = if period == "peak" {
            dec!(0.10)
        } else {
            dec!(0.05)
        };
        assert_eq!(r.price, price, "{at} in {tz}");
    }
    // A call is rated by its answer time: answered 17:59 Berlin, 30 min.
    let r = plan
        .rate(
            &call(&to, utc(2026, 11, 25, 16, 59, 0), berlin, &provider),
            1800,
        )
        .unwrap();
    assert_eq!((&*r.period, r.price), ("peak", dec!(3.00)));
}

#[test]
fn daylight_saving_changes_in_berlin() {
    // Sunday night rate until 02:00 local, day rate from 02:00; other days
    // are "day". 2026: CET→CEST on 29 March (02:00 → 03:00), CEST→CET on
    // 25 October (03:00 → 02:00, so 02:00–02:59 happens twice).
    let plan = take(
        plans(
            r#"[plans.p]
            kind = "markup"
            currency = "EUR"
            first_increment = 1
            next_increment = 1
            [plans.p.periods.night]
            multiplier = "0.5"
            windows = [{ days = ["sun"], from = "00:00", to = "02:00" }]
            [plans.p.periods.day]
            windows = [
                { days = ["sun"], from = "02:00", to = "24:00" },
                { days = ["mon-sat"], from = "00:00", to = "24:00" },
            ]"#,
        ),
        "p",
    );
    let berlin: Tz = "Europe/Berlin".parse().unwrap();
    let provider = terms(dec!(0.6000), dec!(0), 1, 1);
    let to = number("+4930123456");
    // (UTC answer, local time for the record, period)
    let table: &[(DateTime<Utc>, &str, &str)] = &[
        // Spring: 01:59:30 CET; the call runs on past 03:00 CEST and stays night.
        (utc(2026, 3, 29, 0, 59, 30), "01:59:30 CET", "night"),
        (utc(2026, 3, 29, 0, 59, 59), "01:59:59 CET", "night"),
        // One second later the clocks read 03:00:00 CEST.
        (utc(2026, 3, 29, 1, 0, 0), "03:00:00 CEST", "day"),
        // Autumn: 01:59 CEST, then 02:30 CEST (first pass), 02:30 CET (second).
        (utc(2026, 10, 24, 23, 59, 0), "01:59:00 CEST", "night"),
        (utc(2026, 10, 25, 0, 30, 0), "02:30:00 CEST", "day"),
        (utc(2026, 10, 25, 1, 30, 0), "02:30:00 CET", "day"),
        // A fixed UTC+1 offset would have called this 01:30: it is 02:30 CEST.
        (utc(2026, 10, 25, 0, 30, 0), "02:30:00 CEST", "day"),
    ];
    for &(at, local, period) in table {
        let shown = at.with_timezone(&berlin).format("%H:%M:%S %Z").to_string();
        assert_eq!(shown, local, "test table check");
        // 10 minutes: 6.00 at the day rate, 3.00 at night.
        let r = plan.rate(&call(&to, at, berlin, &provider), 600).unwrap();
        assert_eq!(&*r.period, period, "{local}");
        assert_eq!(
            r.price,
            if period == "night" {
                dec!(3.00)
            } else {
                dec!(6.00)
            },
            "{local}"
        );
    }
    // The spring call: answered 01:59:30, 120 s of real time (ends 03:01:30
    // local): billed 120 s, not 120 s plus the skipped hour.
    let r = plan
        .rate(
            &call(&to, utc(2026, 3, 29, 0, 59, 30), berlin, &provider),
            120,
        )
        .unwrap();
    assert_eq!((r.billable_seconds, r.price), (120, dec!(0.60)));
}

#[test]
fn periods_wrap_past_midnight_and_over_the_weekend() {
    let plan = take(
        plans(
            r#"[plans.p]
            kind = "markup"
            currency = "EUR"
            first_increment = 60
            next_increment = 60
            [plans.p.periods.day]
            windows = [{ days = ["mon-sun"], from = "07:00", to = "21:00" }]
            [plans.p.periods.night]
            windows = [{ days = ["mon-sun"], from = "21:00", to = "07:00" }]"#,
        ),
        "p",
    );
    for (at, period) in [
        (utc(2026, 11, 29, 23, 0, 0), "night"), // Sunday 23:00
        (utc(2026, 11, 30, 6, 59, 0), "night"), // Monday 06:59 (from Sunday's window)
        (utc(2026, 11, 30, 7, 0, 0), "day"),
        (utc(2026, 11, 30, 20, 59, 0), "day"),
        (utc(2026, 11, 30, 21, 0, 0), "night"),
    ] {
        assert_eq!(plan.period_at(at, Tz::UTC), period, "{at}");
    }
    assert_eq!(plan.period_names().collect::<Vec<_>>(), ["day", "night"]);
}

/// Plan first/next, markup %, provider terms, seconds, price, cost, margin.
type MarginRow = (
    u32,
    u32,
    &'static str,
    RateTerms,
    u64,
    Decimal,
    Decimal,
    Decimal,
);

#[test]
fn margin_sign_is_recorded_as_it_is() {
    let to = number("+4930123456");
    let table: &[MarginRow] = &[
        // 60/60 over a 1/1 provider: 10 s bills a minute: positive.
        (
            60,
            60,
            "0",
            terms(dec!(0.60), dec!(0), 1, 1),
            10,
            dec!(0.60),
            dec!(0.10),
            dec!(0.50),
        ),
        // 1/1 over a 60/60 provider at cost: negative, recorded.
        (
            1,
            1,
            "0",
            terms(dec!(0.60), dec!(0), 60, 60),
            10,
            dec!(0.10),
            dec!(0.60),
            dec!(-0.50),
        ),
        // Even with a markup.
        (
            1,
            1,
            "100",
            terms(dec!(0.60), dec!(0), 60, 60),
            10,
            dec!(0.20),
            dec!(0.60),
            dec!(-0.40),
        ),
        // At cost with equal increments: zero.
        (
            30,
            6,
            "0",
            terms(dec!(0.60), dec!(0.05), 30, 6),
            31,
            dec!(0.41),
            dec!(0.41),
            dec!(0.00),
        ),
    ];
    for (i, (first, next, pct, t, secs, price, cost, margin)) in table.iter().enumerate() {
        let plan = markup_plan(*first, *next, 0, "0", pct, "0");
        let r = plan
            .rate(&call(&to, wednesday(), Tz::UTC, t), *secs)
            .unwrap();
        assert_eq!(
            (r.price, r.cost, r.margin),
            (*price, *cost, *margin),
            "row {i}"
        );
    }
    // A retail deck priced under the provider: negative as well.
    let p = plans_with(
        r#"[plans.r]
        kind = "retail"
        currency = "EUR"
        deck = "d.csv"
        first_increment = 60
        next_increment = 60"#,
        &[("d.csv", "49,0.0100,0,60,60\n")],
    )
    .unwrap();
    let t = terms(dec!(0.0500), dec!(0), 60, 60);
    let r = p
        .get("r")
        .unwrap()
        .rate(&call(&to, wednesday(), Tz::UTC, &t), 60)
        .unwrap();
    assert_eq!(r.margin, dec!(-0.04));
}

/// The price of a call of `secs` seconds with `plan`.
fn price_of(plan: &Plan, c: &Call<'_>, secs: u64) -> Decimal {
    plan.rate(c, secs).unwrap().price
}

#[test]
fn prepaid_maximum_duration_has_exact_boundaries() {
    let to = number("+4930123456");
    let flat = terms(dec!(0.6000), dec!(0), 1, 1); // 0.01 per second
                                                   // (first, next, minimum, plan connect fee, balance, expected)
    let table: &[(u32, u32, u32, &str, Decimal, MaxDuration)] = &[
        // 1/1 at 0.01/s: 1.00 pays 100 s.
        (1, 1, 0, "0", dec!(1.00), MaxDuration::Seconds(100)),
        // The connect fee comes first: 0.25 + 0.01/s.
        (1, 1, 0, "0.25", dec!(1.00), MaxDuration::Seconds(75)),
        // 60/60: whole minutes only; 1.00 pays one minute (0.60), not two.
        (60, 60, 0, "0", dec!(1.00), MaxDuration::Seconds(60)),
        (60, 60, 0, "0", dec!(1.20), MaxDuration::Seconds(120)),
        (60, 60, 0, "0", dec!(1.19), MaxDuration::Seconds(60)),
        // 30/6: 0.30 then 0.06 a block; 1.00 → 30 + 11 × 6 = 96 s (0.96).
        (30, 6, 0, "0", dec!(1.00), MaxDuration::Seconds(96)),
        // Minimum 90 s with 1/1: below 0.90 nothing is affordable.
        (1, 1, 90, "0", dec!(0.89), MaxDuration::Seconds(0)),
        (1, 1, 90, "0", dec!(0.90), MaxDuration::Seconds(90)),
        (1, 1, 90, "0", dec!(0.95), MaxDuration::Seconds(95)),
        // Not even the connect fee.
        (1, 1, 0, "0.25", dec!(0.24), MaxDuration::Seconds(0)),
        (1, 1, 0, "0", dec!(0), MaxDuration::Seconds(0)),
        (1, 1, 0, "0", dec!(-5), MaxDuration::Seconds(0)),
        // Enough for the longest call there is.
        (1, 1, 0, "0", dec!(1000000), MaxDuration::Unlimited),
    ];
    for (i, &(first, next, min, connect, balance, expected)) in table.iter().enumerate() {
        let plan = markup_plan(first, next, min, connect, "0", "0");
        let c = call(&to, wednesday(), Tz::UTC, &flat);
        let got = plan.max_duration(&c, balance).unwrap();
        assert_eq!(got, expected, "row {i}");
        check_boundary(&plan, &c, balance, got);
    }
}

/// `max` is affordable and one second more is not.
fn check_boundary(plan: &Plan, c: &Call<'_>, balance: Decimal, max: MaxDuration) {
    match max {
        MaxDuration::Seconds(0) => {
            assert!(
                price_of(plan, c, 1) > balance,
                "1 s is affordable with {balance}"
            );
        }
        MaxDuration::Seconds(s) => {
            assert!(price_of(plan, c, s) <= balance, "{s} s over {balance}");
            assert!(
                price_of(plan, c, s + 1) > balance,
                "{} s within {balance}",
                s + 1
            );
        }
        MaxDuration::Unlimited => {
            assert!(price_of(plan, c, MAX_DURATION_SECONDS) <= balance);
        }
    }
}

#[test]
fn prepaid_maximum_duration_counts_rounding_markup_and_periods() {
    let to = number("+4930123456");
    // 0.0100/min, 1/1, 20% markup, half-up: 0.0002 per second; 0.01 is
    // reached at 25 s (0.005 → 0.01), so with 0.01 left the limit is 74 s
    // (0.0148 → 0.01) and 75 s (0.015) rounds up to 0.02.
    let plan = markup_plan(1, 1, 0, "0", "20", "0");
    let t = terms(dec!(0.0100), dec!(0), 1, 1);
    let c = call(&to, wednesday(), Tz::UTC, &t);
    assert_eq!(
        plan.max_duration(&c, dec!(0.01)).unwrap(),
        MaxDuration::Seconds(74)
    );
    assert_eq!(
        plan.max_duration(&c, dec!(0.00)).unwrap(),
        MaxDuration::Seconds(24)
    );
    check_boundary(&plan, &c, dec!(0.01), MaxDuration::Seconds(74));

    // Peak/off-peak: the same balance lasts twice as long off-peak.
    let plan = take(plans(PEAK_PLAN), "p");
    let t = terms(dec!(0.6000), dec!(0), 60, 60);
    let berlin: Tz = "Europe/Berlin".parse().unwrap();
    let peak = call(&to, wednesday(), berlin, &t);
    let off = call(&to, utc(2026, 11, 28, 12, 0, 0), berlin, &t);
    assert_eq!(
        plan.max_duration(&peak, dec!(3.00)).unwrap(),
        MaxDuration::Seconds(300)
    );
    assert_eq!(
        plan.max_duration(&off, dec!(3.00)).unwrap(),
        MaxDuration::Seconds(600)
    );

    // Free calls are never cut off; a free call with a connect fee is.
    let plan = markup_plan(1, 1, 0, "0.10", "0", "0");
    let free = terms(dec!(0), dec!(0), 1, 1);
    let c = call(&to, wednesday(), Tz::UTC, &free);
    assert_eq!(
        plan.max_duration(&c, dec!(0.10)).unwrap(),
        MaxDuration::Unlimited
    );
    assert_eq!(
        plan.max_duration(&c, dec!(0.09)).unwrap(),
        MaxDuration::Seconds(0)
    );

    // JPY, 0 places: 10 yen per minute, 1/1; 100 yen → 10 min, plus the
    // 2 s that still round down (600 s = 100, 602 s = 100.33 → 100,
    // 603 s = 100.5 → 101).
    let plan = take(
        plans(
            r#"[plans.p]
            kind = "markup"
            currency = "JPY"
            first_increment = 1
            next_increment = 1"#,
        ),
        "p",
    );
    let yen = terms_in(dec!(10), dec!(0), 1, 1, "JPY");
    let c = call(&to, wednesday(), Tz::UTC, &yen);
    assert_eq!(
        plan.max_duration(&c, dec!(100)).unwrap(),
        MaxDuration::Seconds(602)
    );
    check_boundary(&plan, &c, dec!(100), MaxDuration::Seconds(602));
}

#[test]
fn prepaid_boundaries_hold_for_random_plans() {
    let mut rng = StdRng::seed_from_u64(6);
    let to = number("+4930123456");
    let increments = [
        (60, 60),
        (30, 6),
        (1, 1),
        (45, 15),
        (7, 3),
        (1, 60),
        (60, 1),
    ];
    for _ in 0..200 {
        let (first, next) = increments[rng.gen_range(0..increments.len())];
        let min = [0, 0, 10, 90][rng.gen_range(0..4)];
        let connect = Decimal::new(rng.gen_range(0..30), 2).to_string();
        let pct = rng.gen_range(0..80).to_string();
        let plan = markup_plan(first, next, min, &connect, &pct, "0");
        let t = terms(
            Decimal::new(rng.gen_range(1..5000), 4),
            Decimal::new(rng.gen_range(0..5), 2),
            1,
            1,
        );
        let c = call(&to, wednesday(), Tz::UTC, &t);
        let balance = Decimal::new(rng.gen_range(-10..2000), 2);
        let max = plan.max_duration(&c, balance).unwrap();
        check_boundary(&plan, &c, balance, max);
    }
}

#[test]
fn price_is_monotone_in_duration() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let deck = "49,0.0730,0.0100,60,60\n4930,0.0195,0,1,1\n";
    let modes = ["half-up", "half-even", "up", "down"];
    let increments = [
        (60, 60),
        (30, 6),
        (1, 1),
        (45, 15),
        (7, 3),
        (1, 60),
        (60, 1),
        (3600, 3600),
    ];
    for round in 0..60 {
        let (first, next) = increments[rng.gen_range(0..increments.len())];
        let retail = round % 2 == 0;
        let kind = if retail {
            "kind = \"retail\"\ndeck = \"d.csv\"".to_string()
        } else {
            format!(
                "kind = \"markup\"\nmarkup_percent = \"{}\"\nmarkup_per_call = \"{}\"",
                Decimal::new(rng.gen_range(0..5000), 2),
                Decimal::new(rng.gen_range(0..10), 2)
            )
        };
        let toml = format!(
            r#"[plans.p]
            {kind}
            currency = "EUR"
            connect_fee = "{}"
            first_increment = {first}
            next_increment = {next}
            minimum_seconds = {}
            [rounding.EUR]
            decimals = {}
            mode = "{}""#,
            Decimal::new(rng.gen_range(0..50), 2),
            rng.gen_range(0..120),
            rng.gen_range(0..5),
            modes[rng.gen_range(0..modes.len())],
        );
        let plan = take(plans_with(&toml, &[("d.csv", deck)]).unwrap(), "p");
        let t = terms(
            Decimal::new(rng.gen_range(0..100_000), 6),
            Decimal::new(rng.gen_range(0..3), 2),
            [1, 6, 60][rng.gen_range(0..3)],
            [1, 6, 60][rng.gen_range(0..3)],
        );
        let to = number(if rng.gen_bool(0.5) {
            "+4930123456"
        } else {
            "+4989123456"
        });
        let c = call(&to, wednesday(), Tz::UTC, &t);
        let mut previous = Decimal::ZERO;
        let mut previous_billable = 0;
        for secs in (0..400).chain((400..20_000).step_by(97)) {
            let r = plan.rate(&c, secs).unwrap();
            assert!(
                r.price >= previous,
                "round {round}: {secs} s {} < {previous}\n{toml}",
                r.price
            );
            assert!(r.billable_seconds >= previous_billable);
            assert!(secs == 0 || r.billable_seconds >= secs);
            previous = r.price;
            previous_billable = r.billable_seconds;
        }
    }
}

#[test]
fn calls_that_cannot_be_rated() {
    let plan = markup_plan(60, 60, 0, "0", "10", "0");
    let to = number("+4930123456");
    let usd = terms_in(dec!(0.01), dec!(0), 1, 1, "USD");
    assert_eq!(
        plan.rate(&call(&to, wednesday(), Tz::UTC, &usd), 60),
        Err(RateError::CurrencyMismatch {
            plan: "p".into(),
            plan_currency: "EUR".parse().unwrap(),
            provider_currency: "USD".parse().unwrap(),
        })
    );
    let zero = terms(dec!(0.01), dec!(0), 0, 1);
    assert_eq!(
        plan.rate(&call(&to, wednesday(), Tz::UTC, &zero), 60),
        Err(RateError::BadProviderTerms)
    );
    let ok = terms(dec!(0.01), dec!(0), 1, 1);
    assert!(matches!(
        plan.rate(
            &call(&to, wednesday(), Tz::UTC, &ok),
            MAX_DURATION_SECONDS + 1
        ),
        Err(RateError::DurationTooLong { .. })
    ));
    assert!(plan
        .rate(&call(&to, wednesday(), Tz::UTC, &ok), MAX_DURATION_SECONDS)
        .is_ok());
    let huge = terms(Decimal::MAX, Decimal::MAX, 1, 1);
    assert_eq!(
        plan.rate(&call(&to, wednesday(), Tz::UTC, &huge), 60),
        Err(RateError::Overflow)
    );
}

/// A plan body with one setting replaced or added.
fn with(extra: &str) -> String {
    format!(
        r#"[plans.bad]
        kind = "markup"
        currency = "EUR"
        first_increment = 60
        next_increment = 60
        {extra}"#
    )
}

#[test]
fn plan_validation_errors() {
    let periods = |a: &str, b: &str| {
        with(&format!(
            "[plans.bad.periods.peak]\nwindows = [{a}]\n[plans.bad.periods.off]\nwindows = [{b}]"
        ))
    };
    let cases: Vec<(String, &str)> = vec![
        (with("").replace("first_increment = 60", "first_increment = 0"), "first_increment must be at least 1 second"),
        (with("").replace("next_increment = 60", "next_increment = 0"), "next_increment must be at least 1 second"),
        (with("").replace("next_increment = 60", "next_increment = 3601"), "next_increment = 3601 is out of range"),
        (with("minimum_seconds = 86401"), "minimum_seconds = 86401 is out of range"),
        (with("connect_fee = \"-0.01\""), "connect_fee must not be negative (got -0.01)"),
        (with("markup_percent = \"-5\""), "markup_percent must not be negative"),
        (with("markup_per_call = \"-1\""), "markup_per_call must not be negative"),
        (with("connect_fee = \"0.0000001\""), "more than 6 decimal places"),
        (with("").replace("\"EUR\"", "\"XYZ\""), "unknown currency \"XYZ\""),
        (with("").replace("\"EUR\"", "\"eur\""), "unknown currency \"eur\""),
        (with("time_zone = \"Europe/Berln\""), "unknown time zone \"Europe/Berln\""),
        (with("time_zone = \"CEST+2\""), "unknown time zone"),
        (with("deck = \"d.csv\""), "deck is only for retail plans"),
        (
            with("").replace("kind = \"markup\"", "kind = \"retail\""),
            "deck is required for retail plans",
        ),
        (
            with("deck = \"d.csv\"\nmarkup_percent = \"1\"").replace("kind = \"markup\"", "kind = \"retail\""),
            "markup_percent is only for markup plans",
        ),
        (
            with("deck = \"missing.csv\"").replace("kind = \"markup\"", "kind = \"retail\""),
            "rate deck \"missing.csv\": no such file missing.csv",
        ),
        (
            with("deck = \"empty.csv\"").replace("kind = \"markup\"", "kind = \"retail\""),
            "rate deck \"empty.csv\": the deck has no entries",
        ),
        (
            with("deck = \"broken.csv\"").replace("kind = \"markup\"", "kind = \"retail\""),
            "rate deck \"broken.csv\": 1 error(s) in rate deck",
        ),
        // Periods.
        (
            periods(
                r#"{ days = ["mon-fri"], from = "08:00", to = "18:00" }"#,
                r#"{ days = ["mon-sun"], from = "17:00", to = "08:00" }"#,
            ),
            "periods \"off\" and \"peak\" overlap on Monday at 17:00",
        ),
        (
            periods(
                r#"{ days = ["mon-fri"], from = "08:00", to = "18:00" }"#,
                r#"{ days = ["mon-fri"], from = "18:00", to = "08:00" }"#,
            ),
            "no period covers Monday 00:00",
        ),
        (
            periods(
                r#"{ days = ["mon-sun"], from = "08:00", to = "18:00" }"#,
                r#"{ days = ["mon-sun"], from = "18:30", to = "08:00" }"#,
            ),
            "no period covers Monday 18:00",
        ),
        (
            periods(r#"{ days = ["mon-sun"], from = "8:00", to = "18:00" }"#, r#"{ days = ["mon"], from = "00:00", to = "24:00" }"#),
            "period \"peak\": from: \"8:00\" is not a time of day",
        ),
        (
            periods(r#"{ days = ["mon-sun"], from = "24:00", to = "18:00" }"#, r#"{ days = ["mon"], from = "00:00", to = "24:00" }"#),
            "from: \"24:00\" is not a time of day",
        ),
        (
            periods(r#"{ days = ["mon-sun"], from = "08:00", to = "25:00" }"#, r#"{ days = ["mon"], from = "00:00", to = "24:00" }"#),
            "to: \"25:00\" is not a time of day",
        ),
        (
            periods(r#"{ days = ["mon-sun"], from = "08:00", to = "+8:00" }"#, r#"{ days = ["mon"], from = "00:00", to = "24:00" }"#),
            "is not a time of day",
        ),
        (
            periods(r#"{ days = ["monday"], from = "08:00", to = "18:00" }"#, r#"{ days = ["mon"], from = "00:00", to = "24:00" }"#),
            "unknown day \"monday\"",
        ),
        (
            periods(r#"{ days = [], from = "08:00", to = "18:00" }"#, r#"{ days = ["mon"], from = "00:00", to = "24:00" }"#),
            "days is empty",
        ),
        (
            periods(r#"{ days = ["mon"], from = "08:00", to = "08:00" }"#, r#"{ days = ["mon"], from = "00:00", to = "24:00" }"#),
            "from and to are both \"08:00\"",
        ),
        (
            with("[plans.bad.periods.all]\nwindows = []"),
            "period \"all\" has no windows",
        ),
        (
            with("[plans.bad.periods.all]\nmultiplier = \"2\"\nmarkup_percent = \"3\"\nwindows = [{ days = [\"mon-sun\"], from = \"00:00\", to = \"24:00\" }]"),
            "period \"all\" sets more than one of",
        ),
        (
            with("[plans.bad.periods.all]\nmultiplier = \"-2\"\nwindows = [{ days = [\"mon-sun\"], from = \"00:00\", to = \"24:00\" }]"),
            "periods.all.multiplier must not be negative",
        ),
        (
            with("[plans.bad.periods.all]\nmultiplier = \"1001\"\nwindows = [{ days = [\"mon-sun\"], from = \"00:00\", to = \"24:00\" }]"),
            "periods.all.multiplier = 1001 is out of range",
        ),
        (
            with("[plans.bad.periods.all]\ndeck = \"d.csv\"\nwindows = [{ days = [\"mon-sun\"], from = \"00:00\", to = \"24:00\" }]"),
            "periods.all.deck is only for retail plans",
        ),
        (
            with("[rounding.EUR]\ndecimals = 9\nmode = \"up\""),
            "rounding for EUR: at most 8 decimal places, got 9",
        ),
        (
            with("[rounding.euro]\ndecimals = 2\nmode = \"up\""),
            "rounding: \"euro\" is not an ISO 4217 code",
        ),
    ];
    let decks = [
        ("d.csv", "49,0.01,0,60,60\n"),
        ("empty.csv", "# nothing\n"),
        ("broken.csv", "49,-1,0,60,60\n"),
    ];
    for (toml, expected) in cases {
        let err = plans_with(&toml, &decks).expect_err(expected).to_string();
        assert!(
            err.contains(expected),
            "expected {expected:?} in {err:?}\n{toml}"
        );
        assert!(
            err.contains("plan \"bad\"") || err.starts_with("rounding"),
            "{err}"
        );
    }
}

#[test]
fn config_syntax_errors_are_clear() {
    // (TOML, part of the error)
    let cases = [
        (
            with("connect_fee = 0.05"),
            "0.05 is a float; write amounts as strings",
        ),
        (
            with("connect_fee = \"1e3\""),
            "\"1e3\" is not a plain decimal number",
        ),
        (
            with("connect_fee = \"abc\""),
            "is not a plain decimal number",
        ),
        (with("conect_fee = \"0.05\""), "unknown field `conect_fee`"),
        (
            with("").replace("\"markup\"", "\"discount\""),
            "unknown variant `discount`",
        ),
        (
            with("[rounding.EUR]\ndecimals = 2\nmode = \"nearest\""),
            "unknown variant `nearest`",
        ),
        (
            with("").replace("first_increment = 60\n", ""),
            "missing field `first_increment`",
        ),
        (
            with("").replace("first_increment = 60", "first_increment = -60"),
            "first_increment",
        ),
    ];
    for (toml, expected) in cases {
        let err = RatingConfig::from_toml(&toml)
            .expect_err(expected)
            .to_string();
        assert!(err.contains(expected), "expected {expected:?} in {err:?}");
    }
    // Integers are exact and accepted; so are the aliases of the modes.
    let c = RatingConfig::from_toml(&with(
        "connect_fee = 1\nmarkup_percent = 15\n[rounding.EUR]\ndecimals = 2\nmode = \"ceiling\"",
    ))
    .unwrap();
    assert_eq!(c.plans["bad"].connect_fee, dec!(1));
    assert_eq!(c.plans["bad"].markup_percent, Some(dec!(15)));
    assert_eq!(c.rounding["EUR"].mode, RoundingMode::Up);
}

#[test]
fn the_documented_sample_configuration_loads() {
    // The TOML block of the module docs, with its deck given in memory.
    let docs = include_str!("mod.rs");
    let sample: String = docs
        .split("//! ```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("//! ```\n").next())
        .expect("the module docs have a TOML sample")
        .lines()
        .map(|l| {
            l.strip_prefix("//! ")
                .or_else(|| l.strip_prefix("//!"))
                .unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("\n");
    let p = plans_with(
        &sample,
        &[("/etc/forwarder/retail.csv", "49,0.0500,0,60,60\n")],
    )
    .unwrap();
    assert_eq!(p.names().collect::<Vec<_>>(), ["retail", "standard"]);
    let standard = p.get("standard").unwrap();
    assert_eq!(
        standard.period_names().collect::<Vec<_>>(),
        ["off-peak", "peak"]
    );
    assert_eq!(
        p.rounding().get("JPY".parse().unwrap()).unwrap().decimals,
        0
    );
    // Wednesday 10:00 UTC = 11:00 in Berlin: peak, 20% markup + 0.01.
    let t = terms(dec!(0.1000), dec!(0), 1, 1);
    let to = number("+4930123456");
    let c = call(&to, wednesday(), standard.default_time_zone(), &t);
    let r = standard.rate(&c, 60).unwrap();
    assert_eq!((&*r.period, r.price), ("peak", dec!(0.13)));
    assert_eq!(r.rule, Rule::Markup { percent: dec!(20) });
    let saturday = call(
        &to,
        utc(2026, 11, 28, 10, 0, 0),
        standard.default_time_zone(),
        &t,
    );
    let r = standard.rate(&saturday, 60).unwrap();
    assert_eq!((&*r.period, r.price), ("off-peak", dec!(0.12)));
    assert_eq!(r.rule, Rule::Markup { percent: dec!(10) });
}

#[test]
fn periods_may_use_their_own_deck() {
    let p = plans_with(
        r#"[plans.r]
        kind = "retail"
        currency = "EUR"
        deck = "day.csv"
        first_increment = 60
        next_increment = 60
        [plans.r.periods.day]
        windows = [{ days = ["mon-fri"], from = "00:00", to = "24:00" }]
        [plans.r.periods.weekend]
        deck = "weekend.csv"
        windows = [{ days = ["sat-sun"], from = "00:00", to = "24:00" }]"#,
        &[
            ("day.csv", "49,0.0500,0,60,60\n"),
            ("weekend.csv", "4930,0.0100,0,60,60\n"),
        ],
    )
    .unwrap();
    let plan = p.get("r").unwrap();
    let t = terms(dec!(0.01), dec!(0), 1, 1);
    let berlin = number("+4930123456");
    let munich = number("+4989123456");
    let weekend = utc(2026, 11, 28, 12, 0, 0);
    assert_eq!(
        plan.rate(&call(&berlin, wednesday(), Tz::UTC, &t), 60)
            .unwrap()
            .price,
        dec!(0.05)
    );
    assert_eq!(
        plan.rate(&call(&berlin, weekend, Tz::UTC, &t), 60)
            .unwrap()
            .price,
        dec!(0.01)
    );
    // The weekend deck has no rate for Munich, so nor does the plan then.
    assert!(matches!(
        plan.rate(&call(&munich, weekend, Tz::UTC, &t), 60),
        Err(RateError::NoRate { .. })
    ));
    assert!(matches!(
        plan.max_duration(&call(&munich, weekend, Tz::UTC, &t), dec!(1)),
        Err(RateError::NoRate { .. })
    ));
}

#[test]
fn a_deck_used_twice_is_loaded_once() {
    let config = RatingConfig::from_toml(
        r#"[plans.a]
        kind = "retail"
        currency = "EUR"
        deck = "d.csv"
        first_increment = 60
        next_increment = 60
        [plans.b]
        kind = "retail"
        currency = "USD"
        deck = "d.csv"
        first_increment = 1
        next_increment = 1"#,
    )
    .unwrap();
    let mut loads = 0;
    let p = Plans::from_config(&config, |_| {
        loads += 1;
        RateDeck::parse_csv(b"1,0.01,0,60,60\n")
    })
    .unwrap();
    assert_eq!((loads, p.len()), (1, 2));
}

#[test]
fn the_rating_config_embeds_in_a_larger_one() {
    #[derive(serde::Deserialize)]
    struct Outer {
        #[allow(dead_code)]
        listen: String,
        #[serde(flatten)]
        rating: RatingConfig,
    }
    let outer: Outer =
        toml::from_str(&format!("listen = \"127.0.0.1:5060\"\n{}", with(""))).unwrap();
    assert!(outer.rating.plans.contains_key("bad"));
    assert!(Plans::from_config(&outer.rating, |_| RateDeck::parse_csv(b"")).is_ok());
}
