//! `[persist]` end to end, on the real binary: REGISTERs answered 200, the
//! process killed with SIGKILL mid-load, a restart on the same directory,
//! and every AOR answered more than `persist.fsync_ms` before the kill is
//! back (GET /v1/registrations). Then a journal cut mid-record: the restart
//! still works and says what it dropped.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TempDir, API_TOKEN};

const FSYNC_MS: u64 = 100;

struct Tether {
    child: Child,
    sip: SocketAddr,
    api: String,
    stderr: Arc<Mutex<String>>,
}

fn config(dir: &TempDir) -> std::path::PathBuf {
    let state = dir.0.join("state");
    dir.file(
        "tether.toml",
        &format!(
            "[sip]\nlisten = [\"127.0.0.1:0\"]\n[runtime]\nworkers = 2\n\
             [api]\nlisten = \"127.0.0.1:0\"\nclients = [{{ name = \"t\", token = \"{API_TOKEN}\" }}]\n\
             [persist]\nenabled = true\ndir = \"{}\"\nfsync_ms = {FSYNC_MS}\nsnapshot_s = 10\n",
            state.display()
        ),
    )
}

fn start(cfg: &std::path::Path) -> Tether {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["run", "--config"])
        .arg(cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tether runs");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut udp, mut api) = (String::new(), String::new());
    out.read_line(&mut udp).unwrap();
    out.read_line(&mut api).unwrap();
    let sip = udp
        .trim()
        .strip_prefix("listening udp ")
        .unwrap_or_else(|| panic!("{udp}"))
        .parse()
        .unwrap();
    let api = format!(
        "http://{}",
        api.trim().strip_prefix("listening http ").unwrap()
    );
    // Collected in the background: tests read the log lines afterwards.
    let stderr = Arc::new(Mutex::new(String::new()));
    let mut err = child.stderr.take().unwrap();
    let sink = stderr.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    Tether {
        child,
        sip,
        api,
        stderr,
    }
}

fn register(aor: usize, port: u16) -> String {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-p{aor};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:u{aor}@example.com>;tag=t{aor}\r\n\
         To: <sip:u{aor}@example.com>\r\n\
         Call-ID: c{aor}@persist\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:u{aor}@127.0.0.1:{port}>\r\n\
         Expires: 3600\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Registers AORs `0..n` from `sources` sockets, `window` in flight and at
/// most `rate` a second on each, until all are answered, `stop` is set or
/// 30 s pass. Returns when each AOR's 200 arrived.
fn drive(
    target: SocketAddr,
    n: usize,
    sources: usize,
    (window, rate): (usize, u64),
    stop: &AtomicBool,
) -> HashMap<usize, Instant> {
    let acked = Mutex::new(HashMap::new());
    std::thread::scope(|s| {
        for src in 0..sources {
            let acked = &acked;
            s.spawn(move || {
                let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                sock.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let port = sock.local_addr().unwrap().port();
                let mine: Vec<usize> = (src..n).step_by(sources).collect();
                let mut next = 0;
                let mut in_flight = 0;
                let begin = Instant::now();
                let deadline = begin + Duration::from_secs(30);
                let mut buf = [0u8; 2048];
                while (next < mine.len() || in_flight > 0)
                    && !stop.load(Ordering::Relaxed)
                    && Instant::now() < deadline
                {
                    let allowed = (begin.elapsed().as_millis() as u64 * rate / 1000) as usize + 1;
                    while in_flight < window && next < mine.len() && next < allowed {
                        let _ = sock.send_to(register(mine[next], port).as_bytes(), target);
                        next += 1;
                        in_flight += 1;
                    }
                    if in_flight == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    let Ok(len) = sock.recv(&mut buf) else {
                        // A lost request (or a dead tether): free its place.
                        in_flight = 0;
                        continue;
                    };
                    let at = Instant::now();
                    let text = String::from_utf8_lossy(&buf[..len]);
                    if !text.starts_with("SIP/2.0 200") {
                        continue;
                    }
                    let aor = text
                        .lines()
                        .find_map(|l| l.strip_prefix("Call-ID: c")?.strip_suffix("@persist"))
                        .and_then(|a| a.parse().ok());
                    if let Some(aor) = aor {
                        acked.lock().unwrap().insert(aor, at);
                        in_flight = in_flight.saturating_sub(1);
                    }
                }
            });
        }
    });
    acked.into_inner().unwrap()
}

fn registered(api: &str, aor: usize) -> bool {
    let v = common::get_json(&format!("{api}/v1/registrations/u{aor}%40example.com"));
    v["bindings"].as_array().is_some_and(|b| !b.is_empty())
}

fn kill(t: &mut Tether) {
    // SIGKILL: no chance to write anything more.
    t.child.kill().unwrap();
    t.child.wait().unwrap();
}

#[test]
fn registrations_answered_before_a_sigkill_survive_it() {
    let dir = TempDir::new("persist-crash");
    let cfg = config(&dir);
    let mut t = start(&cfg);
    let stop = AtomicBool::new(false);
    let sip = t.sip;
    // TETHER_CRASH_N and TETHER_CRASH_RATE (per source, 4 sources) scale
    // it up by hand, e.g. 200000 and 12500 for 50,000 REGISTER/s against
    // a release build (`cargo test --release --test persist`).
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (n, rate) = (
        env("TETHER_CRASH_N", 16_000) as usize,
        env("TETHER_CRASH_RATE", 1000),
    );
    let (acked, killed_at) = std::thread::scope(|s| {
        let load = s.spawn(|| drive(sip, n, 4, (64, rate), &stop));
        // Kill while REGISTERs are still being answered.
        std::thread::sleep(Duration::from_millis(1500));
        let killed_at = Instant::now();
        kill(&mut t);
        stop.store(true, Ordering::Relaxed);
        (load.join().unwrap(), killed_at)
    });
    let durable: Vec<usize> = acked
        .iter()
        .filter(|(_, &at)| at + Duration::from_millis(FSYNC_MS) < killed_at)
        .map(|(&aor, _)| aor)
        .collect();
    assert!(
        acked.len() < n,
        "the kill came after the load: nothing was in flight"
    );
    assert!(
        durable.len() >= 100,
        "too few REGISTERs answered to test anything: {}",
        durable.len()
    );
    eprintln!(
        "{} answered, {} more than {FSYNC_MS} ms before the kill",
        acked.len(),
        durable.len()
    );
    let t2 = start(&cfg);
    let missing: Vec<usize> = durable
        .iter()
        .copied()
        .filter(|&aor| !registered(&t2.api, aor))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged AORs lost, e.g. {:?}",
        missing.len(),
        durable.len(),
        &missing[..missing.len().min(10)]
    );
    let log = t2.stderr.lock().unwrap().clone();
    assert!(log.contains("registrations restored"), "{log}");
    let mut t2 = t2;
    kill(&mut t2);
}

