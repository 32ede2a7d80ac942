//! The FT-FW paper's evaluation (Neira et al., section 7), rerun on ftfw
//! with the in-process cluster of [`crate::failover`].
//!
//! | id | paper | what runs |
//! |---|---|---|
//! | `crash` | — | one crash of the primary with the defaults of `ftfw-lab failover` (the headline numbers) |
//! | `fig6` | figure 6 | session rate and data rate by object size, replication off (fw1 alone) vs on (fw1 + fw2, FT-FW), negligible RTT |
//! | `fig7` | figure 7 | the same with 50 ms RTT between client and server |
//! | `fig9` | figure 9 | flows recovered after the crash of the primary, by object size, healthy sync link |
//! | `fig10` | figure 10 | the same with 50 ms RTT |
//! | `fig11` | figure 11 | recovery with 20% loss on the sync link: FT-FW vs best-effort UDP vs TCP |
//! | `fig13` | figure 13 | time to recover by sync transport, healthy link |
//! | `fig14` | figure 14 | time to recover by sync transport, 20% loss |
//! | `fig8` | figure 8 | session and data rate on two nodes: no replication (fw1 alone), primary-backup, multi-primary without and with replication (`ftfw-lab cluster`) |
//! | `fig12` | figure 12 | recovery after the crash of one of two multi-primary nodes, by object size |
//! | `clusters` | a-priori paper, V-B3 | clusters of 3, 6 and 9 nodes (one backup per bucket), one crashes: recovery, time to recover, connection set-up time, replication bytes per flow |
//!
//! | `lazy` | hFT-FW figures 3-10 | Bayes lazy replication: messages saved, wrong predictions and established flows lost at a crash by classification threshold, homogeneous and heterogeneous latency ([`lazy`]) |
//! | `migration` | hFT-FW figure 11 | proactive migration time against the number of flows ([`hybrid`]) |
//! | `levels` | a-priori paper, figures 5-7 | connection set-up time by sync level and write mode ([`hybrid`]) |
//!
//! `fig8`, `fig12` and `clusters` run N-node clusters ([`failover::run_cluster`]), several
//! seeds per point; they are not part of `all` (see [`CLUSTER`]).
//!
//! The paper gives its figures as plots; the numbers quoted beside ours
//! ([`PAPER`]) are the ones its text states. Its testbed: two firewalls
//! (Linux, iptables, conntrackd 1.0.0, keepalived with a 2 s VRRP advert
//! interval), an HTTP client with 200 concurrent downloads, 1 GbE.

mod clusters;
pub mod hybrid;
pub mod lazy;
pub mod loss;
mod perf;
mod render;
mod targets;

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::failover::{self, FailoverOpts, FailoverReport, Transport};
use crate::synclink::LinkParams;

pub use self::clusters::{ClusterPerfPoint, ClusterRecoveryPoint, Spread, FIG8_SETTINGS};
pub use self::hybrid::{HybridOpts, LevelsReport, MigrationReport};
pub use self::lazy::{LazyOpts, LazyReport};
pub use self::loss::{SeedRun, SeedSpread};
pub use self::render::{markdown, render};
use self::targets::targets;

/// What the paper's text says, experiment by experiment.
pub const PAPER: &[(&str, &str)] = &[
    (
        "fig6",
        "with replication on, session rate drops for objects < 50 KB; peak drop about 14% \
         for 0-1 KB objects; data rate slightly reduced; about 22,500 sessions/s without replication",
    ),
    (
        "fig7",
        "at 50 ms RTT session rate falls for everyone; negligible difference with replication on; \
         data rate unaffected",
    ),
    (
        "fig9",
        "replication improves recovery only for objects > 5 KB; objects < 5 KB recover no \
         better than without replication",
    ),
    (
        "fig10",
        "recovery improves with 50 ms RTT (fewer state changes per second)",
    ),
    (
        "fig11",
        "FT-FW recovers best at 20% loss; TCP and UDP do not give good results for objects > 10 KB",
    ),
    (
        "fig8",
        "multi-primary without replication: about 45,000 sessions/s, about double primary-backup \
         (figure 6: 22,500); with replication a peak session-rate drop of about 30%; the same with \
         and without replication for 5 KB objects; no significant change in throughput",
    ),
    (
        "fig12",
        "multi-primary: replication slightly improves recovery for objects < 5 KB, the real \
         improvement comes for bigger objects; time to recover bound by VRRP (3 × 2 s adverts)",
    ),
    (
        "clusters",
        "a-priori paper: clusters of 3, 6 and 9 VNFs (all but one only synchronizing), 100 \
         concurrent connections: connection set-up time grows with the cluster size; async dirty \
         writes up to 20% faster than sync transactional; no crash experiment",
    ),
    (
        "fig13",
        "FT-FW and UDP recover after 6-7 s (VRRP alone takes 6 s), TCP after 15 s",
    ),
    (
        "fig14",
        "at 20% loss FT-FW recovers after about 9 s, TCP about 15 s, UDP about 130 s",
    ),
];

