//! `[cluster]` uplink keys: a member that owns no buckets keeps its
//! uplinks down (Roelle's backups), raising them before it forwards.
//!
//! ```toml
//! [cluster]
//! uplinks_down_when_idle = true
//! uplinks = ["outside"]          # [[port]] names, passed to the scripts
//! uplink_timeout_ms = 2000       # time limit of each script
//! [cluster.scripts]
//! activate_uplink = "/usr/local/libexec/ftfw/uplink-up"
//! deactivate_uplink = "/usr/local/libexec/ftfw/uplink-down"
//! uplink_check = "/usr/local/libexec/ftfw/uplink-check"   # optional
//! ```
//!
//! As in Roelle's paper (and `[failover.scripts]`), bringing a link up or
//! down depends on the layer-2 technology and is the operator's script;
//! ftfwd has no built-in for it (the pair's built-in `activate_uplink` and
//! `deactivate_uplink` do nothing), so both scripts are required. The keys
//! live in `[cluster]`, not `[failover]`: `[failover] mode = "election"`,
//! whose keys those are, is refused with `[cluster]`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{resolve, Checker};

/// Default time limit of an uplink script.
pub const DEFAULT_UPLINK_TIMEOUT_MS: u64 = 2000;

/// The procedures `[cluster.scripts]` may name.
pub const UPLINK_PROCEDURES: [&str; 3] = ["activate_uplink", "deactivate_uplink", "uplink_check"];

/// `[cluster] uplinks_down_when_idle = true`, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterUplinks {
    /// The uplink ports (their names are the scripts' arguments).
    pub ports: Vec<String>,
    /// Brings them up (exit 0 = done).
    pub activate: PathBuf,
    /// Brings them down.
    pub deactivate: PathBuf,
    /// Run after each activation: are they usable? (exit 0 = yes).
    pub check: Option<PathBuf>,
    /// Time limit of each script (killed and failed after it).
    pub timeout: Duration,
}

/// The uplink keys of `[cluster]` as written.
pub(super) struct RawUplinks<'a> {
    pub(super) enabled: bool,
    pub(super) ports: &'a [String],
    pub(super) timeout_ms: Option<i64>,
    pub(super) scripts: &'a BTreeMap<String, String>,
}

impl Checker<'_> {
    /// Checks the uplink keys of `[cluster]` against the configured
    /// `ports`; `None` when disabled or refused.
    pub(super) fn cluster_uplinks(
        &mut self,
        raw: &RawUplinks<'_>,
        ports: &HashMap<String, usize>,
        base: &Path,
    ) -> Option<ClusterUplinks> {
        let before = self.diags.len();
        for name in raw.scripts.keys() {
            if !UPLINK_PROCEDURES.contains(&name.as_str()) {
                self.error(
                    &format!("cluster.scripts.{name}"),
                    format!("unknown procedure; one of {}", UPLINK_PROCEDURES.join(", ")),
                );
            }
        }
        if !raw.enabled {
            let used = if !raw.ports.is_empty() {
                Some("cluster.uplinks")
            } else if !raw.scripts.is_empty() {
                Some("cluster.scripts")
            } else if raw.timeout_ms.is_some() {
                Some("cluster.uplink_timeout_ms")
            } else {
                None
            };
            if let Some(field) = used {
                self.error(
                    field,
                    "only used with uplinks_down_when_idle = true (members owning no buckets keep their uplinks down)",
                );
            }
            return None;
        }
        if raw.ports.is_empty() {
            self.error(
                "cluster.uplinks_down_when_idle",
                "needs `uplinks`, the [[port]] names of the uplinks, e.g. uplinks = [\"outside\"]",
            );
        }
        for (i, name) in raw.ports.iter().enumerate() {
            if !ports.contains_key(name) {
                self.error(
                    &format!("cluster.uplinks[{i}]"),
                    format!("no [[port]] is named {name:?}"),
                );
            } else if raw.ports[..i].contains(name) {
                self.error(
                    &format!("cluster.uplinks[{i}]"),
                    format!("{name:?} is listed twice"),
                );
            }
        }
        let script = |this: &mut Self, name: &str| {
            let p = raw.scripts.get(name).map(|p| resolve(base, p));
            if p.is_none() && name != "uplink_check" {
                this.error(
                    "cluster.uplinks_down_when_idle",
                    format!("needs [cluster.scripts] {name}: bringing links up and down is the operator's script (exit 0 = done)"),
                );
            }
            p
        };
        let activate = script(self, "activate_uplink");
        let deactivate = script(self, "deactivate_uplink");
        let check = script(self, "uplink_check");
        let timeout = self.range(
            "cluster.uplink_timeout_ms",
            raw.timeout_ms
                .unwrap_or(i64::try_from(DEFAULT_UPLINK_TIMEOUT_MS).unwrap_or(2000)),
            10,
            600_000,
        );
        if self.diags.len() != before {
            return None;
        }
        Some(ClusterUplinks {
            ports: raw.ports.to_vec(),
            activate: activate?,
            deactivate: deactivate?,
            check,
            timeout: Duration::from_millis(timeout?),
        })
    }
}
