// Without --cfg grove_loom this file compiles to an empty crate, docs included.
#![cfg_attr(not(grove_loom), allow(missing_docs))]
#![cfg(grove_loom)]
//! Loom models of a shutdown racing spawns and wakes, on the production hub core
//! (`scheduler/src/hub.rs`): the `Core`'s pushes and `close`, and a hub running
//! `Hub::run` until it sees the shutdown, then draining its own queues and exiting as
//! `Local::shutdown` and `Local::exit` do (`scheduler/src/worker/shutdown.rs`).
//!
//! # Who each thread stands for
//! * The **hub** runs `Hub::run` (the production loop) with no hooks; running an item
//!   counts it. Once the loop ends it takes what is left of its own queues
//!   (`Hub::next_in_shutdown`: LIFO slot, `ready`, inbox, `fresh`) and cancels it, as a
//!   hub cancels unstarted greenlets at shutdown, then `Hub::exit` (closes its `exited`
//!   gate and drops what its inbox holds).
//! * A **spawner** outside the runtime is `Core::push_outside`: push to the injector and
//!   notify; if the shutdown gate turns out closed, cancel what the injector holds.
//! * A **waker** from another thread is `Core::push_remote` (the runtime's `Schedule`):
//!   push to the hub's inbox and unpark it; if the hub has exited, drop what the inbox
//!   holds.
//! * The **closer** is `Shared::begin_shutdown`'s `Core::close`: close the shutdown gate,
//!   cancel what the injector holds, unpark every hub.
//! * The **stopper** (`stop_waits_for_every_hub`) is `Runtime::stop`: close, then
//!   `Core::wait_exits` until every hub's thread has counted its exit (`Core::count_exit`,
//!   the last thing a worker thread does with the runtime), before joining the threads.
//!
//! # Properties asserted
//! Every item pushed meets exactly one fate (run, cancelled, or dropped after the hub
//! exited) by the time every thread is done, and no queue holds anything: no join waits
//! for a greenlet that nobody will run or cancel (issue 15, item 5); the hub's loop ends
//! once the core is closed (else the model never ends: loom reports the deadlock).
//!
//! * `stop_waits_for_every_hub`: the stopper returns only once every hub has left its
//!   loop, drained and exited, and none of its wakes is lost (else loom reports the
//!   deadlock).
//!
//! # Shown to fail when broken (checked on the production code, then reverted)
//! * `Core::push_outside` without its `closed_after_push` drain:
//!   `spawn_races_shutdown` strands the spawn in the injector.
//! * `Hub::exit` without draining its inbox: `wake_races_hub_exit` strands the wake.
//! * `Core::count_exit` notifying before it counts, outside the lock:
//!   `stop_waits_for_every_hub` deadlocks (the stopper reads the old count, then sleeps
//!   through the only notification).
//!
//! # Bounds
//! One hub and two or three other threads, a handful of operations each: exhaustive
//! under `LOOM_MAX_PREEMPTIONS=3`.

use grove_scheduler::__loom::{Core, Hub, Job};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

/// A greenlet as the hub core sees it. Its drop counts it, whatever its fate.
#[derive(Debug)]
struct Item {
    started: bool,
    fates: Arc<Fates>,
}

impl Job for Item {
    fn is_started(&self) -> bool {
        self.started
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        self.fates.dropped.fetch_add(1, Ordering::AcqRel);
    }
}

/// What became of the items.
#[derive(Debug, Default)]
struct Fates {
    ran: AtomicUsize,
    cancelled: AtomicUsize,
    /// Every item, whatever its fate, ends dropped exactly once.
    dropped: AtomicUsize,
}

/// A new item counted in `fates`.
fn item(fates: &Arc<Fates>, started: bool) -> Item {
    Item {
        started,
        fates: fates.clone(),
    }
}

impl Fates {
    fn cancel(&self, item: Item) {
        assert!(!item.started, "a started greenlet was cancelled");
        self.cancelled.fetch_add(1, Ordering::AcqRel);
    }
}

