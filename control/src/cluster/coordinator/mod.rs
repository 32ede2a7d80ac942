//! [`Coordinator`]: one node's sans-IO view of the cluster. Inputs are
//! `handle_*` calls with the time; outputs are datagrams
//! ([`Coordinator::poll_transmit`]), driver actions
//! ([`Coordinator::poll_action`]) and the next deadline
//! ([`Coordinator::poll_timeout`]). See the module docs of
//! [`crate::cluster`] for the protocol.

mod apply;
mod detector;
mod master;

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use ftfw_dataplane::buckets::{BucketSet, MAX_BUCKETS};

use super::map::BucketMap;
use super::msg::{Body, Heartbeat, Message, NodeState, Request};
use super::status::{ClusterCounters, ClusterStatus, NodeStatus, PendingMove};
use super::wire::{map_datagram_len, Codec, MAX_DATAGRAM};
use super::{NodeId, MAX_NODES};

/// Most datagrams waiting for [`Coordinator::poll_transmit`] (beyond it
/// new ones are dropped and counted; every message is repeated anyway).
pub const TRANSMIT_MAX: usize = 1024;

/// One node's cluster configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// This node's id.
    pub node: NodeId,
    /// Every configured node, this one included (2 to 16).
    pub nodes: Vec<NodeId>,
    /// Buckets in the map (1 to `MAX_BUCKETS`).
    pub buckets: u32,
    /// Backups per bucket (fewer when there are not enough nodes).
    pub backups: u8,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// A node not heard from for this long is dead (several heartbeats).
    pub dead_after: Duration,
    /// The longest a node's dead-after time grows to after false deaths
    /// (it was declared dead, then heard with the same incarnation); at
    /// least `dead_after` (equal: no adaptation).
    pub dead_after_max: Duration,
    /// A raised dead-after time halves (down to `dead_after`) each time
    /// this long passes, if the node's longest silence meanwhile (x 1.5)
    /// fits the halved time.
    pub dead_after_relax: Duration,
    /// A node that becomes ready gets its share of buckets at once; without
    /// it, it gets buckets only from failures and an operator's rebalance.
    pub auto_rebalance_on_join: bool,
    /// Pre-shared key (at least 16 bytes).
    pub key: Vec<u8>,
    /// Primary-backup: one node (the master when the cluster forms or the
    /// primary fails; a returning lower id does not preempt it unless an
    /// operator asks for a rebalance) owns every bucket, the others back
    /// up.
    pub primary_backup: bool,
    /// Changes on every start, larger each time (the driver passes its
    /// start time in microseconds): peers tell a restarted node, which
    /// starts empty, from the one that owned buckets; also the base of the
    /// replay counter.
    pub incarnation: u64,
}

/// A configuration the coordinator refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// This node is not in `nodes`, or `nodes` has repeats, fewer than 2 or
    /// more than 16 entries.
    #[error("cluster nodes must be 2 to 16 distinct ids including this node")]
    Nodes,
    /// Bucket count out of range, or maps of this size would not fit a
    /// datagram.
    #[error(
        "buckets must be 1 to {MAX_BUCKETS}, and buckets x (1 + backups) fit {MAX_DATAGRAM} bytes"
    )]
    Buckets,
    /// Heartbeat zero, `dead_after` under two heartbeats, or
    /// `dead_after_max` under `dead_after`.
    #[error("heartbeat must be above zero, dead_after at least two heartbeats and dead_after_max at least dead_after")]
    Timers,
    /// Key too short.
    #[error(transparent)]
    Key(#[from] crate::election::wire::KeyTooShort),
}

/// Errors of the operator calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The node is not in the configuration.
    #[error("node {0} is not a configured cluster node")]
    UnknownNode(NodeId),
    /// No master is known (it has not been heard from).
    #[error("no cluster master known")]
    NoMaster,
}

