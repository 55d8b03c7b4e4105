//! One function that drives every parser entry point on arbitrary bytes.
//! The cargo-fuzz target, the property tests and the fuzz regression tests
//! all call it, so they cannot drift apart.

use super::{parse_with, scan, HeaderName, Limits, Message, Uri};

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

/// Reads every typed header tether offers (a registrar's and a proxy's
/// reads), each result through `black_box`; headers the message lacks cost a
/// lookup. The codec benchmark and `examples/codec_cost.rs` both measure it.
#[doc(hidden)]
pub fn read_typed(m: &Message<'_>) {
    use std::hint::black_box;
    if let Some(ruri) = m.request_uri() {
        let u = ruri.unwrap();
        black_box((u.user, u.host, u.port));
    }
    let via = m.top_via().unwrap();
    black_box((
        via.branch(),
        via.received(),
        via.rport(),
        via.host,
        via.port,
    ));
    for v in m.vias() {
        black_box(v.unwrap());
    }
    for na in [m.from().unwrap(), m.to().unwrap()] {
        let u = na.uri();
        black_box((na.tag(), u.user, u.host, u.port));
    }
    black_box(m.call_id().unwrap());
    black_box(m.cseq().unwrap());
    black_box(m.max_forwards().unwrap());
    for c in m.contacts() {
        let c = c.unwrap();
        let u = c.addr().unwrap().uri();
        black_box((u.user, u.host, u.port));
        black_box((
            c.expires().unwrap(),
            c.q().unwrap(),
            c.instance(),
            c.reg_id().unwrap(),
        ));
    }
    black_box(m.expires().unwrap());
    for r in m.routes().chain(m.record_routes()).chain(m.paths()) {
        let u = r.unwrap().uri();
        black_box((u.host, u.is_loose_router()));
    }
    black_box(m.content_length());
    black_box(m.content_type().unwrap());
    black_box(m.event().unwrap());
    for a in m.accept() {
        black_box(a.unwrap());
    }
    for t in m
        .tokens(HeaderName::Supported)
        .chain(m.tokens(HeaderName::Require))
    {
        black_box(t.unwrap());
    }
    if let Some(auth) = m.authorization().unwrap() {
        for p in [
            "username",
            "realm",
            "nonce",
            "uri",
            "response",
            "algorithm",
            "qop",
            "nc",
            "cnonce",
        ] {
            black_box(auth.get(p));
        }
    }
    if let Some(www) = m.www_authenticate().unwrap() {
        black_box((www.get("realm"), www.get("nonce")));
    }
    black_box(m.user_agent());
}
