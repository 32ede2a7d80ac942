//! `ftfw-lab netns loss` (root): the in-process TCP loss model of the
//! failover lab against kernel TCP under nftables loss, same scenario.
//!
//! Each point (transport, sync-link loss, object size) is figure 11's
//! crash run: two appliances in this process, 200 concurrent transfers of
//! the object size, the primary crashed mid-run, established flows counted
//! as recovered when they complete through the backup. It runs twice per
//! seed: once over the lab's emulated link ([`crate::synclink`], whose
//! `tcp` mode is a model of TCP loss recovery) and once over the kernel:
//! the nodes' sync sockets talk directly on loopback and nftables drops
//! `numgen random mod 100 < P` of the sync packets, both directions.
//!
//! The command makes a network namespace (removed at the end) and runs
//! itself inside it (`ip netns exec`), so the nftables rules never touch
//! the host. The emulated runs happen in the namespace too, so both see
//! the same machine.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use ftfw_testkit::netns::{run, NetnsLab};
use serde::{Deserialize, Serialize};

use crate::experiments::{crash_transfers, loss, RecoveryPoint};
use crate::failover::{self, FailoverOpts, Transport};

/// What the comparison runs.
#[derive(Clone, Debug)]
pub struct LossCheckOptions {
    /// Sync transports compared (the model's subject: `tcp`).
    pub transports: Vec<Transport>,
    /// Loss rates of the sync link (0..1).
    pub losses: Vec<f64>,
    /// Object sizes.
    pub sizes: Vec<usize>,
    /// Seeds per point.
    pub seeds: usize,
    /// First seed (each point adds its object size, as figure 11).
    pub seed: u64,
    /// Concurrent transfers (figure 11: 200).
    pub concurrency: usize,
    /// Transfers per run (`None`: figure 11's count for the size).
    pub transfers: Option<usize>,
}

impl LossCheckOptions {
    /// Checks the ranges.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.transports.is_empty(), "no transport");
        anyhow::ensure!(!self.sizes.is_empty(), "no object size");
        anyhow::ensure!(!self.losses.is_empty(), "no loss rate");
        for l in &self.losses {
            anyhow::ensure!((0.0..0.9).contains(l), "loss {l} out of [0, 0.9)");
        }
        for s in &self.sizes {
            anyhow::ensure!(
                (1..=10_000_000).contains(s),
                "object size {s} out of 1 ..= 10 MB"
            );
        }
        anyhow::ensure!((1..=20).contains(&self.seeds), "seeds out of 1 ..= 20");
        anyhow::ensure!(
            (1..=1000).contains(&self.concurrency),
            "concurrency out of 1 ..= 1000"
        );
        if let Some(t) = self.transfers {
            anyhow::ensure!((1..=20_000).contains(&t), "transfers out of 1 ..= 20000");
        }
        Ok(())
    }

    fn args(&self) -> Vec<String> {
        let join = |v: Vec<String>| v.join(",");
        let mut a = vec![
            "--transports".into(),
            join(self.transports.iter().map(|t| t.as_str().into()).collect()),
            "--losses".into(),
            join(self.losses.iter().map(|l| l.to_string()).collect()),
            "--sizes".into(),
            join(self.sizes.iter().map(|s| s.to_string()).collect()),
            "--seeds".into(),
            self.seeds.to_string(),
            "--seed".into(),
            self.seed.to_string(),
            "--concurrency".into(),
            self.concurrency.to_string(),
        ];
        if let Some(t) = self.transfers {
            a.extend(["--transfers".into(), t.to_string()]);
        }
        a
    }
}

/// One point: the model and the kernel, each over the seeds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LossCheckPoint {
    /// Sync transport.
    pub transport: String,
    /// Loss on the sync link.
    pub loss: f64,
    /// Object size in bytes.
    pub object_size: usize,
    /// The emulated link (the model), median run with the spread.
    pub model: serde_json::Value,
    /// Kernel sockets under nftables loss, median run with the spread.
    pub kernel: serde_json::Value,
}

/// The comparison.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LossCheckReport {
    /// Seeds per point.
    pub seeds: usize,
    /// The points.
    pub points: Vec<LossCheckPoint>,
}

