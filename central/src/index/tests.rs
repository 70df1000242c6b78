use super::*;
use chrono::TimeZone;
use provider_sdk::ratedeck::RateDeck;
use rust_decimal_macros::dec;

fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn provider(key: u32, currency: Currency, csv: &str) -> ProviderRates {
    ProviderRates {
        key: ProviderKey(key),
        currency,
        rate_version: u64::from(key) * 10,
        entries: RateDeck::parse_csv(csv.as_bytes()).unwrap().into_entries(),
    }
}

fn all(limit: usize) -> RouteCriteria {
    RouteCriteria {
        max_rate: None,
        currency: None,
        limit,
    }
}

fn num(s: &str) -> E164 {
    E164::parse(s).unwrap()
}

fn answer(routes: &[RouteMatch]) -> Vec<(u32, String)> {
    routes
        .iter()
        .map(|r| (r.provider.0, r.prefix.to_string()))
        .collect()
}

#[test]
fn each_provider_answers_with_its_own_longest_prefix() {
    let index = RouteIndex::build(
        vec![
            provider(1, eur(), "49,0.01,0,60,60\n4930,0.02,0,1,1\n"),
            provider(2, eur(), "49,0.015,0,60,60\n"),
            provider(3, eur(), "44,0.001,0,60,60\n"),
            provider(4, eur(), "493012,0.03,0.05,30,6\n4,0.001,0,60,60\n"),
        ],
        now(),
    );
    assert_eq!(index.entry_count(), 6);
    assert_eq!(index.provider_count(), 4);
    let routes = index.query(&num("+49 30 123456"), &all(10));
    assert_eq!(
        answer(&routes),
        vec![(2, "49".into()), (1, "4930".into()), (4, "493012".into())]
    );
    let r1 = &routes[1];
    assert_eq!(r1.rate_per_minute, dec!(0.02));
    assert_eq!((r1.first_increment, r1.next_increment), (1, 1));
    assert_eq!(r1.rate_version, 10);
    assert_eq!(r1.currency, eur());
    assert_eq!(routes[2].connect_fee, dec!(0.05));
    // A number outside 4930: provider 1 falls back to 49, provider 4 to 4.
    let routes = index.query(&num("+49 89 1"), &all(10));
    assert_eq!(
        answer(&routes),
        vec![(4, "4".into()), (1, "49".into()), (2, "49".into())]
    );
    assert!(index.query(&num("+1 212 5550100"), &all(10)).is_empty());
    // A prefix longer than the number never matches.
    let routes = index.query(&num("+4930"), &all(10));
    assert_eq!(
        answer(&routes),
        vec![(4, "4".into()), (2, "49".into()), (1, "4930".into())]
    );
}

#[test]
fn sort_by_rate_then_fee_then_provider_and_limit() {
    let index = RouteIndex::build(
        vec![
            provider(9, eur(), "33,0.01,0,60,60\n"),
            provider(3, eur(), "33,0.01,0,1,1\n"),
            provider(5, eur(), "33,0.010,0.01,60,60\n"),
            provider(1, eur(), "33,0.02,0,60,60\n"),
            provider(7, eur(), "33,0.005,0.5,60,60\n"),
        ],
        now(),
    );
    let routes = index.query(&num("+33 1 23"), &all(10));
    let keys: Vec<u32> = routes.iter().map(|r| r.provider.0).collect();
    assert_eq!(keys, vec![7, 3, 9, 5, 1]);
    let keys: Vec<u32> = index
        .query(&num("+33 1 23"), &all(2))
        .iter()
        .map(|r| r.provider.0)
        .collect();
    assert_eq!(keys, vec![7, 3]);
    assert!(index.query(&num("+33 1 23"), &all(0)).is_empty());
}

#[test]
fn currency_and_max_rate_filters_drop_the_provider() {
    let index = RouteIndex::build(
        vec![
            provider(1, eur(), "49,0.01,0,60,60\n4930,0.05,0,60,60\n"),
            provider(2, usd(), "49,0.01,0,60,60\n"),
            provider(3, eur(), "49,0.02,0,60,60\n"),
        ],
        now(),
    );
    let n = num("+4930123");
    let crit = RouteCriteria {
        max_rate: Some(dec!(0.02)),
        currency: None,
        limit: 10,
    };
    // Provider 1's own longest prefix costs 0.05: it is dropped, not
    // answered with its cheaper 49.
    assert_eq!(
        answer(&index.query(&n, &crit)),
        vec![(2, "49".into()), (3, "49".into())]
    );
    let crit = RouteCriteria {
        max_rate: Some(dec!(0.0199)),
        currency: None,
        limit: 10,
    };
    assert_eq!(answer(&index.query(&n, &crit)), vec![(2, "49".into())]);
    let crit = RouteCriteria {
        max_rate: None,
        currency: Some(eur()),
        limit: 10,
    };
    assert_eq!(
        answer(&index.query(&n, &crit)),
        vec![(3, "49".into()), (1, "4930".into())]
    );
    let crit = RouteCriteria {
        max_rate: Some(dec!(0.0)),
        currency: Some(eur()),
        limit: 10,
    };
    assert!(index.query(&n, &crit).is_empty());
}

