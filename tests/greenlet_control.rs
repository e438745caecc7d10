//! Greenlet control over one or many greenlets: `on_finish` (link/unlink), `joinall`,
//! `iwait`, `wait_any`, `killall`, `spawn_later`.
//!
//! Follows gevent's `test__greenlet.py` (TestLink: link to a finished greenlet runs at
//! once, many links, unlink; TestJoinAll / TestKillAll: joinall with timeout and count,
//! killall of running and unstarted greenlets; spawn_later / TestStuff's `spawn_later`
//! kill-before-start), and `test__joinall.py` (joinall over greenlets that already
//! finished and ones still running; its duplicate-entry case cannot arise in Rust, where
//! each handle is unique). Plus cross-worker, OS-thread and shutdown cases.
//!
//! Timing-free where possible: order is forced with `Event`s and counters; where time
//! matters (timeouts, delays) the bounds are generous.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use grove::greenlet::GreenletBuilder;

mod common;

fn rt(workers: usize) -> grove::Runtime {
    grove::Runtime::builder().workers(workers).build().unwrap()
}

struct CountOnDrop(Arc<AtomicUsize>);

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Spawns `n` greenlets, each waiting for its own gate and then returning its index.
fn gated(n: usize) -> (Vec<grove::sync::Event>, Vec<grove::JoinHandle<usize>>) {
    let gates: Vec<_> = (0..n).map(|_| grove::sync::Event::new()).collect();
    let hs = gates
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let g = g.clone();
            grove::spawn(move || {
                g.wait();
                i
            })
        })
        .collect();
    (gates, hs)
}

// ---- on_finish (gevent's link) ----

#[test]
fn on_finish_runs_once_after_finish_and_off_the_greenlets_stack() {
    rt(2).block_on(|| {
        let gate = grove::sync::Event::new();
        let g2 = gate.clone();
        let h = grove::spawn(move || {
            g2.wait();
            7
        });
        let target = h.greenlet();
        let (tx, rx) = mpsc::channel();
        h.on_finish(move || {
            // In the hub: no greenlet is current, and the target is already finished.
            let current = grove::greenlet::try_current().map(|g| g.id());
            tx.send((current, target.is_finished())).unwrap();
        });
        gate.set();
        assert_eq!(h.join().unwrap(), 7);
        let (current, finished) = rx.recv().unwrap();
        assert_eq!(current, None, "callback ran on a greenlet's stack");
        assert!(finished);
        assert!(rx.try_recv().is_err(), "callback ran twice");
    });
}

#[test]
fn on_finish_of_a_finished_greenlet_runs_at_once_on_the_caller() {
    rt(1).block_on(|| {
        let h = grove::spawn(|| ());
        while !h.is_finished() {
            grove::yield_now();
        }
        let me = grove::current().id();
        let ran_on = Arc::new(Mutex::new(None));
        let r2 = ran_on.clone();
        let id = h.on_finish(move || {
            *r2.lock().unwrap() = grove::greenlet::try_current().map(|g| g.id())
        });
        assert_eq!(*ran_on.lock().unwrap(), Some(me));
        assert!(!h.unlink(id), "a callback that ran cannot be unlinked");
    });
}