fn spread_text(p: &serde_json::Value) -> String {
    let r = &p["spread"]["recovery_ratio"];
    let pct = |v: &serde_json::Value| format!("{:.0}%", v.as_f64().unwrap_or(f64::NAN) * 100.0);
    let rep = &p["spread"]["replicated_ratio"];
    format!(
        "{} ({}-{}), replicated {}",
        pct(&r["median"]),
        pct(&r["min"]),
        pct(&r["max"]),
        if rep.is_null() {
            "-".to_string()
        } else {
            format!(
                "{} ({}-{})",
                pct(&rep["median"]),
                pct(&rep["min"]),
                pct(&rep["max"])
            )
        }
    )
}

impl LossCheckReport {
    /// A markdown table: recovery median (min-max) of the model and of
    /// kernel TCP, by transport, loss and size.
    pub fn text(&self) -> String {
        let mut o = format!(
            "Established flows recovered after the crash of the primary, median (min-max) over \
             {} seeds: the lab's emulated link vs kernel sockets under nftables loss\n\n\
             | transport | loss | object | model (emulated link) | kernel (nftables) |\n\
             |---|---|---|---|---|\n",
            self.seeds
        );
        for p in &self.points {
            o += &format!(
                "| {} | {:.0}% | {} B | {} | {} |\n",
                p.transport,
                p.loss * 100.0,
                p.object_size,
                spread_text(&p.model),
                spread_text(&p.kernel)
            );
        }
        o
    }
}

/// One point over the seeds, emulated or kernel.
fn point(
    o: &LossCheckOptions,
    transport: Transport,
    loss: f64,
    size: usize,
    kernel: bool,
) -> anyhow::Result<RecoveryPoint> {
    let base = FailoverOpts {
        transfers: o
            .transfers
            .unwrap_or_else(|| crash_transfers(size, Duration::ZERO, o.concurrency)),
        object_size: size,
        concurrency: o.concurrency,
        stall: Duration::from_millis(1500),
        max_run: Duration::from_secs(60),
        transport,
        kernel_link: kernel,
        seed: o.seed.wrapping_add(size as u64),
        ..FailoverOpts::default()
    };
    let mut reports = Vec::with_capacity(o.seeds);
    for k in 0..o.seeds {
        let mut r = FailoverOpts {
            seed: loss::seed(base.seed, k),
            ..base.clone()
        };
        r.link.loss = loss;
        reports.push(failover::run(&r, |_| {})?);
    }
    loss::point(&reports).context("no run")
}

/// Runs the comparison here (inside the lab namespace).
pub fn run_inside(
    o: &LossCheckOptions,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<LossCheckReport> {
    o.check()?;
    anyhow::ensure!(
        failover::in_own_netns(),
        "ftfw-lab netns loss --inside runs only in a lab namespace"
    );
    let mut points = Vec::new();
    for &t in &o.transports {
        for &l in &o.losses {
            for &s in &o.sizes {
                progress(&format!("{t}, {:.0}% loss, {s} B", l * 100.0));
                let model = point(o, t, l, s, false)?;
                let kernel = point(o, t, l, s, true)?;
                points.push(LossCheckPoint {
                    transport: t.as_str().into(),
                    loss: l,
                    object_size: s,
                    model: serde_json::to_value(&model)?,
                    kernel: serde_json::to_value(&kernel)?,
                });
            }
        }
    }
    Ok(LossCheckReport {
        seeds: o.seeds,
        points,
    })
}

/// Makes the namespace and runs the comparison in it (root).
pub fn run_loss_check(o: &LossCheckOptions) -> anyhow::Result<LossCheckReport> {
    o.check()?;
    let id = run(std::process::Command::new("id").arg("-u"))?;
    if String::from_utf8_lossy(&id.stdout).trim() != "0" {
        bail!("ftfw-lab netns loss needs root (a network namespace, nftables)");
    }
    static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut lab = NetnsLab::new("ftfwloss", &format!("l{n}"))?;
    let ns = lab.add_ns("k")?;
    let me = std::env::current_exe().context("locating ftfw-lab")?;
    let out = lab
        .command(&ns, &me)
        .args(["netns", "loss", "--inside", "--json"])
        .args(o.args())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("running ftfw-lab in the lab namespace")?;
    if !out.status.success() {
        bail!("ftfw-lab netns loss --inside failed ({})", out.status);
    }
    serde_json::from_slice(&out.stdout).context("reading the inside run's JSON")
}
