//! The greenlet API: spawning, joining, yielding, parking and blocking on futures.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Wake;
use std::task::{Context, Poll, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::error::{JoinError, SpawnError};
use crate::runtime::{check_stack_size, Handle};
use crate::stack::GreenStack;
use crate::task::{Header, JoinTarget, Suspend, Task, TaskRef};
use crate::timers::Timers;
use crate::worker::{suspend_current, with_local};

/// Greenlet ids are unique in the process, starting at 1.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn not_in_runtime(what: &str) -> ! {
    panic!(
        "{what} must be called from a greenlet inside a grove runtime \
         (use grove::run, Runtime::block_on or Runtime::spawn to start one)"
    )
}

/// Options for one greenlet: a name for diagnostics and a stack size.
///
/// ```
/// let rt = grove_scheduler::Runtime::builder().workers(1).build().unwrap();
/// let h = grove_scheduler::Builder::new()
///     .name("conn-7")
///     .spawn_on(rt.handle(), || grove_scheduler::current().name().map(str::to_owned));
/// assert_eq!(h.join().unwrap().as_deref(), Some("conn-7"));
/// ```
#[derive(Debug, Default, Clone)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
}

impl Builder {
    /// Default options: no name, the runtime's stack size.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the greenlet (shown in panics, reports and `JoinError`).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// A stack size for this greenlet only. Such a stack is allocated when the
    /// greenlet is spawned rather than taken from the worker's pool.
    pub fn stack_size(mut self, bytes: usize) -> Builder {
        self.stack_size = Some(bytes);
        self
    }

    /// Spawns on the current runtime. Panics outside one (see [`try_spawn`](Self::try_spawn)).
    #[track_caller]
    pub fn spawn<F, T>(self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let at = Location::caller();
        // Borrow the worker's handle rather than cloning it: spawning is a hot path.
        with_local(|l| match l {
            Some(l) => self.spawn_at(&l.handle, at, f),
            None => not_in_runtime("grove::spawn"),
        })
    }

    /// Spawns on `handle`'s runtime from any thread.
    ///
    /// If the greenlet's stack cannot be allocated when it first runs, it does not
    /// run and its join reports [`JoinError::is_no_stack`]; use
    /// [`try_spawn_on`](Self::try_spawn_on) to learn that up front instead.
    #[track_caller]
    pub fn spawn_on<F, T>(self, handle: &Handle, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_at(handle, Location::caller(), f)
    }

    fn spawn_at<F, T>(self, handle: &Handle, at: &'static Location<'static>, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let stack = match self.stack_size {
            Some(size) => match self.alloc_stack(handle, size) {
                Ok(s) => Some(s),
                Err(e) => {
                    // Not runnable: resolve the handle at once with the reason.
                    let h = self.create(handle, at, None, f);
                    h.task.set_failed(JoinError::no_stack(
                        e.to_string(),
                        h.task.header().display_name(),
                    ));
                    if h.task.header().complete() {
                        unreachable!("fresh greenlet cannot be detached");
                    }
                    return h;
                }
            },
            None => None,
        };
        let h = self.create(handle, at, stack, f);
        submit(handle, h.task.clone().as_runnable());
        h
    }

    /// Spawns on the current runtime, reserving the greenlet's stack now so that
    /// failure is an error here rather than at first run. Panics outside a runtime.
    #[track_caller]
    pub fn try_spawn<F, T>(self, f: F) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match Handle::try_current() {
            Some(h) => self.try_spawn_on(&h, f),
            None => not_in_runtime("grove::try_spawn"),
        }
    }

    /// [`try_spawn`](Self::try_spawn) onto `handle`'s runtime, from any thread.
    #[track_caller]
    pub fn try_spawn_on<F, T>(self, handle: &Handle, f: F) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let at = Location::caller();
        if handle.is_shutdown() {
            return Err(SpawnError::new("the runtime is shutting down".into()));
        }
        let size = self.stack_size.unwrap_or(handle.shared.stack_size);
        let stack = self
            .alloc_stack(handle, size)
            .map_err(|e| SpawnError::new(e.to_string()))?;
        let h = self.create(handle, at, Some(stack), f);
        submit(handle, h.task.clone().as_runnable());
        Ok(h)
    }

    fn alloc_stack(
        &self,
        handle: &Handle,
        size: usize,
    ) -> Result<GreenStack, Box<dyn std::error::Error>> {
        check_stack_size(size)?;
        Ok(handle.shared.stacks.allocate(size)?)
    }

    fn create<F, T>(
        self,
        handle: &Handle,
        at: &'static Location<'static>,
        stack: Option<GreenStack>,
        f: F,
    ) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let header = Header::new(
            handle.shared.clone(),
            id,
            self.name.map(String::into_boxed_str),
            at,
            stack,
        );
        JoinHandle {
            task: Task::new(header, f),
        }
    }
}

