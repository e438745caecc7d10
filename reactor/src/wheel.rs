//! A hierarchical timing wheel: the data structure behind each timer shard (module `timer`).
//!
//! No locking and no clock here: time is a tick count handed in by the caller, and every
//! operation is a plain `&mut self` method. The `timer` module puts one wheel under each shard's
//! mutex and converts `Instant`s to ticks.
//!
//! # Vocabulary
//!
//! * **tick**: the wheel's unit of time, [`TICK_NANOS`] (2^14 ns, 16.4 µs). A deadline is rounded
//!   *up* to a whole tick (its **when**), and a timer fires once the caller's `now`, rounded
//!   *down*, has reached its when: so it never fires early, and at most one tick late on top of
//!   whatever made the caller look late.
//! * **elapsed**: the tick up to which the wheel has processed time; it only moves forward.
//! * **level** `l` (0 to 5): 64 **slots** of 64^l ticks each. Level 0's slots are single ticks
//!   (1 ms in all), level 1's are 1 ms (67 ms in all), then 4.3 s, 4.6 min, 4.9 h, 13 days.
//! * **overflow**: a list for the few timers further away than the wheel reaches from elapsed
//!   (past the current 2^36-tick block, ~13 days), and for deadlines near `Instant`'s end.
//!
//! # Placement (tokio's and the Linux kernel's scheme; Go keeps a heap per P instead)
//!
//! A timer's level is the highest 6-bit digit in which its when differs from elapsed; its slot
//! is its when's digit at that level. So every timer of level `l` lies in the same 64^(l+1)-tick
//! block as elapsed, at a slot after elapsed's own digit (for `l > 0`), and the first level with
//! an occupied slot holds the earliest timer. A deadline already behind elapsed is placed at
//! elapsed (level 0, due at once). Timers live in one `Vec` of nodes; each slot is an array of
//! node indices in placement order, and each level has a 64-bit occupancy word:
//!
//! * **insert**: O(1) amortized: compute the level with one `leading_zeros`, push the node's
//!   index on the slot's array; the node records its slot and position.
//! * **cancel**: O(1) amortized: the key names the node, the node its position; the entry
//!   becomes a hole (so the others keep their positions and order). A slot whose holes
//!   outnumber its timers (and 32) is compacted; an emptied slot is cleared at once.
//! * **next expiration**: O(levels): the first level with an occupied slot at or after elapsed's
//!   digit (one shift and `trailing_zeros`). At level 0 it is the exact when of the slot's
//!   timers; at a higher level it is the slot's start, a lower bound.
//! * **poll(now)**: process expirations up to `now` in order. A level-0 slot fires as a batch:
//!   one pass over its array, with no comparison per timer. A higher slot **cascades**: elapsed
//!   moves to the slot's start and each of its timers is placed again, now at a lower level. A
//!   timer cascades at most five times in its life (once per level it passes), so firing is
//!   O(1) amortized per timer and the clock is read once per batch by the caller, not per
//!   timer. The overflow list is placed again once the levels are empty and `now` has reached
//!   the 2^36-tick block of its earliest timer: elapsed jumps to that block's start.
//!
//! Why arrays and not intrusive linked lists (tokio's, and this module's first version): with
//! 100k timers the nodes do not fit in cache, and walking a list is a chain of dependent
//! misses (the profile put 97% of the firing and cascading time on loading `next`). Walking an
//! array reads indices sequentially and touches the nodes independently, so the misses overlap.
//!
//! # Rejected
//!
//! * *The binary heap it replaces* (deadline, sequence, slot with lazy deletion): O(log n) sift
//!   per insert and per fire, and under 100k sleepers its pops and the comparisons they need were
//!   the largest single cost in the profile.
//! * *One flat hashed wheel with "rounds" counters* (Varghese's scheme 6): each expiry visits
//!   every timer of its slot to decrement the rounds, so far timers cost per lap.
//! * *Coarse ticks* (tokio's are 1 ms; this wheel's first were 131 µs): all the timers of a
//!   tick fall due at one instant, and between those instants nothing is due. A worker that
//!   runs dry then finds no due timer in its few microseconds of spinning, sleeps, and leaves
//!   the firing to the reactor, whose `epoll_wait` rounds up to the millisecond. Measured with
//!   1,000 greenlets looping on `sleep(200 µs)` on 2 workers: 131 µs ticks halved the sleeps
//!   per second against the heap (workers fired 30% of the timers instead of 90%). 16 µs ticks
//!   gave 1.2-1.5× the heap's rate there. Finer ticks cost cascades: at 1 µs a 100 ms sleeper
//!   cascades twice, and 100k sleepers took 7% more CPU than at 16 µs, where timers up to
//!   67 ms cascade once.
//!
//! # Order
//!
//! Timers fire in the order of their whens; timers of one tick fire together, in the order they
//! reached their level-0 slot (insertion order for timers placed there directly, but a timer
//! that cascaded comes after one inserted into the slot before the cascade). Cancels and
//! compaction keep that order.

