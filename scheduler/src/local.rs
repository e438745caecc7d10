//! Greenlet-local storage (gevent's `gevent.local`): the safe replacement for
//! `thread_local!` inside greenlets.
//!
//! A `thread_local!` is shared by every greenlet of a worker, so state meant for one
//! greenlet (a request id, a transaction) leaks to the others. [`greenlet_local!`]
//! gives each greenlet its own value, created on first access by the declared
//! initializer and dropped when the greenlet ends — on the greenlet's own stack, after
//! its closure returned, panicked, was killed, or was unwound by a shutdown.
//!
//! # How
//! Each greenlet header holds a small map (`task`, "Greenlet-locals") from a local's
//! address (its key) to a boxed value, created lazily. Values are boxed so a reference handed to `with` stays valid
//! while the map grows; entries are never removed before the greenlet ends. The map is
//! only ever touched by the greenlet itself (its own code, on its home thread), and no
//! borrow of it is held while user code runs (an initializer may use other locals).
//! On a plain OS thread (outside any greenlet) the same API falls back to a per-thread
//! map, so code using greenlet-locals also works there.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;

use crate::task::{Header, LocalMap};
use crate::worker::with_local;

thread_local! {
    /// The fallback map of a plain thread.
    static THREAD_MAP: RefCell<LocalMap> = RefCell::new(LocalMap::default());
}

/// A greenlet-local value; declare with [`greenlet_local!`](crate::greenlet_local).
pub struct GreenletLocal<T: 'static> {
    init: fn() -> T,
}

impl<T: 'static> fmt::Debug for GreenletLocal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenletLocal").finish_non_exhaustive()
    }
}

impl<T: 'static> GreenletLocal<T> {
    /// A local whose value is `init()` in each greenlet, on first access. Used by
    /// [`greenlet_local!`](crate::greenlet_local).
    pub const fn new(init: fn() -> T) -> GreenletLocal<T> {
        GreenletLocal { init }
    }

    /// Runs `f` with the current greenlet's value (created now if this is the first
    /// access). Outside any greenlet, uses the current thread's value.
    pub fn with<R>(&'static self, f: impl FnOnce(&T) -> R) -> R {
        let key = self as *const Self as usize;
        let value: *const dyn Any =
            with_local(|l| l.and_then(|l| l.with_current(|h| h.map(|h| h as *const Header))))
                .map_or_else(
                    || self.in_thread_map(key),
                    |h| {
                        // SAFETY: `h` is the header of the greenlet running this code; the hub
                        // keeps it alive while it runs.
                        let h = unsafe { &*h };
                        // SAFETY: we are that greenlet, so we are the only user of its map.
                        unsafe { h.local_value(key, || Box::new((self.init)())) }
                    },
                );
        // SAFETY: `value` points into a `Box<T>` (stored under this local's key, so of
        // type `T`) owned by the current greenlet's (or thread's) map; entries are never
        // removed or moved while their owner runs, and `f` runs before we return.
        let value = unsafe { &*value };
        f(value
            .downcast_ref::<T>()
            .expect("greenlet_local: key collision"))
    }

    fn in_thread_map(&'static self, key: usize) -> *const dyn Any {
        if let Some(v) = THREAD_MAP.with(|m| m.borrow().get(key)) {
            return v;
        }
        // No borrow held while the initializer runs: it may use other locals.
        let value: Box<dyn Any> = Box::new((self.init)());
        THREAD_MAP.with(|m| {
            let mut m = m.borrow_mut();
            if let Some(v) = m.get(key) {
                return v; // the initializer itself created it (re-entrant init)
            }
            let ptr = &*value as *const dyn Any;
            m.entries.push((key, value));
            ptr
        })
    }
}

/// Declares greenlet-local statics (gevent's `local`): each greenlet sees its own
/// value, created on first use and dropped when the greenlet ends.
///
/// ```
/// use std::cell::Cell;
///
/// grove::greenlet_local! {
///     /// Requests handled by the current greenlet.
///     static HANDLED: Cell<u32> = Cell::new(0);
/// }
///
/// let rt = grove::Runtime::builder().workers(2).build().unwrap();
/// let counts: Vec<u32> = rt.block_on(|| {
///     let hs: Vec<_> = (1..=3)
///         .map(|n| {
///             grove::spawn(move || {
///                 for _ in 0..n {
///                     HANDLED.with(|h| h.set(h.get() + 1));
///                     grove::yield_now();
///                 }
///                 HANDLED.with(Cell::get)
///             })
///         })
///         .collect();
///     hs.into_iter().map(|h| h.join().unwrap()).collect()
/// });
/// assert_eq!(counts, [1, 2, 3]); // each greenlet counted only its own
/// ```
#[macro_export]
macro_rules! greenlet_local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr; $($rest:tt)*) => {
        $(#[$attr])*
        $vis static $name: $crate::GreenletLocal<$t> = $crate::GreenletLocal::new(|| $init);
        $crate::greenlet_local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr) => {
        $(#[$attr])*
        $vis static $name: $crate::GreenletLocal<$t> = $crate::GreenletLocal::new(|| $init);
    };
}
