//! The RTP relay: calls, legs and their media streams.
//!
//! A [`MediaRelay`] owns the port pool and the forwarding threads. Each call
//! gets a [`CallMedia`] with two legs, [`Leg::A`] (the caller's side) and
//! [`Leg::B`] (the callee's side). For every `m=` line each leg has its own
//! port pair; what arrives on leg A's ports is sent out of leg B's ports to
//! endpoint B, and the other way round.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::ports::{BoundPair, PortAllocator};
use super::rtp_stats::{RtpStats, RtpStatsSnapshot};
use super::sdp_rewrite::{self, SdpMedia};
use super::worker::{self, Command, SocketEntry, SocketKind};
use super::MediaError;

/// How the relay is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// Address the media sockets bind to.
    pub bind: IpAddr,
    /// Address written into rewritten SDP (the public address; often `bind`).
    pub advertise: IpAddr,
    /// Ports for RTP (even) and RTCP (odd, RTP + 1).
    pub ports: RangeInclusive<u16>,
    /// Forwarding threads; 0 means one per available core.
    pub workers: usize,
    /// A call with no RTP on any leg for this long reports a media timeout.
    pub media_timeout: Duration,
}

impl RelayConfig {
    /// A relay on 127.0.0.1 (tests and the local demo).
    pub fn loopback(ports: RangeInclusive<u16>) -> RelayConfig {
        RelayConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            advertise: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports,
            workers: 1,
            media_timeout: Duration::from_secs(30),
        }
    }
}

/// One side of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// The caller's side (where the first offer usually comes from).
    A,
    /// The callee's side.
    B,
}

impl Leg {
    /// The other side.
    pub fn other(self) -> Leg {
        match self {
            Leg::A => Leg::B,
            Leg::B => Leg::A,
        }
    }

    fn index(self) -> usize {
        match self {
            Leg::A => 0,
            Leg::B => 1,
        }
    }
}

/// Counters of one stream beside the RTP statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketCounters {
    /// Packets sent on to the other endpoint.
    pub forwarded: u64,
    /// RTCP packets received (on the RTCP port or multiplexed).
    pub rtcp: u64,
    /// Non-RTP datagrams (STUN, DTLS, ZRTP) forwarded untouched.
    pub non_rtp: u64,
    /// Truncated RTP/RTCP or empty datagrams, dropped.
    pub malformed: u64,
    /// Packets from a source other than the latched one, dropped.
    pub foreign_source: u64,
    /// Packets with no known destination yet, or refused by the kernel, dropped.
    pub undeliverable: u64,
}

/// Statistics of what one leg's endpoint sent on one `m=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStats {
    /// RTP statistics (RFC 3550).
    pub rtp: RtpStatsSnapshot,
    pub counters: PacketCounters,
    /// The endpoint's real RTP source, learnt from its first packet.
    pub latched: Option<SocketAddr>,
    /// Our local RTP port for this stream on this leg.
    pub local_port: u16,
    /// When the last RTP packet arrived.
    pub last_packet: Option<Instant>,
}

/// Statistics of one leg: one entry per `m=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegStats {
    pub streams: Vec<StreamStats>,
}

/// Reported when a call's media stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaTimeout {
    /// How long no RTP arrived on any leg.
    pub idle: Duration,
}

/// Shared between the control side and the forwarding thread.
#[derive(Debug, Default)]
pub(crate) struct StreamShared {
    pub(crate) state: Mutex<StreamState>,
}

#[derive(Debug, Default)]
pub(crate) struct StreamState {
    /// Where the endpoint said (in its SDP) it receives RTP / RTCP.
    pub(crate) sdp_rtp: Option<SocketAddr>,
    pub(crate) sdp_rtcp: Option<SocketAddr>,
    pub(crate) rtcp_mux: bool,
    /// Where its packets really come from.
    pub(crate) latched_rtp: Option<SocketAddr>,
    pub(crate) latched_rtcp: Option<SocketAddr>,
    pub(crate) stats: RtpStats,
    pub(crate) counters: PacketCounters,
}

