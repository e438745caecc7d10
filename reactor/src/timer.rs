//! Timers: one hierarchical timing wheel per shard, each under its own mutex.
//!
//! * **Shards.** A thread inserts into its own shard: a worker (a thread that calls
//!   [`Handle::begin_watching`](crate::Handle::begin_watching)) takes the next shard in order
//!   the first time it watches, any other thread one from a second counter. So each worker's
//!   greenlets keep their timers in that worker's shard, workers rarely contend on a timer lock,
//!   and a worker that fires its own shard wakes its own greenlets with a local push (tokio
//!   shards its wheels per worker the same way; Go keeps a timer heap per P). There are as many
//!   shards as the machine has CPUs (at most 64).
//! * **The wheel** (module `wheel`): insert and cancel O(1), due timers fire a whole slot at a
//!   time, one clock read per batch (by the caller), never early: deadlines are rounded *up* to
//!   the wheel's 16 µs tick, `now` down.
//! * **Keys** name the shard, the wheel node and its sequence number, which never repeats in a
//!   shard, so a [`TimerKey`] can never cancel a later timer that happens to reuse its node.
//!
//! # Planned wake
//!
//! The reactor sleeps until the earliest expiration of any shard. A timer inserted from another
//! thread with an earlier deadline must interrupt that sleep (a `mio::Waker` write, one
//! syscall); any other insert must not. Each shard keeps the reactor's planned wake *for that
//! shard* inside its mutex rather than in a separate atomic, because `insert` already holds the
//! lock: the comparison is free and needs no memory-ordering argument. The protocol (steps
//! T1–T3):
//!
//! 1. T1 (reactor, under each shard's lock in turn): fire what is due, then set the shard's
//!    `planned` = its next expiration (or "none" if it holds no timer).
//! 2. T1' (reactor, after the last shard, under each shard's lock again): lower every shard's
//!    `planned` to the earliest plan of all, then sleep until that at the latest. (A lower
//!    `planned` is always safe: the reactor wakes by then. Without this step each shard would
//!    notify for deadlines between the reactor's wake and its own next expiration, and an
//!    empty shard for every first insert: ~3× the notifications of one queue, measured.)
//! 3. T2 (any thread, under its shard's lock): insert; if the timer's tick is before the shard's
//!    `planned`, set `planned` to it and return `notify = true`; the caller then wakes the
//!    reactor, after unlocking.
//! 4. T3: each shard's lock totally orders T1, T1' and T2 on that shard. If T2 came first, T1's
//!    scan sees the new timer. If T1 came first, T2 sees a `planned` no earlier than what the
//!    reactor will sleep until *at the latest* (the minimum over shards) and notifies if it is
//!    too late. Setting `planned` in T2 makes later, less urgent inserts skip the syscall: the
//!    reactor is about to wake and rescan anyway. While the reactor is between a batch and the
//!    next scan (`Due::More`), that shard's `planned` is "now", so inserts during a firing burst
//!    stay silent.
//!
//! The loom models `insert_during_firing_burst_is_never_overslept` and
//! `insert_into_another_shard_is_never_overslept` check T3, including the `Due::More` case and
//! an insert into a shard the scan has already passed.
//!
//! A cancelled timer may leave the reactor planning an earlier wake than needed; it then wakes
//! once, finds nothing due, and plans again. So does a timer in a high level of a wheel: the
//! plan is the start of its slot, where it moves down a level. That is cheaper than making
//! `cancel` notify.
//!
//! # Workers fire too
//!
//! A worker that harvests events also fires what is due, a batch at a time: its own shard
//! first (its own greenlets: local pushes), then any other shard with timers due (its worker
//! is busy or asleep). Leaving those to their own worker or the reactor for a grace period
//! (1 ms was tried) made idle workers sleep while due timers waited for the reactor's
//! millisecond-rounded sleep: with 1,000 greenlets looping on `sleep(200 µs)` workers fired
//! 60-75% of the timers instead of ~90%, and the loop ran 10-25% slower. Two
//! things keep this cheap and keep T3 true:
//!
//! * **The due hint**: per shard, an atomic copy of a lower bound on the earliest deadline in
//!   the shard (possibly a cancelled timer's, never later than the truth), updated under the
//!   lock by every insert and scan. A worker takes a lock only when a hint says something is
//!   due: a relaxed load per shard and one clock read otherwise.
//! * **A worker's scan never touches `planned`** ([`TimerQueue::fire_due_by_worker`]). The
//!   reactor sleeps until what *its* last scan planned (or earlier, if notified); inserts compare
//!   against `planned`, which only the reactor's scans raise. A worker's scan only removes
//!   timers, which can make the reactor wake early and find nothing, never late. (Had a worker's
//!   `Due::More` set `planned = now` as the reactor's does, an insert after it would stay silent
//!   while the reactor slept on towards its older, later plan.)

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::AtomicUsize as StdAtomicUsize;
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::loom::{lock, AtomicU64, Mutex, Ordering};
use crate::wheel::{Polled, Wheel, TICK_NANOS, TICK_SHIFT};

