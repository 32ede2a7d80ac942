//! The cluster driver: runs the sans-IO [`Coordinator`] for ftfwd.
//!
//! Layer: control thread, beside (instead of) the election driver. It owns
//! the coordination socket (`sync.local`, `[cluster] port`), maps member
//! ids to addresses, feeds the coordinator datagrams, timeouts, operator
//! changes (`ftfwctl cluster drain|undrain|rebalance`) and this node's
//! readiness (its startup resync from every live peer is complete), and
//! carries out what the coordinator asks, in the order the pair already
//! uses for a takeover:
//!
//! - `Commit`: the replicated flows of the gained buckets go into the
//!   shards (from the previous owner's cache; `SyncHandle::commit_buckets`,
//!   which then exports them to the peers so that their caches know the
//!   new owner holds them);
//! - `Forward`: every worker's bucket ownership is set (the new buckets
//!   are forwarded from the next burst on);
//! - `Flush`: a planned move's old owner sends its flows of the moved
//!   buckets to the new owner and waits for its FT-FW acknowledgement
//!   (polled here, bounded by [`FLUSH_TIMEOUT`]) before it releases them;
//! - `Evict` and `Settled`: copies that are no longer anyone's are dropped.
//!
//! With `[cluster] uplinks_down_when_idle`, the actions pass through the
//! uplink gate first (`cluster_uplinks.rs`): while this member owns no
//! buckets its uplinks are down; a `Forward` that starts forwarding waits
//! until the operator's scripts brought them up (activate, check), and
//! they go down after a `Forward` of nothing.
//!
//! Invariants: every datagram is authenticated by the coordinator's codec
//! (failures counted there, never acted on); only datagrams from member
//! addresses reach it (others are counted as foreign); the driver never
//! blocks on the network; work per call is bounded.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ftfw_dataplane::buckets::BucketSet;
use mio::net::UdpSocket;

use crate::appliance::Appliance;
use crate::cluster::{Action, Coordinator, CoordinatorConfig};
use crate::cluster_uplinks::DriverUplinks;
use crate::config::{ClusterMode, Config, Replicate};
use crate::console::proto::ClusterChange;
use crate::replication::ReplicaMap;

/// Datagrams read per call.
pub const RECV_BUDGET: usize = 64;
/// Longest a planned move waits for the new owner to acknowledge our
/// flows of the moved buckets before the coordinator is told it failed.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the sync thread is asked whether the startup resync is done.
const READY_POLL: Duration = Duration::from_millis(20);

/// Counters of the driver itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ClusterDriverStats {
    /// Datagrams received from members.
    pub datagrams_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
    /// Datagrams from addresses that are no member.
    pub foreign: u64,
    /// Send errors.
    pub send_errors: u64,
    /// Commits of gained buckets.
    pub commits: u64,
    /// Flows committed by them.
    pub committed_flows: u64,
    /// Flushes of moved buckets to their new owner.
    pub flushes: u64,
    /// Flushes that timed out.
    pub flush_timeouts: u64,
    /// Flows evicted after a move settled.
    pub evicted_flows: u64,
    /// Stale cached flows pruned.
    pub pruned_flows: u64,
    /// Requests to the sync thread that failed.
    pub sync_errors: u64,
    /// Routed cluster: gratuitous ARPs / unsolicited NAs sent for the
    /// virtual addresses (at the shared MAC) when this node first owned
    /// buckets.
    pub announced: u64,
    /// Key ring file changes taken (`key_file` written as `ID HEX` lines;
    /// not the first reading at start).
    pub key_reloads: u64,
    /// Key ring file changes refused (the keys in use stay).
    pub key_reload_errors: u64,
}

/// Why the cluster driver could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterDriverError {
    /// The configuration has no `[cluster]` (or no `[sync]`).
    #[error("no [cluster] section")]
    NoCluster,
    /// The coordination socket could not be bound.
    #[error("binding the cluster socket {addr}")]
    Socket {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The coordinator refused its configuration.
    #[error("cluster coordinator: {0}")]
    Coordinator(String),
}

