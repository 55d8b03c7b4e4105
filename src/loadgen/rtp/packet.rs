//! The generator's RTP packets: a 12-byte RTP header (version 2, sequence
//! number, timestamp, SSRC) and a payload that carries what the receiver
//! needs to account for the packet without any state shared with the
//! sender: when it was sent (ns on the generator's clock), which stream and
//! direction it belongs to, its own 32-bit sequence number, and a filler
//! drawn from those, so any payload byte changed on the way is noticed
//! (with a payload longer than the stamp itself).
//!
//! Only the payload is checked on receipt: a relay may rewrite the header
//! (sequence numbers, SSRC) and still be a correct relay.

/// RTP fixed header length.
pub const HEADER: usize = 12;
/// Payload bytes the accounting needs: send time (8), stream (4),
/// direction (1), 3 reserved, sequence (4), 4 reserved.
pub const MIN_PAYLOAD: usize = 24;

/// What identifies a packet and when it left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Stream number (call × 2 + media).
    pub stream: u32,
    /// 0: side A to side B; 1: side B to side A.
    pub dir: u8,
    /// The flow's own packet counter (not wrapped like the RTP one).
    pub seq: u32,
    /// Nanoseconds since the run's start when the packet was built.
    pub sent_ns: u64,
}

/// Why a received datagram is not one of ours, intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corrupt {
    TooShort,
    NotRtpV2,
    /// The payload differs from what its sender wrote.
    Payload,
}

/// The SSRC of a flow: distinct per stream and direction.
pub fn ssrc(stream: u32, dir: u8) -> u32 {
    // Any bijection works; mixing the bits keeps SSRCs from looking sequential.
    (stream.wrapping_mul(2).wrapping_add(u32::from(dir & 1))).wrapping_mul(0x9E37_79B1)
        ^ 0x7E7E_0001
}

/// A 64-bit mix in which every input bit moves about half the output bits
/// (the splitmix64 finaliser).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key the filler is drawn from: every bit of the stamp changes it.
fn key(s: &Stamp) -> u64 {
    mix(s.sent_ns) ^ mix((u64::from(s.seq) << 32 | u64::from(s.stream)) ^ u64::from(s.dir) << 63)
}

/// The filler byte at payload offset `i` (≥ the fixed fields) under `key`.
fn filler(key: u64, i: usize) -> u8 {
    (key.rotate_right(8 * (i % 8) as u32) as u8) ^ (i / 8) as u8
}

/// Writes a packet of `payload` bytes (at least [`MIN_PAYLOAD`]) into
/// `buf`; returns its length, or `None` when `buf` is too small or the
/// payload too short to carry the stamp.
pub fn build(buf: &mut [u8], s: &Stamp, pt: u8, ts_step: u32, payload: usize) -> Option<usize> {
    let len = HEADER.checked_add(payload)?;
    if payload < MIN_PAYLOAD || buf.len() < len {
        return None;
    }
    let (h, p) = buf[..len].split_at_mut(HEADER);
    h[0] = 0x80;
    h[1] = pt & 0x7f;
    h[2..4].copy_from_slice(&(s.seq as u16).to_be_bytes());
    h[4..8].copy_from_slice(&s.seq.wrapping_mul(ts_step).to_be_bytes());
    h[8..12].copy_from_slice(&ssrc(s.stream, s.dir).to_be_bytes());
    p[0..8].copy_from_slice(&s.sent_ns.to_be_bytes());
    p[8..12].copy_from_slice(&s.stream.to_be_bytes());
    p[12] = s.dir;
    p[13..16].fill(0);
    p[16..20].copy_from_slice(&s.seq.to_be_bytes());
    p[20..24].fill(0);
    let k = key(s);
    for (i, b) in p.iter_mut().enumerate().skip(MIN_PAYLOAD) {
        *b = filler(k, i);
    }
    Some(len)
}

