//! Queues greenlets (and threads) pass items through — gevent's `gevent.queue`:
//! [`Queue`] (FIFO, with `JoinableQueue`'s `task_done`/`join`), [`LifoQueue`],
//! [`PriorityQueue`] (smallest first) and the rendezvous [`Channel`].
//!
//! # Vocabulary
//! A queue keeps its *items* in a [`Storage`] order ([`Fifo`], [`Lifo`],
//! [`Priority`]) behind one mutex, with a *capacity* (unbounded, `n ≥ 1`, or 0 for a
//! `Channel`). A *getter* blocked on an empty queue waits in a `WaitList` (the
//! crate's cancellation-safe FIFO of parked waiters, `waitlist.rs`) to be
//! handed an item. A *putter* blocked on a full queue leaves an *offer* — its item,
//! plus a one-waiter wait list of its own — in the queue's FIFO of putters, where a
//! getter can take the item without the putter running.
//!
//! # Rejected approaches
//! * *Wake and re-check* (gevent's `_unlock`: wake a getter, which then reads the
//!   queue). With greenlets on several cores, a greenlet running elsewhere can take
//!   the item before the woken getter runs: blocked getters are overtaken (unfair) and
//!   woken for nothing.
//! * *Putters wait for a free slot, item on their stack.* The item enters the queue
//!   only when the putter runs, so two admitted putters on different cores can store
//!   their items in the other order, and a `get` on a full queue leaves it
//!   momentarily not full.
//!
//! # Chosen: direct hand-off, both ways
//! Two invariants, kept under the queue's mutex:
//! * **I1**: getters wait only while no item is stored;
//! * **I2**: putters wait only while the queue is full (`len ≥ capacity`).
//!
//! So a new caller can never overtake a blocked one, and service is FIFO both ways.
//!
//! Put:
//! 1. **P1** if a getter waits, hand the item to the first one (by I1 nothing is
//!    stored, so FIFO order of items holds); done.
//! 2. **P2** if there is room, store the item; done.
//! 3. **P3** full: queue an offer holding the item; wait on the offer's own list.
//! 4. **P4** told (the offer left the queue): the item is gone (taken: done) or still
//!    in the offer (closed out: `Closed(item)`).
//! 5. **P5** deadline or unwinding: *withdraw* under the queue lock — if the offer is
//!    still queued, remove it and take the item back; if a getter took it meanwhile,
//!    the put happened.
//!
//! Get:
//! 1. **G1** if an item is stored, take it; then admit the first blocked putters'
//!    items into the room it left (taking each from its offer and telling the putter)
//!    — so a `get` on a full bounded queue leaves it full, in putter order.
//! 2. **G2** nothing stored but a putter waits (only a `Channel`, by I2): take its
//!    item from its offer.
//! 3. **G3** otherwise wait in the getters' list to be handed an item (P1).
//! 4. **G4** told the queue closed: take an item a cancelled getter gave back since
//!    (G5), else `Closed`.
//! 5. **G5** a getter cancelled *after* it was handed an item passes it on (the
//!    `WaitList` protocol's `pass_on`): to the next blocked getter, or back to the
//!    *front* of the queue (`Storage::unget`) — even if that briefly makes a bounded
//!    queue hold `capacity + 1` items: an item is never lost.
//!
//! # Cancellation (kill, `Timeout`, a deadline)
//! * A getter cancelled before an item reached it just leaves the getters' list; one
//!   cancelled after keeps nothing (G5). Every item put is received exactly once.
//! * A putter's item is in exactly one place at a time: its offer in the queue, or
//!   (after P5 took it out) its own hands. A timed-out putter gets it back in the
//!   error; a killed putter (or one unwound by a `Timeout` scope) drops it with its
//!   stack. A putter whose item was taken just before its deadline or kill has put
//!   it: `put_timeout` returns `Ok`, a kill unwinds with the item in the queue.
//!
//! # User code and the queue's lock
//! No user code runs under the queue's lock but a [`PriorityQueue`]'s `Ord` (a heap
//! must compare) and [`try_peek_with`](GenericQueue::try_peek_with)'s closure (its
//! documented contract). Items are moved, never cloned or dropped, under it: `peek`
//! *lends* the next item (it stays in place, behind a mutex of its own) and clones it
//! with the queue unlocked, and a get takes a lent item out once the queue is unlocked.
//! So a `Clone` that uses the queue, or panics, harms nobody; one that blocks holds up
//! only a get of that same item on another thread (its thread waits for the copy). An
//! `Ord` that panics (say `partial_cmp(..).unwrap()` meeting a NaN) panics the put or
//! get that ran it; the queue stays consistent and usable (the item being put is stored
//! and counted for `task_done`), though the heap's order is then only as good as that
//! `Ord`.
//!
//! # Closing (gevent 3.13 / Python 3.13 `shutdown`)
//! [`close`](GenericQueue::close) makes later puts fail with the item back, hands
//! every blocked putter its item back (`Closed(item)`), and wakes blocked getters,
//! which return `Closed` — getters still receive what is stored first: a get fails
//! only on a closed queue that is drained. `task_done`/`join` are not affected.

