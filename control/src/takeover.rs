//! Role changes: what a node does when it becomes the primary, stands by
//! or goes faulty, in the order that keeps connections alive, with each
//! step timed for `ftfwctl status`.
//!
//! Layer: control thread, below the appliance (which owns a [`Takeover`]
//! and hands it the parts it acts on as a [`Node`]) and above the sync
//! thread's handle, the routed-mode helpers and the workers' command
//! queues. Two callers drive it: `ftfwctl notify` (keepalived scripts) and
//! the election driver, through the built-in procedures
//! ([`Takeover::run_procedure`]).
//!
//! Invariant: a node forwards only after the external cache is committed
//! into its shards (commit, *then* forward), and stops forwarding before it
//! asks the new primary for a resync.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ftfw_dataplane::l3::L3Shared;
use ftfw_dataplane::worker::WorkerHandle;

use crate::config::PortConfig;
use crate::console::proto::{HistogramBucket, NotifyState, RoleChange, StepHistogram, StepTime};
use crate::election::Procedure;
use crate::replication::{SyncError, SyncHandle};

/// Whether this node forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Forwarding.
    Active,
    /// Standing by: not forwarding, receiving the active node's state.
    Backup,
    /// Faulty: not forwarding.
    Fault,
}

impl Role {
    /// The name `ftfwctl status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Active => "active",
            Role::Backup => "backup",
            Role::Fault => "fault",
        }
    }
}

