//! Rate decks: what a provider charges per destination prefix.
//!
//! A [`RateDeck`] is a validated list of [`RateEntry`]s: every prefix at most
//! once per `effective_from` (a prefix may carry a current rate and scheduled
//! future ones). Parse one from CSV or JSON; when any line is bad, nothing is
//! returned but a [`DeckErrors`] naming every bad line (the first
//! [`MAX_REPORTED_ERRORS`], plus how many more there were):
//!
//! ```
//! use provider_sdk::ratedeck::RateDeck;
//!
//! let csv = b"prefix,rate_per_minute,connect_fee,first_increment,next_increment\n\
//!             49,0.0100,0,60,60\n\
//!             4930,0.0080,0,1,1\n";
//! let deck = RateDeck::parse_csv(csv).unwrap();
//! assert_eq!(deck.len(), 2);
//!
//! let err = RateDeck::parse_csv(b"49,-1,0,60,60\n4x,0.1,0,0,60\n").unwrap_err();
//! assert_eq!(err.errors[0].line, 1);
//! assert_eq!(err.errors[0].column, Some("rate_per_minute"));
//! assert_eq!(err.errors[1].line, 2);
//! ```
//!
//! CSV columns, in this order unless a header row (recognised by a field
//! named `prefix`) names them in another:
//! `prefix,rate_per_minute,connect_fee,first_increment,next_increment,effective_from,description`.
//! The last two are optional; `effective_from` is RFC 3339
//! (`2026-12-01T00:00:00Z`). Blank lines and lines starting with `#` are
//! ignored. Prices follow [`crate::money::parse_price`]; increments are
//! whole seconds in `1..=`[`MAX_INCREMENT_SECONDS`].
//!
//! JSON is an array of objects with the same field names (or an object
//! `{"entries": [...]}`); prices may be strings (preferred: exact) or
//! numbers. A [`RateDelta`] (`{"upsert": [...], "delete": ["4930", ...]}`)
//! changes a deck in place of a full replacement: [`RateDeck::apply`].

use std::collections::{HashMap, HashSet};
use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;

use crate::money::{check_price, parse_price};
use crate::number::{Prefix, E164};

#[doc(hidden)]
pub mod synth;

/// Longest billing increment accepted, in seconds (one hour).
pub const MAX_INCREMENT_SECONDS: u32 = 3600;

/// Longest description accepted, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 200;

/// How many errors a [`DeckErrors`] keeps; the rest are only counted.
pub const MAX_REPORTED_ERRORS: usize = 1000;

/// The CSV columns in their default order.
pub const CSV_COLUMNS: [&str; 7] = [
    "prefix",
    "rate_per_minute",
    "connect_fee",
    "first_increment",
    "next_increment",
    "effective_from",
    "description",
];

/// Columns that must be present in every line.
const REQUIRED_COLUMNS: usize = 5;

/// One rate: the price of calls to numbers starting with `prefix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateEntry {
    pub prefix: Prefix,
    pub rate_per_minute: Decimal,
    pub connect_fee: Decimal,
    /// First billed block, in seconds (>= 1).
    pub first_increment: u32,
    /// Every following block, in seconds (>= 1).
    pub next_increment: u32,
    /// When the rate takes effect; `None` means "already in effect".
    pub effective_from: Option<DateTime<Utc>>,
    pub description: Option<String>,
}

/// A validated rate deck: no two entries share `(prefix, effective_from)`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct RateDeck {
    entries: Vec<RateEntry>,
}

/// The rates of a deck in effect at one moment, for longest-prefix lookups
/// (a provider checking a ticket's price against its own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateTable {
    entries: HashMap<Prefix, RateEntry>,
}

