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

use std::net::IpAddr;

use ftfw_dataplane::flow::{self, proto, status, Counters, FlowState, TcpState, Tuple};
use ftfw_dataplane::port::PortStats;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod l3;
pub use l3::{NeighborEntry, NeighborsInfo, RouteEntry, RoutesInfo};

/// One request line.
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
    /// Answer to [`Request::Routes`].
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

/// Replication status (`ftfwctl sync status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatusInfo {
    /// `external-cache` or `direct`.
    pub mode: String,
    /// `[sync] transport`: `ftfw`, `udp-best-effort` or `tcp`.
    pub transport: String,
    /// What carries it: `udp`, `multicast` or `tcp`.
    #[serde(default)]
    pub link: String,
    /// Whether lost messages are recovered (FT-FW ACK/NACK) or only
    /// counted (best effort).
    #[serde(default)]
    pub reliable: bool,
    /// The TCP connections (transport `tcp` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpLinkInfo>,
    /// Our address and port on the sync link.
    pub local: String,
    /// Where our datagrams go.
    pub destination: String,
    /// The peer: `up` (heard within three ALIVE intervals), `down`
    /// (silent longer), or `unknown` (never heard).
    pub peer_state: String,
    /// Milliseconds since the peer's last datagram.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_last_heard_ms: Option<u64>,
    /// Our HELLO handshake: `init`, `say` (waiting for HELLO_BACK), `done`.
    pub hello: String,
    /// Sequence number of our next message.
    pub seq_out: u32,
    /// Last peer sequence number accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_in: Option<u32>,
    /// Messages waiting for the peer's ACK.
    pub resend_queue: u64,
    /// Flows waiting to be sent.
    pub tx_queue: u64,
    /// Messages in and out.
    pub msgs_in: u64,
    /// Messages sent.
    pub msgs_out: u64,
    /// Bytes in.
    pub bytes_in: u64,
    /// Bytes out.
    pub bytes_out: u64,
    /// Datagrams in.
    pub datagrams_in: u64,
    /// Datagrams out.
    pub datagrams_out: u64,
    /// Peer messages found missing (sequence gaps).
    pub lost: u64,
    /// Messages rejected for their header or framing.
    pub malformed: u64,
    /// Messages with a valid header but a bad payload.
    pub malformed_payload: u64,
    /// Messages dropped as old (sequence before the expected one).
    pub stale: u64,
    /// Messages we sent again after a NACK.
    pub retransmitted: u64,
    /// NACKs received.
    pub nacks_in: u64,
    /// Times the peer restarted (a new HELLO).
    pub peer_restarts: u64,
    /// Datagrams from addresses other than the peer's, dropped.
    pub foreign_datagrams: u64,
    /// Send errors on the socket.
    pub send_errors: u64,
    /// State deltas taken from the workers.
    pub deltas_in: u64,
    /// Deltas lost because a worker's ring was full (repaired by re-export).
    pub ring_overflows: u64,
    /// Queue overflows in the protocol engine (transmit, resend, control,
    /// event).
    pub queue_overflows: u64,
    /// Full-table exports run (RESYNC answers and re-exports).
    pub exports: u64,
    /// Flows sent by those exports.
    pub exported_flows: u64,
    /// RESYNCs the peer asked of us.
    pub resyncs_in: u64,
    /// Whether the answer to our last RESYNC request (at start, or
    /// `ftfwctl resync`) is known to be complete: the peer went idle
    /// (ALIVE) after sending it. True when we never asked.
    #[serde(default)]
    pub resync_complete: bool,
    /// Flows in the external cache.
    pub external_flows: u64,
    /// External cache capacity.
    pub external_capacity: u64,
    /// New peer flows refused because the external cache was full.
    pub external_full: u64,
    /// Peer flows injected into the shards (direct mode).
    pub injected: u64,
    /// Deferred first packets: `off` (not configured), `on` (configured,
    /// not active now: no peer, or the handshake is not done) or `active`.
    #[serde(default)]
    pub defer: String,
    /// First packets held so far (summed over workers).
    #[serde(default)]
    pub defer_held: u64,
    /// Held packets released by the peer's ACK.
    #[serde(default)]
    pub defer_released: u64,
    /// Held packets released by the timeout (or because defer went inactive).
    #[serde(default)]
    pub defer_timeouts: u64,
    /// Packets not held because a worker's defer queue was full.
    #[serde(default)]
    pub defer_overflow: u64,
}

