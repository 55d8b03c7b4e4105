//! The RTP scenario's I/O: the `ng` socket while calls are set up and
//! deleted, one socket per party port while media flows (registered with
//! one `mio` poll, read with `recvmmsg`, written with `sendmmsg`), the
//! clock, and the CPU samples.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::control::{Control, NgCodec, MEDIA};
use super::ng_codec::Ng;
use super::pace::Pacer;
use super::packet::{self, Stamp, HEADER};
use super::tally::RtpTally;
use super::{RtpPlan, RtpReport, RtpTarget};
use crate::io::{RecvBatch, SendBatch};
use crate::loadgen::driver::poll_for;
use crate::loadgen::process_cpu_ns;

/// Datagrams per `recvmmsg` / `sendmmsg`.
const BATCH: usize = 32;
/// Socket buffers of each party port.
const SOCKET_BUFFER: usize = 1 << 20;
/// Falling further behind the schedule than this skips packets.
const MAX_BEHIND: Duration = Duration::from_millis(100);

/// Runs a load; `progress` gets a line about each phase.
pub fn run(plan: &RtpPlan, mut progress: impl FnMut(&str)) -> std::io::Result<RtpReport> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    if plan.payload < packet::MIN_PAYLOAD || plan.payload > 1400 {
        return Err(bad(format!(
            "payload must be {} to 1400 bytes",
            packet::MIN_PAYLOAD
        )));
    }
    if plan.calls == 0 || plan.pps == 0 {
        return Err(bad("calls and pps must be above 0".into()));
    }
    let sockets_needed = u64::from(plan.calls) * 4;
    let limit = fd_limit();
    if sockets_needed + 64 > limit {
        return Err(bad(format!(
            "{} calls need {sockets_needed} sockets; the open-file limit is {limit} (ulimit -n)",
            plan.calls
        )));
    }
    let calls = plan.calls as usize;
    let streams = calls * MEDIA;
    // Socket `stream * 2 + side` (side 0: A, 1: B).
    let sockets: Vec<UdpSocket> = (0..streams * 2)
        .map(|_| crate::io::bind_plain(SocketAddr::from(([127, 0, 0, 1], 0)), SOCKET_BUFFER))
        .collect::<Result<_, _>>()?;
    let ports: Vec<u16> = sockets
        .iter()
        .map(|s| s.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()?;
    let fds: Vec<RawFd> = sockets.iter().map(|s| s.as_raw_fd()).collect();

    let mut report = RtpReport {
        calls_asked: plan.calls,
        streams: streams as u64,
        pps_per_flow: plan.pps,
        payload_bytes: plan.payload,
        ..RtpReport::default()
    };
    // Where each flow sends (flow = sending socket).
    let mut dest: Vec<Option<SocketAddrV4>> = vec![None; streams * 2];
    let mut ng = None;
    match plan.target {
        RtpTarget::Fixed { base, pairs } => {
            report.relay = format!("fixed {base}, {pairs} pairs");
            let pairs = pairs.max(1) as usize;
            for (f, d) in dest.iter_mut().enumerate() {
                let pair = (f / 2) % pairs;
                let port = usize::from(base.port()) + 2 * pair + f % 2;
                let port = u16::try_from(port).map_err(|_| bad("fixed ports past 65535".into()))?;
                *d = Some(SocketAddrV4::new(*base.ip(), port));
            }
            report.calls_set_up = plan.calls.into();
        }
        RtpTarget::Ng(addr) => {
            report.relay = format!("ng {addr}");
            progress(&format!("setting up {calls} calls over ng at {addr}"));
            let party_ports = (0..calls)
                .map(|c| {
                    let p = |side: usize, m: usize| ports[(c * MEDIA + m) * 2 + side];
                    [[p(0, 0), p(0, 1)], [p(1, 0), p(1, 1)]]
                })
                .collect();
            let tag = format!("{}x{}", std::process::id(), rand_tag());
            let mut ctl = Control::new(Ng, &tag, party_ports, plan.window);
            let sock = UdpSocket::bind("127.0.0.1:0")?;
            sock.connect(addr)?;
            sock.set_read_timeout(Some(Duration::from_millis(2)))?;
            let t = Instant::now();
            exchange(&mut ctl, &sock, plan.setup_timeout, |c| c.setup_done())?;
            report.setup_s = t.elapsed().as_secs_f64();
            for (c, d) in ctl.dest.iter().enumerate() {
                for (side, media) in d.iter().enumerate() {
                    for (m, a) in media.iter().enumerate() {
                        // Both directions of a stream, or neither.
                        let both = d[0][m].is_some() && d[1][m].is_some();
                        dest[(c * MEDIA + m) * 2 + side] = a.filter(|_| both);
                    }
                }
            }
            report.calls_set_up = ctl.ready() as u64;
            progress(&format!(
                "{} calls set up in {:.1} s",
                report.calls_set_up, report.setup_s
            ));
            ng = Some((ctl, sock));
        }
    }

    let active: Vec<usize> = (0..dest.len()).filter(|&f| dest[f].is_some()).collect();
    report.flows = active.len() as u64;
    let pacer = Pacer::new(
        active.len() as u64,
        plan.pps.into(),
        plan.seconds,
        plan.max_packets,
    );
    let mut tally = RtpTally::new(streams * 2, plan.payload);
    if !active.is_empty() {
        progress(&format!(
            "sending {} pps on each of {} flows for {:.1} s",
            plan.pps,
            active.len(),
            plan.seconds
        ));
        media(plan, &fds, &dest, &active, &pacer, &mut tally, &mut report)?;
    }

    if let Some((mut ctl, sock)) = ng {
        ctl.begin_delete();
        exchange(&mut ctl, &sock, plan.setup_timeout, |c| c.delete_done())?;
        report.calls_deleted = ctl.deleted() as u64;
        report.ng_errors = ctl.errors;
        report.ng_timeouts = ctl.timeouts;
        report.ng_retransmissions = ctl.retransmissions;
        report.ng_first_error = ctl.first_error.clone();
    }

    report.sent = tally.total_sent();
    report.received = tally.total_received();
    report.received_in_window = tally.received_in_window;
    report.delivery = if report.sent > 0 {
        report.received as f64 / report.sent as f64
    } else {
        0.0
    };
    report.spread = tally.spread();
    report.corrupted = tally.corrupted;
    report.foreign = tally.foreign;
    report.latency_ns = tally.latency_ns();
    report.timeline = tally.timeline();
    Ok(report)
}

