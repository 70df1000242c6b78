//! The in-memory route index: which providers will carry a call to a number,
//! and at what price.
//!
//! Build a [`RouteIndex`] from every provider's rate entries as of a moment,
//! then query it with a number and [`RouteCriteria`]:
//!
//! ```
//! use central::index::{ProviderKey, ProviderRates, RouteCriteria, RouteIndex};
//! use provider_sdk::{money::Currency, number::E164, ratedeck::RateDeck};
//!
//! let deck = RateDeck::parse_csv(b"49,0.0100,0,60,60\n4930,0.0080,0,1,1\n").unwrap();
//! let eur = Currency::parse("EUR").unwrap();
//! let index = RouteIndex::build(
//!     vec![ProviderRates { key: ProviderKey(7), currency: eur, rate_version: 3, entries: deck.into_entries() }],
//!     chrono::Utc::now(),
//! );
//! let number = E164::parse("+49 30 123456").unwrap();
//! let routes = index.query(&number, &RouteCriteria { max_rate: None, currency: Some(eur), limit: 10 });
//! assert_eq!(routes[0].prefix.digits(), "4930");
//! ```
//!
//! Each provider appears at most once, with *its own* longest prefix that
//! matches the number; a provider whose longest match is filtered out (too
//! expensive, other currency) is dropped rather than answered with a shorter,
//! cheaper prefix. Results are sorted by rate, then connect fee, then
//! provider key. Only entries in effect at the build's `as_of` are indexed
//! (per prefix, the latest `effective_from <= as_of`); [`RouteIndex::next_change`]
//! says when a scheduled rate takes effect, so the owner can rebuild then.
//!
//! The index is immutable: rebuild it off the request path and swap the
//! whole index (e.g. with `arc-swap`), so no query ever sees half an update.
//! Exclude suspended providers from the input.
//!
//! Layout (why it is small and fast): rate terms (rate, fee, increments) are
//! interned and numbered in price order; every (prefix, provider) pair is a
//! 12-byte posting (provider, term, price rank) grouped by prefix; prefixes
//! are found through an open-addressing table keyed by the prefix digits
//! packed in a `u64`. A query probes at most 15 prefixes of the number, from
//! the longest, marks providers already answered in a per-thread bitset and
//! keeps the cheapest with a partial selection.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};

use chrono::{DateTime, Utc};
use provider_sdk::money::Currency;
use provider_sdk::number::{Prefix, E164, MAX_DIGITS};
use provider_sdk::ratedeck::RateEntry;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A provider's identity inside the index (its directory id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProviderKey(pub u32);

impl fmt::Display for ProviderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One provider's input to [`RouteIndex::build`]: its whole current deck.
#[derive(Debug, Clone)]
pub struct ProviderRates {
    pub key: ProviderKey,
    pub currency: Currency,
    pub rate_version: u64,
    pub entries: Vec<RateEntry>,
}

/// What a route query asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteCriteria {
    /// Drop providers whose rate per minute is above this.
    pub max_rate: Option<Decimal>,
    /// Only providers billing in this currency.
    pub currency: Option<Currency>,
    /// At most this many results (the cheapest).
    pub limit: usize,
}

/// One willing provider and the terms of its longest matching prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouteMatch {
    pub provider: ProviderKey,
    pub prefix: Prefix,
    pub rate_per_minute: Decimal,
    pub connect_fee: Decimal,
    pub first_increment: u32,
    pub next_increment: u32,
    pub rate_version: u64,
    pub currency: Currency,
}

/// An immutable prefix index over all providers' rates (see module docs).
pub struct RouteIndex {
    /// Sorted by key, so a provider's position orders like its key.
    providers: Vec<ProviderInfo>,
    /// Distinct rate terms, sorted by (rate, fee, increments).
    terms: Vec<Terms>,
    /// All (prefix, provider) pairs, grouped by prefix.
    postings: Vec<Posting>,
    table: PrefixTable,
    next_change: Option<DateTime<Utc>>,
    as_of: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy)]
struct ProviderInfo {
    key: ProviderKey,
    currency: Currency,
    rate_version: u64,
}

/// Rate terms with both prices normalised, so equal values have equal
/// bytes and can be hashed as bytes (Decimal's own hash normalises on
/// every call, which dominated the build).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Terms {
    rate_per_minute: Decimal,
    connect_fee: Decimal,
    first_increment: u32,
    next_increment: u32,
}

