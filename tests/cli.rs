//! The `tether` binary end to end over loopback: it starts on its embedded
//! defaults (with the listen address overridden to an ephemeral loopback
//! port), answers real SIP peers, survives garbage, and stops cleanly on
//! SIGINT and SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tether::sip;

struct Tether {
    child: Child,
    addr: SocketAddr,
}

impl Tether {
    fn start(extra: &[&str]) -> Tether {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["run", "--listen", "127.0.0.1:0", "--workers", "2"])
            .args(["--api-listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tether");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening udp ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Tether { child, addr }
    }

    fn signal(&mut self, sig: libc::c_int) -> std::process::ExitStatus {
        // SAFETY: kill(2) on the PID of a child we spawned and still own.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill().unwrap();
        panic!("tether did not stop within 5 s of signal {sig}");
    }
}

impl Drop for Tether {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn options(branch: &str) -> String {
    format!(
        "OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bK{branch};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:ping@127.0.0.1>\r\n\
Call-ID: {branch}@probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

fn exchange(sock: &UdpSocket, to: SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
    sock.send_to(msg, to).unwrap();
    let mut buf = [0u8; 4096];
    match sock.recv_from(&mut buf) {
        Ok((n, _)) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn client() -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock
}

#[test]
fn answers_options_and_stops_on_sigint() {
    let mut t = Tether::start(&[]);
    let sock = client();
    let reply = exchange(&sock, t.addr, options("a1").as_bytes()).expect("200 to OPTIONS");
    let m = sip::parse(&reply).unwrap();
    assert_eq!(m.status(), Some(200));
    let via = m.top_via().unwrap();
    assert_eq!(via.branch(), Some("z9hG4bKa1"));
    assert_eq!(via.rport(), Some(Some(sock.local_addr().unwrap().port())));
    assert_eq!(via.received(), Some("127.0.0.1"));
    let status = t.signal(libc::SIGINT);
    assert!(status.success(), "{status:?}");
}

#[test]
fn malformed_gets_400_with_reason_and_garbage_is_survived() {
    let mut t = Tether::start(&[]);
    let sock = client();
    let bad = options("b1").replace("CSeq: 1 OPTIONS", "CSeq: one OPTIONS");
    let reply = exchange(&sock, t.addr, bad.as_bytes()).expect("400");
    let m = sip::parse(&reply).unwrap();
    assert_eq!(
        m.start,
        sip::StartLine::Response {
            code: 400,
            reason: "Bad CSeq Header"
        }
    );

    // Garbage, truncations and an oversize datagram: dropped without an answer.
    let good = options("b2");
    for cut in (0..good.len()).step_by(13) {
        sock.send_to(&good.as_bytes()[..cut], t.addr).unwrap();
    }
    sock.send_to(&[0xffu8; 2000], t.addr).unwrap();
    sock.send_to(&vec![b'A'; 9000], t.addr).unwrap();
    // Drain whatever the truncations earned (a 400 for the ones that still had a Via).
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while sock.recv_from(&mut buf).is_ok() {}
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();

    let reply = exchange(&sock, t.addr, good.as_bytes()).expect("still answering");
    assert_eq!(sip::parse(&reply).unwrap().status(), Some(200));
    assert!(t.signal(libc::SIGTERM).success());
}

#[test]
fn crlf_keepalive_gets_pong() {
    let t = Tether::start(&[]);
    let sock = client();
    assert_eq!(
        exchange(&sock, t.addr, b"\r\n\r\n").as_deref(),
        Some(&b"\r\n"[..])
    );
}

/// A real peer: sipsak's OPTIONS probe (Debian package `sipsak`).
#[test]
fn sipsak_options_probe_gets_200() {
    let t = Tether::start(&[]);
    let out = Command::new("sipsak")
        .args(["-vv", "-s", &format!("sip:ping@{}", t.addr)])
        .output()
        .expect("sipsak is installed by .ci/run (apt-get install sipsak)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "sipsak failed: {text}");
    assert!(text.contains("200 OK"), "{text}");
}

#[test]
fn config_errors_name_the_key() {
    let dir = std::env::temp_dir().join(format!("tether-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[sip]\nmax_datagram = 1\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sip.max_datagram"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("config")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("[sip]"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_api_comes_up_beside_sip_and_a_busy_api_port_is_named() {
    // Both lines on stdout, the HTTP one usable at once.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["run", "--listen", "127.0.0.1:0", "--workers", "1"])
        .args(["--api-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut udp, mut http) = (String::new(), String::new());
    out.read_line(&mut udp).unwrap();
    out.read_line(&mut http).unwrap();
    assert!(udp.starts_with("listening udp "), "{udp}");
    let api = http
        .trim()
        .strip_prefix("listening http ")
        .expect("an http line");
    let mut conn = std::net::TcpStream::connect(api).unwrap();
    std::io::Write::write_all(
        &mut conn,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut reply = String::new();
    std::io::Read::read_to_string(&mut conn, &mut reply).unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.ends_with("ok\n"),
        "{reply}"
    );
    // A second tether wanting the same API port fails at start and says which key.
    let busy = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--api-listen",
            api,
        ])
        .output()
        .unwrap();
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("api.listen"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn help_lists_subcommands() {
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for sub in ["run", "config", "check"] {
        assert!(text.contains(sub), "{text}");
    }
}

/// A real peer under load: SIPp (Debian package `sip-tester`) sends 2,000
/// OPTIONS at 1,000/s; every one must get its 200.
#[test]
fn sipp_options_load_all_answered() {
    let t = Tether::start(&[]);
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sipp/options_uac.xml");
    let out = Command::new("sipp")
        .args([
            "-sf", scenario, "-m", "2000", "-r", "1000", "-l", "200", "-timeout", "30s", "-nostdin",
        ])
        // SIPp reads `-p 0` as its default 5060; take a port of our own.
        .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
        .arg(t.addr.to_string())
        .stdout(Stdio::null())
        .output()
        .expect("sipp is installed by .ci/run (apt-get install sip-tester)");
    let err = String::from_utf8_lossy(&out.stderr);
    // SIPp exits 0 only when every call succeeded.
    assert_eq!(out.status.code(), Some(0), "sipp: {err}");
}
