//! `AsyncResult`: a value (or error) set once and read by many (gevent's
//! `gevent.event.AsyncResult`).
//!
//! # Design
//! The outcome lives in a `OnceLock<Result<T, E>>`: written once, then immutable, so
//! readers never lock — a ready result is read with one acquire load, and
//! [`wait`](AsyncResult::wait) can hand out a plain `&Result<T, E>` that lives as long
//! as the handle. [`get`](AsyncResult::get) clones out of it for convenience.
//! Blocked readers sit in a [`WaitList<()>`](crate::waitlist::WaitList) behind a mutex.
//!
//! # Protocol
//! 1. Set, under the mutex: store the outcome (refused with [`AlreadySet`] if there is
//!    one, giving the value back), then wake every waiter (`notify_all`).
//! 2. Wait: ready → done, no lock. Else, under the mutex, re-check (a set happens
//!    under it, so the check and the enqueue are atomic against it) and enqueue a
//!    ticket; park until woken, then read the outcome.
//!
//! # Cancellation
//! A waiter killed or timed out (by `Timeout`) is removed from the list; a wake-up it
//! consumed was sent to every waiter alike, so there is nothing to pass on. A waiter
//! reaching its own deadline re-reads the outcome, so a set at the last moment counts.

use std::error::Error;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::waitlist::{lock, wait, WaitList};

struct Inner<T, E> {
    outcome: OnceLock<Result<T, E>>,
    /// Also serialises sets against the check-then-enqueue of step 2.
    waiters: Mutex<WaitList<()>>,
}

/// A result that one party sets once and any number of greenlets (or threads) wait
/// for (gevent's `AsyncResult`).
///
/// [`set`](Self::set) a value or [`set_error`](Self::set_error) an error, once: a
/// second set returns [`AlreadySet`] with what it was given. Every waiter is woken by
/// the set, on whatever worker or thread it runs; sets work from plain OS threads too.
///
/// Reading: [`get`](Self::get) (and [`get_timeout`](Self::get_timeout),
/// [`try_get`](Self::try_get)) gives each reader its own clone of the outcome, so it
/// needs `T: Clone` and `E: Clone` (wrap a large or unclonable value in an `Arc`);
/// [`wait`](Self::wait) gives a reference instead and needs neither. The default
/// error type is `Arc<dyn Error + Send + Sync>` rather than a `Box` for that reason:
/// every reader gets the error. Cheap to clone: clones share one result.
///
/// ```
/// use grove::sync::AsyncResult;
///
/// let rt = grove::Runtime::builder().workers(2).build().unwrap();
/// let result: AsyncResult<u32> = AsyncResult::new();
/// let readers: Vec<_> = (0..3)
///     .map(|_| {
///         let r = result.clone();
///         rt.spawn(move || r.get().unwrap())
///     })
///     .collect();
/// let r = result.clone();
/// rt.block_on(move || r.set(42).unwrap());
/// for h in readers {
///     assert_eq!(h.join().unwrap(), 42);
/// }
/// assert!(result.set(7).is_err()); // set once
/// assert!(result.successful());
/// ```
pub struct AsyncResult<T, E = Arc<dyn Error + Send + Sync>> {
    inner: Arc<Inner<T, E>>,
}

impl<T, E> Clone for AsyncResult<T, E> {
    fn clone(&self) -> Self {
        AsyncResult {
            inner: self.inner.clone(),
        }
    }
}

impl<T, E> fmt::Debug for AsyncResult<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let waiters = lock(&self.inner.waiters).len();
        let state = match self.inner.outcome.get() {
            None => "pending",
            Some(Ok(_)) => "value",
            Some(Err(_)) => "error",
        };
        f.debug_struct("AsyncResult")
            .field("state", &state)
            .field("waiters", &waiters)
            .finish()
    }
}

impl<T, E> Default for AsyncResult<T, E> {
    fn default() -> Self {
        AsyncResult::new()
    }
}

