//! Reactor counters.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the reactor's counters, from [`Handle::metrics`](crate::Handle::metrics).
///
/// Counters only grow; the two gauges (`timers_pending`, `registrations`) are read at snapshot
/// time. Fields are read one by one, so a snapshot taken while the reactor runs is not atomic,
/// but a counter is incremented only after the work it counts is done: a snapshot that counts an
/// event or a wake also observes its effects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReactorMetrics {
    /// Iterations of the reactor loop (each ends in one sleep: in `epoll_wait`, or aside while
    /// workers watch). Grows by about one per millisecond while timers are due, and stays put
    /// while the reactor is idle.
    pub polls: u64,
    /// Times another thread interrupted the reactor's sleep (an eventfd write, or an unpark of
    /// an aside sleep): an earlier timer than planned, shutdown, or the last watching worker
    /// going to sleep.
    pub notifications: u64,
    /// I/O readiness events dispatched to registrations.
    pub events_dispatched: u64,
    /// Timers whose deadline passed and whose waker was woken.
    pub timers_fired: u64,
    /// Timers cancelled before they fired.
    pub timers_cancelled: u64,
    /// Wakers woken, for any reason: I/O, timers, shutdown.
    pub wakes: u64,
    /// Of `timers_fired`, those fired by a worker's [`Handle::poll_now`](crate::Handle::poll_now)
    /// (woken on the worker's own thread) rather than by the reactor thread.
    pub timers_by_workers: u64,
    /// Of `events_dispatched`, those harvested by a worker's
    /// [`Handle::poll_now`](crate::Handle::poll_now) rather than by the reactor thread.
    pub events_by_workers: u64,
    /// Times the reactor slept aside (on its thread parker, not in `epoll_wait`) because
    /// workers were watching the poll.
    pub sleeps_aside: u64,
    /// Times the reactor found that no watching worker had harvested for a millisecond and
    /// harvested for them.
    pub stale_harvests: u64,
    /// Timers pending now.
    pub timers_pending: u64,
    /// Sources registered now.
    pub registrations: u64,
}

/// The live counters behind [`ReactorMetrics`].
///
/// Each is incremented *after* the work it counts (`Release`) and read with `Acquire`, so a
/// snapshot that counts an event or a wake also observes its effects (tests rely on this).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Counters {
    pub(crate) polls: AtomicU64,
    pub(crate) notifications: AtomicU64,
    pub(crate) events_dispatched: AtomicU64,
    pub(crate) timers_fired: AtomicU64,
    pub(crate) timers_cancelled: AtomicU64,
    pub(crate) wakes: AtomicU64,
    pub(crate) timers_by_workers: AtomicU64,
    pub(crate) events_by_workers: AtomicU64,
    pub(crate) sleeps_aside: AtomicU64,
    pub(crate) stale_harvests: AtomicU64,
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: usize) {
    if n != 0 {
        counter.fetch_add(n as u64, Ordering::Release);
    }
}

impl Counters {
    /// Snapshot of the counters; the caller fills in the gauges.
    pub(crate) fn snapshot(&self) -> ReactorMetrics {
        let get = |counter: &AtomicU64| counter.load(Ordering::Acquire);
        ReactorMetrics {
            polls: get(&self.polls),
            notifications: get(&self.notifications),
            events_dispatched: get(&self.events_dispatched),
            timers_fired: get(&self.timers_fired),
            timers_cancelled: get(&self.timers_cancelled),
            wakes: get(&self.wakes),
            timers_by_workers: get(&self.timers_by_workers),
            events_by_workers: get(&self.events_by_workers),
            sleeps_aside: get(&self.sleeps_aside),
            stale_harvests: get(&self.stale_harvests),
            timers_pending: 0,
            registrations: 0,
        }
    }
}
