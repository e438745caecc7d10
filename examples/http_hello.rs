//! An HTTP/1.1 keep-alive server answering "Hello, World!": third-party synchronous code
//! (the `httparse` crate, `BufReader`, `BufWriter`) running unchanged over green sockets —
//! Rust's answer to gevent's monkey-patching — and strict where request smuggling and
//! slow clients live, so that [`serve`] can be copied.
//!
//! ```text
//! cargo run --release --example http_hello               # 127.0.0.1:8080 (or a free port)
//! curl -v http://127.0.0.1:8080/
//! wrk -c 100 -d 10 http://127.0.0.1:8080/
//! ```
//!
//! Ctrl-C (or SIGTERM) stops accepting, lets requests in flight finish (up to 5 s) and
//! prints what it drained.
//!
//! # What it accepts (RFC 9112)
//!
//! * **Keep-alive**: HTTP/1.1's default; `Connection: close` ends the connection after the
//!   response. HTTP/1.0 closes unless it sends `Connection: keep-alive`, which is then
//!   answered with `Connection: keep-alive` (clients such as `ab -k` wait for it).
//! * **Pipelining**: requests are answered in order; responses to requests that arrived
//!   together are written together (one flush per batch).
//! * **Framing**: a body only by one `Content-Length` of digits (at most [`MAX_BODY`]
//!   bytes). Anything else that frames a body is refused *and the connection closed*, so
//!   nothing after it can be read as a second request (smuggling): a `Content-Length`
//!   that is not `1*DIGIT` (`-5`, `1e3`, `+5`, `2^70`, empty) or appears twice → 400;
//!   `Transfer-Encoding` with `Content-Length` → 400; `Transfer-Encoding` alone → 501 (no
//!   chunked bodies here). A body larger than [`MAX_BODY`] → 413 at once (nothing waits
//!   for it); a head larger than [`MAX_HEAD`] → 431; an HTTP/1.1 request without exactly
//!   one `Host` → 400; a version other than 1.0/1.1 → 505; anything unparsable → 400.
//! * **Slow clients**: a connection must send its first byte within
//!   [`Limits::header_timeout`] (the server's `first_bytes_timeout`), each request's head
//!   must arrive within [`Limits::header_timeout`] of its first byte and its body within
//!   [`Limits::body_timeout`] (a client trickling a byte at a time is answered 408 and
//!   closed: slowloris), and an idle keep-alive connection is closed after
//!   [`Limits::idle_timeout`]. Every write waits at most `idle_timeout` (a client that
//!   never reads its responses).
//!
//! [`serve`] takes the routing function, so `examples/download.rs` reuses it for its own
//! test server.

use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use grove::net::TcpStream;
use grove::server::StreamServer;

/// The address tried when none is given on the command line.
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
/// Most bytes of request head (request line and headers) before answering 431.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted; a larger `Content-Length` is answered 413.
pub const MAX_BODY: usize = 1024 * 1024;
/// Most headers per request (more: 431).
const MAX_HEADERS: usize = 64;
/// How long `stop` lets requests in flight finish on Ctrl-C.
const GRACE: Duration = Duration::from_secs(5);

/// The time limits of a connection (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From a request's first byte to the end of its head (and for a connection's
    /// first byte).
    pub header_timeout: Duration,
    /// From the end of a request's head to the end of its body.
    pub body_timeout: Duration,
    /// Between requests on a keep-alive connection, and for each write.
    pub idle_timeout: Duration,
}

impl Limits {
    /// The example's limits: nginx's defaults, about.
    pub const DEFAULT: Limits = Limits {
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
    };
}

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

    fn error(status: u16, reason: &'static str, why: &str) -> Response {
        Response {
            status,
            reason,
            body: format!("{why}\n").into_bytes(),
        }
    }
}

/// The route of this example: "Hello, World!" whatever the request.
pub fn hello(_req: &httparse::Request<'_, '_>) -> Response {
    Response::ok("Hello, World!")
}

