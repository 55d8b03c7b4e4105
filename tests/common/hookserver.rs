//! The webhook receiver of `tests/fixtures/hookserver.py` (python3, standard
//! library only) for a test: on 127.0.0.1, an ephemeral port, per-path
//! answers from a rules file, every request it got as one JSON line in its
//! log (with `signature_ok` checked against the secret); ended by PID when
//! dropped.
//!
//! ```ignore
//! let hooks = HookServer::start("reg", r#"{"/ev": {"fail_first": 1}}"#, Some("s3cret"));
//! let url = hooks.url("/ev");                     // put into [webhooks] url
//! let got = hooks.wait_requests(2, 10);           // both attempts, as JSON
//! assert_eq!(got[1]["status"], 200);
//! ```

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TempDir;

/// Whether python3 is here; if not, reports the test skipped (a failure under CI).
pub fn have_python(test: &str) -> bool {
    super::have_tools(test, &[("python3", "--version", "python3")])
}

/// A running receiver; killed and reaped when dropped.
pub struct HookServer {
    pub child: Child,
    pub port: u16,
    /// One JSON object per request received.
    pub log: PathBuf,
    pub dir: TempDir,
}

impl HookServer {
    /// Starts the receiver with `rules` (the JSON of its `--rules` file:
    /// `{"/path" or "*": {"status", "delay_ms", "body", "fail_first",
    /// "fail_status"}}`) and, when given, the secret signatures are checked
    /// against. Returns once it listens.
    pub fn start(tag: &str, rules: &str, secret: Option<&str>) -> HookServer {
        let dir = TempDir::new(tag);
        let rules = dir.file("rules.json", rules);
        let log = dir.0.join("requests.jsonl");
        std::fs::write(&log, "").unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hookserver.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .arg("--log")
            .arg(&log)
            .arg("--rules")
            .arg(&rules);
        if let Some(s) = secret {
            cmd.args(["--secret", s]);
        }
        let stderr = std::fs::File::create(dir.0.join("stderr.log")).unwrap();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("python3 runs tests/fixtures/hookserver.py");
        // The first line is the port; EOF instead means it failed to start.
        let mut line = String::new();
        let out = child.stdout.take().expect("piped stdout");
        let _ = std::io::BufReader::new(out).read_line(&mut line);
        let Ok(port) = line.trim().parse::<u16>() else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "hookserver.py did not print its port ({line:?}): {}",
                std::fs::read_to_string(dir.0.join("stderr.log")).unwrap_or_default()
            );
        };
        HookServer {
            child,
            port,
            log,
            dir,
        }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (at most `secs`) until `n` requests arrived and returns them
    /// all; panics with what did arrive otherwise.
    pub fn wait_requests(&self, n: usize, secs: u64) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the hook server got {} of {n} requests in {secs} s: {got:?}\n{}",
                got.len(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Requests whose JSON body has `field` equal to `value`.
    pub fn with_body_field(&self, field: &str, value: &str) -> Vec<serde_json::Value> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r["body"]
                    .as_str()
                    .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
                    .is_some_and(|b| b[field] == value)
            })
            .collect()
    }

    /// The receiver's stderr (Python errors), for failure messages.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for HookServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
