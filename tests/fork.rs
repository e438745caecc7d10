//! `fork()` in a grove process: the child gets none of the runtime's threads, so a
//! runtime built by the parent refuses to run there (a panic naming the operation,
//! never a hang), dropping the child's copy returns at once, and a runtime built in
//! the child works.
//!
//! Each test forks from a child test process (`common::run_child`), so the fork
//! happens in a process that runs only that test: no other test thread can hold a
//! lock (stdout, the allocator) across the fork. The forked process reports by exit
//! code; its parent collects it with `waitpid`.

use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use grove::greenlet::GreenletBuilder;

mod common;

/// Exit codes of the forked process.
const OK: i32 = 0;
const NO_PANIC: i32 = 10;
const WRONG_MESSAGE: i32 = 11;
const NEW_RUNTIME_FAILED: i32 = 12;
const NOT_FORKED: i32 = 13;
const TRY_SPAWN_SUCCEEDED: i32 = 14;
const TRY_SPAWN_WRONG_KIND: i32 = 15;

/// The panic message of `f`, if it panics.
fn panic_message(f: impl FnOnce()) -> Option<String> {
    let payload = panic::catch_unwind(AssertUnwindSafe(f)).err()?;
    Some(
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default(),
    )
}

/// Checks that `f` panics with the forked-child message naming `what`.
fn refuses(what: &str, f: impl FnOnce()) -> Result<(), i32> {
    match panic_message(f) {
        None => Err(NO_PANIC),
        Some(m)
            if m.contains(what)
                && m.contains("called in a forked child process")
                && m.contains("do not survive fork()")
                && m.contains("build a new runtime in the child") =>
        {
            Ok(())
        }
        Some(_) => Err(WRONG_MESSAGE),
    }
}

/// What the forked process does with the parent's runtime `rt`.
fn in_forked_child(rt: grove::Runtime) -> i32 {
    let run = || -> Result<(), i32> {
        if !rt.handle().in_forked_child() {
            return Err(NOT_FORKED);
        }
        let start = Instant::now();
        refuses("Runtime::block_on", || {
            rt.block_on(|| 1);
        })?;
        refuses("grove::spawn", || {
            rt.spawn(|| 1);
        })?;
        let h = rt.handle().clone();
        refuses("grove::spawn", || {
            h.spawn(|| 1);
        })?;
        refuses("grove::spawn", || {
            GreenletBuilder::new().name("x").spawn_on(&h, || 1);
        })?;
        match GreenletBuilder::new().try_spawn_on(&h, || 1) {
            Ok(_) => return Err(TRY_SPAWN_SUCCEEDED),
            Err(e) if !e.is_forked_child() => return Err(TRY_SPAWN_WRONG_KIND),
            Err(_) => {}
        }
        // Dropping the copy must not wait for threads that are not here.
        drop(rt);
        // A runtime of the child's own works.
        let mine = grove::Runtime::builder()
            .workers(2)
            .build()
            .map_err(|_| NEW_RUNTIME_FAILED)?;
        let v = mine.block_on(|| {
            let hs: Vec<_> = (0..100u64).map(|i| grove::spawn(move || i)).collect();
            grove::sleep(Duration::from_millis(5));
            hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        });
        if v != 4950 {
            return Err(NEW_RUNTIME_FAILED);
        }
        drop(mine);
        // All of it quickly: refusals are immediate, not timeouts.
        if start.elapsed() > Duration::from_secs(20) {
            return Err(NEW_RUNTIME_FAILED);
        }
        Ok(())
    };
    match run() {
        Ok(()) => OK,
        Err(code) => code,
    }
}

/// Waits for `pid` at most `bound`, killing it if it overstays. Returns its exit code,
/// or `None` if it had to be killed or died by a signal.
fn wait_bounded(pid: libc::pid_t, bound: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(rc >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if rc == pid {
            return libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
        }
        if start.elapsed() > bound {
            // SAFETY: signalling and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn forked_child_refuses_the_parents_runtime_and_builds_its_own() {
    if !common::is_child() {
        let out = common::run_child(
            "forked_child_refuses_the_parents_runtime_and_builds_its_own",
            &[],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
        assert!(stdout.contains("FORK OK"), "{stdout}\n{stderr}");
        return;
    }
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    // The runtime is busy in the parent when the fork happens: a parked greenlet, a
    // timer pending, the workers running.
    let ev = std::sync::Arc::new(grove::sync::Event::new());
    let parked = {
        let ev = ev.clone();
        rt.spawn(move || ev.wait())
    };
    assert_eq!(rt.block_on(|| grove::spawn(|| 6 * 7).join().unwrap()), 42);
    assert!(!rt.handle().in_forked_child());

    // SAFETY: fork has no memory-safety preconditions. The child uses only this thread
    // (the others are not copied), touches no lock another thread could have held
    // except through glibc's fork-safe allocator, and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = in_forked_child(rt);
        // SAFETY: ends the forked process without running the parent's atexit
        // handlers or the test harness's teardown twice.
        unsafe { libc::_exit(code) };
    }
    let code = wait_bounded(pid, Duration::from_secs(60));
    assert_eq!(
        code,
        Some(OK),
        "forked child's exit code (None: hung or crashed)"
    );

    // The parent's runtime is untouched by the fork.
    assert!(!rt.handle().in_forked_child());
    ev.set();
    parked.join().unwrap();
    assert_eq!(rt.block_on(|| 1), 1);
    drop(rt);
    println!("FORK OK");
}