/// A flush under way.
struct Flush {
    sync_token: u64,
    started: Instant,
}

/// The coordinator as ftfwd runs it. See the module documentation.
pub struct ClusterDriver {
    coord: Coordinator,
    socket: UdpSocket,
    peers: HashMap<u32, SocketAddr>,
    members: Vec<u32>,
    /// `[cluster] replicate = "backups"`: the replica map follows the map.
    replicate_backups: bool,
    /// The map version the replica map was last built from.
    replicas_version: u64,
    /// Per peer: the buckets we forwarded that it backed up at that version
    /// (it holds our flows of them).
    backed_up: HashMap<u32, BucketSet>,
    by_addr: HashMap<IpAddr, u32>,
    out: Vec<u8>,
    rx: Vec<u8>,
    flushes: HashMap<u64, Flush>,
    ready: bool,
    last_ready_poll: Option<Instant>,
    started: Instant,
    startup_grace: Duration,
    stats: ClusterDriverStats,
    /// A `key_file` key ring, watched for rotation, and its keys.
    key_watch: Option<crate::keyring::KeyFileWatch>,
    /// `uplinks_down_when_idle`: the uplink gate and its scripts.
    uplinks: Option<DriverUplinks>,
}

impl std::fmt::Debug for ClusterDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterDriver")
            .field("peers", &self.peers.len())
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

impl ClusterDriver {
    /// Binds the coordination socket on the sync link's address.
    pub fn new(config: &Config, now: Instant) -> Result<ClusterDriver, ClusterDriverError> {
        let c = config
            .cluster
            .as_ref()
            .ok_or(ClusterDriverError::NoCluster)?;
        let sync = config.sync.as_ref().ok_or(ClusterDriverError::NoCluster)?;
        let bind = SocketAddr::new(sync.local, c.port);
        let socket = std::net::UdpSocket::bind(bind)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|source| ClusterDriverError::Socket { addr: bind, source })?;
        let cfg = CoordinatorConfig {
            node: c.node,
            nodes: c.nodes.iter().map(|n| n.id).collect(),
            buckets: c.buckets,
            backups: c.backups,
            heartbeat: c.heartbeat,
            dead_after: c.dead_after,
            dead_after_max: c.dead_after_max,
            dead_after_relax: c.dead_after_relax,
            auto_rebalance_on_join: c.auto_rebalance,
            key: c.key.clone(),
            primary_backup: c.mode == ClusterMode::PrimaryBackup,
            // Larger on every start: peers tell a restarted node (which
            // starts empty) from its previous life; also the base of the
            // replay counter.
            incarnation: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        };
        let coord = Coordinator::new(cfg, now)
            .map_err(|e| ClusterDriverError::Coordinator(e.to_string()))?;
        let mut driver = ClusterDriver {
            coord,
            socket: UdpSocket::from_std(socket),
            peers: c
                .peers()
                .map(|n| (n.id, SocketAddr::new(n.address, c.port)))
                .collect(),
            members: c.nodes.iter().map(|n| n.id).collect(),
            replicate_backups: c.replicate == Replicate::Backups,
            replicas_version: 0,
            backed_up: HashMap::new(),
            by_addr: c.peers().map(|n| (n.address, n.id)).collect(),
            out: Vec::with_capacity(16 * 1024),
            rx: vec![0u8; 65536],
            flushes: HashMap::new(),
            ready: false,
            last_ready_poll: None,
            started: now,
            // Time for the peers' HELLOs and RESYNC answers to start: a
            // node with no live peer after this is ready on its own.
            startup_grace: (sync.alive_interval * 3).max(c.dead_after),
            stats: ClusterDriverStats::default(),
            key_watch: c
                .key_ring_file
                .clone()
                .map(|p| crate::keyring::KeyFileWatch::new(p, now)),
            uplinks: c
                .uplinks
                .as_ref()
                .map(|u| DriverUplinks::new(c.node, u, config, now)),
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
        let coord = &mut self.coord;
        if let Some(w) = self.key_watch.as_mut() {
            w.reload(now, "cluster", |ring| coord.set_keys(ring));
            self.stats.key_reloads = w.reloads();
            self.stats.key_reload_errors = w.errors();
        }
    }

