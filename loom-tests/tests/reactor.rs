//! Loom models of grove-reactor's racy protocols (step names refer to the crate docs of
//! `grove_reactor`): a waiter registering its waker vs. an event arriving (W vs. D, including
//! D2's lock-free skip when no waiting bit is set), a clear after `WouldBlock` vs. a new event
//! (C vs. D), timer insert vs. fire vs. cancel (T), a worker's timer scan vs. the reactor's plan,
//! and a late event vs. the slab slot's next occupant. (Who sleeps in the kernel: `watch.rs`.)
//!
//! `late_event_never_reaches_the_next_occupant` was checked to fail with `IoSlab::remove` not
//! bumping the slot's generation; `worker_scan_never_makes_the_reactor_oversleep` with
//! `fire_due_by_worker` setting `planned = now` when it stops, as the reactor's scan does on a
//! full batch;
//! `poll_ready_vs_dispatch` with W3 publishing the waiting bit by a store after a separate load
//! instead of one read-modify-write.
//!
//! Run with:
//! `RUSTFLAGS="--cfg grove_loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p grove-loom-tests --release --test reactor`
#![cfg(grove_loom)]

use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

use grove_reactor::__loom::{Due, Insert, IoSlab, Ready, ScheduledIo, TimerQueue};
use grove_reactor::{Direction, TimerKey};
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// A waker that counts its wakes in a loom atomic. (`Wake` needs a `std::sync::Arc`; only the
/// counter takes part in the model.)
struct CountingWaker {
    wakes: AtomicUsize,
}

impl Wake for CountingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
    }
}

impl CountingWaker {
    fn new() -> (std::sync::Arc<CountingWaker>, Waker) {
        let count = std::sync::Arc::new(CountingWaker {
            wakes: AtomicUsize::new(0),
        });
        (count.clone(), Waker::from(count))
    }

    fn wakes(&self) -> usize {
        self.wakes.load(SeqCst)
    }
}

fn poll(io: &ScheduledIo, dir: Direction, waker: &Waker) -> Poll<std::io::Result<()>> {
    io.poll_ready(dir, &mut Context::from_waker(waker))
}

/// W1–W3 vs. D1–D3: the waiter is either ready at once, or its waker is woken exactly once.
#[test]
fn poll_ready_vs_dispatch() {
    loom::model(|| {
        let io = Arc::new(ScheduledIo::new());
        let (count, waker) = CountingWaker::new();

        let reactor = {
            let io = io.clone();
            thread::spawn(move || io.dispatch(Ready::READABLE))
        };
        let first = poll(&io, Direction::Read, &waker);
        let woken_by_dispatch = reactor.join().unwrap();

        match first {
            // Ready at W1 or W3: no waker was left behind to be woken spuriously.
            Poll::Ready(result) => {
                result.unwrap();
                assert_eq!(count.wakes(), 0, "spurious wake");
                assert_eq!(woken_by_dispatch, 0);
            }
            // Pending: the event must have found the waker (no lost wakeup).
            Poll::Pending => {
                assert_eq!(count.wakes(), 1, "lost wakeup");
                assert_eq!(woken_by_dispatch, 1);
            }
        }
        assert!(poll(&io, Direction::Read, &waker).is_ready());
    });
}

/// A reader and a writer wait while one event makes only the reader ready: the reader is ready
/// or woken once; the writer is never woken and stays pending.
#[test]
fn dispatch_wakes_only_the_satisfied_direction() {
    loom::model(|| {
        let io = Arc::new(ScheduledIo::new());
        let (reads, read_waker) = CountingWaker::new();
        let (writes, write_waker) = CountingWaker::new();

        let writer = {
            let io = io.clone();
            thread::spawn(move || poll(&io, Direction::Write, &write_waker).is_pending())
        };
        let reactor = {
            let io = io.clone();
            thread::spawn(move || io.dispatch(Ready::READABLE | Ready::READ_CLOSED))
        };
        let reader_pending = poll(&io, Direction::Read, &read_waker).is_pending();
        assert!(
            writer.join().unwrap(),
            "writer saw readiness it was never given"
        );
        reactor.join().unwrap();

        assert_eq!(reads.wakes(), usize::from(reader_pending));
        assert_eq!(writes.wakes(), 0);
    });
}

/// C1 vs. D1: after `poll_ready` said ready and the operation returned `WouldBlock`, a new event
/// races the clear. The new event is never erased: the waiter is ready at once or woken.
#[test]
fn clear_vs_new_event() {
    loom::model(|| {
        let io = Arc::new(ScheduledIo::new());
        let (count, waker) = CountingWaker::new();
        io.dispatch(Ready::READABLE);
        assert!(poll(&io, Direction::Read, &waker).is_ready());
        // ... the read returned WouldBlock; meanwhile new data arrives.

        let reactor = {
            let io = io.clone();
            thread::spawn(move || io.dispatch(Ready::READABLE))
        };
        io.clear_readiness(Direction::Read);
        let after = poll(&io, Direction::Read, &waker);
        reactor.join().unwrap();

        match after {
            Poll::Ready(result) => result.unwrap(),
            Poll::Pending => assert_eq!(count.wakes(), 1, "event lost: waiter never woken"),
        }
        // Whatever the order, the readiness of the new event is still recorded.
        assert!(
            io.readiness().is_ready(Direction::Read),
            "clear erased a newer event"
        );
    });
}

