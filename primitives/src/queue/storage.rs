//! The three orders a queue can keep its items in.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;

pub(crate) mod sealed {
    use std::cmp::Ordering;
    use std::sync::Arc;

    use crate::loom::Mutex;
    use crate::waitlist::lock;

    /// A stored item: owned by the queue, or *lent* to `peek`s, which copy it with the
    /// queue's lock released (`T::clone` is user code, and no user code but a
    /// `PriorityQueue`'s `Ord` runs under that lock).
    ///
    /// A lent item sits behind its own mutex, so that one peek at a time (never a
    /// thread that does not hold the item's mutex) reads it: `T` need only be `Send`.
    /// That mutex is held only for one `T::clone`, one move out, or one comparison; a
    /// get or comparison that finds it held (a copy in progress on another thread)
    /// blocks its thread until the copy is done, which is why a `Clone` must not block.
    pub enum Slot<T> {
        /// The queue alone holds it.
        Owned(T),
        /// Shared with peeks; `None` once a get has taken it.
        Lent(Arc<Mutex<Option<T>>>),
    }

    impl<T> std::fmt::Debug for Slot<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(match self {
                Slot::Owned(_) => "Owned(..)",
                Slot::Lent(_) => "Lent(..)",
            })
        }
    }

    impl<T> Slot<T> {
        /// `f` on the item.
        pub fn with<R>(&self, f: impl FnOnce(&T) -> R) -> R {
            match self {
                Slot::Owned(item) => f(item),
                Slot::Lent(lent) => f(lock(lent)
                    .as_ref()
                    .expect("queue: a stored item is taken only when it leaves the queue")),
            }
        }

        /// The item, taken out of a slot just removed from the queue (call it with the
        /// queue's lock released: it may wait for a peek's `T::clone` of this item).
        pub fn into_item(self) -> T {
            match self {
                Slot::Owned(item) => item,
                Slot::Lent(lent) => lock(&lent)
                    .take()
                    .expect("queue: a stored item is taken only when it leaves the queue"),
            }
        }

        /// Lends the item (once; later peeks share the same loan) and returns the
        /// slot to store back plus the share a peek copies from.
        pub fn lend(self) -> (Slot<T>, Arc<Mutex<Option<T>>>) {
            let lent = match self {
                Slot::Owned(item) => Arc::new(Mutex::new(Some(item))),
                Slot::Lent(lent) => lent,
            };
            (Slot::Lent(lent.clone()), lent)
        }
    }

    // A priority queue orders slots by their items.
    impl<T: Ord> PartialEq for Slot<T> {
        fn eq(&self, other: &Self) -> bool {
            self.cmp(other) == Ordering::Equal
        }
    }
    impl<T: Ord> Eq for Slot<T> {}
    impl<T: Ord> PartialOrd for Slot<T> {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    impl<T: Ord> Ord for Slot<T> {
        fn cmp(&self, other: &Self) -> Ordering {
            self.with(|a| other.with(|b| a.cmp(b)))
        }
    }

    /// What the queue protocol needs from its storage. Private: only this module's
    /// orders implement it, so the protocol's invariants hold for every queue.
    pub trait Store<T>: Default {
        /// Adds an item (a put).
        fn push(&mut self, item: Slot<T>);
        /// Removes the next item (a get).
        fn pop(&mut self) -> Option<Slot<T>>;
        /// Puts an item back so that it is the next one `pop` returns (or, for a
        /// priority order, simply back in the heap): a getter that was handed an
        /// item and then cancelled returns it this way, and a peek that lends the
        /// next item puts it back where it was.
        fn unget(&mut self, item: Slot<T>);
        /// The item `pop` would return.
        fn peek(&self) -> Option<&Slot<T>>;
        /// Number of stored items.
        fn len(&self) -> usize;
    }
}

use sealed::Slot;

/// The order a [`GenericQueue`](super::GenericQueue) keeps its items in:
/// [`Fifo`], [`Lifo`] or [`Priority`]. Sealed: the queue protocol relies on exactly
/// these.
pub trait Storage<T>: sealed::Store<T> {}

/// First in, first out: [`Queue`](super::Queue)'s order.
pub struct Fifo<T>(VecDeque<Slot<T>>);

/// Last in, first out: [`LifoQueue`](super::LifoQueue)'s order.
pub struct Lifo<T>(Vec<Slot<T>>);

/// Smallest first (like Python's `heapq`, which gevent's `PriorityQueue` uses):
/// [`PriorityQueue`](super::PriorityQueue)'s order. Items that compare equal come
/// out in no particular order; pair them with a sequence number to keep FIFO among
/// equals, as with `heapq`.
pub struct Priority<T>(BinaryHeap<Reverse<Slot<T>>>);

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Fifo(VecDeque::new())
    }
}

impl<T> Default for Lifo<T> {
    fn default() -> Self {
        Lifo(Vec::new())
    }
}

impl<T: Ord> Default for Priority<T> {
    fn default() -> Self {
        Priority(BinaryHeap::new())
    }
}

/// `Debug` shows the length only (items need not be `Debug`).
macro_rules! debug_len {
    ($($name:ident),*) => {$(
        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).field("len", &self.0.len()).finish()
            }
        }
    )*};
}

debug_len!(Fifo, Lifo, Priority);

impl<T> sealed::Store<T> for Fifo<T> {
    fn push(&mut self, item: Slot<T>) {
        self.0.push_back(item);
    }
    fn pop(&mut self) -> Option<Slot<T>> {
        self.0.pop_front()
    }
    fn unget(&mut self, item: Slot<T>) {
        self.0.push_front(item);
    }
    fn peek(&self) -> Option<&Slot<T>> {
        self.0.front()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T> sealed::Store<T> for Lifo<T> {
    fn push(&mut self, item: Slot<T>) {
        self.0.push(item);
    }
    fn pop(&mut self) -> Option<Slot<T>> {
        self.0.pop()
    }
    fn unget(&mut self, item: Slot<T>) {
        self.0.push(item);
    }
    fn peek(&self) -> Option<&Slot<T>> {
        self.0.last()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T: Ord> sealed::Store<T> for Priority<T> {
    fn push(&mut self, item: Slot<T>) {
        self.0.push(Reverse(item));
    }
    fn pop(&mut self) -> Option<Slot<T>> {
        self.0.pop().map(|Reverse(item)| item)
    }
    fn unget(&mut self, item: Slot<T>) {
        self.0.push(Reverse(item));
    }
    fn peek(&self) -> Option<&Slot<T>> {
        self.0.peek().map(|Reverse(item)| item)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T> Storage<T> for Fifo<T> {}
impl<T> Storage<T> for Lifo<T> {}
impl<T: Ord> Storage<T> for Priority<T> {}
