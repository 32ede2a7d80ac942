//! Applying maps on every node: which buckets to stop forwarding, flush
//! and release; which to wait for, commit and forward; when a map is
//! fully applied.

use std::collections::BTreeMap;
use std::time::Instant;

use ftfw_dataplane::buckets::BucketSet;

use super::{Action, CommitJob, Coordinator, MovedFrom, Out, Stage, Transfer, Unmerged};
use crate::cluster::map::BucketMap;
use crate::cluster::msg::Heartbeat;
use crate::cluster::NodeId;

/// Map versions a merged late release is remembered for.
const MERGED_VERSIONS: u64 = 16;

impl Coordinator {
    /// Takes a newer map and acts on it.
    pub(super) fn adopt(&mut self, now: Instant, m: BucketMap) {
        let prev = self.map.replace(m);
        self.counters.maps_applied += 1;
        self.reconcile(now, prev.as_ref());
    }

    /// The buckets the held map gives this node: none while joining or
    /// when the map names another incarnation of us.
    pub(super) fn mine(&self, m: &BucketMap) -> BucketSet {
        let me = m.node(self.cfg.node);
        if !self.ready || me.is_none_or(|e| e.incarnation != self.cfg.incarnation) {
            return BucketSet::empty(self.cfg.buckets);
        }
        m.owned_by(self.cfg.node)
    }

