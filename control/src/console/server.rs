//! [`ConsoleServer`]: the console socket, driven by an event loop someone
//! else owns.
//!
//! Tokens: the server owns `token_base .. token_base + TOKEN_SPAN`
//! ([`TOKEN_SPAN`] = 1 + [`MAX_CLIENTS`]). `token_base` is the listener and
//! `token_base + 1 + i` is client slot `i`. The owner registers the server
//! once with [`ConsoleServer::register`] and passes every event whose token
//! satisfies [`ConsoleServer::owns`] to [`ConsoleServer::handle_event`].
//!
//! Per client: requests are newline-terminated lines of at most
//! [`MAX_LINE`] bytes; a longer line gets an error response and the
//! connection is closed after it is sent. Requests are answered strictly in
//! order and one at a time: the next line is not read until the previous
//! response has been written out, so each client holds at most one response
//! (capped at [`MAX_RESPONSE`] bytes; a streamed answer, `flows list`,
//! at most about [`STREAM_CHUNK`] at a time, refilled as the client reads)
//! plus one partial line. Malformed JSON
//! gets `{"ok":false,"error":...}` and the connection stays open. Sources
//! are registered edge-triggered for both readiness kinds; every event
//! drains its client until the socket would block.
//!
//! Bounds over all clients: responses waiting to be read are at most
//! [`MAX_PENDING_TOTAL`] together (beyond it, requests wait: back-pressure,
//! and a client waiting for that is served as soon as others drain); a
//! client idle for [`IDLE_TIMEOUT`] is closed (the owner calls
//! [`ConsoleServer::expire_idle`] now and then); when all [`MAX_CLIENTS`]
//! slots are taken, a new connection replaces the client idle the longest
//! (at least [`EVICT_AFTER`]), so idle connections cannot lock operators out.

use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mio::event::Event;
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use super::proto::{ConsoleHandler, Request, Response};
use super::stream::{ResponseStream, STREAM_CHUNK};

/// Longest request line in bytes, newline excluded.
pub const MAX_LINE: usize = 64 * 1024;
/// Most clients connected at once; more are told so and disconnected.
pub const MAX_CLIENTS: usize = 64;
/// Longest response line; a larger answer is replaced by an error.
pub const MAX_RESPONSE: usize = 128 * 1024 * 1024;
/// Number of tokens the server owns from its base.
pub const TOKEN_SPAN: usize = 1 + MAX_CLIENTS;
/// Mode of the socket file: owner and group may use the console.
pub const SOCKET_MODE: u32 = 0o660;
/// Most response bytes waiting to be read by all clients together. Over
/// it, no client's next request is answered until readers catch up (a
/// client that sends `flows list` and never reads holds at most its one
/// response; together they cannot hold more than this plus one response).
pub const MAX_PENDING_TOTAL: usize = 256 * 1024 * 1024;
/// A client with nothing pending that sends nothing for this long is
/// disconnected ([`ConsoleServer::expire_idle`]).
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// With every slot taken, a new connection takes the slot of the client
/// idle the longest, if it has been idle at least this long: an operator
/// always gets in, however many idle connections there are.
pub const EVICT_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// Why the console could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another process answers on the socket.
    #[error("another ftfwd is already listening on {}", path.display())]
    AlreadyRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// The path exists and is not a socket; it is left alone.
    #[error("{} exists and is not a socket; refusing to replace it", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// A system call failed.
    #[error("console socket {}: {what}: {source}", path.display())]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// The console listener and its clients. Removes the socket file on drop.
#[derive(Debug)]
pub struct ConsoleServer {
    path: PathBuf,
    listener: UnixListener,
    token_base: usize,
    clients: Vec<Option<Client>>,
    /// (device, inode) of the socket file we created.
    file_id: Option<(u64, u64)>,
    /// [`MAX_PENDING_TOTAL`], [`IDLE_TIMEOUT`], [`EVICT_AFTER`] (settable
    /// for tests).
    limits: Limits,
}

/// The server's bounds over all clients.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// See [`MAX_PENDING_TOTAL`].
    pub max_pending_total: usize,
    /// See [`IDLE_TIMEOUT`].
    pub idle_timeout: std::time::Duration,
    /// See [`EVICT_AFTER`].
    pub evict_after: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pending_total: MAX_PENDING_TOTAL,
            idle_timeout: IDLE_TIMEOUT,
            evict_after: EVICT_AFTER,
        }
    }
}

