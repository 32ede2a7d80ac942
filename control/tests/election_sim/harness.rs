//! A deterministic cluster of election machines in virtual time.
//!
//! Each node has a model of its world: links (a cut node fails its link
//! checks and neither sends nor receives), a partition group, local service
//! health, an uplink and a service that the procedures switch on and off,
//! and the sync layer's freshness (a synced backup in reach of its master
//! applies the master's sequence on most 10 ms ticks; a resync completes
//! 50-150 ms after it is asked for, unless blocked). Messages travel as
//! real datagrams through each node's codec with 0.2-2 ms delay and a
//! seeded loss. Procedures take a random time within half their `tmax`.
//! Virtual time jumps to the next deadline.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use ftfw_control::election::{
    Election, ElectionConfig, Event, NodeId, Peer, Procedure, Role, ServiceSub, State, Ticket,
};
use ftfw_dataplane::rng::SplitMix64;

/// [`SplitMix64`] with the draws the simulation needs.
pub(crate) struct Rng(SplitMix64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(SplitMix64::new(seed ^ 0x9e37_79b9_7f4a_7c15))
    }

    pub(crate) fn u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in 0..n (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    /// True with probability `pm` per mille.
    pub(crate) fn chance(&mut self, pm: u32) -> bool {
        self.below(1000) < u64::from(pm)
    }

    pub(crate) fn usize(&mut self, n: usize) -> usize {
        usize::try_from(self.below(u64::try_from(n).unwrap_or(1))).unwrap_or(0)
    }
}

pub(crate) struct NodeModel {
    pub(crate) id: NodeId,
    pub(crate) priority: u8,
    pub(crate) cfg: ElectionConfig,
    pub(crate) e: Option<Election>,
    pub(crate) links_ok: bool,
    pub(crate) service_ok: bool,
    pub(crate) group: u32,
    pub(crate) uplink_active: bool,
    pub(crate) serving: bool,
    pub(crate) procs: Vec<(Instant, Ticket, Procedure)>,
    pub(crate) resync_at: Option<Instant>,
    pub(crate) resync_blocked: bool,
    pub(crate) sync_blocked: bool,
    pub(crate) boots: u64,
    pub(crate) primary_since: Option<Instant>,
    pub(crate) events: Vec<(Instant, Event)>,
}

struct Packet {
    at: Instant,
    order: u64,
    from: usize,
    to: usize,
    bytes: Vec<u8>,
}

pub(crate) struct Sim {
    pub(crate) seed: u64,
    pub(crate) rng: Rng,
    pub t0: Instant,
    pub(crate) now: Instant,
    pub(crate) nodes: Vec<NodeModel>,
    net: Vec<Packet>,
    order: u64,
    pub(crate) loss_pm: u32,
    trace: VecDeque<String>,
    next_tick: Instant,
    /// (time, node, state entered), for bound checks.
    pub(crate) transitions: Vec<(Instant, usize, State)>,
}

pub(crate) const TICK: Duration = Duration::from_millis(10);

impl Sim {
    /// A cluster with these priorities (node ids 1..=n); `tune` adjusts
    /// each node's configuration. Nothing is booted yet.
    pub(crate) fn new(seed: u64, priorities: &[u8], tune: impl Fn(&mut ElectionConfig)) -> Sim {
        let t0 = Instant::now();
        let ids: Vec<NodeId> = (1..=priorities.len())
            .map(|i| NodeId(u32::try_from(i).unwrap_or(0)))
            .collect();
        let nodes = ids
            .iter()
            .zip(priorities)
            .map(|(&id, &priority)| {
                let peers = ids
                    .iter()
                    .zip(priorities)
                    .filter(|(o, _)| **o != id)
                    .map(|(&node, &priority)| Peer { node, priority })
                    .collect();
                let mut cfg =
                    ElectionConfig::new(id, priority, peers, b"sim-pre-shared-key-0123".to_vec());
                tune(&mut cfg);
                cfg.validate().expect("sim config valid");
                NodeModel {
                    id,
                    priority,
                    cfg,
                    e: None,
                    links_ok: true,
                    service_ok: true,
                    group: 0,
                    uplink_active: false,
                    serving: false,
                    procs: Vec::new(),
                    resync_at: None,
                    resync_blocked: false,
                    sync_blocked: false,
                    boots: 0,
                    primary_since: None,
                    events: Vec::new(),
                }
            })
            .collect();
        Sim {
            seed,
            rng: Rng::new(seed),
            t0,
            now: t0,
            nodes,
            net: Vec::new(),
            order: 0,
            loss_pm: 0,
            trace: VecDeque::new(),
            next_tick: t0 + TICK,
            transitions: Vec::new(),
        }
    }

