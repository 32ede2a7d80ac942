//! Proactive migration (hFT-FW section V, figure 11) on the lab cluster:
//! fw1 holds `flows` flows the backup has never heard of (imported without
//! replication), then the operator's `migrate 2` (what the health policy
//! starts on its own) exports fw1's table, waits for fw2's acknowledgement
//! of all of it and steps down; fw2 takes over with the whole table.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::bail;
use ftfw_control::console::proto::{Payload, Request};
use ftfw_dataplane::flow::{proto, FlowState, Tuple};
use serde::Serialize;

use super::cluster::{ms, Cluster};
use super::POLL_EVERY;

/// One migration run.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationRun {
    /// Flows fw1 held and fw2 did not.
    pub flows: usize,
    /// The migrate request to fw1's table acknowledged by fw2 (the state
    /// transfer: the paper's migration time).
    pub acked_ms: f64,
    /// The request to fw2 active (fw1 stepped down, fw2 took over).
    pub switch_ms: f64,
    /// The request to fw2's table holding every flow (`None`: it did not
    /// within 30 s of taking over, or the count stopped short).
    pub complete_ms: Option<f64>,
    /// Flows in fw2's table at the end (all of them: `flows`).
    pub flows_on_backup: u64,
    /// fw1's sync messages during the migration.
    pub sync_msgs: u64,
    /// fw1's migration note at the end (`ftfwctl status`).
    pub note: String,
    /// fw2's takeover, step by step (`ftfwctl status`: commit with the
    /// flows committed, forward, export).
    pub backup_takeover: Option<ftfw_control::console::proto::RoleChange>,
    /// fw2's external cache refusals (full) during the run.
    pub backup_external_full: u64,
    /// fw1's sync counters at the end: exports, flows exported, queue
    /// overflows; fw2's: messages lost, sequence jumps.
    pub sync_counters: [u64; 5],
}

/// `n` distinct established TCP flows (documentation addresses).
pub(super) fn flows(n: usize) -> Vec<FlowState> {
    (0..n)
        .map(|i| {
            let src = Ipv4Addr::new(203, 0, 113, (i / 60_000 % 256) as u8);
            let dst = Ipv4Addr::new(198, 51, 100, 100 + (i / (60_000 * 256)) as u8);
            FlowState::established_tcp(
                Tuple::new(
                    IpAddr::V4(src),
                    IpAddr::V4(dst),
                    proto::TCP,
                    1024 + (i % 60_000) as u16,
                    443,
                ),
                3600,
            )
        })
        .collect()
}

impl Cluster {
    /// Fills fw1 with `n` flows (not replicated), then migrates to fw2.
    /// The cluster needs `flow_capacity` above `n`.
    pub fn migrate(&mut self, n: usize) -> anyhow::Result<MigrationRun> {
        anyhow::ensure!(self.replication && !self.crashed, "needs a live pair");
        let states = flows(n);
        // In chunks, running the election between them (a control thread
        // busy for a second would starve it, and fw2 would take over).
        for chunk in states.chunks(50_000) {
            let (done, refused) = self.nodes[0]
                .app
                .import_flows_with(chunk.to_vec(), false)
                .map_err(|e| anyhow::anyhow!("import: {e}"))?;
            anyhow::ensure!(
                refused == 0 && done == chunk.len(),
                "fw1 refused {refused} flows: table full"
            );
            self.pump(Duration::from_millis(5));
        }
        let msgs0 = self.nodes[0].sync_counters()?.0;
        let t0 = Instant::now();
        self.nodes[0].app.request_migrate(2);
        let (mut acked, mut active) = (None, None);
        let mut note = String::new();
        let deadline = t0 + Duration::from_secs(120);
        let mut last_check = t0;
        while active.is_none() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "migration of {n} flows not done in 120 s: {note}"
            );
            self.pump(POLL_EVERY);
            if last_check.elapsed() < Duration::from_millis(5) {
                continue;
            }
            last_check = Instant::now();
            if let Payload::Status(s) = self.nodes[0].ok(Request::Status)? {
                note = s.migration.unwrap_or_default();
                if note.contains("failed") {
                    bail!("migration failed: {note}");
                }
                if acked.is_none() && note.contains("acknowledged") {
                    acked = Some(t0.elapsed());
                }
            }
            if self.nodes[1].role()? == "active" {
                active = Some(t0.elapsed());
            }
        }
        let sync_msgs = self.nodes[0].sync_counters()?.0 - msgs0;
        // fw2 commits the replicated table as it takes over: wait until its
        // table holds every flow (or 30 s, or no change for 2 s).
        let (mut flows_on_backup, mut complete) = (0u64, None);
        let (mut last_change, until) = (Instant::now(), Instant::now() + Duration::from_secs(30));
        while Instant::now() < until && last_change.elapsed() < Duration::from_secs(2) {
            let f = match self.nodes[1].ok(Request::Status)? {
                Payload::Status(s) => s.flows,
                p => bail!("unexpected answer {p:?}"),
            };
            if f != flows_on_backup {
                (flows_on_backup, last_change) = (f, Instant::now());
            }
            if f >= n as u64 {
                complete = Some(t0.elapsed());
                break;
            }
            self.pump(Duration::from_millis(2));
        }
        let switch = active.unwrap_or_default();
        let backup_takeover = match self.nodes[1].ok(Request::Status)? {
            Payload::Status(s) => s.last_takeover,
            p => bail!("unexpected answer {p:?}"),
        };
        let (backup_external_full, lost, jumps) = match self.nodes[1].ok(Request::SyncStatus)? {
            Payload::SyncStatus(s) => (s.external_full, s.lost, s.seq_jumps),
            p => bail!("unexpected answer {p:?}"),
        };
        let sync_counters = match self.nodes[0].ok(Request::SyncStatus)? {
            Payload::SyncStatus(s) => [s.exports, s.exported_flows, s.queue_overflows, lost, jumps],
            p => bail!("unexpected answer {p:?}"),
        };
        Ok(MigrationRun {
            flows: n,
            acked_ms: ms(acked.unwrap_or(switch)),
            switch_ms: ms(switch),
            complete_ms: complete.map(ms),
            flows_on_backup,
            sync_msgs,
            note,
            backup_takeover,
            backup_external_full,
            sync_counters,
        })
    }

    /// Runs the live nodes' drivers for `d`.
    fn pump(&mut self, d: Duration) {
        let until = Instant::now() + d;
        loop {
            for n in self.nodes.iter_mut().filter(|n| n.alive) {
                n.poll();
            }
            if Instant::now() >= until {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}
