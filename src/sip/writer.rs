//! Message writer: builds responses and new requests into a caller-owned,
//! reused buffer. Once the buffer has grown to a message's size, writing
//! allocates nothing.

use std::io::Write as _;
use std::net::SocketAddr;

use super::header::HeaderName;
use super::message::Message;
use super::method::Method;
use super::scan::{find_top_level, trim};
use super::typed::{Checked, Via};
use super::uri::Host;

/// Appends header lines to a message being written; [`Writer::finish`] ends it.
pub struct Writer<'b> {
    buf: &'b mut Vec<u8>,
}

impl<'b> Writer<'b> {
    /// Starts a request: clears `buf` and writes the request line.
    pub fn request(buf: &'b mut Vec<u8>, method: Method<'_>, uri: &str) -> Writer<'b> {
        buf.clear();
        buf.extend_from_slice(method.as_str().as_bytes());
        buf.push(b' ');
        buf.extend_from_slice(uri.as_bytes());
        buf.extend_from_slice(b" SIP/2.0\r\n");
        Writer { buf }
    }

    /// Starts a response: clears `buf` and writes the status line.
    pub fn response(buf: &'b mut Vec<u8>, code: u16, reason: &str) -> Writer<'b> {
        buf.clear();
        buf.extend_from_slice(b"SIP/2.0 ");
        push_u32(buf, u32::from(code));
        buf.push(b' ');
        buf.extend_from_slice(reason.as_bytes());
        buf.extend_from_slice(b"\r\n");
        Writer { buf }
    }

    /// Appends `Name: value`.
    pub fn header(&mut self, name: HeaderName, value: &str) -> &mut Self {
        self.header_parts(name.as_str(), &[value])
    }

    /// Appends a header whose name tether has no variant for.
    pub fn header_named(&mut self, name: &str, value: &str) -> &mut Self {
        self.header_parts(name, &[value])
    }

    /// Appends a header whose value is the concatenation of `parts`
    /// (saves the caller from formatting into a temporary string).
    pub fn header_parts(&mut self, name: &str, parts: &[&str]) -> &mut Self {
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(b": ");
        for p in parts {
            self.buf.extend_from_slice(p.as_bytes());
        }
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// Appends a header with a numeric value.
    pub fn header_u32(&mut self, name: HeaderName, v: u32) -> &mut Self {
        self.buf.extend_from_slice(name.as_str().as_bytes());
        self.buf.extend_from_slice(b": ");
        push_u32(self.buf, v);
        self.buf.extend_from_slice(b"\r\n");
        self
    }

    /// The buffer, for callers that write the rest themselves.
    pub fn into_buf(self) -> &'b mut Vec<u8> {
        self.buf
    }

    /// Writes Content-Type (when there is a body), Content-Length and the body;
    /// returns the message length.
    pub fn finish(self, body: Option<(&str, &[u8])>) -> usize {
        match body {
            Some((content_type, bytes)) => {
                self.buf.extend_from_slice(b"Content-Type: ");
                self.buf.extend_from_slice(content_type.as_bytes());
                self.buf.extend_from_slice(b"\r\nContent-Length: ");
                push_u32(self.buf, u32::try_from(bytes.len()).unwrap_or(u32::MAX));
                self.buf.extend_from_slice(b"\r\n\r\n");
                self.buf.extend_from_slice(bytes);
            }
            None => self.buf.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
        }
        self.buf.len()
    }
}

/// Starts a response to `req` (RFC 3261 §8.2.6): copies every Via, From, To,
/// Call-ID and CSeq; adds `to_tag` when To has none (never on 100 Trying);
/// and, given the address the request came from, stamps the top Via with
/// `received` and, when the client asked (RFC 3581), `rport`.
pub fn response_to<'b>(
    buf: &'b mut Vec<u8>,
    req: &Message<'_>,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    source: Option<SocketAddr>,
) -> Writer<'b> {
    let to_has_tag = req.to().ok().is_some_and(|t| t.tag().is_some());
    let top = req.top_via().ok();
    write_response(
        buf,
        req,
        top.as_ref(),
        to_has_tag,
        code,
        reason,
        to_tag,
        source,
    )
}

