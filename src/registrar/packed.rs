//! One AOR's record packed into a single byte block: the AOR and every
//! contact with its strings, no pointers. The directory stores one block per
//! AOR (one allocation instead of a map entry, a key, a contact string, an
//! instance string and a device entry each), replaces it whole on every
//! change and decodes it into an [`AorRecord`] for readers.
//!
//! Layout: integers are LEB128 varints (7 bits a byte, low first) unless a
//! width is given, fixed widths little-endian. `len` (of the whole block,
//! its own bytes included), `aor_len`, the AOR, `count`, then per contact:
//! `core, slot, gen, expires_at, cseq`, `call_id_hash u64`, `flags u8`,
//! `present`, then as `present` says: `local`, `q`, `reg_id`, the source
//! (IPv4: 4 + port u16; IPv6: 16 + port u16 + flowinfo u32 + scope id u32),
//! `contact_len` + contact, the instance (16 bytes when it is a lowercase
//! `urn:uuid:` in canonical form, else `len` + bytes), `len` + scope,
//! `len` + Path.
//!
//! Varints because the block is most of the directory's memory and its
//! numbers are small: for a typical UA (`benches/common/memory.rs`) the
//! fixed-width layout took 112–117 bytes, a 128-byte chunk from glibc, and
//! this one 92–97, a 112-byte chunk. Strings keep the 64 KiB bound of the
//! fixed layout's `u16` prefixes (see [`TooLong`]).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;

use crate::registrar::binding::{BindingRef, ContactView};
use crate::registrar::directory::AorRecord;

// The commonest bits are the low ones, so that `present` is one byte for a
// typical UA (user, reg-id, UUID instance, maybe a second listen address).
/// The contact is `sip:` + the AOR's user + `@` + what is stored: most UAs
/// register a Contact with their own user part, so it is not kept twice.
const P_USER: u32 = 1;
const P_REG_ID: u32 = 2;
const P_UUID: u32 = 4;
/// `local` is not 0.
const P_LOCAL: u32 = 8;
const P_Q: u32 = 16;
const P_V6: u32 = 32;
const P_INSTANCE: u32 = 64;
const P_SCOPE: u32 = 128;
const P_PATH: u32 = 256;
const P_ALL: u32 = 511;

const UUID_PREFIX: &str = "urn:uuid:";
/// Offsets of the dashes in the 36 characters of a UUID.
const DASHES: [usize; 4] = [8, 13, 18, 23];

/// Why a record cannot be packed: a string field is over 64 KiB, or there
/// are more than 65,535 contacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

thread_local! {
    /// The block being built, reused: the block itself is then copied into
    /// an allocation of exactly its size, as shrinking a larger one would
    /// leave a small free fragment beside every block in the heap (48 bytes
    /// per AOR at a million).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Packs `aor` and `rec` into a block (see the module doc).
pub fn encode(aor: &str, rec: &AorRecord) -> Result<Box<[u8]>, TooLong> {
    SCRATCH.with_borrow_mut(|b| {
        b.clear();
        encode_body(b, aor, rec)?;
        // The length prefix is a u32 (5 varint bytes at most).
        if b.len() > u32::MAX as usize - 5 {
            return Err(TooLong);
        }
        Ok(with_len(b))
    })
}

/// `body` behind its `len` prefix, in a box of exactly the block's size.
fn with_len(body: &[u8]) -> Box<[u8]> {
    // The prefix counts its own bytes: one more when that crosses a power
    // of 128.
    let mut total = body.len() + 1;
    while var_len(total as u64) + body.len() > total {
        total += 1;
    }
    let mut out = Vec::with_capacity(total);
    put_var(&mut out, total as u32);
    out.extend_from_slice(body);
    debug_assert_eq!(out.len(), total);
    out.into_boxed_slice()
}

fn encode_body(b: &mut Vec<u8>, aor: &str, rec: &AorRecord) -> Result<(), TooLong> {
    let count = u16::try_from(rec.contacts.len()).map_err(|_| TooLong)?;
    put_str(b, aor)?;
    put_var(b, count.into());
    for c in &rec.contacts {
        put_binding(b, c.binding, c.expires_at);
        put_var(b, c.cseq);
        b.extend_from_slice(&c.call_id_hash.to_le_bytes());
        b.push(c.flags);
        let uuid = c.instance.as_deref().and_then(uuid_bytes);
        let rest = contact_rest(aor, &c.contact);
        let mut present = 0;
        for (on, bit) in [
            (rest.is_some(), P_USER),
            (c.reg_id.is_some(), P_REG_ID),
            (uuid.is_some(), P_UUID),
            (c.local != 0, P_LOCAL),
            (c.q.is_some(), P_Q),
            (c.source.is_ipv6(), P_V6),
            (c.instance.is_some() && uuid.is_none(), P_INSTANCE),
            (c.scope.is_some(), P_SCOPE),
            (c.path.is_some(), P_PATH),
        ] {
            if on {
                present |= bit;
            }
        }
        put_var(b, present);
        if c.local != 0 {
            put_var(b, c.local.into());
        }
        if let Some(q) = c.q {
            put_var(b, q.into());
        }
        if let Some(r) = c.reg_id {
            put_var(b, r);
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
        put_str(b, rest.unwrap_or(&c.contact))?;
        match (uuid, c.instance.as_deref()) {
            (Some(u), _) => b.extend_from_slice(&u),
            (None, Some(i)) => put_str(b, i)?,
            (None, None) => {}
        }
        if let Some(s) = &c.scope {
            put_str(b, s)?;
        }
        if let Some(p) = &c.path {
            put_str(b, p)?;
        }
    }
    Ok(())
}

/// The fields [`rebind`] rewrites, at the head of a contact.
fn put_binding(b: &mut Vec<u8>, binding: BindingRef, expires_at: u32) {
    put_var(b, binding.core.into());
    put_var(b, binding.slot);
    put_var(b, binding.gen);
    put_var(b, expires_at);
}

/// The contact after `sip:user@` when `user` is the AOR's.
fn contact_rest<'c>(aor: &str, contact: &'c str) -> Option<&'c str> {
    let user = &aor[..aor.find('@')?];
    contact
        .strip_prefix("sip:")?
        .strip_prefix(user)?
        .strip_prefix('@')
}

