//! An HTTP/1.1 keep-alive server answering "Hello, World!": third-party synchronous code
//! (the `httparse` crate, `BufReader`, `BufWriter`) running unchanged over green sockets —
//! Rust's answer to gevent's monkey-patching.
//!
//! ```text
//! cargo run --release --example http_hello               # 127.0.0.1:8080 (or a free port)
//! curl -v http://127.0.0.1:8080/
//! wrk -c 100 -d 10 http://127.0.0.1:8080/
//! ```
//!
//! Keep-alive is HTTP/1.1's default (HTTP/1.0 needs `Connection: keep-alive`);
//! `Connection: close` ends the connection after the response. Pipelined requests are
//! answered in order, and responses to requests that arrived together are written
//! together (one flush per batch). Ctrl-C to stop.
//!
//! [`serve`] takes the routing function, so `examples/download.rs` reuses it for its own
//! test server.

use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::SocketAddr;

use grove::net::TcpStream;
use grove::server::StreamServer;

/// The address tried when none is given on the command line.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
/// Most bytes of request head (and body) buffered before answering 431 and closing.
pub const MAX_REQUEST: usize = 64 * 1024;
/// Most headers per request.
const MAX_HEADERS: usize = 64;

/// What a route answers.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Reason phrase, e.g. "OK".
    pub reason: &'static str,
    /// The body (sent with `Content-Length`).
    pub body: Vec<u8>,
}

impl Response {
    /// A `200 OK` with `body`.
    pub fn ok(body: impl Into<Vec<u8>>) -> Response {
        Response {
            status: 200,
            reason: "OK",
            body: body.into(),
        }
    }
}

/// The route of this example: "Hello, World!" whatever the request.
pub fn hello(_req: &httparse::Request<'_, '_>) -> Response {
    Response::ok("Hello, World!")
}

/// Whether the connection stays open after answering `req`.
fn keep_alive(req: &httparse::Request<'_, '_>) -> bool {
    let conn = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("connection"))
        .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase());
    match (req.version, conn.as_deref()) {
        (_, Some(v)) if v.contains("close") => false,
        (Some(1), _) => true,
        (_, Some(v)) => v.contains("keep-alive"),
        _ => false,
    }
}

fn header<'a>(req: &'a httparse::Request<'_, '_>, name: &str) -> Option<&'a [u8]> {
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

fn write_response(
    out: &mut impl Write,
    resp: &Response,
    head_only: bool,
    close: bool,
) -> io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {} {}\r\nServer: grove\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
        resp.status,
        resp.reason,
        resp.body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )?;
    if !head_only {
        out.write_all(&resp.body)?;
    }
    Ok(())
}

/// Serves HTTP/1.1 requests on `conn` until the client closes, asks to close, or sends
/// something unparsable (answered 400) or too large (431), answering each with `route`.
pub fn serve<F>(conn: &TcpStream, route: F) -> io::Result<()>
where
    F: Fn(&httparse::Request<'_, '_>) -> Response,
{
    let mut reader = BufReader::new(conn);
    let mut writer = BufWriter::new(conn);
    // Bytes received but not yet parsed: may hold a partial request, or several
    // (pipelining).
    let mut pending: Vec<u8> = Vec::new();
    loop {
        // 1. Answer every complete request already received.
        loop {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            let head_len = match req.parse(&pending) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => break,
                Err(_) => {
                    let bad = Response {
                        status: 400,
                        reason: "Bad Request",
                        body: b"bad request\n".to_vec(),
                    };
                    write_response(&mut writer, &bad, false, true)?;
                    return writer.flush();
                }
            };
            if header(&req, "transfer-encoding").is_some() {
                let no = Response {
                    status: 501,
                    reason: "Not Implemented",
                    body: b"chunked request bodies are not supported\n".to_vec(),
                };
                write_response(&mut writer, &no, false, true)?;
                return writer.flush();
            }
            let body_len: usize = header(&req, "content-length")
                .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
                .unwrap_or(0);
            let total = head_len.saturating_add(body_len);
            if pending.len() < total {
                break; // the body is still coming (or too large: see below)
            }
            let close = !keep_alive(&req);
            let head_only = req.method == Some("HEAD");
            let resp = route(&req);
            write_response(&mut writer, &resp, head_only, close)?;
            pending.drain(..total);
            if close {
                return writer.flush();
            }
        }
        if pending.len() > MAX_REQUEST {
            let big = Response {
                status: 431,
                reason: "Request Header Fields Too Large",
                body: b"request too large\n".to_vec(),
            };
            write_response(&mut writer, &big, false, true)?;
            return writer.flush();
        }
        // 2. Nothing complete is left: send the batch of answers, then read more.
        writer.flush()?;
        let got = reader.fill_buf()?;
        if got.is_empty() {
            return Ok(()); // the client closed
        }
        pending.extend_from_slice(got);
        let n = got.len();
        reader.consume(n);
    }
}

/// The [`StreamServer`] handler: [`serve`] with the [`hello`] route.
pub fn handle(conn: TcpStream, _peer: SocketAddr) {
    let _ = conn.set_nodelay(true);
    let _ = serve(&conn, hello);
}

/// Binds the server to `addr`, or to a free port if `addr` is taken.
pub fn bind(addr: &str) -> io::Result<StreamServer> {
    StreamServer::bind(addr, handle).or_else(|e| {
        let host = addr.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
        eprintln!("http_hello: cannot bind {addr} ({e}); using a free port instead");
        StreamServer::bind(format!("{host}:0"), handle)
    })
}

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDR.to_string());
    grove::run(move || {
        let server = bind(&addr)?;
        let at = server.local_addr();
        println!("HTTP server listening on http://{at}/");
        println!(
            "try: curl -v http://{at}/   or: wrk -c 100 -d 10 http://{at}/    (Ctrl-C to stop)"
        );
        server.serve_forever()
    })
}
