//! Per-source readiness state: the "register a waker vs. an event arrives" protocol.
//!
//! One [`ScheduledIo`] exists per registered source. The reactor thread calls
//! [`ScheduledIo::dispatch`] for every mio event carrying the source's token; the task that waits
//! on the source calls [`ScheduledIo::poll_ready`] and, after an operation returned `WouldBlock`,
//! [`ScheduledIo::clear_readiness`]. The protocol and why each step is ordered as it is are
//! described in the crate documentation ("Readiness protocol"); the step numbers below refer to it.
//!
//! # The state word
//!
//! ```text
//! | tick (usize::BITS - 9) | W_WAITING | R_WAITING | SHUTDOWN | W_ERROR | R_ERROR | W_CLOSED | R_CLOSED | WRITABLE | READABLE |
//! ```
//!
//! * The readiness bits are set by `dispatch` (one mio event ORs in its bits) and cleared, per
//!   direction, by `clear_readiness`. `READ_CLOSED` and `WRITE_CLOSED` are final: a half that is
//!   closed never reopens and an operation on it never returns `WouldBlock`, so they are never
//!   cleared. The error bits are clearable: a socket error is consumed by the operation that
//!   reports it (`SO_ERROR`), and a sticky bit would turn the next `WouldBlock` into a busy loop.
//! * `SHUTDOWN` is set once, when the reactor stops, and makes every poll return an error.
//! * `READ_WAITING` / `WRITE_WAITING` say that the direction's waker slot is (or may be)
//!   occupied. They change only under the waker lock, together with the slot. `dispatch` learns
//!   them from its own read-modify-write (D1) and skips the lock (D2) when no satisfied
//!   direction has a waiter: the common case of a busy connection, whose reader finds data
//!   without ever parking, costs one atomic operation per event and no lock.
//! * `tick` counts events. `poll_ready` remembers the tick it saw when it returned `Ready`;
//!   `clear_readiness` clears only if the tick is unchanged, i.e. only if no event arrived since
//!   the readiness that the failed operation consumed. This is tokio's `ScheduledIo` scheme,
//!   with the remembered tick kept per direction instead of being handed back by the caller.
//!   55 bits of tick (23 on 32-bit targets) cannot wrap between a poll and its clear.

use std::fmt;
use std::io;
use std::task::{Context, Poll, Waker};

use crate::loom::{lock, AtomicUsize, Mutex, Ordering};
use crate::Direction;

/// The source has data to read (or a connection to accept).
const READABLE: usize = 1 << 0;
/// The source can accept a write.
const WRITABLE: usize = 1 << 1;
/// The peer closed its write half (or both halves): reads return EOF. Final.
const READ_CLOSED: usize = 1 << 2;
/// Our write half is closed (peer gone, pipe reader closed): writes fail. Final.
const WRITE_CLOSED: usize = 1 << 3;
/// The source reported an error; a read will return it. Cleared with `READABLE`.
const READ_ERROR: usize = 1 << 4;
/// The source reported an error; a write will return it. Cleared with `WRITABLE`.
const WRITE_ERROR: usize = 1 << 5;
/// Every readiness bit.
const READY_MASK: usize =
    READABLE | WRITABLE | READ_CLOSED | WRITE_CLOSED | READ_ERROR | WRITE_ERROR;
/// The reactor has shut down; set once, never cleared.
const SHUTDOWN: usize = 1 << 6;
/// The reader's waker slot is occupied (changed only under the waker lock).
const READ_WAITING: usize = 1 << 7;
/// The writer's waker slot is occupied (changed only under the waker lock).
const WRITE_WAITING: usize = 1 << 8;
/// The tick occupies every bit above the waiting bits.
const TICK_SHIFT: u32 = 9;
/// Largest tick value; ticks wrap to 0 after it.
const TICK_MAX: usize = usize::MAX >> TICK_SHIFT;

/// Bits that make a direction ready.
const fn ready_mask(dir: Direction) -> usize {
    match dir {
        Direction::Read => READABLE | READ_CLOSED | READ_ERROR,
        Direction::Write => WRITABLE | WRITE_CLOSED | WRITE_ERROR,
    }
}

