//! `ftfw-lab netns failover --ftp`: the crash comes in the middle of FTP
//! data transfers through source NAT (issue 14).
//!
//! The firewalls are routers (`--ftp` implies `--routed`) with the rules
//! an FTP gateway has: the control connection to port 2121 gets the FTP
//! helper, related data connections are accepted, and everything from the
//! client's subnet leaves `inside` translated to the pair's virtual
//! address 198.51.100.254. The server has no route to the client's subnet,
//! so nothing works unless it sees that address, and after the crash only
//! fw2's copy of each translation (and of the control connection's
//! sequence adjustment, when a PORT or EPRT was rewritten to a longer
//! address) can carry the rest of a transfer. Each transfer runs one mode
//! (PASV, PORT, EPSV, EPRT in turn) with Python's ftplib against a small
//! server; the server sends half of the file, then waits while the lab's
//! pause file exists: fw1 is killed once every transfer waits there and
//! fw1 has nothing left to replicate, and the pause ends when fw2 is
//! active. A transfer completes when all its bytes arrived intact and the
//! control connection then said `226` and `221`.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use anyhow::Context;

use super::Lab;

/// The FTP server and client (also used by `tests/netns_ftp.rs`).
const SERVER_PY: &str = include_str!("../../tests/netns_ftp/server.py");
const CLIENT_PY: &str = include_str!("../../tests/netns_ftp/client.py");

/// The modes the transfers take in turn.
pub(super) const MODES: [&str; 4] = ["pasv", "port", "epsv", "eprt"];

/// The server's address and control port.
pub(super) const SERVER: &str = "198.51.100.2";
const PORT: &str = "2121";

/// The rules of both firewalls.
pub(super) fn rules() -> &'static str {
    "\"accept ct established,related\", \
     \"accept in outside proto tcp dport 2121 helper ftp\", \
     \"accept proto icmp\", \
     \"nat src out inside to 198.51.100.254\""
}

/// Where the scripts and the server's pause files are.
pub(super) struct Ftp {
    client: PathBuf,
    pause_dir: PathBuf,
}

impl Ftp {
    /// Writes the scripts into the lab's directory and starts the server
    /// (sending `bytes` per retrieval) in namespace `s`.
    pub(super) fn start(lab: &mut Lab, bytes: u64) -> anyhow::Result<Ftp> {
        let dir = lab.dir().to_path_buf();
        let (server, client) = (dir.join("ftp_server.py"), dir.join("ftp_client.py"));
        std::fs::write(&server, SERVER_PY)?;
        std::fs::write(&client, CLIENT_PY)?;
        let pause_dir = dir.join("ftp_pause");
        std::fs::create_dir_all(&pause_dir)?;
        let size = bytes.to_string();
        let args = [
            server.to_str().unwrap_or_default(),
            SERVER,
            PORT,
            size.as_str(),
            pause_dir.to_str().unwrap_or_default(),
        ];
        lab.spawn(&lab.ns("s"), Path::new("python3"), &args, "ftp_server.out")
            .context("python3 is needed for --ftp")?;
        Ok(Ftp { client, pause_dir })
    }

    /// Starts one retrieval of `bytes` in `mode` from namespace `c`.
    pub(super) fn retrieve(&self, lab: &Lab, mode: &str, bytes: u64) -> anyhow::Result<Child> {
        lab.net
            .command(&lab.ns("c"), "python3")
            .args([
                self.client.to_str().unwrap_or_default(),
                SERVER,
                PORT,
                mode,
                &bytes.to_string(),
                "30",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting an FTP client")
    }

    /// From now on each retrieval pauses half-way until [`Ftp::resume`].
    pub(super) fn pause(&self) -> anyhow::Result<()> {
        std::fs::write(self.pause_dir.join("pause"), b"")?;
        Ok(())
    }

    /// Retrievals waiting in the pause (or past it).
    pub(super) fn paused(&self) -> usize {
        std::fs::read_dir(&self.pause_dir).map_or(0, |d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("paused-"))
                .count()
        })
    }

    /// Lets the paused retrievals finish.
    pub(super) fn resume(&self) -> anyhow::Result<()> {
        std::fs::remove_file(self.pause_dir.join("pause"))?;
        Ok(())
    }
}

/// A retrieval's report: `{"ok", "bytes", "error", "mode"}`.
pub(super) fn result(child: Child) -> serde_json::Value {
    match child.wait_with_output() {
        Ok(out) => serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            serde_json::json!({
                "ok": false,
                "error": String::from_utf8_lossy(&out.stderr).to_string(),
            })
        }),
        Err(e) => serde_json::json!({"ok": false, "error": e.to_string()}),
    }
}
