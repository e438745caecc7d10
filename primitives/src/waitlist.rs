//! The wait list every blocking primitive is built on: a FIFO of parked waiters with
//! direct hand-off, safe against waiters that are killed or timed out mid-wait.
//!
//! # Vocabulary
//! A primitive keeps its state (items, permits, a flag) and a [`WaitList`] behind its
//! own `Mutex`. A waiter that cannot proceed enqueues a [`Ticket`] and parks with the
//! lock released. A notifier, holding the lock, pops the *first* ticket and hands it
//! the value (an item, a permit, `()`), then wakes it. The woken waiter takes the value
//! from its ticket without re-checking the primitive: that is what makes service FIFO
//! (nobody can barge in between the hand-off and the waiter running).
//!
//! # Cancellation (kill, Timeout, a deadline)
//! A waiter may be unwound from `park` (kill, Timeout) or give up at its deadline.
//! [`wait`] then, under the primitive's lock, either removes its still-queued ticket,
//! or — if a notifier already handed it a value it will now never use — gives that
//! value back to the primitive through the caller's `pass_on` (which typically
//! hands it to the next waiter or returns it to the pool). So no item, permit or
//! wake-up is ever lost, and the primitive stays consistent.
//!
//! # Protocol (lock = the primitive's mutex; slot = the ticket's own small mutex)
//! 1. Waiter, under lock: the primitive cannot proceed → `push` a ticket (FIFO tail).
//! 2. Waiter, lock released: loop { if the slot holds a value → take it, done;
//!    park (or park until the deadline) }.
//! 3. Notifier, under lock: `pop` the head ticket; under its slot, store the value and
//!    take the waker; wake it after releasing the slot.
//! 4. Cancel, under lock: if the ticket is still queued, remove it; else its slot has
//!    (or had) the value: take it and `pass_on` it.
//!
//! The slot mutex orders 2 against 3: the waiter either sees the value, or its waker
//! was stored before the notifier took it (`push` stores the waker; the waiter never
//! changes waker, since a greenlet's or thread's waker is the same for its life).
//!
//! # Loom
//! The protocol is model-checked in `loom-tests/tests/waitlist.rs`. For that, the
//! core ([`WaitList::push_with`], [`wait_with`]) takes the waker and the parking as
//! arguments, and its `Arc`/`Mutex` come from `crate::loom`; [`WaitList::push`] and
//! [`wait`] are the scheduler-bound wrappers every primitive uses, not built under
//! `--cfg grove_loom` (where the scheduler has no greenlets to park).

// Items are `pub` so that `__loom` can re-export them to the loom tests; in the normal
// build the module is private and they stay crate-internal.
#![allow(unreachable_pub)]

use std::collections::VecDeque;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::task::Waker;
#[cfg(not(grove_loom))]
use std::time::Instant;

use crate::loom::{Arc, Mutex, MutexGuard, PoisonError};

/// Locks a primitive's mutex, ignoring poison: primitives keep their state consistent
/// across unwinds (that is this module's job), so a poisoned lock holds valid state.
pub fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Slot<T> {
    waker: Option<Waker>,
    value: Option<T>,
    /// Popped by a notifier (the value may since have been taken).
    notified: bool,
}

/// One waiter's place in a [`WaitList`].
pub struct Ticket<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

impl<T> fmt::Debug for Ticket<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket").finish_non_exhaustive()
    }
}

impl<T> Ticket<T> {
    /// Takes the handed-over value, if a notifier has delivered one.
    fn take(&self) -> Option<T> {
        lock(&self.slot).value.take()
    }
}

/// A FIFO of waiters, each to be handed a `T`. Lives inside a primitive's mutex.
pub struct WaitList<T> {
    queue: VecDeque<Arc<Mutex<Slot<T>>>>,
}

impl<T> Default for WaitList<T> {
    fn default() -> Self {
        WaitList {
            queue: VecDeque::new(),
        }
    }
}

impl<T> fmt::Debug for WaitList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitList")
            .field("waiters", &self.queue.len())
            .finish()
    }
}

impl<T> WaitList<T> {
    /// Number of waiters.
    // Public only under loom (re-exported to the models), which need no `is_empty`.
    #[cfg_attr(grove_loom, allow(clippy::len_without_is_empty))]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Step 1: enqueues the current greenlet (or thread) at the tail.
    #[cfg(not(grove_loom))]
    pub fn push(&mut self) -> Ticket<T> {
        self.push_with(grove_scheduler::current_waker())
    }

