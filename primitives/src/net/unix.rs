//! [`UnixListener`] and [`UnixStream`].

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{self, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use grove_reactor::{Direction, Handle};

use super::{reactor, Io};

/// How long a connect waits before retrying when the listener's backlog is full (a
/// non-blocking Unix-socket connect fails with `EAGAIN` then, rather than waiting).
const BACKLOG_RETRY: Duration = Duration::from_millis(1);

/// A Unix-domain stream socket server (std's `UnixListener`, green).
///
/// ```
/// use std::io::{Read, Write};
/// use grove::net::{UnixListener, UnixStream};
///
/// let path = std::env::temp_dir().join(format!("grove-doc-{}.sock", std::process::id()));
/// # let _ = std::fs::remove_file(&path);
/// let p = path.clone();
/// grove::run(move || {
///     let listener = UnixListener::bind(&p)?;
///     let client = grove::spawn(move || UnixStream::connect(&p)?.write_all(b"hi"));
///     let (mut conn, _) = listener.accept()?;
///     let mut got = String::new();
///     conn.read_to_string(&mut got)?;
///     assert_eq!(got, "hi");
///     client.join().unwrap()
/// })?;
/// std::fs::remove_file(&path)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct UnixListener {
    io: Arc<Io<mio::net::UnixListener>>,
    reactor: Handle,
}

impl UnixListener {
    /// Binds to the socket file `path` (which must not exist) and listens, with a backlog
    /// of [`LISTEN_BACKLOG`](super::LISTEN_BACKLOG). Fails outside a grove runtime.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        let reactor = reactor("grove::net::UnixListener::bind")?;
        let l = mio::net::UnixListener::bind(path)?;
        super::sys::set_backlog(&l, super::LISTEN_BACKLOG)?;
        Ok(UnixListener {
            io: Arc::new(Io::new(l, &reactor)?),
            reactor,
        })
    }

    /// Wraps a std listener (made non-blocking here). Fails outside a grove runtime.
    pub fn from_std(listener: net::UnixListener) -> io::Result<UnixListener> {
        let reactor = reactor("grove::net::UnixListener::from_std")?;
        listener.set_nonblocking(true)?;
        let l = mio::net::UnixListener::from_std(listener);
        Ok(UnixListener {
            io: Arc::new(Io::new(l, &reactor)?),
            reactor,
        })
    }

    /// A std listener for the same socket (descriptor duplicated), in blocking mode.
    pub fn into_std(self) -> io::Result<net::UnixListener> {
        let fd = self.io.source().as_fd().try_clone_to_owned()?;
        drop(self);
        let l = net::UnixListener::from(fd);
        l.set_nonblocking(false)?;
        Ok(l)
    }

    /// Accepts a connection, parking until one arrives.
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (s, addr) = self.io.io(Direction::Read, |l| l.accept())?;
        let stream = UnixStream {
            io: Arc::new(Io::new(s, &self.reactor)?),
        };
        Ok((stream, addr))
    }

    /// An iterator over connections, calling [`accept`](Self::accept) forever.
    pub fn incoming(&self) -> UnixIncoming<'_> {
        UnixIncoming { listener: self }
    }

    /// The address this listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.source().local_addr()
    }

    /// Takes the pending `SO_ERROR`, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.source().take_error()
    }

    /// Another handle to the same listener (shared, not a duplicated descriptor).
    pub fn try_clone(&self) -> io::Result<UnixListener> {
        Ok(self.clone())
    }
}

impl TryFrom<net::UnixListener> for UnixListener {
    type Error = io::Error;

    /// [`UnixListener::from_std`].
    fn try_from(l: net::UnixListener) -> io::Result<UnixListener> {
        UnixListener::from_std(l)
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("addr", &self.local_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

/// The connections of a [`UnixListener`]: see [`UnixListener::incoming`]. Never ends.
#[derive(Debug)]
pub struct UnixIncoming<'a> {
    listener: &'a UnixListener,
}

impl Iterator for UnixIncoming<'_> {
    type Item = io::Result<UnixStream>;
    fn next(&mut self) -> Option<io::Result<UnixStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

/// A Unix-domain stream connection (std's `UnixStream`, green): the same reading, writing
/// and sharing rules as [`TcpStream`](super::TcpStream).
#[derive(Clone)]
pub struct UnixStream {
    io: Arc<Io<mio::net::UnixStream>>,
}

impl UnixStream {
    /// Connects to the socket at `path`. Fails outside a grove runtime.
    ///
    /// A Unix-socket connect completes at once or fails; if the listener's backlog is full
    /// it is retried every millisecond (parking in between), so kill and `Timeout`
    /// interrupt it.
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        let reactor = reactor("grove::net::UnixStream::connect")?;
        loop {
            match mio::net::UnixStream::connect(path.as_ref()) {
                Ok(s) => {
                    return Ok(UnixStream {
                        io: Arc::new(Io::new(s, &reactor)?),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    grove_scheduler::park_timeout(BACKLOG_RETRY);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A connected pair of sockets. Fails outside a grove runtime.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let reactor = reactor("grove::net::UnixStream::pair")?;
        let (a, b) = mio::net::UnixStream::pair()?;
        Ok((
            UnixStream {
                io: Arc::new(Io::new(a, &reactor)?),
            },
            UnixStream {
                io: Arc::new(Io::new(b, &reactor)?),
            },
        ))
    }

    /// Wraps a connected std stream (made non-blocking here). Fails outside a grove
    /// runtime.
    pub fn from_std(stream: net::UnixStream) -> io::Result<UnixStream> {
        let reactor = reactor("grove::net::UnixStream::from_std")?;
        stream.set_nonblocking(true)?;
        let s = mio::net::UnixStream::from_std(stream);
        Ok(UnixStream {
            io: Arc::new(Io::new(s, &reactor)?),
        })
    }

    /// A std stream for the same connection (descriptor duplicated), in blocking mode; see
    /// [`TcpStream::into_std`](super::TcpStream::into_std).
    pub fn into_std(self) -> io::Result<net::UnixStream> {
        let fd = self.io.source().as_fd().try_clone_to_owned()?;
        drop(self);
        let s = net::UnixStream::from(fd);
        s.set_nonblocking(false)?;
        Ok(s)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.source().local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.source().peer_addr()
    }

    /// Shuts down the read, write or both halves (every handle of the socket).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.source().shutdown(how)
    }

    /// Takes the pending `SO_ERROR`, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.source().take_error()
    }

    /// Bounds how long one read waits; see
    /// [`TcpStream::set_read_timeout`](super::TcpStream::set_read_timeout).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_timeout(Direction::Read, timeout)
    }

    /// Bounds how long one write waits.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_timeout(Direction::Write, timeout)
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.io.timeout(Direction::Read))
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.io.timeout(Direction::Write))
    }

    /// Another handle to the same connection (shared, not a duplicated descriptor).
    pub fn try_clone(&self) -> io::Result<UnixStream> {
        Ok(self.clone())
    }
}

impl TryFrom<net::UnixStream> for UnixStream {
    type Error = io::Error;

    /// [`UnixStream::from_std`].
    fn try_from(s: net::UnixStream) -> io::Result<UnixStream> {
        UnixStream::from_std(s)
    }
}

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

super::impl_as_fd!(UnixListener, UnixStream);
super::impl_stream_io!(UnixStream);
