//! The real system calls, reached without re-entering the hooks: `syscall(SYS_...)`
//! wrappers, errno, and the few safe helpers built on them (is this fd a socket, its mode
//! and timeouts, a plain thread's readiness wait). The bottom layer of the crate: the
//! fd table (`fd`) and the hooks (`unsafe_ffi`) sit on it, and it names neither. One of
//! the crate's two `unsafe` modules; see `unsafe_ffi`'s "Why raw syscalls".

use std::ffi::{c_int, c_long, c_void};
use std::time::Duration;

use grove_reactor::Direction;
use libc::{msghdr, nfds_t, pollfd, size_t, sockaddr, socklen_t, ssize_t, timespec, timeval};

pub(crate) fn errno() -> c_int {
    // SAFETY: `__errno_location` returns this thread's errno slot, valid for the
    // thread's lifetime.
    unsafe { *libc::__errno_location() }
}

pub(crate) fn set_errno(e: c_int) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e }
}

/// Makes a raw syscall. Returns the kernel's result (or -1 with errno set).
///
/// # Safety
/// The arguments must satisfy the syscall's contract (valid pointers for its buffers).
pub(crate) unsafe fn raw(n: c_long, a: [usize; 6]) -> c_long {
    // SAFETY: forwarded to the caller.
    unsafe { libc::syscall(n, a[0], a[1], a[2], a[3], a[4], a[5]) }
}

/// A syscall's six argument words from up to six integers or pointers.
macro_rules! args {
    ($($x:expr),*) => {{
        let mut a = [0usize; 6];
        let v: &[usize] = &[$($x as usize),*];
        a[..v.len()].copy_from_slice(v);
        a
    }};
}
pub(crate) use args;

/// The real `recvfrom` (`recv` is `recvfrom` with no address).
///
/// # Safety
/// libc's contract for `recvfrom`.
pub(crate) unsafe fn sys_recvfrom(
    fd: c_int,
    buf: *mut c_void,
    len: size_t,
    flags: c_int,
    addr: *mut sockaddr,
    alen: *mut socklen_t,
) -> ssize_t {
    // SAFETY: the caller's buffers, as libc would pass them.
    unsafe { raw(libc::SYS_recvfrom, args!(fd, buf, len, flags, addr, alen)) as ssize_t }
}

/// # Safety
/// libc's contract for `sendto`.
pub(crate) unsafe fn sys_sendto(
    fd: c_int,
    buf: *const c_void,
    len: size_t,
    flags: c_int,
    addr: *const sockaddr,
    alen: socklen_t,
) -> ssize_t {
    // SAFETY: the caller's buffers, as libc would pass them.
    unsafe { raw(libc::SYS_sendto, args!(fd, buf, len, flags, addr, alen)) as ssize_t }
}

/// # Safety
/// libc's contract for `recvmsg`.
pub(crate) unsafe fn sys_recvmsg(fd: c_int, msg: *mut msghdr, flags: c_int) -> ssize_t {
    // SAFETY: the caller's message, as libc would pass it.
    unsafe { raw(libc::SYS_recvmsg, args!(fd, msg, flags)) as ssize_t }
}

/// # Safety
/// libc's contract for `sendmsg`.
pub(crate) unsafe fn sys_sendmsg(fd: c_int, msg: *const msghdr, flags: c_int) -> ssize_t {
    // SAFETY: the caller's message, as libc would pass it.
    unsafe { raw(libc::SYS_sendmsg, args!(fd, msg, flags)) as ssize_t }
}

/// The kernel's signal set size (`_NSIG / 8`), which `ppoll` and `pselect6` want beside
/// a mask; glibc's `sigset_t` is larger (128 bytes) and the kernel refuses that size.
pub(crate) const KERNEL_SIGSET_BYTES: usize = 64 / 8;

/// The real `poll` (through `ppoll`, which every Linux architecture has).
///
/// # Safety
/// `fds` points to `n` valid `pollfd`s.
pub(crate) unsafe fn sys_poll(fds: *mut pollfd, n: nfds_t, timeout_ms: c_int) -> c_int {
    let ts;
    let tp: *const timespec = if timeout_ms < 0 {
        std::ptr::null()
    } else {
        ts = timespec {
            tv_sec: (timeout_ms / 1000) as libc::time_t,
            tv_nsec: ((timeout_ms % 1000) as c_long) * 1_000_000,
        };
        &ts
    };
    // SAFETY: `fds` per the caller; `tp` is null or a live local; no signal mask.
    unsafe { raw(libc::SYS_ppoll, args!(fds, n, tp, 0usize, 0usize)) as c_int }
}

