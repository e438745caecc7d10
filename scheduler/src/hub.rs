//! The hub core: the queues every worker shares and the search/steal/park loop each worker
//! runs, generic over an opaque runnable so that loom can drive it with a plain token.
//!
//! Nothing here knows what a greenlet is: no coroutine, no stack, no header. A runnable
//! ([`Job`]) says one thing about itself, whether it has started (a started one never moves:
//! see the crate docs); the worker (`worker`) decides what running one means and plugs its
//! periodic work in through [`Hooks`]. `loom-tests/tests/idle.rs` and `park.rs` run this very
//! loop with a token type.
//!
//! # Queues of one worker
//! * `lifo`: the runnable most recently woken (or spawned) by code of this worker. It runs
//!   next, which makes ping-pong between two greenlets a pair of direct hand-offs (tokio's
//!   LIFO slot). Capped at [`LIFO_BUDGET`] hand-offs in a row so two greenlets waking each
//!   other cannot starve the rest.
//! * `ready`: started runnables that are runnable. Never stolen: a started greenlet belongs
//!   to its home worker for life.
//! * `inbox` (in [`Remote`]): started runnables woken from other threads.
//! * `fresh`: runnables queued here that have not started. Stealable by peers.
//! * the global `injector` (in [`Core`]): runnables queued from outside any worker.
//!
//! # Order of the search (one line a step, as [`Hub::next_task`] reads)
//! 1. Every tick: the owner's periodic work ([`Hooks::maintain`]: harvest I/O, trim stacks).
//! 2. Every 64 ticks: the injector first (fairness for outside spawns).
//! 3. Every 16 ticks: the inbox is moved into `ready` (remote wakes are not starved by a
//!    yield loop).
//! 4. The LIFO slot, within its budget.
//! 5. Every 32 ticks: an unstarted runnable, ours or a peer's, ahead of started ones.
//! 6. `ready`, then the inbox, then `fresh`, then a batch from the injector.
//! 7. Out of local work ([`Hub::search`]): steal a batch of unstarted runnables from a peer,
//!    as a searcher (see `idle`).
//! 8. Nothing anywhere ([`Hub::sleep`]): the idle protocol's steps 3 and 5, around a sleep
//!    on this worker's [`Parker`].
//!
//! # The shared core
//! [`Core`] holds what all workers share: each worker's [`Remote`] (inbox, thief end of
//! `fresh`, parker, exit gate, plus whatever the owner keeps per worker), the injector, the
//! idle counters and the shutdown gate. Its pushes follow the `idle` protocol (publish, then
//! notify) and the `gate` handshake (push, then drain if closed).

// Items are `pub` so that `__loom` can re-export them to the loom tests.
#![allow(unreachable_pub)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use crate::gate::Gate;
use crate::idle::{Idle, Parker};
use crate::loom::{lock, Condvar, Mutex};
use crate::queue::{Injector, Steal, Stealer, Worker};

/// Hand-offs through the LIFO slot before the slot's runnable must queue like the rest.
pub const LIFO_BUDGET: u32 = 3;
// Fairness intervals, as tick masks: powers of two so the check is an AND, not a
// division (Go's 61 is prime only to avoid lock-step with other periodic work; the
// offsets used with them keep our three checks from landing on the same tick).
/// Every 64 ticks, the global injector is checked ahead of local work.
const GLOBAL_MASK: u32 = 63;
/// Every 16 ticks, the inbox is moved into `ready` ahead of local work.
const INBOX_MASK: u32 = 15;
/// Every 32 ticks, an unstarted runnable runs ahead of started ones.
const FRESH_MASK: u32 = 31;

/// What the hub core needs to know of a runnable.
pub trait Job {
    /// True once it has run on a worker, which is then its home for life: it is queued
    /// only there (`ready`, the inbox), never where peers steal.
    fn is_started(&self) -> bool;
    /// A hint that this runnable was just queued behind others and runs soon: start
    /// loading its own object into the cache. Must not read the object (that load would
    /// miss and stall).
    fn prefetch_far(&self) {}
    /// A hint that this runnable runs next: start loading what resuming it touches. May
    /// read the object, which [`prefetch_far`](Self::prefetch_far) brought in when it was
    /// queued.
    fn prefetch_near(&self) {}
}

