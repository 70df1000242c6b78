//! The call-level vocabulary shared with routing and billing code: where an
//! attempt goes ([`SipTarget`]), how it ended ([`Outcome`]), whether a failed
//! attempt ends the search ([`FailoverPolicy`]) and the seam through which
//! the media relay rewrites SDP ([`MediaAnchor`]).

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

/// Transport for reaching a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        })
    }
}

/// Errors in a target description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("target URI must start with sip: or sips:")]
    Scheme,
    #[error("target URI has an invalid host or port: {0}")]
    HostPort(String),
    #[error("target URI is malformed: {0}")]
    Uri(&'static str),
}

/// A place to send an attempt: a SIP URI and the transport to use.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SipTarget {
    uri: String,
    host: String,
    port: u16,
    transport: Transport,
}

impl SipTarget {
    /// Parses `sip:[user@]host[:port][;params]`; `;transport=tcp` selects TCP,
    /// `sips:` selects TLS. The default port is 5060 (5061 for TLS).
    pub fn parse(uri: &str) -> Result<SipTarget, TargetError> {
        let bytes = uri.as_bytes();
        let scheme = super::grammar::scheme(bytes).ok_or(TargetError::Scheme)?;
        let secure = scheme.eq_ignore_ascii_case(b"sips");
        if !secure && !scheme.eq_ignore_ascii_case(b"sip") {
            return Err(TargetError::Scheme);
        }
        super::grammar::check_sip_uri(bytes).map_err(TargetError::Uri)?;
        let rest = &uri[scheme.len() + 1..];
        let after_user = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let mut pieces = after_user.split([';', '?']);
        let hostport = pieces.next().unwrap_or_default();
        let transport_param = pieces
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.eq_ignore_ascii_case("transport"))
            .map(|(_, v)| v.to_ascii_lowercase());
        let transport = match (secure, transport_param.as_deref()) {
            (true, _) | (false, Some("tls")) => Transport::Tls,
            (false, Some("tcp")) => Transport::Tcp,
            (false, None | Some("udp")) => Transport::Udp,
            (false, Some(other)) => {
                return Err(TargetError::HostPort(format!(
                    "unsupported transport {other}"
                )))
            }
        };
        let default_port = if transport == Transport::Tls {
            5061
        } else {
            5060
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, tail) = v6
                .split_once(']')
                .ok_or_else(|| TargetError::HostPort(hostport.into()))?;
            let port = match tail.strip_prefix(':') {
                Some(p) => p
                    .parse()
                    .map_err(|_| TargetError::HostPort(hostport.into()))?,
                None if tail.is_empty() => default_port,
                None => return Err(TargetError::HostPort(hostport.into())),
            };
            (h.to_owned(), port)
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse()
                        .map_err(|_| TargetError::HostPort(hostport.into()))?,
                ),
                None => (hostport.to_owned(), default_port),
            }
        };
        Ok(SipTarget {
            uri: uri.to_owned(),
            host,
            port,
            transport,
        })
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }
    pub fn transport(&self) -> Transport {
        self.transport
    }
    pub fn host(&self) -> &str {
        &self.host
    }
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Resolves the host (an IP literal or a name) to a socket address.
    pub async fn resolve(&self) -> std::io::Result<SocketAddr> {
        let mut addrs = tokio::net::lookup_host((self.host.as_str(), self.port)).await?;
        addrs
            .next()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "host has no address"))
    }
}

impl FromStr for SipTarget {
    type Err = TargetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SipTarget::parse(s)
    }
}

impl fmt::Display for SipTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

/// How one outbound attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx arrived; the call is up.
    Answered,
    /// A final non-2xx answer.
    Rejected { status: u16, reason: String },
    /// No final answer before the attempt's deadline.
    Timeout { after: Duration },
    /// The target could not be reached (connection refused, unreachable, ...).
    TransportError { detail: String },
    /// The caller gave up (CANCEL) before an answer.
    Cancelled,
}

/// Which failed attempts end the search instead of moving on to the next target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverPolicy {
    /// Final answers that belong to the callee (relayed, no further attempts).
    pub stop_codes: Vec<u16>,
}

impl Default for FailoverPolicy {
    fn default() -> Self {
        FailoverPolicy {
            stop_codes: vec![486, 600, 603],
        }
    }
}

