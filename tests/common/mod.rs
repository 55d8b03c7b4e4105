//! Shared helpers for integration tests: an in-process tether on an
//! ephemeral loopback port, temporary files, and SIPp runs.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use tether::config::Config;
use tether::runtime::Runtime;

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "tether-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts tether in this process on 127.0.0.1 (ephemeral port, 2 workers)
/// with `extra` TOML appended to the defaults.
pub fn start(extra: &str) -> (Runtime, SocketAddr) {
    let toml = format!("[sip]\nlisten = [\"127.0.0.1:0\"]\n[runtime]\nworkers = 2\n{extra}");
    let cfg = Config::from_toml(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let rt = Runtime::start(&cfg).expect("tether starts");
    let addr = rt.local_addrs[0];
    (rt, addr)
}

pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// Runs SIPp as a client against `target` and returns its output. `csv`
/// rows become the injection file (`-inf`). SIPp exits 0 only when every
/// call succeeded.
pub fn sipp(
    dir: &TempDir,
    scenario_file: &str,
    csv: &[String],
    calls: usize,
    rate: usize,
    target: SocketAddr,
    extra: &[&str],
) -> Output {
    let inf = dir.file(
        &format!("{scenario_file}.csv"),
        &format!("SEQUENTIAL\n{}\n", csv.join("\n")),
    );
    Command::new("sipp")
        .arg("-sf")
        .arg(scenario(scenario_file))
        .arg("-inf")
        .arg(&inf)
        .args([
            "-m",
            &calls.to_string(),
            "-r",
            &rate.to_string(),
            "-rp",
            "1000",
        ])
        .args([
            "-l",
            "2000",
            "-max_socket",
            "4000",
            "-timeout",
            "60s",
            "-nostdin",
            "-i",
            "127.0.0.1",
        ])
        // SIPp reads `-p 0` as its default 5060; parallel tests need their own ports.
        .args(["-p", &free_udp_port().to_string()])
        .args(["-trace_err", "-error_file"])
        .arg(dir.0.join(format!("{scenario_file}.errors")))
        .args(extra)
        .arg(target.to_string())
        .current_dir(&dir.0)
        .stdout(Stdio::null())
        .output()
        .expect("sipp is installed by .ci/run (apt-get install sip-tester)")
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// SIPp's error log, for assertion messages.
pub fn sipp_errors(dir: &TempDir, scenario_file: &str) -> String {
    let log =
        std::fs::read_to_string(dir.0.join(format!("{scenario_file}.errors"))).unwrap_or_default();
    log.chars().take(3000).collect()
}
