//! Servers: one greenlet per connection or datagram (gevent's `gevent.server`).
//!
//! [`StreamServer`] accepts TCP connections and runs a handler — ordinary blocking code —
//! in a fresh greenlet for each; [`DatagramServer`] does the same for each UDP datagram.
//!
//! ```
//! use std::io::{BufRead, BufReader, Write};
//! use grove_primitives::net::TcpStream;
//! use grove_primitives::server::StreamServer;
//!
//! // With the `grove` facade: `grove::run(|| { ... })`; here the runtime is built by hand.
//! # let reactor = grove_reactor::Reactor::start().unwrap();
//! # #[derive(Debug)]
//! # struct Timers(grove_reactor::Handle); // what `grove::Runtime` wires in
//! # impl grove_scheduler::Timers for Timers {
//! #     fn add(&self, at: std::time::Instant, w: std::task::Waker) -> u128 {
//! #         self.0.add_timer(at, w).to_raw()
//! #     }
//! #     fn cancel(&self, key: u128) {
//! #         self.0.cancel_timer(grove_reactor::TimerKey::from_raw(key));
//! #     }
//! # }
//! # let rt = grove_scheduler::Runtime::builder()
//! #     .extension(std::sync::Arc::new(reactor.handle()))
//! #     .timers(std::sync::Arc::new(Timers(reactor.handle()))).build().unwrap();
//! rt.block_on(|| {
//!     // An upper-casing line server, at most 100 connections handled at once.
//!     let server = StreamServer::bind("127.0.0.1:0", |conn: TcpStream, _peer| {
//!         let mut line = String::new();
//!         while BufReader::new(&conn).read_line(&mut line).unwrap_or(0) > 0 {
//!             let _ = (&conn).write_all(line.to_uppercase().as_bytes());
//!             line.clear();
//!         }
//!     })?
//!     .pool(100);
//!     server.start()?;
//!
//!     let mut client = TcpStream::connect(server.local_addr())?;
//!     client.write_all(b"hello\n")?;
//!     let mut reply = String::new();
//!     BufReader::new(&client).read_line(&mut reply)?;
//!     assert_eq!(reply, "HELLO\n");
//!
//!     drop(client); // the handler sees end-of-file and returns
//!     assert!(server.stop(std::time::Duration::from_secs(5)));
//!     Ok::<(), std::io::Error>(())
//! })?;
//! drop(rt);
//! reactor.shutdown();
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Vocabulary
//!
//! * **accept loop**: the one greenlet that owns the listening socket and calls `accept`
//!   (for UDP: `recv_from`) forever, spawning a handler greenlet per connection (datagram).
//! * **handlers**: the set the handler greenlets are spawned into: a [`Group`] (no limit)
//!   or a [`Pool`] (at most `n` at once).
//! * **burst**: consecutive failed accepts; it ends with the next successful one.
//!
//! # Approach
//!
//! * **Backpressure by not accepting.** With a pool, the accept loop waits for a free slot
//!   *before* it accepts ([`Pool::wait_available`]). Connections that arrive meanwhile wait
//!   in the kernel's backlog (see [`LISTEN_BACKLOG`](crate::net::LISTEN_BACKLOG)); none is
//!   accepted and then left unserved, none is lost. Rejected: accepting and then waiting in
//!   `Pool::spawn` — it holds one extra connection (and descriptor) that nobody serves.
//! * **Accept errors never end the server, and never spin.** Errors that concern one
//!   connection (`ECONNABORTED`, `EPROTO`, a reset...) are skipped at once. Running out of
//!   descriptors or memory (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`) and any other
//!   unexpected OS error are *waited out*: the loop sleeps 5 ms, doubling up to 1 s, until
//!   an accept succeeds; the first error of a burst is logged to stderr, the rest are
//!   counted and summed up when the burst ends. (Retrying at once is what makes a naive
//!   server burn a core at `EMFILE`: the pending connection keeps the listener readable.)
//!   Only errors that mean the listener itself is unusable (`EBADF`, `EINVAL`,
//!   `ENOTSOCK`, a reactor shut down) end the loop; [`serve_forever`](StreamServer::serve_forever)
//!   returns them.
//! * **The connection closes when the handler returns.** The handler owns its
//!   [`TcpStream`]; in addition the server shuts the connection down (both directions)
//!   when the handler returns or unwinds, as gevent closes the socket after `handle`, so a
//!   clone left with a helper greenlet (a writer, say) sees its connection end too.
//! * **Handles are cheap clones**; every clone controls the same server, so one greenlet
//!   may [`stop`](StreamServer::stop) a server another is running with `serve_forever`.
//!
//! # Shutdown
//!
//! 1. Mark the server stopped: it cannot be started (again).
//! 2. Stop accepting: kill the accept loop and wait until it has unwound, which drops the
//!    listening socket (new connections are refused; those still in the backlog are reset).
//!    A server never started just drops its socket.
//! 3. Wait up to `timeout` for the handlers to return by themselves.
//! 4. Kill the handlers still running and wait for them to unwind (at most
//!    [`KILL_GRACE`]; a handler that never blocks again cannot be interrupted).
//! 5. Return true if step 3 saw every handler finish (a graceful stop).
//!
//! Dropping the last handle of a started server does *not* stop it (the accept loop keeps
//! it alive, as a spawned greenlet keeps running when its handle is dropped); call `stop`.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use grove_scheduler::Greenlet;

