//! A chat server (gevent's classic chat demo): a name prompt, every line broadcast to the
//! other users, join and leave notices.
//!
//! ```text
//! cargo run --release --example chat               # 127.0.0.1:7001 (or a free port)
//! cargo run --release --example chat 127.0.0.1:9001
//! ```
//!
//! Connect from several terminals with `nc 127.0.0.1 7001`, answer the name prompt, type.
//! `/quit` (or closing the connection) leaves. Ctrl-C to stop.
//!
//! Each user has two greenlets: the connection's handler *reads* lines and broadcasts
//! them; a *writer* greenlet drains the user's [`grove::Queue`] onto the socket. Nothing
//! ever writes to a socket but its writer, so a slow reader delays only itself: its queue
//! holds up to [`BACKLOG`] messages, and further ones to it are dropped rather than
//! stalling the sender. A name already taken is refused and the prompt repeated.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grove::net::TcpStream;
use grove::server::StreamServer;
use grove::Queue;

/// The address tried when none is given on the command line.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7001";
/// Messages queued for one user before further ones to that user are dropped.
pub const BACKLOG: usize = 256;
/// The prompt, sent on connecting and after a refused name.
pub const PROMPT: &str = "What is your name?\n";
/// How long a leaving user's writer may take to flush what is queued.
const FLUSH: Duration = Duration::from_secs(5);

/// The users online: each name with its outgoing queue.
#[derive(Debug, Default)]
pub struct Room {
    // A std mutex is fine: it is never held across a blocking call (puts use `try_put`).
    users: Mutex<HashMap<String, Queue<String>>>,
}

impl Room {
    /// An empty room.
    pub fn new() -> Arc<Room> {
        Arc::default()
    }

    /// Names online, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.users.lock().unwrap().keys().cloned().collect();
        v.sort();
        v
    }

    /// Claims `name`, returning the user's new queue; `None` if the name is taken.
    fn enter(&self, name: &str) -> Option<Queue<String>> {
        let mut users = self.users.lock().unwrap();
        if users.contains_key(name) {
            return None;
        }
        let q = Queue::bounded(BACKLOG);
        users.insert(name.to_string(), q.clone());
        Some(q)
    }

    /// Queues `msg` for every user but `except`; a user whose queue is full misses it.
    pub fn broadcast(&self, except: Option<&str>, msg: &str) {
        for (name, q) in self.users.lock().unwrap().iter() {
            if Some(name.as_str()) != except {
                let _ = q.try_put(msg.to_string());
            }
        }
    }

    fn leave(&self, name: &str) {
        if let Some(q) = self.users.lock().unwrap().remove(name) {
            q.close(); // its writer drains what is queued, then ends
        }
        self.broadcast(None, &format!("* {name} left\n"));
    }
}

/// Takes a name off the room however the handler ends (returns, fails, is killed).
struct Member<'a> {
    room: &'a Room,
    name: String,
}

impl Drop for Member<'_> {
    fn drop(&mut self) {
        self.room.leave(&self.name);
    }
}

/// Serves one user: the name prompt, then a loop reading lines and broadcasting them.
/// Returns when the user sends `/quit` or closes the connection.
pub fn handle(room: &Room, conn: &TcpStream) -> io::Result<()> {
    let mut lines = BufReader::new(conn);
    let mut line = String::new();
    // 1. The name prompt; until the user is in the room, this greenlet writes directly.
    (&*conn).write_all(PROMPT.as_bytes())?;
    let (name, queue) = loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let name = line.trim();
        if name.is_empty() || name.len() > 32 || name.contains(char::is_whitespace) {
            (&*conn).write_all(b"A name is 1 to 32 characters, no spaces.\n")?;
        } else if let Some(q) = room.enter(name) {
            break (name.to_string(), q);
        } else {
            (&*conn).write_all(format!("Sorry, the name '{name}' is taken.\n").as_bytes())?;
        }
        (&*conn).write_all(PROMPT.as_bytes())?;
    };
    let member = Member { room, name };
    let name = &member.name;

    // 2. From now on only the writer greenlet writes to the socket.
    let writer = {
        let (conn, queue) = (conn.clone(), queue.clone());
        grove::spawn(move || {
            while let Ok(msg) = queue.get() {
                if (&conn).write_all(msg.as_bytes()).is_err() {
                    break;
                }
            }
        })
    };
    let _ = queue.try_put(format!(
        "Welcome, {name}! Online: {}\n",
        room.names().join(", ")
    ));
    room.broadcast(Some(name), &format!("* {name} joined\n"));

    // 3. Read and broadcast until the user leaves.
    let result = loop {
        line.clear();
        match lines.read_line(&mut line) {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(e),
        }
        let text = line.trim_end();
        if text == "/quit" {
            let _ = queue.try_put("Bye!\n".to_string());
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
    StreamServer::bind(addr, handler(room.clone())).or_else(|e| {
        let host = addr.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
        eprintln!("chat: cannot bind {addr} ({e}); using a free port instead");
        StreamServer::bind(format!("{host}:0"), handler(room))
    })
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
        server.serve_forever()
    })
}
