//! Checks of individual header values against the RFC 3261 grammar.
//!
//! Each function takes an unfolded value (see [`super::wire`]) and either
//! accepts it or says, in a few words, what is wrong; the words end up in the
//! Warning header of a 400 response.

use super::wire::{is_token, is_token_char};

/// What is wrong with a value, in words fit for a Warning header.
pub type GrammarError = &'static str;

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

/// Characters a URI may carry literally (unreserved + reserved + IPv6 brackets).
fn is_uri_char(b: u8) -> bool {
    is_unreserved(b) || b";/?:@&=+$,[]".contains(&b)
}

/// Checks %-escapes and the character set of a URI fragment.
fn check_escaped(s: &[u8], allowed: impl Fn(u8) -> bool) -> Result<(), GrammarError> {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let ok =
                s.len() > i + 2 && s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err("bad %-escape in URI");
            }
            i += 3;
        } else if allowed(s[i]) {
            i += 1;
        } else {
            return Err("character not allowed in URI");
        }
    }
    Ok(())
}

/// The scheme of a URI (`scheme ":" ...`), if it has a syntactically valid one.
pub fn scheme(uri: &[u8]) -> Option<&[u8]> {
    let colon = uri.iter().position(|&b| b == b':')?;
    let scheme = &uri[..colon];
    let first_ok = scheme.first().is_some_and(|b| b.is_ascii_alphabetic());
    let rest_ok = scheme
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    (first_ok && rest_ok).then_some(scheme)
}

/// Facts about a checked SIP/SIPS URI that callers decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipUriFacts {
    /// The URI carries `?headers`.
    pub has_headers: bool,
}

fn check_host(host: &[u8]) -> Result<(), GrammarError> {
    if host.is_empty() {
        return Err("URI without host");
    }
    if host[0] == b'[' {
        let inner = host
            .strip_prefix(b"[")
            .and_then(|h| h.strip_suffix(b"]"))
            .ok_or("bad IPv6 reference in URI")?;
        let ok = !inner.is_empty()
            && inner
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        return if ok {
            Ok(())
        } else {
            Err("bad IPv6 reference in URI")
        };
    }
    if host
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        Ok(())
    } else {
        Err("bad host in URI")
    }
}

/// Checks a `sip:`/`sips:` URI (scheme already known to be one of them).
pub fn check_sip_uri(uri: &[u8]) -> Result<SipUriFacts, GrammarError> {
    let colon = uri
        .iter()
        .position(|&b| b == b':')
        .ok_or("URI without scheme")?;
    let rest = &uri[colon + 1..];
    // userinfo cannot hold an unescaped '@', params and headers cannot either.
    let (userinfo, hostpart) = match rest.iter().position(|&b| b == b'@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    if let Some(user) = userinfo {
        if user.is_empty() {
            return Err("empty user part in URI");
        }
        check_escaped(user, |b| is_unreserved(b) || b"&=+$,;?/:".contains(&b))?;
    }
    if hostpart.contains(&b'@') {
        return Err("more than one '@' in URI");
    }
    let (before_headers, headers) = match hostpart.iter().position(|&b| b == b'?') {
        Some(q) => (&hostpart[..q], Some(&hostpart[q + 1..])),
        None => (hostpart, None),
    };
    let mut parts = before_headers.split(|&b| b == b';');
    let hostport = parts.next().unwrap_or_default();
    let (host, port) = if hostport.first() == Some(&b'[') {
        match hostport.iter().position(|&b| b == b']') {
            Some(end) => (&hostport[..=end], hostport[end + 1..].strip_prefix(b":")),
            None => return Err("bad IPv6 reference in URI"),
        }
    } else {
        match hostport.iter().position(|&b| b == b':') {
            Some(c) => (&hostport[..c], Some(&hostport[c + 1..])),
            None => (hostport, None),
        }
    };
    check_host(host)?;
    if let Some(port) = port {
        let ok = !port.is_empty()
            && port.len() <= 5
            && port.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(port)
                .ok()
                .and_then(|p| p.parse::<u16>().ok())
                .is_some();
        if !ok {
            return Err("bad port in URI");
        }
    }
    for param in parts {
        let name = param.split(|&b| b == b'=').next().unwrap_or_default();
        if name.is_empty() {
            return Err("empty URI parameter");
        }
        check_escaped(param, |b| is_unreserved(b) || b"[]/:&+$=".contains(&b))?;
    }
    if let Some(h) = headers {
        check_escaped(h, |b| is_unreserved(b) || b"[]/?:+$=&".contains(&b))?;
    }
    Ok(SipUriFacts {
        has_headers: headers.is_some(),
    })
}

