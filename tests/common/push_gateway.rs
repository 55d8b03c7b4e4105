//! The test push gateway (`tests/fixtures/push_gateway.py`): a process
//! that takes tether's push POSTs, records them, answers as told and plays
//! the woken device (commands to a baresip, signals). Ended on drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::wait_for;

pub struct PushGateway {
    child: Child,
    pub port: u16,
    /// Every JSON line it printed: `{"event": "push", …}` per push and
    /// `{"event": "action", …}` per action run.
    lines: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl PushGateway {
    /// Starts the gateway with `args` (see the script's doc: `--status`,
    /// `--statuses`, `--delay-ms`, `--refuse`, `--action`).
    pub fn start(args: &[&str]) -> PushGateway {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/push_gateway.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs tests/fixtures/push_gateway.py");
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first = String::new();
        out.read_line(&mut first)
            .expect("the gateway prints its port");
        let port = first
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("a port on the first line, got {first:?}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in out.lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str(&line) {
                    sink.lock().unwrap().push(v);
                }
            }
        });
        PushGateway { child, port, lines }
    }

    /// The URL for `[push.gateways]`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/push", self.port)
    }

    /// The records of `event` ("push" or "action") so far.
    pub fn records(&self, event: &str) -> Vec<serde_json::Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|v| v["event"] == event)
            .cloned()
            .collect()
    }

    /// Waits (at most `secs`) for `n` records of `event`; whether they came.
    pub fn wait(&self, event: &str, n: usize, secs: u64) -> bool {
        wait_for(Duration::from_secs(secs), || self.records(event).len() >= n)
    }

    /// Changes how the following pushes are answered (`POST /control`),
    /// e.g. `{"status": 500}`, `{"refuse": true}`, `{"actions": […]}`.
    pub fn control(&self, json: &str) {
        let (status, body) = super::http(
            "POST",
            &format!("http://127.0.0.1:{}/control", self.port),
            None,
            Some(json),
        );
        assert_eq!(status, 200, "push gateway control {json}: {body}");
    }
}

impl Drop for PushGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Registers `user@127.0.0.1` at `tether` from `sock` with a Contact that
/// carries RFC 8599 push parameters (`pn`, e.g.
/// `pn-provider=test;pn-prid=bob-phone`), as a phone whose app then
/// sleeps: baresip cannot put URI parameters into its Contact, so a test
/// registers the push binding itself and leaves `sock` silent (its NAT
/// path then dies after the keepalive's misses). Panics unless tether
/// answers 200.
pub fn register_push_binding(
    sock: &std::net::UdpSocket,
    tether: std::net::SocketAddr,
    user: &str,
    pn: &str,
    expires: u32,
) {
    let port = sock.local_addr().unwrap().port();
    let msg = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKpn{user};rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=pn1\r\nTo: <sip:{user}@127.0.0.1>\r\n\
Call-ID: pn-{user}-{port}\r\nCSeq: 1 REGISTER\r\nContact: <sip:{user}@127.0.0.1:{port};{pn}>\r\n\
Expires: {expires}\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(msg.as_bytes(), tether).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = sock
            .recv_from(&mut buf)
            .expect("tether answers the REGISTER");
        let m = tether::sip::parse(&buf[..n]).expect("tether sends SIP");
        // A keepalive prompt may come first on a fast test configuration.
        if let Some(status) = m.status() {
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&buf[..n]));
            return;
        }
    }
}
