//! The pieces of the held-call test that stand without tether's proxy: the
//! test push gateway (`tests/fixtures/push_gateway.py`) records the body
//! `tether::hold` builds and answers as told (2xx, 500, late, no answer),
//! and it wakes a real baresip the way the held-call test needs: a phone
//! stopped with SIGSTOP (its NAT path silent) is continued, registers, and
//! calls the bridge URI (`options <uri>` over ctrl_tcp) from its one SIP
//! socket; it then auto-answers an INVITE for its user although it never
//! registered that account (`regint=0`). A UDP socket stands in for tether.
//! And the state the held-call test starts from: a push binding (which
//! baresip cannot register: it puts no URI parameters in its Contact)
//! registered through tether keeps its push parameters, and its silent
//! path is declared dead.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::baresip::{have_baresip, Ctrl, Phone};
use common::push_gateway::{register_push_binding, PushGateway};
use common::{wait_for, TempDir};
use tether::hold::{bridge_uri, BridgeKeys, Held, PushBody, PushParams};

/// A push body as tether builds it, for a bridge URI at `host`.
fn body(host: &str) -> (String, Vec<u8>) {
    let keys = BridgeKeys::new(1, &[(1, [7u8; 32])]);
    let held = Held {
        core: 0,
        slot: 5,
        nonce: 9,
        expires: 4_000_000_000,
    };
    let token = keys.seal(&held, [3u8; 12]);
    let uri = bridge_uri("bridge-", &token, host);
    let params = PushParams::from_contact(
        "sip:bob@192.0.2.4:5060;pn-provider=test;pn-prid=bob-phone;pn-param=p%2B1",
    )
    .unwrap();
    let json = PushBody::new(
        &params,
        "bob@127.0.0.1",
        "held-1@127.0.0.1",
        "<sip:alice@127.0.0.1>;tag=a1",
        &uri,
        &token,
        30_000,
    )
    .to_json();
    (uri, json)
}

/// One POST; its status, or `None` when the connection ended without one.
fn post(url: &str, body: &[u8]) -> Option<u16> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
        .ok()
        .map(|r| r.status().as_u16())
}

fn have_python(test: &str) -> bool {
    common::have_tools(test, &[("python3", "--version", "python3")])
}

