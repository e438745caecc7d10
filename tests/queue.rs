//! `Queue`, `LifoQueue`, `PriorityQueue`. Follows gevent's `test__queue.py`
//! (TestQueue: send first/last, max size, multiple waiters, waiters that cancel, two
//! waiters one dies, two bogus waiters, peek; TestNoWait-style put_nowait/get_nowait
//! and their "unlock" cases; TestJoinableQueue: task_done, join on empty (issue 45),
//! shutdown in one thread; TestGetInterrupt/TestPutInterrupt for every kind), plus
//! cross-worker and OS-thread producers/consumers with exact item accounting, FIFO
//! fairness of blocked getters and putters, close semantics and cancellation mid-wait.
//!
//! Ordering between greenlets is arranged with the queue's own `getting()` /
//! `putting()` counts and `yield_now`, never with sleeps. Tests that depend on which
//! greenlet runs next use one worker.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grove::queue::{
    Closed, GenericQueue, GetTimeoutError, PutTimeoutError, Storage, TaskDoneError, TryGetError,
    TryPutError,
};
use grove::{
    queue::{LifoQueue, PriorityQueue, Queue},
    JoinHandle,
};

fn rt() -> grove::Runtime {
    grove::Runtime::builder().workers(2).build().unwrap()
}

/// One worker: greenlets run only when the running one blocks or yields.
fn rt1() -> grove::Runtime {
    grove::Runtime::builder().workers(1).build().unwrap()
}

const SHORT: Duration = Duration::from_millis(20);
/// For a waiter that must still be waiting after a few spawns and yields.
const MEDIUM: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(3600);

/// Yields until `cond` holds (other greenlets make progress meanwhile).
fn until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        grove::yield_now();
    }
}

/// Spawns a greenlet blocked in `q.get()`: yields until it is queued.
fn blocked_getter<T, S>(q: &GenericQueue<T, S>) -> JoinHandle<Result<T, Closed>>
where
    T: Send + 'static,
    S: Storage<T> + Send + 'static,
{
    let (n, q2) = (q.getting(), q.clone());
    let h = grove::spawn(move || q2.get());
    until(|| q.getting() == n + 1);
    h
}

/// Spawns a greenlet blocked in `q.put(item)`: yields until it is queued.
fn blocked_putter<T, S>(q: &GenericQueue<T, S>, item: T) -> JoinHandle<Result<(), Closed<T>>>
where
    T: Send + 'static,
    S: Storage<T> + Send + 'static,
{
    let (n, q2) = (q.putting(), q.clone());
    let h = grove::spawn(move || q2.put(item));
    until(|| q.putting() == n + 1);
    h
}

