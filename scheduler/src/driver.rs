//! The worker-side poll hook: how a hub harvests I/O events and due timers itself, and how
//! wakes to other workers are batched.
//!
//! The scheduler knows nothing of I/O (layering: the reactor wakes plain `Waker`s). The owner of
//! the runtime (grove's `Runtime`, in grove-primitives' `runtime` module, with its reactor) plugs in a [`Driver`] through
//! [`RuntimeBuilder::driver`](crate::RuntimeBuilder::driver), as it plugs in `Timers`.
//!
//! # Vocabulary
//! * **harvest**: [`Driver::poll`]: take what is ready now (events, due timers) without blocking
//!   and wake it on this thread. A wake of a greenlet homed here is a local push (the LIFO slot
//!   or `ready`): no futex, no IPI. A wake of a greenlet homed elsewhere goes to its home inbox.
//! * **watching**: a hub that is awake promises to harvest when it runs dry and every
//!   [`POLL_MASK`]` + 1` ticks while busy ([`Driver::begin_watching`] when it wakes,
//!   [`Driver::end_watching`] before it sleeps). While anyone watches, the driver's own thread
//!   need not sleep in the kernel, where every event would wake it for nothing.
//! * **wake batch**: `batch_wakes` (module `batch`): inside it, a wake aimed at another worker is queued and
//!   that worker's inbox push and unpark happen once per worker at the end of the batch.
//!
//! # Where the hub calls it (one step a line, as `worker::driver` reads)
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
//! `TRIM_TIMER_MARGIN`; a busy worker decommits one run every [`TRIM_MASK`]` + 1` ticks, and
//! only once more than `DEFER_LIMIT` stacks wait. Both wait until a burst is over (the stack
//! module's `DECAY`); a timer brings an idle worker back when it is.

use std::fmt;
use std::time::Instant;

/// A busy hub harvests every `POLL_MASK + 1` ticks (tokio's `event_interval` is 61).
pub(crate) const POLL_MASK: u32 = 63;
/// A busy hub gives back one run of stacks every `TRIM_MASK + 1` ticks, if many wait.
pub(crate) const TRIM_MASK: u32 = 255;
/// Harvests an idle hub makes while it spins before sleeping. One, not more: each that finds
/// nothing is a wasted `epoll_wait` (with four, strace of echo at C = 100 counted 1.33 per round
/// trip against tokio's 0.6), and on a small machine that CPU is the load's. Same-run A/B of one
/// against four (quick sizes, 4 pairs): echo round trips/s +7% at C = 100 and +15% at C = 1,000,
/// http_hello +7%; sleepers and ping-pong across workers unchanged.
pub(crate) const IDLE_POLLS: u32 = 1;
/// Pause instructions an idle hub spends watching its own parker before sleeping (a few µs
/// without a driver; with one, split between [`IDLE_POLLS`] harvests). Not more: on a small
/// machine a spinning worker takes the core from whatever would send it work (profiled under
/// echo at C = 100 with twice this: 18% of the workers' samples were this spin, while the
/// load generator sharing the two cores was the bottleneck).
///
/// Not less either, measured: 64 pauses (1.6 µs; a `pause` is ~25 ns on this EPYC) in four
/// same-run A/B sets against 256 moved echo at C = 100 from 0.86–0.92× tokio to 0.90–0.99×
/// (p99 4.33 → 2.4–3.9 ms) and http_hello from 0.81–0.92× to 0.95–1.07×, but echo at
/// C = 1,000 from 0.93–1.09× to 0.87–0.91×, and ping-pong across workers from 0.7 µs a round
/// trip to 3.4–9.9 µs (tokio's 13–20 µs). An adaptive spin (reset to 256 by a spin that ended
/// in a wake, halved by one that ended in sleep) kept ping-pong at 3.3–6.7 µs: one late reply
/// shortens the next spins, which then miss more.
pub(crate) const SPIN_BEFORE_PARK: u32 = 256;
/// Every this many turns of the spin before sleeping, the hub gives its core away
/// (`sched_yield`) instead of pausing: a spin only pays while a core is free, and on a busy
/// machine (a server beside its clients, or any other work) the thread that would send this
/// worker its next message may be waiting for exactly this core. With nothing else runnable
/// the yield returns at once (one cheap syscall), so an idle machine loses nothing; Go's
/// runtime mixes `osyield` into its spins for the same reason.
///
/// Measured, same-run A/B against the plain pause spin (4 pairs, 3 repetitions each): echo
/// at C = 100 0.89–0.94× tokio → 1.03–1.07×, at C = 1,000 0.82–0.97× → 1.02–1.15×,
/// http_hello 0.88–0.95× → 0.99–1.07×; ping-pong across workers (660–750 ns → 612–660 ns a
/// round trip) and the sleepers unchanged. Yielding every 16 or 32 turns was no better, every
/// 128 worse; never (the old spin), worst.
pub(crate) const SPIN_YIELD_EVERY: u32 = 64;

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
