//! `try_spawn` reports a stack that cannot be had as an error instead of aborting,
//! with a message that says what failed and what to raise.

mod common;
use grove::greenlet::GreenletBuilder;

#[test]
fn try_spawn_succeeds_normally() {
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    let v = rt.block_on(|| grove::try_spawn(|| 3).unwrap().join().unwrap());
    assert_eq!(v, 3);
}

#[test]
fn bad_stack_sizes_are_clear_errors() {
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    let err = rt.block_on(|| {
        GreenletBuilder::new()
            .stack_size(100)
            .try_spawn(|| ())
            .unwrap_err()
    });
    assert!(err.is_no_stack() && !err.is_shutdown(), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("stack size must be between"), "{msg}");
    let err = grove::Runtime::builder().stack_size(0).build().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let err = grove::Runtime::builder().workers(0).build().unwrap_err();
    assert!(err.to_string().contains("worker count"), "{err}");
}

/// In a child process whose address space is capped, a huge stack cannot be mapped:
/// `try_spawn` returns the error, `spawn` resolves the join with `is_no_stack`, and
/// the runtime keeps working for greenlets that fit.
#[test]
fn stack_exhaustion_is_an_error_not_an_abort() {
    if common::is_child() {
        let rt = grove::Runtime::builder().workers(1).build().unwrap();
        assert_eq!(rt.block_on(|| 1), 1);
        cap_address_space(512 << 20);
        rt.block_on(|| {
            let big = 1 << 30; // 1 GiB cannot fit under the cap
            let err = GreenletBuilder::new()
                .stack_size(big)
                .try_spawn(|| ())
                .unwrap_err();
            assert!(err.is_no_stack(), "{err:?}");
            println!("TRY_SPAWN_ERROR: {err}");
            let joined = GreenletBuilder::new().stack_size(big).spawn(|| ()).join();
            let err = joined.unwrap_err();
            assert!(err.is_no_stack(), "{err}");
            println!("SPAWN_ERROR: {err}");
            assert_eq!(grove::spawn(|| 2).join().unwrap(), 2);
        });
        return;
    }
    let out = common::run_child("stack_exhaustion_is_an_error_not_an_abort", &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    // The harness may print "test ... " on the same line first: search, don't anchor.
    let line = stdout
        .lines()
        .find(|l| l.contains("TRY_SPAWN_ERROR"))
        .unwrap_or_else(|| panic!("no error line:\n{stdout}"));
    assert!(line.contains("cannot spawn greenlet"), "{line}");
    assert!(line.contains("stack"), "{line}");
    assert!(stdout.contains("SPAWN_ERROR: greenlet"), "{stdout}");
}

fn cap_address_space(extra: u64) {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().next().unwrap().parse().unwrap();
    let limit = pages * 4096 + extra;
    let rl = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: setrlimit reads a valid, initialized rlimit struct.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) };
    assert_eq!(rc, 0, "setrlimit failed");
}
