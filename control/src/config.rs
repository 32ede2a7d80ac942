//! The daemon's TOML configuration, validated up front.
//!
//! [`load`] and [`parse`] turn a configuration file into a plain [`Config`]
//! or into a [`ConfigError`] that lists *every* problem found, each as
//! `FILE:LINE: field: message` (for example
//! `standalone.toml:23: conntrack.capacity: 100 is below the minimum 1024`).
//! The daemon never starts half-configured.
//!
//! How lines are found: the text is parsed once with `toml_edit`, which keeps
//! spans, and every key, table header and array element is indexed by its
//! field path (`port[1].backend`, `rules.rules[3]`). Syntax errors come with
//! their own span; serde type errors and unknown keys carry a span that is
//! mapped back to the innermost field path containing it; semantic checks
//! look the line up by field path. A field that is absent (for example a
//! missing `interface`) is reported at the line of its table header.
//!
//! The schema, with every key commented, is `configs/standalone.toml`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod dpdk;
pub use dpdk::{DpdkConfig, DpdkPortConfig};
mod l3;
pub use l3::{RouteConfig, VirtualAddressConfig};

/// Default path of the operator console socket.
pub const DEFAULT_CONSOLE_SOCKET: &str = "/run/ftfw/ftfwd.sock";
/// Most worker threads a configuration may ask for.
pub const MAX_WORKERS: usize = 64;
/// Smallest total flow capacity.
pub const MIN_CAPACITY: u64 = 1024;
/// Largest total flow capacity.
pub const MAX_CAPACITY: u64 = 64 * 1024 * 1024;
/// Smallest per-worker delta ring.
pub const MIN_DELTA_RING: u64 = 16;
/// Largest per-worker delta ring.
pub const MAX_DELTA_RING: u64 = 1 << 20;
/// Largest conntrack timeout in seconds (ten years).
pub const MAX_TIMEOUT_SECS: u64 = 10 * 365 * 86400;

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
}

/// `[failover]`: who decides whether this node forwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverConfig {
    /// The detector.
    pub mode: FailoverMode,
    /// The built-in election (`mode = "election"`).
    pub election: Option<ElectionSettings>,
}

/// Default UDP port of election messages (on the sync link's address).
pub const DEFAULT_ELECTION_PORT: u16 = 3781;

/// `[failover]` keys of `mode = "election"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionSettings {
    /// This node's id, unique in the cluster (1 to 32767).
    pub node: u32,
    /// Preference for the primary role (higher wins), 1 to 255.
    pub priority: u8,
    /// Pre-shared key authenticating election messages (at least 16 bytes).
    pub key: Vec<u8>,
    /// UDP port, the same on every node; bound on `sync.local`.
    pub port: u16,
    /// The other nodes.
    pub peers: Vec<ElectionPeer>,
    /// SVC_CHECK interval of the first backup.
    pub check_interval: std::time::Duration,
    /// Hand the primary role to a synced node of higher priority.
    pub preempt: bool,
    /// Time limit of an action (commit + forward is the longest).
    pub action_timeout: std::time::Duration,
    /// Ports whose link must be up for the downstream check (all when empty).
    pub downlinks: Vec<String>,
    /// Ports whose link must be up for the upstream check (all when empty).
    pub uplinks: Vec<String>,
    /// Operator scripts replacing built-in procedures, by procedure name
    /// (`downlink_check`, `takeover_upstream`, ...).
    pub scripts: Vec<(String, PathBuf)>,
}

/// Another node of the election.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionPeer {
    /// Its id.
    pub node: u32,
    /// Its address (on its sync link).
    pub address: std::net::IpAddr,
    /// Its configured priority.
    pub priority: u8,
}

/// Who decides whether this node forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailoverMode {
    /// Nobody: the node always forwards (standalone, or replication only).
    None,
    /// keepalived (VRRP): the node starts as a backup and its notify
    /// scripts call `ftfwctl notify master|backup|fault`.
    Keepalived,
    /// The built-in hot-failover election over the sync link.
    Election,
}

impl FailoverMode {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            FailoverMode::None => "none",
            FailoverMode::Keepalived => "keepalived",
            FailoverMode::Election => "election",
        }
    }
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

/// `[dataplane]`: workers and forwarding mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Worker threads, `1..=`[`MAX_WORKERS`].
    pub workers: usize,
    /// CPU core per worker (same length as `workers`, no duplicates), or
    /// `None` to leave placement to the OS.
    pub cores: Option<Vec<usize>>,
    /// How idle workers wait.
    pub poll_mode: PollMode,
    /// Forwarding mode.
    pub mode: ForwardMode,
    /// Non-IP ethertypes forwarded unfiltered in transparent mode
    /// (`pass_ethertypes`, names or hex; default ARP and LLDP). Every other
    /// non-IP frame is dropped and counted.
    pub pass_ethertypes: ftfw_dataplane::worker::PassEthertypes,
}

/// How a worker waits when its ports are idle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PollMode {
    /// Spin, then yield, then sleep on the port until frames arrive.
    Adaptive,
    /// Spin forever (lowest latency, one full core per worker).
    Busy,
}

impl PollMode {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            PollMode::Adaptive => "adaptive",
            PollMode::Busy => "busy",
        }
    }
}

/// Forwarding mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardMode {
    /// Bump in the wire: frames entering one port of a bridge leave the other.
    Transparent,
    /// An IP router: ARP / neighbor discovery, connected and static routes.
    Routed,
}

impl ForwardMode {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardMode::Transparent => "transparent",
            ForwardMode::Routed => "routed",
        }
    }
}

/// `[[port]]`: one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// Operator-facing name, unique, `[a-z0-9_-]{1,15}`.
    pub name: String,
    /// Backend and its parameters.
    pub backend: PortBackend,
    /// Conntrack zone of flows entering through this port.
    pub zone: u16,
    /// Own addresses with their prefixes (routed mode; connected routes).
    pub addresses: Vec<ftfw_dataplane::l3::Prefix>,
    /// MAC to use instead of the interface's (routed mode).
    pub mac: Option<[u8; 6]>,
}

/// A port backend with its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortBackend {
    /// TPACKET_V3 ring on a Linux interface.
    AfPacket {
        /// Interface name.
        interface: String,
    },
    /// In-process rings (lab and tests only).
    Mem,
    /// A DPDK poll-mode driver (ftfwd built with `--features dpdk`).
    Dpdk(DpdkPortConfig),
}

impl PortBackend {
    /// The backend name as written in the file.
    pub fn name(&self) -> &'static str {
        match self {
            PortBackend::AfPacket { .. } => "af_packet",
            PortBackend::Mem => "mem",
            PortBackend::Dpdk(_) => "dpdk",
        }
    }

    /// The interface, for backends that have one.
    pub fn interface(&self) -> Option<&str> {
        match self {
            PortBackend::AfPacket { interface } => Some(interface),
            PortBackend::Mem | PortBackend::Dpdk(_) => None,
        }
    }
}

/// `[conntrack]`: the flow table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Total flows, split evenly over the workers.
    pub capacity: usize,
    /// Accept out-of-window TCP packets instead of marking them invalid.
    pub tcp_be_liberal: bool,
    /// Pick up TCP connections mid-stream.
    pub tcp_loose: bool,
    /// Per-worker state-delta ring slots (a power of two).
    pub delta_ring: usize,
    /// Timeouts per protocol state.
    pub timeouts: Timeouts,
}

/// Conntrack timeouts in seconds (Linux defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP SYN_SENT.
    pub tcp_syn_sent: u32,
    /// TCP SYN_RECV.
    pub tcp_syn_recv: u32,
    /// TCP ESTABLISHED.
    pub tcp_established: u32,
    /// TCP FIN_WAIT.
    pub tcp_fin_wait: u32,
    /// TCP CLOSE_WAIT.
    pub tcp_close_wait: u32,
    /// TCP LAST_ACK.
    pub tcp_last_ack: u32,
    /// TCP TIME_WAIT.
    pub tcp_time_wait: u32,
    /// TCP CLOSE.
    pub tcp_close: u32,
    /// TCP SYN_SENT2.
    pub tcp_syn_sent2: u32,
    /// UDP, one direction seen.
    pub udp: u32,
    /// UDP, both directions seen.
    pub udp_stream: u32,
    /// ICMP.
    pub icmp: u32,
    /// Any other protocol.
    pub generic: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn_sent: 120,
            tcp_syn_recv: 60,
            tcp_established: 432000,
            tcp_fin_wait: 120,
            tcp_close_wait: 60,
            tcp_last_ack: 30,
            tcp_time_wait: 120,
            tcp_close: 10,
            tcp_syn_sent2: 120,
            udp: 30,
            udp_stream: 120,
            icmp: 30,
            generic: 600,
        }
    }
}

