//! `Lock` and `RLock`: mutual exclusion for greenlets (gevent's `gevent.lock`).
//!
//! # Design
//! A [`Lock`] is a bounded semaphore of one permit: the semaphore's core
//! ([`crate::semaphore`]) gives it Go's `sync.Mutex` policy — waiters woken in FIFO
//! order, a free lock taken by whoever asks first (no convoy of hand-offs between
//! workers), and a waiter that has waited 1 ms handed the lock at the next unlock — and
//! cancellation safety (a locker killed or timed out mid-wait never walks off with the
//! lock, nor with the wake-up meant to let the next waiter try). It guards no data, like
//! gevent's and unlike `std::sync::Mutex`: it orders code, whatever that code touches.
//!
//! An [`RLock`] is gevent's (and CPython's) recursive lock: that same one-permit core
//! plus an *owner* and a *count*. The owner is the current greenlet, by
//! [`Greenlet::id`](grove_scheduler::Greenlet::id), or, on a plain OS thread, a
//! process-unique id of that thread (ids from a separate range, so they never collide).
//!
//! # RLock protocol
//! 1. Lock: `owner == me` → `count += 1`, done (re-entry). Else take the core's permit
//!    (waiting, cancellation-safe), then `owner = me`, `count = 1`.
//! 2. Unlock: `owner != me` → [`NotOwner`], nothing changes. Else `count -= 1`; at
//!    zero, `owner = 0` and give the permit back (waking the next waiter).
//!
//! `owner` and `count` are atomics used with `Relaxed` ordering: only the owner writes
//! them while it owns the lock, each greenlet or thread sees its own writes in program
//! order (a started greenlet never changes threads), and the core's mutex orders one
//! owner's last writes before the next owner's first. So `owner == me` can never be a
//! stale read: only `me` ever stores `me`.
//!
//! # Guards and threads
//! Holding a guard across a blocking call (sleep, join, another primitive) is fine:
//! the greenlet parks, its worker runs others, and the greenlet resumes on the same
//! thread. [`LockGuard`] is `Send` (a `Lock` may be unlocked by anyone, as in gevent);
//! [`RLockGuard`] is not, since only its owner may unlock an `RLock`.

use std::cell::Cell;
use std::error::Error;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::semaphore::{deadline_after, Core, OverRelease, SemaphoreGuard};

/// A lock for greenlets (gevent's `Lock`): one holder at a time, others wait and are
/// woken first come, first served (a waiter left behind for a millisecond is handed the
/// lock at the next unlock).
///
/// Cheap to clone: clones share the lock. [`lock`](Self::lock) parks a greenlet (its
/// worker runs others) or blocks a plain OS thread, and returns a guard that unlocks
/// when dropped. Holding the guard across blocking calls is fine (a started greenlet
/// never changes threads). Not re-entrant: locking it again from the holder waits
/// forever; use [`RLock`] for that.
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use grove::sync::Lock;
///
/// let rt = grove::Runtime::builder().workers(2).build().unwrap();
/// let lock = Lock::new();
/// let n = Arc::new(AtomicU32::new(0));
/// let hs: Vec<_> = (0..20)
///     .map(|_| {
///         let (lock, n) = (lock.clone(), n.clone());
///         rt.spawn(move || {
///             let _guard = lock.lock();
///             // A read-modify-write split by a yield: safe only under the lock.
///             let v = n.load(Ordering::Relaxed);
///             grove::yield_now();
///             n.store(v + 1, Ordering::Relaxed);
///         })
///     })
///     .collect();
/// hs.into_iter().for_each(|h| h.join().unwrap());
/// assert_eq!(n.load(Ordering::Relaxed), 20);
/// assert!(!lock.is_locked());
/// ```
#[derive(Clone)]
pub struct Lock {
    core: Arc<Core>,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (available, waiters) = self.core.counts();
        f.debug_struct("Lock")
            .field("locked", &(available == 0))
            .field("waiters", &waiters)
            .finish()
    }
}

impl Default for Lock {
    fn default() -> Self {
        Lock::new()
    }
}

impl Lock {
    /// A new, unlocked lock.
    pub fn new() -> Lock {
        Lock {
            core: Arc::new(Core::new(1, Some(1), grove_scheduler::WaitReason::LOCK)),
        }
    }

