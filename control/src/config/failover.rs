//! `[failover]`: keepalived or the built-in election, whose settings are
//! checked here whole, the timer bounds of Roelle 4.3 included (see
//! [`crate::election::ElectionConfig::validate`]), so every error carries
//! file and line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{resolve, Checker};

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
    /// Pre-shared key authenticating election messages (at least 16 bytes;
    /// the newest of a key ring).
    pub key: Vec<u8>,
    /// A `key_file` written as a key ring: watched, its keys taken when it
    /// changes (rotation without a restart).
    pub key_ring_file: Option<std::path::PathBuf>,
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
    /// Proactive migration (`[failover.health]`): hardware error counters
    /// that make the primary hand its role over before it fails.
    pub health: Option<crate::health::HealthConfig>,
}

impl ElectionSettings {
    /// The election machine's configuration from these settings.
    pub fn election_config(&self) -> crate::election::ElectionConfig {
        use crate::election::{ElectionConfig, NodeId, Peer};
        let peers = self
            .peers
            .iter()
            .map(|p| Peer {
                node: NodeId(p.node),
                priority: p.priority,
            })
            .collect();
        let mut c = ElectionConfig::new(NodeId(self.node), self.priority, peers, self.key.clone());
        // Above any counter a previous life of this node used.
        c.initial_counter = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        // The check period is the operator's knob; reply, deny and action
        // bounds keep their defaults, which validate() checks against it.
        c.check_interval = self.check_interval;
        c.check_interval_step = self.check_interval / 2;
        c.self_check_interval = self.check_interval;
        c.preempt = self.preempt;
        c.tmax.action = self.action_timeout;
        c.reqcheck_timeout = c.min_reqcheck_timeout() * 3 / 2;
        c
    }
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFailover {
    pub(super) mode: FailoverMode,
    pub(super) node: Option<i64>,
    pub(super) priority: Option<i64>,
    pub(super) key: Option<String>,
    pub(super) key_file: Option<String>,
    pub(super) port: Option<i64>,
    #[serde(default)]
    pub(super) peer: Vec<RawElectionPeer>,
    pub(super) check_interval_ms: Option<i64>,
    #[serde(default)]
    pub(super) preempt: bool,
    pub(super) action_timeout_ms: Option<i64>,
    #[serde(default)]
    pub(super) downlinks: Vec<String>,
    #[serde(default)]
    pub(super) uplinks: Vec<String>,
    #[serde(default)]
    pub(super) scripts: std::collections::BTreeMap<String, String>,
    pub(super) health: Option<RawHealth>,
}

/// `[failover.health]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub(super) root: Option<String>,
    pub(super) interval_ms: Option<i64>,
    pub(super) uncorrected_errors: Option<i64>,
    pub(super) corrected_per_minute: Option<i64>,
    pub(super) pcie_fatal_errors: Option<i64>,
    pub(super) max_temp_c: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawElectionPeer {
    pub(super) node: i64,
    pub(super) address: String,
    #[serde(default = "default_peer_priority")]
    pub(super) priority: i64,
}

pub(super) fn default_peer_priority() -> i64 {
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
            health: None,
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

impl Checker<'_> {
    /// A pre-shared key of `section` from `key` (hex) or `key_file`: a key
    /// ring (`ID HEX` lines, see `crate::keyring`; the newest key is
    /// returned, with the file's path, which the driver watches for
    /// rotation) or one raw key (its bytes, surrounding whitespace
    /// trimmed); at least 16 bytes.
    pub(super) fn key_material(
        &mut self,
        section: &str,
        key: Option<&str>,
        key_file: Option<&str>,
        base: &Path,
    ) -> Option<(Vec<u8>, Option<std::path::PathBuf>)> {
        let field = |k: &str| format!("{section}.{k}");
        let bytes = match (key, key_file) {
            (Some(_), Some(_)) => {
                self.error(&field("key_file"), "give either key or key_file, not both");
                None
            }
            (None, None) => {
                self.error(
                    section,
                    "needs `key` (hex) or `key_file`: its messages are authenticated",
                );
                None
            }
            (Some(k), None) => match ftfw_sync::wire::hex::decode(k) {
                Some(b) => Some((b, None)),
                None => {
                    self.error(&field("key"), "is not hex (two digits per byte)");
                    None
                }
            },
            (None, Some(p)) => {
                let path = resolve(base, p);
                match std::fs::read(&path) {
                    Ok(b) => match std::str::from_utf8(&b) {
                        Ok(t) if crate::keyring::looks_like_ring(t) => {
                            match crate::keyring::Keyring::parse(t) {
                                Ok(ring) => Some((ring.newest().1.to_vec(), Some(path))),
                                Err(e) => {
                                    self.error(
                                        &field("key_file"),
                                        format!("{}:{}: {}", path.display(), e.line, e.message),
                                    );
                                    return None;
                                }
                            }
                        }
                        _ => Some((b.trim_ascii().to_vec(), None)),
                    },
                    Err(e) => {
                        self.error(&field("key_file"), format!("{}: {e}", path.display()));
                        None
                    }
                }
            }
        };
        if let Some((k, _)) = &bytes {
            if k.len() < 16 {
                let f = field(if key.is_some() { "key" } else { "key_file" });
                self.error(&f, format!("{} bytes; at least 16 are needed", k.len()));
            }
        }
        bytes
    }

    /// Checks `[failover]`; `has_sync` says whether `[sync]` is configured,
    /// `ports` are the configured port names.
    pub(super) fn failover(
        &mut self,
        raw: &RawFailover,
        has_sync: bool,
        base: &Path,
        ports: &HashMap<String, usize>,
    ) -> FailoverConfig {
        if raw.mode != FailoverMode::None && !has_sync {
            self.error(
                "failover.mode",
                format!("\"{}\" needs a [sync] section: a backup without replicated state would reset every connection at takeover", raw.mode.as_str()),
            );
        }
        let election = if raw.mode == FailoverMode::Election {
            self.validate_election(raw, base, ports)
        } else {
            None
        };
        FailoverConfig {
            mode: raw.mode,
            election,
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
        let key = self.key_material("failover", f.key.as_deref(), f.key_file.as_deref(), base);
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
        let health = f.health.as_ref().map(|h| {
            let d = crate::health::HealthConfig::default();
            let mut num = |field: &str, v: Option<i64>, dflt: u64, min: u64, max: u64| {
                v.map_or(Some(dflt), |v| {
                    self.range(&format!("failover.health.{field}"), v, min, max)
                })
                .unwrap_or(dflt)
            };
            let interval_default = u64::try_from(d.interval.as_millis()).unwrap_or(1000);
            let interval = num(
                "interval_ms",
                h.interval_ms,
                interval_default,
                10,
                3_600_000,
            );
            let ue = num(
                "uncorrected_errors",
                h.uncorrected_errors,
                d.uncorrected_errors,
                0,
                1 << 32,
            );
            let ce = num(
                "corrected_per_minute",
                h.corrected_per_minute,
                d.corrected_per_minute,
                1,
                1 << 32,
            );
            let aer = num(
                "pcie_fatal_errors",
                h.pcie_fatal_errors,
                d.pcie_fatal_errors,
                0,
                1 << 32,
            );
            let temp_default = u64::try_from(d.max_temp_c).unwrap_or(95);
            let temp = num("max_temp_c", h.max_temp_c, temp_default, 30, 150);
            crate::health::HealthConfig {
                root: h
                    .root
                    .as_deref()
                    .map_or(d.root.clone(), |r| resolve(base, r)),
                interval: std::time::Duration::from_millis(interval),
                uncorrected_errors: ue,
                corrected_per_minute: ce,
                pcie_fatal_errors: aer,
                max_temp_c: i64::try_from(temp).unwrap_or(d.max_temp_c),
            }
        });
        if self.diags.len() != before {
            return None;
        }
        let (key, key_ring_file) = key?;
        let settings = ElectionSettings {
            node: u32::try_from(node?).ok()?,
            priority: u8::try_from(priority?).ok()?,
            key,
            key_ring_file,
            port: u16::try_from(port?).ok()?,
            peers,
            check_interval: std::time::Duration::from_millis(check?),
            preempt: f.preempt,
            action_timeout: std::time::Duration::from_millis(action?),
            downlinks: f.downlinks.clone(),
            uplinks: f.uplinks.clone(),
            scripts,
            health,
        };
        self.election_bounds(&settings, f.key.is_none())?;
        Some(settings)
    }

    /// Checks the election machine's bounds (Roelle 4.3: reply and deny
    /// timeouts against the procedure limits, the backups' check periods,
    /// deadline overflow, cluster size) on the configuration `settings`
    /// give, reporting a violation against the `[failover]` key that drives
    /// the bound: `check_interval_ms` for the timers, `action_timeout_ms`
    /// for the procedure limits. `None` when a bound is violated.
    pub(super) fn election_bounds(
        &mut self,
        settings: &ElectionSettings,
        key_from_file: bool,
    ) -> Option<()> {
        let Err(e) = settings.election_config().validate() else {
            return Some(());
        };
        let field = match e.field {
            "key" if key_from_file => "failover.key_file",
            "key" => "failover.key",
            "peers" => "failover.peer",
            "tmax" => "failover.action_timeout_ms",
            _ => "failover.check_interval_ms",
        };
        self.error(field, e.to_string());
        None
    }
}
