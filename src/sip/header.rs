//! Header names: the ones tether reads get a variant; everything else is kept verbatim.

/// A header field name, resolved case-insensitively and from compact forms (RFC 3261 §7.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
    Contact,
    Expires,
    MinExpires,
    Route,
    RecordRoute,
    Path,
    ContentLength,
    ContentType,
    ContentEncoding,
    Event,
    AllowEvents,
    Accept,
    Allow,
    Supported,
    Require,
    ProxyRequire,
    Unsupported,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    ProxyAuthenticate,
    UserAgent,
    Server,
    Subject,
    ReferTo,
    ReferredBy,
    SessionExpires,
    Identity,
    SubscriptionState,
    Date,
    /// Any other header; its name is kept as written.
    Other,
}

use HeaderName::*;

/// Perfect-hash table for [`HeaderName::from_wire_bytes`].
#[rustfmt::skip]
static LONG_FORMS: [HeaderName; 64] = [
    Other, Path, Other, ContentEncoding, ReferredBy, Allow, Other, Other, Other, ContentLength, Via, Expires, Subject, Authorization, CSeq, CallId, Other, Event, Accept, From, Other, UserAgent, Other, Identity, ReferTo, Other, To, Other, ProxyRequire, MaxForwards, Require, Server, SessionExpires, Other, Other, Other, MinExpires, Other, Supported, SubscriptionState, Contact, ContentType, Date, Route, Other, WwwAuthenticate, Other, Other, Other, Other, Other, AllowEvents, Other, Other, Unsupported, Other, Other, Other, Other, Other, ProxyAuthorization, ProxyAuthenticate, Other, RecordRoute,
];

/// Whether the token `b` is `lower` in any case. OR 0x20 lowercases the
/// letters of a token and leaves every other token character unchanged (and
/// none of them becomes a letter or '-'), so a case-insensitive compare is
/// an OR and a compare, done here a word at a time: the chunks at both ends
/// overlap, which covers every length from 4 up without a byte loop.
#[inline]
fn eq_folded(lower: &[u8], b: &[u8]) -> bool {
    let n = b.len();
    if n != lower.len() {
        return false;
    }
    let w8 = |s: &[u8], i: usize| u64::from_le_bytes(s[i..i + 8].try_into().expect("8 bytes"));
    let w4 = |s: &[u8], i: usize| u32::from_le_bytes(s[i..i + 4].try_into().expect("4 bytes"));
    const FOLD8: u64 = 0x2020_2020_2020_2020;
    const FOLD4: u32 = 0x2020_2020;
    if n >= 8 {
        let mut i = 0;
        while i + 8 < n {
            if w8(b, i) | FOLD8 != w8(lower, i) {
                return false;
            }
            i += 8;
        }
        w8(b, n - 8) | FOLD8 == w8(lower, n - 8)
    } else if n >= 4 {
        w4(b, 0) | FOLD4 == w4(lower, 0) && w4(b, n - 4) | FOLD4 == w4(lower, n - 4)
    } else {
        lower.iter().zip(b).all(|(&w, &c)| c | 0x20 == w)
    }
}

impl HeaderName {
    /// Resolves a header name as it appears on the wire (any case, compact or long form).
    pub fn from_wire(name: &str) -> HeaderName {
        if !crate::sip::scan::is_token_str(name) {
            return Other;
        }
        HeaderName::from_token(name.as_bytes())
    }

