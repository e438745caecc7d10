//! The wait list every blocking primitive is built on: a FIFO of parked waiters with
//! direct hand-off, safe against waiters that are killed or timed out mid-wait.
//!
//! This is one of grove's few `unsafe` modules: waiters' nodes live on their own stacks
//! and the list points at them (see "Why nodes live on the waiter's stack").
//!
//! # Vocabulary
//! A primitive keeps its state (items, permits, a flag) and a [`WaitList`] behind its
//! own `Mutex`. A waiter that cannot proceed links a *node* into the list and parks
//! with the lock released. A notifier, holding the lock, unlinks the *first* node and
//! hands it the value (an item, a permit, `()`), then wakes it. The woken waiter takes
//! the value from its node without re-checking the primitive: that is what makes
//! service FIFO (nobody can barge in between the hand-off and the waiter running).
//!
//! # Cancellation (kill, Timeout, a deadline)
//! A waiter may be unwound from `park` (kill, Timeout) or give up at its deadline.
//! [`wait`] then, under the primitive's lock, either unlinks its still-queued node,
//! or — if a notifier already handed it a value it will now never use — gives that
//! value back to the primitive through the caller's `pass_on` (which typically
//! hands it to the next waiter or returns it to the pool). So no item, permit or
//! wake-up is ever lost, and the primitive stays consistent.
//!
//! # Protocol (lock = the primitive's mutex)
//! 1. Waiter, under lock: the primitive cannot proceed → [`wait_with`] builds a node on
//!    its own stack frame (the waker to wake, an empty value slot, `notified = false`)
//!    and links it at the FIFO tail; then it releases the lock.
//! 2. Waiter: loop { if `notified` (Acquire) → take the value from the node, done;
//!    park (or park until the deadline) }.
//! 3. Notifier, under lock: unlink the head node; move its waker out; store the value;
//!    set `notified` (Release). From that store on the node may vanish (its waiter may
//!    return at once), so the notifier touches it no more and wakes the waker it
//!    moved out.
//! 4. Cancel, under lock: if `notified`, the value is ours: take it and `pass_on` it
//!    (or, at a deadline, keep it); else the node is still linked: unlink it.
//!
//! Step 3 writes the value before the Release store and step 2 reads it after the
//! Acquire load that sees it, so the value is handed over without a second lock. The
//! waker never changes after step 1 (a greenlet's or thread's waker is the same for its
//! life), so a wake between steps 1 and 2 is never lost: parking with a wake pending
//! returns at once.
//!
//! # Why nodes live on the waiter's stack
//! The first version gave every wait an `Arc<Mutex<slot>>`: an allocation, a free and
//! four more lock operations per blocked call, about a third of a `Queue` ping-pong
//! round trip. A greenlet's stack is exactly what an intrusive wait queue wants: it
//! stays put while the greenlet is parked, for as long as the wait lasts. The list
//! holds pointers to those nodes (a `VecDeque` of them, so FIFO order costs nothing
//! and cancellation, which is rare, scans). Soundness rests on one invariant:
//!
//! > **A linked node outlives its link.** [`wait_with`] does not return or unwind
//! > past its frame until, under the lock, its node is unlinked (steps 3 or 4).
//!
//! `wait_with` keeps it on every path out: a normal return follows step 2 (a notifier
//! already unlinked the node) or step 4; an unwind out of `park` (kill, Timeout, the
//! runtime's shutdown unwinding a parked greenlet) is caught, runs step 4, and is
//! resumed. A parked greenlet's stack is never freed without being unwound first
//! (the scheduler's shutdown unwinds every parked greenlet; a process that leaks a
//! runtime leaks its stacks too), and an OS thread cannot leave a frame without
//! unwinding it. The list itself cannot die first: every waiter borrows the mutex
//! that owns it for the whole wait.
//!
//! # Loom
//! The protocol is model-checked in `loom-tests/tests/waitlist.rs`. For that, the
//! core ([`wait_with`]) takes the waker and the parking as arguments, and its
//! `Mutex`, atomics and `UnsafeCell` come from `crate::loom`; [`wait`] is the wrapper
//! every primitive uses, parking through `crate::loom` too (the scheduler's park, or
//! under loom a per-thread token), so the primitives' own models
//! (`loom-tests/tests/{semaphore,queue}.rs`) run the real code.

// Items are `pub` so that `__loom` can re-export them to the loom tests; in the normal
// build the module is private and they stay crate-internal.
#![allow(unreachable_pub)]

