//! Deadlock detection: gevent's `LoopExit` ("This operation would block forever"), Go's
//! "all goroutines are asleep - deadlock!".
//!
//! # The problem
//! A program whose main greenlet waits for something nobody will ever do should get an error,
//! not hang. gevent can tell because it owns the only thread: when its loop has no timer, no
//! I/O watcher and no callback left, nothing can run again. Go can tell because it owns every
//! thread that runs Go code, and it turns the check off as soon as threads it does not own
//! (cgo) might call in. grove is harder on both counts: its primitives are deliberately
//! usable from plain OS threads (an `Event::set` from a `std::thread` wakes a greenlet), and a
//! library cannot see which thread holds a clone of an `Event`.
//!
//! # Rejected approaches
//! * *Counting runnable greenlets, timers and I/O waiters* (gevent's rule, transplanted): unsound
//!   here. A plain thread sleeping before it sets an `Event` is invisible to those counts, so a
//!   correct program would be killed.
//! * *A grace period* ("idle for a second means deadlocked"): unsound for the same thread after
//!   two seconds.
//! * *Tracking where primitive handles live*: needs a garbage collector's reachability.
//!
//! # What we prove instead (Linux)
//! The kernel knows what every thread of the process is doing. A thread asleep in an
//! **untimed, process-private futex wait** (`FUTEX_WAIT[_BITSET]|FUTEX_PRIVATE_FLAG` with no
//! timeout: every std `Mutex`, `Condvar`, channel `recv`, `thread::park` and `JoinHandle::join`)
//! can only be woken by *another thread of this process* (or a signal handler). If every thread
//! is asleep like that, or is one of the runtime's own helpers with nothing left to do, then no
//! thread will ever run again, so no greenlet will ever be woken: a deadlock, proven.
//!
//! The check runs on the thread blocked in [`Handle::block_on`](crate::Handle::block_on) (the
//! *checker*, excluded from the scan: it only waits for the main greenlet), off every hot path,
//! with exponential back-off (10 ms, 20 ms, … capped at 1 s):
//!
//! 1. The main greenlet is parked (cheap pre-check).
//! 2. **Snapshot S1**: for every other thread, `/proc/self/task/<tid>/status` (state and context
//!    switch counts) and, for non-helpers, `/proc/self/task/<tid>/syscall`. Every thread must be
//!    sleeping (`S`); a non-helper must be in an untimed private futex wait; otherwise stop.
//!    Helpers are the timer/I/O driver's threads ([`Timers::os_thread_ids`]: the reactor, in its
//!    `epoll_wait`) and [`HelperThread`]s (the blocking pool's idle threads, whose keep-alive
//!    wait is timed but whose waking up wakes nobody).
//! 3. The driver is quiet ([`Timers::is_quiet`]: no pending timer, no task waiting on I/O) and
//!    every registered helper is idle.
//! 4. **Snapshot S2**, taken the same way, must equal S1: the same threads, each with the same
//!    context-switch count. A thread that ran at any moment between S1 and S2 went through at
//!    least one context switch (to run it was woken; to be asleep again it switched out), or is
//!    still runnable (`R`) at S2. So every thread slept through the whole window, and the
//!    syscall read at S1 describes the same sleep as S2's state.
//! 5. The main greenlet is still parked: deliver the deadlock interrupt to it (like a kill, it
//!    unwinds from its blocking point; its join reports [`JoinError::is_deadlock`](crate::JoinError::is_deadlock)).
//!
//! Why that is enough: at S2 nothing can wake a futex sleeper but a running thread of the
//! process, and none runs; the driver holds no timer and no I/O waiter (step 3, and it slept
//! through the window, so it is not halfway through waking anyone); an idle helper wakes only
//! to retire. Workers with nothing to run sleep in an untimed condvar wait, so they pass as
//! ordinary futex sleepers; a worker that was notified and not yet scheduled is `R`. Reading
//! S1's threads one after another is not a consistent cut, and need not be: S2 re-reads each
//! thread *after* all of S1, so any activity that slipped between two S1 reads shows in S2.
//!
//! # Limits (documented in the README)
//! * Anything the kernel cannot see as "asleep in a private futex" makes the check stand down,
//!   soundly: a thread in `sleep`, a timed wait (`recv_timeout`, libtest's main thread), a
//!   `read` on a pipe or socket, `epoll_wait` of another event loop (tokio), another grove
//!   runtime's reactor, a busy loop. Then a real deadlock is not reported (the program hangs
//!   as before); a working program is never interrupted.
//! * A signal handler that wakes a greenlet directly is not seen (such handlers must not touch
//!   locks anyway; the usual `signal-hook`/`ctrlc` threads block in `read`, which stands down).
//! * Only the main greenlet of `block_on` is interrupted; other parked greenlets are unwound when
//!   the runtime shuts down, as always. A main greenlet that blocks again *while unwinding* (a
//!   `Drop` that waits) cannot be interrupted a second time.
//! * Other systems: no `/proc`, so the check never fires.

