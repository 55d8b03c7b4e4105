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
/// and comes out of the slab).
#[derive(Debug)]
pub(crate) struct LocalBinding {
    /// The AOR's [`Directory::hash`](crate::registrar::Directory::hash):
    /// the name is in the directory's block.
    pub aor: u64,
    pub expires_at: u32,
    /// The expiry time the timer queue holds for this slot.
    pub scheduled_at: u32,
}

/// A binding's fields the registrar changes in place.
pub(crate) type Held = LocalBinding;

/// The path field of a filled slot whose NAT path the endpoint has not
/// named yet ([`Slab::set_path`]): its `PathEvent::Uses` is still queued.
pub(crate) const PATH_PENDING: u32 = u32::MAX - 1;
/// The path field of a slot that is not filled.
const UNFILLED: u32 = u32::MAX;

/// A slab entry in 24 bytes (one per binding). The NAT path is the index
/// of its record in the core's keepalive table, which the endpoint hands
/// back ([`Slab::set_path`]), not its key: the record has the key, and
/// stays while a binding is on it. [`UNFILLED`] says the slot is free or
/// only reserved.
#[derive(Debug)]
struct Slot {
    held: Held,
    path: u32,
    gen: u32,
}

/// Core-local bindings in a slab: u32 indices and generations, no pointers.
#[derive(Debug, Default)]
pub(crate) struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
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
            path: UNFILLED,
            gen: 1,
        });
        ((self.slots.len() - 1) as u32, 1)
    }

    /// Fills a reserved slot; its path is [`PATH_PENDING`] until
    /// [`Slab::set_path`].
    pub fn fill(&mut self, slot: u32, gen: u32, b: LocalBinding) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            if s.gen == gen {
                if s.path == UNFILLED {
                    self.live += 1;
                }
                s.path = PATH_PENDING;
                s.held = b;
            }
        }
    }

    fn filled(&self, slot: u32, gen: u32) -> Option<&Slot> {
        self.slots
            .get(slot as usize)
            .filter(|s| s.gen == gen && s.path != UNFILLED)
    }

    pub fn get_mut(&mut self, slot: u32, gen: u32) -> Option<&mut Held> {
        self.slots
            .get_mut(slot as usize)
            .filter(|s| s.gen == gen && s.path != UNFILLED)
            .map(|s| &mut s.held)
    }

    /// The index of a filled slot's NAT path, or [`PATH_PENDING`].
    pub fn path(&self, slot: u32, gen: u32) -> Option<u32> {
        self.filled(slot, gen).map(|s| s.path)
    }

    /// Records the index of a filled slot's NAT path.
    pub fn set_path(&mut self, slot: u32, gen: u32, path: u32) {
        debug_assert!(path < PATH_PENDING, "a real path index");
        if let Some(s) = self
            .slots
            .get_mut(slot as usize)
            .filter(|s| s.gen == gen && s.path != UNFILLED)
        {
            s.path = path.min(PATH_PENDING);
        }
    }

    /// Frees a slot (filled or only reserved) if the generation matches:
    /// a filled one's binding and path index (or [`PATH_PENDING`]).
    pub fn release(&mut self, slot: u32, gen: u32) -> Option<(LocalBinding, u32)> {
        let s = self.slots.get_mut(slot as usize)?;
        if s.gen != gen {
            return None;
        }
        // Bump the generation so no stale reference matches the reused slot.
        s.gen = s.gen.wrapping_add(1);
        self.free.push(slot);
        let path = std::mem::replace(&mut s.path, UNFILLED);
        if path == UNFILLED {
            return None;
        }
        self.live -= 1;
        let b = LocalBinding {
            aor: s.held.aor,
            expires_at: s.held.expires_at,
            scheduled_at: s.held.scheduled_at,
        };
        Some((b, path))
    }

    pub fn live(&self) -> usize {
        self.live
    }

    /// Heap bytes held, by capacity.
    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>() + self.free.capacity() * 4
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
    fn an_entry_is_24_bytes_and_keeps_its_path_index() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
        let mut s = Slab::default();
        let (i, g) = s.reserve();
        assert_eq!(s.path(i, g), None, "reserved is not filled");
        s.set_path(i, g, 5);
        assert_eq!(s.path(i, g), None, "nor does naming a path fill it");
        s.fill(i, g, lb());
        assert_eq!(s.path(i, g), Some(PATH_PENDING));
        s.set_path(i, g, 5);
        s.set_path(i, g + 1, 6);
        assert_eq!(s.path(i, g), Some(5));
        let (b, path) = s.release(i, g).unwrap();
        assert_eq!((b.aor, path), (7, 5));
        assert_eq!(s.path(i, g), None);
        assert_eq!(s.live(), 0);
    }
}
