//! The greenlet object: header, closure, output and coroutine in one allocation.
//!
//! This is one of the few modules with `unsafe` (the header/cell module of
//! STYLE.md): a started greenlet's coroutine is `!Send` and lives in a header that
//! every thread can reach through a `Waker`. Everything here is about *who may touch
//! which field when*. The greenlet object knows nothing of the runtime that runs it: a
//! wake reaches the scheduler through the [`Schedule`] seam (tokio's `task::Schedule`),
//! which the worker implements for the runtime.
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
use crate::irq::Word;
use crate::signal::{dispose_payload, is_deadlock, is_kill, is_shutdown, is_timeout, payload_text};
use crate::spotlight::Pinned;
use crate::stack::GreenStack;
use crate::state::{State, Unpark, DONE, PARKED};
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

/// Where a woken greenlet goes: the one thing the greenlet object asks of the scheduler
/// that runs it (tokio's `task::Schedule`). The runtime implements it (`worker`).
pub(crate) trait Schedule: Send + Sync + 'static {
    /// Queues a started greenlet that a wake has just moved from `PARKED` to `SCHEDULED`
    /// (the wake won the state machine's race: exactly one caller gets here per park).
    fn schedule(&self, task: TaskRef);
}

// `Header::irq` bits: the greenlet's own record of interrupts (only its home thread
// touches them; see `worker::switch`, "Interrupts").
/// A final interrupt has been raised in this greenlet at least once.
pub(crate) const IRQ_DELIVERED: u8 = 1;
/// The warning for a greenlet that caught its final interrupt has been printed.
pub(crate) const IRQ_WARNED: u8 = 2;
/// The body has ended: final interrupts are no longer raised.
pub(crate) const IRQ_FINISHING: u8 = 4;
/// The thread was not unwinding when the greenlet last suspended, so it was not
/// unwinding itself then ("own unwinding").
pub(crate) const IRQ_CLEAN: u8 = 8;

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