/// The paper's words for experiment `id`.
pub fn paper(id: &str) -> &'static str {
    PAPER.iter().find(|(k, _)| *k == id).map_or("", |(_, v)| v)
}

/// The experiments of `all`, in the order they run.
pub const ALL: [&str; 10] = [
    "crash", "fig6", "fig7", "fig9", "fig10", "fig11", "fig13", "fig14", "lazy", "levels",
];

/// The cluster experiments (N-node clusters, several seeds per point):
/// asked for by name, not part of `all`; they run after the others.
pub const CLUSTER: [&str; 3] = ["fig8", "fig12", "clusters"];

/// The hybrid replication experiments (issue 13); `lazy` and `levels`
/// are also part of `all`, `migration` (two appliances of 1M flows each)
/// is asked for by name.
pub const HYBRID: [&str; 3] = ["lazy", "migration", "levels"];

/// What the suite runs.
#[derive(Debug, Clone)]
pub struct SuiteOpts {
    /// Experiment ids (see [`ALL`]).
    pub experiments: Vec<String>,
    /// Object sizes of the recovery and performance figures.
    pub sizes: Vec<usize>,
    /// Object sizes of figure 11 (three transports each).
    pub loss_sizes: Vec<usize>,
    /// Object size of the time-to-recover figures.
    pub time_size: usize,
    /// Concurrent transfers (the paper: 200).
    pub concurrency: usize,
    /// Loss of the lossy sync link (the paper: 20%).
    pub loss: f64,
    /// RTT of figures 7 and 10 (the paper: 50 ms).
    pub wan_rtt: Duration,
    /// Rounds of each performance point (the best is kept).
    pub perf_rounds: usize,
    /// The sync link (bandwidth, delay) of every run.
    pub link: LinkParams,
    /// Seed of every run (each run derives its own from it).
    pub seed: u64,
    /// Seeds (one crash run each) per point with loss on the sync link
    /// (figures 11 and 14): min, median and max are reported.
    pub loss_seeds: usize,
    /// A transfer with no progress for this long is broken.
    pub stall: Duration,
    /// The headline crash run.
    pub crash: FailoverOpts,
    /// pfsync-style defer of a new flow's first packet.
    pub defer: bool,
    /// Object sizes of figures 8 and 12.
    pub cluster_sizes: Vec<usize>,
    /// Seeds (one run each) per point of the cluster experiments.
    pub cluster_seeds: usize,
    /// Cluster sizes of `clusters`.
    pub cluster_nodes: Vec<usize>,
    /// Object size of `clusters`.
    pub cluster_object_size: usize,
    /// Transfers of each performance phase (`None`: by object size, see
    /// `perf_transfers`); small values make quick test runs.
    pub perf_transfers: Option<usize>,
    /// The `lazy` experiment.
    pub lazy: LazyOpts,
    /// The `levels` and `migration` experiments.
    pub hybrid: HybridOpts,
}

