//! The runtime's shared core: what every worker, every handle and every wake of one
//! runtime reaches.
//!
//! [`Shared`] wraps the hub core's queues ([`Core`], generic, in `hub`) with what the
//! runtime adds around them: the stack allocator, the owner's hooks (timers, driver), the
//! counters, the registries of started greenlets, the blocking monitor's state, the
//! shutdown deadline and the fork check. Nothing here runs a greenlet: the worker
//! (`worker`) does, and the public face (`runtime`) builds and stops it.
//!
//! [`Handle`] is the public name of an `Arc<Shared>`; the layers above add its methods
//! (spawning in `runtime::handle`).

use std::any::Any;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::driver::Driver;
use crate::error::JoinError;
use crate::hub::{Core, Job, Remote};
use crate::loom::lock;
use crate::monitor::stall::{Monitor, StallReport};
use crate::spotlight::Spotlight;
use crate::stack::{GuardMode, StackAllocator};
use crate::task::{Header, TaskRef};
use crate::timers::Timers;

/// Default usable stack size of a greenlet: 256 KiB of address space, of which only
/// the pages actually touched cost memory.
pub const DEFAULT_STACK_SIZE: usize = 256 * 1024;
// Defined once, beside the allocator that rounds every request up to it.
pub use crate::stack::MIN_STACK_SIZE;
/// Largest stack a greenlet may be given.
pub const MAX_STACK_SIZE: usize = 1 << 30;
/// Default of [`RuntimeBuilder::shutdown_grace`](crate::RuntimeBuilder::shutdown_grace).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How much longer than its timeout [`Runtime::shutdown_timeout`](crate::Runtime::shutdown_timeout)
/// waits for the hubs, which abandon what is left when the timeout ends and then exit.
pub const EXIT_MARGIN: Duration = Duration::from_millis(250);

/// Refuses a stack size outside [`MIN_STACK_SIZE`]`..=`[`MAX_STACK_SIZE`].
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

/// This process's id, kept current across `fork` by a `pthread_atfork` child handler
/// (see [`Shared::check_owner`]); 0 until the first runtime is built.
static PID: AtomicU32 = AtomicU32::new(0);

/// The calling process's id: one relaxed load (no `getpid` syscall on the spawn path).
/// Registers the `fork` handler on first use.
pub(crate) fn current_pid() -> u32 {
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

impl Job for TaskRef {
    fn is_started(&self) -> bool {
        self.header().home.load(Ordering::Relaxed) != crate::task::NO_HOME
    }

    #[inline]
    fn prefetch_far(&self) {
        // Every `Runnable` starts with its header (`Runnable::header`): the object's
        // address is the header's, computed here without reading through it.
        crate::task::Header::prefetch(Arc::as_ptr(self).cast());
    }

    #[inline]
    fn prefetch_near(&self) {
        self.header().prefetch_resume();
    }
}

/// What the runtime keeps per worker beside the hub core's queues (`Remote::data`).
#[derive(Debug, Default)]
pub(crate) struct PerWorker {
    pub(crate) counters: Arc<Counters>,
    /// Started greenlets homed here that have suspended (see `run_info`).
    pub(crate) registry: Mutex<Registry>,
}

/// The hub core's per-worker slot, as the runtime fills it.
pub(crate) type WorkerSlot = Remote<TaskRef, PerWorker>;

/// State shared by all workers of a runtime, its handles and its greenlets' wakes.
///
/// Aligned to 128 bytes (two cache lines) so that, inside its `Arc`, the fields start on
/// their own lines: every greenlet holds a reference (`Task`'s scheduler), so the `Arc`'s
/// counts change on every spawn and every finish, from every worker, while the hubs read
/// `core`, `stacks` and the hooks just as often.
#[repr(align(128))]
pub(crate) struct Shared {
    /// The queues, idle counters and shutdown gate (see `hub`).
    pub(crate) core: Arc<Core<TaskRef, PerWorker>>,
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
    pub(crate) readers: Mutex<()>,
    /// How long hubs wait for greenlets that block while being unwound at shutdown
    /// (see `RuntimeBuilder::shutdown_grace`).
    pub(crate) grace: Duration,
    /// When the hubs give up on such greenlets; set by the first `begin_shutdown`.
    pub(crate) deadline: Mutex<Option<Option<Instant>>>,
    /// The process that built the runtime (see [`Shared::check_owner`]); 0 if unknown.
    pub(crate) pid: u32,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("workers", &self.workers().len())
            .field("live_greenlets", &self.live())
            .field("shutdown", &self.is_shutdown())
            .finish()
    }
}

impl Shared {
    /// Every worker's slot, by index.
    #[inline]
    pub(crate) fn workers(&self) -> &[WorkerSlot] {
        &self.core.workers
    }