/// The put/get family [`GenericQueue`] and [`Channel`] share (one protocol, in
/// `state.rs`), with docs saying what makes each wait.
macro_rules! put_and_get {
    (what: $what:literal, full: $full:literal, empty: $empty:literal) => {
        #[doc = concat!("Puts `item`, waiting ", $full, ". Fails, giving the item back, if the ")]
        #[doc = concat!($what, " is (or gets) closed first.")]
        pub fn put(&self, item: T) -> Result<(), Closed<T>> {
            self.inner.put(item)
        }

        /// Puts `item` if that needs no waiting (gevent's `put_nowait`); otherwise
        /// gives it back in `Full` or `Closed`.
        pub fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
            self.inner.try_put(item)
        }

        /// [`put`](Self::put), waiting at most `timeout`; on timeout or close the
        /// item comes back in the error.
        pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
            self.inner.put_timeout(item, timeout)
        }

        #[doc = concat!("Takes the next item, waiting ", $empty, ". Fails only once the ")]
        #[doc = concat!($what, " is closed and drained.")]
        pub fn get(&self) -> Result<T, Closed> {
            self.inner.get()
        }

        /// Takes the next item if that needs no waiting (gevent's `get_nowait`).
        pub fn try_get(&self) -> Result<T, TryGetError> {
            self.inner.try_get()
        }

        /// [`get`](Self::get), waiting at most `timeout`.
        pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
            self.inner.get_timeout(timeout)
        }

        /// True once [`close`](Self::close) has been called.
        pub fn is_closed(&self) -> bool {
            self.inner.is_closed()
        }

        /// Number of getters blocked waiting for an item (gevent's `getters`).
        pub fn getting(&self) -> usize {
            self.inner.getting()
        }

        /// Number of putters blocked waiting to hand over an item (gevent's `putters`).
        pub fn putting(&self) -> usize {
            self.inner.putting()
        }
    };
}

mod channel;
mod error;
mod state;
mod storage;

use std::fmt;
use std::time::Duration;

pub use self::channel::Channel;
pub use self::error::{
    Closed, GetTimeoutError, PutTimeoutError, TaskDoneError, TryGetError, TryPutError,
};
use self::state::Inner;
pub use self::storage::{Fifo, Lifo, Priority, Storage};

