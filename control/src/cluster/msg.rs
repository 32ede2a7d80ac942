//! The coordination messages between cluster nodes (encoded by
//! [`super::wire`]).

use ftfw_dataplane::buckets::BucketSet;
use serde::Serialize;

use super::map::BucketMap;
use super::NodeId;

/// Where a node is in its life, as its heartbeat says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Started, resyncing from its peers: owns nothing yet.
    Joining,
    /// May own buckets.
    Ready,
    /// Ready, but an operator drained it: it owns nothing.
    Draining,
}

impl NodeState {
    /// Wire code.
    pub fn code(self) -> u8 {
        match self {
            NodeState::Joining => 1,
            NodeState::Ready => 2,
            NodeState::Draining => 3,
        }
    }

    /// From a wire code.
    pub fn from_code(c: u8) -> Option<NodeState> {
        match c {
            1 => Some(NodeState::Joining),
            2 => Some(NodeState::Ready),
            3 => Some(NodeState::Draining),
            _ => None,
        }
    }
}

/// What every node tells every configured node each heartbeat interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Heartbeat {
    /// Changes on every start of the node (the driver's start time): a new
    /// incarnation starts empty, so the buckets of the old one are lost.
    pub incarnation: u64,
    /// Joining, ready or draining.
    pub state: NodeState,
    /// Version of the newest map the node holds.
    pub map_version: u64,
    /// Version of the newest map it has fully applied (gained buckets
    /// committed and forwarded, lost ones flushed and released).
    pub applied_version: u64,
    /// Flows in its table (load, for the console).
    pub flows: u64,
    /// Buckets it forwards.
    pub owned: u32,
    /// The newest map version of a `Released` it took from the node this
    /// heartbeat goes to (0: none): the old owner stops resending its
    /// release, and evicts, only on this acknowledgement (a new owner can
    /// apply a map without that release, by a takeover).
    pub release_ack: u64,
}

/// An operator's request to the master, sent from any node's console.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Move every bucket off `node` (maintenance).
    Drain(NodeId),
    /// Let `node` own buckets again.
    Undrain(NodeId),
    /// Move the fewest buckets so every eligible node owns its share.
    Rebalance,
}

/// A message body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Liveness and progress.
    Heartbeat(Heartbeat),
    /// A bucket map (from the master, or to a master that holds an older
    /// one).
    Map(BucketMap),
    /// Old owner to new owner: "I stopped forwarding these buckets and you
    /// hold all my flows of them" (as of map `version`).
    Released {
        /// The map version that moved them.
        version: u64,
        /// The buckets.
        buckets: BucketSet,
    },
    /// An operator request for the master.
    Request(Request),
}

impl Body {
    /// The message's name (logs, counters).
    pub fn name(&self) -> &'static str {
        match self {
            Body::Heartbeat(_) => "heartbeat",
            Body::Map(_) => "map",
            Body::Released { .. } => "released",
            Body::Request(_) => "request",
        }
    }
}

/// An authenticated message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The configured node that sent it.
    pub sender: NodeId,
    /// What it says.
    pub body: Body,
}
