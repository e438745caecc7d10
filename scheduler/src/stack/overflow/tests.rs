//! Tests of the overflow reporter: the report's text, the handler's bookkeeping, and real
//! overflows (greenlet and thread stacks, both guard modes) in child processes.

use std::hint::black_box;
use std::os::unix::process::ExitStatusExt;
use std::process::Output;
use std::sync::Arc;

use corosensei::Coroutine;

use super::*;
use crate::stack::allocator::StackAllocator;
use crate::stack::config::StackConfig;
use crate::stack::green::GreenStack;
use crate::stack::guard::GUARD_ENV;
use crate::stack::pool::StackPool;
use crate::stack::test_util::{in_child, run_child};

fn report(name: &[u8], truncated: bool, id: u64) -> String {
    let mut buf = Buf::new();
    format_report(&mut buf, name, truncated, id);
    String::from_utf8(buf.as_bytes().to_vec()).unwrap()
}

/// The name the handler would print for the current greenlet of this thread.
fn current_name() -> Vec<u8> {
    CURRENT.with(|c| {
        let n = c.name_len.get().min(MAX_NAME);
        c.name[..n].iter().map(Cell::get).collect()
    })
}

#[test]
fn report_format() {
    assert_eq!(
        report(b"conn-7", false, 42),
        "\ngreenlet 'conn-7' (id 42) has overflowed its stack; raise its size with \
         Builder::stack_size (for the runtime or for this greenlet)\n\
         fatal runtime error: greenlet stack overflow, aborting\n"
    );
    assert!(report(b"", false, 0).starts_with("\ngreenlet <unnamed> (id 0) has overflowed"));
    assert!(report(b"abc", true, u64::MAX)
        .starts_with("\ngreenlet 'abc...' (id 18446744073709551615) has overflowed"));
    let long = report(&[b'n'; 2000], false, 1);
    assert_eq!(long.len(), 512, "truncated, never overflowing the buffer");
}

#[test]
fn set_and_clear_current() {
    let name = String::from("conn-7");
    set_current((4096, 8192), &name, 9);
    drop(name); // copied: nothing dangles
    CURRENT.with(|c| {
        assert_eq!(
            (c.guard_lo.get(), c.guard_hi.get(), c.id.get()),
            (4096, 8192, 9)
        );
    });
    assert_eq!(current_name(), b"conn-7");
    set_current((4096, 8192), "", 10);
    assert_eq!(current_name(), b"");
    let long = "x".repeat(100);
    set_current((4096, 8192), &long, 11);
    assert_eq!(current_name(), [b'x'; MAX_NAME]);
    CURRENT.with(|c| assert_eq!(c.name_len.get(), 100));
    clear_current();
    CURRENT.with(|c| assert_eq!((c.guard_lo.get(), c.guard_hi.get()), (0, 0)));
}

#[test]
fn install_is_idempotent_and_keeps_the_previous_handler() {
    install();
    install();
    // SAFETY: an all-zero sigaction is valid; sigaction only queries here.
    let mut cur: libc::sigaction = unsafe { mem::zeroed() };
    // SAFETY: a query into a valid sigaction.
    let rc = unsafe { libc::sigaction(libc::SIGSEGV, ptr::null(), &mut cur) };
    assert_eq!(rc, 0);
    assert_eq!(cur.sa_sigaction, handler as *const () as libc::sighandler_t);
    assert_ne!(cur.sa_flags & libc::SA_ONSTACK, 0);
    let prev = PREV_SEGV.get().expect("previous SIGSEGV action saved");
    assert_ne!(
        prev.sa_sigaction, cur.sa_sigaction,
        "we never chain to ourselves"
    );
}

