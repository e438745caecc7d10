//! One small error type per queue operation. Every error that ends a put carries the
//! item back to the caller ([`into_inner`](Closed::into_inner)), so a failed put
//! never loses it.

use std::error::Error;
use std::fmt;

/// The queue was [closed](super::GenericQueue::close).
///
/// From a put (`Closed<T>`), it carries the item that was not put. From a get or a
/// peek (`Closed`, i.e. `Closed<()>`), it means the queue is closed *and* drained:
/// no item will ever come.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Closed<T = ()>(pub T);

impl<T> Closed<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// Why [`try_put`](super::GenericQueue::try_put) failed; carries the item back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TryPutError<T> {
    /// The queue is full (a [`Channel`](super::Channel): no getter is waiting).
    Full(T),
    /// The queue is closed.
    Closed(T),
}

/// Why [`put_timeout`](super::GenericQueue::put_timeout) failed; carries the item back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PutTimeoutError<T> {
    /// The queue stayed full (a [`Channel`](super::Channel): no getter came) until the
    /// deadline.
    Timeout(T),
    /// The queue is closed (or was closed while the put waited).
    Closed(T),
}

/// Why [`try_get`](super::GenericQueue::try_get) (or `try_peek`) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryGetError {
    /// The queue is empty (a [`Channel`](super::Channel): no putter is waiting).
    Empty,
    /// The queue is closed and drained.
    Closed,
}

/// Why [`get_timeout`](super::GenericQueue::get_timeout) (or `peek_timeout`) failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetTimeoutError {
    /// No item came before the deadline.
    Timeout,
    /// The queue is closed and drained.
    Closed,
}

/// [`task_done`](super::GenericQueue::task_done) was called more times than items
/// were put (Python's `ValueError: task_done() called too many times`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskDoneError;

/// The methods, `Debug`, `Display` and `Error` of a two-way error enum; with `<T>`,
/// both variants carry the item (`into_inner`) and `Debug` does not need `T: Debug`
/// (as crossbeam's errors do), so every error is an `Error` whatever the item type.
macro_rules! two_way_error {
    ($name:ident<T>: $a:ident($is_a:ident, $msg_a:expr), $b:ident($is_b:ident, $msg_b:expr)) => {
        impl<T> $name<T> {
            /// The item that was not put.
            pub fn into_inner(self) -> T {
                match self {
                    $name::$a(item) | $name::$b(item) => item,
                }
            }
            two_way_error!(@is $name, $a($is_a, (_)), $b($is_b, (_)));
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $name::$a(_) => concat!(stringify!($a), "(..)"),
                    $name::$b(_) => concat!(stringify!($b), "(..)"),
                })
            }
        }

        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $name::$a(_) => $msg_a,
                    $name::$b(_) => $msg_b,
                })
            }
        }

        impl<T> Error for $name<T> {}
    };
    ($name:ident: $a:ident($is_a:ident, $msg_a:expr), $b:ident($is_b:ident, $msg_b:expr)) => {
        impl $name {
            two_way_error!(@is $name, $a($is_a, ()), $b($is_b, ()));
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $name::$a => $msg_a,
                    $name::$b => $msg_b,
                })
            }
        }

        impl Error for $name {}
    };
    (@is $name:ident, $($v:ident($is:ident, ($($pat:tt)*))),*) => {$(
        #[doc = concat!("True if this is [`", stringify!($v), "`](", stringify!($name), "::", stringify!($v), ").")]
        pub fn $is(&self) -> bool {
            matches!(self, $name::$v $(($pat))*)
        }
    )*};
}

const CLOSED: &str = "the queue is closed";
const FULL: &str = "the queue is full";
const EMPTY: &str = "the queue is empty";
const TIMEOUT: &str = "timed out waiting on the queue";

two_way_error!(TryPutError<T>: Full(is_full, FULL), Closed(is_closed, CLOSED));
two_way_error!(PutTimeoutError<T>: Timeout(is_timeout, TIMEOUT), Closed(is_closed, CLOSED));
two_way_error!(TryGetError: Empty(is_empty, EMPTY), Closed(is_closed, CLOSED));
two_way_error!(GetTimeoutError: Timeout(is_timeout, TIMEOUT), Closed(is_closed, CLOSED));

impl<T> fmt::Debug for Closed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Closed(..)")
    }
}

impl<T> fmt::Display for Closed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(CLOSED)
    }
}

impl fmt::Display for TaskDoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("task_done() called more times than items were put")
    }
}

impl<T> Error for Closed<T> {}
impl Error for TaskDoneError {}
