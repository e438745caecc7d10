//! grove-reactor: one thread that owns `mio::Poll` and the timers, and wakes `std::task::Waker`s.
//!
//! The reactor knows nothing about greenlets. A waiter hands it a [`Waker`](std::task::Waker);
//! the reactor wakes it when a timer's deadline passes or a registered source becomes ready.
//! Because the interface is a plain `Waker`, the reactor is testable with thread wakers and
//! serves any `Future` as well.
//!
//! ```
//! use std::sync::Arc;
//! use std::task::{Wake, Waker};
//! use std::thread::{self, Thread};
//! use std::time::{Duration, Instant};
//!
//! struct Unpark(Thread);
//! impl Wake for Unpark {
//!     fn wake(self: Arc<Self>) {
//!         self.0.unpark();
//!     }
//! }
//!
//! let reactor = grove_reactor::Reactor::start()?;
//! let handle = reactor.handle();
//! let deadline = Instant::now() + Duration::from_millis(5);
//! handle.add_timer(deadline, Waker::from(Arc::new(Unpark(thread::current()))));
//! while Instant::now() < deadline {
//!     thread::park(); // spurious unparks are possible: re-check
//! }
//! reactor.shutdown();
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Vocabulary
//!
//! * **reactor**: the `grove-reactor` thread. It runs no user code: waking a `Waker` is the only
//!   callback it makes.
//! * **source**: anything `mio` can poll (socket, pipe, `SourceFd`). **Registration**: a source's
//!   token in the reactor's slab plus its `ScheduledIo` state.
//! * **readiness**: bits saying an operation in a [`Direction`] may make progress (readable,
//!   writable, read/write closed, error). **tick**: a per-source event counter.
//! * **planned wake**: the deadline the reactor currently sleeps until.
//! * **notify**: interrupting the reactor's sleep through a `mio::Waker` (one eventfd write).
//!
//! # Approach
//!
//! * **Edge-triggered mio.** An operation retries until `WouldBlock`, then clears readiness and
//!   waits. The reactor never re-reports readiness nobody consumed, so it does no work per idle
//!   connection. (Level-triggered was rejected: it re-reports every ready-but-unread source on
//!   every poll.)
//! * **Registration on the caller's thread.** `mio::Registry` is `Sync`, so [`Handle::register`]
//!   inserts into the slab and calls `epoll_ctl` directly. A queue of operations to the reactor
//!   thread (the textbook design) was rejected: it would add a round trip and a notification per
//!   registration for nothing.
//! * **Slab of `Arc<ScheduledIo>` behind a mutex, tokens carrying a generation.** tokio uses the
//!   `ScheduledIo`'s address as the token, which needs unsafe code and a protocol to keep the
//!   entry alive until the driver has seen its deregistration. A generation in the token makes a
//!   late event for a dropped registration harmless, in safe code (loom model
//!   `late_event_never_reaches_the_next_occupant`). A harvester takes the slab lock once per
//!   batch of events, never per event.
//! * **Harvesting from any thread.** Workers take events from the shared poll themselves
//!   ([`Handle::poll_now`]), and the reactor thread sleeps in `epoll_wait` only while no worker
//!   watches; the `watch` module has that protocol and its loom models.
//! * **Per-source state: an atomic word plus two waker slots under a small mutex**
//!   (tokio's `ScheduledIo` shape). A lock-free `AtomicWaker` was rejected: the mutex is only
//!   contended at the exact moment of the race it resolves, and it reduces the no-lost-wakeup
//!   argument to two lines (step W3 below).
//! * **Timers: a hierarchical timing wheel per shard, one shard per CPU, each under its own
//!   mutex** (modules `timer` and `wheel`). Insert and cancel O(1); due timers fire a slot at a
//!   time with one clock read per batch; deadlines are rounded up to the wheel's 16 µs tick
//!   (never early). A worker inserts into its own shard and fires it first, so its greenlets'
//!   timers wake them with a local push and workers do not contend on one lock (tokio shards
//!   its wheels per worker too). The binary heap with lazy deletion that came first was
//!   replaced: under 100k sleepers its pops, the lock's contention and a clock read per
//!   `add_timer` were ~16% of the profile (the wheel: ~5%). The reactor is notified only when
//!   a new deadline precedes its planned wake.
//!
//! # The reactor loop
//!
//! 1. Fire every timer due at `now` (its deadline rounded up to the wheel's tick `<= now`), shard
//!    after shard, in batches of 256 per lock acquisition, waking each batch outside the lock
//!    (inside the wake scope, so the owner can batch the wakes per worker); the scan ends by
//!    recording each shard's next expiration as its planned wake and sleeping until the
//!    earliest (T1).
//! 2. If shutdown was requested, leave the loop (S3).
//! 3. Choose how to sleep (module `watch`, steps R1/R1'): **aside** (the thread parker) while
//!    workers watch the shared poll or a worker was just woken, for the 1 ms stale-watch
//!    interval whatever the planned wake: watchers fire due timers in their harvests, as they
//!    take events, so waking the reactor for each deadline would only add a thread wake-up
//!    per timer tick (under 100k sleepers: 45k context switches against 20k, and 8% of the
//!    CPU). A timer therefore waits at most the stale-watch interval while every watcher is
//!    stuck in a long greenlet (tokio's and Go's timers wait for a worker too); **in the kernel**
//!    otherwise: `epoll_wait` on the reactor's outer poll (the shared poll's descriptor and the
//!    reactor's eventfd) with a timeout of `planned wake - now`, which mio rounds **up** to whole
//!    milliseconds (epoll's resolution). Rounding up means the reactor never wakes before a
//!    deadline and then spins; a timer due within the next millisecond costs one sleep of one
//!    millisecond. Mean lateness from the rounding is about half a millisecond, plus the
//!    kernel's timer slack (~50 µs) and wake-up latency. Workers also fire due timers when they
//!    harvest (module `timer`, "Workers fire too"), so a busy runtime's timers rarely wait for
//!    the reactor at all.
//! 4. After a kernel sleep, harvest the shared poll until it is empty and dispatch each event:
//!    look its token up under the slab lock, then set the readiness bits and wake the satisfied
//!    wakers outside it (D1–D3). After an aside sleep, harvest only if no worker has harvested
//!    for the stale-watch interval (a worker stuck in a greenlet that never yields).
//!
//! # Readiness protocol
//!
//! Waiter, in [`Registration::poll_ready`]:
//!
//! * **W1.** Load the state word. If the direction's bits (or shutdown) are set, return `Ready`,
//!   remembering the tick seen (used by C1).
//! * **W2.** Lock the waker slots and store the waker for this direction.
//! * **W3.** Still under the lock, set the direction's *waiting* bit with a read-modify-write of
//!   the state word, and check the state it returns. If ready now, clear the bit, take the
//!   waker back and return `Ready`; otherwise return `Pending`.
//!
//! Harvester (the reactor thread or a worker), per event (`ScheduledIo::dispatch`):
//!
//! * **D1.** In one atomic read-modify-write, OR in the event's bits and increment the tick.
//! * **D2.** If the state D1 replaced has the waiting bit of a direction the bits satisfy: lock
//!   the waker slots, take those wakers and clear their waiting bits, unlock. Otherwise skip the
//!   lock: nobody waits (the per-event lock is taken only when there is a waker to take).
//! * **D3.** Wake them.
//!
//! *No lost wakeup:* W3's and D1's read-modify-writes on the state word are totally ordered. If
//! D1 comes first, W3's returns its bits and the waiter returns `Ready`. If W3 comes first, D1
//! returns the waiting bit, so D2 takes the lock, which orders it after W2/W3's section, and
//! finds the waker. Waiting bits change only under the lock, together with the slots, so a set
//! slot always has its bit set once the lock is released (loom models `poll_ready_vs_dispatch`,
//! `dispatch_wakes_only_the_satisfied_direction`). Waking in D3 happens after the unlock, so a
//! waker that takes locks of its own can never nest inside ours.
//!
//! Waiter, after an operation returned `WouldBlock` ([`Registration::clear_readiness`]):
//!
//! * **C1.** Compare-and-swap the state word: clear the direction's readiness bits *only if the
//!   tick still equals the one W1/W3 remembered*. If an event arrived since then (D1 bumped the
//!   tick), it may report data that arrived after the `WouldBlock`, so its readiness is kept and
//!   the next `poll_ready` returns `Ready` at once (loom model `clear_vs_new_event`). The
//!   compare-and-swap makes "tick unchanged" and "clear" one atomic step; a `fetch_and` could
//!   clear a bit that a D1 set between a separate tick check and the clear.
//!
//! Closed bits are final and never cleared; error bits clear with their direction (a socket error
//! is consumed by the operation that reports it, and a sticky error bit would turn the next
//! `WouldBlock` into a busy loop).
//!
//! # Timer protocol
//!
//! Steps T1–T3 in the `timer` module: the planned wake lives under each shard's mutex, which
//! `add_timer` holds anyway, so deciding whether to notify the reactor costs a comparison, and a
//! syscall only when the new deadline is earlier than what the reactor planned for that shard.
//! Cancellation takes the waker out of its wheel node under the same mutex, so a timer is either
//! fired (waker taken by the reactor or a worker) or cancelled (taken by `cancel_timer`), never
//! both (loom model `timer_add_fire_cancel`).
//!
//! # Wakers must be cheap
//!
//! Wakers run on the thread that harvested their event or timer (the reactor thread, or a
//! thread calling [`Handle::poll_now`]), one after another; a slow waker delays every other
//! timer and event of its batch. A waker should enqueue and return (grove's push a greenlet
//! to its worker's queue or inbox). A panicking waker on the reactor thread ends the reactor
//! (which then shuts down as below and re-raises the panic from [`Reactor::shutdown`]); in
//! [`Handle::poll_now`] the panic unwinds out of `poll_now` to its caller. Either way the rest
//! of the batch is woken first: its timers and events were already taken and would never be
//! reported again.
//!
//! # Shutdown
//!
//! [`Reactor::shutdown`], or dropping the [`Reactor`]:
//!
//! 1. **S1.** Set the shutdown flag ([`Handle::is_shutdown`] turns true), then notify the reactor.
//!    The reactor checks the flag after each timer scan, before sleeping; a sleep already under
//!    way is interrupted by the notification, so the flag is never missed.
//! 2. **S2.** Join the reactor thread.
//! 3. **S3.** The reactor leaves its loop. (A `poll` failure or a panicking waker leaves it too,
//!    and sets the flag itself.)
//! 4. **S4.** On its way out the reactor closes the slab and the timer queue *under their locks*,
//!    marks every registration shut down and collects every pending timer, then wakes them all
//!    outside the locks. A waiter woken so sees `poll_ready` return the error "grove reactor is
//!    shut down". Because `register` and `add_timer` check the closed flag under the same locks,
//!    a call racing with S4 either lands before it (and is drained) or after it and then fails:
//!    `register` returns that error, `add_timer` wakes its waker at once. Nobody hangs.
//!
//! A [`Handle`] outlives its reactor safely; the `mio::Registry` it holds stays valid (it is a
//! duplicate of the poll's file descriptor), so [`Registration::deregister`] still works.
//!
//! # Loom
//!
//! `ScheduledIo`, the timer queue and `Watch` take their atomics and mutexes from the private
//! `loom` shim, and under `cfg(grove_loom)` are exposed (with the slab) in the hidden `__loom`
//! module. `loom-tests/tests/reactor.rs` models W/D/C and T against each other, a worker's timer
//! scan against the reactor's plan, an insert into one shard against the reactor's scan of all,
//! and a late event against the slab slot's next occupant;
//! `loom-tests/tests/watch.rs` models who sleeps in the kernel, with the kernel itself played by
//! a mutex and a condvar. The driver (thread, polls) is compiled but never run under loom.