use crate::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use crate::{Group, Pool};

/// How long step 4 of `stop` waits for killed handlers to unwind (gevent's
/// `stop_timeout` for its kill).
pub const KILL_GRACE: Duration = Duration::from_secs(1);

/// The first sleep after a failed accept; doubles per failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(5);
/// The longest sleep between retries of a failing accept.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The largest UDP payload (65,535 minus the IPv4 and UDP headers).
const MAX_DATAGRAM: usize = 65_507;

type TcpHandler = dyn Fn(TcpStream, SocketAddr) + Send + Sync + 'static;
type UdpHandler = dyn Fn(&[u8], SocketAddr, &UdpSocket) + Send + Sync + 'static;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where handler greenlets go: a group (no limit) or a pool (backpressure).
#[derive(Clone, Debug)]
enum Handlers {
    Group(Group),
    Pool(Pool),
}

impl Handlers {
    /// At most `n` handlers at once; `0`: no limit.
    fn limited(n: usize) -> Handlers {
        match n {
            0 => Handlers::Group(Group::new()),
            n => Handlers::Pool(Pool::new(n)),
        }
    }

    /// Waits until a handler could start (a pool slot is free).
    fn wait_slot(&self) {
        if let Handlers::Pool(p) = self {
            p.wait_available(None);
        }
    }

    fn spawn(&self, f: impl FnOnce() + Send + 'static) {
        match self {
            Handlers::Group(g) => drop(g.spawn(f)),
            Handlers::Pool(p) => drop(p.spawn(f)),
        }
    }

    fn len(&self) -> usize {
        match self {
            Handlers::Group(g) => g.len(),
            Handlers::Pool(p) => p.len(),
        }
    }

    fn greenlets(&self) -> Vec<Greenlet> {
        match self {
            Handlers::Group(g) => g.greenlets(),
            Handlers::Pool(p) => p.greenlets(),
        }
    }

    fn join_timeout(&self, t: Duration) -> bool {
        match self {
            Handlers::Group(g) => g.join_timeout(t),
            Handlers::Pool(p) => p.join_timeout(t),
        }
    }

    fn kill_timeout(&self, t: Duration) -> bool {
        match self {
            Handlers::Group(g) => g.kill_timeout(t),
            Handlers::Pool(p) => p.kill_timeout(t),
        }
    }
}

/// What to do after a failed accept (or receive).
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// The error concerned one connection or datagram: go on at once.
    Skip,
    /// Resources ran out (or something unexpected): sleep with backoff, then retry.
    Backoff,
    /// The socket is unusable: end the loop with this error.
    Fatal,
}

