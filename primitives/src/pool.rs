//! `Group` and `Pool`: greenlets managed as a set (gevent's `gevent.pool`).
//!
//! # Vocabulary
//! * **member**: a greenlet spawned into (or added to) a group and not yet seen
//!   finished. Membership ends by itself when the greenlet finishes.
//! * **slot** (pools only): the right to have one member running. A pool of size `n`
//!   has `n`; a slot is taken before the greenlet is spawned and given back after it
//!   has finished, so at most `n` of its greenlets ever exist unfinished at once.
//!
//! # How membership ends
//! Each member gets a completion link ([`JoinHandle::on_finish`]) whose callback, in
//! the hub that completes it, removes it under the group's mutex, gives its slot back
//! and, if the group became empty, wakes `join`ers. The callback holds only a `Weak`,
//! so a dropped group costs nothing. Because that callback runs just *after* the
//! greenlet is seen finished (a joiner on another worker may get there first), every
//! read of the set (`len`, `free_count`, a spawn's slot check, `join`) first *prunes*
//! members already finished: whoever removes a member from the map (the callback or
//! a prune) gives its slot back, and only once. So once `is_finished()` is true for a
//! member, it no longer counts anywhere.
//!
//! # User code and the pool's lock
//! A member's `Greenlet` may be the last reference to a detached greenlet, so dropping
//! it may drop that greenlet's result: user code, which may use this very pool. So
//! members leave the map under the lock but are dropped after it (`CoreState::remove`
//! returns them); no user code ever runs under the pool's lock.
//!
//! # Backpressure (gevent's `Pool.spawn` blocks while the pool is full)
//! Slots are a semaphore built on the crate's `WaitList`: a spawner that finds no
//! free slot enqueues a ticket and parks (its greenlet, never its worker). A freed slot
//! is *handed directly* to the first waiter (FIFO, no barging), so the slot count never
//! moves in between. A waiter that is killed or timed out mid-wait is removed from the
//! list, and a slot already handed to it is passed on to the next waiter (or freed): no
//! slot is ever lost. A spawn that holds a slot but fails to spawn gives it back.
//!
//! # Rejected approaches
//! * A counter plus `Event`: waking every waiter per freed slot is a thundering herd and
//!   lets late arrivals barge past early ones.
//! * Counting a member's slot free only when someone joins it: a detached member would
//!   hold its slot forever.
//!
//! # Where the code lives
//! The accounting above (membership, slots, prune, hand-off) is `members.rs`, generic
//! over the member so that `loom-tests/tests/pool.rs` model-checks it with a stand-in
//! for a greenlet; this file adds spawning, killing and the public API.
//!
//! # Shutdown
//! Members still running when the runtime shuts down are cancelled by it; their links
//! fire then, so slots and membership are released and no `join` hangs.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::panic;
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::{Duration, Instant};

use grove_scheduler::{Greenlet, JoinError, JoinHandle};

use crate::waitlist::lock;

mod members;

use self::members::{Core, Member};

impl Member for Greenlet {
    fn id(&self) -> u64 {
        Greenlet::id(self)
    }
    fn is_finished(&self) -> bool {
        Greenlet::is_finished(self)
    }
    fn on_finish(&self, f: Box<dyn FnOnce() + Send>) {
        Greenlet::on_finish(self, f);
    }
}

impl Core<Greenlet> {
    /// Spawns `f` into a slot already taken, making it a member.
    #[track_caller]
    fn spawn_acquired<F, T>(self: &Arc<Self>, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_acquired_with(grove_scheduler::GreenletBuilder::new(), f)
    }

