//! Billing increments: how a call's duration becomes billable seconds.

use std::num::NonZeroU32;

/// Longest call that is rated, in seconds (366 days). Longer durations are
/// refused rather than rated: they can only come from a broken record.
pub const MAX_DURATION_SECONDS: u64 = 366 * 86_400;

/// First and next billing blocks and the minimum billable duration of a
/// plan, e.g. 60/60 (per started minute), 30/6, 1/1 (per second).
///
/// A call of `d > 0` seconds is first raised to the minimum, then billed as
/// the first block plus as many next blocks as needed to cover the rest.
/// A call of 0 s (unanswered) bills nothing.
///
/// ```
/// use forwarder::rating::Increments;
///
/// let i = Increments::new(30, 6, 0).unwrap();
/// assert_eq!(i.billable_seconds(0), 0);
/// assert_eq!(i.billable_seconds(1), 30);
/// assert_eq!(i.billable_seconds(31), 36);
/// assert_eq!(Increments::new(60, 60, 90).unwrap().billable_seconds(10), 120);
/// assert!(Increments::new(0, 60, 0).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Increments {
    first: NonZeroU32,
    next: NonZeroU32,
    minimum: u32,
}

impl Increments {
    /// `None` when either increment is 0.
    pub fn new(first: u32, next: u32, minimum_seconds: u32) -> Option<Increments> {
        Some(Increments {
            first: NonZeroU32::new(first)?,
            next: NonZeroU32::new(next)?,
            minimum: minimum_seconds,
        })
    }

    pub fn first(&self) -> u32 {
        self.first.get()
    }

    pub fn next(&self) -> u32 {
        self.next.get()
    }

    pub fn minimum_seconds(&self) -> u32 {
        self.minimum
    }

    /// Billable seconds of a call of `duration` seconds (0 for 0). Never
    /// overflows: `duration` is at most `u64::MAX` and the result is at most
    /// one block longer, computed in `u128` and saturated.
    pub fn billable_seconds(&self, duration: u64) -> u64 {
        if duration == 0 {
            return 0;
        }
        let d = u128::from(duration.max(u64::from(self.minimum)));
        let first = u128::from(self.first.get());
        let next = u128::from(self.next.get());
        let billable = if d <= first {
            first
        } else {
            first + (d - first).div_ceil(next) * next
        };
        u64::try_from(billable).unwrap_or(u64::MAX)
    }

    /// The shortest billable amount of an answered call: what 1 s bills.
    pub(crate) fn smallest_block(&self) -> u64 {
        self.billable_seconds(1)
    }
}
