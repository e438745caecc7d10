//! The allocator: maps chunks (Madvise mode) or single stacks (Mprotect mode), installs guards,
//! keeps the global list of returned slots and decommits its excess one run at a time. It deals
//! in bare [`Slot`] tokens; `green.rs` wraps them into `GreenStack`s and `pool.rs` caches those
//! per worker. Steps 2–4 of getting and returning a stack (see the module essay) happen here.

use std::collections::VecDeque;
use std::io;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use super::config::{
    round_size, StackConfig, BATCH, DECAY, FIRST_CHUNK_SLOTS, GLOBAL_WARM_WATERMARK, HUGE_PAGE,
    MAX_CHUNK_BYTES, MAX_CHUNK_SLOTS, TRIM_RUN,
};
use super::error::{SizeText, StackError, StackStats};
use super::excess::ExcessSet;
use super::guard::{detect_with_reason, GuardMode, GuardReason};
use super::sys;

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

// The critical sections below cannot panic midway, so a poisoned lock still holds
// consistent data: the scheduler's one lock-ignoring-poison helper serves.
pub(super) use crate::loom::lock;

/// The ownership token of one slot while it is not a `GreenStack`: in the global list or being
/// moved there. Deliberately neither `Copy` nor `Clone`.
#[derive(Debug)]
pub(super) struct Slot {
    /// Lowest address: the start of the guard page.
    pub(super) lo: NonZeroUsize,
    /// One past the highest usable byte: where the stack starts growing down from.
    pub(super) top: NonZeroUsize,
}

/// Slots not yet handed out by a pool: `[next, end)`, a multiple of the slot length.
#[derive(Debug, Default)]
pub(super) struct FreshRange {
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
#[derive(Debug)]
struct GlobalList {
    /// The most recently returned committed stacks, oldest at the front; at most
    /// [`GLOBAL_WARM_WATERMARK`].
    warm: VecDeque<Slot>,
    /// Committed stacks pushed out of `warm`, waiting to be decommitted, by address (step 4).
    excess: ExcessSet,
    /// Decommitted stacks.
    cold: Vec<Slot>,
}

impl GlobalList {
    fn new(slot_len: usize) -> GlobalList {
        GlobalList {
            warm: VecDeque::new(),
            excess: ExcessSet::new(slot_len),
            cold: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.warm.len() + self.excess.len() + self.cold.len()
    }
}

/// A pool's published length, read only by [`StackAllocator::stats`]. Padded to its own cache
/// lines so the owning worker's plain stores never contend with another worker's.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(super) struct PoolGauge(pub(super) AtomicUsize);

/// Maps, guards and recycles greenlet stacks. One per runtime, shared by its workers (behind an
/// `Arc`); each worker allocates through its own `StackPool`.
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

