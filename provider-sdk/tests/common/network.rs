//! A whole network on loopback for end-to-end tests: central (in this
//! process, on a fresh SQLite database and certificate authority), provider
//! gateways and the dialer as real processes (this crate's binaries), SIPp
//! as the phone network behind the gateways.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::{Certificate, Client, Identity};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a gateway may take to enroll, publish and listen.
const START_LIMIT: Duration = Duration::from_secs(60);
/// How long one dial may take.
const DIAL_LIMIT: Duration = Duration::from_secs(90);

pub struct Network {
    pub dir: tempfile::TempDir,
    running: Option<central::app::Running>,
    pub base: String,
    pub root_pem: String,
    operator: Client,
}

fn client(root_pem: &str, identity: Option<(&str, &str)>) -> Client {
    let mut b = Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(Certificate::from_pem(root_pem.as_bytes()).expect("root pem"))
        .use_rustls_tls()
        .timeout(Duration::from_secs(30));
    if let Some((cert, key)) = identity {
        let pem = format!("{cert}\n{key}");
        b = b.identity(Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    b.build().expect("client")
}

/// A registered participant: its id and one-time enrollment token.
pub struct Registered {
    pub id: u64,
    pub token: String,
}

impl Network {
    pub async fn start() -> Network {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("central");
        let init_dir = d.clone();
        tokio::task::spawn_blocking(move || {
            central::app::init(&init_dir, &central::app::InitOptions::default())
        })
        .await
        .expect("join")
        .expect("central init");
        let mut cfg = central::config::Config::load(&d, None).expect("central config");
        cfg.listen = "127.0.0.1:0".parse().expect("addr");
        let running = central::app::start(cfg).await.expect("central start");
        let base = format!("https://127.0.0.1:{}", running.addr.port());
        let root_pem = std::fs::read_to_string(d.join(central::app::ROOT_CERT)).expect("root");
        let cert = std::fs::read_to_string(d.join(central::app::OPERATOR_CERT)).expect("op cert");
        let key = std::fs::read_to_string(d.join(central::app::OPERATOR_KEY)).expect("op key");
        let operator = client(&root_pem, Some((&cert, &key)));
        std::fs::write(dir.path().join("ca.crt"), &root_pem).expect("write root");
        Network {
            dir,
            running: Some(running),
            base,
            root_pem,
            operator,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Registers a provider (the operator's job) reachable at `sip_port`.
    pub async fn register(&self, name: &str, sip_port: u16) -> Registered {
        let res = self
            .operator
            .post(format!("{}/v1/providers", self.base))
            .json(&json!({
                "name": name,
                "sip_addresses": [{"address": format!("127.0.0.1:{sip_port}"), "transport": "udp"}],
                "currency": "EUR",
                "contact": format!("noc@{name}.example"),
            }))
            .send()
            .await
            .expect("register");
        let status = res.status();
        let body: Value = res.json().await.expect("register answer");
        assert_eq!(status, 201, "register {name}: {body}");
        Registered {
            id: body["id"].as_u64().expect("id"),
            token: body["enrollment_token"].as_str().expect("token").to_owned(),
        }
    }

    /// Suspends a provider (it leaves route answers at once).
    pub async fn suspend(&self, id: u64) {
        let res = self
            .operator
            .post(format!("{}/v1/providers/{id}/suspend", self.base))
            .send()
            .await
            .expect("suspend");
        assert!(res.status().is_success(), "suspend {id}: {}", res.status());
    }

    /// Route answers for `number` (anyone may ask).
    pub async fn routes(&self, number: &str) -> Value {
        let res = client(&self.root_pem, None)
            .get(format!("{}/v1/routes", self.base))
            .query(&[("number", number), ("currency", "EUR")])
            .send()
            .await
            .expect("routes");
        assert_eq!(res.status(), 200);
        res.json().await.expect("routes json")
    }

    /// Waits until central's answer for `number` names exactly `providers`.
    pub async fn wait_routes(&self, number: &str, providers: &[&str]) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.routes(number).await;
            let mut names: Vec<String> = v["routes"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r["provider"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            names.sort();
            let mut want: Vec<String> = providers.iter().map(|s| s.to_string()).collect();
            want.sort();
            if names == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "routes for {number}: {v}, wanted {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The operator's settlement report for the whole of today and tomorrow.
    pub async fn settlements(&self) -> Value {
        let from = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
        let to = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
        let res = self
            .operator
            .get(format!("{}/v1/settlements", self.base))
            .query(&[("from", from.as_str()), ("to", to.as_str())])
            .send()
            .await
            .expect("settlements");
        let status = res.status();
        let body: Value = res.json().await.expect("settlements json");
        assert_eq!(status, 200, "settlements: {body}");
        body
    }

    /// Waits until the settlement report has a row for `payer` → `provider`
    /// with `tickets` tickets, and returns that row.
    pub async fn wait_settlement(&self, payer: u64, provider: u64, tickets: u64) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.settlements().await;
            let row = v["settlements"].as_array().and_then(|rows| {
                rows.iter()
                    .find(|r| {
                        r["payer_id"].as_u64() == Some(payer)
                            && r["provider_id"].as_u64() == Some(provider)
                    })
                    .cloned()
            });
            if let Some(row) = &row {
                if row["tickets"].as_u64() == Some(tickets) {
                    return row.clone();
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no settlement {payer} -> {provider} with {tickets} tickets: {v}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Writes a gateway's deck and configuration; returns the config path.
    pub fn gateway_config(
        &self,
        name: &str,
        sip_port: u16,
        termination: u16,
        deck: &str,
    ) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).expect("gateway dir");
        std::fs::write(dir.join("rates.csv"), deck).expect("deck");
        let media = super::free_port_pair_base();
        let config = format!(
            r#"
[central]
central_url = "{base}"
root_certificate = "../ca.crt"
key = "{name}.key"
certificate = "{name}.crt"
name = "{name}"

[sip]
listen = "127.0.0.1:{sip_port}"
termination = "sip:{{number}}@127.0.0.1:{termination}"
setup_timeout_secs = 5
answer_timeout_secs = 20

[media]
first_port = {media}
last_port = {last}
timeout_secs = 10

[rates]
deck = "rates.csv"
currency = "EUR"

[ledger]
spool = "spool"
"#,
            base = self.base,
            last = media + 19,
        );
        let path = dir.join("gateway.toml");
        std::fs::write(&path, config).expect("gateway config");
        path
    }

    /// Writes the dialer's configuration; returns its path.
    pub fn dialer_config(&self, name: &str, from: &str) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).expect("dialer dir");
        let config = format!(
            r#"
[central]
central_url = "{base}"
root_certificate = "../ca.crt"
key = "{name}.key"
certificate = "{name}.crt"
name = "{name}"

[call]
from = "{from}"
currency = "EUR"
probe_deadline_ms = 500
setup_timeout_secs = 3
answer_timeout_secs = 15
"#,
            base = self.base,
        );
        let path = dir.join("dial.toml");
        std::fs::write(&path, config).expect("dialer config");
        path
    }

    /// Stops central (its port then refuses connections).
    pub async fn stop_central(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    pub async fn shutdown(mut self) {
        self.stop_central().await;
    }
}

/// A process of this crate, killed when dropped; its stderr goes to a file.
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops it with SIGTERM and waits (bounded).
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: plain kill(2) on a child we spawned.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Starts a gateway and waits for it to say it listens.
pub async fn start_gateway(config: &Path, token: Option<&str>) -> Process {
    let log = config.with_extension("log");
    let err = std::fs::File::create(&log).expect("log file");
    let Some(bin) = option_env!("CARGO_BIN_EXE_provider-gateway") else {
        panic!("no provider-gateway binary in this test crate: use start_gateway_in_process");
    };
    let mut cmd = Command::new(bin);
    cmd.arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err))
        .kill_on_drop(true);
    match token {
        Some(t) => cmd.env("PROVIDER_GATEWAY_ENROLLMENT_TOKEN", t),
        None => cmd.env_remove("PROVIDER_GATEWAY_ENROLLMENT_TOKEN"),
    };
    let mut child = cmd.spawn().expect("start provider-gateway");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(START_LIMIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("listening on udp") {
                return true;
            }
        }
        false
    })
    .await;
    let process = Process { child, log };
    if ready != Ok(true) {
        panic!(
            "provider-gateway ({}) did not start:\n{}",
            config.display(),
            process.log_text()
        );
    }
    // Keep reading stdout so the gateway never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    process
}

/// Starts a gateway in this process (for test crates without the binary).
pub async fn start_gateway_in_process(
    config: &Path,
    token: Option<&str>,
) -> provider_sdk::gateway::Gateway {
    let mut cfg = provider_sdk::gateway::GatewayConfig::load(config).expect("gateway config");
    if let Some(t) = token {
        cfg.central.enrollment_token = Some(t.to_owned());
    }
    provider_sdk::gateway::Gateway::start(cfg)
        .await
        .expect("gateway start")
}

/// Runs `dial --json` and returns its exit code and report.
pub async fn dial(config: &Path, token: Option<&str>, args: &[&str]) -> (i32, Value, String) {
    let Some(bin) = option_env!("CARGO_BIN_EXE_dial") else {
        panic!("no dial binary in this test crate");
    };
    let mut cmd = Command::new(bin);
    cmd.arg("--config")
        .arg(config)
        .arg("--json")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(t) = token {
        cmd.env("DIALER_ENROLLMENT_TOKEN", t);
    }
    let out = tokio::time::timeout(DIAL_LIMIT, cmd.output())
        .await
        .expect("dial finished in time")
        .expect("run dial");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "dial printed no JSON report ({e}); status {:?}\nstdout: {}\nstderr: {stderr}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code().unwrap_or(-1), report, stderr)
}

/// A TCP relay to central that the test can cut and restore, standing for
/// the network between a gateway and central.
pub struct Cuttable {
    pub port: u16,
    target: std::net::SocketAddr,
    up: Option<tokio_util::sync::CancellationToken>,
}

impl Cuttable {
    pub async fn new(central_base: &str) -> Cuttable {
        let target: std::net::SocketAddr = central_base
            .trim_start_matches("https://")
            .parse()
            .expect("central address");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
            l.local_addr().expect("addr").port()
        };
        let mut c = Cuttable {
            port,
            target,
            up: None,
        };
        c.restore().await;
        c
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Refuses new connections and drops the open ones.
    pub fn cut(&mut self) {
        if let Some(up) = self.up.take() {
            up.cancel();
        }
    }

    pub async fn restore(&mut self) {
        self.cut();
        let token = tokio_util::sync::CancellationToken::new();
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let target = self.target;
        let stop = token.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((mut inbound, _)) = accepted else {
                    continue;
                };
                let stop = stop.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        self.up = Some(token);
    }
}
