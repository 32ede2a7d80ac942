//! [`ReplicaMap`]: which cluster peers receive each bucket's flows (its
//! own module so that the control thread's handle and the sync thread's
//! bucket requests both use it without importing each other).

use ftfw_dataplane::buckets::MAX_BUCKETS;

/// For each bucket, the cluster nodes that must receive the changes of its
/// flows (its backups, say). See `SyncHandle::set_replica_map`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaMap {
    targets: Vec<Vec<u32>>,
}

impl ReplicaMap {
    /// A map of `targets.len()` buckets (the cluster's bucket count, 1 to
    /// [`MAX_BUCKETS`]); `targets[b]` lists the node ids that get bucket
    /// `b`'s flows. `None` for an empty or oversized map.
    pub fn new(targets: Vec<Vec<u32>>) -> Option<ReplicaMap> {
        let n = u32::try_from(targets.len()).ok()?;
        (1..=MAX_BUCKETS)
            .contains(&n)
            .then_some(ReplicaMap { targets })
    }

    /// How many buckets it covers.
    pub fn buckets(&self) -> u32 {
        u32::try_from(self.targets.len()).unwrap_or(u32::MAX)
    }

    /// The nodes that get bucket `b`'s flows (none for a bucket out of
    /// range).
    pub fn targets(&self, b: u32) -> &[u32] {
        self.targets.get(b as usize).map_or(&[], Vec::as_slice)
    }
}
