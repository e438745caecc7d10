//! Greenlet control over many handles: [`iwait`], [`joinall`], [`wait_any`], [`killall`].
//!
//! # Vocabulary
//! A *link* is a completion observer of one greenlet ([`JoinHandle::on_finish`]); it
//! fires once, off the greenlet's stack, in the hub that completes it (see "Completion"
//! in the `task` module).
//!
//! # Rejected approaches
//! * One waker in every header and a rescan of all handles after each wake: the
//!   header's joiner slot holds one waker (the owner's), and a rescan costs O(n) per
//!   completion, O(n²) for a `joinall` of n handles.
//! * Polling `is_finished` with yields: burns the worker and adds latency.
//!
//! # The chosen approach (gevent's own `iwait`, built on `link`)
//! 1. [`iwait`] adds one link per handle. Its callback pushes the handle's index on a
//!    FIFO shared with the waiter and wakes the waiter's stored waker. Handles already
//!    finished fire at once, on the caller, in index order.
//! 2. `next` pops the FIFO; if it is empty, it stores the current waker (under the
//!    FIFO's mutex, so a callback either sees it or has already pushed) and parks
//!    (until the deadline, if any); wakes may be spurious, so it loops.
//! 3. Indices thus come out in completion order, each exactly once.
//! 4. Dropping the iterator — also when its greenlet is killed or timed out mid-wait —
//!    unlinks every link that has not fired, so long-lived greenlets accumulate nothing.
//!
//! [`joinall`] and its `_timeout`/`_count` kin and [`wait_any`] take items from [`iwait`];
//! [`killall`] kills every handle without waiting, then waits for all of them the same way.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::{Duration, Instant};

use crate::greenlet::{current_waker, park, park_until, JoinHandle, LinkId};
use crate::loom::lock;

/// The FIFO of finished indices shared by an [`Iwait`] and its links' callbacks.
#[derive(Default)]
struct Ready {
    done: VecDeque<usize>,
    waker: Option<Waker>,
}

/// Indices of handles in the order they finish (gevent's `iwait`): see [`iwait`].
///
/// Ends when every handle has been yielded or the deadline (if any) has passed.
/// Dropping it early removes its callbacks from the greenlets it still watches.
pub struct Iwait<'a, T: 'static> {
    handles: &'a [JoinHandle<T>],
    ready: Arc<Mutex<Ready>>,
    links: Vec<LinkId>,
    remaining: usize,
    deadline: Option<Instant>,
}

impl<T: 'static> fmt::Debug for Iwait<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iwait")
            .field("handles", &self.handles.len())
            .field("remaining", &self.remaining)
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// Iterates over the indices of `handles` in the order the greenlets finish (gevent's
/// `iwait`). Those already finished come first, in index order. Each index comes out
/// exactly once; `next` parks the calling greenlet (or blocks the calling thread)
/// until one more finishes.
///
/// A handle of the calling greenlet itself never finishes while it waits; don't
/// include it (or use [`iwait_timeout`]).
///
/// ```
/// let rt = grove::Runtime::builder().workers(2).build().unwrap();
/// let order = rt.block_on(|| {
///     let gate = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
///     let g = gate.clone();
///     let slow = grove::spawn(move || {
///         while !g.load(std::sync::atomic::Ordering::SeqCst) {
///             grove::yield_now();
///         }
///     });
///     let fast = grove::spawn(|| ());
///     let hs = [slow, fast];
///     let mut order = Vec::new();
///     for i in grove::iwait(&hs) {
///         order.push(i);
///         gate.store(true, std::sync::atomic::Ordering::SeqCst); // now let the slow one end
///     }
///     order
/// });
/// assert_eq!(order, [1, 0]);
/// ```
pub fn iwait<T: 'static>(handles: &[JoinHandle<T>]) -> Iwait<'_, T> {
    iwait_deadline(handles, None)
}

/// [`iwait`] that stops yielding once `timeout` has passed (indices of greenlets that
/// finished by then still come out).
pub fn iwait_timeout<T: 'static>(handles: &[JoinHandle<T>], timeout: Duration) -> Iwait<'_, T> {
    iwait_deadline(handles, Instant::now().checked_add(timeout))
}

/// [`iwait`] that stops yielding once `deadline` has passed: [`iwait_timeout`] with an
/// [`Instant`].
pub fn iwait_until<T: 'static>(handles: &[JoinHandle<T>], deadline: Instant) -> Iwait<'_, T> {
    iwait_deadline(handles, Some(deadline))
}

/// [`iwait`] with an optional deadline (`None`: none).
fn iwait_deadline<T: 'static>(
    handles: &[JoinHandle<T>],
    deadline: Option<Instant>,
) -> Iwait<'_, T> {
    let ready = Arc::new(Mutex::new(Ready::default()));
    // Step 1.
    let links = handles
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let ready = ready.clone();
            h.on_finish(move || {
                let waker = {
                    let mut r = lock(&ready);
                    r.done.push_back(i);
                    r.waker.clone()
                };
                if let Some(w) = waker {
                    w.wake();
                }
            })
        })
        .collect();
    Iwait {
        handles,
        ready,
        links,
        remaining: handles.len(),
        deadline,
    }
}

impl<T: 'static> Iwait<'_, T> {
    /// How many indices have not come out yet.
    pub fn remaining(&self) -> usize {
        self.remaining
    }
}

