//! tether: a thread-per-core UDP SIP/RTP edge relay that keeps endpoints
//! behind NATs reachable and wakes them on demand.
//!
//! The protocol modules are sans-IO (bytes and `now` in, bytes and deadlines
//! out); only [`runtime`] touches sockets and clocks.

pub mod addr;
pub mod api;
pub mod config;
pub mod endpoint;
pub(crate) mod io;
pub mod loadgen;
pub mod metrics;
pub mod nat;
pub mod notify;
pub mod registrar;
pub mod runtime;
pub mod sip;
pub mod timer;
pub mod transaction;