impl ConsoleServer {
    /// Binds the console at `path`, owning tokens from `token_base` (see the
    /// module docs). Creates the parent directory; replaces a stale socket
    /// file only when nothing answers on it.
    pub fn bind(path: &Path, token_base: usize) -> Result<ConsoleServer, ServerError> {
        let io_err = |what| {
            move |source| ServerError::Io {
                path: path.to_path_buf(),
                what,
                source,
            }
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_err("creating the parent directory"))?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(md) if !md.file_type().is_socket() => {
                return Err(ServerError::NotASocket {
                    path: path.to_path_buf(),
                })
            }
            Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(ServerError::AlreadyRunning {
                        path: path.to_path_buf(),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    tracing::info!(path = %path.display(), "removing stale console socket");
                    std::fs::remove_file(path).map_err(io_err("removing the stale socket"))?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("probing the existing socket")(e)),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("inspecting the path")(e)),
        }
        // Bound in a private directory, given its final mode there, then
        // renamed into place: the socket is never reachable with the
        // permissions a lax umask would give it.
        let staging = path.with_file_name(format!(
            ".{}.{}",
            path.file_name()
                .map_or("console".into(), |n| n.to_string_lossy()),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(io_err("creating the staging directory"))?;
        let staged = staging.join("sock");
        let bound = UnixListener::bind(&staged)
            .map_err(io_err("binding"))
            .and_then(|l| {
                std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(SOCKET_MODE))
                    .map_err(io_err("setting permissions"))?;
                std::fs::rename(&staged, path).map_err(io_err("moving the socket into place"))?;
                Ok(l)
            });
        let _ = std::fs::remove_dir_all(&staging);
        let listener = bound?;
        let file_id = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        Ok(ConsoleServer {
            path: path.to_path_buf(),
            listener,
            token_base,
            clients: (0..MAX_CLIENTS).map(|_| None).collect(),
            file_id,
            limits: Limits::default(),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The tokens this server owns.
    pub fn tokens(&self) -> Range<usize> {
        self.token_base..self.token_base + TOKEN_SPAN
    }

    /// Whether `token` belongs to this server.
    pub fn owns(&self, token: Token) -> bool {
        self.tokens().contains(&token.0)
    }

    /// Replaces the bounds (the defaults are the constants).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Clients connected now.
    pub fn client_count(&self) -> usize {
        self.clients.iter().filter(|c| c.is_some()).count()
    }

    /// Registers the listener; call once before polling.
    pub fn register(&mut self, reg: &Registry) -> io::Result<()> {
        reg.register(
            &mut self.listener,
            Token(self.token_base),
            Interest::READABLE,
        )
    }

    /// Deregisters the listener and disconnects every client.
    pub fn deregister(&mut self, reg: &Registry) -> io::Result<()> {
        for slot in &mut self.clients {
            if let Some(mut c) = slot.take() {
                let _ = reg.deregister(&mut c.stream);
            }
        }
        reg.deregister(&mut self.listener)
    }

    /// Handles one event for a token this server owns (others are ignored):
    /// accepts clients, reads their requests, calls `handler` for each and
    /// writes the answers. Does as much as the sockets allow without
    /// blocking.
    pub fn handle_event(
        &mut self,
        reg: &Registry,
        event: &Event,
        handler: &mut dyn ConsoleHandler,
    ) {
        let t = event.token().0;
        if t == self.token_base {
            self.accept(reg, handler);
        } else if let Some(slot) = t
            .checked_sub(self.token_base + 1)
            .filter(|&i| i < MAX_CLIENTS)
        {
            self.pump(reg, slot, handler);
        }
    }

    fn accept(&mut self, reg: &Registry, handler: &mut dyn ConsoleHandler) {
        loop {
            let mut stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "console accept failed");
                    return;
                }
            };
            let free = self.clients.iter().position(Option::is_none);
            let Some(slot) = free.or_else(|| self.evict_idlest(reg)) else {
                let line =
                    Response::error(format!("too many console clients (at most {MAX_CLIENTS})"))
                        .to_line();
                let _ = stream.write_all(format!("{line}\n").as_bytes());
                continue;
            };
            let token = Token(self.token_base + 1 + slot);
            if let Err(e) =
                reg.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
            {
                tracing::warn!(error = %e, "console client registration failed");
                continue;
            }
            self.clients[slot] = Some(Client::new(stream));
            self.pump(reg, slot, handler);
        }
    }

