//! Poll-mode workers.
//!
//! A worker is one thread, optionally pinned to a core, that owns a set of
//! ports (one queue or socket per interface) and one conntrack shard. It
//! runs to completion on bursts of [`BURST`](crate::port::BURST) frames:
//! receive from a port, decide every frame, transmit the forwarded ones out
//! of the bridge peer and the reject answers back out of the input port.
//! Between bursts it expires flows (bounded), serves console commands
//! (bounded), and publishes its counters.
//!
//! Poll modes: `busy` spins forever (appliances with dedicated cores);
//! `adaptive` spins, then yields, then sleeps on its ports, so several
//! workers and nodes can share a small machine.

mod bucket_filter;
mod burst;
pub mod command;
pub mod counters;
mod defer;
pub mod ethertypes;
pub mod frags;
mod handoff;
mod pair;
pub mod pipeline;
mod routed;
mod shared;
pub use shared::WorkerShared;
pub mod stages;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;

use crate::conntrack::{ConntrackConfig, DeltaRing, Shard};
use crate::meta::PacketMeta;
use crate::port::{Burst, Port, PortStats};

pub use command::{Command, FlowPredicate};
pub use counters::{PublishedCounters, WorkerCounters};
pub use defer::DEFER_QUEUE;
pub use ethertypes::{parse_ethertype, EthertypeError, PassEthertypes};
pub use handoff::{HandOff, HANDOFF_QUEUE};
pub use pipeline::{ActiveRules, Decision, LogRecord, Pipeline, SyncPolicy};

/// How a worker waits when there is no traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PollMode {
    /// Spin on the ports forever.
    Busy,
    /// Spin, then yield, then sleep on the ports.
    Adaptive,
}

/// Idle iterations spent spinning before yielding (adaptive mode).
const SPIN_ITERS: u32 = 256;
/// Idle iterations spent yielding before sleeping (adaptive mode).
const YIELD_ITERS: u32 = 512;
/// Longest sleep on a port (adaptive mode); bounds command latency too.
const MAX_SLEEP: Duration = Duration::from_millis(2);
/// Wheel entries looked at per iteration.
const EXPIRE_BUDGET: usize = 256;
/// Bursts of handed-over frames a worker takes per iteration at most.
const HANDED_BURSTS: usize = 4;
/// Console commands served per iteration.
const COMMAND_BUDGET: usize = 4;
/// Iterations between counter publications while busy.
const PUBLISH_EVERY: u32 = 64;

/// CPU time this thread has run, ns (`CLOCK_THREAD_CPUTIME_ID`): unlike
/// wall time it stops while the thread is descheduled, so busy time stays
/// the worker's own cost when threads outnumber cores.
fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0))
}
/// Longest sleep while packets are deferred (adaptive mode).
const DEFER_MAX_SLEEP: Duration = Duration::from_micros(100);
/// Default defer timeout until the sync thread sets one.
const DEFER_TIMEOUT_US: u64 = 10_000;

/// A port as a worker sees it.
pub struct WorkerPort {
    /// The port (this worker's queue or socket on it).
    pub port: Box<dyn Port>,
    /// Appliance-wide port index, as rules and the console number ports.
    pub index: u16,
    /// Conntrack zone of traffic entering here.
    pub zone: u16,
    /// Position, in this worker's port list, of the bridge peer that
    /// forwarded frames leave through.
    pub peer: usize,
}

impl std::fmt::Debug for WorkerPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPort")
            .field("name", &self.port.name())
            .field("index", &self.index)
            .finish()
    }
}

/// Port counters mirrored for the console.
#[derive(Debug, Default)]
pub struct PublishedPortStats {
    f: [AtomicU64; 10],
}

impl PublishedPortStats {
    fn publish(&self, s: &PortStats) {
        let v = [
            s.rx_packets,
            s.rx_bytes,
            s.tx_packets,
            s.tx_bytes,
            s.rx_dropped,
            s.tx_dropped,
            s.truncated,
            s.rx_missed,
            s.rx_errors,
            s.tx_errors,
        ];
        for (a, x) in self.f.iter().zip(v) {
            a.store(x, Ordering::Relaxed);
        }
    }
    /// The latest snapshot.
    pub fn load(&self) -> PortStats {
        let v: Vec<u64> = self.f.iter().map(|a| a.load(Ordering::Relaxed)).collect();
        PortStats {
            rx_packets: v[0],
            rx_bytes: v[1],
            tx_packets: v[2],
            tx_bytes: v[3],
            rx_dropped: v[4],
            tx_dropped: v[5],
            truncated: v[6],
            rx_missed: v[7],
            rx_errors: v[8],
            tx_errors: v[9],
        }
    }
}

