//! Contact-me and wake-up fan-out against real peers: SIPp devices register
//! through tether, an application server calls the HTTP API, and the
//! devices (SIPp UAS scenarios) receive the NOTIFY or INVITE over their
//! registered path and answer it; the job reports what they did.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::{
    expect_sipp_ok, free_udp_port, http, post_job, sipp_messages, spawn_sipp, start_with_api,
    wait_job, wait_until, TempDir, API_TOKEN,
};
use tether::sip;

const CONTACT_ME: &str = "application/application-server-contact-me";

/// A SIPp UAC that registers `user` from 127.0.0.1:`port` and exits.
fn register_xml(user: &str, contact_params: &str, accept: Option<&str>) -> String {
    let accept = accept
        .map(|a| format!("Accept: {a}\n      "))
        .unwrap_or_default();
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register">
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: <sip:{user}@127.0.0.1>;tag=[call_number]
      To: <sip:{user}@127.0.0.1>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:{user}@[local_ip]:[local_port]>{contact_params}
      {accept}Expires: 600
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" timeout="5000"/>
</scenario>
"#
    )
}

fn register(
    dir: &TempDir,
    tether: SocketAddr,
    port: u16,
    user: &str,
    params: &str,
    accept: Option<&str>,
) {
    let name = format!("reg-{user}-{port}");
    let child = spawn_sipp(
        dir,
        &name,
        &register_xml(user, params, accept),
        port,
        1,
        Some(tether),
    );
    expect_sipp_ok(dir, &name, child, 20);
}

/// A UAS that answers each incoming NOTIFY with 200 after checking the
/// contact-me event and body; `calls` NOTIFYs end it.
fn notify_uas() -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="contact-me device">
  <recv request="NOTIFY">
    <action>
      <ereg regexp="application-server-contact-me" search_in="hdr" header="Event:" check_it="true" assign_to="ev"/>
      <ereg regexp="RequestID=[0-9]+" search_in="body" check_it="true" assign_to="rid"/>
    </action>
  </recv>
{}  <Reference variables="ev,rid"/>
</scenario>
"#,
        reply("200 OK", Some("dev"), &[])
    )
}

/// A SIPp `<send>` answering the last request with `status`: its Via, From,
/// Call-ID and CSeq, its To tagged `to_tag` (as received when `None`: an
/// in-dialog request already carries our tag), then `extra` header lines.
fn reply(status: &str, to_tag: Option<&str>, extra: &[&str]) -> String {
    let tag = to_tag
        .map(|t| format!(";tag=[pid]{t}[call_number]"))
        .unwrap_or_default();
    let extra: String = extra.iter().map(|l| format!("      {l}\n")).collect();
    format!(
        "  <send>\n    <![CDATA[\n      SIP/2.0 {status}\n      [last_Via:]\n      [last_From:]\n      \
[last_To:]{tag}\n      [last_Call-ID:]\n      [last_CSeq:]\n{extra}      Content-Length: 0\n\n    ]]>\n  </send>\n"
    )
}

fn job_body(targets: &str, kind: &str, extra: &str) -> String {
    format!(
        r#"{{"targets": {targets}, "kind": "{kind}", "request_id": "10210",
        "application_server_addr": "132.143.12.14", "application_server_port": 18443{extra}}}"#
    )
}

/// The first received request in a SIPp message trace that starts with `method`.
fn received(trace: &str, method: &str) -> Option<String> {
    trace
        .split("UDP message received")
        .skip(1)
        .map(|chunk| {
            let start = chunk.find(":\n").map_or(0, |i| i + 2);
            let msg = chunk[start..].replace("\r\n", "\n");
            let msg = msg.trim_start_matches('\n');
            let end = msg.find("\n\n-----").unwrap_or(msg.len());
            msg[..end].to_owned()
        })
        .find(|m| m.starts_with(method))
}

