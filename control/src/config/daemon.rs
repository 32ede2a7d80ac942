//! `[daemon]`: the console socket, the log level and the state file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{resolve, Checker, DEFAULT_CONSOLE_SOCKET, DEFAULT_STATE_FILE};

/// `[daemon]`: process-level settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Unix socket of the operator console.
    pub console_socket: PathBuf,
    /// Log level.
    pub log_level: LogLevel,
    /// Where a standalone node keeps its flow table so that connections
    /// survive a crash or restart of ftfwd (`None`: not kept). Default:
    /// `ftfwd.state` beside the console socket.
    pub state_file: Option<PathBuf>,
}

/// Log verbosity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Normal operation.
    Info,
    /// Debugging.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The name as written in the file (and as `tracing` filters take it).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawDaemon {
    pub(super) console_socket: String,
    pub(super) log_level: LogLevel,
    pub(super) state_file: Option<String>,
}

impl Default for RawDaemon {
    fn default() -> Self {
        RawDaemon {
            console_socket: DEFAULT_CONSOLE_SOCKET.into(),
            log_level: LogLevel::Info,
            state_file: None,
        }
    }
}

impl Checker<'_> {
    /// Checks `[daemon]`.
    pub(super) fn daemon(&mut self, raw: RawDaemon, base: &Path) -> DaemonConfig {
        if raw.console_socket.is_empty() {
            self.error("daemon.console_socket", "must not be empty");
        }
        let console_socket = resolve(base, &raw.console_socket);
        let state_file = match raw.state_file.as_deref() {
            // "" turns the state file off.
            Some("") => None,
            Some(p) => Some(resolve(base, p)),
            None => Some(console_socket.with_file_name(DEFAULT_STATE_FILE)),
        };
        DaemonConfig {
            console_socket,
            log_level: raw.log_level,
            state_file,
        }
    }
}
