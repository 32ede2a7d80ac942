//! Console dispatch: answers each [`Request`] from the appliance's workers,
//! rules, sync thread, takeover and routed-mode state. The console server
//! (`crate::console::server`) reads and writes the lines; this module only
//! decides what a request does.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use ftfw_dataplane::flow::FlowState;
use ftfw_dataplane::worker::Command;

use super::rules::ReloadError;
use super::Appliance;
use super::COMMAND_TIMEOUT;
use crate::console::proto::{
    ExpectJson, ExpectListing, FlowError, FlowJson, FlowsListing, Payload, PortCounters, PortInfo,
    Request, Response, StatsInfo, StatusInfo, WorkerStats,
};
use crate::console::ConsoleHandler;
use crate::l3::L3Error;
use crate::replication::SyncError;
use crate::takeover::{Role, TakeoverError};

/// Most flows one `flows list` returns unless the request asks for fewer.
const DEFAULT_LIST_LIMIT: usize = 100_000;

/// Why a console request failed; its `Display` is the text `ftfwctl`
/// prints.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A replication request without a `[sync]` section.
    #[error("replication is not configured (no [sync] section)")]
    NoSync,
    /// The sync thread refused or failed the request.
    #[error(transparent)]
    Sync(#[from] SyncError),
    /// A worker's command queue is full.
    #[error("worker {0} command queue is full")]
    QueueFull(usize),
    /// A worker did not answer in time.
    #[error("worker {0} did not answer")]
    NoAnswer(usize),
    /// The flow in a `flows add` is malformed.
    #[error(transparent)]
    BadFlow(#[from] FlowError),
    /// The worker refused the flow (e.g. its table is full).
    #[error("{0}")]
    Refused(String),
    /// The reloaded rules were refused; the running set stays.
    #[error(transparent)]
    Reload(#[from] ReloadError),
    /// A role change stopped part way.
    #[error(transparent)]
    Takeover(#[from] TakeoverError),
    /// A routed-mode request failed.
    #[error(transparent)]
    L3(#[from] L3Error),
    /// `migrate` without the built-in election.
    #[error("migrate needs the built-in election ([failover] mode = \"election\")")]
    NoElection,
    /// `migrate` to a node that is not a configured peer.
    #[error("node {0} is not a configured [[failover.peer]]")]
    UnknownPeer(u32),
    /// `migrate` on a node that is not the primary.
    #[error("only the primary can hand its role over")]
    NotPrimary,
    /// A `cluster` request on a node without `[cluster]`.
    #[error("this node is not in a cluster (no [cluster] section)")]
    NoCluster,
    /// A `cluster drain|undrain` of a node that is no member.
    #[error("node {0} is not a [[cluster.member]]")]
    UnknownMember(u32),
    /// Too many cluster changes waiting for the coordinator.
    #[error("the cluster coordinator has {0} changes waiting; try again")]
    ClusterBusy(usize),
}

/// Cluster changes that may wait for the coordinator.
const CLUSTER_REQUESTS_MAX: usize = 16;

impl Appliance {
    fn ask<T>(
        &self,
        w: usize,
        make: impl FnOnce(mpsc::Sender<T>) -> Command,
    ) -> Result<T, RequestError> {
        let (tx, rx) = mpsc::channel();
        self.workers[w]
            .shared
            .send(make(tx))
            .map_err(|_| RequestError::QueueFull(w))?;
        rx.recv_timeout(COMMAND_TIMEOUT)
            .map_err(|_| RequestError::NoAnswer(w))
    }

    /// `[cluster] kernel_filter` and what the workers did with it: filters
    /// given to their ports, refused, and the frames they still dropped
    /// themselves (those the filter passes, or all without one).
    fn kernel_filter_json(&self, configured: bool) -> serde_json::Value {
        let mut c = WorkerStats::default();
        for w in &self.workers {
            c.add(&w.shared.counters.load());
        }
        serde_json::json!({
            "configured": configured,
            "loads": c.bucket_filter_loads,
            "failures": c.bucket_filter_failures,
            "not_owner": c.not_owner,
        })
    }

    fn status(&self) -> StatusInfo {
        let counters: Vec<WorkerStats> = self
            .workers
            .iter()
            .map(|w| w.shared.counters.load())
            .collect();
        StatusInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            pid: std::process::id(),
            workers: self.workers.len(),
            poll_mode: self.config.dataplane.poll_mode.as_str().to_string(),
            mode: self.config.dataplane.mode.as_str().to_string(),
            ports: self
                .config
                .ports
                .iter()
                .map(|p| PortInfo {
                    name: p.name.clone(),
                    backend: p.backend.name().to_string(),
                    interface: p.backend.interface().map(str::to_string),
                    zone: p.zone,
                    peer: self.config.bridge_peer(&p.name).map(str::to_string),
                })
                .collect(),
            flows: counters.iter().map(|c| c.flows).sum(),
            capacity: counters.iter().map(|c| c.capacity).sum(),
            rules: self.rules_summary(),
            deltas_consumed: self.deltas_seen(),
            last_reload_error: self.last_reload_errors(),
            role: self.takeover.role().as_str().to_string(),
            failover: self.config.failover.mode.as_str().to_string(),
            last_takeover: self.takeover.last_takeover().cloned(),
            role_changes: self.takeover.role_changes(),
            role_change_steps: self.takeover.step_histograms(),
            election: self.election_status.clone(),
            migration: self.migration_note.clone(),
            state_keeper: self.state_keeper_info(),
        }
    }

    /// Asks every worker to publish its counters now and waits a little for
    /// them (falling back to the last periodic snapshot of a busy worker).
    pub(super) fn refresh_counters(&self) {
        const WAIT: Duration = Duration::from_millis(200);
        // A stopped worker published its final counters on its way out and
        // will answer nothing: do not wait for it.
        let pending: Vec<_> = self
            .workers
            .iter()
            .filter(|w| w.is_running())
            .filter_map(|w| {
                let (tx, rx) = mpsc::channel();
                w.shared
                    .send(Command::Publish { reply: tx })
                    .ok()
                    .map(|()| rx)
            })
            .collect();
        let deadline = Instant::now() + WAIT;
        for rx in pending {
            let _ = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        }
    }

    fn stats(&self) -> StatsInfo {
        self.refresh_counters();
        let workers = self
            .workers
            .iter()
            .map(|w| w.shared.counters.load())
            .collect();
        let mut ports: Vec<PortCounters> = self
            .config
            .ports
            .iter()
            .map(|p| PortCounters {
                name: p.name.clone(),
                stats: Default::default(),
            })
            .collect();
        for w in &self.workers {
            for (_, index, st) in &w.shared.ports {
                if let Some(pc) = ports.get_mut(usize::from(*index)) {
                    let s = st.load();
                    pc.stats.rx_packets += s.rx_packets;
                    pc.stats.rx_bytes += s.rx_bytes;
                    pc.stats.tx_packets += s.tx_packets;
                    pc.stats.tx_bytes += s.tx_bytes;
                    pc.stats.rx_dropped += s.rx_dropped;
                    pc.stats.tx_dropped += s.tx_dropped;
                    pc.stats.truncated += s.truncated;
                    pc.stats.rx_missed += s.rx_missed;
                    pc.stats.rx_errors += s.rx_errors;
                    pc.stats.tx_errors += s.tx_errors;
                }
            }
        }
        StatsInfo::new(workers, ports)
    }

    fn flows_list(
        &self,
        filter: &crate::console::proto::FlowFilter,
        limit: usize,
    ) -> Result<FlowsListing, RequestError> {
        let mut flows = Vec::new();
        let mut total = 0u64;
        for w in 0..self.workers.len() {
            let f = filter.clone();
            let remaining = limit.saturating_sub(flows.len());
            let (states, matched) = self.ask(w, |reply| Command::List {
                filter: Box::new(move |s| f.matches(s)),
                limit: remaining,
                reply,
            })?;
            total += matched as u64;
            flows.extend(states.iter().map(FlowJson::from));
        }
        Ok(FlowsListing { flows, total })
    }

    fn handle_request(&mut self, req: Request) -> Result<Payload, RequestError> {
        Ok(match req {
            Request::Status => Payload::Status(self.status()),
            Request::Stats => Payload::Stats(self.stats()),
            Request::FlowsList { filter, limit } => {
                Payload::Flows(self.flows_list(&filter, list_limit(limit))?)
            }
            Request::FlowsAdd { flow } => {
                let state = FlowState::try_from(flow)?;
                let w = crate::import::owner_of(
                    &state.key,
                    self.workers.len(),
                    self.workers.first().and_then(|w| w.shared.rss),
                );
                let json = FlowJson::from(&state);
                self.ask(w, |reply| Command::Upsert {
                    state: Box::new(state),
                    reply,
                })?
                .map_err(RequestError::Refused)?;
                Payload::FlowAdded { flow: json }
            }
            Request::FlowsDelete { filter } => {
                let mut deleted = 0u64;
                for w in 0..self.workers.len() {
                    let f = filter.clone();
                    deleted += self.ask(w, |reply| Command::RemoveWhere {
                        filter: Box::new(move |s| f.matches(s)),
                        reply,
                    })? as u64;
                }
                Payload::FlowsDeleted { deleted }
            }
            Request::RulesShow => Payload::Rules(self.rules_info()),
            Request::RulesReload => Payload::Reloaded(self.reload_rules()?),
            Request::SyncStatus => Payload::SyncStatus(self.sync_or_err()?.status()?),
            Request::ExternalList { filter, limit } => Payload::ExternalFlows(
                self.sync_or_err()?
                    .external_list(filter, list_limit(limit))?,
            ),
            Request::ExpectList => {
                // The workers share one table: worker 0 answers for all.
                let list = self.ask(0, |reply| Command::ExpectList { reply })?;
                let expectations = list
                    .iter()
                    .map(|(e, left)| ExpectJson::new(e, *left))
                    .collect();
                Payload::Expectations(ExpectListing { expectations })
            }
            Request::ExpectExternal => Payload::Expectations(ExpectListing {
                expectations: self.sync_or_err()?.external_expectations()?,
            }),
            Request::Commit => Payload::Committed(self.commit()?),
            Request::Resync => Payload::ResyncRequested {
                queued: self.sync_or_err()?.resync()?,
            },
            Request::FlushExternal => Payload::ExternalFlushed {
                flushed: self.sync_or_err()?.flush_external()?,
            },
            Request::Notify { state } => Payload::Notified(self.notify(state)?),
            Request::Migrate { to } => {
                let Some(e) = &self.config.failover.election else {
                    return Err(RequestError::NoElection);
                };
                if !e.peers.iter().any(|p| p.node == to) {
                    return Err(RequestError::UnknownPeer(to));
                }
                if self.takeover.role() != Role::Active {
                    return Err(RequestError::NotPrimary);
                }
                self.migrate_request = Some(to);
                self.migration_note = Some(format!("to node {to}: requested"));
                Payload::MigrationStarted { to }
            }
            Request::ClusterStatus => {
                let Some(cluster) = &self.config.cluster else {
                    return Err(RequestError::NoCluster);
                };
                let sync_peers = match &self.sync {
                    Some(s) => serde_json::to_value(s.peers_status()?).unwrap_or_default(),
                    None => serde_json::Value::Null,
                };
                Payload::Cluster(crate::console::proto::ClusterInfo {
                    coordinator: self.cluster_status.clone().unwrap_or_default(),
                    sync_peers,
                    kernel_filter: self.kernel_filter_json(cluster.kernel_filter),
                })
            }
            Request::ClusterChange { change } => {
                let Some(c) = &self.config.cluster else {
                    return Err(RequestError::NoCluster);
                };
                use crate::console::proto::ClusterChange as C;
                if let C::Drain { node } | C::Undrain { node } = change {
                    if !c.nodes.iter().any(|m| m.id == node) {
                        return Err(RequestError::UnknownMember(node));
                    }
                }
                if self.cluster_requests.len() >= CLUSTER_REQUESTS_MAX {
                    return Err(RequestError::ClusterBusy(self.cluster_requests.len()));
                }
                self.cluster_requests.push_back(change);
                Payload::ClusterRequested { change }
            }
            Request::Neighbors => {
                Payload::Neighbors(crate::l3::neighbors_info(self.l3.as_deref())?)
            }
            Request::Routes => Payload::Routes(crate::l3::routes_info(self.l3.as_deref())?),
            Request::RoutesReload => {
                // Transparent mode has no routes: say so, as `routes` does.
                crate::l3::routes_info(self.l3.as_deref())?;
                self.reload_configured_routes()?;
                Payload::Routes(crate::l3::routes_info(self.l3.as_deref())?)
            }
            Request::Restart => {
                self.restart_requested = true;
                Payload::RestartScheduled {
                    keeps_flows: self.keeper.is_some(),
                }
            }
        })
    }
}

/// The most flows a listing returns: the request's limit, else
/// [`DEFAULT_LIST_LIMIT`].
fn list_limit(limit: Option<u64>) -> usize {
    limit.map_or(DEFAULT_LIST_LIMIT, |l| {
        usize::try_from(l).unwrap_or(usize::MAX)
    })
}

impl ConsoleHandler for Appliance {
    fn handle(&mut self, req: Request) -> Response {
        match self.handle_request(req) {
            Ok(p) => Response::Ok(p),
            Err(e) => Response::error(e.to_string()),
        }
    }

    /// `flows list` and `external list` are written as the client reads
    /// them (without a sync thread, `external list` is answered whole: the
    /// error).
    fn stream(&mut self, req: &Request) -> Option<Box<dyn crate::console::stream::ResponseStream>> {
        match req {
            Request::FlowsList { filter, limit } => {
                Some(Box::new(super::flows_stream::FlowsStream::new(
                    self.workers.iter().map(|w| w.shared.clone()).collect(),
                    filter.clone(),
                    list_limit(*limit),
                )))
            }
            Request::ExternalList { filter, limit } => {
                Some(Box::new(super::external_stream::ExternalStream::new(
                    self.sync()?.external_pager(),
                    filter.clone(),
                    list_limit(*limit),
                )))
            }
            _ => None,
        }
    }
}
