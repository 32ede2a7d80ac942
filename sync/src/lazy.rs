//! Bayes lazy replication (hFT-FW, section VI): do not replicate state
//! changes that are predicted to be superseded before replicating them
//! would pay off.
//!
//! hFT-FW classifies each state change of a flow as *transitional* (the
//! flow moves on to another state, or ends, within a time barrier: the
//! paper's 200 ms, or twice the link latency) or *stable*, learns per
//! service and per state how often changes are transitional, and skips or
//! delays those it predicts to be transitional. A short TCP connection
//! passes SYN_SENT, SYN_RECV, ESTABLISHED and the FIN states within
//! milliseconds and rests in TIME_WAIT: only the last one is worth sending.
//!
//! The model here, sans-IO (time is a parameter):
//! - a knowledge base keyed by (source address, destination address,
//!   destination port, protocol); each key holds, per state (the TCP state,
//!   or for other protocols whether a reply was seen), the number of
//!   changes into that state that were transitional and the total:
//!   `P(stable | key, state) = (stable + 1) / (total + 2)`, the naive Bayes
//!   estimate with Laplace smoothing; an unseen pair is stable with
//!   probability 1/2;
//! - a change is *held* when `P(stable) <= threshold` (the paper's
//!   classification barrier: 0.125 saved 40-50% at about 2% wrong): the
//!   newest held state replaces the previous one; if the flow changes again
//!   or ends before the barrier, the held change is never sent (saved; a
//!   flow the peer never heard of sends no DESTROY either); if it rests in
//!   the held state past the barrier, that state is sent then (delayed:
//!   a wrong prediction, as the paper counts them);
//! - every change trains its (key, state) once its outcome is known: at
//!   the flow's next change or end within the barrier (transitional), or
//!   at the barrier (stable);
//! - after `max_wrong` wrong predictions in a row a key is reset (the
//!   traffic changed; the paper resets "outdated" tuples);
//! - the time barrier is the paper's "200 ms, or twice the link latency":
//!   `barrier` is the least, and a TCP flow whose round trip is known
//!   gets twice it, up to `max_barrier`. The round trip is the time from
//!   the flow's SYN_SENT to its SYN_RECV as the firewall saw them; each
//!   key keeps a moving average of its flows' (for a flow's first states,
//!   before its own handshake is seen). Without this a 260 ms path would
//!   rest in SYN_SENT longer than 200 ms, so every handshake would look
//!   stable and be sent.
//!
//! Memory is bounded and allocated once: the knowledge base is a
//! direct-mapped table of `keys` slots ([`KEY_BYTES`] each: the full key
//! for the collision check and the counts of every state; a new key takes
//! its slot over), and at most `max_tracked` flows that changed within the
//! last barrier are followed (past that, changes are sent at once and not
//! learned from, counted).

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::{BinaryHeap, HashMap};
use std::hash::BuildHasher;
use std::time::{Duration, Instant};

use ftfw_dataplane::flow::{proto, status, Addr, FlowKey, FlowState, TcpState};

use crate::engine::FlowKind;

/// Settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LazyConfig {
    /// A state that lasts longer than this is stable (hFT-FW: 200 ms, or
    /// twice the link latency): the least barrier.
    pub barrier: Duration,
    /// The most a flow's barrier grows to with its round trip (twice the
    /// round trip, at least `barrier`); equal to `barrier`: fixed.
    pub max_barrier: Duration,
    /// A change is held when `P(stable | key, state)` is at or below this
    /// (hFT-FW's classification barrier; 0.125 in its best runs).
    pub threshold: f64,
    /// Wrong predictions in a row after which a key is reset.
    pub max_wrong: u16,
    /// Slots in the knowledge base (rounded up to a power of two).
    pub keys: usize,
    /// Flows followed until their newest state is a barrier old, at most.
    pub max_tracked: usize,
}

// `threshold` is a probability checked to lie in (0, 1) by whoever builds
// the config (never NaN), so equality is reflexive.
impl Eq for LazyConfig {}

