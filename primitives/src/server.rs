//! Servers: one greenlet per connection or datagram (gevent's `gevent.server`).
//!
//! [`StreamServer`] accepts TCP connections and runs a handler — ordinary blocking code —
//! in a fresh greenlet for each; [`DatagramServer`] does the same for each UDP datagram.
//!
//! ```
//! use std::io::{BufRead, BufReader, Write};
//! use std::time::Duration;
//! use grove::net::TcpStream;
//! use grove::server::StreamServer;
//!
//! grove::run(|| {
//!     // An upper-casing line server: at most 100 connections handled at once, each
//!     // read waiting at most 30 s.
//!     let server = StreamServer::bind("127.0.0.1:0", |conn: TcpStream, _peer| {
//!         let mut line = String::new();
//!         while BufReader::new(&conn).read_line(&mut line).unwrap_or(0) > 0 {
//!             let _ = (&conn).write_all(line.to_uppercase().as_bytes());
//!             line.clear();
//!         }
//!     })?
//!     .pool(100)
//!     .read_timeout(Duration::from_secs(30));
//!     server.start()?;
//!
//!     let mut client = TcpStream::connect(server.local_addr())?;
//!     client.write_all(b"hello\n")?;
//!     let mut reply = String::new();
//!     BufReader::new(&client).read_line(&mut reply)?;
//!     assert_eq!(reply, "HELLO\n");
//!
//!     drop(client); // the handler sees end-of-file and returns
//!     // The stop waits for handlers still running (this one may already have
//!     // returned: the report counts those running when the stop began).
//!     let report = server.drain(Duration::from_secs(5));
//!     assert_eq!(report.killed, 0);
//!     Ok::<(), std::io::Error>(())
//! })?;
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
//! `stop` (or `drain`) runs these steps once per server, in a greenlet of their own (so a
//! caller that is killed, or is itself a handler, cannot cut them short); every caller —
//! any greenlet or OS thread, any number of times — and `serve_forever` wait until they
//! have finished:
//!
//! 1. Mark the server stopped: it cannot be started (again).
//! 2. Stop accepting: kill the accept loop and wait until it has unwound, which drops the
//!    listening socket (new connections are refused; those still in the backlog are reset).
//!    A server never started just drops its socket.
//! 3. Wait up to `timeout` for the handlers to return by themselves.
//! 4. Kill the handlers still running and wait for them to unwind (at most
//!    [`KILL_GRACE`]; a handler that never blocks again cannot be interrupted).
//! 5. Record the [`StopReport`] (how many finished, how many were killed) and wake the
//!    waiters: `stop` returns true if none was killed, `serve_forever` returns `Ok`.
//!
//! With [`with_pool`](StreamServer::with_pool), "the handlers" are everything in the
//! pool, the server's handlers and any other work spawned into it.
//!
//! # Limits
//!
//! A server can bound each connection so that a handler does not have to remember to:
//! [`read_timeout`](StreamServer::read_timeout) (idle),
//! [`write_timeout`](StreamServer::write_timeout) and
//! [`first_bytes_timeout`](StreamServer::first_bytes_timeout). A timed-out socket call
//! fails with [`io::ErrorKind::TimedOut`], always (see [`crate::net`]). Unset limits cost
//! nothing; a set one costs a store per connection (and the first-bytes wait, a `peek`).
//!
//! Dropping the last handle of a started server does *not* stop it (the accept loop keeps
//! it alive, as a spawned greenlet keeps running when its handle is dropped); call `stop`.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::panic::Location;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grove_scheduler::Greenlet;

