//! The one place this crate chooses between `std` and `loom` synchronization types.
//!
//! The wait list (`waitlist`) imports its `Mutex`, atomics and `UnsafeCell` from here, so building
//! with `RUSTFLAGS="--cfg grove_loom"` swaps them for loom's model-checked versions
//! without touching the protocol code (see `loom-tests/tests/waitlist.rs`). The
//! primitives built on it keep using `std` directly: under loom only the wait list
//! core is compiled.

#[cfg(grove_loom)]
pub(crate) use loom::cell::UnsafeCell;
#[cfg(grove_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, Ordering};
#[cfg(grove_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

#[cfg(not(grove_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, Ordering};
#[cfg(not(grove_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// `std`'s `UnsafeCell` with loom's closure API, so the wait list's cell accesses are
/// written once and race-checked under loom.
#[cfg(not(grove_loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(grove_loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> UnsafeCell<T> {
        UnsafeCell(std::cell::UnsafeCell::new(value))
    }

    /// Calls `f` with a raw pointer to the contents; the caller's `unsafe` block states
    /// why nobody else accesses them meanwhile.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

// loom's `Mutex::lock` returns std's `LockResult`, so poison is std's in both builds.
pub(crate) use std::sync::PoisonError;
