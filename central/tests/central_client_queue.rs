//! The durable ticket submission queue (`provider_sdk::central::SubmissionQueue`)
//! delivering over real mutual TLS.
//!
//! Central's ledger endpoint (`POST /v1/tickets`) is not part of this
//! server yet, so these tests serve it from **a stand-in**: central's own
//! HTTPS accept loop (`central::server::serve`) and TLS configuration with
//! the certificates of a real `central init`, routing only
//! `POST /v1/tickets`, implemented here to the endpoint's contract (one
//! object or an array of up to 1000; recorded, duplicate, 409 conflict,
//! 403 ticket for another provider, 422 with a reason; per-item results
//! for arrays). The providers' certificates are enrolled at the real
//! central server.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use central::server::PeerCertificate;
use chrono::Utc;
use common::{Backend, Central};
use parking_lot::Mutex;
use provider_sdk::central::{
    ensure_enrolled, CentralClient, CentralError, Enrolled, EnrollmentConfig, LedgerStatus,
    QueueCounts, QueueError, QueueOptions, Submission, SubmissionOutcome, SubmissionQueue,
};
use provider_sdk::number::E164;
use provider_sdk::pki::{Role, RootCertificate};
use provider_sdk::ticket::{
    jws, RateTerms, Ticket, TicketSigner, UsageReceipt, PPT_RECEIPT, PPT_TICKET,
};
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// The stand-in for central's `POST /v1/tickets`.

/// What the stand-in ledger holds and how it is told to misbehave.
#[derive(Default)]
struct Ledger {
    /// Ticket id -> the submission as first recorded.
    tickets: Mutex<HashMap<Uuid, Value>>,
    /// Submissions newly recorded (a ticket recorded twice would count twice).
    recorded: AtomicUsize,
    duplicates: AtomicUsize,
    requests: AtomicUsize,
    /// Sizes of the array requests.
    batches: Mutex<Vec<usize>>,
    /// Answer the next N requests with 503.
    fail_next: AtomicUsize,
    /// Answer the next N requests with 403 (as for an unknown credential).
    forbid_next: AtomicUsize,
    /// Answer the next N requests with 200 and an unreadable body.
    garbage_next: AtomicUsize,
    /// Refuse arrays of more than one item with 413.
    refuse_arrays: AtomicBool,
}

