//! Verification of tickets and receipts.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::certcache::VerifiedCertificates;
use super::claims::{Ticket, UsageReceipt};
use super::error::{Part, TicketError};
use super::jws::{self, DecodedJws};
use super::replay::ReplayCache;
use super::{PPT_RECEIPT, PPT_TICKET};
use crate::money::Currency;
use crate::number::E164;
use crate::pki::{CertifiedKey, KeyId, PkiError, Role, RootCertificate};

/// Clock skew allowed between payer and provider for ticket and receipt times.
pub const TICKET_CLOCK_SKEW_SECS: i64 = 30;
/// Longest ticket lifetime (`exp - iat`) accepted; it also bounds how long
/// the replay cache must remember a ticket id.
pub const MAX_TICKET_LIFETIME_SECS: i64 = 600;
/// Default number of ticket ids the replay cache holds.
pub const DEFAULT_REPLAY_CAPACITY: usize = 1 << 20;
/// Longest call a receipt may describe (one day).
pub const MAX_CALL_SECS: i64 = 86_400;

/// A signer's certificate as central knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateStatus {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Central has revoked it.
    pub revoked: bool,
}

/// Whether and since when central has revoked a certificate: the ledger
/// accepts a ticket signed *before* its signer's certificate was revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    NotRevoked,
    /// Revoked at this instant (it stays revoked).
    RevokedAt(DateTime<Utc>),
    /// Revoked, time not known (a source that only has a flag): treated as
    /// revoked for all time, so nothing signed with it is accepted.
    RevokedAtUnknownTime,
}

impl Revocation {
    /// True when the certificate was revoked at or before `t`.
    pub fn revoked_by(&self, t: DateTime<Utc>) -> bool {
        match self {
            Revocation::NotRevoked => false,
            Revocation::RevokedAt(at) => *at <= t,
            Revocation::RevokedAtUnknownTime => true,
        }
    }
}

/// A signer's certificate with its revocation time
/// ([`CertificateSource::certificate_record`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    /// The certificate, DER.
    pub der: Vec<u8>,
    pub revocation: Revocation,
}

impl From<CertificateStatus> for CertificateRecord {
    fn from(s: CertificateStatus) -> CertificateRecord {
        CertificateRecord {
            der: s.der,
            revocation: if s.revoked {
                Revocation::RevokedAtUnknownTime
            } else {
                Revocation::NotRevoked
            },
        }
    }
}

/// Why a certificate could not be looked up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateLookupError {
    /// Central never certified this key.
    #[error("no certificate for this key")]
    Unknown,
    /// The lookup itself failed (central unreachable, bad answer).
    #[error("{0}")]
    Unavailable(String),
}

/// Where the verifier finds signers' certificates by key id. Central's HTTP
/// client implements it (with a cache honouring revocations); tests use a map.
pub trait CertificateSource {
    fn certificate(&self, kid: &KeyId) -> Result<CertificateStatus, CertificateLookupError>;

    /// The certificate with its revocation *time*, for the settlement ledger
    /// ([`LedgerVerifier`](super::LedgerVerifier)), which judges tickets
    /// after the fact. The default derives it from
    /// [`certificate`](Self::certificate): a revoked flag without a time
    /// counts as revoked for all time. Sources that know the time (central's
    /// own database) override it.
    fn certificate_record(&self, kid: &KeyId) -> Result<CertificateRecord, CertificateLookupError> {
        self.certificate(kid).map(CertificateRecord::from)
    }
}

impl<T: CertificateSource + ?Sized> CertificateSource for Arc<T> {
    fn certificate(&self, kid: &KeyId) -> Result<CertificateStatus, CertificateLookupError> {
        (**self).certificate(kid)
    }
    fn certificate_record(&self, kid: &KeyId) -> Result<CertificateRecord, CertificateLookupError> {
        (**self).certificate_record(kid)
    }
}

impl<T: CertificateSource + ?Sized> CertificateSource for &T {
    fn certificate(&self, kid: &KeyId) -> Result<CertificateStatus, CertificateLookupError> {
        (**self).certificate(kid)
    }
    fn certificate_record(&self, kid: &KeyId) -> Result<CertificateRecord, CertificateLookupError> {
        (**self).certificate_record(kid)
    }
}

