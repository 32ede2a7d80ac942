//! `ftfw-lab bench forward` (feature `dpdk`): the ftfw worker pipeline
//! against `dpdk-testpmd` in io-forward mode on the same ports and core,
//! in one run.
//!
//! Two links. `--link memif` (the default, [`memif`]): a generator thread
//! offers frames over DPDK shared memory (`net_memif`), fast enough to
//! outrun the forwarders, and the forwarders send to a `net_null` sink.
//! `--link veth`: the generator sends over AF_PACKET and veths to
//! `net_af_packet` vdevs; the kernel's veth path, not the forwarders, sets
//! that rate (about 0.4 Mpps here), so it checks the AF_PACKET vdev path
//! rather than measuring forwarding cost.
//!
//! The veth topology, in a network namespace the benchmark creates and
//! deletes:
//!
//! ```text
//!   generator --AF_PACKET--> ga ==veth== fa  [forwarder]  fb ==veth== gb  (counted)
//! ```
//!
//! The forwarder is, in turn, (a) the ftfw worker pipeline (stateful
//! filtering: conntrack, ACL on misses, fast path for established flows)
//! pinned to `fwd_core`, busy polling two `net_af_packet` DPDK ports, and
//! (b) `dpdk-testpmd --forward-mode=io` with its forwarding lcore on the
//! same core and the same vdevs. The generator replays UDP frames of
//! `flows` established flows (opened both ways before timing) from
//! `gen_core` as fast as it can; the rate is what reaches `gb` (its veth
//! receive counter) per second. The two alternate for `rounds` rounds; the
//! best round of each is reported (the machine is shared and noisy), with
//! every round's figure.
//!
//! Runs only as root (namespaces, AF_PACKET, EAL). The benchmark process
//! re-executes itself inside the namespace (`--inside`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use arc_swap::ArcSwap;
use ftfw_dataplane::acl;
use ftfw_dataplane::conntrack::ConntrackConfig;
use ftfw_dataplane::port::af_packet::{AfPacketConfig, AfPacketPort};
use ftfw_dataplane::port::dpdk::{DeviceConfig, DpdkPort};
use ftfw_dataplane::port::{PacketBuf, Port, BURST};
use ftfw_dataplane::worker::stages::StageTimes;
use ftfw_dataplane::worker::{self, ActiveRules, WorkerSpec};

use ftfw_testkit::netns::NetnsLab;

use crate::pktgen;

mod memif;

/// How the generator reaches the forwarder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    /// DPDK shared memory (`net_memif`), forwarded to a `net_null` sink.
    #[default]
    Memif,
    /// AF_PACKET over veths to `net_af_packet` vdevs, in a namespace.
    Veth,
}

/// A forwarder that delivers more than this share of the offered load is
/// not known to be slower than the generator: its rate is the generator's.
pub const OUTRUN: f64 = 0.95;

/// Whether the generator outran a forwarder whose best round delivered
/// `delivered` of `offered` Mpps.
pub fn outran(delivered: f64, offered: f64) -> bool {
    offered > 0.0 && delivered < OUTRUN * offered
}

/// Benchmark knobs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ForwardOpts {
    /// Seconds each timed phase runs.
    pub duration_secs: f64,
    /// Frame size without FCS.
    pub size: usize,
    /// UDP flows in the traffic.
    pub flows: u64,
    /// ftfw / testpmd alternations.
    pub rounds: u32,
    /// Core of the generator (and of EAL's main lcores).
    pub gen_core: usize,
    /// Core of the forwarder (ftfw worker, testpmd forwarding lcore).
    pub fwd_core: usize,
    /// The testpmd program.
    pub testpmd: String,
    /// How the generator reaches the forwarder.
    #[serde(default)]
    pub link: Link,
}

