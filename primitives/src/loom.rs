//! The one place this crate chooses between `std` and `loom` synchronization types.
//!
//! The wait list (`waitlist`) and the primitives modelled under loom (`Semaphore`,
//! `Lock`, the queues, the pool's member accounting, the blocking pool) import their
//! `Mutex`, `Condvar`, atomics, threads and `UnsafeCell` from here, and their parking
//! (`current_waker`, `park_on`), so building with `RUSTFLAGS="--cfg grove_loom"` swaps
//! them for loom's model-checked versions (and a per-thread park token standing for a
//! greenlet's state word) without touching the protocol code (see
//! `loom-tests/tests/{waitlist,semaphore,queue,pool,blocking}.rs`). Under loom, only
//! those modules are compiled.

#[cfg(grove_loom)]
pub(crate) use loom::cell::UnsafeCell;
#[cfg(grove_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(grove_loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(grove_loom)]
pub(crate) use loom::thread;

#[cfg(not(grove_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(grove_loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(grove_loom))]
pub(crate) use std::thread;

/// A blocking-pool thread's registration with grove's deadlock detection (which has
/// nothing to detect under loom: a no-op there).
#[cfg(not(grove_loom))]
pub(crate) use grove_scheduler::deadlock::HelperThread;

/// Under loom: nothing to register with.
#[cfg(grove_loom)]
pub(crate) struct HelperThread;

#[cfg(grove_loom)]
impl HelperThread {
    pub(crate) fn register() -> HelperThread {
        HelperThread
    }
    pub(crate) fn set_busy(&self, _busy: bool) {}
}

/// `std`'s `UnsafeCell` with loom's closure API, so the wait list's cell accesses are
/// written once and race-checked under loom.
#[cfg(not(grove_loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(grove_loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> UnsafeCell<T> {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    /// Calls `f` with a raw pointer to the contents; the caller's `unsafe` block states
    /// why nobody else accesses them meanwhile.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

// loom's `Mutex::lock` returns std's `LockResult`, so poison is std's in both builds.
pub(crate) use std::sync::PoisonError;

// The scheduler's parking, which the wait list's `wait`/`wait_at` use. In the loom
// build the scheduler has no greenlets, so each loom thread parks on a token of its
// own (`loom_park`), and a model can unwind a parked thread the way a kill does.
#[cfg(not(grove_loom))]
pub(crate) use grove_scheduler::{current_waker, park_on, park_until_on};

/// The current greenlet's id, if any (a lock's owner id).
#[cfg(not(grove_loom))]
pub(crate) fn current_greenlet() -> Option<u64> {
    grove_scheduler::try_current().map(|g| g.id())
}

#[cfg(grove_loom)]
pub(crate) use self::loom_park::{current_greenlet, current_waker, park_on, park_until_on};
#[cfg(grove_loom)]
pub use self::loom_park::{Killed, Parker};

#[cfg(grove_loom)]
mod loom_park {
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicU64, Ordering as StdOrdering};
    use std::task::{Wake, Waker};
    use std::time::Instant;

    use loom::sync::{Condvar, Mutex};

    /// A loom thread's park token: what a greenlet's state word gives it (a wake before
    /// the park is kept and the park returns at once), plus a pending kill.
    ///
    /// `loom::thread::park` would be the obvious stand-in, but loom 0.7's `unpark` also
    /// wakes a thread blocked on a loom `Mutex`, which loom then rejects.
    #[derive(Default, Debug)]
    pub struct Parker {
        state: Mutex<Flags>,
        cv: Condvar,
    }

    #[derive(Default, Debug)]
    struct Flags {
        woken: bool,
        killed: bool,
    }

    /// The payload a park unwinds with after [`Parker::kill`] (`resume_unwind`: no panic
    /// hook, no noise).
    #[derive(Debug)]
    pub struct Killed;

    impl Parker {
        /// A new token, to [`install`](Self::install) on the thread it stands for.
        pub fn new() -> std::sync::Arc<Parker> {
            std::sync::Arc::new(Parker::default())
        }

        /// Makes `self` the current loom thread's token (else one is made on first use).
        pub fn install(self: &std::sync::Arc<Self>) {
            TOKEN.with(|t| *t.borrow_mut() = Some(self.clone()));
        }

        /// The waker's `wake`.
        pub fn unpark(&self) {
            self.state.lock().unwrap().woken = true;
            self.cv.notify_one();
        }

        /// A kill: the thread's next (or current) park unwinds with [`Killed`], once.
        pub fn kill(&self) {
            self.state.lock().unwrap().killed = true;
            self.cv.notify_one();
        }

        fn park(&self) {
            let mut s = self.state.lock().unwrap();
            loop {
                if s.killed {
                    s.killed = false;
                    drop(s);
                    std::panic::resume_unwind(Box::new(Killed));
                }
                if s.woken {
                    s.woken = false;
                    return;
                }
                s = self.cv.wait(s).unwrap();
            }
        }
    }

    struct Unparker(std::sync::Arc<Parker>);

    impl Wake for Unparker {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }

    loom::thread_local! {
        static TOKEN: RefCell<Option<std::sync::Arc<Parker>>> = RefCell::new(None);
        static ID: u64 = NEXT_ID.fetch_add(1, StdOrdering::Relaxed);
    }

    /// Ids standing for greenlet ids (a lock's owner); any distinct values do.
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);

    fn token() -> std::sync::Arc<Parker> {
        TOKEN.with(|t| t.borrow_mut().get_or_insert_with(Parker::new).clone())
    }

    pub(crate) fn current_waker() -> Waker {
        Waker::from(std::sync::Arc::new(Unparker(token())))
    }

    pub(crate) fn park_on(_what: grove_scheduler::WaitReason) {
        token().park();
    }

    /// Deadlines are not modelled: models wait without one.
    pub(crate) fn park_until_on(_deadline: Instant, what: grove_scheduler::WaitReason) {
        park_on(what);
    }

    pub(crate) fn current_greenlet() -> Option<u64> {
        Some(ID.with(|id| *id))
    }
}
