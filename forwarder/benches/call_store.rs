//! What the call path's storage costs per call: [`admit`] (number lookup,
//! standing, authorization, rule, open CDR in one transaction), one
//! [`cdrs::update`] at answer and [`cdrs::close_and_charge`] at hangup, on
//! SQLite (file, WAL) and, with TEST_POSTGRES_URL, PostgreSQL; for
//! subscribers without spend caps and for subscribers with daily and monthly
//! caps whose day already holds [`PRIOR_CHARGES`] charged calls.
//!
//! `cargo bench -p forwarder --bench call_store`

use chrono::{Duration, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use diesel::connection::SimpleConnection;
use diesel::Connection;
use forwarder::db::{Database, DbConnection};
use forwarder::rules::{parse_target, Rule};
use forwarder::store::admission::{admit, Admission, InboundCall};
use forwarder::store::cdrs::{self, CdrClose, CdrProgress, FinalStatus, Rating};
use forwarder::store::ledger::{self, EntryKind, NewEntry};
use forwarder::store::{numbers, rules, subscribers};
use forwarder::subscriber::{Account, NewSubscriber};
use provider_sdk::number::E164;
use rust_decimal::Decimal;

const SUBSCRIBERS: i64 = 100;
/// Subscribers with spend caps, and the calls already charged today to
/// each before measuring (a busy number: a shop's or a call centre's).
const CAPPED: i64 = 10;
const PRIOR_CHARGES: u64 = 1_000;

/// Subscribers `first .. first + count`, with caps or without.
fn setup(db: &Database, first: i64, count: i64, capped: bool) {
    let mut conn = db.conn().unwrap();
    let now = Utc::now();
    let cap = capped.then(|| Decimal::from(1_000_000));
    for i in first..first + count {
        let s = subscribers::add(
            &mut conn,
            &NewSubscriber {
                name: format!("Subscriber {i}"),
                email: format!("s{i}@example.net"),
                time_zone: chrono_tz::Europe::Berlin,
                plan: "standard".into(),
                currency: "EUR".parse().unwrap(),
                account: Account::Prepaid,
                daily_spend_cap: cap,
                monthly_spend_cap: cap,
                max_concurrent_calls: Some(100),
            },
            now,
        )
        .unwrap();
        numbers::add(&mut conn, s.id, &number(i), now).unwrap();
        rules::replace(
            &mut conn,
            s.id,
            &[Rule {
                name: None,
                targets: vec![parse_target("+491701234567").unwrap()],
                windows: vec![],
            }],
            now,
        )
        .unwrap();
        ledger::record(
            &mut conn,
            s.id,
            &NewEntry {
                kind: EntryKind::Payment,
                amount: Decimal::from(1_000_000),
                reason: None,
                idempotency_key: Some(format!("seed-{i}")),
            },
            now,
        )
        .unwrap();
    }
}

fn number(i: i64) -> E164 {
    E164::parse(&format!("+4930{:06}", i)).unwrap()
}

fn one_call(conn: &mut DbConnection, first: i64, count: i64, i: u64) {
    let now = Utc::now();
    let call = InboundCall {
        id: uuid::Uuid::now_v7(),
        called_number: number(first + (i % count as u64) as i64),
        caller_number: Some("+441632960123".into()),
        caller_name: Some("Bench".into()),
    };
    let Admission::Admitted(a) = admit(conn, &call, now).unwrap() else {
        panic!("refused")
    };
    cdrs::update(
        conn,
        a.cdr.id,
        &CdrProgress {
            answered_at: Some(now),
            target: Some(a.rule.targets[0].number),
            provider_id: Some(1),
            provider_name: Some("p1".into()),
            ..CdrProgress::default()
        },
        now,
    )
    .unwrap();
    let end = now + Duration::seconds(60);
    cdrs::close_and_charge(
        conn,
        a.cdr.id,
        &CdrClose {
            status: FinalStatus::Completed,
            ended_at: end,
            sip_status: Some(200),
            hangup_cause: Some("caller BYE".into()),
            billable_seconds: 60,
            media_stats: None,
            rating: Some(Rating {
                price: Decimal::new(12, 3),
                provider_cost: Decimal::new(10, 3),
                margin: Decimal::new(2, 3),
                currency: "EUR".parse().unwrap(),
            }),
            rated_in: Some(chrono_tz::Europe::Berlin),
            progress: CdrProgress::default(),
        },
        end,
    )
    .unwrap();
}

fn bench_backend(c: &mut Criterion, name: &str, db: &Database) {
    setup(db, 0, SUBSCRIBERS, false);
    let mut conn = db.conn().unwrap();
    let mut i = 0u64;
    c.bench_function(
        &format!("call_store/{name}/admit+answer+close_and_charge"),
        |b| {
            b.iter(|| {
                i += 1;
                one_call(&mut conn, 0, SUBSCRIBERS, i);
            })
        },
    );
    // Spend caps: every admission needs the day's and the month's spend.
    let first = SUBSCRIBERS;
    setup(db, first, CAPPED, true);
    for i in 0..PRIOR_CHARGES * CAPPED as u64 {
        one_call(&mut conn, first, CAPPED, i);
    }
    c.bench_function(
        &format!(
            "call_store/{name}/capped, {PRIOR_CHARGES} charges today/admit+answer+close_and_charge"
        ),
        |b| {
            b.iter(|| {
                i += 1;
                one_call(&mut conn, first, CAPPED, i);
            })
        },
    );
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Database::open(dir.path().join("bench.sqlite").to_str().unwrap(), 2).unwrap();
    bench_backend(c, "sqlite", &sqlite);
    if let Ok(admin) = std::env::var("TEST_POSTGRES_URL") {
        let name = format!("forwarder_bench_{}", uuid::Uuid::new_v4().simple());
        let mut a = diesel::pg::PgConnection::establish(&admin).unwrap();
        a.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
        let pg = Database::open(&format!("{base}/{name}"), 2).unwrap();
        bench_backend(c, "postgres", &pg);
        drop(pg);
        let _ = a.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    } else {
        eprintln!("SKIPPED PostgreSQL (no TEST_POSTGRES_URL)");
    }
}

criterion_group! {
    name = call_store;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(5));
    targets = benches
}
criterion_main!(call_store);