/// An item that counts its drops.
struct Tracked {
    id: u32,
    drops: Arc<AtomicUsize>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

// ---- gevent TestQueue -------------------------------------------------------------

/// test_send_first
#[test]
fn put_then_peek_then_get_returns_the_item() {
    rt().block_on(|| {
        let q = Queue::new();
        q.put("hi").unwrap();
        assert_eq!(q.peek(), Ok("hi"));
        assert_eq!(q.len(), 1);
        assert_eq!(q.get(), Ok("hi"));
        assert!(q.is_empty());
    });
}

/// test_send_last
#[test]
fn a_getter_waiting_first_receives_the_put() {
    rt().block_on(|| {
        let q = Queue::new();
        let getter = blocked_getter(&q);
        q.put("hi2").unwrap();
        assert_eq!(getter.join().unwrap(), Ok("hi2"));
        assert!(q.is_empty());
    });
}

/// test_max_size, with direct hand-off: a get on a full queue admits the blocked
/// putter's item at once, so the queue is full again when the get returns.
#[test]
fn a_bounded_put_blocks_until_a_get_admits_its_item() {
    rt1().block_on(|| {
        let q = Queue::bounded(2);
        let results = Arc::new(Mutex::new(Vec::new()));
        let putter = {
            let (q, results) = (q.clone(), results.clone());
            grove::spawn(move || {
                for item in ["a", "b", "c"] {
                    q.put(item).unwrap();
                    results.lock().unwrap().push(item);
                }
                "OK"
            })
        };
        until(|| q.putting() == 1);
        assert_eq!(*results.lock().unwrap(), ["a", "b"]);
        assert!(q.is_full());
        assert_eq!(q.get(), Ok("a"));
        assert_eq!((q.len(), q.putting()), (2, 0), "c admitted by the get");
        assert_eq!(putter.join().unwrap(), "OK");
        assert_eq!(*results.lock().unwrap(), ["a", "b", "c"]);
        assert_eq!(q.get(), Ok("b"));
        assert_eq!(q.get(), Ok("c"));
    });
}

/// test_multiple_waiters, plus FIFO fairness: blocked getters are served in the order
/// they blocked.
#[test]
fn blocked_getters_are_served_in_fifo_order_across_workers() {
    rt().block_on(|| {
        let q = Queue::new();
        let getters: Vec<_> = (0..8).map(|_| blocked_getter(&q)).collect();
        for i in 0..8 {
            q.put(i).unwrap();
        }
        let got: Vec<usize> = getters
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        assert_eq!(got, (0..8).collect::<Vec<_>>());
    });
}

/// test_waiters_that_cancel
#[test]
fn a_getter_that_timed_out_leaves_the_queue_working() {
    rt().block_on(|| {
        let q = Queue::new();
        let q2 = q.clone();
        let r = grove::spawn(move || grove::with_timeout(Duration::ZERO, || q2.get()))
            .join()
            .unwrap();
        assert!(r.is_err());
        assert_eq!(q.get_timeout(Duration::ZERO), Err(GetTimeoutError::Timeout));
        assert_eq!(q.getting(), 0);
        q.put("hi").unwrap();
        assert_eq!(q.get(), Ok("hi"));
    });
}

/// test_two_waiters_one_dies
#[test]
fn when_one_of_two_getters_times_out_the_other_receives_the_item() {
    rt().block_on(|| {
        let q = Queue::new();
        let dying = {
            let q = q.clone();
            grove::spawn(move || grove::with_timeout(MEDIUM, || q.get()))
        };
        until(|| q.getting() == 1);
        let waiting = blocked_getter(&q);
        assert!(dying.join().unwrap().is_err(), "timed out");
        assert_eq!(q.getting(), 1);
        q.put("hi").unwrap();
        assert_eq!(waiting.join().unwrap(), Ok("hi"));
    });
}

/// test_two_bogus_waiters
#[test]
fn when_every_getter_times_out_the_item_stays_queued() {
    rt().block_on(|| {
        let q = Queue::new();
        let bogus: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                grove::spawn(move || q.get_timeout(SHORT))
            })
            .collect();
        for h in bogus {
            assert_eq!(h.join().unwrap(), Err(GetTimeoutError::Timeout));
        }
        q.put("sent").unwrap();
        assert_eq!(q.get(), Ok("sent"));
    });
}

/// test_peek_empty
#[test]
fn peeking_an_empty_queue_fails_or_times_out() {
    rt().block_on(|| {
        let q: Queue<i32> = Queue::new();
        assert_eq!(q.try_peek(), Err(TryGetError::Empty));
        assert_eq!(q.try_peek_with(|_| ()), Err(TryGetError::Empty));
        let t = Instant::now();
        assert_eq!(q.peek_timeout(SHORT), Err(GetTimeoutError::Timeout));
        assert!(t.elapsed() >= SHORT);
        q.close();
        assert_eq!(q.peek(), Err(Closed(())));
    });
}

/// test_peek_multi_greenlet
#[test]
fn a_blocked_peek_returns_when_an_item_is_put_and_leaves_it_queued() {
    rt().block_on(|| {
        let q = Queue::new();
        let peekers: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                grove::spawn(move || q.peek())
            })
            .collect();
        // Peekers are not getters; `Debug` counts them.
        until(|| format!("{q:?}").contains("peeking: 3"));
        q.put(1).unwrap();
        for p in peekers {
            assert_eq!(p.join().unwrap(), Ok(1));
        }
        assert_eq!(q.try_peek_with(|v| v * 10), Ok(10));
        assert_eq!(q.len(), 1);
    });
}

// ---- gevent's put_nowait / get_nowait cases --------------------------------------

/// test_put_nowait_simple / test_get_nowait_simple: the item comes back in `Full`.
#[test]
fn try_put_and_try_get_never_block_and_give_the_item_back() {
    rt().block_on(|| {
        let q = Queue::bounded(1);
        assert_eq!(q.try_put(2), Ok(()));
        let err = q.try_put(3).unwrap_err();
        assert!(err.is_full());
        assert_eq!(err.into_inner(), 3);
        assert_eq!(q.try_get(), Ok(2));
        assert_eq!(q.try_get(), Err(TryGetError::Empty));
    });
}

/// test_put_nowait_unlock: `try_put` hands the item to a blocked getter.
#[test]
fn try_put_hands_the_item_to_a_blocked_getter() {
    rt().block_on(|| {
        let q = Queue::bounded(1);
        let getter = blocked_getter(&q);
        assert_eq!(q.try_put(10), Ok(()));
        assert_eq!(getter.join().unwrap(), Ok(10));
        assert!(q.is_empty() && !q.is_full());
    });
}

