//! `ftfw-lab bench pipeline`: drives the real worker pipeline over `mem`
//! ports on one core and compares it with a null pipeline (parse and
//! forward) through the same harness, in one run.
//!
//! Phases, all on the calling thread:
//! 1. setup: every established flow is opened through the pipeline
//!    (handshake), not timed;
//! 2. `pipeline`: a traffic mix (established data both ways, plus a share
//!    of first packets of new flows) for `duration`;
//! 3. `baseline`: the same mix through the null pipeline;
//! 4. `sessions`: only first packets of new TCP flows, to measure how many
//!    flows the pipeline creates per second.
//!
//! With `--backend dpdk` (feature `dpdk`) the ports are DPDK `net_ring`
//! devices instead of `mem` ports: the same phases, plus the DPDK receive
//! and transmit path (mbuf copy in and out) in every packet's cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ftfw_dataplane::acl::{self, RuleSet};
use ftfw_dataplane::conntrack::{ConntrackConfig, Shard};
use ftfw_dataplane::flow::Tuple;
use ftfw_dataplane::port::mem;
use ftfw_dataplane::port::{PacketBuf, Port, BURST};
use ftfw_dataplane::rng::splitmix64;
use ftfw_dataplane::worker::{ActiveRules, Worker, WorkerCounters, WorkerSpec};

use crate::pktgen::{self, NewFlowGen};

mod commit;
mod report;
mod shard;

pub use commit::{run_commit, CommitReport};
pub use report::render;
use shard::shard_flows_per_sec;

/// The ports the pipeline benchmark runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// In-process `mem` rings.
    #[default]
    Mem,
    /// DPDK `net_ring` devices (feature `dpdk`).
    Dpdk,
}

/// Benchmark knobs.
#[derive(Debug, Clone)]
pub struct PipelineOpts {
    /// Ports to run over.
    pub backend: Backend,
    /// Established flows.
    pub flows: u64,
    /// Share (0..=1) of generated client packets that open a new flow.
    pub new_share: f64,
    /// Frame size in bytes without FCS (60 = a 64-byte packet).
    pub size: usize,
    /// Share (0..=1) of established flows that are UDP (the rest TCP).
    pub udp_share: f64,
    /// Length of each timed phase.
    pub duration: Duration,
    /// Extra synthetic rules compiled into the classifier.
    pub rules: usize,
    /// Seed of the traffic order and synthetic rules.
    pub seed: u64,
    /// Also run the pipeline phase with every established flow source
    /// NATed ([`NAT_RULE`]) and report its rate against the plain one.
    pub nat: bool,
    /// Also run the pipeline phase owning every other cluster bucket and
    /// report the two-member capacity it implies.
    pub multi_primary: bool,
}

