//! SDP understanding and surgical rewriting for media anchoring.
//!
//! [`SdpMedia::parse`] reads an SDP body with the `sdp` crate and extracts what
//! the relay needs per `m=` line: where the endpoint wants to receive RTP and
//! RTCP, whether it uses rtcp-mux, and the clock rate of each payload type.
//!
//! [`rewrite`] then edits the *original bytes*: only the address of `c=` lines,
//! the port of `m=` lines and the port/address of `a=rtcp:` lines change;
//! every other byte (line endings, attribute order, unknown attributes, the
//! `o=` line) is copied unchanged. The crate's own marshal normalises some
//! lines, so it is used for parsing only; byte-exact output matters because
//! endpoints compare `o=` versions and some compute hashes over the body.
//! The result is parsed again and checked: if any media address or port is
//! not the relay's (a line written in a form the in-place edit does not
//! recognise), the body is refused with [`SdpError::Unrewritable`] rather
//! than letting media bypass the relay.

use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use thiserror::Error;

/// Why an SDP body could not be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SdpError {
    /// The body is not valid SDP (the parser's message is included).
    #[error("invalid SDP: {0}")]
    Syntax(String),
    /// A `c=` line names an address that is not an IP address.
    #[error("invalid SDP: connection address {0:?} is not an IP address")]
    Address(String),
    /// A `c=` line uses a network or address type other than `IN IP4`/`IN IP6`.
    #[error("invalid SDP: unsupported connection type {0:?}")]
    ConnectionType(String),
    /// An `m=` or `a=rtcp:` port is out of range.
    #[error("invalid SDP: port {0:?} is not a valid UDP port")]
    Port(String),
    /// The number of `m=` lines found by the parser and by the line scan differ
    /// (for example an `m=` line hidden by an unusual line ending).
    #[error("invalid SDP: inconsistent media sections ({parsed} parsed, {scanned} found)")]
    Inconsistent { parsed: usize, scanned: usize },
    /// The body parses, but its media addresses are written in a form the
    /// rewriter cannot edit in place; it is refused rather than passed on
    /// with addresses that would let media bypass the relay.
    #[error("SDP media addresses are written in a form that cannot be rewritten in place")]
    Unrewritable,
    /// The caller passed a different number of ports than there are `m=` lines.
    #[error("SDP rewrite needs {expected} media ports, got {given}")]
    PortCount { expected: usize, given: usize },
}

/// What one `m=` line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaStream {
    /// The media type (`audio`, `video`, ...).
    pub media: String,
    /// The RTP port; 0 means the stream is disabled or rejected.
    pub port: u16,
    /// Where the endpoint receives RTP; `None` when the stream is disabled or
    /// the address is unspecified (`0.0.0.0`/`::`, the old way to put a call on hold).
    pub rtp: Option<SocketAddr>,
    /// Where the endpoint receives RTCP: `a=rtcp:` if present, else port + 1.
    pub rtcp: Option<SocketAddr>,
    /// The endpoint offers or accepted RTP/RTCP multiplexing (RFC 5761).
    pub rtcp_mux: bool,
    /// `(payload type, clock rate)` from `a=rtpmap` and the static table (RFC 3551).
    pub clock_rates: Vec<(u8, u32)>,
    /// Payload types carrying RFC 4733 `telephone-event`.
    pub telephone_events: Vec<u8>,
}

/// The media sections of an SDP body, in `m=` line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SdpMedia {
    pub streams: Vec<MediaStream>,
}

/// Clock rates of the static RTP payload types (RFC 3551 table 4).
fn static_clock_rate(pt: u8) -> Option<u32> {
    match pt {
        0 | 3 | 4 | 5 | 7 | 8 | 9 | 12 | 13 | 15 | 18 => Some(8000),
        6 => Some(16000),
        10 | 11 => Some(44100),
        16 => Some(11025),
        17 => Some(22050),
        14 | 25 | 26 | 28 | 31 | 32 | 33 | 34 => Some(90000),
        _ => None,
    }
}

