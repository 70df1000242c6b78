//! Route index benchmarks: build of 10 million entries (time, bytes per
//! entry, RSS cross-check), query latency (criterion, plus p99 from a timed
//! loop), and the parse + index part of a 1-million-line deck import.
//!
//! `cargo bench -p central --bench index` (full scale). Set
//! `INDEX_BENCH_PROVIDERS` / `INDEX_BENCH_PREFIXES` to shrink it.

use std::hint::black_box;
use std::time::{Duration, Instant};

use central::index::{ProviderKey, ProviderRates, RouteCriteria, RouteIndex};
use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion};
use provider_sdk::money::Currency;
use provider_sdk::number::E164;
use provider_sdk::ratedeck::synth::{deck_csv, PrefixPlan};
use provider_sdk::ratedeck::RateDeck;
use rust_decimal::Decimal;

/// Full-size default under `cargo bench`; a small size when the bench is
/// only smoke-run by `cargo test --benches` (no `--bench` argument).
fn env_usize(name: &str, default: usize) -> usize {
    let benching = std::env::args().any(|a| a == "--bench");
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching {
            default
        } else {
            (default / 100).max(10)
        })
}

/// Resident set size of this process, from /proc (Linux).
fn rss_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// CPU time (user + system) this process has used, from /proc (Linux).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Load average over the last minute, to say how busy the machine was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

/// Hands freed heap back to the kernel so RSS reflects live memory.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only releases free memory.
        unsafe {
            malloc_trim(0);
        }
    }
}

