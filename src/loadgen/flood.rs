//! The flood (`tether bench … --flood-rate`): requests from `sources`
//! addresses (consecutive from `source_base`, all on loopback), paced at
//! `rate` a second over all of them, REGISTER, INVITE and OPTIONS in turn
//! (or the `kinds` asked for),
//! on a thread of its own beside the legitimate endpoints. It counts what
//! comes back per source, so that a run can tell that every flooding
//! source was limited (answered `503` at least once). Bounded in time
//! (`duration`, or until told to stop) and in count (`max_requests`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::io::{RecvBatch, SendBatch};

/// What to flood with.
#[derive(Debug, Clone)]
pub struct FloodPlan {
    pub sources: u32,
    /// Requests per second over all sources.
    pub rate: u32,
    pub source_base: Ipv4Addr,
    /// At most this long.
    pub duration: Duration,
    /// At most this many requests.
    pub max_requests: u64,
    /// Which requests, sent in turn: 0 REGISTER, 1 INVITE, 2 OPTIONS.
    pub kinds: Vec<usize>,
}

impl Default for FloodPlan {
    fn default() -> Self {
        FloodPlan {
            sources: 1_000,
            rate: 10_000,
            source_base: Ipv4Addr::new(127, 200, 0, 1),
            duration: Duration::from_secs(10),
            max_requests: 100_000_000,
            kinds: vec![0, 1, 2],
        }
    }
}

/// What the flood saw.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FloodReport {
    pub sources: u32,
    pub rate_asked: u32,
    /// Requests handed to the kernel (those it dropped are not counted).
    pub sent: u64,
    pub elapsed_s: f64,
    pub achieved_rate: f64,
    /// Responses by status code.
    pub answers: BTreeMap<u16, u64>,
    /// Sources answered `503` at least once (limited, with `limits.action = "reject"`).
    pub sources_limited: u32,
    /// Server CPU during the flood, in cores (with `server_pid`).
    pub server_cpu_cores: Option<f64>,
    /// This process's CPU during the flood (generator and endpoints), in cores.
    pub generator_cpu_cores: Option<f64>,
}

/// Marks the digits patched into each request (a 9-digit counter).
const MARK: &[u8] = b"#########";

/// One request template and where its counters go.
struct Template {
    bytes: Vec<u8>,
    marks: Vec<usize>,
}

impl Template {
    fn new(text: String) -> Template {
        let bytes = text.into_bytes();
        let marks = bytes
            .windows(MARK.len())
            .enumerate()
            .filter(|(_, w)| *w == MARK)
            .map(|(i, _)| i)
            .collect();
        Template { bytes, marks }
    }

    /// The request with every mark replaced by `n` (9 digits).
    fn fill(&self, n: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.bytes);
        let mut digits = [b'0'; 9];
        let mut v = n % 1_000_000_000;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        for &m in &self.marks {
            out[m..m + 9].copy_from_slice(&digits);
        }
    }
}

/// The three requests of source `ip`.
fn templates(ip: Ipv4Addr, port: u16, target: SocketAddrV4, domain: &str) -> [Template; 3] {
    let head = |method: &str, ruri: &str, to: &str| {
        format!(
            "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {ip}:{port};branch=z9hG4bKfl#########;rport\r\n\
Max-Forwards: 70\r\nFrom: <sip:flood-{ip}@{domain}>;tag=fl#########\r\nTo: <{to}>\r\n\
Call-ID: flood-{method}-{ip}\r\nCSeq: ######### {method}\r\n"
        )
    };
    let aor = format!("sip:flood-{ip}@{domain}");
    [
        Template::new(format!(
            "{}Contact: <sip:flood@{ip}:{port}>\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n",
            head("REGISTER", &format!("sip:{domain}"), &aor)
        )),
        Template::new(format!(
            "{}Contact: <sip:flood@{ip}:{port}>\r\nContent-Length: 0\r\n\r\n",
            head(
                "INVITE",
                &format!("sip:nobody-#########@{domain}"),
                &format!("sip:nobody@{domain}")
            )
        )),
        Template::new(format!(
            "{}Content-Length: 0\r\n\r\n",
            head(
                "OPTIONS",
                &format!("sip:{}", target),
                &format!("sip:{}", target)
            )
        )),
    ]
}

