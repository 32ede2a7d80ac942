//! The blocking console client `ftfwctl` uses: connect, send a request line,
//! read one response line.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::proto::{Request, Response};

/// Default time to wait for ftfwd, per read or write.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a console request failed before a response arrived.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens at the socket path.
    #[error("ftfwd is not running (no console at {})", path.display())]
    NotRunning {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket exists but this user may not use it.
    #[error("permission denied on the console socket {} (run as root or as a member of its group)", path.display())]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
    },
    /// ftfwd did not answer in time.
    #[error("ftfwd did not answer within {} s", timeout.as_secs_f32())]
    Timeout {
        /// The timeout.
        timeout: Duration,
    },
    /// ftfwd closed the connection without a response.
    #[error("ftfwd closed the console connection without answering")]
    Closed,
    /// The response was not valid.
    #[error("malformed response from ftfwd: {0}")]
    Malformed(String),
    /// Another I/O error.
    #[error("console {}: {source}", path.display())]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl ClientError {
    /// Whether the error means ftfwd is not running.
    pub fn is_not_running(&self) -> bool {
        matches!(self, ClientError::NotRunning { .. })
    }
}

/// A connection to the console.
#[derive(Debug)]
pub struct ConsoleClient {
    path: PathBuf,
    timeout: Duration,
    reader: BufReader<UnixStream>,
}

impl ConsoleClient {
    /// Connects to the console at `path`; `timeout` bounds each read and
    /// write.
    pub fn connect(path: &Path, timeout: Duration) -> Result<ConsoleClient, ClientError> {
        let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => ClientError::NotRunning {
                path: path.to_path_buf(),
            },
            io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
                path: path.to_path_buf(),
            },
            _ => ClientError::Io {
                path: path.to_path_buf(),
                source: e,
            },
        })?;
        let io_err = |source| ClientError::Io {
            path: path.to_path_buf(),
            source,
        };
        stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
        stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
        Ok(ConsoleClient {
            path: path.to_path_buf(),
            timeout,
            reader: BufReader::new(stream),
        })
    }

    /// Sends `req` and returns the response as raw JSON (an object with
    /// `ok`), for `--json` output.
    pub fn call_value(&mut self, req: &Request) -> Result<serde_json::Value, ClientError> {
        let mut line =
            serde_json::to_vec(req).map_err(|e| ClientError::Malformed(e.to_string()))?;
        line.push(b'\n');
        self.reader
            .get_mut()
            .write_all(&line)
            .map_err(|e| self.map_io(e))?;
        let mut buf = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| self.map_io(e))?;
        if n == 0 || buf.last() != Some(&b'\n') {
            return Err(ClientError::Closed);
        }
        let v: serde_json::Value =
            serde_json::from_slice(&buf).map_err(|e| ClientError::Malformed(e.to_string()))?;
        if !v.get("ok").is_some_and(serde_json::Value::is_boolean) {
            return Err(ClientError::Malformed("no boolean \"ok\" field".into()));
        }
        Ok(v)
    }

    /// Sends `req` and returns the typed response.
    pub fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        let v = self.call_value(req)?;
        serde_json::from_value(v).map_err(|e| ClientError::Malformed(e.to_string()))
    }

    fn map_io(&self, e: io::Error) -> ClientError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
                timeout: self.timeout,
            },
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => ClientError::Closed,
            _ => ClientError::Io {
                path: self.path.clone(),
                source: e,
            },
        }
    }
}

/// Connects to `path`, sends `req` and returns the response.
pub fn request(path: &Path, req: &Request, timeout: Duration) -> Result<Response, ClientError> {
    ConsoleClient::connect(path, timeout)?.call(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_socket_means_not_running() {
        let p = Path::new("/nonexistent/ftfw/ftfwd.sock");
        let e = request(p, &Request::Status, DEFAULT_TIMEOUT).unwrap_err();
        assert!(e.is_not_running());
        assert_eq!(
            e.to_string(),
            "ftfwd is not running (no console at /nonexistent/ftfw/ftfwd.sock)"
        );
    }

    #[test]
    fn refused_socket_means_not_running() {
        let dir = std::env::temp_dir().join(format!("ftfw-client-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("dead.sock");
        let _ = std::fs::remove_file(&p);
        drop(std::os::unix::net::UnixListener::bind(&p).unwrap());
        let e = request(&p, &Request::Status, DEFAULT_TIMEOUT).unwrap_err();
        assert!(e.is_not_running(), "{e}");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn silent_server_times_out_and_answer_is_read() {
        let dir = std::env::temp_dir().join(format!("ftfw-client-test2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("slow.sock");
        let _ = std::fs::remove_file(&p);
        let l = std::os::unix::net::UnixListener::bind(&p).unwrap();
        let t = std::thread::spawn(move || {
            let (silent, _) = l.accept().unwrap();
            let (mut s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "{\"cmd\":\"stats\"}\n");
            s.write_all(b"{\"ok\":false,\"error\":\"nope\"}\n").unwrap();
            drop(silent);
        });
        let e = request(&p, &Request::Status, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
        let r = request(&p, &Request::Stats, DEFAULT_TIMEOUT).unwrap();
        assert_eq!(r, Response::error("nope"));
        t.join().unwrap();
        std::fs::remove_file(&p).unwrap();
    }
}
