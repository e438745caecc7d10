//! The scheduler's view of timers: a hook the runtime's owner plugs in.
//!
//! The scheduler knows nothing of the reactor (layering: both meet only through
//! `Waker`s), yet timeouts on joins, kills and `Timeout` scopes need timers. The
//! `grove` facade implements [`Timers`] with its reactor and passes it to
//! [`RuntimeBuilder::timers`](crate::RuntimeBuilder::timers).

use std::fmt;
use std::task::Waker;
use std::time::Instant;

/// A timer service: wake a `Waker` at a deadline, cancellably.
pub trait Timers: Send + Sync + fmt::Debug + 'static {
    /// Arranges for `waker` to be woken at (never before) `deadline`. Returns a key
    /// for [`cancel`](Self::cancel). A deadline already past may wake immediately.
    fn add(&self, deadline: Instant, waker: Waker) -> u128;
    /// Cancels a timer. A no-op if it fired already or the key is unknown.
    fn cancel(&self, key: u128);

    /// Deadlock detection: true if this service (and any I/O driver behind it) can wake
    /// nobody on its own: no pending timer, no task waiting for I/O. The default, `false`,
    /// keeps detection off: claiming quiet wrongly would interrupt a working program.
    fn is_quiet(&self) -> bool {
        false
    }

    /// Deadlock detection: kernel thread ids of the threads that fire these timers (and
    /// dispatch I/O). They may sleep in waits the check could not otherwise prove harmless
    /// (`epoll_wait`, timed waits); [`is_quiet`](Self::is_quiet) vouches for them instead.
    fn os_thread_ids(&self) -> Vec<u32> {
        Vec::new()
    }
}
