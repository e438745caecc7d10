//! Greenlet stacks: guarded slots carved from large reservations, pooled per worker.
//!
//! This is one of the few modules of grove that contain `unsafe`: it maps, guards, decommits and
//! unmaps the memory greenlets run on, and promises corosensei that every stack has a guard page.
//!
//! # Vocabulary
//! - **slot**: `[guard page][usable stack]`, the memory one greenlet runs on. Stacks grow down, so
//!   the guard sits at the slot's lowest address and the stack's *top* (corosensei's `base`) is the
//!   slot's highest address.
//! - **chunk**: one `mmap` reservation carved into many slots (Madvise mode only).
//! - **fresh range**: a run of slots a pool reserved from a chunk but has not handed out yet; their
//!   guards are installed one by one as they are handed out.
//! - **pool** ([`StackPool`]): a worker's private LIFO of *warm* stacks, whose touched pages are
//!   still resident, so the next greenlet runs on hot memory without page faults.
//! - **global list**: the allocator's list shared by all workers, split into *warm* stacks and
//!   *cold* ones whose pages were given back with `MADV_DONTNEED` (**decommitted**): the addresses
//!   and the guard stay, the memory returns to the kernel, the next use faults in zero pages.
//! - **dedicated stack**: a stack of another size than the runtime's (`Builder::stack_size` on
//!   one greenlet), mapped on its own with its own guard and unmapped when returned.
//!
//! # The problem
//! A greenlet needs a stack with a guard page below it, or an overflow silently overwrites whatever
//! lies below. The usual answer (corosensei's `DefaultStack`, may) is an `mmap` per stack plus an
//! `mprotect(PROT_NONE)` guard: two kernel mappings (VMAs) per stack and ~4 µs of syscalls. Linux
//! refuses more than `vm.max_map_count` mappings per process, 65530 by default, so such a runtime
//! stops near 32.7k live greenlets: the "20–30k connections" wall. Memory is the other half: a million parked greenlets must
//! fit in ≲ 8 KiB of RSS each, so nothing may touch stack pages that the greenlet itself did not.
//!
//! # Rejected approaches
//! - *`mmap` + `mprotect` per stack*: the wall above, and a syscall pair per greenlet. Kept only as
//!   the fallback.
//! - *One big reservation with `mprotect`ed guards*: `mprotect` splits the VMA, so every slot
//!   still costs two mappings; only the `mmap` calls are saved.
//! - *No guard page* (or a canary checked at switch time): an overflow corrupts the neighbouring
//!   slot before anyone notices; unsound, and corosensei's `Stack` contract forbids it.
//! - *Pre-faulting or zeroing stacks*: costs RSS for every greenlet, and the kernel zeroes anyway.
//!
//! # Chosen approach
//! **Madvise mode** (Linux ≥ 6.13): `madvise(MADV_GUARD_INSTALL)` turns a page into a guard that
//! faults on any access *without* creating a mapping. One `mmap` (readable, writable,
//! `MAP_NORESERVE`, `MAP_STACK`, `MADV_NOHUGEPAGE` so a touched page is not backed by a 2 MiB huge
//! page) reserves a whole chunk; chunks grow geometrically from 64 to 4096 slots, so a small runtime
//! reserves little address space while a million greenlets need a few hundred `mmap`s (and the
//! kernel merges adjacent chunks into even fewer VMAs). Each slot gets its guard when first handed
//! out.
//! Support is probed once per process on a scratch mapping: any failure selects Mprotect mode.
//!
//! **Mprotect mode** (older kernels, other Unixes, or `GROVE_STACK_GUARD=mprotect`): one
//! `mmap` + `mprotect(PROT_NONE)` guard per stack, two mappings per stack. The environment
//! variable `GROVE_STACK_GUARD=mprotect`, read once per process, forces this mode (tests use it to
//! exercise both paths); any other value, or none, means "probe and prefer Madvise".
//!
//! A guard is one page. That suffices because Rust (and C compiled with `-fstack-clash-protection`)
//! probes every page of a frame larger than a page, so no frame can step over the guard.
//!
//! # Getting a stack ([`StackPool::get`])
//! 1. Pop the pool's most recently returned stack (LIFO: its pages are the hottest). A `Vec` pop.
//! 2. Else take a batch of up to 32 from the global list, warm ones first (most recent last, so
//!    they are popped first), then cold ones.
//! 3. Else carve the next slot of the pool's fresh range: one `madvise(MADV_GUARD_INSTALL)` on its
//!    guard page (Madvise mode), or `mmap` + `mprotect` a new stack (Mprotect mode).
//! 4. Else reserve a fresh range of up to 32 slots from the allocator's current chunk, mapping the
//!    next chunk if it is used up (halving the request on `ENOMEM` down to one slot).
//!
//! Any `mmap`/`madvise`/`mprotect` failure becomes a [`StackError`]: never a panic or an abort,
//! since `try_spawn` hands it to the user.
//!
//! # Getting a stack without a pool ([`StackAllocator::allocate`])
//! `try_spawn` reserves a stack on the spawning thread, before any worker owns the greenlet.
//! 1. At the runtime's size: the most recent stack of the global list, else one slot carved from
//!    a fresh range (the rest of the range goes back to the allocator's spare list). Once the
//!    greenlet finishes, its worker's pool takes the stack like any other.
//! 2. At another size: a dedicated stack (one mapping in Madvise mode, two in Mprotect mode).
//!    `put` and `Drop` unmap it instead of pooling it.
//!
//! # Returning a stack ([`StackPool::put`])
//! 1. Push it on the pool. A `Vec` push.
//! 2. Above 64 pooled, hand the 32 oldest to the global list (one lock, no syscall).
//! 3. The global list keeps the 256 most recently returned stacks warm; older ones move to its
//!    *excess* set, keyed by address, where they stay committed (and are reused before cold
//!    ones) until they are decommitted. Still no syscall: a `BTreeMap` insert per stack.
//! 4. *When* and *how* they are decommitted. Never on the way back: a `madvise` is a syscall plus
//!    a TLB shootdown IPI to every core running the process, and on the return path it lands in
//!    the middle of a burst of finishing greenlets (100,000 sleepers once spent most of their
//!    wall time there, and their p99 lateness grew past 250 ms because due timers waited behind
//!    it). Instead [`StackAllocator::trim_slice`] gives back **one run of adjacent slots** (at
//!    most [`TRIM_RUN`] of them, one `madvise`; in Madvise mode the guard pages in between keep
//!    their markers), the lowest-addressed run of the excess set. Because the set is ordered by
//!    address, the stacks of a spike, which were carved in address order, come back as long
//!    runs: about one `madvise` per 64 stacks instead of one per stack. Only once the burst is
//!    over: [`DECAY`] (1 s) after a stack last joined the excess set, so a burst that repeats
//!    finds its stacks still committed instead of faulting 100,000 pages in again (measured:
//!    most of the 100k-sleepers wall time once went to those faults). Who calls it:
//!    - a worker going idle, one slice at a time, checking before each slice that no wake is
//!      pending for it and that no timer is due within [`TRIM_TIMER_MARGIN`] (the `Driver` hook
//!      says when the next one is); so a slice (~10-50 µs) is the longest a due timer or a new
//!      event can wait behind decommitting;
//!    - a busy worker that never idles, one slice every few hundred ticks, and only while more
//!      than [`DEFER_LIMIT`] stacks wait (so a runtime that never idles still gives memory back,
//!      a slice at a time, between greenlets).
//!
//! Warm stacks are not checked for depth: at most 64 per pool plus 256 globally stay committed,
//! so one deep call pins at most that many stacks' worth of pages, and only until the next spike
//! pushes them past the watermarks.
//!
//! # Costs (measured on Linux 6.18 in a VM, release build, 256 KiB stacks)
//! - Warm `get` + `put`: ~11 ns the pair. A fresh slot: ~1–1.7 µs (Madvise: the guard `madvise`,
//!   amortised chunk `mmap`s), ~4.4 µs (Mprotect: `mmap` + `mprotect`).
//! - 1,000,000 greenlets parked at their first suspension: 4.1 KiB RSS each (the one page they
//!   touched), 250 chunk `mmap`s merged by the kernel into 3 VMAs. Not in RSS: page tables, since
//!   each guard is a page-table entry (~0.5 KiB per greenlet at 256 KiB stacks, less for smaller
//!   stacks, which pack more slots per page-table page).
//! - Mprotect mode: 30,000 stacks take 60,000 mappings; about 32.7k is the ceiling.
//!
//! # Ownership and lifetime
//! - A [`GreenStack`] owns its slot and holds an `Arc` of its [`StackAllocator`]. The `Arc` is
//!   cloned only when a stack leaves the global list, and moved (not cloned) by `get`/`put`, so
//!   the warm path does no atomic operation.
//! - Dropping a `GreenStack` (say, with a coroutine that never finished) returns its slot to the
//!   global list; dropping a [`StackPool`] returns its stacks and its fresh range.
//! - The allocator is therefore dropped only after every stack and pool is gone, and only then
//!   unmaps its chunks (Madvise) or its stacks (Mprotect): memory never disappears under a
//!   running greenlet.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::num::NonZeroUsize;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

use corosensei::stack::{Stack, StackPointer};

/// `madvise` advice that installs guard markers on a range (Linux ≥ 6.13, value from
/// `include/uapi/asm-generic/mman-common.h`). libc 0.2 does not define it yet. Its sibling
/// `MADV_GUARD_REMOVE` (103) is never needed: guards live as long as their chunk.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// Smallest usable stack we hand out, whatever the configuration asks.
pub(crate) const MIN_STACK_SIZE: usize = 16 * 1024;

