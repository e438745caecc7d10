//! The `#[no_mangle] extern "C"` hooks and the few pointer manipulations they need. The
//! real syscalls behind them live in `unsafe_sys`; those two modules hold every `unsafe`
//! of the crate.
//!
//! # How a hook decides
//! 1. Outside a greenlet (plain threads, the reactor, the blocking pool, a worker's hub,
//!    before `main`, a `fork` child), the call goes straight to the kernel through
//!    `syscall(SYS_...)`: no lookup, no lock, no allocation. (One exception: a call that
//!    fails with `EAGAIN` on a socket the user keeps blocking, because a greenlet's
//!    `accept`/`connect` holds it non-blocking for a moment, waits with the real `poll`
//!    and retries, so a plain thread never sees a mode it did not ask for.)
//! 2. Inside a greenlet, an fd that is not a socket (a regular file, a pipe, a
//!    terminal, an eventfd) passes through the same way: a blocking call holds the worker
//!    (the monitor reports it). `poll`/`select` over any fds and the sleeps go green.
//! 3. A socket: the call is made non-blocking **for this call only** (`MSG_DONTWAIT`;
//!    `read`/`write`/`readv`/`writev` become `recv`/`send`/`recvmsg`/`sendmsg` with
//!    it), so the fd's mode never changes and a child process that inherits it sees what
//!    the user set. `accept` and `connect` have no such flag: they set `O_NONBLOCK` around
//!    the one call (counted, so several greenlets nest) and hooked `fcntl`/`ioctl` report
//!    the user's mode meanwhile. On `EAGAIN`, if the user set the socket non-blocking,
//!    `EAGAIN` is returned; otherwise the greenlet parks until the reactor reports
//!    readiness, the user's `SO_RCVTIMEO`/`SO_SNDTIMEO` passes (`EAGAIN`, or
//!    `EINPROGRESS` for `connect`, as Linux), the fd is closed (`EBADF`), or an
//!    interrupt is pending (`ECANCELED`), and retries.
//! 4. A read right after a short read of a blocking stream socket waits for readiness
//!    *before* its first attempt: the short read drained the receive queue, so the
//!    attempt would fail (tokio's rule, and `grove::net`'s). The wait keeps readiness
//!    only if an event came after the one that ended the previous wait (`Sock::observe`
//!    marks each wait's event as seen), so a request/response loop makes one read and one
//!    wait per reply and never a read that fails; `grove_monkey::stats()` counts both.
//!
//! # Why raw syscalls
//! `syscall(SYS_read, ...)` reaches the kernel without re-entering these hooks (glibc's
//! own `read` would be this very function) and without `dlsym`, which may allocate or
//! take the loader's lock from inside a hook. The price: the real calls are not pthread
//! cancellation points (Rust never cancels threads).
//!
//! # Never unwind
//! A panic may not cross an `extern "C"` frame (it aborts the process). The hooks call
//! only code that does not panic on any input (checked arithmetic, poison-tolerant
//! locks) and park with `grove_scheduler::park_nounwind`, which reports an interrupt
//! instead of raising it.

use std::ffi::{c_int, c_long, c_uint, c_ulong, c_void};
use std::time::{Duration, Instant};

use grove_reactor::Direction;
use libc::{
    iovec, msghdr, nfds_t, pollfd, size_t, sockaddr, socklen_t, ssize_t, timespec, timeval,
};

use crate::fd::{self, PollFd, WaitErr, SOCKET};
use crate::unsafe_sys::{
    args, errno, getsockopt_raw, poll_now, raw, set_errno, sys_poll, sys_recvfrom, sys_recvmsg,
    sys_sendmsg, sys_sendto, timeval_to_duration, wait_real, KERNEL_SIGSET_BYTES,
};

extern "C" fn atfork_child() {
    fd::after_fork_in_child();
}

/// Registers the `fork` child handler (see `fd`'s "Fork"). Once per process.
pub(crate) fn register_atfork() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `atfork_child` is a plain `extern "C" fn` that only bumps an atomic.
        unsafe { libc::pthread_atfork(None, None, Some(atfork_child)) };
    });
}

// ---------------------------------------------------------------------------------------
// The green loop
// ---------------------------------------------------------------------------------------

/// A call's deadline, computed at its first `EAGAIN` from the socket's timeout.
#[derive(Clone, Copy)]
enum Deadline {
    Unset,
    At(Option<Instant>),
}

impl Deadline {
    fn get(&mut self, timeout: Option<Duration>) -> Option<Instant> {
        if let Deadline::Unset = self {
            *self = Deadline::At(timeout.and_then(|t| Instant::now().checked_add(t)));
        }
        match self {
            Deadline::At(d) => *d,
            Deadline::Unset => None,
        }
    }
}

/// What a green call does on `EAGAIN` when its time is up.
const TIMEOUT_ERRNO_IO: c_int = libc::EAGAIN;

/// Runs a socket call inside a greenlet: `attempt` makes it once without blocking,
/// `blocking` makes the original call (used when there is nothing to wait with).
/// Retries after each green wait; returns the call's result, errno set on -1.
///
/// `read_len`: for a read that consumes up to that many bytes, its length (0 for anything
/// else: writes, accepts, peeks, `recvmsg`). After a short read of a blocking stream
/// socket, the next read waits for readiness before its first attempt instead of making
/// the syscall that would fail with `EAGAIN` (`fd::short_read_hint`; tokio's rule, and
/// `grove::net`'s): measured on the sync redis client, 1.7 failing `recvfrom` per command.
fn green_io(
    fd: c_int,
    dir: Direction,
    read_len: usize,
    what: grove_scheduler::WaitReason,
    deadline: &mut Deadline,
    attempt: &mut dyn FnMut() -> ssize_t,
    blocking: &mut dyn FnMut() -> ssize_t,
) -> ssize_t {
    let mut sock = None;
    let mut wait_first = false;
    if read_len > 0 && fd::short_read_hint(fd) {
        sock = fd::sock(fd);
        wait_first = sock
            .as_ref()
            .is_some_and(|s| s.stream && !s.user_nonblock());
    }
    loop {
        if !std::mem::take(&mut wait_first) {
            let r = attempt();
            if r >= 0 {
                if read_len > 0 {
                    fd::note_read(fd, sock.as_deref(), read_len, r as usize);
                }
                return r;
            }
            match errno() {
                libc::EINTR => continue,
                libc::EAGAIN => fd::note_would_block(),
                libc::ENOTSOCK => {
                    fd::mark_other(fd);
                    return blocking();
                }
                _ => return r,
            }
        }
        if sock.is_none() {
            sock = fd::sock(fd);
        }
        let Some(s) = sock.as_ref() else {
            return blocking();
        };
        if s.user_nonblock() {
            set_errno(libc::EAGAIN);
            return -1;
        }
        let timeout = match dir {
            Direction::Read => s.rcvtimeo(),
            Direction::Write => s.sndtimeo(),
        };
        match s.wait(dir, deadline.get(timeout), what) {
            Ok(()) => {}
            Err(WaitErr::Errno(e)) => {
                set_errno(e);
                return -1;
            }
            Err(WaitErr::TimedOut) => {
                set_errno(TIMEOUT_ERRNO_IO);
                return -1;
            }
            Err(WaitErr::Passthrough) => return blocking(),
        }
    }
}

