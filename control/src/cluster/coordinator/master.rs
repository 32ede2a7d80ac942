//! The master's duties: requests, and a new map when the eligible set
//! changes (at once for failures, from a settled map for planned moves).

use std::collections::BTreeMap;
use std::time::Instant;

use super::Coordinator;
use crate::cluster::map::{plan_avoiding, Balance, BucketMap, MapNode};
use crate::cluster::msg::{NodeState, Request};
use crate::cluster::NodeId;

impl Coordinator {
    /// The newest map version a live peer reports.
    fn newest_seen(&self, now: Instant) -> u64 {
        self.peers
            .iter()
            .filter(|(n, _)| self.alive(now, **n))
            .filter_map(|(_, p)| p.hb.map(|h| h.map_version))
            .max()
            .unwrap_or(0)
    }

    /// We are the lowest live id, past the start-up grace (we heard every
    /// live peer), and hold the newest map any live peer reports.
    pub(super) fn acting_master(&self, now: Instant) -> bool {
        self.master(now) == self.cfg.node
            && now.saturating_duration_since(self.started) >= self.cfg.dead_after
            && self.map_version() >= self.newest_seen(now)
    }

    /// Incarnation and state of `node` (ours, or its last heartbeat).
    fn info(&self, node: NodeId) -> Option<(u64, NodeState)> {
        if node == self.cfg.node {
            return Some((self.cfg.incarnation, self.state()));
        }
        self.peers
            .get(&node)
            .and_then(|p| p.hb)
            .map(|h| (h.incarnation, h.state))
    }

    /// Drained, counting requests not yet in a map.
    fn drained(&self, node: NodeId) -> bool {
        self.pending_drain.get(&node).copied().unwrap_or_else(|| {
            self.map
                .as_ref()
                .and_then(|m| m.node(node))
                .is_some_and(|e| e.drained)
        })
    }

    fn configured(&self) -> Vec<NodeId> {
        let mut all: Vec<NodeId> = self.peers.keys().copied().collect();
        all.push(self.cfg.node);
        all.sort_unstable();
        all
    }

    /// An operator request (ours or a peer's); kept until a map has it.
    pub(super) fn on_request(&mut self, now: Instant, r: Request) {
        if self.master(now) != self.cfg.node {
            return;
        }
        self.counters.requests += 1;
        let known = |n: NodeId| n == self.cfg.node || self.peers.contains_key(&n);
        match r {
            Request::Drain(n) | Request::Undrain(n) if !known(n) => {
                self.counters.bad_requests += 1;
            }
            Request::Drain(n) => {
                self.pending_drain.insert(n, true);
            }
            Request::Undrain(n) => {
                self.pending_drain.insert(n, false);
            }
            Request::Rebalance => self.rebalance_requested = true,
        }
    }

