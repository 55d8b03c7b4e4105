//! SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), borrowed from the message.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::scan::{escapes_valid, Params};

/// The URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    /// Any other absolute URI (`http:`, `urn:` …); only its scheme is checked.
    Other,
}

/// A URI host: a domain name, or a literal address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    Name(&'a str),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

/// A parsed URI. User, password, parameters and headers stay escaped as written;
/// use [`super::scan::unescape`] where the decoded bytes matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    pub scheme: Scheme,
    /// The whole URI as written.
    pub raw: &'a str,
    /// The user part (for `tel:`, the number).
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    /// `None` only for `tel:` and other non-SIP schemes.
    pub host: Option<Host<'a>>,
    pub port: Option<u16>,
    params: &'a str,
    headers: &'a str,
}

/// Why a URI was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadUri;

impl<'a> Uri<'a> {
    /// Parses a URI. Whitespace, angle brackets and quotes are never part of a URI.
    pub fn parse(raw: &'a str) -> Result<Uri<'a>, BadUri> {
        let b = raw.as_bytes();
        let colon = find_byte(b, b':').ok_or(BadUri)?;
        let scheme_s = &b[..colon];
        let rest = &raw[colon + 1..];
        // One pass tells which classes occur at all: a forbidden byte, and
        // whether the `@`, `%`, `?` and `;` searches below can be skipped.
        let seen = rest.bytes().fold(0, |a, c| a | URI_CLASS[usize::from(c)]);
        if !valid_scheme(scheme_s) || rest.is_empty() || seen & FORBIDDEN != 0 {
            return Err(BadUri);
        }
        let scheme = match scheme_s.len() {
            3 if scheme_s.eq_ignore_ascii_case(b"sip") => Scheme::Sip,
            4 if scheme_s.eq_ignore_ascii_case(b"sips") => Scheme::Sips,
            3 if scheme_s.eq_ignore_ascii_case(b"tel") => Scheme::Tel,
            _ => Scheme::Other,
        };
        let mut uri = Uri {
            scheme,
            raw,
            user: None,
            password: None,
            host: None,
            port: None,
            params: "",
            headers: "",
        };
        match scheme {
            Scheme::Sip | Scheme::Sips => uri.parse_sip(rest, seen)?,
            Scheme::Tel => {
                let (number, params) = split_at_byte(rest, b';');
                if number.is_empty() || !all_class(number.as_bytes(), TEL) {
                    return Err(BadUri);
                }
                check_uri_params(params, seen & PERCENT != 0)?;
                uri.user = Some(number);
                uri.params = params;
            }
            Scheme::Other => {}
        }
        Ok(uri)
    }

    /// `seen` is the union of the classes of the bytes of `rest`.
    fn parse_sip(&mut self, rest: &'a str, seen: u16) -> Result<(), BadUri> {
        let rb = rest.as_bytes();
        let escaped = seen & PERCENT != 0;
        let escapes_ok = |s: &str| !escaped || escapes_valid(s);
        // `@` cannot appear unescaped in host, params or headers, so the first one ends userinfo.
        let at = if seen & AT != 0 {
            find_byte(rb, b'@')
        } else {
            None
        };
        let hostpart = match at {
            Some(at) => {
                let userinfo = &rest[..at];
                let (user, password) = match find_byte(userinfo.as_bytes(), b':') {
                    Some(c) => (&userinfo[..c], Some(&userinfo[c + 1..])),
                    None => (userinfo, None),
                };
                if user.is_empty() || !all_class(user.as_bytes(), USER) || !escapes_ok(user) {
                    return Err(BadUri);
                }
                if let Some(p) = password {
                    if !all_class(p.as_bytes(), PASSWORD) || !escapes_ok(p) {
                        return Err(BadUri);
                    }
                }
                self.user = Some(user);
                self.password = password;
                &rest[at + 1..]
            }
            None => rest,
        };
        let hb = hostpart.as_bytes();
        let hp_end = if seen & (SEMICOLON | QUESTION) != 0 {
            hb.iter()
                .position(|&c| c == b';' || c == b'?')
                .unwrap_or(hb.len())
        } else {
            hb.len()
        };
        let (host, port) = split_host_port(&hostpart[..hp_end])?;
        self.host = Some(host);
        self.port = port;
        let tail = &hostpart[hp_end..];
        let question = if seen & QUESTION != 0 {
            find_byte(tail.as_bytes(), b'?')
        } else {
            None
        };
        let (params, headers, has_headers) = match question {
            Some(q) => (&tail[..q], &tail[q + 1..], true),
            None => (tail, "", false),
        };
        let params = params.strip_prefix(';').unwrap_or(params);
        check_uri_params(params, escaped)?;
        if has_headers && (headers.is_empty() || !check_uri_headers(headers)) {
            return Err(BadUri);
        }
        self.params = params;
        self.headers = headers;
        Ok(())
    }

    /// URI parameters (`;transport=udp;lr`).
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params)
    }

    /// The value of URI parameter `name`; `Some(None)` when present without a value.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params().get(name)
    }

    /// The raw URI-headers part after `?` (`hname=hvalue&…`), empty if none.
    pub fn headers(&self) -> &'a str {
        self.headers
    }

    /// The `transport` parameter, if given.
    pub fn transport(&self) -> Option<&'a str> {
        self.param("transport").flatten()
    }

    /// True for `;lr` (a loose router, RFC 3261 §16.4).
    pub fn is_loose_router(&self) -> bool {
        self.param("lr").is_some()
    }
}