/// A pool holding more than this many stacks hands its oldest [`BATCH`] to the global list.
const LOCAL_HIGH_WATERMARK: usize = 64;

/// Stacks moved at once between a pool and the global list, and slots per fresh range.
const BATCH: usize = 32;

/// Warm stacks the global list keeps; older ones are decommitted.
const GLOBAL_WARM_WATERMARK: usize = 256;

/// Excess stacks (beyond [`GLOBAL_WARM_WATERMARK`]) left for idle workers; past this many, busy
/// workers also decommit, one [`StackAllocator::trim_slice`] every few hundred ticks.
pub(crate) const DEFER_LIMIT: usize = 16 * 1024;

/// Most slots one [`StackAllocator::trim_slice`] gives back (one `madvise` of at most
/// `TRIM_RUN` adjacent slots): bounds how long work that arrives meanwhile waits.
pub(crate) const TRIM_RUN: usize = 64;

/// Stacks pushed beyond the watermark are decommitted only once no stack has been pushed there
/// for this long: the pages of a burst that repeats (a benchmark's repetitions, a server's
/// traffic peaks) stay committed and are reused without page faults, and the memory of a burst
/// that does not repeat goes back a second after it ended (jemalloc's `dirty_decay_ms` plays
/// the same role, with 10 s).
pub(crate) const DECAY: std::time::Duration = std::time::Duration::from_secs(1);

/// An idle worker stops decommitting when a timer is due within this margin.
pub(crate) const TRIM_TIMER_MARGIN: std::time::Duration = std::time::Duration::from_micros(200);

/// Slots in the first chunk; each later chunk doubles, up to [`MAX_CHUNK_SLOTS`].
const FIRST_CHUNK_SLOTS: usize = 64;

/// Largest chunk, in slots.
const MAX_CHUNK_SLOTS: usize = 4096;

/// Largest chunk, in bytes, whatever the stack size (keeps 32-bit address spaces usable).
#[cfg(target_pointer_width = "64")]
const MAX_CHUNK_BYTES: usize = 64 << 30;
#[cfg(not(target_pointer_width = "64"))]
const MAX_CHUNK_BYTES: usize = 256 << 20;

/// Stacks at least this large (a huge page) get `MADV_NOHUGEPAGE` in Mprotect mode too.
const HUGE_PAGE: usize = 2 << 20;

/// Environment variable selecting the guard mode; `mprotect` forces [`GuardMode::Mprotect`].
pub(crate) const GUARD_ENV: &str = "GROVE_STACK_GUARD";

#[cfg(target_os = "linux")]
const MAP_FLAGS: libc::c_int =
    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK;
#[cfg(not(target_os = "linux"))]
const MAP_FLAGS: libc::c_int = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;

/// Greenlet stack configuration, fixed for the runtime's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StackConfig {
    /// Usable bytes per stack, not counting the guard page. Rounded up to whole pages, and to at
    /// least [`MIN_STACK_SIZE`].
    pub(crate) size: usize,
}

/// How guard pages are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuardMode {
    /// Slots carved from large reservations, guards installed with `MADV_GUARD_INSTALL`:
    /// about one mapping per thousands of stacks.
    Madvise,
    /// One `mmap` per stack and an `mprotect(PROT_NONE)` guard: two mappings per stack.
    Mprotect,
}

impl GuardMode {
    /// The process-wide mode: `GROVE_STACK_GUARD=mprotect`, else Madvise if the kernel supports
    /// guard markers. Probed once, then cached.
    #[cfg(test)]
    fn detect() -> GuardMode {
        detect_with_reason().0
    }
}

/// Why the process guards its stacks the way it does: what the ceiling message says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuardReason {
    /// The kernel accepted `MADV_GUARD_INSTALL` on a scratch mapping.
    Supported,
    /// `GROVE_STACK_GUARD=mprotect` asked for the fallback.
    Forced,
    /// The probe failed with this errno (`EINVAL`: a kernel older than 6.13). An `i16`
    /// (errnos are small) keeps [`StackError`] within clippy's `result_large_err`.
    Unsupported(i16),
    /// Not Linux: guard markers do not exist.
    NotLinux,
    /// Chosen by the code that built the allocator (unit tests).
    Configured,
}

impl fmt::Display for GuardReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuardReason::Supported => write!(f, "this kernel supports MADV_GUARD_INSTALL"),
            GuardReason::Forced => write!(f, "{GUARD_ENV}=mprotect is set"),
            GuardReason::Unsupported(errno) => write!(
                f,
                "this kernel does not support MADV_GUARD_INSTALL (added in Linux 6.13; the probe \
                 failed with: {})",
                io::Error::from_raw_os_error(i32::from(*errno))
            ),
            GuardReason::NotLinux => write!(f, "MADV_GUARD_INSTALL exists only on Linux"),
            GuardReason::Configured => write!(f, "the allocator was configured so"),
        }
    }
}

/// The process-wide guard mode and why: probed once, then cached.
fn detect_with_reason() -> (GuardMode, GuardReason) {
    static MODE: OnceLock<(GuardMode, GuardReason)> = OnceLock::new();
    *MODE.get_or_init(|| {
        if std::env::var_os(GUARD_ENV).is_some_and(|v| v == "mprotect") {
            return (GuardMode::Mprotect, GuardReason::Forced);
        }
        match probe_guard_install() {
            Ok(()) => (GuardMode::Madvise, GuardReason::Supported),
            Err(reason) => (GuardMode::Mprotect, reason),
        }
    })
}

/// Environment variable asking grove for startup diagnostics: `GROVE_LOG=debug` (or `trace`)
/// prints, once per process, how stacks are guarded and what that caps (see
/// [`StackAllocator::ceiling_note`]).
pub(crate) const LOG_ENV: &str = "GROVE_LOG";

/// True if [`LOG_ENV`] asks for debug output. Read once per process.
fn debug_log_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var(LOG_ENV).is_ok_and(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "debug" || v == "trace"
        })
    })
}

/// A snapshot of the allocator's counters. Exact when no pool is in use; approximate (each field
/// consistent, not all together) while workers run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct StackStats {
    /// Stacks handed out and not yet returned (running, parked, or held by a coroutine).
    pub(crate) live: usize,
    /// Stacks waiting for reuse, in the workers' pools and the global list.
    pub(crate) pooled: usize,
    /// Of the pooled stacks, those whose memory was given back (`MADV_DONTNEED`).
    pub(crate) decommitted: usize,
    /// Kernel mappings this allocator created (counted against `vm.max_map_count`): one per chunk
    /// in Madvise mode (the kernel may merge neighbours), two per stack in Mprotect mode.
    pub(crate) mappings: usize,
    /// Address space reserved, in bytes (not memory used: pages are committed when touched).
    pub(crate) bytes_reserved: usize,
}

/// Why a stack could not be allocated. Says which call failed, how the process stands against
/// `vm.max_map_count`, and what to change.
#[derive(Debug)]
pub(crate) struct StackError {
    /// The call that failed, e.g. `"mmap"`.
    op: &'static str,
    /// Bytes the call asked for.
    len: usize,
    /// Usable bytes per stack.
    stack_size: usize,
    /// The OS error.
    source: io::Error,
    /// Mappings the process had when the call failed (`/proc/self/maps` lines), if readable.
    map_count: Option<usize>,
    /// The kernel's limit (`/proc/sys/vm/max_map_count`), if readable.
    max_map_count: Option<usize>,
    /// How the allocator guards its stacks.
    mode: GuardMode,
    /// Why it guards them so.
    reason: GuardReason,
    /// The allocator's counters when the call failed.
    stats: StackStats,
}

impl StackError {
    /// True when the process is (nearly) at `vm.max_map_count`: the mapping limit, not memory,
    /// is what ran out.
    fn at_map_limit(&self) -> bool {
        // A few mappings of slack: the failing call itself, and libc's own bookkeeping.
        matches!((self.map_count, self.max_map_count), (Some(n), Some(max)) if n + 16 >= max)
    }
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot allocate a greenlet stack of {}: {} of {} bytes failed: {}",
            SizeText(self.stack_size),
            self.op,
            self.len,
            self.source
        )?;
        let count = match (self.map_count, self.max_map_count) {
            (Some(n), Some(max)) => format!("{n} of vm.max_map_count = {max}"),
            (Some(n), None) => format!("{n} (vm.max_map_count unreadable)"),
            (None, Some(max)) => format!("? of vm.max_map_count = {max}"),
            (None, None) => "? (vm.max_map_count unreadable)".to_owned(),
        };
        if self.at_map_limit() {
            write!(
                f,
                "; the process has hit the kernel's mapping limit ({count} mappings): raise it \
                 with `sysctl -w vm.max_map_count=1048576`, or run fewer greenlets at once \
                 (a smaller stack via Builder::stack_size does not help here)"
            )?;
            if self.mode == GuardMode::Mprotect {
                let ceiling = self.max_map_count.map_or_else(
                    || "about half of vm.max_map_count in greenlets".to_owned(),
                    |max| format!("about {} greenlets (vm.max_map_count = {max})", max / 2),
                );
                write!(
                    f,
                    "; stacks are guarded with mprotect because {}: two mappings per stack, so \
                     at most {ceiling} can be live at once; on Linux >= 6.13 grove \
                     guards stacks with MADV_GUARD_INSTALL and needs about one mapping per 4096 \
                     stacks instead of two per stack",
                    self.reason
                )?;
            }
        } else {
            write!(
                f,
                "; out of address space or memory ({count} mappings): lower the stack size \
                 with Builder::stack_size, check `ulimit -v` and vm.overcommit_memory, and if \
                 mappings run out raise `sysctl vm.max_map_count`"
            )?;
        }
        let st = &self.stats;
        write!(
            f,
            " [grove stacks: {} live, {} pooled ({} decommitted), {} mappings, {} reserved, \
             {:?} guards]",
            st.live,
            st.pooled,
            st.decommitted,
            st.mappings,
            SizeText(st.bytes_reserved),
            self.mode
        )
    }
}

