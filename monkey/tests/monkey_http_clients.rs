//! Unmodified blocking HTTP clients — `ureq` (Rust over std::net) and libcurl through
//! the `curl` crate (C over libc sockets, the pitfall gevent could not close) — fetch
//! from grove's own HTTP server running on the SAME single worker: a client that
//! blocked its thread would deadlock.

mod common;

use std::time::Duration;

use common::{http_server, rt, within};

#[test]
fn ureq_fetches_from_a_grove_server_on_the_same_worker() {
    within(Duration::from_secs(60), "ureq", || {
        let rt = rt(1);
        rt.block_on(|| {
            let server = http_server();
            let base = format!("http://{}", server.local_addr());
            let hs: Vec<_> = (0..100)
                .map(|i| {
                    let base = base.clone();
                    grove::spawn(move || {
                        let agent = ureq::AgentBuilder::new()
                            .timeout(Duration::from_secs(30))
                            .build();
                        for j in 0..5 {
                            let body = agent
                                .get(&format!("{base}/u{i}/{j}"))
                                .call()
                                .unwrap()
                                .into_string()
                                .unwrap();
                            assert_eq!(body, format!("hello /u{i}/{j}"));
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            server.stop(Duration::from_secs(5));
        });
    });
}

fn curl_get(url: &str) -> String {
    let mut easy = curl::easy::Easy::new();
    easy.url(url).unwrap();
    easy.timeout(Duration::from_secs(30)).unwrap();
    let mut body = Vec::new();
    {
        let mut t = easy.transfer();
        t.write_function(|d| {
            body.extend_from_slice(d);
            Ok(d.len())
        })
        .unwrap();
        t.perform().unwrap();
    }
    assert_eq!(easy.response_code().unwrap(), 200);
    String::from_utf8(body).unwrap()
}

#[test]
fn libcurl_easy_fetches_from_a_grove_server_on_the_same_worker() {
    within(Duration::from_secs(60), "curl", || {
        let rt = rt(1);
        rt.block_on(|| {
            let server = http_server();
            let base = format!("http://{}", server.local_addr());
            let hs: Vec<_> = (0..50)
                .map(|i| {
                    let base = base.clone();
                    grove::spawn(move || {
                        for j in 0..3 {
                            assert_eq!(
                                curl_get(&format!("{base}/c{i}/{j}")),
                                format!("hello /c{i}/{j}")
                            );
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            server.stop(Duration::from_secs(5));
        });
    });
}