/// The owner's work around the loop. Every method defaults to nothing (loom's hubs).
pub trait Hooks {
    /// Step 1 of the search, at every tick.
    fn maintain(&self, _tick: u32) {}
    /// A batch of unstarted runnables was stolen from a peer.
    fn stolen(&self) {}
    /// Out of work, about to sleep on `parker`: last chance to find some (spin, harvest,
    /// give memory back). Returns `true` if it woke something, so the hub looks again.
    fn before_park(&self, _parker: &Parker) -> bool {
        false
    }
    /// The hub is about to sleep in the kernel.
    fn end_watching(&self) {}
    /// The hub woke from that sleep (and when it starts).
    fn begin_watching(&self) {}
}

impl Hooks for () {}

/// What other threads may touch of one worker, plus the owner's per-worker data `W`.
/// Aligned to 128 bytes (two cache lines, the unit adjacent-line prefetchers pull in) so
/// workers do not false-share.
#[repr(align(128))]
#[derive(Debug)]
pub struct Remote<R, W> {
    /// Started runnables homed here, woken from other threads.
    pub inbox: Injector<R>,
    /// Thief end of the worker's `fresh` queue (unstarted runnables only).
    pub stealer: Stealer<R>,
    /// Where the worker sleeps.
    pub parker: Parker,
    /// The hub has exited ([`Hub::exit`]): whoever pushes to `inbox` now must drain it
    /// too (see `gate`).
    pub exited: Gate,
    /// What the owner keeps per worker (the runtime: counters and the registry).
    pub data: W,
}

/// What all workers of one runtime share.
#[derive(Debug)]
pub struct Core<R, W> {
    /// One [`Remote`] per worker, by index.
    pub workers: Box<[Remote<R, W>]>,
    /// Runnables queued from outside any worker.
    pub injector: Injector<R>,
    /// Who searches and who sleeps (see `idle`).
    pub idle: Idle,
    /// Hubs must stop; whoever pushes to `injector` now must drain it too (see `gate`).
    pub shutdown: Gate,
    /// Hubs that have finished ([`Core::count_exit`]), and where a stopper waits for them
    /// ([`Core::wait_exits`]).
    exits: Mutex<usize>,
    exits_cv: Condvar,
}

impl<R, W> Core<R, W> {
    /// A core of `n` workers, `data(i)` beside worker `i`'s queues. Returns the owner ends
    /// of the workers' `fresh` deques, one per [`Hub`].
    pub fn new(n: usize, mut data: impl FnMut(usize) -> W) -> (Core<R, W>, Vec<Worker<R>>) {
        let deques: Vec<Worker<R>> = (0..n).map(|_| Worker::new_fifo()).collect();
        let workers = deques
            .iter()
            .enumerate()
            .map(|(i, d)| Remote {
                inbox: Injector::new(),
                stealer: d.stealer(),
                parker: Parker::new(),
                exited: Gate::new(),
                data: data(i),
            })
            .collect();
        let core = Core {
            workers,
            injector: Injector::new(),
            idle: Idle::new(n),
            shutdown: Gate::new(),
            exits: Mutex::new(0),
            exits_cv: Condvar::new(),
        };
        (core, deques)
    }

    /// True once shutdown has begun.
    #[inline]
    pub fn is_shutdown(&self) -> bool {
        self.shutdown.is_closed()
    }

    /// Wakes a sleeping worker if nobody is searching (step 1 of `idle`).
    #[inline]
    pub fn notify_parked(&self) {
        if let Some(i) = self.idle.worker_to_notify() {
            self.workers[i].parker.unpark();
        }
    }

    /// True if any queue a searcher could take from is non-empty.
    pub fn has_stealable_work(&self) -> bool {
        !self.injector.is_empty() || self.workers.iter().any(|w| !w.stealer.is_empty())
    }