use std::task::Waker;

/// Nanoseconds per tick, as a shift.
pub(crate) const TICK_SHIFT: u32 = 14;
/// Nanoseconds per tick: 16,384 (16.4 µs).
pub(crate) const TICK_NANOS: u64 = 1 << TICK_SHIFT;
/// Bits of a tick count per level.
const SLOT_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << SLOT_BITS;
/// Levels: 6 × 6 bits = 2^36 ticks reachable (~13 days).
const LEVELS: usize = 6;
/// Ticks the levels cover, as a shift: a timer differing from elapsed above this overflows.
const REACH_BITS: u32 = SLOT_BITS * LEVELS as u32;
/// The index of the overflow list (after the `LEVELS * SLOTS` slots).
const OVERFLOW: usize = LEVELS * SLOTS;
/// "No node": a cancelled entry in a slot.
const NIL: u32 = u32::MAX;
/// Nodes kept allocated once the wheel runs empty; beyond this a burst's memory is released.
const RETAIN_NODES: usize = 4096;

/// One timer (or a free node: `waker` is `None`).
struct Node {
    /// The tick at which it fires (its deadline rounded up, never before elapsed at insertion).
    when: u64,
    /// Stamped at insertion; a key must match it. Never repeats within a wheel.
    seq: u64,
    waker: Option<Waker>,
    /// Its position: the slot (or [`OVERFLOW`]) and the index in the slot's `ids`.
    list: u16,
    pos: u32,
}

/// A slot: the nodes placed in it, in placement order. Cancelled ones are left as [`NIL`]
/// (keeping the others' positions and order) until the slot is processed or compacted.
#[derive(Default)]
struct Slot {
    ids: Vec<u32>,
    /// Entries before this were fired already (a batch limit stopped in this slot).
    start: usize,
    /// `NIL` entries at or after `start`.
    dead: usize,
}

impl Slot {
    fn live(&self) -> usize {
        self.ids.len() - self.start - self.dead
    }

    fn clear(&mut self) {
        self.ids.clear();
        self.start = 0;
        self.dead = 0;
    }
}

/// A slot's cancelled entries are squeezed out once they outnumber its live ones and this.
const COMPACT_MIN: usize = 32;
/// A slot keeps at most this much capacity (entries) once the wheel runs empty.
const RETAIN_SLOT: usize = 1024;

/// What [`Wheel::poll`] found after filling its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Polled {
    /// The batch limit was reached with more timers due.
    More,
    /// Nothing more is due: holds the next expiration (a lower bound on the earliest pending
    /// when), or `None` if no timer is pending.
    Idle(Option<u64>),
}

/// The wheel: see the module documentation.
pub(crate) struct Wheel {
    nodes: Vec<Node>,
    free: Vec<u32>,
    slots: Box<[Slot]>,
    occupied: [u64; LEVELS],
    elapsed: u64,
    /// Lower bound on the whens in the overflow list (`u64::MAX` when it was last emptied).
    overflow_min: u64,
    live: usize,
    /// Next `seq`; starts at 1 so that a key with seq 0 matches nothing.
    next_seq: u64,
}

