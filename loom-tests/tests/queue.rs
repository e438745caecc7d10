// Without --cfg grove_loom this file compiles to an empty crate, docs included.
#![cfg_attr(not(grove_loom), allow(missing_docs))]
#![cfg(grove_loom)]
//! Loom models of the queue's putter protocol (`primitives/src/queue/state.rs`, steps
//! P3–P5 and G1 in the `queue` module's docs), driving the real `Queue`.
//!
//! # Under loom
//! The primitives' loom shim (`primitives/src/loom.rs`) gives the queue loom's `Mutex`
//! (the queue's, each offer's and each lent item's), and each loom thread a park token
//! standing for its greenlet's state word; a model can *kill* a thread, whose park then
//! unwinds with `Killed` as a greenlet's does. Capacities are the smallest that block:
//! a queue of one item, already full, so every put waits as an *offer*.
//!
//! # Properties asserted
//! * An offer leaves the queue exactly once, by one of: a get admitting its item
//!   (accept: the put returns `Ok`, or a kill unwinds with the item already queued), the
//!   putter withdrawing it (a kill: the item is dropped with the putter's stack), or a
//!   close (the put fails with the item back). Every item is dropped exactly once and
//!   nothing stays in `putters`.
//! * No lost wake-up: a blocked putter always returns (else loom reports a deadlock).
//! * Order: the stored item comes out before the admitted one.
//! * A getter killed after an item was handed to it gives the item back (to the next
//!   getter, or the front of the queue): every item put is received exactly once.
//! * A peek copies the next item without taking it; a get racing the copy takes the
//!   original, never a copy.
//!
//! Preemption bound: `LOOM_MAX_PREEMPTIONS=3` (as in `.ci/run`).
//!
//! Each model was checked to fail with the protocol broken on purpose:
//! * `close` not telling the queued offers (`notify_one` on their `done` list):
//!   `blocked_putter_vs_close` deadlocks;
//! * `Offer::accept` not telling its putter: `blocked_putter_vs_get` deadlocks (with a
//!   kill racing it the kill wakes the putter anyway, so `blocked_putter_vs_get_vs_kill`
//!   checks the exactly-once accounting of that race instead);
//! * `withdraw` reporting an offer it removed as taken: `blocked_putter_vs_get_vs_kill`
//!   finds an item never dropped;
//! * `State::give_back` dropping the item a killed getter was handed:
//!   `killed_getter_gives_its_item_back` finds it lost;
//! * a peek lending the next item without putting its slot back (the item is lost):
//!   `peek_vs_get` deadlocks.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use grove_primitives::__loom::{Killed, Parker};
use grove_primitives::queue::{Closed, TryGetError};
use grove_primitives::Queue;
use loom::sync::Arc;
use loom::thread;

/// An item that counts its drops (std atomics: only one loom thread runs at a time).
struct Item(u32, std::sync::Arc<AtomicUsize>);

impl Drop for Item {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::Relaxed);
    }
}

/// A full queue of one item, a putter blocked on it (an offer), the main thread
/// killing the putter and then getting. Whatever the interleaving, the stored item
/// comes out first, the offered one is admitted or withdrawn exactly once, and every
/// item is dropped exactly once.
#[test]
fn blocked_putter_vs_get_vs_kill() {
    loom::model(|| {
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let q = Arc::new(Queue::bounded(1));
        q.put(Item(1, drops.clone())).ok().unwrap();
        let victim = Parker::new();
        let putter = {
            let (q, victim, drops) = (q.clone(), victim.clone(), drops.clone());
            thread::spawn(move || {
                victim.install();
                match panic::catch_unwind(AssertUnwindSafe(|| q.put(Item(2, drops)))) {
                    Ok(r) => {
                        assert!(r.is_ok(), "put failed on an open queue");
                        true
                    }
                    Err(p) => {
                        assert!(p.is::<Killed>(), "unexpected panic");
                        false
                    }
                }
            })
        };
        victim.kill();
        let first = q.get().ok().unwrap();
        assert_eq!(first.0, 1, "the stored item comes out first");
        drop(first);
        let put_ok = putter.join().unwrap();
        assert_eq!(q.putting(), 0, "an offer left behind");
        match q.try_get() {
            Ok(second) => assert_eq!(second.0, 2),
            Err(TryGetError::Empty) => assert!(!put_ok, "a put that returned Ok lost its item"),
            Err(e) => panic!("unexpected {e:?}"),
        }
        assert_eq!(
            drops.load(Ordering::Relaxed),
            2,
            "an item lost or dropped twice"
        );
    });
}

