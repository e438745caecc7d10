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
//! [`Pool`]:
//!
//! ```
//! use std::time::Duration;
//!
//! grove::run(|| {
//!     let hs: Vec<_> = [30u64, 10, 20]
//!         .into_iter()
//!         .map(|ms| grove::spawn(move || grove::sleep(Duration::from_millis(ms))))
//!         .collect();
//!     assert_eq!(grove::joinall_timeout(&hs, Duration::from_secs(30)).len(), 3);
//!
//!     let later = grove::spawn_later(Duration::from_secs(3600), || unreachable!());
//!     later.kill(); // before it started: it never runs
//!     assert!(later.join().unwrap_err().is_killed());
//!
//!     let pool = grove::Pool::new(2); // at most 2 at a time; `spawn` waits when full
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
//! let err = rt.try_block_on(|| grove::Event::new().wait()).unwrap_err();
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
//! [`RuntimeBuilder::detect_deadlock`].
//!
//! # Crates
//! `grove-scheduler` (greenlets, hubs, stealing), `grove-reactor` (mio + timers),
//! `grove-primitives` (what greenlets block on); this crate wires them together.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

pub use grove_primitives::{blocking, net, server, signal};
pub use grove_primitives::{queue, Channel, LifoQueue, PriorityQueue, Queue};
pub use grove_primitives::{
    sleep, sleep_until, AlreadySet, AsyncResult, BoundedSemaphore, Event, Lock, LockGuard,
    NotOwner, OverRelease, RLock, RLockGuard, Semaphore, SemaphoreGuard,
};
pub use grove_primitives::{Group, ImapUnordered, Pool, PoolFull};
pub use grove_scheduler::{
    block_on, current, current_waker, in_greenlet, park, park_on, park_timeout, park_timeout_on,
    park_until, park_until_on, spawn, try_current, try_spawn, with_timeout, worker_index,
    yield_now, Elapsed, Greenlet, GreenletBuilder, Handle, JoinError, JoinHandle, SpawnError,
    StackMetrics, Timeout, WaitReason, WorkerMetrics, DEFAULT_SHUTDOWN_GRACE, DEFAULT_STACK_SIZE,
    MAX_STACK_SIZE, MIN_STACK_SIZE,
};
pub use grove_scheduler::{greenlet_local, GreenletLocal};
pub use grove_scheduler::{
    iwait, iwait_timeout, iwait_until, joinall, joinall_count, joinall_timeout, killall,
    killall_timeout, spawn_later, wait_any, Iwait, LinkId,
};
pub use grove_scheduler::{
    run_info, GreenletInfo, GreenletState, RunInfo, StallReport, WorkerInfo,
};

/// The greenlet toolbox: options for one greenlet, its locals, and the park/wake
/// building blocks of primitives.
pub mod greenlet {
    pub use grove_scheduler::{
        current, current_waker, in_greenlet, park, park_on, park_timeout, park_timeout_on,
        park_until, park_until_on, try_current, worker_index, Greenlet, GreenletBuilder,
        JoinHandle, LinkId, WaitReason,
    };
    pub use grove_scheduler::{greenlet_local, GreenletLocal};
}

/// Diagnostics: run-info dumps (gevent's `print_run_info`) and the blocking monitor.
pub mod monitor {
    pub use grove_scheduler::monitor::*;
    pub use grove_scheduler::{run_info, GreenletInfo, GreenletState, RunInfo, WorkerInfo};
}

/// Monkey-patching (the `monkey` feature): inside greenlets, libc's blocking socket and
/// sleep calls — what `std::net`, `std::thread::sleep` and C libraries use — park the
/// greenlet instead of the thread. See the README's "Monkey-patching" section and the
/// [`grove_monkey`] crate docs for what is hooked and the rules.
#[cfg(feature = "monkey")]
pub use grove_monkey as monkey;

/// The building blocks, for code that wants them directly.
pub mod raw {
    pub use grove_primitives as primitives;
    pub use grove_reactor as reactor;
    pub use grove_scheduler as scheduler;
}

/// Configures a [`Runtime`]: worker count and greenlet stack size.
///
/// ```
/// let rt = grove::Runtime::builder().workers(2).stack_size(128 * 1024).build().unwrap();
/// assert_eq!(rt.workers(), 2);
/// ```
#[derive(Debug, Default)]
pub struct RuntimeBuilder {
    inner: grove_scheduler::RuntimeBuilder,
}

impl RuntimeBuilder {
    /// Number of worker threads; default: one per CPU (`num_cpus::get()`).
    pub fn workers(mut self, n: usize) -> Self {
        self.inner = self.inner.workers(n);
        self
    }

