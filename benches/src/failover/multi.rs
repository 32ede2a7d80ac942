//! `ftfw-lab cluster`: an N-node cluster in one process (issue 12).
//!
//! N real appliances on `mem` ports (`Appliance::start`, what ftfwd runs),
//! each with its cluster driver (`ClusterDriver`: heartbeats and bucket
//! maps over loopback UDP, 127.0.0.k) and FT-FW replication to every other
//! member over loopback (no emulated link: the cluster's sync traffic goes
//! straight between the nodes). The hub of the pair lab joins the client
//! to every node's `outside` port and the server to every `inside` port;
//! each node forwards only the frames of the buckets it owns.
//!
//! A run starts the nodes, waits until the map is applied everywhere,
//! runs the transfers and, mid-run, either crashes one node (its driver
//! dropped with no goodbye, its appliance stopped, the hub stops
//! delivering to it) or drains it (`ftfwctl cluster drain`: a planned
//! move). It reports what the pair lab reports (established flows at the
//! crash, recovered, broken) plus the buckets moved, the time until every
//! bucket is forwarded again, and replication bytes per flow.
//!
//! All nodes share this machine's cores (the report says how many): on a
//! machine with fewer cores than nodes, the figures measure correctness
//! and recovery, not capacity.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ftfw_control::appliance::Appliance;
use ftfw_control::cluster_driver::ClusterDriver;
use ftfw_control::config;
use ftfw_control::console::proto::{ClusterChange, Request};
use ftfw_dataplane::buckets::BucketSet;
use ftfw_dataplane::port::{PacketBuf, Port};
use ftfw_testkit::mem::{MemPorts, MEM_BRIDGE};
use serde::Serialize;

use super::cluster::{crash_due, ms};
use super::hosts::{HostWire, Hosts, St};
use super::node::{distinct_free_ports, thread_ids, thread_named, FwCounters, Node};
use super::{FailoverOpts, KEY, POLL_EVERY, SERVER_PORT, UDP_PORT};

/// Most nodes the lab runs (loopback addresses 127.0.0.1 to .16).
pub const MAX_LAB_NODES: usize = 16;

/// What happens to the chosen node mid-run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// SIGKILL-like: no goodbye, its buckets are taken over.
    Crash,
    /// `ftfwctl cluster drain`: a planned move of its buckets.
    Drain,
    /// Nothing: a run for the session rate.
    None,
}

/// What one cluster run does.
#[derive(Debug, Clone)]
pub struct ClusterLabOpts {
    /// Members (2 to [`MAX_LAB_NODES`]).
    pub nodes: usize,
    /// The node (1-based id) that crashes or is drained.
    pub victim: u32,
    /// What happens to it.
    pub fault: Fault,
    /// `"multi-primary"` or `"primary-backup"`.
    pub mode: &'static str,
    /// Buckets in the map.
    pub buckets: u32,
    /// Backups per bucket.
    pub backups: u8,
    /// Replicate to every peer (`false`: only to the bucket's backups).
    pub replicate_all: bool,
    /// `cluster.dead_after_ms` of every node (`None`: ftfwd's default of
    /// four heartbeats, 200 ms). The nodes' coordinators share the lab's
    /// thread: a stall of it is forgiven by each (its own stall), and a
    /// member declared dead while alive gets a longer dead-after time.
    pub dead_after_ms: Option<u64>,
    /// Transfers, object size, concurrency, seed, stall, time limit and
    /// the crash instant, as in the pair lab.
    pub traffic: FailoverOpts,
}

impl Default for ClusterLabOpts {
    fn default() -> Self {
        ClusterLabOpts {
            nodes: 3,
            victim: 2,
            fault: Fault::Crash,
            mode: "multi-primary",
            buckets: 1024,
            backups: 1,
            replicate_all: true,
            dead_after_ms: None,
            traffic: FailoverOpts {
                transfers: 300,
                concurrency: 64,
                ..FailoverOpts::default()
            },
        }
    }
}