/// A hooked call outside the green path: straight to the kernel, except for the
/// momentary non-blocking mode of "How a hook decides", step 1.
fn straight(fd: c_int, dir: Direction, call: &mut dyn FnMut() -> ssize_t) -> ssize_t {
    loop {
        let r = call();
        if r < 0 && errno() == libc::EAGAIN && fd::toggled(fd) {
            wait_real(fd, dir);
            continue;
        }
        return r;
    }
}

fn is_green_socket(fd: c_int) -> bool {
    fd::green() && fd::kind(fd) == SOCKET
}

/// A send that, on a blocking stream socket, sends everything (as the kernel's
/// blocking send does), or stops at the first error after some progress and reports
/// the progress. `send_from(offset, nonblocking)` sends the rest from `offset`.
fn green_send(
    fd: c_int,
    len: usize,
    what: grove_scheduler::WaitReason,
    send_from: &dyn Fn(usize, bool) -> ssize_t,
) -> ssize_t {
    let mut done = 0usize;
    let mut deadline = Deadline::Unset;
    loop {
        let r = green_io(
            fd,
            Direction::Write,
            0,
            what,
            &mut deadline,
            &mut || send_from(done, true),
            &mut || send_from(done, false),
        );
        if r < 0 {
            return if done > 0 { done as ssize_t } else { r };
        }
        done += r as usize;
        if done >= len || r == 0 {
            return done as ssize_t;
        }
        match fd::sock(fd) {
            Some(s) if s.stream && !s.user_nonblock() => {}
            _ => return done as ssize_t,
        }
    }
}

// ---------------------------------------------------------------------------------------
// read / write family
// ---------------------------------------------------------------------------------------

/// # Safety
/// libc's contract for `read`.
#[no_mangle]
unsafe extern "C" fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t {
    // SAFETY (both closures): `buf` holds `count` writable bytes, the caller's contract.
    // SAFETY: the caller's pointers and lengths, valid by the hook's (libc's) contract.
    let mut plain = || unsafe { raw(libc::SYS_read, args!(fd, buf, count)) as ssize_t };
    if !is_green_socket(fd) {
        return straight(fd, Direction::Read, &mut plain);
    }
    green_io(
        fd,
        Direction::Read,
        count,
        grove_scheduler::WaitReason::custom(&"grove-monkey: read"),
        &mut Deadline::Unset,
        // SAFETY: as above; `read` on a socket is `recv` with no flags.
        &mut || unsafe {
            sys_recvfrom(
                fd,
                buf,
                count,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        },
        &mut plain,
    )
}

/// # Safety
/// libc's contract for `recv`.
#[no_mangle]
unsafe extern "C" fn recv(fd: c_int, buf: *mut c_void, len: size_t, flags: c_int) -> ssize_t {
    // SAFETY: libc's contract for `recv` is `recvfrom`'s with no address.
    unsafe {
        recvfrom(
            fd,
            buf,
            len,
            flags,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    }
}

/// # Safety
/// libc's contract for `recvfrom`.
#[no_mangle]
unsafe extern "C" fn recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
) -> ssize_t {
    // SAFETY (every closure below): the caller's buffers, passed on unchanged or at an
    // offset within `len`.
    // SAFETY: the caller's pointers and lengths, valid by the hook's (libc's) contract.
    let mut plain = || unsafe { sys_recvfrom(fd, buf, len, flags, addr, alen) };
    if !is_green_socket(fd) || flags & libc::MSG_DONTWAIT != 0 {
        return straight(fd, Direction::Read, &mut plain);
    }
    let waitall = flags & libc::MSG_WAITALL != 0 && addr.is_null();
    let mut done = 0usize;
    let mut deadline = Deadline::Unset;
    loop {
        let at = (buf as *mut u8).wrapping_add(done) as *mut c_void;
        let rest = len - done;
        let r = green_io(
            fd,
            Direction::Read,
            if flags & libc::MSG_PEEK == 0 { rest } else { 0 },
            grove_scheduler::WaitReason::custom(&"grove-monkey: recv"),
            &mut deadline,
            // SAFETY: the caller's pointers and lengths, valid by the hook's (libc's) contract.
            &mut || unsafe { sys_recvfrom(fd, at, rest, flags | libc::MSG_DONTWAIT, addr, alen) },
            // SAFETY: the caller's pointers and lengths, valid by the hook's (libc's) contract.
            &mut || unsafe { sys_recvfrom(fd, at, rest, flags, addr, alen) },
        );
        if r < 0 {
            return if done > 0 { done as ssize_t } else { r };
        }
        done += r as usize;
        if !waitall || r == 0 || done >= len || flags & libc::MSG_PEEK != 0 {
            return done as ssize_t;
        }
    }
}

/// # Safety
/// libc's contract for `recvmsg`.
#[no_mangle]
unsafe extern "C" fn recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    // SAFETY (both closures): the caller's message.
    // SAFETY: the caller's pointers and lengths, valid by the hook's (libc's) contract.
    let mut plain = || unsafe { sys_recvmsg(fd, msg, flags) };
    let r = if !is_green_socket(fd) || flags & libc::MSG_DONTWAIT != 0 {
        straight(fd, Direction::Read, &mut plain)
    } else {
        green_io(
            fd,
            Direction::Read,
            0,
            grove_scheduler::WaitReason::custom(&"grove-monkey: recvmsg"),
            &mut Deadline::Unset,
            // SAFETY: the caller's pointers and lengths, valid by the hook's (libc's) contract.
            &mut || unsafe { sys_recvmsg(fd, msg, flags | libc::MSG_DONTWAIT) },
            &mut plain,
        )
    };
    if r >= 0 {
        // SAFETY: the kernel just filled `msg`'s control buffer.
        unsafe { forget_passed_fds(msg) };
    }
    r
}

