//! OPTIONS probing of targets: how far away they are and whether they are up.
//!
//! [`Health`] is the pure bookkeeping: a smoothed round-trip time and its
//! deviation (the RFC 6298 estimator, alpha 1/8 and beta 1/4), counts of
//! answers and timeouts, and an up/down state that changes only after
//! [`ProbeConfig::down_after`] consecutive failures or
//! [`ProbeConfig::up_after`] consecutive answers. Any final response counts as
//! an answer: a 404 or 405 to OPTIONS proves the peer is alive.
//!
//! [`Prober`] sends the probes (UDP, retransmitted like a non-INVITE client
//! transaction: 500 ms doubling up to 4 s) and keeps one [`Health`] per
//! target. Use [`Prober::probe_all`] for on-demand parallel probes of a
//! candidate set under one deadline and [`Prober::run_background`] for
//! periodic probes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::call::{SipTarget, Transport};
use super::validate::{validate, Policy, Verdict};
use super::wire::MAX_MESSAGE_SIZE;

/// How probes are run and judged.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// One probe gives up after this long.
    pub timeout: Duration,
    /// Consecutive failures before an up (or unknown) target is down.
    pub down_after: u32,
    /// Consecutive answers before a down target is up again.
    pub up_after: u32,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            timeout: Duration::from_secs(2),
            down_after: 3,
            up_after: 2,
        }
    }
}

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    /// A final response arrived (any status).
    Answered { status: u16, rtt: Duration },
    /// No final response in time.
    Timeout,
    /// The probe could not be sent (bad address, unsupported transport, ...).
    Failed { detail: String },
}

/// Reachability as judged with hysteresis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not enough evidence yet.
    Unknown,
    Up,
    Down,
}

/// Per-target statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub state: State,
    /// Smoothed round-trip time (None until the first answer).
    pub srtt: Option<Duration>,
    /// Mean deviation of the round-trip time.
    pub rttvar: Duration,
    pub answers: u64,
    pub timeouts: u64,
    pub failures: u64,
    consecutive_ok: u32,
    consecutive_bad: u32,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: State::Unknown,
            srtt: None,
            rttvar: Duration::ZERO,
            answers: 0,
            timeouts: 0,
            failures: 0,
            consecutive_ok: 0,
            consecutive_bad: 0,
        }
    }
}

impl Health {
    /// Folds one probe result in.
    pub fn record(&mut self, result: &ProbeResult, config: &ProbeConfig) {
        match result {
            ProbeResult::Answered { rtt, .. } => {
                self.answers += 1;
                match self.srtt {
                    None => {
                        self.srtt = Some(*rtt);
                        self.rttvar = *rtt / 2;
                    }
                    Some(srtt) => {
                        let diff = srtt.abs_diff(*rtt);
                        self.rttvar = (self.rttvar * 3 + diff) / 4;
                        self.srtt = Some((srtt * 7 + *rtt) / 8);
                    }
                }
                self.consecutive_ok += 1;
                self.consecutive_bad = 0;
                let needed = if self.state == State::Down {
                    config.up_after
                } else {
                    1
                };
                if self.consecutive_ok >= needed.max(1) {
                    self.state = State::Up;
                }
            }
            ProbeResult::Timeout | ProbeResult::Failed { .. } => {
                if matches!(result, ProbeResult::Timeout) {
                    self.timeouts += 1;
                } else {
                    self.failures += 1;
                }
                self.consecutive_bad += 1;
                self.consecutive_ok = 0;
                if self.consecutive_bad >= config.down_after.max(1) {
                    self.state = State::Down;
                }
            }
        }
    }
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<u16>>>>;

/// Sends OPTIONS probes from one UDP socket and keeps per-target health.
pub struct Prober {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    pending: Pending,
    health: Mutex<HashMap<SipTarget, Health>>,
    config: ProbeConfig,
    cancel: CancellationToken,
}

impl Prober {
    /// Binds the probing socket (e.g. `127.0.0.1:0`) and starts its receiver.
    pub async fn bind(local: SocketAddr, config: ProbeConfig) -> std::io::Result<Arc<Prober>> {
        let socket = Arc::new(UdpSocket::bind(local).await?);
        let prober = Arc::new(Prober {
            local: socket.local_addr()?,
            socket: socket.clone(),
            pending: Arc::new(Mutex::new(HashMap::new())),
            health: Mutex::new(HashMap::new()),
            config,
            cancel: CancellationToken::new(),
        });
        tokio::spawn(receive(
            socket,
            prober.pending.clone(),
            prober.cancel.clone(),
        ));
        Ok(prober)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The current statistics of a target (None before its first probe).
    pub fn health(&self, target: &SipTarget) -> Option<Health> {
        self.health.lock().get(target).cloned()
    }

    /// Probes one target, records the result and returns it.
    pub async fn probe(&self, target: &SipTarget) -> ProbeResult {
        let result = self.send_probe(target).await;
        self.health
            .lock()
            .entry(target.clone())
            .or_default()
            .record(&result, &self.config);
        result
    }

    /// Probes all targets in parallel; each result arrives within `deadline`
    /// (or the probe timeout, whichever is shorter).
    pub async fn probe_all(
        &self,
        targets: &[SipTarget],
        deadline: Duration,
    ) -> Vec<(SipTarget, ProbeResult)> {
        let probes = targets.iter().map(|t| async move {
            let result = match tokio::time::timeout(deadline, self.probe(t)).await {
                Ok(r) => r,
                Err(_) => {
                    let r = ProbeResult::Timeout;
                    self.health
                        .lock()
                        .entry(t.clone())
                        .or_default()
                        .record(&r, &self.config);
                    r
                }
            };
            (t.clone(), result)
        });
        futures::future::join_all(probes).await
    }

    /// Probes `targets` every `interval` until [`Prober::stop`] is called.
    pub fn run_background(self: &Arc<Self>, targets: Vec<SipTarget>, interval: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = me.cancel.cancelled() => return,
                    _ = tick.tick() => { me.probe_all(&targets, me.config.timeout).await; }
                }
            }
        });
    }

    /// Stops background probing and the receiver.
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    async fn send_probe(&self, target: &SipTarget) -> ProbeResult {
        if target.transport() != Transport::Udp {
            return ProbeResult::Failed {
                detail: format!("probing over {} is not supported", target.transport()),
            };
        }
        let addr = match target.resolve().await {
            Ok(a) => a,
            Err(e) => {
                return ProbeResult::Failed {
                    detail: e.to_string(),
                }
            }
        };
        let branch = format!("z9hG4bK{:016x}", rand::random::<u64>());
        let request = options_request(target, self.local, &branch);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(branch.clone(), tx);
        let _cleanup = RemoveOnDrop {
            pending: &self.pending,
            branch: branch.clone(),
        };
        let started = Instant::now();
        let deadline = started + self.config.timeout;
        let mut rx = rx;
        // Timer E: retransmit at 500 ms, doubling, capped at T2 = 4 s.
        let mut interval = Duration::from_millis(500);
        loop {
            if let Err(e) = self.socket.send_to(&request, addr).await {
                return ProbeResult::Failed {
                    detail: e.to_string(),
                };
            }
            let wait_until = (Instant::now() + interval).min(deadline);
            match tokio::time::timeout_at(wait_until.into(), &mut rx).await {
                Ok(Ok(status)) => {
                    return ProbeResult::Answered {
                        status,
                        rtt: started.elapsed(),
                    }
                }
                Ok(Err(_)) => {
                    return ProbeResult::Failed {
                        detail: "prober stopped".into(),
                    }
                }
                Err(_) if Instant::now() >= deadline => return ProbeResult::Timeout,
                Err(_) => interval = (interval * 2).min(Duration::from_secs(4)),
            }
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

struct RemoveOnDrop<'a> {
    pending: &'a Pending,
    branch: String,
}

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.branch);
    }
}