/// Drives the `ng` exchange until `done` or `limit` has passed.
fn exchange<C: NgCodec>(
    ctl: &mut Control<C>,
    sock: &UdpSocket,
    limit: Duration,
    done: impl Fn(&Control<C>) -> bool,
) -> std::io::Result<()> {
    let start = Instant::now();
    let mut buf = vec![0u8; 65_536];
    while !done(ctl) && start.elapsed() < limit {
        let now_ms = start.elapsed().as_millis() as u64;
        while let Some(m) = ctl.poll_transmit(now_ms) {
            // A refused send is like a lost one: retransmitted, then given up.
            let _ = sock.send(&m);
        }
        // Errors are timeouts, and ICMP "port unreachable" reported on a
        // connected socket: the request is resent, then given up on.
        if let Ok(n) = sock.recv(&mut buf) {
            ctl.handle_reply(&buf[..n]);
        }
    }
    Ok(())
}

/// Sends the media on schedule and receives what comes back, until the
/// schedule is over and the drain time has passed.
fn media(
    plan: &RtpPlan,
    fds: &[RawFd],
    dest: &[Option<SocketAddrV4>],
    active: &[usize],
    pacer: &Pacer,
    tally: &mut RtpTally,
    report: &mut RtpReport,
) -> std::io::Result<()> {
    let mut poll = Poll::new()?;
    for (j, fd) in fds.iter().enumerate() {
        poll.registry()
            .register(&mut SourceFd(fd), Token(j), Interest::READABLE)?;
    }
    let slot = HEADER + plan.payload;
    let mut out = SendBatch::new(BATCH, slot);
    let mut inbox = RecvBatch::new(BATCH, slot + 1);
    let mut buf = vec![0u8; slot];
    let mut events = Events::with_capacity(1024);
    let max_behind = pacer.rate() * MAX_BEHIND.as_nanos() as u64 / 1_000_000_000;
    // Hard limit: the schedule, the drain, and slack for a slow start.
    let limit = Duration::from_nanos(pacer.span_ns()) + plan.drain + Duration::from_secs(5);

    let self_pid = std::process::id();
    // The relay's CPU time (all its threads) and the generator's own.
    let cpu = || {
        (
            plan.server_pid.and_then(process_cpu_ns),
            process_cpu_ns(self_pid),
        )
    };
    let (server0, own0) = cpu();
    let start = Instant::now();
    let clock = || start.elapsed().as_nanos() as u64;
    let mut next = 0u64;
    let mut window_end: Option<u64> = None;
    let mut cpu_end = (None, None);
    loop {
        let now = clock();
        tally.tick((now / 1_000_000_000) as u32);
        if next < pacer.total {
            let mut due = pacer.due_by(now);
            if due - next > max_behind.max(1) {
                let skip = due - next - max_behind.max(1);
                report.skipped_behind += skip;
                next += skip;
            }
            if due - next >= 2 * pacer.flows {
                // Behind by rounds: each flow's packets in one sendmmsg.
                send_grouped(
                    pacer, next, due, active, dest, fds, &mut out, &mut buf, plan, tally, &clock,
                );
            } else {
                for k in next..due {
                    let (i, n) = pacer.packet(k);
                    let f = active[i];
                    push(&mut out, &mut buf, f, n, plan, dest[f], &clock);
                    out.flush(fds[f]);
                    tally.on_sent(f, 1);
                }
            }
            due = due.max(next);
            next = due;
        }
        if next >= pacer.total && window_end.is_none() {
            window_end = Some(clock());
            cpu_end = cpu();
        }
        let now = clock();
        if let Some(end) = window_end {
            if now >= end + plan.drain.as_nanos() as u64 {
                break;
            }
        }
        if now >= limit.as_nanos() as u64 {
            if window_end.is_none() {
                window_end = Some(now);
                cpu_end = cpu();
            }
            break;
        }
        let wake = match window_end {
            Some(end) => end + plan.drain.as_nanos() as u64,
            None => pacer.due_ns(next),
        };
        // epoll rounds a timeout up to whole milliseconds: sends due sooner
        // go out up to 1 ms late, together (each still stamped when sent).
        // Spinning instead would make the generator's CPU say nothing about
        // how busy it is.
        let wait = Duration::from_nanos(wake.saturating_sub(now));
        poll_for(&mut poll, &mut events, wait)?;
        for ev in events.iter() {
            let j = ev.token().0;
            let Some(&fd) = fds.get(j) else { continue };
            // Edge-triggered, but a short batch means the socket is empty:
            // a datagram queued after the read raises a new event (Linux
            // signals every arrival), so no read is spent on EAGAIN.
            loop {
                let got = inbox.recv(fd).unwrap_or(0);
                let now = clock();
                let in_window = window_end.is_none();
                for k in 0..got {
                    tally.on_received(inbox.get(k).0, now, in_window);
                }
                if got < inbox.capacity() {
                    break;
                }
            }
        }
    }
    let end = window_end.unwrap_or_else(clock);
    report.send_dropped = out.dropped;
    let (server1, own1) = cpu_end;
    let secs = end as f64 / 1e9;
    report.send_window_s = secs;
    let sent = tally.total_sent();
    let got = tally.received_in_window;
    if secs > 0.0 {
        report.offered_pps = sent as f64 / secs;
        report.forwarded_pps = got as f64 / secs;
    }
    // CPU over the send window, per packet that came through in it.
    if let (Some(a), Some(b)) = (server0, server1) {
        let cpu = b.saturating_sub(a) as f64;
        report.server_cpu_s = Some(cpu / 1e9);
        if got > 0 {
            report.server_cpu_us_per_packet = Some(cpu / 1e3 / got as f64);
        }
    }
    if let (Some(a), Some(b)) = (own0, own1) {
        if secs > 0.0 {
            report.generator_busy = Some(b.saturating_sub(a) as f64 / 1e9 / secs);
        }
        if sent + got > 0 {
            report.generator_cpu_us_per_packet =
                Some(b.saturating_sub(a) as f64 / 1e3 / (sent + got) as f64);
        }
    }
    Ok(())
}

