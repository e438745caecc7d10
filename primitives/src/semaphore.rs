//! `Semaphore` and `BoundedSemaphore`: counted permits (gevent's `gevent.lock`).
//!
//! # Vocabulary
//! A *permit* is the right to proceed. The semaphore's state is the number of free
//! permits plus a [`WaitList<()>`](crate::waitlist::WaitList) of blocked acquirers,
//! each waiting to be *handed* one permit. [`Lock`](crate::Lock) is a bounded
//! semaphore of one permit, and [`RLock`](crate::RLock) adds an owner on top, so the
//! protocol below is the only one the lock family has.
//!
//! # The problem: convoys
//! The first version handed every released permit to the longest waiter (strict FIFO,
//! tokio's and gevent's choice). With greenlets that cannot move between workers, that
//! builds a *lock convoy*: once one greenlet of the other worker waits, every release
//! must wake it across threads, and the releaser, locking again a moment later, now
//! waits too, and so does every greenlet behind it: each lock operation becomes a
//! cross-core hand-off (measured: `mutex_contention` at 2.5x tokio). tokio escapes it by
//! moving the woken task to the releaser's worker; grove's greenlets stay home.
//!
//! # The approach: barging with a starvation hand-off (Go's `sync.Mutex`)
//! A release makes the permit *free* and wakes the first waiter to *try* for it; until
//! that waiter runs, anyone may take the free permit (a greenlet that unlocks and locks
//! again in a loop keeps going without a switch). A woken waiter that loses the race
//! waits again **at the head**, keeping its turn. Once the head waiter has waited 1 ms,
//! it is *starving*: the next release hands the permit straight to it (the old
//! behaviour, for one permit), so nobody waits for ever behind faster greenlets.
//! Waiters are still woken in FIFO order; what a newcomer may do is take a permit that
//! is free at the moment it asks.
//!
//! # Protocol (all under the semaphore's mutex, released while parked)
//! 1. Acquire: a free permit, and no starving head waiter to hand it to → take it.
//!    Else enqueue and park ([`wait_at`]); what arrives is a [`Grant`].
//! 2. Release: a starving head waiter → hand it the permit (`Grant::Permit`) and clear
//!    the starving flag. Else count the permit as free, and, unless a woken waiter is
//!    already on its way (`woken`), wake the head waiter (`Grant::Retry`). A bounded
//!    semaphore already at its bound refuses: [`OverRelease`].
//! 3. A waiter woken with `Retry` clears `woken` and takes a free permit if there is
//!    one; else it waits again at the head, and if it has now waited 1 ms in all it
//!    marks itself starving.
//! 4. Cancellation: an acquirer killed or timed out (by [`Timeout`]) while queued is
//!    removed; one that had been handed a `Permit` gives it back through step 2
//!    (`pass_on`); one that had been sent a `Retry` passes the wake-up on (the next
//!    waiter is woken if a permit is free). An acquirer reaching its *own* deadline with
//!    a grant just handed over uses it. Either way no permit or wake-up is lost.
//!
//! The mutex is a std one held for a few instructions, never across a park, so a
//! greenlet waiting for a permit never blocks its worker thread, and releases work
//! from any thread.
//!
//! [`Timeout`]: grove_scheduler::Timeout

use std::error::Error;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::loom::Mutex;
use crate::waitlist::{lock, wait_at, Place, WaitList};

/// How long a waiter waits before the next release is handed to it (Go's
/// `starvationThresholdNs`).
#[cfg(not(grove_loom))]
const STARVING_AFTER: Duration = Duration::from_millis(1);
/// Under loom (no clock), at once: a waiter that loses one retry starves, so the models
/// reach the starving hand-off deterministically.
#[cfg(grove_loom)]
const STARVING_AFTER: Duration = Duration::ZERO;

/// What a waiter is handed (protocol steps 2–3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grant {
    /// The permit itself: the waiter owns it.
    Permit,
    /// A wake-up to try for a free permit.
    Retry,
}

struct State {
    /// Free permits.
    permits: usize,
    waiters: WaitList<Grant>,
    /// A waiter sent `Retry` has not run yet: releases need not wake another.
    woken: bool,
    /// The head waiter has waited [`STARVING_AFTER`]: the next release is its.
    starving: bool,
}

/// The counting core shared by [`Semaphore`], [`BoundedSemaphore`], [`Lock`](crate::Lock)
/// and [`RLock`](crate::RLock).
pub(crate) struct Core {
    state: Mutex<State>,
    /// The most permits a release may bring back (`None`: unbounded).
    bound: Option<usize>,
    /// What a waiter waits on, for run-info dumps.
    what: grove_scheduler::WaitReason,
}

impl Core {
    pub(crate) fn new(
        permits: usize,
        bound: Option<usize>,
        what: grove_scheduler::WaitReason,
    ) -> Core {
        Core {
            state: Mutex::new(State {
                permits,
                waiters: WaitList::default(),
                woken: false,
                starving: false,
            }),
            bound,
            what,
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
        lock(&self.state).take_free()
    }

    /// Steps 1 and 3: takes a permit, waiting until `deadline` at the latest.
    pub(crate) fn acquire_until(&self, deadline: Option<Instant>) -> bool {
        let mut s = lock(&self.state);
        if s.take_free() {
            return true;
        }
        let mut place = Place::Back;
        let mut since = None;
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            let waiting_since = *since.get_or_insert_with(Instant::now);
            let grant = wait_at(
                self.what,
                place,
                s,
                &self.state,
                |s| &mut s.waiters,
                deadline,
                State::pass_on,
            );
            s = lock(&self.state);
            match grant {
                Some(Grant::Permit) => return true,
                Some(Grant::Retry) => {
                    // Step 3: our turn to try.
                    s.woken = false;
                    if s.permits > 0 {
                        s.permits -= 1;
                        return true;
                    }
                    // Lost to a barger: wait again, first in line.
                    place = Place::Front;
                    if waiting_since.elapsed() >= STARVING_AFTER {
                        s.starving = true;
                    }
                }
                // The deadline passed with nothing handed over.
                None => return false,
            }
        }
    }

