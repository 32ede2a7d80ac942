//! The failure detector (`coordinator/detector.rs`) in virtual time, with
//! the test acting as each member's driver in the order the real one uses
//! (datagrams first, then timers): a member that stops for good is
//! declared dead within its dead-after time; a member paused again and
//! again for longer than `dead_after` stops being declared dead once its
//! dead-after time has grown; a coordinator that was itself not run does
//! not declare its live peers dead.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::coordinator::{Action, Coordinator, CoordinatorConfig};

const HEARTBEAT: Duration = Duration::from_millis(100);
const DEAD_AFTER: Duration = Duration::from_millis(350);
const DEAD_AFTER_MAX: Duration = Duration::from_millis(2000);
const RELAX: Duration = Duration::from_secs(5);
const STEP: Duration = Duration::from_millis(10);

fn cfg(node: u32, incarnation: u64) -> CoordinatorConfig {
    CoordinatorConfig {
        node,
        nodes: vec![1, 2, 3],
        buckets: 16,
        backups: 1,
        heartbeat: HEARTBEAT,
        dead_after: DEAD_AFTER,
        dead_after_max: DEAD_AFTER_MAX,
        dead_after_relax: RELAX,
        auto_rebalance_on_join: true,
        key: b"0123456789abcdef-cluster-key".to_vec(),
        primary_backup: false,
        incarnation,
    }
}

/// Three members on a perfect network. A paused member runs nothing;
/// what is sent to it waits in its socket until it runs again.
struct Net {
    t: Instant,
    cs: BTreeMap<u32, Coordinator>,
    paused: BTreeSet<u32>,
    socket: BTreeMap<u32, Vec<Vec<u8>>>,
}

impl Net {
    fn new() -> Net {
        let t = Instant::now();
        let mut cs = BTreeMap::new();
        for n in 1..=3 {
            let mut c = Coordinator::new(cfg(n, 1000 + u64::from(n)), t).unwrap();
            c.handle_ready(t);
            cs.insert(n, c);
        }
        let mut net = Net {
            t,
            cs,
            paused: BTreeSet::new(),
            socket: BTreeMap::new(),
        };
        net.run(Duration::from_secs(2));
        assert_eq!(net.owned_total(), 16, "the cluster formed");
        assert!(net.cs.values().all(|c| c.forwarding().count() > 0));
        net
    }

    /// One driver poll of member `n`: its socket, then its timers, then
    /// its actions (done at once) and datagrams out.
    fn poll(&mut self, n: u32) {
        let t = self.t;
        let inbox = self.socket.remove(&n).unwrap_or_default();
        let Some(c) = self.cs.get_mut(&n) else { return };
        for bytes in &inbox {
            c.handle_datagram(t, bytes);
        }
        c.handle_timeout(t);
        while let Some(a) = c.poll_action() {
            match a {
                Action::Flush { token, .. } => c.handle_flushed(t, token),
                Action::Commit { token, .. } => c.handle_committed(t, token),
                _ => {}
            }
        }
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(tx) = c.poll_transmit(t, &mut buf) {
            out.push((tx.to, buf.clone()));
        }
        for (to, bytes) in out {
            // A crashed member's socket is gone.
            if self.cs.contains_key(&to) {
                self.socket.entry(to).or_default().push(bytes);
            }
        }
    }

