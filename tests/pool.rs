//! `Group` and `Pool`. Follows gevent's `test__pool.py`: the pool size limit
//! (TestCoroutinePool / PoolBasicTests: `free_count`, `wait_available`, spawn blocking
//! when full — `test_waiting`), `map` keeping order, `imap_unordered`, `join` and `kill`
//! (`test_kill`, `TestJoinEmpty`); and `test__group.py`-style membership (`add`, members
//! leaving when they finish). Plus exact accounting (a high-water mark of concurrently
//! running members never exceeds the size), cross-worker and OS-thread use, and
//! cancellation of a spawner waiting for a slot.
//!
//! Timing-free: order is forced with `Event`s and yields; the only timeouts are ones the
//! test expects to expire.

mod common;

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use grove::{
    pool::{Group, Pool},
    sync::Event,
};

fn rt(workers: usize) -> grove::Runtime {
    grove::Runtime::builder().workers(workers).build().unwrap()
}

/// Counts concurrently running jobs and remembers the most ever seen at once.
#[derive(Clone, Default)]
struct HighWater {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
}

impl HighWater {
    fn enter(&self) -> Exit<'_> {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        Exit(self)
    }
    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

struct Exit<'a>(&'a HighWater);

impl Drop for Exit<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The number of greenlets waiting for a slot, read from `Debug`.
fn waiting(pool: &Pool) -> usize {
    let s = format!("{pool:?}");
    let at = s.find("waiting: ").expect("Pool Debug shows waiting") + "waiting: ".len();
    s[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap()
}

fn yield_until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        grove::yield_now();
    }
}

// ---- the size limit ----

#[test]
fn pool_size_limit_is_exact_across_workers() {
    let hw = HighWater::default();
    let h2 = hw.clone();
    rt(4).block_on(move || {
        let pool = Pool::new(3);
        let go = Event::new();
        // Three gated jobs fill the pool; a fourth cannot start.
        let first: Vec<_> = (0..3)
            .map(|_| {
                let (hw, go) = (h2.clone(), go.clone());
                pool.spawn(move || {
                    let _in = hw.enter();
                    go.wait();
                })
            })
            .collect();
        assert_eq!(pool.free_count(), 0);
        assert!(pool.is_full());
        assert!(pool.try_spawn(|| ()).is_err());
        // A spawner feeds 200 more jobs, blocking while the pool is full.
        let (p2, hw2) = (pool.clone(), h2.clone());
        let feeder = grove::spawn(move || {
            for i in 0..200 {
                let hw = hw2.clone();
                p2.spawn(move || {
                    let _in = hw.enter();
                    for _ in 0..i % 5 {
                        grove::yield_now();
                    }
                });
            }
        });
        yield_until(|| waiting(&pool) == 1);
        yield_until(|| h2.now.load(Ordering::SeqCst) == 3);
        go.set();
        feeder.join().unwrap();
        pool.join();
        for h in first {
            h.join().unwrap();
        }
        assert!(pool.is_empty());
        assert_eq!(pool.free_count(), 3);
    });
    assert_eq!(hw.max(), 3, "the pool ran more (or fewer) than 3 at once");
}

#[test]
fn spawn_blocks_while_full_and_proceeds_when_a_member_finishes() {
    // gevent: test_waiting.
    rt(2).block_on(|| {
        let pool = Pool::new(2);
        let gates = [Event::new(), Event::new()];
        let hs: Vec<_> = gates
            .iter()
            .map(|g| {
                let g = g.clone();
                pool.spawn(move || g.wait())
            })
            .collect();
        let spawned = Event::new();
        let (p2, s2) = (pool.clone(), spawned.clone());
        let blocked = grove::spawn(move || {
            let h = p2.spawn(|| 3);
            s2.set();
            h.join().unwrap()
        });
        yield_until(|| waiting(&pool) == 1);
        assert!(!spawned.is_set(), "spawn did not wait for a slot");
        assert_eq!(pool.len(), 2);
        gates[1].set();
        hs.into_iter().nth(1).unwrap().join().unwrap();
        assert_eq!(blocked.join().unwrap(), 3);
        assert!(spawned.is_set());
        gates[0].set();
        pool.join();
        assert_eq!(pool.free_count(), 2);
    });
}