    /// [`spawn_acquired`](Self::spawn_acquired) with `b`'s options (name, spawn site).
    #[track_caller]
    fn spawn_acquired_with<F, T>(
        self: &Arc<Self>,
        b: grove_scheduler::GreenletBuilder,
        f: F,
    ) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // Gives the slot back if spawning unwinds.
        struct Release<'a>(&'a Core<Greenlet>, bool);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                if self.1 {
                    self.0.release_slot();
                }
            }
        }
        let mut guard = Release(self, true);
        let h = b.spawn(f);
        guard.1 = false;
        self.insert(h.greenlet());
        h
    }

    /// Kills every member and waits until they have finished; false at the deadline.
    /// Loops while members keep arriving (gevent's `while self.greenlets`). A member
    /// killing its own group is killed last, once the others are gone.
    fn kill(&self, deadline: Option<Instant>) -> bool {
        let me = grove_scheduler::try_current();
        let mut me_member = false;
        loop {
            let victims: Vec<Greenlet> = self
                .members()
                .into_iter()
                .filter(|g| {
                    let mine = me.as_ref() == Some(g);
                    me_member |= mine;
                    !mine
                })
                .collect();
            if victims.is_empty() {
                break;
            }
            // All kills first, so the victims unwind concurrently; then wait for each.
            for g in &victims {
                g.kill_nowait();
            }
            for g in &victims {
                match deadline {
                    Some(d) if !g.wait_until(d) => return false,
                    Some(_) => {}
                    None => g.wait(),
                }
            }
        }
        if let (true, Some(me)) = (me_member, me) {
            me.kill_nowait();
        }
        true
    }
}

fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

fn require_runtime(what: &str) {
    if grove_scheduler::Handle::try_current().is_none() {
        panic!("{}", crate::not_in_runtime(what));
    }
}

/// A set of greenlets managed together (gevent's `gevent.pool.Group`): spawn into it,
/// wait for all of them, kill all of them.
///
/// Greenlets leave the group by themselves when they finish. Cheap to clone: clones
/// share one set. Spawning needs a greenlet of a runtime; `len`, `join` and `kill`
/// work from anywhere (from a plain thread, `join` blocks the thread).
///
/// ```
/// use grove::pool::Group;
///
/// let rt = grove::Runtime::builder().workers(2).build().unwrap();
/// rt.block_on(|| {
///     let group = Group::new();
///     let hs: Vec<_> = (0..10).map(|i| group.spawn(move || i * 2)).collect();
///     group.join();
///     assert!(group.is_empty());
///     assert_eq!(hs.into_iter().map(|h| h.join().unwrap()).sum::<i32>(), 90);
/// });
/// ```
#[derive(Clone)]
pub struct Group {
    core: Arc<Core<Greenlet>>,
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group").field("len", &self.len()).finish()
    }
}

impl Default for Group {
    fn default() -> Self {
        Group::new()
    }
}

impl Group {
    /// An empty group.
    pub fn new() -> Group {
        Group {
            core: Core::new(None),
        }
    }

    /// Spawns `f` as a member of the group. Panics outside a runtime's greenlet.
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        require_runtime("grove::pool::Group::spawn");
        self.core.spawn_acquired(f)
    }

    /// [`spawn`](Self::spawn) with a builder's options (the server's spawn site).
    #[track_caller]
    pub(crate) fn spawn_with<F, T>(
        &self,
        b: grove_scheduler::GreenletBuilder,
        f: F,
    ) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        require_runtime("grove::pool::Group::spawn");
        self.core.spawn_acquired_with(b, f)
    }

    /// Adds a greenlet spawned elsewhere (gevent's `Group.add`). A greenlet already
    /// finished is not added; adding a member again changes nothing.
    pub fn add<T: 'static>(&self, h: &JoinHandle<T>) {
        self.core.insert(h.greenlet());
    }

    /// Number of members (greenlets not yet finished).
    pub fn len(&self) -> usize {
        self.core.len()
    }

    /// True if no member is left.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current members.
    pub fn greenlets(&self) -> Vec<Greenlet> {
        self.core.members()
    }

    /// Waits until every member has finished (the group is empty). From a member this
    /// would wait for itself forever: don't.
    pub fn join(&self) {
        self.core.wait_empty(None);
    }

    /// [`join`](Self::join), waiting at most `timeout`; true if the group is empty.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.core.wait_empty(deadline_after(timeout))
    }

    /// Kills every member and waits until they have finished (gevent's `Group.kill`).
    /// Members spawned meanwhile are killed too. Called from a member, that member is
    /// killed last (it unwinds once the others have finished).
    pub fn kill(&self) {
        self.core.kill(None);
    }

    /// [`kill`](Self::kill), waiting at most `timeout`; true if all members finished.
    pub fn kill_timeout(&self, timeout: Duration) -> bool {
        self.core.kill(deadline_after(timeout))
    }
}

