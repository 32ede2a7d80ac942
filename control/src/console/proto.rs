//! The console protocol: JSON lines over a Unix stream socket.
//!
//! The client writes one [`Request`] object per line, tagged by `cmd`:
//!
//! ```text
//! {"cmd":"status"}
//! {"cmd":"flows_list","filter":{"proto":"tcp","dport":80,"state":"ESTABLISHED"},"limit":100}
//! ```
//!
//! and reads one [`Response`] object per line: `{"ok":true,"kind":"...",
//! ...payload}` or `{"ok":false,"error":"message"}`. The payload's `kind`
//! names its [`Payload`] variant, so responses decode without knowing the
//! request.

use ftfw_dataplane::port::PortStats;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod expect;
mod flows;
mod l3;
mod sync;
#[cfg(test)]
mod tests;

pub use expect::{ExpectJson, ExpectListing};
pub use flows::{
    proto_from_name, proto_name, status_bit, status_names, CountersJson, FlowError, FlowFilter,
    FlowJson, FlowsListing, MasterJson, TupleJson,
};
pub use l3::{NeighborEntry, NeighborsInfo, RouteEntry, RoutesInfo};
pub use sync::{PeerSyncInfo, SyncStatusInfo, TcpLinkInfo};

/// One request line.
// A request is parsed once per console line and handled at once: the size
// of its largest variant (`FlowsAdd`) costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Daemon overview. Answered with [`Payload::Status`].
    Status,
    /// Counters per worker and port. Answered with [`Payload::Stats`].
    Stats,
    /// Flows matching `filter`, at most `limit` of them. Answered with
    /// [`Payload::Flows`].
    FlowsList {
        /// Which flows.
        #[serde(default)]
        filter: FlowFilter,
        /// At most this many flows in the answer (all when absent);
        /// [`FlowsListing::total`] still counts every match.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u64>,
    },
    /// Inserts a flow. Answered with [`Payload::FlowAdded`].
    FlowsAdd {
        /// The flow; validated with `FlowState::try_from`.
        flow: FlowJson,
    },
    /// Deletes the flows matching `filter`. Answered with
    /// [`Payload::FlowsDeleted`].
    FlowsDelete {
        /// Which flows; an empty filter deletes every flow.
        #[serde(default)]
        filter: FlowFilter,
    },
    /// The loaded rule set. Answered with [`Payload::Rules`].
    RulesShow,
    /// Reloads the rules from their source. Answered with
    /// [`Payload::Reloaded`], or an error that leaves the running set in place.
    RulesReload,
    /// Replication state and counters. Answered with [`Payload::SyncStatus`].
    SyncStatus,
    /// The peer's flows held in the external cache (`conntrackd -e`).
    /// Answered with [`Payload::ExternalFlows`].
    ExternalList {
        /// Which flows.
        #[serde(default)]
        filter: FlowFilter,
        /// At most this many flows in the answer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u64>,
    },
    /// The expectations helpers created (`conntrack -L expect`). Answered
    /// with [`Payload::Expectations`].
    ExpectList,
    /// The peer's expectations in the external expectation cache
    /// (`[sync] expectations`; `conntrackd -e expect`). Answered with
    /// [`Payload::Expectations`].
    ExpectExternal,
    /// Imports the external cache into the flow table (`conntrackd -c`).
    /// Answered with [`Payload::Committed`].
    Commit,
    /// Asks the peer for its whole table (`conntrackd -n`). Answered with
    /// [`Payload::ResyncRequested`].
    Resync,
    /// Empties the external cache (`conntrackd -f external`). Answered with
    /// [`Payload::ExternalFlushed`].
    FlushExternal,
    /// A failover detector (keepalived's notify script) says what this node
    /// is now. Answered with [`Payload::Notified`].
    Notify {
        /// The new state.
        state: NotifyState,
    },
    /// Routed mode: the neighbor table. Answered with [`Payload::Neighbors`].
    Neighbors,
    /// Routed mode: the route table. Answered with [`Payload::Routes`].
    Routes,
    /// Routed mode: reload the static routes (`[[route]]`) of the
    /// configuration file, whole or not at all (as SIGHUP does). Answered
    /// with [`Payload::Routes`], the table now in force.
    RoutesReload,
    /// Planned handover of the primary role to another node (built-in
    /// election): bulk transfer of our table, confirmation that the peer
    /// acknowledged all of it, then the switch. Answered with
    /// [`Payload::MigrationStarted`]; `status` shows the progress.
    Migrate {
        /// The node that becomes primary.
        to: u32,
    },
    /// Planned restart (an upgrade): a standalone node writes its table to
    /// the state file and replaces its process, which restores it.
    /// Answered with [`Payload::RestartScheduled`] before it happens.
    Restart,
    /// Cluster (`[cluster]`): the bucket map, the members and their load,
    /// the moves under way, per-peer replication. Answered with
    /// [`Payload::Cluster`].
    ClusterStatus,
    /// Cluster: a change of the bucket map, carried out by the
    /// coordinator (planned moves: no flow lost). Answered with
    /// [`Payload::ClusterRequested`]; `cluster status` shows the result.
    ClusterChange {
        /// What to change.
        change: ClusterChange,
    },
}

