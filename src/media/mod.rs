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
pub mod ng;
