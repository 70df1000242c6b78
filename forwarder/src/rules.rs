//! Forwarding rules and which one applies at a given moment.
//!
//! A subscriber has an ordered list of [`Rule`]s. Each names the targets to
//! ring, in order, each with its ring timeout, and optionally the
//! [`TimeWindow`]s in which it applies, in the subscriber's local time. The
//! first rule whose windows contain "now" is taken ([`select`]); a rule
//! without windows always applies, so it serves as the catch-all at the end.
//!
//! ```
//! use forwarder::rules::{select, Rule};
//! let rules: Vec<Rule> = serde_json::from_str(r#"[
//!   {"name": "office", "targets": [{"number": "+4930111", "ring_timeout_secs": 20}],
//!    "windows": [{"days": ["mon","tue","wed","thu","fri"], "start": "08:00", "end": "18:00"}]},
//!   {"name": "mobile", "targets": [{"number": "+491701234"}]}
//! ]"#).unwrap();
//! // Monday 2026-03-02 10:00 in Berlin is 09:00 UTC.
//! let now = "2026-03-02T09:00:00Z".parse().unwrap();
//! let rule = select(&rules, now, chrono_tz::Europe::Berlin).unwrap();
//! assert_eq!(rule.name.as_deref(), Some("office"));
//! ```
//!
//! A window whose end is not after its start crosses midnight: `22:00` to
//! `06:00` on `fri` covers Friday 22:00 to Saturday 06:00. `24:00` is
//! accepted as an end (end of the day). Local times are taken from the zone
//! database, so across a daylight-saving change a window keeps its local
//! hours (and the skipped hour of a spring change never happens).

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use provider_sdk::number::E164;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Most rules per subscriber, targets per rule, windows per rule.
pub const MAX_RULES: usize = 50;
pub const MAX_TARGETS: usize = 10;
pub const MAX_WINDOWS: usize = 20;
/// Longest ring timeout a target may have (seconds).
pub const MAX_RING_TIMEOUT_SECS: u32 = 600;
/// Ring timeout when none is given (seconds).
pub const DEFAULT_RING_TIMEOUT_SECS: u32 = 30;
pub const MAX_RULE_NAME_LEN: usize = 100;

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule {rule}: {message}")]
pub struct RuleError {
    /// 1-based position of the rule in its list.
    pub rule: usize,
    pub message: String,
}

/// A day of the week, written `mon` … `sun`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    pub fn of(w: Weekday) -> Day {
        match w {
            Weekday::Mon => Day::Mon,
            Weekday::Tue => Day::Tue,
            Weekday::Wed => Day::Wed,
            Weekday::Thu => Day::Thu,
            Weekday::Fri => Day::Fri,
            Weekday::Sat => Day::Sat,
            Weekday::Sun => Day::Sun,
        }
    }

    /// The day before.
    pub fn pred(self) -> Day {
        match self {
            Day::Mon => Day::Sun,
            Day::Tue => Day::Mon,
            Day::Wed => Day::Tue,
            Day::Thu => Day::Wed,
            Day::Fri => Day::Thu,
            Day::Sat => Day::Fri,
            Day::Sun => Day::Sat,
        }
    }

    pub fn parse(s: &str) -> Option<Day> {
        Some(match s {
            "mon" => Day::Mon,
            "tue" => Day::Tue,
            "wed" => Day::Wed,
            "thu" => Day::Thu,
            "fri" => Day::Fri,
            "sat" => Day::Sat,
            "sun" => Day::Sun,
            _ => return None,
        })
    }

    pub const ALL: [Day; 7] = [
        Day::Mon,
        Day::Tue,
        Day::Wed,
        Day::Thu,
        Day::Fri,
        Day::Sat,
        Day::Sun,
    ];
}

/// A local time of day to the minute, `00:00` … `24:00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalTime(u16);

impl LocalTime {
    /// Minutes after midnight, 0..=1440.
    pub fn new(minutes: u16) -> Option<LocalTime> {
        (minutes <= 24 * 60).then_some(LocalTime(minutes))
    }

    pub fn minutes(self) -> u16 {
        self.0
    }

