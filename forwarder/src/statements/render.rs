//! A statement as a message: a plain-text and an HTML part with the same
//! figures, and the calls as a CSV attachment.
//!
//! Everything the caller controls (caller number and name) is any text:
//! it is HTML-escaped in the HTML part, has control characters replaced in
//! the text part, and is quoted by the `csv` crate in the attachment, where
//! a leading `=`, `+`, `-`, `@` in a *name* gets a `'` so a spreadsheet
//! never runs it as a formula (numbers keep their `+`).

use super::config::StatementSettings;
use crate::store::statements::{PeriodCall, PeriodData, PeriodEntry};
use crate::subscriber::Subscriber;
use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Mailbox, MultiPart};
use lettre::Message;
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Totals of the calls to one destination type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DestinationTotal {
    #[serde(rename = "type")]
    pub kind: String,
    pub calls: u64,
    pub seconds: u64,
    pub total: Decimal,
}

/// A statement's figures (stored as the statement's `summary`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub subscriber_id: i64,
    pub name: String,
    pub time_zone: String,
    pub currency: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// The period's start and end in the subscriber's zone
    /// (`2026-02-01 02:00 CET`): the end is exclusive.
    pub starts: String,
    pub ends: String,
    pub opening_balance: Decimal,
    pub call_count: u64,
    pub call_seconds: u64,
    /// Sum of the call charges (positive: what the calls cost).
    pub call_charges: Decimal,
    pub payments: Decimal,
    pub credits: Decimal,
    pub adjustments: Decimal,
    pub closing_balance: Decimal,
    pub entries: Vec<PeriodEntry>,
    pub by_destination: Vec<DestinationTotal>,
}

/// A rendered statement.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub summary: Summary,
    pub recipient: String,
    pub message_id: String,
    /// The whole message as sent.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("subscriber {0}: e-mail address {1:?} cannot be used: {2}")]
    Recipient(i64, String, String),
    #[error("cannot build the message: {0}")]
    Message(String),
}

/// Sums a period's data into its figures.
pub fn summarize(s: &Subscriber, data: &PeriodData, settings: &StatementSettings) -> Summary {
    let tz = s.time_zone;
    let mut by_dest: BTreeMap<&str, DestinationTotal> = BTreeMap::new();
    let (mut count, mut secs, mut charges) = (0u64, 0u64, Decimal::ZERO);
    for c in &data.calls {
        count += 1;
        secs += c.billable_seconds;
        charges += c.charge;
        let digits = c.target.as_deref().unwrap_or("").trim_start_matches('+');
        let kind = settings.destination_type(digits);
        let d = by_dest.entry(kind).or_insert_with(|| DestinationTotal {
            kind: kind.to_string(),
            calls: 0,
            seconds: 0,
            total: Decimal::ZERO,
        });
        d.calls += 1;
        d.seconds += c.billable_seconds;
        d.total += c.charge;
    }
    let sum_of = |kind: &str| -> Decimal {
        data.entries
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.amount)
            .sum()
    };
    let (payments, credits, adjustments) =
        (sum_of("payment"), sum_of("credit"), sum_of("adjustment"));
    let entries_total: Decimal = data.entries.iter().map(|e| e.amount).sum();
    Summary {
        subscriber_id: s.id,
        name: s.name.clone(),
        time_zone: tz.name().to_string(),
        currency: s.currency.to_string(),
        period_start: data.period.start,
        period_end: data.period.end,
        starts: local_minutes(data.period.start, tz),
        ends: local_minutes(data.period.end, tz),
        opening_balance: data.opening_balance,
        call_count: count,
        call_seconds: secs,
        call_charges: charges,
        payments,
        credits,
        adjustments,
        closing_balance: data.opening_balance - charges + entries_total,
        entries: data.entries.clone(),
        by_destination: by_dest.into_values().collect(),
    }
}

/// Money as shown: at least two decimals, never rounded (a sub-cent rate
/// shows its digits).
pub fn money(d: Decimal) -> String {
    let mut d = d.normalize();
    if d.scale() < 2 {
        d.rescale(2);
    }
    d.to_string()
}

fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

fn local_minutes(t: DateTime<Utc>, tz: Tz) -> String {
    let l = t.with_timezone(&tz);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} {}",
        l.year(),
        l.month(),
        l.day(),
        l.hour(),
        l.minute(),
        l.offset()
    )
}

/// `2026-02-12 09:01:01 CET`: written field by field, as `%Y-%m-%d
/// %H:%M:%S %Z` would (strftime parses its pattern at every call, and a
/// statement formats hundreds of times).
fn local(t: DateTime<Utc>, tz: Tz) -> String {
    let l = t.with_timezone(&tz);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} {}",
        l.year(),
        l.month(),
        l.day(),
        l.hour(),
        l.minute(),
        l.second(),
        l.offset()
    )
}

/// Text from callers, safe for the plain-text part: no control characters.
fn plain(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

fn html_escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

fn caller_of(c: &PeriodCall) -> String {
    match (&c.caller_number, &c.caller_name) {
        (Some(n), Some(name)) if !name.is_empty() => format!("{n} \"{name}\""),
        (Some(n), _) => n.clone(),
        (None, Some(name)) => format!("\"{name}\""),
        (None, None) => "unknown".into(),
    }
}

/// A CSV cell a spreadsheet will not run as a formula.
fn inert(s: &str) -> std::borrow::Cow<'_, str> {
    match s.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{s}").into(),
        _ => s.into(),
    }
}

/// The calls as CSV (header line first, CRLF line ends).
pub fn csv(calls: &[Line], tz: Tz) -> Result<String, RenderError> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::with_capacity(64 + calls.len() * 160));
    let err = |e: csv::Error| RenderError::Message(e.to_string());
    w.write_record([
        "call_id",
        "answered_at",
        "ended_at",
        "caller_number",
        "caller_name",
        "called_number",
        "forwarded_to",
        "billable_seconds",
        "charge",
    ])
    .map_err(err)?;
    let iso = |t: DateTime<Utc>| t.with_timezone(&tz).to_rfc3339();
    for l in calls {
        let c = l.call;
        let name = c.caller_name.as_deref().map(inert);
        w.write_record([
            c.id.to_string().as_str(),
            c.answered_at.map(iso).as_deref().unwrap_or_default(),
            &iso(c.ended_at),
            c.caller_number.as_deref().unwrap_or_default(),
            name.as_deref().unwrap_or_default(),
            &c.called_number,
            c.target.as_deref().unwrap_or_default(),
            &c.billable_seconds.to_string(),
            &l.charge,
        ])
        .map_err(err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| RenderError::Message(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| RenderError::Message(e.to_string()))
}

fn entry_label(kind: &str) -> &str {
    match kind {
        "payment" => "Payment",
        "credit" => "Credit",
        "adjustment" => "Adjustment",
        other => other,
    }
}

/// A call as the text and HTML parts show it, formatted once for both.
pub struct Line<'a> {
    pub call: &'a PeriodCall,
    /// The end time in the subscriber's zone.
    pub ended: String,
    pub caller: String,
    pub duration: String,
    pub charge: String,
}

