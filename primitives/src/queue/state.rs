//! The protocol every queue kind and [`Channel`](super::Channel) share (the steps and
//! invariants are named in the `queue` module's docs).

use std::collections::VecDeque;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::{
    Closed, GetTimeoutError, PutTimeoutError, TaskDoneError, TryGetError, TryPutError,
};
use super::storage::sealed::Slot;
use super::storage::Storage;
use crate::loom::Mutex;
use crate::waitlist::{lock, wait, WaitList};

/// How long an operation may block.
#[derive(Clone, Copy)]
enum Block {
    /// Not at all (`try_*`).
    No,
    /// Until the deadline (`None`: forever).
    Until(Option<Instant>),
}

impl Block {
    fn after(timeout: Duration) -> Block {
        Block::Until(Instant::now().checked_add(timeout))
    }

    /// The deadline to wait until, or `None` if the caller may not (or no longer) wait.
    fn deadline(self) -> Option<Option<Instant>> {
        match self {
            Block::No => None,
            Block::Until(Some(d)) if Instant::now() >= d => None,
            Block::Until(d) => Some(d),
        }
    }
}

/// Why a put failed, before the public methods name it per operation.
enum PutFail<T> {
    /// Full (or, for a Channel, no getter) and the caller could wait no longer.
    WouldBlock(T),
    Closed(T),
}

/// Why a get or peek failed.
enum GetFail {
    /// Empty (or, for a Channel, no putter) and the caller could wait no longer.
    WouldBlock,
    Closed,
}

/// A blocked putter's item, queued where a getter can take it (step P3).
struct Offer<T> {
    /// `Some` while the item is on offer; a getter takes it (P4/G2), a withdrawing
    /// putter takes it back (P5).
    item: Option<T>,
    /// The putter alone waits here, to be told that its offer left the queue (taken,
    /// or closed out).
    done: WaitList<()>,
}

impl<T> Offer<T> {
    /// Takes the item of an offer just popped from `putters`, and tells its putter.
    /// (If that putter is already withdrawing, the notice finds nobody: its
    /// withdrawal then sees the item gone, and its put has happened.)
    fn accept(offer: &Mutex<Offer<T>>) -> T {
        let mut o = lock(offer);
        let item = o
            .item
            .take()
            .expect("Offer::accept: a queued offer always holds its item");
        let _ = o.done.notify_one(());
        item
    }
}

/// What a putter finds when it withdraws its offer (P5).
enum Left<T> {
    /// A getter took the item: the put happened.
    Taken,
    /// Still queued: the putter takes its item back (deadline or cancellation).
    Queued(T),
    /// `close` removed the offer: the putter takes its item back.
    ClosedOut(T),
}

struct State<T, S> {
    items: S,
    /// How many items `items` holds before putters block: `usize::MAX` for an
    /// unbounded queue, 0 for a Channel.
    capacity: usize,
    closed: bool,
    /// I1: non-empty only while `items` is empty.
    getters: WaitList<Option<T>>,
    /// I2: non-empty only while `items.len() >= capacity`.
    putters: VecDeque<Arc<Mutex<Offer<T>>>>,
    /// Blocked `peek`s, woken (all) when an item is stored or the queue closes.
    peekers: WaitList<()>,
    /// Items put and not yet marked done (`task_done`).
    unfinished: usize,
    /// Blocked `join`s, woken (all) when `unfinished` drops to 0.
    joiners: WaitList<()>,
}

impl<T, S: Storage<T>> State<T, S> {
    /// P1 (and G5's pass-on): hands `item` to the first blocked getter, or gives it
    /// back if nobody waits.
    fn hand_to_getter(&mut self, item: T) -> Result<(), T> {
        if self.getters.len() == 0 {
            return Err(item);
        }
        let handed = self.getters.notify_one(Some(item));
        debug_assert!(handed.is_ok(), "State::hand_to_getter: waiter vanished");
        Ok(())
    }

    /// Stores a newly put item.
    fn store(&mut self, item: T) {
        // Counted first: a `PriorityQueue` push runs the user's `Ord`, and if that
        // panics the item is in the heap all the same (`BinaryHeap` keeps it).
        self.unfinished += 1;
        self.items.push(Slot::Owned(item));
        self.peekers.notify_all(|| ());
    }

