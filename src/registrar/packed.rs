//! One AOR's record packed into a single byte block: the AOR and every
//! contact with its strings, no pointers. The directory stores one block per
//! AOR (one allocation instead of a map entry, a key, a contact string, an
//! instance string and a device entry each), replaces it whole on every
//! change and decodes it into an [`AorRecord`] for readers.
//!
//! Layout (little-endian): `len u32` (of the whole block), `aor_len u16`,
//! the AOR, `count u16`, then per contact:
//! `core u16, slot u32, gen u32, expires_at u32, cseq u32, call_id_hash u64,
//! flags u8, local u8, present u8`, then as `present` says: `q u16`,
//! `reg_id u32`, the source (IPv4: 4 + port 2; IPv6: 16 + port 2 + flowinfo
//! 4 + scope id 4), `contact_len u16` + contact, the instance (16 bytes when
//! it is a lowercase `urn:uuid:` in canonical form, else `u16` + bytes),
//! `u16` + scope, `u16` + Path.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;

use crate::registrar::binding::{BindingRef, ContactView};
use crate::registrar::directory::AorRecord;

const P_Q: u8 = 1;
const P_REG_ID: u8 = 2;
const P_V6: u8 = 4;
const P_UUID: u8 = 8;
const P_INSTANCE: u8 = 16;
const P_SCOPE: u8 = 32;
const P_PATH: u8 = 64;
/// The contact is `sip:` + the AOR's user + `@` + what is stored: most UAs
/// register a Contact with their own user part, so it is not kept twice.
const P_USER: u8 = 128;

const UUID_PREFIX: &str = "urn:uuid:";
/// Offsets of the dashes in the 36 characters of a UUID.
const DASHES: [usize; 4] = [8, 13, 18, 23];

/// Why a record cannot be packed: a field is longer than its length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

/// Packs `aor` and `rec` into a block (see the module doc).
pub fn encode(aor: &str, rec: &AorRecord) -> Result<Box<[u8]>, TooLong> {
    // Built in a reused buffer, then copied into an allocation of exactly its
    // size: shrinking a larger one would leave a small free fragment beside
    // every block in the heap (48 bytes per AOR at a million).
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|b| {
        b.clear();
        encode_into(b, aor, rec)?;
        Ok(Box::from(&b[..]))
    })
}

fn encode_into(b: &mut Vec<u8>, aor: &str, rec: &AorRecord) -> Result<(), TooLong> {
    let count = u16::try_from(rec.contacts.len()).map_err(|_| TooLong)?;
    b.extend_from_slice(&[0; 4]);
    put_str16(b, aor)?;
    b.extend_from_slice(&count.to_le_bytes());
    for c in &rec.contacts {
        b.extend_from_slice(&c.binding.core.to_le_bytes());
        b.extend_from_slice(&c.binding.slot.to_le_bytes());
        b.extend_from_slice(&c.binding.gen.to_le_bytes());
        b.extend_from_slice(&c.expires_at.to_le_bytes());
        b.extend_from_slice(&c.cseq.to_le_bytes());
        b.extend_from_slice(&c.call_id_hash.to_le_bytes());
        b.push(c.flags);
        b.push(c.local);
        let uuid = c.instance.as_deref().and_then(uuid_bytes);
        let mut present = 0;
        for (on, bit) in [
            (c.q.is_some(), P_Q),
            (c.reg_id.is_some(), P_REG_ID),
            (c.source.is_ipv6(), P_V6),
            (uuid.is_some(), P_UUID),
            (c.instance.is_some() && uuid.is_none(), P_INSTANCE),
            (c.scope.is_some(), P_SCOPE),
            (c.path.is_some(), P_PATH),
            (contact_rest(aor, &c.contact).is_some(), P_USER),
        ] {
            if on {
                present |= bit;
            }
        }
        b.push(present);
        if let Some(q) = c.q {
            b.extend_from_slice(&q.to_le_bytes());
        }
        if let Some(r) = c.reg_id {
            b.extend_from_slice(&r.to_le_bytes());
        }
        match c.source {
            SocketAddr::V4(a) => {
                b.extend_from_slice(&a.ip().octets());
                b.extend_from_slice(&a.port().to_le_bytes());
            }
            SocketAddr::V6(a) => {
                b.extend_from_slice(&a.ip().octets());
                b.extend_from_slice(&a.port().to_le_bytes());
                b.extend_from_slice(&a.flowinfo().to_le_bytes());
                b.extend_from_slice(&a.scope_id().to_le_bytes());
            }
        }
        put_str16(b, contact_rest(aor, &c.contact).unwrap_or(&c.contact))?;
        match (uuid, c.instance.as_deref()) {
            (Some(u), _) => b.extend_from_slice(&u),
            (None, Some(i)) => put_str16(b, i)?,
            (None, None) => {}
        }
        if let Some(s) = &c.scope {
            put_str16(b, s)?;
        }
        if let Some(p) = &c.path {
            put_str16(b, p)?;
        }
    }
    let len = u32::try_from(b.len()).map_err(|_| TooLong)?;
    b[..4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// The contact after `sip:user@` when `user` is the AOR's.
fn contact_rest<'c>(aor: &str, contact: &'c str) -> Option<&'c str> {
    let user = &aor[..aor.find('@')?];
    contact
        .strip_prefix("sip:")?
        .strip_prefix(user)?
        .strip_prefix('@')
}

