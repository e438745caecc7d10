//! grove-monkey: gevent's `monkey.patch_all()` for Rust. Inside a grove greenlet, the
//! blocking libc calls behind `std::net`, `std::thread::sleep` and C network libraries
//! park the greenlet instead of the thread.
//!
//! Turn it on with the `grove` crate's `monkey` feature; nothing else changes in your
//! code, or in the crates you call:
//!
//! ```toml
//! grove = { version = "0.1", features = ["monkey"] }
//! ```
//!
//! ```
//! # grove_monkey::link();
//! use std::io::{Read, Write};
//! use std::time::{Duration, Instant};
//!
//! let rt = grove::Runtime::builder().workers(1).build().unwrap();
//! rt.block_on(|| {
//!     // Plain std code: 100 greenlets each sleep 50 ms on one worker, together.
//!     let t = Instant::now();
//!     let hs: Vec<_> = (0..100)
//!         .map(|_| grove::spawn(|| std::thread::sleep(Duration::from_millis(50))))
//!         .collect();
//!     hs.into_iter().for_each(|h| h.join().unwrap());
//!     assert!(t.elapsed() < Duration::from_secs(4));
//!
//!     // A std::net server and client in two greenlets of that same worker.
//!     let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     let server = grove::spawn(move || {
//!         let (mut s, _) = listener.accept().unwrap();
//!         let mut buf = [0; 5];
//!         s.read_exact(&mut buf).unwrap();
//!         s.write_all(&buf).unwrap();
//!     });
//!     let mut c = std::net::TcpStream::connect(addr).unwrap();
//!     c.write_all(b"hello").unwrap();
//!     let mut buf = [0; 5];
//!     c.read_exact(&mut buf).unwrap();
//!     assert_eq!(&buf, b"hello");
//!     server.join().unwrap();
//! });
//! ```
//!
//! # The problem
//! Code written for blocking sockets — `std::net`, a synchronous database driver, an HTTP
//! client, a C library — blocks its OS thread. In a greenlet that thread is a grove
//! worker, so every greenlet homed there waits too. gevent answers by replacing Python's
//! socket module; grove cannot replace std, but it can replace what std calls: the
//! final binary's own definition of a libc function wins over libc's, for std, for every
//! Rust crate and for C libraries linked in (libgo and libco hook C++ programs so).
//!
//! # What is hooked
//! * sockets: `connect`, `accept`/`accept4`, `read`/`write`/`readv`/`writev`,
//!   `recv`/`recvfrom`/`recvmsg`, `send`/`sendto`/`sendmsg`;
//! * waiting: `poll` (and `__poll_chk`), `ppoll`, `select`, over any fds;
//! * sleeping: `nanosleep`, `clock_nanosleep` (relative and absolute), `usleep`, `sleep`;
//! * name lookup: `getaddrinfo` runs on a thread of its own while the greenlet parks
//!   (glibc waits for DNS in its own internal `poll`, which no hook reaches);
//! * bookkeeping: `close` (waiters on the fd wake with `EBADF`), `dup`/`dup2`/`dup3`,
//!   `fcntl` (`F_GETFL`/`F_SETFL` keep the user's `O_NONBLOCK`; `F_DUPFD*`), `fcntl64`,
//!   `ioctl(FIONBIO)`, `setsockopt(SO_RCVTIMEO/SO_SNDTIMEO)` (honoured as timeouts),
//!   `socket`/`socketpair`.
//!
//! # What is not
//! * Calls outside a greenlet: plain threads, the reactor, the blocking pool and the
//!   hubs go straight to the kernel.
//! * Non-socket fds inside a greenlet: `read`/`write` of a regular file, a pipe, a
//!   terminal block the worker as before (grove's monitor reports it; use
//!   `grove::blocking`). `poll`/`select` on them do go green.
//! * libc's internal calls (what glibc calls inside itself never reaches a hook; its
//!   older resolvers `gethostbyname*` block), `epoll_wait`, `io_uring`, raw
//!   `syscall(2)`, `waitpid`, locks and condition variables.
//! * Calls that glibc routes internally: `pselect`, `recvmmsg`/`sendmmsg`, `sendfile`,
//!   `splice` go to the kernel unchanged.
//!
//! # The rules
//! * **Interrupts.** A kill, a `Timeout` or a deadlock interrupt never unwinds through a
//!   hooked call (a panic must not cross a C frame). Instead the call returns at once:
//!   a socket call or `poll`/`select` with -1 and errno **`ECANCELED`** ([`INTERRUPTED`];
//!   Rust sees `io::Error::raw_os_error() == Some(libc::ECANCELED)`), a sleep early with
//!   `EINTR` and no time remaining (std's `thread::sleep` then returns normally). The
//!   interrupt stays pending and unwinds the greenlet at its next grove blocking point
//!   (`grove::sleep`, a join, any grove primitive, `grove::net`); while it is pending,
//!   every hooked call that would wait fails the same way at once. A `with_timeout` scope
//!   that ends without another grove blocking point returns `Ok` with the `ECANCELED`
//!   error inside.
//! * **Signals.** A green wait is never cut short by a signal (as with `SA_RESTART`);
//!   `ppoll`'s signal mask is not applied inside a greenlet.
//! * **Modes.** An fd's blocking mode in the kernel is the user's: calls go non-blocking
//!   per call (`MSG_DONTWAIT`), and only `accept`/`connect` flip `O_NONBLOCK` around one
//!   call, hidden from hooked `fcntl`/`ioctl`. A socket the user made non-blocking
//!   returns `EAGAIN` as before. A child process that inherits an fd sees the mode the
//!   user set.
//! * **fds.** State is per fd number, reset by `close`, a `dup2`/`dup3` that replaces it
//!   (its waiters wake with `EBADF`, as on `close`; one that fails, say because the source
//!   is not open, leaves the target and its waiters alone) and every call that returns a
//!   new fd. An fd closed by a call grove does not hook (`syscall(SYS_close)`,
//!   `close_range`) and reused by another such call may keep stale state; `ENOTSOCK`
//!   resets it.
//! * **fork.** A child never deregisters what its parent registered (the epoll instance
//!   is shared), and takes no lock a vanished thread may hold.
//! * **`grove::net`** stays the zero-magic path: its sockets are non-blocking, so the
//!   hooks pass their calls through (one table lookup more per call).
//!
//! # Linking
//! The hooks are `#[no_mangle]` functions; the linker keeps them only if something in
//! the program refers to this crate. `grove`'s `monkey` feature calls [`link`] when a
//! runtime is built; depending on this crate directly, call it yourself (it costs nothing).

