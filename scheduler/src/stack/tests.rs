//! Unit tests of the allocator, the pools and the stacks, in both guard modes where the kernel
//! allows. Tests that count mappings or measure RSS run alone in a child process (`isolated`).

use std::collections::HashSet;
use std::hint::black_box;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::ptr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use corosensei::stack::Stack;
use corosensei::{Coroutine, CoroutineResult};

use super::allocator::{lock, StackAllocator};
use super::config::{
    StackConfig, BATCH, DEFER_LIMIT, GLOBAL_WARM_WATERMARK, LOCAL_HIGH_WATERMARK, MIN_STACK_SIZE,
    TRIM_RUN,
};
use super::error::{StackError, StackStats};
use super::green::{GreenStack, CACHE_LINE, COLORS};
use super::guard::{guard_install_supported, GuardMode, GuardReason, GUARD_ENV};
use super::pool::StackPool;
use super::sys::{max_map_count, page_size};
use super::test_util::{in_child, isolated, maps, readable, rss, run_child};

fn alloc(mode: GuardMode, size: usize) -> Arc<StackAllocator> {
    Arc::new(StackAllocator::with_mode(StackConfig { size }, mode))
}

/// Both modes where the kernel has guard markers, else Mprotect only.
fn modes() -> Vec<GuardMode> {
    if guard_install_supported() {
        vec![GuardMode::Madvise, GuardMode::Mprotect]
    } else {
        eprintln!("MADV_GUARD_INSTALL unsupported here: testing Mprotect mode only");
        vec![GuardMode::Mprotect]
    }
}

/// Writes one byte in every page of the usable part of `s`, as a deep greenlet would.
fn touch(s: &GreenStack, bytes: usize) {
    let page = page_size();
    let top = s.base().get();
    for off in (page..=bytes).step_by(page) {
        // SAFETY: `top - off` lies in the usable part of a stack we own and nothing runs on.
        unsafe { ptr::write_volatile((top - off) as *mut u8, 1) };
    }
}

#[test]
fn detects_madvise_on_this_kernel() {
    // This crate's CI and dev VMs run Linux ≥ 6.13; elsewhere the probe must say Mprotect.
    let mode = GuardMode::detect();
    eprintln!("guard mode: {mode:?}");
    if std::env::var_os(GUARD_ENV).is_some_and(|v| v == "mprotect") {
        assert_eq!(mode, GuardMode::Mprotect);
    } else {
        assert_eq!(mode == GuardMode::Madvise, guard_install_supported());
    }
}

#[test]
fn layout_matches_corosensei_contract() {
    for mode in modes() {
        let a = alloc(mode, 1000);
        assert_eq!(a.size(), MIN_STACK_SIZE);
        let a = alloc(mode, 100 * 1024 + 1);
        let page = page_size();
        assert_eq!(a.size(), (100 * 1024 + 1usize).next_multiple_of(page));
        let mut pool = StackPool::new(a.clone());
        let s = pool.get().unwrap();
        let (lo, hi) = s.guard_range();
        assert_eq!(s.limit().get(), lo, "limit includes the guard");
        assert_eq!(hi - lo, page);
        // The top is lowered by the cache colour: less than COLORS cache lines.
        let span = s.base().get() - s.limit().get();
        assert!(span <= page + a.size() && span > page + a.size() - COLORS * CACHE_LINE);
        assert_eq!(s.base().get() % corosensei::stack::STACK_ALIGNMENT, 0);
        assert!(
            !readable(lo) && !readable(hi - 1),
            "{mode:?}: guard must fault"
        );
        assert!(readable(hi) && readable(s.base().get() - 1));
        pool.put(s);
    }
}