impl Wheel {
    /// An empty wheel at tick 0.
    pub(crate) fn new() -> Wheel {
        Wheel {
            nodes: Vec::new(),
            free: Vec::new(),
            slots: (0..=OVERFLOW).map(|_| Slot::default()).collect(),
            occupied: [0; LEVELS],
            elapsed: 0,
            overflow_min: u64::MAX,
            live: 0,
            next_seq: 1,
        }
    }

    /// Pending timers.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// The tick up to which time has been processed: every tick up to it has been seen by a
    /// caller of [`poll`](Self::poll), so it is never ahead of the clock.
    pub(crate) fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Adds a timer firing at tick `when` (at elapsed if `when` is behind it). Returns its key
    /// `(node, seq)`. O(1) amortized.
    ///
    /// # Panics
    ///
    /// With more than `u32::MAX - 1` timers pending (several hundred GiB of wakers).
    pub(crate) fn insert(&mut self, when: u64, waker: Waker) -> (u32, u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        let node = Node {
            when: when.max(self.elapsed),
            seq,
            waker: Some(waker),
            list: 0,
            pos: 0,
        };
        let idx = match self.free.pop() {
            Some(idx) => {
                self.nodes[idx as usize] = node;
                idx
            }
            None => {
                let idx = u32::try_from(self.nodes.len())
                    .ok()
                    .filter(|&idx| idx != NIL)
                    .expect("grove-reactor: more than u32::MAX - 1 pending timers");
                self.nodes.push(node);
                idx
            }
        };
        self.place(idx);
        self.live += 1;
        (idx, seq)
    }

    /// Cancels the timer `(node, seq)`: returns its waker if it was pending (neither fired nor
    /// cancelled), `None` otherwise. O(1) amortized.
    pub(crate) fn cancel(&mut self, node: u32, seq: u64) -> Option<Waker> {
        let n = self.nodes.get(node as usize)?;
        if n.seq != seq || n.waker.is_none() {
            return None;
        }
        let (list, pos) = (n.list as usize, n.pos as usize);
        let slot = &mut self.slots[list];
        slot.ids[pos] = NIL;
        slot.dead += 1;
        if slot.live() == 0 {
            self.empty_slot(list);
        } else if slot.dead > COMPACT_MIN && slot.dead > slot.live() {
            self.compact(list);
        }
        Some(self.release(node))
    }

    /// A lower bound on the earliest pending when (exact if that timer sits in level 0), or
    /// `None` if no timer is pending. O(levels).
    pub(crate) fn next_expiration(&self) -> Option<u64> {
        self.next_slot().map(|(_, tick)| tick)
    }

    /// Moves the wakers of up to `limit` timers whose when is `<= now` into `out`, in order of
    /// their whens, and advances elapsed to `now` once nothing more is due.
    pub(crate) fn poll(&mut self, now: u64, out: &mut Vec<Waker>, limit: usize) -> Polled {
        let mut fired = 0;
        loop {
            let Some((list, tick)) = self.next_slot() else {
                self.elapsed = self.elapsed.max(now);
                self.release_memory_if_idle();
                return Polled::Idle(None);
            };
            if tick > now {
                // Everything up to `now` is processed: every remaining timer lies after `now`
                // in elapsed's blocks, so moving elapsed there keeps the placement invariant.
                self.elapsed = self.elapsed.max(now);
                return Polled::Idle(Some(tick));
            }
            self.elapsed = self.elapsed.max(tick);
            if list < SLOTS {
                // A level-0 slot: every timer in it is due at `tick <= now`. Fire the batch:
                // one pass over the slot's array, each node's waker taken independently.
                loop {
                    let slot = &mut self.slots[list];
                    let Some(&idx) = slot.ids.get(slot.start) else {
                        break;
                    };
                    if fired == limit {
                        // The rest stays in the slot, which stays occupied.
                        return Polled::More;
                    }
                    slot.start += 1;
                    if idx == NIL {
                        slot.dead -= 1;
                        continue;
                    }
                    debug_assert!(self.nodes[idx as usize].when <= now, "early fire");
                    out.push(self.release(idx));
                    fired += 1;
                }
                self.empty_slot(list);
            } else {
                // A higher slot (or the overflow list) is reached: place its timers again,
                // relative to the new elapsed, in slot order. None lands back in this slot.
                let mut ids = std::mem::take(&mut self.slots[list].ids);
                let start = self.slots[list].start;
                self.empty_slot(list);
                for &idx in &ids[start..] {
                    if idx != NIL {
                        self.place(idx);
                    }
                }
                if self.slots[list].ids.is_empty() {
                    ids.clear();
                    self.slots[list].ids = ids; // keep the capacity
                }
            }
        }
    }

