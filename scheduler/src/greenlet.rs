//! The greenlet API: spawning, joining, yielding, parking and blocking on futures.
//!
//! Waiting for a greenlet comes in two kinds (see "Completion" in `task`): the owner's
//! [`JoinHandle::join`] / [`join_timeout`](JoinHandle::join_timeout) use the header's
//! single joiner slot; every other wait (`kill`, `wait_timeout`, [`Greenlet::wait`],
//! `on_finish`) adds a link, so any number of observers can wait at once.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::Wake;
use std::task::{Context, Poll, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::deadlock;
use crate::delayed::DelayedSlot;
use crate::error::{JoinError, SpawnError};
use crate::shared::{check_stack_size, Handle, Shared};
use crate::stack::GreenStack;
use crate::task::{report_unjoined, Header, JoinTarget, Link, Suspend, Task, TaskRef, NO_HOME};
use crate::timers::Timers;
use crate::wait_reason::WaitReason;
use crate::worker::{
    checkpoint, kill, not_in_runtime, suspend_current, suspend_current_nounwind, with_local, Side,
};

/// Greenlet ids are unique in the process, starting at 1.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Options for one greenlet: a name for diagnostics and a stack size.
///
/// ```
/// let rt = grove::Runtime::builder().workers(1).build().unwrap();
/// let h = grove::greenlet::GreenletBuilder::new()
///     .name("conn-7")
///     .spawn_on(rt.handle(), || grove::current().name().map(str::to_owned));
/// assert_eq!(h.join().unwrap().as_deref(), Some("conn-7"));
/// ```
#[derive(Debug, Default, Clone)]
pub struct GreenletBuilder {
    name: Option<String>,
    stack_size: Option<usize>,
    spawned_at: Option<&'static Location<'static>>,
}

impl GreenletBuilder {
    /// Default options: no name, the runtime's stack size.
    pub fn new() -> GreenletBuilder {
        GreenletBuilder::default()
    }

    /// Names the greenlet (shown in panics, reports and `JoinError`).
    pub fn name(mut self, name: impl Into<String>) -> GreenletBuilder {
        self.name = Some(name.into());
        self
    }

    /// Records `at` as the greenlet's spawn site (shown by the monitor, run-info and
    /// panics) instead of the caller of `spawn`: for libraries that spawn on a user's
    /// behalf (a server's handlers), `at` being the user's call
    /// (`std::panic::Location::caller()` in a `#[track_caller]` function).
    pub fn spawned_at(mut self, at: &'static Location<'static>) -> GreenletBuilder {
        self.spawned_at = Some(at);
        self
    }

    /// A stack size for this greenlet only. Such a stack is allocated when the
    /// greenlet is spawned rather than taken from the worker's pool.
    pub fn stack_size(mut self, bytes: usize) -> GreenletBuilder {
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
        let (h, runnable) = self.prepare(handle, at, f);
        if runnable {
            submit(handle, h.task.clone().as_runnable());
        }
        h
    }

    /// Creates the greenlet, with its own stack if a size was given. Returns it and
    /// whether it can run; if not (no stack), its handle is already resolved.
    fn prepare<F, T>(
        self,
        handle: &Handle,
        at: &'static Location<'static>,
        f: F,
    ) -> (JoinHandle<T>, bool)
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        handle.shared.check_owner("grove::spawn");
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
                    return (h, false);
                }
            },
            None => None,
        };
        (self.create(handle, at, stack, f), true)
    }

    /// Spawns on the current runtime, to start once `delay` has passed (gevent's
    /// `spawn_later`). Panics outside a runtime, or on one without timers (the `grove`
    /// facade always has them). See [`spawn_later`](crate::spawn_later).
    #[track_caller]
    pub fn spawn_later<F, T>(self, delay: Duration, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let at = Location::caller();
        with_local(|l| match l {
            Some(l) => self.spawn_later_at(&l.handle, at, delay, f),
            None => not_in_runtime("grove::spawn_later"),
        })
    }

    /// [`spawn_later`](Self::spawn_later) onto `handle`'s runtime, from any thread.
    #[track_caller]
    pub fn spawn_later_on<F, T>(self, handle: &Handle, delay: Duration, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_later_at(handle, Location::caller(), delay, f)
    }

    fn spawn_later_at<F, T>(
        self,
        handle: &Handle,
        at: &'static Location<'static>,
        delay: Duration,
        f: F,
    ) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if delay.is_zero() {
            return self.spawn_at(handle, at, f);
        }
        let timers = handle.shared.timers.clone().unwrap_or_else(|| {
            panic!("grove::spawn_later needs a runtime with timers (build it with grove::Runtime)")
        });
        let (h, runnable) = self.prepare(handle, at, f);
        if !runnable {
            return h;
        }
        Delayed::arm(
            h.task.clone().as_runnable(),
            handle.shared.clone(),
            timers,
            delay,
        );
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
            return Err(SpawnError::shutdown());
        }
        if handle.in_forked_child() {
            return Err(SpawnError::forked_child(format!(
                "this process (pid {}) is a fork() child of the one that built the runtime, \
                 whose threads do not exist here; build a new runtime in the child",
                std::process::id()
            )));
        }
        let size = self.stack_size.unwrap_or(handle.shared.stack_size);
        let stack = self
            .alloc_stack(handle, size)
            .map_err(|e| SpawnError::no_stack(e.to_string()))?;
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
        let at = self.spawned_at.unwrap_or(at);
        let header = Header::new(id, self.name.map(String::into_boxed_str), at, stack);
        JoinHandle {
            task: Task::new(header, f, handle.shared.clone()),
        }
    }
}

