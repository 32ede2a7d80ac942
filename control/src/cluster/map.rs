//! The bucket map: which node forwards each bucket, which nodes back it up,
//! and what the master knew of every node when it made the map; and
//! [`plan`], the deterministic function the master makes maps with.

use std::collections::BTreeMap;

use ftfw_dataplane::buckets::BucketSet;
use serde::Serialize;

use super::NodeId;

/// How much [`plan`] may move buckets between nodes that stay eligible.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Only orphans (buckets whose owner left) move.
    OrphansOnly,
    /// Orphans, and if some eligible node owns fewer than floor(B/n)
    /// buckets, the fewest moves that give every node floor or ceil of B/n
    /// (a join, an undrain).
    IfUnderFloor,
    /// Orphans, then always the fewest moves to floor/ceil (an operator's
    /// rebalance).
    Full,
}

/// What a map says about one configured node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MapNode {
    /// The node.
    pub node: NodeId,
    /// The incarnation the master heard from it (0: never heard). A gainer
    /// whose previous owner's incarnation changed takes over without
    /// waiting for a release: that incarnation's flows are gone from it.
    pub incarnation: u64,
    /// It may own buckets (live, ready, not drained, when the map was made).
    pub eligible: bool,
    /// The master did not hear from it within `dead_after`.
    pub dead: bool,
    /// An operator drained it (kept across masters).
    pub drained: bool,
}

/// One version of the cluster's bucket ownership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BucketMap {
    version: u64,
    master: NodeId,
    #[serde(skip)]
    owners: Vec<NodeId>,
    #[serde(skip)]
    backups: Vec<Vec<NodeId>>,
    nodes: Vec<MapNode>,
}

/// A map whose parts do not fit together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    /// Bucket count 0 or above `MAX_BUCKETS`.
    #[error("bucket count out of range")]
    Buckets,
    /// Owners and backups lists of different lengths.
    #[error("owner and backup lists differ in length")]
    Lengths,
    /// An owner or backup not in the node table, or a backup equal to the
    /// owner or listed twice.
    #[error("bucket {0} names an unknown or repeated node")]
    Bucket(u32),
    /// The node table is not sorted by id without repeats, or too long.
    #[error("node table not sorted, repeated or longer than 16")]
    Nodes,
}

impl BucketMap {
    /// A map from its parts, checked: every owner and backup is in `nodes`,
    /// backups are distinct and differ from the owner, `nodes` is sorted.
    pub fn from_parts(
        version: u64,
        master: NodeId,
        owners: Vec<NodeId>,
        backups: Vec<Vec<NodeId>>,
        nodes: Vec<MapNode>,
    ) -> Result<BucketMap, MapError> {
        let buckets = u32::try_from(owners.len()).map_err(|_| MapError::Buckets)?;
        if buckets == 0 || buckets > ftfw_dataplane::buckets::MAX_BUCKETS {
            return Err(MapError::Buckets);
        }
        if backups.len() != owners.len() {
            return Err(MapError::Lengths);
        }
        if nodes.len() > super::MAX_NODES || nodes.windows(2).any(|w| w[0].node >= w[1].node) {
            return Err(MapError::Nodes);
        }
        let known = |n: NodeId| nodes.binary_search_by_key(&n, |e| e.node).is_ok();
        for (b, (o, bk)) in (0u32..).zip(owners.iter().zip(&backups)) {
            let bad = !known(*o)
                || bk
                    .iter()
                    .enumerate()
                    .any(|(i, x)| !known(*x) || *x == *o || bk[..i].contains(x));
            if bad {
                return Err(MapError::Bucket(b));
            }
        }
        Ok(BucketMap {
            version,
            master,
            owners,
            backups,
            nodes,
        })
    }

    /// The map's version: a newer map supersedes an older one.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The master that made it.
    pub fn master(&self) -> NodeId {
        self.master
    }

    /// Order of maps: higher version first, then the lower master id (two
    /// masters after a partition may both make version N; the lower id's
    /// wins, as the lower id wins mastership).
    pub fn supersedes(&self, other: &BucketMap) -> bool {
        (self.version, std::cmp::Reverse(self.master))
            > (other.version, std::cmp::Reverse(other.master))
    }