/// Bits that `clear_readiness` removes for a direction (the closed bits are final).
const fn clear_mask(dir: Direction) -> usize {
    match dir {
        Direction::Read => READABLE | READ_ERROR,
        Direction::Write => WRITABLE | WRITE_ERROR,
    }
}

const fn tick_of(state: usize) -> usize {
    state >> TICK_SHIFT
}

/// The waiting bit of a direction.
const fn waiting(dir: Direction) -> usize {
    match dir {
        Direction::Read => READ_WAITING,
        Direction::Write => WRITE_WAITING,
    }
}

/// The waiting bits of the directions that readiness `bits` satisfies.
const fn waiting_for(bits: usize) -> usize {
    let mut w = 0;
    if bits & ready_mask(Direction::Read) != 0 {
        w |= READ_WAITING;
    }
    if bits & ready_mask(Direction::Write) != 0 {
        w |= WRITE_WAITING;
    }
    w
}

const fn index(dir: Direction) -> usize {
    match dir {
        Direction::Read => 0,
        Direction::Write => 1,
    }
}

/// The error every operation returns once the reactor has shut down.
pub(crate) fn shutdown_error() -> io::Error {
    io::Error::other("grove reactor is shut down")
}

/// A set of readiness bits carried by one event.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ready(usize);

impl Ready {
    /// No readiness.
    pub const EMPTY: Ready = Ready(0);
    /// Readable (data or a pending connection).
    pub const READABLE: Ready = Ready(READABLE);
    /// Writable.
    pub const WRITABLE: Ready = Ready(WRITABLE);
    /// The read half is closed (EOF).
    pub const READ_CLOSED: Ready = Ready(READ_CLOSED);
    /// The write half is closed.
    pub const WRITE_CLOSED: Ready = Ready(WRITE_CLOSED);
    /// An error is pending; makes both directions ready.
    pub const ERROR: Ready = Ready(READ_ERROR | WRITE_ERROR);

    /// Translates a mio event. Priority data counts as readable (mio already reports it so).
    pub fn from_mio(event: &mio::event::Event) -> Ready {
        let mut ready = Ready::EMPTY;
        if event.is_readable() {
            ready = ready | Ready::READABLE;
        }
        if event.is_writable() {
            ready = ready | Ready::WRITABLE;
        }
        if event.is_read_closed() {
            ready = ready | Ready::READ_CLOSED;
        }
        if event.is_write_closed() {
            ready = ready | Ready::WRITE_CLOSED;
        }
        if event.is_error() {
            ready = ready | Ready::ERROR;
        }
        ready
    }

    /// True if no bit is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True if this readiness satisfies a waiter in `dir`.
    #[cfg(any(grove_loom, test))]
    pub fn is_ready(self, dir: Direction) -> bool {
        self.0 & ready_mask(dir) != 0
    }
}

impl std::ops::BitOr for Ready {
    type Output = Ready;

    fn bitor(self, rhs: Ready) -> Ready {
        Ready(self.0 | rhs.0)
    }
}

impl fmt::Debug for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (READABLE, "READABLE"),
            (WRITABLE, "WRITABLE"),
            (READ_CLOSED, "READ_CLOSED"),
            (WRITE_CLOSED, "WRITE_CLOSED"),
            (READ_ERROR, "READ_ERROR"),
            (WRITE_ERROR, "WRITE_ERROR"),
        ];
        let mut set = f.debug_set();
        for (bit, name) in names {
            if self.0 & bit != 0 {
                set.entry(&format_args!("{name}"));
            }
        }
        set.finish()
    }
}

/// The waker slots, one per direction. At most one task waits per direction at a time.
#[derive(Default)]
struct Waiters {
    reader: Option<Waker>,
    writer: Option<Waker>,
}

impl Waiters {
    fn slot(&mut self, dir: Direction) -> &mut Option<Waker> {
        match dir {
            Direction::Read => &mut self.reader,
            Direction::Write => &mut self.writer,
        }
    }
}

