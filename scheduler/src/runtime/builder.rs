//! [`Builder`]: configures a runtime and starts its threads.

use std::any::Any;
use std::fmt;
use std::io;
use std::panic;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::driver::Driver;
use crate::hub::Core;
use crate::monitor::stall::{threshold_from_env, Monitor, StallHook, StallReport};
use crate::runtime::handle::Runtime;
use crate::shared::{
    check_stack_size, current_pid, Handle, PerWorker, Shared, DEFAULT_SHUTDOWN_GRACE,
    DEFAULT_STACK_SIZE,
};
use crate::stack::{StackAllocator, StackConfig};
use crate::timers::Timers;
use crate::worker::{install_panic_hook, Local};

impl Runtime {
    /// A [`Builder`] with default settings.
    pub fn builder() -> Builder {
        Builder::new()
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
    /// [`with_extension`](crate::with_extension). grove's `Runtime` (grove-primitives' `runtime` module) stores its reactor
    /// handle here.
    pub fn extension(mut self, ext: Arc<dyn Any + Send + Sync>) -> Builder {
        self.extension = Some(ext);
        self
    }

    /// The timer service used for timeouts (`Timeout`, `join_timeout`, `kill_timeout`,
    /// `park_timeout`). grove's `Runtime` plugs in its reactor.
    pub fn timers(mut self, timers: Arc<dyn Timers>) -> Builder {
        self.timers = Some(timers);
        self
    }

    /// The worker-side poll hook: workers harvest I/O events and due timers through it when
    /// they run dry and every few dozen ticks, waking their own greenlets without a thread
    /// hop (see the `driver` module). grove's `Runtime` plugs in its reactor.
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
        install_panic_hook();
        let (core, deques) = Core::new(n, |_| PerWorker::default());
        let threshold = match self.monitor {
            Some(t) => t,
            None => threshold_from_env(),
        };
        let monitor = threshold.map(|t| Arc::new(Monitor::new(t, self.on_stall.clone())));
        let shared = Arc::new(Shared {
            core: Arc::new(core),
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
            grace: self.shutdown_grace,
            deadline: Mutex::new(None),
            pid: current_pid(),
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
                    shared.core.count_exit();
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