impl Hash for Terms {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.rate_per_minute.serialize());
        state.write(&self.connect_fee.serialize());
        state.write_u64(u64::from(self.first_increment) << 32 | u64::from(self.next_increment));
    }
}

#[derive(Debug, Clone, Copy)]
struct Posting {
    /// Position in `providers`.
    provider: u32,
    /// Position in `terms`.
    term: u32,
    /// Rank of (rate, fee) among all terms: equal prices share a rank, so
    /// ties fall to the provider key as the ordering demands.
    cost: u32,
}

/// One provider's effective entry, before interning is global.
#[derive(Clone, Copy)]
struct Record {
    key: u64,
    provider: u32,
    term: u32,
}

impl RouteIndex {
    /// Builds the index of every provider's rates in effect at `as_of`.
    ///
    /// Provider keys should be unique; if one repeats, its first occurrence
    /// wins. Uses all available cores.
    pub fn build(mut providers: Vec<ProviderRates>, as_of: DateTime<Utc>) -> RouteIndex {
        providers.sort_by_key(|p| p.key);
        providers.dedup_by_key(|p| p.key);
        let infos: Vec<ProviderInfo> = providers
            .iter()
            .map(|p| ProviderInfo {
                key: p.key,
                currency: p.currency,
                rate_version: p.rate_version,
            })
            .collect();

        // Per thread: pick the entries in effect and intern their terms locally.
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 16);
        let chunk = providers.len().div_ceil(threads).max(1);
        let locals: Vec<LocalBuild> = std::thread::scope(|s| {
            let handles: Vec<_> = providers
                .chunks(chunk)
                .enumerate()
                .map(|(i, part)| s.spawn(move || LocalBuild::run(part, i * chunk, as_of)))
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        drop(providers);

        // Merge the local term tables, then number terms in price order.
        let mut global: HashMap<Terms, u32, FastHash> = HashMap::with_hasher(FastHash::new());
        let mut terms: Vec<Terms> = Vec::new();
        let remaps: Vec<Vec<u32>> = locals
            .iter()
            .map(|l| {
                l.terms
                    .iter()
                    .map(|t| {
                        *global.entry(*t).or_insert_with(|| {
                            terms.push(*t);
                            (terms.len() - 1) as u32
                        })
                    })
                    .collect()
            })
            .collect();
        drop(global);
        let mut order: Vec<u32> = (0..terms.len() as u32).collect();
        order.sort_unstable_by_key(|&i| terms[i as usize]);
        let mut rank_of = vec![0u32; terms.len()];
        for (rank, &old) in order.iter().enumerate() {
            rank_of[old as usize] = rank as u32;
        }
        let sorted_terms: Vec<Terms> = order.iter().map(|&i| terms[i as usize]).collect();
        drop(order);
        let mut cost = Vec::with_capacity(sorted_terms.len());
        let mut current = 0u32;
        for (i, t) in sorted_terms.iter().enumerate() {
            if i > 0 {
                let prev = &sorted_terms[i - 1];
                if (prev.rate_per_minute, prev.connect_fee) != (t.rate_per_minute, t.connect_fee) {
                    current = i as u32;
                }
            }
            cost.push(current);
        }

        let next_change = locals.iter().filter_map(|l| l.next_change).min();
        let total: usize = locals.iter().map(|l| l.records.len()).sum();
        let mut records: Vec<Record> = Vec::with_capacity(total);
        for (local, remap) in locals.into_iter().zip(&remaps) {
            records.extend(local.records.into_iter().map(|mut r| {
                r.term = rank_of[remap[r.term as usize] as usize];
                r
            }));
        }
        drop(remaps);
        drop(rank_of);
        // Postings are addressed with u32; decks beyond 4 billion entries
        // would need tens of gigabytes of input first.
        records.truncate(u32::MAX as usize);
        sort_records(&mut records, threads);

        let mut table = PrefixTable::with_capacity(count_distinct_keys(&records));
        let mut postings: Vec<Posting> = Vec::with_capacity(records.len());
        // A provider listed twice under one prefix (possible only with
        // unvalidated input) keeps its cheapest entry.
        let mut in_group = vec![0u64; infos.len().div_ceil(64)];
        let mut start = 0usize;
        while start < records.len() {
            let key = records[start].key;
            let mut end = start;
            let first_posting = postings.len();
            while end < records.len() && records[end].key == key {
                let r = records[end];
                end += 1;
                let (word, bit) = (r.provider as usize / 64, 1u64 << (r.provider % 64));
                if in_group.get(word).is_none_or(|w| w & bit != 0) {
                    continue;
                }
                in_group[word] |= bit;
                postings.push(Posting {
                    provider: r.provider,
                    term: r.term,
                    cost: cost[r.term as usize],
                });
            }
            for p in &postings[first_posting..] {
                in_group[p.provider as usize / 64] = 0;
            }
            table.insert(
                key,
                first_posting as u32,
                (postings.len() - first_posting) as u32,
            );
            start = end;
        }
        postings.shrink_to_fit();
        RouteIndex {
            providers: infos,
            terms: sorted_terms,
            postings,
            table,
            next_change,
            as_of,
        }
    }

    /// The providers willing to carry a call to `number`, cheapest first.
    pub fn query(&self, number: &E164, criteria: &RouteCriteria) -> Vec<RouteMatch> {
        if criteria.limit == 0 || self.postings.is_empty() {
            return Vec::new();
        }
        // Terms are sorted by rate: the allowed ones are a leading range.
        let cutoff = match criteria.max_rate {
            Some(max) => self.terms.partition_point(|t| t.rate_per_minute <= max) as u32,
            None => u32::MAX,
        };
        let digits = number.as_bytes();
        let mut keys = [0u64; MAX_DIGITS];
        let mut key = 1u64;
        for (slot, &d) in keys.iter_mut().zip(digits) {
            key = key * 10 + u64::from(d - b'0');
            *slot = key;
        }
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let Scratch {
                seen,
                touched,
                candidates,
            } = &mut *scratch;
            let words = self.providers.len().div_ceil(64);
            if seen.len() < words {
                seen.resize(words, 0);
            }
            let small_limit = criteria.limit <= SMALL_LIMIT;
            // Clearing a small bitset whole is cheaper than remembering bits.
            let track_touched = words > 256;
            // The prefixes of the number that have postings, longest first.
            let mut levels = [(0usize, 0u32, 0u32); MAX_DIGITS];
            let mut n_levels = 0;
            for len in (1..=digits.len()).rev() {
                if let Some((start, count)) = self.table.get(keys[len - 1]) {
                    levels[n_levels] = (len, start, count);
                    n_levels += 1;
                }
            }
            for (i, &(len, start, count)) in levels[..n_levels].iter().enumerate() {
                // Providers are marked at every level but the last (nothing
                // shorter follows), where the cheapest-first order lets the
                // scan stop as soon as nothing better can come.
                let last = i + 1 == n_levels;
                let range = start as usize..start as usize + count as usize;
                for p in self.postings.get(range).unwrap_or_default() {
                    let (word, bit) = (p.provider as usize / 64, 1u64 << (p.provider % 64));
                    if seen[word] & bit != 0 {
                        continue;
                    }
                    if !last {
                        seen[word] |= bit;
                        if track_touched {
                            touched.push(p.provider);
                        }
                    }
                    if p.term >= cutoff {
                        if last {
                            break;
                        }
                        continue;
                    }
                    let c = Candidate {
                        order: (u64::from(p.cost) << 32) | u64::from(p.provider),
                        term: p.term,
                        len: len as u8,
                    };
                    // Keep only the cheapest `limit`, sorted: once full, most
                    // candidates are rejected by one comparison.
                    if small_limit && candidates.len() == criteria.limit {
                        if let Some(worst) = candidates.last() {
                            if worst.order < c.order {
                                if last && worst.order >> 32 < c.order >> 32 {
                                    break;
                                }
                                continue;
                            }
                        }
                    }
                    if let Some(cur) = criteria.currency {
                        if self.providers[p.provider as usize].currency != cur {
                            continue;
                        }
                    }
                    if small_limit {
                        let at = candidates.partition_point(|x| x.order < c.order);
                        candidates.insert(at, c);
                        candidates.truncate(criteria.limit);
                    } else {
                        candidates.push(c);
                    }
                }
            }
            if track_touched {
                for &p in touched.iter() {
                    seen[p as usize / 64] = 0;
                }
                touched.clear();
            } else {
                seen[..words].fill(0);
            }
            if !small_limit && candidates.len() > criteria.limit {
                candidates.select_nth_unstable_by_key(criteria.limit, |c| c.order);
                candidates.truncate(criteria.limit);
            }
            candidates.sort_unstable_by_key(|c| c.order);
            let out = candidates
                .iter()
                .filter_map(|c| self.route_match(number, c))
                .collect();
            candidates.clear();
            out
        })
    }

    fn route_match(&self, number: &E164, c: &Candidate) -> Option<RouteMatch> {
        let provider = self.providers.get((c.order & 0xffff_ffff) as usize)?;
        let terms = self.terms.get(c.term as usize)?;
        Some(RouteMatch {
            provider: provider.key,
            prefix: Prefix::of_number(number, usize::from(c.len))?,
            rate_per_minute: terms.rate_per_minute,
            connect_fee: terms.connect_fee,
            first_increment: terms.first_increment,
            next_increment: terms.next_increment,
            rate_version: provider.rate_version,
            currency: provider.currency,
        })
    }

    /// When the earliest scheduled rate after `as_of` takes effect.
    pub fn next_change(&self) -> Option<DateTime<Utc>> {
        self.next_change
    }

    /// The moment the index was built for.
    pub fn as_of(&self) -> DateTime<Utc> {
        self.as_of
    }

    /// Number of (prefix, provider) entries indexed.
    pub fn entry_count(&self) -> usize {
        self.postings.len()
    }

    /// Number of providers given to the build (with or without entries).
    pub fn provider_count(&self) -> usize {
        self.providers.len()
    }

    /// Number of distinct prefixes indexed.
    pub fn prefix_count(&self) -> usize {
        self.table.len
    }

    /// Number of distinct rate terms (after interning).
    pub fn term_count(&self) -> usize {
        self.terms.len()
    }

    /// Heap memory held by the index, from the capacities of all its parts.
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        self.providers.capacity() * size_of::<ProviderInfo>()
            + self.terms.capacity() * size_of::<Terms>()
            + self.postings.capacity() * size_of::<Posting>()
            + self.table.slots.capacity() * size_of::<Slot>()
    }
}

