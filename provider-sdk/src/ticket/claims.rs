//! What a ticket and a usage receipt say.

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use super::error::TicketError;
use crate::money::{parse_price, Currency};
use crate::number::E164;

/// Longest Call-ID accepted in a ticket (RFC 3261 sets no limit; real ones
/// are well under 100 bytes).
pub const MAX_CALL_ID_LEN: usize = 256;
/// Longest payer name (the X.520 bound for a certificate common name).
pub const MAX_PAYER_NAME_LEN: usize = 64;

/// The price the payer agrees to pay for the call. Prices travel as strings
/// (`"0.0125"`) and are read with [`parse_price`], so they are exact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateTerms {
    #[serde(with = "price")]
    pub per_minute: Decimal,
    #[serde(with = "price")]
    pub connect_fee: Decimal,
    /// First billed block, in seconds (>= 1).
    pub first_increment: u32,
    /// Every following block, in seconds (>= 1).
    pub next_increment: u32,
    pub currency: Currency,
    /// Version of the provider's rate table the terms were taken from.
    pub version: u64,
}

impl RateTerms {
    /// Billable seconds of a call that lasted `duration` seconds: nothing
    /// for 0 s, otherwise the first increment plus as many next increments
    /// as needed to cover the rest. `None` if an increment is 0 (such terms
    /// never pass verification) or the result overflows.
    pub fn billable_seconds(&self, duration: u64) -> Option<u64> {
        let first = u64::from(self.first_increment);
        let next = u64::from(self.next_increment);
        if first == 0 || next == 0 {
            return None;
        }
        if duration == 0 {
            return Some(0);
        }
        if duration <= first {
            return Some(first);
        }
        let rest = duration - first;
        let blocks = rest.div_ceil(next);
        first.checked_add(blocks.checked_mul(next)?)
    }

    fn check(&self) -> Result<(), TicketError> {
        if self.first_increment == 0 || self.next_increment == 0 {
            return Err(TicketError::InvalidClaims(
                "billing increments must be at least 1 second".into(),
            ));
        }
        Ok(())
    }
}

/// The claims of a call ticket, signed by the payer.
///
/// `iss` and `aud` are provider ids as in the certificates' roles
/// (`provider:<id>`): ids are what central's directory and the ledger key
/// on, and the verifier compares `iss` with the signer's certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// Payer: provider id of the signer.
    pub iss: u64,
    /// Payer's name (its certificate's common name).
    pub payer: String,
    /// Audience: provider id of the provider asked to carry the call.
    pub aud: u64,
    pub orig: E164,
    pub dest: E164,
    /// SIP Call-ID of the INVITE sent to the provider.
    pub call_id: String,
    pub rate: RateTerms,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    /// Unique ticket id.
    pub jti: Uuid,
}

impl Ticket {
    pub(crate) fn check(&self) -> Result<(), TicketError> {
        if self.payer.is_empty() || self.payer.len() > MAX_PAYER_NAME_LEN {
            return Err(TicketError::InvalidClaims(format!(
                "payer name must be 1 to {MAX_PAYER_NAME_LEN} bytes"
            )));
        }
        if self.call_id.is_empty()
            || self.call_id.len() > MAX_CALL_ID_LEN
            || !self.call_id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(TicketError::InvalidClaims(format!(
                "call_id must be 1 to {MAX_CALL_ID_LEN} printable ASCII characters"
            )));
        }
        if self.exp <= self.iat {
            return Err(TicketError::InvalidClaims("exp must be after iat".into()));
        }
        self.rate.check()
    }
}

/// The claims of a usage receipt: what the payer says the call lasted.
/// Signed by the payer; the provider countersigns the very same payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReceipt {
    /// Payer's provider id (as in the ticket).
    pub iss: u64,
    /// Provider id of the carrier (as in the ticket).
    pub aud: u64,
    /// The ticket's `jti`.
    pub tid: Uuid,
    /// When the call was answered, Unix seconds.
    pub answer: i64,
    /// When the call ended, Unix seconds.
    pub end: i64,
    /// Billable seconds, rounded up by the ticket's increments.
    pub billable: u64,
    /// When the receipt was signed, Unix seconds.
    pub iat: i64,
}

/// Prices as exact decimal strings, read strictly.
mod price {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_price(&s).map_err(serde::de::Error::custom)
    }
}
