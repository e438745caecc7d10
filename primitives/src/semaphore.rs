//! `Semaphore` and `BoundedSemaphore`: counted permits (gevent's `gevent.lock`).
//!
//! # Vocabulary
//! A *permit* is the right to proceed. The semaphore's state is the number of free
//! permits plus a [`WaitList<()>`](crate::waitlist::WaitList) of blocked acquirers,
//! each waiting to be *handed* one permit. [`Lock`](crate::Lock) is a bounded
//! semaphore of one permit, and [`RLock`](crate::RLock) adds an owner on top, so the
//! protocol below is the only one the lock family has.
//!
//! # Invariant
//! `waiters` is non-empty only while `permits == 0`: a release hands its permit to the
//! first waiter instead of counting it, so a free permit and a waiting acquirer never
//! coexist. That makes service FIFO and `try_acquire` fair (it cannot take a permit
//! a waiter is owed, because there is none).
//!
//! # Protocol (all under the semaphore's mutex, released while parked)
//! 1. Acquire: a free permit → take it. Else enqueue a ticket and park ([`wait`]);
//!    the permit arrives *in* the ticket, so the woken acquirer owns it without
//!    re-checking the count.
//! 2. Release: a waiter → hand it the permit (`notify_one`) and wake it. Else count it
//!    (a bounded semaphore already at its bound refuses: [`OverRelease`]).
//! 3. Cancellation: an acquirer killed or timed out (by [`Timeout`]) while queued is
//!    removed; one that had already been handed a permit gives it back through
//!    step 2 (`pass_on`), so the next waiter gets it or it is counted. An acquirer
//!    reaching its *own* deadline with a permit just handed over keeps it and
//!    succeeds. Either way no permit is lost or duplicated.
//!
//! The mutex is a std one held for a few instructions, never across a park, so a
//! greenlet waiting for a permit never blocks its worker thread, and releases work
//! from any thread.
//!
//! [`Timeout`]: grove_scheduler::Timeout

use std::error::Error;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::waitlist::{lock, wait, WaitList};

struct State {
    permits: usize,
    waiters: WaitList<()>,
}

/// The counting core shared by [`Semaphore`], [`BoundedSemaphore`], [`Lock`](crate::Lock)
/// and [`RLock`](crate::RLock).
pub(crate) struct Core {
    state: Mutex<State>,
    /// The most permits a release may bring back (`None`: unbounded).
    bound: Option<usize>,
}

impl Core {
    pub(crate) fn new(permits: usize, bound: Option<usize>) -> Core {
        Core {
            state: Mutex::new(State {
                permits,
                waiters: WaitList::default(),
            }),
            bound,
        }
    }

    /// Free permits and blocked acquirers, for `Debug` impls.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let s = lock(&self.state);
        (s.permits, s.waiters.len())
    }

    pub(crate) fn available(&self) -> usize {
        lock(&self.state).permits
    }

    pub(crate) fn try_acquire(&self) -> bool {
        let mut s = lock(&self.state);
        if s.permits > 0 {
            s.permits -= 1;
            true
        } else {
            false
        }
    }

    /// Step 1: takes a permit, waiting until `deadline` at the latest.
    pub(crate) fn acquire_until(&self, deadline: Option<Instant>) -> bool {
        let mut s = lock(&self.state);
        if s.permits > 0 {
            s.permits -= 1;
            return true;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        wait(s, &self.state, |s| &mut s.waiters, deadline, Self::put_back).is_some()
    }

    /// A guard for a permit just taken.
    pub(crate) fn guard(&self) -> SemaphoreGuard<'_> {
        SemaphoreGuard { core: self }
    }

    /// Step 2: gives a permit back.
    pub(crate) fn release(&self) -> Result<(), OverRelease> {
        let mut s = lock(&self.state);
        if self.bound.is_some_and(|b| s.permits >= b) {
            return Err(OverRelease);
        }
        Self::put_back(&mut s, ());
        Ok(())
    }

    /// Hands a permit to the first waiter, or counts it (steps 2 and 3).
    fn put_back(s: &mut State, permit: ()) {
        if s.waiters.notify_one(permit).is_err() {
            s.permits = s
                .permits
                .checked_add(1)
                .expect("Semaphore::release: permit count overflows usize");
        }
    }
}

/// The deadline `timeout` from now, or `None` (no deadline) if that is past the end
/// of `Instant`'s range.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// The error of releasing a [`BoundedSemaphore`] (or unlocking a [`Lock`](crate::Lock))
/// more times than it was acquired. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverRelease;

impl fmt::Display for OverRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("released more times than acquired")
    }
}

impl Error for OverRelease {}

