//! Typed header values a registrar and proxy read, parsed on demand from the
//! borrowed header slices. Each accessor validates its grammar and returns
//! `ParseError::BadHeader(<name>)` when the value does not follow it.

use super::error::ParseError;
use super::header::HeaderName;
use super::message::{Message, StartLine};
use super::method::Method;
use smallvec::SmallVec;

use super::scan::{
    find_byte, find_top_level, is_lws, is_token, is_token_str, is_word, parse_u64, skip_quoted,
    trim, unquote, ParamList,
};
use super::uri::{split_host_port, BadUri, Host, Uri};

/// A Via header value (RFC 3261 §20.42, RFC 3581).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via<'a> {
    /// `SIP/2.0` with any inner LWS removed is what valid messages carry.
    pub protocol_version: &'a str,
    /// `UDP`, `TCP`, `TLS`, `WS` …
    pub transport: &'a str,
    pub host: Host<'a>,
    pub port: Option<u16>,
    /// The sent-by exactly as written (host and port).
    pub sent_by: &'a str,
    /// The via-params, parsed.
    pub params: ParamList<'a>,
}

impl<'a> Via<'a> {
    /// Parses one Via element (already split at top-level commas).
    pub fn parse(v: &'a str) -> Result<Via<'a>, ParseError> {
        const BAD: ParseError = ParseError::BadHeader("Via");
        let (head, params) = match find_top_level(v, b';').map_err(|_| BAD)? {
            Some(i) => (&v[..i], &v[i + 1..]),
            None => (v, ""),
        };
        // sent-protocol = protocol-name SLASH protocol-version SLASH transport; SLASH allows LWS.
        let hb = head.as_bytes();
        let s1 = find_byte(b'/', hb).ok_or(BAD)?;
        let s2 = s1 + 1 + find_byte(b'/', &hb[s1 + 1..]).ok_or(BAD)?;
        let name = trim(&head[..s1]);
        let version = trim(&head[s1 + 1..s2]);
        let rest = trim(&head[s2 + 1..]);
        let t_end = rest.bytes().position(is_lws).ok_or(BAD)?;
        let transport = &rest[..t_end];
        let sent_by = trim(&rest[t_end..]);
        if !name.eq_ignore_ascii_case("SIP") || !is_token_str(version) || !is_token_str(transport) {
            return Err(BAD);
        }
        let (host, port) = split_sent_by(sent_by).map_err(|_| BAD)?;
        let params = ParamList::parse(params).map_err(|_| BAD)?;
        let protocol_version = if version == "2.0" { "SIP/2.0" } else { version };
        Ok(Via {
            protocol_version,
            transport,
            host,
            port,
            sent_by,
            params,
        })
    }

    pub fn params(&self) -> &ParamList<'a> {
        &self.params
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a str> {
        self.params.get("branch").flatten()
    }

    /// The `received` parameter (RFC 3261 §18.2.1).
    pub fn received(&self) -> Option<&'a str> {
        self.params.get("received").flatten()
    }

    /// `rport` (RFC 3581): `None` if absent, `Some(None)` when asked for,
    /// `Some(Some(port))` when filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(parse_u64).and_then(|p| u16::try_from(p).ok()))
    }
}

/// sent-by = host [ COLON port ], where COLON may carry LWS.
fn split_sent_by(s: &str) -> Result<(Host<'_>, Option<u16>), BadUri> {
    if s.starts_with('[') {
        let close = find_byte(b']', s.as_bytes()).ok_or(BadUri)?;
        let (host, _) = split_host_port(&s[..=close])?;
        let rest = trim(&s[close + 1..]);
        if rest.is_empty() {
            return Ok((host, None));
        }
        let port = trim(rest.strip_prefix(':').ok_or(BadUri)?);
        return Ok((host, Some(parse_port(port)?)));
    }
    match find_byte(b':', s.as_bytes()) {
        Some(c) => {
            let (host, _) = split_host_port(trim(&s[..c]))?;
            Ok((host, Some(parse_port(trim(&s[c + 1..]))?)))
        }
        None => split_host_port(s),
    }
}

fn parse_port(p: &str) -> Result<u16, BadUri> {
    parse_u64(p)
        .and_then(|v| u16::try_from(v).ok())
        .ok_or(BadUri)
}

