//! The scheduler's view of timers: a hook the runtime's owner plugs in.
//!
//! The scheduler knows nothing of the reactor (layering: both meet only through
//! `Waker`s), yet timeouts on joins, kills and `Timeout` scopes need timers. The
//! runtime grove users build (grove-primitives' `runtime` module, re-exported by `grove`)
//! implements [`Timers`] with its reactor and passes it to
//! [`RuntimeBuilder::timers`](crate::RuntimeBuilder::timers). A timer is named by an opaque
//! [`TimerKey`], into which the service packs its own key.

use std::fmt;
use std::task::Waker;
use std::time::Instant;

/// A timer service: wake a `Waker` at a deadline, cancellably.
pub trait Timers: Send + Sync + fmt::Debug + 'static {
    /// Arranges for `waker` to be woken at (never before) `deadline`. Returns a key
    /// for [`cancel`](Self::cancel). A deadline already past may wake immediately.
    fn add(&self, deadline: Instant, waker: Waker) -> TimerKey;
    /// Cancels a timer. A no-op if it fired already or the key is unknown.
    fn cancel(&self, key: TimerKey);

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

/// Names one timer of a [`Timers`] service, for [`Timers::cancel`]. Opaque to the
/// scheduler: the service packs its own key into it ([`from_raw`](Self::from_raw)) and
/// unpacks it on cancel ([`to_raw`](Self::to_raw)); grove's reactor packs its
/// `grove_reactor::TimerKey` this way.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerKey(u128);

impl TimerKey {
    /// A key from the service's own representation.
    pub const fn from_raw(raw: u128) -> TimerKey {
        TimerKey(raw)
    }

    /// The service's own representation, as given to [`from_raw`](Self::from_raw).
    pub const fn to_raw(self) -> u128 {
        self.0
    }
}

impl fmt::Debug for TimerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TimerKey({:#x})", self.0)
    }
}