    /// How many buckets.
    pub fn buckets(&self) -> u32 {
        u32::try_from(self.owners.len()).unwrap_or(u32::MAX)
    }

    /// The owner of `bucket` (`None` out of range).
    pub fn owner_of(&self, bucket: u32) -> Option<NodeId> {
        self.owners.get(bucket as usize).copied()
    }

    /// The backups of `bucket`, first choice first (empty out of range).
    pub fn backups_of(&self, bucket: u32) -> &[NodeId] {
        self.backups.get(bucket as usize).map_or(&[], Vec::as_slice)
    }

    /// Every bucket's owner, by bucket.
    pub fn owners(&self) -> &[NodeId] {
        &self.owners
    }

    /// Every bucket's backups, by bucket.
    pub fn backups(&self) -> &[Vec<NodeId>] {
        &self.backups
    }

    /// The buckets `node` owns.
    pub fn owned_by(&self, node: NodeId) -> BucketSet {
        let it = (0u32..).zip(&self.owners).filter(|(_, o)| **o == node);
        BucketSet::from_iter_in(self.buckets(), it.map(|(b, _)| b))
    }

    /// The buckets `node` backs up.
    pub fn backed_up_by(&self, node: NodeId) -> BucketSet {
        let it = (0u32..)
            .zip(&self.backups)
            .filter(|(_, bk)| bk.contains(&node));
        BucketSet::from_iter_in(self.buckets(), it.map(|(b, _)| b))
    }

    /// The node table, sorted by id.
    pub fn nodes(&self) -> &[MapNode] {
        &self.nodes
    }

    /// What the map says about `node`.
    pub fn node(&self, node: NodeId) -> Option<&MapNode> {
        self.nodes
            .binary_search_by_key(&node, |e| e.node)
            .ok()
            .and_then(|i| self.nodes.get(i))
    }

    /// Whether the incarnation of `node` that owned buckets in `self` is
    /// gone in `newer`: listed dead, absent, or a different incarnation.
    pub fn lost_in(&self, node: NodeId, newer: &BucketMap) -> bool {
        match (self.node(node), newer.node(node)) {
            (Some(old), Some(new)) => new.dead || new.incarnation != old.incarnation,
            _ => true,
        }
    }

    /// The map with a new version, master and node table (the master stamps
    /// a [`plan`] with what it knows). Owners and backups not in `nodes`
    /// make it fail.
    pub fn stamped(
        self,
        version: u64,
        master: NodeId,
        nodes: Vec<MapNode>,
    ) -> Result<BucketMap, MapError> {
        BucketMap::from_parts(version, master, self.owners, self.backups, nodes)
    }
}

impl BucketMap {
    /// The map with `bucket`s given to `node` (removed from its backups),
    /// for each pair; pairs out of range or naming a node outside the
    /// table are skipped.
    pub fn with_owners(&self, moves: &[(u32, NodeId)]) -> BucketMap {
        let mut out = self.clone();
        for &(b, n) in moves {
            let Some(slot) = out.owners.get_mut(b as usize) else {
                continue;
            };
            if self.node(n).is_none() {
                continue;
            }
            *slot = n;
            if let Some(bk) = out.backups.get_mut(b as usize) {
                bk.retain(|&x| x != n);
            }
        }
        out
    }

    /// The same owners with backups chosen afresh among `nodes` (other
    /// than each owner): primary-backup clusters, where only the master
    /// owns and every other ready node backs up.
    pub fn with_backups_from(mut self, nodes: &[NodeId], per: u8) -> BucketMap {
        let mut nodes = nodes.to_vec();
        nodes.sort_unstable();
        nodes.dedup();
        for &o in &self.owners {
            if let Err(i) = nodes.binary_search(&o) {
                nodes.insert(i, o);
            }
        }
        self.backups = choose_backups(Some(&self), &self.owners, &nodes, per);
        self
    }
}

