//! Media types: Content-Type and the elements of Accept.

use crate::sip::error::ParseError;
use crate::sip::header::HeaderName;
use crate::sip::message::Message;
use crate::sip::scan::{find_byte, find_top_level, is_token_str, trim, ParamList};

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

/// Typed accessors of the media-type headers.
impl<'a> Message<'a> {
    pub fn content_type(&self) -> Result<Option<MediaType<'a>>, ParseError> {
        self.singleton(HeaderName::ContentType)?
            .map(|v| MediaType::parse(v, "Content-Type"))
            .transpose()
    }

    /// Accept elements as media types.
    pub fn accept(&self) -> impl Iterator<Item = Result<MediaType<'a>, ParseError>> + '_ {
        self.list(HeaderName::Accept)
            .map(|r| r.and_then(|v| MediaType::parse(v, "Accept")))
    }
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
