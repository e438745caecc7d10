//! `Channel`: a rendezvous (gevent's `gevent.queue.Channel`).

use std::fmt;
use std::time::Duration;

use super::error::{Closed, GetTimeoutError, PutTimeoutError, TryGetError, TryPutError};
use super::state::Inner;
use super::storage::Fifo;
use super::Iter;

/// A rendezvous: [`put`](Channel::put) waits until a getter takes the item, and
/// [`get`](Channel::get) waits until a putter gives one. Nothing is stored.
///
/// A queue of capacity 0, sharing [`Queue`](super::Queue)'s protocol: blocked
/// putters and getters are served first come, first served, items are handed over
/// directly, and cancellation never loses an item (a getter cancelled after it was
/// handed one passes it to the next getter, or leaves it for the next `get`).
///
/// ```
/// use grove::queue::Channel;
///
/// let rt = grove::Runtime::builder().workers(2).build().unwrap();
/// let ch = Channel::new();
/// let taker = {
///     let ch = ch.clone();
///     rt.spawn(move || ch.get().unwrap())
/// };
/// rt.block_on(move || ch.put("hello").unwrap()); // returns once taken
/// assert_eq!(taker.join().unwrap(), "hello");
/// ```
pub struct Channel<T> {
    inner: Inner<T, Fifo<T>>,
}

impl<T> Channel<T> {
    /// A new, open channel.
    pub fn new() -> Self {
        Channel {
            inner: Inner::new(0),
        }
    }

    put_and_get!(
        what: "channel",
        full: "until a getter takes it",
        empty: "until a putter gives one"
    );

    /// Closes the channel: blocked and later puts fail with their item back; blocked
    /// and later gets fail with [`Closed`]. Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }

    /// An iterator that [`get`](Self::get)s items until the channel is closed.
    pub fn iter(&self) -> Iter<'_, T, Fifo<T>> {
        Iter { inner: &self.inner }
    }
}

impl<T> Clone for Channel<T> {
    fn clone(&self) -> Self {
        Channel {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Default for Channel<T> {
    fn default() -> Self {
        Channel::new()
    }
}

impl<T> fmt::Debug for Channel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.debug("Channel", f)
    }
}

impl<'a, T> IntoIterator for &'a Channel<T> {
    type Item = T;
    type IntoIter = Iter<'a, T, Fifo<T>>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}
