//! The per-fd table and green waiting. Safe code: every syscall it needs comes from a safe
//! wrapper in `unsafe_sys`.
//!
//! # The table
//! Indexed by fd number, in chunks of 1,024 slots allocated on first use (fds up to
//! 2^24). A slot caches what the fd is (`UNKNOWN`, `OTHER`, `SOCKET`: one `fstat` per fd
//! number per lifetime) and, once a greenlet had to wait on the socket, a [`Sock`]: the
//! user-visible blocking mode, `SO_RCVTIMEO`/`SO_SNDTIMEO`, the reactor registration
//! and the greenlets waiting on it. `close`, `dup2`/`dup3` (on their target) and every
//! hooked call that returns a fresh fd (`socket`, `socketpair`, `accept*`, `dup*`,
//! `fcntl(F_DUPFD*)`) reset the slot, so a reused fd number never sees the state of
//! the fd that had it before.
//!
//! # Waiting
//! The registration is edge-triggered and holds one waker per direction. Many
//! greenlets may wait on one socket in one direction (a listener accepted by a greenlet
//! per worker, a socket read by one and polled by another), so the registration holds a
//! *fan-out* waker per direction, and the greenlets' own wakers sit in the `Sock`'s
//! lists: an event wakes every waiter of its direction, each retries its call, the
//! losers wait again. The no-lost-wakeup argument is the reactor's (W1–W3, D1–D3) with
//! one more step in front: a waiter adds itself to the list *before* `poll_ready`, so
//! a fan-out that fires after `poll_ready` stored it finds the waiter in the list.
//!
//! # Fork
//! A `fork` child shares the reactor's epoll instance with its parent, so an
//! `epoll_ctl(DEL)` from the child would remove the parent's registration. A
//! registration remembers the fork generation it was made in (bumped by a
//! `pthread_atfork` child handler), and `close` deregisters only in that generation.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use grove_reactor::{Direction, Handle, Registration};
use grove_scheduler::ParkStatus;
use mio::unix::SourceFd;
use mio::Interest;

use crate::unsafe_sys;

const CHUNK_BITS: u32 = 10;
const CHUNK: usize = 1 << CHUNK_BITS;
const CHUNKS: usize = 1 << 14;

/// Not looked at yet (or reset by a close).
pub(crate) const UNKNOWN: u8 = 0;
/// Not a socket: calls on it pass through to the kernel.
pub(crate) const OTHER: u8 = 1;
/// A socket: calls on it go green inside greenlets.
pub(crate) const SOCKET: u8 = 2;

/// How long a greenlet naps between polls when the reactor refuses an fd (never seen in
/// practice for sockets; a safety net that never blocks the worker).
const FALLBACK_NAP: Duration = Duration::from_millis(1);

#[derive(Default)]
struct Slot {
    kind: AtomicU8,
    sock: Mutex<Option<Arc<Sock>>>,
    /// The last green read of this blocking stream socket was short: it drained the
    /// receive queue, so the next read waits before its syscall (see `short_read_hint`).
    /// A hint only: any value is safe.
    short_read: AtomicBool,
}

static TABLE: [OnceLock<Box<[Slot]>>; CHUNKS] = [const { OnceLock::new() }; CHUNKS];

/// Bumped in every `fork` child (see "Fork").
static FORK_GEN: AtomicU64 = AtomicU64::new(0);

/// The `pthread_atfork` child handler's body.
pub(crate) fn after_fork_in_child() {
    FORK_GEN.fetch_add(1, Ordering::Relaxed);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic never happens while these locks are held (hooks must not panic); if one
    // did, the data is still consistent word by word.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// [`lock`] for `forget`. In a fork child only the forking thread survived, and a lock
/// another thread held at the fork is held forever: never wait for one there (a child
/// calls `close` and `dup2` between `fork` and `exec`); the state it guards is the
/// parent's anyway.
fn lock_for_close<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    if FORK_GEN.load(Ordering::Relaxed) == 0 {
        return Some(lock(m));
    }
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

fn index(fd: i32) -> Option<(usize, usize)> {
    let fd = usize::try_from(fd).ok()?;
    let chunk = fd >> CHUNK_BITS;
    (chunk < CHUNKS).then_some((chunk, fd & (CHUNK - 1)))
}

fn slot(fd: i32) -> Option<&'static Slot> {
    let (c, i) = index(fd)?;
    let chunk = TABLE[c].get_or_init(|| (0..CHUNK).map(|_| Slot::default()).collect());
    Some(&chunk[i])
}

