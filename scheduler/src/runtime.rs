//! The runtime: worker threads, the shared queues, and shutdown.
//!
//! See the crate docs for the model and `worker` for the hub loop and the shutdown
//! steps. This module owns what all workers share ([`Shared`]) and the user-facing
//! [`Builder`], [`Runtime`] and [`Handle`].

use std::any::Any;
use std::fmt;
use std::io;
use std::panic;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::driver::Driver;
use crate::error::JoinError;
use crate::gate::Gate;
use crate::greenlet::{self, JoinHandle};
use crate::idle::{Idle, Parker};
use crate::monitor::{Monitor, StallHook, StallReport};
use crate::queue::{Injector, Steal, Stealer, Worker};
use crate::run_info::RunInfo;
use crate::stack::{StackAllocator, StackConfig};
use crate::task::TaskRef;
use crate::timers::Timers;
use crate::worker::{cancel_unstarted, with_local, Counters, Local, Registry};

/// Default usable stack size of a greenlet: 256 KiB of address space, of which only
/// the pages actually touched cost memory.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;
// Defined once, beside the allocator that rounds every request up to it.
pub use crate::stack::MIN_STACK_SIZE;
/// Largest stack a greenlet may be given.
pub const MAX_STACK_SIZE: usize = 1 << 30;
/// Default of [`Builder::shutdown_grace`].
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// This process's id, kept current across `fork` by a `pthread_atfork` child handler
/// (see [`Shared::check_owner`]); 0 until the first runtime is built.
static PID: AtomicU32 = AtomicU32::new(0);

/// The calling process's id: one relaxed load (no `getpid` syscall on the spawn path).
/// Registers the `fork` handler on first use.
fn current_pid() -> u32 {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        PID.store(std::process::id(), Ordering::Relaxed);
        #[cfg(unix)]
        {
            extern "C" fn after_fork_in_child() {
                // Async-signal-safe: one syscall and an atomic store.
                // SAFETY: getpid has no preconditions.
                let pid = unsafe { libc::getpid() };
                PID.store(pid as u32, Ordering::Relaxed);
            }
            // SAFETY: the handler is a plain `extern "C" fn` that stays valid for the
            // process's life and only does async-signal-safe work.
            let rc = unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
            if rc != 0 {
                // Without the handler a fork goes unnoticed: the forked child hangs as it
                // would have without this check. Nothing else depends on it.
                PID.store(0, Ordering::Relaxed);
            }
        }
    });
    PID.load(Ordering::Relaxed)
}

/// A runtime used in a `fork()` child of the process that built it: its threads do not
/// exist here, so waiting on it would hang forever. Panics like other misuse (`spawn`
/// outside a runtime), naming the operation.
#[cold]
#[inline(never)]
#[track_caller]
fn forked_child(what: &str, owner: u32) -> ! {
    panic!(
        "{what} called in a forked child process (pid {}) on a runtime built by process {owner}: \
         a grove runtime's worker and reactor threads do not survive fork(), so nothing could \
         ever run here; build a new runtime in the child instead",
        std::process::id()
    )
}

/// What other threads may touch of one worker. Aligned to 128 bytes (two cache lines,
/// the unit adjacent-line prefetchers pull in) so workers do not false-share.
#[repr(align(128))]
pub(crate) struct Remote {
    /// Started greenlets homed here, woken from other threads.
    pub(crate) inbox: Injector<TaskRef>,
    /// Thief end of the worker's `fresh` queue (unstarted greenlets only).
    pub(crate) stealer: Stealer<TaskRef>,
    pub(crate) parker: Parker,
    pub(crate) counters: Arc<Counters>,
    /// Started greenlets homed here that have suspended (see `run_info`).
    pub(crate) registry: Mutex<Registry>,
    /// The hub has exited (step 6 of `worker`'s "Shutdown"): whoever pushes to `inbox`
    /// now must drain it too (see `gate`).
    pub(crate) exited: Gate,
}

