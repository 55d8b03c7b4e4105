//! A hierarchical timer wheel, one per core (the shape of tokio's): six
//! levels of 64 slots at 1 ms resolution (level k slots span 64^k ms, so the
//! wheel covers about 2.2 years), an occupancy bitmap per level to find the
//! next non-empty slot in O(1), and handles of `u32` index + generation.
//! Insert and cancel are O(1) whatever the number of pending timers; an
//! entry moves down at most five levels before it fires.
//! (Over 700 lines with its ~300 lines of tests: insert, cascade and fire
//! share the record layout described below and are kept in one place.)
//!
//! Locality: a slot is a vector of small records (deadline, handle, value),
//! so cascading a slot to a lower level reads and writes memory in order
//! instead of chasing links through a slab, and firing needs nothing else
//! but a 4-byte generation per handle index. Cancelling bumps the
//! generation; the stale record is dropped when it comes due.
//!
//! A record is 16 bytes (for an 8-byte value): the deadline as the low 32
//! bits of its millisecond, told apart from the wheel's clock by a signed
//! 32-bit difference, which holds since a record in the wheel is never more
//! than [`HORIZON`] ahead of it (farther deadlines wait in an overflow list,
//! moved into the wheel when they come within range); and no generation:
//! a cancelled timer's index stays taken, flagged in its generation word,
//! until its record comes due and is dropped, so a record's index alone
//! tells whether it is live.
//!
//! Memory at a million timers (about 16 MB of records, 4 MB of generations):
//! a record's generation line is prefetched when the record enters level 0,
//! up to 64 ms before firing reads it; a due level-0 slot is swapped in as
//! the due list rather than copied; and a slot with no vector borrows the
//! vector of an empty slot of its level (found through an `idle` bitmap),
//! so a level whose slots have not all been used yet does not grow fresh
//! pages for each one.
//!
//! Sans-IO: time is a `u64` of milliseconds on the caller's clock.

mod kinds;

pub use kinds::{KeepaliveStep, Timer, Timers, MAX_INDEX, MAX_NONCE};

/// Slots per level.
const SLOTS: usize = 64;
const LEVELS: usize = 6;
/// How far ahead of the wheel's clock a record's deadline may be (ms, about
/// 24.8 days): its 32-bit deadline is read back through a signed 32-bit
/// difference from the clock. Farther deadlines wait in the overflow list.
/// (Well within the six levels' range of about 2.2 years.)
const HORIZON: u64 = 1 << 31;

/// The six levels' range (about 2.2 years).
const MAX_DURATION: u64 = (1 << (6 * LEVELS)) - 1;

/// A generation word's flag: the timer of this index was cancelled and its
/// record is still in a slot. The index is freed when the record comes due.
const CANCELLED: u32 = 1 << 31;

/// The index of a timer armed without a handle ([`TimerWheel::insert_unhandled`]).
const UNHANDLED: u32 = u32::MAX;

/// Names a pending timer. Stale after the timer fired or was cancelled:
/// the generation then no longer matches and cancel returns `None`.
/// Generations skip 0, so an `Option<TimerHandle>` is 8 bytes, not 12 (a
/// NAT path keeps three).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerHandle {
    index: u32,
    gen: std::num::NonZeroU32,
}

/// What a slot holds: the low 32 bits of the timer's deadline, the index of
/// the handle that armed it, and its value. Cascading and firing read only
/// these.
#[derive(Debug, Clone, Copy)]
struct Item<T> {
    deadline: u32,
    index: u32,
    value: T,
}

/// The wheel. `T` is small and `Copy` (an index or two and a kind): it
/// travels with the timer through the slots.
#[derive(Debug)]
pub struct TimerWheel<T> {
    /// The time the wheel has been advanced to (ms).
    elapsed: u64,
    occupied: [u64; LEVELS],
    /// Slots whose vector has capacity; those not occupied can lend it to a
    /// slot that has none (see `adopt`).
    idle: [u64; LEVELS],
    slots: Vec<Vec<Item<T>>>,
    /// The current generation of each handle index (31 bits, never 0), and
    /// the [`CANCELLED`] flag while a cancelled timer's record is pending.
    /// Four bytes per index, so at a million timers the table stays in
    /// cache.
    gens: Vec<u32>,
    free: Vec<u32>,
    /// Timers due more than [`HORIZON`] after the clock: (deadline, item).
    /// Rare (the registrar caps expiry far below), so a plain list.
    overflow: Vec<(u64, Item<T>)>,
    /// The clock at which `overflow` is next looked at (`u64::MAX` if
    /// empty): by the time its earliest deadline is within `HORIZON`, and
    /// at most every `HORIZON / 2` (each look scans the whole list).
    overflow_next: u64,
    len: usize,
    /// Items found due while advancing, handed out one by one.
    due: Vec<Item<T>>,
}

