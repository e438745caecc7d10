// Without --cfg grove_loom this file compiles to an empty crate, docs included.
#![cfg_attr(not(grove_loom), allow(missing_docs))]
#![cfg(grove_loom)]
//! Loom models of a greenlet's completion (`scheduler/src/completion.rs`), on the
//! production `Completion`: the joiner's waker slot, links, and detach vs complete.
//!
//! # Who each thread stands for
//! * The **hub** finishing the greenlet: `Header::complete` (`Completion::complete`,
//!   then it wakes the waker and fires the links it got).
//! * The **joiner**: `JoinHandle::join` (`register_joiner`; if it returns true the
//!   joiner parks until its waker is woken, else it reads the output at once).
//! * A **linker**: `on_finish`/`wait`/`joinall` (`Completion::link`; it fires what it
//!   gets back), possibly unlinking again (`Unlink` after a timed wait).
//! * The **handle's drop**: `JoinHandle::drop` (`detach`).
//!
//! # Properties asserted
//! * A joiner that parks is woken (exactly once), and one that does not park found the
//!   greenlet complete.
//! * Every link fires exactly once, unless it was unlinked first (then never).
//! * Exactly one of `complete` and `detach` reports owning the output: a failure nobody
//!   joined is reported once, never twice, never lost.
//!
//! # Shown to fail when broken (checked)
//! Making `link` publish `LINKED` *before* pushing its link (swap the two lines) loses
//! the link in `link_fires_exactly_once` (`complete` drains an empty list), and making
//! `register_joiner` publish `WAITING` before storing its waker loses the wake in
//! `a_parked_joiner_is_woken`.
//!
//! # Bounds
//! Two or three threads, a handful of operations each: exhaustive under the CI's
//! `LOOM_MAX_PREEMPTIONS=3`, in about a second (measured on the two-core CI machine).

use std::sync::Arc as StdArc;
use std::task::{Wake, Waker};

use grove_scheduler::__loom::Completion;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

/// Counts wakes.
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: StdArc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_parked_joiner_is_woken() {
    loom::model(|| {
        let c: Arc<Completion<()>> = Arc::new(Completion::new());
        let woken = StdArc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(woken.clone());
        let hub = {
            let c = c.clone();
            thread::spawn(move || {
                let done = c.complete();
                if let Some(w) = done.waker {
                    w.wake();
                }
            })
        };
        let parks = c.register_joiner(&waker);
        hub.join().unwrap();
        let wakes = woken.0.load(Ordering::Relaxed);
        if parks {
            assert_eq!(wakes, 1, "a parked joiner must be woken");
        } else {
            assert_eq!(wakes, 0);
        }
    });
}

#[test]
fn link_fires_exactly_once() {
    loom::model(|| {
        let c: Arc<Completion<usize>> = Arc::new(Completion::new());
        let fired = Arc::new(AtomicUsize::new(0));
        let hub = {
            let (c, fired) = (c.clone(), fired.clone());
            thread::spawn(move || {
                for (_, l) in c.complete().links {
                    fired.fetch_add(l, Ordering::Relaxed);
                }
            })
        };
        for (_, l) in c.link(1, 1) {
            fired.fetch_add(l, Ordering::Relaxed);
        }
        hub.join().unwrap();
        assert_eq!(fired.load(Ordering::Relaxed), 1);
    });
}

#[test]
fn an_unlinked_link_never_fires_and_others_still_do() {
    loom::model(|| {
        let c: Arc<Completion<usize>> = Arc::new(Completion::new());
        let fired = Arc::new(AtomicUsize::new(0));
        let hub = {
            let (c, fired) = (c.clone(), fired.clone());
            thread::spawn(move || {
                for (_, l) in c.complete().links {
                    fired.fetch_add(l, Ordering::Relaxed);
                }
            })
        };
        // Link 10 (kept) and 100 (removed again, as a timed wait's `Unlink` does).
        let mut mine = 0;
        for (_, l) in c.link(1, 10) {
            mine += l;
        }
        for (_, l) in c.link(2, 100) {
            mine += l;
        }
        let removed = c.unlink(2).is_some();
        hub.join().unwrap();
        let total = fired.load(Ordering::Relaxed) + mine;
        if removed {
            assert_eq!(total, 10);
        } else {
            assert_eq!(total, 110, "unlink failed only because it had fired");
        }
    });
}

#[test]
fn exactly_one_side_owns_an_unjoined_failure() {
    loom::model(|| {
        let c: Arc<Completion<()>> = Arc::new(Completion::new());
        let hub = {
            let c = c.clone();
            thread::spawn(move || c.complete().detached)
        };
        let handle_owns = c.detach();
        let hub_owns = hub.join().unwrap();
        assert!(
            handle_owns ^ hub_owns,
            "reported {} times",
            handle_owns as u8 + hub_owns as u8
        );
    });
}
