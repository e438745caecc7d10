//! The worker: the part of each worker thread's hub that knows a greenlet.
//!
//! The search for work (queues, fairness, stealing, sleeping) is the hub core's (`hub`),
//! generic over what it runs; this module is the part that knows a greenlet: it gives a
//! greenlet a stack and resumes it ([`Local::run_task`]), keeps the registry of suspended
//! ones, routes wakes ([`Schedule`] for the runtime), and shuts the hub down. Its children:
//! `switch` (a greenlet switching to its hub, and the interrupts delivered there),
//! `shutdown` (steps 2–6 below), `driver` (the owner's I/O and timer harvests, stack
//! trimming: the hub core's [`Hooks`]), `placement` (where a detached greenlet first runs),
//! `panic_hook` (naming the greenlet in panic messages).
//!
//! # The path of a greenlet through the hub
//! 1. `Hub::run` finds it (its own queues, the injector, a peer) and calls
//!    [`Local::run_task`].
//! 2. `run_task`: a detached greenlet's first run may be handed to a peer (`placement`);
//!    otherwise a first run takes this worker as home and a stack ([`Local::start`]).
//! 3. The coroutine is resumed; the greenlet runs until it yields, parks or returns.
//! 4. Yield: back in `ready`. Park: registered (first time), then `State::complete_park`
//!    (a wake that came meanwhile puts it back in `ready`). Return: its stack goes back to
//!    the pool and its completion fires ([`Local::finish`]).
//!
//! # Shutdown
//! 1. `Shared::begin_shutdown` sets the flag (and the grace deadline), unparks every
//!    worker and cancels what waits in the global injector; from then on a spawn is
//!    cancelled at once (its join reports `JoinError::is_shutdown`). Each hub leaves its
//!    loop at the top: no greenlet starts after that.
//! 2. The hub cancels the unstarted greenlets of its own queues (dropped unrun, joins
//!    resolved with `is_shutdown`).
//! 3. It tells every started greenlet homed here (the registry) to unwind: a `SHUTDOWN`
//!    interrupt (see `worker::switch`), raised at the blocking point the greenlet is parked
//!    in, with grove's own payload. The greenlet then runs on this hub like any other:
//!    its destructors run on its own stack, and a destructor that blocks (a `sleep`, a
//!    `join`, a contended `Lock`) parks and is woken as usual; its root reports
//!    `is_shutdown`.
//! 4. The hub runs what is runnable and sleeps while greenlets are parked mid-unwind,
//!    until the registry is empty or the grace deadline passes. Steps 2–4 repeat while
//!    destructors wake greenlets.
//! 5. At the deadline, greenlets still alive (a destructor waiting for something that
//!    never comes, a loop that catches every unwind) are *abandoned*: named on stderr,
//!    their stacks leaked (never unmapped, so nothing they point into dangles, but the
//!    rest of their destructors never run), their joins resolved with `is_shutdown`.
//! 6. The hub marks itself exited (`Remote::exited`), after which a wake for one of its
//!    greenlets is dropped by whoever sends it, and clears `LOCAL` (a drop guard, so a
//!    failed hub clears it too). The runtime joins every thread.
//!
//! # If the hub itself fails
//! Hub-side code does not panic on anything a user controls (callbacks and destructors
//! it runs are contained, payloads disposed of, stderr writes cannot fail). Should it
//! fail anyway (a grove bug), the failure is reported, the whole runtime begins
//! shutting down, and this hub still runs steps 2–6, so no join is left hanging and no
//! thread-local points into a dead frame.

mod driver;
mod panic_hook;
mod placement;
mod shutdown;
mod switch;
#[cfg(test)]
mod tests;

pub(crate) use self::panic_hook::install_panic_hook;
pub(crate) use self::switch::{
    armed_in_cleanup, checkpoint, deadlock, greenlet_running_here, kill, suspend_current,
    suspend_current_nounwind, Side,
};

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use corosensei::{Coroutine, CoroutineResult};

use crate::batch;
use crate::error::JoinError;
use crate::hub::{Hooks, Hub};
use crate::irq::{final_of, KILL};
use crate::loom::lock;
use crate::queue::Worker;
use crate::shared::{Counters, Handle, PerWorker, Shared, WorkerSlot};
use crate::signal::{dispose_payload, payload_text};
use crate::stack::{overflow, StackPool};
use crate::task::{report_unjoined, Co, Header, Runnable, Schedule, Suspend, TaskRef};

thread_local! {
    /// The hub state of the worker running on this thread, or null.
    static LOCAL: Cell<*const Local> = const { Cell::new(ptr::null()) };
}

