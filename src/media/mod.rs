//! The RTP relay: media anchored at the edge (design: "Media").
//!
//! Relay ports belong to cores. A stream is two legs, one per party, each
//! with its own RTP/RTCP port pair on this node; packets arriving on one
//! leg's ports leave from the other leg's ports towards that party's
//! latched (or signalled) address. Sans-IO like the rest: the runtime owns
//! the sockets and hands packets in; this module decides where they go.
//!
//! Two doors lead to the same per-core table: the proxy, which anchors the
//! calls it relays by rewriting their SDP, and the rtpengine `ng` control
//! protocol, for deployments that keep their own proxies.

pub mod bencode;
pub mod config;
pub mod ng;
pub mod ng_server;
pub mod rtp;
pub mod sdp;
pub mod table;

pub use config::{MediaSection, Mode};
pub use table::{Table, Verdict};

#[cfg(test)]
pub(crate) mod test_rng {
    /// Deterministic randomness for the no-panic loops (the crate's
    /// splitmix64 id generator, seeded), so a failure reproduces.
    pub struct Rng(crate::sip::ids::IdGen);

    impl Rng {
        pub fn new(seed: u64) -> Rng {
            Rng(crate::sip::ids::IdGen::new(seed))
        }

        pub fn next(&mut self) -> u64 {
            self.0.next_u64()
        }

        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }
}