#[test]
fn warm_reuse_is_lifo_and_same_address() {
    for mode in modes() {
        let mut pool = StackPool::new(alloc(mode, 64 * 1024));
        let a = pool.get().unwrap();
        let a_lo = a.limit();
        pool.put(a);
        let a = pool.get().unwrap();
        assert_eq!(
            a.limit(),
            a_lo,
            "{mode:?}: warm get returns the slot just put"
        );
        let b = pool.get().unwrap();
        let b_lo = b.limit();
        assert_ne!(a_lo, b_lo);
        pool.put(a);
        pool.put(b);
        assert_eq!(
            pool.get().unwrap().limit(),
            b_lo,
            "most recently used first"
        );
    }
}

#[test]
fn coroutines_run_on_green_stacks_and_stacks_recycle() {
    for mode in modes() {
        let a = alloc(mode, 64 * 1024);
        let mut pool = StackPool::new(a.clone());
        for round in 0..3 {
            let stack = pool.get().unwrap();
            let (lo, _) = stack.guard_range();
            let mut co = Coroutine::with_stack(stack, move |y, n: u64| {
                // Use a good part of the stack.
                let buf = black_box([n as u8; 16 * 1024]);
                let got = y.suspend(buf.iter().map(|&b| u64::from(b)).sum::<u64>());
                got + 1
            });
            assert!(matches!(co.resume(1), CoroutineResult::Yield(16384)));
            assert!(matches!(co.resume(41), CoroutineResult::Return(42)));
            let stack = co.into_stack();
            assert_eq!(stack.guard_range().0, lo);
            pool.put(stack);
            assert_eq!(a.stats().live, 0, "round {round}");
        }
    }
}

#[test]
fn dropping_unfinished_coroutine_returns_its_stack() {
    for mode in modes() {
        let a = alloc(mode, 32 * 1024);
        let mut pool = StackPool::new(a.clone());
        let mut co = Coroutine::with_stack(pool.get().unwrap(), |y, ()| {
            y.suspend(());
        });
        assert!(matches!(co.resume(()), CoroutineResult::Yield(())));
        assert_eq!(a.stats().live, 1);
        drop(co); // unwinds the greenlet, then drops the GreenStack
        let st = a.stats();
        assert_eq!((st.live, st.pooled), (0, 1), "{mode:?}: {st:?}");
        // The global list hands it out again.
        let s = pool.get().unwrap();
        assert_eq!(a.stats().live, 1);
        drop(s);
    }
}

#[test]
fn allocate_at_the_configured_size_reuses_pooled_slots() {
    for mode in modes() {
        let a = alloc(mode, 64 * 1024);
        let mut pool = StackPool::new(a.clone());
        // Nothing pooled yet: a new slot, which a worker's pool then keeps.
        let s = a.allocate(64 * 1024 - 100).unwrap();
        let lo = s.limit();
        assert!(s.is_pooled_by(&a));
        assert!(!readable(s.guard_range().0), "{mode:?}: guarded");
        pool.put(s);
        assert_eq!(
            pool.get().unwrap().limit(),
            lo,
            "{mode:?}: pooled like any other"
        );
        // Dropped stacks land in the global list, where `allocate` finds them.
        let s = a.allocate(64 * 1024).unwrap();
        assert_eq!(s.limit(), lo, "{mode:?}: from the global list");
        drop(s);
        let st = a.stats();
        assert_eq!((st.live, st.pooled), (0, 1), "{mode:?}: {st:?}");
        // A partly used fresh range is not lost: the pool carves on from the spare list.
        let mut held: Vec<_> = (0..100).map(|_| a.allocate(64 * 1024).unwrap()).collect();
        held.extend((0..100).map(|_| pool.get().unwrap()));
        let distinct: HashSet<_> = held.iter().map(|s| s.limit()).collect();
        assert_eq!(distinct.len(), 200);
        if mode == GuardMode::Madvise {
            assert!(a.stats().mappings <= 3, "{:?}", a.stats());
        }
    }
}