/// test_get_nowait_unlock: `try_get` on a full queue admits the blocked putter.
#[test]
fn try_get_admits_a_blocked_putters_item() {
    rt().block_on(|| {
        let q = Queue::bounded(1);
        q.put(4).unwrap();
        let putter = blocked_putter(&q, 5);
        assert_eq!(q.try_get(), Ok(4));
        assert_eq!(q.len(), 1);
        assert_eq!(putter.join().unwrap(), Ok(()));
        assert_eq!(q.try_get(), Ok(5));
    });
}

// ---- FIFO fairness of putters -----------------------------------------------------

#[test]
fn blocked_putters_are_admitted_in_fifo_order_and_the_queue_stays_full() {
    rt().block_on(|| {
        let q = Queue::bounded(1);
        q.put(0).unwrap();
        let putters: Vec<_> = (1..=6).map(|i| blocked_putter(&q, i)).collect();
        for expect in 0..=6 {
            assert_eq!(q.get(), Ok(expect));
            if expect < 6 {
                assert_eq!(q.len(), 1, "the next putter's item was admitted");
            }
        }
        for h in putters {
            assert_eq!(h.join().unwrap(), Ok(()));
        }
    });
}

// ---- timeouts on every kind (TestGetInterrupt / TestPutInterrupt) -----------------

macro_rules! timeouts_for {
    ($name:ident, $make:expr) => {
        #[test]
        fn $name() {
            rt().block_on(|| {
                let q = $make;
                // get on an empty queue: the timeout elapses, no sooner.
                let t = Instant::now();
                assert_eq!(q.get_timeout(SHORT), Err(GetTimeoutError::Timeout));
                assert!(t.elapsed() >= SHORT);
                // A `Timeout` scope interrupts a blocked get.
                assert!(grove::with_timeout(SHORT, || q.get()).is_err());
                // put on a full queue: the item comes back.
                q.put(1).unwrap();
                let t = Instant::now();
                let err = q.put_timeout(2, SHORT).unwrap_err();
                assert!(t.elapsed() >= SHORT);
                assert!(err.is_timeout());
                assert_eq!(err.into_inner(), 2);
                assert!(grove::with_timeout(SHORT, || q.put(3)).is_err());
                // Nothing was left behind by the cancelled waiters.
                assert_eq!((q.len(), q.getting(), q.putting()), (1, 0, 0));
                assert_eq!(q.get_timeout(LONG), Ok(1));
                assert_eq!(q.put_timeout(4, LONG), Ok(()));
                assert_eq!(q.try_get(), Ok(4));
            });
        }
    };
}

timeouts_for!(queue_get_and_put_time_out, Queue::bounded(1));
timeouts_for!(lifo_queue_get_and_put_time_out, LifoQueue::bounded(1));
timeouts_for!(
    priority_queue_get_and_put_time_out,
    PriorityQueue::bounded(1)
);

// ---- orders ------------------------------------------------------------------------

#[test]
fn lifo_queue_returns_the_newest_item_first() {
    let q = LifoQueue::new();
    for i in 0..5 {
        q.put(i).unwrap();
    }
    assert_eq!(q.try_peek(), Ok(4));
    let got: Vec<_> = std::iter::from_fn(|| q.try_get().ok()).collect();
    assert_eq!(got, [4, 3, 2, 1, 0]);
}

#[test]
fn priority_queue_returns_the_smallest_item_first() {
    let q = PriorityQueue::new();
    for i in [5, 1, 4, 2, 3, 0] {
        q.put(i).unwrap();
    }
    assert_eq!(q.try_peek(), Ok(0));
    let got: Vec<_> = std::iter::from_fn(|| q.try_get().ok()).collect();
    assert_eq!(got, [0, 1, 2, 3, 4, 5]);
}

/// The FIFO among blocked putters holds for every order; what the order changes is
/// only which stored item a get takes.
#[test]
fn a_bounded_priority_queue_admits_putters_in_order_then_sorts() {
    rt().block_on(|| {
        let q = PriorityQueue::bounded(2);
        q.put(50).unwrap();
        q.put(40).unwrap();
        let putters = [30, 10, 20].map(|v| blocked_putter(&q, v));
        // Stored {40, 50}: the get takes 40 and admits 30 (first putter).
        assert_eq!(q.get(), Ok(40));
        assert_eq!(q.get(), Ok(30)); // stored {30, 50}; admits 10
        assert_eq!(q.get(), Ok(10)); // stored {10, 50}; admits 20
        assert_eq!(q.get(), Ok(20));
        assert_eq!(q.get(), Ok(50));
        for h in putters {
            h.join().unwrap().unwrap();
        }
    });
}

// ---- JoinableQueue (task_done / join) ----------------------------------------------