/// `[rules]`: default policy and where the rules come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesConfig {
    /// Verdict for packets no rule matches.
    pub policy: Policy,
    /// Where the rules are.
    pub source: RulesSource,
}

/// A default policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Forward.
    Accept,
    /// Drop silently.
    Drop,
    /// Drop and answer with a TCP RST or ICMP unreachable.
    Reject,
}

impl Policy {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::Accept => "accept",
            Policy::Drop => "drop",
            Policy::Reject => "reject",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Default FT-FW UDP port (conntrackd's `Port 3780`).
pub const DEFAULT_SYNC_PORT: u16 = 3780;

/// `[sync]`: replication of flow state to a peer with FT-FW, in conntrackd
/// 1.4.7's wire format, over a dedicated link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncConfig {
    /// What happens to state received from the peer.
    pub mode: SyncMode,
    /// Our address on the dedicated link (the socket binds to it; for
    /// IPv4 multicast it also picks the outgoing interface).
    pub local: std::net::IpAddr,
    /// Where our messages go: the peer's unicast address or a multicast
    /// group.
    pub destination: SyncDestination,
    /// UDP port, the same on both sides (conntrackd's `Port`).
    pub port: u16,
    /// Interface of the dedicated link: the socket is bound to it, and
    /// IPv6 multicast uses it.
    pub interface: Option<String>,
    /// Link MTU: datagrams stay below `mtu - 28` bytes of payload.
    pub mtu: usize,
    /// Messages between two ACKs (conntrackd's `ACKWindowSize`).
    pub ack_window: u32,
    /// Messages kept for retransmission (conntrackd's `ResendQueueSize`).
    pub resend_queue: usize,
    /// Interval of ALIVE messages and periodic ACKs.
    pub alive_interval: std::time::Duration,
    /// Longest wait before a partly filled datagram is sent.
    pub flush_delay: std::time::Duration,
    /// Flows the external cache may hold.
    pub external_capacity: usize,
    /// Core to pin the sync thread to.
    pub core: Option<usize>,
    /// Ask the peer for its whole table when we start (conntrackd does
    /// this with `StartupResync on`).
    pub startup_resync: bool,
    /// How messages travel: FT-FW over UDP, best effort over UDP, or best
    /// effort over TCP.
    pub transport: SyncTransport,
    /// Hold the first packet of a new flow until the peer acknowledged the
    /// flow (pfsync's `defer`), while the peer is up and we forward.
    pub defer: bool,
    /// Longest a first packet is held (`defer_timeout_ms`).
    pub defer_timeout: std::time::Duration,
    /// Prompt ACK of received flows (`ack_delay_us`; with `defer` on it
    /// defaults to [`DEFAULT_ACK_DELAY_US`]); `None`: conntrackd's ACK
    /// window and alive timer only.
    pub ack_delay: Option<std::time::Duration>,
}

/// `[sync] transport`: the protocol and carrier of replication, the three
/// the FT-FW paper compares (section 7.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncTransport {
    /// FT-FW over UDP (unicast or multicast): ACK/NACK and retransmission.
    #[default]
    Ftfw,
    /// The same datagrams without reliability (conntrackd `Mode NOTRACK`
    /// over `UDP`).
    UdpBestEffort,
    /// Best effort carried by TCP connections (conntrackd `Mode NOTRACK`
    /// over `TCP`); unicast only.
    Tcp,
}

impl SyncTransport {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncTransport::Ftfw => "ftfw",
            SyncTransport::UdpBestEffort => "udp-best-effort",
            SyncTransport::Tcp => "tcp",
        }
    }

    /// Whether the engine runs FT-FW (otherwise best effort).
    pub fn reliable(self) -> bool {
        self == SyncTransport::Ftfw
    }
}

/// Prompt ACK delay used when `defer = true` and `ack_delay_us` is not
/// given: well below a LAN round trip plus the sync thread's wakeup.
pub const DEFAULT_ACK_DELAY_US: u64 = 100;

/// What the receive side does with the peer's flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncMode {
    /// Keep them in an external cache until `commit` (conntrackd's default).
    ExternalCache,
    /// Inject them straight into the shard that owns each flow.
    Direct,
}

impl SyncMode {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::ExternalCache => "external-cache",
            SyncMode::Direct => "direct",
        }
    }
}

/// Where FT-FW datagrams are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncDestination {
    /// One peer by unicast (conntrackd's `UDP` block).
    Unicast(std::net::IpAddr),
    /// A multicast group (conntrackd's `Multicast` block).
    Multicast(std::net::IpAddr),
}

impl SyncDestination {
    /// The address.
    pub fn addr(&self) -> std::net::IpAddr {
        match *self {
            SyncDestination::Unicast(a) | SyncDestination::Multicast(a) => a,
        }
    }
}

/// Where the rule set comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RulesSource {
    /// A rules file (one rule per line); reloadable.
    File(PathBuf),
    /// Inline rules from the configuration, each with its line in the
    /// configuration file (1-based) so the rule parser can point at it.
    Inline(Vec<(usize, String)>),
    /// No rules: the default policy applies to everything.
    None,
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// File name as given to [`load`] or [`parse`].
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// Field path, e.g. `port[1].backend` or `conntrack.capacity`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.field, self.message
        )
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is invalid; every problem found, in line order.
    #[error("{}", display_diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// The diagnostics, empty for I/O errors.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Io { .. } => &[],
            ConfigError::Invalid(d) => d,
        }
    }
}

fn display_diagnostics(d: &[Diagnostic]) -> String {
    d.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
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

    let raw: RawConfig = match toml::from_str(text) {
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailover {
    mode: FailoverMode,
    node: Option<i64>,
    priority: Option<i64>,
    key: Option<String>,
    key_file: Option<String>,
    port: Option<i64>,
    #[serde(default)]
    peer: Vec<RawElectionPeer>,
    check_interval_ms: Option<i64>,
    #[serde(default)]
    preempt: bool,
    action_timeout_ms: Option<i64>,
    #[serde(default)]
    downlinks: Vec<String>,
    #[serde(default)]
    uplinks: Vec<String>,
    #[serde(default)]
    scripts: std::collections::BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawElectionPeer {
    node: i64,
    address: String,
    #[serde(default = "default_peer_priority")]
    priority: i64,
}

fn default_peer_priority() -> i64 {
    100
}

impl Default for RawFailover {
    fn default() -> Self {
        RawFailover {
            mode: FailoverMode::None,
            node: None,
            priority: None,
            key: None,
            key_file: None,
            port: None,
            peer: Vec::new(),
            check_interval_ms: None,
            preempt: false,
            action_timeout_ms: None,
            downlinks: Vec::new(),
            uplinks: Vec::new(),
            scripts: Default::default(),
        }
    }
}

/// Procedure names an operator script may replace.
pub const PROCEDURE_NAMES: [&str; 12] = [
    "downlink_check",
    "uplink_check",
    "remote_svc_check",
    "local_svc_check",
    "activate_uplink",
    "deactivate_uplink",
    "activate_service",
    "deactivate_service",
    "takeover_downstream",
    "takeover_upstream",
    "release_downstream",
    "release_upstream",
];

fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default = "default_sync_mode")]
    mode: SyncMode,
    local: Option<String>,
    peer: Option<String>,
    multicast_group: Option<String>,
    #[serde(default = "default_sync_port")]
    port: i64,
    interface: Option<String>,
    #[serde(default = "default_mtu")]
    mtu: i64,
    #[serde(default = "default_ack_window")]
    ack_window: i64,
    #[serde(default = "default_resend_queue")]
    resend_queue: i64,
    #[serde(default = "default_alive_ms")]
    alive_interval_ms: i64,
    #[serde(default = "default_flush_us")]
    flush_delay_us: i64,
    external_capacity: Option<i64>,
    core: Option<i64>,
    #[serde(default = "yes")]
    startup_resync: bool,
    #[serde(default)]
    transport: SyncTransport,
    #[serde(default)]
    defer: bool,
    #[serde(default = "default_defer_timeout_ms")]
    defer_timeout_ms: i64,
    ack_delay_us: Option<i64>,
}

fn default_defer_timeout_ms() -> i64 {
    10
}

