//! Settlement: the checks central's ledger runs on a provider's submission
//! before storing it.
//!
//! After hangup the provider holds the payer's ticket, usually the payer's
//! usage receipt, and its own receipt: either a countersignature of the
//! payer's receipt ([`TicketSigner::countersign_receipt`](super::TicketSigner::countersign_receipt))
//! or, when it disagrees, its own [`UsageReceipt`] for the same ticket. It
//! submits the three tokens as one [`Submission`]; [`LedgerVerifier`] checks
//! them again and says how the call settles ([`Outcome`]).
//!
//! Tickets reach central after the call, possibly hours later from a
//! provider's queue, so times are judged against the ticket, not the clock:
//!
//! - the payer's certificate must chain to the root, have been valid at the
//!   ticket's `iat` and not revoked at or before it (the certificate source
//!   gives the revocation *time*, [`CertificateSource::certificate_record`]);
//!   an expired ticket is fine, but one whose lifetime exceeds
//!   [`MAX_TICKET_LIFETIME_SECS`] or with `exp <= iat` is not;
//! - the ticket must be addressed to the submitting provider;
//! - the payer's receipt (optional: a payer may never send one) must be
//!   signed with the ticket's own key, by a certificate not revoked when the
//!   receipt was signed, and agree with the ticket ([`check_receipt`]);
//! - the provider's receipt must be signed by a certificate of the ticket's
//!   audience, valid and not revoked when the receipt was signed.
//!
//! Then: the same claims on both receipts settle as [`Outcome::Agreed`]
//! (a countersignature covers the very payload bytes; two receipts whose
//! claims are equal say the same thing), different claims as
//! [`Outcome::Disputed`] (both kept), the provider's receipt alone as
//! [`Outcome::ProviderOnly`]. A call with 0 billable seconds on every claim
//! has nothing to settle and is refused ([`TicketError::NothingBillable`]).
//!
//! ```no_run
//! # use provider_sdk::ticket::{CertificateSource, LedgerVerifier, Submission};
//! # fn ingest<S: CertificateSource>(ledger: &LedgerVerifier<S>, ticket: &str, receipt: &str, mine: &str) {
//! let submission = Submission { ticket, payer_receipt: Some(receipt), provider_receipt: mine };
//! // 42: the provider that submitted (its client certificate's id).
//! match ledger.verify_submission(&submission, 42, chrono::Utc::now()) {
//!     Ok(settled) => { /* store settled.ticket, settled.outcome, settled.amount */ }
//!     Err(reason) => { /* refuse with reason.code() */ }
//! }
//! # }
//! ```
//!
//! [`LedgerVerifier::verify_batch`] checks many submissions with Ed25519
//! batch verification: every signature of a chunk of
//! [`BATCH_CHUNK`] submissions in one multiscalar check; only when that
//! fails, halves of it, and the last few submissions one by one to name the
//! bad one. Batch verification accepts
//! what single verification accepts; the exception is a signature its
//! signer deliberately built with small-order components, which only harms
//! that signer (small-order *keys* are refused outright).

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, VerifyingKey};
use rust_decimal::Decimal;

use super::certcache::{check_validity, VerifiedCertificates};
use super::claims::{RateTerms, Ticket, UsageReceipt};
use super::error::TicketError;
use super::jws::{self, DecodedJws};
use super::verify::{
    at, certificate_error, check_issuer, check_receipt, claims, CertificateLookupError,
    CertificateSource, Revocation, MAX_CALL_SECS, MAX_TICKET_LIFETIME_SECS, TICKET_CLOCK_SKEW_SECS,
};
use super::{PPT_RECEIPT, PPT_TICKET};
use crate::pki::{CertifiedKey, PkiError, Role, RootCertificate};

/// Submissions whose signatures are verified together in one batch (3
/// signatures each; larger batches are cheaper per signature, see
/// BENCHMARKS.md).
pub const BATCH_CHUNK: usize = 256;
/// A failed batch is split in halves down to this many submissions, then
/// verified one by one.
pub const BISECT_LEAF: usize = 4;

/// What a provider submits for one call: the tokens as received and signed.
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    /// The payer's ticket.
    pub ticket: &'a str,
    /// The payer's usage receipt, if the payer sent one.
    pub payer_receipt: Option<&'a str>,
    /// The provider's countersignature of `payer_receipt`, or its own receipt.
    pub provider_receipt: &'a str,
}

/// A token without the blanks a transport may add around it: the form
/// verified, and so the form to store and compare.
pub fn trim_token(token: &str) -> &str {
    token.trim_matches(|c| c == ' ' || c == '\t')
}

