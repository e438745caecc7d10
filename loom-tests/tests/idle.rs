// Without --cfg grove_loom this file compiles to an empty crate, docs included.
#![cfg_attr(not(grove_loom), allow(missing_docs))]
#![cfg(grove_loom)]
//! Loom models of the idle-worker protocol (`scheduler/src/idle.rs`): who searches,
//! who sleeps, and how a sleeper is woken, plus the `Parker` it sleeps on.
//!
//! # What is modelled
//! Workers that run out of work must sleep (an idle runtime burns no CPU), yet work
//! published anywhere must never sit in a queue while every worker that could take it
//! sleeps. The protocol: a publisher pushes, then (`Idle::worker_to_notify`, after a
//! `SeqCst` fence) wakes a sleeper if nobody is searching; a searcher that gives up
//! (`Idle::transition_worker_to_parked`) re-checks every shared queue if it was the
//! last one; a wake aimed at one worker bypasses the counters and unparks that worker's
//! `Parker`, which remembers an unpark that comes before the park.
//!
//! # Who each thread stands for
//! * A **worker** thread is `Local::run` (`scheduler/src/worker.rs`), reproduced step by
//!   step on the real `Idle` and `Parker` (and the scheduler's loom mock `Injector` for
//!   inboxes; stealable queues are [`Queue`], see there why): `next_task` (its `ready` queue,
//!   then its inbox, then its `fresh` deque, then a batch from the global injector),
//!   `search` (become a searcher, steal a batch from each peer's `fresh`), `sleep`
//!   (`transition_worker_to_parked`, the last searcher's `has_stealable_work` re-check,
//!   `Parker::park`, `unpark_worker_by_id`) and `run_task` (`end_search`, which wakes
//!   another worker when the last searcher finds work). The LIFO slot and the
//!   every-N-ticks fairness checks are left out: they only reorder local queues.
//! * A greenlet that spawns is `Local::push_spawned` once the LIFO slot is taken:
//!   `Local::requeue` of an unstarted greenlet, i.e. push to the worker's own `fresh`
//!   deque, then `Shared::notify_parked`. A CPU-bound greenlet that keeps its worker
//!   busy is modelled by blocking that worker thread until the spawned work is done,
//!   so only its peers can run it.
//! * The **publisher** thread is `Shared::push_new` from outside the runtime: push to
//!   the injector, then `Shared::notify_parked`.
//! * The **reactor** thread is `schedule_woken` → `Shared::push_remote`: push a started
//!   greenlet to its home worker's inbox, then unpark that worker's `Parker`.
//! * Shutdown is `Runtime::begin_shutdown`, done by whichever worker runs the last
//!   item: set the flag, then unpark every parker. Workers leave their loop when they
//!   see it, which bounds the model.
//!
//! # Properties asserted
//! * No lost wakeup: every item pushed is run. If all workers went to sleep with work
//!   queued, nobody would run the last item and start shutdown, every thread would be
//!   blocked and loom reports the deadlock.
//! * The counters stay in range (`searching <= unparked <= workers`) when all is over.
//! * `Parker`: an unpark before the park, or concurrent with it, makes the park return,
//!   and a park synchronizes with every unpark it consumes, including one that found a
//!   wake already pending (the regression model `parker_second_unpark_is_not_lost`).
//!
//! Each model was checked to fail when the protocol is broken on purpose: no
//! last-searcher re-check, no StoreLoad fence before `worker_to_notify` reads the
//! counters, a notified sleeper not counted as searching or as unparked, `Parker` without
//! its lock hand-off or its `notify_one`, or with the old `store(EMPTY)`.
//!
//! # What is not the production code
//! The queues, `Idle` and `Parker` are the runtime's own; the loop around them is a
//! step-by-step copy of `Local::run`, because the hub itself (`worker::Local`) is tied
//! to corosensei stacks and the `Arc<dyn Runnable>` greenlet type and cannot run under
//! loom. Driving the real hub needs the hub core generic over an opaque runnable
//! (issue 13); until then this copy must be kept in step with `worker.rs` by hand.
//!
//! # Bounds
//! At most three items and three workers. The three-worker models use at most two
//! preemptions (see `builder`): at three, `spawn_from_busy_worker_reaches_peers_three_workers`
//! alone takes about 17 minutes on a two-core machine (20 s at two).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use grove_scheduler::__loom::{Idle, Injector, Parker, Steal};
use loom::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// A runnable greenlet, as far as the scheduler's queues see it.
#[derive(Debug, Clone, Copy)]
enum Item {
    /// Runs and finishes.
    Plain,
    /// Spawned by a `SpawnAndHold`: runs, then tells the holder.
    Child,
    /// Spawns this many `Child` greenlets on its worker, then keeps that worker busy
    /// (a CPU-bound loop) until they have all run elsewhere.
    SpawnAndHold(usize),
}

