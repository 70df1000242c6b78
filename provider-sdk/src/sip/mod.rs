//! The SIP layer: a validation layer in front of everything, a listener that
//! answers what it must by itself, and the small types the rest of the code
//! (forwarder, provider gateway) uses to speak about calls without seeing any
//! SIP library type.
//!
//! # Modules
//!
//! - [`wire`]: finds the start line, header fields and body in raw bytes, and
//!   frames messages on streams (TCP/TLS) by Content-Length.
//! - [`grammar`]: checks single header values (URIs, name-addr, Via, CSeq,
//!   Date, media types) against the RFC 3261 grammar.
//! - [`validate`](mod@validate): the verdict for a whole message: accept, reject with the
//!   right status (400 with a Warning saying what, 505, 416, 420 with
//!   Unsupported, 415 with Accept, 406, 405/501 with Allow, 483) or drop
//!   (malformed responses). What the element supports is a [`Policy`].
//! - [`message`]: the validated [`Request`]/[`Response`] views and [`Reply`],
//!   which encodes an answer copying Via/From/To/Call-ID/CSeq.
//! - [`listener`]: UDP and TCP sockets running every message through
//!   [`validate`](mod@validate) before a [`listener::Handler`] sees it.
//! - [`prober`]: OPTIONS probing of provider targets: round-trip time EWMA and
//!   deviation, timeouts, up/down state with hysteresis.
//! - [`call`]: the call-level vocabulary ([`SipTarget`], [`Outcome`],
//!   [`call::HangupCause`], [`call::MediaReport`]), the failover policy that
//!   decides whether a final answer ends the search, and
//!   [`call::MediaAnchor`], the seam through which media is anchored
//!   ([`call::PassThrough`] leaves SDP unchanged).
//! - [`anchor`]: [`anchor::RelayAnchor`], the [`call::MediaAnchor`] backed by
//!   the [`crate::media`] relay: SDP offers and answers of both legs (INVITE,
//!   18x early media, 2xx, re-INVITE, UPDATE) point at the relay, a media
//!   timeout ends the call with BYE to both legs, and per-leg RTP statistics
//!   land in the call record. Plug it in with
//!   `config.media = RelayAnchor::factory(relay)`.
//! - [`transport`]: TCP and TLS for the B2BUA: listeners, outbound
//!   connections reused per target, one task per connection framing the
//!   stream, bounds ([`transport::StreamLimits`]: connections, buffered
//!   bytes, idle time, connect time). Our own rather than rsipstack's,
//!   because rsipstack's transports parse with its lenient parser before
//!   anything else could look at the bytes (see below).
//! - [`b2bua`]: a back-to-back user agent over UDP, TCP and TLS built from
//!   the above: 100 at once, serial failover with a per-attempt deadline,
//!   18x and early media relayed, CANCEL mapped, BYE both ways,
//!   re-INVITE/UPDATE/INFO relayed, a [`b2bua::CallRecord`] per call
//!   (attempts, final status, who hung up and why, media statistics).
//!   Responses go back on the connection their request came on; each
//!   outbound attempt uses its [`SipTarget`]'s transport. It is the harness
//!   the SIPp tests (`tests/sip_b2bua.rs`, `tests/sip_b2bua_streams.rs` over
//!   TCP and TLS, `tests/sip_media.rs` with the relay; scenarios in
//!   `ops/sipp/`) run against.
//!
//! # Building a gateway on it
//!
//! A forwarder or provider gateway binds a [`listener::Listener`] with its own
//! [`listener::Handler`]: the handler only ever sees requests that are
//! syntactically valid, use a supported method, scheme, extension and body
//! type, and it answers with a [`Reply`]. Outbound attempts are described by
//! [`SipTarget`]s; their results are [`Outcome`]s, and
//! [`call::FailoverPolicy::ends_search`] says whether to try the next target.
//! Candidate providers are ranked with [`prober::Prober`], which keeps
//! per-target latency statistics from background and on-demand OPTIONS.
//! [`b2bua::B2bua`] shows the whole flow; a forwarder replaces its fixed
//! target list with the providers it selected for the call, and its
//! [`b2bua::B2buaConfig::media`] factory with [`anchor::RelayAnchor::factory`]
//! (as `examples/sip_b2bua.rs --media-ports` does).
//!
//! rsipstack's parser is more lenient than RFC 3261 and RFC 4475 require (it
//! accepts several of the torture test's invalid messages), so validation
//! runs on raw bytes before any parser: see the tests in
//! `tests/conformance_rfc4475.rs`. For the same reason the B2BUA's stream
//! transports are a small layer of our own on tokio and tokio-rustls (ring
//! provider) instead of rsipstack's: those hand on only what its parser
//! accepted.

pub mod anchor;
pub mod b2bua;
pub mod call;
pub mod control;
pub mod grammar;
pub mod listener;
pub mod message;
pub mod prober;
pub mod transport;
pub mod uac;
pub mod validate;
pub mod wire;

pub use call::{FailoverPolicy, Outcome, SipTarget, Transport};
pub use message::{Method, Reply, Request, Response};
pub use validate::{validate, Policy, Rejection, Verdict};

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// Why validation runs before rsipstack: its parser accepts messages that
    /// RFC 4475 says must be refused. If this ever fails, the validation layer
    /// may be reconsidered, not the other way round.
    #[test]
    fn rsipstack_parser_alone_accepts_invalid_torture_messages() {
        let dir = match std::env::var_os("CONFORMANCE_DIR") {
            Some(d) => PathBuf::from(d),
            None => {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/rfc4475")
            }
        };
        let Ok(manifest) = std::fs::read_to_string(dir.join("manifest.tsv")) else {
            eprintln!(
                "\n*** SKIPPED: RFC 4475 corpus not found at {} ***\n",
                dir.display()
            );
            return;
        };
        let mut lax = Vec::new();
        for line in manifest.lines().filter(|l| !l.starts_with('#')) {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() < 4 || cols[3] != "reject" {
                continue;
            }
            let Ok(bytes) = std::fs::read(dir.join(cols[0])) else {
                panic!("cannot read {}", cols[0]);
            };
            if rsipstack::sip::SipMessage::try_from(bytes.as_slice()).is_ok() {
                lax.push(cols[0]);
            }
        }
        eprintln!("rsipstack 0.7.14 parses these invalid messages without error: {lax:?}");
        assert!(!lax.is_empty());
    }
}