/// State shared by all workers of a runtime and by every greenlet header.
pub(crate) struct Shared {
    pub(crate) workers: Box<[Remote]>,
    /// Greenlets spawned from outside any worker of this runtime.
    pub(crate) injector: Injector<TaskRef>,
    pub(crate) idle: Idle,
    pub(crate) stacks: Arc<StackAllocator>,
    pub(crate) stack_size: usize,
    /// Greenlets spawned, and finished, by threads that are not this runtime's workers.
    /// Workers count in their own [`Counters`] (single writer, no shared cache line):
    /// `live = Σ spawned − Σ finished` over both.
    pub(crate) outside_spawned: AtomicU64,
    pub(crate) outside_finished: AtomicU64,
    pub(crate) extension: Option<Arc<dyn Any + Send + Sync>>,
    /// Timers for timeouts, if the owner provided them.
    pub(crate) timers: Option<Arc<dyn Timers>>,
    /// The worker-side poll hook, if the owner provided one (see `driver`).
    pub(crate) driver: Option<Arc<dyn Driver>>,
    /// `block_on` checks for deadlocks while it waits (see `deadlock`).
    pub(crate) detect_deadlock: bool,
    /// The blocking monitor's state, if it is on (see `monitor`).
    pub(crate) monitor: Option<Arc<Monitor>>,
    /// Serializes spotlight readers (the monitor and dumps; see `spotlight`).
    readers: Mutex<()>,
    /// Hubs must stop; whoever pushes to `injector` now must drain it too (see `gate`).
    shutdown: Gate,
    /// How long hubs wait for greenlets that block while being unwound at shutdown
    /// (see [`Builder::shutdown_grace`]).
    grace: Duration,
    /// When the hubs give up on such greenlets; set by the first `begin_shutdown`.
    deadline: Mutex<Option<Option<Instant>>>,
    /// The process that built the runtime (see [`Shared::check_owner`]); 0 if unknown.
    pid: u32,
    exited: Mutex<usize>,
    exited_cv: Condvar,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.workers.len())
            .field("live_greenlets", &self.live())
            .field("shutdown", &self.is_shutdown())
            .finish()
    }
}

impl Shared {
    /// Greenlets spawned and not yet finished. Exact when the runtime is quiescent;
    /// approximate while greenlets are being spawned and finished concurrently.
    pub(crate) fn live(&self) -> usize {
        let (mut spawned, mut finished) = (
            self.outside_spawned.load(Ordering::Acquire),
            self.outside_finished.load(Ordering::Acquire),
        );
        for w in self.workers.iter() {
            spawned += w.counters.spawned.load(Ordering::Acquire);
            finished += w.counters.finished.load(Ordering::Acquire);
        }
        spawned.saturating_sub(finished) as usize
    }

    /// Counts a finished greenlet, in the current worker's counters if `worker` is one
    /// of ours (the caller runs on it), else in the shared outside counter.
    pub(crate) fn count_finished(&self, worker: Option<usize>) {
        match worker {
            Some(i) => self.workers[i].counters.bump_finished(),
            None => {
                self.outside_finished.fetch_add(1, Ordering::Release);
            }
        }
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.is_closed()
    }

    /// When hubs stop waiting for greenlets being unwound (`None`: never).
    pub(crate) fn shutdown_deadline(&self) -> Option<Instant> {
        self.deadline
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .flatten()
    }

    /// True if this process is a `fork()` child of the one that built the runtime.
    #[inline]
    pub(crate) fn in_forked_child(&self) -> bool {
        self.pid != PID.load(Ordering::Relaxed)
    }

    /// Refuses `what` in a forked child (see [`forked_child`]): one relaxed load and a
    /// compare, on every spawn and `block_on`.
    #[inline]
    #[track_caller]
    pub(crate) fn check_owner(&self, what: &str) {
        if self.in_forked_child() {
            forked_child(what, self.pid);
        }
    }

