//! Interrupting a greenlet at its blocking point: `kill` and `Timeout`.
//!
//! # The model (gevent's)
//! gevent raises `GreenletExit` or `Timeout` *inside* the target the next time it
//! switches to the hub. The Rust analogue that keeps destructors running is to unwind
//! the target's stack from its blocking point with a private panic payload, caught at
//! the greenlet's root (a kill: `join` reports [`JoinError::is_killed`]) or at the
//! scope that armed the timeout (identity-checked, so nested timeouts never catch each
//! other's).
//!
//! # The protocol
//! 1. Each greenlet header has an `interrupt` word: `0` none, [`KILL`], or the id of a
//!    timeout scope. A kill overwrites anything (it is final); a timeout only fills an
//!    empty word (an earlier, outer interrupt is already on its way).
//! 2. The interrupter sets the word, then wakes the greenlet through its ordinary
//!    waker (so a parked greenlet runs; a running one sees it at its next park).
//! 3. Every blocking point — [`park`](crate::park) and [`yield_now`](crate::yield_now),
//!    so every primitive built on them — calls [`checkpoint`] before it switches away
//!    and after it resumes: a
//!    pending kill unwinds (and stays pending, so a greenlet that catches it dies at
//!    its next blocking point); a pending timeout is taken and unwinds to its scope.
//!    [`park_nounwind`](crate::park_nounwind), the park for code under a foreign
//!    (`extern "C"`) frame, is the one exception: it reports a pending interrupt
//!    instead of raising it, leaving it pending for the next ordinary blocking point.
//! 4. Nothing is delivered while the thread is already unwinding (a `Drop` that blocks
//!    during a kill runs to completion instead of aborting the process).
//! 5. A timeout scope that ends clears its id if it is still pending; the timer's
//!    waker and the scope's exit are ordered by `SeqCst` on `active` and the word
//!    (step 5 of [`Timeout`]'s docs), so a stale timeout never hits later code.
//!
//! Blocking primitives must therefore be *cancellation-safe*: a waiter unwound from
//! `park` leaves the primitive consistent (its guard removes it from the wait list and
//! passes on a notification it consumed).

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use crate::task::{Header, TaskRef};
use crate::worker::with_local;

/// The `interrupt` word's value for a kill.
pub(crate) const KILL: u64 = 1;

/// The `interrupt` word's value for a detected deadlock (see `deadlock`): final like a
/// kill, but reported as [`JoinError::is_deadlock`](crate::JoinError::is_deadlock).
pub(crate) const DEADLOCK: u64 = 2;

/// Timeout scope ids: process-unique, never 0, [`KILL`] or [`DEADLOCK`].
static NEXT_SCOPE: AtomicU64 = AtomicU64::new(3);

/// The private payload a kill unwinds with.
pub(crate) struct KillSignal;

/// The private payload a deadlock interrupt unwinds with.
pub(crate) struct DeadlockSignal;

/// The private payload a timeout unwinds with: the id of the scope it belongs to.
pub(crate) struct TimeoutSignal(u64);

/// Step 3: called by every blocking point after it resumes.
pub(crate) fn checkpoint(h: &Header) {
    let v = h.interrupt.load(Ordering::Acquire);
    if v == 0 || std::thread::panicking() {
        return;
    }
    if v == KILL {
        panic::resume_unwind(Box::new(KillSignal));
    }
    if v == DEADLOCK {
        panic::resume_unwind(Box::new(DeadlockSignal));
    }
    if h.interrupt
        .compare_exchange(v, 0, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        panic::resume_unwind(Box::new(TimeoutSignal(v)));
    }
    // Lost to a kill in between: deliver that instead.
    if h.interrupt.load(Ordering::Acquire) == KILL {
        panic::resume_unwind(Box::new(KillSignal));
    }
}

/// Steps 1–2 for a kill.
pub(crate) fn kill(task: &TaskRef) {
    task.header().interrupt.store(KILL, Ordering::Release);
    task.clone().waker().wake();
}

/// Interrupts a greenlet that can never be woken otherwise (the deadlock check proved
/// it): unless another interrupt is already pending, unwind it from its blocking point.
pub(crate) fn deadlock(task: &TaskRef) {
    let word = &task.header().interrupt;
    if word
        .compare_exchange(0, DEADLOCK, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        task.clone().waker().wake();
    }
}

/// True if a panic payload is a deadlock interrupt.
pub(crate) fn is_deadlock(payload: &(dyn std::any::Any + Send)) -> bool {
    payload.is::<DeadlockSignal>()
}

/// True if a panic payload is a kill, i.e. the greenlet was killed rather than panicked.
pub(crate) fn is_kill(payload: &(dyn std::any::Any + Send)) -> bool {
    payload.is::<KillSignal>()
}

/// The greenlet running on this thread, for arming a timeout; panics outside one.
fn current_task(what: &str) -> TaskRef {
    with_local(|l| l.and_then(|l| l.current()))
        .unwrap_or_else(|| panic!("{what} must be called from a greenlet inside a grove runtime"))
}

