//! # grove: gevent's programming model on every core
//!
//! Write plain, blocking-looking code — [`spawn`], [`JoinHandle::join`], [`sleep`] —
//! while per-core hubs multiplex thousands of greenlets (stackful coroutines) over
//! all CPUs and one reactor thread wakes them for timers and I/O.
//!
//! ```
//! use std::time::Duration;
//!
//! let total: u64 = grove::run(|| {
//!     let hs: Vec<_> = (1..=5)
//!         .map(|i| grove::spawn(move || { grove::sleep(Duration::from_millis(10 * i)); i }))
//!         .collect();
//!     hs.into_iter().map(|h| h.join().unwrap()).sum()
//! });
//! assert_eq!(total, 15);
//! ```
//!
//! Kill and timeouts interrupt a greenlet at its blocking point, unwinding it so its
//! destructors run:
//!
//! ```
//! use std::time::Duration;
//!
//! grove::run(|| {
//!     // A timeout interrupts whatever the greenlet blocks on inside the scope.
//!     let r = grove::with_timeout(Duration::from_millis(20), || grove::sleep(Duration::from_secs(60)));
//!     assert!(r.is_err());
//!
//!     // A kill unwinds the target from its blocking point; its join says so.
//!     let sleeper = grove::spawn(|| grove::sleep(Duration::from_secs(60)));
//!     sleeper.kill();
//!     assert!(sleeper.join().unwrap_err().is_killed());
//! });
//! ```
//!
//! Many greenlets at once: wait for a set of them (gevent's `joinall`, `iwait`), start
//! one later (`spawn_later`, killable until it starts), bound concurrency with a
//! [`Pool`](pool::Pool):
//!
//! ```
//! use std::time::Duration;
//!
//! grove::run(|| {
//!     let hs: Vec<_> = [30u64, 10, 20]
//!         .into_iter()
//!         .map(|ms| grove::spawn(move || grove::sleep(Duration::from_millis(ms))))
//!         .collect();
//!     assert_eq!(grove::joinall(&hs).len(), 3); // indices, in completion order
//!
//!     let later = grove::spawn_later(Duration::from_secs(3600), || unreachable!());
//!     later.kill(); // before it started: it never runs
//!     assert!(later.join().unwrap_err().is_killed());
//!
//!     let pool = grove::pool::Pool::new(2); // at most 2 at a time; `spawn` waits when full
//!     assert_eq!(pool.map(["a", "bb", "ccc"], |s| s.len()), [1, 2, 3]);
//! });
//! ```
//!
//! Green sockets ([`net`]: TCP, UDP, Unix) park a greenlet on I/O, and [`blocking`]
//! runs calls that would hold a worker (files, DNS, C) on a thread pool.
//! [`server`] runs a handler greenlet per connection (`StreamServer`) or datagram.
//!
//! # Soundness contract, in plain words
//! * `spawn` is safe. A greenlet may start on any worker, but once started it stays
//!   on that worker for life, so thread-locals behave as on a normal thread.
//! * A greenlet blocks only grove's way (grove's sleep, joins, primitives, sockets).
//!   A blocking std call (`std::thread::sleep`, std sockets, a long CPU loop) holds
//!   its worker and every greenlet homed there waits; move such work to a thread.
//! * Each greenlet has a fixed-size stack with a guard page; overflowing it ends the
//!   process with a message naming the greenlet, never silent corruption.
//!
//! # Deadlock detection
//! Like gevent's `LoopExit` ("This operation would block forever"), a main greenlet of
//! [`run`] / [`Runtime::block_on`] that waits for something that can never happen is
//! unwound from its wait, and `run` panics with a message saying so
//! ([`Runtime::try_block_on`] returns a [`JoinError`] with
//! [`is_deadlock`](JoinError::is_deadlock)) instead of hanging:
//!
//! ```
//! let rt = grove::Runtime::new().unwrap();
//! let err = rt.try_block_on(|| grove::sync::Event::new().wait()).unwrap_err();
//! assert!(err.is_deadlock());
//! ```
//!
//! grove's primitives work from plain threads too, so "no greenlet can run" is not enough:
//! grove asks the kernel. It reports a deadlock only when every other thread of the process
//! is asleep in an untimed, process-private futex wait (a std lock, condvar, channel
//! receive or join: only another thread of the process could end it), the reactor holds no
//! timer and no I/O waiter, and nothing changed while it looked (see the
//! `grove_scheduler::deadlock` module for the proof). Any thread it cannot prove stuck —
//! one sleeping, in a timed wait, reading a pipe, running another event loop — makes it
//! stand down: a real deadlock then hangs as before, but a working program is never
//! interrupted. Linux only (it reads `/proc`); off with
//! [`RuntimeBuilder::detect_deadlock`](runtime::RuntimeBuilder::detect_deadlock).
//!
//! # Map
//! gevent's core is at the root, as `gevent.spawn`, `gevent.joinall` and `gevent.Timeout`
//! are; the rest is grouped as gevent groups it (`gevent.event`, `gevent.queue`,
//! `gevent.pool`, `gevent.socket`, ...).
//!
//! | path | what | gevent |
//! |---|---|---|
//! | `grove::` | running and spawning: [`run`], [`Runtime`], [`spawn`], [`try_spawn`], [`spawn_later`], [`current`], [`Greenlet`], [`JoinHandle`], [`JoinError`], [`SpawnError`] | `gevent.spawn`, `spawn_later`, `getcurrent`, `Greenlet` |
//! | `grove::` | many at once: [`joinall`] ([`_timeout`](joinall_timeout), [`_count`](joinall_count)), [`killall`] ([`_timeout`](killall_timeout)), [`iwait`] ([`_timeout`](iwait_timeout), [`_until`](iwait_until)), [`wait_any`] | `gevent.joinall`, `killall`, `iwait`, `wait` |
//! | `grove::` | time: [`sleep`], [`sleep_until`], [`yield_now`], [`Timeout`], [`with_timeout`], [`Elapsed`] | `gevent.sleep`, `Timeout`, `with_timeout` |
//! | `grove::` | [`block_on`] (a future, from a greenlet), [`greenlet_local!`] | `gevent.local` |
//! | [`greenlet`] | [`GreenletBuilder`](greenlet::GreenletBuilder) (name, stack size), [`GreenletLocal`](greenlet::GreenletLocal), [`park`](greenlet::park) and its `_timeout`/`_until`/`_on` kin with a [`WaitReason`](greenlet::WaitReason), [`current_waker`](greenlet::current_waker), [`try_current`](greenlet::try_current), [`worker_index`](greenlet::worker_index): the building blocks of primitives | `gevent.greenlet`, `gevent.local`, `gevent.hub` |
//! | [`sync`] | [`Event`](sync::Event), [`AsyncResult`](sync::AsyncResult), [`Lock`](sync::Lock), [`RLock`](sync::RLock), [`Semaphore`](sync::Semaphore), [`BoundedSemaphore`](sync::BoundedSemaphore), their guards and errors | `gevent.event`, `gevent.lock` |
//! | [`queue`] | [`Queue`](queue::Queue), [`LifoQueue`](queue::LifoQueue), [`PriorityQueue`](queue::PriorityQueue), [`Channel`](queue::Channel), their errors | `gevent.queue` |
//! | [`pool`] | [`Pool`](pool::Pool), [`Group`](pool::Group) | `gevent.pool` |
//! | [`net`] | green TCP, UDP and Unix sockets | `gevent.socket` |
//! | [`server`] | [`StreamServer`](server::StreamServer), [`DatagramServer`](server::DatagramServer) | `gevent.server` |
//! | [`signal`] | [`Signals`](signal::Signals), [`signal_handler`](signal::signal_handler) | `gevent.signal_handler` |
//! | [`blocking`] | [`spawn_blocking`](blocking::spawn_blocking): a thread pool for calls that would hold a worker | `gevent.threadpool` |
//! | [`runtime`] | [`RuntimeBuilder`](runtime::RuntimeBuilder), [`Handle`](runtime::Handle), [`Metrics`](runtime::Metrics), the stack size limits | `gevent.hub` |
//! | [`monitor`] | [`run_info`](monitor::run_info) and its [`RunInfo`](monitor::RunInfo), the blocking monitor's [`StallReport`](monitor::StallReport) | `gevent.util.print_run_info`, the monitor thread |
//! | `monkey` (feature `monkey`) | libc hooks that make blocking std/C calls green | `gevent.monkey` |
//! | [`raw`] | the crates below, for code that wants them directly | |
//!
//! # Crates
//! `grove-scheduler` (greenlets, hubs, stealing), `grove-reactor` (mio + timers),
//! `grove-primitives` (what greenlets block on, and the runtime that wires the scheduler to
//! the reactor); this crate re-exports them under the map above.

