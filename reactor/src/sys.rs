//! The one `unsafe` corner of the reactor: a non-blocking `epoll_wait` on the shared poll, for
//! harvesting events from worker threads, the decoding of what it returns, and a cache
//! prefetch hint ([`prefetch`]).
//!
//! `mio::Poll::poll` needs the `Poll` itself (`&mut`), which only the reactor thread owns; but
//! the epoll instance behind it may be waited on by any number of threads at once, and the
//! kernel hands each edge-triggered event to exactly one caller. Workers therefore call
//! `epoll_wait(fd, .., timeout = 0)` on a duplicate of the poll's descriptor (the
//! `mio::Registry` clone the reactor keeps for registration) and decode the events the way mio
//! does (`mio/src/sys/unix/selector/epoll.rs`), so a readiness means the same whoever harvests
//! it. On systems without epoll, [`SUPPORTED`] is false and only the reactor thread polls.

use std::io;
use std::os::fd::RawFd;

use crate::scheduled_io::Ready;

/// Whether worker threads can harvest events themselves (Linux and Android: epoll).
pub(crate) const SUPPORTED: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Starts loading the cache line at `addr`: a hint with no effect a program can observe,
/// whatever `addr` is (used on wakers' objects a few wakes ahead, see `Shared::wake_all`).
#[inline(always)]
pub(crate) fn prefetch(addr: *const ()) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` never faults (not even on an unmapped or null address) and has
    // no architectural effect; the `sse` feature it is declared with is part of the
    // x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(addr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

/// One harvested event: the registration's token and its readiness.
pub(crate) type Harvested = (usize, Ready);

/// A buffer for [`harvest`]: kernel event records, reused from call to call.
pub(crate) struct EventBuf {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    raw: Vec<libc::epoll_event>,
}

impl EventBuf {
    /// Room for `capacity` events per call.
    pub(crate) fn with_capacity(capacity: usize) -> EventBuf {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            EventBuf {
                raw: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.max(1)],
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            let _ = capacity;
            EventBuf {}
        }
    }
}

/// Takes the events ready on the epoll instance `epfd` without blocking (timeout 0) and appends
/// them to `out`. Returns how many there were. `EINTR` counts as none.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn harvest(
    epfd: RawFd,
    buf: &mut EventBuf,
    out: &mut Vec<Harvested>,
) -> io::Result<usize> {
    let cap = i32::try_from(buf.raw.len()).unwrap_or(i32::MAX);
    // SAFETY: `buf.raw` is a live, writable array of `cap` `epoll_event`s that the kernel fills
    // and nothing else aliases during the call; `epfd` is a descriptor we own (an invalid one
    // fails with EBADF, never touches memory), and the timeout 0 makes the call non-blocking.
    let n = unsafe { libc::epoll_wait(epfd, buf.raw.as_mut_ptr(), cap, 0) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::Interrupted => Ok(0),
            _ => Err(err),
        };
    }
    let n = n as usize;
    out.extend(buf.raw[..n].iter().map(|e| {
        let events = e.events;
        let token = e.u64;
        (token as usize, decode(events as libc::c_int))
    }));
    Ok(n)
}

/// Without epoll there is nothing to harvest from a worker.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn harvest(
    _epfd: RawFd,
    _buf: &mut EventBuf,
    _out: &mut Vec<Harvested>,
) -> io::Result<usize> {
    Ok(0)
}

/// mio's reading of epoll's flags (`sys/unix/selector/epoll.rs`, `event::is_*`).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn decode(events: libc::c_int) -> Ready {
    let has = |flag: libc::c_int| events & flag != 0;
    let mut ready = Ready::EMPTY;
    if has(libc::EPOLLIN) || has(libc::EPOLLPRI) {
        ready = ready | Ready::READABLE;
    }
    if has(libc::EPOLLOUT) {
        ready = ready | Ready::WRITABLE;
    }
    if has(libc::EPOLLHUP) || (has(libc::EPOLLIN) && has(libc::EPOLLRDHUP)) {
        ready = ready | Ready::READ_CLOSED;
    }
    if has(libc::EPOLLHUP)
        || (has(libc::EPOLLOUT) && has(libc::EPOLLERR))
        || events == libc::EPOLLERR
    {
        ready = ready | Ready::WRITE_CLOSED;
    }
    if has(libc::EPOLLERR) {
        ready = ready | Ready::ERROR;
    }
    ready
}

#[cfg(all(test, any(target_os = "linux", target_os = "android"), not(grove_loom)))]
mod tests {
    use super::*;
    use crate::Direction;

    #[test]
    fn decodes_like_mio() {
        let r = decode(libc::EPOLLIN);
        assert!(r.is_ready(Direction::Read) && !r.is_ready(Direction::Write));
        let r = decode(libc::EPOLLOUT);
        assert!(r.is_ready(Direction::Write) && !r.is_ready(Direction::Read));
        assert_eq!(
            decode(libc::EPOLLIN | libc::EPOLLRDHUP),
            Ready::READABLE | Ready::READ_CLOSED
        );
        assert_eq!(decode(libc::EPOLLERR), Ready::WRITE_CLOSED | Ready::ERROR);
        assert_eq!(
            decode(libc::EPOLLHUP),
            Ready::READ_CLOSED | Ready::WRITE_CLOSED
        );
        assert!(decode(0).is_empty());
    }
}