    /// G1–G2: the next item without waiting, admitting blocked putters into the room
    /// it leaves; `None` if there is none. Take the item out of the slot
    /// ([`Slot::into_item`]) once the lock is released.
    fn take(&mut self) -> Option<Slot<T>> {
        if let Some(item) = self.items.pop() {
            while self.items.len() < self.capacity {
                let Some(offer) = self.putters.pop_front() else {
                    break;
                };
                let admitted = Offer::accept(&offer);
                self.store(admitted);
            }
            return Some(item);
        }
        // Nothing stored: a Channel takes the first blocked putter's item directly.
        let offer = self.putters.pop_front()?;
        self.unfinished += 1;
        Some(Slot::Owned(Offer::accept(&offer)))
    }

    /// How long a getter or peeker that found nothing may wait: `Closed` once the
    /// queue is closed, `WouldBlock` if it may not (or no longer) wait.
    fn may_wait(&self, block: Block) -> Result<Option<Instant>, GetFail> {
        if self.closed {
            return Err(GetFail::Closed);
        }
        block.deadline().ok_or(GetFail::WouldBlock)
    }

    /// G5: the pass-on of a getter cancelled after it was handed an item: the next
    /// getter gets it, or it goes back to the front of the queue.
    fn give_back(&mut self, handed: Option<T>) {
        let Some(item) = handed else {
            return; // a close notice: owed to nobody
        };
        if let Err(item) = self.hand_to_getter(item) {
            self.items.unget(Slot::Owned(item));
            self.peekers.notify_all(|| ());
        }
    }
}

/// The shared state behind a queue handle, and the operations on it.
pub(super) struct Inner<T, S> {
    state: Arc<Mutex<State<T, S>>>,
}

impl<T, S> Clone for Inner<T, S> {
    fn clone(&self) -> Self {
        Inner {
            state: Arc::clone(&self.state),
        }
    }
}

impl<T, S: Storage<T>> Inner<T, S> {
    pub(super) fn new(capacity: usize) -> Self {
        Inner {
            state: Arc::new(Mutex::new(State {
                items: S::default(),
                capacity,
                closed: false,
                getters: WaitList::default(),
                putters: VecDeque::new(),
                peekers: WaitList::default(),
                unfinished: 0,
                joiners: WaitList::default(),
            })),
        }
    }

    pub(super) fn put(&self, item: T) -> Result<(), Closed<T>> {
        match self.offer(item, Block::Until(None)) {
            Ok(()) => Ok(()),
            Err(PutFail::Closed(item)) => Err(Closed(item)),
            Err(PutFail::WouldBlock(_)) => unreachable!("Queue::put: waiting forever ended"),
        }
    }

