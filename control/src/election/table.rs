//! The status table (Roelle 4.1): every host of the redundancy cluster with
//! its priority, in a total order kept by the master.
//!
//! Order (best first): the master; then live hosts by [`RankKey`]
//! (synced state first, then configured priority, then freshness, then the
//! lower node id); then hosts marked dead. Only the master changes the table;
//! backups adopt the master's copy from `SVC_CHECK_REPLY`, `SVC_TAKEOVER` and
//! `SVC_SHUTDOWN`.

use std::cmp::Ordering;

use serde::Serialize;

/// A host of the redundancy cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct NodeId(pub u32);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {}", self.0)
    }
}

/// Most hosts a table (and so a message) can hold.
pub const MAX_NODES: usize = 32;

/// How complete a host's copy of the flow state is (SNE 4.3: "last message
/// ID seen").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Freshness {
    /// The host holds a complete copy: it finished a full resync from the
    /// master (or the cluster bootstrapped with no master, so there was no
    /// state to copy). A host that is not synced is never preferred over one
    /// that is.
    pub synced: bool,
    /// The last sync sequence applied, extended by the driver to 64 bits so
    /// that it only grows within one master's tenure. Higher is fresher.
    pub seq: u64,
}

/// The coarse role of a host, as the status table and `ftfwctl status`
/// show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Nothing heard yet.
    Unknown,
    /// Init or decide main state.
    Init,
    /// Backup main state.
    Backup,
    /// Handover main state (a takeover in progress).
    Candidate,
    /// Service main state: the master, forwarding.
    Primary,
    /// Leaving service main state (releasing addresses, deactivating).
    Leaving,
    /// Link checks failed; rechecking before rejoining.
    Fault,
    /// Final state (operator shutdown).
    Stopped,
}

impl Role {
    /// Every role, in wire order.
    pub const ALL: [Role; 8] = [
        Role::Unknown,
        Role::Init,
        Role::Backup,
        Role::Candidate,
        Role::Primary,
        Role::Leaving,
        Role::Fault,
        Role::Stopped,
    ];

    /// Wire code.
    pub fn code(self) -> u8 {
        match self {
            Role::Unknown => 0,
            Role::Init => 1,
            Role::Backup => 2,
            Role::Candidate => 3,
            Role::Primary => 4,
            Role::Leaving => 5,
            Role::Fault => 6,
            Role::Stopped => 7,
        }
    }

    /// From a wire code.
    pub fn from_code(code: u8) -> Option<Role> {
        Role::ALL.get(usize::from(code)).copied()
    }
}

/// The total order used to pick a successor and to settle competing
/// takeovers: synced before unsynced, then higher configured priority, then
/// fresher state, then the lower node id. Greater is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RankKey {
    /// See [`Freshness::synced`].
    pub synced: bool,
    /// Configured priority (higher is preferred).
    pub priority: u8,
    /// See [`Freshness::seq`].
    pub seq: u64,
    /// Tiebreak: the lower id wins.
    pub node: NodeId,
}

impl Ord for RankKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.synced
            .cmp(&other.synced)
            .then(self.priority.cmp(&other.priority))
            .then(self.seq.cmp(&other.seq))
            .then(other.node.cmp(&self.node))
    }
}

impl PartialOrd for RankKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The order in which two hosts that both claim the master role (after a
/// partition heals, or a takeover that raced a live master) settle: synced
/// before unsynced, then priority, then the lower node id. Freshness is not
/// part of it: two masters' sequence spaces are not comparable. Greater wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimKey {
    /// The claimant was synced when it took over.
    pub synced: bool,
    /// Configured priority.
    pub priority: u8,
    /// Tiebreak: the lower id wins.
    pub node: NodeId,
}

impl Ord for ClaimKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.synced
            .cmp(&other.synced)
            .then(self.priority.cmp(&other.priority))
            .then(other.node.cmp(&self.node))
    }
}

impl PartialOrd for ClaimKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One host in the status table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The host.
    pub node: NodeId,
    /// Its configured priority.
    pub priority: u8,
    /// Its state freshness as last reported to the master.
    pub freshness: Freshness,
    /// Its role as last reported.
    pub role: Role,
    /// The master's SVC_REQCHECK_TIMER for it expired (or it was the master
    /// that a takeover replaced). Dead hosts stay listed, ranked last.
    pub dead: bool,
}

