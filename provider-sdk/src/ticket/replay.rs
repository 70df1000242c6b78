//! A bounded, time-windowed replay cache keyed by ticket id.
//!
//! A ticket id is remembered until its ticket could no longer pass the
//! expiry check (its `exp` plus the clock skew); after that the expiry check
//! refuses the ticket by itself and the entry is dropped. Ticket lifetimes
//! are capped, so the window is bounded; the number of entries is capped
//! too. When the cache is full of live entries it refuses new tickets
//! (failing closed) rather than forgetting ids that could still be replayed.

use std::collections::{BTreeSet, HashMap};

use parking_lot::Mutex;
use uuid::Uuid;

use super::error::TicketError;

/// A thread-safe replay cache; share it (e.g. in an `Arc`) between all
/// tasks that accept tickets.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// ticket id -> forget after (Unix seconds).
    seen: HashMap<Uuid, i64>,
    /// The same entries ordered by when they may be forgotten.
    by_expiry: BTreeSet<(i64, Uuid)>,
}

impl ReplayCache {
    /// A cache holding at most `capacity` ticket ids (at least 1).
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of ticket ids currently remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records `jti` as used until `forget_after` (Unix seconds). Fails with
    /// [`TicketError::Replayed`] if it is already recorded, or
    /// [`TicketError::ReplayCacheFull`] if no room is left at `now`.
    pub fn check_and_insert(
        &self,
        jti: Uuid,
        forget_after: i64,
        now: i64,
    ) -> Result<(), TicketError> {
        let mut inner = self.inner.lock();
        inner.purge(now);
        if inner.seen.contains_key(&jti) {
            return Err(TicketError::Replayed(jti));
        }
        if inner.seen.len() >= self.capacity {
            return Err(TicketError::ReplayCacheFull);
        }
        inner.seen.insert(jti, forget_after);
        inner.by_expiry.insert((forget_after, jti));
        Ok(())
    }
}

impl Inner {
    /// Drops every entry that may be forgotten at `now`.
    fn purge(&mut self, now: i64) {
        while let Some(&(at, jti)) = self.by_expiry.first() {
            if at >= now {
                break;
            }
            self.by_expiry.pop_first();
            self.seen.remove(&jti);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_only_after_the_window() {
        let cache = ReplayCache::new(4);
        let id = Uuid::new_v4();
        cache.check_and_insert(id, 100, 0).unwrap();
        assert_eq!(
            cache.check_and_insert(id, 100, 100),
            Err(TicketError::Replayed(id))
        );
        cache.check_and_insert(id, 200, 101).unwrap();
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn full_cache_fails_closed_then_frees_expired_room() {
        let cache = ReplayCache::new(2);
        cache.check_and_insert(Uuid::new_v4(), 10, 0).unwrap();
        cache.check_and_insert(Uuid::new_v4(), 20, 0).unwrap();
        assert_eq!(
            cache.check_and_insert(Uuid::new_v4(), 30, 5),
            Err(TicketError::ReplayCacheFull)
        );
        cache.check_and_insert(Uuid::new_v4(), 30, 11).unwrap();
        assert_eq!(cache.len(), 2);
    }
}
