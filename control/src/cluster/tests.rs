//! Coordinator unit tests: bad input is counted and ignored; a pair forms
//! a map and a drained node hands its buckets over in order.

use std::time::{Duration, Instant};

use super::coordinator::{Action, Coordinator, CoordinatorConfig};
use super::map::{plan, Balance, MapNode};
use super::msg::Body;
use super::wire::Codec;
use ftfw_dataplane::buckets::BucketSet;

const KEY: &[u8] = b"0123456789abcdef-cluster-key";

fn cfg(node: u32) -> CoordinatorConfig {
    cfg_of(node, &[1, 2, 3], false)
}

/// A test coordinator's configuration: 16 buckets, one backup, 100 ms
/// heartbeats, dead after 350 ms (the uplink tests use it too).
pub(super) fn cfg_of(node: u32, nodes: &[u32], primary_backup: bool) -> CoordinatorConfig {
    CoordinatorConfig {
        node,
        nodes: nodes.to_vec(),
        buckets: 16,
        backups: 1,
        heartbeat: Duration::from_millis(100),
        dead_after: Duration::from_millis(350),
        dead_after_max: Duration::from_millis(2000),
        dead_after_relax: Duration::from_secs(30),
        auto_rebalance_on_join: true,
        key: KEY.to_vec(),
        primary_backup,
        incarnation: 1000 + u64::from(node),
    }
}

fn map_from(master: u32, version: u64) -> Body {
    let m = plan(None, &[1, 2, 3], 1, Balance::Full, 16).unwrap();
    let nodes = m.nodes().to_vec();
    Body::Map(m.stamped(version, master, nodes).unwrap())
}

#[test]
fn bad_bucket_maps_are_counted_and_ignored() {
    let now = Instant::now();
    let mut c = Coordinator::new(cfg(2), now).unwrap();
    let mut out = Vec::new();
    // Unauthenticated: another key.
    let mut forger = Codec::new(1, &[1, 2, 3], b"not-the-cluster-key!", 0).unwrap();
    forger.encode(&map_from(1, 5), &mut out);
    c.handle_datagram(now, &out);
    // From a node outside the configuration (right key).
    let mut stranger = Codec::new(7, &[7], KEY, 0).unwrap();
    stranger.encode(&map_from(7, 5), &mut out);
    c.handle_datagram(now, &out);
    // Garbage.
    c.handle_datagram(now, b"FC\x02\x02garbage-garbage-garbage-garbage");
    assert!(c.map().is_none());
    // A good map, then a stale one and a replay of the good one.
    let mut master = Codec::new(1, &[1, 2, 3], KEY, 0).unwrap();
    master.encode(&map_from(1, 5), &mut out);
    let good = out.clone();
    c.handle_datagram(now, &good);
    assert_eq!(c.map().map(|m| m.version()), Some(5));
    master.encode(&map_from(1, 4), &mut out);
    c.handle_datagram(now, &out);
    c.handle_datagram(now, &good);
    // A map whose node table names a stranger.
    let m = plan(None, &[1, 2, 7], 1, Balance::Full, 16).unwrap();
    let nodes = m.nodes().to_vec();
    master.encode(&Body::Map(m.stamped(9, 1, nodes).unwrap()), &mut out);
    c.handle_datagram(now, &out);
    assert_eq!(c.map().map(|m| m.version()), Some(5));
    let k = c.counters();
    // The forged map and the garbage (long enough to carry a tag).
    assert_eq!(k.codec.unauthenticated, 2);
    assert_eq!(k.codec.unknown_node, 1);
    assert_eq!(k.codec.replayed, 1);
    assert_eq!((k.stale_maps, k.foreign_maps, k.maps_applied), (1, 1, 1));
    // Joining: it holds the map but forwards nothing.
    assert!(c.forwarding().is_empty());
}

/// Runs two coordinators over a perfect network, the test acting as the
/// driver (actions done at once), until `until` or `steps` run out.
fn run(cs: &mut [Coordinator], t: &mut Instant, steps: usize) {
    let mut buf = Vec::new();
    for _ in 0..steps {
        *t += Duration::from_millis(10);
        let mut wire = Vec::new();
        for c in cs.iter_mut() {
            c.handle_timeout(*t);
            while let Some(tx) = c.poll_transmit(*t, &mut buf) {
                wire.push((tx.to, buf.clone()));
            }
            while let Some(a) = c.poll_action() {
                match a {
                    Action::Flush { token, .. } => c.handle_flushed(*t, token),
                    Action::Commit { token, .. } => c.handle_committed(*t, token),
                    _ => {}
                }
            }
        }
        for (to, bytes) in wire {
            if let Some(c) = cs.iter_mut().find(|c| c.node() == to) {
                c.handle_datagram(*t, &bytes);
            }
        }
    }
}

