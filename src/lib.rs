//! tether: a thread-per-core UDP SIP/RTP edge relay that keeps endpoints
//! behind NATs reachable and wakes them on demand.
//!
//! The protocol modules are sans-IO (bytes and `now` in, bytes and deadlines
//! out); only [`runtime`] (with the crate's `io` module of batched
//! syscalls, which the load generator shares) touches sockets and clocks.
//!
//! Unsafe code lives in three places: the location directory's
//! epoch-protected table (`registrar/directory/table.rs`, its invariants at
//! its top), the batched syscalls (`io/`) and one prefetch in the timer
//! wheel. Every unsafe block says why it holds.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod addr;
pub mod api;
pub mod cluster;
pub mod config;
pub mod endpoint;
pub mod hold;
pub mod hooks;
pub(crate) mod io;
pub mod limits;
pub mod loadgen;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod nat;
pub mod notify;
pub mod persist;
pub mod proxy;
pub mod registrar;
pub mod reload;
pub mod runtime;
pub mod sip;
pub mod timer;
pub mod transaction;
