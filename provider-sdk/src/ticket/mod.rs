//! Signed call tickets and usage receipts.
//!
//! A **ticket** is the payer's signed promise to pay a provider for one call:
//! a compact JWS (RFC 7515) with `alg: EdDSA` (RFC 8037), shaped like a
//! PASSporT (RFC 8225: `typ: passport`, private `ppt: lcr`). Its header names
//! the signer's key id (`kid`) and where central serves its certificate
//! (`x5u`); its claims ([`Ticket`]) name payer (`iss`, provider id, and
//! `payer`, its name), provider (`aud`, provider id), origin and destination
//! (E.164), the INVITE's Call-ID, the agreed [`RateTerms`] (exact decimals as
//! strings), `iat`, `exp` and a unique `jti`. It travels on the INVITE in the
//! [`TICKET_HEADER`] header and is at most [`MAX_TOKEN_LEN`] bytes.
//!
//! A **usage receipt** ([`UsageReceipt`], `ppt: lcr-receipt`) is signed by the
//! payer after hangup: ticket id, answer and end time, billable seconds. The
//! provider countersigns it with a second JWS over the *same payload segment*,
//! so both signatures provably cover byte-identical claims and neither side
//! can later claim another duration.
//!
//! # Payer: signing a ticket
//!
//! ```
//! use provider_sdk::pki::ParticipantKey;
//! use provider_sdk::ticket::{RateTerms, Ticket, TicketSigner, TICKET_HEADER};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let signer = TicketSigner::new(ParticipantKey::generate(), "https://central.example:8443");
//! let now = chrono::Utc::now().timestamp();
//! let ticket = Ticket {
//!     iss: 7,                       // our provider id (certificate role provider:7)
//!     payer: "Home Telecom".into(), // our certificate's common name
//!     aud: 42,                      // the provider chosen to carry the call
//!     orig: "+4930123456".parse()?,
//!     dest: "+441632960001".parse()?,
//!     call_id: "a84b4c76e66710@192.0.2.4".into(),
//!     rate: RateTerms {
//!         per_minute: "0.0125".parse()?,
//!         connect_fee: "0".parse()?,
//!         first_increment: 60,
//!         next_increment: 60,
//!         currency: "EUR".parse()?,
//!         version: 3,
//!     },
//!     iat: now,
//!     exp: now + 60,
//!     jti: uuid::Uuid::now_v7(),
//! };
//! let token = signer.sign_ticket(&ticket)?;
//! // INVITE ... with `X-LCR-Ticket: <token>`
//! assert!(token.len() < 4096 && TICKET_HEADER == "X-LCR-Ticket");
//! # Ok(()) }
//! ```
//!
//! After hangup the payer signs a [`UsageReceipt`] with
//! [`TicketSigner::sign_receipt`] and sends it to the provider.
//!
//! # Provider: verifying a ticket
//!
//! Build one [`TicketVerifier`] at start-up from central's pinned root, a
//! [`CertificateSource`] (central's client with its cache) and the provider's
//! own id, then for every INVITE:
//!
//! ```no_run
//! # use provider_sdk::number::E164;
//! # use provider_sdk::ticket::{CallExpectation, CertificateSource, MinimumTerms, TicketVerifier};
//! # fn on_invite<S: CertificateSource>(
//! #     verifier: &TicketVerifier<S>,
//! #     header_value: &str,
//! #     invite_dest: &E164,
//! #     invite_call_id: &str,
//! #     my_terms: &MinimumTerms,
//! # ) {
//! let call = CallExpectation { dest: invite_dest, call_id: invite_call_id, minimum: my_terms };
//! match verifier.verify_ticket(header_value, &call, chrono::Utc::now()) {
//!     Ok(verified) => { /* accept; keep `verified` for the receipt */ }
//!     Err(reason) => { /* 403 with reason.code() and reason.to_string() */ }
//! }
//! # }
//! ```
//!
//! Every refusal is one [`TicketError`] variant. After hangup,
//! [`TicketVerifier::verify_receipt`] checks the payer's receipt against the
//! verified ticket and [`TicketSigner::countersign_receipt`] countersigns it;
//! central checks both with [`TicketVerifier::verify_countersigned`].
//!
//! # Central: settling
//!
//! The provider submits ticket, payer receipt and its own receipt (a
//! countersignature, or its own claims when it disagrees) to central, whose
//! [`LedgerVerifier`] checks them again, judging times against the ticket
//! rather than the clock, and says whether the call settles agreed,
//! disputed or on the provider's receipt alone (see [`settle`]).
//!
//! # Modules
//!
//! - [`claims`]: [`Ticket`], [`RateTerms`] (with billable-seconds rounding), [`UsageReceipt`].
//! - [`jws`]: compact JWS encode/decode with EdDSA, and batch signature verification.
//! - [`sign`]: [`TicketSigner`], for payers and countersigning providers.
//! - [`verify`]: [`TicketVerifier`], [`CertificateSource`], [`CallExpectation`], [`MinimumTerms`].
//! - [`replay`]: [`ReplayCache`], bounded and time-windowed.
//! - [`settle`]: [`LedgerVerifier`], [`Submission`], [`Outcome`]: central's checks before storing.

mod certcache;
pub mod claims;
mod error;
pub mod jws;
pub mod replay;
pub mod settle;
pub mod sign;
pub mod verify;

pub use claims::{RateTerms, Ticket, UsageReceipt};
pub use error::{Part, TicketError};
pub use replay::ReplayCache;
pub use settle::{LedgerVerifier, Outcome, SettledTicket, SettlementStatus, Submission};
pub use sign::TicketSigner;
pub use verify::{
    CallExpectation, CertificateLookupError, CertificateRecord, CertificateSource,
    CertificateStatus, MinimumTerms, Revocation, TicketVerifier, VerifiedReceipt, VerifiedTicket,
    MAX_TICKET_LIFETIME_SECS, TICKET_CLOCK_SKEW_SECS,
};

/// The SIP header that carries the ticket on an INVITE.
pub const TICKET_HEADER: &str = "X-LCR-Ticket";
/// The SIP header that carries the payer's usage receipt, on the payer's
/// BYE or on its 200 to the provider's BYE.
pub const RECEIPT_HEADER: &str = "X-LCR-Receipt";
/// Largest ticket or receipt accepted, checked before any decoding.
pub const MAX_TOKEN_LEN: usize = 4096;
/// PASSporT `ppt` of a ticket.
pub const PPT_TICKET: &str = "lcr";
/// PASSporT `ppt` of a usage receipt (so one cannot pass for the other).
pub const PPT_RECEIPT: &str = "lcr-receipt";