/// Floods `target` until the plan's bounds or `stop`.
pub fn run(
    plan: &FloodPlan,
    target: SocketAddrV4,
    domain: &str,
    server_pid: Option<u32>,
    stop: &AtomicBool,
) -> std::io::Result<FloodReport> {
    let socket = crate::io::bind_pktinfo(0, 16 << 20)?;
    let fd = socket.as_raw_fd();
    let port = socket.local_addr()?.port();
    let sources = plan.sources.max(1);
    let kinds: Vec<usize> = plan.kinds.iter().copied().filter(|k| *k < 3).collect();
    let kinds = if kinds.is_empty() {
        vec![0, 1, 2]
    } else {
        kinds
    };
    let ip_of = |i: u32| Ipv4Addr::from(u32::from(plan.source_base).wrapping_add(i));
    let requests: Vec<[Template; 3]> = (0..sources)
        .map(|i| templates(ip_of(i), port, target, domain))
        .collect();
    let mut send = SendBatch::new(64, 2048);
    let mut recv = RecvBatch::new(64, 2048);
    let mut scratch = Vec::with_capacity(1024);
    let mut limited = vec![false; sources as usize];
    let mut report = FloodReport {
        sources,
        rate_asked: plan.rate,
        ..FloodReport::default()
    };
    let to = SocketAddr::V4(target);
    let cpu = |pid: Option<u32>| pid.and_then(super::process_cpu_ns);
    let (server0, self0) = (cpu(server_pid), cpu(Some(std::process::id())));
    let start = Instant::now();
    let mut queued = 0u64;
    while !stop.load(Ordering::Relaxed) && queued < plan.max_requests {
        let elapsed = start.elapsed();
        if elapsed >= plan.duration {
            break;
        }
        let due = ((elapsed.as_secs_f64() * f64::from(plan.rate)) as u64)
            .min(plan.max_requests)
            .saturating_sub(queued);
        // At most a few batches between reads, so answers are not lost.
        for _ in 0..due.min(512) {
            let i = (queued % u64::from(sources)) as u32;
            let kind = kinds[((queued / u64::from(sources)) % kinds.len() as u64) as usize];
            requests[i as usize][kind].fill(queued / u64::from(sources) + 1, &mut scratch);
            if send.is_full() {
                send.flush(fd);
            }
            send.push_from(&scratch, ip_of(i), to);
            queued += 1;
        }
        send.flush(fd);
        let mut got_any = false;
        loop {
            let n = recv.recv(fd).unwrap_or(0);
            if n == 0 {
                break;
            }
            got_any = true;
            for k in 0..n {
                let (data, _) = recv.get(k);
                let Some(code) = status_of(data) else {
                    continue;
                };
                *report.answers.entry(code).or_insert(0) += 1;
                if code == 503 {
                    if let Some(IpAddr::V4(ip)) = recv.local_ip(k) {
                        let i = u32::from(ip).wrapping_sub(u32::from(plan.source_base));
                        if let Some(l) = limited.get_mut(i as usize) {
                            *l = true;
                        }
                    }
                }
            }
        }
        if due == 0 && !got_any {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let wall = start.elapsed();
    report.elapsed_s = wall.as_secs_f64();
    report.sent = queued.saturating_sub(send.dropped);
    report.achieved_rate = report.sent as f64 / report.elapsed_s.max(1e-9);
    report.sources_limited = limited.iter().filter(|l| **l).count() as u32;
    let cores = |a: Option<u64>, b: Option<u64>| {
        Some(b?.saturating_sub(a?) as f64 / wall.as_nanos().max(1) as f64)
    };
    report.server_cpu_cores = cores(server0, cpu(server_pid));
    report.generator_cpu_cores = cores(self0, cpu(Some(std::process::id())));
    Ok(report)
}

/// The status code of a response datagram.
fn status_of(data: &[u8]) -> Option<u16> {
    let rest = data.strip_prefix(b"SIP/2.0 ")?;
    std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
}

/// The flood's lines of the summary table.
pub fn table_lines(f: &FloodReport) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "flood                {} requests from {} sources in {:.1} s: {:.0}/s achieved ({} asked)",
        f.sent, f.sources, f.elapsed_s, f.achieved_rate, f.rate_asked
    );
    let answers: Vec<String> = f.answers.iter().map(|(c, n)| format!("{c}: {n}")).collect();
    let _ = writeln!(t, "flood answers        {}", answers.join(", "));
    let _ = writeln!(
        t,
        "flood sources 503'd  {} of {}",
        f.sources_limited, f.sources
    );
    if let Some(c) = f.server_cpu_cores {
        let _ = writeln!(t, "server CPU in flood  {:.2} cores", c);
    }
    if let Some(c) = f.generator_cpu_cores {
        let _ = writeln!(t, "generator CPU        {:.2} cores", c);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_fill_every_counter_and_parse() {
        let t = templates(
            "127.200.0.5".parse().unwrap(),
            4000,
            "127.0.0.1:5060".parse().unwrap(),
            "example.com",
        );
        let mut out = Vec::new();
        for (tpl, method) in t.iter().zip(["REGISTER", "INVITE", "OPTIONS"]) {
            tpl.fill(42, &mut out);
            assert!(!out.windows(MARK.len()).any(|w| w == MARK));
            let m = crate::sip::parse(&out).unwrap();
            let c = m.validate().unwrap();
            assert_eq!(c.cseq.seq, 42);
            assert_eq!(m.method().unwrap().as_str(), method);
            assert!(crate::limits::classify(&out).is_some());
        }
        assert_eq!(status_of(b"SIP/2.0 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(status_of(b"OPTIONS sip:x SIP/2.0\r\n"), None);
    }
}