impl RateTable {
    /// The entry of the longest prefix matching `number`.
    pub fn lookup(&self, number: &E164) -> Option<&RateEntry> {
        (1..=number.len())
            .rev()
            .filter_map(|len| Prefix::of_number(number, len))
            .find_map(|p| self.entries.get(&p))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A change to a deck: entries to add or replace (matched by prefix and
/// `effective_from`) and prefixes to remove (with all their schedules).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RateDelta {
    pub upsert: Vec<RateEntry>,
    pub delete: Vec<Prefix>,
}

/// One problem with one line of an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeckError {
    /// 1-based: the CSV line, or the JSON array index + 1. For a JSON syntax
    /// error, the text line of the document.
    pub line: usize,
    /// The column (field name) at fault, when one is.
    pub column: Option<&'static str>,
    pub message: String,
}

/// Every problem found in an upload (the first [`MAX_REPORTED_ERRORS`] of
/// them, plus the number of further ones in `omitted`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, thiserror::Error)]
pub struct DeckErrors {
    pub errors: Vec<DeckError>,
    /// Errors found but not listed.
    pub omitted: usize,
}

impl DeckErrors {
    /// All errors found, listed or not.
    pub fn total(&self) -> usize {
        self.errors.len() + self.omitted
    }

    fn push(&mut self, line: usize, column: Option<&'static str>, message: impl Into<String>) {
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(DeckError {
                line,
                column,
                message: message.into(),
            });
        } else {
            self.omitted += 1;
        }
    }

    fn is_empty(&self) -> bool {
        self.total() == 0
    }
}

impl fmt::Display for DeckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(c) => write!(f, "line {}, {}: {}", self.line, c, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

impl fmt::Display for DeckErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error(s) in rate deck", self.total())?;
        for e in &self.errors {
            write!(f, "; {e}")?;
        }
        if self.omitted > 0 {
            write!(f, "; and {} more", self.omitted)?;
        }
        Ok(())
    }
}