use crate::net::{TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use crate::signal::{Signal, Signals};
use crate::{Event, Group, Pool};

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

use crate::waitlist::lock;

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
            p.wait_available();
        }
    }

    /// Spawns a handler, recording `at` (the user's `bind`) as its spawn site.
    fn spawn(&self, at: &'static Location<'static>, f: impl FnOnce() + Send + 'static) {
        let b = grove_scheduler::GreenletBuilder::new().spawned_at(at);
        match self {
            Handlers::Group(g) => drop(g.spawn_with(b, f)),
            Handlers::Pool(p) => drop(p.spawn_with(b, f)),
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

/// The report of a [`stop`](StreamServer::drain): what happened to the handlers that were
/// running when the server stopped accepting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StopReport {
    /// Handlers that returned by themselves within the timeout (drained).
    pub finished: usize,
    /// Handlers still running when the timeout passed: each was killed.
    pub killed: usize,
    /// Of the killed, those that had not unwound [`KILL_GRACE`] later (a handler that
    /// never blocks again cannot be interrupted); still running when `stop` returned.
    pub unresponsive: usize,
    /// The signal that stopped the server, for
    /// [`serve_until_signal`](StreamServer::serve_until_signal).
    pub signal: Option<Signal>,
}

impl StopReport {
    /// True if no handler had to be killed.
    pub fn graceful(&self) -> bool {
        self.killed == 0
    }
}

impl fmt::Display for StopReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(sig) = self.signal {
            write!(f, "{sig}: ")?;
        }
        write!(
            f,
            "drained {} handler(s): {} finished, {} killed",
            self.finished + self.killed,
            self.finished,
            self.killed
        )?;
        if self.unresponsive > 0 {
            write!(
                f,
                " ({} still running: they never block)",
                self.unresponsive
            )?;
        }
        Ok(())
    }
}

/// Where a server is in its life.
#[derive(Debug)]
enum Phase {
    /// Not stopped (maybe not started).
    Running,
    /// A stop is under way (its greenlet drains the handlers).
    Stopping,
    /// Stopped; the report of the stop.
    Stopped(StopReport),
}

/// What both servers share: the socket until started, the accept loop, the handlers.
struct Core<S> {
    addr: SocketAddr,
    state: Mutex<State<S>>,
    /// Set once the stop has finished (its report is in `Phase::Stopped`).
    stopped: Event,
}