/// Shutdown vs. a waiter: the waiter sees the shutdown error at once or is woken.
#[test]
fn poll_ready_vs_shutdown() {
    loom::model(|| {
        let io = Arc::new(ScheduledIo::new());
        let (count, waker) = CountingWaker::new();
        let reactor = {
            let io = io.clone();
            thread::spawn(move || io.shutdown())
        };
        let first = poll(&io, Direction::Write, &waker);
        reactor.join().unwrap();
        match first {
            Poll::Ready(result) => assert!(result.is_err()),
            Poll::Pending => assert_eq!(count.wakes(), 1, "waiter hangs across shutdown"),
        }
        assert!(matches!(
            poll(&io, Direction::Write, &waker),
            Poll::Ready(Err(_))
        ));
    });
}

fn queued(insert: Insert) -> (TimerKey, bool) {
    match insert {
        Insert::Queued { key, notify } => (key, notify),
        other => panic!("not queued: {other:?}"),
    }
}

/// An `add_timer` as the driver does it: queued (its key), or due at once (woken here: `None`).
fn add(q: &TimerQueue, deadline: Instant, waker: Waker) -> Option<TimerKey> {
    match q.insert(deadline, waker) {
        Insert::Queued { key, .. } => Some(key),
        Insert::Due(waker) => {
            waker.wake();
            None
        }
        Insert::ShutDown(_) => panic!("timer queue shut down"),
    }
}

/// The reactor's side of T1: fire what is due at `now`, waking outside the lock.
fn fire(q: &TimerQueue, now: Instant, limit: usize) -> (Due, usize) {
    let mut out = Vec::new();
    let due = q.fire_due(now, &mut out, limit);
    let fired = out.len();
    out.into_iter().for_each(Waker::wake);
    (due, fired)
}

/// T: insert-then-cancel on one thread races the reactor firing due timers. Exactly one of
/// "fired", "due at once" (the reactor's scan passed the deadline first) and "cancelled"
/// happens, and the waker is woken iff it was not cancelled.
#[test]
fn timer_add_fire_cancel() {
    loom::model(|| {
        let q = Arc::new(TimerQueue::new());
        let deadline = q.tick_instant(5);
        let (count, waker) = CountingWaker::new();

        let reactor = {
            let q = q.clone();
            thread::spawn(move || fire(&q, deadline, 8).1)
        };
        let key = add(&q, deadline, waker);
        let cancelled = key.is_some_and(|key| q.cancel(key));
        let fired = reactor.join().unwrap();

        assert!(fired <= 1);
        assert_eq!(
            fired + usize::from(key.is_none()) + usize::from(cancelled),
            1,
            "fired, due at once and cancelled must be exclusive and exhaustive"
        );
        assert_eq!(
            count.wakes(),
            1 - usize::from(cancelled),
            "woken iff not cancelled"
        );
        assert!(q.is_empty());
    });
}

/// T with three parties: the adder publishes the key, a canceller cancels it if it sees it, the
/// reactor fires. Whatever is left pending is fired at the end: every timer ends up fired or
/// cancelled, exactly once.
#[test]
fn timer_fire_vs_cancel_from_another_thread() {
    loom::model(|| {
        let q = Arc::new(TimerQueue::new());
        let deadline = q.tick_instant(5);
        let (count, waker) = CountingWaker::new();
        let published: Arc<Mutex<Option<TimerKey>>> = Arc::new(Mutex::new(None));

        let reactor = {
            let q = q.clone();
            thread::spawn(move || fire(&q, deadline, 8).1)
        };
        let canceller = {
            let (q, published) = (q.clone(), published.clone());
            thread::spawn(move || {
                let key = *published.lock().unwrap();
                key.is_some_and(|key| q.cancel(key))
            })
        };
        let key = add(&q, deadline, waker);
        *published.lock().unwrap() = key;

        let fired = reactor.join().unwrap();
        let cancelled = canceller.join().unwrap();
        let fired_late = fire(&q, deadline, 8).1;
        let inline = usize::from(key.is_none());

        assert_eq!(fired + fired_late + inline + usize::from(cancelled), 1);
        assert_eq!(count.wakes(), fired + fired_late + inline);
        assert!(
            key.is_none_or(|key| !q.cancel(key)),
            "a finished timer was cancelled again"
        );
    });
}

