//! A pool of OS threads for calls that would block a worker (gevent's `threadpool`).
//!
//! A greenlet that calls a blocking function (a file read, `getaddrinfo`, a long C call)
//! holds its worker thread, and every greenlet homed on that worker waits with it.
//! [`spawn_blocking`] moves such a call to a *blocking thread*; the greenlet parks on the
//! returned [`BlockingHandle`] and its worker runs others meanwhile.
//!
//! ```
//! let rt = grove::Runtime::builder().workers(1).build().unwrap();
//! let len = rt.block_on(|| {
//!     // Runs on a pool thread; this greenlet parks until it is done.
//!     let h = grove::blocking::spawn_blocking(|| std::fs::read("Cargo.toml").map(|b| b.len()));
//!     h.join().unwrap()
//! });
//! assert!(len.unwrap() > 0);
//! ```
//!
//! # Vocabulary
//!
//! * **job**: one closure given to [`spawn_blocking`] / [`BlockingPool::spawn`].
//! * **slot**: where a job's outcome meets its [`BlockingHandle`]: the outcome, or the waker
//!   of whoever waits for it, under a small mutex.
//! * **idle thread**: a pool thread waiting on the pool's condition variable for a job; it
//!   *retires* (exits) after [`keep_alive`](BlockingPoolBuilder::keep_alive) without one.
//! * **notified**: idle threads already claimed by a submitted job (woken, not yet running).
//!
//! # Approach
//!
//! * **One process-wide pool** behind [`spawn_blocking`], created on first use, never torn
//!   down. Blocking calls come from anywhere: greenlets of any runtime, plain threads, code
//!   running before a runtime exists (name resolution in a constructor, a file read in
//!   `main`). Tying the pool to a `Runtime` would make those calls fail or need a handle
//!   threaded through, and two runtimes would not share their idle threads. Idle threads
//!   retire, so an unused pool costs nothing but a few words. Its size comes from the
//!   `GROVE_BLOCKING_THREADS` environment variable, read once (default
//!   [`DEFAULT_MAX_THREADS`]); [`BlockingPool::builder`] makes separate pools with their own
//!   size and keep-alive.
//! * **Threads are spawned lazily**, one per job when no thread is idle, up to the bound;
//!   beyond it jobs queue (FIFO). A fixed set of threads started up front was rejected: most
//!   programs need a handful, briefly (tokio's blocking pool is lazy for the same reason).
//! * **A mutex-protected queue and a condition variable**, not a lock-free queue: a job costs
//!   a thread hop and usually a syscall; the lock is never the bottleneck (tokio's blocking
//!   pool, same design).
//! * **The join parks through the scheduler's `current_waker`/`park`**, so the same handle
//!   parks a greenlet and blocks a plain thread. An [`AsyncResult`](crate::AsyncResult) was
//!   rejected: it hands out clones or references, while a job's value must move out once.
//!
//! # Protocol
//!
//! Submit ([`BlockingPool::spawn`]), under the pool mutex:
//!
//! 1. Push the job. If a thread is idle and unclaimed (`idle > 0`), claim it (`idle -= 1`,
//!    `notified += 1`) and signal the condition variable.
//! 2. Else, if at least as many claimed threads are on their way as jobs are queued
//!    (`notified >= queue length`: they were woken for jobs a busy thread took first, and will
//!    find this one), stop.
//! 3. Else, if fewer than `max_threads` threads exist, count a new one and spawn it after
//!    unlocking. If spawning fails and no thread is left to run the queue, the queued jobs are
//!    dropped and their handles resolve with [`BlockingError::is_cancelled`].
//! 4. Else leave it queued: a busy thread takes it when done.
//!
//! Pool thread, under the pool mutex: pop jobs until the queue is empty (running each with
//! the mutex released); then count itself idle and wait. A wake with `notified > 0` consumes
//! one notification and goes back to popping; a wake after `keep_alive` with none retires the
//! thread (uncounting it as idle and as a thread, under the same lock, so a submitter never
//! claims a thread that is leaving).
//!
//! Job and join, per slot:
//!
//! 1. The job runs under `catch_unwind`; the pool thread locks the slot, stores the outcome
//!    (the value, or the panic payload), takes the stored waker, unlocks, wakes it.
//! 2. `join` locks the slot: an outcome is there → take it. Else store `current_waker()`,
//!    unlock, `park` (or `park_timeout`), and repeat (wakes may be spurious).
//! 3. A joiner unwound from its park (kill, `Timeout`, shutdown) removes its waker on the
//!    way out. The job keeps running; when the last of the handle and the job drops the slot,
//!    the outcome is dropped with it.
//!
//! # Shutdown
//!
//! The process-wide pool never shuts down (its idle threads retire). A [`BlockingPool`] made
//! by its builder shuts down when its last clone is dropped: the flag is set, idle threads
//! are woken, queued jobs still run, then every thread exits. Nothing joins them.
//!
//! # Loom
//!
//! The accounting above is model-checked in `loom-tests/tests/blocking.rs` on this very
//! code: its mutex, condition variable, threads and joiner parking come from
//! `crate::loom`, which swaps in loom's under `--cfg grove_loom` (the process-wide pool
//! is not built there).
//!
//! # Faults
//!
//! User code never breaks the pool's accounting. A job's panic comes back in its handle.
//! Everything else of the user's that a pool thread runs — dropping a detached job's
//! result (or its panic payload), dropping a job's closure — runs under `catch_unwind`:
//! a panic there is reported on stderr and contained (a payload whose own `Drop` panics
//! is leaked), so the thread carries on and stays counted. Jobs dropped unrun (no thread
//! could be started) are dropped one by one the same way. A keep-alive too large for
//! `Instant` (say [`Duration::MAX`]) means idle threads never retire.
//!
//! Jobs run on plain threads: grove calls that need a greenlet (`grove::sleep`, `spawn`)
//! panic there, while those that work from plain threads (joins, queues, events) block it.

