//! Deterministic simulation of two FT-FW engines over lossy links.
//!
//! A primary with a flow table mutated by a seeded workload pushes every
//! change as a delta; a backup applies what it receives into an external
//! cache with conntrackd's semantics (NEW replaces, UPDATE creates or
//! updates, DESTROY removes). The links lose, duplicate, delay and reorder
//! datagrams by a seeded RNG; virtual time jumps to the next deadline. After
//! the workload stops and the links heal, the backup's cache must equal the
//! primary's table flow for flow.
//!
//! A failure prints `seed=N loss=L`; replay one run with
//! `SIM_SEED=N SIM_LOSS=L cargo test -p ftfw-sync --test sim -- --nocapture`
//! (`SIM_RESTART=1` for the restart scenario; `SIM_TRACE_KEY=i` prints
//! every message about flow `i` and every control message).

#[path = "sim/codec.rs"]
mod codec;
#[path = "sim/net.rs"]
mod net;

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use codec::{carried, flow, TestCodec};
use ftfw_dataplane::flow::{proto, FlowKey, FlowState, TcpState, Tuple};
use ftfw_sync::codec::WireCodec;
use ftfw_sync::engine::Codec;
use ftfw_sync::engine::{Engine, EngineConfig, Event, FlowKind};
use net::{Link, Rng};

/// Deterministic iteration order (fixed SipHash keys).
type Map = HashMap<FlowKey, FlowState, BuildHasherDefault<DefaultHasher>>;

const KEYS: u32 = 300;
const OPS: usize = 1500;

