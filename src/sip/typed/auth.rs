//! Authorization, WWW-Authenticate and their Proxy- twins.

use smallvec::SmallVec;

use crate::sip::error::ParseError;
use crate::sip::header::HeaderName;
use crate::sip::message::Message;
use crate::sip::scan::{is_lws, is_token, is_token_str, skip_quoted, trim};

/// Authorization / WWW-Authenticate and their Proxy- twins: a scheme and
/// comma-separated `name=value` parameters (RFC 7616 §3.3, §3.4), parsed
/// once into (name, unquoted value) pairs; or, for schemes other than
/// Digest, a single token68 (RFC 7235 §2.1), as in `Bearer <token>`
/// (RFC 8898).
#[derive(Debug, Clone)]
pub struct AuthParams<'a> {
    pub scheme: &'a str,
    /// The header value the offsets below point into.
    base: &'a str,
    /// Kept as offsets into `base` (8 bytes a pair, not 32): an
    /// `Authorization` travels inside `Checked`, which is moved by value.
    params: SmallVec<[PackedPair; 10]>,
    /// `(start, len)` of the token68 in `base`, when the credentials are one.
    token68: Option<(u16, u16)>,
}

/// One `name=value` pair as offsets into [`AuthParams::base`]; u16 is enough
/// since a header value never exceeds a datagram (at most 64 KiB).
#[derive(Debug, Clone, Copy)]
struct PackedPair {
    name_start: u16,
    name_len: u16,
    value_start: u16,
    value_len: u16,
}

impl<'a> AuthParams<'a> {
    pub fn parse(v: &'a str, header: &'static str) -> Result<AuthParams<'a>, ParseError> {
        let bad = ParseError::BadHeader(header);
        let v = trim(v);
        // Unreachable within a datagram (`Limits::max_datagram` <= 65535):
        // the u16 offsets below must fit.
        if v.len() > usize::from(u16::MAX) {
            return Err(bad);
        }
        let sp = v.bytes().position(is_lws).unwrap_or(v.len());
        let scheme = &v[..sp];
        if !is_token_str(scheme) {
            return Err(bad);
        }
        // Digest only ever takes parameters (and `Digest a=` is a broken
        // parameter, not a token68); other schemes may carry one token68.
        if !scheme.eq_ignore_ascii_case("Digest") {
            let rest = trim(&v[sp..]);
            if is_token68(rest) {
                let start = (v.len() - rest.len()) as u16;
                return Ok(AuthParams {
                    scheme,
                    base: v,
                    params: SmallVec::new(),
                    token68: Some((start, rest.len() as u16)),
                });
            }
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
            let name = (ns, i);
            i = skip_lws(i);
            if ns == name.1 || b.get(i) != Some(&b'=') {
                return Err(bad);
            }
            i = skip_lws(i + 1);
            let value = if b.get(i) == Some(&b'"') {
                let end = skip_quoted(b, i).map_err(|_| bad)?;
                let q = (i + 1, end - 1);
                i = end;
                q
            } else {
                let vs = i;
                i = token_end(b, i);
                if vs == i {
                    return Err(bad);
                }
                (vs, i)
            };
            params.push(PackedPair::new(name, value));
            i = skip_lws(i);
            match b.get(i) {
                None => break,
                Some(b',') => i += 1,
                Some(_) => return Err(bad),
            }
        }
        Ok(AuthParams {
            scheme,
            base: v,
            params,
            token68: None,
        })
    }

    /// The token68 of credentials such as `Bearer <token>`.
    pub fn token68(&self) -> Option<&'a str> {
        self.token68.map(|(s, l)| self.slice(s, l))
    }

    #[inline]
    fn slice(&self, start: u16, len: u16) -> &'a str {
        let s = usize::from(start);
        self.base.get(s..s + usize::from(len)).unwrap_or("")
    }

    /// A parameter's value without quotes (`realm`, `nonce`, `response` …).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.params
            .iter()
            .filter(|p| usize::from(p.name_len) == name.len())
            .find(|p| {
                self.slice(p.name_start, p.name_len)
                    .eq_ignore_ascii_case(name)
            })
            .map(|p| self.slice(p.value_start, p.value_len))
    }

    /// Every `(name, unquoted value)` pair in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.params.iter().map(|p| {
            (
                self.slice(p.name_start, p.name_len),
                self.slice(p.value_start, p.value_len),
            )
        })
    }

    pub fn is_digest(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("Digest")
    }

    /// The token of `Bearer <token>` credentials (RFC 8898 §2.1).
    pub fn bearer(&self) -> Option<&'a str> {
        if self.scheme.eq_ignore_ascii_case("Bearer") {
            self.token68()
        } else {
            None
        }
    }
}

/// RFC 7235 §2.1: `token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" /
/// "+" / "/" ) *"="`.
fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._~+/".contains(&c))
}

/// Equal when the scheme and the pairs are, however the text was spaced.
impl PartialEq for AuthParams<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.scheme == other.scheme
            && self.token68() == other.token68()
            && self.iter().eq(other.iter())
    }
}

impl Eq for AuthParams<'_> {}

impl PackedPair {
    /// `(start, end)` byte ranges of a value at most 64 KiB long.
    fn new(name: (usize, usize), value: (usize, usize)) -> PackedPair {
        PackedPair {
            name_start: name.0 as u16,
            name_len: (name.1 - name.0) as u16,
            value_start: value.0 as u16,
            value_len: (value.1 - value.0) as u16,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_unquoted_and_compare_however_spaced() {
        let h = "Authorization";
        let a =
            AuthParams::parse(r#"Digest username="alice", realm = "a,b" ,nc=00000001"#, h).unwrap();
        assert!(a.is_digest());
        assert_eq!(a.get("USERNAME"), Some("alice"));
        assert_eq!(a.get("realm"), Some("a,b"));
        assert_eq!(a.get("nonce"), None);
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            [("username", "alice"), ("realm", "a,b"), ("nc", "00000001")]
        );
        let b =
            AuthParams::parse(r#"Digest  username="alice",realm="a,b", nc=00000001"#, h).unwrap();
        assert_eq!(a, b);
        for bad in [
            "Digest a=",
            "Digest =b",
            "Digest a=\"open",
            "Digest a=b c=d",
        ] {
            assert_eq!(
                AuthParams::parse(bad, h),
                Err(ParseError::BadHeader(h)),
                "{bad}"
            );
        }
    }

    #[test]
    fn bearer_carries_one_token68() {
        let h = "Authorization";
        let a = AuthParams::parse("Bearer  eyJh.eyJz-_.c2ln== ", h).unwrap();
        assert_eq!(a.bearer(), Some("eyJh.eyJz-_.c2ln=="));
        assert!(!a.is_digest());
        assert_eq!(a.iter().count(), 0);
        // Parameters stay parameters, in any scheme.
        let p = AuthParams::parse(r#"Bearer realm="x", error="invalid_token""#, h).unwrap();
        assert_eq!((p.bearer(), p.get("error")), (None, Some("invalid_token")));
        assert!(AuthParams::parse("Digest abc", h).is_err());
        for bad in ["Bearer a b", "Bearer a=b=c", "Bearer =abc", "Bearer ab\"c"] {
            assert!(AuthParams::parse(bad, h).is_err(), "{bad}");
        }
    }
}
