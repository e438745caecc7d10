//! [`UdpSocket`].

use std::fmt;
use std::io;
use std::net::{self, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::Duration;

use grove_reactor::Direction;

use super::addr::{each_addr, first_addr, ToSocketAddrs};
use super::{reactor, Io};

/// A UDP socket (std's `UdpSocket`, green).
///
/// Receives park the calling greenlet until a datagram arrives; sends park only while the
/// socket's send buffer is full. Cheap to clone: clones share the socket, so one greenlet
/// may receive while another sends.
///
/// ```
/// use grove::net::UdpSocket;
///
/// grove::run(|| {
///     let a = UdpSocket::bind("127.0.0.1:0")?;
///     let b = UdpSocket::bind("127.0.0.1:0")?;
///     a.send_to(b"ping", b.local_addr()?)?;
///     let mut buf = [0; 16];
///     let (n, from) = b.recv_from(&mut buf)?;
///     assert_eq!((&buf[..n], from), (&b"ping"[..], a.local_addr()?));
///     Ok::<(), std::io::Error>(())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct UdpSocket {
    io: Arc<Io<mio::net::UdpSocket>>,
}

impl UdpSocket {
    /// Binds to `addr` (trying each address it resolves to). Fails outside a grove runtime.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        let reactor = reactor("grove::net::UdpSocket::bind")?;
        each_addr(addr, |a| {
            Ok(UdpSocket {
                io: Arc::new(Io::new(mio::net::UdpSocket::bind(a)?, &reactor)?),
            })
        })
    }

    /// Wraps a std socket (made non-blocking here). Fails outside a grove runtime.
    pub fn from_std(socket: net::UdpSocket) -> io::Result<UdpSocket> {
        let reactor = reactor("grove::net::UdpSocket::from_std")?;
        socket.set_nonblocking(true)?;
        Ok(UdpSocket {
            io: Arc::new(Io::new(mio::net::UdpSocket::from_std(socket), &reactor)?),
        })
    }

    /// A std socket for the same descriptor (duplicated), in blocking mode; see
    /// [`TcpStream::into_std`](super::TcpStream::into_std).
    pub fn into_std(self) -> io::Result<net::UdpSocket> {
        let fd = self.io.source().as_fd().try_clone_to_owned()?;
        drop(self);
        let s = net::UdpSocket::from(fd);
        s.set_nonblocking(false)?;
        Ok(s)
    }

    /// Sends a datagram to the first address `target` resolves to; returns the bytes sent.
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], target: A) -> io::Result<usize> {
        let target = first_addr(target)?;
        self.io.io(Direction::Write, |s| s.send_to(buf, target))
    }

    /// Receives a datagram, parking until one arrives; returns its length and sender.
    /// A datagram longer than `buf` is truncated.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io.io(Direction::Read, |s| s.recv_from(buf))
    }

    /// Like [`recv_from`](Self::recv_from), leaving the datagram queued.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io.io(Direction::Read, |s| s.peek_from(buf))
    }

    /// Sets the default peer (and filters received datagrams to it): the first resolved
    /// address that the kernel accepts.
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        each_addr(addr, |a| self.io.source().connect(a))
    }

    /// Sends to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.io.io(Direction::Write, |s| s.send(buf))
    }

    /// Receives from the connected peer, parking until a datagram arrives.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.io(Direction::Read, |s| s.recv(buf))
    }

    /// Like [`recv`](Self::recv), leaving the datagram queued.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.io(Direction::Read, |s| s.peek(buf))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.source().local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.source().peer_addr()
    }

    /// Bounds how long one receive waits; see
    /// [`TcpStream::set_read_timeout`](super::TcpStream::set_read_timeout).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_timeout(Direction::Read, timeout)
    }

    /// Bounds how long one send waits.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_timeout(Direction::Write, timeout)
    }

    /// The receive timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.io.timeout(Direction::Read))
    }

    /// The send timeout.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.io.timeout(Direction::Write))
    }

    /// Sets `SO_BROADCAST`.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.io.source().set_broadcast(on)
    }

    /// Reads `SO_BROADCAST`.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.io.source().broadcast()
    }

    /// Sets `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.source().set_ttl(ttl)
    }

    /// Reads `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.source().ttl()
    }

    /// Joins an IPv4 multicast group on `interface`.
    pub fn join_multicast_v4(&self, multiaddr: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.io.source().join_multicast_v4(multiaddr, interface)
    }

    /// Leaves an IPv4 multicast group.
    pub fn leave_multicast_v4(&self, multiaddr: &Ipv4Addr, interface: &Ipv4Addr) -> io::Result<()> {
        self.io.source().leave_multicast_v4(multiaddr, interface)
    }

    /// Joins an IPv6 multicast group on interface index `interface`.
    pub fn join_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.io.source().join_multicast_v6(multiaddr, interface)
    }

    /// Leaves an IPv6 multicast group.
    pub fn leave_multicast_v6(&self, multiaddr: &Ipv6Addr, interface: u32) -> io::Result<()> {
        self.io.source().leave_multicast_v6(multiaddr, interface)
    }

    /// Takes the pending `SO_ERROR`, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.source().take_error()
    }

    /// Another handle to the same socket (shared, not a duplicated descriptor).
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        Ok(self.clone())
    }
}

impl TryFrom<net::UdpSocket> for UdpSocket {
    type Error = io::Error;

    /// [`UdpSocket::from_std`].
    fn try_from(s: net::UdpSocket) -> io::Result<UdpSocket> {
        UdpSocket::from_std(s)
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("addr", &self.local_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

super::impl_as_fd!(UdpSocket);