    /// Usable stack bytes per greenlet; default [`DEFAULT_STACK_SIZE`].
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.inner = self.inner.stack_size(bytes);
        self
    }

    /// Prefix of worker thread names.
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Self {
        self.inner = self.inner.thread_name(prefix);
        self
    }

    /// Whether [`Runtime::block_on`] (and so [`run`]) reports a main greenlet that waits
    /// forever instead of hanging; default `true`. See [`JoinError::is_deadlock`] and the
    /// "Deadlock detection" section of the crate docs.
    pub fn detect_deadlock(mut self, on: bool) -> Self {
        self.inner = self.inner.detect_deadlock(on);
        self
    }

    /// The blocking monitor: reports, once per stall, a greenlet that holds its worker
    /// longer than `threshold` (`None`: off). Unset, `GROVE_MONITOR` decides
    /// (`GROVE_MONITOR=1` → 100 ms, `=250ms`/`=250` → 250 ms; see
    /// [`monitor::parse_threshold`]). See
    /// [`RuntimeBuilder::monitor`](grove_scheduler::RuntimeBuilder::monitor).
    pub fn monitor(mut self, threshold: Option<Duration>) -> Self {
        self.inner = self.inner.monitor(threshold);
        self
    }

    /// How long dropping the runtime waits for greenlets that keep blocking while a
    /// shutdown unwinds them (default [`DEFAULT_SHUTDOWN_GRACE`]); see
    /// [`RuntimeBuilder::shutdown_grace`](grove_scheduler::RuntimeBuilder::shutdown_grace)
    /// and "Shutdown" in the README.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.inner = self.inner.shutdown_grace(grace);
        self
    }

    /// Sends the monitor's reports to `hook` instead of stderr.
    pub fn on_stall(mut self, hook: impl Fn(&StallReport) + Send + Sync + 'static) -> Self {
        self.inner = self.inner.on_stall(hook);
        self
    }

    /// Starts the reactor thread and the workers.
    pub fn build(self) -> io::Result<Runtime> {
        // Keeps the hooks' object files in the program (see `grove_monkey::link`).
        #[cfg(feature = "monkey")]
        grove_monkey::link();
        // The reactor batches its wakes per worker (one unpark per worker per batch), and the
        // workers harvest its poll and its due timers themselves (no thread hop for their own
        // greenlets); it sleeps in `epoll_wait` only while no worker watches.
        let reactor = grove_reactor::Reactor::start_with_wake_scope(|wakes| {
            grove_scheduler::batch_wakes_to_workers(wakes)
        })?;
        let sched = self
            .inner
            .extension(Arc::new(reactor.handle()))
            .timers(Arc::new(ReactorTimers(reactor.handle())))
            .driver(Arc::new(ReactorDriver(reactor.handle())))
            .build()?;
        Ok(Runtime {
            sched: Some(sched),
            reactor: Some(reactor),
        })
    }
}

/// The reactor's timers, as the scheduler's timer hook (timeouts on joins, kills and
/// [`Timeout`] scopes).
#[derive(Debug)]
struct ReactorTimers(grove_reactor::Handle);

impl grove_scheduler::Timers for ReactorTimers {
    fn add(
        &self,
        deadline: std::time::Instant,
        waker: std::task::Waker,
    ) -> grove_scheduler::TimerKey {
        grove_scheduler::TimerKey::from_raw(self.0.add_timer(deadline, waker).to_raw())
    }

    fn cancel(&self, key: grove_scheduler::TimerKey) {
        self.0
            .cancel_timer(grove_reactor::TimerKey::from_raw(key.to_raw()));
    }

    fn is_quiet(&self) -> bool {
        self.0.is_quiet()
    }

    fn os_thread_ids(&self) -> Vec<u32> {
        self.0.os_thread_id().into_iter().collect()
    }
}

/// The reactor's poll and timers, as the workers' poll hook: a worker that runs dry (and a busy
/// one every 64 ticks) harvests ready events and due timers itself, so its own greenlets are
/// woken with a local push; see `grove_scheduler::Driver`.
#[derive(Debug)]
struct ReactorDriver(grove_reactor::Handle);

impl grove_scheduler::Driver for ReactorDriver {
    fn poll(&self) -> usize {
        self.0.poll_now()
    }

    fn begin_watching(&self) {
        self.0.begin_watching();
    }

    fn end_watching(&self) {
        self.0.end_watching();
    }

    fn next_deadline(&self) -> Option<std::time::Instant> {
        self.0.next_timer()
    }
}

/// Worker threads running greenlets, plus the reactor thread.
///
/// Dropping it (or [`shutdown_timeout`](Self::shutdown_timeout)) stops the hubs,
/// unwinds greenlets still parked so their destructors run, stops the reactor, and
/// joins every thread it started.
pub struct Runtime {
    sched: Option<grove_scheduler::Runtime>,
    reactor: Option<grove_reactor::Reactor>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("scheduler", &self.sched)
            .finish()
    }
}

