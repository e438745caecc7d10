//! The runtime: worker threads running greenlets (`grove-scheduler`) wired to one reactor
//! thread (`grove-reactor`) for timers and I/O.
//!
//! The scheduler knows nothing of the reactor: the two meet only through `std::task::Waker`
//! and three hooks the scheduler's builder takes, which this module fills in:
//! * **timers** ([`Timers`](grove_scheduler::Timers)): timeouts on joins, kills, parks and
//!   `Timeout` scopes go to the reactor's timer wheel (`ReactorTimers`);
//! * **driver** ([`Driver`](grove_scheduler::Driver)): a worker that runs dry harvests the
//!   reactor's ready events and due timers itself (`ReactorDriver`);
//! * **extension**: the reactor's handle, which the primitives look up from inside a greenlet
//!   (sleeps, sockets, signals).
//!
//! Shutdown order: the workers first (greenlets unwinding may still cancel timers), then
//! the reactor.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use grove_scheduler::{Handle, JoinError, JoinHandle, RunInfo, StallReport, WorkerMetrics};

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

    /// Usable stack bytes per greenlet; default
    /// [`DEFAULT_STACK_SIZE`](grove_scheduler::DEFAULT_STACK_SIZE).
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
    /// [`parse_threshold`](grove_scheduler::monitor::parse_threshold)). See
    /// [`RuntimeBuilder::monitor`](grove_scheduler::RuntimeBuilder::monitor).
    pub fn monitor(mut self, threshold: Option<Duration>) -> Self {
        self.inner = self.inner.monitor(threshold);
        self
    }

    /// How long dropping the runtime waits for greenlets that keep blocking while a
    /// shutdown unwinds them (default
    /// [`DEFAULT_SHUTDOWN_GRACE`](grove_scheduler::DEFAULT_SHUTDOWN_GRACE)); see
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
        #[cfg(all(feature = "monkey", target_os = "linux"))]
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
/// [`Timeout`](grove_scheduler::Timeout) scopes).
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