/// The map the master makes when the eligible set changes.
///
/// Every bucket whose previous owner is still in `eligible` keeps it; an
/// orphan goes to its first eligible backup, else to the least loaded
/// eligible node (lowest id on a tie). Then, as `balance` says, the fewest
/// buckets move so that every eligible node owns floor or ceil of B/n: the
/// most loaded nodes keep the ceil shares, donors give their highest
/// buckets to the lowest-id nodes below target. Backups: up to
/// `backups_per_bucket` distinct eligible nodes other than the owner,
/// spread evenly over the other nodes for each owner (see
/// `choose_backups`), kept when still valid and within that spread.
/// Deterministic: the same inputs give the same map. The result has version
/// `prev + 1` (1 without `prev`), master 0 and a node table of `eligible`
/// (incarnation 0); the master stamps it ([`BucketMap::stamped`]). `None`
/// when `eligible` is empty or `buckets` out of range (nobody can own).
pub fn plan(
    prev: Option<&BucketMap>,
    eligible: &[NodeId],
    backups_per_bucket: u8,
    balance: Balance,
    buckets: u32,
) -> Option<BucketMap> {
    plan_avoiding(
        prev,
        eligible,
        backups_per_bucket,
        balance,
        buckets,
        |_, _| false,
    )
}

/// [`plan`], where an orphan goes to a node `avoid(bucket, node)` refuses
/// only if every eligible node does: its first eligible backup not
/// avoided, else the least loaded node not avoided (a member that may
/// not hold the lost owner's flows of the bucket: it became ready after
/// that owner was last heard).
pub fn plan_avoiding(
    prev: Option<&BucketMap>,
    eligible: &[NodeId],
    backups_per_bucket: u8,
    balance: Balance,
    buckets: u32,
    avoid: impl Fn(u32, NodeId) -> bool,
) -> Option<BucketMap> {
    let mut nodes: Vec<NodeId> = eligible.to_vec();
    nodes.sort_unstable();
    nodes.dedup();
    if nodes.is_empty() || buckets == 0 || buckets > ftfw_dataplane::buckets::MAX_BUCKETS {
        return None;
    }
    let prev = prev.filter(|p| p.buckets() == buckets);
    let is_eligible = |n: NodeId| nodes.binary_search(&n).is_ok();
    let mut load: BTreeMap<NodeId, u32> = nodes.iter().map(|&n| (n, 0)).collect();
    let mut owners: Vec<Option<NodeId>> = vec![None; buckets as usize];
    if let Some(p) = prev {
        for (slot, &o) in owners.iter_mut().zip(p.owners()) {
            if is_eligible(o) {
                *slot = Some(o);
                *load.entry(o).or_default() += 1;
            }
        }
    }
    for (b, slot) in (0u32..).zip(owners.iter_mut()) {
        if slot.is_some() {
            continue;
        }
        let backup = prev.and_then(|p| {
            p.backups_of(b)
                .iter()
                .copied()
                .find(|&n| is_eligible(n) && !avoid(b, n))
        });
        let to = backup.unwrap_or_else(|| {
            if load.keys().any(|&n| !avoid(b, n)) {
                least_loaded(&load, |n| !avoid(b, n))
            } else {
                least_loaded(&load, |_| true)
            }
        });
        *slot = Some(to);
        *load.entry(to).or_default() += 1;
    }
    let mut owners: Vec<NodeId> = owners.into_iter().map(|o| o.unwrap_or(nodes[0])).collect();
    let n = u32::try_from(nodes.len()).unwrap_or(u32::MAX);
    let floor = buckets / n;
    let under = load.values().any(|&l| l < floor);
    if balance == Balance::Full || (balance == Balance::IfUnderFloor && under) {
        rebalance(&mut owners, &mut load, buckets % n);
    }
    let backups = choose_backups(prev, &owners, &nodes, backups_per_bucket);
    let table = nodes
        .iter()
        .map(|&node| MapNode {
            node,
            incarnation: 0,
            eligible: true,
            dead: false,
            drained: false,
        })
        .collect();
    Some(BucketMap {
        version: prev.map_or(1, |p| p.version.saturating_add(1)),
        master: 0,
        owners,
        backups,
        nodes: table,
    })
}