/// Readiness bits, event tick and waker slots of one registered source.
///
/// Shared between the reactor thread (which calls [`dispatch`](Self::dispatch)) and the waiting
/// tasks (which call [`poll_ready`](Self::poll_ready) and
/// [`clear_readiness`](Self::clear_readiness)). At most one task may wait per direction at a time:
/// a second waiter's waker replaces the first's.
pub struct ScheduledIo {
    /// Tick, `SHUTDOWN` and readiness bits; see the module documentation.
    state: AtomicUsize,
    /// The reader and writer waker slots. Only ever locked briefly, never while waking.
    waiters: Mutex<Waiters>,
    /// Per direction, the tick seen by the last `poll_ready` that returned `Ready`. Touched only
    /// by that direction's (single) waiter, so `Relaxed` suffices.
    seen: [AtomicUsize; 2],
}

impl ScheduledIo {
    /// A source with no readiness, tick 0, no waiters.
    pub fn new() -> ScheduledIo {
        ScheduledIo {
            state: AtomicUsize::new(0),
            waiters: Mutex::new(Waiters::default()),
            seen: [AtomicUsize::new(0), AtomicUsize::new(0)],
        }
    }

    /// Checks readiness in `dir`; if not ready, stores `cx`'s waker and returns `Pending`.
    ///
    /// Returns `Ready(Ok(()))` if a readiness, closed or error bit for `dir` is set (the caller's
    /// next operation reports the actual EOF or error), `Ready(Err(_))` once the reactor has shut
    /// down. Protocol steps W1–W3.
    pub fn poll_ready(&self, dir: Direction, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // W1. Fast path: the bits are already there. `Acquire` pairs with the `AcqRel` update in
        // `dispatch` (it orders nothing we read afterwards, but is free on x86 and keeps the
        // reasoning local).
        let state = self.state.load(Ordering::Acquire);
        if let Some(ready) = self.check(dir, state) {
            return Poll::Ready(ready);
        }

        // W2. Store the waker under the lock, then mark the direction waiting. Reuse the stored
        // waker if it would wake the same task (the common case of a task polling again),
        // avoiding a clone.
        let mut waiters = lock(&self.waiters);
        let slot = waiters.slot(dir);
        let same_task = slot.as_ref().is_some_and(|old| old.will_wake(cx.waker()));
        let replaced = if same_task {
            None
        } else {
            slot.replace(cx.waker().clone())
        };
        // W3. Re-check, with the read-modify-write that publishes the waiting bit. `dispatch`
        // ORs in its bits (D1) with a read-modify-write of the same word, so the two are
        // ordered: if D1 came first, this RMW returns its bits; if it came second, D1 returns
        // our waiting bit and D2 takes the lock, which orders it after this section, and finds
        // the waker. So an event is never lost between W1 and W2.
        let state = self.state.fetch_or(waiting(dir), Ordering::AcqRel);
        let result = self.check(dir, state);
        let reclaimed = if result.is_some() {
            // Ready after all: take our waker back so it is not woken spuriously later.
            self.state.fetch_and(!waiting(dir), Ordering::AcqRel);
            waiters.slot(dir).take()
        } else {
            None
        };
        drop(waiters);
        // Wakers are dropped outside the lock: a drop may run arbitrary code.
        drop(replaced);
        drop(reclaimed);

        match result {
            Some(ready) => Poll::Ready(ready),
            None => Poll::Pending,
        }
    }

    /// `Some(result)` if `state` lets a waiter in `dir` proceed; records the tick it saw.
    fn check(&self, dir: Direction, state: usize) -> Option<io::Result<()>> {
        if state & SHUTDOWN != 0 {
            return Some(Err(shutdown_error()));
        }
        if state & ready_mask(dir) != 0 {
            self.seen[index(dir)].store(tick_of(state), Ordering::Relaxed);
            return Some(Ok(()));
        }
        None
    }

