//! [`Election`]: the sans-IO driver of the transition table.
//!
//! The machine evaluates guards, runs the table's actions with their data
//! (tables, nonces, attempts), keeps the timers and the queue of table 2,
//! and turns everything into outputs: datagrams ([`Election::poll_transmit`]),
//! the next deadline ([`Election::poll_timeout`]) and events
//! ([`Election::poll_event`], including procedure requests).
//!
//! # Guards
//! - DNSTR_/UPSTR_TAKEOVER: in service, [`Rel::Higher`](super::state::Rel::Higher) only from the
//!   master's designated successor (preemption); elsewhere when the
//!   sender's [`RankKey`] beats ours.
//! - SVC_TAKEOVER: in service and handover, when the sender's
//!   [`ClaimKey`] beats ours; in backup, when it comes from our master, or
//!   our master is unknown or silent for a backup period, or it beats our
//!   master's claim (so after a partition heals every backup follows the
//!   master that wins); in init, always.
//! - SVC_SHUTDOWN counts only from the master our table names; replies and
//!   denies only when they answer our outstanding check or attempt. The
//!   first SVC_CHECK of a round goes to our master, a retry to every host
//!   (only a master answers), so a stale table heals itself. "Silent"
//!   above means no SVC_CHECK_REPLY or SVC_TAKEOVER from it: other
//!   messages do not show that a host is master.
//!
//! # Bookkeeping outside the table
//! In service main state (not leaving) every SVC_CHECK updates the sender's
//! entry and resets its SVC_REQCHECK_TIMER when it arrives, even when the
//! check itself waits in the queue, so a queued heartbeat cannot expire
//! (the reason for table 2). Procedure results carry a [`Ticket`]: the
//! result of a procedure the machine moved on from is stale and dropped; a
//! procedure that overruns its `tmax` counts as failed.

mod actions;
mod guards;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use super::config::{BoundError, ElectionConfig};
use super::msg::{Body, Message, SelfReport, Side};
use super::procedure::{Procedure, ProcedureRequest, Ticket};
use super::state::{
    transition, BackupSub, InitSub, Input, InvalidTransition, MainState, Outcome, ServiceSub,
    State, TimerKind,
};
use super::status::{ElectionStats, ElectionStatus, PeerStatus};
use super::table::{ClaimKey, Freshness, NodeId, RankKey, Role, StatusTable};
use super::wire::{Codec, CodecStats, DecodeError};

/// Most inputs kept in the queue of table 2 (the oldest is dropped).
pub const QUEUE_MAX: usize = 64;
/// Most datagrams waiting for [`Election::poll_transmit`].
pub const TRANSMIT_MAX: usize = 1024;
/// Most events waiting for [`Election::poll_event`].
pub const EVENT_MAX: usize = 1024;

/// What the machine tells its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Run a procedure; answer with [`Election::handle_procedure_result`].
    Run(ProcedureRequest),
    /// The state changed (for tracing).
    StateChanged {
        /// Before.
        from: State,
        /// After.
        to: State,
    },
    /// The coarse role changed (log it).
    RoleChanged {
        /// Before.
        from: Role,
        /// After.
        to: Role,
    },
    /// The master our table names changed.
    MasterChanged {
        /// The new master.
        master: Option<NodeId>,
    },
    /// Our state is not a complete copy and a master exists: request a full
    /// resync (from `freshest`, a synced backup, if the sync layer can, else
    /// from `master`) and report [`Election::handle_resync_complete`].
    ResyncNeeded {
        /// The master.
        master: NodeId,
        /// The freshest synced backup other than us, if any.
        freshest: Option<NodeId>,
    },
    /// (Master) a host's SVC_REQCHECK_TIMER expired, or we replaced it as
    /// master: it is marked dead in the table.
    PeerDead {
        /// The host.
        node: NodeId,
    },
    /// (Master) a host new or marked dead was heard from.
    PeerAlive {
        /// The host.
        node: NodeId,
    },
}

/// A datagram to send, encoded into the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination host (the driver maps it to an address).
    pub dest: NodeId,
    /// Table 1's side, for drivers without a dedicated link.
    pub side: Side,
    /// The message's name.
    pub name: &'static str,
}