/// A full queue of one item, a putter blocked on it, and a get: the get admits the
/// offered item in the room it leaves and tells the putter, whose put returns `Ok`.
#[test]
fn blocked_putter_vs_get() {
    loom::model(|| {
        let q = Arc::new(Queue::bounded(1));
        q.put(1u32).unwrap();
        let putter = {
            let q = q.clone();
            thread::spawn(move || q.put(2))
        };
        assert_eq!(q.get(), Ok(1));
        assert_eq!(putter.join().unwrap(), Ok(()));
        assert_eq!(q.putting(), 0);
        assert_eq!(q.try_get(), Ok(2));
    });
}

/// A full queue of one item, a putter blocked on it, and `close`: the putter gets its
/// item back in `Closed`, the stored item is still received, then gets fail.
#[test]
fn blocked_putter_vs_close() {
    loom::model(|| {
        let q = Arc::new(Queue::bounded(1));
        q.put(1u32).unwrap();
        let putter = {
            let q = q.clone();
            thread::spawn(move || q.put(2))
        };
        q.close();
        assert_eq!(putter.join().unwrap(), Err(Closed(2)));
        assert_eq!(q.putting(), 0);
        assert_eq!(q.get(), Ok(1));
        assert_eq!(q.get(), Err(Closed(())));
    });
}

/// A getter blocked on an empty queue is killed while a put hands it an item (P1).
/// The item ends in exactly one place: with the getter (handed over before the kill
/// reached its park), or back in the queue (a getter killed after the hand-off gives
/// the item back, G5; one killed before it leaves the list and the put stores it).
#[test]
fn killed_getter_gives_its_item_back() {
    loom::model(|| {
        let drops = std::sync::Arc::new(AtomicUsize::new(0));
        let q = Arc::new(Queue::<Item>::new());
        let victim = Parker::new();
        let getter = {
            let (q, victim) = (q.clone(), victim.clone());
            thread::spawn(move || {
                victim.install();
                match panic::catch_unwind(AssertUnwindSafe(|| q.get())) {
                    Ok(item) => Some(item.ok().unwrap().0),
                    Err(p) => {
                        assert!(p.is::<Killed>(), "unexpected panic");
                        None
                    }
                }
            })
        };
        victim.kill();
        q.put(Item(7, drops.clone())).ok().unwrap();
        let got = getter.join().unwrap();
        assert_eq!(q.getting(), 0, "a getter left queued");
        let left = q.try_get().ok().map(|item| item.0);
        assert_eq!(
            usize::from(got == Some(7)) + usize::from(left == Some(7)),
            1,
            "the item was lost or duplicated: got {got:?}, left {left:?}"
        );
        assert_eq!(
            drops.load(Ordering::Relaxed),
            1,
            "an item lost or dropped twice"
        );
    });
}

/// An item that knows whether it is a copy (`peek` hands out copies).
struct Tagged {
    n: u32,
    copy: bool,
}

impl Clone for Tagged {
    fn clone(&self) -> Self {
        Tagged {
            n: self.n,
            copy: true,
        }
    }
}

/// A peek copying the next item (lent in place, copied with the queue unlocked) races
/// a get of it. The get receives the original, never a copy; the peek returns a copy
/// of it, or, if the get came first, waits for the next put and copies that.
#[test]
fn peek_vs_get() {
    loom::model(|| {
        let q = Arc::new(Queue::new());
        q.put(Tagged { n: 1, copy: false }).ok().unwrap();
        let peeker = {
            let q = q.clone();
            thread::spawn(move || q.peek().ok().unwrap())
        };
        let got = q.get().ok().unwrap();
        assert!(!got.copy && got.n == 1, "a get received a copy");
        q.put(Tagged { n: 2, copy: false }).ok().unwrap();
        let peeked = peeker.join().unwrap();
        assert!(peeked.copy, "a peek handed out the original");
        let left = q.try_get().ok().unwrap();
        assert!(
            !left.copy && left.n == 2,
            "the second item was lost or copied"
        );
    });
}