struct State<S> {
    /// The bound socket, until `start` moves it into the accept loop (or `stop` drops it).
    socket: Option<S>,
    handlers: Handlers,
    accept: Option<Greenlet>,
    phase: Phase,
    /// The runtime the server was started in, for the stopping greenlet.
    runtime: Option<grove_scheduler::Handle>,
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
                phase: Phase::Running,
                runtime: None,
                error: None,
            }),
            stopped: Event::new(),
        })
    }

    fn set_handlers(&self, h: Handlers) {
        let mut s = lock(&self.state);
        if s.accept.is_none() && matches!(s.phase, Phase::Running) {
            s.handlers = h;
        }
    }

    fn handlers(&self) -> Handlers {
        lock(&self.state).handlers.clone()
    }

    fn is_closed(&self) -> bool {
        !matches!(lock(&self.state).phase, Phase::Running)
    }

    fn report(&self) -> Option<StopReport> {
        match lock(&self.state).phase {
            Phase::Stopped(r) => Some(r),
            _ => None,
        }
    }

    /// Spawns the accept loop `run`; returns it (or the one already running, if `again`).
    fn start(
        self: &Arc<Self>,
        what: &str,
        again: bool,
        at: &'static Location<'static>,
        run: impl FnOnce(S, Handlers) -> io::Result<()> + Send + 'static,
    ) -> io::Result<Greenlet> {
        let Some(runtime) = grove_scheduler::Handle::try_current() else {
            return Err(io::Error::other(crate::not_in_runtime(what)));
        };
        let mut s = lock(&self.state);
        if !matches!(s.phase, Phase::Running) {
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
        let g = grove_scheduler::GreenletBuilder::new()
            .name("grove-server-accept")
            .spawned_at(at)
            .try_spawn(move || {
                if let Err(e) = run(socket, handlers) {
                    lock(&core.state).error = Some(e);
                }
            })
            .map_err(|e| {
                // The socket went with the closure: this server cannot start any more.
                s.phase = Phase::Stopped(StopReport::default());
                self.stopped.set();
                io::Error::other(format!("{what}: {e}"))
            })?
            .greenlet();
        s.accept = Some(g.clone());
        s.runtime = Some(runtime);
        Ok(g)
    }

    fn serve_forever(self: &Arc<Self>, g: Greenlet) -> io::Result<()> {
        /// Stops the server if `serve_forever`'s caller unwinds (is killed); `begin_stop`
        /// does not block, as an unwinding greenlet must not.
        struct StopOnUnwind<S: Send + 'static>(Option<Arc<Core<S>>>);
        impl<S: Send + 'static> Drop for StopOnUnwind<S> {
            fn drop(&mut self) {
                if let Some(core) = self.0.take() {
                    core.begin_stop(KILL_GRACE, None);
                }
            }
        }
        let mut guard = StopOnUnwind(Some(self.clone()));
        g.wait();
        let (error, stopping) = {
            let mut s = lock(&self.state);
            (s.error.take(), !matches!(s.phase, Phase::Running))
        };
        if let Some(e) = error {
            guard.0 = None;
            return Err(e);
        }
        // The accept loop ends only when a stop kills it (or the runtime shuts down):
        // return once that stop has finished, as gevent's `serve_forever` does.
        if stopping {
            self.stopped.wait();
        }
        guard.0 = None;
        Ok(())
    }

    /// Starts stopping (once; later calls do nothing) without waiting: the work runs in
    /// a greenlet of its own, so a caller that is killed, or is one of the handlers, does
    /// not cut the stop short.
    fn begin_stop(self: &Arc<Self>, timeout: Duration, signal: Option<Signal>) {
        let (socket, accept, runtime) = {
            let mut s = lock(&self.state);
            if !matches!(s.phase, Phase::Running) {
                return;
            }
            s.phase = Phase::Stopping;
            (s.socket.take(), s.accept.take(), s.runtime.clone())
        };
        // The handlers running as the stop begins: all count in its report, even those
        // that finish before the stopping greenlet gets to look.
        let running: Vec<u64> = self
            .handlers()
            .greenlets()
            .iter()
            .map(Greenlet::id)
            .collect();
        // Step 2 begins: a server never started just drops its socket.
        drop(socket);
        let (Some(accept), Some(runtime)) = (accept, runtime) else {
            self.finish(StopReport {
                signal,
                ..StopReport::default()
            });
            return;
        };
        // Resolves the stop however the stopping greenlet ends, even if it is cancelled
        // before it starts (a runtime shutting down drops its closure).
        let resolve = Resolve(self.clone(), None);
        let accept2 = accept.clone();
        let spawned = grove_scheduler::GreenletBuilder::new()
            .name("grove-server-stop")
            .try_spawn_on(&runtime, move || {
                let report = resolve.0.run_stop(&accept2, running, timeout, signal);
                resolve.done(report);
            });
        if spawned.is_err() {
            // The runtime is shutting down (it cancels every greenlet anyway); the closure,
            // dropped unrun, has recorded the report already.
            accept.kill_nowait();
            for g in self.handlers().greenlets() {
                g.kill_nowait();
            }
        }
    }

    /// Steps 2-4 of the module docs, in the stopping greenlet; returns the report.
    fn run_stop(
        &self,
        accept: &Greenlet,
        mut running: Vec<u64>,
        timeout: Duration,
        signal: Option<Signal>,
    ) -> StopReport {
        // Step 2: once the accept loop has unwound, no handler is added.
        accept.kill();
        let handlers = self.handlers();
        // Plus any accepted since the stop began, before the accept loop unwound.
        running.extend(handlers.greenlets().iter().map(Greenlet::id));
        running.sort_unstable();
        running.dedup();
        let running = running.len();
        // Step 3.
        if handlers.join_timeout(timeout) {
            return StopReport {
                finished: running,
                signal,
                ..StopReport::default()
            };
        }
        // Step 4.
        let left = handlers.len();
        handlers.kill_timeout(KILL_GRACE);
        StopReport {
            finished: running.saturating_sub(left),
            killed: left,
            unresponsive: handlers.len(),
            signal,
        }
    }

    fn finish(&self, report: StopReport) {
        lock(&self.state).phase = Phase::Stopped(report);
        self.stopped.set();
    }

    /// Stops (or joins the stop under way) and waits until it has finished.
    fn drain(self: &Arc<Self>, timeout: Duration, signal: Option<Signal>) -> StopReport {
        self.begin_stop(timeout, signal);
        self.stopped.wait();
        self.report().unwrap_or_default()
    }
}

