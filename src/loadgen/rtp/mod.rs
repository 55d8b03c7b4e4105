//! The RTP scenario (`tether bench rtp`): calls set up on an RTP relay over
//! rtpengine's `ng` protocol (or a relay with fixed ports, such as the C
//! floor in benches/relay_floor.c), then RTP both ways on every stream,
//! paced, counted on arrival: forwarded packets, loss per flow, one-way
//! latency through the relay, payloads changed on the way, and the relay's
//! CPU per forwarded packet.
//!
//! A call has two parties, A and B, and two streams (audio, video); each
//! party's stream is one socket of the generator (a relay latches on the
//! source address, so every party port must be its own). A stream in one
//! direction is a *flow*: flow `f` is stream `f / 2`, from A when `f` is
//! even, and is sent from socket `f` and received on socket `f ^ 1`.
//!
//! The pure parts — packets, pacing, accounting, the `ng` exchange — are
//! sans-IO and tested alone; `driver` owns the sockets and the clock.

mod control;
mod driver;
mod ng_codec;
mod pace;
mod packet;
pub mod report;
mod tally;

use std::net::SocketAddrV4;
use std::time::Duration;

use serde::Serialize;

pub use driver::run;
pub use tally::{RtpSecond, Spread};

use super::Percentiles;

/// The relay under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtpTarget {
    /// Calls are set up over `ng` at this address; the relay's ports come
    /// from the SDP it returns.
    Ng(SocketAddrV4),
    /// No signalling: pair `i` of the relay listens on `base + 2i` (side A)
    /// and `base + 2i + 1` (side B) and latches; stream `s` uses pair
    /// `s % pairs`.
    Fixed { base: SocketAddrV4, pairs: u32 },
}

/// A run's parameters.
#[derive(Debug, Clone)]
pub struct RtpPlan {
    pub target: RtpTarget,
    pub calls: u32,
    /// Packets per second per flow (a stream in one direction).
    pub pps: u32,
    /// RTP payload bytes (at least 24: the stamp).
    pub payload: usize,
    /// How long to send.
    pub seconds: f64,
    /// The relay's process id: its CPU per forwarded packet is reported.
    pub server_pid: Option<u32>,
    /// Hard cap on packets sent in the whole run.
    pub max_packets: u64,
    /// Longest the calls may take to set up (and to delete).
    pub setup_timeout: Duration,
    /// How long to keep receiving after the last packet was sent.
    pub drain: Duration,
    /// `ng` requests in flight at once.
    pub window: usize,
}

impl Default for RtpPlan {
    fn default() -> Self {
        RtpPlan {
            target: RtpTarget::Ng(SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 2223)),
            calls: 100,
            pps: 50,
            payload: 160,
            seconds: 10.0,
            server_pid: None,
            max_packets: 200_000_000,
            setup_timeout: Duration::from_secs(60),
            drain: Duration::from_millis(500),
            window: 64,
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RtpReport {
    /// The relay: "ng ADDR" or "fixed ADDR, N pairs".
    pub relay: String,
    pub calls_asked: u32,
    /// Calls offered and answered (their streams carry traffic).
    pub calls_set_up: u64,
    pub calls_deleted: u64,
    pub ng_errors: u64,
    pub ng_timeouts: u64,
    pub ng_retransmissions: u64,
    pub ng_first_error: Option<String>,
    /// Seconds the offers and answers took.
    pub setup_s: f64,
    pub streams: u64,
    pub flows: u64,
    pub pps_per_flow: u32,
    pub payload_bytes: usize,
    /// From the first packet sent to the last.
    pub send_window_s: f64,
    pub sent: u64,
    /// Packets the generator did not send because it fell more than 100 ms
    /// behind its schedule (it could not keep up: the figures are its own).
    pub skipped_behind: u64,
    /// Packets the kernel refused to send (socket buffer full).
    pub send_dropped: u64,
    /// Sent over the send window.
    pub offered_pps: f64,
    /// Received by the generator over the send window.
    pub forwarded_pps: f64,
    /// Received in all (the drain after the window included).
    pub received: u64,
    pub received_in_window: u64,
    /// Received ÷ sent.
    pub delivery: f64,
    /// Delivery ratio per flow.
    pub spread: Spread,
    /// Datagrams received that were not an intact packet of ours.
    pub corrupted: u64,
    /// Intact packets for a flow this run does not have.
    pub foreign: u64,
    /// One-way latency through the relay: send stamp to receipt (ns).
    pub latency_ns: Percentiles,
    /// The relay's CPU (all its threads) over the send window, and per
    /// packet received in the window, with `server_pid`.
    pub server_cpu_s: Option<f64>,
    pub server_cpu_us_per_packet: Option<f64>,
    /// The generator's own CPU per packet sent or received in the window.
    pub generator_cpu_us_per_packet: Option<f64>,
    /// The generator's CPU over the send window, in cores: near 1 it was
    /// saturated, and loss and latency are then partly its own.
    pub generator_busy: Option<f64>,
    pub timeline: Vec<RtpSecond>,
}