    /// Takes every pending waker (shutdown) and empties the wheel.
    pub(crate) fn drain(&mut self, out: &mut Vec<Waker>) {
        out.extend(self.nodes.drain(..).filter_map(|node| node.waker));
        self.free.clear();
        for slot in self.slots.iter_mut() {
            *slot = Slot::default();
        }
        self.occupied = [0; LEVELS];
        self.overflow_min = u64::MAX;
        self.live = 0;
    }

    /// The list a timer firing at `when` belongs in (`when >= elapsed`).
    fn list_for(&self, when: u64) -> usize {
        let masked = (self.elapsed ^ when) | (SLOTS as u64 - 1);
        let significant = 63 - masked.leading_zeros();
        let level = (significant / SLOT_BITS) as usize;
        if level >= LEVELS {
            return OVERFLOW;
        }
        level * SLOTS + ((when >> (level as u32 * SLOT_BITS)) as usize & (SLOTS - 1))
    }

    /// The first occupied list in time order and the tick at which to process it.
    fn next_slot(&self) -> Option<(usize, u64)> {
        for level in 0..LEVELS {
            let occupied = self.occupied[level];
            if occupied == 0 {
                continue;
            }
            let shift = level as u32 * SLOT_BITS;
            let digit = (self.elapsed >> shift) as u32 & (SLOTS as u32 - 1);
            debug_assert_eq!(
                occupied & ((1u64 << digit) - 1),
                0,
                "a level-{level} slot behind elapsed"
            );
            let slot = digit + (occupied >> digit).trailing_zeros();
            // The start of `slot` within elapsed's 64^(level+1) block.
            let block = shift + SLOT_BITS;
            let base = if block >= 64 {
                0
            } else {
                (self.elapsed >> block) << block
            };
            let tick = base | (u64::from(slot) << shift);
            return Some((level * SLOTS + slot as usize, tick));
        }
        if self.slots[OVERFLOW].live() == 0 {
            return None;
        }
        // The levels are empty: elapsed may jump to the start of the 2^36-tick block of the
        // earliest overflow timer (a later block than elapsed's, or it would not overflow),
        // where that timer fits the levels.
        Some((OVERFLOW, (self.overflow_min >> REACH_BITS) << REACH_BITS))
    }

    /// Appends node `idx` to the slot its when belongs in.
    fn place(&mut self, idx: u32) {
        let when = self.nodes[idx as usize].when;
        let list = self.list_for(when);
        let slot = &mut self.slots[list];
        let pos = slot.ids.len();
        slot.ids.push(idx);
        let node = &mut self.nodes[idx as usize];
        node.list = list as u16;
        node.pos = pos as u32;
        if list < OVERFLOW {
            self.occupied[list / SLOTS] |= 1 << (list % SLOTS);
        } else {
            self.overflow_min = self.overflow_min.min(when);
        }
    }

    /// Marks slot `list` empty (its entries were fired, placed again or cancelled).
    fn empty_slot(&mut self, list: usize) {
        self.slots[list].clear();
        if list < OVERFLOW {
            self.occupied[list / SLOTS] &= !(1 << (list % SLOTS));
        } else {
            self.overflow_min = u64::MAX;
        }
    }

    /// Squeezes the cancelled entries out of slot `list`, keeping the order of the others.
    fn compact(&mut self, list: usize) {
        let slot = &mut self.slots[list];
        let ids: Vec<u32> = slot.ids[slot.start..]
            .iter()
            .copied()
            .filter(|&idx| idx != NIL)
            .collect();
        for (pos, &idx) in ids.iter().enumerate() {
            self.nodes[idx as usize].pos = pos as u32;
        }
        let slot = &mut self.slots[list];
        slot.ids = ids;
        slot.start = 0;
        slot.dead = 0;
    }