/// Step 5 of a stop, however the stopping greenlet ends: records the report (if the
/// greenlet was cancelled, unstarted or mid-way, by a runtime shutting down: every handler
/// left counts as killed, as the shutdown kills them) and wakes the waiters, so no caller
/// of `stop` waits forever.
struct Resolve<S: Send + 'static>(Arc<Core<S>>, Option<StopReport>);

impl<S: Send + 'static> Resolve<S> {
    fn done(mut self, report: StopReport) {
        self.1 = Some(report);
    }
}

impl<S: Send + 'static> Drop for Resolve<S> {
    fn drop(&mut self) {
        let report = self.1.take().unwrap_or_else(|| {
            let left = self.0.handlers().len();
            StopReport {
                killed: left,
                unresponsive: left,
                ..StopReport::default()
            }
        });
        self.0.finish(report);
    }
}

/// The per-connection limits of a [`StreamServer`], applied before the handler runs.
#[derive(Clone, Copy, Debug, Default)]
struct Limits {
    first_bytes: Option<Duration>,
    read: Option<Duration>,
    write: Option<Duration>,
}

impl Limits {
    /// Applies the limits to `conn`; false if the connection is to be closed unhandled
    /// (nothing arrived within the first-bytes timeout).
    #[inline]
    fn apply(&self, conn: &TcpStream) -> bool {
        if let Some(t) = self.first_bytes {
            if conn.set_read_timeout(Some(t)).is_err() {
                return false;
            }
            // End-of-file and errors are the handler's to see; only silence closes.
            if let Err(e) = conn.peek(&mut [0u8; 1]) {
                if e.kind() == io::ErrorKind::TimedOut {
                    return false;
                }
            }
            if conn.set_read_timeout(self.read).is_err() {
                return false;
            }
        } else if self.read.is_some() && conn.set_read_timeout(self.read).is_err() {
            return false;
        }
        if self.write.is_some() && conn.set_write_timeout(self.write).is_err() {
            return false;
        }
        true
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
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// use grove::net::TcpStream;
/// use grove::server::StreamServer;
///
/// grove::run(|| {
///     // An echo server; `serve_forever` in a greenlet, `stop` from another.
///     let server = StreamServer::bind("127.0.0.1:0", |mut conn: TcpStream, _| {
///         let mut c = conn.clone();
///         let _ = std::io::copy(&mut conn, &mut c);
///     })?;
///     let runner = server.clone();
///     let serving = grove::spawn(move || runner.serve_forever());
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
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct StreamServer {
    core: Arc<Core<TcpListener>>,
    handler: Arc<TcpHandler>,
    limits: Limits,
    /// Where the user made the server: the spawn site of its handlers.
    at: &'static Location<'static>,
}

impl fmt::Debug for StreamServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.core.state);
        f.debug_struct("StreamServer")
            .field("addr", &self.core.addr)
            .field("started", &s.accept.is_some())
            .field("phase", &s.phase)
            .field("handlers", &s.handlers)
            .finish()
    }
}

