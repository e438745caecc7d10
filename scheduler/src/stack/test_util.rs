//! Helpers shared by this crate's unit tests.

use std::process::{Command, Output};

/// Set in a child process re-running one test in "child mode".
pub(crate) const CHILD_ENV: &str = "GROVE_TEST_CHILD";

/// Whether this process is a child started by [`run_child`].
pub(crate) fn in_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Re-runs test `name` of module `module` (pass `module_path!()`) alone in a child process,
/// with `CHILD_ENV=1` and `envs`, and returns how it ended.
pub(crate) fn run_child(module: &str, name: &str, envs: &[(&str, &str)]) -> Output {
    let module = module.split_once("::").map_or("", |(_, rest)| rest);
    let test = format!("{module}::{name}");
    let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
    cmd.args(["--exact", &test, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn child test process")
}

/// For tests that count mappings or measure RSS, which neighbouring tests would disturb:
/// in the parent, runs test `name` alone in a child process, checks that it passed and returns
/// `false`; in that child, returns `true` and the test runs its body.
pub(crate) fn isolated(module: &str, name: &str) -> bool {
    if in_child() {
        return true;
    }
    let out = run_child(module, name, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "isolated run of {name} failed: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    false
}

/// Resident memory of this process, in bytes (`/proc/self/statm`).
pub(crate) fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("parse statm");
    pages * super::sys::page_size()
}

/// Number of mappings of this process (`/proc/self/maps` lines).
pub(crate) fn maps() -> usize {
    super::sys::map_count().expect("read /proc/self/maps")
}

/// Whether the byte at `addr` can be read, asked of the kernel (a `write` from it into a pipe
/// fails with `EFAULT` on guard pages) so that a guard does not kill the test.
pub(crate) fn readable(addr: usize) -> bool {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: the kernel validates the source address and reports EFAULT instead of faulting.
    let n = unsafe { libc::write(fds[1], addr as *const libc::c_void, 1) };
    // SAFETY: both descriptors were just opened by us.
    unsafe {
        libc::close(fds[0]);
        libc::close(fds[1]);
    }
    n == 1
}