    pub(super) fn with_mode(cfg: StackConfig, mode: GuardMode) -> StackAllocator {
        let page = sys::page_size();
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
            global: Mutex::new(GlobalList::new(size + page)),
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

    /// Usable bytes per stack, as rounded (unit tests).
    #[cfg(test)]
    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// The page size, which is also the guard's size.
    #[inline]
    pub(super) fn page(&self) -> usize {
        self.page
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
                let ceiling = match (sys::max_map_count(), sys::map_count()) {
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

    /// The slot behind `StackAllocator::allocate` (in `green.rs`), for a greenlet that has not
    /// been handed to a worker yet; callable from any thread. At the configured size, an ordinary
    /// slot: from the global list, else newly carved (the rest of its fresh range goes back to
    /// the spare list). At any other size, a dedicated mapping with its own guard.
    pub(super) fn allocate_slot(&self, size: usize) -> Result<Slot, StackError> {
        let size = round_size(size, self.page);
        if size != self.size {
            return self.map_single(size);
        }
        if let Some(slot) = self.pop_global() {
            return Ok(slot);
        }
        match self.mode {
            GuardMode::Mprotect => self.map_single(size),
            GuardMode::Madvise => {
                let mut range = self.reserve_range()?;
                let carved = self.carve(&mut range);
                self.return_fresh(range);
                carved
            }
        }
    }

    /// Steps 3 and 4 of `StackPool::get`: a never-used slot at the configured size. In Madvise
    /// mode carved from the pool's `fresh` range, which is refilled from the current chunk once
    /// used up; in Mprotect mode a stack mapped on its own.
    pub(super) fn fresh_slot(&self, fresh: &mut FreshRange) -> Result<Slot, StackError> {
        match self.mode {
            GuardMode::Mprotect => self.map_single(self.size),
            GuardMode::Madvise => {
                if fresh.next == fresh.end {
                    *fresh = self.reserve_range()?;
                }
                self.carve(fresh)
            }
        }
    }

    /// Madvise mode: guards the next slot of `range` and takes it out of the range. On failure
    /// the range is left as it was.
    fn carve(&self, range: &mut FreshRange) -> Result<Slot, StackError> {
        let lo = range.next;
        self.install_guard(lo)?;
        range.next += self.slot_len;
        self.slots.fetch_add(1, Ordering::Relaxed);
        let lo = NonZeroUsize::new(lo).expect("chunks never start at 0");
        Ok(self.slot_at(lo, self.size))
    }

    /// Takes back the uncarved rest of a fresh range (a dropped pool's, or what `allocate_slot`
    /// did not use), to be handed out again before the chunk is carved further.
    pub(super) fn return_fresh(&self, range: FreshRange) {
        if range.next != range.end {
            lock(&self.carver).spare.push(range);
        }
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
            map_count: sys::map_count(),
            max_map_count: sys::max_map_count(),
            mode: self.guard_mode(),
            reason: self.reason,
            stats: self.stats(),
        }
    }

    /// Whether `s` is one of the configured size (pooled) rather than a dedicated mapping.
    pub(super) fn is_pooled(&self, s: &Slot) -> bool {
        s.top.get() - s.lo.get() == self.slot_len
    }

    /// Takes the most recently returned stack of the global list: warm, then excess (still
    /// committed), then cold.
    fn pop_global(&self) -> Option<Slot> {
        let mut g = lock(&self.global);
        let s = g
            .warm
            .pop_back()
            .or_else(|| g.excess.pop().map(|lo| self.pooled_slot(lo)))
            .or_else(|| g.cold.pop());
        self.excess.store(g.excess.len(), Ordering::Relaxed);
        s
    }

    /// Hands up to `max` stacks of the global list to `out`, committed ones before cold ones,
    /// the most recently returned warm one last (so a LIFO pops it first). Returns how many moved.
    pub(super) fn take_global(&self, max: usize, mut out: impl FnMut(Slot)) -> usize {
        let mut g = lock(&self.global);
        let warm = g.warm.len().min(max);
        let excess = g.excess.len().min(max - warm);
        let cold = g.cold.len().min(max - warm - excess);
        let cold_from = g.cold.len() - cold;
        g.cold.drain(cold_from..).for_each(&mut out);
        for _ in 0..excess {
            let lo = g.excess.pop().expect("counted above");
            out(self.pooled_slot(lo));
        }
        let warm_from = g.warm.len() - warm;
        g.warm.drain(warm_from..).for_each(&mut out);
        self.excess.store(g.excess.len(), Ordering::Relaxed);
        warm + excess + cold
    }

    /// Adds returned slots to the global list (step 3): the newest stay warm, the oldest beyond
    /// the watermark move to the excess set. No syscall: decommitting is [`trim_slice`]'s
    /// (step 4), never the return path's.
    ///
    /// [`trim_slice`]: Self::trim_slice
    pub(super) fn push_global(&self, slots: impl Iterator<Item = Slot>) {
        let mut g = lock(&self.global);
        g.warm.extend(slots);
        let overflow = g.warm.len() > GLOBAL_WARM_WATERMARK;
        while g.warm.len() > GLOBAL_WARM_WATERMARK {
            let s = g.warm.pop_front().expect("longer than the watermark");
            // The token becomes a bit of the excess set; `pooled_slot` remakes it.
            g.excess.insert(s.lo.get());
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

    /// Step 4, one slice: decommits the lowest-addressed run of adjacent excess slots of one
    /// chunk, at most [`TRIM_RUN`] of them, with one `madvise` outside the lock (one slot per
    /// call in Mprotect mode, where every stack is its own mapping). Returns how many it
    /// decommitted.
    pub(crate) fn trim_slice(&self) -> usize {
        let run = {
            let mut g = lock(&self.global);
            let run = g.excess.take_lowest_run(TRIM_RUN);
            self.excess.store(g.excess.len(), Ordering::Relaxed);
            run
        };
        let Some((first, n)) = run else {
            return 0;
        };
        // From the first slot's usable part to the last one's top (guard pages in between).
        let from = first + self.page;
        let to = first + n * self.slot_len;
        self.decommit(from, to - from);
        let slots = (0..n).map(|k| self.pooled_slot(first + k * self.slot_len));
        lock(&self.global).cold.extend(slots);
        n
    }

    /// Gives the pages of `len` bytes from `from` back to the kernel: the usable part of one
    /// pooled slot, or of a run of adjacent ones (their guard pages in between included).
    fn decommit(&self, from: usize, len: usize) {
        // SAFETY: the range covers only pooled slots (taken off the global list by our caller),
        // so no greenlet runs on them and nothing references their contents; MADV_DONTNEED on
        // private anonymous memory only makes the pages read as zero again, and it preserves
        // guard markers (MADV_GUARD_INSTALL) and protections (the Mprotect guard pages).
        let done = unsafe { sys::decommit(from, len) };
        // Failure only means the memory stays committed; the slots are still valid stacks.
        debug_assert!(done.is_ok(), "madvise(MADV_DONTNEED): {done:?}");
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
            match sys::map_anon(len) {
                Ok(p) => {
                    sys::no_huge_pages(p.get(), len);
                    c.chunks.push((p.get(), len));
                    // Lock order: carver, then global (nothing takes them the other way round).
                    lock(&self.global).excess.add_chunk(p.get(), slots);
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
            // SAFETY: `lo` starts a never-used, page-aligned slot of one of our chunks, reserved
            // by the calling pool alone; installing a guard discards nothing anyone could observe.
            let Err(e) = (unsafe { sys::install_guard(lo, self.page) }) else {
                return Ok(());
            };
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
        let lo = sys::map_anon(len).map_err(|e| self.error("mmap", len, size, e))?;
        if size >= HUGE_PAGE {
            sys::no_huge_pages(lo.get(), len);
        }
        let guarded = match self.mode {
            GuardMode::Madvise => self.install_guard(lo.get()),
            GuardMode::Mprotect => {
                // SAFETY: the mapping was just created and nothing else knows of it.
                unsafe { sys::protect_none(lo.get(), self.page) }
                    .map_err(|e| self.error("mprotect", self.page, size, e))
            }
        };
        if let Err(e) = guarded {
            // SAFETY: as above; the mapping is discarded before anyone sees it.
            unsafe { sys::unmap(lo.get(), len) };
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
    pub(super) unsafe fn unmap_single(&self, s: Slot) {
        let len = s.top.get() - s.lo.get();
        // SAFETY: the caller guarantees the mapping is ours and unused.
        unsafe { sys::unmap(s.lo.get(), len) };
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

    /// The token of the pooled slot (of the configured size) at `lo`, which the excess set
    /// has just given up.
    fn pooled_slot(&self, lo: usize) -> Slot {
        self.slot_at(
            NonZeroUsize::new(lo).expect("slots never start at 0"),
            self.size,
        )
    }

    fn slot_at(&self, lo: NonZeroUsize, size: usize) -> Slot {
        Slot {
            lo,
            top: lo
                .checked_add(self.page + size)
                .expect("slot ends past the address space"),
        }
    }

    pub(super) fn register(&self, gauge: &Arc<PoolGauge>) {
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
                    unsafe { sys::unmap(start, len) };
                }
            }
            GuardMode::Mprotect => {
                let los = g.warm.iter().chain(g.cold.iter()).map(|s| s.lo.get());
                for lo in los.chain(g.excess.singles()) {
                    // SAFETY: see above: the stack is pooled, hence unused.
                    unsafe { sys::unmap(lo, self.slot_len) };
                }
            }
        }
    }
}