impl StreamServer {
    /// Binds a listener to `addr` (port 0 picks a free port: see
    /// [`local_addr`](Self::local_addr)); nothing is accepted until
    /// [`start`](Self::start) or [`serve_forever`](Self::serve_forever). Fails outside a
    /// grove runtime.
    ///
    /// The handlers' greenlets record the caller of `bind` as their spawn site (what the
    /// [monitor](grove_scheduler::StallReport) and run-info dumps name).
    #[track_caller]
    pub fn bind<A, F>(addr: A, handler: F) -> io::Result<StreamServer>
    where
        A: ToSocketAddrs,
        F: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
    {
        let at = Location::caller();
        let mut s = StreamServer::from_listener(TcpListener::bind(addr)?, handler)?;
        s.at = at;
        Ok(s)
    }

    /// A server on a listener bound elsewhere.
    #[track_caller]
    pub fn from_listener<F>(listener: TcpListener, handler: F) -> io::Result<StreamServer>
    where
        F: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
    {
        let at = Location::caller();
        let addr = listener.local_addr()?;
        Ok(StreamServer {
            core: Core::new(listener, addr),
            handler: Arc::new(handler),
            limits: Limits::default(),
            at,
        })
    }

    /// Each read of a connection waits at most `timeout` (the *idle* timeout): the
    /// server sets it on the connection ([`TcpStream::set_read_timeout`]) before the
    /// handler runs, so a handler does not have to remember to. A read past it fails
    /// with [`TimedOut`](io::ErrorKind::TimedOut); the handler decides what to do (most
    /// return, which closes the connection). The handler may change it. It bounds each
    /// read, not a whole request: a client sending one byte per interval never trips it
    /// (see [`first_bytes_timeout`](Self::first_bytes_timeout), and keep a per-request
    /// deadline in the protocol code, as `examples/http_hello.rs` does for headers).
    /// Only effective before the server starts.
    pub fn read_timeout(mut self, timeout: Duration) -> StreamServer {
        self.limits.read = Some(timeout).filter(|t| !t.is_zero());
        self
    }

    /// Each write of a connection waits at most `timeout` (a client that stops reading
    /// cannot hold its handler forever); a write past it fails with
    /// [`TimedOut`](io::ErrorKind::TimedOut). Only effective before the server starts.
    pub fn write_timeout(mut self, timeout: Duration) -> StreamServer {
        self.limits.write = Some(timeout).filter(|t| !t.is_zero());
        self
    }

    /// A connection that sends nothing within `timeout` of being accepted is closed
    /// without running the handler (its greenlet waits for the first byte, then hands
    /// the connection over). Against clients that connect and say nothing; end-of-file
    /// and errors are still handed to the handler. Only effective before the server
    /// starts.
    pub fn first_bytes_timeout(mut self, timeout: Duration) -> StreamServer {
        self.limits.first_bytes = Some(timeout).filter(|t| !t.is_zero());
        self
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
        let conn = Conn {
            handler: self.handler.clone(),
            limits: self.limits,
            at: self.at,
        };
        let addr = self.core.addr;
        self.core.start(
            "grove::server::StreamServer::start",
            again,
            self.at,
            move |listener, handlers| accept_loop(&listener, addr, &handlers, &conn),
        )
    }

    /// Serves until [`stop`](Self::stop)ped, blocking the calling greenlet (gevent's
    /// `serve_forever`); starts the server first unless it already runs.
    ///
    /// Returns `Ok(())` once a [`stop`](Self::stop) has *finished* — handlers drained, or
    /// killed once its timeout passed — as gevent's `serve_forever` does; so a program
    /// whose main greenlet serves and whose other thread or greenlet stops it ends only
    /// after the last response went out. [`stop_report`](Self::stop_report) then says what
    /// happened. Returns the error that made the listener unusable instead, if one did
    /// (handlers keep running: call `stop` to drain them). If the calling greenlet is
    /// killed, the server is stopped (in the background, handlers given [`KILL_GRACE`]).
    pub fn serve_forever(&self) -> io::Result<()> {
        let g = self.start_loop(true)?;
        self.core.serve_forever(g)
    }

