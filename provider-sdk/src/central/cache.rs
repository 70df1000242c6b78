//! The certificate cache behind ticket verification: filled asynchronously
//! by [`CentralClient::prefetch`](super::CentralClient::prefetch), read
//! synchronously (memory only) by the
//! [`TicketVerifier`](crate::ticket::TicketVerifier) through
//! [`CertificateSource`].
//!
//! What a lookup answers, by what central said and when:
//!
//! | central said | within | lookup answers | after that |
//! |---|---|---|---|
//! | valid (or expired / not yet valid) | `ttl` | the certificate, not revoked | unavailable until fetched again |
//! | revoked | forever | the certificate, revoked | — |
//! | unknown key (404) | `negative_ttl` | unknown key | unavailable until fetched again |
//! | nothing yet | — | unavailable | — |
//!
//! So a revocation is seen at most `ttl` after it happened, and a revocation
//! is never forgotten while the entry is held. A stale "valid" entry is
//! served only while central is *unreachable* (the refresh failed with a
//! transient error), for at most `stale_if_unreachable` past its TTL: a
//! central outage must not stop every call of the network, and a
//! certificate revoked during the outage is seen once central answers
//! again. While central is unreachable, a refresh is retried at most every
//! `retry_unreachable` so call setup does not wait on it every time.
//! Set `stale_if_unreachable` to zero to refuse instead ("certificate
//! unavailable"). When the cache is full,
//! entries are dropped (stale ones first); a dropped entry reads as
//! "unavailable", never as valid, so eviction cannot undo a revocation.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::pki::KeyId;
use crate::ticket::{CertificateLookupError, CertificateSource, CertificateStatus};

/// How long answers are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// How long a certificate central called valid is used without asking
    /// again: the longest a revocation can go unseen.
    pub ttl: Duration,
    /// How long "central never certified this key" is remembered (keeps a
    /// flood of tickets with made-up key ids from reaching central).
    pub negative_ttl: Duration,
    /// Most keys held.
    pub capacity: usize,
    /// How long past `ttl` a valid entry is still served while central
    /// cannot be reached.
    pub stale_if_unreachable: Duration,
    /// While central cannot be reached, how often a refresh is tried.
    pub retry_unreachable: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(10),
            capacity: 10_000,
            stale_if_unreachable: Duration::from_secs(3600),
            retry_unreachable: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
enum Entry {
    Current {
        der: Vec<u8>,
        fetched: Instant,
        /// The last refresh failed because central was unreachable.
        unreachable_at: Option<Instant>,
    },
    Revoked {
        der: Vec<u8>,
    },
    Unknown {
        fetched: Instant,
    },
}

/// Certificates by key id as central last described them; see the module
/// docs for what a lookup answers.
#[derive(Debug)]
pub struct CertificateCache {
    settings: CacheSettings,
    entries: Mutex<HashMap<KeyId, Entry>>,
}

