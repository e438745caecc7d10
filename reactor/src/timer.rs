//! Timers: a slab of pending wakers plus a binary heap of deadlines with lazy deletion.
//!
//! * `insert` is O(log n): push `(deadline, seq, slot)` on the heap, store the waker in a slab
//!   slot stamped with the same `seq`.
//! * `cancel` is O(1) amortized: take the waker out of the slot. The heap entry stays behind as
//!   garbage; it is recognised when popped (its `seq` no longer matches a pending slot) and
//!   discarded. When garbage outnumbers live entries the heap is rebuilt in O(n), which the
//!   `n / 2` cancels that produced the garbage pay for.
//! * `fire_due` pops due entries in `(deadline, seq)` order — timers with equal deadlines fire in
//!   insertion order — and records the deadline the reactor will sleep until ("planned wake").
//!
//! `seq` is a 64-bit counter that never repeats, so a [`TimerKey`] can never cancel a later timer
//! that happens to reuse its slot.
//!
//! # Planned wake
//!
//! The reactor sleeps in `mio::Poll::poll` until the earliest deadline. A timer inserted from
//! another thread with an earlier deadline must interrupt that sleep (a `mio::Waker` write, one
//! syscall); any other insert must not. The planned wake is kept *inside* the mutex rather than
//! in a separate atomic, because `insert` already holds the lock: the comparison is free and
//! needs no memory-ordering argument. The protocol (steps T1–T3):
//!
//! 1. T1 (reactor, under the lock): fire what is due, then set `planned = earliest live
//!    deadline` (or "none" if no timer is pending), then sleep until `planned` at the latest.
//! 2. T2 (any thread, under the lock): insert; if `deadline < planned`, set `planned = deadline`
//!    and return `notify = true`; the caller then wakes the reactor, after unlocking.
//! 3. T3: the lock totally orders T1 and T2. If T2 came first, T1's scan sees the new timer. If T1
//!    came first, T2 sees the `planned` that T1 will sleep until and notifies if it is too late.
//!    Setting `planned = deadline` in T2 makes later, less urgent inserts skip the syscall: the
//!    reactor is about to wake and rescan anyway. While the reactor is between a batch and the
//!    next scan (`Due::More`), `planned` is "now", so inserts during a firing burst stay silent.
//!
//! The loom model `insert_during_firing_burst_is_never_overslept` checks T3, including the
//! `Due::More` case.
//!
//! A cancelled timer may leave the reactor planning an earlier wake than needed; it then wakes
//! once, finds nothing due, and plans again. That is cheaper than making `cancel` notify.
//!
//! # Workers fire too
//!
//! A worker that harvests events also fires what is due, a batch at a time, so a timer whose
//! greenlet lives on that worker is woken with a local push instead of a hop through the reactor
//! thread. Two things keep this cheap and keep T3 true:
//!
//! * **The due hint**: an atomic copy of the earliest deadline in the heap (possibly a cancelled
//!   one, so never later than the truth), updated under the lock by every insert and scan. A
//!   worker takes the lock only when the hint says something is due: one relaxed load and a
//!   clock read otherwise.
//! * **A worker's scan never touches `planned`** ([`TimerQueue::fire_due_by_worker`]). The
//!   reactor sleeps until what *its* last scan planned (or earlier, if notified); inserts compare
//!   against `planned`, which only the reactor's scans raise. A worker's scan only removes
//!   timers, which can make the reactor wake early and find nothing, never late. (Had a worker's
//!   `Due::More` set `planned = now` as the reactor's does, an insert after it would stay silent
//!   while the reactor slept on towards its older, later plan.)

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::fmt;
use std::task::Waker;
use std::time::Instant;

use crate::loom::{lock, AtomicU64, Mutex, Ordering};

/// Identifies one timer for [`Handle::cancel_timer`](crate::Handle::cancel_timer).
///
/// Keys are never reused: cancelling with a key whose timer fired or was cancelled is a no-op
/// that returns `false`, even if another timer now occupies the same slot.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TimerKey {
    slot: u32,
    seq: u64,
}

