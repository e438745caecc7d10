//! Green sockets: TCP, UDP and Unix-domain sockets whose blocking calls park a greenlet.
//!
//! [`TcpListener`], [`TcpStream`], [`UdpSocket`], [`UnixListener`] and [`UnixStream`] have
//! std's API (`bind`, `connect`, `accept`, `Read`, `Write`, timeouts, `try_clone`...). A call
//! that would block parks the calling greenlet until the reactor reports the socket ready;
//! its worker runs other greenlets meanwhile. Kill and
//! [`Timeout`](grove_scheduler::Timeout) interrupt a parked call: it unwinds like any other
//! blocking point and leaves the socket usable.
//!
//! ```
//! use std::io::{BufRead, BufReader, Write};
//! use grove::net::{TcpListener, TcpStream};
//!
//! grove::run(|| {
//!     let listener = TcpListener::bind("127.0.0.1:0").unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     let server = grove::spawn(move || {
//!         let (stream, _) = listener.accept().unwrap();
//!         let mut line = String::new();
//!         BufReader::new(&stream).read_line(&mut line).unwrap();
//!         (&stream).write_all(line.to_uppercase().as_bytes()).unwrap();
//!     });
//!     let mut client = TcpStream::connect(addr).unwrap();
//!     client.write_all(b"hello\n").unwrap();
//!     let mut reply = String::new();
//!     BufReader::new(&client).read_line(&mut reply).unwrap();
//!     assert_eq!(reply, "HELLO\n");
//!     server.join().unwrap();
//! });
//! ```
//!
//! # Vocabulary
//!
//! * **source**: the non-blocking `mio` socket inside every green socket.
//! * **registration**: the source's entry in the reactor (edge-triggered, read and write
//!   interest), made once when the socket is created.
//! * **direction**: read (also accept, recv, peek) or write (also connect, send).
//! * **gate**: a per-direction [`Lock`], taken only by a caller about to *wait* in that
//!   direction; it makes the reactor's "one waiter per direction" rule hold however many
//!   greenlets share a socket (Go's `fdMutex` plays this role).
//!
//! # Approach
//!
//! * **Try the syscall first, wait only after `WouldBlock`** (Go's netpoller order). When
//!   data is already there, a read is one syscall: no lock, no allocation, no atomic
//!   read-modify-write. tokio's order (check cached readiness, then the syscall) was
//!   rejected: a fresh socket has no cached readiness until its first event, and the
//!   cache check buys nothing when the syscall is the common case anyway.
//! * **…except right after a short transfer on a stream** (tokio's rule, kept): a stream
//!   read that returned less than asked drained the kernel's receive queue, and a short
//!   write filled its send queue, so the next call in that direction would almost surely
//!   fail with `WouldBlock`. It skips the syscall and starts at step 4 of the protocol
//!   below, which clears readiness only if no event arrived since it was last seen: data
//!   that came after the short read bumped the event tick, keeps readiness, and is read
//!   at once. In a request/response loop this saves one failing syscall per round trip.
//!   Datagram sockets are left out: a short datagram says nothing about the queue.
//! * **One `Arc` per socket.** `try_clone` clones the `Arc` instead of `dup`ing the fd, so
//!   every handle shares one registration and one set of gates (a `dup` would need its own
//!   registration, and epoll would report events of one file description to two tokens).
//!   As with std's `try_clone`, timeouts and `shutdown` are shared by all handles.
//! * **Gates rather than "one user per socket".** The reactor stores one waker per
//!   direction; a second reader's waker would replace the first's and leave it parked
//!   forever. Rather than document that as a misuse (gevent raises
//!   `ConcurrentObjectUseError`), a waiter takes the direction's gate, so concurrent
//!   readers queue FIFO. The gate is created on the first wait and costs nothing on the
//!   fast path; only the waiters take it, not the syscalls, so a reader that finds data
//!   never waits for a parked one.
//! * **Timeouts in user space.** `set_read_timeout` stores a duration; a call computes its
//!   deadline on entering the slow path and parks with `park_until`. **Every green socket
//!   call that runs out of time fails with [`TimedOut`](io::ErrorKind::TimedOut)**: reads,
//!   writes, accepts, sends and receives past their socket timeout, and `connect_timeout`.
//!   That is the kind to check for. (std reports `WouldBlock` for an `SO_RCVTIMEO` expiry on
//!   Unix and `TimedOut` on Windows; grove picks the one that says what happened, so that
//!   `e.kind() == TimedOut` never misses a timeout and `WouldBlock` keeps meaning "a
//!   non-blocking call found nothing to do".)
//! * **Name resolution off the workers.** Addresses are taken as this module's
//!   [`ToSocketAddrs`]: socket addresses and IP literals are used as they are; any other
//!   host name is resolved by `getaddrinfo` on the [blocking pool](crate::blocking), so a
//!   slow DNS server never holds a worker.
//! * **Unsafe code in one place.** Everything goes through `mio` and std's safe `OwnedFd`
//!   conversions (`into_std` duplicates the descriptor with `try_clone_to_owned`), except
//!   the one `listen` call that raises a listener's backlog, which lives in `sys`.
//! * **Listeners get a backlog of [`LISTEN_BACKLOG`]** (tokio's), not std's and mio's 128:
//!   a burst of connects beyond the backlog loses SYNs, and each lost SYN costs the client
//!   a one-second retransmit (measured here: 500 concurrent connects took 1 s instead of
//!   40 ms at 128).
//!
//! # The wait protocol (one call, one direction)
//!
//! 1. Run the syscall. Anything but `WouldBlock` is the result.
//! 2. Compute the deadline from the socket's timeout, if any.
//! 3. Take the direction's gate (waiting FIFO behind other waiters, up to the deadline).
//! 4. Clear the direction's readiness (reactor step C1: kept if an event arrived since the
//!    readiness was last seen, so data that raced with the `WouldBlock` is not forgotten).
//! 5. Poll readiness with `current_waker()`; while `Pending`, `park` (or `park_until`)
//!    and poll again. The reactor's W1–W3 steps make sure an event is never lost between
//!    the poll and the park.
//! 6. Run the syscall again: `WouldBlock` → back to step 4; else release the gate and
//!    return the result.
//!
//! An interrupt unwinding from step 3 or 5 drops the gate guard (the next waiter gets the
//! gate) and leaves at most a stale waker in the reactor's slot, which the next waiter
//! replaces; a stale wake is a spurious wake, which every grove waiter tolerates. Nothing
//! is read or written by an interrupted call, so no data is lost.
//!
//! # Outside a runtime
//!
//! Constructors (`bind`, `connect`, `from_std`...) called outside a grove runtime return an
//! error of kind [`Other`](io::ErrorKind::Other) naming the function: there is no reactor
//! to register with. A socket made inside a runtime may be used from a plain thread too;
//! it then blocks that thread. Once the runtime shuts down, waiting calls fail with
//! "grove reactor is shut down".
//!
//! # Shutdown
//!
//! Dropping the last handle of a socket deregisters it from the reactor, then closes it.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use grove_reactor::{Direction, Handle, Registration};
use mio::event::Source;
use mio::Interest;