fn options_request(target: &SipTarget, local: SocketAddr, branch: &str) -> Vec<u8> {
    let call_id = format!("{:032x}@probe", rand::random::<u128>());
    let tag = format!("{:016x}", rand::random::<u64>());
    format!(
        "OPTIONS {uri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{local}>;tag={tag}\r\n\
         To: <{uri}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Accept: application/sdp\r\n\
         Content-Length: 0\r\n\r\n",
        uri = target.uri(),
    )
    .into_bytes()
}

/// The `branch` parameter of the (single) Via of a response.
fn via_branch(via: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(via);
    text.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("branch")
            .then(|| v.trim().to_owned())
    })
}

async fn receive(socket: Arc<UdpSocket>, pending: Pending, cancel: CancellationToken) {
    let mut buf = vec![0u8; MAX_MESSAGE_SIZE + 1];
    let policy = Policy::default();
    loop {
        let received = tokio::select! {
            _ = cancel.cancelled() => return,
            r = socket.recv_from(&mut buf) => r,
        };
        let Ok((len, _peer)) = received else { continue };
        if let Verdict::Response(resp) = validate(&buf[..len], &policy) {
            if resp.status() < 200 {
                continue; // provisional: keep waiting for the final answer
            }
            if let Some(branch) = resp.header("Via").and_then(via_branch) {
                if let Some(tx) = pending.lock().remove(&branch) {
                    let _ = tx.send(resp.status());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(ms: u64) -> ProbeResult {
        ProbeResult::Answered {
            status: 200,
            rtt: Duration::from_millis(ms),
        }
    }

    #[test]
    fn ewma_follows_rfc6298() {
        let cfg = ProbeConfig::default();
        let mut h = Health::default();
        h.record(&answered(80), &cfg);
        assert_eq!(h.srtt, Some(Duration::from_millis(80)));
        assert_eq!(h.rttvar, Duration::from_millis(40));
        h.record(&answered(160), &cfg);
        assert_eq!(h.srtt, Some(Duration::from_millis(90)));
        assert_eq!(h.rttvar, Duration::from_millis(50));
        assert_eq!(h.state, State::Up);
    }

    #[test]
    fn hysteresis() {
        let cfg = ProbeConfig::default();
        let mut h = Health::default();
        h.record(&answered(10), &cfg);
        h.record(&ProbeResult::Timeout, &cfg);
        h.record(&ProbeResult::Timeout, &cfg);
        assert_eq!(h.state, State::Up, "two failures are not enough");
        h.record(&ProbeResult::Failed { detail: "x".into() }, &cfg);
        assert_eq!(h.state, State::Down);
        h.record(&answered(10), &cfg);
        assert_eq!(
            h.state,
            State::Down,
            "one answer is not enough to come back"
        );
        h.record(&answered(10), &cfg);
        assert_eq!(h.state, State::Up);
        assert_eq!((h.answers, h.timeouts, h.failures), (3, 2, 1));
    }

    #[test]
    fn branch_is_read_from_via() {
        assert_eq!(
            via_branch(b"SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bKab;rport=5").as_deref(),
            Some("z9hG4bKab")
        );
        assert_eq!(via_branch(b"SIP/2.0/UDP h"), None);
    }
}