/// Fds received with `SCM_RIGHTS` are fresh numbers: reset their slots.
///
/// # Safety
/// `msg` is a message `recvmsg` just filled.
unsafe fn forget_passed_fds(msg: *mut msghdr) {
    if msg.is_null() {
        return;
    }
    // SAFETY: `msg` and its control buffer were filled by the kernel; the CMSG macros
    // stay within `msg_controllen`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c) as *const c_int;
                let bytes = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..bytes / std::mem::size_of::<c_int>() {
                    fd::forget(data.add(i).read_unaligned());
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
}

/// # Safety
/// libc's contract for `readv`.
#[no_mangle]
unsafe extern "C" fn readv(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    // SAFETY (both closures): the caller's vectors.
    // SAFETY: the caller's pointers and lengths, valid by the hook's (libc's) contract.
    let mut plain = || unsafe { raw(libc::SYS_readv, args!(fd, iov, iovcnt)) as ssize_t };
    if !is_green_socket(fd) {
        return straight(fd, Direction::Read, &mut plain);
    }
    // SAFETY: an all-zero `msghdr` is valid (no name, no control).
    let mut msg: msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov as *mut iovec;
    msg.msg_iovlen = iovcnt.max(0) as _;
    // SAFETY: `msg` holds the caller's vectors, valid to read by readv's contract.
    let len = unsafe { msg_len(&msg) };
    green_io(
        fd,
        Direction::Read,
        len,
        grove_scheduler::WaitReason::custom(&"grove-monkey: readv"),
        &mut Deadline::Unset,
        // SAFETY: the caller's pointers and lengths, valid by the hook's (libc's) contract.
        &mut || unsafe { sys_recvmsg(fd, &mut msg, libc::MSG_DONTWAIT) },
        &mut plain,
    )
}

/// # Safety
/// libc's contract for `write`.
#[no_mangle]
unsafe extern "C" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    if !is_green_socket(fd) {
        // SAFETY: `buf` holds `count` readable bytes, the caller's contract.
        let mut plain = || unsafe { raw(libc::SYS_write, args!(fd, buf, count)) as ssize_t };
        return straight(fd, Direction::Write, &mut plain);
    }
    green_send(
        fd,
        count,
        grove_scheduler::WaitReason::custom(&"grove-monkey: write"),
        &|off, nb| {
            let at = (buf as *const u8).wrapping_add(off) as *const c_void;
            let flags = if nb { libc::MSG_DONTWAIT } else { 0 };
            // SAFETY: `off <= count`: the rest of the caller's buffer.
            unsafe { sys_sendto(fd, at, count - off, flags, std::ptr::null(), 0) }
        },
    )
}

/// # Safety
/// libc's contract for `send`.
#[no_mangle]
unsafe extern "C" fn send(fd: c_int, buf: *const c_void, len: size_t, flags: c_int) -> ssize_t {
    // SAFETY: libc's contract for `send` is `sendto`'s with no address.
    unsafe { sendto(fd, buf, len, flags, std::ptr::null(), 0) }
}

/// # Safety
/// libc's contract for `sendto`.
#[no_mangle]
unsafe extern "C" fn sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    alen: socklen_t,
) -> ssize_t {
    if !is_green_socket(fd) || flags & libc::MSG_DONTWAIT != 0 {
        // SAFETY: the caller's buffers.
        let mut plain = || unsafe { sys_sendto(fd, buf, len, flags, addr, alen) };
        return straight(fd, Direction::Write, &mut plain);
    }
    green_send(
        fd,
        len,
        grove_scheduler::WaitReason::custom(&"grove-monkey: send"),
        &|off, nb| {
            let at = (buf as *const u8).wrapping_add(off) as *const c_void;
            let f = if nb {
                flags | libc::MSG_DONTWAIT
            } else {
                flags
            };
            // SAFETY: `off <= len`: the rest of the caller's buffer.
            unsafe { sys_sendto(fd, at, len - off, f, addr, alen) }
        },
    )
}

/// Sends `msg`'s vectors from byte `off` on (a copy of the vectors, advanced).
///
/// # Safety
/// `msg` is a valid message whose vectors hold at least `off` bytes.
unsafe fn sendmsg_from(fd: c_int, msg: *const msghdr, off: usize, flags: c_int) -> ssize_t {
    if off == 0 {
        // SAFETY: the caller's message.
        return unsafe { sys_sendmsg(fd, msg, flags) };
    }
    // SAFETY: the caller's message and vectors are valid to read.
    unsafe {
        let m = &*msg;
        let iov = std::slice::from_raw_parts(m.msg_iov, m.msg_iovlen);
        let mut skip = off;
        let mut rest: Vec<iovec> = Vec::with_capacity(iov.len());
        for v in iov {
            if skip >= v.iov_len {
                skip -= v.iov_len;
                continue;
            }
            rest.push(iovec {
                iov_base: (v.iov_base as *mut u8).add(skip) as *mut c_void,
                iov_len: v.iov_len - skip,
            });
            skip = 0;
        }
        let mut copy: msghdr = std::ptr::read(msg);
        copy.msg_iov = rest.as_mut_ptr();
        copy.msg_iovlen = rest.len() as _;
        // Ancillary data went with the first bytes.
        copy.msg_control = std::ptr::null_mut();
        copy.msg_controllen = 0;
        sys_sendmsg(fd, &copy, flags)
    }
}

/// # Safety
/// `msg` is a valid message.
unsafe fn msg_len(msg: *const msghdr) -> usize {
    // SAFETY: the caller's message and vectors are valid to read.
    unsafe {
        let m = &*msg;
        if m.msg_iov.is_null() {
            return 0;
        }
        std::slice::from_raw_parts(m.msg_iov, m.msg_iovlen)
            .iter()
            .fold(0usize, |a, v| a.saturating_add(v.iov_len))
    }
}