fn put_str(b: &mut Vec<u8>, s: &str) -> Result<(), TooLong> {
    let n = u16::try_from(s.len()).map_err(|_| TooLong)?;
    put_var(b, n.into());
    b.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_var(b: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        b.push(v as u8 | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

fn var_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// The varint at the start of `b` and its length in bytes: `None` when it
/// is cut short or does not fit a `u32`.
fn get_var(b: &[u8]) -> Option<(u32, usize)> {
    let mut v = 0u32;
    for (i, &byte) in b.iter().take(5).enumerate() {
        let bits = u32::from(byte & 0x7f);
        if i == 4 && bits > 0xf {
            return None;
        }
        v |= bits << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
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

/// Reads a block field by field. Blocks are only ever made by [`encode`] (or
/// checked by [`is_valid`]), so a short read is a bug: it panics rather than
/// inventing data.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the block's AOR, past its `len`.
    fn new(block: &'a [u8]) -> Reader<'a> {
        let mut r = Reader { b: block, at: 0 };
        r.var();
        r
    }
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
    fn var(&mut self) -> u32 {
        let (v, n) = get_var(&self.b[self.at..]).expect("a whole varint");
        self.at += n;
        v
    }
    fn var16(&mut self) -> u16 {
        u16::try_from(self.var()).expect("encoded from a u16")
    }
    fn str(&mut self) -> &'a str {
        let n = self.var() as usize;
        std::str::from_utf8(self.take(n)).expect("encoded from a str")
    }
}

/// The AOR a block belongs to.
pub fn aor(block: &[u8]) -> &str {
    Reader::new(block).str()
}

/// The whole block's length, from the varint it starts with; `byte(i)` is
/// the block's byte `i`, asked for only the bytes of that varint (at most
/// five), so that the directory can read it through a bare pointer.
pub fn block_len(byte: impl Fn(usize) -> u8) -> usize {
    let mut len = 0;
    for i in 0..5 {
        let b = byte(i);
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            break;
        }
    }
    len
}

/// The length `block`'s prefix gives, if it has a whole one.
pub fn stated_len(block: &[u8]) -> Option<usize> {
    get_var(block).map(|(v, _)| v as usize)
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
    let mut r = Reader::new(block);
    let aor = r.str();
    let user = aor.find('@').map(|i| &aor[..i]);
    let count = r.var16();
    (0..count).map(move |_| read_contact(&mut r, user))
}

fn read_contact<'a>(r: &mut Reader<'a>, aor_user: Option<&'a str>) -> Packed<'a> {
    let binding = BindingRef {
        core: r.var16(),
        slot: r.var(),
        gen: r.var(),
    };
    let expires_at = r.var();
    let cseq = r.var();
    let call_id_hash = r.u64();
    let flags = r.u8();
    let present = r.var();
    let local = if present & P_LOCAL != 0 {
        u8::try_from(r.var()).expect("encoded from a u8")
    } else {
        0
    };
    let q = (present & P_Q != 0).then(|| r.var16());
    let reg_id = (present & P_REG_ID != 0).then(|| r.var());
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
    let contact = r.str();
    let instance = if present & P_UUID != 0 {
        Some(Instance::Uuid(r.take(16)))
    } else if present & P_INSTANCE != 0 {
        Some(Instance::Text(r.str()))
    } else {
        None
    };
    let scope = (present & P_SCOPE != 0).then(|| r.str());
    let path = (present & P_PATH != 0).then(|| r.str());
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

/// Whether `block` is one [`encode`] could have made (its length, every
/// varint and length inside it, and its strings), so that the panicking
/// readers above are safe on it: for blocks read back from disk, which only
/// a checksum vouches for.
pub fn is_valid(block: &[u8]) -> bool {
    struct C<'a>(&'a [u8]);
    impl C<'_> {
        fn skip(&mut self, n: usize) -> Option<()> {
            self.0 = self.0.get(n..)?;
            Some(())
        }
        fn var(&mut self) -> Option<u32> {
            let (v, n) = get_var(self.0)?;
            self.skip(n).map(|_| v)
        }
        fn var_below(&mut self, max: u32) -> Option<()> {
            (self.var()? <= max).then_some(())
        }
        fn str(&mut self) -> Option<()> {
            let n = self.var()? as usize;
            std::str::from_utf8(self.0.get(..n)?).ok()?;
            self.skip(n)
        }
    }
    fn walk(block: &[u8]) -> Option<()> {
        let mut c = C(block);
        if c.var()? as usize != block.len() {
            return None;
        }
        c.str()?;
        let count = c.var()?;
        if count > u32::from(u16::MAX) {
            return None;
        }
        for _ in 0..count {
            // core, slot, gen, expires_at, cseq
            c.var_below(u16::MAX.into())?;
            for _ in 0..4 {
                c.var()?;
            }
            // call-id hash, flags
            c.skip(8 + 1)?;
            let present = c.var()?;
            if present & !P_ALL != 0 {
                return None;
            }
            if present & P_LOCAL != 0 {
                c.var_below(u8::MAX.into())?;
            }
            if present & P_Q != 0 {
                c.var_below(u16::MAX.into())?;
            }
            if present & P_REG_ID != 0 {
                c.var()?;
            }
            c.skip(if present & P_V6 != 0 { 26 } else { 6 })?;
            c.str()?;
            if present & P_UUID != 0 {
                c.skip(16)?;
            } else if present & P_INSTANCE != 0 {
                c.str()?;
            }
            if present & P_SCOPE != 0 {
                c.str()?;
            }
            if present & P_PATH != 0 {
                c.str()?;
            }
        }
        c.0.is_empty().then_some(())
    }
    walk(block).is_some()
}

/// A copy of `block` with each contact's binding and expiry as `f` says for
/// the contact (by its index), the rest copied as it is: how a restore
/// moves a block onto the cores and clock of a new run without decoding
/// its strings.
pub fn rebind(
    block: &[u8],
    mut f: impl FnMut(usize, &Packed<'_>) -> (BindingRef, u32),
) -> Box<[u8]> {
    let mut body = Vec::with_capacity(block.len() + 16);
    let mut r = Reader::new(block);
    let aor = r.str();
    let user = aor.find('@').map(|i| &aor[..i]);
    let count = r.var16();
    body.extend_from_slice(&block[Reader::new(block).at..r.at]);
    for i in 0..usize::from(count) {
        let start = r.at;
        let c = read_contact(&mut r, user);
        let (b, expires_at) = f(i, &c);
        put_binding(&mut body, b, expires_at);
        // Past the old binding and expiry: four varints.
        let mut old = Reader {
            b: block,
            at: start,
        };
        for _ in 0..4 {
            old.var();
        }
        body.extend_from_slice(&block[old.at..r.at]);
    }
    with_len(&body)
}

/// The record a block holds.
pub fn decode(block: &[u8]) -> AorRecord {
    AorRecord {
        contacts: contacts(block).map(|p| p.to_view()).collect(),
    }
}

#[cfg(test)]
#[path = "packed_tests.rs"]
mod tests;