/// Work the driver performs, then reports back where stated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The complete set of buckets this node forwards from now on (written
    /// into every worker's ownership).
    Forward(BucketSet),
    /// Make sure node `to` holds all our flows of `buckets` (export over
    /// the sync link, wait for its acknowledgement), then
    /// [`Coordinator::handle_flushed`]; on timeout
    /// [`Coordinator::handle_flush_failed`].
    Flush {
        /// Names this flush in the report.
        token: u64,
        /// The new owner.
        to: NodeId,
        /// The buckets.
        buckets: BucketSet,
    },
    /// Import the flows of `buckets` that node `from` replicated to us
    /// into our shards (and replicate them onward), then
    /// [`Coordinator::handle_committed`]. `from: None`: the previous owner
    /// is unknown (the first map): nothing to import, just report.
    Commit {
        /// Names this commit in the report.
        token: u64,
        /// The previous owner.
        from: Option<NodeId>,
        /// The buckets.
        buckets: BucketSet,
    },
    /// Remove our own flows of `buckets` from our shards: their new owner
    /// has applied the map that moved them.
    Evict {
        /// The buckets.
        buckets: BucketSet,
    },
    /// Map `version` is fully applied here (prune caches).
    Settled {
        /// The map version.
        version: u64,
    },
}

/// A datagram to send, encoded into the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination node (the driver maps it to an address).
    pub to: NodeId,
    /// The message's name.
    pub name: &'static str,
}

/// What we last heard from a peer, and its failure detector.
#[derive(Clone, Debug)]
struct Peer {
    last_heard: Option<Instant>,
    hb: Option<Heartbeat>,
    /// When we last sent it our map (resends at most once a heartbeat).
    map_sent: Option<Instant>,
    /// Silent this long, it is dead (`dead_after`, raised by false
    /// deaths; see `detector`).
    dead_after: Duration,
    /// Times it was heard again, with the same incarnation, after a
    /// silence longer than its dead-after time.
    false_deaths: u64,
    /// When `dead_after` was last raised or considered for relaxing.
    adapted_at: Option<Instant>,
    /// Its longest silence since `adapted_at`.
    longest_silence: Duration,
    /// Heard again after this silence (longer than its dead-after time);
    /// its next heartbeat tells a false death from a restart.
    returned_after: Option<Duration>,
    /// When its incarnation was first heard ready (its startup resync
    /// done), or our start if it was ready when first heard.
    ready_at: Option<Instant>,
}

/// A queued datagram; a map is encoded from the map held at send time.
#[derive(Clone, Debug)]
enum Out {
    Heartbeat,
    Map,
    Released { version: u64, buckets: BucketSet },
    Request(Request),
}

/// Buckets whose flows we hand to their new owner.
#[derive(Clone, Debug)]
struct Transfer {
    to: NodeId,
    buckets: BucketSet,
    /// The map version that moved them.
    version: u64,
    stage: Stage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// The driver is flushing (token).
    Flushing(u64),
    /// The flush failed; retry at the next heartbeat.
    Retry,
    /// Flushed; `Released` sent, repeated each heartbeat until the new
    /// owner's heartbeat to us acknowledges a release of `version`.
    Released,
}

/// Buckets taken over from an incarnation that may still be alive.
#[derive(Clone, Debug)]
struct Unmerged {
    incarnation: u64,
    /// The map that declared it lost (newest, if several did).
    version: u64,
    buckets: BucketSet,
    /// Its cached flows of `buckets` were imported since it was last
    /// heard: at the takeover if it was silent then, or when our detector
    /// judged it dead after it was heard again. A heartbeat of the same
    /// incarnation clears it (it may still forward them and create flows,
    /// replicated to us).
    dead_merged: bool,
}

/// A planned move: the bucket came from live `node` in map `version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct MovedFrom {
    node: NodeId,
    incarnation: u64,
    version: u64,
}

