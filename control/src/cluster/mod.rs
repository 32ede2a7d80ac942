//! Clusters of 2 to 16 firewalls (issue 12): bucket maps, the messages that
//! agree on them, and the sans-IO coordinator of one node.

pub mod coordinator;
pub mod map;
pub mod msg;
pub mod status;
pub mod wire;

pub use coordinator::{
    Action, ConfigError, Coordinator, CoordinatorConfig, RequestError, Transmit,
};
pub use map::{plan, Balance, BucketMap, MapNode};
pub use msg::NodeState;
pub use status::{ClusterCounters, ClusterStatus};

/// A configured node's id.
pub type NodeId = u32;

/// Most nodes in a cluster.
pub const MAX_NODES: usize = 16;
