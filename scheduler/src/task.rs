//! The greenlet object: header, closure, output and coroutine in one allocation.
//!
//! This is one of the few modules with `unsafe` (the header/cell module of
//! STYLE.md): a started greenlet's coroutine is `!Send` and lives in a header that
//! every thread can reach through a `Waker`. Everything here is about *who may touch
//! which field when*:
//!
//! | field                     | who touches it                                   |
//! |---------------------------|--------------------------------------------------|
//! | `state`, flags, ids       | anyone (atomics / immutable)                     |
//! | `func`, `prealloc`        | the hub that first runs it (taken once), or the  |
//! |                           | hub that drops it unstarted at shutdown          |
//! | `coroutine`, `yielder`    | the home worker's thread only, and only while it |
//! |                           | owns the greenlet (state `RUNNING`, or shutdown)  |
//! | `locals`                  | the greenlet itself, on its own stack             |
//! | `output`                  | written by the greenlet before `DONE`; then owned |
//! |                           | by the `JoinHandle` (or the reporter if detached) |
//! | `completion`              | anyone (module `completion`: flags and mutexes)  |
//!
//! # Completion: one joiner slot, plus links for everyone else
//! The owner's `join` uses the single `join_waker` slot (no allocation, no list: the
//! common spawn/join path stays as cheap as it was). Every other observer — `kill` and
//! `wait_timeout` on a shared handle, [`Greenlet::wait`](crate::Greenlet::wait),
//! `on_finish` callbacks, `joinall`/`iwait`, groups and pools — adds a [`Link`] to
//! `links`. The protocol mirrors the joiner's:
//! 1. An observer pushes its link under the `links` mutex, *then* sets `JOIN_LINKED`
//!    with one RMW on `join_flags`.
//! 2. `complete` publishes `DONE`, then sets `JOIN_COMPLETE` with one RMW; if it saw
//!    `JOIN_LINKED`, it drains `links` and fires each (outside the mutex).
//! 3. An observer whose RMW of step 1 saw `JOIN_COMPLETE` drains `links` itself.
//!
//! The two RMWs are totally ordered: if `complete`'s came second it sees `LINKED` and
//! its drain (which locks after its RMW) finds the link; if the observer's came
//! second, the observer drains. Draining takes entries out under the mutex, so each
//! link fires exactly once whoever drains. Links fire in the order they were added, on
//! the thread that completes the greenlet — its hub, off the greenlet's stack — never on
//! the greenlet itself.
//!
//! # Rejected approaches
//! * A hand-rolled vtable and refcount (async-task style) saves a word but needs far
//!   more `unsafe`; `Arc<dyn Runnable>` gives one allocation per greenlet and std's
//!   `Wake` gives the `Waker` for free.
//! * Boxing the closure separately: a second allocation on the spawn path.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::fmt;
use std::panic::{self, AssertUnwindSafe, Location};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Wake;
use std::task::Waker;

use corosensei::{Coroutine, Yielder};

use crate::completion::Completion;
use crate::error::JoinError;
use crate::runtime::Shared;
use crate::stack::GreenStack;
use crate::state::{State, Unpark};
use crate::wait_reason::WaitReason;

/// Why a greenlet switched back to its hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suspend {
    /// Runnable again at once: requeue at the back.
    Yield,
    /// Waiting for its waker.
    Park,
}

pub(crate) type Co = Coroutine<(), Suspend, (), GreenStack>;
pub(crate) type GreenYielder = Yielder<(), Suspend>;
pub(crate) type TaskRef = Arc<dyn Runnable>;

/// `home` before the greenlet first runs: any worker may take it.
pub(crate) const NO_HOME: usize = usize::MAX;

/// Link ids are unique in the process (so an id from one greenlet never unlinks
/// another's link), starting at 1.
static NEXT_LINK: AtomicU64 = AtomicU64::new(1);

/// A callback run once, off the greenlet's stack.
pub(crate) type Callback = Box<dyn FnOnce() + Send + 'static>;

/// An observer of a greenlet's completion (see "Completion" in the module docs).
pub(crate) enum Link {
    /// Woken when the greenlet finishes.
    Wake(Waker),
    /// Run once when the greenlet finishes, on the thread that completes it.
    Call(Callback),
    /// Not a completion observer: run by `kill_nowait` (and dropped unrun at
    /// completion). A delayed spawn uses it to start a killed greenlet at once so it
    /// can be cancelled rather than wait out its delay.
    OnKill(Callback),
}