/// Waits with the real `poll` until `fd` is ready in `dir` (a plain thread's wait).
pub(crate) fn wait_real(fd: c_int, dir: Direction) {
    let mut p = pollfd {
        fd,
        events: match dir {
            Direction::Read => libc::POLLIN,
            Direction::Write => libc::POLLOUT,
        },
        revents: 0,
    };
    // SAFETY: one valid local `pollfd`.
    unsafe { sys_poll(&mut p, 1, -1) };
}

/// The real `poll` of one fd with a zero timeout: its `revents` (0: not ready).
/// Retries on EINTR (see `green_poll_array`).
pub(crate) fn poll_now(fd: c_int, events: i16) -> i16 {
    loop {
        let mut p = pollfd {
            fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid local `pollfd`.
        let r = unsafe { sys_poll(&mut p, 1, 0) };
        if r >= 0 || errno() != libc::EINTR {
            return p.revents;
        }
    }
}

/// `fstat`: `Some(true)` for a socket, `None` if the fd is not open.
pub(crate) fn is_socket(fd: c_int) -> Option<bool> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a writable `stat` buffer.
    let r = unsafe { raw(libc::SYS_fstat, args!(fd, st.as_mut_ptr())) };
    if r < 0 {
        return None;
    }
    // SAFETY: `fstat` succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Some(st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
}

/// What a socket's table entry starts from: the kernel's view at first wait.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SockInfo {
    pub(crate) nonblock: bool,
    pub(crate) stream: bool,
    pub(crate) rcvtimeo: Option<Duration>,
    pub(crate) sndtimeo: Option<Duration>,
}

pub(crate) fn getsockopt_raw<T>(fd: c_int, name: c_int) -> Option<T> {
    let mut v = std::mem::MaybeUninit::<T>::zeroed();
    let mut len = std::mem::size_of::<T>() as socklen_t;
    // SAFETY: `v` and `len` are live locals of the right size.
    let r = unsafe {
        raw(
            libc::SYS_getsockopt,
            args!(
                fd,
                libc::SOL_SOCKET,
                name,
                v.as_mut_ptr(),
                &mut len as *mut socklen_t
            ),
        )
    };
    // SAFETY: zero-initialized plain-old-data, possibly filled by the kernel.
    (r == 0).then(|| unsafe { v.assume_init() })
}

pub(crate) fn timeval_to_duration(tv: &timeval) -> Option<Duration> {
    let secs = u64::try_from(tv.tv_sec).ok()?;
    let micros = u32::try_from(tv.tv_usec).ok()?;
    let d = Duration::from_secs(secs).checked_add(Duration::from_micros(micros.into()))?;
    (!d.is_zero()).then_some(d)
}

/// Reads a socket's blocking mode, type and timeouts. `None` if it is not one.
pub(crate) fn sock_info(fd: c_int) -> Option<SockInfo> {
    // SAFETY: `F_GETFL` takes no argument.
    let fl = unsafe { raw(libc::SYS_fcntl, args!(fd, libc::F_GETFL)) };
    if fl < 0 {
        return None;
    }
    let ty: c_int = getsockopt_raw(fd, libc::SO_TYPE)?;
    let rcv: timeval = getsockopt_raw(fd, libc::SO_RCVTIMEO)?;
    let snd: timeval = getsockopt_raw(fd, libc::SO_SNDTIMEO)?;
    Some(SockInfo {
        nonblock: fl & libc::O_NONBLOCK as c_long != 0,
        stream: ty == libc::SOCK_STREAM,
        rcvtimeo: timeval_to_duration(&rcv),
        sndtimeo: timeval_to_duration(&snd),
    })
}

/// Sets or clears `O_NONBLOCK` in the kernel.
pub(crate) fn set_kernel_nonblock(fd: c_int, on: bool) {
    // SAFETY: `F_GETFL`/`F_SETFL` take an integer argument.
    unsafe {
        let fl = raw(libc::SYS_fcntl, args!(fd, libc::F_GETFL));
        if fl >= 0 {
            let nb = libc::O_NONBLOCK as c_long;
            let new = if on { fl | nb } else { fl & !nb };
            if new != fl {
                raw(libc::SYS_fcntl, args!(fd, libc::F_SETFL, new));
            }
        }
    }
}
