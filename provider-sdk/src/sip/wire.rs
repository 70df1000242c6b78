//! Splitting raw bytes into a start line, header fields and a body.
//!
//! This is deliberately byte-oriented and lenient about nothing but line
//! endings: it never interprets header values (that is [`validate`](mod@super::validate)'s
//! job), it only finds where things are. Folded header values (continuation
//! lines starting with SP or HTAB) are unfolded into one value with every run
//! of linear white space collapsed to a single SP.

use std::borrow::Cow;

/// Largest message accepted on any transport (bytes, headers and body).
pub const MAX_MESSAGE_SIZE: usize = 65_535;

/// One header field as it appeared on the wire (value unfolded).
#[derive(Debug, Clone)]
pub struct RawHeader<'a> {
    /// The field name exactly as sent (case and compact form preserved).
    pub name: &'a [u8],
    /// The value, trimmed, with folding and LWS runs collapsed to one SP.
    pub value: Cow<'a, [u8]>,
}

/// A message split into its parts; nothing in it has been validated yet.
#[derive(Debug, Clone)]
pub struct RawMessage<'a> {
    /// The first line without its line ending.
    pub start_line: &'a [u8],
    /// Header fields in order of appearance.
    pub headers: Vec<RawHeader<'a>>,
    /// Everything after the empty line (for datagrams: up to the end of the packet).
    pub body: &'a [u8],
    /// The header part ended with an empty line (false when the input was cut short).
    pub complete_head: bool,
}

/// Why the bytes could not even be split into lines and fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("empty message")]
    Empty,
    #[error("message larger than {MAX_MESSAGE_SIZE} bytes")]
    TooLarge,
    #[error("continuation line before the first header field")]
    OrphanContinuation,
    #[error("header line without a colon")]
    MissingColon,
    #[error("header field name is not a token")]
    BadHeaderName,
}

/// Result of looking for one complete message at the start of a stream buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFrame {
    /// More bytes are needed.
    Incomplete,
    /// Only line breaks (keep-alives) so far: this many bytes can be discarded.
    KeepAlive(usize),
    /// A message occupies this many bytes (leading keep-alive CRLFs included).
    Complete(usize),
    /// The framing itself is broken (bad or oversized Content-Length, no end of
    /// headers within the size limit): answer what can be answered, then close.
    Broken,
}

pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token_char(b))
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Position just after the header part (after the empty line), if present.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            // An empty line is "\n" or "\r\n" right after a line ending.
            let next = &buf[i + 1..];
            if next.starts_with(b"\r\n") {
                return Some(i + 3);
            }
            if next.starts_with(b"\n") {
                return Some(i + 2);
            }
        }
        i += 1;
    }
    None
}

fn skip_leading_breaks(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_ws(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_ws(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Collapses every run of SP/HTAB/CR/LF into one SP (values are already trimmed).
fn collapse_lws(value: &[u8]) -> Cow<'_, [u8]> {
    let needs = value.windows(2).any(|w| is_lws(w[0]) && is_lws(w[1]))
        || value
            .iter()
            .any(|&b| b == b'\t' || b == b'\r' || b == b'\n');
    if !needs {
        return Cow::Borrowed(value);
    }
    let mut out = Vec::with_capacity(value.len());
    let mut in_ws = false;
    for &b in value {
        if is_lws(b) {
            if !in_ws {
                out.push(b' ');
            }
            in_ws = true;
        } else {
            out.push(b);
            in_ws = false;
        }
    }
    Cow::Owned(out)
}

fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Splits one whole message (a datagram, or a frame cut from a stream).
pub fn split(buf: &[u8]) -> Result<RawMessage<'_>, SplitError> {
    if buf.len() > MAX_MESSAGE_SIZE {
        return Err(SplitError::TooLarge);
    }
    let start = skip_leading_breaks(buf);
    let buf = &buf[start..];
    if buf.is_empty() {
        return Err(SplitError::Empty);
    }
    let (head, body, complete_head) = match head_end(buf) {
        Some(end) => (&buf[..end], &buf[end..], true),
        None => (buf, &buf[buf.len()..], false),
    };
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let start_line = lines.next().unwrap_or_default();

    // Header field i spans from its name line to the last continuation line;
    // gather (name, value start/end) on the original bytes, then unfold.
    let mut fields: Vec<(&[u8], Vec<&[u8]>)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue; // the terminating empty line(s)
        }
        if is_ws(line[0]) {
            match fields.last_mut() {
                Some((_, parts)) => parts.push(line),
                None => return Err(SplitError::OrphanContinuation),
            }
            continue;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(SplitError::MissingColon)?;
        let name = trim(&line[..colon]);
        if !is_token(name) {
            return Err(SplitError::BadHeaderName);
        }
        fields.push((name, vec![&line[colon + 1..]]));
    }
    let headers = fields
        .into_iter()
        .map(|(name, parts)| {
            let value = if parts.len() == 1 {
                collapse_lws(trim(parts[0]))
            } else {
                let joined: Vec<u8> = parts.join(&b' ');
                Cow::Owned(collapse_lws(trim(&joined)).into_owned())
            };
            RawHeader { name, value }
        })
        .collect();
    Ok(RawMessage {
        start_line,
        headers,
        body,
        complete_head,
    })
}

