//! The async-signal-safe half of [`signal`](super): the `sigaction` calls and the handler
//! itself. All of the module's `unsafe` lives here.
//!
//! The handler does nothing but `write(2)` one byte (the signal number) to the write end
//! of each interested slot's socket pair, saving and restoring `errno` around it. It
//! reads only atomics and never allocates, locks or touches user code. A write end, once
//! published in [`SLOTS`], is never closed (slots are recycled, not freed), so the handler
//! can never write to a descriptor that was closed and reused meanwhile.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// How many [`Signals`](super::Signals) may exist at once in a process.
pub(super) const SLOT_COUNT: usize = 32;

/// One listener's entry, read by the handler.
pub(super) struct Slot {
    /// Bit `n` set: signal `n` is wanted. 0 while the slot is free.
    pub(super) mask: AtomicU64,
    /// The non-blocking write end of the slot's socket pair; -1 until created.
    pub(super) fd: AtomicI32,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    mask: AtomicU64::new(0),
    fd: AtomicI32::new(-1),
};

pub(super) static SLOTS: [Slot; SLOT_COUNT] = [EMPTY; SLOT_COUNT];

extern "C" fn on_signal(sig: libc::c_int) {
    // SAFETY: `__errno_location` returns the calling thread's errno slot, valid for the
    // thread's lifetime; saving and restoring it keeps the interrupted code's errno intact.
    let errno = unsafe { *libc::__errno_location() };
    let bit = 1u64.checked_shl(sig as u32).unwrap_or(0);
    let byte = sig as u8;
    for slot in &SLOTS {
        if slot.mask.load(Ordering::Acquire) & bit == 0 {
            continue;
        }
        let fd = slot.fd.load(Ordering::Acquire);
        if fd >= 0 {
            // SAFETY: `fd` is the write end of a socket pair published before the mask
            // and never closed (see the module docs); `byte` outlives the call. A full
            // buffer (EAGAIN) drops this byte: the reader has unread ones already.
            unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
        }
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// The disposition a signal had before [`install`], to put back with [`restore`].
pub(super) struct Previous(libc::sigaction);

/// Routes `sig` to [`on_signal`] (with `SA_RESTART`, so interrupted system calls of
/// other code resume); returns the disposition it had.
pub(super) fn install(sig: libc::c_int) -> io::Result<Previous> {
    // SAFETY: an all-zero `sigaction` is a valid value of this plain C struct.
    let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
    new.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    new.sa_flags = libc::SA_RESTART;
    // SAFETY: `sa_mask` is a valid `sigset_t` owned by `new`.
    unsafe { libc::sigemptyset(&mut new.sa_mask) };
    // SAFETY: as above.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live, initialized `sigaction`s; `on_signal` is
    // async-signal-safe (it only loads atomics and calls `write`).
    if unsafe { libc::sigaction(sig, &new, &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Previous(old))
}

/// Puts back the disposition [`install`] replaced.
pub(super) fn restore(sig: libc::c_int, prev: &Previous) {
    // SAFETY: `prev.0` is a disposition the kernel gave us for this very signal.
    unsafe { libc::sigaction(sig, &prev.0, std::ptr::null_mut()) };
}

/// Publishes `fd` as slot `i`'s write end (once; the slot keeps it for good).
pub(super) fn publish(i: usize, fd: RawFd) {
    SLOTS[i].fd.store(fd, Ordering::Release);
}
