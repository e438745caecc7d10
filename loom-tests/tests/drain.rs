// Without --cfg grove_loom this file compiles to an empty crate, docs included.
#![cfg_attr(not(grove_loom), allow(missing_docs))]
#![cfg(grove_loom)]
//! Loom models of the shutdown drains (`scheduler/src/gate.rs`), on the production
//! `Gate`: once a runtime shuts down, nothing queued after it is left uncancelled.
//!
//! # Who each thread stands for
//! * A **pusher** is `Core::push_outside` (a spawn from outside the workers: push to the injector;
//!   if `Gate::closed_after_push`, cancel what the injector holds), or
//!   `Core::push_remote` (`scheduler/src/hub.rs`: push to a worker's inbox; if that worker's `exited` gate is
//!   closed, drop what the inbox holds). Before pushing it checks `Gate::is_closed` and,
//!   if closed, cancels its item directly, as `push_new` does.
//! * The **closer** is `Core::close` (close `shutdown`, then cancel the
//!   injector's items) or a hub's `exit` (close `exited`, then drop the inbox's).
//!
//! The queue is a model of crossbeam's: items under a lock, but emptiness answered from
//! an atomic length without the lock, as crossbeam's `steal` answers it from its
//! indices (the scheduler's loom `Injector` takes a lock for everything, which would
//! order push and drain by itself and hide a missing fence; see `idle.rs`, `Queue`).
//!
//! # Properties asserted
//! Every item pushed is cancelled exactly once, by the pusher or by the closer, and the
//! queue is empty once all are done: no join waits for a greenlet nobody will cancel
//! (issue 15 item 5).
//!
//! # Shown to fail when broken (checked)
//! With `Gate`'s two `SeqCst` fences removed (the flag stored `Release` and loaded
//! `Acquire`), both models fail at once: loom finds the execution where the pusher
//! reads the gate open and the closer's drain finds the queue empty, stranding the item.
//!
//! # Bounds
//! Two or three threads, a handful of operations each: exhaustive under the CI's
//! `LOOM_MAX_PREEMPTIONS=3`, in about a second (measured on the two-core CI machine).

use std::collections::VecDeque;

use grove_scheduler::__loom::Gate;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// A queue whose emptiness is read without its lock (crossbeam's `steal` fast path).
struct Queue {
    items: Mutex<VecDeque<usize>>,
    len: AtomicUsize,
}

impl Queue {
    fn push(&self, item: usize) {
        let mut q = self.items.lock().unwrap();
        q.push_back(item);
        self.len.store(q.len(), Ordering::Release);
    }

    fn steal(&self) -> Option<usize> {
        if self.len.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut q = self.items.lock().unwrap();
        let t = q.pop_front();
        self.len.store(q.len(), Ordering::Release);
        t
    }
}

struct Shared {
    gate: Gate,
    queue: Queue,
    /// Items cancelled, by item.
    cancelled: Vec<AtomicUsize>,
}

impl Shared {
    fn cancel(&self, item: usize) {
        self.cancelled[item].fetch_add(1, Ordering::Relaxed);
    }

    fn drain(&self) {
        while let Some(t) = self.queue.steal() {
            self.cancel(t);
        }
    }

    /// `push_new` / `push_remote`.
    fn push(&self, item: usize) {
        if self.gate.is_closed() {
            self.cancel(item);
            return;
        }
        self.queue.push(item);
        if self.gate.closed_after_push() {
            self.drain();
        }
    }

    /// `begin_shutdown` / a hub's `exit`.
    fn close(&self) {
        self.gate.close();
        self.drain();
    }
}

fn run(pushers: usize) {
    loom::model(move || {
        let shared = Arc::new(Shared {
            gate: Gate::new(),
            queue: Queue {
                items: Mutex::new(VecDeque::new()),
                len: AtomicUsize::new(0),
            },
            cancelled: (0..pushers).map(|_| AtomicUsize::new(0)).collect(),
        });
        let ts: Vec<_> = (0..pushers)
            .map(|i| {
                let shared = shared.clone();
                thread::spawn(move || shared.push(i))
            })
            .collect();
        shared.close();
        for t in ts {
            t.join().unwrap();
        }
        for (i, c) in shared.cancelled.iter().enumerate() {
            assert_eq!(
                c.load(Ordering::Relaxed),
                1,
                "item {i} stranded or cancelled twice"
            );
        }
        assert_eq!(shared.queue.len.load(Ordering::Relaxed), 0);
    });
}

#[test]
fn nothing_pushed_during_shutdown_is_stranded() {
    run(1);
}

#[test]
fn nothing_pushed_by_two_threads_during_shutdown_is_stranded() {
    run(2);
}
