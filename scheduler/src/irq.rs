//! The interrupt word and timeout scopes: the loom-checked core of interrupts (`worker::switch`, `interrupt`).
//!
//! Every greenlet header holds one [`Word`] with two parts: a *final* interrupt
//! ([`KILL`], [`DEADLOCK`] or [`SHUTDOWN`], in the top two bits) and a pending timeout
//! (the id of its scope, in the other bits). Two parts, because a timeout armed inside
//! a destructor that runs while a kill unwinds the greenlet must still be able to fire
//! while that kill stays pending. The rules, each one RMW on the word:
//! 1. A final interrupt is never taken back: the greenlet unwinds from its next
//!    blocking point and, if it catches the unwind, from every blocking point after
//!    (see `interrupt`). `SHUTDOWN` beats everything (the runtime is going away);
//!    `KILL` beats a deadlock; `DEADLOCK` only fills an empty final part.
//! 2. A timeout only fills an empty timeout part ([`Scope::fire`]; an earlier, outer
//!    timeout is already on its way), and only while its scope is active: the check of
//!    `active` and the fill happen under the scope's lock, and [`Scope::end`] clears
//!    `active` under the same lock *before* it takes its id back. So once `end` has
//!    returned, the id is not in the word and never will be. (The older lock-free
//!    version set the word, then re-read `active` to take it back: a checkpoint between
//!    the two took a stale id; `loom-tests/tests/interrupt.rs` finds that interleaving
//!    at once.)
//! 3. The greenlet takes a pending timeout with an RMW that clears the timeout part
//!    only if it still holds that id ([`Word::take_scope`]), so each timeout is
//!    delivered at most once.

#![allow(unreachable_pub)]

use crate::loom::{lock, AtomicU64, Mutex, Ordering};

/// The final part's value for a kill.
pub const KILL: u64 = 1;
/// A detected deadlock (see `deadlock`): final like a kill, reported as a deadlock.
pub const DEADLOCK: u64 = 2;
/// A shutdown unwinding the greenlet: final, beats every other interrupt.
pub const SHUTDOWN: u64 = 3;
/// Where the final part lives in the word.
const FINAL_SHIFT: u32 = 62;
/// The timeout part: a scope id, 0 if none.
const SCOPE_MASK: u64 = (1 << FINAL_SHIFT) - 1;
/// First timeout scope id; ids are process-unique and below [`IN_CLEANUP`].
pub const FIRST_SCOPE: u64 = 1;
/// Set in the id of a scope armed inside a destructor running during an unwind: such a
/// scope's timeout may be raised while the thread unwinds (its catch is inside that
/// destructor), unlike every other interrupt.
pub const IN_CLEANUP: u64 = 1 << (FINAL_SHIFT - 1);

/// The final part of a loaded word (0, `KILL`, `DEADLOCK` or `SHUTDOWN`).
pub fn final_of(w: u64) -> u64 {
    w >> FINAL_SHIFT
}

/// The timeout part of a loaded word (0 or a scope id).
pub fn scope_of(w: u64) -> u64 {
    w & SCOPE_MASK
}

/// A greenlet's pending interrupts.
#[derive(Debug, Default)]
pub struct Word(AtomicU64);

impl Word {
    /// An empty word.
    pub fn new() -> Word {
        Word(AtomicU64::new(0))
    }

    /// Both parts (see [`final_of`] and [`scope_of`]); 0: nothing pending.
    pub fn load(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Sets the final part to `f` if `allow(current final part)`; true if it did.
    fn set_final(&self, f: u64, allow: impl Fn(u64) -> bool) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                allow(final_of(w)).then_some(scope_of(w) | (f << FINAL_SHIFT))
            })
            .is_ok()
    }

    /// Rule 1 for a kill: replaces anything but a shutdown. True if `KILL` is now set.
    pub fn kill(&self) -> bool {
        self.set_final(KILL, |f| f != SHUTDOWN)
    }

    /// Rule 1 for a deadlock: only fills an empty final part. True if it did.
    pub fn deadlock(&self) -> bool {
        self.set_final(DEADLOCK, |f| f == 0)
    }

    /// Rule 1 for a shutdown: replaces anything. True if it was not already pending.
    pub fn shutdown(&self) -> bool {
        let prev = self.0.fetch_or(SHUTDOWN << FINAL_SHIFT, Ordering::AcqRel);
        final_of(prev) != SHUTDOWN
    }

    /// Rule 3: takes the pending timeout `id`; false if it is no longer the pending one.
    pub fn take_scope(&self, id: u64) -> bool {
        self.clear_scope(id)
    }

    /// Clears the timeout part if it holds `id`.
    fn clear_scope(&self, id: u64) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (scope_of(w) == id).then_some(w & !SCOPE_MASK)
            })
            .is_ok()
    }

    /// Rule 2, the timer's side: fills an empty timeout part with `id`.
    fn fill_scope(&self, id: u64) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (scope_of(w) == 0).then_some(w | id)
            })
            .is_ok()
    }
}

/// One timeout scope's half of rule 2: the timer's side ([`fire`](Self::fire)) and the
/// scope's end ([`end`](Self::end)).
#[derive(Debug)]
pub struct Scope {
    id: u64,
    /// False once the scope has ended.
    active: Mutex<bool>,
}

impl Scope {
    /// An active scope with this id.
    pub fn new(id: u64) -> Scope {
        Scope {
            id,
            active: Mutex::new(true),
        }
    }

    /// The scope's id (with [`IN_CLEANUP`] if it was armed in a destructor).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The timer fired: fills an empty word with our id if the scope is still active.
    /// True if it did (the caller then wakes the greenlet).
    pub fn fire(&self, word: &Word) -> bool {
        let active = lock(&self.active);
        *active && word.fill_scope(self.id)
    }

    /// The scope ended (on the greenlet): from now on `fire` does nothing, and our id, if
    /// pending, is taken back.
    pub fn end(&self, word: &Word) {
        *lock(&self.active) = false;
        word.clear_scope(self.id);
    }
}