/// The type-erased part every greenlet shares.
pub(crate) struct Header {
    pub(crate) state: State,
    pub(crate) id: u64,
    pub(crate) name: Option<Box<str>>,
    pub(crate) spawned_at: &'static Location<'static>,
    /// Home worker index, `NO_HOME` until first run; written once, by the first hub,
    /// before the greenlet can be parked (so before any wake reads it).
    pub(crate) home: AtomicUsize,
    pub(crate) rt: Arc<Shared>,
    /// A pending interrupt: 0, `interrupt::KILL`, `DEADLOCK`, `SHUTDOWN`, or a timeout
    /// scope's id (see `interrupt`).
    pub(crate) interrupt: crate::irq::Word,
    /// The greenlet's own record of interrupts (`interrupt::IRQ_*` bits). Only its home
    /// thread touches it, while running it; atomic only so the header stays `Sync`.
    pub(crate) irq: AtomicU8,
    /// What the greenlet waits on, as its last park said (`greenlet::park_on`), for
    /// run-info dumps; null when it did not say. Only ever null or a `WaitReason`'s
    /// pointer (`WaitReason::as_ptr`).
    pub(crate) waiting_on: AtomicPtr<&'static str>,
    /// True while the greenlet is parked by `park_nounwind`, i.e. possibly under a
    /// foreign (`extern "C"`) frame that an unwind must not cross: a shutdown then
    /// abandons (leaks) its stack instead of unwinding it (`worker::Local::shutdown`).
    pub(crate) in_foreign: AtomicBool,
    /// The joiner's waker slot and the other observers' links (module `completion`,
    /// loom-checked).
    completion: Completion<Link>,
    /// A stack reserved by `try_spawn`, used at first run instead of the pool's.
    /// Written at construction, taken once by the hub that first runs the greenlet.
    prealloc: UnsafeCell<Option<GreenStack>>,
    coroutine: UnsafeCell<Option<Co>>,
    yielder: Cell<*const GreenYielder>,
    /// Greenlet-local values (see `local.rs`); only the greenlet itself touches them.
    locals: UnsafeCell<Option<Box<crate::local::LocalMap>>>,
    /// Index in the home worker's registry of started greenlets (`usize::MAX`: none).
    pub(crate) slot: AtomicUsize,
    /// The stack's guard range `[lo, hi)`, recorded at first run for the overflow reporter.
    pub(crate) guard: (AtomicUsize, AtomicUsize),
}

// SAFETY: the `!Sync`/`!Send` fields (`coroutine`, `yielder`, `locals`) are only touched
// by the home worker's thread while it owns the greenlet (see the table above; every
// accessor below is `unsafe` and restates the rule). All other fields are `Sync`.
unsafe impl Sync for Header {}
// SAFETY: as above; moving the header between threads only moves the `Arc` pointer,
// and the coroutine inside is created and dropped on the home thread.
unsafe impl Send for Header {}

impl fmt::Debug for Header {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Greenlet")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("state", &State::describe(self.state.load()))
            .finish()
    }
}

impl Header {
    pub(crate) fn new(
        rt: Arc<Shared>,
        id: u64,
        name: Option<Box<str>>,
        spawned_at: &'static Location<'static>,
        prealloc: Option<GreenStack>,
    ) -> Header {
        Header {
            state: State::new(),
            id,
            name,
            spawned_at,
            home: AtomicUsize::new(NO_HOME),
            rt,
            interrupt: crate::irq::Word::new(),
            irq: AtomicU8::new(0),
            waiting_on: AtomicPtr::new(std::ptr::null_mut()),
            in_foreign: AtomicBool::new(false),
            completion: Completion::new(),
            prealloc: UnsafeCell::new(prealloc),
            coroutine: UnsafeCell::new(None),
            yielder: Cell::new(std::ptr::null()),
            locals: UnsafeCell::new(None),
            slot: AtomicUsize::new(usize::MAX),
            guard: (AtomicUsize::new(0), AtomicUsize::new(0)),
        }
    }

    /// The name for messages: the user's, or `greenlet-<id>`.
    pub(crate) fn display_name(&self) -> String {
        match &self.name {
            Some(n) => n.to_string(),
            None => format!("greenlet-{}", self.id),
        }
    }

    /// Takes the stack reserved at spawn, if any.
    ///
    /// # Safety
    /// Only the hub starting the greenlet may call this: it owns the unstarted
    /// greenlet exclusively (it took it off a run queue).
    pub(crate) unsafe fn take_prealloc(&self) -> Option<GreenStack> {
        // SAFETY: exclusive access is the caller's contract.
        unsafe { (*self.prealloc.get()).take() }
    }

