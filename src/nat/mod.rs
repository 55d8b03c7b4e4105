//! Server-side NAT keepalive (seed 004): a core-local table of NAT paths
//! (local socket, remote address) shared by every binding and dialog that
//! uses them, a keepalive state per path after seed 004 FIG. 2, and OPTIONS
//! prompts when a path has been idle for the interval.
//!
//! Sans-IO: callers report registrations, dialogs, packets and responses
//! with `now` (ms); [`Keepalive::poll`] returns what to send and which paths
//! died. The runtime turns prompts into OPTIONS requests.

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

#[derive(Debug)]
struct Path {
    key: PathKey,
    last_seen: u64,
    registrations: u32,
    dialogs: u32,
    /// Set while lingering after the last dialog.
    linger_until: Option<u64>,
    /// Prompt in flight: its id and when it was sent.
    prompt: Option<(u64, u64)>,
    misses: u8,
    dead: bool,
    /// Restored from disk and not prompted since: its first check prompts
    /// whatever `last_seen` says (nothing was seen in this run).
    restored: bool,
    check: Option<TimerHandle>,
    prompt_timer: Option<TimerHandle>,
    linger: Option<TimerHandle>,
    /// The caller's ids of the bindings on this path (the registrar's
    /// slot and generation), so a dead path finds them without a scan.
    bindings: smallvec::SmallVec<[(u32, u32); 1]>,
}