/// A change of a cluster's bucket map that an operator asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClusterChange {
    /// Move every bucket off `node` (before maintenance); it keeps backing
    /// up the others' flows.
    Drain {
        /// The node to drain.
        node: u32,
    },
    /// Let `node` own buckets again (with a rebalance).
    Undrain {
        /// The node.
        node: u32,
    },
    /// Even out bucket ownership over the members that may own buckets.
    Rebalance,
}

impl ClusterChange {
    /// What it does, for the operator.
    pub fn describe(self) -> String {
        match self {
            ClusterChange::Drain { node } => format!("drain node {node}"),
            ClusterChange::Undrain { node } => format!("undrain node {node}"),
            ClusterChange::Rebalance => "rebalance".to_string(),
        }
    }
}

/// `ftfwctl cluster status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// The coordinator's view: this node, the master, the map version,
    /// members with their state and load, moves under way.
    pub coordinator: serde_json::Value,
    /// Replication per peer (FT-FW channel state and counters).
    pub sync_peers: serde_json::Value,
    /// `[cluster] kernel_filter` and the workers' counts: `configured`,
    /// `loads`, `failures`, `not_owner`.
    #[serde(default)]
    pub kernel_filter: serde_json::Value,
}

/// The state keeper as `ftfwctl status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateKeeperInfo {
    /// The state file.
    pub path: String,
    /// Flows kept in it.
    pub flows: u64,
    /// Changes written since start.
    pub records: u64,
    /// Whole snapshots written.
    pub snapshots: u64,
    /// Shards read again after a delta ring overflow.
    pub reexports: u64,
    /// Failed writes.
    pub write_errors: u64,
    /// Size of the file now.
    pub file_bytes: u64,
    /// What the start restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<crate::keeper::RestoreReport>,
}

/// What a failover detector tells the node it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyState {
    /// Take over: commit the peer's flows, forward, announce addresses.
    Master,
    /// Stand by: stop forwarding, refresh the external cache.
    Backup,
    /// This node is faulty: stop forwarding.
    Fault,
}

impl NotifyState {
    /// The name as keepalived passes it.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyState::Master => "master",
            NotifyState::Backup => "backup",
            NotifyState::Fault => "fault",
        }
    }
}

/// A role change with the time each step took.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleChange {
    /// `active`, `backup` or `fault`.
    pub role: String,
    /// Unix time (seconds) of the change.
    pub at: u64,
    /// The steps, in the order they ran.
    pub steps: Vec<StepTime>,
    /// Microseconds from the request to the last step's end.
    pub total_us: u64,
    /// Flows committed from the external cache (takeover only).
    #[serde(default)]
    pub flows_committed: u64,
}

/// One step of a role change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTime {
    /// What was done.
    pub step: String,
    /// How long it took, in microseconds.
    pub micros: u64,
    /// Anything worth knowing (skipped, refused flows, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// The durations of one step of the role changes to one role, over every
/// change since start (the Prometheus histogram
/// `ftfw_role_change_step_duration_seconds`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepHistogram {
    /// The role changed to: `active`, `backup` or `fault`.
    pub role: String,
    /// The step (`commit`, `forward`, ...).
    pub step: String,
    /// How many times it ran.
    pub count: u64,
    /// Their durations summed, in microseconds.
    pub sum_us: u64,
    /// Cumulative counts: how many took at most `le_us` microseconds, by
    /// increasing bound (the `+Inf` bucket is `count`).
    pub buckets: Vec<HistogramBucket>,
}

/// One cumulative histogram bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramBucket {
    /// Upper bound, microseconds.
    pub le_us: u64,
    /// Observations at or below it.
    pub count: u64,
}

/// One response line: a payload or an error message.
// One exists per request on the control thread; boxing would only make
// handlers noisier.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// `{"ok":true,"kind":...,...}`.
    Ok(Payload),
    /// `{"ok":false,"error":"..."}`.
    Error(String),
}

impl Response {
    /// An error response.
    pub fn error(msg: impl Into<String>) -> Response {
        Response::Error(msg.into())
    }

