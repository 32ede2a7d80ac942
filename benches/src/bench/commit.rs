//! `ftfw-lab bench commit`: a takeover's commit of the external cache
//! into running workers, timed.

use std::time::Instant;

use crate::pktgen;

/// What `bench commit` measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommitReport {
    /// Flows imported.
    pub flows: u64,
    /// Workers (shards) they were spread over.
    pub workers: usize,
    /// Seconds the import took.
    pub secs: f64,
    /// Flows imported per second.
    pub commit_flows_per_sec: f64,
    /// Flows refused (a table was full).
    pub refused: u64,
    /// Seconds a takeover's commit step takes: the full external cache
    /// streamed (moved) into the shards, as the sync thread does it.
    pub total_secs: f64,
}

/// Imports `flows` established flows into a running appliance with
/// `workers` workers on mem ports, the way a commit of the external cache
/// does at failover, and times it.
pub fn run_commit(flows: u64, workers: usize) -> anyhow::Result<CommitReport> {
    use ftfw_dataplane::flow::FlowState;
    let dir = std::env::temp_dir().join(format!("ftfw-bench-commit-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let capacity = ((flows as usize + 1024) * 9 / 8).max(1024 * workers);
    let text = format!(
        "[daemon]\nconsole_socket = \"unused.sock\"\n[dataplane]\nworkers = {workers}\n\
         [[port]]\nname = \"outside\"\nbackend = \"mem\"\n[[port]]\nname = \"inside\"\nbackend = \"mem\"\n\
         [[bridge]]\nports = [\"outside\", \"inside\"]\n[conntrack]\ncapacity = {capacity}\n\
         [rules]\npolicy = \"drop\"\nrules = [\"accept ct established,related\"]\n"
    );
    let cfg = ftfw_control::config::parse(&text, "bench-commit.toml")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // The hosts stay bound while the appliance runs.
    let (mut app, _hosts) = ftfw_testkit::mem::start_on_mem(cfg, "host", 256)?;
    let states: Vec<FlowState> = (0..flows)
        .map(|i| FlowState {
            wscale: [7, 7],
            ..FlowState::established_tcp(pktgen::flow_tuple(i, false, [198, 51, 100]), 432_000)
        })
        .collect();
    // 1. The shards' own import path, from a prepared list.
    let start = Instant::now();
    let (done, refused) = app
        .import_flows(states.clone())
        .map_err(|e| anyhow::anyhow!(e))?;
    let secs = start.elapsed().as_secs_f64();
    use ftfw_control::console::ConsoleHandler as _;
    app.handle(ftfw_control::console::proto::Request::FlowsDelete {
        filter: Default::default(),
    });
    // 2. A takeover's commit as the sync thread runs it: the external cache
    //    streamed (moved) into the shards.
    let t0 = Instant::now();
    let mut cache = ftfw_control::replication::ExternalCache::new(states.len().max(1));
    for st in states {
        cache.apply(t0, ftfw_sync::engine::FlowKind::New, st);
    }
    let shared = app.worker_shared();
    let start = Instant::now();
    let (done2, _) = cache
        .commit_into(start, &shared, true)
        .map_err(|e| anyhow::anyhow!(e))?;
    let total_secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        done2 == done,
        "the streamed commit imported {done2} of {done} flows"
    );
    app.stop();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(CommitReport {
        flows: done as u64,
        workers,
        secs,
        commit_flows_per_sec: done as f64 / secs,
        refused: refused as u64,
        total_secs,
    })
}