/// A counting semaphore (gevent's `Semaphore`): at most `permits` holders at once;
/// others wait, served first come, first served.
///
/// Cheap to clone: clones share the permits. [`acquire`](Self::acquire) parks a
/// greenlet (its worker runs others) or blocks a plain OS thread, and returns a guard
/// that gives the permit back when dropped. Holding a guard across a blocking call is
/// fine: a started greenlet never changes threads. For gevent's manual style, call
/// [`SemaphoreGuard::forget`] and later [`release`](Self::release) — from any greenlet
/// or thread. A released permit goes straight to the longest-waiting acquirer.
/// Acquiring is cancellation-safe: an acquirer killed or timed out mid-wait never
/// takes a permit with it.
///
/// ```
/// use grove_primitives::Semaphore;
///
/// let rt = grove_scheduler::Runtime::builder().workers(2).build().unwrap();
/// let sem = Semaphore::new(2);
/// let hs: Vec<_> = (0..10)
///     .map(|i| {
///         let sem = sem.clone();
///         rt.spawn(move || {
///             let _permit = sem.acquire(); // at most two run this at once
///             grove_scheduler::yield_now();
///             i
///         })
///     })
///     .collect();
/// let total: i32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
/// assert_eq!(total, 45);
/// assert_eq!(sem.available(), 2);
/// ```
#[derive(Clone)]
pub struct Semaphore {
    core: Arc<Core>,
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (available, waiters) = self.core.counts();
        f.debug_struct("Semaphore")
            .field("available", &available)
            .field("waiters", &waiters)
            .finish()
    }
}

impl Semaphore {
    /// A semaphore with `permits` free permits.
    pub fn new(permits: usize) -> Semaphore {
        Semaphore::with_bound(permits, None)
    }

    fn with_bound(permits: usize, bound: Option<usize>) -> Semaphore {
        Semaphore {
            core: Arc::new(Core::new(permits, bound)),
        }
    }

    /// Takes a permit, waiting (in FIFO order) until one is free.
    pub fn acquire(&self) -> SemaphoreGuard<'_> {
        self.core.acquire_until(None);
        self.core.guard()
    }

    /// Takes a permit if one is free now.
    pub fn try_acquire(&self) -> Option<SemaphoreGuard<'_>> {
        self.core.try_acquire().then(|| self.core.guard())
    }

    /// Takes a permit, waiting at most `timeout`; `None` if none came in time (then
    /// nothing changed).
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphoreGuard<'_>> {
        self.core
            .acquire_until(deadline_after(timeout))
            .then(|| self.core.guard())
    }

    /// Adds a permit (gevent's `release`): hands it to the first waiter, if any. Pairs
    /// with [`SemaphoreGuard::forget`]; an unbounded semaphore accepts any number.
    pub fn release(&self) {
        // Unbounded: never refused.
        let _ = self.core.release();
    }

    /// Number of free permits now (gevent's `counter`).
    pub fn available(&self) -> usize {
        self.core.available()
    }
}

/// A semaphore that refuses to grow past its initial count (gevent's
/// `BoundedSemaphore`): a [`release`](Self::release) without a matching acquire is an
/// error, catching unbalanced manual acquire/release pairs.
///
/// Otherwise the same as [`Semaphore`] (the same implementation underneath).
///
/// ```
/// use grove_primitives::BoundedSemaphore;
///
/// let rt = grove_scheduler::Runtime::builder().workers(2).build().unwrap();
/// let sem = BoundedSemaphore::new(1);
/// rt.block_on(move || {
///     sem.acquire().forget(); // manual style
///     assert!(sem.try_acquire().is_none());
///     assert!(sem.release().is_ok());
///     assert!(sem.release().is_err()); // one acquire, two releases
///     assert_eq!(sem.available(), 1);
/// });
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    sem: Semaphore,
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (available, waiters) = self.sem.core.counts();
        f.debug_struct("BoundedSemaphore")
            .field("available", &available)
            .field("waiters", &waiters)
            .field("bound", &self.sem.core.bound)
            .finish()
    }
}

impl BoundedSemaphore {
    /// A semaphore with `permits` free permits, which is also its bound.
    pub fn new(permits: usize) -> BoundedSemaphore {
        BoundedSemaphore {
            sem: Semaphore::with_bound(permits, Some(permits)),
        }
    }

    /// Takes a permit, waiting (in FIFO order) until one is free.
    pub fn acquire(&self) -> SemaphoreGuard<'_> {
        self.sem.acquire()
    }

    /// Takes a permit if one is free now.
    pub fn try_acquire(&self) -> Option<SemaphoreGuard<'_>> {
        self.sem.try_acquire()
    }

    /// Takes a permit, waiting at most `timeout`; `None` if none came in time.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<SemaphoreGuard<'_>> {
        self.sem.acquire_timeout(timeout)
    }

    /// Gives a permit back, handing it to the first waiter if any; an error (and no
    /// change) if all permits are already free.
    pub fn release(&self) -> Result<(), OverRelease> {
        self.sem.core.release()
    }

    /// Number of free permits now.
    pub fn available(&self) -> usize {
        self.sem.available()
    }
}

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`]; dropping it releases it.
///
/// `Send`: a permit may be given back from any greenlet or thread.
#[must_use = "dropping the guard releases the permit at once"]
pub struct SemaphoreGuard<'a> {
    core: &'a Core,
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard").finish_non_exhaustive()
    }
}

impl SemaphoreGuard<'_> {
    /// Keeps the permit taken without releasing it: give it back later with
    /// `release` (gevent's manual `acquire()` ... `release()`).
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // Refused only by a bounded semaphore that a manual `release` already filled
        // while this guard lived: the permit is back already, so there is nothing to do.
        let _ = self.core.release();
    }
}
