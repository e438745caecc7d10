//! A burst of CPU-bound greenlets spawned from one greenlet runs on every worker,
//! and a started greenlet never leaves its home worker.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A burst of CPU-bound greenlets spawned from one greenlet: each spins, never
/// yielding, until two of them have started, so no single worker can run the burst
/// alone: it only finishes if the idle worker was woken and stole. Repeated, because a
/// lost wake-up would hang one round (nextest's timeout turns that into a failure).
#[test]
fn burst_spawned_from_one_greenlet_runs_on_both_workers() {
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    for _ in 0..50 {
        let on_both = rt.block_on(|| {
            let started = Arc::new(AtomicUsize::new(0));
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    let started = started.clone();
                    grove::spawn(move || {
                        started.fetch_add(1, Ordering::SeqCst);
                        while started.load(Ordering::SeqCst) < 2 {
                            std::hint::spin_loop();
                        }
                        grove::greenlet::worker_index().unwrap()
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .collect::<HashSet<_>>()
        });
        assert_eq!(on_both, HashSet::from([0, 1]));
    }
    let stolen: u64 = rt.handle().worker_metrics().iter().map(|m| m.stolen).sum();
    assert!(stolen >= 1);
}

#[test]
fn started_greenlet_stays_on_its_home_worker() {
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let moved = rt.block_on(|| {
        let hs: Vec<_> = (0..100)
            .map(|_| {
                grove::spawn(|| {
                    let home = grove::greenlet::worker_index().unwrap();
                    let mut moved = false;
                    for _ in 0..100 {
                        grove::yield_now();
                        grove::sleep(std::time::Duration::from_micros(50));
                        moved |= grove::greenlet::worker_index().unwrap() != home;
                        moved |= grove::current().worker() != Some(home);
                    }
                    moved
                })
            })
            .collect();
        hs.into_iter().any(|h| h.join().unwrap())
    });
    assert!(!moved);
}
