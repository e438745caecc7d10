//! Greenlet stacks: guarded slots carved from large reservations, pooled per worker.
//!
//! This is one of the few modules of grove that contain `unsafe`: it maps, guards, decommits and
//! unmaps the memory greenlets run on, promises corosensei that every stack has a guard page, and
//! (in [`overflow`]) catches the fault when a greenlet runs into one.
//!
//! # Files, bottom to top
//! No file imports one above it, and this one only declares and re-exports.
//! - `config.rs`: [`MIN_STACK_SIZE`], [`StackConfig`] and the tuning constants (watermarks, batch
//!   and chunk sizes, the decommit decay).
//! - `sys.rs`: the kernel calls (`mmap`, `munmap`, `mprotect`, `madvise`) as small unsafe functions
//!   with their contracts, the page size and the `/proc` mapping counts: every raw memory call
//!   of the allocator (the overflow reporter keeps its signal-handling calls to itself).
//! - `guard.rs`: [`GuardMode`] and why it was chosen: the `MADV_GUARD_INSTALL` probe and
//!   `GROVE_STACK_GUARD`.
//! - `error.rs`: the allocator's counters and `StackError`, the message a failed allocation gives.
//! - `excess.rs`: the global list's excess set (stacks waiting to be decommitted) as one bitmap
//!   per chunk, so that joining, leaving and finding the lowest run of adjacent slots are bit
//!   operations.
//! - `allocator.rs`: [`StackAllocator`]: chunks, carving, guards, the global list, decommitting.
//!   It deals in bare `Slot` tokens and never names the stack type.
//! - `green.rs`: [`GreenStack`], a slot plus its allocator, and the `unsafe impl Stack` that
//!   states corosensei's contract clause by clause.
//! - `pool.rs`: [`StackPool`], a worker's LIFO of warm stacks.
//! - `overflow.rs`: the `SIGSEGV`/`SIGBUS` handler that names the greenlet that overflowed.
//! - `tests.rs`, `test_util.rs`: unit tests and the child-process helpers they share.
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
//! stops near 32.7k live greenlets: the "20–30k connections" wall. Memory is the other half: a
//! million parked greenlets must fit in ≲ 8 KiB of RSS each, so nothing may touch stack pages
//! that the greenlet itself did not.
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
//! Any `mmap`/`madvise`/`mprotect` failure becomes a `StackError`: never a panic or an abort,
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
//!    *excess* set, ordered by address, where they stay committed (and are reused before cold
//!    ones) until they are decommitted. Still no syscall: a bit set in the chunk's bitmap
//!    (`excess.rs`).
//! 4. *When* and *how* they are decommitted. Never on the way back: a `madvise` is a syscall plus
//!    a TLB shootdown IPI to every core running the process, and on the return path it lands in
//!    the middle of a burst of finishing greenlets (100,000 sleepers once spent most of their
//!    wall time there, and their p99 lateness grew past 250 ms because due timers waited behind
//!    it). Instead [`StackAllocator::trim_slice`] gives back **one run of adjacent slots** (at
//!    most [`TRIM_RUN`](config::TRIM_RUN) of them, one `madvise`; in Madvise mode the guard
//!    pages in between keep their markers), the lowest-addressed run of one chunk's excess. Because
//!    the set is ordered by address, the stacks of a spike, which were carved in address order,
//!    come back as long runs: about one `madvise` per 64 stacks instead of one per stack. Only
//!    once the burst is over: [`DECAY`](config::DECAY) (1 s) after a stack last joined the
//!    excess set, so a burst that repeats finds its stacks still committed instead of faulting
//!    100,000 pages in again (measured:
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

mod allocator;
mod config;
mod error;
mod excess;
mod green;
mod guard;
pub(crate) mod overflow;
mod pool;
mod sys;
#[cfg(test)]
pub(crate) mod test_util;
#[cfg(test)]
mod tests;

pub(crate) use self::allocator::StackAllocator;
pub use self::config::MIN_STACK_SIZE;
pub(crate) use self::config::{StackConfig, DEFER_LIMIT, TRIM_TIMER_MARGIN};
pub(crate) use self::green::GreenStack;
pub(crate) use self::guard::GuardMode;
pub(crate) use self::pool::StackPool;