impl TimerKey {
    /// A key that names no timer (returned when the timer fired before `add_timer` returned).
    pub(crate) const DEAD: TimerKey = TimerKey {
        slot: u32::MAX,
        seq: 0,
    };

    /// The key as one integer, for layers that store keys without knowing this type
    /// (the scheduler's `Timers` hook).
    pub fn to_raw(self) -> u128 {
        (u128::from(self.slot) << 64) | u128::from(self.seq)
    }

    /// The key back from [`to_raw`](Self::to_raw). Any value is safe to pass to
    /// `cancel_timer`: a key that names no live timer (wrong slot or sequence) is a no-op.
    pub fn from_raw(raw: u128) -> TimerKey {
        TimerKey {
            slot: (raw >> 64) as u32,
            seq: raw as u64,
        }
    }
}

/// What [`TimerQueue::insert`] did.
#[must_use]
#[derive(Debug)]
pub enum Insert {
    /// The timer is pending. If `notify`, its deadline is earlier than the reactor's planned
    /// wake: the caller must wake the reactor (after `insert` returned, i.e. outside the lock).
    Queued {
        /// Cancels the timer.
        key: TimerKey,
        /// Whether the reactor must be interrupted.
        notify: bool,
    },
    /// The queue is shut down; the waker is handed back for the caller to wake.
    ShutDown(Waker),
}

/// What [`TimerQueue::fire_due`] found after filling its batch.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// The batch limit was reached with more timers due; wake the batch and call again.
    More,
    /// No more timers are due. Holds the earliest pending deadline, now the planned wake.
    Idle(Option<Instant>),
}

/// A slab slot. `waker` is `Some` exactly while the timer stamped `seq` is pending.
struct Slot {
    seq: u64,
    waker: Option<Waker>,
}

/// A heap entry; stale once its slot's `seq` differs or its slot's waker is gone.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Entry {
    deadline: Instant,
    seq: u64,
    slot: u32,
}