/// Why a role change stopped part way.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TakeoverError {
    /// The sync thread refused or failed a commit, export or resync.
    #[error(transparent)]
    Sync(#[from] SyncError),
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Times the steps of a role change.
struct Steps {
    t0: Instant,
    last: Instant,
    steps: Vec<StepTime>,
}

impl Steps {
    fn new() -> Steps {
        let now = Instant::now();
        Steps {
            t0: now,
            last: now,
            steps: Vec::new(),
        }
    }

    fn step(&mut self, name: &str, note: &str) {
        let now = Instant::now();
        let micros = u64::try_from(now.duration_since(self.last).as_micros()).unwrap_or(u64::MAX);
        tracing::info!(step = name, micros, note, "step done");
        self.steps.push(StepTime {
            step: name.to_string(),
            micros,
            note: note.to_string(),
        });
        self.last = now;
    }

    fn elapsed_us(&self) -> u64 {
        u64::try_from(self.t0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn finish(self, role: Role, committed: u64) -> RoleChange {
        RoleChange {
            role: role.as_str().to_string(),
            at: unix_now(),
            total_us: self.elapsed_us(),
            steps: self.steps,
            flows_committed: committed,
        }
    }
}

/// The span of a role change: `takeover` when the node becomes active,
/// `stand_by` otherwise; its events are the steps, then the change.
fn change_span(from: Role, takeover: bool, trigger: &str) -> tracing::Span {
    if takeover {
        tracing::info_span!("takeover", from = from.as_str(), trigger)
    } else {
        tracing::info_span!("stand_by", from = from.as_str(), trigger)
    }
}

/// What a role change acts on: the appliance's workers, its sync thread,
/// its routed-mode state and its configured ports.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    /// The workers (forwarding switch, liveness).
    pub workers: &'a [WorkerHandle],
    /// The sync thread, when replication is configured.
    pub sync: Option<&'a SyncHandle>,
    /// Routed mode's shared state; `None` in transparent mode.
    pub l3: Option<&'a L3Shared>,
    /// The configured ports (link checks).
    pub ports: &'a [PortConfig],
}

impl Node<'_> {
    fn set_forwarding(&self, on: bool) {
        for w in self.workers {
            w.shared.set_forwarding(on);
        }
    }

    /// Whether every named port (every port when `names` is empty) has its
    /// link up. In-process (`mem`) ports are always up; AF_PACKET ports
    /// read the interface's operational state.
    pub fn ports_link_up(&self, names: &[String]) -> bool {
        self.ports
            .iter()
            .filter(|p| names.is_empty() || names.contains(&p.name))
            .all(|p| match p.backend.interface() {
                None => true,
                Some(i) => std::fs::read_to_string(format!("/sys/class/net/{i}/operstate"))
                    .map(|s| matches!(s.trim(), "up" | "unknown"))
                    .unwrap_or(false),
            })
    }
}

/// Upper bounds of the step duration histogram buckets, microseconds
/// (100 µs to 10 s).
pub const STEP_BUCKETS_US: [u64; 6] = [100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000];

/// Step durations of every role change, per (role, step).
#[derive(Debug, Default)]
struct StepStats {
    changes: BTreeMap<String, u64>,
    steps: BTreeMap<(String, String), ([u64; STEP_BUCKETS_US.len()], u64, u64)>,
}

impl StepStats {
    fn record(&mut self, role: Role, steps: &[StepTime]) {
        for s in steps {
            let (buckets, count, sum) = self
                .steps
                .entry((role.as_str().to_string(), s.step.clone()))
                .or_default();
            for (b, le) in buckets.iter_mut().zip(STEP_BUCKETS_US) {
                if s.micros <= le {
                    *b += 1;
                }
            }
            *count += 1;
            *sum = sum.saturating_add(s.micros);
        }
    }

    fn histograms(&self) -> Vec<StepHistogram> {
        self.steps
            .iter()
            .map(|((role, step), (buckets, count, sum))| StepHistogram {
                role: role.clone(),
                step: step.clone(),
                count: *count,
                sum_us: *sum,
                buckets: buckets
                    .iter()
                    .zip(STEP_BUCKETS_US)
                    .map(|(&count, le_us)| HistogramBucket { le_us, count })
                    .collect(),
            })
            .collect()
    }
}

/// The node's role and its last takeover.
#[derive(Debug)]
pub struct Takeover {
    role: Role,
    last: Option<RoleChange>,
    stats: StepStats,
}

impl Takeover {
    /// A node starting in `role`.
    pub fn new(role: Role) -> Takeover {
        Takeover {
            role,
            last: None,
            stats: StepStats::default(),
        }
    }

    /// Role changes since start, per role changed to.
    pub fn role_changes(&self) -> BTreeMap<String, u64> {
        self.stats.changes.clone()
    }

    /// Step durations of every role change since start.
    pub fn step_histograms(&self) -> Vec<StepHistogram> {
        self.stats.histograms()
    }

    /// The node's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The steps of the last change to active, for `ftfwctl status`.
    pub fn last_takeover(&self) -> Option<&RoleChange> {
        self.last.as_ref()
    }

    /// Takeover, first half: commit the external cache into the shards
    /// (moved, not copied: the flows now live in the shards), *then*
    /// forward. A node that is already active skips the commit. Returns
    /// the flows committed.
    fn commit_and_forward(&self, node: &Node<'_>, steps: &mut Steps) -> Result<u64, TakeoverError> {
        let mut committed = 0;
        if self.role == Role::Active {
            steps.step("commit", "skipped: already active");
        } else if let Some(sync) = node.sync {
            let (done, refused) = sync.commit(true)?;
            committed = done as u64;
            if refused > 0 {
                steps.step("commit", &format!("{refused} flow(s) refused: table full"));
            } else {
                steps.step("commit", "");
            }
        } else {
            steps.step("commit", "skipped: no [sync]");
        }
        node.set_forwarding(true);
        steps.step("forward", "");
        Ok(committed)
    }

    /// Takeover, second half: announce the virtual addresses (gratuitous
    /// ARP, unsolicited NA; nothing in transparent mode).
    fn announce(node: &Node<'_>, steps: &mut Steps) {
        let w0 = node.workers.first().map(|w| &*w.shared);
        let note = crate::l3::announce_note(node.l3, w0);
        steps.step("announce", &note);
    }

    /// After a takeover: our whole table to the peer, so that the old
    /// primary, back as a backup, has it.
    fn export_to_peer(
        node: &Node<'_>,
        was_active: bool,
        steps: &mut Steps,
    ) -> Result<(), TakeoverError> {
        if let (Some(sync), false) = (node.sync, was_active) {
            sync.export_all()?;
            steps.step("export to peer", "");
        }
        Ok(())
    }

    fn stand_by(node: &Node<'_>, role: Role, steps: &mut Steps) -> Result<(), TakeoverError> {
        node.set_forwarding(false);
        steps.step("stop forwarding", "");
        if let (Some(sync), Role::Backup) = (node.sync, role) {
            sync.resync()?;
            steps.step("resync request", "");
        }
        Ok(())
    }

    fn finish_change(&mut self, role: Role, steps: Steps, committed: u64, why: &str) -> RoleChange {
        let change = steps.finish(role, committed);
        tracing::info!(
            from = self.role.as_str(),
            to = role.as_str(),
            total_us = change.total_us,
            flows_committed = committed,
            "role change: {why}"
        );
        *self
            .stats
            .changes
            .entry(role.as_str().to_string())
            .or_default() += 1;
        self.stats.record(role, &change.steps);
        if role == Role::Active && self.role != Role::Active {
            self.last = Some(change.clone());
        }
        self.role = role;
        change
    }

    /// Carries out what a failover detector says, in the order that keeps
    /// connections alive, timing each step:
    /// - `master`: commit the external cache into the shards, *then*
    ///   forward, then announce the virtual addresses (none in transparent
    ///   mode), then send our whole table to the peer so that the old
    ///   primary, back as a backup, has it. A node that is already active
    ///   only re-announces.
    /// - `backup`: stop forwarding, then ask the peer for a resync so the
    ///   external cache is complete for the next takeover.
    /// - `fault`: stop forwarding.
    pub fn notify(
        &mut self,
        node: &Node<'_>,
        state: NotifyState,
    ) -> Result<RoleChange, TakeoverError> {
        let span = change_span(self.role, state == NotifyState::Master, state.as_str());
        let _in = span.enter();
        let mut steps = Steps::new();
        let was_active = self.role == Role::Active;
        let (role, committed) = match state {
            NotifyState::Master => {
                let c = self.commit_and_forward(node, &mut steps)?;
                Self::announce(node, &mut steps);
                Self::export_to_peer(node, was_active, &mut steps)?;
                (Role::Active, c)
            }
            NotifyState::Backup => {
                Self::stand_by(node, Role::Backup, &mut steps)?;
                (Role::Backup, 0)
            }
            NotifyState::Fault => {
                Self::stand_by(node, Role::Fault, &mut steps)?;
                (Role::Fault, 0)
            }
        };
        Ok(self.finish_change(
            role,
            steps,
            committed,
            &format!("notify {}", state.as_str()),
        ))
    }

    /// Runs one procedure of the election (Roelle's checks and actions)
    /// with the built-in implementation; true is success.
    /// - link checks: every port named (all when none is) has its link up;
    /// - local service check: every worker thread is running;
    /// - remote service check: answered by the election driver from the
    ///   peers' authenticated reports (here it succeeds; an operator script
    ///   can probe through the firewall instead);
    /// - activate service: commit, then forward, then export to the peer;
    /// - takeover up/downstream: announce the virtual addresses;
    /// - deactivate service: stop forwarding, ask the new primary for a
    ///   resync; uplink activation and address release need nothing here
    ///   (a node that does not forward does not answer for them).
    pub fn run_procedure(
        &mut self,
        node: &Node<'_>,
        p: Procedure,
        downlinks: &[String],
        uplinks: &[String],
    ) -> bool {
        use Procedure as P;
        match p {
            P::DownlinkCheck => node.ports_link_up(downlinks),
            P::UplinkCheck => node.ports_link_up(uplinks),
            P::LocalSvcCheck => node.workers.iter().all(|w| w.is_running()),
            P::RemoteSvcCheck | P::ActivateUplink | P::DeactivateUplink => true,
            P::ReleaseDownstream | P::ReleaseUpstream => true,
            P::ActivateService => {
                let span = change_span(self.role, true, "election");
                let _in = span.enter();
                let mut steps = Steps::new();
                let was_active = self.role == Role::Active;
                let r = self.commit_and_forward(node, &mut steps).and_then(|c| {
                    Self::export_to_peer(node, was_active, &mut steps)?;
                    Ok(c)
                });
                match r {
                    Ok(c) => {
                        self.finish_change(Role::Active, steps, c, "election: activate service");
                        true
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "election: activate service failed");
                        false
                    }
                }
            }
            P::TakeoverDownstream | P::TakeoverUpstream => {
                let span = change_span(self.role, true, "election: takeover");
                let _in = span.enter();
                let mut steps = Steps::new();
                Self::announce(node, &mut steps);
                self.stats.record(Role::Active, &steps.steps);
                if let Some(t) = &mut self.last {
                    t.total_us += steps.elapsed_us();
                    t.steps.extend(steps.steps);
                }
                true
            }
            P::DeactivateService => {
                let span = change_span(self.role, false, "election");
                let _in = span.enter();
                let mut steps = Steps::new();
                match Self::stand_by(node, Role::Backup, &mut steps) {
                    Ok(()) => {
                        self.finish_change(Role::Backup, steps, 0, "election: deactivate service");
                        true
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "election: deactivate service failed");
                        false
                    }
                }
            }
        }
    }
}
