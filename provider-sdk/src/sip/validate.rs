//! The validation layer: decides what happens to every received message
//! before anything else looks at it.
//!
//! [`validate`] returns a [`Verdict`]: a well-formed, acceptable request or
//! response; a [`Rejection`] (the status, reason and the headers needed to
//! answer statelessly, per RFC 3261 sections 8.2 and 16.3); or a silent drop
//! (malformed responses, and requests too broken to answer). What the element
//! supports (methods, option tags, body types) is a [`Policy`].

use super::grammar::{self, AddrRules};
use super::message::{Method, Request, Response};
use super::wire::{self, name_is, RawMessage};

/// What this element supports; requests outside it are refused with the right status.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Methods handled; other known methods get 405, unknown ones 501.
    pub allowed_methods: Vec<Method>,
    /// Option tags accepted in Require (others: 420 with Unsupported).
    pub supported_extensions: Vec<String>,
    /// Body types accepted on INVITE/UPDATE (others: 415 with Accept).
    pub accepted_bodies: Vec<String>,
    /// Methods this element forwards to another hop: Max-Forwards 0 gets 483.
    pub forwarded_methods: Vec<Method>,
    /// Responses with more than one Via are dropped (a UA is always the last hop).
    pub single_via_responses: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allowed_methods: vec![
                Method::Invite,
                Method::Ack,
                Method::Bye,
                Method::Cancel,
                Method::Options,
                Method::Info,
                Method::Update,
            ],
            supported_extensions: Vec::new(),
            accepted_bodies: vec!["application/sdp".to_owned()],
            forwarded_methods: vec![Method::Invite],
            single_via_responses: true,
        }
    }
}

/// The headers a stateless answer copies from the request (RFC 3261 section 8.2.6.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Echo {
    pub vias: Vec<Vec<u8>>,
    pub from: Option<Vec<u8>>,
    pub to: Option<Vec<u8>>,
    pub call_id: Option<Vec<u8>>,
    pub cseq: Option<Vec<u8>>,
}

impl Echo {
    fn from_raw(raw: &RawMessage<'_>) -> Echo {
        let mut echo = Echo::default();
        for h in &raw.headers {
            let v = h.value.to_vec();
            if name_is(h.name, "Via") {
                echo.vias.push(v);
            } else if name_is(h.name, "From") {
                echo.from.get_or_insert(v);
            } else if name_is(h.name, "To") {
                echo.to.get_or_insert(v);
            } else if name_is(h.name, "Call-ID") {
                echo.call_id.get_or_insert(v);
            } else if name_is(h.name, "CSeq") {
                echo.cseq.get_or_insert(v);
            }
        }
        echo
    }
}

/// A request refused before any application code saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
    /// What exactly is wrong (sent in a Warning header).
    pub detail: String,
    /// Extra headers the status requires (Unsupported, Accept, Allow).
    pub headers: Vec<(&'static str, String)>,
    /// What the response copies; no Via means it cannot be answered.
    pub echo: Echo,
    /// The request was an ACK (never answered).
    pub is_ack: bool,
}

impl Rejection {
    /// Whether a response can be sent at all (needs a Via, never for ACK).
    pub fn answerable(&self) -> bool {
        !self.echo.vias.is_empty() && !self.is_ack
    }
}

/// Why a message is dropped without an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub detail: String,
}

/// The outcome of validating one message.
#[derive(Debug)]
pub enum Verdict<'a> {
    Request(Request<'a>),
    Response(Response<'a>),
    Reject(Rejection),
    Drop(Dropped),
}

fn reject(
    status: u16,
    reason: &'static str,
    detail: impl Into<String>,
    raw: &RawMessage<'_>,
) -> Box<Rejection> {
    let method = raw
        .start_line
        .split(|&b| b == b' ')
        .next()
        .unwrap_or_default();
    Box::new(Rejection {
        status,
        reason,
        detail: detail.into(),
        headers: Vec::new(),
        echo: Echo::from_raw(raw),
        is_ack: method == b"ACK",
    })
}

fn bad(detail: impl Into<String>, raw: &RawMessage<'_>) -> Box<Rejection> {
    reject(400, "Bad Request", detail, raw)
}

fn drop(detail: impl Into<String>) -> Verdict<'static> {
    Verdict::Drop(Dropped {
        detail: detail.into(),
    })
}

