// Without --cfg grove_loom this file compiles to an empty crate, docs included.
#![cfg_attr(not(grove_loom), allow(missing_docs))]
#![cfg(grove_loom)]
//! Loom models of the blocking pool's accounting (`primitives/src/blocking.rs`,
//! "Protocol": submission steps 1–4, the pool thread's idle/claimed/retire loop, and
//! shutdown), driving the real `BlockingPool`.
//!
//! # Under loom
//! The primitives' loom shim (`primitives/src/loom.rs`) gives the pool loom's `Mutex`,
//! `Condvar` and threads (pool threads are loom threads), and a joiner a park token
//! standing for its greenlet. Pools are as small as the protocol allows (one or two
//! threads). loom 0.7's `Condvar::wait_timeout` never times out, so keep-alive expiry
//! is not modelled: an idle thread leaves at shutdown (dropping the last pool handle),
//! and the models check that it does (a thread that never exits is a loom deadlock).
//!
//! # Properties asserted
//! * Every job submitted runs and its handle gets its value, whether an idle thread is
//!   claimed for it, a new thread is started, or a busy thread finds it queued (a job
//!   stranded in the queue is a loom deadlock: its joiner parks for ever).
//! * Shutdown runs the jobs still queued, then every thread exits.
//! * The counts stay within bounds: at most `max_threads` threads, idle ones among them.
//!
//! Preemption bound: `LOOM_MAX_PREEMPTIONS=3` (as in `.ci/run`).
//!
//! Each model was checked to fail with the protocol broken on purpose: submission
//! claiming an idle thread without signalling the condition variable (the job waits
//! for ever: `job_then_job_on_one_thread` deadlocks), a claimed thread not consuming
//! its notification (`notified` stays counted, so a later submission neither claims nor
//! starts a thread: `job_then_job_on_one_thread` and `two_submitters_two_threads`
//! deadlock), and shutdown not waking idle threads (`shutdown_runs_queued_jobs`: the
//! thread never exits).

use grove_primitives::blocking::BlockingPool;
use loom::thread;

/// Checks the pool's counts are within their bounds.
fn check_counts(pool: &BlockingPool) {
    let threads = pool.threads();
    assert!(threads <= pool.max_threads(), "{pool:?}");
    assert!(pool.idle_threads() <= threads, "{pool:?}");
}

/// One thread; a job, joined, then another: the second finds the thread busy finishing
/// the first (queued for it) or idle (claimed). Both run; the thread exits at shutdown.
#[test]
fn job_then_job_on_one_thread() {
    loom::model(|| {
        let pool = BlockingPool::builder().max_threads(1).build();
        assert_eq!(pool.spawn(|| 1).join().unwrap(), 1);
        check_counts(&pool);
        assert_eq!(pool.spawn(|| 2).join().unwrap(), 2);
        check_counts(&pool);
        assert_eq!(pool.threads(), 1);
        assert_eq!(pool.queued(), 0);
    });
}

/// Two threads at most, two submitters at once: each job runs, on a thread started for
/// it or one already there.
#[test]
fn two_submitters_two_threads() {
    loom::model(|| {
        let pool = BlockingPool::builder().max_threads(2).build();
        let other = {
            let pool = pool.clone();
            thread::spawn(move || {
                let v = pool.spawn(|| 1).join().unwrap();
                check_counts(&pool);
                v
            })
        };
        assert_eq!(pool.spawn(|| 2).join().unwrap(), 2);
        assert_eq!(other.join().unwrap(), 1);
        check_counts(&pool);
        assert_eq!(pool.queued(), 0);
    });
}

/// Jobs still queued when the last handle of the pool is dropped still run; their
/// handles get their values after the pool is gone.
#[test]
fn shutdown_runs_queued_jobs() {
    loom::model(|| {
        let pool = BlockingPool::builder().max_threads(1).build();
        let a = pool.spawn(|| 1);
        let b = pool.spawn(|| 2);
        drop(pool);
        assert_eq!(a.join().unwrap(), 1);
        assert_eq!(b.join().unwrap(), 2);
    });
}
