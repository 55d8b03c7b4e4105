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
