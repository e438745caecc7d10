//! Wake batching: wakes aimed at other workers, queued once per worker at the end of a
//! batch (a driver's harvest, the reactor's round of events), and the harvesting flag that
//! keeps a hub's own wakes in order during a harvest.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use crate::shared::Shared;
use crate::task::TaskRef;

/// A deferred wake: the runtime of the greenlet, and the greenlet.
type Deferred = (Arc<Shared>, TaskRef);

thread_local! {
    /// Wakes aimed at other workers, deferred to the end of the current [`batch_wakes`]:
    /// `None` outside a batch.
    static BATCH: RefCell<Option<Vec<Deferred>>> = const { RefCell::new(None) };
    /// True while this hub harvests through its driver: its own greenlets woken meanwhile
    /// queue in order (`ready`) rather than taking the LIFO slot one after another, which would
    /// run the last event's greenlet first.
    static HARVESTING: Cell<bool> = const { Cell::new(false) };
}

/// True while the calling hub harvests (see `HARVESTING`).
pub(crate) fn harvesting() -> bool {
    HARVESTING.with(Cell::get)
}

/// Runs a hub's harvest `f` with `HARVESTING` set, inside a wake batch. Returns what `f`
/// returns.
pub(crate) fn harvest<R>(f: impl FnOnce() -> R) -> R {
    struct Harvesting;
    impl Drop for Harvesting {
        fn drop(&mut self) {
            HARVESTING.with(|h| h.set(false));
        }
    }
    HARVESTING.with(|h| h.set(true));
    let _reset = Harvesting;
    batch_wakes(f)
}

/// Runs `f` with wakes of greenlets homed on other workers batched: each is queued in its home
/// inbox when `f` returns, and each worker that received any is unparked once, instead of once
/// per wake. Wakes of greenlets homed on the calling worker are pushed locally as always. A
/// nested call runs `f` inside the outer batch.
pub fn batch_wakes<R>(f: impl FnOnce() -> R) -> R {
    batch(f).0
}

/// [`batch_wakes`] for a driver's own thread: also says whether the batch sent any worker a
/// wake (so a worker is on its way, or already awake, and will harvest; see
/// [`Driver::begin_watching`]). grove's reactor runs every batch of timers and events it fires
/// inside this. A nested call reports `false` (the outer batch sends the wakes).
pub fn batch_wakes_to_workers(f: impl FnOnce()) -> bool {
    batch(f).1 > 0
}

fn batch<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let outer = BATCH.with(|b| {
        let mut b = b.borrow_mut();
        if b.is_some() {
            return true;
        }
        *b = Some(Vec::new());
        false
    });
    if outer {
        return (f(), 0);
    }
    // Flush even if `f` unwinds (a panicking waker): no wake may be lost.
    struct Flush(usize);
    impl Drop for Flush {
        fn drop(&mut self) {
            self.0 = flush();
        }
    }
    let mut guard = Flush(0);
    let r = f();
    guard.0 = flush();
    let woke = guard.0;
    std::mem::forget(guard);
    (r, woke)
}

/// Ends the batch: queues every deferred wake, one unpark per (runtime, worker). Returns how
/// many workers it sent wakes to.
fn flush() -> usize {
    let Some(mut tasks) = BATCH.with(|b| b.borrow_mut().take()) else {
        return 0;
    };
    // Group by (runtime, home worker): stable, so wakes keep their order per worker.
    let key = |(rt, t): &Deferred| {
        (
            Arc::as_ptr(rt) as usize,
            t.header().home.load(std::sync::atomic::Ordering::Relaxed),
        )
    };
    tasks.sort_by_key(key);
    let mut workers = 0;
    let mut rest = tasks.into_iter().peekable();
    while let Some(entry) = rest.next() {
        let k = key(&entry);
        let last = rest.peek().is_none_or(|next| key(next) != k);
        let (rt, t) = entry;
        if last {
            // The group's last push unparks the worker (and drains the inbox if the runtime
            // closed meanwhile, which covers the group's earlier pushes too).
            rt.push_remote(k.1, t);
            workers += 1;
        } else {
            rt.workers()[k.1].inbox.push(t);
        }
    }
    workers
}

/// Defers the remote wake of `task` to the end of the current batch; hands it back if no
/// batch is open on this thread.
pub(crate) fn defer_remote(rt: &Arc<Shared>, task: TaskRef) -> Option<TaskRef> {
    BATCH.with(|b| match b.borrow_mut().as_mut() {
        Some(batch) => {
            batch.push((rt.clone(), task));
            None
        }
        None => Some(task),
    })
}