    /// Step 1 of `run_info` and `monitor`'s step 4: one spotlight reader at a time.
    pub(crate) fn lock_readers(&self) -> std::sync::MutexGuard<'_, ()> {
        self.readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Per-worker counters, by worker index.
    pub(crate) fn worker_metrics(&self) -> Vec<WorkerMetrics> {
        self.workers
            .iter()
            .map(|w| {
                let c = &w.counters;
                WorkerMetrics {
                    spawned: c.spawned.load(Ordering::Relaxed),
                    runs: c.run.load(Ordering::Relaxed),
                    stolen: c.stolen.load(Ordering::Relaxed),
                    parks: c.parked.load(Ordering::Relaxed),
                    remote_wakes: c.woken_remote.load(Ordering::Relaxed),
                    finished: c.finished.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Wakes a sleeping worker if nobody is searching (step 1 of `idle`).
    pub(crate) fn notify_parked(&self) {
        if let Some(i) = self.idle.worker_to_notify() {
            self.workers[i].parker.unpark();
        }
    }

    /// True if any queue a searcher could take from is non-empty.
    pub(crate) fn has_stealable_work(&self) -> bool {
        !self.injector.is_empty() || self.workers.iter().any(|w| !w.stealer.is_empty())
    }

    /// Queues a started greenlet on its home worker from another thread.
    pub(crate) fn push_remote(&self, home: usize, task: TaskRef) {
        let w = &self.workers[home];
        w.inbox.push(task);
        w.parker.unpark();
        // Pairs with the hub's `exit` (see `gate`).
        if w.exited.closed_after_push() {
            while w.inbox.steal().success().is_some() {}
        }
    }

    /// Queues an unstarted greenlet: on this worker if we are one, else globally. Once
    /// shutdown has begun it is cancelled instead (its join reports `is_shutdown`).
    pub(crate) fn push_new(self: &Arc<Self>, task: TaskRef) {
        let worker = with_local(|l| match l {
            Some(l) if Arc::ptr_eq(&l.shared, self) => Some(l.index),
            _ => None,
        });
        match worker {
            Some(i) => self.workers[i].counters.bump_spawned(),
            None => {
                self.outside_spawned.fetch_add(1, Ordering::Release);
            }
        }
        if self.shutdown.is_closed() {
            cancel_unstarted(self, worker, task);
            return;
        }
        if worker.is_some() {
            with_local(|l| l.expect("push_new: worker vanished").push_spawned(task));
            return;
        }
        self.injector.push(task);
        self.notify_parked();
        // Pairs with `begin_shutdown` (see `gate`).
        if self.shutdown.closed_after_push() {
            self.drain_injector();
        }
    }

    fn drain_injector(&self) {
        loop {
            match self.injector.steal() {
                Steal::Success(t) => cancel_unstarted(self, None, t),
                Steal::Empty => break,
                Steal::Retry => {}
            }
        }
    }

    /// Step 1 of `worker`'s "Shutdown". `grace` bounds how long hubs wait for greenlets
    /// that block while being unwound (`None`: the builder's
    /// [`shutdown_grace`](Builder::shutdown_grace)); the first call decides.
    pub(crate) fn begin_shutdown(&self, grace: Option<Duration>) {
        {
            let mut d = self
                .deadline
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if d.is_none() {
                *d = Some(Instant::now().checked_add(grace.unwrap_or(self.grace)));
            }
        }
        self.shutdown.close();
        self.drain_injector();
        for w in self.workers.iter() {
            w.parker.unpark();
        }
        if let Some(m) = &self.monitor {
            m.wake();
        }
    }
}

/// Configures and builds a [`Runtime`].
///
/// ```
/// let rt = grove_scheduler::RuntimeBuilder::new().workers(2).stack_size(64 * 1024).build().unwrap();
/// assert_eq!(rt.block_on(|| 6 * 7), 42);
/// ```
#[derive(Clone)]
pub struct Builder {
    workers: Option<usize>,
    stack_size: usize,
    thread_name: String,
    extension: Option<Arc<dyn Any + Send + Sync>>,
    timers: Option<Arc<dyn Timers>>,
    driver: Option<Arc<dyn Driver>>,
    detect_deadlock: bool,
    /// `None`: not decided here (the environment decides); `Some(None)`: off.
    monitor: Option<Option<Duration>>,
    on_stall: Option<StallHook>,
    shutdown_grace: Duration,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("workers", &self.workers)
            .field("stack_size", &self.stack_size)
            .field("thread_name", &self.thread_name)
            .field("detect_deadlock", &self.detect_deadlock)
            .field("monitor", &self.monitor)
            .field("on_stall", &self.on_stall.is_some())
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// Defaults: one worker per CPU (`num_cpus::get()`), [`DEFAULT_STACK_SIZE`] stacks.
    pub fn new() -> Builder {
        Builder {
            workers: None,
            stack_size: DEFAULT_STACK_SIZE,
            thread_name: "grove-worker".to_string(),
            extension: None,
            timers: None,
            driver: None,
            detect_deadlock: true,
            monitor: None,
            on_stall: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }

    /// How long a shutdown by dropping the runtime waits for greenlets that keep
    /// blocking while they are unwound (default [`DEFAULT_SHUTDOWN_GRACE`]).
    ///
    /// A shutdown unwinds every parked greenlet from its blocking point so that its
    /// destructors run; a destructor that blocks (a `sleep`, a `join`, a contended
    /// `Lock`, a flush) parks and is woken as usual. Greenlets still alive when the
    /// grace period ends — a destructor waiting for something that never comes, a loop
    /// that catches every unwind and blocks again — are abandoned: named on stderr,
    /// their stacks leaked without running the rest of their destructors, their joins
    /// resolved with [`JoinError::is_shutdown`]. [`Runtime::shutdown_timeout`] uses its
    /// own timeout instead.
    pub fn shutdown_grace(mut self, grace: Duration) -> Builder {
        self.shutdown_grace = grace;
        self
    }

    /// Number of worker threads (hubs). Must be at least 1.
    pub fn workers(mut self, n: usize) -> Builder {
        self.workers = Some(n);
        self
    }

    /// Usable stack bytes of each greenlet (rounded up to whole pages), between
    /// [`MIN_STACK_SIZE`] and [`MAX_STACK_SIZE`]. Only touched pages use memory.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = bytes;
        self
    }

    /// Prefix of worker thread names (`<prefix>-<index>`).
    pub fn thread_name(mut self, prefix: impl Into<String>) -> Builder {
        self.thread_name = prefix.into();
        self
    }

    /// Attaches a value that code running on this runtime's workers can reach with
    /// [`with_extension`](crate::with_extension). The `grove` facade stores its reactor
    /// handle here.
    pub fn extension(mut self, ext: Arc<dyn Any + Send + Sync>) -> Builder {
        self.extension = Some(ext);
        self
    }

    /// The timer service used for timeouts (`Timeout`, `join_timeout`, `kill_timeout`,
    /// `park_timeout`). The `grove` facade plugs in its reactor.
    pub fn timers(mut self, timers: Arc<dyn Timers>) -> Builder {
        self.timers = Some(timers);
        self
    }

    /// The worker-side poll hook: workers harvest I/O events and due timers through it when
    /// they run dry and every few dozen ticks, waking their own greenlets without a thread
    /// hop (see the `driver` module). The `grove` facade plugs in its reactor.
    pub fn driver(mut self, driver: Arc<dyn Driver>) -> Builder {
        self.driver = Some(driver);
        self
    }

    /// Whether [`block_on`](Runtime::block_on) reports a main greenlet that waits for
    /// something that can provably never happen (gevent's `LoopExit`) instead of hanging.
    /// Default `true`. The check runs on the thread blocked in `block_on`, every 10 ms at
    /// first and then less often (at most 1 s apart), and costs the workers nothing; on
    /// systems without `/proc` it never fires. What is proven is described in
    /// [`JoinError::is_deadlock`](crate::JoinError::is_deadlock) and the crate docs.
    pub fn detect_deadlock(mut self, on: bool) -> Builder {
        self.detect_deadlock = on;
        self
    }

    /// Turns the blocking monitor on (`Some(threshold)`) or off (`None`): a thread that
    /// reports, once per stall, any greenlet holding its worker — running without
    /// yielding — for longer than `threshold` (gevent's monitor thread). Reports go to
    /// stderr (or to [`on_stall`](Self::on_stall)) and are kept for
    /// [`Handle::stall_reports`]. It costs the workers nothing: it samples words the hubs
    /// write anyway, every `threshold / 4`. See the `monitor` module for the protocol.
    ///
    /// If this is not called, the environment variable `GROVE_MONITOR` decides (off when
    /// unset); see [`monitor::parse_threshold`](crate::monitor::parse_threshold) for its
    /// syntax (`1` = on at 100 ms, `250ms`, `0.5s`, `off`...).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let rt = grove::Runtime::builder()
    ///     .workers(1)
    ///     .monitor(Some(Duration::from_millis(20)))
    ///     .on_stall(|r| println!("{r}"))
    ///     .build()
    ///     .unwrap();
    /// rt.block_on(|| std::thread::sleep(Duration::from_millis(100))); // holds the worker
    /// assert_eq!(rt.handle().stall_reports().len(), 1);
    /// ```
    pub fn monitor(mut self, threshold: Option<Duration>) -> Builder {
        self.monitor = Some(threshold);
        self
    }

    /// Where the monitor's reports go instead of stderr. The hook runs on the monitor
    /// thread; a panic in it is caught and reported. Has no effect unless the monitor is
    /// on.
    pub fn on_stall(mut self, hook: impl Fn(&StallReport) + Send + Sync + 'static) -> Builder {
        self.on_stall = Some(Arc::new(hook));
        self
    }

    /// Starts the worker threads.
    ///
    /// Errors: `InvalidInput` for zero workers or a stack size out of range; the OS
    /// error if a thread cannot be started.
    pub fn build(self) -> io::Result<Runtime> {
        let n = self.workers.unwrap_or_else(num_cpus::get);
        if n == 0 || n >= 0xFFFF {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("grove: worker count must be between 1 and 65534, got {n}"),
            ));
        }
        check_stack_size(self.stack_size)?;
        let stacks = Arc::new(StackAllocator::new(StackConfig {
            size: self.stack_size,
        }));
        // `GROVE_LOG=debug`: say once how stacks are guarded and what that caps.
        stacks.announce();
        // Name the greenlet if a destructor panicking during its unwinding aborts.
        crate::task::install_abort_report();
        let deques: Vec<Worker<TaskRef>> = (0..n).map(|_| Worker::new_fifo()).collect();
        let workers = deques
            .iter()
            .map(|d| Remote {
                inbox: Injector::new(),
                stealer: d.stealer(),
                parker: Parker::new(),
                counters: Arc::default(),
                registry: Mutex::default(),
                exited: Gate::new(),
            })
            .collect();
        let threshold = match self.monitor {
            Some(t) => t,
            None => crate::monitor::threshold_from_env(),
        };
        let monitor = threshold.map(|t| Arc::new(Monitor::new(t, self.on_stall.clone())));
        let shared = Arc::new(Shared {
            workers,
            injector: Injector::new(),
            idle: Idle::new(n),
            stacks,
            stack_size: self.stack_size,
            outside_spawned: AtomicU64::new(0),
            outside_finished: AtomicU64::new(0),
            extension: self.extension,
            timers: self.timers,
            driver: self.driver,
            detect_deadlock: self.detect_deadlock,
            monitor,
            readers: Mutex::new(()),
            shutdown: Gate::new(),
            grace: self.shutdown_grace,
            deadline: Mutex::new(None),
            pid: current_pid(),
            exited: Mutex::new(0),
            exited_cv: Condvar::new(),
        });
        let mut rt = Runtime {
            handle: Handle {
                shared: shared.clone(),
            },
            threads: Vec::with_capacity(n),
            monitor: None,
        };
        for (i, deque) in deques.into_iter().enumerate() {
            let shared = shared.clone();
            let spawned = thread::Builder::new()
                .name(format!("{}-{i}", self.thread_name))
                .spawn(move || {
                    let local = Local::new(i, shared.clone(), deque);
                    let outcome = panic::catch_unwind(panic::AssertUnwindSafe(|| local.run()));
                    *shared.exited.lock().unwrap_or_else(PoisonError::into_inner) += 1;
                    shared.exited_cv.notify_all();
                    if let Err(p) = outcome {
                        // A hub never panics for a user's mistake (greenlet panics are caught
                        // at their root); reaching this is a grove bug.
                        panic::resume_unwind(p);
                    }
                });
            match spawned {
                Ok(t) => rt.threads.push(t),
                Err(e) => {
                    // `rt`'s Drop stops the threads already started.
                    return Err(e);
                }
            }
        }
        if shared.monitor.is_some() {
            rt.monitor = Some(crate::monitor::start(
                shared.clone(),
                format!("{}-monitor", self.thread_name),
            )?);
        }
        Ok(rt)
    }
}

pub(crate) fn check_stack_size(bytes: usize) -> io::Result<()> {
    if !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&bytes) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "grove: stack size must be between {MIN_STACK_SIZE} and {MAX_STACK_SIZE} bytes, got {bytes}"
            ),
        ));
    }
    Ok(())
}

