//! Deterministic simulator of 2-9 cluster coordinators in virtual time:
//! a lossy, delaying, partitionable network; crashes, restarts with a new
//! incarnation, late joins, drains, undrains and rebalances; and a
//! simulated driver with a flow model (owners create flows and replicate
//! them to every live peer; flush, commit and evict move them).
//!
//! Checks: once calm, every bucket has exactly one forwarding owner and
//! all live nodes hold the same map; in runs without partitions, never two
//! forwarders of a bucket at any instant; a crashed node's buckets are
//! forwarded again within a bound from the config; in runs without
//! partitions, every flow that should survive is in its bucket owner's
//! table at the end. The end checks run once no new map was made for
//! `SETTLE_MS` (the calm phase is extended for that, at most
//! `SETTLE_MAX_MS`): a false death can start a hand-off at any instant.
//! A member a map lists dead counts as falsely dead if that incarnation
//! runs and is connected to the map's master, or if the master never
//! heard it (incarnation 0) although it ran for a dead-after time. A
//! failure prints the seed: `CLUSTER_SEED=N` replays
//! one, `CLUSTER_SEEDS=N` runs N seeds per node count (from
//! `CLUSTER_SEED_FROM`, default 0), `CLUSTER_TRACE=B`
//! prints what happens to bucket B (`cluster_sim/trace.rs`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::{Duration, Instant};

use ftfw_control::cluster::{Action, Coordinator, CoordinatorConfig};
use ftfw_dataplane::buckets::BucketSet;
use ftfw_dataplane::rng::SplitMix64;

#[path = "cluster_sim/checks.rs"]
mod checks;
#[path = "cluster_sim/replays.rs"]
mod replays;
#[path = "cluster_sim/trace.rs"]
mod trace;

use trace::describe;

const BUCKETS: u32 = 64;
const TICK_MS: u64 = 2;
const HEARTBEAT_MS: u64 = 100;
const DEAD_AFTER_MS: u64 = 350;
/// False deaths (loss, partitions) raise a member's dead-after time up to
/// this; a crash is then detected that much later.
const DEAD_AFTER_MAX_MS: u64 = 1400;
const DEAD_AFTER_RELAX_MS: u64 = 5_000;
const COMMIT_MAX_MS: u64 = 20;
const FAULT_MS: u64 = 20_000;
const CALM_MS: u64 = 10_000;
/// The end checks wait until no new map was made for this long: a false
/// death (three heartbeats lost in a row, which the calm phase's loss
/// still allows) can start a hand-off at any instant, and the hand-off
/// needs a few heartbeats to finish (release, acknowledgement, resends).
const SETTLE_MS: u64 = 1_000;
/// The most the calm phase is extended for that.
const SETTLE_MAX_MS: u64 = 5_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Crashes, restarts, joins, drains, rebalances; little loss.
    Calm,
    /// The same with up to 30% loss (false deaths possible).
    Lossy,
    /// Partitions on top.
    Partitions,
}

#[derive(Debug)]
enum Ev {
    Datagram {
        to: u32,
        bytes: Vec<u8>,
    },
    Flushed {
        node: u32,
        inc: u64,
        token: u64,
        to: u32,
        buckets: BucketSet,
    },
    Committed {
        node: u32,
        inc: u64,
        token: u64,
        from: Option<u32>,
        buckets: BucketSet,
    },
    Replicate {
        to: u32,
        to_inc: u64,
        owner: u32,
        owner_inc: u64,
        flow: u64,
    },
    Ready {
        node: u32,
        inc: u64,
    },
}

struct Node {
    coord: Coordinator,
    inc: u64,
    forwarding: BucketSet,
    table: BTreeSet<u64>,
    /// Flows each peer replicated to us (cache-of-peer).
    caches: BTreeMap<u32, BTreeSet<u64>>,
    drained: bool,
    /// The map version last traced.
    traced_version: u64,
}