/// The result of one run (`ftfw-lab cluster --json`).
#[derive(Debug, Clone, Serialize)]
pub struct ClusterLabReport {
    /// Members.
    pub nodes: usize,
    /// `multi-primary` or `primary-backup`.
    pub mode: String,
    /// Buckets in the map.
    pub buckets: u32,
    /// Backups per bucket.
    pub backups: u8,
    /// `all` or `backups`.
    pub replicate: String,
    /// What happened to the victim.
    pub fault: Fault,
    /// The victim's id.
    pub victim: u32,
    /// Transfers run.
    pub transfers: usize,
    /// Bytes per transfer.
    pub object_size: usize,
    /// Transfers established at the fault that still needed a firewall
    /// (not those that completed on frames forwarded before it).
    pub flows_established_at_crash: usize,
    /// Of those, the transfers that completed.
    pub flows_recovered: usize,
    /// `flows_recovered / flows_established_at_crash` (1 when none).
    pub recovery_ratio: f64,
    /// Transfers that stalled or were reset.
    pub broken_transfers: usize,
    /// Transfers reset.
    pub reset_transfers: usize,
    /// Transfers completed.
    pub transfers_completed: usize,
    /// Buckets the victim owned at the fault (they moved).
    pub buckets_moved: u32,
    /// The newest bucket map version any node held at the fault and at
    /// the end: maps made during the run beyond the fault's own are
    /// nodes declared dead (falsely, if none crashed) and revived.
    pub map_version_at_fault: u64,
    /// See `map_version_at_fault`.
    pub map_version_at_end: u64,
    /// Peers declared dead and then heard again with the same incarnation
    /// (alive all along), summed over every node's failure detector
    /// (`ftfwctl cluster status` `false_deaths`).
    pub false_deaths: u64,
    /// From the fault until every bucket was forwarded by a live node again.
    pub time_to_recover_ms: Option<f64>,
    /// From the fault until the last transfer established at it had a
    /// segment forwarded again (by any node but the victim).
    pub time_to_resume_transfers_ms: Option<f64>,
    /// Replication bytes sent by all nodes (the victim until the fault),
    /// per transfer.
    pub sync_bytes_per_flow: f64,
    /// Completed transfers per second of the run.
    pub sessions_per_sec: f64,
    /// Object data delivered, Mbit/s.
    pub data_rate_mbps: f64,
    /// Frames each node forwarded (by node id order).
    pub forwarded_per_node: Vec<u64>,
    /// Buckets each node owned at the start (by node id order).
    pub buckets_per_node_at_start: Vec<u32>,
    /// The seed.
    pub seed: u64,
    /// How the nodes ran.
    pub how_run: String,
    /// Milliseconds of traffic.
    pub run_ms: f64,
    /// Connection set-up time (the client's first SYN to its SYN-ACK) of
    /// every TCP transfer that got one: median, ms.
    pub setup_median_ms: Option<f64>,
    /// The same, 95th percentile.
    pub setup_p95_ms: Option<f64>,
    /// TCP transfers opened (first SYN) after the fault.
    pub opened_after_fault: usize,
    /// Set-up time of the transfers opened after the fault: median, ms.
    pub setup_after_fault_median_ms: Option<f64>,
    /// The same, 95th percentile.
    pub setup_after_fault_p95_ms: Option<f64>,
    /// The same, the slowest.
    pub setup_after_fault_max_ms: Option<f64>,
    /// Each node's worker busy time during the traffic (the victim's until
    /// the fault), ms, by node id order.
    pub worker_busy_ms_per_node: Vec<f64>,
    /// Each node's sync thread CPU time during the traffic (the victim's
    /// until the fault), ms.
    pub sync_cpu_ms_per_node: Vec<f64>,
    /// All workers' busy time per completed transfer, µs.
    pub worker_us_per_session: f64,
    /// All sync threads' CPU time per completed transfer, µs.
    pub sync_us_per_session: f64,
    /// Completed transfers per second of the busiest node's worker busy
    /// time: the session rate the cluster would reach if every node's
    /// worker had a core of its own and were the bottleneck (model-free:
    /// measured busy time, no assumption about the scheduler).
    pub worker_bound_sessions_per_sec: f64,
}