impl std::fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Splits `host[:port]`, with `[v6]` literals. Shared by URIs and Via sent-by.
pub fn split_host_port(s: &str) -> Result<(Host<'_>, Option<u16>), BadUri> {
    let (host, port_s) = if let Some(inner) = s.strip_prefix('[') {
        let close = find_byte(inner.as_bytes(), b']').ok_or(BadUri)?;
        let addr: Ipv6Addr = inner[..close].parse().map_err(|_| BadUri)?;
        let after = &inner[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(BadUri),
        };
        (Host::V6(addr), port)
    } else {
        let (h, p) = match find_byte(s.as_bytes(), b':') {
            Some(c) => (&s[..c], Some(&s[c + 1..])),
            None => (s, None),
        };
        (parse_host_name(h)?, p)
    };
    let port = match port_s {
        None => None,
        Some(p) => {
            let v = super::scan::parse_u64(p).ok_or(BadUri)?;
            Some(u16::try_from(v).map_err(|_| BadUri)?)
        }
    };
    Ok((host, port))
}

/// A domain name or dotted IPv4 address (RFC 3261 `hostname` / `IPv4address`).
fn parse_host_name(h: &str) -> Result<Host<'_>, BadUri> {
    let b = h.as_bytes();
    if b.is_empty() {
        return Err(BadUri);
    }
    if b.iter().all(|c| c.is_ascii_digit() || *c == b'.') {
        return parse_ipv4(b).map(Host::V4).ok_or(BadUri);
    }
    let name = b.strip_suffix(b".").unwrap_or(b);
    // Labels: non-empty, no '-' at either end; the top label starts with a letter
    // (otherwise it would be a malformed IPv4 address). One pass checks the
    // characters and the labels.
    let label_ok = |l: &[u8]| l.first().is_some_and(|&c| c != b'-') && l.last() != Some(&b'-');
    let mut ok = true;
    let mut label_start = 0;
    for (i, &c) in name.iter().enumerate() {
        ok &= URI_CLASS[usize::from(c)] & HOST != 0;
        if c == b'.' {
            ok &= label_ok(&name[label_start..i]);
            label_start = i + 1;
        }
    }
    let top = &name[label_start..];
    if ok && label_ok(top) && top[0].is_ascii_alphabetic() {
        Ok(Host::Name(h))
    } else {
        Err(BadUri)
    }
}

/// Dotted-quad IPv4, accepting exactly what `Ipv4Addr::from_str` does (four
/// decimal octets up to 255, no leading zeros) for a string of digits and
/// dots; a direct scan is several times cheaper than std's generic parser.
fn parse_ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut n = 0;
    // The octet being read: its value and digit count.
    let (mut v, mut digits) = (0u16, 0);
    for &c in b {
        if c == b'.' {
            if digits == 0 || n == 3 {
                return None;
            }
            octets[n] = v as u8;
            n += 1;
            (v, digits) = (0, 0);
        } else {
            // A fourth digit, or a digit after a leading zero.
            if digits == 3 || (digits == 1 && v == 0) {
                return None;
            }
            v = v * 10 + u16::from(c - b'0');
            digits += 1;
            if v > 255 {
                return None;
            }
        }
    }
    if digits == 0 || n != 3 {
        return None;
    }
    octets[3] = v as u8;
    Some(Ipv4Addr::from(octets))
}

