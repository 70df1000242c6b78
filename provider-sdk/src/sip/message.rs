//! Validated requests and responses, and building stateless answers.

use std::borrow::Cow;
use std::fmt;

use super::validate::{Echo, Rejection, RequestParts};
use super::wire::{name_is, RawMessage};

/// A SIP method. Known ones are named; anything else keeps its token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Info,
    Update,
    Prack,
    Register,
    Message,
    Subscribe,
    Notify,
    Publish,
    Refer,
    /// Any other method token (kept verbatim; methods are case-sensitive).
    Other(String),
}

impl Method {
    /// Maps a method token (case-sensitive, RFC 3261 section 7.1).
    pub fn from_token(token: &[u8]) -> Method {
        match token {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"PRACK" => Method::Prack,
            b"REGISTER" => Method::Register,
            b"MESSAGE" => Method::Message,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            b"REFER" => Method::Refer,
            other => Method::Other(String::from_utf8_lossy(other).into_owned()),
        }
    }

    /// The method token.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Register => "REGISTER",
            Method::Message => "MESSAGE",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Refer => "REFER",
            Method::Other(s) => s,
        }
    }

    /// A method defined by a standard (405 rather than 501 when not allowed).
    pub fn is_known(&self) -> bool {
        !matches!(self, Method::Other(_))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request that passed validation. Header values are unfolded.
#[derive(Debug)]
pub struct Request<'a> {
    raw: RawMessage<'a>,
    method: Method,
    uri: &'a [u8],
    cseq: u32,
    call_id: String,
    max_forwards: Option<u8>,
    content_type: Option<String>,
    body: &'a [u8],
}

impl<'a> Request<'a> {
    pub(crate) fn new(raw: RawMessage<'a>, p: RequestParts<'a>) -> Self {
        Request {
            raw,
            method: p.method,
            uri: p.uri,
            cseq: p.cseq,
            call_id: p.call_id,
            max_forwards: p.max_forwards,
            content_type: p.content_type,
            body: p.body,
        }
    }
    pub fn method(&self) -> &Method {
        &self.method
    }
    /// The Request-URI, as sent.
    pub fn uri(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.uri)
    }
    pub fn cseq(&self) -> u32 {
        self.cseq
    }
    pub fn call_id(&self) -> &str {
        &self.call_id
    }
    pub fn max_forwards(&self) -> Option<u8> {
        self.max_forwards
    }
    /// Lower-cased `type/subtype` of the body, if a Content-Type was sent.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }
    pub fn body(&self) -> &[u8] {
        self.body
    }
    /// Every value of a header (long name; compact forms are matched too).
    pub fn header_values<'s, 'n>(&'s self, name: &'n str) -> impl Iterator<Item = &'s [u8]> + 'n
    where
        's: 'n,
    {
        self.raw
            .headers
            .iter()
            .filter(move |h| name_is(h.name, name))
            .map(|h| &*h.value)
    }
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.header_values(name).next()
    }
    /// Every header field in order: name as sent, value.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.raw.headers.iter().map(|h| (h.name, &*h.value))
    }
    /// What a response to this request copies.
    pub fn echo(&self) -> Echo {
        let first = |n: &str| self.header(n).map(<[u8]>::to_vec);
        Echo {
            vias: self.header_values("Via").map(<[u8]>::to_vec).collect(),
            from: first("From"),
            to: first("To"),
            call_id: first("Call-ID"),
            cseq: first("CSeq"),
        }
    }
}

/// A response that passed validation.
#[derive(Debug)]
pub struct Response<'a> {
    status: u16,
    raw: RawMessage<'a>,
    cseq_method: Method,
    call_id: String,
    body: &'a [u8],
}

impl<'a> Response<'a> {
    pub(crate) fn new(
        status: u16,
        raw: RawMessage<'a>,
        cseq_method: Method,
        call_id: String,
        body: &'a [u8],
    ) -> Self {
        Response {
            status,
            raw,
            cseq_method,
            call_id,
            body,
        }
    }
    pub fn status(&self) -> u16 {
        self.status
    }
    /// The reason phrase as sent (may be empty).
    pub fn reason(&self) -> Cow<'_, str> {
        let phrase = self
            .raw
            .start_line
            .splitn(3, |&b| b == b' ')
            .nth(2)
            .unwrap_or_default();
        String::from_utf8_lossy(phrase)
    }
    /// The method of the request this answers (from CSeq).
    pub fn cseq_method(&self) -> &Method {
        &self.cseq_method
    }
    pub fn call_id(&self) -> &str {
        &self.call_id
    }
    pub fn body(&self) -> &[u8] {
        self.body
    }
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.raw
            .headers
            .iter()
            .find(|h| name_is(h.name, name))
            .map(|h| &*h.value)
    }
    /// Every header field in order: name as sent, value.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.raw.headers.iter().map(|h| (h.name, &*h.value))
    }
}

