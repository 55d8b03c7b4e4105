//! Server-side NAT keepalive (seed 004): a core-local table of NAT paths
//! (local socket, remote address) shared by every binding and dialog that
//! uses them, a keepalive state per path after seed 004 FIG. 2, and OPTIONS
//! prompts when a path has been idle for the interval.
//!
//! Sans-IO: callers report registrations, dialogs, packets and responses
//! with `now` (ms); [`Keepalive::poll`] returns what to send and which paths
//! died. The runtime turns prompts into OPTIONS requests.
//!
//! About 900 lines on purpose: the path table, its per-path state machine
//! (FIG. 2) and the prompt scheduling all read and write one packed record
//! (`Path`, 48 bytes, issue 15); split, its fields would cross module
//! boundaries. The index and the gauges are apart already.

mod gauges;
mod index;
pub mod stun;

use gauges::Gauges;
use index::PathIndex;

pub use crate::addr::PathKey;
use crate::timer::{KeepaliveStep as TimerKind, Timer, TimerHandle, Timers};

/// Keepalive policy (`[keepalive]` configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveConfig {
    /// Prompt a path after this much silence (ms). 0 switches prompting off.
    pub interval_ms: u64,
    /// A prompt unanswered this long is a miss (ms); retransmitted once halfway.
    pub timeout_ms: u64,
    /// Consecutive misses after which a path is dead.
    pub max_misses: u8,
    /// Keep prompting this long after the last dialog ends (ms), seed 004's 32 s.
    pub linger_ms: u64,
    /// Prompts are spread over `interval ± jitter` (ms).
    pub jitter_ms: u64,
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        KeepaliveConfig {
            interval_ms: 25_000,
            timeout_ms: 4_000,
            max_misses: 3,
            linger_ms: 32_000,
            jitter_ms: 2_500,
        }
    }
}

/// Seed 004 FIG. 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    Idle,
    RegistrationOnly,
    DialogAndRegistration,
    DialogOnly,
}

/// What the keepalive asks the runtime to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send an OPTIONS prompt on this path. `id` goes into the branch so the
    /// answer can be matched; a retransmission reuses the id of its prompt.
    Prompt {
        path: PathKey,
        id: u64,
        retransmission: bool,
    },
    /// The path missed `max_misses` prompts in a row.
    Dead { path: PathKey },
    /// A path declared dead answered again.
    Revived { path: PathKey },
}

/// Counters (plain integers: only the owning core writes them).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub prompts: u64,
    pub retransmissions: u64,
    pub answered: u64,
    pub missed: u64,
    pub dead: u64,
    pub paths: u64,
}

/// A path, in 48 bytes (a million endpoints keep a million of them): the
/// key packed into 8 bytes (an IPv6 one lives in [`Table::v6`]), the prompt
/// in flight as the random half of its id, a flag and the low 32 bits of its send time, one
/// binding inline (more go to [`Keepalive::spilled`]), and what only paths
/// with dialogs need (their count, the linger timer) in [`Keepalive::dialogs`].
#[derive(Debug)]
struct Path {
    /// [`PathKey::V4`]'s value, or [`V6_KEY`].
    key: u64,
    last_seen: u64,
    /// The low half of the id of the prompt in flight, while [`PROMPTING`]
    /// is set; the high half is the path's index (see [`Keepalive::prompt_id`]).
    prompt_tag: u32,
    /// The nonce of the pending check timer, while [`CHECK_ARMED`] is set.
    /// Keepalive timers take no handle (see [`Keepalive::arm`]).
    check_nonce: u32,
    /// The nonce of the pending retransmission or timeout of the prompt,
    /// while [`PROMPT_ARMED`] is set.
    prompt_nonce: u32,
    /// The caller's id of the path's one binding (the registrar's slot and
    /// generation), so a dead path finds it without a scan; [`NO_BINDING`]
    /// when it has none or they are in [`Keepalive::spilled`].
    binding: (u32, u32),
    registrations: u32,
    /// The low 32 bits of the prompt's send time (ms): a retransmission
    /// comes long before they wrap (49 days).
    prompt_sent: u32,
    misses: u8,
    /// [`PROMPTING`], [`DIALOGS`], [`LINGERING`], [`RESTORED`], [`SPILLED`].
    flags: u8,
    dead: bool,
}