    /// Brings forwarding, waits, commits and transfers in line with the
    /// held map; `prev` is the map held before (`None`: the same map).
    pub(super) fn reconcile(&mut self, now: Instant, prev: Option<&BucketMap>) {
        let Some(m) = self.map.take() else { return };
        let adopted = prev.is_some();
        let prev = prev.unwrap_or(&m);
        let b = self.cfg.buckets;
        let mine = self.mine(&m);
        // Stop forwarding what is no longer ours, at once; hand it over.
        let lost = self.forwarding.difference(&mine);
        if !lost.is_empty() {
            self.forwarding = self.forwarding.intersection(&mine);
            self.counters.buckets_lost += u64::from(lost.count());
            self.act(Action::Forward(self.forwarding.clone()));
            self.transfer_out(&m, &lost);
        }
        // Waits for buckets no longer ours: we hold none of their flows.
        // Waits for a sender the map now declares lost: it will release
        // nothing, take over from it instead.
        let mut commits: BTreeMap<Option<NodeId>, BucketSet> = BTreeMap::new();
        // Buckets taken over from a lost owner.
        let mut taken = BucketSet::empty(b);
        for (from, set) in std::mem::take(&mut self.awaiting) {
            let gone = set.difference(&mine);
            if !gone.is_empty() {
                self.release_empty(&m, &gone);
            }
            let keep = set.intersection(&mine);
            if keep.is_empty() {
                continue;
            }
            if prev.lost_in(from, &m) || m.node(from).is_some_and(|e| e.dead) {
                self.counters.takeovers += u64::from(keep.count());
                taken = taken.union(&keep);
                self.note_unmerged(now, prev, &m, from, &keep);
                let e = commits
                    .entry(Some(from))
                    .or_insert_with(|| BucketSet::empty(b));
                *e = e.union(&keep);
            } else {
                self.awaiting.insert(from, keep);
            }
        }
        // Takeovers from a possibly live node that we no longer own: merge
        // what it flushed to us now, the commit hands it on.
        for (from, u) in std::mem::take(&mut self.unmerged) {
            let gone = u.buckets.difference(&mine);
            if !gone.is_empty() {
                self.counters.merges += u64::from(gone.count());
                let e = commits
                    .entry(Some(from))
                    .or_insert_with(|| BucketSet::empty(b));
                *e = e.union(&gone);
            }
            let keep = u.buckets.intersection(&mine);
            if !keep.is_empty() {
                self.unmerged.insert(from, Unmerged { buckets: keep, ..u });
            }
        }
        // Transfers whose buckets changed owner: re-target, or take back.
        let mut direct = BucketSet::empty(b);
        let mut back_from: Vec<(NodeId, BucketSet)> = Vec::new();
        let mut retarget = BucketSet::empty(b);
        for t in &mut self.transfers {
            let moved = t.buckets.iter().filter(|&x| m.owner_of(x) != Some(t.to));
            let moved = BucketSet::from_iter_in(b, moved);
            if moved.is_empty() {
                continue;
            }
            t.buckets = t.buckets.difference(&moved);
            let back = moved.intersection(&mine);
            if t.stage == Stage::Released {
                // The target may have committed and forwarded them.
                back_from.push((t.to, back));
            } else {
                // Not released yet: the target cannot have forwarded them.
                direct = direct.union(&back);
            }
            retarget = retarget.union(&moved.difference(&mine));
        }
        self.transfers.retain(|t| !t.buckets.is_empty());
        if !retarget.is_empty() {
            self.transfer_out(&m, &retarget);
        }
        // Gains.
        let mut busy = self.forwarding.union(&direct);
        for set in self.awaiting.values() {
            busy = busy.union(set);
        }
        for c in &self.commits {
            busy = busy.union(&c.buckets);
        }
        let gained = mine.difference(&busy);
        let me = self.cfg.node;
        for x in gained.iter() {
            let from = back_from
                .iter()
                .find(|(_, s)| s.contains(x))
                .map(|(n, _)| *n)
                .or_else(|| prev.owner_of(x).filter(|&o| o != me));
            match from {
                Some(p) if prev.lost_in(p, &m) => {
                    self.counters.takeovers += 1;
                    taken.insert(x);
                    self.note_unmerged(now, prev, &m, p, &BucketSet::from_iter_in(b, [x]));
                    commits
                        .entry(Some(p))
                        .or_insert_with(|| BucketSet::empty(b))
                        .insert(x);
                }
                Some(p) => {
                    self.awaiting
                        .entry(p)
                        .or_insert_with(|| BucketSet::empty(b))
                        .insert(x);
                    // `p` was still waiting for the bucket from a source
                    // now lost: what it would have committed is in our
                    // cache of that source (the master gives us the
                    // bucket rather than `p` when `p` joined too late to
                    // hold it).
                    let stranded = self.unfinished_move(prev, x, p).filter(|mv| {
                        m.node(mv.node)
                            .is_none_or(|e| e.dead || e.incarnation != mv.incarnation)
                    });
                    if let Some(mv) = stranded {
                        taken.insert(x);
                        commits
                            .entry(Some(mv.node))
                            .or_insert_with(|| BucketSet::empty(b))
                            .insert(x);
                    }
                }
                None => {
                    commits
                        .entry(None)
                        .or_insert_with(|| BucketSet::empty(b))
                        .insert(x);
                }
            }
        }
        // The lost owner may not have had their flows: it may have been
        // given them by a takeover it never carried out (declared dead or
        // crashed first, or it never got that map). Whoever it would have
        // imported from is lost too: import from every lost member.
        if !taken.is_empty() {
            for n in lost_members(prev, &m, self.cfg.node) {
                let e = commits
                    .entry(Some(n))
                    .or_insert_with(|| BucketSet::empty(b));
                *e = e.union(&taken);
            }
        }
        if adopted && m.version() > prev.version().saturating_add(1) {
            self.skipped_versions(now, prev, &m, &mine, &mut commits);
        }
        for (from, buckets) in commits {
            self.start_commit(from, buckets);
        }
        if adopted {
            self.note_moves(prev, &m);
        }
        if !direct.is_empty() {
            self.forwarding = self.forwarding.union(&direct);
            self.counters.buckets_gained += u64::from(direct.count());
            self.act(Action::Forward(self.forwarding.clone()));
        }
        self.map = Some(m);
        // A peer that already applied this map has released to us.
        let heard: Vec<(NodeId, Heartbeat)> = self
            .peers
            .iter()
            .filter_map(|(n, p)| p.hb.map(|h| (*n, h)))
            .collect();
        for (n, h) in heard {
            self.progress_from(now, n, h);
        }
        self.update_applied(now);
    }

