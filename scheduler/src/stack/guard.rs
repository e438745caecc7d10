//! How guard pages are made, and why: Madvise mode where the kernel has guard markers
//! (`MADV_GUARD_INSTALL`, Linux ≥ 6.13), else Mprotect mode. Decided once per process by a probe
//! on a scratch mapping, or forced with `GROVE_STACK_GUARD=mprotect`; the reason is kept for the
//! messages that explain a mapping ceiling.

use std::fmt;
use std::io;
use std::sync::OnceLock;

use super::sys;

/// Environment variable selecting the guard mode; `mprotect` forces [`GuardMode::Mprotect`].
pub(crate) const GUARD_ENV: &str = "GROVE_STACK_GUARD";

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
    pub(super) fn detect() -> GuardMode {
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
    /// (errnos are small) keeps `StackError` within clippy's `result_large_err`.
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
pub(super) fn detect_with_reason() -> (GuardMode, GuardReason) {
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

/// Does this kernel accept `MADV_GUARD_INSTALL`? Tried on a scratch mapping.
#[cfg(test)]
pub(super) fn guard_install_supported() -> bool {
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
    let page = sys::page_size();
    let p = sys::map_anon(2 * page).map_err(|e| unsupported(e, libc::ENOMEM))?;
    // SAFETY: the scratch mapping was just created, is page-aligned and private to this
    // function, and nothing lives in it.
    let guarded = unsafe { sys::install_guard(p.get(), page) };
    // SAFETY: the scratch mapping is unused once the probe is done.
    unsafe { sys::unmap(p.get(), 2 * page) };
    guarded.map_err(|e| unsupported(e, libc::EINVAL))
}