fn slot_if_present(fd: i32) -> Option<&'static Slot> {
    let (c, i) = index(fd)?;
    TABLE[c].get().map(|chunk| &chunk[i])
}

/// What `fd` is (`OTHER` or `SOCKET`), classifying it on first sight. An fd out of the
/// table's range, or one `fstat` refuses, is `OTHER` (the call then reports the error).
pub(crate) fn kind(fd: i32) -> u8 {
    let Some(s) = slot(fd) else { return OTHER };
    let k = s.kind.load(Ordering::Acquire);
    if k != UNKNOWN {
        return k;
    }
    match unsafe_sys::is_socket(fd) {
        Some(true) => {
            s.kind.store(SOCKET, Ordering::Release);
            SOCKET
        }
        Some(false) => {
            s.kind.store(OTHER, Ordering::Release);
            OTHER
        }
        None => OTHER,
    }
}

/// Marks `fd` as something that is not a socket after all (a call said `ENOTSOCK`:
/// the number was reused behind our back, by a call we do not hook).
pub(crate) fn mark_other(fd: i32) {
    forget(fd);
    if let Some(s) = slot(fd) {
        s.kind.store(OTHER, Ordering::Release);
    }
}

/// The socket state of `fd`, created on first need. `None` if `fd` is not a socket.
/// True if the last green read of `fd` was short (`note_read`): the next read should wait
/// for readiness before trying, as `grove::net`'s streams and tokio do. The wait clears
/// readiness only if no event came since it was last seen, so data that arrived after the
/// short read is read at once; a wrong hint costs a wait for readiness that is already
/// there, never a lost wake-up.
pub(crate) fn short_read_hint(fd: i32) -> bool {
    slot_if_present(fd).is_some_and(|s| s.short_read.load(Ordering::Relaxed))
}

/// Records a green read of `len` bytes on `fd` that returned `n`. The hint is set only for
/// a blocking stream socket the call already looked up (`sock`): a short datagram says
/// nothing about the queue, and a socket the user made non-blocking must see `EAGAIN`.
pub(crate) fn note_read(fd: i32, sock: Option<&Sock>, len: usize, n: usize) {
    let Some(slot) = slot_if_present(fd) else {
        return;
    };
    let short = n > 0 && n < len && sock.is_some_and(|s| s.stream && !s.user_nonblock());
    if slot.short_read.load(Ordering::Relaxed) != short {
        slot.short_read.store(short, Ordering::Relaxed);
    }
}

pub(crate) fn sock(fd: i32) -> Option<Arc<Sock>> {
    let s = slot(fd)?;
    let mut g = lock(&s.sock);
    if let Some(sock) = g.as_ref() {
        return Some(sock.clone());
    }
    let info = unsafe_sys::sock_info(fd)?;
    let sock = Arc::new_cyclic(|weak: &Weak<Sock>| Sock {
        fd,
        stream: info.stream,
        user_nonblock: AtomicBool::new(info.nonblock),
        rcvtimeo: AtomicU64::new(nanos(info.rcvtimeo)),
        sndtimeo: AtomicU64::new(nanos(info.sndtimeo)),
        toggles: Mutex::new(0),
        closed: AtomicBool::new(false),
        reg: Mutex::new(None),
        waiters: Mutex::new(Waiters::default()),
        fanout: [Direction::Read, Direction::Write].map(|dir| {
            Waker::from(Arc::new(Fanout {
                sock: weak.clone(),
                dir,
            }))
        }),
    });
    *g = Some(sock.clone());
    Some(sock)
}

/// The socket state of `fd` if a greenlet ever waited on it.
pub(crate) fn sock_if_present(fd: i32) -> Option<Arc<Sock>> {
    slot_if_present(fd).and_then(|s| lock(&s.sock).clone())
}

/// The counters behind [`crate::stats`]: relaxed, touched only on the paths that wait or
/// waste a syscall, which cost a syscall or a park anyway.
static GREEN_WAITS: AtomicU64 = AtomicU64::new(0);
static WOULD_BLOCK: AtomicU64 = AtomicU64::new(0);

