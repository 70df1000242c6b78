//! The `forwarder` binary end to end against a temporary data directory
//! (SQLite, and PostgreSQL with TEST_POSTGRES_URL): init, subscribers,
//! numbers, rules from JSON and TOML files, the account, call records, a
//! subscriber credential used against `forwarder serve`.

#[macro_use]
mod common;

use common::{Backend, PgDb};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_forwarder");

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data")
        .arg(dir)
        .args(args)
        .env_remove("FORWARDER_DATABASE_URL")
        .output()
        .expect("run forwarder")
}

/// Runs, expects success, returns the JSON printed.
fn ok(dir: &Path, args: &[&str]) -> Value {
    let out = run(dir, args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?} printed {stdout:?}: {e}"))
}

/// Runs, expects failure, returns stderr.
fn fails(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(!out.status.success(), "{args:?} should have failed");
    assert!(out.stdout.is_empty(), "{args:?} printed on failure");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_everywhere() {
    let commands: &[&[&str]] = &[
        &[],
        &["init"],
        &["serve"],
        &["subscriber"],
        &["subscriber", "add"],
        &["subscriber", "show"],
        &["subscriber", "list"],
        &["subscriber", "change"],
        &["subscriber", "suspend"],
        &["subscriber", "resume"],
        &["subscriber", "close"],
        &["number"],
        &["number", "add"],
        &["number", "remove"],
        &["number", "list"],
        &["rule"],
        &["rule", "set"],
        &["rule", "show"],
        &["account"],
        &["account", "payment"],
        &["account", "credit"],
        &["account", "adjust"],
        &["account", "show"],
        &["cdr"],
        &["cdr", "list"],
        &["cdr", "show"],
        &["credential"],
        &["credential", "subscriber"],
        &["credential", "revoke-subscriber"],
    ];
    for args in commands {
        let out = Command::new(BIN)
            .args(*args)
            .arg("--help")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{args:?} --help");
        assert!(text.contains("Usage: forwarder"), "{args:?}: {text}");
    }
}

async fn operator_walkthrough(backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let pg = match backend {
        Backend::Sqlite => None,
        Backend::Postgres(admin) => Some(PgDb::create(&admin)),
    };
    let mut init: Vec<&str> = vec!["init"];
    if let Some(p) = &pg {
        init.extend(["--database-url", p.url.as_str()]);
    }
    let made = ok(&dir, &init);
    assert!(made["operator_key"]
        .as_str()
        .unwrap()
        .ends_with("operator.key"));
    assert!(dir.join("ca.crt").exists() && dir.join("server.key").exists());
    match &pg {
        Some(_) => assert!(!dir.join("forwarder.sqlite").exists()),
        None => assert!(dir.join("forwarder.sqlite").exists()),
    }
    assert!(fails(&dir, &["init"]).contains("refusing to overwrite"));

    let sub = ok(
        &dir,
        &[
            "subscriber",
            "add",
            "--name",
            "Ada Lovelace",
            "--email",
            "ada@example.net",
            "--time-zone",
            "Europe/Berlin",
            "--plan",
            "standard",
            "--currency",
            "EUR",
            "--credit-limit",
            "20",
            "--daily-cap",
            "5.00",
            "--max-calls",
            "2",
        ],
    );
    assert_eq!(sub["id"], 1);
    assert_eq!(
        sub["account"],
        json!({"kind": "postpaid", "credit_limit": "20"})
    );
    assert!(fails(
        &dir,
        &[
            "subscriber",
            "add",
            "--name",
            "X",
            "--email",
            "x@example.net",
            "--time-zone",
            "Berlin",
            "--plan",
            "p",
            "--currency",
            "EUR"
        ],
    )
    .contains("IANA"));
    assert!(fails(
        &dir,
        &[
            "subscriber",
            "add",
            "--name",
            "X",
            "--email",
            "x@example.net",
            "--time-zone",
            "UTC",
            "--plan",
            "p",
            "--currency",
            "EUR",
            "--daily-cap",
            "-3"
        ],
    )
    .contains("negative"));
    assert_eq!(
        ok(&dir, &["subscriber", "list"]).as_array().unwrap().len(),
        1
    );

    let n = ok(&dir, &["number", "add", "1", "+49 30 123456"]);
    assert_eq!(n["number"], "+4930123456");
    assert!(fails(&dir, &["number", "add", "1", "030 123456"]).contains("country code"));

    // Rules from a JSON file, then from a TOML file, then one from flags.
    let rules_json = tmp.path().join("rules.json");
    std::fs::write(
        &rules_json,
        r#"{"rules": [
            {"name": "office", "targets": [{"number": "+4930111", "ring_timeout_secs": 20},
                                            {"number": "+491701234"}],
             "windows": [{"days": ["mon","tue","wed","thu","fri"], "start": "08:00", "end": "18:00"}]},
            {"name": "always", "targets": [{"number": "+491701234"}]}
        ]}"#,
    )
    .unwrap();
    let set = ok(
        &dir,
        &["rule", "set", "1", "--file", rules_json.to_str().unwrap()],
    );
    assert_eq!(set["rules"].as_array().unwrap().len(), 2);
    assert_eq!(set["rules"][0]["targets"][1]["ring_timeout_secs"], 30);
    assert_eq!(ok(&dir, &["rule", "show", "1"]), set);
    let rules_toml = tmp.path().join("rules.toml");
    std::fs::write(
        &rules_toml,
        r#"
[[rules]]
name = "nights"
targets = [{ number = "+491709999", ring_timeout_secs = 45 }]
windows = [{ days = ["fri", "sat"], start = "22:00", end = "06:00" }]
"#,
    )
    .unwrap();
    let set = ok(
        &dir,
        &["rule", "set", "1", "--file", rules_toml.to_str().unwrap()],
    );
    assert_eq!(set["rules"][0]["windows"][0]["end"], "06:00");
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, r#"{"rules": [{"targets": [{"number": "+49301"}], "windows": [{"days": ["mon"], "start": "9:00", "end": "9:00"}]}]}"#).unwrap();
    assert!(fails(&dir, &["rule", "set", "1", "--file", bad.to_str().unwrap()]).contains("empty"));
    assert_eq!(
        ok(&dir, &["rule", "show", "1"]),
        set,
        "a bad file changes nothing"
    );
    let set = ok(
        &dir,
        &[
            "rule",
            "set",
            "1",
            "--target",
            "+4930111:25",
            "--target",
            "+491701234",
            "--window",
            "mon-fri 08:00-18:00",
            "--name",
            "office",
        ],
    );
    assert_eq!(set["rules"][0]["targets"][0]["ring_timeout_secs"], 25);
    assert!(fails(
        &dir,
        &["rule", "set", "1", "--target", "+4930111", "--window", "someday"]
    )
    .contains("time window"));

    // The account: a payment retried with the same key counts once.
    let p1 = ok(
        &dir,
        &["account", "payment", "1", "10.00", "--key", "bank-1"],
    );
    assert_eq!(
        (p1["recorded"].as_str(), p1["balance"].as_str()),
        (Some("new"), Some("10"))
    );
    let p2 = ok(
        &dir,
        &["account", "payment", "1", "10.00", "--key", "bank-1"],
    );
    assert_eq!(p2["recorded"], "already recorded");
    assert_eq!(p2["balance"], "10");
    assert!(
        fails(&dir, &["account", "payment", "1", "11", "--key", "bank-1"]).contains("already used")
    );
    assert!(fails(&dir, &["account", "adjust", "1", "-1"]).contains("reason"));
    let adj = ok(
        &dir,
        &["account", "adjust", "1", "-1.25", "--reason", "porting fee"],
    );
    assert_eq!(adj["balance"], "8.75");
    ok(
        &dir,
        &["account", "credit", "1", "0.25", "--reason", "sorry"],
    );
    let show = ok(&dir, &["account", "show", "1"]);
    assert_eq!(show["standing"]["balance"], "9");
    assert_eq!(show["entries"].as_array().unwrap().len(), 3);
    assert!(fails(&dir, &["account", "payment", "1", "1e2"]).contains("amount"));

    // Call records: none yet; one written by the call path shows up.
    assert_eq!(ok(&dir, &["cdr", "list", "1"]), json!([]));
    let url = match &pg {
        Some(p) => p.url.clone(),
        None => dir.join("forwarder.sqlite").to_string_lossy().into_owned(),
    };
    let call_id = uuid::Uuid::new_v4();
    {
        let db = forwarder::db::Database::open(&url, 1).unwrap();
        let mut conn = db.conn().unwrap();
        forwarder::store::cdrs::open(
            &mut conn,
            &forwarder::store::cdrs::NewCdr {
                id: call_id,
                subscriber_id: 1,
                called_number: provider_sdk::number::E164::parse("+4930123456").unwrap(),
                caller_number: Some("+441234".into()),
                caller_name: None,
                received_at: chrono::Utc::now(),
            },
        )
        .unwrap();
    }
    let listed = ok(&dir, &["cdr", "list", "1"]);
    assert_eq!(listed[0]["id"], call_id.to_string());
    let shown = ok(&dir, &["cdr", "show", &call_id.to_string()]);
    assert_eq!(shown["status"], "open");
    assert!(fails(&dir, &["cdr", "show", "nope"]).contains("call id"));
    assert!(fails(&dir, &["cdr", "show", &uuid::Uuid::new_v4().to_string()]).contains("not found"));

    // Status.
    assert_eq!(
        ok(&dir, &["subscriber", "suspend", "1"])["status"],
        "suspended"
    );
    assert_eq!(ok(&dir, &["subscriber", "resume", "1"])["status"], "active");
    let changed = ok(
        &dir,
        &[
            "subscriber",
            "change",
            "1",
            "--daily-cap",
            "none",
            "--plan",
            "gold",
        ],
    );
    assert_eq!(
        (&changed["daily_spend_cap"], changed["plan"].as_str()),
        (&Value::Null, Some("gold"))
    );
    let whole = ok(&dir, &["subscriber", "show", "1"]);
    assert_eq!(whole["numbers"][0]["number"], "+4930123456");
    assert_eq!(whole["standing"]["active_calls"], 1);

    // A subscriber credential, used against the server.
    let cred = ok(&dir, &["credential", "subscriber", "1"]);
    let token = cred["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("fwd_"));
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(&dir)
        .args(["serve", "--api-listen", "127.0.0.1:0"])
        .env_remove("FORWARDER_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("API listening on ")
        .unwrap_or_else(|| panic!("serve printed {line:?}"))
        .to_string();
    let root = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
    let client = common::client(&root, None);
    let me: Value = client
        .get(format!("{base}/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me, json!({"role": "subscriber", "subscriber_id": 1}));
    let rules: Value = client
        .get(format!("{base}/v1/subscribers/1/rules"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rules, json!({"rules": set["rules"]}));
    let revoked = ok(&dir, &["credential", "revoke-subscriber", "1"]);
    assert_eq!(revoked["revoked_tokens"], 1);
    let after = client
        .get(format!("{base}/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401, "a revoked token is refused at once");
    child.kill().unwrap();
    child.wait().unwrap();

    // Closed is final.
    assert_eq!(ok(&dir, &["subscriber", "close", "1"])["status"], "closed");
    assert!(fails(&dir, &["subscriber", "resume", "1"]).contains("closed"));
    assert!(fails(&dir, &["subscriber", "show", "7"]).contains("not found"));
    drop(pg);
}
both_backends!(operator_walkthrough, super::operator_walkthrough);
