//! The reactor thread and the [`Handle`] other threads use to reach it (their shared state:
//! module `shared`).

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Waker;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::metrics::{self, Counters, ReactorMetrics};
use crate::registration::Registration;
use crate::scheduled_io::{Ready, ScheduledIo};
use crate::shared::{Padded, Shared, WakeScope};
use crate::slab::IoSlab;
use crate::sys::{self, EventBuf, Harvested};
use crate::timer::{Due, Insert, TimerKey, TimerQueue};
use crate::watch::{Sleep, Watch};

/// Token of the `mio::Waker` that interrupts the outer poll's sleep.
const WAKE_TOKEN: Token = Token(usize::MAX);

/// Token of the shared (inner) poll's descriptor in the reactor's outer poll.
const INNER_TOKEN: Token = Token(usize::MAX - 1);

/// Events one worker harvest takes at most (one `epoll_wait`): bounds the time a busy worker
/// spends waking greenlets before it runs its own again.
const WORKER_EVENTS: usize = 256;

/// How long watchers may go without harvesting before the reactor harvests itself (a worker
/// stuck in a greenlet that never yields; Go's `sysmon` does the same every 10 ms).
const STALE_WATCH: Duration = Duration::from_millis(1);

/// Events fetched per `poll` call.
const EVENTS_CAPACITY: usize = 1024;

/// Timers fired per lock acquisition; bounds how long `add_timer` callers can wait on the lock
/// while a burst of timers fires.
const FIRE_BATCH: usize = 256;

/// The reactor: owns the `grove-reactor` thread, which owns the `mio::Poll`.
///
/// Dropping it shuts the reactor down, like [`Reactor::shutdown`].
pub struct Reactor {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Reactor {
    /// Creates the poll and spawns the `grove-reactor` thread.
    pub fn start() -> io::Result<Reactor> {
        Reactor::start_with_wake_scope(|wakes| {
            wakes();
            false
        })
    }

    /// Like [`start`](Self::start), with every batch of wakes (timers fired, events dispatched,
    /// on the reactor thread or in [`Handle::poll_now`]) run inside `scope`, which must call
    /// its argument exactly once. grove's runtime passes its scheduler's wake batching here.
    pub fn start_with_wake_scope(scope: WakeScope) -> io::Result<Reactor> {
        // The shared poll: every source is registered here, and workers harvest it directly.
        let inner = Poll::new()?;
        let registry = inner.registry().try_clone()?;
        // The reactor's own poll: the shared poll's descriptor (readable when it holds events)
        // and the eventfd that interrupts the reactor. Kept apart so that no worker's harvest
        // can swallow a notification meant for the reactor (module `watch`).
        let outer = Poll::new()?;
        let waker = mio::Waker::new(outer.registry(), WAKE_TOKEN)?;
        let inner_fd = registry.as_raw_fd();
        outer
            .registry()
            .register(&mut SourceFd(&inner_fd), INNER_TOKEN, Interest::READABLE)?;
        let shared = Arc::new(Shared {
            registry,
            waker,
            watch: Watch::new(),
            thread: OnceLock::new(),
            harvests: Padded(AtomicU64::new(0)),
            registrations: AtomicUsize::new(0),
            scope,
            slab: Padded(Mutex::new(IoSlab::new())),
            timers: TimerQueue::new(),
            shutdown: AtomicBool::new(false),
            counters: Counters::default(),
            os_tid: AtomicU32::new(0),
        });
        let thread = thread::Builder::new().name("grove-reactor".into()).spawn({
            let shared = shared.clone();
            move || run(&shared, outer, inner)
        })?;
        Ok(Reactor {
            shared,
            thread: Some(thread),
        })
    }

    /// A handle for registering sources and timers from any thread.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Stops the reactor and joins its thread. Every pending timer and every waiting
    /// [`Registration`] is woken first, so nobody waits forever; see the crate's `# Shutdown`.
    ///
    /// # Panics
    ///
    /// Re-raises a panic of the reactor thread, which can only come from a waker that panicked
    /// or from `mio::Poll::poll` failing (the message says which).
    pub fn shutdown(mut self) {
        if let Err(payload) = self.stop() {
            std::panic::resume_unwind(payload);
        }
    }

