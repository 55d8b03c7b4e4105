//! Branch, tag and Call-ID generation without allocation. The generator is
//! seeded by the caller (the runtime seeds from the OS), so tests can fix it.

/// A short identifier stored inline.
#[derive(Clone, Copy)]
pub struct Id {
    bytes: [u8; 32],
    len: u8,
}

impl Id {
    pub fn as_str(&self) -> &str {
        // Only ASCII is ever written into `bytes`.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl Id {
    /// `prefix` followed by `value` as 16 hex digits (prefix at most 16 bytes).
    pub fn from_parts(prefix: &str, value: u64) -> Id {
        let mut id = Id {
            bytes: [0; 32],
            len: 0,
        };
        let p = &prefix.as_bytes()[..prefix.len().min(16)];
        id.bytes[..p.len()].copy_from_slice(p);
        for i in 0..16 {
            let nib = ((value >> (60 - 4 * i)) & 0xf) as usize;
            id.bytes[p.len() + i] = b"0123456789abcdef"[nib];
        }
        id.len = (p.len() + 16) as u8;
        id
    }
}

impl std::fmt::Debug for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::ops::Deref for Id {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// The RFC 3261 §8.1.1.7 magic cookie every branch we create starts with.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// Unique-enough identifiers for branches, tags and Call-IDs: a 64-bit
/// counter mixed through SplitMix64, so no two calls on one generator repeat.
#[derive(Debug, Clone)]
pub struct IdGen {
    state: u64,
}

impl IdGen {
    pub fn new(seed: u64) -> IdGen {
        IdGen { state: seed }
    }

    /// The next 64 random-looking bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn hex(&mut self, prefix: &str) -> Id {
        let mut id = Id {
            bytes: [0; 32],
            len: 0,
        };
        let p = prefix.as_bytes();
        id.bytes[..p.len()].copy_from_slice(p);
        let v = self.next_u64();
        for i in 0..16 {
            let nib = ((v >> (60 - 4 * i)) & 0xf) as usize;
            id.bytes[p.len() + i] = b"0123456789abcdef"[nib];
        }
        id.len = (p.len() + 16) as u8;
        id
    }

    /// A fresh Via branch (`z9hG4bK` + 16 hex digits).
    pub fn branch(&mut self) -> Id {
        self.hex(BRANCH_COOKIE)
    }

    /// A fresh From/To tag.
    pub fn tag(&mut self) -> Id {
        self.hex("")
    }

    /// A fresh Call-ID local part (callers may append `@host`).
    pub fn call_id(&mut self) -> Id {
        self.hex("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_well_formed() {
        let mut g = IdGen::new(1);
        let a = g.branch();
        let b = g.branch();
        assert!(a.starts_with(BRANCH_COOKIE));
        assert_eq!(a.len(), 23);
        assert_ne!(a.as_str(), b.as_str());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            assert!(seen.insert(g.tag().as_str().to_owned()));
        }
    }
}