fn submit(handle: &Handle, task: TaskRef) {
    handle.shared.push_new(task);
}

/// A greenlet waiting for its `spawn_later` delay, not yet queued anywhere: the timer
/// holds the only strong reference (so a timer service that drops it unfired, at a
/// shutdown, cancels the greenlet), the kill hook a `Weak`. The hand-off between them is
/// `delayed::DelayedSlot` (loom-checked; its steps 0–4 are cited below).
struct Delayed {
    slot: DelayedSlot<TaskRef>,
    /// The runtime it is queued on when the delay ends.
    shared: Arc<Shared>,
    timers: Arc<dyn Timers>,
}

impl Delayed {
    fn arm(task: TaskRef, shared: Arc<Shared>, timers: Arc<dyn Timers>, delay: Duration) {
        // A delay too large to represent waits "forever" (until killed or shut down).
        let deadline = Instant::now()
            .checked_add(delay)
            .or_else(|| Instant::now().checked_add(Duration::from_secs(u64::from(u32::MAX))))
            .expect("grove::spawn_later: no representable deadline");
        let h = task.header();
        let delayed = Arc::new(Delayed {
            slot: DelayedSlot::new(),
            shared,
            timers: timers.clone(),
        });
        let weak: Weak<Delayed> = Arc::downgrade(&delayed);
        let hook = h.link(Link::OnKill(Box::new(move || {
            if let Some(d) = weak.upgrade() {
                d.start_now(true);
            }
        })));
        // Step 0.
        delayed.slot.store(task, hook);
        let key = timers.add(deadline, Waker::from(delayed.clone()));
        if !delayed.slot.timer_added(key) {
            // Fired at once: nothing left to time.
            timers.cancel(key);
        }
    }

    /// Steps 1–3: queue the greenlet now (by the timer, or by a kill that also cancels
    /// the timer).
    fn start_now(&self, by_kill: bool) {
        let Some(taken) = self.slot.take(by_kill) else {
            return;
        };
        if let Some(key) = taken.cancel_timer {
            self.timers.cancel(key);
        }
        if let Some(hook) = taken.unlink_hook {
            taken.task.header().unlink(hook);
        }
        self.shared.push_new(taken.task);
    }
}

