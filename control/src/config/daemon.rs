//! `[daemon]`: the console socket and the log level.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{resolve, Checker, DEFAULT_CONSOLE_SOCKET};

/// `[daemon]`: process-level settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Unix socket of the operator console.
    pub console_socket: PathBuf,
    /// Log level.
    pub log_level: LogLevel,
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
}

impl Default for RawDaemon {
    fn default() -> Self {
        RawDaemon {
            console_socket: DEFAULT_CONSOLE_SOCKET.into(),
            log_level: LogLevel::Info,
        }
    }
}

impl Checker<'_> {
    /// Checks `[daemon]`.
    pub(super) fn daemon(&mut self, raw: RawDaemon, base: &Path) -> DaemonConfig {
        if raw.console_socket.is_empty() {
            self.error("daemon.console_socket", "must not be empty");
        }
        DaemonConfig {
            console_socket: resolve(base, &raw.console_socket),
            log_level: raw.log_level,
        }
    }
}
