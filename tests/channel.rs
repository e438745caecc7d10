//! `Channel`, the rendezvous. Follows gevent's `test__queue.py` TestChannel (send,
//! wait, zero max size, iterable, get_nowait unlock), the put_nowait/get_nowait cases
//! run on a Channel, and TestGetInterruptChannel / TestPutInterruptChannel; plus FIFO
//! fairness, close, cancellation mid-wait, cross-worker ping-pong with exact
//! accounting, and OS threads.
//!
//! Ordering between greenlets is arranged with `getting()` / `putting()` and
//! `yield_now`, never with sleeps.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use grove::queue::{Closed, GetTimeoutError, PutTimeoutError, TryGetError, TryPutError};
use grove::{queue::Channel, JoinHandle};

fn rt() -> grove::Runtime {
    grove::Runtime::builder().workers(2).build().unwrap()
}

/// One worker: greenlets run only when the running one blocks or yields.
fn rt1() -> grove::Runtime {
    grove::Runtime::builder().workers(1).build().unwrap()
}

const SHORT: Duration = Duration::from_millis(20);

/// Yields until `cond` holds (other greenlets make progress meanwhile).
fn until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        grove::yield_now();
    }
}

/// Spawns a greenlet blocked in `ch.get()`: yields until it is queued.
fn blocked_getter<T: Send + 'static>(ch: &Channel<T>) -> JoinHandle<Result<T, Closed>> {
    let (n, ch2) = (ch.getting(), ch.clone());
    let h = grove::spawn(move || ch2.get());
    until(|| ch.getting() == n + 1);
    h
}

/// Spawns a greenlet blocked in `ch.put(item)`: yields until it is queued.
fn blocked_putter<T: Send + 'static>(
    ch: &Channel<T>,
    item: T,
) -> JoinHandle<Result<(), Closed<T>>> {
    let (n, ch2) = (ch.putting(), ch.clone());
    let h = grove::spawn(move || ch2.put(item));
    until(|| ch.putting() == n + 1);
    h
}

/// test_send: `put` returns only once a getter has taken the item.
#[test]
fn put_waits_for_a_getter_to_take_the_item() {
    rt1().block_on(|| {
        let ch = Channel::new();
        let events = Arc::new(Mutex::new(Vec::new()));
        let receiver = {
            let (ch, events) = (ch.clone(), events.clone());
            grove::spawn(move || {
                for _ in 0..2 {
                    let item = ch.get().unwrap();
                    events.lock().unwrap().push(item);
                }
            })
        };
        events.lock().unwrap().push("sending");
        ch.put("hello").unwrap();
        events.lock().unwrap().push("sent hello");
        ch.put("world").unwrap();
        events.lock().unwrap().push("sent world");
        receiver.join().unwrap();
        let events = events.lock().unwrap();
        // `hello` is received before the sender goes on; `world` is handed to the
        // getter already waiting, so the sender may record first (grove hands over
        // without switching, unlike gevent).
        assert_eq!(events[..3], ["sending", "hello", "sent hello"]);
        let mut rest = events[3..].to_vec();
        rest.sort();
        assert_eq!(rest, ["sent world", "world"]);
    });
}

/// test_wait: `get` waits for a putter, who is released by the get.
#[test]
fn get_waits_for_a_putter() {
    rt1().block_on(|| {
        let ch = Channel::new();
        let sender = {
            let ch = ch.clone();
            grove::spawn(move || {
                ch.put("hello").unwrap();
                ch.put("world").unwrap();
                "sent world"
            })
        };
        assert_eq!(ch.get(), Ok("hello"));
        assert_eq!(ch.get(), Ok("world"));
        assert_eq!(sender.join().unwrap(), "sent world");
    });
}

/// test_zero_max_size: the sender blocks until a receiver comes.
#[test]
fn a_sender_blocks_until_a_receiver_comes() {
    rt().block_on(|| {
        let ch = Channel::new();
        let sender = blocked_putter(&ch, "hi");
        assert!(!sender.is_finished());
        let receiver = {
            let ch = ch.clone();
            grove::spawn(move || ch.get())
        };
        assert_eq!(receiver.join().unwrap(), Ok("hi"));
        assert_eq!(sender.join().unwrap(), Ok(()));
    });
}

/// test_iterable: iteration ends at close (gevent's StopIteration).
#[test]
fn iteration_ends_when_the_channel_is_closed() {
    rt().block_on(|| {
        let ch = Channel::new();
        let sender = {
            let ch = ch.clone();
            grove::spawn(move || {
                for i in 0..10 {
                    ch.put(i).unwrap();
                }
                ch.close();
            })
        };
        let got: Vec<i32> = ch.iter().collect();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        sender.join().unwrap();
        assert_eq!((&ch).into_iter().next(), None);
    });
}

/// test_put_nowait_simple on a Channel: with nobody getting, both fail with the item.
#[test]
fn try_put_without_a_getter_fails_with_the_item() {
    let ch = Channel::new();
    assert_eq!(ch.try_put(2), Err(TryPutError::Full(2)));
    assert_eq!(ch.try_put(3).unwrap_err().into_inner(), 3);
    assert_eq!(ch.try_get(), Err(TryGetError::Empty));
}

/// test_put_nowait_unlock on a Channel: a waiting getter takes it.
#[test]
fn try_put_hands_the_item_to_a_waiting_getter() {
    rt().block_on(|| {
        let ch = Channel::new();
        let getter = blocked_getter(&ch);
        assert_eq!(ch.try_put(10), Ok(()));
        assert_eq!(getter.join().unwrap(), Ok(10));
    });
}

