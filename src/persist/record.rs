//! The record format shared by journals and snapshots, sans-IO: records in,
//! bytes out, and bytes in, records out with where and why reading stopped.
//!
//! A file is an 8-byte magic, then records. A record is
//! `len u32 | crc u32 | kind u8 | payload` (little-endian), `len` counting
//! the kind and payload, `crc` the CRC-32 of the same bytes. A reader stops
//! at the first record that is cut short or fails its checksum: what follows
//! a torn write cannot be trusted, and what precedes it is kept.
//!
//! Records are states, not deltas: an [`Kind::Aor`] record is an AOR's whole
//! packed block ([`crate::registrar::packed`]) after a change, so adding,
//! refreshing, removing or expiring a binding, a path dying or answering
//! again (the binding's UNREACHABLE flag) and a contact-me opt-in (its
//! SUBSCRIBED flag) are all one kind of record, and replaying one twice or
//! out of a snapshot's walk changes nothing. An AOR with no contacts left
//! is a block with a count of 0.

// Version 2: the packed block's integers became varints (issue 15). Files
// of version 1 read as having no valid header, so a run started on them
// begins empty rather than misreading their blocks.
/// Magic of a journal file.
pub const JOURNAL_MAGIC: &[u8; 8] = b"TTHRJNL2";
/// Magic of a snapshot file.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"TTHRSNP2";

/// Bytes before a record's kind: `len` and `crc`.
const HEAD: usize = 8;
/// No record is larger: a packed block has u16 lengths for each field, so
/// this bounds what a garbled `len` can make a reader allocate or skip.
pub const MAX_RECORD: usize = 16 << 20;

/// What a record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// The writing run's clock zero, Unix ms (`u64`): the expiries in the
    /// AOR records after it are seconds since then.
    Epoch = 1,
    /// An AOR's packed block as stored after a change.
    Aor = 2,
    /// The end of a snapshot: the number of AOR records in it (`u64`). A
    /// snapshot without it is incomplete.
    End = 3,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Epoch),
            2 => Some(Kind::Aor),
            3 => Some(Kind::End),
            _ => None,
        }
    }
}

/// Appends one record to `out`.
pub fn put(out: &mut Vec<u8>, kind: Kind, payload: &[u8]) {
    let len = u32::try_from(payload.len() + 1).unwrap_or(u32::MAX);
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind as u8]);
    h.update(payload);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(payload);
}

/// Appends an [`Kind::Epoch`] record.
pub fn put_epoch(out: &mut Vec<u8>, unix_ms: u64) {
    put(out, Kind::Epoch, &unix_ms.to_le_bytes());
}

/// Why a reader stopped before the end of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The file does not start with the expected magic.
    BadMagic,
    /// The file is of an earlier format version (its magic but for the
    /// last digit): written by an older tether, and not read.
    OldFormat { version: u8 },
    /// A record is cut short at `offset` (a write torn by a crash).
    Torn { offset: usize },
    /// The record at `offset` fails its checksum, has an impossible length
    /// or an unknown kind.
    Corrupt { offset: usize },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::BadMagic => write!(f, "no valid header"),
            Damage::OldFormat { version } => write!(
                f,
                "format version {version}, written by an older tether: not read (its \
                 devices are back as they re-register)"
            ),
            Damage::Torn { offset } => write!(f, "record cut short at byte {offset}"),
            Damage::Corrupt { offset } => write!(f, "bad record at byte {offset}"),
        }
    }
}

/// Reads the records of a file's bytes in order.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    damage: Option<Damage>,
}