    /// Serves until SIGINT or SIGTERM arrives, then stops, giving the handlers `grace` to
    /// finish, and returns what happened: the one-liner for a server's `main`.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use grove::net::TcpStream;
    /// use grove::server::StreamServer;
    ///
    /// grove::run(|| {
    ///     let server = StreamServer::bind("127.0.0.1:8080", |mut conn: TcpStream, _| {
    ///         let mut c = conn.clone();
    ///         let _ = std::io::copy(&mut conn, &mut c);
    ///     })?;
    ///     let report = server.serve_until_signal(Duration::from_secs(5))?;
    ///     println!("{report}"); // "SIGINT: drained 3 handler(s): 3 finished, 0 killed"
    ///     Ok::<(), std::io::Error>(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// The signals are caught from the call until it returns (see [`crate::signal`]); a
    /// second Ctrl-C during the drain is caught too (it does not cut the drain short).
    /// A `stop` from elsewhere ends it as well (the report's `signal` is then `None`).
    pub fn serve_until_signal(&self, grace: Duration) -> io::Result<StopReport> {
        let core = self.core.clone();
        serve_until_signal(
            &self.core,
            || self.start_loop(true),
            grace,
            move |sig| core.begin_stop(grace, Some(sig)),
        )
    }

    /// Stops the server and waits until the stop has finished (numbered steps in the
    /// [module docs](self#shutdown)): stops accepting, waits up to `timeout` for the
    /// handlers to return, then kills the rest. Returns true if every handler returned by
    /// itself within `timeout` ([`StopReport::graceful`]); [`drain`](Self::drain) returns
    /// the whole report.
    ///
    /// Works from any greenlet or OS thread, any number of times: a second call (also a
    /// concurrent one) waits for the first stop to finish and returns its result; its own
    /// `timeout` is not used. Called from one of this server's handlers, that handler is
    /// among those waited for and killed (so the call returns only if it survives).
    pub fn stop(&self, timeout: Duration) -> bool {
        self.drain(timeout).graceful()
    }

    /// [`stop`](Self::stop), returning how many handlers finished and how many were
    /// killed.
    pub fn drain(&self, timeout: Duration) -> StopReport {
        self.core.drain(timeout, None)
    }

    /// The report of the stop, once it has finished (`None` before).
    pub fn stop_report(&self) -> Option<StopReport> {
        self.core.report()
    }

    /// True once a stop has begun (gevent's `closed`): no new connection is handled.
    pub fn is_closed(&self) -> bool {
        self.core.is_closed()
    }
}

/// `serve_until_signal` of both servers: `start` starts the loop,
/// `on_signal` begins the stop.
fn serve_until_signal<S: Send + 'static>(
    core: &Arc<Core<S>>,
    start: impl FnOnce() -> io::Result<Greenlet>,
    grace: Duration,
    on_signal: impl FnOnce(Signal) + Send + 'static,
) -> io::Result<StopReport> {
    let signals = Signals::new(&[Signal::Interrupt, Signal::Terminate])?;
    let g = start()?;
    let watcher = grove_scheduler::GreenletBuilder::new()
        .name("grove-server-signals")
        .spawn(move || {
            if let Ok(sig) = signals.wait() {
                on_signal(sig);
            }
            // Keep catching (and ignoring) signals until the drain is over.
            while signals.wait().is_ok() {}
        });
    let served = core.serve_forever(g);
    if served.is_err() {
        core.drain(grace, None);
    }
    watcher.kill();
    served?;
    Ok(core.report().unwrap_or_default())
}

/// What the accept loop needs to start a connection's handler.
struct Conn {
    handler: Arc<TcpHandler>,
    limits: Limits,
    at: &'static Location<'static>,
}

