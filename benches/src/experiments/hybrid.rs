//! The hybrid replication experiments (issue 13): `lazy` (see
//! [`super::lazy`]), `migration` (hFT-FW figure 11: migration time
//! against the number of flows) and `levels` (the a-priori paper's
//! figures 5-7: connection set-up time by sync level and write mode).

use serde::Serialize;

use super::clusters::Spread;
use super::lazy::{LazyReport, PAPER as LAZY_PAPER};
use super::targets::pct;
use super::{Progress, Target};
use crate::failover::{Cluster, FailoverOpts, MigrationRun};

/// What the a-priori paper says (III-B, V, figures 5-7).
pub const LEVELS_PAPER: &str = "a-priori paper: connection set-up time grows with the \
     replication (none < established < full) and with synchronous writes: asynchronous \
     (dirty) writes up to 20% faster than synchronous (transactional) ones, 100 concurrent \
     connections";

/// What hFT-FW says of migration (section VII-C, figure 11).
pub const MIGRATION_PAPER: &str = "hFT-FW: about 4 s to migrate 25,000 flow states between two \
     replicas with no message loss, more with omissions";

/// Write modes of `levels`, in order.
pub const WRITES: [&str; 3] = ["async", "defer", "sync"];
/// Sync levels of `levels`, in order.
pub const LEVELS: [&str; 3] = ["full", "established", "none"];

/// One (write mode, level) point of `levels`.
#[derive(Debug, Clone, Serialize)]
pub struct LevelPoint {
    /// `async`, `defer` or `sync`.
    pub write: String,
    /// `full`, `established` or `none`.
    pub level: String,
    /// Median connection set-up time of each seed's run (ms): min,
    /// median, max over the seeds.
    pub setup_median_ms: Spread,
    /// 95th percentile of each run (ms).
    pub setup_p95_ms: Spread,
    /// Sessions per second of each run.
    pub sessions_per_sec: Spread,
    /// Held packets released by the timeout instead of the peer's ACK
    /// (all runs).
    pub defer_timeouts: u64,
    /// Broken transfers (all runs; none expected).
    pub broken: usize,
}

/// `levels`' result (`--json`: `levels`).
#[derive(Debug, Clone, Serialize)]
pub struct LevelsReport {
    /// Every (write, level) point.
    pub points: Vec<LevelPoint>,
    /// One sync round trip as a packet sees it: median set-up time with
    /// `defer` minus with `async` (level full; one change held: the SYN),
    /// in µs.
    pub sync_round_trip_us: f64,
    /// What a `sync` write adds per replicated change on the set-up path:
    /// (median set-up with `sync` minus with `async`) / 2 (level full: the
    /// SYN and the SYN-ACK each change replicated state), in µs.
    pub sync_added_per_change_us: f64,
    /// Transfers per run, object size, concurrency, seeds.
    pub how_run: String,
    /// The paper.
    pub paper: String,
}

/// One number of flows of `migration`.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationPoint {
    /// Flows fw1 held (fw2 none of them).
    pub flows: usize,
    /// Request to the table acknowledged by fw2 (s): min, median, max.
    pub secs: Spread,
    /// Request to fw2 active (s).
    pub switch_secs: Spread,
    /// Request to fw2's table holding every flow (s; runs that got there).
    pub complete_secs: Option<Spread>,
    /// Every run.
    pub runs: Vec<MigrationRun>,
}

/// `migration`'s result (`--json`: `migration`).
#[derive(Debug, Clone, Serialize)]
pub struct MigrationReport {
    /// The largest number of flows migrated.
    pub flows: usize,
    /// Its migration time (median over the seeds, s): the request to fw2's
    /// acknowledgement of the whole table.
    pub secs: f64,
    /// Every number of flows.
    pub points: Vec<MigrationPoint>,
    /// How it ran.
    pub how_run: String,
    /// The paper.
    pub paper: String,
}

fn spread(v: impl IntoIterator<Item = f64>) -> Spread {
    Spread::of(v).unwrap_or(Spread {
        min: f64::NAN,
        median: f64::NAN,
        max: f64::NAN,
        n: 0,
    })
}

/// Options of `levels` and `migration`.
#[derive(Debug, Clone)]
pub struct HybridOpts {
    /// Seeds (runs) per point.
    pub seeds: usize,
    /// Transfers per run of `levels`.
    pub level_transfers: usize,
    /// Concurrent transfers of `levels` (the a-priori paper: 100).
    pub level_concurrency: usize,
    /// Object size of `levels`.
    pub level_object_size: usize,
    /// Numbers of flows of `migration`.
    pub migration_flows: Vec<usize>,
}

impl Default for HybridOpts {
    fn default() -> Self {
        HybridOpts {
            seeds: 3,
            level_transfers: 400,
            level_concurrency: 100,
            level_object_size: 1_000,
            migration_flows: vec![25_000, 250_000, 1_000_000],
        }
    }
}

