//! Runs the real `central` binary: `init`, then `serve`, then talks to it
//! over HTTPS with the operator's client certificate, then stops it with
//! SIGTERM.

mod common;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_central");

#[test]
fn help_lists_the_commands() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("init") && text.contains("serve"), "{text}");
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--listen"));
}

#[test]
fn bad_invocations_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    // serve before init
    let out = Command::new(BIN)
        .args(["serve", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("central init"));
    // bad environment override
    let out = Command::new(BIN)
        .args(["serve", "--data"])
        .arg(dir.path())
        .env("CENTRAL_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CENTRAL_LISTEN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_serve_and_talk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(BIN)
        .args(["init", "--server-name", "127.0.0.1", "--data"])
        .arg(&data)
        .env_remove("CENTRAL_DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for key in ["operator.key", "server.key"] {
            let mode = std::fs::metadata(data.join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{key} is readable by others: {mode:o}");
        }
    }
    // The operator key is readable by OpenSSL (curl --key), not only rustls.
    match Command::new("openssl")
        .args(["pkey", "-noout", "-in"])
        .arg(data.join("operator.key"))
        .output()
    {
        Ok(out) => assert!(
            out.status.success(),
            "openssl cannot read operator.key: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) => eprintln!("SKIPPED (openssl not installed): operator.key OpenSSL check"),
    }
    // A second init must not clobber the CA.
    let before = std::fs::read(data.join("ca.crt")).unwrap();
    let out = Command::new(BIN)
        .args(["init", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read(data.join("ca.crt")).unwrap(), before);

    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&data)
        .env_remove("CENTRAL_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        lines.next().and_then(|l| l.ok()).unwrap_or_default()
    })
    .await
    .unwrap();
    let base = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let root = std::fs::read_to_string(data.join("ca.crt")).unwrap();
    let cert = std::fs::read_to_string(data.join("operator.crt")).unwrap();
    let key = std::fs::read_to_string(data.join("operator.key")).unwrap();
    let op = common::client(&root, Some((&cert, &key)));
    let res = op
        .post(format!("{base}/v1/providers"))
        .json(&json!({"name": "alpha", "sip_addresses": [{"address": "127.0.0.1:5060", "transport": "udp"}], "currency": "EUR", "contact": "noc@alpha.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["name"], "alpha");
    let anon = common::client(&root, None);
    let res = anon
        .post(format!("{base}/v1/providers"))
        .json(&json!({"name": "beta"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let h: Value = anon
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(h["status"], "ok");

    // SIGTERM: graceful exit with status 0.
    #[cfg(unix)]
    {
        let pid = child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on the child we spawned.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "central did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "exit status {status}");
    }
    #[cfg(not(unix))]
    child.kill().unwrap();
}
