//! The uplink gate: alone, with hand-made actions, and behind real
//! coordinators (a primary-backup takeover, a drain).

use std::time::{Duration, Instant};

use ftfw_dataplane::buckets::BucketSet;

use super::{GateOutput, UplinkGate, UplinkOp, UplinkState, RETRY_AFTER};
use crate::cluster::{Action, Coordinator, CoordinatorConfig};

fn set(b: &[u32]) -> BucketSet {
    BucketSet::from_iter_in(16, b.iter().copied())
}

fn drain(g: &mut UplinkGate) -> Vec<GateOutput> {
    std::iter::from_fn(|| g.poll()).collect()
}

fn run_of(o: &GateOutput) -> Option<(u64, UplinkOp)> {
    match o {
        GateOutput::Run { token, op } => Some((*token, *op)),
        GateOutput::Act(_) => None,
    }
}

/// The one procedure among `out`, which must be `op`; its token.
fn expect_run(out: &[GateOutput], op: UplinkOp) -> u64 {
    let runs: Vec<_> = out.iter().filter_map(run_of).collect();
    assert_eq!(runs.len(), 1, "{out:?}");
    assert_eq!(runs[0].1, op, "{out:?}");
    runs[0].0
}

/// A gate whose start-up deactivation succeeded.
fn idle_gate(check: bool, now: Instant) -> UplinkGate {
    let mut g = UplinkGate::new(check, now);
    let t = expect_run(&drain(&mut g), UplinkOp::Deactivate);
    g.handle_done(now, t, true);
    assert_eq!(g.status().state, UplinkState::Down);
    assert!(drain(&mut g).is_empty());
    g
}

#[test]
fn a_node_without_buckets_brings_its_uplinks_down_at_start() {
    let now = Instant::now();
    let mut g = UplinkGate::new(false, now);
    let out = drain(&mut g);
    assert_eq!(out.len(), 1, "{out:?}");
    let t = expect_run(&out, UplinkOp::Deactivate);
    assert_eq!(g.status().state, UplinkState::GoingDown);
    assert!(!g.status().wanted_up);
    g.handle_done(now, t, true);
    let s = g.status();
    assert_eq!(
        (s.state, s.running, s.last_failure),
        (UplinkState::Down, None, None)
    );
    assert_eq!(s.counters.deactivations, 1);
    // Actions that forward nothing leave them down.
    g.push(now, Action::Forward(set(&[])));
    g.push(now, Action::Settled { version: 1 });
    let out = drain(&mut g);
    assert!(out.iter().all(|o| run_of(o).is_none()), "{out:?}");
    assert_eq!(out.len(), 2);
    assert_eq!(g.status().state, UplinkState::Down);
}

#[test]
fn gaining_a_bucket_activates_and_checks_the_uplinks_before_forwarding() {
    let now = Instant::now();
    let mut g = idle_gate(true, now);
    let commit = Action::Commit {
        token: 1,
        from: Some(1),
        buckets: set(&[3, 4]),
    };
    g.push(now, commit.clone());
    g.push(now, Action::Forward(set(&[3, 4])));
    let out = drain(&mut g);
    // The commit goes out; the forward waits for the activation.
    assert_eq!(out[0], GateOutput::Act(commit));
    let t = expect_run(&out, UplinkOp::Activate);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(g.status().waiting_buckets, 2);
    g.handle_done(now, t, true);
    // Then the check, then the forward.
    let out = drain(&mut g);
    let t = expect_run(&out, UplinkOp::Check);
    assert_eq!(out.len(), 1, "{out:?}");
    g.handle_done(now, t, true);
    assert_eq!(
        drain(&mut g),
        vec![GateOutput::Act(Action::Forward(set(&[3, 4])))]
    );
    let s = g.status();
    assert_eq!((s.state, s.waiting_buckets), (UplinkState::Up, 0));
    assert_eq!(
        (
            s.counters.activations,
            s.counters.checks,
            s.counters.held_forwards
        ),
        (1, 1, 1)
    );
    // More buckets while forwarding: no procedure, no wait.
    g.push(now, Action::Forward(set(&[3, 4, 5])));
    assert_eq!(
        drain(&mut g),
        vec![GateOutput::Act(Action::Forward(set(&[3, 4, 5])))]
    );
}

#[test]
fn a_newer_forward_replaces_the_held_one() {
    let now = Instant::now();
    let mut g = idle_gate(false, now);
    g.push(now, Action::Forward(set(&[1])));
    let t = expect_run(&drain(&mut g), UplinkOp::Activate);
    g.push(now, Action::Forward(set(&[1, 2])));
    assert!(drain(&mut g).is_empty());
    g.handle_done(now, t, true);
    assert_eq!(
        drain(&mut g),
        vec![GateOutput::Act(Action::Forward(set(&[1, 2])))]
    );
    assert_eq!(g.counters().held_forwards, 1);
}