use crate::lock::Lock;

mod addr;
mod sys;
mod tcp;
mod udp;
mod unix;

pub use addr::ToSocketAddrs;
pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixIncoming, UnixListener, UnixStream};

/// The accept backlog of [`TcpListener`] and [`UnixListener`] (capped by the kernel's
/// `net.core.somaxconn`).
pub const LISTEN_BACKLOG: i32 = 1024;

/// `AsFd` and `AsRawFd` for green sockets: the descriptor of the `mio` source inside.
macro_rules! impl_as_fd {
    ($($ty:ty),*) => {$(
        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                self.io.source().as_fd()
            }
        }

        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.io.source().as_raw_fd()
            }
        }
    )*};
}
use impl_as_fd;

/// `Read` and `Write` for a green stream and for a shared reference to it (one reader and
/// one writer greenlet on one connection): each call runs the wait protocol of the module
/// docs in its direction. Nothing to flush: writes go straight to the kernel.
macro_rules! impl_stream_io {
    ($ty:ty) => {
        impl std::io::Read for &$ty {
            #[inline]
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let len = buf.len();
                self.io.stream_io(Direction::Read, len, |mut s| {
                    std::io::Read::read(&mut s, buf)
                })
            }

            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                let len = bufs.iter().map(|b| b.len()).sum();
                self.io.stream_io(Direction::Read, len, |mut s| {
                    std::io::Read::read_vectored(&mut s, bufs)
                })
            }
        }

        impl std::io::Write for &$ty {
            #[inline]
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.io.stream_io(Direction::Write, buf.len(), |mut s| {
                    std::io::Write::write(&mut s, buf)
                })
            }

            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                let len = bufs.iter().map(|b| b.len()).sum();
                self.io.stream_io(Direction::Write, len, |mut s| {
                    std::io::Write::write_vectored(&mut s, bufs)
                })
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl std::io::Read for $ty {
            #[inline]
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                (&*self).read(buf)
            }

            fn read_vectored(
                &mut self,
                bufs: &mut [std::io::IoSliceMut<'_>],
            ) -> std::io::Result<usize> {
                (&*self).read_vectored(bufs)
            }
        }

        impl std::io::Write for $ty {
            #[inline]
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                (&*self).write(buf)
            }

            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                (&*self).write_vectored(bufs)
            }

            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
    };
}
use impl_stream_io;