    /// `m` was not made from `prev` (we missed the versions between):
    /// who forwarded our buckets meanwhile is unknown to us. Every member
    /// `m` lists lost against `prev` (dead, or another incarnation) may
    /// have, and replicated its flows of them to us: import those of
    /// every bucket `mine` too. A live member that
    /// forwarded one releases it to us when it sees `m` (merged late).
    fn skipped_versions(
        &mut self,
        now: Instant,
        prev: &BucketMap,
        m: &BucketMap,
        mine: &BucketSet,
        commits: &mut BTreeMap<Option<NodeId>, BucketSet>,
    ) {
        self.counters.maps_skipped += 1;
        if mine.is_empty() {
            return;
        }
        for n in lost_members(prev, m, self.cfg.node) {
            self.counters.merges += u64::from(mine.count());
            // Lost since `prev` with the incarnation it had: maybe only
            // declared dead, and still forwarding some of them.
            if prev.node(n).is_some_and(|old| !old.dead) {
                self.note_unmerged(now, prev, m, n, mine);
            }
            let e = commits
                .entry(Some(n))
                .or_insert_with(|| BucketSet::empty(mine.universe()));
            *e = e.union(mine);
        }
    }

    /// We take `set` over from `from`, lost in `m`: if the map still
    /// lists its incarnation as it was, it may be alive (a false death)
    /// and flush its flows of `set` to us later; merge them then. If it
    /// dies first, the flows it created meanwhile are in our cache of it:
    /// merge them when our detector judges it dead or it restarts
    /// ([`Coordinator::merge_from_dead`], `progress_from`).
    fn note_unmerged(
        &mut self,
        now: Instant,
        prev: &BucketMap,
        m: &BucketMap,
        from: NodeId,
        set: &BucketSet,
    ) {
        let Some(old) = prev.node(from) else { return };
        if m.node(from)
            .is_none_or(|e| e.incarnation != old.incarnation)
        {
            return;
        }
        // Silent now: the takeover's commit imports all it replicated.
        let silent = !self.alive(now, from);
        let u = self.unmerged.entry(from).or_insert_with(|| Unmerged {
            incarnation: old.incarnation,
            version: 0,
            buckets: BucketSet::empty(set.universe()),
            dead_merged: silent,
        });
        if u.incarnation != old.incarnation {
            u.buckets = BucketSet::empty(set.universe());
            u.incarnation = old.incarnation;
            u.dead_merged = silent;
        }
        u.version = u.version.max(m.version());
        u.buckets = u.buckets.union(set);
    }

    /// The source of the planned move that gave `x` to `p` (owner in
    /// `prev`), if `p` is not known to have finished it (its heartbeat,
    /// same incarnation, shows that map applied): that source evicts the
    /// flows only once `p` applied, so it may still hold them.
    pub(super) fn unfinished_move(&self, prev: &BucketMap, x: u32, p: NodeId) -> Option<MovedFrom> {
        let mv = self.moved_from.get(x as usize).copied().flatten()?;
        if mv.node == p {
            return None;
        }
        let p_inc = prev.node(p).map(|e| e.incarnation);
        let p_done = self
            .peers
            .get(&p)
            .and_then(|q| q.hb)
            .is_some_and(|h| Some(h.incarnation) == p_inc && h.applied_version >= mv.version);
        (!p_done).then_some(mv)
    }

    /// Records, for the buckets whose owner changed from `prev` to `m`,
    /// where a possibly unfinished planned move came from: the previous
    /// owner if it is live; after a takeover, the source of the move the
    /// lost owner had not finished, if that source is still live.
    fn note_moves(&mut self, prev: &BucketMap, m: &BucketMap) {
        for x in 0..m.buckets() {
            let (Some(old), Some(new)) = (prev.owner_of(x), m.owner_of(x)) else {
                continue;
            };
            if old == new {
                continue;
            }
            let inc_in = |map: &BucketMap, n: NodeId| map.node(n).map_or(0, |e| e.incarnation);
            let entry = if !prev.lost_in(old, m) {
                Some(MovedFrom {
                    node: old,
                    incarnation: inc_in(prev, old),
                    version: m.version(),
                })
            } else {
                self.unfinished_move(prev, x, old)
                    .filter(|mv| {
                        mv.node != new
                            && m.node(mv.node)
                                .is_some_and(|e| !e.dead && e.incarnation == mv.incarnation)
                    })
                    .map(|mv| MovedFrom {
                        version: m.version(),
                        ..mv
                    })
            };
            if let Some(slot) = self.moved_from.get_mut(x as usize) {
                *slot = entry;
            }
        }
    }

