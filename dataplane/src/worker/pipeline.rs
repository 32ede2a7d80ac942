//! The per-packet pipeline a worker runs to completion:
//! `parse (+ L4 checksum) -> link policy -> conntrack -> ACL (only when the
//! flow's verdict for this direction is not cached) -> decision`.
//!
//! Rule semantics are nftables': every packet is judged by the rules in
//! order with its own conntrack state (NEW in the original direction until
//! a reply is seen, ESTABLISHED after; RELATED for ICMP errors; INVALID).
//! Because a packet's tuple, input port and conntrack state fully decide the
//! verdict, the verdict is cached per flow and direction (with the input
//! port) and reused until the rules change, the direction's state changes
//! or a packet arrives on another port. A verdict that involved a matching
//! `log` rule is never cached, so such packets are all logged.
//!
//! Kept apart from the worker loop so the benchmark and tests can drive it
//! directly on one thread.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::acl::{self, AclInput};
use crate::conntrack::{FlowVerdict, NatRewrite, NewFlow, Shard, Track};
use crate::flow::{proto, CtState, Dir, Tuple};
use crate::meta::{Fragment, PacketMeta};
use crate::packet;
use crate::port::{Frame, PacketBuf};

use super::counters::WorkerCounters;
use super::ethertypes::PassEthertypes;

mod helpers;

/// The rule set workers classify with, swapped whole on reload.
#[derive(Debug)]
pub struct ActiveRules {
    /// Bumped on every successful reload (a `u64`: it never wraps). Flows
    /// keep the low 16 bits of the generation their cached verdicts were
    /// computed under and are re-judged when those differ; a worker that
    /// sees the bits above them change forgets every cached verdict, so a
    /// flow idle across any multiple of 65,536 reloads cannot alias.
    pub generation: u64,
    /// The compiled classifier.
    pub classifier: acl::Classifier,
    /// How much of each new flow is replicated (`sync` levels).
    pub sync: SyncPolicy,
    /// The `nat` rules, tried on each new flow the filter rules accept.
    pub nat: crate::nat::NatRules,
    /// Which helper a new flow gets (`helper` on its rule, or its port).
    pub helpers: crate::helper::HelperPolicy,
}

/// Sync levels: a rule's own (`sync established` on the accept rule that
/// let the flow in), else its zone's, else the default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncPolicy {
    /// Per rule index, the rule's level if it names one.
    pub rules: Vec<Option<crate::flow::SyncLevel>>,
    /// Per zone levels.
    pub zones: Vec<(u16, crate::flow::SyncLevel)>,
    /// Everything else.
    pub default: crate::flow::SyncLevel,
}

impl SyncPolicy {
    /// The policy for `set`, with per-zone levels and a default.
    pub fn new(
        set: &acl::RuleSet,
        zones: Vec<(u16, crate::flow::SyncLevel)>,
        default: crate::flow::SyncLevel,
    ) -> SyncPolicy {
        SyncPolicy {
            rules: set.rules().map(|r| r.rule.sync).collect(),
            zones,
            default,
        }
    }

    /// The level of a flow let in by rule `rule` (`None`: the policy) in
    /// `zone`.
    pub fn level(&self, rule: Option<u32>, zone: u16) -> crate::flow::SyncLevel {
        rule.and_then(|r| self.rules.get(usize::try_from(r).ok()?).copied().flatten())
            .or_else(|| self.zones.iter().find(|(z, _)| *z == zone).map(|(_, l)| *l))
            .unwrap_or(self.default)
    }
}

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send it out of the bridge peer port.
    Forward,
    /// Drop it.
    Drop,
    /// Drop it and answer with a TCP RST or ICMP unreachable.
    Reject,
}

/// One `log` rule hit, handed to the control thread to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Worker that saw the packet.
    pub worker: u16,
    /// Index of the log rule.
    pub rule: u32,
    /// Input port index.
    pub in_port: u16,
    /// The packet's tuple.
    pub tuple: Tuple,
    /// Its conntrack state.
    pub ct: CtState,
    /// What finally happened to it.
    pub decision: Decision,
}