    /// `H:MM` or `HH:MM`; `24:00` is the end of the day.
    pub fn parse(s: &str) -> Option<LocalTime> {
        let (h, m) = s.split_once(':')?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return None;
        }
        if !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let h: u16 = h.parse().ok()?;
        let m: u16 = m.parse().ok()?;
        if m > 59 || h > 24 || (h == 24 && m != 0) {
            return None;
        }
        LocalTime::new(h * 60 + m)
    }
}

impl fmt::Display for LocalTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

impl Serialize for LocalTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for LocalTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LocalTime::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "time of day {:?}: expected HH:MM between 00:00 and 24:00",
                s.chars().take(16).collect::<String>()
            ))
        })
    }
}

/// Where to ring, and for how long before moving on to the next target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub number: E164,
    #[serde(default = "default_ring_timeout")]
    pub ring_timeout_secs: u32,
}

fn default_ring_timeout() -> u32 {
    DEFAULT_RING_TIMEOUT_SECS
}

/// Days of the week and local hours. The days are those on which the window
/// *starts*; a window crossing midnight runs into the next day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeWindow {
    pub days: Vec<Day>,
    pub start: LocalTime,
    pub end: LocalTime,
}

impl TimeWindow {
    /// True when local `day` at `minute` (0..1440) falls inside.
    pub fn contains(&self, day: Day, minute: u16) -> bool {
        let (start, end) = (self.start.minutes(), self.end.minutes());
        if start < end {
            self.days.contains(&day) && (start..end).contains(&minute)
        } else {
            // Crosses midnight: the late part on the day itself, the early
            // part on the following day.
            (self.days.contains(&day) && minute >= start)
                || (self.days.contains(&day.pred()) && minute < end)
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.days.is_empty() {
            return Err("a time window needs at least one day".into());
        }
        if self.start.minutes() >= 24 * 60 {
            return Err("a time window cannot start at 24:00".into());
        }
        if self.start == self.end {
            return Err(format!(
                "time window {}-{} is empty (for the whole day use 00:00-24:00)",
                self.start, self.end
            ));
        }
        Ok(())
    }
}

/// One forwarding rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tried in order.
    pub targets: Vec<Target>,
    /// Empty: the rule always applies.
    #[serde(default)]
    pub windows: Vec<TimeWindow>,
}

impl Rule {
    /// True when the rule applies at local `day` and `minute`.
    pub fn applies(&self, day: Day, minute: u16) -> bool {
        self.windows.is_empty() || self.windows.iter().any(|w| w.contains(day, minute))
    }

    fn check(&self) -> Result<(), String> {
        if let Some(n) = &self.name {
            if n.chars().count() > MAX_RULE_NAME_LEN || n.chars().any(char::is_control) {
                return Err(format!(
                    "name must be at most {MAX_RULE_NAME_LEN} characters without control characters"
                ));
            }
        }
        if self.targets.is_empty() {
            return Err("a rule needs at least one target".into());
        }
        if self.targets.len() > MAX_TARGETS {
            return Err(format!("at most {MAX_TARGETS} targets per rule"));
        }
        for (i, t) in self.targets.iter().enumerate() {
            if !(1..=MAX_RING_TIMEOUT_SECS).contains(&t.ring_timeout_secs) {
                return Err(format!(
                    "target {}: ring_timeout_secs must be 1 to {MAX_RING_TIMEOUT_SECS}",
                    i + 1
                ));
            }
        }
        if self.windows.len() > MAX_WINDOWS {
            return Err(format!("at most {MAX_WINDOWS} time windows per rule"));
        }
        for (i, w) in self.windows.iter().enumerate() {
            w.check().map_err(|m| format!("window {}: {m}", i + 1))?;
        }
        Ok(())
    }
}

/// Checks a subscriber's whole rule list (order matters: the first
/// applicable rule wins).
pub fn validate(rules: &[Rule]) -> Result<(), RuleError> {
    if rules.len() > MAX_RULES {
        return Err(RuleError {
            rule: MAX_RULES + 1,
            message: format!("at most {MAX_RULES} rules per subscriber"),
        });
    }
    for (i, r) in rules.iter().enumerate() {
        r.check().map_err(|message| RuleError {
            rule: i + 1,
            message,
        })?;
    }
    Ok(())
}

/// The rules file read by `forwarder rule set --file` (JSON or TOML) and the
/// body of `PUT /v1/subscribers/{id}/rules`: `{"rules": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