    /// Forgets readiness in `dir` after an operation returned `WouldBlock` — unless an event
    /// arrived since the `poll_ready` that reported the readiness (protocol step C1).
    ///
    /// Closed bits are never cleared (they are final states).
    pub fn clear_readiness(&self, dir: Direction) {
        let seen = self.seen[index(dir)].load(Ordering::Relaxed);
        // C1. A compare-and-swap loop rather than `fetch_and`: the clear must fail as a whole if
        // the tick moved, because a `dispatch` (D1) that bumped the tick may have set the very bit
        // we would clear, for data that arrived after our operation's `WouldBlock`.
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                if tick_of(state) != seen {
                    return None;
                }
                let next = state & !clear_mask(dir);
                (next != state).then_some(next)
            });
    }

    /// Records the readiness of one event and wakes the waiters it satisfies (steps D1–D3).
    ///
    /// Returns how many wakers were woken (0–2). Called by whoever harvested the event: the
    /// reactor thread or a worker. Takes the waker lock only if a satisfied direction has a
    /// waiter (its waiting bit is set).
    pub fn dispatch(&self, ready: Ready) -> usize {
        let bits = ready.0 & READY_MASK;
        // D1. OR in the bits and bump the tick in one atomic step, so no `clear_readiness` can
        // slip between them. `AcqRel`: the release half publishes the bits to W1/W3's acquire
        // loads; the acquire half keeps the read-modify-write chain with C1 and W3 ordered.
        let prev = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |state| {
                let tick = (tick_of(state) + 1) & TICK_MAX;
                Some((tick << TICK_SHIFT) | (state & !(TICK_MAX << TICK_SHIFT)) | bits)
            })
            .unwrap_or_else(|state| state);
        // D2, D3. Take the satisfied wakers under the lock, wake them after releasing it; skip
        // both if nobody waits in a satisfied direction.
        if prev & waiting_for(bits) == 0 {
            return 0;
        }
        self.wake(bits)
    }

    /// Marks the source shut down and wakes both waiters. Every later `poll_ready` returns the
    /// shutdown error. Returns how many wakers were woken.
    pub fn shutdown(&self) -> usize {
        self.state.fetch_or(SHUTDOWN, Ordering::AcqRel);
        self.wake(READY_MASK)
    }

    /// Wakes the waiters whose direction `bits` satisfies. Never wakes under the lock: a waker
    /// may take locks of its own (a scheduler inbox) and must not nest inside ours.
    fn wake(&self, bits: usize) -> usize {
        let (reader, writer) = {
            let mut waiters = lock(&self.waiters);
            // The slots empty under the lock, and their waiting bits with them.
            self.state
                .fetch_and(!waiting_for(bits & READY_MASK), Ordering::AcqRel);
            let reader = if bits & ready_mask(Direction::Read) != 0 {
                waiters.reader.take()
            } else {
                None
            };
            let writer = if bits & ready_mask(Direction::Write) != 0 {
                waiters.writer.take()
            } else {
                None
            };
            (reader, writer)
        };
        let mut woken = 0;
        let mut panic = None;
        for waker in [reader, writer].into_iter().flatten() {
            // A panicking reader's waker must not leave the writer unwoken.
            let wake = std::panic::AssertUnwindSafe(|| waker.wake());
            if let Err(payload) = std::panic::catch_unwind(wake) {
                panic.get_or_insert(payload);
            }
            woken += 1;
        }
        if let Some(payload) = panic {
            std::panic::resume_unwind(payload);
        }
        woken
    }

    /// True if a task waits in either direction (its waker is stored). Deadlock detection asks
    /// this: a source nobody waits on can become ready without waking anyone.
    pub fn has_waiters(&self) -> bool {
        let waiters = lock(&self.waiters);
        waiters.reader.is_some() || waiters.writer.is_some()
    }

    /// The readiness bits currently set (for tests).
    #[cfg(any(grove_loom, test))]
    pub fn readiness(&self) -> Ready {
        Ready(self.state.load(Ordering::Acquire) & READY_MASK)
    }

    /// True once [`shutdown`](Self::shutdown) ran.
    #[cfg(any(grove_loom, test))]
    pub fn is_shutdown(&self) -> bool {
        self.state.load(Ordering::Acquire) & SHUTDOWN != 0
    }
}

impl Default for ScheduledIo {
    fn default() -> ScheduledIo {
        ScheduledIo::new()
    }
}