/// `name-addr` or `addr-spec` with header parameters: From, To, Contact,
/// Route, Record-Route, Path, Refer-To (RFC 3261 §20.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name as written (quoted form keeps its quotes).
    pub display: Option<&'a str>,
    /// The URI as written, without angle brackets.
    pub uri_raw: &'a str,
    /// The URI, parsed.
    pub uri: Uri<'a>,
    /// The header parameters after the URI.
    pub params: ParamList<'a>,
}

impl<'a> NameAddr<'a> {
    /// Parses one element; `header` names the header for the error.
    pub fn parse(v: &'a str, header: &'static str) -> Result<NameAddr<'a>, ParseError> {
        let bad = ParseError::BadHeader(header);
        let v = trim(v);
        let b = v.as_bytes();
        let (display, uri_raw, after) = if b.first() == Some(&b'"') {
            let end = skip_quoted(b, 0).map_err(|_| bad)?;
            let rest = trim(&v[end..]);
            let inner = rest.strip_prefix('<').ok_or(bad)?;
            let close = memchr::memchr(b'>', inner.as_bytes()).ok_or(bad)?;
            (Some(&v[..end]), &inner[..close], &inner[close + 1..])
        } else if let Some(open) = find_byte(b'<', b) {
            let display = trim(&v[..open]);
            // An unquoted display name is a sequence of tokens separated by LWS.
            if !display.bytes().all(|c| is_token(c) || is_lws(c)) {
                return Err(bad);
            }
            let inner = &v[open + 1..];
            // The whole URI lies before `>`: long enough for memchr's SIMD.
            let close = memchr::memchr(b'>', inner.as_bytes()).ok_or(bad)?;
            let display = (!display.is_empty()).then_some(display);
            (display, &inner[..close], &inner[close + 1..])
        } else {
            // addr-spec form: parameters after the URI belong to the header, not
            // the URI, and a URI with `,`, `?` or `;` must be in brackets (§20).
            let end = find_byte(b';', b).unwrap_or(v.len());
            let uri = trim(&v[..end]);
            if uri.bytes().any(|c| c == b'?' || c == b',') {
                return Err(bad);
            }
            (None, uri, &v[end..])
        };
        let after = trim(after);
        let params_raw = match after.strip_prefix(';') {
            Some(p) => p,
            None if after.is_empty() => "",
            None => return Err(bad),
        };
        let params = ParamList::parse(params_raw).map_err(|_| bad)?;
        let uri = Uri::parse(uri_raw).map_err(|_| bad)?;
        Ok(NameAddr {
            display,
            uri_raw,
            uri,
            params,
        })
    }

    /// The URI (parsed when the header was).
    pub fn uri(&self) -> Uri<'a> {
        self.uri
    }

    pub fn params(&self) -> &ParamList<'a> {
        &self.params
    }

    /// A header parameter's value; `Some(None)` when present without one.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params.get(name)
    }

    /// The `tag` parameter (From/To).
    pub fn tag(&self) -> Option<&'a str> {
        self.param("tag").flatten()
    }
}

/// One Contact element: `*` or an address with its registration parameters.
// `*` is rare and boxing the address would allocate per contact.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact<'a> {
    /// `Contact: *` (remove all bindings, RFC 3261 §10.2.2).
    Star,
    Addr(NameAddr<'a>),
}

impl<'a> Contact<'a> {
    pub fn parse(v: &'a str) -> Result<Contact<'a>, ParseError> {
        if trim(v) == "*" {
            Ok(Contact::Star)
        } else {
            NameAddr::parse(v, "Contact").map(Contact::Addr)
        }
    }

    /// The address, or `None` for `*`.
    pub fn addr(&self) -> Option<&NameAddr<'a>> {
        match self {
            Contact::Star => None,
            Contact::Addr(a) => Some(a),
        }
    }

    /// The `expires` parameter; `Err` when present but not delta-seconds.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        match self.addr().and_then(|a| a.param("expires")) {
            None => Ok(None),
            Some(v) => delta_seconds(v.unwrap_or(""))
                .map(Some)
                .ok_or(ParseError::BadHeader("Contact")),
        }
    }

    /// The `q` parameter in thousandths (`q=0.5` → 500); `Err` when malformed.
    pub fn q(&self) -> Result<Option<u16>, ParseError> {
        match self.addr().and_then(|a| a.param("q")) {
            None => Ok(None),
            Some(v) => parse_qvalue(v.unwrap_or(""))
                .map(Some)
                .ok_or(ParseError::BadHeader("Contact")),
        }
    }

    /// `+sip.instance` (RFC 5626) without its quotes and angle brackets,
    /// e.g. `urn:uuid:00000000-0000-1000-8000-000A95A0E128`.
    pub fn instance(&self) -> Option<&'a str> {
        let v = unquote(self.addr()?.param("+sip.instance")??);
        Some(
            v.strip_prefix('<')
                .and_then(|s| s.strip_suffix('>'))
                .unwrap_or(v),
        )
    }

    /// `reg-id` (RFC 5626); `Err` when present but not a number.
    pub fn reg_id(&self) -> Result<Option<u32>, ParseError> {
        match self.addr().and_then(|a| a.param("reg-id")) {
            None => Ok(None),
            Some(v) => parse_u64(v.unwrap_or(""))
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or(ParseError::BadHeader("Contact")),
        }
    }
}