/// The TCP sync link's connections and counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpLinkInfo {
    /// Our connection to the peer (our messages) is established.
    pub out_up: bool,
    /// The peer's connection to us (its messages) is established.
    pub in_up: bool,
    /// The peer's end of that connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_from: Option<String>,
    /// Outgoing connections established.
    pub connects: u64,
    /// Outgoing connect attempts that failed or timed out (retried every
    /// ALIVE interval).
    pub connect_failures: u64,
    /// Established outgoing connections that ended.
    pub disconnects: u64,
    /// Incoming connections accepted from the peer.
    pub accepted: u64,
    /// Incoming connections that ended.
    pub in_closed: u64,
    /// Incoming connections refused (not from the peer's address).
    pub refused: u64,
    /// Bytes waiting in the send buffer.
    pub buffered_bytes: u64,
    /// Send buffer size.
    pub buffer_capacity: u64,
    /// Datagrams dropped because the send buffer was full.
    pub send_drops: u64,
    /// Bytes of half-sent datagrams dropped with a lost connection.
    pub cut_bytes: u64,
    /// Incoming connections closed for a bad message length.
    pub framing_errors: u64,
    /// Full exports run to repair drops and lost connections.
    pub repairs: u64,
}

/// What the appliance implements to answer console requests. Called on the
/// control thread, one request at a time.
pub trait ConsoleHandler {
    /// Answers one request. Failures are [`Response::Error`]; never panics on
    /// bad input.
    fn handle(&mut self, req: Request) -> Response;
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
}

/// Answer to [`Request::RulesReload`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadResult {
    /// The rule set now in force.
    pub rules: RulesSummary,
    /// Rule count before the reload.
    pub previous_count: usize,
}

// ---------------------------------------------------------------------------
// Flows
// ---------------------------------------------------------------------------

/// Answer to [`Request::FlowsList`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowsListing {
    /// The flows, at most the request's limit.
    pub flows: Vec<FlowJson>,
    /// How many flows matched in all.
    pub total: u64,
}

/// A `conntrack -L` style filter; absent fields match everything. Address,
/// port and protocol fields match the original tuple, as in conntrack.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowFilter {
    /// IP protocol (`-p`): a name (`tcp`) or a number in JSON.
    #[serde(default, with = "opt_proto", skip_serializing_if = "Option::is_none")]
    pub proto: Option<u8>,
    /// Original source address (`-s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<IpAddr>,
    /// Original destination address (`-d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<IpAddr>,
    /// Original source port (`--sport`); never matches portless protocols.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    /// Original destination port (`--dport`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// TCP state (`--state`), as `conntrack` names it; implies TCP.
    #[serde(
        default,
        with = "opt_tcp_state",
        skip_serializing_if = "Option::is_none"
    )]
    pub state: Option<TcpState>,
    /// Conntrack zone (`-w`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<u16>,
    /// Connection mark (`-m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mark: Option<u32>,
}

impl FlowFilter {
    /// Whether `f` passes the filter.
    pub fn matches(&self, f: &FlowState) -> bool {
        let t = &f.key.orig;
        let ports = flow::has_ports(t.proto);
        self.proto.is_none_or(|p| t.proto == p)
            && self.src.is_none_or(|a| t.src_ip() == a)
            && self.dst.is_none_or(|a| t.dst_ip() == a)
            && self.sport.is_none_or(|p| ports && t.src_port == p)
            && self.dport.is_none_or(|p| ports && t.dst_port == p)
            && self
                .state
                .is_none_or(|s| t.proto == proto::TCP && f.tcp_state == s)
            && self.zone.is_none_or(|z| f.key.zone == z)
            && self.mark.is_none_or(|m| f.mark == m)
    }