impl<'a> Reader<'a> {
    /// A reader over a whole file that must start with `magic`.
    pub fn new(bytes: &'a [u8], magic: &[u8; 8]) -> Reader<'a> {
        let damage = match bytes.get(..8) {
            Some(m) if m == &magic[..] => None,
            // The same kind of file, an earlier version: said as such, so
            // an upgrade's log does not read like a crash's.
            Some(m) if m[..7] == magic[..7] && (b'1'..magic[7]).contains(&m[7]) => {
                Some(Damage::OldFormat {
                    version: m[7] - b'0',
                })
            }
            _ => Some(Damage::BadMagic),
        };
        Reader {
            bytes,
            pos: 8,
            damage,
        }
    }

    /// Why reading stopped early, once [`Reader::next`] returned `None`.
    pub fn damage(&self) -> Option<Damage> {
        self.damage
    }

    /// Bytes of good records read so far (with the magic): where a writer
    /// appending to a damaged journal would cut it.
    pub fn good_len(&self) -> usize {
        self.pos
    }

    fn stop(&mut self, d: Damage) -> Option<(Kind, &'a [u8])> {
        self.damage = Some(d);
        None
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = (Kind, &'a [u8]);

    fn next(&mut self) -> Option<(Kind, &'a [u8])> {
        if self.damage.is_some() || self.pos >= self.bytes.len() {
            return None;
        }
        let offset = self.pos;
        let rest = &self.bytes[offset..];
        let Some(head) = rest.get(..HEAD) else {
            return self.stop(Damage::Torn { offset });
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if len == 0 || len > MAX_RECORD {
            return self.stop(Damage::Corrupt { offset });
        }
        let Some(body) = rest.get(HEAD..HEAD + len) else {
            return self.stop(Damage::Torn { offset });
        };
        if crc32fast::hash(body) != crc {
            return self.stop(Damage::Corrupt { offset });
        }
        let Some(kind) = Kind::from_u8(body[0]) else {
            return self.stop(Damage::Corrupt { offset });
        };
        self.pos = offset + HEAD + len;
        Some((kind, &body[1..]))
    }
}

/// A `u64` payload ([`Kind::Epoch`], [`Kind::End`]); `None` if it is not 8 bytes.
pub fn u64_payload(p: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(p.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: &[(Kind, &[u8])]) -> Vec<u8> {
        let mut out = JOURNAL_MAGIC.to_vec();
        for (k, p) in records {
            put(&mut out, *k, p);
        }
        out
    }

    #[test]
    fn records_come_back_in_order() {
        let f = file(&[(Kind::Epoch, &7u64.to_le_bytes()), (Kind::Aor, b"abc")]);
        let mut r = Reader::new(&f, JOURNAL_MAGIC);
        assert_eq!(r.next(), Some((Kind::Epoch, &7u64.to_le_bytes()[..])));
        assert_eq!(r.next(), Some((Kind::Aor, &b"abc"[..])));
        assert_eq!(r.next(), None);
        assert_eq!(r.damage(), None);
        assert_eq!(r.good_len(), f.len());
    }

    #[test]
    fn a_torn_tail_keeps_every_whole_record_before_it() {
        let f = file(&[(Kind::Aor, b"one"), (Kind::Aor, b"two")]);
        let first_end = 8 + HEAD + 4;
        for cut in first_end + 1..f.len() {
            let mut r = Reader::new(&f[..cut], JOURNAL_MAGIC);
            assert_eq!(r.next(), Some((Kind::Aor, &b"one"[..])), "cut at {cut}");
            assert_eq!(r.next(), None);
            assert_eq!(r.damage(), Some(Damage::Torn { offset: first_end }));
            assert_eq!(r.good_len(), first_end);
        }
    }

    #[test]
    fn any_flipped_bit_in_a_record_stops_the_reader_there() {
        let f = file(&[
            (Kind::Aor, b"one"),
            (Kind::Aor, b"two"),
            (Kind::Aor, b"six"),
        ]);
        let second = 8 + HEAD + 4;
        let third = second + HEAD + 4;
        for bit in second * 8..third * 8 {
            let mut g = f.clone();
            g[bit / 8] ^= 1 << (bit % 8);
            let got: Vec<_> = Reader::new(&g, JOURNAL_MAGIC).collect();
            assert_eq!(got, vec![(Kind::Aor, &b"one"[..])], "bit {bit}");
            let mut r = Reader::new(&g, JOURNAL_MAGIC);
            r.by_ref().count();
            // A flipped length bit may also read as a cut-short record.
            assert!(matches!(
                r.damage(),
                Some(Damage::Corrupt { offset } | Damage::Torn { offset }) if offset == second
            ));
        }
    }

    #[test]
    fn garbage_and_wrong_magic_read_as_nothing() {
        let mut r = Reader::new(SNAPSHOT_MAGIC, JOURNAL_MAGIC);
        assert_eq!(r.next(), None);
        assert_eq!(r.damage(), Some(Damage::BadMagic));
        // A journal of format 1 (before the varint blocks) is named as such.
        let mut r = Reader::new(b"TTHRJNL1", JOURNAL_MAGIC);
        assert_eq!(r.next(), None);
        assert_eq!(r.damage(), Some(Damage::OldFormat { version: 1 }));
        assert!(r.damage().unwrap().to_string().contains("older tether"));
        let mut g = JOURNAL_MAGIC.to_vec();
        g.extend_from_slice(&[0xff; 40]);
        let mut r = Reader::new(&g, JOURNAL_MAGIC);
        assert_eq!(r.next(), None);
        assert_eq!(r.damage(), Some(Damage::Corrupt { offset: 8 }));
        assert_eq!(Reader::new(&[], JOURNAL_MAGIC).next(), None);
    }
}
