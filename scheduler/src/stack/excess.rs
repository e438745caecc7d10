//! [`ExcessSet`]: the committed stacks of the global list that wait to be decommitted (step 3 of
//! returning a stack, see the module essay), as one bitmap per chunk.
//!
//! # The problem
//! After a burst (100,000 sleepers finishing) tens of thousands of stacks flow through this set:
//! each joins it when the global list's warm part overflows, and most leave it again when the
//! next burst takes them back; only what a quiet second leaves here is decommitted, the
//! lowest-addressed run of adjacent slots at a time. The set was a `BTreeMap` keyed by address:
//! an insert or a removal walked a tree of ~100k entries spread over the heap, and under the
//! 100k-sleepers workload `push_global`'s tree search was 3% of all samples, nearly all of it
//! cache misses on tree nodes.
//!
//! # The approach
//! Madvise mode carves every pooled slot from a chunk: `start + k × slot_len`. So the set is, per
//! chunk, a bitmap of which `k` are in it. An insert or removal is a bit flip after a binary search
//! over the chunks (a few hundred at most, 4,096 slots each, in one cache-friendly `Vec`); the
//! lowest run of adjacent slots is a scan for the first set bit and its run of ones. The whole
//! bitmap of a million stacks is 128 KiB. A run stops at a chunk's end even if the next chunk
//! happens to follow it in memory: one extra `madvise` per 4,096 slots at most.
//!
//! Measured against the tree (100k sleepers of 1-100 ms, 15 repetitions, 3 interleaved pairs):
//! the process's CPU time fell 8% (4.36-4.54 s to 4.05-4.13 s) and its wall time 4%.
//!
//! Mprotect mode maps every stack on its own, so there are no chunks and no runs (each stack
//! is decommitted alone): a plain `Vec`. A slot of no known chunk (which Madvise mode never
//! makes, since chunks are registered before they are carved) would go there too.
//!
//! The set deals in slot addresses (a slot's lowest address, its guard page's); the allocator
//! turns them back into its ownership tokens.

/// Committed stacks waiting to be decommitted; see the module docs. Not synchronized: it lives
/// in the allocator's global list, behind its lock.
#[derive(Debug)]
pub(super) struct ExcessSet {
    /// Bytes per slot (guard page included): the stride of every chunk.
    slot_len: usize,
    /// Per chunk, ordered by start address.
    chunks: Vec<ChunkBits>,
    /// Stacks of no chunk (Mprotect mode's own mappings), in no order.
    singles: Vec<usize>,
    len: usize,
    /// Every chunk below this index is empty: where a search for the lowest run starts.
    low: usize,
    /// Every chunk at or above this index is empty: where a search for the highest stack
    /// starts. With both, a set whose members sit in a few of many chunks is not scanned
    /// end to end on every take.
    high: usize,
}

/// One chunk's members: bit `k` of `bits` is set if the slot at `start + k × slot_len` is in
/// the set.
#[derive(Debug)]
struct ChunkBits {
    start: usize,
    slots: usize,
    bits: Vec<u64>,
    count: usize,
}

impl ExcessSet {
    /// An empty set for slots of `slot_len` bytes.
    pub(super) fn new(slot_len: usize) -> ExcessSet {
        ExcessSet {
            slot_len,
            chunks: Vec::new(),
            singles: Vec::new(),
            len: 0,
            low: 0,
            high: 0,
        }
    }

    /// Makes the `slots` slots from `start` members-to-be: called for every chunk before any of
    /// its slots can be inserted.
    pub(super) fn add_chunk(&mut self, start: usize, slots: usize) {
        let at = self.chunks.partition_point(|c| c.start < start);
        // The new chunk is empty, so `low` stays a lower bound; `high` must follow the chunks
        // that move up.
        if at < self.high {
            self.high += 1;
        }
        self.chunks.insert(
            at,
            ChunkBits {
                start,
                slots,
                bits: vec![0; slots.div_ceil(64)],
                count: 0,
            },
        );
    }