fn submit(handle: &Handle, task: TaskRef) {
    handle.shared.push_new(task);
}

/// Spawns a greenlet on the current runtime.
///
/// Panics if called outside a grove runtime; use [`Runtime::spawn`](crate::Runtime::spawn)
/// or [`Handle::spawn`] from plain threads.
#[track_caller]
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new().spawn(f)
}

/// Spawns a greenlet, returning an error instead of failing later if no stack can
/// be had (the message names the limit to raise).
#[track_caller]
pub fn try_spawn<F, T>(f: F) -> Result<JoinHandle<T>, SpawnError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new().try_spawn(f)
}

/// An owned permission to join a greenlet and take its result.
///
/// Dropping it detaches the greenlet, which keeps running; if it then fails, a
/// one-line report goes to stderr (gevent's "... failed with ...").
pub struct JoinHandle<T: 'static> {
    task: Arc<dyn JoinTarget<T>>,
}

impl<T: 'static> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.task.header().fmt(f)
    }
}

impl<T: Send + 'static> JoinHandle<T> {
    /// Waits for the greenlet to finish and returns its value, or why there is none.
    /// Parks the calling greenlet, or blocks the calling OS thread.
    pub fn join(self) -> Result<T, JoinError> {
        let h = self.task.header();
        if !h.is_done() && is_current(h) {
            return Err(JoinError::self_join(h.display_name()));
        }
        while !h.is_done() {
            let waker = current_waker();
            if !h.register_joiner(&waker) {
                break;
            }
            park();
        }
        // SAFETY: DONE observed (Acquire) and `self` is the unique handle.
        let out = unsafe { self.task.take_output() };
        out.expect("JoinHandle::join: finished greenlet without output")
    }
}

impl<T: Send + 'static> JoinHandle<T> {
    /// Waits at most `timeout` for the greenlet to finish: `Ok` with what
    /// [`join`](Self::join) would return, or `Err(self)` (the greenlet keeps running
    /// and the handle can be joined later).
    pub fn join_timeout(self, timeout: Duration) -> Result<Result<T, JoinError>, JoinHandle<T>> {
        let h = self.task.header();
        if !h.is_done() && is_current(h) {
            return Ok(Err(JoinError::self_join(h.display_name())));
        }
        if self.wait_until(deadline_after(timeout)) {
            Ok(self.join())
        } else {
            Err(self)
        }
    }
}

impl<T: 'static> JoinHandle<T> {
    /// Waits at most `timeout` for the greenlet to finish; true if it has.
    /// (From the greenlet itself, returns false at once: it cannot finish meanwhile.)
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let h = self.task.header();
        if !h.is_done() && is_current(h) {
            return false;
        }
        self.wait_until(deadline_after(timeout))
    }

    /// Kills the greenlet (gevent's `Greenlet.kill`) and waits until it has finished:
    /// it unwinds from its current or next blocking point, destructors run, and its
    /// join reports [`JoinError::is_killed`]. A greenlet that never started never runs.
    /// A greenlet that never blocks again cannot be interrupted (as in gevent).
    ///
    /// Called on the current greenlet's own handle, it unwinds the caller at once.
    pub fn kill(&self) {
        self.kill_nowait();
        self.wait_until(None);
    }

    /// [`kill`](Self::kill), waiting at most `timeout`; true if the greenlet finished.
    pub fn kill_timeout(&self, timeout: Duration) -> bool {
        self.kill_nowait();
        self.wait_until(deadline_after(timeout))
    }

    /// Asks for the greenlet to be killed and returns at once.
    pub fn kill_nowait(&self) {
        let h = self.task.header();
        if h.is_done() {
            return;
        }
        crate::interrupt::kill(&self.task.clone().as_runnable());
        if is_current(h) {
            crate::interrupt::checkpoint(h);
        }
    }

    /// Parks until finished or `deadline` (None: forever); true if finished.
    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let h = self.task.header();
        loop {
            if h.is_done() {
                return true;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
            if !h.register_joiner(&current_waker()) {
                return true;
            }
            match deadline {
                Some(d) => park_timeout(d),
                None => park(),
            }
        }
    }

    /// True once the greenlet has finished (returned, panicked or been cancelled).
    pub fn is_finished(&self) -> bool {
        self.task.header().is_done()
    }

    /// The greenlet's process-unique id.
    pub fn id(&self) -> u64 {
        self.task.header().id
    }

    /// The greenlet's name, if it was given one.
    pub fn name(&self) -> Option<&str> {
        self.task.header().name.as_deref()
    }
}

impl<T: 'static> Drop for JoinHandle<T> {
    fn drop(&mut self) {
        let h = self.task.header();
        if h.detach() {
            // Finished before we were dropped and nobody took the output.
            crate::task::report_unjoined(&*self.task);
        }
    }
}

