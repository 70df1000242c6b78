//! Central's route answers, cached per destination with a TTL.
//!
//! A fresh answer is used as is; after the TTL central is asked again, and
//! when central cannot be reached (or answers 5xx) the last answer is used
//! stale, for at most `stale_for`, so calls go on through a central outage.
//! With nothing cached and central unreachable the lookup fails at once
//! with [`RouteError::Unavailable`] (the call gets 503): the client's short
//! timeouts bound how long that takes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use provider_sdk::central::{CentralClient, CentralError, Route, RouteQuery};
use provider_sdk::money::Currency;
use provider_sdk::number::E164;
use rust_decimal::Decimal;

/// Most destinations cached; when full, expired answers go first, then all.
const MAX_ENTRIES: usize = 100_000;
/// An answer naming no provider is kept at most this long (a provider that
/// just published its deck is seen soon).
const NEGATIVE_TTL: Duration = Duration::from_secs(10);

/// Where an answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Asked of central just now.
    Central,
    /// From the cache, within its TTL.
    Cached,
    /// From the cache past its TTL, because central could not be reached.
    Stale,
}

impl Freshness {
    pub fn as_str(self) -> &'static str {
        match self {
            Freshness::Central => "central",
            Freshness::Cached => "cached",
            Freshness::Stale => "stale",
        }
    }
}

/// Why no routes could be had.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// Central is unreachable and nothing usable is cached.
    #[error("central unreachable and no cached routes: {0}")]
    Unavailable(CentralError),
    /// Central refused the question (a bug or a bad number).
    #[error("central refused the route query: {0}")]
    Refused(CentralError),
}

#[derive(Clone)]
struct Entry {
    routes: Arc<Vec<Route>>,
    fetched: Instant,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct CacheCounters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub stale: AtomicU64,
    pub failures: AtomicU64,
}

/// The cache; cheap to share.
pub struct RouteCache {
    central: CentralClient,
    ttl: Duration,
    stale_for: Duration,
    currency: Currency,
    limit: u16,
    entries: Mutex<HashMap<(E164, Option<Decimal>), Entry>>,
    pub counters: CacheCounters,
}

fn transient(e: &CentralError) -> bool {
    matches!(
        e,
        CentralError::Unreachable { .. } | CentralError::Timeout { .. } | CentralError::Tls { .. }
    ) || e.status().is_some_and(|s| s >= 500)
}

impl RouteCache {
    pub fn new(
        central: CentralClient,
        ttl: Duration,
        stale_for: Duration,
        currency: Currency,
        limit: u16,
    ) -> RouteCache {
        RouteCache {
            central,
            ttl,
            stale_for,
            currency,
            limit,
            entries: Mutex::new(HashMap::new()),
            counters: CacheCounters::default(),
        }
    }

    /// The willing providers for `number` at most at `max_rate`, cheapest first.
    pub async fn lookup(
        &self,
        number: E164,
        max_rate: Option<Decimal>,
    ) -> Result<(Arc<Vec<Route>>, Freshness), RouteError> {
        let key = (number, max_rate);
        let now = Instant::now();
        let cached = self.entries.lock().get(&key).cloned();
        if let Some(e) = &cached {
            let ttl = if e.routes.is_empty() {
                self.ttl.min(NEGATIVE_TTL)
            } else {
                self.ttl
            };
            if now.duration_since(e.fetched) < ttl {
                self.counters.hits.fetch_add(1, Ordering::Relaxed);
                return Ok((e.routes.clone(), Freshness::Cached));
            }
        }
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        let query = RouteQuery {
            max_rate,
            currency: Some(self.currency),
            limit: Some(self.limit),
            ..RouteQuery::new(number)
        };
        match self.central.routes(&query).await {
            Ok(routes) => {
                let routes = Arc::new(routes);
                self.store(key, routes.clone(), now);
                Ok((routes, Freshness::Central))
            }
            Err(e) if transient(&e) => {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                match cached {
                    Some(c) if now.duration_since(c.fetched) < self.ttl + self.stale_for => {
                        self.counters.stale.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%number, error = %e, "central unreachable: using cached routes");
                        Ok((c.routes, Freshness::Stale))
                    }
                    _ => Err(RouteError::Unavailable(e)),
                }
            }
            Err(e) => Err(RouteError::Refused(e)),
        }
    }

    fn store(&self, key: (E164, Option<Decimal>), routes: Arc<Vec<Route>>, now: Instant) {
        let mut entries = self.entries.lock();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            let keep = self.ttl + self.stale_for;
            entries.retain(|_, e| now.duration_since(e.fetched) < keep);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                routes,
                fetched: now,
            },
        );
    }
}
