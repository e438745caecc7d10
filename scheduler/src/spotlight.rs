//! The spotlight: which greenlet a worker is running, readable from other threads.
//!
//! # Vocabulary
//! * **publish**: the hub stores the address of the greenlet it is about to resume in
//!   its worker's spotlight (`enter`) and clears it when the greenlet switches back
//!   (`leave`). These are the two stores the hub always made per switch (they used to
//!   go to a thread-local `Cell`); they are now `Relaxed` atomic stores, the same
//!   instruction on every target we run on. Nothing else happens per switch.
//! * **reader**: the blocking monitor (`monitor`) or a run-info dump (`run_info`),
//!   on another thread, wanting the *name* of the greenlet a worker is running. At most
//!   one reader per runtime at a time (they take `Shared::readers`).
//! * **pin**: the address a reader is reading, announced in the `pin` word.
//! * **release**: the hub, about to drop its references to a greenlet it published
//!   (the greenlet finished, or shutdown unwound it), first makes sure no reader has
//!   it pinned.
//!
//! # The problem
//! A reader sees an address. The greenlet at that address is kept alive only by the
//! hub (its `current` while running, its registry while suspended), and the hub may
//! finish it and drop the last reference at any moment. Dereferencing the address
//! without more is a use-after-free race. The reader cannot ask the hub for a
//! reference: the interesting case is exactly when the hub is stuck inside the
//! greenlet and cannot answer.
//!
//! # Rejected approaches
//! * *A lock, or an `Arc` clone, per switch* (a `Mutex<Option<TaskRef>>` the hub
//!   updates): an atomic read-modify-write or two on every switch, measurable on a
//!   ~50 ns switch, to serve a reader that almost never comes.
//! * *A seqlock* (read the header, then check the spotlight did not change): the
//!   reads themselves may touch freed memory, which is undefined behaviour even if
//!   the result is thrown away.
//! * *Asking the stalled thread with a signal*: intrusive (a signal number taken from
//!   the application) and the handler could not safely touch the hub's state.
//! * *Registering every greenlet at first run* so readers find it in the registry:
//!   a lock per spawned greenlet.
//!
//! # The protocol (Dekker's, with one fence per side)
//! Words per worker: `current` (the published address or null) and `pin`.
//! 1. Hub, per switch: `current = p` before resuming `p`, `current = null` after it
//!    switches back (`Relaxed`).
//! 2. Hub, before dropping its references to a greenlet `p` it ever published
//!    (finish, shutdown unwind): it has already cleared `current` (step 1); then
//!    `fence(SeqCst)` — **StoreLoad point H** — then waits while `pin == p`.
//! 3. Reader: loads `current` (= `p`, non-null), stores `pin = p`, `fence(SeqCst)` —
//!    **StoreLoad point R** — then loads `current` again. If it is no longer `p`, it
//!    clears `pin` and gives up. If it is, it may read `p`'s immutable fields until it
//!    clears `pin` (`Release`, pairing with the hub's `Acquire` load in step 2).
//!
//! Why a confirmed pin is safe: the two fences are totally ordered. If H comes first,
//! the hub's `current = null` (before H) is visible after R, so the reader's second
//! load cannot return the publication of `p` that preceded it: it sees null or a later
//! publication. A later publication of the same address is either the same greenlet
//! (not yet released, so still alive) or a new greenlet allocated there after `p` was
//! freed, which is itself alive until *its* release — and for that release, R comes
//! before its fence (else the reader could not have read its publication), so case two
//! applies to it. If R comes first, the hub's load of `pin` after H sees `p` (or a
//! later value) and waits until the reader clears it; the reader's reads happen-before
//! that clear, which happens-before the hub's drop.
//!
//! Cost: per switch, nothing beyond the two stores the hub always made. Per finished
//! greenlet, one fence and one load. The reader pays a fence and, rarely, makes a hub
//! wait for the few hundred nanoseconds it takes to copy a name.
//!
//! Modelled in `loom-tests/tests/spotlight.rs`.

// Items are `pub` so that `__loom` can re-export them to the loom tests.
#![allow(unreachable_pub)]

use std::ptr;

use crate::loom::{fence, yield_now, AtomicPtr, Ordering};

/// One worker's spotlight (see the module docs).
#[derive(Debug)]
pub struct Spotlight<T> {
    current: AtomicPtr<T>,
    pin: AtomicPtr<T>,
}

impl<T> Default for Spotlight<T> {
    fn default() -> Self {
        Spotlight::new()
    }
}

impl<T> Spotlight<T> {
    /// Nothing published, nothing pinned.
    pub fn new() -> Spotlight<T> {
        Spotlight {
            current: AtomicPtr::new(ptr::null_mut()),
            pin: AtomicPtr::new(ptr::null_mut()),
        }
    }

    /// Step 1, hub: `p` is about to run.
    #[inline]
    pub fn enter(&self, p: *const T) {
        self.current.store(p.cast_mut(), Ordering::Relaxed);
    }

    /// Step 1, hub: the greenlet switched back.
    #[inline]
    pub fn leave(&self) {
        self.current.store(ptr::null_mut(), Ordering::Relaxed);
    }

    /// What is published now (null: the hub is not running a greenlet). For the hub's
    /// own thread, and for readers that only compare addresses.
    #[inline]
    pub fn current(&self) -> *const T {
        self.current.load(Ordering::Relaxed)
    }

    /// Step 2, hub: call before dropping references to `p`, after `leave`.
    pub fn release(&self, p: *const T) {
        // StoreLoad point H.
        fence(Ordering::SeqCst);
        while ptr::eq(self.pin.load(Ordering::Acquire), p) {
            // The reader copies a few fields and unpins; nothing it does can wait for us.
            yield_now();
        }
    }

    /// Step 3, reader: pins what is published now, or `None` if nothing is (or it
    /// changed meanwhile). Readers must be serialized by the caller.
    pub fn pin(&self) -> Option<Pinned<'_, T>> {
        let p = self.current.load(Ordering::Relaxed);
        if p.is_null() {
            return None;
        }
        self.pin.store(p, Ordering::Relaxed);
        // StoreLoad point R.
        fence(Ordering::SeqCst);
        if !ptr::eq(self.current.load(Ordering::Relaxed), p) {
            self.pin.store(ptr::null_mut(), Ordering::Release);
            return None;
        }
        Some(Pinned { spot: self, p })
    }
}

/// A confirmed pin: the object at [`addr`](Self::addr) stays alive until this is dropped.
#[derive(Debug)]
pub struct Pinned<'a, T> {
    spot: &'a Spotlight<T>,
    p: *const T,
}

impl<T> Pinned<'_, T> {
    /// The pinned object's address.
    pub fn addr(&self) -> *const T {
        self.p
    }
}

impl<T> Drop for Pinned<'_, T> {
    fn drop(&mut self) {
        // Release: our reads of the object happen-before the hub's drop of it.
        self.spot.pin.store(ptr::null_mut(), Ordering::Release);
    }
}