/// How many of the items left after the first a `steal_batch_and_pop` moves.
#[derive(Clone, Copy)]
enum Batch {
    /// A peer's `Stealer`: half of them.
    Half,
    /// The global `Injector`: all of them, up to 16.
    UpTo16,
}

/// A stealable run queue: the worker's `fresh` deque or the global injector.
///
/// Semantics of crossbeam-deque's FIFO `Worker`/`Stealer` and `Injector` (and of the
/// scheduler's loom mock of them): FIFO, and `steal_batch_and_pop` takes one item and
/// moves a [`Batch`] of the rest into the thief's `fresh`. It is written here,
/// rather than taken from `grove_scheduler::__loom`, for one reason: emptiness. The mock
/// answers `is_empty` under the same lock as `push`, and that lock alone orders a push
/// against a concurrent `is_empty`, so with it the publisher's StoreLoad fence in
/// `Idle::worker_to_notify` could be deleted and no model would notice. crossbeam
/// publishes a push with an atomic store of its tail index and answers `is_empty` with
/// atomic loads, no lock: `Stealer::is_empty` puts a `fence(SeqCst)` between them, and
/// `Injector::is_empty` uses `SeqCst` loads, which loom models only as `Acquire`, so
/// the fence stands in for them. Here `len` plays the tail index: written under the
/// lock after each change, read by `is_empty` with no lock.
struct Queue {
    items: Mutex<VecDeque<Item>>,
    len: AtomicUsize,
}

impl Queue {
    fn new() -> Queue {
        Queue {
            items: Mutex::new(VecDeque::new()),
            len: AtomicUsize::new(0),
        }
    }

    fn push(&self, t: Item) {
        let mut q = self.items.lock().unwrap();
        q.push_back(t);
        self.len.store(q.len(), Ordering::Release);
    }

    /// The owner's `Worker::pop`, or an `Injector::steal` of one item.
    fn pop(&self) -> Option<Item> {
        let mut q = self.items.lock().unwrap();
        let t = q.pop_front();
        self.len.store(q.len(), Ordering::Release);
        t
    }

    /// `Stealer::steal_batch_and_pop` or `Injector::steal_batch_and_pop`.
    fn steal_batch_and_pop(&self, dest: &Queue, batch: Batch) -> Option<Item> {
        let mut src = self.items.lock().unwrap();
        let first = src.pop_front()?;
        let n = match batch {
            Batch::Half => src.len() / 2,
            Batch::UpTo16 => src.len().min(16),
        };
        if n > 0 {
            let mut dst = dest.items.lock().unwrap();
            dst.extend(src.drain(..n));
            dest.len.store(dst.len(), Ordering::Release);
        }
        self.len.store(src.len(), Ordering::Release);
        Some(first)
    }

    /// `Stealer::is_empty` / `Injector::is_empty`: no lock.
    fn is_empty(&self) -> bool {
        fence(Ordering::SeqCst);
        self.len.load(Ordering::Acquire) == 0
    }
}

/// `Remote`: what other threads may touch of one worker.
struct Remote {
    /// Started greenlets woken from other threads (only the owner takes from it).
    inbox: Injector<Item>,
    /// `fresh`: the owner pushes and pops, peers steal (`Worker` + `Stealer`).
    fresh: Queue,
    parker: Parker,
}

