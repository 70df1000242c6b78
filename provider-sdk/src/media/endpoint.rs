//! An RTP endpoint for a user agent: plays samples as G.711 RTP and records
//! what the peer sends, on one UDP socket.
//!
//! [`RtpEndpoint::start`] spawns two Tokio tasks sharing the socket:
//!
//! - the **player** sends 20 ms packets (160 samples) paced by a Tokio
//!   interval whose missed ticks are sent in a burst, so a stalled task
//!   catches up and the average rate stays 50 packets per second. SSRC,
//!   first sequence number and first timestamp are random (RFC 3550 §5.1);
//!   the first packet has the marker bit. When the samples run out it stops,
//!   loops or sends silence ([`AfterAudio`]).
//! - the **recorder** accepts RTP of the negotiated payload type, counts
//!   telephone events, comfort noise, RTCP (rtcp-mux), other payload types
//!   and malformed datagrams without recording them, and places audio by
//!   RTP timestamp relative to the first packet: gaps become silence,
//!   duplicates and late packets are dropped. A timestamp jump of more than
//!   [`MAX_TIMESTAMP_JUMP`] (or a new SSRC) is not believed: the stream is
//!   re-anchored with the silence that really elapsed between arrivals. The
//!   recording never grows past [`EndpointConfig::max_recording`].
//!
//! **Symmetric RTP**: the first RTP packet of a known payload type fixes the
//! peer's address ("latching"); from then on the player sends there, even if
//! the SDP named another address (a peer behind NAT), and datagrams from any
//! other source are dropped and counted. Receive statistics (loss, jitter)
//! are those of [`RtpStats`] over the latched source.
//!
//! The tasks stop when the [`CancellationToken`] given to `start` is
//! cancelled or when [`RtpEndpoint::stop`] is called; `stop` then returns the
//! recording and the statistics. Dropping the endpoint stops the tasks too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use webrtc_util::{Marshal, MarshalSize};

use super::g711::{Codec, COMFORT_NOISE_PT, SAMPLES_PER_PACKET, SAMPLE_RATE, TELEPHONE_EVENT_PT};
use super::rtp_stats::{RtpHeaderFields, RtpStats, RtpStatsSnapshot};
use super::ua_sdp::SdpAnswer;

/// The largest timestamp step between two packets of one SSRC that is
/// taken at its word (the rest is re-anchored on arrival time).
pub const MAX_TIMESTAMP_JUMP: Duration = Duration::from_secs(10);

const PACKET_INTERVAL: Duration = Duration::from_millis(20);

/// What the player does when it has sent every sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAudio {
    /// Stop sending (the recorder goes on until the endpoint is stopped).
    Stop,
    /// Start again from the first sample.
    Loop,
    /// Send silence until the endpoint is stopped.
    Silence,
}

/// How an endpoint sends and what it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Where to send until the peer's first packet shows its real address.
    pub remote: SocketAddr,
    /// The negotiated codec: sent, and the only payload type recorded.
    pub codec: Codec,
    /// The peer's `telephone-event` payload type (counted, not recorded).
    pub telephone_event: Option<u8>,
    /// What the player does after the last sample.
    pub after_audio: AfterAudio,
    /// The longest recording kept; later audio is dropped and counted.
    pub max_recording: Duration,
}

impl EndpointConfig {
    /// Sends to `remote` with `codec`, telephone events on payload type 101,
    /// stops after the audio, and records at most one hour.
    pub fn new(remote: SocketAddr, codec: Codec) -> EndpointConfig {
        EndpointConfig {
            remote,
            codec,
            telephone_event: Some(TELEPHONE_EVENT_PT),
            after_audio: AfterAudio::Stop,
            max_recording: Duration::from_secs(3600),
        }
    }

    /// The configuration an SDP answer calls for.
    pub fn from_answer(answer: &SdpAnswer) -> EndpointConfig {
        EndpointConfig {
            telephone_event: answer.telephone_event,
            ..EndpointConfig::new(answer.remote_rtp, answer.codec)
        }
    }

    /// The same configuration with another [`AfterAudio`].
    pub fn after_audio(mut self, after: AfterAudio) -> EndpointConfig {
        self.after_audio = after;
        self
    }
}

/// Why an endpoint failed.
#[derive(Debug, Error)]
pub enum EndpointError {
    /// Receiving failed with an error that is not transient.
    #[error("RTP endpoint: {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A task panicked or was aborted.
    #[error("RTP endpoint task failed: {0}")]
    Task(String),
}

/// What the player sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SentStats {
    pub packets: u64,
    /// RTP payload bytes (without headers).
    pub payload_bytes: u64,
    /// Datagrams the socket refused to send (counted, not retried).
    pub send_errors: u64,
    /// The SSRC of the stream.
    pub ssrc: u32,
}