/// Identifies one timer for [`Handle::cancel_timer`](crate::Handle::cancel_timer).
///
/// Keys are never reused: cancelling with a key whose timer fired or was cancelled is a no-op
/// that returns `false`, even if another timer now occupies the same slot.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TimerKey {
    shard: u32,
    node: u32,
    seq: u64,
}

impl TimerKey {
    /// A key that names no timer (returned when the timer fired before `add_timer` returned).
    pub(crate) const DEAD: TimerKey = TimerKey {
        shard: 0,
        node: u32::MAX,
        seq: 0,
    };

    /// The key as one integer, for layers that store keys without knowing this type
    /// (the scheduler's `Timers` hook).
    pub fn to_raw(self) -> u128 {
        (u128::from(self.shard) << 96) | (u128::from(self.node) << 64) | u128::from(self.seq)
    }

    /// The key back from [`to_raw`](Self::to_raw). Any value is safe to pass to
    /// `cancel_timer`: a key that names no live timer (wrong shard, node or sequence) is a
    /// no-op.
    pub fn from_raw(raw: u128) -> TimerKey {
        TimerKey {
            shard: (raw >> 96) as u32,
            node: (raw >> 64) as u32,
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
    /// The deadline had passed by the shard's last scan: nothing was queued, the waker is
    /// handed back for the caller to wake now.
    Due(Waker),
    /// The queue is shut down; the waker is handed back for the caller to wake.
    ShutDown(Waker),
}

/// What [`TimerQueue::fire_due`] found after filling its batch.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// The batch limit was reached with more timers due; wake the batch and call again.
    More,
    /// No more timers are due. Holds the earliest pending expiration (never later than the
    /// earliest deadline, rounded up to the tick), now the planned wake.
    Idle(Option<Instant>),
}

/// Most shards: beyond this, threads share them.
const MAX_SHARDS: usize = 64;

/// "No deadline" in a due hint.
const NO_HINT: u64 = u64::MAX;

struct State {
    wheel: Wheel,
    /// The tick the reactor sleeps until at the latest, as far as this shard is concerned;
    /// `None`: as far as this shard is concerned, it sleeps until I/O or a notification.
    planned: Option<u64>,
    shut_down: bool,
}

/// One wheel, its lock and its due hint, on a cache line pair of its own.
#[repr(align(128))]
#[repr(align(128))]
struct Shard {
    state: Mutex<State>,
    /// A tick never later than the earliest deadline in the shard (`NO_HINT`: none); see
    /// "Workers fire too". Written under the lock, read without it.
    hint: AtomicU64,
}

impl Shard {
    fn new() -> Shard {
        Shard {
            state: Mutex::new(State {
                wheel: Wheel::new(),
                planned: None,
                shut_down: false,
            }),
            hint: AtomicU64::new(NO_HINT),
        }
    }