#![forbid(unsafe_code)]

pub use grove_primitives::{run, sleep, sleep_until, Runtime};
pub use grove_scheduler::{
    block_on, current, greenlet_local, iwait, iwait_timeout, iwait_until, joinall, joinall_count,
    joinall_timeout, killall, killall_timeout, spawn, spawn_later, try_spawn, wait_any,
    with_timeout, yield_now, Elapsed, Greenlet, Iwait, JoinError, JoinHandle, SpawnError, Timeout,
};

pub use grove_primitives::{blocking, net, queue, server, signal};

pub mod greenlet {
    //! Greenlets one at a time: options for one ([`GreenletBuilder`]), its locals, and the
    //! park/wake building blocks every primitive is made of.
    //!
    //! A blocking primitive of your own registers [`current_waker`] with what it waits for,
    //! re-checks its condition, then [`park_on`]s with a [`WaitReason`] (so run-info dumps say
    //! what the greenlet waits on), and loops, since wakes may be spurious.

    pub use grove_scheduler::{
        current, current_waker, greenlet_local, in_greenlet, park, park_on, park_timeout,
        park_timeout_on, park_until, park_until_on, try_current, worker_index, yield_now, Greenlet,
        GreenletBuilder, GreenletLocal, JoinHandle, LinkId, WaitReason,
    };
}

