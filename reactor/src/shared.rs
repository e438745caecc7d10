//! The state the reactor thread shares with every [`Handle`](crate::Handle) and
//! [`Registration`](crate::Registration): the polls' registry, the slab, the timers, who sleeps
//! where, and the wake batching. Its own module so that the driver (which starts the thread and
//! hands out handles) and the registrations both depend on it, and not on each other.

use std::io;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::Waker;
use std::thread::Thread;

use mio::{Registry, Token};

use crate::metrics::{self, Counters};
use crate::scheduled_io::{Ready, ScheduledIo};
use crate::slab::IoSlab;
use crate::sys::{self, Harvested};
use crate::timer::TimerQueue;
use crate::watch::{Rouse, Watch};

/// What wraps every batch of wakes (timers fired, events dispatched) on any thread, so that the
/// owner can batch them (grove's scheduler defers its cross-worker unparks to the end of the
/// batch: one per worker instead of one per wake). It must call its argument exactly once, and
/// return `true` if the batch unparked threads that watch the poll
/// ([`Handle::begin_watching`](crate::Handle::begin_watching)): the reactor thread then sleeps
/// aside, leaving the events to them. The default runs the batch and returns `false`.
pub type WakeScope = fn(&mut dyn FnMut()) -> bool;

/// A value on cache lines of its own (two: the unit adjacent-line prefetchers pull in), so
/// that threads writing it do not slow the threads reading its neighbours.
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// State shared by the reactor thread, every [`Handle`](crate::Handle) and every
/// [`Registration`](crate::Registration).
///
/// What every thread writes all the time (the watch words, the harvest count, the slab's
/// lock, the counters) sits on cache lines of its own ([`Padded`], or aligned types), apart
/// from what they only read (the timer queue's shards and epoch, the flags): sharing a line
/// made every `add_timer` wait for the line to come back from the core that last counted a
/// harvest (the hottest instruction of the timer insert under 100k sleepers).
pub(crate) struct Shared {
    /// A clone of the shared (inner) poll's registry (a `dup` of its epoll fd): registration runs
    /// on the caller's thread, since `Registry` is `Sync`, and workers harvest through its fd.
    pub(crate) registry: Registry,
    /// Interrupts the reactor's sleep in the outer poll.
    pub(crate) waker: mio::Waker,
    /// Who sleeps in the kernel (module `watch`).
    pub(crate) watch: Watch,
    /// The reactor thread, for unparking it from an aside sleep. Set first thing by the thread.
    pub(crate) thread: OnceLock<Thread>,
    /// Worker harvests so far: the reactor's stale-watch check compares it across its sleep.
    pub(crate) harvests: Padded<AtomicU64>,
    /// Live registrations (kept under the slab lock): a worker skips the `epoll_wait` if none.
    pub(crate) registrations: AtomicUsize,
    /// Wraps every batch of wakes.
    pub(crate) scope: WakeScope,
    /// Token → readiness state of every registered source.
    pub(crate) slab: Padded<Mutex<IoSlab>>,
    pub(crate) timers: TimerQueue,
    /// Set first thing on shutdown; the slab and the timer queue carry their own closed flag,
    /// set under their locks, which is what makes late `register`/`add_timer` calls race-free.
    pub(crate) shutdown: AtomicBool,
    pub(crate) counters: Counters,
    /// The reactor thread's kernel thread id (Linux `gettid`), 0 until it has started or where
    /// unknown. Lets a deadlock check tell the reactor from threads outside the runtime.
    pub(crate) os_tid: AtomicU32,
}

impl Shared {
    /// Makes the reactor look again (protocol step N of `watch`): an earlier timer, shutdown.
    pub(crate) fn notify(&self) {
        let rouse = self.watch.notify();
        self.rouse(rouse);
    }

