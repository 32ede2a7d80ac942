//! The appliance's side of the state keeper (`crate::keeper`): restore at
//! start, the planned restart's hand-over, and what `status` shows.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context;
use ftfw_dataplane::worker::WorkerShared;

use super::Appliance;
use crate::config::{Config, FailoverMode};
use crate::console::proto::StateKeeperInfo;
use crate::keeper::{self, Keeper, RestoreReport};

/// Whether a node keeps its table in a state file: a standalone node
/// (no `[sync]`, no failover) with `[daemon] state_file` set. A replicated
/// node has its peer for that.
pub(super) fn keeps_state(config: &Config) -> bool {
    config.sync.is_none()
        && config.failover.mode == FailoverMode::None
        && config.daemon.state_file.is_some()
}

/// Restores the table from `path` into the shards and starts the keeper.
/// The node runs without a keeper (and says so) when it cannot write there.
pub(super) fn restore_and_keep(
    path: &Path,
    workers: Vec<Arc<WorkerShared>>,
) -> (Option<Keeper>, RestoreReport) {
    let (report, mirror) = restore(path, &workers);
    let keeper = match Keeper::spawn(PathBuf::from(path), workers, mirror) {
        Ok(k) => Some(k),
        Err(e) => {
            tracing::warn!("{e}: flows will not survive a restart");
            None
        }
    };
    (keeper, report)
}

/// Reads the state file into the shards; a file that cannot be used is
/// moved aside (`.bad`) so the node starts with an empty table, as it
/// would without one.
fn restore(path: &Path, workers: &[Arc<WorkerShared>]) -> (RestoreReport, keeper::Mirror) {
    match keeper::restore(path, workers) {
        Ok((report, mirror)) => {
            if report.found > 0 || report.truncated || report.bad_records > 0 {
                tracing::info!(
                    restored = report.restored,
                    expired = report.expired,
                    refused = report.refused,
                    bad_records = report.bad_records,
                    truncated = report.truncated,
                    down_secs = report.down_secs,
                    path = %path.display(),
                    "flow table restored from the state file"
                );
            }
            (report, mirror)
        }
        Err(e) => {
            let mut aside = path.as_os_str().to_owned();
            aside.push(".bad");
            let moved = std::fs::rename(path, &aside);
            tracing::warn!("{e}; moved aside ({moved:?}); starting with an empty table");
            (RestoreReport::default(), keeper::Mirror::new())
        }
    }
}

impl Appliance {
    /// Whether `ftfwctl restart` asked for a planned restart (cleared).
    pub fn take_restart_request(&mut self) -> bool {
        std::mem::take(&mut self.restart_requested)
    }

    /// The first half of a planned restart: stops forwarding, writes the
    /// shards' whole table to the state file and stops everything. The
    /// caller then replaces the process, which restores the table.
    /// Returns the flows handed over (0 without a state file).
    pub fn prepare_restart(&mut self) -> anyhow::Result<u64> {
        let Some(keeper) = self.keeper.take() else {
            self.stop();
            return Ok(0);
        };
        for w in &self.workers {
            w.shared.set_forwarding(false);
        }
        let flows = keeper::export_all(&self.worker_shared());
        self.stop();
        let flows = flows.context("reading the table for the restart")?;
        keeper
            .finish(Some(flows))
            .context("writing the table for the restart")
    }

    /// The state keeper as `status` shows it.
    pub(super) fn state_keeper_info(&self) -> Option<StateKeeperInfo> {
        let k = self.keeper.as_ref()?;
        let s = k.stats();
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        Some(StateKeeperInfo {
            path: k.path().display().to_string(),
            flows: get(&s.flows),
            records: get(&s.records),
            snapshots: get(&s.snapshots),
            reexports: get(&s.reexports),
            write_errors: get(&s.write_errors),
            file_bytes: get(&s.file_bytes),
            restored: self.restored,
        })
    }
}