fn take(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

fn problem(status: StatusCode, reason: Option<&str>, detail: &str) -> Response {
    let mut body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

/// (status, reason, detail) of a refused item.
type Refused = (u16, &'static str, String);

/// Records one submission for provider `caller`.
fn record(ledger: &Ledger, item: &Value, caller: u64) -> Result<(Uuid, bool, bool), Refused> {
    let text = |k: &str| item.get(k).and_then(Value::as_str);
    let ticket = text("ticket").ok_or((422, "malformed", "no ticket".to_string()))?;
    let provider_receipt =
        text("provider_receipt").ok_or((422, "malformed", "no provider_receipt".to_string()))?;
    let decoded =
        jws::decode(ticket, PPT_TICKET).map_err(|e| (422, "malformed_ticket", e.to_string()))?;
    let claims: Ticket = serde_json::from_slice(&decoded.payload)
        .map_err(|e| (422, "malformed_ticket", e.to_string()))?;
    jws::decode(provider_receipt, PPT_RECEIPT)
        .map_err(|e| (422, "malformed_receipt", e.to_string()))?;
    if claims.aud != caller {
        return Err((
            403,
            "wrong_audience",
            format!("ticket is for provider {}", claims.aud),
        ));
    }
    let with_receipt = text("receipt").is_some();
    let mut tickets = ledger.tickets.lock();
    match tickets.get(&claims.jti) {
        Some(existing) if existing == item => {
            ledger.duplicates.fetch_add(1, Ordering::SeqCst);
            Ok((claims.jti, true, with_receipt))
        }
        Some(_) => Err((
            409,
            "conflict",
            "ticket already recorded with other content".into(),
        )),
        None => {
            tickets.insert(claims.jti, item.clone());
            ledger.recorded.fetch_add(1, Ordering::SeqCst);
            Ok((claims.jti, false, with_receipt))
        }
    }
}

fn ledger_status(with_receipt: bool) -> &'static str {
    if with_receipt {
        "agreed"
    } else {
        "provider_only"
    }
}

async fn tickets(
    State((ledger, root)): State<(Arc<Ledger>, Arc<RootCertificate>)>,
    Extension(peer): Extension<PeerCertificate>,
    body: Bytes,
) -> Response {
    ledger.requests.fetch_add(1, Ordering::SeqCst);
    if take(&ledger.fail_next) {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "database unavailable",
        );
    }
    if take(&ledger.forbid_next) {
        return problem(
            StatusCode::FORBIDDEN,
            None,
            "client certificate is not on record at central",
        );
    }
    if take(&ledger.garbage_next) {
        return (StatusCode::OK, "<html>surprise</html>").into_response();
    }
    let Some(cert) = peer.0 else {
        return problem(
            StatusCode::FORBIDDEN,
            None,
            "submitting tickets needs a provider's client certificate",
        );
    };
    let caller = match root.verify(cert.as_ref(), Utc::now()) {
        Ok(c) => match c.role {
            Role::Provider(id) => id,
            _ => return problem(StatusCode::FORBIDDEN, None, "only providers submit tickets"),
        },
        Err(e) => return problem(StatusCode::FORBIDDEN, None, &e.to_string()),
    };
    let Ok(doc) = serde_json::from_slice::<Value>(&body) else {
        return problem(StatusCode::BAD_REQUEST, None, "invalid JSON");
    };
    match doc {
        Value::Array(items) => {
            ledger.batches.lock().push(items.len());
            if items.len() > 1000 {
                return problem(StatusCode::PAYLOAD_TOO_LARGE, None, "at most 1000");
            }
            if items.len() > 1 && ledger.refuse_arrays.load(Ordering::SeqCst) {
                return problem(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    None,
                    "request body exceeds the configured size limit",
                );
            }
            let results: Vec<Value> = items
                .iter()
                .enumerate()
                .map(|(index, item)| match record(&ledger, item, caller) {
                    Ok((id, duplicate, receipt)) => json!({
                        "index": index, "ticket_id": id,
                        "status": ledger_status(receipt), "duplicate": duplicate,
                    }),
                    Err((status, reason, detail)) => json!({
                        "index": index,
                        "error": {"status": status, "reason": reason, "detail": detail},
                    }),
                })
                .collect();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                json!({ "results": results }).to_string(),
            )
                .into_response()
        }
        item @ Value::Object(_) => match record(&ledger, &item, caller) {
            Ok((id, duplicate, receipt)) => (
                if duplicate {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
                [(header::CONTENT_TYPE, "application/json")],
                json!({
                    "ticket_id": id, "status": ledger_status(receipt), "amount": "0.021",
                    "currency": "EUR", "duplicate": duplicate,
                })
                .to_string(),
            )
                .into_response(),
            Err((status, reason, detail)) => {
                problem(StatusCode::from_u16(status).unwrap(), Some(reason), &detail)
            }
        },
        _ => problem(
            StatusCode::BAD_REQUEST,
            None,
            "expected an object or an array",
        ),
    }
}

/// The stand-in server, until dropped.
struct StandIn {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.abort();
    }
}