    fn pump(&mut self, reg: &Registry, slot: usize, handler: &mut dyn ConsoleHandler) {
        let pending_before = self.pending_total();
        self.pump_one(reg, slot, handler, pending_before);
        // Output drained below the budget: serve the clients whose
        // requests waited for that.
        let max = self.limits.max_pending_total;
        if self.pending_total() < pending_before || pending_before >= max {
            for i in 0..self.clients.len() {
                if self.clients[i].as_ref().is_some_and(|c| c.waiting) {
                    let p = self.pending_total();
                    if p >= max {
                        break;
                    }
                    self.pump_one(reg, i, handler, p);
                }
            }
        }
    }

    fn pump_one(
        &mut self,
        reg: &Registry,
        slot: usize,
        handler: &mut dyn ConsoleHandler,
        pending: usize,
    ) {
        let Some(client) = self.clients[slot].as_mut() else {
            return;
        };
        // Its own pending bytes do not count against it (it has none when
        // it may take a new request anyway).
        let others = pending.saturating_sub(client.pending());
        if !client.pump(handler, others < self.limits.max_pending_total) {
            self.drop_client(reg, slot);
        }
    }

    fn drop_client(&mut self, reg: &Registry, slot: usize) {
        if let Some(mut c) = self.clients[slot].take() {
            let _ = reg.deregister(&mut c.stream);
        }
    }

    /// Response bytes all clients have yet to read.
    pub fn pending_total(&self) -> usize {
        self.clients.iter().flatten().map(Client::pending).sum()
    }

    /// Frees the slot of the client idle the longest (nothing pending, no
    /// partial request, idle for at least [`EVICT_AFTER`]).
    fn evict_idlest(&mut self, reg: &Registry) -> Option<usize> {
        let now = std::time::Instant::now();
        let (slot, _) = self
            .clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
            .filter(|(_, c)| {
                c.idle() && now.saturating_duration_since(c.last_active) >= self.limits.evict_after
            })
            .min_by_key(|(_, c)| c.last_active)?;
        tracing::info!(slot, "console full: closing the client idle the longest");
        self.drop_client(reg, slot);
        Some(slot)
    }

    /// Closes clients that have had nothing to do for [`IDLE_TIMEOUT`].
    /// Returns how many. Call now and then (ftfwd does every tick).
    pub fn expire_idle(&mut self, reg: &Registry, now: std::time::Instant) -> usize {
        let mut n = 0;
        for i in 0..self.clients.len() {
            let stale = self.clients[i].as_ref().is_some_and(|c| {
                c.idle() && now.saturating_duration_since(c.last_active) >= self.limits.idle_timeout
            });
            if stale {
                self.drop_client(reg, i);
                n += 1;
            }
        }
        n
    }
}

