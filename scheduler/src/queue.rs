//! Run-queue types: `crossbeam-deque` normally, a lock-based stand-in under loom.
//!
//! crossbeam-deque is not loom-instrumented, so under `cfg(grove_loom)` the same
//! API subset is provided by `Mutex<VecDeque>`s whose emptiness is read without the lock,
//! as crossbeam reads it from atomic indices (see `Deque` below). Loom then checks *our*
//! protocols (idle/search, park/unpark, inbox hand-off, shutdown drains) on top of queues
//! that are assumed linearizable, which is what crossbeam's own tests establish for the
//! real ones.

// Items are `pub` so that `__loom` can re-export them to the loom tests.
#![allow(unreachable_pub)]

#[cfg(not(grove_loom))]
pub use crossbeam_deque::{Injector, Steal, Stealer, Worker};

#[cfg(grove_loom)]
pub use self::mock::{Injector, Steal, Stealer, Worker};

#[cfg(grove_loom)]
mod mock {
    use std::collections::VecDeque;

    use loom::sync::atomic::{fence, AtomicUsize, Ordering};
    use loom::sync::{Arc, Mutex, MutexGuard};

    /// Result of a steal attempt (the mock never reports `Retry`).
    #[derive(Debug)]
    pub enum Steal<T> {
        /// The queue was empty.
        Empty,
        /// An item was taken.
        Success(T),
        /// Lost a race; try again.
        Retry,
    }

    impl<T> Steal<T> {
        /// The stolen item, if any.
        pub fn success(self) -> Option<T> {
            match self {
                Steal::Success(t) => Some(t),
                _ => None,
            }
        }
    }

    /// Items under a lock, and their count in an atomic written under it.
    ///
    /// Emptiness is answered from the count **without the lock**, as crossbeam answers it
    /// from its indices: a lock there would order a push against a concurrent `is_empty`
    /// by itself and hide a missing fence in the protocols (the idle protocol's StoreLoad
    /// fence before `worker_to_notify`, the `gate` fences). crossbeam's
    /// `Stealer::is_empty` puts a `fence(SeqCst)` between its loads and
    /// `Injector::is_empty` uses `SeqCst` loads, which loom models only as `Acquire`: the
    /// fence stands in for both.
    #[derive(Debug)]
    struct Deque<T> {
        items: Mutex<VecDeque<T>>,
        len: AtomicUsize,
    }

    impl<T> Deque<T> {
        fn new() -> Deque<T> {
            Deque {
                items: Mutex::new(VecDeque::new()),
                len: AtomicUsize::new(0),
            }
        }

        fn lock(&self) -> MutexGuard<'_, VecDeque<T>> {
            self.items.lock().unwrap()
        }

        fn set_len(&self, q: &VecDeque<T>) {
            self.len.store(q.len(), Ordering::Release);
        }

        fn push(&self, t: T) {
            let mut q = self.lock();
            q.push_back(t);
            self.set_len(&q);
        }

        /// The owner's pop: emptiness first, from the count (no fence: the owner's own
        /// pushes are ordered before it by program order).
        fn pop(&self) -> Option<T> {
            if self.len.load(Ordering::Acquire) == 0 {
                return None;
            }
            let mut q = self.lock();
            let t = q.pop_front();
            self.set_len(&q);
            t
        }

        /// A thief's steal: emptiness first, without the lock (crossbeam's fast path).
        fn steal(&self) -> Steal<T> {
            if self.is_empty() {
                return Steal::Empty;
            }
            let mut q = self.lock();
            let t = q.pop_front();
            self.set_len(&q);
            match t {
                Some(t) => Steal::Success(t),
                None => Steal::Empty,
            }
        }

        /// Takes one item and moves `batch(left)` of the rest into `dest`.
        fn steal_batch_and_pop(&self, dest: &Deque<T>, batch: fn(usize) -> usize) -> Steal<T> {
            if self.is_empty() {
                return Steal::Empty;
            }
            let mut src = self.lock();
            let Some(first) = src.pop_front() else {
                return Steal::Empty;
            };
            let n = batch(src.len());
            if n > 0 {
                let mut dst = dest.lock();
                dst.extend(src.drain(..n));
                dest.set_len(&dst);
            }
            self.set_len(&src);
            Steal::Success(first)
        }

        fn is_empty(&self) -> bool {
            fence(Ordering::SeqCst);
            self.len.load(Ordering::Acquire) == 0
        }

        fn len(&self) -> usize {
            self.len.load(Ordering::Acquire)
        }
    }

    /// Owner end of a FIFO deque.
    #[derive(Debug)]
    pub struct Worker<T>(Arc<Deque<T>>);

    /// Thief end of a [`Worker`].
    #[derive(Debug)]
    pub struct Stealer<T>(Arc<Deque<T>>);

    impl<T> Clone for Stealer<T> {
        fn clone(&self) -> Self {
            Stealer(self.0.clone())
        }
    }

    /// A multi-producer multi-consumer FIFO queue.
    #[derive(Debug)]
    pub struct Injector<T>(Deque<T>);

    impl<T> Worker<T> {
        /// A FIFO deque.
        pub fn new_fifo() -> Self {
            Worker(Arc::new(Deque::new()))
        }
        /// A thief handle.
        pub fn stealer(&self) -> Stealer<T> {
            Stealer(self.0.clone())
        }
        /// Pushes to the back.
        pub fn push(&self, t: T) {
            self.0.push(t);
        }
        /// Pops from the front.
        pub fn pop(&self) -> Option<T> {
            self.0.pop()
        }
        /// True if empty (no lock).
        pub fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
        /// Number of items.
        pub fn len(&self) -> usize {
            self.0.len()
        }
    }

    impl<T> Stealer<T> {
        /// Takes one item from the front.
        pub fn steal(&self) -> Steal<T> {
            self.0.steal()
        }
        /// Takes about half into `dest`, returning one of them.
        pub fn steal_batch_and_pop(&self, dest: &Worker<T>) -> Steal<T> {
            self.0.steal_batch_and_pop(&dest.0, |left| left / 2)
        }
        /// True if empty (no lock).
        pub fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
    }

    impl<T> Default for Injector<T> {
        fn default() -> Self {
            Injector::new()
        }
    }

    impl<T> Injector<T> {
        /// An empty queue.
        pub fn new() -> Self {
            Injector(Deque::new())
        }
        /// Pushes to the back.
        pub fn push(&self, t: T) {
            self.0.push(t);
        }
        /// Takes one item from the front.
        pub fn steal(&self) -> Steal<T> {
            self.0.steal()
        }
        /// Takes a batch into `dest`, returning one item.
        pub fn steal_batch_and_pop(&self, dest: &Worker<T>) -> Steal<T> {
            self.0.steal_batch_and_pop(&dest.0, |left| left.min(16))
        }
        /// True if empty (no lock).
        pub fn is_empty(&self) -> bool {
            self.0.is_empty()
        }
        /// Number of items.
        pub fn len(&self) -> usize {
            self.0.len()
        }
    }
}