    /// Step 1 with an explicit `waker`: the one a notifier will wake.
    pub fn push_with(&mut self, waker: Waker) -> Ticket<T> {
        let slot = Arc::new(Mutex::new(Slot {
            waker: Some(waker),
            value: None,
            notified: false,
        }));
        self.queue.push_back(slot.clone());
        Ticket { slot }
    }

    /// Step 3: hands `value` to the first waiter and wakes it; gives the value back
    /// if nobody waits.
    pub fn notify_one(&mut self, value: T) -> Result<(), T> {
        let Some(slot) = self.queue.pop_front() else {
            return Err(value);
        };
        let waker = {
            let mut s = lock(&slot);
            s.value = Some(value);
            s.notified = true;
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Hands a value made by `make` to every waiter (e.g. `Event::set`).
    pub fn notify_all(&mut self, mut make: impl FnMut() -> T) {
        while self.notify_one(make()).is_ok() {}
    }

    /// Step 4: removes `ticket` if still queued (returns `None`), else returns the value
    /// it was handed and has not taken.
    fn cancel(&mut self, ticket: &Ticket<T>) -> Option<T> {
        if let Some(pos) = self.queue.iter().position(|s| Arc::ptr_eq(s, &ticket.slot)) {
            self.queue.remove(pos);
            return None;
        }
        let mut s = lock(&ticket.slot);
        debug_assert!(
            s.notified,
            "WaitList::cancel: ticket neither queued nor notified"
        );
        s.value.take()
    }
}

/// Step 2 (and 4 on the way out): parks until `ticket` is handed a value or `deadline`
/// passes. Returns the value, or `None` at the deadline — unless a value was handed
/// over at the very moment the deadline passed: then it is returned (`Some`), since
/// giving it back would be a pointless round trip (primitives rely on this to never
/// lose a permit or item).
///
/// `state` is the primitive's mutex and `list` finds its wait list in it; `pass_on`
/// receives (under that lock) a value that was handed over but will not be used
/// because the wait ended by deadline or unwinding. Cancellation-safe: if the waiter
/// is unwound from `park` (kill, Timeout), the ticket is cancelled the same way before
/// the unwind continues.
#[cfg(not(grove_loom))]
pub fn wait<S, T>(
    state: &Mutex<S>,
    list: impl Fn(&mut S) -> &mut WaitList<T>,
    ticket: Ticket<T>,
    deadline: Option<Instant>,
    pass_on: impl Fn(&mut S, T),
) -> Option<T> {
    wait_with(state, list, ticket, pass_on, || match deadline {
        Some(d) if Instant::now() >= d => false,
        Some(d) => {
            grove_scheduler::park_timeout(d);
            true
        }
        None => {
            grove_scheduler::park();
            true
        }
    })
}

/// [`wait`] with the parking given: `park` either parks once (until a wake, a
/// spurious wake, or the deadline) and returns `true`, or returns `false` without
/// parking because the deadline has passed: the wait gives up. `park` may also unwind
/// (kill, Timeout); see [`wait`] for what happens then.
pub fn wait_with<S, T>(
    state: &Mutex<S>,
    list: impl Fn(&mut S) -> &mut WaitList<T>,
    ticket: Ticket<T>,
    pass_on: impl Fn(&mut S, T),
    mut park: impl FnMut() -> bool,
) -> Option<T> {
    let cancel = |ticket: &Ticket<T>| -> Option<T> {
        let mut s = lock(state);
        list(&mut s).cancel(ticket)
    };
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| loop {
        if let Some(v) = ticket.take() {
            return Some(v);
        }
        if !park() {
            return None;
        }
    }));
    match outcome {
        Ok(Some(v)) => Some(v),
        Ok(None) => {
            // Deadline: a value handed over at the last moment is still ours to use.
            cancel(&ticket)
        }
        Err(unwind) => {
            let mut s = lock(state);
            if let Some(v) = list(&mut s).cancel(&ticket) {
                pass_on(&mut s, v);
            }
            drop(s);
            panic::resume_unwind(unwind)
        }
    }
}
