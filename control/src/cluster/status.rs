//! What `ftfwctl cluster status --json` prints: one node's view of the
//! cluster ([`ClusterStatus`]) and the coordinator's counters.

use serde::Serialize;

use super::msg::NodeState;
use super::wire::CodecStats;
use super::NodeId;

/// What the coordinator counted since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClusterCounters {
    /// The codec: accepted, encoded, rejected by reason (unauthenticated,
    /// unknown node, malformed, replayed, bad header).
    pub codec: CodecStats,
    /// Datagrams handed to the driver.
    pub messages_out: u64,
    /// Datagrams dropped because the transmit queue was full.
    pub transmit_overflow: u64,
    /// Maps older than the one we hold (ignored).
    pub stale_maps: u64,
    /// Maps whose bucket count or node table does not match our
    /// configuration (ignored).
    pub foreign_maps: u64,
    /// Releases for a map we do not hold yet, or for buckets we do not
    /// wait for (ignored; the sender repeats what matters).
    pub unexpected_releases: u64,
    /// Requests we received as master (drain, undrain, rebalance).
    pub requests: u64,
    /// Requests for a node not in the configuration (ignored).
    pub bad_requests: u64,
    /// Maps adopted (newer than the one held).
    pub maps_applied: u64,
    /// Maps adopted that skipped versions this node never held: its
    /// buckets' flows were also imported from every member lost since.
    pub maps_skipped: u64,
    /// Maps this node made as master.
    pub maps_made: u64,
    /// Buckets this node started forwarding.
    pub buckets_gained: u64,
    /// Buckets this node stopped forwarding.
    pub buckets_lost: u64,
    /// Buckets gained from a dead or restarted owner (takeovers).
    pub takeovers: u64,
    /// Buckets gained from a live owner after its release (planned moves).
    pub planned_moves: u64,
    /// Flushes the driver reported failed (retried).
    pub flush_failures: u64,
    /// Buckets merged again from a node after we forwarded them: a late
    /// release, or a node declared dead that was alive (false death).
    pub merges: u64,
    /// Times this node's own timers ran late by more than two heartbeats
    /// (it was not scheduled): the silence of its peers over that stall
    /// was not held against them.
    pub own_stalls: u64,
    /// Peers heard again, with the same incarnation, after a silence
    /// longer than their dead-after time (declared dead while alive);
    /// each raised that peer's dead-after time.
    pub false_deaths: u64,
    /// Buckets of planned moves committed without the old owner's
    /// release: it held our map (it stopped forwarding them) for twice
    /// `dead_after_max` and sent none (its late release is merged).
    pub release_timeouts: u64,
}

/// One configured node as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeStatus {
    /// The node.
    pub node: NodeId,
    /// Ourselves, or heard from within its dead-after time.
    pub alive: bool,
    /// The master (lowest live id).
    pub master: bool,
    /// As its last heartbeat said (`None`: never heard).
    pub state: Option<NodeState>,
    /// Since its last authenticated message (`None`: never, or ourselves).
    pub last_heard_ms: Option<u64>,
    /// Silent this long, it is dead: `dead_after`, raised after its false
    /// deaths up to `dead_after_max` (`None`: ourselves).
    pub dead_after_ms: Option<u64>,
    /// Times it was heard again, with the same incarnation, after a
    /// silence longer than its dead-after time (0 for ourselves).
    pub false_deaths: u64,
    /// Its incarnation (start time) as last heard.
    pub incarnation: u64,
    /// Buckets the map gives it.
    pub owned: u32,
    /// Buckets it backs up in the map.
    pub backup: u32,
    /// Flows in its table (load), as last heard.
    pub flows: u64,
    /// Newest map it holds, as last heard.
    pub map_version: u64,
    /// Newest map it fully applied, as last heard.
    pub applied_version: u64,
    /// Drained by an operator.
    pub drained: bool,
}

/// A bucket move this node is in the middle of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PendingMove {
    /// `waiting_release` (from `peer`), `committing` (from `peer`, `None`
    /// when the previous owner is unknown), `flushing` or `releasing` (to
    /// `peer`; releasing = flushed, waiting for the new owner to apply).
    pub stage: &'static str,
    /// The other node.
    pub peer: Option<NodeId>,
    /// How many buckets.
    pub buckets: u32,
    /// The buckets, as ranges.
    pub ranges: String,
}

/// This node's view of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// This node.
    pub node: NodeId,
    /// Our incarnation.
    pub incarnation: u64,
    /// Joining, ready or draining.
    pub state: NodeState,
    /// The lowest live id (may be us).
    pub master: NodeId,
    /// Whether we act as master now (past the start-up grace, holding the
    /// newest map anyone reports).
    pub acting_master: bool,
    /// The map we hold (0: none).
    pub map_version: u64,
    /// The newest map we fully applied.
    pub applied_version: u64,
    /// Buckets in the map.
    pub buckets: u32,
    /// Buckets we forward now.
    pub forwarding: u32,
    /// Every configured node, by id.
    pub nodes: Vec<NodeStatus>,
    /// Our moves in progress.
    pub pending: Vec<PendingMove>,
    /// Counters.
    pub counters: ClusterCounters,
}
