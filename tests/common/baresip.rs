//! Headless baresip (Debian `baresip-core`) for the tests that call
//! through tether with a real softphone: a [`Phone`] process ended on drop,
//! and [`Ctrl`], its `ctrl_tcp` control socket (netstring-framed JSON
//! commands, responses and events).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_udp_port, wait_for, TempDir};

/// Whether baresip is here; if not, reports the test skipped (a failure under CI).
pub fn have_baresip(test: &str) -> bool {
    super::have_tools(test, &[("baresip", "-h", "baresip-core")])
}

/// A SIP port for baresip: it binds UDP and TCP on it and TLS on the next
/// port (even with `sip_transports udp`), so all three must be free.
pub fn free_sip_port() -> u16 {
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

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One headless baresip, ended by PID on drop (also when the test fails).
pub struct Phone {
    pub child: Child,
    pub log: std::path::PathBuf,
    pub sip_port: u16,
}

impl Phone {
    /// Starts baresip as `user@127.0.0.1`, registering to `tether`, with
    /// its control socket on a port of its own; `extra` are more config
    /// lines (audio). `-s` traces every SIP message into its log, so a test
    /// can read the SDP each phone received.
    pub fn start(dir: &TempDir, user: &str, tether: SocketAddr, extra: &str) -> (Phone, u16) {
        Phone::start_account(
            dir,
            &format!(
                "<sip:{user}@127.0.0.1:{};transport=udp>;regint=60;answermode=auto;audio_codecs=PCMU",
                tether.port()
            ),
            extra,
        )
    }

    /// Starts baresip with one account line as written (`regint=0`: it
    /// never registers, yet takes calls for its user and can send
    /// requests, e.g. `options <uri>`).
    pub fn start_account(dir: &TempDir, account: &str, extra: &str) -> (Phone, u16) {
        let sip_port = free_sip_port();
        let ctrl_port = free_tcp_port();
        dir.file(
            "config",
            &format!(
                "module_path /usr/lib/baresip/modules\nsip_listen 127.0.0.1:{sip_port}\n\
sip_transports udp\nnet_interface 127.0.0.1\ndns_server 127.0.0.1:53\n\
ctrl_tcp_listen 127.0.0.1:{ctrl_port}\n\
module g711.so\nmodule_app account.so\nmodule_app menu.so\nmodule_app ctrl_tcp.so\n{extra}"
            ),
        );
        dir.file("accounts", &format!("{account}\n"));
        let log = dir.0.join("baresip.log");
        let child = Command::new("baresip")
            .arg("-s")
            .arg("-f")
            .arg(&dir.0)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("baresip is installed by scripts/test.sh (apt-get install baresip-core)");
        (
            Phone {
                child,
                log,
                sip_port,
            },
            ctrl_port,
        )
    }

    /// The whole log, progress lines split.
    pub fn full_log(&self) -> String {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .replace('\r', "\n")
    }

    /// The SDP media lines of the SIP messages this phone received
    /// (`received`) or sent, from its `-s` trace: for each message with a
    /// body, its first line and the `(c= address, m=audio port)`.
    pub fn sdps(&self, received: bool) -> Vec<(String, String, u16)> {
        let me = format!("127.0.0.1:{}", self.sip_port);
        let log = self.full_log();
        let mut out = Vec::new();
        let mut lines = log.lines().peekable();
        while let Some(l) = lines.next() {
            // A trace block: "UDP <from> -> <to>", the message, an ANSI reset.
            let Some((from, to)) = l.strip_prefix("UDP ").and_then(|r| r.split_once(" -> ")) else {
                continue;
            };
            let ours = if received {
                to.trim() == me
            } else {
                from.trim() == me
            };
            let first = lines.next().unwrap_or_default().to_owned();
            let (mut c, mut m) = (None, None);
            while let Some(body) = lines.next_if(|b| !b.starts_with('\u{1b}')) {
                if let Some(a) = body.strip_prefix("c=IN IP4 ") {
                    c = Some(a.trim().to_owned());
                }
                if let Some(port) = body
                    .strip_prefix("m=audio ")
                    .and_then(|r| r.split(' ').next())
                {
                    m = port.parse().ok();
                }
            }
            if let (true, Some(c), Some(m)) = (ours, c, m) {
                out.push((first, c, m));
            }
        }
        out
    }

    /// The log's tail, for failure messages.
    pub fn log(&self) -> String {
        // baresip's call-progress lines are carriage-return updates.
        self.full_log()
            .lines()
            .filter(|l| !l.contains("audio="))
            .collect::<Vec<_>>()
            .join("\n")
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
pub struct Ctrl {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Every event type seen so far, for failure messages.
    pub seen: Vec<String>,
    /// Every event seen so far.
    pub events: Vec<serde_json::Value>,
}

impl Ctrl {
    /// Connects, retrying while baresip starts (at most 5 s).
    pub fn connect(port: u16) -> Ctrl {
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
            events: Vec::new(),
        }
    }

    pub fn command(&mut self, command: &str, params: &str) {
        let body =
            serde_json::json!({"command": command, "params": params, "token": command}).to_string();
        let frame = format!("{}:{body},", body.len());
        self.stream.write_all(frame.as_bytes()).unwrap();
    }

    /// The next complete message, or `None` if none arrives by `deadline`.
    pub fn next(&mut self, deadline: Instant) -> Option<serde_json::Value> {
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
    pub fn event(&mut self, kind: &str, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while let Some(v) = self.next(deadline) {
            if v["event"] == true {
                let t = v["type"].as_str().unwrap_or("").to_owned();
                self.seen.push(t.clone());
                self.events.push(v.clone());
                if t == kind {
                    return true;
                }
            }
        }
        false
    }
}
