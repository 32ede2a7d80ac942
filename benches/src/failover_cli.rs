//! `ftfw-lab failover`: its options and the command (the suite of
//! `ftfw_lab::experiments`, or one crash run).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use ftfw_lab::failover;

#[derive(Args, Debug)]
pub(crate) struct FailoverArgs {
    /// Experiments to run, comma-separated: crash, fig6, fig7, fig9, fig10,
    /// fig11, fig13, fig14, or all (those eight); and the cluster
    /// experiments fig8, fig12, clusters (FT-FW figures 8 and 12, the
    /// a-priori paper's 3, 6 and 9 nodes: N-node clusters, several seeds
    /// per point, several minutes, so not part of `all`: add them, e.g.
    /// `all,fig8,fig12,clusters`); and the hybrid replication experiments
    /// lazy, migration, levels (hFT-FW figures 3-11, the a-priori paper's
    /// figures 5-7; also not part of `all`). `crash` alone runs one crash
    /// of the primary, set up by the options below.
    #[arg(long, default_value = "all", value_delimiter = ',')]
    experiments: Vec<String>,
    /// Transfers (distinct client ports) of the crash run.
    #[arg(long, default_value_t = 200)]
    transfers: usize,
    /// Object size in bytes of the crash run.
    #[arg(long, default_value_t = 100_000)]
    object_size: usize,
    /// Transfers under way at once (crash run: 64; the figures: 200, as
    /// the paper's client).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Crash fw1 this many ms after the first SYN (default: once half of
    /// the transfers are done and a third of those under way are
    /// established).
    #[arg(long)]
    crash_at_ms: Option<u64>,
    /// Do not crash fw1 (a baseline run).
    #[arg(long)]
    no_crash: bool,
    /// Without replication: fw1 alone, no sync, no election (needs
    /// --no-crash).
    #[arg(long)]
    no_replication: bool,
    /// Negative control: flush fw2's replicated flows right after the crash.
    #[arg(long)]
    flush_backup_at_crash: bool,
    /// Sync transport of the crash run.
    #[arg(long, value_enum, default_value_t = TransportArg::Ftfw)]
    transport: TransportArg,
    /// Loss probability (0..1) on the sync link of the crash run; the
    /// figures 11 and 14 use 0.2 unless --figure-loss says otherwise.
    #[arg(long, default_value_t = 0.0)]
    sync_loss: f64,
    /// Loss probability of the lossy figures (11 and 14).
    #[arg(long, default_value_t = 0.2)]
    figure_loss: f64,
    /// One-way delay of the sync link in ms (every run).
    #[arg(long, default_value_t = 0.0)]
    sync_delay_ms: f64,
    /// Bandwidth of the sync link in Mbit/s (every run).
    #[arg(long, default_value_t = 1000)]
    sync_mbps: u64,
    /// Round-trip time between client and server of the crash run, in ms.
    #[arg(long, default_value_t = 0)]
    rtt_ms: u64,
    /// Share (0..=1) of the crash run's transfers made over UDP.
    #[arg(long, default_value_t = 0.0)]
    udp_share: f64,
    /// Object sizes of figures 6, 7, 9 and 10 (bytes, comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1_000, 5_000, 10_000, 50_000, 100_000])]
    sizes: Vec<usize>,
    /// Object sizes of figure 11.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000, 100_000])]
    loss_sizes: Vec<usize>,
    /// Rounds of each performance point (the best of them is kept).
    #[arg(long, default_value_t = 2)]
    perf_rounds: usize,
    /// Object sizes of figures 8 and 12 (bytes, comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000, 100_000])]
    cluster_sizes: Vec<usize>,
    /// Seeds (one cluster run each) per point of fig8, fig12 and clusters.
    #[arg(long, default_value_t = 3)]
    cluster_seeds: usize,
    /// Cluster sizes of the `clusters` experiment.
    #[arg(long, value_delimiter = ',', default_values_t = [3, 6, 9])]
    cluster_nodes: Vec<usize>,
    /// Object size of the `clusters` experiment (bytes).
    #[arg(long, default_value_t = 50_000)]
    cluster_object_size: usize,
    /// A transfer with no progress for this long is broken (crash run:
    /// 5000; the figures: 1500).
    #[arg(long)]
    stall_ms: Option<u64>,
    /// Seed of the initial sequence numbers and the sync link's losses.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seeds (one crash run each) per point with sync-link loss (figures
    /// 11 and 14): the report gives min, median and max.
    #[arg(long, default_value_t = 3)]
    seeds: usize,
    /// Write one SVG per figure into this directory.
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// Write a markdown report (paper vs ftfw) to this file.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// Replicate without `[sync] defer` (first packets leave at once).
    #[arg(long)]
    no_defer: bool,
    /// Bayes lazy replication on both firewalls (`[sync.lazy]`) with this
    /// barrier; the report shows fw1's predictions and saved messages.
    #[arg(long, value_name = "MS")]
    lazy_barrier_ms: Option<u64>,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
    /// Seeds (runs) per point of `lazy`, `migration` and `levels`.
    #[arg(long, default_value_t = 3)]
    hybrid_seeds: usize,
    /// Classification thresholds of `lazy` (`[sync.lazy] threshold`).
    #[arg(long, value_delimiter = ',', default_values_t = [0.125, 0.25, 0.35, 0.5])]
    lazy_thresholds: Vec<f64>,
    /// Connections per run of `lazy`.
    #[arg(long, default_value_t = 20_000)]
    lazy_connections: usize,
    /// The most a flow's barrier grows to in `lazy` (twice its round trip;
    /// `[sync.lazy] max_barrier_ms`); 200 keeps the paper's fixed 200 ms.
    #[arg(long, default_value_t = 1000)]
    lazy_max_barrier_ms: u64,
    /// Numbers of flows of `migration` (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [25_000, 250_000, 1_000_000])]
    migration_flows: Vec<usize>,
    /// Transfers per run of `levels`.
    #[arg(long, default_value_t = 400)]
    level_transfers: usize,
}