/// The first rule that applies at `now` in the subscriber's zone `tz`.
/// `None`: no rule applies, and the call is refused.
pub fn select(rules: &[Rule], now: DateTime<Utc>, tz: Tz) -> Option<&Rule> {
    let local = now.with_timezone(&tz);
    let day = Day::of(local.weekday());
    // Both fit: hour < 24, minute < 60.
    let minute = (local.hour() * 60 + local.minute()) as u16;
    rules.iter().find(|r| r.applies(day, minute))
}

/// Parses the CLI's short window form `mon-fri 08:00-18:00` or
/// `sat,sun 00:00-24:00` (days as a list or a range, then start-end).
pub fn parse_window(s: &str) -> Result<TimeWindow, String> {
    let bad = || format!("time window {s:?}: expected e.g. \"mon-fri 08:00-18:00\"");
    let (days, times) = s.trim().split_once(' ').ok_or_else(bad)?;
    let (start, end) = times.trim().split_once('-').ok_or_else(bad)?;
    let mut out = Vec::new();
    for part in days.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let a = Day::parse(a).ok_or_else(bad)?;
                let b = Day::parse(b).ok_or_else(bad)?;
                let mut i = Day::ALL.iter().position(|d| *d == a).ok_or_else(bad)?;
                loop {
                    let d = Day::ALL[i % 7];
                    if !out.contains(&d) {
                        out.push(d);
                    }
                    if d == b {
                        break;
                    }
                    i += 1;
                }
            }
            None => {
                let d = Day::parse(part).ok_or_else(bad)?;
                if !out.contains(&d) {
                    out.push(d);
                }
            }
        }
    }
    let w = TimeWindow {
        days: out,
        start: LocalTime::parse(start).ok_or_else(bad)?,
        end: LocalTime::parse(end).ok_or_else(bad)?,
    };
    w.check().map_err(|m| format!("time window {s:?}: {m}"))?;
    Ok(w)
}