fn put_str16(b: &mut Vec<u8>, s: &str) -> Result<(), TooLong> {
    let n = u16::try_from(s.len()).map_err(|_| TooLong)?;
    b.extend_from_slice(&n.to_le_bytes());
    b.extend_from_slice(s.as_bytes());
    Ok(())
}

/// The 16 bytes of an instance that is `urn:uuid:` + a lowercase canonical
/// UUID, so that decoding gives back exactly the same string.
fn uuid_bytes(instance: &str) -> Option<[u8; 16]> {
    let hex = instance.strip_prefix(UUID_PREFIX)?.as_bytes();
    if hex.len() != 36 || DASHES.iter().any(|&i| hex[i] != b'-') {
        return None;
    }
    let mut out = [0u8; 16];
    let mut digits = hex.iter().filter(|&&c| c != b'-');
    for byte in &mut out {
        let hi = lower_hex(*digits.next()?)?;
        let lo = lower_hex(*digits.next()?)?;
        *byte = hi << 4 | lo;
    }
    Some(out)
}

fn lower_hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn uuid_string(u: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(45);
    s.push_str(UUID_PREFIX);
    for (i, byte) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(HEX[usize::from(byte >> 4)] as char);
        s.push(HEX[usize::from(byte & 15)] as char);
    }
    s
}

/// Reads a block field by field. Blocks are only ever made by [`encode`], so
/// a short read is a bug: it panics rather than inventing data.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        s
    }
    fn arr<const N: usize>(&mut self) -> [u8; N] {
        self.take(N).try_into().expect("length checked by take")
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.arr())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.arr())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.arr())
    }
    fn str16(&mut self) -> &'a str {
        let n = usize::from(self.u16());
        std::str::from_utf8(self.take(n)).expect("encoded from a str")
    }
}

/// The AOR a block belongs to.
pub fn aor(block: &[u8]) -> &str {
    Reader { b: block, at: 4 }.str16()
}

/// The whole block's length, from its first four bytes.
pub fn block_len(head: [u8; 4]) -> usize {
    u32::from_le_bytes(head) as usize
}

/// A contact as stored, strings borrowed from the block.
pub struct Packed<'a> {
    pub binding: BindingRef,
    pub expires_at: u32,
    pub cseq: u32,
    pub call_id_hash: u64,
    pub flags: u8,
    pub local: u8,
    pub q: Option<u16>,
    pub reg_id: Option<u32>,
    pub source: SocketAddr,
    /// The contact URI, or what follows `sip:user@` when `user` is set.
    contact: &'a str,
    user: Option<&'a str>,
    /// The instance: borrowed when stored as text, 16 bytes for a UUID.
    instance: Option<Instance<'a>>,
    pub scope: Option<&'a str>,
    pub path: Option<&'a str>,
}

