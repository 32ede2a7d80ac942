//! Election simulator: 2 to 5 nodes in virtual time with crashes, restarts,
//! partitions, cut links, failing services and message loss (harness in
//! `election_sim/harness.rs`).
//!
//! Checked: once stable (no faults for a settle period) at most one primary,
//! and exactly one, followed by every connected node, when a healthy node
//! exists; a crashed primary is replaced within
//! [`ElectionConfig::failover_bound`] by the best backup; and the SNE
//! scenarios (primary fails, a backup reboots, a backup stays dead, an old
//! primary returns, split brain).
//!
//! A failure prints `seed=N`; replay with
//! `ELECTION_SEED=N cargo test -p ftfw-control --test election_sim -- <test>`;
//! soak with `ELECTION_SEEDS=2000 cargo test --release ...`.

#[path = "election_sim/harness.rs"]
mod harness;

use std::time::Duration;

use ftfw_control::election::{
    ElectionConfig, Event, FaultSub, NodeId, RankKey, Role, ServiceSub, State,
};
use harness::{seeds, Sim};

const MS: fn(u64) -> Duration = Duration::from_millis;

fn default_tune(_: &mut ElectionConfig) {}

fn fast_tune(c: &mut ElectionConfig) {
    c.check_interval = MS(50);
    c.check_interval_step = MS(25);
    c.self_check_interval = MS(50);
    c.reply_timeout = MS(25);
    c.deny_timeout = MS(25);
    c.tmax.downlink_check = MS(4);
    c.tmax.uplink_check = MS(4);
    c.tmax.remote_svc_check = MS(4);
    c.tmax.local_svc_check = MS(4);
    c.tmax.action = MS(8);
    c.reqcheck_timeout = c.min_reqcheck_timeout() * 3 / 2;
}

/// Boot every node and let the cluster settle.
fn started(seed: u64, priorities: &[u8], tune: impl Fn(&mut ElectionConfig)) -> Sim {
    let mut sim = Sim::new(seed, priorities, tune);
    for i in 0..priorities.len() {
        sim.boot(i);
    }
    sim.run_for(MS(3000));
    sim
}

fn rank_of(sim: &Sim, i: usize) -> RankKey {
    let e = sim.election(i);
    RankKey {
        synced: e.freshness().synced,
        priority: sim.nodes[i].priority,
        seq: e.freshness().seq,
        node: sim.nodes[i].id,
    }
}

#[test]
fn bootstrap_elects_highest_priority_and_all_follow() {
    for seed in seeds(100, 20) {
        let mut rng = harness::Rng::new(seed);
        let n = 2 + rng.usize(4);
        let prios: Vec<u8> = (0..n).map(|_| [50, 100, 150][rng.usize(3)]).collect();
        let mut sim = started(seed, &prios, default_tune);
        sim.check_stable(MS(1000));
        let p = sim.sole_primary();
        let best = (0..n)
            .max_by_key(|&i| (prios[i], std::cmp::Reverse(i)))
            .unwrap_or(0);
        if p != best {
            sim.fail(&format!("bootstrap elected {p}, expected {best}"));
        }
    }
}

#[test]
fn crashed_primary_is_replaced_within_bound_by_best_backup() {
    for (k, seed) in seeds(1000, 60).into_iter().enumerate() {
        let mut rng = harness::Rng::new(seed);
        let n = 2 + rng.usize(4);
        let prios: Vec<u8> = (0..n).map(|_| [100, 150][rng.usize(2)]).collect();
        let fast = k % 2 == 1;
        let mut sim = if fast {
            started(seed, &prios, fast_tune)
        } else {
            started(seed, &prios, default_tune)
        };
        // Every backup must have finished its resync (issue 4: only synced
        // backups may win).
        sim.run_for(MS(500));
        let offset = rng.below(400);
        sim.run_for(MS(offset));
        let p = sim.sole_primary();
        let best = (0..n)
            .filter(|&i| i != p)
            .max_by_key(|&i| rank_of(&sim, i))
            .unwrap_or(0);
        let bound = sim.election(p).config().failover_bound();
        let crash_at = sim.now;
        sim.crash(p);
        sim.run_for(MS(1500));
        let Some((t, winner)) = sim.first_active_after(crash_at, p) else {
            sim.fail("nobody replaced the crashed primary");
        };
        // Four one-way network delays of at most 2 ms.
        let took = t.duration_since(crash_at);
        if took > bound + MS(8) {
            sim.fail(&format!(
                "replaced after {took:?}, bound {bound:?} (fast={fast})"
            ));
        }
        if winner != best {
            sim.fail(&format!(
                "node index {winner} won, best backup was {best}: {:?} vs {:?}",
                rank_of(&sim, winner),
                rank_of(&sim, best)
            ));
        }
        sim.check_stable(MS(500));
    }
}

