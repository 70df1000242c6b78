//! The settlement ledger: providers submit the tickets of the calls they
//! carried, with the payer's usage receipt and their own; central verifies
//! them again ([`provider_sdk::ticket::LedgerVerifier`]) and stores them
//! ([`crate::db::ledger`]). `POST /v1/tickets` and `GET /v1/settlements`
//! ([`crate::api::tickets`], [`crate::api::settlements`]) are its API.
//!
//! Central is the certificate authority, so signers' certificates come from
//! its own database ([`LedgerCertificates`]), with their revocation times.

use crate::db::ledger::{Claim, NewTicket};
use crate::db::store::{self, StoreError};
use crate::db::Database;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use provider_sdk::pki::KeyId;
use provider_sdk::ticket::settle::trim_token;
use provider_sdk::ticket::{
    CertificateLookupError, CertificateRecord, CertificateSource, CertificateStatus,
    LedgerVerifier, Revocation, SettledTicket, Submission, TicketError, UsageReceipt,
};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a certificate found unrevoked is trusted to stay so before the
/// database is asked again. A revocation made on this instance is seen at
/// once ([`LedgerCertificates::forget`]); one made on another instance
/// sharing the database, within this time.
pub const UNREVOKED_TTL: Duration = Duration::from_secs(10);
/// Most certificates cached; the cache starts over when full.
pub const MAX_CACHED: usize = 4096;

/// The verifier central runs, over its own certificate directory.
pub type Ledger = LedgerVerifier<Arc<LedgerCertificates>>;

/// Builds the ledger's verifier for central's root and database.
pub fn verifier(root: provider_sdk::pki::RootCertificate, db: Database) -> Ledger {
    LedgerVerifier::new(root, Arc::new(LedgerCertificates::new(db)))
}

/// Certificates central issued, read from its database, with a small cache
/// by key id. A revoked certificate is cached for good (revocation is final
/// and its time never changes); an unrevoked one for [`UNREVOKED_TTL`];
/// unknown keys are not cached (they may be certified any moment).
pub struct LedgerCertificates {
    db: Database,
    cache: Mutex<HashMap<KeyId, (CertificateRecord, Instant)>>,
}

impl LedgerCertificates {
    pub fn new(db: Database) -> LedgerCertificates {
        LedgerCertificates {
            db,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Drops a cached certificate (after revoking it here).
    pub fn forget(&self, kid: &KeyId) {
        self.cache.lock().remove(kid);
    }

    fn fetch(&self, kid: &KeyId) -> Result<CertificateRecord, CertificateLookupError> {
        let mut conn = self.db.conn().map_err(|e| {
            tracing::error!(error = %e, "certificate lookup: no database connection");
            CertificateLookupError::Unavailable("central's database is unavailable".into())
        })?;
        let stored = match store::get_certificate(&mut conn, kid.as_str()) {
            Ok(c) => c,
            Err(StoreError::NotFound(_)) => return Err(CertificateLookupError::Unknown),
            Err(e) => {
                tracing::error!(error = %e, "certificate lookup failed");
                return Err(CertificateLookupError::Unavailable(
                    "central's database is unavailable".into(),
                ));
            }
        };
        let der = crate::ca::cert_pem_to_der(&stored.cert_pem).map_err(|e| {
            tracing::error!(key_id = %kid, error = %e, "stored certificate is not PEM");
            CertificateLookupError::Unavailable("stored certificate is unreadable".into())
        })?;
        Ok(CertificateRecord {
            der,
            revocation: match stored.revoked_at {
                Some(at) => Revocation::RevokedAt(at),
                None => Revocation::NotRevoked,
            },
        })
    }
}

impl CertificateSource for LedgerCertificates {
    fn certificate(&self, kid: &KeyId) -> Result<CertificateStatus, CertificateLookupError> {
        self.certificate_record(kid).map(|r| CertificateStatus {
            revoked: r.revocation != Revocation::NotRevoked,
            der: r.der,
        })
    }

    fn certificate_record(&self, kid: &KeyId) -> Result<CertificateRecord, CertificateLookupError> {
        if let Some((record, fetched)) = self.cache.lock().get(kid) {
            if record.revocation != Revocation::NotRevoked || fetched.elapsed() < UNREVOKED_TTL {
                return Ok(record.clone());
            }
        }
        let record = self.fetch(kid)?;
        let mut cache = self.cache.lock();
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(kid.clone(), (record.clone(), Instant::now()));
        Ok(record)
    }
}

/// One submission as posted: the three tokens.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostedSubmission {
    /// The payer's ticket.
    pub ticket: String,
    /// The payer's usage receipt (absent or null if the payer sent none).
    #[serde(default)]
    pub receipt: Option<String>,
    /// The provider's countersignature of `receipt`, or its own receipt.
    pub provider_receipt: String,
}

impl PostedSubmission {
    pub fn as_submission(&self) -> Submission<'_> {
        Submission {
            ticket: &self.ticket,
            payer_receipt: self.receipt.as_deref(),
            provider_receipt: &self.provider_receipt,
        }
    }
}