#[test]
fn push_gateway_records_and_answers_as_told() {
    if !have_python("push_gateway_records_and_answers_as_told") {
        return;
    }
    let gw = PushGateway::start(&["--statuses", "500,200"]);
    let (uri, json) = body("127.0.0.1:5060");
    assert_eq!(post(&gw.url(), &json), Some(500));
    assert_eq!(post(&gw.url(), &json), Some(200));
    gw.control(r#"{"refuse": true}"#);
    assert_eq!(post(&gw.url(), &json), None, "no answer when refusing");
    gw.control(r#"{"refuse": false, "status": 202, "delay_ms": 50}"#);
    assert_eq!(post(&gw.url(), &json), Some(202));
    assert_eq!(post(&gw.url(), b"{not json"), Some(400));
    assert!(gw.wait("push", 5, 5), "{:?}", gw.records("push"));

    let pushes = gw.records("push");
    let statuses: Vec<_> = pushes.iter().map(|p| p["status"].as_u64()).collect();
    assert_eq!(
        statuses,
        [Some(500), Some(200), None, Some(202), Some(400)],
        "{pushes:?}"
    );
    assert_eq!(pushes[3]["delay_ms"], 50);
    // The body tether's hold module builds, field for field.
    let b = &pushes[0]["body"];
    assert_eq!(b["pn_provider"], "test");
    assert_eq!(b["pn_prid"], "bob-phone");
    assert_eq!(b["pn_param"], "p+1");
    assert_eq!(b["aor"], "bob@127.0.0.1");
    assert_eq!(b["call_id"], "held-1@127.0.0.1");
    assert_eq!(b["from"], "<sip:alice@127.0.0.1>;tag=a1");
    assert_eq!(b["bridge_uri"], uri.as_str());
    assert!(uri.ends_with(&format!("{}@127.0.0.1:5060", b["token"].as_str().unwrap())));
    assert_eq!(b["expires_ms"], 30_000);
    assert!(pushes[4]["error"].is_string());
    assert!(gw.records("action").is_empty(), "no action was configured");
}

/// SIP messages arriving at `sock` until `done` holds for the list (at
/// most `secs`).
fn collect(
    sock: &UdpSocket,
    secs: u64,
    mut done: impl FnMut(&[(String, std::net::SocketAddr)]) -> bool,
) -> Vec<(String, std::net::SocketAddr)> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut got = Vec::new();
    let mut buf = [0u8; 65536];
    while !done(&got) {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            got.push((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
        }
    }
    got
}

#[test]
fn push_gateway_wakes_a_stopped_baresip_to_call_the_bridge_uri() {
    let test = "push_gateway_wakes_a_stopped_baresip_to_call_the_bridge_uri";
    if !have_python(test) || !have_baresip(test) {
        return;
    }
    // Stands in for tether: the bridge URI and bob's registrar point here.
    let tether = UdpSocket::bind("127.0.0.1:0").unwrap();
    let host = tether.local_addr().unwrap().to_string();
    let dir = TempDir::new("pgw-bob");
    let (bob, ctrl_port) = Phone::start_account(
        &dir,
        &format!("<sip:bob@{host};transport=udp>;regint=0;answermode=auto;audio_codecs=PCMU"),
        "",
    );
    let bob_sip = format!("127.0.0.1:{}", bob.sip_port);
    // Up once its control socket answers; then frozen like a phone whose
    // app sleeps (its socket still takes datagrams, nothing answers).
    drop(Ctrl::connect(ctrl_port));
    let pid = bob.child.id().to_string();
    // SAFETY: kill(2) on the PID of a child this test spawned and has not reaped.
    unsafe { libc::kill(bob.child.id() as libc::pid_t, libc::SIGSTOP) };

    let ctrl = format!("ctrl 127.0.0.1:{ctrl_port}");
    let gw = PushGateway::start(&[
        "--action",
        &format!("signal {pid} CONT"),
        "--action",
        &format!(
            "{ctrl} uanew <sip:bob@{host};transport=udp>;regint=60;answermode=auto;audio_codecs=PCMU"
        ),
        "--action",
        &format!("{ctrl} options {{bridge_uri}}"),
    ]);
    let (uri, json) = body(&host);
    assert_eq!(post(&gw.url(), &json), Some(200));
    let has = |got: &[(String, std::net::SocketAddr)], start: &str| {
        got.iter().any(|(m, _)| m.starts_with(start))
    };
    let options = format!("OPTIONS {uri} SIP/2.0");
    let got = collect(&tether, 10, |g| has(g, "REGISTER ") && has(g, &options));
    let report = || {
        format!(
            "got {got:#?}\nactions {:#?}\n{}",
            gw.records("action"),
            bob.log()
        )
    };
    assert!(
        has(&got, "REGISTER ") && has(&got, &options),
        "{}",
        report()
    );
    // Both from the phone's one SIP socket: the call-back's flow is the
    // flow its registration came over.
    assert!(
        got.iter().all(|(_, from)| from.to_string() == bob_sip),
        "{}",
        report()
    );
    // The last action's record may trail the OPTIONS it caused.
    assert!(gw.wait("action", 3, 5), "{}", report());
    let actions = gw.records("action");
    assert!(actions.iter().all(|a| a["ok"] == true), "{}", report());

    // The held INVITE as tether would forward it, to bob's AOR user: bob
    // answers by himself.
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";
    let invite = format!(
        "INVITE sip:bob@{bob_sip} SIP/2.0\r\n\
Via: SIP/2.0/UDP {host};branch=z9hG4bKheld1;rport\r\nMax-Forwards: 69\r\n\
To: <sip:bob@127.0.0.1>\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nCall-ID: held-1@127.0.0.1\r\n\
CSeq: 1 INVITE\r\nContact: <sip:alice@{host}>\r\nContent-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    tether.send_to(invite.as_bytes(), &bob_sip).unwrap();
    let got = collect(&tether, 10, |g| has(g, "SIP/2.0 200"));
    assert!(
        has(&got, "SIP/2.0 200") && got.iter().any(|(m, _)| m.contains("CSeq: 1 INVITE")),
        "bob answered the INVITE: {got:#?}\n{}",
        bob.log()
    );
}

#[test]
fn a_push_binding_keeps_its_parameters_and_its_silent_path_dies() {
    if !have_python("a_push_binding_keeps_its_parameters_and_its_silent_path_dies") {
        return;
    }
    let gw = PushGateway::start(&[]);
    let (rt, addr) = common::start(&format!(
        "[registrar]\ndomains = [\"127.0.0.1\"]\nmin_expires = 5\n\
[keepalive]\ninterval_ms = 600\ntimeout_ms = 300\nmax_misses = 1\njitter_ms = 0\n\
[push]\nhold_ms = 10000\n[push.gateways]\ntest = \"{}\"\n",
        gw.url()
    ));
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    register_push_binding(
        &phone,
        addr,
        "bob",
        "pn-provider=test;pn-prid=bob%2Dphone;pn-param=p%2B1",
        60,
    );
    let dir = rt.directory().clone();
    let views = dir.lookup("bob@127.0.0.1", 1);
    assert_eq!(views.len(), 1, "{views:?}");
    let pn = PushParams::from_contact(&views[0].contact)
        .unwrap_or_else(|| panic!("push parameters kept in {:?}", views[0].contact));
    assert_eq!(
        (pn.provider.as_str(), pn.prid.as_str(), pn.param.as_deref()),
        ("test", "bob-phone", Some("p+1"))
    );
    assert_eq!(
        tether::config::Config::from_toml(&format!("[push.gateways]\ntest = \"{}\"\n", gw.url()))
            .unwrap()
            .push
            .gateway(&pn.provider),
        Some(gw.url().as_str())
    );
    // Nobody answers the prompts: the binding is marked unreachable.
    let dead = wait_for(Duration::from_secs(10), || {
        !dir.lookup("bob@127.0.0.1", 1)[0].is_reachable()
    });
    assert!(dead, "the silent push binding was never marked unreachable");
    rt.shutdown().unwrap();
}