/// The per-core keepalive: path table, timers and prompt tracking.
pub struct Keepalive {
    cfg: KeepaliveConfig,
    index: PathIndex,
    paths: Vec<Option<Path>>,
    gauges: Gauges,
    free: Vec<u32>,
    /// Dead paths that sent traffic since the last poll.
    revived: Vec<PathKey>,
    next_id: u64,
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
            paths: Vec::new(),
            gauges: Gauges::default(),
            free: Vec::new(),
            revived: Vec::new(),
            next_id: seed | 1,
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
        self.paths.reserve(paths.saturating_sub(self.paths.len()));
        self.index.reserve(paths, &self.paths);
    }

    /// [`Keepalive::paths_by_state`] and [`Keepalive::dead_paths`] by a scan,
    /// to check the gauges against.
    #[cfg(test)]
    fn gauges_by_scan(&self) -> Gauges {
        let mut g = Gauges::default();
        for p in self.paths.iter().flatten() {
            if let Some(i) = gauges::gauge_slot(state_of(p)) {
                g.by_state[i] += 1;
            }
            g.dead += u64::from(p.dead);
        }
        g
    }

    /// Paths being kept.
    pub(crate) fn paths(&self) -> usize {
        self.index.table.len()
    }

    /// Heap bytes held, by capacity: (path records, path index), for the
    /// memory benches. Bindings spilled out of a record count as records.
    pub fn heap_bytes(&self) -> (usize, usize) {
        let records = self.paths.capacity() * std::mem::size_of::<Option<Path>>()
            + self.free.capacity() * 4
            + self
                .paths
                .iter()
                .flatten()
                .filter(|p| p.bindings.spilled())
                .map(|p| p.bindings.capacity() * 8)
                .sum::<usize>();
        // hashbrown: a 4-byte slot and a control byte per bucket.
        let buckets = (self.index.table.capacity() * 8 / 7).next_power_of_two();
        (records, buckets * 5)
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
    pub(crate) fn binding_added(&mut self, key: PathKey, id: (u32, u32), now: u64, t: &mut Timers) {
        let i = self.registration_added(key, now, t);
        self.path_mut(i).bindings.push(id);
    }

    /// A registration restored from disk uses the path. Its first prompt
    /// goes out at a random moment in the next `spread_ms` (before the
    /// interval of any path learnt in this run, so dead ones show up first,
    /// and spread, so a restart is no burst); `dead` restores a path that
    /// had been declared dead as such, so an answer revives its bindings.
    pub(crate) fn binding_restored(
        &mut self,
        key: PathKey,
        id: (u32, u32),
        dead: bool,
        spread_ms: u64,
        now: u64,
        t: &mut Timers,
    ) {
        let i = self.ensure(key, now);
        let max = self.cfg.max_misses;
        let first = self.path_mut(i).registrations == 0;
        self.update(i, |p| {
            p.registrations += 1;
            p.bindings.push(id);
        });
        if !first {
            return;
        }
        let p = self.path_mut(i);
        p.restored = true;
        if dead && !p.dead {
            p.dead = true;
            p.misses = max;
            self.gauges.dead += 1;
        }
        let at = now + self.random_below(spread_ms.max(1));
        self.arm_check(i, at, t);
    }

    /// The registration with this id left the path.
    pub(crate) fn binding_removed(&mut self, key: PathKey, id: (u32, u32), t: &mut Timers) {
        if let Some(i) = self.index.get(&key, &self.paths) {
            self.path_mut(i).bindings.retain(|b| *b != id);
        }
        self.registration_removed(key, t);
    }

    /// The ids of the bindings on a path.
    pub(crate) fn bindings_on(&self, key: &PathKey) -> &[(u32, u32)] {
        self.get(key).map_or(&[], |p| &p.bindings)
    }

    /// A registration on the path ended (expired, removed, or moved away).
    pub(crate) fn registration_removed(&mut self, key: PathKey, t: &mut Timers) {
        let Some(i) = self.index.get(&key, &self.paths) else {
            return;
        };
        self.update(i, |p| p.registrations = p.registrations.saturating_sub(1));
        self.maybe_idle(i, t);
    }

    /// A dialog started on the path (for the proxy).
    pub fn dialog_started(&mut self, key: PathKey, now: u64, t: &mut Timers) {
        let i = self.ensure(key, now);
        let linger = self.update(i, |p| {
            p.dialogs += 1;
            p.linger_until = None;
            p.linger.take()
        });
        if let Some(h) = linger {
            t.cancel(h);
        }
        self.ensure_check(i, now, t);
    }

    /// A dialog on the path ended. After the last one, prompting goes on for
    /// the linger time unless a registration still holds the path.
    pub fn dialog_ended(&mut self, key: PathKey, now: u64, t: &mut Timers) {
        let Some(i) = self.index.get(&key, &self.paths) else {
            return;
        };
        let until = now + self.cfg.linger_ms;
        let lingers = self.update(i, |p| {
            if p.dialogs == 0 {
                return false; // an end without a start: nothing to linger for
            }
            p.dialogs -= 1;
            let last = p.dialogs == 0 && p.registrations == 0;
            if last {
                p.linger_until = Some(until);
            }
            last
        });
        if lingers {
            let h = t.arm(
                until,
                Timer::Keepalive {
                    path: i,
                    step: TimerKind::Linger,
                },
            );
            self.path_mut(i).linger = Some(h);
        }
    }

    /// Any packet from the path: it is alive and its mapping fresh. Cheap:
    /// timers are not touched (they re-arm from `last_seen` when they fire).
    /// Returns the path's index in the table, for [`Keepalive::answered_at`].
    pub(crate) fn touch(&mut self, key: &PathKey, now: u64) -> Option<u32> {
        let i = self.index.get(key, &self.paths)?;
        let p = self.path_mut(i);
        p.last_seen = p.last_seen.max(now);
        // Traffic proves the mapping works: misses are no longer consecutive.
        p.misses = 0;
        if std::mem::take(&mut p.dead) {
            let key = p.key;
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
        if let Some(i) = self.index.get(key, &self.paths) {
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
        if self.paths.get(i as usize).is_none_or(Option::is_none) {
            return;
        }
        let p = self.path_mut(i);
        if p.prompt.map(|(pid, _)| pid) != Some(id) {
            return; // a late answer to an old prompt: touch already counted it
        }
        p.prompt = None;
        p.misses = 0;
        p.last_seen = p.last_seen.max(now);
        let revived = std::mem::take(&mut p.dead);
        let timer = p.prompt_timer.take();
        let key = p.key;
        if let Some(h) = timer {
            t.cancel(h);
        }
        self.stats.answered += 1;
        if revived {
            self.gauges.dead -= 1;
            out.push(Action::Revived { path: key });
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
        now: u64,
        t: &mut Timers,
        out: &mut Vec<Action>,
    ) {
        if self.paths.get(i as usize).is_none_or(Option::is_none) {
            return;
        }
        match step {
            TimerKind::Check => self.on_check(i, now, t, out),
            TimerKind::Retransmit => self.on_retransmit(i, t, out),
            TimerKind::Timeout => self.on_timeout(i, now, t, out),
            TimerKind::Linger => {
                self.update(i, |p| {
                    p.linger = None;
                    p.linger_until = None;
                });
                self.maybe_idle(i, t);
            }
        }
    }

    fn on_check(&mut self, i: u32, now: u64, t: &mut Timers, out: &mut Vec<Action>) {
        let interval = self.cfg.interval_ms;
        let p = self.path_mut(i);
        p.check = None;
        if p.prompt.is_some() {
            return; // at most one prompt in flight per path
        }
        let idle_since = p.last_seen;
        let restored = std::mem::take(&mut p.restored);
        // The check time carried the jitter; a path silent for at least the
        // interval less the jitter is prompted now, so the spread survives.
        if !restored && now + self.max_jitter() < idle_since + interval {
            // Traffic arrived since the timer was set: re-arm from it.
            let at = idle_since + self.interval_with_jitter();
            self.arm_check(i, at, t);
            return;
        }
        let id = self.fresh_id();
        let timeout = self.cfg.timeout_ms;
        let p = self.path_mut(i);
        p.prompt = Some((id, now));
        let key = p.key;
        let h = t.arm(
            now + timeout / 2,
            Timer::Keepalive {
                path: i,
                step: TimerKind::Retransmit,
            },
        );
        self.path_mut(i).prompt_timer = Some(h);
        self.stats.prompts += 1;
        out.push(Action::Prompt {
            path: key,
            id,
            retransmission: false,
        });
    }

    fn on_retransmit(&mut self, i: u32, t: &mut Timers, out: &mut Vec<Action>) {
        let timeout = self.cfg.timeout_ms;
        let p = self.path_mut(i);
        let Some((id, sent)) = p.prompt else { return };
        let key = p.key;
        let h = t.arm(
            sent + timeout,
            Timer::Keepalive {
                path: i,
                step: TimerKind::Timeout,
            },
        );
        self.path_mut(i).prompt_timer = Some(h);
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
        p.prompt_timer = None;
        if p.prompt.take().is_none() {
            return;
        }
        p.misses = p.misses.saturating_add(1);
        self.stats.missed += 1;
        let p = self.path_mut(i);
        if p.misses >= max && !p.dead {
            p.dead = true;
            let key = p.key;
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
        if p.registrations > 0 || p.dialogs > 0 || p.linger_until.is_some() {
            return;
        }
        let timers = [p.check.take(), p.prompt_timer.take(), p.linger.take()];
        let key = p.key;
        // Idle, so counted in no state; it may still have been dead.
        self.gauges.dead -= u64::from(p.dead);
        for h in timers.into_iter().flatten() {
            t.cancel(h);
        }
        self.index.remove(&key, &self.paths);
        self.paths[i as usize] = None;
        self.free.push(i);
    }

    fn ensure(&mut self, key: PathKey, now: u64) -> u32 {
        if let Some(i) = self.index.get(&key, &self.paths) {
            return i;
        }
        let path = Path {
            key,
            last_seen: now,
            registrations: 0,
            dialogs: 0,
            linger_until: None,
            prompt: None,
            misses: 0,
            dead: false,
            restored: false,
            check: None,
            prompt_timer: None,
            linger: None,
            bindings: smallvec::SmallVec::new(),
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.paths[i as usize] = Some(path);
                i
            }
            None => {
                self.paths.push(Some(path));
                (self.paths.len() - 1) as u32
            }
        };
        self.index.insert(key, i, &self.paths);
        self.stats.paths += 1;
        i
    }

    /// Schedules the idle check if the path has none (first user, or after a miss).
    fn ensure_check(&mut self, i: u32, now: u64, t: &mut Timers) {
        if self.cfg.interval_ms == 0 {
            return;
        }
        let p = self.path_mut(i);
        if p.check.is_some() || p.prompt.is_some() {
            return;
        }
        let at = now + self.interval_with_jitter();
        self.arm_check(i, at, t);
    }

    fn arm_check(&mut self, i: u32, at: u64, t: &mut Timers) {
        if self.cfg.interval_ms == 0 {
            return;
        }
        let old = self.path_mut(i).check.take();
        if let Some(h) = old {
            t.cancel(h);
        }
        let h = t.arm(
            at,
            Timer::Keepalive {
                path: i,
                step: TimerKind::Check,
            },
        );
        self.path_mut(i).check = Some(h);
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

    fn fresh_id(&mut self) -> u64 {
        self.next_id = self.next_id.wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.next_id
    }

    fn get(&self, key: &PathKey) -> Option<&Path> {
        let i = self.index.get(key, &self.paths)?;
        self.paths[i as usize].as_ref()
    }

    /// Changes path `i` with `f`, keeping the per-state gauges in step.
    fn update<R>(&mut self, i: u32, f: impl FnOnce(&mut Path) -> R) -> R {
        let p = self.paths[i as usize].as_mut().expect("live path index");
        let before = state_of(p);
        let r = f(p);
        self.gauges.moved(before, state_of(p));
        r
    }

    fn path_mut(&mut self, i: u32) -> &mut Path {
        self.paths[i as usize].as_mut().expect("live path index")
    }
}

fn state_of(p: &Path) -> PathState {
    match (
        p.registrations > 0,
        p.dialogs > 0 || p.linger_until.is_some(),
    ) {
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