/// Errors a driver can cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ElectionError {
    /// A result for a ticket never issued.
    #[error("unknown procedure ticket {0:?}")]
    UnknownTicket(Ticket),
    /// The table refused an input (a machine bug; counted).
    #[error(transparent)]
    Invalid(#[from] InvalidTransition),
}

#[derive(Debug)]
enum Queued {
    Msg(Message),
    Input(Input),
}

#[derive(Clone, Copy, Debug)]
struct Running {
    ticket: Ticket,
    deadline: Instant,
}

/// The hot-failover state machine of one host. See the module docs.
#[derive(Debug)]
pub struct Election {
    cfg: ElectionConfig,
    node: NodeId,
    state: State,
    table: StatusTable,
    own: Freshness,
    codec: Codec,
    timers: [Option<Instant>; 7],
    reqcheck: BTreeMap<NodeId, Instant>,
    last_seen: BTreeMap<NodeId, Instant>,
    /// When each host last acted as master (replied to a check, announced).
    master_proof: BTreeMap<NodeId, Instant>,
    known: BTreeSet<NodeId>,
    next_ticket: u64,
    running: Option<Running>,
    nonce: u32,
    round_first_nonce: u32,
    expecting: Option<Option<NodeId>>,
    retries_left: u8,
    attempt: u32,
    attempt_active: bool,
    pending_checks: Vec<(NodeId, u32)>,
    challenger: Option<(NodeId, u32)>,
    queue: VecDeque<Queued>,
    draining: bool,
    transmits: VecDeque<(NodeId, Body)>,
    events: VecDeque<Event>,
    stats: ElectionStats,
    last_master: Option<NodeId>,
    resync_asked: Option<NodeId>,
    last_role_change: Option<Instant>,
    init_cycles: u64,
    last_invalid: Option<InvalidTransition>,
}

/// The message or host an input is about.
enum Ctx {
    None,
    Msg(Message),
    Peer(NodeId),
}

impl Ctx {
    fn msg(&self) -> Option<&Message> {
        match self {
            Ctx::Msg(m) => Some(m),
            _ => None,
        }
    }
}

impl Election {
    /// A machine in init main state; the first event asks for
    /// `remoteSvcCheck()`.
    pub fn new(cfg: ElectionConfig, now: Instant) -> Result<Election, BoundError> {
        cfg.validate()?;
        let codec =
            Codec::new(cfg.node, &cfg.key, cfg.initial_counter).map_err(|e| BoundError {
                field: "key",
                message: e.to_string(),
            })?;
        let known = cfg.peers.iter().map(|p| p.node).collect();
        let table = StatusTable::bootstrap(
            std::iter::once((cfg.node, cfg.priority))
                .chain(cfg.peers.iter().map(|p| (p.node, p.priority))),
        );
        let mut e = Election {
            node: cfg.node,
            state: State::Init(InitSub::CheckService),
            table,
            own: Freshness::default(),
            codec,
            timers: [None; 7],
            reqcheck: BTreeMap::new(),
            last_seen: BTreeMap::new(),
            master_proof: BTreeMap::new(),
            known,
            next_ticket: 0,
            running: None,
            nonce: 0,
            round_first_nonce: 0,
            expecting: None,
            retries_left: cfg.reply_retries,
            attempt: 0,
            attempt_active: false,
            pending_checks: Vec::new(),
            challenger: None,
            queue: VecDeque::new(),
            draining: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: ElectionStats::default(),
            last_master: None,
            resync_asked: None,
            last_role_change: None,
            init_cycles: 1,
            last_invalid: None,
            cfg,
        };
        e.run(now, Procedure::RemoteSvcCheck);
        Ok(e)
    }

    // ----- inputs -------------------------------------------------------