/// How a call settles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Both sides signed the same claims.
    Agreed(UsageReceipt),
    /// Both signed receipts for the ticket, with different claims.
    Disputed {
        payer: UsageReceipt,
        provider: UsageReceipt,
    },
    /// Only the provider's receipt exists (the payer sent none).
    ProviderOnly(UsageReceipt),
}

/// [`Outcome`] without its claims, as stored and reported
/// (`agreed`, `disputed`, `provider_only`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SettlementStatus {
    Agreed,
    Disputed,
    ProviderOnly,
}

impl SettlementStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SettlementStatus::Agreed => "agreed",
            SettlementStatus::Disputed => "disputed",
            SettlementStatus::ProviderOnly => "provider_only",
        }
    }

    /// The inverse of [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<SettlementStatus> {
        match s {
            "agreed" => Some(SettlementStatus::Agreed),
            "disputed" => Some(SettlementStatus::Disputed),
            "provider_only" => Some(SettlementStatus::ProviderOnly),
            _ => None,
        }
    }
}

impl std::fmt::Display for SettlementStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Outcome {
    pub fn status(&self) -> SettlementStatus {
        match self {
            Outcome::Agreed(_) => SettlementStatus::Agreed,
            Outcome::Disputed { .. } => SettlementStatus::Disputed,
            Outcome::ProviderOnly(_) => SettlementStatus::ProviderOnly,
        }
    }

    /// The claim the call settles on: the agreed one, the provider's when it
    /// alone signed, and for a dispute the one with fewer billable seconds
    /// (what both sides' evidence supports at least).
    pub fn settled(&self) -> &UsageReceipt {
        match self {
            Outcome::Agreed(r) | Outcome::ProviderOnly(r) => r,
            Outcome::Disputed { payer, provider } => {
                if provider.billable < payer.billable {
                    provider
                } else {
                    payer
                }
            }
        }
    }

    /// What the payer signed, if it sent a receipt.
    pub fn payer_claim(&self) -> Option<&UsageReceipt> {
        match self {
            Outcome::Agreed(r) => Some(r),
            Outcome::Disputed { payer, .. } => Some(payer),
            Outcome::ProviderOnly(_) => None,
        }
    }

    /// What the provider signed.
    pub fn provider_claim(&self) -> &UsageReceipt {
        match self {
            Outcome::Agreed(r) | Outcome::ProviderOnly(r) => r,
            Outcome::Disputed { provider, .. } => provider,
        }
    }
}

/// A submission that passed every check.
#[derive(Debug, Clone)]
pub struct SettledTicket {
    pub ticket: Ticket,
    /// The payer's certificate (signed the ticket and its receipt).
    pub payer: CertifiedKey,
    /// The provider's certificate (signed the provider receipt).
    pub provider: CertifiedKey,
    pub outcome: Outcome,
    /// What the call costs at the settled claim ([`amount`]).
    pub amount: Decimal,
}

/// The price of `billable_seconds` at `rate`: `connect_fee + per_minute ×
/// billable_seconds / 60`, nothing for 0 seconds. Not rounded to any
/// currency unit: exact whenever the quotient terminates (always when the
/// billable seconds are a multiple of 3), otherwise to the 28 significant
/// digits of [`Decimal`]. `None` on overflow.
pub fn amount(rate: &RateTerms, billable_seconds: u64) -> Option<Decimal> {
    if billable_seconds == 0 {
        return Some(Decimal::ZERO);
    }
    let seconds = Decimal::from(billable_seconds);
    let usage = rate
        .per_minute
        .checked_mul(seconds)?
        .checked_div(Decimal::from(60))?;
    rate.connect_fee.checked_add(usage).map(|d| d.normalize())
}

/// A signer's certificate checked against the root, with its revocation.
#[derive(Debug, Clone)]
struct Signer {
    key: CertifiedKey,
    revocation: Revocation,
}

/// A submission decoded with its signers' certificates found and checked,
/// signatures not yet verified.
struct Prepared<'a> {
    ticket: DecodedJws<'a>,
    payer: Signer,
    payer_receipt: Option<DecodedJws<'a>>,
    provider_receipt: DecodedJws<'a>,
    provider: Signer,
}

