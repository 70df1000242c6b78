//! Billing statements end to end: the `forwarder` binary's statement runs
//! against a real SMTP server process on loopback (aiosmtpd, STARTTLS with a
//! test CA, AUTH), on SQLite and PostgreSQL. Every message received is
//! parsed: totals against the CDR charges and ledger entries, the CSV
//! against the calls, the text and HTML parts against each other.
//! Exactly once: runs repeated, SMTP down or refusing then back, a process
//! killed while sending then run again. Never wrong: an open call holds the
//! period back and the operator is e-mailed.
//!
//! Needs `python3` with aiosmtpd (Debian: python3-aiosmtpd). Without it
//! the tests fail, unless SKIP_SMTP_TESTS=1 (then they say SKIPPED).

#[macro_use]
mod common;

use chrono::{DateTime, Utc};
use common::{Backend, TestDb};
use forwarder::db::DbConnection;
use forwarder::store::cdrs::{self, CdrClose, CdrProgress, FinalStatus, NewCdr, Rating};
use forwarder::store::ledger::{self, EntryKind, NewEntry};
use forwarder::store::statements::{self as stored, StatementQuery, StatementStatus};
use forwarder::store::{numbers, subscribers};
use forwarder::subscriber::{Account, NewSubscriber};
use provider_sdk::number::E164;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use uuid::Uuid;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

// ---------------------------------------------------------------- SMTP

/// A Python with aiosmtpd, or None (loudly) when SKIP_SMTP_TESTS=1.
fn python(test: &str) -> Option<String> {
    let mut candidates = vec![];
    if let Ok(p) = std::env::var("SMTP_TEST_PYTHON") {
        candidates.push(p);
    }
    candidates.extend(["python3".to_string(), "/usr/bin/python3".to_string()]);
    for c in candidates {
        let ok = Command::new(&c)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(c);
        }
    }
    if std::env::var("SKIP_SMTP_TESTS").as_deref() == Ok("1") {
        eprintln!("SKIPPED (SKIP_SMTP_TESTS=1, no aiosmtpd): {test}: statements were NOT tested against a real SMTP server");
        return None;
    }
    panic!(
        "{test}: no python3 with aiosmtpd found: install it (apt-get install python3-aiosmtpd) \
         or set SKIP_SMTP_TESTS=1 to skip the SMTP tests"
    );
}

/// The test CA and the SMTP server's certificate for 127.0.0.1.
struct TestTls {
    ca_pem: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn test_tls(dir: &Path) -> TestTls {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "statements test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let tls = TestTls {
        ca_pem: dir.join("smtp-ca.pem"),
        cert: dir.join("smtp.crt"),
        key: dir.join("smtp.key"),
    };
    std::fs::write(&tls.ca_pem, ca_cert.pem()).unwrap();
    std::fs::write(&tls.cert, cert.pem()).unwrap();
    std::fs::write(&tls.key, key.serialize_pem()).unwrap();
    tls
}

const SMTP_USER: &str = "statements";
const SMTP_PASSWORD: &str = "s3cret pass";

/// A running aiosmtpd process (killed on drop).
struct Smtp {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Smtp {
    fn start(py: &str, out: &Path, tls: &TestTls, port: u16, extra: &[&str]) -> Smtp {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_server.py");
        let mut child = Command::new(py)
            .arg(script)
            .arg(out)
            .args(["--port", &port.to_string()])
            .arg("--tls")
            .args([&tls.cert, &tls.key])
            .args(["--auth", SMTP_USER, SMTP_PASSWORD])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the SMTP server");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("SMTP server did not start: {line:?}"))
            .parse()
            .unwrap();
        Smtp {
            child,
            port,
            out: out.to_path_buf(),
        }
    }