/// The pipeline state one worker owns.
#[derive(Debug)]
pub struct Pipeline {
    /// Worker number (for log records).
    pub worker: u16,
    /// The worker's conntrack shard.
    pub shard: Shard,
    /// The worker's counters.
    pub counters: WorkerCounters,
    logs: Option<Arc<ArrayQueue<LogRecord>>>,
    /// The rule that decided the last classification (`None`: the policy).
    last_rule: Option<u32>,
    /// The flow slot of the packet last decided (`u32::MAX`: none) and
    /// whether that packet created it (for deferring first packets).
    last_flow: (u32, bool),
    /// The rule generation last decided with (to notice when its low 16
    /// bits, which flows store, wrap).
    seen_gen: u64,
    /// Non-IP ethertypes passed unfiltered.
    pass_ethertypes: PassEthertypes,
    /// Bridge peer port of each input port index (`u16::MAX`: none), to
    /// judge a picked-up flow as if its other side had opened it.
    peers: Vec<u16>,
    /// Virtual reassembly: first fragments' verdicts for their later
    /// fragments.
    pub(super) frags: super::frags::FragTable,
    /// The rewrite the packet last decided needs (translated flows only).
    nat_rw: Option<NatRewrite>,
    /// What a translated flow's reply must steer like (see
    /// [`crate::nat::alloc`]).
    pub nat_steering: crate::nat::alloc::Steering,
    /// Routed mode: routes and port addresses (see [`Pipeline::set_l3`]).
    l3: Option<Arc<crate::l3::L3Config>>,
    /// Connections helpers announced, shared by the appliance's workers
    /// (see [`crate::helper`]).
    pub expect: Arc<crate::helper::SharedExpect>,
    /// The flow whose helper must read the packet last decided.
    helper_rq: Option<helpers::HelperRequest>,
    /// Helpers' per-direction line state.
    helper_state: helpers::HelperState,
    /// The second the last packet was decided at.
    now: u32,
    /// The worker's budget of ICMP errors (rejects here, routed mode's
    /// answers through [`crate::l3::Router`]).
    pub icmp: crate::l3::router::IcmpLimiter,
}

impl Pipeline {
    /// A pipeline over `shard`; log records go to `logs` if given.
    pub fn new(worker: u16, shard: Shard, logs: Option<Arc<ArrayQueue<LogRecord>>>) -> Pipeline {
        Pipeline {
            worker,
            shard,
            counters: WorkerCounters::default(),
            logs,
            last_rule: None,
            last_flow: (u32::MAX, false),
            seen_gen: 0,
            pass_ethertypes: PassEthertypes::DEFAULT,
            peers: Vec::new(),
            frags: super::frags::FragTable::default(),
            nat_rw: None,
            nat_steering: crate::nat::alloc::Steering {
                workers: 1,
                buckets: 0,
                rss: None,
            },
            l3: None,
            expect: Arc::default(),
            helper_rq: None,
            helper_state: helpers::HelperState::default(),
            now: 0,
            icmp: crate::l3::router::IcmpLimiter::new(std::time::Instant::now()),
        }
    }

    /// Records that frames entering port `port` leave through `peer` (a
    /// bridge pair); set up once, before packets flow.
    pub fn set_peer(&mut self, port: u16, peer: u16) {
        let i = usize::from(port);
        if self.peers.len() <= i {
            self.peers.resize(i + 1, u16::MAX);
        }
        self.peers[i] = peer;
    }

    fn peer_of(&self, port: u16) -> Option<u16> {
        self.peers
            .get(usize::from(port))
            .copied()
            .filter(|&p| p != u16::MAX && p != port)
    }

    /// Sets which non-IP ethertypes pass (the default: ARP and LLDP).
    pub fn set_pass_ethertypes(&mut self, p: PassEthertypes) {
        self.pass_ethertypes = p;
    }

    /// Parses a frame into `meta` and, unless the port vouches for it
    /// (`csum_verified`), verifies its L4 checksum (a bad one sets
    /// `meta.l4_csum_bad`); returns whether it parsed.
    #[inline]
    pub fn parse(frame: &[u8], csum_verified: bool, meta: &mut PacketMeta) -> bool {
        let ok = Pipeline::parse_headers(frame, meta);
        if ok {
            Pipeline::verify_checksum(frame, csum_verified, meta);
        }
        ok
    }

