//! Routed-mode console payloads: the neighbor table and the route table.

use serde::{Deserialize, Serialize};

/// Answer to `Request::Neighbors`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighborsInfo {
    /// Entries, sorted by address.
    pub neighbors: Vec<NeighborEntry>,
    /// Most entries the table holds.
    pub capacity: u64,
    /// Entries learned or changed since start.
    pub learned: u64,
    /// Entries expired since start.
    pub expired: u64,
    /// New entries refused because the table was full.
    pub table_full: u64,
}

/// One neighbor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NeighborEntry {
    /// Its address.
    pub ip: String,
    /// Its MAC, `52:54:00:00:00:01`.
    pub mac: String,
    /// The port it was learned on.
    pub port: String,
    /// Seconds since it was last learned or confirmed.
    pub age_secs: u64,
}

/// Answer to `Request::Routes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutesInfo {
    /// Routes, longest prefix first (the order lookups try them).
    pub routes: Vec<RouteEntry>,
}

/// One route.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEntry {
    /// Destination network.
    pub to: String,
    /// Gateway; absent for connected routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Egress port.
    pub port: String,
    /// `connected` or `static`.
    pub kind: String,
}
