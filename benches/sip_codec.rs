//! SIP codec benchmarks: tether's parser and writer side by side with rsip.
//!
//! For each message, one criterion group `parse/<msg>` holds:
//! * `tether_split`: `sip::parse` only (start line and header slices);
//! * `tether_typed`: parse + every typed accessor the message has;
//! * `tether_full`: parse + `validate()` + every typed accessor, i.e. what
//!   `Endpoint::handle_datagram` and a registrar do (the headline figure);
//! * `rsip_untyped`: `rsip::SipMessage::try_from` only;
//! * `rsip`: `try_from` + the same headers read through rsip's typed API
//!   (headers rsip has no typed form for are read as text and split by hand).
//!
//! The `write` group builds a 200 OK to the REGISTER, an OPTIONS and a NOTIFY
//! into a reused buffer, and the same 200 OK with rsip for comparison.

use std::hint::black_box;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use rsip::prelude::*;
use tether::sip::writer::{request, response_to, RequestHead};
use tether::sip::{self, HeaderName, Message, Method};

/// A UA registering with RFC 5626 outbound and a Digest answer (values trimmed).
///
/// `+sip.instance` carries a bare UUID token instead of RFC 5626's
/// `"<urn:uuid:…>"`: rsip 0.4 only accepts token parameter values and fails
/// the whole typed Contact on a quoted-string.
const REGISTER: &[u8] = concat!(
    "REGISTER sip:t.net SIP/2.0\r\n",
    "Via: SIP/2.0/UDP 10.0.0.2:5060;rport;branch=z9hG4bK9a1c\r\n",
    "Max-Forwards: 70\r\n",
    "From: <sip:al@t.net>;tag=a73k\r\n",
    "To: <sip:al@t.net>\r\n",
    "Call-ID: 1j9F@10.0.0.2\r\n",
    "CSeq: 2 REGISTER\r\n",
    "Contact: <sip:al@10.0.0.2:5060>;expires=600;q=0.7;",
    "+sip.instance=f81d4fae-7dec-11d0-a765-00a0c91e6bf6;reg-id=1\r\n",
    "Expires: 600\r\n",
    "Supported: path, outbound\r\n",
    "Accept: application/sdp\r\n",
    "User-Agent: tb/1\r\n",
    "Authorization: Digest username=\"al\",realm=\"t.net\",nonce=\"4f1c\",uri=\"sip:t.net\",",
    "response=\"dfe5\",algorithm=MD5,qop=auth,nc=00000001,cnonce=\"0a4f\"\r\n",
    "Content-Length: 0\r\n",
    "\r\n"
)
.as_bytes();

/// The edge's keepalive probe towards a registered UA.
const OPTIONS: &[u8] = concat!(
    "OPTIONS sip:al@203.0.113.9:40312 SIP/2.0\r\n",
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9a;rport\r\n",
    "Max-Forwards: 70\r\n",
    "From: <sip:tether@192.0.2.1>;tag=9fxced76\r\n",
    "To: <sip:al@t.net>\r\n",
    "Call-ID: 3848276298@192.0.2.1\r\n",
    "CSeq: 1 OPTIONS\r\n",
    "Contact: <sip:tether@192.0.2.1:5060>\r\n",
    "Accept: application/sdp\r\n",
    "Content-Length: 0\r\n",
    "\r\n"
)
.as_bytes();