#[test]
fn allocate_at_another_size_maps_a_dedicated_stack() {
    for mode in modes() {
        let a = alloc(mode, 64 * 1024);
        let mut pool = StackPool::new(a.clone());
        let before = a.stats();
        let s = a.allocate(1 << 20).unwrap();
        let page = page_size();
        let span = s.base().get() - s.limit().get();
        assert!(span <= page + (1 << 20) && span > page + (1 << 20) - COLORS * CACHE_LINE);
        let (lo, hi) = s.guard_range();
        assert!(!readable(lo) && readable(hi), "{mode:?}: guarded");
        let per_stack = if mode == GuardMode::Madvise { 1 } else { 2 };
        let st = a.stats();
        assert_eq!(st.mappings, before.mappings + per_stack, "{mode:?}");
        assert_eq!(st.live, before.live + 1, "{mode:?}");
        // It runs a coroutine like any stack...
        let mut co = Coroutine::<u64, (), u64, _>::with_stack(s, |_, x: u64| {
            let buf = black_box([x as u8; 128 * 1024]);
            u64::from(buf[1000])
        });
        assert!(matches!(co.resume(3), CoroutineResult::Return(3)));
        // ...and is unmapped, not pooled, when returned.
        pool.put(co.into_stack());
        let st = a.stats();
        assert_eq!(
            (st.live, st.pooled, st.mappings, st.bytes_reserved),
            (
                before.live,
                before.pooled,
                before.mappings,
                before.bytes_reserved
            ),
            "{mode:?}"
        );
        assert!(pool.is_empty());
    }
}

#[test]
fn many_stacks_few_mappings_in_madvise_mode() {
    if !isolated(module_path!(), "many_stacks_few_mappings_in_madvise_mode") {
        return;
    }
    if !guard_install_supported() {
        eprintln!("skipped: no MADV_GUARD_INSTALL");
        return;
    }
    const N: usize = 20_000;
    let before = maps();
    let a = alloc(GuardMode::Madvise, 64 * 1024);
    let mut pool = StackPool::new(a.clone());
    let t = Instant::now();
    let stacks: Vec<_> = (0..N).map(|_| pool.get().unwrap()).collect();
    let per_fresh = t.elapsed() / N as u32;
    let after = maps();
    let st = a.stats();
    eprintln!(
        "{N} stacks: {} mappings by the allocator, /proc/self/maps {before} -> {after}, \
         {per_fresh:?} per fresh slot, {} MiB reserved",
        st.mappings,
        st.bytes_reserved >> 20
    );
    assert_eq!(st.live, N);
    assert!(st.mappings <= 12, "{st:?}");
    assert!(after <= before + 12 + 8, "maps {before} -> {after}");
    // Every slot is distinct and guarded.
    let mut seen = HashSet::new();
    for s in &stacks {
        assert!(seen.insert(s.limit()));
    }
    for s in stacks.iter().step_by(997) {
        let (lo, hi) = s.guard_range();
        assert!(!readable(lo) && !readable(hi - 1));
        assert!(readable(hi));
    }
    for s in stacks {
        pool.put(s);
    }
    let st = a.stats();
    assert_eq!((st.live, st.pooled), (0, N));
    drop(pool);
    drop(a);
    let end = maps();
    if end > before + 8 {
        eprintln!("{}", std::fs::read_to_string("/proc/self/maps").unwrap());
    }
    assert!(
        end <= before + 8,
        "chunks unmapped on drop: {before} -> {end}"
    );
}

#[test]
fn mprotect_mode_costs_two_mappings_per_stack() {
    if !isolated(module_path!(), "mprotect_mode_costs_two_mappings_per_stack") {
        return;
    }
    let before = maps();
    let a = alloc(GuardMode::Mprotect, 32 * 1024);
    let mut pool = StackPool::new(a.clone());
    let stacks: Vec<_> = (0..200).map(|_| pool.get().unwrap()).collect();
    let st = a.stats();
    assert_eq!(st.mappings, 400);
    let after = maps();
    assert!(
        after >= before + 390 && after <= before + 410,
        "{before} -> {after}"
    );
    drop(stacks);
    drop(pool);
    drop(a);
    assert!(maps() <= before + 8, "stacks unmapped on drop");
}