/// # Safety
/// libc's contract for `sendmsg`.
#[no_mangle]
unsafe extern "C" fn sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    if !is_green_socket(fd) || flags & libc::MSG_DONTWAIT != 0 || msg.is_null() {
        // SAFETY: the caller's message.
        let mut plain = || unsafe { sys_sendmsg(fd, msg, flags) };
        return straight(fd, Direction::Write, &mut plain);
    }
    // SAFETY: the caller's message.
    let len = unsafe { msg_len(msg) };
    green_send(
        fd,
        len,
        grove_scheduler::WaitReason::custom(&"grove-monkey: sendmsg"),
        &|off, nb| {
            let f = if nb {
                flags | libc::MSG_DONTWAIT
            } else {
                flags
            };
            // SAFETY: `off` is at most the bytes sent so far, within the vectors.
            unsafe { sendmsg_from(fd, msg, off, f) }
        },
    )
}

/// # Safety
/// libc's contract for `writev`.
#[no_mangle]
unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, iovcnt: c_int) -> ssize_t {
    if !is_green_socket(fd) || iov.is_null() || iovcnt <= 0 {
        // SAFETY: the caller's vectors.
        let mut plain = || unsafe { raw(libc::SYS_writev, args!(fd, iov, iovcnt)) as ssize_t };
        return straight(fd, Direction::Write, &mut plain);
    }
    // SAFETY: an all-zero `msghdr` is valid (no name, no control).
    let mut msg: msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov as *mut iovec;
    msg.msg_iovlen = iovcnt as _;
    // SAFETY: `msg` wraps the caller's vectors.
    let len = unsafe { msg_len(&msg) };
    green_send(
        fd,
        len,
        grove_scheduler::WaitReason::custom(&"grove-monkey: writev"),
        &|off, nb| {
            let f = if nb { libc::MSG_DONTWAIT } else { 0 };
            // SAFETY: as in `sendmsg`.
            unsafe { sendmsg_from(fd, &msg, off, f) }
        },
    )
}

// ---------------------------------------------------------------------------------------
// accept / connect
// ---------------------------------------------------------------------------------------

/// # Safety
/// libc's contract for `accept`.
#[no_mangle]
unsafe extern "C" fn accept(fd: c_int, addr: *mut sockaddr, alen: *mut socklen_t) -> c_int {
    // SAFETY: libc's `accept` is `accept4` with no flags.
    unsafe { accept4(fd, addr, alen, 0) }
}

/// # Safety
/// libc's contract for `accept4`.
#[no_mangle]
unsafe extern "C" fn accept4(
    fd: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
    flags: c_int,
) -> c_int {
    // SAFETY (every closure): the caller's address buffers.
    // SAFETY: the caller's pointers and lengths, valid by the hook's (libc's) contract.
    let plain = || unsafe { raw(libc::SYS_accept4, args!(fd, addr, alen, flags)) as ssize_t };
    let r = if !is_green_socket(fd) {
        straight(fd, Direction::Read, &mut || plain())
    } else {
        match fd::sock(fd) {
            Some(s) if !s.user_nonblock() => green_io(
                fd,
                Direction::Read,
                0,
                grove_scheduler::WaitReason::custom(&"grove-monkey: accept"),
                &mut Deadline::Unset,
                &mut || s.with_nonblock(plain),
                &mut || plain(),
            ),
            _ => plain(),
        }
    };
    if r >= 0 {
        fd::fresh_socket(r as c_int);
    }
    r as c_int
}