    fn start_commit(&mut self, from: Option<NodeId>, buckets: BucketSet) {
        let token = self.token();
        self.act(Action::Commit {
            token,
            from,
            buckets: buckets.clone(),
        });
        self.commits.push(CommitJob {
            token,
            from,
            buckets,
        });
    }

    /// A commit finished: forward what is still ours; hand on what a newer
    /// map gave away meanwhile.
    pub(super) fn finish_commit(&mut self, now: Instant, job: CommitJob) {
        if let Some(m) = self.map.take() {
            let mine = self.mine(&m);
            // Not while another commit or a release of them is pending
            // (a takeover that also waits for a planned move's source).
            let mut busy = self.forwarding.clone();
            for set in self.awaiting.values() {
                busy = busy.union(set);
            }
            for c in &self.commits {
                busy = busy.union(&c.buckets);
            }
            let gain = job.buckets.intersection(&mine).difference(&busy);
            if !gain.is_empty() {
                self.forwarding = self.forwarding.union(&gain);
                self.counters.buckets_gained += u64::from(gain.count());
                self.act(Action::Forward(self.forwarding.clone()));
            }
            let gone = job.buckets.difference(&mine);
            if !gone.is_empty() && job.from.is_some() {
                self.transfer_out(&m, &gone);
            }
            self.map = Some(m);
        }
        self.update_applied(now);
    }

    /// Flushes `set` to each bucket's owner in `m` (not us).
    fn transfer_out(&mut self, m: &BucketMap, set: &BucketSet) {
        for (to, buckets) in by_owner(m, set, self.cfg.node) {
            if let Some(t) = self
                .transfers
                .iter_mut()
                .find(|t| t.to == to && t.stage == Stage::Retry)
            {
                t.buckets = t.buckets.union(&buckets);
                t.version = m.version();
                continue;
            }
            let token = self.token();
            self.act(Action::Flush {
                token,
                to,
                buckets: buckets.clone(),
            });
            self.transfers.push(Transfer {
                to,
                buckets,
                version: m.version(),
                stage: Stage::Flushing(token),
            });
        }
    }

    /// Tells each new owner of `set` that we hold none of its flows.
    fn release_empty(&mut self, m: &BucketMap, set: &BucketSet) {
        for (to, buckets) in by_owner(m, set, self.cfg.node) {
            self.send(
                to,
                Out::Released {
                    version: m.version(),
                    buckets,
                },
            );
        }
    }

    /// A release from `sender`: commit what we waited for from it; merge a
    /// late one for buckets we already forward (each bucket once per
    /// sender and version).
    pub(super) fn on_released(
        &mut self,
        now: Instant,
        sender: NodeId,
        version: u64,
        buckets: BucketSet,
    ) {
        if version > self.map_version() || buckets.universe() != self.cfg.buckets {
            self.counters.unexpected_releases += 1;
            return;
        }
        let mut used = false;
        if let Some(set) = self.awaiting.get_mut(&sender) {
            let hit = set.intersection(&buckets);
            if !hit.is_empty() {
                *set = set.difference(&hit);
                if set.is_empty() {
                    self.awaiting.remove(&sender);
                }
                self.counters.planned_moves += u64::from(hit.count());
                self.start_commit(Some(sender), hit);
                used = true;
            }
        }
        // Buckets we forward or are committing (a takeover from another
        // node, e.g. a gainer that died mid-move, may be under way while
        // the source's release arrives): the source flushed its flows of
        // them to us, merge them.
        // Also buckets we still wait for from another node: after a map
        // that skipped versions, the sender may have forwarded them in
        // between, and evicts its copies once we acknowledge.
        let mut ours = self.forwarding.clone();
        for c in &self.commits {
            ours = ours.union(&c.buckets);
        }
        for set in self.awaiting.values() {
            ours = ours.union(set);
        }
        // Acknowledged (its sender then evicts its copies of every
        // transfer to us at that version) only if every bucket is ours
        // and we wait for nothing more from the sender: a release of
        // buckets our map gives to another member (another master's map
        // of the same version, after a partition or a lost map) left its
        // flows only in our cache of the sender; and a release of the
        // same version that we dropped (it came before the map) would
        // be taken as acknowledged with this one. Unacknowledged, the
        // sender keeps its copies and resends until a newer map
        // re-targets the transfer.
        if buckets.difference(&ours).is_empty() && !self.awaiting.contains_key(&sender) {
            let ack = self.releases_in.entry(sender).or_insert(0);
            *ack = (*ack).max(version);
        }
        let late = buckets.intersection(&ours);
        if !late.is_empty() {
            let universe = self.cfg.buckets;
            let done = self
                .merged
                .entry((sender, version))
                .or_insert_with(|| BucketSet::empty(universe));
            let todo = late.difference(done);
            if !todo.is_empty() {
                *done = done.union(&todo);
                self.counters.merges += u64::from(todo.count());
                self.start_commit(Some(sender), todo);
                used = true;
            }
            // Bounded: a release more than MERGED_VERSIONS maps old is
            // long superseded.
            let horizon = self.map_version().saturating_sub(MERGED_VERSIONS);
            self.merged.retain(|&(_, v), _| v >= horizon);
        }
        if let Some(u) = self.unmerged.get_mut(&sender) {
            u.buckets = u.buckets.difference(&buckets);
            if u.buckets.is_empty() {
                self.unmerged.remove(&sender);
            }
        }
        if !used {
            self.counters.unexpected_releases += 1;
        }
        self.update_applied(now);
    }

