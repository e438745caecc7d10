//! A greenlet seen from outside: [`JoinHandle`] (the owner's: join, take the result)
//! and [`Greenlet`] (shareable: wait, kill, link), and [`current`].

use std::fmt;
use std::panic::Location;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use super::park::{current_waker, deadline_after, is_current, park_on, park_until_on};
use crate::deadlock;
use crate::error::JoinError;
use crate::task::{report_unjoined, Header, JoinTarget, Link, TaskRef, NO_HOME};
use crate::timers::Timers;
use crate::wait_reason::WaitReason;
use crate::worker::{self, checkpoint, kill, not_in_runtime, with_local, Side};

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
        // Raised here unless it must wait (step 5 of `worker::switch`): then at the next
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
    pub(super) task: Arc<dyn JoinTarget<T>>,
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
            worker::deadlock(&self.task.clone().as_runnable());
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

    /// Waits until `deadline` at the latest; true if the greenlet has finished. (From the
    /// greenlet itself, returns false at once.)
    pub fn wait_until(&self, deadline: Instant) -> bool {
        wait_linked(self.task.header(), Some(deadline))
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