/// Headers that may appear only once; a second value is a 400.
const SINGLE: [&str; 9] = [
    "To",
    "From",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
    "Expires",
    "Date",
];

/// Facts gathered from the header section, shared by requests and responses.
struct Common<'m> {
    cseq: (u32, &'m [u8]),
    call_id: &'m [u8],
    content_length: Option<u32>,
    max_forwards: Option<u8>,
    content_type: Option<String>,
    via_count: usize,
}

fn check_headers<'m>(raw: &'m RawMessage<'_>) -> Result<Common<'m>, String> {
    let mut seen = [0usize; SINGLE.len()];
    let mut cseq = None;
    let mut call_id = None;
    let mut content_length = None;
    let mut max_forwards = None;
    let mut content_type = None;
    let mut via_count = 0;
    let one = AddrRules {
        multi: false,
        star: false,
    };
    let many = AddrRules {
        multi: true,
        star: false,
    };
    for h in &raw.headers {
        let v: &'m [u8] = &h.value;
        for (i, name) in SINGLE.iter().enumerate() {
            if name_is(h.name, name) {
                seen[i] += 1;
                if seen[i] > 1 {
                    return Err(format!("several {name} header fields"));
                }
            }
        }
        let what = |e: &str, name: &str| format!("{name}: {e}");
        if name_is(h.name, "Via") {
            via_count += grammar::check_via(v).map_err(|e| what(e, "Via"))?;
        } else if name_is(h.name, "To") || name_is(h.name, "From") {
            grammar::check_name_addrs(v, one).map_err(|e| what(e, "To/From"))?;
        } else if name_is(h.name, "Contact") {
            let rules = AddrRules {
                multi: true,
                star: true,
            };
            grammar::check_name_addrs(v, rules).map_err(|e| what(e, "Contact"))?;
        } else if name_is(h.name, "Route") || name_is(h.name, "Record-Route") {
            grammar::check_name_addrs(v, many).map_err(|e| what(e, "Route"))?;
        } else if name_is(h.name, "Call-ID") {
            if v.is_empty() || v.iter().any(|&b| b == b' ' || b < 0x21) {
                return Err("Call-ID: empty or contains white space".into());
            }
            call_id = Some(v);
        } else if name_is(h.name, "CSeq") {
            cseq = Some(grammar::check_cseq(v).map_err(|e| what(e, "CSeq"))?);
        } else if name_is(h.name, "Content-Length") {
            let n = grammar::check_number(v, u64::from(u32::MAX))
                .map_err(|e| what(e, "Content-Length"))?;
            content_length = u32::try_from(n).ok();
        } else if name_is(h.name, "Max-Forwards") {
            let n = grammar::check_number(v, 255).map_err(|e| what(e, "Max-Forwards"))?;
            max_forwards = u8::try_from(n).ok();
        } else if name_is(h.name, "Expires") || name_is(h.name, "Min-Expires") {
            grammar::check_number(v, u64::from(u32::MAX)).map_err(|e| what(e, "Expires"))?;
        } else if name_is(h.name, "Date") {
            grammar::check_date(v)?;
        } else if name_is(h.name, "Content-Type") {
            content_type = Some(grammar::media_type(v).map_err(|e| what(e, "Content-Type"))?);
        } else if (name_is(h.name, "Require")
            || name_is(h.name, "Proxy-Require")
            || name_is(h.name, "Supported"))
            && !v.is_empty()
        {
            grammar::tokens(v).map_err(|e| what(e, "option tags"))?;
        }
    }
    let missing = [
        ("Via", via_count > 0),
        ("From", seen[1] > 0),
        ("To", seen[0] > 0),
        ("Call-ID", call_id.is_some()),
        ("CSeq", cseq.is_some()),
    ];
    if let Some((name, _)) = missing.iter().find(|(_, present)| !present) {
        return Err(format!("missing {name} header field"));
    }
    Ok(Common {
        cseq: cseq.unwrap_or((0, b"")),
        call_id: call_id.unwrap_or_default(),
        content_length,
        max_forwards,
        content_type,
        via_count,
    })
}