#[derive(Clone, Copy)]
enum Instance<'a> {
    Text(&'a str),
    Uuid(&'a [u8]),
}

impl Packed<'_> {
    /// True when the contact's instance is `instance`.
    pub fn instance_is(&self, instance: &str) -> bool {
        match self.instance {
            Some(Instance::Text(t)) => t == instance,
            Some(Instance::Uuid(u)) => uuid_bytes(instance).is_some_and(|x| x == u),
            None => false,
        }
    }

    pub fn instance(&self) -> Option<String> {
        match self.instance? {
            Instance::Text(t) => Some(t.to_owned()),
            Instance::Uuid(u) => Some(uuid_string(u)),
        }
    }

    /// The contact URI as registered.
    pub fn contact(&self) -> String {
        match self.user {
            Some(u) => ["sip:", u, "@", self.contact].concat(),
            None => self.contact.to_owned(),
        }
    }

    pub fn to_view(&self) -> ContactView {
        ContactView {
            binding: self.binding,
            contact: self.contact().into(),
            expires_at: self.expires_at,
            q: self.q,
            instance: self.instance().map(Arc::from),
            reg_id: self.reg_id,
            scope: self.scope.map(Into::into),
            source: self.source,
            local: self.local,
            flags: self.flags,
            path: self.path.map(Into::into),
            call_id_hash: self.call_id_hash,
            cseq: self.cseq,
        }
    }
}

/// The contacts of a block, in order, without copying their strings.
pub fn contacts(block: &[u8]) -> impl Iterator<Item = Packed<'_>> {
    let mut r = Reader { b: block, at: 4 };
    let aor = r.str16();
    let user = aor.find('@').map(|i| &aor[..i]);
    let count = r.u16();
    (0..count).map(move |_| read_contact(&mut r, user))
}

fn read_contact<'a>(r: &mut Reader<'a>, aor_user: Option<&'a str>) -> Packed<'a> {
    let binding = BindingRef {
        core: r.u16(),
        slot: r.u32(),
        gen: r.u32(),
    };
    let expires_at = r.u32();
    let cseq = r.u32();
    let call_id_hash = r.u64();
    let flags = r.u8();
    let local = r.u8();
    let present = r.u8();
    let q = (present & P_Q != 0).then(|| r.u16());
    let reg_id = (present & P_REG_ID != 0).then(|| r.u32());
    let source = if present & P_V6 != 0 {
        let ip = Ipv6Addr::from(r.arr::<16>());
        let port = r.u16();
        let flow = r.u32();
        let scope = r.u32();
        SocketAddr::V6(SocketAddrV6::new(ip, port, flow, scope))
    } else {
        let ip = Ipv4Addr::from(r.arr::<4>());
        SocketAddr::V4(SocketAddrV4::new(ip, r.u16()))
    };
    let contact = r.str16();
    let instance = if present & P_UUID != 0 {
        Some(Instance::Uuid(r.take(16)))
    } else if present & P_INSTANCE != 0 {
        Some(Instance::Text(r.str16()))
    } else {
        None
    };
    let scope = (present & P_SCOPE != 0).then(|| r.str16());
    let path = (present & P_PATH != 0).then(|| r.str16());
    Packed {
        binding,
        expires_at,
        cseq,
        call_id_hash,
        flags,
        local,
        q,
        reg_id,
        source,
        contact,
        user: aor_user.filter(|_| present & P_USER != 0),
        instance,
        scope,
        path,
    }
}

