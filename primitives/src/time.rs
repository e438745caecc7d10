//! Sleeping on the reactor's timers.
//!
//! A sleeping greenlet registers one timer carrying its waker and parks; its worker
//! runs other greenlets meanwhile. Wakes may be spurious (a stale waker from an
//! earlier wait), so the sleeper re-checks the clock and parks again until the
//! deadline has passed. If the sleeper is unwound mid-sleep (runtime shutdown, or a
//! kill later), the guard cancels its timer so no dead entry lingers.

use std::time::{Duration, Instant};

use grove_reactor::TimerKey;

/// Cancels the timer if the sleep ends by unwinding.
struct TimerGuard {
    key: Option<TimerKey>,
}

impl Drop for TimerGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // Off the runtime's threads there is no reactor to ask: the timer then fires
            // into a waker nobody waits on, or is drained when the reactor stops.
            crate::with_reactor(|r| r.map(|r| r.cancel_timer(key)));
        }
    }
}

/// Parks the current greenlet for at least `dur`, letting its worker run others.
///
/// `sleep(Duration::ZERO)` yields, like gevent's `sleep(0)`. A duration too large to
/// represent as a deadline sleeps until the runtime shuts down.
///
/// Panics if called outside a grove runtime.
pub fn sleep(dur: Duration) {
    if dur.is_zero() {
        if !grove_scheduler::in_greenlet() {
            crate::reactor("grove::sleep");
        }
        grove_scheduler::yield_now();
        return;
    }
    match Instant::now().checked_add(dur) {
        Some(deadline) => sleep_until_inner(deadline, "grove::sleep"),
        None => sleep_forever("grove::sleep"),
    }
}

/// Parks the current greenlet until `deadline` has passed.
///
/// Panics if called outside a grove runtime.
pub fn sleep_until(deadline: Instant) {
    if Instant::now() >= deadline {
        // Nothing to wait for: no timer, no park (but the same error outside a runtime).
        crate::reactor("grove::sleep_until");
        return;
    }
    sleep_until_inner(deadline, "grove::sleep_until");
}

/// Parks until `deadline`, which the caller has just seen in the future: so the first
/// park needs no clock read before it (under 100k sleepers the reads were a tenth of
/// the profile). Timers never fire early; the clock is read after each wake only to tell
/// the timer's wake from a spurious one.
fn sleep_until_inner(deadline: Instant, what: &str) {
    // The reactor is borrowed for each step rather than held across the park, which would
    // take a clone of its handle per sleep (see `with_reactor`).
    let key = crate::with_reactor(|r| {
        let r = r.unwrap_or_else(|| panic!("{}", crate::not_in_runtime(what)));
        r.add_timer(deadline, grove_scheduler::current_waker())
    });
    let mut guard = TimerGuard { key: Some(key) };
    loop {
        grove_scheduler::park_on(grove_scheduler::WaitReason::SLEEP);
        let shut_down = crate::with_reactor(|r| r.is_none_or(|r| r.is_shutdown()));
        if shut_down || Instant::now() >= deadline {
            break;
        }
    }
    // Fired (or the reactor is gone): nothing to cancel.
    guard.key = None;
}

fn sleep_forever(what: &str) {
    let reactor = crate::reactor(what);
    while !reactor.is_shutdown() {
        grove_scheduler::park_on(grove_scheduler::WaitReason::SLEEP);
    }
}