impl Default for SuiteOpts {
    fn default() -> Self {
        SuiteOpts {
            experiments: ALL.iter().map(|s| (*s).to_string()).collect(),
            sizes: vec![100, 1_000, 5_000, 10_000, 50_000, 100_000],
            loss_sizes: vec![1_000, 10_000, 100_000],
            time_size: 100_000,
            concurrency: 200,
            loss: 0.2,
            wan_rtt: Duration::from_millis(50),
            perf_rounds: 2,
            link: LinkParams::default(),
            seed: 1,
            loss_seeds: 3,
            stall: Duration::from_millis(1500),
            crash: FailoverOpts::default(),
            defer: true,
            cluster_sizes: vec![1_000, 10_000, 100_000],
            cluster_seeds: 3,
            cluster_nodes: vec![3, 6, 9],
            cluster_object_size: 50_000,
            perf_transfers: None,
            lazy: LazyOpts::default(),
            hybrid: HybridOpts::default(),
        }
    }
}

/// One point of a performance figure.
#[derive(Debug, Clone, Serialize)]
pub struct PerfPoint {
    /// Object size in bytes.
    pub object_size: usize,
    /// Sessions per second, replication off.
    pub sessions_per_sec_off: f64,
    /// Sessions per second, replication on.
    pub sessions_per_sec_on: f64,
    /// `1 - on / off`.
    pub session_rate_drop: f64,
    /// Sessions per second, replication on with `defer` (a new flow's
    /// first packet waits for the peer's ACK).
    pub sessions_per_sec_defer: f64,
    /// `1 - defer / off`.
    pub session_rate_drop_defer: f64,
    /// Object data rate in Mbit/s, replication off.
    pub data_rate_mbps_off: f64,
    /// Object data rate in Mbit/s, replication on.
    pub data_rate_mbps_on: f64,
    /// `1 - on / off`.
    pub data_rate_drop: f64,
    /// Object data rate in Mbit/s, replication on with defer.
    pub data_rate_mbps_defer: f64,
    /// fw1's worker busy time per session, replication off (µs).
    pub worker_us_per_session_off: f64,
    /// The same, replication on (deltas pushed to the sync ring).
    pub worker_us_per_session_on: f64,
    /// The same, replication on with defer (first packets held and
    /// released).
    pub worker_us_per_session_defer: f64,
    /// fw1's sync thread CPU time per session, replication on (µs).
    pub sync_us_per_session_on: f64,
    /// What replication costs the forwarding core: `1 - off / on` of the
    /// worker's time per session (the session-rate drop of a worker-bound
    /// firewall whose sync thread has a core of its own, as ftfwd pins it).
    pub worker_capacity_drop: f64,
    /// `on / off - 1` of the worker's CPU time per session (full eager).
    pub worker_busy_increase: f64,
    /// fw1's worker time per session, level `established` (figure 6).
    pub worker_us_per_session_established: Option<f64>,
    /// `established / off - 1`.
    pub worker_busy_increase_established: Option<f64>,
    /// fw1's worker time per session, lazy replication (figure 6).
    pub worker_us_per_session_lazy: Option<f64>,
    /// `lazy / off - 1`.
    pub worker_busy_increase_lazy: Option<f64>,
    /// Transfers per run.
    pub transfers: usize,
    /// Transfers that broke (should be none without a crash).
    pub broken: usize,
}

/// One crash run of a recovery figure.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryPoint {
    /// Object size in bytes.
    pub object_size: usize,
    /// Sync transport.
    pub transport: Transport,
    /// Transfers established at the crash.
    pub established: usize,
    /// Of those, the ones fw2 held right after the crash.
    pub replicated: Option<usize>,
    /// Of those, completed.
    pub recovered: usize,
    /// `recovered / established`.
    pub recovery_ratio: f64,
    /// All broken transfers of the run.
    pub broken: usize,
    /// Crash to every recovered transfer moving again.
    pub time_to_recover_ms: Option<f64>,
    /// Crash to the first transfer moving again.
    pub time_to_first_recovery_ms: Option<f64>,
    /// Crash to fw2 active.
    pub takeover_ms: Option<f64>,
    /// fw1's sync messages.
    pub sync_msgs: u64,
    /// Datagrams or segments lost (or retransmitted by the TCP model) on
    /// the link.
    pub sync_lost: u64,
    /// A point with loss on the sync link runs over several seeds: the
    /// fields above are its median run's, this is every run and the
    /// spread (min, median, max).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread: Option<SeedSpread>,
}

