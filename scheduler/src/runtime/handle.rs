//! [`Runtime`] and the spawning side of [`Handle`]: the public face of a running runtime,
//! and its shutdown.

use std::panic;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::deadlock;
use crate::error::JoinError;
use crate::greenlet::{in_greenlet, GreenletBuilder, JoinHandle};
use crate::monitor::stall::StallReport;
use crate::run_info::{self, RunInfo};
use crate::shared::{Handle, EXIT_MARGIN};
use crate::worker::with_local;

/// A set of worker threads running greenlets.
///
/// Dropping it shuts it down (see "Shutdown" in the README): hubs stop, greenlets that
/// never started are dropped, parked ones are unwound from their blocking points on
/// their home thread so their destructors run (destructors may block, for up to
/// [`RuntimeBuilder::shutdown_grace`](crate::RuntimeBuilder::shutdown_grace)), every join resolves, and every thread the runtime
/// started is joined before `drop` returns — except when the runtime is dropped from one
/// of its own greenlets, which cannot wait for its own thread: the threads then finish
/// the shutdown by themselves.
#[derive(Debug)]
pub struct Runtime {
    pub(crate) handle: Handle,
    pub(crate) threads: Vec<thread::JoinHandle<()>>,
    pub(crate) monitor: Option<thread::JoinHandle<()>>,
}

impl Runtime {
    /// A cheap, cloneable, `Send` handle for spawning from any thread.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Spawns a greenlet from any thread. See [`Handle::spawn`].
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.handle.spawn(f)
    }

    /// Runs `f` as a greenlet and blocks this thread until it returns its value.
    /// A panic in `f` is resumed on the caller.
    #[track_caller]
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.handle.block_on(f)
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.handle.workers()
    }

    /// Every live greenlet and every worker's counters. See [`Handle::dump`].
    pub fn dump(&self) -> RunInfo {
        self.handle.dump()
    }

    /// The blocking monitor's last reports. See [`Handle::stall_reports`].
    pub fn stall_reports(&self) -> Vec<StallReport> {
        self.handle.stall_reports()
    }

    /// Shuts down, waiting at most `timeout` for the workers to unwind their greenlets
    /// and exit, and returns `true` if every thread was joined.
    ///
    /// `timeout` is also the grace period of [`RuntimeBuilder::shutdown_grace`](crate::RuntimeBuilder::shutdown_grace): greenlets
    /// still blocking in their destructors (or catching the unwind) when it ends are
    /// abandoned, and the hubs exit right after (the wait allows them
    /// [`EXIT_MARGIN`] more for that). Only a greenlet that never yields can keep its
    /// worker busy past that: its thread is then detached and `false` returned. Either
    /// way every join resolves: greenlets that never started (including any spawned from
    /// now on) report [`JoinError::is_shutdown`] at once, and the others as soon as they
    /// are unwound or abandoned.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> bool {
        self.stop(Some(timeout))
    }

    /// Shuts down. `grace`: `shutdown_timeout`'s timeout, or `None` (dropped: the
    /// builder's grace period, then wait for every thread, however long it takes).
    fn stop(&mut self, grace: Option<Duration>) -> bool {
        let shared = &self.handle.shared;
        if shared.in_forked_child() {
            // The threads exist only in the parent: joining them would wait forever.
            // Forget their handles (the parent still owns the threads) and give up.
            shared.core.shutdown.close();
            std::mem::forget(self.monitor.take());
            self.threads.drain(..).for_each(std::mem::forget);
            return false;
        }
        let start = Instant::now();
        shared.begin_shutdown(grace);
        if let Some(m) = self.monitor.take() {
            // It exits at its next wake, which `begin_shutdown` just caused.
            let _ = m.join();
        }
        if with_local(|l| l.is_some_and(|l| Arc::ptr_eq(&l.shared, shared))) {
            // Dropped from one of its own greenlets: joining would wait for ourselves.
            // The hubs (ours included, once this greenlet yields) finish the shutdown.
            self.threads.clear();
            return false;
        }
        let deadline = grace.and_then(|g| start.checked_add(g)?.checked_add(EXIT_MARGIN));
        let n = self.threads.len();
        let all = shared.core.wait_exits(n, deadline);
        for t in self.threads.drain(..) {
            // Every thread that signalled its exit is joined, finished or not (its
            // thread-locals' destructors may still be running): only a thread still in
            // its hub when the wait ended is detached.
            if all || t.is_finished() {
                let _ = t.join();
            }
        }
        all
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if !self.threads.is_empty() || !self.handle.shared.is_shutdown() {
            self.stop(None);
        }
    }
}

impl Handle {
    /// The runtime of the greenlet (or worker) running on this thread, if any.
    pub fn try_current() -> Option<Handle> {
        with_local(|l| {
            l.map(|l| Handle {
                shared: l.shared.clone(),
            })
        })
    }

    /// Spawns a greenlet. Callable from any thread, inside the runtime or not.
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        GreenletBuilder::new().spawn_on(self, f)
    }

    /// Runs `f` as a greenlet and blocks the calling thread (or parks the calling
    /// greenlet) until it returns. A panic in `f` is resumed on the caller.
    #[track_caller]
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.try_block_on(f) {
            Ok(v) => v,
            Err(e) => match e.try_into_panic() {
                Ok(payload) => panic::resume_unwind(payload),
                Err(e) => panic!("grove: block_on: {e}"),
            },
        }
    }

    /// Like [`block_on`](Self::block_on), but returns how the main greenlet failed
    /// instead of panicking: a panic (payload inside), a kill, a shutdown, or a
    /// deadlock ([`JoinError::is_deadlock`]: it waited for something nothing could ever
    /// do, and was unwound from that wait).
    ///
    /// ```
    /// let rt = grove::Runtime::builder().workers(1).build().unwrap();
    /// // Waits for a greenlet that waits for it: nothing can ever finish.
    /// let err = rt
    ///     .handle()
    ///     .try_block_on(|| {
    ///         let me = grove::current();
    ///         grove::spawn(move || me.wait()).join()
    ///     })
    ///     .unwrap_err();
    /// assert!(err.is_deadlock());
    /// ```
    #[track_caller]
    pub fn try_block_on<F, T>(&self, f: F) -> Result<T, JoinError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.shared.check_owner("grove: Runtime::block_on");
        let h = self.spawn(f);
        if self.shared.detect_deadlock && !in_greenlet() {
            let timers = self.shared.timers.as_deref();
            let mut step = deadlock::FIRST_CHECK;
            while !h.wait_timeout(step) {
                if h.interrupt_if_deadlocked(timers) {
                    break;
                }
                step = (step * 2).min(deadlock::MAX_CHECK);
            }
        }
        h.join()
    }

    /// Every live greenlet this runtime can name (id, name, state, home worker, spawn
    /// location, age) and every worker's counters: gevent's `print_run_info`. Print it
    /// with `{}`. Callable from any thread, including the runtime's own greenlets; cheap
    /// enough to leave in production (it costs the workers nothing until called, then a
    /// lock per worker while it copies that worker's list). See the `run_info` module
    /// for what is listed and what is only counted.
    pub fn dump(&self) -> RunInfo {
        run_info::dump(&self.shared)
    }
}
