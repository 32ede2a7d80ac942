//! The metrics HTTP endpoint: a minimal HTTP/1.0 responder on its own
//! thread. `GET /metrics` answers the page its source renders; any other
//! path is 404, any other method 405. Bounded: requests larger than
//! [`MAX_REQUEST`] are refused (431), a client has [`READ_TIMEOUT`] to send
//! its request, and at most [`MAX_CONNECTIONS`] are served at once (503
//! beyond). Scrapes are rendered one at a time.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::CONTENT_TYPE;

/// Largest request head read (request line and headers).
pub const MAX_REQUEST: usize = 8192;
/// Time a client has to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed to write the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 4;

/// Renders the metrics page, or says why it cannot (answered 503).
pub type Source = Box<dyn FnMut() -> Result<String, String> + Send>;

/// A running metrics endpoint; stopped on drop.
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl MetricsServer {
    /// Binds `listen` and serves `source` from a thread named
    /// `ftfw-metrics`.
    pub fn spawn(listen: SocketAddr, source: Source) -> io::Result<MetricsServer> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let source = Arc::new(Mutex::new(source));
        let thread = std::thread::Builder::new()
            .name("ftfw-metrics".into())
            .spawn({
                let stop = stop.clone();
                move || accept_loop(&listener, &stop, &source)
            })?;
        Ok(MetricsServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, stop: &AtomicBool, source: &Arc<Mutex<Source>>) {
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = conn else { continue };
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            refuse(stream);
            continue;
        }
        let (active2, source) = (active.clone(), source.clone());
        let spawned = std::thread::Builder::new()
            .name("ftfw-metrics-conn".into())
            .spawn(move || {
                serve(stream, &source);
                active2.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Answers 503 without waiting for the client: what of its request has
/// arrived is read first (without blocking), so that closing does not
/// reset the connection under the answer; a request still on its way may.
fn refuse(mut stream: TcpStream) {
    if stream.set_nonblocking(true).is_ok() {
        let mut sink = [0u8; 1024];
        let mut left = MAX_REQUEST;
        while let Ok(n @ 1..) = stream.read(&mut sink) {
            left = left.saturating_sub(n);
            if left == 0 {
                break;
            }
        }
        let _ = stream.set_nonblocking(false);
    }
    let _ = respond(
        &mut stream,
        "503 Service Unavailable",
        "too many connections\n",
    );
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    respond_typed(stream, status, "text/plain; charset=utf-8", body)
}

fn respond_typed(stream: &mut TcpStream, status: &str, ctype: &str, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}

/// Reads the request head: up to the blank line, at most [`MAX_REQUEST`]
/// bytes. `None`: too large (or the client went away).
fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, &'static str> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Ok(buf);
        }
        if buf.len() > MAX_REQUEST {
            return Err("431 Request Header Fields Too Large");
        }
        match stream.read(&mut chunk) {
            Ok(0) => return if buf.is_empty() { Err("") } else { Ok(buf) },
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return Err("408 Request Timeout"),
        }
    }
}

fn serve(mut stream: TcpStream, source: &Mutex<Source>) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let head = match read_head(&mut stream) {
        Ok(h) => h,
        Err("") => return,
        Err(status) => {
            let _ = respond(&mut stream, status, "\n");
            return;
        }
    };
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let _ = match (method, path) {
        ("GET", "/metrics") => {
            let page = match source.lock() {
                Ok(mut render) => render(),
                Err(_) => Err("metrics source failed earlier".to_string()),
            };
            match page {
                Ok(body) => respond_typed(&mut stream, "200 OK", CONTENT_TYPE, &body),
                Err(e) => respond(&mut stream, "503 Service Unavailable", &format!("{e}\n")),
            }
        }
        (_, "/metrics") => respond(&mut stream, "405 Method Not Allowed", "GET only\n"),
        _ => respond(&mut stream, "404 Not Found", "try /metrics\n"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    fn server() -> MetricsServer {
        let mut n = 0u64;
        MetricsServer::spawn(
            "127.0.0.1:0".parse().unwrap(),
            Box::new(move || {
                n += 1;
                Ok(format!("scrapes {n}\n"))
            }),
        )
        .unwrap()
    }

    #[test]
    fn metrics_404_405_and_oversized() {
        let s = server();
        let a = get(s.local_addr(), b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(a.starts_with("HTTP/1.0 200 OK\r\n"), "{a}");
        assert!(a.contains(CONTENT_TYPE), "{a}");
        assert!(a.ends_with("scrapes 1\n"), "{a}");
        let a = get(s.local_addr(), b"GET /metrics?x=1 HTTP/1.0\r\n\r\n");
        assert!(a.ends_with("scrapes 2\n"), "{a}");
        let a = get(s.local_addr(), b"GET / HTTP/1.0\r\n\r\n");
        assert!(a.starts_with("HTTP/1.0 404 "), "{a}");
        let a = get(s.local_addr(), b"POST /metrics HTTP/1.0\r\n\r\n");
        assert!(a.starts_with("HTTP/1.0 405 "), "{a}");
        let mut big = b"GET /metrics HTTP/1.0\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_REQUEST + 10));
        let a = get(s.local_addr(), &big);
        assert!(a.starts_with("HTTP/1.0 431 "), "{a}");
        // Still serving, and the refused requests rendered nothing.
        let a = get(s.local_addr(), b"GET /metrics HTTP/1.0\r\n\r\n");
        assert!(a.ends_with("scrapes 3\n"), "{a}");
    }

    #[test]
    fn silent_clients_are_capped_and_timed_out() {
        let s = server();
        // MAX_CONNECTIONS clients that send nothing hold every slot ...
        let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(s.local_addr()).unwrap())
            .collect();
        // ... so one more is refused at once (a 503, or a reset when its
        // request arrived after the refusal; served if a slot was already
        // freed by the read timeout): never left hanging.
        let mut c = TcpStream::connect(s.local_addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
        let mut a = String::new();
        match c.read_to_string(&mut a) {
            Ok(_) => assert!(
                a.starts_with("HTTP/1.0 503 ") || a.starts_with("HTTP/1.0 200 "),
                "{a}"
            ),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}"),
        }
        // The idle ones are answered 408 after the read timeout.
        for mut c in idle {
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut out = String::new();
            c.read_to_string(&mut out).unwrap();
            assert!(out.starts_with("HTTP/1.0 408 "), "{out}");
        }
        let a = get(s.local_addr(), b"GET /metrics HTTP/1.0\r\n\r\n");
        assert!(a.starts_with("HTTP/1.0 200 "), "{a}");
    }
}
