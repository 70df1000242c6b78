//! Certificates already verified against the root, so a busy provider does
//! not re-parse and re-verify the payer's certificate (two more Ed25519
//! verifications and an X.509 parse) on every INVITE.
//!
//! Entries are keyed by key id and hold the exact DER that was verified: a
//! different certificate for the same key is verified afresh. The validity
//! period is re-checked on every use; the revoked flag comes from the
//! [`CertificateSource`](super::CertificateSource) on every use, never from here.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use crate::pki::{CertifiedKey, KeyId, PkiError, RootCertificate, CLOCK_SKEW};

/// Most certificates remembered; when full the cache starts over (payers
/// are few, so this only bounds memory against a flood of distinct keys).
pub const MAX_CACHED_CERTIFICATES: usize = 4096;

#[derive(Debug, Default)]
pub(crate) struct VerifiedCertificates {
    entries: Mutex<HashMap<KeyId, (Vec<u8>, CertifiedKey)>>,
}

impl VerifiedCertificates {
    /// Verifies `der` (issued for `kid`) against `root` at `now`, or reuses
    /// an earlier verification of the very same DER.
    pub(crate) fn verify(
        &self,
        root: &RootCertificate,
        kid: &KeyId,
        der: &[u8],
        now: DateTime<Utc>,
    ) -> Result<CertifiedKey, PkiError> {
        if let Some((cached_der, certified)) = self.entries.lock().get(kid) {
            if cached_der.as_slice() == der {
                check_validity(certified, now)?;
                return Ok(certified.clone());
            }
        }
        let certified = root.verify(der, now)?;
        self.remember(kid, der, &certified);
        Ok(certified)
    }

    /// Verifies that `der` was issued by `root` (signature, key usage, role),
    /// leaving the validity period to the caller ([`check_validity`]): the
    /// ledger checks it at the ticket's `iat`, known only once the claims are
    /// authenticated. Reuses an earlier verification of the very same DER.
    pub(crate) fn verify_issued_by(
        &self,
        root: &RootCertificate,
        kid: &KeyId,
        der: &[u8],
    ) -> Result<CertifiedKey, PkiError> {
        if let Some((cached_der, certified)) = self.entries.lock().get(kid) {
            if cached_der.as_slice() == der {
                return Ok(certified.clone());
            }
        }
        // Verify at an instant inside the certificate's own validity period
        // (its notBefore; the root must have been valid then too).
        let inside = x509_parser::parse_x509_certificate(der)
            .ok()
            .and_then(|(_, c)| DateTime::from_timestamp(c.validity().not_before.timestamp(), 0))
            .unwrap_or_else(Utc::now);
        let certified = root.verify(der, inside)?;
        self.remember(kid, der, &certified);
        Ok(certified)
    }

    fn remember(&self, kid: &KeyId, der: &[u8], certified: &CertifiedKey) {
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_CACHED_CERTIFICATES {
            entries.clear();
        }
        entries.insert(kid.clone(), (der.to_vec(), certified.clone()));
    }
}

/// The same window [`RootCertificate::verify`] applies.
pub(crate) fn check_validity(certified: &CertifiedKey, now: DateTime<Utc>) -> Result<(), PkiError> {
    let skew = chrono::Duration::from_std(CLOCK_SKEW).unwrap_or(chrono::Duration::zero());
    if now + skew < certified.not_before {
        return Err(PkiError::NotYetValid {
            not_before: certified.not_before,
        });
    }
    if now - skew > certified.not_after {
        return Err(PkiError::Expired {
            not_after: certified.not_after,
        });
    }
    Ok(())
}