    /// What a heartbeat of `sender` settles: a peer that applied our map
    /// has released to us whatever we wait for from it; a new owner that
    /// applied the map that moved our buckets lets us evict them.
    pub(super) fn progress_from(&mut self, now: Instant, sender: NodeId, h: Heartbeat) {
        let version = self.map_version();
        if version > 0 && h.map_version >= version && self.awaiting.contains_key(&sender) {
            let since = self.holds_map_since.entry(sender).or_insert((version, now));
            if since.0 != version {
                *since = (version, now);
            }
        }
        if version > 0 && h.applied_version >= version {
            if let Some(set) = self.awaiting.remove(&sender) {
                self.counters.planned_moves += u64::from(set.count());
                self.start_commit(Some(sender), set);
            }
        }
        // A falsely dead node we took buckets over from: once it applied
        // the map that declared it lost, it has flushed them to us.
        if let Some(u) = self.unmerged.get_mut(&sender) {
            if u.incarnation != h.incarnation {
                // Restarted: what the old incarnation created since the
                // takeover was replicated to us; import it (unless that
                // was done since it was last heard).
                let u = self.unmerged.remove(&sender).expect("present");
                if !u.dead_merged {
                    self.counters.merges += u64::from(u.buckets.count());
                    self.start_commit(Some(sender), u.buckets);
                }
            } else if h.applied_version >= u.version {
                let u = self.unmerged.remove(&sender).expect("present");
                self.counters.merges += u64::from(u.buckets.count());
                self.start_commit(Some(sender), u.buckets);
            } else {
                // Alive, not yet applied: it may still forward them.
                u.dead_merged = false;
            }
        }
        let mine = self.map.as_ref().map(|m| self.mine(m));
        let mut evict = Vec::new();
        self.transfers.retain(|t| {
            let done = t.to == sender && t.stage == Stage::Released && h.release_ack >= t.version;
            if done {
                let set = mine
                    .as_ref()
                    .map_or(t.buckets.clone(), |m| t.buckets.difference(m));
                evict.push(set);
            }
            !done
        });
        for buckets in evict {
            self.act(Action::Evict { buckets });
        }
        // Bring a peer with an older map up to date (the master all of
        // them, others only the master), once a heartbeat at most.
        if h.map_version < version && (self.acting_master(now) || self.master(now) == sender) {
            self.send_map(now, sender);
        }
        self.update_applied(now);
    }

    /// A node we took buckets over from while it may have been alive (a
    /// false death) that our detector now judges dead, before it applied
    /// the map: it forwarded those buckets until it stopped, and what it
    /// created meanwhile was replicated to us. Import that from our cache
    /// of it (once per silence; kept to merge again if it comes back).
    pub(super) fn merge_from_dead(&mut self, now: Instant) {
        let due: Vec<NodeId> = self
            .unmerged
            .iter()
            .filter(|(n, u)| !u.dead_merged && !self.alive(now, **n))
            .map(|(n, _)| *n)
            .collect();
        for n in due {
            let Some(u) = self.unmerged.get_mut(&n) else {
                continue;
            };
            u.dead_merged = true;
            let buckets = u.buckets.clone();
            self.counters.merges += u64::from(buckets.count());
            self.start_commit(Some(n), buckets);
        }
        self.update_applied(now);
    }