/// [`response_to`] for a request that passed [`Message::validate`]: reuses
/// its parsed top Via and To instead of parsing them again.
pub fn response_to_checked<'b>(
    buf: &'b mut Vec<u8>,
    req: &Message<'_>,
    checked: &Checked<'_>,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    source: Option<SocketAddr>,
) -> Writer<'b> {
    let to_has_tag = checked.to.tag().is_some();
    write_response(
        buf,
        req,
        Some(&checked.top_via),
        to_has_tag,
        code,
        reason,
        to_tag,
        source,
    )
}

#[allow(clippy::too_many_arguments)]
fn write_response<'b>(
    buf: &'b mut Vec<u8>,
    req: &Message<'_>,
    top_via: Option<&Via<'_>>,
    to_has_tag: bool,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    source: Option<SocketAddr>,
) -> Writer<'b> {
    let mut w = Writer::response(buf, code, reason);
    for (i, via) in req.list(HeaderName::Via).filter_map(Result::ok).enumerate() {
        match (i, source, top_via) {
            (0, Some(src), Some(top)) => write_stamped_via(w.buf, via, top, src),
            _ => {
                w.header(HeaderName::Via, via);
            }
        }
    }
    if let Some(from) = req.header(HeaderName::From) {
        w.header(HeaderName::From, from);
    }
    if let Some(to) = req.header(HeaderName::To) {
        match to_tag {
            Some(tag) if !to_has_tag && code > 100 => {
                w.header_parts("To", &[to, ";tag=", tag]);
            }
            _ => {
                w.header(HeaderName::To, to);
            }
        }
    }
    if let Some(call_id) = req.header(HeaderName::CallId) {
        w.header(HeaderName::CallId, call_id);
    }
    if let Some(cseq) = req.header(HeaderName::CSeq) {
        w.header(HeaderName::CSeq, cseq);
    }
    w
}

/// Writes the top Via (`raw` as written, `via` parsed) with `received`/`rport`
/// set from the packet's source, dropping any earlier values of those two.
fn write_stamped_via(buf: &mut Vec<u8>, raw: &str, via: &Via<'_>, src: SocketAddr) {
    let head = match find_top_level(raw, b';').ok().flatten() {
        Some(i) => trim(&raw[..i]),
        None => trim(raw),
    };
    let wants_rport = via.params.get("rport").is_some();
    buf.extend_from_slice(b"Via: ");
    buf.extend_from_slice(head.as_bytes());
    for p in via.params.iter() {
        if p.name.eq_ignore_ascii_case("received") || p.name.eq_ignore_ascii_case("rport") {
            continue;
        }
        buf.push(b';');
        buf.extend_from_slice(p.name.as_bytes());
        if let Some(v) = p.value {
            buf.push(b'=');
            buf.extend_from_slice(v.as_bytes());
        }
    }
    // RFC 3581 §4: with rport, always add received; RFC 3261 §18.2.1 otherwise.
    let same_host = match (via.host, src) {
        (Host::V4(a), SocketAddr::V4(s)) => a == *s.ip(),
        (Host::V6(a), SocketAddr::V6(s)) => a == *s.ip(),
        _ => false,
    };
    if wants_rport || !same_host {
        buf.extend_from_slice(b";received=");
        push_ip(buf, src.ip());
    }
    if wants_rport {
        buf.extend_from_slice(b";rport=");
        push_u32(buf, u32::from(src.port()));
    }
    buf.extend_from_slice(b"\r\n");
}

/// Appends an address in its textual form; IPv4 without `fmt`.
fn push_ip(buf: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, o) in v4.octets().iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                push_u32(buf, u32::from(*o));
            }
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(buf, "{v6}");
        }
    }
}

