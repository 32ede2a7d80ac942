//! Clusters of 2 to 16 firewalls (issue 12): bucket maps, the messages that
//! agree on them, and the sans-IO coordinator of one node.
//!
//! Layer: below `appliance`, `replication` and `config` (it imports none of
//! them; only `election::wire`'s key check). Nothing here does IO, reads a
//! clock or spawns a thread: `control/src/cluster_driver.rs` runs a
//! [`Coordinator`] for ftfwd, `control/tests/cluster_sim.rs` runs several
//! in virtual time.
//!
//! # Design
//! The flow hash picks one of B buckets (`ftfw_dataplane::buckets`); a
//! [`BucketMap`] gives every bucket one owner (the node that forwards it)
//! and backups, and records what the master knew of every node
//! (incarnation, eligible, dead, drained). [`plan`] makes maps
//! deterministically with the fewest moves ([`map`]).
//!
//! - Heartbeats: every node sends every configured node its incarnation,
//!   state (joining, ready, draining), the map version it holds and the one
//!   it fully applied, its flow count and bucket count, each `heartbeat`.
//!   A node not heard for its dead-after time is dead: `dead_after`,
//!   raised for a node after its false deaths, and never counting a stall
//!   of our own (`coordinator/detector.rs`).
//! - Master: the lowest live id among ready nodes. It acts once past a
//!   start-up grace of `dead_after` and holding the newest map any live
//!   peer reports (peers send their map to a master that reports an older
//!   one). When an owner dies or restarts (new incarnation), it makes a new
//!   map at once, moving only that owner's buckets (to their first eligible
//!   backup, else the least loaded node; if no eligible node is left,
//!   drained ready nodes rather than nobody). Joins, drains, undrains and
//!   rebalances wait until the current map is settled (every live,
//!   non-joining node applied it), so a planned move always starts from the
//!   node that really forwards the bucket. A map's version is one above
//!   any version seen; maps are ordered by version, then lower master id,
//!   so after a healed partition every node converges on one map. A new
//!   map goes to every configured peer, live or not (a falsely dead owner
//!   stops forwarding the buckets it lost as soon as it holds the map);
//!   resends go to live peers that report an older one. A member listed
//!   dead that is back, or one holding another master's map of our
//!   version, gets a new map even when every ready member is drained
//!   (the drained owners keep their buckets). Only a ready member makes
//!   maps: a map from its master shows that master ready, though the
//!   heartbeats saying so were lost.
//! - A gainer that dies mid-move: when an owner fails, the master gives
//!   each of its buckets that it gained in a planned move it is not known
//!   to have finished (its last heartbeat, same incarnation, shows an
//!   applied version below the map that moved the bucket to it) back to
//!   the move's source if that is live, ready and the same incarnation:
//!   the source still holds the flows (it evicts only once the gainer
//!   applied), so it takes the bucket back (forwarding at once if it had
//!   not released it, else after committing the dead gainer's replicated
//!   flows) instead of a third node forwarding before the source's flush
//!   reaches it. A drained source owns it only until the next settled
//!   map moves it on as a planned move. Every node records the source of
//!   each bucket's last planned move (carried over a takeover whose lost
//!   owner had not finished it) so that any node can do this as master.
//!   Not in primary-backup clusters (a single owner).
//! - Primary-backup (`primary_backup`): one node owns every bucket: the
//!   master when the cluster forms or the primary fails (or is drained),
//!   else the current primary stays, so a returning lower id (master
//!   again) does not preempt it; an operator's rebalance moves everything
//!   to the master.
//! - Gaining a bucket: if its previous owner (in the map held before) is
//!   dead or restarted in the new map, or unknown: `Commit` from it, then
//!   `Forward`. If it is alive (a planned move): wait for its `Released`
//!   (or for its heartbeat to show it applied our map), then `Commit` from
//!   it, then `Forward`; if a newer map declares it lost meanwhile, take
//!   over from it instead. A bucket is forwarded only once no commit or
//!   wait for it is pending.
//! - False deaths: a takeover from an owner whose incarnation the map
//!   still lists (declared dead, maybe only unheard) is remembered; if it
//!   was alive, it flushes its flows of those buckets to us once it sees
//!   the map, so we `Commit` from it once more (a merge) on its late
//!   `Released` or when its heartbeat shows it applied that map (its
//!   releases may all be lost: it stops repeating them once our heartbeat
//!   shows we applied the map). A bucket that leaves us before is merged
//!   at once and handed on. If it dies before it applied that map, what
//!   it created after the takeover was replicated to us: we merge from our
//!   cache of it when our detector judges it dead (once per silence; not
//!   at all if it was silent since the takeover's commit) or when it
//!   restarts, and the prune on `Settled` spares that cache's flows of
//!   those buckets until then ([`Coordinator::cache_owners`]).
//! - Missed maps: a map that skips versions we never held does not tell
//!   who forwarded our buckets in between (the owner in our held map may
//!   not be the last one). Besides the usual commit from, or wait for,
//!   that owner, we import the flows of every bucket the map gives us
//!   from each member lost since our map (listed dead, or another
//!   incarnation, where our map had it otherwise); a live member that
//!   forwarded one meanwhile flushes and releases it to us when it sees
//!   the map, and a release is merged into buckets we forward, commit or
//!   still wait for from another member (`maps_skipped`).
//! - Takeover sources: a takeover imports from the lost owner and from
//!   every other member the map lists lost (the lost owner may never have
//!   carried out its own takeover, so the flows may still be in our cache
//!   of the member before it). A member that became ready only after the
//!   master last heard a failed owner cannot hold that owner's flows (its
//!   startup resync did not include them): the master gives the owner's
//!   orphans to another member where it can (`map::plan_avoiding`), also
//!   the buckets such a member was still waiting to receive from that
//!   owner in a planned move; their new owner imports from the failed
//!   source too.
//! - A planned move whose old owner has held our map (so stopped
//!   forwarding the buckets) for twice `dead_after_max` without releasing
//!   them is committed from what it replicated to us and forwarded
//!   (`release_timeouts`); a late release is merged. After a healed
//!   partition two members could otherwise each wait for the other's
//!   release of buckets already handed over under the other side's map of
//!   the same version.
//! - Losing a bucket: `Forward` without it at once, `Flush` our flows of
//!   it to the new owner, send `Released` (repeated each heartbeat), and
//!   `Evict` once the new owner's heartbeat shows it applied that map.
//!   A release is acknowledged (`release_ack`, by version) only if every
//!   bucket in it is the receiver's (forwarded, committing or awaited)
//!   and the receiver waits for nothing more from its sender. A
//!   newer map re-targets a transfer whose bucket moved on; a bucket that
//!   comes back before its release was sent is forwarded again directly.
//! - A map is applied when nothing is pending for it (`Settled`).
//!
//! # Message flow of a planned move (A drains, B gains bucket b)
//! ```text
//! master --Map v--> A, B
//! A: Forward(-b), Flush(b -> B) ... flushed --Released(v, b)--> B
//! B: Commit(b from A) ... committed, Forward(+b); heartbeat applied=v
//! A: Evict(b)
//! ```
//!
//! # Invariants
//! - A node forwards a bucket only after the previous forwarder released
//!   it, or after the map marks that forwarder's incarnation dead: without
//!   partitions or false death detection, at most one node forwards a
//!   bucket at any instant (the simulator checks it in every run without
//!   partitions and false deaths).
//! - Once the network is calm, all live nodes hold the same map and the
//!   union of their forwarding sets covers every bucket exactly once.
//! - Flows move with their bucket: the loser flushes before releasing, the
//!   gainer commits before forwarding, the loser evicts only after the
//!   gainer applied.
//! - Decoding never panics; every datagram is size-bound; every rejection
//!   (unauthenticated, unknown node, malformed, replayed, stale map) is
//!   counted. Queues are bounded ([`coordinator::TRANSMIT_MAX`]; actions:
//!   one per transfer or commit, a newer `Forward` replaces a queued one).

pub mod coordinator;
pub mod map;
pub mod msg;
pub mod status;
pub mod uplinks;
pub mod wire;

pub use coordinator::{
    Action, ConfigError, Coordinator, CoordinatorConfig, RequestError, Transmit,
};
pub use map::{plan, Balance, BucketMap, MapNode};
pub use msg::NodeState;
pub use status::{ClusterCounters, ClusterStatus};
pub use uplinks::{GateOutput, UplinkGate, UplinkOp, UplinkState, UplinkStatus};

/// A configured node's id.
pub type NodeId = u32;

/// Most nodes in a cluster.
pub const MAX_NODES: usize = 16;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_detector;