impl std::error::Error for StackError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl From<StackError> for io::Error {
    fn from(e: StackError) -> io::Error {
        io::Error::new(e.source.kind(), e)
    }
}

/// Formats a byte count as `N MiB`, `N KiB` or `N bytes`, whichever is exact.
struct SizeText(usize);

impl fmt::Display for SizeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n >= 1 << 30 && n % (1 << 30) == 0 {
            write!(f, "{} GiB", n >> 30)
        } else if n >= 1 << 20 && n % (1 << 20) == 0 {
            write!(f, "{} MiB", n >> 20)
        } else if n >= 1 << 10 && n % (1 << 10) == 0 {
            write!(f, "{} KiB", n >> 10)
        } else {
            write!(f, "{n} bytes")
        }
    }
}

/// The process's current number of mappings, or `None` where `/proc` is unavailable.
fn map_count() -> Option<usize> {
    let maps = std::fs::read("/proc/self/maps").ok()?;
    Some(maps.iter().filter(|&&b| b == b'\n').count())
}

/// `vm.max_map_count`, or `None` where `/proc` is unavailable.
fn max_map_count() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

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

/// A requested stack size as allocated: whole pages, at least [`MIN_STACK_SIZE`].
fn round_size(size: usize, page: usize) -> usize {
    size.max(MIN_STACK_SIZE)
        .checked_next_multiple_of(page)
        // An absurd size: keep it absurd and let mmap refuse it with a clear error.
        .unwrap_or((usize::MAX / 2) & !(page - 1))
}

/// Reserves `len` bytes of readable, writable, never-touched anonymous memory.
fn map_anon(len: usize) -> io::Result<NonZeroUsize> {
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
/// The range must be a mapping (or part of one) this module created, and no live reference,
/// running stack or [`Slot`] may point into it any more.
unsafe fn unmap(addr: usize, len: usize) {
    // SAFETY: the caller guarantees nothing uses the range any more.
    let rc = unsafe { libc::munmap(addr as *mut libc::c_void, len) };
    debug_assert_eq!(rc, 0, "munmap: {}", io::Error::last_os_error());
}

/// Asks the kernel not to back `[addr, addr + len)` with transparent huge pages: with
/// `enabled=always`, the first touch of a stack would otherwise commit 2 MiB. Best effort.
fn no_huge_pages(addr: usize, len: usize) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: MADV_NOHUGEPAGE only changes a VMA flag; it never changes memory contents.
        unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_NOHUGEPAGE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (addr, len);
}

/// Does this kernel accept `MADV_GUARD_INSTALL`? Tried on a scratch mapping.
#[cfg(test)]
fn guard_install_supported() -> bool {
    probe_guard_install().is_ok()
}

