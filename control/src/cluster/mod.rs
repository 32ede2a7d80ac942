//! Clusters of 2 to 16 firewalls (issue 12): bucket maps, the messages that
//! agree on them, and the sans-IO coordinator of one node.

pub mod map;
pub mod msg;
pub mod wire;

/// A configured node's id.
pub type NodeId = u32;

/// Most nodes in a cluster.
pub const MAX_NODES: usize = 16;