impl Default for LazyConfig {
    fn default() -> Self {
        LazyConfig {
            barrier: Duration::from_millis(200),
            max_barrier: Duration::from_millis(1000),
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
    /// Replicate this (the kind may differ from the change's: the first
    /// change the peer hears of a flow goes as NEW).
    Send(FlowKind, FlowState),
    /// Nothing to send now (held, or a change of a flow the peer never
    /// heard of that ended).
    Hold,
}

/// Counters, as `sync status` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LazyStats {
    /// Changes predicted transitional (held).
    pub predicted_transitional: u64,
    /// Changes predicted stable (sent at once).
    pub predicted_stable: u64,
    /// Messages never sent: held changes superseded or ended in time, and
    /// DESTROYs of flows the peer never heard of.
    pub saved_msgs: u64,
    /// Held changes sent late because the flow rested in that state past
    /// the barrier (wrong predictions).
    pub delayed: u64,
    /// Changes predicted stable that were superseded within the barrier
    /// (messages that could have been saved).
    pub stable_but_short: u64,
    /// Keys reset after `max_wrong` wrong predictions in a row.
    pub key_resets: u64,
    /// Keys that took over a slot held by another key.
    pub key_evictions: u64,
    /// Changes sent at once because `max_tracked` flows were followed.
    pub untracked: u64,
    /// Keys in the knowledge base now.
    pub keys_used: u64,
    /// Bytes of the knowledge base (all slots; allocated once).
    pub kb_bytes: u64,
}

/// Bytes of one knowledge-base slot (hFT-FW: 80 bytes per tuple).
pub const KEY_BYTES: usize = std::mem::size_of::<Slot>();

/// States told apart: the ten TCP states, and for other protocols "no
/// reply yet" and "replied".
const FEATURES: usize = 12;

fn feature(st: &FlowState) -> usize {
    if st.key.orig.proto == proto::TCP {
        usize::from(st.tcp_state as u8).min(9)
    } else if st.status & status::SEEN_REPLY != 0 {
        11
    } else {
        10
    }
}

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
    wrong: u8,
    /// Moving average (7/8 old) of its TCP flows' round trips, in µs (0:
    /// none seen).
    rtt_us: u32,
    /// Per state: (transitional, total).
    counts: [(u16, u16); FEATURES],
}

impl Slot {
    fn p_stable(&self, f: usize) -> f64 {
        let (tr, total) = self.counts[f];
        (f64::from(total - tr) + 1.0) / (f64::from(total) + 2.0)
    }

    fn learn(&mut self, f: usize, transitional: bool) {
        let c = &mut self.counts[f];
        if c.1 == u16::MAX {
            // Halve both, keeping the ratio.
            *c = (c.0 / 2, c.1 / 2);
        }
        c.1 += 1;
        c.0 += u16::from(transitional);
    }
}

/// A flow whose newest state is younger than the barrier.
#[derive(Debug)]
struct Young {
    /// When it entered its newest state.
    since: Instant,
    /// That state's feature.
    feature: usize,
    /// The held change (kind as it will be sent), when predicted transitional.
    held: Option<(FlowKind, FlowState)>,
    /// Whether the peer has heard of the flow.
    known: bool,
    /// Its own round trip (SYN_SENT to SYN_RECV), once seen.
    rtt: Option<Duration>,
}

/// When a young state's barrier passes (min-heap by time, then order of
/// arrival); stale entries (the flow changed since) are skipped.
#[derive(Debug, PartialEq, Eq)]
struct Due {
    at: Instant,
    seq: u64,
    since: Instant,
    key: FlowKey,
}

impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

/// The predictor; see the module docs.
#[derive(Debug)]
pub struct Lazy {
    cfg: LazyConfig,
    slots: Vec<Slot>,
    hasher: RandomState,
    young: HashMap<FlowKey, Young>,
    /// Young flows by the time their barrier passes.
    order: BinaryHeap<Reverse<Due>>,
    next_seq: u64,
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
            order: BinaryHeap::new(),
            next_seq: 0,
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

    /// Flows followed now.
    pub fn tracked(&self) -> usize {
        self.young.len()
    }

    fn slot_index(&self, k: &ServiceKey) -> usize {
        let h = self.hasher.hash_one((k.src, k.dst, k.dport, k.proto));
        // The table length is a power of two: the low bits pick the slot.
        #[allow(clippy::cast_possible_truncation)]
        let i = (h as usize) & (self.slots.len() - 1);
        i
    }