/// `Shared`, reduced to what the idle protocol uses, plus the model's bookkeeping.
struct Shared {
    workers: Vec<Remote>,
    injector: Queue,
    idle: Idle,
    shutdown: AtomicBool,
    /// Items run so far; the one that runs item `total` begins shutdown.
    processed: AtomicUsize,
    total: usize,
    /// Children of `SpawnAndHold` run so far, and where its worker waits for them.
    children_done: AtomicUsize,
    holder: Parker,
}

impl Shared {
    fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// `Shared::notify_parked`.
    fn notify_parked(&self) {
        if let Some(i) = self.idle.worker_to_notify() {
            self.workers[i].parker.unpark();
        }
    }

    /// `Shared::has_stealable_work`.
    fn has_stealable_work(&self) -> bool {
        !self.injector.is_empty() || self.workers.iter().any(|w| !w.fresh.is_empty())
    }

    /// `Shared::push_new` from outside any worker.
    fn push_new(&self, item: Item) {
        self.injector.push(item);
        self.notify_parked();
    }

    /// `Shared::push_remote`: a started greenlet woken from another thread.
    fn push_remote(&self, home: usize, item: Item) {
        let w = &self.workers[home];
        w.inbox.push(item);
        w.parker.unpark();
    }

    /// `Runtime::begin_shutdown`.
    fn begin_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        for w in &self.workers {
            w.parker.unpark();
        }
    }
}

/// `Local`: one worker's own state, owned by its thread.
struct Local {
    index: usize,
    shared: Arc<Shared>,
    ready: RefCell<VecDeque<Item>>,
    searching: Cell<bool>,
}

impl Local {
    /// `Local::run`.
    fn run(self) {
        while !self.shared.is_shutdown() {
            if let Some(t) = self.next_task() {
                self.run_task(t);
            } else if let Some(t) = self.search() {
                self.run_task(t);
            } else {
                self.sleep();
            }
        }
    }

    fn drain_inbox(&self) {
        let inbox = &self.remote().inbox;
        let mut ready = self.ready.borrow_mut();
        while let Steal::Success(t) = inbox.steal() {
            ready.push_back(t);
        }
    }

    /// `Local::next_task`, without the LIFO slot and the every-N-ticks checks.
    fn next_task(&self) -> Option<Item> {
        // Started greenlets that are ready, then remote wakes.
        if let Some(t) = self.ready.borrow_mut().pop_front() {
            return Some(t);
        }
        self.drain_inbox();
        if let Some(t) = self.ready.borrow_mut().pop_front() {
            return Some(t);
        }
        // Unstarted greenlets: ours, then a batch from the injector.
        let fresh = &self.remote().fresh;
        if let Some(t) = fresh.pop() {
            return Some(t);
        }
        self.shared
            .injector
            .steal_batch_and_pop(fresh, Batch::UpTo16)
    }

    fn remote(&self) -> &Remote {
        &self.shared.workers[self.index]
    }

    /// `Local::search`; peers are tried in index order after our own instead of from
    /// a random start (the order does not matter to the protocol).
    fn search(&self) -> Option<Item> {
        let shared = &*self.shared;
        let n = shared.workers.len();
        if n == 1 {
            return None;
        }
        if !self.searching.get() {
            if !shared.idle.transition_worker_to_searching() {
                return None;
            }
            self.searching.set(true);
        }
        for k in 1..n {
            let j = (self.index + k) % n;
            let peer = &shared.workers[j].fresh;
            if let Some(t) = peer.steal_batch_and_pop(&self.remote().fresh, Batch::Half) {
                return Some(t);
            }
        }
        None
    }

    /// `Local::end_search`.
    fn end_search(&self) {
        if self.searching.replace(false) && self.shared.idle.transition_worker_from_searching() {
            self.shared.notify_parked();
        }
    }

    /// `Local::sleep`.
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
        shared.workers[self.index].parker.park();
        if !shared.idle.unpark_worker_by_id(self.index) {
            // A publisher took us off the sleeper list and counted us as searching.
            self.searching.set(true);
        }
    }

    /// `Local::run_task`: leave the searching state, then run the greenlet's body.
    fn run_task(&self, item: Item) {
        self.end_search();
        let shared = &*self.shared;
        match item {
            Item::Plain => {}
            Item::Child => {
                shared.children_done.fetch_add(1, Ordering::Release);
                shared.holder.unpark();
            }
            Item::SpawnAndHold(children) => {
                for _ in 0..children {
                    // Local::push_spawned -> Local::requeue.
                    self.remote().fresh.push(Item::Child);
                    shared.notify_parked();
                }
                // CPU-bound until the children ran: only peers can run them.
                while shared.children_done.load(Ordering::Acquire) < children {
                    shared.holder.park();
                }
            }
        }
        if shared.processed.fetch_add(1, Ordering::AcqRel) + 1 == shared.total {
            shared.begin_shutdown();
        }
    }
}