impl Default for PipelineOpts {
    fn default() -> Self {
        PipelineOpts {
            backend: Backend::Mem,
            flows: 1_000_000,
            new_share: 0.0,
            size: 60,
            udp_share: 0.0,
            duration: Duration::from_secs(3),
            rules: 1000,
            seed: 1,
            nat: false,
            multi_primary: false,
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PipelineReport {
    /// Ports the run used.
    pub backend: Backend,
    /// Million packets per second through the full pipeline.
    pub mpps: f64,
    /// Million packets per second through the null pipeline.
    pub baseline_mpps: f64,
    /// `mpps / baseline_mpps`.
    pub ratio: f64,
    /// Nanoseconds per packet through the full pipeline (harness included).
    pub ns_per_packet: f64,
    /// Flows created per second when every packet opens a new TCP flow.
    pub new_sessions_per_sec: f64,
    /// Memory per flow slot: table entry plus index share.
    pub bytes_per_flow: usize,
    /// Bytes of one flow table entry.
    pub entry_bytes: usize,
    /// The flow table's slab was mapped with transparent huge pages
    /// advised (tables of 2 MB and more).
    pub flow_table_huge_pages: bool,
    /// Transparent huge pages of this process at the end of the pipeline
    /// phase, KiB (`AnonHugePages`; what the kernel actually gave).
    pub anon_huge_kib: Option<u64>,
    /// Flows in the table at the end of the pipeline phase.
    pub flows: u64,
    /// Frame size.
    pub size: usize,
    /// Rules in the classifier.
    pub rules: usize,
    /// Share of new flows in the mix.
    pub new_share: f64,
    /// Share of UDP flows.
    pub udp_share: f64,
    /// Packets through the full pipeline.
    pub packets: u64,
    /// Packets through the null pipeline.
    pub baseline_packets: u64,
    /// Seconds each timed phase ran.
    pub duration_secs: f64,
    /// Pipeline counters at the end of the pipeline phase.
    pub counters: WorkerCounters,
    /// Nanoseconds per packet by stage of the worker's burst (rx, parse,
    /// lookup, decide, tx), from a separate timed phase with the worker's
    /// stage clock on; `harness` is the rest of `ns_per_packet` (traffic
    /// generation and draining, both hosts' ports).
    pub stages_ns_per_packet: std::collections::BTreeMap<String, f64>,
    /// With `--nat`: million packets per second through the full pipeline
    /// with every flow translated (same traffic, same rules otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat_mpps: Option<f64>,
    /// With `--nat`: the translated pipeline's rate over the plain one's,
    /// the median of three rounds that each run both in turn (a shared
    /// machine drifts between phases by more than NAT costs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat_over_plain: Option<f64>,
    /// With `--nat`: `stages_ns_per_packet` of the translated pipeline (a
    /// phase of its own after the three rounds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat_stages_ns_per_packet: Option<std::collections::BTreeMap<String, f64>>,
    /// With `--nat`: packets the NAT phase rewrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat_translated: Option<u64>,
    /// With `--nat`: packets through the NAT phase.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat_packets: Option<u64>,
    /// With `--nat`: new translated flows per second (the sessions phase
    /// again with every new flow source-NATed: rule, port allocation,
    /// both indexes), on one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat_new_sessions_per_sec: Option<f64>,
    /// With `--nat`: flows made per second by a shard alone (no frames,
    /// no ports: the lookup that misses, the rule's translation chosen
    /// with every candidate looked up, the flow and both indexes), the
    /// first 2M flows into a table of 4M (at the default `--flows`; twice
    /// `--flows` otherwise, at least 10,000), every flow source-NATed; and
    /// the same flows made plain (`shard_new_flows_per_sec`), for the
    /// ratio. What NAT's port allocation costs a core, without the packet
    /// path around it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_new_translated_flows_per_sec: Option<f64>,
    /// With `--nat`: see `shard_new_translated_flows_per_sec`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard_new_flows_per_sec: Option<f64>,
    /// With `--nat --multi-primary`: the same as a cluster member with
    /// 4096 buckets (each reply must fall in its original's bucket).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nat_new_sessions_per_sec_cluster: Option<f64>,
    /// With `--multi-primary`: the worker's ns per packet (stage clock,
    /// harness left out) owning every other one of 4096 buckets, every
    /// frame arriving (a hub: half are another member's and dropped).
    /// Each `--multi-primary` figure is the median of three rounds of the
    /// three settings in turn, each a third of `--duration`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_primary_ns_per_packet: Option<f64>,
    /// With `--multi-primary`: the worker's ns per packet owning every
    /// bucket in the same run (the primary of a pair).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub single_owner_ns_per_packet: Option<f64>,
    /// With `--multi-primary`: `single_owner_ns_per_packet /
    /// multi_primary_ns_per_packet`, the capacity of two members, each on
    /// its own core, over one node's (2 if another member's frames cost
    /// nothing; issue 12 asks 1.8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_primary_capacity: Option<f64>,
    /// With `--multi-primary`: the same member with its port's bucket
    /// filter on (`[cluster] kernel_filter`): the worker's ns (the filter
    /// included, run on receive) per frame offered, the other member's
    /// included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filtered_member_ns_per_frame: Option<f64>,
    /// With `--multi-primary`: the share of offered frames the filtered
    /// member's worker received (its buckets' share, about a half).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filtered_member_received_share: Option<f64>,
    /// With `--multi-primary`: `single_owner_ns_per_packet /
    /// filtered_member_ns_per_frame`, two members' capacity over one
    /// node's with the bucket filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multi_primary_capacity_filtered: Option<f64>,
}

/// The NAT rule of `--nat`: every client (192.0.2.0/24) to a pool of 200
/// addresses that neither the established flows' servers (up to 16M
/// flows) nor the new flows' use, so 1M flows to one server port fit.
pub const NAT_RULE: &str = "nat src from 192.0.2.0/24 to 198.51.100.50-198.51.100.249";

/// [`NAT_RULE`], parsed.
fn bench_nat_rules() -> ftfw_dataplane::nat::NatRules {
    ftfw_dataplane::acl::parse_rules(NAT_RULE, "--nat", 1, &|_| None)
        .expect("the NAT rule parses")
        .nat_rules()
}

/// The rules the benchmark classifies with: established traffic first,
/// then the services, then `extra` synthetic rules, policy drop.
pub fn bench_rules(extra: usize, seed: u64) -> RuleSet {
    let mut text = String::from(
        "policy drop\naccept ct established,related\ndrop ct invalid\naccept proto tcp dport 80 ct new\naccept proto udp dport 80 ct new\n",
    );
    for line in acl::synthetic_rule_text(extra, seed)
        .lines()
        .filter(|l| !l.trim_start().starts_with("policy"))
    {
        text.push_str(line);
        text.push('\n');
    }
    acl::parse_rules(&text, "bench", 1, &acl::synthetic_port_names).expect("bench rules parse")
}

struct Rig {
    worker: Worker,
    client: Box<dyn Port>,
    server: Box<dyn Port>,
}

type PortPair = (Box<dyn Port>, Box<dyn Port>);

fn wire(backend: Backend, a: &str, b: &str) -> PortPair {
    match backend {
        Backend::Mem => {
            let (x, y) = mem::wire(a, b, 8192);
            (Box::new(x), Box::new(y))
        }
        #[cfg(feature = "dpdk")]
        Backend::Dpdk => crate::dpdk::ring_wire(a, b).expect("DPDK net_ring ports"),
        #[cfg(not(feature = "dpdk"))]
        Backend::Dpdk => panic!("ftfw-lab was built without the dpdk feature"),
    }
}

fn rig(
    backend: Backend,
    capacity: usize,
    rules: &RuleSet,
    parse_only: bool,
    nat: ftfw_dataplane::nat::NatRules,
) -> Rig {
    let (client, outside) = wire(backend, "client", "outside");
    let (inside, server) = wire(backend, "inside", "server");
    let active = Arc::new(ArcSwap::from_pointee(ActiveRules {
        generation: 1,
        classifier: rules.compile(),
        sync: Default::default(),
        nat,
        helpers: Default::default(),
    }));
    let spec = WorkerSpec::bridged_pair(
        outside,
        inside,
        ConntrackConfig {
            capacity,
            ..ConntrackConfig::default()
        },
        1 << 16,
    );
    let mut worker = Worker::new(spec, active, None);
    worker.set_parse_only(parse_only);
    Rig {
        worker,
        client,
        server,
    }
}

impl Rig {
    /// One harness step: send what is queued, run one worker iteration,
    /// drain both hosts and the delta ring (as the sync core would).
    fn step(
        &mut self,
        to_server: &mut [PacketBuf],
        to_client: &mut [PacketBuf],
        sink: &mut [PacketBuf],
    ) {
        if !to_server.is_empty() {
            self.client.tx_burst(to_server);
        }
        if !to_client.is_empty() {
            self.server.tx_burst(to_client);
        }
        self.worker.poll_once(Instant::now());
        while self.server.rx_burst(sink) > 0 {}
        while self.client.rx_burst(sink) > 0 {}
        let ring = &self.worker.shared().deltas;
        while ring.pop().is_some() {}
    }

    fn counters(&mut self) -> WorkerCounters {
        self.worker.publish();
        self.worker.shared().counters.load()
    }
}

/// Established flows as prebuilt frames, replayed in a scattered order.
struct Traffic {
    frames: Vec<u8>,
    stride: usize,
    flows: u64,
    cursor: u64,
    step: u64,
}

impl Traffic {
    /// `replies`: per flow, the tuple the server's frames answer (the
    /// translated original under NAT); `None`: the flow's own.
    fn build(opts: &PipelineOpts, replies: Option<&[Tuple]>) -> Traffic {
        let stride = opts.size.max(pktgen::MIN_FRAME);
        let udp_every = if opts.udp_share > 0.0 {
            (1.0 / opts.udp_share).round() as u64
        } else {
            0
        };
        let mut frames = Vec::with_capacity(opts.flows as usize * 2 * stride);
        for i in 0..opts.flows {
            let udp = udp_every > 0 && i % udp_every == 0;
            let t = pktgen::flow_tuple(i, udp, [198, 51, 100]);
            let [mut c2s, _] = pktgen::data_frames(&t, stride);
            let tr = replies.and_then(|r| r.get(i as usize)).unwrap_or(&t);
            let [_, mut s2c] = pktgen::data_frames(tr, stride);
            for f in [&mut c2s, &mut s2c] {
                f.resize(stride, 0);
                frames.extend_from_slice(f);
            }
        }
        // A step coprime with the flow count visits every flow once per round.
        let mut step = (opts.flows / 2 + 7919).max(1);
        while gcd(step, opts.flows.max(1)) != 1 {
            step += 1;
        }
        Traffic {
            frames,
            stride,
            flows: opts.flows.max(1),
            cursor: opts.seed % opts.flows.max(1),
            step,
        }
    }

    fn next(&mut self, reply: bool) -> &[u8] {
        self.cursor = (self.cursor + self.step) % self.flows;
        let at = (self.cursor as usize * 2 + usize::from(reply)) * self.stride;
        &self.frames[at..at + self.stride]
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Opens every established flow; with `nat`, returns per flow the tuple
/// the server's frames answer (the translated original).
fn open_flows(rig: &mut Rig, opts: &PipelineOpts, sink: &mut [PacketBuf], nat: bool) -> Vec<Tuple> {
    let mut replies = Vec::new();
    let udp_every = if opts.udp_share > 0.0 {
        (1.0 / opts.udp_share).round() as u64
    } else {
        0
    };
    let mut a: Vec<PacketBuf> = Vec::with_capacity(BURST);
    let mut b: Vec<PacketBuf> = Vec::with_capacity(BURST);
    let batch = (BURST / 3) as u64;
    let mut i = 0;
    while i < opts.flows {
        let end = (i + batch).min(opts.flows);
        // The opening exchange, then one data frame each way, so that the
        // replayed data frames are in window whatever order they come in.
        let tuples: Vec<Tuple> = (i..end)
            .map(|k| pktgen::flow_tuple(k, udp_every > 0 && k % udp_every == 0, [198, 51, 100]))
            .collect();
        // Client frames from the flow's tuple, server frames answering
        // `tr` (the translated original under NAT, known once the first
        // packets went through).
        let build = |t: &Tuple, tr: &Tuple| {
            let mut o = pktgen::opening(t);
            for (x, y) in o.iter_mut().zip(pktgen::opening(tr)) {
                if x.0 {
                    *x = y;
                }
            }
            let [d0, _] = pktgen::data_frames(t, opts.size.max(pktgen::MIN_FRAME));
            let [_, d1] = pktgen::data_frames(tr, opts.size.max(pktgen::MIN_FRAME));
            o.push((false, d0));
            o.push((true, d1));
            o
        };
        let mut opens: Vec<_> = tuples.iter().map(|t| build(t, t)).collect();
        // Step by step: all first packets, then all second ones, ...
        for round in 0..5 {
            if round == 1 && nat {
                let shard = &rig.worker.pipeline().shard;
                for (o, t) in opens.iter_mut().zip(&tuples) {
                    let key = ftfw_dataplane::flow::FlowKey { orig: *t, zone: 0 };
                    let tr = shard
                        .lookup(&key)
                        .and_then(|idx| shard.nat_reply(idx))
                        .map_or(*t, |r| ftfw_dataplane::nat::translated_original(t, r));
                    *o = build(t, &tr);
                    replies.push(tr);
                }
            }
            a.clear();
            b.clear();
            for o in &opens {
                if let Some((reply, fr)) = o.get(round) {
                    let mut p = PacketBuf::new();
                    p.set(fr);
                    if *reply {
                        b.push(p);
                    } else {
                        a.push(p);
                    }
                }
            }
            rig.step(&mut a, &mut b, sink);
        }
        i = end;
    }
    replies
}

/// ns per packet by stage of a worker's burst, keyed by stage name (the
/// `stages_ns_per_packet` of `bench pipeline` and `bench forward`).
pub(crate) fn stage_map(
    st: &ftfw_dataplane::worker::stages::StageTimes,
) -> std::collections::BTreeMap<String, f64> {
    st.per_packet()
        .iter()
        .map(|&(name, ns)| (name.to_string(), ns))
        .collect()
}

/// Where the time goes: `traffic` again through `rig` for `--duration` with
/// the worker's stage clock on (its reads cost a few ns per packet, so not
/// in a measured phase): ns per packet by stage, and `harness`, the rest.
fn stage_breakdown(
    rig: &mut Rig,
    traffic: &mut Traffic,
    newgen: &mut NewFlowGen,
    opts: &PipelineOpts,
) -> std::collections::BTreeMap<String, f64> {
    rig.worker.set_stage_timing(true);
    let (packets, secs) = timed(
        rig,
        traffic,
        newgen,
        opts.new_share,
        opts.new_share < 1.0,
        opts.duration,
        opts.seed,
    );
    let st = rig.worker.stage_times();
    // Off again: the phases that follow are measured without the clock.
    rig.worker.set_stage_timing(false);
    let mut stages = stage_map(&st);
    let worker_ns: f64 = stages.values().sum();
    let total_ns = if packets > 0 {
        secs * 1e9 / packets as f64
    } else {
        0.0
    };
    stages.insert("harness".into(), (total_ns - worker_ns).max(0.0));
    stages
}

fn timed(
    rig: &mut Rig,
    traffic: &mut Traffic,
    newgen: &mut NewFlowGen,
    new_share: f64,
    reply_traffic: bool,
    duration: Duration,
    seed: u64,
) -> (u64, f64) {
    let mut to_server: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
    let mut to_client: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
    let mut sink: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();
    let threshold = (new_share.clamp(0.0, 1.0) * u64::MAX as f64) as u64;
    let mut rng = seed;
    let before = rig.counters().rx;
    let start = Instant::now();
    let mut iters = 0u64;
    loop {
        for p in to_server.iter_mut() {
            if new_share > 0.0 && splitmix64(&mut rng) <= threshold {
                newgen.next_into(p.data.vec_mut());
            } else {
                p.set(traffic.next(false));
            }
        }
        let n_reply = if reply_traffic { BURST } else { 0 };
        for p in to_client.iter_mut().take(n_reply) {
            p.set(traffic.next(true));
        }
        rig.step(&mut to_server, &mut to_client[..n_reply], &mut sink);
        iters += 1;
        if iters.is_multiple_of(64) && start.elapsed() >= duration {
            break;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    (rig.counters().rx - before, secs)
}

/// Runs the whole benchmark; `progress` is told each phase's name.
pub fn run_pipeline(opts: &PipelineOpts, mut progress: impl FnMut(&str)) -> PipelineReport {
    let rules = bench_rules(opts.rules, opts.seed);
    let new_expected = if opts.new_share > 0.0 { 2_000_000 } else { 0 };
    let capacity = (opts.flows as usize + new_expected).max(1024);

    progress("building traffic");
    let mut traffic = Traffic::build(opts, None);
    let mut sink: Vec<PacketBuf> = (0..BURST).map(|_| PacketBuf::new()).collect();

    progress("opening flows");
    let mut full = rig(opts.backend, capacity, &rules, false, Default::default());
    open_flows(&mut full, opts, &mut sink, false);

    progress("pipeline");
    let mut newgen = NewFlowGen::new(false, opts.size);
    let (packets, secs) = timed(
        &mut full,
        &mut traffic,
        &mut newgen,
        opts.new_share,
        opts.new_share < 1.0,
        opts.duration,
        opts.seed,
    );
    let counters = full.counters();
    let bytes_per_flow = full.worker.pipeline().shard.bytes_per_flow();
    let flow_table_huge_pages = full.worker.pipeline().shard.huge_pages_advised();
    let anon_huge_kib = ftfw_dataplane::huge::anon_huge_kib();
    // Where the time goes: the same traffic again with the stage clock on
    // (its reads cost a few ns per packet, so not in the phase above).
    progress("stages");
    let stages_ns_per_packet = stage_breakdown(&mut full, &mut traffic, &mut newgen, opts);
    // One of two multi-primary members behind a hub: the same traffic,
    // every other bucket owned. The shard keeps every flow (a member holds
    // only its own; the cache footprint is the same order at 1M flows).
    let multi = if opts.multi_primary {
        progress("multi-primary member (half the buckets)");
        let worker_ns_of = |st: ftfw_dataplane::worker::stages::StageTimes| -> f64 {
            st.per_packet().iter().map(|(_, v)| *v).sum()
        };
        // (worker ns per packet it received, worker ns per frame offered).
        let phase = opts.duration / 3;
        let mut run_owning = |set: &ftfw_dataplane::buckets::BucketSet, port_filter: bool| {
            full.worker.shared().set_kernel_bucket_filter(port_filter);
            full.worker.shared().buckets.set(set);
            full.worker.set_stage_timing(true);
            let offered = |r: &Rig| r.client.stats().tx_packets + r.server.stats().tx_packets;
            let before = offered(&full);
            timed(
                &mut full,
                &mut traffic,
                &mut newgen,
                opts.new_share,
                opts.new_share < 1.0,
                phase,
                opts.seed,
            );
            let st = full.worker.stage_times();
            let per_packet = worker_ns_of(st);
            #[allow(clippy::cast_precision_loss)]
            let share = st.packets as f64 / (offered(&full) - before).max(1) as f64;
            (per_packet, per_packet * share, share)
        };
        const BUCKETS: u32 = 4096;
        let all = ftfw_dataplane::buckets::BucketSet::full(BUCKETS);
        let half =
            ftfw_dataplane::buckets::BucketSet::from_iter_in(BUCKETS, (0..BUCKETS).step_by(2));
        // Three rounds of the three settings in turn, medians compared:
        // a shared machine drifts between phases.
        let (mut single, mut multi, mut filtered) = (Vec::new(), Vec::new(), Vec::new());
        let mut received_share = 0.0;
        for _ in 0..3 {
            single.push(run_owning(&all, false).0);
            multi.push(run_owning(&half, false).0);
            // The same member with its port dropping the other member's
            // frames before the worker (as the kernel does for AF_PACKET;
            // the `mem` port runs the same decision on receive, on the
            // worker's thread, so its cost is in the worker's time).
            let f = run_owning(&half, true);
            filtered.push(f.1);
            received_share = f.2;
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (single, multi, filtered) = (
            median(&mut single),
            median(&mut multi),
            median(&mut filtered),
        );
        full.worker.shared().set_kernel_bucket_filter(false);
        full.worker.shared().buckets.disable();
        full.worker.set_stage_timing(false);
        Some((multi, single, filtered, received_share))
    } else {
        None
    };

    // The same again with every flow translated.
    let nat_run = if opts.nat {
        progress("opening translated flows");
        let nat_rules = bench_nat_rules();
        let mut natrig = rig(opts.backend, capacity, &rules, false, nat_rules);
        let replies = open_flows(&mut natrig, opts, &mut sink, true);
        let mut ntraffic = Traffic::build(opts, Some(&replies));
        drop(replies);
        progress("pipeline with NAT (three rounds, plain and translated in turn)");
        let mut newgen_n = NewFlowGen::new(false, opts.size);
        let before = natrig.counters().nat_translated;
        let phase = opts.duration / 3;
        let (mut np, mut nsecs, mut ratios) = (0, 0.0, Vec::new());
        for _ in 0..3 {
            let (pp, psecs) = timed(
                &mut full,
                &mut traffic,
                &mut newgen,
                opts.new_share,
                opts.new_share < 1.0,
                phase,
                opts.seed,
            );
            let (n, secs) = timed(
                &mut natrig,
                &mut ntraffic,
                &mut newgen_n,
                opts.new_share,
                opts.new_share < 1.0,
                phase,
                opts.seed,
            );
            np += n;
            nsecs += secs;
            let (plain, translated) = (pp as f64 / psecs, n as f64 / secs);
            ratios.push(if plain > 0.0 { translated / plain } else { 0.0 });
        }
        ratios.sort_by(f64::total_cmp);
        let translated = natrig.counters().nat_translated - before;
        progress("stages with NAT");
        let stages = stage_breakdown(&mut natrig, &mut ntraffic, &mut newgen_n, opts);
        Some((np as f64 / nsecs / 1e6, translated, np, ratios[1], stages))
    } else {
        None
    };
    drop(full);

    progress("baseline");
    let mut null = rig(opts.backend, 1024, &rules, true, Default::default());
    let mut newgen_b = NewFlowGen::new(false, opts.size);
    let (baseline_packets, bsecs) = timed(
        &mut null,
        &mut traffic,
        &mut newgen_b,
        opts.new_share,
        opts.new_share < 1.0,
        opts.duration,
        opts.seed,
    );
    drop(null);

    // New flows per second, every packet opening one: plain, then (with
    // `--nat`) every new flow source-NATed (rule, port allocation, both
    // indexes). `count` reads the counter of what was made.
    let mut new_flows_per_sec =
        |nat: ftfw_dataplane::nat::NatRules, count: fn(&WorkerCounters) -> u64, cluster: bool| {
            let mut sess = rig(
                opts.backend,
                4_000_000.min(capacity.max(1 << 20)),
                &rules,
                false,
                nat,
            );
            if cluster {
                // A cluster member owning every one of 4096 buckets: each
                // translated flow's reply must fall in its original's bucket.
                sess.worker
                    .shared()
                    .buckets
                    .set(&ftfw_dataplane::buckets::BucketSet::full(4096));
            }
            let mut newgen_s = NewFlowGen::new(false, opts.size);
            let before = count(&sess.counters());
            let (_, ssecs) = timed(
                &mut sess,
                &mut traffic,
                &mut newgen_s,
                1.0,
                false,
                opts.duration,
                opts.seed,
            );
            (count(&sess.counters()) - before) as f64 / ssecs
        };
    progress("sessions");
    let new_sessions_per_sec = new_flows_per_sec(Default::default(), |c| c.flows_created, false);
    let nat_sessions = if opts.nat {
        progress("sessions with NAT");
        Some(new_flows_per_sec(bench_nat_rules(), |c| c.nat_flows, false))
    } else {
        None
    };
    let shard_rates = if opts.nat {
        progress("a shard alone making flows, translated and plain");
        let nat = bench_nat_rules();
        // In turn, three times each, medians.
        let (mut with, mut without) = (Vec::new(), Vec::new());
        // 2M at the default 1M flows: the table as large as the run's.
        let count = usize::try_from(opts.flows.saturating_mul(2))
            .unwrap_or(usize::MAX)
            .clamp(10_000, 2_000_000);
        for _ in 0..3 {
            with.push(shard_flows_per_sec(count, Some(&nat)));
            without.push(shard_flows_per_sec(count, None));
        }
        with.sort_by(f64::total_cmp);
        without.sort_by(f64::total_cmp);
        Some((with[1], without[1]))
    } else {
        None
    };
    let nat_cluster_sessions = if opts.nat && opts.multi_primary {
        progress("sessions with NAT in a cluster");
        Some(new_flows_per_sec(bench_nat_rules(), |c| c.nat_flows, true))
    } else {
        None
    };

    let mpps = packets as f64 / secs / 1e6;
    let baseline_mpps = baseline_packets as f64 / bsecs / 1e6;
    PipelineReport {
        backend: opts.backend,
        mpps,
        baseline_mpps,
        ratio: if baseline_mpps > 0.0 {
            mpps / baseline_mpps
        } else {
            0.0
        },
        ns_per_packet: if packets > 0 {
            secs * 1e9 / packets as f64
        } else {
            0.0
        },
        new_sessions_per_sec,
        bytes_per_flow,
        entry_bytes: Shard::ENTRY_BYTES,
        flow_table_huge_pages,
        anon_huge_kib,
        flows: counters.flows,
        size: opts.size,
        rules: rules.len(),
        new_share: opts.new_share,
        udp_share: opts.udp_share,
        packets,
        baseline_packets,
        duration_secs: opts.duration.as_secs_f64(),
        counters,
        stages_ns_per_packet,
        nat_mpps: nat_run.as_ref().map(|n| n.0),
        nat_over_plain: nat_run.as_ref().map(|n| n.3),
        nat_translated: nat_run.as_ref().map(|n| n.1),
        nat_packets: nat_run.as_ref().map(|n| n.2),
        nat_stages_ns_per_packet: nat_run.map(|n| n.4),
        nat_new_sessions_per_sec: nat_sessions,
        nat_new_sessions_per_sec_cluster: nat_cluster_sessions,
        shard_new_translated_flows_per_sec: shard_rates.map(|r| r.0),
        shard_new_flows_per_sec: shard_rates.map(|r| r.1),
        multi_primary_ns_per_packet: multi.map(|m| m.0),
        single_owner_ns_per_packet: multi.map(|m| m.1),
        multi_primary_capacity: multi.map(|(m, s, _, _)| if m > 0.0 { s / m } else { 0.0 }),
        filtered_member_ns_per_frame: multi.map(|m| m.2),
        filtered_member_received_share: multi.map(|m| m.3),
        multi_primary_capacity_filtered: multi
            .map(|(_, s, f, _)| if f > 0.0 { s / f } else { 0.0 }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftfw_dataplane::acl::Action;

    #[test]
    fn short_run_forwards_established_traffic_and_creates_sessions() {
        let opts = PipelineOpts {
            backend: Backend::Mem,
            flows: 2000,
            new_share: 0.1,
            size: 60,
            udp_share: 0.25,
            duration: Duration::from_millis(200),
            rules: 50,
            seed: 3,
            nat: false,
            multi_primary: false,
        };
        let r = run_pipeline(&opts, |_| {});
        assert!(r.packets > 0 && r.baseline_packets > 0, "{r:?}");
        // Every opened flow is in the table, and more were created by the mix.
        assert!(r.flows >= 2000, "{r:?}");
        // Established traffic took the fast path and nothing was invalid.
        assert!(r.counters.fast_path > 0, "{r:?}");
        assert_eq!(r.counters.invalid, 0, "{r:?}");
        assert_eq!(r.counters.table_full, 0, "{r:?}");
        assert_eq!(r.counters.dropped_by_rule, 0, "{r:?}");
        assert_eq!(r.counters.rx, r.counters.tx, "{r:?}");
        assert!(r.new_sessions_per_sec > 0.0);
        assert!(r.entry_bytes <= 112 && r.bytes_per_flow <= 128, "{r:?}");
        assert_eq!(bench_rules(0, 1).policy(), Action::Drop);
        // Every stage was timed, and together they stay within the
        // measured time per packet.
        let st = &r.stages_ns_per_packet;
        for k in ["rx", "parse", "lookup", "decide", "tx", "harness"] {
            assert!(st.get(k).is_some_and(|v| *v >= 0.0), "{k}: {st:?}");
        }
        assert!(st["decide"] > 0.0 && st["parse"] > 0.0, "{st:?}");
        assert!(r.nat_mpps.is_none() && r.nat_over_plain.is_none());
        assert!(r.nat_new_sessions_per_sec.is_none());
    }

    #[test]
    fn nat_run_translates_every_packet_both_ways() {
        let opts = PipelineOpts {
            flows: 2000,
            udp_share: 0.25,
            duration: Duration::from_millis(200),
            rules: 50,
            nat: true,
            ..PipelineOpts::default()
        };
        let r = run_pipeline(&opts, |_| {});
        let (m, ratio) = (r.nat_mpps.unwrap(), r.nat_over_plain.unwrap());
        assert!(m > 0.0 && ratio > 0.0, "{r:?}");
        // Every packet of the NAT phase (client and server side alike) was
        // rewritten: the server frames answered the translated address.
        assert_eq!(r.nat_translated, r.nat_packets, "{r:?}");
        assert!(r.nat_packets.unwrap() > 0, "{r:?}");
        // New flows were translated in the sessions phase, and by the
        // shard alone.
        assert!(r.nat_new_sessions_per_sec.unwrap() > 0.0, "{r:?}");
        assert!(r.shard_new_translated_flows_per_sec.unwrap() > 0.0, "{r:?}");
        assert!(r.shard_new_flows_per_sec.unwrap() > 0.0, "{r:?}");
        // The translated pipeline's own stage breakdown.
        let st = r.nat_stages_ns_per_packet.as_ref().expect("NAT stages");
        for k in ["rx", "parse", "lookup", "decide", "tx", "harness"] {
            assert!(st.contains_key(k), "{k}: {st:?}");
        }
        assert!(st["decide"] > 0.0 && st["lookup"] > 0.0, "{st:?}");
    }

    #[test]
    fn a_multi_primary_member_pays_less_per_frame_than_the_single_owner() {
        let opts = PipelineOpts {
            flows: 4000,
            duration: Duration::from_millis(300),
            rules: 50,
            multi_primary: true,
            ..PipelineOpts::default()
        };
        let r = run_pipeline(&opts, |_| {});
        let (m, one) = (
            r.multi_primary_ns_per_packet.unwrap(),
            r.single_owner_ns_per_packet.unwrap(),
        );
        // Dropping another member's frame (parse, bucket) costs less than
        // forwarding one, so a member's frames cost less on average.
        assert!(m > 0.0 && m < one, "{r:?}");
        assert!(r.multi_primary_capacity.unwrap() > 1.0, "{r:?}");
        // With the port's bucket filter, the worker receives only its own
        // half of the frames.
        let share = r.filtered_member_received_share.unwrap();
        assert!((0.4..0.6).contains(&share), "{r:?}");
        assert!(r.filtered_member_ns_per_frame.unwrap() > 0.0, "{r:?}");
    }
}
