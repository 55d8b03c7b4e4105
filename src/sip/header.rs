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

impl HeaderName {
    /// Resolves a header name as it appears on the wire (any case, compact or long form).
    pub fn from_wire(name: &str) -> HeaderName {
        HeaderName::from_wire_bytes(name.as_bytes())
    }

    /// As [`HeaderName::from_wire`], on bytes. Length, first and last letter
    /// pick at most one candidate; one case-insensitive compare confirms it.
    pub fn from_wire_bytes(b: &[u8]) -> HeaderName {
        use HeaderName::*;
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
        let candidate = match (b.len(), f, l) {
            (2, b't', b'o') => To,
            (3, b'v', b'a') => Via,
            (4, b'f', b'm') => From,
            (4, b'c', b'q') => CSeq,
            (4, b'p', b'h') => Path,
            (4, b'd', b'e') => Date,
            (5, b'r', b'e') => Route,
            (5, b'e', b't') => Event,
            (5, b'a', b'w') => Allow,
            (6, b'a', b't') => Accept,
            (6, b's', b'r') => Server,
            (7, b'c', b'd') => CallId,
            (7, b'c', b't') => Contact,
            (7, b'e', b's') => Expires,
            (7, b'r', b'e') => Require,
            (7, b's', b't') => Subject,
            (8, b'r', b'o') => ReferTo,
            (8, b'i', b'y') => Identity,
            (9, b's', b'd') => Supported,
            (10, b'u', b't') => UserAgent,
            (11, b'm', b's') => MinExpires,
            (11, b'r', b'y') => ReferredBy,
            (11, b'u', b'd') => Unsupported,
            (12, b'm', b's') => MaxForwards,
            (12, b'r', b'e') => RecordRoute,
            (12, b'c', b'e') => ContentType,
            (12, b'a', b's') => AllowEvents,
            (13, b'p', b'e') => ProxyRequire,
            (13, b'a', b'n') => Authorization,
            (14, b'c', b'h') => ContentLength,
            (15, b's', b's') => SessionExpires,
            (16, b'c', b'g') => ContentEncoding,
            (16, b'w', b'e') => WwwAuthenticate,
            (18, b'p', b'e') => ProxyAuthenticate,
            (18, b's', b'e') => SubscriptionState,
            (19, b'p', b'n') => ProxyAuthorization,
            _ => return Other,
        };
        if candidate.as_str().as_bytes().eq_ignore_ascii_case(b) {
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
    fn unknown_names_are_other() {
        assert_eq!(HeaderName::from_wire("X-Custom"), HeaderName::Other);
        assert_eq!(HeaderName::from_wire(""), HeaderName::Other);
        assert_eq!(HeaderName::from_wire("Vias"), HeaderName::Other);
    }
}