    /// Serializes into one line, without the trailing newline.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(
                "{{\"ok\":false,\"error\":{}}}",
                serde_json::Value::String(format!("cannot encode response: {e}"))
            )
        })
    }
}

impl Serialize for Response {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Response::Ok(p) => {
                let serde_json::Value::Object(fields) =
                    serde_json::to_value(p).map_err(serde::ser::Error::custom)?
                else {
                    return Err(serde::ser::Error::custom("payload is not an object"));
                };
                let mut m = s.serialize_map(Some(fields.len() + 1))?;
                m.serialize_entry("ok", &true)?;
                // `kind` first, for readers of raw lines.
                if let Some(k) = fields.get("kind") {
                    m.serialize_entry("kind", k)?;
                }
                for (k, v) in fields.iter().filter(|(k, _)| *k != "kind") {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
            Response::Error(e) => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("ok", &false)?;
                m.serialize_entry("error", e)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Response {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Response, D::Error> {
        let mut obj = serde_json::Map::deserialize(d)?;
        match obj.remove("ok") {
            Some(serde_json::Value::Bool(true)) => {
                serde_json::from_value(serde_json::Value::Object(obj))
                    .map(Response::Ok)
                    .map_err(serde::de::Error::custom)
            }
            Some(serde_json::Value::Bool(false)) => match obj.remove("error") {
                Some(serde_json::Value::String(e)) => Ok(Response::Error(e)),
                _ => Err(serde::de::Error::custom(
                    "error response without an \"error\" string",
                )),
            },
            _ => Err(serde::de::Error::custom(
                "response without a boolean \"ok\"",
            )),
        }
    }
}

/// The payload of a successful response, tagged by `kind`.
// One payload per console request, built and serialized once: the size of
// the largest variant (sync status) does not matter, boxing it would only
// add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Payload {
    /// Answer to [`Request::Status`].
    Status(StatusInfo),
    /// Answer to [`Request::Stats`].
    Stats(StatsInfo),
    /// Answer to [`Request::FlowsList`].
    Flows(FlowsListing),
    /// Answer to [`Request::FlowsAdd`].
    FlowAdded {
        /// The flow as inserted.
        flow: FlowJson,
    },
    /// Answer to [`Request::FlowsDelete`].
    FlowsDeleted {
        /// How many flows were deleted.
        deleted: u64,
    },
    /// Answer to [`Request::RulesShow`].
    Rules(RulesInfo),
    /// Answer to [`Request::RulesReload`].
    Reloaded(ReloadResult),
    /// Answer to [`Request::SyncStatus`].
    SyncStatus(SyncStatusInfo),
    /// Answer to [`Request::ExternalList`].
    ExternalFlows(FlowsListing),
    /// Answer to [`Request::ExpectList`].
    Expectations(ExpectListing),
    /// Answer to [`Request::Commit`].
    Committed(CommitResult),
    /// Answer to [`Request::Resync`].
    ResyncRequested {
        /// The RESYNC request is queued for the peer.
        queued: bool,
    },
    /// Answer to [`Request::FlushExternal`].
    ExternalFlushed {
        /// Flows removed from the external cache.
        flushed: u64,
    },
    /// Answer to [`Request::Notify`].
    Notified(RoleChange),
    /// Answer to [`Request::Neighbors`].
    Neighbors(NeighborsInfo),
    /// Answer to [`Request::Routes`] and [`Request::RoutesReload`].
    Routes(RoutesInfo),
    /// Answer to [`Request::Migrate`].
    MigrationStarted {
        /// The node that becomes primary.
        to: u32,
    },
    /// Answer to [`Request::Restart`]: the restart follows the answer.
    RestartScheduled {
        /// Whether the table is handed to the new process (a standalone
        /// node with a state file).
        keeps_flows: bool,
    },
    /// Answer to [`Request::ClusterStatus`].
    Cluster(ClusterInfo),
    /// Answer to [`Request::ClusterChange`]: handed to the coordinator.
    ClusterRequested {
        /// What was asked.
        change: ClusterChange,
    },
}

/// Result of a commit of the external cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitResult {
    /// Flows inserted or replaced in the shards.
    pub committed: u64,
    /// Flows refused because a shard was full.
    pub refused: u64,
    /// Milliseconds the whole commit took.
    pub millis: u64,
}

/// What the appliance implements to answer console requests. Called on the
/// control thread, one request at a time.
pub trait ConsoleHandler {
    /// Answers one request. Failures are [`Response::Error`]; never panics on
    /// bad input.
    fn handle(&mut self, req: Request) -> Response;

