// Without --cfg grove_loom this file compiles to an empty crate, docs included.
#![cfg_attr(not(grove_loom), allow(missing_docs))]
#![cfg(grove_loom)]
//! Loom models of the spotlight protocol (`scheduler/src/spotlight.rs`): a reader on
//! another thread (the blocking monitor, a run-info dump) reads the greenlet a worker is
//! running, while the worker may finish it and drop it at any moment.
//!
//! # Who each thread stands for
//! * The **hub** is `Local::run_task` / `Local::finish` (`scheduler/src/worker/mod.rs`):
//!   `enter(p)` before resuming `p`, `leave()` when it switches back, and, for a
//!   greenlet that finished, `release(p)` before dropping its references. Dropping is
//!   modelled as a write to the object's `UnsafeCell` (the allocator reusing the
//!   memory), so loom reports any reader access that is not ordered before it.
//! * The **reader** is `monitor::describe` / `run_info::dump`: `pin()`, and while the
//!   pin is confirmed, a read of the object.
//!
//! # Properties asserted
//! * A confirmed pin's reads happen-before the hub's "free" (no data race on the cell;
//!   loom fails the model otherwise) and see the live value.
//! * A confirmed pin names an object that was published (never a stale address after
//!   its release), including when the hub runs one object twice (a yield) and then
//!   moves on to another.
//! * The hub never waits forever for a pin (loom would report a deadlock).
//!
//! Each model was checked to fail when the protocol is broken on purpose: the hub's
//! fence in `release` removed, or the reader's re-check of `current` after pinning
//! skipped.

use std::ptr;

use grove_scheduler::__loom::Spotlight;
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;

/// A greenlet stand-in: `1` while alive, `0` once "freed".
struct Obj {
    alive: UnsafeCell<u32>,
}

impl Obj {
    fn new() -> Obj {
        Obj {
            alive: UnsafeCell::new(1),
        }
    }

    fn free(&self) {
        self.alive.with_mut(|v| {
            // SAFETY: loom's cell checks that no reader access is concurrent.
            unsafe { *v = 0 }
        });
    }

    fn read(&self) -> u32 {
        // SAFETY: as above.
        self.alive.with(|v| unsafe { *v })
    }
}

#[test]
fn a_confirmed_pin_is_never_freed_under_the_reader() {
    loom::model(|| {
        let spot = Arc::new(Spotlight::<Obj>::new());
        let a = Arc::new(Obj::new());
        let hub = thread::spawn({
            let (spot, a) = (spot.clone(), a.clone());
            move || {
                let p = Arc::as_ptr(&a);
                spot.enter(p);
                spot.leave();
                spot.release(p);
                a.free();
            }
        });
        if let Some(pin) = spot.pin() {
            assert!(ptr::eq(pin.addr(), Arc::as_ptr(&a)));
            assert_eq!(a.read(), 1, "read a freed greenlet");
        }
        hub.join().unwrap();
    });
}

#[test]
fn yield_then_finish_then_the_next_greenlet() {
    loom::model(|| {
        let spot = Arc::new(Spotlight::<Obj>::new());
        let a = Arc::new(Obj::new());
        let b = Arc::new(Obj::new());
        let hub = thread::spawn({
            let (spot, a, b) = (spot.clone(), a.clone(), b.clone());
            move || {
                let (pa, pb) = (Arc::as_ptr(&a), Arc::as_ptr(&b));
                // `a` yields once, runs again and finishes; then `b` runs.
                spot.enter(pa);
                spot.leave();
                spot.enter(pa);
                spot.leave();
                spot.release(pa);
                a.free();
                spot.enter(pb);
                spot.leave();
                spot.release(pb);
                b.free();
            }
        });
        if let Some(pin) = spot.pin() {
            let obj = if ptr::eq(pin.addr(), Arc::as_ptr(&a)) {
                &a
            } else {
                assert!(ptr::eq(pin.addr(), Arc::as_ptr(&b)));
                &b
            };
            assert_eq!(obj.read(), 1, "read a freed greenlet");
        }
        hub.join().unwrap();
    });
}

#[test]
fn two_reads_in_a_row() {
    loom::model(|| {
        let spot = Arc::new(Spotlight::<Obj>::new());
        let a = Arc::new(Obj::new());
        let hub = thread::spawn({
            let (spot, a) = (spot.clone(), a.clone());
            move || {
                let p = Arc::as_ptr(&a);
                spot.enter(p);
                spot.leave();
                spot.release(p);
                a.free();
            }
        });
        for _ in 0..2 {
            if let Some(pin) = spot.pin() {
                assert_eq!(a.read(), 1, "read a freed greenlet");
                drop(pin);
            }
        }
        hub.join().unwrap();
    });
}