    /// What the greenlet says it waits for (see `waiting_on`), if anything.
    pub(crate) fn waiting_on(&self) -> Option<WaitReason> {
        let p = self.waiting_on.load(Ordering::Acquire);
        // SAFETY: `waiting_on` only ever holds null or a `WaitReason`'s pointer to a
        // `&'static str` (`greenlet::park_on`), valid for the whole program.
        unsafe { p.cast_const().as_ref() }.map(WaitReason::custom)
    }

    pub(crate) fn is_parked(&self) -> bool {
        self.state.load() == crate::state::PARKED
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state.load() == crate::state::DONE
    }

    /// The coroutine cell.
    ///
    /// # Safety
    /// Only the home worker's thread may call this, while it owns the greenlet
    /// (between taking it off a run queue and handing it back, or during shutdown
    /// when no other hub can run it), and the returned reference must not outlive
    /// that ownership nor overlap another call.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn coroutine_mut(&self) -> &mut Option<Co> {
        // SAFETY: exclusive access is the caller's contract (one owning thread).
        unsafe { &mut *self.coroutine.get() }
    }

    /// The greenlet-locals cell.
    ///
    /// # Safety
    /// Only the greenlet itself may call this (on its own stack), and the reference
    /// must not be held across user code or another call.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn locals_mut(&self) -> &mut Option<Box<crate::local::LocalMap>> {
        // SAFETY: exclusive access is the caller's contract.
        unsafe { &mut *self.locals.get() }
    }

    /// Records the yielder of a freshly started coroutine.
    ///
    /// # Safety
    /// Called on the greenlet's own stack at its root, on its home thread; `y` lives
    /// as long as the coroutine.
    pub(crate) unsafe fn set_yielder(&self, y: &GreenYielder) {
        self.yielder.set(y);
    }

    /// Switches from the running greenlet to its hub.
    ///
    /// # Safety
    /// Must be called on this greenlet's own stack (it is the current greenlet of
    /// this thread), after `set_yielder`.
    pub(crate) unsafe fn suspend(&self, why: Suspend) {
        // Every switch away records whether the greenlet was unwinding (`interrupt`,
        // "Own unwinding"), whichever blocking point it comes from.
        crate::interrupt::before_switch(self);
        let y = self.yielder.get();
        debug_assert!(!y.is_null(), "suspend: greenlet has no yielder");
        // SAFETY: the yielder lives on this coroutine's stack as long as the coroutine
        // runs, and we are running on it (caller's contract).
        unsafe { (*y).suspend(why) }
    }

    /// The hub finished the greenlet: publish `DONE`, wake the joiner, fire the links.
    /// Returns `true` if the handle is already gone, in which case the caller owns the
    /// output for reporting.
    pub(crate) fn complete(&self) -> bool {
        self.state.complete();
        let done = self.completion.complete();
        if let Some(w) = done.waker {
            w.wake();
        }
        self.fire_all(done.links);
        done.detached
    }

    /// Step 1 of "Completion": adds an observer. If the greenlet has already finished,
    /// the link fires here, on the caller. Returns the id for [`unlink`](Self::unlink).
    pub(crate) fn link(&self, link: Link) -> u64 {
        let id = NEXT_LINK.fetch_add(1, Ordering::Relaxed);
        if self.is_done() {
            fire(self, link);
            return id;
        }
        // Step 3: if `complete` came first, we fire what it will not look at again.
        let late = self.completion.link(id, link);
        self.fire_all(late);
        id
    }

    /// Removes a link that has not fired; returns `false` if it fired (or is firing).
    pub(crate) fn unlink(&self, id: u64) -> bool {
        // Dropped here, outside the lock: a callback's captures may have destructors of
        // their own.
        self.completion.unlink(id).is_some()
    }

    /// Takes the `OnKill` hooks (for `kill_nowait` to run).
    pub(crate) fn take_kill_hooks(&self) -> Vec<Callback> {
        self.completion
            .take_if(|l| matches!(l, Link::OnKill(_)))
            .into_iter()
            .filter_map(|l| match l {
                Link::OnKill(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    /// Steps 2–3: fires drained links, outside every lock.
    fn fire_all(&self, links: Vec<(u64, Link)>) {
        for (_, link) in links {
            fire(self, link);
        }
    }

    /// The handle was dropped. Returns `true` if the greenlet already completed, in
    /// which case the caller owns the output for reporting.
    pub(crate) fn detach(&self) -> bool {
        self.completion.detach()
    }

    /// True once the handle was dropped (nobody will join): a hint for placement.
    pub(crate) fn is_detached(&self) -> bool {
        self.completion.is_detached()
    }

    /// Registers the joiner's waker; returns `false` if the greenlet is already done.
    pub(crate) fn register_joiner(&self, waker: &Waker) -> bool {
        self.completion.register_joiner(waker)
    }
}

/// Fires one link of a finished greenlet. A panicking callback is reported on stderr
/// and contained: it runs on a hub, which must survive it (its payload too: see
/// [`dispose_payload`]).
fn fire(h: &Header, link: Link) {
    match link {
        Link::Wake(w) => w.wake(),
        Link::Call(f) => {
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(f)) {
                let msg = payload_text(&*payload);
                dispose_payload(payload);
                report!(
                    "grove: on_finish callback of greenlet '{}' (id {}) panicked: {msg}",
                    h.display_name(),
                    h.id,
                );
            }
        }
        Link::OnKill(_) => {}
    }
}

/// What the scheduler needs of a greenlet, whatever its closure and output types.
///
/// # Safety
/// Implementors are `#[repr(C)]` with a [`Header`] as their first field, so that a
/// pointer to the object is a pointer to its header (see `impl dyn Runnable`). Only
/// [`Task`] implements it.
pub(crate) unsafe trait Runnable: Send + Sync + 'static {
    /// Runs the closure on the greenlet's own stack and stores its output.
    fn run_body(&self);
    /// Drops the closure of a greenlet that never ran and records `err` as its output.
    fn cancel_unstarted(&self, err: JoinError);
    /// Records `err` as the output of a greenlet unwound without finishing.
    fn set_failed(&self, err: JoinError);
    /// A panic message for the unjoined-failure report, if the output is an error.
    fn failure_message(&self) -> Option<String>;
    fn waker(self: Arc<Self>) -> Waker;
}

impl dyn Runnable {
    /// The header, without a virtual call: the hub reads it several times per switch.
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: every `Runnable` is `repr(C)` with its `Header` first (the trait's
        // contract), so the object's address is the header's.
        unsafe { &*(self as *const dyn Runnable as *const Header) }
    }
}

impl<T> dyn JoinTarget<T> {
    /// The header (see `impl dyn Runnable`).
    #[inline]
    pub(crate) fn header(&self) -> &Header {
        // SAFETY: as above: `JoinTarget<T>: Runnable`.
        unsafe { &*(self as *const dyn JoinTarget<T> as *const Header) }
    }
}

/// The typed side a `JoinHandle<T>` sees.
pub(crate) trait JoinTarget<T>: Runnable {
    fn as_runnable(self: Arc<Self>) -> TaskRef;
    /// Takes the output.
    ///
    /// # Safety
    /// Only after observing `DONE`, and only by the unique `JoinHandle`.
    unsafe fn take_output(&self) -> Option<Result<T, JoinError>>;
}

/// A greenlet with closure `F` returning `T`. `repr(C)`: the header comes first (the
/// contract of [`Runnable`]).
#[repr(C)]
pub(crate) struct Task<F, T> {
    header: Header,
    func: UnsafeCell<Option<F>>,
    output: UnsafeCell<Option<Result<T, JoinError>>>,
}

// SAFETY: `func` is moved out exactly once by the thread that owns the greenlet (first
// run or shutdown), `output` is written before `DONE` is published with Release and read
// after it is observed with Acquire by its single owner; `F: Send` and `T: Send` make
// those cross-thread moves sound.
unsafe impl<F: Send, T: Send> Sync for Task<F, T> {}

impl<F, T> Task<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    pub(crate) fn new(header: Header, f: F) -> Arc<Task<F, T>> {
        Arc::new(Task {
            header,
            func: UnsafeCell::new(Some(f)),
            output: UnsafeCell::new(None),
        })
    }
}