/// The reactor of the current runtime, or an error naming `what` outside one.
pub(crate) fn reactor(what: &str) -> io::Result<Handle> {
    crate::current_reactor().ok_or_else(|| io::Error::other(crate::not_in_runtime(what)))
}

/// The error of a read or write that reached its timeout: always of kind
/// [`TimedOut`](io::ErrorKind::TimedOut) (see the module docs).
fn timed_out(dir: Direction) -> io::Error {
    let msg = match dir {
        Direction::Read => "grove: read timed out",
        Direction::Write => "grove: write timed out",
    };
    io::Error::new(io::ErrorKind::TimedOut, msg)
}

fn index(dir: Direction) -> usize {
    match dir {
        Direction::Read => 0,
        Direction::Write => 1,
    }
}

/// A registered source plus what waiting on it needs: the gates and the timeouts.
pub(crate) struct Io<S: Source> {
    source: S,
    /// Always `Some` until `drop` takes it to deregister.
    reg: Option<Registration>,
    /// Per direction, created on the first wait.
    gates: [OnceLock<Lock>; 2],
    /// Per direction, the timeout in nanoseconds; 0 means none.
    timeouts: [AtomicU64; 2],
    /// Per direction, the last stream transfer was short (see the module docs' "except
    /// right after a short transfer"). A hint only: any value is safe.
    short: [AtomicBool; 2],
}

impl<S: Source> Io<S> {
    /// Registers `source` with `reactor` for reading and writing.
    pub(crate) fn new(mut source: S, reactor: &Handle) -> io::Result<Io<S>> {
        let reg = reactor.register(&mut source, Interest::READABLE | Interest::WRITABLE)?;
        Ok(Io {
            source,
            reg: Some(reg),
            gates: [OnceLock::new(), OnceLock::new()],
            timeouts: [AtomicU64::new(0), AtomicU64::new(0)],
            short: [AtomicBool::new(false), AtomicBool::new(false)],
        })
    }

    pub(crate) fn source(&self) -> &S {
        &self.source
    }

    fn reg(&self) -> &Registration {
        self.reg
            .as_ref()
            .expect("grove::net: registration used after drop")
    }

