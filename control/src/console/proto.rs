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
#[cfg(test)]
mod tests;

pub use expect::{ExpectJson, ExpectListing};
pub use flows::{
    proto_from_name, proto_name, status_bit, status_names, CountersJson, FlowError, FlowFilter,
    FlowJson, FlowsListing, MasterJson, TupleJson,
};
pub use l3::{NeighborEntry, NeighborsInfo, RouteEntry, RoutesInfo};

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
    /// The peer: `up` (heard within three ALIVE intervals), `out_of_sync`
    /// (heard, but its messages of late all rejected as stale; see
    /// `out_of_sync`), `down` (silent longer), or `unknown` (never heard).
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
    /// Gaps larger than the resend queue (a far jump of the peer's
    /// sequence number), one each, not in `lost`.
    #[serde(default)]
    pub seq_jumps: u64,
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
    /// NACKs of entries already dropped from the resend queue (not
    /// answered in plain mode, as conntrackd; with a key answered by
    /// re-exporting the table, at most once per hold-off).
    #[serde(default)]
    pub nacks_unrecoverable: u64,
    /// Of those, NACKs within the hold-off of the last re-export: not
    /// answered (a peer cannot make us resend the table again and again).
    #[serde(default)]
    pub nack_reexports_suppressed: u64,
    /// NACKs whose answer the reply budget (10x the bytes received from
    /// the peer, plus what it acknowledged, plus 64 KiB/s, at most 64 KiB)
    /// cut short; the rest follows as the budget refills.
    #[serde(default)]
    pub replies_limited: u64,
    /// Bytes of messages sent again (NACK answers).
    #[serde(default)]
    pub reply_bytes: u64,
    /// Times the peer restarted (a new HELLO).
    pub peer_restarts: u64,
    /// Every message from the peer has been rejected as stale for at least
    /// one ALIVE interval while it keeps sending: our view of its sequence
    /// numbers is wrong (then `peer_state` is `out_of_sync`). After three
    /// intervals we re-base on it and ask it for a RESYNC on our own.
    #[serde(default)]
    pub out_of_sync: bool,
    /// Those recoveries (re-base and RESYNC request) so far.
    #[serde(default)]
    pub out_of_sync_resyncs: u64,
    /// Datagrams from addresses other than the peer's, dropped.
    pub foreign_datagrams: u64,
    /// Authenticated replication (`[sync] psk` / `psk_file`) is on.
    #[serde(default)]
    pub authenticated: bool,
    /// The key id our datagrams are sealed with (0: plain mode).
    #[serde(default)]
    pub key_id: u32,
    /// Datagrams from a peer's address that did not authenticate (too
    /// short, plain, a wrong key or a changed bit), dropped.
    #[serde(default)]
    pub auth_failed: u64,
    /// Authentic datagrams taken before (or older than the replay window),
    /// dropped.
    #[serde(default)]
    pub replayed: u64,
    /// Datagrams sealed with a key id we do not have, dropped.
    #[serde(default)]
    pub unknown_key_id: u64,
    /// Key file changes taken.
    #[serde(default)]
    pub key_reloads: u64,
    /// Key file changes refused (the keys in use stay).
    #[serde(default)]
    pub key_reload_errors: u64,
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
    /// Of those, requests within the hold-off (5 s) of the last answer's
    /// start: answered once, at its end.
    #[serde(default)]
    pub resyncs_deferred: u64,
    /// Full exports sent because a HELLO showed the peer restarted (at
    /// most one per 10 s per peer).
    #[serde(default)]
    pub restart_exports: u64,
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
    /// Bayes lazy replication (`[sync.lazy]`): predictions, messages
    /// saved, flows sent late, the knowledge base. `None`: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lazy: Option<ftfw_sync::lazy::LazyStats>,
    /// `[sync] level`, the default replication level of new flows.
    #[serde(default)]
    pub level: String,
    /// State changes the workers did not replicate because of their
    /// flow's sync level (`established` before it is assured, `none`).
    #[serde(default)]
    pub level_skipped: u64,
}

/// One sync peer's channel (`SyncHandle::peers_status`): in a cluster one
/// per other member, in a classic pair the one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSyncInfo {
    /// Its cluster node id (`None` for a classic pair's peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<u32>,
    /// Its address on the sync link.
    pub address: String,
    /// `up` (heard within three ALIVE intervals), `out_of_sync` (heard,
    /// but its messages of late all rejected as stale), `down` or
    /// `unknown` (never heard).
    pub state: String,
    /// Milliseconds since its last datagram.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heard_ms: Option<u64>,
    /// Our HELLO handshake with it: `init`, `say` or `done`.
    pub hello: String,
    /// Sequence number of our next message to it.
    pub seq_out: u32,
    /// Its last sequence number we accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_in: Option<u32>,
    /// Flows waiting to be sent to it.
    pub tx_queue: u64,
    /// Messages to it waiting for its ACK.
    pub resend_queue: u64,
    /// Messages received from it.
    pub msgs_in: u64,
    /// Messages sent to it.
    pub msgs_out: u64,
    /// Bytes received from it.
    pub bytes_in: u64,
    /// Bytes sent to it.
    pub bytes_out: u64,
    /// Its messages found missing (sequence gaps).
    pub lost: u64,
    /// Messages sent to it again (NACK, skipped range).
    pub retransmitted: u64,
    /// Queue overflows of its engine (each repaired by a re-export to it
    /// or a RESYNC).
    pub queue_overflows: u64,
    /// Flows in its external cache (what it replicated to us).
    pub external_flows: u64,
    /// Exports to it run (RESYNC answers, re-exports, bucket flushes).
    pub exports: u64,
    /// RESYNCs it asked of us.
    pub resyncs_in: u64,
    /// Whether its answer to our last RESYNC request is known complete.
    pub resync_complete: bool,
    /// Its messages of late all rejected as stale (see
    /// [`SyncStatusInfo::out_of_sync`]).
    #[serde(default)]
    pub out_of_sync: bool,
    /// Re-bases on it and RESYNC requests after being out of sync.
    #[serde(default)]
    pub out_of_sync_resyncs: u64,
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
