//! Bindings: what the directory says about a contact (shared, immutable
//! snapshots) and what the owning core keeps to expire it (core-local slab).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

/// Names one binding: the core that owns it and its slot there. The
/// generation makes a reference to a freed and reused slot detectably stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BindingRef {
    pub core: u16,
    pub slot: u32,
    pub gen: u32,
}

/// Binding flags.
pub mod flags {
    /// The Contact's host:port differs from the address the REGISTER came from.
    pub const NATED: u8 = 1;
    /// The device accepts `application/application-server-contact-me`, by
    /// Accept or Allow-Events (seed 000).
    pub const CONTACT_ME: u8 = 2;
    /// The REGISTER listed `application/sdp` in Accept (it can take a wake-up INVITE).
    pub const SDP: u8 = 4;
    /// Its NAT path missed its keepalive prompts: requests to it will likely be lost.
    pub const UNREACHABLE: u8 = 8;
    /// The device subscribed to the contact-me package (SUBSCRIBE opt-in);
    /// kept across its registration refreshes, cleared when the
    /// subscription ends.
    pub const SUBSCRIBED: u8 = 16;
}

/// One contact of an AOR, as every core and the API see it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactView {
    pub binding: BindingRef,
    /// The Contact URI as registered, without angle brackets.
    pub contact: Box<str>,
    /// Expiry on the runtime clock, in seconds.
    pub expires_at: u32,
    /// `q` in thousandths, if given.
    pub q: Option<u16>,
    /// RFC 5626 `+sip.instance` (or the configured device-id parameter).
    pub instance: Option<Arc<str>>,
    pub reg_id: Option<u32>,
    /// Namespace scope (contact parameter `scope`), seed 002.
    pub scope: Option<Box<str>>,
    /// Where requests to this contact go: the address the REGISTER came
    /// from (the NAT's public side), not the Contact's host.
    pub source: SocketAddr,
    /// Index of the local listen address the REGISTER arrived on.
    pub local: u8,
    /// See [`flags`].
    pub flags: u8,
    /// RFC 3327 Path headers of the REGISTER, joined with ", ", routed through later.
    pub path: Option<Box<str>>,
    /// For the RFC 3261 §10.3 step 7 ordering rule.
    pub call_id_hash: u64,
    pub cseq: u32,
}

impl Default for ContactView {
    fn default() -> Self {
        ContactView {
            binding: BindingRef::default(),
            contact: "".into(),
            expires_at: 0,
            q: None,
            instance: None,
            reg_id: None,
            scope: None,
            source: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
            local: 0,
            flags: 0,
            path: None,
            call_id_hash: 0,
            cseq: 0,
        }
    }
}

impl ContactView {
    pub fn is_nated(&self) -> bool {
        self.flags & flags::NATED != 0
    }

    pub fn is_reachable(&self) -> bool {
        self.flags & flags::UNREACHABLE == 0
    }

    /// Opted in to contact-me, by its REGISTER's Accept or by SUBSCRIBE.
    pub fn accepts_contact_me(&self) -> bool {
        self.flags & (flags::CONTACT_ME | flags::SUBSCRIBED) != 0
    }
}

/// What the owning core keeps per binding, to expire it (as it goes into
/// and comes out of the slab; the slab keeps it packed, see [`Slot`]).
#[derive(Debug)]
pub(crate) struct LocalBinding {
    /// The AOR's [`Directory::hash`](crate::registrar::Directory::hash):
    /// the name is in the directory's block.
    pub aor: u64,
    pub expires_at: u32,
    /// The expiry time the timer queue holds for this slot.
    pub scheduled_at: u32,
    /// The NAT path the binding's REGISTER came over.
    pub path: crate::addr::PathKey,
}

/// A binding's fields the registrar changes in place.
#[derive(Debug)]
pub(crate) struct Held {
    pub aor: u64,
    pub expires_at: u32,
    pub scheduled_at: u32,
}

/// A slab entry in 32 bytes, not 48 (one per binding): the NAT path key
/// packed into 8 bytes, an IPv6 one kept in [`Slab::v6`].
#[derive(Debug)]
struct Slot {
    held: Held,
    /// [`PathKey::V4`](crate::addr::PathKey)'s value, or [`V6_PATH`].
    path: u64,
    gen: u32,
    filled: bool,
}

/// The path field of a binding whose path is IPv6 (a V4 key's top byte is 0).
const V6_PATH: u64 = u64::MAX;

/// Core-local bindings in a slab: u32 indices and generations, no pointers.
#[derive(Debug, Default)]
pub(crate) struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    /// The IPv6 path keys of the filled slots whose path is IPv6.
    v6: hashbrown::HashMap<u32, crate::addr::PathKey>,
}

impl Slab {
    pub fn reserve_slots(&mut self, n: usize) {
        self.slots.reserve(n.saturating_sub(self.slots.len()));
    }

    /// Reserves a slot; it holds nothing until [`Slab::fill`].
    pub fn reserve(&mut self) -> (u32, u32) {
        if let Some(i) = self.free.pop() {
            let s = &mut self.slots[i as usize];
            s.gen = s.gen.wrapping_add(1);
            return (i, s.gen);
        }
        self.slots.push(Slot {
            held: Held {
                aor: 0,
                expires_at: 0,
                scheduled_at: 0,
            },
            path: 0,
            gen: 1,
            filled: false,
        });
        ((self.slots.len() - 1) as u32, 1)
    }