/// test_task_done, and task_done once too often is an error.
#[test]
fn task_done_counts_down_unfinished_tasks_and_rejects_one_too_many() {
    rt().block_on(|| {
        let q = Queue::new();
        let q2 = q.clone();
        grove::spawn(move || q2.put("X").unwrap());
        assert_eq!(q.get(), Ok("X"));
        assert_eq!(q.unfinished_tasks(), 1);
        assert_eq!(q.task_done(), Ok(()));
        assert_eq!(q.unfinished_tasks(), 0);
        assert_eq!(q.task_done(), Err(TaskDoneError));
        assert!(TaskDoneError.to_string().contains("task_done"));
    });
}

/// test_issue_45
#[test]
fn join_on_a_queue_that_never_had_items_returns_at_once() {
    let q: Queue<i32> = Queue::new();
    q.join();
    assert!(q.join_timeout(Duration::ZERO));
}

#[test]
fn join_waits_until_every_item_is_marked_done_by_workers_on_every_core() {
    rt().block_on(|| {
        let q = Queue::new();
        let processed = Arc::new(AtomicUsize::new(0));
        for i in 0..200 {
            q.put(i).unwrap();
        }
        assert!(!q.join_timeout(Duration::ZERO));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let (q, processed) = (q.clone(), processed.clone());
                grove::spawn(move || {
                    while let Ok(_item) = q.get() {
                        grove::yield_now();
                        processed.fetch_add(1, Ordering::SeqCst);
                        q.task_done().unwrap();
                    }
                })
            })
            .collect();
        q.join();
        assert_eq!(processed.load(Ordering::SeqCst), 200);
        assert_eq!(q.unfinished_tasks(), 0);
        q.close();
        for w in workers {
            w.join().unwrap();
        }
    });
}

/// TestJoinableQueue.test_shutdown_all_methods_in_one_thread (immediate=False).
#[test]
fn close_refuses_puts_but_drains_what_is_stored() {
    rt().block_on(|| {
        let q = Queue::new();
        q.put('L').unwrap();
        q.try_put('O').unwrap();
        q.close();
        assert!(q.is_closed());
        assert_eq!(q.put('E'), Err(Closed('E')));
        assert_eq!(q.try_put('W'), Err(TryPutError::Closed('W')));
        assert_eq!(q.put_timeout('X', LONG), Err(PutTimeoutError::Closed('X')));
        assert_eq!(q.get(), Ok('L'));
        q.task_done().unwrap();
        assert_eq!(q.get(), Ok('O'));
        q.task_done().unwrap();
        q.join();
        assert_eq!(q.get(), Err(Closed(())));
        assert_eq!(q.try_get(), Err(TryGetError::Closed));
        assert_eq!(q.get_timeout(LONG), Err(GetTimeoutError::Closed));
        assert_eq!(q.iter().count(), 0);
    });
}

// ---- close --------------------------------------------------------------------------

#[test]
fn close_wakes_blocked_getters_with_closed() {
    rt().block_on(|| {
        let q: Queue<i32> = Queue::new();
        let getters: Vec<_> = (0..4).map(|_| blocked_getter(&q)).collect();
        q.close();
        for g in getters {
            assert_eq!(g.join().unwrap(), Err(Closed(())));
        }
    });
}

#[test]
fn close_gives_blocked_putters_their_own_items_back() {
    rt().block_on(|| {
        let q = Queue::bounded(1);
        q.put(0).unwrap();
        let putters: Vec<_> = (1..=3).map(|i| blocked_putter(&q, i)).collect();
        q.close();
        let mut back: Vec<i32> = putters
            .into_iter()
            .map(|p| p.join().unwrap().unwrap_err().into_inner())
            .collect();
        back.sort();
        assert_eq!(back, [1, 2, 3]);
        assert_eq!(q.get(), Ok(0));
        assert_eq!(q.get(), Err(Closed(())));
    });
}

#[test]
fn iteration_yields_every_item_until_the_queue_is_closed_and_drained() {
    rt().block_on(|| {
        let q = Queue::bounded(4);
        let producer = {
            let q = q.clone();
            grove::spawn(move || {
                for i in 0..100 {
                    q.put(i).unwrap();
                }
                q.close();
            })
        };
        let mut got = Vec::new();
        for item in &q {
            got.push(item);
        }
        producer.join().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    });
}

// ---- cancellation mid-wait ------------------------------------------------------------

/// A getter handed an item and killed before it ran passes the item to the next
/// getter. One worker: the killed getter cannot run between the put and the kill.
#[test]
fn a_getter_killed_after_being_handed_an_item_passes_it_to_the_next_getter() {
    rt1().block_on(|| {
        let q = Queue::new();
        let first = blocked_getter(&q);
        let second = blocked_getter(&q);
        q.put("item").unwrap(); // handed to `first`, which has not run yet
        assert_eq!(q.getting(), 1);
        first.kill();
        assert!(first.join().unwrap_err().is_killed());
        assert_eq!(second.join().unwrap(), Ok("item"));
        assert!(q.is_empty());
    });
}