impl Drop for ConsoleServer {
    fn drop(&mut self) {
        // Only remove the file if it is still ours (a successor may have
        // replaced it).
        let ours = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if ours.is_some() && ours == self.file_id {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// One connected client.
#[derive(Debug)]
struct Client {
    stream: UnixStream,
    /// Bytes read but not yet consumed as lines.
    inbuf: Vec<u8>,
    /// The response being written and how much of it is out.
    out: Vec<u8>,
    out_pos: usize,
    /// The peer shut down its sending side.
    eof: bool,
    /// Close once `out` is written.
    closing: bool,
    /// The rest of a streamed answer (`out` is refilled from it).
    answer: Option<Box<dyn ResponseStream>>,
    /// A complete request waits for the output budget
    /// ([`MAX_PENDING_TOTAL`]).
    waiting: bool,
    /// Last read or write on the connection.
    last_active: std::time::Instant,
}

impl Client {
    fn new(stream: UnixStream) -> Client {
        Client {
            stream,
            inbuf: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            eof: false,
            closing: false,
            answer: None,
            waiting: false,
            last_active: std::time::Instant::now(),
        }
    }

    /// Response bytes not yet written (and held by a streamed answer).
    fn pending(&self) -> usize {
        self.out.len() - self.out_pos + self.answer.as_ref().map_or(0, |s| s.buffered())
    }

    /// Nothing to write, no partial or waiting request.
    fn idle(&self) -> bool {
        self.pending() == 0 && self.answer.is_none() && self.inbuf.is_empty() && !self.waiting
    }

    /// Refills `out` (written out) from the streamed answer, up to
    /// [`STREAM_CHUNK`]; the newline ends it. False: it broke off.
    fn refill(&mut self) -> bool {
        let Some(stream) = self.answer.as_mut() else {
            return true;
        };
        while self.out.len() < STREAM_CHUNK {
            match stream.fill(&mut self.out) {
                Ok(true) => {}
                Ok(false) => {
                    self.out.push(b'\n');
                    self.answer = None;
                    return true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "console: a streamed answer broke off; closing");
                    return false;
                }
            }
        }
        true
    }

    /// Makes all progress possible without blocking; a new request is
    /// answered only if `may_answer` (the output budget has room). Returns
    /// false when the connection is finished and should be dropped.
    fn pump(&mut self, handler: &mut dyn ConsoleHandler, may_answer: bool) -> bool {
        let mut buf = [0u8; 8192];
        self.waiting = false;
        loop {
            while self.out_pos < self.out.len() {
                match self.stream.write(&self.out[self.out_pos..]) {
                    Ok(0) => return false,
                    Ok(n) => {
                        self.out_pos += n;
                        self.last_active = std::time::Instant::now();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return false,
                }
            }
            self.out.clear();
            self.out_pos = 0;
            if self.answer.is_some() {
                if !self.refill() {
                    return false;
                }
                continue;
            }
            if self.closing {
                return false;
            }
            if let Some(nl) = self.inbuf.iter().position(|&b| b == b'\n') {
                if nl > MAX_LINE {
                    self.oversized();
                } else if !may_answer {
                    // Served once other clients read what they have.
                    self.waiting = true;
                    return true;
                } else {
                    // The budget holds for the next request too: our own
                    // answer is written out (or the socket blocks and we
                    // return) before another line is read.
                    let line: Vec<u8> = self.inbuf.drain(..=nl).collect();
                    self.answer(&line[..nl], handler);
                }
                continue;
            }
            if self.inbuf.len() > MAX_LINE {
                self.oversized();
                continue;
            }
            if self.eof {
                if self.inbuf.is_empty() {
                    return false;
                }
                if !may_answer {
                    self.waiting = true;
                    return true;
                }
                // A last request without its newline.
                let line = std::mem::take(&mut self.inbuf);
                self.answer(&line, handler);
                continue;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.inbuf.extend_from_slice(&buf[..n]);
                    self.last_active = std::time::Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    fn oversized(&mut self) {
        self.inbuf.clear();
        self.closing = true;
        self.queue(&Response::error(format!(
            "request line longer than {MAX_LINE} bytes; closing"
        )));
    }

    fn answer(&mut self, line: &[u8], handler: &mut dyn ConsoleHandler) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let resp = match serde_json::from_slice::<Request>(line) {
            Ok(req) => match handler.stream(&req) {
                Some(stream) => {
                    // Written as the client reads it (see `refill`).
                    self.out.clear();
                    self.out_pos = 0;
                    self.answer = Some(stream);
                    return;
                }
                None => handler.handle(req),
            },
            Err(e) => Response::error(format!("malformed request: {e}")),
        };
        self.queue(&resp);
    }

    fn queue(&mut self, resp: &Response) {
        let mut line = resp.to_line();
        if line.len() > MAX_RESPONSE {
            line = Response::error(format!(
                "response of {} bytes exceeds the console limit of {MAX_RESPONSE}; narrow the filter or set a limit",
                line.len()
            ))
            .to_line();
        }
        self.out = line.into_bytes();
        self.out.push(b'\n');
        self.out_pos = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::proto::{Payload, StatusInfo};
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixStream as StdStream;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// Answers `status` with a canned payload; `rules_show` with a response
    /// large enough to need several writes.
    struct TestHandler {
        calls: usize,
    }

    impl ConsoleHandler for TestHandler {
        fn handle(&mut self, req: Request) -> Response {
            self.calls += 1;
            match req {
                Request::Status => Response::Ok(Payload::Status(StatusInfo {
                    version: "test".into(),
                    uptime_secs: self.calls as u64,
                    pid: 1,
                    workers: 1,
                    poll_mode: "busy".into(),
                    mode: "transparent".into(),
                    ports: vec![],
                    flows: 0,
                    capacity: 1024,
                    rules: crate::console::proto::RulesSummary {
                        count: 0,
                        policy: "drop".into(),
                        source: "none".into(),
                        loaded_at: 0,
                    },
                    deltas_consumed: 0,
                    last_reload_error: None,
                    role: "active".into(),
                    failover: "none".into(),
                    last_takeover: None,
                    role_changes: Default::default(),
                    role_change_steps: vec![],
                    election: None,
                    migration: None,
                    state_keeper: None,
                })),
                Request::RulesShow => Response::error("x".repeat(4 << 20)),
                _ => Response::error("not supported"),
            }
        }
    }

    fn sock_path(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ftfw-console-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("sub").join("ftfwd.sock")
    }

    /// Runs a server with its own poll loop on a thread until `stop`.
    fn run_server(path: &Path, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
        run_server_with(path, stop, Limits::default(), Arc::default())
    }

    /// Like [`run_server`] with `limits`; records the most response bytes
    /// ever pending in `peak` and expires idle clients every iteration.
    fn run_server_with(
        path: &Path,
        stop: Arc<AtomicBool>,
        limits: Limits,
        peak: Arc<std::sync::atomic::AtomicUsize>,
    ) -> std::thread::JoinHandle<usize> {
        let mut server = ConsoleServer::bind(path, 100).unwrap();
        server.set_limits(limits);
        std::thread::spawn(move || {
            let mut poll = mio::Poll::new().unwrap();
            let mut events = mio::Events::with_capacity(64);
            server.register(poll.registry()).unwrap();
            let mut handler = TestHandler { calls: 0 };
            while !stop.load(Ordering::Relaxed) {
                poll.poll(&mut events, Some(Duration::from_millis(20)))
                    .unwrap();
                for ev in events.iter() {
                    assert!(server.owns(ev.token()));
                    server.handle_event(poll.registry(), ev, &mut handler);
                    peak.fetch_max(server.pending_total(), Ordering::Relaxed);
                }
                server.expire_idle(poll.registry(), std::time::Instant::now());
            }
            handler.calls
        })
    }

    fn connect(path: &Path) -> (StdStream, BufReader<StdStream>) {
        let s = StdStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let r = BufReader::new(s.try_clone().unwrap());
        (s, r)
    }

    fn read_response(r: &mut BufReader<StdStream>) -> Response {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn concurrent_clients_malformed_and_oversized() {
        let path = sock_path("main");
        let stop = Arc::new(AtomicBool::new(false));
        let h = run_server(&path, stop.clone());
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            SOCKET_MODE
        );
        // The staging directory the socket was bound in is gone.
        let dir = path.parent().unwrap();
        let left: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");

        let clients: Vec<_> = (0..8)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || {
                    let (mut s, mut r) = connect(&p);
                    for _ in 0..20 {
                        s.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
                        assert!(matches!(
                            read_response(&mut r),
                            Response::Ok(Payload::Status(_))
                        ));
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }

        // Malformed lines get errors and the connection stays usable;
        // pipelined requests are answered in order.
        let (mut s, mut r) = connect(&path);
        s.write_all(
            b"not json\n{\"cmd\":\"bogus\"}\n\n{\"cmd\":\"stats\"}\n{\"cmd\":\"status\"}\n",
        )
        .unwrap();
        let Response::Error(e) = read_response(&mut r) else {
            panic!()
        };
        assert!(e.starts_with("malformed request"), "{e}");
        let Response::Error(e) = read_response(&mut r) else {
            panic!()
        };
        assert!(e.contains("unknown variant"), "{e}");
        assert_eq!(read_response(&mut r), Response::error("not supported"));
        assert!(matches!(
            read_response(&mut r),
            Response::Ok(Payload::Status(_))
        ));

        // A large response arrives whole (several partial writes).
        s.write_all(b"{\"cmd\":\"rules_show\"}\n").unwrap();
        let Response::Error(e) = read_response(&mut r) else {
            panic!()
        };
        assert_eq!(e.len(), 4 << 20);

        // An oversized line: error, then the server closes.
        let (mut s2, mut r2) = connect(&path);
        let big = vec![b'x'; MAX_LINE + 10];
        let _ = s2.write_all(&big);
        let Response::Error(e) = read_response(&mut r2) else {
            panic!()
        };
        assert!(e.contains("longer than"), "{e}");
        let mut rest = String::new();
        assert_eq!(r2.read_line(&mut rest).unwrap(), 0);

        // The last request may lack its newline if the client shuts down.
        let (s3, mut r3) = connect(&path);
        (&s3).write_all(b"{\"cmd\":\"status\"}").unwrap();
        s3.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(matches!(
            read_response(&mut r3),
            Response::Ok(Payload::Status(_))
        ));

        stop.store(true, Ordering::Relaxed);
        assert!(h.join().unwrap() >= 160);
        assert!(!path.exists(), "socket removed on drop");
    }

    #[test]
    fn stale_socket_is_replaced_live_one_is_not() {
        let path = sock_path("stale");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // A stale socket: bound, then the listener is gone.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let server = ConsoleServer::bind(&path, 0).unwrap();
        // A second daemon must refuse while the first listens.
        let err = ConsoleServer::bind(&path, 0).unwrap_err();
        assert!(matches!(err, ServerError::AlreadyRunning { .. }), "{err}");
        assert!(path.exists());
        drop(server);
        assert!(!path.exists());
        // A regular file is never removed.
        std::fs::write(&path, b"data").unwrap();
        let err = ConsoleServer::bind(&path, 0).unwrap_err();
        assert!(matches!(err, ServerError::NotASocket { .. }), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn token_range() {
        let path = sock_path("tokens");
        let server = ConsoleServer::bind(&path, 1000).unwrap();
        assert_eq!(server.tokens(), 1000..1000 + TOKEN_SPAN);
        assert!(server.owns(Token(1000)));
        assert!(server.owns(Token(1000 + MAX_CLIENTS)));
        assert!(!server.owns(Token(1000 + TOKEN_SPAN)));
        assert!(!server.owns(Token(999)));
        assert_eq!(server.client_count(), 0);
    }

    #[test]
    fn clients_that_never_read_hold_at_most_the_budget_and_are_served_later() {
        let path = sock_path("budget");
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // Each rules_show answer is 4 MiB; the budget is 8 MiB.
        let limits = Limits {
            max_pending_total: 8 << 20,
            ..Limits::default()
        };
        let h = run_server_with(&path, stop.clone(), limits, peak.clone());
        let mut clients: Vec<_> = (0..8).map(|_| connect(&path)).collect();
        for (s, _) in &mut clients {
            s.write_all(b"{\"cmd\":\"rules_show\"}\n").unwrap();
        }
        // Every client gets its whole answer once it reads (back-pressure
        // never deadlocks), one after the other.
        for (_, r) in &mut clients {
            match read_response(r) {
                Response::Error(e) => assert_eq!(e.len(), 4 << 20),
                other => panic!("unexpected {other:?}"),
            }
        }
        // While nobody read, the server never held more than the budget
        // plus the one answer that crossed it (a socket buffer's worth of
        // each answer may have left already).
        let most = peak.load(Ordering::Relaxed);
        assert!(most <= (8 << 20) + (4 << 20) + 1024, "peak {most}");
        assert!(most >= 4 << 20, "answers were pending: {most}");
        stop.store(true, Ordering::Relaxed);
        assert_eq!(h.join().unwrap(), 8);
    }

    #[test]
    fn idle_connections_cannot_lock_an_operator_out() {
        let path = sock_path("evict");
        let stop = Arc::new(AtomicBool::new(false));
        let limits = Limits {
            evict_after: Duration::ZERO,
            ..Limits::default()
        };
        let h = run_server_with(&path, stop.clone(), limits, Arc::default());
        let mut idle: Vec<_> = (0..MAX_CLIENTS).map(|_| connect(&path)).collect();
        // Each idle client is registered (it answers), then stays silent.
        for (s, r) in &mut idle {
            s.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
            assert!(matches!(read_response(r), Response::Ok(_)));
        }
        let (mut s, mut r) = connect(&path);
        s.write_all(b"{\"cmd\":\"status\"}\n").unwrap();
        assert!(matches!(read_response(&mut r), Response::Ok(_)));
        // The first idle client (idle the longest) was closed for it.
        let mut line = String::new();
        assert_eq!(idle[0].1.read_line(&mut line).unwrap(), 0, "{line}");
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }

    #[test]
    fn an_idle_client_is_closed_after_the_timeout() {
        let path = sock_path("idle");
        let stop = Arc::new(AtomicBool::new(false));
        let limits = Limits {
            idle_timeout: Duration::ZERO,
            ..Limits::default()
        };
        let h = run_server_with(&path, stop.clone(), limits, Arc::default());
        let (_s, mut r) = connect(&path);
        let mut line = String::new();
        // Closed by the server: EOF, not the read timeout.
        assert_eq!(r.read_line(&mut line).unwrap(), 0);
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    }
}