    /// Shutdown steps S1–S2 (S3–S4 run on the reactor thread, in `drain`).
    fn stop(&mut self) -> thread::Result<()> {
        // S1. Raise the flag, then interrupt the poll. The reactor checks the flag after every
        // wake-up and before every sleep, and the notification makes a sleep in progress
        // return, so it cannot miss the flag.
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.notify();
        // S2. Join. (Skipped if a waker running on the reactor thread dropped the last `Reactor`:
        // a thread cannot join itself; it exits when the waker returns.)
        match self.thread.take() {
            Some(thread) if thread.thread().id() != thread::current().id() => thread.join(),
            _ => Ok(()),
        }
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        // A panic of the reactor thread is reported by `shutdown`; from `drop` it is dropped
        // rather than turned into a panic inside a destructor.
        let _ = self.stop();
    }
}

impl fmt::Debug for Reactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("shutdown", &self.shared.shutdown.load(Ordering::Relaxed))
            .field("thread", &self.thread.as_ref().map(|t| t.thread().id()))
            .finish()
    }
}

/// A cheap, cloneable (`Arc`), `Send + Sync` reference to a [`Reactor`].
///
/// A `Handle` stays usable after the reactor shut down: timers then fire at once and
/// registration fails, so a waiter observes the shutdown instead of hanging.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// Wakes `waker` once `deadline` has passed, from the reactor thread.
    ///
    /// O(1) under the mutex of the calling thread's timer shard (a worker has one of its own).
    /// Makes a syscall (an eventfd write) only when `deadline` is earlier than the reactor's
    /// planned wake-up for that shard; adding timers in increasing deadline order, or while a
    /// sooner one is pending, costs no syscall.
    ///
    /// A deadline that had passed by the last scan of the shard's timers (workers and the
    /// reactor scan a shard several times a millisecond while it holds due timers) wakes
    /// `waker` on the calling thread before this returns, as does any call after shutdown; the
    /// returned key is then already spent: [`cancel_timer`](Self::cancel_timer) returns
    /// `false`. A deadline that passed more recently is queued like any other and fires at the
    /// next scan. (No clock is read here: under 100k sleepers that read was 3% of the profile.)
    ///
    /// Timers never fire early. They fire late by the timer wheel's tick (the deadline is
    /// rounded up to 16 µs) and, when the reactor thread fires them rather than a worker, by
    /// the poll's millisecond granularity (its timeout is rounded up, on average half a
    /// millisecond), plus scheduling latency.
    pub fn add_timer(&self, deadline: Instant, waker: Waker) -> TimerKey {
        match self.shared.timers.insert(deadline, waker) {
            Insert::Queued { key, notify } => {
                if notify {
                    self.shared.notify();
                }
                key
            }
            Insert::Due(waker) => {
                waker.wake();
                metrics::add(&self.shared.counters.wakes, 1);
                metrics::add(&self.shared.counters.timers_fired, 1);
                TimerKey::DEAD
            }
            Insert::ShutDown(waker) => {
                waker.wake();
                metrics::add(&self.shared.counters.wakes, 1);
                TimerKey::DEAD
            }
        }
    }

    /// Cancels a timer. Returns `true` if it had not fired (its waker is then dropped unwoken),
    /// `false` if it already fired, was already cancelled, or the reactor shut down.
    ///
    /// O(1), never a syscall.
    pub fn cancel_timer(&self, key: TimerKey) -> bool {
        let cancelled = self.shared.timers.cancel(key);
        if cancelled {
            metrics::add(&self.shared.counters.timers_cancelled, 1);
        }
        cancelled
    }

    /// Registers `source` with the reactor's poll, edge-triggered, for `interest`.
    ///
    /// Runs on the calling thread (no round trip to the reactor). Fails with the OS error if
    /// mio does, and with an error of kind [`io::ErrorKind::Other`] ("grove reactor is shut
    /// down") after shutdown.
    pub fn register<S: mio::event::Source + ?Sized>(
        &self,
        source: &mut S,
        interest: Interest,
    ) -> io::Result<Registration> {
        let io = Arc::new(ScheduledIo::new());
        let token = self.shared.slab_insert(io.clone())?;
        if let Err(err) = self.shared.registry.register(source, token, interest) {
            let removed = self.shared.slab_remove(token);
            drop(removed);
            return Err(err);
        }
        Ok(Registration::new(self.shared.clone(), io, token))
    }

    /// Harvests, without blocking, what is ready now and wakes it on the calling thread: one
    /// batch of due timers and one zero-timeout `epoll_wait` on the shared poll (at most 256
    /// events; Linux and Android only, elsewhere only timers). Returns how many wakers it woke.
    ///
    /// Meant for the threads that run what the wakers wake (grove's workers call it when they
    /// run out of work and every few dozen ticks while busy): a waker that queues its task on
    /// the calling thread then costs no cross-thread wake at all. Each edge-triggered event is
    /// handed by the kernel to exactly one harvester, so any number of threads may call this
    /// beside the reactor. Costs one atomic load and a clock read when nothing is due and
    /// nothing is registered.
    pub fn poll_now(&self) -> usize {
        thread_local! {
            static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
        }
        let shared = &*self.shared;
        if shared.shutdown.load(Ordering::Acquire) {
            return 0;
        }
        SCRATCH.with(|scratch| {
            // A waker that itself polls (re-entrancy) finds the scratch busy: nothing to do.
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                return 0;
            };
            let Scratch {
                buf,
                events,
                ready,
                wakers,
            } = &mut *scratch;
            let mut woken = 0;
            let _ = (shared.scope)(&mut || {
                // 1. One batch of due timers, if the hint says there may be any.
                let now = Instant::now();
                if shared.timers.maybe_due(now) {
                    let fired = shared.timers.fire_due_by_worker(now, wakers, FIRE_BATCH);
                    metrics::add(&shared.counters.timers_fired, fired);
                    metrics::add(&shared.counters.timers_by_workers, fired);
                    woken += fired;
                    shared.wake_all(wakers);
                }
                // 2. One zero-timeout harvest of the shared poll, if anything is registered.
                if sys::SUPPORTED && shared.registrations.load(Ordering::Relaxed) > 0 {
                    if let Ok(n) = sys::harvest(shared.registry.as_raw_fd(), buf, events) {
                        if n > 0 {
                            metrics::add(&shared.counters.events_by_workers, n);
                            woken += shared.dispatch(events.drain(..), ready);
                        }
                    }
                }
            });
            shared.harvests.fetch_add(1, Ordering::Relaxed);
            woken
        })
    }

    /// The calling thread starts watching: it is awake and will call
    /// [`poll_now`](Self::poll_now) when it runs out of work and every few dozen ticks
    /// otherwise, and it will call [`end_watching`](Self::end_watching) before it sleeps.
    /// While anyone watches, the reactor thread does not sleep in `epoll_wait` (it would be
    /// woken for events the watchers take); see the `watch` module (step W1).
    pub fn begin_watching(&self) {
        // A worker's timers go to a shard of its own (module `timer`, "Shards").
        self.shared.timers.claim_shard();
        self.shared.watch.watcher_arrives();
    }

    /// The calling thread stops watching, after its last [`poll_now`](Self::poll_now) found
    /// nothing (step W2): if it was the last watcher, the reactor thread is roused to sleep in
    /// `epoll_wait`, so an event arriving from now on still wakes someone.
    pub fn end_watching(&self) {
        let rouse = self.shared.watch.watcher_leaves();
        self.shared.rouse(rouse);
    }

    /// The earliest pending timer's deadline, or `None` if no timer is pending. An estimate
    /// that is never later than the truth (it may be a cancelled timer's, or the start of the
    /// timer wheel's slot that holds the earliest); one atomic load per timer shard, no lock.
    pub fn next_timer(&self) -> Option<Instant> {
        self.shared.timers.due_hint()
    }

    /// True once shutdown has begun.
    pub fn is_shutdown(&self) -> bool {
        self.shared.shutdown.load(Ordering::Acquire)
    }

    /// True if nothing the reactor holds can ever wake a task by itself: no pending timer and
    /// no registration with a waiting task. (A source nobody waits on may still get events;
    /// they only set its readiness.) Takes the timer and slab locks briefly.
    ///
    /// Deadlock detection combines this with the reactor thread being asleep (see
    /// [`os_thread_id`](Self::os_thread_id)): a reactor that is quiet *and* asleep is not in the
    /// middle of waking anyone either.
    pub fn is_quiet(&self) -> bool {
        if !self.shared.timers.is_empty() {
            return false;
        }
        let slab = self.shared.lock_slab();
        let waiting = slab.iter().any(|io| io.has_waiters());
        !waiting
    }

    /// The reactor thread's kernel thread id (Linux `gettid`), once it has started; `None`
    /// before that or on systems without `/proc/thread-self`.
    pub fn os_thread_id(&self) -> Option<u32> {
        match self.shared.os_tid.load(Ordering::Acquire) {
            0 => None,
            tid => Some(tid),
        }
    }

    /// A snapshot of the reactor's counters. Takes the timer and slab locks briefly.
    pub fn metrics(&self) -> ReactorMetrics {
        let mut metrics = self.shared.counters.snapshot();
        metrics.timers_pending = self.shared.timers.len() as u64;
        metrics.registrations = self.shared.lock_slab().len() as u64;
        metrics
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("shutdown", &self.is_shutdown())
            .finish_non_exhaustive()
    }
}