impl RateDeck {
    /// Parses and validates a CSV deck (see the module docs for the format).
    pub fn parse_csv(input: &[u8]) -> Result<RateDeck, DeckErrors> {
        let mut errors = DeckErrors::default();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .comment(Some(b'#'))
            .from_reader(input);
        let mut record = csv::ByteRecord::new();
        let mut entries = Vec::with_capacity(input.len() / 24);
        let mut lines: Vec<usize> = Vec::with_capacity(input.len() / 24);
        let mut order: Vec<usize> = (0..CSV_COLUMNS.len()).collect();
        let mut first = true;
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line() as usize);
                    errors.push(line, None, format!("unreadable CSV: {e}"));
                    break;
                }
            }
            let line = record.position().map_or(0, |p| p.line() as usize);
            if first {
                first = false;
                if record.iter().any(|f| f.eq_ignore_ascii_case(b"prefix")) {
                    match header_order(&record) {
                        Ok(o) => order = o,
                        Err(message) => {
                            errors.push(line, None, message);
                            return Err(errors);
                        }
                    }
                    continue;
                }
            }
            if let Some(entry) = parse_csv_record(&record, &order, line, &mut errors) {
                entries.push(entry);
                lines.push(line);
            }
        }
        check_duplicates(&entries, &lines, &mut errors);
        if errors.is_empty() {
            Ok(RateDeck { entries })
        } else {
            errors.errors.sort_by_key(|e| e.line);
            Err(errors)
        }
    }

    /// Parses and validates a JSON deck: an array of entry objects, or
    /// `{"entries": [...]}`.
    pub fn parse_json(input: &[u8]) -> Result<RateDeck, DeckErrors> {
        let mut errors = DeckErrors::default();
        let doc = parse_json_document(input, &mut errors)?;
        let items = match doc {
            Value::Array(items) => items,
            Value::Object(mut map) => match map.remove("entries") {
                Some(Value::Array(items)) if map.is_empty() => items,
                _ => {
                    errors.push(
                        1,
                        None,
                        "expected an array of entries or {\"entries\": [...]}",
                    );
                    return Err(errors);
                }
            },
            _ => {
                errors.push(
                    1,
                    None,
                    "expected an array of entries or {\"entries\": [...]}",
                );
                return Err(errors);
            }
        };
        let (entries, lines) = parse_json_entries(items, &mut errors);
        check_duplicates(&entries, &lines, &mut errors);
        if errors.is_empty() {
            Ok(RateDeck { entries })
        } else {
            errors.errors.sort_by_key(|e| e.line);
            Err(errors)
        }
    }

    /// Validates entries built elsewhere (e.g. read back from storage).
    pub fn from_entries(entries: Vec<RateEntry>) -> Result<RateDeck, DeckErrors> {
        let mut errors = DeckErrors::default();
        for (i, e) in entries.iter().enumerate() {
            check_entry(e, i + 1, &mut errors);
        }
        let lines: Vec<usize> = (1..=entries.len()).collect();
        check_duplicates(&entries, &lines, &mut errors);
        if errors.is_empty() {
            Ok(RateDeck { entries })
        } else {
            Err(errors)
        }
    }

    /// The deck with `delta` applied: deleted prefixes lose every schedule,
    /// then upserted entries replace those with the same prefix and
    /// `effective_from` or are added.
    pub fn apply(&self, delta: &RateDelta) -> RateDeck {
        let deleted: HashSet<Prefix> = delta.delete.iter().copied().collect();
        let replaced: HashSet<(Prefix, Option<DateTime<Utc>>)> = delta
            .upsert
            .iter()
            .map(|e| (e.prefix, e.effective_from))
            .collect();
        let mut entries: Vec<RateEntry> = self
            .entries
            .iter()
            .filter(|e| {
                !deleted.contains(&e.prefix) && !replaced.contains(&(e.prefix, e.effective_from))
            })
            .cloned()
            .collect();
        entries.extend(delta.upsert.iter().cloned());
        RateDeck { entries }
    }

    /// The rates in effect at `at`: per prefix, the entry with the latest
    /// `effective_from` not after `at` (entries without one are in effect
    /// from the start). Prefixes with only future entries are left out, so
    /// a number then matches a shorter prefix, as central's route index does.
    pub fn effective_at(&self, at: DateTime<Utc>) -> RateTable {
        let mut by_prefix: HashMap<Prefix, &RateEntry> = HashMap::new();
        for e in &self.entries {
            if e.effective_from.is_some_and(|f| f > at) {
                continue;
            }
            let newer = by_prefix
                .get(&e.prefix)
                .is_none_or(|old| old.effective_from < e.effective_from);
            if newer {
                by_prefix.insert(e.prefix, e);
            }
        }
        RateTable {
            entries: by_prefix.into_iter().map(|(p, e)| (p, e.clone())).collect(),
        }
    }

    pub fn entries(&self) -> &[RateEntry] {
        &self.entries
    }

    pub fn into_entries(self) -> Vec<RateEntry> {
        self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl RateDelta {
    /// Parses `{"upsert": [entries...], "delete": ["prefix", ...]}` (both
    /// optional). Errors in `upsert` carry the array index + 1 as line;
    /// errors in `delete` carry the index + 1 and the column `delete`.
    /// A prefix both deleted and upserted is refused as ambiguous.
    pub fn parse_json(input: &[u8]) -> Result<RateDelta, DeckErrors> {
        let mut errors = DeckErrors::default();
        let doc = parse_json_document(input, &mut errors)?;
        let Value::Object(map) = doc else {
            errors.push(1, None, "expected {\"upsert\": [...], \"delete\": [...]}");
            return Err(errors);
        };
        let mut upsert_items = Vec::new();
        let mut delete_items = Vec::new();
        for (key, value) in map {
            match (key.as_str(), value) {
                ("upsert", Value::Array(items)) => upsert_items = items,
                ("delete", Value::Array(items)) => delete_items = items,
                ("upsert" | "delete", _) => {
                    errors.push(1, None, format!("\"{key}\" must be an array"));
                }
                _ => errors.push(1, None, format!("unknown field {:?}", truncate(&key))),
            }
        }
        let (upsert, upsert_lines) = parse_json_entries(upsert_items, &mut errors);
        let mut delete = Vec::with_capacity(delete_items.len());
        let mut deleted = HashSet::new();
        for (i, item) in delete_items.iter().enumerate() {
            match prefix_from_json(item) {
                Ok(p) if !deleted.insert(p) => {
                    errors.push(i + 1, Some("delete"), format!("prefix {p} listed twice"))
                }
                Ok(p) => delete.push(p),
                Err(m) => errors.push(i + 1, Some("delete"), m),
            }
        }
        check_duplicates(&upsert, &upsert_lines, &mut errors);
        for (e, &line) in upsert.iter().zip(&upsert_lines) {
            if deleted.contains(&e.prefix) {
                errors.push(
                    line,
                    Some("prefix"),
                    format!("prefix {} is both deleted and upserted", e.prefix),
                );
            }
        }
        if errors.is_empty() {
            Ok(RateDelta { upsert, delete })
        } else {
            Err(errors)
        }
    }
}

/// Maps the header's names to column indexes into [`CSV_COLUMNS`].
fn header_order(record: &csv::ByteRecord) -> Result<Vec<usize>, String> {
    let mut order = Vec::with_capacity(record.len());
    for field in record.iter() {
        let name = String::from_utf8_lossy(field).to_ascii_lowercase();
        let Some(col) = CSV_COLUMNS.iter().position(|c| *c == name) else {
            return Err(format!(
                "unknown column {:?} in header (expected {})",
                truncate(&name),
                CSV_COLUMNS.join(",")
            ));
        };
        if order.contains(&col) {
            return Err(format!("column {name} appears twice in header"));
        }
        order.push(col);
    }
    if let Some(missing) = (0..REQUIRED_COLUMNS).find(|c| !order.contains(c)) {
        return Err(format!("header lacks column {}", CSV_COLUMNS[missing]));
    }
    Ok(order)
}

/// Fields of one entry as text, before validation.
#[derive(Default)]
struct RawFields<'a> {
    fields: [Option<&'a [u8]>; 7],
}

fn parse_csv_record(
    record: &csv::ByteRecord,
    order: &[usize],
    line: usize,
    errors: &mut DeckErrors,
) -> Option<RateEntry> {
    if record.len() > order.len() {
        errors.push(
            line,
            None,
            format!("{} fields, expected at most {}", record.len(), order.len()),
        );
        return None;
    }
    let mut raw = RawFields::default();
    for (field, &col) in record.iter().zip(order) {
        raw.fields[col] = Some(field);
    }
    let before = errors.total();
    let text = |col: usize, errors: &mut DeckErrors| -> Option<&str> {
        match raw.fields[col] {
            None | Some(b"") if col < REQUIRED_COLUMNS => {
                errors.push(line, Some(CSV_COLUMNS[col]), "missing");
                None
            }
            None | Some(b"") => None,
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(s) => Some(s),
                Err(_) => {
                    errors.push(line, Some(CSV_COLUMNS[col]), "not valid UTF-8");
                    None
                }
            },
        }
    };
    let prefix = text(0, errors).and_then(|s| {
        Prefix::parse(s)
            .map_err(|e| {
                errors.push(
                    line,
                    Some("prefix"),
                    format!("bad prefix {:?}: {e}", truncate(s)),
                )
            })
            .ok()
    });
    let rate = text(1, errors).and_then(|s| price_field(s, "rate_per_minute", line, errors));
    let fee = text(2, errors).and_then(|s| price_field(s, "connect_fee", line, errors));
    let first = text(3, errors).and_then(|s| increment_field(s, "first_increment", line, errors));
    let next = text(4, errors).and_then(|s| increment_field(s, "next_increment", line, errors));
    let effective_from = text(5, errors).and_then(|s| date_field(s, line, errors));
    let description = text(6, errors).and_then(|s| description_field(s, line, errors));
    if errors.total() != before {
        return None;
    }
    Some(RateEntry {
        prefix: prefix?,
        rate_per_minute: rate?,
        connect_fee: fee?,
        first_increment: first?,
        next_increment: next?,
        effective_from,
        description,
    })
}