/// A group with at most `size` members running at once (gevent's `gevent.pool.Pool`).
///
/// [`spawn`](Pool::spawn) waits while the pool is full — backpressure: it parks the
/// calling greenlet (its worker runs others) until a member finishes. Waiting spawners
/// are served in arrival order. [`try_spawn`](Pool::try_spawn) gives the closure back
/// instead of waiting. A spawner killed or timed out while waiting leaves the pool
/// consistent (see the module docs). [`map`](Pool::map) and
/// [`imap_unordered`](Pool::imap_unordered) run a function over many items, at most
/// `size` at a time.
///
/// Cheap to clone: clones share one pool. Beware (as in gevent): a member that spawns
/// into its own full pool waits for a slot that may only free up when it finishes.
///
/// ```
/// use grove::pool::Pool;
///
/// let rt = grove::Runtime::builder().workers(2).build().unwrap();
/// rt.block_on(|| {
///     let pool = Pool::new(3);
///     let squares = pool.map(1..=10u64, |i| i * i);
///     assert_eq!(squares.iter().sum::<u64>(), 385);
///     assert_eq!(pool.free_count(), 3);
/// });
/// ```
#[derive(Clone)]
pub struct Pool {
    core: Arc<Core<Greenlet>>,
    size: usize,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (used, members, waiting) = self.core.counts();
        f.debug_struct("Pool")
            .field("size", &self.size)
            .field("used", &used)
            .field("members", &members)
            .field("waiting", &waiting)
            .finish()
    }
}

impl Pool {
    /// A pool of `size` slots. Panics if `size` is 0.
    pub fn new(size: usize) -> Pool {
        assert!(size >= 1, "grove::pool::Pool::new: size must be at least 1");
        Pool {
            core: Core::new(Some(size)),
            size,
        }
    }