/// The key field of a path whose key is IPv6 (a V4 key's top byte is 0).
const V6_KEY: u64 = u64::MAX;
const NO_BINDING: (u32, u32) = (u32::MAX, 0);
/// A prompt is in flight.
const PROMPTING: u8 = 1;
/// At least one dialog uses the path.
const DIALOGS: u8 = 2;
/// Lingering after the last dialog.
const LINGERING: u8 = 4;
/// Restored from disk and not prompted since: its first check prompts
/// whatever `last_seen` says (nothing was seen in this run).
const RESTORED: u8 = 8;
/// More than one binding: all of them are in [`Keepalive::spilled`].
const SPILLED: u8 = 16;
/// The check timer is pending.
const CHECK_ARMED: u8 = 32;
/// The prompt's retransmission or timeout timer is pending.
const PROMPT_ARMED: u8 = 64;

/// What a path with dialogs keeps besides its record.
#[derive(Debug, Default)]
struct DialogState {
    count: u32,
    linger: Option<TimerHandle>,
}

/// The path records and the IPv6 keys that do not fit in them.
#[derive(Debug, Default)]
pub(super) struct Table {
    paths: Vec<Option<Path>>,
    v6: hashbrown::HashMap<u32, PathKey>,
}

impl Table {
    /// The key of the live path at `i`.
    fn key(&self, i: u32) -> PathKey {
        let p = self.paths[i as usize].as_ref().expect("live path index");
        match p.key {
            V6_KEY => self.v6[&i],
            k => PathKey::V4(k),
        }
    }

    /// Whether slot `i` holds the path for `key`.
    fn holds(&self, i: u32, key: &PathKey) -> bool {
        match (self.paths.get(i as usize).and_then(Option::as_ref), key) {
            (Some(p), PathKey::V4(k)) => p.key == *k,
            (Some(p), PathKey::V6 { .. }) => p.key == V6_KEY && self.v6.get(&i) == Some(key),
            (None, _) => false,
        }
    }
}

/// The per-core keepalive: path table, timers and prompt tracking.
pub struct Keepalive {
    cfg: KeepaliveConfig,
    index: PathIndex,
    table: Table,
    /// The bindings of paths that carry more than one, by path index.
    spilled: hashbrown::HashMap<u32, Vec<(u32, u32)>>,
    /// Dialog counts and linger timers, by path index, of the paths that
    /// have a dialog or linger after one.
    dialogs: hashbrown::HashMap<u32, DialogState>,
    gauges: Gauges,
    free: Vec<u32>,
    /// Dead paths that sent traffic since the last poll.
    revived: Vec<PathKey>,
    /// The last keepalive timer nonce handed out (30 bits, wrapping).
    nonce: u32,
    rng: u64,
    pub(crate) stats: Stats,
}

impl Keepalive {
    /// `seed` drives prompt ids and jitter (the runtime seeds it per core).
    /// Its timers live on the core's [`Timers`], passed to each call that
    /// arms or cancels one.
    pub fn new(cfg: KeepaliveConfig, seed: u64) -> Keepalive {
        Keepalive {
            cfg,
            index: PathIndex::default(),
            table: Table::default(),
            spilled: hashbrown::HashMap::new(),
            dialogs: hashbrown::HashMap::new(),
            gauges: Gauges::default(),
            free: Vec::new(),
            revived: Vec::new(),
            nonce: 0,
            rng: seed ^ 0x9E37_79B9_7F4A_7C15,
            stats: Stats::default(),
        }
    }

    /// The state of a path (Idle when unknown).
    pub fn state(&self, key: &PathKey) -> PathState {
        self.get(key).map_or(PathState::Idle, state_of)
    }

    /// How many paths are in each state: [registration-only,
    /// dialog+registration, dialog-only].
    pub(crate) fn paths_by_state(&self) -> [u64; 3] {
        self.gauges.by_state
    }