/// Whether `block` is one [`encode`] could have made (its length field, every
/// length prefix inside it, and its strings), so that the panicking readers
/// above are safe on it: for blocks read back from disk, which only a
/// checksum vouches for.
pub fn is_valid(block: &[u8]) -> bool {
    struct C<'a>(&'a [u8]);
    impl C<'_> {
        fn skip(&mut self, n: usize) -> Option<()> {
            self.0 = self.0.get(n..)?;
            Some(())
        }
        fn u8(&mut self) -> Option<u8> {
            let b = *self.0.first()?;
            self.skip(1).map(|_| b)
        }
        fn str16(&mut self) -> Option<()> {
            let n = usize::from(u16::from_le_bytes(self.0.get(..2)?.try_into().ok()?));
            std::str::from_utf8(self.0.get(2..2 + n)?).ok()?;
            self.skip(2 + n)
        }
    }
    fn walk(block: &[u8]) -> Option<()> {
        let len = block_len(block.get(..4)?.try_into().ok()?);
        if len != block.len() {
            return None;
        }
        let mut c = C(&block[4..]);
        c.str16()?;
        let count = u16::from_le_bytes(c.0.get(..2)?.try_into().ok()?);
        c.skip(2)?;
        for _ in 0..count {
            // binding 10, expires 4, cseq 4, call-id hash 8, flags, local
            c.skip(10 + 4 + 4 + 8 + 2)?;
            let present = c.u8()?;
            c.skip(if present & P_Q != 0 { 2 } else { 0 })?;
            c.skip(if present & P_REG_ID != 0 { 4 } else { 0 })?;
            c.skip(if present & P_V6 != 0 { 26 } else { 6 })?;
            c.str16()?;
            if present & P_UUID != 0 {
                c.skip(16)?;
            } else if present & P_INSTANCE != 0 {
                c.str16()?;
            }
            if present & P_SCOPE != 0 {
                c.str16()?;
            }
            if present & P_PATH != 0 {
                c.str16()?;
            }
        }
        c.0.is_empty().then_some(())
    }
    walk(block).is_some()
}

