//! Loss points over several seeds.
//!
//! A crash run with loss on the sync link depends on the seed (which
//! datagrams or segments are lost) and on scheduling (where the crash
//! lands relative to the sync thread's last flush), so one run says
//! little: best-effort UDP at 10 KB and 20% loss gave 0 of 92 established
//! flows in one run and 83-100% in others. Every lossy point of figures 11
//! and 14 runs `seeds` times and reports the minimum, median and maximum.

use serde::Serialize;

use super::clusters::Spread;
use super::RecoveryPoint;
use crate::failover::FailoverReport;

/// One seed's run of a loss point.
#[derive(Debug, Clone, Serialize)]
pub struct SeedRun {
    /// The run's seed (`--seed` plus the object size plus
    /// [`SEED_STEP`] per further seed).
    pub seed: u64,
    /// Transfers established at the crash.
    pub established: usize,
    /// Of those, held by fw2 right after the crash.
    pub replicated: Option<usize>,
    /// Of those, completed.
    pub recovered: usize,
    /// `recovered / established`.
    pub recovery_ratio: f64,
    /// Crash to every recovered transfer moving again.
    pub time_to_recover_ms: Option<f64>,
    /// The crash, after the first SYN.
    pub crash_at_ms: Option<f64>,
}

/// A loss point's spread over its seeds.
#[derive(Debug, Clone, Serialize)]
pub struct SeedSpread {
    /// Runs (one per seed).
    pub seeds: usize,
    /// Recovery ratio: min, median, max.
    pub recovery_ratio: Spread,
    /// Share of the established flows fw2 held at the crash.
    pub replicated_ratio: Option<Spread>,
    /// Time to recover (runs that recovered something).
    pub time_to_recover_ms: Option<Spread>,
    /// Every run.
    pub runs: Vec<SeedRun>,
}

/// Distance between the seeds of one point.
pub const SEED_STEP: u64 = 1_000_003;

/// The seed of run `k` of a point whose first seed is `first`.
pub fn seed(first: u64, k: usize) -> u64 {
    first.wrapping_add(SEED_STEP.wrapping_mul(k as u64))
}

fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        1.0
    } else {
        part as f64 / whole as f64
    }
}

/// The point of `reports` (one per seed, at least one): the run with the
/// median recovery ratio, with the spread of all of them.
pub fn point(reports: &[FailoverReport]) -> Option<RecoveryPoint> {
    let runs: Vec<SeedRun> = reports
        .iter()
        .map(|r| SeedRun {
            seed: r.seed,
            established: r.flows_established_at_crash,
            replicated: r.flows_replicated_at_crash,
            recovered: r.flows_recovered,
            recovery_ratio: r.recovery_ratio,
            time_to_recover_ms: r.time_to_recover_ms,
            crash_at_ms: r.crash_at_ms,
        })
        .collect();
    let recovery = Spread::of(runs.iter().map(|r| r.recovery_ratio))?;
    // The median run: the first whose ratio is the median.
    let median = reports
        .iter()
        .find(|r| r.recovery_ratio == recovery.median)?;
    let mut p = RecoveryPoint::of(median);
    p.spread = Some(SeedSpread {
        seeds: runs.len(),
        recovery_ratio: recovery,
        replicated_ratio: Spread::of(
            runs.iter()
                .filter_map(|r| Some(ratio(r.replicated?, r.established))),
        ),
        time_to_recover_ms: Spread::of(runs.iter().filter_map(|r| r.time_to_recover_ms)),
        runs,
    });
    Some(p)
}

/// `(recovered, established)` of a point over all its runs.
pub fn pooled(p: &RecoveryPoint) -> (usize, usize) {
    match &p.spread {
        Some(s) => s
            .runs
            .iter()
            .fold((0, 0), |(r, e), x| (r + x.recovered, e + x.established)),
        None => (p.recovered, p.established),
    }
}

/// `median (min-max)` of a ratio in percent, or the single value.
pub fn ratio_text(p: &RecoveryPoint) -> String {
    let pct = |v: f64| format!("{:.0}%", v * 100.0);
    match &p.spread {
        Some(s) if s.seeds > 1 => format!(
            "{} ({}-{})",
            pct(s.recovery_ratio.median),
            pct(s.recovery_ratio.min),
            pct(s.recovery_ratio.max)
        ),
        _ => pct(p.recovery_ratio),
    }
}

/// Time to recover: `median (min-max)` over the seeds, or the single value.
pub fn time_text(p: &RecoveryPoint) -> String {
    match p.spread.as_ref().and_then(|s| s.time_to_recover_ms) {
        Some(t) if t.n > 1 && t.min != t.max => {
            format!("{:.0} ({:.0}-{:.0}) ms", t.median, t.min, t.max)
        }
        _ => super::targets::msf(p.time_to_recover_ms),
    }
}
