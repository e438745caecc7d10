//! Thread-based wakers for the reactor's tests: no greenlets, no async runtime.

#![allow(dead_code, unreachable_pub)] // Each test file uses a different subset.

use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use grove_reactor::{Direction, Handle, Registration};

/// Generous bound for things that should take microseconds; only reached when a test fails.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A waker that counts its wakes, remembers the waking thread's name, and lets a test block
/// until a given count is reached.
#[derive(Default)]
pub struct Flag {
    state: Mutex<FlagState>,
    cv: Condvar,
}

#[derive(Default)]
struct FlagState {
    wakes: usize,
    thread: Option<String>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut st = self.state.lock().unwrap();
        st.wakes += 1;
        st.thread = thread::current().name().map(str::to_owned);
        self.cv.notify_all();
    }
}

impl Flag {
    pub fn new() -> Arc<Flag> {
        Arc::new(Flag::default())
    }

    pub fn waker(self: &Arc<Self>) -> Waker {
        Waker::from(self.clone())
    }

    pub fn wakes(&self) -> usize {
        self.state.lock().unwrap().wakes
    }

    /// Name of the thread that woke this flag last.
    pub fn woken_by(&self) -> Option<String> {
        self.state.lock().unwrap().thread.clone()
    }

    /// Blocks until the flag was woken at least `n` times; false on timeout.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let st = self.state.lock().unwrap();
        let (st, _) = self
            .cv
            .wait_timeout_while(st, timeout, |st| st.wakes < n)
            .unwrap();
        st.wakes >= n
    }
}

/// Polls `reg` in `dir` until it is ready, blocking on a thread waker in between.
pub fn wait_ready(reg: &Registration, dir: Direction) -> std::io::Result<()> {
    let flag = Flag::new();
    let waker = flag.waker();
    let mut cx = Context::from_waker(&waker);
    let give_up = Instant::now() + PATIENCE;
    loop {
        let seen = flag.wakes();
        if let Poll::Ready(result) = reg.poll_ready(dir, &mut cx) {
            return result;
        }
        let left = give_up.saturating_duration_since(Instant::now());
        assert!(
            flag.wait_for(seen + 1, left),
            "{dir:?} readiness never came"
        );
    }
}

/// Spins (yielding) until `cond` holds; panics after [`PATIENCE`].
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let give_up = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < give_up, "timed out waiting for: {what}");
        thread::yield_now();
    }
}

/// Polls `handle`'s metrics until `pred` holds.
pub fn eventually_metrics(
    handle: &Handle,
    what: &str,
    mut pred: impl FnMut(&grove_reactor::ReactorMetrics) -> bool,
) {
    eventually(what, || pred(&handle.metrics()));
}
