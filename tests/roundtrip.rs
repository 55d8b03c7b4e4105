//! Property tests: what the writer writes, the parser reads back field for
//! field; and no input, however mangled, makes the parser panic.

use proptest::prelude::*;
use tether::sip::writer::{request, response_to, RequestHead};
use tether::sip::{self, HeaderName, Host, Method};

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.!%*_+`'~-]{0,15}"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]([a-z0-9-]{0,9}[a-z0-9])?(\\.[a-z][a-z0-9]{0,8}){0,2}",
        any::<[u8; 4]>().prop_map(|o| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3])),
        any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s))),
    ]
}

fn user() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9+][a-zA-Z0-9._~+-]{0,12}(%[0-9A-F]{2})?"
}

fn method() -> impl Strategy<Value = Method<'static>> {
    prop_oneof![
        Just(Method::Options),
        Just(Method::Notify),
        Just(Method::Invite),
        Just(Method::Ack),
        Just(Method::Bye),
        Just(Method::Register),
        Just(Method::Extension("X-WAKE")),
    ]
}

#[derive(Debug, Clone)]
struct Fields {
    method: Method<'static>,
    user: String,
    host: String,
    port: Option<u16>,
    branch: String,
    from_tag: String,
    to_tag: Option<String>,
    call_id: String,
    cseq: u32,
    max_forwards: u8,
    routes: Vec<String>,
    body: Vec<u8>,
    event: Option<String>,
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        (method(), user(), host(), proptest::option::of(1u16..)),
        (token(), token(), proptest::option::of(token()), token()),
        (0u32..(1 << 31), any::<u8>()),
        proptest::collection::vec(host(), 0..3),
        proptest::collection::vec(any::<u8>(), 0..200),
        proptest::option::of("[a-z][a-z-]{0,20}"),
    )
        .prop_map(
            |(
                (method, user, host, port),
                (branch, from_tag, to_tag, call_id),
                (cseq, mf),
                routes,
                body,
                event,
            )| {
                Fields {
                    method,
                    user,
                    host,
                    port,
                    branch: format!("z9hG4bK{branch}"),
                    from_tag,
                    to_tag,
                    call_id,
                    cseq,
                    max_forwards: mf,
                    routes: routes.into_iter().map(|h| format!("sip:{h};lr")).collect(),
                    body,
                    event,
                }
            },
        )
}

fn target(f: &Fields) -> String {
    match f.port {
        Some(p) => format!("sip:{}@{}:{p}", f.user, f.host),
        None => format!("sip:{}@{}", f.user, f.host),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn request_write_then_parse_gives_the_same_fields(f in fields()) {
        let uri = target(&f);
        let routes: Vec<&str> = f.routes.iter().map(String::as_str).collect();
        let head = RequestHead {
            method: f.method,
            uri: &uri,
            transport: "UDP",
            sent_by: "192.0.2.1:5060",
            branch: &f.branch,
            from_uri: "sip:tether@example.com",
            from_tag: &f.from_tag,
            to_uri: &uri,
            to_tag: f.to_tag.as_deref(),
            call_id: &f.call_id,
            cseq: f.cseq,
            max_forwards: f.max_forwards,
            contact: Some("sip:tether@192.0.2.1:5060"),
            routes: &routes,
        };
        let mut buf = Vec::new();
        let mut w = request(&mut buf, &head);
        if let Some(e) = &f.event {
            w.header(HeaderName::Event, e);
        }
        let body = (!f.body.is_empty()).then_some(("application/octet-stream", f.body.as_slice()));
        w.finish(body);

        let m = sip::parse(&buf).unwrap();
        m.validate().unwrap();
        prop_assert_eq!(m.method(), Some(f.method));
        let ruri = m.request_uri().unwrap().unwrap();
        prop_assert_eq!(ruri.user, Some(f.user.as_str()));
        prop_assert_eq!(ruri.port, f.port);
        let host_str = ruri.host.unwrap().to_string();
        prop_assert_eq!(host_str.as_str(), f.host.as_str());
        prop_assert_eq!(m.top_via().unwrap().branch(), Some(f.branch.as_str()));
        prop_assert_eq!(m.top_via().unwrap().host, Host::V4("192.0.2.1".parse().unwrap()));
        prop_assert_eq!(m.from().unwrap().tag(), Some(f.from_tag.as_str()));
        prop_assert_eq!(m.to().unwrap().tag(), f.to_tag.as_deref());
        prop_assert_eq!(m.call_id().unwrap(), f.call_id.as_str());
        let cseq = m.cseq().unwrap();
        prop_assert_eq!(cseq.seq, f.cseq);
        prop_assert_eq!(cseq.method, f.method);
        prop_assert_eq!(m.max_forwards().unwrap(), Some(f.max_forwards));
        let got_routes: Vec<_> = m.routes().map(|r| r.unwrap().uri_raw).collect();
        prop_assert_eq!(got_routes, routes);
        prop_assert_eq!(m.event().unwrap().map(|e| e.package), f.event.as_deref());
        prop_assert_eq!(m.body, f.body.as_slice());

        // The response to it echoes the transaction and dialog identifiers.
        let mut out = Vec::new();
        let src: std::net::SocketAddr = "198.51.100.4:61000".parse().unwrap();
        response_to(&mut out, &m, 200, "OK", Some("totag"), Some(src)).finish(None);
        let r = sip::parse(&out).unwrap();
        r.validate().unwrap();
        prop_assert_eq!(r.top_via().unwrap().branch(), Some(f.branch.as_str()));
        prop_assert_eq!(r.top_via().unwrap().rport(), Some(Some(61000)));
        prop_assert_eq!(r.call_id().unwrap(), f.call_id.as_str());
        prop_assert_eq!(r.cseq().unwrap(), cseq);
        prop_assert_eq!(r.to().unwrap().tag(), Some(f.to_tag.as_deref().unwrap_or("totag")));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        exercise(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(
        base in 0usize..4,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..4), 1..12),
    ) {
        let mut bytes = SEEDS[base].to_vec();
        for (pos, byte, op) in edits {
            let at = if bytes.is_empty() { 0 } else { pos % bytes.len() };
            match op {
                0 if !bytes.is_empty() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                2 if !bytes.is_empty() => { bytes.remove(at); }
                _ => bytes.truncate(at),
            }
        }
        exercise(&bytes);
    }
}

const SEEDS: [&[u8]; 4] = [
    b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport\r\n\
From: \"A\" <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: x@y\r\nCSeq: 1 REGISTER\r\n\
Contact: <sip:a@10.0.0.1:5060>;expires=60;+sip.instance=\"<urn:uuid:1>\";reg-id=1, *\r\n\
Authorization: Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:example.com\", response=\"0\"\r\n\
Content-Length: 0\r\n\r\n",
    b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK2;received=1.2.3.4;rport=9\r\n\
f: <sip:a@b>;tag=1\r\nt: <sip:a@b>;tag=2\r\ni: c\r\nCSeq: 2 OPTIONS\r\nl: 0\r\n\r\n",
    b"INVITE sip:bob@example.com;transport=udp SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK3\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:a@b>;tag=1\r\n\
To: Bob <sip:bob@example.com>\r\nCall-ID: inv@1\r\nCSeq: 3 INVITE\r\nContent-Type: application/sdp\r\n\
Content-Length: 10\r\n\r\nv=0\r\no=- 1",
    b"NOTIFY sip:dev@10.0.0.9:5062 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK4\r\n\
From: <sip:as@example.com>;tag=9\r\nTo: <sip:dev@example.com>\r\nCall-ID: n@1\r\nCSeq: 1 NOTIFY\r\n\
Event: application-server-contact-me;id=7\r\nAccept: application/sdp, text/plain;q=0.5\r\n\r\n",
];

/// Parses and touches every accessor, the way a server and the fuzzer do.
fn exercise(bytes: &[u8]) {
    tether::sip::fuzz_entry(bytes);
}