fn key(i: u32) -> FlowKey {
    let [_, a, b, c] = i.to_be_bytes();
    let p = if i.is_multiple_of(3) {
        proto::UDP
    } else {
        proto::TCP
    };
    FlowKey {
        orig: Tuple::new(
            IpAddr::V4(Ipv4Addr::new(10, a, b, c)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            p,
            u16::try_from(1024 + i % 50_000).unwrap_or(1024),
            443,
        ),
        zone: u16::try_from(i % 3).unwrap_or(0),
    }
}

fn random_state(rng: &mut Rng, k: FlowKey) -> FlowState {
    // Only TCP flows have a TCP state (the wire format carries none for others).
    let tcp = if k.orig.proto == proto::TCP {
        TcpState::ALL[usize::try_from(rng.below(10)).unwrap_or(0)]
    } else {
        TcpState::None
    };
    flow(k, tcp, rng.u32() & 0xffff, rng.u32() % 432_000, rng.u32())
}

#[derive(Clone, Copy, Debug)]
struct Scenario {
    seed: u64,
    loss: u32,
    restart: bool,
}

struct Sim<C: Codec> {
    sc: Scenario,
    rng: Rng,
    now: Instant,
    t0: Instant,
    primary: Engine<C>,
    backup: Engine<C>,
    p2b: Link,
    b2p: Link,
    table: Map,
    cache: Map,
    bulk: Vec<FlowState>,
    buf: Vec<u8>,
    bulks: u32,
}

fn engine<C: Codec + Default>(rng: &mut Rng, initial_seq: u32, now: Instant) -> Engine<C> {
    let cfg = EngineConfig {
        initial_seq,
        // Vary the knobs a little per run.
        ack_window: [300, 20, 7][usize::try_from(rng.below(3)).unwrap_or(0)],
        ..EngineConfig::default()
    };
    Engine::new(cfg, C::default(), now)
}

impl<C: Codec + Default> Sim<C> {
    fn new(sc: Scenario) -> Self {
        let mut rng = Rng::new(sc.seed);
        let now = Instant::now();
        let (ps, bs) = (rng.u32(), rng.u32());
        let primary = engine(&mut rng, ps, now);
        let backup = engine(&mut rng, bs, now);
        Sim {
            sc,
            p2b: Link::new(sc.loss, 5),
            b2p: Link::new(sc.loss, 5),
            rng,
            now,
            t0: now,
            primary,
            backup,
            table: Map::default(),
            cache: Map::default(),
            bulk: Vec::new(),
            buf: Vec::new(),
            bulks: 0,
        }
    }

    fn op(&mut self) {
        let ki = u32::try_from(self.rng.below(u64::from(KEYS))).unwrap_or(0);
        let k = key(ki);
        let now = self.now;
        if env::<u32>("SIM_TRACE_KEY") == Some(ki) {
            println!(
                "{:?} op on key, in table: {} seq_out {}",
                now - self.t0,
                self.table.contains_key(&k),
                self.primary.seq_out()
            );
        }
        if self.table.contains_key(&k) {
            if self.rng.percent(65) {
                let st = random_state(&mut self.rng, k);
                self.table.insert(k, st.clone());
                self.primary.push_delta(now, FlowKind::Update, st);
            } else if let Some(st) = self.table.remove(&k) {
                self.primary.push_delta(now, FlowKind::Destroy, st);
            }
        } else {
            let st = random_state(&mut self.rng, k);
            self.table.insert(k, st.clone());
            self.primary.push_delta(now, FlowKind::New, st);
        }
    }

    fn start_bulk(&mut self) {
        self.bulks += 1;
        self.bulk = self.table.values().cloned().collect();
    }

    fn restart_primary(&mut self) {
        let s = self
            .primary
            .seq_out()
            .wrapping_add(1 << 20)
            .wrapping_add(self.rng.u32() % (1 << 30));
        self.primary = engine(&mut self.rng, s, self.now);
        self.bulk.clear();
        // conntrackd -B: a restarted primary pushes its table.
        self.start_bulk();
    }

    fn restart_backup(&mut self) {
        let s = self
            .backup
            .seq_out()
            .wrapping_add(1 << 20)
            .wrapping_add(self.rng.u32() % (1 << 30));
        self.backup = engine(&mut self.rng, s, self.now);
        self.cache.clear();
        // StartupResync: a restarted backup asks for the table.
        self.backup.request_resync(self.now);
    }

    /// Everything that is due at `self.now`.
    fn step(&mut self) {
        let now = self.now;
        while let Some(d) = self.p2b.pop_due(now) {
            self.trace("p2b deliver", &d);
            self.backup.handle_datagram(now, &d);
        }
        while let Some(d) = self.b2p.pop_due(now) {
            self.trace("b2p deliver", &d);
            self.primary.handle_datagram(now, &d);
        }
        if self.primary.poll_timeout().is_some_and(|t| t <= now) {
            self.primary.handle_timeout(now);
        }
        if self.backup.poll_timeout().is_some_and(|t| t <= now) {
            self.backup.handle_timeout(now);
        }
        while let Some(ev) = self.backup.poll_event() {
            match ev {
                Event::Apply { kind, state } => {
                    if Some(state.key) == env::<u32>("SIM_TRACE_KEY").map(key) {
                        println!(
                            "{:?} backup applies {kind:?} last_in {:?}",
                            now - self.t0,
                            self.backup.last_seq_in()
                        );
                    }
                    match kind {
                        FlowKind::New | FlowKind::Update => {
                            self.cache.insert(state.key, state);
                        }
                        FlowKind::Destroy => {
                            self.cache.remove(&state.key);
                        }
                    }
                }
                Event::PeerRestarted => {
                    if env::<u32>("SIM_TRACE_KEY").is_some() {
                        println!("{:?} backup: peer restarted", now - self.t0);
                    }
                    // A new primary incarnation may have lost deltas that a
                    // bulk cannot express (DESTROYs): start over from a
                    // full table.
                    self.cache.clear();
                    self.backup.request_resync(now);
                }
                Event::ResyncRequested | Event::OutOfSync | Event::Expect { .. } => {}
            }
        }
        while let Some(ev) = self.primary.poll_event() {
            if ev == Event::ResyncRequested {
                self.start_bulk();
            }
        }
        if self.primary.take_needs_reexport() {
            self.start_bulk();
        }
        if !self.bulk.is_empty() {
            let n = self.primary.tx_space().min(self.bulk.len());
            let rest = self.bulk.split_off(n);
            let chunk = std::mem::replace(&mut self.bulk, rest);
            self.primary.push_bulk(now, chunk);
        }
        let mut guard = 0;
        while self.primary.poll_transmit(now, &mut self.buf) {
            let b = self.buf.clone();
            self.trace("p2b send", &b);
            self.p2b.send(now, &mut self.rng, &self.buf);
            guard += 1;
            assert!(guard < 100_000, "poll_transmit never stops");
        }
        while self.backup.poll_transmit(now, &mut self.buf) {
            let b = self.buf.clone();
            self.trace("b2p send", &b);
            self.b2p.send(now, &mut self.rng, &self.buf);
            guard += 1;
            assert!(guard < 100_000, "poll_transmit never stops");
        }
    }

    fn trace(&self, what: &str, d: &[u8]) {
        let Some(k) = env::<u32>("SIM_TRACE_KEY").map(key) else {
            return;
        };
        use ftfw_sync::engine::Body;
        C::default().decode(d, &mut |m| {
            let Ok(m) = m else { return };
            let show = match &m.body {
                Body::Flow { state, .. } => state.key == k,
                _ => true,
            };
            if show {
                let b = match &m.body {
                    Body::Flow { kind, .. } => format!("{kind:?}"),
                    b => format!("{b:?}"),
                };
                println!(
                    "{:?} {what} seq={} h={} hb={} {b}",
                    self.now - self.t0,
                    m.seq,
                    m.hello,
                    m.hello_back
                );
            }
        });
    }

    fn next_deadline(&self, next_op: Option<Instant>) -> Instant {
        [
            self.primary.poll_timeout(),
            self.backup.poll_timeout(),
            self.p2b.next_at(),
            self.b2p.next_at(),
            next_op,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(self.now)
        .max(self.now)
    }

    fn run(&mut self) -> Result<(), String> {
        let mut ops = 0usize;
        let mut next_op = Some(self.now + Duration::from_micros(self.rng.below(400)));
        let mut quiet_until = None;
        let restart_at = [OPS / 3, 2 * OPS / 3];
        let backup_first = self.sc.seed.is_multiple_of(2);
        let mut steps = 0u64;
        loop {
            self.now = self.next_deadline(next_op);
            if quiet_until.is_some_and(|q| self.now >= q) {
                break;
            }
            if let Some(t) = next_op {
                if self.now >= t {
                    self.op();
                    ops += 1;
                    if self.sc.restart && restart_at.contains(&ops) {
                        if (ops == restart_at[0]) == backup_first {
                            self.restart_backup();
                        } else {
                            self.restart_primary();
                        }
                    }
                    next_op =
                        (ops < OPS).then(|| self.now + Duration::from_micros(self.rng.below(400)));
                    if next_op.is_none() {
                        // Workload over: the links heal.
                        self.p2b.loss = 0;
                        self.b2p.loss = 0;
                        self.p2b.dup = 0;
                        self.b2p.dup = 0;
                        quiet_until = Some(self.now + Duration::from_secs(15));
                    }
                }
            }
            self.step();
            steps += 1;
            if env::<u32>("SIM_DEBUG_STEPS").is_some() && steps.is_multiple_of(100_000) {
                println!(
                    "step {steps} t={:?} p_to={:?} b_to={:?} ops={ops} p={:?}",
                    self.now - self.t0,
                    self.primary.poll_timeout().map(|t| t - self.t0),
                    self.backup.poll_timeout().map(|t| t - self.t0),
                    self.primary.stats()
                );
            }
            if steps > 5_000_000 {
                return Err("no progress".into());
            }
        }
        self.check()
    }

    fn check(&self) -> Result<(), String> {
        let mut diffs = Vec::new();
        for (k, st) in &self.table {
            match self.cache.get(k) {
                Some(c) if carried(c) == carried(st) => {}
                Some(c) => diffs.push(format!(
                    "stale {k:?}: {:?} vs {:?}",
                    carried(c),
                    carried(st)
                )),
                None => diffs.push(format!("missing {k:?}")),
            }
        }
        for k in self.cache.keys() {
            if !self.table.contains_key(k) {
                diffs.push(format!("extra {k:?}"));
            }
        }
        let ps = self.primary.stats();
        if ps.tx_queue_depth != 0 {
            diffs.push(format!("primary still has {} queued", ps.tx_queue_depth));
        }
        if diffs.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{} differences (table {}, cache {}), first: {:?}\nprimary {:?}\nbackup {:?}",
            diffs.len(),
            self.table.len(),
            self.cache.len(),
            &diffs[..diffs.len().min(3)],
            ps,
            self.backup.stats()
        ))
    }
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok()?.parse().ok()
}