/// Long name of a compact header form (RFC 3261 section 7.3.3 and extensions).
pub fn expand_compact(name: &[u8]) -> Option<&'static str> {
    if name.len() != 1 {
        return None;
    }
    Some(match name[0].to_ascii_lowercase() {
        b'i' => "Call-ID",
        b'm' => "Contact",
        b'e' => "Content-Encoding",
        b'l' => "Content-Length",
        b'c' => "Content-Type",
        b'f' => "From",
        b's' => "Subject",
        b'k' => "Supported",
        b't' => "To",
        b'v' => "Via",
        b'o' => "Event",
        b'r' => "Refer-To",
        b'u' => "Allow-Events",
        b'b' => "Referred-By",
        b'x' => "Session-Expires",
        _ => return None,
    })
}

/// True when `name` (as sent) denotes the header `canonical` (long form).
pub fn name_is(name: &[u8], canonical: &str) -> bool {
    name.eq_ignore_ascii_case(canonical.as_bytes())
        || expand_compact(name).is_some_and(|long| long.eq_ignore_ascii_case(canonical))
}

/// Finds one complete message at the start of a stream buffer (TCP/TLS).
///
/// The body length comes from Content-Length; a missing one means no body
/// (RFC 3261 section 18.3 makes it mandatory on streams).
pub fn frame_stream(buf: &[u8]) -> StreamFrame {
    let leading = skip_leading_breaks(buf);
    if leading == buf.len() {
        return if leading == 0 {
            StreamFrame::Incomplete
        } else {
            StreamFrame::KeepAlive(leading)
        };
    }
    let Some(end) = head_end(&buf[leading..]) else {
        return if buf.len() > MAX_MESSAGE_SIZE {
            StreamFrame::Broken
        } else {
            StreamFrame::Incomplete
        };
    };
    let head = &buf[leading..leading + end];
    let mut length: Option<usize> = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line.first().is_some_and(|&b| is_ws(b))
            || !name_is(trim(&line[..colon]), "Content-Length")
        {
            continue;
        }
        let digits = trim(
            line[colon + 1..]
                .strip_suffix(b"\r")
                .unwrap_or(&line[colon + 1..]),
        );
        let parsed = std::str::from_utf8(digits)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<usize>().ok());
        match (parsed, length) {
            (Some(n), None) if n <= MAX_MESSAGE_SIZE => length = Some(n),
            _ => return StreamFrame::Broken, // unreadable, oversized or repeated
        }
    }
    let total = leading + end + length.unwrap_or(0);
    if total > MAX_MESSAGE_SIZE {
        StreamFrame::Broken
    } else if buf.len() < total {
        StreamFrame::Incomplete
    } else {
        StreamFrame::Complete(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfolds_and_collapses_whitespace() {
        let msg = split(
            b"\r\nOPTIONS sip:a@b SIP/2.0\r\nVia  : SIP  /\r\n 2.0/UDP h\r\nX:  a \t b\r\n\r\nbody",
        )
        .unwrap();
        assert_eq!(msg.start_line, b"OPTIONS sip:a@b SIP/2.0");
        assert_eq!(msg.headers[0].name, b"Via");
        assert_eq!(&*msg.headers[0].value, b"SIP / 2.0/UDP h");
        assert_eq!(&*msg.headers[1].value, b"a b");
        assert_eq!(msg.body, b"body");
        assert!(msg.complete_head);
    }

    #[test]
    fn rejects_broken_lines() {
        assert_eq!(
            split(b"A\r\n cont\r\n\r\n").unwrap_err(),
            SplitError::OrphanContinuation
        );
        assert_eq!(
            split(b"A\r\nFoobar roobar\r\n\r\n").unwrap_err(),
            SplitError::MissingColon
        );
        assert_eq!(split(b"\r\n\r\n").unwrap_err(), SplitError::Empty);
    }

    #[test]
    fn frames_streams_by_content_length() {
        let m = b"OPTIONS sip:a SIP/2.0\r\nl: 3\r\n\r\nabcNEXT";
        assert_eq!(frame_stream(m), StreamFrame::Complete(m.len() - 4));
        assert_eq!(frame_stream(&m[..10]), StreamFrame::Incomplete);
        assert_eq!(frame_stream(b"\r\n\r\n"), StreamFrame::KeepAlive(4));
        assert_eq!(
            frame_stream(b"X\r\nContent-Length: -1\r\n\r\n"),
            StreamFrame::Broken
        );
        assert_eq!(
            frame_stream(b"X\r\nl: 1\r\nl: 1\r\n\r\nab"),
            StreamFrame::Broken
        );
    }
}