#[test]
fn a_map_giving_buckets_raises_the_uplinks_before_the_forward_comes() {
    let now = Instant::now();
    let mut g = idle_gate(false, now);
    g.set_assigned(now, true);
    let t = expect_run(&drain(&mut g), UplinkOp::Activate);
    g.handle_done(now, t, true);
    assert!(drain(&mut g).is_empty());
    assert_eq!(g.status().state, UplinkState::Up);
    // The forward then goes out at once.
    g.push(now, Action::Forward(set(&[7])));
    assert_eq!(
        drain(&mut g),
        vec![GateOutput::Act(Action::Forward(set(&[7])))]
    );
    assert_eq!(g.counters().held_forwards, 0);
    // The map takes them away again: they stay up while forwarding.
    g.set_assigned(now, false);
    assert!(drain(&mut g).is_empty());
}

#[test]
fn losing_the_last_bucket_lowers_the_uplinks_after_forwarding_stops() {
    let now = Instant::now();
    let mut g = idle_gate(false, now);
    g.push(now, Action::Forward(set(&[1, 2])));
    let t = expect_run(&drain(&mut g), UplinkOp::Activate);
    g.handle_done(now, t, true);
    drain(&mut g);
    // One bucket less: still forwarding, nothing run.
    g.push(now, Action::Forward(set(&[2])));
    assert_eq!(
        drain(&mut g),
        vec![GateOutput::Act(Action::Forward(set(&[2])))]
    );
    // The last one: the forward of nothing first, then the deactivation.
    let flush = Action::Flush {
        token: 9,
        to: 3,
        buckets: set(&[2]),
    };
    g.push(now, Action::Forward(set(&[])));
    g.push(now, flush.clone());
    let out = drain(&mut g);
    assert_eq!(out[0], GateOutput::Act(Action::Forward(set(&[]))));
    let t = expect_run(&out, UplinkOp::Deactivate);
    assert!(matches!(out[1], GateOutput::Run { .. }), "{out:?}");
    assert_eq!(out[2], GateOutput::Act(flush));
    g.handle_done(now, t, true);
    assert_eq!(g.status().state, UplinkState::Down);
    assert_eq!(g.counters().deactivations, 2);
}

#[test]
fn a_failed_activation_is_counted_forwards_anyway_and_is_retried() {
    let now = Instant::now();
    let mut g = idle_gate(false, now);
    g.push(now, Action::Forward(set(&[5])));
    let t = expect_run(&drain(&mut g), UplinkOp::Activate);
    g.handle_done(now, t, false);
    // The flows of the bucket are ours alone: forwarded anyway.
    assert_eq!(
        drain(&mut g),
        vec![GateOutput::Act(Action::Forward(set(&[5])))]
    );
    let s = g.status();
    assert_eq!(s.state, UplinkState::Failed);
    assert_eq!(s.last_failure, Some(UplinkOp::Activate));
    assert_eq!(
        (
            s.counters.activate_failures,
            s.counters.forwarded_despite_failure
        ),
        (1, 1)
    );
    // Retried after RETRY_AFTER, not before.
    assert_eq!(g.poll_timeout(), Some(now + RETRY_AFTER));
    g.handle_timeout(now + RETRY_AFTER / 2);
    assert!(drain(&mut g).is_empty());
    let later = now + RETRY_AFTER;
    g.handle_timeout(later);
    let t = expect_run(&drain(&mut g), UplinkOp::Activate);
    assert_eq!(g.poll_timeout(), None);
    g.handle_done(later, t, true);
    let s = g.status();
    assert_eq!((s.state, s.last_failure), (UplinkState::Up, None));
    assert_eq!(s.counters.activations, 2);
}

