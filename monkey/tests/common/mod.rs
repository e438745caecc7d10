//! Helpers shared by grove-monkey's tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::mpsc;
use std::time::Duration;

/// A runtime with `workers` workers, the hooks linked in.
pub fn rt(workers: usize) -> grove::Runtime {
    grove_monkey::link();
    grove::Runtime::builder()
        .workers(workers)
        .build()
        .expect("runtime")
}

/// Runs `f` on a fresh thread and fails the test if it does not return within `limit`
/// (a hooked call that blocked its worker would otherwise hang the test).
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(v)) => v,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("{what}: no result within {limit:?} (a worker thread blocked?)"),
    }
}

/// The errno of an io::Error.
pub fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}