fn classify(e: &io::Error) -> Verdict {
    match e.raw_os_error() {
        // accept(2): "Linux passes already-pending network errors on the new socket as an
        // error code from accept()... treat them like EAGAIN by retrying."
        Some(
            libc::ECONNABORTED
            | libc::EINTR
            | libc::EPROTO
            | libc::EPERM
            | libc::ECONNRESET
            | libc::ECONNREFUSED
            | libc::ETIMEDOUT
            | libc::ENETDOWN
            | libc::ENETUNREACH
            | libc::EHOSTDOWN
            | libc::EHOSTUNREACH
            | libc::ENONET
            | libc::ENOPROTOOPT
            | libc::EOPNOTSUPP,
        ) => Verdict::Skip,
        Some(libc::EBADF | libc::EINVAL | libc::ENOTSOCK | libc::EFAULT) => Verdict::Fatal,
        // EMFILE, ENFILE, ENOBUFS, ENOMEM, ENOSPC (epoll watches) and anything unknown.
        Some(_) => Verdict::Backoff,
        // Not an OS error: grove's own (the reactor shut down).
        None => match e.kind() {
            io::ErrorKind::Interrupted
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset => Verdict::Skip,
            _ => Verdict::Fatal,
        },
    }
}

/// The accept loop's retry state: the sleep doubles per failure, resets on success; one
/// log line per burst.
#[derive(Debug)]
struct Backoff {
    what: &'static str,
    addr: SocketAddr,
    delay: Duration,
    failures: u64,
}

impl Backoff {
    fn new(what: &'static str, addr: SocketAddr) -> Backoff {
        Backoff {
            what,
            addr,
            delay: BACKOFF_MIN,
            failures: 0,
        }
    }

    fn succeeded(&mut self) {
        if self.failures > 0 {
            eprintln!(
                "grove::server: {} on {} works again after {} failed attempt(s)",
                self.what, self.addr, self.failures
            );
            self.failures = 0;
            self.delay = BACKOFF_MIN;
        }
    }

    /// Handles a failed call; `Err` ends the loop.
    fn failed(&mut self, e: io::Error) -> io::Result<()> {
        match classify(&e) {
            Verdict::Skip => Ok(()),
            Verdict::Fatal => {
                eprintln!(
                    "grove::server: {} on {} failed, the server stops accepting: {e}",
                    self.what, self.addr
                );
                Err(e)
            }
            Verdict::Backoff => {
                if self.failures == 0 {
                    eprintln!(
                        "grove::server: {} on {} failed: {e}; retrying with backoff \
                         ({BACKOFF_MIN:?} doubling to {BACKOFF_MAX:?}, quiet until it works again)",
                        self.what, self.addr
                    );
                }
                self.failures += 1;
                crate::sleep(self.delay);
                self.delay = (self.delay * 2).min(BACKOFF_MAX);
                Ok(())
            }
        }
    }
}

/// What both servers share: the socket until started, the accept loop, the handlers.
struct Core<S> {
    addr: SocketAddr,
    state: Mutex<State<S>>,
}

struct State<S> {
    /// The bound socket, until `start` moves it into the accept loop (or `stop` drops it).
    socket: Option<S>,
    handlers: Handlers,
    accept: Option<Greenlet>,
    stopped: bool,
    /// The error that ended the accept loop, for `serve_forever`.
    error: Option<io::Error>,
}

