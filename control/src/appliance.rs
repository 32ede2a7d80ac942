//! Appliance assembly: turns a validated [`Config`] into running workers and
//! serves the console from the control thread.
//!
//! The control thread owns the [`Appliance`]. It never touches packets: it
//! loads and swaps rule sets (whole, atomically, through an `ArcSwap` the
//! workers read once per iteration), talks to workers through their command
//! queues, drains their log and delta rings, and sums their counters.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use arc_swap::ArcSwap;
use crossbeam_queue::ArrayQueue;
use ftfw_dataplane::acl::{self, Action, RuleSet};
use ftfw_dataplane::conntrack::tcp::{TcpConfig, TcpTimeouts};
use ftfw_dataplane::conntrack::{ConntrackConfig as ShardConfig, Timeouts as ShardTimeouts};
use ftfw_dataplane::flow::FlowState;
use ftfw_dataplane::port::Port;
use ftfw_dataplane::worker::{
    self, ActiveRules, Command, LogRecord, PollMode as WorkerPoll, WorkerHandle, WorkerPort,
    WorkerShared, WorkerSpec,
};

use crate::config::{Config, FailoverMode, Policy, PollMode, PortBackend, PortConfig, RulesSource};
use crate::console::proto::{
    CommitResult, FlowJson, FlowsListing, NotifyState, Payload, PortCounters, PortInfo,
    ReloadResult, Request, Response, RoleChange, RuleLine, RulesInfo, RulesSummary, StatsInfo,
    StatusInfo, StepTime, WorkerStats,
};
use crate::console::ConsoleHandler;

/// How long the console waits for a worker to answer a command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);
/// Most flows one `flows list` returns unless the request asks for fewer.
const DEFAULT_LIST_LIMIT: usize = 100_000;
/// Log records buffered between the workers and the control thread.
const LOG_RING: usize = 4096;

/// Opens the port a worker uses on a configured interface.
/// Arguments: port index in the configuration, the port, worker number, worker count.
pub type PortOpener<'a> =
    dyn FnMut(usize, &PortConfig, usize, usize) -> anyhow::Result<Box<dyn Port>> + 'a;