    pub(super) fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
        self.offer(item, Block::No).map_err(|e| match e {
            PutFail::WouldBlock(item) => TryPutError::Full(item),
            PutFail::Closed(item) => TryPutError::Closed(item),
        })
    }

    pub(super) fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        self.offer(item, Block::after(timeout))
            .map_err(|e| match e {
                PutFail::WouldBlock(item) => PutTimeoutError::Timeout(item),
                PutFail::Closed(item) => PutTimeoutError::Closed(item),
            })
    }

    pub(super) fn get(&self) -> Result<T, Closed> {
        self.take(Block::Until(None)).map_err(forever)
    }

    pub(super) fn try_get(&self) -> Result<T, TryGetError> {
        self.take(Block::No).map_err(try_error)
    }

    pub(super) fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        self.take(Block::after(timeout)).map_err(timeout_error)
    }

    pub(super) fn peek(&self) -> Result<T, Closed>
    where
        T: Clone,
    {
        self.look(Block::Until(None)).map_err(forever)
    }

    pub(super) fn try_peek(&self) -> Result<T, TryGetError>
    where
        T: Clone,
    {
        self.look(Block::No).map_err(try_error)
    }

    pub(super) fn try_peek_with<R>(&self, f: impl FnOnce(&T) -> R) -> Result<R, TryGetError> {
        let s = lock(&self.state);
        match s.items.peek() {
            Some(slot) => Ok(slot.with(f)),
            None if s.closed => Err(TryGetError::Closed),
            None => Err(TryGetError::Empty),
        }
    }

    pub(super) fn peek_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError>
    where
        T: Clone,
    {
        self.look(Block::after(timeout)).map_err(timeout_error)
    }

    /// P1–P5.
    fn offer(&self, item: T, block: Block) -> Result<(), PutFail<T>> {
        let mut s = lock(&self.state);
        if s.closed {
            return Err(PutFail::Closed(item));
        }
        // P1. A getter waits (so, by I1, nothing is stored): hand the item to it.
        let item = match s.hand_to_getter(item) {
            Ok(()) => {
                s.unfinished += 1;
                return Ok(());
            }
            Err(item) => item,
        };
        // P2. Room (by I2 nobody is queued ahead of us): store it.
        if s.items.len() < s.capacity {
            s.store(item);
            return Ok(());
        }
        let Some(deadline) = block.deadline() else {
            return Err(PutFail::WouldBlock(item));
        };
        // P3. Full: queue the item where a getter can take it, and wait to be told.
        let offer = Arc::new(Mutex::new(Offer {
            item: Some(item),
            done: WaitList::default(),
        }));
        // Lock the offer before publishing it: no getter can accept it (which locks it)
        // until `wait` has linked us into `done` and released it.
        let offer_guard = lock(&offer);
        s.putters.push_back(Arc::clone(&offer));
        drop(s);
        let woken = panic::catch_unwind(AssertUnwindSafe(|| {
            wait(
                grove_scheduler::WaitReason::QUEUE_PUT,
                offer_guard,
                &offer,
                |o| &mut o.done,
                deadline,
                |_, ()| {},
            )
        }));
        // P4/P5. What became of the offer.
        let left = match woken {
            // Told: the offer has left the queue, taken or closed out.
            Ok(Some(())) => match lock(&offer).item.take() {
                None => Left::Taken,
                Some(item) => Left::ClosedOut(item),
            },
            // Deadline or unwinding: withdraw it, unless it was taken meanwhile.
            Ok(None) | Err(_) => self.withdraw(&offer),
        };
        match (woken, left) {
            (Ok(_), Left::Taken) => Ok(()),
            (Ok(_), Left::Queued(item)) => Err(PutFail::WouldBlock(item)),
            (Ok(_), Left::ClosedOut(item)) => Err(PutFail::Closed(item)),
            (Err(unwind), left) => {
                // Killed or timed out by a `Timeout` scope: an item not taken is
                // dropped with this putter's stack (it is no longer queued).
                drop(left);
                panic::resume_unwind(unwind)
            }
        }
    }

    /// P5: takes a putter's offer out of the queue, under the queue's lock.
    fn withdraw(&self, offer: &Arc<Mutex<Offer<T>>>) -> Left<T> {
        let mut s = lock(&self.state);
        let queued = match s.putters.iter().position(|o| Arc::ptr_eq(o, offer)) {
            Some(pos) => s.putters.remove(pos).is_some(),
            None => false,
        };
        drop(s);
        // Once out of `putters` nobody but us touches the item.
        match (lock(offer).item.take(), queued) {
            (None, _) => Left::Taken,
            (Some(item), true) => Left::Queued(item),
            (Some(item), false) => Left::ClosedOut(item),
        }
    }

    /// G1–G5.
    fn take(&self, block: Block) -> Result<T, GetFail> {
        let mut s = lock(&self.state);
        if let Some(slot) = s.take() {
            drop(s);
            return Ok(slot.into_item());
        }
        let deadline = s.may_wait(block)?;
        // G3. Nothing to take: wait to be handed an item (P1).
        match wait(
            grove_scheduler::WaitReason::QUEUE_GET,
            s,
            &self.state,
            |s| &mut s.getters,
            deadline,
            State::give_back,
        ) {
            Some(Some(item)) => Ok(item),
            // G4. Closed: an item a cancelled getter gave back since is still ours.
            Some(None) => {
                let slot = lock(&self.state).take();
                slot.map(Slot::into_item).ok_or(GetFail::Closed)
            }
            None => Err(GetFail::WouldBlock),
        }
    }

    /// A peek: a copy of the next item, waiting for one to be stored. The copy
    /// (`T::clone`, user code) is made with the queue unlocked, from the item lent
    /// (see [`Slot`]) where it stays in the queue.
    fn look(&self, block: Block) -> Result<T, GetFail>
    where
        T: Clone,
    {
        loop {
            let mut s = lock(&self.state);
            if let Some(slot) = s.items.pop() {
                // Lend the next item where it is (`unget` puts it back as the next).
                let (slot, share) = slot.lend();
                s.items.unget(slot);
                drop(s);
                let copy = lock(&share).as_ref().map(T::clone);
                drop(share);
                match copy {
                    Some(copy) => return Ok(copy),
                    // A get took it meanwhile: look again.
                    None => continue,
                }
            }
            let deadline = s.may_wait(block)?;
            // Woken (every peeker is) or at the deadline: look again. A wake-up
            // consumed by a cancelled peeker is owed to nobody.
            let _ = wait(
                grove_scheduler::WaitReason::QUEUE_PEEK,
                s,
                &self.state,
                |s| &mut s.peekers,
                deadline,
                |_, ()| {},
            );
        }
    }

    pub(super) fn close(&self) {
        let mut s = lock(&self.state);
        s.closed = true;
        // By I1, getters wait only while nothing is stored: tell them it is over.
        s.getters.notify_all(|| None);
        s.peekers.notify_all(|| ());
        // Putters take their items back (P4 finds the offer closed out).
        for offer in std::mem::take(&mut s.putters) {
            let _ = lock(&offer).done.notify_one(());
        }
    }

    pub(super) fn task_done(&self) -> Result<(), TaskDoneError> {
        let mut s = lock(&self.state);
        if s.unfinished == 0 {
            return Err(TaskDoneError);
        }
        s.unfinished -= 1;
        if s.unfinished == 0 {
            s.joiners.notify_all(|| ());
        }
        Ok(())
    }

    /// Waits until no item is unfinished, or the deadline; true if none is.
    pub(super) fn join(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let s = lock(&self.state);
        if s.unfinished == 0 {
            return true;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        // Every joiner is woken: a wake-up consumed by a cancelled one is owed to nobody.
        match wait(
            grove_scheduler::WaitReason::QUEUE_JOIN,
            s,
            &self.state,
            |s| &mut s.joiners,
            deadline,
            |_, ()| {},
        ) {
            Some(()) => true,
            None => self.unfinished() == 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        lock(&self.state).items.len()
    }

    pub(super) fn capacity(&self) -> usize {
        lock(&self.state).capacity
    }

    pub(super) fn is_closed(&self) -> bool {
        lock(&self.state).closed
    }

    pub(super) fn getting(&self) -> usize {
        lock(&self.state).getters.len()
    }

    pub(super) fn putting(&self) -> usize {
        lock(&self.state).putters.len()
    }

    pub(super) fn unfinished(&self) -> usize {
        lock(&self.state).unfinished
    }

    /// `Debug` for the public handles (items need not be `Debug`).
    pub(super) fn debug(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.state);
        let mut d = f.debug_struct(name);
        d.field("len", &s.items.len());
        if s.capacity != usize::MAX {
            d.field("capacity", &s.capacity);
        }
        d.field("closed", &s.closed)
            .field("getting", &s.getters.len())
            .field("putting", &s.putters.len())
            .field("peeking", &s.peekers.len())
            .field("unfinished", &s.unfinished)
            .finish()
    }
}

fn forever(e: GetFail) -> Closed {
    match e {
        GetFail::Closed => Closed(()),
        GetFail::WouldBlock => unreachable!("Queue::get: waiting forever ended"),
    }
}

fn try_error(e: GetFail) -> TryGetError {
    match e {
        GetFail::WouldBlock => TryGetError::Empty,
        GetFail::Closed => TryGetError::Closed,
    }
}

fn timeout_error(e: GetFail) -> GetTimeoutError {
    match e {
        GetFail::WouldBlock => GetTimeoutError::Timeout,
        GetFail::Closed => GetTimeoutError::Closed,
    }
}
