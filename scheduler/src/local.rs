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
//! Each greenlet header holds a small map from a local's address (its key) to a boxed
//! value, created lazily. Values are boxed so a reference handed to `with` stays valid
//! while the map grows; entries are never removed before the greenlet ends. The map is
//! only ever touched by the greenlet itself (its own code, on its home thread), and no
//! borrow of it is held while user code runs (an initializer may use other locals).
//! On a plain OS thread (outside any greenlet) the same API falls back to a per-thread
//! map, so code using greenlet-locals also works there.

use std::any::Any;
use std::cell::RefCell;
use std::fmt;

use crate::task::Header;
use crate::worker::with_local;

/// One greenlet's (or plain thread's) locals: `(key, value)`, few enough for a scan.
#[derive(Default)]
pub(crate) struct LocalMap {
    entries: Vec<(usize, Box<dyn Any>)>,
    /// Keys whose value has been (or is being) dropped at the greenlet's end: using
    /// them again is refused, as std refuses a destroyed `thread_local!`, instead of
    /// creating a value that the next round of drops would have to drop again.
    destroyed: Vec<usize>,
}

impl LocalMap {
    fn get(&self, key: usize) -> Option<*const dyn Any> {
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| &**v as *const dyn Any)
    }
}

/// A greenlet-local used again by a destructor that runs after its value was dropped.
#[cold]
fn destroyed() -> ! {
    panic!(
        "grove: a greenlet-local was used after its value was dropped (a greenlet-local's \
         destructor uses it, or one dropped before it); like std's thread_local!, it cannot \
         be accessed during or after its destruction"
    )
}

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

impl Header {
    /// The value stored under `key` in this greenlet's locals, inserting `init()` if
    /// absent.
    ///
    /// # Safety
    /// Only the greenlet itself may call this (on its own stack), so no other access
    /// to its map can overlap.
    pub(crate) unsafe fn local_value(
        &self,
        key: usize,
        init: impl FnOnce() -> Box<dyn Any>,
    ) -> *const dyn Any {
        // SAFETY: exclusive per the caller's contract; the borrow ends before `init`.
        if let Some(m) = unsafe { self.locals_mut() }.as_ref() {
            if let Some(v) = m.get(key) {
                return v;
            }
            if m.destroyed.contains(&key) {
                destroyed();
            }
        }
        let value = init();
        // SAFETY: as above; `init` has returned, so no other borrow is live.
        let map = unsafe { self.locals_mut() }.get_or_insert_with(Default::default);
        if let Some(v) = map.get(key) {
            return v; // created by a re-entrant initializer
        }
        let ptr = &*value as *const dyn Any;
        map.entries.push((key, value));
        ptr
    }

    /// Drops this greenlet's locals, on its own stack at the end of its body, in the
    /// order they were created. A destructor may create a local not created yet (it is
    /// dropped in turn); one that uses a local already dropped (its own included)
    /// panics, contained and reported like any panicking destructor here (std's
    /// `thread_local!` refuses the same access).
    ///
    /// # Safety
    /// Only the greenlet itself may call this, once its closure has finished.
    ///
    /// This runs while a kill, `Timeout` or panic unwinds the greenlet, where a panic
    /// escaping a destructor would abort the process: each value is dropped inside
    /// `catch_unwind`, and a panic is reported on stderr, naming the greenlet, and
    /// contained (the other values are still dropped).
    pub(crate) unsafe fn drop_locals(&self) {
        loop {
            // SAFETY: exclusive per the caller's contract; the entry is taken out and its
            // key marked destroyed before its destructor runs, and no borrow of the map is
            // held while it does.
            let next = unsafe { self.locals_mut() }.as_mut().and_then(|m| {
                if m.entries.is_empty() {
                    return None;
                }
                let (key, value) = m.entries.remove(0);
                m.destroyed.push(key);
                Some(value)
            });
            match next {
                Some(value) => crate::task::drop_contained(self, "a greenlet-local value", value),
                None => break,
            }
        }
        // SAFETY: as above; every destructor has returned.
        drop(unsafe { self.locals_mut() }.take());
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