impl<S: Send + 'static> Core<S> {
    fn new(socket: S, addr: SocketAddr) -> Arc<Core<S>> {
        Arc::new(Core {
            addr,
            state: Mutex::new(State {
                socket: Some(socket),
                handlers: Handlers::Group(Group::new()),
                accept: None,
                stopped: false,
                error: None,
            }),
        })
    }

    fn set_handlers(&self, h: Handlers) {
        let mut s = lock(&self.state);
        if s.accept.is_none() && !s.stopped {
            s.handlers = h;
        }
    }

    fn handlers(&self) -> Handlers {
        lock(&self.state).handlers.clone()
    }

    /// Spawns the accept loop `run`; returns it (or the one already running, if `again`).
    fn start(
        self: &Arc<Self>,
        what: &str,
        again: bool,
        run: impl FnOnce(S, Handlers) -> io::Result<()> + Send + 'static,
    ) -> io::Result<Greenlet> {
        if grove_scheduler::Handle::try_current().is_none() {
            return Err(io::Error::other(format!(
                "{what} must be called from a greenlet inside a grove runtime"
            )));
        }
        let mut s = lock(&self.state);
        if s.stopped {
            return Err(io::Error::other(format!("{what}: the server was stopped")));
        }
        if let Some(g) = &s.accept {
            return if again {
                Ok(g.clone())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{what}: the server is already started"),
                ))
            };
        }
        let Some(socket) = s.socket.take() else {
            return Err(io::Error::other(format!(
                "{what}: the server has no socket"
            )));
        };
        let handlers = s.handlers.clone();
        let core = self.clone();
        // Spawned under the lock, so `stop` finds it recorded.
        let g = grove_scheduler::try_spawn(move || {
            if let Err(e) = run(socket, handlers) {
                lock(&core.state).error = Some(e);
            }
        })
        .map_err(|e| {
            // The socket went with the closure: this server cannot start any more.
            s.stopped = true;
            io::Error::other(format!("{what}: {e}"))
        })?
        .greenlet();
        s.accept = Some(g.clone());
        Ok(g)
    }

    fn serve_forever(self: &Arc<Self>, g: Greenlet) -> io::Result<()> {
        /// Stops the server if `serve_forever`'s caller unwinds (is killed), from a new
        /// greenlet: an unwinding greenlet must not block.
        struct StopOnUnwind<S: Send + 'static>(Option<Arc<Core<S>>>);
        impl<S: Send + 'static> Drop for StopOnUnwind<S> {
            fn drop(&mut self) {
                if let Some(core) = self.0.take() {
                    if let Some(g) = lock(&core.state).accept.clone() {
                        g.kill_nowait();
                    }
                    // `try_spawn`: a runtime shutting down refuses, and panicking here
                    // (mid-unwind) would abort. The accept loop is killed either way.
                    let _ = grove_scheduler::try_spawn(move || core.stop(KILL_GRACE));
                }
            }
        }
        let mut guard = StopOnUnwind(Some(self.clone()));
        g.wait();
        guard.0 = None;
        match lock(&self.state).error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn stop(self: &Arc<Self>, timeout: Duration) -> bool {
        let handlers = self.handlers();
        // From a handler, stopping would wait for (and kill) the caller: do it from a
        // greenlet of its own; the calling handler is then killed like any straggler.
        if let Some(me) = grove_scheduler::try_current() {
            if handlers.greenlets().contains(&me) {
                let core = self.clone();
                return grove_scheduler::spawn(move || core.stop(timeout))
                    .join()
                    .unwrap_or(false);
            }
        }
        // Step 1.
        let (socket, accept) = {
            let mut s = lock(&self.state);
            s.stopped = true;
            (s.socket.take(), s.accept.take())
        };
        // Step 2.
        drop(socket);
        if let Some(g) = accept {
            g.kill();
        }
        // Step 3.
        if handlers.join_timeout(timeout) {
            return true;
        }
        // Step 4.
        handlers.kill_timeout(KILL_GRACE);
        // Step 5.
        false
    }
}

/// Shuts a connection down when its handler returns or unwinds.
struct CloseOnExit(TcpStream);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