/// A commit the driver runs.
#[derive(Clone, Debug)]
struct CommitJob {
    token: u64,
    from: Option<NodeId>,
    buckets: BucketSet,
}

/// One node's view of the cluster. See the module docs.
#[derive(Debug)]
pub struct Coordinator {
    cfg: CoordinatorConfig,
    codec: Codec,
    started: Instant,
    /// The latest time an input carried (deadlines before it are past).
    now: Instant,
    ready: bool,
    /// When this node became ready.
    ready_at: Option<Instant>,
    map: Option<BucketMap>,
    applied: u64,
    forwarding: BucketSet,
    /// Buckets we own and wait for a release of, by the expected sender.
    awaiting: BTreeMap<NodeId, BucketSet>,
    /// Since when (and at which of our map versions) each sender we wait
    /// for has been heard holding that map: it stopped forwarding them.
    holds_map_since: BTreeMap<NodeId, (u64, Instant)>,
    commits: Vec<CommitJob>,
    transfers: Vec<Transfer>,
    /// Late releases already merged, by (sender, version): the buckets
    /// merged (a sender releases different buckets at the same version in
    /// separate messages, and repeats them; each bucket is merged once per
    /// version). Versions far behind ours are forgotten.
    merged: BTreeMap<(NodeId, u64), BucketSet>,
    /// The newest version of a `Released` taken from each node (echoed in
    /// our heartbeats to it as `release_ack`).
    releases_in: BTreeMap<NodeId, u64>,
    /// Buckets we took over from an incarnation a map declared lost that
    /// may still be alive (a false death): it flushes its flows of them to
    /// us once it sees the map, so we merge from it again when it releases
    /// them or its heartbeat shows it applied that map. By sender.
    unmerged: BTreeMap<NodeId, Unmerged>,
    /// Per bucket, the last planned move that gave it to its owner and may
    /// be unfinished: the live node it came from, that node's incarnation
    /// and the map version.
    moved_from: Vec<Option<MovedFrom>>,
    peers: BTreeMap<NodeId, Peer>,
    /// (Master) operator drain requests not yet in a map: node -> drained.
    pending_drain: BTreeMap<NodeId, bool>,
    rebalance_requested: bool,
    next_heartbeat: Instant,
    /// When the last input came (to notice our own stalls).
    last_input: Instant,
    next_token: u64,
    flows: u64,
    transmits: VecDeque<(NodeId, Out)>,
    actions: VecDeque<Action>,
    counters: ClusterCounters,
}

impl Coordinator {
    /// A coordinator that starts joining: it holds no map, forwards nothing
    /// and sends its first heartbeats at once.
    pub fn new(cfg: CoordinatorConfig, now: Instant) -> Result<Coordinator, ConfigError> {
        let mut nodes = cfg.nodes.clone();
        nodes.sort_unstable();
        nodes.dedup();
        if nodes.len() != cfg.nodes.len()
            || !(2..=MAX_NODES).contains(&nodes.len())
            || !nodes.contains(&cfg.node)
        {
            return Err(ConfigError::Nodes);
        }
        if cfg.buckets == 0
            || cfg.buckets > MAX_BUCKETS
            || map_datagram_len(cfg.buckets, cfg.backups) > MAX_DATAGRAM
        {
            return Err(ConfigError::Buckets);
        }
        if cfg.heartbeat.is_zero()
            || cfg.dead_after < cfg.heartbeat * 2
            || cfg.dead_after_max < cfg.dead_after
        {
            return Err(ConfigError::Timers);
        }
        let codec = Codec::new(cfg.node, &nodes, &cfg.key, cfg.incarnation)?;
        let peers = nodes
            .iter()
            .filter(|&&n| n != cfg.node)
            .map(|&n| (n, Peer::new(cfg.dead_after)))
            .collect();
        Ok(Coordinator {
            codec,
            started: now,
            now,
            ready: false,
            ready_at: None,
            map: None,
            applied: 0,
            forwarding: BucketSet::empty(cfg.buckets),
            awaiting: BTreeMap::new(),
            holds_map_since: BTreeMap::new(),
            commits: Vec::new(),
            transfers: Vec::new(),
            merged: BTreeMap::new(),
            releases_in: BTreeMap::new(),
            unmerged: BTreeMap::new(),
            moved_from: vec![None; cfg.buckets as usize],
            peers,
            pending_drain: BTreeMap::new(),
            rebalance_requested: false,
            next_heartbeat: now,
            last_input: now,
            next_token: 0,
            flows: 0,
            transmits: VecDeque::new(),
            actions: VecDeque::new(),
            counters: ClusterCounters::default(),
            cfg,
        })
    }