    /// The socket, to register with a mio poll (readable).
    pub fn socket(&mut self) -> &mut UdpSocket {
        &mut self.socket
    }

    /// The coordinator (status, map).
    pub fn coordinator(&self) -> &Coordinator {
        &self.coord
    }

    /// The driver's counters.
    pub fn stats(&self) -> ClusterDriverStats {
        self.stats
    }

    /// When [`ClusterDriver::poll`] must run again at the latest.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        let busy = !self.ready || !self.flushes.is_empty();
        [
            self.coord.poll_timeout(),
            busy.then_some(now + READY_POLL),
            self.uplinks.as_ref().and_then(|u| u.next_wake(now)),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Does everything due: datagrams in, operator changes, readiness,
    /// timers, actions, flush progress, datagrams out; and publishes the
    /// status for `ftfwctl cluster status`.
    pub fn poll(&mut self, now: Instant, app: &mut Appliance) {
        self.reload_keys(now);
        self.receive(now);
        while let Some(change) = app.take_cluster_request() {
            let r = match change {
                ClusterChange::Drain { node } => self.coord.drain(now, node),
                ClusterChange::Undrain { node } => self.coord.undrain(now, node),
                ClusterChange::Rebalance => self.coord.rebalance(now),
            };
            match r {
                Ok(()) => tracing::info!(change = %change.describe(), "cluster change accepted"),
                Err(e) => {
                    tracing::warn!(change = %change.describe(), error = %e, "cluster change refused")
                }
            }
        }
        self.check_ready(now, app);
        self.report_load(app);
        self.coord.handle_timeout(now);
        self.poll_uplinks(now);
        self.run_actions(now, app);
        self.check_flushes(now, app);
        // Completed flushes may have produced messages and actions.
        self.run_actions(now, app);
        self.follow_replicas(app);
        self.transmit(now);
        app.set_cluster_status(self.status_json(now));
    }

    /// Heartbeats carry our flow count (the members' load).
    fn report_load(&mut self, app: &Appliance) {
        let flows = app
            .worker_shared()
            .iter()
            .map(|w| w.counters.load().flows)
            .sum();
        self.coord.set_flows(flows);
    }

    /// With `replicate = "backups"`, each bucket's changes go to its
    /// backups only (and to the owner, should we not be it): rebuilt when
    /// the map changes. A node that became a backup of a bucket we forward
    /// gets our flows of it at once (a bulk export): it would otherwise
    /// learn only of their later changes, and a long quiet connection would
    /// be unknown to it when it takes the bucket over.
    fn follow_replicas(&mut self, app: &Appliance) {
        if !self.replicate_backups {
            return;
        }
        let Some(m) = self.coord.map() else { return };
        if m.version() == self.replicas_version {
            return;
        }
        let me = self.coord.node();
        let forwarding = self.coord.forwarding();
        for &n in self.members.iter().filter(|&&n| n != me) {
            let gained: Vec<u32> = forwarding
                .iter()
                .filter(|&b| {
                    m.backups_of(b).contains(&n)
                        && !self.backed_up.get(&n).is_some_and(|s| s.contains(b))
                })
                .collect();
            if !gained.is_empty() {
                let set = BucketSet::from_iter_in(m.buckets(), gained);
                match app.sync().map(|s| s.flush_buckets(n, &set)) {
                    Some(Ok(_)) => {
                        tracing::info!(
                            node = n,
                            buckets = set.count(),
                            "cluster: our flows of the buckets it now backs up sent to it"
                        );
                    }
                    _ => self.stats.sync_errors += 1,
                }
            }
            let now_backed: BucketSet = BucketSet::from_iter_in(
                m.buckets(),
                forwarding.iter().filter(|&b| m.backups_of(b).contains(&n)),
            );
            self.backed_up.insert(n, now_backed);
        }
        let targets = (0..m.buckets())
            .map(|b| {
                let mut t: Vec<u32> = m
                    .backups_of(b)
                    .iter()
                    .copied()
                    .filter(|&n| n != me)
                    .collect();
                if let Some(o) = m.owner_of(b).filter(|&o| o != me) {
                    t.push(o);
                }
                t
            })
            .collect();
        if let (Some(sync), Some(map)) = (app.sync(), ReplicaMap::new(targets)) {
            if sync.set_replica_map(Some(std::sync::Arc::new(map))).is_ok() {
                self.replicas_version = m.version();
            } else {
                self.stats.sync_errors += 1;
            }
        }
    }

    fn status_json(&self, now: Instant) -> serde_json::Value {
        let mut v = serde_json::to_value(self.coord.status(now)).unwrap_or_default();
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("ready".into(), self.ready.into());
            m.insert(
                "driver".into(),
                serde_json::to_value(self.stats).unwrap_or_default(),
            );
            if let Some(w) = &self.key_watch {
                let keys = crate::keyring::status_json(w);
                m.insert("keys".into(), keys);
            }
            if let Some(u) = &self.uplinks {
                m.insert("uplinks".into(), u.status_json());
            }
        }
        v
    }