/// Points `LOCAL` at a hub for as long as it lives, and clears it however the hub's
/// frame ends (returning or unwinding): `LOCAL` never outlives the `Local` it names.
struct SetLocal;

impl SetLocal {
    fn new(local: &Local) -> SetLocal {
        LOCAL.with(|l| l.set(local));
        SetLocal
    }
}

impl Drop for SetLocal {
    fn drop(&mut self) {
        // `try_with`: during the thread's TLS teardown the slot may be gone already.
        let _ = LOCAL.try_with(|l| l.set(ptr::null()));
    }
}

#[cfg(test)]
thread_local! {
    /// Unit tests: makes this thread's hub fail at its next tick (a stand-in for a grove
    /// bug), to check that a failed hub leaves nothing dangling.
    pub(crate) static FAIL_HUB: Cell<bool> = const { Cell::new(false) };
}

/// Panics with grove's message for an API that needs the current greenlet (or worker)
/// and was called elsewhere: "`what` must be called from a greenlet inside a grove
/// runtime", and how to start one. The one place that says it, for every crate of grove
/// (`grove::spawn`, `grove::current`, `Timeout::new`, the primitives' blocking calls).
///
/// ```should_panic
/// // On a plain thread, outside any runtime:
/// grove_scheduler::not_in_runtime("my_crate::wait");
/// ```
#[cold]
#[inline(never)]
#[track_caller]
pub fn not_in_runtime(what: &str) -> ! {
    panic!("{}", not_in_runtime_message(what))
}

/// The text [`not_in_runtime`] panics with, for an API that reports the mistake as an
/// error instead (grove's sockets return an `io::Error` with it).
///
/// ```
/// let msg = grove_scheduler::not_in_runtime_message("my_crate::connect");
/// assert!(msg.starts_with("my_crate::connect must be called from a greenlet inside a grove runtime"));
/// ```
pub fn not_in_runtime_message(what: &str) -> String {
    format!(
        "{what} must be called from a greenlet inside a grove runtime \
         (use grove::run, Runtime::block_on or Runtime::spawn to start one)"
    )
}

/// Runs `f` with this thread's worker, if this is a worker thread.
pub(crate) fn with_local<R>(f: impl FnOnce(Option<&Local>) -> R) -> R {
    let p = LOCAL.with(Cell::get);
    if p.is_null() {
        f(None)
    } else {
        // SAFETY: `LOCAL` is non-null only inside `Local::run`, whose frame owns the
        // `Local` and outlives every use on this thread (it resets `LOCAL` on exit).
        f(Some(unsafe { &*p }))
    }
}

/// A worker's state, owned by its thread: the hub core's queues, and what running
/// greenlets on this thread takes.
pub(crate) struct Local {
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    /// `shared` as a public [`Handle`], so spawns from greenlets borrow instead of cloning.
    pub(crate) handle: Handle,
    /// The search/steal/park loop and this worker's queues (`hub`).
    pub(crate) hub: Hub<TaskRef, PerWorker>,
    /// This worker's counters (also reachable by others through `Shared::workers`).
    counters: Arc<Counters>,
    current: RefCell<Option<TaskRef>>,
    stacks: RefCell<StackPool>,
    /// The thread was not panicking when the hub resumed the current greenlet (see
    /// `switch::unwinding_is_ours`).
    resumed_clear: Cell<bool>,
    /// Greenlets whose interrupt waits for the thread to stop panicking (see
    /// `switch::defer_interrupt`).
    deferred: RefCell<Vec<TaskRef>>,
}

impl Local {
    pub(crate) fn new(index: usize, shared: Arc<Shared>, fresh: Worker<TaskRef>) -> Local {
        let stacks = StackPool::new(shared.stacks.clone());
        Local {
            index,
            hub: Hub::new(index, shared.core.clone(), fresh),
            current: RefCell::new(None),
            stacks: RefCell::new(stacks),
            resumed_clear: Cell::new(true),
            deferred: RefCell::new(Vec::new()),
            counters: shared.workers()[index].data.counters.clone(),
            handle: Handle {
                shared: shared.clone(),
            },
            shared,
        }
    }