    /// Takes the keys of a key ring: messages are tagged with the newest,
    /// and taken with any (rotation without a restart; see
    /// `crate::sealed`).
    pub fn set_keys(
        &mut self,
        ring: &crate::keyring::Keyring,
    ) -> Result<(), crate::sealed::KeyTooShort> {
        self.codec.set_keys(ring)
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.cfg.node
    }

    /// The map held (the newest seen), if any.
    pub fn map(&self) -> Option<&BucketMap> {
        self.map.as_ref()
    }

    /// The buckets this node forwards now (what the last
    /// [`Action::Forward`] said).
    pub fn forwarding(&self) -> &BucketSet {
        &self.forwarding
    }

    /// The startup resync from the peers completed: this node may own
    /// buckets from now on (the master hears it in the next heartbeat).
    pub fn handle_ready(&mut self, now: Instant) {
        self.note_input(now);
        if !self.ready {
            self.ready = true;
            self.ready_at = Some(now);
            self.next_heartbeat = now;
            self.reconcile(now, None);
            self.master_step(now);
        }
    }

    /// The driver's flow count (load, sent in heartbeats).
    pub fn set_flows(&mut self, flows: u64) {
        self.flows = flows;
    }

    /// One datagram from the cluster socket. Rejections are counted in
    /// [`ClusterCounters::codec`]; a stale map is counted and ignored.
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        self.now = self.now.max(now);
        self.note_input(now);
        let decoded = self.codec.decode(bytes);
        self.counters.codec = self.codec.stats();
        let Ok(Message { sender, body }) = decoded else {
            return;
        };
        self.note_heard(now, sender);
        match body {
            Body::Heartbeat(h) => self.on_heartbeat(now, sender, h),
            Body::Map(m) => self.on_map(now, sender, m),
            Body::Released { version, buckets } => self.on_released(now, sender, version, buckets),
            Body::Request(r) => self.on_request(now, r),
        }
        self.master_step(now);
    }

    /// Timers: heartbeats (with the resends they carry) and death
    /// detection. Call at [`Coordinator::poll_timeout`] or later.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.note_input(now);
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + self.cfg.heartbeat;
            self.tick(now);
        }
        self.merge_from_dead(now);
        self.master_step(now);
    }

    /// The next deadline: the next heartbeat, the next peer that would
    /// turn dead, the end of the master's start-up grace.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deaths = self
            .peers
            .values()
            .filter_map(|p| p.last_heard.map(|t| t + p.dead_after));
        let grace = self.started + self.cfg.dead_after;
        let later = deaths
            .chain(std::iter::once(grace))
            .filter(|&t| t > self.now);
        Some(later.fold(self.next_heartbeat, Instant::min))
    }

    /// The next datagram, encoded into `buf` (cleared first); one per call.
    pub fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        loop {
            let (to, out) = self.transmits.pop_front()?;
            let body = match out {
                Out::Heartbeat => Body::Heartbeat(self.heartbeat(to)),
                Out::Map => match &self.map {
                    Some(m) => Body::Map(m.clone()),
                    None => continue,
                },
                Out::Released { version, buckets } => Body::Released { version, buckets },
                Out::Request(r) => Body::Request(r),
            };
            self.codec.encode(&body, buf);
            self.counters.codec = self.codec.stats();
            self.counters.messages_out += 1;
            return Some(Transmit {
                to,
                name: body.name(),
            });
        }
    }

    /// The next action for the driver, oldest first (a newer
    /// [`Action::Forward`] replaces a queued one).
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Flush `token` completed: the new owner holds our flows; tell it.
    pub fn handle_flushed(&mut self, now: Instant, token: u64) {
        self.now = self.now.max(now);
        self.note_input(now);
        if let Some(t) = self
            .transfers
            .iter_mut()
            .find(|t| t.stage == Stage::Flushing(token))
        {
            t.stage = Stage::Released;
            let (to, version, buckets) = (t.to, t.version, t.buckets.clone());
            self.send(to, Out::Released { version, buckets });
        }
        self.update_applied(now);
    }

    /// Flush `token` failed (timeout): retried at the next heartbeat while
    /// the buckets' owner is unchanged (a new map re-targets it).
    pub fn handle_flush_failed(&mut self, _now: Instant, token: u64) {
        if let Some(t) = self
            .transfers
            .iter_mut()
            .find(|t| t.stage == Stage::Flushing(token))
        {
            t.stage = Stage::Retry;
            self.counters.flush_failures += 1;
        }
    }

    /// Commit `token` completed: forward the committed buckets we still own.
    pub fn handle_committed(&mut self, now: Instant, token: u64) {
        self.note_input(now);
        let Some(i) = self.commits.iter().position(|c| c.token == token) else {
            return;
        };
        let job = self.commits.swap_remove(i);
        self.finish_commit(now, job);
    }

    /// Drain `node`: the master moves all its buckets away.
    pub fn drain(&mut self, now: Instant, node: NodeId) -> Result<(), RequestError> {
        self.request(now, Request::Drain(node))
    }

    /// Undrain `node`: it may own buckets again.
    pub fn undrain(&mut self, now: Instant, node: NodeId) -> Result<(), RequestError> {
        self.request(now, Request::Undrain(node))
    }

    /// Ask the master for a rebalance (fewest moves to equal shares).
    pub fn rebalance(&mut self, now: Instant) -> Result<(), RequestError> {
        self.request(now, Request::Rebalance)
    }

    fn request(&mut self, now: Instant, r: Request) -> Result<(), RequestError> {
        self.note_input(now);
        if let Request::Drain(n) | Request::Undrain(n) = r {
            if n != self.cfg.node && !self.peers.contains_key(&n) {
                return Err(RequestError::UnknownNode(n));
            }
        }
        let master = self.master(now);
        if master == self.cfg.node {
            self.on_request(now, r);
            self.master_step(now);
        } else if self.peers.get(&master).is_some_and(|p| p.hb.is_some()) {
            self.send(master, Out::Request(r));
        } else {
            return Err(RequestError::NoMaster);
        }
        Ok(())
    }

    /// Counters so far.
    pub fn counters(&self) -> ClusterCounters {
        let mut c = self.counters;
        c.codec = self.codec.stats();
        c
    }

    /// This node's view, for `ftfwctl cluster status`.
    pub fn status(&self, now: Instant) -> ClusterStatus {
        let master = self.master(now);
        let map = self.map.as_ref();
        let node_status = |node: NodeId| {
            let me = node == self.cfg.node;
            let peer = self.peers.get(&node);
            let hb = if me {
                Some(self.heartbeat(node))
            } else {
                peer.and_then(|p| p.hb)
            };
            let entry = map.and_then(|m| m.node(node));
            NodeStatus {
                node,
                alive: me || self.alive(now, node),
                master: node == master,
                state: hb.map(|h| h.state),
                last_heard_ms: peer
                    .and_then(|p| p.last_heard)
                    .map(|t| millis(now.saturating_duration_since(t))),
                dead_after_ms: peer.map(|p| millis(p.dead_after)),
                false_deaths: peer.map_or(0, |p| p.false_deaths),
                incarnation: hb.map_or(0, |h| h.incarnation),
                owned: map.map_or(0, |m| m.owned_by(node).count()),
                backup: map.map_or(0, |m| m.backed_up_by(node).count()),
                flows: hb.map_or(0, |h| h.flows),
                map_version: hb.map_or(0, |h| h.map_version),
                applied_version: hb.map_or(0, |h| h.applied_version),
                drained: entry.is_some_and(|e| e.drained),
            }
        };
        let mut nodes: Vec<NodeId> = self.peers.keys().copied().collect();
        nodes.push(self.cfg.node);
        nodes.sort_unstable();
        let mut pending = Vec::new();
        let mut add = |stage, peer, set: &BucketSet| {
            pending.push(PendingMove {
                stage,
                peer,
                buckets: set.count(),
                ranges: set.ranges(),
            })
        };
        for (from, set) in &self.awaiting {
            add("waiting_release", Some(*from), set);
        }
        for c in &self.commits {
            add("committing", c.from, &c.buckets);
        }
        for t in &self.transfers {
            let stage = if t.stage == Stage::Released {
                "releasing"
            } else {
                "flushing"
            };
            add(stage, Some(t.to), &t.buckets);
        }
        ClusterStatus {
            node: self.cfg.node,
            incarnation: self.cfg.incarnation,
            state: self.state(),
            master,
            acting_master: self.acting_master(now),
            map_version: self.map_version(),
            applied_version: self.applied,
            buckets: self.cfg.buckets,
            forwarding: self.forwarding.count(),
            nodes: nodes.into_iter().map(node_status).collect(),
            pending,
            counters: self.counters(),
        }
    }

    /// How long `node` may be silent before this node declares it dead
    /// (its dead-after time, raised by false deaths; `None`: ourselves or
    /// not configured).
    pub fn dead_after_of(&self, node: NodeId) -> Option<Duration> {
        self.peers.get(&node).map(|p| p.dead_after)
    }

    /// The newest map version this node fully applied (0: none).
    pub fn applied_version(&self) -> u64 {
        self.applied
    }

    /// Per configured peer, the buckets whose flows it replicated to us
    /// must stay in our cache of it: those the held map gives it, and
    /// those we took over from it while it may have been alive (a false
    /// death) and have not merged from it for good (what it created after
    /// the takeover is imported from that cache if it dies before it
    /// hands them over). The driver prunes the rest on
    /// [`Action::Settled`]. Empty without a map (nothing to prune by).
    pub fn cache_owners(&self) -> Vec<(NodeId, BucketSet)> {
        let Some(m) = &self.map else {
            return Vec::new();
        };
        self.peers
            .keys()
            .map(|&n| {
                let owned = m.owned_by(n);
                let keep = match self.unmerged.get(&n) {
                    Some(u) => owned.union(&u.buckets),
                    None => owned,
                };
                (n, keep)
            })
            .collect()
    }

    // ---- shared helpers ----

    /// The version of the map this node holds (0: none).
    pub fn map_version(&self) -> u64 {
        self.map.as_ref().map_or(0, BucketMap::version)
    }

    fn state(&self) -> NodeState {
        let drained = self
            .map
            .as_ref()
            .and_then(|m| m.node(self.cfg.node))
            .is_some_and(|e| e.drained);
        match (self.ready, drained) {
            (false, _) => NodeState::Joining,
            (true, false) => NodeState::Ready,
            (true, true) => NodeState::Draining,
        }
    }

    /// Our heartbeat to `to` (it acknowledges `to`'s releases).
    fn heartbeat(&self, to: NodeId) -> Heartbeat {
        Heartbeat {
            incarnation: self.cfg.incarnation,
            state: self.state(),
            map_version: self.map_version(),
            applied_version: self.applied,
            flows: self.flows,
            owned: self.forwarding.count(),
            release_ack: self.releases_in.get(&to).copied().unwrap_or(0),
        }
    }

    /// Heard from within its dead-after time (ourselves always).
    fn alive(&self, now: Instant, node: NodeId) -> bool {
        node == self.cfg.node || self.peers.get(&node).is_some_and(|p| p.alive(now))
    }

    /// The lowest live id among nodes that are not joining (a restarted
    /// node knows nothing yet); the lowest live id if all are joining.
    fn master(&self, now: Instant) -> NodeId {
        let live = || {
            self.peers
                .iter()
                .filter(|(n, _)| self.alive(now, **n))
                .map(|(n, p)| (*n, p.hb.is_some_and(|h| h.state != NodeState::Joining)))
                .chain(std::iter::once((self.cfg.node, self.ready)))
        };
        live()
            .filter(|(_, ready)| *ready)
            .map(|(n, _)| n)
            .min()
            .or_else(|| live().map(|(n, _)| n).min())
            .unwrap_or(self.cfg.node)
    }

    fn send(&mut self, to: NodeId, out: Out) {
        if self.transmits.len() >= TRANSMIT_MAX {
            self.counters.transmit_overflow += 1;
            return;
        }
        self.transmits.push_back((to, out));
    }

    fn act(&mut self, a: Action) {
        if let Action::Forward(_) = a {
            self.actions.retain(|x| !matches!(x, Action::Forward(_)));
        }
        self.actions.push_back(a);
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Every heartbeat: heartbeats out, releases and maps repeated, failed
    /// flushes retried.
    fn tick(&mut self, now: Instant) {
        let peers: Vec<NodeId> = self.peers.keys().copied().collect();
        for p in peers {
            self.send(p, Out::Heartbeat);
        }
        self.repeat_transfers(now);
        self.repeat_maps(now);
        self.give_up_waiting(now);
    }

    fn on_heartbeat(&mut self, now: Instant, sender: NodeId, h: Heartbeat) {
        self.judge_return(now, sender, &h);
        let started = self.started;
        if let Some(p) = self.peers.get_mut(&sender) {
            match p.hb {
                None if h.state != NodeState::Joining => p.ready_at = Some(started),
                Some(old) if old.incarnation != h.incarnation => p.ready_at = None,
                _ => {}
            }
            if h.state != NodeState::Joining && p.ready_at.is_none() {
                p.ready_at = Some(now);
            }
            p.hb = Some(h);
        }
        self.progress_from(now, sender, h);
    }

    fn on_map(&mut self, now: Instant, sender: NodeId, m: BucketMap) {
        let fits = m.buckets() == self.cfg.buckets
            && m.nodes()
                .iter()
                .all(|e| e.node == self.cfg.node || self.peers.contains_key(&e.node));
        if !fits {
            self.counters.foreign_maps += 1;
            return;
        }
        if m.master() == sender {
            self.ready_by_map(now, sender, &m);
        }
        match &self.map {
            Some(held) if !m.supersedes(held) => {
                if held.supersedes(&m) {
                    self.counters.stale_maps += 1;
                }
            }
            _ => self.adopt(now, m),
        }
    }
}

impl Coordinator {
    /// Only a ready member makes maps: a map its master sent us shows it
    /// ready, though the heartbeats saying so were lost (else we could
    /// still judge ourselves master and count it failed, as joining).
    fn ready_by_map(&mut self, now: Instant, master: NodeId, m: &BucketMap) {
        let Some(p) = self.peers.get_mut(&master) else {
            return;
        };
        let Some(h) = &mut p.hb else {
            return;
        };
        let same = m
            .node(master)
            .is_some_and(|e| e.incarnation == h.incarnation);
        if h.state == NodeState::Joining && same {
            let drained = m.node(master).is_some_and(|e| e.drained);
            h.state = if drained {
                NodeState::Draining
            } else {
                NodeState::Ready
            };
            p.ready_at.get_or_insert(now);
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