    /// Answers `req` in pieces instead (see [`super::stream`]), if this
    /// handler streams that request; `None` (the default): [`Self::handle`]
    /// answers it.
    fn stream(&mut self, _req: &Request) -> Option<Box<dyn super::stream::ResponseStream>> {
        None
    }
}

// ---------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------

/// Daemon overview.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusInfo {
    /// ftfwd version.
    pub version: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Process id.
    pub pid: u32,
    /// Worker threads.
    pub workers: usize,
    /// `adaptive` or `busy`.
    pub poll_mode: String,
    /// Forwarding mode (`transparent`).
    pub mode: String,
    /// Ports in configuration order.
    pub ports: Vec<PortInfo>,
    /// Flows in the table now.
    pub flows: u64,
    /// Flow table capacity.
    pub capacity: u64,
    /// The loaded rule set.
    pub rules: RulesSummary,
    /// State deltas the control thread has consumed from the workers'
    /// rings (replication will consume them; until then they are counted).
    #[serde(default)]
    pub deltas_consumed: u64,
    /// Error of the last failed reload, cleared by a successful one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reload_error: Option<String>,
    /// `active` (forwarding), `backup` or `fault` (not forwarding).
    #[serde(default)]
    pub role: String,
    /// Who decides the role: `none` or `keepalived`.
    #[serde(default)]
    pub failover: String,
    /// The last takeover (`notify master`) with its step times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_takeover: Option<RoleChange>,
    /// Role changes since start, per role changed to.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub role_changes: std::collections::BTreeMap<String, u64>,
    /// Step durations of every role change since start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role_change_steps: Vec<StepHistogram>,
    /// The built-in election's status (`[failover] mode = "election"`):
    /// state, master, peers with their state, priority, freshness, dead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub election: Option<serde_json::Value>,
    /// The state file of a standalone node (`None`: not kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_keeper: Option<StateKeeperInfo>,
    /// The last planned handover (`ftfwctl migrate`): in progress, done or
    /// failed, with times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<String>,
}

/// A port as `status` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    /// Operator-facing name.
    pub name: String,
    /// Backend name (`af_packet`, `mem`, `dpdk`).
    pub backend: String,
    /// Interface, for backends that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Conntrack zone of flows entering here.
    pub zone: u16,
    /// The bridged peer port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

/// The loaded rule set in brief.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesSummary {
    /// Number of rules.
    pub count: usize,
    /// Default policy (`accept`, `drop`, `reject`).
    pub policy: String,
    /// Where the rules came from: a file path, `inline` or `none`.
    pub source: String,
    /// When they were loaded, seconds since the Unix epoch.
    pub loaded_at: u64,
}

// ---------------------------------------------------------------------------
// Stats
// ---------------------------------------------------------------------------

/// One worker's counters (the dataplane's own struct, summed by [`StatsInfo::new`]).
pub use ftfw_dataplane::worker::WorkerCounters as WorkerStats;

/// Counters of one port, summed over the workers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounters {
    /// Port name.
    pub name: String,
    /// The counters.
    #[serde(flatten)]
    pub stats: PortStats,
}

/// Answer to [`Request::Stats`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsInfo {
    /// One entry per worker, in worker order.
    pub workers: Vec<WorkerStats>,
    /// Sum of `workers`.
    pub total: WorkerStats,
    /// Per port.
    #[serde(default)]
    pub ports: Vec<PortCounters>,
}

impl StatsInfo {
    /// Builds the answer, computing the total.
    pub fn new(workers: Vec<WorkerStats>, ports: Vec<PortCounters>) -> StatsInfo {
        let mut total = WorkerStats::default();
        for w in &workers {
            total.add(w);
        }
        StatsInfo {
            workers,
            total,
            ports,
        }
    }
}

// ---------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------

/// One loaded rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleLine {
    /// Position in the rule set, from 0.
    pub index: usize,
    /// Line in the rules file (or the configuration, for inline rules).
    pub line: usize,
    /// The rule as written.
    pub text: String,
}

/// Answer to [`Request::RulesShow`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesInfo {
    /// Default policy.
    pub policy: String,
    /// A file path, `inline` or `none`.
    pub source: String,
    /// When loaded, seconds since the Unix epoch.
    pub loaded_at: u64,
    /// The rules in evaluation order.
    pub rules: Vec<RuleLine>,
    /// The `nat` rules in order (first match translates a new flow).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nat: Vec<RuleLine>,
}

/// Answer to [`Request::RulesReload`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadResult {
    /// The rule set now in force.
    pub rules: RulesSummary,
    /// Rule count before the reload.
    pub previous_count: usize,
}