    /// As [`HeaderName::from_wire`], for bytes already known to be a token
    /// (the message splitter checks that). Length, first and last letter
    /// pick at most one candidate; one compare confirms it.
    pub(crate) fn from_token(b: &[u8]) -> HeaderName {
        let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
            return Other;
        };
        let (f, l) = (first | 0x20, last | 0x20);
        if b.len() == 1 {
            return match f {
                b'i' => CallId,
                b'f' => From,
                b't' => To,
                b'v' => Via,
                b'm' => Contact,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'k' => Supported,
                b's' => Subject,
                b'e' => ContentEncoding,
                b'o' => Event,
                b'u' => AllowEvents,
                b'r' => ReferTo,
                b'b' => ReferredBy,
                b'x' => SessionExpires,
                b'y' => Identity,
                _ => Other,
            };
        }
        // A multiplicative perfect hash of (length, first, last letter) over the
        // known long forms: one table load instead of a decision tree.
        // The multiplier was found by search; the unit tests check every name.
        if b.len() > 255 {
            return Other;
        }
        let key = (b.len() as u32) << 16 | u32::from(f) << 8 | u32::from(l);
        let candidate = LONG_FORMS[(key.wrapping_mul(0xe638_e6d3) >> 26) as usize];
        if candidate == Other {
            return Other;
        }
        if eq_folded(candidate.lowercase().as_bytes(), b) {
            candidate
        } else {
            Other
        }
    }

    /// The canonical long form, as tether writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::Contact => "Contact",
            HeaderName::Expires => "Expires",
            HeaderName::MinExpires => "Min-Expires",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Path => "Path",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::ContentEncoding => "Content-Encoding",
            HeaderName::Event => "Event",
            HeaderName::AllowEvents => "Allow-Events",
            HeaderName::Accept => "Accept",
            HeaderName::Allow => "Allow",
            HeaderName::Supported => "Supported",
            HeaderName::Require => "Require",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Unsupported => "Unsupported",
            HeaderName::Authorization => "Authorization",
            HeaderName::ProxyAuthorization => "Proxy-Authorization",
            HeaderName::WwwAuthenticate => "WWW-Authenticate",
            HeaderName::ProxyAuthenticate => "Proxy-Authenticate",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::Server => "Server",
            HeaderName::Subject => "Subject",
            HeaderName::ReferTo => "Refer-To",
            HeaderName::ReferredBy => "Referred-By",
            HeaderName::SessionExpires => "Session-Expires",
            HeaderName::Identity => "Identity",
            HeaderName::SubscriptionState => "Subscription-State",
            HeaderName::Date => "Date",
            HeaderName::Other => "",
        }
    }

    /// The long form in lowercase, for the name matcher.
    fn lowercase(self) -> &'static str {
        match self {
            Via => "via",
            From => "from",
            To => "to",
            CallId => "call-id",
            CSeq => "cseq",
            MaxForwards => "max-forwards",
            Contact => "contact",
            Expires => "expires",
            MinExpires => "min-expires",
            Route => "route",
            RecordRoute => "record-route",
            Path => "path",
            ContentLength => "content-length",
            ContentType => "content-type",
            ContentEncoding => "content-encoding",
            Event => "event",
            AllowEvents => "allow-events",
            Accept => "accept",
            Allow => "allow",
            Supported => "supported",
            Require => "require",
            ProxyRequire => "proxy-require",
            Unsupported => "unsupported",
            Authorization => "authorization",
            ProxyAuthorization => "proxy-authorization",
            WwwAuthenticate => "www-authenticate",
            ProxyAuthenticate => "proxy-authenticate",
            UserAgent => "user-agent",
            Server => "server",
            Subject => "subject",
            ReferTo => "refer-to",
            ReferredBy => "referred-by",
            SessionExpires => "session-expires",
            Identity => "identity",
            SubscriptionState => "subscription-state",
            Date => "date",
            Other => "",
        }
    }

    /// Headers whose value is a comma-separated list (RFC 3261 §7.3.1), so that
    /// `a, b` and two header lines `a` / `b` mean the same thing.
    pub fn is_list(self) -> bool {
        matches!(
            self,
            HeaderName::Via
                | HeaderName::Contact
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::Path
                | HeaderName::Accept
                | HeaderName::Allow
                | HeaderName::AllowEvents
                | HeaderName::Supported
                | HeaderName::Require
                | HeaderName::ProxyRequire
                | HeaderName::Unsupported
                | HeaderName::ContentEncoding
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_long_form_round_trips_in_any_case() {
        for n in [
            HeaderName::Via,
            HeaderName::From,
            HeaderName::To,
            HeaderName::CallId,
            HeaderName::CSeq,
            HeaderName::MaxForwards,
            HeaderName::Contact,
            HeaderName::Expires,
            HeaderName::MinExpires,
            HeaderName::Route,
            HeaderName::RecordRoute,
            HeaderName::Path,
            HeaderName::ContentLength,
            HeaderName::ContentType,
            HeaderName::ContentEncoding,
            HeaderName::Event,
            HeaderName::AllowEvents,
            HeaderName::Accept,
            HeaderName::Allow,
            HeaderName::Supported,
            HeaderName::Require,
            HeaderName::ProxyRequire,
            HeaderName::Unsupported,
            HeaderName::Authorization,
            HeaderName::ProxyAuthorization,
            HeaderName::WwwAuthenticate,
            HeaderName::ProxyAuthenticate,
            HeaderName::UserAgent,
            HeaderName::Server,
            HeaderName::Subject,
            HeaderName::ReferTo,
            HeaderName::ReferredBy,
            HeaderName::SessionExpires,
            HeaderName::Identity,
            HeaderName::SubscriptionState,
            HeaderName::Date,
        ] {
            assert_eq!(HeaderName::from_wire(n.as_str()), n, "{}", n.as_str());
            assert_eq!(HeaderName::from_wire(&n.as_str().to_ascii_uppercase()), n);
            assert_eq!(HeaderName::from_wire(&n.as_str().to_ascii_lowercase()), n);
        }
    }

    #[test]
    fn compact_forms() {
        let pairs = [
            ("i", HeaderName::CallId),
            ("F", HeaderName::From),
            ("t", HeaderName::To),
            ("v", HeaderName::Via),
            ("m", HeaderName::Contact),
            ("l", HeaderName::ContentLength),
            ("c", HeaderName::ContentType),
            ("k", HeaderName::Supported),
            ("s", HeaderName::Subject),
            ("e", HeaderName::ContentEncoding),
            ("o", HeaderName::Event),
            ("u", HeaderName::AllowEvents),
            ("r", HeaderName::ReferTo),
            ("b", HeaderName::ReferredBy),
            ("x", HeaderName::SessionExpires),
            ("y", HeaderName::Identity),
            ("z", HeaderName::Other),
        ];
        for (w, n) in pairs {
            assert_eq!(HeaderName::from_wire(w), n, "{w}");
        }
    }

    #[test]
    fn lowercase_forms_match_the_canonical_ones() {
        for n in LONG_FORMS.iter().filter(|n| **n != Other) {
            assert_eq!(n.lowercase(), n.as_str().to_ascii_lowercase());
        }
        // Near misses differ only by a non-letter that OR 0x20 could confuse.
        assert_eq!(HeaderName::from_wire("Call\rID"), HeaderName::Other);
        assert_eq!(HeaderName::from_wire("Max-ForwardX"), HeaderName::Other);
        assert_eq!(
            HeaderName::from_wire("PROXY-AUTHORIZATION"),
            HeaderName::ProxyAuthorization
        );
        assert_eq!(HeaderName::from_wire("Call_ID"), HeaderName::Other);
    }

    #[test]
    fn word_compare_sees_every_byte() {
        for n in LONG_FORMS.iter().filter(|n| **n != Other) {
            let lower = n.lowercase().as_bytes();
            assert!(eq_folded(lower, n.as_str().as_bytes()));
            assert!(eq_folded(lower, n.as_str().to_ascii_uppercase().as_bytes()));
            for i in 0..lower.len() {
                let mut b = lower.to_vec();
                b[i] = if b[i] == b'q' { b'z' } else { b'q' };
                assert!(!eq_folded(lower, &b), "{} at {i}", n.as_str());
            }
            assert!(!eq_folded(lower, &lower[1..]));
        }
    }

    #[test]
    fn unknown_names_are_other() {
        assert_eq!(HeaderName::from_wire("X-Custom"), HeaderName::Other);
        assert_eq!(HeaderName::from_wire(""), HeaderName::Other);
        assert_eq!(HeaderName::from_wire("Vias"), HeaderName::Other);
    }
}