/// What the recorder received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReceivedStats {
    /// RFC 3550 statistics of every RTP packet from the latched source.
    pub rtp: RtpStatsSnapshot,
    /// Packets of the negotiated codec that were recorded (fully or in part).
    pub audio_packets: u64,
    /// RFC 4733 telephone-event packets.
    pub telephone_event_packets: u64,
    /// RFC 3389 comfort-noise packets (payload type 13).
    pub comfort_noise_packets: u64,
    /// RTP packets of any other payload type.
    pub other_payload_packets: u64,
    /// RTCP packets multiplexed on the RTP port.
    pub rtcp_packets: u64,
    /// Datagrams that are not well-formed RTP or RTCP.
    pub malformed_packets: u64,
    /// Datagrams from an address other than the latched one.
    pub foreign_source_packets: u64,
    /// Audio packets whose samples were all recorded already (duplicates, late arrivals).
    pub late_packets: u64,
    /// Times the recording was re-anchored (new SSRC or implausible timestamp jump).
    pub timestamp_jumps: u64,
    /// Samples dropped because the recording reached its limit.
    pub samples_dropped: u64,
    /// The peer's address, once its first packet arrived.
    pub latched: Option<SocketAddr>,
}

/// The result of a finished endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointReport {
    /// 8 kHz mono samples from the peer's first packet to its last.
    pub recording: Vec<i16>,
    pub sent: SentStats,
    pub received: ReceivedStats,
}

/// What the recorder task returns: the samples and what it counted.
type RecorderResult = Result<(Vec<i16>, ReceivedStats), EndpointError>;

/// Where the player sends; the recorder changes it when it latches.
#[derive(Debug)]
struct Destination {
    remote: SocketAddr,
    latched: bool,
}

/// A running endpoint (see the [module documentation](self)).
#[derive(Debug)]
pub struct RtpEndpoint {
    cancel: CancellationToken,
    playback_done: CancellationToken,
    destination: Arc<Mutex<Destination>>,
    player: Option<JoinHandle<SentStats>>,
    recorder: Option<JoinHandle<RecorderResult>>,
}

impl RtpEndpoint {
    /// Starts playing `audio` (8 kHz mono samples) to `config.remote` and
    /// recording from `socket`. The tasks stop when `cancel` is cancelled or
    /// [`stop`](Self::stop) is called. Must be called within a Tokio runtime.
    pub fn start(
        socket: UdpSocket,
        config: EndpointConfig,
        audio: Vec<i16>,
        cancel: &CancellationToken,
    ) -> RtpEndpoint {
        let socket = Arc::new(socket);
        let cancel = cancel.child_token();
        let playback_done = CancellationToken::new();
        let destination = Arc::new(Mutex::new(Destination {
            remote: config.remote,
            latched: false,
        }));
        let player = tokio::spawn(play(
            socket.clone(),
            destination.clone(),
            config.codec,
            audio,
            config.after_audio,
            cancel.clone(),
            playback_done.clone(),
        ));
        let recorder = tokio::spawn(record(
            socket,
            destination.clone(),
            Recorder::new(&config),
            cancel.clone(),
        ));
        RtpEndpoint {
            cancel,
            playback_done,
            destination,
            player: Some(player),
            recorder: Some(recorder),
        }
    }

    /// Where packets are sent now: the configured remote, or the latched one.
    pub fn remote(&self) -> SocketAddr {
        self.destination.lock().remote
    }

    /// The peer's address once its first packet arrived.
    pub fn latched(&self) -> Option<SocketAddr> {
        let d = self.destination.lock();
        d.latched.then_some(d.remote)
    }

    /// Resolves when the player has sent its last sample ([`AfterAudio::Stop`])
    /// or the endpoint was stopped; with `Loop` or `Silence` only the latter.
    pub async fn playback_finished(&self) {
        tokio::select! {
            _ = self.playback_done.cancelled() => {}
            _ = self.cancel.cancelled() => {}
        }
    }

    /// Stops both tasks and returns the recording and the statistics.
    pub async fn stop(mut self) -> Result<EndpointReport, EndpointError> {
        self.cancel.cancel();
        let task_error = |e: tokio::task::JoinError| EndpointError::Task(e.to_string());
        let sent = match self.player.take() {
            Some(p) => p.await.map_err(task_error)?,
            None => SentStats::default(),
        };
        let (recording, received) = match self.recorder.take() {
            Some(r) => r.await.map_err(task_error)??,
            None => (Vec::new(), ReceivedStats::default()),
        };
        Ok(EndpointReport {
            recording,
            sent,
            received,
        })
    }
}