/// test_get_nowait_unlock_channel: `try_get` takes a blocked putter's item.
#[test]
fn try_get_takes_the_item_of_a_waiting_putter() {
    rt().block_on(|| {
        let ch = Channel::new();
        let putter = blocked_putter(&ch, 5);
        assert_eq!(ch.try_get(), Ok(5));
        assert_eq!(putter.join().unwrap(), Ok(()));
        assert_eq!(ch.putting(), 0);
    });
}

/// TestGetInterruptChannel / TestPutInterruptChannel.
#[test]
fn get_and_put_time_out_and_a_timed_out_put_gives_the_item_back() {
    rt().block_on(|| {
        let ch = Channel::new();
        let t = Instant::now();
        assert_eq!(ch.get_timeout(SHORT), Err(GetTimeoutError::Timeout));
        assert!(t.elapsed() >= SHORT);
        let t = Instant::now();
        assert_eq!(ch.put_timeout(7, SHORT), Err(PutTimeoutError::Timeout(7)));
        assert!(t.elapsed() >= SHORT);
        assert!(grove::with_timeout(SHORT, || ch.get()).is_err());
        assert!(grove::with_timeout(SHORT, || ch.put(8)).is_err());
        assert_eq!((ch.getting(), ch.putting()), (0, 0));
        // Still a working channel.
        let ch2 = ch.clone();
        let g = grove::spawn(move || ch2.get());
        ch.put(9).unwrap();
        assert_eq!(g.join().unwrap(), Ok(9));
    });
}

#[test]
fn blocked_putters_and_getters_are_served_in_fifo_order() {
    rt().block_on(|| {
        let ch = Channel::new();
        let putters: Vec<_> = (0..6).map(|i| blocked_putter(&ch, i)).collect();
        let got: Vec<usize> = (0..6).map(|_| ch.get().unwrap()).collect();
        assert_eq!(got, [0, 1, 2, 3, 4, 5]);
        for p in putters {
            p.join().unwrap().unwrap();
        }
        let getters: Vec<_> = (0..6).map(|_| blocked_getter(&ch)).collect();
        for i in 0..6 {
            ch.put(i).unwrap();
        }
        let got: Vec<usize> = getters
            .into_iter()
            .map(|g| g.join().unwrap().unwrap())
            .collect();
        assert_eq!(got, [0, 1, 2, 3, 4, 5]);
    });
}

#[test]
fn close_releases_blocked_putters_with_their_items_and_getters_with_closed() {
    rt().block_on(|| {
        let ch: Channel<i32> = Channel::new();
        let getters: Vec<_> = (0..3).map(|_| blocked_getter(&ch)).collect();
        ch.close();
        for g in getters {
            assert_eq!(g.join().unwrap(), Err(Closed(())));
        }

        let ch = Channel::new();
        let putter = blocked_putter(&ch, "mine");
        ch.close();
        assert_eq!(putter.join().unwrap(), Err(Closed("mine")));
        assert_eq!(ch.put("later"), Err(Closed("later")));
        assert_eq!(ch.try_get(), Err(TryGetError::Closed));
        assert!(ch.is_closed());
    });
}

/// A getter handed an item and killed before it ran passes the item to the next one.
#[test]
fn a_getter_killed_after_being_handed_an_item_passes_it_on() {
    rt1().block_on(|| {
        let ch = Channel::new();
        let first = blocked_getter(&ch);
        let second = blocked_getter(&ch);
        ch.put("item").unwrap(); // handed to `first`, which has not run yet
        first.kill();
        assert!(first.join().unwrap_err().is_killed());
        assert_eq!(second.join().unwrap(), Ok("item"));

        // With nobody else waiting, the next get receives it.
        let only = blocked_getter(&ch);
        ch.put("again").unwrap();
        only.kill();
        assert_eq!(ch.try_get(), Ok("again"));
    });
}

/// Ping-pong over two channels, greenlets on different workers, with exact accounting.
#[test]
fn ping_pong_across_workers_delivers_every_item_in_order() {
    const ROUNDS: u64 = 20_000;
    rt().block_on(|| {
        let (ping, pong) = (Channel::new(), Channel::new());
        let echo = {
            let (ping, pong) = (ping.clone(), pong.clone());
            grove::spawn(move || {
                let mut n = 0;
                for v in &ping {
                    pong.put(v + 1).unwrap();
                    n += 1;
                }
                n
            })
        };
        for i in 0..ROUNDS {
            ping.put(i).unwrap();
            assert_eq!(pong.get(), Ok(i + 1));
        }
        ping.close();
        assert_eq!(echo.join().unwrap(), ROUNDS);
    });
}

#[test]
fn os_threads_and_greenlets_rendezvous_both_ways() {
    let rt = rt();
    let ch = Channel::new();
    let greenlet_getter = {
        let ch = ch.clone();
        rt.spawn(move || ch.iter().collect::<Vec<i32>>())
    };
    let thread_putter = {
        let ch = ch.clone();
        std::thread::spawn(move || {
            for i in 0..500 {
                ch.put(i).unwrap(); // blocks the thread until the greenlet takes it
            }
            ch.close();
        })
    };
    thread_putter.join().unwrap();
    assert_eq!(
        greenlet_getter.join().unwrap(),
        (0..500).collect::<Vec<_>>()
    );

    let ch = Channel::new();
    let greenlet_putter = {
        let ch = ch.clone();
        rt.spawn(move || (0..500).try_for_each(|i| ch.put(i)).map_err(|_| ()))
    };
    let got: Vec<i32> = (0..500).map(|_| ch.get().unwrap()).collect(); // blocks this thread
    assert_eq!(got, (0..500).collect::<Vec<_>>());
    greenlet_putter.join().unwrap().unwrap();
}
