//! The membership and slot accounting of `Group` and `Pool` (the `pool` module's docs
//! describe the protocol), generic over the member so that the loom models
//! (`loom-tests/tests/pool.rs`) drive this very code with a stand-in for a greenlet.

// Items are `pub` so that `__loom` can re-export them to the loom tests; in the normal
// build the module is private and they stay crate-internal.
#![allow(unreachable_pub)]

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Instant;

use crate::loom::{Mutex, MutexGuard};
use crate::waitlist::{lock, wait, WaitList};

/// What the pool needs of a member: the scheduler's `Greenlet`, or a model's stand-in.
pub trait Member: Clone + Send + 'static {
    /// Process-unique id.
    fn id(&self) -> u64;
    /// True once finished (before its `on_finish` callbacks run).
    fn is_finished(&self) -> bool;
    /// Runs `f` once finished, right away (on the caller) if it already is.
    fn on_finish(&self, f: Box<dyn FnOnce() + Send>);
}

/// The state a `Group` or `Pool` shares with its clones and its members' links.
pub struct Core<M> {
    state: Mutex<CoreState<M>>,
}

impl<M> std::fmt::Debug for Core<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core").finish_non_exhaustive()
    }
}

pub(super) struct CoreState<M> {
    /// `None` for a group; the number of slots for a pool.
    limit: Option<usize>,
    members: HashMap<u64, M>,
    /// Slots taken: by members, and by spawns between taking a slot and becoming one.
    pub(super) used: usize,
    slot_waiters: WaitList<()>,
    empty_waiters: WaitList<()>,
}

impl<M: Member> CoreState<M> {
    /// Gives a slot back: to the first waiter if any (direct hand-off), else free.
    pub(super) fn release_slot(&mut self) {
        if self.limit.is_some() && self.slot_waiters.notify_one(()).is_err() {
            self.used -= 1;
        }
    }

    /// Takes a free slot if there is one (never while others wait: see hand-off).
    fn try_take_slot(&mut self) -> bool {
        match self.limit {
            None => true,
            Some(n) if self.used < n => {
                self.used += 1;
                true
            }
            Some(_) => false,
        }
    }

    /// Ends a membership, once: whoever removes the member gives its slot back. Returns
    /// the member's reference, to be dropped **after** unlocking: it may be the last one
    /// to a detached greenlet, whose result's `Drop` (user code) may use this pool.
    #[must_use = "drop the removed member outside the lock"]
    fn remove(&mut self, id: u64) -> Option<M> {
        let g = self.members.remove(&id)?;
        self.release_slot();
        if self.members.is_empty() {
            self.empty_waiters.notify_all(|| ());
        }
        Some(g)
    }

    /// Ends the memberships of members already seen finished (see the module docs),
    /// moving their references into `dead`, to be dropped after unlocking.
    fn prune(&mut self, dead: &mut Vec<M>) {
        if !self.members.values().any(M::is_finished) {
            return;
        }
        let done: Vec<u64> = self
            .members
            .iter()
            .filter(|(_, g)| g.is_finished())
            .map(|(id, _)| *id)
            .collect();
        dead.extend(done.into_iter().filter_map(|id| self.remove(id)));
    }
}

impl<M: Member> Core<M> {
    /// A group (`limit: None`) or a pool of `limit` slots.
    pub fn new(limit: Option<usize>) -> Arc<Core<M>> {
        Arc::new(Core {
            state: Mutex::new(CoreState {
                limit,
                members: HashMap::new(),
                used: 0,
                slot_waiters: WaitList::default(),
                empty_waiters: WaitList::default(),
            }),
        })
    }

    /// Makes `g` a member (holding a slot already taken, for a pool) until it finishes.
    pub fn insert(self: &Arc<Core<M>>, g: M) {
        let id = g.id();
        let old = lock(&self.state).members.insert(id, g.clone());
        if old.is_some() {
            return; // already a member, already linked
        }
        let core: Weak<Core<M>> = Arc::downgrade(self);
        // Outside the lock: if `g` has already finished, this runs right here.
        g.on_finish(Box::new(move || {
            if let Some(core) = core.upgrade() {
                // The removed member is dropped after the lock (statement's end).
                let removed = lock(&core.state).remove(id);
                drop(removed);
            }
        }));
    }

    /// Locks the state after pruning finished members, whose references are dropped
    /// first, unlocked (see [`CoreState::remove`]).
    pub(super) fn pruned(&self) -> MutexGuard<'_, CoreState<M>> {
        let mut dead = Vec::new();
        lock(&self.state).prune(&mut dead);
        drop(dead);
        lock(&self.state)
    }

    /// Takes a slot, waiting until `deadline` (None: no limit); false at the deadline.
    pub fn acquire(&self, deadline: Option<Instant>) -> bool {
        let mut s = self.pruned();
        if s.try_take_slot() {
            return true;
        }
        // A slot handed to us that we will not use (unwound, or at the deadline) goes
        // to the next waiter.
        wait(
            grove_scheduler::WaitReason::POOL_SLOT,
            s,
            &self.state,
            |s| &mut s.slot_waiters,
            deadline,
            |s, ()| s.release_slot(),
        )
        .is_some()
    }

    /// Takes a free slot if there is one.
    pub fn try_acquire(&self) -> bool {
        self.pruned().try_take_slot()
    }

    /// Gives back a slot taken but not used (a spawn that failed, `wait_available`).
    pub fn release_slot(&self) {
        lock(&self.state).release_slot();
    }

    /// Members not seen finished.
    // Public only under loom (re-exported to the models), which need no `is_empty`.
    #[cfg_attr(grove_loom, allow(clippy::len_without_is_empty))]
    pub fn len(&self) -> usize {
        self.pruned().members.len()
    }

    /// The members not seen finished.
    pub fn members(&self) -> Vec<M> {
        self.pruned().members.values().cloned().collect()
    }

    /// Waits until there are no members; false at the deadline.
    pub fn wait_empty(&self, deadline: Option<Instant>) -> bool {
        let s = self.pruned();
        if s.members.is_empty() {
            return true;
        }
        // `notify_all` wakes every waiter: a consumed wake-up is owed to nobody.
        if wait(
            grove_scheduler::WaitReason::GROUP_JOIN,
            s,
            &self.state,
            |s| &mut s.empty_waiters,
            deadline,
            |_, ()| {},
        )
        .is_some()
        {
            return true;
        }
        self.pruned().members.is_empty()
    }

    /// Slots taken, members (finished or not) and spawners waiting for a slot, as
    /// they stand (for `Debug` and the models).
    pub fn counts(&self) -> (usize, usize, usize) {
        let s = lock(&self.state);
        (s.used, s.members.len(), s.slot_waiters.len())
    }
}
