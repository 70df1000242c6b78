//! The live route index: the [`RouteIndex`] queries read, plus what each
//! answer needs beside the rate (provider name and SIP addresses).
//!
//! Queries load the current [`Snapshot`] from an `ArcSwap` (lock-free); a
//! background task rebuilds a whole new snapshot from the database off the
//! request path and swaps it in, so no query sees half an update. Rebuild
//! requests coalesce: any number of [`LiveIndex::request_rebuild`] calls
//! while a build runs cause exactly one more build. The task also rebuilds
//! when the index says a scheduled rate takes effect (`next_change`).

use crate::db::store::{self, Provider, RateRow, SipAddress};
use crate::db::Database;
use crate::index::{ProviderKey, ProviderRates, RouteIndex};
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use provider_sdk::money::Currency;
use provider_sdk::number::Prefix;
use provider_sdk::ratedeck::RateEntry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// What answers need about a provider besides its rates.
#[derive(Debug, Clone)]
pub struct ProviderInfo {
    pub id: i64,
    pub name: String,
    pub sip_addresses: Vec<SipAddress>,
}

/// One immutable generation of the index.
pub struct Snapshot {
    pub index: RouteIndex,
    pub providers: HashMap<ProviderKey, ProviderInfo>,
    pub built_at: DateTime<Utc>,
    /// Counts builds; tests and `/health` use it to see a rebuild happened.
    pub generation: u64,
    /// Sum of the indexed providers' rate versions.
    pub rate_version_sum: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

/// Turns a stored line back into the domain type (it was validated on the
/// way in; failure here means the database was edited by hand).
pub fn entry_of(row: RateRow) -> Result<RateEntry, String> {
    let prefix = Prefix::parse(&row.prefix).map_err(|e| format!("prefix {:?}: {e}", row.prefix))?;
    Ok(RateEntry {
        prefix,
        rate_per_minute: row.rate_per_minute,
        connect_fee: row.connect_fee,
        first_increment: row.first_increment,
        next_increment: row.next_increment,
        effective_from: row.effective_from,
        description: row.description,
    })
}

/// The stored form of a rate line.
pub fn row_of(e: &RateEntry) -> RateRow {
    RateRow {
        prefix: e.prefix.digits().to_string(),
        rate_per_minute: e.rate_per_minute,
        connect_fee: e.connect_fee,
        first_increment: e.first_increment,
        next_increment: e.next_increment,
        effective_from: e.effective_from,
        description: e.description.clone(),
    }
}

/// Builds a snapshot from the database (blocking).
pub fn build_snapshot(
    db: &Database,
    as_of: DateTime<Utc>,
    generation: u64,
) -> Result<Snapshot, BuildError> {
    let mut conn = db.conn().map_err(store::StoreError::from)?;
    let decks = store::active_decks(&mut conn)?;
    drop(conn);
    build_from(decks, as_of, generation)
}

fn build_from(
    decks: Vec<(Provider, Vec<RateRow>)>,
    as_of: DateTime<Utc>,
    generation: u64,
) -> Result<Snapshot, BuildError> {
    let mut providers = HashMap::with_capacity(decks.len());
    let mut rates = Vec::with_capacity(decks.len());
    let mut rate_version_sum = 0u64;
    for (p, rows) in decks {
        rate_version_sum += u64::try_from(p.rate_version).unwrap_or(0);
        let key = ProviderKey(
            u32::try_from(p.id)
                .map_err(|_| BuildError::Corrupt(format!("provider id {} too large", p.id)))?,
        );
        let currency = Currency::parse(&p.currency)
            .map_err(|e| BuildError::Corrupt(format!("currency of provider {}: {e}", p.id)))?;
        let entries = rows
            .into_iter()
            .map(entry_of)
            .collect::<Result<Vec<_>, _>>()
            .map_err(BuildError::Corrupt)?;
        rates.push(ProviderRates {
            key,
            currency,
            rate_version: u64::try_from(p.rate_version).unwrap_or(0),
            entries,
        });
        providers.insert(
            key,
            ProviderInfo {
                id: p.id,
                name: p.name,
                sip_addresses: p.sip_addresses,
            },
        );
    }
    Ok(Snapshot {
        index: RouteIndex::build(rates, as_of),
        providers,
        built_at: as_of,
        generation,
        rate_version_sum,
    })
}

/// The live index and its rebuild trigger.
pub struct LiveIndex {
    current: ArcSwap<Snapshot>,
    wake: Notify,
    generation: AtomicU64,
    built: watch::Sender<u64>,
}

impl LiveIndex {
    /// Builds the first snapshot synchronously (blocking).
    pub fn load(db: &Database) -> Result<Arc<LiveIndex>, BuildError> {
        let first = build_snapshot(db, Utc::now(), 1)?;
        let (built, _) = watch::channel(1);
        Ok(Arc::new(LiveIndex {
            current: ArcSwap::from_pointee(first),
            wake: Notify::new(),
            generation: AtomicU64::new(1),
            built,
        }))
    }

    /// The snapshot queries should use now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Asks the rebuild task for a fresh index (cheap; coalesces).
    pub fn request_rebuild(&self) {
        self.wake.notify_one();
    }

    /// A receiver of completed build generations.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.built.subscribe()
    }

    /// Runs the rebuild loop until `stop` fires.
    pub async fn run_rebuilder(
        self: Arc<Self>,
        db: Database,
        metrics: Arc<Metrics>,
        mut stop: watch::Receiver<bool>,
    ) {
        metrics
            .index_entries
            .set(i64::try_from(self.snapshot().index.entry_count()).unwrap_or(i64::MAX));
        loop {
            let next_change = self.snapshot().index.next_change();
            let sleep_for = next_change
                .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                // Re-check at least hourly (clock jumps, long schedules).
                .unwrap_or(Duration::from_secs(3600))
                .min(Duration::from_secs(3600));
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep_for) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
            let started = Instant::now();
            let db2 = db.clone();
            let built =
                tokio::task::spawn_blocking(move || build_snapshot(&db2, Utc::now(), generation))
                    .await;
            match built {
                Ok(Ok(snap)) => {
                    let entries = snap.index.entry_count();
                    self.current.store(Arc::new(snap));
                    metrics
                        .index_rebuild_seconds
                        .observe(started.elapsed().as_secs_f64());
                    metrics
                        .index_entries
                        .set(i64::try_from(entries).unwrap_or(i64::MAX));
                    self.built.send_replace(generation);
                    tracing::info!(
                        generation,
                        entries,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "route index rebuilt"
                    );
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "route index rebuild failed; keeping the previous index");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    self.wake.notify_one();
                }
                Err(e) => {
                    tracing::error!(error = %e, "route index rebuild task failed");
                }
            }
        }
    }
}
