//! The SIP of a call: the caller's INVITE, CANCEL, ACK and BYE, the
//! callee's answers, and the Call-ID both ends find the call by. ACKs and
//! in-dialog requests are built from the response they answer alone, so a
//! final that comes again after the call is over is still ACKed.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::sip::uri::Host;
use crate::sip::writer::{self, RequestHead};
use crate::sip::{HeaderName, Message, Method, NameAddr};

/// The header that tells the callee how to answer (`busy`: 486; `ring`:
/// 180 and wait for the CANCEL; absent: 180 then 200). Proxies pass
/// unknown headers through unchanged.
pub(crate) const ANSWER_HEADER: &str = "X-Bench-Answer";

/// What the caller's requests of one call share.
pub(super) struct Leg<'a> {
    pub domain: &'a str,
    pub slot: u32,
    pub q: u32,
    pub caller: u32,
    pub callee: u32,
    pub ip: Ipv4Addr,
    pub port: u16,
}

/// The call's slot and number from a Call-ID `lc<slot>.<q>@…`; a proxy
/// keeps the Call-ID end to end, so caller and callee both read it.
pub(super) fn call_of(m: &Message<'_>) -> Option<(u32, u32)> {
    let v = m.header(HeaderName::CallId)?.trim().strip_prefix("lc")?;
    let (id, _) = v.split_once('@')?;
    let (slot, q) = id.split_once('.')?;
    Some((slot.parse().ok()?, q.parse().ok()?))
}

/// Whether a message belongs to a call (and not to a registration).
pub(crate) fn is_call(m: &Message<'_>) -> bool {
    m.header(HeaderName::CallId)
        .is_some_and(|c| c.trim_start().starts_with("lc"))
}

