//! Interrupting a greenlet at its blocking point: kill, deadlock, shutdown and `Timeout`.
//!
//! # The model (gevent's)
//! gevent raises `GreenletExit` or `Timeout` *inside* the target the next time it
//! switches to the hub. The Rust analogue that keeps destructors running is to unwind
//! the target's stack from its blocking point with a private panic payload, caught at
//! the greenlet's root (a kill: `join` reports [`JoinError::is_killed`]; a shutdown:
//! [`JoinError::is_shutdown`]) or at the scope that armed the timeout (identity-checked,
//! so nested timeouts never catch each other's).
//!
//! # The protocol
//! 1. Each greenlet header has an interrupt word (`irq::Word`, loom-checked): a
//!    *final* interrupt (kill, deadlock, shutdown) and a pending timeout (a scope id).
//! 2. The interrupter sets the word, then wakes the greenlet through its ordinary
//!    waker (so a parked greenlet runs; a running one sees it at its next park).
//! 3. Every blocking point — [`park`](crate::park) and [`yield_now`](crate::yield_now),
//!    so every primitive built on them — calls [`checkpoint`] before it switches away
//!    and after it resumes. A pending timeout is taken and unwinds to its scope. A
//!    final interrupt unwinds and stays pending: it is final.
//!    [`park_nounwind`](crate::park_nounwind), the park for code under a foreign
//!    (`extern "C"`) frame, is the one exception: it reports a pending interrupt
//!    instead of raising it, leaving it pending for the next ordinary blocking point.
//! 4. What is never raised, so that a blocking call completes instead:
//!    * nothing while the thread is unwinding (`std::thread::panicking()`): raising
//!      there would escape a destructor during unwinding, which aborts the process. So
//!      a `Drop` that blocks while its greenlet is killed, shut down or panicking parks
//!      like any blocking call and runs to completion. The one exception is a timeout
//!      armed *inside* such a destructor (its scope catches it inside the destructor):
//!      it fires as usual.
//!    * no final interrupt once the greenlet's body has ended: its greenlet-locals'
//!      destructors may block and run to completion.
//! 5. A greenlet that catches a final interrupt's unwind (`catch_unwind` around a
//!    blocking call: "catch, log and keep serving") and blocks again is not resumed
//!    into a busy loop: at that blocking point it first yields (the worker runs its
//!    other greenlets), then the interrupt is raised again after the switch. A one-time
//!    warning on stderr names the greenlet. A kill therefore ends such a greenlet only
//!    when it stops catching; `kill_timeout` returns on time, and a shutdown gives up
//!    on it after the runtime's grace period (see `worker`, "Shutdown").
//! 6. A timeout scope that ends takes its id back (rule 2 of `irq`), so a stale
//!    timeout never hits later code.
//!
//! Blocking primitives must therefore be *cancellation-safe*: a waiter unwound from
//! `park` leaves the primitive consistent (its guard removes it from the wait list and
//! passes on a notification it consumed).
//!
//! # Own unwinding
//! Step 4 needs to know whether *this greenlet* is unwinding, and
//! `std::thread::panicking()` counts per OS thread: a greenlet suspended in the middle of
//! an unwind (a destructor that blocks) leaves it true for every greenlet its worker
//! runs meanwhile. So every switch away (`Header::suspend`) records whether the
//! thread was unwinding (`before_switch`); right after the switch back, a greenlet that
//! suspended clean is known not to be unwinding, whatever the thread says, and takes its
//! interrupt (this is how a shutdown unwinds a lock's holder while a greenlet waiting for
//! that lock in a destructor is parked mid-unwind). Where grove cannot tell, it assumes
//! the worst and the worker wakes the greenlet again once no greenlet of its worker is
//! mid-unwind (`worker::defer_interrupt`): the interrupt is delayed, never lost. A
//! timeout counts as armed inside a destructor when the unwinding is the greenlet's own
//! as far as grove can tell: the thread was clear when the greenlet was resumed
//! (`worker::unwinding_is_ours`), or grove raised a kill, deadlock or shutdown in it
//! (the common case: several greenlets killed or shut down at once, each with a
//! destructor that waits with a timeout). A greenlet that caught such an unwind and then
//! arms a timeout while another greenlet of its worker is mid-unwind is the one case
//! this guesses wrong; otherwise a timeout it cannot place waits like the others.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use crate::irq::DEADLOCK;
pub(crate) use crate::irq::KILL;
use crate::irq::{final_of, scope_of, Scope, FIRST_SCOPE, IN_CLEANUP};
use crate::task::{Header, TaskRef};
use crate::worker::with_local;