/// Starts loading the cache line holding `addr` into the cache: a hint with no effect a
/// program can observe, whatever `addr` is.
#[inline(always)]
pub(crate) fn prefetch_line(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` never faults (not even on an unmapped or null address) and has
    // no architectural effect; the `sse` feature it is declared with is part of the
    // x86_64 baseline, so every x86_64 CPU has it.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(addr as *const i8);
    }
    #[cfg(target_arch = "aarch64")]
    // SAFETY: `prfm` is a hint: it never faults and has no architectural effect, so any
    // address will do; it touches no register but its input and no flags.
    unsafe {
        std::arch::asm!("prfm pldl1keep, [{0}]", in(reg) addr, options(nostack, preserves_flags, readonly));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let _ = addr;
}

/// The type-erased part every greenlet shares.
///
/// `repr(C)`, hot fields first: a wake reads `state`, `home` and `interrupt`, and a resume
/// `resume_at` and `slot_at`, all in the header's first 40 bytes, which a waker's prefetch
/// (the reactor's `wake_all`: the object's first 64 bytes) brings in.
#[repr(C)]
pub(crate) struct Header {
    pub(crate) state: State,
    /// The greenlet's own record of interrupts (the `IRQ_*` bits). Only its home
    /// thread touches it, while running it; atomic only so the header stays `Sync`.
    pub(crate) irq: AtomicU8,
    /// True while the greenlet is parked by `park_nounwind`, i.e. possibly under a
    /// foreign (`extern "C"`) frame that an unwind must not cross: a shutdown then
    /// abandons (leaks) its stack instead of unwinding it (`worker::shutdown`).
    pub(crate) in_foreign: AtomicBool,
    /// Home worker index, `NO_HOME` until first run; written once, by the first hub,
    /// before the greenlet can be parked (so before any wake reads it).
    pub(crate) home: AtomicUsize,
    /// A pending interrupt: 0, `irq::KILL`, `DEADLOCK`, `SHUTDOWN`, or a timeout
    /// scope's id (see `irq` and `worker::switch`).
    pub(crate) interrupt: Word,
    /// About where the greenlet's stack pointer was at its last switch away (0: never
    /// switched), so the hub can prefetch what resuming it touches ([`Header::prefetch_resume`]).
    /// Written and read only on the home thread; atomic only to keep the header `Sync`.
    resume_at: AtomicUsize,
    /// Where its registry entry was when made (`slot`; 0: none), so the hub can prefetch the
    /// entry its finish removes. A hint: the registry may have moved since.
    pub(crate) slot_at: AtomicUsize,
    /// Index in the home worker's registry of started greenlets (`usize::MAX`: none).
    pub(crate) slot: AtomicUsize,
    yielder: Cell<*const GreenYielder>,
    coroutine: UnsafeCell<Option<Co>>,
    /// What the greenlet waits on, as its last park said (`greenlet::park_on`), for
    /// run-info dumps; null when it did not say. Only ever null or a `WaitReason`'s
    /// pointer (`WaitReason::as_ptr`).
    pub(crate) waiting_on: AtomicPtr<&'static str>,
    /// The joiner's waker slot and the other observers' links (module `completion`,
    /// loom-checked).
    completion: Completion<Link>,
    pub(crate) id: u64,
    pub(crate) name: Option<Box<str>>,
    pub(crate) spawned_at: &'static Location<'static>,
    /// A stack reserved by `try_spawn`, used at first run instead of the pool's.
    /// Written at construction, taken once by the hub that first runs the greenlet.
    prealloc: UnsafeCell<Option<GreenStack>>,
    /// Greenlet-local values (see "Greenlet-locals" below); only the greenlet itself
    /// touches them.
    locals: UnsafeCell<Option<Box<LocalMap>>>,
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
            interrupt: Word::new(),
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
            resume_at: AtomicUsize::new(0),
            slot_at: AtomicUsize::new(0),
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
        self.state.load() == PARKED
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state.load() == DONE
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
    unsafe fn locals_mut(&self) -> &mut Option<Box<LocalMap>> {
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
        // Every switch away records whether the greenlet was unwinding (`worker::switch`,
        // "Own unwinding"), whichever blocking point it comes from.
        self.before_switch();
        // The switch saves its registers just below this frame.
        let here = 0u8;
        self.resume_at
            .store(std::ptr::addr_of!(here) as usize, Ordering::Relaxed);
        let y = self.yielder.get();
        debug_assert!(!y.is_null(), "suspend: greenlet has no yielder");
        // SAFETY: the yielder lives on this coroutine's stack as long as the coroutine
        // runs, and we are running on it (caller's contract).
        unsafe { (*y).suspend(why) }
    }

    /// Starts loading the header's cache lines, given only its address: a hint for a
    /// greenlet that runs soon (`Job::prefetch_far`), so nothing is read through `h`.
    #[inline]
    pub(crate) fn prefetch(h: *const Header) {
        let (from, to) = (h as usize & !63, h as usize + std::mem::size_of::<Header>());
        for line in (from..to).step_by(64) {
            prefetch_line(line);
        }
    }

    /// Starts loading the stack lines resuming this greenlet touches first (the registers
    /// its last switch saved, around [`resume_at`](Self::resume_at)) and its registry entry
    /// ([`slot_at`](Self::slot_at)). A hint: a stale value (the greenlet ran since, the
    /// registry grew) costs a useless prefetch, nothing else.
    #[inline]
    pub(crate) fn prefetch_resume(&self) {
        let sp = self.resume_at.load(Ordering::Relaxed);
        if sp != 0 {
            let line = sp & !63;
            for at in [
                line.wrapping_sub(128),
                line.wrapping_sub(64),
                line,
                line + 64,
            ] {
                prefetch_line(at);
            }
        }
        // Its registry entry, which a greenlet that finishes in this run removes.
        let slot = self.slot_at.load(Ordering::Relaxed);
        if slot != 0 {
            prefetch_line(slot);
        }
    }

    /// Called by every switch away: records whether the greenlet is certainly not
    /// unwinding (see `IRQ_CLEAN`).
    fn before_switch(&self) {
        let irq = self.irq.load(Ordering::Relaxed);
        let irq = if std::thread::panicking() {
            irq & !IRQ_CLEAN
        } else {
            irq | IRQ_CLEAN
        };
        self.irq.store(irq, Ordering::Relaxed);
    }

    /// The greenlet's body has ended (called on it, before its locals are dropped): no
    /// final interrupt is raised in it any more, so greenlet-local destructors that block
    /// run to completion.
    fn body_finished(&self) {
        let irq = self.irq.load(Ordering::Relaxed);
        self.irq.store(irq | IRQ_FINISHING, Ordering::Relaxed);
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

/// A greenlet with closure `F` returning `T`, woken into scheduler `S`. `repr(C)`: the
/// header comes first (the contract of [`Runnable`]).
#[repr(C)]
pub(crate) struct Task<F, T, S> {
    header: Header,
    func: UnsafeCell<Option<F>>,
    output: UnsafeCell<Option<Result<T, JoinError>>>,
    /// Where its wakes go (immutable).
    scheduler: S,
}

// SAFETY: `func` is moved out exactly once by the thread that owns the greenlet (first
// run or shutdown), `output` is written before `DONE` is published with Release and read
// after it is observed with Acquire by its single owner; `F: Send` and `T: Send` make
// those cross-thread moves sound; the scheduler `S` is only ever read, and is `Sync`.
unsafe impl<F: Send, T: Send, S: Sync> Sync for Task<F, T, S> {}

impl<F, T, S> Task<F, T, S>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    S: Schedule,
{
    pub(crate) fn new(header: Header, f: F, scheduler: S) -> Arc<Task<F, T, S>> {
        Arc::new(Task {
            header,
            func: UnsafeCell::new(Some(f)),
            output: UnsafeCell::new(None),
            scheduler,
        })
    }
}

// SAFETY: `Task` is `repr(C)` with `header` as its first field.
unsafe impl<F, T, S> Runnable for Task<F, T, S>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    S: Schedule,
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
        // greenlet-local destructors that block run to completion (`worker::switch`,
        // step 4).
        self.header.body_finished();
        let output = match result {
            Ok(v) => Ok(v),
            Err(payload) => {
                let name = self.header.display_name();
                if is_kill(&*payload) {
                    Err(JoinError::killed(name))
                } else if is_deadlock(&*payload) {
                    Err(JoinError::deadlock(name))
                } else if is_shutdown(&*payload) {
                    Err(JoinError::shutdown(name))
                } else if is_timeout(&*payload) {
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

impl<F, T, S> Drop for Task<F, T, S> {
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

impl<F, T, S> JoinTarget<T> for Task<F, T, S>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    S: Schedule,
{
    fn as_runnable(self: Arc<Self>) -> TaskRef {
        self
    }

    /// # Safety
    /// As the trait's: the caller observed `DONE` and holds the unique join handle.
    unsafe fn take_output(&self) -> Option<Result<T, JoinError>> {
        // SAFETY: the caller observed DONE (Acquire) and is the unique handle.
        unsafe { (*self.output.get()).take() }
    }
}

impl<F, T, S> Wake for Task<F, T, S>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    S: Schedule,
{
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    /// The park state machine (`state`), then the [`Schedule`] seam for the one wake
    /// that moved it from `PARKED` to `SCHEDULED`.
    fn wake_by_ref(self: &Arc<Self>) {
        if self.header.state.unpark() == Unpark::Schedule {
            self.scheduler.schedule(self.clone());
        }
    }
}

/// Reads the header of a greenlet pinned in a worker's spotlight (see `spotlight`):
/// how the monitor and run-info dumps read a greenlet running on another thread.
/// `f` should only copy fields out: the hub may be waiting for the pin to go.
pub(crate) fn read_pinned<R>(pinned: &Pinned<'_, Header>, f: impl FnOnce(&Header) -> R) -> R {
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

// Greenlet-locals (the storage behind `local::GreenletLocal`, gevent's `local`).
//
// Each greenlet header holds a small map from a local's address (its key) to a boxed
// value, created lazily. Values are boxed so a reference handed out stays valid while the
// map grows; entries are never removed before the greenlet ends. The map is only ever
// touched by the greenlet itself (its own code, on its home thread), and no borrow of it
// is held while user code runs (an initializer may use other locals).

/// One greenlet's (or plain thread's) locals: `(key, value)`, few enough for a scan.
#[derive(Default)]
pub(crate) struct LocalMap {
    pub(crate) entries: Vec<(usize, Box<dyn Any>)>,
    /// Keys whose value has been (or is being) dropped at the greenlet's end: using
    /// them again is refused, as std refuses a destroyed `thread_local!`, instead of
    /// creating a value that the next round of drops would have to drop again.
    destroyed: Vec<usize>,
}

impl LocalMap {
    pub(crate) fn get(&self, key: usize) -> Option<*const dyn Any> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| &**v as *const dyn Any)
    }
}

/// A greenlet-local used again by a destructor that runs after its value was dropped.
#[cold]
fn destroyed() -> ! {
    panic!(
        "grove: a greenlet-local was used after its value was dropped (a greenlet-local's \
         destructor uses it, or one dropped before it); like std's thread_local!, it cannot \
         be accessed during or after its destruction"
    )
}

impl Header {
    /// The value stored under `key` in this greenlet's locals, inserting `init()` if
    /// absent.
    ///
    /// # Safety
    /// Only the greenlet itself may call this (on its own stack), so no other access
    /// to its map can overlap.
    pub(crate) unsafe fn local_value(
        &self,
        key: usize,
        init: impl FnOnce() -> Box<dyn Any>,
    ) -> *const dyn Any {
        // SAFETY: exclusive per the caller's contract; the borrow ends before `init`.
        if let Some(m) = unsafe { self.locals_mut() }.as_ref() {
            if let Some(v) = m.get(key) {
                return v;
            }
            if m.destroyed.contains(&key) {
                destroyed();
            }
        }
        let value = init();
        // SAFETY: as above; `init` has returned, so no other borrow is live.
        let map = unsafe { self.locals_mut() }.get_or_insert_with(Default::default);
        if let Some(v) = map.get(key) {
            return v; // created by a re-entrant initializer
        }
        let ptr = &*value as *const dyn Any;
        map.entries.push((key, value));
        ptr
    }

    /// Drops this greenlet's locals, on its own stack at the end of its body, in the
    /// order they were created. A destructor may create a local not created yet (it is
    /// dropped in turn); one that uses a local already dropped (its own included)
    /// panics, contained and reported like any panicking destructor here (std's
    /// `thread_local!` refuses the same access).
    ///
    /// # Safety
    /// Only the greenlet itself may call this, once its closure has finished.
    ///
    /// This runs while a kill, `Timeout` or panic unwinds the greenlet, where a panic
    /// escaping a destructor would abort the process: each value is dropped inside
    /// `catch_unwind`, and a panic is reported on stderr, naming the greenlet, and
    /// contained (the other values are still dropped).
    pub(crate) unsafe fn drop_locals(&self) {
        loop {
            // SAFETY: exclusive per the caller's contract; the entry is taken out and its
            // key marked destroyed before its destructor runs, and no borrow of the map is
            // held while it does.
            let next = unsafe { self.locals_mut() }.as_mut().and_then(|m| {
                if m.entries.is_empty() {
                    return None;
                }
                let (key, value) = m.entries.remove(0);
                m.destroyed.push(key);
                Some(value)
            });
            match next {
                Some(value) => drop_contained(self, "a greenlet-local value", value),
                None => break,
            }
        }
        // SAFETY: as above; every destructor has returned.
        drop(unsafe { self.locals_mut() }.take());
    }
}
