//! Settlement ledger ingestion: tickets per second, on SQLite and on
//! PostgreSQL, and how much of it is signature verification.
//!
//! For each backend, a data directory is initialised as `central init`
//! does, two providers (payer and carrier) are registered with keys
//! certified by its CA, and agreed submissions (ticket, payer receipt,
//! countersignature; signing not timed) are generated. Then, timed:
//!
//! 1. in process, the phases of `POST /v1/tickets` on batches of 1,000:
//!    the signatures alone (3 per submission, ed25519 batch verification
//!    in chunks of 64 submissions, and one by one), the full ledger
//!    verification (`LedgerVerifier::verify_batch`, and `verify_submission`
//!    one by one), and storing (`db::ledger::store_tickets`, one transaction
//!    per batch); wall and thread CPU time;
//! 2. end to end over HTTPS (mutual TLS, loopback): `POST /v1/tickets` with
//!    batches of 1,000 from `CLIENTS` concurrent clients.
//!
//! `cargo bench -p central --bench ledger`; `TICKETS=` (default 20000),
//! `CLIENTS=` (default 2), `BACKENDS=sqlite,postgres` (PostgreSQL from
//! `TEST_POSTGRES_URL`, a throwaway database is created and dropped).

use central::app::{self, InitOptions};
use central::ca::{CertificateAuthority, Validity};
use central::config::Config;
use central::db::ledger;
use central::db::store::{self, CertOwner, NewProvider, SipAddress, StoredCertificate, Transport};
use central::db::Database;
use central::ledger::{new_ticket, PostedSubmission};
use chrono::Utc;
use diesel::connection::SimpleConnection;
use diesel::Connection;
use provider_sdk::number::E164;
use provider_sdk::pki::{ParticipantKey, Role};
use provider_sdk::ticket::jws;
use provider_sdk::ticket::{RateTerms, Submission, Ticket, TicketSigner, UsageReceipt};
use std::time::{Duration, Instant};

const BATCH: usize = 1000;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs `f`, returning its result with wall and thread CPU time.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (w, c) = (Instant::now(), thread_cpu());
    let out = f();
    (out, w.elapsed(), thread_cpu() - c)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

struct Party {
    id: i64,
    key: ParticipantKey,
    cert_pem: String,
}

fn party(db: &Database, ca: &CertificateAuthority, name: &str) -> Party {
    let mut conn = db.conn().expect("conn");
    let p = store::insert_provider(
        &mut conn,
        &NewProvider {
            name: name.into(),
            sip_addresses: vec![SipAddress {
                address: "127.0.0.1:5060".into(),
                transport: Transport::Udp,
            }],
            currency: "EUR".into(),
            contact: "bench".into(),
        },
        &format!("hash-{name}"),
        Utc::now(),
    )
    .expect("provider");
    let key = ParticipantKey::generate();
    let cert = ca
        .certify_csr(
            &key.csr_pem(name).expect("csr"),
            Role::Provider(p.id as u64),
            Validity::days(30),
        )
        .expect("certify");
    store::insert_certificate(
        &mut conn,
        &StoredCertificate {
            key_id: cert.key_id.to_string(),
            serial: cert.serial.to_string(),
            owner: CertOwner::Provider(p.id),
            subject_cn: name.into(),
            cert_pem: cert.cert_pem.clone(),
            not_before: cert.not_before,
            not_after: cert.not_after,
            revoked_at: None,
        },
        Utc::now(),
    )
    .expect("certificate");
    Party {
        id: p.id,
        key,
        cert_pem: cert.cert_pem,
    }
}

fn copy(key: &ParticipantKey) -> ParticipantKey {
    ParticipantKey::from_pkcs8_der(&key.to_pkcs8_der().expect("der")).expect("key")
}

