//! The raw descriptor calls the green sockets need beyond `mio` and std: this is the only
//! module of `net` with `unsafe` code.

use std::io;
use std::os::fd::AsFd;

/// Sets the accept backlog of a listening socket (calling `listen` again on a listening
/// socket only changes its backlog; the kernel caps it at `net.core.somaxconn`).
pub(crate) fn set_backlog(listener: &impl AsFd, backlog: i32) -> io::Result<()> {
    let fd = listener.as_fd();
    // SAFETY: `fd` is a borrowed descriptor, open for the duration of the call (the borrow
    // keeps its owner alive); `listen` takes no pointers and cannot affect memory.
    let r = unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&fd), backlog) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
