// Without --cfg grove_loom this file compiles to an empty crate, docs included.
#![cfg_attr(not(grove_loom), allow(missing_docs))]
#![cfg(grove_loom)]
//! Loom models of the semaphore core behind `Semaphore`, `BoundedSemaphore`, `Lock` and
//! `RLock` (`primitives/src/semaphore.rs`: barging with a starvation hand-off), driving
//! the real `Lock` (a bounded semaphore of one permit: the same core).
//!
//! # Under loom
//! The primitives' loom shim (`primitives/src/loom.rs`) gives the semaphore loom's
//! `Mutex`, and each loom thread a park token standing for its greenlet's state word
//! (a wake before the park is kept). A model can *kill* a thread: its current or next
//! park unwinds with `Killed`, as a greenlet's park does on a kill. The starvation
//! threshold is zero under loom, so a waiter that loses one retry starves at once and
//! the models reach the starving hand-off (`Grant::Permit`) deterministically; the
//! plain barging path (`Grant::Retry`, `woken`, re-queue at the front) is reached on the
//! first release of every model. Deadlines are not modelled (they are the unwind path
//! without the unwind, and a clock loom cannot control).
//!
//! # Properties asserted
//! * Mutual exclusion: the critical section writes a loom `UnsafeCell`, so two holders
//!   at once are a reported race.
//! * Turns: a waiter that loses its retry to a barger waits again at the head and,
//!   starving, is handed the next release, ahead of waiters queued after it.
//! * No lost wake-up: a waiter never parks for ever (loom reports the deadlock), also
//!   when the waiter woken to retry, or handed the permit, is killed first (its grant is
//!   passed on).
//! * Nothing lost or left: at the end the permit is free and no waiter is queued.
//!
//! Preemption bound: `LOOM_MAX_PREEMPTIONS=3` (as in `.ci/run`).
//!
//! Each model was checked to fail with the protocol broken on purpose:
//! * in `acquire_until`'s `Retry` branch, not clearing `woken` (later releases never
//!   wake anyone): `lock_unlock_twice_vs_once` deadlocks;
//! * in `State::pass_on`, dropping a `Retry` instead of passing the wake-up on:
//!   `killed_waiter_passes_its_grant_on` deadlocks;
//! * a waiter that lost its retry re-queued at the back instead of the front:
//!   `a_waiter_that_loses_its_retry_keeps_its_turn` sees waiter 2 go first.

use std::panic::{self, AssertUnwindSafe};

use grove_primitives::__loom::{Killed, Parker};
use grove_primitives::Lock;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

/// Waiters queued, from the `Debug` output (`waiters: N`).
fn waiters(x: &impl std::fmt::Debug) -> usize {
    let s = format!("{x:?}");
    let n = &s[s.find("waiters: ").expect("Debug shows the waiters") + 9..];
    n[..n.find(|c: char| !c.is_ascii_digit()).unwrap()]
        .parse()
        .unwrap()
}

/// A lock and the data it guards, which only a holder may touch.
struct Guarded {
    lock: Lock,
    data: UnsafeCell<u32>,
}

// SAFETY: `data` is touched only under `lock` (and after every holder has been
// joined); if the lock fails to exclude, loom reports the concurrent access.
unsafe impl Sync for Guarded {}

impl Guarded {
    fn bump(&self) {
        let _g = self.lock.lock();
        // SAFETY: see `Sync` above; loom checks it.
        self.data.with_mut(|d| unsafe { *d += 1 });
    }
}

/// The main thread holds the lock, then unlocks and locks again (a barger: it may take
/// the permit its release just freed for the waiter), while another thread locks and
/// unlocks twice. Both finish, they never overlap, and the lock ends free with nobody
/// queued.
#[test]
fn lock_unlock_twice_vs_once() {
    loom::model(|| {
        let g = Arc::new(Guarded {
            lock: Lock::new(),
            data: UnsafeCell::new(0),
        });
        let held = g.lock.lock();
        let t = {
            let g = g.clone();
            thread::spawn(move || {
                g.bump();
                g.bump();
            })
        };
        drop(held);
        g.bump();
        t.join().unwrap();
        // SAFETY: every other holder has been joined.
        let total = g.data.with(|d| unsafe { *d });
        assert_eq!(total, 3);
        assert!(!g.lock.is_locked());
        assert_eq!(waiters(&g.lock), 0);
    });
}

/// The main thread holds the lock while two threads wait for it; it kills the first
/// and unlocks. The killed waiter either got the lock before the kill reached a park
/// (then releases it) or unwinds, passing on whatever it was handed (`Retry` or, once
/// starving, the permit itself); the other waiter always gets the lock.
#[test]
fn killed_waiter_passes_its_grant_on() {
    loom::model(|| {
        let lock = Arc::new(Lock::new());
        let held = lock.lock();
        held.forget();
        let victim = Parker::new();
        let b = {
            let (lock, victim) = (lock.clone(), victim.clone());
            thread::spawn(move || {
                victim.install();
                panic::catch_unwind(AssertUnwindSafe(|| drop(lock.lock())))
                    .map_err(|p| assert!(p.is::<Killed>(), "unexpected panic"))
                    .is_ok()
            })
        };
        let c = {
            let lock = lock.clone();
            thread::spawn(move || drop(lock.lock()))
        };
        victim.kill();
        lock.release().unwrap();
        c.join().unwrap();
        let _ = b.join().unwrap();
        assert!(!lock.is_locked());
        assert_eq!(waiters(&*lock), 0);
    });
}

/// Spins (yielding to loom's scheduler) until `n` waiters are queued on `lock`.
fn until_waiting(lock: &Lock, n: usize) {
    while waiters(lock) != n {
        thread::yield_now();
    }
}

/// Two waiters queued in a known order (1, then 2) behind the main thread, which
/// unlocks and at once locks again: it may barge past waiter 1, woken to retry, which
/// then waits again at the head and, starving, is handed the next unlock. Either way
/// waiter 1 gets the lock before waiter 2: losing a retry never costs a waiter its
/// turn.
#[test]
fn a_waiter_that_loses_its_retry_keeps_its_turn() {
    loom::model(|| {
        let lock = Arc::new(Lock::new());
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let held = lock.lock();
        let waiter = |id: u32| {
            let (lock, order) = (lock.clone(), order.clone());
            thread::spawn(move || {
                let _g = lock.lock();
                order.lock().unwrap().push(id);
            })
        };
        let w1 = waiter(1);
        until_waiting(&lock, 1);
        let w2 = waiter(2);
        until_waiting(&lock, 2);
        drop(held);
        drop(lock.lock()); // barges if waiter 1 has not run yet
        w1.join().unwrap();
        w2.join().unwrap();
        assert_eq!(*order.lock().unwrap(), [1, 2], "a waiter lost its turn");
        assert!(!lock.is_locked());
        assert_eq!(waiters(&*lock), 0);
    });
}