/// RFC 3261 delta-seconds; values past 2^32-1 are clamped as §20.19 and §10.2.1 allow.
pub fn delta_seconds(s: &str) -> Option<u32> {
    let s = trim(s);
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(parse_u64(s).map_or(u32::MAX, |v| u32::try_from(v).unwrap_or(u32::MAX)))
}

/// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ), in thousandths.
fn parse_qvalue(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut milli: u16 = 0;
    for (i, c) in frac.bytes().enumerate() {
        milli += u16::from(c - b'0') * [100, 10, 1][i];
    }
    match int {
        "0" => Some(milli),
        "1" if milli == 0 => Some(1000),
        _ => None,
    }
}

/// RFC 1123 date as SIP uses it (RFC 3261 §20.17): `Sat, 13 Nov 2010 23:29:00 GMT`,
/// always in GMT.
pub fn is_sip_date(v: &str) -> bool {
    let b = v.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    b.len() == 29
        && DAYS.iter().any(|d| v.get(0..3) == Some(*d))
        && v.get(3..5) == Some(", ")
        && digits(5..7)
        && b[7] == b' '
        && MONTHS.iter().any(|m| v.get(8..11) == Some(*m))
        && b[11] == b' '
        && digits(12..16)
        && b[16] == b' '
        && digits(17..19)
        && b[19] == b':'
        && digits(20..22)
        && b[22] == b':'
        && digits(23..25)
        && v.get(25..29) == Some(" GMT")
}

/// CSeq: a sequence number below 2^31 and a method (RFC 3261 §8.1.1.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    pub seq: u32,
    pub method: Method<'a>,
}

impl<'a> CSeq<'a> {
    pub fn parse(v: &'a str) -> Result<CSeq<'a>, ParseError> {
        const BAD: ParseError = ParseError::BadHeader("CSeq");
        let v = trim(v);
        let sp = v.bytes().position(is_lws).ok_or(BAD)?;
        let seq = parse_u64(&v[..sp]).filter(|&n| n < 1 << 31).ok_or(BAD)?;
        let method = Method::parse(trim(&v[sp..])).ok_or(BAD)?;
        Ok(CSeq {
            seq: seq as u32,
            method,
        })
    }
}

/// A media type from Content-Type or an Accept element: `type/subtype;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType<'a> {
    pub top: &'a str,
    pub sub: &'a str,
    pub params: ParamList<'a>,
}

impl<'a> MediaType<'a> {
    pub fn parse(v: &'a str, header: &'static str) -> Result<MediaType<'a>, ParseError> {
        let bad = ParseError::BadHeader(header);
        // Without a `;` there are no parameters and no quoted-string scan is
        // needed: a quote would land in `top` or `sub` and fail as a token.
        let split = if find_byte(b';', v.as_bytes()).is_some() {
            find_top_level(v, b';').map_err(|_| bad)?
        } else {
            None
        };
        let (mt, params) = match split {
            Some(i) => (&v[..i], &v[i + 1..]),
            None => (v, ""),
        };
        let slash = find_byte(b'/', mt.as_bytes()).ok_or(bad)?;
        let (top, sub) = (trim(&mt[..slash]), trim(&mt[slash + 1..]));
        if !is_token_str(top) || !is_token_str(sub) {
            return Err(bad);
        }
        Ok(MediaType {
            top,
            sub,
            params: ParamList::parse(params).map_err(|_| bad)?,
        })
    }

    /// Case-insensitive match, e.g. `is("application", "sdp")`.
    pub fn is(&self, top: &str, sub: &str) -> bool {
        self.top.eq_ignore_ascii_case(top) && self.sub.eq_ignore_ascii_case(sub)
    }
}