    /// Greenlets spawned and not yet finished. Exact when the runtime is quiescent;
    /// approximate while greenlets are being spawned and finished concurrently.
    pub(crate) fn live(&self) -> usize {
        let (mut spawned, mut finished) = (
            self.outside_spawned.load(Ordering::Acquire),
            self.outside_finished.load(Ordering::Acquire),
        );
        for w in self.workers() {
            spawned += w.data.counters.spawned.load(Ordering::Acquire);
            finished += w.data.counters.finished.load(Ordering::Acquire);
        }
        spawned.saturating_sub(finished) as usize
    }

    /// Counts a spawn, in the current worker's counters if `worker` is one of ours (the
    /// caller runs on it), else in the shared outside counter.
    pub(crate) fn count_spawned(&self, worker: Option<usize>) {
        match worker {
            Some(i) => self.workers()[i].data.counters.bump_spawned(),
            None => {
                self.outside_spawned.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// Counts a finished greenlet, like [`count_spawned`](Self::count_spawned).
    pub(crate) fn count_finished(&self, worker: Option<usize>) {
        match worker {
            Some(i) => self.workers()[i].data.counters.bump_finished(),
            None => {
                self.outside_finished.fetch_add(1, Ordering::Release);
            }
        }
    }

    pub(crate) fn is_shutdown(&self) -> bool {
        self.core.is_shutdown()
    }

    /// When hubs stop waiting for greenlets being unwound (`None`: never).
    pub(crate) fn shutdown_deadline(&self) -> Option<Instant> {
        lock(&self.deadline).flatten()
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
    pub(crate) fn lock_readers(&self) -> MutexGuard<'_, ()> {
        lock(&self.readers)
    }

    /// Per-worker counters, by worker index.
    pub(crate) fn worker_metrics(&self) -> Vec<WorkerMetrics> {
        self.workers()
            .iter()
            .map(|w| {
                let c = &w.data.counters;
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

    /// A snapshot of the stacks (see [`StackMetrics`]).
    pub(crate) fn stack_metrics(&self) -> StackMetrics {
        let a = &self.stacks;
        let st = a.stats();
        StackMetrics {
            live: st.live,
            pooled: st.pooled,
            decommitted: st.decommitted,
            trim_pending: a.needs_trim(),
            mappings: st.mappings,
            bytes_reserved: st.bytes_reserved,
            guard_install: a.guard_mode() == GuardMode::Madvise,
        }
    }

    /// Queues a started greenlet on its home worker from another thread.
    #[inline]
    pub(crate) fn push_remote(&self, home: usize, task: TaskRef) {
        self.core.push_remote(home, task);
    }

    /// Drops a never-started greenlet, resolving its join with a shutdown error.
    /// `worker` is the index of the calling worker thread, if it is one of ours.
    pub(crate) fn cancel_unstarted(&self, worker: Option<usize>, t: TaskRef) {
        let h = t.header();
        t.cancel_unstarted(JoinError::shutdown(h.display_name()));
        self.count_finished(worker);
        h.complete();
    }

    /// Step 1 of `worker`'s "Shutdown". `grace` bounds how long hubs wait for greenlets
    /// that block while being unwound (`None`: the builder's `shutdown_grace`); the first
    /// call decides.
    pub(crate) fn begin_shutdown(&self, grace: Option<Duration>) {
        {
            let mut d = lock(&self.deadline);
            if d.is_none() {
                *d = Some(Instant::now().checked_add(grace.unwrap_or(self.grace)));
            }
        }
        self.core.close(|t| self.cancel_unstarted(None, t));
        if let Some(m) = &self.monitor {
            m.wake();
        }
    }

    /// The blocking monitor's reports (empty if it is off).
    pub(crate) fn stall_reports(&self) -> Vec<StallReport> {
        self.monitor.as_ref().map_or_else(Vec::new, |m| m.reports())
    }
}

/// Per-worker counters, readable from other threads.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) spawned: AtomicU64,
    pub(crate) run: AtomicU64,
    pub(crate) stolen: AtomicU64,
    pub(crate) parked: AtomicU64,
    pub(crate) woken_remote: AtomicU64,
    /// Greenlets that finished (or were cancelled) on this worker.
    pub(crate) finished: AtomicU64,
    /// The greenlet this worker is running (see `spotlight`). Next to `run`, which
    /// the hub also writes per resume: one cache line for both.
    pub(crate) spot: Spotlight<Header>,
    /// Started, unfinished greenlets homed here (gauge; see `worker::placement`).
    pub(crate) homed: AtomicUsize,
}

impl Counters {
    /// For counters with one writer (the worker itself): a relaxed load and store
    /// instead of a locked read-modify-write on the hot path.
    #[inline]
    pub(crate) fn bump(c: &AtomicU64) {
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// For counters any thread may bump (`woken_remote`).
    #[inline]
    pub(crate) fn bump_shared(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn bump_spawned(&self) {
        // Release: a reader that sees a later `finished` must see this spawn too.
        self.spawned
            .store(self.spawned.load(Ordering::Relaxed) + 1, Ordering::Release);
    }

    pub(crate) fn bump_finished(&self) {
        self.finished
            .store(self.finished.load(Ordering::Relaxed) + 1, Ordering::Release);
    }

    /// Adds `n` (wrapping: `usize::MAX` subtracts one) to the `homed` gauge, which only
    /// its worker writes: a plain load and store, no locked instruction.
    #[inline]
    pub(crate) fn homed_add(&self, n: usize) {
        self.homed.store(
            self.homed.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }
}

/// A cheap monotonic timestamp in nanoseconds, to within a few milliseconds: Linux's
/// `CLOCK_MONOTONIC_COARSE` (the last timer tick's time, one shared-page read) elsewhere
/// `Instant`. For the registry's "suspended since", where a precise clock read per first
/// park was a measurable share of a greenlet's cost.
pub(crate) fn coarse_nanos() -> u64 {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the
        // kernel supports since 2.6.32 (on failure `ts` stays zero: an age of "now").
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
        (ts.tv_sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec as u64)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The started, unfinished greenlets homed on one worker that have suspended at
/// least once, each with the time it first did.
///
/// Behind a mutex in the worker's slot ([`PerWorker`]) so that run-info dumps and the
/// monitor can list it; the hub locks it only at a greenlet's first suspension and at the
/// finish of a greenlet that had suspended (never per switch, never for a greenlet that
/// runs to completion in one go), so the lock is uncontended except while a dump copies
/// it.
#[derive(Default)]
pub(crate) struct Registry {
    /// Each entry with when it was made, in [`coarse_nanos`].
    slots: Vec<Option<(TaskRef, u64)>>,
    /// Indices of the `None` entries.
    free: Vec<usize>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("len", &(self.slots.len() - self.free.len()))
            .finish()
    }
}

impl Registry {
    pub(crate) fn insert(&mut self, t: TaskRef) -> usize {
        let entry = Some((t, coarse_nanos()));
        match self.free.pop() {
            Some(i) => {
                let slot: *mut Option<(TaskRef, u64)> = &mut self.slots[i];
                // SAFETY: `slot` points into `slots`, borrowed mutably here; the free list
                // holds only indices of `None` entries (`remove`), and `None` owns nothing,
                // so overwriting it without dropping leaks nothing. Writing rather than
                // assigning skips reading the old entry: a random slot of a large slab, a
                // cache miss that was most of this function's cost under 100k sleepers.
                unsafe { slot.write(entry) };
                // The next registration takes the next free slot: start loading it now, so
                // that its write does not hold up the unlock after it (a locked instruction
                // waits for earlier stores).
                if let Some(&next) = self.free.last() {
                    crate::task::prefetch_line(self.entry_addr(next));
                }
                i
            }
            None => {
                self.slots.push(entry);
                self.slots.len() - 1
            }
        }
    }

    /// The address of entry `i`, as a prefetch hint (`Header::slot_at`).
    pub(crate) fn entry_addr(&self, i: usize) -> usize {
        self.slots.as_ptr().wrapping_add(i) as usize
    }

    /// The registered greenlets, with when each first suspended (in [`coarse_nanos`]).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &(TaskRef, u64)> {
        self.slots.iter().flatten()
    }

    pub(crate) fn remove(&mut self, i: usize) -> Option<TaskRef> {
        let t = self.slots.get_mut(i)?.take();
        if t.is_some() {
            self.free.push(i);
        }
        t.map(|(t, _)| t)
    }

    pub(crate) fn drain(&mut self) -> Vec<TaskRef> {
        self.free.clear();
        self.slots.drain(..).flatten().map(|(t, _)| t).collect()
    }
}

/// A handle to a runtime: spawn onto it from any thread.
///
/// Cheap to clone and `Send`. Its spawning methods are in `runtime::handle`, beside
/// [`Runtime`](crate::Runtime); the ones here only read the runtime's state.
#[derive(Clone, Debug)]
pub struct Handle {
    pub(crate) shared: Arc<Shared>,
}

impl Handle {
    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.shared.workers().len()
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

    /// The value given to [`RuntimeBuilder::extension`](crate::RuntimeBuilder::extension),
    /// if any.
    pub fn extension(&self) -> Option<&Arc<dyn Any + Send + Sync>> {
        self.shared.extension.as_ref()
    }

    /// Per-worker scheduling counters, by worker index.
    pub fn worker_metrics(&self) -> Vec<WorkerMetrics> {
        self.shared.worker_metrics()
    }

    /// The blocking monitor's reports, oldest first (at most the last
    /// [`KEPT_REPORTS`](crate::monitor::KEPT_REPORTS)); empty if the monitor is off.
    pub fn stall_reports(&self) -> Vec<StallReport> {
        self.shared.stall_reports()
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
        self.shared.stack_metrics()
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
