//! A 3-master Redis Cluster on loopback for one test (Debian `redis-server`,
//! `redis-tools`): each master in its own scratch directory on ports of the
//! test's own, joined with `redis-cli --cluster create`, ended by PID on drop.
//! Masters can be stopped and started again on the same port and directory
//! (their `nodes.conf` keeps the cluster's shape; data is not persisted).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_udp_port, wait_for, TempDir};

/// Whether redis-server and redis-cli are here; if not, reports the test
/// skipped (a failure under CI).
pub fn have_redis(test: &str) -> bool {
    super::have_tools(
        test,
        &[
            ("redis-server", "--version", "redis-server"),
            ("redis-cli", "--version", "redis-tools"),
        ],
    )
}

/// One master: its client port, its cluster bus port, its directory, and
/// its process while running.
struct Master {
    port: u16,
    bus: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl Master {
    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.0.join("redis.log")).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--cluster-port", &self.bus.to_string()])
            .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            // A master that comes back is seen again within a second.
            .args(["--cluster-node-timeout", "1000"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(&self.dir.0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("redis-server is installed by scripts/test.sh (apt-get install redis-server)");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) => String::from_utf8_lossy(&o.stdout).into_owned(),
            Err(_) => String::new(),
        }
    }
}

/// A running 3-master Redis Cluster; every master killed and reaped when
/// dropped.
pub struct Cluster {
    masters: Vec<Master>,
}

impl Cluster {
    /// Starts three masters, creates the cluster (no replicas) and waits
    /// until every master reports `cluster_state:ok`.
    pub fn start(tag: &str) -> Cluster {
        let mut masters = Vec::new();
        for i in 0..3 {
            let port = free_udp_port();
            let bus = free_udp_port();
            let mut m = Master {
                port,
                bus,
                dir: TempDir::new(&format!("{tag}-redis{i}")),
                child: None,
            };
            m.spawn();
            masters.push(m);
        }
        let cluster = Cluster { masters };
        for m in &cluster.masters {
            let up = wait_for(Duration::from_secs(10), || {
                m.cli(&["ping"]).trim() == "PONG"
            });
            assert!(
                up,
                "redis-server on {} did not start\n{}",
                m.port,
                cluster.logs()
            );
        }
        let nodes: Vec<String> = cluster.addrs().iter().map(|a| a.to_string()).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli is installed by scripts/test.sh (apt-get install redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_ok();
        cluster
    }

    /// The masters' client addresses (the seeds a client starts from).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.masters
            .iter()
            .map(|m| SocketAddr::from(([127, 0, 0, 1], m.port)))
            .collect()
    }

    /// Seeds as `redis://` URLs, for a tether `[cluster] redis` list.
    pub fn urls(&self) -> Vec<String> {
        self.addrs()
            .iter()
            .map(|a| format!("redis://{a}"))
            .collect()
    }

    /// Waits (at most 20 s) until every master reports the cluster ok and
    /// all 16384 slots assigned.
    pub fn wait_ok(&self) {
        let ok = wait_for(Duration::from_secs(20), || {
            self.masters.iter().all(|m| {
                let info = m.cli(&["cluster", "info"]);
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            })
        });
        assert!(ok, "cluster not ok after 20 s\n{}", self.logs());
    }

    /// Stops every master (the cluster is unreachable until [`Cluster::restart`]).
    pub fn stop(&mut self) {
        for m in &mut self.masters {
            m.kill();
        }
    }

    /// Starts the stopped masters again on their ports and directories and
    /// waits for the cluster to be ok. Keys written before the stop are gone.
    pub fn restart(&mut self) {
        for m in &mut self.masters {
            if m.child.is_none() {
                m.spawn();
            }
        }
        self.wait_ok();
    }

    /// `redis-cli` against master `i` (for checks beside the `redis` crate).
    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        self.masters[i].cli(args)
    }

    /// The ends of the masters' logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for m in &self.masters {
            let log = std::fs::read_to_string(m.dir.0.join("redis.log")).unwrap_or_default();
            let skip = log.chars().count().saturating_sub(1500);
            s.push_str(&format!("--- redis {} ---\n", m.port));
            s.extend(log.chars().skip(skip));
        }
        s
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.masters {
            m.kill();
        }
    }
}