impl fmt::Debug for ScheduledIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.load(Ordering::Relaxed);
        f.debug_struct("ScheduledIo")
            .field("readiness", &Ready(state & READY_MASK))
            .field("tick", &tick_of(state))
            .field("shutdown", &(state & SHUTDOWN != 0))
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, not(grove_loom)))]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        (count.clone(), Waker::from(count))
    }

    fn poll(io: &ScheduledIo, dir: Direction, waker: &Waker) -> Poll<io::Result<()>> {
        io.poll_ready(dir, &mut Context::from_waker(waker))
    }

    #[test]
    fn pending_then_woken_by_matching_direction_only() {
        let io = ScheduledIo::new();
        let (reads, read_waker) = waker();
        let (writes, write_waker) = waker();
        assert!(poll(&io, Direction::Read, &read_waker).is_pending());
        assert!(poll(&io, Direction::Write, &write_waker).is_pending());
        assert_eq!(io.dispatch(Ready::WRITABLE), 1);
        assert_eq!((reads.0.load(SeqCst), writes.0.load(SeqCst)), (0, 1));
        assert!(poll(&io, Direction::Write, &write_waker).is_ready());
        assert!(!io.readiness().is_ready(Direction::Read));
        assert_eq!(io.dispatch(Ready::READABLE), 1);
        assert_eq!(reads.0.load(SeqCst), 1);
        assert!(matches!(
            poll(&io, Direction::Read, &read_waker),
            Poll::Ready(Ok(()))
        ));
    }

    #[test]
    fn clear_respects_the_tick() {
        let io = ScheduledIo::new();
        let (_, w) = waker();
        io.dispatch(Ready::READABLE);
        assert!(poll(&io, Direction::Read, &w).is_ready());
        // The operation returned WouldBlock, but another event arrived before the clear.
        io.dispatch(Ready::READABLE);
        io.clear_readiness(Direction::Read);
        assert!(
            poll(&io, Direction::Read, &w).is_ready(),
            "event lost by clear"
        );
        // No event since that poll: the clear sticks.
        io.clear_readiness(Direction::Read);
        assert!(poll(&io, Direction::Read, &w).is_pending());
    }

    #[test]
    fn closed_is_final_error_is_not() {
        let io = ScheduledIo::new();
        let (_, w) = waker();
        io.dispatch(Ready::ERROR);
        assert!(poll(&io, Direction::Read, &w).is_ready());
        assert!(poll(&io, Direction::Write, &w).is_ready());
        io.clear_readiness(Direction::Read);
        io.clear_readiness(Direction::Write);
        assert!(poll(&io, Direction::Read, &w).is_pending());
        assert!(poll(&io, Direction::Write, &w).is_pending());
        io.dispatch(Ready::READ_CLOSED);
        assert!(poll(&io, Direction::Read, &w).is_ready());
        io.clear_readiness(Direction::Read);
        assert!(
            poll(&io, Direction::Read, &w).is_ready(),
            "closed bit cleared"
        );
        assert!(io.readiness().is_ready(Direction::Read));
        assert!(!Ready::READ_CLOSED.is_empty());
    }

    #[test]
    fn shutdown_wakes_both_and_errors() {
        let io = ScheduledIo::new();
        let (count, w) = waker();
        assert!(poll(&io, Direction::Read, &w).is_pending());
        assert!(poll(&io, Direction::Write, &w).is_pending());
        assert_eq!(io.shutdown(), 2);
        assert_eq!(count.0.load(SeqCst), 2);
        assert!(io.is_shutdown());
        match poll(&io, Direction::Read, &w) {
            Poll::Ready(Err(err)) => assert_eq!(err.to_string(), "grove reactor is shut down"),
            other => panic!("expected the shutdown error, got {other:?}"),
        }
    }

    #[test]
    fn tick_wraps() {
        let io = ScheduledIo::new();
        io.state.store(TICK_MAX << TICK_SHIFT, Ordering::Relaxed);
        io.dispatch(Ready::READABLE);
        assert_eq!(tick_of(io.state.load(Ordering::Relaxed)), 0);
        assert!(io.readiness().is_ready(Direction::Read));
    }
}
