//! `Lock` and `RLock`. Follows the lock parts of gevent's `test__lock.py` and of the
//! CPython `lock_tests.py` it runs through `test__threading.py` (acquire/release,
//! non-blocking and timed acquire, a lock released by another greenlet, RLock
//! re-entrancy, `release` of an RLock by a non-owner raises), plus mutual exclusion
//! across two workers, FIFO service, cancellation mid-wait and plain OS threads.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grove::sync::{Lock, NotOwner, OverRelease, RLock};

mod common;
use common::{until_waiting, waiters};

fn rt(workers: usize) -> grove::Runtime {
    grove::Runtime::builder().workers(workers).build().unwrap()
}

/// 100 greenlets × 50 increments of a counter that is read, yielded over, then
/// written: without mutual exclusion, updates are lost and `inside` overlaps.
fn hammer(critical: impl Fn(&dyn Fn()) + Clone + Send + 'static) {
    let counter = Arc::new(AtomicUsize::new(0));
    let inside = Arc::new(AtomicBool::new(false));
    let (c2, i2) = (counter.clone(), inside.clone());
    rt(2).block_on(move || {
        let hs: Vec<_> = (0..100)
            .map(|_| {
                let (critical, counter, inside) = (critical.clone(), c2.clone(), i2.clone());
                grove::spawn(move || {
                    for _ in 0..50 {
                        critical(&|| {
                            assert!(!inside.swap(true, Ordering::SeqCst), "two holders");
                            let v = counter.load(Ordering::Relaxed);
                            grove::yield_now(); // the guard is held across a blocking call
                            counter.store(v + 1, Ordering::Relaxed);
                            inside.store(false, Ordering::SeqCst);
                        });
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    assert_eq!(counter.load(Ordering::SeqCst), 100 * 50);
}

#[test]
fn lock_excludes_greenlets_on_two_workers() {
    let lock = Lock::new();
    let l2 = lock.clone();
    hammer(move |body| {
        let _guard = l2.lock();
        body();
    });
    assert!(!lock.is_locked());
    assert_eq!(waiters(&lock), 0);
}

#[test]
fn rlock_excludes_greenlets_on_two_workers() {
    let rlock = RLock::new();
    let r2 = rlock.clone();
    hammer(move |body| {
        let _outer = r2.lock();
        let _inner = r2.lock();
        body();
    });
    assert!(!rlock.is_locked());
}

#[test]
fn try_lock_and_lock_timeout_fail_while_held() {
    rt(2).block_on(|| {
        let lock = Lock::new();
        assert!(!lock.is_locked());
        let guard = lock.lock();
        assert!(lock.is_locked());
        assert!(lock.try_lock().is_none());
        let start = Instant::now();
        assert!(lock.lock_timeout(Duration::from_millis(20)).is_none());
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(waiters(&lock), 0);
        drop(guard);
        assert!(!lock.is_locked());
        assert!(lock.try_lock().is_some());
        assert!(lock.lock_timeout(Duration::from_millis(20)).is_some());
    });
}

/// gevent: a `Lock` (unlike an `RLock`) may be released by another greenlet;
/// releasing an unlocked lock raises.
#[test]
fn a_lock_may_be_released_by_another_greenlet_but_not_twice() {
    rt(2).block_on(|| {
        let lock = Lock::new();
        lock.lock().forget();
        let waiter = {
            let lock = lock.clone();
            grove::spawn(move || lock.lock().forget())
        };
        until_waiting(&lock, 1);
        let other = lock.clone();
        grove::spawn(move || other.release())
            .join()
            .unwrap()
            .unwrap();
        waiter.join().unwrap();
        // The waiter took it and kept it.
        assert!(lock.is_locked());
        assert_eq!(lock.release(), Ok(()));
        assert_eq!(lock.release(), Err(OverRelease));
        assert!(!lock.is_locked());
    });
}

#[test]
fn blocked_lockers_are_served_in_fifo_order() {
    rt(2).block_on(|| {
        let lock = Lock::new();
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = lock.lock();
        let hs: Vec<_> = (0..20)
            .map(|i| {
                let (l, order) = (lock.clone(), order.clone());
                let h = grove::spawn(move || {
                    let _guard = l.lock();
                    order.lock().unwrap().push(i);
                });
                until_waiting(&lock, i + 1);
                h
            })
            .collect();
        drop(held);
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
    });
}

#[test]
fn unlocking_from_a_plain_os_thread_wakes_a_greenlet() {
    let rt = rt(2);
    let lock = Lock::new();
    let guard = lock.lock(); // this test thread holds it
    let l2 = lock.clone();
    let h = rt.spawn(move || l2.lock().forget());
    while waiters(&lock) != 1 {
        std::thread::yield_now();
    }
    drop(guard);
    h.join().unwrap();
    assert!(lock.is_locked());
}

/// gevent / lock_tests: `test_reacquire`, `test_release_unacquired`.
#[test]
fn rlock_is_reentrant_and_each_guard_releases_one_level() {
    rt(2).block_on(|| {
        let rlock = RLock::new();
        let other_can_lock = || {
            let r = rlock.clone();
            grove::spawn(move || r.try_lock().is_some()).join().unwrap()
        };
        let a = rlock.lock();
        let b = rlock
            .try_lock()
            .expect("the owner re-enters without waiting");
        let c = rlock.lock_timeout(Duration::ZERO).expect("re-entry");
        assert!(rlock.is_owned());
        drop(c);
        drop(a); // levels, not particular guards
        assert!(rlock.is_locked());
        assert!(!other_can_lock());
        drop(b);
        assert!(!rlock.is_locked());
        assert!(!rlock.is_owned());
        assert!(other_can_lock());
        // Manual style: a forgotten level is released by hand; one release too many
        // is an error.
        rlock.lock().forget();
        assert_eq!(rlock.release(), Ok(()));
        assert_eq!(rlock.release(), Err(NotOwner));
    });
}

/// gevent / lock_tests: `test_different_thread` (releasing another's RLock raises).
#[test]
fn releasing_an_rlock_from_a_non_owner_is_an_error() {
    let rt = rt(2);
    let rlock = RLock::new();
    let r2 = rlock.clone();
    rt.block_on(move || {
        let _guard = r2.lock();
        let r3 = r2.clone();
        let from_greenlet = grove::spawn(move || (r3.is_owned(), r3.release()));
        assert_eq!(from_greenlet.join().unwrap(), (false, Err(NotOwner)));
        let r4 = r2.clone();
        let from_thread = std::thread::spawn(move || r4.release()).join().unwrap();
        let err = from_thread.unwrap_err();
        assert!(
            err.to_string().contains("another greenlet or thread"),
            "{err}"
        );
        // Still held by us, one level.
        assert!(r2.is_owned());
    });
    assert!(!rlock.is_locked());
}

#[test]
fn an_rlock_held_by_a_plain_thread_blocks_greenlets_until_released() {
    let rt = rt(2);
    let rlock = RLock::new();
    let outer = rlock.lock(); // owned by this test thread
    let inner = rlock.lock();
    assert!(rlock.is_owned());
    let r2 = rlock.clone();
    let h = rt.spawn(move || {
        assert!(r2.try_lock().is_none());
        let _g = r2.lock();
        r2.is_owned()
    });
    while waiters(&rlock) != 1 {
        std::thread::yield_now();
    }
    drop(inner);
    assert!(rlock.is_locked());
    drop(outer);
    assert!(h.join().unwrap(), "the greenlet owned it once woken");
    assert!(!rlock.is_locked());
}

/// An RLock release's wake-up sent to a waiter that is killed before it runs passes to
/// the next one,
/// which then owns it; a timed-out waiter changes nothing.
#[test]
fn cancelled_rlock_waiters_pass_the_lock_on() {
    // One worker: the main greenlet unlocks and kills without the target running in
    // between, so the kill lands after the wake-up.
    rt(1).block_on(|| {
        let rlock = RLock::new();
        let guard = rlock.lock();
        let spawn_locker = || {
            let r = rlock.clone();
            grove::spawn(move || {
                let _g = r.lock();
                r.is_owned()
            })
        };
        let killed = spawn_locker();
        until_waiting(&rlock, 1);
        let next = spawn_locker();
        until_waiting(&rlock, 2);
        let timed_out = {
            let r = rlock.clone();
            grove::spawn(move || grove::with_timeout(Duration::from_millis(10), || drop(r.lock())))
        };
        assert!(timed_out.join().unwrap().is_err());
        assert_eq!(waiters(&rlock), 2);

        drop(guard); // wakes `killed`, which has not run yet
        killed.kill();
        assert!(killed.join().unwrap_err().is_killed());
        assert!(next.join().unwrap());
        assert!(!rlock.is_locked());
        assert_eq!(waiters(&rlock), 0);
        assert!(rlock.try_lock().is_some());
    });
}

/// Barging with a starvation hand-off (Go's `sync.Mutex`): a greenlet that unlocks may
/// lock again at once, ahead of the waiter its unlock woke (no convoy), but a waiter
/// left behind for a millisecond is handed the lock at the next unlock.
#[test]
fn a_starving_waiter_is_handed_the_lock() {
    rt(1).block_on(|| {
        let lock = Lock::new();
        let mut guard = lock.lock();
        let got = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (lock, got) = (lock.clone(), got.clone());
            grove::spawn(move || {
                let _g = lock.lock();
                got.store(true, Ordering::SeqCst);
            })
        };
        until_waiting(&lock, 1);
        drop(guard);
        // The unlock woke the waiter, which has not run: the lock is free to whoever asks.
        guard = lock
            .try_lock()
            .expect("a free lock goes to whoever asks first");
        let mut rounds = 0;
        while !got.load(Ordering::SeqCst) {
            // The waiter runs meanwhile, finds the lock held and waits again at the head;
            // past a millisecond it is starving.
            grove::sleep(Duration::from_millis(2));
            drop(guard);
            // Once the waiter starves, this waits behind it.
            guard = lock.lock();
            rounds += 1;
            assert!(rounds < 1000, "the waiter was never handed the lock");
        }
        drop(guard);
        waiter.join().unwrap();
        assert!(!lock.is_locked());
    });
}
