//! `Semaphore` and `BoundedSemaphore`. Follows gevent's `test__semaphore.py`
//! (TestSemaphore: counting acquire/release, `test_acquire_returns_false_after_timeout`,
//! `test_release_twice` — releases from other greenlets wake acquirers;
//! TestBoundedSemaphore: releasing past the initial count raises), plus FIFO service,
//! cancellation mid-wait, two workers and plain OS threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grove::sync::{BoundedSemaphore, OverRelease, Semaphore};

mod common;
use common::{until_waiting, waiters};

fn rt(workers: usize) -> grove::Runtime {
    grove::Runtime::builder().workers(workers).build().unwrap()
}

#[test]
fn permits_are_counted_and_guards_give_them_back() {
    rt(2).block_on(|| {
        let sem = Semaphore::new(2);
        let a = sem.acquire();
        let b = sem.try_acquire().expect("a second permit is free");
        assert_eq!(sem.available(), 0);
        assert!(sem.try_acquire().is_none());
        drop(a);
        assert_eq!(sem.available(), 1);
        // gevent's manual style: keep the permit past the guard, release by hand.
        b.forget();
        assert_eq!(sem.available(), 1);
        sem.release().unwrap();
        assert_eq!(sem.available(), 2);
        // An unbounded semaphore accepts extra releases.
        sem.release().unwrap();
        assert_eq!(sem.available(), 3);
    });
}

/// gevent: `test_acquire_returns_false_after_timeout`.
#[test]
fn acquire_timeout_gives_up_and_changes_nothing() {
    rt(2).block_on(|| {
        let sem = Semaphore::new(0);
        let start = Instant::now();
        assert!(sem.acquire_timeout(Duration::from_millis(20)).is_none());
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(sem.available(), 0);
        assert_eq!(waiters(&sem), 0);
        sem.release().unwrap();
        assert!(sem.acquire_timeout(Duration::ZERO).is_some());
        assert_eq!(sem.available(), 1);
    });
}

/// gevent: TestBoundedSemaphore (`release` past the bound raises `ValueError`).
#[test]
fn bounded_semaphore_refuses_to_release_past_its_bound() {
    rt(2).block_on(|| {
        let sem = BoundedSemaphore::new(2);
        assert_eq!(sem.release(), Err(OverRelease));
        sem.acquire().forget();
        assert_eq!(sem.available(), 1);
        assert_eq!(sem.release(), Ok(()));
        let err = sem.release().unwrap_err();
        assert_eq!(err.to_string(), "released more times than acquired");
        let _as_error: Box<dyn std::error::Error + Send + Sync> = Box::new(err);
        assert_eq!(sem.available(), 2);
        // Guards always balance.
        let (a, b) = (sem.acquire(), sem.acquire());
        drop((a, b));
        assert_eq!(sem.available(), 2);
    });
}

/// gevent: `test_release_twice` (releases from other greenlets wake the acquirer).
#[test]
fn release_in_a_greenlet_wakes_a_blocked_acquirer() {
    rt(2).block_on(|| {
        let sem = Semaphore::new(0);
        let acquirer = {
            let sem = sem.clone();
            grove::spawn(move || sem.acquire().forget())
        };
        until_waiting(&sem, 1);
        let releaser = {
            let sem = sem.clone();
            grove::spawn(move || sem.release())
        };
        releaser.join().unwrap().unwrap();
        acquirer.join().unwrap();
        // The permit went straight to the acquirer, who kept it.
        assert_eq!(sem.available(), 0);
        assert_eq!(waiters(&sem), 0);
    });
}

#[test]
fn blocked_acquirers_are_served_in_fifo_order() {
    rt(2).block_on(|| {
        let sem = Semaphore::new(1);
        let order = Arc::new(Mutex::new(Vec::new()));
        let held = sem.acquire();
        let hs: Vec<_> = (0..20)
            .map(|i| {
                let (s, order) = (sem.clone(), order.clone());
                let h = grove::spawn(move || {
                    let _permit = s.acquire();
                    order.lock().unwrap().push(i);
                });
                // Queue them one by one, so their arrival order is known.
                until_waiting(&sem, i + 1);
                h
            })
            .collect();
        // Held: a try_acquire gets nothing while others wait.
        assert!(sem.try_acquire().is_none());
        drop(held);
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
        assert_eq!(sem.available(), 1);
    });
}