impl Wake for Delayed {
    fn wake(self: Arc<Self>) {
        self.start_now(false);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.start_now(false);
    }
}

impl Drop for Delayed {
    fn drop(&mut self) {
        // Step 4.
        if let Some(task) = self.slot.leftover() {
            let h = task.header();
            task.cancel_unstarted(JoinError::shutdown(h.display_name()));
            if h.complete() {
                report_unjoined(&*task);
            }
        }
    }
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
    GreenletBuilder::new().spawn(f)
}

/// Spawns a greenlet, returning an error instead of failing later if no stack can
/// be had (the message names the limit to raise).
#[track_caller]
pub fn try_spawn<F, T>(f: F) -> Result<JoinHandle<T>, SpawnError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    GreenletBuilder::new().try_spawn(f)
}

/// Spawns a greenlet that starts once `delay` has passed (gevent's `spawn_later`).
///
/// Until then it is not queued anywhere and holds no worker (nor, unless a
/// [`GreenletBuilder::stack_size`] was given, a stack); when the delay passes it is
/// queued like a fresh spawn, so any worker may start it. Killing it before it starts
/// ([`JoinHandle::kill`]) cancels it at once: it never runs, its closure is dropped,
/// and its join reports [`JoinError::is_killed`]. A zero delay spawns at once.
///
/// Panics outside a runtime, or on a runtime without timers (the `grove` facade always
/// has them; the crate docs of `grove` show it in use).
#[track_caller]
pub fn spawn_later<F, T>(delay: Duration, f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    GreenletBuilder::new().spawn_later(delay, f)
}

/// Identifies an [`on_finish`](JoinHandle::on_finish) callback, to remove it with
/// [`unlink`](JoinHandle::unlink) (gevent's `unlink`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkId(u64);

/// Kills `task` without waiting (the shared body of every `kill_nowait`).
fn kill_task_nowait(task: TaskRef) {
    let h = task.header();
    if h.is_done() {
        return;
    }
    kill(&task);
    // A greenlet still waiting out its `spawn_later` delay is queued now, to die.
    for hook in h.take_kill_hooks() {
        hook();
    }
    if is_current(h) {
        // Raised here unless it must wait (step 5 of `interrupt`): then at the next
        // blocking point.
        let _ = checkpoint(h, Side::Before);
    }
}

/// Removes a wait's link however the wait ends (including by unwinding).
struct Unlink<'a> {
    h: &'a Header,
    id: u64,
}

impl Drop for Unlink<'_> {
    fn drop(&mut self) {
        self.h.unlink(self.id);
    }
}

/// Parks until `h` is finished or `deadline` (None: forever); true if finished. A
/// greenlet waiting for itself returns false at once (it cannot finish meanwhile).
/// Uses a link, so any number of observers may wait at once.
fn wait_linked(h: &Header, deadline: Option<Instant>) -> bool {
    if h.is_done() {
        return true;
    }
    if is_current(h) {
        return false;
    }
    let _unlink = Unlink {
        h,
        id: h.link(Link::Wake(current_waker())),
    };
    loop {
        if h.is_done() {
            return true;
        }
        match deadline {
            Some(d) if Instant::now() >= d => return false,
            Some(d) => park_until_on(d, WaitReason::GREENLET_WAIT),
            None => park_on(WaitReason::GREENLET_WAIT),
        }
    }
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
            park_on(WaitReason::JOIN);
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
        if self.wait_owner(deadline_after(timeout)) {
            Ok(self.join())
        } else {
            Err(self)
        }
    }
}

