//! Rewriting messages on their way through the proxy (RFC 3261 §16.6,
//! §16.7): a request gets our Via on top, a decremented Max-Forwards, our
//! Record-Route, its Route set adjusted and maybe a new Request-URI; a
//! response loses our Via. Every other header and the body pass unchanged,
//! in their order. CANCEL and hop-by-hop ACK are built from the request a
//! branch sent.

use std::net::SocketAddr;

use crate::sip::scan::{find_top_level, CommaList};
use crate::sip::writer::{push_u32, Writer};
use crate::sip::{HeaderName, Message, Method, StartLine};

/// How a request is rewritten for one branch.
#[derive(Debug, Clone, Copy)]
pub struct Rewrite<'x> {
    /// The new Request-URI (`None` keeps it).
    pub uri: Option<&'x str>,
    /// Our Via: `SIP/2.0/UDP <sent_by>;branch=<branch>;rport`.
    pub sent_by: &'x str,
    pub branch: &'x str,
    /// Our Record-Route URI, for dialog-creating requests.
    pub record_route: Option<&'x str>,
    /// Route values to drop from the top (ours).
    pub pop_routes: usize,
    /// Route values to put on top, in order (a binding's Path).
    pub push_routes: &'x str,
    /// Drop Proxy-Authorization: the credentials were for us.
    pub strip_proxy_auth: bool,
    /// Where the request came from: stamped on the sender's Via as
    /// `received` and, when it asked, `rport` (RFC 3261 §18.2.1, RFC 3581).
    pub source: Option<SocketAddr>,
    /// A new body (anchored SDP); `None` keeps the request's.
    pub body: Option<&'x [u8]>,
}

/// Writes `msg` rewritten per `r` into `out`.
pub fn request(out: &mut Vec<u8>, msg: &Message<'_>, r: &Rewrite<'_>) {
    let StartLine::Request { method, uri } = msg.start else {
        return;
    };
    let mut w = Writer::request(out, method, r.uri.unwrap_or(uri));
    w.header_parts(
        "Via",
        &["SIP/2.0/UDP ", r.sent_by, ";branch=", r.branch, ";rport"],
    );
    if let Some(rr) = r.record_route {
        w.header_parts("Record-Route", &["<", rr, ">"]);
    }
    if !r.push_routes.is_empty() {
        w.header(HeaderName::Route, r.push_routes);
    }
    let mut routes_written = false;
    let mut max_forwards = false;
    let mut stamped = r.source.is_none();
    for h in msg.headers() {
        match h.name {
            HeaderName::ContentLength => {}
            HeaderName::Via if !stamped => {
                stamped = true;
                let mut v = String::with_capacity(h.value.len() + 40);
                stamp_via(&mut v, h.value, r.source);
                w.header_named(h.raw_name, &v);
            }
            HeaderName::ProxyAuthorization if r.strip_proxy_auth => {}
            HeaderName::MaxForwards => {
                max_forwards = true;
                let n = h.value.trim().parse::<u32>().unwrap_or(70).clamp(1, 255);
                w.header_u32(HeaderName::MaxForwards, n - 1);
            }
            HeaderName::Route => {
                if routes_written {
                    continue;
                }
                routes_written = true;
                for v in msg
                    .list(HeaderName::Route)
                    .filter_map(Result::ok)
                    .skip(r.pop_routes)
                {
                    w.header(HeaderName::Route, v);
                }
            }
            _ => {
                w.header_named(h.raw_name, h.value);
            }
        }
    }
    if !max_forwards {
        w.header_u32(HeaderName::MaxForwards, 69);
    }
    finish(w, r.body.unwrap_or(msg.body));
}

/// `value` (a Via line) with its first element stamped: `received=<ip>`
/// and `rport=<port>` in place of a bare `rport`.
fn stamp_via(out: &mut String, value: &str, source: Option<SocketAddr>) {
    let Some(src) = source else {
        out.push_str(value);
        return;
    };
    let end = find_top_level(value, b',')
        .ok()
        .flatten()
        .unwrap_or(value.len());
    let (first, rest) = value.split_at(end);
    let mut asked_rport = false;
    let mut parts = first.split(';');
    out.push_str(parts.next().unwrap_or("").trim_end());
    for p in parts {
        let name = p.split('=').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("rport") {
            asked_rport = true;
        } else if !name.eq_ignore_ascii_case("received") {
            out.push(';');
            out.push_str(p.trim());
        }
    }
    out.push_str(";received=");
    out.push_str(&src.ip().to_string());
    if asked_rport {
        out.push_str(";rport=");
        out.push_str(&src.port().to_string());
    }
    out.push_str(rest);
}

