//! RFC 8599 push parameters, and the wake-up tether POSTs to a push
//! gateway for a held call.
//!
//! A device that can be woken registers a Contact URI carrying
//! `pn-provider` (which push service), `pn-prid` (its address at that
//! service) and, when the service needs it, `pn-param` (e.g. the APNs
//! topic). tether does not speak to the push services itself: it POSTs a
//! JSON body to the gateway configured for the provider (`[push.gateways]`),
//! which holds the service credentials.

use serde::Serialize;

use crate::sip::scan::unescape;
use crate::sip::Uri;

/// A device's push address (RFC 8599 §4.1), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushParams {
    /// `pn-provider`, e.g. `apns`, `fcm`, `webpush`.
    pub provider: String,
    /// `pn-prid`: the device's registration at the push service.
    pub prid: String,
    /// `pn-param`, when the service needs one (the APNs topic, the FCM project).
    pub param: Option<String>,
}

/// The longest decoded value kept; a real PRID is a few hundred bytes at
/// most (a web push subscription URL with its keys).
const MAX_VALUE: usize = 2048;

impl PushParams {
    /// The push parameters of a Contact URI as the registrar stores it
    /// (`sip:bob@192.0.2.4:5060;pn-provider=apns;pn-prid=…`, angle
    /// brackets tolerated). Parameter names match without regard to case
    /// and values are percent-decoded. `None` when the URI does not parse,
    /// lacks a non-empty `pn-provider` or `pn-prid` (a Contact with the
    /// provider alone is a capability query, §5.2, not a push address), or
    /// a value does not decode to UTF-8 of at most 2048 bytes.
    pub fn from_contact(contact: &str) -> Option<PushParams> {
        let s = contact.trim();
        let s = match s.find('<') {
            Some(open) => {
                let inner = &s[open + 1..];
                &inner[..inner.find('>')?]
            }
            None => s,
        };
        let uri = Uri::parse(s).ok()?;
        let provider = decoded(uri.param("pn-provider")??)?;
        let prid = decoded(uri.param("pn-prid")??)?;
        if provider.is_empty() || prid.is_empty() {
            return None;
        }
        let param = match uri.param("pn-param") {
            None | Some(None) => None,
            Some(Some(v)) => Some(decoded(v)?).filter(|v| !v.is_empty()),
        };
        Some(PushParams {
            provider,
            prid,
            param,
        })
    }
}

/// `uri` (a stored Contact URI) without its RFC 8599 `pn-*` parameters, or
/// `None` when it has none. They address the device at its push service
/// and are for the proxy alone: a request forwarded to the device does not
/// carry them (RFC 8599 §5.6 has the proxy act on them, not pass them on).
pub fn without_push_params(uri: &str) -> Option<String> {
    // The user part may hold ';' (RFC 3261 user-unreserved): parameters
    // start after the host, and end where the headers ('?') begin.
    let host_at = uri.find('@').map_or(0, |i| i + 1);
    let params_at = host_at + uri[host_at..].find(';')?;
    let end = uri[params_at..]
        .find('?')
        .map_or(uri.len(), |i| params_at + i);
    let is_pn = |p: &str| p.len() >= 3 && p.as_bytes()[..3].eq_ignore_ascii_case(b"pn-");
    if !uri[params_at + 1..end].split(';').any(is_pn) {
        return None;
    }
    let mut out = String::with_capacity(uri.len());
    out.push_str(&uri[..params_at]);
    for p in uri[params_at + 1..end].split(';').filter(|p| !is_pn(p)) {
        out.push(';');
        out.push_str(p);
    }
    out.push_str(&uri[end..]);
    Some(out)
}

/// A parameter value, percent-decoded, as bounded UTF-8.
fn decoded(raw: &str) -> Option<String> {
    if raw.len() > 3 * MAX_VALUE {
        return None;
    }
    let bytes = unescape(raw)?;
    if bytes.len() > MAX_VALUE {
        return None;
    }
    String::from_utf8(bytes.into_owned()).ok()
}

