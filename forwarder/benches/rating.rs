//! Rating throughput: calls rated per second on one core.
//!
//! `cargo bench -p forwarder --bench rating`
//!
//! A retail plan over a synthetic 50,000-prefix deck and a markup plan, both
//! with peak/off-peak periods, rate a mix of 100,000 calls (answer times
//! spread over a month, four time zones, 15% unanswered, durations up to
//! 30 minutes, several provider terms). Before criterion runs, 10,000,000
//! calls are rated in one timed loop on one thread: the rating share of the
//! statement run of 10 million calls.

use std::hint::black_box;
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use criterion::{Criterion, Throughput};
use forwarder::rating::{Call, Plans, RatingConfig};
use provider_sdk::number::E164;
use provider_sdk::ratedeck::synth::PrefixPlan;
use provider_sdk::ratedeck::RateDeck;
use provider_sdk::ticket::RateTerms;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;

const CONFIG: &str = r#"
[plans.retail]
kind = "retail"
currency = "EUR"
deck = "retail.csv"
connect_fee = "0.01"
first_increment = 30
next_increment = 6
minimum_seconds = 10
[plans.retail.periods.peak]
windows = [{ days = ["mon-fri"], from = "08:00", to = "18:00" }]
[plans.retail.periods.off-peak]
multiplier = "0.6"
windows = [
    { days = ["mon-fri"], from = "00:00", to = "08:00" },
    { days = ["mon-fri"], from = "18:00", to = "24:00" },
    { days = ["sat-sun"], from = "00:00", to = "24:00" },
]

[plans.markup]
kind = "markup"
currency = "EUR"
first_increment = 60
next_increment = 60
markup_percent = "25"
markup_per_call = "0.005"
[plans.markup.periods.peak]
windows = [{ days = ["mon-fri"], from = "08:00", to = "18:00" }]
[plans.markup.periods.off-peak]
markup_percent = "10"
windows = [
    { days = ["mon-fri"], from = "00:00", to = "08:00" },
    { days = ["mon-fri"], from = "18:00", to = "24:00" },
    { days = ["sat-sun"], from = "00:00", to = "24:00" },
]
"#;

struct Fixture {
    plans: Plans,
    destinations: Vec<E164>,
    terms: Vec<RateTerms>,
    /// (destination index, answer time, zone, terms index, duration)
    calls: Vec<(usize, DateTime<Utc>, Tz, usize, u64)>,
}

fn fixture(calls: usize) -> Fixture {
    let numbering = PrefixPlan::generate(50_000, 61);
    let entries = numbering
        .provider_decks(1, 50_000, 62)
        .pop()
        .unwrap_or_default();
    let deck = RateDeck::from_entries(entries).expect("synthetic deck is valid");
    let config = RatingConfig::from_toml(CONFIG).expect("bench config parses");
    let plans = Plans::from_config(&config, |_| Ok::<_, String>(deck.clone())).expect("plans load");
    let destinations = numbering.numbers(10_000, None, 63);
    let eur = "EUR".parse().expect("EUR");
    let terms: Vec<RateTerms> = [(60, 60), (1, 1), (30, 6), (60, 1), (6, 6)]
        .iter()
        .enumerate()
        .map(|(i, &(first, next))| RateTerms {
            per_minute: Decimal::new(50 + 37 * i as i64, 4),
            connect_fee: Decimal::new(i as i64 % 2, 2),
            first_increment: first,
            next_increment: next,
            currency: eur,
            version: 1,
        })
        .collect();
    let zones: Vec<Tz> = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"]
        .iter()
        .map(|z| z.parse().expect("zone"))
        .collect();
    let start = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
    let mut rng = StdRng::seed_from_u64(64);
    let calls = (0..calls)
        .map(|_| {
            let duration = if rng.gen_bool(0.15) {
                0
            } else {
                rng.gen_range(1..=1800)
            };
            (
                rng.gen_range(0..destinations.len()),
                start + Duration::seconds(rng.gen_range(0..31 * 86_400)),
                zones[rng.gen_range(0..zones.len())],
                rng.gen_range(0..terms.len()),
                duration,
            )
        })
        .collect();
    Fixture {
        plans,
        destinations,
        terms,
        calls,
    }
}

/// Rates every call of the fixture with `plan`; returns the sum of prices
/// and how many calls had no rate (retail destinations outside the deck).
fn rate_all(f: &Fixture, plan: &str) -> (Decimal, usize) {
    let plan = f.plans.get(plan).expect("plan");
    let mut total = Decimal::ZERO;
    let mut unrated = 0;
    for &(dest, at, tz, terms, duration) in &f.calls {
        let call = Call {
            destination: &f.destinations[dest],
            answered_at: at,
            time_zone: tz,
            provider: &f.terms[terms],
        };
        match plan.rate(black_box(&call), black_box(duration)) {
            Ok(r) => total += r.price,
            Err(_) => unrated += 1,
        }
    }
    (total, unrated)
}

/// The statement-run share: `n` calls rated on this thread, timed once.
fn timed_run(f: &Fixture, n: usize) {
    let rounds = n.div_ceil(f.calls.len());
    for plan in ["retail", "markup"] {
        let began = Instant::now();
        let (mut total, mut unrated) = (Decimal::ZERO, 0);
        for _ in 0..rounds {
            let (t, u) = rate_all(f, plan);
            total += t;
            unrated += u;
        }
        let secs = began.elapsed().as_secs_f64();
        let rated = rounds * f.calls.len();
        println!(
            "timed run, {plan}: {rated} calls in {secs:.2} s = {:.0} calls/s, {:.0} ns/call \
             ({unrated} without a rate; sum of prices {total})",
            rated as f64 / secs,
            secs * 1e9 / rated as f64,
        );
    }
}

fn bench_rating(c: &mut Criterion, f: &Fixture) {
    let mut g = c.benchmark_group("rate_call");
    g.throughput(Throughput::Elements(f.calls.len() as u64));
    g.sample_size(20);
    for plan in ["retail", "markup"] {
        g.bench_function(format!("{plan}_{}_calls", f.calls.len()), |b| {
            b.iter(|| rate_all(f, plan))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("max_duration");
    let sample = &f.calls[..f.calls.len().min(10_000)];
    g.throughput(Throughput::Elements(sample.len() as u64));
    g.sample_size(20);
    for plan_name in ["retail", "markup"] {
        let plan = f.plans.get(plan_name).expect("plan");
        g.bench_function(format!("{plan_name}_{}_setups", sample.len()), |b| {
            b.iter(|| {
                let mut longest = 0u64;
                for &(dest, at, tz, terms, _) in sample {
                    let call = Call {
                        destination: &f.destinations[dest],
                        answered_at: at,
                        time_zone: tz,
                        provider: &f.terms[terms],
                    };
                    if let Ok(forwarder::rating::MaxDuration::Seconds(s)) =
                        plan.max_duration(black_box(&call), Decimal::new(500, 2))
                    {
                        longest = longest.max(s);
                    }
                }
                longest
            })
        });
    }
    g.finish();
}

fn benches() {
    // Small when only smoke-run by `cargo test --benches`.
    let full = std::env::args().any(|a| a == "--bench");
    let f = fixture(if full { 100_000 } else { 1_000 });
    timed_run(&f, if full { 10_000_000 } else { 10_000 });
    let mut c = Criterion::default().configure_from_args();
    bench_rating(&mut c, &f);
    c.final_summary();
}

fn main() {
    benches();
}
