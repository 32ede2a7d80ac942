//! `bench forward`, `cluster` and the DPDK backend choice of the command
//! line (the rest is in `main.rs` and `failover_cli.rs`).

use super::*;

#[cfg(feature = "dpdk")]
pub(crate) fn dpdk_backend() -> anyhow::Result<Backend> {
    ftfw_lab::dpdk::init(0)?;
    Ok(Backend::Dpdk)
}

#[cfg(not(feature = "dpdk"))]
pub(crate) fn dpdk_backend() -> anyhow::Result<Backend> {
    anyhow::bail!("--backend dpdk needs ftfw-lab built with --features dpdk")
}

#[cfg(feature = "dpdk")]
pub(crate) fn bench_forward(a: ForwardArgs) -> anyhow::Result<ExitCode> {
    use ftfw_lab::forward::{self, ForwardOpts};
    if let Some(json) = a.inside {
        let opts: ForwardOpts = serde_json::from_str(&json)?;
        println!("{}", serde_json::to_string(&forward::run_inside(&opts)?)?);
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(
        a.duration > 0.0 && a.duration <= 600.0,
        "--duration must be in (0, 600] seconds"
    );
    anyhow::ensure!(
        (60..=1514).contains(&a.size),
        "--size must be between 60 and 1514"
    );
    anyhow::ensure!(
        (1..=1_000_000).contains(&a.flows),
        "--flows must be between 1 and 1000000"
    );
    anyhow::ensure!(
        (1..=20).contains(&a.rounds),
        "--rounds must be between 1 and 20"
    );
    anyhow::ensure!(
        a.gen_core != a.fwd_core,
        "--gen-core and --fwd-core must differ"
    );
    let opts = ForwardOpts {
        duration_secs: a.duration,
        size: a.size,
        flows: a.flows,
        rounds: a.rounds,
        gen_core: a.gen_core,
        fwd_core: a.fwd_core,
        testpmd: a.testpmd,
    };
    let r = forward::run(&opts)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", forward::render(&r));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn cluster_cmd(a: &ClusterArgs) -> anyhow::Result<ExitCode> {
    let (fault, victim) = match (a.no_fault, a.drain) {
        (true, _) => (failover::Fault::None, a.crash),
        (false, Some(d)) => (failover::Fault::Drain, d),
        (false, None) => (failover::Fault::Crash, a.crash),
    };
    let o = failover::ClusterLabOpts {
        nodes: a.nodes,
        victim,
        fault,
        mode: if a.primary_backup {
            "primary-backup"
        } else {
            "multi-primary"
        },
        buckets: a.buckets,
        backups: a.backups,
        replicate_all: !a.replicate_backups,
        dead_after_ms: a.dead_after_ms,
        traffic: failover::FailoverOpts {
            transfers: a.transfers,
            object_size: a.object_size,
            concurrency: a.concurrency,
            crash_at: a.crash_at_ms.map(std::time::Duration::from_millis),
            seed: a.seed,
            ..failover::FailoverOpts::default()
        },
    };
    let r = failover::run_cluster(&o, |line| eprintln!("{line}"))?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", failover::render_cluster(&r));
    }
    Ok(if r.broken_transfers == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