/// An INVITE that went through one proxy, with an SDP offer (300-byte body).
const INVITE: &[u8] = concat!(
    "INVITE sip:bob@t.net SIP/2.0\r\n",
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds8;rport\r\n",
    "Via: SIP/2.0/UDP 10.0.0.2:5060;received=203.0.113.9;rport=40312;branch=z9hG4bK776asdhds\r\n",
    "Max-Forwards: 69\r\n",
    "Record-Route: <sip:192.0.2.1;lr>\r\n",
    "Route: <sip:core.t.net;lr>\r\n",
    "From: \"Alice\" <sip:al@t.net>;tag=1928301774\r\n",
    "To: <sip:bob@t.net>\r\n",
    "Call-ID: a84b4c76e66710@10.0.0.2\r\n",
    "CSeq: 314159 INVITE\r\n",
    "Contact: <sip:al@203.0.113.9:40312;ob>\r\n",
    "Supported: replaces, timer\r\n",
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n",
    "Allow-Events: talk, hold\r\n",
    "User-Agent: tb/1\r\n",
    "Content-Type: application/sdp\r\n",
    "Content-Length: 300\r\n",
    "\r\n",
    "v=0\r\n",
    "o=al 2890844526 2890844526 IN IP4 10.0.0.2\r\n",
    "s=-\r\n",
    "c=IN IP4 10.0.0.2\r\n",
    "t=0 0\r\n",
    "m=audio 49170 RTP/AVP 0 8 97 101\r\n",
    "a=rtpmap:0 PCMU/8000\r\n",
    "a=rtpmap:8 PCMA/8000\r\n",
    "a=rtpmap:97 opus/48000/2\r\n",
    "a=rtpmap:101 telephone-event/8000\r\n",
    "a=fmtp:101 0-16\r\n",
    "a=fmtp:97 useinbandfec=1\r\n",
    "a=rtcp:49171\r\n",
    "a=ptime:20\r\n",
    "a=sendrecv\r\n"
)
.as_bytes();

/// A registrar's 200 OK to the REGISTER above.
const REGISTER_200: &[u8] = concat!(
    "SIP/2.0 200 OK\r\n",
    "Via: SIP/2.0/UDP 10.0.0.2:5060;rport=40312;branch=z9hG4bK9a1c;received=203.0.113.9\r\n",
    "From: <sip:al@t.net>;tag=a73k\r\n",
    "To: <sip:al@t.net>;tag=8321234356\r\n",
    "Call-ID: 1j9F@10.0.0.2\r\n",
    "CSeq: 2 REGISTER\r\n",
    "Contact: <sip:al@10.0.0.2:5060>;expires=600\r\n",
    "Expires: 600\r\n",
    "Supported: path, outbound\r\n",
    "Server: tether/0.1\r\n",
    "Content-Length: 0\r\n",
    "\r\n"
)
.as_bytes();

const MESSAGES: [(&str, &[u8]); 4] = [
    ("register", REGISTER),
    ("options", OPTIONS),
    ("invite", INVITE),
    ("register_200", REGISTER_200),
];

/// Where the REGISTER came from (behind a NAT).
const SOURCE: &str = "203.0.113.9:40312";
const TO_TAG: &str = "8321234356";

fn rsip_other_param<'p>(params: &'p [rsip::Param], name: &str) -> Option<&'p str> {
    params.iter().find_map(|p| match p {
        rsip::Param::Other(n, v) if n.value().eq_ignore_ascii_case(name) => {
            Some(v.as_ref().map_or("", |v| v.value()))
        }
        _ => None,
    })
}