/// The rule set in force and where it came from.
#[derive(Debug, Clone)]
struct LoadedRules {
    set: RuleSet,
    source: String,
    loaded_at: u64,
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
    deltas_seen: u64,
    sync: Option<crate::replication::SyncHandle>,
    role: Role,
    last_takeover: Option<RoleChange>,
    /// Routed mode's shared L3 state (see `crate::l3`).
    l3: Option<Arc<ftfw_dataplane::l3::L3Shared>>,
    election_status: Option<serde_json::Value>,
    /// A `ftfwctl migrate` waiting for the election driver.
    migrate_request: Option<u32>,
    /// Progress of the last migration, as the driver reports it.
    migration_note: Option<String>,
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
        self.steps.push(StepTime {
            step: name.to_string(),
            micros: u64::try_from(now.duration_since(self.last).as_micros()).unwrap_or(u64::MAX),
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

impl std::fmt::Debug for Appliance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appliance")
            .field("workers", &self.workers.len())
            .finish()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn policy_action(p: Policy) -> Action {
    match p {
        Policy::Accept => Action::Accept,
        Policy::Drop => Action::Drop,
        Policy::Reject => Action::Reject,
    }
}

/// Reads and validates the rule set the configuration names. Any error names
/// file and line; nothing is half-loaded.
fn load_rules(config: &Config) -> anyhow::Result<LoadedRules> {
    let ports = |name: &str| config.port_index(name).and_then(|i| u16::try_from(i).ok());
    let default = policy_action(config.rules.policy);
    let (set, source) = match &config.rules.source {
        RulesSource::File(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read rules", path.display()))?;
            let name = path.display().to_string();
            let set =
                acl::parse_rules(&text, &name, 1, &ports).map_err(|e| anyhow::anyhow!("{e}"))?;
            (set, name)
        }
        RulesSource::Inline(lines) => {
            let name = config.file.display().to_string();
            let set =
                acl::parse_rule_lines(lines.iter().map(|(l, t)| (*l, t.as_str())), &name, &ports)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            (set, format!("{name} [rules]"))
        }
        RulesSource::None => (
            RuleSet::from_rules(Vec::new(), default),
            "(no rules)".to_string(),
        ),
    };
    Ok(LoadedRules {
        set: set.with_default_policy(default),
        source,
        loaded_at: unix_now(),
    })
}

/// Opens the system port for `port` as worker `worker` of `workers`
/// (AF_PACKET; several workers share an interface through a fanout group).
pub fn open_system_port(
    index: usize,
    port: &PortConfig,
    worker: usize,
    workers: usize,
) -> anyhow::Result<Box<dyn Port>> {
    match &port.backend {
        PortBackend::AfPacket { interface } => {
            use ftfw_dataplane::port::af_packet::{AfPacketConfig, AfPacketPort};
            // One fanout group per interface and daemon: pid-derived so two
            // daemons on one machine do not collide.
            let pid = std::process::id().to_le_bytes();
            let group = u16::from_le_bytes([index.to_le_bytes()[0], pid[0]]);
            let cfg = AfPacketConfig {
                fanout_group: (workers > 1).then_some(group),
                // A bump in the wire forwards fragments as they came; kernel
                // reassembly would hand us datagrams larger than the MTU.
                fanout_defrag: false,
                ..AfPacketConfig::new(interface)
            };
            let p = AfPacketPort::open(&cfg)
                .with_context(|| format!("port {} (worker {worker})", port.name))?;
            Ok(Box::new(p))
        }
        PortBackend::Mem => bail!("port {}: mem ports exist only inside ftfw-lab", port.name),
        #[cfg(feature = "dpdk")]
        PortBackend::Dpdk(d) => crate::dpdk::open_port(&port.name, d, worker, workers),
        #[cfg(not(feature = "dpdk"))]
        PortBackend::Dpdk(_) => bail!(
            "port {}: this build has no DPDK support (cargo build -p ftfw-control --features dpdk)",
            port.name
        ),
    }
}

fn shard_config(config: &Config) -> ShardConfig {
    let c = &config.conntrack;
    let t = &c.timeouts;
    let workers = config.dataplane.workers.max(1);
    ShardConfig {
        capacity: c.capacity / workers,
        timeouts: ShardTimeouts {
            tcp: TcpTimeouts {
                syn_sent: t.tcp_syn_sent,
                syn_recv: t.tcp_syn_recv,
                established: t.tcp_established,
                fin_wait: t.tcp_fin_wait,
                close_wait: t.tcp_close_wait,
                last_ack: t.tcp_last_ack,
                time_wait: t.tcp_time_wait,
                close: t.tcp_close,
                syn_sent2: t.tcp_syn_sent2,
                ..TcpTimeouts::default()
            },
            udp: t.udp,
            udp_stream: t.udp_stream,
            icmp: t.icmp,
            generic: t.generic,
        },
        tcp: TcpConfig {
            be_liberal: c.tcp_be_liberal,
            loose: c.tcp_loose,
            ..TcpConfig::default()
        },
    }
}

/// The worker that owns a flow: software steering (mem fanout ports) uses
/// the same symmetric hash, so both directions of a flow meet in one shard.
/// With AF_PACKET fanout the kernel's hash decides, so a flow added from the
/// console or a peer may land in another worker's shard than its packets
/// when there are several workers (documented limitation).
pub fn owner_worker(key: &ftfw_dataplane::flow::FlowKey, workers: usize) -> usize {
    if workers <= 1 {
        0
    } else {
        let h = ftfw_dataplane::conntrack::symmetric_hash(&key.orig);
        usize::try_from(h % workers as u64).unwrap_or(0)
    }
}

/// Streams flows into the shards of the workers that own them: flows are
/// gathered per worker into chunks of [`Importer::CHUNK`] and each full
/// chunk is sent at once as one `UpsertMany`, without waiting for the
/// answer, so the caller's walk over its flows overlaps the workers'
/// inserts. Only a full command queue makes it wait for the oldest answer.
pub struct Importer<'a> {
    workers: &'a [Arc<WorkerShared>],
    replicate: bool,
    chunks: Vec<Vec<FlowState>>,
    pending: VecDeque<mpsc::Receiver<(usize, usize)>>,
    done: usize,
    refused: usize,
}

impl<'a> Importer<'a> {
    /// Flows per command.
    pub const CHUNK: usize = 8192;

    /// An importer into `workers`' shards; `replicate` says whether the
    /// imported flows are sent to the peer (operator imports) or not
    /// (state that came from the peer).
    pub fn new(workers: &'a [Arc<WorkerShared>], replicate: bool) -> Importer<'a> {
        Importer {
            workers,
            replicate,
            chunks: vec![Vec::new(); workers.len()],
            pending: VecDeque::new(),
            done: 0,
            refused: 0,
        }
    }

    /// Adds one flow; sends its worker's chunk when it is full.
    pub fn push(&mut self, st: FlowState) -> Result<(), String> {
        let w = owner_worker(&st.key, self.workers.len());
        self.chunks[w].push(st);
        if self.chunks[w].len() >= Self::CHUNK {
            self.send(w)?;
        }
        Ok(())
    }

    fn wait_oldest(&mut self) -> Result<(), String> {
        if let Some(rx) = self.pending.pop_front() {
            let (d, r) = rx
                .recv_timeout(COMMAND_TIMEOUT)
                .map_err(|_| "a worker did not answer".to_string())?;
            self.done += d;
            self.refused += r;
        }
        Ok(())
    }

    fn send(&mut self, w: usize) -> Result<(), String> {
        let states = std::mem::take(&mut self.chunks[w]);
        if states.is_empty() {
            return Ok(());
        }
        let (tx, rx) = mpsc::channel();
        let mut cmd = Command::UpsertMany {
            states,
            replicate: self.replicate,
            reply: tx,
        };
        loop {
            match self.workers[w].send(cmd) {
                Ok(()) => break,
                Err(back) => {
                    cmd = back;
                    if self.pending.is_empty() {
                        return Err(format!("worker {w} command queue is full"));
                    }
                    self.wait_oldest()?;
                }
            }
        }
        self.pending.push_back(rx);
        Ok(())
    }

    /// Sends what is left and waits for every answer: (inserted or
    /// replaced, refused because a table was full).
    pub fn finish(mut self) -> Result<(usize, usize), String> {
        for w in 0..self.workers.len() {
            self.send(w)?;
        }
        while !self.pending.is_empty() {
            self.wait_oldest()?;
        }
        Ok((self.done, self.refused))
    }
}

/// Imports `states` through an [`Importer`]. Returns (inserted or replaced,
/// refused because a table was full).
pub fn import_into(
    workers: &[Arc<WorkerShared>],
    states: Vec<FlowState>,
    replicate: bool,
) -> Result<(usize, usize), String> {
    let mut imp = Importer::new(workers, replicate);
    for st in states {
        imp.push(st)?;
    }
    imp.finish()
}

impl Appliance {
    /// Loads the rules, opens every port for every worker and starts the
    /// workers. On any error nothing keeps running.
    pub fn start(config: Config, open: &mut PortOpener<'_>) -> anyhow::Result<Appliance> {
        let loaded = load_rules(&config)?;
        let generation = 1;
        let rules = Arc::new(ArcSwap::from_pointee(ActiveRules {
            generation,
            classifier: loaded.set.compile(),
        }));
        let logs = Arc::new(ArrayQueue::new(LOG_RING));
        let workers_n = config.dataplane.workers.max(1);
        let epoch = Instant::now();
        let shard = shard_config(&config);
        // Under keepalived a node starts as a backup until told otherwise.
        let role = match config.failover.mode {
            FailoverMode::None => Role::Active,
            FailoverMode::Keepalived | FailoverMode::Election => Role::Backup,
        };
        let l3 = crate::l3::build(&config)?;
        let mut workers = Vec::with_capacity(workers_n);
        for w in 0..workers_n {
            let mut ports = Vec::with_capacity(config.ports.len());
            for (i, p) in config.ports.iter().enumerate() {
                let port = open(i, p, w, workers_n)?;
                let peer = match l3 {
                    Some(_) => i, // routed: no bridge peer
                    None => config
                        .bridge_peer(&p.name)
                        .and_then(|peer| config.port_index(peer))
                        .with_context(|| format!("port {} is in no bridge", p.name))?,
                };
                ports.push(WorkerPort {
                    port,
                    index: u16::try_from(i).context("too many ports")?,
                    zone: p.zone,
                    peer,
                });
            }
            let spec = WorkerSpec {
                id: u16::try_from(w).context("too many workers")?,
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
            };
            let active = role == Role::Active;
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
                .context("starting worker thread")?,
            );
        }
        let sync = match &config.sync {
            Some(sc) => Some(crate::replication::spawn(
                sc,
                workers.iter().map(|w| w.shared.clone()).collect(),
            )?),
            None => None,
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
            deltas_seen: 0,
            sync,
            role,
            last_takeover: None,
            election_status: None,
            migrate_request: None,
            migration_note: None,
            l3,
        })
    }

    /// Routed mode's shared L3 state; `None` in transparent mode.
    pub fn l3(&self) -> Option<&Arc<ftfw_dataplane::l3::L3Shared>> {
        self.l3.as_ref()
    }

    /// Starts with system ports (what ftfwd does).
    pub fn start_system(config: Config) -> anyhow::Result<Appliance> {
        #[cfg(feature = "dpdk")]
        crate::dpdk::init(&config)?;
        Appliance::start(config, &mut open_system_port)
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Re-reads the rules named by the configuration and swaps them in
    /// whole; on any error the running set stays and the error is returned.
    pub fn reload_rules(&mut self) -> Result<ReloadResult, String> {
        match load_rules(&self.config) {
            Ok(loaded) => {
                let previous_count = self.loaded.set.len();
                self.generation += 1;
                self.rules.store(Arc::new(ActiveRules {
                    generation: self.generation,
                    classifier: loaded.set.compile(),
                }));
                self.loaded = loaded;
                self.last_reload_error = None;
                // Workers answer commands between iterations and load the
                // rules at the start of each: once they have answered,
                // every frame they take meets the new rules.
                self.refresh_counters();
                tracing::info!(rules = self.loaded.set.len(), source = %self.loaded.source, "rules reloaded");
                Ok(ReloadResult {
                    rules: self.rules_summary(),
                    previous_count,
                })
            }
            Err(e) => {
                let msg = format!("{e:#}");
                tracing::warn!(error = %msg, "rules reload refused; the running rules stay");
                self.last_reload_error = Some(msg.clone());
                Err(msg)
            }
        }
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
        n += self.publish_neighbors();
        if self.sync.is_some() {
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
        self.deltas_seen + self.sync.as_ref().map_or(0, |s| s.deltas_consumed())
    }

    /// The sync thread, when replication is configured.
    pub fn sync(&self) -> Option<&crate::replication::SyncHandle> {
        self.sync.as_ref()
    }

    fn sync_or_err(&self) -> Result<&crate::replication::SyncHandle, String> {
        self.sync
            .as_ref()
            .ok_or_else(|| "replication is not configured (no [sync] section)".to_string())
    }

    /// Imports the external cache into the shards, each flow to the worker
    /// that owns its hash, without replicating it back.
    pub fn commit(&self) -> Result<CommitResult, String> {
        let t0 = Instant::now();
        let (done, refused) = self.sync_or_err()?.commit(false)?;
        let millis = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(
            committed = done,
            refused,
            millis,
            "external cache committed"
        );
        Ok(CommitResult {
            committed: done as u64,
            refused: refused as u64,
            millis,
        })
    }

    /// The node's role.
    pub fn role(&self) -> Role {
        self.role
    }

    fn set_forwarding(&self, on: bool) {
        for w in &self.workers {
            w.shared.set_forwarding(on);
        }
    }

    /// Takeover, first half: commit the external cache into the shards
    /// (moved, not copied: the flows now live in the shards), *then*
    /// forward. A node that is already active skips the commit. Returns
    /// the flows committed.
    fn commit_and_forward(&mut self, steps: &mut Steps) -> Result<u64, String> {
        let mut committed = 0;
        if self.role == Role::Active {
            steps.step("commit", "skipped: already active");
        } else if let Some(sync) = &self.sync {
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
        self.set_forwarding(true);
        steps.step("forward", "");
        Ok(committed)
    }

    /// Takeover, second half: announce the virtual addresses (gratuitous
    /// ARP, unsolicited NA; nothing in transparent mode).
    fn announce(&mut self, steps: &mut Steps) {
        let note = self.announce_note();
        steps.step("announce", &note);
    }

    /// After a takeover: our whole table to the peer, so that the old
    /// primary, back as a backup, has it.
    fn export_to_peer(&mut self, was_active: bool, steps: &mut Steps) -> Result<(), String> {
        if let (Some(sync), false) = (&self.sync, was_active) {
            sync.export_all()?;
            steps.step("export to peer", "");
        }
        Ok(())
    }

    fn stand_by(&mut self, role: Role, steps: &mut Steps) -> Result<(), String> {
        self.set_forwarding(false);
        steps.step("stop forwarding", "");
        if let (Some(sync), Role::Backup) = (&self.sync, role) {
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
        if role == Role::Active && self.role != Role::Active {
            self.last_takeover = Some(change.clone());
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
    pub fn notify(&mut self, state: NotifyState) -> Result<RoleChange, String> {
        let mut steps = Steps::new();
        let was_active = self.role == Role::Active;
        let (role, committed) = match state {
            NotifyState::Master => {
                let c = self.commit_and_forward(&mut steps)?;
                self.announce(&mut steps);
                self.export_to_peer(was_active, &mut steps)?;
                (Role::Active, c)
            }
            NotifyState::Backup => {
                self.stand_by(Role::Backup, &mut steps)?;
                (Role::Backup, 0)
            }
            NotifyState::Fault => {
                self.stand_by(Role::Fault, &mut steps)?;
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
    /// with the appliance's built-in implementation; true is success.
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
        p: crate::election::Procedure,
        downlinks: &[String],
        uplinks: &[String],
    ) -> bool {
        use crate::election::Procedure as P;
        match p {
            P::DownlinkCheck => self.ports_link_up(downlinks),
            P::UplinkCheck => self.ports_link_up(uplinks),
            P::LocalSvcCheck => self.workers.iter().all(|w| w.is_running()),
            P::RemoteSvcCheck | P::ActivateUplink | P::DeactivateUplink => true,
            P::ReleaseDownstream | P::ReleaseUpstream => true,
            P::ActivateService => {
                let mut steps = Steps::new();
                let was_active = self.role == Role::Active;
                let r = self.commit_and_forward(&mut steps).and_then(|c| {
                    self.export_to_peer(was_active, &mut steps)?;
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
                let mut steps = Steps::new();
                self.announce(&mut steps);
                if let Some(t) = &mut self.last_takeover {
                    t.total_us += steps.elapsed_us();
                    t.steps.extend(steps.steps);
                }
                true
            }
            P::DeactivateService => {
                let mut steps = Steps::new();
                match self.stand_by(Role::Backup, &mut steps) {
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

    /// Whether every named port (every port when `names` is empty) has its
    /// link up. In-process (`mem`) ports are always up; AF_PACKET ports
    /// read the interface's operational state.
    pub fn ports_link_up(&self, names: &[String]) -> bool {
        self.config
            .ports
            .iter()
            .filter(|p| names.is_empty() || names.contains(&p.name))
            .all(|p| match p.backend.interface() {
                None => true,
                Some(i) => std::fs::read_to_string(format!("/sys/class/net/{i}/operstate"))
                    .map(|s| matches!(s.trim(), "up" | "unknown"))
                    .unwrap_or(false),
            })
    }

    /// A `ftfwctl migrate` for the election driver to carry out.
    pub fn take_migrate_request(&mut self) -> Option<u32> {
        self.migrate_request.take()
    }

    /// Sets what `ftfwctl status` shows of the last migration.
    pub fn set_migration_note(&mut self, note: String) {
        tracing::info!("migration {note}");
        self.migration_note = Some(note);
    }

    /// Sets what `ftfwctl status` shows of the election.
    pub fn set_election_status(&mut self, status: Option<serde_json::Value>) {
        self.election_status = status;
    }

    /// Stops every worker and the sync thread, and waits for them.
    pub fn stop(&mut self) {
        if let Some(s) = &mut self.sync {
            s.stop();
        }
        for w in &mut self.workers {
            w.stop();
        }
    }

    fn rules_summary(&self) -> RulesSummary {
        RulesSummary {
            count: self.loaded.set.len(),
            policy: self.loaded.set.policy().name().to_string(),
            source: self.loaded.source.clone(),
            loaded_at: self.loaded.loaded_at,
        }
    }

    fn worker_for(&self, st: &FlowState) -> usize {
        owner_worker(&st.key, self.workers.len())
    }

    /// The workers' shared halves (command queues, counters, delta rings).
    pub fn worker_shared(&self) -> Vec<Arc<WorkerShared>> {
        self.workers.iter().map(|w| w.shared.clone()).collect()
    }

    /// Imports many flows that came from a peer (what a commit of the
    /// external cache does): each goes to the shard of the worker its hash
    /// picks, and no deltas are emitted for them. Returns (inserted or
    /// replaced, refused because a table was full).
    pub fn import_flows(&self, states: Vec<FlowState>) -> Result<(usize, usize), String> {
        import_into(&self.worker_shared(), states, false)
    }

    /// Like [`Appliance::import_flows`], choosing whether the imported flows
    /// are replicated to the peer (an operator's bulk import is).
    pub fn import_flows_with(
        &self,
        states: Vec<FlowState>,
        replicate: bool,
    ) -> Result<(usize, usize), String> {
        import_into(&self.worker_shared(), states, replicate)
    }

    fn ask<T>(&self, w: usize, make: impl FnOnce(mpsc::Sender<T>) -> Command) -> Result<T, String> {
        let (tx, rx) = mpsc::channel();
        self.workers[w]
            .shared
            .send(make(tx))
            .map_err(|_| format!("worker {w} command queue is full"))?;
        rx.recv_timeout(COMMAND_TIMEOUT)
            .map_err(|_| format!("worker {w} did not answer"))
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
            last_reload_error: self.last_reload_error.clone(),
            role: self.role.as_str().to_string(),
            failover: self.config.failover.mode.as_str().to_string(),
            last_takeover: self.last_takeover.clone(),
            election: self.election_status.clone(),
            migration: self.migration_note.clone(),
        }
    }

    /// Asks every worker to publish its counters now and waits a little for
    /// them (falling back to the last periodic snapshot of a busy worker).
    fn refresh_counters(&self) {
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

    fn rules_info(&self) -> RulesInfo {
        RulesInfo {
            policy: self.loaded.set.policy().name().to_string(),
            source: self.loaded.source.clone(),
            loaded_at: self.loaded.loaded_at,
            rules: self
                .loaded
                .set
                .rules()
                .map(|v| RuleLine {
                    index: v.index as usize,
                    line: v.line,
                    text: v.text.to_string(),
                })
                .collect(),
        }
    }

    fn handle_request(&mut self, req: Request) -> Result<Payload, String> {
        Ok(match req {
            Request::Status => Payload::Status(self.status()),
            Request::Stats => Payload::Stats(self.stats()),
            Request::FlowsList { filter, limit } => {
                let limit = limit.map_or(DEFAULT_LIST_LIMIT, |l| {
                    usize::try_from(l).unwrap_or(usize::MAX)
                });
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
                Payload::Flows(FlowsListing { flows, total })
            }
            Request::FlowsAdd { flow } => {
                let state = FlowState::try_from(flow)?;
                let w = self.worker_for(&state);
                let json = FlowJson::from(&state);
                self.ask(w, |reply| Command::Upsert {
                    state: Box::new(state),
                    reply,
                })??;
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
            Request::ExternalList { filter, limit } => {
                let limit = limit.map_or(DEFAULT_LIST_LIMIT, |l| {
                    usize::try_from(l).unwrap_or(usize::MAX)
                });
                Payload::ExternalFlows(self.sync_or_err()?.external_list(filter, limit)?)
            }
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
                    return Err(
                        "migrate needs the built-in election ([failover] mode = \"election\")"
                            .into(),
                    );
                };
                if !e.peers.iter().any(|p| p.node == to) {
                    return Err(format!("node {to} is not a configured [[failover.peer]]"));
                }
                if self.role != Role::Active {
                    return Err("only the primary can hand its role over".into());
                }
                self.migrate_request = Some(to);
                self.migration_note = Some(format!("to node {to}: requested"));
                Payload::MigrationStarted { to }
            }
            Request::Neighbors => Payload::Neighbors(self.neighbors_info()?),
            Request::Routes => Payload::Routes(self.routes_info()?),
        })
    }
}

impl ConsoleHandler for Appliance {
    fn handle(&mut self, req: Request) -> Response {
        match self.handle_request(req) {
            Ok(p) => Response::Ok(p),
            Err(e) => Response::error(e),
        }
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Validates a configuration file the way ftfwd does before starting
/// (syntax, fields, and the rules it names). Used by `ftfwd --check`.
pub fn check(path: &Path) -> anyhow::Result<Config> {
    let config = crate::config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    load_rules(&config)?;
    if let Some(e) = &config.failover.election {
        // The timer bounds of Roelle 4.3, checked before anything starts.
        crate::failover::election_config(e)
            .validate()
            .map_err(|err| anyhow::anyhow!("{}: [failover] {err}", path.display()))?;
    }
    Ok(config)
}