/// A TCP server running `handler` in a greenlet per connection (gevent's `StreamServer`).
///
/// `handler(stream, peer)` is ordinary blocking code; it owns the connection, which is
/// shut down when the handler returns (see the [module docs](self)). Without a limit the
/// handlers form a [`Group`]; [`pool`](Self::pool) bounds them, and a full pool stops the
/// server from accepting (backpressure). Accept errors are waited out, never spun on.
///
/// ```
/// # let reactor = grove_reactor::Reactor::start().unwrap();
/// # #[derive(Debug)]
/// # struct Timers(grove_reactor::Handle); // what `grove::Runtime` wires in
/// # impl grove_scheduler::Timers for Timers {
/// #     fn add(&self, at: std::time::Instant, w: std::task::Waker) -> u128 {
/// #         self.0.add_timer(at, w).to_raw()
/// #     }
/// #     fn cancel(&self, key: u128) {
/// #         self.0.cancel_timer(grove_reactor::TimerKey::from_raw(key));
/// #     }
/// # }
/// # let rt = grove_scheduler::Runtime::builder()
/// #     .extension(std::sync::Arc::new(reactor.handle()))
/// #     .timers(std::sync::Arc::new(Timers(reactor.handle()))).build().unwrap();
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// use grove_primitives::net::TcpStream;
/// use grove_primitives::server::StreamServer;
///
/// rt.block_on(|| {
///     // An echo server; `serve_forever` in a greenlet, `stop` from another.
///     let server = StreamServer::bind("127.0.0.1:0", |mut conn: TcpStream, _| {
///         let mut c = conn.clone();
///         let _ = std::io::copy(&mut conn, &mut c);
///     })?;
///     let runner = server.clone();
///     let serving = grove_scheduler::spawn(move || runner.serve_forever());
///
///     let mut client = TcpStream::connect(server.local_addr())?;
///     client.write_all(b"ping")?;
///     let mut buf = [0; 4];
///     client.read_exact(&mut buf)?;
///     assert_eq!(&buf, b"ping");
///
///     drop(client);
///     assert!(server.stop(Duration::from_secs(5)));
///     serving.join().unwrap() // serve_forever returns Ok once stopped
/// })?;
/// # drop(rt); reactor.shutdown();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct StreamServer {
    core: Arc<Core<TcpListener>>,
    handler: Arc<TcpHandler>,
}

impl fmt::Debug for StreamServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.core.state);
        f.debug_struct("StreamServer")
            .field("addr", &self.core.addr)
            .field("started", &s.accept.is_some())
            .field("stopped", &s.stopped)
            .field("handlers", &s.handlers)
            .finish()
    }
}

impl StreamServer {
    /// Binds a listener to `addr` (port 0 picks a free port: see
    /// [`local_addr`](Self::local_addr)); nothing is accepted until
    /// [`start`](Self::start) or [`serve_forever`](Self::serve_forever). Fails outside a
    /// grove runtime.
    pub fn bind<A, F>(addr: A, handler: F) -> io::Result<StreamServer>
    where
        A: ToSocketAddrs,
        F: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
    {
        StreamServer::from_listener(TcpListener::bind(addr)?, handler)
    }

    /// A server on a listener bound elsewhere.
    pub fn from_listener<F>(listener: TcpListener, handler: F) -> io::Result<StreamServer>
    where
        F: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
    {
        let addr = listener.local_addr()?;
        Ok(StreamServer {
            core: Core::new(listener, addr),
            handler: Arc::new(handler),
        })
    }

    /// Handles at most `n` connections at once: when all are busy the server stops
    /// accepting until a handler returns (clients wait in the kernel's backlog). `0` means
    /// no limit (the default). Only effective before the server starts.
    pub fn pool(self, n: usize) -> StreamServer {
        self.core.set_handlers(Handlers::limited(n));
        self
    }

    /// Spawns handlers into `pool`, which may be shared with other work (its slots bound
    /// this server's handlers together with everything else in it; `stop` kills what is
    /// still in it). Only effective before the server starts.
    pub fn with_pool(self, pool: Pool) -> StreamServer {
        self.core.set_handlers(Handlers::Pool(pool));
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.core.addr
    }

    /// Number of connections being handled now (handler greenlets not yet finished).
    pub fn active_handlers(&self) -> usize {
        self.core.handlers().len()
    }

    /// Starts the accept loop in a new greenlet and returns at once.
    ///
    /// Fails outside a greenlet of a grove runtime, if already started (error kind
    /// [`AlreadyExists`](io::ErrorKind::AlreadyExists)), or after [`stop`](Self::stop).
    pub fn start(&self) -> io::Result<()> {
        self.start_loop(false).map(drop)
    }

    fn start_loop(&self, again: bool) -> io::Result<Greenlet> {
        let handler = self.handler.clone();
        let addr = self.core.addr;
        self.core.start(
            "grove::server::StreamServer::start",
            again,
            move |listener, handlers| accept_loop(&listener, addr, &handlers, &handler),
        )
    }