/// The wake-up a release sends a waiter that is killed before it runs reaches the next
/// waiter, which takes the permit.
#[test]
fn a_killed_acquirer_passes_its_wake_up_to_the_next_waiter() {
    // One worker: the main greenlet releases and kills without the target running in
    // between, so the kill lands after the wake-up.
    rt(1).block_on(|| {
        let sem = Semaphore::new(0);
        let got = Arc::new(AtomicUsize::new(0));
        let spawn_acquirer = |id: usize| {
            let (sem, got) = (sem.clone(), got.clone());
            grove::spawn(move || {
                let _permit = sem.acquire();
                got.store(id, Ordering::SeqCst);
            })
        };
        let first = spawn_acquirer(1);
        until_waiting(&sem, 1);
        let second = spawn_acquirer(2);
        until_waiting(&sem, 2);

        sem.release().unwrap();
        // The permit is free and `first` (dequeued) was woken to take it, but has not
        // run yet; `second` still waits.
        assert_eq!((sem.available(), waiters(&sem)), (1, 1));
        first.kill();
        assert!(first.join().unwrap_err().is_killed());
        second.join().unwrap();
        assert_eq!(got.load(Ordering::SeqCst), 2);
        assert_eq!((sem.available(), waiters(&sem)), (1, 0));
    });
}

/// Acquirers that time out (by `Timeout` or their own deadline) take nothing with
/// them and leave the queue to the others.
#[test]
fn timed_out_acquirers_leave_the_count_unchanged() {
    rt(2).block_on(|| {
        let sem = Semaphore::new(0);
        let by_scope = {
            let sem = sem.clone();
            grove::spawn(move || {
                grove::with_timeout(Duration::from_millis(10), || sem.acquire().forget())
            })
        };
        let by_deadline = {
            let sem = sem.clone();
            grove::spawn(move || sem.acquire_timeout(Duration::from_millis(10)).is_some())
        };
        let patient = {
            let sem = sem.clone();
            grove::spawn(move || sem.acquire().forget())
        };
        assert!(by_scope.join().unwrap().is_err());
        assert!(!by_deadline.join().unwrap());
        until_waiting(&sem, 1);
        assert_eq!(sem.available(), 0);
        sem.release().unwrap();
        patient.join().unwrap();
        assert_eq!((sem.available(), waiters(&sem)), (0, 0));
        sem.release().unwrap();
        assert_eq!(sem.available(), 1);
    });
}

#[test]
fn release_from_a_plain_os_thread_wakes_a_greenlet() {
    let rt = rt(2);
    let sem = Semaphore::new(0);
    let s2 = sem.clone();
    let h = rt.spawn(move || s2.acquire().forget());
    while waiters(&sem) != 1 {
        std::thread::yield_now();
    }
    let s3 = sem.clone();
    std::thread::spawn(move || s3.release())
        .join()
        .unwrap()
        .unwrap();
    h.join().unwrap();
    assert_eq!(sem.available(), 0);
}

#[test]
fn a_plain_os_thread_can_wait_for_a_permit() {
    let rt = rt(2);
    let sem = Semaphore::new(0);
    let s2 = sem.clone();
    let t = std::thread::spawn(move || s2.acquire_timeout(Duration::from_secs(30)).is_some());
    while waiters(&sem) != 1 {
        std::thread::yield_now();
    }
    let s3 = sem.clone();
    rt.block_on(move || s3.release()).unwrap();
    assert!(t.join().unwrap());
    assert_eq!(sem.available(), 1);
}

/// Many greenlets on two workers never exceed the permits, and none is lost.
#[test]
fn permits_bound_concurrency_across_two_workers() {
    rt(2).block_on(|| {
        let sem = BoundedSemaphore::new(3);
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..200)
            .map(|_| {
                let (sem, inside, most) = (sem.clone(), inside.clone(), most.clone());
                grove::spawn(move || {
                    for _ in 0..20 {
                        let _permit = sem.acquire();
                        let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        grove::yield_now();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert_eq!(sem.available(), 3);
        assert_eq!(waiters(&sem), 0);
    });
}

/// A `Semaphore`'s count tops out at `usize::MAX` free permits: a manual release there is
/// refused (nothing changes), and a guard dropped there never panics — not even while
/// its greenlet or thread unwinds, where a panic in `Drop` would abort the process (so
/// the check runs in a child process).
#[test]
fn release_at_usize_max_is_refused_and_a_guard_drop_never_panics() {
    if !common::is_child() {
        let out = common::run_child(
            "release_at_usize_max_is_refused_and_a_guard_drop_never_panics",
            &[],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed: {stderr}");
        return;
    }
    let sem = Semaphore::new(usize::MAX);
    let guard = sem.acquire();
    assert_eq!(sem.available(), usize::MAX - 1);
    assert_eq!(sem.release(), Ok(()));
    assert_eq!(sem.release(), Err(OverRelease));
    assert_eq!(sem.available(), usize::MAX);
    // Dropped while unwinding from the user's own panic: must not panic again.
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _guard = guard;
        std::panic::resume_unwind(Box::new("the user's panic"));
    }));
    assert!(unwound.is_err());
    assert_eq!(sem.available(), usize::MAX);
    // And dropped normally, from a greenlet.
    let sem2 = sem.clone();
    rt(1).block_on(move || {
        let g = sem2.acquire();
        sem2.release().unwrap();
        drop(g);
    });
    assert_eq!(sem.available(), usize::MAX);
    assert_eq!(waiters(&sem), 0);
}
