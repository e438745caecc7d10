//! The greenlet API: spawning, joining, yielding, parking and blocking on futures.
//!
//! Three concerns, one file each, bottom to top: `park` (what the current greenlet does:
//! park, yield, wait on a future, its waker), `handle` ([`JoinHandle`] and [`Greenlet`]:
//! joining, waiting for, killing and linking to a greenlet), `spawn` ([`GreenletBuilder`]
//! and the `spawn` family: creating a greenlet and queuing it).
//!
//! Waiting for a greenlet comes in two kinds (see "Completion" in `task`): the owner's
//! [`JoinHandle::join`] / [`join_timeout`](JoinHandle::join_timeout) use the header's
//! single joiner slot; every other wait (`kill`, `wait_timeout`, [`Greenlet::wait`],
//! `on_finish`) adds a link, so any number of observers can wait at once.

mod handle;
mod park;
mod spawn;

pub use self::handle::{current, try_current, Greenlet, JoinHandle, LinkId};
pub use self::park::{
    block_on, current_waker, in_greenlet, in_greenlet_signal_safe, interrupt_pending, park,
    park_nounwind, park_on, park_timeout, park_timeout_on, park_until, park_until_on,
    with_extension, worker_index, yield_now, ParkStatus,
};
pub use self::spawn::{spawn, spawn_later, try_spawn, GreenletBuilder};