    /// A guard for a permit just taken.
    pub(crate) fn guard(&self) -> SemaphoreGuard<'_> {
        SemaphoreGuard { core: self }
    }

    /// Step 2: gives a permit back; refused, changing nothing, at the bound (an
    /// unbounded semaphore's is `usize::MAX` free permits).
    pub(crate) fn release(&self) -> Result<(), OverRelease> {
        let mut s = lock(&self.state);
        if s.permits >= self.bound.unwrap_or(usize::MAX) {
            return Err(OverRelease);
        }
        s.put_back(());
        Ok(())
    }
}

impl State {
    /// Step 1's fast path: a free permit nobody starving is owed.
    fn take_free(&mut self) -> bool {
        if self.permits > 0 && !(self.starving && self.waiters.len() > 0) {
            self.permits -= 1;
            true
        } else {
            false
        }
    }

    /// Step 2: a starving head waiter gets the permit; else it is counted free and the
    /// head waiter (if none is already on its way) is woken to try for it.
    fn put_back(&mut self, _permit: ()) {
        if self.starving {
            self.starving = false;
            if self.waiters.notify_one(Grant::Permit).is_ok() {
                return;
            }
        }
        // `release` refuses at `usize::MAX`; only a permit handed to a starving waiter
        // that was then unwound (step 4) can get here at that count. Saturate: this may
        // run in a guard's `Drop` or during an unwind, where a panic would abort.
        self.permits = self.permits.saturating_add(1);
        self.wake_one();
    }

    /// Wakes the head waiter to try for a free permit, unless one is already on its way.
    fn wake_one(&mut self) {
        if !self.woken && self.waiters.notify_one(Grant::Retry).is_ok() {
            self.woken = true;
        }
    }

    /// Step 4: what a waiter unwound after being handed `grant` gives back.
    fn pass_on(&mut self, grant: Grant) {
        match grant {
            Grant::Permit => self.put_back(()),
            Grant::Retry => {
                self.woken = false;
                if self.permits > 0 {
                    self.wake_one();
                }
            }
        }
    }
}

/// The deadline `timeout` from now, or `None` (no deadline) if that is past the end
/// of `Instant`'s range.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// The error of releasing a [`BoundedSemaphore`] (or unlocking a [`Lock`](crate::Lock))
/// more times than it was acquired, or a [`Semaphore`] already holding `usize::MAX`
/// free permits. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverRelease;

impl fmt::Display for OverRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("released more times than acquired")
    }
}

impl Error for OverRelease {}

/// A counting semaphore (gevent's `Semaphore`): at most `permits` holders at once;
/// others wait, woken first come, first served.
///
/// Cheap to clone: clones share the permits. [`acquire`](Self::acquire) parks a
/// greenlet (its worker runs others) or blocks a plain OS thread, and returns a guard
/// that gives the permit back when dropped. Holding a guard across a blocking call is
/// fine: a started greenlet never changes threads. For gevent's manual style, call
/// [`SemaphoreGuard::forget`] and later [`release`](Self::release) — from any greenlet
/// or thread. A released permit is free to whoever asks first, and wakes the
/// longest-waiting acquirer to ask; one that has waited 1 ms is handed the next
/// released permit (the module docs explain why: Go's `sync.Mutex` policy).
/// Acquiring is cancellation-safe: an acquirer killed or timed out mid-wait never
/// takes a permit with it.
///
/// ```
/// use grove::sync::Semaphore;
///
/// let rt = grove::Runtime::builder().workers(2).build().unwrap();
/// let sem = Semaphore::new(2);
/// let hs: Vec<_> = (0..10)
///     .map(|i| {
///         let sem = sem.clone();
///         rt.spawn(move || {
///             let _permit = sem.acquire(); // at most two run this at once
///             grove::yield_now();
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
            core: Arc::new(Core::new(
                permits,
                bound,
                grove_scheduler::WaitReason::SEMAPHORE_ACQUIRE,
            )),
        }
    }

    /// Takes a permit, waiting until one is free (waiters are woken in FIFO order).
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

    /// Adds a permit (gevent's `release`), waking the first waiter if any. Pairs with
    /// [`SemaphoreGuard::forget`]. A `Semaphore` has no bound but the largest count,
    /// `usize::MAX` free permits: a release there is refused with [`OverRelease`] and
    /// changes nothing (use [`BoundedSemaphore`] to catch unbalanced releases early).
    pub fn release(&self) -> Result<(), OverRelease> {
        self.core.release()
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
/// use grove::sync::BoundedSemaphore;
///
/// let rt = grove::Runtime::builder().workers(2).build().unwrap();
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

    /// Takes a permit, waiting until one is free (waiters are woken in FIFO order).
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
    /// Gives the permit back. Never panics: a release refused because manual
    /// [`release`](Semaphore::release)s already brought the count to its bound (or to
    /// `usize::MAX`) while this guard lived leaves the count where it is.
    fn drop(&mut self) {
        let _ = self.core.release();
    }
}