pub(crate) fn stats() -> crate::Stats {
    crate::Stats {
        green_waits: GREEN_WAITS.load(Ordering::Relaxed),
        would_block: WOULD_BLOCK.load(Ordering::Relaxed),
    }
}

/// Counts a green attempt that failed with `EAGAIN`.
pub(crate) fn note_would_block() {
    WOULD_BLOCK.fetch_add(1, Ordering::Relaxed);
}

/// Resets `fd`'s slot: deregisters it (in the generation that registered it), wakes
/// its waiters, who then fail with `EBADF`. Called before the real `close` (and for a
/// fresh fd, whose number may carry a stale entry).
pub(crate) fn forget(fd: i32) {
    let Some(s) = slot_if_present(fd) else { return };
    s.kind.store(UNKNOWN, Ordering::Release);
    s.short_read.store(false, Ordering::Relaxed);
    let sock = lock_for_close(&s.sock).and_then(|mut g| g.take());
    if let Some(sock) = sock {
        sock.closed.store(true, Ordering::Release);
        let reg = lock_for_close(&sock.reg).and_then(|mut g| g.take());
        if let Some(reg) = reg {
            reg.release(fd);
        }
        let lists = lock_for_close(&sock.waiters).map(|mut g| std::mem::take(&mut g.lists));
        for (_, w) in lists.into_iter().flatten().flatten() {
            w.wake();
        }
    }
}

/// True if `fd` is a socket whose user asked for blocking mode but which is
/// momentarily non-blocking because a greenlet's `accept`/`connect` made it so: a
/// plain thread's call that fails with `EAGAIN` then waits and retries.
pub(crate) fn toggled(fd: i32) -> bool {
    sock_if_present(fd).is_some_and(|s| *lock(&s.toggles) > 0 && !s.user_nonblock())
}

fn nanos(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
    })
}

fn duration(n: u64) -> Option<Duration> {
    (n != 0).then(|| Duration::from_nanos(n))
}

/// The current greenlet's reactor, if it runs on a `grove::Runtime`.
fn reactor() -> Option<Handle> {
    grove_scheduler::with_extension(|e| e.and_then(|e| e.downcast_ref::<Handle>()).cloned())
}

/// True in a greenlet of a runtime with a reactor (and so timers): where hooks go green.
///
/// Async-signal-safe (a handler may `write` to a self-pipe): one thread-local, one
/// atomic, no borrow or lock.
pub(crate) fn green() -> bool {
    grove_scheduler::in_greenlet_signal_safe()
        && grove_scheduler::with_extension(|e| e.is_some_and(|e| e.is::<Handle>()))
}

/// Marks a fresh fd that the kernel just returned from `socket`/`accept`/`socketpair`.
pub(crate) fn fresh_socket(fd: i32) {
    forget(fd);
    if let Some(s) = slot(fd) {
        s.kind.store(SOCKET, Ordering::Release);
    }
}

/// Why a green wait ended without the fd becoming ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitErr {
    /// Return -1 with this errno.
    Errno(i32),
    /// The deadline (`SO_RCVTIMEO`/`SO_SNDTIMEO`) passed.
    TimedOut,
    /// No reactor to wait with: make the blocking call itself.
    Passthrough,
}

struct Reg {
    registration: Registration,
    handle: Handle,
    fork_gen: u64,
}

impl Reg {
    /// Deregisters `fd`, made in this fork generation; a registration inherited from
    /// the parent is forgotten instead: `epoll_ctl(DEL)` on the shared epoll would
    /// remove the parent's, and dropping it would take the reactor's slab lock, which
    /// the parent's reactor thread may have held at the fork.
    fn release(self, fd: i32) {
        if self.fork_gen == FORK_GEN.load(Ordering::Relaxed) {
            let _ = self.registration.deregister(&mut SourceFd(&fd));
        } else {
            std::mem::forget(self);
        }
    }
}

#[derive(Default)]
struct Waiters {
    next: u64,
    lists: [Vec<(u64, Waker)>; 2],
}