/// The hub thread: the production loop, then its shutdown drain and exit.
fn hub_thread(hub: Hub<Item, ()>, fates: Arc<Fates>) {
    hub.run(&(), |item| {
        fates.ran.fetch_add(1, Ordering::AcqRel);
        drop(item);
    });
    while let Some(item) = hub.next_in_shutdown() {
        if item.started {
            // A started greenlet is unwound by its hub at shutdown: it runs.
            fates.ran.fetch_add(1, Ordering::AcqRel);
        } else {
            fates.cancel(item);
        }
    }
    hub.exit();
}

/// A one-worker core and its hub.
fn runtime() -> (std::sync::Arc<Core<Item, ()>>, Hub<Item, ()>) {
    let (core, mut fresh) = Core::new(1, |_| ());
    let core = std::sync::Arc::new(core);
    let hub = Hub::new(0, core.clone(), fresh.pop().unwrap());
    (core, hub)
}

/// Checks that `pushed` items were all accounted for and nothing is queued.
fn check(core: &Core<Item, ()>, fates: &Fates, pushed: usize) {
    assert!(core.injector.is_empty(), "a spawn stranded in the injector");
    assert!(
        core.workers[0].inbox.is_empty(),
        "a wake stranded in the inbox"
    );
    assert_eq!(
        fates.dropped.load(Ordering::Acquire),
        pushed,
        "an item was neither run, cancelled nor dropped"
    );
    assert!(fates.ran.load(Ordering::Acquire) + fates.cancelled.load(Ordering::Acquire) <= pushed);
}

/// A spawn from outside races the shutdown: it runs (pushed and taken before the close),
/// or it is cancelled, by the closer's drain or by the spawner's own.
#[test]
fn spawn_races_shutdown() {
    loom::model(|| {
        let (core, hub) = runtime();
        let fates = Arc::new(Fates::default());
        let f = fates.clone();
        let hub = thread::spawn(move || hub_thread(hub, f));
        let (c, f) = (core.clone(), fates.clone());
        let spawner = thread::spawn(move || {
            c.push_outside(item(&f, false), |t| f.cancel(t));
        });
        core.close(|t| fates.cancel(t));
        spawner.join().unwrap();
        hub.join().unwrap();
        check(&core, &fates, 1);
    });
}

/// A wake from another thread races the shutdown and the hub's exit: the greenlet runs,
/// or the wake is dropped by the hub's exit or by the waker's own drain.
#[test]
fn wake_races_hub_exit() {
    loom::model(|| {
        let (core, hub) = runtime();
        let fates = Arc::new(Fates::default());
        let f = fates.clone();
        let hub = thread::spawn(move || hub_thread(hub, f));
        let (c, f) = (core.clone(), fates.clone());
        let waker = thread::spawn(move || c.push_remote(0, item(&f, true)));
        core.close(|t| fates.cancel(t));
        waker.join().unwrap();
        hub.join().unwrap();
        check(&core, &fates, 1);
    });
}

/// Two hubs and the stopper: `Runtime::stop` closes the core and waits for both hubs'
/// exits. It returns only once both have left their loops, run their shutdown drain and
/// exited. (Spawns racing the shutdown are `spawn_races_shutdown`'s: with one here too the
/// model takes minutes.)
#[test]
fn stop_waits_for_every_hub() {
    loom::model(|| {
        let (core, hubs) = Core::new(2, |_| ());
        let core = std::sync::Arc::new(core);
        let fates = Arc::new(Fates::default());
        let exited = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = hubs
            .into_iter()
            .enumerate()
            .map(|(i, fresh)| {
                let hub = Hub::new(i, core.clone(), fresh);
                let (c, f, e) = (core.clone(), fates.clone(), exited.clone());
                thread::spawn(move || {
                    hub_thread(hub, f);
                    e.fetch_add(1, Ordering::Release);
                    c.count_exit();
                })
            })
            .collect();
        core.close(|t| fates.cancel(t));
        assert!(core.wait_exits(2, None), "stop returned early");
        assert_eq!(
            exited.load(Ordering::Acquire),
            2,
            "stop returned before every hub exited"
        );
        for t in threads {
            t.join().unwrap();
        }
        check(&core, &fates, 0);
    });
}