    /// Locks, waiting while another holds it (waiters are woken in FIFO order).
    pub fn lock(&self) -> LockGuard<'_> {
        self.core.acquire_until(None);
        LockGuard {
            permit: self.core.guard(),
        }
    }

    /// Locks if it is free now.
    pub fn try_lock(&self) -> Option<LockGuard<'_>> {
        self.core.try_acquire().then(|| LockGuard {
            permit: self.core.guard(),
        })
    }

    /// Locks, waiting at most `timeout`; `None` if it stayed locked.
    pub fn lock_timeout(&self, timeout: Duration) -> Option<LockGuard<'_>> {
        self.core
            .acquire_until(deadline_after(timeout))
            .then(|| LockGuard {
                permit: self.core.guard(),
            })
    }

    /// True if someone holds the lock (gevent's `locked()`).
    pub fn is_locked(&self) -> bool {
        self.core.available() == 0
    }

    /// Unlocks a lock taken with [`LockGuard::forget`] (gevent's manual
    /// `acquire()` ... `release()`), from any greenlet or thread; wakes the first waiter
    /// if any. An error, changing nothing, if the lock is not locked.
    pub fn release(&self) -> Result<(), OverRelease> {
        self.core.release()
    }
}

/// Proof of holding a [`Lock`]; dropping it unlocks.
#[must_use = "dropping the guard unlocks at once"]
pub struct LockGuard<'a> {
    permit: SemaphoreGuard<'a>,
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}

impl LockGuard<'_> {
    /// Keeps the lock locked past the guard: unlock later with [`Lock::release`].
    pub fn forget(self) {
        self.permit.forget();
    }
}

/// The error of unlocking an [`RLock`] from a greenlet or thread that does not hold
/// it. Nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotOwner;

impl fmt::Display for NotOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cannot release an RLock held by another greenlet or thread (or by none)")
    }
}

impl Error for NotOwner {}

/// Owner id of no one.
const NO_OWNER: u64 = 0;

/// Owner ids of plain threads have this bit set; greenlet ids (counted from 1) never do.
const THREAD_BIT: u64 = 1 << 63;

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static THREAD_OWNER_ID: Cell<u64> = const { Cell::new(NO_OWNER) };
}

/// The current greenlet's id, or this plain thread's owner id.
fn current_owner() -> u64 {
    if let Some(id) = crate::loom::current_greenlet() {
        return id;
    }
    THREAD_OWNER_ID.with(|id| {
        if id.get() == NO_OWNER {
            id.set(NEXT_THREAD.fetch_add(1, Relaxed) | THREAD_BIT);
        }
        id.get()
    })
}

struct RInner {
    /// One permit: who holds it is `owner`.
    core: Core,
    /// The holder's id, or [`NO_OWNER`]; see the module docs for the ordering argument.
    owner: AtomicU64,
    /// Re-entry depth; meaningful only to the owner.
    count: AtomicUsize,
}

/// A re-entrant lock (gevent's `RLock`): the greenlet (or thread) holding it may lock
/// it again; it is free once unlocked as many times as locked.
///
/// The owner is the current greenlet, or the OS thread when used from a plain thread.
/// Unlocking from anyone else is an error ([`NotOwner`]), not a panic. Each
/// [`RLockGuard`] releases one level when dropped. Waiters are woken first come,
/// first served, and a waiter killed or timed out mid-wait leaves the lock consistent.
/// Cheap to clone: clones share the lock.
///
/// ```
/// use grove::sync::RLock;
///
/// let rt = grove::Runtime::builder().workers(2).build().unwrap();
/// let rlock = RLock::new();
/// let r2 = rlock.clone();
/// rt.block_on(move || {
///     let outer = r2.lock();
///     let inner = r2.lock(); // the same greenlet: no deadlock
///     assert!(r2.is_owned());
///     drop(inner);
///     assert!(r2.is_locked());
///     drop(outer);
///     assert!(!r2.is_locked());
/// });
/// assert!(rlock.release().is_err()); // this thread never held it
/// ```
#[derive(Clone)]
pub struct RLock {
    inner: Arc<RInner>,
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (_, waiters) = self.inner.core.counts();
        let owner = self.inner.owner.load(Relaxed);
        f.debug_struct("RLock")
            .field("owner", &(owner != NO_OWNER).then_some(owner))
            .field("waiters", &waiters)
            .finish()
    }
}