impl Ord for Entry {
    fn cmp(&self, other: &Entry) -> CmpOrdering {
        // Reversed: `BinaryHeap` is a max-heap and we want the earliest (deadline, seq) on top.
        (other.deadline, other.seq).cmp(&(self.deadline, self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Entry) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

/// Do not bother compacting heaps smaller than this.
const COMPACT_MIN: usize = 64;

/// Slots kept allocated when the queue runs empty; beyond this a burst's memory is released.
const RETAIN_SLOTS: usize = 4096;

struct State {
    slots: Vec<Slot>,
    free: Vec<u32>,
    heap: BinaryHeap<Entry>,
    /// Number of pending timers (slots with a waker).
    live: usize,
    /// Next `seq`; starts at 1 so that `TimerKey::DEAD` (seq 0) matches nothing.
    next_seq: u64,
    /// The deadline the reactor sleeps until; `None`: it sleeps until I/O or a notification.
    planned: Option<Instant>,
    shut_down: bool,
}

impl State {
    fn is_live(&self, entry: &Entry) -> bool {
        let slot = &self.slots[entry.slot as usize];
        slot.seq == entry.seq && slot.waker.is_some()
    }

    /// Takes the waker of a pending timer and frees its slot.
    fn take(&mut self, slot: u32) -> Option<Waker> {
        let waker = self.slots[slot as usize].waker.take()?;
        self.free.push(slot);
        self.live -= 1;
        Some(waker)
    }

    /// Gives back the memory of a past burst once no timer is pending. Old keys stay harmless:
    /// their slot is out of range, or reused under a different `seq`.
    fn release_memory_if_idle(&mut self) {
        if self.live == 0 && self.slots.len() > RETAIN_SLOTS {
            self.slots = Vec::new();
            self.free = Vec::new();
            self.heap = BinaryHeap::new();
        }
    }

    /// Rebuilds the heap without stale entries once they outnumber live ones.
    fn maybe_compact(&mut self) {
        if self.heap.len() > COMPACT_MIN && self.heap.len() > 2 * self.live {
            let State { slots, heap, .. } = self;
            heap.retain(|entry| {
                let slot = &slots[entry.slot as usize];
                slot.seq == entry.seq && slot.waker.is_some()
            });
        }
    }
}

/// The reactor's timers, shared by the reactor thread and every thread that adds or cancels.
pub struct TimerQueue {
    state: Mutex<State>,
    /// Nanoseconds from `epoch` to the earliest deadline in the heap (`u64::MAX`: none); see
    /// "Workers fire too". Written under the lock, read without it.
    due_hint: AtomicU64,
    epoch: Instant,
}

impl TimerQueue {
    /// An empty queue with no planned wake.
    pub fn new() -> TimerQueue {
        TimerQueue {
            state: Mutex::new(State {
                slots: Vec::new(),
                free: Vec::new(),
                heap: BinaryHeap::new(),
                live: 0,
                next_seq: 1,
                planned: None,
                shut_down: false,
            }),
            due_hint: AtomicU64::new(u64::MAX),
            epoch: Instant::now(),
        }
    }

    /// `at` as nanoseconds since `epoch`, saturating (an instant before it is 0).
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// Records the heap's earliest entry as the due hint (under the lock).
    fn update_hint(&self, st: &State) {
        let hint = st
            .heap
            .peek()
            .map_or(u64::MAX, |top| self.nanos(top.deadline));
        self.due_hint.store(hint, Ordering::Release);
    }

    /// The due hint as an instant: never later than the earliest live deadline; `None` if no
    /// timer is pending.
    pub fn due_hint(&self) -> Option<Instant> {
        match self.due_hint.load(Ordering::Acquire) {
            u64::MAX => None,
            nanos => self
                .epoch
                .checked_add(std::time::Duration::from_nanos(nanos)),
        }
    }

    /// True if a timer may be due at `now`: one atomic load, no lock. Never false while a live
    /// timer is due (the hint is never later than the earliest live deadline).
    pub fn maybe_due(&self, now: Instant) -> bool {
        self.due_hint.load(Ordering::Acquire) <= self.nanos(now)
    }

    /// Adds a timer (protocol step T2). O(log n).
    pub fn insert(&self, deadline: Instant, waker: Waker) -> Insert {
        let mut st = lock(&self.state);
        if st.shut_down {
            return Insert::ShutDown(waker);
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let slot = match st.free.pop() {
            Some(slot) => {
                st.slots[slot as usize] = Slot {
                    seq,
                    waker: Some(waker),
                };
                slot
            }
            None => {
                let slot = u32::try_from(st.slots.len())
                    .ok()
                    .filter(|&slot| slot != u32::MAX)
                    .expect("grove-reactor: more than u32::MAX - 1 pending timers");
                st.slots.push(Slot {
                    seq,
                    waker: Some(waker),
                });
                slot
            }
        };
        st.heap.push(Entry {
            deadline,
            seq,
            slot,
        });
        st.live += 1;
        let at = self.nanos(deadline);
        if at < self.due_hint.load(Ordering::Relaxed) {
            self.due_hint.store(at, Ordering::Release);
        }
        let notify = st.planned.is_none_or(|planned| deadline < planned);
        if notify {
            st.planned = Some(deadline);
        }
        Insert::Queued {
            key: TimerKey { slot, seq },
            notify,
        }
    }

    /// Cancels a pending timer. Returns `true` if it had neither fired nor been cancelled; its
    /// waker is then dropped without being woken. O(1) amortized.
    pub fn cancel(&self, key: TimerKey) -> bool {
        let waker = {
            let mut st = lock(&self.state);
            match st.slots.get(key.slot as usize) {
                Some(slot) if slot.seq == key.seq => {}
                _ => return false,
            }
            let waker = st.take(key.slot);
            if waker.is_some() {
                st.maybe_compact();
            }
            waker
        };
        // Dropped outside the lock: a waker's drop may run arbitrary code.
        waker.is_some()
    }

    /// Moves the wakers of up to `limit` timers with `deadline <= now` into `out`, earliest
    /// first (protocol step T1). The caller wakes them after this returns (outside the lock).
    pub fn fire_due(&self, now: Instant, out: &mut Vec<Waker>, limit: usize) -> Due {
        self.fire(now, out, limit, true)
    }

    /// A worker's scan ("Workers fire too"): like [`fire_due`](Self::fire_due), but leaves the
    /// reactor's planned wake alone. Returns how many it moved into `out`.
    pub fn fire_due_by_worker(&self, now: Instant, out: &mut Vec<Waker>, limit: usize) -> usize {
        let before = out.len();
        let _ = self.fire(now, out, limit, false);
        out.len() - before
    }

    fn fire(&self, now: Instant, out: &mut Vec<Waker>, limit: usize, plan: bool) -> Due {
        let mut st = lock(&self.state);
        let mut fired = 0;
        let due = loop {
            let Some(&top) = st.heap.peek() else {
                if plan {
                    st.planned = None;
                }
                st.release_memory_if_idle();
                break Due::Idle(None);
            };
            if !st.is_live(&top) {
                // Garbage left by `cancel`: discard it so the planned wake is a live deadline.
                st.heap.pop();
                continue;
            }
            if top.deadline > now {
                if plan {
                    st.planned = Some(top.deadline);
                }
                break Due::Idle(Some(top.deadline));
            }
            if fired == limit {
                // The reactor rescans before sleeping, so inserts meanwhile need not notify.
                if plan {
                    st.planned = Some(now);
                }
                break Due::More;
            }
            st.heap.pop();
            if let Some(waker) = st.take(top.slot) {
                out.push(waker);
                fired += 1;
            }
        };
        self.update_hint(&st);
        due
    }

    /// Shuts the queue down: moves every pending waker into `out` (to be woken by the caller)
    /// and makes later inserts return [`Insert::ShutDown`].
    pub fn shutdown(&self, out: &mut Vec<Waker>) {
        let mut st = lock(&self.state);
        st.shut_down = true;
        st.heap.clear();
        st.free.clear();
        st.live = 0;
        st.planned = None;
        self.due_hint.store(u64::MAX, Ordering::Release);
        let slots = std::mem::take(&mut st.slots);
        drop(st);
        out.extend(slots.into_iter().filter_map(|slot| slot.waker));
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        lock(&self.state).live
    }

    /// True if no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for TimerQueue {
    fn default() -> TimerQueue {
        TimerQueue::new()
    }
}

impl fmt::Debug for TimerQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.state);
        f.debug_struct("TimerQueue")
            .field("pending", &st.live)
            .field("heap_len", &st.heap.len())
            .field("planned", &st.planned)
            .field("shut_down", &st.shut_down)
            .finish()
    }
}

#[cfg(all(test, not(grove_loom)))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::Duration;