/// A runtime of `n` workers expecting `total` items, with `seed` already queued on
/// worker 0's `ready` queue (a started greenlet, so it cannot be stolen).
fn runtime(n: usize, total: usize, seed: &[Item]) -> (Arc<Shared>, Vec<Local>) {
    let shared = Arc::new(Shared {
        workers: (0..n)
            .map(|_| Remote {
                inbox: Injector::new(),
                fresh: Queue::new(),
                parker: Parker::new(),
            })
            .collect(),
        injector: Queue::new(),
        idle: Idle::new(n),
        shutdown: AtomicBool::new(false),
        processed: AtomicUsize::new(0),
        total,
        children_done: AtomicUsize::new(0),
        holder: Parker::new(),
    });
    let locals: Vec<Local> = (0..n)
        .map(|index| Local {
            index,
            shared: shared.clone(),
            ready: RefCell::new(VecDeque::new()),
            searching: Cell::new(false),
        })
        .collect();
    locals[0].ready.borrow_mut().extend(seed.iter().copied());
    (shared, locals)
}

/// Starts every worker, runs `outside` on the model's main thread (the publisher or
/// the reactor), joins the workers, and checks that all items ran.
fn run_workers(shared: Arc<Shared>, locals: Vec<Local>, outside: impl FnOnce(&Shared)) {
    let handles: Vec<_> = locals
        .into_iter()
        .map(|l| thread::spawn(move || l.run()))
        .collect();
    outside(&shared);
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(shared.processed.load(Ordering::Acquire), shared.total);
    let n = shared.workers.len();
    let (unparked, searching) = shared.idle.counts();
    assert!(
        searching <= unparked && unparked <= n,
        "idle counters out of range: unparked {unparked}, searching {searching}, workers {n}"
    );
}

/// A model builder: `LOOM_MAX_PREEMPTIONS` (default 3), capped at `max_preemptions`.
fn builder(max_preemptions: usize) -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    let bound = b.preemption_bound.unwrap_or(3).min(max_preemptions);
    b.preemption_bound = Some(bound);
    b
}

/// An outside thread spawns two greenlets onto two idle workers: whichever way the
/// pushes and notifies interleave with the workers going to sleep, both run.
#[test]
fn outside_spawns_reach_two_workers() {
    builder(3).check(|| {
        let (shared, locals) = runtime(2, 2, &[]);
        run_workers(shared, locals, |s| {
            s.push_new(Item::Plain);
            s.push_new(Item::Plain);
        });
    });
}

/// A greenlet on worker 0 spawns one greenlet onto its own `fresh` deque and keeps
/// worker 0 busy: worker 1, possibly on its way to sleep, must be woken or must find
/// it while searching.
#[test]
fn spawn_from_busy_worker_reaches_peer_two_workers() {
    builder(3).check(|| {
        let (shared, locals) = runtime(2, 2, &[Item::SpawnAndHold(1)]);
        run_workers(shared, locals, |_| {});
    });
}

/// As above with two children: the first wake may be absorbed by a searcher, which
/// must then wake or be followed by someone for the second.
#[test]
fn spawn_two_from_busy_worker_reach_peer_two_workers() {
    builder(3).check(|| {
        let (shared, locals) = runtime(2, 3, &[Item::SpawnAndHold(2)]);
        run_workers(shared, locals, |_| {});
    });
}

/// Three workers: worker 0 is busy and spawns two greenlets; workers 1 and 2 are
/// searching or sleeping. At most `2 * searching < workers` search at once, so one of
/// them may be refused the search and sleep without a re-check.
/// Preemption bound 2: at 3 this model alone takes many minutes on two cores.
#[test]
fn spawn_from_busy_worker_reaches_peers_three_workers() {
    builder(2).check(|| {
        let (shared, locals) = runtime(3, 3, &[Item::SpawnAndHold(2)]);
        run_workers(shared, locals, |_| {});
    });
}

