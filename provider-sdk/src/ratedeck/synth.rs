//! Synthetic rate decks for benchmarks and tests (not a stable API).
//!
//! A [`PrefixPlan`] is a made-up world numbering plan with a realistic shape:
//! about 200 country codes of 1–3 digits (`1`, `7`, `44`, `49`, `880`, ...),
//! area codes of 1–3 more digits under each, and longer blocks (mobile
//! ranges, number blocks) under those, more of them for bigger countries.
//! [`PrefixPlan::provider_decks`] gives every provider its own selection of
//! the plan with its own price level, connect fee and increments. Everything
//! is deterministic for a given seed. Prices are computed in integer
//! ten-thousandths, so they are exact decimals.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;

use super::RateEntry;
use crate::number::{Prefix, E164};

/// Country codes: the 1- and 2-digit ones in use, and 3-digit ranges.
fn country_codes() -> Vec<String> {
    let mut codes: Vec<String> = ["1", "7"].iter().map(|s| s.to_string()).collect();
    let two = [
        20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54, 55,
        56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98,
    ];
    codes.extend(two.iter().map(|c| c.to_string()));
    for range in [
        212..=269,
        350..=389,
        420..=423,
        500..=509,
        590..=599,
        670..=692,
        850..=856,
        880..=886,
        960..=998,
    ] {
        codes.extend(range.map(|c: u32| c.to_string()));
    }
    // Country codes form a prefix-free set: drop ranges under shorter codes.
    let shorter: Vec<String> = codes.iter().filter(|c| c.len() < 3).cloned().collect();
    codes.retain(|c| c.len() < 3 || !shorter.iter().any(|s| c.starts_with(s.as_str())));
    codes
}

/// One prefix of the plan with its reference price in ten-thousandths.
#[derive(Debug, Clone)]
pub struct PlanPrefix {
    pub prefix: Prefix,
    pub base_price: i64,
    /// Index of its country code in [`PrefixPlan::countries`].
    pub country: usize,
}

/// A synthetic world numbering plan.
#[derive(Debug, Clone)]
pub struct PrefixPlan {
    pub countries: Vec<Prefix>,
    pub prefixes: Vec<PlanPrefix>,
}

impl PrefixPlan {
    /// A plan of about `size` distinct prefixes (at least the country codes).
    pub fn generate(size: usize, seed: u64) -> PrefixPlan {
        let mut rng = StdRng::seed_from_u64(seed);
        let codes = country_codes();
        // Bigger countries (shorter codes) get more prefixes; Zipf-like weights.
        let weights: Vec<f64> = codes
            .iter()
            .enumerate()
            .map(|(i, c)| 1.0 / (1.0 + i as f64 * 0.3) * (4.0 - c.len() as f64))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut seen = HashSet::with_capacity(size * 2);
        let mut prefixes = Vec::with_capacity(size + codes.len());
        let mut countries = Vec::with_capacity(codes.len());
        for (ci, (code, w)) in codes.iter().zip(&weights).enumerate() {
            let Ok(cp) = Prefix::parse(code) else {
                continue;
            };
            countries.push(cp);
            // Country price level: 0.0050 .. 0.3000 per minute.
            let country_price = 50 + (rng.gen::<f64>().powi(3) * 2950.0) as i64;
            seen.insert(code.clone());
            prefixes.push(PlanPrefix {
                prefix: cp,
                base_price: country_price,
                country: ci,
            });
            let want = ((size as f64) * w / total) as usize;
            let start = prefixes.len();
            let mut attempts = 0;
            while prefixes.len() - start < want && attempts < want * 20 {
                attempts += 1;
                // Extend the country code (an area code) or an existing prefix.
                let (parent, parent_price) = if prefixes.len() == start || rng.gen_bool(0.15) {
                    (code.clone(), country_price)
                } else {
                    let p = &prefixes[rng.gen_range(start..prefixes.len())];
                    (p.prefix.digits().to_owned(), p.base_price)
                };
                let extra = rng.gen_range(1..=3);
                if parent.len() + extra > 12 {
                    continue;
                }
                let mut digits = parent;
                for _ in 0..extra {
                    digits.push(char::from(b'0' + rng.gen_range(0..10u8)));
                }
                if !seen.insert(digits.clone()) {
                    continue;
                }
                let Ok(prefix) = Prefix::parse(&digits) else {
                    continue;
                };
                // Mobile ranges and special blocks cost more, some less.
                let factor = rng.gen_range(60..=300);
                prefixes.push(PlanPrefix {
                    prefix,
                    base_price: (parent_price * factor / 100).max(1),
                    country: ci,
                });
            }
        }
        PrefixPlan {
            countries,
            prefixes,
        }
    }