/// Everything needed to start a worker.
#[derive(Debug)]
pub struct WorkerSpec {
    /// Worker number.
    pub id: u16,
    /// Core to pin to.
    pub core: Option<usize>,
    /// Poll mode.
    pub poll: PollMode,
    /// Ports, with their bridge peers.
    pub ports: Vec<WorkerPort>,
    /// The shard's configuration.
    pub conntrack: ConntrackConfig,
    /// Delta ring slots.
    pub delta_ring: usize,
    /// Second 0 of the shard clock.
    pub epoch: Instant,
    /// Non-IP ethertypes passed unfiltered.
    pub pass_ethertypes: PassEthertypes,
    /// Workers sharing the ports (for NAT's choice of reply tuples; see
    /// [`crate::nat::alloc`]).
    pub workers: u16,
    /// The expectation table the appliance's workers share.
    pub expect: Arc<crate::helper::SharedExpect>,
    /// Several workers: the appliance's hand-off queues (translated flows
    /// whose replies steer to another worker, see `handoff.rs`).
    pub handoff: Option<Arc<HandOff>>,
}

/// A running worker.
#[derive(Debug)]
pub struct WorkerHandle {
    /// Shared state.
    pub shared: Arc<WorkerShared>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Whether the worker thread is still running (not stopped, not
    /// panicked).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops the worker and waits for it.
    pub fn stop(&mut self) {
        self.shared.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The state a worker thread owns. Public so benchmarks and the simulator
/// can drive it one iteration at a time ([`Worker::poll_once`]).
pub struct Worker {
    pipeline: Pipeline,
    /// Per port: its frames may reach this worker whatever their flow
    /// ([`crate::port::Port::steers_by_flow`] is false).
    unsteered: Vec<bool>,
    ports: Vec<WorkerPort>,
    rules: Arc<ArcSwap<ActiveRules>>,
    shared: Arc<WorkerShared>,
    poll: PollMode,
    parse_only: bool,
    /// Per-stage time of transparent bursts (benchmarks only).
    stage_timing: bool,
    stage_times: stages::StageTimes,
    rx: Burst,
    tx: Burst,
    rej: Burst,
    metas: [PacketMeta; crate::port::BURST],
    parsed: [bool; crate::port::BURST],
    hints: [u32; crate::port::BURST],
    /// Burst warm-up: the frames that need a flow lookup, and their flow
    /// hashes (see [`Worker::warm_burst`]).
    want: [bool; crate::port::BURST],
    hashes: [u64; crate::port::BURST],
    /// Cluster: frames of the burst whose bucket another node owns.
    not_ours: [bool; crate::port::BURST],
    /// Routed mode (see [`Worker::set_routed`]); `None`: transparent.
    routed: Option<routed::Routed>,
    /// Held first packets of new flows (see `defer.rs`).
    defer: defer::DeferQueue,
    /// Frames handed between workers (see `handoff.rs`).
    handoff: Option<Arc<HandOff>>,
    /// Deciding frames another worker handed over (never handed on).
    handing: bool,
    /// A handed frame taken from the queue for the next run.
    handed_next: Option<handoff::Handed>,
    /// The kernel bucket filter the ports have (see `bucket_filter.rs`).
    kernel_filter: bucket_filter::Applied,
}

impl Drop for Worker {
    /// Gives the frames the bursts still hold back before the ports close
    /// (a DPDK device frees its pool only when every mbuf is back).
    fn drop(&mut self) {
        self.rx.release();
        self.tx.release();
        self.rej.release();
        if let Some(r) = &mut self.routed {
            r.release();
        }
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.shared.id)
            .field("ports", &self.ports)
            .finish()
    }
}

/// Starts a worker thread. The shard is preallocated before this returns,
/// so a failure to allocate shows at start, not under load.
pub fn spawn(
    spec: WorkerSpec,
    rules: Arc<ArcSwap<ActiveRules>>,
    logs: Option<Arc<ArrayQueue<LogRecord>>>,
) -> std::io::Result<WorkerHandle> {
    spawn_with(spec, rules, logs, true)
}

/// Like [`spawn`], choosing whether the worker forwards from its first
/// frame (a backup node starts with `forwarding = false`).
pub fn spawn_with(
    spec: WorkerSpec,
    rules: Arc<ArcSwap<ActiveRules>>,
    logs: Option<Arc<ArrayQueue<LogRecord>>>,
    forwarding: bool,
) -> std::io::Result<WorkerHandle> {
    spawn_inner(spec, rules, logs, forwarding, None)
}

/// Like [`spawn_with`], for a worker in routed mode over `l3` (see
/// [`Worker::set_routed`]).
pub fn spawn_routed(
    spec: WorkerSpec,
    rules: Arc<ArcSwap<ActiveRules>>,
    logs: Option<Arc<ArrayQueue<LogRecord>>>,
    forwarding: bool,
    l3: Arc<crate::l3::L3Shared>,
) -> std::io::Result<WorkerHandle> {
    spawn_inner(spec, rules, logs, forwarding, Some(l3))
}

fn spawn_inner(
    spec: WorkerSpec,
    rules: Arc<ArcSwap<ActiveRules>>,
    logs: Option<Arc<ArrayQueue<LogRecord>>>,
    forwarding: bool,
    l3: Option<Arc<crate::l3::L3Shared>>,
) -> std::io::Result<WorkerHandle> {
    let core = spec.core;
    let mut w = Worker::new(spec, rules, logs);
    if let Some(l3) = l3 {
        w.set_routed(l3);
    }
    w.shared.set_forwarding(forwarding);
    let shared = w.shared.clone();
    let thread = std::thread::Builder::new()
        .name(format!("ftfw-worker-{}", shared.id))
        .spawn(move || {
            if let Some(id) = core {
                if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
                    tracing::warn!(
                        worker = w.pipeline.worker,
                        core = id,
                        "could not pin worker to core"
                    );
                }
            }
            w.run();
        })?;
    Ok(WorkerHandle {
        shared,
        thread: Some(thread),
    })
}

impl Worker {
    /// Builds a worker (allocating its shard and bursts) without starting a thread.
    pub fn new(
        spec: WorkerSpec,
        rules: Arc<ArcSwap<ActiveRules>>,
        logs: Option<Arc<ArrayQueue<LogRecord>>>,
    ) -> Worker {
        let ring = DeltaRing::new(spec.delta_ring);
        let mut shard = Shard::new(spec.conntrack, spec.epoch, ring.clone());
        shard.set_expect(spec.expect.clone());
        // One iteration's deltas go to the ring together, a flow's changes
        // merged (flushed at the end of `poll_once` and before a hold).
        shard.set_batching(true);
        // DPDK ports with RSS: the NIC's spreading, which NAT and the
        // table of foreign replies must agree with (the first port's; see
        // ARCHITECTURE.md "NAT" for ports that differ).
        let rss = spec.ports.iter().find_map(|p| p.port.rss_model());
        if let Some(h) = &spec.handoff {
            shard.set_foreign(crate::conntrack::foreign::ForeignLink {
                table: Arc::clone(h.foreign()),
                worker: spec.id,
                workers: spec.workers,
                rss,
            });
        }
        let shared = Arc::new(WorkerShared::new(spec.id, &spec.ports, ring));
        let mut pipeline = Pipeline::new(spec.id, shard, logs);
        pipeline.expect = spec.expect.clone();
        pipeline.set_pass_ethertypes(spec.pass_ethertypes);
        pipeline.nat_steering.workers = spec.workers.max(1);
        pipeline.nat_steering.rss = rss;
        for p in &spec.ports {
            if let Some(peer) = spec.ports.get(p.peer) {
                pipeline.set_peer(p.index, peer.index);
            }
        }
        let unsteered = spec
            .ports
            .iter()
            .map(|p| !p.port.steers_by_flow())
            .collect();
        let mut w = Worker {
            pipeline,
            unsteered,
            ports: spec.ports,
            rules,
            shared,
            poll: spec.poll,
            parse_only: false,
            stage_timing: false,
            stage_times: stages::StageTimes::default(),
            rx: Burst::new(),
            tx: Burst::new(),
            rej: Burst::new(),
            metas: [PacketMeta::default(); crate::port::BURST],
            parsed: [false; crate::port::BURST],
            hints: [crate::conntrack::shard::HINT_NONE; crate::port::BURST],
            want: [false; crate::port::BURST],
            hashes: [0; crate::port::BURST],
            not_ours: [false; crate::port::BURST],
            routed: None,
            defer: defer::DeferQueue::default(),
            handoff: spec.handoff.clone(),
            handing: false,
            kernel_filter: bucket_filter::Applied::default(),
            handed_next: None,
        };
        w.prepare_nat(&w.rules.load());
        w.publish();
        w
    }