impl<T: 'static> JoinHandle<T> {
    /// Waits at most `timeout` for the greenlet to finish; true if it has.
    /// (From the greenlet itself, returns false at once: it cannot finish meanwhile.)
    ///
    /// Any number of greenlets may wait on one handle at once (through `&JoinHandle`).
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        wait_linked(self.task.header(), deadline_after(timeout))
    }

    /// Kills the greenlet (gevent's `Greenlet.kill`) and waits until it has finished:
    /// it unwinds from its current or next blocking point, destructors run, and its
    /// join reports [`JoinError::is_killed`]. A greenlet that never started never runs
    /// (including one still waiting out a [`spawn_later`] delay).
    /// A greenlet that never blocks again cannot be interrupted (as in gevent).
    ///
    /// Called on the current greenlet's own handle, it unwinds the caller at once.
    ///
    /// A destructor that panics during that unwinding: if grove runs it (a
    /// greenlet-local value, the closure of a greenlet that never started, a result
    /// nobody joins), the panic is reported on stderr naming the greenlet and contained.
    /// If it is a value on the greenlet's own stack, Rust aborts the process (a panic
    /// cannot escape a destructor during unwinding); grove's panic hook then names the
    /// greenlet before the abort. `tests/drop_panic.rs` shows both.
    pub fn kill(&self) {
        self.kill_nowait();
        wait_linked(self.task.header(), None);
    }

    /// [`kill`](Self::kill), waiting at most `timeout`; true if the greenlet finished.
    pub fn kill_timeout(&self, timeout: Duration) -> bool {
        self.kill_nowait();
        wait_linked(self.task.header(), deadline_after(timeout))
    }

    /// Asks for the greenlet to be killed and returns at once.
    pub fn kill_nowait(&self) {
        kill_task_nowait(self.task.clone().as_runnable());
    }

    /// `block_on`'s deadlock check (module `deadlock`): if this greenlet provably waits
    /// forever, interrupts it so it unwinds and its join reports the deadlock.
    pub(crate) fn interrupt_if_deadlocked(&self, timers: Option<&dyn Timers>) -> bool {
        let stuck = deadlock::is_deadlocked(self.task.header(), timers);
        if stuck {
            crate::worker::deadlock(&self.task.clone().as_runnable());
        }
        stuck
    }

    /// The owner's wait: parks on the joiner slot until finished or `deadline`.
    fn wait_owner(&self, deadline: Option<Instant>) -> bool {
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
                Some(d) => park_until_on(d, WaitReason::JOIN),
                None => park_on(WaitReason::JOIN),
            }
        }
    }

    /// Runs `f` once the greenlet has finished — returned, panicked, been killed, or
    /// been cancelled by a shutdown (gevent's `Greenlet.link`). If it has already
    /// finished, `f` runs right away on the caller.
    ///
    /// Any number of callbacks may be registered; each runs exactly once, unless
    /// [`unlink`](Self::unlink)ed first, in the order they were registered. `f` runs **off the greenlet's stack**, on the
    /// thread that completes it — normally its worker's hub, between two greenlets —
    /// after [`is_finished`](Self::is_finished) has become true. So `f` must be cheap
    /// and must not block: while it runs, no other greenlet of that worker runs, and a
    /// blocking call there blocks the worker thread itself (there is no greenlet to
    /// park). Set an `Event`, push to a queue, wake a waker, or spawn a greenlet for
    /// real work. A panic in `f` is caught and reported on stderr; the worker survives.
    /// `f` cannot take the greenlet's output: that belongs to the handle's owner.
    ///
    /// ```
    /// use std::sync::mpsc;
    ///
    /// let rt = grove::Runtime::builder().workers(2).build().unwrap();
    /// let (tx, rx) = mpsc::channel();
    /// let h = rt.spawn(|| 6 * 7);
    /// h.on_finish(move || tx.send("finished").unwrap());
    /// assert_eq!(rx.recv().unwrap(), "finished");
    /// assert!(h.is_finished());
    /// assert_eq!(h.join().unwrap(), 42);
    /// ```
    pub fn on_finish(&self, f: impl FnOnce() + Send + 'static) -> LinkId {
        LinkId(self.task.header().link(Link::Call(Box::new(f))))
    }

    /// Removes a callback added by [`on_finish`](Self::on_finish) on this greenlet.
    /// Returns `true` if it was removed before running, `false` if it has run (or is
    /// running, or was never this greenlet's).
    pub fn unlink(&self, id: LinkId) -> bool {
        self.task.header().unlink(id.0)
    }

    /// A shareable reference to the greenlet (to kill it, wait for it or link to it
    /// from elsewhere; only the handle can take its output).
    pub fn greenlet(&self) -> Greenlet {
        Greenlet {
            task: self.task.clone().as_runnable(),
        }
    }

    /// True if this is the handle of the greenlet running on this thread.
    pub(crate) fn is_current(&self) -> bool {
        is_current(self.task.header())
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
            report_unjoined(&*self.task);
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
            NO_HOME => None,
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

    /// True once the greenlet has finished.
    pub fn is_finished(&self) -> bool {
        self.task.header().is_done()
    }

    /// Waits until the greenlet has finished, without taking its output (gevent's
    /// `Greenlet.join` without `get`). Any number of greenlets may wait at once.
    /// From the greenlet itself this would wait forever; it panics instead.
    pub fn wait(&self) {
        let h = self.task.header();
        if !h.is_done() && is_current(h) {
            panic!(
                "Greenlet::wait: greenlet '{}' waited for itself",
                h.display_name()
            );
        }
        wait_linked(h, None);
    }

    /// Waits at most `timeout`; true if the greenlet has finished. (From the greenlet
    /// itself, returns false at once.)
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        wait_linked(self.task.header(), deadline_after(timeout))
    }

    /// Waits until `deadline` at the latest (`None`: no limit); true if finished.
    pub fn wait_deadline(&self, deadline: Option<Instant>) -> bool {
        wait_linked(self.task.header(), deadline)
    }

    /// [`JoinHandle::kill`]: kills it and waits until it has finished.
    pub fn kill(&self) {
        self.kill_nowait();
        wait_linked(self.task.header(), None);
    }

    /// [`JoinHandle::kill_timeout`].
    pub fn kill_timeout(&self, timeout: Duration) -> bool {
        self.kill_nowait();
        wait_linked(self.task.header(), deadline_after(timeout))
    }

    /// [`JoinHandle::kill_nowait`].
    pub fn kill_nowait(&self) {
        kill_task_nowait(self.task.clone());
    }

    /// [`JoinHandle::on_finish`]: runs `f` once the greenlet has finished, off its
    /// stack; the same rules apply (cheap, never blocking).
    pub fn on_finish(&self, f: impl FnOnce() + Send + 'static) -> LinkId {
        LinkId(self.task.header().link(Link::Call(Box::new(f))))
    }

    /// [`JoinHandle::unlink`].
    pub fn unlink(&self, id: LinkId) -> bool {
        self.task.header().unlink(id.0)
    }

    /// True if this is the greenlet running on this thread.
    pub fn is_current(&self) -> bool {
        is_current(self.task.header())
    }
}