#![cfg(target_os = "linux")]

mod fd;
mod unsafe_ffi;
mod unsafe_sys;

/// The errno a hooked call returns when a kill, a `Timeout` or a deadlock interrupt is
/// pending for the calling greenlet: `ECANCELED`. Sleeps return `EINTR` instead.
pub const INTERRUPTED: i32 = libc::ECANCELED;

/// Makes sure the hooks are linked into the program (the linker drops object files
/// nothing refers to). Idempotent and cheap; `grove`'s `monkey` feature calls it.
pub fn link() {
    std::hint::black_box(unsafe_ffi::addresses());
    unsafe_ffi::register_atfork();
}

/// True if `err` is the error a hooked call returns when an interrupt is pending
/// ([`INTERRUPTED`]).
///
/// ```
/// let e = std::io::Error::from_raw_os_error(grove_monkey::INTERRUPTED);
/// assert!(grove_monkey::is_interrupted(&e));
/// ```
pub fn is_interrupted(err: &std::io::Error) -> bool {
    err.raw_os_error() == Some(INTERRUPTED)
}

/// Process-wide counts of what the hooks did inside greenlets, since the program started:
/// how often the green path waited and how many of its syscalls were wasted.
///
/// A diagnostic, like the reactor's metrics: a request/response protocol should cost about
/// one wait and no `would_block` per exchange once under way.
///
/// ```
/// let before = grove_monkey::stats();
/// // ... hooked calls in greenlets ...
/// let after = grove_monkey::stats();
/// assert!(after.green_waits >= before.green_waits);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Times a hooked socket call parked its greenlet until the fd was ready.
    pub green_waits: u64,
    /// Hooked socket calls made on the green path that failed with `EAGAIN` (a syscall
    /// that found nothing to do, followed by a wait).
    pub would_block: u64,
}

/// A snapshot of the hooks' [`Stats`].
pub fn stats() -> Stats {
    fd::stats()
}