impl fmt::Debug for RouteIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteIndex")
            .field("providers", &self.providers.len())
            .field("prefixes", &self.table.len)
            .field("entries", &self.postings.len())
            .field("terms", &self.terms.len())
            .field("as_of", &self.as_of)
            .field("next_change", &self.next_change)
            .finish()
    }
}

/// One thread's share of the build.
struct LocalBuild {
    terms: Vec<Terms>,
    records: Vec<Record>,
    next_change: Option<DateTime<Utc>>,
}

impl LocalBuild {
    fn run(providers: &[ProviderRates], first_index: usize, as_of: DateTime<Utc>) -> LocalBuild {
        let mut ids: HashMap<Terms, u32, FastHash> = HashMap::with_hasher(FastHash::new());
        let mut terms = Vec::new();
        let mut records = Vec::with_capacity(providers.iter().map(|p| p.entries.len()).sum());
        let mut next_change: Option<DateTime<Utc>> = None;
        let mut effective: Vec<&RateEntry> = Vec::new();
        for (i, p) in providers.iter().enumerate() {
            let provider = (first_index + i) as u32;
            let mut intern = |e: &RateEntry| {
                let t = Terms {
                    rate_per_minute: e.rate_per_minute.normalize(),
                    connect_fee: e.connect_fee.normalize(),
                    first_increment: e.first_increment,
                    next_increment: e.next_increment,
                };
                let term = *ids.entry(t).or_insert_with(|| {
                    terms.push(t);
                    (terms.len() - 1) as u32
                });
                Record {
                    key: prefix_key(e.prefix.as_bytes()),
                    provider,
                    term,
                }
            };
            if p.entries.iter().all(|e| e.effective_from.is_none()) {
                // Nothing scheduled: every entry is in effect (a repeated
                // prefix, impossible in a RateDeck, is dropped when merging).
                records.extend(p.entries.iter().map(&mut intern));
                continue;
            }
            effective.clear();
            effective.extend(p.entries.iter());
            // Per prefix, the latest entry already in effect (None = always).
            effective.sort_unstable_by_key(|e| (e.prefix, e.effective_from));
            let mut j = 0;
            while j < effective.len() {
                let prefix = effective[j].prefix;
                let mut chosen: Option<&RateEntry> = None;
                while j < effective.len() && effective[j].prefix == prefix {
                    let e = effective[j];
                    match e.effective_from {
                        Some(t) if t > as_of => {
                            next_change = Some(next_change.map_or(t, |n| n.min(t)));
                        }
                        _ => chosen = Some(e),
                    }
                    j += 1;
                }
                let Some(e) = chosen else { continue };
                records.push(intern(e));
            }
        }
        LocalBuild {
            terms,
            records,
            next_change,
        }
    }
}