    /// Whether the filter matches everything.
    pub fn is_empty(&self) -> bool {
        *self == FlowFilter::default()
    }
}

/// A tuple in JSON: ports for port protocols, type/code/id for ICMP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TupleJson {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (port protocols only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    /// Destination port (port protocols only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// ICMP type (ICMP only).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// ICMP code (ICMP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u8>,
    /// ICMP identifier (ICMP only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u16>,
}

impl TupleJson {
    /// The JSON form of `t`.
    pub fn from_tuple(t: &Tuple) -> TupleJson {
        let mut j = TupleJson {
            src: t.src_ip(),
            dst: t.dst_ip(),
            sport: None,
            dport: None,
            icmp_type: None,
            code: None,
            id: None,
        };
        if t.is_icmp() {
            j.icmp_type = Some(t.icmp_type());
            j.code = Some(t.icmp_code());
            j.id = Some(t.icmp_id());
        } else if flow::has_ports(t.proto) {
            j.sport = Some(t.src_port);
            j.dport = Some(t.dst_port);
        }
        j
    }

    /// Validates against `proto` and builds the tuple. `what` names the
    /// tuple in messages (`original`, `reply`).
    pub fn to_tuple(&self, proto: u8, what: &str) -> Result<Tuple, String> {
        if self.src.is_ipv4() != self.dst.is_ipv4() {
            return Err(format!(
                "{what}: src {} and dst {} are of different families",
                self.src, self.dst
            ));
        }
        let v6 = self.src.is_ipv6();
        let icmp = (proto == proto::ICMP && !v6) || (proto == proto::ICMPV6 && v6);
        if proto == proto::ICMP && v6 {
            return Err(format!("{what}: icmp with IPv6 addresses; use icmpv6"));
        }
        if proto == proto::ICMPV6 && !v6 {
            return Err(format!("{what}: icmpv6 with IPv4 addresses; use icmp"));
        }
        let has_icmp = self.icmp_type.is_some() || self.code.is_some() || self.id.is_some();
        let has_ports = self.sport.is_some() || self.dport.is_some();
        let (sp, dp) = if icmp {
            if has_ports {
                return Err(format!(
                    "{what}: sport/dport do not apply to {}; use type, code and id",
                    proto_name(proto)
                ));
            }
            let ty = self
                .icmp_type
                .ok_or_else(|| format!("{what}: {} needs a type", proto_name(proto)))?;
            (
                self.id.unwrap_or(0),
                u16::from(ty) << 8 | u16::from(self.code.unwrap_or(0)),
            )
        } else if flow::has_ports(proto) {
            if has_icmp {
                return Err(format!("{what}: type/code/id apply to icmp only"));
            }
            match (self.sport, self.dport) {
                (Some(s), Some(d)) => (s, d),
                _ => {
                    return Err(format!(
                        "{what}: {} needs sport and dport",
                        proto_name(proto)
                    ))
                }
            }
        } else {
            if has_ports || has_icmp {
                return Err(format!(
                    "{what}: protocol {} has no ports or ICMP fields",
                    proto_name(proto)
                ));
            }
            (0, 0)
        };
        Ok(Tuple::new(self.src, self.dst, proto, sp, dp))
    }
}

/// Counters of both directions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersJson {
    /// Original direction.
    pub original: Counters,
    /// Reply direction.
    pub reply: Counters,
}