// SAFETY: `Task` is `repr(C)` with `header` as its first field.
unsafe impl<F, T> Runnable for Task<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn run_body(&self) {
        // SAFETY: the first run is the single owner of an unstarted greenlet.
        let f = unsafe { (*self.func.get()).take() };
        let Some(f) = f else {
            return;
        };
        // Drops the greenlet-locals here, on the greenlet's own stack, however the body
        // ends (return, panic, kill, or a shutdown unwinding through us).
        struct DropLocals<'a>(&'a Header);
        impl Drop for DropLocals<'_> {
            fn drop(&mut self) {
                // SAFETY: we are the greenlet, and its closure has finished.
                unsafe { self.0.drop_locals() };
            }
        }
        let _locals = DropLocals(&self.header);
        let result = panic::catch_unwind(AssertUnwindSafe(f));
        // The body is over: no kill, deadlock or shutdown is raised in it any more, so
        // greenlet-local destructors that block run to completion (`interrupt`, step 4).
        crate::interrupt::body_finished(&self.header);
        let output = match result {
            Ok(v) => Ok(v),
            Err(payload) => {
                let name = self.header.display_name();
                if crate::interrupt::is_kill(&*payload) {
                    Err(JoinError::killed(name))
                } else if crate::interrupt::is_deadlock(&*payload) {
                    Err(JoinError::deadlock(name))
                } else if crate::interrupt::is_shutdown(&*payload) {
                    Err(JoinError::shutdown(name))
                } else if crate::interrupt::is_timeout(&*payload) {
                    Err(JoinError::timed_out(name))
                } else {
                    Err(JoinError::panicked(payload, name))
                }
            }
        };
        // SAFETY: written by the running greenlet before `DONE` is published.
        unsafe { *self.output.get() = Some(output) };
    }

    fn cancel_unstarted(&self, err: JoinError) {
        // SAFETY: the caller owns the never-started greenlet (it took it off a queue).
        let f = unsafe { (*self.func.get()).take() };
        // On a hub (a kill before the first run, a shutdown): a panicking capture must
        // not take the worker down.
        drop_contained(&self.header, "the closure (never run)", f);
        self.set_failed(err);
    }

    fn set_failed(&self, err: JoinError) {
        // SAFETY: called by the owning hub before `complete()` publishes `DONE`, when the
        // body did not store an output.
        let out = unsafe { &mut *self.output.get() };
        if out.is_none() {
            *out = Some(Err(err));
        }
    }

    fn failure_message(&self) -> Option<String> {
        // SAFETY: called only by whoever won the `join_flags` race, which owns the output.
        match unsafe { &*self.output.get() } {
            Some(Err(e)) if e.is_panic() || e.is_no_stack() || e.is_timeout() => {
                Some(e.to_string())
            }
            _ => None,
        }
    }

    fn waker(self: Arc<Self>) -> Waker {
        Waker::from(self)
    }
}