/// Reads a received packet back; `Err` when it is not an intact packet of
/// ours with a `payload`-byte payload.
pub fn parse(data: &[u8], payload: usize) -> Result<Stamp, Corrupt> {
    if data.len() < HEADER + MIN_PAYLOAD {
        return Err(Corrupt::TooShort);
    }
    if data[0] >> 6 != 2 {
        return Err(Corrupt::NotRtpV2);
    }
    let p = &data[HEADER..];
    if p.len() != payload {
        return Err(Corrupt::Payload);
    }
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let mut ns = [0u8; 8];
    ns.copy_from_slice(&p[0..8]);
    let s = Stamp {
        sent_ns: u64::from_be_bytes(ns),
        stream: be32(&p[8..12]),
        dir: p[12],
        seq: be32(&p[16..20]),
    };
    let reserved_clear = p[13..16].iter().chain(&p[20..24]).all(|&b| b == 0);
    let k = key(&s);
    let filler_intact = p
        .iter()
        .enumerate()
        .skip(MIN_PAYLOAD)
        .all(|(i, &b)| b == filler(k, i));
    if s.dir > 1 || !reserved_clear || !filler_intact {
        return Err(Corrupt::Payload);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp() -> Stamp {
        Stamp {
            stream: 1_234,
            dir: 1,
            seq: 70_000,
            sent_ns: 9_876_543_210,
        }
    }

    #[test]
    fn header_is_rtp_v2_with_wrapped_seq_timestamp_and_flow_ssrc() {
        let mut buf = [0u8; 300];
        let n = build(&mut buf, &stamp(), 96, 3_000, 160).unwrap();
        assert_eq!(n, HEADER + 160);
        assert_eq!(buf[0], 0x80, "version 2, no padding, extension or CSRC");
        assert_eq!(buf[1], 96, "payload type, no marker");
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), 70_000u32 as u16);
        let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        assert_eq!(ts, 70_000u32.wrapping_mul(3_000));
        let ssrc_read = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
        assert_eq!(ssrc_read, ssrc(1_234, 1));
        assert_ne!(ssrc(1_234, 0), ssrc(1_234, 1));
        assert_ne!(ssrc(1_234, 1), ssrc(1_235, 1));
    }

    #[test]
    fn round_trip_and_header_rewrites_are_accepted() {
        let mut buf = [0u8; 300];
        let n = build(&mut buf, &stamp(), 0, 160, 160).unwrap();
        assert_eq!(parse(&buf[..n], 160), Ok(stamp()));
        // A relay renumbering and re-SSRCing the stream is still intact.
        buf[2..12].fill(0x55);
        assert_eq!(parse(&buf[..n], 160), Ok(stamp()));
        // The smallest payload carries the stamp alone.
        let n = build(&mut buf, &stamp(), 0, 160, MIN_PAYLOAD).unwrap();
        assert_eq!(parse(&buf[..n], MIN_PAYLOAD), Ok(stamp()));
    }

    #[test]
    fn any_changed_payload_byte_is_corruption() {
        let mut buf = [0u8; 300];
        let n = build(&mut buf, &stamp(), 0, 160, 160).unwrap();
        for i in HEADER..n {
            let mut bad = buf;
            bad[i] ^= 0x01;
            // The filler is drawn from the stamp, so a flipped bit in the
            // time, stream or sequence is caught too.
            assert_eq!(parse(&bad[..n], 160), Err(Corrupt::Payload), "byte {i}");
        }
        assert_eq!(
            parse(&buf[..n - 1], 160),
            Err(Corrupt::Payload),
            "truncated"
        );
    }

    #[test]
    fn foreign_and_short_datagrams_are_rejected_without_panic() {
        assert_eq!(parse(&[], 160), Err(Corrupt::TooShort));
        assert_eq!(parse(&[0x80; 35], 160), Err(Corrupt::TooShort));
        assert_eq!(parse(&[0x40; 200], 188), Err(Corrupt::NotRtpV2));
        assert_eq!(parse(&[0x80; 200], 188), Err(Corrupt::Payload));
    }

    #[test]
    fn build_refuses_short_payloads_and_small_buffers() {
        let mut buf = [0u8; 100];
        assert_eq!(build(&mut buf, &stamp(), 0, 160, MIN_PAYLOAD - 1), None);
        assert_eq!(build(&mut buf, &stamp(), 0, 160, 100), None);
        assert_eq!(build(&mut buf, &stamp(), 0, 160, 88), Some(100));
    }
}
