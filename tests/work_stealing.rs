//! A burst of CPU-bound greenlets spawned from one greenlet runs on every worker,
//! and a started greenlet never leaves its home worker.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Spins until every greenlet of the burst has started, so no single worker can run
/// them all one after another: the burst can only finish if another worker steals.
#[test]
fn burst_spawned_from_one_greenlet_runs_on_both_workers() {
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let workers = rt.block_on(|| {
        let started = Arc::new(AtomicUsize::new(0));
        let n = 2;
        let hs: Vec<_> = (0..n)
            .map(|_| {
                let started = started.clone();
                grove::spawn(move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    // CPU-bound: never yields until its peer has started too.
                    while started.load(Ordering::SeqCst) < n {
                        std::hint::spin_loop();
                    }
                    grove::worker_index().unwrap()
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<HashSet<_>>()
    });
    assert_eq!(workers, HashSet::from([0, 1]));
}

/// The rendezvous above, repeated: every burst needs a steal to finish, so a lost
/// wake-up of the idle worker would hang here (and nextest would time out).
#[test]
fn every_burst_is_shared_between_workers() {
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
                        grove::worker_index().unwrap()
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
                    let home = grove::worker_index().unwrap();
                    let mut moved = false;
                    for _ in 0..100 {
                        grove::yield_now();
                        grove::sleep(std::time::Duration::from_micros(50));
                        moved |= grove::worker_index().unwrap() != home;
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