struct Sim {
    seed: u64,
    kind: Kind,
    rng: SplitMix64,
    base: Instant,
    t: u64,
    ids: Vec<u32>,
    nodes: BTreeMap<u32, Node>,
    heap: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Ev>,
    seq: u64,
    loss_permille: u64,
    side: BTreeMap<u32, u8>,
    partitioned_until: u64,
    flow_bucket: BTreeMap<u64, u32>,
    /// Flows that must survive (unless in `lost_ok`: not replicated to
    /// every live member when their creator, or a member holding them,
    /// crashed); value: (creator, incarnation).
    flow_origin: BTreeMap<u64, (u32, u64)>,
    lost_ok: BTreeSet<u64>,
    /// Buckets of a crashed owner: since when, and the bound for them.
    pending_takeover: BTreeMap<u32, (u64, u64)>,
    takeover_max_ms: u64,
    /// A takeover slower than its bound: (bucket, took, bound).
    takeover_late: Option<(u32, u64, u64)>,
    takeover_measured: bool,
    next_flow: u64,
    buf: Vec<u8>,
    /// Primary-backup clusters.
    pb: bool,
    /// Maps seen so far, by (version, master).
    maps_seen: BTreeSet<(u64, u32)>,
    /// When a map not seen before was last first held.
    last_new_map: u64,
    /// Nodes a map declared dead while that incarnation was running and
    /// connected to the map's master.
    false_deaths: u64,
    /// Ticks on which the "never two forwarders" check ran.
    dual_checked: u64,
    /// `CLUSTER_TRACE=B`: print what happens to bucket B.
    trace: Option<u32>,
}

fn cfg(node: u32, ids: &[u32], inc: u64, auto: bool, pb: bool) -> CoordinatorConfig {
    CoordinatorConfig {
        node,
        nodes: ids.to_vec(),
        buckets: BUCKETS,
        backups: 1,
        heartbeat: Duration::from_millis(HEARTBEAT_MS),
        dead_after: Duration::from_millis(DEAD_AFTER_MS),
        dead_after_max: Duration::from_millis(DEAD_AFTER_MAX_MS),
        dead_after_relax: Duration::from_millis(DEAD_AFTER_RELAX_MS),
        auto_rebalance_on_join: auto,
        key: b"cluster-sim-key-0123456789".to_vec(),
        primary_backup: pb,
        incarnation: inc,
    }
}

impl Sim {
    fn new(seed: u64, n: usize, pb: bool) -> Sim {
        let kind = match seed % 3 {
            0 => Kind::Calm,
            1 => Kind::Lossy,
            _ => Kind::Partitions,
        };
        let mut rng = SplitMix64::new(seed);
        let loss_permille = match kind {
            Kind::Calm => rng.below(50),
            _ => rng.below(300),
        };
        // CLUSTER_LOSS=N: N‰ loss in the lossy and partitioned runs.
        let loss_permille = match (kind, env("CLUSTER_LOSS")) {
            (Kind::Calm, _) | (_, None) => loss_permille,
            (_, Some(l)) => l.min(1000),
        };
        Sim {
            seed,
            kind,
            rng,
            base: Instant::now(),
            t: 0,
            ids: (1..=u32::try_from(n).unwrap()).collect(),
            nodes: BTreeMap::new(),
            heap: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            loss_permille,
            side: BTreeMap::new(),
            partitioned_until: 0,
            flow_bucket: BTreeMap::new(),
            flow_origin: BTreeMap::new(),
            lost_ok: BTreeSet::new(),
            pending_takeover: BTreeMap::new(),
            takeover_max_ms: 0,
            takeover_measured: false,
            takeover_late: None,
            next_flow: 0,
            buf: Vec::new(),
            pb,
            maps_seen: BTreeSet::new(),
            last_new_map: 0,
            false_deaths: 0,
            dual_checked: 0,
            trace: env("CLUSTER_TRACE").and_then(|b| u32::try_from(b).ok()),
        }
    }

    fn now(&self) -> Instant {
        self.base + Duration::from_millis(self.t)
    }