    /// Records the wheel's next expiration as the due hint (under the lock).
    fn update_hint(&self, st: &State) {
        let hint = st.wheel.next_expiration().unwrap_or(NO_HINT);
        self.hint.store(hint, Ordering::Release);
    }
}

thread_local! {
    /// The calling thread's shard number (modulo the shard count), or `usize::MAX` until chosen.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Shard numbers handed to watching threads (workers), in order.
static WATCHER_SHARDS: StdAtomicUsize = StdAtomicUsize::new(0);
/// Shard numbers handed to other threads, in order.
static OTHER_SHARDS: StdAtomicUsize = StdAtomicUsize::new(0);

/// The calling thread's shard number (modulo the shard count); `watcher`: the thread is a
/// worker choosing now, when it starts watching.
fn thread_shard(watcher: bool) -> usize {
    if cfg!(grove_loom) {
        // One OS thread runs every loom thread: keep the model deterministic.
        return 0;
    }
    SHARD.with(|shard| {
        if shard.get() == usize::MAX {
            let counter = if watcher {
                &WATCHER_SHARDS
            } else {
                &OTHER_SHARDS
            };
            // Kept whole (below `usize::MAX`): taken modulo each queue's own shard count, so
            // consecutive workers get consecutive shards whatever that count is.
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            shard.set(n % (usize::MAX - 1));
        }
        shard.get()
    })
}

/// The reactor's timers, shared by the reactor thread and every thread that adds or cancels.
pub struct TimerQueue {
    shards: Box<[Shard]>,
    /// Tick 0 of every wheel.
    epoch: Instant,
}

impl TimerQueue {
    /// An empty queue with one shard per CPU and no planned wake.
    pub fn new() -> TimerQueue {
        let cpus = if cfg!(grove_loom) {
            2
        } else {
            std::thread::available_parallelism().map_or(1, usize::from)
        };
        TimerQueue::with_shards(cpus)
    }

    /// An empty queue with `shards` shards (at least one, at most 64).
    pub fn with_shards(shards: usize) -> TimerQueue {
        TimerQueue {
            shards: (0..shards.clamp(1, MAX_SHARDS))
                .map(|_| Shard::new())
                .collect(),
            epoch: Instant::now(),
        }
    }

    /// The calling thread is a worker that starts watching: it takes its shard now, if it has
    /// none yet (see "Shards").
    pub fn claim_shard(&self) {
        let _ = thread_shard(true);
    }

    /// The calling thread's shard.
    fn own_shard(&self) -> usize {
        thread_shard(false) % self.shards.len()
    }

    /// `at` in whole ticks since the epoch, rounded up (a deadline: never early).
    fn tick_up(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos.div_ceil(u128::from(TICK_NANOS))).unwrap_or(u64::MAX)
    }

    /// `at` in whole ticks since the epoch, rounded down (a `now`: never ahead).
    fn tick_down(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos >> TICK_SHIFT).unwrap_or(u64::MAX)
    }

    /// The instant a tick begins; `None` past what `Instant` can hold.
    fn instant(&self, tick: u64) -> Option<Instant> {
        let nanos = tick.checked_mul(TICK_NANOS)?;
        self.epoch.checked_add(Duration::from_nanos(nanos))
    }

    /// When a timer with `deadline` fires at the earliest: `deadline` rounded up to the tick
    /// (the `now` a [`fire_due`](Self::fire_due) needs to fire it). For tests and models.
    #[cfg(any(test, grove_loom))]
    pub fn fires_at(&self, deadline: Instant) -> Instant {
        self.instant(self.tick_up(deadline)).unwrap_or(deadline)
    }

    /// The instant at which tick `tick` begins: deterministic wheel positions for models.
    #[cfg(grove_loom)]
    pub fn tick_instant(&self, tick: u64) -> Instant {
        self.instant(tick).expect("a small tick")
    }

    /// A lower bound on the earliest pending deadline (possibly a cancelled timer's, or the
    /// start of a wheel slot holding the earliest); `None` if no timer is pending. No lock.
    pub fn due_hint(&self) -> Option<Instant> {
        let hint = self
            .shards
            .iter()
            .map(|shard| shard.hint.load(Ordering::Acquire))
            .min()?;
        if hint == NO_HINT {
            return None;
        }
        // Past `Instant`'s end: as good as never.
        self.instant(hint)
    }

    /// True if a timer may be due at `now` in any shard: one atomic load per shard, no lock.
    /// Never false while a live timer is due (a hint is never later than its shard's
    /// earliest deadline).
    pub fn maybe_due(&self, now: Instant) -> bool {
        let now = self.tick_down(now);
        self.shards
            .iter()
            .any(|shard| shard.hint.load(Ordering::Acquire) <= now)
    }

    /// Adds a timer to the calling thread's shard (protocol step T2). O(1).
    pub fn insert(&self, deadline: Instant, waker: Waker) -> Insert {
        self.insert_in(self.own_shard(), deadline, waker)
    }

