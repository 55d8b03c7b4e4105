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
        let colon = raw.find(':').ok_or(BadUri)?;
        let scheme_s = &raw[..colon];
        let rest = &raw[colon + 1..];
        if !valid_scheme(scheme_s)
            || rest.is_empty()
            || rest
                .bytes()
                .any(|c| c <= b' ' || matches!(c, b'<' | b'>' | b'"' | 0x7f))
        {
            return Err(BadUri);
        }
        let scheme = if scheme_s.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme_s.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme_s.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            Scheme::Other
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
            Scheme::Sip | Scheme::Sips => uri.parse_sip(rest)?,
            Scheme::Tel => {
                let (number, params) = split_at_byte(rest, b';');
                if number.is_empty() || !number.bytes().all(is_tel_char) {
                    return Err(BadUri);
                }
                check_uri_params(params)?;
                uri.user = Some(number);
                uri.params = params;
            }
            Scheme::Other => {}
        }
        Ok(uri)
    }

    fn parse_sip(&mut self, rest: &'a str) -> Result<(), BadUri> {
        // `@` cannot appear unescaped in host, params or headers, so the first one ends userinfo.
        let hostpart = match rest.find('@') {
            Some(at) => {
                let userinfo = &rest[..at];
                let (user, password) = match userinfo.find(':') {
                    Some(c) => (&userinfo[..c], Some(&userinfo[c + 1..])),
                    None => (userinfo, None),
                };
                if user.is_empty() || !user.bytes().all(is_user_char) || !escapes_valid(user) {
                    return Err(BadUri);
                }
                if let Some(p) = password {
                    if !p.bytes().all(is_password_char) || !escapes_valid(p) {
                        return Err(BadUri);
                    }
                }
                self.user = Some(user);
                self.password = password;
                &rest[at + 1..]
            }
            None => rest,
        };
        let hp_end = hostpart
            .bytes()
            .position(|c| c == b';' || c == b'?')
            .unwrap_or(hostpart.len());
        let (host, port) = split_host_port(&hostpart[..hp_end])?;
        self.host = Some(host);
        self.port = port;
        let tail = &hostpart[hp_end..];
        let (params, headers) = match tail.find('?') {
            Some(q) => (&tail[..q], &tail[q + 1..]),
            None => (tail, ""),
        };
        let params = params.strip_prefix(';').unwrap_or(params);
        check_uri_params(params)?;
        if tail.contains('?') && (headers.is_empty() || !check_uri_headers(headers)) {
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
        let close = inner.find(']').ok_or(BadUri)?;
        let addr: Ipv6Addr = inner[..close].parse().map_err(|_| BadUri)?;
        let after = &inner[close + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(BadUri),
        };
        (Host::V6(addr), port)
    } else {
        let (h, p) = match s.find(':') {
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
    if h.is_empty() {
        return Err(BadUri);
    }
    let b = h.as_bytes();
    if b.iter().all(|c| c.is_ascii_digit() || *c == b'.') {
        return h.parse::<Ipv4Addr>().map(Host::V4).map_err(|_| BadUri);
    }
    let name = h.strip_suffix('.').unwrap_or(h);
    for label in name.split('.') {
        let lb = label.as_bytes();
        if lb.is_empty()
            || !lb.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            || lb[0] == b'-'
            || lb[lb.len() - 1] == b'-'
        {
            return Err(BadUri);
        }
    }
    // The top label must start with a letter, or it would be a malformed IPv4 address.
    let top = name.rsplit('.').next().unwrap_or("");
    if !top.as_bytes().first().is_some_and(u8::is_ascii_alphabetic) {
        return Err(BadUri);
    }
    Ok(Host::Name(h))
}

fn split_at_byte(s: &str, sep: u8) -> (&str, &str) {
    match s.bytes().position(|c| c == sep) {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    }
}

fn valid_scheme(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

#[inline]
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

fn is_user_char(c: u8) -> bool {
    is_unreserved(c)
        || matches!(
            c,
            b'%' | b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/'
        )
}

fn is_password_char(c: u8) -> bool {
    is_unreserved(c) || matches!(c, b'%' | b'&' | b'=' | b'+' | b'$' | b',')
}

fn is_param_char(c: u8) -> bool {
    is_unreserved(c) || matches!(c, b'%' | b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$')
}

fn is_header_char(c: u8) -> bool {
    is_unreserved(c) || matches!(c, b'%' | b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$')
}

fn is_tel_char(c: u8) -> bool {
    c.is_ascii_hexdigit() || matches!(c, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#')
}

fn check_uri_params(params: &str) -> Result<(), BadUri> {
    if params.is_empty() {
        return Ok(());
    }
    for item in params.split(';') {
        let (name, value) = split_at_byte(item, b'=');
        if name.is_empty()
            || !name.bytes().all(is_param_char)
            || !value.bytes().all(is_param_char)
            || (item.contains('=') && value.is_empty())
            || !escapes_valid(item)
        {
            return Err(BadUri);
        }
    }
    Ok(())
}

fn check_uri_headers(headers: &str) -> bool {
    headers.split('&').all(|h| {
        let (name, value) = split_at_byte(h, b'=');
        !name.is_empty()
            && h.contains('=')
            && name.bytes().all(is_header_char)
            && value.bytes().all(is_header_char)
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