#[test]
fn ensure_altstack_maps_one_when_missing() {
    std::thread::spawn(|| {
        // Start from a thread without an alternate stack (std may have given it one).
        let off = libc::stack_t {
            ss_sp: ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disabling the alternate stack of a thread not handling a signal is allowed.
        assert_eq!(unsafe { libc::sigaltstack(&off, ptr::null_mut()) }, 0);
        ensure_altstack();
        let query = || {
            // SAFETY: an all-zero stack_t is valid, and a null new stack only queries.
            let mut st: libc::stack_t = unsafe { mem::zeroed() };
            // SAFETY: as above.
            assert_eq!(unsafe { libc::sigaltstack(ptr::null(), &mut st) }, 0);
            st
        };
        let st = query();
        assert_eq!(st.ss_flags & libc::SS_DISABLE, 0);
        assert_eq!(st.ss_size, ALTSTACK_SIZE);
        ensure_altstack();
        assert_eq!(query().ss_sp, st.ss_sp, "idempotent");
        assert!(ALTSTACK.with(|a| a.borrow().is_some()));
    })
    .join()
    .unwrap();
}

/// Recurses until the stack runs out; the arithmetic after the call defeats tail calls.
#[inline(never)]
fn recurse(n: u64) -> u64 {
    let buf = black_box([n as u8; 512]);
    if n == black_box(u64::MAX) {
        return 0;
    }
    recurse(n + 1).wrapping_add(u64::from(buf[n as usize % 512]))
}

/// Selects, in the overflow child, a stack of another size than the pool's (a dedicated one).
const DEDICATED_ENV: &str = "GROVE_TEST_DEDICATED_STACK";

/// Child body: overflow a greenlet named `deep` (id 7) on a GreenStack, as a worker would.
fn overflow_greenlet() {
    install();
    ensure_altstack();
    let alloc = Arc::new(StackAllocator::new(StackConfig { size: 64 * 1024 }));
    eprintln!("child guard mode: {:?}", alloc.guard_mode());
    let stack = if std::env::var_os(DEDICATED_ENV).is_some() {
        alloc.allocate(40 * 1024).unwrap()
    } else {
        StackPool::new(alloc).get().unwrap()
    };
    let guard = stack.guard_range();
    let mut co = Coroutine::<(), (), u64, GreenStack>::with_stack(stack, |_, ()| recurse(0));
    // The name may be freed while the greenlet runs: the reporter keeps a copy.
    let name = String::from("deep");
    set_current(guard, &name, 7);
    drop(name);
    let r = co.resume(());
    clear_current();
    panic!(
        "the greenlet returned instead of overflowing: {}",
        r.as_return().unwrap_or(0)
    );
}

fn assert_overflow_report(out: &Output, mode: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("child ({mode}) stderr:\n{stderr}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{mode}: {:?}",
        out.status
    );
    assert!(
        stderr.contains(
            "greenlet 'deep' (id 7) has overflowed its stack; raise its size with \
             Builder::stack_size"
        ),
        "{mode}"
    );
    assert!(
        stderr.contains(&format!("child guard mode: {mode}")),
        "{mode}"
    );
}

#[test]
fn overflow_in_madvise_mode_names_the_greenlet() {
    if in_child() {
        return overflow_greenlet();
    }
    let out = run_child(
        module_path!(),
        "overflow_in_madvise_mode_names_the_greenlet",
        &[],
    );
    // What this process (and so the child, which inherits its environment) detects.
    let mode = StackAllocator::new(StackConfig { size: 0 }).guard_mode();
    assert_overflow_report(&out, &format!("{mode:?}"));
}

#[test]
fn overflow_in_mprotect_mode_names_the_greenlet() {
    if in_child() {
        return overflow_greenlet();
    }
    let out = run_child(
        module_path!(),
        "overflow_in_mprotect_mode_names_the_greenlet",
        &[(GUARD_ENV, "mprotect")],
    );
    assert_overflow_report(&out, "Mprotect");
}

/// A stack of its own size (`Builder::stack_size` on one greenlet) is guarded and reported
/// the same way, in both modes.
#[test]
fn overflow_on_dedicated_stack_names_the_greenlet() {
    if in_child() {
        return overflow_greenlet();
    }
    // First as this process is set up (the child inherits the environment), then forced.
    let mode = StackAllocator::new(StackConfig { size: 0 }).guard_mode();
    for (force, mode) in [(false, format!("{mode:?}")), (true, "Mprotect".into())] {
        let mut envs = vec![(DEDICATED_ENV, "1")];
        if force {
            envs.push((GUARD_ENV, "mprotect"));
        }
        let out = run_child(
            module_path!(),
            "overflow_on_dedicated_stack_names_the_greenlet",
            &envs,
        );
        assert_overflow_report(&out, &mode);
    }
}

/// A fault outside any greenlet guard (here: a PROT_NONE page, while a greenlet is current)
/// still kills the process with SIGSEGV, without a greenlet report.
#[test]
fn other_faults_are_chained() {
    if in_child() {
        install();
        // SAFETY: a fresh PROT_NONE mapping aliases nothing.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                4096,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // A greenlet is current, but its guard range is elsewhere.
        set_current((0x10000, 0x11000), "bystander", 3);
        // SAFETY: deliberately faulting on a PROT_NONE page to test the chained handler; the
        // process dies here.
        unsafe { ptr::write_volatile(p.cast::<u8>(), 1) };
        panic!("write to PROT_NONE page succeeded");
    }
    let out = run_child(module_path!(), "other_faults_are_chained", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGSEGV),
        "{:?}\n{stderr}",
        out.status
    );
    assert!(!stderr.contains("overflowed"), "{stderr}");
}

/// std's own report for a *thread* stack overflow still works through our handler.
#[test]
fn thread_overflow_still_reported_by_std() {
    if in_child() {
        install();
        std::thread::Builder::new()
            .name("plain-thread".into())
            .stack_size(128 * 1024)
            .spawn(|| recurse(0))
            .unwrap()
            .join()
            .unwrap();
        panic!("the thread returned instead of overflowing");
    }
    let out = run_child(module_path!(), "thread_overflow_still_reported_by_std", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{:?}\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("thread 'plain-thread'") && stderr.contains("has overflowed its stack"),
        "{stderr}"
    );
    assert!(!stderr.contains("greenlet"), "{stderr}");
}