impl Entry {
    /// A host as configured, nothing heard from it yet.
    pub fn configured(node: NodeId, priority: u8) -> Entry {
        Entry {
            node,
            priority,
            freshness: Freshness::default(),
            role: Role::Unknown,
            dead: false,
        }
    }

    /// Its rank key.
    pub fn rank_key(&self) -> RankKey {
        RankKey {
            synced: self.freshness.synced,
            priority: self.priority,
            seq: self.freshness.seq,
            node: self.node,
        }
    }

    /// Its claim key.
    pub fn claim_key(&self) -> ClaimKey {
        ClaimKey {
            synced: self.freshness.synced,
            priority: self.priority,
            node: self.node,
        }
    }

    /// May this host be chosen as the successor?
    fn candidate(&self) -> bool {
        !self.dead
            && !matches!(
                self.role,
                Role::Primary | Role::Leaving | Role::Fault | Role::Stopped
            )
    }
}

/// The status table. See the module documentation for its order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StatusTable {
    entries: Vec<Entry>,
    master: Option<NodeId>,
    designated: Option<NodeId>,
}

/// Why a table (from the wire) is not acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// More than [`MAX_NODES`] entries.
    #[error("more than {MAX_NODES} hosts")]
    TooLarge,
    /// A host listed twice.
    #[error("{0} listed twice")]
    Duplicate(NodeId),
    /// The master or the designated successor is not listed.
    #[error("{0} named but not listed")]
    Unlisted(NodeId),
}

impl StatusTable {
    /// A table from parts, checked: at most [`MAX_NODES`] entries, no host
    /// twice, master and designated listed. The order is kept as given.
    pub fn from_parts(
        entries: Vec<Entry>,
        master: Option<NodeId>,
        designated: Option<NodeId>,
    ) -> Result<StatusTable, TableError> {
        if entries.len() > MAX_NODES {
            return Err(TableError::TooLarge);
        }
        for (i, e) in entries.iter().enumerate() {
            if entries[..i].iter().any(|o| o.node == e.node) {
                return Err(TableError::Duplicate(e.node));
            }
        }
        for n in master.iter().chain(designated.iter()) {
            if !entries.iter().any(|e| e.node == *n) {
                return Err(TableError::Unlisted(*n));
            }
        }
        Ok(StatusTable {
            entries,
            master,
            designated,
        })
    }

    /// The statically predefined initial table (Roelle 4.2.1): every
    /// configured host, none master, ranked by priority and id. Every host is
    /// assumed synced at bootstrap (nobody holds state yet).
    pub fn bootstrap(hosts: impl IntoIterator<Item = (NodeId, u8)>) -> StatusTable {
        let mut entries: Vec<Entry> = Vec::new();
        for (node, priority) in hosts {
            if entries.len() < MAX_NODES && !entries.iter().any(|e| e.node == node) {
                let mut e = Entry::configured(node, priority);
                e.freshness.synced = true;
                entries.push(e);
            }
        }
        let mut t = StatusTable {
            entries,
            master: None,
            designated: None,
        };
        t.rerank(false);
        t
    }

    /// The entries, best first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The master, if the table names one.
    pub fn master(&self) -> Option<NodeId> {
        self.master
    }

    /// The host the master designated to take over from it (preemption).
    pub fn designated(&self) -> Option<NodeId> {
        self.designated
    }

    /// One host's entry.
    pub fn get(&self, node: NodeId) -> Option<&Entry> {
        self.entries.iter().find(|e| e.node == node)
    }