#[test]
fn membership_and_slots_end_when_a_member_is_seen_finished() {
    rt(2).block_on(|| {
        let pool = Pool::new(4);
        let group = Group::new();
        let gates: Vec<_> = (0..4).map(|_| Event::new()).collect();
        let hs: Vec<_> = gates
            .iter()
            .map(|g| {
                let g = g.clone();
                pool.spawn(move || g.wait())
            })
            .collect();
        for h in &hs {
            group.add(h);
        }
        for (i, (g, h)) in gates.iter().zip(&hs).enumerate() {
            g.set();
            assert!(h.wait_timeout(Duration::from_secs(30)));
            // Exactly one fewer, as soon as the handle says it finished.
            assert_eq!(pool.len(), 3 - i);
            assert_eq!(group.len(), 3 - i);
            assert_eq!(pool.free_count(), i + 1);
        }
    });
}

#[test]
fn try_spawn_gives_the_closure_back_when_full() {
    rt(1).block_on(|| {
        let pool = Pool::new(1);
        let gate = Event::new();
        let g2 = gate.clone();
        let h = pool.spawn(move || g2.wait());
        let full = pool.try_spawn(|| 42).unwrap_err();
        assert_eq!(
            full.to_string(),
            "the pool is full: every slot is taken by a running greenlet"
        );
        let err: &dyn std::error::Error = &full;
        assert!(err.source().is_none());
        assert_eq!(full.into_inner()(), 42, "the closure comes back intact");
        gate.set();
        h.join().unwrap();
        assert_eq!(pool.try_spawn(|| 7).unwrap().join().unwrap(), 7);
    });
}

#[test]
fn free_count_and_wait_available() {
    // gevent: PoolBasicTests.test_free_count, test_wait_available.
    rt(2).block_on(|| {
        let pool = Pool::new(2);
        assert_eq!((pool.size(), pool.free_count()), (2, 2));
        pool.wait_available(); // free at once
        let gates = [Event::new(), Event::new()];
        let hs: Vec<_> = gates
            .iter()
            .map(|g| {
                let g = g.clone();
                pool.spawn(move || g.wait())
            })
            .collect();
        assert_eq!(pool.free_count(), 0);
        assert!(!pool.wait_available_timeout(Duration::from_millis(30)));
        assert_eq!(waiting(&pool), 0, "a timed-out waiter left the line");
        let (p2, avail) = (pool.clone(), Event::new());
        let a2 = avail.clone();
        let waiter = grove::spawn(move || {
            p2.wait_available();
            a2.set();
        });
        yield_until(|| waiting(&pool) == 1);
        gates[0].set();
        waiter.join().unwrap();
        assert!(avail.is_set());
        // `wait_available` takes no slot.
        assert_eq!(pool.free_count(), 1);
        gates[1].set();
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(pool.free_count(), 2);
    });
}

#[test]
#[should_panic(expected = "size must be at least 1")]
fn a_pool_of_size_zero_is_refused() {
    let _ = Pool::new(0);
}

#[test]
fn spawning_outside_a_runtime_panics_with_the_function_name() {
    let err = panic::catch_unwind(|| Pool::new(1).spawn(|| ())).unwrap_err();
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(msg.contains("grove::pool::Pool::spawn"), "{msg}");
    // A refused spawn took no slot.
    let pool = Pool::new(1);
    let _ = panic::catch_unwind(AssertUnwindSafe(|| pool.spawn(|| ())));
    assert_eq!(pool.free_count(), 1);
}

// ---- map / imap_unordered ----

#[test]
fn map_returns_results_in_item_order() {
    let hw = HighWater::default();
    let h2 = hw.clone();
    rt(4).block_on(move || {
        let pool = Pool::new(4);
        // Later items finish first (fewer yields): order must still follow the items.
        let out = pool.map(0..64usize, move |i| {
            let _in = h2.enter();
            for _ in 0..(64 - i) % 7 {
                grove::yield_now();
            }
            i * 10
        });
        assert_eq!(out, (0..64).map(|i| i * 10).collect::<Vec<_>>());
        assert!(pool.is_empty());
        assert_eq!(pool.free_count(), 4);
    });
    assert!(hw.max() <= 4);
}