    /// Queues a started runnable on its home worker from another thread (step 4 of
    /// `idle`): its inbox, then its parker. If that hub has exited, what the inbox holds
    /// is dropped (`gate`).
    #[inline]
    pub fn push_remote(&self, home: usize, task: R) {
        let w = &self.workers[home];
        w.inbox.push(task);
        w.parker.unpark();
        // Pairs with the hub's `exit` (see `gate`).
        if w.exited.closed_after_push() {
            while w.inbox.steal().success().is_some() {}
        }
    }

    /// Queues a runnable from outside any worker: the injector, then a notification
    /// (step 1 of `idle`). If shutdown has begun, what the injector holds is handed to
    /// `cancel` (`gate`).
    pub fn push_outside(&self, task: R, cancel: impl FnMut(R)) {
        self.injector.push(task);
        self.notify_parked();
        // Pairs with `close` (see `gate`).
        if self.shutdown.closed_after_push() {
            self.drain_injector(cancel);
        }
    }

    /// Hands every runnable of the injector to `cancel`.
    pub fn drain_injector(&self, mut cancel: impl FnMut(R)) {
        loop {
            match self.injector.steal() {
                Steal::Success(t) => cancel(t),
                Steal::Empty => break,
                Steal::Retry => {}
            }
        }
    }

    /// A hub's thread is done with the runtime (the last step of its shutdown): counted
    /// under the lock, then every waiter is woken, so a stopper that read a smaller count
    /// is either woken or reads this one.
    pub fn count_exit(&self) {
        *lock(&self.exits) += 1;
        self.exits_cv.notify_all();
    }

    /// Waits until `n` hubs have counted their exit, or until `deadline` (`None`: however
    /// long it takes). Returns `true` if all `n` did.
    pub fn wait_exits(&self, n: usize, deadline: Option<Instant>) -> bool {
        let mut exits = lock(&self.exits);
        while *exits < n {
            match deadline {
                None => {
                    exits = self
                        .exits_cv
                        .wait(exits)
                        .unwrap_or_else(PoisonError::into_inner)
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break;
                    }
                    exits = self
                        .exits_cv
                        .wait_timeout(exits, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
        *exits == n
    }

    /// Begins shutdown: closes the gate (hubs leave their loops at the top), hands what
    /// the injector holds to `cancel`, and unparks every hub.
    pub fn close(&self, cancel: impl FnMut(R)) {
        self.shutdown.close();
        self.drain_injector(cancel);
        for w in self.workers.iter() {
            w.parker.unpark();
        }
    }
}

/// One worker's queues and search state, owned by its thread.
pub struct Hub<R, W> {
    index: usize,
    core: Arc<Core<R, W>>,
    fresh: Worker<R>,
    ready: RefCell<VecDeque<R>>,
    lifo: Cell<Option<R>>,
    lifo_left: Cell<u32>,
    tick: Cell<u32>,
    searching: Cell<bool>,
    rng: Cell<u64>,
}

impl<R, W> std::fmt::Debug for Hub<R, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("index", &self.index)
            .field("searching", &self.searching.get())
            .finish_non_exhaustive()
    }
}

impl<R: Job, W> Hub<R, W> {
    /// The hub of worker `index`, owning `fresh` (from [`Core::new`]).
    pub fn new(index: usize, core: Arc<Core<R, W>>, fresh: Worker<R>) -> Hub<R, W> {
        Hub {
            index,
            core,
            fresh,
            ready: RefCell::new(VecDeque::new()),
            lifo: Cell::new(None),
            lifo_left: Cell::new(LIFO_BUDGET),
            tick: Cell::new(0),
            searching: Cell::new(false),
            rng: Cell::new(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1)),
        }
    }

    /// This worker's [`Remote`].
    #[inline]
    pub fn remote(&self) -> &Remote<R, W> {
        &self.core.workers[self.index]
    }

    /// The scheduling loop: until shutdown begins, find a runnable and hand it to `run`,
    /// or sleep. The flag is checked before taking every runnable: once shutdown begins,
    /// none starts.
    pub fn run(&self, hooks: &impl Hooks, mut run: impl FnMut(R)) {
        while !self.core.is_shutdown() {
            if let Some(t) = self.next_task(hooks) {
                self.end_search();
                run(t);
            } else if let Some(t) = self.search(hooks) {
                self.end_search();
                run(t);
            } else {
                self.sleep(hooks);
            }
        }
    }