/// Writes response `msg` without its top Via value (ours) into `out`.
pub fn response(out: &mut Vec<u8>, msg: &Message<'_>) {
    response_with(out, msg, None)
}

/// [`response`] with a new body (anchored SDP) when `body` is given.
pub fn response_with(out: &mut Vec<u8>, msg: &Message<'_>, body: Option<&[u8]>) {
    let StartLine::Response { code, reason } = msg.start else {
        return;
    };
    let mut w = Writer::response(out, code, reason);
    let mut stripped = false;
    for h in msg.headers() {
        match h.name {
            HeaderName::ContentLength => {}
            HeaderName::Via if !stripped => {
                stripped = true;
                // The first value of the first Via line is ours.
                if let Ok(Some(comma)) = find_top_level(h.value, b',') {
                    let rest = h.value[comma + 1..].trim();
                    if !rest.is_empty() {
                        w.header_named(h.raw_name, rest);
                    }
                }
            }
            _ => {
                w.header_named(h.raw_name, h.value);
            }
        }
    }
    finish(w, body.unwrap_or(msg.body));
}

fn finish(w: Writer<'_>, body: &[u8]) {
    let out = w.into_buf();
    out.extend_from_slice(b"Content-Length: ");
    push_u32(out, u32::try_from(body.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body);
}

/// A CANCEL for the request `sent` (as a branch sent it): same
/// Request-URI, top Via, Route set, From, To, Call-ID and CSeq number
/// (RFC 3261 §9.1).
pub fn cancel(out: &mut Vec<u8>, sent: &Message<'_>) {
    hop_request(out, sent, Method::Cancel, None);
}

/// The ACK for a non-2xx final `resp` to the INVITE `sent` (RFC 3261
/// §17.1.1.3): like the CANCEL, but To comes from the response (its tag).
pub fn ack(out: &mut Vec<u8>, sent: &Message<'_>, resp: &Message<'_>) {
    hop_request(out, sent, Method::Ack, resp.header(HeaderName::To));
}

fn hop_request(out: &mut Vec<u8>, sent: &Message<'_>, method: Method<'_>, to: Option<&str>) {
    let StartLine::Request { uri, .. } = sent.start else {
        return;
    };
    let mut w = Writer::request(out, method, uri);
    if let Some(Ok(via)) = sent.list(HeaderName::Via).next() {
        w.header(HeaderName::Via, via);
    }
    for r in sent.list(HeaderName::Route).filter_map(Result::ok) {
        w.header(HeaderName::Route, r);
    }
    w.header_u32(HeaderName::MaxForwards, 70);
    for (name, value) in [
        (HeaderName::From, sent.header(HeaderName::From)),
        (HeaderName::To, to.or(sent.header(HeaderName::To))),
        (HeaderName::CallId, sent.header(HeaderName::CallId)),
    ] {
        if let Some(v) = value {
            w.header(name, v);
        }
    }
    let seq = sent.cseq().map(|c| c.seq).unwrap_or(1);
    w.header_parts(
        "CSeq",
        &[
            crate::sip::writer::Decimal::new(seq).as_str(),
            " ",
            method.as_str(),
        ],
    );
    w.finish(None);
}

/// The Route values of `msg`, in order (malformed ones skipped: the
/// message passed `validate`, which checked them).
pub fn routes<'a, 'm>(msg: &'m Message<'a>) -> impl Iterator<Item = &'a str> + 'm {
    msg.list(HeaderName::Route).filter_map(Result::ok)
}

/// The Record-Route values of `msg`, in order.
pub fn record_routes<'a, 'm>(msg: &'m Message<'a>) -> impl Iterator<Item = &'a str> + 'm {
    msg.list(HeaderName::RecordRoute).filter_map(Result::ok)
}

/// The URI inside a name-addr value (`<sip:x;lr>` → `sip:x;lr`).
pub fn uri_of(v: &str) -> &str {
    match (v.find('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v.split(';').next().unwrap_or(v).trim(),
    }
}

/// Elements of a comma list (for a Path joined with ", ").
pub fn elements(s: &str) -> impl Iterator<Item = &str> {
    CommaList::new(s).filter_map(Result::ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::parse;

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa;rport\r\n\
Route: <sip:proxy.example.com;lr>, <sip:next.example.net;lr>\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: c1\r\n\
CSeq: 7 INVITE\r\n\
X-Custom: kept\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n";

    #[test]
    fn a_forwarded_request_gets_our_via_rr_and_one_hop_less() {
        let msg = parse(INVITE).unwrap();
        let mut out = Vec::new();
        request(
            &mut out,
            &msg,
            &Rewrite {
                uri: Some("sip:bob@198.51.100.7:5070"),
                sent_by: "203.0.113.1:5060",
                branch: "z9hG4bKx",
                record_route: Some("sip:tok@203.0.113.1:5060;lr"),
                pop_routes: 1,
                push_routes: "<sip:edge.example.org;lr>",
                strip_proxy_auth: false,
                source: Some("198.51.100.9:4000".parse().unwrap()),
                body: None,
            },
        );
        let f = parse(&out).unwrap();
        f.validate().unwrap();
        assert_eq!(f.request_uri_raw(), Some("sip:bob@198.51.100.7:5070"));
        let vias: Vec<_> = f.vias().map(|v| v.unwrap().sent_by).collect();
        assert_eq!(vias, ["203.0.113.1:5060", "192.0.2.1:5060"]);
        let sender = f.vias().nth(1).unwrap().unwrap();
        assert_eq!(sender.received(), Some("198.51.100.9"));
        assert_eq!(sender.branch(), Some("z9hG4bKa"));
        assert_eq!(f.max_forwards().unwrap(), Some(69));
        let routes: Vec<_> = routes(&f).collect();
        assert_eq!(
            routes,
            ["<sip:edge.example.org;lr>", "<sip:next.example.net;lr>"]
        );
        assert_eq!(
            record_routes(&f).next(),
            Some("<sip:tok@203.0.113.1:5060;lr>")
        );
        assert_eq!(f.header_by_name("X-Custom"), Some("kept"));
        assert_eq!(f.body, b"v=0\n");
    }

    #[test]
    fn a_response_loses_only_our_via() {
        let resp = b"SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/UDP 203.0.113.1:5060;branch=z9hG4bKx, SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa\r\n\
From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>;tag=2\r\n\
Call-ID: c1\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n";
        let msg = parse(resp).unwrap();
        let mut out = Vec::new();
        response(&mut out, &msg);
        let f = parse(&out).unwrap();
        let vias: Vec<_> = f.vias().map(|v| v.unwrap().sent_by).collect();
        assert_eq!(vias, ["192.0.2.1:5060"]);
        // On separate lines too.
        let resp2 =
            String::from_utf8_lossy(resp).replace(", SIP/2.0/UDP 192", "\r\nVia: SIP/2.0/UDP 192");
        let msg = parse(resp2.as_bytes()).unwrap();
        response(&mut out, &msg);
        let f = parse(&out).unwrap();
        let vias: Vec<_> = f.vias().map(|v| v.unwrap().sent_by).collect();
        assert_eq!(vias, ["192.0.2.1:5060"]);
    }

    #[test]
    fn cancel_and_ack_copy_the_branch_request() {
        let msg = parse(INVITE).unwrap();
        let mut out = Vec::new();
        cancel(&mut out, &msg);
        let c = parse(&out).unwrap();
        c.validate().unwrap();
        assert_eq!(c.method(), Some(Method::Cancel));
        assert_eq!(c.cseq().unwrap().seq, 7);
        assert_eq!(c.top_via().unwrap().branch(), Some("z9hG4bKa"));
        assert_eq!(routes(&c).count(), 2);
        let resp = parse(
            b"SIP/2.0 486 Busy\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa\r\n\
From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>;tag=9\r\n\
Call-ID: c1\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        ack(&mut out, &msg, &resp);
        let a = parse(&out).unwrap();
        a.validate().unwrap();
        assert_eq!(a.to().unwrap().tag(), Some("9"));
        assert_eq!(a.cseq().unwrap().method, Method::Ack);
    }
}