impl Runtime {
    /// A builder with defaults.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::default()
    }

    /// A runtime with default settings.
    pub fn new() -> io::Result<Runtime> {
        Runtime::builder().build()
    }

    fn sched(&self) -> &grove_scheduler::Runtime {
        self.sched.as_ref().expect("runtime already shut down")
    }

    /// Runs `f` as a greenlet and blocks this thread until it returns; a panic in
    /// `f` is resumed here.
    #[track_caller]
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.sched().block_on(f)
    }

    /// Like [`block_on`](Self::block_on), but returns how the main greenlet failed
    /// (a panic, a kill, a deadlock: [`JoinError::is_deadlock`]) instead of panicking.
    #[track_caller]
    pub fn try_block_on<F, T>(&self, f: F) -> Result<T, JoinError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.sched().handle().try_block_on(f)
    }

    /// Spawns a greenlet from any thread.
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.sched().spawn(f)
    }

    /// A cloneable handle to spawn from other threads.
    pub fn handle(&self) -> &Handle {
        self.sched().handle()
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.sched().workers()
    }

    /// Every live greenlet and every worker's counters (gevent's `print_run_info`);
    /// print it with `{}`. See [`Handle::dump`].
    pub fn dump(&self) -> RunInfo {
        self.handle().dump()
    }

    /// The blocking monitor's last reports (empty if it is off).
    pub fn stall_reports(&self) -> Vec<StallReport> {
        self.handle().stall_reports()
    }

    /// The scheduler's and the reactor's counters. See [`Metrics`].
    pub fn metrics(&self) -> Metrics {
        let h = self.handle();
        Metrics {
            workers: h.worker_metrics(),
            live_greenlets: h.live_greenlets(),
            stalls: h.stall_count(),
            reactor: self.reactor_metrics(),
        }
    }

    /// Reactor counters (events, timers fired...).
    pub fn reactor_metrics(&self) -> grove_reactor::ReactorMetrics {
        self.reactor
            .as_ref()
            .expect("runtime already shut down")
            .handle()
            .metrics()
    }

    /// Shuts down, waiting at most `timeout` for workers to unwind their greenlets.
    /// Returns `true` if every worker thread was joined. See
    /// [`grove_scheduler::Runtime::shutdown_timeout`].
    pub fn shutdown_timeout(mut self, timeout: Duration) -> bool {
        self.stop(Some(timeout))
    }

    /// `None`: dropped (the builder's grace period, then join every thread).
    fn stop(&mut self, timeout: Option<Duration>) -> bool {
        if self
            .sched
            .as_ref()
            .is_some_and(|s| s.handle().in_forked_child())
        {
            // A fork() child's copy: the threads live only in the parent, and joining
            // them here would hang. Forget it (see "fork" in the README).
            std::mem::forget(self.sched.take());
            std::mem::forget(self.reactor.take());
            return false;
        }
        // Workers first: greenlets unwinding may still cancel timers.
        let joined = self.sched.take().is_none_or(|s| match timeout {
            Some(t) => s.shutdown_timeout(t),
            None => {
                drop(s);
                true
            }
        });
        if let Some(r) = self.reactor.take() {
            r.shutdown();
        }
        joined
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop(None);
    }
}

/// A runtime's counters, from [`Runtime::metrics`]. Counters only grow; a snapshot
/// taken while the runtime runs is read field by field, not atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Per worker, by index: greenlets spawned there (`spawned`), resumes (`runs`),
    /// steals from peers (`stolen`), parks (`parks`), wakes from other threads
    /// including the reactor (`remote_wakes`), greenlets finished (`finished`). See
    /// [`WorkerMetrics`].
    pub workers: Vec<WorkerMetrics>,
    /// Greenlets spawned and not finished (including ones spawned from outside the
    /// workers, which no worker's `spawned` counts).
    pub live_greenlets: usize,
    /// Stalls reported by the blocking monitor, or `None` if it is off.
    pub stalls: Option<u64>,
    /// The reactor thread: loop iterations (`polls`), cross-thread interruptions
    /// (`notifications`), I/O events dispatched (`events_dispatched`), timers fired and
    /// cancelled (`timers_fired`, `timers_cancelled`), wakers woken (`wakes`), and the
    /// gauges `timers_pending` and `registrations`. See [`grove_reactor::ReactorMetrics`].
    pub reactor: grove_reactor::ReactorMetrics,
}

/// Runs `f` as the main greenlet of a fresh default runtime and returns its value;
/// the runtime is shut down afterwards. gevent's "spawn, then joinall" in one call.
///
/// Panics if the runtime cannot start (no threads can be created), and resumes a
/// panic from `f`.
#[track_caller]
pub fn run<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let rt = Runtime::new().unwrap_or_else(|e| panic!("grove::run: cannot start runtime: {e}"));
    rt.block_on(f)
}