    /// Makes the shard's NAT tables as soon as the rules have `nat` lines
    /// (at start or on the first reload that adds some), not at the first
    /// translated flow: made on a packet, they stalled that packet's burst
    /// while hundreds of megabytes were written. One branch per iteration
    /// once made.
    fn prepare_nat(&mut self, rules: &ActiveRules) {
        if !rules.nat.is_empty() && !self.pipeline.shard.has_nat_tables() {
            self.pipeline.shard.make_nat_tables();
        }
    }

    /// Makes this worker a null pipeline that parses and forwards every
    /// frame (the benchmark's baseline).
    pub fn set_parse_only(&mut self, on: bool) {
        self.parse_only = on;
    }

    /// Measures where the time of transparent bursts goes (see
    /// [`stages`]); resets what was measured.
    pub fn set_stage_timing(&mut self, on: bool) {
        self.stage_timing = on;
        self.stage_times = stages::StageTimes::default();
    }

    /// What [`Worker::set_stage_timing`] measured so far.
    pub fn stage_times(&self) -> stages::StageTimes {
        self.stage_times
    }

    /// What the worker shares with the control thread.
    pub fn shared(&self) -> &Arc<WorkerShared> {
        &self.shared
    }

    /// The pipeline (shard and counters).
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// One iteration: frames handed over by other workers, one burst from
    /// each port, forwarded or answered, then bounded expiry and command
    /// service. Returns the frames received (handed over included).
    pub fn poll_once(&mut self, now: Instant) -> usize {
        let at = now;
        let now = self.pipeline.shard.secs(now);
        let mut routed = self.routed.take();
        self.refresh_bucket_filter(routed.as_ref());
        let rules = self.rules.load();
        self.prepare_nat(&rules);
        let forwarding = self.shared.forwarding.load(Ordering::Relaxed);
        // Defer applies in transparent mode only.
        let defer_on = forwarding
            && routed.is_none()
            && !self.parse_only
            && self.shared.defer_active.load(Ordering::Acquire);
        let defer_deadline = if defer_on {
            let us = self.shared.defer_timeout_us.load(Ordering::Relaxed);
            at.checked_add(Duration::from_micros(us))
        } else {
            None
        };
        if !self.defer.is_empty() {
            if forwarding {
                self.release_deferred(at, !defer_on);
            } else {
                // A backup forwards nothing, held packets included.
                self.pipeline.counters.standby_dropped += self.defer.drop_all() as u64;
            }
        }
        // Frames other workers received for our flows (bounded: a few
        // bursts per iteration; counted as frames this iteration handled).
        let ctx = burst::Iteration {
            now,
            at,
            rules: &rules,
            forwarding,
            defer_deadline,
        };
        let mut got = 0;
        for _ in 0..if self.handoff.is_some() {
            HANDED_BURSTS
        } else {
            0
        } {
            let Some((i, n)) = self.take_handed() else {
                break;
            };
            got += n;
            self.handing = true;
            let lap = stages::Lap::start(false);
            self.burst(&mut routed, i, n, &ctx, lap);
            self.handing = false;
        }
        for i in 0..self.ports.len() {
            let lap = stages::Lap::start(self.stage_timing);
            let n = self.ports[i].port.rx_burst(&mut self.rx.bufs);
            if n == 0 {
                continue;
            }
            got += n;
            self.pipeline.counters.rx += n as u64;
            self.burst(&mut routed, i, n, &ctx, lap);
        }
        drop(rules);
        if let Some(r) = routed.as_mut().filter(|r| r.holding()) {
            self.release_held(r, at, forwarding);
        }
        self.routed = routed;
        self.pipeline.shard.expire(now, EXPIRE_BUDGET);
        // The iteration's deltas reach the ring before any command (a dump
        // for a resync, say) is served, and the commands' own after it.
        self.pipeline.shard.flush_deltas();
        self.serve_commands(now);
        self.pipeline.shard.flush_deltas();
        got
    }