impl<T: Copy> Default for TimerWheel<T> {
    fn default() -> Self {
        TimerWheel::new(0)
    }
}

impl<T: Copy> TimerWheel<T> {
    /// A wheel whose clock starts at `now` (ms).
    pub fn new(now: u64) -> TimerWheel<T> {
        TimerWheel {
            elapsed: now,
            occupied: [0; LEVELS],
            idle: [0; LEVELS],
            slots: (0..LEVELS * SLOTS).map(|_| Vec::new()).collect(),
            gens: Vec::new(),
            free: Vec::new(),
            overflow: Vec::new(),
            overflow_next: u64::MAX,
            len: 0,
            due: Vec::new(),
        }
    }

    /// Pending timers.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes held, by capacity: (slot records incl. the due list,
    /// generations and free indices), for the memory benches.
    pub fn heap_bytes(&self) -> (usize, usize) {
        let item = std::mem::size_of::<Item<T>>();
        let records = self.slots.iter().map(Vec::capacity).sum::<usize>() + self.due.capacity();
        let overflow = self.overflow.capacity() * std::mem::size_of::<(u64, Item<T>)>();
        let table = self.gens.capacity() * 4 + self.free.capacity() * 4;
        (
            records * item + overflow,
            table + self.slots.capacity() * std::mem::size_of::<Vec<Item<T>>>(),
        )
    }