    /// How many stacks the set holds.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Adds the stack whose slot starts at `lo`.
    pub(super) fn insert(&mut self, lo: usize) {
        self.len += 1;
        let Some(i) = self.chunk_of(lo) else {
            self.singles.push(lo);
            return;
        };
        let slot_len = self.slot_len;
        self.low = self.low.min(i);
        self.high = self.high.max(i + 1);
        let c = &mut self.chunks[i];
        let k = (lo - c.start) / slot_len;
        debug_assert_eq!(
            (lo - c.start) % slot_len,
            0,
            "a slot off its chunk's stride"
        );
        debug_assert_eq!(c.bits[k / 64] & (1 << (k % 64)), 0, "a slot inserted twice");
        c.bits[k / 64] |= 1 << (k % 64);
        c.count += 1;
    }

    /// Takes a stack out, the highest-addressed one (far from where
    /// [`take_lowest_run`](Self::take_lowest_run) decommits), or `None` if the set is empty.
    pub(super) fn pop(&mut self) -> Option<usize> {
        if let Some(s) = self.singles.pop() {
            self.len -= 1;
            return Some(s);
        }
        let Some(i) = self.chunks[..self.high].iter().rposition(|c| c.count > 0) else {
            self.high = 0;
            return None;
        };
        self.high = i + 1;
        let c = &mut self.chunks[i];
        let w = c.bits.iter().rposition(|&w| w != 0)?;
        let b = 63 - c.bits[w].leading_zeros() as usize;
        c.bits[w] &= !(1 << b);
        c.count -= 1;
        self.len -= 1;
        Some(self.slot(i, w * 64 + b))
    }

    /// Takes out the lowest-addressed run of adjacent stacks of one chunk, at most `max` (at
    /// least one) of them: returns the first one's address and how many. In Mprotect mode (no
    /// chunks) one stack. `None` if the set is empty.
    pub(super) fn take_lowest_run(&mut self, max: usize) -> Option<(usize, usize)> {
        if let Some(lo) = self.singles.pop() {
            self.len -= 1;
            return Some((lo, 1));
        }
        let Some(i) = (self.low..self.chunks.len()).find(|&i| self.chunks[i].count > 0) else {
            self.low = self.chunks.len();
            return None;
        };
        self.low = i;
        let c = &self.chunks[i];
        let w = c.bits.iter().position(|&w| w != 0)?;
        let first = w * 64 + c.bits[w].trailing_zeros() as usize;
        let mut end = first + 1;
        while end < c.slots && end - first < max && c.bits[end / 64] & (1 << (end % 64)) != 0 {
            end += 1;
        }
        let c = &mut self.chunks[i];
        for k in first..end {
            c.bits[k / 64] &= !(1 << (k % 64));
        }
        c.count -= end - first;
        self.len -= end - first;
        Some((self.slot(i, first), end - first))
    }