/// Answers a request that failed to parse with `code <reason>` (400, or 505
/// for a SIP version other than 2.0), if enough of
/// it survives a lenient line scan: a request line (not ACK) and the Via,
/// From, To, Call-ID and CSeq lines, copied verbatim so the client can match
/// the answer to its transaction. Returns `false` when nothing sensible can
/// be sent (the caller then drops and counts). The answer goes to the
/// packet's source, as any response does, so it reflects no more than a
/// well-formed request would.
pub fn salvage_bad_request(out: &mut Vec<u8>, datagram: &[u8], code: u16, reason: &str) -> bool {
    salvage_response(out, datagram, code, reason, None)
}

/// [`salvage_bad_request`] for any status, with one more header field
/// (a rate limit's `503` and its `Retry-After`).
pub fn salvage_response(
    out: &mut Vec<u8>,
    datagram: &[u8],
    code: u16,
    reason: &str,
    extra: Option<(&str, &str)>,
) -> bool {
    let start = datagram
        .iter()
        .position(|&c| c != b'\r' && c != b'\n')
        .unwrap_or(datagram.len());
    let mut lines = datagram[start..]
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let Some(first) = lines.next() else {
        return false;
    };
    if first.len() < 4 || first[..4].eq_ignore_ascii_case(b"SIP/") || first.starts_with(b"ACK ") {
        return false;
    }
    let mut found: [Option<&[u8]>; 5] = [None; 5];
    for line in lines.take(128) {
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let name = line[..colon].trim_ascii();
        let slot = match name {
            n if n.eq_ignore_ascii_case(b"via") || n.eq_ignore_ascii_case(b"v") => 0,
            n if n.eq_ignore_ascii_case(b"from") || n.eq_ignore_ascii_case(b"f") => 1,
            n if n.eq_ignore_ascii_case(b"to") || n.eq_ignore_ascii_case(b"t") => 2,
            n if n.eq_ignore_ascii_case(b"call-id") || n.eq_ignore_ascii_case(b"i") => 3,
            n if n.eq_ignore_ascii_case(b"cseq") => 4,
            _ => continue,
        };
        let value = line[colon + 1..].trim_ascii();
        // Only printable text goes back on the wire.
        if found[slot].is_none()
            && !value.is_empty()
            && value.iter().all(|&c| (0x20..0x7f).contains(&c))
        {
            found[slot] = Some(value);
        }
    }
    if found.iter().any(Option::is_none) {
        return false;
    }
    let mut w = Writer::response(out, code, reason);
    for (name, value) in ["Via", "From", "To", "Call-ID", "CSeq"].iter().zip(found) {
        w.buf.extend_from_slice(name.as_bytes());
        w.buf.extend_from_slice(b": ");
        w.buf.extend_from_slice(value.unwrap_or_default());
        w.buf.extend_from_slice(b"\r\n");
    }
    if let Some((name, value)) = extra {
        w.header_named(name, value);
    }
    w.finish(None);
    true
}

/// What a new request needs: the fields RFC 3261 §8.1.1 makes mandatory.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'x> {
    pub method: Method<'x>,
    pub uri: &'x str,
    /// Transport for the Via (`UDP`).
    pub transport: &'x str,
    /// Our address as `host:port`, for the Via.
    pub sent_by: &'x str,
    /// Must start with the magic cookie `z9hG4bK`.
    pub branch: &'x str,
    pub from_uri: &'x str,
    pub from_tag: &'x str,
    pub to_uri: &'x str,
    pub to_tag: Option<&'x str>,
    pub call_id: &'x str,
    pub cseq: u32,
    pub max_forwards: u8,
    /// Our Contact URI, for requests that establish or refresh a dialog.
    pub contact: Option<&'x str>,
    /// Route set, written as `Route: <…>` lines in order.
    pub routes: &'x [&'x str],
}

