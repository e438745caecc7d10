//! The interrupt word and timeout scopes: the loom-checked core of `interrupt`.
//!
//! Every greenlet header holds one [`Word`]: `0` (nothing pending), one of the *final*
//! interrupts [`KILL`], [`DEADLOCK`], [`SHUTDOWN`], or the id of a timeout scope. The
//! rules, each one RMW on the word:
//! 1. A final interrupt is never replaced by a timeout, and never taken back: the
//!    greenlet unwinds from its next blocking point and, if it catches the unwind, from
//!    every blocking point after (see `interrupt`). `SHUTDOWN` beats everything (the
//!    runtime is going away); `KILL` beats a deadlock and any timeout; `DEADLOCK` only
//!    fills an empty word.
//! 2. A timeout only fills an empty word ([`Scope::fire`]), and only while its scope is
//!    active: the check of `active` and the fill happen under the scope's lock, and
//!    [`Scope::end`] clears `active` under the same lock *before* it takes its id back.
//!    So once `end` has returned, the id is not in the word and never will be. (The
//!    older lock-free version set the word, then re-read `active` to take it back: a
//!    checkpoint between the two took a stale id; `loom-tests/tests/interrupt.rs` finds
//!    that interleaving at once.)
//! 3. The greenlet takes a pending timeout with a CAS back to `0` ([`Word::take_scope`]),
//!    so each timeout is delivered at most once, and a final interrupt that arrives in
//!    between wins.

#![allow(unreachable_pub)]

use crate::loom::{AtomicU64, Mutex, Ordering};

/// The word's value for a kill.
pub const KILL: u64 = 1;
/// A detected deadlock (see `deadlock`): final like a kill, reported as a deadlock.
pub const DEADLOCK: u64 = 2;
/// A shutdown unwinding the greenlet: final, beats every other interrupt.
pub const SHUTDOWN: u64 = 3;
/// First timeout scope id; ids are process-unique and never one of the finals.
pub const FIRST_SCOPE: u64 = 4;
/// Set in the id of a scope armed inside a destructor running during an unwind: such a
/// scope's timeout may be raised while the thread unwinds (its catch is inside that
/// destructor), unlike every other interrupt.
pub const IN_CLEANUP: u64 = 1 << 63;

/// True for `KILL`, `DEADLOCK` and `SHUTDOWN`.
pub fn is_final(v: u64) -> bool {
    matches!(v, KILL | DEADLOCK | SHUTDOWN)
}

/// A greenlet's pending interrupt.
#[derive(Debug, Default)]
pub struct Word(AtomicU64);

impl Word {
    /// An empty word.
    pub fn new() -> Word {
        Word(AtomicU64::new(0))
    }

    /// The pending interrupt (0: none).
    pub fn load(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Rule 1 for a kill: replaces anything but a shutdown. True if the word now holds
    /// `KILL`.
    pub fn kill(&self) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                (v != SHUTDOWN).then_some(KILL)
            })
            .is_ok()
    }

    /// Rule 1 for a deadlock: only fills an empty word. True if it did.
    pub fn deadlock(&self) -> bool {
        self.0
            .compare_exchange(0, DEADLOCK, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Rule 1 for a shutdown: replaces anything. True if it was not already pending.
    pub fn shutdown(&self) -> bool {
        self.0.swap(SHUTDOWN, Ordering::AcqRel) != SHUTDOWN
    }

    /// Rule 3: takes the pending timeout `id` (as loaded); false if something else
    /// replaced it meanwhile.
    pub fn take_scope(&self, id: u64) -> bool {
        self.0
            .compare_exchange(id, 0, Ordering::AcqRel, Ordering::Acquire)
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
        let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        *active
            && word
                .0
                .compare_exchange(0, self.id, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// The scope ended (on the greenlet): from now on `fire` does nothing, and our id, if
    /// pending, is taken back.
    pub fn end(&self, word: &Word) {
        *self.active.lock().unwrap_or_else(|p| p.into_inner()) = false;
        let _ = word
            .0
            .compare_exchange(self.id, 0, Ordering::AcqRel, Ordering::Acquire);
    }
}