    /// The worker thread's main function.
    pub(crate) fn run(self) {
        overflow::install();
        overflow::ensure_altstack();
        let _local = SetLocal::new(&self);
        self.begin_watching();
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            // The flag is checked before taking every greenlet: once shutdown begins, no
            // queued greenlet may start (tests/shutdown.rs holds us to it).
            self.hub.run(&self, |t| self.run_task(t));
        }));
        if let Err(payload) = outcome {
            self.failed("its scheduling loop", payload);
        }
        self.end_watching();
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| self.shutdown())) {
            self.failed("its shutdown", payload);
            self.abandon_all();
        }
        self.exit();
    }

    /// The hub failed (a grove bug: see "If the hub itself fails"): say so, abandon the
    /// greenlet it was running, and shut the runtime down so every join resolves.
    #[cold]
    fn failed(&self, during: &str, payload: Box<dyn std::any::Any + Send>) {
        let msg = payload_text(&*payload);
        dispose_payload(payload);
        report!(
            "grove: worker {} failed during {during} ({msg}); this is a grove bug. The \
             runtime shuts down: every greenlet is unwound or cancelled and its join \
             reports a shutdown",
            self.index
        );
        overflow::clear_current();
        self.counters.spot.leave();
        let cur = self
            .current
            .try_borrow_mut()
            .ok()
            .and_then(|mut c| c.take());
        if let Some(t) = cur {
            self.abandon(t, "running when its worker failed");
        }
        self.shared.begin_shutdown(None);
    }

    /// The greenlet running on this thread, if any.
    pub(crate) fn current(&self) -> Option<TaskRef> {
        self.current.borrow().clone()
    }

    /// Runs `f` on the current greenlet's header without touching its refcount.
    pub(crate) fn with_current<R>(&self, f: impl FnOnce(Option<&Header>) -> R) -> R {
        let cur = self.current.borrow();
        f(cur.as_deref().map(|t| t.header()))
    }

    /// Runs one greenlet until it switches back (step 2–4 of "The path of a greenlet").
    fn run_task(&self, task: TaskRef) {
        // A detached greenlet's first run may be handed to a less loaded worker (`placement`).
        let Some(task) = self.place(task) else {
            return;
        };
        let counters = &*self.counters;
        let h = task.header();
        // SAFETY: we took `task` off a run queue, so this hub owns it; a started greenlet
        // is only ever queued on its home worker, which is this thread.
        let slot = unsafe { h.coroutine_mut() };
        if slot.is_none() {
            if h.is_done() {
                return;
            }
            match self.start(&task) {
                Some(co) => *slot = Some(co),
                None => return,
            }
        }
        Counters::bump(&counters.run);
        h.state.start_running();
        let co: *mut Co = slot.as_mut().expect("run_task: no coroutine");
        // SAFETY: as above; `co` points into the task, which `current` keeps alive
        // across the resume, and nothing else touches the cell meanwhile.
        let guard = (
            h.guard.0.load(Ordering::Relaxed),
            h.guard.1.load(Ordering::Relaxed),
        );
        overflow::set_current(guard, h.name.as_deref().unwrap_or(""), h.id);
        counters.spot.enter(h);
        *self.current.borrow_mut() = Some(task);
        self.resumed_clear.set(!std::thread::panicking());
        // SAFETY: see above.
        let result = unsafe { (*co).resume(()) };
        overflow::clear_current();
        counters.spot.leave();
        let task = self
            .current
            .borrow_mut()
            .take()
            .expect("run_task: lost current");
        let h = task.header();
        match result {
            CoroutineResult::Yield(Suspend::Yield) => {
                self.keep_alive(&task);
                h.state.complete_yield();
                self.hub.push_ready(task);
            }
            CoroutineResult::Yield(Suspend::Park) => {
                Counters::bump(&counters.parked);
                // Before `complete_park`: once parked, a wake may queue it elsewhere.
                self.keep_alive(&task);
                if !h.state.complete_park() {
                    // Woken between asking to park and now: run it again later.
                    self.hub.push_ready(task);
                }
            }
            CoroutineResult::Return(()) => {
                // SAFETY: still the owning hub; the greenlet returned, so its stack is free.
                let co = unsafe { h.coroutine_mut() }
                    .take()
                    .expect("run_task: no coroutine");
                self.stacks.borrow_mut().put(co.into_stack());
                self.finish(task);
            }
        }
        self.wake_deferred();
    }

    /// First run: take this worker as home, give it a stack, register it.
    fn start(&self, task: &TaskRef) -> Option<Co> {
        let h = task.header();
        if final_of(h.interrupt.load()) == KILL {
            // Killed before it ever ran: it never will.
            task.cancel_unstarted(JoinError::killed(h.display_name()));
            self.finish(task.clone());
            return None;
        }
        // SAFETY: we took the unstarted greenlet off a run queue: this hub owns it.
        let stack = match unsafe { h.take_prealloc() } {
            Some(s) => s,
            None => match self.stacks.borrow_mut().get() {
                Ok(s) => s,
                Err(e) => {
                    task.set_failed(JoinError::no_stack(e.to_string(), h.display_name()));
                    self.finish(task.clone());
                    return None;
                }
            },
        };
        let (lo, hi) = stack.guard_range();
        h.guard.0.store(lo, Ordering::Relaxed);
        h.guard.1.store(hi, Ordering::Relaxed);
        h.home.store(self.index, Ordering::Relaxed);
        self.counters.homed_add(1);
        // The registry entry is made at the first suspend (see `keep_alive`), so a
        // greenlet that runs to completion in one go never touches it.
        let body: *const dyn Runnable = Arc::as_ptr(task);
        Some(Coroutine::with_stack(stack, move |yielder, ()| {
            // SAFETY: the body runs only inside `resume` calls, during which the hub's
            // `current` holds the task; between them (suspended) the registry holds it
            // (`keep_alive`), and a shutdown unwinds the coroutine before releasing it.
            let body = unsafe { &*body };
            // SAFETY: we are at the root of this greenlet's stack, on its home thread,
            // and the yielder lives as long as the coroutine.
            unsafe { body.header().set_yielder(yielder) };
            body.run_body();
        }))
    }

    /// Registers a suspended greenlet, once, so that a shutdown can find and unwind it
    /// and so that its task outlives the stack running its body.
    fn keep_alive(&self, task: &TaskRef) {
        let h = task.header();
        if h.slot.load(Ordering::Relaxed) == usize::MAX {
            let (slot, at) = {
                let mut registry = lock(&self.remote().data.registry);
                let slot = registry.insert(task.clone());
                (slot, registry.entry_addr(slot))
            };
            h.slot.store(slot, Ordering::Relaxed);
            h.slot_at.store(at, Ordering::Relaxed);
        }
    }

    fn remote(&self) -> &WorkerSlot {
        self.hub.remote()
    }

    fn finish(&self, task: TaskRef) {
        let h = task.header();
        if h.home.load(Ordering::Relaxed) == self.index {
            self.counters.homed_add(usize::MAX); // -1
        }
        // Step 2 of `spotlight`: no reader may still be looking at it when our
        // references go (the registry's below, `task` at the end).
        self.counters.spot.release(h);
        let slot = h.slot.swap(usize::MAX, Ordering::Relaxed);
        if slot != usize::MAX {
            let removed = lock(&self.remote().data.registry).remove(slot);
            drop(removed);
        }
        self.shared.count_finished(Some(self.index));
        if h.complete() {
            report_unjoined(&*task);
        }
    }

    /// After a greenlet switched back: if interrupts were deferred and the thread is no
    /// longer unwinding, wake their greenlets to take them (`defer_interrupt`).
    fn wake_deferred(&self) {
        if self.deferred.borrow().is_empty() || std::thread::panicking() {
            return;
        }
        let deferred = std::mem::take(&mut *self.deferred.borrow_mut());
        for t in deferred {
            t.waker().wake();
        }
    }
}

