//! Rate deck CSV parsing throughput (lines per second).
//!
//! `cargo bench -p provider-sdk --bench ratedeck`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use provider_sdk::ratedeck::synth::{deck_csv, PrefixPlan};
use provider_sdk::ratedeck::RateDeck;

fn parse_csv(c: &mut Criterion) {
    let mut g = c.benchmark_group("ratedeck_parse_csv");
    g.sample_size(10);
    // Small when only smoke-run by `cargo test --benches`.
    let sizes: &[usize] = if std::env::args().any(|a| a == "--bench") {
        &[100_000, 1_000_000]
    } else {
        &[1_000]
    };
    for &lines in sizes {
        let plan = PrefixPlan::generate(lines, 21);
        let deck = plan.provider_decks(1, lines, 22).pop().unwrap_or_default();
        let csv = deck_csv(&deck);
        g.throughput(Throughput::Elements(deck.len() as u64));
        g.bench_function(format!("{}_lines_{}_bytes", deck.len(), csv.len()), |b| {
            b.iter(|| RateDeck::parse_csv(black_box(&csv)).map(|d| d.len()))
        });
    }
    g.finish();
}

criterion_group!(benches, parse_csv);
criterion_main!(benches);