#[test]
fn contact_me_reaches_a_sipp_device_with_seed_000_headers_and_body_and_calls_back() {
    let (rt, tether, api, base) = start_with_api("");
    let dir = TempDir::new("notify-cm");
    let port = free_udp_port();
    register(&dir, tether, port, "7546658000", "", Some(CONTACT_ME));
    let uas = spawn_sipp(&dir, "uas", &notify_uas(), port, 1, None);
    // A webhook receiver for the job's result.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_url = format!("http://{}/result", hook.local_addr().unwrap());
    std::thread::sleep(Duration::from_millis(300)); // the UAS binds its port
    let id = post_job(
        &base,
        &job_body(
            r#"["7546658000@127.0.0.1"]"#,
            "contact-me",
            &format!(r#", "callback_url": "{hook_url}""#),
        ),
    );
    expect_sipp_ok(&dir, "uas", uas, 20);
    let job = wait_job(&base, &id, 10);
    assert_eq!(job["counts"]["delivered"], 1, "{job}");
    assert_eq!(job["devices"]["items"][0]["code"], 200);
    // What the device received, byte for byte where seed 000 fixes it.
    let notify = received(&sipp_messages(&dir, "uas"), "NOTIFY").expect("NOTIFY in trace");
    let first = notify.lines().next().unwrap();
    assert_eq!(
        first,
        format!("NOTIFY sip:7546658000@127.0.0.1:{port} SIP/2.0"),
        "Request-URI = the registered contact"
    );
    assert!(
        notify.contains("\nEvent: application-server-contact-me\n"),
        "{notify}"
    );
    assert!(
        notify.contains(&format!("\nContent-Type: {CONTACT_ME}\n")),
        "{notify}"
    );
    assert!(
        notify.ends_with(
            "RequestID=10210\napplication_server_ip_addr=132.143.12.14\napplication_server_ip_port=18443"
        ) || notify.contains(
            "\n\nRequestID=10210\napplication_server_ip_addr=132.143.12.14\napplication_server_ip_port=18443"
        ),
        "{notify}"
    );
    // The webhook arrives with the summary.
    hook.set_nonblocking(false).unwrap();
    let (mut conn, _) = hook.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = std::io::Read::read(&mut conn, &mut buf) {
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&req);
        if let Some(i) = text.find("\r\n\r\n") {
            let len: usize = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if req.len() >= i + 4 + len {
                break;
            }
        }
    }
    std::io::Write::write_all(
        &mut conn,
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
    )
    .unwrap();
    let text = String::from_utf8_lossy(&req);
    assert!(text.starts_with("POST /result HTTP/1.1"), "{text}");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        (v["job"].as_str(), v["counts"]["delivered"].as_u64()),
        (Some(&*id), Some(1))
    );
    api.shutdown();
    rt.shutdown().unwrap();
}

