//! Bayes lazy replication (hFT-FW, section VI): do not replicate flows
//! that are predicted to die before replicating them would pay off.
//!
//! Most short flows (a DNS exchange, a small HTTP object) end within a few
//! hundred milliseconds; replicating their every state change costs the
//! primary and the link, and a backup that takes over after they ended has
//! no use for them. hFT-FW classifies a state change as *transitional*
//! (superseded within a time barrier, the paper's 200 ms or twice the
//! link latency) or *stable*, learns per destination service how often
//! flows are transitional, and skips or delays what it predicts to be
//! transitional.
//!
//! The model here, sans-IO (time is a parameter):
//! - a knowledge base keyed by (source address, destination address,
//!   destination port, protocol), each key with `transitional` and `total`
//!   counts of the flows seen under it: `P(stable | key) = (stable + 1) /
//!   (total + 2)`, the naive Bayes estimate with Laplace smoothing (one
//!   feature, so "naive" costs nothing); a key never seen is stable with
//!   probability 1/2;
//! - a new flow is predicted *transitional* when `P(stable | key) <=
//!   threshold` (the paper's classification barrier: 0.125 saved 40-50% at
//!   about 2% wrong); its changes are then held, newest state only, until
//!   the flow either ends (nothing is ever sent: saved) or outlives the
//!   time barrier (its newest state is sent as NEW: delayed);
//! - every flow trains its key once, when its outcome is known: at its end
//!   before the barrier (transitional) or at the barrier (stable);
//! - a prediction is *wrong* when a flow held as transitional outlives the
//!   barrier (it was unprotected meanwhile, the paper's definition); after
//!   `max_wrong` wrong predictions in a row a key is reset (the traffic
//!   changed; the paper resets "outdated" tuples).
//!
//! Memory is bounded and allocated once: the knowledge base is a
//! direct-mapped table of `keys` slots ([`KEY_BYTES`] each: the full key
//! for the collision check and the counts; a new key takes its slot over),
//! and at most `max_tracked` young flows are followed until the barrier
//! (past that, flows are sent at once and not learned from, counted).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use ftfw_dataplane::flow::{Addr, FlowKey, FlowState};

use crate::engine::FlowKind;

/// Settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LazyConfig {
    /// A flow that lives longer than this is stable (hFT-FW: 200 ms, or
    /// twice the link latency).
    pub barrier: Duration,
    /// A new flow is held when `P(stable | key)` is at or below this
    /// (hFT-FW's classification barrier; 0.125 in its best runs).
    pub threshold: f64,
    /// Wrong predictions in a row after which a key is reset.
    pub max_wrong: u16,
    /// Slots in the knowledge base (rounded up to a power of two).
    pub keys: usize,
    /// Young flows followed until the barrier, at most.
    pub max_tracked: usize,
}

impl Default for LazyConfig {
    fn default() -> Self {
        LazyConfig {
            barrier: Duration::from_millis(200),
            threshold: 0.125,
            max_wrong: 3,
            keys: 65_536,
            max_tracked: 262_144,
        }
    }
}

/// What the replication thread does with a change.
// One per delta, moved straight into the engine: boxing would cost an
// allocation per change.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Replicate it now.
    Send(FlowKind, FlowState),
    /// Held (the flow is predicted transitional and young), or dropped
    /// (the flow ended while held): nothing to send.
    Hold,
}

/// Counters, as `sync status` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LazyStats {
    /// New flows predicted transitional (held).
    pub predicted_transitional: u64,
    /// New flows predicted stable (sent at once).
    pub predicted_stable: u64,
    /// Messages never sent: changes of held flows that ended in time.
    pub saved_msgs: u64,
    /// Held flows that ended before the barrier (right predictions).
    pub saved_flows: u64,
    /// Held flows that outlived the barrier, sent late (wrong predictions).
    pub delayed_flows: u64,
    /// Flows predicted stable that ended before the barrier.
    pub stable_but_short: u64,
    /// Keys reset after `max_wrong` wrong predictions in a row.
    pub key_resets: u64,
    /// Keys that took over a slot held by another key.
    pub key_evictions: u64,
    /// Flows sent at once because `max_tracked` flows were being followed.
    pub untracked: u64,
    /// Keys in the knowledge base now.
    pub keys_used: u64,
    /// Bytes of the knowledge base (all slots; allocated once).
    pub kb_bytes: u64,
}