    /// Frees a node that left its slot and returns its waker.
    fn release(&mut self, idx: u32) -> Waker {
        let waker = self.nodes[idx as usize]
            .waker
            .take()
            .expect("a placed node has a waker");
        self.free.push(idx);
        self.live -= 1;
        waker
    }

    /// Gives back a past burst's memory once no timer is pending. Old keys stay harmless: their
    /// node is out of range, or reused under a different `seq`.
    fn release_memory_if_idle(&mut self) {
        if self.live != 0 {
            return;
        }
        if self.nodes.len() > RETAIN_NODES {
            self.nodes = Vec::new();
            self.free = Vec::new();
        }
        for slot in self.slots.iter_mut() {
            if slot.ids.capacity() > RETAIN_SLOT {
                slot.ids = Vec::new();
            }
        }
    }
}

#[cfg(all(test, not(grove_loom)))]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::task::Wake;

    use super::*;

    /// Logs its id when woken.
    struct Tagged(u64, Arc<Mutex<Vec<u64>>>);

    impl Wake for Tagged {
        fn wake(self: Arc<Self>) {
            self.1.lock().unwrap().push(self.0);
        }
    }

    /// A wheel whose timers log their ids; ids are the whens unless given.
    struct Fixture {
        wheel: Wheel,
        log: Arc<Mutex<Vec<u64>>>,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                wheel: Wheel::new(),
                log: Arc::default(),
            }
        }

        fn add(&mut self, id: u64, when: u64) -> (u32, u64) {
            let waker = Waker::from(Arc::new(Tagged(id, self.log.clone())));
            self.wheel.insert(when, waker)
        }

        /// Polls at `now` in batches of `limit` until idle; wakes and returns the ids fired.
        fn poll(&mut self, now: u64, limit: usize) -> (Vec<u64>, Option<u64>) {
            let mut out = Vec::new();
            let next = loop {
                if let Polled::Idle(next) = self.wheel.poll(now, &mut out, limit) {
                    break next;
                }
            };
            out.into_iter().for_each(Waker::wake);
            (std::mem::take(&mut *self.log.lock().unwrap()), next)
        }
    }

    /// A xorshift64 stream for the randomized comparison with a sorted model.
    fn rng(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn fires_in_order_across_every_level_never_early() {
        let mut f = Fixture::new();
        // One timer per level (and an overflow one), inserted out of order.
        let whens = [
            5,
            64 * 3 + 7,
            64u64.pow(2) * 5 + 9,
            64u64.pow(3) * 2 + 1,
            64u64.pow(4) + 3,
            64u64.pow(5) * 7 + 11,
            1 << 37,
        ];
        for &when in whens.iter().rev() {
            f.add(when, when);
        }
        let mut fired = Vec::new();
        for &when in &whens {
            // Just before: nothing; the next expiration never later than the when.
            let (early, next) = f.poll(when - 1, 7);
            assert!(early.is_empty(), "{early:?} fired before {when}");
            assert!(next.is_some_and(|next| next <= when));
            let (due, _) = f.poll(when, 7);
            assert_eq!(due, [when]);
            fired.extend(due);
        }
        assert_eq!(fired, whens);
        assert_eq!(f.wheel.len(), 0);
        assert_eq!(f.poll(u64::MAX / 2, 7), (vec![], None));
    }

    #[test]
    fn a_slot_fires_as_a_batch_in_order_and_respects_the_limit() {
        let mut f = Fixture::new();
        for id in 0..10 {
            f.add(id, 100);
        }
        f.add(10, 101);
        let mut out = Vec::new();
        assert_eq!(f.wheel.poll(100, &mut out, 4), Polled::More);
        assert_eq!(f.wheel.poll(100, &mut out, 4), Polled::More);
        assert_eq!(f.wheel.poll(100, &mut out, 4), Polled::Idle(Some(101)));
        assert_eq!(out.len(), 10);
        out.into_iter().for_each(Waker::wake);
        assert_eq!(*f.log.lock().unwrap(), (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn matches_a_sorted_model_under_random_inserts_cancels_and_polls() {
        let mut next = rng(0x2545_F491_4F6C_DD1D);
        let mut f = Fixture::new();
        // (when, id, key) of the timers still pending in the model.
        let mut model: Vec<(u64, u64, (u32, u64))> = Vec::new();
        let mut now = 0u64;
        for id in 0..20_000u64 {
            match next() % 8 {
                0..=3 => {
                    // Spread over every level: 1 tick to ~2^30 ticks ahead, some in the past.
                    let span = 1u64 << (next() % 31);
                    let when = (now + next() % span).saturating_sub(next() % 4);
                    let key = f.add(id, when);
                    model.push((when.max(f.wheel.elapsed()), id, key));
                }
                4 if !model.is_empty() => {
                    let i = (next() % model.len() as u64) as usize;
                    let (_, _, key) = model.swap_remove(i);
                    assert!(f.wheel.cancel(key.0, key.1).is_some());
                    assert!(f.wheel.cancel(key.0, key.1).is_none(), "cancelled twice");
                }
                _ => {
                    now += next() % (1 << (next() % 24));
                    let (fired, expiration) = f.poll(now, 1 + (next() % 300) as usize);
                    let mut due: Vec<_> = model.iter().filter(|t| t.0 <= now).collect();
                    due.sort_by_key(|t| t.0);
                    let mut fired_whens: Vec<u64> = fired
                        .iter()
                        .map(|id| model.iter().find(|t| t.1 == *id).unwrap().0)
                        .collect();
                    assert!(fired_whens.windows(2).all(|w| w[0] <= w[1]), "out of order");
                    fired_whens.sort_unstable();
                    let due_whens: Vec<u64> = due.iter().map(|t| t.0).collect();
                    assert_eq!(fired_whens, due_whens, "fired set at {now}");
                    model.retain(|t| t.0 > now);
                    let earliest = model.iter().map(|t| t.0).min();
                    match (expiration, earliest) {
                        (None, None) => {}
                        (Some(e), Some(m)) => assert!(e <= m && e > now, "expiration {e}"),
                        other => panic!("expiration vs model: {other:?}"),
                    }
                }
            }
            assert_eq!(f.wheel.len(), model.len());
        }
    }

    #[test]
    fn cancel_in_every_state() {
        let mut f = Fixture::new();
        // Pending at level 0, at level 2, in the overflow list: cancel works, once.
        for when in [3, 64 * 64 * 9, 1 << 40] {
            let key = f.add(when, when);
            assert!(f.wheel.cancel(key.0, key.1).is_some());
            assert!(f.wheel.cancel(key.0, key.1).is_none());
        }
        // After it cascaded to level 0.
        let key = f.add(1, 64 * 5 + 2);
        assert_eq!(f.poll(64 * 5, 8).0, []);
        assert!(f.wheel.cancel(key.0, key.1).is_some());
        // After it fired; and its node reused by another timer: the old key stays dead.
        let key = f.add(2, 64 * 6);
        assert_eq!(f.poll(64 * 6, 8).0, [2]);
        assert!(f.wheel.cancel(key.0, key.1).is_none());
        let reuse = f.add(3, 64 * 7);
        assert_eq!(reuse.0, key.0, "the node is reused");
        assert!(f.wheel.cancel(key.0, key.1).is_none());
        // Unknown nodes and seq 0.
        assert!(f.wheel.cancel(NIL - 1, 1).is_none());
        assert!(f.wheel.cancel(reuse.0, 0).is_none());
        assert!(f.wheel.cancel(reuse.0, reuse.1).is_some());
        assert_eq!(f.wheel.len(), 0);
        assert_eq!(f.poll(1 << 41, 8), (vec![], None));
    }

    #[test]
    fn cancel_from_the_middle_keeps_the_slot_list_whole() {
        let mut f = Fixture::new();
        let keys: Vec<_> = (0..5).map(|id| f.add(id, 40)).collect();
        for i in [2, 0, 4] {
            assert!(f.wheel.cancel(keys[i].0, keys[i].1).is_some());
        }
        assert_eq!(f.poll(40, 8).0, [1, 3]);
    }

    #[test]
    fn compaction_after_a_partial_batch_keeps_order_and_positions() {
        let mut f = Fixture::new();
        let keys: Vec<_> = (0..200).map(|id| f.add(id, 50)).collect();
        let mut out = Vec::new();
        assert_eq!(f.wheel.poll(50, &mut out, 3), Polled::More);
        out.into_iter().for_each(Waker::wake);
        // Holes soon outnumber the timers left: the slot is compacted on the way.
        for (id, key) in keys.iter().enumerate().skip(3) {
            if id % 5 != 0 {
                assert!(f.wheel.cancel(key.0, key.1).is_some());
            }
        }
        let slot = &f.wheel.slots[50];
        assert!(slot.ids.len() - slot.start < 100, "not compacted");
        // Positions were renumbered: a cancel after compaction hits the right entry.
        assert!(f.wheel.cancel(keys[10].0, keys[10].1).is_some());
        let mut expected: Vec<u64> = vec![0, 1, 2, 5];
        expected.extend((15..200).step_by(5));
        assert_eq!(f.poll(50, 7).0, expected);
        assert_eq!(f.wheel.len(), 0);
    }

    #[test]
    fn a_deadline_in_the_past_fires_at_the_next_poll() {
        let mut f = Fixture::new();
        f.add(0, 1000);
        assert_eq!(f.poll(5000, 8).0, [0]);
        assert_eq!(f.wheel.elapsed(), 5000);
        f.add(1, 10);
        assert_eq!(f.wheel.next_expiration(), Some(5000));
        // A stale `now` (a worker that read the clock before another advanced the wheel)
        // neither fires nor moves elapsed back.
        assert_eq!(f.poll(4000, 8), (vec![], Some(5000)));
        assert_eq!(f.wheel.elapsed(), 5000);
        assert_eq!(f.poll(5000, 8).0, [1]);
    }

    #[test]
    fn far_future_and_end_of_time_deadlines_wait_in_the_overflow() {
        let mut f = Fixture::new();
        let far = (1u64 << 36) * 3 + 77;
        f.add(far, far);
        f.add(u64::MAX, u64::MAX);
        // The overflow is looked at when elapsed reaches the earliest overflow timer's block.
        assert_eq!(f.wheel.next_expiration(), Some(3 << 36));
        assert_eq!(f.poll(far - 1, 8), (vec![], Some(far)));
        assert_eq!(f.poll(far, 8).0, [far]);
        // The end-of-time timer never fires, and elapsed near the end does not overflow.
        assert_eq!(f.poll(u64::MAX - 1, 8).0, Vec::<u64>::new());
        assert_eq!(f.wheel.len(), 1);
        assert_eq!(f.poll(u64::MAX, 8).0, [u64::MAX]);
    }

    #[test]
    fn a_timer_inserted_just_past_a_block_boundary_is_not_kept_far() {
        let mut f = Fixture::new();
        // Elapsed just before a 2^36 boundary; the when just after it differs in bit 36, so it
        // overflows, but its expiration is the boundary itself: never late by a block.
        let boundary = 1u64 << 36;
        assert_eq!(f.poll(boundary - 2, 8).0, Vec::<u64>::new());
        f.add(1, boundary + 3);
        assert_eq!(f.wheel.next_expiration(), Some(boundary));
        assert_eq!(f.poll(boundary + 2, 8), (vec![], Some(boundary + 3)));
        assert_eq!(f.poll(boundary + 3, 8).0, [1]);
    }

    #[test]
    fn drain_hands_back_everything_and_memory_is_released_when_idle() {
        let mut f = Fixture::new();
        for id in 0..(2 * RETAIN_NODES as u64) {
            f.add(id, id % 1000);
        }
        let (fired, next) = f.poll(1000, 64);
        assert_eq!((fired.len(), next), (2 * RETAIN_NODES, None));
        assert_eq!(f.wheel.nodes.capacity(), 0);
        for id in 0..3 {
            f.add(id, 1 << 40);
        }
        let mut out = Vec::new();
        f.wheel.drain(&mut out);
        assert_eq!((out.len(), f.wheel.len()), (3, 0));
        assert_eq!(f.wheel.next_expiration(), None);
    }
}
