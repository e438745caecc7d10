// Without --cfg grove_loom this file compiles to an empty crate, docs included.
#![cfg_attr(not(grove_loom), allow(missing_docs))]
#![cfg(grove_loom)]
//! Loom models of the idle-worker protocol (`scheduler/src/idle.rs`) as the hub core runs
//! it (`scheduler/src/hub.rs`): who searches, who sleeps, and how a sleeper is woken, plus
//! the `Parker` it sleeps on.
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
//! * A **worker** thread runs the production hub loop, `Hub::run`, on the production
//!   `Core` (queues, `Idle`, parkers, shutdown gate), with a token type ([`Item`]) for the
//!   runnable and no hooks: `next_task` (its LIFO slot, `ready`, inbox, `fresh`, a batch
//!   from the injector, and the every-N-ticks fairness checks), `search` (become a
//!   searcher, steal a batch from a peer's `fresh`), `sleep` (`transition_worker_to_parked`,
//!   the last searcher's `has_stealable_work` re-check, `Parker::park`,
//!   `unpark_worker_by_id`) and the `end_search` before each run. Running an item is the
//!   model's closure.
//! * A greenlet that spawns is `Hub::push_spawned` once the LIFO slot is taken, i.e.
//!   `Hub::requeue` of an unstarted greenlet: push to the worker's own `fresh` deque, then
//!   `Core::notify_parked`. A CPU-bound greenlet that keeps its worker busy is modelled by
//!   blocking that worker thread until the spawned work is done, so only its peers can run
//!   it.
//! * The **publisher** thread is `Core::push_outside` (a spawn from outside the runtime:
//!   push to the injector, then notify).
//! * The **reactor** thread is `Core::push_remote`: push a started greenlet to its home
//!   worker's inbox, then unpark that worker's `Parker` (the runtime's `Schedule` for a
//!   wake from another thread).
//! * Shutdown is `Core::close`, done by whichever worker runs the last item: close the
//!   gate, then unpark every parker. Workers leave `Hub::run` when they see it, which bounds
//!   the model.
//!
//! The queues are the scheduler's loom stand-ins for crossbeam's (`scheduler/src/queue.rs`):
//! FIFO under a lock, but emptiness answered from an atomic count without the lock, as
//! crossbeam answers it from its indices, so a missing fence is not hidden by the lock.
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
//! # Shown to fail when broken (checked on the production code, then reverted)
//! * `Hub::sleep` without the last searcher's `has_stealable_work` re-check: every model
//!   but `targeted_wake_reaches_worker_going_to_sleep` (a targeted wake bypasses `Idle`)
//!   deadlocks: the work sits in a queue while the last searcher sleeps.
//! * `Idle::worker_to_notify` without its `SeqCst` fence: `outside_spawns_reach_two_workers`,
//!   `outside_spawn_reaches_three_workers` and `spawn_from_busy_worker_reaches_peer_two_workers`
//!   deadlock (the publisher reads the counters before its push is visible to the worker
//!   going to sleep, whose re-check misses the push).
//! * `Hub::requeue` without `Core::notify_parked`: both two-worker spawn-from-busy-worker
//!   models deadlock.
//!
//! Earlier versions of these models (a copy of the loop) were also seen to fail with a
//! notified sleeper not counted as searching or as unparked, and with `Parker` missing its
//! lock hand-off, its `notify_one`, or with the old `store(EMPTY)`.
//!
//! # Bounds
//! At most three items and three workers. The three-worker models use at most two
//! preemptions (see `builder`): at three, `spawn_from_busy_worker_reaches_peers_three_workers`
//! alone takes many minutes on a two-core machine.

use grove_scheduler::__loom::{Core, Hub, Job, Parker};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

/// A runnable greenlet, as far as the hub core sees it.
#[derive(Debug, Clone, Copy)]
enum Item {
    /// Unstarted (spawned from outside): runs and finishes.
    Plain,
    /// Started, homed on the worker it was pushed to (a targeted wake): runs and finishes.
    Woken,
    /// Unstarted, spawned by a `SpawnAndHold`: runs, then tells the holder.
    Child,
    /// Started on worker 0: spawns this many `Child` greenlets there, then keeps that
    /// worker busy (a CPU-bound loop) until they have all run elsewhere.
    SpawnAndHold(usize),
}

impl Job for Item {
    fn is_started(&self) -> bool {
        matches!(self, Item::Woken | Item::SpawnAndHold(_))
    }
}

/// The production core, with `()` as the runtime's per-worker data.
type ModelCore = Core<Item, ()>;

/// What the model counts beside the core.
struct Model {
    /// Shared with the hubs through a `std` `Arc`, as the runtime shares it.
    core: std::sync::Arc<ModelCore>,
    /// Items run so far; the one that runs item `total` begins shutdown.
    processed: AtomicUsize,
    total: usize,
    /// Children of `SpawnAndHold` run so far, and where its worker waits for them.
    children_done: AtomicUsize,
    holder: Parker,
}

