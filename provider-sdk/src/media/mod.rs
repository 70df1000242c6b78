//! The media relay: anchors a call's RTP so that media statistics, NAT
//! traversal and media-timeout detection do not depend on the endpoints.
//!
//! # Using it
//!
//! ```no_run
//! use provider_sdk::media::{Leg, MediaRelay, RelayConfig};
//! # async fn call(offer_from_caller: &[u8], answer_from_callee: &[u8]) -> Result<(), provider_sdk::media::MediaError> {
//! let relay = MediaRelay::new(RelayConfig::loopback(30000..=30999))?;
//! let media = relay.allocate_call()?;
//! // The caller's offer goes to the callee with the relay's leg-B ports in it.
//! let offer_to_callee = media.rewrite_offer(Leg::A, offer_from_caller)?;
//! // The callee's answer goes back to the caller with the relay's leg-A ports.
//! let answer_to_caller = media.rewrite_answer(Leg::B, answer_from_callee)?;
//! // Tear the call down when its media stops.
//! let timeout = media.timeout().await;
//! println!("no RTP for {:?}; caller sent {:?}", timeout.idle, media.stats(Leg::A));
//! drop(media); // closes the sockets, the ports go back to the pool
//! # Ok(()) }
//! ```
//!
//! # Modules
//!
//! - The [`relay`] module: [`MediaRelay`] (configuration, port pool, forwarding threads)
//!   and [`CallMedia`] (per call: SDP rewriting for each leg, statistics,
//!   media timeout). A re-offer from either side (re-INVITE, UPDATE) goes
//!   through the same `rewrite_offer`/`rewrite_answer`; ports stay stable
//!   for the call.
//! - The [`sdp_rewrite`] module: parses SDP with the `sdp` crate and edits the original
//!   bytes: only `c=` addresses, `m=` ports and `a=rtcp:` change. Hold with
//!   `c=0.0.0.0` and disabled streams (port 0) are left as they are. ICE
//!   candidates are not rewritten (the relay is not an ICE agent).
//! - The [`rtp_stats`] module: RFC 3550 receive statistics (loss with wrap-around and
//!   reordering, interarrival jitter) fed with headers parsed by the `rtp` crate.
//! - The [`ports`] module: even/odd port pairs from the configured range, bound on
//!   allocation, released when the sockets close.
//!
//! # What the relay does with packets
//!
//! - **Latching** (symmetric RTP): each leg's RTP and RTCP destination is
//!   first taken from its SDP; the first packet received from that leg then
//!   fixes its real source (behind NAT), and media is sent there. Packets
//!   from any other source are dropped and counted (`foreign_source`), so a
//!   third party cannot inject into or hijack a stream. A new address in a
//!   later SDP from that leg restarts latching.
//! - **RTCP** arriving on port + 1 goes out of the other leg's port + 1, or
//!   its RTP port when that endpoint uses rtcp-mux; RTCP multiplexed on the
//!   RTP port (RFC 5761) is recognised by its packet type and routed the same
//!   way. Nothing is transcoded or re-sequenced: payloads, including RFC 4733
//!   DTMF events, pass byte-for-byte.
//! - **Malformed and foreign datagrams**: a datagram that claims RTP version 2
//!   but whose header is truncated (or an empty or oversized one) is dropped
//!   and counted as `malformed`, since the far end could not use it either. A
//!   datagram that is not RTP/RTCP at all (first byte outside 128-191: STUN,
//!   DTLS, ZRTP, which share the media port by RFC 7983) is forwarded
//!   untouched and counted as `non_rtp`, without feeding the statistics: the
//!   relay stays transparent to DTLS-SRTP and ICE consent checks.
//! - **Media timeout**: [`CallMedia::timeout`] resolves when no RTP arrived
//!   on any leg for [`RelayConfig::media_timeout`]; the owner tears the call down.
//! - **Threads**: `workers` forwarding threads (default one per core), each an
//!   epoll loop using `recvmmsg`/`sendmmsg`; a call's sockets all live on one thread.
//!   Linux only.
//!
//! # Audio for a user agent
//!
//! A SIP user agent (the dialer) that plays a WAV file into a call and
//! records the other side uses four more modules:
//!
//! - [`g711`]: [`Codec`] (PCMU/PCMA) encodes and decodes 16-bit samples.
//! - [`wav`]: [`read_wav`] accepts 8 kHz mono 16-bit PCM or G.711 WAV files
//!   and explains, with a `sox` command, what to do with any other;
//!   [`write_wav`] writes 8 kHz mono 16-bit PCM.
//! - [`ua_sdp`]: [`SdpOffer`] writes the INVITE's offer (PCMU, PCMA,
//!   telephone-event) and reads the answer into an [`SdpAnswer`].
//! - [`endpoint`]: [`RtpEndpoint`] sends the samples as 20 ms RTP packets
//!   and records what arrives on the same socket, latching onto the peer's
//!   real address (symmetric RTP).
//!
//! ```no_run
//! use std::net::SocketAddrV4;
//! use std::path::Path;
//! use provider_sdk::media::{read_wav, write_wav, EndpointConfig, RtpEndpoint, SdpOffer};
//! use tokio_util::sync::CancellationToken;
//! # async fn send_invite(_offer: &str) -> Vec<u8> { Vec::new() }
//! # async fn call() -> Result<(), Box<dyn std::error::Error>> {
//! let audio = read_wav(Path::new("prompt.wav"))?;
//! let socket = tokio::net::UdpSocket::bind("192.0.2.10:40000").await?;
//! let offer = SdpOffer::new(SocketAddrV4::new([192, 0, 2, 10].into(), 40000));
//! let answer_body = send_invite(&offer.to_sdp()).await; // the 200 OK's SDP
//! let answer = offer.parse_answer(&answer_body)?;
//! let hangup = CancellationToken::new(); // cancelled when a BYE arrives
//! let media = RtpEndpoint::start(socket, EndpointConfig::from_answer(&answer), audio, &hangup);
//! media.playback_finished().await; // the whole file was sent (or the call ended)
//! let report = media.stop().await?;
//! write_wav(Path::new("recording.wav"), &report.recording)?;
//! println!("sent {} packets, lost {}", report.sent.packets, report.received.rtp.lost);
//! # Ok(()) }
//! ```

