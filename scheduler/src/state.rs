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
//! Orderings: `unpark`'s successful CAS is `AcqRel` so that whatever the *winning*
//! waker published before waking happens-before the greenlet runs again;
//! `complete_park` is `AcqRel` for the mirror reason. A wake that finds the greenlet
//! already notified or scheduled does nothing and so publishes nothing: primitives must
//! therefore re-check their condition under their own synchronization after
//! registering a waker, never rely on the wake itself to carry data.

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
    /// Only the owner of a `SCHEDULED` greenlet calls this, so a plain store suffices.
    pub fn start_running(&self) {
        debug_assert_eq!(
            self.0.load(Ordering::Relaxed),
            SCHEDULED,
            "start_running: bad state"
        );
        self.0.store(RUNNING, Ordering::Relaxed);
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
                // Only the hub moves a RUNNING greenlet on, and unparkers do nothing in
                // RUNNING|NOTIFIED, so a store cannot overwrite anybody's transition.
                self.0.store(SCHEDULED, Ordering::Release);
                false
            }
        }
    }

    /// The greenlet yielded: it goes straight back on a run queue. A pending
    /// notification is absorbed, since the greenlet will run again anyway.
    pub fn complete_yield(&self) {
        self.0.store(SCHEDULED, Ordering::Release);
    }

    /// The greenlet's body returned (or unwound). Publishes its output.
    pub fn complete(&self) {
        self.0.store(DONE, Ordering::Release);
    }

    /// Step 3, from any thread.
    pub fn unpark(&self) -> Unpark {
        let mut cur = self.0.load(Ordering::Acquire);
        loop {
            let next = match cur {
                PARKED => SCHEDULED,
                RUNNING => RUNNING | NOTIFIED,
                _ => return Unpark::Nothing,
            };
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
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
