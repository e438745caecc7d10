//! A destructor that panics while grove drops or unwinds a greenlet.
//!
//! - Where grove does the dropping — a closure that never ran (killed before its first
//!   run, or cancelled by shutdown), a result nobody joined, greenlet-local values (also
//!   while a kill or a shutdown unwinds the greenlet) — the panic is reported on stderr
//!   naming the greenlet, and contained: the worker survives and later greenlets run.
//! - Where the destructor belongs to a value on the greenlet's own stack and the
//!   greenlet is unwinding (a kill, here), Rust itself aborts the process ("panic in a
//!   destructor during cleanup"): nothing can catch a panic escaping a destructor during
//!   unwinding. grove then names the greenlet in the abort report.
//!
//! Both run in child processes: one aborts, and both read stderr.

use std::cell::RefCell;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use grove::greenlet::GreenletBuilder;

mod common;

/// A value whose destructor panics.
struct Bomb(&'static str);

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("bomb '{}' went off", self.0);
    }
}

grove::greenlet_local! {
    static ARMED: RefCell<Option<Bomb>> = RefCell::new(None);
}

fn arm(name: &'static str) {
    ARMED.with(|a| *a.borrow_mut() = Some(Bomb(name)));
}

#[test]
fn drops_grove_performs_are_contained_and_the_worker_survives() {
    if common::is_child() {
        // One worker: if it died, nothing below could run.
        let rt = grove::Runtime::builder().workers(1).build().unwrap();
        rt.block_on(|| {
            // 1. A greenlet-local bomb in a greenlet killed while parked: dropped while
            //    the kill unwinds it.
            let h = GreenletBuilder::new().name("local-bomber").spawn(|| {
                arm("local, killed");
                grove::sleep(Duration::from_secs(3600));
            });
            grove::sleep(Duration::from_millis(10));
            h.kill();
            assert!(h.join().unwrap_err().is_killed());

            // 2. A greenlet-local bomb in a greenlet that returns normally.
            let h = GreenletBuilder::new()
                .name("local-returner")
                .spawn(|| arm("local, returned"));
            h.join().unwrap();

            // 3. A closure killed before it ever ran: the hub drops its captures.
            let bomb = Bomb("captured, never ran");
            let h = GreenletBuilder::new().name("never-ran").spawn(move || {
                let _keep = &bomb;
            });
            h.kill();
            assert!(h.join().unwrap_err().is_killed());

            // 4. A detached greenlet's result: nobody takes it, the hub drops it.
            drop(
                GreenletBuilder::new()
                    .name("orphan")
                    .spawn(|| Bomb("result, detached")),
            );
            grove::sleep(Duration::from_millis(10));

            // The worker is alive.
            let hs: Vec<_> = (0..100u64).map(|i| grove::spawn(move || i)).collect();
            assert_eq!(hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>(), 4950);
        });
        // 5. A parked greenlet holding a greenlet-local bomb when the runtime shuts
        //    down: unwound on its worker, its locals dropped.
        let _parked = GreenletBuilder::new()
            .name("shutdown-bomber")
            .spawn_on(rt.handle(), || {
                arm("local, shutdown");
                grove::sleep(Duration::from_secs(3600));
            });
        rt.block_on(|| grove::sleep(Duration::from_millis(10)));
        drop(rt);
        println!("SURVIVED");
        return;
    }
    let out = common::run_child(
        "drops_grove_performs_are_contained_and_the_worker_survives",
        &[],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("SURVIVED"), "{stdout}");
    for (what, greenlet, bomb) in [
        ("a greenlet-local value", "local-bomber", "local, killed"),
        (
            "a greenlet-local value",
            "local-returner",
            "local, returned",
        ),
        (
            "the closure (never run)",
            "never-ran",
            "captured, never ran",
        ),
        ("the result", "orphan", "result, detached"),
        (
            "a greenlet-local value",
            "shutdown-bomber",
            "local, shutdown",
        ),
    ] {
        let line = format!("grove: dropping {what} of greenlet '{greenlet}' (id ");
        let found = stderr
            .lines()
            .find(|l| l.starts_with(&line))
            .unwrap_or_else(|| panic!("no report for {greenlet}:\n{stderr}"));
        assert!(
            found.contains(&format!(
                "panicked: bomb '{bomb}' went off; the panic was contained"
            )),
            "{found}"
        );
        assert!(found.contains("spawned at tests/drop_panic.rs:"), "{found}");
    }
    assert!(!stderr.contains("aborting"), "{stderr}");
}

#[test]
fn a_stack_value_panicking_in_drop_during_a_kill_aborts_naming_the_greenlet() {
    if common::is_child() {
        let rt = grove::Runtime::builder().workers(1).build().unwrap();
        rt.block_on(|| {
            let h = GreenletBuilder::new().name("stack-bomber").spawn(|| {
                let _b = Bomb("on the stack");
                grove::sleep(Duration::from_secs(3600));
            });
            grove::sleep(Duration::from_millis(10));
            h.kill();
            let _ = h.join();
        });
        unreachable!("Rust aborts on a panic escaping a destructor during unwinding");
    }
    let out = common::run_child(
        "a_stack_value_panicking_in_drop_during_a_kill_aborts_naming_the_greenlet",
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{:?}", out.status);
    assert!(stderr.contains("bomb 'on the stack' went off"), "{stderr}");
    assert!(
        stderr.contains("panic in a destructor during cleanup"),
        "{stderr}"
    );
    assert!(
        stderr.contains("grove: greenlet 'stack-bomber' (id ")
            && stderr.contains("panicked in a destructor while it was unwinding"),
        "{stderr}"
    );
}
