//! The blocking monitor (gevent's monitor thread, `max_blocking_time`): a greenlet that
//! holds its worker longer than the threshold is reported once per stall, naming it;
//! greenlets that keep yielding are never reported; while a worker stalls, unstarted
//! greenlets queued there are stolen by the other worker.
//!
//! gevent's own test is `src/gevent/tests/test__monitor.py` (a greenlet blocking the hub
//! is reported by the monitor thread).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grove::greenlet::GreenletBuilder;
use grove::monitor::parse_threshold;
use grove::{monitor::StallReport, JoinHandle};

/// Runs `f` for `d` without ever switching: a std loop over the clock.
fn spin_for(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn collecting_runtime(threshold: Duration) -> (grove::Runtime, Arc<Mutex<Vec<StallReport>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let rt = grove::Runtime::builder()
        .workers(2)
        .monitor(Some(threshold))
        .on_stall(move |r| sink.lock().unwrap().push(r.clone()))
        .build()
        .unwrap();
    (rt, seen)
}

#[test]
fn a_stall_is_reported_once_with_name_id_location_and_worker_while_unstarted_work_is_stolen() {
    const CHILDREN: usize = 8;
    let (rt, seen) = collecting_runtime(Duration::from_millis(100));
    type Children = Vec<JoinHandle<(usize, Instant)>>;
    let (spinner_id, line, worker, children, stall_end): (u64, u32, usize, Children, Instant) = rt
        .block_on(|| {
            let line = line!() + 1;
            let h = GreenletBuilder::new().name("spinner").spawn(|| {
                let me = grove::greenlet::worker_index().unwrap();
                // Queued on this worker, unstarted: all but the last (in the worker's
                // LIFO slot) are stealable.
                let children: Children = (0..CHILDREN)
                    .map(|_| {
                        grove::spawn(|| (grove::greenlet::worker_index().unwrap(), Instant::now()))
                    })
                    .collect();
                spin_for(Duration::from_millis(300));
                (me, children, Instant::now())
            });
            let id = h.id();
            let (worker, children, end) = h.join().unwrap();
            (id, line, worker, children, end)
        });
    let ran: Vec<(usize, Instant)> = children.into_iter().map(|h| h.join().unwrap()).collect();
    let stolen_during_stall = ran
        .iter()
        .filter(|(w, at)| *w != worker && *at < stall_end)
        .count();
    assert!(
        stolen_during_stall >= CHILDREN - 1,
        "only {stolen_during_stall} of {CHILDREN} unstarted greenlets ran on the other \
         worker during the stall: {ran:?}"
    );

    // Greenlets now yield constantly for a while: no further report.
    rt.block_on(|| {
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(200) {
            grove::yield_now();
        }
    });
    let reports = seen.lock().unwrap().clone();
    assert_eq!(reports.len(), 1, "one stall, one report: {reports:#?}");
    assert_eq!(rt.stall_reports(), reports, "kept reports match the hook's");
    let r = &reports[0];
    assert_eq!(r.id, spinner_id);
    assert_eq!(r.name.as_deref(), Some("spinner"));
    assert_eq!(r.worker, worker);
    assert!(
        r.spawned_at.file().ends_with("monitor.rs"),
        "{}",
        r.spawned_at
    );
    assert_eq!(r.spawned_at.line(), line);
    assert!(r.held_for >= Duration::from_millis(100), "{:?}", r.held_for);
    let text = r.to_string();
    for needle in [
        "'spinner'",
        &format!("id {spinner_id}"),
        &format!("worker {worker}"),
        "monitor.rs",
        "never migrate",
        "stolen",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
    assert_eq!(rt.metrics().stalls, Some(1));
}

#[test]
fn greenlets_that_keep_yielding_are_never_reported() {
    // 150 ms rather than the default 100 ms: a loaded CI machine may keep a worker thread
    // off its CPU for a while, which the monitor rightly counts as holding the worker. The
    // run lasts 4x the threshold, so a monitor adding up time across yields would report.
    let (rt, seen) = collecting_runtime(Duration::from_millis(150));
    rt.block_on(|| {
        let busy: Vec<_> = (0..4)
            .map(|_| {
                grove::spawn(|| {
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed() < Duration::from_millis(600) {
                        // Short bursts of work, then a yield: never near the threshold.
                        spin_for(Duration::from_micros(200));
                        grove::yield_now();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        for h in busy {
            assert!(h.join().unwrap() > 0);
        }
    });
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:#?}",
        seen.lock().unwrap()
    );
    assert!(rt.stall_reports().is_empty());
    assert_eq!(rt.metrics().stalls, Some(0));
}

#[test]
fn two_stalls_of_one_greenlet_are_two_reports() {
    let (rt, seen) = collecting_runtime(Duration::from_millis(50));
    rt.block_on(|| {
        spin_for(Duration::from_millis(200));
        grove::yield_now();
        spin_for(Duration::from_millis(200));
    });
    let reports = seen.lock().unwrap().clone();
    assert_eq!(reports.len(), 2, "{reports:#?}");
    assert_eq!(reports[0].id, reports[1].id);
}

#[test]
fn monitor_off_by_default_and_no_reports() {
    let rt = grove::Runtime::builder()
        .workers(1)
        .monitor(None)
        .build()
        .unwrap();
    rt.block_on(|| spin_for(Duration::from_millis(20)));
    assert!(rt.stall_reports().is_empty());
    assert_eq!(rt.metrics().stalls, None);
}

#[test]
fn threshold_syntax() {
    let ms = |n| Ok(Some(Duration::from_millis(n)));
    assert_eq!(parse_threshold("1"), ms(100));
    assert_eq!(parse_threshold("on"), ms(100));
    assert_eq!(parse_threshold(" TRUE "), ms(100));
    assert_eq!(parse_threshold("250"), ms(250));
    assert_eq!(parse_threshold("250ms"), ms(250));
    assert_eq!(parse_threshold("250 ms"), ms(250));
    assert_eq!(parse_threshold("1.5s"), ms(1500));
    assert_eq!(parse_threshold("2s"), ms(2000));
    assert_eq!(parse_threshold("1ms"), ms(1));
    assert_eq!(parse_threshold("500us"), ms(1), "raised to the minimum");
    assert_eq!(parse_threshold("0"), Ok(None));
    assert_eq!(parse_threshold(""), Ok(None));
    assert_eq!(parse_threshold("off"), Ok(None));
    assert_eq!(parse_threshold("0ms"), Ok(None));
    for bad in ["soon", "-5", "5m", "ms", "1e400s", "NaN"] {
        let e = parse_threshold(bad).unwrap_err();
        assert!(e.to_string().contains("GROVE_MONITOR"), "{e}");
    }
}

#[test]
fn environment_variable_turns_it_on_unless_the_builder_decided() {
    // Rust's env functions share one lock, so this is safe next to other tests reading
    // the environment; the runtimes of the other tests configure the monitor explicitly.
    std::env::set_var("GROVE_MONITOR", "30ms");
    let from_env = grove::Runtime::builder().workers(1).build().unwrap();
    let explicit_off = grove::Runtime::builder()
        .workers(1)
        .monitor(None)
        .build()
        .unwrap();
    std::env::set_var("GROVE_MONITOR", "nonsense");
    let invalid = grove::Runtime::builder().workers(1).build().unwrap();
    std::env::remove_var("GROVE_MONITOR");
    assert_eq!(
        from_env.handle().monitor_threshold(),
        Some(Duration::from_millis(30))
    );
    assert_eq!(explicit_off.handle().monitor_threshold(), None);
    assert_eq!(invalid.handle().monitor_threshold(), None);
}