    /// Every message received: (envelope recipients, raw message).
    fn messages(&self) -> Vec<(String, String)> {
        let mut names: Vec<_> = std::fs::read_dir(&self.out)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .into_iter()
            .map(|p| {
                let rcpt = std::fs::read_to_string(p.with_extension("rcpt")).unwrap();
                (rcpt, std::fs::read_to_string(&p).unwrap())
            })
            .collect()
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------- forwarder

/// A data directory whose forwarder.toml points at the database and SMTP.
struct Setup {
    dir: tempfile::TempDir,
    db: TestDb,
    tls: TestTls,
}

impl Setup {
    fn new(backend: Backend, smtp_port: u16) -> Setup {
        let db = TestDb::new(backend);
        let dir = tempfile::tempdir().unwrap();
        let tls = test_tls(dir.path());
        let s = Setup { dir, db, tls };
        s.write_config(smtp_port);
        s
    }

    fn write_config(&self, smtp_port: u16) {
        let url = self.db.url.replace('\\', "/");
        std::fs::write(
            self.dir.path().join("forwarder.toml"),
            format!(
                r#"database_url = "{url}"
[statements]
schedule = "0 0 2 1 * *"
settle_secs = 300
retry_first_secs = 60
[statements.destination_types]
"44" = "United Kingdom"
"4915" = "German mobile"
"49" = "Germany"

[mail]
transport = "smtp"
host = "127.0.0.1"
port = {smtp_port}
tls = "starttls"
tls_roots = "{roots}"
username = "{SMTP_USER}"
from = "Home Telecom Billing <billing@home.example>"
operator = "noc@home.example"
timeout_secs = 2
"#,
                roots = self.tls.ca_pem.display()
            ),
        )
        .unwrap();
    }

    /// `forwarder statements ARGS` → (success, stdout JSON or text).
    fn cli(&self, args: &[&str]) -> (bool, String) {
        let child = self.spawn(args);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !stderr.is_empty() {
            eprintln!("forwarder {args:?}: {stderr}");
        }
        (out.status.success(), String::from_utf8(out.stdout).unwrap())
    }

    fn spawn(&self, args: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_forwarder"))
            .arg("--data")
            .arg(self.dir.path())
            .arg("statements")
            .args(args)
            .env("FORWARDER_SMTP_PASSWORD", SMTP_PASSWORD)
            .env("RUST_LOG", "warn,forwarder=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn run(&self, now: &str) -> (bool, serde_json::Value) {
        let (ok, out) = self.cli(&["run", "--now", now]);
        (
            ok,
            serde_json::from_str(&out).unwrap_or(serde_json::Value::Null),
        )
    }

    fn conn(&self) -> forwarder::db::Pooled {
        self.db.db.conn().unwrap()
    }
}

fn new_sub(name: &str, email: &str, tz: &str) -> NewSubscriber {
    NewSubscriber {
        name: name.into(),
        email: email.into(),
        time_zone: tz.parse().unwrap(),
        plan: "standard".into(),
        currency: "EUR".parse().unwrap(),
        account: Account::Postpaid {
            credit_limit: dec!(100),
        },
        daily_spend_cap: None,
        monthly_spend_cap: None,
        max_concurrent_calls: None,
    }
}

fn open_call(
    conn: &mut DbConnection,
    sub: i64,
    at: DateTime<Utc>,
    caller: &str,
    name: Option<&str>,
) -> Uuid {
    let id = Uuid::new_v4();
    cdrs::open(
        conn,
        &NewCdr {
            id,
            subscriber_id: sub,
            called_number: E164::parse("+4930111111").unwrap(),
            caller_number: Some(caller.into()),
            caller_name: name.map(String::from),
            received_at: at,
        },
    )
    .unwrap();
    id
}

/// A completed, charged call answered at `answered` lasting `secs`.
#[allow(clippy::too_many_arguments)]
fn call(
    conn: &mut DbConnection,
    sub: i64,
    answered: &str,
    secs: i64,
    to: &str,
    price: Decimal,
    caller: &str,
    name: Option<&str>,
) -> Uuid {
    let a = t(answered);
    let id = open_call(conn, sub, a - chrono::Duration::seconds(2), caller, name);
    close(conn, id, a, secs, to, price);
    id
}

fn close(
    conn: &mut DbConnection,
    id: Uuid,
    answered: DateTime<Utc>,
    secs: i64,
    to: &str,
    price: Decimal,
) {
    // The charge is written when the call closes (a little after).
    let ended = answered + chrono::Duration::seconds(secs);
    close_at(
        conn,
        id,
        answered,
        secs,
        to,
        price,
        ended + chrono::Duration::milliseconds(300),
    );
}

/// [`close`], the call closed (and charged) at `closed`.
fn close_at(
    conn: &mut DbConnection,
    id: Uuid,
    answered: DateTime<Utc>,
    secs: i64,
    to: &str,
    price: Decimal,
    closed: DateTime<Utc>,
) {
    let ended = answered + chrono::Duration::seconds(secs);
    cdrs::close_and_charge(
        conn,
        id,
        &CdrClose {
            status: FinalStatus::Completed,
            ended_at: ended,
            sip_status: Some(200),
            hangup_cause: Some("caller BYE".into()),
            billable_seconds: secs as u64,
            media_stats: None,
            rating: Some(Rating {
                price,
                provider_cost: price / dec!(2),
                margin: price - price / dec!(2),
                currency: "EUR".parse().unwrap(),
            }),
            // Subscribers of any zone here: the close under lock.
            rated_in: None,
            progress: CdrProgress {
                target: Some(E164::parse(to).unwrap()),
                answered_at: Some(answered),
                ..CdrProgress::default()
            },
        },
        closed,
    )
    .unwrap();
}

fn entry(
    conn: &mut DbConnection,
    sub: i64,
    kind: EntryKind,
    amount: Decimal,
    reason: Option<&str>,
    at: &str,
) {
    ledger::record(
        conn,
        sub,
        &NewEntry {
            kind,
            amount,
            reason: reason.map(String::from),
            idempotency_key: Some(Uuid::new_v4().to_string()),
        },
        t(at),
    )
    .unwrap();
}

// ---------------------------------------------------------------- parsing

struct Parsed {
    message_id: String,
    to: String,
    subject: String,
    text: String,
    html: String,
    csv: String,
}

fn parse(raw: &str) -> Parsed {
    use mailparse::MailHeaderMap;
    let m = mailparse::parse_mail(raw.as_bytes()).unwrap();
    assert_eq!(m.ctype.mimetype, "multipart/mixed");
    let mut parts = vec![];
    let mut stack = vec![&m];
    while let Some(p) = stack.pop() {
        stack.extend(p.subparts.iter());
        if p.subparts.is_empty() {
            parts.push(p);
        }
    }
    let part = |mime: &str| -> String {
        let found: Vec<_> = parts.iter().filter(|p| p.ctype.mimetype == mime).collect();
        assert_eq!(found.len(), 1, "one {mime} part");
        found[0].get_body().unwrap()
    };
    let csv_part = parts
        .iter()
        .find(|p| p.ctype.mimetype == "text/csv")
        .unwrap();
    let disposition = csv_part.get_content_disposition();
    assert_eq!(
        disposition.disposition,
        mailparse::DispositionType::Attachment
    );
    Parsed {
        message_id: m.headers.get_first_value("Message-ID").unwrap(),
        to: m.headers.get_first_value("To").unwrap(),
        subject: m.headers.get_first_value("Subject").unwrap(),
        text: part("text/plain"),
        html: part("text/html"),
        csv: part("text/csv"),
    }
}

/// The received message is the stored one byte for byte (the SMTP client
/// ends the DATA with one more CRLF before the final dot).
fn same_message(received: &str, stored: &str) {
    let r = received.strip_suffix("\r\n").unwrap_or(received);
    assert!(
        r == stored || received == stored,
        "sent bytes differ from the stored message"
    );
}

/// The figure after "label" on its line of the text part.
fn text_figure(text: &str, label: &str) -> Decimal {
    let line = text
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// The figure of the HTML summary row with this class.
fn html_figure(html: &str, class: &str) -> Decimal {
    let start = html
        .find(&format!("<tr class=\"{class}\">"))
        .unwrap_or_else(|| panic!("no {class} row"));
    let row = &html[start..];
    let td = &row[row.find("<td>").unwrap() + 4..row.find("</td>").unwrap()];
    td.rsplit(' ').next().unwrap().parse().unwrap()
}

/// CSV rows as (call id, caller name, forwarded to, seconds, charge).
fn csv_rows(csv: &str) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new().from_reader(csv.as_bytes());
    let headers = r.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [
            "call_id",
            "answered_at",
            "ended_at",
            "caller_number",
            "caller_name",
            "called_number",
            "forwarded_to",
            "billable_seconds",
            "charge"
        ]
    );
    r.records()
        .map(|rec| rec.unwrap().iter().map(String::from).collect())
        .collect()
}

// ---------------------------------------------------------------- tests

const NASTY: &str = "Bob \"the, caller\"\n<script>alert(1)</script> & =HYPERLINK(\"x\")";

/// Two monthly statements in Berlin (February, and March with the
/// daylight-saving change on 29 March), through STARTTLS and AUTH; checked
/// figure by figure against the database.
async fn content_and_totals(backend: Backend) {
    let Some(py) = python("content_and_totals") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let probe = Setup::new(backend, 0);
    let smtp = Smtp::start(&py, &dir.path().join("mail"), &probe.tls, 0, &[]);
    probe.write_config(smtp.port);
    let s = probe;
    let (ada, bob);
    let mut calls_feb = vec![];
    let mut calls_mar = vec![];
    {
        let mut c = s.conn();
        let c = &mut *c;
        ada = subscribers::add(
            c,
            &new_sub("Ada Lovelace", "ada@example.net", "Europe/Berlin"),
            t("2026-02-10T09:00:00Z"),
        )
        .unwrap()
        .id;
        bob = subscribers::add(
            c,
            &new_sub("Bob <Müller>", "bob@example.net", "America/New_York"),
            t("2026-02-10T09:00:00Z"),
        )
        .unwrap()
        .id;
        numbers::add(
            c,
            ada,
            &E164::parse("+4930111111").unwrap(),
            t("2026-02-10T09:00:00Z"),
        )
        .unwrap();
        entry(
            c,
            ada,
            EntryKind::Payment,
            dec!(20.00),
            None,
            "2026-02-11T10:00:00Z",
        );
        calls_feb.push(call(
            c,
            ada,
            "2026-02-12T08:00:00Z",
            61,
            "+441632960001",
            dec!(0.12),
            "+15550100",
            Some(NASTY),
        ));
        calls_feb.push(call(
            c,
            ada,
            "2026-02-20T18:30:00Z",
            600,
            "+4915112345678",
            dec!(1.80),
            "+4930999",
            None,
        ));
        // Ends 2026-03-01 00:59:59 UTC = 01:59:59 in Berlin: still February's.
        calls_feb.push(call(
            c,
            ada,
            "2026-03-01T00:58:59Z",
            60,
            "+493012345",
            dec!(0.05),
            "+4930888",
            Some("Late"),
        ));
        // Ends exactly at 02:00 Berlin: March's.
        calls_mar.push(call(
            c,
            ada,
            "2026-03-01T00:59:00Z",
            60,
            "+493012345",
            dec!(0.05),
            "+4930888",
            Some("Boundary"),
        ));
        entry(
            c,
            ada,
            EntryKind::Credit,
            dec!(2.50),
            Some("sorry for the outage"),
            "2026-03-05T10:00:00Z",
        );
        entry(
            c,
            ada,
            EntryKind::Adjustment,
            dec!(-1.10),
            Some("porting fee, <b>once</b>"),
            "2026-03-06T10:00:00Z",
        );
        // Across the change to summer time (29 March).
        calls_mar.push(call(
            c,
            ada,
            "2026-03-29T00:30:00Z",
            3600,
            "+441632960002",
            dec!(3.6),
            "+15550101",
            Some("Night"),
        ));
        // 2026-03-31 23:30 UTC = 1 April 01:30 CEST: before 02:00, March's.
        calls_mar.push(call(
            c,
            ada,
            "2026-03-31T23:29:00Z",
            60,
            "+4915112345678",
            dec!(0.18),
            "+4930777",
            None,
        ));
        // April's (after the 02:00 boundary): on no statement yet.
        call(
            c,
            ada,
            "2026-04-01T00:10:00Z",
            60,
            "+493012345",
            dec!(0.05),
            "+4930666",
            None,
        );
        // A failed (unanswered) call is not listed.
        let f = open_call(c, ada, t("2026-03-10T10:00:00Z"), "+4930555", None);
        cdrs::close_and_charge(
            c,
            f,
            &CdrClose {
                status: FinalStatus::Failed,
                ended_at: t("2026-03-10T10:00:20Z"),
                sip_status: Some(486),
                hangup_cause: None,
                billable_seconds: 0,
                media_stats: None,
                rating: None,
                rated_in: None,
                progress: CdrProgress::default(),
            },
            t("2026-03-10T10:00:20Z"),
        )
        .unwrap();
    }

    let (ok, report) = s.run("2026-04-01T12:00:00Z");
    assert!(ok, "run: {report}");
    // Ada: Feb and March; Bob (New York): Feb and March too.
    assert_eq!(
        report["prepared"]["created"].as_array().unwrap().len(),
        4,
        "{report}"
    );
    assert_eq!(report["delivered"]["sent"].as_array().unwrap().len(), 4);
    let received = smtp.messages();
    assert_eq!(received.len(), 4);

    let mut c = s.conn();
    let c = &mut *c;
    let list = stored::list(
        c,
        &StatementQuery {
            subscriber_id: Some(ada),
            limit: 10,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(list.len(), 2);
    let (mar, feb) = (&list[0], &list[1]);
    assert_eq!(feb.period.start, t("2026-02-01T01:00:00Z"));
    assert_eq!(feb.period.end, t("2026-03-01T01:00:00Z"));
    assert_eq!(mar.period.start, feb.period.end);
    assert_eq!(mar.period.end, t("2026-04-01T00:00:00Z"));
    for st in &list {
        assert_eq!(st.status, StatementStatus::Sent);
        assert_eq!(st.attempts, 1);
    }

    for (st, ids) in [(feb, &calls_feb), (mar, &calls_mar)] {
        let (rcpt, raw) = received
            .iter()
            .find(|(_, raw)| raw.contains(&st.message_id))
            .expect("the statement's Message-ID was received");
        assert_eq!(rcpt.trim(), "ada@example.net");
        same_message(raw, &stored::message(c, st.id).unwrap());
        let p = parse(raw);
        assert_eq!(p.message_id, st.message_id);
        assert!(p.to.contains("ada@example.net"));
        assert!(p.subject.contains("statement"));

        // The CSV is the calls of the period, one row each, charges equal
        // to the CDRs' and the ledger's.
        let rows = csv_rows(&p.csv);
        assert_eq!(rows.len(), ids.len(), "{}", p.csv);
        let mut csv_total = Decimal::ZERO;
        for (row, id) in rows.iter().zip(ids.iter()) {
            assert_eq!(row[0], id.to_string());
            let cdr = cdrs::get(c, *id).unwrap();
            let charge: Decimal = row[8].parse().unwrap();
            assert_eq!(charge, cdr.rating.unwrap().price);
            assert_eq!(-ledger::charge_of(c, *id).unwrap().unwrap().amount, charge);
            assert_eq!(row[7], cdr.billable_seconds.unwrap().to_string());
            assert_eq!(row[6], cdr.target.unwrap().to_string());
            csv_total += charge;
        }
        // Opening + entries − charges = closing, in text, HTML and record.
        let charges = text_figure(&p.text, "Calls (");
        assert_eq!(-charges, csv_total);
        let opening = text_figure(&p.text, "Opening balance");
        let closing = text_figure(&p.text, "Closing balance");
        let entries = text_figure(&p.text, "Payments")
            + text_figure(&p.text, "Credits")
            + text_figure(&p.text, "Adjustments");
        assert_eq!(opening - csv_total + entries, closing);
        assert_eq!(opening, st.opening_balance);
        assert_eq!(closing, st.closing_balance);
        for (label, class) in [
            ("Opening balance", "opening"),
            ("Calls (", "calls"),
            ("Payments", "payments"),
            ("Credits", "credits"),
            ("Adjustments", "adjustments"),
            ("Closing balance", "closing"),
        ] {
            assert_eq!(
                text_figure(&p.text, label),
                html_figure(&p.html, class),
                "{label}: text and HTML agree"
            );
        }
        // Every call's line is in the text and HTML parts.
        assert_eq!(p.text.matches(" to +").count(), ids.len());
        assert_eq!(
            p.html.matches("<tr><td>20").count(),
            ids.len() + st.summary["entries"].as_array().unwrap().len()
        );
    }
    // February: opening 0, the payment, three calls.
    assert_eq!(feb.opening_balance, Decimal::ZERO);
    assert_eq!(
        feb.closing_balance,
        dec!(20.00) - dec!(0.12) - dec!(1.80) - dec!(0.05)
    );
    // March opens with February's closing; the chain ends at the ledger's
    // balance minus April's call.
    assert_eq!(mar.opening_balance, feb.closing_balance);
    assert_eq!(
        mar.closing_balance,
        ledger::ledger_sum(c, ada).unwrap() + dec!(0.05)
    );
    let dec_of = |v: &serde_json::Value| -> Decimal { v.as_str().unwrap().parse().unwrap() };
    assert_eq!(dec_of(&mar.summary["credits"]), dec!(2.50));
    assert_eq!(dec_of(&mar.summary["adjustments"]), dec!(-1.10));
    let by_dest = &mar.summary["by_destination"];
    let dest = |name: &str| {
        by_dest
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["type"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(dec_of(&dest("United Kingdom")["total"]), dec!(3.6));
    assert_eq!(dec_of(&dest("German mobile")["total"]), dec!(0.18));
    assert_eq!(dest("Germany")["calls"], 1);

    // The nasty caller name: escaped in HTML, quoted in CSV, defused for
    // spreadsheets, control characters gone from the text.
    let feb_raw = &received
        .iter()
        .find(|(_, r)| r.contains(&feb.message_id))
        .unwrap()
        .1;
    let p = parse(feb_raw);
    assert!(!p.html.contains("<script>"));
    assert!(p
        .html
        .contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; =HYPERLINK(&quot;x&quot;)"));
    let rows = csv_rows(&p.csv);
    assert_eq!(
        rows[0][4], NASTY,
        "the CSV keeps the name exactly (it does not start with a formula character)"
    );
    assert!(
        !p.text.contains("\"the, caller\"\n<script>"),
        "no raw newline from the caller in the text"
    );
    // The CSV of the stored message is byte-identical to the API's source.
    let stored_csv = forwarder::statements::render::parts(&stored::message(c, feb.id).unwrap())
        .unwrap()
        .csv
        .unwrap();
    assert_eq!(stored_csv, p.csv);
    assert!(p.csv.contains("\r\n"));

    // Bob in New York: his February period follows his zone.
    let bl = stored::list(
        c,
        &StatementQuery {
            subscriber_id: Some(bob),
            limit: 10,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(bl[1].period.start, t("2026-02-01T07:00:00Z"));
    assert_eq!(bl[1].period.end, t("2026-03-01T07:00:00Z"));
    // New York switched to summer time on 8 March: 02:00 EDT = 06:00 UTC.
    assert_eq!(bl[0].period.end, t("2026-04-01T06:00:00Z"));

    // Run again, and later: nothing new is created or sent for these periods.
    let (ok, again) = s.run("2026-04-01T12:00:00Z");
    assert!(ok);
    assert!(
        again["prepared"]["created"].as_array().unwrap().is_empty(),
        "{again}"
    );
    assert!(again["delivered"]["sent"].as_array().unwrap().is_empty());
    let (ok, _) = s.run("2026-04-20T12:00:00Z");
    assert!(ok);
    assert_eq!(smtp.messages().len(), 4);
    assert_eq!(
        stored::list(
            c,
            &StatementQuery {
                limit: 100,
                ..Default::default()
            }
        )
        .unwrap()
        .len(),
        4
    );
    smtp.stop();
}
both_backends!(content_and_totals, super::content_and_totals);

/// SMTP down, then refusing (451), then back: the statement is sent once,
/// after it came back, with the Message-ID it had from the start.
async fn smtp_down_then_up(backend: Backend) {
    let Some(py) = python("smtp_down_then_up") else {
        return;
    };
    let port = free_port();
    let s = Setup::new(backend, port);
    let ada = {
        let mut c = s.conn();
        let ada = subscribers::add(
            &mut c,
            &new_sub("Ada", "ada@example.net", "Europe/Berlin"),
            t("2026-02-10T09:00:00Z"),
        )
        .unwrap()
        .id;
        call(
            &mut c,
            ada,
            "2026-02-12T08:00:00Z",
            61,
            "+441632960001",
            dec!(0.12),
            "+15550100",
            None,
        );
        ada
    };
    // Nobody listens.
    let (ok, report) = s.run("2026-03-02T12:00:00Z");
    assert!(!ok, "a failed send is a failed run: {report}");
    let st = {
        let mut c = s.conn();
        stored::list(
            &mut c,
            &StatementQuery {
                subscriber_id: Some(ada),
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap()
    };
    assert_eq!(st.len(), 1);
    let first = st[0].clone();
    assert_eq!(first.status, StatementStatus::Failed);
    assert_eq!(first.attempts, 1);
    assert!(
        first
            .last_error
            .as_deref()
            .unwrap_or("")
            .to_lowercase()
            .contains("connect"),
        "{:?}",
        first.last_error
    );
    assert!(first.next_attempt_at.unwrap() > t("2026-03-02T12:00:00Z"));
    // Operator-visible: the list by status shows it.
    let (_, listed) = s.cli(&["list", "--status", "failed"]);
    assert!(listed.contains(&first.message_id));

    // The server is up but refuses the message (451).
    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(
        &py,
        &dir.path().join("mail"),
        &s.tls,
        port,
        &["--refuse", "1"],
    );
    // Before the retry is due nothing is tried.
    let (ok, r) = s.run("2026-03-02T12:00:00Z");
    assert!(ok, "{r}");
    assert!(r["delivered"]["sent"].as_array().unwrap().is_empty());
    // Due: tried, refused.
    let (ok, r) = s.run("2026-03-03T12:00:00Z");
    assert!(!ok);
    assert!(
        r["delivered"]["failed"][0]["error"]
            .as_str()
            .unwrap()
            .contains("451"),
        "{r}"
    );
    // Due again: sent.
    let (ok, r) = s.run("2026-03-04T12:00:00Z");
    assert!(ok, "{r}");
    assert_eq!(r["delivered"]["sent"].as_array().unwrap().len(), 1);
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(parse(&msgs[0].1).message_id, first.message_id);
    let mut c = s.conn();
    let now = stored::get(&mut c, first.id).unwrap();
    assert_eq!(now.status, StatementStatus::Sent);
    assert_eq!(now.attempts, 3);
    assert!(now.last_error.is_none());
    let (ok, _) = s.run("2026-03-10T12:00:00Z");
    assert!(ok);
    assert_eq!(smtp.messages().len(), 1, "sent exactly once");
}
both_backends!(smtp_down_then_up, super::smtp_down_then_up);

/// Stopped after rendering, before sending (`--no-send`); and a process
/// killed while the server hangs during the send: each is sent exactly
/// once by the next run, with the Message-ID stored at creation.
async fn crash_between_render_and_send(backend: Backend) {
    let Some(py) = python("crash_between_render_and_send") else {
        return;
    };
    let port = free_port();
    let s = Setup::new(backend, port);
    let (ada, bob) = {
        let mut c = s.conn();
        let ada = subscribers::add(
            &mut c,
            &new_sub("Ada", "ada@example.net", "Europe/Berlin"),
            t("2026-02-10T09:00:00Z"),
        )
        .unwrap()
        .id;
        let bob = subscribers::add(
            &mut c,
            &new_sub("Bob", "bob@example.net", "Europe/Berlin"),
            t("2026-02-10T09:00:00Z"),
        )
        .unwrap()
        .id;
        call(
            &mut c,
            ada,
            "2026-02-12T08:00:00Z",
            61,
            "+441632960001",
            dec!(0.12),
            "+15550100",
            None,
        );
        (ada, bob)
    };
    // Rendered and stored, not sent.
    let (ok, r) = s.cli(&["run", "--now", "2026-03-02T12:00:00Z", "--no-send"]);
    assert!(ok, "{r}");
    let pending = {
        let mut c = s.conn();
        stored::list(
            &mut c,
            &StatementQuery {
                status: Some(StatementStatus::Pending),
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap()
    };
    assert_eq!(pending.len(), 2);

    // A server that accepts connections and never answers; the run is
    // killed while it waits.
    let hung_dir = tempfile::tempdir().unwrap();
    let hung = Smtp::start(&py, hung_dir.path(), &s.tls, port, &["--stall"]);
    let mut child = s.spawn(&["run", "--now", "2026-03-02T12:00:00Z"]);
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    // A run left to itself gives up on the hung server in bounded time.
    let (ok, r) = s.run("2026-03-02T12:00:00Z");
    assert!(!ok);
    assert!(
        r["delivered"]["failed"][0]["error"]
            .as_str()
            .unwrap()
            .contains("did not finish"),
        "{r}"
    );
    hung.stop();

    let dir = tempfile::tempdir().unwrap();
    let smtp = Smtp::start(&py, &dir.path().join("mail"), &s.tls, port, &[]);
    let (ok, r) = s.run("2026-03-02T12:05:00Z");
    assert!(ok, "{r}");
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 2, "both sent once after the crash");
    let mut c = s.conn();
    for st in &pending {
        let got: Vec<_> = msgs
            .iter()
            .filter(|(_, m)| parse(m).message_id == st.message_id)
            .collect();
        assert_eq!(got.len(), 1);
        same_message(&got[0].1, &stored::message(&mut c, st.id).unwrap());
        assert_eq!(
            stored::get(&mut c, st.id).unwrap().status,
            StatementStatus::Sent
        );
    }
    let (ok, _) = s.run("2026-03-05T12:00:00Z");
    assert!(ok);
    assert_eq!(smtp.messages().len(), 2);
    let _ = (ada, bob);
}
both_backends!(
    crash_between_render_and_send,
    super::crash_between_render_and_send
);

/// A call still open in the period: no statement, a hold the operator can
/// see, one e-mail to the operator; once the call is closed, the statement
/// is issued and includes it.
async fn held_while_a_call_is_open(backend: Backend) {
    let Some(py) = python("held_while_a_call_is_open") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::new(backend, 0);
    let smtp = Smtp::start(&py, &dir.path().join("mail"), &s.tls, 0, &[]);
    s.write_config(smtp.port);
    let (ada, open) = {
        let mut c = s.conn();
        let ada = subscribers::add(
            &mut c,
            &new_sub("Ada", "ada@example.net", "Europe/Berlin"),
            t("2026-02-10T09:00:00Z"),
        )
        .unwrap()
        .id;
        call(
            &mut c,
            ada,
            "2026-02-12T08:00:00Z",
            61,
            "+441632960001",
            dec!(0.12),
            "+15550100",
            None,
        );
        let open = open_call(&mut c, ada, t("2026-02-28T23:00:00Z"), "+15550199", None);
        (ada, open)
    };
    let (ok, r) = s.run("2026-03-02T12:00:00Z");
    assert!(ok, "{r}");
    assert!(r["prepared"]["created"].as_array().unwrap().is_empty());
    assert_eq!(r["prepared"]["held"][0]["subscriber_id"], ada);
    assert!(r["prepared"]["held"][0]["reason"]
        .as_str()
        .unwrap()
        .contains(&open.to_string()));
    assert_eq!(r["notified_holds"], 1);
    let (_, holds) = s.cli(&["holds"]);
    assert!(holds.contains(&open.to_string()), "{holds}");
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].0.trim(), "noc@home.example");
    assert!(msgs[0].1.contains(&open.to_string()));
    // Still held: the operator is not e-mailed again.
    let (ok, r) = s.run("2026-03-03T12:00:00Z");
    assert!(ok);
    assert_eq!(r["notified_holds"], 0);
    assert_eq!(smtp.messages().len(), 1);
    {
        let mut c = s.conn();
        assert!(stored::list(
            &mut c,
            &StatementQuery {
                limit: 10,
                ..Default::default()
            }
        )
        .unwrap()
        .is_empty());
        // The call ended in February (1 March 00:20 UTC = 01:20 Berlin)
        // and is closed and charged only now, days after the period (as
        // crash recovery would): its charge is found all the same.
        close_at(
            &mut c,
            open,
            t("2026-02-28T23:00:05Z"),
            4795,
            "+493012345",
            dec!(2.40),
            t("2026-03-03T12:30:00Z"),
        );
    }
    let (ok, r) = s.run("2026-03-03T13:00:00Z");
    assert!(ok, "{r}");
    assert_eq!(r["prepared"]["created"].as_array().unwrap().len(), 1);
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 2);
    let p = parse(&msgs[1].1);
    let rows = csv_rows(&p.csv);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1][0], open.to_string());
    assert_eq!(text_figure(&p.text, "Calls ("), dec!(-2.52));
    let (_, holds) = s.cli(&["holds"]);
    assert_eq!(holds.trim(), "[]");
}
both_backends!(held_while_a_call_is_open, super::held_while_a_call_is_open);

/// The subscriber fetches its statements through the API; another
/// subscriber cannot.
async fn subscriber_fetches_statements(backend: Backend) {
    use common::Forwarder;
    let f = Forwarder::start(backend).await;
    let (ada, bob) = {
        let mut c = f.db.conn().unwrap();
        let ada = subscribers::add(
            &mut c,
            &new_sub("Ada", "ada@example.net", "Europe/Berlin"),
            t("2026-02-10T09:00:00Z"),
        )
        .unwrap()
        .id;
        let bob = subscribers::add(
            &mut c,
            &new_sub("Bob", "bob@example.net", "Europe/Berlin"),
            t("2026-02-10T09:00:00Z"),
        )
        .unwrap()
        .id;
        call(
            &mut c,
            ada,
            "2026-02-12T08:00:00Z",
            61,
            "+441632960001",
            dec!(0.12),
            "+15550100",
            Some("A, \"B\""),
        );
        (ada, bob)
    };
    // A run through the library, to the file transport (one .eml each).
    let settings = forwarder::statements::config::StatementsSection::default()
        .resolve()
        .unwrap();
    let mail = forwarder::statements::config::MailSettings::defaults(f.dir.path());
    let mailer = std::sync::Arc::new(forwarder::statements::mail::Mailer::new(&mail).unwrap());
    let r = forwarder::statements::run_once(
        &f.db,
        mailer,
        &settings,
        2,
        t("2026-03-02T12:00:00Z"),
        forwarder::statements::Scope::All,
        true,
    )
    .await
    .unwrap();
    assert_eq!(r.delivered.sent.len(), 2);
    let files: Vec<_> = std::fs::read_dir(f.dir.path().join("outbox"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 2);

    let token = |id: i64| {
        let op = f.operator();
        let url = f.url(&format!("/v1/subscribers/{id}/token"));
        async move {
            let res = op
                .post(url)
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap();
            let (_, body) = common::json(res).await;
            body["token"].as_str().unwrap().to_string()
        }
    };
    let ta = token(ada).await;
    let tb = token(bob).await;
    let c = f.anonymous();
    let res = c
        .get(f.url(&format!("/v1/subscribers/{ada}/statements")))
        .bearer_auth(&ta)
        .send()
        .await
        .unwrap();
    let (status, body) = common::json(res).await;
    assert_eq!(status, 200, "{body}");
    let list = body["statements"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    let sid = list[0]["id"].as_i64().unwrap();
    assert_eq!(list[0]["status"], "sent");
    assert_eq!(list[0]["summary"]["call_charges"], "0.12");
    let res = c
        .get(f.url(&format!(
            "/v1/subscribers/{ada}/statements/{sid}?format=csv"
        )))
        .bearer_auth(&ta)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = res.text().await.unwrap();
    let rows = csv_rows(&csv);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][4], "A, \"B\"");
    let res = c
        .get(f.url(&format!(
            "/v1/subscribers/{ada}/statements/{sid}?format=html"
        )))
        .bearer_auth(&ta)
        .send()
        .await
        .unwrap();
    assert!(res.text().await.unwrap().contains("Closing balance"));
    // Bob: not Ada's list (403), not her statement under his id (404).
    let res = c
        .get(f.url(&format!("/v1/subscribers/{ada}/statements")))
        .bearer_auth(&tb)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = c
        .get(f.url(&format!("/v1/subscribers/{bob}/statements/{sid}")))
        .bearer_auth(&tb)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = c
        .get(f.url(&format!(
            "/v1/subscribers/{ada}/statements/{sid}?format=pdf"
        )))
        .bearer_auth(&ta)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    // The operator sees every statement.
    let res = f
        .operator()
        .get(f.url(&format!("/v1/subscribers/{bob}/statements")))
        .send()
        .await
        .unwrap();
    let (status, body) = common::json(res).await;
    assert_eq!(status, 200);
    assert_eq!(body["statements"].as_array().unwrap().len(), 1);
    f.shutdown().await;
}
both_backends!(
    subscriber_fetches_statements,
    super::subscriber_fetches_statements
);

/// `forwarder serve` with a schedule every two seconds: statements go out
/// on schedule by themselves, across a restart, with periods that tile and
/// each message received once.
async fn serve_sends_on_schedule(backend: Backend) {
    let Some(py) = python("serve_sends_on_schedule") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pg = match backend {
        Backend::Postgres(admin) => Some(common::PgDb::create(&admin)),
        Backend::Sqlite => None,
    };
    let bin = env!("CARGO_BIN_EXE_forwarder");
    let cli = |args: &[&str]| {
        let out = Command::new(bin)
            .arg("--data")
            .arg(&data)
            .args(args)
            .env_remove("FORWARDER_DATABASE_URL")
            .env("FORWARDER_SMTP_PASSWORD", SMTP_PASSWORD)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let mut init = vec!["init"];
    if let Some(p) = &pg {
        init.extend(["--database-url", p.url.as_str()]);
    }
    cli(&init);
    let tls = test_tls(dir.path());
    let smtp = Smtp::start(&py, &dir.path().join("mail"), &tls, 0, &[]);
    let mut toml = std::fs::read_to_string(data.join("forwarder.toml")).unwrap_or_default();
    toml.push_str(&format!(
        r#"
[statements]
schedule = "*/2 * * * * *"
settle_secs = 0
check_every_secs = 1

[mail]
host = "127.0.0.1"
port = {}
tls = "starttls"
tls_roots = "{}"
username = "{SMTP_USER}"
from = "billing@home.example"
"#,
        smtp.port,
        tls.ca_pem.display()
    ));
    std::fs::write(data.join("forwarder.toml"), toml).unwrap();
    cli(&[
        "subscriber",
        "add",
        "--name",
        "Ada",
        "--email",
        "ada@example.net",
        "--time-zone",
        "Europe/Berlin",
        "--plan",
        "standard",
        "--currency",
        "EUR",
    ]);
    let serve = |secs: u64| {
        let mut child = Command::new(bin)
            .arg("--data")
            .arg(&data)
            .args(["serve", "--api-listen", "127.0.0.1:0"])
            .env_remove("FORWARDER_DATABASE_URL")
            .env("FORWARDER_SMTP_PASSWORD", SMTP_PASSWORD)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("API listening"), "{line:?}");
        line.clear();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("statements scheduled: */2"), "{line:?}");
        std::thread::sleep(Duration::from_secs(secs));
        // SIGTERM: the run in progress finishes, then the process exits.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        assert!(child.wait().unwrap().success());
    };
    serve(5);
    let first = smtp.messages().len();
    assert!(first >= 1, "statements were sent on schedule");
    std::thread::sleep(Duration::from_secs(2));
    serve(4);
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&cli(&["statements", "list", "--limit", "1000"])).unwrap();
    let mut periods: Vec<(String, String)> = listed
        .iter()
        .map(|s| {
            assert_eq!(s["status"], "sent", "{s}");
            (
                s["period"]["start"].as_str().unwrap().to_string(),
                s["period"]["end"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    periods.sort();
    assert!(periods.len() >= 4, "{periods:?}");
    for (start, end) in &periods {
        // Fire times of the schedule: whole even seconds.
        for t in [start, end] {
            let t: DateTime<Utc> = t.parse().unwrap();
            assert_eq!(t.timestamp_subsec_micros(), 0, "{t}");
            assert_eq!(t.timestamp() % 2, 0, "{t}");
        }
    }
    for w in periods.windows(2) {
        assert_eq!(w[0].1, w[1].0, "periods tile, across the restart too");
    }
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), listed.len(), "each statement received once");
    let mut ids: Vec<String> = msgs.iter().map(|(_, m)| parse(m).message_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), listed.len());
    drop(pg);
}
both_backends!(serve_sends_on_schedule, super::serve_sends_on_schedule);

/// Implicit TLS (SMTPS) with AUTH, and a wrong password refused (the
/// statement stays failed with the server's answer).
async fn implicit_tls_and_wrong_password(backend: Backend) {
    let Some(py) = python("implicit_tls_and_wrong_password") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let s = Setup::new(backend, 0);
    let smtp = Smtp::start(&py, &dir.path().join("mail"), &s.tls, 0, &["--implicit"]);
    s.write_config(smtp.port);
    let cfg = s.dir.path().join("forwarder.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("tls = \"starttls\"", "tls = \"implicit\"");
    std::fs::write(&cfg, text).unwrap();
    {
        let mut c = s.conn();
        let ada = subscribers::add(
            &mut c,
            &new_sub("Ada", "ada@example.net", "Europe/Berlin"),
            t("2026-02-10T09:00:00Z"),
        )
        .unwrap()
        .id;
        call(
            &mut c,
            ada,
            "2026-02-12T08:00:00Z",
            61,
            "+441632960001",
            dec!(0.12),
            "+15550100",
            None,
        );
    }
    // The wrong password: refused, kept for a retry.
    let out = Command::new(env!("CARGO_BIN_EXE_forwarder"))
        .arg("--data")
        .arg(s.dir.path())
        .args(["statements", "run", "--now", "2026-03-02T12:00:00Z"])
        .env("FORWARDER_SMTP_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let failed = {
        let mut c = s.conn();
        stored::list(
            &mut c,
            &StatementQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .unwrap()
    };
    assert_eq!(failed[0].status, StatementStatus::Failed);
    assert!(
        failed[0].last_error.as_deref().unwrap().contains("535"),
        "{:?}",
        failed[0].last_error
    );
    assert!(smtp.messages().is_empty());
    // The right one, once due: sent over SMTPS.
    let (ok, r) = s.run("2026-03-03T12:00:00Z");
    assert!(ok, "{r}");
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(parse(&msgs[0].1).message_id, failed[0].message_id);
}
both_backends!(
    implicit_tls_and_wrong_password,
    super::implicit_tls_and_wrong_password
);