/// Sorts by (prefix key, term, provider), using up to `threads` threads.
/// Terms are numbered in price order, so each prefix's postings come out
/// cheapest first and a query can stop early.
fn sort_records(records: &mut [Record], threads: usize) {
    let by = |r: &Record| (r.key, r.term, r.provider);
    if threads < 2 || records.len() < 1 << 16 {
        records.sort_unstable_by_key(by);
        return;
    }
    let mid = records.len() / 2;
    {
        let (a, b) = records.split_at_mut(mid);
        std::thread::scope(|s| {
            s.spawn(|| a.sort_unstable_by_key(by));
            b.sort_unstable_by_key(by);
        });
    }
    // Merge the two sorted halves.
    let mut merged = Vec::with_capacity(records.len());
    let (a, b) = records.split_at(mid);
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if by(&a[i]) <= by(&b[j]) {
            merged.push(a[i]);
            i += 1;
        } else {
            merged.push(b[j]);
            j += 1;
        }
    }
    merged.extend_from_slice(&a[i..]);
    merged.extend_from_slice(&b[j..]);
    records.copy_from_slice(&merged);
}

fn count_distinct_keys(sorted: &[Record]) -> usize {
    sorted
        .iter()
        .zip(sorted.iter().skip(1))
        .filter(|(a, b)| a.key != b.key)
        .count()
        + usize::from(!sorted.is_empty())
}

