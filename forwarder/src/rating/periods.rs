//! Peak/off-peak periods: which period a local time of the week falls in.
//!
//! Periods are defined by windows of days and local times (minute
//! resolution). At load, every minute of the week is given to exactly one
//! period: an overlap or a gap is an error naming the day and time, so a
//! loaded plan can always answer "which period" with one table lookup.

use chrono::{DateTime, Datelike, Timelike};
use chrono_tz::Tz;

use super::config::WindowConfig;
use super::error::PlanError;

const MINUTES_PER_DAY: usize = 1440;
const MINUTES_PER_WEEK: usize = 7 * MINUTES_PER_DAY;
const UNSET: u8 = u8::MAX;

/// Most periods a plan may define.
pub const MAX_PERIODS: usize = UNSET as usize;

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const DAY_TITLES: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Every minute of the week (Monday 00:00 first) → index of its period.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct WeekSchedule {
    slots: Box<[u8]>,
}

impl std::fmt::Debug for WeekSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WeekSchedule { .. }")
    }
}

impl WeekSchedule {
    /// One period all week long.
    pub(crate) fn single() -> WeekSchedule {
        WeekSchedule {
            slots: vec![0; MINUTES_PER_WEEK].into_boxed_slice(),
        }
    }

    /// Builds the table from `(period name, windows)` in index order.
    pub(crate) fn build(
        plan: &str,
        periods: &[(&str, &[WindowConfig])],
    ) -> Result<Self, PlanError> {
        if periods.len() > MAX_PERIODS {
            return Err(PlanError::TooManyPeriods {
                plan: plan.to_owned(),
                max: MAX_PERIODS,
            });
        }
        let mut slots = vec![UNSET; MINUTES_PER_WEEK];
        for (index, (name, windows)) in periods.iter().enumerate() {
            if windows.is_empty() {
                return Err(PlanError::PeriodWithoutWindows {
                    plan: plan.to_owned(),
                    period: (*name).to_owned(),
                });
            }
            let bad = |message: String| PlanError::BadWindow {
                plan: plan.to_owned(),
                period: (*name).to_owned(),
                message,
            };
            for w in windows.iter() {
                let days = parse_days(&w.days).map_err(bad)?;
                let from = parse_time(&w.from, false).map_err(|m| bad(format!("from: {m}")))?;
                let to = parse_time(&w.to, true).map_err(|m| bad(format!("to: {m}")))?;
                if from == to {
                    return Err(bad(format!(
                        "from and to are both {:?}; a whole day is \"00:00\" to \"24:00\"",
                        w.from
                    )));
                }
                for day in (0..7).filter(|d| days & (1 << d) != 0) {
                    let start = day * MINUTES_PER_DAY + from;
                    // A window whose end is not after its start runs past
                    // midnight into the next day (Sunday wraps to Monday).
                    let len = if to > from {
                        to - from
                    } else {
                        MINUTES_PER_DAY - from + to
                    };
                    for m in start..start + len {
                        let slot = &mut slots[m % MINUTES_PER_WEEK];
                        if *slot != UNSET && usize::from(*slot) != index {
                            let (day, time) = describe(m % MINUTES_PER_WEEK);
                            return Err(PlanError::PeriodOverlap {
                                plan: plan.to_owned(),
                                first: periods[usize::from(*slot)].0.to_owned(),
                                second: (*name).to_owned(),
                                day,
                                time,
                            });
                        }
                        // Within one period, overlapping windows are harmless.
                        *slot = index as u8;
                    }
                }
            }
        }
        if let Some(m) = slots.iter().position(|&s| s == UNSET) {
            let (day, time) = describe(m);
            return Err(PlanError::PeriodGap {
                plan: plan.to_owned(),
                day,
                time,
            });
        }
        Ok(WeekSchedule {
            slots: slots.into_boxed_slice(),
        })
    }

    /// Index of the period at local time `at`.
    pub(crate) fn period_at(&self, at: &DateTime<Tz>) -> usize {
        let day = at.weekday().num_days_from_monday() as usize;
        let minute = at.hour() as usize * 60 + at.minute() as usize;
        usize::from(self.slots[day * MINUTES_PER_DAY + minute])
    }
}

/// `(day title, "HH:MM")` of a minute of the week.
fn describe(minute_of_week: usize) -> (&'static str, String) {
    let day = DAY_TITLES[minute_of_week / MINUTES_PER_DAY];
    let m = minute_of_week % MINUTES_PER_DAY;
    (day, format!("{:02}:{:02}", m / 60, m % 60))
}

/// A set of weekdays (bit 0 = Monday) from names and ranges:
/// `["mon-fri"]`, `["sat", "sun"]`, `["fri-mon"]` (wraps over the weekend).
fn parse_days(items: &[String]) -> Result<u8, String> {
    if items.is_empty() {
        return Err("days is empty (write e.g. [\"mon-fri\"] or [\"mon-sun\"])".into());
    }
    let day = |s: &str| {
        let lower = s.trim().to_ascii_lowercase();
        DAY_NAMES.iter().position(|d| *d == lower).ok_or_else(|| {
            format!(
                "unknown day {s:?} (expected mon, tue, ..., sun or a range such as \"mon-fri\")"
            )
        })
    };
    let mut set = 0u8;
    for item in items {
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut d = a;
                loop {
                    set |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => set |= 1 << day(item)?,
        }
    }
    Ok(set)
}

/// Minutes after midnight of `"HH:MM"`; `"24:00"` only as an end.
fn parse_time(s: &str, end: bool) -> Result<usize, String> {
    let bad = || format!("{s:?} is not a time of day \"HH:MM\"");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let digits = |x: &str| x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || !digits(m) {
        return Err(bad());
    }
    let h: usize = h.parse().map_err(|_| bad())?;
    let m: usize = m.parse().map_err(|_| bad())?;
    match (h, m) {
        (24, 0) if end => Ok(MINUTES_PER_DAY),
        (0..=23, 0..=59) => Ok(h * 60 + m),
        _ => Err(bad()),
    }
}
