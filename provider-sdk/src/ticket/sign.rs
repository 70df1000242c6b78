//! Signing tickets and receipts (payer) and countersigning receipts (provider).

use super::claims::{Ticket, UsageReceipt};
use super::error::TicketError;
use super::jws::{self, JwsHeader};
use super::{PPT_RECEIPT, PPT_TICKET};
use crate::pki::{KeyId, ParticipantKey};

/// Signs with a participant's key; every token names the key id and the
/// URL of its certificate at central.
pub struct TicketSigner {
    key: ParticipantKey,
    kid: KeyId,
    x5u: String,
}

impl TicketSigner {
    /// `central_url` is central's base URL (`https://central.example:8443`);
    /// tokens point at `{central_url}/v1/certificates/{key_id}`.
    pub fn new(key: ParticipantKey, central_url: &str) -> TicketSigner {
        let kid = key.key_id();
        let x5u = format!(
            "{}/v1/certificates/{kid}",
            central_url.trim_end_matches('/')
        );
        TicketSigner { key, kid, x5u }
    }

    pub fn key_id(&self) -> &KeyId {
        &self.kid
    }

    /// The certificate URL written as `x5u`.
    pub fn certificate_url(&self) -> &str {
        &self.x5u
    }

    /// Signs a ticket; the result goes in the [`TICKET_HEADER`](super::TICKET_HEADER)
    /// of the INVITE. Refuses claims a verifier would refuse as invalid.
    pub fn sign_ticket(&self, ticket: &Ticket) -> Result<String, TicketError> {
        ticket.check()?;
        self.sign(PPT_TICKET, ticket)
    }

    /// Signs a usage receipt as the payer.
    pub fn sign_receipt(&self, receipt: &UsageReceipt) -> Result<String, TicketError> {
        if receipt.end < receipt.answer {
            return Err(TicketError::Signing(
                "receipt ends before it was answered".into(),
            ));
        }
        self.sign(PPT_RECEIPT, receipt)
    }

    /// Countersigns a payer's receipt as the provider: a second JWS over the
    /// very same payload segment, so both signatures provably cover the
    /// same claims. Verify the payer's receipt first
    /// ([`TicketVerifier::verify_receipt`](super::TicketVerifier::verify_receipt)).
    pub fn countersign_receipt(&self, payer_receipt: &str) -> Result<String, TicketError> {
        let decoded = jws::decode(payer_receipt, PPT_RECEIPT)?;
        let header = JwsHeader::new(PPT_RECEIPT, &self.kid, &self.x5u);
        let header_json =
            serde_json::to_vec(&header).map_err(|e| TicketError::Signing(e.to_string()))?;
        jws::encode_with_payload_b64(&header_json, decoded.payload_b64, &self.key)
    }

    fn sign<T: serde::Serialize>(&self, ppt: &str, claims: &T) -> Result<String, TicketError> {
        let payload =
            serde_json::to_vec(claims).map_err(|e| TicketError::Signing(e.to_string()))?;
        jws::encode(
            &JwsHeader::new(ppt, &self.kid, &self.x5u),
            &payload,
            &self.key,
        )
    }
}