use std::collections::VecDeque;
use std::fmt;
use std::marker::PhantomPinned;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::{self, NonNull};
use std::task::Waker;
use std::time::Instant;

use crate::loom::{AtomicBool, Mutex, MutexGuard, Ordering, PoisonError, UnsafeCell};

/// Locks a primitive's mutex, ignoring poison: primitives keep their state consistent
/// across unwinds (that is this module's job), so a poisoned lock holds valid state.
pub fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One waiter's place in a [`WaitList`], on the waiter's stack.
struct Node<T> {
    /// Set in step 1; moved out by the notifier (under the lock) in step 3.
    waker: UnsafeCell<Option<Waker>>,
    /// Written by the notifier (under the lock) before `notified`; taken by the waiter
    /// after seeing `notified`, or under the lock in step 4.
    value: UnsafeCell<Option<T>>,
    /// Step 3 happened: the node is unlinked and `value` holds what was handed over.
    notified: AtomicBool,
    /// Linked by address: must not move while linked (it does not: it is a local of
    /// `wait_with`, never moved after linking).
    _pinned: PhantomPinned,
}

/// A FIFO of waiters, each to be handed a `T`. Lives inside a primitive's mutex.
pub struct WaitList<T> {
    queue: VecDeque<NonNull<Node<T>>>,
}

// SAFETY: the pointed-to nodes are touched only by whoever holds the primitive's mutex
// that owns this list (steps 3, 4), and by their own waiter after step 3 has unlinked
// them; what they carry across threads (a `Waker`, a `T`) is `Send` when `T` is.
unsafe impl<T: Send> Send for WaitList<T> {}

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

    /// Step 3: hands `value` to the first waiter and wakes it; gives the value back
    /// if nobody waits. Call with the primitive's lock held (it owns `self`).
    pub fn notify_one(&mut self, value: T) -> Result<(), T> {
        let Some(node) = self.queue.pop_front() else {
            return Err(value);
        };
        // SAFETY: a linked node is alive ("A linked node outlives its link"): its waiter
        // cannot leave `wait_with` before seeing `notified` or unlinking the node under
        // the lock we hold, and it has not seen `notified` (only we set it, below).
        let node = unsafe { node.as_ref() };
        // SAFETY: nobody else touches a linked node's cells: its waiter reads them only
        // after `notified`, or under the lock we hold.
        let waker = node.waker.with_mut(|w| unsafe { (*w).take() });
        // SAFETY: as above.
        node.value.with_mut(|v| unsafe { *v = Some(value) });
        node.notified.store(true, Ordering::Release);
        // From here on `node` may be gone: its waiter may have returned.
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }

    /// Hands a value made by `make` to every waiter (e.g. `Event::set`).
    pub fn notify_all(&mut self, mut make: impl FnMut() -> T) {
        while self.notify_one(make()).is_ok() {}
    }

    /// Step 4, under the lock: unlinks `node` if still linked (returns `None`), else
    /// returns the value it was handed and has not taken.
    fn cancel(&mut self, node: &Node<T>) -> Option<T> {
        // `Relaxed`: `notified` only changes under the lock we hold.
        if node.notified.load(Ordering::Relaxed) {
            // SAFETY: unlinked and handed over: the cells are the waiter's (our caller's).
            return node.value.with_mut(|v| unsafe { (*v).take() });
        }
        match self.queue.iter().position(|n| ptr::eq(n.as_ptr(), node)) {
            Some(pos) => {
                self.queue.remove(pos);
                None
            }
            // Neither linked nor notified: a list other than the one it was linked into.
            // Returning would leave a dangling pointer behind, so stop here (Go's `throw`).
            None => std::process::abort(),
        }
    }
}