/// A harvester's reusable buffers.
struct Scratch {
    buf: EventBuf,
    events: Vec<Harvested>,
    ready: Vec<(Arc<ScheduledIo>, Ready)>,
    wakers: Vec<Waker>,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            buf: EventBuf::with_capacity(WORKER_EVENTS),
            events: Vec::with_capacity(WORKER_EVENTS),
            ready: Vec::with_capacity(WORKER_EVENTS),
            wakers: Vec::with_capacity(FIRE_BATCH),
        }
    }
}

/// Body of the `grove-reactor` thread: the loop described in the crate documentation.
fn run(shared: &Shared, mut outer: Poll, mut inner: Poll) {
    let _ = shared.thread.set(thread::current());
    shared
        .os_tid
        .store(current_os_tid().unwrap_or(0), Ordering::Release);
    // Whatever way the loop ends (shutdown, poll failure, a panicking waker), S3–S4 run.
    let _drain = DrainOnExit(shared);
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    let mut wakers = Vec::with_capacity(FIRE_BATCH);
    let mut ready: Vec<(Arc<ScheduledIo>, Ready)> = Vec::with_capacity(EVENTS_CAPACITY);
    // The stale-watch check: the worker harvest count last seen, and when it last moved.
    let mut seen_harvests = shared.harvests.load(Ordering::Relaxed);
    let mut harvests_moved = Instant::now();
    // Whether the last harvest's wakes unparked a watcher on its way (step R1' of `watch`).
    let mut harvest_woke = false;
    loop {
        metrics::add(&shared.counters.polls, 1);

        // 1. Fire every due timer, a batch per lock acquisition, and learn the next deadline
        //    (which becomes the planned wake, step T1).
        let mut next = None;
        // Whether a batch unparked a watcher on its way (step R1' of `watch`).
        let mut woke_watchers = (shared.scope)(&mut || {
            next = loop {
                let due = shared
                    .timers
                    .fire_due(Instant::now(), &mut wakers, FIRE_BATCH);
                let fired = wakers.len();
                shared.wake_all(&mut wakers);
                metrics::add(&shared.counters.timers_fired, fired);
                if let Due::Idle(next) = due {
                    break next;
                }
            };
        });

        // 2. Stop if asked (step S3). Checked after the timer scan and before the sleep; S1's
        //    notification interrupts a sleep that began before the flag was raised.
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }

        // 3. Sleep aside while workers watch the poll (they fire due timers too), else in the
        //    kernel until the next deadline (module `watch`, step R1). A notification since
        //    the scan cancels the sleep: loop and scan again.
        woke_watchers |= std::mem::take(&mut harvest_woke);
        let Some(sleep) = shared.watch.prepare_sleep(woke_watchers) else {
            continue;
        };
        let now = Instant::now();
        match sleep {
            Sleep::Aside => {
                metrics::add(&shared.counters.sleeps_aside, 1);
                // Not until the next deadline: the watchers fire timers as they harvest
                // (see the crate docs, step 3).
                thread::park_timeout(STALE_WATCH);
                shared.watch.woke();
                // The stale-watch check: no worker harvested for STALE_WATCH (one is stuck in
                // a greenlet that does not yield): harvest for them.
                let harvests = shared.harvests.load(Ordering::Relaxed);
                let now = Instant::now();
                if harvests != seen_harvests {
                    seen_harvests = harvests;
                    harvests_moved = now;
                } else if now.duration_since(harvests_moved) >= STALE_WATCH
                    && shared.watch.watchers() > 0
                {
                    harvests_moved = now;
                    metrics::add(&shared.counters.stale_harvests, 1);
                    harvest_woke = harvest(shared, &mut inner, &mut events, &mut ready);
                }
            }
            Sleep::Kernel => {
                // mio rounds the timeout *up* to whole milliseconds, so the sleep never ends
                // before the deadline and a timer due in under a millisecond costs one short
                // sleep, not a spin. If the deadline passed while we were waking wakers, the
                // timeout is zero and step 1 fires it.
                let timeout = next.map(|deadline| deadline.saturating_duration_since(now));
                let polled = outer.poll(&mut events, timeout);
                shared.watch.woke();
                if let Err(err) = polled {
                    if err.kind() != io::ErrorKind::Interrupted {
                        panic!("grove-reactor: mio::Poll::poll failed: {err}");
                    }
                }
                // 4. Harvest the shared poll until it is empty (its readiness in the outer poll
                //    is edge-triggered: what is left now would not be reported again).
                harvest_woke = harvest(shared, &mut inner, &mut events, &mut ready);
                seen_harvests = shared.harvests.load(Ordering::Relaxed);
                harvests_moved = Instant::now();
            }
        }
    }
}