impl Drop for RtpEndpoint {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn play(
    socket: Arc<UdpSocket>,
    destination: Arc<Mutex<Destination>>,
    codec: Codec,
    audio: Vec<i16>,
    after: AfterAudio,
    cancel: CancellationToken,
    done: CancellationToken,
) -> SentStats {
    let mut stats = SentStats {
        ssrc: rand::random(),
        ..SentStats::default()
    };
    let mut header = rtp::header::Header {
        version: 2,
        marker: true,
        payload_type: codec.payload_type(),
        sequence_number: rand::random(),
        timestamp: rand::random(),
        ssrc: stats.ssrc,
        ..Default::default()
    };
    let header_len = header.marshal_size();
    let mut packet = vec![0u8; header_len + SAMPLES_PER_PACKET];
    let mut frame = [0i16; SAMPLES_PER_PACKET];
    let mut next = 0usize;
    let mut interval = tokio::time::interval(PACKET_INTERVAL);
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = interval.tick() => {}
        }
        if next >= audio.len() {
            match after {
                AfterAudio::Stop => {
                    done.cancel();
                    break;
                }
                AfterAudio::Loop => next = 0,
                AfterAudio::Silence => {}
            }
        }
        // The last frame of the audio (and every frame of silence) is padded with zeros.
        let chunk = audio.get(next..).unwrap_or(&[]);
        let n = chunk.len().min(SAMPLES_PER_PACKET);
        frame[..n].copy_from_slice(&chunk[..n]);
        frame[n..].fill(0);
        next += n;

        if header.marshal_to(&mut packet[..header_len]).is_err() {
            // Cannot happen with a fixed 12-byte header and a buffer sized for it.
            break;
        }
        for (out, sample) in packet[header_len..].iter_mut().zip(frame.iter()) {
            *out = codec.encode_sample(*sample);
        }
        let to = destination.lock().remote;
        match socket.send_to(&packet, to).await {
            Ok(_) => {
                stats.packets += 1;
                stats.payload_bytes += SAMPLES_PER_PACKET as u64;
            }
            Err(_) => stats.send_errors += 1,
        }
        header.marker = false;
        header.sequence_number = header.sequence_number.wrapping_add(1);
        header.timestamp = header.timestamp.wrapping_add(SAMPLES_PER_PACKET as u32);
    }
    stats
}

async fn record(
    socket: Arc<UdpSocket>,
    destination: Arc<Mutex<Destination>>,
    mut recorder: Recorder,
    cancel: CancellationToken,
) -> RecorderResult {
    let started = Instant::now();
    // Larger than any RTP packet on an Ethernet path; longer datagrams are truncated and counted as malformed.
    let mut buf = vec![0u8; 2048];
    loop {
        let received = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            r = socket.recv_from(&mut buf) => r,
        };
        let (len, from) = match received {
            Ok(r) => r,
            // ICMP errors from earlier sends surface here on some systems: not fatal.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::Interrupted
                        | std::io::ErrorKind::WouldBlock
                ) =>
            {
                continue
            }
            Err(source) => {
                return Err(EndpointError::Io {
                    what: "receiving RTP",
                    source,
                })
            }
        };
        let arrival_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let datagram = buf.get(..len).unwrap_or(&[]);
        let truncated = len == buf.len();
        if let Some(peer) = recorder.receive(datagram, truncated, from, arrival_ns) {
            let mut d = destination.lock();
            d.remote = peer;
            d.latched = true;
        }
    }
    Ok(recorder.finish())
}

/// The recorder's state: classification, latching, placement, statistics.
struct Recorder {
    codec: Codec,
    telephone_event: Option<u8>,
    max_samples: usize,
    max_jump: i64,
    samples: Vec<i16>,
    anchor: Option<Anchor>,
    rtp: RtpStats,
    stats: ReceivedStats,
    decoded: Vec<i16>,
}

/// Maps one SSRC's timestamps to positions in the recording.
struct Anchor {
    ssrc: u32,
    timestamp: u32,
    position: i64,
    last_arrival_ns: u64,
    last_len: usize,
}

impl Recorder {
    fn new(config: &EndpointConfig) -> Recorder {
        let mut rtp = RtpStats::default();
        if let Some(pt) = config.telephone_event {
            rtp.clock.set(pt, SAMPLE_RATE, true);
        }
        let max_samples = config
            .max_recording
            .as_millis()
            .saturating_mul(u128::from(SAMPLE_RATE))
            / 1000;
        Recorder {
            codec: config.codec,
            telephone_event: config.telephone_event,
            max_samples: usize::try_from(max_samples).unwrap_or(usize::MAX),
            max_jump: (MAX_TIMESTAMP_JUMP.as_secs() * u64::from(SAMPLE_RATE)) as i64,
            samples: Vec::new(),
            anchor: None,
            rtp,
            stats: ReceivedStats::default(),
            decoded: Vec::with_capacity(SAMPLES_PER_PACKET),
        }
    }