/// `n` agreed submissions from `payer` to `carrier`.
fn submissions(n: usize, payer: &Party, carrier: &Party) -> Vec<PostedSubmission> {
    let ps = TicketSigner::new(copy(&payer.key), "https://127.0.0.1:8443");
    let cs = TicketSigner::new(copy(&carrier.key), "https://127.0.0.1:8443");
    let now = Utc::now().timestamp() - 240;
    (0..n)
        .map(|i| {
            let t = Ticket {
                iss: payer.id as u64,
                payer: "payer".into(),
                aud: carrier.id as u64,
                orig: E164::parse("+4930123456").expect("number"),
                dest: E164::parse("+441632960001").expect("number"),
                call_id: format!("{i}-{}@127.0.0.1", uuid::Uuid::new_v4().simple()),
                rate: RateTerms {
                    per_minute: "0.0125".parse().expect("price"),
                    connect_fee: "0.01".parse().expect("price"),
                    first_increment: 30,
                    next_increment: 6,
                    currency: "EUR".parse().expect("currency"),
                    version: 3,
                },
                iat: now,
                exp: now + 60,
                jti: uuid::Uuid::now_v7(),
            };
            let secs = 10 + (i as u64 % 80);
            let r = UsageReceipt {
                iss: t.iss,
                aud: t.aud,
                tid: t.jti,
                answer: now + 3,
                end: now + 3 + secs as i64,
                billable: t.rate.billable_seconds(secs).expect("billable"),
                iat: now + 4 + secs as i64,
            };
            let receipt = ps.sign_receipt(&r).expect("receipt");
            PostedSubmission {
                ticket: ps.sign_ticket(&t).expect("ticket"),
                provider_receipt: cs.countersign_receipt(&receipt).expect("countersign"),
                receipt: Some(receipt),
            }
        })
        .collect()
}

fn per_s(n: usize, d: Duration) -> String {
    format!("{:.0}", n as f64 / d.as_secs_f64())
}

fn us_each(n: usize, d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6 / n as f64)
}