fn price_field(
    s: &str,
    column: &'static str,
    line: usize,
    errors: &mut DeckErrors,
) -> Option<Decimal> {
    parse_price(s)
        .map_err(|e| errors.push(line, Some(column), format!("{e}: {:?}", truncate(s))))
        .ok()
}

fn increment_field(
    s: &str,
    column: &'static str,
    line: usize,
    errors: &mut DeckErrors,
) -> Option<u32> {
    match s.parse::<u32>() {
        Ok(v) if (1..=MAX_INCREMENT_SECONDS).contains(&v) => Some(v),
        _ => {
            errors.push(
                line,
                Some(column),
                format!(
                    "increment must be whole seconds from 1 to {MAX_INCREMENT_SECONDS}, got {:?}",
                    truncate(s)
                ),
            );
            None
        }
    }
}

fn date_field(s: &str, line: usize, errors: &mut DeckErrors) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| {
            errors.push(
                line,
                Some("effective_from"),
                format!("not an RFC 3339 date-time ({e}): {:?}", truncate(s)),
            )
        })
        .ok()
}

fn description_field(s: &str, line: usize, errors: &mut DeckErrors) -> Option<String> {
    if s.chars().count() > MAX_DESCRIPTION_CHARS {
        errors.push(
            line,
            Some("description"),
            format!("longer than {MAX_DESCRIPTION_CHARS} characters"),
        );
        None
    } else if s.chars().any(char::is_control) {
        errors.push(line, Some("description"), "contains control characters");
        None
    } else {
        Some(s.to_owned())
    }
}