/// A small SDP offer or answer (one PCMU stream; no media is sent).
fn sdp(id: u32, ip: Ipv4Addr) -> String {
    let port = 20_000 + 2 * (id % 20_000);
    format!(
        "v=0\r\no=- {id} 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

/// The INVITE (with `answer` as [`ANSWER_HEADER`]) or its CANCEL, which
/// shares the Request-URI, top Via, From, To, Call-ID and CSeq number.
pub(super) fn write_invite_or_cancel(
    buf: &mut Vec<u8>,
    l: &Leg<'_>,
    method: Method<'_>,
    answer: Option<&str>,
) {
    let uri = format!("sip:u{}@{}", l.callee, l.domain);
    let from = format!("sip:u{}@{}", l.caller, l.domain);
    let sent_by = format!("{}:{}", l.ip, l.port);
    let branch = format!("z9hG4bKlc{}.{}", l.slot, l.q);
    let tag = format!("lc{}", l.q);
    let call_id = format!("lc{}.{}@{}", l.slot, l.q, l.ip);
    let contact = format!("sip:u{}@{}:{}", l.caller, l.ip, l.port);
    let invite = method == Method::Invite;
    let mut w = writer::request(
        buf,
        &RequestHead {
            method,
            uri: &uri,
            transport: "UDP",
            sent_by: &sent_by,
            branch: &branch,
            from_uri: &from,
            from_tag: &tag,
            to_uri: &uri,
            to_tag: None,
            call_id: &call_id,
            cseq: 1,
            max_forwards: 70,
            contact: invite.then_some(contact.as_str()),
            routes: &[],
        },
    );
    if !invite {
        w.finish(None);
        return;
    }
    if let Some(a) = answer {
        w.header_named(ANSWER_HEADER, a);
    }
    w.header(HeaderName::UserAgent, "tether-bench");
    let body = sdp(l.q, l.ip);
    w.finish(Some(("application/sdp", body.as_bytes())));
}

/// The ACK of a non-2xx final (RFC 3261 §17.1.1.3): the INVITE's top Via
/// (same branch), Request-URI (its To URI, as the generator writes them),
/// From, Call-ID and CSeq number, the response's To (with its tag).
pub(super) fn write_ack_non_2xx(buf: &mut Vec<u8>, resp: &Message<'_>) -> Option<()> {
    let via = resp.top_via().ok()?;
    let (from, to) = (resp.from().ok()?, resp.to().ok()?);
    writer::request(
        buf,
        &RequestHead {
            method: Method::Ack,
            uri: to.uri_raw,
            transport: "UDP",
            sent_by: via.sent_by,
            branch: via.branch()?,
            from_uri: from.uri_raw,
            from_tag: from.tag()?,
            to_uri: to.uri_raw,
            to_tag: to.tag(),
            call_id: resp.header(HeaderName::CallId)?,
            cseq: resp.cseq().ok()?.seq,
            max_forwards: 70,
            contact: None,
            routes: &[],
        },
    )
    .finish(None);
    Some(())
}

/// A request in the dialog the 2xx `ok` set up (RFC 3261 §12.1.2,
/// §12.2.1.1): the route set is its Record-Route reversed, the remote
/// target its Contact. With a loose router first (`;lr`), the Request-URI
/// is the remote target and every route a Route; with a strict one, the
/// Request-URI is that route and the remote target the last Route. The
/// branch is the INVITE's plus `suffix` (new, and the same for every
/// retransmitted 2xx). Returns where to send it: the first route, else
/// the remote target (`fallback` when that is not an IPv4 address).
pub(super) fn write_in_dialog(
    buf: &mut Vec<u8>,
    ok: &Message<'_>,
    method: Method<'_>,
    cseq: u32,
    suffix: &str,
    fallback: SocketAddrV4,
) -> Option<SocketAddrV4> {
    let via = ok.top_via().ok()?;
    let (from, to) = (ok.from().ok()?, ok.to().ok()?);
    let contact = ok.contacts().next()?.ok()?;
    let target = contact.addr()?.uri_raw;
    let mut routes: Vec<&str> = ok
        .list(HeaderName::RecordRoute)
        .collect::<Result<_, _>>()
        .ok()?;
    routes.reverse();
    let first = match routes.first() {
        Some(r) => Some(NameAddr::parse(r, "Record-Route").ok()?),
        None => None,
    };
    let strict = first.as_ref().is_some_and(|f| !f.uri.is_loose_router());
    let uri = match (&first, strict) {
        (Some(f), true) => f.uri_raw,
        _ => target,
    };
    let branch = format!("{}{suffix}", via.branch()?);
    let mut w = writer::request(
        buf,
        &RequestHead {
            method,
            uri,
            transport: "UDP",
            sent_by: via.sent_by,
            branch: &branch,
            from_uri: from.uri_raw,
            from_tag: from.tag()?,
            to_uri: to.uri_raw,
            to_tag: to.tag(),
            call_id: ok.header(HeaderName::CallId)?,
            cseq,
            max_forwards: 70,
            contact: None,
            routes: &[],
        },
    );
    for r in &routes[usize::from(strict)..] {
        w.header(HeaderName::Route, r);
    }
    if strict {
        w.header_parts("Route", &["<", target, ">"]);
    }
    w.finish(None);
    let hop = match &first {
        Some(f) => f.uri,
        None => contact.addr()?.uri,
    };
    Some(match (hop.host, hop.port) {
        (Some(Host::V4(ip)), port) => SocketAddrV4::new(ip, port.unwrap_or(5060)),
        _ => fallback,
    })
}

/// The callee's response `code` to `invite`: 18x and 2xx copy its
/// Record-Route (RFC 3261 §12.1.1) and carry a Contact; the 200 an SDP
/// answer.
pub(super) fn write_answer(
    buf: &mut Vec<u8>,
    invite: &Message<'_>,
    code: u16,
    to_tag: &str,
    contact: &str,
    sdp_id: Option<(u32, Ipv4Addr)>,
) {
    let reason = match code {
        180 => "Ringing",
        487 => "Request Terminated",
        c => crate::loadgen::message::reason(c),
    };
    let mut w = writer::response_to(buf, invite, code, reason, Some(to_tag), None);
    if (101..300).contains(&code) {
        for rr in invite.header_values(HeaderName::RecordRoute) {
            w.header(HeaderName::RecordRoute, rr);
        }
        w.header_parts("Contact", &["<", contact, ">"]);
    }
    let body = sdp_id.map(|(id, ip)| sdp(id, ip));
    w.finish(body.as_deref().map(|b| ("application/sdp", b.as_bytes())));
}

/// A stateless 200 to a CANCEL or BYE (the callee's To tag when the
/// request carries none).
pub(super) fn write_ok(buf: &mut Vec<u8>, req: &Message<'_>, to_tag: &str) {
    writer::response_to(buf, req, 200, "OK", Some(to_tag), None).finish(None);
}

/// The callee's To tag for call `q`.
pub(super) fn callee_tag(q: u32) -> String {
    format!("lu{q}")
}

/// `answer` of the INVITE: what the caller asked the callee to do.
pub(super) fn answer_asked<'a>(m: &Message<'a>) -> Option<&'a str> {
    m.header_by_name(ANSWER_HEADER).map(str::trim)
}