    /// The number of slots.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Spawns `f` as a member, first waiting for a free slot while the pool is full.
    /// Panics outside a runtime's greenlet.
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        require_runtime("grove::pool::Pool::spawn");
        self.core.acquire(None);
        self.core.spawn_acquired(f)
    }

    /// [`spawn`](Self::spawn) with a builder's options (the server's spawn site).
    #[track_caller]
    pub(crate) fn spawn_with<F, T>(
        &self,
        b: grove_scheduler::GreenletBuilder,
        f: F,
    ) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        require_runtime("grove::pool::Pool::spawn");
        self.core.acquire(None);
        self.core.spawn_acquired_with(b, f)
    }

    /// Spawns `f` if a slot is free; otherwise gives it back in [`PoolFull`].
    /// Panics outside a runtime's greenlet.
    #[track_caller]
    pub fn try_spawn<F, T>(&self, f: F) -> Result<JoinHandle<T>, PoolFull<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        require_runtime("grove::pool::Pool::try_spawn");
        if !self.core.try_acquire() {
            return Err(PoolFull(f));
        }
        Ok(self.core.spawn_acquired(f))
    }

    /// Slots free right now (gevent's `free_count`).
    pub fn free_count(&self) -> usize {
        self.size - self.core.pruned().used
    }

    /// True if no slot is free.
    pub fn is_full(&self) -> bool {
        self.free_count() == 0
    }

    /// Waits until a slot is free (gevent's `wait_available`). Takes no slot: a spawner
    /// may take it first; use [`try_spawn`](Self::try_spawn) to claim one. Waits in line
    /// with blocked spawners (first come, first served).
    pub fn wait_available(&self) {
        self.wait_available_until(None);
    }

    /// [`wait_available`](Self::wait_available) for at most `timeout`; true if a slot was
    /// free by then.
    pub fn wait_available_timeout(&self, timeout: Duration) -> bool {
        self.wait_available_until(deadline_after(timeout))
    }

    fn wait_available_until(&self, deadline: Option<Instant>) -> bool {
        if self.core.acquire(deadline) {
            self.core.release_slot();
            true
        } else {
            false
        }
    }

    /// Number of members (greenlets not yet finished).
    pub fn len(&self) -> usize {
        self.core.len()
    }

    /// True if no member is left.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The current members.
    pub fn greenlets(&self) -> Vec<Greenlet> {
        self.core.members()
    }

    /// Waits until every member has finished. From a member this would wait for itself
    /// forever: don't.
    pub fn join(&self) {
        self.core.wait_empty(None);
    }

    /// [`join`](Self::join), waiting at most `timeout`; true if the pool is empty.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        self.core.wait_empty(deadline_after(timeout))
    }

    /// Kills every member and waits until they have finished, which frees their slots
    /// (spawners waiting for one then proceed, and what they spawn is killed too while
    /// this call lasts). Called from a member, that member is killed last.
    pub fn kill(&self) {
        self.core.kill(None);
    }

    /// [`kill`](Self::kill), waiting at most `timeout`; true if all members finished.
    pub fn kill_timeout(&self, timeout: Duration) -> bool {
        self.core.kill(deadline_after(timeout))
    }

    /// Runs `f` on every item, at most [`size`](Self::size) at a time, and returns the
    /// results in the items' order (gevent's `Pool.map`).
    ///
    /// If a call panics, the panic is resumed here (after the calls still running for
    /// this `map` are killed); any other failure (a call killed, e.g. by
    /// [`kill`](Self::kill)) panics with its [`JoinError`]. Use [`try_map`](Self::try_map)
    /// to get the error instead.
    #[track_caller]
    pub fn map<I, F, R>(&self, items: I, f: F) -> Vec<R>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
        R: Send + 'static,
    {
        match self.try_map(items, f) {
            Ok(v) => v,
            Err(e) => match e.try_into_panic() {
                Ok(payload) => panic::resume_unwind(payload),
                Err(e) => panic!("grove::pool::Pool::map: {e}"),
            },
        }
    }

    /// [`map`](Self::map), returning the first failure in the items' order as an error;
    /// the calls still running for this `map` are then killed. Also, if the caller is
    /// killed while mapping, its calls still running are killed.
    #[track_caller]
    pub fn try_map<I, F, R>(&self, items: I, f: F) -> Result<Vec<R>, JoinError>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
        R: Send + 'static,
    {
        /// Kills the calls not yet collected, however the `map` ends.
        struct Jobs<R: 'static>(VecDeque<JoinHandle<R>>);
        impl<R: 'static> Drop for Jobs<R> {
            fn drop(&mut self) {
                for h in &self.0 {
                    h.kill_nowait();
                }
            }
        }
        let f = Arc::new(f);
        let mut jobs = Jobs(VecDeque::new());
        for item in items {
            let f = f.clone();
            jobs.0.push_back(self.spawn(move || f(item)));
        }
        let mut out = Vec::with_capacity(jobs.0.len());
        while let Some(h) = jobs.0.pop_front() {
            out.push(h.join()?);
        }
        Ok(out)
    }

    /// Runs `f` on every item, at most [`size`](Self::size) at a time, yielding each
    /// call's outcome as soon as it finishes (gevent's `Pool.imap_unordered`).
    ///
    /// Calls start at once, as many as free slots allow (this never waits); further
    /// items are taken from `items` as slots free up, by the iterating greenlet, which
    /// waits for a slot only when none of its calls is running. Each outcome is
    /// `Ok(value)`, or the call's [`JoinError`] (a panic, a kill). Dropping the
    /// iterator early kills the calls still running. Panics outside a runtime's greenlet.
    ///
    /// ```
    /// use grove::pool::Pool;
    ///
    /// let rt = grove::Runtime::builder().workers(2).build().unwrap();
    /// let mut out: Vec<u32> = rt.block_on(|| {
    ///     let pool = Pool::new(4);
    ///     pool.imap_unordered(0..20u32, |i| i + 1).map(Result::unwrap).collect()
    /// });
    /// out.sort();
    /// assert_eq!(out, (1..=20).collect::<Vec<_>>());
    /// ```
    pub fn imap_unordered<I, F, R>(&self, items: I, f: F) -> ImapUnordered<I::IntoIter, F, R>
    where
        I: IntoIterator,
        I::Item: Send + 'static,
        F: Fn(I::Item) -> R + Send + Sync + 'static,
        R: Send + 'static,
    {
        require_runtime("grove::pool::Pool::imap_unordered");
        let mut it = ImapUnordered {
            pool: self.clone(),
            items: Some(items.into_iter()),
            pending: None,
            f: Arc::new(f),
            running: HashMap::new(),
            finished: Arc::new(Mutex::new(Finished::default())),
        };
        // Start what the free slots allow now (never waiting here).
        it.top_up(false);
        it
    }
}