    fn at(&mut self, delay_ms: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((self.t + delay_ms, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn connected(&self, a: u32, b: u32) -> bool {
        self.side.get(&a).copied().unwrap_or(0) == self.side.get(&b).copied().unwrap_or(0)
    }

    fn inc_of(&self, n: u32) -> Option<u64> {
        self.nodes.get(&n).map(|x| x.inc)
    }

    fn start(&mut self, id: u32) {
        // Starting a running node restarts it.
        self.crash(id);
        let inc = 1_000_000 + self.t * 1000 + self.rng.below(1000);
        self.tr(None, || format!("start {id} inc {inc}"));
        let auto = self.rng.below(4) != 0;
        let coord = Coordinator::new(cfg(id, &self.ids, inc, auto, self.pb), self.now()).unwrap();
        let peers_up = self.nodes.keys().any(|&p| self.connected(p, id));
        self.nodes.insert(
            id,
            Node {
                coord,
                inc,
                forwarding: BucketSet::empty(BUCKETS),
                table: BTreeSet::new(),
                caches: BTreeMap::new(),
                drained: false,
                traced_version: 0,
            },
        );
        // The driver: ready at once alone, else after a resync from peers.
        let delay = if peers_up { 200 } else { 0 };
        self.at(delay, Ev::Ready { node: id, inc });
    }

    fn crash(&mut self, id: u32) {
        let Some(node) = self.nodes.remove(&id) else {
            return;
        };
        let held = self.traced_flows(&node.table);
        self.tr(None, || format!("crash {id} holding {held:?}"));
        // Flows of this incarnation, and flows it held (imported from
        // another member), not replicated to every live peer may be lost
        // (e.g. a peer that joined while it crashed missed them in its
        // startup resync).
        for (&f, &(c, inc)) in &self.flow_origin {
            if (c == id && inc == node.inc) || node.table.contains(&f) {
                let everywhere = self.nodes.values().all(|p| {
                    p.caches.get(&id).is_some_and(|s| s.contains(&f)) || p.table.contains(&f)
                });
                if !everywhere {
                    self.lost_ok.insert(f);
                }
            }
        }
        if !node.forwarding.is_empty() && self.partitioned_until <= self.t {
            // The survivors' patience with it (raised by its false deaths).
            let detect = self
                .nodes
                .values()
                .filter_map(|n| n.coord.dead_after_of(id))
                .max()
                .map_or(DEAD_AFTER_MS, |d| u64::try_from(d.as_millis()).unwrap());
            for b in node.forwarding.iter() {
                self.pending_takeover
                    .entry(b)
                    .or_insert((self.t, bound_ms(detect)));
            }
        }
    }

    fn handle_event(&mut self, ev: Ev) {
        let now = self.now();
        match ev {
            Ev::Datagram { to, bytes } => {
                if let Some(n) = self.nodes.get_mut(&to) {
                    n.coord.handle_datagram(now, &bytes);
                }
            }
            Ev::Ready { node, inc } => {
                if self.inc_of(node) == Some(inc) {
                    // Resync: every connected peer's table into our caches.
                    let copies: Vec<(u32, BTreeSet<u64>)> = self
                        .nodes
                        .iter()
                        .filter(|(&p, _)| p != node && self.connected(p, node))
                        .map(|(&p, x)| (p, x.table.clone()))
                        .collect();
                    let n = self.nodes.get_mut(&node).unwrap();
                    for (p, t) in copies {
                        n.caches.entry(p).or_default().extend(t);
                    }
                    n.coord.handle_ready(now);
                }
            }
            Ev::Flushed {
                node,
                inc,
                token,
                to,
                buckets,
            } => {
                if self.inc_of(node) != Some(inc) {
                    return;
                }
                let ok = self.nodes.contains_key(&to) && self.connected(node, to);
                if ok {
                    let flows: Vec<u64> = self.nodes[&node]
                        .table
                        .iter()
                        .copied()
                        .filter(|f| buckets.contains(self.flow_bucket[f]))
                        .collect();
                    let traced = self.traced_flows(&flows);
                    self.tr(Some(&buckets), || {
                        format!("{node} flushed to {to}: {traced:?}")
                    });
                    let dst = self.nodes.get_mut(&to).unwrap();
                    dst.caches.entry(node).or_default().extend(flows);
                    self.nodes
                        .get_mut(&node)
                        .unwrap()
                        .coord
                        .handle_flushed(now, token);
                } else {
                    self.nodes
                        .get_mut(&node)
                        .unwrap()
                        .coord
                        .handle_flush_failed(now, token);
                }
            }
            Ev::Committed {
                node,
                inc,
                token,
                from,
                buckets,
            } => {
                if self.inc_of(node) != Some(inc) {
                    return;
                }
                let fb = &self.flow_bucket;
                let n = self.nodes.get_mut(&node).unwrap();
                let mut moved = Vec::new();
                if let Some(cache) = from.and_then(|f| n.caches.get_mut(&f)) {
                    cache.retain(|f| {
                        let take = buckets.contains(fb[f]);
                        if take {
                            moved.push(*f);
                        }
                        !take
                    });
                }
                n.table.extend(moved.iter().copied());
                n.coord.handle_committed(now, token);
                let traced = self.traced_flows(&moved);
                self.tr(Some(&buckets), || {
                    format!("{node} committed #{token} from {from:?}: {traced:?}")
                });
                // Replicate the imported flows onward.
                for f in moved {
                    self.replicate(node, inc, f);
                }
            }
            Ev::Replicate {
                to,
                to_inc,
                owner,
                owner_inc,
                flow,
            } => {
                let owner_up = self.inc_of(owner) == Some(owner_inc);
                if owner_up && self.inc_of(to) == Some(to_inc) && self.connected(owner, to) {
                    let n = self.nodes.get_mut(&to).unwrap();
                    n.caches.entry(owner).or_default().insert(flow);
                } else if Some(self.flow_bucket[&flow]) == self.trace {
                    self.tr(None, || {
                        format!("replica of {flow} from {owner} to {to} lost")
                    });
                }
            }
        }
    }

    fn replicate(&mut self, owner: u32, owner_inc: u64, flow: u64) {
        let peers: Vec<(u32, u64)> = self
            .nodes
            .iter()
            .filter(|(&p, _)| p != owner)
            .map(|(&p, x)| (p, x.inc))
            .collect();
        for (to, to_inc) in peers {
            let d = 2 + self.rng.below(8);
            self.at(
                d,
                Ev::Replicate {
                    to,
                    to_inc,
                    owner,
                    owner_inc,
                    flow,
                },
            );
        }
    }

    /// Timers and outputs of every node.
    fn drive(&mut self) {
        let now = self.now();
        let ids: Vec<u32> = self.nodes.keys().copied().collect();
        for id in ids {
            let mut out = Vec::new();
            let mut actions = Vec::new();
            {
                let n = self.nodes.get_mut(&id).unwrap();
                if n.coord.poll_timeout().is_some_and(|t| t <= now) {
                    n.coord.handle_timeout(now);
                }
                while let Some(tx) = n.coord.poll_transmit(now, &mut self.buf) {
                    out.push((tx.to, self.buf.clone()));
                }
                while let Some(a) = n.coord.poll_action() {
                    actions.push(a);
                }
                n.coord.set_flows(n.table.len() as u64);
            }
            for (to, bytes) in out {
                let lost = self.rng.below(1000) < self.loss_permille;
                if !lost && self.connected(id, to) {
                    let d = 1 + self.rng.below(5);
                    self.at(d, Ev::Datagram { to, bytes });
                }
            }
            let inc = self.nodes[&id].inc;
            for a in actions {
                self.tr(None, || format!("{id} {}", describe(&a, self.trace)));
                self.act(id, inc, a);
            }
            self.trace_map(id);
        }
    }

    fn act(&mut self, node: u32, inc: u64, a: Action) {
        match a {
            Action::Forward(set) => self.nodes.get_mut(&node).unwrap().forwarding = set,
            Action::Flush { token, to, buckets } => {
                let d = 5 + self.rng.below(15);
                self.at(
                    d,
                    Ev::Flushed {
                        node,
                        inc,
                        token,
                        to,
                        buckets,
                    },
                );
            }
            Action::Commit {
                token,
                from,
                buckets,
            } => {
                let d = 5 + self.rng.below(COMMIT_MAX_MS - 5);
                self.at(
                    d,
                    Ev::Committed {
                        node,
                        inc,
                        token,
                        from,
                        buckets,
                    },
                );
            }
            Action::Evict { buckets } => {
                let fb = &self.flow_bucket;
                let n = self.nodes.get_mut(&node).unwrap();
                n.table.retain(|f| !buckets.contains(fb[f]));
            }
            Action::Settled { .. } => {}
        }
    }

    fn create_flows(&mut self) {
        let ids: Vec<u32> = self.nodes.keys().copied().collect();
        for id in ids {
            let fwd: Vec<u32> = self.nodes[&id].forwarding.iter().collect();
            if fwd.is_empty() {
                continue;
            }
            let b = pick(&mut self.rng, &fwd);
            let f = self.next_flow;
            self.next_flow += 1;
            self.flow_bucket.insert(f, b);
            let inc = self.nodes[&id].inc;
            self.flow_origin.insert(f, (id, inc));
            if Some(b) == self.trace {
                self.tr(None, || format!("{id} creates flow {f}"));
            }
            self.nodes.get_mut(&id).unwrap().table.insert(f);
            self.replicate(id, inc, f);
        }
    }

    fn owners_of(&self, b: u32) -> Vec<u32> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.forwarding.contains(b))
            .map(|(&id, _)| id)
            .collect()
    }

    /// Counts false deaths in maps not seen before: a node listed dead
    /// whose incarnation runs and is connected to the map's master. A map
    /// lists a member the master never heard with incarnation 0: if one
    /// runs and is connected (its heartbeats were all lost), that is a
    /// false death too.
    fn note_false_deaths(&mut self) {
        let mut found = 0;
        for n in self.nodes.values() {
            let Some(m) = n.coord.map() else { continue };
            if !self.maps_seen.insert((m.version(), m.master())) {
                continue;
            }
            self.last_new_map = self.t;
            for e in m.nodes().iter().filter(|e| e.dead) {
                let inc = self.inc_of(e.node);
                // Unheard for a whole dead-after time (`start` derives the
                // incarnation from the start time).
                let unheard = e.incarnation == 0
                    && inc.is_some_and(|i| (i - 1_000_000) / 1000 + DEAD_AFTER_MS <= self.t);
                let running = inc == Some(e.incarnation) || unheard;
                if running && self.connected(m.master(), e.node) {
                    found += 1;
                }
            }
        }
        self.false_deaths += found;
    }

    fn check_continuous(&mut self) {
        self.note_false_deaths();
        // Without partitions and false deaths, never two forwarders.
        if self.kind != Kind::Partitions && self.false_deaths == 0 {
            self.dual_checked += 1;
            for b in 0..BUCKETS {
                let o = self.owners_of(b);
                assert!(o.len() <= 1, "t={} bucket {b} forwarded by {o:?}", self.t);
            }
        }
        let resolved: Vec<u32> = self
            .pending_takeover
            .keys()
            .copied()
            .filter(|&b| !self.owners_of(b).is_empty())
            .collect();
        for b in resolved {
            let (since, bound) = self.pending_takeover.remove(&b).unwrap();
            if self.kind != Kind::Partitions {
                let took = self.t - since;
                self.takeover_max_ms = self.takeover_max_ms.max(took);
                self.takeover_measured = true;
                if took > bound && self.takeover_late.is_none() {
                    self.takeover_late = Some((b, took, bound));
                }
            }
        }
    }

    fn fault(&mut self) {
        let live: Vec<u32> = self.nodes.keys().copied().collect();
        let down: Vec<u32> = self
            .ids
            .iter()
            .copied()
            .filter(|i| !self.nodes.contains_key(i))
            .collect();
        let now = self.now();
        match self.rng.below(8) {
            0 | 1 if live.len() > 2 => {
                let v = pick(&mut self.rng, &live);
                self.crash(v);
            }
            0..=2 if !down.is_empty() => {
                let v = pick(&mut self.rng, &down);
                self.start(v);
            }
            3 => {
                let cands: Vec<u32> = live
                    .iter()
                    .copied()
                    .filter(|i| !self.nodes[i].drained)
                    .collect();
                if cands.len() > 1 {
                    let v = pick(&mut self.rng, &cands);
                    let by = pick(&mut self.rng, &live);
                    if self.nodes.get_mut(&by).unwrap().coord.drain(now, v).is_ok() {
                        self.nodes.get_mut(&v).unwrap().drained = true;
                    }
                }
            }
            4 => {
                let cands: Vec<u32> = live
                    .iter()
                    .copied()
                    .filter(|i| self.nodes[i].drained)
                    .collect();
                if let Some(&v) = cands.first() {
                    let by = pick(&mut self.rng, &live);
                    if self
                        .nodes
                        .get_mut(&by)
                        .unwrap()
                        .coord
                        .undrain(now, v)
                        .is_ok()
                    {
                        self.nodes.get_mut(&v).unwrap().drained = false;
                    }
                }
            }
            5 => {
                let by = pick(&mut self.rng, &live);
                let _ = self.nodes.get_mut(&by).unwrap().coord.rebalance(now);
            }
            6 if self.kind == Kind::Partitions => {
                for &id in &self.ids {
                    let s = u8::try_from(self.rng.below(2)).unwrap();
                    self.side.insert(id, s);
                }
                self.partitioned_until = self.t + 1000 + self.rng.below(2000);
            }
            _ => {}
        }
    }

    fn run(&mut self) {
        let n = self.ids.len();
        // Late joiners start within the first 5 s.
        let mut starts: Vec<(u64, u32)> = Vec::new();
        for &id in &self.ids.clone() {
            let late = self.rng.below(3) == 0 && id as usize != n;
            starts.push((if late { 500 + self.rng.below(4500) } else { 0 }, id));
        }
        let mut next_fault = 3000;
        let end = FAULT_MS + CALM_MS;
        // Past the end while the last new map is younger than SETTLE_MS.
        let settling = |s: &Sim| s.t < end + SETTLE_MAX_MS && s.t < s.last_new_map + SETTLE_MS;
        while self.t <= end || settling(self) {
            for &(at, id) in &starts {
                if at == self.t {
                    self.start(id);
                }
            }
            if self.t >= next_fault && self.t < FAULT_MS {
                self.fault();
                next_fault = self.t + 1500 + self.rng.below(1500);
            }
            if self.partitioned_until != 0 && self.t >= self.partitioned_until {
                self.side.clear();
                self.partitioned_until = 0;
            }
            if self.t == FAULT_MS {
                self.loss_permille = self.loss_permille.min(50);
            }
            while let Some(&Reverse((when, seq))) = self.heap.peek() {
                if when > self.t {
                    break;
                }
                self.heap.pop();
                let ev = self.events.remove(&seq).unwrap();
                self.handle_event(ev);
            }
            self.drive();
            if self.t.is_multiple_of(20) {
                self.create_flows();
            }
            self.check_continuous();
            self.t += TICK_MS;
        }
        self.check_end();
    }
}

/// A random element of a non-empty slice.
fn pick<T: Copy>(rng: &mut SplitMix64, v: &[T]) -> T {
    v[usize::try_from(rng.below(v.len() as u64)).unwrap()]
}

/// The takeover bound for a crashed member the survivors judge at
/// `dead_after_ms` (`DEAD_AFTER_MS`, or more after its false deaths).
fn bound_ms(dead_after_ms: u64) -> u64 {
    // Death seen by the master, a failure map (lost: repeated after the
    // next heartbeats), the commit.
    dead_after_ms + 4 * HEARTBEAT_MS + COMMIT_MAX_MS + 2 * TICK_MS
}

fn env(k: &str) -> Option<u64> {
    std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok())
}

