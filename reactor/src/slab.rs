//! The slab of registrations: token → readiness state, with generations.
//!
//! A token is `index | generation << INDEX_BITS`. Removing a registration bumps its slot's
//! generation, so a late event for it (harvested before the deregistration, dispatched after)
//! resolves to nothing rather than to the slot's next occupant, which would otherwise be told
//! it is ready when it is not (a spurious wake at best; with the tick protocol, readiness kept
//! that no event justifies). The slab has no lock of its own: the driver keeps it in a mutex,
//! which harvesters take once per batch of events. Loom model
//! `late_event_never_reaches_the_next_occupant` (`loom-tests/tests/reactor.rs`).

use std::io;
use std::sync::Arc;

use mio::Token;

use crate::scheduled_io::{shutdown_error, ScheduledIo};

/// Low bits of a token: the slab index. The rest (minus the top bit): the slot's generation,
/// so a late event for a dropped registration never reaches the slot's next occupant.
const INDEX_BITS: u32 = if usize::BITS >= 64 { 32 } else { 20 };
const INDEX_MASK: usize = (1 << INDEX_BITS) - 1;
const GENERATION_MASK: usize = (usize::MAX >> 1) >> INDEX_BITS;

/// Slab of registrations. Vacant slots are chained through `free`.
pub struct IoSlab {
    slots: Vec<IoSlot>,
    free: Vec<usize>,
    /// Set under the lock at shutdown: later inserts fail.
    closed: bool,
}

struct IoSlot {
    generation: usize,
    io: Option<Arc<ScheduledIo>>,
}

impl IoSlab {
    /// An empty, open slab.
    pub fn new() -> IoSlab {
        IoSlab {
            slots: Vec::new(),
            free: Vec::new(),
            closed: false,
        }
    }

    /// Stores `io` in a free slot; its token carries the slot's generation. Fails once closed.
    pub fn insert(&mut self, io: Arc<ScheduledIo>) -> io::Result<Token> {
        if self.closed {
            return Err(shutdown_error());
        }
        let index = match self.free.pop() {
            Some(index) => index,
            None if self.slots.len() < INDEX_MASK => {
                self.slots.push(IoSlot {
                    generation: 0,
                    io: None,
                });
                self.slots.len() - 1
            }
            None => {
                return Err(io::Error::other(
                    "grove reactor: too many registered sources",
                ))
            }
        };
        let slot = &mut self.slots[index];
        slot.io = Some(io);
        Ok(Token(index | (slot.generation << INDEX_BITS)))
    }

    /// The state `token` names, if its registration is still there (a late event for a dropped
    /// registration finds `None`, even if the slot has a new occupant).
    pub fn get(&self, token: Token) -> Option<&Arc<ScheduledIo>> {
        let slot = self.slots.get(token.0 & INDEX_MASK)?;
        if slot.generation != token.0 >> INDEX_BITS {
            return None;
        }
        slot.io.as_ref()
    }

    /// Removes the entry for `token`, if it is still there, and retires the slot's generation.
    pub fn remove(&mut self, token: Token) -> Option<Arc<ScheduledIo>> {
        let index = token.0 & INDEX_MASK;
        let slot = self.slots.get_mut(index)?;
        if slot.generation != token.0 >> INDEX_BITS {
            return None;
        }
        let io = slot.io.take()?;
        slot.generation = (slot.generation + 1) & GENERATION_MASK;
        self.free.push(index);
        Some(io)
    }

    /// Live registrations.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Refuses every later insert (shutdown step S4).
    pub fn close(&mut self) {
        self.closed = true;
    }

    /// Every live registration's state.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ScheduledIo>> {
        self.slots.iter().filter_map(|slot| slot.io.as_ref())
    }
}

impl Default for IoSlab {
    fn default() -> IoSlab {
        IoSlab::new()
    }
}

impl std::fmt::Debug for IoSlab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoSlab")
            .field("live", &self.len())
            .field("closed", &self.closed)
            .finish()
    }
}