impl PartialEq for Greenlet {
    /// Same greenlet.
    fn eq(&self, other: &Greenlet) -> bool {
        self.id() == other.id()
    }
}

impl Eq for Greenlet {}

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
    if !suspend_current(Suspend::Yield, std::ptr::null_mut()) {
        thread::yield_now();
    }
}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Cancels a timer when dropped (including when a wait is unwound by an interrupt).
struct TimerGuard {
    timers: Arc<dyn Timers>,
    key: crate::TimerKey,
}

impl Drop for TimerGuard {
    fn drop(&mut self) {
        self.timers.cancel(self.key);
    }
}

/// Like [`park`], but also wakes once `timeout` has passed. Returns after a wake or once
/// the time is up (wakes may be spurious: callers re-check their condition and the clock).
/// In a greenlet this needs a runtime with timers (`grove::Runtime`); on a plain thread it
/// uses `std::thread::park_timeout`. A timeout too large to represent waits like [`park`].
pub fn park_timeout(timeout: Duration) {
    park_timeout_inner(timeout, std::ptr::null_mut());
}

/// Like [`park`], but also wakes at `deadline`: [`park_timeout`] with an [`Instant`].
pub fn park_until(deadline: Instant) {
    park_until_inner(deadline, std::ptr::null_mut());
}