/// Event header (RFC 6665): package name and parameters such as `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    pub package: &'a str,
    pub params: ParamList<'a>,
}

impl<'a> Event<'a> {
    pub fn parse(v: &'a str) -> Result<Event<'a>, ParseError> {
        const BAD: ParseError = ParseError::BadHeader("Event");
        let (pkg, params) = match find_top_level(v, b';').map_err(|_| BAD)? {
            Some(i) => (trim(&v[..i]), &v[i + 1..]),
            None => (trim(v), ""),
        };
        if !is_token_str(pkg) {
            return Err(BAD);
        }
        Ok(Event {
            package: pkg,
            params: ParamList::parse(params).map_err(|_| BAD)?,
        })
    }

    /// The `id` parameter.
    pub fn id(&self) -> Option<&'a str> {
        self.params.get("id").flatten()
    }
}

/// Authorization / WWW-Authenticate and their Proxy- twins: a scheme and
/// comma-separated `name=value` parameters (RFC 7616 §3.3, §3.4), parsed
/// once into (name, unquoted value) pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParams<'a> {
    pub scheme: &'a str,
    params: SmallVec<[(&'a str, &'a str); 10]>,
}

impl<'a> AuthParams<'a> {
    pub fn parse(v: &'a str, header: &'static str) -> Result<AuthParams<'a>, ParseError> {
        let bad = ParseError::BadHeader(header);
        let v = trim(v);
        let sp = v.bytes().position(is_lws).unwrap_or(v.len());
        let scheme = &v[..sp];
        if !is_token_str(scheme) {
            return Err(bad);
        }
        // One pass: name LWS "=" LWS (token / quoted-string) LWS ("," / end).
        let mut params = SmallVec::new();
        let b = v.as_bytes();
        let mut i = sp;
        let skip_lws = |mut i: usize| {
            while i < b.len() && is_lws(b[i]) {
                i += 1;
            }
            i
        };
        loop {
            i = skip_lws(i);
            if i >= b.len() {
                break;
            }
            let ns = i;
            i = token_end(b, i);
            let name = &v[ns..i];
            i = skip_lws(i);
            if name.is_empty() || b.get(i) != Some(&b'=') {
                return Err(bad);
            }
            i = skip_lws(i + 1);
            let value = if b.get(i) == Some(&b'"') {
                let end = skip_quoted(b, i).map_err(|_| bad)?;
                let q = &v[i + 1..end - 1];
                i = end;
                q
            } else {
                let vs = i;
                i = token_end(b, i);
                if vs == i {
                    return Err(bad);
                }
                &v[vs..i]
            };
            params.push((name, value));
            i = skip_lws(i);
            match b.get(i) {
                None => break,
                Some(b',') => i += 1,
                Some(_) => return Err(bad),
            }
        }
        Ok(AuthParams { scheme, params })
    }

    /// A parameter's value without quotes (`realm`, `nonce`, `response` …).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .find(|(n, _)| n.len() == name.len() && n.eq_ignore_ascii_case(name))
            .map(|&(_, v)| v)
    }

    /// Every `(name, unquoted value)` pair in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.params.iter().copied()
    }

    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }
}

/// The end of the run of token characters starting at `from` (an iterator
/// search, without the bounds checks of an indexed loop).
#[inline]
fn token_end(b: &[u8], from: usize) -> usize {
    let rest = &b[from..];
    from + rest
        .iter()
        .position(|&c| !is_token(c))
        .unwrap_or(rest.len())
}

