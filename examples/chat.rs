//! A chat server (gevent's classic chat demo): a name prompt, every line broadcast to the
//! other users, join and leave notices.
//!
//! ```text
//! cargo run --release --example chat               # 127.0.0.1:7001 (or a free port)
//! cargo run --release --example chat 127.0.0.1:9001
//! ```
//!
//! Connect from several terminals with `nc 127.0.0.1 7001`, answer the name prompt, type.
//! `/quit` (or closing the connection) leaves. Ctrl-C (or SIGTERM) stops the server: it
//! stops accepting, gives the users 5 s to leave, disconnects the rest and says so.
//!
//! Each user has two greenlets: the connection's handler *reads* lines and broadcasts
//! them; a *writer* greenlet drains the user's [`grove::queue::Queue`] onto the socket. Nothing
//! ever writes to a socket but its writer. A name already taken is refused and the prompt
//! repeated.
//!
//! # Bounded input, and slow readers
//!
//! * **Line length**: a line (name or message) longer than [`MAX_LINE`] bytes is refused
//!   with a notice and the connection closed; the server never buffers more than that
//!   per connection, whatever a client sends.
//! * **Slow readers**: each user's queue holds [`BACKLOG`] lines. A line for a user whose
//!   queue is full *waits* — the sender slows down to that reader's pace — for at most
//!   the room's slow-reader timeout ([`SLOW_READER`] by default); a reader still that far
//!   behind is disconnected (and the others told it left). So no line is ever dropped
//!   for a user who keeps up, bursts included, and the memory held for a user is at most
//!   [`BACKLOG`] × [`MAX_LINE`] bytes (a broadcast line is one shared allocation, not a
//!   copy per user). Each write also times out after that long (the server's
//!   `write_timeout`), which disconnects a user whose socket stopped draining.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grove::net::TcpStream;
use grove::queue::Queue;
use grove::queue::{PutTimeoutError, TryPutError};
use grove::server::StreamServer;

/// The address tried when none is given on the command line.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7001";
/// Lines queued for one user before senders wait for that user.
pub const BACKLOG: usize = 256;
/// Longest line accepted, in bytes (without its newline).
pub const MAX_LINE: usize = 4096;
/// How long a sender waits for a user whose queue is full before disconnecting that
/// user; also the server's write timeout.
pub const SLOW_READER: Duration = Duration::from_secs(5);
/// The prompt, sent on connecting and after a refused name.
pub const PROMPT: &str = "What is your name?\n";
/// How long a leaving user's writer may take to flush what is queued.
const FLUSH: Duration = Duration::from_secs(5);
/// How long `stop` waits for users to leave on Ctrl-C.
const GRACE: Duration = Duration::from_secs(5);

/// One user online: the outgoing queue and the connection (to disconnect a slow reader).
#[derive(Debug)]
struct User {
    queue: Queue<Arc<str>>,
    conn: TcpStream,
}

/// The users online, and the room's slow-reader policy.
#[derive(Debug)]
pub struct Room {
    // A std mutex is fine: it is never held across a blocking call.
    users: Mutex<HashMap<String, Arc<User>>>,
    slow_reader: Duration,
}

impl Room {
    /// An empty room with the default slow-reader timeout ([`SLOW_READER`]).
    pub fn new() -> Arc<Room> {
        Room::with_slow_reader(SLOW_READER)
    }

    /// An empty room whose senders wait at most `timeout` for a user with a full queue
    /// before disconnecting that user.
    pub fn with_slow_reader(timeout: Duration) -> Arc<Room> {
        Arc::new(Room {
            users: Mutex::default(),
            slow_reader: timeout,
        })
    }

    /// Names online, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.users.lock().unwrap().keys().cloned().collect();
        v.sort();
        v
    }

    /// Claims `name`, returning the new user; `None` if the name is taken.
    fn enter(&self, name: &str, conn: &TcpStream) -> Option<Arc<User>> {
        let mut users = self.users.lock().unwrap();
        if users.contains_key(name) {
            return None;
        }
        let user = Arc::new(User {
            queue: Queue::bounded(BACKLOG),
            conn: conn.clone(),
        });
        users.insert(name.to_string(), user.clone());
        Some(user)
    }

    /// Takes `user` out of the room (if still in it under `name`); true if it was.
    fn remove(&self, name: &str, user: &Arc<User>) -> bool {
        let mut users = self.users.lock().unwrap();
        let present = users.get(name).is_some_and(|u| Arc::ptr_eq(u, user));
        if present {
            users.remove(name);
        }
        present
    }

    /// Queues `msg` for every user but `except`, waiting up to the slow-reader timeout
    /// for each user whose queue is full; a user still full then is disconnected (so a
    /// sender waits at most that long per slow reader, and once for each).
    pub fn broadcast(&self, except: Option<&str>, msg: &str) {
        let targets: Vec<(String, Arc<User>)> = self
            .users
            .lock()
            .unwrap()
            .iter()
            .filter(|(name, _)| Some(name.as_str()) != except)
            .map(|(name, u)| (name.clone(), u.clone()))
            .collect();
        let msg: Arc<str> = Arc::from(msg);
        for (name, user) in targets {
            let Err(TryPutError::Full(m)) = user.queue.try_put(msg.clone()) else {
                continue; // queued, or the user is leaving
            };
            if let Err(PutTimeoutError::Timeout(_)) = user.queue.put_timeout(m, self.slow_reader) {
                self.disconnect(&name, &user);
            }
        }
    }

    /// Disconnects a slow reader: out of the room at once (no sender waits for it again),
    /// its queue closed and its connection shut down; its handler then reads end-of-file
    /// and says it left.
    fn disconnect(&self, name: &str, user: &Arc<User>) {
        if self.remove(name, user) {
            eprintln!(
                "chat: disconnecting {name}: {BACKLOG} lines behind for {:?}",
                self.slow_reader
            );
        }
        user.queue.close();
        let _ = user.conn.shutdown(Shutdown::Both);
    }

    fn leave(&self, name: &str, user: &Arc<User>) {
        self.remove(name, user);
        user.queue.close(); // its writer drains what is queued, then ends
        self.broadcast(None, &format!("* {name} left\n"));
    }
}