fn cluster_node(k: u32, o: &ClusterLabOpts, sp: u16, cp: u16) -> anyhow::Result<Node> {
    let tag = format!("cl{k}");
    let dir = std::env::temp_dir().join(format!(
        "ftfw-lab-cluster-{tag}-{}-{sp}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\n\n\
         {MEM_BRIDGE}[conntrack]\ncapacity = 262144\n\n\
         [rules]\npolicy = \"drop\"\nrules = [\"accept ct established,related\", \"accept in outside proto tcp dport {SERVER_PORT} ct new\", \"accept in outside proto udp dport {UDP_PORT} ct new\"]\n\n\
         [sync]\nlocal = \"127.0.0.{k}\"\nport = {sp}\nalive_interval_ms = 50\n\n\
         [cluster]\nnode = {k}\nmode = \"{}\"\nbuckets = {}\nbackups = {}\nreplicate = \"{}\"\nport = {cp}\nkey = \"{KEY}\"\n{}",
        o.mode,
        o.buckets,
        o.backups,
        if o.replicate_all { "all" } else { "backups" },
        o.dead_after_ms
            .map(|ms| format!("dead_after_ms = {ms}\n"))
            .unwrap_or_default(),
    );
    for j in 1..=o.nodes {
        text += &format!("\n[[cluster.member]]\nid = {j}\naddress = \"127.0.0.{j}\"\n");
    }
    let path = dir.join("ftfwd.toml");
    std::fs::write(&path, text)?;
    let cfg = config::load(&path)?;
    let before = thread_ids();
    let mut ports = MemPorts::new(&tag, 4096);
    let app = Appliance::start(cfg, &mut |i, p, w, n| ports.open(i, p, w, n))?;
    // The lab measures the workers' CPU time (busy_cpu_ns).
    app.set_cpu_accounting(true);
    let cluster = ClusterDriver::new(app.config(), Instant::now())?;
    let mut it = ports.into_hosts().into_iter();
    let (Some(client), Some(server)) = (it.next(), it.next()) else {
        bail!("expected two ports")
    };
    let new: Vec<u32> = thread_ids()
        .into_iter()
        .filter(|t| !before.contains(t))
        .collect();
    Ok(Node {
        app,
        sync_tid: thread_named(&new, "ftfw-sync"),
        driver: None,
        cluster: Some(cluster),
        client,
        server,
        dir,
        alive: true,
    })
}

/// The buckets node `n` forwards now (empty when it has no driver).
fn forwarding(n: &Node) -> BucketSet {
    n.cluster
        .as_ref()
        .map(|d| d.coordinator().forwarding().clone())
        .unwrap_or_else(|| BucketSet::empty(0))
}

/// The newest bucket map version any node holds.
fn newest_map(nodes: &[Node]) -> u64 {
    nodes
        .iter()
        .filter_map(|n| n.cluster.as_ref())
        .map(|d| d.coordinator().map_version())
        .max()
        .unwrap_or(0)
}

/// Whether every live node applied the same map and the live nodes'
/// forwarding sets cover every bucket exactly once.
fn settled(nodes: &[Node], buckets: u32) -> bool {
    let live: Vec<&Node> = nodes.iter().filter(|n| n.alive).collect();
    let versions: Vec<(u64, u64)> = live
        .iter()
        .filter_map(|n| n.cluster.as_ref())
        .map(|d| {
            let c = d.coordinator();
            (c.map_version(), c.applied_version())
        })
        .collect();
    if versions.len() != live.len()
        || versions
            .iter()
            .any(|&(m, a)| m == 0 || m != a || m != versions[0].0)
    {
        return false;
    }
    exactly_covered(&live, buckets)
}

fn exactly_covered(live: &[&Node], buckets: u32) -> bool {
    let mut seen = BucketSet::empty(buckets);
    let mut total = 0;
    for n in live {
        let s = forwarding(n);
        total += s.count();
        seen = seen.union(&s);
    }
    total == buckets && seen.count() == buckets
}

fn poll_all(nodes: &mut [Node]) {
    for n in nodes.iter_mut().filter(|n| n.alive) {
        n.poll();
    }
}

/// Waits until [`settled`] and, in multi-primary, every member owns a
/// share (a member that became ready last gets its share by a rebalance).
fn settle(nodes: &mut [Node], o: &ClusterLabOpts, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let shared =
        |ns: &[Node]| o.mode != "multi-primary" || ns.iter().all(|n| forwarding(n).count() > 0);
    while !(settled(nodes, o.buckets) && shared(nodes)) {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        poll_all(nodes);
        std::thread::sleep(POLL_EVERY);
    }
    Ok(())
}

fn check(o: &ClusterLabOpts) -> anyhow::Result<()> {
    super::check(&o.traffic)?;
    anyhow::ensure!(
        (2..=MAX_LAB_NODES).contains(&o.nodes),
        "nodes must be between 2 and {MAX_LAB_NODES}"
    );
    anyhow::ensure!(
        (1..=o.nodes as u32).contains(&o.victim),
        "the node to crash or drain must be between 1 and {}",
        o.nodes
    );
    anyhow::ensure!(
        usize::from(o.backups) < o.nodes,
        "{} backups per bucket need at least {} nodes",
        o.backups,
        o.backups + 1
    );
    Ok(())
}

/// Runs one cluster experiment; `progress` gets a line now and then.
pub fn run_cluster(
    o: &ClusterLabOpts,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<ClusterLabReport> {
    check(o)?;
    let top = u8::try_from(o.nodes).unwrap_or(16);
    let ports = distinct_free_ports(2, top)?;
    let (sp, cp) = (ports[0], ports[1]);
    let mut nodes = Vec::with_capacity(o.nodes);
    for k in 1..=o.nodes as u32 {
        nodes.push(cluster_node(k, o, sp, cp)?);
    }
    progress(&format!(
        "{} nodes up, waiting for the bucket map to settle",
        o.nodes
    ));
    settle(&mut nodes, o, "the first bucket map")?;
    let at_start: Vec<u32> = nodes.iter().map(|n| forwarding(n).count()).collect();
    progress(&format!("map applied: buckets per node {at_start:?}"));
    traffic(&mut nodes, o, at_start, progress)
}

fn traffic(
    nodes: &mut [Node],
    o: &ClusterLabOpts,
    at_start: Vec<u32>,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<ClusterLabReport> {
    let opts = &o.traffic;
    let victim = (o.victim - 1) as usize;
    let cip = Ipv4Addr::new(192, 0, 2, 10);
    let mut rng = opts.seed ^ 0x5EED_F00D;
    let t0 = Instant::now();
    let mut h = Hosts::new(cip, opts.transfers, opts.object_size, 0.0, &mut rng, t0);
    let no_fault = FailoverOpts {
        no_crash: o.fault == Fault::None,
        ..opts.clone()
    };
    let (mut wire_c, mut wire_s) = (HostWire::default(), HostWire::default());
    let mut next_open = 0usize;
    let mut last_poll = t0;
    let mut last_report = t0;
    let mut victim_sync_bytes = 0u64;
    let mut buckets_moved = 0u32;
    let mut map_version_at_fault = 0u64;
    let mut recovered_at: Option<Instant> = None;
    let mut bufs: Vec<PacketBuf> = (0..64).map(|_| PacketBuf::new()).collect();
    let base: Vec<FwCounters> = nodes
        .iter_mut()
        .map(Node::fw_counters)
        .collect::<anyhow::Result<_>>()?;
    let mut victim_counters: Option<FwCounters> = None;
    let end = loop {
        let now = Instant::now();
        if now.duration_since(t0) > opts.max_run {
            progress("hard time limit reached; unfinished transfers count as broken");
            for x in h.t.iter_mut().filter(|x| x.live() || x.st == St::Idle) {
                x.st = St::Broken;
            }
        }
        if now.duration_since(last_poll) >= POLL_EVERY {
            last_poll = now;
            poll_all(nodes);
        }
        if crash_due(&h, &no_fault, now, t0) {
            let n = &mut nodes[victim];
            buckets_moved = forwarding(n).count();
            map_version_at_fault = newest_map(nodes);
            let n = &mut nodes[victim];
            h.crash = Some(now);
            for x in &mut h.t {
                x.established_at_crash = x.st == St::Established;
            }
            match o.fault {
                Fault::Crash => {
                    victim_sync_bytes = sync_bytes(n)?;
                    victim_counters = Some(n.fw_counters()?.since(base[victim]));
                    n.cluster = None;
                    n.app.stop();
                    n.alive = false;
                }
                Fault::Drain | Fault::None => {
                    // Asked of another node's console: any member passes
                    // it to the coordinator.
                    let other = (victim + 1) % nodes.len();
                    nodes[other].ok(Request::ClusterChange {
                        change: ClusterChange::Drain { node: o.victim },
                    })?;
                }
            }
            progress(&format!(
                "{} node {} at {:.0} ms: {} transfers established, {} buckets to move",
                if o.fault == Fault::Crash {
                    "crashed"
                } else {
                    "draining"
                },
                o.victim,
                ms(now.duration_since(t0)),
                h.t.iter().filter(|x| x.established_at_crash).count(),
                buckets_moved
            ));
        }
        if let (Some(c), None) = (h.crash, recovered_at) {
            let live: Vec<&Node> = nodes
                .iter()
                .enumerate()
                .filter(|(i, n)| n.alive && *i != victim)
                .map(|(_, n)| n)
                .collect();
            if exactly_covered(&live, o.buckets) {
                recovered_at = Some(now);
                progress(&format!(
                    "every bucket forwarded again {:.0} ms after the fault",
                    ms(now.duration_since(c))
                ));
            }
        }
        let live = h.t.iter().filter(|x| x.live()).count();
        for _ in live..opts.concurrency {
            if next_open >= h.t.len() {
                break;
            }
            h.open(next_open, now);
            next_open += 1;
        }
        h.tick(now, opts.stall);
        wire_c.send_all(&mut h.to_server, now);
        wire_s.send_all(&mut h.to_client, now);
        wire_c.deliver(now, nodes, true, true);
        wire_s.deliver(now, nodes, false, true);
        let mut moved = 0;
        for (i, n) in nodes.iter_mut().enumerate() {
            if !n.alive {
                continue;
            }
            for _ in 0..16 {
                let k = n.client.rx_burst(&mut bufs);
                for b in &bufs[..k] {
                    h.client_rx(&b.data, i != victim, now);
                }
                let j = n.server.rx_burst(&mut bufs);
                for b in &bufs[..j] {
                    h.server_rx(&b.data, now, &mut rng);
                }
                moved += k + j;
                if k + j == 0 {
                    break;
                }
            }
        }
        if now.duration_since(last_report) >= Duration::from_secs(1) {
            last_report = now;
            let done = h.t.iter().filter(|x| x.st == St::Done).count();
            let broken = h.t.iter().filter(|x| x.st == St::Broken).count();
            progress(&format!(
                "{:>6.1} s: {done}/{} done, {broken} broken",
                now.duration_since(t0).as_secs_f64(),
                h.t.len()
            ));
        }
        if next_open >= h.t.len()
            && h.t.iter().all(|x| !x.live())
            && !crash_due(&h, &no_fault, now, t0)
        {
            break now;
        }
        if moved == 0 && h.to_server.is_empty() && h.to_client.is_empty() {
            std::thread::sleep(Duration::from_micros(100));
        }
    };
    // The map may settle after the last transfer ended.
    if h.crash.is_some() && recovered_at.is_none() {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            poll_all(nodes);
            let live: Vec<&Node> = nodes
                .iter()
                .enumerate()
                .filter(|(i, n)| n.alive && *i != victim)
                .map(|(_, n)| n)
                .collect();
            if exactly_covered(&live, o.buckets) {
                recovered_at = Some(Instant::now());
                break;
            }
            std::thread::sleep(POLL_EVERY);
        }
    }
    let mut sync_total = victim_sync_bytes;
    let mut forwarded = Vec::new();
    let mut busy = Vec::new();
    let mut sync_cpu = Vec::new();
    for (i, n) in nodes.iter_mut().enumerate() {
        if n.alive {
            sync_total += sync_bytes(n)?;
        }
        let c = n.fw_counters()?;
        forwarded.push(c.tx);
        let d = match (n.alive, victim_counters) {
            (false, Some(v)) if i == victim => v,
            _ => c.since(base[i]),
        };
        busy.push(d.busy_ns as f64 / 1e6);
        sync_cpu.push(d.sync_cpu_ns as f64 / 1e6);
    }
    let setups = |after: bool| {
        let mut v: Vec<f64> =
            h.t.iter()
                .filter(|x| !x.udp && (!after || h.crash.is_some_and(|c| x.opened_at >= c)))
                .filter_map(|x| x.setup.map(ms))
                .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let (all_setups, after_setups) = (setups(false), setups(true));
    let opened_after_fault = h.crash.map_or(0, |c| {
        h.t.iter()
            .filter(|x| !x.udp && x.st != St::Idle && x.opened_at >= c)
            .count()
    });
    let est =
        h.t.iter()
            .filter(|x| x.needed_a_firewall_after_the_crash())
            .count();
    let recovered = h.t.iter().filter(|x| x.recovered()).count();
    let run_secs = end.duration_since(t0).as_secs_f64().max(1e-6);
    let completed = h.t.iter().filter(|x| x.st == St::Done).count();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(ClusterLabReport {
        nodes: o.nodes,
        mode: o.mode.to_string(),
        buckets: o.buckets,
        backups: o.backups,
        replicate: if o.replicate_all { "all" } else { "backups" }.to_string(),
        fault: o.fault,
        victim: o.victim,
        transfers: opts.transfers,
        object_size: opts.object_size,
        flows_established_at_crash: est,
        flows_recovered: recovered,
        recovery_ratio: if est == 0 {
            1.0
        } else {
            recovered as f64 / est as f64
        },
        broken_transfers: h.t.iter().filter(|x| x.st == St::Broken).count(),
        reset_transfers: h.t.iter().filter(|x| x.reset).count(),
        transfers_completed: completed,
        buckets_moved,
        map_version_at_fault,
        map_version_at_end: newest_map(nodes),
        false_deaths: nodes
            .iter()
            .filter_map(|n| n.cluster.as_ref())
            .map(|d| d.coordinator().counters().false_deaths)
            .sum(),
        time_to_recover_ms: h
            .crash
            .zip(recovered_at)
            .map(|(c, r)| ms(r.duration_since(c))),
        time_to_resume_transfers_ms: h.crash.and_then(|c| {
            h.t.iter()
                .filter(|x| x.recovered())
                .filter_map(|x| x.resumed_at.map(|r| r.duration_since(c)))
                .max()
                .map(ms)
        }),
        sync_bytes_per_flow: sync_total as f64 / opts.transfers.max(1) as f64,
        sessions_per_sec: completed as f64 / run_secs,
        data_rate_mbps: h.delivered as f64 * 8.0 / run_secs / 1e6,
        forwarded_per_node: forwarded,
        buckets_per_node_at_start: at_start,
        seed: opts.seed,
        how_run: format!(
            "{} nodes in one process (workers, sync threads and coordinators share {cores} cores; \
             sync over loopback UDP, no emulated link)",
            o.nodes
        ),
        run_ms: ms(end.duration_since(t0)),
        setup_median_ms: quantile(&all_setups, 0.5),
        setup_p95_ms: quantile(&all_setups, 0.95),
        opened_after_fault,
        setup_after_fault_median_ms: quantile(&after_setups, 0.5),
        setup_after_fault_p95_ms: quantile(&after_setups, 0.95),
        setup_after_fault_max_ms: after_setups.last().copied(),
        worker_us_per_session: busy.iter().sum::<f64>() * 1000.0 / completed.max(1) as f64,
        sync_us_per_session: sync_cpu.iter().sum::<f64>() * 1000.0 / completed.max(1) as f64,
        worker_bound_sessions_per_sec: completed as f64
            / (busy.iter().copied().fold(0.0, f64::max) / 1000.0).max(1e-9),
        worker_busy_ms_per_node: busy,
        sync_cpu_ms_per_node: sync_cpu,
    })
}

/// The `q` quantile of sorted `v` (nearest rank).
fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    Some(v[i])
}

fn sync_bytes(n: &mut Node) -> anyhow::Result<u64> {
    Ok(n.sync_counters()?.1)
}

/// The report as text.
pub fn render_cluster(r: &ClusterLabReport) -> String {
    format!(
        "cluster: {} nodes, {} ({} buckets, {} backup(s) per bucket, replicate to {})\n\
         {:?} of node {} with {} transfers established; {} buckets moved; {} false deaths\n\
         recovered {}/{} ({:.1} %), broken {}, reset {}, completed {}/{}\n\
         every bucket forwarded again after {} ms; transfers resumed within {} ms\n\
         replication {:.0} bytes per flow; {:.0} sessions/s, {:.1} Mbit/s\n\
         buckets per node at start {:?}; frames forwarded per node {:?}\n\
         connection set-up (SYN to SYN-ACK) median {} ms, p95 {} ms; opened after the fault: {}, median {} ms, max {} ms\n\
         worker µs/session {:.2} (busy ms per node {:?}); sync thread µs/session {:.2}; worker-bound {:.0} sessions/s\n\
         {}\n",
        r.nodes,
        r.mode,
        r.buckets,
        r.backups,
        r.replicate,
        r.fault,
        r.victim,
        r.flows_established_at_crash,
        r.buckets_moved,
        r.false_deaths,
        r.flows_recovered,
        r.flows_established_at_crash,
        r.recovery_ratio * 100.0,
        r.broken_transfers,
        r.reset_transfers,
        r.transfers_completed,
        r.transfers,
        r.time_to_recover_ms
            .map_or("-".to_string(), |v| format!("{v:.0}")),
        r.time_to_resume_transfers_ms
            .map_or("-".to_string(), |v| format!("{v:.0}")),
        r.sync_bytes_per_flow,
        r.sessions_per_sec,
        r.data_rate_mbps,
        r.buckets_per_node_at_start,
        r.forwarded_per_node,
        opt_ms(r.setup_median_ms),
        opt_ms(r.setup_p95_ms),
        r.opened_after_fault,
        opt_ms(r.setup_after_fault_median_ms),
        opt_ms(r.setup_after_fault_max_ms),
        r.worker_us_per_session,
        r.worker_busy_ms_per_node
            .iter()
            .map(|v| (v * 10.0).round() / 10.0)
            .collect::<Vec<_>>(),
        r.sync_us_per_session,
        r.worker_bound_sessions_per_sec,
        r.how_run,
    )
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.2}"))
}