/// The body the Content-Length describes; too short a message is an error.
fn body_of<'a>(raw: &RawMessage<'a>, content_length: Option<u32>) -> Result<&'a [u8], String> {
    match content_length {
        // On a datagram a missing Content-Length means "to the end of the packet".
        None => Ok(raw.body),
        Some(n) => {
            let n = n as usize;
            raw.body.get(..n).ok_or_else(|| {
                format!(
                    "Content-Length {n} larger than the {} body bytes received",
                    raw.body.len()
                )
            })
        }
    }
}

/// Validates one complete message (a datagram or a frame cut from a stream).
pub fn validate<'a>(bytes: &'a [u8], policy: &Policy) -> Verdict<'a> {
    let raw = match wire::split(bytes) {
        Ok(raw) => raw,
        // Cannot find the headers to answer with: drop, whatever it was.
        Err(e) => return drop(format!("unparseable message: {e}")),
    };
    if raw.start_line.starts_with(b"SIP/") {
        validate_response(raw, policy)
    } else {
        validate_request(raw, policy)
    }
}

fn validate_response<'a>(raw: RawMessage<'a>, policy: &Policy) -> Verdict<'a> {
    let line = raw.start_line;
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (version, code) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let reason = parts.next().unwrap_or_default();
    if version != b"SIP/2.0" {
        return drop("response with unsupported SIP version");
    }
    let status = match grammar::check_number(code, 699) {
        Ok(n) if code.len() == 3 && n >= 100 => n as u16,
        _ => return drop("response with invalid status code"),
    };
    if reason.iter().any(|&b| b == b'\r' || b == b'\n') {
        return drop("response with broken reason phrase");
    }
    if !raw.complete_head {
        return drop("response cut short");
    }
    let common = match check_headers(&raw) {
        Ok(c) => c,
        Err(e) => return drop(format!("malformed response: {e}")),
    };
    if policy.single_via_responses && common.via_count != 1 {
        return drop("response with more than one Via");
    }
    let body = match body_of(&raw, common.content_length) {
        Ok(b) => b,
        Err(e) => return drop(e),
    };
    let cseq_method = Method::from_token(common.cseq.1);
    let call_id = String::from_utf8_lossy(common.call_id).into_owned();
    Verdict::Response(Response::new(status, raw, cseq_method, call_id, body))
}

fn validate_request<'a>(raw: RawMessage<'a>, policy: &Policy) -> Verdict<'a> {
    match check_request(&raw, policy) {
        Ok(parts) => Verdict::Request(Request::new(raw, parts)),
        Err(rejection) => Verdict::Reject(*rejection),
    }
}

/// What [`check_request`] established, handed to [`Request::new`].
pub(crate) struct RequestParts<'a> {
    pub method: Method,
    pub uri: &'a [u8],
    pub cseq: u32,
    pub call_id: String,
    pub max_forwards: Option<u8>,
    pub content_type: Option<String>,
    pub body: &'a [u8],
}

