//! Error types of the scheduler: one concrete type per failing operation.

use std::any::Any;
use std::fmt;

use crate::signal::payload_text;

/// Why [`JoinHandle::join`](crate::JoinHandle::join) produced no value.
pub struct JoinError {
    kind: Kind,
    name: String,
}

enum Kind {
    Panic(Box<dyn Any + Send + 'static>),
    Shutdown,
    NoStack(String),
    SelfJoin,
    Killed,
    TimedOut,
    Deadlock,
}

impl JoinError {
    pub(crate) fn panicked(payload: Box<dyn Any + Send + 'static>, name: String) -> JoinError {
        JoinError {
            kind: Kind::Panic(payload),
            name,
        }
    }

    pub(crate) fn shutdown(name: String) -> JoinError {
        JoinError {
            kind: Kind::Shutdown,
            name,
        }
    }

    pub(crate) fn no_stack(err: String, name: String) -> JoinError {
        JoinError {
            kind: Kind::NoStack(err),
            name,
        }
    }

    pub(crate) fn self_join(name: String) -> JoinError {
        JoinError {
            kind: Kind::SelfJoin,
            name,
        }
    }

    pub(crate) fn killed(name: String) -> JoinError {
        JoinError {
            kind: Kind::Killed,
            name,
        }
    }

    pub(crate) fn deadlock(name: String) -> JoinError {
        JoinError {
            kind: Kind::Deadlock,
            name,
        }
    }

    pub(crate) fn timed_out(name: String) -> JoinError {
        JoinError {
            kind: Kind::TimedOut,
            name,
        }
    }

    /// True if the greenlet was killed ([`JoinHandle::kill`](crate::JoinHandle::kill)):
    /// unwound from its blocking point, or never started.
    pub fn is_killed(&self) -> bool {
        matches!(self.kind, Kind::Killed)
    }

    /// True if the greenlet was the main greenlet of
    /// [`block_on`](crate::Runtime::block_on) and was unwound because it waited for something
    /// that could provably never happen (gevent's `LoopExit`: "This operation would block
    /// forever"). See the `deadlock` section of the crate docs for what is proven.
    pub fn is_deadlock(&self) -> bool {
        matches!(self.kind, Kind::Deadlock)
    }

    /// True if a [`Timeout`](crate::Timeout) fired with no scope of its own around the
    /// blocking call, so it unwound the whole greenlet.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::TimedOut)
    }

    /// True if a greenlet called `join` on its own handle (which would wait forever);
    /// the greenlet keeps running.
    pub fn is_self_join(&self) -> bool {
        matches!(self.kind, Kind::SelfJoin)
    }

    /// The greenlet's name (or `greenlet-<id>` if it had none).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True if the greenlet panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self.kind, Kind::Panic(_))
    }

    /// True if the runtime shut down before the greenlet finished: it was never
    /// started, or it was unwound from where it was parked.
    pub fn is_shutdown(&self) -> bool {
        matches!(self.kind, Kind::Shutdown)
    }

    /// True if the greenlet never ran because no stack could be allocated for it.
    pub fn is_no_stack(&self) -> bool {
        matches!(self.kind, Kind::NoStack(_))
    }

    /// The panic payload, if the greenlet panicked; otherwise gives `self` back.
    pub fn try_into_panic(self) -> Result<Box<dyn Any + Send + 'static>, JoinError> {
        match self.kind {
            Kind::Panic(p) => Ok(p),
            kind => Err(JoinError {
                kind,
                name: self.name,
            }),
        }
    }

    /// The panic payload. Panics if the greenlet did not panic.
    pub fn into_panic(self) -> Box<dyn Any + Send + 'static> {
        match self.try_into_panic() {
            Ok(p) => p,
            Err(e) => panic!("JoinError::into_panic: {e}"),
        }
    }
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Panic(p) => write!(
                f,
                "greenlet '{}' panicked: {}",
                self.name,
                payload_text(&**p)
            ),
            Kind::Shutdown => write!(
                f,
                "greenlet '{}' was cancelled: the runtime shut down before it finished",
                self.name
            ),
            Kind::NoStack(e) => write!(f, "greenlet '{}' could not start: {e}", self.name),
            Kind::Killed => write!(f, "greenlet '{}' was killed", self.name),
            Kind::Deadlock => write!(
                f,
                "greenlet '{}' would block forever (deadlock): every greenlet is parked and \
                 nothing can wake one: no timer, no I/O waiter, and every other thread is \
                 blocked indefinitely",
                self.name
            ),
            Kind::TimedOut => write!(
                f,
                "greenlet '{}' was interrupted by a Timeout outside any scope of its own",
                self.name
            ),
            Kind::SelfJoin => write!(
                f,
                "greenlet '{}' tried to join itself, which would wait forever",
                self.name
            ),
        }
    }
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Panic(_) => "Panic",
            Kind::Shutdown => "Shutdown",
            Kind::NoStack(_) => "NoStack",
            Kind::SelfJoin => "SelfJoin",
            Kind::Killed => "Killed",
            Kind::TimedOut => "TimedOut",
            Kind::Deadlock => "Deadlock",
        };
        f.debug_struct("JoinError")
            .field("kind", &kind)
            .field("name", &self.name)
            .field("message", &self.to_string())
            .finish()
    }
}

impl std::error::Error for JoinError {}

/// Why [`try_spawn`](crate::try_spawn) could not create a greenlet. Nothing was
/// spawned; the closure was dropped. Like [`JoinError`], it says which case it is
/// through `is_*` predicates, and its message says what to do.
///
/// ```
/// let rt = grove::Runtime::builder().workers(1).build().unwrap();
/// let err = rt
///     .block_on(|| grove::greenlet::GreenletBuilder::new().stack_size(usize::MAX).try_spawn(|| ()))
///     .unwrap_err();
/// assert!(err.is_no_stack() && !err.is_shutdown());
/// ```
pub struct SpawnError {
    kind: SpawnKind,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SpawnKind {
    Shutdown,
    ForkedChild,
    NoStack,
}

impl SpawnError {
    pub(crate) fn shutdown() -> SpawnError {
        SpawnError {
            kind: SpawnKind::Shutdown,
            message: "the runtime is shutting down".into(),
        }
    }

    pub(crate) fn forked_child(message: String) -> SpawnError {
        SpawnError {
            kind: SpawnKind::ForkedChild,
            message,
        }
    }

    pub(crate) fn no_stack(message: String) -> SpawnError {
        SpawnError {
            kind: SpawnKind::NoStack,
            message,
        }
    }

    /// The runtime is shutting down (or has shut down): it takes no new greenlets.
    pub fn is_shutdown(&self) -> bool {
        self.kind == SpawnKind::Shutdown
    }

    /// This process is a `fork()` child of the one that built the runtime, whose threads
    /// do not exist here; build a new runtime in the child.
    pub fn is_forked_child(&self) -> bool {
        self.kind == SpawnKind::ForkedChild
    }

    /// No stack could be had: the size is out of range (`MIN_STACK_SIZE` ..=
    /// `MAX_STACK_SIZE`), or the system refused the memory or a mapping. The message
    /// names the limit to raise. (The same cause as [`JoinError::is_no_stack`], reported
    /// up front.)
    pub fn is_no_stack(&self) -> bool {
        self.kind == SpawnKind::NoStack
    }
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot spawn greenlet: {}", self.message)
    }
}

impl fmt::Debug for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnError")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish()
    }
}

impl std::error::Error for SpawnError {}
