//! [`RelayAnchor`]: the [`MediaAnchor`] that anchors a call's RTP in the
//! [`crate::media`] relay. Offers and answers from either leg (INVITE, 18x,
//! 2xx, re-INVITE, UPDATE) are rewritten to point at the relay's ports, the
//! relay's media timeout is offered to the bridge (not while the call is on
//! hold: the last SDP said `sendonly`, `recvonly`, `inactive` or
//! `c=... 0.0.0.0`), and per-leg RTP statistics are summed into a
//! [`MediaReport`] for the call record.
//!
//! ```no_run
//! use provider_sdk::media::{MediaRelay, RelayConfig};
//! use provider_sdk::sip::anchor::RelayAnchor;
//! use provider_sdk::sip::b2bua::B2buaConfig;
//! # fn demo() -> Result<(), provider_sdk::media::MediaError> {
//! let relay = MediaRelay::new(RelayConfig::loopback(30000..=30999))?;
//! let mut config = B2buaConfig::loopback(vec![]);
//! config.media = RelayAnchor::factory(relay);
//! # Ok(()) }
//! ```

use std::sync::Arc;

use super::b2bua::AnchorFactory;
use super::call::{Leg, LegMedia, MediaAnchor, MediaError, MediaReport, MediaTimeoutFuture};
use crate::media::{self, CallMedia, MediaRelay};

/// Media of one call anchored in the relay; dropping it frees the ports.
#[derive(Debug)]
pub struct RelayAnchor {
    media: CallMedia,
    /// The last SDP exchanged put the call on hold (no RTP is expected).
    on_hold: bool,
}

/// True when an SDP body asks for no (or one-way) media: RFC 3264 hold
/// with a direction attribute, or the RFC 2543 style `c=` address 0.0.0.0.
fn is_hold(sdp: &[u8]) -> bool {
    sdp.split(|b| *b == b'\n').any(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        matches!(line, b"a=sendonly" | b"a=recvonly" | b"a=inactive")
            || (line.starts_with(b"c=") && line.ends_with(b" 0.0.0.0"))
    })
}

/// The caller is the relay's leg A, the callee its leg B.
fn relay_leg(leg: Leg) -> media::Leg {
    match leg {
        Leg::Caller => media::Leg::A,
        Leg::Callee => media::Leg::B,
    }
}

fn seam_error(e: media::MediaError) -> MediaError {
    MediaError(e.to_string())
}

impl RelayAnchor {
    /// Allocates the call's media in `relay` (ports are bound on the first offer).
    pub fn new(relay: &MediaRelay) -> Result<RelayAnchor, MediaError> {
        relay
            .allocate_call()
            .map(|media| RelayAnchor {
                media,
                on_hold: false,
            })
            .map_err(seam_error)
    }

    /// A factory for [`crate::sip::b2bua::B2buaConfig::media`]: one relay call per B2BUA call.
    pub fn factory(relay: MediaRelay) -> AnchorFactory {
        Arc::new(move || RelayAnchor::new(&relay).map(|a| Box::new(a) as Box<dyn MediaAnchor>))
    }

    /// The underlying relay call (ports, detailed statistics).
    pub fn media(&self) -> &CallMedia {
        &self.media
    }

    fn leg_media(&self, leg: Leg) -> LegMedia {
        let stats = self.media.stats(relay_leg(leg));
        stats
            .streams
            .iter()
            .fold(LegMedia::default(), |acc, s| LegMedia {
                packets: acc.packets + s.rtp.packets,
                bytes: acc.bytes + s.rtp.bytes,
                lost: acc.lost + s.rtp.lost,
                jitter: acc.jitter.max(s.rtp.jitter),
                forwarded: acc.forwarded + s.counters.forwarded,
            })
    }
}

impl MediaAnchor for RelayAnchor {
    fn offer(&mut self, from: Leg, sdp: &[u8]) -> Result<Vec<u8>, MediaError> {
        let out = self
            .media
            .rewrite_offer(relay_leg(from), sdp)
            .map_err(seam_error)?;
        self.on_hold = is_hold(sdp);
        Ok(out)
    }

    fn answer(&mut self, from: Leg, sdp: &[u8]) -> Result<Vec<u8>, MediaError> {
        let out = self
            .media
            .rewrite_answer(relay_leg(from), sdp)
            .map_err(seam_error)?;
        self.on_hold = is_hold(sdp);
        Ok(out)
    }

    fn media_timeout(&self) -> Option<MediaTimeoutFuture> {
        if self.on_hold {
            return None;
        }
        let timeout = self.media.timeout();
        Some(Box::pin(async move { timeout.await.idle }))
    }

    fn report(&self) -> Option<MediaReport> {
        Some(MediaReport {
            caller: self.leg_media(Leg::Caller),
            callee: self.leg_media(Leg::Callee),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::is_hold;

    #[test]
    fn hold_is_recognised() {
        let sdp = |extra: &str| {
            format!("v=0\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n{extra}")
        };
        assert!(!is_hold(sdp("").as_bytes()));
        assert!(!is_hold(sdp("a=sendrecv\r\n").as_bytes()));
        assert!(is_hold(sdp("a=sendonly\r\n").as_bytes()));
        assert!(is_hold(sdp("a=recvonly\n").as_bytes()));
        assert!(is_hold(sdp("a=inactive").as_bytes()));
        assert!(is_hold(b"v=0\r\nc=IN IP4 0.0.0.0\r\n"));
        assert!(!is_hold(b"v=0\r\nc=IN IP4 10.0.0.0\r\n"));
    }
}