pub mod endpoint;
pub mod g711;
pub mod ports;
pub mod relay;
pub mod rtp_stats;
pub mod sdp_rewrite;
pub mod ua_sdp;
pub mod wav;
mod worker;

pub use endpoint::{
    AfterAudio, EndpointConfig, EndpointError, EndpointReport, ReceivedStats, RtpEndpoint,
    SentStats,
};
pub use g711::Codec;
pub use ua_sdp::{AnswerError, SdpAnswer, SdpOffer};
pub use wav::{encode_wav, read_wav, read_wav_bytes, write_wav, WavError, WavFormat};

pub use relay::{
    CallMedia, Leg, LegStats, MediaRelay, MediaTimeout, PacketCounters, RelayConfig, StreamStats,
};
pub use rtp_stats::RtpStatsSnapshot;
pub use sdp_rewrite::SdpError;

/// Why a media operation failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Every port pair of the range is in use.
    #[error("no free RTP port pair in range {first}-{last}: all in use")]
    PortsExhausted { first: u16, last: u16 },
    /// The SDP could not be parsed or rewritten.
    #[error(transparent)]
    Sdp(#[from] SdpError),
    /// An SDP answer listed more media sections than the offer.
    #[error("SDP answer has {answered} media sections but the offer had {offered}")]
    AnswerHasMoreStreams { offered: usize, answered: usize },
    /// The relay configuration is unusable.
    #[error("invalid media relay configuration: {0}")]
    Config(String),
    /// A system call failed.
    #[error("media relay: {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The forwarding threads are gone.
    #[error("media relay has stopped")]
    RelayStopped,
}

/// Classifies a datagram as the relay does (exposed for fuzzing and tools).
#[doc(hidden)]
pub fn classify_for_fuzzing(packet: &[u8]) -> &'static str {
    match worker::classify(packet) {
        worker::PacketClass::Rtp(_) => "rtp",
        worker::PacketClass::Rtcp => "rtcp",
        worker::PacketClass::Malformed => "malformed",
        worker::PacketClass::Other => "other",
    }
}