    /// `P(stable)` of a change of a flow like `st` into `st`'s state (1/2
    /// for a service or state never seen).
    pub fn p_stable(&self, st: &FlowState) -> f64 {
        let k = ServiceKey::of(&st.key);
        let s = &self.slots[self.slot_index(&k)];
        if s.used && s.key == k {
            s.p_stable(feature(st))
        } else {
            0.5
        }
    }

    /// The barrier of a young state (`feature`) of `key` whose flow's
    /// round trip is `rtt` (else its key's average): twice the round trip,
    /// within `barrier..=max_barrier`. With neither known, `barrier`,
    /// except for a TCP SYN_SENT, which waits up to `max_barrier`: its
    /// SYN_RECV is what teaches the round trip.
    fn barrier_for(&self, key: &FlowKey, rtt: Option<Duration>, feature: usize) -> Duration {
        let lo = self.cfg.barrier;
        let hi = self.cfg.max_barrier.max(lo);
        let rtt = rtt.or_else(|| {
            let k = ServiceKey::of(key);
            let s = &self.slots[self.slot_index(&k)];
            (s.used && s.key == k && s.rtt_us > 0)
                .then(|| Duration::from_micros(u64::from(s.rtt_us)))
        });
        match rtt {
            Some(r) => (r * 2).clamp(lo, hi),
            None if key.orig.proto == proto::TCP && feature == TcpState::SynSent as usize => hi,
            None => lo,
        }
    }

    /// Learns a TCP flow's round trip into its key's average.
    fn learn_rtt(&mut self, key: &FlowKey, rtt: Duration) {
        let us = u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX);
        let s = self.slot_mut(&ServiceKey::of(key));
        s.rtt_us = if s.rtt_us == 0 {
            us.max(1)
        } else {
            u32::try_from((u64::from(s.rtt_us) * 7 + u64::from(us)) / 8)
                .unwrap_or(u32::MAX)
                .max(1)
        };
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

    /// The outcome of the young state of `key` is known: trains it, counts
    /// what the prediction cost, and returns the held change, if any.
    fn settle(&mut self, key: &FlowKey, y: &Young, transitional: bool) {
        let sk = ServiceKey::of(key);
        let max_wrong = self.cfg.max_wrong;
        let held = y.held.is_some();
        let s = self.slot_mut(&sk);
        s.learn(y.feature, transitional);
        let mut reset = false;
        if held && !transitional {
            s.wrong = s.wrong.saturating_add(1);
            if u16::from(s.wrong) >= max_wrong {
                *s = Slot {
                    key: sk,
                    used: true,
                    ..Slot::default()
                };
                reset = true;
            }
        } else if held || !transitional {
            s.wrong = 0;
        }
        self.stats.key_resets += u64::from(reset);
        if !held && transitional {
            self.stats.stable_but_short += 1;
        }
    }

    /// One state change of a flow, at `now`: what to replicate.
    pub fn on_change(&mut self, now: Instant, kind: FlowKind, state: FlowState) -> Verdict {
        let key = state.key;
        let prev = self.young.remove(&key);
        let mut known = true;
        let mut rtt = None;
        if let Some(y) = &prev {
            // Superseded within the barrier: transitional.
            self.settle(&key, y, true);
            if y.held.is_some() {
                self.stats.saved_msgs += 1;
            }
            known = y.known;
            rtt = y.rtt;
            // (Features 1 and 2 are TCP's: other protocols use 10 and 11.)
            if rtt.is_none()
                && y.feature == TcpState::SynSent as usize
                && feature(&state) == TcpState::SynRecv as usize
            {
                let r = now.saturating_duration_since(y.since);
                self.learn_rtt(&key, r);
                rtt = Some(r);
            }
        }
        if kind == FlowKind::New {
            known = false;
        }
        if kind == FlowKind::Destroy {
            if known {
                return Verdict::Send(kind, state);
            }
            self.stats.saved_msgs += 1;
            return Verdict::Hold;
        }
        if self.young.len() >= self.cfg.max_tracked
            || self.order.len() >= self.cfg.max_tracked.saturating_mul(2)
        {
            self.stats.untracked += 1;
            let kind = if known { kind } else { FlowKind::New };
            return Verdict::Send(kind, state);
        }
        let send_kind = if known {
            FlowKind::Update
        } else {
            FlowKind::New
        };
        let transitional = self.p_stable(&state) <= self.cfg.threshold;
        let at = now + self.barrier_for(&key, rtt, feature(&state));
        self.order.push(Reverse(Due {
            at,
            seq: self.next_seq,
            since: now,
            key,
        }));
        self.next_seq += 1;
        let f = feature(&state);
        if transitional {
            self.stats.predicted_transitional += 1;
            self.young.insert(
                key,
                Young {
                    since: now,
                    feature: f,
                    held: Some((send_kind, state)),
                    known,
                    rtt,
                },
            );
            Verdict::Hold
        } else {
            self.stats.predicted_stable += 1;
            self.young.insert(
                key,
                Young {
                    since: now,
                    feature: f,
                    held: None,
                    known: true,
                    rtt,
                },
            );
            Verdict::Send(send_kind, state)
        }
    }