fn yes() -> bool {
    true
}
fn default_sync_mode() -> SyncMode {
    SyncMode::ExternalCache
}
fn default_sync_port() -> i64 {
    i64::from(DEFAULT_SYNC_PORT)
}
fn default_mtu() -> i64 {
    1500
}
fn default_ack_window() -> i64 {
    300
}
fn default_resend_queue() -> i64 {
    131_072
}
fn default_alive_ms() -> i64 {
    1000
}
fn default_flush_us() -> i64 {
    200
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDaemon {
    console_socket: String,
    log_level: LogLevel,
}

impl Default for RawDaemon {
    fn default() -> Self {
        RawDaemon {
            console_socket: DEFAULT_CONSOLE_SOCKET.into(),
            log_level: LogLevel::Info,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDataplane {
    workers: i64,
    cores: Option<Vec<i64>>,
    poll_mode: PollMode,
    mode: ForwardMode,
    pass_ethertypes: Vec<String>,
}

impl Default for RawDataplane {
    fn default() -> Self {
        RawDataplane {
            workers: 1,
            cores: None,
            poll_mode: PollMode::Adaptive,
            mode: ForwardMode::Transparent,
            pass_ethertypes: vec!["arp".into(), "lldp".into()],
        }
    }
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RawBackend {
    AfPacket,
    Mem,
    Dpdk,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: String,
    backend: RawBackend,
    interface: Option<String>,
    device: Option<String>,
    #[serde(default)]
    zone: i64,
    addresses: Option<Vec<String>>,
    mac: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBridge {
    ports: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConntrack {
    capacity: i64,
    tcp_be_liberal: bool,
    tcp_loose: bool,
    delta_ring: i64,
    timeouts: RawTimeouts,
}

impl Default for RawConntrack {
    fn default() -> Self {
        RawConntrack {
            capacity: 262144,
            tcp_be_liberal: false,
            tcp_loose: false,
            delta_ring: 8192,
            timeouts: RawTimeouts::default(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTimeouts {
    tcp_syn_sent: Option<i64>,
    tcp_syn_recv: Option<i64>,
    tcp_established: Option<i64>,
    tcp_fin_wait: Option<i64>,
    tcp_close_wait: Option<i64>,
    tcp_last_ack: Option<i64>,
    tcp_time_wait: Option<i64>,
    tcp_close: Option<i64>,
    tcp_syn_sent2: Option<i64>,
    udp: Option<i64>,
    udp_stream: Option<i64>,
    icmp: Option<i64>,
    generic: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRules {
    policy: Policy,
    file: Option<String>,
    rules: Option<Vec<String>>,
}

impl Default for RawRules {
    fn default() -> Self {
        RawRules {
            policy: Policy::Drop,
            file: None,
            rules: None,
        }
    }
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

    fn validate(&mut self, raw: RawConfig, base: &Path, file_name: &str) -> Config {
        // [daemon]
        if raw.daemon.console_socket.is_empty() {
            self.error("daemon.console_socket", "must not be empty");
        }
        let daemon = DaemonConfig {
            console_socket: resolve(base, &raw.daemon.console_socket),
            log_level: raw.daemon.log_level,
        };

        // [dataplane]
        let workers = self
            .range(
                "dataplane.workers",
                raw.dataplane.workers,
                1,
                MAX_WORKERS as u64,
            )
            .unwrap_or(1);
        let workers = usize::try_from(workers).unwrap_or(1);
        let cores = raw.dataplane.cores.map(|cores| {
            if cores.len() != workers {
                self.error(
                    "dataplane.cores",
                    format!("has {} entries but dataplane.workers is {workers}; give one core per worker", cores.len()),
                );
            }
            let mut seen = HashSet::new();
            let mut out = Vec::with_capacity(cores.len());
            for (i, &c) in cores.iter().enumerate() {
                let field = format!("dataplane.cores[{i}]");
                if let Some(c) = self.range(&field, c, 0, 4095) {
                    if !seen.insert(c) {
                        self.error(&field, format!("core {c} is given to two workers"));
                    }
                    out.push(usize::try_from(c).unwrap_or(0));
                }
            }
            out
        });
        let pass_ethertypes =
            ftfw_dataplane::worker::PassEthertypes::parse(&raw.dataplane.pass_ethertypes)
                .unwrap_or_else(|e| {
                    self.error("dataplane.pass_ethertypes", e.to_string());
                    ftfw_dataplane::worker::PassEthertypes::DEFAULT
                });
        let dataplane = DataplaneConfig {
            workers,
            cores,
            poll_mode: raw.dataplane.poll_mode,
            mode: raw.dataplane.mode,
            pass_ethertypes,
        };

        // [dpdk]
        let (dpdk, dpdk_sizes) = self.dpdk_section(raw.dpdk);
        let mut dpdk_devices = HashMap::new();

        // [[port]]
        let mut ports = Vec::with_capacity(raw.port.len());
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut interfaces: HashMap<String, usize> = HashMap::new();
        if raw.port.is_empty() {
            self.error(
                "port",
                "no [[port]] is configured; a transparent appliance needs at least two",
            );
        }
        let mut port_l3 = Vec::with_capacity(raw.port.len());
        for (i, p) in raw.port.into_iter().enumerate() {
            port_l3.push((p.addresses, p.mac));
            let field = |k: &str| format!("port[{i}].{k}");
            if !valid_port_name(&p.name) {
                self.error(
                    &field("name"),
                    format!(
                        "{:?} is not a valid port name ([a-z0-9_-], 1 to 15 characters)",
                        p.name
                    ),
                );
            } else if let Some(prev) = names.insert(p.name.clone(), i) {
                self.error(
                    &field("name"),
                    format!("{:?} is already the name of port[{prev}]", p.name),
                );
            }
            let zone = self
                .range(&field("zone"), p.zone, 0, u64::from(u16::MAX))
                .unwrap_or(0);
            let backend = match p.backend {
                RawBackend::Dpdk => PortBackend::Dpdk(self.dpdk_port(
                    i,
                    p.device,
                    p.interface.as_deref(),
                    &dpdk_sizes,
                    &mut dpdk_devices,
                )),
                RawBackend::Mem => PortBackend::Mem,
                RawBackend::AfPacket => match p.interface {
                    None => {
                        self.error(
                            &format!("port[{i}]"),
                            "backend \"af_packet\" needs an `interface`",
                        );
                        PortBackend::Mem
                    }
                    Some(ifname) => {
                        if !valid_ifname(&ifname) {
                            self.error(
                                &field("interface"),
                                format!("{ifname:?} is not a valid interface name (1 to 15 bytes, no '/', ':' or whitespace)"),
                            );
                        } else if let Some(prev) = interfaces.insert(ifname.clone(), i) {
                            self.error(
                                &field("interface"),
                                format!("{ifname:?} is already used by port[{prev}]"),
                            );
                        }
                        PortBackend::AfPacket { interface: ifname }
                    }
                },
            };
            ports.push(PortConfig {
                name: p.name,
                backend,
                zone: u16::try_from(zone).unwrap_or(0),
                addresses: Vec::new(),
                mac: None,
            });
        }
        let routed = raw.dataplane.mode == ForwardMode::Routed;
        let (routes, virtual_addresses) =
            self.validate_l3(routed, &mut ports, port_l3, raw.route, raw.virtual_address);
        let raw_bridges = if routed {
            for i in 0..raw.bridge.len() {
                self.error(&format!("bridge[{i}]"), "not used in routed mode");
            }
            Vec::new()
        } else {
            raw.bridge
        };

        // [[bridge]]
        let mut bridges = Vec::with_capacity(raw_bridges.len());
        let mut bridged: HashMap<String, usize> = HashMap::new();
        for (i, b) in raw_bridges.into_iter().enumerate() {
            let field = format!("bridge[{i}].ports");
            if b.ports.len() != 2 {
                self.error(
                    &field,
                    format!("has {} ports; a bridge joins exactly two", b.ports.len()),
                );
                continue;
            }
            if b.ports[0] == b.ports[1] {
                self.error(&field, format!("bridges port {:?} with itself", b.ports[0]));
                continue;
            }
            let mut ok = true;
            for (j, name) in b.ports.iter().enumerate() {
                let f = format!("{field}[{j}]");
                if !names.contains_key(name) {
                    self.error(&f, format!("no [[port]] is named {name:?}"));
                    ok = false;
                } else if let Some(prev) = bridged.insert(name.clone(), i) {
                    self.error(&f, format!("port {name:?} is already in bridge[{prev}]"));
                    ok = false;
                }
            }
            if ok {
                bridges.push([b.ports[0].clone(), b.ports[1].clone()]);
            }
        }
        for (name, &i) in &names {
            if !routed && !bridged.contains_key(name) {
                self.error(
                    &format!("port[{i}]"),
                    format!("port {name:?} is in no [[bridge]]; in transparent mode every port needs a peer"),
                );
            }
        }

        // [conntrack]
        let c = &raw.conntrack;
        let capacity_ok = self.range("conntrack.capacity", c.capacity, MIN_CAPACITY, MAX_CAPACITY);
        let capacity = capacity_ok.unwrap_or(MIN_CAPACITY);
        let delta_ring = self
            .range(
                "conntrack.delta_ring",
                c.delta_ring,
                MIN_DELTA_RING,
                MAX_DELTA_RING,
            )
            .unwrap_or(MIN_DELTA_RING);
        if !delta_ring.is_power_of_two() {
            self.error(
                "conntrack.delta_ring",
                format!("{delta_ring} is not a power of two"),
            );
        }
        let mut timeouts = Timeouts::default();
        {
            let t = &c.timeouts;
            let fields: [(&str, Option<i64>, &mut u32); 13] = [
                ("tcp_syn_sent", t.tcp_syn_sent, &mut timeouts.tcp_syn_sent),
                ("tcp_syn_recv", t.tcp_syn_recv, &mut timeouts.tcp_syn_recv),
                (
                    "tcp_established",
                    t.tcp_established,
                    &mut timeouts.tcp_established,
                ),
                ("tcp_fin_wait", t.tcp_fin_wait, &mut timeouts.tcp_fin_wait),
                (
                    "tcp_close_wait",
                    t.tcp_close_wait,
                    &mut timeouts.tcp_close_wait,
                ),
                ("tcp_last_ack", t.tcp_last_ack, &mut timeouts.tcp_last_ack),
                (
                    "tcp_time_wait",
                    t.tcp_time_wait,
                    &mut timeouts.tcp_time_wait,
                ),
                ("tcp_close", t.tcp_close, &mut timeouts.tcp_close),
                (
                    "tcp_syn_sent2",
                    t.tcp_syn_sent2,
                    &mut timeouts.tcp_syn_sent2,
                ),
                ("udp", t.udp, &mut timeouts.udp),
                ("udp_stream", t.udp_stream, &mut timeouts.udp_stream),
                ("icmp", t.icmp, &mut timeouts.icmp),
                ("generic", t.generic, &mut timeouts.generic),
            ];
            for (name, v, slot) in fields {
                if let Some(v) = v {
                    let field = format!("conntrack.timeouts.{name}");
                    if let Some(v) = self.range(&field, v, 1, MAX_TIMEOUT_SECS) {
                        *slot = u32::try_from(v).unwrap_or(u32::MAX);
                    }
                }
            }
        }
        let conntrack = ConntrackConfig {
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX),
            tcp_be_liberal: c.tcp_be_liberal,
            tcp_loose: c.tcp_loose,
            delta_ring: usize::try_from(delta_ring).unwrap_or(usize::MAX),
            timeouts,
        };
        if capacity_ok.is_some() && conntrack.capacity < workers * 1024 {
            self.error(
                "conntrack.capacity",
                format!(
                    "{} gives fewer than 1024 flows to each of {workers} workers",
                    conntrack.capacity
                ),
            );
        }

        // [rules]
        let source = match (raw.rules.file, raw.rules.rules) {
            (Some(_), Some(_)) => {
                self.error(
                    "rules.rules",
                    "give either rules.file or inline rules.rules, not both",
                );
                RulesSource::None
            }
            (Some(f), None) => {
                if f.is_empty() {
                    self.error("rules.file", "must not be empty");
                }
                RulesSource::File(resolve(base, &f))
            }
            (None, Some(rules)) => RulesSource::Inline(
                rules
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| (self.spans.line_of(&format!("rules.rules[{i}]")), r))
                    .collect(),
            ),
            (None, None) => RulesSource::None,
        };
        let rules = RulesConfig {
            policy: raw.rules.policy,
            source,
        };

        // [sync]
        let sync = raw
            .sync
            .filter(|s| s.enabled)
            .and_then(|s| self.validate_sync(s, &conntrack, dataplane.cores.as_deref()));

        if raw.failover.mode != FailoverMode::None && sync.is_none() {
            self.error(
                "failover.mode",
                format!("\"{}\" needs a [sync] section: a backup without replicated state would reset every connection at takeover", raw.failover.mode.as_str()),
            );
        }
        let election = if raw.failover.mode == FailoverMode::Election {
            self.validate_election(&raw.failover, base, &names)
        } else {
            None
        };

        Config {
            file: PathBuf::from(file_name),
            daemon,
            dataplane,
            ports,
            bridges,
            dpdk,
            routes,
            virtual_addresses,
            conntrack,
            rules,
            sync,
            failover: FailoverConfig {
                mode: raw.failover.mode,
                election,
            },
        }
    }

    fn validate_election(
        &mut self,
        f: &RawFailover,
        base: &Path,
        ports: &HashMap<String, usize>,
    ) -> Option<ElectionSettings> {
        let before = self.diags.len();
        let node = match f.node {
            Some(n) => self.range("failover.node", n, 1, 32767),
            None => {
                self.error("failover", "mode \"election\" needs `node`, this node's id");
                None
            }
        };
        let priority = self.range("failover.priority", f.priority.unwrap_or(100), 1, 255);
        let key = match (&f.key, &f.key_file) {
            (Some(_), Some(_)) => {
                self.error("failover.key_file", "give either key or key_file, not both");
                None
            }
            (None, None) => {
                self.error(
                    "failover",
                    "mode \"election\" needs `key` (hex) or `key_file`: election messages are authenticated",
                );
                None
            }
            (Some(k), None) => match parse_hex(k) {
                Some(b) => Some(b),
                None => {
                    self.error("failover.key", "is not hex (two digits per byte)");
                    None
                }
            },
            (None, Some(p)) => {
                let path = resolve(base, p);
                match std::fs::read(&path) {
                    Ok(b) => Some(b.trim_ascii().to_vec()),
                    Err(e) => {
                        self.error("failover.key_file", format!("{}: {e}", path.display()));
                        None
                    }
                }
            }
        };
        if let Some(k) = &key {
            if k.len() < 16 {
                self.error(
                    if f.key.is_some() {
                        "failover.key"
                    } else {
                        "failover.key_file"
                    },
                    format!("{} bytes; at least 16 are needed", k.len()),
                );
            }
        }
        let port = self.range(
            "failover.port",
            f.port.unwrap_or(i64::from(DEFAULT_ELECTION_PORT)),
            1,
            u64::from(u16::MAX),
        );
        let mut peers = Vec::new();
        if f.peer.is_empty() {
            self.error(
                "failover",
                "mode \"election\" needs at least one [[failover.peer]]",
            );
        }
        for (i, p) in f.peer.iter().enumerate() {
            let node_f = format!("failover.peer[{i}].node");
            let n = self.range(&node_f, p.node, 1, 32767);
            if n.is_some() && n == node {
                self.error(&node_f, "is this node's own id");
            }
            if n.is_some()
                && peers
                    .iter()
                    .any(|q: &ElectionPeer| Some(u64::from(q.node)) == n)
            {
                self.error(&node_f, "is given to two peers");
            }
            let a = self.ip(&format!("failover.peer[{i}].address"), &p.address);
            let pr = self.range(&format!("failover.peer[{i}].priority"), p.priority, 1, 255);
            if let (Some(n), Some(a), Some(pr)) = (n, a, pr) {
                peers.push(ElectionPeer {
                    node: u32::try_from(n).unwrap_or(0),
                    address: a,
                    priority: u8::try_from(pr).unwrap_or(1),
                });
            }
        }
        let check = self.range(
            "failover.check_interval_ms",
            f.check_interval_ms.unwrap_or(100),
            10,
            10_000,
        );
        let action = self.range(
            "failover.action_timeout_ms",
            f.action_timeout_ms.unwrap_or(2000),
            10,
            600_000,
        );
        for (k, list) in [("downlinks", &f.downlinks), ("uplinks", &f.uplinks)] {
            for (i, name) in list.iter().enumerate() {
                if !ports.contains_key(name) {
                    self.error(
                        &format!("failover.{k}[{i}]"),
                        format!("no [[port]] is named {name:?}"),
                    );
                }
            }
        }
        let mut scripts = Vec::new();
        for (name, path) in &f.scripts {
            if !PROCEDURE_NAMES.contains(&name.as_str()) {
                self.error(
                    &format!("failover.scripts.{name}"),
                    format!("unknown procedure; one of {}", PROCEDURE_NAMES.join(", ")),
                );
            } else {
                scripts.push((name.clone(), resolve(base, path)));
            }
        }
        if self.diags.len() != before {
            return None;
        }
        Some(ElectionSettings {
            node: u32::try_from(node?).ok()?,
            priority: u8::try_from(priority?).ok()?,
            key: key?,
            port: u16::try_from(port?).ok()?,
            peers,
            check_interval: std::time::Duration::from_millis(check?),
            preempt: f.preempt,
            action_timeout: std::time::Duration::from_millis(action?),
            downlinks: f.downlinks.clone(),
            uplinks: f.uplinks.clone(),
            scripts,
        })
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

    fn validate_sync(
        &mut self,
        s: RawSync,
        conntrack: &ConntrackConfig,
        worker_cores: Option<&[usize]>,
    ) -> Option<SyncConfig> {
        let before = self.diags.len();
        let local = match &s.local {
            Some(v) => self.ip("sync.local", v),
            None => {
                self.error(
                    "sync",
                    "needs `local`, our address on the dedicated sync link",
                );
                None
            }
        };
        let destination = match (&s.peer, &s.multicast_group) {
            (Some(_), Some(_)) => {
                self.error(
                    "sync.multicast_group",
                    "give either sync.peer (unicast) or sync.multicast_group, not both",
                );
                None
            }
            (None, None) => {
                self.error(
                    "sync",
                    "needs `peer` (unicast) or `multicast_group` to know where to send",
                );
                None
            }
            (Some(p), None) => {
                let a = self.ip("sync.peer", p)?;
                if a.is_multicast() || a.is_unspecified() {
                    self.error(
                        "sync.peer",
                        format!(
                            "{a} is not a unicast address; use sync.multicast_group for a group"
                        ),
                    );
                }
                Some(SyncDestination::Unicast(a))
            }
            (None, Some(g)) => {
                let a = self.ip("sync.multicast_group", g)?;
                if !a.is_multicast() {
                    self.error(
                        "sync.multicast_group",
                        format!("{a} is not a multicast address"),
                    );
                }
                Some(SyncDestination::Multicast(a))
            }
        };
        if let (Some(l), Some(d)) = (local, destination) {
            if l.is_ipv4() != d.addr().is_ipv4() {
                self.error(
                    "sync.local",
                    format!("{l} and {} are not the same address family", d.addr()),
                );
            }
            if l.is_unspecified() || l.is_multicast() {
                self.error(
                    "sync.local",
                    format!("{l} must be this node's own unicast address on the sync link"),
                );
            }
            if s.transport == SyncTransport::Tcp && matches!(d, SyncDestination::Multicast(_)) {
                self.error(
                    "sync.transport",
                    "\"tcp\" is unicast only: use `peer` instead of `multicast_group`, or transport \"ftfw\" or \"udp-best-effort\"",
                );
            }
            if l.is_ipv6() && d.addr().is_multicast() && s.interface.is_none() {
                self.error(
                    "sync",
                    "IPv6 multicast needs `interface`, the dedicated link's interface",
                );
            }
        }
        let port = self.range("sync.port", s.port, 1, u64::from(u16::MAX));
        if let Some(i) = &s.interface {
            if !valid_ifname(i) {
                self.error(
                    "sync.interface",
                    format!("{i:?} is not a valid interface name"),
                );
            }
        }
        let mtu = self.range("sync.mtu", s.mtu, 576, 65535);
        let ack_window = self.range("sync.ack_window", s.ack_window, 1, 1 << 20);
        let resend_queue = self.range("sync.resend_queue", s.resend_queue, 16, 1 << 24);
        let alive = self.range("sync.alive_interval_ms", s.alive_interval_ms, 10, 3_600_000);
        let flush = self.range("sync.flush_delay_us", s.flush_delay_us, 0, 1_000_000);
        let defer_timeout = self.range("sync.defer_timeout_ms", s.defer_timeout_ms, 1, 1000);
        let ack_delay = match s.ack_delay_us {
            Some(v) => self.range("sync.ack_delay_us", v, 1, 1_000_000).map(Some),
            None => Some(s.defer.then_some(DEFAULT_ACK_DELAY_US)),
        };
        let external_capacity = match s.external_capacity {
            Some(v) => self.range("sync.external_capacity", v, 1, MAX_CAPACITY),
            None => Some(conntrack.capacity as u64),
        };
        let core = match s.core {
            Some(c) => {
                let c = self.range("sync.core", c, 0, 4095);
                if let (Some(c), Some(cores)) = (c, worker_cores) {
                    if cores.iter().any(|&w| w as u64 == c) {
                        self.error("sync.core", format!("core {c} is already a worker's core"));
                    }
                }
                c.map(Some)
            }
            None => Some(None),
        };
        if self.diags.len() != before {
            return None;
        }
        Some(SyncConfig {
            mode: s.mode,
            local: local?,
            destination: destination?,
            port: u16::try_from(port?).ok()?,
            interface: s.interface,
            mtu: usize::try_from(mtu?).ok()?,
            ack_window: u32::try_from(ack_window?).ok()?,
            resend_queue: usize::try_from(resend_queue?).ok()?,
            alive_interval: std::time::Duration::from_millis(alive?),
            flush_delay: std::time::Duration::from_micros(flush?),
            external_capacity: usize::try_from(external_capacity?).ok()?,
            core: core?.and_then(|c| usize::try_from(c).ok()),
            startup_resync: s.startup_resync,
            transport: s.transport,
            defer: s.defer,
            defer_timeout: std::time::Duration::from_millis(defer_timeout?),
            ack_delay: ack_delay?.map(std::time::Duration::from_micros),
        })
    }
}

fn valid_port_name(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn valid_ifname(s: &str) -> bool {
    (1..=15).contains(&s.len())
        && s != "."
        && s != ".."
        && !s
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

// ---------------------------------------------------------------------------
// Spans
// ---------------------------------------------------------------------------

/// Byte offset to 1-based line.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    fn line(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

/// Every field path of a parsed document with its span and line.
struct SpanIndex {
    /// (path, covered byte range, line of the key or header)
    entries: Vec<(String, Range<usize>, usize)>,
    by_path: HashMap<String, usize>,
}

impl SpanIndex {
    fn new(root: &toml_edit::Table, lines: &LineIndex) -> SpanIndex {
        let mut idx = SpanIndex {
            entries: Vec::new(),
            by_path: HashMap::new(),
        };
        idx.walk_table(root, "", lines);
        for (i, (p, _, _)) in idx.entries.iter().enumerate() {
            idx.by_path.entry(p.clone()).or_insert(i);
        }
        idx
    }

    fn push(
        &mut self,
        path: String,
        head: Option<Range<usize>>,
        body: Option<Range<usize>>,
        lines: &LineIndex,
    ) {
        let Some(start) = head.as_ref().or(body.as_ref()).map(|r| r.start) else {
            return;
        };
        let end = body.as_ref().or(head.as_ref()).map_or(start, |r| r.end);
        self.entries
            .push((path, start..end.max(start), lines.line(start)));
    }

    fn walk_table(&mut self, t: &dyn toml_edit::TableLike, prefix: &str, lines: &LineIndex) {
        for (k, _) in t.iter() {
            let Some((key, item)) = t.get_key_value(k) else {
                continue;
            };
            let path = if prefix.is_empty() {
                k.to_string()
            } else {
                format!("{prefix}.{k}")
            };
            match item {
                toml_edit::Item::Table(tb) => {
                    self.push(path.clone(), tb.span().or_else(|| key.span()), None, lines);
                    self.walk_table(tb, &path, lines);
                }
                toml_edit::Item::ArrayOfTables(a) => {
                    for (i, tb) in a.iter().enumerate() {
                        let p = format!("{path}[{i}]");
                        self.push(p.clone(), tb.span(), None, lines);
                        self.walk_table(tb, &p, lines);
                    }
                }
                toml_edit::Item::Value(v) => {
                    self.push(path.clone(), key.span(), v.span(), lines);
                    self.walk_value(v, &path, lines);
                }
                toml_edit::Item::None => {}
            }
        }
    }

    fn walk_value(&mut self, v: &toml_edit::Value, path: &str, lines: &LineIndex) {
        match v {
            toml_edit::Value::InlineTable(it) => self.walk_table(it, path, lines),
            toml_edit::Value::Array(arr) => {
                for (i, e) in arr.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    self.push(p.clone(), e.span(), None, lines);
                    self.walk_value(e, &p, lines);
                }
            }
            _ => {}
        }
    }

    /// Line of `path`, else of its closest written ancestor, else 1.
    fn line_of(&self, path: &str) -> usize {
        let mut p = path;
        loop {
            if let Some(&i) = self.by_path.get(p) {
                return self.entries[i].2;
            }
            // An implicit table: the first written child.
            if let Some((_, _, line)) = self
                .entries
                .iter()
                .find(|(e, _, _)| e.strip_prefix(p).is_some_and(|r| r.starts_with(['.', '['])))
            {
                return *line;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return 1,
            }
        }
    }

    /// The innermost field whose span contains `offset`.
    fn field_at(&self, offset: usize) -> Option<String> {
        self.entries
            .iter()
            .filter(|(_, r, _)| r.start <= offset && offset < r.end.max(r.start + 1))
            .min_by_key(|(_, r, _)| r.len())
            .map(|(p, _, _)| p.clone())
    }
}

/// For syntax errors, where no document exists: the `[table]` above `line`
/// joined with the key on `line`, if any.
fn guess_field_at_line(text: &str, line: usize) -> String {
    let mut table = String::new();
    let mut key = String::new();
    for (i, l) in text.lines().enumerate().take(line) {
        let l = l.trim();
        if let Some(h) = l.strip_prefix("[[").and_then(|h| h.split("]]").next()) {
            table = h.trim().to_string();
            key.clear();
        } else if let Some(h) = l.strip_prefix('[').and_then(|h| h.split(']').next()) {
            table = h.trim().to_string();
            key.clear();
        } else if i + 1 == line {
            key = l.split('=').next().unwrap_or("").trim().to_string();
        }
    }
    match (table.is_empty(), key.is_empty() || key.starts_with('#')) {
        (true, true) => "(top level)".into(),
        (true, false) => key,
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../configs/standalone.toml");

    fn errors(text: &str) -> Vec<String> {
        match parse(text, "ftfw.toml") {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
        }
    }

    /// A valid two-port base that tests extend line by line; lines are
    /// numbered in comments to keep the expected messages readable.
    const BASE: &str = "\
[dataplane]
workers = 2
[[port]]
name = \"outside\"
backend = \"af_packet\"
interface = \"veth-out\"
[[port]]
name = \"inside\"
backend = \"mem\"
zone = 3
[[bridge]]
ports = [\"outside\", \"inside\"]
";

    #[test]
    fn replicated_example_is_valid() {
        let text = include_str!("../../configs/replicated.toml");
        let c = parse(text, "/etc/ftfw/replicated.toml").unwrap();
        let s = c.sync.expect("sync section");
        assert_eq!(s.mode, SyncMode::ExternalCache);
        assert_eq!(s.local, "198.51.100.1".parse::<std::net::IpAddr>().unwrap());
        assert_eq!(
            s.destination,
            SyncDestination::Unicast("198.51.100.2".parse().unwrap())
        );
        assert_eq!((s.port, s.mtu, s.ack_window), (3780, 1500, 300));
        assert_eq!(s.interface.as_deref(), Some("eth2"));
        assert_eq!(s.alive_interval, std::time::Duration::from_secs(1));
        assert_eq!(s.flush_delay, std::time::Duration::from_micros(200));
        assert_eq!(s.external_capacity, 262144);
        assert!(s.startup_resync);
        assert_eq!(s.transport, SyncTransport::Ftfw);
        assert_eq!(c.failover.mode, FailoverMode::None);
        assert!(c.failover.election.is_none());
        // The same file with the election on.
        let el = text.replace("mode = \"none\"", "mode = \"election\"");
        let c = parse(&el, "/etc/ftfw/replicated.toml").unwrap();
        let e = c.failover.election.expect("election settings");
        assert_eq!((e.node, e.priority, e.port), (1, 200, 3781));
        assert_eq!(e.key.len(), 16);
        assert_eq!(e.peers.len(), 1);
        assert_eq!(
            e.peers[0].address,
            "198.51.100.2".parse::<std::net::IpAddr>().unwrap()
        );
        assert_eq!(e.downlinks, ["inside"]);
        crate::failover::election_config(&e).validate().unwrap();
        // `enabled = false` keeps the section but turns replication off.
        let off = text.replace("enabled = true", "enabled = false");
        assert!(parse(&off, "r.toml").unwrap().sync.is_none());
    }

    #[test]
    fn sync_errors_name_their_fields() {
        let e = errors(&format!("{BASE}[sync]\nlocal = \"192.0.2.1\"\n"));
        assert_eq!(
            e,
            ["ftfw.toml:13: sync: needs `peer` (unicast) or `multicast_group` to know where to send"]
        );
        let e = errors(&format!(
            "{BASE}[sync]\nlocal = \"192.0.2.1\"\npeer = \"2001:db8::2\"\nport = 0\nmtu = 100\n"
        ));
        assert_eq!(
            e,
            [
                "ftfw.toml:14: sync.local: 192.0.2.1 and 2001:db8::2 are not the same address family",
                "ftfw.toml:16: sync.port: 0 is below the minimum 1",
                "ftfw.toml:17: sync.mtu: 100 is below the minimum 576",
            ]
        );
        let e = errors(&format!(
            "{BASE}[sync]\nlocal = \"192.0.2.1\"\nmulticast_group = \"192.0.2.9\"\n"
        ));
        assert_eq!(
            e,
            ["ftfw.toml:15: sync.multicast_group: 192.0.2.9 is not a multicast address"]
        );
        let e = errors(&format!(
            "{BASE}[sync]\nlocal = \"nope\"\npeer = \"192.0.2.2\"\nmode = \"fast\"\n"
        ));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("ftfw.toml:16: sync.mode"), "{e:?}");
        let e = errors(&format!(
            "{BASE}[sync]\nlocal = \"nope\"\npeer = \"192.0.2.2\"\n"
        ));
        assert_eq!(
            e,
            ["ftfw.toml:14: sync.local: \"nope\" is not an IPv4 or IPv6 address"]
        );
    }

    #[test]
    fn sync_transport_values_and_errors() {
        let sync = "[sync]\nlocal = \"192.0.2.1\"\npeer = \"192.0.2.2\"\n";
        let t = |v: &str| {
            parse(&format!("{BASE}{sync}transport = \"{v}\"\n"), "ftfw.toml")
                .unwrap()
                .sync
                .unwrap()
                .transport
        };
        assert_eq!(t("ftfw"), SyncTransport::Ftfw);
        assert_eq!(t("udp-best-effort"), SyncTransport::UdpBestEffort);
        assert_eq!(t("tcp"), SyncTransport::Tcp);
        let default = parse(&format!("{BASE}{sync}"), "ftfw.toml").unwrap();
        assert_eq!(default.sync.unwrap().transport, SyncTransport::Ftfw);
        // Multicast works with both UDP transports ...
        let mc = "[sync]\nlocal = \"192.0.2.1\"\nmulticast_group = \"225.0.0.50\"\n";
        for v in ["ftfw", "udp-best-effort"] {
            let c = parse(&format!("{BASE}{mc}transport = \"{v}\"\n"), "ftfw.toml").unwrap();
            assert_eq!(c.sync.unwrap().transport.as_str(), v);
        }
        // ... but not with tcp.
        let e = errors(&format!("{BASE}{mc}transport = \"tcp\"\n"));
        assert_eq!(
            e,
            ["ftfw.toml:16: sync.transport: \"tcp\" is unicast only: use `peer` instead of `multicast_group`, or transport \"ftfw\" or \"udp-best-effort\""]
        );
        // An unknown value names the field, its line and the valid values.
        let e = errors(&format!("{BASE}{sync}transport = \"sctp\"\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("ftfw.toml:16: sync.transport"), "{e:?}");
        for v in ["sctp", "ftfw", "udp-best-effort", "tcp"] {
            assert!(e[0].contains(v), "{e:?}");
        }
        let e = errors(&format!("{BASE}{sync}transport = 1\n"));
        assert!(e[0].starts_with("ftfw.toml:16: sync.transport"), "{e:?}");
    }

    #[test]
    fn defer_settings_parse_and_bad_values_name_their_fields() {
        let sync = "[sync]\nlocal = \"192.0.2.1\"\npeer = \"192.0.2.2\"\n";
        let s = parse(&format!("{BASE}{sync}"), "ftfw.toml")
            .unwrap()
            .sync
            .unwrap();
        assert!(!s.defer);
        assert_eq!(s.defer_timeout, std::time::Duration::from_millis(10));
        assert_eq!(s.ack_delay, None);
        let s = parse(&format!("{BASE}{sync}defer = true\n"), "ftfw.toml")
            .unwrap()
            .sync
            .unwrap();
        assert!(s.defer);
        assert_eq!(
            s.ack_delay,
            Some(std::time::Duration::from_micros(DEFAULT_ACK_DELAY_US))
        );
        let s = parse(
            &format!("{BASE}{sync}defer = true\ndefer_timeout_ms = 1000\nack_delay_us = 50\n"),
            "ftfw.toml",
        )
        .unwrap()
        .sync
        .unwrap();
        assert_eq!(s.defer_timeout, std::time::Duration::from_secs(1));
        assert_eq!(s.ack_delay, Some(std::time::Duration::from_micros(50)));
        let e = errors(&format!(
            "{BASE}{sync}defer = true\ndefer_timeout_ms = 0\nack_delay_us = 2000000\n"
        ));
        assert_eq!(
            e,
            [
                "ftfw.toml:17: sync.defer_timeout_ms: 0 is below the minimum 1",
                "ftfw.toml:18: sync.ack_delay_us: 2000000 is above the maximum 1000000",
            ]
        );
        let e = errors(&format!("{BASE}{sync}defer_timeout_ms = 1001\n"));
        assert_eq!(
            e,
            ["ftfw.toml:16: sync.defer_timeout_ms: 1001 is above the maximum 1000"]
        );
        let e = errors(&format!("{BASE}{sync}defer = \"yes\"\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with("ftfw.toml:16: sync.defer"), "{e:?}");
    }

    #[test]
    fn election_errors_name_their_fields() {
        let sync = "[sync]\nlocal = \"192.0.2.1\"\npeer = \"192.0.2.2\"\n";
        let e = errors(&format!(
            "{BASE}{sync}[failover]\nmode = \"election\"\nnode = 1\nkey = \"0011\"\n\
             downlinks = [\"dmz\"]\n[[failover.peer]]\nnode = 1\naddress = \"192.0.2.2\"\n\
             [failover.scripts]\nfly = \"/bin/true\"\n"
        ));
        let fields: Vec<&str> = e
            .iter()
            .map(|d| d.split(": ").nth(1).unwrap_or(""))
            .collect();
        assert_eq!(
            fields,
            [
                "failover.key",
                "failover.downlinks[0]",
                "failover.peer[0].node",
                "failover.scripts.fly"
            ],
            "{e:?}"
        );
        let e = errors(&format!("{BASE}{sync}[failover]\nmode = \"election\"\n"));
        assert_eq!(e.len(), 3, "{e:?}");
    }

    #[test]
    fn keepalived_mode_needs_sync() {
        let e = errors(&format!("{BASE}[failover]\nmode = \"keepalived\"\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("ftfw.toml:14: failover.mode: \"keepalived\" needs a [sync] section"),
            "{e:?}"
        );
        let ok = format!(
            "{BASE}[sync]\nlocal = \"192.0.2.1\"\npeer = \"192.0.2.2\"\n[failover]\nmode = \"keepalived\"\n"
        );
        assert_eq!(
            parse(&ok, "x.toml").unwrap().failover.mode,
            FailoverMode::Keepalived
        );
    }

    #[test]
    fn example_config_is_valid() {
        let c = parse(EXAMPLE, "/etc/ftfw/standalone.toml").unwrap();
        assert_eq!(c.file, PathBuf::from("/etc/ftfw/standalone.toml"));
        assert_eq!(
            c.daemon.console_socket,
            PathBuf::from("/run/ftfw/ftfwd.sock")
        );
        assert_eq!(c.daemon.log_level, LogLevel::Info);
        assert_eq!(c.dataplane.workers, 1);
        assert_eq!(c.dataplane.cores, Some(vec![1]));
        assert_eq!(c.dataplane.poll_mode, PollMode::Adaptive);
        assert_eq!(c.ports.len(), 2);
        assert_eq!(c.ports[0].name, "outside");
        assert_eq!(
            c.ports[0].backend,
            PortBackend::AfPacket {
                interface: "veth-out".into()
            }
        );
        assert_eq!(c.ports[1].backend.interface(), Some("veth-in"));
        assert_eq!(
            c.bridges,
            vec![["outside".to_string(), "inside".to_string()]]
        );
        assert_eq!(c.bridge_peer("inside"), Some("outside"));
        assert_eq!(c.port_index("inside"), Some(1));
        assert_eq!(c.conntrack.capacity, 262144);
        assert_eq!(c.conntrack.delta_ring, 8192);
        assert_eq!(c.conntrack.timeouts, Timeouts::default());
        assert_eq!(c.rules.policy, Policy::Drop);
        assert_eq!(
            c.rules.source,
            RulesSource::File(PathBuf::from("/etc/ftfw/rules.conf"))
        );
    }

    #[test]
    fn defaults_and_inline_rules() {
        let text = format!(
            "{BASE}[rules]\npolicy = \"reject\"\nrules = [\n  \"accept ct established\",\n\n  \"accept proto icmp\",\n]\n[conntrack.timeouts]\nudp = 45\n"
        );
        let c = parse(&text, "ftfw.toml").unwrap();
        assert_eq!(c.dataplane.workers, 2);
        assert_eq!(c.dataplane.cores, None);
        assert_eq!(c.ports[1].zone, 3);
        assert_eq!(c.ports[1].backend, PortBackend::Mem);
        assert_eq!(c.rules.policy, Policy::Reject);
        assert_eq!(
            c.rules.source,
            RulesSource::Inline(vec![
                (16, "accept ct established".into()),
                (18, "accept proto icmp".into())
            ])
        );
        assert_eq!(c.conntrack.timeouts.udp, 45);
        assert_eq!(c.conntrack.timeouts.tcp_established, 432000);
        assert_eq!(
            c.daemon.console_socket,
            PathBuf::from(DEFAULT_CONSOLE_SOCKET)
        );
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let text = format!(
            "{BASE}[daemon]\nconsole_socket = \"run/ftfwd.sock\"\n[rules]\nfile = \"r.conf\"\n"
        );
        let c = parse(&text, "/srv/lab/ftfw.toml").unwrap();
        assert_eq!(
            c.daemon.console_socket,
            PathBuf::from("/srv/lab/run/ftfwd.sock")
        );
        assert_eq!(
            c.rules.source,
            RulesSource::File(PathBuf::from("/srv/lab/r.conf"))
        );
    }

    #[test]
    fn capacity_below_minimum() {
        let text = format!("{BASE}[conntrack]\ncapacity = 100\n");
        assert_eq!(
            errors(&text),
            ["ftfw.toml:14: conntrack.capacity: 100 is below the minimum 1024"]
        );
    }

    #[test]
    fn capacity_too_small_for_workers() {
        let text = format!("{BASE}[conntrack]\ncapacity = 1500\n");
        assert_eq!(
            errors(&text),
            ["ftfw.toml:14: conntrack.capacity: 1500 gives fewer than 1024 flows to each of 2 workers"]
        );
    }

    #[test]
    fn delta_ring_not_power_of_two() {
        let text = format!("{BASE}[conntrack]\ndelta_ring = 1000\n");
        assert_eq!(
            errors(&text),
            ["ftfw.toml:14: conntrack.delta_ring: 1000 is not a power of two"]
        );
    }

    #[test]
    fn timeout_zero() {
        let text = format!("{BASE}[conntrack.timeouts]\nicmp = 30\ntcp_close = 0\n");
        assert_eq!(
            errors(&text),
            ["ftfw.toml:15: conntrack.timeouts.tcp_close: 0 is below the minimum 1"]
        );
    }

    #[test]
    #[cfg(not(feature = "dpdk"))]
    fn dpdk_backend_rejected_without_the_feature() {
        let text = BASE.replace(
            "backend = \"mem\"",
            "backend = \"dpdk\"\ndevice = \"net_ring0\"",
        );
        assert_eq!(
            errors(&text),
            [format!("ftfw.toml:9: port[1].backend: {}", dpdk::NOT_BUILT)]
        );
        assert!(dpdk::NOT_BUILT.contains("--features dpdk"));
    }

    #[test]
    #[cfg(feature = "dpdk")]
    fn dpdk_ports_and_section() {
        let text = format!(
            "{}[dpdk]\neal_args = [\"--no-huge\"]\nmbufs = 4095\n",
            BASE.replace(
                "backend = \"mem\"",
                "backend = \"dpdk\"\ndevice = \"net_af_packet0,iface=veth-in\""
            )
        );
        let c = parse(&text, "ftfw.toml").unwrap();
        assert_eq!(c.dpdk.eal_args, ["--no-huge"]);
        let PortBackend::Dpdk(p) = &c.ports[1].backend else {
            panic!("{:?}", c.ports[1].backend)
        };
        assert_eq!(p.device, "net_af_packet0,iface=veth-in");
        assert_eq!(p.name(), "net_af_packet0");
        assert_eq!(
            (p.mbufs, p.rx_descriptors, p.tx_descriptors),
            (4095, 1024, 1024)
        );
        assert!(!p.is_pci());

        let missing = BASE.replace("backend = \"mem\"", "backend = \"dpdk\"");
        assert_eq!(
            errors(&missing),
            ["ftfw.toml:7: port[1]: backend \"dpdk\" needs a `device`: a PCI address such as \"0000:03:00.0\" or a vdev such as \"net_af_packet0,iface=eth1\""]
        );
        let bad = BASE.replace("backend = \"mem\"", "backend = \"dpdk\"\ndevice = \"eth0\"");
        assert!(errors(&bad)[0]
            .starts_with("ftfw.toml:10: port[1].device: \"eth0\" is neither a PCI address"));
        let twice = BASE
            .replace(
                "backend = \"af_packet\"\ninterface = \"veth-out\"",
                "backend = \"dpdk\"\ndevice = \"0000:03:00.0\"",
            )
            .replace(
                "backend = \"mem\"",
                "backend = \"dpdk\"\ndevice = \"0000:03:00.0\"",
            );
        assert_eq!(
            errors(&twice),
            ["ftfw.toml:10: port[1].device: device \"0000:03:00.0\" is already used by port[0]"]
        );
        let small = format!("{BASE}[dpdk]\nrx_descriptors = 8\n");
        assert_eq!(
            errors(&small),
            ["ftfw.toml:14: dpdk.rx_descriptors: 8 is below the minimum 64"]
        );
    }

    #[test]
    fn af_packet_without_interface() {
        let text = BASE.replace("interface = \"veth-out\"\n", "");
        assert_eq!(
            errors(&text),
            ["ftfw.toml:3: port[0]: backend \"af_packet\" needs an `interface`"]
        );
    }

    #[test]
    fn workers_and_cores() {
        let text = BASE.replace("workers = 2", "workers = 65");
        assert_eq!(
            errors(&text),
            ["ftfw.toml:2: dataplane.workers: 65 is above the maximum 64"]
        );
        let text = BASE.replace("workers = 2", "workers = 2\ncores = [1]");
        assert_eq!(
            errors(&text),
            ["ftfw.toml:3: dataplane.cores: has 1 entries but dataplane.workers is 2; give one core per worker"]
        );
        let text = BASE.replace("workers = 2", "workers = 2\ncores = [\n  1,\n  1,\n]");
        assert_eq!(
            errors(&text),
            ["ftfw.toml:5: dataplane.cores[1]: core 1 is given to two workers"]
        );
    }

    #[test]
    fn duplicate_and_invalid_port_names() {
        let text = BASE.replace("name = \"inside\"", "name = \"outside\"");
        let e = errors(&text);
        assert!(
            e.contains(
                &"ftfw.toml:8: port[1].name: \"outside\" is already the name of port[0]"
                    .to_string()
            ),
            "{e:?}"
        );
        let text = BASE.replace("name = \"inside\"", "name = \"Inside!\"");
        let e = errors(&text);
        assert!(
            e[0].starts_with("ftfw.toml:8: port[1].name: \"Inside!\" is not a valid port name"),
            "{e:?}"
        );
        assert_eq!(
            e[1],
            "ftfw.toml:12: bridge[0].ports[1]: no [[port]] is named \"inside\""
        );
    }

    #[test]
    fn bridge_errors() {
        let text = BASE.replace("[\"outside\", \"inside\"]", "[\"outside\", \"nowhere\"]");
        assert_eq!(
            errors(&text),
            [
                "ftfw.toml:7: port[1]: port \"inside\" is in no [[bridge]]; in transparent mode every port needs a peer",
                "ftfw.toml:12: bridge[0].ports[1]: no [[port]] is named \"nowhere\"",
            ]
        );
        let text = format!("{BASE}[[bridge]]\nports = [\"inside\", \"outside\"]\n");
        assert_eq!(
            errors(&text),
            [
                "ftfw.toml:14: bridge[1].ports[0]: port \"inside\" is already in bridge[0]",
                "ftfw.toml:14: bridge[1].ports[1]: port \"outside\" is already in bridge[0]",
            ]
        );
        let text = BASE.replace("[\"outside\", \"inside\"]", "[\"outside\"]");
        let e = errors(&text);
        assert_eq!(
            e[2],
            "ftfw.toml:12: bridge[0].ports: has 1 ports; a bridge joins exactly two"
        );
    }

    #[test]
    fn both_rules_file_and_inline() {
        let text = format!("{BASE}[rules]\nfile = \"r.conf\"\nrules = [\"accept\"]\n");
        assert_eq!(
            errors(&text),
            ["ftfw.toml:15: rules.rules: give either rules.file or inline rules.rules, not both"]
        );
    }

    #[test]
    fn unknown_key_rejected_with_line() {
        let text = format!("{BASE}[conntrack]\ncapacity = 4096\ncapasity = 4096\n");
        let e = errors(&text);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("ftfw.toml:15: conntrack.capasity: unknown field `capasity`"),
            "{e:?}"
        );
        let text = BASE.replace("zone = 3", "zone = 3\nspeed = 10");
        let e = errors(&text);
        assert!(
            e[0].starts_with("ftfw.toml:11: port[1].speed: unknown field `speed`"),
            "{e:?}"
        );
        let e = errors(&format!("{BASE}[extra]\n"));
        assert!(
            e[0].starts_with("ftfw.toml:13: extra: unknown field `extra`"),
            "{e:?}"
        );
    }

    #[test]
    fn type_errors_name_the_field() {
        let e = errors(&BASE.replace("zone = 3", "zone = \"three\""));
        assert!(
            e[0].starts_with("ftfw.toml:10: port[1].zone: invalid type: string"),
            "{e:?}"
        );
        let e = errors(&format!("{BASE}[dataplane.x]\n").replace(
            "[dataplane]\nworkers = 2",
            "[dataplane]\nworkers = 2\npoll_mode = \"lazy\"",
        ));
        assert!(
            e[0].starts_with("ftfw.toml:3: dataplane.poll_mode: unknown variant `lazy`"),
            "{e:?}"
        );
        let e = errors(&BASE.replace("zone = 3", "zone = 70000"));
        assert_eq!(
            e,
            ["ftfw.toml:10: port[1].zone: 70000 is above the maximum 65535"]
        );
    }

    #[test]
    fn pass_ethertypes_names_hex_and_errors() {
        use ftfw_dataplane::worker::PassEthertypes;
        let c = parse(BASE, "ftfw.toml").unwrap();
        assert_eq!(c.dataplane.pass_ethertypes, PassEthertypes::DEFAULT);
        let text = BASE.replace(
            "[dataplane]\nworkers = 2",
            "[dataplane]\nworkers = 2\npass_ethertypes = [\"arp\", \"0x8864\"]",
        );
        let c = parse(&text, "ftfw.toml").unwrap();
        assert!(c.dataplane.pass_ethertypes.passes(0x8864));
        assert!(!c.dataplane.pass_ethertypes.passes(0x88cc));
        let e = errors(&BASE.replace(
            "[dataplane]\nworkers = 2",
            "[dataplane]\nworkers = 2\npass_ethertypes = [\"ipx\"]",
        ));
        assert_eq!(
            e,
            ["ftfw.toml:3: dataplane.pass_ethertypes: unknown ethertype \"ipx\" (a name such as \"arp\" or \"lldp\", or hex such as \"0x88f7\")"]
        );
    }

    #[test]
    fn syntax_error_has_line_and_field() {
        let e = errors(&format!("{BASE}[conntrack]\ncapacity = = 4\n"));
        assert!(
            e[0].starts_with("ftfw.toml:14: conntrack.capacity: syntax error"),
            "{e:?}"
        );
    }

    #[test]
    fn several_errors_are_all_reported() {
        let text = format!("{BASE}[conntrack]\ncapacity = 1\ndelta_ring = 3\n")
            .replace("workers = 2", "workers = 0");
        let e = errors(&text);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("ftfw.toml:2: dataplane.workers"));
        assert!(e[1].starts_with("ftfw.toml:14: conntrack.capacity"));
        assert!(e[2].starts_with("ftfw.toml:15: conntrack.delta_ring"));
    }

    #[test]
    fn io_error_names_the_file() {
        let e = load(Path::new("/nonexistent/ftfw.toml")).unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/ftfw.toml: "), "{e}");
    }
}