/// A socket some greenlet waited on.
pub(crate) struct Sock {
    fd: i32,
    /// `SOCK_STREAM`: a blocking send sends everything.
    pub(crate) stream: bool,
    user_nonblock: AtomicBool,
    rcvtimeo: AtomicU64,
    sndtimeo: AtomicU64,
    /// In-flight `with_nonblock` calls; also serializes the user's `F_SETFL`.
    toggles: Mutex<u32>,
    closed: AtomicBool,
    reg: Mutex<Option<Reg>>,
    waiters: Mutex<Waiters>,
    fanout: [Waker; 2],
}

fn di(dir: Direction) -> usize {
    match dir {
        Direction::Read => 0,
        Direction::Write => 1,
    }
}

struct Fanout {
    sock: Weak<Sock>,
    dir: Direction,
}

impl Wake for Fanout {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(s) = self.sock.upgrade() {
            let list = std::mem::take(&mut lock(&s.waiters).lists[di(self.dir)]);
            for (_, w) in list {
                w.wake();
            }
        }
    }
}

impl Sock {
    /// The blocking mode the user sees (`O_NONBLOCK` as the user last set it).
    pub(crate) fn user_nonblock(&self) -> bool {
        self.user_nonblock.load(Ordering::Acquire)
    }

    /// The user's `SO_RCVTIMEO`.
    pub(crate) fn rcvtimeo(&self) -> Option<Duration> {
        duration(self.rcvtimeo.load(Ordering::Relaxed))
    }

    /// The user's `SO_SNDTIMEO`.
    pub(crate) fn sndtimeo(&self) -> Option<Duration> {
        duration(self.sndtimeo.load(Ordering::Relaxed))
    }

    /// Records a successful `setsockopt(SO_RCVTIMEO / SO_SNDTIMEO)`.
    pub(crate) fn set_timeout(&self, recv: bool, d: Option<Duration>) {
        let t = if recv { &self.rcvtimeo } else { &self.sndtimeo };
        t.store(nanos(d), Ordering::Relaxed);
    }

    /// Applies the user's `O_NONBLOCK` choice: `apply(kernel_nonblock)` sets the kernel
    /// flags; while a greenlet's `accept`/`connect` holds the socket non-blocking the
    /// kernel stays non-blocking and the user's choice is restored when it ends.
    pub(crate) fn set_user_nonblock<R>(&self, nb: bool, apply: impl FnOnce(bool) -> R) -> R {
        let t = lock(&self.toggles);
        self.user_nonblock.store(nb, Ordering::Release);
        apply(nb || *t > 0)
    }

    /// Runs `f` with the socket non-blocking in the kernel, then restores the user's
    /// mode (counted, so overlapping calls from several greenlets nest).
    pub(crate) fn with_nonblock<R>(&self, f: impl FnOnce() -> R) -> R {
        {
            let mut t = lock(&self.toggles);
            if *t == 0 && !self.user_nonblock() {
                unsafe_sys::set_kernel_nonblock(self.fd, true);
            }
            *t += 1;
        }
        let r = f();
        let mut t = lock(&self.toggles);
        *t -= 1;
        if *t == 0 && !self.user_nonblock() {
            unsafe_sys::set_kernel_nonblock(self.fd, false);
        }
        r
    }

