//! `AsyncResult`. Follows the AsyncResult parts of gevent's `test__event.py`
//! (set then get, `set_exception` makes `get` raise, `get` with a timeout and
//! `get_nowait` on an unset result, several greenlets getting one result, a second
//! set), plus two workers, plain OS threads and cancellation mid-wait.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use grove::sync::{AlreadySet, AsyncResult};

mod common;
use common::{until_waiting, waiters};

fn rt() -> grove::Runtime {
    grove::Runtime::builder().workers(2).build().unwrap()
}

#[test]
fn every_getter_on_every_worker_receives_the_value() {
    rt().block_on(|| {
        let result: AsyncResult<String> = AsyncResult::new();
        let hs: Vec<_> = (0..50)
            .map(|_| {
                let r = result.clone();
                grove::spawn(move || r.get().unwrap())
            })
            .collect();
        until_waiting(&result, 50);
        assert!(!result.is_ready());
        result.set("done".to_string()).unwrap();
        for h in hs {
            assert_eq!(h.join().unwrap(), "done");
        }
        assert!(result.is_ready() && result.successful());
        assert_eq!(result.get().unwrap(), "done");
        assert_eq!(waiters(&result), 0);
    });
}

/// gevent: `set_exception` makes every `get` raise it.
#[test]
fn set_error_makes_get_return_the_error() {
    rt().block_on(|| {
        let result: AsyncResult<u32> = AsyncResult::new();
        let getter = {
            let r = result.clone();
            grove::spawn(move || r.get())
        };
        until_waiting(&result, 1);
        result
            .set_error(Arc::new(io::Error::other("boom")))
            .unwrap();
        assert_eq!(getter.join().unwrap().unwrap_err().to_string(), "boom");
        assert!(result.is_ready());
        assert!(!result.successful());
        assert_eq!(result.try_get().unwrap().unwrap_err().to_string(), "boom");

        // Any clonable error type works too.
        let typed: AsyncResult<u32, String> = AsyncResult::new();
        typed.set_error("bad".into()).unwrap();
        assert_eq!(typed.get(), Err("bad".to_string()));
    });
}

#[test]
fn a_second_set_is_an_error_that_gives_the_value_back() {
    let result: AsyncResult<u32, String> = AsyncResult::new();
    result.set(1).unwrap();
    assert_eq!(result.set(2), Err(AlreadySet(2)));
    let err = result.set_error("late".into()).unwrap_err();
    assert_eq!(err.to_string(), "AsyncResult is already set");
    assert_eq!(err.into_inner(), "late");
    assert_eq!(result.try_get(), Some(Ok(1)));
}

/// gevent: `get(timeout=...)` raises Timeout and `get_nowait` raises on an unset result.
#[test]
fn get_timeout_and_try_get_return_none_while_unset() {
    rt().block_on(|| {
        let result: AsyncResult<u32, String> = AsyncResult::new();
        assert_eq!(result.try_get(), None);
        let start = Instant::now();
        assert_eq!(result.get_timeout(Duration::from_millis(20)), None);
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(waiters(&result), 0);
        result.set(5).unwrap();
        assert_eq!(result.get_timeout(Duration::ZERO), Some(Ok(5)));
        assert_eq!(result.wait_timeout(Duration::ZERO), Some(&Ok(5)));
    });
}

#[test]
fn wait_lends_the_outcome_without_cloning() {
    struct NotClone(u32);
    rt().block_on(|| {
        let result: AsyncResult<NotClone, String> = AsyncResult::new();
        let waiter = {
            let r = result.clone();
            grove::spawn(move || r.wait().as_ref().map(|v| v.0).unwrap())
        };
        until_waiting(&result, 1);
        assert!(result.set(NotClone(9)).is_ok());
        assert_eq!(waiter.join().unwrap(), 9);
    });
}

#[test]
fn set_from_a_plain_os_thread_wakes_a_greenlet() {
    let rt = rt();
    let result: AsyncResult<u32, String> = AsyncResult::new();
    let r2 = result.clone();
    let h = rt.spawn(move || r2.get());
    while waiters(&result) != 1 {
        std::thread::yield_now();
    }
    std::thread::spawn(move || result.set(3).unwrap())
        .join()
        .unwrap();
    assert_eq!(h.join().unwrap(), Ok(3));
}

#[test]
fn a_plain_os_thread_can_wait_for_the_result() {
    let rt = rt();
    let result: AsyncResult<u32, String> = AsyncResult::new();
    let r2 = result.clone();
    let t = std::thread::spawn(move || r2.get_timeout(Duration::from_secs(30)));
    while waiters(&result) != 1 {
        std::thread::yield_now();
    }
    rt.block_on(move || result.set(4).unwrap());
    assert_eq!(t.join().unwrap(), Some(Ok(4)));
}

/// Getters killed or timed out mid-wait leave the result working for the others.
#[test]
fn cancelled_getters_leave_the_result_consistent() {
    rt().block_on(|| {
        let result: AsyncResult<u32, String> = AsyncResult::new();
        let getter = || {
            let r = result.clone();
            grove::spawn(move || r.get())
        };
        let killed = getter();
        let patient = getter();
        until_waiting(&result, 2);
        let timed_out = {
            let r = result.clone();
            grove::spawn(move || grove::with_timeout(Duration::from_millis(10), || r.get()))
        };
        assert!(timed_out.join().unwrap().is_err());
        assert_eq!(waiters(&result), 2);
        killed.kill();
        assert!(killed.join().unwrap_err().is_killed());
        assert_eq!(waiters(&result), 1);
        result.set(8).unwrap();
        assert_eq!(patient.join().unwrap(), Ok(8));
        assert_eq!(waiters(&result), 0);
    });
}