#[test]
fn three_nodes_share_buckets_and_a_drain_moves_them() {
    let mut t = Instant::now();
    let mut cs: Vec<Coordinator> = (1..=3)
        .map(|n| Coordinator::new(cfg(n), t).unwrap())
        .collect();
    for c in &mut cs {
        c.handle_ready(t);
    }
    run(&mut cs, &mut t, 100);
    let counts: Vec<u32> = cs.iter().map(|c| c.forwarding().count()).collect();
    assert_eq!(counts.iter().sum::<u32>(), 16);
    assert!(counts.iter().all(|&n| n == 5 || n == 6), "{counts:?}");
    cs[1].drain(t, 3).unwrap();
    run(&mut cs, &mut t, 100);
    let counts: Vec<u32> = cs.iter().map(|c| c.forwarding().count()).collect();
    // A drain moves only the drained node's buckets, to their backups.
    assert_eq!(counts[2], 0);
    assert_eq!(counts[0] + counts[1], 16);
    let st = cs[0].status(t);
    assert!(st.nodes[2].drained && st.pending.is_empty());
    assert_eq!(st.master, 1);
    assert!(cs[0].counters().planned_moves + cs[1].counters().planned_moves >= 5);
    assert!(serde_json::to_string(&st)
        .unwrap()
        .contains("\"drained\":true"));
    cs[2].undrain(t, 3).unwrap();
    run(&mut cs, &mut t, 100);
    assert!(cs[2].forwarding().count() >= 5);
    assert_eq!(cs[0].drain(t, 9), Err(super::RequestError::UnknownNode(9)));
}

/// A test cluster: coordinators by id, a network that delivers at once
/// unless `cut(from, to, message)` drops the datagram, a driver that does
/// every action at once, and the log of all actions in order.
struct Lab {
    t: Instant,
    cs: Vec<Coordinator>,
    log: Vec<(u32, Action)>,
    cut: fn(u32, u32, &'static str) -> bool,
    /// A node whose flushes never complete (its driver is stuck).
    stall_flush: Option<u32>,
}

impl Lab {
    fn new(cfg: fn(u32) -> CoordinatorConfig) -> Lab {
        let t = Instant::now();
        let mut cs: Vec<Coordinator> = (1..=3)
            .map(|n| Coordinator::new(cfg(n), t).unwrap())
            .collect();
        for c in &mut cs {
            c.handle_ready(t);
        }
        Lab {
            t,
            cs,
            log: Vec::new(),
            cut: |_, _, _| false,
            stall_flush: None,
        }
    }

    fn node(&mut self, id: u32) -> &mut Coordinator {
        self.cs.iter_mut().find(|c| c.node() == id).unwrap()
    }

    fn owned(&mut self, id: u32) -> u32 {
        self.node(id).forwarding().count()
    }

    fn crash(&mut self, id: u32) {
        self.cs.retain(|c| c.node() != id);
    }

    fn start(&mut self, cfg: CoordinatorConfig) {
        let mut c = Coordinator::new(cfg, self.t).unwrap();
        c.handle_ready(self.t);
        self.cs.push(c);
    }

    /// `steps` steps of 10 ms.
    fn step(&mut self, steps: usize) {
        let mut buf = Vec::new();
        for _ in 0..steps {
            self.t += Duration::from_millis(10);
            let t = self.t;
            let mut wire = Vec::new();
            for c in &mut self.cs {
                c.handle_timeout(t);
                while let Some(tx) = c.poll_transmit(t, &mut buf) {
                    if !(self.cut)(c.node(), tx.to, tx.name) {
                        wire.push((tx.to, buf.clone()));
                    }
                }
                while let Some(a) = c.poll_action() {
                    match a {
                        Action::Flush { token, .. } if self.stall_flush != Some(c.node()) => {
                            c.handle_flushed(t, token)
                        }
                        Action::Commit { token, .. } => c.handle_committed(t, token),
                        _ => {}
                    }
                    self.log.push((c.node(), a));
                }
            }
            for (to, bytes) in wire {
                if let Some(c) = self.cs.iter_mut().find(|c| c.node() == to) {
                    c.handle_datagram(t, &bytes);
                }
            }
        }
    }

