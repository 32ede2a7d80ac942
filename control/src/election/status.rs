//! The status snapshot `ftfwctl status` renders (serde, JSON on the
//! console).

use serde::Serialize;

use super::state::MainState;
use super::table::{Freshness, NodeId, Role};
use super::wire::CodecStats;

/// One other host as this node's table lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerStatus {
    /// The host.
    pub node: NodeId,
    /// Its configured priority.
    pub priority: u8,
    /// Its role as last reported.
    pub role: Role,
    /// It holds a complete copy of the state.
    pub synced: bool,
    /// Its last applied sync sequence.
    pub seq: u64,
    /// It is the master.
    pub master: bool,
    /// The master designated it to take over (preemption).
    pub designated: bool,
    /// Marked dead by the master.
    pub dead: bool,
    /// Since we last received an authenticated message from it.
    pub last_seen_ms_ago: Option<u64>,
}

/// This node's election status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ElectionStatus {
    /// This host.
    pub node: NodeId,
    /// Full state, e.g. `service/full-check-a/uplink`.
    pub state: String,
    /// Main state.
    pub main_state: MainState,
    /// Sub-state (empty for decide and final).
    pub sub_state: String,
    /// Coarse role.
    pub role: Role,
    /// Configured priority.
    pub priority: u8,
    /// Our state freshness.
    pub freshness: Freshness,
    /// The master our table names.
    pub master: Option<NodeId>,
    /// The designated successor (preemption).
    pub designated: Option<NodeId>,
    /// Every other host in the table, in rank order.
    pub peers: Vec<PeerStatus>,
    /// Since our role last changed (`None`: never changed since start).
    pub last_role_change_ms_ago: Option<u64>,
    /// Init cycles run (a host stuck in init keeps counting).
    pub init_cycles: u64,
    /// State machine counters.
    pub counters: ElectionStats,
    /// Message codec counters (unauthenticated, malformed, replayed).
    pub codec: CodecStats,
}

/// Counters (besides the codec's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ElectionStats {
    /// Authenticated messages handled.
    pub msgs_in: u64,
    /// Messages queued for sending.
    pub msgs_out: u64,
    /// Inputs dropped by the table or its guards (stale replies, denies for
    /// old attempts, messages a state does not take).
    pub ignored: u64,
    /// Inputs queued (table 2).
    pub queued: u64,
    /// Queued inputs dropped because the queue was full.
    pub queue_dropped: u64,
    /// Procedure results for a procedure the machine had moved on from.
    pub stale_results: u64,
    /// Procedures that overran their `tmax` (counted failed).
    pub procedure_timeouts: u64,
    /// Inputs the table called invalid (must stay 0).
    pub invalid_transitions: u64,
    /// Times we entered service main state.
    pub takeovers: u64,
    /// Times we left it.
    pub resignations: u64,
    /// Role changes.
    pub role_changes: u64,
    /// SVC_CHECKs answered (as master).
    pub checks_answered: u64,
    /// Takeovers vetoed (as master).
    pub denies_sent: u64,
    /// Hosts marked dead (as master).
    pub peers_marked_dead: u64,
    /// Datagrams or events dropped because the driver did not poll.
    pub output_dropped: u64,
}