    /// Finished uplink scripts and retries into the gate; whether the map
    /// held gives this member buckets (their uplinks go up before the
    /// commit and forward that follow).
    fn poll_uplinks(&mut self, now: Instant) {
        let Some(u) = self.uplinks.as_mut() else {
            return;
        };
        u.poll(now);
        let coord = &self.coord;
        let version = coord.map_version();
        u.follow_map(now, version, || {
            coord
                .map()
                .is_some_and(|m| !m.owned_by(coord.node()).is_empty())
        });
    }

    fn receive(&mut self, now: Instant) {
        for _ in 0..RECV_BUDGET {
            match self.socket.recv_from(&mut self.rx) {
                Ok((len, from)) => {
                    if !self.by_addr.contains_key(&from.ip()) {
                        self.stats.foreign += 1;
                        continue;
                    }
                    self.stats.datagrams_in += 1;
                    // Rejections are counted by the coordinator's codec.
                    self.coord.handle_datagram(now, &self.rx[..len]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "cluster socket receive error");
                    break;
                }
            }
        }
    }

    /// Ready = the startup resync from every live peer is complete (or no
    /// peer answered within the grace time): only then may this node own
    /// buckets, so it never forwards a bucket whose flows it lacks.
    fn check_ready(&mut self, now: Instant, app: &Appliance) {
        if self.ready
            || self
                .last_ready_poll
                .is_some_and(|t| now.saturating_duration_since(t) < READY_POLL)
        {
            return;
        }
        self.last_ready_poll = Some(now);
        let Some(sync) = app.sync() else { return };
        let peers = match sync.peers_status() {
            Ok(p) => p,
            Err(_) => {
                self.stats.sync_errors += 1;
                return;
            }
        };
        let up: Vec<_> = peers.iter().filter(|p| p.state == "up").collect();
        let grace_over = now.saturating_duration_since(self.started) >= self.startup_grace;
        let synced = !up.is_empty() && up.iter().all(|p| p.resync_complete);
        if synced || (up.is_empty() && grace_over) {
            self.ready = true;
            tracing::info!(peers_up = up.len(), "cluster: ready to own buckets");
            self.coord.handle_ready(now);
        }
    }

    /// The coordinator's actions, through the uplink gate when there is
    /// one (it may hold a `Forward` until the uplinks are up), until none
    /// is left (a commit done here yields the forward that follows it).
    fn run_actions(&mut self, now: Instant, app: &mut Appliance) {
        loop {
            let mut ready: Vec<Action> = Vec::new();
            while let Some(a) = self.coord.poll_action() {
                match self.uplinks.as_mut() {
                    Some(u) => u.push(now, a),
                    None => ready.push(a),
                }
            }
            if let Some(u) = self.uplinks.as_mut() {
                ready.extend(u.take_actions(now));
            }
            if ready.is_empty() {
                return;
            }
            for a in ready {
                self.run_action(now, app, a);
            }
        }
    }

