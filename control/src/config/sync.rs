//! `[sync]`: state replication on the dedicated link (transport, addresses,
//! FT-FW window and timers, the external cache).

use serde::{Deserialize, Serialize};

use super::conntrack::{ConntrackConfig, MAX_CAPACITY};
use super::ports::valid_ifname;
use super::Checker;

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
    /// Send each TCP flow's window scale factors (attributes 25 and 26, as
    /// conntrackd does with `TCPWindowTracking on`), so that the peer
    /// tracks the windows of a flow it takes over correctly. Received ones
    /// are always kept.
    pub tcp_window_tracking: bool,
    /// UDP segmentation and receive offload on the sync link
    /// (`udp_offload`, default on): runs of equal-sized datagrams go to the
    /// kernel as one segmented (GSO) send, and the socket takes coalesced
    /// (GRO) reads. The datagrams on the wire are the same either way.
    pub udp_offload: bool,
    /// Replicate confirmed expectations (`expectations = true`,
    /// conntrackd's `ExpectationSync`): the FTP and TFTP data connections
    /// helpers announced go to the peer as EXP_NEW / EXP_DEL and are
    /// committed with its flows, so such a connection announced before a
    /// failover still opens after it. Off: none are sent, and those a peer
    /// sends are counted (`expectations_ignored`) and skipped.
    pub expectations: bool,
    /// How messages travel: FT-FW over UDP, best effort over UDP, or best
    /// effort over TCP.
    pub transport: SyncTransport,
    /// Hold the first packet of a new flow until the peer acknowledged the
    /// flow (pfsync's `defer`), while the peer is up and we forward.
    pub defer: bool,
    /// Synchronous writes (`write = "sync"`): with `defer`, every packet
    /// that changed replicated state waits for the peer's acknowledgement
    /// (or the timeout), not only a new flow's first packet.
    pub sync_writes: bool,
    /// Longest a first packet is held (`defer_timeout_ms`).
    pub defer_timeout: std::time::Duration,
    /// Prompt ACK of received flows (`ack_delay_us`; with `defer` on it
    /// defaults to [`DEFAULT_ACK_DELAY_US`]); `None`: conntrackd's ACK
    /// window and alive timer only.
    pub ack_delay: Option<std::time::Duration>,
    /// Bayes lazy replication (`[sync.lazy]`, hFT-FW section VI): flows
    /// predicted to end within the barrier are not replicated unless they
    /// outlive it. `None`: every change is replicated at once.
    pub lazy: Option<ftfw_sync::lazy::LazyConfig>,
    /// Default replication level of new flows (`level`: full, established
    /// or none); an accept rule's `sync LEVEL` overrides it.
    pub level: ftfw_dataplane::flow::SyncLevel,
    /// Per-zone levels (`[[sync.zone]]` with `zone` and `level`).
    pub zone_levels: Vec<(u16, ftfw_dataplane::flow::SyncLevel)>,
    /// Cluster (`[cluster]`): every other member, each with its own FT-FW
    /// channel; empty for a pair (`destination` is then the one peer).
    pub peers: Vec<SyncPeer>,
    /// Authenticated, encrypted datagrams (`psk` or `psk_file`); `None`:
    /// plain conntrackd 1.4.7 datagrams.
    pub psk: Option<SyncPsk>,
}

/// `[sync] psk` / `psk_file`: the keys of authenticated replication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncPsk {
    /// The keys as loaded.
    pub keys: crate::keyring::Keyring,
    /// The file they came from (`psk_file`): the sync thread takes it
    /// again when it changes. `None` for an inline `psk`.
    pub file: Option<std::path::PathBuf>,
}

/// A cluster member we replicate to (from `[[cluster.member]]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncPeer {
    /// Its node id.
    pub node: u32,
    /// Its address on the sync link (it listens on `sync.port` there).
    pub address: std::net::IpAddr,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSync {
    #[serde(default = "yes")]
    pub(super) enabled: bool,
    #[serde(default = "default_sync_mode")]
    pub(super) mode: SyncMode,
    pub(super) local: Option<String>,
    pub(super) peer: Option<String>,
    pub(super) multicast_group: Option<String>,
    #[serde(default = "default_sync_port")]
    pub(super) port: i64,
    pub(super) interface: Option<String>,
    #[serde(default = "default_mtu")]
    pub(super) mtu: i64,
    #[serde(default = "default_ack_window")]
    pub(super) ack_window: i64,
    #[serde(default = "default_resend_queue")]
    pub(super) resend_queue: i64,
    #[serde(default = "default_alive_ms")]
    pub(super) alive_interval_ms: i64,
    #[serde(default = "default_flush_us")]
    pub(super) flush_delay_us: i64,
    pub(super) external_capacity: Option<i64>,
    pub(super) core: Option<i64>,
    #[serde(default = "yes")]
    pub(super) startup_resync: bool,
    #[serde(default = "yes")]
    pub(super) tcp_window_tracking: bool,
    #[serde(default = "yes")]
    pub(super) udp_offload: bool,
    #[serde(default)]
    pub(super) expectations: bool,
    #[serde(default)]
    pub(super) transport: SyncTransport,
    #[serde(default)]
    pub(super) defer: bool,
    pub(super) write: Option<String>,
    #[serde(default = "default_defer_timeout_ms")]
    pub(super) defer_timeout_ms: i64,
    pub(super) ack_delay_us: Option<i64>,
    pub(super) lazy: Option<RawLazy>,
    pub(super) level: Option<String>,
    #[serde(default)]
    pub(super) zone: Vec<RawZoneLevel>,
    pub(super) psk: Option<String>,
    pub(super) psk_file: Option<String>,
}