impl Model {
    /// Runs one item on the worker of `hub` (the body of a greenlet).
    fn run_item(&self, hub: &Hub<Item, ()>, item: Item) {
        match item {
            Item::Plain | Item::Woken => {}
            Item::Child => {
                self.children_done.fetch_add(1, Ordering::Release);
                self.holder.unpark();
            }
            Item::SpawnAndHold(children) => {
                for _ in 0..children {
                    // `push_spawned` once the LIFO slot is taken: the displaced greenlet
                    // is requeued where peers can steal it, and idle peers are notified.
                    hub.requeue(Item::Child);
                }
                // CPU-bound until the children ran: only peers can run them.
                while self.children_done.load(Ordering::Acquire) < children {
                    self.holder.park();
                }
            }
        }
        if self.processed.fetch_add(1, Ordering::AcqRel) + 1 == self.total {
            self.core
                .close(|t| panic!("{t:?} still queued when every item had run"));
        }
    }
}

/// A runtime of `n` workers expecting `total` items, with `seed` already queued on
/// worker 0's `ready` queue (started greenlets, so they cannot be stolen).
fn runtime(n: usize, total: usize, seed: &[Item]) -> (Arc<Model>, Vec<Hub<Item, ()>>) {
    let (core, deques) = Core::new(n, |_| ());
    let core = std::sync::Arc::new(core);
    let hubs: Vec<Hub<Item, ()>> = deques
        .into_iter()
        .enumerate()
        .map(|(i, fresh)| Hub::new(i, core.clone(), fresh))
        .collect();
    for &item in seed {
        hubs[0].push_ready(item);
    }
    let model = Arc::new(Model {
        core,
        processed: AtomicUsize::new(0),
        total,
        children_done: AtomicUsize::new(0),
        holder: Parker::new(),
    });
    (model, hubs)
}

/// Starts every worker on the production loop, runs `outside` on the model's main thread
/// (the publisher or the reactor), joins the workers, and checks that all items ran.
fn run_workers(model: Arc<Model>, hubs: Vec<Hub<Item, ()>>, outside: impl FnOnce(&ModelCore)) {
    let handles: Vec<_> = hubs
        .into_iter()
        .map(|hub| {
            let model = model.clone();
            thread::spawn(move || hub.run(&(), |item| model.run_item(&hub, item)))
        })
        .collect();
    outside(&model.core);
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(model.processed.load(Ordering::Acquire), model.total);
    let n = model.core.workers.len();
    let (unparked, searching) = model.core.idle.counts();
    assert!(
        searching <= unparked && unparked <= n,
        "idle counters out of range: unparked {unparked}, searching {searching}, workers {n}"
    );
}

/// A spawn from outside the runtime (nothing is ever cancelled in these models).
fn spawn_outside(core: &ModelCore, item: Item) {
    core.push_outside(item, |t| panic!("{t:?} cancelled before shutdown"));
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
        let (model, hubs) = runtime(2, 2, &[]);
        run_workers(model, hubs, |core| {
            spawn_outside(core, Item::Plain);
            spawn_outside(core, Item::Plain);
        });
    });
}

/// A greenlet on worker 0 spawns one greenlet onto its own `fresh` deque and keeps
/// worker 0 busy: worker 1, possibly on its way to sleep, must be woken or must find
/// it while searching.
#[test]
fn spawn_from_busy_worker_reaches_peer_two_workers() {
    builder(3).check(|| {
        let (model, hubs) = runtime(2, 2, &[Item::SpawnAndHold(1)]);
        run_workers(model, hubs, |_| {});
    });
}

/// As above with two children: the first wake may be absorbed by a searcher, which
/// must then wake or be followed by someone for the second.
#[test]
fn spawn_two_from_busy_worker_reach_peer_two_workers() {
    builder(3).check(|| {
        let (model, hubs) = runtime(2, 3, &[Item::SpawnAndHold(2)]);
        run_workers(model, hubs, |_| {});
    });
}

/// Three workers: worker 0 is busy and spawns two greenlets; workers 1 and 2 are
/// searching or sleeping. At most `2 * searching < workers` search at once, so one of
/// them may be refused the search and sleep without a re-check.
/// Preemption bound 2: at 3 this model alone takes many minutes on two cores.
#[test]
fn spawn_from_busy_worker_reaches_peers_three_workers() {
    builder(2).check(|| {
        let (model, hubs) = runtime(3, 3, &[Item::SpawnAndHold(2)]);
        run_workers(model, hubs, |_| {});
    });
}

/// Three workers, one outside spawn: the publisher's notify races all three workers
/// going to sleep. Preemption bound 2, as above.
#[test]
fn outside_spawn_reaches_three_workers() {
    builder(2).check(|| {
        let (model, hubs) = runtime(3, 1, &[]);
        run_workers(model, hubs, |core| spawn_outside(core, Item::Plain));
    });
}

/// A targeted wake (the reactor waking a started greenlet homed on worker 1) goes to
/// that worker's inbox and parker, bypassing `Idle`: it is never lost, whatever step of
/// going to sleep worker 1 is at, and whatever worker 0 does meanwhile.
#[test]
fn targeted_wake_reaches_worker_going_to_sleep() {
    builder(3).check(|| {
        let (model, hubs) = runtime(2, 1, &[]);
        run_workers(model, hubs, |core| core.push_remote(1, Item::Woken));
    });
}

/// A targeted wake and an outside spawn at once: the targeted wake takes worker 1 off
/// the sleeper list while a notifier may be popping it; both items still run.
#[test]
fn targeted_wake_and_spawn_together() {
    builder(3).check(|| {
        let (model, hubs) = runtime(2, 2, &[]);
        run_workers(model, hubs, |core| {
            core.push_remote(1, Item::Woken);
            spawn_outside(core, Item::Plain);
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