#[test]
fn a_failed_check_is_counted_and_the_bucket_still_forwarded() {
    let now = Instant::now();
    let mut g = idle_gate(true, now);
    g.push(now, Action::Forward(set(&[5])));
    let t = expect_run(&drain(&mut g), UplinkOp::Activate);
    g.handle_done(now, t, true);
    let t = expect_run(&drain(&mut g), UplinkOp::Check);
    g.handle_done(now, t, false);
    assert_eq!(
        drain(&mut g),
        vec![GateOutput::Act(Action::Forward(set(&[5])))]
    );
    let s = g.status();
    assert_eq!(
        (s.state, s.last_failure),
        (UplinkState::Failed, Some(UplinkOp::Check))
    );
    assert_eq!(
        (s.counters.check_failures, s.counters.activate_failures),
        (1, 0)
    );
    // The retry activates and checks again.
    g.handle_timeout(now + RETRY_AFTER);
    let t = expect_run(&drain(&mut g), UplinkOp::Activate);
    g.handle_done(now + RETRY_AFTER, t, true);
    let t = expect_run(&drain(&mut g), UplinkOp::Check);
    g.handle_done(now + RETRY_AFTER, t, true);
    assert_eq!(g.status().state, UplinkState::Up);
}

#[test]
fn a_failed_deactivation_is_counted_and_retried() {
    let now = Instant::now();
    let mut g = UplinkGate::new(false, now);
    let t = expect_run(&drain(&mut g), UplinkOp::Deactivate);
    g.handle_done(now, t, false);
    let s = g.status();
    assert_eq!(
        (s.state, s.last_failure),
        (UplinkState::Failed, Some(UplinkOp::Deactivate))
    );
    assert_eq!(s.counters.deactivate_failures, 1);
    // A stale report changes nothing.
    g.handle_done(now, t, true);
    assert_eq!(g.status().state, UplinkState::Failed);
    g.handle_timeout(now + RETRY_AFTER);
    let t = expect_run(&drain(&mut g), UplinkOp::Deactivate);
    g.handle_done(now + RETRY_AFTER, t, true);
    assert_eq!(g.status().state, UplinkState::Down);
    // Gaining buckets after a failed deactivation does not wait for its
    // retry: the activation starts at once.
    let mut g = UplinkGate::new(false, now);
    let t = expect_run(&drain(&mut g), UplinkOp::Deactivate);
    g.handle_done(now, t, false);
    g.push(now, Action::Forward(set(&[1])));
    let t = expect_run(&drain(&mut g), UplinkOp::Activate);
    g.handle_done(now, t, true);
    assert_eq!(
        drain(&mut g),
        vec![GateOutput::Act(Action::Forward(set(&[1])))]
    );
}

#[test]
fn a_bucket_lost_while_the_uplinks_come_up_takes_them_down_again() {
    let now = Instant::now();
    let mut g = idle_gate(false, now);
    g.push(now, Action::Forward(set(&[1])));
    let t = expect_run(&drain(&mut g), UplinkOp::Activate);
    // A newer map moves it away before it was forwarded.
    g.push(now, Action::Forward(set(&[])));
    assert_eq!(
        drain(&mut g),
        vec![GateOutput::Act(Action::Forward(set(&[])))]
    );
    assert_eq!(g.status().waiting_buckets, 0);
    g.handle_done(now, t, true);
    // Nothing held is let out; the uplinks go down again.
    let out = drain(&mut g);
    assert_eq!(out.len(), 1, "{out:?}");
    expect_run(&out, UplinkOp::Deactivate);
}

// ---- behind real coordinators ----

fn cfg(node: u32, nodes: &[u32], primary_backup: bool) -> CoordinatorConfig {
    crate::cluster::tests::cfg_of(node, nodes, primary_backup)
}

/// What a driver did, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Done {
    Forward(u32),
    Ran(UplinkOp),
}

/// A member: its coordinator, its gate, what it did.
struct Member {
    c: Coordinator,
    g: UplinkGate,
    log: Vec<Done>,
    alive: bool,
}

impl Member {
    fn new(node: u32, nodes: &[u32], pb: bool, t: Instant) -> Member {
        Member {
            c: Coordinator::new(cfg(node, nodes, pb), t).unwrap(),
            g: UplinkGate::new(false, t),
            log: Vec::new(),
            alive: true,
        }
    }

    /// The driver's loop: actions through the gate, procedures succeed at
    /// once, until nothing is left.
    fn drive(&mut self, t: Instant) {
        let me = self.c.node();
        let assigned = self.c.map().is_some_and(|m| m.owned_by(me).count() > 0);
        self.g.set_assigned(t, assigned);
        self.g.handle_timeout(t);
        loop {
            let mut busy = false;
            while let Some(a) = self.c.poll_action() {
                busy = true;
                self.g.push(t, a);
            }
            while let Some(o) = self.g.poll() {
                busy = true;
                match o {
                    GateOutput::Act(Action::Forward(s)) => self.log.push(Done::Forward(s.count())),
                    GateOutput::Act(Action::Flush { token, .. }) => self.c.handle_flushed(t, token),
                    GateOutput::Act(Action::Commit { token, .. }) => {
                        self.c.handle_committed(t, token)
                    }
                    GateOutput::Act(_) => {}
                    GateOutput::Run { token, op } => {
                        self.log.push(Done::Ran(op));
                        self.g.handle_done(t, token, true);
                    }
                }
            }
            if !busy {
                break;
            }
        }
    }
}