    pub(crate) fn ms(&self) -> u128 {
        self.now.duration_since(self.t0).as_millis()
    }

    pub(crate) fn log(&mut self, line: String) {
        if self.trace.len() >= 600 {
            self.trace.pop_front();
        }
        let l = format!("{:>7} ms  {line}", self.ms());
        self.trace.push_back(l);
    }

    /// Panic with the seed and the end of the trace.
    pub(crate) fn fail(&self, what: &str) -> ! {
        let tail: Vec<&String> = self.trace.iter().collect();
        let mut states = String::new();
        for n in &self.nodes {
            states.push_str(&format!(
                "  {}: {}\n",
                n.id,
                match &n.e {
                    Some(e) => format!(
                        "{} master={:?} synced={} links_ok={} group={}",
                        e.state(),
                        e.master(),
                        e.freshness().synced,
                        n.links_ok,
                        n.group
                    ),
                    None => "crashed".into(),
                }
            ));
        }
        panic!(
            "{what}\nseed={seed} (replay: ELECTION_SEED={seed})\nat {ms} ms\n{states}trace tail:\n{trace}",
            seed = self.seed,
            ms = self.ms(),
            trace = tail
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    pub(crate) fn boot(&mut self, i: usize) {
        let now = self.now;
        let n = &mut self.nodes[i];
        n.boots += 1;
        let mut cfg = n.cfg.clone();
        // Real drivers use wall-clock microseconds; any growing base works.
        cfg.initial_counter = n.boots * 1_000_000_000_000;
        n.e = Some(Election::new(cfg, now).expect("valid config"));
        n.uplink_active = false;
        n.serving = false;
        n.procs.clear();
        n.resync_at = None;
        n.primary_since = None;
        let id = n.id;
        self.log(format!("{id} boots"));
        self.flush(i);
    }

    pub(crate) fn crash(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.e = None;
        n.uplink_active = false;
        n.serving = false;
        n.procs.clear();
        n.resync_at = None;
        n.primary_since = None;
        let id = n.id;
        self.log(format!("{id} CRASHES"));
    }

    pub(crate) fn alive(&self, i: usize) -> bool {
        self.nodes[i].e.is_some()
    }

    pub(crate) fn election(&self, i: usize) -> &Election {
        self.nodes[i].e.as_ref().expect("node alive")
    }

    pub(crate) fn election_mut(&mut self, i: usize) -> &mut Election {
        self.nodes[i].e.as_mut().expect("node alive")
    }

    pub(crate) fn index_of(&self, id: NodeId) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == id)
            .expect("known node")
    }

    fn reachable(&self, a: usize, b: usize) -> bool {
        let (x, y) = (&self.nodes[a], &self.nodes[b]);
        x.links_ok && y.links_ok && x.group == y.group
    }

