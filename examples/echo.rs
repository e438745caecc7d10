//! The echo server: every byte a client sends comes back (gevent's `echoserver.py`),
//! one greenlet per connection on [`grove::server::StreamServer`].
//!
//! ```text
//! cargo run --release --example echo               # 127.0.0.1:7000 (or a free port)
//! cargo run --release --example echo 127.0.0.1:9000
//! ```
//!
//! Then connect with `nc 127.0.0.1 7000` (or `telnet`), type lines, see them echoed.
//! Ctrl-C (or SIGTERM) stops accepting, gives open connections 5 s to close, closes the
//! rest and prints what it drained. A connection idle for 5 minutes is closed.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use grove::net::TcpStream;
use grove::server::StreamServer;

/// The address tried when none is given on the command line.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7000";
/// How long a connection may stay silent (each read waits at most this long).
pub const IDLE: Duration = Duration::from_secs(300);
/// How long `stop` lets connections finish on Ctrl-C.
const GRACE: Duration = Duration::from_secs(5);

/// Copies everything the client sends back to it, until it closes its side. Ordinary
/// blocking code: each `read` and `write` parks only this connection's greenlet.
pub fn handle(conn: TcpStream, _peer: SocketAddr) {
    let _ = io::copy(&mut &conn, &mut &conn);
}

/// Binds the echo server to `addr`, or to a free port of the same host if `addr` is
/// taken (so a second copy of the example still starts).
pub fn bind(addr: &str) -> io::Result<StreamServer> {
    let server = StreamServer::bind(addr, handle).or_else(|e| {
        let host = addr.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
        eprintln!("echo: cannot bind {addr} ({e}); using a free port instead");
        StreamServer::bind(format!("{host}:0"), handle)
    })?;
    Ok(server.read_timeout(IDLE).write_timeout(IDLE))
}

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDR.to_string());
    grove::run(move || {
        let server = bind(&addr)?;
        let at = server.local_addr();
        println!("echo server listening on {at}");
        println!(
            "connect with: nc {} {}    (Ctrl-C to stop)",
            at.ip(),
            at.port()
        );
        let report = server.serve_until_signal(GRACE)?;
        println!("echo: {report}");
        Ok(())
    })
}
