//! A panic in a greenlet is caught at its root: `join` reports it with the payload
//! and the greenlet's name; an unjoined failure is reported on stderr; the worker
//! survives and keeps running greenlets.

mod common;
use grove::greenlet::GreenletBuilder;

#[test]
fn join_returns_the_panic_payload_and_name() {
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let err = rt.block_on(|| {
        GreenletBuilder::new()
            .name("doomed")
            .spawn(|| -> u32 {
                let n = std::hint::black_box(42);
                panic!("boom {n}")
            })
            .join()
            .unwrap_err()
    });
    assert!(err.is_panic());
    assert_eq!(err.name(), "doomed");
    assert!(err.to_string().contains("doomed"), "{err}");
    assert!(err.to_string().contains("boom 42"), "{err}");
    let payload = err.into_panic();
    assert_eq!(payload.downcast_ref::<String>().unwrap(), "boom 42");
}

#[test]
fn workers_survive_panicking_greenlets() {
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let (failed, ok) = rt.block_on(|| {
        let hs: Vec<_> = (0..200u32)
            .map(|i| {
                grove::spawn(move || {
                    grove::yield_now();
                    if i % 2 == 0 {
                        panic!("even {i}");
                    }
                    i
                })
            })
            .collect();
        let mut failed = 0;
        let mut ok = 0;
        for h in hs {
            match h.join() {
                Ok(_) => ok += 1,
                Err(e) => {
                    assert!(e.is_panic());
                    failed += 1;
                }
            }
        }
        (failed, ok)
    });
    assert_eq!((failed, ok), (100, 100));
    // Still fully working afterwards.
    assert_eq!(rt.block_on(|| grove::spawn(|| 7).join().unwrap()), 7);
}

#[test]
fn block_on_resumes_the_main_greenlets_panic() {
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(|| -> () { panic!("main failed") })
    }));
    let payload = caught.unwrap_err();
    assert_eq!(*payload.downcast_ref::<&str>().unwrap(), "main failed");
    assert_eq!(rt.block_on(|| 1), 1);
}

#[test]
fn unjoined_failure_is_reported_on_stderr() {
    if common::is_child() {
        let rt = grove::Runtime::builder().workers(1).build().unwrap();
        rt.block_on(|| {
            let h = GreenletBuilder::new()
                .name("forgotten")
                .spawn(|| panic!("nobody joins me"));
            drop(h);
            // Let it run and fail while detached.
            let waiter = grove::spawn(|| grove::sleep(std::time::Duration::from_millis(20)));
            waiter.join().unwrap();
        });
        // Finished before its handle was dropped: reported at drop.
        let h2 = rt.spawn(|| panic!("dropped after finishing"));
        while !h2.is_finished() {
            std::thread::yield_now();
        }
        drop(h2);
        return;
    }
    let out = common::run_child("unjoined_failure_is_reported_on_stderr", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed: {stderr}");
    assert!(
        stderr.contains("greenlet 'forgotten'") && stderr.contains("failed with"),
        "{stderr}"
    );
    assert!(stderr.contains("nobody joins me"), "{stderr}");
    assert!(stderr.contains("dropped after finishing"), "{stderr}");
    // A joined failure is not reported twice: exactly the two lines above.
    assert_eq!(stderr.matches("failed with").count(), 2, "{stderr}");
}

#[test]
fn joining_yourself_is_an_error_not_a_hang() {
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    let (handle_tx, handle_rx) = std::sync::mpsc::channel::<grove::JoinHandle<()>>();
    let (result_tx, result_rx) = std::sync::mpsc::channel::<String>();
    let h = rt.spawn(move || {
        // Blocks the worker briefly (a std channel), which is fine in a test: the
        // handle is sent right after spawn returns.
        let me = handle_rx.recv().unwrap();
        let err = me.join().unwrap_err();
        assert!(err.is_self_join());
        result_tx.send(err.to_string()).unwrap();
    });
    handle_tx.send(h).unwrap();
    let msg = result_rx.recv().unwrap();
    assert!(msg.contains("tried to join itself"), "{msg}");
}