/// The values of every header called `name`.
fn headers<'r>(
    req: &'r httparse::Request<'_, '_>,
    name: &'r str,
) -> impl Iterator<Item = &'r [u8]> + 'r {
    req.headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// Whether some `Connection` header lists `token`.
fn connection_has(req: &httparse::Request<'_, '_>, token: &str) -> bool {
    headers(req, "connection").any(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// How the connection goes on after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// HTTP/1.1 keep-alive: nothing to say.
    KeepAlive,
    /// HTTP/1.0 keep-alive: say `Connection: keep-alive`.
    KeepAliveAnnounced,
    /// Say `Connection: close`, then close.
    Close,
}

fn after(req: &httparse::Request<'_, '_>) -> After {
    match req.version {
        _ if connection_has(req, "close") => After::Close,
        Some(1) => After::KeepAlive,
        _ if connection_has(req, "keep-alive") => After::KeepAliveAnnounced,
        _ => After::Close,
    }
}

/// The body length a request's head announces, or the response refusing it.
fn body_length(req: &httparse::Request<'_, '_>) -> Result<usize, Response> {
    let bad = |why: &str| Response::error(400, "Bad Request", why);
    if req.version == Some(1) && headers(req, "host").count() != 1 {
        return Err(bad("an HTTP/1.1 request needs exactly one Host header"));
    }
    let mut lengths = headers(req, "content-length");
    let length = lengths.next();
    if lengths.next().is_some() {
        return Err(bad("more than one Content-Length"));
    }
    if headers(req, "transfer-encoding").next().is_some() {
        return Err(if length.is_some() {
            bad("Transfer-Encoding together with Content-Length")
        } else {
            Response::error(
                501,
                "Not Implemented",
                "chunked request bodies are not supported",
            )
        });
    }
    let Some(v) = length else { return Ok(0) };
    let v = v.trim_ascii();
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(bad("Content-Length is not a number of digits"));
    }
    // All digits: only its size can make it unparsable.
    match std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        Some(n) if n <= MAX_BODY => Ok(n),
        _ => Err(Response::error(
            413,
            "Content Too Large",
            "request body too large",
        )),
    }
}

/// The response to a head httparse refused.
fn parse_error(e: httparse::Error, pending: &[u8]) -> Response {
    match e {
        httparse::Error::TooManyHeaders => Response::error(
            431,
            "Request Header Fields Too Large",
            "too many header fields",
        ),
        httparse::Error::Version if names_a_version(pending) => Response::error(
            505,
            "HTTP Version Not Supported",
            "only HTTP/1.0 and HTTP/1.1 are spoken here",
        ),
        _ => Response::error(400, "Bad Request", "bad request"),
    }
}

/// Whether the request line ends in a well-formed `HTTP/d.d` (so a refused version is
/// an unsupported one, not garbage).
fn names_a_version(pending: &[u8]) -> bool {
    let line = pending.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let v = line.rsplit(|&b| b == b' ').next().unwrap_or(&[]);
    v.len() == 8
        && v.starts_with(b"HTTP/")
        && v[5].is_ascii_digit()
        && v[6] == b'.'
        && v[7].is_ascii_digit()
}

fn write_response(
    out: &mut impl Write,
    resp: &Response,
    head_only: bool,
    after: After,
) -> io::Result<()> {
    let connection = match after {
        After::KeepAlive => "",
        After::KeepAliveAnnounced => "Connection: keep-alive\r\n",
        After::Close => "Connection: close\r\n",
    };
    write!(
        out,
        "HTTP/1.1 {} {}\r\nServer: grove\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{connection}\r\n",
        resp.status,
        resp.reason,
        resp.body.len(),
    )?;
    if !head_only {
        out.write_all(&resp.body)?;
    }
    Ok(())
}

/// Serves HTTP/1.x requests on `conn` with [`Limits::DEFAULT`], answering each with
/// `route`, until the client closes, asks to close, idles out, or sends something the
/// module docs refuse (answered with its status, then closed).
pub fn serve<F>(conn: &TcpStream, route: F) -> io::Result<()>
where
    F: Fn(&httparse::Request<'_, '_>) -> Response,
{
    serve_with(conn, &Limits::DEFAULT, route)
}