    /// One host's entry, mutable (call [`StatusTable::rerank`] after).
    pub fn get_mut(&mut self, node: NodeId) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.node == node)
    }

    /// Insert or replace a host's entry (keeping its position until the
    /// next [`StatusTable::rerank`]). Returns false if the table is full.
    pub fn upsert(&mut self, entry: Entry) -> bool {
        if let Some(e) = self.get_mut(entry.node) {
            *e = entry;
            return true;
        }
        if self.entries.len() >= MAX_NODES {
            return false;
        }
        self.entries.push(entry);
        true
    }

    /// Set (or clear) the master.
    pub fn set_master(&mut self, master: Option<NodeId>) {
        if let Some(m) = master {
            if self.get(m).is_none() {
                return;
            }
        }
        self.master = master;
    }

    /// Sort into the total order and recompute the designated successor:
    /// with `preempt`, the best live synced host whose configured priority
    /// exceeds the master's.
    pub fn rerank(&mut self, preempt: bool) {
        let master = self.master;
        self.entries.sort_by(|a, b| {
            let am = Some(a.node) == master;
            let bm = Some(b.node) == master;
            bm.cmp(&am)
                .then(a.dead.cmp(&b.dead))
                .then(b.rank_key().cmp(&a.rank_key()))
        });
        self.designated = None;
        if preempt {
            if let Some(mp) = master.and_then(|m| self.get(m)).map(|e| e.priority) {
                self.designated = self
                    .entries
                    .iter()
                    .find(|e| {
                        Some(e.node) != master
                            && e.candidate()
                            && e.freshness.synced
                            && e.priority > mp
                    })
                    .map(|e| e.node);
            }
        }
    }

    /// The host that should take over next without waiting for a failure:
    /// the designated one, or, when no master is listed, the best candidate.
    pub fn successor(&self) -> Option<NodeId> {
        if self.designated.is_some() {
            return self.designated;
        }
        if self.master.is_some() {
            return None;
        }
        self.entries.iter().find(|e| e.candidate()).map(|e| e.node)
    }

    /// 1-based position of `node` among the non-master entries (the
    /// master's direct successor is 1); one past the end if not listed.
    pub fn backup_rank(&self, node: NodeId) -> usize {
        let mut rank = 0;
        for e in &self.entries {
            if Some(e.node) == self.master {
                continue;
            }
            rank += 1;
            if e.node == node {
                return rank;
            }
        }
        rank + 1
    }

    /// Hosts that are listed and not dead.
    pub fn live(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| !e.dead)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(node: u32, priority: u8, synced: bool, seq: u64) -> Entry {
        Entry {
            node: NodeId(node),
            priority,
            freshness: Freshness { synced, seq },
            role: Role::Backup,
            dead: false,
        }
    }

    #[test]
    fn rank_key_orders_synced_priority_freshness_then_lower_id() {
        let k = |s, p, q, n| entry(n, p, s, q).rank_key();
        assert!(k(true, 1, 0, 9) > k(false, 200, 100, 1));
        assert!(k(true, 2, 0, 9) > k(true, 1, 100, 1));
        assert!(k(true, 2, 5, 9) > k(true, 2, 4, 1));
        assert!(k(true, 2, 5, 1) > k(true, 2, 5, 2));
    }

    #[test]
    fn rerank_puts_master_first_and_dead_last() {
        let mut dead = entry(1, 250, true, 99);
        dead.dead = true;
        let mut t = StatusTable::from_parts(
            vec![
                dead,
                entry(2, 100, true, 10),
                entry(3, 100, true, 12),
                entry(4, 50, true, 0),
                entry(5, 200, false, 0),
            ],
            Some(NodeId(4)),
            None,
        )
        .unwrap();
        t.rerank(false);
        let order: Vec<u32> = t.entries().iter().map(|e| e.node.0).collect();
        assert_eq!(order, vec![4, 3, 2, 5, 1]);
        assert_eq!(t.backup_rank(NodeId(3)), 1);
        assert_eq!(t.backup_rank(NodeId(1)), 4);
        assert_eq!(t.backup_rank(NodeId(77)), 5);
        assert_eq!(t.successor(), None);
        // Preemption designates the best synced host above the master's
        // priority; the unsynced priority-200 host is not eligible.
        t.rerank(true);
        assert_eq!(t.designated(), Some(NodeId(3)));
        assert_eq!(t.successor(), Some(NodeId(3)));
    }

    #[test]
    fn bootstrap_successor_is_highest_priority_then_lowest_id() {
        let t = StatusTable::bootstrap([(NodeId(3), 100), (NodeId(1), 100), (NodeId(2), 50)]);
        assert_eq!(t.successor(), Some(NodeId(1)));
        assert_eq!(t.master(), None);
    }

    #[test]
    fn from_parts_rejects_bad_tables() {
        let e = entry(1, 1, true, 0);
        assert_eq!(
            StatusTable::from_parts(vec![e, e], None, None),
            Err(TableError::Duplicate(NodeId(1)))
        );
        assert_eq!(
            StatusTable::from_parts(vec![e], Some(NodeId(2)), None),
            Err(TableError::Unlisted(NodeId(2)))
        );
        let many: Vec<Entry> = (0..33).map(|i| entry(i, 1, true, 0)).collect();
        assert_eq!(
            StatusTable::from_parts(many, None, None),
            Err(TableError::TooLarge)
        );
    }
}