/// Tries `MADV_GUARD_INSTALL` on a scratch mapping; says why it cannot be used if it fails.
fn probe_guard_install() -> Result<(), GuardReason> {
    if !cfg!(target_os = "linux") {
        return Err(GuardReason::NotLinux);
    }
    let unsupported = |e: io::Error, default: i32| {
        let errno = e.raw_os_error().unwrap_or(default);
        GuardReason::Unsupported(i16::try_from(errno).unwrap_or(i16::MAX))
    };
    let page = page_size();
    let p = map_anon(2 * page).map_err(|e| unsupported(e, libc::ENOMEM))?;
    // SAFETY: the scratch mapping was just created and is private to this function.
    let rc = unsafe { libc::madvise(p.get() as *mut libc::c_void, page, MADV_GUARD_INSTALL) };
    let err = io::Error::last_os_error();
    // SAFETY: the scratch mapping is unused once the probe is done.
    unsafe { unmap(p.get(), 2 * page) };
    if rc == 0 {
        Ok(())
    } else {
        Err(unsupported(err, libc::EINVAL))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The critical sections below cannot panic midway, so a poisoned lock still holds
    // consistent data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The ownership token of one slot while it is not a [`GreenStack`]: in the global list or being
/// moved there. Deliberately neither `Copy` nor `Clone`.
#[derive(Debug)]
struct Slot {
    /// Lowest address: the start of the guard page.
    lo: NonZeroUsize,
    /// One past the highest usable byte: where the stack starts growing down from.
    top: NonZeroUsize,
}

/// Slots not yet handed out by a pool: `[next, end)`, a multiple of the slot length.
#[derive(Debug, Default)]
struct FreshRange {
    next: usize,
    end: usize,
}

/// The Madvise-mode reservations, and where carving stands.
#[derive(Debug)]
struct Carver {
    /// Every chunk, as `(start, len)`, unmapped when the allocator drops.
    chunks: Vec<(usize, usize)>,
    /// The part of the newest chunk no pool has reserved yet.
    rest: FreshRange,
    /// Fresh ranges given back by dropped pools, handed out again before carving.
    spare: Vec<FreshRange>,
    /// Size of the next chunk, in slots.
    next_chunk_slots: usize,
}

/// Stacks returned beyond the pools' watermarks.
#[derive(Debug, Default)]
struct GlobalList {
    /// The most recently returned committed stacks, oldest at the front; at most
    /// [`GLOBAL_WARM_WATERMARK`].
    warm: VecDeque<Slot>,
    /// Committed stacks pushed out of `warm`, waiting to be decommitted, by address (step 4).
    excess: BTreeMap<usize, Slot>,
    /// Decommitted stacks.
    cold: Vec<Slot>,
}

impl GlobalList {
    fn len(&self) -> usize {
        self.warm.len() + self.excess.len() + self.cold.len()
    }

    /// Takes the most recently returned stack: warm, then excess (still committed), then cold.
    fn pop(&mut self) -> Option<Slot> {
        self.warm
            .pop_back()
            .or_else(|| self.excess.pop_last().map(|(_, s)| s))
            .or_else(|| self.cold.pop())
    }
}

/// A pool's published length, read only by [`StackAllocator::stats`]. Padded to its own cache
/// lines so the owning worker's plain stores never contend with another worker's.
#[derive(Debug, Default)]
#[repr(align(128))]
struct PoolGauge(AtomicUsize);

/// Maps, guards and recycles greenlet stacks. One per runtime, shared by its workers (behind an
/// `Arc`); each worker allocates through its own [`StackPool`].
#[derive(Debug)]
pub(crate) struct StackAllocator {
    mode: GuardMode,
    reason: GuardReason,
    page: usize,
    /// Usable bytes per stack.
    size: usize,
    /// `page + size`.
    slot_len: usize,
    /// Madvise mode only.
    carver: Mutex<Carver>,
    global: Mutex<GlobalList>,
    /// Size of `global`'s excess set, as last seen under its lock: lets
    /// [`needs_trim`](Self::needs_trim) answer without the lock.
    excess: AtomicUsize,
    /// When a stack last joined the excess set, in nanoseconds since `epoch` (see [`DECAY`]).
    overflowed_at: std::sync::atomic::AtomicU64,
    epoch: std::time::Instant,
    /// A worker has arranged to come back when the decay ends (see `driver`).
    pub(crate) decay_armed: std::sync::atomic::AtomicBool,
    /// Slots that exist as stacks (guard installed / mapped): live + pooled.
    slots: AtomicUsize,
    mappings: AtomicUsize,
    bytes_reserved: AtomicUsize,
    pools: Mutex<Vec<Weak<PoolGauge>>>,
}

impl StackAllocator {
    /// An allocator handing out stacks of `cfg.size` usable bytes (see [`StackConfig`]), guarded
    /// the best way this kernel allows. Maps nothing until the first stack is needed.
    pub(crate) fn new(cfg: StackConfig) -> StackAllocator {
        let (mode, reason) = detect_with_reason();
        let mut a = StackAllocator::with_mode(cfg, mode);
        a.reason = reason;
        a
    }

    fn with_mode(cfg: StackConfig, mode: GuardMode) -> StackAllocator {
        let page = page_size();
        let size = round_size(cfg.size, page);
        StackAllocator {
            mode,
            reason: GuardReason::Configured,
            page,
            size,
            slot_len: size + page,
            carver: Mutex::new(Carver {
                chunks: Vec::new(),
                rest: FreshRange::default(),
                spare: Vec::new(),
                next_chunk_slots: FIRST_CHUNK_SLOTS,
            }),
            global: Mutex::new(GlobalList::default()),
            excess: AtomicUsize::new(0),
            overflowed_at: std::sync::atomic::AtomicU64::new(0),
            epoch: std::time::Instant::now(),
            decay_armed: std::sync::atomic::AtomicBool::new(false),
            slots: AtomicUsize::new(0),
            mappings: AtomicUsize::new(0),
            bytes_reserved: AtomicUsize::new(0),
            pools: Mutex::new(Vec::new()),
        }
    }

    /// How this allocator makes guard pages.
    pub(crate) fn guard_mode(&self) -> GuardMode {
        self.mode
    }

    /// One line saying how stacks are guarded, why, and what that caps: the number of live
    /// greenlets in Mprotect mode (two mappings per stack against `vm.max_map_count`), memory
    /// and address space only in Madvise mode.
    pub(crate) fn ceiling_note(&self) -> String {
        let size = SizeText(self.size);
        match self.mode {
            GuardMode::Madvise => format!(
                "grove: greenlet stacks ({size} each) are guarded with MADV_GUARD_INSTALL \
                 because {}: about one kernel mapping per 4096 stacks, so vm.max_map_count does \
                 not cap live greenlets; memory does (a parked greenlet keeps the stack pages it \
                 touched, often one)",
                self.reason
            ),
            GuardMode::Mprotect => {
                let ceiling = match (max_map_count(), map_count()) {
                    (Some(max), Some(now)) => format!(
                        "about {} more live greenlets (vm.max_map_count = {max}, {now} mappings \
                         in use)",
                        max.saturating_sub(now) / 2
                    ),
                    (Some(max), None) => {
                        format!(
                            "about {} live greenlets (vm.max_map_count = {max})",
                            max / 2
                        )
                    }
                    _ => "about half of vm.max_map_count live greenlets".to_owned(),
                };
                format!(
                    "grove: greenlet stacks ({size} each) are guarded with mprotect because {}: \
                     two kernel mappings per stack, so this process can hold at most {ceiling}; \
                     raise it with `sysctl -w vm.max_map_count=...`, or run on Linux >= 6.13 \
                     where MADV_GUARD_INSTALL guards cost no mapping",
                    self.reason
                )
            }
        }
    }

    /// Prints [`ceiling_note`](Self::ceiling_note) to stderr, once per process, if
    /// `GROVE_LOG=debug` asks for it. Called when a runtime is built.
    pub(crate) fn announce(&self) {
        static ONCE: std::sync::Once = std::sync::Once::new();
        if debug_log_enabled() {
            ONCE.call_once(|| eprintln!("{}", self.ceiling_note()));
        }
    }

    /// A stack of `size` usable bytes (rounded like [`StackConfig::size`]) for a greenlet that
    /// has not been handed to a worker yet (`try_spawn`, or `Builder::stack_size` on one
    /// greenlet); callable from any thread. At the configured size it is an ordinary slot: from
    /// the global list, else newly carved, and pooled by whichever worker `put`s it back. At any
    /// other size it is a dedicated mapping with its own guard, unmapped when it is returned.
    pub(crate) fn allocate(self: &Arc<Self>, size: usize) -> Result<GreenStack, StackError> {
        let size = round_size(size, self.page);
        let slot = if size != self.size {
            self.map_single(size)?
        } else if let Some(slot) = self.pop_global() {
            slot
        } else {
            match self.mode {
                GuardMode::Mprotect => self.map_single(size)?,
                GuardMode::Madvise => {
                    let mut range = self.reserve_range()?;
                    let lo = range.next;
                    let guarded = self.install_guard(lo);
                    if guarded.is_ok() {
                        range.next += self.slot_len;
                        self.slots.fetch_add(1, Ordering::Relaxed);
                    }
                    if range.next != range.end {
                        lock(&self.carver).spare.push(range);
                    }
                    guarded?;
                    self.slot_at(
                        NonZeroUsize::new(lo).expect("chunks never start at 0"),
                        size,
                    )
                }
            }
        };
        Ok(self.stack(slot))
    }

    /// Current counters; see [`StackStats`].
    pub(crate) fn stats(&self) -> StackStats {
        let local: usize = {
            let mut pools = lock(&self.pools);
            pools.retain(|w| w.strong_count() > 0);
            pools
                .iter()
                .filter_map(Weak::upgrade)
                .map(|g| g.0.load(Ordering::Relaxed))
                .sum()
        };
        let (global, decommitted) = {
            let g = lock(&self.global);
            (g.len(), g.cold.len())
        };
        let pooled = local + global;
        StackStats {
            live: self.slots.load(Ordering::Relaxed).saturating_sub(pooled),
            pooled,
            decommitted,
            mappings: self.mappings.load(Ordering::Relaxed),
            bytes_reserved: self.bytes_reserved.load(Ordering::Relaxed),
        }
    }

    /// Wraps a slot taken from the global list or freshly made.
    fn stack(self: &Arc<Self>, slot: Slot) -> GreenStack {
        GreenStack {
            slot,
            alloc: Arc::clone(self),
        }
    }

    fn error(
        &self,
        op: &'static str,
        len: usize,
        stack_size: usize,
        source: io::Error,
    ) -> StackError {
        StackError {
            op,
            len,
            stack_size,
            source,
            map_count: map_count(),
            max_map_count: max_map_count(),
            mode: self.guard_mode(),
            reason: self.reason,
            stats: self.stats(),
        }
    }

    /// Whether `s` is one of the configured size (pooled) rather than a dedicated mapping.
    fn is_pooled(&self, s: &Slot) -> bool {
        s.top.get() - s.lo.get() == self.slot_len
    }

    /// Takes the most recently returned stack of the global list, committed before cold.
    fn pop_global(&self) -> Option<Slot> {
        let mut g = lock(&self.global);
        let s = g.pop();
        self.excess.store(g.excess.len(), Ordering::Relaxed);
        s
    }

    /// Moves up to `max` stacks from the global list to `out`, committed ones before cold ones,
    /// the most recently returned warm one last (so a LIFO pops it first). Returns how many moved.
    fn take_global(self: &Arc<Self>, out: &mut Vec<GreenStack>, max: usize) -> usize {
        let mut g = lock(&self.global);
        let warm = g.warm.len().min(max);
        let excess = g.excess.len().min(max - warm);
        let cold = g.cold.len().min(max - warm - excess);
        let cold_from = g.cold.len() - cold;
        out.extend(g.cold.drain(cold_from..).map(|s| self.stack(s)));
        for _ in 0..excess {
            let (_, s) = g.excess.pop_last().expect("counted above");
            out.push(self.stack(s));
        }
        let warm_from = g.warm.len() - warm;
        out.extend(g.warm.drain(warm_from..).map(|s| self.stack(s)));
        self.excess.store(g.excess.len(), Ordering::Relaxed);
        warm + excess + cold
    }

    /// Adds returned slots to the global list (step 3): the newest stay warm, the oldest beyond
    /// the watermark move to the excess set. No syscall: decommitting is [`trim_slice`]'s
    /// (step 4), never the return path's.
    ///
    /// [`trim_slice`]: Self::trim_slice
    fn push_global(&self, slots: impl Iterator<Item = Slot>) {
        let mut g = lock(&self.global);
        g.warm.extend(slots);
        let overflow = g.warm.len() > GLOBAL_WARM_WATERMARK;
        while g.warm.len() > GLOBAL_WARM_WATERMARK {
            let s = g.warm.pop_front().expect("longer than the watermark");
            g.excess.insert(s.lo.get(), s);
        }
        self.excess.store(g.excess.len(), Ordering::Relaxed);
        drop(g);
        if overflow {
            let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.overflowed_at.store(now, Ordering::Relaxed);
        }
    }

    /// When the stacks waiting to be decommitted may be (see [`DECAY`]): `None` if none wait,
    /// else an instant that may already have passed.
    pub(crate) fn decommit_after(&self) -> Option<std::time::Instant> {
        if !self.needs_trim() {
            return None;
        }
        let at = std::time::Duration::from_nanos(self.overflowed_at.load(Ordering::Relaxed));
        Some(self.epoch + at + DECAY)
    }

    /// True if stacks beyond the watermark wait to be decommitted: one relaxed load, for the
    /// hub to decide whether to call [`trim_slice`](Self::trim_slice).
    #[inline]
    pub(crate) fn needs_trim(&self) -> bool {
        self.excess.load(Ordering::Relaxed) > 0
    }

    /// How many stacks wait to be decommitted (a relaxed load).
    #[inline]
    pub(crate) fn trim_pending(&self) -> usize {
        self.excess.load(Ordering::Relaxed)
    }

    /// Step 4, one slice: decommits the lowest-addressed run of adjacent excess slots, at most
    /// [`TRIM_RUN`] of them, with one `madvise` outside the lock (one slot per call in Mprotect
    /// mode, where every stack is its own mapping). Returns how many it decommitted.
    pub(crate) fn trim_slice(&self) -> usize {
        let mut run: Vec<Slot> = Vec::new();
        {
            let mut g = lock(&self.global);
            while run.len() < TRIM_RUN {
                let Some(entry) = g.excess.first_entry() else {
                    break;
                };
                let adjacent = run.last().is_none_or(|prev: &Slot| {
                    self.mode == GuardMode::Madvise && *entry.key() == prev.lo.get() + self.slot_len
                });
                if !adjacent {
                    break;
                }
                run.push(entry.remove());
            }
            self.excess.store(g.excess.len(), Ordering::Relaxed);
        }
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return 0;
        };
        let from = first.lo.get() + self.page;
        let to = last.lo.get() + self.page + self.size;
        self.decommit(from, to - from);
        let n = run.len();
        lock(&self.global).cold.append(&mut run);
        n
    }

    /// Gives the pages of `len` bytes from `from` back to the kernel: the usable part of one
    /// pooled slot, or of a run of adjacent ones (their guard pages in between included).
    fn decommit(&self, from: usize, len: usize) {
        // SAFETY: the range covers only pooled slots (taken off the global list by our caller),
        // so no greenlet runs on them and nothing references their contents; MADV_DONTNEED on
        // private anonymous memory only makes the pages read as zero again, and it preserves
        // guard markers (MADV_GUARD_INSTALL) and protections (the Mprotect guard pages).
        let rc = unsafe { libc::madvise(from as *mut libc::c_void, len, libc::MADV_DONTNEED) };
        // Failure only means the memory stays committed; the slots are still valid stacks.
        debug_assert_eq!(
            rc,
            0,
            "madvise(MADV_DONTNEED): {}",
            io::Error::last_os_error()
        );
    }

    /// Madvise mode: reserves a run of up to [`BATCH`] never-used slots for one pool.
    fn reserve_range(&self) -> Result<FreshRange, StackError> {
        let mut c = lock(&self.carver);
        if let Some(r) = c.spare.pop() {
            return Ok(r);
        }
        if c.rest.next == c.rest.end {
            self.map_chunk(&mut c)?;
        }
        let avail = (c.rest.end - c.rest.next) / self.slot_len;
        let next = c.rest.next;
        let end = next + avail.min(BATCH) * self.slot_len;
        c.rest.next = end;
        Ok(FreshRange { next, end })
    }

    /// Madvise mode: maps the next chunk, halving the request while the kernel says `ENOMEM`.
    fn map_chunk(&self, c: &mut Carver) -> Result<(), StackError> {
        let mut slots = c
            .next_chunk_slots
            .min((MAX_CHUNK_BYTES / self.slot_len).max(1));
        loop {
            let len = slots.saturating_mul(self.slot_len);
            match map_anon(len) {
                Ok(p) => {
                    no_huge_pages(p.get(), len);
                    c.chunks.push((p.get(), len));
                    c.rest = FreshRange {
                        next: p.get(),
                        end: p.get() + len,
                    };
                    c.next_chunk_slots = (slots * 2).min(MAX_CHUNK_SLOTS);
                    self.mappings.fetch_add(1, Ordering::Relaxed);
                    self.bytes_reserved.fetch_add(len, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) if slots > 1 && e.raw_os_error() == Some(libc::ENOMEM) => slots /= 2,
                Err(e) => return Err(self.error("mmap", len, self.size, e)),
            }
        }
    }

    /// Madvise mode: makes the lowest page of the slot at `lo` a guard.
    fn install_guard(&self, lo: usize) -> Result<(), StackError> {
        let mut tries = 0;
        loop {
            // SAFETY: `lo` starts a never-used slot of one of our chunks, reserved by the calling
            // pool alone; installing a guard discards nothing anyone could observe.
            let rc =
                unsafe { libc::madvise(lo as *mut libc::c_void, self.page, MADV_GUARD_INSTALL) };
            if rc == 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            tries += 1;
            // The kernel may ask to retry when it races with a concurrent fault.
            if e.raw_os_error() != Some(libc::EAGAIN) || tries == 3 {
                return Err(self.error("madvise(MADV_GUARD_INSTALL)", self.page, self.size, e));
            }
        }
    }

    /// Maps one stack of `size` usable bytes with its own guard page: Mprotect mode's pooled
    /// stacks, and dedicated stacks of another size in both modes.
    fn map_single(&self, size: usize) -> Result<Slot, StackError> {
        let len = size + self.page;
        let lo = map_anon(len).map_err(|e| self.error("mmap", len, size, e))?;
        if size >= HUGE_PAGE {
            no_huge_pages(lo.get(), len);
        }
        let guarded = match self.mode {
            GuardMode::Madvise => self.install_guard(lo.get()),
            GuardMode::Mprotect => {
                // SAFETY: the mapping was just created and nothing else knows of it.
                let rc = unsafe {
                    libc::mprotect(lo.get() as *mut libc::c_void, self.page, libc::PROT_NONE)
                };
                if rc == 0 {
                    Ok(())
                } else {
                    let e = io::Error::last_os_error();
                    Err(self.error("mprotect", self.page, size, e))
                }
            }
        };
        if let Err(e) = guarded {
            // SAFETY: as above; the mapping is discarded before anyone sees it.
            unsafe { unmap(lo.get(), len) };
            return Err(e);
        }
        self.mappings
            .fetch_add(self.mappings_per_single(), Ordering::Relaxed);
        self.bytes_reserved.fetch_add(len, Ordering::Relaxed);
        self.slots.fetch_add(1, Ordering::Relaxed);
        Ok(self.slot_at(lo, size))
    }

    /// Unmaps a stack made by [`map_single`](Self::map_single).
    ///
    /// # Safety
    /// `s` must come from `map_single` of this allocator, and nothing may run on or refer to its
    /// memory any more.
    unsafe fn unmap_single(&self, s: Slot) {
        let len = s.top.get() - s.lo.get();
        // SAFETY: the caller guarantees the mapping is ours and unused.
        unsafe { unmap(s.lo.get(), len) };
        self.mappings
            .fetch_sub(self.mappings_per_single(), Ordering::Relaxed);
        self.bytes_reserved.fetch_sub(len, Ordering::Relaxed);
        self.slots.fetch_sub(1, Ordering::Relaxed);
    }

    /// VMAs a `map_single` stack costs: the guard marker lives inside the mapping, while an
    /// `mprotect`ed guard splits it in two.
    fn mappings_per_single(&self) -> usize {
        match self.mode {
            GuardMode::Madvise => 1,
            GuardMode::Mprotect => 2,
        }
    }

    fn slot_at(&self, lo: NonZeroUsize, size: usize) -> Slot {
        Slot {
            lo,
            top: lo
                .checked_add(self.page + size)
                .expect("slot ends past the address space"),
        }
    }

    fn register(&self, gauge: &Arc<PoolGauge>) {
        let mut pools = lock(&self.pools);
        pools.retain(|w| w.strong_count() > 0);
        pools.push(Arc::downgrade(gauge));
    }
}

impl Drop for StackAllocator {
    fn drop(&mut self) {
        // Every GreenStack and StackPool holds an Arc of us, so all slots are back in the global
        // list and no greenlet can run on this memory any more.
        let g = self
            .global
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        match self.mode {
            GuardMode::Madvise => {
                let c = self
                    .carver
                    .get_mut()
                    .unwrap_or_else(PoisonError::into_inner);
                for &(start, len) in &c.chunks {
                    // SAFETY: see above: no slot of the chunk is in use.
                    unsafe { unmap(start, len) };
                }
            }
            GuardMode::Mprotect => {
                for s in g.warm.iter().chain(g.excess.values()).chain(g.cold.iter()) {
                    // SAFETY: see above: the stack is pooled, hence unused.
                    unsafe { unmap(s.lo.get(), self.slot_len) };
                }
            }
        }
    }
}

/// A worker's cache of stacks. Owned by one worker thread and used through `&mut`; it may be
/// created elsewhere and moved in.
#[derive(Debug)]
pub(crate) struct StackPool {
    alloc: Arc<StackAllocator>,
    /// LIFO: the last element is the most recently used, hottest stack.
    warm: Vec<GreenStack>,
    /// Madvise mode: slots reserved for this pool, not carved yet.
    fresh: FreshRange,
    gauge: Arc<PoolGauge>,
}

impl StackPool {
    /// A pool allocating from `alloc`.
    pub(crate) fn new(alloc: Arc<StackAllocator>) -> StackPool {
        let gauge = Arc::new(PoolGauge::default());
        alloc.register(&gauge);
        StackPool {
            alloc,
            warm: Vec::with_capacity(LOCAL_HIGH_WATERMARK + 1),
            fresh: FreshRange::default(),
            gauge,
        }
    }

    /// A stack for a greenlet about to start: the hottest pooled one, else one from the global
    /// list, else a new slot. Fails only when the kernel refuses memory or mappings.
    #[inline]
    pub(crate) fn get(&mut self) -> Result<GreenStack, StackError> {
        // 1. The pool's hottest stack.
        if let Some(s) = self.warm.pop() {
            self.publish();
            return Ok(s);
        }
        self.get_slow()
    }

    #[inline(never)]
    fn get_slow(&mut self) -> Result<GreenStack, StackError> {
        // 2. A batch from the global list.
        if self.alloc.take_global(&mut self.warm, BATCH) > 0 {
            let s = self
                .warm
                .pop()
                .expect("take_global moved at least one stack");
            self.publish();
            return Ok(s);
        }
        // 3./4. A new slot.
        let slot = match self.alloc.mode {
            GuardMode::Mprotect => self.alloc.map_single(self.alloc.size)?,
            GuardMode::Madvise => {
                if self.fresh.next == self.fresh.end {
                    self.fresh = self.alloc.reserve_range()?;
                }
                let lo = self.fresh.next;
                self.alloc.install_guard(lo)?;
                self.fresh.next += self.alloc.slot_len;
                self.alloc.slots.fetch_add(1, Ordering::Relaxed);
                let lo = NonZeroUsize::new(lo).expect("chunks never start at 0");
                self.alloc.slot_at(lo, self.alloc.size)
            }
        };
        Ok(self.alloc.stack(slot))
    }

    /// Takes back the stack of a finished greenlet, to be reused. Call only once the coroutine
    /// that ran on it is done (e.g. from `Coroutine::into_stack`).
    #[inline]
    pub(crate) fn put(&mut self, s: GreenStack) {
        if !Arc::ptr_eq(&s.alloc, &self.alloc) || !self.alloc.is_pooled(&s.slot) {
            return Self::put_foreign(s);
        }
        // 1. Onto the pool.
        self.warm.push(s);
        // 2. Past the watermark, the oldest batch goes to the global list.
        if self.warm.len() > LOCAL_HIGH_WATERMARK {
            self.spill();
        }
        self.publish();
    }

    /// Another runtime's stack, or one of another size: dropping it sends it home or unmaps it.
    #[cold]
    #[inline(never)]
    fn put_foreign(s: GreenStack) {
        drop(s);
    }

    #[inline(never)]
    fn spill(&mut self) {
        let n = BATCH.min(self.warm.len());
        self.alloc
            .push_global(self.warm.drain(..n).map(GreenStack::into_slot));
    }

    /// Publishes the pool's length for [`StackAllocator::stats`]: a plain store to a line only
    /// this pool writes.
    #[inline]
    fn publish(&self) {
        self.gauge.0.store(self.warm.len(), Ordering::Relaxed);
    }
}

impl Drop for StackPool {
    fn drop(&mut self) {
        self.alloc
            .push_global(self.warm.drain(..).map(GreenStack::into_slot));
        self.publish();
        if self.fresh.next != self.fresh.end {
            let fresh = std::mem::take(&mut self.fresh);
            lock(&self.alloc.carver).spare.push(fresh);
        }
    }
}

/// One greenlet's stack: a guard page, then the usable bytes ([`StackConfig::size`], or its own
/// size for a dedicated stack).
///
/// It is plain memory, so it is `Send`; a greenlet that has started must still stay on its worker
/// (see DESIGN.md, "The hard constraint"), which is the coroutine's business, not the stack's.
/// Dropping it returns the slot to its allocator's global list (a dedicated stack is unmapped).
#[derive(Debug)]
pub(crate) struct GreenStack {
    slot: Slot,
    alloc: Arc<StackAllocator>,
}

impl GreenStack {
    /// `[lo, hi)` of the guard page(s) below the stack, for the overflow reporter.
    #[inline]
    pub(crate) fn guard_range(&self) -> (usize, usize) {
        let lo = self.slot.lo.get();
        (lo, lo + self.alloc.page)
    }

    /// Releases the allocator reference, leaving the bare slot token.
    fn into_slot(self) -> Slot {
        let this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped or used again, so each field is moved out exactly once.
        let (slot, alloc) = unsafe { (ptr::read(&this.slot), ptr::read(&this.alloc)) };
        drop(alloc);
        slot
    }
}

impl Drop for GreenStack {
    fn drop(&mut self) {
        // The slot token moves on; `self.slot` is not used again.
        let slot = Slot {
            lo: self.slot.lo,
            top: self.slot.top,
        };
        if self.alloc.is_pooled(&slot) {
            self.alloc.push_global(std::iter::once(slot));
        } else {
            // SAFETY: a slot of another size comes from `map_single`, and the GreenStack (hence
            // any coroutine that ran on it) is being dropped.
            unsafe { self.alloc.unmap_single(slot) };
        }
    }
}

/// Distinct stack-top offsets used for cache colouring (see `base`); a power of two.
const COLORS: usize = 64;
/// Bytes per colour step: one cache line, a multiple of corosensei's STACK_ALIGNMENT.
const CACHE_LINE: usize = 64;

// SAFETY: `[limit, base)` is `guard page + size` bytes (less the cache colour, below one page) of a mapping that stays mapped while this
// GreenStack exists (it holds an Arc of the allocator, which unmaps only when dropped), the
// lowest page is a guard (MADV_GUARD_INSTALL or PROT_NONE, installed before the stack was
// handed out and never removed), the usable part is at least MIN_STACK_SIZE (16 KiB) ≥
// corosensei's MIN_STACK_SIZE, and both ends are page-aligned, hence STACK_ALIGNMENT-aligned.
unsafe impl Stack for GreenStack {
    #[inline]
    fn base(&self) -> StackPointer {
        // Cache colouring. Slots are a whole number of pages apart, so without this every
        // greenlet's hot top-of-stack lines (saved registers, the hub switch frame) share
        // the same low 12 address bits and fight over the same few L1/L2 sets: with 1,000
        // greenlets yielding in turn, measured here, a yield cost 2x more. Start each
        // stack a different number of cache lines below its top (0..63 lines, cycling
        // with the slot's page number); it costs at most 4 KiB of the usable stack.
        // Shifts, not a division by the page size: corosensei calls `base` on every
        // resume. Slots are page-aligned, so bits 12.. of `lo` step with the slot.
        let color = ((self.slot.lo.get() >> 12) & (COLORS - 1)) * CACHE_LINE;
        StackPointer::new(self.slot.top.get() - color).expect("stack top below its colour")
    }

    #[inline]
    fn limit(&self) -> StackPointer {
        self.slot.lo
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Helpers shared by this crate's unit tests.

    use std::process::{Command, Output};

    /// Set in a child process re-running one test in "child mode".
    pub(crate) const CHILD_ENV: &str = "GROVE_TEST_CHILD";

    /// Whether this process is a child started by [`run_child`].
    pub(crate) fn in_child() -> bool {
        std::env::var_os(CHILD_ENV).is_some()
    }

    /// Re-runs test `name` of module `module` (pass `module_path!()`) alone in a child process,
    /// with `CHILD_ENV=1` and `envs`, and returns how it ended.
    pub(crate) fn run_child(module: &str, name: &str, envs: &[(&str, &str)]) -> Output {
        let module = module.split_once("::").map_or("", |(_, rest)| rest);
        let test = format!("{module}::{name}");
        let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
        cmd.args(["--exact", &test, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, "1");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().expect("spawn child test process")
    }

    /// For tests that count mappings or measure RSS, which neighbouring tests would disturb:
    /// in the parent, runs test `name` alone in a child process, checks that it passed and returns
    /// `false`; in that child, returns `true` and the test runs its body.
    pub(crate) fn isolated(module: &str, name: &str) -> bool {
        if in_child() {
            return true;
        }
        let out = run_child(module, name, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprint!("{stderr}");
        assert!(
            out.status.success(),
            "isolated run of {name} failed: {:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
        false
    }

    /// Resident memory of this process, in bytes (`/proc/self/statm`).
    pub(crate) fn rss() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").expect("read statm");
        let pages: usize = statm
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("parse statm");
        pages * super::page_size()
    }

    /// Number of mappings of this process (`/proc/self/maps` lines).
    pub(crate) fn maps() -> usize {
        super::map_count().expect("read /proc/self/maps")
    }

    /// Whether the byte at `addr` can be read, asked of the kernel (a `write` from it into a pipe
    /// fails with `EFAULT` on guard pages) so that a guard does not kill the test.
    pub(crate) fn readable(addr: usize) -> bool {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the kernel validates the source address and reports EFAULT instead of faulting.
        let n = unsafe { libc::write(fds[1], addr as *const libc::c_void, 1) };
        // SAFETY: both descriptors were just opened by us.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        n == 1
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hint::black_box;
    use std::os::unix::process::ExitStatusExt;
    use std::time::Instant;

    use corosensei::{Coroutine, CoroutineResult};

    use super::test_util::{in_child, isolated, maps, readable, rss, run_child};
    use super::*;

    fn alloc(mode: GuardMode, size: usize) -> Arc<StackAllocator> {
        Arc::new(StackAllocator::with_mode(StackConfig { size }, mode))
    }

    /// Both modes where the kernel has guard markers, else Mprotect only.
    fn modes() -> Vec<GuardMode> {
        if guard_install_supported() {
            vec![GuardMode::Madvise, GuardMode::Mprotect]
        } else {
            eprintln!("MADV_GUARD_INSTALL unsupported here: testing Mprotect mode only");
            vec![GuardMode::Mprotect]
        }
    }

    /// Writes one byte in every page of the usable part of `s`, as a deep greenlet would.
    fn touch(s: &GreenStack, bytes: usize) {
        let page = page_size();
        let top = s.base().get();
        for off in (page..=bytes).step_by(page) {
            // SAFETY: `top - off` lies in the usable part of a stack we own and nothing runs on.
            unsafe { ptr::write_volatile((top - off) as *mut u8, 1) };
        }
    }

    #[test]
    fn detects_madvise_on_this_kernel() {
        // This crate's CI and dev VMs run Linux ≥ 6.13; elsewhere the probe must say Mprotect.
        let mode = GuardMode::detect();
        eprintln!("guard mode: {mode:?}");
        if std::env::var_os(GUARD_ENV).is_some_and(|v| v == "mprotect") {
            assert_eq!(mode, GuardMode::Mprotect);
        } else {
            assert_eq!(mode == GuardMode::Madvise, guard_install_supported());
        }
    }

    #[test]
    fn layout_matches_corosensei_contract() {
        for mode in modes() {
            let a = alloc(mode, 1000);
            assert_eq!(a.size, MIN_STACK_SIZE);
            let a = alloc(mode, 100 * 1024 + 1);
            let page = page_size();
            assert_eq!(a.size, (100 * 1024 + 1usize).next_multiple_of(page));
            let mut pool = StackPool::new(a.clone());
            let s = pool.get().unwrap();
            let (lo, hi) = s.guard_range();
            assert_eq!(s.limit().get(), lo, "limit includes the guard");
            assert_eq!(hi - lo, page);
            // The top is lowered by the cache colour: less than COLORS cache lines.
            let span = s.base().get() - s.limit().get();
            assert!(span <= page + a.size && span > page + a.size - COLORS * CACHE_LINE);
            assert_eq!(s.base().get() % corosensei::stack::STACK_ALIGNMENT, 0);
            assert!(
                !readable(lo) && !readable(hi - 1),
                "{mode:?}: guard must fault"
            );
            assert!(readable(hi) && readable(s.base().get() - 1));
            pool.put(s);
        }
    }

    #[test]
    fn warm_reuse_is_lifo_and_same_address() {
        for mode in modes() {
            let mut pool = StackPool::new(alloc(mode, 64 * 1024));
            let a = pool.get().unwrap();
            let a_lo = a.limit();
            pool.put(a);
            let a = pool.get().unwrap();
            assert_eq!(
                a.limit(),
                a_lo,
                "{mode:?}: warm get returns the slot just put"
            );
            let b = pool.get().unwrap();
            let b_lo = b.limit();
            assert_ne!(a_lo, b_lo);
            pool.put(a);
            pool.put(b);
            assert_eq!(
                pool.get().unwrap().limit(),
                b_lo,
                "most recently used first"
            );
        }
    }

    #[test]
    fn coroutines_run_on_green_stacks_and_stacks_recycle() {
        for mode in modes() {
            let a = alloc(mode, 64 * 1024);
            let mut pool = StackPool::new(a.clone());
            for round in 0..3 {
                let stack = pool.get().unwrap();
                let (lo, _) = stack.guard_range();
                let mut co = Coroutine::with_stack(stack, move |y, n: u64| {
                    // Use a good part of the stack.
                    let buf = black_box([n as u8; 16 * 1024]);
                    let got = y.suspend(buf.iter().map(|&b| u64::from(b)).sum::<u64>());
                    got + 1
                });
                assert!(matches!(co.resume(1), CoroutineResult::Yield(16384)));
                assert!(matches!(co.resume(41), CoroutineResult::Return(42)));
                let stack = co.into_stack();
                assert_eq!(stack.guard_range().0, lo);
                pool.put(stack);
                assert_eq!(a.stats().live, 0, "round {round}");
            }
        }
    }

    #[test]
    fn dropping_unfinished_coroutine_returns_its_stack() {
        for mode in modes() {
            let a = alloc(mode, 32 * 1024);
            let mut pool = StackPool::new(a.clone());
            let mut co = Coroutine::with_stack(pool.get().unwrap(), |y, ()| {
                y.suspend(());
            });
            assert!(matches!(co.resume(()), CoroutineResult::Yield(())));
            assert_eq!(a.stats().live, 1);
            drop(co); // unwinds the greenlet, then drops the GreenStack
            let st = a.stats();
            assert_eq!((st.live, st.pooled), (0, 1), "{mode:?}: {st:?}");
            // The global list hands it out again.
            let s = pool.get().unwrap();
            assert_eq!(a.stats().live, 1);
            drop(s);
        }
    }

    #[test]
    fn allocate_at_the_configured_size_reuses_pooled_slots() {
        for mode in modes() {
            let a = alloc(mode, 64 * 1024);
            let mut pool = StackPool::new(a.clone());
            // Nothing pooled yet: a new slot, which a worker's pool then keeps.
            let s = a.allocate(64 * 1024 - 100).unwrap();
            let lo = s.limit();
            assert!(a.is_pooled(&s.slot));
            assert!(!readable(s.guard_range().0), "{mode:?}: guarded");
            pool.put(s);
            assert_eq!(
                pool.get().unwrap().limit(),
                lo,
                "{mode:?}: pooled like any other"
            );
            // Dropped stacks land in the global list, where `allocate` finds them.
            let s = a.allocate(64 * 1024).unwrap();
            assert_eq!(s.limit(), lo, "{mode:?}: from the global list");
            drop(s);
            let st = a.stats();
            assert_eq!((st.live, st.pooled), (0, 1), "{mode:?}: {st:?}");
            // A partly used fresh range is not lost: the pool carves on from the spare list.
            let mut held: Vec<_> = (0..100).map(|_| a.allocate(64 * 1024).unwrap()).collect();
            held.extend((0..100).map(|_| pool.get().unwrap()));
            let distinct: HashSet<_> = held.iter().map(|s| s.limit()).collect();
            assert_eq!(distinct.len(), 200);
            if mode == GuardMode::Madvise {
                assert!(a.stats().mappings <= 3, "{:?}", a.stats());
            }
        }
    }

    #[test]
    fn allocate_at_another_size_maps_a_dedicated_stack() {
        for mode in modes() {
            let a = alloc(mode, 64 * 1024);
            let mut pool = StackPool::new(a.clone());
            let before = a.stats();
            let s = a.allocate(1 << 20).unwrap();
            let page = page_size();
            let span = s.base().get() - s.limit().get();
            assert!(span <= page + (1 << 20) && span > page + (1 << 20) - COLORS * CACHE_LINE);
            let (lo, hi) = s.guard_range();
            assert!(!readable(lo) && readable(hi), "{mode:?}: guarded");
            let per_stack = if mode == GuardMode::Madvise { 1 } else { 2 };
            let st = a.stats();
            assert_eq!(st.mappings, before.mappings + per_stack, "{mode:?}");
            assert_eq!(st.live, before.live + 1, "{mode:?}");
            // It runs a coroutine like any stack...
            let mut co = Coroutine::<u64, (), u64, _>::with_stack(s, |_, x: u64| {
                let buf = black_box([x as u8; 128 * 1024]);
                u64::from(buf[1000])
            });
            assert!(matches!(co.resume(3), CoroutineResult::Return(3)));
            // ...and is unmapped, not pooled, when returned.
            pool.put(co.into_stack());
            let st = a.stats();
            assert_eq!(
                (st.live, st.pooled, st.mappings, st.bytes_reserved),
                (
                    before.live,
                    before.pooled,
                    before.mappings,
                    before.bytes_reserved
                ),
                "{mode:?}"
            );
            assert!(pool.warm.is_empty());
        }
    }

    #[test]
    fn many_stacks_few_mappings_in_madvise_mode() {
        if !isolated(module_path!(), "many_stacks_few_mappings_in_madvise_mode") {
            return;
        }
        if !guard_install_supported() {
            eprintln!("skipped: no MADV_GUARD_INSTALL");
            return;
        }
        const N: usize = 20_000;
        let before = maps();
        let a = alloc(GuardMode::Madvise, 64 * 1024);
        let mut pool = StackPool::new(a.clone());
        let t = Instant::now();
        let stacks: Vec<_> = (0..N).map(|_| pool.get().unwrap()).collect();
        let per_fresh = t.elapsed() / N as u32;
        let after = maps();
        let st = a.stats();
        eprintln!(
            "{N} stacks: {} mappings by the allocator, /proc/self/maps {before} -> {after}, \
             {per_fresh:?} per fresh slot, {} MiB reserved",
            st.mappings,
            st.bytes_reserved >> 20
        );
        assert_eq!(st.live, N);
        assert!(st.mappings <= 12, "{st:?}");
        assert!(after <= before + 12 + 8, "maps {before} -> {after}");
        // Every slot is distinct and guarded.
        let mut seen = HashSet::new();
        for s in &stacks {
            assert!(seen.insert(s.limit()));
        }
        for s in stacks.iter().step_by(997) {
            let (lo, hi) = s.guard_range();
            assert!(!readable(lo) && !readable(hi - 1));
            assert!(readable(hi));
        }
        for s in stacks {
            pool.put(s);
        }
        let st = a.stats();
        assert_eq!((st.live, st.pooled), (0, N));
        drop(pool);
        drop(a);
        let end = maps();
        if end > before + 8 {
            eprintln!("{}", std::fs::read_to_string("/proc/self/maps").unwrap());
        }
        assert!(
            end <= before + 8,
            "chunks unmapped on drop: {before} -> {end}"
        );
    }

    #[test]
    fn mprotect_mode_costs_two_mappings_per_stack() {
        if !isolated(module_path!(), "mprotect_mode_costs_two_mappings_per_stack") {
            return;
        }
        let before = maps();
        let a = alloc(GuardMode::Mprotect, 32 * 1024);
        let mut pool = StackPool::new(a.clone());
        let stacks: Vec<_> = (0..200).map(|_| pool.get().unwrap()).collect();
        let st = a.stats();
        assert_eq!(st.mappings, 400);
        let after = maps();
        assert!(
            after >= before + 390 && after <= before + 410,
            "{before} -> {after}"
        );
        drop(stacks);
        drop(pool);
        drop(a);
        assert!(maps() <= before + 8, "stacks unmapped on drop");
    }

    #[test]
    fn spike_memory_is_decommitted() {
        if !isolated(module_path!(), "spike_memory_is_decommitted") {
            return;
        }
        for mode in modes() {
            const N: usize = 3000;
            const USED: usize = 48 * 1024;
            let a = alloc(mode, 64 * 1024);
            let mut pool = StackPool::new(a.clone());
            let base = rss();
            let stacks: Vec<_> = (0..N).map(|_| pool.get().unwrap()).collect();
            for s in &stacks {
                touch(s, USED);
            }
            let peak = rss();
            let spike = peak.saturating_sub(base);
            assert!(
                spike >= N * USED * 9 / 10,
                "{mode:?}: touched pages show in RSS"
            );
            for s in stacks {
                pool.put(s);
            }
            // What an idle worker does before it sleeps (step 4), one slice at a time.
            let mut slices = 0;
            while a.needs_trim() {
                let n = a.trim_slice();
                assert!((1..=TRIM_RUN).contains(&n), "{mode:?}: a slice of {n}");
                slices += 1;
            }
            if mode == GuardMode::Madvise {
                // Carved in address order, returned as a spike: long runs, one madvise each.
                let bound = N / TRIM_RUN + GLOBAL_WARM_WATERMARK + LOCAL_HIGH_WATERMARK + 32;
                assert!(
                    slices <= bound,
                    "{mode:?}: {slices} slices for {N} stacks: runs not coalesced"
                );
            }
            let after = rss();
            let st = a.stats();
            eprintln!(
                "{mode:?}: RSS {} MiB -> {} MiB (spike) -> {} MiB; {st:?}",
                base >> 20,
                peak >> 20,
                after >> 20
            );
            // At most the local and global warm watermarks stay committed (~15 MiB here).
            let kept = (LOCAL_HIGH_WATERMARK + GLOBAL_WARM_WATERMARK) * USED;
            assert!(
                after <= base + kept + (16 << 20),
                "{mode:?}: memory came back"
            );
            assert!(st.decommitted >= N - LOCAL_HIGH_WATERMARK - GLOBAL_WARM_WATERMARK - BATCH);
            assert_eq!(st.pooled, N);
            // Cold stacks still have their guards and work as stacks.
            let mut cold = Vec::new();
            for _ in 0..N {
                cold.push(pool.get().unwrap());
            }
            let s = cold.last().unwrap();
            let (lo, hi) = s.guard_range();
            assert!(
                !readable(lo) && readable(hi),
                "{mode:?}: guard survives MADV_DONTNEED"
            );
            touch(s, USED);
            assert_eq!(a.stats().mappings, st.mappings, "no new mappings for reuse");
        }
    }

    /// Returning stacks never decommits (no syscall on the return path, however many pile up),
    /// and stacks returned in scrambled order still come back as address runs.
    #[test]
    fn the_return_path_never_decommits_and_trim_coalesces_runs() {
        for mode in modes() {
            // More than DEFER_LIMIT beyond every watermark: the old return path trimmed inline.
            let n = DEFER_LIMIT + GLOBAL_WARM_WATERMARK + LOCAL_HIGH_WATERMARK + 4 * BATCH;
            if mode == GuardMode::Mprotect && n * 2 + maps() + 1024 > max_map_count().unwrap_or(0) {
                continue; // two mappings per stack: this many would hit vm.max_map_count
            }
            let a = alloc(mode, 16 * 1024);
            let mut pool = StackPool::new(a.clone());
            let mut stacks: Vec<_> = (0..n).map(|_| pool.get().unwrap()).collect();
            // Scramble the return order (a fixed xorshift shuffle), as timers finishing do.
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            for i in (1..stacks.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                stacks.swap(i, (x % (i as u64 + 1)) as usize);
            }
            for s in stacks {
                pool.put(s);
            }
            let st = a.stats();
            assert_eq!(st.decommitted, 0, "{mode:?}: the return path decommitted");
            assert!(a.trim_pending() > DEFER_LIMIT, "{mode:?}: {st:?}");
            let pending = a.trim_pending();
            let mut slices = 0;
            let mut done = 0;
            while a.needs_trim() {
                let k = a.trim_slice();
                assert!((1..=TRIM_RUN).contains(&k));
                done += k;
                slices += 1;
            }
            assert_eq!(done, pending);
            assert_eq!(a.stats().decommitted, pending);
            if mode == GuardMode::Madvise {
                // Runs end at TRIM_RUN and at the holes left by the stacks kept warm (and at
                // chunk boundaries): far fewer slices than stacks.
                let bound = pending / TRIM_RUN + GLOBAL_WARM_WATERMARK + LOCAL_HIGH_WATERMARK + 32;
                assert!(
                    slices <= bound,
                    "{slices} slices for {pending} stacks: runs not coalesced"
                );
            }
        }
    }

    #[test]
    fn pools_on_many_threads_never_share_a_slot() {
        for mode in modes() {
            let a = alloc(mode, 16 * 1024);
            let live = Arc::new(Mutex::new(HashSet::new()));
            std::thread::scope(|scope| {
                for t in 0..4 {
                    let (a, live) = (a.clone(), live.clone());
                    scope.spawn(move || {
                        let mut pool = StackPool::new(a);
                        let mut held = Vec::new();
                        for i in 0..20_000usize {
                            if held.len() < 300 && (i * 7 + t) % 3 != 0 {
                                let s = pool.get().unwrap();
                                assert!(lock(&live).insert(s.limit()), "slot handed out twice");
                                held.push(s);
                            } else if let Some(s) = held.pop() {
                                assert!(lock(&live).remove(&s.limit()));
                                if i % 5 == 0 {
                                    drop(s); // straight to the global list
                                } else {
                                    pool.put(s);
                                }
                            }
                        }
                        for s in held {
                            assert!(lock(&live).remove(&s.limit()));
                            pool.put(s);
                        }
                    });
                }
            });
            let st = a.stats();
            assert_eq!(st.live, 0, "{mode:?}: {st:?}");
        }
    }

    #[test]
    fn warm_get_put_is_cheap_and_fresh_slots_are_small() {
        if !isolated(
            module_path!(),
            "warm_get_put_is_cheap_and_fresh_slots_are_small",
        ) {
            return;
        }
        for mode in modes() {
            let a = alloc(mode, 256 * 1024);
            let mut pool = StackPool::new(a.clone());
            // Warm path.
            let s = pool.get().unwrap();
            pool.put(s);
            const ROUNDS: u32 = 1_000_000;
            let t = Instant::now();
            for _ in 0..ROUNDS {
                let s = black_box(pool.get().unwrap());
                pool.put(s);
            }
            let warm = t.elapsed() / ROUNDS;
            // Fresh slots, each running a greenlet up to its first suspension: RSS per parked
            // greenlet. Runs on top of the warm pool, so take the pooled one first.
            const N: usize = 2000;
            let mut cos = Vec::with_capacity(N);
            let stacks: Vec<_> = (0..N + 1).map(|_| pool.get().unwrap()).collect();
            let base = rss();
            for s in stacks.into_iter().skip(1) {
                let mut co = Coroutine::with_stack(s, |y, ()| {
                    y.suspend(());
                });
                assert!(matches!(co.resume(()), CoroutineResult::Yield(())));
                cos.push(co);
            }
            let per = (rss() - base) / N;
            let t = Instant::now();
            let fresh: Vec<_> = (0..N).map(|_| pool.get().unwrap()).collect();
            let per_fresh = t.elapsed() / N as u32;
            eprintln!(
                "{mode:?}: warm get+put {warm:?}; fresh slot {per_fresh:?}; \
                 RSS per parked greenlet {per} bytes"
            );
            assert!(warm.as_nanos() < 2_000, "warm path {warm:?}");
            assert!(per <= 16 * 1024, "RSS per parked greenlet {per}");
            drop(fresh);
            drop(cos);
        }
    }

    #[test]
    fn error_message_names_the_mapping_limit() {
        let e = StackError {
            op: "mmap",
            len: 266_240,
            stack_size: 256 * 1024,
            source: io::Error::from_raw_os_error(libc::ENOMEM),
            map_count: Some(65_526),
            max_map_count: Some(65_530),
            mode: GuardMode::Mprotect,
            reason: GuardReason::Forced,
            stats: StackStats {
                live: 32_700,
                pooled: 10,
                decommitted: 2,
                mappings: 65_420,
                bytes_reserved: 8 << 30,
            },
        };
        let msg = e.to_string();
        eprintln!("{msg}");
        assert!(msg.contains("MADV_GUARD_INSTALL"), "{msg}");
        assert!(
            msg.contains(
                "[grove stacks: 32700 live, 10 pooled (2 decommitted), 65420 mappings, \
                 8 GiB reserved, Mprotect guards]"
            ),
            "{msg}"
        );
        assert!(msg.contains("256 KiB"), "{msg}");
        assert!(msg.contains("mmap of 266240 bytes failed"), "{msg}");
        assert!(msg.contains("65526 of vm.max_map_count = 65530"), "{msg}");
        assert!(msg.contains("sysctl -w vm.max_map_count="), "{msg}");
        assert!(
            msg.contains(
                "guarded with mprotect because GROVE_STACK_GUARD=mprotect is set: two mappings \
                 per stack, so at most about 32765 greenlets (vm.max_map_count = 65530) can be \
                 live at once"
            ),
            "{msg}"
        );
        let io: io::Error = e.into();
        assert_eq!(io.kind(), io::ErrorKind::OutOfMemory);
    }

    /// Under a small `RLIMIT_AS` the allocator must return a `StackError`, in both modes.
    #[test]
    fn stack_error_under_rlimit_as() {
        if in_child() {
            let mode = GuardMode::detect();
            let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
            let vsz: usize = statm.split_whitespace().next().unwrap().parse().unwrap();
            let limit = (vsz * page_size() + (32 << 20)) as libc::rlim_t;
            let rl = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: `rl` is a valid rlimit.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) }, 0);
            let a = Arc::new(StackAllocator::new(StackConfig { size: 4 << 20 }));
            let mut pool = StackPool::new(a);
            let mut held = Vec::new();
            let err = loop {
                match pool.get() {
                    Ok(s) => held.push(s),
                    Err(e) => break e,
                }
            };
            println!("MODE<<{mode:?}>> HELD<<{}>> ERR<<{err}>>", held.len());
            return;
        }
        for env in ["auto", "mprotect"] {
            let out = run_child(
                module_path!(),
                "stack_error_under_rlimit_as",
                &[(GUARD_ENV, env)],
            );
            let stdout = String::from_utf8_lossy(&out.stdout);
            eprintln!("{stdout}");
            assert!(out.status.success(), "{:?}", out.status);
            assert!(stdout.contains("cannot allocate a greenlet stack of 4 MiB: mmap of"));
            // Some stacks fit under the limit (Madvise: after halving the chunk) before it fails.
            assert!(!stdout.contains("HELD<<0>>"), "{stdout}");
            assert!(stdout.contains("Cannot allocate memory"));
            assert!(stdout.contains("vm.max_map_count = "));
            assert!(stdout.contains("Builder::stack_size"));
            if env == "mprotect" {
                assert!(stdout.contains("MODE<<Mprotect>>"));
            }
        }
    }

    #[test]
    fn child_helper_reports_signals() {
        // Sanity check of the helper the overflow tests rely on.
        if in_child() {
            // SAFETY: aborting is always allowed.
            unsafe { libc::abort() };
        }
        let out = run_child(module_path!(), "child_helper_reports_signals", &[]);
        assert_eq!(out.status.signal(), Some(libc::SIGABRT));
    }
}