pub(crate) fn failover_cmd(a: &FailoverArgs) -> anyhow::Result<ExitCode> {
    use ftfw_lab::experiments::{self, HybridOpts, LazyOpts, SuiteOpts};
    use ftfw_lab::synclink::LinkParams;
    anyhow::ensure!(
        (1..=failover::MAX_TRANSFERS).contains(&a.transfers),
        "--transfers must be between 1 and {}",
        failover::MAX_TRANSFERS
    );
    anyhow::ensure!(
        (1..=1 << 30).contains(&a.object_size),
        "--object-size must be between 1 and 1073741824"
    );
    if let Some(c) = a.concurrency {
        anyhow::ensure!(
            (1..=4096).contains(&c),
            "--concurrency must be between 1 and 4096"
        );
    }
    if let Some(s) = a.stall_ms {
        anyhow::ensure!(
            (500..=600_000).contains(&s),
            "--stall-ms must be between 500 and 600000"
        );
    }
    for (name, v) in [
        ("--sync-loss", a.sync_loss),
        ("--figure-loss", a.figure_loss),
    ] {
        anyhow::ensure!(
            (0.0..1.0).contains(&v),
            "{name} must be at least 0 and below 1"
        );
    }
    anyhow::ensure!(
        (0.0..=10_000.0).contains(&a.sync_delay_ms),
        "--sync-delay-ms must be between 0 and 10000"
    );
    anyhow::ensure!(
        (1..=400_000).contains(&a.sync_mbps),
        "--sync-mbps must be between 1 and 400000"
    );
    anyhow::ensure!(a.rtt_ms <= 10_000, "--rtt-ms must be at most 10000");
    anyhow::ensure!(
        (0.0..=1.0).contains(&a.udp_share),
        "--udp-share must be between 0 and 1"
    );
    anyhow::ensure!(
        !a.no_replication || a.no_crash,
        "--no-replication needs --no-crash: there is no backup to fail over to"
    );
    let link = LinkParams {
        bandwidth_bps: a.sync_mbps * 1_000_000,
        delay: Duration::from_secs_f64(a.sync_delay_ms / 1000.0),
        seed: a.seed,
        ..LinkParams::default()
    };
    let crash = failover::FailoverOpts {
        transfers: a.transfers,
        object_size: a.object_size,
        concurrency: a.concurrency.unwrap_or(64),
        crash_at: a.crash_at_ms.map(Duration::from_millis),
        no_crash: a.no_crash,
        flush_backup_at_crash: a.flush_backup_at_crash,
        stall: Duration::from_millis(a.stall_ms.unwrap_or(5000)),
        seed: a.seed,
        replication: !a.no_replication,
        transport: a.transport.into(),
        link: LinkParams {
            loss: a.sync_loss,
            ..link
        },
        rtt: Duration::from_millis(a.rtt_ms),
        udp_share: a.udp_share,
        defer: !a.no_defer,
        lazy_barrier: a.lazy_barrier_ms.map(Duration::from_millis),
        ..failover::FailoverOpts::default()
    };
    let mut experiments: Vec<String> = a.experiments.iter().map(|e| e.trim().to_string()).collect();
    if experiments.iter().any(|e| e == "all") {
        let extra: Vec<String> = experiments
            .iter()
            .filter(|e| *e != "all" && !experiments::ALL.contains(&e.as_str()))
            .cloned()
            .collect();
        experiments = experiments::ALL.iter().map(|s| (*s).to_string()).collect();
        experiments.extend(extra);
    }
    if experiments == ["crash"] {
        let json = a.json;
        let r = failover::run(&crash, |line| {
            if !json {
                eprintln!("  .. {line}");
            }
        })?;
        if json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            print!("{}", failover::render(&r));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let opts = SuiteOpts {
        experiments,
        sizes: a.sizes.clone(),
        loss_sizes: a.loss_sizes.clone(),
        concurrency: a.concurrency.unwrap_or(200),
        loss: a.figure_loss,
        perf_rounds: a.perf_rounds,
        link,
        seed: a.seed,
        loss_seeds: a.seeds,
        stall: Duration::from_millis(a.stall_ms.unwrap_or(1500)),
        defer: !a.no_defer,
        crash,
        cluster_sizes: a.cluster_sizes.clone(),
        cluster_seeds: a.cluster_seeds,
        cluster_nodes: a.cluster_nodes.clone(),
        cluster_object_size: a.cluster_object_size,
        lazy: LazyOpts {
            thresholds: a.lazy_thresholds.clone(),
            connections: a.lazy_connections,
            max_barrier: Duration::from_millis(a.lazy_max_barrier_ms.max(200)),
            seeds: a.hybrid_seeds,
            seed: a.seed,
            ..LazyOpts::default()
        },
        hybrid: HybridOpts {
            seeds: a.hybrid_seeds,
            migration_flows: a.migration_flows.clone(),
            level_transfers: a.level_transfers,
            ..HybridOpts::default()
        },
        ..SuiteOpts::default()
    };
    experiments::check(&opts)?;
    if let Some(dir) = &a.plot {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let r = experiments::run(&opts, a.json)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", experiments::render(&r));
    }
    if let Some(dir) = &a.plot {
        let files = ftfw_lab::plot::write_all(&r, dir)?;
        if !a.json {
            for f in files {
                println!("wrote {}", f.display());
            }
        }
    }
    if let Some(file) = &a.report {
        std::fs::write(file, experiments::markdown(&r))
            .with_context(|| format!("writing {}", file.display()))?;
        if !a.json {
            println!("wrote {}", file.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The sync transports the command line names.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(crate) enum TransportArg {
    Ftfw,
    UdpBestEffort,
    Tcp,
}

impl From<TransportArg> for failover::Transport {
    fn from(t: TransportArg) -> Self {
        match t {
            TransportArg::Ftfw => failover::Transport::Ftfw,
            TransportArg::UdpBestEffort => failover::Transport::UdpBestEffort,
            TransportArg::Tcp => failover::Transport::Tcp,
        }
    }
}
