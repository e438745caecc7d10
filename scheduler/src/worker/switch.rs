//! A greenlet switching to its hub, and the interrupts delivered at that switch: kill,
//! deadlock, shutdown and `Timeout`.
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
//! mid-unwind ([`defer_interrupt`]): the interrupt is delayed, never lost. A
//! timeout counts as armed inside a destructor when the unwinding is the greenlet's own
//! as far as grove can tell: the thread was clear when the greenlet was resumed
//! ([`unwinding_is_ours`]), or grove raised a kill, deadlock or shutdown in it
//! (the common case: several greenlets killed or shut down at once, each with a
//! destructor that waits with a timeout). A greenlet that caught such an unwind and then
//! arms a timeout while another greenlet of its worker is mid-unwind is the one case
//! this guesses wrong; otherwise a timeout it cannot place waits like the others.

use std::panic;
use std::ptr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::with_local;
use crate::irq::{final_of, scope_of, DEADLOCK, IN_CLEANUP, KILL};
use crate::signal::{DeadlockSignal, KillSignal, ShutdownSignal, TimeoutSignal};
use crate::task::{Header, Suspend, TaskRef, IRQ_CLEAN, IRQ_DELIVERED, IRQ_FINISHING, IRQ_WARNED};

/// True if the current greenlet is itself unwinding, for certain: the thread is
/// panicking and was not when the hub last resumed this greenlet.
///
/// `std::thread::panicking()` counts per OS thread: a greenlet suspended in the middle
/// of an unwind (a destructor that blocks) leaves it true for every greenlet its worker
/// runs meanwhile, so on its own it cannot tell *whose* unwind it is (see "Own unwinding" above,
/// step 4).
pub(crate) fn unwinding_is_ours() -> bool {
    std::thread::panicking() && with_local(|l| l.is_some_and(|l| l.resumed_clear.get()))
}

/// An interrupt was not raised in the current greenlet because its thread is
/// unwinding. The hub wakes it again once its thread no longer is, so that the
/// interrupt is delayed, never lost, when the unwinding was another greenlet's
/// (step 4 above).
pub(crate) fn defer_interrupt() {
    with_local(|l| {
        if let Some(l) = l {
            if let Some(t) = l.current() {
                let mut d = l.deferred.borrow_mut();
                if !d.iter().any(|x| Arc::ptr_eq(x, &t)) {
                    d.push(t);
                }
            }
        }
    })
}

/// Switches from the current greenlet to its hub. Returns `false` (without
/// switching) if this thread is not running a greenlet.
/// `what` (null: unknown) is recorded in the header as what a parking greenlet waits on,
/// for run-info dumps: one store to a line the switch touches anyway.
pub(crate) fn suspend_current(why: Suspend, what: *mut &'static str) -> bool {
    let h = with_local(|l| l.map_or(ptr::null(), |l| l.counters.spot.current()));
    if h.is_null() {
        return false;
    }
    // SAFETY: `h` is the header of the greenlet running on this very stack; the hub's
    // `current` keeps it alive until we are resumed, and the registry after.
    let h = unsafe { &*h };
    // Every blocking point is an interruption point (kill, Timeout), checked on both
    // sides of the switch: before, so that a pending interrupt whose wake was already
    // consumed does not park forever (a final one the greenlet caught switches as a
    // yield first: step 5 above); after, for one that arrived while parked.
    let why = if checkpoint(h, Side::Before) {
        Suspend::Yield
    } else {
        why
    };
    h.waiting_on.store(what, Ordering::Relaxed);
    // SAFETY: as above: we are on `h`'s own stack.
    unsafe { h.suspend(why) };
    checkpoint(h, Side::After);
    true
}

/// [`suspend_current`] for callers that must not unwind (a `extern "C"` function, such as
/// the `grove-monkey` hooks, sits between the greenlet's root and this call):
///
/// * `None`: not in a greenlet; nothing happened.
/// * `Some(true)`: an interrupt (kill, `Timeout`, deadlock) is pending, or the stack is
///   being force-unwound by a shutdown. The interrupt is **not** consumed: it stays in the
///   header's word and unwinds the greenlet at its next ordinary blocking point.
/// * `Some(false)`: woken (possibly spuriously).
///
/// A pending interrupt returns at once without switching away. A shutdown does not
/// unwind a greenlet parked here (`in_foreign`): it leaks its stack, since the unwind
/// would have to cross the foreign frame.
pub(crate) fn suspend_current_nounwind(why: Suspend, what: *mut &'static str) -> Option<bool> {
    let h = with_local(|l| l.map_or(ptr::null(), |l| l.counters.spot.current()));
    if h.is_null() {
        return None;
    }
    // SAFETY: as in `suspend_current`: `h` is the header of the greenlet running on this
    // very stack, kept alive by the hub's `current` until we are resumed.
    let h = unsafe { &*h };
    if h.interrupt.load() != 0 {
        return Some(true);
    }
    h.waiting_on.store(what, Ordering::Relaxed);
    h.in_foreign.store(true, Ordering::Relaxed);
    // A shutdown abandons (leaks) rather than unwinds a stack parked here
    // (`Local::shutdown`); the catch is a second line of defence should an unwind arrive
    // anyway.
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: as above: we are on `h`'s own stack.
        unsafe { h.suspend(why) }
    }))
    .is_err();
    h.in_foreign.store(false, Ordering::Relaxed);
    Some(unwound || h.interrupt.load() != 0)
}

/// True while a greenlet runs on this thread, read without a `RefCell` borrow or a lock:
/// one thread-local and one atomic (the spotlight), so a signal handler may ask.
pub(crate) fn greenlet_running_here() -> bool {
    with_local(|l| l.is_some_and(|l| !l.counters.spot.current().is_null()))
}

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
            defer_interrupt(); // step 4
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
        defer_interrupt();
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

/// True if a timeout armed now is armed inside a destructor running during the current
/// greenlet's own unwinding (step 4's exception): the thread is unwinding, and either it
/// was not when the hub resumed this greenlet (so the unwinding is this greenlet's), or
/// grove raised a final interrupt in this greenlet (so it is unwinding from that, unless
/// it caught it: see "Own unwinding").
pub(crate) fn armed_in_cleanup(h: &Header) -> bool {
    std::thread::panicking()
        && (unwinding_is_ours() || h.irq.load(Ordering::Relaxed) & IRQ_DELIVERED != 0)
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
