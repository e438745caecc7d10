//! Without `MADV_GUARD_INSTALL` (a kernel before 6.13, or `GROVE_STACK_GUARD=mprotect`)
//! every greenlet stack is two kernel mappings, so `vm.max_map_count` caps live
//! greenlets near 32.7k. The runtime says so: once at build with `GROVE_LOG=debug`, and
//! in the error when a stack cannot be had. Both run in child processes forced into the
//! fallback.

use std::sync::Arc;

use grove::greenlet::GreenletBuilder;

mod common;

const FORCE_MPROTECT: (&str, &str) = ("GROVE_STACK_GUARD", "mprotect");

#[test]
fn build_states_the_ceiling_once_when_asked() {
    if common::is_child() {
        for _ in 0..3 {
            let rt = grove::Runtime::builder().workers(1).build().unwrap();
            assert!(!rt.handle().stack_metrics().guard_install);
            assert_eq!(rt.block_on(|| 7), 7);
        }
        return;
    }
    let out = common::run_child(
        "build_states_the_ceiling_once_when_asked",
        &[FORCE_MPROTECT, ("GROVE_LOG", "debug")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(out.status.success(), "{:?}", out.status);
    let notes: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("grove: greenlet stacks"))
        .collect();
    assert_eq!(notes.len(), 1, "said once for three runtimes:\n{stderr}");
    let note = notes[0];
    for part in [
        "(256 KiB each) are guarded with mprotect because GROVE_STACK_GUARD=mprotect is set",
        "two kernel mappings per stack, so this process can hold at most about ",
        " more live greenlets (vm.max_map_count = ",
        "MADV_GUARD_INSTALL",
    ] {
        assert!(note.contains(part), "{part:?} missing in: {note}");
    }

    // Silent unless asked.
    let out = common::run_child(
        "build_states_the_ceiling_once_when_asked",
        &[FORCE_MPROTECT],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}", out.status);
    assert!(!stderr.contains("grove: greenlet stacks"), "{stderr}");
}

/// Spawns until the mapping limit refuses a stack (about 32.7k greenlets, each parked
/// on an event); the error names the limit, the guard mode and why, and the ceiling.
#[test]
fn hitting_the_ceiling_says_what_and_why() {
    if common::is_child() {
        let max: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(usize::MAX);
        if max > 200_000 {
            println!("skipped: vm.max_map_count = {max} is raised; CEILING OK");
            return;
        }
        let rt = grove::Runtime::builder()
            .workers(1)
            .stack_size(grove::runtime::MIN_STACK_SIZE)
            .build()
            .unwrap();
        let event = Arc::new(grove::sync::Event::new());
        let ev = event.clone();
        let (handles, err) = rt.block_on(move || {
            // Reserved up front: at the limit, growing a large Vec may need a mapping.
            let mut hs = Vec::with_capacity(max);
            let err = loop {
                let ev = ev.clone();
                match GreenletBuilder::new().try_spawn(move || ev.wait()) {
                    Ok(h) => hs.push(h),
                    Err(e) => break e.to_string(),
                }
                if hs.len() > max {
                    break "no error".to_owned();
                }
            };
            (hs, err)
        });
        println!("HELD<<{}>> ERR<<{err}>>", handles.len());
        event.set();
        let n = handles.len();
        let joined = rt.block_on(move || handles.into_iter().filter_map(|h| h.join().ok()).count());
        assert_eq!(joined, n);
        println!("CEILING OK");
        return;
    }
    let out = common::run_child("hitting_the_ceiling_says_what_and_why", &[FORCE_MPROTECT]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(out.status.success(), "{:?}", out.status);
    assert!(stdout.contains("CEILING OK"));
    if stdout.contains("skipped") {
        return;
    }
    let held: usize = stdout
        .split("HELD<<")
        .nth(1)
        .and_then(|s| s.split(">>").next())
        .and_then(|s| s.parse().ok())
        .expect("HELD<<n>>");
    let max: usize = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        (max / 2 - 2_000..max / 2).contains(&held),
        "{held} greenlets held under vm.max_map_count = {max}"
    );
    let ceiling = format!(
        "two mappings per stack, so at most about {} greenlets (vm.max_map_count = {max}) can \
         be live at once",
        max / 2
    );
    for part in [
        "cannot spawn greenlet: cannot allocate a greenlet stack of 16 KiB",
        "the process has hit the kernel's mapping limit",
        "stacks are guarded with mprotect because GROVE_STACK_GUARD=mprotect is set",
        &ceiling,
        "MADV_GUARD_INSTALL",
        "sysctl -w vm.max_map_count=",
    ] {
        assert!(stdout.contains(part), "{part:?} missing in:\n{stdout}");
    }
}