fn mib(b: usize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

struct Fixture {
    index: RouteIndex,
    plan: PrefixPlan,
}

fn build_fixture() -> Fixture {
    let providers = env_usize("INDEX_BENCH_PROVIDERS", 1_000);
    let per_provider = env_usize("INDEX_BENCH_PREFIXES", 10_000);
    let plan_size = env_usize("INDEX_BENCH_PLAN", 300_000);
    let eur = Currency::parse("EUR").expect("EUR is a valid code");

    trim_heap();
    let rss_before = rss_bytes().unwrap_or(0);
    let t = Instant::now();
    let plan = PrefixPlan::generate(plan_size, 1);
    let decks = plan.provider_decks(providers, per_provider, 2);
    let input: Vec<ProviderRates> = decks
        .into_iter()
        .enumerate()
        .map(|(i, entries)| ProviderRates {
            key: ProviderKey(i as u32 + 1),
            currency: eur,
            rate_version: 1,
            entries,
        })
        .collect();
    let total: usize = input.iter().map(|p| p.entries.len()).sum();
    eprintln!(
        "generated {providers} providers x {per_provider} prefixes = {total} entries from a plan of {} prefixes in {:.1} s",
        plan.prefixes.len(),
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let cpu0 = cpu_seconds().unwrap_or(0.0);
    let index = RouteIndex::build(input, Utc::now());
    let build = t.elapsed();
    let cpu = cpu_seconds().unwrap_or(0.0) - cpu0;
    trim_heap();
    let rss_after = rss_bytes().unwrap_or(0);
    let plan_bytes: usize = plan.prefixes.capacity() * std::mem::size_of_val(&plan.prefixes[0]);
    let entries = index.entry_count();
    println!(
        "index build: {entries} entries, {} prefixes, {} distinct terms, {} threads: {:.2} s wall, {cpu:.2} s CPU, load average {}",
        index.prefix_count(),
        index.term_count(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        build.as_secs_f64(),
        loadavg()
    );
    println!(
        "index memory: heap_bytes {:.1} MiB = {:.1} bytes/entry; RSS growth since before input generation {:.1} MiB = {:.1} bytes/entry (includes the {:.1} MiB prefix plan kept for queries)",
        mib(index.heap_bytes()),
        index.heap_bytes() as f64 / entries.max(1) as f64,
        mib(rss_after.saturating_sub(rss_before)),
        rss_after.saturating_sub(rss_before) as f64 / entries.max(1) as f64,
        mib(plan_bytes),
    );
    Fixture { index, plan }
}

fn query_bench(c: &mut Criterion) {
    let fx = build_fixture();
    let eur = Currency::parse("EUR").expect("EUR is a valid code");
    // Popular destinations: most providers carry these country codes.
    let numbers: Vec<E164> = ["49", "44", "33", "1"]
        .iter()
        .flat_map(|cc| fx.plan.numbers(250, Some(cc), 3))
        .collect();
    let criteria = RouteCriteria {
        max_rate: None,
        currency: Some(eur),
        limit: 10,
    };
    let capped = RouteCriteria {
        max_rate: Some(Decimal::new(5, 2)),
        currency: Some(eur),
        limit: 10,
    };
    let all = RouteCriteria {
        max_rate: None,
        currency: None,
        limit: usize::MAX,
    };
    let willing: Vec<usize> = numbers
        .iter()
        .map(|n| fx.index.query(n, &all).len())
        .collect();
    let min_willing = willing.iter().copied().min().unwrap_or(0);
    let mean_willing = willing.iter().sum::<usize>() as f64 / willing.len().max(1) as f64;
    println!(
        "query set: {} numbers, willing providers per number min {min_willing}, mean {mean_willing:.0}",
        numbers.len()
    );

    let mut g = c.benchmark_group("route_query");
    g.measurement_time(Duration::from_secs(5));
    let mut i = 0usize;
    g.bench_function("cheapest_10_of_all_willing", |b| {
        b.iter(|| {
            i = (i + 1) % numbers.len();
            black_box(fx.index.query(&numbers[i], &criteria))
        })
    });
    g.bench_function("cheapest_10_max_rate_0.05", |b| {
        b.iter(|| {
            i = (i + 1) % numbers.len();
            black_box(fx.index.query(&numbers[i], &capped))
        })
    });
    g.finish();

    // Percentiles from a timed loop (criterion reports means and medians).
    for (name, crit) in [
        ("cheapest_10", &criteria),
        ("cheapest_10_max_rate_0.05", &capped),
    ] {
        let mut samples: Vec<u64> = Vec::with_capacity(100_000);
        for k in 0..100_000 {
            let n = &numbers[k % numbers.len()];
            let t = Instant::now();
            black_box(fx.index.query(black_box(n), crit));
            samples.push(t.elapsed().as_nanos() as u64);
        }
        samples.sort_unstable();
        let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
        println!(
            "(load average {}) route_query/{name}: 100000 queries:",
            loadavg()
        );
        println!(
            "route_query/{name}: 100000 queries: p50 {:.2} us, p90 {:.2} us, p99 {:.2} us, p99.9 {:.2} us, max {:.2} us",
            pct(0.50) as f64 / 1e3,
            pct(0.90) as f64 / 1e3,
            pct(0.99) as f64 / 1e3,
            pct(0.999) as f64 / 1e3,
            samples[samples.len() - 1] as f64 / 1e3,
        );
    }
}

/// Parse a 1-million-line CSV deck and index it (the part of an import that
/// is not storage).
fn import_bench(c: &mut Criterion) {
    let lines = env_usize("IMPORT_BENCH_LINES", 1_000_000);
    let plan = PrefixPlan::generate(lines, 11);
    let deck = plan.provider_decks(1, lines, 12).pop().unwrap_or_default();
    let csv = deck_csv(&deck);
    let n = deck.len();
    let eur = Currency::parse("EUR").expect("EUR is a valid code");
    let mut g = c.benchmark_group("import");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Elements(n as u64));
    g.bench_function(format!("parse_csv_and_index_{n}_lines"), |b| {
        b.iter(|| {
            let deck = RateDeck::parse_csv(black_box(&csv)).expect("synthetic deck is valid");
            let index = RouteIndex::build(
                vec![ProviderRates {
                    key: ProviderKey(1),
                    currency: eur,
                    rate_version: 1,
                    entries: deck.into_entries(),
                }],
                Utc::now(),
            );
            black_box(index.entry_count())
        })
    });
    g.finish();
}

/// A 1-million-entry build (100 x 10,000) under criterion; the 10-million
/// build is timed once in the query fixture above.
fn build_bench(c: &mut Criterion) {
    let plan = PrefixPlan::generate(env_usize("INDEX_BENCH_PLAN", 300_000), 1);
    let eur = Currency::parse("EUR").expect("EUR is a valid code");
    let providers = env_usize("BUILD_BENCH_PROVIDERS", 100);
    let input: Vec<ProviderRates> = plan
        .provider_decks(providers, 10_000, 2)
        .into_iter()
        .enumerate()
        .map(|(i, entries)| ProviderRates {
            key: ProviderKey(i as u32),
            currency: eur,
            rate_version: 1,
            entries,
        })
        .collect();
    let mut g = c.benchmark_group("index_build");
    g.sample_size(10);
    let entries: usize = input.iter().map(|p| p.entries.len()).sum();
    g.throughput(criterion::Throughput::Elements(entries as u64));
    g.bench_function(format!("{providers}_providers_{entries}_entries"), |b| {
        b.iter_batched(
            || input.clone(),
            |input| black_box(RouteIndex::build(input, Utc::now()).entry_count()),
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, query_bench, import_bench, build_bench);
criterion_main!(benches);
