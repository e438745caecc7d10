//! gevent's seed program: five workers sleep a random time, and their results come
//! back in spawn order whatever order they finish in.

use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn results_come_back_in_spawn_order() {
    let finished = Arc::new(Mutex::new(Vec::new()));
    let f2 = finished.clone();
    let results: Vec<u64> = grove::Runtime::builder()
        .workers(2)
        .build()
        .unwrap()
        .block_on(move || {
            // Deliberately reversed delays: the last spawned finishes first.
            let hs: Vec<_> = (1..=5u64)
                .map(|i| {
                    let finished = f2.clone();
                    grove::spawn(move || {
                        grove::sleep(Duration::from_millis(10 * (6 - i)));
                        finished.lock().unwrap().push(i);
                        i * 10
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
    assert_eq!(results, vec![10, 20, 30, 40, 50]);
    let mut order = finished.lock().unwrap().clone();
    assert_eq!(order.len(), 5);
    order.sort();
    assert_eq!(order, vec![1, 2, 3, 4, 5]);
}

#[test]
fn readme_example_sums_sleeping_greenlets() {
    let total: u64 = grove::run(|| {
        let hs: Vec<_> = (1..=5)
            .map(|i| {
                grove::spawn(move || {
                    grove::sleep(Duration::from_millis(10 * i));
                    i
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(total, 15);
}

#[test]
fn sleep_waits_at_least_its_duration() {
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    let elapsed = rt.block_on(|| {
        let t = std::time::Instant::now();
        grove::sleep(Duration::from_millis(30));
        t.elapsed()
    });
    assert!(
        elapsed >= Duration::from_millis(30),
        "woke early: {elapsed:?}"
    );
    // Generous upper bound: this machine is shared and noisy.
    assert!(
        elapsed < Duration::from_secs(5),
        "woke far too late: {elapsed:?}"
    );
}

#[test]
fn sleeping_greenlets_do_not_block_their_worker() {
    // One worker: while 100 greenlets sleep, another greenlet keeps running.
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    let done = rt.block_on(|| {
        let sleepers: Vec<_> = (0..100)
            .map(|_| grove::spawn(|| grove::sleep(Duration::from_millis(50))))
            .collect();
        let busy = grove::spawn(|| {
            let mut n = 0u64;
            for _ in 0..1000 {
                n += 1;
                grove::yield_now();
            }
            n
        });
        let n = busy.join().unwrap();
        for s in sleepers {
            s.join().unwrap();
        }
        n
    });
    assert_eq!(done, 1000);
}