/// [`park_timeout`], saying what the greenlet waits on (see [`park_on`]).
pub fn park_timeout_on(timeout: Duration, reason: WaitReason) {
    park_timeout_inner(timeout, reason.as_ptr());
}

/// [`park_until`], saying what the greenlet waits on (see [`park_on`]).
pub fn park_until_on(deadline: Instant, reason: WaitReason) {
    park_until_inner(deadline, reason.as_ptr());
}

fn park_timeout_inner(timeout: Duration, what: *mut &'static str) {
    match deadline_after(timeout) {
        Some(deadline) => park_until_inner(deadline, what),
        None => park_inner(what),
    }
}

/// The greenlet running on this thread and its runtime's timers, if any.
fn current_with_timers() -> Option<(TaskRef, Option<Arc<dyn Timers>>)> {
    with_local(|l| l.and_then(|l| Some((l.current()?, l.shared.timers.clone()))))
}

fn park_until_inner(deadline: Instant, what: *mut &'static str) {
    match current_with_timers() {
        Some((task, timers)) => {
            let timers = timers.unwrap_or_else(|| {
                panic!("a timeout needs a runtime with timers (build it with grove::Runtime)")
            });
            let key = timers.add(deadline, task.waker());
            let _guard = TimerGuard { timers, key };
            park_inner(what);
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
    park_inner(std::ptr::null_mut());
}

/// [`park`], saying what the greenlet waits on: run-info dumps
/// ([`Runtime::dump`](crate::Runtime::dump), [`run_info`](crate::run_info)) then show
/// a parked greenlet as waiting on `reason` rather than just "parked". grove's
/// primitives all do this, with the named [`WaitReason`]s; yours give their own with
/// [`WaitReason::custom`].
///
/// ```
/// use grove::greenlet::WaitReason;
///
/// const RECV: WaitReason = WaitReason::custom(&"my_channel::recv");
///
/// let rt = grove::Runtime::builder().workers(1).build().unwrap();
/// rt.block_on(|| {
///     let me = grove::greenlet::current();
///     let waker = grove::spawn(move || me.waker().wake());
///     grove::greenlet::park_on(RECV); // a dump now says "my_channel::recv"
///     waker.join().unwrap();
/// });
/// ```
pub fn park_on(reason: WaitReason) {
    park_inner(reason.as_ptr());
}

fn park_inner(what: *mut &'static str) {
    if !suspend_current(Suspend::Park, what) {
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
/// let rt = grove::Runtime::builder().workers(1).build().unwrap();
/// assert_eq!(rt.block_on(|| grove::block_on(async { 40 + 2 })), 42);
/// ```
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let waker = current_waker();
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        park_on(WaitReason::BLOCK_ON);
    }
}

/// Runs `f` with the current runtime's extension (see
/// [`RuntimeBuilder::extension`](crate::RuntimeBuilder::extension)), or `None` outside a
/// runtime.
pub fn with_extension<R>(f: impl FnOnce(Option<&(dyn Any + Send + Sync)>) -> R) -> R {
    with_local(|l| f(l.and_then(|l| l.shared.extension.as_deref())))
}

/// How a [`park_nounwind`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParkStatus {
    /// Woken, or the deadline passed (wakes may be spurious: re-check the condition and
    /// the clock).
    Woken,
    /// A kill, a [`Timeout`](crate::Timeout) or a deadlock interrupt is pending (or the
    /// runtime is shutting down). It was **not** delivered: it unwinds the greenlet at its
    /// next ordinary blocking point ([`park`], [`yield_now`], any grove primitive).
    Interrupted,
    /// Not called from a greenlet: nothing was done.
    NotGreenlet,
}

/// Parks the current greenlet like [`park_until_on`] (or [`park_on`] when `deadline` is
/// `None`), but **never unwinds**: an interrupt is reported as
/// [`ParkStatus::Interrupted`] and left pending instead of being raised.
///
/// This is the park for code called through a foreign (`extern "C"`) frame, which a
/// panic must not cross: `grove-monkey`'s libc hooks park here and turn `Interrupted`
/// into an error return. A pending interrupt returns `Interrupted` at once without
/// parking, so a caller that loops on it never waits.
///
/// ```
/// use grove_scheduler::{ParkStatus, WaitReason};
/// const EXAMPLE: WaitReason = WaitReason::custom(&"example");
///
/// let rt = grove_scheduler::Runtime::builder().workers(1).build().unwrap();
/// rt.block_on(|| {
///     let me = grove_scheduler::current();
///     let waker = grove_scheduler::spawn(move || me.waker().wake());
///     assert_eq!(grove_scheduler::park_nounwind(None, EXAMPLE), ParkStatus::Woken);
///     waker.join().unwrap();
///
///     // Killed while parked: reported, not raised; the next ordinary park raises it.
///     let victim = grove_scheduler::spawn(|| {
///         assert_eq!(grove_scheduler::park_nounwind(None, EXAMPLE), ParkStatus::Interrupted);
///         assert!(grove_scheduler::interrupt_pending());
///         grove_scheduler::park(); // the kill unwinds here
///     });
///     grove_scheduler::yield_now(); // let it park
///     victim.kill();
///     assert!(victim.join().unwrap_err().is_killed());
/// });
/// assert_eq!(grove_scheduler::park_nounwind(None, EXAMPLE), ParkStatus::NotGreenlet);
/// ```
pub fn park_nounwind(deadline: Option<Instant>, reason: WaitReason) -> ParkStatus {
    let Some((task, timers)) = current_with_timers() else {
        return ParkStatus::NotGreenlet;
    };
    let _guard = match deadline {
        Some(d) => {
            let Some(timers) = timers else {
                // A runtime without timers cannot honour a deadline: report it as passed
                // rather than panic through a foreign frame.
                return ParkStatus::Woken;
            };
            let key = timers.add(d, task.clone().waker());
            Some(TimerGuard { timers, key })
        }
        None => None,
    };
    drop(task);
    match suspend_current_nounwind(Suspend::Park, reason.as_ptr()) {
        None => ParkStatus::NotGreenlet,
        Some(true) => ParkStatus::Interrupted,
        Some(false) => ParkStatus::Woken,
    }
}

/// True if the current greenlet has an interrupt (kill, [`Timeout`](crate::Timeout),
/// deadlock) pending that its next blocking point will raise; false off a greenlet.
pub fn interrupt_pending() -> bool {
    with_local(|l| {
        l.and_then(|l| l.current())
            .is_some_and(|t| t.header().interrupt.load() != 0)
    })
}

/// [`in_greenlet`], async-signal-safe: it reads one thread-local and one atomic (no
/// `RefCell` borrow, no lock), so a signal handler, or a libc hook a handler may call,
/// can ask it (`grove-monkey`'s hooks do).
///
/// ```
/// assert!(!grove_scheduler::in_greenlet_signal_safe());
/// let rt = grove_scheduler::Runtime::builder().workers(1).build().unwrap();
/// assert!(rt.block_on(grove_scheduler::in_greenlet_signal_safe));
/// ```
pub fn in_greenlet_signal_safe() -> bool {
    crate::worker::greenlet_running_here()
}