/// What the benchmark measured.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ForwardReport {
    /// Best ftfw round, million frames per second delivered.
    pub ftfw_mpps: f64,
    /// Best testpmd round, million frames per second delivered.
    pub testpmd_mpps: f64,
    /// `ftfw_mpps / testpmd_mpps`, only when the generator outran both
    /// forwarders in their best rounds (`None`: `generator_limited`).
    pub ratio: Option<f64>,
    /// The offered load was not above a forwarder's rate in its best
    /// round (it delivered at least [`OUTRUN`] of what the generator
    /// sent), so the rates measure the generator and their ratio says
    /// nothing about forwarding cost.
    pub generator_limited: bool,
    /// The generator outran ftfw in its best round: that rate is ftfw's.
    pub ftfw_outrun: bool,
    /// The generator outran testpmd in its best round.
    pub testpmd_outrun: bool,
    /// Every ftfw round.
    pub ftfw_rounds_mpps: Vec<f64>,
    /// Every testpmd round.
    pub testpmd_rounds_mpps: Vec<f64>,
    /// What the generator offered, per round and forwarder, in Mpps (ftfw
    /// rounds first, then testpmd rounds). veth: the frames it sent.
    /// memif: the frames it built, those the link took plus those it
    /// refused because the forwarder was behind (a refusal costs the
    /// generator less than a frame sent, so this exceeds what it could
    /// send to a forwarder that kept up; it shows whether the forwarder
    /// was outrun, not the generator's top rate).
    pub offered_mpps: Vec<f64>,
    /// Frames the ftfw pipeline took its fast path for (all rounds).
    pub ftfw_fast_path: u64,
    /// Frames the ftfw pipeline dropped (rules, invalid, all rounds).
    pub ftfw_dropped: u64,
    /// Frames the ftfw ports' devices missed (receive rings full).
    pub ftfw_rx_missed: u64,
    /// ftfw mempool mbufs in use when the ports opened, per round (sum of
    /// both ports).
    pub pool_in_use_start: Vec<u32>,
    /// ... and after the worker stopped: equal when no mbuf leaked.
    pub pool_in_use_end: Vec<u32>,
    /// Whether EAL ran on hugepages (else `--no-huge`).
    pub hugepages: bool,
    /// memif: frames the ftfw rounds handed to the sink over the whole
    /// rounds (warm-up included), a check on `delivered` (veth: none).
    pub ftfw_sink_frames: Option<u64>,
    /// memif: ftfw's ns per packet by stage of its burst (`rx`: the
    /// port's receive, here the memif PMD's copy out of the shared
    /// memory; `parse`; `lookup`: bucket check and flow table warm-up;
    /// `decide`; `tx`: the port's transmit, to the sink), from one more
    /// ftfw round with the worker's stage clock on. That round is not
    /// among the rated ones: the clock costs a few ns per packet. Compare
    /// with testpmd's whole cost, `1000 / testpmd_mpps` ns per packet.
    #[serde(default)]
    pub ftfw_stages_ns_per_packet: Option<std::collections::BTreeMap<String, f64>>,
    /// The knobs.
    pub opts: ForwardOpts,
}

/// Fails unless the testpmd program exists.
fn require_testpmd(opts: &ForwardOpts) -> anyhow::Result<()> {
    if !Path::new(&opts.testpmd).is_file()
        && Command::new("sh")
            .args(["-c", &format!("command -v {}", opts.testpmd)])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
    {
        bail!(
            "{} not found (Debian: apt-get install dpdk-dev)",
            opts.testpmd
        );
    }
    Ok(())
}

/// Runs the benchmark. memif: in this process ([`memif`]). veth: creates
/// the namespace and veths, runs `ftfw-lab bench forward --inside` in it,
/// removes them.
pub fn run(opts: &ForwardOpts) -> anyhow::Result<ForwardReport> {
    if opts.link == Link::Memif {
        return memif::run(opts);
    }
    require_testpmd(opts)?;
    let (lab, ns) = bench_netns()?;
    let exe = std::env::current_exe().context("finding ftfw-lab")?;
    let json = serde_json::to_string(opts)?;
    let out = lab
        .command(&ns, exe)
        .args(["bench", "forward", "--inside", &json])
        .stderr(Stdio::inherit())
        .output()
        .context("running the benchmark in the namespace")?;
    if !out.status.success() {
        bail!("benchmark inside {ns} failed ({})", out.status);
    }
    let report: ForwardReport = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "benchmark output is not a report: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    drop(lab);
    Ok(report)
}