impl<T: 'static> Iterator for Iwait<'_, T> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        // Step 2.
        loop {
            {
                let mut r = lock(&self.ready);
                if let Some(i) = r.done.pop_front() {
                    self.remaining -= 1;
                    return Some(i);
                }
                if self.remaining == 0 {
                    return None;
                }
                let w = current_waker();
                if !r.waker.as_ref().is_some_and(|old| old.will_wake(&w)) {
                    r.waker = Some(w);
                }
            }
            match self.deadline {
                Some(d) if Instant::now() >= d => return None,
                Some(d) => park_until(d),
                None => park(),
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

impl<T: 'static> Drop for Iwait<'_, T> {
    fn drop(&mut self) {
        // Step 4. A link that already fired is simply not found.
        for (h, id) in self.handles.iter().zip(&self.links) {
            if !h.is_finished() {
                h.unlink(*id);
            }
        }
    }
}

/// Waits for every greenlet of `handles` to finish (gevent's `joinall`) and returns
/// their indices in completion order. Outputs stay in the handles, to be taken with
/// [`JoinHandle::join`] (which then returns at once).
///
/// A handle of the calling greenlet itself never finishes while it waits; don't include
/// it (or use [`joinall_timeout`]). To stop after the first few, [`joinall_count`]; for
/// both a count and a time limit, `iwait_timeout(&hs, d).take(n).collect()`.
///
/// ```
/// let rt = grove::Runtime::builder().workers(2).build().unwrap();
/// rt.block_on(|| {
///     let hs: Vec<_> = (0..10).map(|i| grove::spawn(move || i)).collect();
///     let mut done = grove::joinall(&hs);
///     done.sort();
///     assert_eq!(done, (0..10).collect::<Vec<_>>());
///     assert!(hs.iter().all(|h| h.is_finished()));
/// });
/// ```
pub fn joinall<T: 'static>(handles: &[JoinHandle<T>]) -> Vec<usize> {
    iwait(handles).collect()
}

/// [`joinall`] that returns once `timeout` has passed: the indices of the greenlets that
/// finished by then, in completion order.
///
/// ```
/// use std::time::Duration;
///
/// let rt = grove::Runtime::builder().workers(2).build().unwrap();
/// rt.block_on(|| {
///     let quick = grove::spawn(|| ());
///     let stuck = grove::spawn(|| grove::sleep(Duration::from_secs(3600)));
///     let hs = [quick, stuck];
///     assert_eq!(grove::joinall_timeout(&hs, Duration::from_millis(20)), [0]);
///     grove::killall(&hs);
/// });
/// ```
pub fn joinall_timeout<T: 'static>(handles: &[JoinHandle<T>], timeout: Duration) -> Vec<usize> {
    iwait_timeout(handles, timeout).collect()
}

/// [`joinall`] that returns once `count` of the greenlets have finished (gevent's
/// `joinall(count=n)`): their indices, in completion order (all of them if `count`
/// exceeds their number).
///
/// ```
/// let rt = grove::Runtime::builder().workers(2).build().unwrap();
/// rt.block_on(|| {
///     let hs: Vec<_> = (0..4).map(|i| grove::spawn(move || i)).collect();
///     assert_eq!(grove::joinall_count(&hs, 2).len(), 2);
///     assert_eq!(grove::joinall_count(&hs, 10).len(), 4);
/// });
/// ```
pub fn joinall_count<T: 'static>(handles: &[JoinHandle<T>], count: usize) -> Vec<usize> {
    if count == 0 {
        return Vec::new();
    }
    iwait(handles).take(count).collect()
}

/// Waits until any greenlet of `handles` has finished and returns its index (the
/// lowest one, if several already have). `None` only for an empty slice.
pub fn wait_any<T: 'static>(handles: &[JoinHandle<T>]) -> Option<usize> {
    iwait(handles).next()
}

/// Kills every greenlet of `handles` and waits until they have all finished (gevent's
/// `killall`).
///
/// The kills are all sent first, then awaited, so the victims unwind concurrently. If
/// the calling greenlet's own handle is among them, it is killed last: once the others
/// have finished, the caller unwinds. A victim that keeps blocking while it unwinds (in a
/// `Drop`) is waited for; [`killall_timeout`] bounds the wait.
///
/// ```
/// let rt = grove::Runtime::builder().workers(2).build().unwrap();
/// rt.block_on(|| {
///     let hs: Vec<_> = (0..10)
///         .map(|_| grove::spawn(|| loop { grove::greenlet::park() }))
///         .collect();
///     grove::killall(&hs);
///     assert!(hs.into_iter().all(|h| h.join().unwrap_err().is_killed()));
/// });
/// ```
pub fn killall<T: 'static>(handles: &[JoinHandle<T>]) {
    kill_all(handles, None);
}

/// [`killall`] that waits at most `timeout` for the victims to finish. Returns `true` if
/// all did. (A caller among them is still killed last, once the time is up.)
pub fn killall_timeout<T: 'static>(handles: &[JoinHandle<T>], timeout: Duration) -> bool {
    kill_all(handles, Instant::now().checked_add(timeout))
}

fn kill_all<T: 'static>(handles: &[JoinHandle<T>], deadline: Option<Instant>) -> bool {
    let mut me = None;
    for (i, h) in handles.iter().enumerate() {
        if h.is_current() {
            me = Some(i);
        } else {
            h.kill_nowait();
        }
    }
    let others = handles.len() - usize::from(me.is_some());
    let mut finished = 0;
    let mut it = iwait_deadline(handles, deadline);
    while finished < others {
        match it.next() {
            Some(i) if Some(i) != me => finished += 1,
            Some(_) => {}
            None => break,
        }
    }
    drop(it);
    if let Some(i) = me {
        handles[i].kill_nowait();
    }
    finished == others
}