/// Timeout scope ids: process-unique, never 0 or a final interrupt.
static NEXT_SCOPE: AtomicU64 = AtomicU64::new(FIRST_SCOPE);

// `Header::irq` bits: the greenlet's own record (only its home thread touches them).
/// A final interrupt has been raised in this greenlet at least once.
const IRQ_DELIVERED: u8 = 1;
/// The warning of step 5 has been printed for this greenlet.
const IRQ_WARNED: u8 = 2;
/// The body has ended: final interrupts are no longer raised (step 4).
const IRQ_FINISHING: u8 = 4;
/// The thread was not unwinding when the greenlet last suspended, so it was not
/// unwinding itself then (see "own unwinding" below).
const IRQ_CLEAN: u8 = 8;

/// The private payload a kill unwinds with.
pub(crate) struct KillSignal;

/// The private payload a deadlock interrupt unwinds with.
pub(crate) struct DeadlockSignal;

/// The private payload a shutdown unwinds a greenlet with.
pub(crate) struct ShutdownSignal;

/// The private payload a timeout unwinds with: the id of the scope it belongs to.
pub(crate) struct TimeoutSignal(u64);

/// Which side of the switch a [`checkpoint`] is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// Before switching to the hub.
    Before,
    /// After being resumed.
    After,
}

/// Step 3: called by every blocking point before it switches away and after it
/// resumes. Unwinds if an interrupt is due. Returns `true` if the greenlet must switch
/// as a yield rather than park (step 5: a final interrupt it caught is raised again
/// after the switch).
pub(crate) fn checkpoint(h: &Header, side: Side) -> bool {
    let w = h.interrupt.load();
    if w == 0 {
        return false;
    }
    // Own unwinding: right after a switch, the greenlet is exactly as it suspended (no
    // code of it ran since), so a clean suspension means not unwinding whatever the
    // thread says; otherwise the thread's state may be another greenlet's, and we
    // assume the worst (and `defer_interrupt` retries once the thread is clear).
    let unwinding = std::thread::panicking()
        && !(side == Side::After && h.irq.load(Ordering::Relaxed) & IRQ_CLEAN != 0);
    let fin = final_of(w);
    let irq = h.irq.load(Ordering::Relaxed);
    if fin != 0 && irq & IRQ_FINISHING == 0 {
        if unwinding {
            crate::worker::defer_interrupt(); // step 4
        } else {
            if irq & IRQ_DELIVERED != 0 {
                // Step 5: it caught the unwind and blocked again.
                if irq & IRQ_WARNED == 0 {
                    h.irq.store(irq | IRQ_WARNED, Ordering::Relaxed);
                    warn_caught(h, fin);
                }
                if side == Side::Before {
                    return true;
                }
            }
            h.irq.store(irq | IRQ_DELIVERED, Ordering::Relaxed);
            raise_final(fin);
        }
    }
    let scope = scope_of(w);
    if scope == 0 {
        return false;
    }
    if unwinding && scope & IN_CLEANUP == 0 {
        // Step 4: an outer scope's timeout, inside a destructor.
        crate::worker::defer_interrupt();
        return false;
    }
    if h.interrupt.take_scope(scope) {
        panic::resume_unwind(Box::new(TimeoutSignal(scope)));
    }
    // Changed in between (a final interrupt came, or the scope ended): look again.
    checkpoint(h, side)
}