impl<'a> Line<'a> {
    pub fn of(call: &'a PeriodCall, tz: Tz) -> Line<'a> {
        Line {
            call,
            ended: local(call.ended_at, tz),
            caller: caller_of(call),
            duration: duration(call.billable_seconds),
            charge: money(call.charge),
        }
    }

    fn target(&self) -> &str {
        self.call.target.as_deref().unwrap_or("-")
    }
}

/// The plain-text part.
pub fn text(sum: &Summary, calls: &[Line], tz: Tz) -> String {
    let cur = &sum.currency;
    let mut t = String::with_capacity(1024 + calls.len() * 100);
    let _ = writeln!(t, "Statement for {}", plain(&sum.name));
    let _ = writeln!(
        t,
        "Period: {} to {} ({})",
        sum.starts, sum.ends, sum.time_zone
    );
    t.push('\n');
    let line = |t: &mut String, label: &str, v: Decimal| {
        let _ = writeln!(t, "{label:<28} {cur} {:>12}", money(v));
    };
    line(&mut t, "Opening balance", sum.opening_balance);
    line(
        &mut t,
        &format!("Calls ({}, {})", sum.call_count, duration(sum.call_seconds)),
        -sum.call_charges,
    );
    line(&mut t, "Payments", sum.payments);
    line(&mut t, "Credits", sum.credits);
    line(&mut t, "Adjustments", sum.adjustments);
    line(&mut t, "Closing balance", sum.closing_balance);
    t.push_str("\nCalls\n");
    if calls.is_empty() {
        t.push_str("(none)\n");
    }
    for c in calls {
        let _ = writeln!(
            t,
            "{}  {}  to {}  {}  {cur} {}",
            c.ended,
            plain(&c.caller),
            c.target(),
            c.duration,
            c.charge
        );
    }
    t.push_str("\nPayments, credits and adjustments\n");
    if sum.entries.is_empty() {
        t.push_str("(none)\n");
    }
    for e in &sum.entries {
        let reason = e.reason.as_deref().map(plain).unwrap_or_default();
        let _ = writeln!(
            t,
            "{}  {}  {} {}  {}",
            local(e.created_at, tz),
            entry_label(&e.kind),
            cur,
            money(e.amount),
            reason
        );
    }
    t.push_str("\nTotals per destination type\n");
    if sum.by_destination.is_empty() {
        t.push_str("(none)\n");
    }
    for d in &sum.by_destination {
        let _ = writeln!(
            t,
            "{:<24} {:>6} calls  {:>9}  {} {}",
            plain(&d.kind),
            d.calls,
            duration(d.seconds),
            cur,
            money(d.total)
        );
    }
    t.push_str("\nThe calls are attached as a CSV file.\n");
    t
}

/// The HTML part. A call's cells are on lines of their own: with every
/// line under 76 characters an ASCII part goes out as 7bit, as it is,
/// instead of quoted-printable.
pub fn html(sum: &Summary, calls: &[Line], tz: Tz) -> String {
    let cur = &sum.currency;
    let mut h = String::with_capacity(2048 + calls.len() * 200);
    h.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Statement</title></head><body>\n<h1>Statement for ");
    html_escape(&mut h, &sum.name);
    let _ = writeln!(
        h,
        "</h1>\n<p>Period: {} to {}\n({})</p>",
        sum.starts, sum.ends, sum.time_zone
    );
    h.push_str("<table class=\"summary\">\n");
    let row = |h: &mut String, label: &str, v: Decimal, class: &str| {
        let _ = writeln!(
            h,
            "<tr class=\"{class}\"><th>{label}</th>\n<td>{cur} {}</td></tr>",
            money(v)
        );
    };
    row(&mut h, "Opening balance", sum.opening_balance, "opening");
    row(
        &mut h,
        &format!("Calls ({}, {})", sum.call_count, duration(sum.call_seconds)),
        -sum.call_charges,
        "calls",
    );
    row(&mut h, "Payments", sum.payments, "payments");
    row(&mut h, "Credits", sum.credits, "credits");
    row(&mut h, "Adjustments", sum.adjustments, "adjustments");
    row(&mut h, "Closing balance", sum.closing_balance, "closing");
    h.push_str("</table>\n<h2>Calls</h2>\n<table class=\"calls\">\n<tr><th>Ended</th><th>Caller</th><th>Forwarded to</th>\n<th>Duration</th><th>Charge</th></tr>\n");
    for c in calls {
        let _ = write!(h, "<tr><td>{}</td>\n<td>", c.ended);
        html_escape(&mut h, &c.caller);
        let _ = writeln!(
            h,
            "</td>\n<td>{}</td>\n<td>{}</td>\n<td>{cur} {}</td></tr>",
            c.target(),
            c.duration,
            c.charge
        );
    }
    h.push_str("</table>\n<h2>Payments, credits and adjustments</h2>\n<table class=\"entries\">\n");
    for e in &sum.entries {
        let _ = write!(
            h,
            "<tr><td>{}</td>\n<td>{}</td>\n<td>{cur} {}</td>\n<td>",
            local(e.created_at, tz),
            entry_label(&e.kind),
            money(e.amount)
        );
        html_escape(&mut h, e.reason.as_deref().unwrap_or(""));
        h.push_str("</td></tr>\n");
    }
    h.push_str("</table>\n<h2>Totals per destination type</h2>\n<table class=\"destinations\">\n");
    for d in &sum.by_destination {
        h.push_str("<tr><td>");
        html_escape(&mut h, &d.kind);
        let _ = writeln!(
            h,
            "</td>\n<td>{} calls</td>\n<td>{}</td>\n<td>{cur} {}</td></tr>",
            d.calls,
            duration(d.seconds),
            money(d.total)
        );
    }
    h.push_str("</table>\n<p>The calls are attached as a CSV file.</p>\n</body></html>\n");
    h
}

/// The Message-ID of a subscriber's statement for a period: fixed by the
/// period, so even the same statement rendered twice could not differ.
pub fn message_id(subscriber_id: i64, period_start: DateTime<Utc>, from: &Mailbox) -> String {
    format!(
        "<statement.{subscriber_id}.{}@{}>",
        period_start.timestamp_micros(),
        from.email.domain()
    )
}

/// Renders a statement into its message.
pub fn render(
    s: &Subscriber,
    data: &PeriodData,
    settings: &StatementSettings,
    from: &Mailbox,
    created: DateTime<Utc>,
) -> Result<Rendered, RenderError> {
    let tz = s.time_zone;
    let summary = summarize(s, data, settings);
    let to_addr = s
        .email
        .parse()
        .map_err(|e: lettre::address::AddressError| {
            RenderError::Recipient(s.id, s.email.clone(), e.to_string())
        })?;
    let to = Mailbox::new(Some(plain(&s.name)), to_addr);
    let lines: Vec<Line> = data.calls.iter().map(|c| Line::of(c, tz)).collect();
    // CRLF already: lettre inserts a CR before each bare LF one at a time,
    // moving the rest of the part each time. (Neither part has a CR or LF
    // of its own: caller text has its control characters replaced.)
    let text = text(&summary, &lines, tz).replace('\n', "\r\n");
    let html = html(&summary, &lines, tz).replace('\n', "\r\n");
    let csv = csv(&lines, tz)?;
    drop(lines);
    let message_id = message_id(s.id, data.period.start, from);
    let msg_err = |e: &dyn std::fmt::Display| RenderError::Message(e.to_string());
    let csv_type = ContentType::parse("text/csv; charset=utf-8").map_err(|e| msg_err(&e))?;
    // Base64 keeps the attachment's bytes (CRLFs included) exactly.
    let csv_body = Body::new_with_encoding(csv.into_bytes(), ContentTransferEncoding::Base64)
        .map_err(|_| RenderError::Message("CSV body".into()))?;
    let day = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d").to_string();
    let (first, until) = (day(data.period.start), day(data.period.end));
    let filename = format!("calls-{first}-to-{until}.csv");
    let message = Message::builder()
        .from(from.clone())
        .to(to.clone())
        .subject(format!("Your statement {first} to {until}"))
        .date(created.into())
        .message_id(Some(message_id.clone()))
        .multipart(
            MultiPart::mixed()
                .multipart(MultiPart::alternative_plain_html(text, html))
                .singlepart(Attachment::new(filename).body(csv_body, csv_type)),
        )
        .map_err(|e| msg_err(&e))?;
    let message = String::from_utf8(message.formatted()).map_err(|e| msg_err(&e))?;
    Ok(Rendered {
        summary,
        recipient: to.email.to_string(),
        message_id,
        message,
    })
}

/// The parts of a stored statement message, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parts {
    pub text: Option<String>,
    pub html: Option<String>,
    pub csv: Option<String>,
}

