//! The io_uring counterpart of benches/relay_floor.c: the same UDP
//! forwarding with no protocol work, the same ports, latching and output, so
//! that benches/compare-rtpengine.sh can run both under the same load and the
//! difference is the I/O interface alone.
//!
//!   relay_floor_uring PAIRS BASE SECONDS [PEER_A_BASE PEER_B_BASE]
//!
//! Pair i: side A on 127.0.0.1:BASE+2i, side B on BASE+2i+1. Traffic read on
//! one side goes out of the other side to that side's peer, latched from the
//! first packet it received (or fixed from PEER_*_BASE + i). Stops after
//! SECONDS or on SIGTERM/SIGINT and prints "forwarded N dropped_unlatched M
//! send_errors E seconds S" (then io_uring-only counters).
//!
//! Shape: every socket has one multishot recvmsg armed, taking buffers from
//! one provided-buffer ring, so a received packet costs no syscall. Each
//! received packet becomes one send SQE (IORING_OP_SEND with a destination
//! address) straight from the ring buffer it arrived in; the buffer goes back
//! to the ring when the send completes. All sends of a round, across every
//! socket, go to the kernel in the one io_uring_enter that also waits for the
//! next completions: one syscall per round instead of two per socket.
//!
//! URING_WAIT_NR and URING_MIN_WAIT_US (defaults 1 and 0: wake on the first
//! completion, as epoll_wait does in the C floor) let a round wait for more
//! completions: it returns once URING_WAIT_NR are there, or once
//! URING_MIN_WAIT_US have passed with at least one (kernel 6.13+), trading
//! that much added latency for fewer wake-ups.
//!
//! URING_MODE selects the ring setup to compare: "defer" (default:
//! SINGLE_ISSUER | DEFER_TASKRUN, completions run only inside our enter),
//! "coop" (COOP_TASKRUN) or "plain".
//!
//! Bench-only: built with `cargo build --release --example relay_floor_uring`.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::types::{BufRingEntry, Fixed, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};

/// Buffers in the provided ring (a power of two, at most 32768). Held by
/// in-flight sends only between one round's enter and the next, so this is
/// far above what a round needs even with thousands of sockets.
const NBUF: u16 = 8192;
/// One buffer: the recvmsg_out header, the source address and the datagram.
const SIZE: usize = 2048;
const BGID: u16 = 0;
/// user_data: sends carry this bit and the buffer id; receives the side index.
const SEND_TAG: u64 = 1 << 63;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// One side of a pair: its peer (the destination of the traffic that the
/// partner side receives), latched from the first packet read on this side.
#[derive(Clone, Copy)]
struct Side {
    latched: bool,
    peer: libc::sockaddr_in,
}

fn sockaddr_in(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn bind_port(port: u16) -> io::Result<UdpSocket> {
    // Blocking on purpose: io_uring never blocks the submitter, and a
    // non-blocking socket would make the multishot receive fail with EAGAIN
    // instead of waiting for data.
    let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port))
        .map_err(|e| io::Error::new(e.kind(), format!("bind 127.0.0.1:{port}: {e}")))?;
    let size: libc::c_int = 4 << 20;
    for opt in [libc::SO_RCVBUF, libc::SO_SNDBUF] {
        // SAFETY: a valid fd and a c_int option value of the stated size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    Ok(s)
}

/// The provided-buffer ring: the kernel takes buffers from its head, we give
/// them back at its tail.
struct BufRing {
    entries: *mut BufRingEntry,
    mem: Vec<u8>,
    tail: u16,
}

impl BufRing {
    fn new(ring: &IoUring) -> io::Result<Self> {
        let bytes = NBUF as usize * std::mem::size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping; the kernel wants the ring
        // page-aligned, which mmap gives.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut r = BufRing {
            entries: p.cast(),
            mem: vec![0u8; NBUF as usize * SIZE],
            tail: 0,
        };
        // SAFETY: the mapping lives for the process (never unmapped) and has
        // NBUF entries.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(p as u64, NBUF, BGID, 0)?;
        }
        for bid in 0..NBUF {
            r.push(bid);
        }
        r.publish();
        Ok(r)
    }

    /// Queues buffer `bid` for the kernel (seen after `publish`).
    fn push(&mut self, bid: u16) {
        let idx = (self.tail & (NBUF - 1)) as usize;
        let addr = self.mem.as_ptr() as u64 + bid as u64 * SIZE as u64;
        // SAFETY: idx < NBUF, inside the mapping.
        let e = unsafe { &mut *self.entries.add(idx) };
        e.set_addr(addr);
        e.set_len(SIZE as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field overlays entry 0's reserved field; the
        // kernel reads it, so store it atomically with release ordering.
        unsafe {
            let t = BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*t).store(self.tail, Ordering::Release);
        }
    }

    fn buf(&self, bid: u16) -> &[u8] {
        &self.mem[bid as usize * SIZE..(bid as usize + 1) * SIZE]
    }
}