    /// Runs `op` to completion in `dir`, waiting as the module docs' protocol says.
    #[inline]
    pub(crate) fn io<R>(
        &self,
        dir: Direction,
        mut op: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        // Step 1: the fast path.
        match op(&self.source) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.io_slow(dir, op),
            r => r,
        }
    }

    /// [`io`](Self::io) for a stream's read or write of `len` bytes: after a short transfer
    /// in `dir`, the next one skips the syscall that would fail and waits first (see the
    /// module docs). A read of 0 bytes (end of stream) leaves no hint.
    #[inline]
    pub(crate) fn stream_io(
        &self,
        dir: Direction,
        len: usize,
        op: impl FnMut(&S) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let short = &self.short[index(dir)];
        let r = if len > 0 && short.load(Ordering::Relaxed) {
            self.io_slow(dir, op)
        } else {
            self.io(dir, op)
        };
        if let Ok(n) = r {
            let was_short = n > 0 && n < len;
            if was_short != short.load(Ordering::Relaxed) {
                short.store(was_short, Ordering::Relaxed);
            }
        }
        r
    }

    fn io_slow<R>(&self, dir: Direction, mut op: impl FnMut(&S) -> io::Result<R>) -> io::Result<R> {
        // Step 2.
        let deadline = self.timeout(dir).map(|t| Instant::now() + t);
        // Step 3.
        let gate = self.gates[index(dir)].get_or_init(Lock::new);
        let _guard = match deadline {
            None => gate.lock(),
            Some(d) => gate
                .lock_timeout(d.saturating_duration_since(Instant::now()))
                .ok_or_else(|| timed_out(dir))?,
        };
        loop {
            // Step 4.
            self.reg().clear_readiness(dir);
            // Step 5.
            if !self.wait_ready(dir, deadline)? {
                return Err(timed_out(dir));
            }
            // Step 6.
            match op(&self.source) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }

    /// Step 5: parks until the reactor reports `dir` ready (`Ok(true)`), `deadline` passes
    /// (`Ok(false)`) or the reactor shuts down (`Err`). The caller must be the direction's
    /// only waiter (hold its gate, or own the socket alone).
    pub(crate) fn wait_ready(&self, dir: Direction, deadline: Option<Instant>) -> io::Result<bool> {
        let what: grove_scheduler::WaitReason = match dir {
            Direction::Read => grove_scheduler::WaitReason::SOCKET_READ,
            Direction::Write => grove_scheduler::WaitReason::SOCKET_WRITE,
        };
        let waker = grove_scheduler::current_waker();
        let mut cx = Context::from_waker(&waker);
        loop {
            match self.reg().poll_ready(dir, &mut cx) {
                Poll::Ready(r) => return r.map(|()| true),
                Poll::Pending => match deadline {
                    None => grove_scheduler::park_on(what),
                    Some(d) if Instant::now() >= d => return Ok(false),
                    Some(d) => grove_scheduler::park_until_on(d, what),
                },
            }
        }
    }

    /// Forgets readiness in `dir` after an operation returned `WouldBlock` (or, for connect,
    /// turned out not to be done).
    pub(crate) fn clear_readiness(&self, dir: Direction) {
        self.reg().clear_readiness(dir);
    }

    /// Sets the timeout of one direction; `Some(0)` is an error, as in std.
    pub(crate) fn set_timeout(&self, dir: Direction, t: Option<Duration>) -> io::Result<()> {
        let nanos = match t {
            None => 0,
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cannot set a 0 duration timeout",
                ))
            }
            // Durations beyond u64 nanoseconds (584 years) saturate.
            Some(d) => u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        };
        self.timeouts[index(dir)].store(nanos, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn timeout(&self, dir: Direction) -> Option<Duration> {
        match self.timeouts[index(dir)].load(Ordering::Relaxed) {
            0 => None,
            n => Some(Duration::from_nanos(n)),
        }
    }
}

impl<S: Source> Drop for Io<S> {
    fn drop(&mut self) {
        // Deregister explicitly rather than relying on close: `into_std` may have duplicated
        // the descriptor, and epoll keeps watching a file description while any duplicate
        // of it is open.
        if let Some(reg) = self.reg.take() {
            let _ = reg.deregister(&mut self.source);
        }
    }
}

impl<S: Source + fmt::Debug> fmt::Debug for Io<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.source, f)
    }
}

/// The "connect" wait shared by TCP: park until `io`'s connect finished or `deadline`
/// passed (`Ok(false)`), then report the connect's error, if any.
fn finish_connect(io: &Io<mio::net::TcpStream>, deadline: Option<Instant>) -> io::Result<bool> {
    loop {
        if !io.wait_ready(Direction::Write, deadline)? {
            return Ok(false);
        }
        if let Some(e) = io.source().take_error()? {
            return Err(e);
        }
        match io.source().peer_addr() {
            Ok(_) => return Ok(true),
            // Not connected yet (a spurious readiness): wait again.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                io.clear_readiness(Direction::Write)
            }
            Err(e) => return Err(e),
        }
    }
}