impl SdpMedia {
    /// Parses an SDP body and extracts the media sections.
    pub fn parse(sdp: &[u8]) -> Result<SdpMedia, SdpError> {
        let parsed = sdp::SessionDescription::unmarshal(&mut Cursor::new(sdp))
            .map_err(|e| SdpError::Syntax(e.to_string()))?;
        let scanned = lines(sdp).filter(|l| l.text.starts_with(b"m=")).count();
        if scanned != parsed.media_descriptions.len() {
            return Err(SdpError::Inconsistent {
                parsed: parsed.media_descriptions.len(),
                scanned,
            });
        }
        let session_addr = match &parsed.connection_information {
            Some(c) => connection_address(c)?,
            None => None,
        };
        let mut streams = Vec::with_capacity(parsed.media_descriptions.len());
        for md in &parsed.media_descriptions {
            let port = u16::try_from(md.media_name.port.value)
                .map_err(|_| SdpError::Port(md.media_name.port.value.to_string()))?;
            let addr = match &md.connection_information {
                Some(c) => connection_address(c)?,
                None => session_addr,
            };
            let active = port != 0;
            let rtp = addr.filter(|a| active && !a.is_unspecified());
            let rtp = rtp.map(|a| SocketAddr::new(a, port));
            let mut rtcp = rtp.map(|r| SocketAddr::new(r.ip(), r.port().wrapping_add(1)));
            let mut rtcp_mux = false;
            let mut clock_rates: Vec<(u8, u32)> = md
                .media_name
                .formats
                .iter()
                .filter_map(|f| f.parse::<u8>().ok())
                .filter_map(|pt| static_clock_rate(pt).map(|r| (pt, r)))
                .collect();
            let mut telephone_events = Vec::new();
            for attr in &md.attributes {
                match (attr.key.as_str(), attr.value.as_deref()) {
                    ("rtcp-mux", _) => rtcp_mux = true,
                    ("rtcp", Some(v)) => {
                        if let Some(r) = rtp {
                            rtcp = Some(parse_rtcp_attribute(v, r.ip())?);
                        }
                    }
                    ("rtpmap", Some(v)) => {
                        if let Some((pt, name, rate)) = parse_rtpmap(v) {
                            clock_rates.retain(|(p, _)| *p != pt);
                            clock_rates.push((pt, rate));
                            if name.eq_ignore_ascii_case("telephone-event") {
                                telephone_events.push(pt);
                            }
                        }
                    }
                    _ => {}
                }
            }
            streams.push(MediaStream {
                media: md.media_name.media.clone(),
                port,
                rtp,
                rtcp,
                rtcp_mux,
                clock_rates,
                telephone_events,
            });
        }
        Ok(SdpMedia { streams })
    }
}

fn connection_address(
    c: &sdp::description::common::ConnectionInformation,
) -> Result<Option<IpAddr>, SdpError> {
    if c.network_type != "IN" || !(c.address_type == "IP4" || c.address_type == "IP6") {
        return Err(SdpError::ConnectionType(format!(
            "{} {}",
            c.network_type, c.address_type
        )));
    }
    let Some(a) = &c.address else { return Ok(None) };
    let ip: IpAddr = a
        .address
        .parse()
        .map_err(|_| SdpError::Address(a.address.clone()))?;
    if ip.is_ipv4() != (c.address_type == "IP4") {
        return Err(SdpError::Address(a.address.clone()));
    }
    Ok(Some(ip))
}

/// `a=rtcp:<port> [IN IP4 <addr>]` (RFC 3605).
fn parse_rtcp_attribute(v: &str, default_ip: IpAddr) -> Result<SocketAddr, SdpError> {
    let mut it = v.split_ascii_whitespace();
    let port_text = it.next().unwrap_or("");
    let port: u16 = port_text
        .parse()
        .map_err(|_| SdpError::Port(port_text.to_owned()))?;
    let ip = match (it.next(), it.next(), it.next()) {
        (Some(_), Some(_), Some(addr)) => addr
            .parse()
            .map_err(|_| SdpError::Address(addr.to_owned()))?,
        _ => default_ip,
    };
    Ok(SocketAddr::new(ip, port))
}

/// `a=rtpmap:<pt> <name>/<rate>[/<channels>]`.
fn parse_rtpmap(v: &str) -> Option<(u8, &str, u32)> {
    let (pt, rest) = v.split_once(' ')?;
    let pt: u8 = pt.trim().parse().ok().filter(|p| *p < 128)?;
    let mut parts = rest.trim().split('/');
    let name = parts.next()?;
    let rate: u32 = parts.next()?.parse().ok().filter(|r| *r > 0)?;
    Some((pt, name, rate))
}

/// One line of the original body: its text without the line ending, and
/// where it sits in the body.
struct Line<'a> {
    text: &'a [u8],
    start: usize,
}

fn lines(sdp: &[u8]) -> impl Iterator<Item = Line<'_>> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= sdp.len() {
            return None;
        }
        let line_start = pos;
        let end = sdp[line_start..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(sdp.len(), |i| line_start + i);
        pos = end + 1;
        // The parser skips leading white space (even a lone CR) before a
        // line's type letter (found by fuzzing), so the scan does too.
        let start = sdp[line_start..end]
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .map_or(end, |i| line_start + i);
        let mut text = &sdp[start..end];
        if let [head @ .., b'\r'] = text {
            text = head;
        }
        Some(Line { text, start })
    })
}