/// Runs of `levels` and `migration`, for the progress bar.
pub(super) fn runs(o: &HybridOpts, levels: bool, migration: bool) -> usize {
    usize::from(levels) * WRITES.len() * LEVELS.len() * o.seeds
        + usize::from(migration) * o.migration_flows.len() * o.seeds
}

pub(super) fn levels(
    o: &HybridOpts,
    base: &FailoverOpts,
    p: &mut Progress,
) -> anyhow::Result<LevelsReport> {
    let mut points = Vec::new();
    for write in WRITES {
        for level in LEVELS {
            let set = FailoverOpts {
                defer: write != "async",
                write_sync: write == "sync",
                sync_level: Some(level),
                ..base.clone()
            };
            let mut cluster = Cluster::start(&set, |_| {})?;
            let mut runs = Vec::new();
            for k in 0..o.seeds {
                p.step(&format!(
                    "levels: write {write}, level {level}, seed {}/{}",
                    k + 1,
                    o.seeds
                ));
                runs.push(cluster.traffic(
                    &FailoverOpts {
                        transfers: o.level_transfers,
                        object_size: o.level_object_size,
                        concurrency: o.level_concurrency,
                        no_crash: true,
                        mirror_to_backup: false,
                        seed: super::loss::seed(base.seed, k),
                        ..set.clone()
                    },
                    |_| {},
                )?);
            }
            points.push(LevelPoint {
                write: write.into(),
                level: level.into(),
                setup_median_ms: spread(runs.iter().filter_map(|r| r.setup_median_ms)),
                setup_p95_ms: spread(runs.iter().filter_map(|r| r.setup_p95_ms)),
                sessions_per_sec: spread(runs.iter().map(|r| r.sessions_per_sec)),
                defer_timeouts: runs.iter().map(|r| r.fw1_defer_timeouts).sum(),
                broken: runs.iter().map(|r| r.broken_transfers).sum(),
            });
        }
    }
    let med = |w: &str| {
        points
            .iter()
            .find(|x| x.write == w && x.level == "full")
            .map_or(f64::NAN, |x| x.setup_median_ms.median)
    };
    let (a, d, s) = (med("async"), med("defer"), med("sync"));
    Ok(LevelsReport {
        points,
        sync_round_trip_us: (d - a) * 1000.0,
        sync_added_per_change_us: (s - a) * 1000.0 / 2.0,
        how_run: format!(
            "a cluster per (write mode, level), {} runs each (seeds), {} transfers of {} bytes, \
             {} at once, no crash, frames to fw1 only; set-up time = the client's SYN to its \
             SYN-ACK; sync link {} Mbit/s, {} ms one-way",
            o.seeds,
            o.level_transfers,
            o.level_object_size,
            o.level_concurrency,
            base.link.bandwidth_bps / 1_000_000,
            base.link.delay.as_secs_f64() * 1000.0
        ),
        paper: LEVELS_PAPER.into(),
    })
}

pub(super) fn migration(
    o: &HybridOpts,
    base: &FailoverOpts,
    p: &mut Progress,
) -> anyhow::Result<MigrationReport> {
    let mut points = Vec::new();
    for &n in &o.migration_flows {
        let mut runs = Vec::new();
        for k in 0..o.seeds {
            p.step(&format!("migration: {n} flows, seed {}/{}", k + 1, o.seeds));
            let set = FailoverOpts {
                flow_capacity: (n + n / 8 + 4096).next_power_of_two(),
                seed: super::loss::seed(base.seed, k),
                ..base.clone()
            };
            let mut cluster = Cluster::start(&set, |_| {})?;
            runs.push(cluster.migrate(n)?);
        }
        points.push(MigrationPoint {
            flows: n,
            secs: spread(runs.iter().map(|r| r.acked_ms / 1000.0)),
            switch_secs: spread(runs.iter().map(|r| r.switch_ms / 1000.0)),
            complete_secs: Spread::of(
                runs.iter()
                    .filter_map(|r| r.complete_ms.map(|m| m / 1000.0)),
            ),
            runs,
        });
    }
    let last = points.iter().max_by_key(|x| x.flows);
    Ok(MigrationReport {
        flows: last.map_or(0, |x| x.flows),
        secs: last.map_or(f64::NAN, |x| x.secs.median),
        points,
        how_run: format!(
            "a fresh pair per run ({} seeds per point); fw1's flows imported without \
             replication (fw2 holds none), then `migrate 2`: export, fw2's acknowledgement of \
             all of it, step down, fw2 takes over; sync link {} Mbit/s, {} ms one-way, no loss",
            o.seeds,
            base.link.bandwidth_bps / 1_000_000,
            base.link.delay.as_secs_f64() * 1000.0
        ),
        paper: MIGRATION_PAPER.into(),
    })
}