    /// Adds a timer to shard `shard` (modulo the shard count); see [`insert`](Self::insert).
    pub fn insert_in(&self, shard: usize, deadline: Instant, waker: Waker) -> Insert {
        let index = shard % self.shards.len();
        let shard = &self.shards[index];
        let when = self.tick_up(deadline);
        let mut st = lock(&shard.state);
        if st.shut_down {
            return Insert::ShutDown(waker);
        }
        if when <= st.wheel.elapsed() {
            // Passed (the scan that moved elapsed read a clock at or after it): no clock read
            // needed to know, and no timer to queue.
            return Insert::Due(waker);
        }
        let (node, seq) = st.wheel.insert(when, waker);
        // The wheel may have placed it later (a deadline behind its elapsed tick), never earlier.
        if when < shard.hint.load(Ordering::Relaxed) {
            shard.hint.store(when, Ordering::Release);
        }
        let notify = st.planned.is_none_or(|planned| when < planned);
        if notify {
            st.planned = Some(when);
        }
        Insert::Queued {
            key: TimerKey {
                shard: index as u32,
                node,
                seq,
            },
            notify,
        }
    }

    /// Cancels a pending timer. Returns `true` if it had neither fired nor been cancelled; its
    /// waker is then dropped without being woken. O(1).
    pub fn cancel(&self, key: TimerKey) -> bool {
        let Some(shard) = self.shards.get(key.shard as usize) else {
            return false;
        };
        let waker = lock(&shard.state).wheel.cancel(key.node, key.seq);
        // Dropped outside the lock: a waker's drop may run arbitrary code.
        waker.is_some()
    }

    /// Moves the wakers of up to `limit` timers due at `now` (deadline rounded up to the tick
    /// `<= now`) into `out`, earliest first within each shard (protocol step T1). The caller
    /// wakes them after this returns (outside the lock).
    pub fn fire_due(&self, now: Instant, out: &mut Vec<Waker>, limit: usize) -> Due {
        let now_tick = self.tick_down(now);
        let before = out.len();
        let mut next: Option<u64> = None;
        for shard in self.shards.iter() {
            let room = limit - (out.len() - before);
            let mut st = lock(&shard.state);
            let polled = st.wheel.poll(now_tick, out, room);
            shard.update_hint(&st);
            match polled {
                Polled::More => {
                    // The reactor rescans before sleeping, so inserts meanwhile need not notify.
                    st.planned = Some(now_tick);
                    return Due::More;
                }
                Polled::Idle(expiration) => {
                    st.planned = expiration;
                    next = match (next, expiration) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
        }
        // T1': the reactor sleeps until the earliest plan of all, so every shard may plan that
        // (lower than or equal to its own next expiration, so still never too late): an insert
        // into a shard then stays silent unless it precedes the reactor's actual wake, as with
        // one queue. A shard that was empty would otherwise make its next insert notify.
        if let Some(earliest) = next {
            if self.shards.len() > 1 {
                for shard in self.shards.iter() {
                    let mut st = lock(&shard.state);
                    st.planned = Some(st.planned.map_or(earliest, |p| p.min(earliest)));
                }
            }
        }
        // An expiration past `Instant`'s end is as good as none: the reactor sleeps until
        // notified, and an insert before it notifies.
        Due::Idle(next.and_then(|tick| self.instant(tick)))
    }

    /// A worker's scan ("Workers fire too"): like [`fire_due`](Self::fire_due), but only its
    /// own shard first, then the others that have timers due, and it leaves the reactor's
    /// planned wake alone. Returns
    /// how many wakers it moved into `out`.
    pub fn fire_due_by_worker(&self, now: Instant, out: &mut Vec<Waker>, limit: usize) -> usize {
        let now_tick = self.tick_down(now);
        let before = out.len();
        let own = self.own_shard();
        let n = self.shards.len();
        for i in (0..n).map(|i| (own + i) % n) {
            let room = limit.saturating_sub(out.len() - before);
            if room == 0 {
                break;
            }
            let shard = &self.shards[i];
            // The own shard unconditionally (callers check `maybe_due` first), others only if
            // their hint says something is due.
            if i != own && shard.hint.load(Ordering::Acquire) > now_tick {
                continue;
            }
            let mut st = lock(&shard.state);
            let _ = st.wheel.poll(now_tick, out, room);
            shard.update_hint(&st);
        }
        out.len() - before
    }

    /// Shuts the queue down: moves every pending waker into `out` (to be woken by the caller)
    /// and makes later inserts return [`Insert::ShutDown`].
    pub fn shutdown(&self, out: &mut Vec<Waker>) {
        for shard in self.shards.iter() {
            let mut st = lock(&shard.state);
            st.shut_down = true;
            st.planned = None;
            st.wheel.drain(out);
            shard.hint.store(NO_HINT, Ordering::Release);
        }
    }

    /// Number of pending timers (each shard locked in turn).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| lock(&shard.state).wheel.len())
            .sum()
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
        let mut d = f.debug_struct("TimerQueue");
        d.field("shards", &self.shards.len());
        d.field("pending", &self.len());
        d.finish_non_exhaustive()
    }
}

#[cfg(all(test, not(grove_loom)))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

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