    use super::*;

    /// Records its id into a shared log when woken.
    struct Tagged {
        id: usize,
        log: Arc<std::sync::Mutex<Vec<usize>>>,
    }

    impl Wake for Tagged {
        fn wake(self: Arc<Self>) {
            self.log.lock().unwrap().push(self.id);
        }
    }

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn queued(insert: Insert) -> (TimerKey, bool) {
        match insert {
            Insert::Queued { key, notify } => (key, notify),
            Insert::ShutDown(_) => panic!("queue unexpectedly shut down"),
        }
    }

    fn fire_all(q: &TimerQueue, now: Instant) -> (Vec<Waker>, Option<Instant>) {
        let mut out = Vec::new();
        loop {
            if let Due::Idle(next) = q.fire_due(now, &mut out, 3) {
                return (out, next);
            }
        }
    }

    #[test]
    fn fires_in_deadline_then_insertion_order() {
        let q = TimerQueue::new();
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let base = Instant::now();
        // (id, offset in ms); ids 3 and 4 share a deadline and must fire in insertion order.
        let plan = [
            (0, 50),
            (1, 10),
            (2, 30),
            (3, 20),
            (4, 20),
            (5, 40),
            (6, 60),
        ];
        for (id, ms) in plan {
            let waker = Waker::from(Arc::new(Tagged {
                id,
                log: log.clone(),
            }));
            let _ = queued(q.insert(base + Duration::from_millis(ms), waker));
        }
        let (due, next) = fire_all(&q, base + Duration::from_millis(45));
        assert_eq!(next, Some(base + Duration::from_millis(50)));
        due.into_iter().for_each(Waker::wake);
        assert_eq!(*log.lock().unwrap(), [1, 3, 4, 2, 5]);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn notify_only_when_earlier_than_planned() {
        let q = TimerQueue::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let base = Instant::now();
        let at = |ms| base + Duration::from_millis(ms);
        // Nothing planned: the first insert must notify.
        assert!(queued(q.insert(at(100), Waker::from(count.clone()))).1);
        // Later deadlines: silent.
        assert!(!queued(q.insert(at(200), Waker::from(count.clone()))).1);
        // Earlier: notify, and it becomes the plan.
        assert!(queued(q.insert(at(50), Waker::from(count.clone()))).1);
        assert!(!queued(q.insert(at(60), Waker::from(count.clone()))).1);
        // The reactor plans its sleep: the earliest pending deadline.
        let (due, next) = fire_all(&q, at(0));
        assert!(due.is_empty());
        assert_eq!(next, Some(at(50)));
        assert!(!queued(q.insert(at(55), Waker::from(count.clone()))).1);
        assert!(queued(q.insert(at(49), Waker::from(count.clone()))).1);
    }

    #[test]
    fn cancel_is_exact_and_keys_are_never_reused() {
        let q = TimerQueue::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let base = Instant::now();
        let (a, _) = queued(q.insert(base, Waker::from(count.clone())));
        assert!(q.cancel(a));
        assert!(!q.cancel(a), "second cancel");
        // The slot is reused; the old key must not cancel the new timer.
        let (b, _) = queued(q.insert(base, Waker::from(count.clone())));
        assert!(!q.cancel(a));
        let (due, next) = fire_all(&q, base);
        assert_eq!(due.len(), 1);
        assert_eq!(next, None);
        assert!(!q.cancel(b), "cancel after fire");
        assert!(!q.cancel(TimerKey::DEAD));
    }

    #[test]
    fn cancelled_garbage_is_compacted() {
        let q = TimerQueue::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let base = Instant::now();
        let keys: Vec<_> = (0..10_000)
            .map(|i| {
                queued(q.insert(base + Duration::from_micros(i), Waker::from(count.clone()))).0
            })
            .collect();
        for key in &keys[..9_990] {
            assert!(q.cancel(*key));
        }
        let heap_len = lock(&q.state).heap.len();
        assert!(
            heap_len <= 2 * 10 + COMPACT_MIN,
            "heap not compacted: {heap_len}"
        );
        let (due, next) = fire_all(&q, base + Duration::from_secs(1));
        assert_eq!(due.len(), 10);
        assert_eq!(next, None);
        assert!(q.is_empty());
    }

    #[test]
    fn a_burst_releases_its_memory_once_drained() {
        let q = TimerQueue::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let base = Instant::now();
        let keys: Vec<_> = (0..2 * RETAIN_SLOTS)
            .map(|_| queued(q.insert(base, Waker::from(count.clone()))).0)
            .collect();
        let (due, next) = fire_all(&q, base);
        assert_eq!((due.len(), next), (2 * RETAIN_SLOTS, None));
        assert_eq!(lock(&q.state).slots.capacity(), 0);
        // Old keys neither panic nor cancel the new occupant of slot 0.
        let (fresh, _) = queued(q.insert(base, Waker::from(count)));
        assert!(keys.iter().all(|key| !q.cancel(*key)));
        assert!(q.cancel(fresh));
    }

    #[test]
    fn shutdown_hands_back_every_waker() {
        let q = TimerQueue::new();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let base = Instant::now();
        let (key, _) = queued(q.insert(base, Waker::from(count.clone())));
        let _ = queued(q.insert(base, Waker::from(count.clone())));
        let mut out = Vec::new();
        q.shutdown(&mut out);
        assert_eq!(out.len(), 2);
        assert!(!q.cancel(key));
        assert!(matches!(
            q.insert(base, Waker::from(count)),
            Insert::ShutDown(_)
        ));
    }
}
