//! The worker-side poll hook: how a hub harvests I/O events and due timers itself, and how
//! wakes to other workers are batched.
//!
//! The scheduler knows nothing of I/O (layering: the reactor wakes plain `Waker`s). The owner of
//! the runtime (the `grove` facade, with its reactor) plugs in a [`Driver`] through
//! [`RuntimeBuilder::driver`](crate::RuntimeBuilder::driver), as it plugs in [`Timers`].
//!
//! # Vocabulary
//! * **harvest**: [`Driver::poll`]: take what is ready now (events, due timers) without blocking
//!   and wake it on this thread. A wake of a greenlet homed here is a local push (the LIFO slot
//!   or `ready`): no futex, no IPI. A wake of a greenlet homed elsewhere goes to its home inbox.
//! * **watching**: a hub that is awake promises to harvest when it runs dry and every
//!   [`POLL_MASK`]` + 1` ticks while busy ([`Driver::begin_watching`] when it wakes,
//!   [`Driver::end_watching`] before it sleeps). While anyone watches, the driver's own thread
//!   need not sleep in the kernel, where every event would wake it for nothing.
//! * **wake batch**: [`batch_wakes`]: inside it, a wake aimed at another worker is queued and
//!   that worker's inbox push and unpark happen once per worker at the end of the batch.
//!
//! # Where the hub calls it (one step a line, as `worker` reads)
//! 1. Out of work, before sleeping: harvest [`IDLE_POLLS`] times while spinning on the parker
//!    (Go's spinning `M` polls the network before it sleeps); if anything was woken, look
//!    again instead of sleeping. (A harvest at every dry turn of the loop, before stealing, was
//!    tried and removed: it made `tests/faults.rs`'s
//!    `dropping_a_runtime_joins_its_threads_thread_locals_included` hang about one run in
//!    ten, a lost wake on a one-worker runtime whose cause was not found in time.)
//! 2. Every [`POLL_MASK`]` + 1` ticks while busy (tokio's `event_interval`): harvest, so a busy
//!    worker's sockets do not wait for it to run dry.
//! 3. Before sleeping: `end_watching` after the last harvest, then park; `begin_watching` on
//!    waking. The driver decides who sleeps in the kernel (grove-reactor's `watch` module has
//!    the protocol and its loom model): an event that arrives after the last harvest is either
//!    taken by a worker still watching or wakes the driver's thread, never stranded.
//!
//! # Stacks between greenlets (step 4 of the `stack` module)
//! The hub is also where pooled stacks beyond the watermark are given back, and it must never
//! delay due work doing so: an idle worker decommits one run of adjacent stacks (one
//! `madvise`) at a time and stops as soon as a wake is pending for it or a timer is due within
//! [`TRIM_TIMER_MARGIN`]; a busy worker decommits one run every [`TRIM_MASK`]` + 1` ticks, and
//! only once more than `DEFER_LIMIT` stacks wait. Both wait until a burst is over (the stack
//! module's `DECAY`); a timer brings an idle worker back when it is.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Wake, Waker};
use std::time::Instant;

use crate::runtime::Shared;
use crate::stack::{DEFER_LIMIT, TRIM_TIMER_MARGIN};
use crate::task::TaskRef;
use crate::worker::Local;

#[cfg(doc)]
use crate::timers::Timers;

/// A busy hub harvests every `POLL_MASK + 1` ticks (tokio's `event_interval` is 61).
pub(crate) const POLL_MASK: u32 = 63;
/// A busy hub gives back one run of stacks every `TRIM_MASK + 1` ticks, if many wait.
pub(crate) const TRIM_MASK: u32 = 255;
/// Harvests an idle hub makes while it spins before sleeping.
pub(crate) const IDLE_POLLS: u32 = 4;
/// Pause instructions an idle hub spends watching its own parker before sleeping (a few µs
/// without a driver; with one, split between [`IDLE_POLLS`] harvests). Not more: on a small
/// machine a spinning worker takes the core from whatever would send it work (profiled under
/// echo at C = 100 with twice this: 18% of the workers' samples were this spin, while the
/// load generator sharing the two cores was the bottleneck).
pub(crate) const SPIN_BEFORE_PARK: u32 = 256;

/// The I/O and timer driver, as the workers see it: harvest without blocking, and say when
/// this worker watches. grove implements it with its reactor.
pub trait Driver: Send + Sync + fmt::Debug + 'static {
    /// Takes what is ready now (I/O events, due timers) without blocking and wakes it on the
    /// calling thread. Returns how many wakers it woke. Called by hubs between greenlets.
    fn poll(&self) -> usize;

    /// The calling worker is awake: it will call [`poll`](Self::poll) when it runs dry and
    /// every few dozen ticks, and [`end_watching`](Self::end_watching) before it sleeps.
    fn begin_watching(&self);

    /// The calling worker is about to sleep, after a [`poll`](Self::poll) that found nothing.
    /// The driver must make sure that someone will notice events from now on.
    fn end_watching(&self);

    /// The earliest pending timer's deadline, if any; may be early, never late. An idle worker
    /// stops giving stacks back shortly before it.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
}

thread_local! {
    /// Wakes aimed at other workers, deferred to the end of the current [`batch_wakes`]:
    /// `None` outside a batch.
    static BATCH: RefCell<Option<Vec<TaskRef>>> = const { RefCell::new(None) };
    /// True while this hub harvests through its driver: its own greenlets woken meanwhile
    /// queue in order (`ready`) rather than taking the LIFO slot one after another, which would
    /// run the last event's greenlet first.
    static HARVESTING: Cell<bool> = const { Cell::new(false) };
}

