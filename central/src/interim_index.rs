//! A prefix route index with the shared `RouteIndex` interface: entries in
//! effect at build time, keyed by prefix; a query walks the number's
//! prefixes from longest to shortest so each provider is answered with its
//! own longest match.

use chrono::{DateTime, Utc};
use provider_sdk::money::Currency;
use provider_sdk::number::{Prefix, E164};
use provider_sdk::ratedeck::RateEntry;
use rust_decimal::Decimal;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProviderKey(pub u32);

#[derive(Debug, Clone)]
pub struct ProviderRates {
    pub key: ProviderKey,
    pub currency: Currency,
    pub rate_version: u64,
    pub entries: Vec<RateEntry>,
}

#[derive(Debug, Clone)]
pub struct RouteCriteria {
    pub max_rate: Option<Decimal>,
    pub currency: Option<Currency>,
    pub limit: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
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

struct Slot {
    provider: u32,
    entry: RateEntry,
}

struct ProviderMeta {
    key: ProviderKey,
    currency: Currency,
    rate_version: u64,
}

pub struct RouteIndex {
    by_prefix: HashMap<String, Vec<Slot>>,
    providers: Vec<ProviderMeta>,
    entries: usize,
    next_change: Option<DateTime<Utc>>,
}

impl RouteIndex {
    pub fn build(providers: Vec<ProviderRates>, as_of: DateTime<Utc>) -> RouteIndex {
        let mut by_prefix: HashMap<String, Vec<Slot>> = HashMap::new();
        let mut metas = Vec::with_capacity(providers.len());
        let mut entries = 0;
        let mut next_change: Option<DateTime<Utc>> = None;
        for (pi, p) in providers.into_iter().enumerate() {
            let pi = u32::try_from(pi).unwrap_or(u32::MAX);
            // For each prefix, the entry with the latest effective_from <= as_of.
            let mut best: HashMap<String, RateEntry> = HashMap::new();
            for e in p.entries {
                match e.effective_from {
                    Some(t) if t > as_of => {
                        next_change = Some(next_change.map_or(t, |n| n.min(t)));
                        continue;
                    }
                    _ => {}
                }
                let k = e.prefix.digits().to_string();
                let replace = match best.get(&k) {
                    None => true,
                    Some(cur) => e.effective_from > cur.effective_from,
                };
                if replace {
                    best.insert(k, e);
                }
            }
            for (k, entry) in best {
                entries += 1;
                by_prefix.entry(k).or_default().push(Slot { provider: pi, entry });
            }
            metas.push(ProviderMeta {
                key: p.key,
                currency: p.currency,
                rate_version: p.rate_version,
            });
        }
        RouteIndex {
            by_prefix,
            providers: metas,
            entries,
            next_change,
        }
    }

    pub fn next_change(&self) -> Option<DateTime<Utc>> {
        self.next_change
    }

    pub fn entry_count(&self) -> usize {
        self.entries
    }

    pub fn heap_bytes(&self) -> usize {
        self.by_prefix
            .iter()
            .map(|(k, v)| k.capacity() + v.capacity() * std::mem::size_of::<Slot>())
            .sum::<usize>()
            + self.by_prefix.capacity() * std::mem::size_of::<(String, Vec<Slot>)>()
    }

    pub fn query(&self, number: &E164, criteria: &RouteCriteria) -> Vec<RouteMatch> {
        let digits = number.digits();
        let mut seen = vec![false; self.providers.len()];
        let mut out = Vec::new();
        for len in (1..=digits.len()).rev() {
            let Some(slots) = self.by_prefix.get(&digits[..len]) else {
                continue;
            };
            for s in slots {
                let Some(flag) = seen.get_mut(s.provider as usize) else {
                    continue;
                };
                if *flag {
                    continue;
                }
                *flag = true;
                let Some(meta) = self.providers.get(s.provider as usize) else {
                    continue;
                };
                if criteria.currency.as_ref().is_some_and(|c| *c != meta.currency) {
                    continue;
                }
                if criteria.max_rate.is_some_and(|m| s.entry.rate_per_minute > m) {
                    continue;
                }
                out.push(RouteMatch {
                    provider: meta.key,
                    prefix: s.entry.prefix.clone(),
                    rate_per_minute: s.entry.rate_per_minute,
                    connect_fee: s.entry.connect_fee,
                    first_increment: s.entry.first_increment,
                    next_increment: s.entry.next_increment,
                    rate_version: meta.rate_version,
                    currency: meta.currency.clone(),
                });
            }
        }
        out.sort_by(|a, b| {
            (a.rate_per_minute, a.connect_fee, a.provider).cmp(&(b.rate_per_minute, b.connect_fee, b.provider))
        });
        out.truncate(criteria.limit);
        out
    }
}