/// A set of worker threads running greenlets.
///
/// Dropping it shuts it down (see "Shutdown" in the README): hubs stop, greenlets that
/// never started are dropped, parked ones are unwound from their blocking points on
/// their home thread so their destructors run (destructors may block, for up to
/// [`Builder::shutdown_grace`]), every join resolves, and every thread the runtime
/// started is joined before `drop` returns — except when the runtime is dropped from one
/// of its own greenlets, which cannot wait for its own thread: the threads then finish
/// the shutdown by themselves.
#[derive(Debug)]
pub struct Runtime {
    handle: Handle,
    threads: Vec<thread::JoinHandle<()>>,
    monitor: Option<thread::JoinHandle<()>>,
}

impl Runtime {
    /// A [`Builder`] with default settings.
    pub fn builder() -> Builder {
        Builder::new()
    }

    /// A cheap, cloneable, `Send` handle for spawning from any thread.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Spawns a greenlet from any thread. See [`Handle::spawn`].
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.handle.spawn(f)
    }

    /// Runs `f` as a greenlet and blocks this thread until it returns its value.
    /// A panic in `f` is resumed on the caller.
    #[track_caller]
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.handle.block_on(f)
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.handle.workers()
    }

    /// Every live greenlet and every worker's counters. See [`Handle::dump`].
    pub fn dump(&self) -> RunInfo {
        self.handle.dump()
    }

    /// The blocking monitor's last reports. See [`Handle::stall_reports`].
    pub fn stall_reports(&self) -> Vec<StallReport> {
        self.handle.stall_reports()
    }

    /// Shuts down, waiting at most `timeout` for the workers to unwind their greenlets
    /// and exit, and returns `true` if every thread was joined.
    ///
    /// `timeout` is also the grace period of [`Builder::shutdown_grace`]: greenlets
    /// still blocking in their destructors (or catching the unwind) when it ends are
    /// abandoned, and the hubs exit right after (the wait allows them
    /// [`EXIT_MARGIN`] more for that). Only a greenlet that never yields can keep its
    /// worker busy past that: its thread is then detached and `false` returned. Either
    /// way every join resolves: greenlets that never started (including any spawned from
    /// now on) report [`JoinError::is_shutdown`] at once, and the others as soon as they
    /// are unwound or abandoned.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> bool {
        self.stop(Some(timeout))
    }

    /// Shuts down. `grace`: `shutdown_timeout`'s timeout, or `None` (dropped: the
    /// builder's grace period, then wait for every thread, however long it takes).
    fn stop(&mut self, grace: Option<Duration>) -> bool {
        let shared = &self.handle.shared;
        if shared.in_forked_child() {
            // The threads exist only in the parent: joining them would wait forever.
            // Forget their handles (the parent still owns the threads) and give up.
            shared.shutdown.close();
            std::mem::forget(self.monitor.take());
            self.threads.drain(..).for_each(std::mem::forget);
            return false;
        }
        let start = Instant::now();
        shared.begin_shutdown(grace);
        if let Some(m) = self.monitor.take() {
            // It exits at its next wake, which `begin_shutdown` just caused.
            let _ = m.join();
        }
        if with_local(|l| l.is_some_and(|l| Arc::ptr_eq(&l.shared, shared))) {
            // Dropped from one of its own greenlets: joining would wait for ourselves.
            // The hubs (ours included, once this greenlet yields) finish the shutdown.
            self.threads.clear();
            return false;
        }
        let deadline = grace.and_then(|g| start.checked_add(g)?.checked_add(EXIT_MARGIN));
        let n = self.threads.len();
        let mut exited = shared.exited.lock().unwrap_or_else(PoisonError::into_inner);
        while *exited < n {
            match deadline {
                None => {
                    exited = shared
                        .exited_cv
                        .wait(exited)
                        .unwrap_or_else(PoisonError::into_inner)
                }
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break;
                    }
                    exited = shared
                        .exited_cv
                        .wait_timeout(exited, d - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
        let all = *exited == n;
        drop(exited);
        for t in self.threads.drain(..) {
            // Every thread that signalled its exit is joined, finished or not (its
            // thread-locals' destructors may still be running): only a thread still in
            // its hub when the wait ended is detached.
            if all || t.is_finished() {
                let _ = t.join();
            }
        }
        all
    }
}

/// How much longer than its timeout [`Runtime::shutdown_timeout`] waits for the hubs,
/// which abandon what is left when the timeout ends and then exit.
pub const EXIT_MARGIN: Duration = Duration::from_millis(250);

impl Drop for Runtime {
    fn drop(&mut self) {
        if !self.threads.is_empty() || !self.handle.shared.is_shutdown() {
            self.stop(None);
        }
    }
}

/// A handle to a runtime: spawn onto it from any thread.
#[derive(Clone, Debug)]
pub struct Handle {
    pub(crate) shared: Arc<Shared>,
}

impl Handle {
    /// The runtime of the greenlet (or worker) running on this thread, if any.
    pub fn try_current() -> Option<Handle> {
        with_local(|l| {
            l.map(|l| Handle {
                shared: l.shared.clone(),
            })
        })
    }

    /// Spawns a greenlet. Callable from any thread, inside the runtime or not.
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        greenlet::GreenletBuilder::new().spawn_on(self, f)
    }

    /// Runs `f` as a greenlet and blocks the calling thread (or parks the calling
    /// greenlet) until it returns. A panic in `f` is resumed on the caller.
    #[track_caller]
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.try_block_on(f) {
            Ok(v) => v,
            Err(e) => match e.try_into_panic() {
                Ok(payload) => panic::resume_unwind(payload),
                Err(e) => panic!("grove: block_on: {e}"),
            },
        }
    }

    /// Like [`block_on`](Self::block_on), but returns how the main greenlet failed
    /// instead of panicking: a panic (payload inside), a kill, a shutdown, or a
    /// deadlock ([`JoinError::is_deadlock`]: it waited for something nothing could ever
    /// do, and was unwound from that wait).
    ///
    /// ```
    /// let rt = grove::Runtime::builder().workers(1).build().unwrap();
    /// // Waits for a greenlet that waits for it: nothing can ever finish.
    /// let err = rt
    ///     .handle()
    ///     .try_block_on(|| {
    ///         let me = grove::current();
    ///         grove::spawn(move || me.wait()).join()
    ///     })
    ///     .unwrap_err();
    /// assert!(err.is_deadlock());
    /// ```
    #[track_caller]
    pub fn try_block_on<F, T>(&self, f: F) -> Result<T, JoinError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.shared.check_owner("grove: Runtime::block_on");
        let h = self.spawn(f);
        if self.shared.detect_deadlock && !crate::in_greenlet() {
            let timers = self.shared.timers.as_deref();
            let mut step = crate::deadlock::FIRST_CHECK;
            while !h.wait_timeout(step) {
                if h.interrupt_if_deadlocked(timers) {
                    break;
                }
                step = (step * 2).min(crate::deadlock::MAX_CHECK);
            }
        }
        h.join()
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.shared.workers.len()
    }

    /// True if the calling process is a `fork()` child of the process that built this
    /// runtime. Such a copy has none of the runtime's threads: `block_on` and `spawn`
    /// panic there, and dropping it only forgets it (see "fork" in the README).
    pub fn in_forked_child(&self) -> bool {
        self.shared.in_forked_child()
    }

    /// Greenlets spawned on this runtime that have not finished yet.
    pub fn live_greenlets(&self) -> usize {
        self.shared.live()
    }

    /// True once shutdown has begun.
    pub fn is_shutdown(&self) -> bool {
        self.shared.is_shutdown()
    }

    /// The value given to [`Builder::extension`], if any.
    pub fn extension(&self) -> Option<&Arc<dyn Any + Send + Sync>> {
        self.shared.extension.as_ref()
    }

    /// Per-worker scheduling counters, by worker index.
    pub fn worker_metrics(&self) -> Vec<WorkerMetrics> {
        self.shared.worker_metrics()
    }

    /// Every live greenlet this runtime can name (id, name, state, home worker, spawn
    /// location, age) and every worker's counters: gevent's `print_run_info`. Print it
    /// with `{}`. Callable from any thread, including the runtime's own greenlets; cheap
    /// enough to leave in production (it costs the workers nothing until called, then a
    /// lock per worker while it copies that worker's list). See the `run_info` module
    /// for what is listed and what is only counted.
    pub fn dump(&self) -> RunInfo {
        crate::run_info::dump(&self.shared)
    }

    /// The blocking monitor's reports, oldest first (at most the last
    /// [`KEPT_REPORTS`](crate::monitor::KEPT_REPORTS)); empty if the monitor is off.
    pub fn stall_reports(&self) -> Vec<StallReport> {
        self.shared
            .monitor
            .as_ref()
            .map_or_else(Vec::new, |m| m.reports())
    }

    /// Stalls the blocking monitor has reported since the runtime started, or `None`
    /// if the monitor is off.
    pub fn stall_count(&self) -> Option<u64> {
        self.shared.monitor.as_ref().map(|m| m.total())
    }

    /// The blocking monitor's threshold, or `None` if it is off.
    pub fn monitor_threshold(&self) -> Option<Duration> {
        self.shared.monitor.as_ref().map(|m| m.threshold())
    }

    /// A snapshot of this runtime's greenlet stacks: in use, pooled, decommitted, and
    /// what they cost in kernel mappings and address space. See [`StackMetrics`].
    pub fn stack_metrics(&self) -> StackMetrics {
        let a = &self.shared.stacks;
        let st = a.stats();
        StackMetrics {
            live: st.live,
            pooled: st.pooled,
            decommitted: st.decommitted,
            trim_pending: a.needs_trim(),
            mappings: st.mappings,
            bytes_reserved: st.bytes_reserved,
            guard_install: a.guard_mode() == crate::stack::GuardMode::Madvise,
        }
    }
}

