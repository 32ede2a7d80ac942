//! Appliance assembly: turns a validated [`Config`] into running workers,
//! owns them on the control thread and serves the console.
//!
//! The control thread owns the [`Appliance`]. It never touches packets: it
//! loads and swaps rule sets (whole, atomically, through an `ArcSwap` the
//! workers read once per iteration; `appliance/rules.rs`), talks to workers through
//! their command queues, drains their log and delta rings, and sums their
//! counters. Role changes are the [`Takeover`]'s, bulk imports go through
//! [`crate::import`], and console requests are dispatched in
//! `appliance/console.rs`.

mod console;
mod external_stream;
mod flows_stream;
mod ports;
mod rules;
mod state;

/// How long the console waits for a worker to answer a command.
const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use ftfw_dataplane::flow::FlowState;
use ftfw_dataplane::worker::{
    self, ActiveRules, LogRecord, PollMode as WorkerPoll, WorkerHandle, WorkerPort, WorkerShared,
    WorkerSpec,
};

pub use console::RequestError;
pub use ports::{open_system_port, PortError, PortOpener};
pub use rules::{check, ReloadError, RulesError};

use crate::config::{Config, FailoverMode, PollMode};
use crate::console::proto::{CommitResult, NotifyState, RoleChange};
use crate::import::{import_into, ImportError};
use crate::l3::L3ConfigError;
use crate::replication::{SpawnError, SyncHandle};
use crate::takeover::{Node, Role, Takeover, TakeoverError};
use rules::{load_rules, LoadedRules};

/// Log records buffered between the workers and the control thread.
const LOG_RING: usize = 4096;

