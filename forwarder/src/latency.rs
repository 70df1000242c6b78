//! Provider latency: background OPTIONS probes of every provider target
//! the forwarder has seen in route answers (RTT EWMA, deviation, up/down
//! with hysteresis), and on-demand parallel probes of a call's candidates
//! under a short deadline. [`Latency`] blends both for the selection.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use provider_sdk::select::{Candidate, Latency};
use provider_sdk::sip::prober::{ProbeConfig, Prober};
use provider_sdk::sip::SipTarget;
use tokio_util::sync::CancellationToken;

/// Background probing and on-demand probes from one socket.
pub struct Latencies {
    prober: Arc<Prober>,
    known: Mutex<HashSet<SipTarget>>,
    deadline: Duration,
    /// Whether targets are probed in the background.
    background: bool,
    stop: CancellationToken,
}

impl Latencies {
    /// Binds the probing socket and starts probing known targets every
    /// `interval` (targets are added as route answers name them; a zero
    /// interval probes nothing in the background).
    pub async fn start(
        bind: SocketAddr,
        deadline: Duration,
        interval: Duration,
    ) -> std::io::Result<Arc<Latencies>> {
        let prober = Prober::bind(
            bind,
            ProbeConfig {
                timeout: deadline.max(Duration::from_millis(200)) * 4,
                ..ProbeConfig::default()
            },
        )
        .await?;
        let me = Arc::new(Latencies {
            prober,
            known: Mutex::new(HashSet::new()),
            deadline,
            background: !interval.is_zero(),
            stop: CancellationToken::new(),
        });
        if interval.is_zero() {
            return Ok(me);
        }
        let background = me.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = background.stop.cancelled() => return,
                    _ = tick.tick() => {
                        let targets: Vec<SipTarget> = background.known.lock().iter().cloned().collect();
                        if !targets.is_empty() {
                            let limit = background.prober_timeout();
                            background.prober.probe_all(&targets, limit).await;
                        }
                    }
                }
            }
        });
        Ok(me)
    }

    fn prober_timeout(&self) -> Duration {
        self.deadline.max(Duration::from_millis(200)) * 4
    }

    /// Probes the candidates now (in parallel, within the deadline) and
    /// returns what is known of each: this probe and the background health.
    /// With a zero deadline no probe is sent: only the background
    /// statistics count (less post-dial delay, less current latency).
    pub async fn measure(&self, candidates: &[Candidate]) -> Vec<Latency> {
        let targets: Vec<SipTarget> = candidates.iter().map(|c| c.target.clone()).collect();
        if self.background {
            self.known.lock().extend(targets.iter().cloned());
        }
        if self.deadline.is_zero() {
            return targets
                .iter()
                .map(|t| Latency {
                    health: self.prober.health(t),
                    probe: None,
                })
                .collect();
        }
        let results = self.prober.probe_all(&targets, self.deadline).await;
        results
            .into_iter()
            .map(|(target, probe)| Latency {
                health: self.prober.health(&target),
                probe: Some(probe),
            })
            .collect()
    }

    /// The background statistics of a target, if it was ever probed.
    pub fn health(&self, target: &SipTarget) -> Option<provider_sdk::sip::prober::Health> {
        self.prober.health(target)
    }

    pub fn stop(&self) {
        self.stop.cancel();
        self.prober.stop();
    }
}