/// T1–T3 during a firing burst: the reactor fires a batch (`Due::More`), rescans, and plans its
/// sleep; an insert races it. If the insert did not notify, the planned wake must not be later
/// than the new deadline: the reactor never oversleeps a timer it was not told about.
#[test]
fn insert_during_firing_burst_is_never_overslept() {
    loom::model(|| {
        let q = Arc::new(TimerQueue::new());
        let now = q.tick_instant(10);
        let deadline = q.tick_instant(20);
        let (_, due_waker) = CountingWaker::new();
        let _ = queued(q.insert(now, due_waker.clone()));
        let _ = queued(q.insert(now, due_waker));

        let reactor = {
            let q = q.clone();
            thread::spawn(move || {
                let mut fired = 0;
                loop {
                    let (due, n) = fire(&q, now, 1);
                    fired += n;
                    if let Due::Idle(planned) = due {
                        return (fired, planned);
                    }
                }
            })
        };
        let (count, waker) = CountingWaker::new();
        let (_, notify) = queued(q.insert(deadline, waker));
        let (fired, planned) = reactor.join().unwrap();

        assert_eq!(fired, 2);
        assert_eq!(count.wakes(), 0);
        if !notify {
            assert!(
                planned.is_some_and(|planned| planned <= deadline),
                "silent insert overslept: planned {planned:?}"
            );
        }
    });
}

/// T3 across shards: the reactor's scan visits shard 0, then shard 1, and sleeps until the
/// earliest plan of all; an insert into shard 0 races it (before or after that shard's scan).
/// If the insert did not notify, the reactor's plan is not later than it, and in any case not
/// later than the earliest timer of either shard.
///
/// Checked to fail with `fire_due` keeping the *last* shard's expiration as its plan instead
/// of the minimum over shards.
#[test]
fn insert_into_another_shard_is_never_overslept() {
    loom::model(|| {
        let q = Arc::new(TimerQueue::with_shards(2));
        let now = q.tick_instant(10);
        let (_, waker) = CountingWaker::new();
        let _ = queued(q.insert_in(0, q.tick_instant(30), waker.clone()));
        let _ = queued(q.insert_in(1, q.tick_instant(40), waker));
        let (due, _) = fire(&q, now, 8);
        assert_eq!(due, Due::Idle(Some(q.tick_instant(30))));

        let reactor = {
            let q = q.clone();
            thread::spawn(move || fire(&q, now, 8).0)
        };
        let (count, waker) = CountingWaker::new();
        let deadline = q.tick_instant(20);
        let (_, notify) = queued(q.insert_in(0, deadline, waker));
        let Due::Idle(Some(planned)) = reactor.join().unwrap() else {
            panic!("timers are pending");
        };

        assert_eq!(count.wakes(), 0);
        assert!(
            planned <= q.tick_instant(30),
            "overslept another shard's timer"
        );
        if !notify {
            assert!(planned <= deadline, "silent insert overslept: {planned:?}");
        }
    });
}

/// A harvester resolved an event's token (under the slab lock, as `Shared::dispatch` does) while
/// the registration is dropped and a new source takes the same slot: the late event is either
/// dispatched to the old registration's state or dropped, never given to the new occupant.
#[test]
fn late_event_never_reaches_the_next_occupant() {
    loom::model(|| {
        let slab = Arc::new(Mutex::new(IoSlab::new()));
        let old = std::sync::Arc::new(ScheduledIo::new());
        let token = slab.lock().unwrap().insert(old.clone()).unwrap();

        let harvester = {
            let slab = slab.clone();
            thread::spawn(move || {
                let io = slab.lock().unwrap().get(token).cloned();
                if let Some(io) = io {
                    io.dispatch(Ready::READABLE);
                }
            })
        };
        // The owner deregisters; a new source is registered and reuses the slot.
        let removed = slab.lock().unwrap().remove(token);
        assert!(removed.is_some());
        let new = std::sync::Arc::new(ScheduledIo::new());
        let _ = slab.lock().unwrap().insert(new.clone()).unwrap();
        harvester.join().unwrap();

        assert!(
            !new.readiness().is_ready(Direction::Read),
            "a late event reached the slot's next occupant"
        );
        assert!(slab.lock().unwrap().get(token).is_none());
    });
}

/// "Workers fire too" (module `timer`): a worker's scan races an insert while the reactor sleeps
/// until what its own last scan planned. If the insert did not notify, that plan must not be
/// later than the new deadline: a worker's scan never changes what inserts compare against.
#[test]
fn worker_scan_never_makes_the_reactor_oversleep() {
    loom::model(|| {
        let q = Arc::new(TimerQueue::new());
        let now = q.tick_instant(10);
        let deadline = q.tick_instant(20);
        let later = q.tick_instant(40);
        let (_, waker) = CountingWaker::new();
        let _ = queued(q.insert(now, waker.clone()));
        let _ = queued(q.insert(later, waker));
        // The reactor's scan: fires the due timer, then sleeps until `later`.
        let (due, fired) = fire(&q, now, 8);
        assert_eq!((due, fired), (Due::Idle(Some(later)), 1));

        let worker = {
            let q = q.clone();
            thread::spawn(move || {
                let mut out = Vec::new();
                q.fire_due_by_worker(now, &mut out, 1)
            })
        };
        let (count, waker) = CountingWaker::new();
        let (_, notify) = queued(q.insert(deadline, waker));
        assert_eq!(worker.join().unwrap(), 0, "nothing was due");
        assert_eq!(count.wakes(), 0);
        assert!(
            notify,
            "an insert earlier than the reactor's planned wake stayed silent"
        );
    });
}