use std::any::Any;
use std::collections::VecDeque;
use std::error::Error;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
#[cfg(not(grove_loom))]
use std::sync::LazyLock;
use std::sync::{Arc, PoisonError};
use std::task::Waker;

use crate::loom::{thread, Condvar, HelperThread, Mutex};
use std::time::{Duration, Instant};

/// Default bound on the threads of the process-wide pool (tokio's is 512 as well).
///
/// Override it with the `GROVE_BLOCKING_THREADS` environment variable (read once, on the
/// pool's first use; a value that is not a positive integer is ignored).
pub const DEFAULT_MAX_THREADS: usize = 512;

/// Default time an idle pool thread waits for a job before it exits.
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send + 'static>;

// Jobs never run under these locks, so a poisoned lock only means a panic in our own few
// lines; the state is still consistent: the primitives' one helper serves.
use crate::waitlist::lock;

/// Runs `f` on the process-wide blocking pool and returns a handle to its result.
///
/// The handle's [`join`](BlockingHandle::join) parks a greenlet (its worker runs others)
/// or blocks a plain thread. Works anywhere: in a greenlet, on a plain thread, with or
/// without a grove runtime. A panic in `f` comes back as a [`BlockingError`] carrying the
/// payload. Dropping the handle detaches the job: it still runs, its result is dropped.
///
/// ```
/// use grove::blocking::spawn_blocking;
///
/// // From a plain thread (no runtime needed): join blocks it.
/// assert_eq!(spawn_blocking(|| 6 * 7).join().unwrap(), 42);
/// let err = spawn_blocking(|| panic!("boom")).join().unwrap_err();
/// assert_eq!(err.into_panic().downcast_ref::<&str>(), Some(&"boom"));
/// ```
#[cfg(not(grove_loom))]
pub fn spawn_blocking<F, T>(f: F) -> BlockingHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    GLOBAL.spawn(f)
}

