//! Authorization, WWW-Authenticate and their Proxy- twins.

use smallvec::SmallVec;

use crate::sip::error::ParseError;
use crate::sip::header::HeaderName;
use crate::sip::message::Message;
use crate::sip::scan::{is_lws, is_token, is_token_str, skip_quoted, trim};

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

/// Typed accessors of the authentication headers.
impl<'a> Message<'a> {
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
}