/// # Safety
/// libc's contract for `connect`.
#[no_mangle]
unsafe extern "C" fn connect(fd: c_int, addr: *const sockaddr, alen: socklen_t) -> c_int {
    // SAFETY: the caller's address.
    let plain = || unsafe { raw(libc::SYS_connect, args!(fd, addr, alen)) as c_int };
    if !is_green_socket(fd) {
        return straight(fd, Direction::Write, &mut || plain() as ssize_t) as c_int;
    }
    let s = match fd::sock(fd) {
        Some(s) if !s.user_nonblock() => s,
        _ => return plain(),
    };
    let mut deadline = Deadline::Unset;
    loop {
        let r = s.with_nonblock(plain);
        if r == 0 {
            return 0;
        }
        let e = errno();
        let in_progress = match e {
            libc::EINPROGRESS | libc::EINTR => true,
            libc::EAGAIN => false, // a Unix socket's full backlog: wait, then retry
            _ => return r,
        };
        loop {
            match s.wait(
                Direction::Write,
                deadline.get(s.sndtimeo()),
                grove_scheduler::WaitReason::custom(&"grove-monkey: connect"),
            ) {
                Ok(()) => {}
                Err(WaitErr::Errno(e)) => {
                    set_errno(e);
                    return -1;
                }
                Err(WaitErr::TimedOut) => {
                    set_errno(libc::EINPROGRESS);
                    return -1;
                }
                Err(WaitErr::Passthrough) => {
                    // No reactor: wait with the real poll on this thread.
                    wait_real(fd, Direction::Write);
                }
            }
            if !in_progress {
                break;
            }
            if poll_now(fd, libc::POLLOUT) != 0 {
                let err: c_int = getsockopt_raw(fd, libc::SO_ERROR).unwrap_or(libc::EIO);
                if err == 0 {
                    return 0;
                }
                set_errno(err);
                return -1;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// poll / ppoll / select
// ---------------------------------------------------------------------------------------

fn deadline_ms(timeout_ms: c_int) -> Option<Instant> {
    let ms = u64::try_from(timeout_ms).ok()?;
    Instant::now().checked_add(Duration::from_millis(ms))
}

fn timespec_duration(ts: &timespec) -> Option<Duration> {
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    Some(Duration::new(secs, nanos))
}

/// # Safety
/// `fds` points to `n` valid `pollfd`s (or `n` is 0).
unsafe fn green_poll_array(
    fds: *mut pollfd,
    n: nfds_t,
    deadline: Option<Instant>,
) -> Result<c_int, c_int> {
    let list: Vec<PollFd> = if n == 0 || fds.is_null() {
        Vec::new()
    } else {
        // SAFETY: the caller's array of `n` entries.
        unsafe { std::slice::from_raw_parts(fds, n as usize) }
            .iter()
            .map(|p| PollFd {
                fd: p.fd,
                read: p.events & (libc::POLLIN | libc::POLLPRI | libc::POLLRDHUP) != 0,
                write: p.events & libc::POLLOUT != 0,
            })
            .collect()
    };
    fd::green_poll(&list, deadline, &mut || loop {
        // SAFETY: the caller's array.
        let r = unsafe { sys_poll(fds, n, 0) };
        if r >= 0 {
            return Ok(r);
        }
        // `ppoll` turns a zero timeout into "until now", so a signal pending at the
        // call is reported as EINTR even with nothing to wait for: a green wait is
        // never cut short by a signal, so look again.
        match errno() {
            libc::EINTR => continue,
            e => return Err(e),
        }
    })
}

/// # Safety
/// libc's contract for `poll`.
#[no_mangle]
unsafe extern "C" fn poll(fds: *mut pollfd, n: nfds_t, timeout: c_int) -> c_int {
    if !fd::green() || timeout == 0 {
        // SAFETY: the caller's array.
        return unsafe { sys_poll(fds, n, timeout) };
    }
    // SAFETY: the caller's array.
    match unsafe { green_poll_array(fds, n, deadline_ms(timeout)) } {
        Ok(r) => r,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// `__poll_chk`: what `poll` becomes in C compiled with `_FORTIFY_SOURCE`.
///
/// # Safety
/// libc's contract for `poll`.
#[no_mangle]
unsafe extern "C" fn __poll_chk(
    fds: *mut pollfd,
    n: nfds_t,
    timeout: c_int,
    _len: size_t,
) -> c_int {
    // SAFETY: forwarded.
    unsafe { poll(fds, n, timeout) }
}

/// # Safety
/// libc's contract for `ppoll`. Inside a greenlet the signal mask is not applied (a
/// greenlet shares its thread's mask with every other greenlet of the worker).
#[no_mangle]
unsafe extern "C" fn ppoll(
    fds: *mut pollfd,
    n: nfds_t,
    tmo: *const timespec,
    sigmask: *const libc::sigset_t,
) -> c_int {
    // SAFETY: `tmo` is null or valid, the caller's contract.
    let dur = if tmo.is_null() {
        None
    } else {
        // SAFETY: the caller's pointers and lengths, valid by the hook's (libc's) contract.
        Some(unsafe { *tmo })
    };
    let zero = dur.is_some_and(|t| t.tv_sec == 0 && t.tv_nsec == 0);
    if !fd::green() || zero {
        // SAFETY: the caller's arguments; the kernel wants the mask's size.
        return unsafe {
            raw(
                libc::SYS_ppoll,
                args!(fds, n, tmo, sigmask, KERNEL_SIGSET_BYTES),
            ) as c_int
        };
    }
    let deadline = match dur {
        None => None,
        Some(t) => match timespec_duration(&t) {
            Some(d) => Instant::now().checked_add(d),
            None => {
                set_errno(libc::EINVAL);
                return -1;
            }
        },
    };
    // SAFETY: the caller's array.
    match unsafe { green_poll_array(fds, n, deadline) } {
        Ok(r) => r,
        Err(e) => {
            set_errno(e);
            -1
        }
    }
}

/// # Safety
/// libc's contract for `select`.
#[no_mangle]
unsafe extern "C" fn select(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    tv: *mut timeval,
) -> c_int {
    // SAFETY: `tv` is null or valid, the caller's contract.
    let dur = if tv.is_null() {
        None
    } else {
        // SAFETY: the caller's pointers and lengths, valid by the hook's (libc's) contract.
        Some(unsafe { *tv })
    };
    let zero = dur.is_some_and(|t| t.tv_sec == 0 && t.tv_usec == 0);
    if !fd::green() || zero || !(0..=libc::FD_SETSIZE as c_int).contains(&nfds) {
        let mut ts = dur.map(|t| timespec {
            tv_sec: t.tv_sec,
            tv_nsec: t.tv_usec.saturating_mul(1000),
        });
        let tp = ts
            .as_mut()
            .map_or(std::ptr::null_mut(), |t| t as *mut timespec);
        // SAFETY: the caller's sets; `tp` is null or a live local; no mask.
        let res = unsafe { raw(libc::SYS_pselect6, args!(nfds, r, w, e, tp, 0usize)) as c_int };
        if let (Some(ts), false) = (ts, tv.is_null()) {
            // Linux's select reports the time not slept in the caller's `timeval`.
            // SAFETY: the caller's valid `timeval`.
            unsafe {
                (*tv).tv_sec = ts.tv_sec;
                (*tv).tv_usec = ts.tv_nsec / 1000;
            }
        }
        return res;
    }
    let start = Instant::now();
    let deadline = match dur {
        None => None,
        Some(t) => {
            let micros = u64::try_from(t.tv_usec).ok().filter(|u| *u < 1_000_000);
            match (u64::try_from(t.tv_sec).ok(), micros) {
                (Some(s), Some(u)) => {
                    start.checked_add(Duration::from_secs(s) + Duration::from_micros(u))
                }
                _ => {
                    set_errno(libc::EINVAL);
                    return -1;
                }
            }
        }
    };
    let isset = |set: *mut libc::fd_set, fd: c_int| {
        // SAFETY: `set` is null or the caller's valid set; `fd < nfds <= FD_SETSIZE`.
        !set.is_null() && unsafe { libc::FD_ISSET(fd, set) }
    };
    let mut pfds: Vec<pollfd> = Vec::new();
    for fd in 0..nfds {
        let mut events = 0;
        if isset(r, fd) {
            events |= libc::POLLIN;
        }
        if isset(w, fd) {
            events |= libc::POLLOUT;
        }
        if isset(e, fd) {
            events |= libc::POLLPRI;
        }
        if events != 0 {
            pfds.push(pollfd {
                fd,
                events,
                revents: 0,
            });
        }
    }
    // SAFETY: a local array of `pfds.len()` entries.
    let res = unsafe { green_poll_array(pfds.as_mut_ptr(), pfds.len() as nfds_t, deadline) };
    let n = match res {
        Ok(n) => n,
        Err(err) => {
            set_errno(err);
            return -1;
        }
    };
    if pfds.iter().any(|p| p.revents & libc::POLLNVAL != 0) {
        set_errno(libc::EBADF);
        return -1;
    }
    for set in [r, w, e] {
        if !set.is_null() {
            // SAFETY: the caller's valid set.
            unsafe { libc::FD_ZERO(set) };
        }
    }
    let mut count = 0;
    if n > 0 {
        for p in &pfds {
            let hits = [
                (
                    r,
                    p.events & libc::POLLIN != 0
                        && p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0,
                ),
                (
                    w,
                    p.events & libc::POLLOUT != 0
                        && p.revents & (libc::POLLOUT | libc::POLLERR) != 0,
                ),
                (
                    e,
                    p.events & libc::POLLPRI != 0 && p.revents & libc::POLLPRI != 0,
                ),
            ];
            for (set, hit) in hits {
                if hit {
                    // SAFETY: the caller's valid set; `p.fd < nfds`.
                    unsafe { libc::FD_SET(p.fd, set) };
                    count += 1;
                }
            }
        }
    }
    if !tv.is_null() {
        // Linux reports the time not slept.
        let left = deadline.map_or(Duration::ZERO, |d| {
            d.saturating_duration_since(Instant::now())
        });
        // SAFETY: the caller's valid `timeval`.
        unsafe {
            (*tv).tv_sec = left.as_secs() as libc::time_t;
            (*tv).tv_usec = left.subsec_micros() as libc::suseconds_t;
        }
    }
    count
}

// ---------------------------------------------------------------------------------------
// getaddrinfo
// ---------------------------------------------------------------------------------------

/// The signature of libc's `getaddrinfo(3)`.
///
/// # Safety
///
/// A caller passes what `getaddrinfo(3)` requires: `node` and `service` null or
/// NUL-terminated strings, `hints` null or a valid `addrinfo`, `res` valid for a write;
/// a successful result is freed with `freeaddrinfo` exactly once.
type GetAddrInfo = unsafe extern "C" fn(
    *const libc::c_char,
    *const libc::c_char,
    *const libc::addrinfo,
    *mut *mut libc::addrinfo,
) -> c_int;

/// libc's `getaddrinfo`, found with `dlsym(RTLD_NEXT)` (there is no syscall for it).
fn real_getaddrinfo() -> Option<GetAddrInfo> {
    static REAL: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let p = *REAL.get_or_init(|| {
        // SAFETY: a NUL-terminated name; RTLD_NEXT finds the definition after ours.
        unsafe { libc::dlsym(libc::RTLD_NEXT, c"getaddrinfo".as_ptr()) as usize }
    });
    // SAFETY: a non-null result of `dlsym` for `getaddrinfo` is that function.
    (p != 0).then(|| unsafe { std::mem::transmute::<usize, GetAddrInfo>(p) })
}

/// One lookup handed to a thread: its result, and whether the greenlet gave up on it.
struct Lookup {
    /// (return code, result list as an address, errno)
    result: std::sync::Mutex<Option<(c_int, usize, c_int)>>,
    abandoned: std::sync::atomic::AtomicBool,
    waker: std::task::Waker,
}

/// `getaddrinfo`. Inside a greenlet the lookup (files, DNS: glibc waits in its own
/// internal `poll`, which no hook reaches) runs on a thread of its own while the
/// greenlet parks. Interrupted, it returns `EAI_SYSTEM` with errno `ECANCELED`; the
/// thread frees the list when it finishes.
///
/// # Safety
/// libc's contract for `getaddrinfo`.
#[no_mangle]
unsafe extern "C" fn getaddrinfo(
    node: *const libc::c_char,
    service: *const libc::c_char,
    hints: *const libc::addrinfo,
    res: *mut *mut libc::addrinfo,
) -> c_int {
    let Some(real) = real_getaddrinfo() else {
        set_errno(libc::ENOSYS);
        return libc::EAI_SYSTEM;
    };
    if !fd::green() || res.is_null() {
        // SAFETY: the caller's arguments, passed on.
        return unsafe { real(node, service, hints, res) };
    }
    let own = |p: *const libc::c_char| {
        (!p.is_null()).then(|| {
            // SAFETY: the caller's strings are NUL-terminated (null ones are skipped).
            unsafe { std::ffi::CStr::from_ptr(p) }.to_owned()
        })
    };
    let (node_c, service_c) = (own(node), own(service));
    let hints_c = (!hints.is_null()).then(|| {
        // SAFETY: the caller's valid `addrinfo`; only its plain fields are kept.
        let mut h: libc::addrinfo = unsafe { std::ptr::read(hints) };
        h.ai_addr = std::ptr::null_mut();
        h.ai_canonname = std::ptr::null_mut();
        h.ai_next = std::ptr::null_mut();
        h.ai_addrlen = 0;
        (h.ai_flags, h.ai_family, h.ai_socktype, h.ai_protocol)
    });
    let job = std::sync::Arc::new(Lookup {
        result: std::sync::Mutex::new(None),
        abandoned: std::sync::atomic::AtomicBool::new(false),
        waker: grove_scheduler::current_waker(),
    });
    let j2 = job.clone();
    let spawned = std::thread::Builder::new()
        .name("grove-monkey-dns".into())
        .spawn(move || {
            // SAFETY: a zeroed `addrinfo` is a valid empty hints struct.
            let mut h: libc::addrinfo = unsafe { std::mem::zeroed() };
            let hp = match hints_c {
                Some((flags, family, socktype, protocol)) => {
                    h.ai_flags = flags;
                    h.ai_family = family;
                    h.ai_socktype = socktype;
                    h.ai_protocol = protocol;
                    &h as *const libc::addrinfo
                }
                None => std::ptr::null(),
            };
            let mut out: *mut libc::addrinfo = std::ptr::null_mut();
            let ptr =
                |c: &Option<std::ffi::CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
            // SAFETY: owned strings and hints that live across the call.
            let rc = unsafe { real(ptr(&node_c), ptr(&service_c), hp, &mut out) };
            let e = errno();
            let mut r = j2
                .result
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if j2.abandoned.load(std::sync::atomic::Ordering::Acquire) {
                if rc == 0 && !out.is_null() {
                    // SAFETY: the list this call returned, which nobody else will see.
                    unsafe { libc::freeaddrinfo(out) };
                }
                return;
            }
            *r = Some((rc, out as usize, e));
            drop(r);
            j2.waker.wake_by_ref();
        });
    if spawned.is_err() {
        // No thread to spare: resolve here, holding the worker.
        // SAFETY: the caller's arguments, passed on.
        return unsafe { real(node, service, hints, res) };
    }
    loop {
        if let Some((rc, out, e)) = job
            .result
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
        {
            // SAFETY: the caller's valid `res`.
            unsafe { *res = out as *mut libc::addrinfo };
            set_errno(e);
            return rc;
        }
        if grove_scheduler::park_nounwind(
            None,
            grove_scheduler::WaitReason::custom(&"grove-monkey: getaddrinfo"),
        ) == grove_scheduler::ParkStatus::Interrupted
        {
            let mut r = job
                .result
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            job.abandoned
                .store(true, std::sync::atomic::Ordering::Release);
            if let Some((rc, out, _)) = r.take() {
                if rc == 0 && out != 0 {
                    // SAFETY: the list the lookup returned, never handed to the caller.
                    unsafe { libc::freeaddrinfo(out as *mut libc::addrinfo) };
                }
            }
            set_errno(crate::INTERRUPTED);
            return libc::EAI_SYSTEM;
        }
    }
}

// ---------------------------------------------------------------------------------------
// sleeps
// ---------------------------------------------------------------------------------------

/// Sleeps the greenlet for `d`: `false` if an interrupt cut it short.
fn green_sleep_for(d: Duration) -> bool {
    match Instant::now().checked_add(d) {
        Some(deadline) => fd::green_sleep(deadline).is_ok(),
        // Longer than the clock can say: until interrupted.
        None => loop {
            if grove_scheduler::park_nounwind(
                None,
                grove_scheduler::WaitReason::custom(&"grove-monkey: sleep"),
            ) != grove_scheduler::ParkStatus::Woken
            {
                return false;
            }
        },
    }
}

/// # Safety
/// libc's contract for `nanosleep`.
#[no_mangle]
unsafe extern "C" fn nanosleep(req: *const timespec, rem: *mut timespec) -> c_int {
    if !fd::green() || req.is_null() {
        // SAFETY: the caller's pointers.
        return unsafe { raw(libc::SYS_nanosleep, args!(req, rem)) as c_int };
    }
    // SAFETY: `req` is valid, the caller's contract.
    let Some(d) = timespec_duration(unsafe { &*req }) else {
        set_errno(libc::EINVAL);
        return -1;
    };
    if green_sleep_for(d) {
        return 0;
    }
    // Interrupted: EINTR with nothing left to sleep, so a caller that loops on EINTR
    // (std's `thread::sleep` does) returns, and the interrupt fires at its next grove
    // blocking point.
    if !rem.is_null() {
        // SAFETY: the caller's valid `rem`.
        unsafe {
            *rem = timespec {
                tv_sec: 0,
                tv_nsec: 0,
            }
        };
    }
    set_errno(libc::EINTR);
    -1
}

/// # Safety
/// libc's contract for `clock_nanosleep` (returns an error number, not -1).
#[no_mangle]
unsafe extern "C" fn clock_nanosleep(
    clock: libc::clockid_t,
    flags: c_int,
    req: *const timespec,
    rem: *mut timespec,
) -> c_int {
    if !fd::green() || req.is_null() {
        // SAFETY: the caller's pointers.
        let r = unsafe { raw(libc::SYS_clock_nanosleep, args!(clock, flags, req, rem)) };
        return if r < 0 { errno() } else { 0 };
    }
    // SAFETY: `req` is valid, the caller's contract.
    let Some(mut d) = timespec_duration(unsafe { &*req }) else {
        return libc::EINVAL;
    };
    if flags & libc::TIMER_ABSTIME != 0 {
        let mut now = timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a live local.
        if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
            return errno();
        }
        d = d.saturating_sub(timespec_duration(&now).unwrap_or(Duration::ZERO));
    }
    if green_sleep_for(d) {
        return 0;
    }
    if !rem.is_null() && flags & libc::TIMER_ABSTIME == 0 {
        // SAFETY: the caller's valid `rem`.
        unsafe {
            *rem = timespec {
                tv_sec: 0,
                tv_nsec: 0,
            }
        };
    }
    libc::EINTR
}

/// # Safety
/// libc's contract for `usleep`.
#[no_mangle]
unsafe extern "C" fn usleep(usec: libc::useconds_t) -> c_int {
    let d = Duration::from_micros(usec.into());
    if fd::green() {
        if green_sleep_for(d) {
            return 0;
        }
        set_errno(libc::EINTR);
        return -1;
    }
    let ts = timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as c_long,
    };
    // SAFETY: a live local; no remainder wanted.
    unsafe { raw(libc::SYS_nanosleep, args!(&ts as *const timespec, 0usize)) as c_int }
}

/// # Safety
/// libc's contract for `sleep`.
#[no_mangle]
unsafe extern "C" fn sleep(secs: c_uint) -> c_uint {
    let d = Duration::from_secs(secs.into());
    if fd::green() {
        // An interrupted green sleep ends early and reports no time left (see
        // `nanosleep`).
        green_sleep_for(d);
        return 0;
    }
    let ts = timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: 0,
    };
    let mut rem = timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: live locals.
    let r = unsafe {
        raw(
            libc::SYS_nanosleep,
            args!(&ts as *const timespec, &mut rem as *mut timespec),
        )
    };
    if r < 0 {
        rem.tv_sec as c_uint + c_uint::from(rem.tv_nsec >= 500_000_000)
    } else {
        0
    }
}

// ---------------------------------------------------------------------------------------
// fd lifetime and modes
// ---------------------------------------------------------------------------------------

/// # Safety
/// libc's contract for `close`.
#[no_mangle]
unsafe extern "C" fn close(fd: c_int) -> c_int {
    fd::forget(fd);
    // SAFETY: closing an fd number is memory-safe.
    unsafe { raw(libc::SYS_close, args!(fd)) as c_int }
}

/// # Safety
/// libc's contract for `dup`.
#[no_mangle]
unsafe extern "C" fn dup(fd: c_int) -> c_int {
    // SAFETY: no pointers.
    let r = unsafe { raw(libc::SYS_dup, args!(fd)) as c_int };
    if r >= 0 {
        fd::forget(r);
    }
    r
}

/// # Safety
/// libc's contract for `dup2`.
#[no_mangle]
unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    if old == new {
        // dup2 of an fd onto itself checks it is open and does nothing else.
        // SAFETY: no pointers.
        let r = unsafe { raw(libc::SYS_fcntl, args!(old, libc::F_GETFD)) };
        return if r < 0 { -1 } else { new };
    }
    // SAFETY: libc's `dup2` is `dup3` with no flags when the fds differ.
    unsafe { dup3(old, new, 0) }
}

/// # Safety
/// libc's contract for `dup3`.
#[no_mangle]
unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    // A dup that will succeed closes the target first, and its waiters must hear of it
    // (before the call: the registration to undo is the target's old file). One that will
    // fail (`old` not open, bad flags; the kernel's own checks, made again by the call
    // below, which sets errno) leaves the target, its registration and its waiters alone.
    // SAFETY: no pointers.
    let old_is_open = unsafe { raw(libc::SYS_fcntl, args!(old, libc::F_GETFD)) } >= 0;
    if old != new && old_is_open && flags & !libc::O_CLOEXEC == 0 {
        fd::forget(new);
    }
    // SAFETY: no pointers.
    let r = unsafe { raw(libc::SYS_dup3, args!(old, new, flags)) as c_int };
    if r >= 0 {
        fd::forget(r);
    }
    r
}

/// `fcntl`. C declares it variadic; on the Linux ABIs Rust supports, a variadic integer
/// or pointer argument travels exactly like a fixed one, so the third argument is taken
/// as a machine word.
///
/// # Safety
/// libc's contract for `fcntl`.
#[no_mangle]
unsafe extern "C" fn fcntl(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    // SAFETY: the caller's argument, passed on unchanged.
    let real = |arg: c_ulong| unsafe { raw(libc::SYS_fcntl, args!(fd, cmd, arg)) as c_int };
    match cmd {
        libc::F_GETFL => {
            let r = real(arg);
            match fd::sock_if_present(fd) {
                Some(s) if r >= 0 => {
                    let nb = libc::O_NONBLOCK;
                    if s.user_nonblock() {
                        r | nb
                    } else {
                        r & !nb
                    }
                }
                _ => r,
            }
        }
        libc::F_SETFL => match fd::sock_if_present(fd) {
            Some(s) => {
                let nb = libc::O_NONBLOCK as c_ulong;
                s.set_user_nonblock(arg & nb != 0, |kernel_nb| {
                    real(if kernel_nb { arg | nb } else { arg & !nb })
                })
            }
            None => real(arg),
        },
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            let r = real(arg);
            if r >= 0 {
                fd::forget(r);
            }
            r
        }
        _ => real(arg),
    }
}