/// The least a provider accepts for the destination (its current rate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MinimumTerms {
    pub per_minute: Decimal,
    pub connect_fee: Decimal,
    pub first_increment: u32,
    pub next_increment: u32,
    pub currency: Currency,
}

/// What the INVITE that carried the ticket says, and the provider's price.
#[derive(Debug, Clone, Copy)]
pub struct CallExpectation<'a> {
    /// The destination the INVITE asks for.
    pub dest: &'a E164,
    /// The INVITE's Call-ID.
    pub call_id: &'a str,
    /// The provider's current terms for `dest`.
    pub minimum: &'a MinimumTerms,
}

/// A ticket that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedTicket {
    pub ticket: Ticket,
    /// The payer's certificate.
    pub signer: CertifiedKey,
    /// The token as received (forwarded to central with the receipt).
    pub token: String,
}

/// A receipt that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedReceipt {
    pub receipt: UsageReceipt,
    pub payer: CertifiedKey,
    /// The provider's certificate, when a countersignature was verified.
    pub provider: Option<CertifiedKey>,
}

/// Verifies tickets and receipts for one provider (the audience).
pub struct TicketVerifier<S> {
    root: RootCertificate,
    certificates: S,
    provider_id: u64,
    replay: Arc<ReplayCache>,
    verified_certificates: VerifiedCertificates,
    skew: i64,
}

impl<S: CertificateSource> TicketVerifier<S> {
    /// A verifier for provider `provider_id`, trusting certificates issued
    /// by `root`, with its own replay cache of [`DEFAULT_REPLAY_CAPACITY`].
    pub fn new(root: RootCertificate, certificates: S, provider_id: u64) -> Self {
        TicketVerifier {
            root,
            certificates,
            provider_id,
            replay: Arc::new(ReplayCache::new(DEFAULT_REPLAY_CAPACITY)),
            verified_certificates: VerifiedCertificates::default(),
            skew: TICKET_CLOCK_SKEW_SECS,
        }
    }

    /// Shares a replay cache (e.g. between verifiers of several listeners).
    pub fn with_replay_cache(mut self, cache: Arc<ReplayCache>) -> Self {
        self.replay = cache;
        self
    }

    pub fn replay_cache(&self) -> &Arc<ReplayCache> {
        &self.replay
    }

    /// Verifies the ticket of an INVITE. Checks, in order: size, shape,
    /// base64, JSON header, `alg` (EdDSA only), token type; the signer's
    /// certificate (known to central, issued by the root, valid at `now`,
    /// not revoked, a provider); the signature; the claims (issuer matches
    /// the certificate, audience is this provider, destination and Call-ID
    /// match the INVITE, not expired, not issued in the future, lifetime
    /// bounded, rate at least `call.minimum`); and last, not replayed (only
    /// tickets that passed everything else take room in the cache).
    pub fn verify_ticket(
        &self,
        token: &str,
        call: &CallExpectation<'_>,
        now: DateTime<Utc>,
    ) -> Result<VerifiedTicket, TicketError> {
        let (decoded, signer) = self.authenticate(token, PPT_TICKET, now)?;
        let ticket: Ticket = claims(&decoded)?;
        ticket.check()?;
        check_issuer(&signer, ticket.iss)?;
        if signer.subject_cn != ticket.payer {
            return Err(TicketError::IssuerMismatch(
                "payer name differs from the certificate's common name".into(),
            ));
        }
        if ticket.aud != self.provider_id {
            return Err(TicketError::WrongAudience {
                expected: self.provider_id,
                found: ticket.aud,
            });
        }
        if ticket.dest != *call.dest {
            return Err(TicketError::DestinationMismatch {
                expected: *call.dest,
                found: ticket.dest,
            });
        }
        if ticket.call_id != call.call_id {
            return Err(TicketError::CallIdMismatch);
        }
        let now_s = now.timestamp();
        if now_s.saturating_sub(self.skew) > ticket.exp {
            return Err(TicketError::Expired {
                exp: at(ticket.exp),
            });
        }
        if ticket.iat > now_s.saturating_add(self.skew) {
            return Err(TicketError::IssuedInFuture {
                iat: at(ticket.iat),
            });
        }
        let lifetime = ticket.exp.saturating_sub(ticket.iat);
        if lifetime > MAX_TICKET_LIFETIME_SECS {
            return Err(TicketError::LifetimeTooLong {
                secs: lifetime,
                max: MAX_TICKET_LIFETIME_SECS,
            });
        }
        check_rate(&ticket, call.minimum)?;
        self.replay
            .check_and_insert(ticket.jti, ticket.exp.saturating_add(self.skew), now_s)?;
        Ok(VerifiedTicket {
            ticket,
            signer,
            token: token.trim_matches(|c| c == ' ' || c == '\t').to_owned(),
        })
    }