/// What the timer of one timeout scope wakes: it interrupts the greenlet (step 2).
struct Fire {
    task: TaskRef,
    id: u64,
    /// False once the scope has ended (step 5).
    active: AtomicBool,
}

impl Wake for Fire {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let word = &self.task.header().interrupt;
        if !self.active.load(Ordering::SeqCst) {
            return;
        }
        if word
            .compare_exchange(0, self.id, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return; // a kill or an outer timeout is already pending
        }
        if !self.active.load(Ordering::SeqCst) {
            // The scope ended while we set the word: take it back (step 5).
            let _ = word.compare_exchange(self.id, 0, Ordering::SeqCst, Ordering::SeqCst);
            return;
        }
        self.task.clone().waker().wake();
    }
}

/// A deadline armed over a scope of the current greenlet (gevent's `Timeout`).
///
/// While the guard lives, if the deadline passes, whatever the greenlet is blocked on
/// (a sleep, a join, any primitive, later sockets) is interrupted by unwinding to the
/// nearest [`Timeout::run`] / [`with_timeout`] of *this* timeout, which returns
/// [`Elapsed`]. A timeout that fires outside such a scope unwinds to the greenlet's
/// root, and its join reports [`JoinError::is_timeout`](crate::JoinError::is_timeout).
/// Dropping the guard disarms it. Code that never blocks is never interrupted.
///
/// (The `grove` crate's docs show it in use with a runtime that has timers.)
///
/// Step 5 of the module protocol: on drop the scope stores `active = false`, cancels
/// its timer, then clears its id from the word if still pending; the timer's waker
/// sets the word, then re-checks `active`. With all four accesses `SeqCst`, one of the
/// two always sees the other, so no stale id survives the scope.
pub struct Timeout {
    fire: Arc<Fire>,
    timer: Option<u128>,
    timers: Option<Arc<dyn crate::Timers>>,
}

impl fmt::Debug for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("id", &self.fire.id)
            .finish()
    }
}

impl Timeout {
    /// Arms a timeout of `dur` from now for the current greenlet. A duration too large
    /// to represent never fires. Panics outside a greenlet, or on a runtime without
    /// timers (the `grove` facade always has them).
    pub fn new(dur: Duration) -> Timeout {
        Timeout::at(Instant::now().checked_add(dur))
    }

    /// Arms a timeout at `deadline` (`None`: never).
    pub fn at(deadline: Option<Instant>) -> Timeout {
        let task = current_task("grove::Timeout::new");
        let timers = task.header().rt.timers.clone();
        let fire = Arc::new(Fire {
            task,
            id: NEXT_SCOPE.fetch_add(1, Ordering::Relaxed),
            active: AtomicBool::new(true),
        });
        let timer = match (deadline, &timers) {
            (Some(d), Some(t)) => Some(t.add(d, Waker::from(fire.clone()))),
            (Some(_), None) => {
                panic!("grove::Timeout needs a runtime with timers (build it with grove::Runtime)")
            }
            (None, _) => None,
        };
        Timeout {
            fire,
            timer,
            timers,
        }
    }

    /// Runs `f` inside this timeout's scope: `Err(Elapsed)` if the deadline interrupted
    /// it. Other panics (and other timeouts' interrupts) pass through untouched.
    pub fn run<R>(self, f: impl FnOnce() -> R) -> Result<R, Elapsed> {
        let id = self.fire.id;
        let result = panic::catch_unwind(AssertUnwindSafe(f));
        drop(self);
        match result {
            Ok(v) => Ok(v),
            Err(p) => match p.downcast::<TimeoutSignal>() {
                Ok(sig) if sig.0 == id => Err(Elapsed(())),
                Ok(sig) => panic::resume_unwind(sig),
                Err(p) => panic::resume_unwind(p),
            },
        }
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        self.fire.active.store(false, Ordering::SeqCst);
        if let (Some(key), Some(t)) = (self.timer.take(), &self.timers) {
            t.cancel(key);
        }
        let word = &self.fire.task.header().interrupt;
        let _ = word.compare_exchange(self.fire.id, 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

/// Runs `f` with a deadline of `dur` (gevent's `with_timeout`): `Err(Elapsed)` if a
/// blocking call inside `f` was interrupted by it.
///
/// Must be called from a greenlet of a runtime with timers (`grove::Runtime`).
pub fn with_timeout<R>(dur: Duration, f: impl FnOnce() -> R) -> Result<R, Elapsed> {
    Timeout::new(dur).run(f)
}

/// The deadline of a [`Timeout`] passed before the work finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}

/// True if a panic payload is a timeout's (for the greenlet root's report).
pub(crate) fn is_timeout(payload: &(dyn std::any::Any + Send)) -> bool {
    payload.is::<TimeoutSignal>()
}