impl FailoverPolicy {
    /// True when no further target may be tried after `outcome`.
    pub fn ends_search(&self, outcome: &Outcome) -> bool {
        match outcome {
            Outcome::Answered | Outcome::Cancelled => true,
            Outcome::Rejected { status, .. } => self.stop_codes.contains(status),
            Outcome::Timeout { .. } | Outcome::TransportError { .. } => false,
        }
    }
}

/// Which side of a bridged call an SDP body belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// The inbound (caller) side.
    Caller,
    /// The outbound (callee/provider) side.
    Callee,
}

/// Errors from the media seam.
#[derive(Debug, thiserror::Error)]
#[error("media: {0}")]
pub struct MediaError(pub String);

/// Why an answered call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangupCause {
    /// A leg sent BYE (which one is in the record's `ended_by`).
    Bye,
    /// No RTP flowed on either leg for the media timeout; both legs got BYE.
    MediaTimeout { idle: Duration },
    /// The call reached the plan's maximum duration; both legs got BYE.
    MaxDuration { limit: Duration },
}

/// What one leg's endpoint sent, summed over its media streams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegMedia {
    /// RTP packets received from this leg.
    pub packets: u64,
    /// RTP payload bytes received from this leg (UDP payload).
    pub bytes: u64,
    /// Packets lost according to the sequence numbers (negative: duplicates).
    pub lost: i64,
    /// Largest interarrival jitter over the streams (RFC 3550).
    pub jitter: Duration,
    /// Packets passed on to the other leg.
    pub forwarded: u64,
}

/// Per-leg media statistics of a call, taken when it ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaReport {
    pub caller: LegMedia,
    pub callee: LegMedia,
}

/// Resolves with the idle time once a call's media has stopped.
pub type MediaTimeoutFuture = Pin<Box<dyn Future<Output = Duration> + Send + 'static>>;

/// Where a bridge hands SDP offers and answers so media can be anchored.
/// `from` is the leg the body came from; the result goes to the other leg.
pub trait MediaAnchor: Send + Sync {
    fn offer(&mut self, from: Leg, sdp: &[u8]) -> Result<Vec<u8>, MediaError>;
    fn answer(&mut self, from: Leg, sdp: &[u8]) -> Result<Vec<u8>, MediaError>;
    /// A future that resolves when media stops, counted from now; `None`
    /// when this anchor does not watch media (the bridge then never times out).
    fn media_timeout(&self) -> Option<MediaTimeoutFuture> {
        None
    }
    /// Per-leg statistics so far; `None` when media is not anchored.
    fn report(&self) -> Option<MediaReport> {
        None
    }
}

/// Media flows end to end: SDP is passed on unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThrough;

impl MediaAnchor for PassThrough {
    fn offer(&mut self, _from: Leg, sdp: &[u8]) -> Result<Vec<u8>, MediaError> {
        Ok(sdp.to_vec())
    }
    fn answer(&mut self, _from: Leg, sdp: &[u8]) -> Result<Vec<u8>, MediaError> {
        Ok(sdp.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = SipTarget::parse("sip:+4930@127.0.0.1:5070;transport=tcp").unwrap();
        assert_eq!(
            (t.host(), t.port(), t.transport()),
            ("127.0.0.1", 5070, Transport::Tcp)
        );
        let t = SipTarget::parse("sips:gw.example.net").unwrap();
        assert_eq!((t.port(), t.transport()), (5061, Transport::Tls));
        let t = SipTarget::parse("sip:[::1]:5080").unwrap();
        assert_eq!((t.host(), t.port()), ("::1", 5080));
        assert_eq!(SipTarget::parse("tel:+4930"), Err(TargetError::Scheme));
        assert!(SipTarget::parse("sip:host:99999").is_err());
        assert!(SipTarget::parse("sip:host;transport=carrier-pigeon").is_err());
    }

    #[test]
    fn failover_stops_on_callee_answers_only() {
        let p = FailoverPolicy::default();
        let rejected = |status| Outcome::Rejected {
            status,
            reason: String::new(),
        };
        assert!(p.ends_search(&rejected(486)));
        assert!(p.ends_search(&rejected(603)));
        assert!(!p.ends_search(&rejected(503)));
        assert!(!p.ends_search(&rejected(408)));
        assert!(!p.ends_search(&Outcome::Timeout {
            after: Duration::from_secs(1)
        }));
        assert!(p.ends_search(&Outcome::Cancelled));
    }
}