/// With nobody else waiting, the item goes back to the front of the queue, ahead of
/// one put after it.
#[test]
fn a_getter_killed_after_being_handed_an_item_puts_it_back_in_front() {
    rt1().block_on(|| {
        let q = Queue::new();
        let getter = blocked_getter(&q);
        q.put("first").unwrap(); // handed to the getter
        q.put("second").unwrap(); // stored
        getter.kill();
        assert!(getter.join().unwrap_err().is_killed());
        assert_eq!(q.len(), 2);
        assert_eq!(q.get(), Ok("first"));
        assert_eq!(q.get(), Ok("second"));
        assert_eq!(q.unfinished_tasks(), 2);
    });
}

/// Even on a full bounded queue the handed item is not lost.
#[test]
fn a_handed_item_given_back_to_a_full_queue_is_kept() {
    rt1().block_on(|| {
        let q = Queue::bounded(1);
        let getter = blocked_getter(&q);
        q.put(1).unwrap(); // handed
        q.put(2).unwrap(); // fills the queue
        getter.kill();
        assert_eq!(q.len(), 2, "capacity + 1, briefly");
        assert!(q.try_put(3).unwrap_err().is_full());
        assert_eq!(q.get(), Ok(1));
        assert_eq!(q.get(), Ok(2));
        assert_eq!(q.try_put(3), Ok(()));
    });
}

#[test]
fn a_putter_that_times_out_gets_its_item_back_and_the_queue_still_works() {
    rt().block_on(|| {
        let q = Queue::bounded(1);
        q.put(1).unwrap();
        let waiting = {
            let q = q.clone();
            grove::spawn(move || q.put_timeout(2, MEDIUM))
        };
        until(|| q.putting() == 1);
        let patient = blocked_putter(&q, 3);
        assert_eq!(waiting.join().unwrap(), Err(PutTimeoutError::Timeout(2)));
        assert_eq!((q.len(), q.putting()), (1, 1));
        assert_eq!(q.get(), Ok(1));
        assert_eq!(patient.join().unwrap(), Ok(()));
        assert_eq!(q.get(), Ok(3));
        assert_eq!(q.unfinished_tasks(), 2, "the timed-out put never counted");
        q.put(4).unwrap();
        assert_eq!(q.get(), Ok(4));
    });
}

/// A killed putter's item was never stored: it is dropped once, with the putter.
#[test]
fn a_killed_putter_drops_its_item_which_never_enters_the_queue() {
    rt().block_on(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let q = Queue::bounded(1);
        q.put(Tracked {
            id: 0,
            drops: drops.clone(),
        })
        .unwrap();
        let putter = {
            let (q, drops) = (q.clone(), drops.clone());
            grove::spawn(move || q.put(Tracked { id: 1, drops }).map_err(|_| ()))
        };
        until(|| q.putting() == 1);
        putter.kill();
        assert!(putter.join().unwrap_err().is_killed());
        assert_eq!(drops.load(Ordering::SeqCst), 1, "the killed putter's item");
        assert_eq!(q.putting(), 0);
        let item = q.get().unwrap();
        assert_eq!(item.id, 0);
        drop(item);
        assert_eq!(q.try_get().map(|t| t.id), Err(TryGetError::Empty));
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    });
}

/// The same for a putter unwound by a `Timeout` scope.
#[test]
fn a_putter_interrupted_by_a_timeout_scope_drops_its_item_once() {
    rt().block_on(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let q = Queue::bounded(1);
        q.put(Tracked {
            id: 0,
            drops: drops.clone(),
        })
        .unwrap();
        let r = grove::with_timeout(SHORT, || {
            q.put(Tracked {
                id: 1,
                drops: drops.clone(),
            })
            .is_ok()
        });
        assert!(r.is_err());
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert_eq!((q.len(), q.putting()), (1, 0));
        assert_eq!(q.get().map(|t| t.id).ok(), Some(0));
    });
}

