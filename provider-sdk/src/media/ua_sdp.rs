//! SDP for a user agent that sends and receives G.711: the offer it puts in
//! its INVITE and what it needs from the answer.
//!
//! [`SdpOffer`] writes one `m=audio` line with PCMU and PCMA (in the chosen
//! order) and RFC 4733 `telephone-event/8000` as payload type 101, `ptime`
//! 20 and `sendrecv`, with a random session id. [`SdpOffer::parse_answer`]
//! reads the answer with the `sdp` crate and returns where to send RTP, the
//! codec to use and whether the peer multiplexes RTCP, or an [`AnswerError`]
//! that says why the call cannot carry audio.

use std::io::Cursor;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};

use thiserror::Error;

use super::g711::{Codec, SAMPLES_PER_PACKET, SAMPLE_RATE, TELEPHONE_EVENT_PT};

/// Why an SDP answer cannot be used for the call's audio.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AnswerError {
    /// The body is not valid SDP (the parser's message is included).
    #[error("SDP answer is not valid SDP: {0}")]
    Unparsable(String),
    /// The answer has no media section, or its first one (the one answering
    /// the offer's audio stream) is not audio.
    #[error("SDP answer has no audio stream")]
    NoAudio,
    /// The answer sets the audio port to 0: the peer rejected the stream.
    #[error("SDP answer rejected the audio stream (port 0)")]
    AudioRejected,
    /// None of the answer's formats is one of the offered codecs.
    #[error(
        "SDP answer accepts none of the offered codecs (offered {offered}; answered {answered})"
    )]
    NoCommonCodec { offered: String, answered: String },
    /// Neither the audio section nor the session has a `c=` line.
    #[error("SDP answer has no connection address for the audio stream")]
    NoAddress,
    /// The connection address is unusable (not an IP address, not `IN IP4`/`IN IP6`, or `0.0.0.0`).
    #[error("SDP answer has an unusable connection address: {0}")]
    Address(String),
}

/// An SDP offer for one G.711 audio stream received on a local RTP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpOffer {
    rtp: SocketAddrV4,
    codecs: Vec<Codec>,
    session_id: u64,
}

/// What the answer agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdpAnswer {
    /// Where the peer wants RTP (its `c=` address and `m=audio` port).
    pub remote_rtp: SocketAddr,
    /// The first format of the answer that was offered: the codec to send.
    pub codec: Codec,
    /// The payload type the peer uses for `telephone-event/8000`, if it accepted DTMF events.
    pub telephone_event: Option<u8>,
    /// The peer multiplexes RTCP on the RTP port (RFC 5761).
    pub rtcp_mux: bool,
}

impl SdpOffer {
    /// An offer of PCMU then PCMA for media received on `rtp` (the address
    /// the local RTP socket is bound to, as the peer can reach it).
    pub fn new(rtp: SocketAddrV4) -> SdpOffer {
        SdpOffer {
            rtp,
            codecs: Codec::ALL.to_vec(),
            // Session ids are decimal and fit in 63 bits for old parsers.
            session_id: rand::random::<u64>() >> 1,
        }
    }

    /// Puts `codec` first (the preferred one), keeping the other offered.
    pub fn preferring(mut self, codec: Codec) -> SdpOffer {
        self.codecs.retain(|c| *c != codec);
        self.codecs.insert(0, codec);
        self
    }

    /// Offers `codec` alone.
    pub fn only(mut self, codec: Codec) -> SdpOffer {
        self.codecs = vec![codec];
        self
    }

    /// The offered codecs, most preferred first.
    pub fn codecs(&self) -> &[Codec] {
        &self.codecs
    }

    /// The address and port in the offer.
    pub fn rtp(&self) -> SocketAddrV4 {
        self.rtp
    }

    /// The `o=` session id.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The SDP body (CRLF line endings).
    pub fn to_sdp(&self) -> String {
        let ip = self.rtp.ip();
        let mut formats: Vec<String> = self
            .codecs
            .iter()
            .map(|c| c.payload_type().to_string())
            .collect();
        formats.push(TELEPHONE_EVENT_PT.to_string());
        let mut sdp = format!(
            "v=0\r\no=- {id} {id} IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {formats}\r\n",
            id = self.session_id,
            port = self.rtp.port(),
            formats = formats.join(" "),
        );
        for c in &self.codecs {
            sdp.push_str(&format!(
                "a=rtpmap:{} {}/{SAMPLE_RATE}\r\n",
                c.payload_type(),
                c.encoding_name()
            ));
        }
        let ptime = SAMPLES_PER_PACKET as u32 * 1000 / SAMPLE_RATE;
        sdp.push_str(&format!(
            "a=rtpmap:{TELEPHONE_EVENT_PT} telephone-event/{SAMPLE_RATE}\r\n\
             a=fmtp:{TELEPHONE_EVENT_PT} 0-15\r\n\
             a=ptime:{ptime}\r\n\
             a=sendrecv\r\n"
        ));
        sdp
    }