/// `fcntl64`: the same call under the name glibc's large-file headers use.
///
/// # Safety
/// libc's contract for `fcntl`.
#[no_mangle]
unsafe extern "C" fn fcntl64(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
    // SAFETY: forwarded.
    unsafe { fcntl(fd, cmd, arg) }
}

/// `ioctl` (variadic in C; see `fcntl`). `FIONBIO` keeps the user's mode.
///
/// # Safety
/// libc's contract for `ioctl`.
#[no_mangle]
unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: c_ulong) -> c_int {
    // SAFETY: the caller's argument, passed on unchanged.
    let real = |arg: c_ulong| unsafe { raw(libc::SYS_ioctl, args!(fd, request, arg)) as c_int };
    if request == libc::FIONBIO && arg != 0 {
        if let Some(s) = fd::sock_if_present(fd) {
            // SAFETY: `FIONBIO` takes a pointer to an `int`, the caller's contract.
            let on = unsafe { *(arg as *const c_int) } != 0;
            return s.set_user_nonblock(on, |kernel_nb| {
                let v: c_int = kernel_nb.into();
                real(&v as *const c_int as c_ulong)
            });
        }
    }
    real(arg)
}

/// # Safety
/// libc's contract for `setsockopt`.
#[no_mangle]
unsafe extern "C" fn setsockopt(
    fd: c_int,
    level: c_int,
    name: c_int,
    val: *const c_void,
    len: socklen_t,
) -> c_int {
    // SAFETY: the caller's option buffer.
    let r = unsafe { raw(libc::SYS_setsockopt, args!(fd, level, name, val, len)) as c_int };
    let timeo = name == libc::SO_RCVTIMEO || name == libc::SO_SNDTIMEO;
    if r == 0
        && level == libc::SOL_SOCKET
        && timeo
        && !val.is_null()
        && len as usize >= std::mem::size_of::<timeval>()
    {
        if let Some(s) = fd::sock_if_present(fd) {
            // SAFETY: the kernel accepted `val` as a `timeval`.
            let tv = unsafe { (val as *const timeval).read_unaligned() };
            s.set_timeout(name == libc::SO_RCVTIMEO, timeval_to_duration(&tv));
        }
    }
    r
}