/// Takes a stored message apart (what the API and `statements show` serve
/// is exactly what was sent).
pub fn parts(message: &str) -> Result<Parts, RenderError> {
    let parsed = mailparse::parse_mail(message.as_bytes())
        .map_err(|e| RenderError::Message(e.to_string()))?;
    let mut out = Parts::default();
    let mut stack = vec![&parsed];
    while let Some(p) = stack.pop() {
        stack.extend(p.subparts.iter());
        if !p.subparts.is_empty() {
            continue;
        }
        let body = || {
            p.get_body()
                .map_err(|e| RenderError::Message(e.to_string()))
        };
        match p.ctype.mimetype.as_str() {
            "text/plain" => out.text = Some(body()?),
            "text/html" => out.html = Some(body()?),
            "text/csv" => out.csv = Some(body()?),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written formatting is strftime's, across zones and
    /// daylight-saving changes.
    #[test]
    fn local_times_match_strftime() {
        let zones = [
            "Europe/Berlin",
            "America/New_York",
            "Asia/Tokyo",
            "UTC",
            "Australia/Lord_Howe",
        ];
        let times = [
            "2026-03-29T00:59:59Z",
            "2026-03-29T01:00:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-25T01:30:00Z",
            "2026-11-01T06:00:00Z",
            "0999-01-01T00:00:00Z",
        ];
        for z in zones {
            let tz: Tz = z.parse().unwrap();
            for t in times {
                let t: DateTime<Utc> = t.parse().unwrap();
                let l = t.with_timezone(&tz);
                assert_eq!(local(t, tz), l.format("%Y-%m-%d %H:%M:%S %Z").to_string());
                assert_eq!(
                    local_minutes(t, tz),
                    l.format("%Y-%m-%d %H:%M %Z").to_string()
                );
            }
        }
    }

    /// A usual statement (ASCII, a longest-zone period line, six-figure
    /// totals) keeps every HTML line short enough for 7bit.
    #[test]
    fn html_lines_fit_7bit() {
        let tz: Tz = "America/Argentina/Buenos_Aires".parse().unwrap();
        let t: DateTime<Utc> = "2026-02-12T09:01:01Z".parse().unwrap();
        let call = PeriodCall {
            id: uuid::Uuid::nil(),
            received_at: t,
            answered_at: Some(t),
            ended_at: t,
            caller_number: Some("+4930123456789".into()),
            caller_name: Some("Max Mustermann".into()),
            called_number: "+4930999999999".into(),
            target: Some("+4915112345678".into()),
            billable_seconds: 35_999,
            charge: Decimal::new(123_456_789, 4),
        };
        let entry = PeriodEntry {
            id: 1,
            kind: "adjustment".into(),
            amount: Decimal::new(-123_456_789, 4),
            reason: Some("goodwill for the outage".into()),
            created_at: t,
        };
        let big = Decimal::new(-123_456_789, 4);
        let sum = Summary {
            subscriber_id: 1,
            name: "Max Mustermann".into(),
            time_zone: tz.name().into(),
            currency: "EUR".into(),
            period_start: t,
            period_end: t,
            starts: local_minutes(t, tz),
            ends: local_minutes(t, tz),
            opening_balance: big,
            call_count: 99_999,
            call_seconds: 3_599_999,
            call_charges: big,
            payments: big,
            credits: big,
            adjustments: big,
            closing_balance: big,
            entries: vec![entry],
            by_destination: vec![DestinationTotal {
                kind: "Germany mobile".into(),
                calls: 99_999,
                seconds: 3_599_999,
                total: big,
            }],
        };
        let lines = [Line::of(&call, tz)];
        let h = html(&sum, &lines, tz);
        for l in h.lines() {
            assert!(l.len() < 76, "{} characters: {l}", l.len());
        }
    }

    #[test]
    fn money_keeps_every_digit() {
        assert_eq!(money(Decimal::new(5, 1)), "0.50");
        assert_eq!(money(Decimal::new(1234, 3)), "1.234");
        assert_eq!(money(Decimal::new(-110, 2)), "-1.10");
        assert_eq!(money(Decimal::new(7, 0)), "7.00");
    }
}