    /// True once the fd was closed (or its slot reset) under us.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Makes sure the socket is registered with a live reactor.
    fn ensure_registered(&self) -> Result<(), WaitErr> {
        let mut g = lock(&self.reg);
        // Checked under the lock `forget` takes after setting `closed`: either we see
        // the close, or `forget` sees (and removes) the registration we make. Never a
        // registration for a number that was closed, and maybe reused, meanwhile.
        if self.is_closed() {
            return Err(WaitErr::Errno(libc::EBADF));
        }
        if let Some(r) = g.as_ref() {
            if !r.handle.is_shutdown() && r.fork_gen == FORK_GEN.load(Ordering::Relaxed) {
                return Ok(());
            }
            if let Some(old) = g.take() {
                old.release(self.fd);
            }
        }
        let Some(handle) = reactor() else {
            return Err(WaitErr::Passthrough);
        };
        if handle.is_shutdown() {
            return Err(WaitErr::Errno(crate::INTERRUPTED));
        }
        let registration = handle
            .register(
                &mut SourceFd(&self.fd),
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(|e| WaitErr::Errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
        *g = Some(Reg {
            registration,
            handle,
            fork_gen: FORK_GEN.load(Ordering::Relaxed),
        });
        Ok(())
    }

    /// Adds `waker` to `dir`'s waiters and polls readiness: `Ok(None)` if ready (the
    /// waker is not kept), `Ok(Some(id))` if pending (remove it with [`disarm`]).
    ///
    /// [`disarm`]: Sock::disarm
    fn arm(&self, dir: Direction, waker: &Waker, clear: bool) -> Result<Option<u64>, WaitErr> {
        if self.is_closed() {
            return Err(WaitErr::Errno(libc::EBADF));
        }
        self.ensure_registered()?;
        let id = {
            let mut w = lock(&self.waiters);
            w.next += 1;
            let id = w.next;
            w.lists[di(dir)].push((id, waker.clone()));
            id
        };
        match self.poll_readiness(dir, clear) {
            Poll::Pending => Ok(Some(id)),
            Poll::Ready(res) => {
                self.disarm(dir, id);
                if res.is_err() {
                    // The reactor shut down: register afresh next time (or fail then).
                    let old = lock(&self.reg).take();
                    if let Some(old) = old {
                        old.release(self.fd);
                    }
                }
                Ok(None)
            }
        }
    }

    /// Marks the readiness that ended a wait as seen. A later wait that clears readiness
    /// first (after a short read drained the queue) then clears exactly what this wait
    /// consumed, and keeps only readiness from events newer than it (the reactor's step
    /// C1). Without it, the next request/response exchange took the old event for new data
    /// and made a read that failed with `EAGAIN` every time.
    fn observe(&self, dir: Direction) {
        let _ = self.poll_readiness(dir, false);
    }

    /// Polls the registration's readiness in `dir` (recording the event tick it saw, and
    /// registering the fan-out waker if not ready), after clearing it first if `clear`.
    /// Ready if the fd was closed and deregistered meanwhile.
    fn poll_readiness(&self, dir: Direction, clear: bool) -> Poll<std::io::Result<()>> {
        let g = lock(&self.reg);
        match g.as_ref() {
            Some(r) => {
                if clear {
                    r.registration.clear_readiness(dir);
                }
                let mut cx = Context::from_waker(&self.fanout[di(dir)]);
                r.registration.poll_ready(dir, &mut cx)
            }
            None => Poll::Ready(Ok(())),
        }
    }

    fn disarm(&self, dir: Direction, id: u64) {
        let mut w = lock(&self.waiters);
        w.lists[di(dir)].retain(|(i, _)| *i != id);
    }

    /// Waits, parking the current greenlet, until the socket may be ready in `dir` (then
    /// the caller retries its call), `deadline` passes, the fd is closed, or an interrupt
    /// is pending. Called after the call failed with `EAGAIN`, or before its first attempt
    /// when a short read says the queue is empty (`short_read_hint`).
    pub(crate) fn wait(
        &self,
        dir: Direction,
        deadline: Option<Instant>,
        what: grove_scheduler::WaitReason,
    ) -> Result<(), WaitErr> {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(WaitErr::TimedOut);
        }
        let waker = grove_scheduler::current_waker();
        let (id, nap) = match self.arm(dir, &waker, true) {
            Ok(None) => return Ok(()),
            Ok(Some(id)) => (Some(id), None),
            Err(WaitErr::Errno(e)) if e != libc::EBADF && e != crate::INTERRUPTED => {
                // The reactor refused the fd: poll it every millisecond instead.
                (None, Instant::now().checked_add(FALLBACK_NAP))
            }
            Err(e) => return Err(e),
        };
        let until = match (deadline, nap) {
            (Some(d), Some(n)) => Some(d.min(n)),
            (d, n) => d.or(n),
        };
        GREEN_WAITS.fetch_add(1, Ordering::Relaxed);
        let status = grove_scheduler::park_nounwind(until, what);
        if let Some(id) = id {
            self.disarm(dir, id);
        }
        if matches!(status, ParkStatus::Woken) {
            self.observe(dir);
        }
        if self.is_closed() {
            return Err(WaitErr::Errno(libc::EBADF));
        }
        match status {
            ParkStatus::Interrupted => Err(WaitErr::Errno(crate::INTERRUPTED)),
            ParkStatus::NotGreenlet => Err(WaitErr::Passthrough),
            ParkStatus::Woken => Ok(()),
        }
    }
}

/// One fd of a green `poll`: its number and the directions asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PollFd {
    pub(crate) fd: i32,
    pub(crate) read: bool,
    pub(crate) write: bool,
}

