//! RTP/RTCP as far as a relay looks: is it one (RFC 3550 §5.1, §6.4), and
//! what it says about loss and jitter (RFC 3550 A.1, A.8).

/// Why a packet was not relayed for its form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    Short,
    Version,
}

/// Checks an RTP or RTCP packet's fixed header. On an `rtcp-mux` port
/// both arrive on the RTP socket; both pass the same way.
pub fn check(pkt: &[u8], rtcp_port: bool) -> Result<(), Malformed> {
    let min = if rtcp_port { 8 } else { 12 };
    if pkt.len() < min {
        return Err(Malformed::Short);
    }
    if pkt[0] >> 6 != 2 {
        return Err(Malformed::Version);
    }
    Ok(())
}

/// RTCP sent on an RTP port (rtcp-mux): payload types 200-204 sit at
/// 72-76 with the marker bit (RFC 5761 §4).
pub fn is_muxed_rtcp(pkt: &[u8]) -> bool {
    pkt.get(1).is_some_and(|b| (192..=223).contains(b))
}

/// Reception statistics of one party's RTP, as an RTCP receiver report
/// would compute them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reception {
    pub packets: u64,
    pub bytes: u64,
    pub rtcp_packets: u64,
    pub rtcp_bytes: u64,
    ssrc: u32,
    /// Extended highest sequence number (cycles in the high bits).
    max_ext: u64,
    base_ext: u64,
    /// RTP packets counted for this SSRC (loss is per SSRC run).
    received: u64,
    /// Loss of earlier SSRCs, carried over when the SSRC changes.
    lost_before: u64,
    /// Interarrival jitter in timestamp units, ×16 (A.8's fixed point).
    jitter16: u64,
    last_transit: Option<i64>,
    started: bool,
}

impl Reception {
    /// Counts an RTP packet that arrived at `arrival_us` (any fixed epoch),
    /// for a stream whose RTP clock runs at `clock_rate` Hz.
    pub fn rtp(&mut self, pkt: &[u8], arrival_us: u64, clock_rate: u32) {
        self.packets += 1;
        self.bytes += pkt.len() as u64;
        if pkt.len() < 12 {
            return;
        }
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
        let ts = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
        let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
        if !self.started || ssrc != self.ssrc {
            self.lost_before = self.lost();
            self.started = true;
            self.ssrc = ssrc;
            self.max_ext = u64::from(seq);
            self.base_ext = u64::from(seq);
            self.received = 1;
            self.last_transit = None;
        } else {
            self.received += 1;
            // Place seq in the cycle nearest to the highest seen (A.1).
            let cycle = self.max_ext & !0xffff;
            let cands = [cycle.wrapping_sub(0x10000), cycle, cycle + 0x10000];
            let ext = cands
                .iter()
                .map(|c| c.wrapping_add(u64::from(seq)))
                .min_by_key(|e| e.abs_diff(self.max_ext))
                .unwrap_or(self.max_ext);
            if ext > self.max_ext {
                self.max_ext = ext;
            } else if ext < self.base_ext {
                self.base_ext = ext;
            }
        }
        // A.8: J += (|D| - J) / 16, in timestamp units.
        // u64 holds µs × 90 kHz for six years of uptime; wrapping is harmless
        // (only differences of transit times count).
        let arrival = (arrival_us.wrapping_mul(u64::from(clock_rate.max(1))) / 1_000_000) as i64;
        let transit = arrival.wrapping_sub(i64::from(ts));
        if let Some(prev) = self.last_transit {
            let d = transit.wrapping_sub(prev).unsigned_abs();
            let d16 = d.saturating_mul(16);
            // jitter16 += (|D|*16 - jitter16) / 16
            self.jitter16 = if d16 >= self.jitter16 {
                self.jitter16 + (d16 - self.jitter16) / 16
            } else {
                self.jitter16 - (self.jitter16 - d16) / 16
            };
        }
        self.last_transit = Some(transit);
    }

    pub fn rtcp(&mut self, pkt: &[u8]) {
        self.rtcp_packets += 1;
        self.rtcp_bytes += pkt.len() as u64;
    }

    /// Packets lost: expected from the sequence numbers minus received,
    /// never negative (duplicates), summed over SSRC changes.
    pub fn lost(&self) -> u64 {
        if !self.started {
            return self.lost_before;
        }
        let expected = self.max_ext - self.base_ext + 1;
        self.lost_before + expected.saturating_sub(self.received)
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self, clock_rate: u32) -> f64 {
        self.jitter16 as f64 / 16.0 * 1000.0 / f64::from(clock_rate.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&ts.to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    #[test]
    fn checks_form() {
        assert_eq!(check(&[0x80; 11], false), Err(Malformed::Short));
        assert_eq!(check(&[0x80; 8], true), Ok(()));
        assert_eq!(check(&[0x40; 12], false), Err(Malformed::Version));
        assert_eq!(check(&pkt(1, 1, 1), false), Ok(()));
        assert!(is_muxed_rtcp(&[0x81, 200, 0, 1]));
        assert!(!is_muxed_rtcp(&pkt(1, 1, 1)));
    }

    #[test]
    fn loss_counts_gaps_across_wrap_and_ignores_reorder() {
        let mut r = Reception::default();
        let mut t = 0;
        for seq in (65530u16..=65535).chain(0..10) {
            if seq == 2 || seq == 65533 {
                continue; // lost
            }
            r.rtp(&pkt(seq, u32::from(seq) * 160, 7), t, 8000);
            t += 20_000;
        }
        assert_eq!(r.lost(), 2);
        // A late packet fills its gap.
        r.rtp(&pkt(2, 2 * 160, 7), t, 8000);
        assert_eq!(r.lost(), 1);
        assert_eq!(r.packets, 15);
    }

    #[test]
    fn jitter_is_zero_for_a_steady_stream_and_grows_with_variation() {
        let mut r = Reception::default();
        for i in 0..100u32 {
            r.rtp(&pkt(i as u16, i * 160, 1), u64::from(i) * 20_000, 8000);
        }
        assert!(r.jitter_ms(8000) < 0.01);
        let mut r = Reception::default();
        for i in 0..200u32 {
            let wobble = if i % 2 == 0 { 0 } else { 10_000 };
            r.rtp(
                &pkt(i as u16, i * 160, 1),
                u64::from(i) * 20_000 + wobble,
                8000,
            );
        }
        // |D| alternates 10 ms: J converges towards 10 ms.
        let j = r.jitter_ms(8000);
        assert!((9.0..=10.5).contains(&j), "{j}");
    }

    #[test]
    fn a_new_ssrc_keeps_the_old_loss() {
        let mut r = Reception::default();
        for seq in [1u16, 2, 4] {
            r.rtp(&pkt(seq, 0, 1), 0, 8000);
        }
        assert_eq!(r.lost(), 1);
        for seq in [100u16, 101] {
            r.rtp(&pkt(seq, 0, 2), 0, 8000);
        }
        assert_eq!(r.lost(), 1);
    }
}