/// The same reads through rsip's API: typed forms where rsip has them,
/// hand-split text where it does not (Supported, Require, Event).
fn rsip_access(m: &rsip::SipMessage) {
    if let rsip::SipMessage::Request(r) = m {
        black_box((r.uri.user(), r.uri.host(), r.uri.port()));
    }
    let mut first_via = true;
    for h in m.headers().iter() {
        match h {
            rsip::Header::Via(v) => {
                let v = v.typed().unwrap();
                if first_via {
                    first_via = false;
                    let rport = rsip_other_param(&v.params, "rport");
                    black_box((v.branch(), v.received().unwrap(), rport, v.uri.host()));
                    black_box(v.uri.port());
                }
                black_box(v);
            }
            rsip::Header::Route(r) => {
                black_box(r.typed().unwrap());
            }
            rsip::Header::RecordRoute(r) => {
                black_box(r.typed().unwrap());
            }
            rsip::Header::ContentLength(l) => {
                black_box(l.length().unwrap());
            }
            rsip::Header::ContentType(c) => {
                black_box(c.typed().unwrap());
            }
            rsip::Header::Event(e) => {
                black_box(e.value());
            }
            rsip::Header::Accept(a) => {
                black_box(a.typed().unwrap());
            }
            rsip::Header::Supported(s) => {
                for t in s.value().split(',') {
                    black_box(t.trim());
                }
            }
            rsip::Header::Require(s) => {
                for t in s.value().split(',') {
                    black_box(t.trim());
                }
            }
            _ => {}
        }
    }
    let from = m.from_header().unwrap().typed().unwrap();
    black_box((
        from.tag(),
        from.uri.user(),
        from.uri.host(),
        from.uri.port(),
    ));
    let to = m.to_header().unwrap().typed().unwrap();
    black_box((to.tag(), to.uri.user(), to.uri.host(), to.uri.port()));
    black_box(m.call_id_header().unwrap().value());
    black_box(m.cseq_header().unwrap().typed().unwrap());
    if let Ok(mf) = m.max_forwards_header() {
        black_box(mf.num().unwrap());
    }
    for c in m.contact_headers() {
        let c = c.typed().unwrap();
        black_box((c.uri.user(), c.uri.host(), c.uri.port()));
        black_box(c.expires().map(|e| e.seconds().unwrap()));
        let q = c.params.iter().find_map(|p| match p {
            rsip::Param::Q(q) => Some(q.value()),
            _ => None,
        });
        black_box(q);
        black_box(rsip_other_param(&c.params, "+sip.instance"));
        black_box(rsip_other_param(&c.params, "reg-id"));
    }
    if let Some(e) = m.expires_header() {
        black_box(e.seconds().unwrap());
    }
    if let Some(a) = m.authorization_header() {
        black_box(a.typed().unwrap());
    }
    if let Some(w) = m.www_authenticate_header() {
        black_box(w.typed().unwrap());
    }
    black_box(m.user_agent_header().map(|u| u.value()));
}