/// Builds flow `f`'s packet `n` into `out`, stamped now.
fn push(
    out: &mut SendBatch,
    buf: &mut [u8],
    f: usize,
    n: u32,
    plan: &RtpPlan,
    to: Option<SocketAddrV4>,
    clock: &impl Fn() -> u64,
) {
    let Some(to) = to else { return };
    let stream = (f / 2) as u32;
    // Audio: PCMU at 8 kHz; video: a dynamic type at 90 kHz.
    let (pt, step) = if stream.is_multiple_of(2) {
        (0, 8_000 / plan.pps.max(1))
    } else {
        (96, 90_000 / plan.pps.max(1))
    };
    let s = Stamp {
        stream,
        dir: (f % 2) as u8,
        seq: n,
        sent_ns: clock(),
    };
    if let Some(len) = packet::build(buf, &s, pt, step, plan.payload) {
        out.push(&buf[..len], SocketAddr::V4(to));
    }
}

/// Sends packets `next..due` flow by flow, each flow's in batches.
#[allow(clippy::too_many_arguments)]
fn send_grouped(
    pacer: &Pacer,
    next: u64,
    due: u64,
    active: &[usize],
    dest: &[Option<SocketAddrV4>],
    fds: &[RawFd],
    out: &mut SendBatch,
    buf: &mut [u8],
    plan: &RtpPlan,
    tally: &mut RtpTally,
    clock: &impl Fn() -> u64,
) {
    let flows = pacer.flows;
    for i in 0..flows {
        // The first packet index at or after `next` that belongs to flow i.
        let first = next + (i + flows - next % flows) % flows;
        let f = active[i as usize];
        let mut k = first;
        let mut count = 0;
        while k < due {
            if out.is_full() {
                out.flush(fds[f]);
            }
            push(out, buf, f, pacer.packet(k).1, plan, dest[f], clock);
            count += 1;
            k += flows;
        }
        out.flush(fds[f]);
        tally.on_sent(f, count);
    }
}

/// The process's open-file limit (soft), from /proc; 1024 when unknown.
fn fd_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}

/// A few random-ish bits so two runs' call-ids differ.
fn rand_tag() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    t ^ (t >> 13)
}