/// The phases of `POST /v1/tickets`, in process, on one thread.
fn in_process(
    db: &Database,
    root: &provider_sdk::pki::RootCertificate,
    subs: &[PostedSubmission],
    payer: &Party,
    carrier: &Party,
) {
    let n = subs.len();
    // Signatures alone: tokens decoded outside the timing.
    let triples: Vec<(
        String,
        ed25519_dalek::Signature,
        ed25519_dalek::VerifyingKey,
    )> = subs
        .iter()
        .flat_map(|s| {
            [
                (s.ticket.as_str(), "lcr", payer.key.verifying_key()),
                (
                    s.receipt.as_deref().expect("receipt"),
                    "lcr-receipt",
                    payer.key.verifying_key(),
                ),
                (
                    s.provider_receipt.as_str(),
                    "lcr-receipt",
                    carrier.key.verifying_key(),
                ),
            ]
        })
        .map(|(token, ppt, key)| {
            let d = jws::decode(token, ppt).expect("decode");
            (d.signing_input.to_owned(), d.signature, key)
        })
        .collect();
    let batch_sigs = |chunk_subs: usize| {
        let ((), w, c) = timed(|| {
            for chunk in triples.chunks(3 * chunk_subs) {
                let inputs: Vec<&[u8]> = chunk.iter().map(|t| t.0.as_bytes()).collect();
                let sigs: Vec<_> = chunk.iter().map(|t| t.1).collect();
                let keys: Vec<_> = chunk.iter().map(|t| t.2).collect();
                jws::verify_batch(&inputs, &sigs, &keys).expect("batch");
            }
        });
        (w, c)
    };
    for chunk in [8, 16, 256, 1000] {
        let (w, c) = batch_sigs(chunk);
        println!(
            "  | signatures alone, ed25519 batch of {chunk} submissions ({} signatures) | {} CPU per submission | {} submissions/CPU-s | wall {} |",
            3 * chunk,
            us_each(n, c),
            per_s(n, c),
            us_each(n, w)
        );
    }
    let (w_batch, c_batch) = batch_sigs(provider_sdk::ticket::settle::BATCH_CHUNK);
    let ((), w_single, c_single) = timed(|| {
        for (input, sig, key) in &triples {
            key.verify_strict(input.as_bytes(), sig).expect("verify");
        }
    });

    let verifier = central::ledger::verifier(root.clone(), db.clone());
    let borrowed: Vec<Submission<'_>> = subs.iter().map(|s| s.as_submission()).collect();
    let now = Utc::now();
    // Warm the certificate caches (as a running server has them).
    verifier
        .verify_submission(&borrowed[0], carrier.id as u64, now)
        .expect("warm");
    let (verified, w_verify, c_verify) = timed(|| {
        borrowed
            .chunks(BATCH)
            .flat_map(|b| verifier.verify_batch(b, carrier.id as u64, now))
            .collect::<Vec<_>>()
    });
    // The same with one forged ticket signature per 250 submissions.
    let forged: Vec<PostedSubmission> = subs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut s = s.clone();
            if i % 250 == 125 {
                let cut = s.ticket.len() - 2;
                let last = if &s.ticket[cut..=cut] == "A" {
                    "B"
                } else {
                    "A"
                };
                s.ticket = format!("{}{last}{}", &s.ticket[..cut], &s.ticket[cut + 1..]);
            }
            s
        })
        .collect();
    let forged_borrowed: Vec<Submission<'_>> = forged.iter().map(|s| s.as_submission()).collect();
    let (refused, w_forged, c_forged) = timed(|| {
        forged_borrowed
            .chunks(BATCH)
            .flat_map(|b| verifier.verify_batch(b, carrier.id as u64, now))
            .filter(Result::is_err)
            .count()
    });
    assert_eq!(refused, n / 250);
    let (_, w_verify1, c_verify1) = timed(|| {
        for s in borrowed.iter().take(n / 4) {
            verifier
                .verify_submission(s, carrier.id as u64, now)
                .expect("verify");
        }
    });
    let rows: Vec<_> = verified
        .iter()
        .zip(subs)
        .map(|(v, s)| new_ticket(v.as_ref().expect("verified"), s, "bench", now).expect("row"))
        .collect();
    let (_, w_store, _) = timed(|| {
        let mut conn = db.conn().expect("conn");
        for b in rows.chunks(BATCH) {
            let out = ledger::store_tickets(&mut conn, b).expect("store");
            assert!(out
                .iter()
                .all(|o| matches!(o, ledger::StoreOutcome::Inserted(_))));
        }
    });
    let total = w_verify + w_store;
    println!(
        "  in process, {n} submissions (3 signatures each), batches of {BATCH}, load {}",
        loadavg()
    );
    println!(
        "  | signatures alone, ed25519 batch ({} submissions/chunk) | {} CPU per submission | {} submissions/CPU-s | wall {} |",
        provider_sdk::ticket::settle::BATCH_CHUNK,
        us_each(n, c_batch),
        per_s(n, c_batch),
        us_each(n, w_batch)
    );
    println!(
        "  | signatures alone, one by one (verify_strict) | {} | {} | wall {} |",
        us_each(n, c_single),
        per_s(n, c_single),
        us_each(n, w_single)
    );
    println!(
        "  | LedgerVerifier::verify_batch (full checks) | {} | {} | wall {} |",
        us_each(n, c_verify),
        per_s(n, c_verify),
        us_each(n, w_verify)
    );
    println!(
        "  | LedgerVerifier::verify_batch, 1 forgery per 250 submissions ({refused} refused) | {} | {} | wall {} |",
        us_each(n, c_forged),
        per_s(n, c_forged),
        us_each(n, w_forged)
    );
    println!(
        "  | LedgerVerifier::verify_submission one by one ({} of them) | {} | {} | wall {} |",
        n / 4,
        us_each(n / 4, c_verify1),
        per_s(n / 4, c_verify1),
        us_each(n / 4, w_verify1)
    );
    println!(
        "  | store_tickets, one transaction per batch | | | wall {} = {}/s |",
        us_each(n, w_store),
        per_s(n, w_store)
    );
    println!(
        "  | verify + store (one thread) | | | {}/s; signature share of verification {:.0} % (CPU), of verify + store {:.0} % (wall) |",
        per_s(n, total),
        100.0 * c_batch.as_secs_f64() / c_verify.as_secs_f64(),
        100.0 * w_batch.as_secs_f64() / total.as_secs_f64()
    );
}

