//! Synchronization shim: `std` types normally, `loom` types under `cfg(grove_loom)`.
//!
//! Only the racy protocol types ([`ScheduledIo`](crate::scheduled_io::ScheduledIo),
//! [`TimerQueue`](crate::timer::TimerQueue) and [`Watch`](crate::watch::Watch)) take their atomics and locks from here, so that the
//! loom models in `loom-tests/tests/reactor.rs` explore every interleaving of them. The driver
//! (thread, `mio::Poll`, slab) uses `std` directly: it is never run inside a loom model.
//!
//! The cfg is our own (`grove_loom`, not `loom`), so loom-aware dependencies are not switched too.

use std::sync::PoisonError;

#[cfg(grove_loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicU64, AtomicUsize, Ordering},
    Mutex, MutexGuard,
};
#[cfg(not(grove_loom))]
pub(crate) use std::sync::{
    atomic::{AtomicU64, AtomicUsize, Ordering},
    Mutex, MutexGuard,
};

/// Locks `mutex`, ignoring poison.
///
/// Our critical sections never run user code (wakers are always woken after the guard is
/// dropped), so a poisoned lock can only come from a bug in this crate or an allocation failure;
/// the protected data is still consistent at every point where such a panic could start.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
