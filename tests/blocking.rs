//! The blocking pool (gevent's `threadpool`): results, panics, bounds, joins from
//! greenlets and plain threads, idle retirement, interrupted joiners.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::Latch;
use grove::blocking::{spawn_blocking, BlockingPool};

/// Generous bound for anything that should happen "soon" on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(20);

#[test]
fn result_comes_back_to_a_greenlet() {
    let v = grove::run(|| spawn_blocking(|| 6 * 7).join().unwrap());
    assert_eq!(v, 42);
}

#[test]
fn join_from_a_plain_thread_outside_any_runtime() {
    let h = spawn_blocking(|| std::thread::current().name().map(str::to_owned));
    assert_eq!(h.join().unwrap().as_deref(), Some("grove-blocking"));
}

#[test]
fn panic_payload_comes_back_as_an_error() {
    let err = grove::run(|| spawn_blocking(|| -> u32 { panic!("kaboom") }).join()).unwrap_err();
    assert!(err.is_panic());
    assert!(!err.is_cancelled());
    assert!(err.to_string().contains("kaboom"), "{err}");
    assert_eq!(err.into_panic().downcast_ref::<&str>(), Some(&"kaboom"));
}

#[test]
fn the_worker_runs_other_greenlets_while_one_joins() {
    // One worker: if join blocked the thread, the ticker could not run until the job ends,
    // and the job waits for the ticker.
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    rt.block_on(|| {
        let go = Latch::new();
        let go2 = go.clone();
        let job = spawn_blocking(move || {
            go2.wait();
            "done"
        });
        let ticker = grove::spawn(move || go.set());
        assert_eq!(job.join().unwrap(), "done");
        ticker.join().unwrap();
    });
}

#[test]
fn concurrency_is_bounded_by_max_threads() {
    const MAX: usize = 4;
    const JOBS: usize = 40;
    let pool = BlockingPool::builder().max_threads(MAX).build();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    // The first MAX jobs meet at a barrier: proves MAX really run at once.
    let barrier = Arc::new(Barrier::new(MAX));
    let handles: Vec<_> = (0..JOBS)
        .map(|i| {
            let (running, peak, barrier) = (running.clone(), peak.clone(), barrier.clone());
            pool.spawn(move || {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                if i < MAX {
                    barrier.wait();
                }
                std::thread::yield_now();
                running.fetch_sub(1, Ordering::SeqCst);
                i
            })
        })
        .collect();
    assert!(pool.threads() <= MAX);
    let sum: usize = grove::run(move || handles.into_iter().map(|h| h.join().unwrap()).sum());
    assert_eq!(sum, (0..JOBS).sum());
    assert_eq!(peak.load(Ordering::SeqCst), MAX);
    assert!(pool.threads() <= MAX);
}