/// Putters and getters racing their deadlines: every item ends up exactly once either
/// received or given back to its putter (or still queued) — never both, never lost.
#[test]
fn racing_deadlines_never_lose_or_duplicate_an_item() {
    rt().block_on(|| {
        let q = Queue::bounded(2);
        let received = Arc::new(Mutex::new(Vec::new()));
        let returned = Arc::new(Mutex::new(Vec::new()));
        let mut hs = Vec::new();
        for p in 0..4u64 {
            let (q, returned) = (q.clone(), returned.clone());
            hs.push(grove::spawn(move || {
                for i in 0..300 {
                    let item = p * 1000 + i;
                    let timeout = Duration::from_micros(50 * (i % 5));
                    if let Err(e) = q.put_timeout(item, timeout) {
                        returned.lock().unwrap().push(e.into_inner());
                    }
                }
            }));
        }
        for _ in 0..3 {
            let (q, received) = (q.clone(), received.clone());
            hs.push(grove::spawn(move || {
                for i in 0..400u64 {
                    let timeout = Duration::from_micros(50 * (i % 7));
                    if let Ok(item) = q.get_timeout(timeout) {
                        received.lock().unwrap().push(item);
                    }
                }
            }));
        }
        for h in hs {
            h.join().unwrap();
        }
        let mut all: Vec<u64> = std::iter::from_fn(|| q.try_get().ok()).collect();
        all.extend(received.lock().unwrap().iter());
        all.extend(returned.lock().unwrap().iter());
        let distinct: HashSet<u64> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len(), "an item was duplicated");
        assert_eq!(all.len(), 4 * 300, "an item was lost");
        assert_eq!((q.getting(), q.putting()), (0, 0));
    });
}

// ---- across workers and OS threads ------------------------------------------------

