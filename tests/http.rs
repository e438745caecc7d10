//! "Third-party sync code over green sockets": the `http_hello` example (httparse over
//! `BufReader`/`BufWriter` on a green `TcpStream`) answers keep-alive, pipelined and
//! `Connection: close` requests from a plain std client.

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/http_hello.rs"]
mod http_hello;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(10);

/// Reads one response: the status line and the body (by `Content-Length`).
fn response(r: &mut BufReader<TcpStream>) -> (String, Vec<(String, String)>, String) {
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap();
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    (
        status.trim_end().to_string(),
        headers,
        String::from_utf8(body).unwrap(),
    )
}

/// Runs `client` (plain blocking std code, on this OS thread) against the example server.
fn with_server(client: impl FnOnce(std::net::SocketAddr)) {
    let rt = grove::Runtime::builder().workers(2).build().unwrap();
    let server = rt.block_on(|| {
        let s = http_hello::server_with("127.0.0.1:0", http_hello::Limits::DEFAULT).unwrap();
        s.start().unwrap();
        s
    });
    client(server.local_addr());
    assert!(rt.block_on(move || server.stop(PATIENCE)));
}

#[test]
fn keep_alive_then_connection_close() {
    with_server(|addr| {
        let conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut w = conn.try_clone().unwrap();
        let mut r = BufReader::new(conn);
        for _ in 0..2 {
            w.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let (status, headers, body) = response(&mut r);
            assert_eq!(status, "HTTP/1.1 200 OK");
            assert_eq!(body, "Hello, World!");
            assert!(!headers.iter().any(|(k, _)| k == "connection"));
        }
        w.write_all(b"GET /bye HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let (status, headers, body) = response(&mut r);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, "Hello, World!");
        assert!(headers.contains(&("connection".into(), "close".into())));
        let mut rest = Vec::new();
        assert_eq!(r.read_to_end(&mut rest).unwrap(), 0, "server closed");
    });
}

#[test]
fn pipelined_requests_with_bodies_are_answered_in_order() {
    with_server(|addr| {
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        // Three requests in one write, one with a body the server must skip, the last
        // closing; written in two pieces split inside a header.
        let all = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
                    POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
                    HEAD /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        conn.write_all(&all[..40]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        conn.write_all(&all[40..]).unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        assert_eq!(got.matches("HTTP/1.1 200 OK").count(), 3, "{got}");
        // HEAD: headers only.
        assert_eq!(got.matches("Hello, World!").count(), 2, "{got}");
        assert!(got.ends_with("Connection: close\r\n\r\n"), "{got}");
    });
}

#[test]
fn http_1_0_closes_and_garbage_gets_400() {
    with_server(|addr| {
        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        conn.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n") && got.ends_with("Hello, World!"));

        let mut conn = TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        conn.write_all(b"NOT HTTP AT ALL\r\n\r\n").unwrap();
        let mut got = String::new();
        conn.read_to_string(&mut got).unwrap();
        assert!(got.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{got}");
    });
}
