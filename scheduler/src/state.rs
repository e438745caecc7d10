//! The per-greenlet state word and its park/unpark protocol.
//!
//! # Vocabulary
//! A greenlet is *parked* when it has given up its worker until someone calls its
//! unparker (its `Waker`). Wakes can come from any thread at any time: the reactor,
//! another worker, a plain OS thread, or the greenlet's own worker.
//!
//! # The problem
//! A greenlet parks by switching from its own stack back to the hub. Until that switch
//! has completed, its stack is still in use; a wake that arrives in that window must
//! neither be lost (the greenlet would sleep forever) nor resume the greenlet early
//! (two threads would run on one stack).
//!
//! # The protocol
//! 1. The greenlet registers its waker with whatever it waits for, then switches to
//!    the hub asking to park. Its state is still `RUNNING`.
//! 2. The hub, now off the greenlet's stack, calls [`complete_park`]: a CAS
//!    `RUNNING → PARKED`. If an unpark arrived during steps 1–2 the state is
//!    `RUNNING | NOTIFIED`, the CAS fails, the state becomes `SCHEDULED` and the hub
//!    re-queues the greenlet itself. `PARKED` is never published before the switch,
//!    so nobody can resume a stack that is still running.
//! 3. [`unpark`] (any thread): `PARKED → SCHEDULED`, and the caller — the single winner
//!    of that CAS — queues the greenlet on its home worker; `RUNNING → RUNNING | NOTIFIED`
//!    and the hub of step 2 does the queueing; in every other state (`SCHEDULED`,
//!    already notified, `DONE`) the wake is redundant and does nothing.
//!
//! So each wake produces at most one queue insertion, a wake is never lost, and a
//! greenlet is never in two run queues at once. Spurious wakes are allowed (a stale
//! waker from an earlier wait may fire), so every blocking primitive re-checks its
//! condition in a loop.
//!
//! # Every wake publishes
//! What a waker wrote before waking happens-before the greenlet's next run, whatever
//! state the wake found: a primitive may set a flag, wake, and count on the greenlet
//! seeing the flag (grove's wait lists do; so does `Waker`'s contract for futures).
//! Every access that moves the word is therefore a read-modify-write with `AcqRel`:
//! `unpark` writes `SCHEDULED` or `RUNNING | NOTIFIED` back unchanged rather than just
//! loading it, and the hub's `start_running`, `complete_yield` and `complete_park`'s
//! requeue are swaps, not stores. The word's modification order then puts each wake
//! either before one of the hub's swaps (which acquires it) or after the greenlet is
//! `RUNNING` (so it becomes a `NOTIFIED` that `complete_park` acquires).
//!
//! The earlier version loaded the word in `unpark` and did nothing in `SCHEDULED`, and
//! `start_running` was a relaxed store: the greenlet's store of `RUNNING` and its load
//! of the wait list's flag could pass the waker's store of the flag and load of
//! `SCHEDULED` (the store-buffering litmus test), so it read the flag unset, parked,
//! and the wake was gone. It showed as a consumer parked forever in `Queue::get` after
//! `close`, about once per 10k–1M rounds of a queue stress loop on 2 workers; the loom
//! model `a_wake_of_a_scheduled_greenlet_is_seen_when_it_runs` (loom-tests `park.rs`)
//! finds it.

// Items are `pub` so that `__loom` can re-export them to the loom tests.
#![allow(unreachable_pub)]

use crate::loom::{AtomicU32, Ordering};

/// In a run queue (or being handed to one); owned by whoever queued it.
pub const SCHEDULED: u32 = 0;
/// On a worker's stack right now.
pub const RUNNING: u32 = 1;
/// Off every run queue, waiting for an unpark.
pub const PARKED: u32 = 2;
/// Finished; its output (if any) is published. Terminal.
pub const DONE: u32 = 3;
/// Flag on `RUNNING`: a wake arrived while running; the hub must re-queue it instead of parking.
pub const NOTIFIED: u32 = 4;

/// A greenlet's state word.
#[derive(Debug)]
pub struct State(AtomicU32);

/// What an [`unpark`](State::unpark) asks of its caller.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpark {
    /// The caller won `PARKED → SCHEDULED`: it must queue the greenlet on its home worker.
    Schedule,
    /// Nothing to do: the wake was recorded (running) or is redundant.
    Nothing,
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

impl State {
    /// A greenlet is born scheduled: `spawn` queues it straight away.
    pub fn new() -> State {
        State(AtomicU32::new(SCHEDULED))
    }

    /// The current value, for diagnostics and `is_finished`.
    pub fn load(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }

    /// The hub took the greenlet off a run queue and is about to resume it.
    ///
    /// Only the owner of a `SCHEDULED` greenlet calls this, but it must still be a
    /// read-modify-write: it acquires every wake that reached the greenlet while it was
    /// queued (see "Every wake publishes"). A plain store here let a greenlet resume,
    /// miss the flag its waker had just set, and park for good.
    pub fn start_running(&self) {
        let prev = self.0.swap(RUNNING, Ordering::AcqRel);
        debug_assert_eq!(prev, SCHEDULED, "start_running: bad state");
    }

    /// Step 2: the greenlet switched to the hub asking to park. Returns `true` if it is
    /// now parked, `false` if a wake raced in and the hub must re-queue it.
    pub fn complete_park(&self) -> bool {
        match self
            .0
            .compare_exchange(RUNNING, PARKED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(cur) => {
                debug_assert_eq!(cur, RUNNING | NOTIFIED, "complete_park: bad state");
                // Only the hub moves a RUNNING greenlet on, and unparkers leave
                // RUNNING|NOTIFIED as it is, so no transition is overwritten; a swap, not
                // a store, so that a wake arriving meanwhile is acquired too.
                self.0.swap(SCHEDULED, Ordering::AcqRel);
                false
            }
        }
    }

    /// The greenlet yielded: it goes straight back on a run queue. A pending
    /// notification is absorbed, since the greenlet will run again anyway (a swap, so
    /// that what its waker published is acquired).
    pub fn complete_yield(&self) {
        self.0.swap(SCHEDULED, Ordering::AcqRel);
    }

    /// The greenlet's body returned (or unwound). Publishes its output.
    pub fn complete(&self) {
        self.0.store(DONE, Ordering::Release);
    }

    /// Step 3, from any thread. Always a read-modify-write (unless the greenlet is
    /// `DONE`), also where it changes nothing (see "Every wake publishes").
    pub fn unpark(&self) -> Unpark {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let next = match cur {
                PARKED => SCHEDULED,
                RUNNING => RUNNING | NOTIFIED,
                DONE => return Unpark::Nothing,
                // SCHEDULED or RUNNING | NOTIFIED: written back unchanged, to publish.
                same => same,
            };
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) if cur == PARKED => return Unpark::Schedule,
                Ok(_) => return Unpark::Nothing,
                Err(actual) => cur = actual,
            }
        }
    }

    /// A readable name for diagnostics.
    pub fn describe(value: u32) -> &'static str {
        match value {
            SCHEDULED => "runnable",
            RUNNING => "running",
            PARKED => "parked",
            DONE => "finished",
            v if v == RUNNING | NOTIFIED => "running (woken)",
            _ => "invalid",
        }
    }
}