/// What one run measured.
struct Outcome {
    kind: Kind,
    takeover: Option<u64>,
    takeover_late: Option<(u32, u64, u64)>,
    false_deaths: u64,
    dual_checked: bool,
}

fn run_seed(seed: u64, n: usize, pb: bool) -> Outcome {
    let r = std::panic::catch_unwind(|| {
        let mut sim = Sim::new(seed, n, pb);
        sim.run();
        Outcome {
            kind: sim.kind,
            takeover: sim.takeover_measured.then_some(sim.takeover_max_ms),
            takeover_late: sim.takeover_late,
            false_deaths: sim.false_deaths,
            dual_checked: sim.kind != Kind::Partitions && sim.false_deaths == 0,
        }
    });
    match r {
        Ok(v) => v,
        Err(e) => {
            let pb = if pb { " (primary-backup)" } else { "" };
            eprintln!("cluster_sim failed{pb}: nodes={n} CLUSTER_SEED={seed}");
            std::panic::resume_unwind(e)
        }
    }
}

/// Runs the seeds (`CLUSTER_SEED`, or `CLUSTER_SEEDS` per node count,
/// `default` without) on the node counts (`CLUSTER_NODES`, or `sizes`).
fn soak(pb: bool, default: u64, sizes: &[usize]) {
    let seeds: Vec<u64> = match env("CLUSTER_SEED") {
        Some(s) => vec![s],
        None => {
            let from = env("CLUSTER_SEED_FROM").unwrap_or(0);
            (from..from + env("CLUSTER_SEEDS").unwrap_or(default)).collect()
        }
    };
    let sizes: Vec<usize> = match env("CLUSTER_NODES") {
        Some(n) => vec![usize::try_from(n).unwrap()],
        None => sizes.to_vec(),
    };
    let mut worst = 0;
    let (mut runs, mut lossy, mut with_false, mut false_deaths, mut checked) = (0, 0, 0, 0, 0);
    for &n in &sizes {
        for &s in &seeds {
            let seed = if env("CLUSTER_SEED").is_some() {
                s
            } else {
                s * 1000 + n as u64
            };
            let o = run_seed(seed, n, pb);
            println!(
                "nodes={n} seed={seed} {:?} takeover_max={:?} ms false_deaths={}",
                o.kind, o.takeover, o.false_deaths
            );
            runs += 1;
            if o.kind == Kind::Lossy {
                lossy += 1;
                with_false += u64::from(o.false_deaths > 0);
                false_deaths += o.false_deaths;
            }
            checked += u64::from(o.dual_checked);
            if let Some((b, took, bound)) = o.takeover_late {
                panic!("seed {seed}: bucket {b} taken over in {took} ms, above {bound} ms");
            }
            if let Some(t) = o.takeover {
                assert!(
                    t <= bound_ms(DEAD_AFTER_MAX_MS),
                    "seed {seed}: takeover {t} ms above {} ms",
                    bound_ms(DEAD_AFTER_MAX_MS)
                );
                worst = worst.max(t);
            }
        }
    }
    println!(
        "{runs} runs: worst takeover {worst} ms, bound {} ms ({} ms for a member never falsely dead); lossy runs {lossy}, with a false death {with_false} ({false_deaths} in all); never-two-forwarders checked throughout in {checked}",
        bound_ms(DEAD_AFTER_MAX_MS),
        bound_ms(DEAD_AFTER_MS)
    );
}

#[test]
fn clusters_converge_and_take_over_within_the_bound() {
    soak(false, 3, &[2, 3, 5, 9]);
}

#[test]
fn primary_backup_clusters_converge_and_take_over_within_the_bound() {
    soak(true, 2, &[2, 3, 5]);
}