impl CertificateCache {
    pub fn new(settings: CacheSettings) -> CertificateCache {
        CertificateCache {
            settings,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn settings(&self) -> CacheSettings {
        self.settings
    }

    /// Whether a lookup of `kid` would be answered from memory now, i.e.
    /// whether [`prefetch`](super::CentralClient::prefetch) has nothing to do.
    pub fn is_fresh(&self, kid: &KeyId) -> bool {
        let entries = self.entries.lock();
        entries
            .get(kid)
            .is_some_and(|e| self.fresh(e, Instant::now()))
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops what is known about `kid` (the next lookup is "unavailable"
    /// until it is fetched again).
    pub fn forget(&self, kid: &KeyId) {
        self.entries.lock().remove(kid);
    }

    /// A stale valid entry still usable because central is unreachable.
    fn served_stale(&self, entry: &Entry, now: Instant) -> bool {
        match entry {
            Entry::Current {
                fetched,
                unreachable_at: Some(_),
                ..
            } => {
                now.duration_since(*fetched)
                    < self.settings.ttl + self.settings.stale_if_unreachable
            }
            _ => false,
        }
    }

    /// Whether a refresh should wait (central was unreachable moments ago).
    fn retry_later(&self, entry: &Entry, now: Instant) -> bool {
        match entry {
            Entry::Current {
                unreachable_at: Some(at),
                ..
            } => {
                self.served_stale(entry, now)
                    && now.duration_since(*at) < self.settings.retry_unreachable
            }
            _ => false,
        }
    }

    /// Central could not be reached to refresh `kid`: its valid entry may
    /// be served stale (see the module docs).
    pub(crate) fn mark_unreachable(&self, kid: &KeyId) {
        if let Some(Entry::Current { unreachable_at, .. }) = self.entries.lock().get_mut(kid) {
            *unreachable_at = Some(Instant::now());
        }
    }

    /// Whether [`prefetch`](super::CentralClient::prefetch) should skip
    /// central now: the entry is fresh, or central was unreachable moments ago.
    pub(crate) fn skip_fetch(&self, kid: &KeyId) -> bool {
        let now = Instant::now();
        self.entries
            .lock()
            .get(kid)
            .is_some_and(|e| self.fresh(e, now) || self.retry_later(e, now))
    }

    fn fresh(&self, entry: &Entry, now: Instant) -> bool {
        match entry {
            Entry::Current { fetched, .. } => now.duration_since(*fetched) < self.settings.ttl,
            Entry::Revoked { .. } => true,
            Entry::Unknown { fetched } => now.duration_since(*fetched) < self.settings.negative_ttl,
        }
    }

    /// Records central's answer for `kid`. A revoked entry stays revoked
    /// even if a later answer (from another central instance not yet in
    /// step) calls it valid.
    pub(crate) fn record(&self, kid: &KeyId, answer: Option<CertificateStatus>) {
        let now = Instant::now();
        let mut entries = self.entries.lock();
        if let Some(Entry::Revoked { .. }) = entries.get(kid) {
            return;
        }
        if !entries.contains_key(kid) && entries.len() >= self.settings.capacity.max(1) {
            self.make_room(&mut entries, now);
        }
        let entry = match answer {
            None => Entry::Unknown { fetched: now },
            Some(s) if s.revoked => Entry::Revoked { der: s.der },
            Some(s) => Entry::Current {
                der: s.der,
                fetched: now,
                unreachable_at: None,
            },
        };
        entries.insert(kid.clone(), entry);
    }

    /// Drops stale entries, and when none were stale, the oldest current
    /// one (or any one: every dropped entry reads as "unavailable").
    fn make_room(&self, entries: &mut HashMap<KeyId, Entry>, now: Instant) {
        entries.retain(|_, e| self.fresh(e, now));
        if entries.len() < self.settings.capacity.max(1) {
            return;
        }
        let victim = entries
            .iter()
            .filter_map(|(k, e)| match e {
                Entry::Current { fetched, .. } | Entry::Unknown { fetched } => Some((k, *fetched)),
                Entry::Revoked { .. } => None,
            })
            .min_by_key(|(_, fetched)| *fetched)
            .map(|(k, _)| k.clone())
            .or_else(|| entries.keys().next().cloned());
        if let Some(k) = victim {
            entries.remove(&k);
        }
    }
}

impl CertificateSource for CertificateCache {
    fn certificate(&self, kid: &KeyId) -> Result<CertificateStatus, CertificateLookupError> {
        let now = Instant::now();
        let entries = self.entries.lock();
        match entries.get(kid) {
            Some(Entry::Revoked { der }) => Ok(CertificateStatus {
                der: der.clone(),
                revoked: true,
            }),
            Some(e @ Entry::Current { der, .. })
                if self.fresh(e, now) || self.served_stale(e, now) =>
            {
                Ok(CertificateStatus {
                    der: der.clone(),
                    revoked: false,
                })
            }
            Some(e @ Entry::Unknown { .. }) if self.fresh(e, now) => {
                Err(CertificateLookupError::Unknown)
            }
            Some(_) => Err(CertificateLookupError::Unavailable(format!(
                "the certificate of key {kid} was not fetched from central in the last {:?}",
                self.settings.ttl
            ))),
            None => Err(CertificateLookupError::Unavailable(format!(
                "the certificate of key {kid} has not been fetched from central"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kid(n: u8) -> KeyId {
        format!("{n:032x}").parse().unwrap()
    }

    fn status(revoked: bool) -> Option<CertificateStatus> {
        Some(CertificateStatus {
            der: vec![1, 2, 3],
            revoked,
        })
    }

    fn cache(ttl_ms: u64, negative_ms: u64, capacity: usize) -> CertificateCache {
        CertificateCache::new(CacheSettings {
            ttl: Duration::from_millis(ttl_ms),
            negative_ttl: Duration::from_millis(negative_ms),
            capacity,
            stale_if_unreachable: Duration::ZERO,
            retry_unreachable: Duration::ZERO,
        })
    }

    #[test]
    fn a_valid_entry_is_served_stale_only_while_central_is_unreachable() {
        let c = CertificateCache::new(CacheSettings {
            ttl: Duration::from_millis(20),
            negative_ttl: Duration::from_millis(20),
            capacity: 10,
            stale_if_unreachable: Duration::from_secs(3600),
            retry_unreachable: Duration::from_secs(3600),
        });
        c.record(&kid(1), status(false));
        std::thread::sleep(Duration::from_millis(30));
        // Stale, and nobody said central is down: unavailable, fetch again.
        assert!(c.certificate(&kid(1)).is_err());
        assert!(!c.skip_fetch(&kid(1)));
        // The refresh failed for want of central: served, retried later.
        c.mark_unreachable(&kid(1));
        assert!(!c.certificate(&kid(1)).unwrap().revoked);
        assert!(c.skip_fetch(&kid(1)));
        // Central answers again and says revoked: revoked at once.
        c.record(&kid(1), status(true));
        assert!(c.certificate(&kid(1)).unwrap().revoked);
        // An unknown key is never served stale.
        c.mark_unreachable(&kid(2));
        assert!(c.certificate(&kid(2)).is_err());
    }

    #[test]
    fn nothing_fetched_is_unavailable() {
        let c = CertificateCache::new(CacheSettings::default());
        assert!(matches!(
            c.certificate(&kid(1)),
            Err(CertificateLookupError::Unavailable(_))
        ));
        assert!(!c.is_fresh(&kid(1)));
    }

    #[test]
    fn valid_entries_expire_and_are_then_unavailable() {
        let c = cache(500, 500, 10);
        c.record(&kid(1), status(false));
        assert!(c.is_fresh(&kid(1)));
        std::thread::sleep(Duration::from_millis(600));
        assert!(!c.is_fresh(&kid(1)));
        let e = c.certificate(&kid(1)).unwrap_err();
        assert!(matches!(e, CertificateLookupError::Unavailable(_)), "{e:?}");
    }

    #[test]
    fn revoked_stays_revoked() {
        let c = cache(10, 10, 10);
        c.record(&kid(1), status(true));
        std::thread::sleep(Duration::from_millis(20));
        assert!(c.certificate(&kid(1)).unwrap().revoked);
        // A later "valid" (a lagging instance) does not undo it.
        c.record(&kid(1), status(false));
        assert!(c.certificate(&kid(1)).unwrap().revoked);
        assert!(c.is_fresh(&kid(1)));
    }

    #[test]
    fn unknown_is_remembered_briefly() {
        let c = cache(60_000, 500, 10);
        c.record(&kid(1), None);
        assert_eq!(
            c.certificate(&kid(1)).unwrap_err(),
            CertificateLookupError::Unknown
        );
        std::thread::sleep(Duration::from_millis(600));
        assert!(matches!(
            c.certificate(&kid(1)),
            Err(CertificateLookupError::Unavailable(_))
        ));
        // Certified since: the answer replaces the negative entry.
        c.record(&kid(1), status(false));
        assert!(!c.certificate(&kid(1)).unwrap().revoked);
    }

    #[test]
    fn full_cache_drops_entries_but_keeps_revocations_over_valid_ones() {
        let c = cache(60_000, 60_000, 3);
        c.record(&kid(1), status(true));
        c.record(&kid(2), status(false));
        c.record(&kid(3), status(false));
        c.record(&kid(4), status(false));
        assert_eq!(c.len(), 3);
        assert!(c.certificate(&kid(1)).unwrap().revoked);
        assert!(matches!(
            c.certificate(&kid(2)),
            Err(CertificateLookupError::Unavailable(_))
        ));
        assert!(!c.certificate(&kid(4)).unwrap().revoked);
    }
}
