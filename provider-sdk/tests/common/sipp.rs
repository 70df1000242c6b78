//! SIPp (Debian package `sip-tester`) as a real SIP peer in tests: starting
//! it with a scenario from `ops/sipp/`, waiting for a callee to listen, and
//! waiting (bounded) for its one call to succeed. Shared by the test crates
//! of the workspace (`#[path]`-included).
#![allow(dead_code)] // each test binary uses a subset

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use provider_sdk::sip::SipTarget;
use tokio::process::{Child, Command};

pub const SCENARIO_LIMIT: Duration = Duration::from_secs(40);

pub fn sipp() -> &'static str {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("sipp").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "FAILED: `sipp` not found on PATH; install the Debian package `sip-tester` (apt-get install sip-tester)"
    );
    "sipp"
}

pub fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../ops/sipp")
        .join(name)
}

/// The first port of 20 free-looking ports for a media relay: spread by
/// process id and a counter so parallel tests and test binaries rarely meet.
pub fn free_port_pair_base() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let slot = NEXT.fetch_add(1, Ordering::Relaxed) % 50;
    let pid = (std::process::id() % 40) as u16;
    20000 + pid * 1000 + slot * 20
}

/// A currently free UDP port on loopback (SIPp needs a number up front).
pub fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind probe socket");
    s.local_addr().expect("local addr").port()
}

pub struct Sipp {
    child: Child,
    port: u16,
    name: String,
    _dir: tempfile::TempDir,
}

pub fn spawn_sipp(file: &str, remote: Option<SocketAddr>) -> Sipp {
    spawn_sipp_with(file, remote, &[])
}

/// Like [`spawn_sipp`] with extra SIPp arguments (e.g. `-rtp_echo`, `-mp`, `-trace_msg`).
pub fn spawn_sipp_with(file: &str, remote: Option<SocketAddr>, extra: &[&str]) -> Sipp {
    spawn(file, remote.map(|r| (r, "callee")), extra)
}

fn spawn(file: &str, remote: Option<(SocketAddr, &str)>, extra: &[&str]) -> Sipp {
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
        .args(extra)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some((remote, service)) = remote {
        cmd.args(["-s", service]).arg(remote.to_string());
    }
    let child = cmd.spawn().expect("start sipp");
    if remote.is_none() {
        // A callee: wait until SIPp has bound its port (one we can no longer bind).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "{file}: sipp did not bind port {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Sipp {
        child,
        port,
        name: file.to_owned(),
        _dir: dir,
    }
}

impl Sipp {
    pub fn target(&self) -> SipTarget {
        SipTarget::parse(&format!("sip:callee@127.0.0.1:{}", self.port)).expect("target")
    }

    /// Waits for SIPp to finish and asserts that its one call succeeded.
    pub async fn succeeded(self) -> tempfile::TempDir {
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
        self._dir
    }
}

/// Like [`spawn_sipp_with`] over TCP (`-t t1`): a callee listens on TCP
/// only, a caller connects to `remote` over TCP.
pub fn spawn_sipp_tcp(file: &str, remote: Option<SocketAddr>, extra: &[&str]) -> Sipp {
    let port = free_tcp_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(sipp());
    cmd.arg("-sf")
        .arg(scenario(file))
        .args([
            "-t",
            "t1",
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            "1",
        ])
        .args([
            "-timeout",
            "30s",
            "-timeout_error",
            "-max_recv_loops",
            "1000",
        ])
        .args(["-trace_err", "-nr"])
        .args(extra)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(remote) = remote {
        cmd.args(["-s", "callee"]).arg(remote.to_string());
    }
    let child = cmd.spawn().expect("start sipp");
    if remote.is_none() {
        // A callee: wait until SIPp listens on its TCP port.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "{file}: sipp did not listen on TCP port {port} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Sipp {
        child,
        port,
        name: format!("{file} (tcp)"),
        _dir: dir,
    }
}

/// A currently free TCP port on loopback.
pub fn free_tcp_port() -> u16 {
    let s = std::net::TcpListener::bind("127.0.0.1:0").expect("bind probe listener");
    s.local_addr().expect("local addr").port()
}

impl Sipp {
    /// This SIPp as a target reached over TCP.
    pub fn tcp_target(&self) -> SipTarget {
        SipTarget::parse(&format!("sip:callee@127.0.0.1:{};transport=tcp", self.port))
            .expect("target")
    }
}

/// A SIPp caller whose Request-URI user is `service` (e.g. a phone number).
pub fn spawn_sipp_calling(file: &str, remote: SocketAddr, service: &str, extra: &[&str]) -> Sipp {
    spawn(file, Some((remote, service)), extra)
}