    /// Index (from `since` on) of the first action of `node` matching `f`.
    fn first(&self, since: usize, node: u32, f: impl Fn(&Action) -> bool) -> Option<usize> {
        (since..self.log.len()).find(|&i| self.log[i].0 == node && f(&self.log[i].1))
    }
}

#[test]
fn a_gainer_dying_mid_move_does_not_open_a_window_before_the_source_flushes() {
    let mut lab = Lab::new(cfg);
    lab.step(100);
    let before = lab.node(1).map().unwrap().clone();
    // Drain 3: its buckets move to 1 and 2. 2 never hears 3 again (no
    // release, no heartbeat), so it waits; then it dies mid-move.
    lab.cut = |from, to, _| from == 3 && to == 2;
    let t = lab.t;
    lab.node(1).drain(t, 3).unwrap();
    lab.step(3);
    let drained = lab.node(1).map().unwrap().clone();
    let moving = drained.owned_by(2).difference(&before.owned_by(2));
    assert!(!moving.is_empty());
    assert!(lab.node(2).forwarding().intersection(&moving).is_empty());
    let crashed_at = lab.log.len();
    lab.crash(2);
    lab.cut = |_, _, _| false;
    lab.step(100);
    // Node 3 still held their flows: it gets them back at once, then (it
    // is drained) hands them to 1 in a planned move: 3 flushes to 1
    // before 1 forwards them.
    assert_eq!(lab.owned(1), 16);
    assert_eq!(lab.owned(3), 0);
    for x in moving.iter() {
        let back = lab.first(
            crashed_at,
            3,
            |a| matches!(a, Action::Forward(s) if s.contains(x)),
        );
        assert!(back.is_some(), "bucket {x} not given back to 3");
        let flushed = lab
            .first(
                crashed_at,
                3,
                |a| matches!(a, Action::Flush { to: 1, buckets, .. } if buckets.contains(x)),
            )
            .expect("3 flushes to 1");
        let forwarded = lab
            .first(
                crashed_at,
                1,
                |a| matches!(a, Action::Forward(s) if s.contains(x)),
            )
            .expect("1 forwards");
        assert!(
            flushed < forwarded,
            "bucket {x}: forwarded before the flush"
        );
        let merged = lab.first(
            flushed,
            1,
            |a| matches!(a, Action::Commit { from: Some(3), buckets, .. } if buckets.contains(x)),
        );
        assert!(merged.is_some_and(|m| m < forwarded), "bucket {x}");
    }
    let t = lab.t;
    assert!(lab.cs.iter().all(|c| c.status(t).pending.is_empty()));
}

#[test]
fn a_falsely_dead_owner_is_merged_from_once_it_applied_even_if_its_release_is_lost() {
    let mut lab = Lab::new(cfg);
    lab.step(100);
    let before = lab.node(1).map().unwrap().clone();
    let owned = before.owned_by(3);
    assert!(!owned.is_empty());
    // Nobody hears 3 (it hears everyone): 1 declares it dead, 1 and 2
    // take its buckets over; 3 sees that map, flushes and releases, but
    // its releases are never delivered.
    lab.cut = |from, _, _| from == 3;
    let start = lab.log.len();
    lab.step(50);
    assert_eq!(lab.owned(3), 0);
    lab.cut = |from, _, name| from == 3 && name == "released";
    lab.step(100);
    for x in owned.iter() {
        let flushed = lab
            .first(
                start,
                3,
                |a| matches!(a, Action::Flush { buckets, .. } if buckets.contains(x)),
            )
            .expect("3 flushes");
        let merged = lab.log[flushed..].iter().any(|(n, a)| {
            *n != 3
                && matches!(a, Action::Commit { from: Some(3), buckets, .. } if buckets.contains(x))
        });
        assert!(merged, "bucket {x}: what 3 flushed was never committed");
    }
    assert!(lab.cs.iter().map(|c| c.counters().merges).sum::<u64>() >= u64::from(owned.count()));
    let total: u32 = (1..=3).map(|n| lab.owned(n)).sum();
    assert_eq!(total, 16);
    // While its releases are not acknowledged, 3 keeps them pending and
    // keeps its copies (no eviction): the takers' applied maps do not
    // count as an acknowledgement.
    let t = lab.t;
    assert!(!lab.cs[2].status(t).pending.is_empty());
    let evicted = |lab: &Lab, from: usize| {
        lab.log[from..]
            .iter()
            .any(|(n, a)| *n == 3 && matches!(a, Action::Evict { .. }))
    };
    assert!(!evicted(&lab, start));
    // Releases get through again: acknowledged, then evicted.
    lab.cut = |_, _, _| false;
    let healed = lab.log.len();
    lab.step(100);
    let t = lab.t;
    assert!(lab.cs.iter().all(|c| c.status(t).pending.is_empty()));
    assert!(evicted(&lab, healed));
}

#[test]
fn a_member_that_missed_a_map_also_imports_from_the_owner_lost_since() {
    // Soak seed 26005 (5 members): the gainer imported only from the
    // owner in the map it held, not from the one that forwarded the
    // bucket in the map it missed and then crashed.
    let mut lab = Lab::new(cfg);
    lab.step(100);
    let before = lab.node(1).map().unwrap().clone();
    // 3 never gets a map from 1. Draining 2 moves its buckets to 1 and 3
    // (3, holding the old map, does not know).
    lab.cut = |from, to, name| from == 1 && to == 3 && name == "map";
    let t = lab.t;
    lab.node(1).drain(t, 2).unwrap();
    lab.step(20);
    let drained = lab.node(1).map().unwrap().clone();
    assert_eq!(drained.version(), before.version() + 1);
    assert_eq!(lab.node(3).map().unwrap().version(), before.version());
    let to_one = drained.owned_by(1).difference(&before.owned_by(1));
    assert!(!to_one.is_empty());
    assert!(to_one.iter().all(|x| before.owner_of(x) == Some(2)));
    assert!(lab
        .node(1)
        .forwarding()
        .contains(to_one.iter().next().unwrap()));
    // 1 forwarded them (and created flows, replicated to 3), then it
    // crashes: 2 (master now, drained) gives every bucket to 3, whose
    // held map says 2 owned `to_one`.
    let crashed_at = lab.log.len();
    lab.crash(1);
    lab.step(100);
    let m = lab.node(3).map().unwrap().clone();
    assert_eq!(m.version(), before.version() + 2);
    assert_eq!(lab.owned(3), 16);
    for x in to_one.iter() {
        let forwarded = lab
            .first(
                crashed_at,
                3,
                |a| matches!(a, Action::Forward(s) if s.contains(x)),
            )
            .expect("3 forwards");
        let from_one = lab.first(
            crashed_at,
            3,
            |a| matches!(a, Action::Commit { from: Some(1), buckets, .. } if buckets.contains(x)),
        );
        assert!(
            from_one.is_some_and(|c| c < forwarded),
            "bucket {x}: 3 forwarded without importing what 1 replicated"
        );
    }
    assert_eq!(lab.node(3).counters().maps_skipped, 1);
    let t = lab.t;
    assert!(lab.cs.iter().all(|c| c.status(t).pending.is_empty()));
}

#[test]
fn a_falsely_dead_owner_that_crashes_before_it_sees_the_map_is_merged_from_again() {
    // Soak seed 106009 (9 members): flows a falsely dead member created
    // between the takeover and its real crash were lost.
    let mut lab = Lab::new(cfg);
    lab.step(100);
    let before = lab.node(1).map().unwrap().clone();
    // 1 (the master) does not hear 3, 2 does; 3 never gets a map: 1
    // declares 3 dead and 2 takes some of its buckets over while 3 keeps
    // forwarding them (and replicating what it creates).
    lab.cut = |from, to, name| (from == 3 && to == 1) || (to == 3 && name == "map");
    let start = lab.log.len();
    lab.step(60);
    let m = lab.node(2).map().unwrap().clone();
    assert!(m.node(3).unwrap().dead);
    let taken = m.owned_by(2).intersection(&before.owned_by(3));
    assert!(!taken.is_empty());
    assert_eq!(lab.owned(3), before.owned_by(3).count());
    let takeover = lab
        .first(
            start,
            2,
            |a| matches!(a, Action::Commit { from: Some(3), buckets, .. } if *buckets == taken),
        )
        .expect("2 takes over from 3");
    // Until the matter is settled, 2 keeps its cache of 3's flows of
    // them (the prune on Settled spares them).
    let keep = lab.node(2).cache_owners();
    let of_three = keep.iter().find(|(n, _)| *n == 3).unwrap();
    assert!(of_three.1.intersection(&taken) == taken);
    // 3 crashes before it saw that map: 2 judges it dead and imports
    // what 3 replicated since the takeover.
    let crashed_at = lab.log.len();
    lab.crash(3);
    lab.step(100);
    let merged = lab.first(
        crashed_at,
        2,
        |a| matches!(a, Action::Commit { from: Some(3), buckets, .. } if buckets.intersection(&taken) == taken),
    );
    assert!(
        merged.is_some_and(|i| i > takeover),
        "2 never merged from 3 after its crash"
    );
    // 1 had not heard 3 since before its takeover: nothing to merge.
    assert!(lab
        .first(crashed_at, 1, |a| matches!(
            a,
            Action::Commit { from: Some(3), .. }
        ))
        .is_none());
    assert_eq!(lab.owned(1) + lab.owned(2), 16);
    let t = lab.t;
    assert!(lab.cs.iter().all(|c| c.status(t).pending.is_empty()));
}

#[test]
fn a_takeover_from_an_owner_lost_before_its_own_takeover_imports_from_the_first() {
    // Soak seed 217003 (3 members): 1 crashed, its bucket went to its
    // backup 3, which never got that map and was declared dead; 2 took
    // the bucket over from 3, which never held its flows (1's, in 2's
    // cache of 1).
    let mut lab = Lab::new(cfg);
    lab.step(100);
    let before = lab.node(1).map().unwrap().clone();
    let via_three: Vec<u32> = before
        .owned_by(1)
        .iter()
        .filter(|&x| before.backups_of(x) == [3])
        .collect();
    assert!(!via_three.is_empty());
    lab.cut = |_, to, name| to == 3 && name == "map";
    lab.crash(1);
    lab.step(45);
    let m = lab.node(2).map().unwrap().clone();
    assert_eq!(m.version(), before.version() + 1);
    assert!(via_three.iter().all(|&x| m.owner_of(x) == Some(3)));
    let crashed_at = lab.log.len();
    lab.crash(3);
    lab.step(60);
    assert_eq!(lab.owned(2), 16);
    for &x in &via_three {
        let forwarded = lab
            .first(
                crashed_at,
                2,
                |a| matches!(a, Action::Forward(s) if s.contains(x)),
            )
            .expect("2 forwards");
        let from_one = lab.first(
            crashed_at,
            2,
            |a| matches!(a, Action::Commit { from: Some(1), buckets, .. } if buckets.contains(x)),
        );
        assert!(
            from_one.is_some_and(|c| c < forwarded),
            "bucket {x}: 2 forwarded without importing 1's flows"
        );
    }
}

#[test]
fn a_planned_move_whose_old_owner_never_releases_is_committed_after_a_bound() {
    // Soak seed 147005 (5 members, partitions): after a healed partition
    // two members each waited for the other's release of buckets it had
    // handed over under the other side's map of the same version.
    let mut lab = Lab::new(cfg);
    lab.step(100);
    let before = lab.node(1).map().unwrap().clone();
    let moving = before.owned_by(3);
    // 3's flushes never complete: it holds the drain map (stopped
    // forwarding) but never releases.
    lab.stall_flush = Some(3);
    let t = lab.t;
    lab.node(1).drain(t, 3).unwrap();
    let drained_at = lab.log.len();
    lab.step(300);
    let waited: u32 = (1..=3).map(|n| lab.owned(n)).sum();
    assert_eq!(waited, 16 - moving.count(), "forwarded before the bound");
    // Twice dead_after_max (2 s) after 3 was heard holding the map.
    lab.step(200);
    assert_eq!(lab.owned(1) + lab.owned(2), 16);
    assert_eq!(lab.owned(3), 0);
    let gave_up: u64 = (1..=2)
        .map(|n| lab.node(n).counters().release_timeouts)
        .sum();
    assert_eq!(gave_up, u64::from(moving.count()));
    for x in moving.iter() {
        let gainer = lab.node(1).map().unwrap().owner_of(x).unwrap();
        let forwarded = lab
            .first(
                drained_at,
                gainer,
                |a| matches!(a, Action::Forward(s) if s.contains(x)),
            )
            .expect("forwarded");
        let committed = lab.first(
            drained_at,
            gainer,
            |a| matches!(a, Action::Commit { from: Some(3), buckets, .. } if buckets.contains(x)),
        );
        assert!(committed.is_some_and(|c| c < forwarded), "bucket {x}");
    }
}

fn pb(node: u32) -> CoordinatorConfig {
    CoordinatorConfig {
        primary_backup: true,
        ..cfg(node)
    }
}

#[test]
fn primary_backup_the_master_owns_all_and_a_returning_one_does_not_preempt() {
    let mut lab = Lab::new(pb);
    lab.step(100);
    assert_eq!([lab.owned(1), lab.owned(2), lab.owned(3)], [16, 0, 0]);
    let m = lab.node(2).map().unwrap().clone();
    assert!((0..16).all(|b| m.backups_of(b) == [2] || m.backups_of(b) == [3]));
    // The primary (and master) crashes: the next master owns everything.
    lab.crash(1);
    lab.step(100);
    assert_eq!([lab.owned(2), lab.owned(3)], [16, 0]);
    assert_eq!(lab.node(3).map().unwrap().master(), 2);
    // It comes back (new incarnation): it is master again but 2 keeps
    // forwarding.
    lab.start(CoordinatorConfig {
        incarnation: 5000,
        ..pb(1)
    });
    lab.step(100);
    assert_eq!([lab.owned(1), lab.owned(2), lab.owned(3)], [0, 16, 0]);
    let t = lab.t;
    assert_eq!(lab.node(3).status(t).master, 1);
    let m = lab.node(3).map().unwrap().clone();
    assert!((0..16).all(|b| m.owner_of(b) == Some(2) && m.backups_of(b) != [2]));
    // An operator's rebalance moves everything to the master, in order.
    let t = lab.t;
    lab.node(3).rebalance(t).unwrap();
    lab.step(100);
    assert_eq!([lab.owned(1), lab.owned(2), lab.owned(3)], [16, 0, 0]);
    assert_eq!(lab.node(1).counters().planned_moves, 16);
    // Draining the primary hands everything to the next one.
    let t = lab.t;
    lab.node(2).drain(t, 1).unwrap();
    lab.step(100);
    assert_eq!([lab.owned(1), lab.owned(2), lab.owned(3)], [0, 16, 0]);
    let t = lab.t;
    assert!(lab.cs.iter().all(|c| c.status(t).pending.is_empty()));
}

/// Whether `c` sees `node` alive now.
fn sees_alive(c: &Coordinator, now: Instant, node: u32) -> bool {
    c.status(now)
        .nodes
        .iter()
        .any(|n| n.node == node && n.alive)
}

#[test]
fn a_node_that_was_not_scheduled_does_not_declare_its_peers_dead() {
    let mut t = Instant::now();
    let mut cs: Vec<Coordinator> = (1..=3)
        .map(|n| Coordinator::new(cfg(n), t).unwrap())
        .collect();
    for c in &mut cs {
        c.handle_ready(t);
    }
    run(&mut cs, &mut t, 100);
    let owned = cs[0].forwarding().count();
    assert!(owned > 0);
    // Node 1 is descheduled for a second (more than dead_after, 350 ms):
    // its timers run late, before it reads what its peers sent meanwhile.
    t += Duration::from_secs(1);
    cs[0].handle_timeout(t);
    assert!(sees_alive(&cs[0], t, 2) && sees_alive(&cs[0], t, 3));
    assert_eq!(cs[0].counters().own_stalls, 1);
    assert_eq!(cs[0].forwarding().count(), owned);
    // A peer that really died is still declared dead, dead_after later.
    let mut two: Vec<Coordinator> = cs.drain(..2).collect();
    run(&mut two, &mut t, 50);
    assert!(!sees_alive(&two[0], t, 3));
    assert!(sees_alive(&two[0], t, 2));
    assert_eq!(
        two.iter().map(|c| c.forwarding().count()).sum::<u32>(),
        16,
        "node 3's buckets were taken over"
    );
}

#[test]
fn a_healed_partition_between_drained_members_ends_with_one_forwarder() {
    // Soak seed 555005 (5 members, partitions): the last two members,
    // both drained, were cut apart; each side's master gave every bucket
    // to itself in a map of the same version listing the other dead.
    // After the heal the master saw the other back (and holding the other
    // map) but, no member being eligible, made no new map: both forwarded
    // every bucket until the end.
    let mut lab = Lab::new(cfg);
    lab.step(100);
    let t = lab.t;
    lab.node(1).drain(t, 3).unwrap();
    lab.step(100);
    assert_eq!(lab.owned(3), 0);
    lab.crash(1);
    lab.step(100);
    assert_eq!(lab.owned(2), 16);
    // 2, the master now, is drained too: nobody is eligible, 2 keeps
    // forwarding.
    let t = lab.t;
    lab.node(2).drain(t, 2).unwrap();
    lab.step(50);
    assert_eq!(lab.owned(2), 16);
    lab.cut = |from, to, _| (from, to) == (2, 3) || (from, to) == (3, 2);
    lab.step(100);
    let (m2, m3) = (
        lab.node(2).map().unwrap().clone(),
        lab.node(3).map().unwrap().clone(),
    );
    assert_eq!(m2.version(), m3.version(), "two maps of one version");
    assert_eq!((m2.master(), m3.master()), (2, 3));
    assert_eq!((lab.owned(2), lab.owned(3)), (16, 16));
    lab.cut = |_, _, _| false;
    lab.step(200);
    assert_eq!(lab.owned(2) + lab.owned(3), 16, "one forwarder per bucket");
    let v = lab.node(2).map().unwrap().version();
    assert!(v > m2.version());
    assert_eq!(lab.node(3).map().unwrap().version(), v);
    let t = lab.t;
    assert!(lab.cs.iter().all(|c| c.status(t).pending.is_empty()));
}

#[test]
fn a_member_a_new_master_never_heard_is_sent_the_map_that_takes_its_buckets() {
    // Soak seed 715009 (9 members, lossy): a restarted member became
    // master without ever hearing a running owner (its heartbeats were
    // lost), listed it dead and gave its buckets to others; the map went
    // to live peers only, so the owner forwarded them on beside the taker
    // until the master heard it. The map now goes to every peer: the
    // owner stops as soon as it holds it.
    let mut lab = Lab::new(cfg);
    lab.step(100);
    lab.crash(1);
    lab.step(100);
    assert_eq!(lab.owned(2) + lab.owned(3), 16);
    assert!(lab.owned(3) > 0);
    // 1 comes back and never hears 3; 3 hears everyone, 2 hears 3.
    lab.cut = |from, to, _| (from, to) == (3, 1);
    let mut again = cfg(1);
    again.incarnation = 5_000;
    lab.start(again);
    for _ in 0..100 {
        lab.step(1);
        for x in 0..16 {
            let fwd = lab.cs.iter().filter(|c| c.forwarding().contains(x)).count();
            assert!(fwd <= 1, "bucket {x} forwarded by {fwd} members");
        }
    }
    assert_eq!(lab.node(1).map().unwrap().master(), 1);
    assert_eq!(lab.owned(3), 0, "3 gave up the buckets the map took");
    assert_eq!(lab.owned(1) + lab.owned(2), 16);
}

#[test]
fn a_map_from_a_member_shows_it_ready_though_its_ready_heartbeat_was_lost() {
    // Soak seed 43009 (9 members, lossy): a restarted member became
    // master and moved buckets to itself; the old master had heard it
    // only joining (its ready heartbeats were lost), so on that map it
    // still judged itself master, counted the new one failed (joining)
    // and gave the buckets back in a map the new master did not get:
    // both forwarded them. Only a ready member makes maps: its map now
    // shows it ready.
    let mut lab = Lab::new(cfg);
    lab.step(100);
    lab.crash(1);
    lab.step(100);
    let mut again = cfg(1);
    again.incarnation = 5_000;
    let t = lab.t;
    lab.cs.push(Coordinator::new(again, t).unwrap());
    lab.step(5);
    // 2 hears 1 joining, then none of its heartbeats; 1 gets no map
    // from 2.
    lab.cut = |from, to, name| {
        (from, to, name) == (1, 2, "heartbeat") || (from, to, name) == (2, 1, "map")
    };
    let t = lab.t;
    lab.node(1).handle_ready(t);
    let dual = |lab: &Lab| {
        (0..16).find(|&x| lab.cs.iter().filter(|c| c.forwarding().contains(x)).count() > 1)
    };
    for _ in 0..45 {
        lab.step(1);
        assert_eq!(dual(&lab), None, "two forwarders");
    }
    assert!(lab.owned(1) > 0, "1 made its map and gained buckets");
    lab.cut = |_, _, _| false;
    for _ in 0..100 {
        lab.step(1);
        assert_eq!(dual(&lab), None, "two forwarders");
    }
    assert_eq!(lab.owned(1) + lab.owned(2) + lab.owned(3), 16);
}

/// The `release_ack` in `c`'s next heartbeat to node 3.
fn release_ack_to_3(c: &mut Coordinator, t: Instant) -> u64 {
    let mut three = Codec::new(3, &[1, 2, 3], KEY, 0).unwrap();
    let mut buf = Vec::new();
    c.handle_timeout(t);
    let mut ack = None;
    while let Some(tx) = c.poll_transmit(t, &mut buf) {
        if tx.to == 3 {
            if let Ok(m) = three.decode(&buf) {
                if let Body::Heartbeat(h) = m.body {
                    ack = Some(h.release_ack);
                }
            }
        }
    }
    ack.expect("a heartbeat to 3")
}

#[test]
fn a_release_of_buckets_our_map_gives_to_another_member_is_not_acknowledged() {
    // Soak seed 199009 (9 members, lossy): a falsely dead owner released
    // a bucket under the master's map; the taker held another master's
    // map of that version, in which the bucket was not its own, so it
    // merged nothing but acknowledged the version: the owner evicted its
    // copies, and the flows were left only in the taker's cache of it
    // (70 lost). Such a release is no longer acknowledged.
    let t = Instant::now();
    let mut c = Coordinator::new(cfg(2), t).unwrap();
    c.handle_ready(t);
    let mut one = Codec::new(1, &[1, 2, 3], KEY, 0).unwrap();
    let mut out = Vec::new();
    one.encode(&map_from(1, 5), &mut out);
    c.handle_datagram(t, &out);
    let ones = c.map().unwrap().owned_by(1);
    assert!(!ones.is_empty());
    let mut three = Codec::new(3, &[1, 2, 3], KEY, 0).unwrap();
    let release = Body::Released {
        version: 5,
        buckets: ones,
    };
    three.encode(&release, &mut out);
    c.handle_datagram(t, &out);
    assert_eq!(release_ack_to_3(&mut c, t), 0);
    assert_eq!(c.counters().unexpected_releases, 1);
}

#[test]
fn a_release_is_not_acknowledged_while_another_of_its_version_is_awaited() {
    // Soak seed 1162009 (9 members, lossy): an owner moved two sets of
    // buckets to a revived member at one version, in two releases; the
    // first came before the map and was dropped, the second was taken
    // and acknowledged by version, so the owner evicted both sets while
    // the member still waited for the first (362 flows lost).
    let t = Instant::now();
    let mut c = Coordinator::new(cfg(2), t).unwrap();
    c.handle_ready(t);
    let table: Vec<MapNode> = (1..=3)
        .map(|node| MapNode {
            node,
            incarnation: 1000 + u64::from(node),
            eligible: true,
            dead: false,
            drained: false,
        })
        .collect();
    let m5 = plan(None, &[1, 2, 3], 1, Balance::Full, 16).unwrap();
    let x = m5.owned_by(3).iter().next().unwrap();
    let y = m5.owned_by(2).iter().next().unwrap();
    let m6 = m5.with_owners(&[(x, 2)]);
    let mut one = Codec::new(1, &[1, 2, 3], KEY, 0).unwrap();
    let mut three = Codec::new(3, &[1, 2, 3], KEY, 0).unwrap();
    let mut out = Vec::new();
    one.encode(
        &Body::Map(m5.stamped(5, 1, table.clone()).unwrap()),
        &mut out,
    );
    c.handle_datagram(t, &out);
    let mut t = t + Duration::from_millis(50);
    let run = |c: &mut Coordinator, t: Instant| {
        while let Some(a) = c.poll_action() {
            if let Action::Commit { token, .. } = a {
                c.handle_committed(t, token);
            }
        }
    };
    run(&mut c, t);
    assert!(c.forwarding().contains(y));
    one.encode(&Body::Map(m6.stamped(6, 1, table).unwrap()), &mut out);
    c.handle_datagram(t, &out);
    run(&mut c, t);
    assert!(!c.forwarding().contains(x), "2 waits for x from 3");
    // 3's release of y at version 6 (ours): still waiting for x, so no
    // acknowledgement.
    let single = |b: u32| BucketSet::from_iter_in(16, [b]);
    let release = |b: u32| Body::Released {
        version: 6,
        buckets: single(b),
    };
    three.encode(&release(y), &mut out);
    c.handle_datagram(t, &out);
    t += Duration::from_millis(100);
    assert_eq!(release_ack_to_3(&mut c, t), 0);
    three.encode(&release(x), &mut out);
    c.handle_datagram(t, &out);
    run(&mut c, t);
    assert!(c.forwarding().contains(x));
    t += Duration::from_millis(100);
    assert_eq!(release_ack_to_3(&mut c, t), 6);
}
