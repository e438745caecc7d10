//! [`TcpListener`] and [`TcpStream`].

use std::fmt;
use std::io;
use std::net::{self, Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use grove_reactor::{Direction, Handle};

use super::addr::{each_addr, ToSocketAddrs};
use super::{finish_connect, reactor, Io};

/// A TCP socket server, listening for connections (std's `TcpListener`, green).
///
/// [`accept`](Self::accept) parks the calling greenlet until a connection arrives. Cheap
/// to share: [`try_clone`](Self::try_clone) gives another handle to the same listener, and
/// several greenlets may accept on it at once (they are served FIFO).
///
/// ```
/// use std::io::{Read, Write};
/// use grove::net::{TcpListener, TcpStream};
///
/// grove::run(|| {
///     let listener = TcpListener::bind("127.0.0.1:0")?;
///     let addr = listener.local_addr()?;
///     let client = grove::spawn(move || TcpStream::connect(addr)?.write_all(b"hi"));
///     let (mut conn, _peer) = listener.accept()?;
///     let mut got = Vec::new();
///     conn.read_to_end(&mut got)?;
///     assert_eq!(got, b"hi");
///     client.join().unwrap()
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct TcpListener {
    io: Arc<Io<mio::net::TcpListener>>,
    /// For registering accepted streams.
    reactor: Handle,
}

impl TcpListener {
    /// Binds to `addr` (trying each address it resolves to, in order) and listens.
    ///
    /// Sets `SO_REUSEADDR` and a backlog of [`LISTEN_BACKLOG`](super::LISTEN_BACKLOG). Port 0 picks a free port;
    /// read it back with [`local_addr`](Self::local_addr). Fails outside a grove runtime.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        let reactor = reactor("grove::net::TcpListener::bind")?;
        each_addr(addr, |a| {
            let l = mio::net::TcpListener::bind(a)?;
            super::sys::set_backlog(&l, super::LISTEN_BACKLOG)?;
            TcpListener::from_mio(l, reactor.clone())
        })
    }

    fn from_mio(l: mio::net::TcpListener, reactor: Handle) -> io::Result<TcpListener> {
        Ok(TcpListener {
            io: Arc::new(Io::new(l, &reactor)?),
            reactor,
        })
    }

    /// Wraps a std listener (made non-blocking here). Fails outside a grove runtime.
    pub fn from_std(listener: net::TcpListener) -> io::Result<TcpListener> {
        let reactor = reactor("grove::net::TcpListener::from_std")?;
        listener.set_nonblocking(true)?;
        TcpListener::from_mio(mio::net::TcpListener::from_std(listener), reactor)
    }

    /// A std listener for the same socket, in blocking mode.
    ///
    /// The descriptor is duplicated: other handles made by [`try_clone`](Self::try_clone)
    /// keep working (and the socket's blocking mode is shared by all of them, so only call
    /// this when the green handles are done with it).
    pub fn into_std(self) -> io::Result<net::TcpListener> {
        let fd = self.io.source().as_fd().try_clone_to_owned()?;
        drop(self);
        let l = net::TcpListener::from(fd);
        l.set_nonblocking(false)?;
        Ok(l)
    }

    /// Accepts a connection, parking until one arrives.
    ///
    /// An interrupt (kill, `Timeout`) while parked leaves the listener usable; no
    /// connection is lost (it stays in the backlog for the next `accept`).
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, addr) = self.io.io(Direction::Read, |l| l.accept())?;
        Ok((TcpStream::from_mio(s, &self.reactor)?, addr))
    }

    /// An iterator over connections, calling [`accept`](Self::accept) forever.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address this listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.source().local_addr()
    }

    /// Another handle to the same listener (shared, not a duplicated descriptor).
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        Ok(self.clone())
    }

    /// Sets `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.source().set_ttl(ttl)
    }

    /// Reads `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.source().ttl()
    }

    /// Takes the pending `SO_ERROR`, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.source().take_error()
    }
}

impl TryFrom<net::TcpListener> for TcpListener {
    type Error = io::Error;

