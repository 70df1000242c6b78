//! A statement run at scale on SQLite: S subscribers with C calls in the
//! period (default 100,000 and 10,000,000), then
//!
//! 1. `prepare`: gathering each subscriber's period (calls with their
//!    ledger charges, entries, holds check), summing, rendering text, HTML,
//!    CSV and the MIME message, and storing each statement — timed, SMTP
//!    excluded;
//! 2. with `STATEMENTS_BENCH_SMTP_PORT` set (see `ops/bench/statements.sh`,
//!    which starts aiosmtpd on loopback): `deliver` of
//!    `STATEMENTS_BENCH_SEND` statements (default 5,000) to that server —
//!    messages per second.
//!
//! Generation (not timed) writes the rows with multi-row INSERTs in large
//! transactions, with the secondary indexes dropped and rebuilt after.
//! The CDRs carry no decision/attempts/media JSON (real ones do), so rows
//! are smaller than in production.
//!
//! `cargo bench -p forwarder --bench statements` (env: STATEMENTS_BENCH_SUBSCRIBERS,
//! STATEMENTS_BENCH_CALLS, STATEMENTS_BENCH_DIR to keep the database,
//! STATEMENTS_BENCH_GENERATE_ONLY to stop once it is generated)

use chrono::{DateTime, Duration, Utc};
use diesel::connection::SimpleConnection;
use forwarder::db::{Database, DbConnection};
use forwarder::statements::config::{MailSection, StatementsSection};
use forwarder::statements::{self, mail::Mailer, Scope};
use std::fmt::Write as _;
use std::time::Instant;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn exec(conn: &mut DbConnection, sql: &str) {
    match conn {
        DbConnection::Sqlite(c) => c.batch_execute(sql).unwrap(),
        DbConnection::Postgres(_) => unreachable!("SQLite only"),
    }
}

const ZONES: [&str; 4] = [
    "Europe/Berlin",
    "America/New_York",
    "Europe/London",
    "Asia/Tokyo",
];
const SECONDARY: &[(&str, &str)] = &[
    ("cdrs_by_subscriber", "cdrs (subscriber_id, received_at)"),
    (
        "cdrs_open_by_subscriber",
        "cdrs (subscriber_id) WHERE ended_at IS NULL",
    ),
    (
        "cdrs_ended_by_subscriber",
        "cdrs (subscriber_id, ended_at) WHERE ended_at IS NOT NULL",
    ),
    (
        "ledger_by_subscriber",
        "ledger_entries (subscriber_id, kind, created_at)",
    ),
];