    /// Serves until [`stop`](Self::stop)ped, blocking the calling greenlet (gevent's
    /// `serve_forever`); starts the server first unless it already runs.
    ///
    /// Returns `Ok(())` once stopped, or the error that made the listener unusable. If the
    /// calling greenlet is killed, the server is stopped (in the background, handlers
    /// given [`KILL_GRACE`]).
    pub fn serve_forever(&self) -> io::Result<()> {
        let g = self.start_loop(true)?;
        self.core.serve_forever(g)
    }

    /// Stops the server (numbered steps in the [module docs](self#shutdown)):
    /// stops accepting, waits up to `timeout` for the handlers to return, then kills the
    /// rest. Returns true if every handler returned by itself within `timeout`.
    ///
    /// Works from any greenlet or thread. Called from one of this server's handlers, that
    /// handler is among those waited for and killed (so the call returns only if it
    /// survives; it gets `false`).
    pub fn stop(&self, timeout: Duration) -> bool {
        self.core.stop(timeout)
    }
}

fn accept_loop(
    listener: &TcpListener,
    addr: SocketAddr,
    handlers: &Handlers,
    handler: &Arc<TcpHandler>,
) -> io::Result<()> {
    let mut backoff = Backoff::new("accept", addr);
    loop {
        // Backpressure: accept only when the connection can be handled at once.
        handlers.wait_slot();
        match listener.accept() {
            Ok((stream, peer)) => {
                backoff.succeeded();
                let handler = handler.clone();
                handlers.spawn(move || {
                    let _close = CloseOnExit(stream.clone());
                    handler(stream, peer);
                });
            }
            Err(e) => backoff.failed(e)?,
        }
    }
}

/// A UDP server running `handler` in a greenlet per datagram (gevent's `DatagramServer`).
///
/// `handler(data, peer, socket)` gets the datagram's bytes, its sender and the server's
/// socket, to reply with [`UdpSocket::send_to`]. (gevent passes `(data, address)` and
/// replies through `self.sendto`; a Rust closure has no `self`, so the socket is an
/// argument.) Each datagram is copied into its greenlet, so handlers run concurrently;
/// [`pool`](Self::pool) bounds them, and a full pool stops the server from receiving
/// (datagrams then queue in the socket's receive buffer; beyond it the kernel drops them,
/// as UDP does). Lifecycle as for [`StreamServer`]; `stop` stops receiving, but the socket
/// stays open while handlers still hold it.
///
/// ```
/// # let reactor = grove_reactor::Reactor::start().unwrap();
/// # #[derive(Debug)]
/// # struct Timers(grove_reactor::Handle); // what `grove::Runtime` wires in
/// # impl grove_scheduler::Timers for Timers {
/// #     fn add(&self, at: std::time::Instant, w: std::task::Waker) -> u128 {
/// #         self.0.add_timer(at, w).to_raw()
/// #     }
/// #     fn cancel(&self, key: u128) {
/// #         self.0.cancel_timer(grove_reactor::TimerKey::from_raw(key));
/// #     }
/// # }
/// # let rt = grove_scheduler::Runtime::builder()
/// #     .extension(std::sync::Arc::new(reactor.handle()))
/// #     .timers(std::sync::Arc::new(Timers(reactor.handle()))).build().unwrap();
/// use std::time::Duration;
/// use grove_primitives::net::UdpSocket;
/// use grove_primitives::server::DatagramServer;
///
/// rt.block_on(|| {
///     let server = DatagramServer::bind("127.0.0.1:0", |data, peer, socket| {
///         let _ = socket.send_to(&data.to_ascii_uppercase(), peer);
///     })?;
///     server.start()?;
///     let client = UdpSocket::bind("127.0.0.1:0")?;
///     client.send_to(b"hi", server.local_addr())?;
///     let mut buf = [0; 16];
///     let (n, _) = client.recv_from(&mut buf)?;
///     assert_eq!(&buf[..n], b"HI");
///     assert!(server.stop(Duration::from_secs(5)));
///     Ok::<(), std::io::Error>(())
/// })?;
/// # drop(rt); reactor.shutdown();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct DatagramServer {
    core: Arc<Core<UdpSocket>>,
    handler: Arc<UdpHandler>,
}

