//! Datagram I/O, the one place with socket system calls (the role
//! `quinn-udp` plays for quinn): socket setup (`SO_REUSEPORT` groups,
//! buffer sizes, `IP_PKTINFO`) and batched `recvmmsg`/`sendmmsg` with each
//! datagram's peer and local address. The runtime's workers and the load
//! generator both use it; the protocol code never sees it.
//!
//! All of tether's unsafe code for sockets is in this module's files, each
//! block with the reason it holds.

mod batch;
mod relay;
mod socket;
mod sys;

pub use batch::{RecvBatch, SendBatch};
pub use relay::RelayBatch;
pub use socket::{bind_pktinfo, bind_plain, bind_reuseport, raise_fd_limit, set_dont_fragment};