/// CPU seconds used by this process so far (user + system, every thread).
fn cpu_seconds() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn generate(db: &Database, subscribers: u64, calls: u64) {
    let started = Instant::now();
    let mut conn = db.conn().unwrap();
    let c = &mut *conn;
    exec(c, "PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;");
    for (name, _) in SECONDARY {
        exec(c, &format!("DROP INDEX IF EXISTS {name}"));
    }
    let created = micros("2026-02-01T12:00:00Z".parse().unwrap());
    let per = calls / subscribers.max(1);
    let extra = calls % subscribers.max(1);
    let span_secs: i64 = 25 * 86_400; // 2 to 27 February: inside every zone's February
    let base: DateTime<Utc> = "2026-02-02T00:00:00Z".parse().unwrap();
    let mut call_no: u64 = 0;
    let batch_subs = 1000u64;
    let mut sub = 1u64;
    while sub <= subscribers {
        exec(c, "BEGIN");
        let last = (sub + batch_subs - 1).min(subscribers);
        let mut sql = String::from("INSERT INTO subscribers (id, name, status, email, time_zone, plan, currency, account_kind, credit_limit, balance, created_at, updated_at) VALUES ");
        let mut cdr_sql = String::new();
        let mut le_sql = String::new();
        let mut balances = Vec::new();
        for id in sub..=last {
            let n = per + u64::from(id <= extra);
            let mut balance = rust_decimal::Decimal::from(50);
            let mut cdr_rows = Vec::with_capacity(n as usize);
            let mut le_rows = Vec::with_capacity(n as usize + 1);
            le_rows.push(format!(
                "({id}, 'payment', '50.00', 'EUR', NULL, NULL, 'pay-{id}', {})",
                micros(base + Duration::hours(1))
            ));
            for k in 0..n {
                call_no += 1;
                let uuid = uuid::Uuid::from_u128(u128::from(call_no)).to_string();
                let offset = (k as i64 * span_secs) / n.max(1) as i64 + (id as i64 % 600);
                let answered = base + Duration::seconds(offset);
                let secs = 5 + (call_no * 37 % 900) as i64;
                let ended = answered + Duration::seconds(secs);
                let minutes = (secs + 59) / 60;
                let price = rust_decimal::Decimal::new(minutes * 12, 3);
                let cost = rust_decimal::Decimal::new(minutes * 8, 3);
                balance -= price;
                let target = if call_no % 3 == 0 {
                    "+4915112345678"
                } else {
                    "+441632960001"
                };
                let name = if call_no % 5 == 0 {
                    "'Caller, \"quoted\" <x>'"
                } else {
                    "NULL"
                };
                cdr_rows.push(format!(
                    "('{uuid}', {id}, '+4930{id:07}', '+1555{k:07}', {name}, '{target}', 'completed', {}, {}, {}, 200, 'caller BYE', 1, 'carrier-a', {secs}, '{price}', '{cost}', '{}', 'EUR', {})",
                    micros(answered - Duration::seconds(3)),
                    micros(answered),
                    micros(ended),
                    price - cost,
                    micros(ended)
                ));
                le_rows.push(format!(
                    "({id}, 'call_charge', '{}', 'EUR', NULL, '{uuid}', '{uuid}', {})",
                    -price,
                    micros(ended + Duration::milliseconds(500))
                ));
            }
            balances.push((id, balance));
            let tz = ZONES[id as usize % ZONES.len()];
            if id > sub {
                sql.push(',');
            }
            let _ = write!(
                sql,
                "({id}, 'Subscriber {id}', 'active', 's{id}@example.net', '{tz}', 'standard', 'EUR', 'postpaid', '100', '{balance}', {created}, {created})"
            );
            for chunk in cdr_rows.chunks(500) {
                let _ = writeln!(cdr_sql, "INSERT INTO cdrs (id, subscriber_id, called_number, caller_number, caller_name, target, status, received_at, answered_at, ended_at, sip_status, hangup_cause, provider_id, provider_name, billable_seconds, price, provider_cost, margin, rating_currency, updated_at) VALUES {};", chunk.join(","));
            }
            for chunk in le_rows.chunks(500) {
                let _ = writeln!(le_sql, "INSERT INTO ledger_entries (subscriber_id, kind, amount, currency, reason, cdr_id, idempotency_key, created_at) VALUES {};", chunk.join(","));
            }
        }
        sql.push(';');
        exec(c, &sql);
        exec(c, &cdr_sql);
        exec(c, &le_sql);
        exec(c, "COMMIT");
        sub = last + 1;
        if sub % 10_000 == 1 {
            eprintln!(
                "  generated {} subscribers, {} calls ({:.0} s)",
                sub - 1,
                call_no,
                started.elapsed().as_secs_f64()
            );
        }
    }
    eprintln!(
        "  rebuilding indexes ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    for (name, on) in SECONDARY {
        exec(c, &format!("CREATE INDEX {name} ON {on}"));
    }
    // No ANALYZE: a forwarder's database has no statistics (nothing runs
    // it), and with SQLite's STAT4 samples every query with a bound value
    // on an indexed column is re-planned at each execution.
    exec(c, "PRAGMA synchronous = NORMAL;");
    eprintln!(
        "generated {subscribers} subscribers and {call_no} calls in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken from the command line.
    forwarder::tls::install_crypto_provider();
    let subscribers = env_or("STATEMENTS_BENCH_SUBSCRIBERS", 100_000);
    let calls = env_or("STATEMENTS_BENCH_CALLS", 10_000_000);
    let keep = std::env::var("STATEMENTS_BENCH_DIR").ok();
    let tmp = tempfile::tempdir().unwrap();
    let dir = keep
        .as_deref()
        .map_or_else(|| tmp.path().to_path_buf(), std::path::PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("statements-{subscribers}-{calls}.sqlite"));
    let fresh = !path.exists();
    let db = Database::open(&path.to_string_lossy(), 6).unwrap();
    if fresh {
        generate(&db, subscribers, calls);
    }
    if std::env::var_os("STATEMENTS_BENCH_GENERATE_ONLY").is_some() {
        // A pristine database to copy for each run (the DELETE of a run's
        // statements takes longer than generating anew).
        println!("statements: database at {}", path.display());
        return;
    }
    if !fresh {
        eprintln!("reusing {}", path.display());
        let mut conn = db.conn().unwrap();
        exec(
            &mut conn,
            "DELETE FROM statements; DELETE FROM statement_holds; \
             DROP TABLE IF EXISTS sqlite_stat4; DROP TABLE IF EXISTS sqlite_stat1;",
        );
    }
    let settings = StatementsSection::default().resolve().unwrap();
    let from =
        forwarder::statements::mail::parse_mailbox("Billing <billing@home.example>").unwrap();
    let now: DateTime<Utc> = "2026-03-02T12:00:00Z".parse().unwrap();

    let started = Instant::now();
    let cpu = cpu_seconds();
    let report = statements::prepare(&db, &settings, &from, now, Scope::All).unwrap();
    let took = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    assert!(
        report.errors.is_empty(),
        "{:?}",
        &report.errors[..report.errors.len().min(3)]
    );
    assert!(report.held.is_empty());
    let bytes: i64 = {
        use diesel::dsl::sql;
        use diesel::prelude::*;
        let mut conn = db.conn().unwrap();
        diesel::select(sql::<diesel::sql_types::BigInt>(
            "(SELECT COALESCE(SUM(LENGTH(message)), 0) FROM statements)",
        ))
        .get_result(&mut *conn)
        .unwrap()
    };
    println!(
        "statements/prepare: {} statements for {subscribers} subscribers and {calls} calls in {took:.1} s ({cpu:.1} s CPU; {:.0} statements/s, {:.0} calls/s, {:.1} MB of messages)",
        report.created.len(),
        report.created.len() as f64 / took,
        calls as f64 / took,
        bytes as f64 / 1e6
    );

    let Some(port) = std::env::var("STATEMENTS_BENCH_SMTP_PORT").ok() else {
        println!("statements/deliver: skipped (set STATEMENTS_BENCH_SMTP_PORT; ops/bench/statements.sh does)");
        return;
    };
    let send = env_or("STATEMENTS_BENCH_SEND", 5000) as i64;
    {
        // Only the first `send` statements are due; the rest count as sent.
        let mut conn = db.conn().unwrap();
        exec(
            &mut conn,
            &format!("UPDATE statements SET status = 'sent', sent_at = 1, next_attempt_at = NULL WHERE id > (SELECT MIN(id) FROM statements) + {send} - 1"),
        );
    }
    let concurrency = env_or("STATEMENTS_BENCH_CONCURRENCY", 8) as usize;
    let mail: MailSection = toml::from_str(&format!(
        "host = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"billing@home.example\"\nconcurrency = {concurrency}"
    ))
    .unwrap();
    let mail = mail.resolve(&dir).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cpu = cpu_seconds();
    let (r, took) = rt.block_on(async {
        // The SMTP client needs the runtime.
        let mailer = std::sync::Arc::new(Mailer::new(&mail).unwrap());
        let started = Instant::now();
        let r = statements::deliver(&db, mailer, &settings, concurrency, now)
            .await
            .unwrap();
        (r, started.elapsed().as_secs_f64())
    });
    let cpu = cpu_seconds() - cpu;
    assert!(r.failed.is_empty(), "{:?}", r.failed.first());
    println!(
        "statements/deliver: {} messages to aiosmtpd on loopback in {took:.1} s ({cpu:.1} s CPU in the forwarder; {:.0} messages/s, {concurrency} connections)",
        r.sent.len(),
        r.sent.len() as f64 / took
    );
}