/// A flow in JSON: what `flows list` returns and `flows add` takes.
///
/// On input (`flows add`) `proto`, `original` and `timeout` are required;
/// `family` and `proto_num` are checked when present; `reply` defaults to
/// the inverse of `original` (a different reply means NAT); `state` is
/// required for TCP and refused otherwise; the status is `status` OR'd with
/// the bits named in `status_names`, and CONFIRMED is always set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowJson {
    /// Protocol name (`tcp`, `udp`, `icmp`, ...) or decimal number.
    pub proto: String,
    /// Protocol number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto_num: Option<u8>,
    /// `ipv4` or `ipv6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// Original-direction tuple.
    pub original: TupleJson,
    /// Reply-direction tuple.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<TupleJson>,
    /// Conntrack zone.
    #[serde(default)]
    pub zone: u16,
    /// TCP state name (`ESTABLISHED`), TCP only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Status bits as a number.
    #[serde(default)]
    pub status: u32,
    /// Status bits by name (`SEEN_REPLY`, `ASSURED`, ...).
    #[serde(default)]
    pub status_names: Vec<String>,
    /// Seconds until expiry.
    #[serde(default)]
    pub timeout: u32,
    /// Connection mark.
    #[serde(default)]
    pub mark: u32,
    /// Packet and byte counters.
    #[serde(default)]
    pub counters: CountersJson,
    /// Seconds since the flow was first received (external cache only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_secs: Option<u64>,
}

impl From<&FlowState> for FlowJson {
    fn from(f: &FlowState) -> FlowJson {
        let t = &f.key.orig;
        FlowJson {
            proto: proto_name(t.proto),
            proto_num: Some(t.proto),
            family: Some(if t.v6 { "ipv6" } else { "ipv4" }.into()),
            original: TupleJson::from_tuple(t),
            reply: Some(TupleJson::from_tuple(&f.reply_tuple())),
            zone: f.key.zone,
            state: (t.proto == proto::TCP).then(|| f.tcp_state.name().to_string()),
            status: f.status,
            status_names: status_names(f.status),
            timeout: f.timeout_secs,
            mark: f.mark,
            counters: CountersJson {
                original: f.counters[0],
                reply: f.counters[1],
            },
            active_secs: None,
        }
    }
}

impl TryFrom<FlowJson> for FlowState {
    type Error = String;

    fn try_from(j: FlowJson) -> Result<FlowState, String> {
        let p = proto_from_name(&j.proto)
            .ok_or_else(|| format!("proto: unknown protocol {:?}", j.proto))?;
        if let Some(n) = j.proto_num {
            if n != p {
                return Err(format!("proto_num: {n} does not match proto {:?}", j.proto));
            }
        }
        let orig = j.original.to_tuple(p, "original")?;
        if let Some(fam) = &j.family {
            let want = if orig.v6 { "ipv6" } else { "ipv4" };
            if fam != want {
                return Err(format!(
                    "family: {fam:?} does not match the {want} addresses"
                ));
            }
        }
        let mut extras = flow::FlowExtras::default();
        if let Some(r) = &j.reply {
            let reply = r.to_tuple(p, "reply")?;
            if reply.v6 != orig.v6 {
                return Err("reply: address family differs from the original".into());
            }
            if reply != orig.reply() {
                extras.reply = Some(reply);
            }
        }
        let tcp_state = match (p, &j.state) {
            (proto::TCP, Some(s)) => TcpState::from_name(s)
                .ok_or_else(|| format!("state: unknown TCP state {s:?} (e.g. ESTABLISHED)"))?,
            (proto::TCP, None) => return Err("state: required for tcp (e.g. ESTABLISHED)".into()),
            (_, Some(s)) => return Err(format!("state: {s:?} applies to tcp only")),
            (_, None) => TcpState::None,
        };
        let mut bits = j.status;
        for n in &j.status_names {
            bits |=
                status_bit(n).ok_or_else(|| format!("status_names: unknown status bit {n:?}"))?;
        }
        if bits & !0xffff != 0 {
            return Err(format!("status: {bits:#x} has undefined bits above 0xffff"));
        }
        if j.timeout == 0 {
            return Err("timeout: must be at least 1 second".into());
        }
        Ok(FlowState {
            key: flow::FlowKey { orig, zone: j.zone },
            tcp_state,
            status: bits | status::CONFIRMED,
            timeout_secs: j.timeout,
            mark: j.mark,
            wscale: [0, 0],
            counters: [j.counters.original, j.counters.reply],
            extras,
        })
    }
}

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

