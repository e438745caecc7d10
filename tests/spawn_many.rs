//! 100,000 greenlets spawned and joined; ids are unique; the runtime ends idle.

use std::collections::HashSet;

use grove::greenlet::GreenletBuilder;

#[test]
fn hundred_thousand_greenlets_spawned_and_joined() {
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let n = 100_000u64;
    let (sum, ids) = rt.block_on(move || {
        let hs: Vec<_> = (0..n).map(|i| grove::spawn(move || i)).collect();
        let ids: HashSet<u64> = hs.iter().map(|h| h.id()).collect();
        let sum: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        (sum, ids.len())
    });
    assert_eq!(sum, n * (n - 1) / 2);
    assert_eq!(ids, n as usize);
    assert_eq!(rt.handle().live_greenlets(), 0);
}

#[test]
fn greenlets_that_park_and_yield_all_finish() {
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let total = rt.block_on(|| {
        let hs: Vec<_> = (0..10_000u64)
            .map(|i| {
                grove::spawn(move || {
                    grove::yield_now();
                    let inner = grove::spawn(move || i * 2);
                    grove::yield_now();
                    inner.join().unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    assert_eq!(total, 2 * (10_000 * 9_999 / 2));
}

#[test]
fn named_greenlets_report_their_name() {
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    let (name, id_matches) = rt.block_on(|| {
        let h = GreenletBuilder::new().name("conn-7").spawn(|| {
            let me = grove::current();
            (me.name().map(str::to_owned), me.id())
        });
        let id = h.id();
        assert_eq!(h.name(), Some("conn-7"));
        let (name, inner_id) = h.join().unwrap();
        (name, inner_id == id)
    });
    assert_eq!(name.as_deref(), Some("conn-7"));
    assert!(id_matches);
}