    /// Paths currently declared dead.
    pub(crate) fn dead_paths(&self) -> u64 {
        self.gauges.dead
    }

    /// Room for `paths` paths without growing the table while traffic is
    /// being served (a rehash of a million-entry index stalls the core).
    pub fn reserve(&mut self, paths: usize) {
        let t = &mut self.table.paths;
        t.reserve(paths.saturating_sub(t.len()));
        self.index.reserve(paths, &self.table);
    }

    /// [`Keepalive::paths_by_state`] and [`Keepalive::dead_paths`] by a scan,
    /// to check the gauges against.
    #[cfg(test)]
    fn gauges_by_scan(&self) -> Gauges {
        let mut g = Gauges::default();
        for p in self.table.paths.iter().flatten() {
            if let Some(i) = gauges::gauge_slot(state_of(p)) {
                g.by_state[i] += 1;
            }
            g.dead += u64::from(p.dead);
        }
        g
    }

    /// Paths being kept.
    pub(crate) fn paths(&self) -> usize {
        self.index.len()
    }

    /// Heap bytes held, by capacity: (path records, path index), for the
    /// memory benches. Bindings spilled out of a record count as records.
    pub fn heap_bytes(&self) -> (usize, usize) {
        let records = self.table.paths.capacity() * std::mem::size_of::<Option<Path>>()
            + self.free.capacity() * 4
            + self
                .spilled
                .values()
                .map(|v| v.capacity() * 8 + 32)
                .sum::<usize>()
            + self.spilled.capacity() * 32
            + self.dialogs.capacity() * 20
            + self.table.v6.capacity() * 29;
        // hashbrown: a 4-byte slot and a control byte per bucket.
        (records, self.index.buckets() * 5)
    }

    /// Whether a path has been declared dead (and not answered since).
    pub fn is_dead(&self, key: &PathKey) -> bool {
        self.get(key).is_some_and(|p| p.dead)
    }

