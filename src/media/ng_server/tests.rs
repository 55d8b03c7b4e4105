use super::*;
use crate::media::table::TableConfig;

fn table() -> Table {
    let mut t = Table::new(TableConfig {
        addr: "203.0.113.1".parse().unwrap(),
        max_pairs: 16,
        ..Default::default()
    });
    let ports: Vec<u16> = (0..16).map(|i| 40000 + 2 * i).collect();
    t.add_pairs(&ports);
    t
}

fn sdp(ip: &str, port: u16) -> Vec<u8> {
    format!("v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n").into_bytes()
}

fn run(s: &mut NgServer, t: &mut Table, req: &[u8]) -> (NgOutcome, Vec<u8>) {
    let mut out = Vec::new();
    let o = s.handle(0, req, t, false, &mut out);
    (o, out)
}

fn reply_of(out: &[u8]) -> ng::Reply<'_> {
    ng::parse_reply(out).unwrap()
}

#[test]
fn offer_answer_query_delete_like_rtpengine() {
    let (mut s, mut t) = (
        NgServer::new(0, 1, 1_700_000_000, NgIndex::default()),
        table(),
    );
    let mut req = Vec::new();
    ng::encode_ping(b"c1", &mut req);
    let (o, out) = run(&mut s, &mut t, &req);
    assert_eq!(o, NgOutcome::Reply);
    assert_eq!(reply_of(&out).result, b"pong");

    req.clear();
    ng::encode_offer(
        b"c2",
        b"call-1",
        b"tagA",
        &sdp("192.0.2.1", 5000),
        &["trust-address", "ICE=remove"],
        &mut req,
    );
    let (_, out) = run(&mut s, &mut t, &req);
    let r = reply_of(&out);
    assert!(
        r.is_ok(),
        "{:?}",
        r.error_reason.map(String::from_utf8_lossy)
    );
    let offer = crate::media::sdp::parse(r.sdp.unwrap()).unwrap();
    assert_eq!(offer.streams[0].addr, Some("203.0.113.1".parse().unwrap()));

    req.clear();
    ng::encode_answer(
        b"c3",
        b"call-1",
        b"tagA",
        b"tagB",
        &sdp("198.51.100.2", 6000),
        &[],
        &mut req,
    );
    let (_, out) = run(&mut s, &mut t, &req);
    let r = reply_of(&out);
    assert!(r.is_ok());
    let answer = crate::media::sdp::parse(r.sdp.unwrap()).unwrap();
    assert_ne!(answer.streams[0].port, offer.streams[0].port);

    req.clear();
    ng::encode_list(b"c4", 10, &mut req);
    let (_, out) = run(&mut s, &mut t, &req);
    assert!(String::from_utf8_lossy(&out).contains("call-1"));

    req.clear();
    ng::encode_query(b"c5", b"call-1", None, &mut req);
    let (_, out) = run(&mut s, &mut t, &req);
    let r = reply_of(&out);
    assert!(r.is_ok());
    assert!(r.dict.get(b"tags").is_some());

    req.clear();
    ng::encode_delete(b"c6", b"call-1", b"tagA", None, &[], &mut req);
    let (_, out) = run(&mut s, &mut t, &req);
    assert!(reply_of(&out).is_ok());
    assert_eq!(t.sessions(), 0);
    assert_eq!(s.calls(), 0);

    req.clear();
    ng::encode_query(b"c7", b"call-1", None, &mut req);
    let (_, out) = run(&mut s, &mut t, &req);
    let r = reply_of(&out);
    assert_eq!(r.result, b"error");
    assert!(r.error_reason.is_some());
}

#[test]
fn a_call_belongs_to_one_core_and_is_handed_there() {
    let index = NgIndex::default();
    let (mut s0, mut t) = (NgServer::new(0, 2, 0, index.clone()), table());
    let s1 = NgServer::new(1, 2, 0, index.clone());
    let mut req = Vec::new();
    // Find a Call-ID core 1 owns.
    let cid = (0..100)
        .map(|i| format!("c{i}"))
        .find(|c| s1.core_of(c.as_bytes()) == 1)
        .unwrap();
    ng::encode_offer(
        b"k",
        cid.as_bytes(),
        b"a",
        &sdp("192.0.2.1", 5000),
        &[],
        &mut req,
    );
    let (o, _) = run(&mut s0, &mut t, &req);
    assert_eq!(o, NgOutcome::Handoff(1));
    // Once handed, the owner answers.
    let mut out = Vec::new();
    let mut s1 = s1;
    assert_eq!(s1.handle(0, &req, &mut t, true, &mut out), NgOutcome::Reply);
    assert!(reply_of(&out).is_ok());
    // `list` on the other core sees it too (rtpengine lists every call).
    req.clear();
    ng::encode_list(b"l", 10, &mut req);
    let (o, out) = run(&mut s0, &mut t, &req);
    assert_eq!(o, NgOutcome::Reply);
    assert!(String::from_utf8_lossy(&out).contains(&cid));
}

#[test]
fn garbage_gets_an_error_reply_or_a_counted_drop_never_a_panic() {
    let (mut s, mut t) = (NgServer::new(0, 1, 0, NgIndex::default()), table());
    let (o, out) = run(&mut s, &mut t, b"cookie d7:command5:dance6:call-id1:xe");
    assert_eq!(o, NgOutcome::Reply);
    assert_eq!(reply_of(&out).result, b"error");
    let (o, out) = run(&mut s, &mut t, b"cookie notbencode");
    assert_eq!(o, NgOutcome::Reply);
    assert_eq!(reply_of(&out).result, b"error");
    let (o, _) = run(&mut s, &mut t, b"");
    assert_eq!(o, NgOutcome::Drop);
    // An offer with an SDP we cannot anchor: error, nothing kept.
    let mut req = Vec::new();
    ng::encode_offer(b"k", b"x", b"a", b"not sdp", &[], &mut req);
    let (_, out) = run(&mut s, &mut t, &req);
    assert_eq!(reply_of(&out).result, b"error");
    assert_eq!(t.sessions(), 0);
    // An answer for an unknown call.
    req.clear();
    ng::encode_answer(
        b"k",
        b"nope",
        b"a",
        b"b",
        &sdp("192.0.2.1", 5000),
        &[],
        &mut req,
    );
    let (_, out) = run(&mut s, &mut t, &req);
    assert_eq!(reply_of(&out).result, b"error");
    // Random bytes never panic.
    let mut rng = crate::media::test_rng::Rng::new(0x9e37_79b9_7f4a_7c15);
    for len in 0..2000usize {
        let mut buf = b"ck d7:command5:offer".to_vec();
        for _ in 0..len % 64 {
            buf.push(rng.next() as u8);
        }
        let mut out = Vec::new();
        let _ = s.handle(0, &buf, &mut t, false, &mut out);
    }
    // After all that, the server still works.
    let mut req = Vec::new();
    ng::encode_ping(b"after", &mut req);
    let (_, out) = run(&mut s, &mut t, &req);
    assert_eq!(reply_of(&out).result, b"pong");
}
