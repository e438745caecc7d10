//! The stack size and the numbers that tune the allocator and the pools: watermarks, batch and
//! chunk sizes, the decommit decay. Each says what it bounds; the module essay (`mod.rs`) says
//! where in the get/return steps it applies.

/// Smallest stack a greenlet may be given, in usable bytes (the guard page comes on top).
///
/// The runtime and greenlet builders refuse a smaller `stack_size` with an error, and the
/// allocator rounds any smaller request up to it (so it is also at least corosensei's own
/// `MIN_STACK_SIZE`, which the `Stack` contract requires).
pub const MIN_STACK_SIZE: usize = 16 * 1024;

/// A pool holding more than this many stacks hands its oldest [`BATCH`] to the global list.
pub(super) const LOCAL_HIGH_WATERMARK: usize = 64;

/// Stacks moved at once between a pool and the global list, and slots per fresh range.
pub(super) const BATCH: usize = 32;

/// Warm stacks the global list keeps; older ones are decommitted.
pub(super) const GLOBAL_WARM_WATERMARK: usize = 256;

/// Excess stacks (beyond [`GLOBAL_WARM_WATERMARK`]) left for idle workers; past this many, busy
/// workers also decommit, one `StackAllocator::trim_slice` every few hundred ticks.
pub(crate) const DEFER_LIMIT: usize = 16 * 1024;

/// Most slots one `StackAllocator::trim_slice` gives back (one `madvise` of at most `TRIM_RUN`
/// adjacent slots): bounds how long work that arrives meanwhile waits.
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
pub(super) const FIRST_CHUNK_SLOTS: usize = 64;

/// Largest chunk, in slots.
pub(super) const MAX_CHUNK_SLOTS: usize = 4096;

/// Largest chunk, in bytes, whatever the stack size (keeps 32-bit address spaces usable).
#[cfg(target_pointer_width = "64")]
pub(super) const MAX_CHUNK_BYTES: usize = 64 << 30;
#[cfg(not(target_pointer_width = "64"))]
pub(super) const MAX_CHUNK_BYTES: usize = 256 << 20;

/// Stacks at least this large (a huge page) get `MADV_NOHUGEPAGE` in Mprotect mode too.
pub(super) const HUGE_PAGE: usize = 2 << 20;

/// Greenlet stack configuration, fixed for the runtime's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StackConfig {
    /// Usable bytes per stack, not counting the guard page. Rounded up to whole pages, and to at
    /// least [`MIN_STACK_SIZE`].
    pub(crate) size: usize,
}

/// A requested stack size as allocated: whole pages, at least [`MIN_STACK_SIZE`].
pub(super) fn round_size(size: usize, page: usize) -> usize {
    size.max(MIN_STACK_SIZE)
        .checked_next_multiple_of(page)
        // An absurd size: keep it absurd and let mmap refuse it with a clear error.
        .unwrap_or((usize::MAX / 2) & !(page - 1))
}