impl<T, E> AsyncResult<T, E> {
    /// A new result, not yet set.
    pub fn new() -> Self {
        AsyncResult {
            inner: Arc::new(Inner {
                outcome: OnceLock::new(),
                waiters: Mutex::new(WaitList::default()),
            }),
        }
    }

    /// Sets the value and wakes every waiter; [`AlreadySet`] with `value` if a value
    /// or error was set before.
    pub fn set(&self, value: T) -> Result<(), AlreadySet<T>> {
        self.complete(value, Ok)
    }

    /// Sets an error (gevent's `set_exception`) and wakes every waiter;
    /// [`AlreadySet`] with `error` if a value or error was set before.
    pub fn set_error(&self, error: E) -> Result<(), AlreadySet<E>> {
        self.complete(error, Err)
    }

    /// Protocol step 1.
    fn complete<V>(&self, given: V, wrap: fn(V) -> Result<T, E>) -> Result<(), AlreadySet<V>> {
        let mut waiters = lock(&self.inner.waiters);
        if self.inner.outcome.get().is_some() {
            return Err(AlreadySet(given));
        }
        // Sets are serialised by the mutex, so this initialises.
        self.inner.outcome.get_or_init(|| wrap(given));
        waiters.notify_all(|| ());
        Ok(())
    }

    /// True once a value or an error is set.
    pub fn is_ready(&self) -> bool {
        self.inner.outcome.get().is_some()
    }

    /// True if a value (not an error) is set.
    pub fn successful(&self) -> bool {
        matches!(self.inner.outcome.get(), Some(Ok(_)))
    }

    /// Waits until set and returns a reference to the outcome (no clone needed).
    pub fn wait(&self) -> &Result<T, E> {
        self.wait_until(None)
            .expect("AsyncResult::wait: a wait without deadline ended unset")
    }

    /// Waits at most `timeout`; the outcome, or `None` if still unset.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<&Result<T, E>> {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    /// Protocol step 2.
    fn wait_until(&self, deadline: Option<Instant>) -> Option<&Result<T, E>> {
        if let Some(r) = self.inner.outcome.get() {
            return Some(r);
        }
        let waiters = lock(&self.inner.waiters);
        if let Some(r) = self.inner.outcome.get() {
            return Some(r);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        // A set wakes every waiter: a wake-up consumed by a cancelled one is owed to
        // nobody, so there is nothing to pass on.
        wait(
            grove_scheduler::WaitReason::ASYNC_RESULT_WAIT,
            waiters,
            &self.inner.waiters,
            |w| w,
            deadline,
            |_, ()| {},
        );
        self.inner.outcome.get()
    }
}

impl<T: Clone, E: Clone> AsyncResult<T, E> {
    /// Waits until set and returns a clone of the value, or of the error.
    pub fn get(&self) -> Result<T, E> {
        self.wait().clone()
    }

    /// Waits at most `timeout`; a clone of the outcome, or `None` if still unset.
    pub fn get_timeout(&self, timeout: Duration) -> Option<Result<T, E>> {
        self.wait_timeout(timeout).cloned()
    }

    /// A clone of the outcome if set, without waiting (gevent's `get_nowait`).
    pub fn try_get(&self) -> Option<Result<T, E>> {
        self.inner.outcome.get().cloned()
    }
}

/// The error of setting an [`AsyncResult`] that is already set; holds what the failed
/// set was given. Nothing changed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AlreadySet<V>(pub V);

impl<V> AlreadySet<V> {
    /// The value (or error) the failed set was given.
    pub fn into_inner(self) -> V {
        self.0
    }
}

impl<V> fmt::Debug for AlreadySet<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AlreadySet(..)")
    }
}

impl<V> fmt::Display for AlreadySet<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AsyncResult is already set")
    }
}

impl<V> Error for AlreadySet<V> {}
