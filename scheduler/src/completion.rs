//! Completion of a greenlet: the joiner's waker slot, the links, and who reports a
//! failure nobody joined (loom-checked). See "Completion" in `task` for the protocol;
//! this module is its state, generic over the link type so that
//! `loom-tests/tests/completion.rs` drives this very code.
//!
//! `flags` bits:
//! * `COMPLETE`: the greenlet has finished (set once, by `complete`).
//! * `DETACHED`: the handle was dropped. Whoever sets the second of `COMPLETE` and
//!   `DETACHED` owns the output for reporting: exactly one side does.
//! * `WAITING`: a joiner's waker is in `waker`, so `complete` must take the lock to
//!   wake it; without it, completing costs no lock at all.
//! * `LINKED`: `links` may be non-empty, so `complete` must drain it.
//!
//! Each observer stores its waker or link *before* its RMW sets its bit, and `complete`
//! reads the slots only *after* its RMW: whichever RMW comes second sees the other's
//! bit, so either `complete` finds the waker or link, or the observer learns that
//! `complete` came first and acts itself (the joiner does not park; the linker drains).
//! Links are taken out under the mutex, so each fires exactly once, whoever drains.

// Items are `pub` so that `__loom` can re-export them to the loom tests.
#![allow(unreachable_pub)]

use std::task::Waker;

// No user code runs under these locks (links fire outside them): `lock` ignores poison.
use crate::loom::{lock, AtomicU8, Mutex, Ordering};

const COMPLETE: u8 = 1;
const DETACHED: u8 = 2;
const WAITING: u8 = 4;
const LINKED: u8 = 8;

/// What `complete` leaves its caller to do, outside every lock.
#[must_use]
#[derive(Debug)]
pub struct Completed<L> {
    /// The joiner's waker, to wake.
    pub waker: Option<Waker>,
    /// The links, in the order they were added, to fire.
    pub links: Vec<(u64, L)>,
    /// The handle was already dropped: the caller owns the output for reporting.
    pub detached: bool,
}

/// The completion state of one greenlet.
#[derive(Debug)]
pub struct Completion<L> {
    flags: AtomicU8,
    waker: Mutex<Option<Waker>>,
    links: Mutex<Vec<(u64, L)>>,
}

impl<L> Default for Completion<L> {
    fn default() -> Self {
        Completion::new()
    }
}

impl<L> Completion<L> {
    /// Nothing finished, nobody waiting.
    pub fn new() -> Completion<L> {
        Completion {
            flags: AtomicU8::new(0),
            waker: Mutex::new(None),
            links: Mutex::new(Vec::new()),
        }
    }

    /// The greenlet finished (call after publishing its output and `DONE`).
    pub fn complete(&self) -> Completed<L> {
        let prev = self.flags.fetch_or(COMPLETE, Ordering::AcqRel);
        let waker = if prev & WAITING != 0 {
            lock(&self.waker).take()
        } else {
            None
        };
        let links = if prev & LINKED != 0 {
            std::mem::take(&mut *lock(&self.links))
        } else {
            Vec::new()
        };
        Completed {
            waker,
            links,
            detached: prev & DETACHED != 0,
        }
    }

    /// Adds a link. Returns the links the caller must fire itself (this one included)
    /// if `complete` came first, else nothing (`complete` will fire it).
    pub fn link(&self, id: u64, link: L) -> Vec<(u64, L)> {
        lock(&self.links).push((id, link));
        // Pushed before LINKED is published: a `complete` that sees LINKED finds it.
        let prev = self.flags.fetch_or(LINKED, Ordering::AcqRel);
        if prev & COMPLETE != 0 {
            std::mem::take(&mut *lock(&self.links))
        } else {
            Vec::new()
        }
    }

    /// Removes a link that has not fired; `None` if it fired (or is firing). The link
    /// is returned so the caller drops it outside the lock.
    pub fn unlink(&self, id: u64) -> Option<L> {
        let mut links = lock(&self.links);
        // `remove`, not `swap_remove`: links fire in the order they were added.
        let pos = links.iter().position(|(i, _)| *i == id)?;
        Some(links.remove(pos).1)
    }

    /// Takes the links `pred` selects (kill hooks), keeping the others in order.
    pub fn take_if(&self, pred: impl Fn(&L) -> bool) -> Vec<L> {
        if self.flags.load(Ordering::Acquire) & LINKED == 0 {
            return Vec::new();
        }
        let mut links = lock(&self.links);
        let (taken, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut *links)
            .into_iter()
            .partition(|(_, l)| pred(l));
        *links = rest;
        taken.into_iter().map(|(_, l)| l).collect()
    }

    /// The handle was dropped. True if the greenlet already completed, in which case
    /// the caller owns the output for reporting.
    pub fn detach(&self) -> bool {
        self.flags.fetch_or(DETACHED, Ordering::AcqRel) & COMPLETE != 0
    }

    /// True once the handle was dropped (a hint for placement: nobody will join).
    pub fn is_detached(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & DETACHED != 0
    }

    /// Registers the joiner's waker; false if the greenlet already completed (the
    /// joiner must not park).
    pub fn register_joiner(&self, waker: &Waker) -> bool {
        {
            let mut slot = lock(&self.waker);
            match &mut *slot {
                Some(w) if w.will_wake(waker) => {}
                other => *other = Some(waker.clone()),
            }
        }
        // Stored before WAITING is published: a `complete` that sees WAITING finds it.
        self.flags.fetch_or(WAITING, Ordering::AcqRel) & COMPLETE == 0
    }
}
