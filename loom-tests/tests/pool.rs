// Without --cfg grove_loom this file compiles to an empty crate, docs included.
#![cfg_attr(not(grove_loom), allow(missing_docs))]
#![cfg(grove_loom)]
//! Loom models of `Pool`'s slot accounting (`primitives/src/pool/members.rs`: slot
//! hand-off to waiting spawners, membership ended once by the completion link or by a
//! prune, cancellation of a waiting spawner), driving the real accounting code.
//!
//! # Who each thread stands for
//! The accounting is generic over the member; the models give it a stand-in for a
//! greenlet ([`Fake`]) with the scheduler's completion protocol in miniature: `finish`
//! marks it finished, then fires its `on_finish` callbacks outside its own lock; a
//! callback registered after that fires at once, on the caller. The thread calling
//! `finish` is the hub completing a greenlet; a thread calling `len` is any reader of
//! the pool, whose prune races the callback; a thread in `acquire` is a spawner
//! waiting for a slot (`Pool::spawn`). Under loom the pool's mutex is loom's, and a
//! spawner can be *killed*: its park unwinds with `Killed`, as a greenlet's does.
//!
//! # Properties asserted
//! * A finished member's slot is given back exactly once, whether its callback or a
//!   prune removes it, and handed straight to a waiting spawner (no lost wake-up: loom
//!   reports a spawner parked for ever); a killed spawner passes a slot it was handed on.
//! * At the end no slot is held, no member or waiter is left, and each member's payload
//!   (its result, in a real pool) was dropped exactly once.
//! * A member's payload is never dropped under the pool's lock: its `Drop` uses the
//!   pool (as a detached result's may), which would re-lock it.
//!
//! Preemption bound: `LOOM_MAX_PREEMPTIONS=3` (as in `.ci/run`).
//!
//! Each model was checked to fail with the protocol broken on purpose: the completion
//! link dropping the removed member under the pool's lock (the payload's `Drop`
//! re-locks: loom reports the deadlock in both models), `CoreState::remove` giving the
//! slot back even when the member was already removed (a slot is counted free twice:
//! the final counts are wrong in both), and `acquire`'s `pass_on` dropping a slot
//! handed to a killed spawner instead of passing it on (a slot is lost:
//! `killed_spawner_passes_its_slot_on` fails).

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering as StdOrdering};
use std::sync::{Mutex as StdMutex, Weak};

use grove_primitives::__loom::{Killed, Member, Parker, PoolCore};
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::Mutex;
use loom::thread;

type Callback = Box<dyn FnOnce() + Send>;

/// A greenlet's completion state in miniature: finished flag and callbacks.
#[derive(Default)]
struct Completion {
    done: AtomicBool,
    links: Mutex<Vec<Callback>>,
}

/// What a member's last reference drops (a greenlet's result). Its `Drop` uses the
/// pool, and counts itself.
struct Payload {
    pool: StdMutex<Weak<PoolCore<Fake>>>,
    drops: std::sync::Arc<AtomicUsize>,
}

impl Drop for Payload {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.lock().unwrap().upgrade() {
            // Takes the pool's lock: a deadlock if dropped under it.
            let _ = pool.len();
        }
        self.drops.fetch_add(1, StdOrdering::Relaxed);
    }
}

/// The stand-in for a greenlet reference: the hub (`finish`) holds only its
/// completion, so the pool's may be the last reference to the payload.
#[derive(Clone)]
struct Fake {
    id: u64,
    completion: std::sync::Arc<Completion>,
    _payload: std::sync::Arc<Payload>,
}

impl Member for Fake {
    fn id(&self) -> u64 {
        self.id
    }
    fn is_finished(&self) -> bool {
        self.completion.done.load(Ordering::Acquire)
    }
    fn on_finish(&self, f: Callback) {
        let mut links = self.completion.links.lock().unwrap();
        if self.completion.done.load(Ordering::Acquire) {
            drop(links);
            f();
        } else {
            links.push(f);
        }
    }
}

/// The hub completing the greenlet: mark finished, then fire the callbacks unlocked.
fn finish(c: &Completion) {
    let links = {
        let mut links = c.links.lock().unwrap();
        c.done.store(true, Ordering::Release);
        std::mem::take(&mut *links)
    };
    for f in links {
        f();
    }
}

/// A pool of `size` slots, and a member `id` of it holding one slot; returns the
/// member's completion (for `finish`).
fn pool_with_member(
    size: usize,
    id: u64,
    drops: &std::sync::Arc<AtomicUsize>,
) -> (std::sync::Arc<PoolCore<Fake>>, std::sync::Arc<Completion>) {
    let pool = PoolCore::<Fake>::new(Some(size));
    assert!(pool.try_acquire());
    let completion = std::sync::Arc::new(Completion::default());
    let payload = std::sync::Arc::new(Payload {
        pool: StdMutex::new(std::sync::Arc::downgrade(&pool)),
        drops: drops.clone(),
    });
    pool.insert(Fake {
        id,
        completion: completion.clone(),
        _payload: payload,
    });
    (pool, completion)
}

/// A full pool of one slot; a spawner waits for it; the member's completion (its
/// callback) races a reader's prune. The slot is handed to the spawner exactly once.
#[test]
fn finish_vs_prune_vs_spawner() {
    loom::model(|| {
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let (pool, completion) = pool_with_member(1, 1, &drops);
        let spawner = {
            let pool = pool.clone();
            thread::spawn(move || {
                assert!(pool.acquire(None));
                // The spawn "fails": the slot goes back.
                pool.release_slot();
            })
        };
        let hub = thread::spawn(move || finish(&completion));
        let _ = pool.len();
        hub.join().unwrap();
        spawner.join().unwrap();
        assert_eq!(pool.len(), 0);
        assert_eq!(pool.counts(), (0, 0, 0), "(used, members, waiters)");
        assert_eq!(drops.load(StdOrdering::Relaxed), 1, "payload dropped once");
    });
}

/// A full pool of one slot, two spawners waiting for it; the first is killed while the
/// member finishes. The killed spawner got the slot first (and gives it back) or
/// unwinds, passing on a slot it was handed; the second always gets one.
#[test]
fn killed_spawner_passes_its_slot_on() {
    loom::model(|| {
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let (pool, completion) = pool_with_member(1, 1, &drops);
        let victim = Parker::new();
        let first = {
            let (pool, victim) = (pool.clone(), victim.clone());
            thread::spawn(move || {
                victim.install();
                match panic::catch_unwind(AssertUnwindSafe(|| pool.acquire(None))) {
                    Ok(got) => {
                        assert!(got);
                        pool.release_slot();
                    }
                    Err(p) => assert!(p.is::<Killed>(), "unexpected panic"),
                }
            })
        };
        let second = {
            let pool = pool.clone();
            thread::spawn(move || {
                assert!(pool.acquire(None));
                pool.release_slot();
            })
        };
        victim.kill();
        finish(&completion);
        first.join().unwrap();
        second.join().unwrap();
        assert_eq!(pool.counts(), (0, 0, 0), "(used, members, waiters)");
        assert_eq!(drops.load(StdOrdering::Relaxed), 1, "payload dropped once");
    });
}