mod driver;
mod loom;
mod metrics;
mod registration;
// `pub` items in the protocol modules below are reachable only through `__loom` under
// `cfg(grove_loom)`.
#[cfg_attr(not(grove_loom), allow(unreachable_pub))]
mod slab;
mod sys;
// `pub` items in these two modules are reachable only through `__loom` under `cfg(grove_loom)`.
#[cfg_attr(not(grove_loom), allow(unreachable_pub))]
mod scheduled_io;
mod shared;
#[cfg_attr(not(grove_loom), allow(unreachable_pub))]
mod timer;
#[cfg_attr(not(grove_loom), allow(unreachable_pub))]
mod watch;
mod wheel;

pub use driver::{Handle, Reactor};
pub use metrics::ReactorMetrics;
pub use registration::Registration;
pub use shared::WakeScope;
pub use timer::TimerKey;

/// The direction an operation waits in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Reading (or accepting). Satisfied by readable, read-closed and error readiness.
    Read,
    /// Writing (or connecting). Satisfied by writable, write-closed and error readiness.
    Write,
}

/// The racy protocol types, for the loom models in `loom-tests`. Not a stable API.
#[cfg(grove_loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::scheduled_io::{Ready, ScheduledIo};
    pub use crate::slab::IoSlab;
    pub use crate::timer::{Due, Insert, TimerQueue};
    pub use crate::watch::{Rouse, Sleep, Watch};
}
