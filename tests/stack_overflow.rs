//! A greenlet that overflows its stack ends the process with a message naming it,
//! never silent corruption. Runs in a child process.

mod common;
use grove::greenlet::GreenletBuilder;

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let buf = std::hint::black_box([depth as u8; 256]);
    if depth == u64::MAX {
        return 0;
    }
    recurse(depth + 1) + u64::from(buf[3])
}

#[test]
fn overflow_names_the_greenlet() {
    if common::is_child() {
        let rt = grove::Runtime::builder()
            .workers(1)
            .stack_size(64 * 1024)
            .build()
            .unwrap();
        rt.block_on(|| {
            GreenletBuilder::new()
                .name("deep-diver")
                .spawn(|| recurse(0))
                .join()
                .ok();
        });
        unreachable!("the overflow must end the process");
    }
    let out = common::run_child("overflow_names_the_greenlet", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("greenlet 'deep-diver'") && stderr.contains("overflowed its stack"),
        "unexpected stderr:\n{stderr}"
    );
}