    /// Each heartbeat: the master sends its map to every live peer that
    /// reports an older one; others send theirs to the master if it does.
    pub(super) fn repeat_maps(&mut self, now: Instant) {
        let version = self.map_version();
        let master = self.master(now);
        let acting = self.acting_master(now);
        let behind: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(n, p)| {
                (acting || **n == master)
                    && self.alive(now, **n)
                    && p.hb.is_some_and(|h| h.map_version < version)
            })
            .map(|(n, _)| *n)
            .collect();
        for n in behind {
            self.send_map(now, n);
        }
    }

    /// Every live peer (and we) applied `m`; joining nodes own nothing and
    /// do not count.
    fn settled(&self, now: Instant, m: &BucketMap) -> bool {
        self.applied == m.version()
            && self.peers.iter().all(|(n, p)| {
                !self.alive(now, *n)
                    || p.hb.is_some_and(|h| {
                        h.state == NodeState::Joining
                            || (h.map_version == m.version() && h.applied_version == m.version())
                    })
            })
    }

    /// Primary-backup: the one node that owns every bucket. The current
    /// primary (the owner in the held map) stays while it is live, its
    /// incarnation unchanged and not drained, so a returning lower id
    /// (the new master) does not preempt it; otherwise, and on an
    /// operator's rebalance, the master itself; if the master is drained,
    /// the lowest ready undrained node.
    fn primary(&self, now: Instant, undrained: &[NodeId]) -> Option<NodeId> {
        let me = self.cfg.node;
        let ok = |n: NodeId| undrained.contains(&n);
        if self.rebalance_requested && ok(me) {
            return Some(me);
        }
        let current = self.map.as_ref().and_then(|m| {
            m.nodes().iter().find(|e| {
                e.eligible
                    && ok(e.node)
                    && self.alive(now, e.node)
                    && self
                        .info(e.node)
                        .is_some_and(|(inc, _)| inc == e.incarnation)
            })
        });
        if let Some(e) = current {
            return Some(e.node);
        }
        if ok(me) {
            return Some(me);
        }
        undrained.iter().copied().min()
    }

    /// A live member applied a map of our version that is not ours: its
    /// heartbeat's forwarded count differs from what `m` gives the
    /// incarnation it runs. Two masters made the same version on either
    /// side of a partition, and the tie went to the other map there (a
    /// map is resent only to members behind): a newer map settles it.
    fn diverged(&self, now: Instant, m: &BucketMap) -> bool {
        self.peers.iter().any(|(n, p)| {
            self.alive(now, *n)
                && p.hb.is_some_and(|h| {
                    h.state != NodeState::Joining
                        && h.map_version == m.version()
                        && h.applied_version == m.version()
                        && m.node(*n).is_some_and(|e| e.incarnation == h.incarnation)
                        && h.owned != m.owned_by(*n).count()
                })
        })
    }

    /// The buckets of `failed` owners that they gained in a planned move
    /// they are not known to have finished, whose source is live and
    /// ready with the incarnation it had: (bucket, source).
    fn give_back(
        &self,
        now: Instant,
        m: &BucketMap,
        failed: &[NodeId],
        ready: &[NodeId],
    ) -> Vec<(u32, NodeId)> {
        let mut back = Vec::new();
        for &p in failed {
            for x in m.owned_by(p).iter() {
                let Some(mv) = self.unfinished_move(m, x, p) else {
                    continue;
                };
                let live = ready.contains(&mv.node)
                    && self.alive(now, mv.node)
                    && self
                        .info(mv.node)
                        .is_some_and(|(inc, _)| inc == mv.incarnation);
                if live && !failed.contains(&mv.node) {
                    back.push((x, mv.node));
                }
            }
        }
        back
    }

    /// The master's step, after every input: a first map once someone is
    /// ready; a new map at once when an owner died or restarted (only its
    /// buckets move); otherwise, once the map is settled, a new map for
    /// joins, drains, undrains and rebalances.
    pub(super) fn master_step(&mut self, now: Instant) {
        if !self.acting_master(now) {
            return;
        }
        let me = self.cfg.node;
        let live: Vec<NodeId> = self
            .configured()
            .into_iter()
            .filter(|&n| self.alive(now, n))
            .collect();
        let ready: Vec<NodeId> = live
            .iter()
            .copied()
            .filter(|&n| self.info(n).is_some_and(|(_, s)| s != NodeState::Joining))
            .collect();
        let undrained: Vec<NodeId> = ready
            .iter()
            .copied()
            .filter(|&n| !self.drained(n))
            .collect();
        let eligible: Vec<NodeId> = if self.cfg.primary_backup {
            self.primary(now, &undrained).into_iter().collect()
        } else {
            undrained
        };
        let Some(m) = self.map.clone() else {
            if !eligible.is_empty() {
                self.publish(
                    now,
                    None,
                    &eligible,
                    &ready,
                    Balance::IfUnderFloor,
                    |_, _| false,
                );
            }
            return;
        };
        let members: Vec<&MapNode> = m.nodes().iter().filter(|e| e.eligible).collect();
        let failed: Vec<NodeId> = members
            .iter()
            .filter(|e| {
                !self.alive(now, e.node)
                    || self
                        .info(e.node)
                        .is_some_and(|(inc, s)| inc != e.incarnation || s == NodeState::Joining)
            })
            .map(|e| e.node)
            .collect();
        // A node the map lists live that died without owning buckets (a
        // drained node before its releases went out): a map listing it
        // dead turns the waits for its releases into takeovers.
        let vanished = m
            .nodes()
            .iter()
            .any(|e| !e.dead && e.node != me && !self.alive(now, e.node));
        if !failed.is_empty() || vanished {
            let mut keep: Vec<NodeId> = members
                .iter()
                .map(|e| e.node)
                .filter(|n| !failed.contains(n))
                .collect();
            if keep.is_empty() {
                keep = eligible;
            }
            if keep.is_empty() {
                // Every node that may own is gone: drained nodes forward
                // rather than nobody (until an eligible one is back).
                keep = if self.cfg.primary_backup {
                    let first = ready.iter().copied().find(|&n| n == me);
                    first.or(ready.first().copied()).into_iter().collect()
                } else {
                    ready.clone()
                };
            }
            // A failed owner that had not finished a planned move: its
            // live source still holds the flows (it evicts only once the
            // gainer applied); it gets those buckets back.
            let back = if self.cfg.primary_backup {
                Vec::new()
            } else {
                self.give_back(now, &m, &failed, &ready)
            };
            for &(_, a) in &back {
                if !keep.contains(&a) {
                    keep.push(a);
                }
            }
            keep.sort_unstable();
            let fresh = self.fresh_takers(&failed);
            // A live gainer still waiting for a bucket from a failed
            // source that it joined too late to hold the flows of: the
            // bucket is that source's orphan (it goes to a member that
            // holds them; the gainer never forwarded it).
            let stranded: Vec<(u32, NodeId)> = if self.cfg.primary_backup {
                Vec::new()
            } else {
                (0..m.buckets())
                    .filter_map(|x| {
                        let g = m.owner_of(x)?;
                        let mv = self.unfinished_move(&m, x, g)?;
                        let late = fresh.get(&mv.node).is_some_and(|v| v.contains(&g));
                        (!failed.contains(&g) && late).then_some((x, mv.node))
                    })
                    .collect()
            };
            let prev = m.with_owners(&back).with_owners(&stranded);
            let avoid = |x: u32, n: NodeId| {
                prev.owner_of(x)
                    .and_then(|p| fresh.get(&p))
                    .is_some_and(|v| v.contains(&n))
            };
            self.publish(now, Some(&prev), &keep, &ready, Balance::OrphansOnly, avoid);
            return;
        }
        if !self.settled(now, &m) {
            return;
        }
        let member_ids: Vec<NodeId> = members.iter().map(|e| e.node).collect();
        let drains_changed = self
            .pending_drain
            .iter()
            .any(|(n, d)| m.node(*n).is_some_and(|e| e.drained != *d));
        // A node the map lists dead is back: a new map tells everyone
        // (after a healed partition it may hold another master's map of
        // the same version).
        let revived = m.nodes().iter().any(|e| e.dead && ready.contains(&e.node));
        let diverged = self.diverged(now, &m);
        // Every ready member drained: the drained owners keep forwarding
        // (as after a failure), but a member listed dead that is back, or
        // one holding another master's map of our version, still needs a
        // new map (else both sides of a healed partition forward every
        // bucket for ever).
        let eligible = if eligible.is_empty() && (revived || diverged) {
            let owners: Vec<NodeId> = member_ids
                .iter()
                .copied()
                .filter(|n| ready.contains(n))
                .collect();
            if owners.is_empty() {
                ready.clone()
            } else {
                owners
            }
        } else {
            eligible
        };
        if eligible == member_ids
            && !self.rebalance_requested
            && !drains_changed
            && !revived
            && !diverged
        {
            self.pending_drain.clear();
            return;
        }
        let added: Vec<NodeId> = eligible
            .iter()
            .copied()
            .filter(|n| !member_ids.contains(n))
            .collect();
        let undrained = added.iter().any(|n| m.node(*n).is_some_and(|e| e.drained));
        let balance = if self.rebalance_requested {
            Balance::Full
        } else if !added.is_empty() && (self.cfg.auto_rebalance_on_join || undrained) {
            Balance::IfUnderFloor
        } else {
            Balance::OrphansOnly
        };
        if eligible.is_empty() {
            return;
        }
        self.publish(now, Some(&m), &eligible, &ready, balance, |_, _| false);
    }

    /// Per failed owner, the members that became ready only after we last
    /// heard it: their startup resync could not include its flows (and
    /// replication reaches a member only once it runs), so they should
    /// not take its buckets over while another member can.
    fn fresh_takers(&self, failed: &[NodeId]) -> BTreeMap<NodeId, Vec<NodeId>> {
        let mut out = BTreeMap::new();
        for &p in failed {
            let Some(last) = self.peers.get(&p).and_then(|q| q.last_heard) else {
                continue;
            };
            let mut fresh: Vec<NodeId> = self
                .peers
                .iter()
                .filter(|(n, q)| **n != p && q.ready_at.is_none_or(|r| r >= last))
                .map(|(n, _)| *n)
                .collect();
            if self.ready_at.is_none_or(|r| r >= last) {
                fresh.push(self.cfg.node);
            }
            out.insert(p, fresh);
        }
        out
    }

    /// Makes, adopts and sends a map owned by `owners`, backed up by
    /// `ready` nodes.
    fn publish(
        &mut self,
        now: Instant,
        prev: Option<&BucketMap>,
        owners: &[NodeId],
        ready: &[NodeId],
        balance: Balance,
        avoid: impl Fn(u32, NodeId) -> bool,
    ) {
        let b = self.cfg.buckets;
        let per = self.cfg.backups;
        let Some(mut planned) = plan_avoiding(prev, owners, per, balance, b, avoid) else {
            return;
        };
        if self.cfg.primary_backup {
            planned = planned.with_backups_from(ready, self.cfg.backups);
        }
        let version = self.map_version().max(self.newest_seen(now)) + 1;
        let table: Vec<MapNode> = self
            .configured()
            .into_iter()
            .map(|node| MapNode {
                node,
                incarnation: self.info(node).map_or(0, |(i, _)| i),
                eligible: owners.contains(&node),
                dead: !self.alive(now, node),
                drained: self.drained(node),
            })
            .collect();
        let Ok(map) = planned.stamped(version, self.cfg.node, table) else {
            return;
        };
        self.pending_drain.clear();
        self.rebalance_requested = false;
        self.counters.maps_made += 1;
        self.adopt(now, map);
        // To every peer, also those we judge dead: one we stopped hearing
        // (or never heard) may be alive and forwarding the buckets this
        // map takes from it (a false death); holding the map, it stops
        // at once instead of when we hear it again.
        let peers: Vec<NodeId> = self.peers.keys().copied().collect();
        for n in peers {
            if let Some(p) = self.peers.get_mut(&n) {
                p.map_sent = Some(now);
            }
            self.send(n, super::Out::Map);
        }
    }
}