/// How a wake reaches the runtime: the seam between the greenlet object (`task`) and
/// the scheduler.
impl Schedule for Arc<Shared> {
    /// Queues a started greenlet that a wake moved from `PARKED` to `SCHEDULED`: on its
    /// home worker, a local push (the LIFO slot, or in order during a harvest);
    /// elsewhere, its home inbox and an unpark (`Core::push_remote`), or the end of the
    /// current wake batch (`batch`).
    fn schedule(&self, task: TaskRef) {
        let home = task.header().home.load(Ordering::Relaxed);
        with_local(move |local| match local {
            Some(l) if l.index == home && Arc::ptr_eq(&l.shared, self) => {
                l.hub.push_woken(task, batch::harvesting())
            }
            _ => {
                Counters::bump_shared(&self.workers()[home].data.counters.woken_remote);
                if let Some(task) = batch::defer_remote(self, task) {
                    self.push_remote(home, task);
                }
            }
        })
    }
}

impl Shared {
    /// Queues an unstarted greenlet: on this worker if we are one (the hub's LIFO slot,
    /// `Hub::push_spawned`), else the global injector (`Core::push_outside`). Once
    /// shutdown has begun it is cancelled instead (its join reports `is_shutdown`).
    pub(crate) fn push_new(self: &Arc<Self>, task: TaskRef) {
        with_local(|l| {
            let l = l.filter(|l| Arc::ptr_eq(&l.shared, self));
            let worker = l.map(|l| l.index);
            self.count_spawned(worker);
            if self.is_shutdown() {
                self.cancel_unstarted(worker, task);
                return;
            }
            match l {
                Some(l) => l.hub.push_spawned(task),
                None => self
                    .core
                    .push_outside(task, |t| self.cancel_unstarted(None, t)),
            }
        })
    }
}
