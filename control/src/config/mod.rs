//! The daemon's TOML configuration, validated up front.
//!
//! [`load`] and [`parse`] turn a configuration file into a plain [`Config`]
//! or into a [`ConfigError`] that lists *every* problem found, each as
//! `FILE:LINE: field: message` (for example
//! `standalone.toml:23: conntrack.capacity: 100 is below the minimum 1024`).
//! The daemon never starts half-configured.
//!
//! How lines are found: the text is parsed once, with `toml_edit`, which
//! keeps spans; every key, table header and array element is indexed by its
//! field path (`port[1].backend`, `rules.rules[3]`, `config/span.rs`), and the raw
//! sections are deserialized from that same document. Syntax errors come
//! with their own span; serde type errors and unknown keys carry a span that
//! is mapped back to the innermost field path containing it; semantic checks
//! look the line up by field path. A field that is absent (for example a
//! missing `interface`) is reported at the line of its table header.
//!
//! One module per section, each with its validated type, its raw (as
//! written) serde type and its checker, a `Checker` method: `daemon`,
//! `dataplane`, `ports` (ports and bridges; `l3` and `dpdk` add the
//! routed-mode and DPDK parts), `conntrack`, `rules`, `sync` and `failover`
//! (the election's timer bounds included) and `cluster` (members, buckets,
//! completing `[sync]` with the peers to replicate to) and `metrics`. `parse` runs them in that order
//! and reports every problem found, sorted by line.
//!
//! The schema, with every key commented, is `configs/standalone.toml`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

mod cluster;
mod cluster_uplinks;
mod conntrack;
mod daemon;
mod dataplane;
mod dpdk;
mod error;
mod failover;
mod l3;
mod metrics;
mod ports;
mod rules;
mod span;
mod sync;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_psk;

pub use cluster::{
    ClusterConfig, ClusterMode, ClusterNode, Replicate, DEFAULT_CLUSTER_PORT, MAX_BACKUPS,
    MAX_NODES,
};
pub use cluster_uplinks::{ClusterUplinks, DEFAULT_UPLINK_TIMEOUT_MS, UPLINK_PROCEDURES};
pub use conntrack::{
    ConntrackConfig, Timeouts, MAX_CAPACITY, MAX_DELTA_RING, MAX_TIMEOUT_SECS, MIN_CAPACITY,
    MIN_DELTA_RING,
};
pub use daemon::{DaemonConfig, LogLevel};
pub use dataplane::{DataplaneConfig, ForwardMode, PollMode, MAX_WORKERS};
pub use dpdk::{DpdkConfig, DpdkPortConfig};
pub use error::{ConfigError, Diagnostic};
pub use failover::{
    ElectionPeer, ElectionSettings, FailoverConfig, FailoverMode, DEFAULT_ELECTION_PORT,
    PROCEDURE_NAMES,
};
pub use l3::{RouteConfig, VirtualAddressConfig};
pub use metrics::MetricsConfig;
pub use ports::{PortBackend, PortConfig};
pub use rules::{Policy, RulesConfig, RulesSource};
pub use sync::{
    SyncConfig, SyncDestination, SyncMode, SyncPeer, SyncPsk, SyncTransport, DEFAULT_ACK_DELAY_US,
    DEFAULT_SYNC_PORT,
};

use conntrack::RawConntrack;
use daemon::RawDaemon;
use dataplane::RawDataplane;
use failover::RawFailover;
use ports::{RawBridge, RawPort};
use rules::RawRules;
use span::{guess_field_at_line, LineIndex, SpanIndex};
use sync::RawSync;

/// Default path of the operator console socket.
pub const DEFAULT_CONSOLE_SOCKET: &str = "/run/ftfw/ftfwd.sock";
/// File name of the state file beside the console socket (`[daemon] state_file`).
pub const DEFAULT_STATE_FILE: &str = "ftfwd.state";

// ---------------------------------------------------------------------------
// Validated configuration
// ---------------------------------------------------------------------------

/// A validated configuration. All paths are absolute or relative to the
/// current directory (relative paths in the file are resolved against the
/// file's directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The file this configuration was read from (as given to [`load`]/[`parse`]).
    pub file: PathBuf,
    /// `[daemon]`.
    pub daemon: DaemonConfig,
    /// `[dataplane]`.
    pub dataplane: DataplaneConfig,
    /// `[[port]]`, in file order. Names are unique.
    pub ports: Vec<PortConfig>,
    /// `[[bridge]]`: pairs of port names; every port is in at most one pair.
    pub bridges: Vec<[String; 2]>,
    /// `[dpdk]`: EAL settings, used when a port has `backend = "dpdk"`.
    pub dpdk: DpdkConfig,
    /// `[[route]]`: static routes (routed mode).
    pub routes: Vec<RouteConfig>,
    /// `[[virtual_address]]` (routed mode).
    pub virtual_addresses: Vec<VirtualAddressConfig>,
    /// `[conntrack]`.
    pub conntrack: ConntrackConfig,
    /// `[rules]`.
    pub rules: RulesConfig,
    /// `[sync]`: state replication, when the section is present and enabled.
    pub sync: Option<SyncConfig>,
    /// `[failover]`.
    pub failover: FailoverConfig,
    /// `[cluster]`: this node is one of a cluster's members.
    pub cluster: Option<ClusterConfig>,
    /// `[metrics]`: the Prometheus endpoint, when the section is present.
    pub metrics: Option<MetricsConfig>,
}

impl Config {
    /// Index of the port named `name` in [`Config::ports`].
    pub fn port_index(&self, name: &str) -> Option<usize> {
        self.ports.iter().position(|p| p.name == name)
    }

