//! The kernel calls behind greenlet stacks: `mmap`, `munmap`, `mprotect`, `madvise`, and the
//! `/proc` counts that explain a failure. Every raw memory call of the allocator lives here;
//! the allocator decides *which* range each call gets and states, at the call, why that range
//! meets the function's contract.
//!
//! Addresses are plain `usize`s: a stack range is owned by a token (`Slot`, `GreenStack`), never
//! by a Rust reference, so nothing here can outlive or alias a borrow.

use std::io;
use std::num::NonZeroUsize;
use std::ptr;
use std::sync::OnceLock;

/// `madvise` advice that installs guard markers on a range (Linux ≥ 6.13, value from
/// `include/uapi/asm-generic/mman-common.h`). libc 0.2 does not define it yet. Its sibling
/// `MADV_GUARD_REMOVE` (103) is never needed: guards live as long as their chunk.
const MADV_GUARD_INSTALL: libc::c_int = 102;

#[cfg(target_os = "linux")]
const MAP_FLAGS: libc::c_int =
    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK;
#[cfg(not(target_os = "linux"))]
const MAP_FLAGS: libc::c_int = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;

/// The system page size, queried once.
pub(crate) fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf has no memory-safety preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(n)
            .ok()
            .filter(|n| n.is_power_of_two())
            .unwrap_or(4096)
    })
}

/// Reserves `len` bytes of readable, writable, never-touched anonymous memory.
pub(super) fn map_anon(len: usize) -> io::Result<NonZeroUsize> {
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing cannot alias any
    // existing Rust object.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            MAP_FLAGS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(NonZeroUsize::new(p as usize).expect("mmap returned a null mapping"))
}

/// Unmaps `[addr, addr + len)`.
///
/// # Safety
/// The range must be a mapping (or part of one) made by [`map_anon`], and no live reference,
/// running stack or slot token may point into it any more.
pub(super) unsafe fn unmap(addr: usize, len: usize) {
    // SAFETY: the caller guarantees nothing uses the range any more.
    let rc = unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    debug_assert_eq!(rc, 0, "munmap: {}", io::Error::last_os_error());
}

/// Turns `[addr, addr + len)` into guard pages with `madvise(MADV_GUARD_INSTALL)`: any access
/// faults, and the range costs no mapping of its own. Fails with `EINVAL` on kernels before
/// 6.13, and may ask for a retry (`EAGAIN`) when it races with a fault on a neighbouring page.
///
/// # Safety
/// The range must be page-aligned, inside a mapping made by [`map_anon`], and unused: installing
/// a guard discards its contents, so nothing may live there or be about to run there.
pub(super) unsafe fn install_guard(addr: usize, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the range is ours and unused, so discarding it is unobservable.
    let rc = unsafe { libc::madvise(addr as *mut libc::c_void, len, MADV_GUARD_INSTALL) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes `[addr, addr + len)` inaccessible with `mprotect(PROT_NONE)`: the portable guard page,
/// which splits its mapping in two.
///
/// # Safety
/// The range must be page-aligned, inside a mapping made by [`map_anon`], and unused: no
/// reference may point into it, since any access will fault from now on.
pub(super) unsafe fn protect_none(addr: usize, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees nothing refers to the range, so revoking access to it
    // breaks no reference.
    let rc = unsafe { libc::mprotect(addr as *mut libc::c_void, len, libc::PROT_NONE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Gives the pages of `[addr, addr + len)` back to the kernel (`MADV_DONTNEED`): the addresses
/// stay mapped and read as zero on their next touch. Guard markers and `PROT_NONE` pages inside
/// the range are kept.
///
/// # Safety
/// The range must lie in mappings made by [`map_anon`], and nothing may run on it or refer to
/// its contents: they are lost.
pub(super) unsafe fn decommit(addr: usize, len: usize) -> io::Result<()> {
    // SAFETY: the caller guarantees the contents are dead; MADV_DONTNEED on private anonymous
    // memory only makes the pages read as zero again.
    let rc = unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks the kernel not to back `[addr, addr + len)` with transparent huge pages: with
/// `enabled=always`, the first touch of a stack would otherwise commit 2 MiB. Best effort.
pub(super) fn no_huge_pages(addr: usize, len: usize) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: MADV_NOHUGEPAGE only changes a VMA flag; it never changes memory contents.
        unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_NOHUGEPAGE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (addr, len);
}

/// The process's current number of mappings, or `None` where `/proc` is unavailable.
pub(super) fn map_count() -> Option<usize> {
    let maps = std::fs::read("/proc/self/maps").ok()?;
    Some(maps.iter().filter(|&&b| b == b'\n').count())
}

/// `vm.max_map_count`, or `None` where `/proc` is unavailable.
pub(super) fn max_map_count() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}