/// Ids of finished calls of one [`ImapUnordered`], in completion order.
#[derive(Default)]
struct Finished {
    ids: VecDeque<u64>,
    waker: Option<Waker>,
}

/// The iterator of [`Pool::imap_unordered`]: call outcomes in completion order.
pub struct ImapUnordered<I: Iterator, F, R: 'static> {
    pool: Pool,
    /// `None` once exhausted.
    items: Option<I>,
    /// An item taken while no slot was free, to spawn first next time.
    pending: Option<I::Item>,
    f: Arc<F>,
    running: HashMap<u64, JoinHandle<R>>,
    finished: Arc<Mutex<Finished>>,
}

impl<I: Iterator, F, R: 'static> fmt::Debug for ImapUnordered<I, F, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapUnordered")
            .field("pool", &self.pool)
            .field("running", &self.running.len())
            .field("exhausted", &self.items.is_none())
            .finish()
    }
}

impl<I, F, R> ImapUnordered<I, F, R>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> R + Send + Sync + 'static,
    R: Send + 'static,
{
    /// Starts calls while this iterator has fewer than `size` running and items are
    /// left. Waits for a slot only when nothing of ours is running (`block`); otherwise
    /// takes free slots only, and our next completion frees one anyway.
    fn top_up(&mut self, block: bool) {
        while self.running.len() < self.pool.size {
            let item = match self.pending.take() {
                Some(item) => item,
                None => match self.items.as_mut().and_then(Iterator::next) {
                    Some(item) => item,
                    None => {
                        self.items = None;
                        return;
                    }
                },
            };
            let got = if block && self.running.is_empty() {
                self.pool.core.acquire(None)
            } else {
                self.pool.core.try_acquire()
            };
            if !got {
                self.pending = Some(item);
                return;
            }
            let f = self.f.clone();
            let h = self.pool.core.spawn_acquired(move || f(item));
            let id = h.id();
            let finished = self.finished.clone();
            // If it already finished, this pushes its id right here; it is collected
            // only by `next`, after the insert below.
            h.on_finish(move || {
                let waker = {
                    let mut fin = lock(&finished);
                    fin.ids.push_back(id);
                    fin.waker.clone()
                };
                if let Some(w) = waker {
                    w.wake();
                }
            });
            self.running.insert(id, h);
        }
    }
}

impl<I, F, R> Iterator for ImapUnordered<I, F, R>
where
    I: Iterator,
    I::Item: Send + 'static,
    F: Fn(I::Item) -> R + Send + Sync + 'static,
    R: Send + 'static,
{
    type Item = Result<R, JoinError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.top_up(true);
        loop {
            let id = {
                let mut fin = lock(&self.finished);
                match fin.ids.pop_front() {
                    Some(id) => Some(id),
                    None if self.running.is_empty() => return None,
                    None => {
                        let w = grove_scheduler::current_waker();
                        if !fin.waker.as_ref().is_some_and(|old| old.will_wake(&w)) {
                            fin.waker = Some(w);
                        }
                        None
                    }
                }
            };
            match id {
                Some(id) => {
                    let h = self
                        .running
                        .remove(&id)
                        .expect("ImapUnordered: finished call not running");
                    let out = h.join();
                    // Keep the pool busy while the caller handles this outcome.
                    self.top_up(false);
                    return Some(out);
                }
                None => grove_scheduler::park(),
            }
        }
    }
}

impl<I: Iterator, F, R: 'static> Drop for ImapUnordered<I, F, R> {
    fn drop(&mut self) {
        for h in self.running.values() {
            h.kill_nowait();
        }
    }
}

/// [`Pool::try_spawn`] found no free slot. Holds the closure, which did not run.
pub struct PoolFull<F>(pub F);

impl<F> PoolFull<F> {
    /// The closure that was not spawned.
    pub fn into_inner(self) -> F {
        self.0
    }
}

impl<F> fmt::Debug for PoolFull<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PoolFull(..)")
    }
}

impl<F> fmt::Display for PoolFull<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the pool is full: every slot is taken by a running greenlet")
    }
}

impl<F> std::error::Error for PoolFull<F> {}