/// Starts a new request (OPTIONS, NOTIFY, INVITE, ACK, BYE …). The Via asks
/// for `rport` so that answers from behind a NAT find their way back.
pub fn request<'b>(buf: &'b mut Vec<u8>, h: &RequestHead<'_>) -> Writer<'b> {
    let mut w = Writer::request(buf, h.method, h.uri);
    w.header_parts(
        "Via",
        &[
            "SIP/2.0/",
            h.transport,
            " ",
            h.sent_by,
            ";branch=",
            h.branch,
            ";rport",
        ],
    );
    for r in h.routes {
        w.header_parts("Route", &["<", r, ">"]);
    }
    w.header_u32(HeaderName::MaxForwards, u32::from(h.max_forwards));
    w.header_parts("From", &["<", h.from_uri, ">;tag=", h.from_tag]);
    match h.to_tag {
        Some(tag) => w.header_parts("To", &["<", h.to_uri, ">;tag=", tag]),
        None => w.header_parts("To", &["<", h.to_uri, ">"]),
    };
    w.header(HeaderName::CallId, h.call_id);
    // ACK's CSeq carries ACK; callers pass the INVITE's number (RFC 3261 §17.1.1.3).
    w.buf.extend_from_slice(b"CSeq: ");
    push_u32(w.buf, h.cseq);
    w.buf.push(b' ');
    w.buf.extend_from_slice(h.method.as_str().as_bytes());
    w.buf.extend_from_slice(b"\r\n");
    if let Some(c) = h.contact {
        w.header_parts("Contact", &["<", c, ">"]);
    }
    w
}

/// A `u32` in decimal, formatted on the stack without `fmt`.
#[derive(Clone, Copy)]
pub struct Decimal {
    digits: [u8; 10],
    start: u8,
}

impl Decimal {
    pub fn new(mut v: u32) -> Decimal {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        Decimal {
            digits,
            start: i as u8,
        }
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.digits[usize::from(self.start)..]).unwrap_or("0")
    }
}

/// Appends `ip:port` (`[v6]:port`) to a string; IPv4 without `fmt`, which
/// a keepalive prompt per path per interval would otherwise spend in.
pub fn push_socket_addr(s: &mut String, a: std::net::SocketAddr) {
    match a {
        std::net::SocketAddr::V4(v4) => {
            for (i, o) in v4.ip().octets().iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                s.push_str(Decimal::new(u32::from(*o)).as_str());
            }
        }
        std::net::SocketAddr::V6(v6) => {
            let _ = std::fmt::Write::write_fmt(s, format_args!("[{}]", v6.ip()));
        }
    }
    s.push(':');
    s.push_str(Decimal::new(u32::from(a.port())).as_str());
}

