//! SUBSCRIBE opt-in through the engine: the answers, the dialog's NOTIFYs
//! and the binding's flag as subscriptions start, refresh, end and expire.

use super::*;

#[test]
fn subscribe_opt_in_answers_200_notifies_and_carries_later_notifies_in_dialog() {
    let dir = directory(0);
    let mut e = Eng::new(
        Arc::new(NotifyConfig::default()),
        dir.clone(),
        vec!["192.0.2.1:5060".parse().unwrap()],
        1000,
        1,
    );
    let sub = b"SUBSCRIBE sip:7546658000@example.net SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKs1;rport\r\n\
From: <sip:7546658000@example.net>;tag=subtag\r\nTo: <sip:7546658000@example.net>\r\n\
Call-ID: sub-1\r\nCSeq: 1 SUBSCRIBE\r\nMax-Forwards: 70\r\nEvent: application-server-contact-me\r\n\
Expires: 600\r\nContact: <sip:7546658000@192.168.1.20:5060>\r\nContent-Length: 0\r\n\r\n";
    let m = sip::parse(sub).unwrap();
    let c = m.validate().unwrap();
    let mut out = Vec::new();
    let a = e.subscribe(&m, &c, dev_addr(), 0, 5000, "ourtag", &mut out);
    assert_eq!(a, SubscribeAnswer::Active(600));
    let resp = sip::parse(&out).unwrap();
    assert_eq!(resp.status(), Some(200));
    assert_eq!(resp.header(HeaderName::Expires), Some("600"));
    let mut sent = Vec::new();
    e.drain_outbound(&mut |b, _, _| sent.push(b.to_vec()));
    let first = sent[0].clone();
    let n = sip::parse(&first).unwrap();
    let nc = n.validate().unwrap();
    assert_eq!(n.method(), Some(Method::Notify));
    assert_eq!(
        n.header(HeaderName::SubscriptionState),
        Some("active;expires=600")
    );
    assert_eq!(
        (nc.call_id, nc.to.tag(), nc.from.tag()),
        ("sub-1", Some("subtag"), Some("ourtag"))
    );
    assert!(
        dir.lookup("7546658000@example.net", 10)[0].accepts_contact_me(),
        "the subscription opted the binding in"
    );
    let mut ok = Vec::new();
    writer::response_to(&mut ok, &n, 200, "OK", None, None).finish(None);
    assert!(respond(&mut e, &sip::parse(&ok).unwrap(), 5010));
    // The same SUBSCRIBE again (its 200 lost): the same dialog tag, no new NOTIFY.
    let again = e.subscribe(&m, &c, dev_addr(), 0, 5020, "othertag", &mut out);
    assert_eq!(again, SubscribeAnswer::Active(599));
    assert_eq!(
        sip::parse(&out).unwrap().to().unwrap().tag(),
        Some("ourtag")
    );
    let mut none = Vec::new();
    e.drain_outbound(&mut |b, _, _| none.push(b.to_vec()));
    assert!(none.is_empty(), "a retransmitted SUBSCRIBE starts nothing");
    // A contact-me job now travels inside the dialog.
    let s = spec(Kind::ContactMe);
    let (devices, _) = resolve::resolve(&dir, &s.targets, Kind::ContactMe, 10);
    let job = Arc::new(Job::new(
        4,
        s,
        b"RequestID=1\r\n"[..].into(),
        devices,
        vec![],
        1,
        CREATED,
    ));
    e.start(
        JobPart {
            job: job.clone(),
            devices: vec![0],
        },
        None,
        6000,
    );
    e.tick(6000);
    sent.clear();
    e.drain_outbound(&mut |b, _, _| sent.push(b.to_vec()));
    let second = sent[0].clone();
    let n = sip::parse(&second).unwrap();
    let nc = n.validate().unwrap();
    assert_eq!(nc.call_id, "sub-1");
    assert_eq!(nc.cseq.seq, 2);
    assert_eq!(
        n.header(HeaderName::SubscriptionState),
        Some("active;expires=599")
    );
    // Unsubscribe: 200, a terminated NOTIFY, and the flag is cleared.
    let unsub = String::from_utf8_lossy(sub)
        .replace("Expires: 600", "Expires: 0")
        .replace(
            "To: <sip:7546658000@example.net>",
            "To: <sip:7546658000@example.net>;tag=ourtag",
        )
        .replace("1 SUBSCRIBE", "2 SUBSCRIBE");
    let m = sip::parse(unsub.as_bytes()).unwrap();
    let c = m.validate().unwrap();
    assert_eq!(
        e.subscribe(&m, &c, dev_addr(), 0, 7000, "x", &mut out),
        SubscribeAnswer::Terminated
    );
    sent.clear();
    e.drain_outbound(&mut |b, _, _| sent.push(b.to_vec()));
    assert!(sip::parse(&sent[0])
        .unwrap()
        .header(HeaderName::SubscriptionState)
        .unwrap()
        .starts_with("terminated"));
    assert!(!dir.lookup("7546658000@example.net", 10)[0].accepts_contact_me());
}