impl fmt::Debug for DatagramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.core.state);
        f.debug_struct("DatagramServer")
            .field("addr", &self.core.addr)
            .field("started", &s.accept.is_some())
            .field("stopped", &s.stopped)
            .field("handlers", &s.handlers)
            .finish()
    }
}

impl DatagramServer {
    /// Binds a UDP socket to `addr`; nothing is received until [`start`](Self::start) or
    /// [`serve_forever`](Self::serve_forever). Fails outside a grove runtime.
    pub fn bind<A, F>(addr: A, handler: F) -> io::Result<DatagramServer>
    where
        A: ToSocketAddrs,
        F: Fn(&[u8], SocketAddr, &UdpSocket) + Send + Sync + 'static,
    {
        DatagramServer::from_socket(UdpSocket::bind(addr)?, handler)
    }

    /// A server on a socket bound elsewhere.
    pub fn from_socket<F>(socket: UdpSocket, handler: F) -> io::Result<DatagramServer>
    where
        F: Fn(&[u8], SocketAddr, &UdpSocket) + Send + Sync + 'static,
    {
        let addr = socket.local_addr()?;
        Ok(DatagramServer {
            core: Core::new(socket, addr),
            handler: Arc::new(handler),
        })
    }

    /// At most `n` datagrams handled at once (`0`: no limit, the default); see the type's
    /// docs. Only effective before the server starts.
    pub fn pool(self, n: usize) -> DatagramServer {
        self.core.set_handlers(Handlers::limited(n));
        self
    }

    /// Spawns handlers into `pool` (see [`StreamServer::with_pool`]).
    pub fn with_pool(self, pool: Pool) -> DatagramServer {
        self.core.set_handlers(Handlers::Pool(pool));
        self
    }

    /// The address the server's socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.core.addr
    }

    /// Number of datagrams being handled now.
    pub fn active_handlers(&self) -> usize {
        self.core.handlers().len()
    }

    /// Starts the receive loop in a new greenlet and returns at once; errors as
    /// [`StreamServer::start`].
    pub fn start(&self) -> io::Result<()> {
        self.start_loop(false).map(drop)
    }

    fn start_loop(&self, again: bool) -> io::Result<Greenlet> {
        let handler = self.handler.clone();
        let addr = self.core.addr;
        self.core.start(
            "grove::server::DatagramServer::start",
            again,
            move |socket, handlers| recv_loop(socket, addr, &handlers, &handler),
        )
    }

    /// Serves until stopped, blocking the calling greenlet; see
    /// [`StreamServer::serve_forever`].
    pub fn serve_forever(&self) -> io::Result<()> {
        let g = self.start_loop(true)?;
        self.core.serve_forever(g)
    }

    /// Stops receiving, waits up to `timeout` for handlers, kills the rest; true if all
    /// returned by themselves. See [`StreamServer::stop`].
    pub fn stop(&self, timeout: Duration) -> bool {
        self.core.stop(timeout)
    }
}

fn recv_loop(
    socket: UdpSocket,
    addr: SocketAddr,
    handlers: &Handlers,
    handler: &Arc<UdpHandler>,
) -> io::Result<()> {
    let mut backoff = Backoff::new("recv_from", addr);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        handlers.wait_slot();
        match socket.recv_from(&mut buf) {
            Ok((n, peer)) => {
                backoff.succeeded();
                let data = buf[..n].to_vec();
                let (handler, socket) = (handler.clone(), socket.clone());
                handlers.spawn(move || handler(&data, peer, &socket));
            }
            Err(e) => backoff.failed(e)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_are_classified() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(classify(&os(libc::EMFILE)), Verdict::Backoff);
        assert_eq!(classify(&os(libc::ENFILE)), Verdict::Backoff);
        assert_eq!(classify(&os(libc::ENOBUFS)), Verdict::Backoff);
        assert_eq!(classify(&os(libc::ENOMEM)), Verdict::Backoff);
        assert_eq!(classify(&os(libc::ECONNABORTED)), Verdict::Skip);
        assert_eq!(classify(&os(libc::EBADF)), Verdict::Fatal);
        assert_eq!(
            classify(&io::Error::other("grove reactor is shut down")),
            Verdict::Fatal
        );
    }
}