    fn counter() -> Arc<Count> {
        Arc::new(Count(AtomicUsize::new(0)))
    }

    fn queued(insert: Insert) -> (TimerKey, bool) {
        match insert {
            Insert::Queued { key, notify } => (key, notify),
            other => panic!("not queued: {other:?}"),
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

    /// The instant `ticks` ticks after the queue's epoch: deterministic wheel positions.
    fn tick(q: &TimerQueue, ticks: u64) -> Instant {
        q.epoch + Duration::from_nanos(ticks * TICK_NANOS)
    }

    #[test]
    fn fires_in_deadline_then_insertion_order() {
        let q = TimerQueue::with_shards(1);
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
        let now = base + Duration::from_millis(45);
        let (due, next) = fire_all(&q, now);
        let next = next.expect("two timers pending");
        assert!(next > now && next <= q.fires_at(base + Duration::from_millis(50)));
        due.into_iter().for_each(Waker::wake);
        assert_eq!(*log.lock().unwrap(), [1, 3, 4, 2, 5]);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn never_fires_early_and_at_most_a_tick_late() {
        let q = TimerQueue::with_shards(1);
        let count = counter();
        let deadline = Instant::now() + Duration::from_micros(12_345);
        let (key, _) = queued(q.insert(deadline, Waker::from(count.clone())));
        let at = q.fires_at(deadline);
        assert!(at >= deadline && at - deadline < Duration::from_nanos(TICK_NANOS));
        let (due, next) = fire_all(&q, deadline - Duration::from_nanos(1));
        assert!(due.is_empty());
        assert!(next.is_some_and(|next| next <= at));
        let (due, next) = fire_all(&q, at);
        assert_eq!((due.len(), next), (1, None));
        assert!(!q.cancel(key), "cancel after fire");
    }

    #[test]
    fn notify_only_when_earlier_than_planned() {
        let q = TimerQueue::with_shards(1);
        let count = counter();
        // Ticks within level 0 of the wheel (elapsed 0), so the plan is each timer's own tick.
        let at = |t| tick(&q, t);
        // Nothing planned: the first insert must notify.
        assert!(queued(q.insert(at(40), Waker::from(count.clone()))).1);
        // Later deadlines: silent.
        assert!(!queued(q.insert(at(50), Waker::from(count.clone()))).1);
        // Earlier: notify, and it becomes the plan.
        assert!(queued(q.insert(at(20), Waker::from(count.clone()))).1);
        assert!(!queued(q.insert(at(30), Waker::from(count.clone()))).1);
        // The reactor plans its sleep: the earliest pending deadline.
        let (due, next) = fire_all(&q, at(1));
        assert!(due.is_empty());
        assert_eq!(next, Some(at(20)));
        assert!(!queued(q.insert(at(25), Waker::from(count.clone()))).1);
        assert!(queued(q.insert(at(19), Waker::from(count.clone()))).1);
        // A timer in a higher level: the plan is the start of its slot, not later.
        let q = TimerQueue::with_shards(1);
        let at = |t| tick(&q, t);
        let _ = queued(q.insert(at(64 * 3 + 5), Waker::from(count.clone())));
        assert_eq!(fire_all(&q, at(0)).1, Some(at(64 * 3)));
        assert_eq!(fire_all(&q, at(64 * 3)).1, Some(at(64 * 3 + 5)));
    }

    #[test]
    fn every_shard_plans_the_reactors_earliest_wake() {
        let q = TimerQueue::with_shards(3);
        let count = counter();
        let at = |t| tick(&q, t);
        assert!(queued(q.insert_in(0, at(30), Waker::from(count.clone()))).1);
        // Shard 1 had no plan: its first timer notifies even though it is later.
        assert!(queued(q.insert_in(1, at(40), Waker::from(count.clone()))).1);
        let (due, next) = fire_all(&q, at(1));
        assert!(due.is_empty());
        assert_eq!(next, Some(at(30)));
        // T1': every shard, the empty one included, now plans the reactor's wake (30): later
        // inserts anywhere stay silent, earlier ones notify.
        assert!(!queued(q.insert_in(1, at(35), Waker::from(count.clone()))).1);
        assert!(!queued(q.insert_in(2, at(31), Waker::from(count.clone()))).1);
        assert!(queued(q.insert_in(2, at(29), Waker::from(count.clone()))).1);
        assert!(queued(q.insert_in(0, at(29), Waker::from(count.clone()))).1);
        let (due, next) = fire_all(&q, at(35));
        assert_eq!((due.len(), next), (5, Some(at(40))));
    }

    #[test]
    fn a_worker_fires_its_own_shard_first_then_the_others() {
        let q = TimerQueue::with_shards(2);
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let tagged = |id| {
            Waker::from(Arc::new(Tagged {
                id,
                log: log.clone(),
            }))
        };
        let at = |t| tick(&q, t);
        let own = q.own_shard();
        let other = 1 - own;
        let _ = queued(q.insert_in(other, at(10), tagged(1)));
        let _ = queued(q.insert_in(own, at(10), tagged(0)));
        let _ = queued(q.insert_in(other, at(20), tagged(2)));
        assert!(!q.maybe_due(at(9)));
        assert!(q.maybe_due(at(10)));
        let mut out = Vec::new();
        assert_eq!(q.fire_due_by_worker(at(10), &mut out, 1), 1);
        assert_eq!(q.fire_due_by_worker(at(10), &mut out, 8), 1);
        // Nothing due in either shard: the other shard is not even locked (its hint says 20).
        assert!(!q.maybe_due(at(19)));
        assert_eq!(q.fire_due_by_worker(at(19), &mut out, 8), 0);
        out.into_iter().for_each(Waker::wake);
        assert_eq!(*log.lock().unwrap(), [0, 1]);
        assert_eq!(q.len(), 1);
        assert_eq!(fire_all(&q, at(20)).0.len(), 1);
    }

    #[test]
    fn consecutive_watchers_get_shards_of_their_own() {
        let q = Arc::new(TimerQueue::with_shards(2));
        let shard_of_a_new_worker = || {
            let q = q.clone();
            std::thread::spawn(move || {
                q.claim_shard();
                let far = Instant::now() + Duration::from_secs(60);
                let (key, _) = queued(q.insert(far, Waker::noop().clone()));
                // Its own shard: a second insert lands there too.
                let (again, _) = queued(q.insert(far, Waker::noop().clone()));
                assert_eq!(again.shard, key.shard);
                key.shard
            })
            .join()
            .unwrap()
        };
        let a = shard_of_a_new_worker();
        // A plain thread in between takes a number from the other counter, not the workers'.
        let q2 = q.clone();
        std::thread::spawn(move || {
            let far = Instant::now() + Duration::from_secs(60);
            let _ = queued(q2.insert(far, Waker::noop().clone()));
        })
        .join()
        .unwrap();
        let b = shard_of_a_new_worker();
        assert_ne!(a, b, "two workers share a timer shard");
    }

    #[test]
    fn cancel_is_exact_and_keys_are_never_reused() {
        let q = TimerQueue::with_shards(2);
        let count = counter();
        let base = Instant::now() + Duration::from_millis(1);
        let (a, _) = queued(q.insert(base, Waker::from(count.clone())));
        assert!(q.cancel(a));
        assert!(!q.cancel(a), "second cancel");
        // The node is reused; the old key must not cancel the new timer.
        let (b, _) = queued(q.insert(base, Waker::from(count.clone())));
        assert!(!q.cancel(a));
        let (due, next) = fire_all(&q, q.fires_at(base));
        assert_eq!(due.len(), 1);
        assert_eq!(next, None);
        assert!(!q.cancel(b), "cancel after fire");
        assert!(!q.cancel(TimerKey::DEAD));
        // Keys that name no shard, or come back from raw garbage, are no-ops.
        assert!(!q.cancel(TimerKey::from_raw(u128::MAX)));
        assert_eq!(TimerKey::from_raw(b.to_raw()), b);
    }

    #[test]
    fn cancelled_timers_leave_nothing_behind() {
        let q = TimerQueue::with_shards(1);
        let count = counter();
        let base = Instant::now() + Duration::from_millis(1);
        let keys: Vec<_> = (0..10_000)
            .map(|i| {
                queued(q.insert(base + Duration::from_micros(i), Waker::from(count.clone()))).0
            })
            .collect();
        for key in &keys[..9_990] {
            assert!(q.cancel(*key));
        }
        assert_eq!(q.len(), 10);
        let (due, next) = fire_all(&q, base + Duration::from_secs(1));
        assert_eq!(due.len(), 10);
        assert_eq!(next, None);
        assert!(q.is_empty());
        // Old keys neither panic nor cancel the new occupant of a node.
        let (fresh, _) = queued(q.insert(base + Duration::from_secs(2), Waker::from(count)));
        assert!(keys.iter().all(|key| !q.cancel(*key)));
        assert!(q.cancel(fresh));
    }

    #[test]
    fn deadlines_near_the_end_of_instant_wait_and_cancel() {
        let q = TimerQueue::with_shards(1);
        let count = counter();
        let now = Instant::now();
        // The furthest instant representable from now (within a factor of two).
        let mut far = Duration::from_secs(u64::MAX);
        while now.checked_add(far).is_none() {
            far /= 2;
        }
        let end = now + far;
        let (key, notify) = queued(q.insert(end, Waker::from(count.clone())));
        assert!(notify);
        let (key2, _) = queued(q.insert(end, Waker::from(count.clone())));
        let (due, _) = fire_all(&q, now + Duration::from_secs(3600 * 24 * 365));
        assert!(due.is_empty());
        assert!(q.due_hint().is_none_or(|hint| hint > now));
        assert!(q.cancel(key));
        let (due, _) = fire_all(&q, end);
        assert_eq!(
            due.len(),
            1,
            "the end-of-time timer fires at the end of time"
        );
        assert!(!q.cancel(key2));
    }

    #[test]
    fn a_deadline_behind_the_last_scan_is_due_at_once() {
        let early = Instant::now();
        let q = TimerQueue::with_shards(1);
        let count = counter();
        // Before the epoch: tick 0, which the wheel starts at.
        assert!(matches!(
            q.insert(early, Waker::from(count.clone())),
            Insert::Due(_)
        ));
        // Behind a scan's `now`, but not before: due at once; after: queued.
        let _ = fire_all(&q, tick(&q, 100));
        assert!(matches!(
            q.insert(tick(&q, 99), Waker::from(count.clone())),
            Insert::Due(_)
        ));
        assert!(matches!(
            q.insert(tick(&q, 100), Waker::from(count.clone())),
            Insert::Due(_)
        ));
        let (key, _) =
            queued(q.insert(tick(&q, 100) + Duration::from_nanos(1), Waker::from(count)));
        assert_eq!(fire_all(&q, tick(&q, 101)).0.len(), 1);
        assert!(!q.cancel(key));
    }

    #[test]
    fn shutdown_hands_back_every_waker() {
        let q = TimerQueue::with_shards(3);
        let count = counter();
        let base = Instant::now() + Duration::from_millis(1);
        let (key, _) = queued(q.insert_in(0, base, Waker::from(count.clone())));
        let _ = queued(q.insert_in(2, base, Waker::from(count.clone())));
        let mut out = Vec::new();
        q.shutdown(&mut out);
        assert_eq!(out.len(), 2);
        assert!(!q.cancel(key));
        assert!(matches!(
            q.insert(base, Waker::from(count)),
            Insert::ShutDown(_)
        ));
        assert_eq!(q.due_hint(), None);
    }
}