/// `poll` inside a greenlet. `poll0` is the real `poll` with a zero timeout over the
/// caller's array (it fills in `revents`). Returns what `poll` returns, or an errno.
///
/// Sockets wait through their [`Sock`]; other fds (pipes, eventfds, terminals) get a
/// registration for the duration of the call. An fd the reactor refuses (a regular
/// file: always ready anyway) is polled every millisecond instead.
pub(crate) fn green_poll(
    fds: &[PollFd],
    deadline: Option<Instant>,
    poll0: &mut dyn FnMut() -> Result<i32, i32>,
) -> Result<i32, i32> {
    let Some(handle) = reactor() else {
        return Err(libc::ENOSYS);
    };
    let waker = grove_scheduler::current_waker();
    let mut temps: Vec<(i32, Option<Registration>)> = Vec::new();
    let mut first = true;
    let result = loop {
        let n = poll0()?;
        if n != 0 {
            break Ok(n);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break Ok(0);
        }
        if handle.is_shutdown() {
            break Err(crate::INTERRUPTED);
        }
        // Arm every fd; any already ready means: poll again at once.
        let mut armed: Vec<(Arc<Sock>, Direction, u64)> = Vec::new();
        let mut ready = false;
        let mut nap = false;
        for p in fds.iter().filter(|p| p.fd >= 0) {
            let dirs: &[Direction] = match (p.read, p.write) {
                (_, false) => &[Direction::Read],
                (false, true) => &[Direction::Write],
                (true, true) => &[Direction::Read, Direction::Write],
            };
            if kind(p.fd) == SOCKET {
                if let Some(s) = sock(p.fd) {
                    for &d in dirs {
                        match s.arm(d, &waker, !first) {
                            Ok(Some(id)) => armed.push((s.clone(), d, id)),
                            Ok(None) => ready = true,
                            Err(_) => nap = true,
                        }
                    }
                    continue;
                }
            }
            let i = match temps.iter().position(|(fd, _)| *fd == p.fd) {
                Some(i) => i,
                None => {
                    let r = handle
                        .register(
                            &mut SourceFd(&p.fd),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .ok();
                    temps.push((p.fd, r));
                    temps.len() - 1
                }
            };
            match &temps[i].1 {
                Some(r) => {
                    let mut cx = Context::from_waker(&waker);
                    for &d in dirs {
                        if !first {
                            r.clear_readiness(d);
                        }
                        if r.poll_ready(d, &mut cx).is_ready() {
                            ready = true;
                        }
                    }
                }
                None => nap = true,
            }
        }
        first = false;
        let status = if ready {
            ParkStatus::Woken
        } else {
            let until = match (
                deadline,
                nap.then(|| Instant::now().checked_add(FALLBACK_NAP)),
            ) {
                (Some(d), Some(Some(n))) => Some(d.min(n)),
                (None, Some(n)) => n,
                (d, _) => d,
            };
            grove_scheduler::park_nounwind(
                until,
                grove_scheduler::WaitReason::custom(&"grove-monkey: poll"),
            )
        };
        for (s, d, id) in armed {
            s.disarm(d, id);
        }
        match status {
            ParkStatus::Interrupted => break Err(crate::INTERRUPTED),
            ParkStatus::NotGreenlet => break Err(libc::ENOSYS),
            ParkStatus::Woken => {}
        }
    };
    for (fd, r) in temps {
        if let Some(r) = r {
            let _ = r.deregister(&mut SourceFd(&fd));
        }
    }
    result
}

/// Sleeps the current greenlet until `deadline`: `Err(())` if an interrupt is pending.
pub(crate) fn green_sleep(deadline: Instant) -> Result<(), ()> {
    while Instant::now() < deadline {
        match grove_scheduler::park_nounwind(
            Some(deadline),
            grove_scheduler::WaitReason::custom(&"grove-monkey: sleep"),
        ) {
            ParkStatus::Woken => {}
            ParkStatus::Interrupted => return Err(()),
            ParkStatus::NotGreenlet => return Ok(()),
        }
    }
    Ok(())
}
