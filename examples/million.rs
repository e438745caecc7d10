//! A million parked greenlets on one machine, every stack guarded: what they cost, and
//! that the memory comes back once they are gone.
//!
//! ```text
//! cargo run --release --example million            # 1,000,000 greenlets
//! cargo run --release --example million -- 100000  # another count
//! ```
//!
//! Each greenlet blocks on one shared `Event` (gevent's `Event().wait()`), so all of
//! them are parked at once. The example prints the process's resident memory per
//! parked greenlet (VmRSS from `/proc/self/status`, before and after, divided by the
//! count: the stack pages each greenlet touched, its header, and its `JoinHandle`),
//! then sets the event, joins them all, and prints the resident memory once the idle
//! workers have given the pooled stacks' pages back to the kernel (and, on glibc, once
//! `malloc_trim` has returned the freed greenlet headers its arenas keep for reuse).
//!
//! Measured on the project's 2-core VM (Linux 6.18, 256 KiB stacks): 1,000,000 parked in
//! 6–9 s at 4.9 KiB RSS each (4.65 GiB in all; one touched stack page plus ~780 bytes of
//! header, handle and bookkeeping); 250 stack mappings, which the kernel merges so that
//! `/proc/self/maps` grows by about 20 lines; after the drain and the idle trim about
//! 400 MiB above the start, about 80 MiB after `malloc_trim`.
//!
//! Nothing needs raising: on Linux ≥ 6.13 the guard pages are `MADV_GUARD_INSTALL`
//! markers inside a few large mappings, so `vm.max_map_count` (65,530 by default) does
//! not cap the count. On older kernels (or with `GROVE_STACK_GUARD=mprotect`) every
//! stack is two mappings and spawning fails past ~32,700 greenlets with an error that
//! says so; run with `GROVE_LOG=debug` to have the runtime state its ceiling at startup.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> std::io::Result<()> {
    let n: usize = match std::env::args().nth(1) {
        Some(a) => a.parse().expect("usage: million [COUNT]"),
        None => 1_000_000,
    };
    println!(
        "vm.max_map_count = {}, {} CPUs",
        read_trimmed("/proc/sys/vm/max_map_count"),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let rt = grove::Runtime::new()?;
    // Warm up: threads started, their stacks and the allocator's first chunk in place.
    rt.block_on(|| grove::spawn(|| ()).join().unwrap());
    let base = rss();
    let maps_before = map_count();

    let event = Arc::new(grove::sync::Event::new());
    let waiting = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let handles = {
        let (event, waiting) = (event.clone(), waiting.clone());
        rt.block_on(move || {
            let hs: Vec<_> = (0..n)
                .map(|_| {
                    let (event, waiting) = (event.clone(), waiting.clone());
                    grove::spawn(move || {
                        waiting.fetch_add(1, Ordering::Relaxed);
                        event.wait();
                    })
                })
                .collect();
            // Every greenlet has started and is about to park (or has): let the last
            // ones finish parking.
            while waiting.load(Ordering::Relaxed) < n {
                grove::sleep(Duration::from_millis(1));
            }
            grove::sleep(Duration::from_millis(20));
            hs
        })
    };
    let spawn_time = t.elapsed();
    let parked = rss();
    let st = rt.handle().stack_metrics();
    println!(
        "{n} greenlets parked in {spawn_time:.2?}: RSS {} -> {} MiB, {} bytes per parked greenlet",
        base >> 20,
        parked >> 20,
        parked.saturating_sub(base) / n
    );
    println!(
        "  stacks: {} live, {} mappings ({} reserved, {} guards); /proc/self/maps {} -> {}",
        st.live,
        st.mappings,
        gib(st.bytes_reserved),
        if st.guard_install {
            "MADV_GUARD_INSTALL"
        } else {
            "mprotect"
        },
        maps_before,
        map_count()
    );

    let t = Instant::now();
    event.set();
    let joined = rt.block_on(move || handles.into_iter().filter_map(|h| h.join().ok()).count());
    assert_eq!(joined, n, "every greenlet woke and finished");
    let drained = rss();
    println!(
        "woken and joined in {:.2?}: RSS {} MiB right after the drain",
        t.elapsed(),
        drained >> 20
    );

    // The workers are idle now: each gives pooled stacks beyond the watermark back to
    // the kernel (a batch at a time, one madvise per run of adjacent stacks).
    let t = Instant::now();
    while rt.handle().stack_metrics().trim_pending && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let st = rt.handle().stack_metrics();
    let after = rss();
    println!(
        "after the idle trim ({:.2?}): RSS {} MiB ({} MiB above the start); stacks: {} live, \
         {} pooled of which {} decommitted",
        t.elapsed(),
        after >> 20,
        after.saturating_sub(base) >> 20,
        st.live,
        st.pooled,
        st.decommitted
    );
    // What remains is mostly freed heap (greenlet headers) that glibc's per-thread
    // arenas keep for reuse rather than return; `malloc_trim` hands it back.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
        unsafe { libc::malloc_trim(0) };
        let trimmed = rss();
        println!(
            "after malloc_trim(0): RSS {} MiB ({} MiB above the start)",
            trimmed >> 20,
            trimmed.saturating_sub(base) >> 20
        );
    }
    Ok(())
}

/// The process's resident memory, in bytes (`VmRSS` in `/proc/self/status`).
fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Lines of `/proc/self/maps`: the mappings counted against `vm.max_map_count`.
fn map_count() -> usize {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map_or_else(|_| "?".into(), |s| s.trim().to_owned())
}

fn gib(bytes: usize) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}
