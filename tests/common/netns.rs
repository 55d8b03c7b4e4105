//! Network namespaces for NAT test beds (root only): two LANs, each behind
//! its own MASQUERADE NAT, joined to one `wan` namespace where tether runs.
//! Shared by tests/nat_call.rs (signalling) and tests/media_relay.rs (RTP).

use std::process::Command;

/// tether's address in `wan`; both NATs route to it.
pub const WAN_ADDR: &str = "10.0.1.2";
/// Each UA's address in its own LAN (the same on both sides).
pub const UA: &str = "192.168.1.2";

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect(args[0]);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ip netns exec <ns> <args>` as a command to finish configuring.
pub fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

/// The test bed: `wan`, and per side (0 caller, 1 callee) a `lan` and a
/// `nat`. Side i's NAT is 10.0.<i+1>.1 towards `wan` (10.0.<i+1>.2).
pub struct Bed {
    pub wan: String,
    pub lan: [String; 2],
    pub nat: [String; 2],
}

impl Bed {
    pub fn new(tag: &str) -> Bed {
        let id = std::process::id();
        let name = |k: &str| format!("tc{k}{id}{tag}");
        let bed = Bed {
            wan: name("w"),
            lan: [name("l0"), name("l1")],
            nat: [name("n0"), name("n1")],
        };
        for n in bed.all() {
            sh(&["ip", "netns", "add", n]);
            sh(&["ip", "-n", n, "link", "set", "lo", "up"]);
        }
        for i in 0..2 {
            let (lan, nat, wan) = (&bed.lan[i], &bed.nat[i], &bed.wan);
            // Interface names stay under 15 characters.
            let dev = |k: &str| format!("{k}{i}{id}{tag}");
            let (l0, nl, nw, w0) = (dev("l"), dev("nl"), dev("nw"), dev("w"));
            sh(&[
                "ip", "link", "add", &l0, "netns", lan, "type", "veth", "peer", "name", &nl,
                "netns", nat,
            ]);
            sh(&[
                "ip", "link", "add", &w0, "netns", wan, "type", "veth", "peer", "name", &nw,
                "netns", nat,
            ]);
            let public = format!("10.0.{}.1", i + 1);
            let wan_side = format!("10.0.{}.2", i + 1);
            sh(&[
                "ip",
                "-n",
                lan,
                "addr",
                "add",
                &format!("{UA}/24"),
                "dev",
                &l0,
            ]);
            sh(&["ip", "-n", nat, "addr", "add", "192.168.1.1/24", "dev", &nl]);
            sh(&[
                "ip",
                "-n",
                nat,
                "addr",
                "add",
                &format!("{public}/24"),
                "dev",
                &nw,
            ]);
            sh(&[
                "ip",
                "-n",
                wan,
                "addr",
                "add",
                &format!("{wan_side}/24"),
                "dev",
                &w0,
            ]);
            for (n, d) in [(lan, &l0), (nat, &nl), (nat, &nw), (wan, &w0)] {
                sh(&["ip", "-n", n, "link", "set", d, "up"]);
            }
            sh(&[
                "ip",
                "-n",
                lan,
                "route",
                "add",
                "default",
                "via",
                "192.168.1.1",
            ]);
            // tether's address is on side 0's link; side 1 reaches it through `wan`.
            sh(&["ip", "-n", nat, "route", "add", "default", "via", &wan_side]);
            let nat_sh = |args: &[&str]| {
                let mut a = vec!["ip", "netns", "exec", nat];
                a.extend_from_slice(args);
                sh(&a);
            };
            nat_sh(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
            nat_sh(&[
                "iptables",
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-s",
                "192.168.1.0/24",
                "-o",
                &nw,
                "-j",
                "MASQUERADE",
            ]);
            // Counts datagrams from tether that reached the NAT box itself:
            // no mapping was left to translate them.
            nat_sh(&[
                "iptables", "-I", "INPUT", "-i", &nw, "-p", "udp", "--sport", "5060", "-j",
                "ACCEPT",
            ]);
            // The conntrack sysctls appear in the namespace once NAT is in use.
            nat_sh(&["sysctl", "-qw", "net.netfilter.nf_conntrack_udp_timeout=10"]);
            nat_sh(&[
                "sysctl",
                "-qw",
                "net.netfilter.nf_conntrack_udp_timeout_stream=10",
            ]);
        }
        bed
    }

    pub fn all(&self) -> [&String; 5] {
        [
            &self.wan,
            &self.lan[0],
            &self.nat[0],
            &self.lan[1],
            &self.nat[1],
        ]
    }

    /// Datagrams from tether that died at side `i`'s NAT for want of a mapping.
    pub fn stranded(&self, i: usize) -> u64 {
        let out = in_ns(&self.nat[i], &["iptables", "-L", "INPUT", "-v", "-x", "-n"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.contains("spt:5060"))
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// Whether something in side `i`'s LAN listens on UDP 5060.
    pub fn ua_bound(&self, i: usize) -> bool {
        let out = in_ns(&self.lan[i], &["cat", "/proc/net/udp"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|a| a.ends_with(":13C4"))
            })
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for n in self.all() {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

/// Runs `f` on a thread that entered network namespace `ns` (as made by
/// `ip netns add`): sockets it creates live in that namespace for good,
/// whichever thread uses them afterwards.
pub fn within<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(format!("/run/netns/{ns}"))
        .unwrap_or_else(|e| panic!("netns {ns}: {e}"));
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns changes only this (scoped, short-lived) thread's
            // network namespace; the fd is open for the call.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {ns}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("netns thread")
    })
}

/// Why this machine cannot build a network-namespace test bed (root, `ip`,
/// `iptables`, `python3`, and the `more` tools as (tool, version args)),
/// if it cannot.
pub fn cannot_run(more: &[(&str, &[&str])]) -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("network namespaces need root".into());
    }
    let base: [(&str, &[&str]); 3] = [
        ("ip", &["netns", "list"]),
        ("iptables", &["--version"]),
        ("python3", &["--version"]),
    ];
    for &(tool, args) in base.iter().chain(more) {
        match Command::new(tool).args(args).output() {
            // `sipp -v` exits non-zero after printing its version.
            Ok(o) if o.status.success() || tool == "sipp" => {}
            Ok(o) => {
                return Some(format!(
                    "`{tool} {}` failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stderr).trim()
                ))
            }
            Err(e) => return Some(format!("`{tool}` unavailable: {e}")),
        }
    }
    None
}