/// `[[sync.zone]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawZoneLevel {
    pub(super) zone: i64,
    pub(super) level: String,
}

/// `[sync.lazy]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLazy {
    #[serde(default = "default_lazy_barrier_ms")]
    pub(super) barrier_ms: i64,
    #[serde(default)]
    pub(super) max_barrier_ms: Option<i64>,
    #[serde(default = "default_lazy_threshold")]
    pub(super) threshold: f64,
    #[serde(default = "default_lazy_max_wrong")]
    pub(super) max_wrong: i64,
    #[serde(default = "default_lazy_keys")]
    pub(super) keys: i64,
}

fn default_lazy_barrier_ms() -> i64 {
    200
}
fn default_lazy_threshold() -> f64 {
    0.125
}
fn default_lazy_max_wrong() -> i64 {
    3
}
fn default_lazy_keys() -> i64 {
    65_536
}

pub(super) fn default_defer_timeout_ms() -> i64 {
    10
}

pub(super) fn yes() -> bool {
    true
}
pub(super) fn default_sync_mode() -> SyncMode {
    SyncMode::ExternalCache
}
pub(super) fn default_sync_port() -> i64 {
    i64::from(DEFAULT_SYNC_PORT)
}
pub(super) fn default_mtu() -> i64 {
    1500
}
pub(super) fn default_ack_window() -> i64 {
    300
}
pub(super) fn default_resend_queue() -> i64 {
    131_072
}
pub(super) fn default_alive_ms() -> i64 {
    1000
}
pub(super) fn default_flush_us() -> i64 {
    200
}