const PROTO_NAMES: [(u8, &str); 8] = [
    (proto::ICMP, "icmp"),
    (proto::TCP, "tcp"),
    (proto::UDP, "udp"),
    (proto::DCCP, "dccp"),
    (proto::GRE, "gre"),
    (proto::ICMPV6, "icmpv6"),
    (proto::SCTP, "sctp"),
    (proto::UDPLITE, "udplite"),
];

/// The name of IP protocol `p` as conntrack prints it, or its number.
pub fn proto_name(p: u8) -> String {
    PROTO_NAMES
        .iter()
        .find(|(n, _)| *n == p)
        .map_or_else(|| p.to_string(), |(_, s)| (*s).to_string())
}

/// Parses a protocol name (case-insensitive; `ipv6-icmp` too) or number.
pub fn proto_from_name(s: &str) -> Option<u8> {
    if let Ok(n) = s.parse::<u8>() {
        return Some(n);
    }
    if s.eq_ignore_ascii_case("ipv6-icmp") {
        return Some(proto::ICMPV6);
    }
    PROTO_NAMES
        .iter()
        .find(|(_, n)| n.eq_ignore_ascii_case(s))
        .map(|(p, _)| *p)
}

const STATUS_NAMES: [(u32, &str); 16] = [
    (status::EXPECTED, "EXPECTED"),
    (status::SEEN_REPLY, "SEEN_REPLY"),
    (status::ASSURED, "ASSURED"),
    (status::CONFIRMED, "CONFIRMED"),
    (status::SRC_NAT, "SRC_NAT"),
    (status::DST_NAT, "DST_NAT"),
    (status::SEQ_ADJUST, "SEQ_ADJUST"),
    (status::SRC_NAT_DONE, "SRC_NAT_DONE"),
    (status::DST_NAT_DONE, "DST_NAT_DONE"),
    (status::DYING, "DYING"),
    (status::FIXED_TIMEOUT, "FIXED_TIMEOUT"),
    (status::TEMPLATE, "TEMPLATE"),
    (status::UNTRACKED, "UNTRACKED"),
    (status::HELPER, "HELPER"),
    (status::OFFLOAD, "OFFLOAD"),
    (status::HW_OFFLOAD, "HW_OFFLOAD"),
];

/// Names of the bits set in `bits`, low bit first.
pub fn status_names(bits: u32) -> Vec<String> {
    STATUS_NAMES
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| (*n).to_string())
        .collect()
}

/// The bit named `name` (case-insensitive).
pub fn status_bit(name: &str) -> Option<u32> {
    STATUS_NAMES
        .iter()
        .find(|(_, n)| n.eq_ignore_ascii_case(name))
        .map(|(b, _)| *b)
}

mod opt_proto {
    use super::{proto_from_name, proto_name};
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NameOrNum {
        Num(u8),
        Name(String),
    }