impl<F, T> Drop for Task<F, T> {
    fn drop(&mut self) {
        // The last reference may go on a hub (a detached greenlet's output, a closure that
        // never ran), on the reactor or pool thread that fired a wake, or while some frame
        // unwinds: a panicking destructor here is contained and reported, never allowed
        // to take a worker down or to abort the process.
        if let Some(f) = self.func.get_mut().take() {
            drop_contained(&self.header, "the closure (never run)", f);
        }
        if let Some(out) = self.output.get_mut().take() {
            drop_contained(&self.header, "the result", out);
        }
    }
}

impl<F, T> JoinTarget<T> for Task<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn as_runnable(self: Arc<Self>) -> TaskRef {
        self
    }

    unsafe fn take_output(&self) -> Option<Result<T, JoinError>> {
        // SAFETY: the caller observed DONE (Acquire) and is the unique handle.
        unsafe { (*self.output.get()).take() }
    }
}

impl<F, T> Wake for Task<F, T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    fn wake(self: Arc<Self>) {
        if self.header.state.unpark() == Unpark::Schedule {
            crate::worker::schedule_woken(self);
        }
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.header.state.unpark() == Unpark::Schedule {
            crate::worker::schedule_woken(self.clone());
        }
    }
}

/// Reads the header of a greenlet pinned in a worker's spotlight (see `spotlight`):
/// how the monitor and run-info dumps read a greenlet running on another thread.
/// `f` should only copy fields out: the hub may be waiting for the pin to go.
pub(crate) fn read_pinned<R>(
    pinned: &crate::spotlight::Pinned<'_, Header>,
    f: impl FnOnce(&Header) -> R,
) -> R {
    // SAFETY: a confirmed pin keeps the greenlet alive until it is dropped, and it
    // outlives this borrow (step 3 of the `spotlight` protocol: the hub's release waits
    // for the pin to clear before dropping its references). Only `Sync` parts of the
    // header are reachable through `&Header` from another thread (see the table above:
    // ids, name and spawn location are immutable; state and home are atomics).
    f(unsafe { &*pinned.addr() })
}