impl Default for RLock {
    fn default() -> Self {
        RLock::new()
    }
}

impl RLock {
    /// A new, unlocked re-entrant lock.
    pub fn new() -> RLock {
        RLock {
            inner: Arc::new(RInner {
                core: Core::new(1, Some(1), grove_scheduler::WaitReason::RLOCK),
                owner: AtomicU64::new(NO_OWNER),
                count: AtomicUsize::new(0),
            }),
        }
    }

    /// Locks: at once if the current greenlet (or thread) holds it already, else
    /// waiting until it is free (waiters are woken in FIFO order).
    pub fn lock(&self) -> RLockGuard<'_> {
        self.lock_until(None)
            .expect("RLock::lock: a wait without deadline ended")
    }

    /// Locks if it is free now or already held by the caller.
    pub fn try_lock(&self) -> Option<RLockGuard<'_>> {
        self.lock_until(Some(Instant::now()))
    }

    /// Locks, waiting at most `timeout`; `None` if another kept it that long.
    pub fn lock_timeout(&self, timeout: Duration) -> Option<RLockGuard<'_>> {
        // An overflowing timeout means "no deadline", which always succeeds.
        self.lock_until(deadline_after(timeout))
    }

    /// Protocol step 1.
    fn lock_until(&self, deadline: Option<Instant>) -> Option<RLockGuard<'_>> {
        let me = current_owner();
        let i = &self.inner;
        if i.owner.load(Relaxed) == me {
            let depth = i.count.load(Relaxed);
            let depth = depth
                .checked_add(1)
                .expect("RLock::lock: re-entry depth overflows usize");
            i.count.store(depth, Relaxed);
        } else {
            if !i.core.acquire_until(deadline) {
                return None;
            }
            i.owner.store(me, Relaxed);
            i.count.store(1, Relaxed);
        }
        Some(RLockGuard {
            inner: i,
            owner: me,
            _not_send: PhantomData,
        })
    }

    /// Releases one level held by the current greenlet (or thread), e.g. after
    /// [`RLockGuard::forget`]; the last level unlocks. [`NotOwner`] (and no change) if
    /// the caller does not hold it.
    pub fn release(&self) -> Result<(), NotOwner> {
        self.inner.release_as(current_owner())
    }

    /// True if anyone holds it.
    pub fn is_locked(&self) -> bool {
        self.inner.owner.load(Relaxed) != NO_OWNER
    }

    /// True if the current greenlet (or thread) holds it.
    pub fn is_owned(&self) -> bool {
        self.inner.owner.load(Relaxed) == current_owner()
    }
}

impl RInner {
    /// Protocol step 2, on behalf of `me`.
    fn release_as(&self, me: u64) -> Result<(), NotOwner> {
        if self.owner.load(Relaxed) != me {
            return Err(NotOwner);
        }
        let depth = self.count.load(Relaxed) - 1;
        self.count.store(depth, Relaxed);
        if depth == 0 {
            self.owner.store(NO_OWNER, Relaxed);
            let released = self.core.release();
            debug_assert!(released.is_ok(), "RLock: owner held no permit");
        }
        Ok(())
    }
}

/// One level of an [`RLock`] held by the current greenlet (or thread); dropping it
/// releases that level.
///
/// Not `Send`: only the owner may unlock, and a greenlet holding it stays on its
/// thread, so keeping it across blocking calls is fine.
#[must_use = "dropping the guard releases the level at once"]
pub struct RLockGuard<'a> {
    inner: &'a RInner,
    owner: u64,
    _not_send: PhantomData<*const ()>,
}

impl fmt::Debug for RLockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RLockGuard")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

impl RLockGuard<'_> {
    /// Keeps this level held past the guard: release it later with
    /// [`RLock::release`] from the same greenlet (or thread).
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for RLockGuard<'_> {
    fn drop(&mut self) {
        // Refused only if the owner already released this level by hand.
        let _ = self.inner.release_as(self.owner);
    }
}