impl RecoveryPoint {
    fn of(r: &FailoverReport) -> Self {
        RecoveryPoint {
            object_size: r.object_size,
            transport: r.transport,
            established: r.flows_established_at_crash,
            replicated: r.flows_replicated_at_crash,
            recovered: r.flows_recovered,
            recovery_ratio: r.recovery_ratio,
            broken: r.broken_transfers,
            time_to_recover_ms: r.time_to_recover_ms,
            time_to_first_recovery_ms: r.time_to_first_recovery_ms,
            takeover_ms: r.takeover_ms,
            sync_msgs: r.sync_msgs,
            sync_lost: r.sync_link.lost + r.sync_link.retransmissions,
            spread: None,
        }
    }
}

/// One experiment's results.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FigureData {
    /// Session and data rate, off vs on.
    Performance {
        /// The points, by object size.
        points: Vec<PerfPoint>,
        /// Largest worker busy-time increase per session over the sizes
        /// with level `established` (`on / off - 1`; figure 6 only).
        worker_busy_increase_max: Option<f64>,
        /// The same with lazy replication (200 ms barrier; figure 6 only).
        worker_busy_increase_max_lazy: Option<f64>,
        /// The same with full eager replication.
        worker_busy_increase_max_full: Option<f64>,
    },
    /// Recovery (and time to recover), by transport and object size.
    Recovery {
        /// The runs.
        points: Vec<RecoveryPoint>,
    },
    /// Session and data rate of two-node clusters (figure 8).
    ClusterPerf {
        /// By object size, then setting.
        points: Vec<ClusterPerfPoint>,
        /// How the nodes ran.
        how_run: String,
    },
    /// Recovery of clusters after one node crashes (figure 12, `clusters`).
    ClusterRecovery {
        /// The points.
        points: Vec<ClusterRecoveryPoint>,
        /// A two-node cluster's replication bytes per flow, no fault.
        pair_bytes_per_flow: Option<Spread>,
        /// How the nodes ran.
        how_run: String,
    },
}

/// One experiment, as printed, plotted and reported.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// `fig6` ...
    pub id: String,
    /// A title like the paper's caption.
    pub title: String,
    /// Client-server RTT.
    pub rtt_ms: f64,
    /// Loss on the sync link.
    pub sync_loss: f64,
    /// What the paper says.
    pub paper: String,
    /// Ours.
    #[serde(flatten)]
    pub data: FigureData,
}

/// The whole suite's results.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteReport {
    /// The headline crash run, when it ran.
    #[serde(flatten)]
    pub crash: Option<FailoverReport>,
    /// Every other experiment; in JSON an object keyed by figure id, each
    /// figure's data beside its title (`figures.fig6.worker_busy_increase_max`).
    #[serde(serialize_with = "figures_by_id")]
    pub figures: Vec<Figure>,
    /// `lazy` (`saved_ratio`, `wrong_ratio`, the points).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lazy: Option<LazyReport>,
    /// `migration` (`flows`, `secs`, the points).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationReport>,
    /// `levels` (set-up time by sync level and write mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub levels: Option<LevelsReport>,
    /// Target checks.
    pub targets: Vec<Target>,
    /// Seconds the suite took.
    pub total_secs: f64,
}

/// The figures as one JSON object keyed by id, in run order (ids are
/// unique: one figure per experiment).
fn figures_by_id<S: serde::Serializer>(figs: &[Figure], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(figs.len()))?;
    for f in figs {
        m.serialize_entry(&f.id, f)?;
    }
    m.end()
}

/// A target of the issue, checked against the figures.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is measured.
    pub measure: String,
    /// The paper's value.
    pub paper: String,
    /// Ours.
    pub ftfw: String,
    /// The target.
    pub target: String,
    /// Met or not (`None`: not measured in this run).
    pub met: Option<bool>,
}

/// Progress: a bar on a terminal, a line per step otherwise.
struct Progress {
    total: usize,
    done: usize,
    tty: bool,
    quiet: bool,
    started: Instant,
}