/// The targets for the three experiments.
pub(super) fn targets(
    lazy: Option<&LazyReport>,
    migration: Option<&MigrationReport>,
    levels: Option<&LevelsReport>,
) -> Vec<Target> {
    let mut t = Vec::new();
    if let Some(l) = lazy {
        t.push(Target {
            measure: format!(
                "lazy (threshold {}, {} ms barrier): messages saved / established flows lost \
                 at a crash (median of the seeds; met when both latency settings meet it)",
                l.threshold, l.barrier_ms
            ),
            paper: "40-50% saved, about 2% wrong predictions".into(),
            ftfw: l
                .points
                .iter()
                .filter(|p| (p.threshold - l.threshold).abs() < 1e-9)
                .map(|p| {
                    format!(
                        "{:?}: {} saved, {} lost",
                        p.latency,
                        pct(p.saved_ratio.median),
                        pct(p.lost_ratio.median)
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
            target: ">= 50% saved, <= 1% lost".into(),
            met: Some(l.saved_ratio >= 0.5 && l.wrong_ratio <= 0.01),
        });
    }
    if let Some(m) = migration {
        t.push(Target {
            measure: format!("proactive migration of {} flows to the backup", m.flows),
            paper: "25,000 flows in about 4 s".into(),
            ftfw: format!("{:.2} s (median)", m.secs),
            target: "1M flows <= 1 s".into(),
            met: (m.flows >= 1_000_000).then_some(m.secs <= 1.0),
        });
    }
    if let Some(l) = levels {
        let ok = l.sync_added_per_change_us <= l.sync_round_trip_us + 100.0;
        t.push(Target {
            measure: "`sync` writes: added set-up latency per replicated change".into(),
            paper: "async writes up to 20% faster than sync".into(),
            ftfw: format!(
                "{:.0} µs per change; one sync round trip {:.0} µs",
                l.sync_added_per_change_us, l.sync_round_trip_us
            ),
            target: "<= one round trip + 100 µs".into(),
            met: (l.sync_added_per_change_us.is_finite() && l.sync_round_trip_us.is_finite())
                .then_some(ok),
        });
    }
    t
}

fn ms3(s: &Spread) -> String {
    format!("{:.3} ({:.3}-{:.3})", s.median, s.min, s.max)
}

fn p1(s: &Spread) -> String {
    format!(
        "{:.1}% ({:.1}-{:.1})",
        s.median * 100.0,
        s.min * 100.0,
        s.max * 100.0
    )
}

/// The three sections as markdown (also printed on the terminal).
pub fn markdown(
    lazy: Option<&LazyReport>,
    migration: Option<&MigrationReport>,
    levels: Option<&LevelsReport>,
) -> String {
    let mut out = String::new();
    if let Some(l) = lazy {
        out += &format!(
            "## Bayes lazy replication (lazy; hFT-FW figures 3-10)\n\nPaper: {LAZY_PAPER}\n\n\
             How: {}\n\nHeadline (threshold {}): {} of the messages saved, {} of the \
             established connections lost at a crash.\n\n\
             | latency | threshold | saved | wrong predictions | established lost at a crash |\n\
             |---|---|---|---|---|\n",
            l.how_run,
            l.threshold,
            pct(l.saved_ratio),
            pct(l.wrong_ratio)
        );
        for x in &l.points {
            out += &format!(
                "| {:?} | {} | {} | {} | {} |\n",
                x.latency,
                x.threshold,
                p1(&x.saved_ratio),
                p1(&x.wrong_prediction_ratio),
                p1(&x.lost_ratio)
            );
        }
        out += "\nMedian (min-max) over the seeds.\n\n";
    }
    if let Some(m) = migration {
        out += &format!(
            "## Proactive migration (migration; hFT-FW figure 11)\n\nPaper: {}\n\nHow: {}\n\n\
             | flows | table acknowledged (s) | backup active (s) | backup holds every flow (s) | flows on the backup |\n\
             |---|---|---|---|---|\n",
            m.paper, m.how_run
        );
        for x in &m.points {
            out += &format!(
                "| {} | {} | {} | {} | {} |\n",
                x.flows,
                ms3(&x.secs),
                ms3(&x.switch_secs),
                x.complete_secs.as_ref().map_or_else(|| "never".into(), ms3),
                x.runs
                    .iter()
                    .map(|r| r.flows_on_backup.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        out += "\nMedian (min-max) over the seeds.\n\n";
    }
    if let Some(l) = levels {
        out += &format!(
            "## Connection set-up by sync level and write mode (levels; a-priori paper \
             figures 5-7)\n\nPaper: {}\n\nHow: {}\n\n\
             | write | level | set-up median (ms) | p95 (ms) | sessions/s | defer timeouts | broken |\n\
             |---|---|---|---|---|---|---|\n",
            l.paper, l.how_run
        );
        for x in &l.points {
            out += &format!(
                "| {} | {} | {} | {} | {:.0} | {} | {} |\n",
                x.write,
                x.level,
                ms3(&x.setup_median_ms),
                ms3(&x.setup_p95_ms),
                x.sessions_per_sec.median,
                x.defer_timeouts,
                x.broken
            );
        }
        out += &format!(
            "\nMedian (min-max) over the seeds. One sync round trip (defer - async, level \
             full): {:.0} µs; a `sync` write adds {:.0} µs per replicated change ((sync - \
             async) / 2, level full).\n\n",
            l.sync_round_trip_us, l.sync_added_per_change_us
        );
    }
    out
}
