// Without --cfg grove_loom this file compiles to an empty crate, docs included.
#![cfg_attr(not(grove_loom), allow(missing_docs))]
#![cfg(grove_loom)]
//! Loom models of `spawn_later`'s hand-off (`scheduler/src/delayed.rs`), on the
//! production `DelayedSlot`: the timer vs a kill vs a shutdown that drops the timer.
//!
//! # Who each thread stands for
//! * **arm** (`greenlet::Delayed::arm`, on the spawning thread): `store`, add the timer,
//!   `timer_added`, cancelling the timer if that says the greenlet is gone.
//! * The **timer** (the reactor firing it): `take(false)`, then unlink the kill hook and
//!   queue the greenlet.
//! * A **killer** (`kill_nowait` running the hook; only possible once `spawn_later` has
//!   returned, i.e. after `timer_added`): `take(true)`, then cancel the timer and queue.
//! * A **shutdown** that drops the timer unfired: `leftover`, then cancel the greenlet.
//!
//! # Properties asserted
//! The greenlet is queued or cancelled exactly once, never both, never neither; when a
//! kill wins, the timer is cancelled (by the killer or by arm); when the timer wins, the
//! kill hook is unlinked.
//!
//! # Shown to fail when broken (checked)
//! `take` not handing a kill the timer's key (`cancel_timer: None`) fails
//! `kill_or_timer_queues_once`: a killed greenlet's timer stays armed (until its delay,
//! holding the greenlet's slot alive).
//!
//! # Bounds
//! Two or three threads, a handful of operations each: exhaustive under the CI's
//! `LOOM_MAX_PREEMPTIONS=3`, in about a second (measured on the two-core CI machine).

use grove_scheduler::__loom::DelayedSlot;
use grove_scheduler::TimerKey;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

const HOOK: u64 = 9;
const KEY: TimerKey = TimerKey::from_raw(42);

#[derive(Default)]
struct Seen {
    queued: AtomicUsize,
    timer_cancelled: AtomicUsize,
    hook_unlinked: AtomicUsize,
}

fn on_taken(seen: &Seen, taken: grove_scheduler::__loom::Taken<u8>) {
    assert_eq!(taken.task, 1);
    if taken.cancel_timer == Some(KEY) {
        seen.timer_cancelled.fetch_add(1, Ordering::Relaxed);
    }
    if taken.unlink_hook == Some(HOOK) {
        seen.hook_unlinked.fetch_add(1, Ordering::Relaxed);
    }
    seen.queued.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn kill_or_timer_queues_once() {
    loom::model(|| {
        let slot = Arc::new(DelayedSlot::new());
        let seen = Arc::new(Seen::default());
        slot.store(1u8, HOOK);
        // The timer is added: from now on it may fire.
        let timer = {
            let (slot, seen) = (slot.clone(), seen.clone());
            thread::spawn(move || {
                if let Some(t) = slot.take(false) {
                    on_taken(&seen, t);
                    true
                } else {
                    false
                }
            })
        };
        if !slot.timer_added(KEY) {
            seen.timer_cancelled.fetch_add(1, Ordering::Relaxed);
        }
        // spawn_later returned: a kill may come.
        let killer = {
            let (slot, seen) = (slot.clone(), seen.clone());
            thread::spawn(move || {
                if let Some(t) = slot.take(true) {
                    on_taken(&seen, t);
                    true
                } else {
                    false
                }
            })
        };
        let by_timer = timer.join().unwrap();
        let by_kill = killer.join().unwrap();
        assert!(by_timer ^ by_kill, "queued by both or neither");
        assert!(slot.leftover().is_none());
        assert_eq!(seen.queued.load(Ordering::Relaxed), 1);
        if by_kill {
            assert!(
                seen.timer_cancelled.load(Ordering::Relaxed) >= 1,
                "timer left armed"
            );
        } else {
            assert_eq!(seen.hook_unlinked.load(Ordering::Relaxed), 1);
        }
    });
}

#[test]
fn a_shutdown_that_drops_the_timer_cancels_the_greenlet_once() {
    loom::model(|| {
        let slot = Arc::new(DelayedSlot::new());
        slot.store(1u8, HOOK);
        assert!(slot.timer_added(KEY));
        let killer = {
            let slot = slot.clone();
            thread::spawn(move || slot.take(true).is_some())
        };
        // The timer service drops the timer unfired (`Delayed::drop`).
        let cancelled = slot.leftover().is_some();
        let killed = killer.join().unwrap();
        assert!(cancelled ^ killed, "cancelled by both or neither");
    });
}
