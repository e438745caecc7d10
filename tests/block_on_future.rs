//! `grove::block_on` runs a future inside a greenlet, parking it (not its worker)
//! until the future's waker fires — here from another OS thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[test]
fn future_woken_from_another_thread() {
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    let (tx, rx) = futures_channel::oneshot::channel::<u32>();
    let h = rt.spawn(move || grove::block_on(rx).unwrap());
    let sender = std::thread::spawn(move || tx.send(99).unwrap());
    sender.join().unwrap();
    assert_eq!(h.join().unwrap(), 99);
}

#[test]
fn blocked_future_does_not_block_the_worker() {
    let rt = grove::Runtime::builder().workers(1).build().unwrap();
    let (tx, rx) = futures_channel::oneshot::channel::<u32>();
    let progress = Arc::new(AtomicUsize::new(0));
    let p2 = progress.clone();
    let waiting = rt.spawn(move || grove::block_on(rx).unwrap());
    // On the same single worker, another greenlet completes and sends the value.
    let sender = rt.spawn(move || {
        for _ in 0..10 {
            p2.fetch_add(1, Ordering::SeqCst);
            grove::yield_now();
        }
        tx.send(7).unwrap();
    });
    sender.join().unwrap();
    assert_eq!(waiting.join().unwrap(), 7);
    assert_eq!(progress.load(Ordering::SeqCst), 10);
}

#[test]
fn many_futures_from_many_greenlets() {
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let mut senders = Vec::new();
    let mut hs = Vec::new();
    for i in 0..1000u32 {
        let (tx, rx) = futures_channel::oneshot::channel::<u32>();
        senders.push((i, tx));
        hs.push(rt.spawn(move || grove::block_on(rx).unwrap() + 1));
    }
    let t = std::thread::spawn(move || {
        for (i, tx) in senders.into_iter().rev() {
            tx.send(i).unwrap();
        }
    });
    t.join().unwrap();
    let sum: u32 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(sum, (1..=1000).sum());
}

#[test]
fn block_on_works_on_a_plain_thread_too() {
    let (tx, rx) = futures_channel::oneshot::channel::<&str>();
    let t = std::thread::spawn(move || tx.send("hi").unwrap());
    assert_eq!(grove::block_on(rx).unwrap(), "hi");
    t.join().unwrap();
}