    /// Flows whose newest state has lasted its barrier by `now`: trains
    /// it as stable and returns the held changes to send (late). Bounded
    /// by the number of changes whose barrier passed by `now`.
    pub fn poll_barrier(&mut self, now: Instant) -> Vec<(FlowKind, FlowState)> {
        let mut out = Vec::new();
        while let Some(Reverse(d)) = self.order.peek() {
            if d.at > now {
                break;
            }
            let Some(Reverse(Due { since, key, .. })) = self.order.pop() else {
                break;
            };
            if self.young.get(&key).is_none_or(|y| y.since != since) {
                continue; // superseded or ended: settled then
            }
            let Some(y) = self.young.remove(&key) else {
                continue;
            };
            self.settle(&key, &y, false);
            if let Some(h) = y.held {
                self.stats.delayed += 1;
                out.push(h);
            }
        }
        out
    }

    /// When the next barrier passes (`None`: no young flow).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.order.peek().map(|Reverse(d)| d.at)
    }

    /// Everything held, to send at once (a full export is under way:
    /// nothing may stay unreplicated). The flows stay followed, now known
    /// to the peer.
    pub fn release_all(&mut self) -> Vec<(FlowKind, FlowState)> {
        let mut out = Vec::new();
        for y in self.young.values_mut() {
            if let Some(h) = y.held.take() {
                y.known = true;
                out.push(h);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftfw_dataplane::flow::{TcpState, Tuple};
    use proptest::prelude::*;

    fn flow(p: u8, src: u8, sport: u16, dport: u16) -> FlowState {
        FlowState {
            key: FlowKey {
                orig: Tuple::new(
                    format!("192.0.2.{src}").parse().unwrap(),
                    "198.51.100.1".parse().unwrap(),
                    p,
                    sport,
                    dport,
                ),
                zone: 0,
            },
            tcp_state: TcpState::None,
            status: 0,
            timeout_secs: 120,
            mark: 0,
            wscale: [0; 2],
            counters: Default::default(),
            extras: Default::default(),
        }
    }

    fn tcp_in(sport: u16, st: TcpState) -> FlowState {
        let mut f = flow(proto::TCP, 1, sport, 80);
        f.tcp_state = st;
        f
    }

    fn cfg() -> LazyConfig {
        LazyConfig {
            keys: 64,
            ..LazyConfig::default()
        }
    }

    const MS: Duration = Duration::from_millis(1);

    /// A short TCP connection at `t`: through the handshake and the close
    /// within 40 ms, then resting in TIME_WAIT. Returns what was sent.
    fn short_connection(l: &mut Lazy, t: Instant, sport: u16) -> Vec<(FlowKind, TcpState)> {
        let mut sent = Vec::new();
        let steps = [
            (FlowKind::New, TcpState::SynSent),
            (FlowKind::Update, TcpState::SynRecv),
            (FlowKind::Update, TcpState::Established),
            (FlowKind::Update, TcpState::FinWait),
            (FlowKind::Update, TcpState::TimeWait),
        ];
        for ((kind, st), i) in steps.into_iter().zip(0u32..) {
            let at = t + MS * (10 * i);
            if let Verdict::Send(k, f) = l.on_change(at, kind, tcp_in(sport, st)) {
                sent.push((k, f.tcp_state));
            }
        }
        for (k, f) in l.poll_barrier(t + Duration::from_secs(1)) {
            sent.push((k, f.tcp_state));
        }
        sent
    }

    #[test]
    fn probabilities_match_the_hand_computed_laplace_estimates() {
        let mut l = Lazy::new(cfg());
        let t0 = Instant::now();
        let a = flow(proto::UDP, 1, 1000, 53);
        assert_eq!(l.p_stable(&a), 0.5);
        assert_eq!(
            l.on_change(t0, FlowKind::New, a.clone()),
            Verdict::Send(FlowKind::New, a.clone())
        );
        // The reply 10 ms later: "no reply yet" was transitional, 1 of 1:
        // (0 + 1) / (1 + 2).
        let mut r = a.clone();
        r.status |= status::SEEN_REPLY;
        assert!(matches!(
            l.on_change(t0 + MS * 10, FlowKind::Update, r.clone()),
            Verdict::Send(..)
        ));
        assert!((l.p_stable(&a) - 1.0 / 3.0).abs() < 1e-12);
        // "Replied" rests past the barrier: stable, (1 + 1) / (1 + 2).
        assert!(l.poll_barrier(t0 + MS * 300).is_empty());
        assert!((l.p_stable(&r) - 2.0 / 3.0).abs() < 1e-12);
        // A second flow of the service: 1/4 for "no reply yet".
        let b = flow(proto::UDP, 1, 1001, 53);
        l.on_change(t0 + MS * 400, FlowKind::New, b.clone());
        let mut rb = b.clone();
        rb.status |= status::SEEN_REPLY;
        l.on_change(t0 + MS * 405, FlowKind::Update, rb);
        assert!((l.p_stable(&b) - 0.25).abs() < 1e-12);
        // Another port of the same hosts is another key.
        assert_eq!(l.p_stable(&flow(proto::UDP, 1, 1002, 54)), 0.5);
        let s = l.stats();
        assert_eq!(
            (
                s.predicted_stable,
                s.stable_but_short,
                s.predicted_transitional
            ),
            (4, 2, 0)
        );
    }

    /// A predictor that has seen six short connections of the service, so
    /// its transitional states have P(stable) = 1/8 (held at 0.125).
    fn trained() -> (Lazy, Instant) {
        let mut l = Lazy::new(cfg());
        let t0 = Instant::now();
        for p in 0..6u16 {
            short_connection(&mut l, t0 + Duration::from_secs(u64::from(p)), 2000 + p);
        }
        (l, t0)
    }

    #[test]
    fn short_connections_end_up_costing_one_message_each() {
        let mut l = Lazy::new(cfg());
        let t0 = Instant::now();
        // Unknown service: every change goes out.
        let first = short_connection(&mut l, t0, 2000);
        assert_eq!(first.len(), 5, "{first:?}");
        // After six, each transitional state has P(stable) = 1/8.
        for p in 1..6 {
            short_connection(
                &mut l,
                t0 + Duration::from_secs(p),
                2000 + u16::try_from(p).unwrap(),
            );
        }
        let later = short_connection(&mut l, t0 + Duration::from_secs(10), 3000);
        // Only the state it rests in, and as NEW: the peer never heard of it.
        assert_eq!(later, vec![(FlowKind::New, TcpState::TimeWait)]);
        let s = l.stats();
        assert_eq!(s.predicted_transitional, 4);
        assert_eq!(s.saved_msgs, 4);
        assert_eq!(s.delayed, 0);
    }

    #[test]
    fn a_held_state_the_flow_rests_in_is_sent_late_and_the_flow_replicates_after() {
        let (mut l, t0) = trained();
        // A long transfer: ESTABLISHED is predicted transitional, but rests.
        let t = t0 + Duration::from_secs(10);
        assert_eq!(
            l.on_change(t, FlowKind::New, tcp_in(4000, TcpState::SynSent)),
            Verdict::Hold
        );
        assert_eq!(
            l.on_change(t + MS, FlowKind::Update, tcp_in(4000, TcpState::SynRecv)),
            Verdict::Hold
        );
        assert_eq!(
            l.on_change(
                t + MS * 2,
                FlowKind::Update,
                tcp_in(4000, TcpState::Established)
            ),
            Verdict::Hold
        );
        // The wake-up may come early (older, superseded entries), never late.
        assert!(l.next_deadline().is_some_and(|d| d <= t + MS * 202));
        assert!(l.poll_barrier(t + MS * 201).is_empty());
        assert_eq!(
            l.poll_barrier(t + MS * 202),
            vec![(FlowKind::New, tcp_in(4000, TcpState::Established))]
        );
        assert_eq!(l.stats().delayed, 1);
        // The peer knows it now: its end is replicated.
        let end = t + Duration::from_secs(5);
        assert!(matches!(
            l.on_change(end, FlowKind::Update, tcp_in(4000, TcpState::FinWait)),
            Verdict::Hold
        ));
        assert_eq!(
            l.on_change(end + MS, FlowKind::Destroy, tcp_in(4000, TcpState::FinWait)),
            Verdict::Send(FlowKind::Destroy, tcp_in(4000, TcpState::FinWait))
        );
        // ESTABLISHED was stable once: (1 + 1) / (7 + 2).
        assert!((l.p_stable(&tcp_in(1, TcpState::Established)) - 2.0 / 9.0).abs() < 1e-12);
    }

    #[test]
    fn a_flow_the_peer_never_heard_of_ends_without_a_destroy() {
        let (mut l, t0) = trained();
        let t = t0 + Duration::from_secs(10);
        assert_eq!(
            l.on_change(t, FlowKind::New, tcp_in(5000, TcpState::SynSent)),
            Verdict::Hold
        );
        assert_eq!(
            l.on_change(t + MS, FlowKind::Destroy, tcp_in(5000, TcpState::SynSent)),
            Verdict::Hold
        );
        assert_eq!(l.stats().saved_msgs, 2);
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn wrong_predictions_in_a_row_reset_the_key() {
        let mut l = Lazy::new(LazyConfig {
            threshold: 0.4,
            max_wrong: 2,
            ..cfg()
        });
        let t0 = Instant::now();
        // Three short UDP exchanges that never see a reply... then two
        // flows that rest unreplied: held (1/5, then 2/6) and wrong twice.
        for p in 0..3u16 {
            let f = flow(proto::UDP, 1, 1000 + p, 53);
            let t = t0 + Duration::from_secs(u64::from(p));
            l.on_change(t, FlowKind::New, f.clone());
            l.on_change(t + MS, FlowKind::Destroy, f);
        }
        for p in 0..2u16 {
            let f = flow(proto::UDP, 1, 2000 + p, 53);
            let t = t0 + Duration::from_secs(10 + u64::from(p));
            assert_eq!(l.on_change(t, FlowKind::New, f), Verdict::Hold, "flow {p}");
            assert_eq!(l.poll_barrier(t + MS * 250).len(), 1);
        }
        assert_eq!(l.stats().key_resets, 1);
        assert_eq!(
            l.p_stable(&flow(proto::UDP, 1, 1, 53)),
            0.5,
            "reset to no knowledge"
        );
    }

    #[test]
    fn release_all_sends_what_is_held_and_the_flows_become_known() {
        let (mut l, t0) = trained();
        let t = t0 + Duration::from_secs(10);
        l.on_change(t, FlowKind::New, tcp_in(6000, TcpState::SynSent));
        l.on_change(t, FlowKind::New, tcp_in(6001, TcpState::SynSent));
        let out = l.release_all();
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|(k, _)| *k == FlowKind::New));
        assert!(l.release_all().is_empty());
        assert!(matches!(
            l.on_change(t + MS, FlowKind::Destroy, tcp_in(6000, TcpState::SynSent)),
            Verdict::Send(FlowKind::Destroy, _)
        ));
    }

    #[test]
    fn a_knowledge_base_slot_is_about_the_papers_80_bytes() {
        // hFT-FW: 80 bytes per tuple. Ours holds two IPv6-sized addresses
        // and twelve states' counts.
        const { assert!(KEY_BYTES <= 96) };
        assert_eq!(Lazy::new(cfg()).stats().kb_bytes, (64 * KEY_BYTES) as u64);
    }

    /// Connections on a 300 ms path: with the barrier fixed at 200 ms
    /// their SYN_SENT outlasts it and trains as stable; with the barrier
    /// at twice the round trip (the key's average) it trains as
    /// transitional, and the states after it wait twice the flow's own
    /// round trip.
    #[test]
    fn the_barrier_follows_twice_the_round_trip() {
        let rtt = MS * 300;
        let run = |max_barrier: Duration| {
            let mut l = Lazy::new(LazyConfig {
                max_barrier,
                ..cfg()
            });
            let mut t = Instant::now();
            for sport in 1000..1020 {
                let steps = [
                    (FlowKind::New, TcpState::SynSent, Duration::ZERO),
                    (FlowKind::Update, TcpState::SynRecv, rtt),
                    (FlowKind::Update, TcpState::Established, rtt + MS),
                ];
                for (kind, st, at) in steps {
                    l.poll_barrier(t + at);
                    l.on_change(t + at, kind, tcp_in(sport, st));
                }
                l.on_change(
                    t + rtt + MS * 2,
                    FlowKind::Destroy,
                    tcp_in(sport, TcpState::Close),
                );
                t += Duration::from_secs(2);
                l.poll_barrier(t);
            }
            l
        };
        let fixed = run(MS * 200);
        let adaptive = run(Duration::from_secs(1));
        let syn = tcp_in(1, TcpState::SynSent);
        assert!(fixed.p_stable(&syn) > 0.9, "{}", fixed.p_stable(&syn));
        assert!(adaptive.p_stable(&syn) < 0.1, "{}", adaptive.p_stable(&syn));
        let f = feature(&syn);
        assert_eq!(adaptive.barrier_for(&syn.key, None, f), MS * 600);
        assert_eq!(adaptive.barrier_for(&syn.key, Some(MS * 50), f), MS * 200);
        assert_eq!(adaptive.barrier_for(&syn.key, Some(MS * 900), f), MS * 1000);
        assert_eq!(fixed.barrier_for(&syn.key, None, f), MS * 200);
        // A key never seen: its SYN_SENT waits for the round trip to be
        // learned, other states take the least barrier.
        let other = tcp_in(1, TcpState::SynSent);
        let mut unseen = other.key;
        unseen.orig.dst_port = 8080;
        assert_eq!(adaptive.barrier_for(&unseen, None, f), MS * 1000);
        assert_eq!(
            adaptive.barrier_for(&unseen, None, TcpState::Established as usize),
            MS * 200
        );
        // A flow's own round trip sets its later states' barrier: its
        // ESTABLISHED, held, is not sent at 500 ms but at 2 x 300 ms.
        let mut l = adaptive;
        let t = Instant::now() + Duration::from_secs(100);
        l.on_change(t, FlowKind::New, tcp_in(5000, TcpState::SynSent));
        l.on_change(t + rtt, FlowKind::Update, tcp_in(5000, TcpState::SynRecv));
        let est = t + rtt + MS;
        l.on_change(est, FlowKind::Update, tcp_in(5000, TcpState::Established));
        assert!(l.poll_barrier(est + MS * 599).is_empty());
        let late = l.poll_barrier(est + MS * 600);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].1.tcp_state, TcpState::Established);
    }

    #[test]
    fn the_number_of_followed_flows_is_capped() {
        let mut l = Lazy::new(LazyConfig {
            max_tracked: 2,
            ..cfg()
        });
        let t0 = Instant::now();
        for p in 0..3 {
            assert!(matches!(
                l.on_change(t0, FlowKind::New, flow(proto::UDP, 1, 7000 + p, 53)),
                Verdict::Send(FlowKind::New, _)
            ));
        }
        assert_eq!(l.tracked(), 2);
        assert_eq!(l.stats().untracked, 1);
    }

    proptest! {
        /// Whatever the change stream, memory stays at the table allocated
        /// up front plus at most `max_tracked` followed flows, and once the
        /// barrier has passed nothing is held.
        #[test]
        fn memory_stays_bounded_for_any_change_stream(
            ops in proptest::collection::vec((0u8..40, 0u16..30, 0u8..3, 0u8..10, 0u64..300), 1..400)
        ) {
            let c = LazyConfig { keys: 16, max_tracked: 8, ..LazyConfig::default() };
            let mut l = Lazy::new(c);
            let mut t = Instant::now();
            for (src, dport, kind, st, dt) in ops {
                t += Duration::from_millis(dt);
                let kind = [FlowKind::New, FlowKind::Update, FlowKind::Destroy][usize::from(kind)];
                let mut f = flow(proto::TCP, src, 1000 + u16::from(src), dport);
                f.tcp_state = TcpState::ALL[usize::from(st)];
                l.on_change(t, kind, f);
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
            prop_assert!(l.release_all().is_empty());
        }
    }
}