#[cfg(not(grove_loom))]
static GLOBAL: LazyLock<BlockingPool> = LazyLock::new(|| {
    let max = std::env::var("GROVE_BLOCKING_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_MAX_THREADS);
    BlockingPool::builder().max_threads(max).build()
});

/// The process-wide pool used by [`spawn_blocking`] (to read its counters).
#[cfg(not(grove_loom))]
pub fn global() -> &'static BlockingPool {
    &GLOBAL
}

/// Configures a [`BlockingPool`].
///
/// ```
/// use std::time::Duration;
/// let pool = grove::blocking::BlockingPool::builder()
///     .max_threads(4)
///     .keep_alive(Duration::from_millis(100))
///     .build();
/// assert_eq!(pool.max_threads(), 4);
/// ```
#[derive(Debug, Clone)]
pub struct BlockingPoolBuilder {
    max_threads: usize,
    keep_alive: Duration,
    name: String,
    stack_size: Option<usize>,
}

impl Default for BlockingPoolBuilder {
    fn default() -> Self {
        BlockingPoolBuilder {
            max_threads: DEFAULT_MAX_THREADS,
            keep_alive: DEFAULT_KEEP_ALIVE,
            name: "grove-blocking".to_owned(),
            stack_size: None,
        }
    }
}

impl BlockingPoolBuilder {
    /// At most this many threads at once (at least 1); default [`DEFAULT_MAX_THREADS`].
    pub fn max_threads(mut self, n: usize) -> Self {
        self.max_threads = n.max(1);
        self
    }

    /// How long an idle thread waits for a job before exiting; default
    /// [`DEFAULT_KEEP_ALIVE`]. Any duration is accepted: one past the end of `Instant`'s
    /// range (e.g. [`Duration::MAX`]) keeps idle threads for ever.
    pub fn keep_alive(mut self, d: Duration) -> Self {
        self.keep_alive = d;
        self
    }

    /// The name of the pool's threads; default `grove-blocking`. A name the OS cannot
    /// take (one with a NUL byte) means no thread can start: jobs are then cancelled
    /// (see [`BlockingError::is_cancelled`]) and the reason is printed on stderr.
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Stack size of the pool's threads; default: std's (2 MiB unless `RUST_MIN_STACK`).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// Creates the pool. No thread starts until the first job.
    pub fn build(self) -> BlockingPool {
        BlockingPool {
            owner: Arc::new(Owner {
                shared: Arc::new(Shared {
                    state: Mutex::new(State::default()),
                    cond: Condvar::new(),
                    config: self,
                }),
            }),
        }
    }
}

/// A bounded, lazily grown pool of threads for blocking calls.
///
/// Most code uses the process-wide one through [`spawn_blocking`]. Cheap to clone: clones
/// share the pool. Dropping the last clone lets the threads finish the queued jobs and
/// exit (see the module's `# Shutdown`).
#[derive(Clone)]
pub struct BlockingPool {
    owner: Arc<Owner>,
}

/// Held only by [`BlockingPool`] handles: its drop starts the pool's shutdown. The threads
/// hold `Shared` directly, so they do not keep the pool alive.
struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        lock(&self.shared.state).shutdown = true;
        self.shared.cond.notify_all();
    }
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
    config: BlockingPoolBuilder,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// Threads alive (or being spawned).
    threads: usize,
    /// Threads waiting for a job and not yet claimed.
    idle: usize,
    /// Idle threads claimed by a submitter: signalled, not yet awake.
    notified: usize,
    shutdown: bool,
}

impl fmt::Debug for BlockingPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.owner.shared.state);
        f.debug_struct("BlockingPool")
            .field("max_threads", &self.owner.shared.config.max_threads)
            .field("threads", &st.threads)
            .field("idle", &st.idle)
            .field("queued", &st.queue.len())
            .finish()
    }
}

impl BlockingPool {
    /// A builder with the defaults.
    pub fn builder() -> BlockingPoolBuilder {
        BlockingPoolBuilder::default()
    }

    /// The bound on this pool's threads.
    pub fn max_threads(&self) -> usize {
        self.owner.shared.config.max_threads
    }

    /// Threads alive now (running a job, idle, or starting).
    pub fn threads(&self) -> usize {
        lock(&self.owner.shared.state).threads
    }