/// Packs up to 15 ASCII digits behind a leading 1, so that prefixes of
/// different lengths ("49", "049") never share a key and 0 is never a key.
fn prefix_key(digits: &[u8]) -> u64 {
    digits
        .iter()
        .fold(1u64, |k, &d| k * 10 + u64::from(d.wrapping_sub(b'0') % 10))
}

/// FxHash-style multiplicative hashing with a random start, for interning
/// rate terms during the build (SipHash was a large share of build time).
#[derive(Clone, Copy)]
struct FastHash(u64);

impl FastHash {
    fn new() -> FastHash {
        FastHash(std::collections::hash_map::RandomState::new().hash_one(0u8))
    }
}

impl BuildHasher for FastHash {
    type Hasher = FastHasher;
    fn build_hasher(&self) -> FastHasher {
        FastHasher(self.0)
    }
}

struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.add(v);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Up to this limit a query keeps a sorted top list instead of collecting
/// every candidate and selecting afterwards.
const SMALL_LIMIT: usize = 64;

/// Per-thread buffers reused by every query.
#[derive(Default)]
struct Scratch {
    seen: Vec<u64>,
    touched: Vec<u32>,
    candidates: Vec<Candidate>,
}

struct Candidate {
    /// Price rank in the high half, provider position in the low half.
    order: u64,
    term: u32,
    len: u8,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Open addressing with linear probing, load factor at most 1/2.
struct PrefixTable {
    slots: Vec<Slot>,
    mask: usize,
    len: usize,
    /// Random per table, so crafted prefixes cannot aim at one bucket.
    seed: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// 0 = empty (no prefix packs to 0).
    key: u64,
    start: u32,
    count: u32,
}

impl PrefixTable {
    fn with_capacity(n: usize) -> PrefixTable {
        let size = (n * 2).next_power_of_two().max(16);
        let seed = std::collections::hash_map::RandomState::new().hash_one(n);
        PrefixTable {
            slots: vec![Slot::default(); size],
            mask: size - 1,
            len: 0,
            seed: seed | 1,
        }
    }

    fn bucket(&self, key: u64) -> usize {
        let h = (key ^ self.seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 32) as usize & self.mask
    }

    /// Each key is inserted once (the build groups by key).
    fn insert(&mut self, key: u64, start: u32, count: u32) {
        let mut i = self.bucket(key);
        while self.slots[i].key != 0 {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = Slot { key, start, count };
        self.len += 1;
    }

    fn get(&self, key: u64) -> Option<(u32, u32)> {
        let mut i = self.bucket(key);
        loop {
            let s = self.slots.get(i)?;
            if s.key == key {
                return Some((s.start, s.count));
            }
            if s.key == 0 {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }
}

#[cfg(test)]
mod tests;
