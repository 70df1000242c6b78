//! The B2BUA between real SIP peers: SIPp (Debian package `sip-tester`) as
//! caller and as callee(s), all on loopback. Each scenario is bounded by
//! SIPp's own `-timeout` and by a timeout around the process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use provider_sdk::sip::b2bua::{B2bua, B2buaConfig, CallRecord};
use provider_sdk::sip::call::Leg;
use provider_sdk::sip::{Outcome, SipTarget};
use tokio::process::{Child, Command};

const SCENARIO_LIMIT: Duration = Duration::from_secs(40);

fn sipp() -> &'static str {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("sipp").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "FAILED: `sipp` not found on PATH; install the Debian package `sip-tester` (apt-get install sip-tester)"
    );
    "sipp"
}

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../ops/sipp")
        .join(name)
}

/// A currently free UDP port on loopback (SIPp needs a number up front).
fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind probe socket");
    s.local_addr().expect("local addr").port()
}

struct Sipp {
    child: Child,
    port: u16,
    name: String,
    _dir: tempfile::TempDir,
}

fn spawn_sipp(file: &str, remote: Option<SocketAddr>) -> Sipp {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(sipp());
    cmd.arg("-sf")
        .arg(scenario(file))
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-m", "1"])
        .args([
            "-timeout",
            "30s",
            "-timeout_error",
            "-max_recv_loops",
            "1000",
        ])
        .args(["-trace_err", "-nr"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(remote) = remote {
        cmd.args(["-s", "callee"]).arg(remote.to_string());
    }
    let child = cmd.spawn().expect("start sipp");
    Sipp {
        child,
        port,
        name: file.to_owned(),
        _dir: dir,
    }
}

impl Sipp {
    fn target(&self) -> SipTarget {
        SipTarget::parse(&format!("sip:callee@127.0.0.1:{}", self.port)).expect("target")
    }

    /// Waits for SIPp to finish and asserts that its one call succeeded.
    async fn succeeded(self) {
        let name = self.name.clone();
        let dir = self._dir.path().to_owned();
        let out = tokio::time::timeout(SCENARIO_LIMIT, self.child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("{name}: sipp did not finish within {SCENARIO_LIMIT:?}"))
            .expect("wait for sipp");
        if !out.status.success() {
            let errors: String = std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with("errors.log"))
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect();
            panic!(
                "{name}: sipp failed ({:?})\n--- errors.log ---\n{errors}\n--- stderr ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

async fn b2bua(targets: Vec<SipTarget>, attempt_timeout: Duration) -> B2bua {
    let mut config = B2buaConfig::loopback(targets);
    config.attempt_timeout = attempt_timeout;
    B2bua::bind(config).await.expect("bind b2bua")
}

/// The record of the one call, once the B2BUA has finished with it.
async fn record(b2bua: &B2bua) -> CallRecord {
    for _ in 0..100 {
        if let Some(r) = b2bua.records().into_iter().next() {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the B2BUA recorded no finished call");
}

/// Waits until the callee is listening (SIPp needs a moment to bind).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn basic_call_with_bye_from_caller() {
    let callee = spawn_sipp("uas_answer.xml", None);
    settle().await;
    let b = b2bua(vec![callee.target()], Duration::from_secs(10)).await;
    let caller = spawn_sipp("uac_call.xml", Some(b.local_addr()));
    caller.succeeded().await;
    callee.succeeded().await;
    let r = record(&b).await;
    assert_eq!(r.final_status, Some(200));
    assert_eq!(r.ended_by, Some(Leg::Caller));
    assert!(
        matches!(r.attempts.as_slice(), [(_, Outcome::Answered)]),
        "{r:?}"
    );
}

#[tokio::test]
async fn bye_from_callee_is_relayed_to_caller() {
    let callee = spawn_sipp("uas_hangup.xml", None);
    settle().await;
    let b = b2bua(vec![callee.target()], Duration::from_secs(10)).await;
    let caller = spawn_sipp("uac_wait_bye.xml", Some(b.local_addr()));
    caller.succeeded().await;
    callee.succeeded().await;
    assert_eq!(record(&b).await.ended_by, Some(Leg::Callee));
}

#[tokio::test]
async fn busy_is_relayed_and_ends_the_search() {
    let busy = spawn_sipp("uas_busy.xml", None);
    settle().await;
    // A second target that must never be tried: nothing listens there.
    let unused = SipTarget::parse(&format!("sip:x@127.0.0.1:{}", free_port())).unwrap();
    let b = b2bua(vec![busy.target(), unused], Duration::from_secs(10)).await;
    let caller = spawn_sipp("uac_expect_486.xml", Some(b.local_addr()));
    caller.succeeded().await;
    busy.succeeded().await;
    let r = record(&b).await;
    assert_eq!(r.final_status, Some(486));
    assert_eq!(r.attempts.len(), 1, "a 486 must stop failover: {r:?}");
}

#[tokio::test]
async fn unavailable_first_target_fails_over_to_the_second() {
    let first = spawn_sipp("uas_unavailable.xml", None);
    let second = spawn_sipp("uas_answer.xml", None);
    settle().await;
    let b = b2bua(
        vec![first.target(), second.target()],
        Duration::from_secs(10),
    )
    .await;
    let caller = spawn_sipp("uac_call.xml", Some(b.local_addr()));
    caller.succeeded().await;
    first.succeeded().await;
    second.succeeded().await;
    let r = record(&b).await;
    assert!(
        matches!(
            r.attempts.as_slice(),
            [
                (_, Outcome::Rejected { status: 503, .. }),
                (_, Outcome::Answered)
            ]
        ),
        "{r:?}"
    );
}

#[tokio::test]
async fn silent_first_target_times_out_then_second_answers() {
    // A bound socket that never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_target =
        SipTarget::parse(&format!("sip:x@{}", silent.local_addr().unwrap())).unwrap();
    let second = spawn_sipp("uas_answer.xml", None);
    settle().await;
    let b = b2bua(
        vec![silent_target, second.target()],
        Duration::from_millis(1500),
    )
    .await;
    let caller = spawn_sipp("uac_call.xml", Some(b.local_addr()));
    caller.succeeded().await;
    second.succeeded().await;
    let r = record(&b).await;
    assert!(
        matches!(
            r.attempts.as_slice(),
            [(_, Outcome::Timeout { .. }), (_, Outcome::Answered)]
        ),
        "{r:?}"
    );
    let mut buf = [0u8; 4096];
    silent.set_nonblocking(true).unwrap();
    let (n, _) = silent
        .recv_from(&mut buf)
        .expect("the silent target received the INVITE");
    assert!(buf[..n].starts_with(b"INVITE "));
}

#[tokio::test]
async fn cancel_during_ringing_reaches_the_callee() {
    let callee = spawn_sipp("uas_ringing.xml", None);
    settle().await;
    let b = b2bua(vec![callee.target()], Duration::from_secs(10)).await;
    let caller = spawn_sipp("uac_cancel.xml", Some(b.local_addr()));
    caller.succeeded().await;
    callee.succeeded().await;
    let r = record(&b).await;
    assert_eq!(r.final_status, Some(487));
    assert!(
        matches!(r.attempts.as_slice(), [(_, Outcome::Cancelled)]),
        "{r:?}"
    );
}

#[tokio::test]
async fn reinvite_hold_and_resume_are_relayed() {
    let callee = spawn_sipp("uas_hold_resume.xml", None);
    settle().await;
    let b = b2bua(vec![callee.target()], Duration::from_secs(10)).await;
    let caller = spawn_sipp("uac_hold_resume.xml", Some(b.local_addr()));
    caller.succeeded().await;
    callee.succeeded().await;
    assert_eq!(record(&b).await.ended_by, Some(Leg::Caller));
}

#[tokio::test]
async fn early_media_183_with_sdp_is_relayed() {
    let callee = spawn_sipp("uas_early_media.xml", None);
    settle().await;
    let b = b2bua(vec![callee.target()], Duration::from_secs(10)).await;
    // The caller scenario fails unless a 183 carrying an m=audio line arrives.
    let caller = spawn_sipp("uac_early_media.xml", Some(b.local_addr()));
    caller.succeeded().await;
    callee.succeeded().await;
    assert_eq!(record(&b).await.final_status, Some(200));
}