/// Serves the stand-in on `addr` with the server certificate of `c`'s data directory.
async fn stand_in(c: &Central, addr: SocketAddr, ledger: Arc<Ledger>) -> StandIn {
    let read = |name: &str| std::fs::read_to_string(c.dir.path().join(name)).unwrap();
    let root = RootCertificate::from_pem(&c.root_pem).unwrap();
    let tls = central::tls::server_config(
        root.der().as_ref(),
        &read(central::app::SERVER_CERT),
        &read(central::app::SERVER_KEY),
    )
    .unwrap();
    let app = Router::new()
        .route("/v1/tickets", post(tickets))
        .with_state((ledger, Arc::new(root)));
    // The port may have been in use a moment ago (reserved, then released).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) if std::time::Instant::now() < deadline => {
                eprintln!("bind {addr}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("bind {addr}: {e}"),
        }
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(central::server::serve(listener, tls, app, async {
        let _ = stopped.await;
    }));
    StandIn {
        stop: Some(stop),
        task,
    }
}

/// A loopback address with nothing listening on it (yet).
fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

// ---------------------------------------------------------------------------
// Providers enrolled at the real central, and their tickets.

struct Network {
    central: Central,
    _dir: tempfile::TempDir,
    payer: Enrolled,
    carrier: Enrolled,
}

