//! The unmodified synchronous `redis` client against a real `redis-server`, from
//! greenlets: every call parks the greenlet, never the worker.

mod common;

use std::time::Duration;

use common::{rt, within, RedisServer};
use redis::Commands;

#[test]
fn sync_redis_client_from_200_greenlets_on_2_workers() {
    let server = RedisServer::start();
    let url = server.url();
    within(Duration::from_secs(120), "redis", move || {
        let rt = rt(2);
        rt.block_on(move || {
            let client = redis::Client::open(url).unwrap();
            let hs: Vec<_> = (0..200)
                .map(|i| {
                    let client = client.clone();
                    grove::spawn(move || {
                        let mut con = client.get_connection().unwrap();
                        for j in 0..50 {
                            let key = format!("k{i}:{j}");
                            let _: () = con.set(&key, i * 1000 + j).unwrap();
                            let v: i64 = con.get(&key).unwrap();
                            assert_eq!(v, i * 1000 + j);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        });
    });
}

/// On ONE worker: a greenlet blocks in BLPOP (the server holds the reply) while another
/// greenlet of the same worker pushes the value. A thread-blocking client deadlocks.
#[test]
fn blpop_waits_green_while_a_peer_greenlet_pushes() {
    let server = RedisServer::start();
    let url = server.url();
    within(Duration::from_secs(60), "blpop", move || {
        let rt = rt(1);
        rt.block_on(move || {
            let client = redis::Client::open(url).unwrap();
            let c2 = client.clone();
            let popper = grove::spawn(move || {
                let mut con = c2.get_connection().unwrap();
                let v: (String, String) = con.blpop("grove-q", 30.0).unwrap();
                v.1
            });
            let mut con = client.get_connection().unwrap();
            // Push only once the popper waits in BLPOP (the server says so).
            loop {
                let info: String = redis::cmd("INFO").arg("clients").query(&mut con).unwrap();
                if info.contains("blocked_clients:1") {
                    break;
                }
                grove::sleep(Duration::from_millis(5));
            }
            let _: () = con.lpush("grove-q", "hello").unwrap();
            assert_eq!(popper.join().unwrap(), "hello");
        });
    });
}