#[test]
fn spike_memory_is_decommitted() {
    if !isolated(module_path!(), "spike_memory_is_decommitted") {
        return;
    }
    for mode in modes() {
        const N: usize = 3000;
        const USED: usize = 48 * 1024;
        let a = alloc(mode, 64 * 1024);
        let mut pool = StackPool::new(a.clone());
        let base = rss();
        let stacks: Vec<_> = (0..N).map(|_| pool.get().unwrap()).collect();
        for s in &stacks {
            touch(s, USED);
        }
        let peak = rss();
        let spike = peak.saturating_sub(base);
        assert!(
            spike >= N * USED * 9 / 10,
            "{mode:?}: touched pages show in RSS"
        );
        for s in stacks {
            pool.put(s);
        }
        // What an idle worker does before it sleeps (step 4), one slice at a time.
        let mut slices = 0;
        while a.needs_trim() {
            let n = a.trim_slice();
            assert!((1..=TRIM_RUN).contains(&n), "{mode:?}: a slice of {n}");
            slices += 1;
        }
        if mode == GuardMode::Madvise {
            // Carved in address order, returned as a spike: long runs, one madvise each.
            let bound = N / TRIM_RUN + GLOBAL_WARM_WATERMARK + LOCAL_HIGH_WATERMARK + 32;
            assert!(
                slices <= bound,
                "{mode:?}: {slices} slices for {N} stacks: runs not coalesced"
            );
        }
        let after = rss();
        let st = a.stats();
        eprintln!(
            "{mode:?}: RSS {} MiB -> {} MiB (spike) -> {} MiB; {st:?}",
            base >> 20,
            peak >> 20,
            after >> 20
        );
        // At most the local and global warm watermarks stay committed (~15 MiB here).
        let kept = (LOCAL_HIGH_WATERMARK + GLOBAL_WARM_WATERMARK) * USED;
        assert!(
            after <= base + kept + (16 << 20),
            "{mode:?}: memory came back"
        );
        assert!(st.decommitted >= N - LOCAL_HIGH_WATERMARK - GLOBAL_WARM_WATERMARK - BATCH);
        assert_eq!(st.pooled, N);
        // Cold stacks still have their guards and work as stacks.
        let mut cold = Vec::new();
        for _ in 0..N {
            cold.push(pool.get().unwrap());
        }
        let s = cold.last().unwrap();
        let (lo, hi) = s.guard_range();
        assert!(
            !readable(lo) && readable(hi),
            "{mode:?}: guard survives MADV_DONTNEED"
        );
        touch(s, USED);
        assert_eq!(a.stats().mappings, st.mappings, "no new mappings for reuse");
    }
}

/// Returning stacks never decommits (no syscall on the return path, however many pile up),
/// and stacks returned in scrambled order still come back as address runs.
#[test]
fn the_return_path_never_decommits_and_trim_coalesces_runs() {
    for mode in modes() {
        // More than DEFER_LIMIT beyond every watermark: the old return path trimmed inline.
        let n = DEFER_LIMIT + GLOBAL_WARM_WATERMARK + LOCAL_HIGH_WATERMARK + 4 * BATCH;
        if mode == GuardMode::Mprotect && n * 2 + maps() + 1024 > max_map_count().unwrap_or(0) {
            continue; // two mappings per stack: this many would hit vm.max_map_count
        }
        let a = alloc(mode, 16 * 1024);
        let mut pool = StackPool::new(a.clone());
        let mut stacks: Vec<_> = (0..n).map(|_| pool.get().unwrap()).collect();
        // Scramble the return order (a fixed xorshift shuffle), as timers finishing do.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for i in (1..stacks.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            stacks.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for s in stacks {
            pool.put(s);
        }
        let st = a.stats();
        assert_eq!(st.decommitted, 0, "{mode:?}: the return path decommitted");
        assert!(a.trim_pending() > DEFER_LIMIT, "{mode:?}: {st:?}");
        let pending = a.trim_pending();
        let mut slices = 0;
        let mut done = 0;
        while a.needs_trim() {
            let k = a.trim_slice();
            assert!((1..=TRIM_RUN).contains(&k));
            done += k;
            slices += 1;
        }
        assert_eq!(done, pending);
        assert_eq!(a.stats().decommitted, pending);
        if mode == GuardMode::Madvise {
            // Runs end at TRIM_RUN and at the holes left by the stacks kept warm (and at
            // chunk boundaries): far fewer slices than stacks.
            let bound = pending / TRIM_RUN + GLOBAL_WARM_WATERMARK + LOCAL_HIGH_WATERMARK + 32;
            assert!(
                slices <= bound,
                "{slices} slices for {pending} stacks: runs not coalesced"
            );
        }
    }
}