/// [`serve`] with other limits.
pub fn serve_with<F>(conn: &TcpStream, limits: &Limits, route: F) -> io::Result<()>
where
    F: Fn(&httparse::Request<'_, '_>) -> Response,
{
    let mut reader = BufReader::new(conn);
    let mut writer = BufWriter::new(conn);
    // Bytes received but not yet answered: a partial request, or several (pipelining).
    let mut pending: Vec<u8> = Vec::new();
    // When the request at the front of `pending` must be complete; `None` while idle.
    let mut deadline: Option<Instant> = None;
    // Whether the socket's read timeout is the idle one (set only on a change).
    let mut idle_timeout_set = false;
    loop {
        // 1. Answer every complete request already received.
        let mut head_complete = false;
        loop {
            let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut hs);
            let head_len = match req.parse(&pending) {
                Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
                Ok(httparse::Status::Complete(_)) => return refuse(&mut writer, &head_too_large()),
                Ok(httparse::Status::Partial) => break,
                Err(e) => return refuse(&mut writer, &parse_error(e, &pending)),
            };
            let total = match body_length(&req) {
                Ok(n) => head_len + n,
                Err(resp) => return refuse(&mut writer, &resp),
            };
            if pending.len() < total {
                head_complete = true;
                break; // the body is still coming
            }
            let after = after(&req);
            let resp = route(&req);
            write_response(&mut writer, &resp, req.method == Some("HEAD"), after)?;
            pending.drain(..total);
            deadline = None;
            if after == After::Close {
                return writer.flush();
            }
        }
        if !head_complete && pending.len() > MAX_HEAD {
            return refuse(&mut writer, &head_too_large());
        }
        // 2. Nothing complete is left: send the batch of answers, then read more, within
        // the request's deadline (or the idle timeout between requests).
        writer.flush()?;
        if pending.is_empty() {
            if !idle_timeout_set {
                conn.set_read_timeout(Some(limits.idle_timeout))?;
                idle_timeout_set = true;
            }
        } else {
            let limit = if head_complete {
                limits.body_timeout
            } else {
                limits.header_timeout
            };
            let d = *deadline.get_or_insert_with(|| Instant::now() + limit);
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return refuse(&mut writer, &timeout_response());
            }
            conn.set_read_timeout(Some(left))?;
            idle_timeout_set = false;
        }
        let got = match reader.fill_buf() {
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                // Idle keep-alive connections just close; a request cut short gets 408.
                if pending.is_empty() {
                    return Ok(());
                }
                return refuse(&mut writer, &timeout_response());
            }
            Err(e) => return Err(e),
        };
        if got.is_empty() {
            return Ok(()); // the client closed
        }
        pending.extend_from_slice(got);
        let n = got.len();
        reader.consume(n);
    }
}

fn head_too_large() -> Response {
    Response::error(
        431,
        "Request Header Fields Too Large",
        "request head too large",
    )
}

fn timeout_response() -> Response {
    Response::error(408, "Request Timeout", "request not received in time")
}

/// Answers `resp` with `Connection: close`; the caller then returns, which closes.
fn refuse(writer: &mut impl Write, resp: &Response) -> io::Result<()> {
    write_response(writer, resp, false, After::Close)?;
    writer.flush()
}

/// The [`StreamServer`] handler with `limits`: [`serve_with`] and the [`hello`] route.
pub fn handler(limits: Limits) -> impl Fn(TcpStream, SocketAddr) + Send + Sync + 'static {
    move |conn, _peer| {
        let _ = conn.set_nodelay(true);
        let _ = serve_with(&conn, &limits, hello);
    }
}

/// The server on `listener`-to-be `addr`, with the connection limits of `limits` set as
/// server options (so even a handler that forgets them is bounded).
pub fn server_with(addr: &str, limits: Limits) -> io::Result<StreamServer> {
    Ok(StreamServer::bind(addr, handler(limits))?
        .first_bytes_timeout(limits.header_timeout)
        .read_timeout(limits.idle_timeout)
        .write_timeout(limits.idle_timeout))
}

/// Binds the server to `addr`, or to a free port if `addr` is taken.
pub fn bind(addr: &str) -> io::Result<StreamServer> {
    server_with(addr, Limits::DEFAULT).or_else(|e| {
        let host = addr.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
        eprintln!("http_hello: cannot bind {addr} ({e}); using a free port instead");
        server_with(&format!("{host}:0"), Limits::DEFAULT)
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
        let report = server.serve_until_signal(GRACE)?;
        println!("http_hello: {report}");
        Ok(())
    })
}
