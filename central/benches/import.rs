//! Importing a 1-million-line rate deck: validate (CSV parse), store in
//! SQLite (one transaction, multi-row inserts, WAL + synchronous=NORMAL) and
//! build the route index, each phase timed. One import takes seconds, so
//! this is a plain timing harness (3 runs, each phase reported) rather than
//! a criterion sampling loop.
//!
//! `cargo bench -p central --bench import` (LINES=... to change the size).

use central::db::store::{self, NewProvider, SipAddress, Transport};
use central::db::Database;
use central::routing::{build_snapshot, row_of};
use provider_sdk::ratedeck::RateDeck;
use std::fmt::Write as _;
use std::time::Instant;

/// A realistic prefix set: country codes, then area codes, then longer
/// operator blocks below them.
fn synthetic_csv(lines: usize) -> String {
    const COUNTRIES: [&str; 40] = [
        "1", "7", "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44",
        "45", "46", "47", "48", "49", "51", "52", "54", "55", "56", "57", "61", "62", "63", "64",
        "65", "66", "81", "82", "84", "86", "90", "91", "92", "234",
    ];
    let mut out = String::with_capacity(lines * 40);
    out.push_str("prefix,rate_per_minute,connect_fee,first_increment,next_increment\n");
    let mut n = 0usize;
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    'outer: for depth in 2..=8u32 {
        for cc in COUNTRIES {
            let width = 10u64.pow(depth);
            for block in 0..width {
                if n == lines {
                    break 'outer;
                }
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let rate = 10 + seed % 9000; // 0.0010 .. 0.9010
                let _ = writeln!(
                    out,
                    "{cc}{block:0w$},0.{rate:04},0,60,60",
                    w = depth as usize
                );
                n += 1;
                if n % 7 == 0 && block > width / 3 {
                    break;
                }
            }
        }
    }
    out
}

fn main() {
    let lines: usize = std::env::var("LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let csv = synthetic_csv(lines);
    println!(
        "rate deck import: {lines} lines, {:.1} MB CSV",
        csv.len() as f64 / 1e6
    );
    for run in 1..=3 {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = dir.path().join("bench.sqlite");
        let db = Database::open(&url.to_string_lossy(), 2).expect("open db");
        let mut conn = db.conn().expect("conn");
        let provider = store::insert_provider(
            &mut conn,
            &NewProvider {
                name: "bench".into(),
                sip_addresses: vec![SipAddress {
                    address: "127.0.0.1:5060".into(),
                    transport: Transport::Udp,
                }],
                currency: "EUR".into(),
                contact: "bench".into(),
            },
            "hash",
            chrono::Utc::now(),
        )
        .expect("provider");

        let t0 = Instant::now();
        let deck = RateDeck::parse_csv(csv.as_bytes()).expect("valid deck");
        let rows: Vec<_> = deck.entries().iter().map(row_of).collect();
        let t_parse = t0.elapsed();
        let t1 = Instant::now();
        store::replace_rates(&mut conn, provider.id, &rows, chrono::Utc::now()).expect("store");
        let t_store = t1.elapsed();
        drop(conn);
        let t2 = Instant::now();
        let snap = build_snapshot(&db, chrono::Utc::now(), 1).expect("index");
        let t_index = t2.elapsed();
        assert_eq!(snap.index.entry_count(), rows.len());
        let total = t0.elapsed();
        println!(
            "run {run}: validate {:.2} s, store {:.2} s, load+index {:.2} s, total {:.2} s ({} entries)",
            t_parse.as_secs_f64(),
            t_store.as_secs_f64(),
            t_index.as_secs_f64(),
            total.as_secs_f64(),
            snap.index.entry_count()
        );
    }
}
