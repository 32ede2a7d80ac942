//! The election driver: runs the sans-IO [`Election`] for ftfwd.
//!
//! Layer: control thread. It owns the election's UDP socket (bound to the
//! sync link's address, `[failover] port`, 3781 by default), maps node ids
//! to peer addresses, feeds the machine datagrams, timeouts and the sync
//! layer's progress, and runs the procedures it requests: operator scripts
//! where configured ([`ScriptRunner`]), the appliance's built-ins otherwise
//! ([`Appliance::run_procedure`]). Built-ins run on the control thread;
//! the longest, activate service (commit + forward), is bounded by the
//! external cache size and by `action_timeout_ms`.
//!
//! Freshness and resync: the sync thread reports the last peer sequence
//! number it accepted (unwrapped into a `u64`, growing while one master
//! sends) and whether the answer to our last RESYNC is complete; the
//! driver passes both on. When the machine asks for a resync
//! ([`Event::ResyncNeeded`]) the driver asks the sync peer for one.
//!
//! Invariants: every datagram is authenticated by the machine's codec
//! (failures counted there, never acted on); the driver never blocks on the
//! network; all work per call is bounded (at most [`RECV_BUDGET`] datagrams
//! in, everything the machine queued out).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;

use crate::appliance::Appliance;
use crate::config::Config;
use crate::election::{
    Election, ElectionConfig, Event, NodeId, Procedure, ProcedureRequest, ProcedureResult,
    ProcedureRunner, Script, ScriptRunner,
};

/// Datagrams read per call.
pub const RECV_BUDGET: usize = 64;
/// Longest a planned handover may wait for the peer to acknowledge our
/// table before it is abandoned (we stay primary).
pub const MIGRATE_TIMEOUT: Duration = Duration::from_secs(30);

/// A planned handover (`ftfwctl migrate`) in progress.
#[derive(Clone, Copy, Debug)]
enum Migration {
    /// Our whole table is being sent; waiting for the peer's ACKs.
    Exporting { to: NodeId, started: Instant },
    /// We stepped down (SVC_SHUTDOWN sent); waiting for `to` to serve.
    Switching {
        to: NodeId,
        started: Instant,
        confirmed_ms: u64,
    },
}
/// How often the sync thread is asked for its progress.
const SYNC_POLL: Duration = Duration::from_millis(50);

/// Procedures without an operator script: queued here and run by the
/// driver on the appliance (which the runner cannot own).
#[derive(Default)]
struct Builtins {
    queue: VecDeque<ProcedureRequest>,
}

impl ProcedureRunner for Builtins {
    fn start(&mut self, _now: Instant, request: ProcedureRequest) {
        self.queue.push_back(request);
    }
    fn poll_complete(&mut self, _now: Instant) -> Option<ProcedureResult> {
        None
    }
    fn poll_timeout(&self, _now: Instant) -> Option<Instant> {
        None
    }
}

/// Counters of the driver itself (`ftfwctl status`: `election.driver`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DriverStats {
    /// Datagrams received.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Datagrams the machine rejected (bad tag, replay, malformed).
    pub rejected: u64,
    /// Datagrams from addresses that are no configured peer.
    pub foreign: u64,
    /// Send errors.
    pub send_errors: u64,
    /// Procedures run.
    pub procedures: u64,
    /// Procedures that failed.
    pub procedures_failed: u64,
    /// Key ring file changes taken (`key_file` written as `ID HEX` lines;
    /// not the first reading at start).
    pub key_reloads: u64,
    /// Key ring file changes refused (the keys in use stay).
    pub key_reload_errors: u64,
}

/// The election as ftfwd runs it. See the module documentation.
pub struct ElectionDriver {
    election: Election,
    socket: UdpSocket,
    peers: HashMap<NodeId, SocketAddr>,
    by_addr: HashMap<std::net::IpAddr, NodeId>,
    runner: ScriptRunner<Builtins>,
    downlinks: Vec<String>,
    uplinks: Vec<String>,
    out: Vec<u8>,
    rx: Vec<u8>,
    last_sync_poll: Option<Instant>,
    seq_hi: u64,
    last_seq: Option<u32>,
    reported_synced: bool,
    stats: DriverStats,
    /// The machine's configuration, to start it again after a handover.
    cfg: ElectionConfig,
    migration: Option<Migration>,
    /// Proactive migration (`[failover.health]`).
    health: Option<crate::health::HealthMonitor>,
    /// A `key_file` key ring, watched for rotation, and its keys.
    key_watch: Option<crate::keyring::KeyFileWatch>,
}