/// Appends a decimal number without going through `fmt`.
pub fn push_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(Decimal::new(v).as_str().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::parse;

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKa;rport\r\n\
Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKb\r\n\
From: Alice <sip:alice@example.com>;tag=1928\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn socket_addresses_are_written_as_display_would() {
        for a in [
            "127.0.0.1:5060",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[::1]:5060",
            "[2001:db8::7]:40000",
        ] {
            let a: std::net::SocketAddr = a.parse().unwrap();
            let mut s = String::from("x");
            push_socket_addr(&mut s, a);
            assert_eq!(s, format!("x{a}"));
        }
    }

    #[test]
    fn response_copies_dialog_headers_and_stamps_via() {
        let req = parse(INVITE).unwrap();
        let mut buf = Vec::new();
        let src: SocketAddr = "203.0.113.9:40000".parse().unwrap();
        let n = response_to(&mut buf, &req, 180, "Ringing", Some("xyz"), Some(src)).finish(None);
        assert_eq!(n, buf.len());
        let resp = parse(&buf).unwrap();
        resp.validate().unwrap();
        assert_eq!(resp.status(), Some(180));
        let top = resp.top_via().unwrap();
        assert_eq!(top.branch(), Some("z9hG4bKa"));
        assert_eq!(top.received(), Some("203.0.113.9"));
        assert_eq!(top.rport(), Some(Some(40000)));
        assert_eq!(resp.vias().count(), 2);
        assert_eq!(resp.to().unwrap().tag(), Some("xyz"));
        assert_eq!(resp.from().unwrap().tag(), Some("1928"));
        assert_eq!(resp.call_id().unwrap(), "a84b4c76e66710");
        assert_eq!(resp.cseq().unwrap().seq, 314159);
    }

    #[test]
    fn received_only_when_source_differs_and_no_rport() {
        let req = parse(
            b"OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKq\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:x@example.com>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n",
        )
        .unwrap();
        let mut buf = Vec::new();
        response_to(
            &mut buf,
            &req,
            200,
            "OK",
            None,
            Some("10.0.0.5:5060".parse().unwrap()),
        )
        .finish(None);
        {
            let via = parse(&buf).unwrap().top_via().unwrap();
            assert_eq!(via.received(), None);
            assert_eq!(via.rport(), None);
        }
        response_to(
            &mut buf,
            &req,
            200,
            "OK",
            None,
            Some("10.0.0.6:5060".parse().unwrap()),
        )
        .finish(None);
        assert_eq!(
            parse(&buf).unwrap().top_via().unwrap().received(),
            Some("10.0.0.6")
        );
    }

    #[test]
    fn existing_to_tag_is_kept_and_trying_gets_none() {
        let req = parse(INVITE).unwrap();
        let mut buf = Vec::new();
        response_to(&mut buf, &req, 100, "Trying", Some("new"), None).finish(None);
        assert_eq!(parse(&buf).unwrap().to().unwrap().tag(), None);
    }

    #[test]
    fn new_request_is_valid_sip_and_buffer_is_reused() {
        let mut buf = Vec::with_capacity(1024);
        let head = RequestHead {
            method: Method::Notify,
            uri: "sip:dev@198.51.100.7:5062",
            transport: "UDP",
            sent_by: "192.0.2.1:5060",
            branch: "z9hG4bK0011",
            from_uri: "sip:tether@192.0.2.1",
            from_tag: "f1",
            to_uri: "sip:dev@example.com",
            to_tag: None,
            call_id: "n1@192.0.2.1",
            cseq: 7,
            max_forwards: 70,
            contact: Some("sip:tether@192.0.2.1:5060"),
            routes: &["sip:edge.example.com;lr"],
        };
        let cap = buf.capacity();
        let mut w = request(&mut buf, &head);
        w.header(HeaderName::Event, "application-server-contact-me");
        w.finish(Some(("text/plain", b"RequestID=1")));
        assert_eq!(
            buf.capacity(),
            cap,
            "no reallocation for a message that fits"
        );
        let m = parse(&buf).unwrap();
        m.validate().unwrap();
        assert_eq!(m.method(), Some(Method::Notify));
        assert_eq!(
            m.event().unwrap().unwrap().package,
            "application-server-contact-me"
        );
        assert_eq!(m.body, b"RequestID=1");
        assert_eq!(
            m.routes().next().unwrap().unwrap().uri_raw,
            "sip:edge.example.com;lr"
        );
        assert_eq!(m.top_via().unwrap().rport(), Some(None));
    }

    #[test]
    fn unparsable_requests_with_their_ids_get_400() {
        let mut out = Vec::new();
        let bad = b"REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@x>;tag=1\r\n\
To: <sip:a@x>\r\nCall-ID: c1\r\nCSeq: 1 REGISTER\r\nthis line has no colon\r\n\r\n";
        assert!(salvage_bad_request(&mut out, bad, 400, "Bad Header Line"));
        let m = parse(&out).unwrap();
        assert_eq!(m.status(), Some(400));
        assert_eq!(m.call_id().unwrap(), "c1");
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK1"));
        // Missing ids, responses, ACKs and binary garbage are not answered.
        assert!(!salvage_bad_request(
            &mut out,
            b"REGISTER sip:x SIP/2.0\r\nVia: x\r\n\r\n",
            400,
            "x"
        ));
        assert!(!salvage_bad_request(
            &mut out,
            b"SIP/2.0 200 OK\r\n\r\n",
            400,
            "x"
        ));
        assert!(!salvage_bad_request(&mut out, &[0xff; 100], 400, "x"));
    }

    #[test]
    fn push_u32_edges() {
        let mut b = Vec::new();
        for v in [0, 9, 10, 65535, u32::MAX] {
            b.clear();
            push_u32(&mut b, v);
            assert_eq!(b, v.to_string().as_bytes());
        }
    }
}