/// The benchmark's namespace (`ftfwbf-PID`) with two veth pairs inside,
/// `ga`/`fa` and `fb`/`gb`, offloads off; deleted on drop.
fn bench_netns() -> anyhow::Result<(NetnsLab, String)> {
    let mut lab = NetnsLab::new("ftfwbf", "")?;
    let n = lab.add_ns("")?;
    lab.veth((&n, "ga"), (&n, "fa"))?;
    lab.veth((&n, "fb"), (&n, "gb"))?;
    for i in ["ga", "fa", "fb", "gb"] {
        lab.offloads_off(&n, i)?;
    }
    Ok((lab, n))
}

fn rx_counter(ifname: &str) -> anyhow::Result<u64> {
    let p = format!("/sys/class/net/{ifname}/statistics/rx_packets");
    let s = std::fs::read_to_string(&p).with_context(|| p.clone())?;
    s.trim().parse().with_context(|| p)
}

fn bufs(frames: &[Vec<u8>]) -> Vec<PacketBuf> {
    frames
        .iter()
        .map(|f| {
            let mut p = PacketBuf::new();
            p.set(f);
            p
        })
        .collect()
}

/// Sends every frame once on `port`, retrying while its ring is full.
fn send_all(port: &mut AfPacketPort, frames: &mut [PacketBuf]) {
    for chunk in frames.chunks_mut(BURST) {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut at = 0;
        while at < chunk.len() && Instant::now() < deadline {
            at += port.tx_burst(&mut chunk[at..]);
        }
    }
}

/// Replays `frames` on `port` from core `core` for `duration`; returns
/// frames accepted.
fn blast(
    port: &mut AfPacketPort,
    frames: &mut [PacketBuf],
    core: usize,
    duration: Duration,
) -> u64 {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        eprintln!("ftfw-lab: could not pin the generator to core {core}");
    }
    let start = Instant::now();
    let mut sent = 0u64;
    let mut at = 0usize;
    let mut iters = 0u32;
    loop {
        let end = (at + BURST).min(frames.len());
        sent += port.tx_burst(&mut frames[at..end]) as u64;
        at = if end == frames.len() { 0 } else { end };
        iters = iters.wrapping_add(1);
        if iters.is_multiple_of(64) && start.elapsed() >= duration {
            break;
        }
    }
    sent
}

struct Traffic {
    requests: Vec<PacketBuf>,
    replies: Vec<PacketBuf>,
    data: Vec<PacketBuf>,
}

fn traffic(opts: &ForwardOpts) -> Traffic {
    let (mut req, mut rep, mut data) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..opts.flows {
        let t = pktgen::flow_tuple(i, true, [198, 51, 100]);
        for (reply, f) in pktgen::opening(&t) {
            if reply {
                rep.push(f);
            } else {
                req.push(f);
            }
        }
        let [d, _] = pktgen::data_frames(&t, opts.size.max(pktgen::MIN_FRAME));
        data.push(d);
    }
    Traffic {
        requests: bufs(&req),
        replies: bufs(&rep),
        data: bufs(&data),
    }
}

/// One timed phase: blasts for the duration, returns (delivered, sent).
fn timed(
    gen: &mut AfPacketPort,
    t: &mut Traffic,
    opts: &ForwardOpts,
) -> anyhow::Result<(u64, u64)> {
    let d = Duration::from_secs_f64(opts.duration_secs);
    let before = rx_counter("gb")?;
    let sent = blast(gen, &mut t.data, opts.gen_core, d);
    // Let what is in flight arrive before reading the counter.
    std::thread::sleep(Duration::from_millis(100));
    Ok((rx_counter("gb")? - before, sent))
}

