use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::number::E164;
use crate::pki::{KeyId, Role};

/// Which part of a compact JWS a decoding error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Header,
    Payload,
    Signature,
}

impl std::fmt::Display for Part {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Payload => "payload",
            Part::Signature => "signature",
        })
    }
}

/// Why a ticket or a usage receipt was refused (or could not be signed).
/// One variant per reason, so the caller can answer `403` with it and tests
/// can tell the reasons apart. [`TicketError::code`] is a short stable token
/// for SIP reason headers and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("token is {len} bytes, more than the {max} allowed")]
    Oversized { len: usize, max: usize },
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token {0} is not base64url without padding")]
    NotBase64(Part),
    #[error("token {part} is not valid JSON of the expected shape: {detail}")]
    InvalidJson { part: Part, detail: String },
    #[error("algorithm {0:?} is not accepted (only EdDSA)")]
    UnsupportedAlgorithm(String),
    #[error("token type {typ:?}/{ppt:?} is not the expected {expected}")]
    WrongTokenType {
        typ: String,
        ppt: String,
        expected: &'static str,
    },
    #[error("signing key {0} has no certificate from central")]
    UnknownKey(KeyId),
    #[error("certificate lookup failed: {0}")]
    CertificateUnavailable(String),
    #[error("certificate is not issued by central's root")]
    CertificateNotFromRoot,
    #[error("certificate expired at {not_after}")]
    CertificateExpired { not_after: DateTime<Utc> },
    #[error("certificate is not valid before {not_before}")]
    CertificateNotYetValid { not_before: DateTime<Utc> },
    #[error("certificate is revoked")]
    CertificateRevoked,
    #[error("unusable certificate: {0}")]
    CertificateInvalid(String),
    #[error("certificate is for key {certified}, not for the key id {kid} the token names")]
    CertificateKeyMismatch { kid: KeyId, certified: KeyId },
    #[error("signer's certificate role {0} may not sign this token")]
    WrongSignerRole(Role),
    #[error("signature does not verify")]
    BadSignature,
    #[error("issuer in the claims does not match the signer's certificate: {0}")]
    IssuerMismatch(String),
    #[error("invalid claims: {0}")]
    InvalidClaims(String),
    #[error("ticket is addressed to provider {found}, not to {expected}")]
    WrongAudience { expected: u64, found: u64 },
    #[error("ticket is for destination {found}, the INVITE is for {expected}")]
    DestinationMismatch { expected: E164, found: E164 },
    #[error("ticket is for another Call-ID")]
    CallIdMismatch,
    #[error("ticket expired at {exp}")]
    Expired { exp: DateTime<Utc> },
    #[error("ticket is issued in the future ({iat})")]
    IssuedInFuture { iat: DateTime<Utc> },
    #[error("ticket lifetime of {secs} s exceeds the {max} s allowed")]
    LifetimeTooLong { secs: i64, max: i64 },
    #[error("ticket {0} was already used")]
    Replayed(Uuid),
    #[error("replay cache is full; try again later")]
    ReplayCacheFull,
    #[error("ticket currency {found} differs from the provider's {expected}")]
    CurrencyMismatch { expected: String, found: String },
    #[error("ticket rate terms are below the provider's: {0}")]
    RateBelowMinimum(String),
    #[error("receipt is not for this ticket: {0}")]
    ReceiptTicketMismatch(String),
    #[error("receipt times are inconsistent: {0}")]
    ReceiptTimesInconsistent(String),
    #[error("receipt claims {found} billable seconds; answer and end times give {expected}")]
    BillableMismatch { expected: u64, found: u64 },
    #[error("countersignature does not cover the payer's receipt")]
    CountersignatureMismatch,
    #[error("payer receipt is signed by key {found}, not by the ticket's key {expected}")]
    ReceiptWrongSigner { expected: KeyId, found: KeyId },
    #[error("provider receipt is signed by {found}, not by the ticket's audience provider:{aud}")]
    CountersignerNotAudience { found: Role, aud: u64 },
    #[error("nothing to settle: the call has 0 billable seconds")]
    NothingBillable,
    #[error("cannot sign: {0}")]
    Signing(String),
}

impl TicketError {
    /// A short, stable token naming the reason (for a SIP `Reason` or
    /// `Warning` header and for metrics labels).
    pub fn code(&self) -> &'static str {
        match self {
            TicketError::Oversized { .. } => "oversized",
            TicketError::Malformed(_) => "malformed",
            TicketError::NotBase64(_) => "not-base64",
            TicketError::InvalidJson { .. } => "invalid-json",
            TicketError::UnsupportedAlgorithm(_) => "unsupported-alg",
            TicketError::WrongTokenType { .. } => "wrong-type",
            TicketError::UnknownKey(_) => "unknown-key",
            TicketError::CertificateUnavailable(_) => "certificate-unavailable",
            TicketError::CertificateNotFromRoot => "certificate-not-from-root",
            TicketError::CertificateExpired { .. } => "certificate-expired",
            TicketError::CertificateNotYetValid { .. } => "certificate-not-yet-valid",
            TicketError::CertificateRevoked => "certificate-revoked",
            TicketError::CertificateInvalid(_) => "certificate-invalid",
            TicketError::CertificateKeyMismatch { .. } => "certificate-key-mismatch",
            TicketError::WrongSignerRole(_) => "wrong-signer-role",
            TicketError::BadSignature => "bad-signature",
            TicketError::IssuerMismatch(_) => "issuer-mismatch",
            TicketError::InvalidClaims(_) => "invalid-claims",
            TicketError::WrongAudience { .. } => "wrong-audience",
            TicketError::DestinationMismatch { .. } => "destination-mismatch",
            TicketError::CallIdMismatch => "call-id-mismatch",
            TicketError::Expired { .. } => "expired",
            TicketError::IssuedInFuture { .. } => "issued-in-future",
            TicketError::LifetimeTooLong { .. } => "lifetime-too-long",
            TicketError::Replayed(_) => "replayed",
            TicketError::ReplayCacheFull => "replay-cache-full",
            TicketError::CurrencyMismatch { .. } => "currency-mismatch",
            TicketError::RateBelowMinimum(_) => "rate-below-minimum",
            TicketError::ReceiptTicketMismatch(_) => "receipt-ticket-mismatch",
            TicketError::ReceiptTimesInconsistent(_) => "receipt-times-inconsistent",
            TicketError::BillableMismatch { .. } => "billable-mismatch",
            TicketError::CountersignatureMismatch => "countersignature-mismatch",
            TicketError::ReceiptWrongSigner { .. } => "receipt-wrong-signer",
            TicketError::CountersignerNotAudience { .. } => "countersigner-not-audience",
            TicketError::NothingBillable => "nothing-billable",
            TicketError::Signing(_) => "signing",
        }
    }
}