    /// Reads the answer to this offer.
    ///
    /// The answer's first media section answers the offer's audio stream
    /// (RFC 3264 keeps sections in order). Its formats are taken in the
    /// answer's order (the answerer's preference) and the first one that was
    /// offered is the codec; an `a=rtpmap` that maps 0 or 8 to another
    /// encoding disqualifies that payload type.
    pub fn parse_answer(&self, answer: &[u8]) -> Result<SdpAnswer, AnswerError> {
        let parsed = sdp::SessionDescription::unmarshal(&mut Cursor::new(answer))
            .map_err(|e| AnswerError::Unparsable(e.to_string()))?;
        let audio = parsed
            .media_descriptions
            .first()
            .filter(|m| m.media_name.media.eq_ignore_ascii_case("audio"))
            .ok_or(AnswerError::NoAudio)?;
        let port = audio.media_name.port.value;
        if port == 0 {
            return Err(AnswerError::AudioRejected);
        }
        let port = u16::try_from(port)
            .map_err(|_| AnswerError::Unparsable(format!("audio port {port} out of range")))?;

        let rtpmaps: Vec<(u8, &str)> = audio
            .attributes
            .iter()
            .filter(|a| a.key == "rtpmap")
            .filter_map(|a| parse_rtpmap(a.value.as_deref()?))
            .collect();
        let encoding_of = |pt: u8| rtpmaps.iter().find(|(p, _)| *p == pt).map(|(_, e)| *e);
        let codec = audio
            .media_name
            .formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter_map(|pt| {
                let codec = Codec::from_payload_type(pt)?;
                let expected = format!("{}/{SAMPLE_RATE}", codec.encoding_name());
                let mapped_ok = encoding_of(pt).is_none_or(|e| e.eq_ignore_ascii_case(&expected));
                (mapped_ok && self.codecs.contains(&codec)).then_some(codec)
            })
            .next()
            .ok_or_else(|| AnswerError::NoCommonCodec {
                offered: self
                    .codecs
                    .iter()
                    .map(|c| c.encoding_name())
                    .collect::<Vec<_>>()
                    .join(" "),
                answered: describe_formats(&audio.media_name.formats, &encoding_of),
            })?;
        let telephone_event = audio
            .media_name
            .formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .find(|pt| {
                encoding_of(*pt).is_some_and(|e| {
                    e.eq_ignore_ascii_case(&format!("telephone-event/{SAMPLE_RATE}"))
                })
            });

        let connection = audio
            .connection_information
            .as_ref()
            .or(parsed.connection_information.as_ref())
            .ok_or(AnswerError::NoAddress)?;
        let ip = connection_ip(connection)?;
        Ok(SdpAnswer {
            remote_rtp: SocketAddr::new(ip, port),
            codec,
            telephone_event,
            rtcp_mux: audio.attributes.iter().any(|a| a.key == "rtcp-mux"),
        })
    }
}

fn connection_ip(
    c: &sdp::description::common::ConnectionInformation,
) -> Result<IpAddr, AnswerError> {
    let kind = format!("{} {}", c.network_type, c.address_type);
    if c.network_type != "IN" || !(c.address_type == "IP4" || c.address_type == "IP6") {
        return Err(AnswerError::Address(format!(
            "unsupported connection type {kind:?}"
        )));
    }
    let text = c.address.as_ref().map(|a| a.address.as_str()).unwrap_or("");
    let ip: IpAddr = text
        .parse()
        .map_err(|_| AnswerError::Address(format!("{text:?} is not an IP address")))?;
    if ip.is_ipv4() != (c.address_type == "IP4") {
        return Err(AnswerError::Address(format!(
            "{text} is not an {} address",
            c.address_type
        )));
    }
    if ip.is_unspecified() {
        return Err(AnswerError::Address(format!(
            "{text} (the answer puts the stream on hold)"
        )));
    }
    Ok(ip)
}

/// `<pt> <encoding>/<rate>[/<channels>]` → `(pt, "encoding/rate")`.
fn parse_rtpmap(value: &str) -> Option<(u8, &str)> {
    let (pt, encoding) = value.trim().split_once(' ')?;
    let pt = pt.parse::<u8>().ok().filter(|p| *p < 128)?;
    let encoding = encoding.trim();
    // Drop a channel count ("PCMU/8000/1" is PCMU/8000).
    let encoding = match encoding.match_indices('/').nth(1) {
        Some((i, _)) => &encoding[..i],
        None => encoding,
    };
    Some((pt, encoding))
}

fn describe_formats<'a>(
    formats: &[String],
    encoding_of: &impl Fn(u8) -> Option<&'a str>,
) -> String {
    if formats.is_empty() {
        return "no formats".to_owned();
    }
    formats
        .iter()
        .map(|f| {
            let pt = f.parse::<u8>().ok();
            match pt
                .and_then(encoding_of)
                .or_else(|| pt.and_then(static_name))
            {
                Some(e) => format!("{f} {e}"),
                None => f.clone(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Names of common static payload types (RFC 3551), for error messages.
fn static_name(pt: u8) -> Option<&'static str> {
    Some(match pt {
        0 => "PCMU/8000",
        3 => "GSM/8000",
        4 => "G723/8000",
        8 => "PCMA/8000",
        9 => "G722/8000",
        13 => "CN/8000",
        18 => "G729/8000",
        _ => return None,
    })
}