/// Three workers, one outside spawn: the publisher's notify races all three workers
/// going to sleep. Preemption bound 2, as above.
#[test]
fn outside_spawn_reaches_three_workers() {
    builder(2).check(|| {
        let (shared, locals) = runtime(3, 1, &[]);
        run_workers(shared, locals, |s| s.push_new(Item::Plain));
    });
}

/// A targeted wake (the reactor waking a started greenlet homed on worker 1) goes to
/// that worker's inbox and parker, bypassing `Idle`: it is never lost, whatever step of
/// going to sleep worker 1 is at, and whatever worker 0 does meanwhile.
#[test]
fn targeted_wake_reaches_worker_going_to_sleep() {
    builder(3).check(|| {
        let (shared, locals) = runtime(2, 1, &[]);
        run_workers(shared, locals, |s| s.push_remote(1, Item::Plain));
    });
}

/// A targeted wake and an outside spawn at once: the targeted wake takes worker 1 off
/// the sleeper list while a notifier may be popping it; both items still run.
#[test]
fn targeted_wake_and_spawn_together() {
    builder(3).check(|| {
        let (shared, locals) = runtime(2, 2, &[]);
        run_workers(shared, locals, |s| {
            s.push_remote(1, Item::Plain);
            s.push_new(Item::Plain);
        });
    });
}

/// `Parker`: an unpark before the park is remembered, so the park returns at once, and
/// it is consumed: the parker is empty again for the next round.
#[test]
fn parker_unpark_before_park() {
    loom::model(|| {
        let p = Arc::new(Parker::new());
        p.unpark();
        p.unpark();
        p.park();
        let p2 = p.clone();
        let t = thread::spawn(move || p2.unpark());
        p.park();
        t.join().unwrap();
    });
}

/// `Parker`: an unpark concurrent with the park, at any step of it, makes it return.
#[test]
fn parker_unpark_concurrent_with_park() {
    loom::model(|| {
        let p = Arc::new(Parker::new());
        let p2 = p.clone();
        let t = thread::spawn(move || p2.unpark());
        p.park();
        t.join().unwrap();
    });
}

/// `Parker`: the usual "check the condition, else park" loop with two unparkers, the
/// second of which publishes the condition before it unparks. The second unpark may
/// find the first still pending (`NOTIFIED`) and leave it at that; the park that
/// consumes the pending wake must then read the second unpark's write too, so that the
/// condition is visible, or the loop parks again and nobody is left to wake it.
///
/// Regression: `park` used to follow a failed `EMPTY → PARKED` CAS with a plain
/// `store(EMPTY)`, which could overwrite the second unpark's `NOTIFIED` unread. This
/// model deadlocked; the same race lost the shutdown flag in
/// `outside_spawns_reach_two_workers`.
#[test]
fn parker_second_unpark_is_not_lost() {
    loom::model(|| {
        let p = Arc::new(Parker::new());
        let ready = Arc::new(AtomicBool::new(false));
        let p1 = p.clone();
        let first = thread::spawn(move || p1.unpark());
        let (p2, ready2) = (p.clone(), ready.clone());
        let second = thread::spawn(move || {
            ready2.store(true, Ordering::Release);
            p2.unpark();
        });
        while !ready.load(Ordering::Acquire) {
            p.park();
        }
        first.join().unwrap();
        second.join().unwrap();
    });
}

/// `Parker`: two threads ping-pong twice through two parkers, so each parker goes
/// through park/unpark more than once and must return to `EMPTY` correctly each time.
#[test]
fn parker_ping_pong_reuse() {
    loom::model(|| {
        let a = Arc::new(Parker::new());
        let b = Arc::new(Parker::new());
        let (a2, b2) = (a.clone(), b.clone());
        let t = thread::spawn(move || {
            for _ in 0..2 {
                b2.park();
                a2.unpark();
            }
        });
        for _ in 0..2 {
            b.unpark();
            a.park();
        }
        t.join().unwrap();
    });
}