/// SHA-256 (hex) identifying a submission's content: an identical
/// resubmission has the same, so it is recognised as a duplicate.
pub fn submission_sha256(ticket: &str, payer_receipt: Option<&str>, provider: &str) -> String {
    let mut h = Sha256::new();
    for part in [ticket, payer_receipt.unwrap_or(""), provider] {
        h.update(part.as_bytes());
        // Tokens never contain a newline: an unambiguous separator.
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

fn time(secs: i64) -> Result<DateTime<Utc>, TicketError> {
    DateTime::from_timestamp(secs, 0)
        .ok_or_else(|| TicketError::InvalidClaims(format!("time {secs} out of range")))
}

fn claim(r: &UsageReceipt) -> Result<Claim, TicketError> {
    Ok(Claim {
        answer_at: time(r.answer)?,
        end_at: time(r.end)?,
        billable_seconds: i64::try_from(r.billable)
            .map_err(|_| TicketError::InvalidClaims("billable seconds out of range".into()))?,
    })
}

fn id(v: u64, what: &str) -> Result<i64, TicketError> {
    i64::try_from(v).map_err(|_| TicketError::InvalidClaims(format!("{what} {v} out of range")))
}

/// The row to store for a verified submission.
pub fn new_ticket(
    settled: &SettledTicket,
    posted: &PostedSubmission,
    submitted_by: &str,
    now: DateTime<Utc>,
) -> Result<NewTicket, TicketError> {
    let t = &settled.ticket;
    let ticket_token = trim_token(&posted.ticket);
    let payer_token = posted.receipt.as_deref().map(trim_token);
    let provider_token = trim_token(&posted.provider_receipt);
    let increment = |v: u32| {
        i32::try_from(v)
            .map_err(|_| TicketError::InvalidClaims(format!("billing increment {v} too large")))
    };
    Ok(NewTicket {
        ticket_id: t.jti.hyphenated().to_string(),
        payer_id: id(t.iss, "payer id")?,
        provider_id: id(t.aud, "provider id")?,
        orig: t.orig.to_string(),
        dest: t.dest.to_string(),
        call_id: t.call_id.clone(),
        per_minute: t.rate.per_minute,
        connect_fee: t.rate.connect_fee,
        first_increment: increment(t.rate.first_increment)?,
        next_increment: increment(t.rate.next_increment)?,
        currency: t.rate.currency.to_string(),
        rate_version: id(t.rate.version, "rate version")?,
        issued_at: time(t.iat)?,
        expires_at: time(t.exp)?,
        status: settled.outcome.status(),
        settled: claim(settled.outcome.settled())?,
        amount: settled.amount,
        payer_claim: settled.outcome.payer_claim().map(claim).transpose()?,
        provider_claim: claim(settled.outcome.provider_claim())?,
        submission_sha256: submission_sha256(ticket_token, payer_token, provider_token),
        ticket_token: ticket_token.to_owned(),
        payer_receipt_token: payer_token.map(str::to_owned),
        provider_receipt_token: provider_token.to_owned(),
        submitted_at: now,
        submitted_by: submitted_by.to_owned(),
    })
}