    /// Queues a runnable spawned by code of this worker.
    ///
    /// Like a wake, it takes the LIFO slot, which peers cannot steal, so a greenlet that
    /// spawns one child and returns (a chain, a request handed to a handler) costs no
    /// stealable push, no notification and no contention. Only what the slot displaces
    /// is published for stealing, and only then are idle peers notified (tokio's rule).
    #[inline]
    pub fn push_spawned(&self, t: R) {
        if let Some(prev) = self.lifo.replace(Some(t)) {
            self.requeue(prev);
        }
    }

    /// Queues a started runnable woken by code running on this worker: the LIFO slot, or
    /// `ready` in order when `in_order` (woken by a harvest of events or timers, where the
    /// slot would run the last event's greenlet first).
    #[inline]
    pub fn push_woken(&self, t: R, in_order: bool) {
        if in_order {
            // A harvest wakes many at once; they run after the rest (see `pop_ready`).
            t.prefetch_far();
            self.ready.borrow_mut().push_back(t);
            return;
        }
        if let Some(prev) = self.lifo.replace(Some(t)) {
            self.requeue(prev);
        }
    }

    /// Queues a started runnable at the back of `ready` (a yield, a park that was woken
    /// before it completed).
    #[inline]
    pub fn push_ready(&self, t: R) {
        self.ready.borrow_mut().push_back(t);
    }