#[inline]
fn find_byte(b: &[u8], needle: u8) -> Option<usize> {
    b.iter().position(|&c| c == needle)
}

fn split_at_byte(s: &str, sep: u8) -> (&str, &str) {
    match find_byte(s.as_bytes(), sep) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

fn valid_scheme(b: &[u8]) -> bool {
    !b.is_empty() && b[0].is_ascii_alphabetic() && all_class(b, SCHEME)
}

// Character classes of RFC 3261 §25.1 (and RFC 3966 for tel), one bit each.
const USER: u16 = 1;
const PASSWORD: u16 = 2;
const PARAM: u16 = 4;
const HEADER: u16 = 8;
const TEL: u16 = 16;
const HOST: u16 = 32;
const SCHEME: u16 = 64;
/// Never inside a URI: controls, space, `<`, `>`, `"`.
const FORBIDDEN: u16 = 128;
/// The single bytes `@`, `%`, `?` and `;`, for [`Uri::parse`]'s first pass.
const AT: u16 = 256;
const PERCENT: u16 = 512;
const QUESTION: u16 = 1024;
const SEMICOLON: u16 = 2048;

static URI_CLASS: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let unreserved = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
            );
        let mut k = 0u16;
        if unreserved
            || matches!(
                c,
                b'%' | b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/'
            )
        {
            k |= USER;
        }
        if unreserved || matches!(c, b'%' | b'&' | b'=' | b'+' | b'$' | b',') {
            k |= PASSWORD;
        }
        if unreserved || matches!(c, b'%' | b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$') {
            k |= PARAM;
        }
        if unreserved || matches!(c, b'%' | b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$') {
            k |= HEADER;
        }
        if c.is_ascii_hexdigit() || matches!(c, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#') {
            k |= TEL;
        }
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.') {
            k |= HOST;
        }
        if c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.') {
            k |= SCHEME;
        }
        if c <= b' ' || matches!(c, b'<' | b'>' | b'"' | 0x7f) {
            k |= FORBIDDEN;
        }
        k |= match c {
            b'@' => AT,
            b'%' => PERCENT,
            b'?' => QUESTION,
            b';' => SEMICOLON,
            _ => 0,
        };
        t[i] = k;
        i += 1;
    }
    t
};

/// Every byte is in `class` (branch-free, no early exit: these strings are short).
#[inline]
fn all_class(b: &[u8], class: u16) -> bool {
    b.iter()
        .fold(true, |a, &c| a & (URI_CLASS[usize::from(c)] & class != 0))
}

/// `;`-separated `name[=value]` items of [`PARAM`] characters; no empty names or
/// values. `escaped`: whether the URI has a `%` at all.
fn check_uri_params(params: &str, escaped: bool) -> Result<(), BadUri> {
    let b = params.as_bytes();
    if b.is_empty() {
        return Ok(());
    }
    let mut seg_start = 0;
    let mut eq: Option<usize> = None;
    for i in 0..=b.len() {
        let c = if i < b.len() { b[i] } else { b';' };
        match c {
            b';' => {
                let name_end = eq.unwrap_or(i);
                if name_end == seg_start || eq.is_some_and(|e| e + 1 == i) {
                    return Err(BadUri);
                }
                seg_start = i + 1;
                eq = None;
            }
            b'=' if eq.is_none() => eq = Some(i),
            c if URI_CLASS[usize::from(c)] & PARAM == 0 => return Err(BadUri),
            _ => {}
        }
    }
    if !escaped || escapes_valid(params) {
        Ok(())
    } else {
        Err(BadUri)
    }
}

