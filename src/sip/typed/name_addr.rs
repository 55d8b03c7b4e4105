//! `name-addr` headers: From, To, Contact (with its registration
//! parameters), Route, Record-Route, Path.

use super::scalar::delta_seconds;
use crate::sip::error::ParseError;
use crate::sip::header::HeaderName;
use crate::sip::message::Message;
use crate::sip::scan::{
    find_byte, is_lws, is_token, parse_u64, skip_quoted, trim, unquote, ParamList,
};
use crate::sip::uri::Uri;

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
        expires_value(self.addr().and_then(|a| a.param("expires")))
    }

    /// The `q` parameter in thousandths (`q=0.5` → 500); `Err` when malformed.
    pub fn q(&self) -> Result<Option<u16>, ParseError> {
        q_value(self.addr().and_then(|a| a.param("q")))
    }

    /// [`Contact::expires`], [`Contact::q`] and [`Contact::reg_id`] from
    /// one pass over the parameters instead of three lookups (`validate`
    /// reads all three of every Contact).
    #[allow(clippy::type_complexity)]
    pub fn registration(&self) -> Result<(Option<u32>, Option<u16>, Option<u32>), ParseError> {
        let Some(a) = self.addr() else {
            return Ok((None, None, None));
        };
        // Each the first parameter of its name, as `param` finds it.
        let (mut e, mut q, mut r) = (None, None, None);
        for p in a.params.iter() {
            match p.name.len() {
                7 if e.is_none() && p.name.eq_ignore_ascii_case("expires") => e = Some(p.value),
                1 if q.is_none() && p.name.eq_ignore_ascii_case("q") => q = Some(p.value),
                6 if r.is_none() && p.name.eq_ignore_ascii_case("reg-id") => r = Some(p.value),
                _ => {}
            }
        }
        Ok((expires_value(e)?, q_value(q)?, reg_id_value(r)?))
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
        reg_id_value(self.addr().and_then(|a| a.param("reg-id")))
    }
}

/// An `expires` parameter as found (`None` absent, `Some(None)` without a value).
fn expires_value(v: Option<Option<&str>>) -> Result<Option<u32>, ParseError> {
    match v {
        None => Ok(None),
        Some(v) => delta_seconds(v.unwrap_or(""))
            .map(Some)
            .ok_or(ParseError::BadHeader("Contact")),
    }
}

fn q_value(v: Option<Option<&str>>) -> Result<Option<u16>, ParseError> {
    match v {
        None => Ok(None),
        Some(v) => parse_qvalue(v.unwrap_or(""))
            .map(Some)
            .ok_or(ParseError::BadHeader("Contact")),
    }
}

fn reg_id_value(v: Option<Option<&str>>) -> Result<Option<u32>, ParseError> {
    match v {
        None => Ok(None),
        Some(v) => parse_u64(v.unwrap_or(""))
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or(ParseError::BadHeader("Contact")),
    }
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

/// Typed accessors of the `name-addr` headers.
impl<'a> Message<'a> {
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
}