    /// A datagram from the network. Rejected datagrams are counted (see
    /// [`Election::codec_stats`]) and otherwise ignored.
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) -> Result<(), DecodeError> {
        let msg = self.codec.decode(bytes)?;
        self.handle_message(now, msg);
        Ok(())
    }

    /// An authenticated message (from [`Election::handle_datagram`], or an
    /// in-process transport in tests).
    pub(crate) fn handle_message(&mut self, now: Instant, msg: Message) {
        self.stats.msgs_in += 1;
        if msg.sender == self.node {
            self.stats.ignored += 1;
            return;
        }
        self.last_seen.insert(msg.sender, now);
        self.known.insert(msg.sender);
        // Only a master answers checks or announces a takeover.
        if matches!(
            msg.body,
            Body::SvcCheckReply { .. } | Body::SvcTakeover { .. }
        ) {
            self.master_proof.insert(msg.sender, now);
        }
        if self.is_maintaining_table() {
            if let Body::SvcCheck { report, .. } = &msg.body {
                self.heartbeat(now, msg.sender, *report);
            }
        }
        self.dispatch(now, msg);
    }

    /// The result of a procedure requested by [`Event::Run`].
    pub fn handle_procedure_result(
        &mut self,
        now: Instant,
        ticket: Ticket,
        ok: bool,
    ) -> Result<(), ElectionError> {
        match self.running {
            Some(r) if r.ticket == ticket => {
                self.running = None;
                let input = if ok {
                    Input::ProcedureOk
                } else {
                    Input::ProcedureFailed
                };
                self.step(now, input, Ctx::None)?;
                Ok(())
            }
            _ if ticket.0 <= self.next_ticket => {
                self.stats.stale_results += 1;
                Ok(())
            }
            _ => Err(ElectionError::UnknownTicket(ticket)),
        }
    }

    /// Fire every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((input, ctx)) = self.next_due(now) {
            // Invalid transitions are counted in `step`.
            let _ = self.step(now, input, ctx);
        }
    }

    /// The sync layer applied messages up to `seq` (64-bit, growing within
    /// one master's tenure).
    pub fn handle_sync_progress(&mut self, _now: Instant, seq: u64) {
        self.own.seq = seq;
    }

    /// A full resync finished: our state is a complete copy.
    pub fn handle_resync_complete(&mut self, _now: Instant) {
        self.own.synced = true;
    }

    /// Our copy is incomplete (the sync layer lost messages it cannot
    /// recover, or the master changed and the driver wants a fresh copy).
    pub fn handle_resync_needed(&mut self, _now: Instant) {
        self.own.synced = false;
        self.resync_asked = None;
        self.maybe_ask_resync();
    }

    /// Operator shutdown: leave service (if master) and stop in final state.
    pub fn handle_shutdown(&mut self, now: Instant) -> Result<(), ElectionError> {
        self.step(now, Input::Shutdown, Ctx::None)?;
        Ok(())
    }

    // ----- outputs ------------------------------------------------------

    /// The next datagram, encoded into `buf` (cleared first). Bounded: one
    /// datagram per call.
    pub fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let (dest, body) = self.transmits.pop_front()?;
        self.codec.encode(&body, buf);
        Some(Transmit {
            dest,
            side: body.side(),
            name: body.name(),
        })
    }

    /// The earliest deadline: call [`Election::handle_timeout`] then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers
            .iter()
            .flatten()
            .copied()
            .chain(self.running.map(|r| r.deadline))
            .chain(self.reqcheck.values().copied())
            .min()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ----- queries ------------------------------------------------------

    /// Takes the keys of a key ring: messages are tagged with the newest,
    /// and taken with any (rotation without a restart; see
    /// `crate::sealed`).
    pub fn set_keys(
        &mut self,
        ring: &crate::keyring::Keyring,
    ) -> Result<(), crate::sealed::KeyTooShort> {
        self.codec.set_keys(ring)
    }

    /// This host.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Current coarse role.
    pub fn role(&self) -> Role {
        self.state.role()
    }

    /// In service main state (activating, active, checking), not leaving.
    pub fn is_primary(&self) -> bool {
        self.role() == Role::Primary
    }

    /// Our copy of the status table.
    pub fn table(&self) -> &StatusTable {
        &self.table
    }

    /// The master our table names.
    pub fn master(&self) -> Option<NodeId> {
        self.table.master()
    }

    /// Our state freshness.
    pub fn freshness(&self) -> Freshness {
        self.own
    }

    /// The configuration.
    pub fn config(&self) -> &ElectionConfig {
        &self.cfg
    }

    /// Counters.
    pub fn stats(&self) -> ElectionStats {
        self.stats
    }

    /// The last input the table refused (see
    /// [`ElectionStats::invalid_transitions`]), for the log.
    pub fn last_invalid(&self) -> Option<InvalidTransition> {
        self.last_invalid
    }

    /// The codec's counters (accepted, unauthenticated, malformed, replayed).
    pub fn codec_stats(&self) -> CodecStats {
        self.codec.stats()
    }

    /// Everything `ftfwctl status` shows.
    pub fn status(&self, now: Instant) -> ElectionStatus {
        let ms = |t: Instant| u64::try_from(now.saturating_duration_since(t).as_millis()).ok();
        let peers = self
            .table
            .entries()
            .iter()
            .filter(|e| e.node != self.node)
            .map(|e| PeerStatus {
                node: e.node,
                priority: e.priority,
                role: e.role,
                synced: e.freshness.synced,
                seq: e.freshness.seq,
                master: Some(e.node) == self.table.master(),
                designated: Some(e.node) == self.table.designated(),
                dead: e.dead,
                last_seen_ms_ago: self.last_seen.get(&e.node).and_then(|t| ms(*t)),
            })
            .collect();
        ElectionStatus {
            node: self.node,
            state: self.state.to_string(),
            main_state: self.state.main(),
            sub_state: self.state.sub_name(),
            role: self.role(),
            priority: self.cfg.priority,
            freshness: self.own,
            master: self.table.master(),
            designated: self.table.designated(),
            peers,
            last_role_change_ms_ago: self.last_role_change.and_then(ms),
            init_cycles: self.init_cycles,
            counters: self.stats,
            codec: self.codec.stats(),
        }
    }

    // ----- the step -----------------------------------------------------

    fn dispatch(&mut self, now: Instant, msg: Message) {
        match self.classify(now, &msg) {
            Some(input) => {
                // Invalid transitions are counted in `step`.
                let _ = self.step(now, input, Ctx::Msg(msg));
            }
            None => self.stats.ignored += 1,
        }
    }

    fn step(&mut self, now: Instant, input: Input, ctx: Ctx) -> Result<(), InvalidTransition> {
        let prev = self.state;
        let outcome = match transition(prev, input) {
            Ok(o) => o,
            Err(e) => {
                self.stats.invalid_transitions += 1;
                self.last_invalid = Some(e);
                return Err(e);
            }
        };
        match outcome {
            Outcome::Ignore => self.stats.ignored += 1,
            Outcome::Queue => {
                if self.queue.len() >= QUEUE_MAX {
                    self.queue.pop_front();
                    self.stats.queue_dropped += 1;
                }
                self.stats.queued += 1;
                self.queue.push_back(match ctx {
                    Ctx::Msg(m) => Queued::Msg(m),
                    _ => Queued::Input(input),
                });
            }
            Outcome::Go { next, actions } => {
                if next != prev {
                    self.leave(prev, next);
                }
                self.state = next;
                if next != prev {
                    self.entered(now, prev, next);
                }
                for a in actions {
                    self.apply(now, *a, &ctx);
                }
                self.note_master();
                // Transient states take their guard at once.
                let guard = match next {
                    State::Decide => Some(Input::Decided(self.decide())),
                    State::Backup(BackupSub::Learn) => Some(Input::Learned(self.learned())),
                    State::Backup(BackupSub::Suspect) => Some(Input::Candidacy(self.candidacy())),
                    _ => None,
                };
                if let Some(g) = guard {
                    self.step(now, g, Ctx::None)?;
                }
                if next != prev {
                    self.drain(now);
                }
            }
        }
        Ok(())
    }

    /// Housekeeping when the state changes, before the actions run.
    fn leave(&mut self, prev: State, next: State) {
        if next.awaits() != prev.awaits() {
            self.running = None;
        }
        let keep_self_check = next.main() == MainState::Service;
        for k in TimerKind::ALL {
            if !(keep_self_check && k == TimerKind::SelfCheck) {
                self.timers[k.index()] = None;
            }
        }
        self.expecting = None;
        if prev.main() != next.main() {
            if prev.main() == MainState::Handover {
                self.attempt_active = false;
            }
            if prev.main() == MainState::Service {
                self.reqcheck.clear();
                self.pending_checks.clear();
                self.challenger = None;
            }
        }
    }

    fn entered(&mut self, now: Instant, prev: State, next: State) {
        self.push_event(Event::StateChanged {
            from: prev,
            to: next,
        });
        if matches!(
            next,
            State::Init(InitSub::AwaitReply) | State::Backup(BackupSub::AwaitReply)
        ) {
            self.retries_left = self.cfg.reply_retries;
            self.round_first_nonce = self.nonce.wrapping_add(1);
        }
        if next == State::Init(InitSub::CheckService) {
            self.init_cycles += 1;
        }
        if prev.role() != next.role() {
            self.stats.role_changes += 1;
            self.last_role_change = Some(now);
            self.push_event(Event::RoleChanged {
                from: prev.role(),
                to: next.role(),
            });
        }
    }

    fn drain(&mut self, now: Instant) {
        if self.draining {
            return;
        }
        self.draining = true;
        loop {
            let before = self.state;
            let items: Vec<Queued> = self.queue.drain(..).collect();
            if items.is_empty() {
                break;
            }
            let n = items.len();
            for q in items {
                match q {
                    Queued::Msg(m) => self.dispatch(now, m),
                    Queued::Input(i) => {
                        let _ = self.step(now, i, Ctx::None);
                    }
                }
            }
            // Everything went straight back into the queue: wait for the
            // next state change.
            if self.state == before && self.queue.len() >= n {
                break;
            }
        }
        self.draining = false;
    }

    fn next_due(&mut self, now: Instant) -> Option<(Input, Ctx)> {
        if let Some(r) = self.running {
            if r.deadline <= now {
                self.running = None;
                self.stats.procedure_timeouts += 1;
                return Some((Input::ProcedureFailed, Ctx::None));
            }
        }
        for k in TimerKind::ALL {
            if self.timers[k.index()].is_some_and(|d| d <= now) {
                self.timers[k.index()] = None;
                let input = match k {
                    TimerKind::SvcCheck => Input::SvcCheckTimer,
                    TimerKind::SelfCheck => Input::SelfCheckTimer,
                    TimerKind::Reply => {
                        if self.retries_left > 0 {
                            self.retries_left -= 1;
                            Input::ReplyRetry
                        } else {
                            Input::ReplyTimeout
                        }
                    }
                    TimerKind::Deny => Input::DenyTimeout,
                    TimerKind::Hold => Input::HoldTimer,
                    TimerKind::InitRetry => Input::InitRetryTimer,
                    TimerKind::FaultRecheck => Input::FaultRecheckTimer,
                };
                return Some((input, Ctx::None));
            }
        }
        let due = self
            .reqcheck
            .iter()
            .find(|(_, d)| **d <= now)
            .map(|(n, _)| *n);
        if let Some(node) = due {
            self.reqcheck.remove(&node);
            return Some((Input::ReqCheckTimer, Ctx::Peer(node)));
        }
        None
    }

    // ----- guards -------------------------------------------------------

    fn own_report(&self) -> SelfReport {
        SelfReport {
            priority: self.cfg.priority,
            freshness: self.own,
            role: self.role(),
        }
    }

    fn own_rank(&self) -> RankKey {
        RankKey {
            synced: self.own.synced,
            priority: self.cfg.priority,
            seq: self.own.seq,
            node: self.node,
        }
    }

    fn own_claim(&self) -> ClaimKey {
        ClaimKey {
            synced: self.own.synced,
            priority: self.cfg.priority,
            node: self.node,
        }
    }

    fn is_maintaining_table(&self) -> bool {
        self.state.main() == MainState::Service
            && !matches!(self.state, State::Service(ServiceSub::Leave(..)))
    }
}
