//! The three orders a queue can keep its items in.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;

pub(crate) mod sealed {
    /// What the queue protocol needs from its storage. Private: only this module's
    /// orders implement it, so the protocol's invariants hold for every queue.
    pub trait Store<T>: Default {
        /// Adds an item (a put).
        fn push(&mut self, item: T);
        /// Removes the next item (a get).
        fn pop(&mut self) -> Option<T>;
        /// Puts an item back so that it is the next one `pop` returns (or, for a
        /// priority order, simply back in the heap): a getter that was handed an
        /// item and then cancelled returns it this way.
        fn unget(&mut self, item: T);
        /// The item `pop` would return.
        fn peek(&self) -> Option<&T>;
        /// Number of stored items.
        fn len(&self) -> usize;
    }
}

/// The order a [`GenericQueue`](super::GenericQueue) keeps its items in:
/// [`Fifo`], [`Lifo`] or [`Priority`]. Sealed: the queue protocol relies on exactly
/// these.
pub trait Storage<T>: sealed::Store<T> {}

/// First in, first out: [`Queue`](super::Queue)'s order.
pub struct Fifo<T>(VecDeque<T>);

/// Last in, first out: [`LifoQueue`](super::LifoQueue)'s order.
pub struct Lifo<T>(Vec<T>);

/// Smallest first (like Python's `heapq`, which gevent's `PriorityQueue` uses):
/// [`PriorityQueue`](super::PriorityQueue)'s order. Items that compare equal come
/// out in no particular order; pair them with a sequence number to keep FIFO among
/// equals, as with `heapq`.
pub struct Priority<T>(BinaryHeap<Reverse<T>>);

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
    fn push(&mut self, item: T) {
        self.0.push_back(item);
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop_front()
    }
    fn unget(&mut self, item: T) {
        self.0.push_front(item);
    }
    fn peek(&self) -> Option<&T> {
        self.0.front()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T> sealed::Store<T> for Lifo<T> {
    fn push(&mut self, item: T) {
        self.0.push(item);
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop()
    }
    fn unget(&mut self, item: T) {
        self.0.push(item);
    }
    fn peek(&self) -> Option<&T> {
        self.0.last()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T: Ord> sealed::Store<T> for Priority<T> {
    fn push(&mut self, item: T) {
        self.0.push(Reverse(item));
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop().map(|Reverse(item)| item)
    }
    fn unget(&mut self, item: T) {
        self.0.push(Reverse(item));
    }
    fn peek(&self) -> Option<&T> {
        self.0.peek().map(|Reverse(item)| item)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T> Storage<T> for Fifo<T> {}
impl<T> Storage<T> for Lifo<T> {}
impl<T: Ord> Storage<T> for Priority<T> {}