/// # Safety
/// libc's contract for `socket`.
#[no_mangle]
unsafe extern "C" fn socket(domain: c_int, ty: c_int, proto: c_int) -> c_int {
    // SAFETY: no pointers.
    let r = unsafe { raw(libc::SYS_socket, args!(domain, ty, proto)) as c_int };
    if r >= 0 {
        fd::fresh_socket(r);
    }
    r
}

/// # Safety
/// libc's contract for `socketpair`.
#[no_mangle]
unsafe extern "C" fn socketpair(domain: c_int, ty: c_int, proto: c_int, sv: *mut c_int) -> c_int {
    // SAFETY: `sv` holds two ints, the caller's contract.
    let r = unsafe { raw(libc::SYS_socketpair, args!(domain, ty, proto, sv)) as c_int };
    if r == 0 {
        // SAFETY: the kernel filled both.
        unsafe {
            fd::fresh_socket(*sv);
            fd::fresh_socket(*sv.add(1));
        }
    }
    r
}

/// The hooks' addresses: referencing them from code the program runs makes the
/// linker keep the object files that define them.
pub(crate) fn addresses() -> [usize; 34] {
    [
        read as *const () as usize,
        recv as *const () as usize,
        recvfrom as *const () as usize,
        recvmsg as *const () as usize,
        readv as *const () as usize,
        write as *const () as usize,
        send as *const () as usize,
        sendto as *const () as usize,
        sendmsg as *const () as usize,
        writev as *const () as usize,
        accept as *const () as usize,
        accept4 as *const () as usize,
        connect as *const () as usize,
        poll as *const () as usize,
        __poll_chk as *const () as usize,
        ppoll as *const () as usize,
        select as *const () as usize,
        nanosleep as *const () as usize,
        clock_nanosleep as *const () as usize,
        usleep as *const () as usize,
        sleep as *const () as usize,
        close as *const () as usize,
        dup as *const () as usize,
        dup2 as *const () as usize,
        dup3 as *const () as usize,
        fcntl as *const () as usize,
        fcntl64 as *const () as usize,
        ioctl as *const () as usize,
        setsockopt as *const () as usize,
        socket as *const () as usize,
        socketpair as *const () as usize,
        getaddrinfo as *const () as usize,
        atfork_child as *const () as usize,
        register_atfork as *const () as usize,
    ]
}
