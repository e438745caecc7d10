//! Stack-overflow reporter: turns a fault on a greenlet's guard page into a clear message.
//!
//! One of the few modules of grove that contain `unsafe`: it installs a signal handler and reads
//! thread-local state from it.
//!
//! # Vocabulary
//! - **guard page**: the page below a greenlet's stack that faults on any access (see the
//!   memory layer's essay, `stack/mod.rs`).
//! - **current greenlet**: the one a worker thread is running right now, published in
//!   thread-local `Cell`s by [`set_current`] before each resume and withdrawn by [`clear_current`].
//! - **alternate signal stack**: a per-thread stack the kernel switches to before running a
//!   `SA_ONSTACK` handler. A handler for an overflow cannot run on the overflowed stack itself.
//! - **previous handler**: whatever handled `SIGSEGV`/`SIGBUS` before [`install`], usually std's
//!   own, which reports overflows of *thread* stacks.
//!
//! # The problem
//! Without a handler, a greenlet overflowing into its guard page dies as a bare "Segmentation
//! fault". std's handler only recognises the guard pages of thread stacks. gevent users know the
//! greenlet by name, so the report must name it and say what to change.
//!
//! # Rejected approaches
//! - *Recovering* (unwinding the greenlet, or corosensei's `CoroutineTrapHandler` forcing it to
//!   return): the overflowing code may hold locks or be mid-way through a non-reentrant allocator;
//!   std aborts on thread overflows for the same reason, and so do we.
//! - *Formatting with `std::fmt` or `eprintln!` in the handler*: they may allocate or lock, which
//!   is not async-signal-safe. The message is assembled by hand in a stack buffer and written with
//!   one raw `write(2)`.
//! - *Looking the faulting address up in the allocator's slot table*: needs a lock or a lock-free
//!   map readable from a signal handler. The running greenlet is the only one that can overflow on
//!   a thread, so a thread-local description of it suffices.
//!
//! # Chosen approach
//! 1. [`install`], once per process: a `SIGSEGV` and `SIGBUS` handler (`SA_SIGINFO |
//!    SA_ONSTACK`), swapped in atomically so the previous handler is saved, never lost.
//! 2. [`ensure_altstack`], once per worker thread: std gives its own threads an alternate signal
//!    stack; where a thread has none, a 64 KiB one (plus a guard page) is mapped and kept until
//!    the thread exits.
//! 3. [`set_current`] before resuming a greenlet, [`clear_current`] after it switches back: plain
//!    stores to `const`-initialised, destructor-free thread-locals, which the handler can read
//!    (they are ordinary TLS, never lazily initialised or torn down). The name is *copied* (up to
//!    64 bytes; nothing for an unnamed greenlet), so the function is safe to call with a borrowed
//!    name: the handler never follows a pointer that might dangle.
//! 4. On a fault: if `si_addr` lies in the current greenlet's guard range, or less than a page
//!    below it, write `greenlet 'NAME' (id N) has overflowed its stack; ...` to stderr and
//!    `abort()`. Otherwise hand the signal to the previous handler: call it (`SA_SIGINFO` or
//!    plain), or, if it was `SIG_DFL`/`SIG_IGN`, restore the default action and return so the
//!    faulting instruction faults again and the process dies as it would have without us.