#[test]
fn map_resumes_a_panic_and_try_map_returns_it() {
    rt(2).block_on(|| {
        let pool = Pool::new(3);
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            pool.map(
                0..10,
                |i| if i == 4 { panic!("item {i} failed") } else { i },
            )
        }));
        let payload = r.unwrap_err();
        assert_eq!(payload.downcast_ref::<String>().unwrap(), "item 4 failed");
        let err = pool
            .try_map(0..10, |i| if i == 2 { panic!("two") } else { i })
            .unwrap_err();
        assert!(err.is_panic(), "{err}");
        // The remaining calls were killed or finished; nothing is left holding slots.
        pool.join();
        assert_eq!(pool.free_count(), 3);
    });
}

#[test]
fn imap_unordered_yields_in_completion_order_with_at_most_size_in_flight() {
    let hw = HighWater::default();
    let (h2, h3) = (hw.clone(), hw.clone());
    rt(4).block_on(move || {
        let pool = Pool::new(3);
        let gates: Arc<Vec<Event>> = Arc::new((0..9).map(|_| Event::new()).collect());
        let g2 = gates.clone();
        let mut it = pool.imap_unordered(0..9usize, move |i| {
            let _in = h2.enter();
            g2[i].wait();
            i
        });
        // Three items are in flight at a time; released in reverse, they come out
        // reversed (each result frees a slot, which the next item takes).
        let mut out = Vec::new();
        for round in 0..3 {
            // Each round's three are all running (parked on their gates) before any ends.
            yield_until(|| h3.now.load(Ordering::SeqCst) == 3);
            for i in (round * 3..round * 3 + 3).rev() {
                gates[i].set();
                out.push(it.next().unwrap().unwrap());
            }
        }
        assert!(it.next().is_none());
        assert_eq!(out, [2, 1, 0, 5, 4, 3, 8, 7, 6]);
    });
    assert_eq!(hw.max(), 3);
}

#[test]
fn imap_unordered_reports_failures_and_keeps_going() {
    rt(2).block_on(|| {
        let pool = Pool::new(2);
        let outcomes: Vec<_> = pool
            .imap_unordered(0..10, |i| if i % 3 == 0 { panic!("bad {i}") } else { i })
            .collect();
        let ok: usize = outcomes.iter().filter_map(|r| r.as_ref().ok()).sum();
        let failed = outcomes.iter().filter(|r| r.is_err()).count();
        assert_eq!((ok, failed), (1 + 2 + 4 + 5 + 7 + 8, 4));
        assert!(outcomes.iter().flatten().count() == 6);
    });
}

#[test]
fn dropping_imap_unordered_early_kills_its_calls_in_flight() {
    rt(2).block_on(|| {
        let pool = Pool::new(4);
        let started = Arc::new(AtomicUsize::new(0));
        let s2 = started.clone();
        let mut it = pool.imap_unordered(0..100, move |i| {
            s2.fetch_add(1, Ordering::SeqCst);
            if i == 0 {
                return i;
            }
            grove::sleep(Duration::from_secs(3600));
            i
        });
        assert_eq!(it.next().unwrap().unwrap(), 0);
        drop(it);
        pool.join();
        assert_eq!(pool.free_count(), 4);
        assert!(
            started.load(Ordering::SeqCst) <= 5,
            "items were taken lazily"
        );
    });
}

// ---- join / kill ----

#[test]
fn join_waits_for_every_member_and_join_timeout_reports_stragglers() {
    // gevent: TestJoinEmpty (join on an empty pool returns at once), test_join.
    rt(2).block_on(|| {
        let pool = Pool::new(5);
        pool.join();
        assert!(pool.join_timeout(Duration::ZERO));
        let gate = Event::new();
        let done = Arc::new(AtomicUsize::new(0));
        for _ in 0..5 {
            let (g, d) = (gate.clone(), done.clone());
            pool.spawn(move || {
                g.wait();
                d.fetch_add(1, Ordering::SeqCst);
            });
        }
        assert!(!pool.join_timeout(Duration::from_millis(30)));
        gate.set();
        pool.join();
        assert_eq!(done.load(Ordering::SeqCst), 5);
        assert!(pool.is_empty());
    });
}