#[test]
fn scheduled_rates_switch_at_as_of() {
    let deck = "49,0.01,0,60,60\n\
                49,0.02,0,60,60,2026-12-01T00:00:00Z\n\
                49,0.03,0,60,60,2027-01-01T00:00:00Z\n\
                4930,0.001,0,60,60,2026-12-15T00:00:00Z\n";
    let providers = vec![
        provider(1, eur(), deck),
        provider(2, eur(), "44,1,0,60,60,2030-01-01T00:00:00Z\n"),
    ];
    let n = num("+4930123");
    let rate_at = |t: DateTime<Utc>| {
        let index = RouteIndex::build(providers.clone(), t);
        let r = index.query(&n, &all(10));
        (
            answer(&r),
            r.first().map(|m| m.rate_per_minute),
            index.next_change(),
        )
    };
    let d = |y, m, day| Utc.with_ymd_and_hms(y, m, day, 0, 0, 0).unwrap();
    assert_eq!(
        rate_at(now()),
        (
            vec![(1, "49".into())],
            Some(dec!(0.01)),
            Some(d(2026, 12, 1))
        )
    );
    // Exactly at effective_from the new rate applies.
    assert_eq!(
        rate_at(d(2026, 12, 1)),
        (
            vec![(1, "49".into())],
            Some(dec!(0.02)),
            Some(d(2026, 12, 15))
        )
    );
    // A future-only prefix is not indexed until its time comes.
    assert_eq!(
        rate_at(d(2026, 12, 15)),
        (
            vec![(1, "4930".into())],
            Some(dec!(0.001)),
            Some(d(2027, 1, 1))
        )
    );
    assert_eq!(
        rate_at(d(2027, 6, 1)),
        (
            vec![(1, "4930".into())],
            Some(dec!(0.001)),
            Some(d(2030, 1, 1))
        )
    );
    // The future-only provider is absent.
    let index = RouteIndex::build(providers.clone(), now());
    assert!(index.query(&num("+44 20"), &all(10)).is_empty());
    assert_eq!(index.entry_count(), 1);
}

#[test]
fn duplicate_provider_keys_keep_one_and_empty_index_answers_nothing() {
    let index = RouteIndex::build(
        vec![
            provider(1, eur(), "49,0.01,0,60,60\n"),
            provider(1, eur(), "49,0.02,0,60,60\n"),
        ],
        now(),
    );
    assert_eq!(index.query(&num("+49"), &all(10)).len(), 1);
    let empty = RouteIndex::build(Vec::new(), now());
    assert!(empty.query(&num("+49"), &all(10)).is_empty());
    assert_eq!(empty.entry_count(), 0);
    assert_eq!(empty.next_change(), None);
}

#[test]
fn equal_terms_are_interned_once() {
    let providers: Vec<ProviderRates> = (0..50)
        .map(|k| {
            provider(
                k,
                eur(),
                "49,0.01,0,60,60\n44,0.0100,0,60,60\n33,0.02,0,60,60\n",
            )
        })
        .collect();
    let index = RouteIndex::build(providers, now());
    assert_eq!(index.term_count(), 2);
    assert_eq!(index.entry_count(), 150);
    assert_eq!(index.prefix_count(), 3);
    assert!(index.heap_bytes() >= 150 * std::mem::size_of::<Posting>());
}

/// Deterministic generator (SplitMix64) for the property tests.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_digits(g: &mut Gen, len: usize) -> String {
    // Few distinct digits so providers share prefixes often.
    let mut s = String::new();
    s.push(char::from(b'1' + g.below(3) as u8));
    while s.len() < len {
        s.push(char::from(b'0' + g.below(3) as u8));
    }
    s
}