impl Checker<'_> {
    /// Checks `[sync]` (`None` when absent or disabled).
    pub(super) fn sync(
        &mut self,
        raw: Option<RawSync>,
        conntrack: &ConntrackConfig,
        worker_cores: Option<&[usize]>,
        in_cluster: bool,
        base: &std::path::Path,
    ) -> Option<SyncConfig> {
        raw.filter(|s| s.enabled)
            .and_then(|s| self.validate_sync(s, conntrack, worker_cores, in_cluster, base))
    }

    /// `[sync] psk` (hex, key id 1) or `psk_file` (a key ring, see
    /// `keyring.rs`); `Some(None)` when neither is given.
    fn sync_psk(&mut self, s: &RawSync, base: &std::path::Path) -> Option<Option<SyncPsk>> {
        use crate::keyring::Keyring;
        match (&s.psk, &s.psk_file) {
            (None, None) => Some(None),
            (Some(_), Some(_)) => {
                self.error("sync.psk_file", "give either psk or psk_file, not both");
                None
            }
            (Some(k), None) => {
                let Some(bytes) = ftfw_sync::wire::hex::decode(k) else {
                    self.error("sync.psk", "is not hex (two digits per byte)");
                    return None;
                };
                match Keyring::single(1, bytes) {
                    Ok(keys) => Some(Some(SyncPsk { keys, file: None })),
                    Err(e) => {
                        self.error("sync.psk", e.message);
                        None
                    }
                }
            }
            (None, Some(p)) => {
                let path = super::resolve(base, p);
                let parsed = std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|t| Keyring::parse(&t).map_err(|e| e.to_string()));
                match parsed {
                    Ok(keys) => Some(Some(SyncPsk {
                        keys,
                        file: Some(path),
                    })),
                    Err(e) => {
                        self.error("sync.psk_file", format!("{}: {e}", path.display()));
                        None
                    }
                }
            }
        }
    }

    fn validate_sync(
        &mut self,
        s: RawSync,
        conntrack: &ConntrackConfig,
        worker_cores: Option<&[usize]>,
        in_cluster: bool,
        base: &std::path::Path,
    ) -> Option<SyncConfig> {
        let before = self.diags.len();
        let psk = self.sync_psk(&s, base);
        if psk.as_ref().is_some_and(Option::is_some) && s.transport == SyncTransport::Tcp {
            self.error(
                "sync.psk",
                "authenticated replication seals each UDP datagram: use transport \"ftfw\" or \"udp-best-effort\" with a key",
            );
        }
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
            // A cluster's peers are its [[cluster.member]]s (filled in by
            // the cluster check).
            (None, None) if in_cluster => local.map(SyncDestination::Unicast),
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
        // `write`: "async" (nothing waits), "defer" (`defer = true`: a new
        // flow's first packet waits) or "sync" (every state change waits).
        let (defer, sync_writes) = match s.write.as_deref() {
            None => (s.defer, false),
            Some("async") => {
                if s.defer {
                    self.error("sync.write", "\"async\" contradicts defer = true");
                }
                (false, false)
            }
            Some("defer") => (true, false),
            Some("sync") => (true, true),
            Some(v) => {
                self.error(
                    "sync.write",
                    format!("unknown write mode {v:?} (async, defer or sync)"),
                );
                (false, false)
            }
        };
        let ack_delay = match s.ack_delay_us {
            Some(v) => self.range("sync.ack_delay_us", v, 1, 1_000_000).map(Some),
            None => Some(defer.then_some(DEFAULT_ACK_DELAY_US)),
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
        let lazy = s.lazy.map(|l| {
            let barrier = self.range("sync.lazy.barrier_ms", l.barrier_ms, 1, 60_000);
            if !(l.threshold > 0.0 && l.threshold < 1.0) {
                self.error(
                    "sync.lazy.threshold",
                    format!(
                        "must be between 0 and 1 (a probability), not {}",
                        l.threshold
                    ),
                );
            }
            let max_wrong = self.range("sync.lazy.max_wrong", l.max_wrong, 1, 1000);
            let keys = self.range("sync.lazy.keys", l.keys, 16, 1 << 24);
            let barrier = barrier.unwrap_or(200);
            // Twice a flow's round trip, up to this (default 1 s, or the
            // least barrier if that is longer).
            let max_barrier = match l.max_barrier_ms {
                None => barrier.max(1000),
                Some(v) => {
                    let m = self
                        .range("sync.lazy.max_barrier_ms", v, 1, 60_000)
                        .unwrap_or(barrier);
                    if m < barrier {
                        self.error(
                            "sync.lazy.max_barrier_ms",
                            format!("{m} is below sync.lazy.barrier_ms ({barrier})"),
                        );
                    }
                    m.max(barrier)
                }
            };
            ftfw_sync::lazy::LazyConfig {
                barrier: std::time::Duration::from_millis(barrier),
                max_barrier: std::time::Duration::from_millis(max_barrier),
                threshold: l.threshold,
                max_wrong: max_wrong.and_then(|v| u16::try_from(v).ok()).unwrap_or(3),
                keys: keys.and_then(|v| usize::try_from(v).ok()).unwrap_or(65_536),
                ..ftfw_sync::lazy::LazyConfig::default()
            }
        });
        let level = match s.level.as_deref() {
            None => Some(ftfw_dataplane::flow::SyncLevel::Full),
            Some(v) => self.sync_level("sync.level", v),
        };
        let mut zone_levels = Vec::new();
        for (i, z) in s.zone.iter().enumerate() {
            let l = self.sync_level(&format!("sync.zone[{i}].level"), &z.level);
            let zone = self.range(&format!("sync.zone[{i}].zone"), z.zone, 0, 65535);
            if let (Some(l), Some(zone)) = (l, zone) {
                let zone = u16::try_from(zone).unwrap_or(0);
                if zone_levels.iter().any(|(x, _)| *x == zone) {
                    self.error(
                        &format!("sync.zone[{i}].zone"),
                        format!("zone {zone} is given twice"),
                    );
                }
                zone_levels.push((zone, l));
            }
        }
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
            tcp_window_tracking: s.tcp_window_tracking,
            udp_offload: s.udp_offload,
            expectations: s.expectations,
            transport: s.transport,
            defer,
            sync_writes,
            defer_timeout: std::time::Duration::from_millis(defer_timeout?),
            ack_delay: ack_delay?.map(std::time::Duration::from_micros),
            lazy,
            level: level?,
            zone_levels,
            peers: Vec::new(),
            psk: psk?,
        })
    }

    /// A sync level by name, or an error at `field`.
    fn sync_level(&mut self, field: &str, v: &str) -> Option<ftfw_dataplane::flow::SyncLevel> {
        let l = ftfw_dataplane::flow::SyncLevel::parse(v);
        if l.is_none() {
            self.error(
                field,
                format!("unknown level {v:?} (full, established or none)"),
            );
        }
        l
    }
}