/// Parses the CLI's target form `+4930123456` or `+4930123456:20` (ring
/// timeout in seconds).
pub fn parse_target(s: &str) -> Result<Target, String> {
    let (number, timeout) = match s.rsplit_once(':') {
        Some((n, t)) => (
            n,
            t.parse::<u32>()
                .map_err(|_| format!("target {s:?}: ring timeout {t:?} is not a number"))?,
        ),
        None => (s, DEFAULT_RING_TIMEOUT_SECS),
    };
    let number = E164::parse(number).map_err(|e| format!("target {s:?}: {e}"))?;
    Ok(Target {
        number,
        ring_timeout_secs: timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::Berlin;

    fn rule(name: &str, windows: &[&str]) -> Rule {
        Rule {
            name: Some(name.into()),
            targets: vec![parse_target("+4930123456").unwrap()],
            windows: windows.iter().map(|w| parse_window(w).unwrap()).collect(),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn selection_table() {
        let office = rule("office", &["mon-fri 08:00-18:00"]);
        let night = rule("night", &["fri 22:00-06:00"]);
        let weekend = rule("weekend", &["sat,sun 00:00-24:00"]);
        let rules = vec![office, night, weekend];
        let with_fallback = {
            let mut r = rules.clone();
            r.push(rule("always", &[]));
            r
        };
        // (rules, instant UTC, zone, expected rule name)
        let cases: Vec<(&[Rule], &str, Tz, Option<&str>)> = vec![
            // Winter (CET, UTC+1): Monday 08:00 local is 07:00 UTC.
            (&rules, "2026-03-02T07:00:00Z", Berlin, Some("office")),
            (&rules, "2026-03-02T06:59:59Z", Berlin, None),
            (
                &with_fallback,
                "2026-03-02T06:59:59Z",
                Berlin,
                Some("always"),
            ),
            // 18:00 is the end: not included.
            (&rules, "2026-03-02T16:59:00Z", Berlin, Some("office")),
            (&rules, "2026-03-02T17:00:00Z", Berlin, None),
            // Friday 23:30 local and Saturday 05:59 local: the window
            // crossing midnight; the order of rules decides Saturday.
            (&rules, "2026-03-06T22:30:00Z", Berlin, Some("night")),
            (&rules, "2026-03-07T04:59:00Z", Berlin, Some("night")),
            (&rules, "2026-03-07T05:00:00Z", Berlin, Some("weekend")),
            // Thursday 23:00: `fri 22:00-06:00` does not start on Thursday.
            (&rules, "2026-03-05T22:00:00Z", Berlin, None),
            // Sunday 2026-03-29 02:00 CET becomes 03:00 CEST (UTC+2).
            // Saturday 07:30 UTC is 08:30 local, Monday after the change
            // 06:30 UTC is 08:30 local (was 07:30 a week before).
            (&rules, "2026-03-30T06:30:00Z", Berlin, Some("office")),
            (&rules, "2026-03-23T06:30:00Z", Berlin, None),
            // 16:30 UTC: 17:30 CET before the change (office), 18:30 CEST
            // after (not office).
            (&rules, "2026-03-27T16:30:00Z", Berlin, Some("office")),
            (&rules, "2026-03-30T16:30:00Z", Berlin, None),
            // The night the clocks change: 00:59 UTC on Sunday is 01:59 CET,
            // 01:00 UTC is 03:00 CEST; the weekend rule covers both.
            (&rules, "2026-03-29T00:59:00Z", Berlin, Some("weekend")),
            (&rules, "2026-03-29T01:00:00Z", Berlin, Some("weekend")),
            // Another zone, autumn change (US, 2026-11-01): Monday 08:00 EST
            // is 13:00 UTC; a week before, 08:00 EDT was 12:00 UTC.
            (&rules, "2026-11-02T13:00:00Z", New_York, Some("office")),
            (&rules, "2026-11-02T12:30:00Z", New_York, None),
            (&rules, "2026-10-26T12:00:00Z", New_York, Some("office")),
            // Saturday 03:00 in New York is still Friday night's window.
            (&rules, "2026-03-07T08:00:00Z", New_York, Some("night")),
            // No rules at all.
            (&[], "2026-03-02T09:00:00Z", Berlin, None),
        ];
        for (rules, instant, tz, want) in cases {
            let got = select(rules, at(instant), tz).and_then(|r| r.name.as_deref());
            assert_eq!(got, want, "{instant} in {tz}");
        }
    }

    #[test]
    fn window_crossing_midnight_at_week_end() {
        // Sunday 23:00 to Monday 01:00: Monday 00:30 is inside.
        let w = parse_window("sun 23:00-01:00").unwrap();
        assert!(w.contains(Day::Mon, 30));
        assert!(w.contains(Day::Sun, 23 * 60));
        assert!(!w.contains(Day::Mon, 60));
        assert!(!w.contains(Day::Sat, 23 * 60 + 30));
        // 22:00-00:00 ends at midnight.
        let w = parse_window("mon 22:00-00:00").unwrap();
        assert!(w.contains(Day::Mon, 23 * 60 + 59));
        assert!(!w.contains(Day::Tue, 0));
    }

    #[test]
    fn parsing_and_validation() {
        assert_eq!(
            parse_window("fri-mon 10:00-11:00").unwrap().days,
            vec![Day::Fri, Day::Sat, Day::Sun, Day::Mon]
        );
        for bad in [
            "mon",
            "mon 10-11",
            "xyz 10:00-11:00",
            "mon 10:00-10:00",
            "mon 24:00-10:00",
            "mon 25:00-26:00",
            "mon 10:60-11:00",
            "mon 1000-1100",
        ] {
            assert!(parse_window(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_target("+4930123:20").unwrap().ring_timeout_secs, 20);
        assert!(parse_target("030123").is_err());
        assert!(parse_target("+4930123:x").is_err());
        let mut r = rule("r", &[]);
        r.targets[0].ring_timeout_secs = 0;
        assert_eq!(validate(&[rule("ok", &[]), r]).unwrap_err().rule, 2);
        let empty = Rule {
            name: None,
            targets: vec![],
            windows: vec![],
        };
        assert!(validate(&[empty]).is_err());
        // JSON: unknown fields and bad times are refused.
        assert!(serde_json::from_str::<Rule>(r#"{"targets":[],"when":1}"#).is_err());
        assert!(serde_json::from_str::<TimeWindow>(
            r#"{"days":["mon"],"start":"8:00","end":"7.00"}"#
        )
        .is_err());
        let w: TimeWindow =
            serde_json::from_str(r#"{"days":["mon"],"start":"8:00","end":"24:00"}"#).unwrap();
        assert_eq!(serde_json::to_string(&w.end).unwrap(), "\"24:00\"");
    }
}
