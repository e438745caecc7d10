//! Placement: choosing a long-lived greenlet's home on purpose.
//!
//! # The problem
//! A started greenlet never moves (see the crate docs), so the worker where it first runs
//! serves it for life. A server's accept loop spawns one greenlet per connection; the spawn
//! takes the acceptor's LIFO slot, and the new greenlet runs on the acceptor's worker as soon
//! as the acceptor parks in `accept` again. Peers steal only unstarted greenlets, and only when
//! idle, so connections that arrive one at a time all land on the acceptor's worker (measured:
//! 1,000 connections on 2 workers, 1000/0 one by one, 635/365 in a burst), and one worker
//! serves every connection while the other idles.
//!
//! # Rejected approaches
//! * *Never use the LIFO slot for spawns*: fork/join (skynet, `Pool::map`) wants the child
//!   next to its parent; spawning into the stealable queue costs them locality and a
//!   notification per spawn.
//! * *Place every greenlet by load*: short-lived children finish before load means anything,
//!   and handing them around costs a cross-worker wake each.
//! * *Round-robin*: ignores how long greenlets live; a worker full of idle keep-alive
//!   connections would get as many new ones as an empty one.
//!
//! # The approach
//! The signal for "long-lived and independent" is a **detached** greenlet: its `JoinHandle`
//! was dropped before it first ran (an accept loop's `drop(spawn(..))`, a server's handler
//! group). Joined greenlets (fork/join) are left alone. Before a detached greenlet's first run
//! (`run_task`), the hub compares its load with the least loaded peer's:
//!
//! * **load** of a worker = started, unfinished greenlets homed there (the `homed` gauge, kept
//!   by the worker alone: +1 at a first run, −1 at a finish) plus what waits in its inbox
//!   (greenlets handed to it and not started yet, so a burst of hand-offs counts at once).
//! * If `mine >= least + 2 + least / 16`, the greenlet goes to that peer's inbox unstarted
//!   (which is sound: it has not run, so it holds only its `Send` closure) and the peer starts
//!   it. The margin is hysteresis: after a hand-off the peer is below us, so it does not hand
//!   the greenlet back, and one parked parent (a `block_on` main greenlet) does not push its
//!   only child away. At equilibrium the workers differ by about 2 + 6%: 1,000 connections
//!   split about 516/484.

use std::sync::atomic::Ordering;

use super::Local;
use crate::task::{TaskRef, NO_HOME};

impl Local {
    /// Before `task` runs here: hands a detached, never-started greenlet to the least loaded
    /// peer if this worker is clearly more loaded (see the module docs). Returns the task if
    /// it should run here.
    pub(super) fn place(&self, task: TaskRef) -> Option<TaskRef> {
        let shared = &*self.shared;
        let h = task.header();
        let workers = shared.workers();
        if workers.len() == 1
            || h.home.load(Ordering::Relaxed) != NO_HOME
            || !h.is_detached()
            || shared.is_shutdown()
        {
            return Some(task);
        }
        let load = |i: usize| {
            let w = &workers[i];
            w.data.counters.homed.load(Ordering::Relaxed) + w.inbox.len()
        };
        let mine = load(self.index);
        let Some((least, peer)) = (0..workers.len())
            .filter(|&i| i != self.index)
            .map(|i| (load(i), i))
            .min()
        else {
            return Some(task);
        };
        if mine < least + 2 + least / 16 {
            return Some(task);
        }
        // As `Core::push_remote`, except that a peer whose hub has already exited (a
        // shutdown racing this hand-off) gets its inbox drained *with cancellation*: these
        // are unstarted greenlets, whose joins must still resolve.
        let w = &workers[peer];
        w.inbox.push(task);
        w.parker.unpark();
        if w.exited.closed_after_push() {
            while let Some(t) = w.inbox.steal().success() {
                if t.header().home.load(Ordering::Relaxed) == NO_HOME {
                    shared.cancel_unstarted(Some(self.index), t);
                }
            }
        }
        None
    }
}
