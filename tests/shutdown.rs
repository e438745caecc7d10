//! Shutting a runtime down unwinds parked greenlets so their destructors run, drops
//! greenlets that never started, resolves outside joiners, and joins every thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::Latch;
use grove::greenlet::GreenletBuilder;

struct CountOnDrop(Arc<AtomicUsize>);

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn parked_greenlets_run_their_destructors() {
    let drops = Arc::new(AtomicUsize::new(0));
    let parked = Arc::new(AtomicUsize::new(0));
    let all_parked = Latch::new();
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let n = 50;
    for _ in 0..n {
        let guard = CountOnDrop(drops.clone());
        let parked = parked.clone();
        let all_parked = all_parked.clone();
        let h = rt.spawn(move || {
            let _guard = guard;
            if parked.fetch_add(1, Ordering::SeqCst) + 1 == n {
                all_parked.set();
            }
            // Parks forever: nothing will ever wake it.
            loop {
                grove::greenlet::park();
            }
        });
        drop(h);
    }
    all_parked.wait();
    assert_eq!(drops.load(Ordering::SeqCst), 0);
    assert!(rt.shutdown_timeout(Duration::from_secs(30)));
    assert_eq!(drops.load(Ordering::SeqCst), n);
}

#[test]
fn sleeping_greenlets_are_unwound_and_joiners_told() {
    let drops = Arc::new(AtomicUsize::new(0));
    let started = Latch::new();
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    let guard = CountOnDrop(drops.clone());
    let s2 = started.clone();
    let h = rt.spawn(move || {
        let _g = guard;
        s2.set();
        grove::sleep(Duration::from_secs(3600));
        "never"
    });
    started.wait();
    let joiner = std::thread::spawn(move || h.join());
    drop(rt);
    let err = joiner.join().unwrap().unwrap_err();
    assert!(err.is_shutdown(), "{err}");
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

#[test]
fn unstarted_greenlets_are_dropped_without_running() {
    let ran = Arc::new(AtomicUsize::new(0));
    let drops = Arc::new(AtomicUsize::new(0));
    let gate = Latch::new();
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    // Occupy the only worker until after shutdown has begun, so the rest never start.
    let g2 = gate.clone();
    let running = Latch::new();
    let r2 = running.clone();
    let blocker = rt.spawn(move || {
        r2.set();
        g2.wait();
    });
    // The blocker must be on the worker before anything else is queued or shut down.
    running.wait();
    let mut hs = Vec::new();
    for _ in 0..10 {
        let ran = ran.clone();
        let guard = CountOnDrop(drops.clone());
        hs.push(rt.spawn(move || {
            let _g = guard;
            ran.fetch_add(1, Ordering::SeqCst);
        }));
    }
    let handle = rt.handle().clone();
    let stopper = std::thread::spawn(move || rt.shutdown_timeout(Duration::from_secs(30)));
    // Release the worker only once shutdown has begun: its hub then stops before
    // taking any of the queued greenlets.
    while !handle.is_shutdown() {
        std::thread::yield_now();
    }
    gate.set();
    assert!(stopper.join().unwrap());
    blocker.join().unwrap();
    for h in hs {
        let err = h.join().unwrap_err();
        assert!(err.is_shutdown(), "{err}");
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert_eq!(drops.load(Ordering::SeqCst), 10);
}

#[test]
fn dropping_an_idle_runtime_joins_its_threads() {
    for _ in 0..20 {
        let rt = grove::Runtime::builder().workers(2).build().unwrap();
        assert_eq!(rt.block_on(|| 5), 5);
        assert!(rt.shutdown_timeout(Duration::from_secs(30)));
    }
}

#[test]
fn spawn_after_shutdown_resolves_with_an_error() {
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    let handle = rt.handle().clone();
    drop(rt);
    let err = handle.spawn(|| 1).join().unwrap_err();
    assert!(err.is_shutdown(), "{err}");
    let err = GreenletBuilder::new()
        .try_spawn_on(&handle, || 1)
        .unwrap_err();
    assert!(err.to_string().contains("shutting down"), "{err}");
    assert!(
        err.is_shutdown() && !err.is_no_stack() && !err.is_forked_child(),
        "{err:?}"
    );
}