    /// Warms the flow lookups of the burst's frames marked in `want`, in
    /// passes over the burst: start loading every index bucket, then read
    /// each bucket and start loading the flow entry it names. The
    /// decisions that follow find both in cache, and the misses of the
    /// burst overlapped instead of coming one after another. While some
    /// flow is translated, a third pass does the same in the NAT index for
    /// the frames whose home bucket named no flow (replies of translated
    /// flows). Unmarked frames get no hint ([`HINT_NONE`](crate::conntrack::shard::HINT_NONE)).
    /// `full_probe`: see [`Shard::warm_nat`] (routed mode).
    fn warm_burst(&mut self, n: usize, zone: u16, full_probe: bool) {
        use crate::conntrack::shard::{HINT_NAT, HINT_NONE};
        let shard = &self.pipeline.shard;
        for k in 0..n {
            if self.want[k] {
                self.hashes[k] = shard.prefetch(&self.metas[k], zone);
            }
        }
        let mut nat = false;
        for k in 0..n {
            self.hints[k] = if self.want[k] {
                shard.warm_hashed(self.hashes[k])
            } else {
                HINT_NONE
            };
            nat |= self.hints[k] == HINT_NAT;
        }
        if nat {
            for k in 0..n {
                if self.hints[k] == HINT_NAT {
                    self.hints[k] =
                        shard.warm_nat(&self.metas[k], zone, self.hashes[k], full_probe);
                }
            }
        }
    }