impl Progress {
    fn step(&mut self, what: &str) {
        if self.quiet {
            return;
        }
        let width = 30;
        let filled = (self.done * width).checked_div(self.total).unwrap_or(0);
        let line = format!(
            "[{}{}] {:>2}/{} {:>5.1} s  {what}",
            "#".repeat(filled),
            ".".repeat(width - filled),
            self.done,
            self.total,
            self.started.elapsed().as_secs_f64()
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
        self.done += 1;
    }

    fn finish(&mut self) {
        if !self.quiet && self.tty {
            eprintln!(
                "\r\x1b[2K[{}] {} runs in {:.1} s",
                "#".repeat(30),
                self.total,
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

pub(crate) fn has(opts: &SuiteOpts, id: &str) -> bool {
    opts.experiments.iter().any(|e| e == id)
}

fn kb(size: usize) -> String {
    if size >= 1_000_000 {
        format!("{} MB", size / 1_000_000)
    } else if size >= 1_000 {
        format!("{} KB", size / 1_000)
    } else {
        format!("{size} B")
    }
}

/// Transfers of one performance run of `size` bytes.
fn perf_transfers(size: usize, rtt: Duration, concurrency: usize) -> usize {
    if rtt > Duration::ZERO {
        (concurrency * 2).min(failover::MAX_TRANSFERS)
    } else {
        (200_000_000 / size.max(1)).clamp(400, 20_000)
    }
}

/// Transfers of one crash run of `size` bytes.
pub(crate) fn crash_transfers(size: usize, rtt: Duration, concurrency: usize) -> usize {
    if rtt > Duration::ZERO {
        (concurrency * 2).min(failover::MAX_TRANSFERS)
    } else {
        (60_000_000 / size.max(1)).clamp(600, 2_000)
    }
}

/// Checks the options.
pub fn check(opts: &SuiteOpts) -> anyhow::Result<()> {
    for e in &opts.experiments {
        anyhow::ensure!(
            ALL.contains(&e.as_str())
                || CLUSTER.contains(&e.as_str())
                || HYBRID.contains(&e.as_str()),
            "unknown experiment {e:?}: expected some of {}, {}, {}",
            ALL.join(", "),
            CLUSTER.join(", "),
            HYBRID.join(", ")
        );
    }
    anyhow::ensure!(!opts.experiments.is_empty(), "no experiment to run");
    anyhow::ensure!(
        !opts.sizes.is_empty() && !opts.loss_sizes.is_empty(),
        "no object size"
    );
    for s in opts
        .sizes
        .iter()
        .chain(&opts.loss_sizes)
        .chain([&opts.time_size])
    {
        anyhow::ensure!(
            (1..=1 << 30).contains(s),
            "object size {s} out of 1 ..= 1 GiB"
        );
    }
    anyhow::ensure!(
        (1..=4096).contains(&opts.concurrency),
        "concurrency out of 1 ..= 4096"
    );
    anyhow::ensure!((0.0..1.0).contains(&opts.loss), "loss must be in [0, 1)");
    anyhow::ensure!(
        (1..=10).contains(&opts.perf_rounds),
        "perf rounds out of 1 ..= 10"
    );
    anyhow::ensure!(
        (1..=20).contains(&opts.loss_seeds),
        "seeds per loss point out of 1 ..= 20"
    );
    anyhow::ensure!(
        (1..=20).contains(&opts.cluster_seeds),
        "cluster seeds out of 1 ..= 20"
    );
    anyhow::ensure!(
        opts.perf_transfers
            .is_none_or(|t| (1..=failover::MAX_TRANSFERS).contains(&t)),
        "performance transfers out of 1 ..= {}",
        failover::MAX_TRANSFERS
    );
    anyhow::ensure!(!opts.cluster_sizes.is_empty(), "no cluster object size");
    for s in opts.cluster_sizes.iter().chain([&opts.cluster_object_size]) {
        anyhow::ensure!(
            (1..=1 << 30).contains(s),
            "object size {s} out of 1 ..= 1 GiB"
        );
    }
    let h = &opts.hybrid;
    anyhow::ensure!((1..=20).contains(&h.seeds), "hybrid seeds out of 1 ..= 20");
    anyhow::ensure!(
        (1..=20).contains(&opts.lazy.seeds),
        "lazy seeds out of 1 ..= 20"
    );
    anyhow::ensure!(
        (1..=1_000_000).contains(&opts.lazy.connections),
        "lazy connections out of 1 ..= 1000000"
    );
    for &t in &opts.lazy.thresholds {
        anyhow::ensure!(t > 0.0 && t < 1.0, "lazy threshold {t} out of (0, 1)");
    }
    anyhow::ensure!(
        (1..=failover::MAX_TRANSFERS).contains(&h.level_transfers),
        "level transfers out of 1 ..= {}",
        failover::MAX_TRANSFERS
    );
    for &n in &h.migration_flows {
        anyhow::ensure!(
            (1..=4_000_000).contains(&n),
            "migration flows {n} out of 1 ..= 4000000"
        );
    }
    for &n in &opts.cluster_nodes {
        anyhow::ensure!(
            (2..=failover::MAX_LAB_NODES).contains(&n),
            "cluster size {n} out of 2 ..= {}",
            failover::MAX_LAB_NODES
        );
    }
    Ok(())
}

/// Runs the suite; progress goes to stderr unless `quiet`.
pub fn run(opts: &SuiteOpts, quiet: bool) -> anyhow::Result<SuiteReport> {
    check(opts)?;
    let started = Instant::now();
    let n_sizes = opts.sizes.len();
    let total = usize::from(has(opts, "crash"))
        + usize::from(has(opts, "fig6")) * n_sizes * 5 * opts.perf_rounds
        + usize::from(has(opts, "fig7")) * n_sizes * 3 * opts.perf_rounds
        + usize::from(has(opts, "fig9")) * n_sizes
        + usize::from(has(opts, "fig10")) * n_sizes
        + usize::from(has(opts, "fig11")) * opts.loss_sizes.len() * 3 * opts.loss_seeds
        + usize::from(has(opts, "fig13")) * 3
        + usize::from(has(opts, "fig14")) * 3 * opts.loss_seeds
        + clusters::runs(opts)
        + usize::from(has(opts, "lazy")) * 2 * opts.lazy.thresholds.len()
        + hybrid::runs(&opts.hybrid, has(opts, "levels"), has(opts, "migration"));
    let mut p = Progress {
        total,
        done: 0,
        tty: std::io::stderr().is_terminal(),
        quiet,
        started,
    };
    let base = FailoverOpts {
        concurrency: opts.concurrency,
        seed: opts.seed,
        stall: opts.stall,
        link: opts.link,
        defer: opts.defer,
        max_run: Duration::from_secs(60),
        ..FailoverOpts::default()
    };
    let mut crash = None;
    let mut figures = Vec::new();
    if has(opts, "crash") {
        p.step("crash: the primary fails mid-run (defaults of `ftfw-lab failover`)");
        crash = Some(failover::run(&opts.crash, |_| {})?);
    }
    for (id, rtt) in [("fig6", Duration::ZERO), ("fig7", opts.wan_rtt)] {
        if has(opts, id) {
            figures.push(perf::perf_figure(opts, &base, id, rtt, &mut p)?);
        }
    }
    // Crash runs, cached: figure 13 and 14 reuse the runs of figures 9 and
    // 11 at their object size.
    let mut runs: Vec<(Duration, f64, RecoveryPoint)> = Vec::new();
    let mut crash_run = |size: usize,
                         transport: Transport,
                         loss: f64,
                         rtt: Duration,
                         p: &mut Progress,
                         label: &str|
     -> anyhow::Result<RecoveryPoint> {
        if let Some((_, _, r)) = runs.iter().find(|(t, l, r)| {
            *t == rtt && *l == loss && r.object_size == size && r.transport == transport
        }) {
            return Ok(r.clone());
        }
        let o = FailoverOpts {
            transfers: crash_transfers(size, rtt, opts.concurrency),
            object_size: size,
            transport,
            rtt,
            link: LinkParams { loss, ..opts.link },
            seed: opts.seed.wrapping_add(size as u64),
            ..base.clone()
        };
        // With loss, several seeds (see `loss`).
        let seeds = if loss > 0.0 { opts.loss_seeds } else { 1 };
        let mut reports = Vec::with_capacity(seeds);
        for k in 0..seeds {
            p.step(&format!(
                "{label}: {transport}, {}, seed {}/{seeds}",
                kb(size),
                k + 1
            ));
            let seed = loss::seed(o.seed, k);
            reports.push(failover::run(&FailoverOpts { seed, ..o.clone() }, |_| {})?);
        }
        let r = if loss > 0.0 {
            loss::point(&reports).ok_or_else(|| anyhow::anyhow!("no run"))?
        } else {
            RecoveryPoint::of(&reports[0])
        };
        runs.push((rtt, loss, r.clone()));
        Ok(r)
    };
    for (id, rtt) in [("fig9", Duration::ZERO), ("fig10", opts.wan_rtt)] {
        if has(opts, id) {
            let mut points = Vec::new();
            for &s in &opts.sizes {
                points.push(crash_run(s, Transport::Ftfw, 0.0, rtt, &mut p, id)?);
            }
            figures.push(Figure {
                id: id.into(),
                title: format!(
                    "Recovery after the crash of the primary, {} RTT",
                    if rtt.is_zero() {
                        "negligible".to_string()
                    } else {
                        format!("{} ms", rtt.as_millis())
                    }
                ),
                rtt_ms: rtt.as_secs_f64() * 1000.0,
                sync_loss: 0.0,
                paper: paper(id).into(),
                data: FigureData::Recovery { points },
            });
        }
    }
    if has(opts, "fig11") {
        let mut points = Vec::new();
        for t in Transport::ALL {
            for &s in &opts.loss_sizes {
                points.push(crash_run(s, t, opts.loss, Duration::ZERO, &mut p, "fig11")?);
            }
        }
        figures.push(Figure {
            id: "fig11".into(),
            title: format!(
                "Recovery with {:.0}% packet loss on the dedicated link",
                opts.loss * 100.0
            ),
            rtt_ms: 0.0,
            sync_loss: opts.loss,
            paper: paper("fig11").into(),
            data: FigureData::Recovery { points },
        });
    }
    for (id, loss) in [("fig13", 0.0), ("fig14", opts.loss)] {
        if has(opts, id) {
            let mut points = Vec::new();
            for t in Transport::ALL {
                points.push(crash_run(
                    opts.time_size,
                    t,
                    loss,
                    Duration::ZERO,
                    &mut p,
                    id,
                )?);
            }
            figures.push(Figure {
                id: id.into(),
                title: if loss > 0.0 {
                    format!(
                        "Time to recover, {:.0}% packet loss on the dedicated link",
                        loss * 100.0
                    )
                } else {
                    "Time to recover".into()
                },
                rtt_ms: 0.0,
                sync_loss: loss,
                paper: paper(id).into(),
                data: FigureData::Recovery { points },
            });
        }
    }
    if has(opts, "fig8") {
        figures.push(clusters::fig8(opts, &mut p)?);
    }
    if has(opts, "fig12") {
        figures.push(clusters::fig12(opts, &mut p)?);
    }
    if has(opts, "clusters") {
        figures.push(clusters::clusters(opts, &mut p)?);
    }
    let lazy = has(opts, "lazy").then(|| lazy::run(&opts.lazy, |s| p.step(s)));
    // The crash run's own lazy counters would clash with `lazy` in the
    // JSON (the crash report is flattened into it).
    if let (Some(_), Some(c)) = (&lazy, &mut crash) {
        c.lazy = None;
    }
    let migration = if has(opts, "migration") {
        Some(hybrid::migration(&opts.hybrid, &base, &mut p)?)
    } else {
        None
    };
    let levels = if has(opts, "levels") {
        Some(hybrid::levels(&opts.hybrid, &base, &mut p)?)
    } else {
        None
    };
    p.finish();
    let mut targets = targets(crash.as_ref(), &figures);
    targets.extend(hybrid::targets(
        lazy.as_ref(),
        migration.as_ref(),
        levels.as_ref(),
    ));
    Ok(SuiteReport {
        crash,
        figures,
        lazy,
        migration,
        levels,
        targets,
        total_secs: started.elapsed().as_secs_f64(),
    })
}
