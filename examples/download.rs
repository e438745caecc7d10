//! The concurrent downloader (gevent's `concurrent_download.py`): fetch 100 URLs, at most
//! 20 at a time, each with its own deadline.
//!
//! ```text
//! cargo run --release --example download
//! ```
//!
//! To need no network, it first starts its own HTTP server on loopback, built from
//! `examples/http_hello.rs`'s [`serve`](http_hello::serve) with a route that answers
//! `/N?delay=MS` with `N` bytes after `MS` milliseconds. Then a [`grove::pool::Pool`] of 20
//! downloads 100 such URLs with plain blocking code (connect, write the request, read to
//! end, parse with `httparse`), each inside [`grove::with_timeout`]: every tenth URL is
//! slow on purpose and times out. Outcomes print as they finish, then a total. Ends by
//! itself (Ctrl-C stops it early).

#[allow(dead_code, unreachable_pub)]
#[path = "http_hello.rs"]
mod http_hello;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use grove::net::TcpStream;
use grove::server::StreamServer;
use http_hello::Response;

/// URLs to fetch.
const URLS: u64 = 100;
/// Downloads at once.
const POOL: usize = 20;
/// Deadline of one download (connect, request, whole response).
const DEADLINE: Duration = Duration::from_secs(1);

/// The local server's route: `/N?delay=MS` answers `N` bytes after `MS` ms.
fn route(req: &httparse::Request<'_, '_>) -> Response {
    let path = req.path.unwrap_or("/");
    let (size, query) = path
        .trim_start_matches('/')
        .split_once('?')
        .unwrap_or((path.trim_start_matches('/'), ""));
    let delay: u64 = query
        .strip_prefix("delay=")
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    match size.parse::<usize>() {
        Ok(n) if n <= 1 << 20 => {
            grove::sleep(Duration::from_millis(delay));
            Response::ok(vec![b'x'; n])
        }
        _ => Response {
            status: 404,
            reason: "Not Found",
            body: b"try /1000?delay=50\n".to_vec(),
        },
    }
}

/// The `i`th URL's path: sizes from 1 KB to 64 KB; delays up to 300 ms, except every
/// tenth, which takes 3 s (past the deadline).
fn path(i: u64) -> String {
    let size = 1000 + i * 7919 % 64_000;
    let delay = if i % 10 == 7 { 3000 } else { i * 37 % 300 };
    format!("/{size}?delay={delay}")
}

/// Fetches `path` from `addr`: HTTP/1.1 with `Connection: close`, so the body is
/// everything after the head. Returns the status and the body's length.
fn get(addr: SocketAddr, path: &str) -> io::Result<(u16, usize)> {
    let mut conn = TcpStream::connect(addr)?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    conn.read_to_end(&mut buf)?;
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(&buf) {
        Ok(httparse::Status::Complete(head)) => Ok((resp.code.unwrap_or(0), buf.len() - head)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "incomplete HTTP response",
        )),
    }
}

fn main() -> io::Result<()> {
    grove::run(|| {
        let server = StreamServer::bind("127.0.0.1:0", |conn, _| {
            let _ = http_hello::serve(&conn, route);
        })?;
        server.start()?;
        let addr = server.local_addr();
        println!("local HTTP server on http://{addr}/ (try /1000?delay=50)");
        println!("downloading {URLS} URLs, {POOL} at a time, {DEADLINE:?} deadline each");

        let start = Instant::now();
        let pool = grove::pool::Pool::new(POOL);
        let outcomes = pool.imap_unordered(0..URLS, move |i| {
            let path = path(i);
            let t = Instant::now();
            let r = grove::with_timeout(DEADLINE, || get(addr, &path));
            (path, t.elapsed(), r)
        });
        let (mut ok, mut bytes, mut timed_out, mut failed) = (0, 0, 0, 0);
        for outcome in outcomes {
            let (path, took, r) = outcome.expect("a download greenlet failed");
            match r {
                Ok(Ok((status, n))) => {
                    ok += 1;
                    bytes += n;
                    println!("  {path:<22} {status} {n:>6} bytes in {took:>4.0?}");
                }
                Ok(Err(e)) => {
                    failed += 1;
                    println!("  {path:<22} failed: {e}");
                }
                Err(_) => {
                    timed_out += 1;
                    println!("  {path:<22} timed out after {took:.0?}");
                }
            }
        }
        println!(
            "{URLS} URLs in {:.2?}: {ok} downloaded ({bytes} bytes), {timed_out} timed out, {failed} failed",
            start.elapsed()
        );
        // The slow handlers are still sleeping: stop kills them.
        server.stop(Duration::from_millis(100));
        Ok(())
    })
}
