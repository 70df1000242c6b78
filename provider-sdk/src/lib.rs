//! The provider SDK: what every participant of the network uses.
//!
//! - [`number`], [`money`], [`ratedeck`]: phone numbers and prefixes, exact
//!   prices, and rate decks (what a provider charges per destination prefix).
//! - [`pki`]: Ed25519 keys, certificate requests and verification against
//!   central's pinned root, and rustls configurations for mutual TLS.
//! - [`central`]: the client of central: enrollment, rate publishing, route
//!   queries, certificates (cached, honouring revocation) and a durable
//!   queue of ticket submissions.
//! - [`ticket`]: signed call tickets and usage receipts (compact JWS with
//!   EdDSA), and their verification by the carrying provider.
//! - [`sip`]: the SIP layer (validation, B2BUA building blocks, OPTIONS prober).
//!   SIP library types stay inside this module.
//! - [`gateway`]: the reference terminating-provider gateway (binary
//!   `provider-gateway`).
//! - [`dialer`]: a payer placing its own call (binary `dial`).
//! - [`select`]: provider selection by unit cost and latency, with the
//!   decision kept for every call.
//! - [`media`]: the RTP relay, SDP rewriting and per-leg media statistics.

pub mod central;
pub mod dialer;
pub mod gateway;
pub mod media;
pub mod money;
pub mod number;
pub mod pki;
pub mod ratedeck;
pub mod select;
pub mod sip;
pub mod ticket;