/// `POST /v1/tickets` over HTTPS with batches of [`BATCH`] from `clients`
/// concurrent clients.
async fn over_https(
    dir: &std::path::Path,
    db: &Database,
    subs: Vec<PostedSubmission>,
    carrier: &Party,
    clients: usize,
) {
    let n = subs.len();
    let mut cfg = Config::load(dir, None).expect("config");
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    let running = app::start(cfg).await.expect("start");
    let url = format!("https://127.0.0.1:{}/v1/tickets", running.addr.port());
    let root = std::fs::read(dir.join(app::ROOT_CERT)).expect("root");
    let key_pem = carrier.key.to_pkcs8_pem().expect("pem");
    let identity = format!("{}\n{}", carrier.cert_pem, key_pem.as_str());
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&root).expect("root"))
        .identity(reqwest::Identity::from_pem(identity.as_bytes()).expect("identity"))
        .use_rustls_tls()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client");
    let bodies: Vec<Vec<u8>> = subs
        .chunks(BATCH)
        .map(|b| {
            let v: Vec<serde_json::Value> = b
                .iter()
                .map(|s| {
                    serde_json::json!({"ticket": s.ticket, "receipt": s.receipt,
                                       "provider_receipt": s.provider_receipt})
                })
                .collect();
            serde_json::to_vec(&v).expect("json")
        })
        .collect();
    let mb = bodies.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    let queue = std::sync::Arc::new(parking_lot::Mutex::new(bodies));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let queue = queue.clone();
            let client = client.clone();
            let url = url.clone();
            tokio::spawn(async move {
                loop {
                    let Some(body) = queue.lock().pop() else {
                        break;
                    };
                    let res = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .expect("post");
                    let status = res.status();
                    let answer: serde_json::Value = res.json().await.expect("json");
                    assert_eq!(status, 200, "{answer}");
                    let results = answer["results"].as_array().expect("results");
                    assert!(
                        results.iter().all(|r| r["duplicate"] == false),
                        "all stored"
                    );
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("client task");
    }
    let wall = started.elapsed();
    running.shutdown().await;
    let stored = ledger::count_tickets(&mut db.conn().expect("conn")).expect("count");
    println!(
        "  | POST /v1/tickets over HTTPS, {clients} clients, batches of {BATCH} ({mb:.1} MB JSON) | {n} tickets in {:.2} s | **{}/s** | load {} | {stored} rows in the ledger |",
        wall.as_secs_f64(),
        per_s(n, wall),
        loadavg()
    );
}

fn run(backend: &str, n: usize, clients: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pg_admin = None;
    let database_url = match backend {
        "sqlite" => None,
        _ => {
            let Ok(admin) = std::env::var("TEST_POSTGRES_URL") else {
                println!("{backend}: SKIPPED (set TEST_POSTGRES_URL)");
                return;
            };
            let name = format!("central_bench_{}", uuid::Uuid::new_v4().simple());
            diesel::pg::PgConnection::establish(&admin)
                .expect("postgres")
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .expect("create database");
            let base = admin.rsplit_once('/').expect("url").0.to_owned();
            pg_admin = Some((admin, name.clone()));
            Some(format!("{base}/{name}"))
        }
    };
    app::init(
        dir.path(),
        &InitOptions {
            database_url,
            ..InitOptions::default()
        },
    )
    .expect("init");
    let cfg = Config::load(dir.path(), None).expect("config");
    let db = Database::open(&cfg.database_url, 4).expect("db");
    let ca = CertificateAuthority::load(dir.path().join(app::CA_DIR)).expect("ca");
    let payer = party(&db, &ca, "payer");
    let carrier = party(&db, &ca, "carrier");
    println!("{backend}:");
    let (subs, w_gen, _) = timed(|| submissions(n, &payer, &carrier));
    println!(
        "  (signed {n} submissions in {:.1} s, not timed below)",
        w_gen.as_secs_f64()
    );
    in_process(&db, ca.root(), &subs, &payer, &carrier);
    let subs = submissions(n, &payer, &carrier);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(over_https(dir.path(), &db, subs, &carrier, clients));
    drop(db);
    if let Some((admin, name)) = pg_admin {
        if let Ok(mut c) = diesel::pg::PgConnection::establish(&admin) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

fn main() {
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let n = env("TICKETS", 20_000);
    let clients = env("CLIENTS", 2);
    let backends = std::env::var("BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    central::tls::install_crypto_provider();
    println!(
        "ledger ingestion: {n} tickets per phase, {} CPUs, load {}",
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        loadavg()
    );
    for b in backends.split(',') {
        run(b.trim(), n, clients);
    }
}