/// One line read with [`MAX_LINE`] as the limit.
enum Line {
    Text(String),
    TooLong,
    Eof,
}

/// Reads a line of at most [`MAX_LINE`] bytes: never buffers more than that.
fn read_line(r: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<Line> {
    buf.clear();
    if r.by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', buf)?
        == 0
    {
        return Ok(Line::Eof);
    }
    if buf.last() != Some(&b'\n') && buf.len() > MAX_LINE {
        return Ok(Line::TooLong);
    }
    Ok(Line::Text(String::from_utf8_lossy(buf).into_owned()))
}

/// The notice before closing a connection that sent too long a line.
const TOO_LONG: &str = "Line too long: at most 4096 bytes. Bye.\n";

/// Takes a user out of the room however the handler ends (returns, fails, is killed).
struct Member<'a> {
    room: &'a Room,
    name: String,
    user: Arc<User>,
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        self.room.leave(&self.name, &self.user);
    }
}

/// Serves one user: the name prompt, then a loop reading lines and broadcasting them.
/// Returns when the user sends `/quit`, closes the connection, sends too long a line or
/// is disconnected as a slow reader.
pub fn handle(room: &Room, conn: &TcpStream) -> io::Result<()> {
    let mut lines = BufReader::new(conn);
    let mut buf = Vec::new();
    // 1. The name prompt; until the user is in the room, this greenlet writes directly.
    (&*conn).write_all(PROMPT.as_bytes())?;
    let (name, user) = loop {
        let line = match read_line(&mut lines, &mut buf)? {
            Line::Eof => return Ok(()),
            Line::TooLong => return (&*conn).write_all(TOO_LONG.as_bytes()),
            Line::Text(line) => line,
        };
        let name = line.trim();
        if name.is_empty() || name.len() > 32 || name.contains(char::is_whitespace) {
            (&*conn).write_all(b"A name is 1 to 32 characters, no spaces.\n")?;
        } else if let Some(q) = room.enter(name, conn) {
            break (name.to_string(), q);
        } else {
            (&*conn).write_all(format!("Sorry, the name '{name}' is taken.\n").as_bytes())?;
        }
        (&*conn).write_all(PROMPT.as_bytes())?;
    };
    let queue = user.queue.clone();
    let member = Member { room, name, user };
    let name = &member.name;

    // 2. From now on only the writer greenlet writes to the socket. A write that fails
    // (timed out: the client stopped reading) disconnects the user.
    let writer = {
        let (conn, queue) = (conn.clone(), queue.clone());
        grove::spawn(move || {
            while let Ok(msg) = queue.get() {
                if (&conn).write_all(msg.as_bytes()).is_err() {
                    let _ = conn.shutdown(Shutdown::Both);
                    break;
                }
            }
        })
    };
    let _ = queue.try_put(Arc::from(format!(
        "Welcome, {name}! Online: {}\n",
        room.names().join(", ")
    )));
    room.broadcast(Some(name), &format!("* {name} joined\n"));

    // 3. Read and broadcast until the user leaves.
    let result = loop {
        let line = match read_line(&mut lines, &mut buf) {
            Ok(Line::Eof) => break Ok(()),
            Ok(Line::TooLong) => {
                let _ = queue.try_put(Arc::from(TOO_LONG));
                break Ok(());
            }
            Ok(Line::Text(line)) => line,
            Err(e) => break Err(e),
        };
        let text = line.trim_end();
        if text == "/quit" {
            let _ = queue.try_put(Arc::from("Bye!\n"));
            break Ok(());
        }
        if !text.is_empty() {
            room.broadcast(Some(name), &format!("[{name}] {text}\n"));
        }
    };

    // 4. Leave (closing the queue), let the writer flush what is queued, then return:
    // the server closes the connection.
    drop(member);
    if let Err(writer) = writer.join_timeout(FLUSH) {
        writer.kill();
    }
    result
}

/// The connection handler for [`StreamServer`], serving users of `room`.
pub fn handler(room: Arc<Room>) -> impl Fn(TcpStream, SocketAddr) + Send + Sync + 'static {
    move |conn, _peer| {
        let _ = handle(&room, &conn);
    }
}

/// Binds a chat server for `room` to `addr`, or to a free port if `addr` is taken.
pub fn bind(addr: &str, room: Arc<Room>) -> io::Result<StreamServer> {
    let server = StreamServer::bind(addr, handler(room.clone())).or_else(|e| {
        let host = addr.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
        eprintln!("chat: cannot bind {addr} ({e}); using a free port instead");
        StreamServer::bind(format!("{host}:0"), handler(room.clone()))
    })?;
    Ok(server.write_timeout(room.slow_reader))
}

fn main() -> io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| DEFAULT_ADDR.to_string());
    grove::run(move || {
        let server = bind(&addr, Room::new())?;
        let at = server.local_addr();
        println!("chat server listening on {at}");
        println!(
            "connect from several terminals with: nc {} {}    (Ctrl-C to stop)",
            at.ip(),
            at.port()
        );
        let report = server.serve_until_signal(GRACE)?;
        println!("chat: {report}");
        Ok(())
    })
}
