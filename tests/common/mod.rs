//! Helpers shared by the integration tests.
// Each test binary uses a different subset, and `pub` is how they reach it.
#![allow(dead_code, unreachable_pub)]

use std::fmt::Debug;
use std::process::{Command, Output};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

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

/// What a watched child test printed, and how it ended.
pub struct Watched {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Like [`run_child`], but with a watchdog: if the child has not exited after
/// `limit`, it is killed and this panics saying so (a hang fails the test instead of
/// hanging the suite). With `close_stderr` the child's stderr is a pipe whose read end
/// is closed at once, so its writes to stderr fail with `EPIPE` (`prog 2>&1 | head`).
pub fn run_child_watched(
    test: &str,
    extra_env: &[(&str, &str)],
    close_stderr: bool,
    limit: std::time::Duration,
) -> Watched {
    use std::io::Read;
    use std::process::Stdio;
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env("GROVE_TEST_CHILD", "1")
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn child test process");
    let mut out = child.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let mut err = child.stderr.take().unwrap();
    let stderr = if close_stderr {
        drop(err);
        None
    } else {
        Some(std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }))
    };
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = stdout.join().unwrap();
            let stderr = stderr.map(|t| t.join().unwrap()).unwrap_or_default();
            panic!(
                "child `{test}` hung (killed after {limit:?})\nstdout:\n{stdout}\nstderr:\n{stderr}"
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Watched {
        success: status.success(),
        stdout: stdout.join().unwrap(),
        stderr: stderr.map(|t| t.join().unwrap()).unwrap_or_default(),
    }
}

/// xorshift64 (Marsaglia): a tiny deterministic PRNG for randomized tests.
#[derive(Clone, Copy)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    /// Uniform-ish in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    pub fn chance(&mut self, one_in: u64) -> bool {
        self.next() % one_in == 0
    }
    pub fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(self.range(lo, hi))
    }
}
