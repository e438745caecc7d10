//! The one place this crate chooses between `std` and `loom` synchronization types.
//!
//! Protocol code (`state`, `idle`, `queue`, `spotlight`) imports its atomics, mutexes
//! and condvars from here, so building with `RUSTFLAGS="--cfg grove_loom"` swaps every
//! one of them for loom's model-checked versions without touching the protocol code
//! itself. The cfg is our own (not `loom`), so loom-aware dependencies such as tokio in
//! the benches are not switched too.

#[cfg(grove_loom)]
pub(crate) use loom::sync::{
    atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    Condvar, Mutex, MutexGuard,
};
#[cfg(grove_loom)]
pub(crate) use loom::thread::yield_now;

#[cfg(not(grove_loom))]
pub(crate) use std::sync::{
    atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering},
    Condvar, Mutex, MutexGuard,
};
#[cfg(not(grove_loom))]
pub(crate) use std::thread::yield_now;

/// Locks `m`, ignoring poison: the one copy of this helper in the scheduler.
///
/// grove never runs user code (a `Drop`, a `Clone`, a callback) under one of its own
/// locks, so a panic cannot leave the protected data half-updated, and a poisoned lock
/// still guards a consistent value. Works on `std`'s mutexes and on loom's alike.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