    /// Threads waiting for a job now.
    pub fn idle_threads(&self) -> usize {
        let st = lock(&self.owner.shared.state);
        st.idle + st.notified
    }

    /// Jobs waiting for a free thread.
    pub fn queued(&self) -> usize {
        lock(&self.owner.shared.state).queue.len()
    }

    /// Runs `f` on one of this pool's threads; see [`spawn_blocking`].
    pub fn spawn<F, T>(&self, f: F) -> BlockingHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState {
                outcome: None,
                waker: None,
            }),
        });
        let completer = Completer {
            slot: Some(slot.clone()),
        };
        let job: Job = Box::new(move || {
            let outcome = catch_unwind(AssertUnwindSafe(f)).map_err(BlockingError::panicked);
            completer.complete(outcome);
        });
        self.submit(job);
        BlockingHandle { slot }
    }

    /// Protocol steps 1–4 of submission.
    fn submit(&self, job: Job) {
        let shared = &self.owner.shared;
        let mut st = lock(&shared.state);
        st.queue.push_back(job);
        if st.idle > 0 {
            st.idle -= 1;
            st.notified += 1;
            drop(st);
            shared.cond.notify_one();
            return;
        }
        // Threads already woken for earlier jobs that a busy thread took first are still on
        // their way and will find this one: starting another thread would only add an idler.
        if st.notified >= st.queue.len() || st.threads >= shared.config.max_threads {
            return;
        }
        st.threads += 1;
        drop(st);
        if let Err(e) = spawn_thread(shared.clone()) {
            let mut st = lock(&shared.state);
            st.threads -= 1;
            if st.threads == 0 {
                // Nobody left to run the queue: drop the jobs (outside the lock), which
                // resolves their handles as cancelled.
                let dropped = std::mem::take(&mut st.queue);
                drop(st);
                report(format_args!(
                    "grove: blocking pool cannot start a thread: {e}"
                ));
                for job in dropped {
                    drop_contained("a blocking job that never ran", job);
                }
            }
        }
    }
}

fn spawn_thread(shared: Arc<Shared>) -> std::io::Result<()> {
    let name = shared.config.name.clone();
    if name.contains('\0') {
        // std would panic in the submitter (`spawn` of a thread so named): an error instead.
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("the thread name {name:?} contains a NUL byte"),
        ));
    }
    let mut b = thread::Builder::new().name(name);
    if let Some(size) = shared.config.stack_size {
        b = b.stack_size(size);
    }
    // Any other panic of std's on a configuration it cannot start a thread with counts
    // as failing to start one, so the pool's thread count stays right.
    catch_unwind(AssertUnwindSafe(move || {
        b.spawn(move || pool_thread(&shared)).map(drop)
    }))
    .unwrap_or_else(|_| Err(std::io::Error::other("starting a thread panicked")))
}

