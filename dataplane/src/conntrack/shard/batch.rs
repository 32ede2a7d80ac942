//! Per-burst batching of a shard's deltas ([`super::Shard::set_batching`]).
//!
//! A worker that turns batching on collects the deltas of one loop
//! iteration here and hands them to the ring in one go at its end
//! ([`super::Shard::flush_deltas`]). While a flow's delta waits here, a
//! later change of the same flow replaces it in place: replication only
//! ever needs a flow's newest state (a delta carries the whole state, and
//! the lazy predictor keeps only the newest one of a young flow too), so a
//! handshake whose packets fall in one iteration costs one delta instead of
//! three. The rules:
//!
//! - created or updated, then updated: one delta of the first kind with the
//!   newest state;
//! - updated, then destroyed: one destroyed delta;
//! - created, then destroyed: both go (the lazy predictor learns from a
//!   flow that ended young), and the slot's next flow starts afresh.
//!
//! A flow's delta keeps the position of its first change in the batch, and
//! deltas of different flows keep their order. At most [`BATCH_MAX`]
//! deltas wait: the batch is flushed when full, so the scan for a flow's
//! waiting delta stays short and nothing grows without bound.

use super::super::delta::{Delta, DeltaKind, DeltaRing};
use super::ShardStats;

/// Deltas that wait at most (a flush empties the batch when it is full).
pub(super) const BATCH_MAX: usize = 64;

/// `Batch::slots` entry of a delta no later change may replace.
const CLOSED: u32 = u32::MAX;

/// The deltas of the current iteration.
#[derive(Debug, Default)]
pub(super) struct Batch {
    /// Whether deltas wait here at all (else each goes to the ring at once).
    pub(super) on: bool,
    deltas: Vec<Delta>,
    /// The slab slot of each waiting delta ([`CLOSED`] once destroyed).
    slots: Vec<u32>,
    /// Changes that became deltas (pushed, waiting or merged), since
    /// creation: a caller compares it before and after a packet to learn
    /// whether the packet changed replicated state.
    pub(super) events: u64,
}

impl Batch {
    /// Takes the delta of the flow in slab slot `slot`.
    pub(super) fn add(&mut self, slot: u32, d: Delta, ring: &DeltaRing, stats: &mut ShardStats) {
        self.events += 1;
        if !self.on {
            push(ring, d, stats);
            return;
        }
        if let Some(p) = self.slots.iter().rposition(|&s| s == slot) {
            match (self.deltas[p].kind, d.kind) {
                (DeltaKind::Created | DeltaKind::Updated, DeltaKind::Updated) => {
                    let kind = self.deltas[p].kind;
                    self.deltas[p] = Delta { kind, ..d };
                    stats.deltas_merged += 1;
                    return;
                }
                (DeltaKind::Updated, DeltaKind::Destroyed) => {
                    self.deltas[p] = d;
                    self.slots[p] = CLOSED;
                    stats.deltas_merged += 1;
                    return;
                }
                // Created then destroyed: both go, and the slot's next
                // flow is another flow.
                _ => self.slots[p] = CLOSED,
            }
        }
        if self.deltas.len() >= BATCH_MAX {
            self.flush(ring, stats);
        }
        let s = if d.kind == DeltaKind::Destroyed {
            CLOSED
        } else {
            slot
        };
        self.deltas.push(d);
        self.slots.push(s);
    }

    /// Hands every waiting delta to the ring, in order.
    pub(super) fn flush(&mut self, ring: &DeltaRing, stats: &mut ShardStats) {
        if self.deltas.is_empty() {
            return;
        }
        for d in self.deltas.drain(..) {
            push(ring, d, stats);
        }
        self.slots.clear();
    }

    /// Deltas waiting.
    pub(super) fn len(&self) -> usize {
        self.deltas.len()
    }
}

fn push(ring: &DeltaRing, d: Delta, stats: &mut ShardStats) {
    if ring.push(d) {
        stats.deltas += 1;
    } else {
        stats.ring_full += 1;
    }
}