fn run(ms: &mut [Member], t: &mut Instant, steps: usize) {
    let mut buf = Vec::new();
    for _ in 0..steps {
        *t += Duration::from_millis(10);
        let mut wire = Vec::new();
        for m in ms.iter_mut().filter(|m| m.alive) {
            m.c.handle_timeout(*t);
            while let Some(tx) = m.c.poll_transmit(*t, &mut buf) {
                wire.push((tx.to, buf.clone()));
            }
            m.drive(*t);
        }
        for (to, bytes) in wire {
            if let Some(m) = ms.iter_mut().find(|m| m.alive && m.c.node() == to) {
                m.c.handle_datagram(*t, &bytes);
                m.drive(*t);
            }
        }
    }
}

/// Every forward of some buckets comes after an activation with no
/// deactivation between; every deactivation after a forward of nothing.
fn check_order(log: &[Done]) {
    let mut up = false;
    let mut forwarding = false;
    for (i, d) in log.iter().enumerate() {
        match d {
            Done::Ran(UplinkOp::Activate | UplinkOp::Check) => up = true,
            Done::Ran(UplinkOp::Deactivate) => {
                assert!(!forwarding, "deactivated while forwarding at {i}: {log:?}");
                up = false;
            }
            Done::Forward(n) => {
                forwarding = *n > 0;
                assert!(
                    !forwarding || up,
                    "forwarded with uplinks down at {i}: {log:?}"
                );
            }
        }
    }
}

#[test]
fn a_primary_backup_backup_keeps_its_uplinks_down_until_it_takes_over() {
    let mut t = Instant::now();
    let nodes = [1, 2];
    let mut ms: Vec<Member> = nodes
        .iter()
        .map(|&n| Member::new(n, &nodes, true, t))
        .collect();
    for m in &mut ms {
        m.c.handle_ready(t);
    }
    run(&mut ms, &mut t, 100);
    let owned: Vec<u32> = ms.iter().map(|m| m.c.forwarding().count()).collect();
    assert_eq!(owned, [16, 0]);
    assert_eq!(ms[0].g.status().state, UplinkState::Up);
    assert_eq!(ms[1].g.status().state, UplinkState::Down);
    assert_eq!(ms[1].log, [Done::Ran(UplinkOp::Deactivate)]);
    // The primary crashes: the backup activates, then forwards.
    ms[0].alive = false;
    run(&mut ms, &mut t, 100);
    assert_eq!(ms[1].c.forwarding().count(), 16);
    assert_eq!(ms[1].g.status().state, UplinkState::Up);
    assert_eq!(
        ms[1].log,
        [
            Done::Ran(UplinkOp::Deactivate),
            Done::Ran(UplinkOp::Activate),
            Done::Forward(16)
        ]
    );
    for m in &ms {
        check_order(&m.log);
    }
}

#[test]
fn a_drained_member_lowers_its_uplinks_after_its_last_bucket_left() {
    let mut t = Instant::now();
    let nodes = [1, 2, 3];
    let mut ms: Vec<Member> = nodes
        .iter()
        .map(|&n| Member::new(n, &nodes, false, t))
        .collect();
    for m in &mut ms {
        m.c.handle_ready(t);
    }
    run(&mut ms, &mut t, 100);
    assert!(ms.iter().all(|m| m.c.forwarding().count() > 0));
    assert!(ms.iter().all(|m| m.g.status().state == UplinkState::Up));
    ms[0].c.drain(t, 3).unwrap();
    run(&mut ms, &mut t, 100);
    assert_eq!(ms[2].c.forwarding().count(), 0);
    assert_eq!(ms[2].g.status().state, UplinkState::Down);
    assert_eq!(ms[2].log.last(), Some(&Done::Ran(UplinkOp::Deactivate)));
    assert_eq!(ms[2].log[ms[2].log.len() - 2], Done::Forward(0));
    // Undrained, rebalanced: up again before it forwards.
    ms[0].c.undrain(t, 3).unwrap();
    run(&mut ms, &mut t, 50);
    ms[0].c.rebalance(t).unwrap();
    run(&mut ms, &mut t, 100);
    assert!(ms[2].c.forwarding().count() > 0);
    assert_eq!(ms[2].g.status().state, UplinkState::Up);
    for m in &ms {
        check_order(&m.log);
    }
}