fn raise_final(v: u64) -> ! {
    match v {
        KILL => panic::resume_unwind(Box::new(KillSignal)),
        DEADLOCK => panic::resume_unwind(Box::new(DeadlockSignal)),
        _ => panic::resume_unwind(Box::new(ShutdownSignal)),
    }
}

#[cold]
fn warn_caught(h: &Header, v: u64) {
    let what = match v {
        KILL => "kill",
        DEADLOCK => "deadlock interrupt",
        _ => "shutdown",
    };
    report!(
        "grove: greenlet '{}' (id {}, spawned at {}) caught its {what} unwind (a catch_unwind \
         around a blocking call?) and blocked again; the {what} stays pending and is raised \
         again at each of its blocking points, after the other greenlets have run, until it \
         ends: let grove's unwind through (resume_unwind payloads you do not handle)",
        h.display_name(),
        h.id,
        h.spawned_at
    );
}

/// Called by every switch away (`Header::suspend`): records whether the greenlet is
/// certainly not unwinding (see `IRQ_CLEAN`).
pub(crate) fn before_switch(h: &Header) {
    let irq = h.irq.load(Ordering::Relaxed);
    let irq = if std::thread::panicking() {
        irq & !IRQ_CLEAN
    } else {
        irq | IRQ_CLEAN
    };
    h.irq.store(irq, Ordering::Relaxed);
}

/// True if a timeout armed now is armed inside a destructor running during the current
/// greenlet's own unwinding (step 4's exception): the thread is unwinding, and either it
/// was not when the hub resumed this greenlet (so the unwinding is this greenlet's), or
/// grove raised a final interrupt in this greenlet (so it is unwinding from that, unless
/// it caught it: see "Own unwinding").
fn armed_in_cleanup(h: &Header) -> bool {
    std::thread::panicking()
        && (crate::worker::unwinding_is_ours()
            || h.irq.load(Ordering::Relaxed) & IRQ_DELIVERED != 0)
}

/// Step 4: the greenlet's body has ended (called on it, before its locals are dropped).
pub(crate) fn body_finished(h: &Header) {
    let irq = h.irq.load(Ordering::Relaxed);
    h.irq.store(irq | IRQ_FINISHING, Ordering::Relaxed);
}

/// Steps 1–2 for a kill.
pub(crate) fn kill(task: &TaskRef) {
    if task.header().interrupt.kill() {
        task.clone().waker().wake();
    }
}

/// Steps 1–2 for a shutdown (see `worker`, "Shutdown"). Returns `false` if the greenlet
/// had already been told.
pub(crate) fn shutdown(task: &TaskRef) -> bool {
    let told = task.header().interrupt.shutdown();
    if told {
        task.clone().waker().wake();
    }
    told
}

/// Interrupts a greenlet that can never be woken otherwise (the deadlock check proved
/// it): unless another interrupt is already pending, unwind it from its blocking point.
pub(crate) fn deadlock(task: &TaskRef) {
    if task.header().interrupt.deadlock() {
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

/// True if a panic payload is a shutdown's.
pub(crate) fn is_shutdown(payload: &(dyn std::any::Any + Send)) -> bool {
    payload.is::<ShutdownSignal>()
}

/// The greenlet running on this thread, for arming a timeout; panics outside one.
fn current_task(what: &str) -> TaskRef {
    with_local(|l| l.and_then(|l| l.current()))
        .unwrap_or_else(|| panic!("{what} must be called from a greenlet inside a grove runtime"))
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
    /// timers (the `grove` facade always has them).
    pub fn new(dur: Duration) -> Timeout {
        Timeout::at(Instant::now().checked_add(dur))
    }

    /// Arms a timeout at `deadline` (`None`: never).
    pub fn at(deadline: Option<Instant>) -> Timeout {
        let task = current_task("grove::Timeout::new");
        let timers = task.header().rt.timers.clone();
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

/// True if a panic payload is a timeout's (for the greenlet root's report).
pub(crate) fn is_timeout(payload: &(dyn std::any::Any + Send)) -> bool {
    payload.is::<TimeoutSignal>()
}