    /// Arms a timer for `deadline` (ms). A deadline already past fires on
    /// the next [`TimerWheel::poll`].
    pub fn insert(&mut self, deadline: u64, value: T) -> TimerHandle {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                assert!(self.gens.len() < u32::MAX as usize, "timer table full");
                self.gens.push(1);
                (self.gens.len() - 1) as u32
            }
        };
        let gen = self.gens[index as usize];
        debug_assert!(gen & CANCELLED == 0, "a free index is not cancelled");
        self.arm_item(deadline, index, value);
        self.len += 1;
        TimerHandle {
            index,
            gen: std::num::NonZeroU32::new(gen).expect("generations skip 0"),
        }
    }

    /// Arms a timer that is never cancelled: it takes no handle index, so
    /// no generation (4 bytes) nor free-list entry. Its owner tells a
    /// superseded one apart by its value when it fires.
    pub fn insert_unhandled(&mut self, deadline: u64, value: T) {
        self.arm_item(deadline, UNHANDLED, value);
        self.len += 1;
    }

    /// Places a new timer: in the wheel if due within [`HORIZON`] of the
    /// clock, else in the overflow list. A past deadline is placed at the
    /// clock (it fires on the next poll, as before).
    fn arm_item(&mut self, deadline: u64, index: u32, value: T) {
        let deadline = deadline.max(self.elapsed);
        let item = Item {
            deadline: deadline as u32,
            index,
            value,
        };
        if deadline - self.elapsed < HORIZON {
            self.place(item);
        } else {
            self.overflow.push((deadline, item));
            self.overflow_next = self.overflow_next.min(deadline - (HORIZON - 1));
        }
    }

    /// A record's full deadline, from its low 32 bits and the clock: it is
    /// within `HORIZON` ahead of the clock, or (due, not yet handed out)
    /// a little behind it.
    fn deadline_of(&self, item: &Item<T>) -> u64 {
        let diff = item.deadline.wrapping_sub(self.elapsed as u32) as i32;
        self.elapsed.wrapping_add_signed(i64::from(diff))
    }

    /// The clock at which the overflow list must be looked at.
    fn overflow_due(&self) -> Option<u64> {
        (self.overflow_next != u64::MAX).then_some(self.overflow_next)
    }

    /// Moves the overflow timers now within `HORIZON` into the wheel.
    #[cold]
    fn drain_overflow(&mut self) {
        let mut min = u64::MAX;
        let mut i = 0;
        while i < self.overflow.len() {
            let (deadline, item) = self.overflow[i];
            if deadline.saturating_sub(self.elapsed) < HORIZON {
                self.overflow.swap_remove(i);
                self.place(item);
            } else {
                min = min.min(deadline);
                i += 1;
            }
        }
        // Every timer left is due at least `HORIZON` after the clock, so
        // either time is before its deadline, and the next look moves it.
        self.overflow_next = if self.overflow.is_empty() {
            u64::MAX
        } else {
            (min - (HORIZON - 1)).max(self.elapsed.saturating_add(HORIZON / 2))
        };
    }

    /// Disarms a timer; true if it was still pending. Its record stays in
    /// its slot, stale, until it comes due and is dropped.
    /// Its index stays taken, flagged, until then (the record names only
    /// its index).
    pub fn cancel(&mut self, h: TimerHandle) -> bool {
        let Some(g) = self.gens.get_mut(h.index as usize) else {
            return false;
        };
        if *g != h.gen.get() {
            return false;
        }
        // The handle goes stale at once: the flag makes the word differ
        // from every handle's generation.
        *g |= CANCELLED;
        self.len -= 1;
        true
    }

    /// When the next timer is due (ms), for the event loop's poll timeout.
    /// Exact for timers in level 0; for farther ones it is the time their
    /// slot must be looked at, which is never later than the deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        if !self.due.is_empty() {
            return Some(self.elapsed);
        }
        let wheel = self.next_expiration().map(|(_, _, at)| at);
        match (wheel, self.overflow_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The value of the timer `ahead` places after the next [`Self::poll`]
    /// would hand out, if it is already in the due list: a caller that
    /// touches memory per timer prefetches that far ahead. May name a timer
    /// that was cancelled.
    pub fn peek_due(&self, ahead: usize) -> Option<&T> {
        let i = self.due.len().checked_sub(ahead + 1)?;
        self.due.get(i).map(|item| &item.value)
    }

    /// Hands out one timer due at `now`, or `None` when none is; call until
    /// `None`. Advances the wheel's clock to `now`.
    pub fn poll(&mut self, now: u64) -> Option<(TimerHandle, T)> {
        loop {
            while let Some(item) = self.due.pop() {
                if item.index == UNHANDLED {
                    self.len -= 1;
                    let h = TimerHandle {
                        index: UNHANDLED,
                        gen: std::num::NonZeroU32::MIN,
                    };
                    return Some((h, item.value));
                }
                let gen = self.gens[item.index as usize];
                self.release(item.index);
                if gen & CANCELLED != 0 {
                    continue;
                }
                self.len -= 1;
                let h = TimerHandle {
                    index: item.index,
                    gen: std::num::NonZeroU32::new(gen).expect("generations skip 0"),
                };
                return Some((h, item.value));
            }
            let wheel = self.next_expiration();
            if let Some(at) = self.overflow_due() {
                if at <= now && wheel.is_none_or(|(_, _, w)| at < w) {
                    // No slot is due before `at`: the clock may move there.
                    self.elapsed = self.elapsed.max(at);
                    self.drain_overflow();
                    continue;
                }
            }
            match wheel {
                Some((level, slot, at)) if at <= now => {
                    self.elapsed = self.elapsed.max(at);
                    self.process_slot(level, slot);
                }
                _ => {
                    self.elapsed = self.elapsed.max(now);
                    return None;
                }
            }
        }
    }

    /// Empties one slot: due items go to the due list, the others move to
    /// the level their deadline now falls in.
    fn process_slot(&mut self, level: usize, slot: usize) {
        let k = level * SLOTS + slot;
        if level == 0 && self.due.is_empty() {
            // A level-0 slot spans one millisecond: all of it is due. It
            // becomes the due list, and the emptied due vector the slot's.
            std::mem::swap(&mut self.due, &mut self.slots[k]);
            self.occupied[0] &= !(1u64 << slot);
            self.mark_idle(0, slot);
            return;
        }
        let mut items = std::mem::take(&mut self.slots[k]);
        self.occupied[level] &= !(1u64 << slot);
        // No generation check here: a cancelled item cascades like a live
        // one and is dropped when it comes due, so cascading reads the slot
        // and nothing else.
        for &item in &items {
            if self.deadline_of(&item) <= self.elapsed {
                self.due.push(item);
            } else {
                self.place(item);
            }
        }
        // The vector goes back to its own slot: each slot keeps the capacity
        // its share of timers needs, so a steady load stops allocating once
        // the wheel has turned once.
        items.clear();
        let back = std::mem::replace(&mut self.slots[k], items);
        debug_assert!(
            back.is_empty(),
            "no deadline lands in the slot being emptied"
        );
        self.slots[k].extend_from_slice(&back);
        self.mark_idle(level, slot);
    }

    fn mark_idle(&mut self, level: usize, slot: usize) {
        if self.slots[level * SLOTS + slot].capacity() > 0 {
            self.idle[level] |= 1u64 << slot;
        } else {
            self.idle[level] &= !(1u64 << slot);
        }
    }

    /// The earliest non-empty slot over all levels: (level, slot, time).
    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        (0..LEVELS).find_map(|level| self.level_next(level).map(|(slot, at)| (level, slot, at)))
    }

    fn level_next(&self, level: usize) -> Option<(usize, u64)> {
        let occupied = self.occupied[level];
        if occupied == 0 {
            return None;
        }
        let slot_range = 1u64 << (6 * level);
        let level_range = slot_range << 6;
        let now_slot = ((self.elapsed >> (6 * level)) & 63) as u32;
        // Slots before the current one belong to the next rotation.
        let rotated = occupied.rotate_right(now_slot);
        let slot = ((rotated.trailing_zeros() + now_slot) % 64) as usize;
        let level_start = self.elapsed & !(level_range - 1);
        let mut at = level_start + slot as u64 * slot_range;
        if at < self.elapsed & !(slot_range - 1) {
            at += level_range;
        }
        Some((slot, at))
    }

    /// The level a deadline belongs in: the highest 6-bit group in which it
    /// differs from the wheel's clock.
    fn level_for(&self, deadline: u64) -> usize {
        let masked = (self.elapsed ^ deadline) | 63;
        // A deadline within `HORIZON` may still differ from the clock above
        // the top level when it crosses a 2^36 boundary: it goes to the top
        // level's next rotation.
        let masked = masked.min(MAX_DURATION);
        let significant = 63 - masked.leading_zeros() as usize;
        significant / 6
    }

    fn place(&mut self, item: Item<T>) {
        // Within `HORIZON` of the clock (or due), so well within the six
        // levels' range.
        let at = self.deadline_of(&item).max(self.elapsed);
        let level = self.level_for(at);
        let slot = ((at >> (6 * level)) & 63) as usize;
        if level == 0 && item.index != UNHANDLED {
            // It fires within 64 ms and firing reads its generation: at a
            // million timers the table is 4 MB and that read missed the
            // cache (60% of expire's time); fetch the line now, while
            // nothing waits on it.
            prefetch(&self.gens[item.index as usize]);
        }
        let k = level * SLOTS + slot;
        if self.slots[k].capacity() == 0 {
            self.adopt(level, slot);
        }
        self.slots[k].push(item);
        self.occupied[level] |= 1u64 << slot;
    }

    /// A slot without a vector (never filled yet, or it lent its own) takes
    /// that of an empty slot of its level, if one has capacity. Until a
    /// level has turned once, the slot that fills is never one that emptied:
    /// at a million timers a level-3 slot holds 262,144 records, and it grew
    /// 6 MB of fresh pages while another level-3 slot's vector sat idle.
    /// The `idle` bitmap finds a lender in O(1).
    #[cold]
    fn adopt(&mut self, level: usize, slot: usize) {
        let lenders = self.idle[level] & !self.occupied[level] & !(1u64 << slot);
        if lenders != 0 {
            let other = lenders.trailing_zeros() as usize;
            self.idle[level] &= !(1u64 << other);
            let v = std::mem::take(&mut self.slots[level * SLOTS + other]);
            debug_assert!(v.is_empty(), "an unoccupied slot holds nothing");
            self.slots[level * SLOTS + slot] = v;
        }
    }

    /// Frees an index once its record is gone; the generation bump makes
    /// its handle stale. Generations are 31 bits and skip 0.
    fn release(&mut self, index: u32) {
        let g = &mut self.gens[index as usize];
        *g = ((*g & !CANCELLED).wrapping_add(1) & !CANCELLED).max(1);
        self.free.push(index);
    }
}

