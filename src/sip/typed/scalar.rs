//! Single-valued headers: CSeq, Call-ID, Max-Forwards, Expires (and the
//! delta-seconds they share), Content-Length, Date, User-Agent.

use crate::sip::error::ParseError;
use crate::sip::header::HeaderName;
use crate::sip::message::Message;
use crate::sip::method::Method;
use crate::sip::scan::{find_byte, is_lws, is_word, parse_u64, trim};

/// RFC 3261 delta-seconds; values past 2^32-1 are clamped as §20.19 and §10.2.1 allow.
pub fn delta_seconds(s: &str) -> Option<u32> {
    let s = trim(s);
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(parse_u64(s).map_or(u32::MAX, |v| u32::try_from(v).unwrap_or(u32::MAX)))
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

/// Typed accessors of the single-valued headers.
impl<'a> Message<'a> {
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

    /// Content-Length as declared (the parser already checked it against the body).
    pub fn content_length(&self) -> Option<usize> {
        self.header(HeaderName::ContentLength)
            .and_then(parse_u64)
            .and_then(|v| usize::try_from(v).ok())
    }

    /// User-Agent text as written.
    pub fn user_agent(&self) -> Option<&'a str> {
        self.header(HeaderName::UserAgent)
    }
}
