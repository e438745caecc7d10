//! grove's primitives: what greenlets block on, and the runtime that wires the scheduler
//! to the reactor ([`Runtime`], [`run`]).
//!
//! Every primitive here is built from the same two pieces: the scheduler's
//! [`park`](grove_scheduler::park) / [`current_waker`](grove_scheduler::current_waker)
//! and, for anything involving time or I/O, the reactor's timers and readiness
//! (reached through the runtime's extension slot, see [`reactor`]). Because both
//! speak `std::task::Waker`, the same code works whether the waiter is a greenlet
//! (it parks, its worker runs others) or a plain OS thread (it blocks).

#[cfg(not(grove_loom))]
mod async_result;
pub mod blocking;
#[cfg(not(grove_loom))]
mod event;
mod lock;
mod loom;
#[cfg(not(grove_loom))]
pub mod net;
#[cfg(not(grove_loom))]
mod pool;
/// Under loom, only the pool's member and slot accounting (generic over the member).
#[cfg(grove_loom)]
mod pool {
    pub(crate) mod members;
}
pub mod queue;
#[cfg(not(grove_loom))]
pub mod runtime;
mod semaphore;
#[cfg(not(grove_loom))]
pub mod server;
#[cfg(not(grove_loom))]
pub mod signal;
#[cfg(not(grove_loom))]
mod time;
mod waitlist;

#[cfg(not(grove_loom))]
pub use crate::async_result::{AlreadySet, AsyncResult};
#[cfg(not(grove_loom))]
pub use crate::event::Event;
pub use crate::lock::{Lock, LockGuard, NotOwner, RLock, RLockGuard};
#[cfg(not(grove_loom))]
pub use crate::pool::{Group, ImapUnordered, Pool, PoolFull};
pub use crate::queue::{Channel, LifoQueue, PriorityQueue, Queue};
#[cfg(not(grove_loom))]
pub use crate::runtime::{run, Metrics, Runtime, RuntimeBuilder};
pub use crate::semaphore::{BoundedSemaphore, OverRelease, Semaphore, SemaphoreGuard};
#[cfg(not(grove_loom))]
pub use crate::time::{sleep, sleep_until};

/// The wait list's protocol core and the loom build's park token, exposed to
/// `loom-tests` only (built with `--cfg grove_loom`). The primitives modelled there
/// (`Semaphore`, `Lock`, the queues) are the public types themselves.
#[cfg(grove_loom)]
#[doc(hidden)]
pub mod __loom {
    pub use crate::loom::{Killed, Parker};
    pub use crate::pool::members::{Core as PoolCore, Member};
    pub use crate::waitlist::{lock, wait_with, WaitList};
}

/// The reactor of the runtime running the current greenlet.
///
/// Panics with a message naming `what` when called outside a grove runtime, or on a
/// runtime built without a reactor (only [`Runtime`] attaches one).
#[cfg(not(grove_loom))]
pub fn reactor(what: &str) -> grove_reactor::Handle {
    current_reactor().unwrap_or_else(|| panic!("{}", not_in_runtime(what)))
}

/// Runs `f` with the reactor of the runtime running the current greenlet (`None` outside
/// one), borrowed: [`reactor`] clones the handle, an `Arc` whose count every worker and the
/// reactor thread would then increment and decrement on each call, a cache line bouncing
/// between cores (under 100k sleepers, the decrement was the hottest instruction of
/// `sleep`).
#[cfg(not(grove_loom))]
pub(crate) fn with_reactor<R>(f: impl FnOnce(Option<&grove_reactor::Handle>) -> R) -> R {
    grove_scheduler::with_extension(|ext| {
        f(ext.and_then(|e| e.downcast_ref::<grove_reactor::Handle>()))
    })
}

/// The reactor of the runtime running the current greenlet, if any: [`Runtime`] stores
/// its handle as the scheduler's extension.
#[cfg(not(grove_loom))]
pub(crate) fn current_reactor() -> Option<grove_reactor::Handle> {
    grove_scheduler::with_extension(|ext| {
        ext.and_then(|e| e.downcast_ref::<grove_reactor::Handle>())
            .cloned()
    })
}

/// The message for a greenlet-only call made outside a runtime, naming the call `what`
/// (the scheduler's, so every crate of grove says it alike).
#[cfg(not(grove_loom))]
pub(crate) use grove_scheduler::not_in_runtime_message as not_in_runtime;
