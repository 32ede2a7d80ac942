//! Cluster requests of the sync thread: which peers get which bucket's
//! changes ([`ReplicaMap`]), and the bucket operations a cluster driver
//! runs when buckets change owner:
//!
//! - a node that gains buckets from a node X commits X's cached flows of
//!   those buckets into its shards and announces them to the peers that
//!   back them up, X too unless it is down (`commit_buckets`), then
//!   forwards;
//! - in a planned move the old owner flushes its flows of the buckets to
//!   the new owner and waits for the acknowledgement (`flush_buckets`,
//!   `flush_acked`);
//! - once the move settled, the old owner evicts its copies without
//!   DESTROYs (`evict_buckets`) and every node prunes the cached flows of
//!   buckets their origin no longer owns (`prune_external`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use ftfw_dataplane::buckets::{bucket_of_key, BucketSet};
use ftfw_dataplane::flow::FlowState;

use super::handle::SyncError;
use super::peer::{passes, ExportFilter, PeerChannel};
use super::replica::ReplicaMap;
use super::SyncCore;
use crate::import::Importer;

/// Bucket-flush tokens remembered; older ones are forgotten
/// (`flush_acked` answers `None` for them).
pub(super) const FLUSHES_MAX: usize = 256;

/// A [`ReplicaMap`] as the sync thread uses it: per bucket a bit mask of
/// channels, and per channel the set of its buckets (its export filter).
pub(super) struct Replicas {
    buckets: u32,
    masks: Vec<u32>,
    per_channel: Vec<Arc<BucketSet>>,
}

impl Replicas {
    /// `map` over `channels` (peers not in the map get nothing).
    pub(super) fn new(map: &ReplicaMap, channels: &[PeerChannel]) -> Replicas {
        let buckets = map.buckets();
        let mut per: Vec<BucketSet> = channels.iter().map(|_| BucketSet::empty(buckets)).collect();
        let masks = (0..buckets)
            .map(|b| {
                let mut m = 0u32;
                for (i, ch) in channels.iter().enumerate().take(32) {
                    if ch.node.is_some_and(|n| map.targets(b).contains(&n)) {
                        m |= 1 << i;
                        if let Some(s) = per.get_mut(i) {
                            s.insert(b);
                        }
                    }
                }
                m
            })
            .collect();
        Replicas {
            buckets,
            masks,
            per_channel: per.into_iter().map(Arc::new).collect(),
        }
    }

    /// Whether channel `i` gets the changes of `st`.
    pub(super) fn wants(&self, i: usize, st: &FlowState) -> bool {
        let b = bucket_of_key(&st.key, self.buckets);
        i < 32 && self.masks.get(b as usize).is_some_and(|m| m >> i & 1 == 1)
    }

    /// Channel `i`'s export filter: the buckets it backs up.
    pub(super) fn filter(&self, i: usize) -> ExportFilter {
        Some(
            self.per_channel
                .get(i)
                .cloned()
                .unwrap_or_else(|| Arc::new(BucketSet::empty(self.buckets))),
        )
    }
}

/// A bucket flush (or handover export) to one channel: its token and,
/// once all of it is sent, the engine's send index after it.
struct FlushMark {
    token: u64,
    channel: usize,
    at: Option<u64>,
}

/// The flushes waiting for their peer's acknowledgement, bounded by
/// [`FLUSHES_MAX`].
#[derive(Default)]
pub(super) struct Flushes {
    next: u64,
    marks: VecDeque<FlushMark>,
}

impl Flushes {
    /// A new token for an export just queued on channel `channel`.
    pub(super) fn start(&mut self, channel: usize) -> u64 {
        if self.marks.len() >= FLUSHES_MAX {
            self.marks.pop_front();
        }
        self.next += 1;
        self.marks.push_back(FlushMark {
            token: self.next,
            channel,
            at: None,
        });
        self.next
    }

    /// Marks the flushes whose channel has sent everything queued: its
    /// export has ended and its transmit queue is empty, so every message
    /// of the flush is below the engine's send index.
    pub(super) fn mark(&mut self, channels: &[PeerChannel]) {
        for m in self.marks.iter_mut().filter(|m| m.at.is_none()) {
            if let Some(ch) = channels.get(m.channel) {
                if !ch.export.running() && ch.engine.stats().tx_queue_depth == 0 {
                    m.at = Some(ch.engine.sent_index());
                }
            }
        }
    }

    /// Whether the flush `token` is acknowledged; `None`: unknown token.
    pub(super) fn acked(&self, token: u64, channels: &[PeerChannel]) -> Option<bool> {
        let m = self.marks.iter().find(|m| m.token == token)?;
        Some(
            m.at.zip(channels.get(m.channel))
                .is_some_and(|(at, ch)| ch.engine.acked_below(at)),
        )
    }
}

impl SyncCore {
    /// The channel of cluster node `node`.
    pub(super) fn channel_of_node(&self, node: u32) -> Result<usize, SyncError> {
        self.channels
            .iter()
            .position(|c| c.node == Some(node))
            .ok_or(SyncError::UnknownPeer(node))
    }

