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
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_CACHED_CERTIFICATES {
            entries.clear();
        }
        entries.insert(kid.clone(), (der.to_vec(), certified.clone()));
        Ok(certified)
    }
}

/// The same window [`RootCertificate::verify`] applies.
fn check_validity(certified: &CertifiedKey, now: DateTime<Utc>) -> Result<(), PkiError> {
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
