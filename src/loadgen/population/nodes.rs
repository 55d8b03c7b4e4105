//! Several nodes at once (a tether cluster, issue 18): endpoints are spread
//! over the targets in turn, each node's results are counted apart, a
//! device prompted by two nodes within `duplicate_window` (while it stays
//! with one node) counts as a duplicate prompt, and a node that stops answering loses its endpoints to
//! the nodes still up, where they register again at once: what DNS SRV
//! failover does for a real device. Whether a node is up is learnt as an
//! RFC 5626 device learns that its flow died: STUN Binding keepalives to
//! each node, unanswered for `failover`.

use std::net::SocketAddrV4;

use super::{Population, Reg};
use crate::loadgen::{LoadConfig, NodeReport};

/// Our STUN transaction ids start with this (the node's index follows).
const TXID_TAG: &[u8; 4] = b"tlgN";

/// A STUN Binding request (RFC 5389 header, no attributes) to node `k`.
fn binding_request(k: u32, seq: u32) -> [u8; 20] {
    let mut b = [0u8; 20];
    b[..2].copy_from_slice(&1u16.to_be_bytes());
    b[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
    b[8..12].copy_from_slice(TXID_TAG);
    b[12..16].copy_from_slice(&k.to_be_bytes());
    b[16..20].copy_from_slice(&seq.to_be_bytes());
    b
}

/// The node index a Binding success response of ours answers.
fn answered_node(d: &[u8]) -> Option<u32> {
    if !crate::nat::stun::is_stun(d) || d.get(..2)? != [0x01, 0x01] || d.get(8..12)? != TXID_TAG {
        return None;
    }
    Some(u32::from_be_bytes(d.get(12..16)?.try_into().ok()?))
}

/// The run's nodes and what each saw.
#[derive(Debug)]
pub(super) struct Nodes {
    pub addrs: Vec<SocketAddrV4>,
    /// Each endpoint's node (empty with one node: all at 0).
    of: Vec<u8>,
    /// Each endpoint's last prompt: (node + 1, ms); 0 = none yet.
    last_prompt: Vec<(u8, u32)>,
    pub report: Vec<NodeReport>,
    pub duplicates: u64,
    /// Per node: when it last answered a keepalive (ms), whether it is up.
    answered_ms: Vec<u64>,
    /// Per node: keepalives sent since its last answer.
    unanswered: Vec<u32>,
    up: Vec<bool>,
    next_probe_ms: u64,
    probe_seq: u32,
    failover_ms: u64,
    window_ms: u64,
    /// Moves waiting to be sent: endpoints retargeted but not re-registered.
    pub moved: Vec<u32>,
}

impl Nodes {
    pub fn new(cfg: &LoadConfig, n: u32) -> Nodes {
        let addrs = cfg.nodes();
        let k = addrs.len();
        let multi = k > 1;
        let of = if multi {
            (0..n).map(|i| (i as usize % k) as u8).collect()
        } else {
            Vec::new()
        };
        let mut report: Vec<NodeReport> = addrs
            .iter()
            .map(|a| NodeReport {
                target: a.to_string(),
                ..NodeReport::default()
            })
            .collect();
        for i in 0..n {
            report[i as usize % k].endpoints += 1;
        }
        Nodes {
            of,
            last_prompt: if multi {
                vec![(0, 0); n as usize]
            } else {
                Vec::new()
            },
            report,
            duplicates: 0,
            answered_ms: vec![0; k],
            unanswered: vec![0; k],
            up: vec![true; k],
            next_probe_ms: 0,
            probe_seq: 0,
            failover_ms: if multi {
                cfg.failover.as_millis() as u64
            } else {
                0
            },
            window_ms: cfg.duplicate_window.as_millis() as u64,
            moved: Vec::new(),
            addrs,
        }
    }

    pub fn node_of(&self, i: u32) -> usize {
        self.of.get(i as usize).map_or(0, |&k| usize::from(k))
    }

    pub fn addr_of(&self, i: u32) -> SocketAddrV4 {
        self.addrs[self.node_of(i)]
    }

    /// A request from `from` reached endpoint `i` at `now_ms`.
    pub fn prompted(&mut self, i: u32, from: SocketAddrV4, now_ms: u64) {
        let Some(k) = self.addrs.iter().position(|a| *a == from) else {
            return;
        };
        self.report[k].prompts += 1;
        let Some(last) = self.last_prompt.get_mut(i as usize) else {
            return;
        };
        let at = now_ms as u32;
        if last.0 != 0
            && usize::from(last.0 - 1) != k
            && u64::from(at.wrapping_sub(last.1)) <= self.window_ms
        {
            self.duplicates += 1;
            self.report[k].duplicate_prompts += 1;
        }
        *last = (k as u8 + 1, at);
    }

    /// Keepalives due at `now_ms`: (node, request bytes).
    pub fn probes(&mut self, now_ms: u64) -> Vec<(usize, [u8; 20])> {
        if self.failover_ms == 0 || now_ms < self.next_probe_ms {
            return Vec::new();
        }
        // Four keepalives per failover interval: one lost datagram is not a death.
        self.next_probe_ms = now_ms + (self.failover_ms / 4).max(10);
        self.probe_seq = self.probe_seq.wrapping_add(1);
        if self.answered_ms.iter().all(|&a| a == 0) {
            // The first round starts every node's clock.
            self.answered_ms.fill(now_ms.max(1));
        }
        for u in &mut self.unanswered {
            *u = u.saturating_add(1);
        }
        (0..self.addrs.len())
            .map(|k| (k, binding_request(k as u32, self.probe_seq)))
            .collect()
    }

    /// A STUN datagram arrived at `now_ms`; true when it was ours.
    pub fn on_stun(&mut self, d: &[u8], now_ms: u64) -> bool {
        let Some(k) = answered_node(d).map(|k| k as usize) else {
            return false;
        };
        if let Some(a) = self.answered_ms.get_mut(k) {
            *a = now_ms;
            self.up[k] = true;
            self.unanswered[k] = 0;
        }
        true
    }

    /// Nodes silent past `failover` at `now_ms` go down; their endpoints
    /// move to the nodes still up (in turn) and are queued in `moved`.
    /// Silent means: four keepalives unanswered over more than `failover`
    /// while another node did answer within it. A generator that stalled
    /// (a busy machine) finds every node silent at once, and moves nobody.
    pub fn check(&mut self, now_ms: u64) {
        if self.failover_ms == 0 {
            return;
        }
        let silent = |k: usize| now_ms.saturating_sub(self.answered_ms[k]) > self.failover_ms;
        let down: Vec<usize> = (0..self.addrs.len())
            .filter(|&k| self.up[k] && self.answered_ms[k] != 0)
            .filter(|&k| self.unanswered[k] >= 4 && silent(k))
            .filter(|&k| (0..self.addrs.len()).any(|j| j != k && self.up[j] && !silent(j)))
            .collect();
        for k in down {
            self.up[k] = false;
            self.report[k].went_down_ms = Some(now_ms);
            let alive: Vec<u8> = (0..self.addrs.len())
                .filter(|&j| self.up[j])
                .map(|j| j as u8)
                .collect();
            if alive.is_empty() {
                continue;
            }
            let mut turn = 0usize;
            for i in 0..self.of.len() {
                if usize::from(self.of[i]) == k {
                    let to = alive[turn % alive.len()];
                    turn += 1;
                    self.of[i] = to;
                    // Prompts from the node it left are not duplicates of
                    // those from the node it goes to.
                    self.last_prompt[i] = (0, 0);
                    self.report[k].endpoints -= 1;
                    self.report[k].moved_away += 1;
                    self.report[usize::from(to)].endpoints += 1;
                    self.moved.push(i as u32);
                }
            }
        }
    }
}

impl Population {
    /// Several nodes: keepalives, failover, and the REGISTERs of endpoints
    /// that moved (at once: a device whose flow died registers again).
    pub(super) fn nodes_due(&mut self, now: u64) {
        let now_ms = now / 1000;
        let probes = self.nodes.probes(now_ms);
        let src = self.cfg.source_base;
        for (k, b) in probes {
            self.out.buffer().extend_from_slice(&b);
            self.out.commit(0, src, self.nodes.addrs[k]);
        }
        self.nodes.check(now_ms);
        let moved = std::mem::take(&mut self.nodes.moved);
        for i in moved {
            let e = self.eps[i as usize];
            match e.state {
                // Not started: it starts at its new node.
                Reg::Idle => continue,
                Reg::Pending => {
                    self.end_transaction(i);
                    self.inflight -= 1;
                }
                Reg::Done => {}
            }
            self.next_transaction(i, now);
            self.send_register(i, b"", self.expires_of(i));
            self.start_transaction(i, now);
            self.tally.cur.sent += 1;
        }
    }

    /// Endpoint `i`'s registrar.
    pub(super) fn target_of(&self, i: u32) -> SocketAddrV4 {
        self.nodes.addr_of(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binding_answer_names_its_node_and_other_stun_is_not_ours() {
        let req = binding_request(2, 9);
        assert_eq!(answered_node(&req), None, "a request is not an answer");
        let mut ans = req;
        ans[..2].copy_from_slice(&0x0101u16.to_be_bytes());
        assert_eq!(answered_node(&ans), Some(2));
        ans[8] = b'x';
        assert_eq!(answered_node(&ans), None);
        assert_eq!(answered_node(b"SIP/2.0 200 OK"), None);
    }
}