/// The reactor thread's harvest: the shared poll, without blocking, until it is empty; each
/// batch dispatched (steps D1–D3) inside the wake scope. Returns whether the scope reported
/// unparking a watcher.
fn harvest(
    shared: &Shared,
    inner: &mut Poll,
    events: &mut Events,
    ready: &mut Vec<(Arc<ScheduledIo>, Ready)>,
) -> bool {
    let mut woke_watchers = false;
    loop {
        if let Err(err) = inner.poll(events, Some(Duration::ZERO)) {
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            panic!("grove-reactor: mio::Poll::poll failed: {err}");
        }
        let n = events.iter().count();
        if n == 0 {
            return woke_watchers;
        }
        woke_watchers |= (shared.scope)(&mut || {
            shared.dispatch(
                events
                    .iter()
                    .map(|event| (event.token().0, Ready::from_mio(event))),
                ready,
            );
        });
        if n < EVENTS_CAPACITY {
            return woke_watchers;
        }
    }
}

/// Runs shutdown steps S3–S4 when the reactor loop ends, however it ends.
struct DrainOnExit<'a>(&'a Shared);

impl Drop for DrainOnExit<'_> {
    fn drop(&mut self) {
        let shared = self.0;
        // S3. Raise the flag in case the loop ended on its own (poll failure, panic).
        shared.shutdown.store(true, Ordering::Release);
        // S4. Close the slab and the timer queue under their locks (later `register` and
        //     `add_timer` calls see the closed flag under the same lock, so none slips past),
        //     collect everything they hold, and wake it all outside the locks.
        let ios: Vec<Arc<ScheduledIo>> = {
            let mut slab = shared.lock_slab();
            slab.close();
            slab.iter().cloned().collect()
        };
        for io in ios {
            metrics::add(&shared.counters.wakes, io.shutdown());
        }
        let mut wakers = Vec::new();
        shared.timers.shutdown(&mut wakers);
        shared.wake_all(&mut wakers);
    }
}

/// The calling thread's kernel thread id, read from `/proc/thread-self` (a link to
/// `<pid>/task/<tid>`) so that no FFI is needed. `None` where procfs is absent.
fn current_os_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}
