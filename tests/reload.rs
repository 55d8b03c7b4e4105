//! SIGHUP end to end: the `tether` binary started with a config file
//! re-reads it on SIGHUP. A new API token is accepted and the old one
//! refused; an invalid file is refused with the key named and the running
//! configuration kept; a key that needs a restart is named as such.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{http, TempDir};

const OLD: &str = "old-token-0123456789";
const NEW: &str = "new-token-9876543210";

fn config(token: &str, extra: &str) -> String {
    format!(
        "[sip]\nlisten = [\"127.0.0.1:0\"]\n[runtime]\nworkers = 1\n{extra}\n[api]\n\
listen = \"127.0.0.1:0\"\nclients = [{{ name = \"as1\", token = \"{token}\" }}]\n"
    )
}

struct Tether {
    child: Child,
    api: String,
    /// stderr lines, read on a side thread.
    log: mpsc::Receiver<String>,
}

impl Tether {
    fn start(config: &std::path::Path) -> Tether {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tether");
        let (tx, log) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut api = None;
        for _ in 0..2 {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            if let Some(a) = line.trim().strip_prefix("listening http ") {
                api = Some(format!("http://{a}"));
            }
        }
        Tether {
            child,
            api: api.expect("a `listening http` line"),
            log,
        }
    }

    fn hup(&self) {
        // SAFETY: kill(2) on the PID of a child we spawned and still own.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGHUP) };
    }

    /// Waits (at most 10 s) for a log line containing `needle`; returns it.
    fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!("no log line with {needle:?} within 10 s");
    }

    fn status(&self, token: &str) -> u16 {
        let url = format!("{}/v1/registrations/alice@example.com", self.api);
        http("GET", &url, Some(token), None).0
    }
}

impl Drop for Tether {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sighup_swaps_the_api_token_and_an_invalid_file_keeps_the_running_config() {
    let dir = TempDir::new("reload");
    let path = dir.file("tether.toml", &config(OLD, ""));
    let t = Tether::start(&path);
    assert_eq!(t.status(OLD), 200);
    assert_eq!(t.status(NEW), 401);

    // The new token, a new log level, and one key that needs a restart.
    std::fs::write(
        &path,
        config(
            NEW,
            "[log]\nlevel = \"warn\"\n[registrar]\nmax_contacts = 5\n",
        ),
    )
    .unwrap();
    t.hup();
    let line = t.wait_log("needs restart:");
    assert!(line.contains("registrar.max_contacts"), "{line}");
    assert_eq!(t.status(NEW), 200);
    assert_eq!(t.status(OLD), 401);

    // Invalid: a token too short. Logged at error (above `warn`) with the
    // key and the fix; the new token keeps working.
    std::fs::write(&path, config("short", "[log]\nlevel = \"warn\"\n")).unwrap();
    t.hup();
    let line = t.wait_log("config reload refused");
    assert!(
        line.contains("api.clients.token") && line.contains("at least 16"),
        "{line}"
    );
    assert_eq!(t.status(NEW), 200);
    assert_eq!(t.status("short"), 401);

    // A file that does not parse is refused the same way.
    std::fs::write(&path, "[api\nclients = ").unwrap();
    t.hup();
    t.wait_log("config reload refused");
    assert_eq!(t.status(NEW), 200);
}