/// Producers and consumers spread over the workers: every item is received exactly
/// once, and each consumer sees each producer's items in the order they were put.
#[test]
fn cross_worker_producers_and_consumers_account_for_every_item() {
    const PRODUCERS: usize = 6;
    const PER_PRODUCER: usize = 2_000;
    let rt = grove::Runtime::builder().workers(4).build().unwrap();
    let per_consumer = rt.block_on(|| {
        let q = Queue::bounded(16);
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let q = q.clone();
                grove::spawn(move || {
                    for seq in 0..PER_PRODUCER {
                        q.put((p, seq)).unwrap();
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..5)
            .map(|_| {
                let q = q.clone();
                grove::spawn(move || q.iter().collect::<Vec<_>>())
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        q.close();
        consumers
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect::<Vec<_>>()
    });
    check_accounting(&per_consumer, PRODUCERS, PER_PRODUCER);
}

/// Each producer's items were all received once, in order within each consumer.
fn check_accounting(per_consumer: &[Vec<(usize, usize)>], producers: usize, per: usize) {
    let mut seen = vec![vec![false; per]; producers];
    for items in per_consumer {
        let mut last = vec![None; producers];
        for &(p, seq) in items {
            assert!(!seen[p][seq], "item {p}/{seq} received twice");
            seen[p][seq] = true;
            assert!(last[p] < Some(seq), "producer {p}'s order broken");
            last[p] = Some(seq);
        }
    }
    assert!(
        seen.iter().flatten().all(|&s| s),
        "an item was never received"
    );
}

#[test]
fn os_thread_producers_wake_greenlet_consumers() {
    const PER_THREAD: usize = 1_000;
    let rt = rt();
    let q = Queue::bounded(8);
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let q = q.clone();
            rt.spawn(move || q.iter().collect::<Vec<_>>())
        })
        .collect();
    let threads: Vec<_> = (0..3)
        .map(|p| {
            let q = q.clone();
            std::thread::spawn(move || {
                for seq in 0..PER_THREAD {
                    q.put((p, seq)).unwrap(); // blocks the thread while full
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    q.close();
    let per_consumer: Vec<_> = consumers.into_iter().map(|c| c.join().unwrap()).collect();
    check_accounting(&per_consumer, 3, PER_THREAD);
}

#[test]
fn a_plain_thread_can_get_and_put_blocking_the_thread() {
    let rt = rt();
    let requests = Queue::new();
    let replies = Queue::bounded(1);
    let server = {
        let (requests, replies) = (requests.clone(), replies.clone());
        rt.spawn(move || {
            for n in &requests {
                replies.put(n * 2).unwrap();
            }
        })
    };
    let client = std::thread::spawn(move || {
        let mut sum = 0;
        for n in 0..100 {
            requests.put(n).unwrap();
            sum += replies.get_timeout(Duration::from_secs(30)).unwrap();
        }
        requests.close();
        sum
    });
    assert_eq!(client.join().unwrap(), 2 * (0..100).sum::<i32>());
    server.join().unwrap();
}

// ---- construction and introspection ------------------------------------------------

#[test]
#[should_panic(expected = "Queue::bounded(0)")]
fn a_bounded_queue_of_capacity_zero_is_refused() {
    let _q: Queue<i32> = Queue::bounded(0);
}

#[test]
fn len_capacity_and_debug_describe_the_queue() {
    let q = Queue::bounded(3);
    assert_eq!(q.capacity(), Some(3));
    assert_eq!(Queue::<i32>::new().capacity(), None);
    q.put(1).unwrap();
    assert_eq!((q.len(), q.is_empty(), q.is_full()), (1, false, false));
    let debug = format!("{q:?}");
    assert!(
        debug.contains("len: 1") && debug.contains("capacity: 3"),
        "{debug}"
    );
    assert_eq!(Closed(5).to_string(), "the queue is closed");
    assert_eq!(format!("{:?}", TryPutError::Full(5)), "Full(..)");
}

/// Runs `scenario` in a child process (`test` names the calling test) under a watchdog:
/// a scenario that hangs (a deadlock on the queue's lock) makes the child exit with a
/// failure instead of hanging the suite.
fn in_child_with_watchdog(test: &str, scenario: impl FnOnce()) {
    if common::is_child() {
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_secs(30));
            eprintln!("watchdog: the scenario hung");
            std::process::exit(3);
        });
        scenario();
        return;
    }
    let out = common::run_child(test, &[]);
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An item whose `Clone` uses the queue it sits in, and may wait for a gate first.
struct Reentrant {
    copies: Arc<AtomicUsize>,
    gate: Option<grove::sync::Event>,
    /// Copies made so far when this one was made (0: the original).
    nth: usize,
}

static REENTRANT: std::sync::OnceLock<Queue<Reentrant>> = std::sync::OnceLock::new();

impl Clone for Reentrant {
    fn clone(&self) -> Self {
        if let Some(gate) = &self.gate {
            gate.wait();
        }
        // Needs the queue's lock: a deadlock if the peek holds it.
        let q = REENTRANT.get().unwrap();
        assert!(!q.is_closed());
        let _ = q.len();
        Reentrant {
            copies: self.copies.clone(),
            gate: None,
            nth: self.copies.fetch_add(1, Ordering::SeqCst) + 1,
        }
    }
}

/// gevent's `peek` hands out the item itself; grove hands out a copy, made with the
/// queue unlocked: a `Clone` that uses the queue does not deadlock.
#[test]
fn peek_clones_outside_the_queue_lock() {
    in_child_with_watchdog("peek_clones_outside_the_queue_lock", || {
        let q = REENTRANT.get_or_init(Queue::new).clone();
        let copies = Arc::new(AtomicUsize::new(0));
        q.put(Reentrant {
            copies: copies.clone(),
            gate: None,
            nth: 0,
        })
        .unwrap();
        assert_eq!(q.peek().unwrap().nth, 1);
        assert_eq!(q.try_peek().unwrap().nth, 2);
        assert_eq!(q.peek_timeout(LONG).unwrap().nth, 3);
        // The original is still the one a get takes.
        assert_eq!(q.try_get().unwrap().nth, 0);
        assert!(q.is_empty());
    });
}

/// While a peek's `Clone` is parked (waiting for an event), other greenlets of the same
/// worker put to and get from the queue: the clone holds no lock of the queue's.
#[test]
fn a_parked_clone_in_peek_blocks_no_other_put_or_get() {
    in_child_with_watchdog("a_parked_clone_in_peek_blocks_no_other_put_or_get", || {
        let q = REENTRANT.get_or_init(Queue::new).clone();
        let copies = Arc::new(AtomicUsize::new(0));
        let gate = grove::sync::Event::new();
        q.put(Reentrant {
            copies: copies.clone(),
            gate: Some(gate.clone()),
            nth: 0,
        })
        .unwrap();
        rt1().block_on(move || {
            let peeker = {
                let q = q.clone();
                grove::spawn(move || q.peek().unwrap().nth)
            };
            // One worker: the peeker runs until its clone parks on the gate.
            grove::yield_now();
            let copies2 = copies.clone();
            let other = {
                let q = q.clone();
                grove::spawn(move || {
                    q.put(Reentrant {
                        copies: copies2,
                        gate: None,
                        nth: 100,
                    })
                    .unwrap();
                    q.len()
                })
            };
            assert_eq!(other.join().unwrap(), 2);
            gate.set();
            assert_eq!(peeker.join().unwrap(), 1);
            assert_eq!(q.try_get().unwrap().nth, 0);
            assert_eq!(q.try_get().unwrap().nth, 100);
        });
    });
}

/// A get that takes an item a peek on another thread is copying waits for the copy and
/// receives the original: every item is taken exactly once, and never copied by a get.
#[test]
fn a_get_racing_a_peeks_copy_takes_the_original() {
    let q: Queue<Tagged> = Queue::new();
    let copies = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(std::sync::Barrier::new(2));
    for round in 0..50 {
        q.put(Tagged {
            round,
            copies: copies.clone(),
            started: Some(started.clone()),
            copy: false,
        })
        .unwrap();
        let peeker = {
            let q = q.clone();
            std::thread::spawn(move || q.peek().unwrap())
        };
        started.wait(); // the peek's clone has begun, with the queue unlocked
        let got = q.get().unwrap();
        assert!(!got.copy, "a get received a copy");
        assert_eq!(got.round, round);
        let peeked = peeker.join().unwrap();
        assert!(peeked.copy);
        assert_eq!(peeked.round, round);
        assert!(q.is_empty());
    }
    assert_eq!(copies.load(Ordering::SeqCst), 50);
}

/// An item that says whether it is a copy, and lets a test see a clone begin.
struct Tagged {
    round: usize,
    copies: Arc<AtomicUsize>,
    started: Option<Arc<std::sync::Barrier>>,
    copy: bool,
}

impl Clone for Tagged {
    fn clone(&self) -> Self {
        if let Some(b) = &self.started {
            b.wait();
        }
        self.copies.fetch_add(1, Ordering::SeqCst);
        Tagged {
            round: self.round,
            copies: self.copies.clone(),
            started: None,
            copy: true,
        }
    }
}

/// An `Ord` that panics on NaN, as `partial_cmp(..).unwrap()` does.
#[derive(Debug, PartialEq)]
struct Strict(f64);

impl Eq for Strict {}

impl PartialOrd for Strict {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Strict {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.partial_cmp(&other.0).expect("NaN compared")
    }
}

/// A `PriorityQueue`'s `Ord` is the one piece of user code run under the queue's lock.
/// If it panics, the put that ran it panics, but the item is stored all the same and
/// counted for `task_done`/`join`, and the queue stays usable.
#[test]
fn a_panicking_ord_leaves_the_priority_queue_consistent() {
    let q = PriorityQueue::new();
    q.put(Strict(1.0)).unwrap();
    let put = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| q.put(Strict(f64::NAN))));
    assert!(put.is_err(), "comparing with NaN panics");
    assert_eq!(q.len(), 2);
    assert_eq!(q.unfinished_tasks(), 2);
    let mut got = 0;
    while q.try_get().is_ok() {
        q.task_done().unwrap();
        got += 1;
    }
    assert_eq!(got, 2);
    assert!(q.join_timeout(Duration::ZERO));
}

/// A regression test for a lost wake-up in the scheduler's state word (`state.rs`, "Every
/// wake publishes"): a consumer woken while already queued to run could miss the wait
/// list's flag and park for good, which showed here as a consumer parked forever in `get`
/// after `close`, once every 10k–1M rounds on 2 workers. Rounds of 1–3 producers and 1–3
/// consumers on a small bounded queue, four at a time, for a few seconds; every item is
/// counted. A stuck round fails the test with a run-info dump instead of hanging it.
#[test]
fn a_closed_queue_wakes_every_consumer_under_stress() {
    use std::sync::atomic::AtomicU64;

    fn round(seed: u64) {
        let mut rng = common::Rng::new(seed);
        let (producers, consumers, per) = (rng.range(1, 3), rng.range(1, 3), rng.range(1, 200));
        let q: Arc<Queue<u64>> = Arc::new(Queue::bounded(rng.range(1, 7) as usize));
        let ps: Vec<_> = (0..producers)
            .map(|_| {
                let q = q.clone();
                grove::spawn(move || (0..per).for_each(|i| q.put(i).unwrap()))
            })
            .collect();
        let cs: Vec<_> = (0..consumers)
            .map(|_| {
                let q = q.clone();
                grove::spawn(move || std::iter::from_fn(|| q.get().ok()).count() as u64)
            })
            .collect();
        ps.into_iter().for_each(|p| p.join().unwrap());
        q.close();
        let got: u64 = cs.into_iter().map(|c| c.join().unwrap()).sum();
        assert_eq!(got, producers * per, "items lost or doubled");
    }

    let rt = Arc::new(rt());
    let rounds = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    {
        let (rt, rounds) = (rt.clone(), rounds.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(4);
            rt.block_on(move || {
                let mut seed = 0x9E37_79B9_7F4A_7C15u64;
                while Instant::now() < deadline {
                    let batch: Vec<_> = (0..4)
                        .map(|_| {
                            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                            let s = seed;
                            grove::spawn(move || round(s))
                        })
                        .collect();
                    for h in batch {
                        h.join().unwrap();
                        rounds.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            let _ = done_tx.send(());
        });
    }
    // Progress, not time, decides: a round takes microseconds; none for 10 s is a hang.
    let mut seen = 0;
    loop {
        match done_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(()) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let now = rounds.load(Ordering::Relaxed);
                assert!(
                    now != seen,
                    "no round finished in 10 s (after {now}): a lost wake-up?\n{}",
                    rt.dump()
                );
                seen = now;
            }
            Err(e) => panic!("the rounds' thread failed: {e}"),
        }
    }
    assert!(rounds.load(Ordering::Relaxed) > 0);
}