#[test]
fn pools_on_many_threads_never_share_a_slot() {
    for mode in modes() {
        let a = alloc(mode, 16 * 1024);
        let live = Arc::new(Mutex::new(HashSet::new()));
        std::thread::scope(|scope| {
            for t in 0..4 {
                let (a, live) = (a.clone(), live.clone());
                scope.spawn(move || {
                    let mut pool = StackPool::new(a);
                    let mut held = Vec::new();
                    for i in 0..20_000usize {
                        if held.len() < 300 && (i * 7 + t) % 3 != 0 {
                            let s = pool.get().unwrap();
                            assert!(lock(&live).insert(s.limit()), "slot handed out twice");
                            held.push(s);
                        } else if let Some(s) = held.pop() {
                            assert!(lock(&live).remove(&s.limit()));
                            if i % 5 == 0 {
                                drop(s); // straight to the global list
                            } else {
                                pool.put(s);
                            }
                        }
                    }
                    for s in held {
                        assert!(lock(&live).remove(&s.limit()));
                        pool.put(s);
                    }
                });
            }
        });
        let st = a.stats();
        assert_eq!(st.live, 0, "{mode:?}: {st:?}");
    }
}

#[test]
fn warm_get_put_is_cheap_and_fresh_slots_are_small() {
    if !isolated(
        module_path!(),
        "warm_get_put_is_cheap_and_fresh_slots_are_small",
    ) {
        return;
    }
    for mode in modes() {
        let a = alloc(mode, 256 * 1024);
        let mut pool = StackPool::new(a.clone());
        // Warm path.
        let s = pool.get().unwrap();
        pool.put(s);
        const ROUNDS: u32 = 1_000_000;
        let t = Instant::now();
        for _ in 0..ROUNDS {
            let s = black_box(pool.get().unwrap());
            pool.put(s);
        }
        let warm = t.elapsed() / ROUNDS;
        // Fresh slots, each running a greenlet up to its first suspension: RSS per parked
        // greenlet. Runs on top of the warm pool, so take the pooled one first.
        const N: usize = 2000;
        let mut cos = Vec::with_capacity(N);
        let stacks: Vec<_> = (0..N + 1).map(|_| pool.get().unwrap()).collect();
        let base = rss();
        for s in stacks.into_iter().skip(1) {
            let mut co = Coroutine::with_stack(s, |y, ()| {
                y.suspend(());
            });
            assert!(matches!(co.resume(()), CoroutineResult::Yield(())));
            cos.push(co);
        }
        let per = (rss() - base) / N;
        let t = Instant::now();
        let fresh: Vec<_> = (0..N).map(|_| pool.get().unwrap()).collect();
        let per_fresh = t.elapsed() / N as u32;
        eprintln!(
            "{mode:?}: warm get+put {warm:?}; fresh slot {per_fresh:?}; \
             RSS per parked greenlet {per} bytes"
        );
        assert!(warm.as_nanos() < 2_000, "warm path {warm:?}");
        assert!(per <= 16 * 1024, "RSS per parked greenlet {per}");
        drop(fresh);
        drop(cos);
    }
}