#[test]
fn many_greenlets_join_many_jobs() {
    let total: u64 = grove::run(|| {
        let hs: Vec<_> = (0..200u64)
            .map(|i| grove::spawn(move || spawn_blocking(move || i * 2).join().unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(total, (0..200u64).map(|i| i * 2).sum());
}

#[test]
fn idle_threads_retire_after_keep_alive() {
    let pool = BlockingPool::builder()
        .max_threads(8)
        .keep_alive(Duration::from_millis(50))
        .build();
    let hs: Vec<_> = (0..3)
        .map(|_| pool.spawn(|| std::thread::sleep(Duration::from_millis(20))))
        .collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
    assert!(pool.threads() >= 1);
    let start = Instant::now();
    while pool.threads() > 0 {
        assert!(start.elapsed() < PATIENCE, "idle threads never retired");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(pool.idle_threads(), 0);
    // The pool still works afterwards: a fresh thread is spawned.
    assert_eq!(pool.spawn(|| 1).join().unwrap(), 1);
}

#[test]
fn idle_thread_is_reused_rather_than_a_new_one_spawned() {
    let pool = BlockingPool::builder().max_threads(8).build();
    for _ in 0..20 {
        pool.spawn(|| ()).join().unwrap();
        // Let the thread finish its bookkeeping and go idle (a join returns as soon as the
        // outcome is stored, a moment before that).
        let t = std::time::Instant::now();
        while pool.idle_threads() < pool.threads() {
            assert!(t.elapsed() < Duration::from_secs(10), "{pool:?}");
            std::thread::yield_now();
        }
    }
    // Every job found the one thread idle: no second thread was ever started.
    assert_eq!(pool.threads(), 1, "{pool:?}");
}

#[test]
fn join_timeout_gives_the_handle_back() {
    grove::run(|| {
        let release = Latch::new();
        let r = release.clone();
        let h = spawn_blocking(move || {
            r.wait();
            7
        });
        let h = h.join_timeout(Duration::from_millis(20)).unwrap_err();
        assert!(!h.is_finished());
        release.set();
        assert_eq!(h.join().unwrap(), 7);
    });
}

#[test]
fn killed_joiner_unwinds_and_the_job_still_runs() {
    grove::run(|| {
        let release = Latch::new();
        let ran = Latch::new();
        let (r, done) = (release.clone(), ran.clone());
        let handle = spawn_blocking(move || {
            r.wait();
            done.set();
            vec![1u8; 16] // a value that is dropped unjoined
        });
        let joiner_parked = grove::sync::Event::new();
        let parked = joiner_parked.clone();
        let joiner = grove::spawn(move || {
            parked.set();
            handle.join()
        });
        joiner_parked.wait();
        grove::yield_now();
        joiner.kill();
        assert!(joiner.join().unwrap_err().is_killed());
        release.set();
        // The job finishes although nobody waits for it.
        let job_done = spawn_blocking(move || ran.wait());
        job_done.join().unwrap();
    });
}

#[test]
fn timeout_interrupts_a_join() {
    grove::run(|| {
        let release = Latch::new();
        let r = release.clone();
        let h = spawn_blocking(move || r.wait());
        let res = grove::with_timeout(Duration::from_millis(20), move || h.join());
        assert!(res.is_err());
        release.set();
    });
}

/// A value whose `Drop` panics (the user's bug, which the pool must survive).
struct PanicOnDrop(&'static str);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("{}", self.0);
    }
}

/// Runs `scenario` in a child process (`test` names the calling test) and checks that
/// it exited cleanly and reported `report` on stderr. The child bounds every wait with
/// `PATIENCE`, so a regression fails instead of hanging.
fn in_child(test: &str, scenario: impl FnOnce(), report: &str) {
    if common::is_child() {
        scenario();
        return;
    }
    let out = common::run_child(test, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stderr}");
    assert!(stderr.contains(report), "no report {report:?}: {stderr}");
}

/// With `max_threads(1)`, checks that the pool's one thread is still there and runs a
/// new job.
fn still_serves(pool: &BlockingPool) {
    let h = pool.spawn(|| 5);
    let got = h
        .join_timeout(PATIENCE)
        .unwrap_or_else(|_| panic!("the pool's only thread is gone: {pool:?}"));
    assert_eq!(got.unwrap(), 5);
    assert_eq!(pool.threads(), 1, "{pool:?}");
}

#[test]
fn detached_result_whose_drop_panics_keeps_the_pool_thread() {
    in_child(
        "detached_result_whose_drop_panics_keeps_the_pool_thread",
        || {
            let pool = BlockingPool::builder().max_threads(1).build();
            let go = Latch::new();
            let g = go.clone();
            // Detached before it finishes: the pool thread drops the result.
            drop(pool.spawn(move || {
                g.wait();
                PanicOnDrop("result drop")
            }));
            go.set();
            still_serves(&pool);
        },
        "dropping the result of a detached blocking job panicked: result drop; \
         the panic was contained",
    );
}

#[test]
fn detached_panic_payload_whose_drop_panics_keeps_the_pool_thread() {
    in_child(
        "detached_panic_payload_whose_drop_panics_keeps_the_pool_thread",
        || {
            let pool = BlockingPool::builder().max_threads(1).build();
            // Twice: one contained panic must not change the next.
            for _ in 0..2 {
                let go = Latch::new();
                let g = go.clone();
                // Detached before it finishes: the pool thread drops the payload.
                drop(pool.spawn(move || {
                    g.wait();
                    std::panic::panic_any(PanicOnDrop("payload drop"))
                }));
                go.set();
                still_serves(&pool);
            }
        },
        "panicked: payload drop; the panic was contained",
    );
}

#[test]
fn huge_keep_alive_does_not_overflow() {
    for keep_alive in [Duration::MAX, Duration::from_secs(u64::MAX / 2)] {
        let pool = BlockingPool::builder()
            .max_threads(1)
            .keep_alive(keep_alive)
            .build();
        assert_eq!(pool.spawn(|| 1).join().unwrap(), 1);
        // The thread goes idle (computing its keep-alive deadline) and is reused.
        let start = Instant::now();
        while pool.idle_threads() < 1 {
            assert!(
                start.elapsed() < PATIENCE,
                "thread never went idle: {pool:?}"
            );
            std::thread::yield_now();
        }
        still_serves(&pool);
    }
}

/// A thread name std refuses (a NUL byte) used to panic in the submitter after the
/// pool had counted the thread, so with `max_threads(1)` every later job queued for a
/// thread that never existed. Now no thread starts, and every job is cancelled.
#[test]
fn a_thread_name_std_refuses_cancels_jobs_instead_of_panicking() {
    let pool = BlockingPool::builder()
        .max_threads(1)
        .thread_name("bad\0name")
        .build();
    for _ in 0..3 {
        let outcome = pool
            .spawn(|| 1)
            .join_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("a job waits for a thread that never started"));
        assert!(outcome.unwrap_err().is_cancelled());
        assert_eq!(pool.threads(), 0, "{pool:?}");
        assert_eq!(pool.queued(), 0, "{pool:?}");
    }
}