/// Bytes of one knowledge-base slot.
pub const KEY_BYTES: usize = std::mem::size_of::<Slot>();

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ServiceKey {
    src: Addr,
    dst: Addr,
    dport: u16,
    proto: u8,
}

impl ServiceKey {
    fn of(k: &FlowKey) -> ServiceKey {
        ServiceKey {
            src: k.orig.src,
            dst: k.orig.dst,
            dport: k.orig.dst_port,
            proto: k.orig.proto,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Slot {
    key: ServiceKey,
    used: bool,
    /// Wrong predictions in a row.
    wrong: u16,
    transitional: u32,
    total: u32,
}

impl Slot {
    fn p_stable(&self) -> f64 {
        let stable = f64::from(self.total - self.transitional);
        (stable + 1.0) / (f64::from(self.total) + 2.0)
    }

    fn learn(&mut self, transitional: bool) {
        if self.total == u32::MAX {
            // Halve both, keeping the ratio.
            self.total /= 2;
            self.transitional /= 2;
        }
        self.total += 1;
        self.transitional += u32::from(transitional);
    }
}

/// A young flow followed until its outcome is known.
#[derive(Debug)]
struct Young {
    born: Instant,
    /// Held changes (the newest state), when predicted transitional.
    held: Option<FlowState>,
    /// Changes held so far (messages saved if it ends in time).
    held_msgs: u64,
}

/// The predictor; see the module docs.
#[derive(Debug)]
pub struct Lazy {
    cfg: LazyConfig,
    slots: Vec<Slot>,
    hasher: RandomState,
    young: HashMap<FlowKey, Young>,
    /// Young flows by birth (the barrier passes in this order); entries of
    /// flows already gone are skipped.
    order: VecDeque<(Instant, FlowKey)>,
    stats: LazyStats,
}

impl Lazy {
    /// A predictor with an empty knowledge base.
    pub fn new(cfg: LazyConfig) -> Lazy {
        let n = cfg.keys.clamp(1, 1 << 24).next_power_of_two();
        Lazy {
            cfg,
            slots: vec![Slot::default(); n],
            hasher: RandomState::new(),
            young: HashMap::new(),
            order: VecDeque::new(),
            stats: LazyStats {
                kb_bytes: (n * KEY_BYTES) as u64,
                ..LazyStats::default()
            },
        }
    }

    /// The settings.
    pub fn config(&self) -> &LazyConfig {
        &self.cfg
    }

    /// The counters.
    pub fn stats(&self) -> LazyStats {
        self.stats
    }

    /// Young flows followed now.
    pub fn tracked(&self) -> usize {
        self.young.len()
    }

    fn slot_index(&self, k: &ServiceKey) -> usize {
        let h = self.hasher.hash_one((k.src, k.dst, k.dport, k.proto));
        // The table length is a power of two.
        #[allow(clippy::cast_possible_truncation)]
        let i = (h as usize) & (self.slots.len() - 1);
        i
    }

    /// `P(stable)` for flows of `key` (1/2 for a key never seen).
    pub fn p_stable(&self, key: &FlowKey) -> f64 {
        let k = ServiceKey::of(key);
        let s = &self.slots[self.slot_index(&k)];
        if s.used && s.key == k {
            s.p_stable()
        } else {
            0.5
        }
    }

    fn slot_mut(&mut self, k: &ServiceKey) -> &mut Slot {
        let i = self.slot_index(k);
        let s = &mut self.slots[i];
        if !s.used || s.key != *k {
            if s.used {
                self.stats.key_evictions += 1;
            } else {
                self.stats.keys_used += 1;
            }
            *s = Slot {
                key: *k,
                used: true,
                ..Slot::default()
            };
        }
        s
    }

    /// One state change of a flow, at `now`: what to replicate.
    pub fn on_change(&mut self, now: Instant, kind: FlowKind, state: FlowState) -> Verdict {
        let key = state.key;
        match kind {
            FlowKind::New => {
                if self.young.len() >= self.cfg.max_tracked
                    || self.order.len() >= self.cfg.max_tracked.saturating_mul(2)
                {
                    self.stats.untracked += 1;
                    return Verdict::Send(kind, state);
                }
                let transitional = self.p_stable(&key) <= self.cfg.threshold;
                self.order.push_back((now, key));
                if transitional {
                    self.stats.predicted_transitional += 1;
                    self.young.insert(
                        key,
                        Young {
                            born: now,
                            held: Some(state),
                            held_msgs: 1,
                        },
                    );
                    Verdict::Hold
                } else {
                    self.stats.predicted_stable += 1;
                    self.young.insert(
                        key,
                        Young {
                            born: now,
                            held: None,
                            held_msgs: 0,
                        },
                    );
                    Verdict::Send(kind, state)
                }
            }
            FlowKind::Update => match self.young.get_mut(&key) {
                Some(y) if y.held.is_some() => {
                    y.held = Some(state);
                    y.held_msgs += 1;
                    Verdict::Hold
                }
                _ => Verdict::Send(kind, state),
            },
            FlowKind::Destroy => match self.young.remove(&key) {
                Some(y) => {
                    // Ended before the barrier: transitional.
                    let sk = ServiceKey::of(&key);
                    let s = self.slot_mut(&sk);
                    s.learn(true);
                    if y.held.is_some() {
                        s.wrong = 0;
                        self.stats.saved_flows += 1;
                        self.stats.saved_msgs += y.held_msgs + 1;
                        Verdict::Hold
                    } else {
                        self.stats.stable_but_short += 1;
                        Verdict::Send(kind, state)
                    }
                }
                None => Verdict::Send(kind, state),
            },
        }
    }

    /// Flows whose barrier has passed by `now`: trains their keys and
    /// returns the held ones, to be sent as NEW (late). Bounded by the
    /// number of flows born before `now - barrier`.
    pub fn poll_barrier(&mut self, now: Instant) -> Vec<FlowState> {
        let mut out = Vec::new();
        while let Some(&(born, key)) = self.order.front() {
            if now.saturating_duration_since(born) < self.cfg.barrier {
                break;
            }
            self.order.pop_front();
            let Some(y) = self.young.get(&key) else {
                continue; // ended already
            };
            if y.born != born {
                continue; // a newer flow with the same key: its own entry
            }
            let y = self.young.remove(&key).expect("just seen");
            let sk = ServiceKey::of(&key);
            let max_wrong = self.cfg.max_wrong;
            let s = self.slot_mut(&sk);
            s.learn(false);
            if let Some(st) = y.held {
                s.wrong = s.wrong.saturating_add(1);
                let reset = s.wrong >= max_wrong;
                if reset {
                    *s = Slot {
                        key: sk,
                        used: true,
                        ..Slot::default()
                    };
                }
                self.stats.key_resets += u64::from(reset);
                self.stats.delayed_flows += 1;
                out.push(st);
            } else {
                s.wrong = 0;
            }
        }
        out
    }

    /// When the next barrier passes (`None`: no young flow).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|(born, _)| *born + self.cfg.barrier)
    }

    /// Sends everything held at once (a full export or a takeover is under
    /// way: nothing may stay unreplicated). Keeps following the flows.
    pub fn release_all(&mut self) -> Vec<FlowState> {
        let mut out = Vec::new();
        for y in self.young.values_mut() {
            if let Some(st) = y.held.take() {
                out.push(st);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftfw_dataplane::flow::{proto, TcpState, Tuple};
    use proptest::prelude::*;

    fn flow(src: u8, sport: u16, dport: u16) -> FlowState {
        FlowState {
            key: FlowKey {
                orig: Tuple::new(
                    format!("192.0.2.{src}").parse().unwrap(),
                    "198.51.100.1".parse().unwrap(),
                    proto::TCP,
                    sport,
                    dport,
                ),
                zone: 0,
            },
            tcp_state: TcpState::SynSent,
            status: 0,
            timeout_secs: 120,
            mark: 0,
            wscale: [0; 2],
            counters: Default::default(),
            extras: Default::default(),
        }
    }

    fn cfg() -> LazyConfig {
        LazyConfig {
            keys: 64,
            ..LazyConfig::default()
        }
    }

    /// A short flow: NEW, 2 updates, DESTROY within `life`.
    fn short(l: &mut Lazy, t: Instant, f: &FlowState) -> usize {
        let mut sent = 0;
        for kind in [FlowKind::New, FlowKind::Update, FlowKind::Update] {
            sent += usize::from(matches!(l.on_change(t, kind, f.clone()), Verdict::Send(..)));
        }
        sent += usize::from(matches!(
            l.on_change(t + Duration::from_millis(50), FlowKind::Destroy, f.clone()),
            Verdict::Send(..)
        ));
        sent
    }

    #[test]
    fn probabilities_match_the_hand_computed_laplace_estimates() {
        let mut l = Lazy::new(cfg());
        let t0 = Instant::now();
        let f = flow(1, 1000, 80);
        assert_eq!(l.p_stable(&f.key), 0.5);
        // Unknown key: P(stable) = 1/2 > 0.125, sent; it ends in 50 ms:
        // transitional. (0 + 1) / (1 + 2) = 1/3.
        assert_eq!(short(&mut l, t0, &f), 4);
        assert!((l.p_stable(&f.key) - 1.0 / 3.0).abs() < 1e-12);
        // Two more: 1/4, then 1/5.
        short(&mut l, t0, &flow(1, 1001, 80));
        assert!((l.p_stable(&f.key) - 0.25).abs() < 1e-12);
        short(&mut l, t0, &flow(1, 1002, 80));
        assert!((l.p_stable(&f.key) - 0.2).abs() < 1e-12);
        // Another port of the same hosts is another key.
        assert_eq!(l.p_stable(&flow(1, 1003, 22).key), 0.5);
        let s = l.stats();
        assert_eq!(
            (s.predicted_stable, s.stable_but_short, s.saved_flows),
            (3, 3, 0)
        );
    }

    #[test]
    fn a_key_learned_transitional_is_held_and_its_flows_cost_nothing() {
        let mut l = Lazy::new(cfg());
        let t0 = Instant::now();
        // Six short flows: P(stable) = 1/8 <= 0.125 from then on.
        for p in 0..6 {
            short(&mut l, t0, &flow(1, 2000 + p, 80));
        }
        assert!((l.p_stable(&flow(1, 1, 80).key) - 0.125).abs() < 1e-12);
        assert_eq!(short(&mut l, t0, &flow(1, 3000, 80)), 0, "held and dropped");
        let s = l.stats();
        assert_eq!(
            (s.predicted_transitional, s.saved_flows, s.saved_msgs),
            (1, 1, 4)
        );
        assert!(l.poll_barrier(t0 + Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn a_held_flow_that_outlives_the_barrier_is_sent_late_with_its_newest_state() {
        let mut l = Lazy::new(cfg());
        let t0 = Instant::now();
        for p in 0..6 {
            short(&mut l, t0, &flow(1, 2000 + p, 80));
        }
        let f = flow(1, 4000, 80);
        assert_eq!(l.on_change(t0, FlowKind::New, f.clone()), Verdict::Hold);
        let mut est = f.clone();
        est.tcp_state = TcpState::Established;
        assert_eq!(
            l.on_change(t0, FlowKind::Update, est.clone()),
            Verdict::Hold
        );
        assert_eq!(l.next_deadline(), Some(t0 + Duration::from_millis(200)));
        assert!(l.poll_barrier(t0 + Duration::from_millis(199)).is_empty());
        assert_eq!(
            l.poll_barrier(t0 + Duration::from_millis(200)),
            vec![est.clone()]
        );
        assert_eq!(l.stats().delayed_flows, 1);
        // Past the barrier the flow replicates normally.
        assert!(matches!(
            l.on_change(
                t0 + Duration::from_millis(300),
                FlowKind::Update,
                est.clone()
            ),
            Verdict::Send(FlowKind::Update, _)
        ));
        assert!(matches!(
            l.on_change(t0 + Duration::from_millis(400), FlowKind::Destroy, est),
            Verdict::Send(FlowKind::Destroy, _)
        ));
        // Stable once: 1 of 7 stable, (1 + 1) / (7 + 2).
        assert!((l.p_stable(&f.key) - 2.0 / 9.0).abs() < 1e-12);
    }

    #[test]
    fn wrong_predictions_in_a_row_reset_the_key() {
        let mut l = Lazy::new(LazyConfig {
            threshold: 0.4,
            max_wrong: 2,
            ..cfg()
        });
        let t0 = Instant::now();
        for p in 0..3 {
            short(&mut l, t0, &flow(1, 2000 + p, 80)); // P(stable) = 1/5
        }
        // Two long flows predicted transitional (1/5, then 2/6): the
        // second wrong prediction in a row resets the key.
        for (i, p) in [5000u16, 5001].into_iter().enumerate() {
            let t = t0 + Duration::from_secs(i as u64);
            assert_eq!(l.on_change(t, FlowKind::New, flow(1, p, 80)), Verdict::Hold);
            assert_eq!(l.poll_barrier(t + Duration::from_millis(250)).len(), 1);
        }
        assert_eq!(l.stats().key_resets, 1);
        assert_eq!(
            l.p_stable(&flow(1, 1, 80).key),
            0.5,
            "reset to no knowledge"
        );
        assert!(matches!(
            l.on_change(
                t0 + Duration::from_secs(5),
                FlowKind::New,
                flow(1, 5002, 80)
            ),
            Verdict::Send(..)
        ));
    }

    #[test]
    fn release_all_sends_what_is_held() {
        let mut l = Lazy::new(cfg());
        let t0 = Instant::now();
        for p in 0..6 {
            short(&mut l, t0, &flow(1, 2000 + p, 80));
        }
        l.on_change(t0, FlowKind::New, flow(1, 6000, 80));
        l.on_change(t0, FlowKind::New, flow(1, 6001, 80));
        assert_eq!(l.release_all().len(), 2);
        assert!(l.release_all().is_empty());
        // Still followed: their DESTROY is sent (they were replicated).
        assert!(matches!(
            l.on_change(t0, FlowKind::Destroy, flow(1, 6000, 80)),
            Verdict::Send(..)
        ));
    }

    #[test]
    fn the_number_of_young_flows_is_capped() {
        let mut l = Lazy::new(LazyConfig {
            max_tracked: 2,
            ..cfg()
        });
        let t0 = Instant::now();
        for p in 0..3 {
            assert!(matches!(
                l.on_change(t0, FlowKind::New, flow(1, 7000 + p, 80)),
                Verdict::Send(..)
            ));
        }
        assert_eq!(l.tracked(), 2);
        assert_eq!(l.stats().untracked, 1);
    }

    proptest! {
        /// Whatever the key stream, memory stays at the table allocated up
        /// front plus at most `max_tracked` young flows, and every held
        /// flow is either saved or sent once its barrier passes.
        #[test]
        fn memory_stays_bounded_for_any_key_stream(
            ops in proptest::collection::vec((0u8..40, 0u16..30, 0u8..3, 0u64..400), 1..400)
        ) {
            let c = LazyConfig { keys: 16, max_tracked: 8, ..LazyConfig::default() };
            let mut l = Lazy::new(c);
            let t0 = Instant::now();
            let mut t = t0;
            for (src, dport, kind, dt) in ops {
                t += Duration::from_millis(dt);
                let kind = [FlowKind::New, FlowKind::Update, FlowKind::Destroy][usize::from(kind)];
                l.on_change(t, kind, flow(src, 1000 + u16::from(src), dport));
                l.poll_barrier(t);
                prop_assert!(l.tracked() <= 8);
                prop_assert!(l.order.len() <= 16);
                prop_assert_eq!(l.slots.len(), 16);
                prop_assert!(l.stats().keys_used <= 16);
                prop_assert_eq!(l.stats().kb_bytes, (16 * KEY_BYTES) as u64);
            }
            l.poll_barrier(t + Duration::from_secs(1));
            prop_assert_eq!(l.tracked(), 0);
            prop_assert!(l.order.is_empty());
        }
    }
}