    fn run_action(&mut self, now: Instant, app: &mut Appliance, a: Action) {
        {
            match a {
                Action::Forward(set) => {
                    tracing::info!(buckets = set.count(), "cluster: forwarding");
                    app.set_owned_buckets(&set);
                    // Routed: tell the hosts the virtual addresses are at
                    // the shared MAC, once, when this node first owns
                    // buckets (every member announces the same).
                    if self.stats.announced == 0 && set.count() > 0 && app.l3().is_some() {
                        match app.announce_virtual_addresses() {
                            Ok(n) => self.stats.announced += n as u64,
                            Err(e) => tracing::warn!(error = %e, "cluster: announce failed"),
                        }
                    }
                }
                Action::Commit {
                    token,
                    from,
                    buckets,
                } => {
                    let t0 = Instant::now();
                    let r = app.sync().map(|s| s.commit_buckets(from, &buckets, true));
                    match r {
                        Some(Ok((n, refused))) => {
                            self.stats.commits += 1;
                            self.stats.committed_flows += n as u64;
                            tracing::info!(
                                ?from,
                                buckets = buckets.count(),
                                flows = n,
                                refused,
                                millis =
                                    u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX),
                                "cluster: committed the flows of gained buckets"
                            );
                        }
                        Some(Err(e)) => {
                            self.stats.sync_errors += 1;
                            tracing::warn!(error = %e, "cluster: commit failed; forwarding anyway");
                        }
                        None => {}
                    }
                    // Forwarding without the flows would reset them; a
                    // failed commit is logged and counted, and the bucket
                    // is still served (new flows work, loose pickup may
                    // recover old ones).
                    self.coord.handle_committed(now, token);
                }
                Action::Flush { token, to, buckets } => {
                    match app.sync().map(|s| s.flush_buckets(to, &buckets)) {
                        Some(Ok(sync_token)) => {
                            self.stats.flushes += 1;
                            self.flushes.insert(
                                token,
                                Flush {
                                    sync_token,
                                    started: now,
                                },
                            );
                        }
                        _ => {
                            self.stats.sync_errors += 1;
                            self.coord.handle_flush_failed(now, token);
                        }
                    }
                }
                Action::Evict { buckets } => {
                    if let Some(Ok(n)) = app.sync().map(|s| s.evict_buckets(&buckets)) {
                        self.stats.evicted_flows += n as u64;
                    } else {
                        self.stats.sync_errors += 1;
                    }
                }
                Action::Settled { version } => {
                    let owned = self.coord.cache_owners();
                    if let Some(Ok(n)) = app.sync().map(|s| s.prune_external(owned)) {
                        self.stats.pruned_flows += n as u64;
                    } else {
                        self.stats.sync_errors += 1;
                    }
                    tracing::info!(version, "cluster: map applied");
                }
            }
        }
    }

    fn check_flushes(&mut self, now: Instant, app: &Appliance) {
        if self.flushes.is_empty() {
            return;
        }
        let Some(sync) = app.sync() else { return };
        let mut done = Vec::new();
        for (&token, f) in &self.flushes {
            match sync.flush_acked(f.sync_token) {
                Ok(Some(true)) => done.push((token, true)),
                Ok(None) => done.push((token, false)),
                _ if now.saturating_duration_since(f.started) > FLUSH_TIMEOUT => {
                    self.stats.flush_timeouts += 1;
                    done.push((token, false));
                }
                _ => {}
            }
        }
        for (token, ok) in done {
            self.flushes.remove(&token);
            if ok {
                self.coord.handle_flushed(now, token);
            } else {
                self.coord.handle_flush_failed(now, token);
            }
        }
    }

    fn transmit(&mut self, now: Instant) {
        while let Some(t) = self.coord.poll_transmit(now, &mut self.out) {
            let Some(&addr) = self.peers.get(&t.to) else {
                continue;
            };
            match self.socket.send_to(&self.out, addr) {
                Ok(_) => self.stats.datagrams_out += 1,
                Err(e) => {
                    self.stats.send_errors += 1;
                    tracing::debug!(error = %e, to = %addr, "cluster send error");
                }
            }
        }
    }
}
