//! The hub: the scheduling loop each worker thread runs on its native stack.
//!
//! # Queues of one worker
//! * `lifo`: the greenlet most recently woken by a greenlet of this worker. It runs
//!   next, which makes ping-pong between two greenlets a pair of direct hand-offs
//!   (tokio's LIFO slot). Capped at [`LIFO_BUDGET`] hand-offs in a row so two
//!   greenlets waking each other cannot starve the rest.
//! * `ready`: started greenlets that are runnable. Never stolen: a started greenlet
//!   belongs to its home worker for life (see the crate docs on thread-locals).
//! * `inbox` (in [`Remote`]): started greenlets woken from other threads.
//! * `fresh`: greenlets spawned here that have not started. Stealable by peers.
//! * the runtime's global injector: greenlets spawned from outside any worker.
//!
//! # Order of the search (one line a step, as the loop reads)
//! Every 64 ticks the injector first (fairness for outside spawns); every 16 ticks
//! the inbox is moved into `ready` (so remote wakes are not starved by a yield loop); then `lifo`, `ready`, the inbox, `fresh`, the
//! injector; then stealing from peers' `fresh` as a searcher (see `idle`); then sleep.
//!
//! # Shutdown
//! 1. `Shared::begin_shutdown` sets the flag (and the grace deadline), unparks every
//!    worker and cancels what waits in the global injector; from then on a spawn is
//!    cancelled at once (its join reports `JoinError::is_shutdown`). Each hub leaves its
//!    loop at the top: no greenlet starts after that.
//! 2. The hub cancels the unstarted greenlets of its own queues (dropped unrun, joins
//!    resolved with `is_shutdown`).
//! 3. It tells every started greenlet homed here (the registry) to unwind: a `SHUTDOWN`
//!    interrupt (see `interrupt`), raised at the blocking point the greenlet is parked
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

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::panic::{self, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use corosensei::{Coroutine, CoroutineResult};

use crate::error::JoinError;
use crate::interrupt::Side;
use crate::overflow;
use crate::queue::{Steal, Worker};
use crate::runtime::{Handle, Shared};
use crate::spotlight::Spotlight;
use crate::stack::StackPool;
use crate::task::{report_unjoined, Co, Header, Runnable, Suspend, TaskRef, NO_HOME};

/// Hand-offs through the LIFO slot before the slot's greenlet must queue like the rest.
const LIFO_BUDGET: u32 = 3;
// Fairness intervals, as tick masks: powers of two so the check is an AND, not a
// division (Go's 61 is prime only to avoid lock-step with other periodic work; the
// offsets used with them keep our three checks from landing on the same tick).
/// Every 64 ticks, the global injector is checked ahead of local work.
const GLOBAL_MASK: u32 = 63;
/// Every 16 ticks, the inbox is moved into `ready` ahead of local work.
const INBOX_MASK: u32 = 15;
/// Every 32 ticks, an unstarted greenlet runs ahead of started ones.
const FRESH_MASK: u32 = 31;

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

/// True if the current greenlet is itself unwinding, for certain: the thread is
/// panicking and was not when the hub last resumed this greenlet.
///
/// `std::thread::panicking()` counts per OS thread: a greenlet suspended in the middle
/// of an unwind (a destructor that blocks) leaves it true for every greenlet its worker
/// runs meanwhile, so on its own it cannot tell *whose* unwind it is (`interrupt`,
/// step 4).
pub(crate) fn unwinding_is_ours() -> bool {
    std::thread::panicking() && with_local(|l| l.is_some_and(|l| l.resumed_clear.get()))
}

/// An interrupt was not raised in the current greenlet because its thread is
/// unwinding. The hub wakes it again once its thread no longer is, so that the
/// interrupt is delayed, never lost, when the unwinding was another greenlet's
/// (`interrupt`, step 4).
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

#[cfg(test)]
thread_local! {
    /// Unit tests: makes this thread's hub fail at its next tick (a stand-in for a grove
    /// bug), to check that a failed hub leaves nothing dangling.
    pub(crate) static FAIL_HUB: Cell<bool> = const { Cell::new(false) };
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

/// Per-worker counters, readable from other threads.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) spawned: std::sync::atomic::AtomicU64,
    pub(crate) run: std::sync::atomic::AtomicU64,
    pub(crate) stolen: std::sync::atomic::AtomicU64,
    pub(crate) parked: std::sync::atomic::AtomicU64,
    pub(crate) woken_remote: std::sync::atomic::AtomicU64,
    /// Greenlets that finished (or were cancelled) on this worker.
    pub(crate) finished: std::sync::atomic::AtomicU64,
    /// The greenlet this worker is running (see `spotlight`). Next to `run`, which
    /// the hub also writes per resume: one cache line for both.
    pub(crate) spot: Spotlight<Header>,
    /// Started, unfinished greenlets homed here (gauge; see `placement`).
    pub(crate) homed: std::sync::atomic::AtomicUsize,
}

impl Counters {
    /// For counters with one writer (the worker itself): a relaxed load and store
    /// instead of a locked read-modify-write on the hot path.
    fn bump(c: &std::sync::atomic::AtomicU64) {
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// For counters any thread may bump (`woken_remote`).
    fn bump_shared(c: &std::sync::atomic::AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn bump_spawned(&self) {
        // Release: a reader that sees a later `finished` must see this spawn too.
        self.spawned
            .store(self.spawned.load(Ordering::Relaxed) + 1, Ordering::Release);
    }

    pub(crate) fn bump_finished(&self) {
        self.finished
            .store(self.finished.load(Ordering::Relaxed) + 1, Ordering::Release);
    }
}

/// A worker's state, owned by its thread.
pub(crate) struct Local {
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    /// `shared` as a public [`Handle`], so spawns from greenlets borrow instead of cloning.
    pub(crate) handle: Handle,
    /// This worker's counters (also reachable by others through `Shared::workers`).
    counters: Arc<Counters>,
    fresh: Worker<TaskRef>,
    ready: RefCell<VecDeque<TaskRef>>,
    lifo: Cell<Option<TaskRef>>,
    lifo_left: Cell<u32>,
    current: RefCell<Option<TaskRef>>,
    stacks: RefCell<StackPool>,
    tick: Cell<u32>,
    searching: Cell<bool>,
    rng: Cell<u64>,
    /// The thread was not panicking when the hub resumed the current greenlet (see
    /// [`unwinding_is_ours`]).
    resumed_clear: Cell<bool>,
    /// Greenlets whose interrupt waits for the thread to stop panicking (see
    /// [`defer_interrupt`]).
    deferred: RefCell<Vec<TaskRef>>,
}

/// The started, unfinished greenlets homed on one worker that have suspended at
/// least once, each with the time it first did.
///
/// Behind a mutex in the worker's [`Remote`](crate::runtime::Remote) so that run-info
/// dumps and the monitor can list it; the hub locks it only at a greenlet's first
/// suspension and at the finish of a greenlet that had suspended (never per switch,
/// never for a greenlet that runs to completion in one go), so the lock is uncontended
/// except while a dump copies it.
#[derive(Default)]
pub(crate) struct Registry {
    slots: Vec<Option<(TaskRef, Instant)>>,
    free: Vec<usize>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("len", &(self.slots.len() - self.free.len()))
            .finish()
    }
}

impl Registry {
    fn insert(&mut self, t: TaskRef) -> usize {
        let entry = Some((t, Instant::now()));
        match self.free.pop() {
            Some(i) => {
                self.slots[i] = entry;
                i
            }
            None => {
                self.slots.push(entry);
                self.slots.len() - 1
            }
        }
    }

    /// The registered greenlets, with the time each first suspended.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &(TaskRef, Instant)> {
        self.slots.iter().flatten()
    }

    fn remove(&mut self, i: usize) -> Option<TaskRef> {
        let t = self.slots.get_mut(i)?.take();
        if t.is_some() {
            self.free.push(i);
        }
        t.map(|(t, _)| t)
    }

    fn drain(&mut self) -> Vec<TaskRef> {
        self.free.clear();
        self.slots.drain(..).flatten().map(|(t, _)| t).collect()
    }
}

/// Locks a registry, ignoring poison: no user code runs under the lock.
pub(crate) fn lock_registry(m: &Mutex<Registry>) -> MutexGuard<'_, Registry> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Local {
    pub(crate) fn new(index: usize, shared: Arc<Shared>, fresh: Worker<TaskRef>) -> Local {
        let stacks = StackPool::new(shared.stacks.clone());
        Local {
            index,
            fresh,
            ready: RefCell::new(VecDeque::new()),
            lifo: Cell::new(None),
            lifo_left: Cell::new(LIFO_BUDGET),
            current: RefCell::new(None),
            stacks: RefCell::new(stacks),
            tick: Cell::new(0),
            searching: Cell::new(false),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1)),
            resumed_clear: Cell::new(true),
            deferred: RefCell::new(Vec::new()),
            counters: shared.workers[index].counters.clone(),
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
            while !self.shared.is_shutdown() {
                #[cfg(test)]
                if FAIL_HUB.with(|f| f.replace(false)) {
                    panic!("injected hub failure");
                }
                if let Some(t) = self.next_task() {
                    self.run_task(t);
                } else if let Some(t) = self.search() {
                    self.run_task(t);
                } else {
                    self.sleep();
                }
            }
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
        let msg = crate::task::payload_text(&*payload);
        crate::task::dispose_payload(payload);
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

    /// Queues a greenlet spawned by a greenlet of this worker.
    ///
    /// Like a wake, it takes the LIFO slot, which peers cannot steal, so a greenlet that
    /// spawns one child and returns (a chain, a request handed to a handler) costs no
    /// stealable push, no notification and no contention. Only what the slot displaces
    /// is published for stealing, and only then are idle peers notified (tokio's rule).
    pub(crate) fn push_spawned(&self, t: TaskRef) {
        if let Some(prev) = self.lifo.replace(Some(t)) {
            self.requeue(prev);
        }
    }

    /// Queues a started greenlet woken by code running on its home worker.
    fn push_woken(&self, t: TaskRef) {
        if crate::driver::harvesting() {
            // Woken by a harvest of events or timers (`driver`): in order, behind what is
            // ready; the LIFO slot is for a direct hand-off (a greenlet, or a finishing
            // greenlet's joiner).
            self.ready.borrow_mut().push_back(t);
            return;
        }
        if let Some(prev) = self.lifo.replace(Some(t)) {
            self.requeue(prev);
        }
    }

    /// Puts a runnable greenlet back in line: started ones stay home (`ready`),
    /// unstarted ones go where peers can steal them.
    fn requeue(&self, t: TaskRef) {
        if t.header().home.load(Ordering::Relaxed) == NO_HOME {
            self.fresh.push(t);
            self.shared.notify_parked();
        } else {
            self.ready.borrow_mut().push_back(t);
        }
    }

    fn next_rand(&self) -> u64 {
        // xorshift64*: only used to pick where to start stealing.
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn drain_inbox(&self) {
        let inbox = &self.shared.workers[self.index].inbox;
        let mut ready = self.ready.borrow_mut();
        while let Steal::Success(t) = inbox.steal() {
            ready.push_back(t);
        }
    }

    fn next_task(&self) -> Option<TaskRef> {
        let tick = self.tick.get().wrapping_add(1);
        self.tick.set(tick);
        // Harvest I/O and timers, give back stacks (`driver`, step 2).
        self.maintain(tick);

        // Fairness: outside spawns, remote wakes and unstarted greenlets get a turn
        // even when local work never runs out.
        if tick & GLOBAL_MASK == 0 {
            if let Some(t) = self.shared.injector.steal().success() {
                return Some(t);
            }
        }
        if tick & INBOX_MASK == 5 {
            self.drain_inbox();
        }
        // The LIFO slot, within its budget.
        if self.lifo_left.get() > 0 {
            if let Some(t) = self.lifo.take() {
                self.lifo_left.set(self.lifo_left.get() - 1);
                return Some(t);
            }
        } else if let Some(t) = self.lifo.take() {
            self.requeue(t);
        }
        self.lifo_left.set(LIFO_BUDGET);
        if tick & FRESH_MASK == 11 {
            // Start an unstarted greenlet, ours or a peer's. Stealing here even though
            // we have ready work matters: started greenlets never move, so how the
            // unstarted ones are split decides the balance for their whole life, and a
            // thief that stopped stealing once busy would leave most of a burst behind.
            if let Some(t) = self.fresh.pop().or_else(|| self.steal_from_peers()) {
                return Some(t);
            }
        }
        // Started greenlets that are ready, then remote wakes.
        if let Some(t) = self.ready.borrow_mut().pop_front() {
            return Some(t);
        }
        self.drain_inbox();
        if let Some(t) = self.ready.borrow_mut().pop_front() {
            return Some(t);
        }
        // Unstarted greenlets: ours, then a batch from the injector.
        if let Some(t) = self.fresh.pop() {
            return Some(t);
        }
        loop {
            match self.shared.injector.steal_batch_and_pop(&self.fresh) {
                Steal::Success(t) => return Some(t),
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        }
    }

    /// Steals unstarted greenlets from peers, as a searcher.
    ///
    /// No spinning before sleeping: measured here, a searcher that kept polling a busy
    /// peer's deque slowed that peer (its queue indices' cache lines bounced between
    /// cores) by more than the futex wakes it saved (chained_spawn 0.84x -> 1.25x tokio).
    fn search(&self) -> Option<TaskRef> {
        let shared = &*self.shared;
        if shared.workers.len() == 1 {
            return None;
        }
        if !self.searching.get() {
            if !shared.idle.transition_worker_to_searching() {
                return None;
            }
            self.searching.set(true);
        }
        self.steal_from_peers()
    }

    /// One pass over the peers, starting at a random one, taking a batch of unstarted
    /// greenlets from the first that has any.
    fn steal_from_peers(&self) -> Option<TaskRef> {
        let workers = &self.shared.workers;
        let n = workers.len();
        let start = (self.next_rand() % n as u64) as usize;
        for k in 0..n {
            let j = (start + k) % n;
            if j == self.index {
                continue;
            }
            loop {
                match workers[j].stealer.steal_batch_and_pop(&self.fresh) {
                    Steal::Success(t) => {
                        Counters::bump(&self.counters.stolen);
                        return Some(t);
                    }
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
        }
        None
    }

    /// Leaves the searching state once work is in hand (step 2 of `idle`).
    fn end_search(&self) {
        if self.searching.replace(false) && self.shared.idle.transition_worker_from_searching() {
            self.shared.notify_parked();
        }
    }

    fn sleep(&self) {
        let shared = &*self.shared;
        let was_searching = self.searching.replace(false);
        if shared
            .idle
            .transition_worker_to_parked(self.index, was_searching)
            && shared.has_stealable_work()
        {
            // We were the last searcher and work appeared: keep going instead.
            if !shared.idle.unpark_worker_by_id(self.index) {
                self.searching.set(true);
            }
            return;
        }
        if shared.is_shutdown() {
            shared.idle.unpark_worker_by_id(self.index);
            return;
        }
        // Before the futex sleep, spin a few microseconds on our *own* parker: a greenlet
        // of ours waiting on a peer's reply (ping-pong across workers) is typically woken
        // within a microsecond, and sleeping would put two futex calls on every round trip
        // (measured: a cross-worker Channel round trip cost ~27 us). Unlike a spinning
        // thief this reads only our own lines, so the busy peer is not slowed.
        let me = &shared.workers[self.index];
        // Idle time is when pooled stacks beyond the watermark are given back to the kernel
        // (`stack` module, step 4), a run at a time, stopping as soon as work or a timer is due.
        self.idle_trim();
        if !self.spin_before_park() {
            // `driver`, step 3: whoever watches the poll last hands it to the reactor.
            self.end_watching();
            me.parker.park();
            self.begin_watching();
        }
        if !shared.idle.unpark_worker_by_id(self.index) {
            // A publisher took us off the sleeper list and counted us as searching.
            self.searching.set(true);
        }
    }

    fn run_task(&self, task: TaskRef) {
        self.end_search();
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
                self.ready.borrow_mut().push_back(task);
            }
            CoroutineResult::Yield(Suspend::Park) => {
                Counters::bump(&counters.parked);
                // Before `complete_park`: once parked, a wake may queue it elsewhere.
                self.keep_alive(&task);
                if !h.state.complete_park() {
                    // Woken between asking to park and now: run it again later.
                    self.ready.borrow_mut().push_back(task);
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
        if crate::irq::final_of(h.interrupt.load()) == crate::interrupt::KILL {
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
        crate::placement::gauge_add(&self.counters.homed, 1);
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
            let slot = lock_registry(&self.remote().registry).insert(task.clone());
            h.slot.store(slot, Ordering::Relaxed);
        }
    }

    fn remote(&self) -> &crate::runtime::Remote {
        &self.shared.workers[self.index]
    }

    fn finish(&self, task: TaskRef) {
        let h = task.header();
        if h.home.load(Ordering::Relaxed) == self.index {
            crate::placement::gauge_add(&self.counters.homed, usize::MAX); // -1
        }
        // Step 2 of `spotlight`: no reader may still be looking at it when our
        // references go (the registry's below, `task` at the end).
        self.counters.spot.release(h);
        let slot = h.slot.swap(usize::MAX, Ordering::Relaxed);
        if slot != usize::MAX {
            let removed = lock_registry(&self.remote().registry).remove(slot);
            drop(removed);
        }
        self.shared.count_finished(Some(self.index));
        if h.complete() {
            report_unjoined(&*task);
        }
    }

    /// Steps 2–5 of "Shutdown".
    fn shutdown(&self) {
        let deadline = self.shared.shutdown_deadline();
        loop {
            // Step 3: tell every registered greenlet (again after each round: destructors
            // may have woken greenlets that registered meanwhile).
            let started: Vec<TaskRef> = lock_registry(&self.remote().registry)
                .iter()
                .map(|(t, _)| t.clone())
                .collect();
            for t in started.iter() {
                if t.header().in_foreign.load(Ordering::Relaxed) {
                    // Parked under a foreign (`extern "C"`) frame (`park_nounwind`): an
                    // unwind may not cross it, so its stack is leaked instead.
                    self.abandon(t.clone(), "parked under a foreign (extern \"C\") frame");
                } else {
                    crate::interrupt::shutdown(t);
                }
            }
            drop(started);
            // Steps 2 and 4: cancel the unstarted, run the started (a greenlet that
            // catches every unwind stays runnable: the deadline is checked here too).
            let mut turns = 0u32;
            while let Some(t) = self.next_in_shutdown() {
                turns = turns.wrapping_add(1);
                if turns % 64 == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                    self.ready.borrow_mut().push_front(t);
                    self.abandon_all();
                    return;
                }
                // SAFETY: we took it off one of our queues: this hub owns it.
                if unsafe { t.header().coroutine_mut() }.is_none() {
                    if !t.header().is_done() {
                        cancel_unstarted(&self.shared, Some(self.index), t);
                    }
                } else {
                    self.run_task(t);
                }
            }
            if lock_registry(&self.remote().registry)
                .iter()
                .next()
                .is_none()
            {
                return;
            }
            // Step 4: some are parked mid-unwind; their wakes unpark us.
            let me = &self.shared.workers[self.index];
            match deadline {
                Some(d) if Instant::now() >= d => {
                    self.abandon_all();
                    return;
                }
                Some(d) => me.parker.park_until(d),
                None => me.parker.park(),
            }
        }
    }

    /// The next greenlet of this worker's queues during shutdown (never the injector's
    /// nor a peer's: those are cancelled by `begin_shutdown` and by their own hubs).
    fn next_in_shutdown(&self) -> Option<TaskRef> {
        if let Some(t) = self.lifo.take() {
            return Some(t);
        }
        if let Some(t) = self.ready.borrow_mut().pop_front() {
            return Some(t);
        }
        self.drain_inbox();
        if let Some(t) = self.ready.borrow_mut().pop_front() {
            return Some(t);
        }
        self.fresh.pop()
    }

    /// Step 5: abandons every greenlet still registered or queued here.
    fn abandon_all(&self) {
        loop {
            let mut rest = lock_registry(&self.remote().registry).drain();
            rest.extend(self.lifo.take());
            if let Ok(mut ready) = self.ready.try_borrow_mut() {
                rest.extend(ready.drain(..));
            }
            while let Some(t) = self.fresh.pop() {
                rest.push(t);
            }
            while let Steal::Success(t) = self.remote().inbox.steal() {
                rest.push(t);
            }
            if rest.is_empty() {
                return;
            }
            for t in rest {
                // SAFETY: off every queue, on its home thread, and no hub runs it.
                if unsafe { t.header().coroutine_mut() }.is_some() {
                    self.abandon(t, "still blocked when the shutdown grace period ended");
                } else if !t.header().is_done() {
                    cancel_unstarted(&self.shared, Some(self.index), t);
                }
            }
        }
    }

    /// Step 5 for one started greenlet: leak its stack (it is never resumed, and its
    /// memory stays mapped, so whatever its frames point into stays valid), resolve its
    /// join. No user code of the greenlet runs.
    fn abandon(&self, task: TaskRef, why: &str) {
        let h = task.header();
        if h.is_done() {
            return;
        }
        // Step 2 of `spotlight`: it may have been published before it was suspended.
        self.counters.spot.release(h);
        let slot = h.slot.swap(usize::MAX, Ordering::Relaxed);
        if slot != usize::MAX {
            drop(lock_registry(&self.remote().registry).remove(slot));
        }
        // SAFETY: on the home thread, and the greenlet is not running (the caller took
        // it off `current` or a queue, or out of the registry).
        if let Some(co) = unsafe { h.coroutine_mut() }.take() {
            std::mem::forget(co);
        }
        report!(
            "grove: greenlet '{}' (id {}, spawned at {}) was abandoned: {why}{}; its stack \
             is leaked and the rest of its destructors do not run",
            h.display_name(),
            h.id,
            h.spawned_at,
            h.waiting_on()
                .map_or(String::new(), |w| format!(" (waiting on {w})")),
        );
        task.set_failed(JoinError::shutdown(h.display_name()));
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

    /// Step 6: from now on wakes for our greenlets are dropped by their senders.
    fn exit(&self) {
        let me = self.remote();
        me.exited.close();
        while let Steal::Success(t) = me.inbox.steal() {
            drop(t);
        }
    }
}

/// Drops a never-started greenlet, resolving its join with a shutdown error.
/// `worker` is the index of the calling worker thread, if it is one of `shared`'s.
pub(crate) fn cancel_unstarted(shared: &Shared, worker: Option<usize>, t: TaskRef) {
    let h = t.header();
    t.cancel_unstarted(JoinError::shutdown(h.display_name()));
    shared.count_finished(worker);
    h.complete();
}

/// Queues a started greenlet that an unpark moved from `PARKED` to `SCHEDULED`.
pub(crate) fn schedule_woken(task: TaskRef) {
    let home = task.header().home.load(Ordering::Relaxed);
    with_local(move |local| match local {
        Some(l) if l.index == home && Arc::ptr_eq(&l.shared, &task.header().rt) => {
            l.push_woken(task)
        }
        _ => {
            let rt = task.header().rt.clone();
            Counters::bump_shared(&rt.workers[home].counters.woken_remote);
            // Inside a wake batch (`driver`), the push and unpark wait for the batch's end.
            if let Some(task) = crate::driver::defer_remote(task) {
                rt.push_remote(home, task);
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
    // yield first: step 5 of `interrupt`); after, for one that arrived while parked.
    let why = if crate::interrupt::checkpoint(h, Side::Before) {
        Suspend::Yield
    } else {
        why
    };
    h.waiting_on.store(what, Ordering::Relaxed);
    // SAFETY: as above: we are on `h`'s own stack.
    unsafe { h.suspend(why) };
    crate::interrupt::checkpoint(h, Side::After);
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    use super::FAIL_HUB;
    use crate::Runtime;

    /// Item 1 of issue 15: a hub that fails (here: an injected panic standing in for a
    /// grove bug) shuts the runtime down, unwinds its parked greenlets (their destructors
    /// run, their joins report a shutdown), clears its `LOCAL` (a thread-local destructor
    /// on the worker thread sees no hub), and the runtime's drop still joins its threads.
    /// Run on a helper thread with a deadline, so a regression fails instead of hanging.
    #[test]
    fn a_failed_hub_leaves_nothing_dangling() {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            struct AtExit(Arc<AtomicBool>);
            impl Drop for AtExit {
                fn drop(&mut self) {
                    // Reads `LOCAL`: it must be null, not a pointer into a dead frame.
                    let no_hub = crate::worker_index().is_none();
                    self.0.store(no_hub, Ordering::SeqCst);
                }
            }
            thread_local! {
                static AT_EXIT: std::cell::RefCell<Option<AtExit>> =
                    const { std::cell::RefCell::new(None) };
            }
            struct Count(Arc<AtomicUsize>);
            impl Drop for Count {
                fn drop(&mut self) {
                    self.0.fetch_add(1, Ordering::SeqCst);
                }
            }
            let rt = Runtime::builder().workers(1).build().unwrap();
            let cleared = Arc::new(AtomicBool::new(false));
            let drops = Arc::new(AtomicUsize::new(0));
            let c2 = cleared.clone();
            rt.block_on(move || AT_EXIT.with(|a| *a.borrow_mut() = Some(AtExit(c2))));
            let d2 = drops.clone();
            let parked = rt.spawn(move || {
                let _c = Count(d2);
                loop {
                    crate::park();
                }
            });
            // Fail the hub at its next tick.
            rt.block_on(|| FAIL_HUB.with(|f| f.set(true)));
            let err = parked.join().unwrap_err();
            assert!(err.is_shutdown(), "{err}");
            assert_eq!(drops.load(Ordering::SeqCst), 1);
            let err = rt.spawn(|| 1).join().unwrap_err();
            assert!(err.is_shutdown(), "{err}");
            drop(rt);
            assert!(cleared.load(Ordering::SeqCst), "LOCAL outlived its hub");
            tx.send(()).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the scenario hung or panicked");
    }
}
