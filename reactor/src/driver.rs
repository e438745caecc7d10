//! The reactor thread, its shared state and the [`Handle`] other threads use to reach it.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::thread::{self, JoinHandle};
use std::time::Instant;

use mio::{Events, Interest, Poll, Registry, Token};

use crate::metrics::{self, Counters, ReactorMetrics};
use crate::registration::Registration;
use crate::scheduled_io::{shutdown_error, Ready, ScheduledIo};
use crate::timer::{Due, Insert, TimerKey, TimerQueue};

/// Token of the `mio::Waker` that interrupts the poll. Slab tokens never reach it (their top bit
/// is clear).
const WAKE_TOKEN: Token = Token(usize::MAX);

/// Events fetched per `poll` call.
const EVENTS_CAPACITY: usize = 1024;

/// Timers fired per lock acquisition; bounds how long `add_timer` callers can wait on the lock
/// while a burst of timers fires.
const FIRE_BATCH: usize = 256;

/// Low bits of a token: the slab index. The rest (minus the top bit): the slot's generation,
/// so a late event for a dropped registration never reaches the slot's next occupant.
const INDEX_BITS: u32 = if usize::BITS >= 64 { 32 } else { 20 };
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;
const GENERATION_MASK: usize = (usize::MAX >> 1) >> INDEX_BITS;

/// State shared by the reactor thread, every [`Handle`] and every [`Registration`].
pub(crate) struct Shared {
    /// A clone of the poll's registry (a `dup` of the epoll fd): registration runs on the
    /// caller's thread, since `Registry` is `Sync`.
    pub(crate) registry: Registry,
    /// Interrupts the reactor's `poll`.
    waker: mio::Waker,
    /// Token → readiness state of every registered source.
    pub(crate) slab: Mutex<IoSlab>,
    pub(crate) timers: TimerQueue,
    /// Set first thing on shutdown; the slab and the timer queue carry their own closed flag,
    /// set under their locks, which is what makes late `register`/`add_timer` calls race-free.
    shutdown: AtomicBool,
    pub(crate) counters: Counters,
    /// The reactor thread's kernel thread id (Linux `gettid`), 0 until it has started or where
    /// unknown. Lets a deadlock check tell the reactor from threads outside the runtime.
    os_tid: AtomicU32,
}

impl Shared {
    /// Interrupts the reactor's sleep.
    fn notify(&self) {
        metrics::add(&self.counters.notifications, 1);
        // An eventfd write cannot fail short of fd exhaustion corrupting the process; mio
        // handles the one ordinary failure (counter overflow) itself.
        let _ = self.waker.wake();
    }

    pub(crate) fn lock_slab(&self) -> MutexGuard<'_, IoSlab> {
        self.slab.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes and counts a batch of wakers, leaving `wakers` empty for reuse.
    fn wake_all(&self, wakers: &mut Vec<Waker>) {
        let n = wakers.len();
        wakers.drain(..).for_each(Waker::wake);
        metrics::add(&self.counters.wakes, n);
    }
}

/// Slab of registrations. Vacant slots are chained through `free`.
pub(crate) struct IoSlab {
    slots: Vec<IoSlot>,
    free: Vec<usize>,
    /// Set under the lock at shutdown: later inserts fail.
    closed: bool,
}

struct IoSlot {
    generation: usize,
    io: Option<Arc<ScheduledIo>>,
}

impl IoSlab {
    fn new() -> IoSlab {
        IoSlab {
            slots: Vec::new(),
            free: Vec::new(),
            closed: false,
        }
    }

    fn insert(&mut self, io: Arc<ScheduledIo>) -> io::Result<Token> {
        if self.closed {
            return Err(shutdown_error());
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None if self.slots.len() < INDEX_MASK => {
                self.slots.push(IoSlot {
                    generation: 0,
                    io: None,
                });
                self.slots.len() - 1
            }
            None => {
                return Err(io::Error::other(
                    "grove reactor: too many registered sources",
                ))
            }
        };
        let slot = &mut self.slots[index];
        slot.io = Some(io);
        Ok(Token(index | (slot.generation << INDEX_BITS)))
    }

    fn get(&self, token: Token) -> Option<&Arc<ScheduledIo>> {
        let slot = self.slots.get(token.0 & INDEX_MASK)?;
        if slot.generation != token.0 >> INDEX_BITS {
            return None;
        }
        slot.io.as_ref()
    }