/// Checks any absolute URI: SIP URIs fully, other schemes by character set.
fn check_any_uri(uri: &[u8]) -> Result<SipUriFacts, GrammarError> {
    let scheme = scheme(uri).ok_or("URI without a valid scheme")?;
    if scheme.eq_ignore_ascii_case(b"sip") || scheme.eq_ignore_ascii_case(b"sips") {
        check_sip_uri(uri)
    } else {
        check_escaped(uri, |b| is_uri_char(b) || b == b'#')?;
        Ok(SipUriFacts {
            has_headers: uri.contains(&b'?'),
        })
    }
}

/// A tiny cursor over an unfolded header value.
struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a [u8]) -> Self {
        Cursor { s, i: 0 }
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }
    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }
    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'a [u8] {
        let start = self.i;
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
        &self.s[start..self.i]
    }
    /// A quoted-string; the cursor is on the opening quote.
    fn quoted(&mut self) -> Result<&'a [u8], GrammarError> {
        let start = self.i;
        self.i += 1;
        loop {
            match self.peek() {
                None => return Err("unterminated quoted string"),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(&self.s[start..self.i]);
                }
                Some(b'\\') => {
                    if self
                        .s
                        .get(self.i + 1)
                        .is_none_or(|&b| b == b'\r' || b == b'\n')
                    {
                        return Err("bad escape in quoted string");
                    }
                    self.i += 2;
                }
                Some(_) => self.i += 1,
            }
        }
    }

    /// `*( SEMI generic-param )`: names are tokens, values tokens, hosts or quoted strings.
    fn params(&mut self) -> Result<(), GrammarError> {
        loop {
            self.ws();
            if !self.eat(b';') {
                return Ok(());
            }
            self.ws();
            let name = self.take_while(is_token_char);
            if name.is_empty() {
                return Err("empty or malformed parameter");
            }
            self.ws();
            if self.eat(b'=') {
                self.ws();
                if self.peek() == Some(b'"') {
                    self.quoted()?;
                } else {
                    let value = self.take_while(|b| is_token_char(b) || b"[]:".contains(&b));
                    if value.is_empty() {
                        return Err("parameter without value after '='");
                    }
                }
            }
        }
    }
}

/// Options for [`check_name_addrs`].
#[derive(Debug, Clone, Copy)]
pub struct AddrRules {
    /// Several comma-separated values are allowed (Contact, Route, ...).
    pub multi: bool,
    /// `*` alone is allowed (Contact in REGISTER).
    pub star: bool,
}

/// Checks a From/To/Contact/Route-style value (`name-addr` or `addr-spec`, params).
pub fn check_name_addrs(value: &[u8], rules: AddrRules) -> Result<usize, GrammarError> {
    let mut c = Cursor::new(value);
    c.ws();
    if rules.star && c.eat(b'*') {
        c.ws();
        return if c.done() {
            Ok(1)
        } else {
            Err("'*' must stand alone")
        };
    }
    let mut count = 0;
    loop {
        c.ws();
        match c.peek() {
            None => return Err("empty address"),
            Some(b'"') => {
                c.quoted()?;
                c.ws();
                angle_addr(&mut c)?;
            }
            Some(b'<') => angle_addr(&mut c)?,
            Some(_) => {
                // Unquoted display name (tokens, then '<') or a bare addr-spec.
                let rest = &c.s[c.i..];
                let lt = rest.iter().position(|&b| b == b'<');
                let stop = rest.iter().position(|&b| b == b',' || b == b';');
                if lt.is_some_and(|lt| stop.is_none_or(|s| lt < s)) {
                    let display = &rest[..lt.unwrap_or(0)];
                    if !display
                        .split(|&b| b == b' ')
                        .filter(|t| !t.is_empty())
                        .all(is_token)
                    {
                        return Err("display name with characters that need quoting");
                    }
                    c.i += lt.unwrap_or(0);
                    angle_addr(&mut c)?;
                } else {
                    let spec = c.take_while(|b| !b" ;,".contains(&b));
                    let facts = check_any_uri(spec)?;
                    if facts.has_headers {
                        return Err("URI with '?' must be enclosed in <>");
                    }
                }
            }
        }
        c.params()?;
        c.ws();
        count += 1;
        if c.done() {
            return Ok(count);
        }
        if !c.eat(b',') {
            return Err("unexpected character after address");
        }
        if !rules.multi {
            return Err("several values in a single-value header");
        }
    }
}