    fn step(&mut self) {
        self.t += STEP;
        let running: Vec<u32> = self
            .cs
            .keys()
            .copied()
            .filter(|n| !self.paused.contains(n))
            .collect();
        for n in running {
            self.poll(n);
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.t + d;
        while self.t < end {
            self.step();
        }
    }

    fn c(&self, n: u32) -> &Coordinator {
        &self.cs[&n]
    }

    /// Buckets forwarded by the running members (each once, if stable).
    fn owned_total(&self) -> u32 {
        self.cs
            .iter()
            .filter(|(n, _)| !self.paused.contains(n))
            .map(|(_, c)| c.forwarding().count())
            .sum()
    }

    fn alive_in_view(&self, viewer: u32, node: u32) -> bool {
        self.c(viewer)
            .status(self.t)
            .nodes
            .iter()
            .any(|s| s.node == node && s.alive)
    }

    /// Maps the master (node 1) has made so far.
    fn maps_made(&self) -> u64 {
        self.c(1).counters().maps_made
    }

    /// Node 1's map lists `node` dead.
    fn map_lists_dead(&self, node: u32) -> bool {
        self.c(1)
            .map()
            .and_then(|m| m.node(node))
            .is_some_and(|e| e.dead)
    }
}

/// Runs until the members still there forward all 16 buckets between
/// them, or `limit` passes; the time it took.
fn time_to_cover(net: &mut Net, limit: Duration) -> Option<Duration> {
    let start = net.t;
    while net.t - start <= limit {
        net.step();
        if net.owned_total() == 16 && net.cs.values().all(|c| c.map() == net.c(1).map()) {
            return Some(net.t - start);
        }
    }
    None
}

#[test]
fn a_member_that_stops_for_good_is_declared_dead_within_dead_after() {
    let mut net = Net::new();
    assert_eq!(net.c(1).dead_after_of(3), Some(DEAD_AFTER));
    let maps = net.maps_made();
    net.cs.remove(&3);
    // Death seen at dead_after after its last heartbeat (at most one
    // heartbeat before the crash), the new map and the commit at once.
    let took = time_to_cover(&mut net, Duration::from_secs(3)).expect("buckets taken over");
    assert!(took <= DEAD_AFTER + STEP, "took {took:?}");
    assert!(!net.alive_in_view(1, 3) && !net.alive_in_view(2, 3));
    assert!(net.map_lists_dead(3));
    assert_eq!(net.maps_made(), maps + 1);
    // It restarts (a new incarnation): that is no false death.
    let mut c = Coordinator::new(cfg(3, 5000), net.t).unwrap();
    c.handle_ready(net.t);
    net.cs.insert(3, c);
    net.run(Duration::from_secs(2));
    assert!(net.alive_in_view(1, 3));
    assert!(net.c(3).forwarding().count() > 0, "it got its share back");
    for n in 1..=2 {
        assert_eq!(net.c(n).counters().false_deaths, 0);
        assert_eq!(net.c(n).dead_after_of(3), Some(DEAD_AFTER));
    }
}

#[test]
fn a_member_paused_again_and_again_stops_being_declared_dead() {
    let mut net = Net::new();
    let pause = Duration::from_millis(600);
    let mut maps_per_pause = Vec::new();
    for _ in 0..6 {
        let before = net.maps_made();
        net.paused.insert(3);
        net.run(pause);
        net.paused.remove(&3);
        net.run(Duration::from_secs(1));
        assert_eq!(net.owned_total(), 16, "the cluster settled after the pause");
        maps_per_pause.push(net.maps_made() - before);
    }
    // The first pause, longer than dead_after, was a death (its buckets
    // taken over and given back); then node 3 had a longer dead-after
    // time and the later pauses made no map.
    assert!(maps_per_pause[0] >= 1, "{maps_per_pause:?}");
    assert!(
        maps_per_pause[2..].iter().all(|&m| m == 0),
        "{maps_per_pause:?}"
    );
    let s = net.c(1).status(net.t);
    let three = s.nodes.iter().find(|n| n.node == 3).unwrap();
    assert!((1..=2).contains(&three.false_deaths), "{three:?}");
    assert_eq!(s.counters.false_deaths, three.false_deaths);
    let raised = three.dead_after_ms.unwrap();
    assert!(raised > 600 && raised <= 2000, "{three:?}");
    // The others were never silent.
    let two = s.nodes.iter().find(|n| n.node == 2).unwrap();
    assert_eq!((two.false_deaths, two.dead_after_ms), (0, Some(350)));

    // A real crash of node 3 is still detected, within its raised time.
    let raised = net.c(1).dead_after_of(3).unwrap();
    net.cs.remove(&3);
    let took = time_to_cover(&mut net, Duration::from_secs(5)).expect("buckets taken over");
    assert!(
        took > DEAD_AFTER && took <= raised + STEP,
        "took {took:?}, raised {raised:?}"
    );
}

#[test]
fn a_raised_dead_after_time_relaxes_back_after_quiet_time() {
    let mut net = Net::new();
    net.paused.insert(3);
    net.run(Duration::from_millis(600));
    net.paused.remove(&3);
    net.run(Duration::from_secs(1));
    let raised = net.c(1).dead_after_of(3).unwrap();
    assert!(raised > Duration::from_millis(600), "{raised:?}");
    assert_eq!(net.c(1).counters().false_deaths, 1);
    // Halved after each quiet RELAX, down to dead_after.
    net.run(RELAX);
    assert_eq!(
        net.c(1).dead_after_of(3),
        Some((raised / 2).max(DEAD_AFTER))
    );
    net.run(RELAX * 3);
    assert_eq!(net.c(1).dead_after_of(3), Some(DEAD_AFTER));
    // Crash detection is back at its configured speed.
    net.cs.remove(&3);
    let took = time_to_cover(&mut net, Duration::from_secs(3)).expect("buckets taken over");
    assert!(took <= DEAD_AFTER + STEP, "took {took:?}");
}

#[test]
fn a_coordinator_that_was_not_run_does_not_declare_its_live_peers_dead() {
    let mut net = Net::new();
    let maps = net.maps_made();
    // The master is not scheduled for a second (almost three times
    // dead_after) while its peers run and send to it. When it runs again
    // it reads its socket first: the first datagram (from node 2) comes
    // before anything from node 3.
    net.paused.insert(1);
    net.run(Duration::from_secs(1));
    net.paused.remove(&1);
    net.step();
    assert_eq!(net.maps_made(), maps, "it made no map of its own");
    assert!(net.alive_in_view(1, 2) && net.alive_in_view(1, 3));
    let k = net.c(1).counters();
    assert_eq!((k.own_stalls, k.false_deaths), (1, 0));
    assert_eq!(net.c(1).dead_after_of(3), Some(DEAD_AFTER));
    // Its peers did not hear it for a second: to them it was dead (they
    // cannot tell), and it is more patient with it now.
    assert!(net.c(2).counters().false_deaths >= 1);
    assert!(net.c(2).dead_after_of(1).unwrap() > DEAD_AFTER);
    net.run(Duration::from_secs(2));
    assert_eq!(net.owned_total(), 16);
    assert!(net.alive_in_view(2, 1));
    assert!(net.c(1).forwarding().count() > 0, "it got buckets back");
}
