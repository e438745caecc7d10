//! `Event`. Follows gevent's `test__event.py` (TestEvent: wait returns once set,
//! wait with timeout, set wakes all waiters, clear), plus cross-worker, OS-thread and
//! cancellation-mid-wait cases.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;

fn rt() -> grove::Runtime {
    grove::Runtime::builder().workers(2).build().unwrap()
}

#[test]
fn set_wakes_every_waiter_on_every_worker() {
    let ev = grove::sync::Event::new();
    let woken = Arc::new(AtomicUsize::new(0));
    let (e2, w2) = (ev.clone(), woken.clone());
    rt().block_on(move || {
        let hs: Vec<_> = (0..100)
            .map(|_| {
                let (ev, woken) = (e2.clone(), w2.clone());
                grove::spawn(move || {
                    ev.wait();
                    woken.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();
        // Wait (yielding, not sleeping) until all 100 are parked on the event.
        common::until_waiting(&e2, 100);
        e2.set();
        for h in hs {
            h.join().unwrap();
        }
    });
    assert_eq!(woken.load(Ordering::SeqCst), 100);
    assert!(ev.is_set());
}

#[test]
fn wait_returns_at_once_when_set_and_blocks_again_after_clear() {
    rt().block_on(|| {
        let ev = grove::sync::Event::new();
        ev.set();
        ev.wait();
        assert!(ev.wait_timeout(Duration::ZERO));
        ev.clear();
        assert!(!ev.is_set());
        assert!(!ev.wait_timeout(Duration::from_millis(20)));
    });
}

#[test]
fn set_from_a_plain_os_thread_wakes_a_greenlet() {
    let rt = rt();
    let ev = grove::sync::Event::new();
    let e2 = ev.clone();
    let h = rt.spawn(move || e2.wait());
    std::thread::spawn(move || ev.set()).join().unwrap();
    h.join().unwrap();
}

#[test]
fn a_plain_thread_can_wait_too() {
    let rt = rt();
    let ev = grove::sync::Event::new();
    let e2 = ev.clone();
    let t = std::thread::spawn(move || e2.wait_timeout(Duration::from_secs(30)));
    rt.block_on(move || ev.set());
    assert!(t.join().unwrap());
}

/// A waiter killed or timed out mid-wait leaves the event working for the others.
#[test]
fn cancelled_waiters_leave_the_event_consistent() {
    rt().block_on(|| {
        let ev = grove::sync::Event::new();
        let spawn_waiter = |ev: &grove::sync::Event| {
            let ev = ev.clone();
            grove::spawn(move || ev.wait())
        };
        let killed = spawn_waiter(&ev);
        let patient = spawn_waiter(&ev);
        common::until_waiting(&ev, 2);
        killed.kill();
        assert!(killed.join().unwrap_err().is_killed());
        assert_eq!(common::waiters(&ev), 1, "{ev:?}");
        // The event is unset, so this waiter must time out (and leave the list).
        let ev2 = ev.clone();
        let timed_out =
            grove::spawn(move || grove::with_timeout(Duration::from_millis(10), || ev2.wait()));
        assert!(timed_out.join().unwrap().is_err());
        assert_eq!(common::waiters(&ev), 1, "{ev:?}");
        ev.set();
        patient.join().unwrap();
        assert_eq!(common::waiters(&ev), 0);
    });
}