/// A snapshot of a runtime's greenlet stacks, from [`Handle::stack_metrics`].
///
/// A finished greenlet's stack is pooled for the next one; pooled stacks beyond a
/// watermark (64 per worker plus 256 shared) have their memory given back to the kernel
/// (*decommitted*, `MADV_DONTNEED`) by idle workers, a run of adjacent stacks at a time, once
/// the spike has been over for a second, so the memory of a spike returns while the stacks'
/// addresses and guard pages are kept for reuse (and a spike that repeats within the second
/// reuses them without page faults). Read
/// field by field while the runtime runs: exact only when it is quiescent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StackMetrics {
    /// Stacks in use: by started, unfinished greenlets, and by unstarted ones that
    /// reserved theirs at spawn (`try_spawn`, or a stack size of their own).
    pub live: usize,
    /// Stacks kept for reuse, in the workers' pools and the shared list.
    pub pooled: usize,
    /// Of `pooled`, those whose memory has been given back to the kernel.
    pub decommitted: usize,
    /// True while pooled stacks beyond the watermark wait for an idle worker to
    /// decommit them.
    pub trim_pending: bool,
    /// Kernel mappings made for stacks: what counts against `vm.max_map_count`.
    pub mappings: usize,
    /// Address space reserved for stacks, in bytes (memory is used only where touched).
    pub bytes_reserved: usize,
    /// True if guard pages are `MADV_GUARD_INSTALL` markers (Linux ≥ 6.13: about one
    /// mapping per 4096 stacks); false if every stack is its own `mprotect`-guarded
    /// mapping (two mappings per stack, so about `vm.max_map_count / 2` live greenlets
    /// at most).
    pub guard_install: bool,
}

/// A snapshot of one worker's counters (monotonic since the runtime started).
///
/// Each counter has one writer (the worker itself, except `remote_wakes`) and is read
/// field by field with `Relaxed` loads: a snapshot taken while the runtime runs is not
/// atomic across fields. Greenlets spawned from threads outside the runtime are not
/// counted in any worker's `spawned` (nor their finish, if it happens off the workers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerMetrics {
    /// Greenlets spawned by greenlets running on this worker.
    pub spawned: u64,
    /// Times a greenlet was resumed on this worker (first runs included): the worker's
    /// switch count.
    pub runs: u64,
    /// Times this worker stole unstarted greenlets from a peer (a batch counts once).
    pub stolen: u64,
    /// Times a greenlet parked on this worker (blocked waiting for a wake).
    pub parks: u64,
    /// Wakes of this worker's greenlets that came from other threads: other workers,
    /// plain threads, the reactor (timers and I/O), the blocking pool.
    pub remote_wakes: u64,
    /// Greenlets that finished on this worker (returned, panicked, were killed, or were
    /// cancelled unstarted by it).
    pub finished: u64,
}