pub mod sync {
    //! What greenlets synchronize on (gevent's `gevent.event` and `gevent.lock`): each parks a
    //! greenlet (its worker runs others) or blocks a plain thread.

    pub use grove_primitives::{
        AlreadySet, AsyncResult, BoundedSemaphore, Event, Lock, LockGuard, NotOwner, OverRelease,
        RLock, RLockGuard, Semaphore, SemaphoreGuard,
    };
}

pub mod pool {
    //! Groups of greenlets (gevent's `gevent.pool`): [`Group`] tracks them, [`Pool`] also
    //! bounds how many run at once.

    pub use grove_primitives::{Group, ImapUnordered, Pool, PoolFull};
}

pub mod runtime {
    //! The runtime: worker threads running greenlets plus the reactor thread, its builder,
    //! handle and counters.

    pub use grove_primitives::{run, Metrics, Runtime, RuntimeBuilder};
    pub use grove_reactor::ReactorMetrics;
    pub use grove_scheduler::{
        Handle, StackMetrics, WorkerMetrics, DEFAULT_SHUTDOWN_GRACE, DEFAULT_STACK_SIZE,
        MAX_STACK_SIZE, MIN_STACK_SIZE,
    };
}

pub mod monitor {
    //! Diagnostics: run-info dumps (gevent's `print_run_info`) and the blocking monitor, which
    //! reports a greenlet that holds its worker too long (see
    //! [`RuntimeBuilder::monitor`](crate::runtime::RuntimeBuilder::monitor)).

    pub use grove_scheduler::monitor::*;
    pub use grove_scheduler::{run_info, GreenletInfo, GreenletState, RunInfo, WorkerInfo};
}

/// Monkey-patching (the `monkey` feature): inside greenlets, libc's blocking socket and
/// sleep calls — what `std::net`, `std::thread::sleep` and C libraries use — park the
/// greenlet instead of the thread. See the README's "Monkey-patching" section and the
/// [`grove_monkey`] crate docs for what is hooked and the rules.
#[cfg(feature = "monkey")]
pub use grove_monkey as monkey;

pub mod raw {
    //! The building blocks, for code that wants them directly.

    pub use grove_primitives as primitives;
    pub use grove_reactor as reactor;
    pub use grove_scheduler as scheduler;
}
