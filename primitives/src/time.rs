//! Sleeping on the reactor's timers.
//!
//! A sleeping greenlet registers one timer carrying its waker and parks; its worker
//! runs other greenlets meanwhile. Wakes may be spurious (a stale waker from an
//! earlier wait), so the sleeper re-checks the clock and parks again until the
//! deadline has passed. If the sleeper is unwound mid-sleep (runtime shutdown, or a
//! kill later), the guard cancels its timer so no dead entry lingers.

use std::time::{Duration, Instant};

use grove_reactor::{Handle, TimerKey};

/// Cancels the timer if the sleep ends by unwinding.
struct TimerGuard<'a> {
    reactor: &'a Handle,
    key: Option<TimerKey>,
}

impl Drop for TimerGuard<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.reactor.cancel_timer(key);
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
    let reactor = crate::reactor(what);
    let key = reactor.add_timer(deadline, grove_scheduler::current_waker());
    let mut guard = TimerGuard {
        reactor: &reactor,
        key: Some(key),
    };
    loop {
        grove_scheduler::park_on(grove_scheduler::WaitReason::SLEEP);
        if reactor.is_shutdown() || Instant::now() >= deadline {
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