    /// Puts a runnable back in line: started ones stay home (`ready`), unstarted ones go
    /// where peers can steal them, and idle peers are notified.
    #[inline]
    pub fn requeue(&self, t: R) {
        if t.is_started() {
            self.ready.borrow_mut().push_back(t);
        } else {
            self.fresh.push(t);
            self.core.notify_parked();
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

    #[inline]
    fn drain_inbox(&self) {
        let inbox = &self.remote().inbox;
        let mut ready = self.ready.borrow_mut();
        while let Steal::Success(t) = inbox.steal() {
            // Woken on another thread: its object is cold here (see `pop_ready`).
            t.prefetch_far();
            ready.push_back(t);
        }
    }

    /// The front of `ready`, with the stack of the one after it prefetched. Resuming a
    /// greenlet parked for long is a chain of dependent misses (its object, then its saved
    /// stack pointer's line, then the next frames up) that showed as the hottest
    /// instruction of timer-heavy profiles. So it is pipelined: the object is prefetched
    /// when the greenlet is queued from a wake batch ([`Job::prefetch_far`]), its stack when
    /// it becomes next in line ([`Job::prefetch_near`]), and the run of the greenlet ahead
    /// of it hides the second wait.
    #[inline]
    fn pop_ready(&self) -> Option<R> {
        let mut ready = self.ready.borrow_mut();
        let t = ready.pop_front()?;
        if let Some(next) = ready.front() {
            next.prefetch_near();
        }
        Some(t)
    }

    /// Steps 1–6 of the search: the next runnable of this worker's own queues and the
    /// injector's.
    pub fn next_task(&self, hooks: &impl Hooks) -> Option<R> {
        let tick = self.tick.get().wrapping_add(1);
        self.tick.set(tick);
        hooks.maintain(tick);

        // Fairness: outside spawns, remote wakes and unstarted runnables get a turn
        // even when local work never runs out.
        if tick & GLOBAL_MASK == 0 {
            if let Some(t) = self.core.injector.steal().success() {
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
            // Start an unstarted runnable, ours or a peer's. Stealing here even though
            // we have ready work matters: started greenlets never move, so how the
            // unstarted ones are split decides the balance for their whole life, and a
            // thief that stopped stealing once busy would leave most of a burst behind.
            if let Some(t) = self.fresh.pop().or_else(|| self.steal_from_peers(hooks)) {
                return Some(t);
            }
        }
        // Started runnables that are ready, then remote wakes.
        if let Some(t) = self.pop_ready() {
            return Some(t);
        }
        self.drain_inbox();
        if let Some(t) = self.pop_ready() {
            return Some(t);
        }
        // Unstarted runnables: ours, then a batch from the injector.
        if let Some(t) = self.fresh.pop() {
            return Some(t);
        }
        loop {
            match self.core.injector.steal_batch_and_pop(&self.fresh) {
                Steal::Success(t) => return Some(t),
                Steal::Empty => return None,
                Steal::Retry => continue,
            }
        }
    }

    /// Step 7: steals unstarted runnables from peers, as a searcher.
    ///
    /// No spinning before sleeping: measured here, a searcher that kept polling a busy
    /// peer's deque slowed that peer (its queue indices' cache lines bounced between
    /// cores) by more than the futex wakes it saved (chained_spawn 0.84x -> 1.25x tokio).
    pub fn search(&self, hooks: &impl Hooks) -> Option<R> {
        if self.core.workers.len() == 1 {
            return None;
        }
        if !self.searching.get() {
            if !self.core.idle.transition_worker_to_searching() {
                return None;
            }
            self.searching.set(true);
        }
        self.steal_from_peers(hooks)
    }

    /// One pass over the peers, starting at a random one, taking a batch of unstarted
    /// runnables from the first that has any.
    fn steal_from_peers(&self, hooks: &impl Hooks) -> Option<R> {
        let workers = &self.core.workers;
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
                        hooks.stolen();
                        return Some(t);
                    }
                    Steal::Empty => break,
                    Steal::Retry => continue,
                }
            }
        }
        None
    }

    /// Leaves the searching state once work is in hand (step 2 of `idle`): the last
    /// searcher wakes another worker, since more work may be queued behind what it found.
    #[inline]
    pub fn end_search(&self) {
        if self.searching.replace(false) && self.core.idle.transition_worker_from_searching() {
            self.core.notify_parked();
        }
    }

    /// Step 8: steps 3 and 5 of `idle` around a sleep on this worker's parker.
    pub fn sleep(&self, hooks: &impl Hooks) {
        let core = &*self.core;
        let was_searching = self.searching.replace(false);
        if core
            .idle
            .transition_worker_to_parked(self.index, was_searching)
            && core.has_stealable_work()
        {
            // We were the last searcher and work appeared: keep going instead.
            if !core.idle.unpark_worker_by_id(self.index) {
                self.searching.set(true);
            }
            return;
        }
        if core.is_shutdown() {
            core.idle.unpark_worker_by_id(self.index);
            return;
        }
        let parker = &self.remote().parker;
        if !hooks.before_park(parker) {
            hooks.end_watching();
            parker.park();
            hooks.begin_watching();
        }
        if !core.idle.unpark_worker_by_id(self.index) {
            // A publisher took us off the sleeper list and counted us as searching.
            self.searching.set(true);
        }
    }

    /// The next runnable of this worker's own queues during shutdown (never the
    /// injector's nor a peer's: those are cancelled by [`Core::close`] and by their own
    /// hubs).
    pub fn next_in_shutdown(&self) -> Option<R> {
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

    /// Puts a runnable back at the front of `ready` (shutdown gives up before running it).
    pub fn push_front_ready(&self, t: R) {
        self.ready.borrow_mut().push_front(t);
    }

    /// Empties every queue of this worker into `out` (a failed or abandoning hub). `ready`
    /// is skipped if it is borrowed (the hub failed while it was).
    pub fn take_all(&self, out: &mut Vec<R>) {
        out.extend(self.lifo.take());
        if let Ok(mut ready) = self.ready.try_borrow_mut() {
            out.extend(ready.drain(..));
        }
        while let Some(t) = self.fresh.pop() {
            out.push(t);
        }
        while let Steal::Success(t) = self.remote().inbox.steal() {
            out.push(t);
        }
    }

    /// The hub's last step: marks it exited, after which whoever pushes to its inbox
    /// drains it (`gate`), and drops what the inbox holds.
    pub fn exit(&self) {
        let me = self.remote();
        me.exited.close();
        while let Steal::Success(t) = me.inbox.steal() {
            drop(t);
        }
    }
}
