//! A small HTTP-like TCP client and server for lab hosts in network
//! namespaces: the client asks for N bytes with `GET N\n`, the server answers
//! with exactly N bytes of a known pattern and closes. The client checks
//! length and content, so a reset, a stall or corruption is a failed fetch.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// The byte at offset `i` of every answer.
fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// Largest object the server sends (1 GiB).
pub const MAX_OBJECT: u64 = 1 << 30;

/// Serves until the process is stopped; one thread per connection, at most
/// `max_conns` connections at once (further ones wait in the backlog).
pub fn serve(listen: SocketAddr, max_conns: usize) -> std::io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    let active = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for conn in listener.incoming() {
        let Ok(stream) = conn else { continue };
        while active.load(std::sync::atomic::Ordering::Acquire) >= max_conns {
            std::thread::yield_now();
        }
        active.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let active = active.clone();
        std::thread::spawn(move || {
            let _ = answer(stream);
            active.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        });
    }
    Ok(())
}

fn answer(stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.by_ref().take(64).read_line(&mut line)?;
    let n: u64 = line
        .strip_prefix("GET ")
        .and_then(|s| s.trim().parse().ok())
        .filter(|n| *n <= MAX_OBJECT)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad request"))?;
    let mut w = std::io::BufWriter::with_capacity(64 * 1024, stream);
    let mut buf = [0u8; 8192];
    let mut off = 0u64;
    while off < n {
        let k = (n - off).min(buf.len() as u64) as usize;
        for (i, b) in buf[..k].iter_mut().enumerate() {
            *b = pattern(off + i as u64);
        }
        w.write_all(&buf[..k])?;
        off += k as u64;
    }
    w.flush()
}

/// The outcome of one fetch.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FetchResult {
    /// Whether the whole object arrived intact.
    pub ok: bool,
    /// Bytes received.
    pub bytes: u64,
    /// Milliseconds from connect to the last byte (or the failure).
    pub elapsed_ms: u64,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// Fetches `bytes` bytes from `server`; fails on reset, timeout (`stall`
/// without progress) or wrong content. With a non-zero `pause`, stops
/// reading for that long after the first 64 KiB, holding the connection
/// open mid-transfer.
pub fn fetch(server: SocketAddr, bytes: u64, stall: Duration, pause: Duration) -> FetchResult {
    let start = Instant::now();
    let mut got = 0u64;
    let r = (|| -> Result<(), String> {
        let mut s =
            TcpStream::connect_timeout(&server, stall).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(stall)).map_err(|e| e.to_string())?;
        s.write_all(format!("GET {bytes}\n").as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let mut buf = [0u8; 16384];
        let mut paused = pause.is_zero();
        loop {
            if !paused && got >= 65536 {
                paused = true;
                std::thread::sleep(pause);
            }
            let k = s
                .read(&mut buf)
                .map_err(|e| format!("receive after {got} bytes: {e}"))?;
            if k == 0 {
                break;
            }
            for (i, b) in buf[..k].iter().enumerate() {
                if *b != pattern(got + i as u64) {
                    return Err(format!("corrupt byte at offset {}", got + i as u64));
                }
            }
            got += k as u64;
        }
        if got != bytes {
            return Err(format!("short object: {got} of {bytes} bytes"));
        }
        Ok(())
    })();
    FetchResult {
        ok: r.is_ok(),
        bytes: got,
        elapsed_ms: start.elapsed().as_millis() as u64,
        error: r.err(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_from_local_server_checks_length_and_content() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming().take(2) {
                let _ = answer(c.unwrap());
            }
        });
        let r = fetch(addr, 100_000, Duration::from_secs(5), Duration::ZERO);
        assert!(r.ok, "{r:?}");
        assert_eq!(r.bytes, 100_000);
        // A bad request is refused: the server closes without data.
        let r = fetch(addr, MAX_OBJECT + 1, Duration::from_secs(5), Duration::ZERO);
        assert!(!r.ok);
        assert_eq!(r.bytes, 0);
    }
}
