//! The allocator's counters ([`StackStats`]) and what a failed allocation tells the user
//! ([`StackError`]): which call failed, how the process stands against `vm.max_map_count`, why
//! stacks are guarded the way they are, the counters at the time, and what to change. `try_spawn`
//! hands a [`StackError`] to the user (as an `io::Error`), so running out of mappings or memory is
//! never a panic or an abort.

use std::fmt;
use std::io;

use super::guard::{GuardMode, GuardReason};

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
    pub(super) op: &'static str,
    /// Bytes the call asked for.
    pub(super) len: usize,
    /// Usable bytes per stack.
    pub(super) stack_size: usize,
    /// The OS error.
    pub(super) source: io::Error,
    /// Mappings the process had when the call failed (`/proc/self/maps` lines), if readable.
    pub(super) map_count: Option<usize>,
    /// The kernel's limit (`/proc/sys/vm/max_map_count`), if readable.
    pub(super) max_map_count: Option<usize>,
    /// How the allocator guards its stacks.
    pub(super) mode: GuardMode,
    /// Why it guards them so.
    pub(super) reason: GuardReason,
    /// The allocator's counters when the call failed.
    pub(super) stats: StackStats,
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
pub(super) struct SizeText(pub(super) usize);

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