/// The pool thread's loop (see "Pool thread" in the module docs).
fn pool_thread(shared: &Shared) {
    // Idle, this thread waits with a timeout (its keep-alive) and wakes nobody when that
    // expires; registering says so to grove's deadlock detection, which would otherwise
    // take any timed wait for a possible future wake-up and stand down.
    let helper = HelperThread::register();
    let keep_alive = shared.config.keep_alive;
    let mut st = lock(&shared.state);
    'work: loop {
        while let Some(job) = st.queue.pop_front() {
            drop(st);
            // A job catches its own panic and contains the drop of its outcome; this is
            // the backstop that keeps the thread (and so the pool's thread count) alive
            // whatever else a job's user code does (the drop of its closure, say).
            contain(&format_args!("running a blocking job"), job);
            st = lock(&shared.state);
        }
        if st.shutdown {
            break;
        }
        st.idle += 1;
        helper.set_busy(false);
        // `None`: a keep-alive past the end of `Instant`'s range, i.e. for ever.
        let deadline = Instant::now().checked_add(keep_alive);
        loop {
            st = match deadline {
                Some(d) => {
                    let wait = d.saturating_duration_since(Instant::now());
                    shared
                        .cond
                        .wait_timeout(st, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => shared.cond.wait(st).unwrap_or_else(PoisonError::into_inner),
            };
            if st.notified > 0 {
                // Claimed by a submitter, which already uncounted us as idle.
                st.notified -= 1;
                helper.set_busy(true);
                continue 'work;
            }
            if st.shutdown || deadline.is_some_and(|d| Instant::now() >= d) {
                st.idle -= 1;
                if st.shutdown {
                    helper.set_busy(true);
                    continue 'work; // run what is queued, then leave
                }
                break 'work;
            }
            // Spurious wake-up: keep waiting.
        }
    }
    st.threads -= 1;
}

/// A job's outcome, or the waker of its joiner.
struct Slot<T> {
    state: Mutex<SlotState<T>>,
}

struct SlotState<T> {
    outcome: Option<Result<T, BlockingError>>,
    waker: Option<Waker>,
}

/// The job's side of the slot. Completes it exactly once: with the outcome, or, if the job
/// is dropped unrun (pool shut down or out of threads), as cancelled.
struct Completer<T> {
    slot: Option<Arc<Slot<T>>>,
}

impl<T> Completer<T> {
    fn complete(mut self, outcome: Result<T, BlockingError>) {
        if let Some(slot) = self.slot.take() {
            finish(&slot, outcome);
            // If the handle is gone (a detached job), this drops the outcome: user code.
            drop_contained("the result of a detached blocking job", slot);
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            finish(&slot, Err(BlockingError::cancelled()));
        }
    }
}

/// Drops `value` (user code: a job's result or closure, a panic payload) on a pool
/// thread or in the pool's own bookkeeping, containing a panic: it is reported on
/// stderr and goes no further, so it can neither kill a pool thread nor skip the pool's
/// accounting. A panic payload whose own `Drop` panics is leaked rather than dropped.
fn drop_contained<V>(what: &str, value: V) {
    contain(&format_args!("dropping {what}"), move || drop(value));
}

/// Runs `f`, containing a panic the way [`drop_contained`] does; `doing` says what `f`
/// was doing, for the report.
fn contain(doing: &fmt::Arguments<'_>, f: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        let msg = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("<non-string panic payload>")
            .to_owned();
        std::mem::forget(payload);
        report(format_args!(
            "grove: {doing} panicked: {msg}; the panic was contained"
        ));
    }
}

/// Writes one line to stderr, ignoring failures (a closed stderr must not panic a pool
/// thread the way `eprintln!` would).
fn report(line: fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Job step 1: store the outcome, wake the joiner outside the lock.
fn finish<T>(slot: &Slot<T>, outcome: Result<T, BlockingError>) {
    let mut st = lock(&slot.state);
    st.outcome = Some(outcome);
    let waker = st.waker.take();
    drop(st);
    if let Some(w) = waker {
        w.wake();
    }
}

/// The handle to a job on a blocking pool: [`join`](Self::join) it for the result.
///
/// Dropping it detaches the job (it still runs; its result is dropped).
#[must_use = "dropping the handle detaches the job; join it to get the result"]
pub struct BlockingHandle<T> {
    slot: Arc<Slot<T>>,
}

impl<T> fmt::Debug for BlockingHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Removes the joiner's waker from the slot however the wait ends (join step 3).
struct WakerGuard<'a, T>(&'a Slot<T>);

impl<T> Drop for WakerGuard<'_, T> {
    fn drop(&mut self) {
        let w = lock(&self.0.state).waker.take();
        drop(w);
    }
}

impl<T> BlockingHandle<T> {
    /// Waits for the job and returns its value, or the error carrying its panic payload.
    ///
    /// Parks a greenlet (its worker runs others); blocks a plain thread. A kill or
    /// [`Timeout`](grove_scheduler::Timeout) unwinds a parked joiner cleanly; the job keeps
    /// running and its result is dropped.
    pub fn join(self) -> Result<T, BlockingError> {
        match self.join_until(None) {
            Some(outcome) => outcome,
            None => unreachable!("a join without deadline returned without an outcome"),
        }
    }