/// Fails the run before measuring anything if either parser rejects a message.
fn check_messages() {
    for (name, bytes) in MESSAGES {
        let m = sip::parse(bytes).unwrap_or_else(|e| panic!("tether rejects {name}: {e}"));
        m.validate()
            .unwrap_or_else(|e| panic!("tether: {name} does not validate: {e}"));
        assert_eq!(m.trailing, 0, "{name}: Content-Length");
        sip::read_typed(&m);
        let r = rsip::SipMessage::try_from(bytes)
            .unwrap_or_else(|e| panic!("rsip rejects {name}: {e:?}"));
        assert_eq!(r.body().len(), m.body.len(), "{name}: rsip body");
        rsip_access(&r);
        eprintln!("message {name}: {} bytes", bytes.len());
    }
    let reg = sip::parse(REGISTER).unwrap();
    let c = reg.contacts().next().unwrap().unwrap();
    assert_eq!(c.expires(), Ok(Some(600)));
    assert_eq!(c.q(), Ok(Some(700)));
    assert_eq!(c.instance(), Some("f81d4fae-7dec-11d0-a765-00a0c91e6bf6"));
    assert_eq!(c.reg_id(), Ok(Some(1)));
    let auth = reg.authorization().unwrap().unwrap();
    assert_eq!(auth.get("nonce"), Some("4f1c"));
    assert_eq!(auth.get("cnonce"), Some("0a4f"));
    let r = rsip::SipMessage::try_from(REGISTER).unwrap();
    let rc = r.contact_header().unwrap().typed().unwrap();
    assert_eq!(rc.expires().unwrap().seconds().unwrap(), 600);
    assert_eq!(
        rsip_other_param(&rc.params, "+sip.instance"),
        Some("f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
    );
    assert_eq!(
        r.authorization_header().unwrap().typed().unwrap().nonce,
        "4f1c"
    );
}

fn configure<M: criterion::measurement::Measurement>(g: &mut BenchmarkGroup<'_, M>) {
    g.measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(50);
}

fn parse_benches(c: &mut Criterion) {
    check_messages();
    for (name, bytes) in MESSAGES {
        let mut g = c.benchmark_group(format!("parse/{name}"));
        configure(&mut g);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("tether_split", |b| {
            b.iter(|| black_box(sip::parse(black_box(bytes)).unwrap()))
        });
        g.bench_function("tether_typed", |b| {
            b.iter(|| {
                let m = sip::parse(black_box(bytes)).unwrap();
                sip::read_typed(&m);
                black_box(m)
            })
        });
        g.bench_function("tether_full", |b| {
            b.iter(|| {
                let m = sip::parse(black_box(bytes)).unwrap();
                m.validate().unwrap();
                sip::read_typed(&m);
                black_box(m)
            })
        });
        g.bench_function("rsip_untyped", |b| {
            b.iter(|| black_box(rsip::SipMessage::try_from(black_box(bytes)).unwrap()))
        });
        g.bench_function("rsip", |b| {
            b.iter(|| {
                let m = rsip::SipMessage::try_from(black_box(bytes)).unwrap();
                rsip_access(&m);
                black_box(m)
            })
        });
        g.finish();
    }
}

fn write_benches(c: &mut Criterion) {
    let src: SocketAddr = SOURCE.parse().unwrap();
    let mut g = c.benchmark_group("write");
    configure(&mut g);
    let mut buf = Vec::with_capacity(2048);

    // tether: 200 OK to the REGISTER, echoing the binding with its expiry.
    let req = sip::parse(REGISTER).unwrap();
    let contact_uri = req
        .contacts()
        .next()
        .unwrap()
        .unwrap()
        .addr()
        .unwrap()
        .uri_raw;
    let write_200 = |buf: &mut Vec<u8>, req: &Message<'_>| {
        let mut w = response_to(buf, req, 200, "OK", Some(TO_TAG), Some(src));
        w.header_parts("Contact", &["<", contact_uri, ">;expires=600"])
            .header_u32(HeaderName::Expires, 600);
        w.finish(None)
    };
    let n = write_200(&mut buf, &req);
    {
        let resp = sip::parse(&buf).unwrap();
        resp.validate().unwrap();
        assert_eq!(resp.to().unwrap().tag(), Some(TO_TAG));
        assert_eq!(resp.top_via().unwrap().rport(), Some(Some(40312)));
    }
    g.throughput(Throughput::Bytes(n as u64));
    g.bench_function("register_200", |b| {
        b.iter(|| black_box(write_200(&mut buf, black_box(&req))))
    });

    // rsip: the same response built from the parsed rsip request.
    let rreq = rsip::SipMessage::try_from(REGISTER).unwrap();
    let rcontact_uri = rreq.contact_header().unwrap().typed().unwrap().uri;
    let src_ip = src.ip().to_string();
    let src_port = src.port().to_string();
    let rsip_200 = |buf: &mut Vec<u8>, req: &rsip::SipMessage| {
        let mut headers = rsip::Headers::default();
        let mut vias = req.headers().iter().filter_map(|h| match h {
            rsip::Header::Via(v) => Some(v),
            _ => None,
        });
        let mut top = vias.next().unwrap().typed().unwrap();
        top.params.retain(|p| match p {
            rsip::Param::Received(_) => false,
            rsip::Param::Other(n, _) => !n.value().eq_ignore_ascii_case("rport"),
            _ => true,
        });
        top.params
            .push(rsip::Param::Received(rsip::param::Received::new(
                src_ip.as_str(),
            )));
        top.params.push(rsip::Param::Other(
            "rport".into(),
            Some(src_port.as_str().into()),
        ));
        headers.push(top.into());
        for v in vias {
            headers.push(v.clone().into());
        }
        headers.push(req.from_header().unwrap().clone().into());
        let to = req.to_header().unwrap().typed().unwrap();
        headers.push(to.with_tag(TO_TAG.into()).into());
        headers.push(req.call_id_header().unwrap().clone().into());
        headers.push(req.cseq_header().unwrap().clone().into());
        headers.push(
            rsip::typed::Contact {
                display_name: None,
                uri: rcontact_uri.clone(),
                params: vec![rsip::Param::Expires(rsip::param::Expires::new("600"))],
            }
            .into(),
        );
        headers.push(rsip::headers::Expires::from(600).into());
        headers.push(rsip::headers::ContentLength::default().into());
        let resp = rsip::Response {
            status_code: rsip::StatusCode::OK,
            version: rsip::Version::V2,
            headers,
            body: Vec::new(),
        };
        buf.clear();
        write!(buf, "{resp}").unwrap();
        buf.len()
    };
    let n = rsip_200(&mut buf, &rreq);
    {
        let resp = sip::parse(&buf).unwrap_or_else(|e| panic!("rsip 200 OK: {e}"));
        resp.validate().unwrap();
        assert_eq!(resp.to().unwrap().tag(), Some(TO_TAG));
        assert_eq!(resp.top_via().unwrap().received(), Some("203.0.113.9"));
    }
    rsip::SipMessage::try_from(buf.as_slice()).unwrap();
    g.throughput(Throughput::Bytes(n as u64));
    g.bench_function("rsip_register_200", |b| {
        b.iter(|| black_box(rsip_200(&mut buf, black_box(&rreq))))
    });

    // tether: new requests from the edge.
    let options = RequestHead {
        method: Method::Options,
        uri: "sip:al@203.0.113.9:40312",
        transport: "UDP",
        sent_by: "192.0.2.1:5060",
        branch: "z9hG4bK74bf9a",
        from_uri: "sip:tether@192.0.2.1",
        from_tag: "9fxced76",
        to_uri: "sip:al@t.net",
        to_tag: None,
        call_id: "3848276298@192.0.2.1",
        cseq: 1,
        max_forwards: 70,
        contact: Some("sip:tether@192.0.2.1:5060"),
        routes: &[],
    };
    let write_options = |buf: &mut Vec<u8>, h: &RequestHead<'_>| {
        let mut w = request(buf, h);
        w.header(HeaderName::Accept, "application/sdp");
        w.finish(None)
    };
    let n = write_options(&mut buf, &options);
    sip::parse(&buf).unwrap().validate().unwrap();
    g.throughput(Throughput::Bytes(n as u64));
    g.bench_function("options_request", |b| {
        b.iter(|| black_box(write_options(&mut buf, black_box(&options))))
    });

    let notify = RequestHead {
        method: Method::Notify,
        uri: "sip:al@203.0.113.9:40312",
        transport: "UDP",
        sent_by: "192.0.2.1:5060",
        branch: "z9hG4bK0011ab",
        from_uri: "sip:tether@192.0.2.1",
        from_tag: "f1d2",
        to_uri: "sip:al@t.net",
        to_tag: None,
        call_id: "n1x7@192.0.2.1",
        cseq: 7,
        max_forwards: 70,
        contact: Some("sip:tether@192.0.2.1:5060"),
        routes: &["sip:edge.t.net;lr"],
    };
    let write_notify = |buf: &mut Vec<u8>, h: &RequestHead<'_>| {
        let mut w = request(buf, h);
        w.header(HeaderName::Event, "application-server-contact-me")
            .header(HeaderName::SubscriptionState, "terminated;reason=timeout");
        w.finish(Some(("text/plain", b"RequestID=1")))
    };
    let n = write_notify(&mut buf, &notify);
    {
        let m = sip::parse(&buf).unwrap();
        m.validate().unwrap();
        assert_eq!(m.body, b"RequestID=1");
    }
    g.throughput(Throughput::Bytes(n as u64));
    g.bench_function("notify_request", |b| {
        b.iter(|| black_box(write_notify(&mut buf, black_box(&notify))))
    });
    g.finish();
}

criterion_group!(benches, parse_benches, write_benches);
criterion_main!(benches);