#[test]
fn random_faults_then_stable_has_exactly_one_primary() {
    for seed in seeds(5000, 60) {
        let mut rng = harness::Rng::new(seed);
        let n = 2 + rng.usize(4);
        let prios: Vec<u8> = (0..n).map(|_| [50, 100, 150][rng.usize(3)]).collect();
        let mut sim = started(seed, &prios, default_tune);
        sim.loss_pm = u32::try_from(rng.below(200)).unwrap_or(0);
        // Fault phase.
        let end = sim.now + MS(6000);
        while sim.now < end {
            let wait = MS(150 + rng.below(600));
            sim.run_for(wait);
            let i = rng.usize(n);
            match rng.below(9) {
                0 | 1 => {
                    // Crash a node, preferably the primary.
                    let target = match sim.primaries().first() {
                        Some(&p) if rng.chance(600) => p,
                        _ => i,
                    };
                    if sim.alive(target) {
                        sim.crash(target);
                    }
                }
                2 => {
                    if !sim.alive(i) {
                        sim.boot(i);
                    }
                }
                3 => {
                    sim.nodes[i].links_ok = !sim.nodes[i].links_ok;
                    let (id, ok) = (sim.nodes[i].id, sim.nodes[i].links_ok);
                    sim.log(format!("{id} links_ok={ok}"));
                }
                4 => {
                    for j in 0..n {
                        sim.nodes[j].group = u32::from(rng.chance(500));
                    }
                    sim.log("partition".into());
                }
                5 => {
                    for j in 0..n {
                        sim.nodes[j].group = 0;
                    }
                    sim.log("partition healed".into());
                }
                6 => sim.loss_pm = u32::try_from(rng.below(300)).unwrap_or(0),
                7 => {
                    sim.nodes[i].service_ok = !sim.nodes[i].service_ok;
                    let (id, ok) = (sim.nodes[i].id, sim.nodes[i].service_ok);
                    sim.log(format!("{id} service_ok={ok}"));
                }
                _ => {
                    if !sim.alive(i) {
                        sim.boot(i);
                    } else {
                        sim.crash(i);
                        sim.boot(i);
                    }
                }
            }
        }
        // Heal everything; some nodes may stay crashed, at least one lives.
        sim.loss_pm = 0;
        for j in 0..n {
            sim.nodes[j].links_ok = true;
            sim.nodes[j].service_ok = true;
            sim.nodes[j].group = 0;
        }
        if (0..n).all(|j| !sim.alive(j)) {
            sim.boot(rng.usize(n));
        }
        sim.log("healed; settling".into());
        sim.run_for(MS(5000));
        sim.check_stable(MS(2000));
    }
}

#[test]
fn primary_fails_freshest_of_equal_priority_backups_wins() {
    for seed in seeds(200, 10) {
        let mut sim = started(seed, &[200, 100, 100], default_tune);
        assert_eq!(sim.sole_primary(), 0);
        sim.run_for(MS(500));
        // Node 2 keeps applying updates, node 1 stops 200 ms before the crash.
        sim.nodes[1].sync_blocked = true;
        sim.run_for(MS(200));
        if rank_of(&sim, 2) <= rank_of(&sim, 1) {
            sim.fail("setup: node 3 should be fresher");
        }
        let t = sim.now;
        sim.crash(0);
        sim.run_for(MS(1500));
        let (_, w) = sim
            .first_active_after(t, 0)
            .unwrap_or_else(|| sim.fail("no takeover"));
        if w != 2 {
            sim.fail(&format!(
                "expected the fresher node 3 to win, got index {w}"
            ));
        }
        sim.check_stable(MS(500));
    }
}