/// Spans `(start, end)` of the whitespace-separated tokens of `line` from `skip` on.
fn tokens(line: &[u8], skip: usize) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, b) in line.iter().enumerate().skip(skip) {
        match (b.is_ascii_whitespace(), start) {
            (true, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, line.len()));
    }
    spans
}

/// Rewrites `sdp` so that the media of each `m=` line is sent to `address` on
/// `ports[i]` (RTCP to `ports[i] + 1`). `ports[i] == None` leaves the line as
/// it is (used for disabled streams, port 0). Connection lines with an
/// unspecified address (`0.0.0.0`, hold) are left alone.
pub fn rewrite(sdp: &[u8], address: IpAddr, ports: &[Option<u16>]) -> Result<Vec<u8>, SdpError> {
    // Validates the body and the m= count before touching any byte.
    let media = SdpMedia::parse(sdp)?;
    if media.streams.len() != ports.len() {
        return Err(SdpError::PortCount {
            expected: media.streams.len(),
            given: ports.len(),
        });
    }
    let addr_type = if address.is_ipv4() { "IP4" } else { "IP6" };
    let mut out = Vec::with_capacity(sdp.len() + 32);
    let mut copied = 0;
    // Index of the current m= section; None while in the session part.
    let mut section: Option<usize> = None;
    let edit = |out: &mut Vec<u8>, copied: &mut usize, from: usize, to: usize, text: &[u8]| {
        out.extend_from_slice(&sdp[*copied..from]);
        out.extend_from_slice(text);
        *copied = to;
    };
    for line in lines(sdp) {
        let t = line.text;
        let at = |offset: usize| line.start + offset;
        if t.starts_with(b"m=") {
            let i = section.map_or(0, |s| s + 1);
            section = Some(i);
            let Some(port) = ports[i] else { continue };
            // "m=<media> <port>[/<count>] ...": replace only the port digits.
            let Some(&(from, to)) = tokens(t, 2).get(1) else {
                continue;
            };
            // The whole field before any "/count" is replaced: the parser also
            // accepts forms such as "+04" (found by fuzzing).
            let field = t[from..to].iter().take_while(|b| **b != b'/').count();
            edit(
                &mut out,
                &mut copied,
                at(from),
                at(from + field),
                port.to_string().as_bytes(),
            );
        } else if t.starts_with(b"c=") {
            if let Some(i) = section {
                if ports[i].is_none() {
                    continue;
                }
            }
            // "c=IN IP4 <addr>[/ttl]": replace "<addrtype> <addr>[/...]".
            let toks = tokens(t, 2);
            let (Some(&(type_from, _)), Some(&(addr_from, addr_to))) = (toks.get(1), toks.get(2))
            else {
                continue;
            };
            let addr = &t[addr_from..addr_to];
            let addr = addr.split(|b| *b == b'/').next().unwrap_or(addr);
            let unspecified = std::str::from_utf8(addr)
                .ok()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .is_some_and(|a| a.is_unspecified());
            if unspecified {
                continue;
            }
            edit(
                &mut out,
                &mut copied,
                at(type_from),
                at(addr_to),
                format!("{addr_type} {address}").as_bytes(),
            );
        } else if t.starts_with(b"a=rtcp:") {
            let Some(Some(port)) = section.map(|i| ports[i]) else {
                continue;
            };
            // "a=rtcp:<port> [IN IP4 <addr>]".
            let toks = tokens(t, 7);
            let Some(&(from, to)) = toks.first() else {
                continue;
            };
            let rtcp_port = port.wrapping_add(1).to_string();
            edit(
                &mut out,
                &mut copied,
                at(from),
                at(to),
                rtcp_port.as_bytes(),
            );
            if let (Some(&(type_from, _)), Some(&(_, addr_to))) = (toks.get(2), toks.get(3)) {
                edit(
                    &mut out,
                    &mut copied,
                    at(type_from),
                    at(addr_to),
                    format!("{addr_type} {address}").as_bytes(),
                );
            }
        }
    }
    out.extend_from_slice(&sdp[copied..]);
    // Media must never bypass the relay because a line was written in a form
    // the scan did not recognise: check the result as the far end will read it.
    let check = SdpMedia::parse(&out)?;
    for ((before, after), port) in media.streams.iter().zip(&check.streams).zip(ports) {
        let Some(port) = *port else { continue };
        let address_ok = after.rtp.is_none_or(|a| a.ip() == address)
            && before.rtp.is_some() == after.rtp.is_some();
        let rtcp_ok = after
            .rtcp
            .is_none_or(|a| a == SocketAddr::new(address, port.wrapping_add(1)));
        if after.port != port || !address_ok || !rtcp_ok {
            return Err(SdpError::Unrewritable);
        }
    }
    Ok(out)
}
