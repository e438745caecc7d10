//! Run-info dumps (gevent's `gevent.util.print_run_info`) and `Runtime::metrics`.
//!
//! The setups order greenlets with `Event`s on a one-worker runtime, so the state of
//! every greenlet at the moment of the dump is known without any timing assumption.

use std::time::{Duration, Instant};

use grove::greenlet::GreenletBuilder;
use grove::{
    greenlet::WaitReason,
    monitor::{GreenletState, RunInfo},
    sync::Event,
};

/// Waits (bounded) until `f` holds for a dump of `rt`, polling; returns that dump.
fn dump_until(rt: &grove::Runtime, f: impl Fn(&RunInfo) -> bool) -> RunInfo {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = rt.dump();
        if f(&info) || Instant::now() > deadline {
            return info;
        }
        std::thread::yield_now();
    }
}

#[test]
fn a_dump_lists_running_runnable_and_parked_greenlets_with_names_and_locations() {
    let rt = grove::Runtime::builder()
        .workers(1)
        .monitor(None)
        .build()
        .unwrap();
    let (info, main_id, parked_id, runnable_id, parked_line, runnable_line) = rt.block_on(|| {
        let main_id = grove::current().id();
        // A greenlet parked on an event: it says it started, then waits.
        let (started, release) = (Event::new(), Event::new());
        let b = GreenletBuilder::new().name("parked-on-event");
        let parked_line = line!() + 1;
        let parked = b.spawn({
            let (started, release) = (started.clone(), release.clone());
            move || {
                started.set();
                release.wait();
            }
        });
        started.wait(); // one worker: it ran up to its wait, and parked there

        // A greenlet that is runnable: it wakes us, then yields; we run first (the
        // woken greenlet takes the worker's LIFO slot), so it waits in the run queue.
        let (woke_us, stop) = (Event::new(), Event::new());
        let b = GreenletBuilder::new().name("runnable-yielder");
        let runnable_line = line!() + 1;
        let runnable = b.spawn({
            let (woke_us, stop) = (woke_us.clone(), stop.clone());
            move || {
                woke_us.set();
                while !stop.is_set() {
                    grove::yield_now();
                }
            }
        });
        woke_us.wait();
        // An unstarted greenlet: queued, not listed, counted.
        let unstarted = grove::spawn(|| ());
        let info = grove::monitor::run_info().expect("inside a runtime");
        let (parked_id, runnable_id) = (parked.id(), runnable.id());
        release.set();
        stop.set();
        parked.join().unwrap();
        runnable.join().unwrap();
        unstarted.join().unwrap();
        (
            info,
            main_id,
            parked_id,
            runnable_id,
            parked_line,
            runnable_line,
        )
    });

    println!("{info}");
    assert_eq!(info.live, 4, "{info}");
    assert_eq!(info.greenlets.len(), 3, "{info}");
    assert_eq!(info.unlisted, 1, "the unstarted one: {info}");
    assert_eq!(info.count(GreenletState::Running), 1, "{info}");
    assert_eq!(info.count(GreenletState::Runnable), 1, "{info}");
    assert_eq!(info.count(GreenletState::Parked), 1, "{info}");

    let main = info.greenlet(main_id).unwrap();
    assert_eq!(main.state, GreenletState::Running);
    assert!(
        main.age.is_some(),
        "main suspended before: it is registered"
    );
    let parked = info.greenlet(parked_id).unwrap();
    assert_eq!(parked.state, GreenletState::Parked);
    assert_eq!(parked.name.as_deref(), Some("parked-on-event"));
    assert_eq!(parked.worker, 0);
    assert!(parked.spawned_at.file().ends_with("run_info.rs"));
    assert_eq!(parked.spawned_at.line(), parked_line);
    let runnable = info.greenlet(runnable_id).unwrap();
    assert_eq!(runnable.state, GreenletState::Runnable);
    assert_eq!(runnable.name.as_deref(), Some("runnable-yielder"));
    assert_eq!(runnable.spawned_at.line(), runnable_line);

    assert_eq!(info.workers.len(), 1);
    assert_eq!(info.workers[0].running, Some(main_id));
    assert_eq!(info.stalls, None, "monitor off");

    let text = info.to_string();
    for needle in [
        "4 live greenlets",
        "1 running",
        "1 runnable",
        "1 parked",
        "1 unlisted",
        "parked-on-event",
        "runnable-yielder",
        &format!("run_info.rs:{parked_line}"),
        &format!("run_info.rs:{runnable_line}"),
        &format!("greenlet-{main_id}"),
        "remote_wakes",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

#[test]
fn a_dump_from_outside_sees_a_greenlet_running_on_another_thread() {
    let rt = grove::Runtime::builder()
        .workers(2)
        .monitor(None)
        .build()
        .unwrap();
    let stop = Event::new();
    let spinning = GreenletBuilder::new()
        .name("spinning")
        .spawn_on(rt.handle(), {
            let stop = stop.clone();
            // Never suspends until told: a running greenlet in its first run, not in any
            // registry, readable only through its worker's spotlight.
            move || {
                while !stop.is_set() {
                    std::hint::spin_loop();
                }
            }
        });
    let info = dump_until(&rt, |i| {
        i.greenlet(spinning.id())
            .is_some_and(|g| g.state == GreenletState::Running)
    });
    stop.set();
    let id = spinning.id();
    spinning.join().unwrap();
    let g = info.greenlet(id).expect("listed while running");
    assert_eq!(g.name.as_deref(), Some("spinning"));
    assert_eq!(g.age, None, "never suspended");
    assert_eq!(info.workers[g.worker].running, Some(g.id));
    assert!(info.to_string().contains("spinning"));
    // Once finished it is gone.
    let after = dump_until(&rt, |i| i.live == 0);
    assert!(after.greenlet(id).is_none(), "{after}");
    assert_eq!(after.live, 0);
}

#[test]
fn parked_greenlets_on_two_workers_from_outside() {
    let rt = grove::Runtime::builder()
        .workers(2)
        .monitor(None)
        .build()
        .unwrap();
    let release = Event::new();
    let hs: Vec<_> = (0..10)
        .map(|i| {
            let release = release.clone();
            GreenletBuilder::new()
                .name(format!("waiter-{i}"))
                .spawn_on(rt.handle(), move || release.wait())
        })
        .collect();
    let info = dump_until(&rt, |i| i.count(GreenletState::Parked) == 10);
    assert_eq!(info.count(GreenletState::Parked), 10, "{info}");
    assert_eq!(info.live, 10);
    assert_eq!(info.unlisted, 0);
    let text = info.to_string();
    for i in 0..10 {
        assert!(text.contains(&format!("waiter-{i} ")), "{text}");
    }
    release.set();
    for h in hs {
        h.join().unwrap();
    }
}

#[test]
fn run_info_outside_a_runtime_is_none() {
    assert!(grove::monitor::run_info().is_none());
}

#[test]
fn metrics_count_spawns_runs_parks_finishes_and_reactor_work() {
    const N: u64 = 1000;
    let rt = grove::Runtime::builder()
        .workers(2)
        .monitor(None)
        .build()
        .unwrap();
    let before = rt.metrics();
    assert_eq!(before.workers.len(), 2);
    rt.block_on(|| {
        let hs: Vec<_> = (0..N).map(|i| grove::spawn(move || i)).collect();
        for h in hs {
            h.join().unwrap();
        }
        // Three parks woken from another thread, ordered by states rather than time:
        // the thread sets the event only once a dump shows this greenlet parked.
        let me = grove::current().id();
        let handle = grove::runtime::Handle::try_current().unwrap();
        for _ in 0..3 {
            let ev = Event::new();
            let (e2, h2) = (ev.clone(), handle.clone());
            let setter = std::thread::spawn(move || {
                while !h2
                    .dump()
                    .greenlets
                    .iter()
                    .any(|g| g.id == me && g.state == GreenletState::Parked)
                {
                    std::thread::yield_now();
                }
                e2.set();
            });
            ev.wait();
            setter.join().unwrap();
        }
        // Timers go through the reactor. A sleep whose deadline has passed before it
        // parks returns at once and leaves its timer to fire later, so the timer counts
        // are awaited below rather than assumed here.
        for _ in 0..3 {
            grove::sleep(Duration::from_millis(1));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while rt.reactor_metrics().timers_fired < before.reactor.timers_fired + 3 {
        assert!(Instant::now() < deadline, "{:#?}", rt.metrics());
        std::thread::yield_now();
    }
    let m = rt.metrics();
    let sum = |f: fn(&grove::runtime::WorkerMetrics) -> u64| m.workers.iter().map(f).sum::<u64>();
    assert!(sum(|w| w.spawned) >= N, "{m:#?}");
    assert!(sum(|w| w.finished) > N, "children and main: {m:#?}");
    assert!(sum(|w| w.runs) > N, "{m:#?}");
    assert!(sum(|w| w.parks) >= 3, "the event waits at least: {m:#?}");
    assert!(
        sum(|w| w.remote_wakes) >= 3,
        "the events set by a thread: {m:#?}"
    );
    assert_eq!(m.live_greenlets, 0);
    assert_eq!(m.stalls, None);
    assert!(m.reactor.timers_fired >= 3, "{m:#?}");
    assert!(m.reactor.wakes >= 3, "{m:#?}");
    assert!(m.reactor.polls > before.reactor.polls);
}

/// A parked greenlet says what it waits on when the primitive names it.
#[test]
fn a_dump_says_what_parked_greenlets_wait_on() {
    const MY_RECV: WaitReason = WaitReason::custom(&"my_channel::recv");
    let rt = grove::Runtime::builder()
        .workers(1)
        .monitor(None)
        .build()
        .unwrap();
    let info = rt.block_on(|| {
        let (ev, q, lock) = (
            Event::new(),
            grove::queue::Queue::<u8>::new(),
            grove::sync::Lock::new(),
        );
        let held = lock.lock();
        let waiters = [
            GreenletBuilder::new().name("on-event").spawn({
                let ev = ev.clone();
                move || {
                    ev.wait();
                }
            }),
            GreenletBuilder::new().name("on-queue").spawn({
                let q = q.clone();
                move || {
                    q.get().unwrap();
                }
            }),
            GreenletBuilder::new().name("on-lock").spawn({
                let lock = lock.clone();
                move || drop(lock.lock())
            }),
            GreenletBuilder::new().name("on-sleep").spawn(|| {
                grove::sleep(Duration::from_secs(3600));
            }),
            // A primitive of the user's own names its wait (parks until killed).
            GreenletBuilder::new().name("on-custom").spawn(|| loop {
                grove::greenlet::park_on(MY_RECV);
            }),
        ];
        // One worker: yielding lets each run up to its wait.
        while grove::monitor::run_info()
            .expect("inside a runtime")
            .count(GreenletState::Parked)
            < 5
        {
            grove::yield_now();
        }
        let info = grove::monitor::run_info().expect("inside a runtime");
        ev.set();
        q.put(1).unwrap();
        drop(held);
        waiters[3].kill();
        waiters[4].kill();
        for w in waiters {
            let _ = w.join();
        }
        info
    });
    println!("{info}");
    let on = |name: &str| {
        info.greenlets
            .iter()
            .find(|g| g.name.as_deref() == Some(name))
            .and_then(|g| g.waiting_on)
            .map(|w| w.as_str())
    };
    assert_eq!(on("on-event"), Some("Event::wait"), "{info}");
    assert_eq!(on("on-queue"), Some("Queue::get"), "{info}");
    assert_eq!(on("on-lock"), Some("Lock::lock"), "{info}");
    assert_eq!(on("on-sleep"), Some("sleep"), "{info}");
    assert_eq!(on("on-custom"), Some("my_channel::recv"), "{info}");
    assert!(info.to_string().contains("Event::wait"), "{info}");
    assert!(info.to_string().contains("my_channel::recv"), "{info}");
    let typed = |name: &str| {
        info.greenlets
            .iter()
            .find(|g| g.name.as_deref() == Some(name))
            .and_then(|g| g.waiting_on)
    };
    assert_eq!(typed("on-event"), Some(WaitReason::EVENT_WAIT));
    assert_eq!(typed("on-custom"), Some(MY_RECV));
}

/// A parked greenlet's `age` is the time since it first suspended, to within the coarse
/// clock's few milliseconds: not less than a wait it has provably been through, and not
/// wildly more.
#[test]
fn a_parked_greenlets_age_counts_from_its_first_suspension() {
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    let (release, parked_once) = (Event::new(), Event::new());
    let parked = rt.spawn({
        let (release, parked_once) = (release.clone(), parked_once.clone());
        move || {
            parked_once.set();
            release.wait();
        }
    });
    let id = parked.id();
    // The greenlet has run up to `release.wait()` (it set the event just before).
    let since = Instant::now();
    assert!(parked_once.wait_timeout(Duration::from_secs(20)));
    let info = dump_until(&rt, |i| {
        i.greenlet(id)
            .is_some_and(|g| g.state == GreenletState::Parked)
    });
    let first = info
        .greenlet(id)
        .expect("parked")
        .age
        .expect("suspended once");
    std::thread::sleep(Duration::from_millis(200));
    let later = rt.dump().greenlet(id).expect("still parked").age.unwrap();
    let waited = since.elapsed();
    release.set();
    parked.join().unwrap();
    // 200 ms passed between the dumps; the coarse clock is off by a tick (a few ms) at most.
    assert!(
        later >= first + Duration::from_millis(150),
        "age went {first:?} -> {later:?} over 200 ms"
    );
    assert!(
        later <= waited + Duration::from_millis(50),
        "age {later:?} longer than the {waited:?} since before it parked"
    );
}