#[test]
fn rebooted_backup_must_resync_before_it_may_become_primary() {
    for seed in seeds(300, 8) {
        let mut sim = started(seed, &[200, 150, 100], default_tune);
        assert_eq!(sim.sole_primary(), 0);
        // Node 2 (priority 150) reboots; its resync is held back.
        sim.crash(1);
        sim.run_for(MS(300));
        sim.nodes[1].resync_blocked = true;
        sim.boot(1);
        sim.run_for(MS(1500));
        let asked = sim
            .events(1)
            .iter()
            .any(|(_, e)| matches!(e, Event::ResyncNeeded { master, .. } if *master == NodeId(1)));
        if !asked || sim.election(1).freshness().synced {
            sim.fail("rebooted backup did not ask for a resync");
        }
        // The primary fails: the synced, lower-priority node 3 wins.
        let t = sim.now;
        sim.crash(0);
        sim.run_for(MS(1000));
        let (_, w) = sim
            .first_active_after(t, 0)
            .unwrap_or_else(|| sim.fail("no takeover"));
        if w != 2 {
            sim.fail(&format!("unsynced node took over (index {w})"));
        }
        sim.check_stable(MS(500));
        // With node 3 gone too, the unsynced node takes over only as a last
        // resort, after holding.
        let t = sim.now;
        sim.crash(2);
        sim.run_for(MS(3000));
        let (at, w) = sim
            .first_active_after(t, 2)
            .unwrap_or_else(|| sim.fail("no takeover"));
        let hold = sim
            .election(1)
            .config()
            .unsynced_takeover
            .unwrap_or_default();
        if w != 1 || at.duration_since(t) < hold {
            sim.fail(&format!(
                "last-resort takeover by {w} after {:?}, hold {hold:?}",
                at.duration_since(t)
            ));
        }
    }
}

#[test]
fn unsynced_node_never_takes_over_when_configured() {
    for seed in seeds(350, 4) {
        let mut sim = started(seed, &[200, 150], |c| c.unsynced_takeover = None);
        sim.crash(1);
        sim.run_for(MS(300));
        sim.nodes[1].resync_blocked = true;
        sim.boot(1);
        sim.run_for(MS(1000));
        sim.crash(0);
        sim.run_checking(MS(5000), |s| {
            if !s.primaries().is_empty() {
                s.fail("an unsynced node took over");
            }
        });
        assert_eq!(sim.election(1).role(), Role::Backup);
    }
}

#[test]
fn backup_that_stays_dead_is_marked_and_reported() {
    for seed in seeds(400, 6) {
        let mut sim = started(seed, &[200, 150, 100], default_tune);
        let p = sim.sole_primary();
        sim.crash(2);
        let reqcheck = sim.election(p).config().reqcheck_timeout;
        sim.run_for(reqcheck + MS(600));
        let st = sim.election(p).status(sim.now);
        let peer = st
            .peers
            .iter()
            .find(|x| x.node == NodeId(3))
            .unwrap_or_else(|| sim.fail("dead backup not listed"));
        if !peer.dead || st.counters.peers_marked_dead != 1 {
            sim.fail(&format!("dead backup not marked: {st:?}"));
        }
        let reported = sim
            .events(p)
            .iter()
            .any(|(_, e)| *e == Event::PeerDead { node: NodeId(3) });
        if !reported {
            sim.fail("no PeerDead event");
        }
        // The other backup learns the mark from the master's table.
        let seen = sim
            .election(1)
            .table()
            .get(NodeId(3))
            .is_some_and(|e| e.dead);
        if !seen {
            sim.fail("backup's table does not show the dead mark");
        }
        let json = serde_json::to_string(&st).unwrap_or_default();
        assert!(json.contains("\"dead\":true"), "{json}");
        sim.check_stable(MS(500));
        // It comes back: alive again, as a backup.
        sim.boot(2);
        sim.run_for(MS(2000));
        let st = sim.election(p).status(sim.now);
        if st.peers.iter().any(|x| x.dead) {
            sim.fail("restarted backup still marked dead");
        }
        sim.check_stable(MS(500));
    }
}