    /// The stacks of no chunk (the only ones in Mprotect mode), for unmapping them.
    pub(super) fn singles(&self) -> impl Iterator<Item = usize> + '_ {
        self.singles.iter().copied()
    }

    /// The chunk holding address `lo`, by index.
    fn chunk_of(&self, lo: usize) -> Option<usize> {
        let i = self
            .chunks
            .partition_point(|c| c.start <= lo)
            .checked_sub(1)?;
        let c = &self.chunks[i];
        (lo < c.start + c.slots * self.slot_len).then_some(i)
    }

    /// The address of slot `k` of chunk `i`.
    fn slot(&self, i: usize, k: usize) -> usize {
        self.chunks[i].start + k * self.slot_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEN: usize = 0x1000 * 5;

    /// Every run the set hands out, in order, until it is empty.
    fn runs(set: &mut ExcessSet, max: usize) -> Vec<(usize, usize)> {
        std::iter::from_fn(|| set.take_lowest_run(max)).collect()
    }

    #[test]
    fn runs_come_out_lowest_first_and_stop_at_gaps_limits_and_chunk_ends() {
        let mut set = ExcessSet::new(LEN);
        // Two chunks, the second registered first and lying right after the first in memory.
        let (a, b) = (0x10_0000, 0x10_0000 + 130 * LEN);
        set.add_chunk(b, 10);
        set.add_chunk(a, 130);
        // Chunk a: slots 1..=70 (across a word boundary) and 100, 129; chunk b: 0, 1.
        for k in (1..=70).chain([100, 129]) {
            set.insert(a + k * LEN);
        }
        set.insert(b);
        set.insert(b + LEN);
        assert_eq!(set.len(), 74);
        assert_eq!(
            runs(&mut set, 64),
            [
                (a + LEN, 64),
                (a + 65 * LEN, 6),
                (a + 100 * LEN, 1),
                // Slot 129 is adjacent to b's slot 0 in memory, but a run never spans chunks.
                (a + 129 * LEN, 1),
                (b, 2),
            ]
        );
        assert_eq!(set.len(), 0);
    }

    #[test]
    fn pop_takes_the_highest_and_reinsertion_works() {
        let mut set = ExcessSet::new(LEN);
        let a = 0x40_0000;
        set.add_chunk(a, 200);
        for k in [3, 150, 64, 63] {
            set.insert(a + k * LEN);
        }
        let order: Vec<usize> = std::iter::from_fn(|| set.pop()).collect();
        assert_eq!(order, [150, 64, 63, 3].map(|k| a + k * LEN));
        assert_eq!(set.len(), 0);
        set.insert(a + 3 * LEN);
        assert_eq!(set.pop(), Some(a + 3 * LEN));
        assert_eq!(set.pop(), None);
        assert_eq!(set.take_lowest_run(64), None);
    }

    #[test]
    fn chunks_mapped_later_below_or_between_others_are_found() {
        let mut set = ExcessSet::new(LEN);
        let (a, b, c) = (0x100_0000, 0x200_0000, 0x300_0000);
        set.add_chunk(b, 8);
        set.insert(b + 2 * LEN);
        assert_eq!(set.take_lowest_run(8), Some((b + 2 * LEN, 1)));
        // Chunks mapped after the hints moved: one below everything, one above.
        set.add_chunk(a, 8);
        set.add_chunk(c, 8);
        for lo in [c + LEN, a + 7 * LEN, b] {
            set.insert(lo);
        }
        assert_eq!(set.pop(), Some(c + LEN));
        assert_eq!(set.take_lowest_run(8), Some((a + 7 * LEN, 1)));
        assert_eq!(set.pop(), Some(b));
        assert_eq!(set.pop(), None);
        // A chunk mapped below one that holds a member: the member is still found.
        set.insert(c + 5 * LEN);
        set.add_chunk(0x80_0000, 8);
        assert_eq!(set.pop(), Some(c + 5 * LEN));
        // A chunk inserted between two, after both hints went to their ends.
        let between = 0x250_0000;
        set.add_chunk(between, 8);
        set.insert(between + 3 * LEN);
        assert_eq!(set.pop(), Some(between + 3 * LEN));
        set.insert(between);
        assert_eq!(set.take_lowest_run(8), Some((between, 1)));
        assert_eq!(set.len(), 0);
    }

    #[test]
    fn slots_of_no_chunk_are_kept_one_by_one() {
        let mut set = ExcessSet::new(LEN);
        set.add_chunk(0x100_0000, 4);
        // Below the chunk, past its end: Mprotect-style single stacks.
        set.insert(0x10_0000);
        set.insert(0x100_0000 + 4 * LEN);
        set.insert(0x100_0000);
        assert_eq!(set.len(), 3);
        assert_eq!(set.singles().count(), 2);
        let got = runs(&mut set, 64);
        assert_eq!(
            got.len(),
            3,
            "each single alone, then the chunk's slot: {got:?}"
        );
        assert_eq!(got[2], (0x100_0000, 1));
        assert_eq!(set.len(), 0);
    }
}
