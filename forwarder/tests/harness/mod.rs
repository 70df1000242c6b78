//! End-to-end harness: central in this process, provider gateways in this
//! process, the forwarder as its own process (`forwarder serve`), SIPp as
//! the upstream carrier and as the phone network behind the gateways.
#![allow(dead_code)] // each test binary uses a subset

#[path = "../../../provider-sdk/tests/common/network.rs"]
pub mod network;
#[path = "../../../provider-sdk/tests/common/sipp.rs"]
mod sipp;
pub use sipp::*;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const FORWARDER: &str = env!("CARGO_BIN_EXE_forwarder");

/// Runs an operator command on the forwarder's data directory and returns
/// its JSON output.
pub fn cli(data: &Path, args: &[&str]) -> Value {
    let out = std::process::Command::new(FORWARDER)
        .args(args)
        .env("FORWARDER_DATA", data)
        .env_remove("FORWARDER_ENROLLMENT_TOKEN")
        .output()
        .expect("run forwarder");
    assert!(
        out.status.success(),
        "forwarder {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A running `forwarder serve`.
pub struct Forwarder {
    pub child: Child,
    pub data: PathBuf,
    pub sip: SocketAddr,
    /// The call path's plain-HTTP metrics endpoint.
    pub metrics: Option<SocketAddr>,
    pub log: PathBuf,
}

/// Settings of one test's forwarder.
pub struct ForwarderSetup<'a> {
    pub central_url: &'a str,
    pub central_root: &'a Path,
    pub name: &'a str,
    pub token: Option<&'a str>,
    /// Extra TOML appended (e.g. `[plans.x]` tables).
    pub extra: &'a str,
    pub cache_ttl_secs: u64,
}

impl Forwarder {
    /// `forwarder init` in `data` (a fresh directory), the call path's
    /// tables written to its `forwarder.toml`.
    pub fn init(data: &Path, setup: &ForwarderSetup<'_>) {
        std::fs::create_dir_all(data).unwrap();
        let out = std::process::Command::new(FORWARDER)
            .args(["init", "--data"])
            .arg(data)
            .args(["--api-listen", "127.0.0.1:0"])
            .output()
            .expect("forwarder init");
        assert!(
            out.status.success(),
            "init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The same port for UDP and TCP, as SIP servers usually have.
        let sip_port = loop {
            let port = free_port();
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                break port;
            }
        };
        let media = free_port_pair_base();
        let extra = format!(
            r#"
[sip]
listen = "127.0.0.1:{sip_port}"
tcp_listen = "127.0.0.1:{sip_port}"
metrics_listen = "127.0.0.1:0"
setup_timeout_ms = 2000
heartbeat_secs = 1
[sip.ingress]
trusted = ["127.0.0.1"]

[central]
central_url = "{url}"
root_certificate = "{root}"
key = "home.key"
certificate = "home.crt"
name = "{name}"

[routing]
currency = "EUR"
cache_ttl_secs = {ttl}
probe_deadline_ms = 300

[media]
first_port = {media}
last_port = {last}
timeout_secs = 4

[plans.standard]
kind = "markup"
currency = "EUR"
connect_fee = "0"
first_increment = 1
next_increment = 1
markup_percent = "20"
{more}
"#,
            url = setup.central_url,
            root = setup.central_root.display(),
            name = setup.name,
            ttl = setup.cache_ttl_secs,
            last = media + 19,
            more = setup.extra,
        );
        let path = data.join("forwarder.toml");
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push_str(&extra);
        std::fs::write(&path, text).unwrap();
    }

    /// Starts `forwarder serve` and waits until SIP listens.
    pub async fn serve(data: &Path, token: Option<&str>) -> Forwarder {
        let log = data.join("serve.log");
        let err = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(FORWARDER);
        cmd.args(["serve", "--data"])
            .arg(data)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        match token {
            Some(t) => cmd.env("FORWARDER_ENROLLMENT_TOKEN", t),
            None => cmd.env_remove("FORWARDER_ENROLLMENT_TOKEN"),
        };
        let mut child = cmd.spawn().expect("forwarder serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let sip = tokio::time::timeout(Duration::from_secs(60), async {
            // Printed before the SIP line when [sip] metrics_listen is set.
            let mut metrics = None;
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(a) = line.strip_prefix("call metrics on http://") {
                    metrics = a.trim_end_matches("/metrics").parse::<SocketAddr>().ok();
                }
                if let Some(addr) = line.strip_prefix("SIP listening on udp ") {
                    let sip = addr.trim().parse::<SocketAddr>().ok()?;
                    return Some((sip, metrics));
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let Some((sip, metrics)) = sip else {
            panic!(
                "forwarder serve did not start:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Forwarder {
            child,
            data: data.to_owned(),
            sip,
            metrics,
            log,
        }
    }

    /// The value of one sample in the call path's `/metrics` (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        let addr = self.metrics.expect("[sip] metrics_listen is set");
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn cli(&self, args: &[&str]) -> Value {
        cli(&self.data, args)
    }

    /// Waits until the forwarder logs that it holds its credential.
    pub async fn enrolled(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !self.log_text().contains("forwarder credential ready") {
            assert!(
                std::time::Instant::now() < deadline,
                "not enrolled:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The subscriber's CDRs (newest first) once `n` are closed.
    pub async fn closed_cdrs(&self, subscriber: i64, n: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.cli(&["cdr", "list", &subscriber.to_string(), "--limit", "50"]);
            let cdrs: Vec<Value> = v
                .get("cdrs")
                .or(Some(&v))
                .and_then(|c| c.as_array())
                .cloned()
                .unwrap_or_default();
            let closed: Vec<Value> = cdrs
                .into_iter()
                .filter(|c| !matches!(c["status"].as_str(), Some("open") | Some("answered")))
                .collect();
            if closed.len() >= n {
                return closed;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} closed CDRs, wanted {n}: {v}\n{}",
                closed.len(),
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: kill(2) on our own child.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Adds a prepaid subscriber with `number`, funded with `balance`, forwarding
/// to `targets` (`"+44...:20"` = number and ring timeout); returns its id.
pub fn subscriber(
    data: &Path,
    number: &str,
    balance: &str,
    targets: &[&str],
    more: &[&str],
) -> i64 {
    let mut args = vec![
        "subscriber",
        "add",
        "--name",
        "Test Subscriber",
        "--email",
        "t@example.net",
        "--time-zone",
        "Europe/Berlin",
        "--plan",
        "standard",
        "--currency",
        "EUR",
    ];
    args.extend_from_slice(more);
    let s = cli(data, &args);
    let id = s["id"].as_i64().expect("subscriber id");
    let id_s = id.to_string();
    cli(data, &["number", "add", &id_s, number]);
    let mut rule = vec!["rule", "set", id_s.as_str()];
    for t in targets {
        rule.push("--target");
        rule.push(t);
    }
    cli(data, &rule);
    if balance != "0" {
        let key = format!("fund-{id}");
        cli(data, &["account", "payment", &id_s, balance, "--key", &key]);
    }
    id
}

/// What a caller hears: the final status and its header fields.
#[derive(Debug)]
pub struct Heard {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub elapsed: Duration,
}

impl Heard {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one INVITE for `number` from a plain UDP socket and returns the
/// final answer (ACKed). Bounded by `limit`.
pub async fn invite(to: SocketAddr, number: &str, limit: Duration) -> Heard {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let call_id = format!("{}@test", uuid::Uuid::new_v4().simple());
    let branch = format!("z9hG4bK{}", uuid::Uuid::new_v4().simple());
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        free_port()
    );
    let msg = format!(
        "INVITE sip:{number}@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch}\r\nMax-Forwards: 70\r\n\
         From: <sip:+15550001@{local}>;tag=t1\r\nTo: <sip:{number}@{to}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:caller@{local}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    let started = std::time::Instant::now();
    socket.send_to(msg.as_bytes(), to).await.unwrap();
    let mut buf = vec![0u8; 65536];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        let (n, _) = tokio::time::timeout(left, socket.recv_from(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no final answer for {number} within {limit:?}"))
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let mut lines = text.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if status < 200 {
            continue;
        }
        let headers: Vec<(String, String)> = lines
            .take_while(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let to_hdr = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("To"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let ack = format!(
            "ACK sip:{number}@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch}\r\nMax-Forwards: 70\r\n\
             From: <sip:+15550001@{local}>;tag=t1\r\nTo: {to_hdr}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        socket.send_to(ack.as_bytes(), to).await.unwrap();
        return Heard {
            status,
            headers,
            elapsed: started.elapsed(),
        };
    }
}

impl Forwarder {
    /// Waits until the subscriber has a CDR with `status` and returns it.
    pub async fn cdr_with_status(&self, subscriber: i64, status: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.cli(&["cdr", "list", &subscriber.to_string()]);
            if let Some(c) = v
                .as_array()
                .and_then(|a| a.iter().find(|c| c["status"] == status))
            {
                return c.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {status} CDR: {v}\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Kills the process at once (no clean shutdown: a crash).
    pub async fn crash(mut self) -> PathBuf {
        let _ = self.child.kill().await;
        self.data.clone()
    }
}

/// A UDP relay in front of `target` that delays every datagram by `delay`
/// each way (a provider far away). Returns the address to register.
pub async fn delay_proxy(target: SocketAddr, delay: Duration) -> SocketAddr {
    use std::collections::HashMap;
    use std::sync::Arc;
    let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    tokio::spawn(async move {
        let mut upstream: HashMap<SocketAddr, Arc<tokio::net::UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, client)) = front.recv_from(&mut buf).await else {
                return;
            };
            let packet = buf[..n].to_vec();
            let up = match upstream.get(&client) {
                Some(u) => u.clone(),
                None => {
                    let u = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
                    let (back, front2) = (u.clone(), front.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 65536];
                        while let Ok((n, _)) = back.recv_from(&mut buf).await {
                            let packet = buf[..n].to_vec();
                            let front3 = front2.clone();
                            tokio::spawn(async move {
                                tokio::time::sleep(delay).await;
                                let _ = front3.send_to(&packet, client).await;
                            });
                        }
                    });
                    upstream.insert(client, u.clone());
                    u
                }
            };
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = up.send_to(&packet, target).await;
            });
        }
    });
    addr
}

/// A provider that enrolls, publishes `deck` and answers OPTIONS, but never
/// answers an INVITE (silent). Listens on `port`.
pub async fn silent_provider(net: &network::Network, name: &str, port: u16, deck: &str) {
    let reg = net.register(name, port).await;
    let dir = net.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    let me = provider_sdk::central::enroll(
        &net.base,
        &net.root_pem,
        &reg.token,
        &dir.join("key.pem"),
        &dir.join("cert.pem"),
        name,
    )
    .await
    .expect("enroll the silent provider");
    let client = me.client_builder(&net.base).build().expect("client");
    client
        .publish_rates(provider_sdk::central::RateUpload::Csv(deck))
        .await
        .expect("publish");
    let socket = tokio::net::UdpSocket::bind(("127.0.0.1", port))
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !text.starts_with("OPTIONS ") {
                continue; // silent to everything else
            }
            let copied: String = text
                .split("\r\n")
                .skip(1)
                .take_while(|l| !l.is_empty())
                .filter(|l| {
                    let name = l
                        .split(':')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_ascii_lowercase();
                    matches!(name.as_str(), "via" | "from" | "to" | "call-id" | "cseq")
                })
                .map(|l| format!("{l}\r\n"))
                .collect();
            let answer = format!("SIP/2.0 200 OK\r\n{copied}Content-Length: 0\r\n\r\n");
            let _ = socket.send_to(answer.as_bytes(), peer).await;
        }
    });
}