    /// Does what a [`Rouse`] asks.
    pub(crate) fn rouse(&self, rouse: Rouse) {
        match rouse {
            Rouse::Nothing => {}
            Rouse::Unpark => {
                metrics::add(&self.counters.notifications, 1);
                // Set before the reactor ever sleeps aside, so present whenever `Unpark` is asked.
                if let Some(t) = self.thread.get() {
                    t.unpark();
                }
            }
            Rouse::Interrupt => {
                metrics::add(&self.counters.notifications, 1);
                // An eventfd write cannot fail short of fd exhaustion corrupting the process;
                // mio handles the one ordinary failure (counter overflow) itself.
                let _ = self.waker.wake();
            }
        }
    }

    /// Sets the readiness of each harvested event and wakes what it satisfies (steps D1–D3):
    /// tokens are resolved under the slab lock (once per batch), bits set and wakers woken
    /// outside it, so `register` never waits behind a waker. Returns how many wakers it woke.
    pub(crate) fn dispatch(
        &self,
        events: impl Iterator<Item = Harvested>,
        ready: &mut Vec<(Arc<ScheduledIo>, Ready)>,
    ) -> usize {
        {
            let slab = self.lock_slab();
            for (token, readiness) in events {
                if readiness.is_empty() {
                    continue;
                }
                if let Some(io) = slab.get(Token(token)) {
                    ready.push((io.clone(), readiness));
                }
            }
        }
        let events = ready.len();
        let mut woken = 0;
        // As in `wake_all`: a panicking waker must not strand the rest of the batch, whose
        // events the kernel has already handed over and will not report again.
        let mut panic = None;
        for (io, readiness) in ready.drain(..) {
            match std::panic::catch_unwind(AssertUnwindSafe(|| io.dispatch(readiness))) {
                Ok(n) => woken += n,
                Err(payload) => {
                    panic.get_or_insert(payload);
                }
            }
        }
        if let Some(payload) = panic {
            metrics::add(&self.counters.events_dispatched, events);
            std::panic::resume_unwind(payload);
        }
        metrics::add(&self.counters.wakes, woken);
        metrics::add(&self.counters.events_dispatched, events);
        woken
    }

    pub(crate) fn lock_slab(&self) -> MutexGuard<'_, IoSlab> {
        self.slab.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Inserts a registration's state; keeps `registrations` current.
    pub(crate) fn slab_insert(&self, io: Arc<ScheduledIo>) -> io::Result<Token> {
        let mut slab = self.lock_slab();
        let token = slab.insert(io)?;
        self.registrations.store(slab.len(), Ordering::Relaxed);
        Ok(token)
    }

    /// Removes a registration's state, if `token` still names it; keeps `registrations` current.
    pub(crate) fn slab_remove(&self, token: Token) -> Option<Arc<ScheduledIo>> {
        let mut slab = self.lock_slab();
        let io = slab.remove(token);
        self.registrations.store(slab.len(), Ordering::Relaxed);
        io
    }

    /// Wakes and counts a batch of wakers, leaving `wakers` empty for reuse.
    ///
    /// A panicking waker does not stop the batch: every other waker is still woken, then the
    /// first panic is resumed (the timers behind it were already taken out of the queue, and
    /// would otherwise never fire).
    pub(crate) fn wake_all(&self, wakers: &mut Vec<Waker>) {
        let n = wakers.len();
        let mut panic = None;
        // A timer's or an event's waker has usually waited long: its object is cold, and a
        // wake is a chain of misses on it. Prefetching the first 64 bytes of the object two
        // wakes ahead overlaps them (grove's greenlets keep what a wake reads there).
        fn prefetch_object(w: &Waker) {
            let at = w.data().cast::<u8>();
            sys::prefetch(at.cast());
            // The object need not start a cache line: its 64th byte may be on the next.
            sys::prefetch(at.wrapping_add(63).cast());
        }
        wakers.iter().take(2).for_each(prefetch_object);
        let mut drain = wakers.drain(..);
        while let Some(waker) = drain.next() {
            if let Some(ahead) = drain.as_slice().get(1) {
                prefetch_object(ahead);
            }
            if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| waker.wake())) {
                panic.get_or_insert(payload);
            }
        }
        metrics::add(&self.counters.wakes, n);
        if let Some(payload) = panic {
            std::panic::resume_unwind(payload);
        }
    }
}
