//! Connection tracking: one [`Shard`] per worker.
//!
//! - [`tcp`]: netfilter's TCP state machine and window tracking (sans-IO).
//! - [`l4`]: timeouts, the two-state UDP/ICMP/generic model, ICMP pairing,
//!   and the symmetric flow hash.
//! - [`shard`]: the flow table (slab + flow index), early drop, the timing
//!   wheel driver, console and import operations.
//! - [`delta`]: the bounded ring of state changes a shard feeds.
//! - [`foreign`]: translated flows whose replies reach another worker.
//!
//! Invariants: a shard never grows past its capacity and never panics on a
//! packet; every refused flow and every lost delta is counted.

pub mod delta;
pub mod foreign;
pub mod l4;
pub mod shard;
pub mod tcp;
mod wheel;

pub use delta::{Delta, DeltaKind, DeltaRing};
pub use l4::{symmetric_hash, Timeouts};
pub use shard::{
    Attach, ConntrackConfig, FlowVerdict, InvalidReason, NatRewrite, NewFlow, Shard, ShardStats,
    TableFull, Track,
};