/// The specification, written as plainly as possible.
fn brute_force(
    providers: &[ProviderRates],
    as_of: DateTime<Utc>,
    number: &E164,
    c: &RouteCriteria,
) -> Vec<RouteMatch> {
    let mut seen_keys = std::collections::HashSet::new();
    let mut out = Vec::new();
    for p in providers {
        if !seen_keys.insert(p.key) {
            continue;
        }
        let mut best: Option<&RateEntry> = None;
        for e in &p.entries {
            if !e.prefix.matches(number) || e.effective_from.is_some_and(|t| t > as_of) {
                continue;
            }
            let better = match best {
                None => true,
                Some(b) => {
                    e.prefix.len() > b.prefix.len()
                        || (e.prefix == b.prefix && e.effective_from > b.effective_from)
                }
            };
            if better {
                best = Some(e);
            }
        }
        let Some(e) = best else { continue };
        if c.max_rate.is_some_and(|m| e.rate_per_minute > m)
            || c.currency.is_some_and(|cur| cur != p.currency)
        {
            continue;
        }
        out.push(RouteMatch {
            provider: p.key,
            prefix: e.prefix,
            rate_per_minute: e.rate_per_minute.normalize(),
            connect_fee: e.connect_fee.normalize(),
            first_increment: e.first_increment,
            next_increment: e.next_increment,
            rate_version: p.rate_version,
            currency: p.currency,
        });
    }
    out.sort_by(|a, b| {
        (a.rate_per_minute, a.connect_fee, a.provider).cmp(&(
            b.rate_per_minute,
            b.connect_fee,
            b.provider,
        ))
    });
    out.truncate(c.limit);
    out
}

#[test]
fn matches_brute_force_on_random_decks() {
    let base = now();
    for seed in 0..40u64 {
        let mut g = Gen(seed);
        let n_providers = 1 + g.below(120) as u32;
        let providers: Vec<ProviderRates> = (0..n_providers)
            .map(|_| {
                let mut seen = std::collections::HashSet::new();
                let mut entries = Vec::new();
                for _ in 0..g.below(30) {
                    let len = 1 + g.below(6) as usize;
                    let prefix = Prefix::parse(&random_digits(&mut g, len)).unwrap();
                    let effective_from = match g.below(4) {
                        0 => Some(base + chrono::Duration::hours(g.below(48) as i64 - 24)),
                        _ => None,
                    };
                    if !seen.insert((prefix, effective_from)) {
                        continue;
                    }
                    entries.push(RateEntry {
                        prefix,
                        rate_per_minute: Decimal::new(g.below(20) as i64, 2 + g.below(2) as u32),
                        connect_fee: Decimal::new(g.below(3) as i64, 2),
                        first_increment: 1 + g.below(2) as u32 * 59,
                        next_increment: 1 + g.below(2) as u32 * 5,
                        effective_from,
                        description: None,
                    });
                }
                ProviderRates {
                    // Some keys repeat on purpose.
                    key: ProviderKey(g.below(u64::from(n_providers) + 5) as u32),
                    currency: if g.below(4) == 0 { usd() } else { eur() },
                    rate_version: g.below(100),
                    entries,
                }
            })
            .collect();
        let index = RouteIndex::build(providers.clone(), base);
        // The brute force keeps the first of repeated keys in key order, like the index.
        let mut sorted = providers.clone();
        sorted.sort_by_key(|p| p.key);
        for _ in 0..200 {
            let len = 1 + g.below(9) as usize;
            let number = E164::parse(&random_digits(&mut g, len)).unwrap();
            let criteria = RouteCriteria {
                max_rate: match g.below(3) {
                    0 => Some(Decimal::new(g.below(20) as i64, 2)),
                    _ => None,
                },
                currency: match g.below(3) {
                    0 => Some(eur()),
                    1 => Some(usd()),
                    _ => None,
                },
                // Both the small sorted top list and the large selection path.
                limit: match g.below(4) {
                    0 => usize::MAX,
                    1 => 65 + g.below(3) as usize,
                    _ => g.below(12) as usize,
                },
            };
            let want = brute_force(&sorted, base, &number, &criteria);
            let got = index.query(&number, &criteria);
            assert_eq!(got, want, "seed {seed}, number {number}, {criteria:?}");
        }
    }
}

#[test]
fn synthetic_plan_index_agrees_with_brute_force() {
    use provider_sdk::ratedeck::synth::PrefixPlan;
    let plan = PrefixPlan::generate(3_000, 7);
    let decks = plan.provider_decks(60, 400, 8);
    let providers: Vec<ProviderRates> = decks
        .into_iter()
        .enumerate()
        .map(|(i, entries)| ProviderRates {
            key: ProviderKey(1000 - i as u32),
            currency: eur(),
            rate_version: 1,
            entries,
        })
        .collect();
    let index = RouteIndex::build(providers.clone(), now());
    assert_eq!(index.entry_count(), 60 * 400);
    let mut sorted = providers;
    sorted.sort_by_key(|p| p.key);
    let mut willing = 0;
    for number in plan.numbers(300, None, 9) {
        let c = all(10);
        let got = index.query(&number, &c);
        willing += got.len();
        assert_eq!(got, brute_force(&sorted, now(), &number, &c), "{number}");
    }
    assert!(
        willing > 300,
        "the plan should give most numbers several providers"
    );
}
