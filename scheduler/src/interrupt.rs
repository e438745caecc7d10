//! `Timeout` and `with_timeout` (gevent's): a deadline over a scope of the current greenlet.
//!
//! A timeout is one kind of interrupt: when its timer fires, the scope's id is set in the
//! greenlet's interrupt word (`irq`, loom-checked) and the greenlet is woken; its next
//! blocking point unwinds it to the scope that armed the timeout (identity-checked, so
//! nested timeouts never catch each other's). How interrupts are delivered at blocking
//! points, and what is never raised (nothing while the thread is unwinding, except a
//! timeout armed inside the destructor that runs), is `worker::switch`'s protocol.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use crate::irq::{Scope, FIRST_SCOPE, IN_CLEANUP};
use crate::signal::TimeoutSignal;
use crate::task::TaskRef;
use crate::worker::{armed_in_cleanup, not_in_runtime, with_local};

/// Timeout scope ids: process-unique, never 0 or a final interrupt.
static NEXT_SCOPE: AtomicU64 = AtomicU64::new(FIRST_SCOPE);

/// The greenlet running on this thread and its runtime's timers, for arming a timeout;
/// panics outside a greenlet.
fn current_task(what: &str) -> (TaskRef, Option<Arc<dyn crate::Timers>>) {
    with_local(|l| l.and_then(|l| Some((l.current()?, l.shared.timers.clone()))))
        .unwrap_or_else(|| not_in_runtime(what))
}

/// What the timer of one timeout scope wakes: it interrupts the greenlet (step 2).
struct Fire {
    task: TaskRef,
    scope: Scope,
}

impl Wake for Fire {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.scope.fire(&self.task.header().interrupt) {
            self.task.clone().waker().wake();
        }
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
/// Step 6 of the module protocol: once the guard is dropped its timeout can no longer
/// reach the greenlet (rule 2 of the `irq` module, loom-checked).
///
/// Armed inside a destructor that runs while its greenlet unwinds (a kill, a shutdown,
/// a panic), a timeout still fires at the blocking points inside its scope; every other
/// interrupt waits until the unwinding is over.
pub struct Timeout {
    fire: Arc<Fire>,
    timer: Option<crate::TimerKey>,
    timers: Option<Arc<dyn crate::Timers>>,
}

impl fmt::Debug for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeout")
            .field("id", &(self.fire.scope.id() & !IN_CLEANUP))
            .finish()
    }
}

impl Timeout {
    /// Arms a timeout of `dur` from now for the current greenlet. A duration too large
    /// to represent never fires. Panics outside a greenlet, or on a runtime without
    /// timers (grove's `Runtime` always has them).
    pub fn new(dur: Duration) -> Timeout {
        Timeout::at(Instant::now().checked_add(dur))
    }

    /// Arms a timeout at `deadline` (`None`: never).
    pub fn at(deadline: Option<Instant>) -> Timeout {
        let (task, timers) = current_task("grove::Timeout::new");
        let mut id = NEXT_SCOPE.fetch_add(1, Ordering::Relaxed);
        if armed_in_cleanup(task.header()) {
            id |= IN_CLEANUP;
        }
        let fire = Arc::new(Fire {
            task,
            scope: Scope::new(id),
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
        let id = self.fire.scope.id();
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
        self.fire.scope.end(&self.fire.task.header().interrupt);
        if let (Some(key), Some(t)) = (self.timer.take(), &self.timers) {
            t.cancel(key);
        }
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