    /// Verifies the L4 checksums of the burst's parsed frames that are
    /// this node's (`not_ours` set by the ownership check): another
    /// cluster member's frames are dropped unverified.
    fn verify_checksums_of_ours(&mut self, n: usize) {
        for k in 0..n {
            if self.parsed[k] && !self.not_ours[k] {
                let b = &self.rx.bufs[k];
                Pipeline::verify_checksum(&b.data, b.csum_verified, &mut self.metas[k]);
            }
        }
    }

    /// Whether frame `k` of the burst belongs to a bucket this node owns:
    /// IP frames by their flow (an ICMP error by the flow it is about),
    /// others (and frames that did not parse) by their MAC addresses. A
    /// later fragment has no ports to find its flow's bucket by: it passes
    /// here and [`Worker::foreign_later_fragment`] judges it in turn.
    fn owns_frame(&self, k: usize, buckets: u32) -> bool {
        use crate::buckets::{bucket_of_l2, bucket_of_tuple};
        let m = &self.metas[k];
        if self.parsed[k] && m.fragment == crate::meta::Fragment::Later {
            return true;
        }
        let b = if self.parsed[k] && m.is_ip() {
            bucket_of_tuple(m.icmp_error.as_ref().unwrap_or(&m.tuple), buckets)
        } else {
            bucket_of_l2(&self.rx.bufs[k].data, buckets)
        };
        self.shared.buckets.owns(b)
    }

    /// Cluster: frame `k` is a later fragment of a datagram whose first
    /// fragment this worker did not record (another member's: it was
    /// dropped here as `not_owner`), so another member forwards it. Asked
    /// in burst order, after the frames before it were judged, so a first
    /// fragment earlier in the same burst counts.
    fn foreign_later_fragment(&self, k: usize, zone: u16, now: u32) -> bool {
        let m = &self.metas[k];
        self.parsed[k]
            && m.fragment == crate::meta::Fragment::Later
            && self.shared.buckets.buckets() != 0
            && !self.pipeline.frags.knows(m, zone, now)
    }

    /// Holds the forwarded frame `k` if it is the first packet of a new
    /// flow, a packet that `changed` replicated state (synchronous writes)
    /// or a later packet of a flow with a packet held; returns
    /// whether it was held. A full queue sends the packet at once
    /// (counted).
    fn try_defer(
        &mut self,
        k: usize,
        peer: usize,
        deadline: Instant,
        changed: bool,
        every_change: bool,
    ) -> bool {
        let (flow, new) = self.pipeline.last_flow();
        // Held: a new flow whose NEW was pushed (its sync level replicates
        // it), any change with synchronous writes, and whatever follows a
        // held packet of the same flow.
        let wait = changed && (new || every_change);
        if !wait && !self.defer.holds_flow(flow) {
            return false;
        }
        if self.defer.is_full() {
            self.pipeline.counters.defer_overflow += 1;
            return false;
        }
        // The shard is its ring's only producer: once its waiting deltas
        // are flushed, its count of deltas pushed is the ring's push count
        // and covers this packet's change.
        self.pipeline.shard.flush_deltas();
        let tag = self.pipeline.shard.stats().deltas;
        let spare = self.defer.spare();
        let buf = std::mem::replace(&mut self.rx.bufs[k], spare);
        self.defer.hold(buf, tag, deadline, peer, flow);
        self.shared.defer_wanted.store(tag, Ordering::Release);
        self.pipeline.counters.deferred += 1;
        true
    }

