//! Compact JWS (RFC 7515) with EdDSA over Ed25519 (RFC 8037).
//!
//! Written by hand on ed25519-dalek, base64 and serde_json: the network uses
//! exactly one algorithm and one serialisation, so a general JOSE crate would
//! only add algorithm negotiation (the classic source of `alg: none` and key
//! confusion bugs) and dependencies. Here the algorithm is a constant.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::error::{Part, TicketError};
use super::MAX_TOKEN_LEN;
use crate::pki::{KeyId, ParticipantKey};

/// The only `alg` accepted and written.
pub const ALG: &str = "EdDSA";
/// The `typ` of every token (PASSporT, RFC 8225).
pub const TYP: &str = "passport";

/// The protected header of a token. Only `alg` is required when reading,
/// so a header such as `{"alg":"none"}` is refused for its algorithm; the
/// other fields are checked right after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwsHeader {
    pub alg: String,
    #[serde(default)]
    pub typ: String,
    #[serde(default)]
    pub ppt: String,
    /// Key id of the signer ([`KeyId`] as 32 hex digits).
    #[serde(default)]
    pub kid: String,
    /// Where the signer's certificate can be fetched.
    #[serde(default)]
    pub x5u: String,
}

impl JwsHeader {
    /// An EdDSA PASSporT header of private type `ppt` for `kid`.
    pub fn new(ppt: &str, kid: &KeyId, x5u: &str) -> JwsHeader {
        JwsHeader {
            alg: ALG.to_owned(),
            typ: TYP.to_owned(),
            ppt: ppt.to_owned(),
            kid: kid.to_string(),
            x5u: x5u.to_owned(),
        }
    }
}

/// A compact JWS split and decoded, signature not yet checked.
#[derive(Debug, Clone)]
pub struct DecodedJws<'a> {
    pub header: JwsHeader,
    /// The key id of the header, parsed.
    pub kid: KeyId,
    /// `header_b64.payload_b64`: what the signature covers.
    pub signing_input: &'a str,
    /// The base64url payload segment as sent (receipts compare it verbatim).
    pub payload_b64: &'a str,
    pub payload: Vec<u8>,
    pub signature: Signature,
}

impl DecodedJws<'_> {
    /// Checks the signature with `key` (strict: refuses small-order keys
    /// and non-canonical signatures).
    pub fn verify_signature(&self, key: &VerifyingKey) -> Result<(), TicketError> {
        key.verify_strict(self.signing_input.as_bytes(), &self.signature)
            .map_err(|_| TicketError::BadSignature)
    }
}

/// Signs `payload` under `header` and returns the compact serialisation.
pub fn encode(
    header: &JwsHeader,
    payload: &[u8],
    key: &ParticipantKey,
) -> Result<String, TicketError> {
    let header_json =
        serde_json::to_vec(header).map_err(|e| TicketError::Signing(e.to_string()))?;
    let payload_b64 = URL_SAFE_NO_PAD.encode(payload);
    encode_with_payload_b64(&header_json, &payload_b64, key)
}

/// Signs an already encoded payload segment (a countersignature covers the
/// very bytes the payer signed).
pub(crate) fn encode_with_payload_b64(
    header_json: &[u8],
    payload_b64: &str,
    key: &ParticipantKey,
) -> Result<String, TicketError> {
    let mut out = URL_SAFE_NO_PAD.encode(header_json);
    out.push('.');
    out.push_str(payload_b64);
    let signature = key.sign(out.as_bytes());
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(signature.to_bytes()));
    if out.len() > MAX_TOKEN_LEN {
        return Err(TicketError::Signing(format!(
            "token would be {} bytes, more than {MAX_TOKEN_LEN}",
            out.len()
        )));
    }
    Ok(out)
}

/// Splits and decodes a compact JWS, checking (in this order, before any
/// key is looked up) the size cap, the three-part shape, base64url, the
/// header JSON, `alg`, and `typ`/`ppt` against `expected_ppt`.
pub fn decode<'a>(
    token: &'a str,
    expected_ppt: &'static str,
) -> Result<DecodedJws<'a>, TicketError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TicketError::Oversized {
            len: token.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    let token = token.trim_matches(|c| c == ' ' || c == '\t');
    if token.is_empty() {
        return Err(TicketError::Malformed("empty token"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TicketError::Malformed(
            "a compact JWS has exactly three dot-separated parts",
        ));
    };
    if h.is_empty() {
        return Err(TicketError::Malformed("empty JWS header"));
    }
    let header_json = b64(h, Part::Header)?;
    let header: JwsHeader =
        serde_json::from_slice(&header_json).map_err(|e| TicketError::InvalidJson {
            part: Part::Header,
            detail: e.to_string(),
        })?;
    if header.alg != ALG {
        return Err(TicketError::UnsupportedAlgorithm(
            header.alg.chars().take(40).collect(),
        ));
    }
    if header.typ != TYP || header.ppt != expected_ppt {
        return Err(TicketError::WrongTokenType {
            typ: header.typ.chars().take(40).collect(),
            ppt: header.ppt.chars().take(40).collect(),
            expected: expected_ppt,
        });
    }
    // After the alg check, so `alg: none` with its empty signature is named as such.
    if p.is_empty() || s.is_empty() {
        return Err(TicketError::Malformed("empty JWS payload or signature"));
    }
    let kid: KeyId = header
        .kid
        .parse()
        .map_err(|_| TicketError::Malformed("kid is not a key id (32 lowercase hex digits)"))?;
    let payload = b64(p, Part::Payload)?;
    let signature_bytes = b64(s, Part::Signature)?;
    let signature = Signature::from_slice(&signature_bytes)
        .map_err(|_| TicketError::Malformed("signature is not 64 bytes"))?;
    let signing_input = &token[..h.len() + 1 + p.len()];
    Ok(DecodedJws {
        header,
        kid,
        signing_input,
        payload_b64: p,
        payload,
        signature,
    })
}

fn b64(segment: &str, part: Part) -> Result<Vec<u8>, TicketError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| TicketError::NotBase64(part))
}

/// Verifies many signatures at once with ed25519-dalek's batch verification
/// (about twice as fast per signature as one by one; for central's ledger,
/// which ingests tickets in bulk). Fails as a whole: on error, verify one by
/// one to find the culprit.
pub fn verify_batch(
    signing_inputs: &[&[u8]],
    signatures: &[Signature],
    keys: &[VerifyingKey],
) -> Result<(), TicketError> {
    ed25519_dalek::verify_batch(signing_inputs, signatures, keys)
        .map_err(|_| TicketError::BadSignature)
}