    /// Handles one datagram; returns the peer's address when this packet latches it.
    fn receive(
        &mut self,
        datagram: &[u8],
        truncated: bool,
        from: SocketAddr,
        arrival_ns: u64,
    ) -> Option<SocketAddr> {
        if let Some(latched) = self.stats.latched {
            if from != latched {
                self.stats.foreign_source_packets += 1;
                return None;
            }
        }
        let (first, second) = match datagram {
            [a, b, ..] => (*a, *b),
            _ => {
                self.stats.malformed_packets += 1;
                return None;
            }
        };
        if truncated || first >> 6 != 2 {
            self.stats.malformed_packets += 1;
            return None;
        }
        // RTCP packet types 192-223 occupy the marker + payload-type byte (RFC 5761 §4).
        if (192..=223).contains(&second) {
            self.stats.rtcp_packets += 1;
            return None;
        }
        let (Some(header), Some(payload)) = (RtpHeaderFields::parse(datagram), payload(datagram))
        else {
            self.stats.malformed_packets += 1;
            return None;
        };
        let pt = header.payload_type;
        let known = pt == self.codec.payload_type()
            || Some(pt) == self.telephone_event
            || pt == COMFORT_NOISE_PT;
        let latches = self.stats.latched.is_none() && known;
        if self.stats.latched.is_none() && !known {
            // Not ours: it must not decide where our audio goes.
            self.stats.other_payload_packets += 1;
            return None;
        }
        if latches {
            self.stats.latched = Some(from);
        }
        self.rtp.record(&header, datagram.len(), arrival_ns);
        if pt == self.codec.payload_type() {
            self.codec.decode_into(payload, &mut self.decoded);
            self.place(&header, arrival_ns);
            self.decoded.clear();
        } else if Some(pt) == self.telephone_event {
            self.stats.telephone_event_packets += 1;
        } else if pt == COMFORT_NOISE_PT {
            self.stats.comfort_noise_packets += 1;
        } else {
            self.stats.other_payload_packets += 1;
        }
        latches.then_some(from)
    }

    /// Writes `self.decoded` at the position the packet's timestamp gives.
    fn place(&mut self, header: &RtpHeaderFields, arrival_ns: u64) {
        let len = self.samples.len() as i64;
        let n = self.decoded.len() as i64;
        let believed = self.anchor.as_ref().and_then(|a| {
            if a.ssrc != header.ssrc {
                return None;
            }
            let step = i64::from(header.timestamp.wrapping_sub(a.timestamp) as i32);
            let position = a.position + step;
            (position <= len + self.max_jump && position + n >= len - self.max_jump)
                .then_some(position)
        });
        let position = match (believed, &self.anchor) {
            (Some(p), _) => p,
            (None, None) => 0,
            (None, Some(a)) => {
                // Silence for the time that passed since the previous packet ended.
                self.stats.timestamp_jumps += 1;
                let elapsed_ns = arrival_ns.saturating_sub(a.last_arrival_ns);
                let elapsed = (u128::from(elapsed_ns) * u128::from(SAMPLE_RATE) / 1_000_000_000)
                    .min(self.max_samples as u128) as i64;
                len + (elapsed - a.last_len as i64).max(0)
            }
        };
        if believed.is_none() {
            self.anchor = Some(Anchor {
                ssrc: header.ssrc,
                timestamp: header.timestamp,
                position,
                last_arrival_ns: arrival_ns,
                last_len: self.decoded.len(),
            });
        }
        if let Some(a) = &mut self.anchor {
            a.last_arrival_ns = arrival_ns;
            a.last_len = self.decoded.len();
        }
        if position + n <= len {
            self.stats.late_packets += 1;
            return;
        }
        self.stats.audio_packets += 1;
        // Samples before the end of the recording were written by earlier packets.
        let skip = (len - position).max(0) as usize;
        let start = position.max(len) as usize;
        let room = self.max_samples.saturating_sub(start);
        let fresh = &self.decoded[skip..];
        let kept = fresh.len().min(room);
        self.stats.samples_dropped += (fresh.len() - kept) as u64;
        if kept > 0 {
            self.samples.resize(start, 0);
            self.samples.extend_from_slice(&fresh[..kept]);
        }
    }

    fn finish(mut self) -> (Vec<i16>, ReceivedStats) {
        self.stats.rtp = self.rtp.snapshot();
        (self.samples, self.stats)
    }
}

/// The payload of a well-formed RTP packet: after the CSRCs and the
/// extension block, without padding (RFC 3550 §5.1).
fn payload(packet: &[u8]) -> Option<&[u8]> {
    let first = *packet.first()?;
    let mut offset = 12 + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let ext = packet.get(offset..offset + 4)?;
        offset += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    let mut end = packet.len();
    if first & 0x20 != 0 {
        let padding = usize::from(*packet.last()?);
        if padding == 0 {
            return None;
        }
        end = end.checked_sub(padding)?;
    }
    packet.get(offset..end)
}