    /// Transmits held packets from the front of the defer queue while their
    /// tag is released or their deadline passed (all of them if `force`),
    /// in order, a burst at a time per output port. Bounded by the queue.
    fn release_deferred(&mut self, now: Instant, force: bool) {
        let released = self.shared.defer_released.load(Ordering::Acquire);
        self.tx.len = 0;
        let mut port = usize::MAX;
        while let Some(why) = self.defer.ready(released, now, force) {
            let p = self.defer.front_port().unwrap_or(port);
            if (p != port || self.tx.len == crate::port::BURST) && self.tx.len > 0 {
                self.flush_tx(port);
            }
            port = p;
            self.defer.pop_into(&mut self.tx.bufs[self.tx.len]);
            self.tx.len += 1;
            match why {
                defer::Release::Acked => self.pipeline.counters.defer_released += 1,
                defer::Release::Timeout => self.pipeline.counters.defer_timeouts += 1,
            }
        }
        if self.tx.len > 0 {
            self.flush_tx(port);
        }
    }

    /// Sends `self.tx` out of port `p` (a position in the port list).
    fn flush_tx(&mut self, p: usize) {
        let n = self.tx.len;
        self.tx.len = 0;
        let Some(wp) = self.ports.get_mut(p) else {
            self.pipeline.counters.tx_dropped += n as u64;
            return;
        };
        let sent = wp.port.tx_burst(&mut self.tx.bufs[..n]);
        self.pipeline.counters.tx += sent as u64;
        self.pipeline.counters.tx_dropped += (n - sent) as u64;
    }

    /// Packets held by the defer queue now.
    pub fn deferred_len(&self) -> usize {
        self.defer.len()
    }

    /// The thread body: iterate until asked to stop, idling per the poll mode.
    pub fn run(&mut self) {
        let mut idle: u32 = 0;
        let mut iter: u32 = 0;
        let mut sleep_port = 0usize;
        while !self.shared.stop.load(Ordering::Acquire) {
            let started = Instant::now();
            let cpu_started = self
                .shared
                .cpu_accounting
                .load(Ordering::Relaxed)
                .then(thread_cpu_ns);
            let got = self.poll_once(started);
            iter = iter.wrapping_add(1);
            if got > 0 {
                self.pipeline.counters.busy_ns +=
                    u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                if let Some(c) = cpu_started {
                    self.pipeline.counters.busy_cpu_ns += thread_cpu_ns().saturating_sub(c);
                }
                idle = 0;
                if iter.is_multiple_of(PUBLISH_EVERY) {
                    self.publish();
                }
                continue;
            }
            self.pipeline.counters.idle_polls += 1;
            idle = idle.saturating_add(1);
            if self.poll == PollMode::Busy {
                if iter.is_multiple_of(PUBLISH_EVERY) {
                    self.publish();
                }
                std::hint::spin_loop();
            } else if idle < SPIN_ITERS {
                std::hint::spin_loop();
            } else if idle < YIELD_ITERS {
                std::thread::yield_now();
            } else {
                if idle == YIELD_ITERS || iter.is_multiple_of(PUBLISH_EVERY) {
                    self.publish();
                }
                // Held packets have deadlines and releases to watch.
                let max = if self.defer.is_empty() {
                    MAX_SLEEP
                } else {
                    DEFER_MAX_SLEEP
                };
                if self.ports.is_empty() {
                    std::thread::park_timeout(max);
                } else if !self.wait_all_ports(max) {
                    sleep_port = (sleep_port + 1) % self.ports.len();
                    let per_port = max / u32::try_from(self.ports.len()).unwrap_or(u32::MAX);
                    self.ports[sleep_port].port.wait_rx(per_port);
                }
            }
        }
        // A stopping node forwards nothing more, held packets included.
        self.pipeline.counters.standby_dropped += self.defer.drop_all() as u64;
        self.publish();
    }

