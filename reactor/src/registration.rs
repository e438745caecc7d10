//! [`Registration`]: one registered source's handle on its readiness.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};

use mio::{Interest, Token};

use crate::scheduled_io::ScheduledIo;
use crate::shared::Shared;
use crate::Direction;

/// A source registered with the reactor by [`Handle::register`](crate::Handle::register).
///
/// `Send + Sync`. At most one task may wait per [`Direction`] at a time (one reader and one
/// writer): a second waiter's waker replaces the first's, which is then never woken. Callers that
/// share a source between tasks must serialize each direction (gevent raises
/// `ConcurrentObjectUseError` in that case).
///
/// Dropping a `Registration` forgets the source's readiness; [`deregister`](Self::deregister)
/// also removes the source from the poll (closing the fd does that too).
///
/// # Usage (edge-triggered)
///
/// ```text
/// loop {
///     match source.read(buf) {
///         Err(e) if e.kind() == WouldBlock => {
///             registration.clear_readiness(Direction::Read);
///             // park until `poll_ready(Direction::Read, cx)` returns Ready, then retry
///         }
///         result => return result,
///     }
/// }
/// ```
pub struct Registration {
    shared: Arc<Shared>,
    io: Arc<ScheduledIo>,
    token: Token,
}

impl Registration {
    pub(crate) fn new(shared: Arc<Shared>, io: Arc<ScheduledIo>, token: Token) -> Registration {
        Registration { shared, io, token }
    }

    /// Polls readiness in `dir`.
    ///
    /// * `Ready(Ok(()))`: the source is (or may be) ready in `dir`, or closed or in error in
    ///   that direction; attempt the operation, it reports EOF or the error itself.
    /// * `Pending`: `cx`'s waker is stored and will be woken by the next event for `dir` (or by
    ///   shutdown). No wakeup is lost if that event arrives while this call runs.
    /// * `Ready(Err(_))`: the reactor has shut down.
    ///
    /// A fresh registration is not ready until its first event; with edge triggering mio
    /// reports the current state right after registration, so this costs one event.
    pub fn poll_ready(&self, dir: Direction, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io.poll_ready(dir, cx)
    }

    /// Forgets readiness in `dir`; call it when an operation returned `WouldBlock`.
    ///
    /// Keeps the readiness if an event arrived after the last `poll_ready` of this direction
    /// that returned `Ready` (it may carry data that arrived after the `WouldBlock`), so the next
    /// `poll_ready` returns `Ready` and the retry finds the data. Never clears the closed states.
    pub fn clear_readiness(&self, dir: Direction) {
        self.io.clear_readiness(dir);
    }

    /// Changes the interest of the registered source (`mio::Registry::reregister`).
    pub fn reregister<S: mio::event::Source + ?Sized>(
        &self,
        source: &mut S,
        interest: Interest,
    ) -> io::Result<()> {
        self.shared
            .registry
            .reregister(source, self.token, interest)
    }

    /// Removes `source` from the poll and drops this registration.
    pub fn deregister<S: mio::event::Source + ?Sized>(self, source: &mut S) -> io::Result<()> {
        self.shared.registry.deregister(source)
        // `self` drops here, freeing the slab slot.
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Late events for this token are ignored from now on: the slot's generation changes.
        let removed = self.shared.slab_remove(self.token);
        drop(removed);
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("token", &self.token)
            .field("io", &self.io)
            .finish()
    }
}