#[test]
fn many_links_each_run_once_and_unlink_removes_one() {
    rt(2).block_on(|| {
        let (gates, hs) = gated(1);
        let h = &hs[0];
        let calls = Arc::new(AtomicUsize::new(0));
        let ids: Vec<_> = (0..100)
            .map(|_| {
                let c = calls.clone();
                h.on_finish(move || {
                    c.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        assert!(h.unlink(ids[10]));
        assert!(!h.unlink(ids[10]), "unlinked twice");
        // Links added from other greenlets (and other workers) count too.
        let adders: Vec<_> = (0..20)
            .map(|_| {
                let (g, c) = (h.greenlet(), calls.clone());
                grove::spawn(move || {
                    g.on_finish(move || {
                        c.fetch_add(1, Ordering::SeqCst);
                    });
                })
            })
            .collect();
        for a in adders {
            a.join().unwrap();
        }
        gates[0].set();
        assert!(hs[0].wait_timeout(Duration::from_secs(30)));
        // Links fire right after `is_finished` turns true; wait for the hub to get there.
        while calls.load(Ordering::SeqCst) < 119 {
            grove::yield_now();
        }
        assert!(!h.unlink(ids[0]));
        assert_eq!(calls.load(Ordering::SeqCst), 119);
    });
}

#[test]
fn on_finish_fires_for_panicked_killed_and_never_started_greenlets() {
    rt(2).block_on(|| {
        let fired = Arc::new(AtomicUsize::new(0));
        let link = |h: &grove::JoinHandle<()>| {
            let f = fired.clone();
            h.on_finish(move || {
                f.fetch_add(1, Ordering::SeqCst);
            });
        };
        let panicked = grove::spawn(|| panic!("boom"));
        link(&panicked);
        let parked = grove::spawn(|| loop {
            grove::greenlet::park();
        });
        link(&parked);
        let unstarted = grove::spawn_later(Duration::from_secs(3600), || ());
        link(&unstarted);
        parked.kill();
        unstarted.kill();
        assert!(panicked.join().unwrap_err().is_panic());
        assert!(parked.join().unwrap_err().is_killed());
        assert!(unstarted.join().unwrap_err().is_killed());
        while fired.load(Ordering::SeqCst) < 3 {
            grove::yield_now();
        }
    });
}

#[test]
fn a_panicking_callback_is_contained_and_later_callbacks_still_run() {
    let rt = rt(1);
    let (tx, rx) = mpsc::channel();
    rt.block_on(move || {
        let h = grove::spawn(grove::yield_now);
        h.on_finish(|| panic!("callback bug"));
        h.on_finish(move || tx.send(()).unwrap());
        h.join().unwrap();
    });
    rx.recv_timeout(Duration::from_secs(30)).unwrap();
    // The worker survived its callback's panic.
    assert_eq!(rt.block_on(|| 1 + 1), 2);
}

#[test]
fn many_observers_wait_on_one_greenlet_at_once() {
    // The owner's joiner slot holds one waker; every other wait must not displace it.
    rt(4).block_on(|| {
        let (gates, mut hs) = gated(1);
        let target = Arc::new(hs.pop().unwrap());
        let waiters: Vec<_> = (0..30)
            .map(|i| {
                let t = target.clone();
                grove::spawn(move || match i % 3 {
                    0 => t.greenlet().wait(),
                    1 => assert!(t.wait_timeout(Duration::from_secs(60))),
                    _ => assert!(t.greenlet().wait_timeout(Duration::from_secs(60))),
                })
            })
            .collect();
        // Let every waiter get parked on the target.
        for _ in 0..100 {
            grove::yield_now();
        }
        gates[0].set();
        for w in waiters {
            w.join().unwrap();
        }
        let target = Arc::try_unwrap(target).unwrap();
        assert_eq!(target.join().unwrap(), 0);
    });
}

#[test]
fn on_finish_and_joinall_from_a_plain_os_thread() {
    let rt = rt(2);
    let gate = grove::sync::Event::new();
    let g2 = gate.clone();
    let hs: Vec<_> = (0..5)
        .map(|i| {
            let g = g2.clone();
            rt.spawn(move || {
                g.wait();
                i
            })
        })
        .collect();
    let (tx, rx) = mpsc::channel();
    hs[3].on_finish(move || tx.send(()).unwrap());
    gate.set();
    let mut done = grove::joinall(&hs);
    done.sort_unstable();
    assert_eq!(done, [0, 1, 2, 3, 4]);
    rx.recv_timeout(Duration::from_secs(30)).unwrap();
}

// ---- joinall (test__joinall.py, TestJoinAll) ----

#[test]
fn joinall_waits_for_finished_and_running_greenlets() {
    rt(2).block_on(|| {
        let done_already = grove::spawn(|| 0usize);
        while !done_already.is_finished() {
            grove::yield_now();
        }
        let (gates, mut hs) = gated(3);
        hs.insert(0, done_already);
        for g in &gates {
            g.set();
        }
        let mut done = grove::joinall(&hs);
        assert_eq!(done[0], 0, "an already-finished greenlet comes first");
        done.sort_unstable();
        assert_eq!(done, [0, 1, 2, 3]);
        let values: Vec<usize> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(values, [0, 0, 1, 2]);
    });
}

#[test]
fn joinall_with_count_returns_after_that_many_in_completion_order() {
    rt(2).block_on(|| {
        let (gates, hs) = gated(4);
        gates[2].set();
        gates[0].set();
        // Only 2 and 0 can finish; count = 2 returns once both have.
        let mut done = grove::joinall_count(&hs, 2);
        done.sort_unstable();
        assert_eq!(done, [0, 2]);
        assert!(!hs[1].is_finished() && !hs[3].is_finished());
        assert_eq!(grove::joinall_count(&hs, 0), Vec::<usize>::new());
        gates[1].set();
        gates[3].set();
        assert_eq!(grove::joinall(&hs).len(), 4);
    });
}

#[test]
fn joinall_with_timeout_returns_the_finished_subset() {
    rt(2).block_on(|| {
        let (gates, hs) = gated(3);
        gates[1].set();
        let t0 = Instant::now();
        let done = grove::joinall_timeout(&hs, Duration::from_millis(50));
        assert!(t0.elapsed() >= Duration::from_millis(50));
        assert_eq!(done, [1]);
        // The others keep running and can be joined later.
        gates[0].set();
        gates[2].set();
        assert_eq!(
            grove::joinall_timeout(&hs, Duration::from_secs(30)).len(),
            3
        );
    });
}

// ---- iwait / wait_any ----

#[test]
fn iwait_yields_indices_in_completion_order() {
    rt(4).block_on(|| {
        let (gates, hs) = gated(5);
        let order = [3, 0, 4, 1, 2];
        let mut it = grove::iwait(&hs);
        assert_eq!(it.remaining(), 5);
        for &i in &order {
            // Release exactly one at a time: the next index out must be that one.
            gates[i].set();
            assert_eq!(it.next(), Some(i));
        }
        assert_eq!(it.next(), None);
        assert_eq!(it.remaining(), 0);
    });
}

#[test]
fn iwait_timeout_stops_yielding_at_the_deadline() {
    rt(2).block_on(|| {
        let (gates, hs) = gated(3);
        gates[2].set();
        let got: Vec<usize> = grove::iwait_timeout(&hs, Duration::from_millis(50)).collect();
        assert_eq!(got, [2]);
        for g in &gates {
            g.set();
        }
    });
}

#[test]
fn a_waiter_killed_mid_iwait_leaves_the_targets_untouched() {
    rt(2).block_on(|| {
        let (gates, hs) = gated(3);
        let hs = Arc::new(hs);
        let (h2, entered) = (hs.clone(), grove::sync::Event::new());
        let e2 = entered.clone();
        let waiter = grove::spawn(move || {
            let mut it = grove::iwait(&h2);
            e2.set();
            it.next()
        });
        entered.wait();
        waiter.kill();
        assert!(waiter.join().unwrap_err().is_killed());
        // The targets finish normally and can still be waited for.
        for g in &gates {
            g.set();
        }
        assert_eq!(
            grove::joinall_timeout(&hs, Duration::from_secs(30)).len(),
            3
        );
    });
}

#[test]
fn wait_any_returns_the_first_to_finish() {
    rt(2).block_on(|| {
        let (gates, hs) = gated(4);
        gates[2].set();
        assert_eq!(grove::wait_any(&hs), Some(2));
        assert_eq!(grove::wait_any::<()>(&[]), None);
        for g in &gates {
            g.set();
        }
    });
}

// ---- killall (TestKillAll) ----

#[test]
fn killall_kills_running_parked_and_unstarted_greenlets() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d2 = drops.clone();
    rt(2).block_on(move || {
        let hs: Vec<_> = (0..20)
            .map(|i| {
                let guard = CountOnDrop(d2.clone());
                grove::spawn(move || {
                    let _g = guard;
                    if i % 2 == 0 {
                        loop {
                            grove::greenlet::park();
                        }
                    } else {
                        grove::sleep(Duration::from_secs(3600));
                    }
                })
            })
            .collect();
        // Some have not even started (we have not yielded since spawning).
        grove::killall(&hs);
        assert!(hs.iter().all(grove::JoinHandle::is_finished));
        for h in hs {
            assert!(h.join().unwrap_err().is_killed());
        }
    });
    assert_eq!(drops.load(Ordering::SeqCst), 20, "every destructor ran");
}

#[test]
fn killall_with_timeout_reports_a_greenlet_still_unwinding() {
    rt(2).block_on(|| {
        /// Blocks its greenlet's unwind until released (no interrupt reaches a greenlet
        /// that is already unwinding, so this wait runs to completion).
        struct SlowDrop(grove::sync::Event);
        impl Drop for SlowDrop {
            fn drop(&mut self) {
                self.0.wait();
            }
        }
        let (release, started) = (grove::sync::Event::new(), grove::sync::Event::new());
        let (r2, s2) = (release.clone(), started.clone());
        let slow = grove::spawn(move || {
            let _d = SlowDrop(r2);
            s2.set();
            loop {
                grove::greenlet::park();
            }
        });
        let quick = grove::spawn(|| grove::sleep(Duration::from_secs(3600)));
        started.wait();
        let hs = [slow, quick];
        assert!(!grove::killall_timeout(&hs, Duration::from_millis(50)));
        assert!(hs[1].is_finished() && !hs[0].is_finished());
        release.set();
        assert!(grove::killall_timeout(&hs, Duration::from_secs(30)));
        for h in hs {
            assert!(h.join().unwrap_err().is_killed());
        }
    });
}

#[test]
fn killall_including_the_caller_kills_the_caller_last() {
    rt(2).block_on(|| {
        let reached_end = Arc::new(AtomicBool::new(false));
        let others_finished_first = Arc::new(AtomicBool::new(false));
        let slot: Arc<Mutex<Vec<grove::JoinHandle<()>>>> = Arc::default();
        let (r2, o2, s2) = (
            reached_end.clone(),
            others_finished_first.clone(),
            slot.clone(),
        );
        let go = grove::sync::Event::new();
        let g2 = go.clone();
        let caller = grove::spawn(move || {
            g2.wait();
            let hs = std::mem::take(&mut *s2.lock().unwrap());
            let others: Vec<_> = hs.iter().take(3).map(|h| h.greenlet()).collect();
            struct Check(Vec<grove::Greenlet>, Arc<AtomicBool>);
            impl Drop for Check {
                // Runs as the caller unwinds: by then the others must be finished.
                fn drop(&mut self) {
                    self.1.store(
                        self.0.iter().all(grove::Greenlet::is_finished),
                        Ordering::SeqCst,
                    );
                }
            }
            let _check = Check(others, o2);
            grove::killall(&hs);
            r2.store(true, Ordering::SeqCst);
        });
        let mut hs: Vec<_> = (0..3)
            .map(|_| grove::spawn(|| grove::sleep(Duration::from_secs(3600))))
            .collect();
        let caller_greenlet = caller.greenlet();
        hs.push(caller);
        // The caller's own handle is in the slice it kills: hand the slice over, then go.
        *slot.lock().unwrap() = hs;
        go.set();
        caller_greenlet.wait();
        assert!(
            !reached_end.load(Ordering::SeqCst),
            "the caller was not killed"
        );
        assert!(others_finished_first.load(Ordering::SeqCst));
    });
}

// ---- spawn_later ----

#[test]
fn spawn_later_starts_after_the_delay() {
    rt(2).block_on(|| {
        let t0 = Instant::now();
        let h = grove::spawn_later(Duration::from_millis(50), move || t0.elapsed());
        assert!(!h.is_finished());
        let waited = h.join().unwrap();
        assert!(
            waited >= Duration::from_millis(50),
            "started after {waited:?}"
        );
        // A zero delay spawns at once.
        assert_eq!(grove::spawn_later(Duration::ZERO, || 5).join().unwrap(), 5);
    });
}

#[test]
fn spawn_later_killed_before_it_starts_never_runs() {
    let ran = Arc::new(AtomicBool::new(false));
    let drops = Arc::new(AtomicUsize::new(0));
    let (r2, d2) = (ran.clone(), drops.clone());
    rt(2).block_on(move || {
        let guard = CountOnDrop(d2);
        let h = grove::spawn_later(Duration::from_secs(3600), move || {
            let _g = guard;
            r2.store(true, Ordering::SeqCst);
        });
        let t0 = Instant::now();
        h.kill();
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "kill waited for the delay"
        );
        assert!(h.is_finished());
        assert!(h.join().unwrap_err().is_killed());
    });
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(drops.load(Ordering::SeqCst), 1, "its closure is dropped");
}

#[test]
fn spawn_later_from_an_os_thread_and_killed_from_another_greenlet() {
    let rt = rt(2);
    let h = GreenletBuilder::new().name("later").spawn_later_on(
        rt.handle(),
        Duration::from_millis(20),
        || grove::current().name().map(str::to_owned),
    );
    assert_eq!(h.join().unwrap().as_deref(), Some("later"));

    let h = Arc::new(GreenletBuilder::new().spawn_later_on(
        rt.handle(),
        Duration::from_secs(3600),
        || (),
    ));
    let h2 = h.clone();
    rt.block_on(move || h2.kill());
    let h = Arc::try_unwrap(h).unwrap();
    assert!(h.join().unwrap_err().is_killed());
}

#[test]
fn spawn_later_pending_at_shutdown_resolves_its_join() {
    let rt = rt(2);
    let h = rt.block_on(|| grove::spawn_later(Duration::from_secs(3600), || ()));
    drop(rt);
    assert!(h.join().unwrap_err().is_shutdown());
}

#[test]
fn many_spawn_later_greenlets_all_run_on_workers() {
    // Queued as fresh spawns when due, from the reactor thread.
    rt(2).block_on(|| {
        let hs: Vec<_> = (0..64)
            .map(|_| {
                grove::spawn_later(Duration::from_millis(10), || {
                    for _ in 0..20 {
                        grove::yield_now();
                    }
                    grove::greenlet::worker_index()
                })
            })
            .collect();
        let workers: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(workers.iter().all(Option::is_some));
    });
}
