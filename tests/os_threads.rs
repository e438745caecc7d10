//! Plain OS threads spawn greenlets, join them, and wake parked greenlets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

mod common;
use common::Latch;

#[test]
fn spawn_and_join_from_many_os_threads() {
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let handle = rt.handle().clone();
            std::thread::spawn(move || {
                let hs: Vec<_> = (0..1000u64)
                    .map(|i| handle.spawn(move || t * 1000 + i))
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(total, (0..8000u64).sum());
}

/// A greenlet parks with its waker published; a plain thread wakes it. Ordered with
/// latches, not sleeps.
#[test]
fn os_thread_wakes_a_parked_greenlet() {
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    for _ in 0..200 {
        let slot: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
        let flag = Arc::new(AtomicBool::new(false));
        let published = Latch::new();
        let (s2, f2, p2) = (slot.clone(), flag.clone(), published.clone());
        let h = rt.spawn(move || {
            *s2.lock().unwrap() = Some(grove::greenlet::current_waker());
            p2.set();
            let mut parks = 0;
            while !f2.load(Ordering::SeqCst) {
                grove::greenlet::park();
                parks += 1;
            }
            parks
        });
        published.wait();
        flag.store(true, Ordering::SeqCst);
        slot.lock().unwrap().take().unwrap().wake();
        // At most a couple of parks: one real, maybe one before the flag was set.
        assert!(h.join().unwrap() <= 2);
    }
}

/// Wakes racing with the park itself (before, during and after the switch) are
/// never lost: many rounds with the waker fired from another thread immediately.
#[test]
fn wake_racing_with_park_is_never_lost() {
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let rounds = 20_000;
    let waker_slot: Arc<Mutex<Option<Waker>>> = Arc::new(Mutex::new(None));
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (ws, c2) = (waker_slot.clone(), counter.clone());
    let h = rt.spawn(move || {
        for round in 1..=rounds {
            *ws.lock().unwrap() = Some(grove::greenlet::current_waker());
            while c2.load(Ordering::SeqCst) < round {
                grove::greenlet::park();
            }
        }
    });
    let waker_thread = std::thread::spawn(move || {
        for round in 1..=rounds {
            let w = loop {
                if let Some(w) = waker_slot.lock().unwrap().take() {
                    break w;
                }
                std::thread::yield_now();
            };
            counter.store(round, Ordering::SeqCst);
            w.wake();
        }
    });
    h.join().unwrap();
    waker_thread.join().unwrap();
}

#[test]
fn greenlet_joins_a_greenlet_of_another_worker() {
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let h = rt.spawn(|| (grove::greenlet::worker_index().unwrap(), 21));
    let (w, v) = rt.block_on(move || {
        let (w, v) = h.join().unwrap();
        (w, v * 2)
    });
    assert!(w < 2);
    assert_eq!(v, 42);
}