/// A reference to a greenlet, as returned by [`current`].
#[derive(Clone)]
pub struct Greenlet {
    task: TaskRef,
}

impl fmt::Debug for Greenlet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.task.header().fmt(f)
    }
}

impl Greenlet {
    /// Process-unique id.
    pub fn id(&self) -> u64 {
        self.task.header().id
    }

    /// Name given at spawn, if any.
    pub fn name(&self) -> Option<&str> {
        self.task.header().name.as_deref()
    }

    /// Index of the worker the greenlet lives on (once started it never moves).
    pub fn worker(&self) -> Option<usize> {
        match self.task.header().home.load(Ordering::Relaxed) {
            crate::task::NO_HOME => None,
            i => Some(i),
        }
    }

    /// Where it was spawned.
    pub fn spawned_at(&self) -> &'static Location<'static> {
        self.task.header().spawned_at
    }

    /// A waker that unparks this greenlet.
    pub fn waker(&self) -> Waker {
        self.task.clone().waker()
    }
}

/// The greenlet running on this thread. Panics outside a greenlet; see [`try_current`].
pub fn current() -> Greenlet {
    try_current().unwrap_or_else(|| not_in_runtime("grove::current"))
}

/// The greenlet running on this thread, or `None` on a plain thread.
pub fn try_current() -> Option<Greenlet> {
    with_local(|l| l.and_then(|l| l.current()).map(|task| Greenlet { task }))
}

/// Index of the worker running this code, or `None` off the runtime's threads.
pub fn worker_index() -> Option<usize> {
    with_local(|l| l.map(|l| l.index))
}

/// True when called from inside a greenlet.
pub fn in_greenlet() -> bool {
    with_local(|l| l.is_some_and(|l| l.with_current(|h| h.is_some())))
}

/// Lets every other runnable greenlet on this worker run once, then continues
/// (gevent's `sleep(0)`). On a plain thread it yields the thread to the OS.
pub fn yield_now() {
    if !suspend_current(Suspend::Yield) {
        thread::yield_now();
    }
}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Cancels a timer when dropped (including when a wait is unwound by an interrupt).
struct TimerGuard {
    timers: Arc<dyn Timers>,
    key: u128,
}

impl Drop for TimerGuard {
    fn drop(&mut self) {
        self.timers.cancel(self.key);
    }
}

/// Like [`park`], but also wakes at `deadline`. Returns after a wake or once the
/// deadline has passed (wakes may be spurious: callers re-check their condition and
/// the clock). In a greenlet this needs a runtime with timers (`grove::Runtime`);
/// on a plain thread it uses `std::thread::park_timeout`.
pub fn park_timeout(deadline: Instant) {
    match with_local(|l| l.and_then(|l| l.current())) {
        Some(task) => {
            let timers = task.header().rt.timers.clone().unwrap_or_else(|| {
                panic!("a timeout needs a runtime with timers (build it with grove::Runtime)")
            });
            let key = timers.add(deadline, task.waker());
            let _guard = TimerGuard { timers, key };
            park();
        }
        None => {
            let now = Instant::now();
            if deadline > now {
                thread::park_timeout(deadline - now);
            }
        }
    }
}

/// Gives up the worker until the current greenlet's waker is woken; on a plain
/// thread, parks the thread until its [`current_waker`] is woken.
///
/// This is the building block of every blocking primitive: register
/// [`current_waker`] with what you wait for, re-check the condition, then `park`;
/// loop, because wakes may be spurious.
pub fn park() {
    if !suspend_current(Suspend::Park) {
        thread::park();
    }
}

/// True if `h` is the greenlet running on this thread.
fn is_current(h: &Header) -> bool {
    with_local(|l| l.is_some_and(|l| l.with_current(|c| c.is_some_and(|c| std::ptr::eq(c, h)))))
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    static THREAD_WAKER: Waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
}

/// A waker for whoever is running: the current greenlet, or this OS thread.
pub fn current_waker() -> Waker {
    match with_local(|l| l.and_then(|l| l.current())) {
        Some(task) => task.waker(),
        None => THREAD_WAKER.with(Waker::clone),
    }
}

/// Runs a future to completion, parking the current greenlet (or thread) while it
/// is pending: async code called from blocking-style code.
///
/// ```
/// let rt = grove_scheduler::Runtime::builder().workers(1).build().unwrap();
/// assert_eq!(rt.block_on(|| grove_scheduler::block_on(async { 40 + 2 })), 42);
/// ```
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let waker = current_waker();
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        park();
    }
}

/// Runs `f` with the current runtime's extension (see
/// [`Builder::extension`](crate::runtime::Builder::extension)), or `None` outside a runtime.
pub fn with_extension<R>(f: impl FnOnce(Option<&(dyn Any + Send + Sync)>) -> R) -> R {
    with_local(|l| f(l.and_then(|l| l.shared.extension.as_deref())))
}