/// Typed accessors on a parsed message.
impl<'a> Message<'a> {
    /// Every Via element, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'a>, ParseError>> + '_ {
        self.list(HeaderName::Via).map(|r| r.and_then(Via::parse))
    }

    /// The topmost Via (the one a response is routed by).
    pub fn top_via(&self) -> Result<Via<'a>, ParseError> {
        self.vias()
            .next()
            .unwrap_or(Err(ParseError::MissingHeader("Via")))
    }

    fn required_name_addr(&self, name: HeaderName) -> Result<NameAddr<'a>, ParseError> {
        let v = self
            .singleton(name)?
            .ok_or(ParseError::MissingHeader(name.as_str()))?;
        NameAddr::parse(v, name.as_str())
    }

    pub fn from(&self) -> Result<NameAddr<'a>, ParseError> {
        self.required_name_addr(HeaderName::From)
    }

    pub fn to(&self) -> Result<NameAddr<'a>, ParseError> {
        self.required_name_addr(HeaderName::To)
    }

    /// Call-ID: `word [ "@" word ]`, no whitespace inside.
    pub fn call_id(&self) -> Result<&'a str, ParseError> {
        let v = self
            .singleton(HeaderName::CallId)?
            .ok_or(ParseError::MissingHeader("Call-ID"))?;
        // callid = word [ "@" word ] (RFC 3261 §25.1).
        let b = v.as_bytes();
        let ok = match find_byte(b'@', b) {
            Some(at) => is_word(&b[..at]) && is_word(&b[at + 1..]),
            None => is_word(b),
        };
        if !ok {
            return Err(ParseError::BadHeader("Call-ID"));
        }
        Ok(v)
    }

    pub fn cseq(&self) -> Result<CSeq<'a>, ParseError> {
        let v = self
            .singleton(HeaderName::CSeq)?
            .ok_or(ParseError::MissingHeader("CSeq"))?;
        CSeq::parse(v)
    }

    /// Max-Forwards (0..=255), `None` when absent.
    pub fn max_forwards(&self) -> Result<Option<u8>, ParseError> {
        self.singleton(HeaderName::MaxForwards)?
            .map(|v| {
                parse_u64(v)
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or(ParseError::BadHeader("Max-Forwards"))
            })
            .transpose()
    }

    /// Expires as delta-seconds, `None` when absent.
    pub fn expires(&self) -> Result<Option<u32>, ParseError> {
        self.singleton(HeaderName::Expires)?
            .map(|v| delta_seconds(v).ok_or(ParseError::BadHeader("Expires")))
            .transpose()
    }

    /// Every Contact element, in order.
    pub fn contacts(&self) -> impl Iterator<Item = Result<Contact<'a>, ParseError>> + '_ {
        self.list(HeaderName::Contact)
            .map(|r| r.and_then(Contact::parse))
    }

    fn name_addrs(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.list(name)
            .map(move |r| r.and_then(|v| NameAddr::parse(v, name.as_str())))
    }

    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.name_addrs(HeaderName::Route)
    }

    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.name_addrs(HeaderName::RecordRoute)
    }

    /// Path (RFC 3327) elements, in order.
    pub fn paths(&self) -> impl Iterator<Item = Result<NameAddr<'a>, ParseError>> + '_ {
        self.name_addrs(HeaderName::Path)
    }

    /// Content-Length as declared (the parser already checked it against the body).
    pub fn content_length(&self) -> Option<usize> {
        self.header(HeaderName::ContentLength)
            .and_then(parse_u64)
            .and_then(|v| usize::try_from(v).ok())
    }

    pub fn content_type(&self) -> Result<Option<MediaType<'a>>, ParseError> {
        self.singleton(HeaderName::ContentType)?
            .map(|v| MediaType::parse(v, "Content-Type"))
            .transpose()
    }

    pub fn event(&self) -> Result<Option<Event<'a>>, ParseError> {
        self.singleton(HeaderName::Event)?
            .map(Event::parse)
            .transpose()
    }

    /// Accept elements as media types.
    pub fn accept(&self) -> impl Iterator<Item = Result<MediaType<'a>, ParseError>> + '_ {
        self.list(HeaderName::Accept)
            .map(|r| r.and_then(|v| MediaType::parse(v, "Accept")))
    }

    /// Option tags of Supported, Require, Proxy-Require, Unsupported, or
    /// event packages of Allow-Events, methods of Allow.
    pub fn tokens(
        &self,
        name: HeaderName,
    ) -> impl Iterator<Item = Result<&'a str, ParseError>> + '_ {
        self.list(name).map(move |r| {
            r.and_then(|t| {
                if is_token_str(t) {
                    Ok(t)
                } else {
                    Err(ParseError::BadHeader(name.as_str()))
                }
            })
        })
    }

    fn auth(&self, name: HeaderName) -> Result<Option<AuthParams<'a>>, ParseError> {
        self.header(name)
            .map(|v| AuthParams::parse(v, name.as_str()))
            .transpose()
    }

    pub fn authorization(&self) -> Result<Option<AuthParams<'a>>, ParseError> {
        self.auth(HeaderName::Authorization)
    }

    pub fn proxy_authorization(&self) -> Result<Option<AuthParams<'a>>, ParseError> {
        self.auth(HeaderName::ProxyAuthorization)
    }

    pub fn www_authenticate(&self) -> Result<Option<AuthParams<'a>>, ParseError> {
        self.auth(HeaderName::WwwAuthenticate)
    }

    pub fn proxy_authenticate(&self) -> Result<Option<AuthParams<'a>>, ParseError> {
        self.auth(HeaderName::ProxyAuthenticate)
    }

    /// User-Agent text as written.
    pub fn user_agent(&self) -> Option<&'a str> {
        self.header(HeaderName::UserAgent)
    }

    /// The parsed Request-URI (`None` for responses).
    pub fn request_uri(&self) -> Option<Result<Uri<'a>, ParseError>> {
        self.request_uri_raw()
            .map(|u| Uri::parse(u).map_err(|_| ParseError::BadRequestUri))
    }

    /// Checks what every element must check before acting on a message
    /// (RFC 3261 §8.2, §16.3): the mandatory headers exist once each and
    /// parse, the Request-URI parses, CSeq's method matches, and the other
    /// headers tether reads follow their grammar. Returns the values every
    /// element then reads, so nothing is parsed twice.
    pub fn validate(&self) -> Result<Checked<'a>, ParseError> {
        let cseq = self.cseq()?;
        let mut request_uri = None;
        let mut max_forwards = None;
        if let StartLine::Request { method, .. } = self.start {
            let ruri = self.request_uri().expect("request")?;
            // A Request-URI carries no URI headers (RFC 3261 §19.1.5).
            if !ruri.headers().is_empty() {
                return Err(ParseError::BadRequestUri);
            }
            if cseq.method != method {
                return Err(ParseError::CSeqMethodMismatch);
            }
            max_forwards = self.max_forwards()?;
            request_uri = Some(ruri);
        }
        let mut vias = self.vias();
        let top_via = vias
            .next()
            .unwrap_or(Err(ParseError::MissingHeader("Via")))?;
        for via in vias {
            via?;
        }
        let from = self.from()?;
        let to = self.to()?;
        let call_id = self.call_id()?;
        let expires = self.expires()?;
        self.content_type()?;
        self.event()?;
        if let Some(date) = self.singleton(HeaderName::Date)? {
            if !is_sip_date(date) {
                return Err(ParseError::BadHeader("Date"));
            }
        }
        let mut contacts = SmallVec::new();
        for c in self.contacts() {
            let c = c?;
            c.expires()?;
            c.q()?;
            c.reg_id()?;
            contacts.push(c);
        }
        for r in self
            .routes()
            .chain(self.record_routes())
            .chain(self.paths())
        {
            r?;
        }
        for a in self.accept() {
            a?;
        }
        for name in [
            HeaderName::Supported,
            HeaderName::Require,
            HeaderName::ProxyRequire,
            HeaderName::AllowEvents,
            HeaderName::Allow,
        ] {
            for t in self.tokens(name) {
                t?;
            }
        }
        let authorization = self.authorization()?;
        self.proxy_authorization()?;
        self.www_authenticate()?;
        self.proxy_authenticate()?;
        Ok(Checked {
            request_uri,
            top_via,
            from,
            to,
            call_id,
            cseq,
            max_forwards,
            expires,
            contacts,
            authorization,
        })
    }
}

