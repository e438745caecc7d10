//! [`ToSocketAddrs`]: addresses, resolved without blocking a worker.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::blocking::spawn_blocking;

/// What grove's sockets accept as an address: std's [`ToSocketAddrs`](std::net::ToSocketAddrs)
/// types, resolved without blocking a worker.
///
/// Socket addresses, `(ip, port)` pairs and strings holding an IP literal
/// (`"127.0.0.1:80"`, `"[::1]:80"`) are used as they are. Anything else (`"localhost:80"`,
/// `("example.com", 443)`) is resolved by the system resolver on the
/// [blocking pool](crate::blocking::spawn_blocking), so the calling greenlet parks while
/// its worker runs others. Sealed: implemented for the same types as std's trait.
pub trait ToSocketAddrs: sealed::Resolve {}

pub(crate) mod sealed {
    use std::net::SocketAddr;
    use std::{io, option, vec};

    /// The resolution behind [`ToSocketAddrs`](super::ToSocketAddrs); not for use outside
    /// grove.
    #[doc(hidden)]
    #[allow(unreachable_pub)] // Public in name only, so it can bound a public trait.
    pub trait Resolve {
        /// The addresses, in the resolver's order.
        fn resolve(&self) -> io::Result<Addrs>;
    }

    /// The resolved addresses: one without allocating, or the resolver's list.
    #[doc(hidden)]
    #[allow(unreachable_pub, missing_debug_implementations)]
    pub enum Addrs {
        /// An address that needed no resolution.
        One(option::IntoIter<SocketAddr>),
        /// The resolver's answer.
        Many(vec::IntoIter<SocketAddr>),
    }

    impl Iterator for Addrs {
        type Item = SocketAddr;
        fn next(&mut self) -> Option<SocketAddr> {
            match self {
                Addrs::One(it) => it.next(),
                Addrs::Many(it) => it.next(),
            }
        }
    }
}

use sealed::{Addrs, Resolve};

fn one(addr: SocketAddr) -> io::Result<Addrs> {
    Ok(Addrs::One(Some(addr).into_iter()))
}

/// Resolves a host name on the blocking pool.
fn lookup<A>(query: A) -> io::Result<Addrs>
where
    A: std::net::ToSocketAddrs + Send + 'static,
{
    let addrs = spawn_blocking(move || query.to_socket_addrs().map(Iterator::collect::<Vec<_>>))
        .join()
        .map_err(io::Error::from)??;
    Ok(Addrs::Many(addrs.into_iter()))
}

macro_rules! direct {
    ($($t:ty => |$x:ident| $e:expr;)*) => {$(
        impl ToSocketAddrs for $t {}
        impl Resolve for $t {
            fn resolve(&self) -> io::Result<Addrs> {
                let $x = self;
                one($e)
            }
        }
    )*};
}

direct! {
    SocketAddr => |a| *a;
    SocketAddrV4 => |a| SocketAddr::V4(*a);
    SocketAddrV6 => |a| SocketAddr::V6(*a);
    (IpAddr, u16) => |a| SocketAddr::new(a.0, a.1);
    (Ipv4Addr, u16) => |a| SocketAddr::new(IpAddr::V4(a.0), a.1);
    (Ipv6Addr, u16) => |a| SocketAddr::new(IpAddr::V6(a.0), a.1);
}

impl ToSocketAddrs for str {}
impl Resolve for str {
    fn resolve(&self) -> io::Result<Addrs> {
        // Fast path: an IP literal with a port.
        if let Ok(addr) = self.parse::<SocketAddr>() {
            return one(addr);
        }
        lookup(self.to_owned())
    }
}

impl ToSocketAddrs for String {}
impl Resolve for String {
    fn resolve(&self) -> io::Result<Addrs> {
        self.as_str().resolve()
    }
}

impl ToSocketAddrs for (&str, u16) {}
impl Resolve for (&str, u16) {
    fn resolve(&self) -> io::Result<Addrs> {
        if let Ok(ip) = self.0.parse::<IpAddr>() {
            return one(SocketAddr::new(ip, self.1));
        }
        lookup((self.0.to_owned(), self.1))
    }
}

impl ToSocketAddrs for (String, u16) {}
impl Resolve for (String, u16) {
    fn resolve(&self) -> io::Result<Addrs> {
        (self.0.as_str(), self.1).resolve()
    }
}

impl ToSocketAddrs for [SocketAddr] {}
impl Resolve for [SocketAddr] {
    fn resolve(&self) -> io::Result<Addrs> {
        // A `Vec` so `Addrs` needs no lifetime; slices of addresses are rare.
        #[allow(clippy::unnecessary_to_owned)]
        Ok(Addrs::Many(self.to_vec().into_iter()))
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}
impl<T: Resolve + ?Sized> Resolve for &T {
    fn resolve(&self) -> io::Result<Addrs> {
        (**self).resolve()
    }
}

/// Runs `f` on each address in turn, returning the first success or the last error
/// (std's rule for `bind` and `connect`).
pub(crate) fn each_addr<A, T>(
    addr: A,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T>
where
    A: ToSocketAddrs,
{
    let mut last = None;
    for a in addr.resolve()? {
        match f(a) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}

/// The first address `addr` resolves to (std's rule for `send_to`).
pub(crate) fn first_addr<A: ToSocketAddrs>(addr: A) -> io::Result<SocketAddr> {
    addr.resolve()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses to send data to"))
}