use std::collections::HashMap;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::loom::lock;
use crate::task::Header;
use crate::timers::Timers;

/// First back-off step of the checker.
pub(crate) const FIRST_CHECK: Duration = Duration::from_millis(10);
/// Longest back-off step: a deadlock that sets in late is reported within about a second.
pub(crate) const MAX_CHECK: Duration = Duration::from_secs(1);

/// Registered helper threads: tid → "busy" flag.
fn helpers() -> &'static Mutex<HashMap<u32, Arc<AtomicBool>>> {
    static HELPERS: OnceLock<Mutex<HashMap<u32, Arc<AtomicBool>>>> = OnceLock::new();
    HELPERS.get_or_init(Mutex::default)
}

/// A thread that serves greenlets and, while idle, wakes nobody: a blocking-pool thread
/// waiting for its next job. Registering it lets deadlock detection work while it idles in a
/// *timed* wait (its keep-alive), which the check would otherwise have to treat as a thread
/// that might wake a greenlet later.
///
/// The thread must call [`set_busy(true)`](Self::set_busy) before it starts anything that
/// may wake a greenlet and `set_busy(false)` only after that has finished. Unregisters on drop.
#[derive(Debug)]
pub struct HelperThread {
    tid: Option<u32>,
    busy: Arc<AtomicBool>,
}

impl HelperThread {
    /// Registers the calling thread, busy at first.
    pub fn register() -> HelperThread {
        let busy = Arc::new(AtomicBool::new(true));
        let tid = current_os_tid();
        if let Some(tid) = tid {
            lock(helpers()).insert(tid, busy.clone());
        }
        HelperThread { tid, busy }
    }

    /// Marks the thread busy (running a job) or idle (waiting for one).
    pub fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::SeqCst);
    }
}

impl Drop for HelperThread {
    fn drop(&mut self) {
        if let Some(tid) = self.tid {
            lock(helpers()).remove(&tid);
        }
    }
}

/// The calling thread's kernel thread id, from `/proc/thread-self` (no FFI needed).
pub(crate) fn current_os_tid() -> Option<u32> {
    let link = fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// One thread's sleep, as seen in a snapshot.
#[derive(Debug, PartialEq, Eq)]
struct Sleeper {
    tid: u32,
    switches: u64,
}

/// Steps 1–5: true if the runtime is provably deadlocked with `main` parked.
pub(crate) fn is_deadlocked(main: &Header, timers: Option<&dyn Timers>) -> bool {
    if !main.is_parked() {
        return false;
    }
    let Some(me) = current_os_tid() else {
        return false;
    };
    let driver_tids = timers.map(|t| t.os_thread_ids()).unwrap_or_default();
    let Some(s1) = snapshot(me, &driver_tids) else {
        return false;
    };
    if !timers.is_none_or(|t| t.is_quiet()) || !helpers_idle() {
        return false;
    }
    let Some(s2) = snapshot(me, &driver_tids) else {
        return false;
    };
    s1 == s2 && main.is_parked()
}

fn helpers_idle() -> bool {
    lock(helpers())
        .values()
        .all(|busy| !busy.load(Ordering::SeqCst))
}

/// Steps 2 and 4: every thread but `me`, asleep the provable way; `None` if any is not.
fn snapshot(me: u32, driver_tids: &[u32]) -> Option<Vec<Sleeper>> {
    let helper_tids: Vec<u32> = lock(helpers()).keys().copied().collect();
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc/self/task").ok()? {
        let tid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        if tid == me {
            continue;
        }
        let dir = format!("/proc/self/task/{tid}");
        let (state, switches) = parse_status(&fs::read_to_string(format!("{dir}/status")).ok()?)?;
        if state != 'S' {
            return None;
        }
        let helper = driver_tids.contains(&tid) || helper_tids.contains(&tid);
        if !helper
            && !is_untimed_private_futex_wait(&fs::read_to_string(format!("{dir}/syscall")).ok()?)
        {
            return None;
        }
        out.push(Sleeper { tid, switches });
    }
    out.sort_by_key(|s| s.tid);
    Some(out)
}

