//! Kamailio (Debian `kamailio`) and the other peer processes of a test bed:
//! started in the foreground, ended by PID when dropped, logs kept.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TempDir;

/// Kamailio's module directory (`/usr/lib/<triplet>/kamailio/modules`).
pub fn modules() -> PathBuf {
    let lib = Path::new("/usr/lib");
    std::fs::read_dir(lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("kamailio/modules"))
        .chain(std::iter::once(lib.join("kamailio/modules")))
        .find(|p| p.join("tm.so").exists())
        .expect("Kamailio's modules (tm.so) under /usr/lib")
}

/// Whether a UDP socket is bound to `addr`, from /proc/net/udp: the way to
/// know a peer is ready without sending it anything it would not expect.
pub fn udp_bound(addr: SocketAddr) -> bool {
    let SocketAddr::V4(a) = addr else {
        return false;
    };
    // The kernel prints the address as the u32 in host order (little endian here).
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(a.ip().octets()),
        a.port()
    );
    std::fs::read_to_string("/proc/net/udp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
}

/// One process of a test's bed, ended by PID when dropped (also when the
/// test fails), its log kept for the failure message.
pub struct Peer {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Peer {
    /// Waits (at most `secs`) for the peer to exit; its exit code.
    pub fn wait(&mut self, secs: u64) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SIGTERM first: Kamailio then ends the children it forked.
            // SAFETY: kill(2) on the PID of a child we spawned and have not reaped.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Kamailio with tests/fixtures/kamailio/`cfg` on `listen`, each of
/// `defines` passed as `-A NAME="value"`; its log is `<name>.log` in `dir`.
pub fn start(
    dir: &TempDir,
    name: &str,
    cfg: &str,
    listen: SocketAddr,
    defines: &[(&str, &str)],
) -> Peer {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kamailio")
        .join(cfg);
    let log = dir.0.join(format!("{name}.log"));
    let mut cmd = Command::new("kamailio");
    cmd.arg("-f").arg(&cfg).arg("-L").arg(modules());
    for (k, v) in defines {
        cmd.args(["-A", &format!("{k}=\"{v}\"")]);
    }
    let child = cmd
        .args(["-l", &format!("udp:{listen}")])
        // Foreground, log to stderr, small memory pools, its own work dir;
        // tlsf: the Debian build's default allocator is a slow debug one.
        .args([
            "-DD", "-E", "-m", "32", "-M", "4", "-x", "tlsf", "-X", "tlsf", "-w",
        ])
        .arg(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("kamailio is installed by scripts/test.sh (apt-get install kamailio)");
    Peer {
        name: name.into(),
        child,
        log,
    }
}
