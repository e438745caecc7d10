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
    /// Iterations of the reactor loop (each ends in one `mio::Poll::poll` call). Grows by about
    /// one per millisecond while timers are due, and stays put while the reactor is idle.
    pub polls: u64,
    /// Times another thread interrupted the reactor's sleep (`mio::Waker::wake`): an earlier
    /// timer than planned, or shutdown.
    pub notifications: u64,
    /// I/O readiness events dispatched to registrations.
    pub events_dispatched: u64,
    /// Timers whose deadline passed and whose waker was woken.
    pub timers_fired: u64,
    /// Timers cancelled before they fired.
    pub timers_cancelled: u64,
    /// Wakers woken, for any reason: I/O, timers, shutdown.
    pub wakes: u64,
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
pub(crate) struct Counters {
    pub(crate) polls: AtomicU64,
    pub(crate) notifications: AtomicU64,
    pub(crate) events_dispatched: AtomicU64,
    pub(crate) timers_fired: AtomicU64,
    pub(crate) timers_cancelled: AtomicU64,
    pub(crate) wakes: AtomicU64,
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
            timers_pending: 0,
            registrations: 0,
        }
    }
}