    /// Alive nodes in service main state (not leaving).
    pub(crate) fn primaries(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].e.as_ref().is_some_and(|e| e.is_primary()))
            .collect()
    }

    /// An alive node whose links and service are healthy.
    pub(crate) fn healthy_exists(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| n.e.is_some() && n.links_ok && n.service_ok)
    }

    fn master_seq(&self, m: usize) -> u64 {
        self.nodes[m].primary_since.map_or(0, |t| {
            u64::try_from(self.now.duration_since(t).as_millis()).unwrap_or(0)
        })
    }

    // ----- the event loop -----------------------------------------------

    fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = Some(self.next_tick);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                d = Some(d.map_or(t, |x| x.min(t)));
            }
        };
        for p in &self.net {
            consider(Some(p.at));
        }
        for n in &self.nodes {
            if let Some(e) = &n.e {
                consider(e.poll_timeout());
                for (t, _, _) in &n.procs {
                    consider(Some(*t));
                }
                consider(n.resync_at);
            }
        }
        d
    }

    /// Run until `until` (virtual).
    pub(crate) fn run_until(&mut self, until: Instant) {
        while let Some(next) = self.next_deadline() {
            if next > until {
                break;
            }
            if next > self.now {
                self.now = next;
            }
            self.process_due();
        }
        if until > self.now {
            self.now = until;
        }
    }

    pub(crate) fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Run for `d`, calling `check` after every processing step.
    pub(crate) fn run_checking(&mut self, d: Duration, mut check: impl FnMut(&Sim)) {
        let until = self.now + d;
        while let Some(next) = self.next_deadline() {
            if next > until {
                break;
            }
            if next > self.now {
                self.now = next;
            }
            self.process_due();
            check(self);
        }
        self.now = until;
    }

    fn process_due(&mut self) {
        let now = self.now;
        // Packets, in delivery order.
        let mut due: Vec<Packet> = Vec::new();
        let mut i = 0;
        while i < self.net.len() {
            if self.net[i].at <= now {
                due.push(self.net.swap_remove(i));
            } else {
                i += 1;
            }
        }
        due.sort_by_key(|p| (p.at, p.order));
        for p in due {
            if let Some(e) = self.nodes[p.to].e.as_mut() {
                let _ = e.handle_datagram(now, &p.bytes);
                self.flush(p.to);
            }
            let _ = p.from;
        }
        // Procedures.
        for i in 0..self.nodes.len() {
            let mut finished: Vec<(Instant, Ticket, Procedure)> = Vec::new();
            self.nodes[i].procs.retain(|p| {
                if p.0 <= now {
                    finished.push(*p);
                    false
                } else {
                    true
                }
            });
            finished.sort_by_key(|p| (p.0, p.1));
            for (_, ticket, proc) in finished {
                if self.nodes[i].e.is_none() {
                    break;
                }
                let ok = self.perform(i, proc);
                let id = self.nodes[i].id;
                self.log(format!("{id} {proc:?} -> {ok}"));
                if let Some(e) = self.nodes[i].e.as_mut() {
                    if let Err(err) = e.handle_procedure_result(now, ticket, ok) {
                        self.fail(&format!("procedure result refused: {err}"));
                    }
                }
                self.flush(i);
            }
        }
        // Timers.
        for i in 0..self.nodes.len() {
            let due = self.nodes[i]
                .e
                .as_ref()
                .and_then(|e| e.poll_timeout())
                .is_some_and(|t| t <= now);
            if due {
                if let Some(e) = self.nodes[i].e.as_mut() {
                    e.handle_timeout(now);
                }
                self.flush(i);
            }
        }
        // Resync completions.
        for i in 0..self.nodes.len() {
            if self.nodes[i].resync_at.is_some_and(|t| t <= now) && self.nodes[i].e.is_some() {
                self.nodes[i].resync_at = None;
                let master = self.election(i).master().map(|m| self.index_of(m));
                let ok = !self.nodes[i].resync_blocked
                    && master.is_some_and(|m| {
                        m != i
                            && self.nodes[m].e.as_ref().is_some_and(|e| e.is_primary())
                            && self.reachable(i, m)
                    });
                if ok {
                    let m = master.unwrap_or(i);
                    let seq = self.master_seq(m);
                    let e = self.election_mut(i);
                    e.handle_sync_progress(now, seq);
                    e.handle_resync_complete(now);
                    let id = self.nodes[i].id;
                    self.log(format!("{id} resync complete (seq {seq})"));
                } else if !self.election(i).freshness().synced {
                    self.nodes[i].resync_at = Some(now + Duration::from_millis(100));
                }
            }
        }
        // Sync progress.
        if self.next_tick <= now {
            self.next_tick = now + TICK;
            for i in 0..self.nodes.len() {
                let Some(e) = self.nodes[i].e.as_ref() else {
                    continue;
                };
                if e.is_primary() || !e.freshness().synced || self.nodes[i].sync_blocked {
                    continue;
                }
                let Some(m) = e.master().map(|m| self.index_of(m)) else {
                    continue;
                };
                if m == i
                    || !self.nodes[m].e.as_ref().is_some_and(|e| e.is_primary())
                    || !self.reachable(i, m)
                {
                    continue;
                }
                if self.rng.chance(900) {
                    let seq = self.master_seq(m);
                    self.election_mut(i).handle_sync_progress(now, seq);
                }
            }
        }
    }

    /// The world's answer to a procedure.
    fn perform(&mut self, i: usize, p: Procedure) -> bool {
        let links = self.nodes[i].links_ok;
        match p {
            Procedure::DownlinkCheck => links,
            Procedure::UplinkCheck => links && self.nodes[i].uplink_active,
            Procedure::LocalSvcCheck => self.nodes[i].service_ok && self.nodes[i].serving,
            Procedure::RemoteSvcCheck => (0..self.nodes.len()).any(|j| {
                j != i
                    && self.nodes[j].e.is_some()
                    && self.nodes[j].serving
                    && self.nodes[j].service_ok
                    && self.reachable(i, j)
            }),
            Procedure::ActivateUplink => {
                self.nodes[i].uplink_active = true;
                true
            }
            Procedure::DeactivateUplink => {
                self.nodes[i].uplink_active = false;
                true
            }
            Procedure::ActivateService => {
                self.nodes[i].serving = true;
                true
            }
            Procedure::DeactivateService => {
                self.nodes[i].serving = false;
                true
            }
            Procedure::TakeoverDownstream
            | Procedure::TakeoverUpstream
            | Procedure::ReleaseDownstream
            | Procedure::ReleaseUpstream => true,
        }
    }

    /// Take a node's outputs: events (procedure requests, resync requests)
    /// and datagrams.
    fn flush(&mut self, i: usize) {
        let now = self.now;
        let mut buf = Vec::new();
        loop {
            let Some(e) = self.nodes[i].e.as_mut() else {
                return;
            };
            let ev = e.poll_event();
            let tx = if ev.is_none() {
                e.poll_transmit(now, &mut buf)
            } else {
                None
            };
            if ev.is_none() && tx.is_none() {
                break;
            }
            let id = self.nodes[i].id;
            if let Some(ev) = ev {
                match &ev {
                    Event::Run(req) => {
                        let half = u64::try_from(req.timeout.as_micros() / 2).unwrap_or(0);
                        let d = Duration::from_micros(100 + self.rng.below(half.max(1)));
                        self.nodes[i]
                            .procs
                            .push((now + d, req.ticket, req.procedure));
                    }
                    Event::ResyncNeeded { master, .. } => {
                        self.log(format!("{id} resync needed from {master}"));
                        let d = Duration::from_millis(50 + self.rng.below(100));
                        self.nodes[i].resync_at = Some(now + d);
                    }
                    Event::StateChanged { to, .. } => {
                        self.transitions.push((now, i, *to));
                        self.log(format!("{id} -> {to}"));
                    }
                    Event::RoleChanged { to, .. } => {
                        if *to == Role::Primary {
                            self.nodes[i].primary_since = Some(now);
                        } else {
                            self.nodes[i].primary_since = None;
                        }
                    }
                    other => self.log(format!("{id} {other:?}")),
                }
                self.nodes[i].events.push((now, ev));
            }
            if let Some(t) = tx {
                let to = self.index_of(t.dest);
                self.log(format!("{id} sends {} to {}", t.name, t.dest));
                if self.reachable(i, to) && !self.rng.chance(self.loss_pm) {
                    let delay = Duration::from_micros(200 + self.rng.below(1800));
                    self.order += 1;
                    self.net.push(Packet {
                        at: now + delay,
                        order: self.order,
                        from: i,
                        to,
                        bytes: buf.clone(),
                    });
                }
            }
        }
    }

    // ----- assertions ---------------------------------------------------

    /// The one primary, failing otherwise.
    pub(crate) fn sole_primary(&self) -> usize {
        let p = self.primaries();
        if p.len() != 1 {
            self.fail(&format!("expected exactly one primary, found {p:?}"));
        }
        p[0]
    }

    /// Stable-state checks: at most one primary at every step of `window`,
    /// and at its end exactly one if a healthy node exists, followed by
    /// every healthy node.
    pub(crate) fn check_stable(&mut self, window: Duration) {
        self.run_checking(window, |s| {
            if s.primaries().len() > 1 {
                s.fail(&format!("two primaries once stable: {:?}", s.primaries()));
            }
        });
        if !self.healthy_exists() {
            return;
        }
        let p = self.sole_primary();
        let pid = self.nodes[p].id;
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(e) = &n.e else { continue };
            if i == p || !n.links_ok {
                continue;
            }
            if e.role() != Role::Backup || e.master() != Some(pid) {
                self.fail(&format!(
                    "{} is {} following {:?}, not a backup of {pid}",
                    n.id,
                    e.state(),
                    e.master()
                ));
            }
        }
        for n in &self.nodes {
            if let Some(e) = &n.e {
                if e.stats().invalid_transitions != 0 {
                    self.fail(&format!(
                        "{} hit an invalid transition: {:?}",
                        n.id,
                        e.last_invalid()
                    ));
                }
            }
        }
    }

    /// First time after `since` that a node other than `except` entered
    /// service active state.
    pub(crate) fn first_active_after(
        &self,
        since: Instant,
        except: usize,
    ) -> Option<(Instant, usize)> {
        self.transitions
            .iter()
            .find(|(t, i, s)| {
                *t >= since && *i != except && *s == State::Service(ServiceSub::Active)
            })
            .map(|(t, i, _)| (*t, *i))
    }

    /// Events of node `i` so far.
    pub(crate) fn events(&self, i: usize) -> &[(Instant, Event)] {
        &self.nodes[i].events
    }

    pub(crate) fn seqs(&self) -> BTreeMap<usize, u64> {
        (0..self.nodes.len())
            .filter_map(|i| self.nodes[i].e.as_ref().map(|e| (i, e.freshness().seq)))
            .collect()
    }
}

/// Seeds to run: `ELECTION_SEED` alone, or `n` seeds from `base`
/// (`ELECTION_SEEDS=N` runs `N` instead, for soaking).
pub(crate) fn seeds(base: u64, n: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("ELECTION_SEED") {
        return vec![s.trim().parse().expect("ELECTION_SEED is a number")];
    }
    let n = std::env::var("ELECTION_SEEDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(n);
    (base..base + n).collect()
}