#[test]
fn error_message_names_the_mapping_limit() {
    let e = StackError {
        op: "mmap",
        len: 266_240,
        stack_size: 256 * 1024,
        source: io::Error::from_raw_os_error(libc::ENOMEM),
        map_count: Some(65_526),
        max_map_count: Some(65_530),
        mode: GuardMode::Mprotect,
        reason: GuardReason::Forced,
        stats: StackStats {
            live: 32_700,
            pooled: 10,
            decommitted: 2,
            mappings: 65_420,
            bytes_reserved: 8 << 30,
        },
    };
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(msg.contains("MADV_GUARD_INSTALL"), "{msg}");
    assert!(
        msg.contains(
            "[grove stacks: 32700 live, 10 pooled (2 decommitted), 65420 mappings, \
             8 GiB reserved, Mprotect guards]"
        ),
        "{msg}"
    );
    assert!(msg.contains("256 KiB"), "{msg}");
    assert!(msg.contains("mmap of 266240 bytes failed"), "{msg}");
    assert!(msg.contains("65526 of vm.max_map_count = 65530"), "{msg}");
    assert!(msg.contains("sysctl -w vm.max_map_count="), "{msg}");
    assert!(
        msg.contains(
            "guarded with mprotect because GROVE_STACK_GUARD=mprotect is set: two mappings \
             per stack, so at most about 32765 greenlets (vm.max_map_count = 65530) can be \
             live at once"
        ),
        "{msg}"
    );
    let io: io::Error = e.into();
    assert_eq!(io.kind(), io::ErrorKind::OutOfMemory);
}

/// Under a small `RLIMIT_AS` the allocator must return a `StackError`, in both modes.
#[test]
fn stack_error_under_rlimit_as() {
    if in_child() {
        let mode = GuardMode::detect();
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let vsz: usize = statm.split_whitespace().next().unwrap().parse().unwrap();
        let limit = (vsz * page_size() + (32 << 20)) as libc::rlim_t;
        let rl = libc::rlimit {
            rlim_cur: limit,
            rlim_max: limit,
        };
        // SAFETY: `rl` is a valid rlimit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &rl) }, 0);
        let a = Arc::new(StackAllocator::new(StackConfig { size: 4 << 20 }));
        let mut pool = StackPool::new(a);
        let mut held = Vec::new();
        let err = loop {
            match pool.get() {
                Ok(s) => held.push(s),
                Err(e) => break e,
            }
        };
        println!("MODE<<{mode:?}>> HELD<<{}>> ERR<<{err}>>", held.len());
        return;
    }
    for env in ["auto", "mprotect"] {
        let out = run_child(
            module_path!(),
            "stack_error_under_rlimit_as",
            &[(GUARD_ENV, env)],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        eprintln!("{stdout}");
        assert!(out.status.success(), "{:?}", out.status);
        assert!(stdout.contains("cannot allocate a greenlet stack of 4 MiB: mmap of"));
        // Some stacks fit under the limit (Madvise: after halving the chunk) before it fails.
        assert!(!stdout.contains("HELD<<0>>"), "{stdout}");
        assert!(stdout.contains("Cannot allocate memory"));
        assert!(stdout.contains("vm.max_map_count = "));
        assert!(stdout.contains("Builder::stack_size"));
        if env == "mprotect" {
            assert!(stdout.contains("MODE<<Mprotect>>"));
        }
    }
}

#[test]
fn child_helper_reports_signals() {
    // Sanity check of the helper the overflow tests rely on.
    if in_child() {
        // SAFETY: aborting is always allowed.
        unsafe { libc::abort() };
    }
    let out = run_child(module_path!(), "child_helper_reports_signals", &[]);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT));
}