/// True while the calling hub harvests (see `HARVESTING`).
pub(crate) fn harvesting() -> bool {
    HARVESTING.with(Cell::get)
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
    let key = |t: &TaskRef| {
        let h = t.header();
        (
            Arc::as_ptr(&h.rt) as usize,
            h.home.load(std::sync::atomic::Ordering::Relaxed),
        )
    };
    tasks.sort_by_key(key);
    let mut workers = 0;
    let mut rest = tasks.into_iter().peekable();
    while let Some(t) = rest.next() {
        let (rt, home) = (t.header().rt.clone(), key(&t).1);
        let last = rest.peek().is_none_or(|next| key(next) != key(&t));
        if last {
            // The group's last push unparks the worker (and drains the inbox if the runtime
            // closed meanwhile, which covers the group's earlier pushes too).
            rt.push_remote(home, t);
            workers += 1;
        } else {
            rt.workers[home].inbox.push(t);
        }
    }
    workers
}

/// Defers the remote wake of `task` to the end of the current batch; hands it back if no
/// batch is open on this thread.
pub(crate) fn defer_remote(task: TaskRef) -> Option<TaskRef> {
    BATCH.with(|b| match b.borrow_mut().as_mut() {
        Some(batch) => {
            batch.push(task);
            None
        }
        None => Some(task),
    })
}

impl Local {
    /// Steps 1 and 2: harvests through the driver, if there is one. True if it woke anything.
    pub(crate) fn poll_driver(&self) -> bool {
        let Some(d) = &self.shared.driver else {
            return false;
        };
        struct Harvesting;
        impl Drop for Harvesting {
            fn drop(&mut self) {
                HARVESTING.with(|h| h.set(false));
            }
        }
        HARVESTING.with(|h| h.set(true));
        let _reset = Harvesting;
        batch_wakes(|| d.poll()) > 0
    }

    /// The periodic work of a busy hub, on `tick`: a harvest (step 2), and a slice of stack
    /// trimming when very many stacks wait.
    pub(crate) fn maintain(&self, tick: u32) {
        if tick & POLL_MASK == 37 {
            self.poll_driver();
        }
        if tick & TRIM_MASK == 141 && self.shared.stacks.trim_pending() > DEFER_LIMIT {
            let stacks = &self.shared.stacks;
            if stacks
                .decommit_after()
                .is_some_and(|at| at <= Instant::now())
            {
                stacks.trim_slice();
            }
        }
    }

    /// Step 3, before the park.
    pub(crate) fn end_watching(&self) {
        if let Some(d) = &self.shared.driver {
            d.end_watching();
        }
    }

    /// Step 3, on waking (and when the hub starts).
    pub(crate) fn begin_watching(&self) {
        if let Some(d) = &self.shared.driver {
            d.begin_watching();
        }
    }

    /// Before sleeping, with nothing to run: watches its own parker for a few microseconds
    /// and harvests the driver [`IDLE_POLLS`] times meanwhile (Go's spinning `M`, which polls
    /// the network before it sleeps): on a busy server the next event usually arrives within
    /// that window, and taking it here saves the reactor's wake-up and a futex wake of this
    /// worker. Returns `true` if a harvest woke something (do not sleep).
    pub(crate) fn spin_before_park(&self) -> bool {
        let me = &self.shared.workers[self.index];
        let polls = if self.shared.driver.is_some() {
            IDLE_POLLS
        } else {
            0
        };
        for round in 0..=polls {
            for _ in 0..SPIN_BEFORE_PARK / (polls + 1) {
                if me.parker.is_notified() {
                    return false;
                }
                std::hint::spin_loop();
            }
            if round < polls && self.poll_driver() {
                return true;
            }
        }
        false
    }

    /// An idle worker gives back pooled stacks, one run at a time, until none wait, a wake is
    /// pending for this worker, or a timer is about to be due. Before the burst's decay has
    /// passed it gives back nothing and, if the runtime has timers, arranges for a worker to
    /// come back when it has (one timer at a time).
    pub(crate) fn idle_trim(&self) {
        let shared = &*self.shared;
        let me = &shared.workers[self.index];
        let Some(at) = shared.stacks.decommit_after() else {
            return;
        };
        if at > Instant::now() {
            if let Some(timers) = &shared.timers {
                if !shared.stacks.decay_armed.swap(true, Ordering::AcqRel) {
                    let waker = Waker::from(Arc::new(DecayOver(Arc::downgrade(&self.shared))));
                    timers.add(at, waker);
                }
                return;
            }
        }
        while shared.stacks.needs_trim() && !me.parker.is_notified() {
            if let Some(next) = shared.driver.as_ref().and_then(|d| d.next_deadline()) {
                if next.saturating_duration_since(Instant::now()) < TRIM_TIMER_MARGIN {
                    return;
                }
            }
            if shared.stacks.trim_slice() == 0 {
                return;
            }
        }
    }
}

/// The timer that ends a burst's decay: wakes an idle worker, which then gives the stacks back.
struct DecayOver(Weak<Shared>);

impl Wake for DecayOver {
    fn wake(self: Arc<Self>) {
        if let Some(shared) = self.0.upgrade() {
            shared.stacks.decay_armed.store(false, Ordering::Release);
            shared.notify_parked();
        }
    }
}