    pub(super) fn send_map(&mut self, now: Instant, to: NodeId) {
        let hb = self.cfg.heartbeat;
        let due = self.peers.get(&to).is_some_and(|p| {
            p.map_sent
                .is_none_or(|t| now.saturating_duration_since(t) >= hb)
        });
        if due {
            if let Some(p) = self.peers.get_mut(&to) {
                p.map_sent = Some(now);
            }
            self.send(to, Out::Map);
        }
    }

    /// A planned move whose old owner has held our map (so stopped
    /// forwarding the buckets) for twice `dead_after_max` without a
    /// release: commit what it replicated to us and forward; a release
    /// that comes later is merged. It may have nothing to release: after
    /// a healed partition it can have handed the buckets over under the
    /// other side's map of the same version, which we never held, while
    /// it waits for a release of ours the same way (`release_timeouts`).
    pub(super) fn give_up_waiting(&mut self, now: Instant) {
        let version = self.map_version();
        let patience = self.cfg.dead_after_max * 2;
        let awaiting = &self.awaiting;
        self.holds_map_since
            .retain(|n, (v, _)| *v == version && awaiting.contains_key(n));
        let due: Vec<NodeId> = self
            .holds_map_since
            .iter()
            .filter(|(_, (_, t))| now.saturating_duration_since(*t) >= patience)
            .map(|(n, _)| *n)
            .collect();
        for n in due {
            self.holds_map_since.remove(&n);
            if let Some(set) = self.awaiting.remove(&n) {
                self.counters.release_timeouts += u64::from(set.count());
                self.start_commit(Some(n), set);
            }
        }
        self.update_applied(now);
    }

    /// Each heartbeat: repeat releases, retry failed flushes.
    pub(super) fn repeat_transfers(&mut self, now: Instant) {
        let mut flushes = Vec::new();
        let mut releases = Vec::new();
        for i in 0..self.transfers.len() {
            let t = &self.transfers[i];
            match t.stage {
                Stage::Retry => flushes.push(i),
                Stage::Released => releases.push((t.to, t.version, t.buckets.clone())),
                Stage::Flushing(_) => {}
            }
        }
        for i in flushes {
            let token = self.token();
            let t = &mut self.transfers[i];
            t.stage = Stage::Flushing(token);
            let (to, buckets) = (t.to, t.buckets.clone());
            self.act(Action::Flush { token, to, buckets });
        }
        for (to, version, buckets) in releases {
            self.send(to, Out::Released { version, buckets });
        }
        self.update_applied(now);
    }

    /// Marks the held map applied once nothing is pending for it.
    pub(super) fn update_applied(&mut self, _now: Instant) {
        let Some(m) = &self.map else { return };
        let done = self.awaiting.is_empty()
            && self.commits.is_empty()
            && self.transfers.iter().all(|t| t.stage == Stage::Released)
            && self.forwarding == self.mine(m);
        if done && self.applied < m.version() {
            self.applied = m.version();
            self.act(Action::Settled {
                version: self.applied,
            });
        }
    }
}

/// The members other than `me` that `m` lists lost against `prev`: dead,
/// or another incarnation.
fn lost_members(prev: &BucketMap, m: &BucketMap, me: NodeId) -> Vec<NodeId> {
    m.nodes()
        .iter()
        .filter(|e| e.node != me && prev.lost_in(e.node, m))
        .map(|e| e.node)
        .collect()
}

/// `set` split by owner in `m`, leaving out `me`.
fn by_owner(m: &BucketMap, set: &BucketSet, me: NodeId) -> BTreeMap<NodeId, BucketSet> {
    let mut out: BTreeMap<NodeId, BucketSet> = BTreeMap::new();
    for x in set.iter() {
        if let Some(o) = m.owner_of(x).filter(|&o| o != me) {
            out.entry(o)
                .or_insert_with(|| BucketSet::empty(m.buckets()))
                .insert(x);
        }
    }
    out
}