    /// Sleeps on every port at once, up to `max`, when every port can be
    /// polled (AF_PACKET); returns false, having not slept, when one
    /// cannot, so the caller sleeps on one port at a time instead. A
    /// frame on any port then wakes the worker at once, instead of after
    /// the sleep on another port ends.
    fn wait_all_ports(&mut self, max: Duration) -> bool {
        let mut fds = Vec::with_capacity(self.ports.len());
        for wp in &mut self.ports {
            match wp.port.prepare_wait() {
                crate::port::WaitOn::Ready => return true,
                crate::port::WaitOn::Fd(fd) => fds.push(fd),
                crate::port::WaitOn::Unsupported => return false,
            }
        }
        crate::port::wait_any(&fds, max);
        true
    }

    fn serve_commands(&mut self, now: u32) {
        for _ in 0..COMMAND_BUDGET {
            let Some(cmd) = self.shared.commands.pop() else {
                return;
            };
            self.pipeline.counters.commands += 1;
            let shard = &mut self.pipeline.shard;
            // Each arm does its work and returns the answer to send once the
            // counters it changed are published (so a console that reads
            // stats after the answer sees them).
            let answer: Box<dyn FnOnce()> = match cmd {
                Command::List {
                    filter,
                    limit,
                    reply,
                } => {
                    let mut out = Vec::new();
                    let mut total = 0usize;
                    shard.for_each(now, |s| {
                        if filter(&s) {
                            total += 1;
                            if out.len() < limit {
                                out.push(s);
                            }
                        }
                    });
                    Box::new(move || {
                        let _ = reply.send((out, total));
                    })
                }
                Command::ExpectList { reply } => {
                    let list = self.pipeline.expectations(now);
                    Box::new(move || {
                        let _ = reply.send(list);
                    })
                }
                Command::Export { from, max, reply } => {
                    let chunk = shard.export_from(now, from, max);
                    Box::new(move || {
                        let _ = reply.send(chunk);
                    })
                }
                Command::Upsert { state, reply } => {
                    let r = shard
                        .upsert(now, &state)
                        .map(|_| ())
                        .map_err(|e| e.to_string());
                    Box::new(move || {
                        let _ = reply.send(r);
                    })
                }
                Command::UpsertMany {
                    states,
                    replicate,
                    reply,
                } => {
                    let done = shard.upsert_many(now, &states, replicate);
                    let refused = states.len() - done;
                    Box::new(move || {
                        let _ = reply.send((done, refused));
                    })
                }
                Command::RemoveImported { keys, reply } => {
                    let n = keys
                        .iter()
                        .filter(|k| shard.remove_imported(now, k))
                        .count();
                    Box::new(move || {
                        if let Some(r) = reply {
                            let _ = r.send(n);
                        }
                    })
                }
                Command::Remove { key, reply } => {
                    let r = shard.remove(now, &key);
                    Box::new(move || {
                        let _ = reply.send(r);
                    })
                }
                Command::Transmit {
                    port,
                    frames,
                    reply,
                } => {
                    let sent = self.transmit(port, &frames);
                    Box::new(move || {
                        if let Some(r) = reply {
                            let _ = r.send(sent);
                        }
                    })
                }
                Command::RemoveWhere { filter, reply } => {
                    let r = shard.remove_where(now, |s| filter(s));
                    Box::new(move || {
                        let _ = reply.send(r);
                    })
                }
                Command::Publish { reply } => Box::new(move || {
                    let _ = reply.send(());
                }),
            };
            self.publish();
            answer();
        }
    }

    /// Publishes counters for the control thread.
    pub fn publish(&mut self) {
        self.pipeline.sync_counters();
        self.shared.counters.publish(&self.pipeline.counters);
        for (p, (_, _, pub_)) in self.ports.iter().zip(self.shared.ports.iter()) {
            pub_.publish(&p.port.stats());
        }
    }
}

#[cfg(test)]
mod defer_tests;

#[cfg(test)]
mod pipeline_tests;

#[cfg(test)]
mod helper_nat_tests;
#[cfg(test)]
mod helper_tests;

#[cfg(test)]
mod pipeline_props;
