//! grove's own panic payloads, and what a hub does with a caught payload.
//!
//! A kill, a deadlock interrupt, a shutdown and a `Timeout` unwind a greenlet from its
//! blocking point with one of these private payloads (see `worker::switch`, "Interrupts");
//! the greenlet's root tells them apart from a user's panic to report how it ended
//! (`JoinError::is_killed`, `is_deadlock`, `is_shutdown`, `is_timeout`).

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};

/// The private payload a kill unwinds with.
pub(crate) struct KillSignal;

/// The private payload a deadlock interrupt unwinds with.
pub(crate) struct DeadlockSignal;

/// The private payload a shutdown unwinds a greenlet with.
pub(crate) struct ShutdownSignal;

/// The private payload a timeout unwinds with: the id of the scope it belongs to.
pub(crate) struct TimeoutSignal(pub(crate) u64);

/// True if a panic payload is a kill, i.e. the greenlet was killed rather than panicked.
pub(crate) fn is_kill(payload: &(dyn Any + Send)) -> bool {
    payload.is::<KillSignal>()
}

/// True if a panic payload is a deadlock interrupt.
pub(crate) fn is_deadlock(payload: &(dyn Any + Send)) -> bool {
    payload.is::<DeadlockSignal>()
}

/// True if a panic payload is a shutdown's.
pub(crate) fn is_shutdown(payload: &(dyn Any + Send)) -> bool {
    payload.is::<ShutdownSignal>()
}

/// True if a panic payload is a timeout's (for the greenlet root's report).
pub(crate) fn is_timeout(payload: &(dyn Any + Send)) -> bool {
    payload.is::<TimeoutSignal>()
}

/// Drops a caught panic payload on a thread that must survive it (a hub). A payload is
/// a user's value and its `Drop` may panic too: that second panic is caught and its own
/// payload leaked (forgotten) rather than dropped, so disposal always ends here.
pub(crate) fn dispose_payload(payload: Box<dyn Any + Send>) {
    if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// A panic payload as text, for messages.
pub(crate) fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}