fn angle_addr(c: &mut Cursor<'_>) -> Result<(), GrammarError> {
    if !c.eat(b'<') {
        return Err("expected '<'");
    }
    let uri = c.take_while(|b| b != b'>' && b != b' ');
    if !c.eat(b'>') {
        return Err("whitespace or missing '>' in <addr-spec>");
    }
    check_any_uri(uri).map(|_| ())
}

/// Checks a Via value (one or more `SIP/2.0/transport sent-by *params`).
pub fn check_via(value: &[u8]) -> Result<usize, GrammarError> {
    let mut c = Cursor::new(value);
    let mut count = 0;
    loop {
        c.ws();
        let proto = c.take_while(is_token_char);
        c.ws();
        let slash1 = c.eat(b'/');
        c.ws();
        let version = c.take_while(is_token_char);
        c.ws();
        let slash2 = c.eat(b'/');
        c.ws();
        let transport = c.take_while(is_token_char);
        if !proto.eq_ignore_ascii_case(b"SIP") || !slash1 || !slash2 || transport.is_empty() {
            return Err("malformed Via protocol");
        }
        if version != b"2.0" {
            return Err("unsupported SIP version in Via");
        }
        c.ws();
        let host = c.take_while(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b));
        let host_only = match host.first() {
            Some(b'[') => host.iter().position(|&b| b == b']').map(|e| &host[..=e]),
            _ => host.split(|&b| b == b':').next(),
        };
        check_host(host_only.unwrap_or_default()).map_err(|_| "malformed Via sent-by")?;
        c.params()?;
        c.ws();
        count += 1;
        if c.done() {
            return Ok(count);
        }
        if !c.eat(b',') {
            return Err("unexpected character in Via");
        }
    }
}

/// `1*DIGIT` parsed into a u64 that must not exceed `max`.
pub fn check_number(value: &[u8], max: u64) -> Result<u64, GrammarError> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err("not a non-negative decimal number");
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&n| n <= max)
        .ok_or("number out of range")
}

/// CSeq: `number LWS method`; the number must be below 2**31.
pub fn check_cseq(value: &[u8]) -> Result<(u32, &[u8]), GrammarError> {
    let mut parts = value.split(|&b| b == b' ').filter(|p| !p.is_empty());
    let (Some(number), Some(method), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err("CSeq must be a number and a method");
    };
    let n = check_number(number, (1 << 31) - 1).map_err(|_| "CSeq number out of range")?;
    if !is_token(method) {
        return Err("CSeq method is not a token");
    }
    Ok((
        u32::try_from(n).map_err(|_| "CSeq number out of range")?,
        method,
    ))
}

