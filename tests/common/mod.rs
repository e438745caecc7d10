//! Helpers shared by the integration tests.
// Each test binary uses a different subset, and `pub` is how they reach it.
#![allow(dead_code, unreachable_pub)]

use std::fmt::Debug;
use std::process::{Command, Output};
use std::sync::{Arc, Condvar, Mutex};

/// Re-runs the current test binary, executing only `test` with `GROVE_TEST_CHILD=1`,
/// and returns its output. The test checks `is_child()` to pick its child branch.
pub fn run_child(test: &str, extra_env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("GROVE_TEST_CHILD", "1")
        .env_remove("RUST_BACKTRACE");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn child test process")
}

/// True inside a process started by [`run_child`].
pub fn is_child() -> bool {
    std::env::var_os("GROVE_TEST_CHILD").is_some()
}

/// A one-shot latch usable from any thread: `wait` blocks the OS thread.
#[derive(Clone, Default)]
pub struct Latch(Arc<(Mutex<bool>, Condvar)>);

impl Latch {
    pub fn new() -> Latch {
        Latch::default()
    }
    pub fn set(&self) {
        *self.0 .0.lock().unwrap() = true;
        self.0 .1.notify_all();
    }
    pub fn is_set(&self) -> bool {
        *self.0 .0.lock().unwrap()
    }
    pub fn wait(&self) {
        let mut g = self.0 .0.lock().unwrap();
        while !*g {
            g = self.0 .1.wait(g).unwrap();
        }
    }
}

/// The number of parked waiters on a primitive, read from its `Debug` output (the
/// primitives show `waiters: N`; there is no public counter).
pub fn waiters(x: &impl Debug) -> usize {
    let s = format!("{x:?}");
    let n = &s[s.find("waiters: ").expect("Debug shows the waiters") + 9..];
    n[..n.find(|c: char| !c.is_ascii_digit()).unwrap()]
        .parse()
        .unwrap()
}

/// Yields (never sleeps) until exactly `n` waiters are parked on `x`.
pub fn until_waiting(x: &impl Debug, n: usize) {
    while waiters(x) != n {
        grove::yield_now();
    }
}