/// Re-checks an entry built in code against the parsers' rules.
fn check_entry(e: &RateEntry, line: usize, errors: &mut DeckErrors) {
    for (column, price) in [
        ("rate_per_minute", e.rate_per_minute),
        ("connect_fee", e.connect_fee),
    ] {
        if let Err(err) = check_price(price) {
            errors.push(line, Some(column), err.to_string());
        }
    }
    for (column, inc) in [
        ("first_increment", e.first_increment),
        ("next_increment", e.next_increment),
    ] {
        if !(1..=MAX_INCREMENT_SECONDS).contains(&inc) {
            errors.push(
                line,
                Some(column),
                format!("increment {inc} out of 1..={MAX_INCREMENT_SECONDS}"),
            );
        }
    }
    if let Some(d) = &e.description {
        description_field(d, line, errors);
    }
}

fn check_duplicates(entries: &[RateEntry], lines: &[usize], errors: &mut DeckErrors) {
    let mut seen: HashMap<(Prefix, Option<DateTime<Utc>>), usize> =
        HashMap::with_capacity(entries.len());
    for (e, &line) in entries.iter().zip(lines) {
        if let Some(first) = seen.insert((e.prefix, e.effective_from), line) {
            // Keep pointing at the first occurrence for later duplicates.
            seen.insert((e.prefix, e.effective_from), first);
            let when = match e.effective_from {
                Some(d) => format!(" effective from {}", d.to_rfc3339()),
                None => String::new(),
            };
            errors.push(
                line,
                Some("prefix"),
                format!(
                    "duplicate prefix {}{when} (first on line {first})",
                    e.prefix
                ),
            );
        }
    }
}

fn parse_json_document(input: &[u8], errors: &mut DeckErrors) -> Result<Value, DeckErrors> {
    serde_json::from_slice(input).map_err(|e| {
        errors.push(e.line().max(1), None, format!("invalid JSON: {e}"));
        std::mem::take(errors)
    })
}

