//! Creating a greenlet and queuing it: [`GreenletBuilder`], [`spawn`], [`try_spawn`],
//! [`spawn_later`].
//!
//! The path of a spawn, top to bottom: [`GreenletBuilder::spawn`] (here) makes the greenlet
//! object (`Header::new`, `Task::new`: `task`), then `Shared::push_new` (`worker`) queues
//! it: in the spawning worker's LIFO slot (`Hub::push_spawned`) or the global injector
//! (`Core::push_outside`), both in `hub`.

use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use super::handle::JoinHandle;
use crate::delayed::DelayedSlot;
use crate::error::{JoinError, SpawnError};
use crate::shared::{check_stack_size, Handle, Shared};
use crate::stack::GreenStack;
use crate::task::{report_unjoined, Header, Link, Task, TaskRef};
use crate::timers::Timers;
use crate::worker::{not_in_runtime, with_local};

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
    /// `Runtime` always has them). See [`spawn_later`](crate::spawn_later).
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
        let at = Location::caller();
        with_local(|l| match l {
            Some(l) => self.try_spawn_at(&l.handle, at, f),
            None => not_in_runtime("grove::try_spawn"),
        })
    }

    /// [`try_spawn`](Self::try_spawn) onto `handle`'s runtime, from any thread.
    #[track_caller]
    pub fn try_spawn_on<F, T>(self, handle: &Handle, f: F) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.try_spawn_at(handle, Location::caller(), f)
    }

    fn try_spawn_at<F, T>(
        self,
        handle: &Handle,
        at: &'static Location<'static>,
        f: F,
    ) -> Result<JoinHandle<T>, SpawnError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
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
/// Panics outside a runtime, or on a runtime without timers (grove's `Runtime`
/// always has them; the crate docs of `grove` show it in use).
#[track_caller]
pub fn spawn_later<F, T>(delay: Duration, f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    GreenletBuilder::new().spawn_later(delay, f)
}
