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
        let b = name.as_bytes();
        if b.len() == 1 {
            return match b[0].to_ascii_lowercase() {
                b'i' => HeaderName::CallId,
                b'f' => HeaderName::From,
                b't' => HeaderName::To,
                b'v' => HeaderName::Via,
                b'm' => HeaderName::Contact,
                b'l' => HeaderName::ContentLength,
                b'c' => HeaderName::ContentType,
                b'k' => HeaderName::Supported,
                b's' => HeaderName::Subject,
                b'e' => HeaderName::ContentEncoding,
                b'o' => HeaderName::Event,
                b'u' => HeaderName::AllowEvents,
                b'r' => HeaderName::ReferTo,
                b'b' => HeaderName::ReferredBy,
                b'x' => HeaderName::SessionExpires,
                b'y' => HeaderName::Identity,
                _ => HeaderName::Other,
            };
        }
        // Dispatch on length first so that most names compare against one or two candidates.
        let candidates: &[HeaderName] = match b.len() {
            2 => &[HeaderName::To],
            3 => &[HeaderName::Via],
            4 => &[
                HeaderName::From,
                HeaderName::CSeq,
                HeaderName::Path,
                HeaderName::Date,
            ],
            5 => &[HeaderName::Route, HeaderName::Event, HeaderName::Allow],
            6 => &[HeaderName::Accept, HeaderName::Server],
            7 => &[
                HeaderName::CallId,
                HeaderName::Contact,
                HeaderName::Expires,
                HeaderName::Require,
                HeaderName::Subject,
            ],
            8 => &[HeaderName::ReferTo, HeaderName::Identity],
            9 => &[HeaderName::Supported],
            10 => &[HeaderName::UserAgent],
            11 => &[
                HeaderName::MinExpires,
                HeaderName::ReferredBy,
                HeaderName::Unsupported,
            ],
            12 => &[
                HeaderName::MaxForwards,
                HeaderName::RecordRoute,
                HeaderName::ContentType,
                HeaderName::AllowEvents,
            ],
            13 => &[HeaderName::ProxyRequire, HeaderName::Authorization],
            14..=18 => &[
                HeaderName::ContentLength,
                HeaderName::ContentEncoding,
                HeaderName::WwwAuthenticate,
                HeaderName::ProxyAuthenticate,
                HeaderName::SessionExpires,
                HeaderName::SubscriptionState,
            ],
            19 => &[HeaderName::ProxyAuthorization],
            _ => &[],
        };
        for &c in candidates {
            if c.as_str().eq_ignore_ascii_case(name) {
                return c;
            }
        }
        HeaderName::Other
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
