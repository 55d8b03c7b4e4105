//! The real rtpengine (Debian `rtpengine-daemon`) for a test: foreground,
//! userspace only (`table = -1`, no kernel module), on 127.0.0.1 with a
//! temporary config, ended by PID however the test ends.

use std::process::{Child, Command, Stdio};

use super::TempDir;

/// Whether rtpengine is here; if not, reports the test skipped (a failure under CI).
pub fn have_rtpengine(test: &str) -> bool {
    super::have_tools(test, &[("rtpengine", "--version", "rtpengine-daemon")])
}

/// A running rtpengine; killed and reaped when dropped.
pub struct Daemon {
    pub child: Child,
    pub dir: TempDir,
}

impl Daemon {
    /// Starts rtpengine with ng on 127.0.0.1:`ng_port` and media ports
    /// `ports` (each test its own range). `tag` names its scratch directory.
    pub fn start(tag: &str, ng_port: u16, ports: (u16, u16)) -> Daemon {
        let (port_min, port_max) = ports;
        let dir = TempDir::new(tag);
        let conf = dir.file(
            "rtpengine.conf",
            &format!(
                "[rtpengine]\n\
                 table = -1\n\
                 interface = 127.0.0.1\n\
                 listen-ng = 127.0.0.1:{ng_port}\n\
                 foreground = true\n\
                 port-min = {port_min}\n\
                 port-max = {port_max}\n\
                 log-level = 4\n\
                 log-stderr = true\n"
            ),
        );
        let log = std::fs::File::create(dir.0.join("rtpengine.log")).unwrap();
        let child = Command::new("rtpengine")
            .arg(format!("--config-file={}", conf.display()))
            .arg("--num-threads=1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start rtpengine");
        Daemon { child, dir }
    }

    /// The end of rtpengine's own log, for failure messages.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir.0.join("rtpengine.log")).unwrap_or_default();
        let skip = log.chars().count().saturating_sub(3000);
        log.chars().skip(skip).collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