fn check_request<'a>(
    raw: &RawMessage<'a>,
    policy: &Policy,
) -> Result<RequestParts<'a>, Box<Rejection>> {
    // Request-Line = Method SP Request-URI SP SIP-Version, exactly single spaces.
    let line = raw.start_line;
    let parts: Vec<&'a [u8]> = line.split(|&b| b == b' ').collect();
    let [method_tok, uri, version] = parts.as_slice() else {
        return Err(bad(
            "malformed Request-Line (needs method, URI and version separated by single spaces)",
            raw,
        ));
    };
    if !wire::is_token(method_tok) {
        return Err(bad("method is not a token", raw));
    }
    if *version != b"SIP/2.0" {
        let looks_like_version = version.strip_prefix(b"SIP/").is_some_and(|v| {
            v.split(|&b| b == b'.')
                .all(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit))
        });
        return Err(if looks_like_version {
            reject(
                505,
                "Version Not Supported",
                "only SIP/2.0 is supported",
                raw,
            )
        } else {
            bad("malformed SIP-Version in Request-Line", raw)
        });
    }
    if !raw.complete_head {
        return Err(bad("message ends inside the header section", raw));
    }
    let scheme =
        grammar::scheme(uri).ok_or_else(|| bad("Request-URI is not an absolute URI", raw))?;
    let is_sip = scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips");
    if is_sip {
        let facts =
            grammar::check_sip_uri(uri).map_err(|e| bad(format!("Request-URI: {e}"), raw))?;
        if facts.has_headers {
            return Err(bad("Request-URI must not carry headers", raw));
        }
    }
    let common = check_headers(raw).map_err(|e| bad(e, raw))?;
    let method = Method::from_token(method_tok);
    if common.cseq.1 != *method_tok {
        return Err(bad("CSeq method does not match the request method", raw));
    }
    let body = body_of(raw, common.content_length).map_err(|e| bad(e, raw))?;

    // Syntax is fine; now what this element is willing to do (RFC 3261 8.2).
    let allow = || {
        let names: Vec<&str> = policy.allowed_methods.iter().map(Method::as_str).collect();
        ("Allow", names.join(", "))
    };
    if !policy.allowed_methods.contains(&method) {
        let mut r = if method.is_known() {
            reject(405, "Method Not Allowed", "method not allowed here", raw)
        } else {
            reject(501, "Not Implemented", "unknown method", raw)
        };
        r.headers.push(allow());
        return Err(r);
    }
    if !is_sip && !scheme.eq_ignore_ascii_case(b"tel") {
        return Err(reject(
            416,
            "Unsupported URI Scheme",
            "Request-URI scheme not supported",
            raw,
        ));
    }
    if !matches!(method, Method::Ack | Method::Cancel) {
        let unsupported: Vec<String> = raw
            .headers
            .iter()
            .filter(|h| name_is(h.name, "Require"))
            .flat_map(|h| grammar::tokens(&h.value).unwrap_or_default())
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .filter(|t| {
                !policy
                    .supported_extensions
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(t))
            })
            .collect();
        if !unsupported.is_empty() {
            let mut r = reject(
                420,
                "Bad Extension",
                "unsupported option tags in Require",
                raw,
            );
            r.headers.push(("Unsupported", unsupported.join(", ")));
            return Err(r);
        }
    }
    if policy.forwarded_methods.contains(&method) && common.max_forwards == Some(0) {
        return Err(reject(483, "Too Many Hops", "Max-Forwards is 0", raw));
    }
    if matches!(method, Method::Invite | Method::Update) {
        if !body.is_empty() {
            let accepted = common
                .content_type
                .as_ref()
                .is_some_and(|ct| policy.accepted_bodies.iter().any(|a| a == ct));
            if !accepted {
                let mut r = reject(
                    415,
                    "Unsupported Media Type",
                    "body type not supported",
                    raw,
                );
                r.headers
                    .push(("Accept", policy.accepted_bodies.join(", ")));
                return Err(r);
            }
        }
        if let Some(rejection) = check_accept(raw, policy) {
            return Err(rejection);
        }
    }
    Ok(RequestParts {
        method,
        uri,
        cseq: common.cseq.0,
        call_id: String::from_utf8_lossy(common.call_id).into_owned(),
        max_forwards: common.max_forwards,
        content_type: common.content_type,
        body,
    })
}