    pub fn fill(&mut self, slot: u32, gen: u32, b: LocalBinding) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            if s.gen == gen {
                if !s.filled {
                    self.live += 1;
                }
                s.filled = true;
                s.held = Held {
                    aor: b.aor,
                    expires_at: b.expires_at,
                    scheduled_at: b.scheduled_at,
                };
                s.path = pack_path(&mut self.v6, slot, b.path);
            }
        }
    }

    pub fn get_mut(&mut self, slot: u32, gen: u32) -> Option<&mut Held> {
        self.slots
            .get_mut(slot as usize)
            .filter(|s| s.gen == gen && s.filled)
            .map(|s| &mut s.held)
    }

    /// Moves a filled slot's binding to `path`: the path it left, if it
    /// was another one.
    pub fn move_path(
        &mut self,
        slot: u32,
        gen: u32,
        path: crate::addr::PathKey,
    ) -> Option<crate::addr::PathKey> {
        let s = self
            .slots
            .get_mut(slot as usize)
            .filter(|s| s.gen == gen && s.filled)?;
        let old = unpack_path(&self.v6, slot, s.path);
        if old == path {
            return None;
        }
        s.path = pack_path(&mut self.v6, slot, path);
        Some(old)
    }

    /// Frees a slot (filled or only reserved) if the generation matches.
    pub fn release(&mut self, slot: u32, gen: u32) -> Option<LocalBinding> {
        let s = self.slots.get_mut(slot as usize)?;
        if s.gen != gen {
            return None;
        }
        // Bump the generation so no stale reference matches the reused slot.
        s.gen = s.gen.wrapping_add(1);
        self.free.push(slot);
        if !std::mem::take(&mut s.filled) {
            return None;
        }
        self.live -= 1;
        let path = unpack_path(&self.v6, slot, s.path);
        if s.path == V6_PATH {
            self.v6.remove(&slot);
        }
        Some(LocalBinding {
            aor: s.held.aor,
            expires_at: s.held.expires_at,
            scheduled_at: s.held.scheduled_at,
            path,
        })
    }

    pub fn live(&self) -> usize {
        self.live
    }

    /// Heap bytes held, by capacity.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.free.capacity() * 4
            + self.v6.capacity() * 29
    }
}

/// A path key in a slot's 8 bytes: IPv6 ones go to `v6` under the slot.
fn pack_path(
    v6: &mut hashbrown::HashMap<u32, crate::addr::PathKey>,
    slot: u32,
    path: crate::addr::PathKey,
) -> u64 {
    match path {
        crate::addr::PathKey::V4(k) => {
            v6.remove(&slot);
            k
        }
        crate::addr::PathKey::V6 { .. } => {
            v6.insert(slot, path);
            V6_PATH
        }
    }
}

fn unpack_path(
    v6: &hashbrown::HashMap<u32, crate::addr::PathKey>,
    slot: u32,
    packed: u64,
) -> crate::addr::PathKey {
    match packed {
        V6_PATH => v6
            .get(&slot)
            .copied()
            .unwrap_or(crate::addr::PathKey::V4(0)),
        k => crate::addr::PathKey::V4(k),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lb() -> LocalBinding {
        LocalBinding {
            aor: 7,
            expires_at: 10,
            scheduled_at: 10,
            path: crate::addr::PathKey::V4(0),
        }
    }

    #[test]
    fn slots_are_reused_with_a_new_generation() {
        let mut s = Slab::default();
        let (i, g) = s.reserve();
        s.fill(i, g, lb());
        assert_eq!(s.live(), 1);
        assert!(s.release(i, g).is_some());
        assert!(s.release(i, g).is_none(), "double release is refused");
        let (j, g2) = s.reserve();
        assert_eq!(j, i);
        assert_ne!(g2, g);
        assert!(
            s.get_mut(i, g).is_none(),
            "stale reference does not reach the new binding"
        );
        s.fill(j, g2, lb());
        assert!(s.get_mut(j, g2).is_some());
        assert_eq!(s.live(), 1);
    }

    #[test]
    fn an_entry_is_32_bytes_and_ipv6_paths_round_trip() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
        let v6 = crate::addr::PathKey::new(2, "[2001:db8::7]:5062".parse().unwrap());
        let v4 = crate::addr::PathKey::new(1, "198.51.100.7:5060".parse().unwrap());
        let mut s = Slab::default();
        let (i, g) = s.reserve();
        s.fill(i, g, LocalBinding { path: v6, ..lb() });
        assert_eq!(s.move_path(i, g, v6), None, "same path: no move");
        assert_eq!(s.move_path(i, g, v4), Some(v6));
        assert!(s.v6.is_empty());
        assert_eq!(s.move_path(i, g, v6), Some(v4));
        let b = s.release(i, g).unwrap();
        assert_eq!((b.path, b.aor), (v6, 7));
        assert!(s.v6.is_empty());
    }
}