/// The JSON body POSTed to a push gateway for one held call. The gateway
/// pushes to `pn_provider`/`pn_prid`/`pn_param` and passes `bridge_uri`
/// (or `token`) to the app, which calls the bridge URI to take the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushBody<'a> {
    pub pn_provider: &'a str,
    pub pn_prid: &'a str,
    /// `null` when the device sent no `pn-param`.
    pub pn_param: Option<&'a str>,
    /// The AOR called, e.g. `bob@example.com`.
    pub aor: &'a str,
    /// The held INVITE's Call-ID.
    pub call_id: &'a str,
    /// The caller, as the INVITE's From header value.
    pub from: &'a str,
    /// `sip:<prefix><token>@<host>`.
    pub bridge_uri: &'a str,
    /// The token alone, for apps that build the URI themselves.
    pub token: &'a str,
    /// How long the call stays held after this POST (ms): a push delivered
    /// later is useless, and the gateway may give the push service this
    /// as the message's time to live.
    pub expires_ms: u64,
}

impl<'a> PushBody<'a> {
    /// The body for `params`' device; the rest comes from the held call.
    pub fn new(
        params: &'a PushParams,
        aor: &'a str,
        call_id: &'a str,
        from: &'a str,
        bridge_uri: &'a str,
        token: &'a str,
        expires_ms: u64,
    ) -> PushBody<'a> {
        PushBody {
            pn_provider: &params.provider,
            pn_prid: &params.prid,
            pn_param: params.param.as_deref(),
            aor,
            call_id,
            from,
            bridge_uri,
            token,
            expires_ms,
        }
    }

    /// The JSON bytes to POST.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a struct of strings and a number always serializes")
    }

    /// The callout for the runtime's HTTP side threads: one POST of this
    /// body to `url`, answered to `core` under `id` within `timeout_ms`.
    pub fn callout(&self, url: &str, core: u16, id: u64, timeout_ms: u64) -> crate::hooks::Request {
        crate::hooks::Request {
            url: url.into(),
            body: self.to_json(),
            kind: crate::hooks::Kind::Callout {
                core,
                purpose: crate::hooks::Purpose::Push,
                id,
                timeout_ms,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn push_parameters_are_stripped_from_a_forwarded_uri() {
        let strip = without_push_params;
        assert_eq!(
            strip("sip:bob@192.0.2.4:5060;transport=udp;PN-provider=apns;pn-prid=a%3Bb;ob")
                .as_deref(),
            Some("sip:bob@192.0.2.4:5060;transport=udp;ob")
        );
        assert_eq!(
            strip("sip:bob;x@h;pn-prid=1?subject=pn-x").as_deref(),
            Some("sip:bob;x@h?subject=pn-x")
        );
        assert_eq!(strip("sip:pn-user;pn-x@h;transport=udp"), None);
        assert_eq!(strip("sip:bob@h"), None);
        assert_eq!(strip("sip:h;pn-provider=x").as_deref(), Some("sip:h"));
        assert_eq!(strip("garbage;;pn-"), Some("garbage;".into()));
    }

    fn pp(provider: &str, prid: &str, param: Option<&str>) -> PushParams {
        PushParams {
            provider: provider.into(),
            prid: prid.into(),
            param: param.map(Into::into),
        }
    }

    #[test]
    fn rfc_8599_example_contact() {
        // RFC 8599 §4.1.1's form, as the registrar stores it.
        let c = "sip:alice@alicemobile.example.com;pn-provider=acme;pn-param=acme-param;pn-prid=ZTY4ZDJlMzODE1NmUgKi0K";
        assert_eq!(
            PushParams::from_contact(c),
            Some(pp("acme", "ZTY4ZDJlMzODE1NmUgKi0K", Some("acme-param")))
        );
        let bracketed = format!("\"Alice\" <{c}>;expires=3600");
        assert_eq!(
            PushParams::from_contact(&bracketed),
            PushParams::from_contact(c)
        );
    }

    #[test]
    fn names_ignore_case_and_values_are_decoded() {
        let c = "sip:bob@192.0.2.4:5062;transport=udp;PN-Provider=apns;Pn-PRID=00fc13adff78;pn-param=DEF123GHIJ.com.example.voip%2Bvoip";
        assert_eq!(
            PushParams::from_contact(c),
            Some(pp(
                "apns",
                "00fc13adff78",
                Some("DEF123GHIJ.com.example.voip+voip")
            ))
        );
        // An FCM token with escaped ':' and a web push URL.
        let c = "sip:bob@192.0.2.4;pn-provider=webpush;pn-prid=https%3A%2F%2Fpush.example%2Fsub%2Fa%3Ab";
        let p = PushParams::from_contact(c).unwrap();
        assert_eq!(p.prid, "https://push.example/sub/a:b");
        assert_eq!(p.param, None);
    }

    #[test]
    fn incomplete_or_bad_parameters_mean_no_push() {
        for c in [
            "sip:bob@192.0.2.4:5060",
            "sip:bob@192.0.2.4;pn-provider=apns",
            "sip:bob@192.0.2.4;pn-prid=abc",
            "sip:bob@192.0.2.4;pn-provider;pn-prid=abc",
            "sip:bob@192.0.2.4;pn-provider=;pn-prid=abc",
            "sip:bob@192.0.2.4;pn-provider=apns;pn-prid",
            "sip:bob@192.0.2.4;pn-provider=apns;pn-prid=%FF%FE",
            "sip:bob@192.0.2.4;pn-provider=apns;pn-prid=%2",
            "<sip:bob@192.0.2.4;pn-provider=apns;pn-prid=abc",
            "not a uri",
            "",
        ] {
            assert_eq!(PushParams::from_contact(c), None, "{c}");
        }
        // The parameters must be URI parameters, not Contact header ones.
        assert_eq!(
            PushParams::from_contact("<sip:bob@192.0.2.4>;pn-provider=apns;pn-prid=abc"),
            None
        );
        let long = format!(
            "sip:bob@192.0.2.4;pn-provider=apns;pn-prid={}",
            "a".repeat(MAX_VALUE + 1)
        );
        assert_eq!(PushParams::from_contact(&long), None);
        // A pn-param without a value is no pn-param.
        assert_eq!(
            PushParams::from_contact("sip:b@h;pn-provider=fcm;pn-prid=x;pn-param"),
            Some(pp("fcm", "x", None))
        );
    }

    #[test]
    fn body_has_the_gateway_fields() {
        let p = pp("apns", "00fc", Some("topic.voip"));
        let body = PushBody::new(
            &p,
            "bob@example.com",
            "c1@host",
            "\"Alice\" <sip:alice@example.com>;tag=1",
            "sip:bridge-TOKEN@203.0.113.1:5060",
            "TOKEN",
            29_500,
        );
        let v: serde_json::Value = serde_json::from_slice(&body.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "pn_provider": "apns",
                "pn_prid": "00fc",
                "pn_param": "topic.voip",
                "aor": "bob@example.com",
                "call_id": "c1@host",
                "from": "\"Alice\" <sip:alice@example.com>;tag=1",
                "bridge_uri": "sip:bridge-TOKEN@203.0.113.1:5060",
                "token": "TOKEN",
                "expires_ms": 29500,
            })
        );
        let no_param = pp("fcm", "x", None);
        let body = PushBody::new(&no_param, "a", "c", "f", "u", "t", 1);
        let v: serde_json::Value = serde_json::from_slice(&body.to_json()).unwrap();
        assert!(v["pn_param"].is_null());
        let r = body.callout("http://127.0.0.1:9000/push", 2, 77, 5000);
        assert_eq!(&*r.url, "http://127.0.0.1:9000/push");
        assert_eq!(
            r.kind,
            crate::hooks::Kind::Callout {
                core: 2,
                purpose: crate::hooks::Purpose::Push,
                id: 77,
                timeout_ms: 5000
            }
        );
    }

    #[test]
    fn decoded_control_characters_stay_escaped_in_json() {
        let p = PushParams::from_contact("sip:b@h;pn-provider=x;pn-prid=a%0D%0A%22b").unwrap();
        assert_eq!(p.prid, "a\r\n\"b");
        let json = PushBody::new(&p, "a", "c", "f", "u", "t", 1).to_json();
        assert!(!json.contains(&b'\r') && !json.contains(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["pn_prid"], "a\r\n\"b");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn garbage_never_panics(s in ".{0,300}") {
            let _ = PushParams::from_contact(&s);
            // Stripping never leaves a pn-* parameter behind either.
            if let Some(out) = without_push_params(&s) {
                prop_assert!(without_push_params(&out).is_none(), "{out}");
            }
        }

        #[test]
        fn uri_shaped_garbage_never_panics(
            params in proptest::collection::vec(
                ("(?i)pn-(provider|prid|param)|[a-z]{1,5}", "[A-Za-z0-9%;=<>\"._-]{0,20}"),
                0..6,
            ),
        ) {
            let mut c = String::from("sip:bob@192.0.2.4:5060");
            for (n, v) in &params {
                c.push(';');
                c.push_str(n);
                c.push('=');
                c.push_str(v);
            }
            if let Some(p) = PushParams::from_contact(&c) {
                prop_assert!(!p.provider.is_empty() && !p.prid.is_empty());
                let body = PushBody::new(&p, "a", "c", "f", "u", "t", 1).to_json();
                prop_assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
            }
        }
    }
}