    /// [`TcpListener::from_std`].
    fn try_from(l: net::TcpListener) -> io::Result<TcpListener> {
        TcpListener::from_std(l)
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("addr", &self.local_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

/// The connections of a [`TcpListener`]: see [`TcpListener::incoming`]. Never ends.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;
    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

/// A TCP connection (std's `TcpStream`, green).
///
/// Reads and writes park the calling greenlet until the socket is ready. `Read` and
/// `Write` are implemented for `&TcpStream` too, so one greenlet can read while another
/// writes (gevent's recommended pattern for full-duplex protocols); two greenlets using the
/// same direction at once are served one after the other. Composes with `BufReader`,
/// `BufWriter` and `io::copy`.
///
/// ```
/// use std::io::{Read, Write};
/// use std::sync::Arc;
/// use grove::net::{TcpListener, TcpStream};
///
/// grove::run(|| {
///     let listener = TcpListener::bind("127.0.0.1:0")?;
///     let addr = listener.local_addr()?;
///     // An echo server: one greenlet copies the socket's input back to it.
///     grove::spawn(move || {
///         let (conn, _) = listener.accept()?;
///         io::copy(&mut &conn, &mut &conn)
///     });
///     let conn = Arc::new(TcpStream::connect(addr)?);
///     // A writer greenlet and a reader (this one) on the same connection.
///     let writer = conn.clone();
///     let w = grove::spawn(move || {
///         (&*writer).write_all(b"ping")?;
///         writer.shutdown(std::net::Shutdown::Write)
///     });
///     let mut echoed = Vec::new();
///     (&*conn).read_to_end(&mut echoed)?;
///     assert_eq!(echoed, b"ping");
///     w.join().unwrap()
/// })?;
/// # use std::io;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct TcpStream {
    io: Arc<Io<mio::net::TcpStream>>,
}

impl TcpStream {
    fn from_mio(s: mio::net::TcpStream, reactor: &Handle) -> io::Result<TcpStream> {
        Ok(TcpStream {
            io: Arc::new(Io::new(s, reactor)?),
        })
    }

    /// Connects to `addr`, trying each address it resolves to until one succeeds.
    ///
    /// Parks until the connection is established or refused. A host name is resolved on the
    /// blocking pool. Fails outside a grove runtime.
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        let reactor = reactor("grove::net::TcpStream::connect")?;
        each_addr(addr, |a| connect_until(a, &reactor, None))
    }

    /// Connects to one address, giving up after `timeout` with an error of kind
    /// [`TimedOut`](io::ErrorKind::TimedOut) (std's `connect_timeout`). A zero timeout is an
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) error, as in std.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        let reactor = reactor("grove::net::TcpStream::connect_timeout")?;
        connect_until(*addr, &reactor, Instant::now().checked_add(timeout))
    }

    /// Wraps a connected std stream (made non-blocking here). Fails outside a grove
    /// runtime.
    pub fn from_std(stream: net::TcpStream) -> io::Result<TcpStream> {
        let reactor = reactor("grove::net::TcpStream::from_std")?;
        stream.set_nonblocking(true)?;
        TcpStream::from_mio(mio::net::TcpStream::from_std(stream), &reactor)
    }

    /// A std stream for the same connection, in blocking mode.
    ///
    /// The descriptor is duplicated, so handles made by [`try_clone`](Self::try_clone) stay
    /// valid; but the blocking mode belongs to the socket and is shared, so only call this
    /// when the green handles are done with it. Timeouts set here do not carry over.
    pub fn into_std(self) -> io::Result<net::TcpStream> {
        let fd: OwnedFd = self.io.source().as_fd().try_clone_to_owned()?;
        drop(self);
        let s = net::TcpStream::from(fd);
        s.set_nonblocking(false)?;
        Ok(s)
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.source().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.source().local_addr()
    }

    /// Shuts down the read, write or both halves. `Shutdown::Write` sends FIN: the peer
    /// reads end-of-file and may still write back. Affects every handle of the socket.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.source().shutdown(how)
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.io.source().set_nodelay(nodelay)
    }

    /// Reads `TCP_NODELAY`.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.io.source().nodelay()
    }

    /// Sets `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.source().set_ttl(ttl)
    }

    /// Reads `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.source().ttl()
    }

    /// Takes the pending `SO_ERROR`, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.source().take_error()
    }

    /// Reads without consuming, parking until data (or end-of-file) is there.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.io(Direction::Read, |s| s.peek(buf))
    }

    /// Bounds how long one read (or peek) waits; `None` (the default) waits forever.
    ///
    /// A read that reaches it fails with [`TimedOut`](io::ErrorKind::TimedOut) (std reports
    /// `WouldBlock` on Unix; see the [module docs](super)); the stream stays usable. `Some(Duration::ZERO)` is an
    /// [`InvalidInput`](io::ErrorKind::InvalidInput) error. Shared by every handle of the
    /// socket, like std's `SO_RCVTIMEO`.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_timeout(Direction::Read, timeout)
    }

    /// Bounds how long one write waits; see [`set_read_timeout`](Self::set_read_timeout).
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
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        Ok(self.clone())
    }
}

/// Connects a fresh socket to `addr`, waiting for the handshake until `deadline`.
fn connect_until(
    addr: SocketAddr,
    reactor: &Handle,
    deadline: Option<Instant>,
) -> io::Result<TcpStream> {
    // A non-blocking connect: returns at once with the handshake under way.
    let stream = TcpStream::from_mio(mio::net::TcpStream::connect(addr)?, reactor)?;
    if finish_connect(&stream.io, deadline)? {
        Ok(stream)
    } else {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "grove: connection timed out",
        ))
    }
}

impl TryFrom<net::TcpStream> for TcpStream {
    type Error = io::Error;

    /// [`TcpStream::from_std`].
    fn try_from(s: net::TcpStream) -> io::Result<TcpStream> {
        TcpStream::from_std(s)
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("addr", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

super::impl_as_fd!(TcpListener, TcpStream);
super::impl_stream_io!(TcpStream);