#[test]
fn a_device_that_did_not_opt_in_is_reported_not_sent_to() {
    let (rt, tether, api, base) = start_with_api("");
    let dir = TempDir::new("notify-optout");
    let port = free_udp_port();
    register(&dir, tether, port, "plain", "", Some("application/sdp"));
    let id = post_job(&base, &job_body(r#""plain@127.0.0.1""#, "contact-me", ""));
    let job = wait_job(&base, &id, 10);
    assert_eq!(job["counts"]["not_accepted"], 1, "{job}");
    assert_eq!(job["counts"]["sent"], 0);
    api.shutdown();
    rt.shutdown().unwrap();
}

#[test]
fn subscribe_opt_in_gets_200_an_initial_notify_and_then_the_contact_me_in_dialog() {
    let (rt, tether, api, base) = start_with_api("");
    let dir = TempDir::new("notify-sub");
    let port = free_udp_port();
    let xml = format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="subscriber">
  <send retrans="500">
    <![CDATA[
      REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: <sip:sub@127.0.0.1>;tag=r[call_number]
      To: <sip:sub@127.0.0.1>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:sub@[local_ip]:[local_port]>
      Expires: 600
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
  <send retrans="500">
    <![CDATA[
      SUBSCRIBE sip:sub@127.0.0.1 SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      Max-Forwards: 70
      From: <sip:sub@127.0.0.1>;tag=s[call_number]
      To: <sip:sub@127.0.0.1>
      Call-ID: [call_id]
      CSeq: 1 SUBSCRIBE
      Contact: <sip:sub@[local_ip]:[local_port]>
      Event: application-server-contact-me
      Accept: application/application-server-contact-me
      Expires: 600
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" rrs="true">
    <action>
      <ereg regexp="600" search_in="hdr" header="Expires:" check_it="true" assign_to="e"/>
    </action>
  </recv>
  <recv request="NOTIFY">
    <action>
      <ereg regexp="active;expires=" search_in="hdr" header="Subscription-State:" check_it="true" assign_to="st"/>
    </action>
  </recv>
{}  <recv request="NOTIFY" timeout="20000">
    <action>
      <ereg regexp="RequestID=10210" search_in="body" check_it="true" assign_to="rid"/>
      <ereg regexp="active" search_in="hdr" header="Subscription-State:" check_it="true" assign_to="st2"/>
    </action>
  </recv>
{}  <Reference variables="e,st,rid,st2"/>
</scenario>
"#,
        reply("200 OK", None, &[]),
        reply("200 OK", None, &[])
    );
    let sub = spawn_sipp(&dir, "sub", &xml, port, 1, Some(tether));
    let dir_ref = rt.directory().clone();
    wait_until(10, "the subscription opts the binding in", || {
        dir_ref
            .lookup("sub@127.0.0.1", 0)
            .first()
            .is_some_and(|c| c.accepts_contact_me())
    });
    let id = post_job(&base, &job_body(r#""sub@127.0.0.1""#, "contact-me", ""));
    expect_sipp_ok(&dir, "sub", sub, 20);
    let job = wait_job(&base, &id, 10);
    assert_eq!(job["counts"]["delivered"], 1, "{job}");
    // The job's NOTIFY travelled in the subscription's dialog.
    let trace = sipp_messages(&dir, "sub");
    let notifies: Vec<_> = trace
        .split("UDP message received")
        .filter(|m| m.contains("NOTIFY sip:"))
        .collect();
    assert_eq!(notifies.len(), 2, "{trace}");
    let call_id = |m: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix("Call-ID: "))
            .map(str::to_owned)
    };
    assert_eq!(call_id(notifies[0]), call_id(notifies[1]));
    api.shutdown();
    rt.shutdown().unwrap();
}

#[test]
fn wake_invite_answered_486_is_acked_and_one_answered_200_gets_ack_and_bye() {
    let (rt, tether, api, base) = start_with_api("");
    let dir = TempDir::new("notify-invite");
    let (busy_port, ok_port) = (free_udp_port(), free_udp_port());
    register(&dir, tether, busy_port, "busy", "", Some("application/sdp"));
    register(
        &dir,
        tether,
        ok_port,
        "answers",
        "",
        Some("application/sdp"),
    );
    let busy = format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="busy device">
  <recv request="INVITE">
    <action>
      <ereg regexp="application/vnd.tether.bootstrap" search_in="hdr" header="Content-Type:" check_it="true" assign_to="ct"/>
      <ereg regexp="credentials_ref=c-1" search_in="body" check_it="true" assign_to="cr"/>
    </action>
  </recv>
{}  <recv request="ACK"/>
  <Reference variables="ct,cr"/>
</scenario>
"#,
        reply("486 Busy Here", Some("busy"), &[])
    );
    let answers = format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answering device">
  <recv request="INVITE"/>
{}  <recv request="ACK"/>
  <recv request="BYE"/>
{}</scenario>
"#,
        reply(
            "200 OK",
            Some("ok"),
            &[r#"Contact: <sip:answers@[local_ip]:[local_port]>"#]
        ),
        reply("200 OK", None, &[])
    );
    let a = spawn_sipp(&dir, "busy", &busy, busy_port, 1, None);
    let b = spawn_sipp(&dir, "answers", &answers, ok_port, 1, None);
    std::thread::sleep(Duration::from_millis(300));
    let id = post_job(
        &base,
        &job_body(
            r#"["busy@127.0.0.1", "answers@127.0.0.1"]"#,
            "wake-invite",
            r#", "credentials_ref": "c-1""#,
        ),
    );
    expect_sipp_ok(&dir, "busy", a, 20);
    expect_sipp_ok(&dir, "answers", b, 20);
    let job = wait_job(&base, &id, 10);
    assert_eq!(job["counts"]["delivered"], 2, "{job}");
    let mut codes: Vec<_> = job["devices"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["code"].as_u64().unwrap())
        .collect();
    codes.sort();
    assert_eq!(codes, vec![200, 486]);
    api.shutdown();
    rt.shutdown().unwrap();
}

#[test]
fn a_challenging_device_gets_one_retry_with_valid_credentials() {
    let (rt, tether, api, base) =
        start_with_api("[notify]\nusername = \"tether\"\npassword = \"s3cret\"\n");
    let dir = TempDir::new("notify-auth");
    let port = free_udp_port();
    register(&dir, tether, port, "careful", "", Some(CONTACT_ME));
    // SIPp checks the digest itself (verifyauth); a bad one never gets its 200.
    let xml = format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="challenging device">
  <recv request="NOTIFY"/>
{}  <recv request="NOTIFY">
    <action>
      <verifyauth assign_to="authvalid" username="tether" password="s3cret"/>
    </action>
  </recv>
  <nop hide="true" test="authvalid" next="good"/>
  <recv request="NEVER" timeout="100"/>
  <label id="good"/>
{}</scenario>
"#,
        reply(
            "401 Unauthorized",
            Some("auth"),
            &[
                r#"WWW-Authenticate: Digest realm="device", nonce="5a8f0c1d2e", qop="auth", algorithm=MD5"#
            ]
        ),
        reply("200 OK", Some("auth"), &[])
    );
    let uas = spawn_sipp(&dir, "auth", &xml, port, 1, None);
    std::thread::sleep(Duration::from_millis(300));
    let id = post_job(&base, &job_body(r#""careful@127.0.0.1""#, "contact-me", ""));
    expect_sipp_ok(&dir, "auth", uas, 20);
    let job = wait_job(&base, &id, 10);
    assert_eq!(job["counts"]["delivered"], 1, "{job}");
    api.shutdown();
    rt.shutdown().unwrap();
}

#[test]
fn namespace_targets_reach_their_scopes_and_a_broadcast_reaches_everyone() {
    let (rt, tether, api, base) = start_with_api("");
    let dir = TempDir::new("notify-ns");
    let (mobile, web) = (free_udp_port(), free_udp_port());
    register(
        &dir,
        tether,
        mobile,
        "foo",
        ";scope=mobile",
        Some(CONTACT_ME),
    );
    register(&dir, tether, web, "foo", ";scope=web", Some(CONTACT_ME));
    // mobile hears "foo:mobile", "foo" and the broadcast; web the last two.
    let m = spawn_sipp(&dir, "mobile", &notify_uas(), mobile, 3, None);
    let w = spawn_sipp(&dir, "web", &notify_uas(), web, 2, None);
    std::thread::sleep(Duration::from_millis(300));
    for (target, devices) in [
        (r#""foo@127.0.0.1:mobile""#, 1),
        (r#""foo@127.0.0.1""#, 2),
        (r#"{"all": true}"#, 2),
    ] {
        let id = post_job(&base, &job_body(target, "contact-me", ""));
        let job = wait_job(&base, &id, 10);
        assert_eq!(job["counts"]["devices"], devices, "{target}: {job}");
        assert_eq!(job["counts"]["delivered"], devices, "{target}: {job}");
    }
    expect_sipp_ok(&dir, "mobile", m, 20);
    expect_sipp_ok(&dir, "web", w, 20);
    api.shutdown();
    rt.shutdown().unwrap();
}

#[test]
fn a_silent_device_times_out_after_timer_f_with_retransmissions_on_the_wire() {
    let (rt, tether, api, base) =
        start_with_api("[notify]\nt1_ms = 100\nt2_ms = 400\ntimeout_ms = 3000\n");
    // The device is a plain socket: it registers, then never answers.
    let dev = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = dev.local_addr().unwrap().port();
    let reg = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKsilent;rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:silent@127.0.0.1>;tag=1\r\nTo: <sip:silent@127.0.0.1>\r\nCall-ID: silent-1\r\n\
CSeq: 1 REGISTER\r\nContact: <sip:silent@127.0.0.1:{port}>\r\nAccept: {CONTACT_ME}\r\nExpires: 600\r\n\
Content-Length: 0\r\n\r\n"
    );
    dev.send_to(reg.as_bytes(), tether).unwrap();
    dev.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = dev.recv_from(&mut buf).unwrap();
    assert_eq!(sip::parse(&buf[..n]).unwrap().status(), Some(200));
    let id = post_job(&base, &job_body(r#""silent@127.0.0.1""#, "contact-me", ""));
    let mut copies: Vec<Vec<u8>> = Vec::new();
    dev.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if let Ok((n, _)) = dev.recv_from(&mut buf) {
            copies.push(buf[..n].to_vec());
        }
    }
    // 100, 200, 400, 400, … ms until 3 s: the first send and 8 retransmissions.
    assert!(copies.len() >= 5, "{} copies", copies.len());
    assert!(
        copies.iter().all(|c| *c == copies[0]),
        "retransmissions are identical"
    );
    let job = wait_job(&base, &id, 10);
    assert_eq!(job["counts"]["timed_out"], 1, "{job}");
    assert_eq!(
        job["counts"]["retransmissions"].as_u64(),
        Some(copies.len() as u64 - 1)
    );
    api.shutdown();
    rt.shutdown().unwrap();
}

#[test]
fn untrusted_api_callers_are_rejected_over_http() {
    let (rt, _tether, api, base) = start_with_api("");
    let body = job_body(r#""x@127.0.0.1""#, "contact-me", "");
    let url = format!("{base}/v1/notify");
    assert_eq!(http("POST", &url, None, Some(&body)).0, 401);
    assert_eq!(
        http("POST", &url, Some("not-the-token-at-all"), Some(&body)).0,
        401
    );
    let (status, err) = http(
        "POST",
        &url,
        Some(API_TOKEN),
        Some(r#"{"targets": "x", "bogus": 1}"#),
    );
    assert_eq!(status, 400);
    assert!(err.contains("bogus"), "{err}");
    let (status, metrics) = http("GET", &format!("{base}/metrics"), None, None);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tether_api_requests_4xx_total 3"),
        "{metrics}"
    );
    api.shutdown();
    rt.shutdown().unwrap();
}

#[test]
fn a_failed_webhook_is_retried_and_an_empty_job_still_reports() {
    let (rt, _tether, api, base) = start_with_api("[webhooks]\nbackoff_ms = 50\nretries = 2\n");
    // The application server's receiver fails once, then accepts.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", hook.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let mut bodies = Vec::new();
        for status in ["500 Internal Server Error", "204 No Content"] {
            let (mut conn, _) = hook.accept().unwrap();
            conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&req).contains("}") {
                match std::io::Read::read(&mut conn, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let reply =
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            std::io::Write::write_all(&mut conn, reply.as_bytes()).unwrap();
            bodies.push(String::from_utf8_lossy(&req).into_owned());
        }
        bodies
    });
    // No device matches: the job is finished at once and still reports.
    let id = post_job(
        &base,
        &job_body(
            r#""nobody@127.0.0.1""#,
            "contact-me",
            &format!(r#", "callback_url": "{url}""#),
        ),
    );
    let bodies = server.join().unwrap();
    assert!(
        bodies[1].contains(&format!("\"job\":\"{id}\"")),
        "{}",
        bodies[1]
    );
    assert!(bodies[1].contains("\"no_binding\":1"), "{}", bodies[1]);
    wait_until(5, "the delivery is counted", || {
        http("GET", &format!("{base}/metrics"), None, None)
            .1
            .contains("tether_webhooks_delivered_total 1\n")
    });
    api.shutdown();
    rt.shutdown().unwrap();
}
