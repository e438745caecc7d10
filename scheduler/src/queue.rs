//! Run-queue types: `crossbeam-deque` normally, a lock-based stand-in under loom.
//!
//! crossbeam-deque is not loom-instrumented, so under `cfg(grove_loom)` the same
//! API subset is provided by `Mutex<VecDeque>`s. Loom then checks *our* protocols
//! (idle/search, park/unpark, inbox hand-off) on top of queues that are assumed
//! linearizable, which is what crossbeam's own tests establish for the real ones.

// Items are `pub` so that `__loom` can re-export them to the loom tests.
#![allow(unreachable_pub)]

#[cfg(not(grove_loom))]
pub use crossbeam_deque::{Injector, Steal, Stealer, Worker};

#[cfg(grove_loom)]
pub use self::mock::{Injector, Steal, Stealer, Worker};

#[cfg(grove_loom)]
mod mock {
    use std::collections::VecDeque;

    use loom::sync::{Arc, Mutex};

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

    /// Owner end of a FIFO deque.
    #[derive(Debug)]
    pub struct Worker<T>(Arc<Mutex<VecDeque<T>>>);

    /// Thief end of a [`Worker`].
    #[derive(Debug)]
    pub struct Stealer<T>(Arc<Mutex<VecDeque<T>>>);

    impl<T> Clone for Stealer<T> {
        fn clone(&self) -> Self {
            Stealer(self.0.clone())
        }
    }

    /// A multi-producer multi-consumer FIFO queue.
    #[derive(Debug)]
    pub struct Injector<T>(Mutex<VecDeque<T>>);

    impl<T> Worker<T> {
        /// A FIFO deque.
        pub fn new_fifo() -> Self {
            Worker(Arc::new(Mutex::new(VecDeque::new())))
        }
        /// A thief handle.
        pub fn stealer(&self) -> Stealer<T> {
            Stealer(self.0.clone())
        }
        /// Pushes to the back.
        pub fn push(&self, t: T) {
            self.0.lock().unwrap().push_back(t);
        }
        /// Pops from the front.
        pub fn pop(&self) -> Option<T> {
            self.0.lock().unwrap().pop_front()
        }
        /// True if empty.
        pub fn is_empty(&self) -> bool {
            self.0.lock().unwrap().is_empty()
        }
        /// Number of items.
        pub fn len(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }

    impl<T> Stealer<T> {
        /// Takes one item from the front.
        pub fn steal(&self) -> Steal<T> {
            match self.0.lock().unwrap().pop_front() {
                Some(t) => Steal::Success(t),
                None => Steal::Empty,
            }
        }
        /// Takes about half into `dest`, returning one of them.
        pub fn steal_batch_and_pop(&self, dest: &Worker<T>) -> Steal<T> {
            let mut src = self.0.lock().unwrap();
            let first = match src.pop_front() {
                Some(t) => t,
                None => return Steal::Empty,
            };
            let n = src.len() / 2;
            let mut dst = dest.0.lock().unwrap();
            dst.extend(src.drain(..n));
            Steal::Success(first)
        }
        /// True if empty.
        pub fn is_empty(&self) -> bool {
            self.0.lock().unwrap().is_empty()
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
            Injector(Mutex::new(VecDeque::new()))
        }
        /// Pushes to the back.
        pub fn push(&self, t: T) {
            self.0.lock().unwrap().push_back(t);
        }
        /// Takes one item from the front.
        pub fn steal(&self) -> Steal<T> {
            match self.0.lock().unwrap().pop_front() {
                Some(t) => Steal::Success(t),
                None => Steal::Empty,
            }
        }
        /// Takes a batch into `dest`, returning one item.
        pub fn steal_batch_and_pop(&self, dest: &Worker<T>) -> Steal<T> {
            let mut src = self.0.lock().unwrap();
            let first = match src.pop_front() {
                Some(t) => t,
                None => return Steal::Empty,
            };
            let n = src.len().min(16);
            let mut dst = dest.0.lock().unwrap();
            dst.extend(src.drain(..n));
            Steal::Success(first)
        }
        /// True if empty.
        pub fn is_empty(&self) -> bool {
            self.0.lock().unwrap().is_empty()
        }
        /// Number of items.
        pub fn len(&self) -> usize {
            self.0.lock().unwrap().len()
        }
    }
}