/// A response to send: status, reason, extra headers and an optional body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Content-Type of `body` (required when the body is not empty).
    pub content_type: Option<String>,
}

impl Reply {
    pub fn new(status: u16, reason: impl Into<String>) -> Self {
        Reply {
            status,
            reason: reason.into(),
            headers: Vec::new(),
            body: Vec::new(),
            content_type: None,
        }
    }
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The stateless answer to a rejected request.
    pub fn for_rejection(r: &Rejection) -> Self {
        let detail: String = r
            .detail
            .chars()
            .map(|c| {
                if c == '"' || c == '\\' || c.is_control() {
                    '\''
                } else {
                    c
                }
            })
            .collect();
        let mut reply = Reply::new(r.status, r.reason)
            .header("Warning", format!("399 provider-sdk \"{detail}\""));
        for (name, value) in &r.headers {
            reply = reply.header(*name, value.clone());
        }
        reply
    }

    /// Serialises the response, copying Via/From/To/Call-ID/CSeq from `echo`
    /// and adding `to_tag` to To when it has none (never on 100 Trying).
    pub fn encode(&self, echo: &Echo, to_tag: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(512 + self.body.len());
        let reason: String = self.reason.chars().filter(|c| !c.is_control()).collect();
        out.extend_from_slice(format!("SIP/2.0 {} {}\r\n", self.status, reason).as_bytes());
        let mut line = |name: &str, value: &[u8]| {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        };
        for via in &echo.vias {
            line("Via", via);
        }
        if let Some(from) = &echo.from {
            line("From", from);
        }
        if let Some(to) = &echo.to {
            if self.status > 100 && !has_tag(to) {
                let mut tagged = to.clone();
                tagged.extend_from_slice(b";tag=");
                tagged.extend_from_slice(to_tag.as_bytes());
                line("To", &tagged);
            } else {
                line("To", to);
            }
        }
        if let Some(v) = &echo.call_id {
            line("Call-ID", v);
        }
        if let Some(v) = &echo.cseq {
            line("CSeq", v);
        }
        for (name, value) in &self.headers {
            let clean: Vec<u8> = value
                .bytes()
                .filter(|&b| b != b'\r' && b != b'\n')
                .collect();
            line(name, &clean);
        }
        line("Server", b"provider-sdk");
        if let Some(ct) = &self.content_type {
            line("Content-Type", ct.as_bytes());
        }
        line("Content-Length", self.body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// Whether a To/From value carries a `tag` header parameter (outside <> and quotes).
fn has_tag(value: &[u8]) -> bool {
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut params_start = None;
    for (i, &b) in value.iter().enumerate() {
        match b {
            b'"' if !in_angle => in_quotes = !in_quotes,
            b'<' if !in_quotes => in_angle = true,
            b'>' if !in_quotes => in_angle = false,
            b';' if !in_quotes && !in_angle && params_start.is_none() => params_start = Some(i),
            _ => {}
        }
    }
    params_start.is_some_and(|start| {
        value[start..].split(|&b| b == b';').any(|p| {
            p.trim_ascii()
                .split(|&b| b == b'=')
                .next()
                .is_some_and(|n| n.trim_ascii().eq_ignore_ascii_case(b"tag"))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_found_only_in_header_params() {
        assert!(has_tag(b"<sip:a@b>;tag=1"));
        assert!(has_tag(b"sip:a@b ; tag = 1"));
        assert!(!has_tag(b"<sip:a@b;tag=1>"));
        assert!(!has_tag(b"\"x;tag=1\" <sip:a@b>"));
    }

    #[test]
    fn encodes_a_tagged_answer() {
        let echo = Echo {
            vias: vec![b"SIP/2.0/UDP h;branch=z9hG4bK1".to_vec()],
            from: Some(b"<sip:a@b>;tag=9".to_vec()),
            to: Some(b"<sip:c@d>".to_vec()),
            call_id: Some(b"x@y".to_vec()),
            cseq: Some(b"1 OPTIONS".to_vec()),
        };
        let bytes = Reply::new(200, "OK").encode(&echo, "t1");
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"));
        assert!(text.contains("To: <sip:c@d>;tag=t1\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    }
}