    /// Verifies the payer's usage receipt for a ticket this provider
    /// accepted: signed by the ticket's payer, names the ticket, times
    /// consistent, billable seconds as the ticket's increments give.
    pub fn verify_receipt(
        &self,
        receipt: &str,
        ticket: &VerifiedTicket,
        now: DateTime<Utc>,
    ) -> Result<VerifiedReceipt, TicketError> {
        let (decoded, payer) = self.authenticate(receipt, PPT_RECEIPT, now)?;
        let claims: UsageReceipt = claims(&decoded)?;
        if payer.key_id != ticket.signer.key_id {
            return Err(TicketError::ReceiptTicketMismatch(
                "signed by another key than the ticket".into(),
            ));
        }
        check_receipt(&claims, &ticket.ticket, now.timestamp(), self.skew)?;
        Ok(VerifiedReceipt {
            receipt: claims,
            payer,
            provider: None,
        })
    }

    /// Verifies a receipt and its countersignature (what central does before
    /// storing): both verify, cover the same payload, the payer signed the
    /// ticket, the countersigner is the ticket's audience.
    pub fn verify_countersigned(
        &self,
        payer_receipt: &str,
        provider_receipt: &str,
        ticket: &VerifiedTicket,
        now: DateTime<Utc>,
    ) -> Result<VerifiedReceipt, TicketError> {
        let mut verified = self.verify_receipt(payer_receipt, ticket, now)?;
        let (countersigned, provider) = self.authenticate(provider_receipt, PPT_RECEIPT, now)?;
        let payer_payload = payer_receipt
            .trim_matches(|c| c == ' ' || c == '\t')
            .split('.')
            .nth(1);
        if payer_payload != Some(countersigned.payload_b64) {
            return Err(TicketError::CountersignatureMismatch);
        }
        if provider.role != Role::Provider(ticket.ticket.aud) {
            return Err(TicketError::WrongSignerRole(provider.role));
        }
        verified.provider = Some(provider);
        Ok(verified)
    }

    /// Decodes a token, finds and checks its signer's certificate, and checks
    /// the signature. The claims are parsed only after this succeeds.
    fn authenticate<'a>(
        &self,
        token: &'a str,
        ppt: &'static str,
        now: DateTime<Utc>,
    ) -> Result<(DecodedJws<'a>, CertifiedKey), TicketError> {
        let decoded = jws::decode(token, ppt)?;
        let status = self
            .certificates
            .certificate(&decoded.kid)
            .map_err(|e| match e {
                CertificateLookupError::Unknown => TicketError::UnknownKey(decoded.kid.clone()),
                CertificateLookupError::Unavailable(why) => {
                    TicketError::CertificateUnavailable(why)
                }
            })?;
        let certified = self
            .verified_certificates
            .verify(&self.root, &decoded.kid, &status.der, now)
            .map_err(certificate_error)?;
        if certified.key_id != decoded.kid {
            return Err(TicketError::CertificateKeyMismatch {
                kid: decoded.kid.clone(),
                certified: certified.key_id.clone(),
            });
        }
        if status.revoked {
            return Err(TicketError::CertificateRevoked);
        }
        if !matches!(certified.role, Role::Provider(_)) {
            return Err(TicketError::WrongSignerRole(certified.role));
        }
        decoded.verify_signature(&certified.verifying_key)?;
        Ok((decoded, certified))
    }
}