/// The headers every element reads, parsed once by [`Message::validate`].
#[derive(Debug, Clone)]
pub struct Checked<'a> {
    /// `None` for responses.
    pub request_uri: Option<Uri<'a>>,
    pub top_via: Via<'a>,
    pub from: NameAddr<'a>,
    pub to: NameAddr<'a>,
    pub call_id: &'a str,
    pub cseq: CSeq<'a>,
    pub max_forwards: Option<u8>,
    pub expires: Option<u32>,
    pub contacts: SmallVec<[Contact<'a>; 2]>,
    pub authorization: Option<AuthParams<'a>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_quotes_and_parameters() {
        let m = MediaType::parse("application/sdp", "Accept").unwrap();
        assert!(m.is("APPLICATION", "SDP") && m.params.is_empty());
        let m = MediaType::parse("text/plain ; charset=\"a;b\"", "Accept").unwrap();
        assert_eq!(m.params.get("charset"), Some(Some("\"a;b\"")));
        // A quote outside the parameters fails, terminated or not.
        for bad in ["application/\"sdp", "\"a\"/sdp", "a/\"b;c=d", "\"open"] {
            assert_eq!(
                MediaType::parse(bad, "Accept"),
                Err(ParseError::BadHeader("Accept")),
                "{bad}"
            );
        }
    }
}
