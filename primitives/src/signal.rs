//! Unix signals delivered to greenlets (gevent's `signal_handler`).
//!
//! A signal handler may run on any thread at any instruction, so nothing but
//! async-signal-safe calls may happen in it: grove's handler only writes the signal's
//! number, one byte, to a socket pair (the *self-pipe*). The read end is an ordinary
//! green socket registered with the reactor; a greenlet waiting in [`Signals::wait`]
//! parks on it like on any read, and user code runs there, in a greenlet, never in the
//! handler.
//!
//! ```no_run
//! use grove::signal::{Signal, Signals};
//!
//! grove::run(|| {
//!     let signals = Signals::new(&[Signal::Interrupt, Signal::Terminate]).unwrap();
//!     // ... start servers, spawn work ...
//!     let sig = signals.wait().unwrap(); // parks this greenlet until Ctrl-C or SIGTERM
//!     println!("got {sig}, draining");
//! });
//! ```
//!
//! [`signal_handler`] runs a closure in a new greenlet on every arrival instead;
//! [`StreamServer::serve_until_signal`](crate::server::StreamServer::serve_until_signal)
//! serves until SIGINT or SIGTERM and then drains the server.
//!
//! # Semantics
//!
//! * **While a [`Signals`] wants a signal, grove owns its disposition**: the first one to
//!   ask for a signal installs grove's handler (with `SA_RESTART`), the last one dropped
//!   puts back what was there before (for SIGINT usually the default: Ctrl-C kills the
//!   process again).
//! * **Every `Signals` that wants a signal gets it** (a broadcast), each through its own
//!   socket pair. Several arrivals before a `wait` are each reported, in order; should a
//!   listener fall 64 KiB of arrivals behind, further ones are dropped (they are not
//!   counted: signals coalesce in the kernel too).
//! * **At most 32 `Signals` exist at once** in a process; the 33rd is an error. Their
//!   socket pairs are kept and reused, never closed, so the handler can never write to a
//!   descriptor closed and reused meanwhile.
//! * Signals are process-wide: a [`Signals`] made in one runtime hears signals sent to
//!   the process, whichever thread the kernel picks to run the handler.

mod sys;

use std::fmt;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};

use grove_reactor::Direction;
use grove_scheduler::JoinHandle;

use crate::net::Io;

/// The signals a greenlet can wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// `SIGINT`: Ctrl-C in a terminal.
    Interrupt,
    /// `SIGTERM`: the polite "please exit" of `kill`, systemd, Kubernetes.
    Terminate,
    /// `SIGHUP`: the terminal hung up; by convention also "reload your configuration".
    Hangup,
    /// `SIGQUIT`: Ctrl-\ in a terminal.
    Quit,
    /// `SIGUSR1`.
    User1,
    /// `SIGUSR2`.
    User2,
}

impl Signal {
    const ALL: [Signal; 6] = [
        Signal::Interrupt,
        Signal::Terminate,
        Signal::Hangup,
        Signal::Quit,
        Signal::User1,
        Signal::User2,
    ];

    /// The signal's number (`libc::SIGINT`...).
    pub fn number(self) -> i32 {
        match self {
            Signal::Interrupt => libc::SIGINT,
            Signal::Terminate => libc::SIGTERM,
            Signal::Hangup => libc::SIGHUP,
            Signal::Quit => libc::SIGQUIT,
            Signal::User1 => libc::SIGUSR1,
            Signal::User2 => libc::SIGUSR2,
        }
    }

    /// The signal's name: `"SIGINT"`...
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
            Signal::Quit => "SIGQUIT",
            Signal::User1 => "SIGUSR1",
            Signal::User2 => "SIGUSR2",
        }
    }

    fn from_number(n: i32) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.number() == n)
    }

    fn bit(self) -> u64 {
        1 << self.number()
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Process-wide bookkeeping, under one mutex (never touched by the handler).
struct Registry {
    /// Per slot: the socket pair (kept for good once made) and whether a `Signals` has it.
    slots: Vec<Option<(StdUnixStream, StdUnixStream)>>,
    used: [bool; sys::SLOT_COUNT],
    /// Per signal (indexed by [`Signal::ALL`]): listeners, and the disposition to put back.
    listeners: [usize; 6],
    previous: [Option<sys::Previous>; 6],
}

fn registry() -> MutexGuard<'static, Registry> {
    static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
        slots: Vec::new(),
        used: [false; sys::SLOT_COUNT],
        listeners: [0; 6],
        previous: [None, None, None, None, None, None],
    });
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

fn index(sig: Signal) -> usize {
    Signal::ALL.iter().position(|s| *s == sig).unwrap_or(0)
}

/// A set of signals a greenlet can wait for (gevent's `signal_handler`, as a value).
///
/// While it exists, the signals it wants are caught (see the [module docs](self)) and
/// queued for it; [`wait`](Self::wait) parks the calling greenlet until one arrives.
/// Dropping it stops catching them (once no other `Signals` wants them).
pub struct Signals {
    slot: usize,
    signals: Vec<Signal>,
    io: Io<mio::net::UnixStream>,
}

impl fmt::Debug for Signals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signals")
            .field("signals", &self.signals)
            .finish()
    }
}

