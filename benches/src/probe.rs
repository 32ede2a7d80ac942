//! A small HTTP-like TCP client and server for lab hosts in network
//! namespaces: the client asks for N bytes with `GET N\n`, the server answers
//! with exactly N bytes of a known pattern and closes. The client checks
//! length and content, so a reset, a stall or corruption is a failed fetch.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// The pattern's period: the byte at offset `i` of every answer is
/// `i % 251`.
const PERIOD: usize = 251;

/// Largest slice either side reads or writes at once.
const CHUNK: usize = 65536;

/// The pattern from offset 0 to `PERIOD + CHUNK`: the `k` bytes at any
/// offset `off` are `table[off % PERIOD..][..k]` for `k <= CHUNK`, so the
/// server writes and the client compares whole slices instead of
/// computing a byte at a time (which cost more CPU than the transfer
/// itself and competed with the firewall under test for the lab's cores).
fn pattern_table() -> Vec<u8> {
    #[allow(clippy::cast_possible_truncation)]
    (0..PERIOD + CHUNK).map(|i| (i % PERIOD) as u8).collect()
}

/// The `k <= CHUNK` bytes of the pattern at offset `off`.
fn pattern_at(table: &[u8], off: u64, k: usize) -> &[u8] {
    #[allow(clippy::cast_possible_truncation)]
    let start = (off % PERIOD as u64) as usize;
    &table[start..start + k]
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
    let table = pattern_table();
    let mut w = stream;
    let mut off = 0u64;
    while off < n {
        let k = (n - off).min(CHUNK as u64) as usize;
        w.write_all(pattern_at(&table, off, k))?;
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

/// Longest a fetch waits for its hold file to go (see [`Pause`]).
pub const MAX_HOLD: Duration = Duration::from_secs(120);

/// Where a fetch stops reading mid-transfer: after the first 64 KiB, for
/// `min`, then for as long as `hold_file` exists (at most [`MAX_HOLD`]),
/// so that a lab can keep a batch of connections open mid-way until it
/// has acted on them, however slowly the batch got there.
#[derive(Debug, Clone, Default)]
pub struct Pause {
    /// At least this long (zero and no hold file: no pause).
    pub min: Duration,
    /// Then while this file exists.
    pub hold_file: Option<std::path::PathBuf>,
}

impl Pause {
    fn is_none(&self) -> bool {
        self.min.is_zero() && self.hold_file.is_none()
    }

    fn wait(&self) {
        std::thread::sleep(self.min);
        if let Some(f) = &self.hold_file {
            let t0 = Instant::now();
            while f.exists() && t0.elapsed() < MAX_HOLD {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Fetches `bytes` bytes from `server`; fails on reset, timeout (`stall`
/// without progress) or wrong content. With a [`Pause`], stops reading
/// after the first 64 KiB, holding the connection open mid-transfer.
pub fn fetch(server: SocketAddr, bytes: u64, stall: Duration, pause: &Pause) -> FetchResult {
    let start = Instant::now();
    let mut got = 0u64;
    let r = (|| -> Result<(), String> {
        let mut s =
            TcpStream::connect_timeout(&server, stall).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(stall)).map_err(|e| e.to_string())?;
        s.write_all(format!("GET {bytes}\n").as_bytes())
            .map_err(|e| format!("send: {e}"))?;
        let table = pattern_table();
        let mut buf = vec![0u8; CHUNK];
        let mut paused = pause.is_none();
        loop {
            if !paused && got >= 65536 {
                paused = true;
                pause.wait();
            }
            let k = s
                .read(&mut buf)
                .map_err(|e| format!("receive after {got} bytes: {e}"))?;
            if k == 0 {
                break;
            }
            let want = pattern_at(&table, got, k);
            if buf[..k] != *want {
                let i = buf[..k]
                    .iter()
                    .zip(want)
                    .take_while(|(a, b)| a == b)
                    .count();
                return Err(format!("corrupt byte at offset {}", got + i as u64));
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

    /// A server on 127.0.0.1 answering `conns` connections.
    fn local_server(conns: usize) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in l.incoming().take(conns) {
                let _ = answer(c.unwrap());
            }
        });
        addr
    }

    #[test]
    fn fetch_from_local_server_checks_length_and_content() {
        let addr = local_server(2);
        let r = fetch(addr, 100_000, Duration::from_secs(5), &Pause::default());
        assert!(r.ok, "{r:?}");
        assert_eq!(r.bytes, 100_000);
        // A bad request is refused: the server closes without data.
        let r = fetch(
            addr,
            MAX_OBJECT + 1,
            Duration::from_secs(5),
            &Pause::default(),
        );
        assert!(!r.ok);
        assert_eq!(r.bytes, 0);
    }

    #[test]
    fn the_pattern_table_is_the_byte_offset_mod_251() {
        let t = pattern_table();
        for off in [0u64, 1, 250, 251, 252, 1 << 33, (1 << 30) - 7] {
            let got = pattern_at(&t, off, CHUNK);
            for (i, b) in got.iter().enumerate() {
                assert_eq!(u64::from(*b), (off + i as u64) % 251, "offset {off} + {i}");
            }
        }
    }

    /// A server that flips one byte of the pattern: the fetch names it.
    #[test]
    fn a_corrupt_byte_fails_the_fetch_at_its_offset() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut line = [0u8; 64];
            let _ = c.read(&mut line).unwrap();
            let t = pattern_table();
            let mut body: Vec<u8> = (0..3u64)
                .flat_map(|k| pattern_at(&t, k * CHUNK as u64, CHUNK).to_vec())
                .collect();
            body[40_000] ^= 0x80;
            c.write_all(&body).unwrap();
        });
        let r = fetch(
            addr,
            3 * CHUNK as u64,
            Duration::from_secs(5),
            &Pause::default(),
        );
        assert!(!r.ok);
        assert_eq!(r.error.as_deref(), Some("corrupt byte at offset 40000"));
    }

    /// A fetch stays paused mid-transfer while its hold file exists and
    /// completes once the file is gone.
    #[test]
    fn a_hold_file_keeps_the_transfer_paused_until_it_is_removed() {
        let addr = local_server(1);
        let dir = std::env::temp_dir().join(format!("ftfw-hold-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hold = dir.join("hold");
        std::fs::write(&hold, b"").unwrap();
        let pause = Pause {
            min: Duration::ZERO,
            hold_file: Some(hold.clone()),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(fetch(addr, 1_000_000, Duration::from_secs(10), &pause));
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(500)).is_err(),
            "finished while its hold file exists"
        );
        std::fs::remove_file(&hold).unwrap();
        let r = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(r.ok, "{r:?}");
        assert_eq!(r.bytes, 1_000_000);
    }
}
