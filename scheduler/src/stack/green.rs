//! [`GreenStack`]: one greenlet's stack, the only type of this folder that corosensei sees, and
//! the promise grove makes it (`unsafe impl Stack`). It owns a slot of its allocator and sends the
//! slot home when dropped.

use std::mem::ManuallyDrop;
use std::ptr;
use std::sync::Arc;

use corosensei::stack::{Stack, StackPointer};

use super::allocator::{Slot, StackAllocator};
use super::error::StackError;

/// One greenlet's stack: a guard page, then the usable bytes (`StackConfig::size`, or its own
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

impl StackAllocator {
    /// A stack of `size` usable bytes (rounded like `StackConfig::size`) for a greenlet that
    /// has not been handed to a worker yet (`try_spawn`, or `Builder::stack_size` on one
    /// greenlet); callable from any thread. At the configured size it is an ordinary slot: from
    /// the global list, else newly carved, and pooled by whichever worker `put`s it back. At any
    /// other size it is a dedicated mapping with its own guard, unmapped when it is returned.
    ///
    /// Defined here rather than in `allocator.rs` so that the allocator deals only in slots and
    /// never names the stack type built on it.
    pub(crate) fn allocate(self: &Arc<Self>, size: usize) -> Result<GreenStack, StackError> {
        let slot = self.allocate_slot(size)?;
        Ok(GreenStack::new(slot, Arc::clone(self)))
    }
}

impl GreenStack {
    /// Wraps `slot`, taken from `alloc`'s global list or freshly made by it.
    #[inline]
    pub(super) fn new(slot: Slot, alloc: Arc<StackAllocator>) -> GreenStack {
        GreenStack { slot, alloc }
    }

    /// `[lo, hi)` of the guard page(s) below the stack, for the overflow reporter.
    #[inline]
    pub(crate) fn guard_range(&self) -> (usize, usize) {
        let lo = self.slot.lo.get();
        (lo, lo + self.alloc.page())
    }

    /// Whether a pool of `alloc` may keep this stack: it comes from `alloc` (not another
    /// runtime's allocator) and has the configured size (not a dedicated mapping).
    #[inline]
    pub(super) fn is_pooled_by(&self, alloc: &Arc<StackAllocator>) -> bool {
        Arc::ptr_eq(&self.alloc, alloc) && alloc.is_pooled(&self.slot)
    }

    /// Releases the allocator reference, leaving the bare slot token.
    pub(super) fn into_slot(self) -> Slot {
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
pub(super) const COLORS: usize = 64;
/// Bytes per colour step: one cache line, a multiple of corosensei's STACK_ALIGNMENT.
pub(super) const CACHE_LINE: usize = 64;

// SAFETY: corosensei's `Stack` contract, clause by clause.
// - *A guard page that catches overflows, included in `limit`*: `limit` is the slot's lowest
//   address, the start of its guard page, which was made inaccessible (MADV_GUARD_INSTALL or
//   PROT_NONE) before the stack was handed out and is never made accessible again. One page
//   suffices: Rust probes every page of a frame larger than a page.
// - *At least corosensei's `MIN_STACK_SIZE` (4 KiB) usable*: `[limit + page, base)` is the
//   slot's usable size (at least grove's `MIN_STACK_SIZE`, 16 KiB) less the cache colour (at
//   most `(COLORS - 1) * CACHE_LINE` = 4032 bytes): at least 12 KiB.
// - *`base` and `limit` aligned to `STACK_ALIGNMENT`* (16 bytes): slots are page-aligned, and
//   the colour is a multiple of `CACHE_LINE`, itself a multiple of 16.
// - *Valid while the stack is in use* (implied): the memory stays mapped while this GreenStack
//   exists, since it holds an `Arc` of the allocator, which unmaps only when dropped (and a
//   dedicated stack is unmapped only by this GreenStack's own `Drop`).
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