fn run_many<C: Codec + Default>(restart: bool, losses: &[u32], seeds: u64) {
    if let Some(seed) = env::<u64>("SIM_SEED") {
        let loss = env::<u32>("SIM_LOSS").unwrap_or(0);
        let restart = env::<u32>("SIM_RESTART").map_or(restart, |r| r != 0);
        let sc = Scenario {
            seed,
            loss,
            restart,
        };
        let mut sim = Sim::<C>::new(sc);
        let r = sim.run();
        println!(
            "seed={seed} loss={loss} restart={restart}: {r:?}\nprimary {:?}\nbackup {:?}\nbulks {}",
            sim.primary.stats(),
            sim.backup.stats(),
            sim.bulks
        );
        assert!(r.is_ok());
        return;
    }
    let mut failures = Vec::new();
    for &loss in losses {
        for seed in 0..seeds {
            let sc = Scenario {
                seed,
                loss,
                restart,
            };
            if let Err(e) = Sim::<C>::new(sc).run() {
                println!("FAILED seed={seed} loss={loss} restart={restart}: {e}");
                failures.push(format!("seed={seed} loss={loss}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "failing runs (replay with SIM_SEED=N SIM_LOSS=L{}): {failures:?}",
        if restart { " SIM_RESTART=1" } else { "" }
    );
}

#[test]
fn converges_under_loss() {
    run_many::<TestCodec>(false, &[0, 5, 20, 50], 50);
}

#[test]
fn converges_after_restarts() {
    run_many::<TestCodec>(true, &[0, 5, 20, 50], 25);
}

/// The same over conntrackd's byte format ([`WireCodec`]): what a mixed
/// ftfw / conntrackd cluster puts on the link.
#[test]
fn converges_under_loss_on_the_wire_format() {
    run_many::<WireCodec>(false, &[0, 5, 20, 50], 20);
}

#[test]
fn converges_after_restarts_on_the_wire_format() {
    run_many::<WireCodec>(true, &[0, 20, 50], 10);
}