/// Date: `wkday "," SP 2DIGIT SP month SP 4DIGIT SP 2DIGIT ":" 2DIGIT ":" 2DIGIT SP "GMT"`.
pub fn check_date(value: &[u8]) -> Result<(), GrammarError> {
    const DAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let digits = |s: &[u8], n: usize| s.len() == n && s.iter().all(u8::is_ascii_digit);
    let parts: Vec<&[u8]> = value.split(|&b| b == b' ').collect();
    let ok = match parts.as_slice() {
        [day, dd, mon, yyyy, hms, zone] => {
            day.strip_suffix(b",").is_some_and(|d| DAYS.contains(&d))
                && digits(dd, 2)
                && MONTHS.contains(mon)
                && digits(yyyy, 4)
                && hms.len() == 8
                && hms.split(|&b| b == b':').all(|p| digits(p, 2))
                && hms.iter().filter(|&&b| b == b':').count() == 2
                && *zone == b"GMT"
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err("Date is not an RFC 1123 date in GMT")
    }
}

/// Comma-separated list of tokens (Require, Supported, ...).
pub fn tokens(value: &[u8]) -> Result<Vec<&[u8]>, GrammarError> {
    value
        .split(|&b| b == b',')
        .map(|t| {
            let t = t.strip_prefix(b" ").unwrap_or(t);
            let t = t.strip_suffix(b" ").unwrap_or(t);
            if is_token(t) {
                Ok(t)
            } else {
                Err("list item is not a token")
            }
        })
        .collect()
}

/// `type "/" subtype *(";" param)` → lower-cased `type/subtype`.
pub fn media_type(value: &[u8]) -> Result<String, GrammarError> {
    let mut c = Cursor::new(value);
    c.ws();
    let ty = c.take_while(is_token_char);
    c.ws();
    let slash = c.eat(b'/');
    c.ws();
    let sub = c.take_while(is_token_char);
    if ty.is_empty() || !slash || sub.is_empty() {
        return Err("malformed media type");
    }
    c.params()?;
    c.ws();
    if !c.done() {
        return Err("malformed media type");
    }
    let mut out = String::from_utf8_lossy(ty).to_ascii_lowercase();
    out.push('/');
    out.push_str(&String::from_utf8_lossy(sub).to_ascii_lowercase());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: AddrRules = AddrRules {
        multi: false,
        star: false,
    };

    #[test]
    fn name_addr_forms() {
        assert!(check_name_addrs(b"sip:a@b.c ; tag = 12", ONE).is_ok());
        assert!(check_name_addrs(b"\"J \\\\\\\"\" <sip:a@b.c>;tag=1", ONE).is_ok());
        assert!(check_name_addrs(b"caller<sip:a@b.c>;tag=1", ONE).is_ok());
        assert!(check_name_addrs(b"<http://x.example>", ONE).is_ok());
        assert_eq!(
            check_name_addrs(b"\"open <sip:a@b>", ONE),
            Err("unterminated quoted string")
        );
        assert!(check_name_addrs(b"Bell, Alexander <sip:a@b>", ONE).is_err());
        assert!(check_name_addrs(b"\"x\" < sip:a@b >", ONE).is_err());
        assert!(check_name_addrs(b"sip:a@b?Route=x", ONE).is_err());
        assert!(check_name_addrs(b"<sip:a@b>;;", ONE).is_err());
        assert!(check_name_addrs(b"<sip:a@b>, <sip:c@d>", ONE).is_err());
        let many = AddrRules {
            multi: true,
            star: true,
        };
        assert_eq!(check_name_addrs(b"<sip:a@b>, <sip:c@d>", many), Ok(2));
        assert_eq!(check_name_addrs(b"*", many), Ok(1));
    }

    #[test]
    fn via_forms() {
        assert_eq!(check_via(b"SIP / 2.0 / TCP spindle.example.com ; branch = z9 , SIP/2.0/UDP 1.2.3.4;branch= z"), Ok(2));
        assert!(check_via(b"SIP/2.0/UDP 192.0.2.15;;,;,,").is_err());
        assert!(check_via(b"SIP/7.0/UDP c.example.com").is_err());
        assert!(check_via(b"SIP/2.0/UDP [::1]:5060;rport").is_ok());
    }

    #[test]
    fn uris() {
        assert!(check_sip_uri(b"sip:user;par=u%40example.net@example.com").is_ok());
        assert!(
            check_sip_uri(b"sip:a@b.c?Route=%3Csip:x%3E")
                .unwrap()
                .has_headers
        );
        assert!(check_sip_uri(b"sip:a@b.c; lr").is_err());
        assert!(check_sip_uri(b"sip:a%zz@b.c").is_err());
        assert!(check_sip_uri(b"sip:a@b.c:99999").is_err());
        assert_eq!(scheme(b"soap.beep://x"), Some(&b"soap.beep"[..]));
        assert_eq!(scheme(b"<sip:x>"), None);
    }

    #[test]
    fn scalars() {
        assert_eq!(check_cseq(b"0009 INVITE"), Ok((9, &b"INVITE"[..])));
        assert!(check_cseq(b"36893488147419103232 REGISTER").is_err());
        assert!(check_cseq(b"2147483648 INVITE").is_err());
        assert!(check_number(b"-999", u64::from(u32::MAX)).is_err());
        assert!(check_date(b"Sat, 15 Oct 2005 04:44:56 GMT").is_ok());
        assert!(check_date(b"Fri, 01 Jan 2010 16:00:00 EST").is_err());
        assert_eq!(
            media_type(b"Application/SDP ; x=1").as_deref(),
            Ok("application/sdp")
        );
    }
}