/// The valid entries and the line (index + 1) of each.
fn parse_json_entries(items: Vec<Value>, errors: &mut DeckErrors) -> (Vec<RateEntry>, Vec<usize>) {
    let mut entries = Vec::with_capacity(items.len());
    let mut lines = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let line = i + 1;
        let Value::Object(map) = item else {
            errors.push(line, None, "entry must be an object");
            continue;
        };
        let mut raw: [Option<Value>; 7] = Default::default();
        let before = errors.total();
        for (key, value) in map {
            match CSV_COLUMNS.iter().position(|c| *c == key) {
                Some(col) => raw[col] = Some(value),
                None => errors.push(line, None, format!("unknown field {:?}", truncate(&key))),
            }
        }
        let [prefix, rate, fee, first, next, from, desc] = raw;
        let required = |v: Option<Value>, col: &'static str, errors: &mut DeckErrors| match v {
            None | Some(Value::Null) => {
                errors.push(line, Some(col), "missing");
                None
            }
            Some(v) => Some(v),
        };
        let prefix = required(prefix, "prefix", errors).and_then(|v| {
            prefix_from_json(&v)
                .map_err(|m| errors.push(line, Some("prefix"), m))
                .ok()
        });
        let rate = required(rate, "rate_per_minute", errors)
            .and_then(|v| price_from_json(&v, "rate_per_minute", line, errors));
        let fee = required(fee, "connect_fee", errors)
            .and_then(|v| price_from_json(&v, "connect_fee", line, errors));
        let first = required(first, "first_increment", errors)
            .and_then(|v| increment_from_json(&v, "first_increment", line, errors));
        let next = required(next, "next_increment", errors)
            .and_then(|v| increment_from_json(&v, "next_increment", line, errors));
        let effective_from = match from {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => date_field(&s, line, errors),
            Some(_) => {
                errors.push(line, Some("effective_from"), "must be an RFC 3339 string");
                None
            }
        };
        let description = match desc {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => description_field(&s, line, errors),
            Some(_) => {
                errors.push(line, Some("description"), "must be a string");
                None
            }
        };
        if errors.total() != before {
            continue;
        }
        if let (
            Some(prefix),
            Some(rate_per_minute),
            Some(connect_fee),
            Some(first_increment),
            Some(next_increment),
        ) = (prefix, rate, fee, first, next)
        {
            entries.push(RateEntry {
                prefix,
                rate_per_minute,
                connect_fee,
                first_increment,
                next_increment,
                effective_from,
                description,
            });
            lines.push(line);
        }
    }
    (entries, lines)
}

fn prefix_from_json(v: &Value) -> Result<Prefix, String> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_u64() => n.to_string(),
        _ => return Err("prefix must be a string of digits".into()),
    };
    Prefix::parse(&text).map_err(|e| format!("bad prefix {:?}: {e}", truncate(&text)))
}

fn price_from_json(
    v: &Value,
    column: &'static str,
    line: usize,
    errors: &mut DeckErrors,
) -> Option<Decimal> {
    match v {
        Value::String(s) => price_field(s, column, line, errors),
        // A JSON number arrives as a float; its shortest round-trip text is
        // what was written whenever that was exactly representable.
        Value::Number(n) => price_field(&number_text(n), column, line, errors),
        _ => {
            errors.push(
                line,
                Some(column),
                "price must be a decimal string or number",
            );
            None
        }
    }
}

fn number_text(n: &serde_json::Number) -> String {
    if let Some(u) = n.as_u64() {
        u.to_string()
    } else if let Some(i) = n.as_i64() {
        i.to_string()
    } else {
        n.as_f64().map(|f| f.to_string()).unwrap_or_default()
    }
}

fn increment_from_json(
    v: &Value,
    column: &'static str,
    line: usize,
    errors: &mut DeckErrors,
) -> Option<u32> {
    match v {
        Value::Number(n) => increment_field(&number_text(n), column, line, errors),
        Value::String(s) => increment_field(s, column, line, errors),
        _ => {
            errors.push(
                line,
                Some(column),
                "increment must be a whole number of seconds",
            );
            None
        }
    }
}

/// Keeps quoted input short in messages.
fn truncate(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(MAX).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests;
