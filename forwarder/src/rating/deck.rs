//! A retail rate deck prepared for rating: one lookup table per moment the
//! deck changes, so rating a call never rebuilds a table.

use chrono::{DateTime, Utc};
use provider_sdk::number::E164;
use provider_sdk::ratedeck::{RateDeck, RateEntry, RateTable};

/// The deck's [`RateTable`]s in force from each distinct `effective_from`
/// (the first from the beginning of time). Memory is the deck's size times
/// the number of distinct dates plus one: decks carry few scheduled changes.
#[derive(Debug)]
pub(crate) struct DeckIndex {
    /// Sorted by start; the first start is `None` (always in force).
    epochs: Vec<(Option<DateTime<Utc>>, RateTable)>,
}

impl DeckIndex {
    pub(crate) fn new(deck: &RateDeck) -> DeckIndex {
        let mut starts: Vec<DateTime<Utc>> = deck
            .entries()
            .iter()
            .filter_map(|e| e.effective_from)
            .collect();
        starts.sort_unstable();
        starts.dedup();
        let mut epochs = Vec::with_capacity(starts.len() + 1);
        // Entries that carry a date before every instant chrono can express
        // cannot exist, so MIN_UTC selects exactly the undated ones.
        epochs.push((None, deck.effective_at(DateTime::<Utc>::MIN_UTC)));
        for start in starts {
            epochs.push((Some(start), deck.effective_at(start)));
        }
        DeckIndex { epochs }
    }

    /// The entry of the longest prefix matching `number` in force at `at`,
    /// exactly as `deck.effective_at(at).lookup(number)` would find it.
    pub(crate) fn lookup(&self, at: DateTime<Utc>, number: &E164) -> Option<&RateEntry> {
        // Epochs after the first all have a start; `None` sorts first.
        let i = self.epochs.partition_point(|(start, _)| *start <= Some(at));
        self.epochs
            .get(i.checked_sub(1)?)
            .and_then(|(_, table)| table.lookup(number))
    }
}