struct FtfwRound {
    delivered: u64,
    sent: u64,
    fast_path: u64,
    dropped: u64,
    rx_missed: u64,
    pool_start: u32,
    pool_end: u32,
}

/// The ftfw worker of a round, with the thread that drains its delta
/// ring as the sync core would (else the ring fills and counts losses).
struct Ftfw {
    shared: Arc<worker::WorkerShared>,
    /// The worker thread; it returns what its stage clock measured.
    thread: std::thread::JoinHandle<StageTimes>,
    stop_drain: Arc<AtomicBool>,
    drain: std::thread::JoinHandle<()>,
}

impl Ftfw {
    /// Stops the worker; returns its counters, the frames its ports'
    /// devices missed and what its stage clock measured (nothing unless
    /// it was started with the clock on).
    fn stop(self) -> (worker::WorkerCounters, u64, StageTimes) {
        self.shared.stop();
        let stages = self.thread.join().unwrap_or_default();
        self.stop_drain.store(true, Ordering::Relaxed);
        let _ = self.drain.join();
        let c = self.shared.counters.load();
        let rx_missed = self
            .shared
            .ports
            .iter()
            .map(|(_, _, s)| s.load().rx_missed)
            .sum();
        (c, rx_missed, stages)
    }
}

/// Starts the ftfw worker on `fwd_core`, bridging `outside` (where the
/// generator's UDP flows come in, accepted as new flows to port 80) and
/// `inside`. `stage_clock`: the worker times its stages (see
/// [`worker::stages`]), at a few ns per packet.
fn start_ftfw(
    outside: Box<dyn Port>,
    inside: Box<dyn Port>,
    opts: &ForwardOpts,
    stage_clock: bool,
) -> anyhow::Result<Ftfw> {
    let rules = acl::parse_rules(
        "policy drop\naccept ct established,related\ndrop ct invalid\naccept in outside proto udp dport 80 ct new\n",
        "bench-forward",
        1,
        &|n| match n {
            "outside" => Some(0),
            "inside" => Some(1),
            _ => None,
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let active = Arc::new(ArcSwap::from_pointee(ActiveRules {
        generation: 1,
        classifier: rules.compile(),
        sync: Default::default(),
        nat: Default::default(),
        helpers: Default::default(),
    }));
    let mut spec = WorkerSpec::bridged_pair(
        outside,
        inside,
        ConntrackConfig {
            capacity: (opts.flows as usize * 2).max(4096),
            ..ConntrackConfig::default()
        },
        1 << 16,
    );
    spec.core = Some(opts.fwd_core);
    // The worker runs on a thread of ours, as `worker::spawn` would run
    // it, so that the thread can hand back its stage clock.
    let mut w = worker::Worker::new(spec, active, None);
    w.shared().set_forwarding(true);
    w.set_stage_timing(stage_clock);
    let shared = w.shared().clone();
    let core = opts.fwd_core;
    let thread = std::thread::Builder::new()
        .name("ftfw-worker-0".into())
        .spawn(move || {
            if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                eprintln!("ftfw-lab: could not pin the ftfw worker to core {core}");
            }
            w.run();
            w.stage_times()
        })
        .context("starting the worker")?;
    let stop_drain = Arc::new(AtomicBool::new(false));
    let drain = {
        let (shared, stop) = (shared.clone(), stop_drain.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                while shared.deltas.pop().is_some() {}
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    Ok(Ftfw {
        shared,
        thread,
        stop_drain,
        drain,
    })
}

fn ftfw_round(
    gen: &mut AfPacketPort,
    t: &mut Traffic,
    opts: &ForwardOpts,
) -> anyhow::Result<FtfwRound> {
    let open = |devargs: &str| -> anyhow::Result<DpdkPort> {
        Ok(DpdkPort::open(&DeviceConfig::new(devargs, 1), 0)?)
    };
    let outside = open("net_af_packet0,iface=fa,qpairs=1")?;
    let inside = open("net_af_packet1,iface=fb,qpairs=1")?;
    let devices = [outside.device().clone(), inside.device().clone()];
    let pool_start: u32 = devices.iter().map(|d| d.pool().in_use()).sum();
    let fw = start_ftfw(Box::new(outside), Box::new(inside), opts, false)?;
    // Open every flow both ways: requests from the generator, replies from
    // the far side.
    std::thread::sleep(Duration::from_millis(200));
    send_all(gen, &mut t.requests);
    std::thread::sleep(Duration::from_millis(200));
    {
        let mut far = AfPacketPort::open(&AfPacketConfig {
            promiscuous: false,
            ..AfPacketConfig::new("gb")
        })?;
        send_all(&mut far, &mut t.replies);
        far.wait_rx(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let (delivered, sent) = timed(gen, t, opts)?;
    let (c, rx_missed, _) = fw.stop();
    let pool_end = devices.iter().map(|d| d.pool().in_use()).sum();
    drop(devices);
    Ok(FtfwRound {
        delivered,
        sent,
        fast_path: c.fast_path,
        dropped: c.dropped_by_rule + c.invalid,
        rx_missed,
        pool_start,
        pool_end,
    })
}

/// testpmd, stopped with SIGINT (by pid) and waited for on drop.
struct Testpmd {
    child: Child,
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Testpmd {
    /// Starts `dpdk-testpmd --forward-mode=io` on `vdevs`, its forwarding
    /// lcore on `fwd_core` (main lcore on `gen_core`), and waits (bounded)
    /// until it forwards; its output is drained after.
    fn start(opts: &ForwardOpts, vdevs: [&str; 2], huge: bool) -> anyhow::Result<Testpmd> {
        let mut cmd = Command::new(&opts.testpmd);
        cmd.args([
            "-l",
            &format!("{},{}", opts.gen_core, opts.fwd_core),
            "--main-lcore",
            &opts.gen_core.to_string(),
            "--no-pci",
            "--no-telemetry",
            "--vdev",
            vdevs[0],
            "--vdev",
            vdevs[1],
        ]);
        if huge {
            cmd.arg("--in-memory");
        } else {
            cmd.args(["--no-huge", "-m", "1024"]);
        }
        cmd.args([
            "--",
            "--forward-mode=io",
            "--auto-start",
            "--nb-cores=1",
            "--total-num-mbufs=16384",
            "--stats-period=1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", opts.testpmd))?;
        let stdout = child.stdout.take().context("testpmd stdout")?;
        let pmd = Testpmd { child };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // "Start automatic packet forwarding", or (auto-start) "No
                // commandline core given, start packet forwarding".
                if line
                    .to_ascii_lowercase()
                    .contains("start packet forwarding")
                    || line.contains("Port statistics")
                {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(30))
            .context("testpmd did not start forwarding within 30 s")?;
        Ok(pmd)
    }
}

fn testpmd_round(
    gen: &mut AfPacketPort,
    t: &mut Traffic,
    opts: &ForwardOpts,
    huge: bool,
) -> anyhow::Result<(u64, u64)> {
    let pmd = Testpmd::start(
        opts,
        [
            "net_af_packet0,iface=fa,qpairs=1",
            "net_af_packet1,iface=fb,qpairs=1",
        ],
        huge,
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let r = timed(gen, t, opts)?;
    drop(pmd);
    Ok(r)
}

/// The benchmark proper, inside the namespace.
pub fn run_inside(opts: &ForwardOpts) -> anyhow::Result<ForwardReport> {
    let huge = crate::dpdk::init(opts.gen_core)?;
    let mut t = traffic(opts);
    let mut gen = AfPacketPort::open(&AfPacketConfig {
        promiscuous: false,
        qdisc_bypass: true,
        ..AfPacketConfig::new("ga")
    })?;
    let secs = opts.duration_secs;
    let mut rep = Rounds::default();
    for _ in 0..opts.rounds.max(1) {
        let r = ftfw_round(&mut gen, &mut t, opts)?;
        rep.ftfw.push(r.delivered as f64 / secs / 1e6);
        rep.offered_f.push(r.sent as f64 / secs / 1e6);
        rep.fast += r.fast_path;
        rep.dropped += r.dropped;
        rep.missed += r.rx_missed;
        rep.pool_start.push(r.pool_start);
        rep.pool_end.push(r.pool_end);
        let (delivered, sent) = testpmd_round(&mut gen, &mut t, opts, huge)?;
        rep.pmd.push(delivered as f64 / secs / 1e6);
        rep.offered_p.push(sent as f64 / secs / 1e6);
    }
    Ok(rep.report(opts, huge, None))
}

/// Every round's figures, gathered by either link.
#[derive(Default)]
struct Rounds {
    ftfw: Vec<f64>,
    pmd: Vec<f64>,
    offered_f: Vec<f64>,
    offered_p: Vec<f64>,
    fast: u64,
    dropped: u64,
    missed: u64,
    pool_start: Vec<u32>,
    pool_end: Vec<u32>,
}

impl Rounds {
    /// The report: each forwarder's best round, with what was offered in
    /// it; a ratio only when the generator outran both.
    fn report(self, opts: &ForwardOpts, huge: bool, sink: Option<u64>) -> ForwardReport {
        let best = |v: &[f64], offered: &[f64]| {
            v.iter()
                .zip(offered)
                .fold((0.0, 0.0), |b, (&d, &o)| if d > b.0 { (d, o) } else { b })
        };
        let ((f, fo), (p, po)) = (
            best(&self.ftfw, &self.offered_f),
            best(&self.pmd, &self.offered_p),
        );
        let (ftfw_outrun, testpmd_outrun) = (outran(f, fo), outran(p, po));
        let generator_limited = !(ftfw_outrun && testpmd_outrun);
        let mut offered = self.offered_f;
        offered.extend(self.offered_p);
        ForwardReport {
            ftfw_mpps: f,
            testpmd_mpps: p,
            ratio: (!generator_limited && p > 0.0).then(|| f / p),
            generator_limited,
            ftfw_outrun,
            testpmd_outrun,
            ftfw_rounds_mpps: self.ftfw,
            testpmd_rounds_mpps: self.pmd,
            offered_mpps: offered,
            ftfw_fast_path: self.fast,
            ftfw_dropped: self.dropped,
            ftfw_rx_missed: self.missed,
            pool_in_use_start: self.pool_start,
            pool_in_use_end: self.pool_end,
            hugepages: huge,
            ftfw_sink_frames: sink,
            ftfw_stages_ns_per_packet: None,
            opts: opts.clone(),
        }
    }
}

/// The human-readable report.
pub fn render(r: &ForwardReport) -> String {
    let list = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "ftfw forward benchmark: {}, {} UDP flows, {}-byte frames, {} s x {} rounds\n\
         \n\
         ftfw pipeline (stateful)   {:>8.3} Mpps   rounds: {}\n\
         testpmd io-forward         {:>8.3} Mpps   rounds: {}\n\
         ratio                      {}\n\
         offered (generator)        {}\n\
         ftfw: fast path {} dropped {} rx missed {}; mbufs in use start {:?} end {:?}; hugepages {}\n{}",
        match r.opts.link {
            Link::Memif => "generator over net_memif, forwarders to net_null",
            Link::Veth => "net_af_packet vdevs over veth",
        },
        r.opts.flows,
        r.opts.size,
        r.opts.duration_secs,
        r.opts.rounds,
        r.ftfw_mpps,
        list(&r.ftfw_rounds_mpps),
        r.testpmd_mpps,
        list(&r.testpmd_rounds_mpps),
        match r.ratio {
            Some(x) => format!("{x:>8.3}        (target >= 0.5)"),
            None => format!(
                "none: the generator did not outrun {} (its best round delivered at least \
                 {:.0}% of the offered load, so that rate is the generator's){}",
                match (r.ftfw_outrun, r.testpmd_outrun) {
                    (true, _) => "testpmd",
                    (false, true) => "ftfw",
                    (false, false) => "either forwarder",
                },
                OUTRUN * 100.0,
                if r.ftfw_outrun {
                    "; ftfw's rate is its own"
                } else {
                    ""
                },
            ),
        },
        list(&r.offered_mpps),
        r.ftfw_fast_path,
        r.ftfw_dropped,
        r.ftfw_rx_missed,
        r.pool_in_use_start,
        r.pool_in_use_end,
        r.hugepages,
        match &r.ftfw_stages_ns_per_packet {
            Some(st) => format!(
                "ftfw ns/packet by stage (one more round, stage clock on): {}; \
                 testpmd io-forward whole: {:.1}\n",
                ["rx", "parse", "lookup", "decide", "tx"]
                    .iter()
                    .map(|k| format!("{k} {:.1}", st.get(*k).copied().unwrap_or(0.0)))
                    .collect::<Vec<_>>()
                    .join(", "),
                if r.testpmd_mpps > 0.0 {
                    1000.0 / r.testpmd_mpps
                } else {
                    0.0
                },
            ),
            None => String::new(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_shows_ftfw_stages_beside_testpmd_whole_cost() {
        let opts = ForwardOpts {
            duration_secs: 1.0,
            size: 60,
            flows: 10,
            rounds: 1,
            gen_core: 0,
            fwd_core: 1,
            testpmd: "dpdk-testpmd".into(),
            link: Link::Memif,
        };
        let rounds = Rounds {
            ftfw: vec![10.0],
            pmd: vec![25.0],
            offered_f: vec![80.0],
            offered_p: vec![40.0],
            ..Rounds::default()
        };
        let mut r = rounds.report(&opts, true, Some(0));
        assert_eq!(r.ftfw_stages_ns_per_packet, None);
        assert!(!render(&r).contains("by stage"));
        // 32 packets: 1280 ns in rx is 40 per packet, and so on.
        let st = StageTimes {
            packets: 32,
            rx_ns: 1280,
            parse_ns: 640,
            lookup_ns: 384,
            decide_ns: 672,
            tx_ns: 256,
        };
        let map = crate::bench::stage_map(&st);
        assert_eq!(
            map.iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect::<Vec<_>>(),
            [
                ("decide", 21.0),
                ("lookup", 12.0),
                ("parse", 20.0),
                ("rx", 40.0),
                ("tx", 8.0)
            ]
        );
        r.ftfw_stages_ns_per_packet = Some(map);
        let text = render(&r);
        assert!(
            text.contains("rx 40.0, parse 20.0, lookup 12.0, decide 21.0, tx 8.0; testpmd io-forward whole: 40.0"),
            "{text}"
        );
        // The field survives the veth path's JSON round trip, and reports
        // without it still parse.
        let back: ForwardReport =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back.ftfw_stages_ns_per_packet, r.ftfw_stages_ns_per_packet);
        let mut v = serde_json::to_value(&r).unwrap();
        v.as_object_mut()
            .unwrap()
            .remove("ftfw_stages_ns_per_packet");
        let old: ForwardReport = serde_json::from_value(v).unwrap();
        assert_eq!(old.ftfw_stages_ns_per_packet, None);
    }

    #[test]
    fn a_forwarder_that_delivers_nearly_all_it_was_offered_did_not_set_the_rate() {
        assert!(outran(0.30, 0.42));
        assert!(!outran(0.41, 0.42));
        assert!(!outran(0.42, 0.42));
        assert!(!outran(0.0, 0.0));
    }
}