/// A queue of items handed between greenlets (and threads), in the order `S`:
/// use it through [`Queue`], [`LifoQueue`] or [`PriorityQueue`].
///
/// Cheap to clone: clones share one queue. Blocking calls park a greenlet (its worker
/// runs others) or block a plain OS thread; any call works from anywhere. Blocked
/// getters and putters are served first come, first served (see the
/// [module docs](self) for the protocol and what cancellation does). Every queue is
/// joinable (gevent's `JoinableQueue`): [`task_done`](Self::task_done) and
/// [`join`](Self::join).
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
/// use std::sync::Arc;
///
/// use grove::queue::Queue;
///
/// let rt = grove::Runtime::builder().workers(2).build().unwrap();
/// let jobs = Queue::new();
/// for n in 1..=10 {
///     jobs.put(n).unwrap();
/// }
/// let total = Arc::new(AtomicU64::new(0));
/// for _ in 0..3 {
///     let (jobs, total) = (jobs.clone(), total.clone());
///     rt.spawn(move || {
///         for n in &jobs {
///             total.fetch_add(n, Relaxed);
///             jobs.task_done().unwrap();
///         }
///     });
/// }
/// rt.block_on(move || jobs.join()); // every job taken *and* marked done
/// assert_eq!(total.load(Relaxed), 55);
/// ```
pub struct GenericQueue<T, S> {
    inner: Inner<T, S>,
}

/// A first-in, first-out queue (gevent's `Queue` and `JoinableQueue`).
///
/// ```
/// use grove::queue::Queue;
///
/// let rt = grove::Runtime::builder().workers(2).build().unwrap();
/// let q = Queue::bounded(2);
/// let producer = {
///     let q = q.clone();
///     rt.spawn(move || {
///         for i in 0..5 {
///             q.put(i).unwrap(); // waits while two items are queued
///         }
///         q.close();
///     })
/// };
/// let got: Vec<i32> = rt.block_on(move || q.iter().collect());
/// assert_eq!(got, [0, 1, 2, 3, 4]);
/// producer.join().unwrap();
/// ```
pub type Queue<T> = GenericQueue<T, Fifo<T>>;

/// A last-in, first-out queue (gevent's `LifoQueue`).
///
/// ```
/// use grove::queue::LifoQueue;
///
/// let q = LifoQueue::new();
/// for i in 1..=3 {
///     q.put(i).unwrap();
/// }
/// assert_eq!(q.try_get(), Ok(3));
/// assert_eq!(q.try_get(), Ok(2));
/// ```
pub type LifoQueue<T> = GenericQueue<T, Lifo<T>>;

/// A queue that hands out its smallest item first (gevent's `PriorityQueue`, built
/// on Python's `heapq`). Use `std::cmp::Reverse` for largest first, and
/// `(priority, sequence, item)` tuples to keep FIFO order among equal priorities.
///
/// ```
/// use grove::queue::PriorityQueue;
///
/// let rt = grove::Runtime::builder().workers(2).build().unwrap();
/// let q = PriorityQueue::new();
/// for job in [(2, "write"), (0, "urgent"), (1, "read")] {
///     q.put(job).unwrap();
/// }
/// let first = rt.block_on(move || q.get().unwrap());
/// assert_eq!(first, (0, "urgent"));
/// ```
pub type PriorityQueue<T> = GenericQueue<T, Priority<T>>;

impl<T, S: Storage<T>> GenericQueue<T, S> {
    /// An unbounded queue: `put` never blocks.
    pub fn new() -> Self {
        GenericQueue {
            inner: Inner::new(usize::MAX),
        }
    }

    /// A queue holding at most `capacity` items: `put` blocks while it is full.
    ///
    /// # Panics
    /// If `capacity` is 0: a queue needs room for one item (Python's `maxsize=0`
    /// means unbounded, which is [`new`](Self::new); a rendezvous is a [`Channel`]).
    #[track_caller]
    pub fn bounded(capacity: usize) -> Self {
        assert!(
            capacity > 0,
            "Queue::bounded(0): a queue needs room for at least one item \
             (use Queue::new for unbounded, Channel for a rendezvous)"
        );
        GenericQueue {
            inner: Inner::new(capacity),
        }
    }

    put_and_get!(
        what: "queue",
        full: "while the queue is full",
        empty: "while the queue is empty"
    );