/// Hints the CPU to fetch the cache line holding `r`.
#[inline(always)]
pub(crate) fn prefetch<U>(r: &U) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults and changes no
    // state the program can observe; `sse` is part of x86_64's baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (r as *const U).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(w: &mut TimerWheel<u32>, now: u64) -> Vec<u32> {
        let mut v = Vec::new();
        while let Some((_, x)) = w.poll(now) {
            v.push(x);
        }
        v.sort_unstable();
        v
    }

    #[test]
    fn peek_due_names_what_poll_hands_out_next() {
        let mut w = TimerWheel::new(0);
        for x in 0..5u32 {
            w.insert_unhandled(10, x);
        }
        assert_eq!(w.peek_due(0), None, "nothing due before the first poll");
        let first = w.poll(10).unwrap().1;
        let ahead: Vec<u32> = (0..5).filter_map(|k| w.peek_due(k).copied()).collect();
        assert_eq!(ahead.len(), 4);
        let mut rest = Vec::new();
        while let Some((_, x)) = w.poll(10) {
            rest.push(x);
        }
        assert_eq!(rest, ahead, "in poll order");
        assert!(!rest.contains(&first));
        assert_eq!(w.peek_due(0), None);
    }

    #[test]
    fn unhandled_timers_fire_in_order_beside_handled_ones() {
        let mut w = TimerWheel::new(0);
        w.insert_unhandled(300, 3);
        let h = w.insert(100, 1);
        w.insert_unhandled(200_000, 4);
        w.insert(250, 2);
        assert_eq!(w.len(), 4);
        assert!(w.gens.len() == 2, "unhandled timers take no generation");
        assert!(w.cancel(h));
        assert_eq!(drain(&mut w, 1_000), vec![2, 3]);
        assert_eq!(drain(&mut w, 300_000), vec![4]);
        assert!(w.is_empty());
    }

    #[test]
    fn a_record_is_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Item<kinds::Packed>>(), 16);
        assert_eq!(std::mem::size_of::<Item<(u32, u8)>>(), 16);
    }

    #[test]
    fn deadlines_past_the_horizon_wait_and_fire_exactly() {
        // Start near a 32-bit boundary of the clock so the low bits wrap.
        let start = (1u64 << 32) - 1_000;
        let mut w = TimerWheel::new(start);
        let far = start + HORIZON + 5_000;
        let h = w.insert(far, 1);
        w.insert(start + HORIZON - 1, 2);
        let c = w.insert(far + 1, 3);
        w.insert_unhandled(start + 3 * HORIZON, 4);
        assert_eq!(w.overflow.len(), 3);
        assert!(w.cancel(c));
        assert!(!w.cancel(c));
        let mut now = start;
        let mut fired = Vec::new();
        while let Some(at) = w.next_deadline() {
            assert!(at >= now, "deadlines move forward");
            now = at;
            while let Some((_, x)) = w.poll(now) {
                fired.push((now, x));
            }
        }
        assert_eq!(
            fired,
            vec![(start + HORIZON - 1, 2), (far, 1), (start + 3 * HORIZON, 4)]
        );
        assert!(!w.cancel(h));
        assert!(w.is_empty());
        assert!(w.overflow.is_empty());
    }

    #[test]
    fn the_overflow_list_is_scanned_at_most_every_half_horizon() {
        let mut w = TimerWheel::new(0);
        // A thousand timers spread over 2^30 ms past the horizon: each
        // comes within range at its own time, but the list is looked at a
        // few times, not a thousand.
        let at = |i: u64| HORIZON + 5 + (i << 20);
        for i in 0..1_000u64 {
            w.insert_unhandled(at(i), i as u32);
        }
        let (mut looks, mut fired) = (0, Vec::new());
        let mut left = w.overflow.len();
        while let Some(now) = w.next_deadline() {
            while let Some((_, x)) = w.poll(now) {
                assert_eq!(at(u64::from(x)), now, "fires at its deadline");
                fired.push(x);
            }
            if w.overflow.len() != left {
                looks += 1;
                left = w.overflow.len();
            }
        }
        assert_eq!(fired, (0..1_000).collect::<Vec<_>>());
        assert!(looks <= 3, "{looks} looks");
    }

    #[test]
    fn a_cancelled_index_is_reused_only_after_its_record_is_gone() {
        let mut w = TimerWheel::new(0);
        let a = w.insert(100, 1);
        assert!(w.cancel(a));
        // Not reused while a's record waits in its slot.
        let b = w.insert(50, 2);
        assert_ne!(a.index, b.index);
        assert_eq!(drain(&mut w, 100), vec![2]);
        // Both records gone: both indices free, and no handle answers.
        assert_eq!(w.free.len(), 2);
        assert!(!w.cancel(a) && !w.cancel(b));
        let c = w.insert(200, 3);
        assert!(!w.cancel(a));
        assert!(w.cancel(c));
        assert!(drain(&mut w, 300).is_empty());
    }

    #[test]
    fn an_optional_handle_is_eight_bytes() {
        assert_eq!(std::mem::size_of::<Option<TimerHandle>>(), 8);
    }

    #[test]
    fn fires_at_the_deadline_not_before() {
        let mut w = TimerWheel::new(1000);
        w.insert(1005, 1);
        w.insert(1000 + 64 * 64 + 3, 2);
        w.insert(1000 + 90_000_000, 3);
        assert!(drain(&mut w, 1004).is_empty());
        assert_eq!(drain(&mut w, 1005), vec![1]);
        assert!(drain(&mut w, 1000 + 64 * 64 + 2).is_empty());
        assert_eq!(drain(&mut w, 1000 + 64 * 64 + 3), vec![2]);
        assert!(drain(&mut w, 1000 + 89_999_999).is_empty());
        assert_eq!(drain(&mut w, 1000 + 90_000_000), vec![3]);
        assert!(w.is_empty());
    }

    #[test]
    fn deadlines_beyond_the_wheel_range_do_not_hang() {
        for far in [1u64 << 36, (1 << 36) + 12_345, u64::MAX] {
            let mut w = TimerWheel::new(0);
            w.insert(far, 1);
            w.insert(10, 2);
            assert_eq!(drain(&mut w, 10), vec![2]);
            // Walk the reported deadlines for a while: each poll returns.
            let mut now = 10;
            for _ in 0..200 {
                let Some(at) = w.next_deadline() else { break };
                assert!(at >= now, "deadlines move forward");
                now = at;
                let fired = drain(&mut w, now);
                assert!(fired.is_empty() || now >= far);
                if now > 1 << 38 {
                    break;
                }
            }
            // Still pending, or fired once its real deadline came.
            assert!(w.len() == 1 || now >= far);
        }
    }

    #[test]
    fn past_deadlines_fire_on_the_next_poll() {
        let mut w = TimerWheel::new(500);
        w.insert(10, 7);
        assert_eq!(w.next_deadline(), Some(500));
        assert_eq!(drain(&mut w, 500), vec![7]);
    }

    #[test]
    fn cancel_is_exact_and_handles_go_stale() {
        let mut w = TimerWheel::new(0);
        let a = w.insert(100, 1);
        let b = w.insert(100, 2);
        let c = w.insert(5000, 3);
        assert!(w.cancel(b));
        assert!(!w.cancel(b));
        assert_eq!(w.len(), 2);
        assert_eq!(drain(&mut w, 100), vec![1]);
        assert!(!w.cancel(a), "fired timers cannot be cancelled");
        // A reused slab slot does not answer to the old handle.
        let _d = w.insert(200, 4);
        assert!(!w.cancel(a));
        assert!(w.cancel(c));
        assert_eq!(drain(&mut w, 10_000), vec![4]);
    }

    #[test]
    fn next_deadline_is_never_late() {
        let mut w = TimerWheel::new(0);
        w.insert(70_000, 1);
        let nd = w.next_deadline().unwrap();
        assert!(nd <= 70_000);
        // Walking from one reported deadline to the next reaches the timer exactly.
        let mut now = 0;
        let mut fired = Vec::new();
        while let Some(at) = w.next_deadline() {
            now = at;
            fired.extend(drain(&mut w, now));
        }
        assert_eq!(fired, vec![1]);
        assert_eq!(now, 70_000);
    }

    #[test]
    fn a_filling_slot_adopts_an_idle_slots_vector() {
        let mut w = TimerWheel::new(0);
        // 100 timers in level 1, slot 2 (128..192 ms).
        for i in 0..100u32 {
            w.insert(130 + u64::from(i % 50), i);
        }
        assert_eq!(drain(&mut w, 200), (0..100).collect::<Vec<_>>());
        let idle = w.slots[SLOTS + 2].capacity();
        assert!(idle >= 100);
        // Level 1, slot 5 has never held anything: it takes that vector
        // instead of growing its own, and fires as usual.
        let h = w.insert(330, 7);
        w.insert(331, 8);
        assert_eq!(w.slots[SLOTS + 5].capacity(), idle);
        assert_eq!(w.slots[SLOTS + 2].capacity(), 0);
        assert!(w.cancel(h));
        assert!(drain(&mut w, 330).is_empty());
        assert_eq!(drain(&mut w, 331), vec![8]);
        assert!(w.is_empty());
    }

    #[test]
    fn cancel_after_cascade_and_rounds_on_lent_vectors() {
        let mut w = TimerWheel::new(0);
        for round in 0..3u64 {
            let base = round * 10_000;
            // Level 2 at insert (4096..8192 ms ahead), two per ms over 200 ms.
            let hs: Vec<_> = (0..400u32)
                .map(|i| w.insert(base + 5_000 + u64::from(i / 2), i))
                .collect();
            // Cascaded to level 1, then (for the first 64 ms) to level 0.
            assert!(drain(&mut w, base + 4_999).is_empty());
            assert!(w.slots[..SLOTS].iter().any(|v| !v.is_empty()));
            // Cancel every third, after the cascades.
            for h in hs.iter().step_by(3) {
                assert!(w.cancel(*h));
            }
            let want: Vec<u32> = (0..400).filter(|i| i % 3 != 0).collect();
            assert_eq!(drain(&mut w, base + 5_200), want, "round {round}");
            assert!(w.is_empty());
            // Cancelled records are gone too: nothing left in any slot.
            assert!(w.slots.iter().all(|v| v.is_empty()));
            assert_eq!(w.next_deadline(), None);
        }
    }

    /// Against a sorted reference: random inserts, cancels and advances.
    #[test]
    fn matches_a_reference_queue() {
        let mut rng = 0x1234_5678_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut w = TimerWheel::new(0);
        let mut reference: std::collections::BTreeMap<(u64, u32), TimerHandle> = Default::default();
        let mut now = 0u64;
        for id in 0..20_000u32 {
            match next() % 10 {
                0..=5 => {
                    let spread = [10, 1_000, 100_000, 10_000_000, 1 << 33][(next() % 5) as usize];
                    let deadline = now + next() % spread;
                    let h = w.insert(deadline, id);
                    reference.insert((deadline, id), h);
                }
                6 => {
                    if let Some((&k, &h)) = reference.iter().nth((next() % 16) as usize) {
                        assert!(w.cancel(h));
                        reference.remove(&k);
                    }
                }
                _ => {
                    // Now and then a long jump, past the horizon.
                    now += if next() % 50 == 0 {
                        next() % (1 << 32)
                    } else {
                        next() % 5_000
                    };
                    let mut got = drain(&mut w, now);
                    let mut want: Vec<u32> =
                        reference.range(..(now + 1, 0)).map(|(k, _)| k.1).collect();
                    reference.retain(|k, _| k.0 > now);
                    got.sort_unstable();
                    want.sort_unstable();
                    assert_eq!(got, want, "at {now}");
                }
            }
            assert_eq!(w.len(), reference.len());
            if let (Some(nd), Some(first)) = (w.next_deadline(), reference.keys().next()) {
                assert!(
                    nd <= first.0.max(now),
                    "next_deadline {nd} after the first deadline {}",
                    first.0
                );
            }
        }
    }
}
