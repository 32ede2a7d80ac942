//! `[cluster]`: a cluster of up to 16 ftfwd nodes (issue 12): flow
//! ownership by buckets, replication to every peer, the coordination
//! port and timers.
//!
//! ```toml
//! [cluster]
//! node = 1                    # this node's id
//! mode = "multi-primary"      # or "primary-backup"
//! buckets = 4096
//! backups = 1                 # backups per bucket
//! replicate = "all"           # or "backups": only to each bucket's backups
//! key = "00112233..."         # or key_file; authenticates bucket-map messages
//! [[cluster.member]]
//! id = 1
//! address = "10.0.0.1"        # its address on the sync link
//! [[cluster.member]]
//! id = 2
//! address = "10.0.0.2"
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::cluster_uplinks::{ClusterUplinks, RawUplinks};
use super::sync::{SyncConfig, SyncDestination, SyncPeer, SyncTransport};
use super::Checker;

/// Default UDP port of cluster coordination (bucket maps, heartbeats), on
/// the sync link's address.
pub const DEFAULT_CLUSTER_PORT: u16 = 3782;
/// Most nodes in a cluster.
pub const MAX_NODES: usize = 16;
/// Most backups per bucket.
pub const MAX_BACKUPS: u8 = 3;

/// How the buckets are shared out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterMode {
    /// Every node owns a share of the buckets and backs up others (the
    /// FT-FW paper's multi-primary set-up, the a-priori paper's n+1).
    MultiPrimary,
    /// One node (the coordinator's master) owns every bucket; the others
    /// are its backups.
    PrimaryBackup,
}

impl ClusterMode {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterMode::MultiPrimary => "multi-primary",
            ClusterMode::PrimaryBackup => "primary-backup",
        }
    }
}

/// Which peers receive a flow's changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Replicate {
    /// Every peer (any node can take any bucket over at once).
    All,
    /// Only the backups of the flow's bucket (less traffic; a bucket moved
    /// to a node that is not its backup is bulk-synced first).
    Backups,
}

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterNode {
    /// Its id, unique in the cluster (1 to 32767).
    pub id: u32,
    /// Its address on the sync link (its `sync.local`).
    pub address: IpAddr,
}

/// `[cluster]`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node's id.
    pub node: u32,
    /// How buckets are shared out.
    pub mode: ClusterMode,
    /// Buckets in the map (1 to 16384).
    pub buckets: u32,
    /// Backups per bucket.
    pub backups: u8,
    /// Which peers get a flow's changes.
    pub replicate: Replicate,
    /// Coordination port, the same on every node; bound on `sync.local`.
    pub port: u16,
    /// Interval of heartbeats to every node.
    pub heartbeat: Duration,
    /// A node not heard for this long is dead (its buckets are taken over).
    pub dead_after: Duration,
    /// A node declared dead and then heard with the same incarnation (a
    /// false death) gets a longer dead-after time, up to this.
    pub dead_after_max: Duration,
    /// A raised dead-after time halves (down to `dead_after`) each time
    /// this long passes, if the node's longest silence meanwhile (x 1.5)
    /// fits the halved time.
    pub dead_after_relax: Duration,
    /// Give a node that joins (or returns) its share of buckets at once.
    pub auto_rebalance: bool,
    /// Drop other members' frames in the kernel, before they reach a
    /// worker, where the port can (AF_PACKET; `kernel_filter`, on unless
    /// set to false).
    pub kernel_filter: bool,
    /// Pre-shared key of coordination messages (at least 16 bytes; the
    /// newest of a key ring).
    pub key: Vec<u8>,
    /// A `key_file` written as a key ring: watched, its keys taken when it
    /// changes (rotation without a restart).
    pub key_ring_file: Option<std::path::PathBuf>,
    /// Every member, this node included, in file order.
    pub nodes: Vec<ClusterNode>,
    /// Routed mode: the multicast MAC every member answers for the virtual
    /// addresses with (as CLUSTERIP did); `None` in transparent mode.
    pub shared_mac: Option<[u8; 6]>,
    /// `uplinks_down_when_idle`: while this member owns no buckets its
    /// uplinks are down (the operator's scripts); `None`: left alone.
    pub uplinks: Option<ClusterUplinks>,
}

