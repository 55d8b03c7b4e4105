//! The relay's per-packet decision: the hot path, apart from the table's
//! bookkeeping. It allocates nothing and touches one socket entry, two legs
//! and the session's clock.

use std::net::SocketAddr;

use super::{rtp, Table, Verdict, NONE, RELATCH_PACKETS};

impl Table {
    /// The decision for one packet that arrived on socket `sock` from
    /// `src` at `now_us` (µs since the runtime's epoch). No allocation.
    pub fn relay(&mut self, now_us: u64, sock: u32, src: SocketAddr, pkt: &[u8]) -> Verdict {
        let now_ms = now_us / 1000;
        let Some(entry) = self.socks.get(sock as usize) else {
            return Verdict::Drop;
        };
        let leg_idx = entry.leg;
        let kind = (sock & 1) as usize;
        if leg_idx == NONE {
            // A port in quarantine or not yet used: late packets of an old call.
            self.stats.dropped_source += 1;
            return Verdict::Drop;
        }
        if rtp::check(pkt, kind == 1).is_err() {
            self.stats.dropped_malformed += 1;
            return Verdict::Drop;
        }
        let relatch_ms = self.cfg.relatch_ms;
        let leg = &mut self.legs[leg_idx as usize];
        match leg.latched[kind] {
            Some(a) if a == src => {}
            None => {
                let signalled_ip = leg.signalled[kind].map(|a| a.ip());
                if !leg.any_source && signalled_ip != Some(src.ip()) {
                    self.stats.dropped_source += 1;
                    return Verdict::Drop;
                }
                leg.latched[kind] = Some(src);
            }
            Some(_) => {
                let silent = now_ms.saturating_sub(leg.last_rx[kind]) >= relatch_ms;
                let allowed =
                    leg.any_source || leg.signalled[kind].map(|a| a.ip()) == Some(src.ip());
                if !(silent && allowed) {
                    leg.candidate[kind] = None;
                    self.stats.dropped_source += 1;
                    return Verdict::Drop;
                }
                let n = match leg.candidate[kind] {
                    Some((c, n)) if c == src => n + 1,
                    _ => 1,
                };
                if n < RELATCH_PACKETS {
                    leg.candidate[kind] = Some((src, n));
                    self.stats.dropped_source += 1;
                    return Verdict::Drop;
                }
                leg.candidate[kind] = None;
                leg.latched[kind] = Some(src);
                self.stats.relatched += 1;
            }
        }
        leg.last_rx[kind] = now_ms;
        if kind == 1 || rtp::is_muxed_rtcp(pkt) {
            leg.rx.rtcp(pkt);
        } else {
            let rate = leg.clock_rate;
            leg.rx.rtp(pkt, now_us, rate);
        }
        let (peer, session) = (leg.peer, leg.session);
        if let Some(s) = self.sessions.get_mut(session as usize) {
            s.last_media_ms = now_ms;
        }
        let Some(p) = self.legs.get(peer as usize) else {
            self.stats.dropped_no_destination += 1;
            return Verdict::Drop;
        };
        let Some(to) = p.latched[kind].or(p.signalled[kind]) else {
            self.stats.dropped_no_destination += 1;
            return Verdict::Drop;
        };
        self.stats.packets += 1;
        self.stats.bytes += pkt.len() as u64;
        Verdict::Forward {
            sock: p.sock + kind as u32,
            to,
        }
    }
}