impl Signals {
    /// Starts catching `signals` for this listener. Fails outside a grove runtime, with
    /// an empty list, or when 32 listeners exist already.
    pub fn new(signals: &[Signal]) -> io::Result<Signals> {
        let reactor = crate::net::reactor("grove::signal::Signals::new")?;
        if signals.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "grove::signal::Signals::new: no signal given",
            ));
        }
        let mask = signals.iter().fold(0, |m, s| m | s.bit());
        let mut reg = registry();
        let Some(slot) = reg.used.iter().position(|u| !u) else {
            return Err(io::Error::other(format!(
                "grove::signal::Signals::new: {} listeners exist already (the limit); \
                 share one, or use signal_handler",
                sys::SLOT_COUNT
            )));
        };
        if reg.slots.len() <= slot {
            reg.slots.resize_with(slot + 1, || None);
        }
        if reg.slots[slot].is_none() {
            let (read, write) = StdUnixStream::pair()?;
            write.set_nonblocking(true)?;
            read.set_nonblocking(true)?;
            sys::publish(slot, write.as_raw_fd());
            reg.slots[slot] = Some((read, write));
        }
        let Some((read, _)) = &reg.slots[slot] else {
            unreachable!("the slot's pair was made above")
        };
        // Bytes left by the slot's previous listener are not ours.
        let mut junk = [0u8; 256];
        while matches!((&*read).read(&mut junk), Ok(n) if n > 0) {}
        let mine = read.try_clone()?;
        let io = Io::new(mio::net::UnixStream::from_std(mine), &reactor)?;
        // Catch the signals no other listener catches yet (all or none: a failure puts
        // back what this call installed).
        let mut counted = Vec::new();
        for &sig in signals {
            let i = index(sig);
            if reg.listeners[i] == 0 {
                match sys::install(sig.number()) {
                    Ok(prev) => reg.previous[i] = Some(prev),
                    Err(e) => {
                        for s in counted {
                            reg.release(s);
                        }
                        return Err(e);
                    }
                }
            }
            reg.listeners[i] += 1;
            counted.push(sig);
        }
        reg.used[slot] = true;
        sys::SLOTS[slot].mask.store(mask, Ordering::Release);
        Ok(Signals {
            slot,
            signals: signals.to_vec(),
            io,
        })
    }

    /// The signals this listener catches.
    pub fn signals(&self) -> &[Signal] {
        &self.signals
    }

    /// Parks until one of the signals arrives (or one that arrived since the last call is
    /// pending) and returns it. Killable like any blocking call; fails only if the
    /// reactor shut down.
    pub fn wait(&self) -> io::Result<Signal> {
        loop {
            let mut b = [0u8; 1];
            let n = self
                .io
                .io(Direction::Read, |mut s| std::io::Read::read(&mut s, &mut b))?;
            if n == 0 {
                return Err(io::Error::other("grove::signal: the self-pipe closed"));
            }
            if let Some(sig) = Signal::from_number(i32::from(b[0])) {
                return Ok(sig);
            }
        }
    }
}

impl Registry {
    /// One listener fewer for `sig`; the last one puts the previous disposition back.
    fn release(&mut self, sig: Signal) {
        let i = index(sig);
        self.listeners[i] -= 1;
        if self.listeners[i] == 0 {
            if let Some(prev) = self.previous[i].take() {
                sys::restore(sig.number(), &prev);
            }
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        sys::SLOTS[self.slot].mask.store(0, Ordering::Release);
        let mut reg = registry();
        reg.used[self.slot] = false;
        for &sig in &self.signals {
            reg.release(sig);
        }
    }
}

/// A running [`signal_handler`]; [`cancel`](Self::cancel) it to stop catching.
///
/// Dropping it does not cancel it (as dropping a greenlet's handle does not kill it).
#[derive(Debug)]
pub struct SignalHandler {
    greenlet: JoinHandle<()>,
}

impl SignalHandler {
    /// Stops catching: kills the listening greenlet and waits for it (handlers already
    /// spawned keep running).
    pub fn cancel(self) {
        self.greenlet.kill();
    }
}

/// Runs `f(signal)` in a new greenlet each time one of `signals` arrives (gevent's
/// `gevent.signal_handler`), until [`SignalHandler::cancel`]. `f` runs in a greenlet, so
/// it may block, lock, stop servers: it is never called from the signal handler itself.
///
/// ```no_run
/// use grove::signal::{signal_handler, Signal};
///
/// grove::run(|| {
///     let reload = signal_handler(&[Signal::Hangup], |sig| {
///         println!("{sig}: reloading the configuration");
///     })
///     .unwrap();
///     // ... serve ...
///     reload.cancel();
/// });
/// ```
#[track_caller]
pub fn signal_handler<F>(signals: &[Signal], f: F) -> io::Result<SignalHandler>
where
    F: Fn(Signal) + Send + Sync + 'static,
{
    let at = std::panic::Location::caller();
    let listener = Signals::new(signals)?;
    let f = Arc::new(f);
    let greenlet = grove_scheduler::GreenletBuilder::new()
        .name("grove-signal-handler")
        .spawned_at(at)
        .try_spawn(move || {
            while let Ok(sig) = listener.wait() {
                let f = f.clone();
                drop(
                    grove_scheduler::GreenletBuilder::new()
                        .spawned_at(at)
                        .spawn(move || f(sig)),
                );
            }
        })
        .map_err(|e| io::Error::other(format!("grove::signal::signal_handler: {e}")))?;
    Ok(SignalHandler { greenlet })
}