#[derive(Debug)]
pub(crate) struct CallShared {
    /// Arrival of the last RTP packet on any leg (ns since the relay's epoch).
    pub(crate) last_rtp_ns: AtomicU64,
}

/// One `m=` line: a port pair on each leg.
struct StreamPair {
    ports: [u16; 2],
    state: [Arc<StreamShared>; 2],
}

struct Worker {
    commands: Sender<Command>,
    wake: Arc<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

struct RelayInner {
    config: RelayConfig,
    ports: Arc<PortAllocator>,
    workers: Vec<Worker>,
    next_worker: AtomicUsize,
    next_call: AtomicU64,
    epoch: Instant,
}

impl Drop for RelayInner {
    fn drop(&mut self) {
        for w in &mut self.workers {
            let _ = w.commands.send(Command::Shutdown);
            worker::wake(&w.wake);
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// The media relay. Cheap to clone; the threads stop when the relay and
/// every call made from it are dropped.
#[derive(Clone)]
pub struct MediaRelay {
    inner: Arc<RelayInner>,
}

impl MediaRelay {
    /// Validates the configuration and starts the forwarding threads.
    pub fn new(config: RelayConfig) -> Result<MediaRelay, MediaError> {
        if config.bind.is_ipv4() != config.advertise.is_ipv4() {
            return Err(MediaError::Config(format!(
                "bind address {} and advertised address {} are of different IP families",
                config.bind, config.advertise
            )));
        }
        if config.media_timeout.is_zero() {
            return Err(MediaError::Config("media timeout must be positive".into()));
        }
        let ports = PortAllocator::new(config.ports.clone())?;
        let count = match config.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let epoch = Instant::now();
        let mut workers = Vec::with_capacity(count);
        for i in 0..count {
            let (tx, rx) = mpsc::channel();
            let wake = Arc::new(worker::eventfd().map_err(|e| MediaError::Io {
                what: "eventfd",
                source: e,
            })?);
            let thread_wake = Arc::clone(&wake);
            let thread = std::thread::Builder::new()
                .name(format!("media-relay-{i}"))
                .spawn(move || worker::run(rx, thread_wake, epoch))
                .map_err(|e| MediaError::Io {
                    what: "spawning a relay thread",
                    source: e,
                })?;
            workers.push(Worker {
                commands: tx,
                wake,
                thread: Some(thread),
            });
        }
        Ok(MediaRelay {
            inner: Arc::new(RelayInner {
                config,
                ports,
                workers,
                next_worker: AtomicUsize::new(0),
                next_call: AtomicU64::new(0),
                epoch,
            }),
        })
    }

    /// The configuration the relay runs with.
    pub fn config(&self) -> &RelayConfig {
        &self.inner.config
    }

    /// How many port pairs the range holds (each call leg and `m=` line takes one).
    pub fn port_pairs(&self) -> usize {
        self.inner.ports.capacity()
    }

    /// Creates a call with one stream (a port pair on each leg) ready for
    /// the usual single audio `m=` line. More streams are added when an SDP
    /// with more `m=` lines is rewritten.
    pub fn allocate_call(&self) -> Result<CallMedia, MediaError> {
        let inner = &self.inner;
        let call = CallMedia {
            relay: self.clone(),
            id: inner.next_call.fetch_add(1, Ordering::Relaxed),
            worker: inner.next_worker.fetch_add(1, Ordering::Relaxed) % inner.workers.len(),
            shared: Arc::new(CallShared {
                last_rtp_ns: AtomicU64::new(0),
            }),
            created_ns: inner.epoch.elapsed().as_nanos() as u64,
            streams: Mutex::new(Vec::new()),
        };
        call.ensure_streams(&mut call.streams.lock(), 1)?;
        Ok(call)
    }

    fn now_ns(&self) -> u64 {
        self.inner.epoch.elapsed().as_nanos() as u64
    }
}

/// The media of one call. Dropping it closes its sockets and returns the
/// ports to the pool (as soon as the forwarding thread has let go of them).
pub struct CallMedia {
    relay: MediaRelay,
    id: u64,
    worker: usize,
    shared: Arc<CallShared>,
    created_ns: u64,
    streams: Mutex<Vec<StreamPair>>,
}

impl Drop for CallMedia {
    fn drop(&mut self) {
        if let Some(w) = self.relay.inner.workers.get(self.worker) {
            let _ = w.commands.send(Command::Remove { call: self.id });
            worker::wake(&w.wake);
        }
    }
}

impl CallMedia {
    /// Rewrites an SDP offer received from `from` so it can be sent to the
    /// other leg: media addresses and ports become the relay's ports on the
    /// other leg; everything else stays byte-for-byte. Also learns where
    /// `from`'s endpoint receives media. Works for re-offers too (re-INVITE,
    /// UPDATE); the ports of each `m=` line stay the same for the whole call.
    pub fn rewrite_offer(&self, from: Leg, sdp: &[u8]) -> Result<Vec<u8>, MediaError> {
        self.rewrite(from, sdp, None)
    }

    /// Rewrites the SDP answer received from `from` (see [`Self::rewrite_offer`]).
    /// An answer may not have more `m=` lines than the offer had.
    pub fn rewrite_answer(&self, from: Leg, sdp: &[u8]) -> Result<Vec<u8>, MediaError> {
        let offered = self.streams.lock().len();
        self.rewrite(from, sdp, Some(offered))
    }

    fn rewrite(&self, from: Leg, sdp: &[u8], limit: Option<usize>) -> Result<Vec<u8>, MediaError> {
        let media = SdpMedia::parse(sdp)?;
        if let Some(offered) = limit {
            if media.streams.len() > offered {
                return Err(MediaError::AnswerHasMoreStreams {
                    offered,
                    answered: media.streams.len(),
                });
            }
        }
        let mut streams = self.streams.lock();
        self.ensure_streams(&mut streams, media.streams.len())?;
        let to = from.other().index();
        let ports: Vec<Option<u16>> = media
            .streams
            .iter()
            .zip(streams.iter())
            .map(|(m, pair)| (m.port != 0).then_some(pair.ports[to]))
            .collect();
        let rewritten = sdp_rewrite::rewrite(sdp, self.relay.inner.config.advertise, &ports)?;
        for (m, pair) in media.streams.iter().zip(streams.iter()) {
            let mut st = pair.state[from.index()].state.lock();
            // A new address in the SDP (re-INVITE after a move) restarts latching.
            if st.sdp_rtp != m.rtp {
                st.latched_rtp = None;
                st.latched_rtcp = None;
            }
            st.sdp_rtp = m.rtp;
            st.sdp_rtcp = m.rtcp;
            st.rtcp_mux = m.rtcp_mux;
            // Both endpoints use the payload numbers negotiated here.
            for leg in [0, 1] {
                let mut target = if leg == from.index() {
                    None
                } else {
                    Some(pair.state[leg].state.lock())
                };
                let stats = match &mut target {
                    Some(t) => &mut t.stats,
                    None => &mut st.stats,
                };
                for &(pt, rate) in &m.clock_rates {
                    stats.clock.set(pt, rate, m.telephone_events.contains(&pt));
                }
            }
        }
        Ok(rewritten)
    }

    /// Adds port pairs until there are `count` streams.
    fn ensure_streams(
        &self,
        streams: &mut Vec<StreamPair>,
        count: usize,
    ) -> Result<(), MediaError> {
        let inner = &self.relay.inner;
        while streams.len() < count {
            let a = Arc::new(inner.ports.allocate(inner.config.bind)?);
            let b = Arc::new(inner.ports.allocate(inner.config.bind)?);
            let state = [
                Arc::new(StreamShared::default()),
                Arc::new(StreamShared::default()),
            ];
            let pairs = [Arc::clone(&a), Arc::clone(&b)];
            let mut sockets = Vec::with_capacity(4);
            for own in [0usize, 1] {
                for kind in [SocketKind::Rtp, SocketKind::Rtcp] {
                    sockets.push(SocketEntry {
                        kind,
                        own: Arc::clone(&pairs[own]),
                        own_state: Arc::clone(&state[own]),
                        peer: Arc::clone(&pairs[1 - own]),
                        peer_state: Arc::clone(&state[1 - own]),
                        call: Arc::clone(&self.shared),
                    });
                }
            }
            let w = &inner.workers[self.worker];
            w.commands
                .send(Command::Add {
                    call: self.id,
                    sockets,
                })
                .map_err(|_| MediaError::RelayStopped)?;
            worker::wake(&w.wake);
            streams.push(StreamPair {
                ports: [a.port, b.port],
                state,
            });
        }
        Ok(())
    }

    /// The relay's RTP port for `leg` on the `m=` line `stream`.
    pub fn local_port(&self, leg: Leg, stream: usize) -> Option<u16> {
        self.streams
            .lock()
            .get(stream)
            .map(|p| p.ports[leg.index()])
    }

    /// The relay's address that `leg`'s endpoint sends RTP to for `stream`.
    pub fn local_addr(&self, leg: Leg, stream: usize) -> Option<SocketAddr> {
        self.local_port(leg, stream)
            .map(|p| SocketAddr::new(self.relay.inner.config.advertise, p))
    }

    /// Statistics of what `leg`'s endpoint sent, per `m=` line.
    pub fn stats(&self, leg: Leg) -> LegStats {
        let streams = self.streams.lock();
        LegStats {
            streams: streams
                .iter()
                .map(|pair| {
                    let st = pair.state[leg.index()].state.lock();
                    StreamStats {
                        rtp: st.stats.snapshot(),
                        counters: st.counters,
                        latched: st.latched_rtp,
                        local_port: pair.ports[leg.index()],
                        last_packet: st
                            .stats
                            .snapshot()
                            .last_arrival_ns
                            .map(|ns| self.relay.inner.epoch + Duration::from_nanos(ns)),
                    }
                })
                .collect(),
        }
    }

    /// Resolves once no RTP has arrived on any leg for the configured media
    /// timeout, counted from the last packet or from when this future was
    /// created, whichever is later. Drop the future while a call is on hold
    /// and create a new one on resume. Needs a tokio runtime (timer).
    pub fn timeout(&self) -> impl Future<Output = MediaTimeout> + Send + 'static {
        let relay = self.relay.clone();
        let shared = Arc::clone(&self.shared);
        let start = relay.now_ns().max(self.created_ns);
        let limit = relay.inner.config.media_timeout;
        async move {
            loop {
                let last = shared.last_rtp_ns.load(Ordering::Relaxed).max(start);
                let deadline = relay.inner.epoch + Duration::from_nanos(last) + limit;
                let now = Instant::now();
                if now >= deadline {
                    return MediaTimeout {
                        idle: now.saturating_duration_since(
                            relay.inner.epoch + Duration::from_nanos(last),
                        ),
                    };
                }
                tokio::time::sleep_until(deadline.into()).await;
            }
        }
    }
}

impl std::fmt::Debug for CallMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ports: Vec<[u16; 2]> = self.streams.lock().iter().map(|p| p.ports).collect();
        f.debug_struct("CallMedia")
            .field("id", &self.id)
            .field("ports", &ports)
            .finish()
    }
}

impl std::fmt::Debug for MediaRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaRelay")
            .field("config", &self.inner.config)
            .finish()
    }
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<MediaRelay>();
    is::<CallMedia>();
    let _ = std::mem::size_of::<BoundPair>();
}
