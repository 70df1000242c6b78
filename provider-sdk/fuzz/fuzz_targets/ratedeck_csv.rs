#![no_main]
//! Any bytes as a CSV rate deck: never panics; an accepted deck is valid
//! (no duplicate prefix/date, increments in range) and survives a round trip
//! through CSV; a rejected one names at least one line.

use libfuzzer_sys::fuzz_target;
use provider_sdk::ratedeck::{synth::deck_csv, RateDeck, MAX_INCREMENT_SECONDS};

fuzz_target!(|data: &[u8]| {
    match RateDeck::parse_csv(data) {
        Ok(deck) => {
            let mut keys = std::collections::HashSet::new();
            for e in deck.entries() {
                assert!(keys.insert((e.prefix, e.effective_from)));
                assert!((1..=MAX_INCREMENT_SECONDS).contains(&e.first_increment));
                assert!((1..=MAX_INCREMENT_SECONDS).contains(&e.next_increment));
                assert!(!e.rate_per_minute.is_sign_negative() || e.rate_per_minute.is_zero());
            }
            if deck.entries().iter().all(|e| e.description.is_none()) {
                let again = RateDeck::parse_csv(&deck_csv(deck.entries())).expect("round trip");
                assert_eq!(again, deck);
            }
        }
        Err(errors) => {
            assert!(errors.total() > 0);
            let _ = errors.to_string();
        }
    }
    let _ = RateDeck::parse_json(data);
});