#[test]
fn kill_kills_every_member_and_frees_their_slots() {
    // gevent: test_kill (pool.kill() kills the running greenlets).
    rt(2).block_on(|| {
        let pool = Pool::new(3);
        let hs: Vec<_> = (0..3)
            .map(|_| pool.spawn(|| grove::sleep(Duration::from_secs(3600))))
            .collect();
        // A spawner waiting for a slot gets one once the kill frees them.
        let (p2, spawned) = (pool.clone(), Event::new());
        let s2 = spawned.clone();
        let waiter = grove::spawn(move || {
            p2.spawn(|| ()).join().unwrap();
            s2.set();
        });
        yield_until(|| waiting(&pool) == 1);
        pool.kill();
        for h in hs {
            assert!(h.join().unwrap_err().is_killed());
        }
        waiter.join().unwrap();
        assert!(spawned.is_set());
        pool.join();
        assert_eq!(pool.free_count(), 3);
        assert!(pool.kill_timeout(Duration::ZERO), "nothing left to kill");
    });
}

#[test]
fn a_spawner_killed_while_waiting_leaves_the_pool_consistent() {
    rt(2).block_on(|| {
        let pool = Pool::new(1);
        let gate = Event::new();
        let g2 = gate.clone();
        let member = pool.spawn(move || g2.wait());
        let ran = Arc::new(AtomicUsize::new(0));
        let spawner = |pool: &Pool| {
            let (p, r) = (pool.clone(), ran.clone());
            grove::spawn(move || {
                p.spawn(move || {
                    r.fetch_add(1, Ordering::SeqCst);
                })
                .join()
                .unwrap();
            })
        };
        let a = spawner(&pool);
        yield_until(|| waiting(&pool) == 1);
        let b = spawner(&pool);
        yield_until(|| waiting(&pool) == 2);
        // Killed while queued: it leaves the line.
        a.kill();
        assert!(a.join().unwrap_err().is_killed());
        assert_eq!(waiting(&pool), 1);
        // Timed out while queued: likewise.
        let p3 = pool.clone();
        let timed = grove::spawn(move || {
            grove::with_timeout(Duration::from_millis(20), || p3.spawn(|| ())).is_err()
        });
        assert!(timed.join().unwrap());
        assert_eq!(waiting(&pool), 1);
        gate.set();
        member.join().unwrap();
        b.join().unwrap();
        pool.join();
        assert_eq!(ran.load(Ordering::SeqCst), 1, "only b's job ran");
        assert_eq!((pool.free_count(), waiting(&pool)), (1, 0));
    });
}

#[test]
fn a_spawner_killed_after_a_slot_was_handed_to_it_passes_the_slot_on() {
    rt(1).block_on(|| {
        let pool = Pool::new(1);
        let gate = Event::new();
        let g2 = gate.clone();
        let member = pool.spawn(move || g2.wait());
        let ran = Arc::new(AtomicUsize::new(0));
        let spawner = |pool: &Pool| {
            let (p, r) = (pool.clone(), ran.clone());
            grove::spawn(move || {
                p.spawn(move || {
                    r.fetch_add(1, Ordering::SeqCst);
                });
            })
        };
        let a = spawner(&pool);
        yield_until(|| waiting(&pool) == 1);
        let b = spawner(&pool);
        yield_until(|| waiting(&pool) == 2);
        // The pool's own link (registered first) hands the freed slot to `a`; ours, right
        // after it in the same hub pass, kills `a` before `a` can run.
        let a_greenlet = a.greenlet();
        member.on_finish(move || a_greenlet.kill_nowait());
        gate.set();
        assert!(a.join().unwrap_err().is_killed());
        b.join().unwrap();
        pool.join();
        assert_eq!(
            ran.load(Ordering::SeqCst),
            1,
            "b got the slot a could not use"
        );
        assert_eq!((pool.free_count(), waiting(&pool)), (1, 0));
        member.join().unwrap();
    });
}

#[test]
fn a_member_killing_its_own_pool_is_killed_last() {
    rt(2).block_on(|| {
        let pool = Pool::new(4);
        let others: Vec<_> = (0..3)
            .map(|_| pool.spawn(|| grove::sleep(Duration::from_secs(3600))))
            .collect();
        let p2 = pool.clone();
        let killer = pool.spawn(move || {
            p2.kill();
            "not reached"
        });
        assert!(killer.join().unwrap_err().is_killed());
        for h in others {
            assert!(h.join().unwrap_err().is_killed());
        }
        assert!(pool.is_empty());
    });
}

// ---- Group ----