    /// The first half of [`Pipeline::parse`]: the headers only (no checksum
    /// verified yet: `meta.l4_csum_bad` is false).
    #[inline]
    pub fn parse_headers(frame: &[u8], meta: &mut PacketMeta) -> bool {
        packet::parse_frame_into(frame, meta).is_ok()
    }

    /// The second half of [`Pipeline::parse`], for a frame whose headers
    /// parsed into `meta`: unless the port vouches for it
    /// (`csum_verified`), verifies its L4 checksum.
    #[inline]
    pub fn verify_checksum(frame: &[u8], csum_verified: bool, meta: &mut PacketMeta) {
        meta.l4_csum_bad = !csum_verified && l4_checksum_bad(frame, meta);
    }

    /// Decides a frame that was already parsed (`parsed` false: it did not
    /// parse and is dropped as malformed). `hint` is what
    /// [`Shard::warm`](crate::conntrack::Shard::warm) returned for it, or
    /// `u32::MAX`. Bounded work: at most two table probes and one
    /// classification (none on a cached verdict; three for a TCP mid-stream
    /// pickup, to orient it); no allocation.
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &mut self,
        now: u32,
        rules: &ActiveRules,
        in_port: u16,
        zone: u16,
        parsed: bool,
        meta: &PacketMeta,
        hint: u32,
    ) -> Decision {
        self.last_flow = (u32::MAX, false);
        self.nat_rw = None;
        self.helper_rq = None;
        self.now = now;
        if !parsed {
            self.counters.malformed += 1;
            return Decision::Drop;
        }
        if !meta.is_ip() {
            if self.pass_ethertypes.passes(meta.ethertype) {
                self.counters.non_ip_passed += 1;
                return Decision::Forward;
            }
            self.counters.non_ip_dropped += 1;
            return Decision::Drop;
        }
        if meta.rh0 {
            self.counters.rh0_dropped += 1;
            return Decision::Drop;
        }
        if meta.l4_csum_bad {
            // Before conntrack: a corrupt packet must not create or move state.
            self.counters.bad_checksum += 1;
            return Decision::Drop;
        }
        if is_link_control(meta) {
            self.counters.non_ip_passed += 1;
            return Decision::Forward;
        }
        if rules.generation != self.seen_gen {
            if rules.generation >> 16 != self.seen_gen >> 16 {
                // The stored low bits wrapped: old verdicts could alias.
                self.shard.clear_verdicts();
            }
            self.seen_gen = rules.generation;
        }
        let gen = gen16(rules.generation);
        match meta.fragment {
            Fragment::Later => return self.later_fragment(now, zone, meta),
            Fragment::First => {
                let mut d = self.decide_tracked(now, rules, in_port, zone, meta, hint, gen);
                // Later fragments follow a translation of the packet's
                // addresses; one of an ICMP error's quote they cannot.
                let nat = match &self.nat_rw {
                    Some(NatRewrite::Packet(to)) => Some((to.src, to.dst)),
                    Some(NatRewrite::Error(_)) => {
                        self.nat_rw = None;
                        self.counters.nat_fragments_dropped += 1;
                        d = Decision::Drop;
                        None
                    }
                    None => None,
                };
                if !self
                    .frags
                    .first(meta, zone, now, d == Decision::Forward, nat)
                {
                    self.counters.fragment_table_full += 1;
                }
                return d;
            }
            Fragment::None => {}
        }
        self.decide_tracked(now, rules, in_port, zone, meta, hint, gen)
    }

    /// A later fragment follows its first fragment's verdict (see
    /// [`super::frags`]).
    fn later_fragment(&mut self, now: u32, zone: u16, meta: &PacketMeta) -> Decision {
        use super::frags::Later;
        self.counters.fragments += 1;
        match self.frags.later(meta, zone, now) {
            Later::Forward => Decision::Forward,
            Later::Translate { src, dst } => {
                self.nat_rw = Some(NatRewrite::Packet(crate::flow::Tuple {
                    src,
                    dst,
                    ..meta.tuple
                }));
                Decision::Forward
            }
            Later::Drop => {
                self.counters.dropped_by_rule += 1;
                Decision::Drop
            }
            Later::NoFirst => {
                self.counters.fragments_without_first += 1;
                Decision::Drop
            }
            Later::Overlap => {
                self.counters.fragments_overlapping += 1;
                Decision::Drop
            }
            Later::Oversized => {
                self.counters.fragments_oversized += 1;
                Decision::Drop
            }
        }
    }

    /// [`Pipeline::decide`] for a packet with a transport header.
    #[allow(clippy::too_many_arguments)]
    fn decide_tracked(
        &mut self,
        now: u32,
        rules: &ActiveRules,
        in_port: u16,
        zone: u16,
        meta: &PacketMeta,
        hint: u32,
        gen: u16,
    ) -> Decision {
        match self.shard.track_hinted(now, meta, zone, hint) {
            Track::Established { idx, dir } | Track::Ignored { idx, dir } => {
                self.last_flow = (idx, false);
                if let Some(v) = self.shard.cached_verdict(idx, dir, in_port, gen) {
                    self.counters.fast_path += 1;
                    return match v {
                        FlowVerdict::Accept => {
                            self.nat_rw = self.shard.nat_rewrite(idx, dir);
                            self.request_helper(idx, dir);
                            Decision::Forward
                        }
                        FlowVerdict::Drop => {
                            self.counters.dropped_by_rule += 1;
                            Decision::Drop
                        }
                        FlowVerdict::Reject => Decision::Reject,
                    };
                }
                let ct = self.shard.ct_state(idx, dir);
                let (d, cacheable) = self.classify(rules, in_port, zone, meta, ct);
                if cacheable {
                    self.shard
                        .cache_verdict(idx, dir, in_port, gen, flow_verdict(d));
                }
                if d == Decision::Forward {
                    self.nat_rw = self.shard.nat_rewrite(idx, dir);
                    self.request_helper(idx, dir);
                }
                d
            }
            Track::New(nf) => {
                let nf = self.orient_pickup(rules, in_port, zone, meta, nf);
                if nf.from_reply() {
                    return self.decide_reversed_pickup(now, rules, in_port, zone, meta, &nf, gen);
                }
                // One load and branch while no connection is expected.
                let expected = if self.expect.is_empty() {
                    None
                } else {
                    self.take_expected(now, &nf.key().orig, zone)
                };
                let ct = if expected.is_some() {
                    CtState::Related
                } else {
                    CtState::New
                };
                let (d, cacheable) = self.classify(rules, in_port, zone, meta, ct);
                if d != Decision::Forward {
                    return d;
                }
                let level = rules.sync.level(self.last_rule, zone);
                let attach = crate::conntrack::Attach {
                    helper: rules.helpers.for_flow(self.last_rule, &nf.key().orig),
                    master: expected.map(|e| e.master.orig),
                };
                let follows = expected.and_then(|e| e.nat);
                let confirmed = if rules.nat.is_empty() && attach.is_empty() {
                    self.shard.confirm_at(now, &nf, gen, level)
                } else {
                    let translation = match &follows {
                        // An expected connection of a translated master
                        // follows the master's translation, not the rules.
                        Some(n) => self.follow_master(&nf.key().orig, n, zone),
                        None => self.translate_new(rules, in_port, zone, &nf),
                    };
                    match translation {
                        Ok(None) => self
                            .shard
                            .confirm_attached(now, &nf, gen, level, None, attach),
                        Ok(Some(reply)) => {
                            let r = self.shard.confirm_attached(
                                now,
                                &nf,
                                gen,
                                level,
                                Some(reply),
                                attach,
                            );
                            if let Ok(idx) = r {
                                // The flow's own translation (an existing
                                // flow keeps the one it has).
                                self.nat_rw = self.shard.nat_rewrite(idx, Dir::Original);
                            }
                            r
                        }
                        Err(()) => return Decision::Drop,
                    }
                };
                match confirmed {
                    Ok(idx) => {
                        self.last_flow = (idx, true);
                        if attach.helper.is_some() {
                            self.request_helper(idx, Dir::Original);
                        }
                        if cacheable {
                            // Later packets of this direction are NEW too
                            // until a reply is seen: same tuple, same verdict.
                            self.shard.cache_verdict(
                                idx,
                                Dir::Original,
                                in_port,
                                gen,
                                FlowVerdict::Accept,
                            );
                        }
                        Decision::Forward
                    }
                    // Counted by the shard as table_full.
                    Err(_) => Decision::Drop,
                }
            }
            Track::Related { idx } => {
                let d = self
                    .classify(rules, in_port, zone, meta, CtState::Related)
                    .0;
                if d == Decision::Forward {
                    if let Some(inner) = &meta.icmp_error {
                        self.nat_rw = self.shard.nat_rewrite_error(idx, inner);
                    }
                }
                d
            }
            Track::Invalid(_) => {
                self.classify(rules, in_port, zone, meta, CtState::Invalid)
                    .0
            }
        }
    }

    /// Orients a TCP mid-stream pickup: as the packet travels if the rules
    /// accept it as NEW, else the other way round if they would accept the
    /// reverse packet as NEW on the peer port (the packet is then the flow's
    /// first reply), else as it travels. Only pickups pay for this.
    fn orient_pickup(
        &self,
        rules: &ActiveRules,
        in_port: u16,
        zone: u16,
        meta: &PacketMeta,
        nf: NewFlow,
    ) -> NewFlow {
        let Some(peer) = self.peer_of(in_port) else {
            return nf;
        };
        let Some(rev) = self.shard.reversed_pickup(&nf, meta) else {
            return nf;
        };
        let accepts = |port: u16, tuple: &Tuple| {
            rules
                .classifier
                .classify(&AclInput {
                    in_port: port,
                    zone,
                    tuple,
                    ct: CtState::New,
                })
                .action
                == acl::Action::Accept
        };
        if !accepts(in_port, &meta.tuple) && accepts(peer, &rev.key().orig) {
            rev
        } else {
            nf
        }
    }

    /// The first packet seen of a picked-up flow that travels in its reply
    /// direction: judged as ESTABLISHED; the flow is inserted if it passes.
    #[allow(clippy::too_many_arguments)]
    fn decide_reversed_pickup(
        &mut self,
        now: u32,
        rules: &ActiveRules,
        in_port: u16,
        zone: u16,
        meta: &PacketMeta,
        nf: &NewFlow,
        gen: u16,
    ) -> Decision {
        let (d, cacheable) = self.classify(rules, in_port, zone, meta, CtState::Established);
        if d != Decision::Forward {
            return d;
        }
        let level = rules.sync.level(self.last_rule, zone);
        match self.shard.confirm_at(now, nf, gen, level) {
            Ok(idx) => {
                self.last_flow = (idx, true);
                if cacheable {
                    self.shard
                        .cache_verdict(idx, Dir::Reply, in_port, gen, FlowVerdict::Accept);
                }
                Decision::Forward
            }
            Err(_) => Decision::Drop,
        }
    }

    /// The translation of a new flow the filter rules accepted: `Ok(None)`
    /// when no `nat` rule matches, `Err` when one matches but no
    /// translation is free (counted, the packet is dropped).
    fn translate_new(
        &mut self,
        rules: &ActiveRules,
        in_port: u16,
        zone: u16,
        nf: &NewFlow,
    ) -> Result<Option<crate::flow::Tuple>, ()> {
        let orig = nf.key().orig;
        let out = self.out_port_of(in_port, &orig);
        let Some(rule) = rules.nat.first_match(in_port, out, zone, &orig) else {
            return Ok(None);
        };
        let target = match rule.kind {
            crate::nat::NatKind::Masquerade => {
                let key = crate::l3::IpKey {
                    v6: orig.v6,
                    addr: orig.dst,
                };
                let addr = out.and_then(|o| self.l3.as_ref()?.source_for(o, &key));
                match addr {
                    Some(a) if a.is_ipv6() == orig.v6 => rule.target_at(a),
                    _ => {
                        self.counters.nat_no_port += 1;
                        return Err(());
                    }
                }
            }
            _ => rule.target(),
        };
        let shard = &self.shard;
        let taken = |t: &crate::flow::Tuple| shard.reply_taken(t, zone);
        let mut choice = crate::nat::alloc::choose(&target, &orig, &self.nat_steering, &taken);
        if choice.is_none() && self.nat_steering.rss.is_some() {
            // Under RSS only the addresses of a protocol without ports
            // (ICMP, GRE...) decide the queue: when none of the rule's
            // addresses keeps the reply on this worker, take a free
            // translation anyway; its reply is recorded as foreign and
            // handed back here by the worker RSS gives it.
            let anywhere = crate::nat::alloc::Steering {
                workers: 1,
                rss: None,
                ..self.nat_steering
            };
            choice = crate::nat::alloc::choose(&target, &orig, &anywhere, &taken);
        }
        match choice {
            Some(c) => {
                self.counters.nat_flows += 1;
                Ok(Some(c.reply))
            }
            None => {
                self.counters.nat_no_port += 1;
                Err(())
            }
        }
    }

    /// Runs the helper of the packet last decided (which may rewrite its
    /// payload, changing the frame's length) and moves its sequence
    /// numbers if its flow has an adjustment, then applies the translation
    /// it needs, if any, to its frame; returns `false` (counted) if the
    /// frame could not be rewritten and must be dropped.
    /// `meta` is updated to the translated tuple (routed mode routes by it).
    #[inline]
    pub fn apply_nat(&mut self, frame: &mut Frame, meta: &mut PacketMeta) -> bool {
        if self.helper_rq.is_some() && !self.run_helper(frame, meta) {
            self.nat_rw = None;
            return false;
        }
        let Some(rw) = self.nat_rw.take() else {
            return true;
        };
        let ok = match rw {
            NatRewrite::Packet(to) => {
                let ok = crate::nat::rewrite::translate_packet(frame, meta, &to);
                if ok {
                    meta.tuple = to;
                }
                ok
            }
            NatRewrite::Error(to) => {
                let ok = crate::nat::rewrite::translate_error(frame, meta, &to);
                if ok {
                    if let Some((s, d)) = crate::nat::rewrite::outer_addresses(frame, meta) {
                        meta.tuple.src[..s.len()].copy_from_slice(s);
                        meta.tuple.dst[..d.len()].copy_from_slice(d);
                    }
                    meta.icmp_error = Some(to);
                }
                ok
            }
        };
        if ok {
            self.counters.nat_translated += 1;
        } else {
            self.counters.nat_failed += 1;
        }
        ok
    }

    /// Routed mode: the routes and port addresses NAT rules' `out` and
    /// `masquerade` look at (set per burst while there are NAT rules).
    pub fn set_l3(&mut self, l3: Option<Arc<crate::l3::L3Config>>) {
        self.l3 = l3;
    }

    /// The port a new flow's first packet leaves through: the bridge peer,
    /// or in routed mode the route to its destination.
    fn out_port_of(&self, in_port: u16, t: &crate::flow::Tuple) -> Option<u16> {
        self.peer_of(in_port).or_else(|| {
            let key = crate::l3::IpKey {
                v6: t.v6,
                addr: t.dst,
            };
            self.l3.as_ref()?.routes.lookup(&key).map(|r| r.port)
        })
    }

    /// The flow slot of the packet last given to [`Pipeline::decide`]
    /// (`u32::MAX`: none) and whether that packet created the flow.
    pub fn last_flow(&self) -> (u32, bool) {
        self.last_flow
    }

    /// The benchmark's null pipeline: forward anything that parsed.
    pub fn forward_parsed(&mut self, parsed: bool) -> Decision {
        if parsed {
            Decision::Forward
        } else {
            self.counters.malformed += 1;
            Decision::Drop
        }
    }

    /// Judges a packet by the rules; returns the decision and whether it may
    /// be cached (no `log` rule matched).
    fn classify(
        &mut self,
        rules: &ActiveRules,
        in_port: u16,
        zone: u16,
        meta: &PacketMeta,
        ct: CtState,
    ) -> (Decision, bool) {
        let v = rules.classifier.classify(&AclInput {
            in_port,
            zone,
            tuple: &meta.tuple,
            ct,
        });
        self.last_rule = v.rule;
        let d = match v.action {
            acl::Action::Accept => {
                self.counters.accepted += 1;
                Decision::Forward
            }
            acl::Action::Drop => {
                self.counters.dropped_by_rule += 1;
                Decision::Drop
            }
            acl::Action::Reject => Decision::Reject,
        };
        if let Some(rule) = v.log {
            self.counters.logged += 1;
            if let Some(q) = &self.logs {
                let rec = LogRecord {
                    worker: self.worker,
                    rule,
                    in_port,
                    tuple: meta.tuple,
                    ct,
                    decision: d,
                };
                if q.push(rec).is_err() {
                    self.counters.log_ring_full += 1;
                }
            }
        }
        (d, v.log.is_none())
    }

    /// Writes the answer to a rejected frame into `out`; counts the outcome.
    /// Returns whether there is an answer to send.
    pub fn build_reject(
        &mut self,
        frame: &[u8],
        meta: &PacketMeta,
        out: &mut PacketBuf,
        at: std::time::Instant,
    ) -> bool {
        out.data.clear();
        out.data.resize(crate::port::FRAME_CAPACITY, 0);
        let answer = if meta.tuple.proto == proto::TCP {
            packet::tcp_rst(frame, meta, &mut out.data)
        } else if self.icmp.allow(at, meta.tuple.v6, &meta.tuple.src) {
            packet::icmp_unreachable(frame, meta, &mut out.data)
        } else {
            out.data.clear();
            self.counters.rejected += 1;
            self.counters.icmp_errors_limited += 1;
            return false;
        };
        match answer {
            Ok(n) => {
                out.data.truncate(n);
                self.counters.rejected += 1;
                true
            }
            Err(_) => {
                out.data.clear();
                self.counters.rejected += 1;
                self.counters.reject_failed += 1;
                false
            }
        }
    }

    /// Copies the shard's counters into the worker counters.
    pub fn sync_counters(&mut self) {
        let s = self.shard.stats();
        let c = &mut self.counters;
        c.invalid = s.invalid;
        c.related = s.related;
        c.table_full = s.table_full;
        c.early_drops = s.early_drops;
        c.deltas = s.deltas;
        c.ring_full = s.ring_full;
        c.deltas_merged = s.deltas_merged;
        c.sync_skipped = s.sync_skipped;
        c.timeouts_clamped = s.timeouts_clamped;
        c.flows = self.shard.len() as u64;
        c.capacity = self.shard.capacity() as u64;
        c.flows_created = s.created;
        c.flows_destroyed = s.destroyed;
        c.flows_expired = s.expired;
        self.sync_helper_counters();
    }
}

/// The low 16 bits of a rule generation, as flow entries keep it.
fn gen16(g: u64) -> u16 {
    let b = g.to_le_bytes();
    u16::from_le_bytes([b[0], b[1]])
}

fn flow_verdict(d: Decision) -> FlowVerdict {
    match d {
        Decision::Forward => FlowVerdict::Accept,
        Decision::Drop => FlowVerdict::Drop,
        Decision::Reject => FlowVerdict::Reject,
    }
}

/// Whether the frame's L4 checksum was verified and found wrong (TCP, UDP,
/// ICMP, ICMPv6; not fragments). The one place the pipeline checks
/// checksums.
#[inline]
fn l4_checksum_bad(frame: &[u8], meta: &PacketMeta) -> bool {
    packet::l4_checksum_valid(frame, meta) == Some(false)
}

/// ICMPv6 neighbour/router discovery and MLD: passed like ARP in a bridge.
fn is_link_control(meta: &PacketMeta) -> bool {
    meta.tuple.v6
        && meta.tuple.proto == proto::ICMPV6
        && meta.icmp_error.is_none()
        && crate::conntrack::l4::icmpv6_is_link_control(meta.tuple.icmp_type())
}