impl std::fmt::Debug for ElectionDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElectionDriver")
            .field("node", &self.election.node())
            .field("state", &self.election.state())
            .finish()
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn procedure_named(name: &str) -> Option<Procedure> {
    Procedure::ALL.into_iter().find(|p| p.name() == name)
}

/// Why the election driver could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The configuration has no built-in election.
    #[error("[failover] mode is not \"election\"")]
    NoElection,
    /// The election runs on the sync link, which is not configured.
    #[error("the election needs [sync] (it runs on the sync link)")]
    NoSync,
    /// The election socket could not be bound or set up.
    #[error("election socket {addr}")]
    Socket {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The machine refused its configuration (a bound of Roelle 4.3).
    #[error("{}: {bound}", file.display())]
    Config {
        /// The configuration file.
        file: std::path::PathBuf,
        /// The bound.
        bound: crate::election::BoundError,
    },
}

impl ElectionDriver {
    /// Opens the election socket on the sync link's address. Errors name
    /// the address or the configuration bound that failed.
    pub fn new(config: &Config, now: Instant) -> Result<ElectionDriver, DriverError> {
        let e = config
            .failover
            .election
            .as_ref()
            .ok_or(DriverError::NoElection)?;
        let sync = config.sync.as_ref().ok_or(DriverError::NoSync)?;
        let bind = SocketAddr::new(sync.local, e.port);
        let socket = std::net::UdpSocket::bind(bind)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|source| DriverError::Socket { addr: bind, source })?;
        let cfg = e.election_config();
        let election = Election::new(cfg.clone(), now).map_err(|bound| DriverError::Config {
            file: config.file.clone(),
            bound,
        })?;
        let mut scripts = HashMap::new();
        for (name, path) in &e.scripts {
            if let Some(p) = procedure_named(name) {
                scripts.insert(p, Script::new(path.clone()));
            }
        }
        let mut driver = ElectionDriver {
            election,
            socket: UdpSocket::from_std(socket),
            peers: e
                .peers
                .iter()
                .map(|p| (NodeId(p.node), SocketAddr::new(p.address, e.port)))
                .collect(),
            by_addr: e
                .peers
                .iter()
                .map(|p| (p.address, NodeId(p.node)))
                .collect(),
            runner: ScriptRunner::new(e.node, scripts, Builtins::default()),
            downlinks: e.downlinks.clone(),
            uplinks: e.uplinks.clone(),
            out: Vec::with_capacity(512),
            rx: vec![0u8; 2048],
            last_sync_poll: None,
            seq_hi: 0,
            last_seq: None,
            reported_synced: false,
            stats: DriverStats::default(),
            cfg,
            migration: None,
            health: e.health.clone().map(crate::health::HealthMonitor::new),
            key_watch: e
                .key_ring_file
                .clone()
                .map(|p| crate::keyring::KeyFileWatch::new(p, now)),
        };
        // The first reading takes the whole ring (the configuration gave
        // the newest key only); the watch does not count it as a reload.
        driver.reload_keys(now);
        Ok(driver)
    }

    /// Takes the key ring file again when it changed (at most once a
    /// second); a file that does not parse is refused, counted and logged,
    /// and the keys in use stay.
    fn reload_keys(&mut self, now: Instant) {
        let election = &mut self.election;
        if let Some(w) = self.key_watch.as_mut() {
            w.reload(now, "election", |ring| election.set_keys(ring));
            self.stats.key_reloads = w.reloads();
            self.stats.key_reload_errors = w.errors();
        }
    }

    /// The status `ftfwctl status` shows: the machine's, the health
    /// monitor's reading, the driver's counters (`driver`) and the key
    /// ring file (`keys`, with a `key_file` ring).
    fn status_json(&self, now: Instant) -> Option<serde_json::Value> {
        let mut status = serde_json::to_value(self.election.status(now)).ok()?;
        if let serde_json::Value::Object(m) = &mut status {
            if let Some(h) = &self.health {
                m.insert("health".into(), h.status());
            }
            m.insert("driver".into(), serde_json::to_value(self.stats).ok()?);
            if let Some(w) = &self.key_watch {
                let keys = crate::keyring::status_json(w);
                m.insert("keys".into(), keys);
            }
        }
        Some(status)
    }

    /// The socket, to register with a mio poll (readable).
    pub fn socket(&mut self) -> &mut UdpSocket {
        &mut self.socket
    }

    /// The machine (status, role, stats).
    pub fn election(&self) -> &Election {
        &self.election
    }

    /// The driver's counters.
    pub fn stats(&self) -> DriverStats {
        self.stats
    }

    /// When [`ElectionDriver::poll`] must run again at the latest.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        [
            self.election.poll_timeout(),
            self.runner.poll_timeout(now),
            Some(now + SYNC_POLL),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Does everything due: datagrams in, the sync layer's progress,
    /// timers, procedures, datagrams out; and publishes the status for
    /// `ftfwctl status`. Call when the socket is readable and at
    /// [`ElectionDriver::next_wake`].
    pub fn poll(&mut self, now: Instant, app: &mut Appliance) {
        self.reload_keys(now);
        self.receive(now);
        self.sync_progress(now, app);
        self.election.handle_timeout(now);
        self.run_events(now, app);
        self.check_health(now, app);
        self.migrate(now, app);
        self.transmit(now);
        app.set_election_status(self.status_json(now));
    }

    /// The first live backup in rank order: the one that takes over when
    /// we step down.
    fn successor(&self, now: Instant) -> Option<NodeId> {
        self.election
            .status(now)
            .peers
            .iter()
            .find(|p| !p.dead && !p.master)
            .map(|p| p.node)
    }

    /// Proactive migration (hFT-FW V): when the hardware reports errors,
    /// a primary hands its role to the first live, synced backup with the
    /// planned handover, before it fails. Fires once per run.
    fn check_health(&mut self, now: Instant, app: &mut Appliance) {
        let Some(trigger) = self.health.as_mut().and_then(|h| h.poll(now)) else {
            return;
        };
        tracing::warn!(%trigger, "hardware health: handing the primary role over");
        if !self.election.is_primary() {
            app.set_migration_note(format!(
                "health: {trigger}; not the primary, nothing to hand over"
            ));
            return;
        }
        if self.migration.is_some() {
            return;
        }
        let successor = self.successor(now);
        match successor {
            Some(to) => {
                app.set_migration_note(format!("health: {trigger}; migrating to node {}", to.0));
                app.request_migrate(to.0);
            }
            None => app.set_migration_note(format!(
                "health: {trigger}; no live backup to migrate to, still primary"
            )),
        }
    }

    /// Planned handover, driven from [`ElectionDriver::poll`]:
    /// 1. check that we are the primary and `to` is the first live backup
    ///    in the status table's rank order (so it is the one that takes
    ///    over when we step down) and holds a full copy;
    /// 2. export our whole table to the peer and wait until it has
    ///    acknowledged every message up to the end of that export;
    /// 3. step down (SVC_SHUTDOWN, release, deactivate) and start a fresh
    ///    election machine, which rejoins as a backup of `to`.
    ///
    /// Flows that change between the confirmation and the switch are
    /// replicated as usual; the window is a few milliseconds.
    fn migrate(&mut self, now: Instant, app: &mut Appliance) {
        if let Some(to) = app.take_migrate_request() {
            let to = NodeId(to);
            // The first live backup in rank order is the one that takes
            // over when we step down.
            let successor = self.successor(now);
            let peer_synced = self
                .election
                .table()
                .get(to)
                .is_some_and(|e| e.freshness.synced && !e.dead);
            if !self.election.is_primary() {
                app.set_migration_note(format!(
                    "to node {}: failed: this node is not the primary",
                    to.0
                ));
            } else if successor != Some(to) || !peer_synced {
                app.set_migration_note(format!(
                    "to node {}: failed: it is not the first live backup with a full copy (first backup: {}); see the election peers in status",
                    to.0,
                    successor.map_or_else(|| "none".to_string(), |n| n.0.to_string()),
                ));
            } else if let Some(Err(e)) = app.sync().map(|h| h.export_for_handover()) {
                app.set_migration_note(format!("to node {}: failed: {e}", to.0));
            } else {
                app.set_migration_note(format!("to node {}: exporting our table", to.0));
                self.migration = Some(Migration::Exporting { to, started: now });
            }
        }
        match self.migration {
            None => {}
            Some(Migration::Exporting { to, started }) => {
                let acked = app
                    .sync()
                    .map(|h| h.handover_acked())
                    .and_then(Result::ok)
                    .flatten();
                if acked == Some(true) {
                    let confirmed_ms = ms(now.saturating_duration_since(started));
                    app.set_migration_note(format!(
                        "to node {}: table acknowledged after {confirmed_ms} ms; stepping down",
                        to.0
                    ));
                    if let Err(e) = self.election.handle_shutdown(now) {
                        tracing::warn!(error = %e, "migration: step down");
                    }
                    self.run_events(now, app);
                    self.transmit(now);
                    self.migration = Some(Migration::Switching {
                        to,
                        started,
                        confirmed_ms,
                    });
                } else if now.saturating_duration_since(started) > MIGRATE_TIMEOUT {
                    app.set_migration_note(format!(
                        "to node {}: failed: the peer did not acknowledge our table within {} s; still primary",
                        to.0,
                        MIGRATE_TIMEOUT.as_secs()
                    ));
                    self.migration = None;
                }
            }
            Some(Migration::Switching {
                to,
                started,
                confirmed_ms,
            }) => {
                // Stepped down. Rejoin once `to` has had the time a takeover
                // takes (a fresh machine that starts earlier would find no
                // primary and, with its higher priority, take the role
                // back).
                // SVC_SHUTDOWN starts its takeover at once: link checks,
                // the deny wait, then the actions (a commit of a table it
                // already holds). Four check periods cover that with room.
                let takeover = self.cfg.deny_timeout * 2
                    + self.cfg.reply_timeout * 2
                    + self.cfg.check_interval * 4;
                let settled = now.saturating_duration_since(started)
                    >= Duration::from_millis(confirmed_ms) + takeover;
                if self.election.state() == crate::election::State::Final && settled {
                    // A fresh machine, its message counter above the old one's.
                    let mut cfg = self.cfg.clone();
                    cfg.initial_counter = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
                    match Election::new(cfg, now) {
                        Ok(e) => {
                            self.election = e;
                            if let Some(ring) = self.key_watch.as_ref().and_then(|w| w.ring()) {
                                // Checked when it was taken.
                                let _ = self.election.set_keys(ring);
                            }
                            self.reported_synced = false;
                            app.set_migration_note(format!(
                                "to node {}: done in {} ms (table acknowledged after {confirmed_ms} ms); this node rejoins as a backup",
                                to.0,
                                ms(now.saturating_duration_since(started))
                            ));
                        }
                        Err(e) => app.set_migration_note(format!(
                            "to node {}: stepped down but cannot restart the election: {e}",
                            to.0
                        )),
                    }
                    self.migration = None;
                }
            }
        }
    }

    /// A clean stop: tells the others (SVC_SHUTDOWN from a master) and
    /// releases what the machine asks to release.
    pub fn shutdown(&mut self, now: Instant, app: &mut Appliance) {
        if let Err(e) = self.election.handle_shutdown(now) {
            tracing::debug!(error = %e, "election shutdown");
        }
        self.run_events(now, app);
        self.transmit(now);
    }

    fn receive(&mut self, now: Instant) {
        for _ in 0..RECV_BUDGET {
            match self.socket.recv_from(&mut self.rx) {
                Ok((n, from)) => {
                    self.stats.datagrams_in += 1;
                    if !self.by_addr.contains_key(&from.ip()) {
                        self.stats.foreign += 1;
                        continue;
                    }
                    if self.election.handle_datagram(now, &self.rx[..n]).is_err() {
                        self.stats.rejected += 1;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
    }

    fn sync_progress(&mut self, now: Instant, app: &mut Appliance) {
        if self
            .last_sync_poll
            .is_some_and(|t| now.saturating_duration_since(t) < SYNC_POLL)
        {
            return;
        }
        self.last_sync_poll = Some(now);
        let Some(Ok(s)) = app.sync().map(|h| h.status()) else {
            return;
        };
        if let Some(seq) = s.seq_in {
            // Unwrap the 32-bit sequence so freshness only grows.
            if let Some(prev) = self.last_seq {
                if seq < prev && prev - seq > u32::MAX / 2 {
                    self.seq_hi += 1 << 32;
                }
            }
            self.last_seq = Some(seq);
            self.election
                .handle_sync_progress(now, self.seq_hi | u64::from(seq));
        }
        if s.resync_complete && !self.reported_synced {
            self.reported_synced = true;
            self.election.handle_resync_complete(now);
        } else if !s.resync_complete {
            self.reported_synced = false;
        }
    }

    fn run_events(&mut self, now: Instant, app: &mut Appliance) {
        loop {
            let mut busy = false;
            while let Some(ev) = self.election.poll_event() {
                busy = true;
                match ev {
                    Event::Run(req) => self.runner.start(now, req),
                    Event::ResyncNeeded { master, .. } => {
                        tracing::info!(master = master.0, "election: asking for a resync");
                        self.reported_synced = false;
                        if let Some(Err(e)) = app.sync().map(|h| h.resync()) {
                            tracing::warn!(error = %e, "resync request failed");
                        }
                    }
                    other => tracing::info!(event = ?other, "election"),
                }
            }
            // Built-ins run here, on the appliance.
            while let Some(req) = self.runner_builtins().pop_front() {
                busy = true;
                self.stats.procedures += 1;
                let ok = if req.procedure == Procedure::RemoteSvcCheck {
                    self.service_present(now)
                } else {
                    app.run_procedure(req.procedure, &self.downlinks, &self.uplinks)
                };
                if !ok {
                    self.stats.procedures_failed += 1;
                    if req.procedure.is_check() {
                        // A failed check is an answer ("no service here"),
                        // not an error.
                        tracing::debug!(procedure = req.procedure.name(), "check failed");
                    } else {
                        tracing::warn!(procedure = req.procedure.name(), "procedure failed");
                    }
                }
                let _ = self.election.handle_procedure_result(now, req.ticket, ok);
            }
            while let Some(r) = self.runner.poll_complete(now) {
                busy = true;
                self.stats.procedures += 1;
                if !r.ok {
                    self.stats.procedures_failed += 1;
                }
                let _ = self.election.handle_procedure_result(now, r.ticket, r.ok);
            }
            if !busy {
                break;
            }
        }
    }

    /// Roelle's remote service check, "is the service there as a client
    /// sees it": another node reported itself primary (serving) in an
    /// authenticated message within the window in which a master would
    /// mark a silent host dead. At a cold start nobody has, so every node
    /// decides from the static table (highest priority first).
    fn service_present(&self, now: Instant) -> bool {
        let window = self.election.config().reqcheck_timeout;
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        self.election.status(now).peers.iter().any(|p| {
            p.role == crate::election::Role::Primary
                && !p.dead
                && p.last_seen_ms_ago.is_some_and(|ms| ms <= window_ms)
        })
    }

    fn runner_builtins(&mut self) -> &mut VecDeque<ProcedureRequest> {
        &mut self.runner.fallback_mut().queue
    }

    fn transmit(&mut self, now: Instant) {
        while let Some(t) = self.election.poll_transmit(now, &mut self.out) {
            let Some(addr) = self.peers.get(&t.dest) else {
                continue;
            };
            match self.socket.send_to(&self.out, *addr) {
                Ok(_) => self.stats.datagrams_out += 1,
                Err(_) => self.stats.send_errors += 1,
            }
        }
    }
}