/// Rewrites each contact's binding and expiry in place, as `f` says for
/// the contact (by its index): how a restore moves a block onto the cores
/// and clock of a new run without decoding its strings.
pub fn rebind(block: &mut [u8], mut f: impl FnMut(usize, &Packed<'_>) -> (BindingRef, u32)) {
    let mut r = Reader { b: &*block, at: 4 };
    let aor = r.str16();
    let user = aor.find('@').map(|i| &aor[..i]);
    let count = r.u16();
    let mut edits: smallvec::SmallVec<[(usize, BindingRef, u32); 2]> = smallvec::SmallVec::new();
    for i in 0..usize::from(count) {
        let at = r.at;
        let c = read_contact(&mut r, user);
        let (b, expires_at) = f(i, &c);
        edits.push((at, b, expires_at));
    }
    for (at, b, expires_at) in edits {
        block[at..at + 2].copy_from_slice(&b.core.to_le_bytes());
        block[at + 2..at + 6].copy_from_slice(&b.slot.to_le_bytes());
        block[at + 6..at + 10].copy_from_slice(&b.gen.to_le_bytes());
        block[at + 10..at + 14].copy_from_slice(&expires_at.to_le_bytes());
    }
}

/// The record a block holds.
pub fn decode(block: &[u8]) -> AorRecord {
    AorRecord {
        contacts: contacts(block).map(|p| p.to_view()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(i: u32) -> ContactView {
        ContactView {
            binding: BindingRef {
                core: 3,
                slot: i,
                gen: 7,
            },
            contact: format!("sip:u{i}@10.0.0.1:5060;transport=udp").into(),
            expires_at: 3600 + i,
            q: Some(500),
            instance: Some("urn:uuid:00000000-0000-1000-8000-0123456789ab".into()),
            reg_id: Some(1),
            scope: None,
            source: "198.51.100.7:40000".parse().unwrap(),
            local: 1,
            flags: 5,
            path: None,
            call_id_hash: 0xdead_beef_0000_0001,
            cseq: 42,
        }
    }

    #[test]
    fn round_trips_every_field_and_form() {
        let mut rec = AorRecord::default();
        rec.contacts.push(view(1));
        let mut v6 = view(2);
        v6.source = "[2001:db8::1%3]:5062".parse().unwrap();
        v6.instance = Some("urn:uuid:00000000-0000-1000-8000-0123456789AB".into());
        v6.scope = Some("mobile".into());
        v6.path = Some("<sip:edge.example.com;lr>".into());
        v6.q = None;
        v6.reg_id = None;
        rec.contacts.push(v6);
        let mut plain = view(3);
        plain.instance = Some("<weird>".into());
        rec.contacts.push(plain);
        let mut none = view(4);
        none.instance = None;
        rec.contacts.push(none);
        let mut other_user = view(5);
        other_user.contact = "sip:alicex@10.0.0.9".into();
        rec.contacts.push(other_user);
        let mut sips = view(6);
        sips.contact = "sips:alice@10.0.0.9".into();
        rec.contacts.push(sips);
        let mut bare = view(7);
        bare.contact = "sip:alice@".into();
        rec.contacts.push(bare);
        rec.contacts[0].contact = "sip:alice@10.0.0.1:5060;transport=udp".into();
        let b = encode("alice@example.com", &rec).unwrap();
        assert_eq!(block_len(b[..4].try_into().unwrap()), b.len());
        assert_eq!(aor(&b), "alice@example.com");
        assert_eq!(decode(&b), rec);
        let first = contacts(&b).next().unwrap();
        assert!(first.instance_is("urn:uuid:00000000-0000-1000-8000-0123456789ab"));
        assert!(!first.instance_is("urn:uuid:00000000-0000-1000-8000-0123456789AB"));
    }

    #[test]
    fn a_canonical_uuid_instance_costs_sixteen_bytes() {
        let mut rec = AorRecord::default();
        rec.contacts.push(view(1));
        let packed = encode("u@x", &rec).unwrap().len();
        rec.contacts[0].instance = Some("urn:uuid:00000000-0000-1000-8000-0123456789AB".into());
        let text = encode("u@x", &rec).unwrap().len();
        assert_eq!(text - packed, 2 + 45 - 16);
    }

    #[test]
    fn the_aor_user_is_not_stored_twice() {
        let mut rec = AorRecord::default();
        let mut v = view(1);
        v.contact = "sip:bob@10.0.0.1".into();
        rec.contacts.push(v);
        let short = encode("bob@x", &rec).unwrap();
        let long = encode("bobby@x", &rec).unwrap();
        assert_eq!(long.len() - short.len(), 2 + "sip:bob@".len());
        assert_eq!(decode(&short), rec);
        assert_eq!(decode(&long), rec);
    }

    #[test]
    fn only_whole_blocks_are_valid() {
        let mut rec = AorRecord::default();
        rec.contacts.push(view(1));
        let mut v6 = view(2);
        v6.source = "[2001:db8::1]:5062".parse().unwrap();
        v6.path = Some("<sip:p;lr>".into());
        v6.scope = Some("s".into());
        rec.contacts.push(v6);
        let b = encode("alice@example.com", &rec).unwrap();
        assert!(is_valid(&b));
        assert!(is_valid(&encode("gone@x", &AorRecord::default()).unwrap()));
        for cut in 0..b.len() {
            assert!(!is_valid(&b[..cut]), "cut at {cut}");
        }
        let mut longer = b.to_vec();
        longer.push(0);
        assert!(!is_valid(&longer));
    }

    #[test]
    fn rebind_rewrites_bindings_and_expiries_only() {
        let mut rec = AorRecord::default();
        rec.contacts.push(view(1));
        rec.contacts.push(view(2));
        let mut b = encode("alice@example.com", &rec).unwrap().to_vec();
        rebind(&mut b, |i, _| {
            (
                BindingRef {
                    core: 9,
                    slot: i as u32,
                    gen: 1,
                },
                100 + i as u32,
            )
        });
        let got = decode(&b);
        for (i, c) in got.contacts.iter().enumerate() {
            let mut want = rec.contacts[i].clone();
            want.binding = BindingRef {
                core: 9,
                slot: i as u32,
                gen: 1,
            };
            want.expires_at = 100 + i as u32;
            assert_eq!(*c, want);
        }
    }

    #[test]
    fn oversize_fields_are_refused_not_truncated() {
        let mut rec = AorRecord::default();
        let mut v = view(1);
        v.path = Some("x".repeat(70_000).into());
        rec.contacts.push(v);
        assert_eq!(encode("u@x", &rec), Err(TooLong));
    }
}
