//! A call between two real softphones through tether's proxy: two headless
//! baresip instances (Debian `baresip-core`) register as alice and bob,
//! alice calls bob, bob answers by himself (`answermode=auto`), alice hangs
//! up. The test drives alice and watches both through baresip's `ctrl_tcp`
//! module (netstring-framed JSON commands and events) and checks tether's
//! dialog gauge rises to 1 and falls back to 0.
//!
//! No audio module is loaded: baresip then runs the call with no source
//! and no player, which is all a signalling test needs (a file source
//! would end the call when the file ends).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_udp_port, start, wait_for, TempDir};
use tether::metrics::CoreMetric;
use tether::runtime::Runtime;

/// Whether baresip is here; if not, reports the test skipped (a failure under CI).
fn have_baresip(test: &str) -> bool {
    let ok = Command::new("baresip")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        common::skip(
            test,
            "baresip is not installed (apt-get install baresip-core)",
        );
    }
    ok
}

/// A SIP port for baresip: it binds UDP and TCP on it and TLS on the next
/// port (even with `sip_transports udp`), so all three must be free.
fn free_sip_port() -> u16 {
    for _ in 0..100 {
        let p = free_udp_port();
        let ok = p < u16::MAX
            && TcpListener::bind(("127.0.0.1", p)).is_ok()
            && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
            && UdpSocket::bind(("127.0.0.1", p)).is_ok();
        if ok {
            return p;
        }
    }
    panic!("no free SIP port for baresip in 100 tries");
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One headless baresip, ended by PID on drop (also when the test fails).
struct Phone {
    child: Child,
    log: std::path::PathBuf,
}

impl Phone {
    /// Starts baresip as `user@127.0.0.1`, registering to `tether`, with
    /// its control socket on a port of its own.
    fn start(dir: &TempDir, user: &str, tether: SocketAddr) -> (Phone, u16) {
        let sip_port = free_sip_port();
        let ctrl_port = free_tcp_port();
        dir.file(
            "config",
            &format!(
                "module_path /usr/lib/baresip/modules\nsip_listen 127.0.0.1:{sip_port}\n\
sip_transports udp\nnet_interface 127.0.0.1\ndns_server 127.0.0.1:53\n\
ctrl_tcp_listen 127.0.0.1:{ctrl_port}\n\
module g711.so\nmodule_app account.so\nmodule_app menu.so\nmodule_app ctrl_tcp.so\n"
            ),
        );
        dir.file(
            "accounts",
            &format!(
                "<sip:{user}@127.0.0.1:{};transport=udp>;regint=60;answermode=auto;audio_codecs=PCMU\n",
                tether.port()
            ),
        );
        let log = dir.0.join("baresip.log");
        let child = Command::new("baresip")
            .arg("-f")
            .arg(&dir.0)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("baresip is installed by scripts/test.sh (apt-get install baresip-core)");
        (Phone { child, log }, ctrl_port)
    }

    fn log(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        // baresip's call-progress lines are carriage-return updates.
        s.replace('\r', "\n")
            .chars()
            .rev()
            .take(3000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect()
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SIGTERM lets baresip unregister; SIGKILL if it lingers.
            // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let _ = wait_for(Duration::from_secs(3), || {
                !matches!(self.child.try_wait(), Ok(None))
            });
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A connection to baresip's `ctrl_tcp`: commands out, responses and
/// events in, each a netstring (`<len>:<json>,`).
struct Ctrl {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Every event type seen so far, for failure messages.
    seen: Vec<String>,
}

impl Ctrl {
    /// Connects, retrying while baresip starts (at most 5 s).
    fn connect(port: u16) -> Ctrl {
        let deadline = Instant::now() + Duration::from_secs(5);
        let stream = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    panic!("baresip's ctrl_tcp on {port}: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        Ctrl {
            stream,
            buf: Vec::new(),
            seen: Vec::new(),
        }
    }

    fn command(&mut self, command: &str, params: &str) {
        let body =
            serde_json::json!({"command": command, "params": params, "token": command}).to_string();
        let frame = format!("{}:{body},", body.len());
        self.stream.write_all(frame.as_bytes()).unwrap();
    }

    /// The next complete message, or `None` if none arrives by `deadline`.
    fn next(&mut self, deadline: Instant) -> Option<serde_json::Value> {
        loop {
            if let Some(colon) = self.buf.iter().position(|&b| b == b':') {
                let len: usize = std::str::from_utf8(&self.buf[..colon])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .expect("a netstring length");
                if self.buf.len() > colon + len + 1 {
                    let v = serde_json::from_slice(&self.buf[colon + 1..colon + 1 + len])
                        .expect("ctrl_tcp sends JSON");
                    self.buf.drain(..colon + len + 2);
                    return Some(v);
                }
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return None
                }
                Err(e) => panic!("ctrl_tcp read: {e}"),
            }
        }
    }

    /// Waits (at most `secs`) for the event `kind`; whether it came.
    fn event(&mut self, kind: &str, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while let Some(v) = self.next(deadline) {
            if v["event"] == true {
                let t = v["type"].as_str().unwrap_or("").to_owned();
                self.seen.push(t.clone());
                if t == kind {
                    return true;
                }
            }
        }
        false
    }
}

/// Sum of one metric over tether's cores (published about once a second).
fn metric(rt: &Runtime, m: CoreMetric) -> u64 {
    rt.control().metrics.iter().map(|c| c.get(m as usize)).sum()
}

#[test]
fn alice_calls_bob_through_tether_and_hangs_up() {
    if !have_baresip("alice_calls_bob_through_tether_and_hangs_up") {
        return;
    }
    let (rt, addr) = start("[registrar]\ndomains = [\"127.0.0.1\"]\nmin_expires = 5\n");
    let (alice_dir, bob_dir) = (TempDir::new("bs-alice"), TempDir::new("bs-bob"));
    let (bob, bob_ctrl) = Phone::start(&bob_dir, "bob", addr);
    let (alice, alice_ctrl) = Phone::start(&alice_dir, "alice", addr);
    let logs = |what: &str| {
        format!(
            "{what}\n===== alice\n{}\n===== bob\n{}",
            alice.log(),
            bob.log()
        )
    };
    let d = rt.directory().clone();
    let registered = wait_for(Duration::from_secs(10), || {
        !d.lookup("alice@127.0.0.1", 0).is_empty() && !d.lookup("bob@127.0.0.1", 0).is_empty()
    });
    assert!(registered, "{}", logs("both phones registered within 10 s"));

    let mut a = Ctrl::connect(alice_ctrl);
    let mut b = Ctrl::connect(bob_ctrl);
    // To bob's AOR at tether's address: the INVITE goes to tether, whose
    // location service finds bob's binding.
    a.command("dial", &format!("sip:bob@127.0.0.1:{}", addr.port()));
    let alice_up = a.event("CALL_ESTABLISHED", 15);
    let bob_up = alice_up && b.event("CALL_ESTABLISHED", 5);
    assert!(
        alice_up && bob_up,
        "{}",
        logs(&format!(
            "call established on both sides (alice saw {:?}, bob saw {:?})",
            a.seen, b.seen
        ))
    );
    let gauge_up = wait_for(Duration::from_secs(5), || {
        metric(&rt, CoreMetric::Dialogs) == 1
    });
    assert!(
        gauge_up,
        "{}",
        logs("tether's dialog gauge at 1 during the call")
    );
    assert_eq!(metric(&rt, CoreMetric::CallsAnswered), 1);

    a.command("hangup", "");
    let alice_down = a.event("CALL_CLOSED", 10);
    let bob_down = b.event("CALL_CLOSED", 10);
    assert!(
        alice_down && bob_down,
        "{}",
        logs(&format!(
            "the BYE closed both sides (alice saw {:?}, bob saw {:?})",
            a.seen, b.seen
        ))
    );
    let gauge_down = wait_for(Duration::from_secs(5), || {
        metric(&rt, CoreMetric::Dialogs) == 0
    });
    assert!(gauge_down, "{}", logs("tether's dialog gauge back to 0"));
    assert_eq!(metric(&rt, CoreMetric::ProxyUnmatched), 0, "no 481s");
    drop((alice, bob));
    rt.shutdown().unwrap();
}