    pub(super) fn serialize<S: Serializer>(v: &Option<u8>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(p) => s.serialize_str(&proto_name(*p)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
        match Option::<NameOrNum>::deserialize(d)? {
            None => Ok(None),
            Some(NameOrNum::Num(n)) => Ok(Some(n)),
            Some(NameOrNum::Name(s)) => proto_from_name(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown protocol {s:?}"))),
        }
    }
}

mod opt_tcp_state {
    use ftfw_dataplane::flow::TcpState;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<TcpState>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(st) => s.serialize_str(st.name()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<TcpState>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => TcpState::from_name(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown TCP state {s:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_flow() -> FlowState {
        FlowState {
            key: flow::FlowKey {
                orig: Tuple::new(
                    "192.0.2.1".parse().unwrap(),
                    "198.51.100.2".parse().unwrap(),
                    proto::TCP,
                    40000,
                    80,
                ),
                zone: 0,
            },
            tcp_state: TcpState::Established,
            status: status::SEEN_REPLY | status::ASSURED | status::CONFIRMED,
            timeout_secs: 431999,
            mark: 7,
            wscale: [0, 0],
            counters: [
                Counters {
                    packets: 3,
                    bytes: 180,
                },
                Counters {
                    packets: 2,
                    bytes: 120,
                },
            ],
            extras: flow::FlowExtras::default(),
        }
    }

    #[test]
    fn request_wire_format() {
        let r: Request = serde_json::from_str(r#"{"cmd":"status"}"#).unwrap();
        assert_eq!(r, Request::Status);
        let r: Request = serde_json::from_str(
            r#"{"cmd":"flows_list","filter":{"proto":"tcp","dport":80,"state":"established"}}"#,
        )
        .unwrap();
        let Request::FlowsList {
            filter,
            limit: None,
        } = r
        else {
            panic!("{r:?}")
        };
        assert_eq!(filter.proto, Some(6));
        assert_eq!(filter.state, Some(TcpState::Established));
        let r: Request =
            serde_json::from_str(r#"{"cmd":"flows_delete","filter":{"proto":17}}"#).unwrap();
        assert_eq!(
            r,
            Request::FlowsDelete {
                filter: FlowFilter {
                    proto: Some(17),
                    ..Default::default()
                }
            }
        );
        assert_eq!(
            serde_json::to_string(&Request::RulesReload).unwrap(),
            r#"{"cmd":"rules_reload"}"#
        );
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
        assert!(serde_json::from_str::<Request>(
            r#"{"cmd":"flows_list","filter":{"proto":"xyz"}}"#
        )
        .is_err());
        assert!(
            serde_json::from_str::<Request>(r#"{"cmd":"flows_list","filter":{"color":1}}"#)
                .is_err()
        );
    }

    #[test]
    fn response_wire_format() {
        let ok = Response::Ok(Payload::FlowsDeleted { deleted: 3 });
        let line = ok.to_line();
        assert_eq!(line, r#"{"ok":true,"kind":"flows_deleted","deleted":3}"#);
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), ok);
        let err = Response::error("no such thing");
        assert_eq!(err.to_line(), r#"{"ok":false,"error":"no such thing"}"#);
        assert_eq!(
            serde_json::from_str::<Response>(&err.to_line()).unwrap(),
            err
        );
        let stats = Response::Ok(Payload::Stats(StatsInfo::new(
            vec![
                WorkerStats {
                    rx: 1,
                    ..Default::default()
                },
                WorkerStats {
                    rx: 2,
                    tx: 5,
                    ..Default::default()
                },
            ],
            vec![PortCounters {
                name: "outside".into(),
                stats: PortStats {
                    rx_packets: 9,
                    ..Default::default()
                },
            }],
        )));
        let back: Response = serde_json::from_str(&stats.to_line()).unwrap();
        assert_eq!(back, stats);
        let Response::Ok(Payload::Stats(s)) = back else {
            panic!()
        };
        assert_eq!(s.total.rx, 3);
        assert_eq!(s.total.tx, 5);
    }

    #[test]
    fn flow_json_round_trip() {
        let f = tcp_flow();
        let j = FlowJson::from(&f);
        assert_eq!(j.proto, "tcp");
        assert_eq!(j.state.as_deref(), Some("ESTABLISHED"));
        assert_eq!(j.status_names, ["SEEN_REPLY", "ASSURED", "CONFIRMED"]);
        assert_eq!(j.reply.as_ref().unwrap().sport, Some(80));
        let text = serde_json::to_string(&j).unwrap();
        let back: FlowJson = serde_json::from_str(&text).unwrap();
        assert_eq!(FlowState::try_from(back).unwrap(), f);
    }

    #[test]
    fn flow_json_icmp() {
        let j: FlowJson = serde_json::from_str(
            r#"{"proto":"icmp","original":{"src":"192.0.2.1","dst":"192.0.2.2","type":8,"code":0,"id":77},"timeout":30}"#,
        )
        .unwrap();
        let f = FlowState::try_from(j).unwrap();
        assert_eq!(f.key.orig.icmp_type(), 8);
        assert_eq!(f.key.orig.icmp_id(), 77);
        assert_eq!(f.status, status::CONFIRMED);
        let back = FlowJson::from(&f);
        assert_eq!(back.original.icmp_type, Some(8));
        assert_eq!(back.original.sport, None);
    }

    #[test]
    fn flow_json_validation() {
        let bad = |s: &str| {
            FlowState::try_from(serde_json::from_str::<FlowJson>(s).unwrap()).unwrap_err()
        };
        assert!(bad(r#"{"proto":"tcp","original":{"src":"192.0.2.1","dst":"2001:db8::1","sport":1,"dport":2},"state":"ESTABLISHED","timeout":5}"#).contains("different families"));
        assert!(bad(r#"{"proto":"gre","original":{"src":"192.0.2.1","dst":"192.0.2.2","sport":1,"dport":2},"timeout":5}"#).contains("no ports"));
        assert!(bad(r#"{"proto":"tcp","original":{"src":"192.0.2.1","dst":"192.0.2.2","sport":1,"dport":2},"state":"OPEN","timeout":5}"#).contains("unknown TCP state"));
        assert!(bad(r#"{"proto":"tcp","original":{"src":"192.0.2.1","dst":"192.0.2.2","sport":1,"dport":2},"timeout":5}"#).contains("required for tcp"));
        assert!(bad(r#"{"proto":"udp","original":{"src":"192.0.2.1","dst":"192.0.2.2","sport":1,"dport":2},"state":"ESTABLISHED","timeout":5}"#).contains("tcp only"));
        assert!(bad(r#"{"proto":"udp","original":{"src":"192.0.2.1","dst":"192.0.2.2","sport":1},"timeout":5}"#).contains("needs sport and dport"));
        assert!(bad(r#"{"proto":"icmp","original":{"src":"2001:db8::1","dst":"2001:db8::2","type":128},"timeout":5}"#).contains("use icmpv6"));
        assert!(bad(r#"{"proto":"udp","original":{"src":"192.0.2.1","dst":"192.0.2.2","sport":1,"dport":2}}"#).contains("timeout"));
        assert!(bad(r#"{"proto":"udp","original":{"src":"192.0.2.1","dst":"192.0.2.2","sport":1,"dport":2},"timeout":5,"status_names":["BOGUS"]}"#).contains("BOGUS"));
        assert!(bad(r#"{"proto":"udp","family":"ipv6","original":{"src":"192.0.2.1","dst":"192.0.2.2","sport":1,"dport":2},"timeout":5}"#).contains("family"));
    }

    #[test]
    fn filter_matches() {
        let f = tcp_flow();
        let yes = |flt: FlowFilter| assert!(flt.matches(&f), "{flt:?}");
        let no = |flt: FlowFilter| assert!(!flt.matches(&f), "{flt:?}");
        yes(FlowFilter::default());
        yes(FlowFilter {
            proto: Some(6),
            dport: Some(80),
            sport: Some(40000),
            ..Default::default()
        });
        yes(FlowFilter {
            src: Some("192.0.2.1".parse().unwrap()),
            dst: Some("198.51.100.2".parse().unwrap()),
            ..Default::default()
        });
        yes(FlowFilter {
            state: Some(TcpState::Established),
            zone: Some(0),
            mark: Some(7),
            ..Default::default()
        });
        no(FlowFilter {
            proto: Some(17),
            ..Default::default()
        });
        no(FlowFilter {
            src: Some("198.51.100.2".parse().unwrap()),
            ..Default::default()
        });
        no(FlowFilter {
            dport: Some(443),
            ..Default::default()
        });
        no(FlowFilter {
            state: Some(TcpState::TimeWait),
            ..Default::default()
        });
        no(FlowFilter {
            zone: Some(1),
            ..Default::default()
        });
        no(FlowFilter {
            mark: Some(0),
            ..Default::default()
        });
    }
}
