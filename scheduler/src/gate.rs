//! The shutdown drains' handshake (loom-checked): a flag that, once set, obliges
//! whoever pushes to a queue to drain that queue too.
//!
//! Two queues use it (`worker`, "Shutdown"):
//! * the runtime's global injector, with `Shared::shutdown`: `begin_shutdown` closes
//!   the gate, then cancels what the injector holds; a spawn from outside the workers
//!   pushes, then drains (cancels) too if it finds the gate closed;
//! * each worker's inbox, with `Remote::exited`: the hub closes it as it exits, then
//!   drops what the inbox holds; a wake from another thread pushes, then drains too if
//!   it finds the gate closed.
//!
//! # The protocol (Dekker's)
//! 1. The closer stores the flag, then issues a `SeqCst` fence ([`close`](Gate::close)),
//!    then drains.
//! 2. A pusher pushes, then issues a `SeqCst` fence and loads the flag
//!    ([`closed_after_push`](Gate::closed_after_push)); if it is set, it drains.
//!
//! The two fences are totally ordered: if the closer's comes first, the pusher's load
//! sees the flag; if the pusher's comes first, the closer's drain sees the push (the
//! queues answer emptiness with atomic loads, no lock: crossbeam's `steal` loads its
//! indices around a `SeqCst` fence). Either way nothing is left in the queue once both
//! are done, so no join waits on a greenlet nobody will ever cancel.
//! `loom-tests/tests/drain.rs` checks it, and fails without either fence.

// Items are `pub` so that `__loom` can re-export them to the loom tests.
#![allow(unreachable_pub)]

use crate::loom::{fence, AtomicBool, Ordering};

/// A one-way flag with the push/drain handshake above.
#[derive(Debug, Default)]
pub struct Gate(AtomicBool);

impl Gate {
    /// An open gate.
    pub fn new() -> Gate {
        Gate(AtomicBool::new(false))
    }

    /// Step 1: closes the gate. The caller drains the queue afterwards.
    pub fn close(&self) {
        self.0.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// True once closed (a cheap check before pushing; not a substitute for
    /// [`closed_after_push`](Self::closed_after_push)).
    pub fn is_closed(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Step 2, after a push: true if the gate is closed, in which case the caller
    /// drains the queue too.
    pub fn closed_after_push(&self) -> bool {
        fence(Ordering::SeqCst);
        self.0.load(Ordering::SeqCst)
    }
}