    /// Channel `i`'s full-export filter under the replica map.
    pub(super) fn replica_filter(&self, i: usize) -> ExportFilter {
        self.replicas.as_ref().and_then(|r| r.filter(i))
    }

    /// Queues a full export (under the replica map) to channel `i`.
    pub(super) fn export_all_to(&mut self, i: usize) {
        let f = self.replica_filter(i);
        let n = self.workers.len();
        if let Some(ch) = self.channels.get_mut(i) {
            self.expects.export_to(std::time::Instant::now(), ch, &f);
            ch.export_workers(n, f);
        }
    }

    /// See `SyncHandle::set_replica_map`.
    pub(super) fn set_replica_map(
        &mut self,
        map: Option<Arc<ReplicaMap>>,
    ) -> Result<(), SyncError> {
        if !self.cluster {
            return Err(SyncError::Invalid(
                "a replica map needs [cluster]: a pair replicates everything to its peer".into(),
            ));
        }
        self.replicas = map.map(|m| Replicas::new(&m, &self.channels));
        Ok(())
    }

    /// See `SyncHandle::commit_buckets`.
    pub(super) fn commit_buckets(
        &mut self,
        now: Instant,
        from: Option<u32>,
        buckets: BucketSet,
        take: bool,
    ) -> Result<(usize, usize), SyncError> {
        let chans: Vec<usize> = match from {
            Some(n) => vec![self.channel_of_node(n)?],
            None => (0..self.channels.len()).collect(),
        };
        let universe = buckets.universe();
        let pick = |st: &FlowState| buckets.contains(bucket_of_key(&st.key, universe));
        let mut imp = Importer::new(&self.workers, false);
        for i in chans {
            if let Some(ch) = self.channels.get_mut(i) {
                ch.cache.commit_matching(now, &mut imp, pick, take)?;
            }
        }
        let done = imp.finish()?;
        // The expectations of those buckets' control connections too, so a
        // data connection announced before the move still opens.
        let set = Arc::new(buckets);
        let exps = self.expects.commit_matching(now, take, &Some(set.clone()));
        // Announce: our flows of those buckets to every peer that backs
        // them up (each gets those it backs up), the previous owner too
        // while it is up: it evicts its own copies once the move settled
        // and keeps only what it caches from us (after a planned move, or
        // a takeover from a member wrongly thought dead). A dead `from`
        // gets them by its startup RESYNC.
        let n = self.workers.len();
        let alive3 = self.cfg.alive_interval * 3;
        for i in 0..self.channels.len() {
            if from.is_some() && self.channels[i].node == from && !self.channels[i].up(now, alive3)
            {
                continue;
            }
            let f = match self.replicas.as_ref().and_then(|r| r.filter(i)) {
                Some(mine) => Some(Arc::new(mine.intersection(&set))),
                None => Some(set.clone()),
            };
            let ch = &mut self.channels[i];
            if !ch.export_workers(n, f) {
                // No room for a bucket walk: a full one covers it.
                let f = self.replicas.as_ref().and_then(|r| r.filter(i));
                self.channels[i].export_workers(n, f);
            }
        }
        tracing::info!(from = ?from, buckets = %set.ranges(), committed = done.0, refused = done.1,
            expectations = exps.0, "committed a peer's flows of some buckets");
        Ok(done)
    }

    /// See `SyncHandle::flush_buckets`.
    pub(super) fn flush_buckets(&mut self, to: u32, buckets: BucketSet) -> Result<u64, SyncError> {
        let i = self.channel_of_node(to)?;
        let n = self.workers.len();
        if !self.channels[i].export_workers(n, Some(Arc::new(buckets))) {
            return Err(SyncError::Busy);
        }
        Ok(self.flushes.start(i))
    }

    /// See `SyncHandle::prune_external`.
    pub(super) fn prune_external(&mut self, owned: &[(u32, BucketSet)]) -> usize {
        let mut dropped = 0;
        for (node, set) in owned {
            if let Some(ch) = self.channels.iter_mut().find(|c| c.node == Some(*node)) {
                let f = Some(Arc::new(set.clone()));
                dropped += ch.cache.retain(|st| passes(&f, st));
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_maps_cover_one_to_max_buckets() {
        assert!(ReplicaMap::new(Vec::new()).is_none());
        assert!(ReplicaMap::new(vec![
            Vec::new();
            ftfw_dataplane::buckets::MAX_BUCKETS as usize + 1
        ])
        .is_none());
        let m = ReplicaMap::new(vec![vec![2], vec![2, 3]]).unwrap();
        assert_eq!(m.buckets(), 2);
        assert_eq!(m.targets(1), &[2, 3]);
        assert_eq!(m.targets(2), &[] as &[u32]);
    }

    #[test]
    fn flush_tokens_are_bounded_and_unknown_ones_answer_none() {
        let mut f = Flushes::default();
        let first = f.start(0);
        for _ in 0..FLUSHES_MAX {
            f.start(0);
        }
        assert_eq!(f.marks.len(), FLUSHES_MAX);
        // The oldest was forgotten; no channel exists to mark the others.
        assert_eq!(f.acked(first, &[]), None);
        assert_eq!(f.acked(first + 1, &[]), Some(false));
        assert_eq!(f.acked(u64::MAX, &[]), None);
    }
}