impl<'a> Prepared<'a> {
    /// Every (signing input, signature, key) of the submission, in the
    /// order they are checked one by one.
    fn signatures(&self) -> impl Iterator<Item = (&'a [u8], Signature, VerifyingKey)> + '_ {
        let payer = self.payer.key.verifying_key;
        std::iter::once((&self.ticket, payer))
            .chain(self.payer_receipt.iter().map(move |r| (r, payer)))
            .chain(std::iter::once((
                &self.provider_receipt,
                self.provider.key.verifying_key,
            )))
            .map(|(d, k)| (d.signing_input.as_bytes(), d.signature, k))
    }

    fn verify_each(&self) -> Result<(), TicketError> {
        self.ticket
            .verify_signature(&self.payer.key.verifying_key)?;
        if let Some(r) = &self.payer_receipt {
            r.verify_signature(&self.payer.key.verifying_key)?;
        }
        self.provider_receipt
            .verify_signature(&self.provider.key.verifying_key)
    }
}

/// Batch-verifies the signatures of the submissions `which` and marks them
/// verified; when the batch fails, does the same for each half, down to
/// [`BISECT_LEAF`] submissions, which are left for one-by-one verification
/// (it names the bad signature). A few forgeries in a chunk cost a few
/// smaller batches, not a single verification of every signature. Returns
/// whether all of `which` verified; `known_bad` skips the check of a set
/// already known to fail (the second half, when the first one passed).
fn mark_verified(
    prepared: &[Result<Prepared<'_>, TicketError>],
    which: &[usize],
    verified: &mut [bool],
    known_bad: bool,
) -> bool {
    if which.is_empty() {
        return true;
    }
    if !known_bad {
        let (mut inputs, mut signatures, mut keys) = (Vec::new(), Vec::new(), Vec::new());
        for p in which.iter().filter_map(|&i| prepared[i].as_ref().ok()) {
            for (input, signature, key) in p.signatures() {
                inputs.push(input);
                signatures.push(signature);
                keys.push(key);
            }
        }
        if jws::verify_batch(&inputs, &signatures, &keys).is_ok() {
            for &i in which {
                verified[i] = true;
            }
            return true;
        }
    }
    if which.len() > BISECT_LEAF {
        let (a, b) = which.split_at(which.len() / 2);
        let a_ok = mark_verified(prepared, a, verified, false);
        mark_verified(prepared, b, verified, a_ok);
    }
    false
}

/// Verifies submissions for central's ledger; see the [module docs](self).
/// Shareable between threads; it keeps the certificates it verified.
pub struct LedgerVerifier<S> {
    root: RootCertificate,
    certificates: S,
    verified: VerifiedCertificates,
    skew: i64,
}

impl<S: CertificateSource> LedgerVerifier<S> {
    /// A verifier trusting certificates issued by `root`, looked up in
    /// `certificates` (with their revocation times).
    pub fn new(root: RootCertificate, certificates: S) -> Self {
        LedgerVerifier {
            root,
            certificates,
            verified: VerifiedCertificates::default(),
            skew: TICKET_CLOCK_SKEW_SECS,
        }
    }

    pub fn certificates(&self) -> &S {
        &self.certificates
    }

    /// Verifies one submission from provider `submitter` at `now`.
    /// Checks, in order: each token's size, shape, base64, header, `alg`
    /// (EdDSA only) and type; the payer's certificate (known, issued by the
    /// root, for the token's key, a provider's); the payer receipt's key is
    /// the ticket's; the provider's certificate likewise; every signature;
    /// then the claims as the [module docs](self) describe.
    pub fn verify_submission(
        &self,
        submission: &Submission<'_>,
        submitter: u64,
        now: DateTime<Utc>,
    ) -> Result<SettledTicket, TicketError> {
        let prepared = self.prepare(submission)?;
        prepared.verify_each()?;
        self.check(&prepared, submitter, now)
    }

    /// Verifies many submissions from `submitter`, each independently (one
    /// result per submission, in order), their signatures in batches of
    /// [`BATCH_CHUNK`] submissions. A batch that fails is bisected and its
    /// last few submissions verified one by one, so every result is the one
    /// [`verify_submission`](Self::verify_submission) would give.
    pub fn verify_batch(
        &self,
        submissions: &[Submission<'_>],
        submitter: u64,
        now: DateTime<Utc>,
    ) -> Vec<Result<SettledTicket, TicketError>> {
        let mut out = Vec::with_capacity(submissions.len());
        for chunk in submissions.chunks(BATCH_CHUNK) {
            let prepared: Vec<_> = chunk.iter().map(|s| self.prepare(s)).collect();
            let ready: Vec<usize> = (0..prepared.len())
                .filter(|&i| prepared[i].is_ok())
                .collect();
            let mut verified = vec![false; prepared.len()];
            mark_verified(&prepared, &ready, &mut verified, false);
            for (p, verified) in prepared.into_iter().zip(verified) {
                out.push(p.and_then(|p| {
                    if !verified {
                        p.verify_each()?;
                    }
                    self.check(&p, submitter, now)
                }));
            }
        }
        out
    }

    /// Everything that comes before the signatures.
    fn prepare<'a>(&self, s: &Submission<'a>) -> Result<Prepared<'a>, TicketError> {
        let ticket = jws::decode(s.ticket, PPT_TICKET)?;
        let payer = self.signer(&ticket)?;
        let payer_receipt = s
            .payer_receipt
            .map(|r| jws::decode(r, PPT_RECEIPT))
            .transpose()?;
        if let Some(r) = &payer_receipt {
            if r.kid != ticket.kid {
                return Err(TicketError::ReceiptWrongSigner {
                    expected: ticket.kid.clone(),
                    found: r.kid.clone(),
                });
            }
        }
        let provider_receipt = jws::decode(s.provider_receipt, PPT_RECEIPT)?;
        let provider = self.signer(&provider_receipt)?;
        Ok(Prepared {
            ticket,
            payer,
            payer_receipt,
            provider_receipt,
            provider,
        })
    }

    /// Finds a token's certificate and checks it was issued by the root for
    /// the token's key and a provider; its validity period and revocation
    /// are judged later, at the times the claims give.
    fn signer(&self, decoded: &DecodedJws<'_>) -> Result<Signer, TicketError> {
        let record = self
            .certificates
            .certificate_record(&decoded.kid)
            .map_err(|e| match e {
                CertificateLookupError::Unknown => TicketError::UnknownKey(decoded.kid.clone()),
                CertificateLookupError::Unavailable(why) => {
                    TicketError::CertificateUnavailable(why)
                }
            })?;
        let key = self
            .verified
            .verify_issued_by(&self.root, &decoded.kid, &record.der)
            .map_err(certificate_error)?;
        if key.key_id != decoded.kid {
            return Err(TicketError::CertificateKeyMismatch {
                kid: decoded.kid.clone(),
                certified: key.key_id.clone(),
            });
        }
        if !matches!(key.role, Role::Provider(_)) {
            return Err(TicketError::WrongSignerRole(key.role));
        }
        // Batch verification is only as strict as single verification for
        // keys of full order.
        if key.verifying_key.is_weak() {
            return Err(TicketError::CertificateInvalid(
                "certified key is of small order".into(),
            ));
        }
        Ok(Signer {
            key,
            revocation: record.revocation,
        })
    }

    /// `signer`'s certificate (and the root) valid at `t`, not revoked by then.
    fn usable_at(&self, signer: &Signer, t: i64) -> Result<(), TicketError> {
        let when = at(t);
        check_validity(&signer.key, when).map_err(certificate_error)?;
        if t.saturating_sub(self.skew) > self.root.not_after().timestamp() {
            return Err(certificate_error(PkiError::InvalidRoot(format!(
                "root certificate expired at {}",
                self.root.not_after()
            ))));
        }
        if signer.revocation.revoked_by(when) {
            return Err(TicketError::CertificateRevoked);
        }
        Ok(())
    }

    /// A receipt's claims against the ticket, at settlement time.
    fn check_claim(
        &self,
        receipt: &UsageReceipt,
        ticket: &Ticket,
        now: i64,
    ) -> Result<(), TicketError> {
        check_receipt(receipt, ticket, now, self.skew)?;
        // The call was answered while the ticket's INVITE was still being
        // set up, not on another day (that would move it to another period).
        if receipt.answer > ticket.exp.saturating_add(MAX_CALL_SECS) {
            return Err(TicketError::ReceiptTimesInconsistent(
                "answered more than a day after the ticket expired".into(),
            ));
        }
        Ok(())
    }

    /// Everything that comes after the signatures: the claims.
    fn check(
        &self,
        p: &Prepared<'_>,
        submitter: u64,
        now: DateTime<Utc>,
    ) -> Result<SettledTicket, TicketError> {
        let now_s = now.timestamp();
        let ticket: Ticket = claims(&p.ticket)?;
        ticket.check()?;
        check_issuer(&p.payer.key, ticket.iss)?;
        if p.payer.key.subject_cn != ticket.payer {
            return Err(TicketError::IssuerMismatch(
                "payer name differs from the certificate's common name".into(),
            ));
        }
        if ticket.aud != submitter {
            return Err(TicketError::WrongAudience {
                expected: submitter,
                found: ticket.aud,
            });
        }
        let lifetime = ticket.exp.saturating_sub(ticket.iat);
        if lifetime > MAX_TICKET_LIFETIME_SECS {
            return Err(TicketError::LifetimeTooLong {
                secs: lifetime,
                max: MAX_TICKET_LIFETIME_SECS,
            });
        }
        if ticket.iat > now_s.saturating_add(self.skew) {
            return Err(TicketError::IssuedInFuture {
                iat: at(ticket.iat),
            });
        }
        self.usable_at(&p.payer, ticket.iat)?;
        if p.provider.key.role != Role::Provider(ticket.aud) {
            return Err(TicketError::CountersignerNotAudience {
                found: p.provider.key.role,
                aud: ticket.aud,
            });
        }

        let payer_claim = match &p.payer_receipt {
            Some(r) => {
                let claim: UsageReceipt = claims(r)?;
                self.check_claim(&claim, &ticket, now_s)?;
                // Signed by the ticket's key: that certificate must still
                // have been unrevoked when the receipt was signed.
                if p.payer.revocation.revoked_by(at(claim.iat)) {
                    return Err(TicketError::CertificateRevoked);
                }
                Some(claim)
            }
            None => None,
        };
        let countersigned = p
            .payer_receipt
            .as_ref()
            .is_some_and(|r| r.payload_b64 == p.provider_receipt.payload_b64);
        let provider_claim = match (&payer_claim, countersigned) {
            (Some(claim), true) => claim.clone(),
            _ => {
                let claim: UsageReceipt = claims(&p.provider_receipt)?;
                self.check_claim(&claim, &ticket, now_s)?;
                claim
            }
        };
        self.usable_at(&p.provider, provider_claim.iat)?;

        let outcome = match payer_claim {
            Some(payer) if payer == provider_claim => Outcome::Agreed(payer),
            Some(payer) => Outcome::Disputed {
                payer,
                provider: provider_claim,
            },
            None => Outcome::ProviderOnly(provider_claim),
        };
        let most = outcome
            .payer_claim()
            .map_or(0, |c| c.billable)
            .max(outcome.provider_claim().billable);
        if most == 0 {
            return Err(TicketError::NothingBillable);
        }
        let amount = amount(&ticket.rate, outcome.settled().billable)
            .ok_or_else(|| TicketError::InvalidClaims("amount out of range".into()))?;
        Ok(SettledTicket {
            ticket,
            payer: p.payer.key.clone(),
            provider: p.provider.key.clone(),
            outcome,
            amount,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn rate(per_minute: Decimal, connect_fee: Decimal) -> RateTerms {
        RateTerms {
            per_minute,
            connect_fee,
            first_increment: 1,
            next_increment: 1,
            currency: "EUR".parse().unwrap(),
            version: 1,
        }
    }

    #[test]
    fn amounts_are_exact() {
        assert_eq!(amount(&rate(dec!(0.0125), dec!(0)), 60), Some(dec!(0.0125)));
        assert_eq!(
            amount(&rate(dec!(0.0125), dec!(0.01)), 90),
            Some(dec!(0.02875))
        );
        assert_eq!(amount(&rate(dec!(0.021), dec!(0.5)), 0), Some(dec!(0)));
        // 7 s of 0.01/min: 0.00116666…, kept to Decimal's precision.
        let a = amount(&rate(dec!(0.01), dec!(0)), 7).unwrap();
        assert!(a > dec!(0.0011666666) && a < dec!(0.0011666667), "{a}");
        assert_eq!(amount(&rate(Decimal::MAX, dec!(0)), 120), None);
    }

    #[test]
    fn disputes_settle_at_the_lower_claim() {
        let claim = |billable| UsageReceipt {
            iss: 1,
            aud: 2,
            tid: uuid::Uuid::nil(),
            answer: 0,
            end: 0,
            billable,
            iat: 0,
        };
        let d = Outcome::Disputed {
            payer: claim(60),
            provider: claim(120),
        };
        assert_eq!(d.settled().billable, 60);
        assert_eq!(d.provider_claim().billable, 120);
        let d = Outcome::Disputed {
            payer: claim(180),
            provider: claim(120),
        };
        assert_eq!(d.settled().billable, 120);
        assert_eq!(d.status().as_str(), "disputed");
        for s in [
            SettlementStatus::Agreed,
            SettlementStatus::Disputed,
            SettlementStatus::ProviderOnly,
        ] {
            assert_eq!(SettlementStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn revocation_times() {
        let t = at(1_000);
        assert!(!Revocation::NotRevoked.revoked_by(t));
        assert!(Revocation::RevokedAtUnknownTime.revoked_by(t));
        assert!(Revocation::RevokedAt(at(1_000)).revoked_by(t));
        assert!(!Revocation::RevokedAt(at(1_001)).revoked_by(t));
    }
}
