//! Why a parked greenlet waits (Go's `waitReason`): what run-info dumps and the monitor show.

use std::fmt;

/// What a parked greenlet waits on, as [`park_on`](crate::park_on) and its kin record it:
/// run-info dumps ([`run_info`](crate::run_info), `Runtime::dump`) and shutdown reports
/// then show the greenlet as waiting on it rather than just "parked" (Go's `waitReason`).
///
/// grove's own waits have names here ([`WaitReason::EVENT_WAIT`], [`WaitReason::SLEEP`],
/// ...); a primitive of your own gives its own with [`WaitReason::custom`]. A reason is one
/// pointer to `'static` text, so recording it costs a park one store.
///
/// ```
/// use grove_scheduler::WaitReason;
///
/// const RECV: WaitReason = WaitReason::custom(&"my_channel::recv");
/// assert_eq!(RECV.to_string(), "my_channel::recv");
/// assert_eq!(WaitReason::EVENT_WAIT.as_str(), "Event::wait");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WaitReason(&'static &'static str);

impl WaitReason {
    /// [`JoinHandle::join`](crate::JoinHandle::join) and its timed variants.
    pub const JOIN: WaitReason = WaitReason(&"JoinHandle::join");
    /// [`Greenlet::wait`](crate::Greenlet::wait): waiting for another greenlet to end.
    pub const GREENLET_WAIT: WaitReason = WaitReason(&"Greenlet::wait");
    /// [`block_on`](crate::block_on): a future that is not ready.
    pub const BLOCK_ON: WaitReason = WaitReason(&"block_on(future)");
    /// `grove::sleep`, `grove::sleep_until`.
    pub const SLEEP: WaitReason = WaitReason(&"sleep");
    /// `Event::wait`.
    pub const EVENT_WAIT: WaitReason = WaitReason(&"Event::wait");
    /// `AsyncResult::wait` / `get`.
    pub const ASYNC_RESULT_WAIT: WaitReason = WaitReason(&"AsyncResult::wait");
    /// `Queue::get` (and the other queues' and channels' receives).
    pub const QUEUE_GET: WaitReason = WaitReason(&"Queue::get");
    /// `Queue::put` on a full bounded queue (and the others' and channels' sends).
    pub const QUEUE_PUT: WaitReason = WaitReason(&"Queue::put (full)");
    /// `Queue::peek`.
    pub const QUEUE_PEEK: WaitReason = WaitReason(&"Queue::peek");
    /// `Queue::join`: waiting for every item's `task_done`.
    pub const QUEUE_JOIN: WaitReason = WaitReason(&"Queue::join");
    /// `Lock::lock`.
    pub const LOCK: WaitReason = WaitReason(&"Lock::lock");
    /// `RLock::lock`.
    pub const RLOCK: WaitReason = WaitReason(&"RLock::lock");
    /// `Semaphore::acquire` (and `BoundedSemaphore`'s).
    pub const SEMAPHORE_ACQUIRE: WaitReason = WaitReason(&"Semaphore::acquire");
    /// `Pool::spawn` on a full pool: waiting for a free slot.
    pub const POOL_SLOT: WaitReason = WaitReason(&"Pool: waiting for a free slot");
    /// `Group::join` / `Pool::join`.
    pub const GROUP_JOIN: WaitReason = WaitReason(&"Group::join");
    /// Joining a call on the blocking pool (`blocking::spawn_blocking`).
    pub const BLOCKING_JOIN: WaitReason = WaitReason(&"BlockingHandle::join");
    /// A green socket waiting to read or accept.
    pub const SOCKET_READ: WaitReason = WaitReason(&"socket: read/accept");
    /// A green socket waiting to write or connect.
    pub const SOCKET_WRITE: WaitReason = WaitReason(&"socket: write/connect");

    /// A reason of your own: a `&'static str` behind a `'static` reference — a string
    /// literal with a `&` in front, `WaitReason::custom(&"my_channel::recv")` — so that a
    /// reason stays one pointer, which a park stores in a single atomic word.
    pub const fn custom(what: &'static &'static str) -> WaitReason {
        WaitReason(what)
    }

    /// The text shown for this reason.
    pub const fn as_str(self) -> &'static str {
        self.0
    }

    /// The pointer the greenlet header stores (`task::Header::waiting_on`).
    #[cfg_attr(grove_loom, allow(dead_code))]
    pub(crate) fn as_ptr(self) -> *mut &'static str {
        self.0 as *const &'static str as *mut &'static str
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WaitReason").field(self.0).finish()
    }
}