/// Steps 1–4: links the current greenlet (or thread) into the list `list` finds in
/// `guard`'s state, releases the lock and parks until handed a value or `deadline`
/// passes. Returns the value, or `None` at the deadline — unless a value was handed
/// over at the very moment the deadline passed: then it is returned (`Some`), since
/// giving it back would be a pointless round trip (primitives rely on this to never
/// lose a permit or item).
///
/// `what` names the wait for run-info dumps (`WaitReason::QUEUE_GET`). `guard` is the
/// primitive's lock, taken by the caller to find that it cannot proceed, and `state` the mutex it came from (for step 4); `list` must find the same
/// list every time. `pass_on` receives (under the lock) a value that was handed over
/// but will not be used because the wait ended by unwinding. Cancellation-safe: if the
/// waiter is unwound from `park` (kill, Timeout), its node is cancelled the same way
/// before the unwind continues.
pub fn wait<S, T>(
    what: grove_scheduler::WaitReason,
    guard: MutexGuard<'_, S>,
    state: &Mutex<S>,
    list: impl Fn(&mut S) -> &mut WaitList<T>,
    deadline: Option<Instant>,
    pass_on: impl Fn(&mut S, T),
) -> Option<T> {
    wait_at(what, Place::Back, guard, state, list, deadline, pass_on)
}

/// Where a waiter joins the FIFO.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// At the tail: a new waiter.
    Back,
    /// At the head: a waiter that was woken to *try* again (not handed anything), lost
    /// that try to someone faster, and waits again keeping its turn (Go's `sync.Mutex`
    /// re-queues such a waiter the same way).
    Front,
}

/// [`wait`], joining the list at `place`.
pub fn wait_at<S, T>(
    what: grove_scheduler::WaitReason,
    place: Place,
    guard: MutexGuard<'_, S>,
    state: &Mutex<S>,
    list: impl Fn(&mut S) -> &mut WaitList<T>,
    deadline: Option<Instant>,
    pass_on: impl Fn(&mut S, T),
) -> Option<T> {
    let waker = crate::loom::current_waker();
    link_and_wait(
        place,
        guard,
        state,
        list,
        waker,
        pass_on,
        || match deadline {
            Some(d) if Instant::now() >= d => false,
            Some(d) => {
                crate::loom::park_until_on(d, what);
                true
            }
            None => {
                crate::loom::park_on(what);
                true
            }
        },
    )
}

/// [`wait`] with the waker and the parking given: `waker` is what a notifier wakes;
/// `park` either parks once (until a wake, a spurious wake, or the deadline) and
/// returns `true`, or returns `false` without parking because the deadline has passed:
/// the wait gives up. `park` may also unwind (kill, Timeout); see [`wait`].
// The loom models' entry point; the primitives go through `wait`/`wait_at`.
#[cfg_attr(not(grove_loom), allow(dead_code))]
pub fn wait_with<S, T>(
    guard: MutexGuard<'_, S>,
    state: &Mutex<S>,
    list: impl Fn(&mut S) -> &mut WaitList<T>,
    waker: Waker,
    pass_on: impl Fn(&mut S, T),
    park: impl FnMut() -> bool,
) -> Option<T> {
    link_and_wait(Place::Back, guard, state, list, waker, pass_on, park)
}

fn link_and_wait<S, T>(
    place: Place,
    mut guard: MutexGuard<'_, S>,
    state: &Mutex<S>,
    list: impl Fn(&mut S) -> &mut WaitList<T>,
    waker: Waker,
    pass_on: impl Fn(&mut S, T),
    mut park: impl FnMut() -> bool,
) -> Option<T> {
    // Step 1. `node` stays in this frame, unmoved, until the function ends; every path
    // out below unlinks it first (the module's invariant).
    let node = Node {
        waker: UnsafeCell::new(Some(waker)),
        value: UnsafeCell::new(None),
        notified: AtomicBool::new(false),
        _pinned: PhantomPinned,
    };
    let queue = &mut list(&mut guard).queue;
    match place {
        Place::Back => queue.push_back(NonNull::from(&node)),
        Place::Front => queue.push_front(NonNull::from(&node)),
    }
    drop(guard);
    // Step 2.
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| loop {
        if node.notified.load(Ordering::Acquire) {
            // SAFETY: step 3 is complete (Acquire pairs with its Release) and unlinked
            // the node: nobody else touches its cells any more.
            return Some(node.value.with_mut(|v| unsafe { (*v).take() }));
        }
        if !park() {
            return None;
        }
    }));
    match outcome {
        Ok(Some(v)) => v,
        // Step 4 at the deadline: a value handed over at the last moment is still ours.
        Ok(None) => list(&mut lock(state)).cancel(&node),
        // Step 4 on an unwind: pass a handed-over value on, then keep unwinding.
        Err(unwind) => {
            let mut s = lock(state);
            if let Some(v) = list(&mut s).cancel(&node) {
                pass_on(&mut s, v);
            }
            drop(s);
            panic::resume_unwind(unwind)
        }
    }
}
