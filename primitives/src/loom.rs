//! The one place this crate chooses between `std` and `loom` synchronization types.
//!
//! The wait list (`waitlist`) imports its `Arc` and `Mutex` from here, so building
//! with `RUSTFLAGS="--cfg grove_loom"` swaps them for loom's model-checked versions
//! without touching the protocol code (see `loom-tests/tests/waitlist.rs`). The
//! primitives built on it keep using `std` directly: under loom only the wait list
//! core is compiled.

#[cfg(grove_loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};

#[cfg(not(grove_loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

// loom's `Mutex::lock` returns std's `LockResult`, so poison is std's in both builds.
pub(crate) use std::sync::PoisonError;