/// The state letter and total context switches from a `/proc/<tid>/status` text.
fn parse_status(status: &str) -> Option<(char, u64)> {
    let mut state = None;
    let mut switches = 0u64;
    let mut seen = 0;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("State:") {
            state = rest.trim().chars().next();
        } else if let Some(rest) = line
            .strip_prefix("voluntary_ctxt_switches:")
            .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
        {
            switches += rest.trim().parse::<u64>().ok()?;
            seen += 1;
        }
    }
    (seen == 2).then_some((state?, switches))
}

/// `futex` operation bits (linux/futex.h).
const FUTEX_WAIT: u64 = 0;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_PRIVATE_FLAG: u64 = 128;
const FUTEX_CLOCK_REALTIME: u64 = 256;

/// True if a `/proc/<tid>/syscall` text ("nr arg0 .. arg5 sp pc") shows a thread blocked in
/// `futex(uaddr, FUTEX_WAIT[_BITSET] | FUTEX_PRIVATE_FLAG, val, NULL, ...)`: a wait with no
/// timeout that only a thread of this process can end.
fn is_untimed_private_futex_wait(syscall: &str) -> bool {
    let mut fields = syscall.split_whitespace();
    let Some(Ok(nr)) = fields.next().map(str::parse::<i64>) else {
        return false; // "running", or "-1 sp pc" (blocked outside a syscall)
    };
    if nr != libc::SYS_futex {
        return false;
    }
    let args: Vec<u64> = fields
        .take(4)
        .filter_map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .collect();
    let [_uaddr, op, _val, timeout] = args[..] else {
        return false;
    };
    let cmd = op & !(FUTEX_PRIVATE_FLAG | FUTEX_CLOCK_REALTIME);
    (cmd == FUTEX_WAIT || cmd == FUTEX_WAIT_BITSET) && op & FUTEX_PRIVATE_FLAG != 0 && timeout == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn futex_lines() {
        let nr = libc::SYS_futex;
        assert!(is_untimed_private_futex_wait(&format!(
            "{nr} 0x5636ff533508 0x89 0xffffffff 0x0 0x0 0x7ffc 0x7ffd 0x7f24"
        )));
        assert!(is_untimed_private_futex_wait(&format!(
            "{nr} 0x5636ff533508 0x80 0x0 0x0 0x0 0x0 0x7ffd 0x7f24"
        )));
        // Timed (recv_timeout), shared (no private flag), a wake, not a futex at all.
        assert!(!is_untimed_private_futex_wait(&format!(
            "{nr} 0x5636ff533508 0x89 0xffffffff 0x7ffcd8d28650 0x0 0x7ffc 0x7ffd 0x7f24"
        )));
        assert!(!is_untimed_private_futex_wait(&format!(
            "{nr} 0x5636ff533508 0x9 0xffffffff 0x0 0x0 0x7ffc 0x7ffd 0x7f24"
        )));
        assert!(!is_untimed_private_futex_wait(&format!(
            "{nr} 0x5636ff533508 0x81 0x1 0x0 0x0 0x0 0x7ffd 0x7f24"
        )));
        assert!(!is_untimed_private_futex_wait(
            "0 0x4 0x7f 0x20 0xfff 0x0 0x1 0x7f 0x7f"
        ));
        assert!(!is_untimed_private_futex_wait("running"));
        assert!(!is_untimed_private_futex_wait("-1 0x7ffd 0x7f24"));
    }

    #[test]
    fn status_lines() {
        let s = "Name:\tx\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t3\nnonvoluntary_ctxt_switches:\t4\n";
        assert_eq!(parse_status(s), Some(('S', 7)));
        assert_eq!(parse_status("State:\tR (running)\n"), None);
    }
}