#[test]
fn a_torn_journal_is_cut_at_the_tear_and_the_restart_says_so() {
    let dir = TempDir::new("persist-torn");
    let cfg = config(&dir);
    let mut t = start(&cfg);
    let stop = AtomicBool::new(false);
    let acked = drive(t.sip, 200, 2, (8, 1000), &stop);
    assert_eq!(acked.len(), 200);
    // Past the group commit, then a crash.
    std::thread::sleep(Duration::from_millis(FSYNC_MS * 3));
    kill(&mut t);
    // Tear the newest journal's last record, and garble a copy of it.
    let state = dir.0.join("state");
    let mut journals: Vec<_> = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("journal-")
        })
        .collect();
    journals.sort();
    let newest = journals.last().unwrap();
    let mut bytes = std::fs::read(newest).unwrap();
    assert!(bytes.len() > 1000, "the journal holds the REGISTERs");
    bytes.truncate(bytes.len() - 5);
    bytes.extend_from_slice(b"\xff\x00garbage");
    std::fs::write(newest, &bytes).unwrap();
    let mut t2 = start(&cfg);
    let back = (0..200).filter(|&a| registered(&t2.api, a)).count();
    // Only the torn record's AOR may be gone.
    assert!(back >= 199, "{back} of 200 back");
    common::wait_until(5, "the damage logged", || {
        t2.stderr.lock().unwrap().contains("journal tail damaged")
    });
    // The new run registers as usual and survives a clean stop's snapshot.
    let more = drive(t2.sip, 210, 1, (8, 1000), &stop);
    assert_eq!(more.len(), 210);
    // SIGTERM: a full snapshot before exit.
    // SAFETY: a plain kill(2) of the child this test started.
    let _ = unsafe { libc::kill(t2.child.id() as i32, libc::SIGTERM) };
    t2.child.wait().unwrap();
    assert!(
        t2.stderr.lock().unwrap().contains("snapshot written"),
        "{}",
        t2.stderr.lock().unwrap()
    );
    let mut t3 = start(&cfg);
    assert_eq!((0..210).filter(|&a| registered(&t3.api, a)).count(), 210);
    kill(&mut t3);
}