    /// Dead paths that sent traffic since the last call: the caller marks
    /// their bindings reachable again.
    pub(crate) fn take_revived(&mut self) -> impl Iterator<Item = PathKey> + '_ {
        self.revived.drain(..)
    }

    /// A registration now uses the path. Returns the path's index.
    pub(crate) fn registration_added(&mut self, key: PathKey, now: u64, t: &mut Timers) -> u32 {
        let i = self.ensure(key, now);
        self.update(i, |p| p.registrations += 1);
        self.ensure_check(i, now, t);
        i
    }

    /// A registration now uses the path, with the caller's id for it.
    /// Returns the path's index, which stays the path's while a binding is
    /// on it (the registrar keeps it instead of the key).
    pub(crate) fn binding_added(
        &mut self,
        key: PathKey,
        id: (u32, u32),
        now: u64,
        t: &mut Timers,
    ) -> u32 {
        let i = self.registration_added(key, now, t);
        self.push_binding(i, id);
        i
    }

    /// Binding `id`, on the path at index `was`, was refreshed over `key`:
    /// moves it to `key`'s path if that is another one (a new NAT mapping).
    /// Returns the index of the path it is on, and the key of the one it
    /// left when it moved.
    pub(crate) fn binding_refreshed(
        &mut self,
        was: u32,
        key: PathKey,
        id: (u32, u32),
        now: u64,
        t: &mut Timers,
    ) -> (u32, Option<PathKey>) {
        if self.table.holds(was, &key) && self.has_binding(was, id) {
            return (was, None);
        }
        let left = self.binding_left(was, id, t);
        (self.binding_added(key, id, now, t), left)
    }

    /// Binding `id` left the path at index `i`: the path's key, or `None`
    /// (and nothing changes) when the binding is not on it.
    pub(crate) fn binding_left(
        &mut self,
        i: u32,
        id: (u32, u32),
        t: &mut Timers,
    ) -> Option<PathKey> {
        if !self.has_binding(i, id) {
            return None;
        }
        let key = self.table.key(i);
        self.remove_binding(i, id);
        self.update(i, |p| p.registrations = p.registrations.saturating_sub(1));
        self.maybe_idle(i, t);
        Some(key)
    }

    /// Whether binding `id` is on the live path at index `i`.
    fn has_binding(&self, i: u32, id: (u32, u32)) -> bool {
        match self.table.paths.get(i as usize).and_then(Option::as_ref) {
            Some(p) if p.flags & SPILLED != 0 => {
                self.spilled.get(&i).is_some_and(|v| v.contains(&id))
            }
            Some(p) => p.binding == id,
            None => false,
        }
    }

    /// A registration restored from disk uses the path. Its first prompt
    /// goes out at a random moment in the next `spread_ms` (before the
    /// interval of any path learnt in this run, so dead ones show up first,
    /// and spread, so a restart is no burst); `dead` restores a path that
    /// had been declared dead as such, so an answer revives its bindings.
    /// Returns the path's index, as [`Keepalive::binding_added`].
    pub(crate) fn binding_restored(
        &mut self,
        key: PathKey,
        id: (u32, u32),
        dead: bool,
        spread_ms: u64,
        now: u64,
        t: &mut Timers,
    ) -> u32 {
        let i = self.ensure(key, now);
        let max = self.cfg.max_misses;
        let first = self.path_mut(i).registrations == 0;
        self.update(i, |p| p.registrations += 1);
        self.push_binding(i, id);
        if !first {
            return i;
        }
        let p = self.path_mut(i);
        p.flags |= RESTORED;
        if dead && !p.dead {
            p.dead = true;
            p.misses = max;
            self.gauges.dead += 1;
        }
        let at = now + self.random_below(spread_ms.max(1));
        self.arm_check(i, at, t);
        i
    }

    /// The registration with this id left the path.
    #[cfg(test)]
    pub(crate) fn binding_removed(&mut self, key: PathKey, id: (u32, u32), t: &mut Timers) {
        if let Some(i) = self.index.get(&key, &self.table) {
            self.remove_binding(i, id);
        }
        self.registration_removed(key, t);
    }

    /// The ids of the bindings on a path.
    pub(crate) fn bindings_on(&self, key: &PathKey) -> &[(u32, u32)] {
        let Some(i) = self.index.get(key, &self.table) else {
            return &[];
        };
        let p = self.table.paths[i as usize]
            .as_ref()
            .expect("indexed paths are live");
        if p.flags & SPILLED != 0 {
            return self.spilled.get(&i).map_or(&[], Vec::as_slice);
        }
        if p.binding == NO_BINDING {
            return &[];
        }
        std::slice::from_ref(&p.binding)
    }

    fn push_binding(&mut self, i: u32, id: (u32, u32)) {
        let p = self.table.paths[i as usize]
            .as_mut()
            .expect("live path index");
        if p.flags & SPILLED != 0 {
            self.spilled.entry(i).or_default().push(id);
        } else if p.binding == NO_BINDING {
            p.binding = id;
        } else {
            let first = std::mem::replace(&mut p.binding, NO_BINDING);
            p.flags |= SPILLED;
            self.spilled.insert(i, vec![first, id]);
        }
    }

    /// Forgets every binding `id` of path `i`.
    fn remove_binding(&mut self, i: u32, id: (u32, u32)) {
        let p = self.table.paths[i as usize]
            .as_mut()
            .expect("live path index");
        if p.flags & SPILLED == 0 {
            if p.binding == id {
                p.binding = NO_BINDING;
            }
            return;
        }
        let Some(v) = self.spilled.get_mut(&i) else {
            return;
        };
        v.retain(|b| *b != id);
        // Back inline when one or none is left (the order is kept).
        if v.len() <= 1 {
            p.binding = v.first().copied().unwrap_or(NO_BINDING);
            p.flags &= !SPILLED;
            self.spilled.remove(&i);
        }
    }

    /// A registration on the path ended (expired, removed, or moved away).
    /// The registrar's bindings leave by index ([`Keepalive::binding_left`]).
    #[cfg(test)]
    pub(crate) fn registration_removed(&mut self, key: PathKey, t: &mut Timers) {
        let Some(i) = self.index.get(&key, &self.table) else {
            return;
        };
        self.update(i, |p| p.registrations = p.registrations.saturating_sub(1));
        self.maybe_idle(i, t);
    }

    /// A dialog started on the path (for the proxy).
    pub fn dialog_started(&mut self, key: PathKey, now: u64, t: &mut Timers) {
        let i = self.ensure(key, now);
        self.update(i, |p| p.flags = (p.flags | DIALOGS) & !LINGERING);
        let d = self.dialogs.entry(i).or_default();
        d.count += 1;
        if let Some(h) = d.linger.take() {
            t.cancel(h);
        }
        self.ensure_check(i, now, t);
    }

    /// A dialog on the path ended. After the last one, prompting goes on for
    /// the linger time unless a registration still holds the path.
    pub fn dialog_ended(&mut self, key: PathKey, now: u64, t: &mut Timers) {
        let Some(i) = self.index.get(&key, &self.table) else {
            return;
        };
        let until = now + self.cfg.linger_ms;
        let Some(d) = self.dialogs.get_mut(&i).filter(|d| d.count > 0) else {
            return; // an end without a start: nothing to linger for
        };
        d.count -= 1;
        let none_left = d.count == 0;
        let lingers = self.update(i, |p| {
            let last = none_left && p.registrations == 0;
            if none_left {
                p.flags &= !DIALOGS;
            }
            if last {
                p.flags |= LINGERING;
            }
            last
        });
        if none_left && !lingers {
            self.forget_dialogs(i);
        }
        if lingers {
            let h = t.arm(
                until,
                Timer::Keepalive {
                    path: i,
                    step: TimerKind::Linger,
                    nonce: 0,
                },
            );
            self.dialogs.entry(i).or_default().linger = Some(h);
        }
    }

    /// Drops path `i`'s dialog state once nothing is left in it.
    fn forget_dialogs(&mut self, i: u32) {
        if self
            .dialogs
            .get(&i)
            .is_some_and(|d| d.count == 0 && d.linger.is_none())
        {
            self.dialogs.remove(&i);
        }
    }

    /// Hints the CPU to fetch path `i`'s record: the caller will read it
    /// soon (a keepalive timer a few places down the due list).
    pub(crate) fn prefetch(&self, i: u32) {
        if let Some(p) = self.table.paths.get(i as usize) {
            crate::timer::prefetch(p);
        }
    }

    /// Any packet from the path: it is alive and its mapping fresh. Cheap:
    /// timers are not touched (they re-arm from `last_seen` when they fire).
    /// Returns the path's index in the table, for [`Keepalive::answered_at`].
    pub(crate) fn touch(&mut self, key: &PathKey, now: u64) -> Option<u32> {
        self.touch_hinted(key, None, now)
    }

    /// [`Keepalive::touch`], trying slot `hint` first (from a prompt's
    /// branch, [`prompt_path`]): the index is probed only when that slot
    /// does not hold this very path, so a wrong or forged hint costs a
    /// probe, never another path's state.
    pub(crate) fn touch_hinted(
        &mut self,
        key: &PathKey,
        hint: Option<u32>,
        now: u64,
    ) -> Option<u32> {
        let i = match hint {
            Some(i) if self.table.holds(i, key) => i,
            _ => self.index.get(key, &self.table)?,
        };
        let p = self.path_mut(i);
        p.last_seen = p.last_seen.max(now);
        // Traffic proves the mapping works: misses are no longer consecutive.
        p.misses = 0;
        if std::mem::take(&mut p.dead) {
            let key = self.table.key(i);
            self.gauges.dead -= 1;
            self.revived.push(key);
        }
        Some(i)
    }

    /// A SIP response to prompt `id` arrived from the path (any status).
    pub fn answered(
        &mut self,
        key: &PathKey,
        id: u64,
        now: u64,
        t: &mut Timers,
        out: &mut Vec<Action>,
    ) {
        if let Some(i) = self.index.get(key, &self.table) {
            self.answered_at(i, id, now, t, out);
        }
    }

    /// [`Keepalive::answered`] for the path at index `i`, as [`Keepalive::touch`]
    /// returned it for this packet: the answer costs no second table lookup.
    pub(crate) fn answered_at(
        &mut self,
        i: u32,
        id: u64,
        now: u64,
        t: &mut Timers,
        out: &mut Vec<Action>,
    ) {
        if self.table.paths.get(i as usize).is_none_or(Option::is_none) {
            return;
        }
        let p = self.path_mut(i);
        if p.flags & PROMPTING == 0 || prompt_path(id) != i || p.prompt_tag != id as u32 {
            return; // a late answer to an old prompt: touch already counted it
        }
        p.flags &= !PROMPTING;
        p.misses = 0;
        p.last_seen = p.last_seen.max(now);
        let revived = std::mem::take(&mut p.dead);
        // Disarmed: the pending record is stale when it fires.
        p.flags &= !PROMPT_ARMED;
        self.stats.answered += 1;
        if revived {
            self.gauges.dead -= 1;
            out.push(Action::Revived {
                path: self.table.key(i),
            });
        }
        let at = now + self.interval_with_jitter();
        self.arm_check(i, at, t);
    }

    /// Keepalive timer `step` of path `i` is due at `now`: appends what to
    /// do to `out` (prompts to send, paths found dead).
    pub(crate) fn on_timer(
        &mut self,
        i: u32,
        step: TimerKind,
        nonce: u32,
        now: u64,
        t: &mut Timers,
        out: &mut Vec<Action>,
    ) {
        let Some(p) = self
            .table
            .paths
            .get_mut(i as usize)
            .and_then(Option::as_mut)
        else {
            return;
        };
        // A record disarmed or re-armed since (or of a path that left this
        // slot) is stale: what a cancel did with a handle.
        let (armed, current) = match step {
            TimerKind::Check => (CHECK_ARMED, p.check_nonce),
            TimerKind::Retransmit | TimerKind::Timeout => (PROMPT_ARMED, p.prompt_nonce),
            TimerKind::Linger => (0, nonce),
        };
        if p.flags & armed != armed || current != nonce {
            return;
        }
        p.flags &= !armed;
        match step {
            TimerKind::Check => self.on_check(i, now, t, out),
            TimerKind::Retransmit => self.on_retransmit(i, now, t, out),
            TimerKind::Timeout => self.on_timeout(i, now, t, out),
            TimerKind::Linger => {
                if let Some(d) = self.dialogs.get_mut(&i) {
                    d.linger = None;
                }
                self.forget_dialogs(i);
                self.update(i, |p| p.flags &= !LINGERING);
                self.maybe_idle(i, t);
            }
        }
    }

    fn on_check(&mut self, i: u32, now: u64, t: &mut Timers, out: &mut Vec<Action>) {
        let interval = self.cfg.interval_ms;
        let p = self.path_mut(i);
        if p.flags & PROMPTING != 0 {
            return; // at most one prompt in flight per path
        }
        let idle_since = p.last_seen;
        let restored = p.flags & RESTORED != 0;
        p.flags &= !RESTORED;
        // The check time carried the jitter; a path silent for at least the
        // interval less the jitter is prompted now, so the spread survives.
        if !restored && now + self.max_jitter() < idle_since + interval {
            // Traffic arrived since the timer was set: re-arm from it.
            let at = idle_since + self.interval_with_jitter();
            self.arm_check(i, at, t);
            return;
        }
        // From the core's xorshift generator, not the id sequence: a device
        // that sees its own prompts cannot step to the next tag. (What keeps
        // a forged answer out is still that it must come from the path.)
        let tag = self.random_below(1 << 32) as u32;
        let id = Self::prompt_id(i, tag);
        let timeout = self.cfg.timeout_ms;
        let p = self.path_mut(i);
        p.flags |= PROMPTING;
        p.prompt_tag = tag;
        p.prompt_sent = now as u32;
        let key = self.table.key(i);
        self.arm(i, now + timeout / 2, TimerKind::Retransmit, t);
        self.stats.prompts += 1;
        out.push(Action::Prompt {
            path: key,
            id,
            retransmission: false,
        });
    }

    fn on_retransmit(&mut self, i: u32, now: u64, t: &mut Timers, out: &mut Vec<Action>) {
        let timeout = self.cfg.timeout_ms;
        let p = self.path_mut(i);
        if p.flags & PROMPTING == 0 {
            return;
        }
        let id = Self::prompt_id(i, p.prompt_tag);
        // The send time from its low 32 bits: it was less than 2^32 ms ago.
        let sent = now.wrapping_sub(u64::from((now as u32).wrapping_sub(p.prompt_sent)));
        let key = self.table.key(i);
        self.arm(i, sent + timeout, TimerKind::Timeout, t);
        self.stats.retransmissions += 1;
        out.push(Action::Prompt {
            path: key,
            id,
            retransmission: true,
        });
    }

    fn on_timeout(&mut self, i: u32, now: u64, t: &mut Timers, out: &mut Vec<Action>) {
        let max = self.cfg.max_misses;
        let p = self.path_mut(i);
        if p.flags & PROMPTING == 0 {
            return;
        }
        p.flags &= !PROMPTING;
        p.misses = p.misses.saturating_add(1);
        self.stats.missed += 1;
        let p = self.path_mut(i);
        if p.misses >= max && !p.dead {
            p.dead = true;
            let key = self.table.key(i);
            self.stats.dead += 1;
            self.gauges.dead += 1;
            out.push(Action::Dead { path: key });
        }
        // Ask again right away while misses are counting, then at the interval.
        let dead = self.path_mut(i).dead;
        let at = if dead {
            now + self.interval_with_jitter()
        } else {
            now
        };
        self.arm_check(i, at, t);
    }

    /// Back to Idle when nothing holds the path: forget it.
    fn maybe_idle(&mut self, i: u32, t: &mut Timers) {
        let p = self.path_mut(i);
        if p.registrations > 0 || p.flags & (DIALOGS | LINGERING) != 0 {
            return;
        }
        // The check and prompt records go stale with the path (a new path
        // in this slot arms with fresh nonces).
        if let Some(h) = self.dialogs.remove(&i).and_then(|d| d.linger) {
            t.cancel(h);
        }
        let p = self.path_mut(i);
        // Idle, so counted in no state; it may still have been dead.
        self.gauges.dead -= u64::from(p.dead);
        let key = self.table.key(i);
        self.index.remove(&key, &self.table);
        self.table.paths[i as usize] = None;
        self.table.v6.remove(&i);
        self.spilled.remove(&i);
        self.free.push(i);
    }

    fn ensure(&mut self, key: PathKey, now: u64) -> u32 {
        if let Some(i) = self.index.get(&key, &self.table) {
            return i;
        }
        let path = Path {
            key: match key {
                PathKey::V4(k) => k,
                PathKey::V6 { .. } => V6_KEY,
            },
            last_seen: now,
            prompt_tag: 0,
            check_nonce: 0,
            prompt_nonce: 0,
            binding: NO_BINDING,
            registrations: 0,
            prompt_sent: 0,
            misses: 0,
            flags: 0,
            dead: false,
        };
        let paths = &mut self.table.paths;
        let i = match self.free.pop() {
            Some(i) => {
                paths[i as usize] = Some(path);
                i
            }
            None => {
                paths.push(Some(path));
                (paths.len() - 1) as u32
            }
        };
        if let PathKey::V6 { .. } = key {
            self.table.v6.insert(i, key);
        }
        self.index.insert(key, i, &self.table);
        self.stats.paths += 1;
        i
    }

    /// Schedules the idle check if the path has none (first user, or after a miss).
    fn ensure_check(&mut self, i: u32, now: u64, t: &mut Timers) {
        if self.cfg.interval_ms == 0 {
            return;
        }
        let p = self.path_mut(i);
        if p.flags & (CHECK_ARMED | PROMPTING) != 0 {
            return;
        }
        let at = now + self.interval_with_jitter();
        self.arm_check(i, at, t);
    }

    fn arm_check(&mut self, i: u32, at: u64, t: &mut Timers) {
        if self.cfg.interval_ms == 0 {
            return;
        }
        // A pending check goes stale: the new one takes a fresh nonce.
        self.arm(i, at, TimerKind::Check, t);
    }

    /// Arms path `i`'s check (`Check`) or prompt timer (`Retransmit`,
    /// `Timeout`) without a handle: the path keeps the timer's nonce and an
    /// armed flag, and [`Keepalive::on_timer`] drops a record whose nonce is
    /// no longer the path's. At a million paths that saves a handle in the
    /// record and a generation in the wheel per timer.
    fn arm(&mut self, i: u32, at: u64, step: TimerKind, t: &mut Timers) {
        self.nonce = (self.nonce + 1) & crate::timer::MAX_NONCE;
        let nonce = self.nonce;
        let p = self.path_mut(i);
        if step == TimerKind::Check {
            p.check_nonce = nonce;
            p.flags |= CHECK_ARMED;
        } else {
            p.prompt_nonce = nonce;
            p.flags |= PROMPT_ARMED;
        }
        t.arm_unhandled(
            at,
            Timer::Keepalive {
                path: i,
                step,
                nonce,
            },
        );
    }

    fn max_jitter(&self) -> u64 {
        self.cfg.jitter_ms.min(self.cfg.interval_ms / 2)
    }

    /// The interval shortened by up to `jitter`, so a burst of registrations
    /// does not become a synchronised burst of prompts.
    fn interval_with_jitter(&mut self) -> u64 {
        let j = self.max_jitter();
        if j == 0 {
            return self.cfg.interval_ms;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.cfg.interval_ms - self.rng % (j + 1)
    }

    fn random_below(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    /// A prompt's id: the path's index, then 32 pseudo-random bits. The answer's
    /// branch names the path, so it is found without a hash probe (the
    /// probe that misses the cache at a million paths); the random half,
    /// matched against the record, is what a forged answer must guess, on
    /// top of coming from the path's own address.
    fn prompt_id(i: u32, tag: u32) -> u64 {
        (u64::from(i) << 32) | u64::from(tag)
    }

    fn get(&self, key: &PathKey) -> Option<&Path> {
        let i = self.index.get(key, &self.table)?;
        self.table.paths[i as usize].as_ref()
    }

    /// Changes path `i` with `f`, keeping the per-state gauges in step.
    fn update<R>(&mut self, i: u32, f: impl FnOnce(&mut Path) -> R) -> R {
        let p = self.table.paths[i as usize]
            .as_mut()
            .expect("live path index");
        let before = state_of(p);
        let r = f(p);
        self.gauges.moved(before, state_of(p));
        r
    }

    fn path_mut(&mut self, i: u32) -> &mut Path {
        self.table.paths[i as usize]
            .as_mut()
            .expect("live path index")
    }
}

fn state_of(p: &Path) -> PathState {
    match (p.registrations > 0, p.flags & (DIALOGS | LINGERING) != 0) {
        (true, true) => PathState::DialogAndRegistration,
        (true, false) => PathState::RegistrationOnly,
        (false, true) => PathState::DialogOnly,
        (false, false) => PathState::Idle,
    }
}

/// The branch of a keepalive prompt: the magic cookie, a tag saying it is
/// ours, and the prompt id.
pub fn prompt_branch(id: u64) -> crate::sip::ids::Id {
    crate::sip::ids::Id::from_parts("z9hG4bKka", id)
}

/// The path index a prompt id carries (see [`Keepalive::prompt_id`]).
pub fn prompt_path(id: u64) -> u32 {
    (id >> 32) as u32
}

/// The prompt id in a branch made by [`prompt_branch`].
pub fn prompt_id(branch: &str) -> Option<u64> {
    let hex = branch.strip_prefix("z9hG4bKka")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests;