/// The CSeq method of a response (which request it answers).
pub(super) fn cseq_method<'a>(m: &Message<'a>) -> Option<Method<'a>> {
    m.cseq().ok().map(|c| c.method)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip;

    fn ok_with(rr: &str) -> Vec<u8> {
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.1.0.1:4000;branch=z9hG4bKlc3.9;rport=4000;received=127.1.0.1\r\n\
{rr}From: <sip:u5@d>;tag=lc9\r\nTo: <sip:u2@d>;tag=lu9\r\nCall-ID: lc3.9@127.1.0.1\r\n\
CSeq: 1 INVITE\r\nContact: <sip:u2@127.2.0.1:4100>\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn fallback() -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::LOCALHOST, 5060)
    }

    #[test]
    fn in_dialog_requests_follow_the_reversed_record_route_loosely() {
        let ok = ok_with(
            "Record-Route: <sip:127.0.0.1:5070;lr;ftag=x>\r\nRecord-Route: <sip:127.0.0.1:5080;lr>\r\n",
        );
        let ok = sip::parse(&ok).unwrap();
        let mut buf = Vec::new();
        let hop = write_in_dialog(&mut buf, &ok, Method::Bye, 2, "b", fallback()).unwrap();
        assert_eq!(
            hop,
            "127.0.0.1:5080".parse().unwrap(),
            "the last RR is the UAC's first hop"
        );
        let bye = sip::parse(&buf).unwrap();
        assert_eq!(bye.request_uri_raw(), Some("sip:u2@127.2.0.1:4100"));
        let routes: Vec<_> = bye.header_values(HeaderName::Route).collect();
        assert_eq!(
            routes,
            ["<sip:127.0.0.1:5080;lr>", "<sip:127.0.0.1:5070;lr;ftag=x>"]
        );
        assert_eq!(bye.to().unwrap().tag(), Some("lu9"));
        assert_eq!(bye.cseq().unwrap().seq, 2);
        assert_eq!(bye.top_via().unwrap().branch(), Some("z9hG4bKlc3.9b"));
        assert_eq!(
            bye.header(HeaderName::Via)
                .unwrap()
                .matches("received")
                .count(),
            0
        );
    }

    #[test]
    fn a_strict_router_takes_the_request_uri_and_the_target_goes_last() {
        let ok = ok_with("Record-Route: <sip:127.0.0.1:5070>\r\n");
        let ok = sip::parse(&ok).unwrap();
        let mut buf = Vec::new();
        let hop = write_in_dialog(&mut buf, &ok, Method::Ack, 1, "a", fallback()).unwrap();
        assert_eq!(hop, "127.0.0.1:5070".parse().unwrap());
        let ack = sip::parse(&buf).unwrap();
        assert_eq!(ack.request_uri_raw(), Some("sip:127.0.0.1:5070"));
        let routes: Vec<_> = ack.header_values(HeaderName::Route).collect();
        assert_eq!(routes, ["<sip:u2@127.2.0.1:4100>"]);
    }

    #[test]
    fn without_record_route_the_request_goes_to_the_contact() {
        let ok = ok_with("");
        let ok = sip::parse(&ok).unwrap();
        let mut buf = Vec::new();
        let hop = write_in_dialog(&mut buf, &ok, Method::Ack, 1, "a", fallback()).unwrap();
        assert_eq!(hop, "127.2.0.1:4100".parse().unwrap());
        assert!(sip::parse(&buf)
            .unwrap()
            .header(HeaderName::Route)
            .is_none());
    }

    #[test]
    fn a_call_id_names_its_slot_and_number() {
        let ok = ok_with("");
        let m = sip::parse(&ok).unwrap();
        assert_eq!(call_of(&m), Some((3, 9)));
        assert!(is_call(&m));
    }
}