/// Pushes an SQE, flushing the queue to the kernel first if it is full.
fn push_sqe(ring: &mut IoUring, sqe: &squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: every pointer an SQE carries (msghdr, buffers, addresses)
        // stays valid until its completion: all live for the whole run.
        if unsafe { ring.submission().push(sqe) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
}

fn run() -> io::Result<i32> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 && args.len() != 6 {
        eprintln!(
            "usage: {} PAIRS BASE SECONDS [PEER_A_BASE PEER_B_BASE]",
            args[0]
        );
        return Ok(2);
    }
    let pairs: usize = args[1].parse().unwrap_or(0);
    let base: usize = args[2].parse().unwrap_or(0);
    let secs: f64 = args[3].parse().unwrap_or(0.0);
    if pairs < 1 || base < 1 || base + 2 * pairs > 65536 || secs.is_nan() || secs <= 0.0 {
        eprintln!("bad PAIRS, BASE or SECONDS");
        return Ok(2);
    }
    let fixed: Option<[usize; 2]> = if args.len() == 6 {
        match (args[4].parse(), args[5].parse()) {
            (Ok(a), Ok(b)) => Some([a, b]),
            _ => {
                eprintln!("bad PEER_A_BASE or PEER_B_BASE");
                return Ok(2);
            }
        }
    } else {
        None
    };

    // sides[2i] is pair i's side A, sides[2i+1] its side B: the partner of
    // side k is k ^ 1.
    let n = 2 * pairs;
    let mut socks = Vec::with_capacity(n);
    let mut sides = Vec::with_capacity(n);
    for k in 0..n {
        socks.push(bind_port((base + k) as u16)?);
        let mut side = Side {
            latched: false,
            peer: sockaddr_in(Ipv4Addr::UNSPECIFIED, 0),
        };
        if let Some(pb) = fixed {
            side.latched = true;
            side.peer = sockaddr_in(Ipv4Addr::LOCALHOST, (pb[k & 1] + k / 2) as u16);
        }
        sides.push(side);
    }

    let mode = std::env::var("URING_MODE").unwrap_or_else(|_| "defer".into());
    let mut builder = IoUring::builder();
    // Completions from thousands of multishot receives plus a round's sends.
    builder.setup_cqsize(32768).setup_submit_all();
    match mode.as_str() {
        "defer" => {
            builder.setup_single_issuer().setup_defer_taskrun();
        }
        "coop" => {
            builder.setup_coop_taskrun();
        }
        "plain" => {}
        m => {
            eprintln!("bad URING_MODE {m} (defer, coop, plain)");
            return Ok(2);
        }
    }
    let env_u32 = |name: &str, default: u32| -> Result<u32, String> {
        match std::env::var(name) {
            Ok(v) => v.parse().map_err(|_| format!("bad {name} {v}")),
            Err(_) => Ok(default),
        }
    };
    let (wait_nr, min_wait_us) =
        match (env_u32("URING_WAIT_NR", 1), env_u32("URING_MIN_WAIT_US", 0)) {
            (Ok(a), Ok(b)) => (a.max(1) as usize, b),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("{e}");
                return Ok(2);
            }
        };
    let mut ring = builder.build(4096)?;
    // Registered files: no fd table lookup and refcount per operation.
    let fds: Vec<i32> = socks.iter().map(|s| s.as_raw_fd()).collect();
    ring.submitter().register_files(&fds)?;
    let mut bufs = BufRing::new(&ring)?;

    // The multishot recvmsg template: only msg_namelen and msg_controllen
    // are read, to lay out each buffer (header, address, payload).
    // SAFETY: msghdr is plain data; all-zero is valid.
    let mut tmpl: libc::msghdr = unsafe { std::mem::zeroed() };
    tmpl.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let tmpl = Box::new(tmpl);
    let recv_sqe = |k: usize| {
        opcode::RecvMsgMulti::new(Fixed(k as u32), &*tmpl as *const _, BGID)
            .build()
            .user_data(k as u64)
    };
    for k in 0..n {
        push_sqe(&mut ring, &recv_sqe(k))?;
    }
    ring.submit()?;

    // SAFETY: installing an async-signal-safe handler that stores an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }

    let (mut forwarded, mut unlatched, mut send_errors) = (0u64, 0u64, 0u64);
    let (mut nobufs, mut rearmed, mut rounds, mut recv_errors) = (0u64, 0u64, 0u64, 0u64);
    let mut rearm: Vec<usize> = Vec::new();
    let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(32768);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    while !STOP.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let wait = (end - now).min(Duration::from_millis(100));
        let ts = Timespec::new()
            .sec(wait.as_secs())
            .nsec(wait.subsec_nanos());
        // One enter per round: submits this round's sends and re-arms, and
        // waits for the next completions.
        match ring.submitter().submit_with_args(
            wait_nr,
            &SubmitArgs::new().min_wait_usec(min_wait_us).timespec(&ts),
        ) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => return Err(e),
        }
        rounds += 1;
        cqes.clear();
        cqes.extend(
            ring.completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(ud, res, flags) in &cqes {
            if ud & SEND_TAG != 0 {
                // A send is done: its buffer goes back to the ring.
                if res >= 0 {
                    forwarded += 1;
                } else {
                    send_errors += 1;
                }
                bufs.push((ud & 0xffff) as u16);
                continue;
            }
            let k = ud as usize;
            if !cqueue::more(flags) {
                // The multishot ended (out of buffers, or an error): arm it
                // again once this round has given buffers back.
                rearm.push(k);
            }
            if res < 0 {
                if res == -libc::ENOBUFS {
                    nobufs += 1;
                } else {
                    recv_errors += 1;
                }
                continue;
            }
            let Some(bid) = cqueue::buffer_select(flags) else {
                recv_errors += 1;
                continue;
            };
            let buf = &bufs.buf(bid)[..res as usize];
            let Ok(msg) = RecvMsgOut::parse(buf, &tmpl) else {
                recv_errors += 1;
                bufs.push(bid);
                continue;
            };
            // The source of this side's traffic is where the other side's
            // traffic goes (latching on the first packet).
            if !sides[k].latched
                && msg.name_data().len() >= std::mem::size_of::<libc::sockaddr_in>()
            {
                // SAFETY: the kernel wrote a sockaddr_in there (an AF_INET
                // socket); read_unaligned because the buffer is bytes.
                sides[k].peer = unsafe {
                    std::ptr::read_unaligned(msg.name_data().as_ptr().cast::<libc::sockaddr_in>())
                };
                sides[k].latched = true;
            }
            let dst = k ^ 1;
            if !sides[dst].latched {
                unlatched += 1;
                bufs.push(bid);
                continue;
            }
            let payload = msg.payload_data();
            // The payload stays in the ring buffer until the send's
            // completion gives the buffer back; MSG_DONTWAIT: a full socket
            // buffer drops the packet as sendmmsg with MSG_DONTWAIT does.
            let sqe = opcode::Send::new(Fixed(dst as u32), payload.as_ptr(), payload.len() as u32)
                .dest_addr(&sides[dst].peer as *const libc::sockaddr_in as *const libc::sockaddr)
                .dest_addr_len(std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t)
                .flags(libc::MSG_DONTWAIT)
                .build()
                .user_data(SEND_TAG | bid as u64);
            push_sqe(&mut ring, &sqe)?;
        }
        bufs.publish();
        for k in rearm.drain(..) {
            rearmed += 1;
            push_sqe(&mut ring, &recv_sqe(k))?;
        }
    }
    println!(
        "forwarded {forwarded} dropped_unlatched {unlatched} send_errors {send_errors} seconds {:.3} \
         rounds {rounds} nobufs {nobufs} rearmed {rearmed} recv_errors {recv_errors} mode {mode} \
         wait_nr {wait_nr} min_wait_us {min_wait_us}",
        start.elapsed().as_secs_f64()
    );
    Ok(0)
}

fn main() {
    match run() {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("relay_floor_uring: {e}");
            std::process::exit(1);
        }
    }
}