    /// Removes the entry for `token`, if it is still there.
    pub(crate) fn remove(&mut self, token: Token) -> Option<Arc<ScheduledIo>> {
        let index = token.0 & INDEX_MASK;
        let slot = self.slots.get_mut(index)?;
        if slot.generation != token.0 >> INDEX_BITS {
            return None;
        }
        let io = slot.io.take()?;
        slot.generation = (slot.generation + 1) & GENERATION_MASK;
        self.free.push(index);
        Some(io)
    }

    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Every live registration's state.
    fn iter(&self) -> impl Iterator<Item = &Arc<ScheduledIo>> {
        self.slots.iter().filter_map(|slot| slot.io.as_ref())
    }
}

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
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = mio::Waker::new(poll.registry(), WAKE_TOKEN)?;
        let shared = Arc::new(Shared {
            registry,
            waker,
            slab: Mutex::new(IoSlab::new()),
            timers: TimerQueue::new(),
            shutdown: AtomicBool::new(false),
            counters: Counters::default(),
            os_tid: AtomicU32::new(0),
        });
        let thread = thread::Builder::new().name("grove-reactor".into()).spawn({
            let shared = shared.clone();
            move || run(&shared, poll)
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
    /// O(log n) under a mutex shared with the reactor. Makes a syscall (an eventfd write) only
    /// when `deadline` is earlier than the reactor's planned wake-up; adding timers in
    /// increasing deadline order, or while a sooner one is pending, costs no syscall.
    ///
    /// A deadline that has already passed wakes `waker` on the calling thread before this
    /// returns, as does any call after shutdown. In both cases the returned key is already
    /// spent: [`cancel_timer`](Self::cancel_timer) returns `false`.
    ///
    /// Timers never fire early. They fire late by the poll's millisecond granularity (the
    /// timeout is rounded up, on average half a millisecond) plus scheduling latency.
    pub fn add_timer(&self, deadline: Instant, waker: Waker) -> TimerKey {
        if deadline <= Instant::now() {
            waker.wake();
            metrics::add(&self.shared.counters.wakes, 1);
            metrics::add(&self.shared.counters.timers_fired, 1);
            return TimerKey::DEAD;
        }
        match self.shared.timers.insert(deadline, waker) {
            Insert::Queued { key, notify } => {
                if notify {
                    self.shared.notify();
                }
                key
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
    /// O(1) amortized, never a syscall.
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
        let token = self.shared.lock_slab().insert(io.clone())?;
        if let Err(err) = self.shared.registry.register(source, token, interest) {
            let removed = self.shared.lock_slab().remove(token);
            drop(removed);
            return Err(err);
        }
        Ok(Registration::new(self.shared.clone(), io, token))
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

/// Body of the `grove-reactor` thread: the loop described in the crate documentation.
fn run(shared: &Shared, mut poll: Poll) {
    shared
        .os_tid
        .store(current_os_tid().unwrap_or(0), Ordering::Release);
    // Whatever way the loop ends (shutdown, poll failure, a panicking waker), S3–S4 run.
    let _drain = DrainOnExit(shared);
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    let mut wakers = Vec::with_capacity(FIRE_BATCH);
    let mut ready: Vec<(Arc<ScheduledIo>, Ready)> = Vec::with_capacity(EVENTS_CAPACITY);
    loop {
        metrics::add(&shared.counters.polls, 1);

        // 1. Fire every due timer, a batch per lock acquisition, and learn the next deadline
        //    (which becomes the planned wake, step T1).
        let next = loop {
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

        // 2. Stop if asked (step S3). Checked after the timer scan and before the sleep; S1's
        //    notification interrupts a sleep that began before the flag was raised.
        if shared.shutdown.load(Ordering::Acquire) {
            return;
        }

        // 3. Sleep until the next deadline, an I/O event or a notification. mio rounds the
        //    timeout *up* to whole milliseconds, so the sleep never ends before the deadline
        //    and a timer due in under a millisecond costs one short sleep, not a spin. If the
        //    deadline passed while we were waking wakers, the timeout is zero and step 1 fires it.
        let timeout = next.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        if let Err(err) = poll.poll(&mut events, timeout) {
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            panic!("grove-reactor: mio::Poll::poll failed: {err}");
        }

        // 4. Dispatch readiness: resolve tokens under the slab lock, then set bits and wake
        //    outside it (steps D1–D3), so `register` never waits behind a waker.
        {
            let slab = shared.lock_slab();
            for event in events.iter() {
                if event.token() == WAKE_TOKEN {
                    continue;
                }
                let readiness = Ready::from_mio(event);
                if readiness.is_empty() {
                    continue;
                }
                if let Some(io) = slab.get(event.token()) {
                    ready.push((io.clone(), readiness));
                }
            }
        }
        for (io, readiness) in ready.drain(..) {
            metrics::add(&shared.counters.wakes, io.dispatch(readiness));
            metrics::add(&shared.counters.events_dispatched, 1);
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
            slab.closed = true;
            slab.slots
                .iter()
                .filter_map(|slot| slot.io.clone())
                .collect()
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
