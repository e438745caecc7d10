//! What the current greenlet does: park (with a deadline, with a reason, never
//! unwinding), yield, block on a future; its waker; whether code runs in a greenlet.

use std::any::Any;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crate::task::{Header, Suspend};
use crate::wait_reason::WaitReason;
use crate::worker::{suspend_current, suspend_current_nounwind, with_local};

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

pub(super) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Cancels a timer of the current runtime when dropped (including when a wait is unwound
/// by an interrupt). It holds only the key and finds the timers again through the worker
/// it drops on (the greenlet's own): holding them would take a clone of their `Arc` per
/// timed park, one count that every worker increments and decrements, a cache line
/// bouncing between cores.
struct TimerGuard {
    key: crate::TimerKey,
}

impl Drop for TimerGuard {
    fn drop(&mut self) {
        // Off a worker (a stack dropped elsewhere) there is nothing to cancel through: the
        // timer then fires into a waker nobody waits on.
        with_local(|l| {
            if let Some(timers) = l.and_then(|l| l.shared.timers.as_deref()) {
                timers.cancel(self.key);
            }
        });
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

fn park_until_inner(deadline: Instant, what: *mut &'static str) {
    // In a greenlet: arm a timer on its runtime (borrowed, see `TimerGuard`).
    let armed = with_local(|l| {
        let l = l?;
        let task = l.current()?;
        let timers = l.shared.timers.as_deref().unwrap_or_else(|| {
            panic!("a timeout needs a runtime with timers (build it with grove::Runtime)")
        });
        Some(timers.add(deadline, task.waker()))
    });
    match armed {
        Some(key) => {
            let _guard = TimerGuard { key };
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
pub(super) fn is_current(h: &Header) -> bool {
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
    // In a greenlet, arm the deadline's timer (borrowed, see `TimerGuard`); `Err` for a
    // runtime without timers, which cannot honour a deadline: that reports it as passed
    // rather than panic through a foreign frame.
    let armed = with_local(|l| {
        let l = l?;
        let task = l.current()?;
        Some(match (deadline, l.shared.timers.as_deref()) {
            (None, _) => Ok(None),
            (Some(d), Some(timers)) => Ok(Some(timers.add(d, task.waker()))),
            (Some(_), None) => Err(()),
        })
    });
    let _guard = match armed {
        None => return ParkStatus::NotGreenlet,
        Some(Err(())) => return ParkStatus::Woken,
        Some(Ok(key)) => key.map(|key| TimerGuard { key }),
    };
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