/// The node with the smallest load among those `ok` accepts (lowest id on
/// a tie); `load` is never empty here.
fn least_loaded(load: &BTreeMap<NodeId, u32>, ok: impl Fn(NodeId) -> bool) -> NodeId {
    load.iter()
        .filter(|(n, _)| ok(**n))
        .min_by_key(|(n, l)| (**l, **n))
        .map_or(0, |(n, _)| *n)
}

/// Moves the fewest buckets so every node owns floor or ceil of B/n: the
/// `extra` most loaded nodes (lowest id on a tie) get the ceil target.
fn rebalance(owners: &mut [NodeId], load: &mut BTreeMap<NodeId, u32>, extra: u32) {
    let total: u32 = load.values().sum();
    let n = u32::try_from(load.len()).unwrap_or(1).max(1);
    let floor = total / n;
    let mut by_load: Vec<(NodeId, u32)> = load.iter().map(|(a, b)| (*a, *b)).collect();
    by_load.sort_by_key(|&(node, l)| (std::cmp::Reverse(l), node));
    let target: BTreeMap<NodeId, u32> = (0u32..)
        .zip(&by_load)
        .map(|(i, &(node, _))| (node, floor + u32::from(i < extra)))
        .collect();
    // Donors give their highest buckets first.
    for b in (0..owners.len()).rev() {
        let from = owners[b];
        let over = load.get(&from).copied().unwrap_or(0) > target.get(&from).copied().unwrap_or(0);
        if !over {
            continue;
        }
        let to = target
            .iter()
            .find(|(node, t)| load.get(node).copied().unwrap_or(0) < **t)
            .map(|(node, _)| *node);
        let Some(to) = to else { break };
        owners[b] = to;
        *load.entry(from).or_default() -= 1;
        *load.entry(to).or_default() += 1;
    }
}

/// Backups: up to `per` distinct nodes other than the owner per bucket.
/// Spread so that each owner's buckets are backed up evenly by the other
/// nodes (when an owner dies, its buckets then go to all survivors, not
/// to one): a previous backup is kept while its share of that owner's
/// buckets stays within ceil(owned × per / (n − 1)); the rest go to the
/// node backing up the fewest of that owner's buckets (then the fewest
/// overall, then the lowest id).
fn choose_backups(
    prev: Option<&BucketMap>,
    owners: &[NodeId],
    nodes: &[NodeId],
    per: u8,
) -> Vec<Vec<NodeId>> {
    let want = usize::from(per).min(nodes.len().saturating_sub(1));
    let others = u32::try_from(nodes.len().saturating_sub(1))
        .unwrap_or(1)
        .max(1);
    let mut owned: BTreeMap<NodeId, u32> = BTreeMap::new();
    for &o in owners {
        *owned.entry(o).or_default() += 1;
    }
    let want32 = u32::try_from(want).unwrap_or(0);
    let cap = |o: NodeId| (owned.get(&o).copied().unwrap_or(0) * want32).div_ceil(others);
    let mut load: BTreeMap<NodeId, u32> = nodes.iter().map(|&n| (n, 0)).collect();
    let mut pair: BTreeMap<(NodeId, NodeId), u32> = BTreeMap::new();
    let mut out: Vec<Vec<NodeId>> = (0u32..)
        .zip(owners)
        .map(|(b, &o)| {
            let mut kept: Vec<NodeId> = Vec::with_capacity(want);
            for &x in prev.map_or(&[][..], |p| p.backups_of(b)) {
                let shared = pair.get(&(o, x)).copied().unwrap_or(0);
                if kept.len() < want
                    && x != o
                    && load.contains_key(&x)
                    && !kept.contains(&x)
                    && shared < cap(o)
                {
                    kept.push(x);
                    *load.entry(x).or_default() += 1;
                    *pair.entry((o, x)).or_default() += 1;
                }
            }
            kept
        })
        .collect();
    for (bk, &o) in out.iter_mut().zip(owners) {
        while bk.len() < want {
            let pick = load
                .iter()
                .filter(|(n, _)| **n != o && !bk.contains(n))
                .min_by_key(|(n, l)| (pair.get(&(o, **n)).copied().unwrap_or(0), **l, **n))
                .map_or(0, |(n, _)| *n);
            bk.push(pick);
            *load.entry(pick).or_default() += 1;
            *pair.entry((o, pick)).or_default() += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests;
