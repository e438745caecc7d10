//! [`StackPool`]: a worker's private LIFO of warm stacks, the fast path of getting and returning
//! a stack (a `Vec` pop or push, no lock, no atomic read-modify-write). Step 1 of getting and
//! steps 1–2 of returning (see the module essay) happen here; everything slower is the
//! allocator's.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::allocator::{FreshRange, PoolGauge, StackAllocator};
use super::config::{BATCH, LOCAL_HIGH_WATERMARK};
use super::error::StackError;
use super::green::GreenStack;

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
        let (alloc, warm) = (&self.alloc, &mut self.warm);
        if alloc.take_global(BATCH, |s| warm.push(GreenStack::new(s, Arc::clone(alloc)))) > 0 {
            let s = self
                .warm
                .pop()
                .expect("take_global moved at least one stack");
            self.publish();
            return Ok(s);
        }
        // 3./4. A new slot, carved from the pool's fresh range (refilled when used up).
        let slot = self.alloc.fresh_slot(&mut self.fresh)?;
        Ok(GreenStack::new(slot, Arc::clone(&self.alloc)))
    }

    /// Takes back the stack of a finished greenlet, to be reused. Call only once the coroutine
    /// that ran on it is done (e.g. from `Coroutine::into_stack`).
    #[inline]
    pub(crate) fn put(&mut self, s: GreenStack) {
        if !s.is_pooled_by(&self.alloc) {
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

    /// Whether the pool holds no stack (unit tests).
    #[cfg(test)]
    pub(super) fn is_empty(&self) -> bool {
        self.warm.is_empty()
    }

    /// Publishes the pool's length for `StackAllocator::stats`: a plain store to a line only
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
        self.alloc.return_fresh(std::mem::take(&mut self.fresh));
    }
}