pub(super) fn certificate_error(e: PkiError) -> TicketError {
    match e {
        PkiError::NotSignedByRoot | PkiError::BadSignature => TicketError::CertificateNotFromRoot,
        PkiError::Expired { not_after } => TicketError::CertificateExpired { not_after },
        PkiError::NotYetValid { not_before } => TicketError::CertificateNotYetValid { not_before },
        other => TicketError::CertificateInvalid(other.to_string()),
    }
}

pub(super) fn claims<T: serde::de::DeserializeOwned>(
    decoded: &DecodedJws<'_>,
) -> Result<T, TicketError> {
    serde_json::from_slice(&decoded.payload).map_err(|e| TicketError::InvalidJson {
        part: Part::Payload,
        detail: e.to_string(),
    })
}

pub(super) fn check_issuer(signer: &CertifiedKey, iss: u64) -> Result<(), TicketError> {
    if signer.role != Role::Provider(iss) {
        return Err(TicketError::IssuerMismatch(format!(
            "iss {iss} but the certificate is for {}",
            signer.role
        )));
    }
    Ok(())
}

fn check_rate(ticket: &Ticket, minimum: &MinimumTerms) -> Result<(), TicketError> {
    let rate = &ticket.rate;
    if rate.currency != minimum.currency {
        return Err(TicketError::CurrencyMismatch {
            expected: minimum.currency.to_string(),
            found: rate.currency.to_string(),
        });
    }
    let below = |what: &str, offered: String, wanted: String| {
        Err(TicketError::RateBelowMinimum(format!(
            "{what} {offered} < {wanted}"
        )))
    };
    if rate.per_minute < minimum.per_minute {
        return below(
            "rate per minute",
            rate.per_minute.to_string(),
            minimum.per_minute.to_string(),
        );
    }
    if rate.connect_fee < minimum.connect_fee {
        return below(
            "connect fee",
            rate.connect_fee.to_string(),
            minimum.connect_fee.to_string(),
        );
    }
    // Longer increments bill more, so shorter ones than the provider's are less.
    if rate.first_increment < minimum.first_increment {
        return below(
            "first increment",
            rate.first_increment.to_string(),
            minimum.first_increment.to_string(),
        );
    }
    if rate.next_increment < minimum.next_increment {
        return below(
            "next increment",
            rate.next_increment.to_string(),
            minimum.next_increment.to_string(),
        );
    }
    Ok(())
}

/// Checks a receipt against the ticket it names.
pub fn check_receipt(
    receipt: &UsageReceipt,
    ticket: &Ticket,
    now: i64,
    skew: i64,
) -> Result<(), TicketError> {
    if receipt.tid != ticket.jti {
        return Err(TicketError::ReceiptTicketMismatch(
            "names another ticket id".into(),
        ));
    }
    if receipt.iss != ticket.iss || receipt.aud != ticket.aud {
        return Err(TicketError::ReceiptTicketMismatch(
            "payer or provider differ from the ticket".into(),
        ));
    }
    let inconsistent = |why: &str| Err(TicketError::ReceiptTimesInconsistent(why.into()));
    if receipt.answer < ticket.iat.saturating_sub(skew) {
        return inconsistent("answered before the ticket was issued");
    }
    if receipt.end < receipt.answer {
        return inconsistent("ends before it was answered");
    }
    let duration = receipt.end.saturating_sub(receipt.answer);
    if duration > MAX_CALL_SECS {
        return inconsistent("call longer than a day");
    }
    if receipt.iat < receipt.end.saturating_sub(skew) {
        return inconsistent("signed before the call ended");
    }
    if receipt.iat > now.saturating_add(skew) {
        return inconsistent("signed in the future");
    }
    let expected = u64::try_from(duration)
        .ok()
        .and_then(|d| ticket.rate.billable_seconds(d))
        .ok_or_else(|| TicketError::ReceiptTimesInconsistent("duration out of range".into()))?;
    if receipt.billable != expected {
        return Err(TicketError::BillableMismatch {
            expected,
            found: receipt.billable,
        });
    }
    Ok(())
}

pub(super) fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}