    /// `providers` decks of `per_provider` distinct entries each (capped at
    /// the plan size). Every provider covers a random 80% of the country
    /// codes and samples the rest of its deck from the whole plan; its
    /// prices are the plan's scaled by its own level and noise.
    pub fn provider_decks(
        &self,
        providers: usize,
        per_provider: usize,
        seed: u64,
    ) -> Vec<Vec<RateEntry>> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x005e_ed0f_dec4);
        let n = self.prefixes.len();
        let per_provider = per_provider.min(n);
        let increments = [(60, 60), (1, 1), (30, 6), (60, 1), (6, 6)];
        (0..providers)
            .map(|_| {
                let level = rng.gen_range(70..=140i64); // percent
                let fee = if rng.gen_bool(0.1) {
                    Decimal::new(rng.gen_range(1..=5), 2)
                } else {
                    Decimal::ZERO
                };
                let (first, next) = increments[rng.gen_range(0..increments.len())];
                let mut chosen = HashSet::with_capacity(per_provider);
                let mut picks: Vec<usize> = Vec::with_capacity(per_provider);
                for (i, p) in self.prefixes.iter().enumerate() {
                    if p.prefix.len() <= 3
                        && self.countries.get(p.country) == Some(&p.prefix)
                        && picks.len() < per_provider
                        && rng.gen_bool(0.8)
                    {
                        chosen.insert(i);
                        picks.push(i);
                    }
                }
                for i in rand::seq::index::sample(&mut rng, n, per_provider).into_iter() {
                    if picks.len() >= per_provider {
                        break;
                    }
                    if chosen.insert(i) {
                        picks.push(i);
                    }
                }
                picks
                    .into_iter()
                    .map(|i| {
                        let p = &self.prefixes[i];
                        let noise = rng.gen_range(95..=105i64);
                        let price = (p.base_price * level * noise / 10_000).max(1);
                        RateEntry {
                            prefix: p.prefix,
                            rate_per_minute: Decimal::new(price, 4),
                            connect_fee: fee,
                            first_increment: first,
                            next_increment: next,
                            effective_from: None,
                            description: None,
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// `count` numbers of 11–13 digits, each under a random plan prefix of
    /// the country `country_code` (or of any country when `None`).
    pub fn numbers(&self, count: usize, country_code: Option<&str>, seed: u64) -> Vec<E164> {
        let mut rng = StdRng::seed_from_u64(seed);
        let pool: Vec<&PlanPrefix> = self
            .prefixes
            .iter()
            .filter(|p| country_code.is_none_or(|c| p.prefix.digits().starts_with(c)))
            .collect();
        let mut out = Vec::with_capacity(count);
        while out.len() < count && !pool.is_empty() {
            let p = pool[rng.gen_range(0..pool.len())];
            let mut digits = p.prefix.digits().to_owned();
            let len = rng.gen_range(11..=13).max(digits.len() + 1);
            while digits.len() < len {
                digits.push(char::from(b'0' + rng.gen_range(0..10u8)));
            }
            if let Ok(n) = E164::parse(&digits) {
                out.push(n);
            }
        }
        out
    }
}

/// Writes entries as a CSV deck with a header row.
pub fn deck_csv(entries: &[RateEntry]) -> Vec<u8> {
    use std::fmt::Write;
    let mut s = String::with_capacity(entries.len() * 32 + 100);
    s.push_str("prefix,rate_per_minute,connect_fee,first_increment,next_increment,effective_from,description\n");
    for e in entries {
        let from = e.effective_from.map(|d| d.to_rfc3339()).unwrap_or_default();
        let desc = e.description.as_deref().unwrap_or("");
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{}",
            e.prefix,
            e.rate_per_minute,
            e.connect_fee,
            e.first_increment,
            e.next_increment,
            from,
            desc
        );
    }
    s.into_bytes()
}