fn check_uri_headers(headers: &str) -> bool {
    headers.split('&').all(|h| {
        let (name, value) = split_at_byte(h, b'=');
        !name.is_empty()
            && h.contains('=')
            && all_class(name.as_bytes(), HEADER)
            && all_class(value.as_bytes(), HEADER)
            && escapes_valid(h)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_sip_uri() {
        let u = Uri::parse("sip:alice:secret@example.com:5070;transport=udp;lr?subject=hi&x=y")
            .unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("secret"));
        assert_eq!(u.host, Some(Host::Name("example.com")));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.transport(), Some("udp"));
        assert!(u.is_loose_router());
        assert_eq!(u.headers(), "subject=hi&x=y");
    }

    #[test]
    fn address_literals() {
        let u = Uri::parse("sips:[2001:db8::10]:5061").unwrap();
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.host, Some(Host::V6("2001:db8::10".parse().unwrap())));
        assert_eq!(u.port, Some(5061));
        let u = Uri::parse("sip:+15551234@10.0.0.1;user=phone").unwrap();
        assert_eq!(u.host, Some(Host::V4(Ipv4Addr::new(10, 0, 0, 1))));
        assert_eq!(u.user, Some("+15551234"));
        assert_eq!(u.param("user"), Some(Some("phone")));
    }

    #[test]
    fn escapes_and_user_unreserved() {
        let u = Uri::parse("sip:sips%3Auser%40example.com@example.net").unwrap();
        assert_eq!(u.user, Some("sips%3Auser%40example.com"));
        assert_eq!(
            &*super::super::scan::unescape(u.user.unwrap()).unwrap(),
            b"sips:user@example.com"
        );
        assert!(Uri::parse("sip:us%zzer@example.net").is_err());
        assert!(Uri::parse("sip:a;b=c@example.net").is_ok());
    }

    #[test]
    fn tel_and_other_schemes() {
        let u = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user, Some("+1-201-555-0123"));
        assert_eq!(u.host, None);
        let u = Uri::parse("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6").unwrap();
        assert_eq!(u.scheme, Scheme::Other);
    }

    /// Every string of 1 to `max_len` characters drawn from `alphabet`.
    fn every_string(alphabet: &'static str, max_len: usize) -> Vec<String> {
        let mut all = Vec::new();
        let mut frontier = vec![String::new()];
        for _ in 0..max_len {
            frontier = frontier
                .iter()
                .flat_map(|s| alphabet.chars().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(frontier.iter().cloned());
        }
        all
    }

    #[test]
    fn ipv4_scan_agrees_with_std() {
        let check = |s: &str| {
            assert_eq!(
                parse_ipv4(s.as_bytes()),
                s.parse::<Ipv4Addr>().ok(),
                "{s:?}"
            );
        };
        // Every string of up to 6 bytes over digits and dots ...
        every_string("015.9", 6).iter().for_each(|s| check(s));
        // ... and 1 to 5 parts drawn from octets at and around the limits.
        let octets = [
            "", "0", "00", "01", "1", "9", "10", "99", "100", "199", "255", "256", "300", "999",
            "1000", "0255",
        ];
        let mut joined = vec![String::new()];
        for parts in 1..=5 {
            joined = joined
                .iter()
                .flat_map(|s| {
                    octets.iter().map(move |o| match parts {
                        1 => (*o).to_string(),
                        _ => format!("{s}.{o}"),
                    })
                })
                .collect();
            joined.iter().for_each(|s| check(s));
        }
    }

    #[test]
    fn host_name_scan_agrees_with_the_grammar() {
        // The rules of `parse_host_name` spelled out one at a time.
        fn reference(h: &str) -> bool {
            let name = h.strip_suffix('.').unwrap_or(h);
            let labels: Vec<&str> = name.split('.').collect();
            !name.is_empty()
                && name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
                && labels
                    .iter()
                    .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
                && labels.last().unwrap().as_bytes()[0].is_ascii_alphabetic()
        }
        for h in every_string("a1-._", 7) {
            if h.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
                continue; // IPv4, checked above
            }
            assert_eq!(parse_host_name(&h).is_ok(), reference(&h), "{h:?}");
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "sip:",
            "nocolon",
            "sip:@example.com",
            "sip:user@",
            "sip:user@exa mple.com",
            "sip:user@example.com:99999",
            "sip:user@example.com:",
            "sip:user@[::1",
            "sip:user@-bad.com",
            "sip:user@1.2.3.256",
            "sip:user@example.com;=x",
            "sip:user@example.com?",
            "sip:<user>@example.com",
            "1sip:user@example.com",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