impl ClusterConfig {
    /// The other members.
    pub fn peers(&self) -> impl Iterator<Item = &ClusterNode> {
        self.nodes.iter().filter(move |n| n.id != self.node)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    node: Option<i64>,
    #[serde(default = "default_mode")]
    mode: ClusterMode,
    #[serde(default = "default_buckets")]
    buckets: i64,
    #[serde(default = "default_backups")]
    backups: i64,
    #[serde(default = "default_replicate")]
    replicate: Replicate,
    port: Option<i64>,
    #[serde(default = "default_heartbeat_ms")]
    heartbeat_ms: i64,
    dead_after_ms: Option<i64>,
    dead_after_max_ms: Option<i64>,
    #[serde(default = "default_dead_after_relax_ms")]
    dead_after_relax_ms: i64,
    #[serde(default = "yes")]
    auto_rebalance: bool,
    #[serde(default = "yes")]
    kernel_filter: bool,
    key: Option<String>,
    key_file: Option<String>,
    shared_mac: Option<String>,
    #[serde(default)]
    uplinks_down_when_idle: bool,
    #[serde(default)]
    uplinks: Vec<String>,
    uplink_timeout_ms: Option<i64>,
    #[serde(default)]
    scripts: BTreeMap<String, String>,
    #[serde(default)]
    member: Vec<RawClusterNode>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClusterNode {
    id: i64,
    address: String,
}

fn default_mode() -> ClusterMode {
    ClusterMode::MultiPrimary
}
fn default_buckets() -> i64 {
    4096
}
fn default_backups() -> i64 {
    1
}
fn default_replicate() -> Replicate {
    Replicate::All
}
fn default_heartbeat_ms() -> i64 {
    50
}
/// `cluster.dead_after_max_ms` unless set (or `dead_after_ms`, if longer).
const DEFAULT_DEAD_AFTER_MAX_MS: u64 = 2000;
fn default_dead_after_relax_ms() -> i64 {
    30_000
}
fn yes() -> bool {
    true
}

impl Checker<'_> {
    /// Checks `[cluster]` against `[sync]` (which it completes with the
    /// peers to replicate to) and `[failover]`. `routed`: in routed mode,
    /// the number of virtual addresses; `ports`: the port names.
    pub(super) fn cluster(
        &mut self,
        raw: Option<RawCluster>,
        sync: Option<&mut SyncConfig>,
        election: bool,
        routed: Option<usize>,
        ports: &HashMap<String, usize>,
        base: &Path,
    ) -> Option<ClusterConfig> {
        let c = raw?;
        let before = self.diags.len();
        let shared_mac = self.shared_mac(c.shared_mac.as_deref(), routed);
        let uplinks = self.cluster_uplinks(
            &RawUplinks {
                enabled: c.uplinks_down_when_idle,
                ports: &c.uplinks,
                timeout_ms: c.uplink_timeout_ms,
                scripts: &c.scripts,
            },
            ports,
            base,
        );
        let node = match c.node {
            Some(n) => self.range("cluster.node", n, 1, 32767),
            None => {
                self.error("cluster", "needs `node`, this node's id");
                None
            }
        };
        let buckets = self.range(
            "cluster.buckets",
            c.buckets,
            1,
            u64::from(ftfw_dataplane::buckets::MAX_BUCKETS),
        );
        let backups = self.range("cluster.backups", c.backups, 0, u64::from(MAX_BACKUPS));
        let port = self.range(
            "cluster.port",
            c.port.unwrap_or(i64::from(DEFAULT_CLUSTER_PORT)),
            1,
            u64::from(u16::MAX),
        );
        let heartbeat = self.range("cluster.heartbeat_ms", c.heartbeat_ms, 5, 10_000);
        let dead_after = match (c.dead_after_ms, heartbeat) {
            (Some(v), Some(h)) => {
                let d = self.range("cluster.dead_after_ms", v, 1, 600_000);
                if d.is_some_and(|d| d < 3 * h) {
                    self.error(
                        "cluster.dead_after_ms",
                        format!("{v} is below 3 heartbeats ({} ms): one lost heartbeat would kill a node", 3 * h),
                    );
                }
                d
            }
            (None, h) => h.map(|h| 4 * h),
            (Some(_), None) => None,
        };
        let dead_after_max = match (c.dead_after_max_ms, dead_after) {
            (Some(v), Some(d)) => {
                let m = self.range("cluster.dead_after_max_ms", v, 1, 600_000);
                if m.is_some_and(|m| m < d) {
                    self.error(
                        "cluster.dead_after_max_ms",
                        format!("{v} is below dead_after_ms ({d} ms)"),
                    );
                }
                m
            }
            (None, d) => d.map(|d| d.max(DEFAULT_DEAD_AFTER_MAX_MS)),
            (Some(_), None) => None,
        };
        let dead_after_relax = self.range(
            "cluster.dead_after_relax_ms",
            c.dead_after_relax_ms,
            100,
            86_400_000,
        );
        let key = self.key_material("cluster", c.key.as_deref(), c.key_file.as_deref(), base);
        let mut nodes: Vec<ClusterNode> = Vec::new();
        if c.member.len() < 2 {
            self.error(
                "cluster",
                "needs at least two [[cluster.member]] entries (this node and a peer)",
            );
        }
        if c.member.len() > MAX_NODES {
            self.error(
                &format!("cluster.member[{MAX_NODES}]"),
                format!("at most {MAX_NODES} nodes"),
            );
        }
        for (i, m) in c.member.iter().enumerate() {
            let id = self.range(&format!("cluster.member[{i}].id"), m.id, 1, 32767);
            let addr = self.ip(&format!("cluster.member[{i}].address"), &m.address);
            let (Some(id), Some(addr)) = (id, addr) else {
                continue;
            };
            let id = u32::try_from(id).unwrap_or(0);
            if nodes.iter().any(|n| n.id == id) {
                self.error(
                    &format!("cluster.member[{i}].id"),
                    format!("node {id} is listed twice"),
                );
            }
            if let Some(other) = nodes.iter().find(|n| n.address == addr) {
                self.error(
                    &format!("cluster.member[{i}].address"),
                    format!("{addr} is also node {}'s address", other.id),
                );
            }
            if addr.is_unspecified() || addr.is_multicast() {
                self.error(
                    &format!("cluster.member[{i}].address"),
                    format!("{addr} is not a node's unicast address"),
                );
            }
            nodes.push(ClusterNode { id, address: addr });
        }
        let node = node.and_then(|n| u32::try_from(n).ok());
        if let Some(n) = node {
            if !nodes.is_empty() && !nodes.iter().any(|m| m.id == n) {
                self.error(
                    "cluster.node",
                    format!("node {n} is not among the [[cluster.member]] entries"),
                );
            }
        }
        if let (Some(b), Some(k)) = (buckets, backups) {
            if c.mode == ClusterMode::MultiPrimary
                && usize::try_from(b).unwrap_or(usize::MAX) < c.member.len()
            {
                self.error(
                    "cluster.buckets",
                    format!(
                        "{b} buckets cannot give each of {} nodes a share",
                        c.member.len()
                    ),
                );
            }
            if usize::try_from(k).unwrap_or(usize::MAX) >= c.member.len().max(1) {
                self.error(
                    "cluster.backups",
                    format!("{k} backups per bucket need at least {} nodes", k + 1),
                );
            }
        }
        if election {
            self.error(
                "failover.mode",
                "\"election\" and [cluster] both decide who forwards: a cluster elects its own coordinator, use failover mode \"none\"",
            );
        }
        match sync {
            None => self.error(
                "cluster",
                "needs a [sync] section: the nodes replicate their flows over the sync link",
            ),
            Some(s) => {
                if s.transport != SyncTransport::Ftfw {
                    self.error(
                        "sync.transport",
                        format!("a cluster replicates with \"ftfw\" (per-peer acknowledgements), not {:?}", s.transport.as_str()),
                    );
                }
                if matches!(s.destination, SyncDestination::Multicast(_)) {
                    self.error(
                        "sync.multicast_group",
                        "a cluster replicates by unicast to every [[cluster.member]]; remove multicast_group",
                    );
                }
                if let Some(me) = node.and_then(|n| nodes.iter().find(|m| m.id == n)) {
                    if me.address != s.local {
                        self.error(
                            "sync.local",
                            format!(
                                "{} is not this node's cluster address {} (node {})",
                                s.local, me.address, me.id
                            ),
                        );
                    }
                }
                if let Some(bad) = nodes
                    .iter()
                    .find(|n| n.address.is_ipv4() != s.local.is_ipv4())
                {
                    self.error(
                        "cluster",
                        format!(
                            "node {} ({}) is not in sync.local's address family",
                            bad.id, bad.address
                        ),
                    );
                }
                if self.diags.len() == before {
                    s.peers = nodes
                        .iter()
                        .filter(|n| Some(n.id) != node)
                        .map(|n| SyncPeer {
                            node: n.id,
                            address: n.address,
                        })
                        .collect();
                    if let Some(first) = s.peers.first() {
                        s.destination = SyncDestination::Unicast(first.address);
                    }
                }
            }
        }
        if self.diags.len() != before {
            return None;
        }
        Some(ClusterConfig {
            node: node?,
            mode: c.mode,
            buckets: u32::try_from(buckets?).ok()?,
            backups: u8::try_from(backups?).ok()?,
            replicate: c.replicate,
            port: u16::try_from(port?).ok()?,
            heartbeat: Duration::from_millis(heartbeat?),
            dead_after: Duration::from_millis(dead_after?),
            dead_after_max: Duration::from_millis(dead_after_max?),
            dead_after_relax: Duration::from_millis(dead_after_relax?),
            auto_rebalance: c.auto_rebalance,
            kernel_filter: c.kernel_filter,
            key: key.as_ref()?.0.clone(),
            key_ring_file: key?.1,
            nodes,
            shared_mac,
            uplinks,
        })
    }

    /// `cluster.shared_mac`: required in routed mode (with virtual
    /// addresses for it), a multicast MAC so that every member's port
    /// receives what is sent to it; refused in transparent mode.
    fn shared_mac(&mut self, mac: Option<&str>, routed: Option<usize>) -> Option<[u8; 6]> {
        const FIELD: &str = "cluster.shared_mac";
        match (mac, routed) {
            (None, None) => None,
            (Some(_), None) => {
                self.error(
                    FIELD,
                    "only used in routed mode (dataplane.mode = \"routed\"): in transparent mode every member sees every frame",
                );
                None
            }
            (None, Some(_)) => {
                self.error(
                    "cluster",
                    "a routed cluster needs `shared_mac`, the multicast MAC every member answers for the virtual addresses with, e.g. shared_mac = \"03:00:5e:00:00:01\"",
                );
                None
            }
            (Some(m), Some(vips)) => {
                if vips == 0 {
                    self.error(
                        FIELD,
                        "a routed cluster needs [[virtual_address]] entries: the hosts' gateways, answered at the shared MAC",
                    );
                }
                match super::l3::parse_mac(m) {
                    Some(b) if b[0] & 1 == 1 && b != [0xff; 6] => Some(b),
                    Some(_) => {
                        self.error(
                            FIELD,
                            format!("{m} is not a multicast MAC (the lowest bit of its first byte must be set, e.g. 03:00:5e:00:00:01)"),
                        );
                        None
                    }
                    None => {
                        self.error(
                            FIELD,
                            format!("{m:?} is not a MAC address (write 03:00:5e:00:00:01)"),
                        );
                        None
                    }
                }
            }
        }
    }
}