/// Why an appliance did not start (nothing it started keeps running).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The rule set could not be loaded.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// Routed mode could not be set up.
    #[error(transparent)]
    L3(#[from] L3ConfigError),
    /// A worker's port could not be opened.
    #[error(transparent)]
    Port(#[from] PortError),
    /// A transparent-mode port without a bridge peer.
    #[error("port {0} is in no bridge")]
    NoBridge(String),
    /// More ports than a port index holds.
    #[error("too many ports")]
    TooManyPorts,
    /// More workers than a worker id holds.
    #[error("too many workers")]
    TooManyWorkers,
    /// A worker thread could not be spawned.
    #[error("starting worker thread")]
    Worker(#[source] std::io::Error),
    /// The sync thread could not start.
    #[error(transparent)]
    Sync(#[from] SpawnError),
    /// DPDK's EAL could not be initialised.
    #[cfg(feature = "dpdk")]
    #[error(transparent)]
    Dpdk(#[from] crate::dpdk::DpdkInitError),
}

/// A running appliance.
pub struct Appliance {
    config: Config,
    workers: Vec<WorkerHandle>,
    rules: Arc<ArcSwap<ActiveRules>>,
    loaded: LoadedRules,
    generation: u64,
    logs: Arc<ArrayQueue<LogRecord>>,
    started: Instant,
    last_reload_error: Option<String>,
    /// Why the last reload of the static routes was refused (routed mode).
    last_route_reload_error: Option<String>,
    /// The configuration file the static routes reload from (set by
    /// ftfwd; `None`: started from a configuration in memory).
    config_path: Option<std::path::PathBuf>,
    deltas_seen: u64,
    sync: Option<SyncHandle>,
    takeover: Takeover,
    /// Routed mode's shared L3 state (see `crate::l3`).
    l3: Option<Arc<ftfw_dataplane::l3::L3Shared>>,
    election_status: Option<serde_json::Value>,
    /// A `ftfwctl migrate` waiting for the election driver.
    migrate_request: Option<u32>,
    /// Progress of the last migration, as the driver reports it.
    migration_note: Option<String>,
    /// A standalone node's state keeper (see `crate::keeper`).
    keeper: Option<crate::keeper::Keeper>,
    /// What the start restored from the state file.
    restored: Option<crate::keeper::RestoreReport>,
    /// `ftfwctl restart` asked for a planned restart.
    restart_requested: bool,
    /// Cluster: what the coordinator published for `ftfwctl cluster status`.
    cluster_status: Option<serde_json::Value>,
    /// Cluster: operator changes waiting for the coordinator (bounded).
    cluster_requests: std::collections::VecDeque<crate::console::proto::ClusterChange>,
}

impl std::fmt::Debug for Appliance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appliance")
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl Appliance {
    /// Loads the rules, opens every port for every worker and starts the
    /// workers. On any error nothing keeps running.
    pub fn start(config: Config, open: &mut PortOpener<'_>) -> Result<Appliance, StartError> {
        let loaded = load_rules(&config)?;
        let generation = 1;
        let rules = Arc::new(ArcSwap::from_pointee(ActiveRules {
            generation,
            classifier: loaded.set.compile(),
            sync: rules::sync_policy(&config, &loaded.set),
            nat: loaded.set.nat_rules(),
            helpers: rules::helper_policy(&config, &loaded.set),
        }));
        let logs = Arc::new(ArrayQueue::new(LOG_RING));
        let workers_n = config.dataplane.workers.max(1);
        let epoch = Instant::now();
        let keeps_state = state::keeps_state(&config);
        let shard = ports::shard_config(&config);
        let expect = Arc::new(ftfw_dataplane::helper::SharedExpect::default());
        // Under keepalived a node starts as a backup until told otherwise.
        let role = match config.failover.mode {
            FailoverMode::None => Role::Active,
            FailoverMode::Keepalived | FailoverMode::Election => Role::Backup,
        };
        let l3 = crate::l3::build(&config)?;
        // A cluster member forwards only the buckets the map gives it: none
        // until the coordinator says so.
        let no_buckets = config
            .cluster
            .as_ref()
            .map(|c| ftfw_dataplane::buckets::BucketSet::empty(c.buckets));
        let mut workers = Vec::with_capacity(workers_n);
        let handoff = (workers_n > 1).then(|| ftfw_dataplane::worker::HandOff::new(workers_n));
        for w in 0..workers_n {
            let mut ports = Vec::with_capacity(config.ports.len());
            for (i, p) in config.ports.iter().enumerate() {
                let port = open(i, p, w, workers_n)?;
                let peer = match l3 {
                    Some(_) => i, // routed: no bridge peer
                    None => config
                        .bridge_peer(&p.name)
                        .and_then(|peer| config.port_index(peer))
                        .ok_or_else(|| StartError::NoBridge(p.name.clone()))?,
                };
                ports.push(WorkerPort {
                    port,
                    index: u16::try_from(i).map_err(|_| StartError::TooManyPorts)?,
                    zone: p.zone,
                    peer,
                });
            }
            let spec = WorkerSpec {
                id: u16::try_from(w).map_err(|_| StartError::TooManyWorkers)?,
                core: config
                    .dataplane
                    .cores
                    .as_ref()
                    .and_then(|c| c.get(w).copied()),
                poll: match config.dataplane.poll_mode {
                    PollMode::Busy => WorkerPoll::Busy,
                    PollMode::Adaptive => WorkerPoll::Adaptive,
                },
                ports,
                conntrack: shard,
                delta_ring: config.conntrack.delta_ring,
                epoch,
                pass_ethertypes: config.dataplane.pass_ethertypes,
                workers: u16::try_from(workers_n).map_err(|_| StartError::TooManyWorkers)?,
                expect: expect.clone(),
                handoff: handoff.clone(),
            };
            // A node that restores its table starts forwarding only once
            // the flows are back (below).
            // A cluster member starts forwarding once its ownership (none
            // yet) is in place.
            let active = role == Role::Active && !keeps_state && no_buckets.is_none();
            workers.push(
                match &l3 {
                    Some(l3) => worker::spawn_routed(
                        spec,
                        rules.clone(),
                        Some(logs.clone()),
                        active,
                        l3.clone(),
                    ),
                    None => worker::spawn_with(spec, rules.clone(), Some(logs.clone()), active),
                }
                .map_err(StartError::Worker)?,
            );
            if let (Some(none), Some(w)) = (&no_buckets, workers.last()) {
                let kernel_filter = config.cluster.as_ref().is_some_and(|c| c.kernel_filter);
                w.shared.set_kernel_bucket_filter(kernel_filter);
                w.shared.buckets.set(none);
                w.shared.set_forwarding(role == Role::Active);
            }
        }
        let sync = match &config.sync {
            Some(sc) => Some(crate::replication::spawn(
                sc,
                workers.iter().map(|w| w.shared.clone()).collect(),
                crate::replication::ExpectSource {
                    table: expect.clone(),
                    epoch,
                },
            )?),
            None => None,
        };
        let (keeper, restored) = match (&config.daemon.state_file, keeps_state) {
            (Some(path), true) => {
                let shared: Vec<_> = workers.iter().map(|w| w.shared.clone()).collect();
                let (keeper, report) = state::restore_and_keep(path, shared);
                for w in &workers {
                    w.shared.set_forwarding(true);
                }
                (keeper, Some(report))
            }
            _ => (None, None),
        };
        tracing::info!(workers = workers_n, rules = loaded.set.len(), source = %loaded.source, "ftfw appliance started");
        Ok(Appliance {
            config,
            workers,
            rules,
            loaded,
            generation,
            logs,
            started: Instant::now(),
            last_reload_error: None,
            last_route_reload_error: None,
            config_path: None,
            deltas_seen: 0,
            sync,
            takeover: Takeover::new(role),
            election_status: None,
            migrate_request: None,
            migration_note: None,
            l3,
            keeper,
            restored,
            restart_requested: false,
            cluster_status: None,
            cluster_requests: std::collections::VecDeque::new(),
        })
    }

    /// Routed mode's shared L3 state; `None` in transparent mode.
    pub fn l3(&self) -> Option<&Arc<ftfw_dataplane::l3::L3Shared>> {
        self.l3.as_ref()
    }

    /// Starts with system ports (what ftfwd does).
    pub fn start_system(config: Config) -> Result<Appliance, StartError> {
        #[cfg(feature = "dpdk")]
        crate::dpdk::init(&config)?;
        Appliance::start(config, &mut open_system_port)
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Prints log-rule hits and, when replication is off, consumes and
    /// counts state deltas (with replication on, the sync thread takes
    /// them). Bounded: at most `budget` records of each kind per call.
    pub fn drain(&mut self, budget: usize) -> usize {
        let mut n = 0;
        while n < budget {
            let Some(r) = self.logs.pop() else { break };
            let rule = self
                .loaded
                .set
                .rules()
                .nth(r.rule as usize)
                .map(|v| v.text.to_string())
                .unwrap_or_default();
            tracing::info!(target: "ftfw::log", worker = r.worker, rule = r.rule, rule_text = %rule, in_port = r.in_port,
                ct = r.ct.name(), decision = ?r.decision, "{}", r.tuple);
            n += 1;
        }
        n += crate::l3::publish_neighbors(self.l3.as_deref());
        if self.sync.is_some() || self.keeper.is_some() {
            return n;
        }
        for w in &self.workers {
            let mut k = 0;
            while k < budget {
                if w.shared.deltas.pop().is_none() {
                    break;
                }
                k += 1;
            }
            self.deltas_seen += k as u64;
            n += k;
        }
        n
    }

    /// State deltas consumed from the workers' rings so far.
    pub fn deltas_seen(&self) -> u64 {
        self.deltas_seen
            + self.sync.as_ref().map_or(0, |s| s.deltas_consumed())
            + self.keeper.as_ref().map_or(0, |k| {
                k.stats().records.load(std::sync::atomic::Ordering::Relaxed)
            })
    }

    /// The sync thread, when replication is configured.
    pub fn sync(&self) -> Option<&SyncHandle> {
        self.sync.as_ref()
    }

    fn sync_or_err(&self) -> Result<&SyncHandle, RequestError> {
        self.sync.as_ref().ok_or(RequestError::NoSync)
    }

    /// Imports the external cache into the shards, each flow to the worker
    /// that owns its hash, without replicating it back.
    pub fn commit(&self) -> Result<CommitResult, RequestError> {
        let t0 = Instant::now();
        let (done, refused) = self.sync_or_err()?.commit(false)?;
        // Logged in the `commit` span by the sync handle.
        let millis = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(CommitResult {
            committed: done as u64,
            refused: refused as u64,
            millis,
        })
    }

    /// The node's role.
    pub fn role(&self) -> Role {
        self.takeover.role()
    }

    /// The takeover state and the parts of the appliance it acts on.
    fn takeover_parts(&mut self) -> (&mut Takeover, Node<'_>) {
        let node = Node {
            workers: &self.workers,
            sync: self.sync.as_ref(),
            l3: self.l3.as_deref(),
            ports: &self.config.ports,
        };
        (&mut self.takeover, node)
    }

    /// Carries out what a failover detector says (see
    /// [`Takeover::notify`]): `master` commits, forwards, announces and
    /// exports; `backup` stops forwarding and asks for a resync; `fault`
    /// stops forwarding.
    pub fn notify(&mut self, state: NotifyState) -> Result<RoleChange, TakeoverError> {
        let (takeover, node) = self.takeover_parts();
        takeover.notify(&node, state)
    }

    /// Runs one procedure of the election with the built-in implementation
    /// (see [`Takeover::run_procedure`]); true is success.
    pub fn run_procedure(
        &mut self,
        p: crate::election::Procedure,
        downlinks: &[String],
        uplinks: &[String],
    ) -> bool {
        let (takeover, node) = self.takeover_parts();
        takeover.run_procedure(&node, p, downlinks, uplinks)
    }

    /// Sends the gratuitous ARPs and unsolicited NAs for the virtual
    /// addresses through worker 0; the frames sent (0 in transparent mode).
    pub fn announce_virtual_addresses(&self) -> Result<usize, crate::l3::L3Error> {
        match &self.l3 {
            None => Ok(0),
            Some(l3) => {
                crate::l3::announce_virtual_addresses(l3, self.workers.first().map(|w| &*w.shared))
            }
        }
    }

    /// Asks the election driver for a planned handover to node `to` (what
    /// a hardware health trigger does; `ftfwctl migrate` checks first).
    pub fn request_migrate(&mut self, to: u32) {
        self.migrate_request = Some(to);
    }

    /// A `ftfwctl migrate` (or a health trigger) for the election driver.
    pub fn take_migrate_request(&mut self) -> Option<u32> {
        self.migrate_request.take()
    }

    /// Sets what `ftfwctl status` shows of the last migration.
    pub fn set_migration_note(&mut self, note: String) {
        tracing::info!("migration {note}");
        self.migration_note = Some(note);
    }

    /// Counts every worker's thread CPU time in busy iterations
    /// (`busy_cpu_ns`, what the lab measures); off by default, as it costs
    /// two system calls per busy iteration.
    pub fn set_cpu_accounting(&self, on: bool) {
        for w in &self.workers {
            w.shared.set_cpu_accounting(on);
        }
    }

    /// Cluster: forward exactly the frames of `buckets` from now on (every
    /// worker; takes effect at each worker's next burst).
    pub fn set_owned_buckets(&self, buckets: &ftfw_dataplane::buckets::BucketSet) {
        for w in &self.workers {
            w.shared.buckets.set(buckets);
        }
    }

    /// Cluster: the next operator change for the coordinator.
    pub fn take_cluster_request(&mut self) -> Option<crate::console::proto::ClusterChange> {
        self.cluster_requests.pop_front()
    }

    /// Cluster: sets what `ftfwctl cluster status` shows of the coordinator.
    pub fn set_cluster_status(&mut self, status: serde_json::Value) {
        self.cluster_status = Some(status);
    }

    /// Sets what `ftfwctl status` shows of the election.
    pub fn set_election_status(&mut self, status: Option<serde_json::Value>) {
        self.election_status = status;
    }

    /// Stops every worker and the sync thread, and waits for them. The
    /// state keeper then writes what the workers changed last.
    pub fn stop(&mut self) {
        if let Some(s) = &mut self.sync {
            s.stop();
        }
        for w in &mut self.workers {
            w.stop();
        }
        if let Some(k) = self.keeper.take() {
            match k.finish(None) {
                Ok(n) => tracing::info!(flows = n, "state file written"),
                Err(e) => tracing::warn!("state file: {e}"),
            }
        }
    }

    /// The workers' shared halves (command queues, counters, delta rings).
    pub fn worker_shared(&self) -> Vec<Arc<WorkerShared>> {
        self.workers.iter().map(|w| w.shared.clone()).collect()
    }

    /// Imports many flows that came from a peer (what a commit of the
    /// external cache does): each goes to the shard of the worker its hash
    /// picks, and no deltas are emitted for them. Returns (inserted or
    /// replaced, refused because a table was full).
    pub fn import_flows(&self, states: Vec<FlowState>) -> Result<(usize, usize), ImportError> {
        import_into(&self.worker_shared(), states, false)
    }

    /// Like [`Appliance::import_flows`], choosing whether the imported flows
    /// are replicated to the peer (an operator's bulk import is).
    pub fn import_flows_with(
        &self,
        states: Vec<FlowState>,
        replicate: bool,
    ) -> Result<(usize, usize), ImportError> {
        import_into(&self.worker_shared(), states, replicate)
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        self.stop();
    }
}