#[test]
fn subscribe_refusals_name_the_problem() {
    let dir = directory(0);
    let mut e = Eng::new(
        Arc::new(NotifyConfig::default()),
        dir,
        vec!["192.0.2.1:5060".parse().unwrap()],
        1000,
        1,
    );
    let base = "SUBSCRIBE sip:7546658000@example.net SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKs1\r\n\
From: <sip:7546658000@example.net>;tag=subtag\r\nTo: <sip:7546658000@example.net>\r\n\
Call-ID: sub-1\r\nCSeq: 1 SUBSCRIBE\r\nMax-Forwards: 70\r\nEvent: EVENT\r\n\
Expires: EXP\r\nContact: <sip:7546658000@192.168.1.20:5060>\r\n\r\n";
    let cases = [
        ("presence", "600", dev_addr(), 489),
        ("application-server-contact-me", "10", dev_addr(), 423),
        (
            "application-server-contact-me",
            "600",
            "203.0.113.9:5060".parse().unwrap(),
            404,
        ),
    ];
    for (event, exp, src, code) in cases {
        let req = base.replace("EVENT", event).replace("EXP", exp);
        let m = sip::parse(req.as_bytes()).unwrap();
        let c = m.validate().unwrap();
        let mut out = Vec::new();
        assert_eq!(
            e.subscribe(&m, &c, src, 0, 0, "t", &mut out),
            SubscribeAnswer::Refused(code)
        );
        assert_eq!(sip::parse(&out).unwrap().status(), Some(code));
    }
}

#[test]
fn an_expired_subscription_opts_its_binding_out_again() {
    let dir = directory(0);
    let mut e = Eng::new(
        Arc::new(NotifyConfig::default()),
        dir.clone(),
        vec!["192.0.2.1:5060".parse().unwrap()],
        1000,
        1,
    );
    let sub = b"SUBSCRIBE sip:7546658000@example.net SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bKs1\r\n\
From: <sip:7546658000@example.net>;tag=subtag\r\nTo: <sip:7546658000@example.net>\r\n\
Call-ID: sub-1\r\nCSeq: 1 SUBSCRIBE\r\nMax-Forwards: 70\r\nEvent: application-server-contact-me\r\n\
Expires: 60\r\nContact: <sip:7546658000@192.168.1.20:5060>\r\nContent-Length: 0\r\n\r\n";
    let m = sip::parse(sub).unwrap();
    let c = m.validate().unwrap();
    let mut out = Vec::new();
    let a = e.subscribe(&m, &c, dev_addr(), 0, 5000, "ourtag", &mut out);
    assert_eq!(a, SubscribeAnswer::Active(60));
    let opted_in = || dir.lookup("7546658000@example.net", 10)[0].accepts_contact_me();
    assert!(opted_in());
    e.tick(64_999);
    assert_eq!(e.subscriptions.len(), 1);
    assert!(opted_in());
    // Expiry is swept once a second.
    e.tick(65_999);
    assert_eq!(e.subscriptions.len(), 0);
    assert!(!opted_in(), "the expiry cleared the binding's flag");
}