#[test]
fn group_spawn_add_len_join_and_kill() {
    rt(2).block_on(|| {
        let group = Group::new();
        assert!(group.is_empty());
        let gate = Event::new();
        let hs: Vec<_> = (0..10)
            .map(|i| {
                let g = gate.clone();
                group.spawn(move || {
                    g.wait();
                    i
                })
            })
            .collect();
        let outsider = grove::spawn(|| grove::sleep(Duration::from_secs(3600)));
        group.add(&outsider);
        group.add(&outsider);
        assert_eq!(group.len(), 11);
        assert_eq!(group.greenlets().len(), 11);
        // A clone is the same group.
        let clone = group.clone();
        gate.set();
        let sum: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(sum, 45);
        assert_eq!(clone.len(), 1);
        assert!(!group.join_timeout(Duration::from_millis(20)));
        clone.kill();
        assert!(outsider.join().unwrap_err().is_killed());
        assert!(group.is_empty());
        group.join();
        // Adding a finished greenlet adds nothing.
        let done = grove::spawn(|| ());
        while !done.is_finished() {
            grove::yield_now();
        }
        group.add(&done);
        assert!(group.is_empty());
    });
}

#[test]
fn join_and_len_from_a_plain_os_thread() {
    let rt = rt(2);
    let pool = Pool::new(2);
    let p2 = pool.clone();
    let (tx, rx) = mpsc::channel();
    let gate = Event::new();
    let g2 = gate.clone();
    let feeder = rt.spawn(move || {
        for _ in 0..6 {
            let g = g2.clone();
            p2.spawn(move || g.wait());
        }
        tx.send(()).unwrap();
    });
    // The feeder is stuck behind the full pool; a plain thread sees that and frees it.
    while pool.free_count() != 0 || waiting(&pool) != 1 {
        std::thread::yield_now();
    }
    assert_eq!(pool.len(), 2);
    gate.set();
    rx.recv_timeout(Duration::from_secs(30)).unwrap();
    feeder.join().unwrap();
    pool.join();
    assert_eq!(pool.free_count(), 2);
}

#[test]
fn members_cancelled_by_shutdown_release_the_pool() {
    let pool = Pool::new(2);
    let p2 = pool.clone();
    {
        let rt = rt(2);
        rt.block_on(move || {
            p2.spawn(|| grove::sleep(Duration::from_secs(3600)));
            p2.spawn(|| grove::sleep(Duration::from_secs(3600)));
        });
        assert_eq!(pool.len(), 2);
    }
    assert!(pool.is_empty());
    assert_eq!(pool.free_count(), 2);
    pool.join();
}

/// A result whose `Drop` uses the pool its greenlet belonged to.
struct UsesPool(Pool, Arc<AtomicUsize>);

impl Drop for UsesPool {
    fn drop(&mut self) {
        // Takes the pool's lock: a deadlock if the pool drops this under it.
        let _ = self.0.free_count();
        let _ = self.0.len();
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

/// A detached member's result whose `Drop` uses the same pool works: the pool never
/// drops a member's greenlet under its lock. (With today's scheduler the hub holds its
/// own reference while a member's completion link runs, so the pool's is not the last
/// one and this passed before the fix too; `loom-tests/tests/pool.rs` checks the case
/// where the pool's reference is the last. This guards the rule end to end.) A child
/// process with a watchdog, since the failure is a deadlock.
#[test]
fn a_detached_results_drop_may_use_its_pool() {
    let test = "a_detached_results_drop_may_use_its_pool";
    if !common::is_child() {
        let out = common::run_child(test, &[]);
        assert!(
            out.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(30));
        eprintln!("watchdog: the pool deadlocked");
        std::process::exit(3);
    });
    const N: usize = 200;
    let dropped = Arc::new(AtomicUsize::new(0));
    let d = dropped.clone();
    rt(2).block_on(move || {
        let pool = Pool::new(3);
        for _ in 0..N {
            let (p, d) = (pool.clone(), d.clone());
            // Detached: the pool's reference is the last one to the finished greenlet.
            drop(pool.spawn(move || UsesPool(p, d)));
            // Reads prune members already finished (one path that drops them).
            let _ = pool.len();
        }
        pool.join();
        assert_eq!(pool.free_count(), 3);
        assert!(pool.is_empty());
    });
    assert_eq!(dropped.load(Ordering::SeqCst), N);
}