    /// A copy of the next item, without taking it; waits until an item is stored
    /// (gevent's `peek`). While getters are blocked, items go straight to them and are
    /// never stored, so a peek waits on.
    ///
    /// The copy (`T::clone`) is made with the queue unlocked, so a `Clone` impl may use
    /// the queue or panic without holding up anyone else's put or get. Only that one
    /// item is held while it is copied: a get that takes it (or a [`PriorityQueue`] put
    /// or get comparing with it) on another thread waits for the copy to finish.
    pub fn peek(&self) -> Result<T, Closed>
    where
        T: Clone,
    {
        self.inner.peek()
    }

    /// A copy of the next item, if one is stored.
    pub fn try_peek(&self) -> Result<T, TryGetError>
    where
        T: Clone,
    {
        self.inner.try_peek()
    }

    /// [`peek`](Self::peek), waiting at most `timeout`.
    pub fn peek_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError>
    where
        T: Clone,
    {
        self.inner.peek_timeout(timeout)
    }

    /// `f` applied to the next item, if one is stored (for items that are not
    /// `Clone`). Unlike [`peek`](Self::peek), `f` runs under the queue's lock: it must
    /// not use the queue, nor block.
    pub fn try_peek_with<R>(&self, f: impl FnOnce(&T) -> R) -> Result<R, TryGetError> {
        self.inner.try_peek_with(f)
    }

    /// Number of items stored (not counting those held by blocked putters).
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True if no item is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if a `put` would have to wait (gevent's `full()`).
    pub fn is_full(&self) -> bool {
        self.len() >= self.inner.capacity()
    }

    /// The most items the queue stores, or `None` if unbounded.
    pub fn capacity(&self) -> Option<usize> {
        Some(self.inner.capacity()).filter(|&c| c != usize::MAX)
    }

    /// Closes the queue (gevent's and Python 3.13's `shutdown()`): later puts fail with
    /// their item back, blocked putters get theirs back, and gets fail with
    /// [`Closed`] once the stored items are drained. Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Marks one item taken from the queue as processed (gevent's
    /// `JoinableQueue.task_done`); when every item put has been marked, blocked
    /// [`join`](Self::join)s return. Called more times than items were put, it fails.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        self.inner.task_done()
    }

    /// Waits until every item put has been marked done with
    /// [`task_done`](Self::task_done); returns at once if none is outstanding.
    pub fn join(&self) {
        self.inner.join(None);
    }

    /// [`join`](Self::join), waiting at most `timeout`; true if every item is done.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.inner.join(Some(timeout))
    }

    /// Items put and not yet marked done (gevent's `unfinished_tasks`).
    pub fn unfinished_tasks(&self) -> usize {
        self.inner.unfinished()
    }

    /// An iterator that [`get`](Self::get)s items until the queue is closed and
    /// drained (gevent's `for item in queue`, which ends at `StopIteration`).
    pub fn iter(&self) -> Iter<'_, T, S> {
        Iter { inner: &self.inner }
    }
}

impl<T, S> Clone for GenericQueue<T, S> {
    fn clone(&self) -> Self {
        GenericQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T, S: Storage<T>> Default for GenericQueue<T, S> {
    /// An unbounded queue.
    fn default() -> Self {
        GenericQueue::new()
    }
}

impl<T, S: Storage<T>> fmt::Debug for GenericQueue<T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.debug("Queue", f)
    }
}

impl<'a, T, S: Storage<T>> IntoIterator for &'a GenericQueue<T, S> {
    type Item = T;
    type IntoIter = Iter<'a, T, S>;

    fn into_iter(self) -> Iter<'a, T, S> {
        self.iter()
    }
}

/// Gets items until the queue (or [`Channel`]) is closed and drained; from
/// [`GenericQueue::iter`] or [`Channel::iter`].
pub struct Iter<'a, T, S> {
    inner: &'a Inner<T, S>,
}

impl<T, S: Storage<T>> Iterator for Iter<'_, T, S> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.inner.get().ok()
    }
}

impl<T, S: Storage<T>> fmt::Debug for Iter<'_, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.debug("Iter", f)
    }
}