/// Prints gevent's "... failed with ..." line for a failure nobody will join.
pub(crate) fn report_unjoined(task: &dyn Runnable) {
    if let Some(msg) = task.failure_message() {
        let h = task.header();
        report!(
            "grove: greenlet '{}' (id {}, spawned at {}) failed with: {msg}",
            h.display_name(),
            h.id,
            h.spawned_at
        );
    }
}

/// Drops `value`, which belongs to greenlet `h`, inside `catch_unwind`: a panicking
/// destructor is reported on stderr, naming the greenlet and `what` was dropped, and
/// goes no further. For the drops grove performs itself (a closure that never ran, a
/// result nobody took, greenlet-locals), so that a panic there cannot take a worker down,
/// nor abort the process when it happens while the greenlet unwinds.
pub(crate) fn drop_contained<V>(h: &Header, what: &str, value: V) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(move || drop(value))) {
        let msg = payload_text(&*payload);
        dispose_payload(payload);
        report!(
            "grove: dropping {what} of greenlet '{}' (id {}, spawned at {}) panicked: {msg}; \
             the panic was contained",
            h.display_name(),
            h.id,
            h.spawned_at
        );
    }
}

/// Payload text of the panic Rust raises when a panic escapes a destructor while the
/// thread is already unwinding; the process aborts right after the hook runs.
const PANIC_IN_CLEANUP: &str = "panic in a destructor during cleanup";

/// Installs, once per process, a panic hook in front of the existing one. A panic in a
/// greenlet is reported as Rust's default hook would, but naming the greenlet (name, id,
/// spawn site) instead of the worker thread; the hook installed before is not called for
/// those (a hook installed after the runtime is built sees every panic). Panics outside
/// greenlets go to the previous hook. It also names the greenlet when Rust is about to
/// abort the process because a destructor panicked while the greenlet was unwinding
/// (from a kill, a `Timeout`, a panic or a shutdown).
///
/// Such a panic escapes from a frame of the user's own stack, so no `catch_unwind` of
/// grove's can contain it: Rust aborts (`panic in a destructor during cleanup`) and the
/// worker goes down with the process. What grove can do is say which greenlet it was. The
/// drops grove performs itself are contained instead ([`drop_contained`]). Other panics
/// pass through to the previous hook untouched.
pub(crate) fn install_abort_report() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let prev = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let who = crate::worker::with_local(|l| {
                l.and_then(|l| {
                    l.with_current(|h| h.map(|h| (h.display_name(), h.id, h.spawned_at)))
                })
            });
            let text = payload_text(info.payload());
            if text != PANIC_IN_CLEANUP {
                match who {
                    Some((name, id, at)) => report_greenlet_panic(info, &name, id, at, &text),
                    None => prev(info),
                }
                return;
            }
            prev(info);
            if let Some((name, id, at)) = who {
                report!(
                    "grove: greenlet '{name}' (id {id}, spawned at {at}) panicked in a \
                     destructor while it was unwinding (killed, timed out, panicking or shut \
                     down); Rust aborts the process when a panic escapes a destructor during \
                     unwinding, so grove cannot contain it: catch panics inside such \
                     destructors (std::panic::catch_unwind) or do not panic in Drop"
                );
            }
        }));
    });
}

/// What Rust's default hook prints, but naming the greenlet rather than the worker
/// thread ("thread 'grove-worker-0' panicked" says nothing about which code failed).
fn report_greenlet_panic(
    info: &panic::PanicHookInfo<'_>,
    name: &str,
    id: u64,
    at: &std::panic::Location<'_>,
    text: &str,
) {
    let place = info
        .location()
        .map_or_else(String::new, |l| format!(" at {l}"));
    let bt = std::backtrace::Backtrace::capture();
    let trace = match bt.status() {
        std::backtrace::BacktraceStatus::Captured => format!("\nstack backtrace:\n{bt}"),
        _ => "\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace"
            .to_string(),
    };
    // Never `eprintln!`: a panic inside a panic hook aborts, and stderr may be closed.
    report!("greenlet '{name}' (id {id}, spawned at {at}) panicked{place}:\n{text}{trace}");
}

/// Drops a caught panic payload on a thread that must survive it (a hub). A payload is
/// a user's value and its `Drop` may panic too: that second panic is caught and its own
/// payload leaked (forgotten) rather than dropped, so disposal always ends here.
pub(crate) fn dispose_payload(payload: Box<dyn Any + Send>) {
    if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// A panic payload as text, for messages.
pub(crate) fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}