    /// The port bridged with `name`, if any.
    pub fn bridge_peer(&self, name: &str) -> Option<&str> {
        self.bridges.iter().find_map(|[a, b]| {
            if a == name {
                Some(b.as_str())
            } else if b == name {
                Some(a.as_str())
            } else {
                None
            }
        })
    }
}

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

/// Reads and validates the configuration at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.to_string_lossy())
}

/// Validates configuration `text` read from `file_name`. Relative paths in
/// the text are resolved against `file_name`'s directory.
pub fn parse(text: &str, file_name: &str) -> Result<Config, ConfigError> {
    let lines = LineIndex::new(text);
    let doc = match toml_edit::ImDocument::parse(text) {
        Ok(d) => d,
        Err(e) => {
            let line = e.span().map_or(1, |s| lines.line(s.start));
            return Err(ConfigError::Invalid(vec![Diagnostic {
                file: file_name.to_string(),
                line,
                field: guess_field_at_line(text, line),
                message: format!("syntax error: {}", first_line(e.message())),
            }]));
        }
    };
    let spans = SpanIndex::new(doc.as_table(), &lines);
    let mut cx = Checker {
        file: file_name.to_string(),
        spans: &spans,
        diags: Vec::new(),
    };

    // One parse: the spans above and the values below come from the same
    // document.
    let raw = match RawConfig::deserialize(toml_edit::de::Deserializer::from(doc)) {
        Ok(r) => r,
        Err(e) => {
            let (line, field) = match e.span() {
                Some(s) => (
                    lines.line(s.start),
                    spans
                        .field_at(s.start)
                        .unwrap_or_else(|| "(top level)".into()),
                ),
                None => (1, "(top level)".into()),
            };
            cx.diags.push(Diagnostic {
                file: file_name.to_string(),
                line,
                field,
                message: first_line(e.message()).to_string(),
            });
            return Err(ConfigError::Invalid(cx.diags));
        }
    };

    let base = Path::new(file_name)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let config = cx.validate(raw, &base, file_name);
    if cx.diags.is_empty() {
        Ok(config)
    } else {
        cx.diags.sort_by_key(|d| d.line);
        Err(ConfigError::Invalid(cx.diags))
    }
}

fn first_line(s: &str) -> &str {
    s.trim().lines().next().unwrap_or("")
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

// ---------------------------------------------------------------------------
// Raw (as written) configuration
// ---------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    dataplane: RawDataplane,
    #[serde(default)]
    port: Vec<RawPort>,
    #[serde(default)]
    bridge: Vec<RawBridge>,
    #[serde(default)]
    route: Vec<l3::RawRoute>,
    #[serde(default)]
    virtual_address: Vec<l3::RawVirtualAddress>,
    #[serde(default)]
    conntrack: RawConntrack,
    #[serde(default)]
    rules: RawRules,
    sync: Option<RawSync>,
    #[serde(default)]
    failover: RawFailover,
    #[serde(default)]
    dpdk: dpdk::RawDpdk,
    cluster: Option<cluster::RawCluster>,
    metrics: Option<metrics::RawMetrics>,
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

struct Checker<'a> {
    file: String,
    spans: &'a SpanIndex,
    diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn error(&mut self, field: &str, message: impl Into<String>) {
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            line: self.spans.line_of(field),
            field: field.to_string(),
            message: message.into(),
        });
    }

    /// Checks `v` is within `min..=max`, reporting against `field`.
    fn range(&mut self, field: &str, v: i64, min: u64, max: u64) -> Option<u64> {
        if v < 0 || (v as u64) < min {
            self.error(field, format!("{v} is below the minimum {min}"));
            None
        } else if v as u64 > max {
            self.error(field, format!("{v} is above the maximum {max}"));
            None
        } else {
            Some(v as u64)
        }
    }

    fn ip(&mut self, field: &str, v: &str) -> Option<std::net::IpAddr> {
        match v.parse::<std::net::IpAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.error(field, format!("{v:?} is not an IPv4 or IPv6 address"));
                None
            }
        }
    }

    fn validate(&mut self, raw: RawConfig, base: &Path, file_name: &str) -> Config {
        let daemon = self.daemon(raw.daemon, base);
        let dataplane = self.dataplane(raw.dataplane);
        let mut p = self.ports(raw.port, raw.dpdk);
        let routed = dataplane.mode == ForwardMode::Routed;
        let (routes, virtual_addresses) =
            self.validate_l3(routed, &mut p.ports, p.l3, raw.route, raw.virtual_address);
        let bridges = self.bridges(raw.bridge, routed, &p.names);
        let conntrack = self.conntrack(&raw.conntrack, dataplane.workers);
        let rules = self.rules(raw.rules, base);
        let mut sync = self.sync(
            raw.sync,
            &conntrack,
            dataplane.cores.as_deref(),
            raw.cluster.is_some(),
            base,
        );
        let failover = self.failover(&raw.failover, sync.is_some(), base, &p.names);
        let cluster = self.cluster(
            raw.cluster,
            sync.as_mut(),
            failover.mode == FailoverMode::Election,
            routed.then_some(virtual_addresses.len()),
            &p.names,
            base,
        );
        let metrics = self.metrics(raw.metrics);
        Config {
            file: PathBuf::from(file_name),
            daemon,
            dataplane,
            ports: p.ports,
            bridges,
            dpdk: p.dpdk,
            routes,
            virtual_addresses,
            conntrack,
            rules,
            sync,
            failover,
            cluster,
            metrics,
        }
    }
}