fn accept_loop(
    listener: &TcpListener,
    addr: SocketAddr,
    handlers: &Handlers,
    conn: &Conn,
) -> io::Result<()> {
    let mut backoff = Backoff::new("accept", addr);
    loop {
        // Backpressure: accept only when the connection can be handled at once.
        handlers.wait_slot();
        match listener.accept() {
            Ok((stream, peer)) => {
                backoff.succeeded();
                let (handler, limits) = (conn.handler.clone(), conn.limits);
                handlers.spawn(conn.at, move || {
                    let _close = CloseOnExit(stream.clone());
                    if limits.apply(&stream) {
                        handler(stream, peer);
                    }
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
/// use std::time::Duration;
/// use grove::net::UdpSocket;
/// use grove::server::DatagramServer;
///
/// grove::run(|| {
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
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct DatagramServer {
    core: Arc<Core<UdpSocket>>,
    handler: Arc<UdpHandler>,
    at: &'static Location<'static>,
}

impl fmt::Debug for DatagramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.core.state);
        f.debug_struct("DatagramServer")
            .field("addr", &self.core.addr)
            .field("started", &s.accept.is_some())
            .field("phase", &s.phase)
            .field("handlers", &s.handlers)
            .finish()
    }
}

impl DatagramServer {
    /// Binds a UDP socket to `addr`; nothing is received until [`start`](Self::start) or
    /// [`serve_forever`](Self::serve_forever). Fails outside a grove runtime. The
    /// caller is the handlers' spawn site, as for [`StreamServer::bind`].
    #[track_caller]
    pub fn bind<A, F>(addr: A, handler: F) -> io::Result<DatagramServer>
    where
        A: ToSocketAddrs,
        F: Fn(&[u8], SocketAddr, &UdpSocket) + Send + Sync + 'static,
    {
        let at = Location::caller();
        let mut s = DatagramServer::from_socket(UdpSocket::bind(addr)?, handler)?;
        s.at = at;
        Ok(s)
    }

    /// A server on a socket bound elsewhere.
    #[track_caller]
    pub fn from_socket<F>(socket: UdpSocket, handler: F) -> io::Result<DatagramServer>
    where
        F: Fn(&[u8], SocketAddr, &UdpSocket) + Send + Sync + 'static,
    {
        let at = Location::caller();
        let addr = socket.local_addr()?;
        Ok(DatagramServer {
            core: Core::new(socket, addr),
            handler: Arc::new(handler),
            at,
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
        let (addr, at) = (self.core.addr, self.at);
        self.core.start(
            "grove::server::DatagramServer::start",
            again,
            at,
            move |socket, handlers| recv_loop(socket, addr, &handlers, &handler, at),
        )
    }

    /// Serves until stopped, blocking the calling greenlet; returns once the stop has
    /// finished. See [`StreamServer::serve_forever`].
    pub fn serve_forever(&self) -> io::Result<()> {
        let g = self.start_loop(true)?;
        self.core.serve_forever(g)
    }

    /// Serves until SIGINT or SIGTERM, then drains; see
    /// [`StreamServer::serve_until_signal`].
    pub fn serve_until_signal(&self, grace: Duration) -> io::Result<StopReport> {
        let core = self.core.clone();
        serve_until_signal(
            &self.core,
            || self.start_loop(true),
            grace,
            move |sig| core.begin_stop(grace, Some(sig)),
        )
    }

    /// Stops receiving, waits up to `timeout` for handlers, kills the rest, and waits
    /// until that has finished; true if all returned by themselves. See
    /// [`StreamServer::stop`].
    pub fn stop(&self, timeout: Duration) -> bool {
        self.drain(timeout).graceful()
    }

    /// [`stop`](Self::stop), returning the whole report.
    pub fn drain(&self, timeout: Duration) -> StopReport {
        self.core.drain(timeout, None)
    }

    /// The report of the stop, once it has finished (`None` before).
    pub fn stop_report(&self) -> Option<StopReport> {
        self.core.report()
    }

    /// True once a stop has begun (gevent's `closed`): no new datagram is handled.
    pub fn is_closed(&self) -> bool {
        self.core.is_closed()
    }
}

fn recv_loop(
    socket: UdpSocket,
    addr: SocketAddr,
    handlers: &Handlers,
    handler: &Arc<UdpHandler>,
    at: &'static Location<'static>,
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
                handlers.spawn(at, move || handler(&data, peer, &socket));
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