async fn enroll_provider(c: &Central, dir: &Path, name: &str) -> Enrolled {
    let res = c
        .operator()
        .post(c.url("/v1/providers"))
        .json(&json!({
            "name": name,
            "sip_addresses": [{"address": "127.0.0.1:5060", "transport": "udp"}],
            "currency": "EUR",
            "contact": "noc@example.net",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    ensure_enrolled(&EnrollmentConfig {
        central_url: c.base.clone(),
        root_certificate: c.dir.path().join("ca.crt"),
        key: dir.join(format!("{name}.key")),
        certificate: dir.join(format!("{name}.crt")),
        name: name.to_owned(),
        enrollment_token: Some(body["enrollment_token"].as_str().unwrap().to_owned()),
    })
    .await
    .unwrap()
}

async fn network() -> Network {
    let central = Central::start(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let payer = enroll_provider(&central, dir.path(), "home").await;
    let carrier = enroll_provider(&central, dir.path(), "carrier").await;
    Network {
        central,
        _dir: dir,
        payer,
        carrier,
    }
}

impl Network {
    /// The carrier's client for the server at `addr`.
    fn client(&self, addr: SocketAddr) -> CentralClient {
        self.carrier
            .client_builder(&format!("https://{addr}"))
            .build()
            .unwrap()
    }

    /// A ticket from the payer for `aud`, the payer's receipt for a call of
    /// `secs` seconds, and the carrier's countersignature.
    fn submission_for(&self, jti: Uuid, aud: u64, secs: i64) -> Submission {
        let payer = TicketSigner::new(self.payer.key.clone(), &self.central.base);
        let carrier = TicketSigner::new(self.carrier.key.clone(), &self.central.base);
        let now = Utc::now().timestamp();
        let iss = self.payer.provider_id().unwrap();
        let ticket = Ticket {
            iss,
            payer: "home".into(),
            aud,
            orig: E164::parse("+4930123456").unwrap(),
            dest: E164::parse("+33639980001").unwrap(),
            call_id: format!("{}@127.0.0.1", jti.simple()),
            rate: RateTerms {
                per_minute: dec!(0.021),
                connect_fee: dec!(0),
                first_increment: 1,
                next_increment: 1,
                currency: "EUR".parse().unwrap(),
                version: 1,
            },
            iat: now - 600,
            exp: now - 540,
            jti,
        };
        let receipt = UsageReceipt {
            iss,
            aud,
            tid: jti,
            answer: now - 590,
            end: now - 590 + secs,
            billable: secs as u64,
            iat: now,
        };
        let payer_receipt = payer.sign_receipt(&receipt).unwrap();
        Submission {
            ticket: payer.sign_ticket(&ticket).unwrap(),
            provider_receipt: carrier.countersign_receipt(&payer_receipt).unwrap(),
            receipt: Some(payer_receipt),
        }
    }

    fn submission(&self) -> Submission {
        self.submission_for(Uuid::now_v7(), self.carrier.provider_id().unwrap(), 42)
    }
}

fn quick() -> QueueOptions {
    QueueOptions {
        batch_size: 3,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        rescan_interval: Duration::from_millis(200),
    }
}

/// Waits (at most 30 s) until the queue's counts satisfy `pred`.
async fn until(queue: &SubmissionQueue, pred: impl Fn(&QueueCounts) -> bool) -> QueueCounts {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let counts = queue.counts();
        if pred(&counts) || std::time::Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Names in `dir` (files only), sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock")
        .collect();
    names.sort();
    names
}

fn reason_of(dir: &Path, id: Uuid) -> Value {
    let text = std::fs::read_to_string(dir.join(format!("{id}.json.reason.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_in_batches_deletes_on_success_and_sets_refusals_aside() {
    let net = network().await;
    let addr = free_addr();
    let ledger = Arc::new(Ledger::default());
    let _server = stand_in(&net.central, addr, ledger.clone()).await;
    let client = net.client(addr);
    let carrier_id = net.carrier.provider_id().unwrap();

    // The single form, typed: recorded, then the same again is a duplicate.
    let early = net.submission();
    let recorded = client.submit_ticket(&early).await.unwrap();
    assert_eq!(recorded.ticket_id, early.ticket_id().unwrap());
    assert_eq!(recorded.status, LedgerStatus::Agreed);
    assert_eq!(recorded.amount, Some(dec!(0.021)));
    assert!(!recorded.duplicate);
    assert!(client.submit_ticket(&early).await.unwrap().duplicate);
    let other_content = net.submission_for(early.ticket_id().unwrap(), carrier_id, 99);
    let err = client.submit_ticket(&other_content).await.unwrap_err();
    assert_eq!(err.status(), Some(409));
    assert_eq!(err.problem().unwrap().reason.as_deref(), Some("conflict"));

    let spool = tempfile::tempdir().unwrap();
    let queue = SubmissionQueue::open(spool.path(), quick()).unwrap();
    let good: Vec<Submission> = (0..5).map(|_| net.submission()).collect();
    for s in &good {
        queue.push(s.clone()).await.unwrap();
    }
    // Pushing the same again changes nothing; other content for a queued id is refused.
    queue.push(good[0].clone()).await.unwrap();
    let id0 = good[0].ticket_id().unwrap();
    assert!(matches!(
        queue.push(net.submission_for(id0, carrier_id, 7)).await,
        Err(QueueError::Conflict(id)) if id == id0
    ));
    assert!(matches!(
        queue
            .push(Submission {
                ticket: "not a ticket".into(),
                ..good[1].clone()
            })
            .await,
        Err(QueueError::Invalid(_))
    ));
    let elsewhere = net.submission_for(Uuid::now_v7(), carrier_id + 100, 42);
    queue.push(elsewhere.clone()).await.unwrap();
    queue.push(other_content.clone()).await.unwrap();
    // Central has this one already (as after a crash between its answer
    // and the delete): it answers duplicate.
    let early2 = net.submission();
    assert!(matches!(
        &client.submit_tickets(std::slice::from_ref(&early2)).await.unwrap()[0],
        SubmissionOutcome::Recorded(r) if !r.duplicate
    ));
    queue.push(early2.clone()).await.unwrap();
    assert_eq!(queue.counts().queued, 8);
    assert_eq!(files(spool.path()).len(), 8);

    let sender = queue.start(client.clone()).unwrap();
    assert!(matches!(
        queue.start(client.clone()),
        Err(QueueError::SenderRunning)
    ));
    let counts = until(&queue, |c| c.queued == 0).await;
    sender.stop().await;
    assert_eq!(counts.queued, 0, "{counts:?}");
    assert_eq!(counts.sent, 6, "{counts:?}");
    assert_eq!(counts.duplicates, 1, "{counts:?}");
    assert_eq!(counts.rejected, 2, "{counts:?}");
    assert_eq!(counts.corrupt, 0, "{counts:?}");

    // Every good ticket recorded exactly once, with its own content.
    assert_eq!(ledger.recorded.load(Ordering::SeqCst), 7);
    let tickets = ledger.tickets.lock().clone();
    for s in good.iter().chain([&early, &early2]) {
        let stored = &tickets[&s.ticket_id().unwrap()];
        assert_eq!(stored, &serde_json::to_value(s).unwrap());
    }
    // Sent as arrays, at most batch_size at a time.
    let batches = ledger.batches.lock().clone();
    assert!(batches.iter().all(|&n| n <= 3), "{batches:?}");
    assert!(batches.iter().any(|&n| n > 1), "{batches:?}");

    // The spool is empty; the refusals sit in rejected/ with their reasons.
    assert!(files(spool.path()).is_empty());
    let rejected = queue.rejected_dir();
    assert_eq!(files(&rejected).len(), 4, "{:?}", files(&rejected));
    let wrong = reason_of(&rejected, elsewhere.ticket_id().unwrap());
    assert_eq!(wrong["status"], 403);
    assert_eq!(wrong["reason"], "wrong_audience");
    let conflict = reason_of(&rejected, other_content.ticket_id().unwrap());
    assert_eq!(conflict["status"], 409);
    assert_eq!(conflict["reason"], "conflict");
    let kept: Submission = serde_json::from_str(
        &std::fs::read_to_string(rejected.join(format!("{}.json", elsewhere.ticket_id().unwrap())))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(kept, elsewhere);

    // Moved back by hand, a rejected file is queued again on the next open.
    drop(queue);
    let id = elsewhere.ticket_id().unwrap();
    std::fs::rename(
        rejected.join(format!("{id}.json")),
        spool.path().join(format!("{id}.json")),
    )
    .unwrap();
    let queue = SubmissionQueue::open(spool.path(), quick()).unwrap();
    assert_eq!(queue.counts().queued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_while_unreachable_and_loses_nothing_across_a_restart() {
    let net = network().await;
    let addr = free_addr(); // nothing listens here until the stand-in starts
    let client = net.client(addr);
    let spool = tempfile::tempdir().unwrap();

    let mut pushed: Vec<Submission> = Vec::new();
    {
        let queue = SubmissionQueue::open(spool.path(), quick()).unwrap();
        for _ in 0..3 {
            let s = net.submission();
            queue.push(s.clone()).await.unwrap();
            pushed.push(s);
        }
        let sender = queue.start(client.clone()).unwrap();
        let counts = until(&queue, |c| c.failed_attempts >= 3).await;
        assert!(counts.failed_attempts >= 3, "{counts:?}");
        assert_eq!(counts.queued, 3, "{counts:?}");
        assert_eq!(counts.sent, 0, "{counts:?}");
        sender.stop().await;
        // The process "ends" here: the queue is dropped.
    }
    assert_eq!(files(spool.path()).len(), 3);

    let queue = SubmissionQueue::open(spool.path(), quick()).unwrap();
    assert_eq!(queue.counts().queued, 3);
    for _ in 0..2 {
        let s = net.submission();
        queue.push(s.clone()).await.unwrap();
        pushed.push(s);
    }
    assert_eq!(queue.counts().queued, 5);

    // Central comes up: busy at first (503), then refusing the credential
    // once (403 for the whole request), then fine.
    let ledger = Arc::new(Ledger::default());
    ledger.fail_next.store(1, Ordering::SeqCst);
    ledger.forbid_next.store(1, Ordering::SeqCst);
    let _server = stand_in(&net.central, addr, ledger.clone()).await;
    let sender = queue.start(client.clone()).unwrap();
    let counts = until(&queue, |c| c.queued == 0).await;
    sender.stop().await;
    assert_eq!(counts.queued, 0, "{counts:?}");
    assert_eq!(counts.sent, 5, "{counts:?}");
    assert_eq!(counts.rejected, 0, "{counts:?}");
    assert!(counts.failed_attempts >= 2, "{counts:?}");

    // All five arrived, each recorded exactly once.
    assert_eq!(ledger.recorded.load(Ordering::SeqCst), 5);
    let tickets = ledger.tickets.lock().clone();
    assert_eq!(tickets.len(), 5);
    for s in &pushed {
        assert_eq!(
            tickets[&s.ticket_id().unwrap()],
            serde_json::to_value(s).unwrap()
        );
    }
    assert!(files(spool.path()).is_empty());

    // Sent again after a crash: central says duplicate, the file goes.
    queue.push(pushed[0].clone()).await.unwrap();
    let sender = queue.start(client.clone()).unwrap();
    let counts = until(&queue, |c| c.queued == 0).await;
    sender.stop().await;
    assert_eq!(counts.duplicates, 1, "{counts:?}");
    assert_eq!(ledger.recorded.load(Ordering::SeqCst), 5);
    assert!(files(spool.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_spool_files_are_moved_aside_and_the_rest_is_delivered() {
    let net = network().await;
    let addr = free_addr();
    let ledger = Arc::new(Ledger::default());
    let _server = stand_in(&net.central, addr, ledger.clone()).await;
    let spool = tempfile::tempdir().unwrap();

    let torn = Uuid::now_v7();
    std::fs::write(
        spool.path().join(format!("{torn}.json")),
        b"{\"ticket\": \"ey",
    )
    .unwrap();
    let misnamed = Uuid::now_v7();
    std::fs::write(
        spool.path().join(format!("{misnamed}.json")),
        serde_json::to_vec(&net.submission()).unwrap(),
    )
    .unwrap();
    std::fs::write(spool.path().join("notes.txt"), b"operator was here").unwrap();
    // Left by a push interrupted by a crash: its push never returned.
    std::fs::write(spool.path().join(".tmp-0-x.json"), b"{").unwrap();

    let queue = SubmissionQueue::open(spool.path(), quick()).unwrap();
    assert!(!spool.path().join(".tmp-0-x.json").exists());
    assert_eq!(queue.counts().queued, 2);
    let good = net.submission();
    queue.push(good.clone()).await.unwrap();

    let sender = queue.start(net.client(addr)).unwrap();
    let counts = until(&queue, |c| c.queued == 0 && c.corrupt == 3).await;
    sender.stop().await;
    assert_eq!(counts.sent, 1, "{counts:?}");
    assert_eq!(counts.corrupt, 3, "{counts:?}");
    assert_eq!(counts.queued, 0, "{counts:?}");
    assert!(ledger
        .tickets
        .lock()
        .contains_key(&good.ticket_id().unwrap()));
    assert_eq!(ledger.recorded.load(Ordering::SeqCst), 1);

    let corrupt = queue.corrupt_dir();
    let names = files(&corrupt);
    assert_eq!(names.len(), 6, "{names:?}");
    let reason: Value = serde_json::from_str(
        &std::fs::read_to_string(corrupt.join(format!("{torn}.json.reason.json"))).unwrap(),
    )
    .unwrap();
    assert!(
        reason["problem"]
            .as_str()
            .unwrap()
            .contains("not a submission"),
        "{reason}"
    );
    let reason: Value = serde_json::from_str(
        &std::fs::read_to_string(corrupt.join(format!("{misnamed}.json.reason.json"))).unwrap(),
    )
    .unwrap();
    assert!(
        reason["problem"].as_str().unwrap().contains("not the"),
        "{reason}"
    );
    assert_eq!(
        std::fs::read(corrupt.join("notes.txt")).unwrap(),
        b"operator was here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_as_a_whole_is_sent_one_by_one() {
    let net = network().await;
    let addr = free_addr();
    let ledger = Arc::new(Ledger::default());
    ledger.refuse_arrays.store(true, Ordering::SeqCst);
    let _server = stand_in(&net.central, addr, ledger.clone()).await;
    let spool = tempfile::tempdir().unwrap();
    let queue = SubmissionQueue::open(spool.path(), quick()).unwrap();
    for _ in 0..3 {
        queue.push(net.submission()).await.unwrap();
    }
    let carrier_id = net.carrier.provider_id().unwrap();
    queue
        .push(net.submission_for(Uuid::now_v7(), carrier_id + 1, 5))
        .await
        .unwrap();
    let sender = queue.start(net.client(addr)).unwrap();
    let counts = until(&queue, |c| c.queued == 0).await;
    sender.stop().await;
    assert_eq!((counts.sent, counts.rejected), (3, 1), "{counts:?}");
    assert_eq!(ledger.recorded.load(Ordering::SeqCst), 3);
    let batches = ledger.batches.lock().clone();
    assert!(batches.contains(&3), "{batches:?}");
    assert!(batches.contains(&1), "{batches:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_answers_are_typed_and_bad_answers_are_errors() {
    let net = network().await;
    let addr = free_addr();
    let ledger = Arc::new(Ledger::default());
    let _server = stand_in(&net.central, addr, ledger.clone()).await;
    let client = net.client(addr);
    let carrier_id = net.carrier.provider_id().unwrap();

    let a = net.submission();
    let wrong = net.submission_for(Uuid::now_v7(), carrier_id + 7, 5);
    let outcomes = client
        .submit_tickets(&[a.clone(), wrong.clone(), a.clone()])
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 3);
    match &outcomes[0] {
        SubmissionOutcome::Recorded(r) => {
            assert_eq!(r.ticket_id, a.ticket_id().unwrap());
            assert_eq!(r.status, LedgerStatus::Agreed);
            assert!(!r.duplicate);
        }
        other => panic!("{other:?}"),
    }
    match &outcomes[1] {
        SubmissionOutcome::Refused(r) => {
            assert_eq!(r.status, 403);
            assert_eq!(r.reason.as_deref(), Some("wrong_audience"));
            assert!(r.is_permanent());
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&outcomes[2], SubmissionOutcome::Recorded(r) if r.duplicate));

    // A provider receipt only: the ledger's provider_only.
    let mut only = net.submission();
    only.receipt = None;
    match &client.submit_tickets(&[only]).await.unwrap()[0] {
        SubmissionOutcome::Recorded(r) => assert_eq!(r.status, LedgerStatus::ProviderOnly),
        other => panic!("{other:?}"),
    }

    // A server error surfaces central's problem and is worth retrying.
    ledger.fail_next.store(1, Ordering::SeqCst);
    let err = client
        .submit_tickets(std::slice::from_ref(&a))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(503), "{err}");
    assert_eq!(err.problem().unwrap().detail, "database unavailable");
    assert!(err.is_transient());

    // An answer that is not the contract's.
    ledger.garbage_next.store(1, Ordering::SeqCst);
    let err = client
        .submit_tickets(std::slice::from_ref(&a))
        .await
        .unwrap_err();
    assert!(matches!(err, CentralError::BadAnswer { .. }), "{err:?}");

    // More than central takes, refused before sending.
    let many = vec![a.clone(); 1001];
    assert!(matches!(
        client.submit_tickets(&many).await,
        Err(CentralError::InvalidRequest(_))
    ));
    // Without the provider's certificate, refused before sending.
    let anonymous =
        CentralClient::anonymous(&format!("https://{addr}"), &net.central.root_pem).unwrap();
    assert!(matches!(
        anonymous.submit_tickets(&[a]).await,
        Err(CentralError::Credential(_))
    ));
    let spool = tempfile::tempdir().unwrap();
    let queue = SubmissionQueue::open(spool.path(), quick()).unwrap();
    assert!(matches!(
        queue.start(anonymous),
        Err(QueueError::Credential(_))
    ));
}