use std::cell::{Cell, RefCell};
use std::io;
use std::mem;
use std::ptr;
use std::sync::atomic::{compiler_fence, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

use super::sys::page_size;

/// Size of the alternate signal stacks we map ourselves: far above `SIGSTKSZ` (8 KiB on
/// x86_64) and the kernel's `AT_MINSIGSTKSZ` even with AVX-512 or AMX state.
const ALTSTACK_SIZE: usize = 64 * 1024;

/// Longest greenlet name kept for the report; longer names are cut (and marked `...`).
const MAX_NAME: usize = 64;

static INSTALL: Once = Once::new();
static PREV_SEGV: OnceLock<libc::sigaction> = OnceLock::new();
static PREV_BUS: OnceLock<libc::sigaction> = OnceLock::new();
/// The page size, cached where the handler can read it without a syscall.
static PAGE: AtomicUsize = AtomicUsize::new(4096);

/// What the handler knows about the greenlet running on this thread. All zero when none runs.
struct Current {
    guard_lo: Cell<usize>,
    guard_hi: Cell<usize>,
    id: Cell<u64>,
    /// The full name's length; only the first [`MAX_NAME`] bytes are in `name`.
    name_len: Cell<usize>,
    name: [Cell<u8>; MAX_NAME],
}

thread_local! {
    // `const` and without `Drop`: plain TLS, safe to read from a signal handler at any time.
    static CURRENT: Current = const {
        Current {
            guard_lo: Cell::new(0),
            guard_hi: Cell::new(0),
            id: Cell::new(0),
            name_len: Cell::new(0),
            name: [const { Cell::new(0) }; MAX_NAME],
        }
    };

    /// The alternate signal stack [`ensure_altstack`] mapped for this thread, if any.
    static ALTSTACK: RefCell<Option<AltStack>> = const { RefCell::new(None) };
}

/// Installs the overflow handler for `SIGSEGV` and `SIGBUS`. Idempotent; call it before the
/// first greenlet runs (e.g. when the runtime is built).
pub(crate) fn install() {
    INSTALL.call_once(|| {
        PAGE.store(page_size(), Ordering::Relaxed);
        for (sig, prev) in [(libc::SIGSEGV, &PREV_SEGV), (libc::SIGBUS, &PREV_BUS)] {
            // SAFETY: an all-zero sigaction is a valid value (SIG_DFL, empty mask, no flags).
            let mut new: libc::sigaction = unsafe { mem::zeroed() };
            new.sa_sigaction = handler as *const () as libc::sighandler_t;
            new.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: as above, and sigemptyset only writes the mask it is given.
            let mut old: libc::sigaction = unsafe { mem::zeroed() };
            // SAFETY: `handler` has the SA_SIGINFO signature and is async-signal-safe; both
            // pointers are to valid sigaction values for the duration of the call.
            let rc = unsafe {
                libc::sigemptyset(&mut new.sa_mask);
                libc::sigaction(sig, &new, &mut old)
            };
            if rc == 0 {
                // Until this store, the handler treats the previous action as SIG_DFL.
                let _ = prev.set(old);
            }
        }
    });
}

/// Makes sure this thread has an alternate signal stack, so the overflow handler can run when the
/// greenlet's stack is exhausted. Call it on each worker thread before it runs greenlets. Threads
/// spawned by std usually have one already; otherwise one is mapped and freed at thread exit.
///
/// Best effort: if none can be set up (no memory), it says so on stderr, and an overflow on this
/// thread then dies by a plain `SIGSEGV`, without the report.
pub(crate) fn ensure_altstack() {
    if let Err(e) = try_ensure_altstack() {
        report!(
            "grove: cannot set up an alternate signal stack ({e}); a greenlet stack overflow \
             on this thread will crash without naming the greenlet"
        );
    }
}

fn try_ensure_altstack() -> io::Result<()> {
    // SAFETY: an all-zero stack_t is a valid value.
    let mut cur: libc::stack_t = unsafe { mem::zeroed() };
    // SAFETY: a null new stack only queries; `cur` is valid for writes.
    if unsafe { libc::sigaltstack(ptr::null(), &mut cur) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if cur.ss_flags & libc::SS_DISABLE == 0 {
        return Ok(());
    }
    let alt = AltStack::new()?;
    let st = libc::stack_t {
        ss_sp: alt.sp as *mut libc::c_void,
        ss_flags: 0,
        ss_size: ALTSTACK_SIZE,
    };
    // SAFETY: `st` describes ALTSTACK_SIZE writable bytes that stay mapped until this thread's
    // ALTSTACK is dropped, which first unregisters them.
    if unsafe { libc::sigaltstack(&st, ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    ALTSTACK.with(|a| *a.borrow_mut() = Some(alt));
    Ok(())
}

/// An alternate signal stack mapped by us: a guard page, then [`ALTSTACK_SIZE`] bytes.
struct AltStack {
    map: usize,
    len: usize,
    /// Lowest usable address (above the guard).
    sp: usize,
}

impl AltStack {
    fn new() -> io::Result<AltStack> {
        let page = page_size();
        let len = ALTSTACK_SIZE + page;
        // SAFETY: a fresh anonymous mapping aliases nothing.
        let map = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let alt = AltStack {
            map: map as usize,
            len,
            sp: map as usize + page,
        };
        // SAFETY: the guard page is part of the mapping just created, which nothing uses yet.
        if unsafe { libc::mprotect(map, page, libc::PROT_NONE) } != 0 {
            return Err(io::Error::last_os_error()); // `alt` unmaps on drop
        }
        Ok(alt)
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: an all-zero stack_t is a valid value.
        let mut cur: libc::stack_t = unsafe { mem::zeroed() };
        // SAFETY: a query into a valid stack_t.
        let rc = unsafe { libc::sigaltstack(ptr::null(), &mut cur) };
        if rc == 0 && cur.ss_sp as usize == self.sp {
            let off = libc::stack_t {
                ss_sp: ptr::null_mut(),
                ss_flags: libc::SS_DISABLE,
                ss_size: 0,
            };
            // SAFETY: we are not running on the alternate stack (no handler is active while a
            // thread-local is dropped), so it may be disabled.
            unsafe { libc::sigaltstack(&off, ptr::null_mut()) };
        }
        // SAFETY: the stack is no longer registered with the kernel (above) or never was, and
        // nothing else refers to the mapping.
        unsafe { libc::munmap(self.map as *mut libc::c_void, self.len) };
    }
}

/// Publishes the greenlet this thread is about to resume: its guard range (from
/// `GreenStack::guard_range`), its name (`""` if it has none) and id. Call right before each
/// resume. Costs a few stores, plus a copy of the name's first 64 bytes.
#[inline]
pub(crate) fn set_current(guard: (usize, usize), name: &str, id: u64) {
    CURRENT.with(|c| {
        c.guard_lo.set(guard.0);
        c.guard_hi.set(guard.1);
        c.id.set(id);
        c.name_len.set(name.len());
        for (cell, &b) in c.name.iter().zip(name.as_bytes()) {
            cell.set(b);
        }
    });
    // The handler runs on this thread: the stores only have to be emitted before the switch.
    compiler_fence(Ordering::SeqCst);
}

/// Withdraws the current greenlet; call right after it switches back to the hub.
#[inline]
pub(crate) fn clear_current() {
    compiler_fence(Ordering::SeqCst);
    CURRENT.with(|c| {
        c.guard_lo.set(0);
        c.guard_hi.set(0);
    });
}

/// The `SIGSEGV`/`SIGBUS` handler. Async-signal-safe: reads TLS and statics, formats into a stack
/// buffer, calls `write`, `abort`, `sigaction`, `raise` or the previous handler.
extern "C" fn handler(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: for an SA_SIGINFO handler the kernel passes a valid siginfo_t, and for SIGSEGV and
    // SIGBUS si_addr is the faulting address.
    let addr = unsafe { (*info).si_addr() } as usize;
    let page = PAGE.load(Ordering::Relaxed);
    let hit = CURRENT
        .try_with(|c| {
            let (lo, hi) = (c.guard_lo.get(), c.guard_hi.get());
            // A probe may land up to a page below the guard; above it is the stack itself.
            lo != 0 && addr >= lo.saturating_sub(page) && addr < hi
        })
        .unwrap_or(false);
    if hit {
        report_and_abort();
    }
    // SAFETY: we are in a handler for `sig` with the kernel's `info` and `ctx`.
    unsafe { chain(sig, info, ctx) }
}

/// Writes the overflow message for the current greenlet to stderr and aborts.
fn report_and_abort() -> ! {
    let mut buf = Buf::new();
    CURRENT.with(|c| {
        let mut name = [0u8; MAX_NAME];
        let len = c.name_len.get();
        for (b, cell) in name.iter_mut().zip(&c.name) {
            *b = cell.get();
        }
        format_report(
            &mut buf,
            &name[..len.min(MAX_NAME)],
            len > MAX_NAME,
            c.id.get(),
        );
    });
    let mut rest = buf.as_bytes();
    while !rest.is_empty() {
        // SAFETY: `rest` is valid for reads of its length; write(2) is async-signal-safe.
        let n = unsafe { libc::write(libc::STDERR_FILENO, rest.as_ptr().cast(), rest.len()) };
        if n > 0 {
            rest = &rest[n as usize..];
        } else if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        } else {
            break;
        }
    }
    // SAFETY: abort(3) is async-signal-safe and never returns.
    unsafe { libc::abort() }
}

/// Assembles `\ngreenlet 'NAME' (id N) has overflowed its stack; ...\n`.
fn format_report(buf: &mut Buf, name: &[u8], truncated: bool, id: u64) {
    buf.push(b"\ngreenlet ");
    if name.is_empty() {
        buf.push(b"<unnamed>");
    } else {
        buf.push(b"'");
        buf.push(name);
        if truncated {
            buf.push(b"...");
        }
        buf.push(b"'");
    }
    buf.push(b" (id ");
    buf.push_u64(id);
    buf.push(
        b") has overflowed its stack; raise its size with Builder::stack_size (for the runtime \
          or for this greenlet)\nfatal runtime error: greenlet stack overflow, aborting\n",
    );
}

/// A fixed buffer for the report: no allocation in a signal handler.
struct Buf {
    bytes: [u8; 512],
    len: usize,
}

impl Buf {
    fn new() -> Buf {
        Buf {
            bytes: [0; 512],
            len: 0,
        }
    }

    /// Appends what fits.
    fn push(&mut self, s: &[u8]) {
        let n = s.len().min(self.bytes.len() - self.len);
        self.bytes[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
    }

    fn push_u64(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Hands a fault that is not a greenlet overflow to the handler that was there before us.
///
/// # Safety
/// Must be called from the signal handler for `sig`, with the kernel's `info` and `ctx`.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let prev = match sig {
        libc::SIGSEGV => PREV_SEGV.get(),
        libc::SIGBUS => PREV_BUS.get(),
        _ => None,
    };
    let (action, flags) = prev.map_or((libc::SIG_DFL, 0), |p| (p.sa_sigaction, p.sa_flags));
    if action == libc::SIG_DFL || action == libc::SIG_IGN {
        // SAFETY: `info` is the kernel's valid siginfo (caller contract).
        let sent = unsafe { (*info).si_code } <= 0; // SI_USER, SI_QUEUE, SI_TKILL: kill/raise
        if action == libc::SIG_IGN && sent {
            return; // an ignored signal someone sent: keep ignoring it
        }
        // Restore the default action. A real fault re-executes on return and now kills the
        // process with `sig` (and a core dump where enabled); a sent signal is raised again,
        // blocked until we return.
        // SAFETY: an all-zero sigaction is SIG_DFL with no flags and an empty mask; sigaction
        // and raise are async-signal-safe.
        unsafe {
            let dfl: libc::sigaction = mem::zeroed();
            libc::sigaction(sig, &dfl, ptr::null_mut());
            if sent {
                libc::raise(sig);
            }
        }
    } else if flags & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO, sa_sigaction holds a handler of exactly this signature, set by
        // whoever installed it, and we forward the kernel's own arguments.
        unsafe {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                mem::transmute(action);
            f(sig, info, ctx);
        }
    } else {
        // SAFETY: without SA_SIGINFO, sa_sigaction holds a plain `void (*)(int)` handler.
        unsafe {
            let f: extern "C" fn(libc::c_int) = mem::transmute(action);
            f(sig);
        }
    }
}

#[cfg(test)]
mod tests;