    /// Like [`join`](Self::join), waiting at most `timeout`; gives the handle back if the
    /// job is still running (as [`JoinHandle::join_timeout`](grove_scheduler::JoinHandle::join_timeout)).
    pub fn join_timeout(
        self,
        timeout: Duration,
    ) -> Result<Result<T, BlockingError>, BlockingHandle<T>> {
        let deadline = Instant::now().checked_add(timeout);
        match self.join_until(deadline) {
            Some(outcome) => Ok(outcome),
            None => Err(self),
        }
    }

    /// True once the job has finished (or was cancelled); `join` will not wait.
    pub fn is_finished(&self) -> bool {
        lock(&self.slot.state).outcome.is_some()
    }

    /// Join step 2: `None` only if `deadline` passed first.
    fn join_until(&self, deadline: Option<Instant>) -> Option<Result<T, BlockingError>> {
        let _guard = WakerGuard(&self.slot);
        loop {
            {
                let mut st = lock(&self.slot.state);
                if let Some(outcome) = st.outcome.take() {
                    return Some(outcome);
                }
                let waker = crate::loom::current_waker();
                if !st.waker.as_ref().is_some_and(|w| w.will_wake(&waker)) {
                    st.waker = Some(waker);
                }
            }
            match deadline {
                None => crate::loom::park_on(grove_scheduler::WaitReason::BLOCKING_JOIN),
                Some(d) if Instant::now() >= d => return None,
                Some(d) => {
                    crate::loom::park_until_on(d, grove_scheduler::WaitReason::BLOCKING_JOIN)
                }
            }
        }
    }
}

/// Why a blocking job produced no value: it panicked (the payload is here), or it never
/// ran (its pool shut down or could not start a thread).
pub struct BlockingError {
    panic: Option<Box<dyn Any + Send + 'static>>,
}

impl BlockingError {
    fn panicked(payload: Box<dyn Any + Send + 'static>) -> BlockingError {
        BlockingError {
            panic: Some(payload),
        }
    }

    fn cancelled() -> BlockingError {
        BlockingError { panic: None }
    }

    /// True if the job panicked.
    pub fn is_panic(&self) -> bool {
        self.panic.is_some()
    }

    /// True if the job never ran.
    pub fn is_cancelled(&self) -> bool {
        self.panic.is_none()
    }

    /// The panic payload, or the error back if the job did not panic.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, BlockingError> {
        match self.panic {
            Some(p) => Ok(p),
            None => Err(self),
        }
    }

    /// The panic payload (resume it with `std::panic::resume_unwind`). Panics if the job
    /// did not panic; see [`try_into_panic`](Self::try_into_panic).
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        match self.try_into_panic() {
            Ok(p) => p,
            Err(_) => panic!("BlockingError::into_panic: the job did not panic"),
        }
    }

    fn message(&self) -> Option<&str> {
        let p = self.panic.as_ref()?;
        p.downcast_ref::<&str>()
            .copied()
            .or_else(|| p.downcast_ref::<String>().map(String::as_str))
    }
}

impl fmt::Debug for BlockingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.panic, self.message()) {
            (None, _) => f.write_str("BlockingError::Cancelled"),
            (Some(_), Some(m)) => write!(f, "BlockingError::Panicked({m:?})"),
            (Some(_), None) => f.write_str("BlockingError::Panicked(..)"),
        }
    }
}

impl fmt::Display for BlockingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.panic, self.message()) {
            (None, _) => f.write_str("blocking job was cancelled before it ran"),
            (Some(_), Some(m)) => write!(f, "blocking job panicked: {m}"),
            (Some(_), None) => f.write_str("blocking job panicked"),
        }
    }
}

impl Error for BlockingError {}

impl From<BlockingError> for std::io::Error {
    /// An [`Other`](std::io::ErrorKind::Other) I/O error with the same message (the payload
    /// is dropped).
    fn from(e: BlockingError) -> std::io::Error {
        std::io::Error::other(e.to_string())
    }
}