#[test]
fn old_primary_returns_without_preemption_by_default() {
    for seed in seeds(500, 6) {
        let mut sim = started(seed, &[200, 100], default_tune);
        assert_eq!(sim.sole_primary(), 0);
        sim.crash(0);
        sim.run_for(MS(1500));
        assert_eq!(sim.sole_primary(), 1);
        sim.boot(0);
        sim.run_checking(MS(3000), |s| {
            if s.primaries() != vec![1] {
                s.fail("the returning old primary disturbed the new one");
            }
        });
        assert_eq!(sim.election(0).role(), Role::Backup);
        assert!(sim.election(0).freshness().synced);
        sim.check_stable(MS(500));
    }
}

#[test]
fn old_primary_preempts_only_after_its_resync() {
    for seed in seeds(600, 6) {
        let mut sim = started(seed, &[200, 100], |c| c.preempt = true);
        assert_eq!(sim.sole_primary(), 0);
        sim.crash(0);
        sim.run_for(MS(1500));
        assert_eq!(sim.sole_primary(), 1);
        sim.nodes[0].resync_blocked = true;
        sim.boot(0);
        sim.run_checking(MS(2000), |s| {
            if s.primaries() != vec![1] {
                s.fail("preempted before the resync completed");
            }
        });
        sim.nodes[0].resync_blocked = false;
        sim.run_for(MS(1500));
        sim.check_stable(MS(500));
        if sim.sole_primary() != 0 {
            sim.fail("synced higher-priority node did not preempt");
        }
    }
}

#[test]
fn split_brain_cut_node_never_takes_over_and_one_primary_after_heal() {
    for seed in seeds(700, 8) {
        let mut sim = started(seed, &[200, 150, 100], default_tune);
        assert_eq!(sim.sole_primary(), 0);
        // Node 2 loses its links: it must not take over.
        sim.nodes[1].links_ok = false;
        sim.run_checking(MS(2000), |s| {
            if s.nodes[1].e.as_ref().is_some_and(|e| e.is_primary()) || s.primaries() != vec![0] {
                s.fail("a node failing its link checks took over");
            }
        });
        if !matches!(
            sim.election(1).state(),
            State::Fault(FaultSub::Wait | FaultSub::Recheck)
        ) {
            sim.fail("cut node is not in fault state");
        }
        sim.nodes[1].links_ok = true;
        sim.run_for(MS(3000));
        sim.check_stable(MS(1000));
        assert_eq!(sim.sole_primary(), 0);
    }
}

#[test]
fn split_brain_partition_with_links_heals_to_one_primary() {
    for seed in seeds(800, 8) {
        let mut sim = started(seed, &[200, 150, 100], default_tune);
        assert_eq!(sim.sole_primary(), 0);
        // {1} | {2, 3}: both sides see working links (dedicated link lost).
        sim.nodes[1].group = 1;
        sim.nodes[2].group = 1;
        sim.run_for(MS(2000));
        if sim.primaries().len() != 2 {
            sim.fail("each side of the partition should elect a primary");
        }
        sim.nodes[1].group = 0;
        sim.nodes[2].group = 0;
        sim.run_for(MS(2000));
        sim.check_stable(MS(1000));
        // Priority 200 beats 150.
        assert_eq!(sim.sole_primary(), 0);
    }
}

#[test]
fn primary_service_failure_hands_over() {
    for seed in seeds(900, 6) {
        let mut sim = started(seed, &[200, 100], default_tune);
        assert_eq!(sim.sole_primary(), 0);
        let t = sim.now;
        sim.nodes[0].service_ok = false;
        sim.run_for(MS(1500));
        let (_, w) = sim
            .first_active_after(t, 0)
            .unwrap_or_else(|| sim.fail("no takeover"));
        assert_eq!(w, 1);
        if sim.primaries() != vec![1] {
            sim.fail("old primary with failed service still primary");
        }
        let left = sim.transitions.iter().any(|(at, i, s)| {
            *at >= t && *i == 0 && matches!(s, State::Service(ServiceSub::Leave(..)))
        });
        assert!(left, "the failed primary did not leave service");
    }
}
