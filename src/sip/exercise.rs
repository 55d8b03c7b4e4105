//! One function that drives every parser entry point on arbitrary bytes.
//! The cargo-fuzz target, the property tests and the fuzz regression tests
//! all call it, so they cannot drift apart.

use super::{parse_with, scan, HeaderName, Limits, Uri};

/// Parses `bytes` and reads every typed header, discarding the results.
/// Must never panic, loop or read out of bounds, whatever the input.
#[doc(hidden)]
pub fn fuzz_entry(bytes: &[u8]) {
    let limits = Limits {
        max_datagram: 65535,
        max_headers: 256,
    };
    let Ok(m) = parse_with(bytes, &limits) else {
        return;
    };
    let _ = m.validate();
    if let Some(Ok(u)) = m.request_uri() {
        let _ = (u.params().count(), u.transport(), u.headers());
        if let Some(user) = u.user {
            let _ = scan::unescape(user);
        }
    }
    for v in m.vias().flatten() {
        let _ = (v.branch(), v.received(), v.rport(), v.params().len());
    }
    for na in [m.from(), m.to()].into_iter().flatten() {
        let _ = (na.tag(), na.uri(), na.params().len());
    }
    let _ = (m.call_id(), m.cseq(), m.max_forwards(), m.expires());
    for c in m.contacts().flatten() {
        let _ = (c.expires(), c.q(), c.instance(), c.reg_id());
        if let Some(a) = c.addr() {
            let _ = a.uri();
        }
    }
    for r in m
        .routes()
        .chain(m.record_routes())
        .chain(m.paths())
        .flatten()
    {
        let _ = r.uri().is_loose_router();
    }
    let _ = (m.content_length(), m.content_type(), m.user_agent());
    if let Ok(Some(e)) = m.event() {
        let _ = e.id();
    }
    for a in m.accept().flatten() {
        let _ = a.is("application", "sdp");
    }
    for name in [
        HeaderName::Supported,
        HeaderName::Require,
        HeaderName::AllowEvents,
    ] {
        let _ = m.tokens(name).count();
    }
    for auth in [
        m.authorization(),
        m.www_authenticate(),
        m.proxy_authorization(),
        m.proxy_authenticate(),
    ]
    .into_iter()
    .flatten()
    .flatten()
    {
        let _ = (auth.get("nonce"), auth.get("response"), auth.iter().count());
    }
    for h in m.headers() {
        let _ = Uri::parse(h.value);
        let _ = scan::unescape(h.value);
    }
}