/// 406 when Accept lists no type this element can answer with.
fn check_accept(raw: &RawMessage<'_>, policy: &Policy) -> Option<Box<Rejection>> {
    let accept: Vec<&[u8]> = raw
        .headers
        .iter()
        .filter(|h| name_is(h.name, "Accept") && !h.value.is_empty())
        .map(|h| &*h.value)
        .collect();
    if accept.is_empty() {
        return None;
    }
    let offered = accept
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .any(|item| {
            let ty = grammar::media_type(item.split(|&b| b == b';').next().unwrap_or_default())
                .unwrap_or_default();
            policy.accepted_bodies.iter().any(|a| {
                ty == *a
                    || ty == "*/*"
                    || a.split('/')
                        .next()
                        .is_some_and(|major| ty == format!("{major}/*"))
            })
        });
    if offered {
        None
    } else {
        let mut r = reject(
            406,
            "Not Acceptable",
            "Accept names no body type this element can send",
            raw,
        );
        r.headers
            .push(("Accept", policy.accepted_bodies.join(", ")));
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:+4930123456@gw.example.net SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: <sip:+4930123456@gw.example.net>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.1>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n";

    fn rejected(bytes: &[u8]) -> Rejection {
        match validate(bytes, &Policy::default()) {
            Verdict::Reject(r) => r,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    trait ReplaceAll {
        fn replace_all(&self, from: &str, to: &str) -> Vec<u8>;
    }
    impl ReplaceAll for Vec<u8> {
        fn replace_all(&self, from: &str, to: &str) -> Vec<u8> {
            String::from_utf8_lossy(self).replace(from, to).into_bytes()
        }
    }

    fn with(from: &str, to: &str) -> Vec<u8> {
        String::from_utf8_lossy(INVITE)
            .replacen(from, to, 1)
            .into_bytes()
    }

    #[test]
    fn a_typical_invite_is_accepted() {
        let Verdict::Request(req) = validate(INVITE, &Policy::default()) else {
            panic!("typical INVITE refused")
        };
        assert_eq!(req.method(), &Method::Invite);
        assert_eq!(req.cseq(), 314159);
        assert_eq!(req.call_id(), "a84b4c76e66710@pc33.example.com");
        assert_eq!(req.max_forwards(), Some(70));
        assert_eq!(req.content_type(), Some("application/sdp"));
        assert_eq!(req.body(), b"v=0\n");
        assert_eq!(req.echo().vias.len(), 1);
    }

    #[test]
    fn rejections_say_what_is_wrong() {
        let r = rejected(&with("CSeq: 314159 INVITE", "CSeq: 314159 BYE"));
        assert_eq!(
            (r.status, r.detail.as_str()),
            (400, "CSeq method does not match the request method")
        );
        let r = rejected(&with("Max-Forwards: 70", "Max-Forwards: 0"));
        assert_eq!(r.status, 483);
        let r = rejected(&with("Content-Length: 4", "Content-Length: 5"));
        assert_eq!(r.status, 400);
        assert!(r.detail.contains("Content-Length 5"), "{}", r.detail);
        let r = rejected(&with(
            "Content-Type: application/sdp",
            "Content-Type: text/plain",
        ));
        assert_eq!((r.status, r.headers[0].0), (415, "Accept"));
        let r = rejected(&with("Max-Forwards: 70\r\n", "Require: 100rel\r\n"));
        assert_eq!((r.status, r.headers[0].1.as_str()), (420, "100rel"));
        let r =
            rejected(&with("INVITE sip:", "FOO sip:").replace_all("314159 INVITE", "314159 FOO"));
        assert_eq!((r.status, r.headers[0].0), (501, "Allow"));
        let r = rejected(&with("Call-ID: a84b4c76e66710@pc33.example.com\r\n", ""));
        assert_eq!(r.detail, "missing Call-ID header field");
        assert!(r.answerable());
    }

    #[test]
    fn malformed_responses_are_dropped() {
        let ok = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>;tag=2\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        assert!(
            matches!(validate(ok, &Policy::default()), Verdict::Response(r) if r.status() == 180)
        );
        let text = String::from_utf8_lossy(ok);
        for broken in [
            text.replace("180 Ringing", "1800 Ringing"),
            text.replace("180 Ringing", "099 Early"),
            text.replace("CSeq: 1 INVITE", "CSeq: 99999999999 INVITE"),
            text.replace("Call-ID: x\r\n", ""),
            text.replace("Content-Length: 0", "Content-Length: 10"),
        ] {
            assert!(
                matches!(
                    validate(broken.as_bytes(), &Policy::default()),
                    Verdict::Drop(_)
                ),
                "{broken}"
            );
        }
    }

    #[test]
    fn garbage_never_panics_and_is_dropped() {
        for junk in [
            &b""[..],
            b"\r\n",
            b"\x00\xff\xfe",
            b"SIP/2.0",
            b"INVITE",
            b"A B C\r\n\r\n",
        ] {
            assert!(!matches!(
                validate(junk, &Policy::default()),
                Verdict::Request(_) | Verdict::Response(_)
            ));
        }
    }
}
