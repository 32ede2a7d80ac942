//! The FT-FW protocol engine, sans-IO.
//!
//! The driver feeds it flow deltas ([`Engine::push_delta`], [`Engine::push_bulk`]),
//! received datagrams ([`Engine::handle_datagram`]) and timer expiries
//! ([`Engine::handle_timeout`]), always with the current time; it takes out
//! datagrams ([`Engine::poll_transmit`]), the next deadline
//! ([`Engine::poll_timeout`]) and events for the external cache
//! ([`Engine::poll_event`]).
//!
//! # Behaviour (ftfw-wire.md section 7), and where it deviates from conntrackd
//! - One sequence counter for every message sent; retransmissions get a fresh
//!   number and carry the flow's *current* state.
//! - Per-flow coalescing: at most one message per flow is pending or in
//!   flight. The type is decided by coalescing: the newest kind wins, except
//!   that an UPDATE on a not-yet-sent NEW stays NEW. A flow destroyed before
//!   its NEW went out is **sent as DESTROY** (never silently dropped): the
//!   peer may know the key from an earlier incarnation of the flow, and a
//!   DESTROY of an unknown flow is harmless.
//! - Receiver tracking is 7.2 exactly; `lost` counts the real gap size.
//! - HELLO: the first HELLO of a peer incarnation re-bases our view of the
//!   peer and emits [`Event::PeerRestarted`]. Further HELLO-flagged messages
//!   of the same incarnation (the peer sets HELLO until it sees our
//!   HELLO_BACK) are tracked like any other message, and an old duplicate of
//!   one is dropped as "before" instead of re-basing (conntrackd would
//!   re-base, which lets a delayed duplicate re-apply old state).
//! - An ACK `[from, to]` frees that range; entries still stored *before*
//!   `from` were skipped by the peer (the message and the NACK for it were
//!   lost, or only the ACK was): they are sent again at once, as a NACK
//!   would have them. Otherwise they would stay until the resend queue
//!   overflows, and "everything up to here is acknowledged" (defer, the
//!   planned handover) could not be decided meanwhile.
//! - Tail-loss probe (`probe_after`, off by default as in conntrackd): an
//!   ALIVE when something is unacknowledged and no ACK made progress for a
//!   while, so the peer notices a lost last datagram and NACKs it.
//! - Our resend queue is emptied only on a *new* peer incarnation, and only
//!   if our own handshake was DONE; we then go back to SAY. When we reach
//!   DONE (HELLO_BACK seen) every flow and RESYNC still unacknowledged is
//!   queued again: messages sent before the peer started tracking us can be
//!   lost without leaving a gap the peer could NACK. Stored ACK/NACK entries
//!   stay stored.
//! - Receiving HELLO also sets HELLO_BACK on our next message, once.
//! - Expectation messages (EXP_NEW / EXP_UPD / EXP_DEL,
//!   [`Engine::push_expect`], received as [`Event::Expect`]) travel with
//!   the control messages and are acknowledged, NACKed and requeued like
//!   flows, one message per expectation (see `expects.rs`).
//! - Replayed HELLO (issue 16): a HELLO whose number is not after the last
//!   accepted one, while the current incarnation is evidently alive (a
//!   message of it accepted less than an alive interval ago), is stale, not
//!   a restart (conntrackd re-bases on any HELLO). A genuine restart below
//!   the old numbers (usual: conntrackd starts at the Unix time and sends at
//!   least an ALIVE a second) is taken once the old incarnation has been
//!   silent for an alive interval. What plain mode cannot tell: a replayed
//!   HELLO while the peer is silent, or one from an older incarnation with a
//!   number after the current one; the header has no freshness but the
//!   sequence number, so only authentication can.
//! - Out of sync (not in conntrackd, which stays stuck until a restart):
//!   when every message from the peer has been "before" (or a stale HELLO)
//!   for [`OUT_OF_SYNC_INTERVALS`] alive intervals, more than that many of
//!   them and none accepted, our receiver state is wrong (typically a
//!   forged or corrupted datagram with a far-ahead sequence number was
//!   accepted as a gap). The message that shows it is accepted and re-bases
//!   the tracker (as a HELLO would; a HELLO message takes the restart
//!   path), a RESYNC request is queued, [`Event::OutOfSync`] is emitted and
//!   `out_of_sync_resyncs` counted. Purely local: the peer sees only an ACK
//!   of its current numbers and a RESYNC, which conntrackd answers as
//!   usual. A forged future number thus stalls reception for at most
//!   [`OUT_OF_SYNC_INTERVALS`] alive intervals after the peer's next
//!   message (plus the gap between its messages, at most one interval for
//!   an idle conntrackd, which sends ALIVE), and recoveries (each a RESYNC
//!   request to the peer) cannot come faster than one per that many
//!   intervals, since each needs a fresh streak. In plain mode an attacker
//!   who can keep forging one datagram per period can keep reception
//!   stalled; only authentication stops that.
//!
//! # Best effort (conntrackd's NOTRACK)
//! With [`Reliability::BestEffort`] the engine keeps the sequence numbers,
//! HELLO/HELLO_BACK, ALIVE and RESYNC, but drops the reliability: a gap is
//! counted in `lost` and the message after it applied, no ACK or NACK is
//! ever sent, nothing is stored for retransmission, and a received ACK or
//! NACK is counted (`acks_in`, `nacks_in`) and otherwise ignored. The
//! FT-FW paper (section 7.2) compares FT-FW with exactly this.
//!
//! # Bounded queues and recovery
//! - Transmit queue (pending flows, `tx_queue_max`): a delta for a new flow
//!   that does not fit is dropped, counted, and sets the re-export flag
//!   ([`Engine::take_needs_reexport`]). A re-export (bulk) restores creations
//!   and updates; a DESTROY lost this way stays in the peer's external cache
//!   until its own expiry, as with conntrackd.
//! - Resend queue (`resend_queue_max`): the oldest entry is dropped and
//!   counted (as conntrackd). A later NACK that reaches into dropped entries
//!   is counted (`nack_unrecoverable`); only with
//!   [`EngineConfig::nack_reexport`] (authenticated peers) does it set the
//!   re-export flag.
//! - What a NACK (or an ACK skipping entries) makes us send again is paid
//!   from a reply budget tied to the bytes received from the peer (see
//!   `budget.rs`); the rest of the range follows as the budget refills.
//! - Control queue (`ctl_queue_max`): a new control message that does not
//!   fit is dropped and counted; a dropped NACK or RESYNC is replaced by a
//!   RESYNC request as soon as there is room.
//! - Event queue (`event_queue_max`): an event that does not fit is dropped
//!   and counted, and we ask the peer for a RESYNC.
mod budget;
mod codec;
mod expects;
mod flows;
mod hash;
mod msg;
mod resend;
mod rx;
mod seq;
mod stats;
mod timers;
mod tx;

#[cfg(test)]
mod expect_tests;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use ftfw_dataplane::flow::FlowState;

pub use codec::{Codec, CodecError};
pub use expects::EXP_MAX;
pub use hash::{KeyHasher, KeyState};
pub use msg::{Body, FlowKind, Msg};
pub use seq::{after, before, between};
pub use stats::EngineStats;

/// Engine configuration.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Link MTU; datagram payloads stay strictly below `mtu - 28`.
    pub mtu: usize,
    /// ACKWindowSize: send an ACK after this many in-sync messages.
    pub ack_window: u32,
    /// ALIVE/ACK timer (conntrackd: 1 s fixed). Clamped to 10 ms ..= 1 h.
    pub alive_interval: Duration,
    /// A partially filled datagram is sent at most this long after the first
    /// message in it was queued (at most 1 s).
    pub flush_delay: Duration,
    /// ResendQueueSize: entries kept for retransmission.
    pub resend_queue_max: usize,
    /// Flows that may wait for transmission.
    pub tx_queue_max: usize,
    /// Control messages that may wait for transmission.
    pub ctl_queue_max: usize,
    /// Events that may wait for the driver.
    pub event_queue_max: usize,
    /// Sequence number of our first message (conntrackd: Unix time).
    pub initial_seq: u32,
    /// FT-FW (ACK/NACK and retransmission) or best effort (NOTRACK).
    pub reliability: Reliability,
    /// Prompt ACK: acknowledge in-sequence flow or RESYNC messages no
    /// later than this after the first of them arrived unacknowledged,
    /// instead of waiting for the ACK window or the alive timer (a peer
    /// that defers new flows until they are acknowledged needs this).
    /// When no ACK went out within the last `ack_delay`, the message is
    /// acknowledged at once: an isolated change (a deferred first packet,
    /// a synchronous write) waits for no timer, and a burst still gets
    /// about one ACK per `ack_delay`.
    /// ACK, NACK and ALIVE messages never start the delay, so two prompt
    /// peers do not ACK each other's ACKs forever. `None`: off
    /// (conntrackd's behaviour). At most 1 s. Ignored in best effort.
    pub ack_delay: Option<Duration>,
    /// Tail-loss probe: while something sent is unacknowledged and no ACK
    /// has made progress for this long, send an ALIVE (it carries a
    /// sequence number, so the peer sees the gap a lost last datagram left
    /// and NACKs it), then again after twice as long, up to the alive
    /// interval. Without it such a loss is noticed only at the next
    /// message or ALIVE. `None`: off (conntrackd's behaviour). Ignored in
    /// best effort.
    pub probe_after: Option<Duration>,
    /// Whether a NACK of entries already dropped from the resend queue
    /// asks for a re-export ([`Engine::take_needs_reexport`]). Off by
    /// default, as in conntrackd (which resends only what its queue
    /// holds): in plain mode anyone who can send from the peer's address
    /// could make us send the whole table with 16 bytes. The driver turns
    /// it on only for authenticated peers.
    pub nack_reexport: bool,
    /// Least time between two re-exports that NACKs of already-dropped
    /// entries ask for (with `nack_reexport`): the first such NACK
    /// re-exports the table (the peer really missed something), later ones
    /// within this time are counted (`nack_reexport_suppressed`) and not
    /// answered, so a stream of small NACKs cannot make us send the whole
    /// table again and again.
    pub nack_reexport_holdoff: Duration,
    /// Reply budget (see `budget.rs`): bytes we may send again per byte
    /// received from the peer.
    pub reply_factor: u64,
    /// Reply budget: bytes per second it refills with time.
    pub reply_rate: u64,
    /// Reply budget: the most it holds (and what it starts with).
    pub reply_burst: u64,
}

/// Entries taken out of the resend queue to be sent again, per requeue:
/// the oldest original index among them, and the send index by which all
/// of them had gone out again (`None` while some still wait in the
/// transmit queues). Bounded: the oldest two records merge when full.
#[derive(Clone, Debug, Default)]
struct RequeueHorizon {
    records: VecDeque<(u64, Option<u64>)>,
}

impl RequeueHorizon {
    const MAX: usize = 64;

    fn add(&mut self, from: u64) {
        if self.records.len() >= Self::MAX {
            if let (Some((f0, h0)), Some((f1, h1))) =
                (self.records.pop_front(), self.records.pop_front())
            {
                let h = match (h0, h1) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
                self.records.push_front((f0.min(f1), h));
            }
        }
        self.records.push_back((from, None));
    }

    /// Everything queued has been sent, up to `next_idx`.
    fn drained(&mut self, next_idx: u64) {
        for r in self.records.iter_mut().filter(|r| r.1.is_none()) {
            r.1 = Some(next_idx);
        }
    }

    /// Forgets the records whose retransmissions are all acknowledged.
    fn prune(&mut self, first_unacked: Option<u64>) {
        self.records
            .retain(|(_, h)| h.is_none_or(|h| first_unacked.is_some_and(|f| f < h)));
    }

    /// The send index below which everything must be acknowledged for a
    /// mark at `idx` to hold (`None`: some retransmission is not even sent).
    fn need(&self, idx: u64) -> Option<u64> {
        self.records
            .iter()
            .filter(|(f, _)| *f < idx)
            .try_fold(idx, |n, (_, h)| h.map(|h| n.max(h)))
    }
}

/// Whether the engine makes delivery reliable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reliability {
    /// FT-FW: ACK window, NACK of gaps, resend queue.
    #[default]
    Ftfw,
    /// conntrackd's NOTRACK: sequence numbers count losses, nothing is
    /// acknowledged or retransmitted (see the module docs).
    BestEffort,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            mtu: 1500,
            ack_window: 300,
            alive_interval: Duration::from_secs(1),
            flush_delay: Duration::from_micros(200),
            resend_queue_max: 131_072,
            tx_queue_max: 65_536,
            ctl_queue_max: 4096,
            event_queue_max: 65_536,
            initial_seq: 0,
            reliability: Reliability::Ftfw,
            ack_delay: None,
            probe_after: None,
            nack_reexport: false,
            nack_reexport_holdoff: Duration::from_secs(10),
            reply_factor: 10,
            reply_rate: 64 * 1024,
            reply_burst: 64 * 1024,
        }
    }
}

/// What the engine tells its driver.
// Boxing the state would cost an allocation per received flow.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A flow state received from the peer, for the external cache.
    Apply {
        /// NEW replaces, UPDATE creates or updates, DESTROY removes.
        kind: FlowKind,
        /// The state.
        state: FlowState,
    },
    /// The peer asked for our whole table: answer with [`Engine::push_bulk`].
    ResyncRequested,
    /// An expectation received from the peer (`exp.expires`: seconds
    /// left), for the external expectation cache.
    Expect {
        /// NEW replaces, UPDATE creates or updates, DESTROY removes.
        kind: FlowKind,
        /// The expectation.
        exp: ftfw_dataplane::helper::Expectation,
    },
    /// A new incarnation of the peer said HELLO.
    PeerRestarted,
    /// Every message from the peer was stale for
    /// [`OUT_OF_SYNC_INTERVALS`] alive intervals: the engine re-based on
    /// the peer's current sequence number and queued a RESYNC request
    /// (what was missed meanwhile comes back in its answer).
    OutOfSync,
}

/// Alive intervals during which every message from the peer must be stale
/// (while it keeps sending) before the engine decides that its view of the
/// peer's sequence is wrong and re-bases (see [`Event::OutOfSync`]).
pub const OUT_OF_SYNC_INTERVALS: u32 = 3;

/// Our side of the HELLO handshake (7.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelloState {
    /// Nothing sent yet.
    Init,
    /// Every message carries HELLO until a HELLO_BACK arrives.
    Say,
    /// The peer saw our HELLO.
    Done,
}

/// A control message as queued and stored (small and `Copy`, unlike
/// [`Body`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ctl {
    Ack {
        from: u32,
        to: u32,
    },
    Nack {
        from: u32,
        to: u32,
    },
    Resync,
    Alive,
    /// An expectation message, by its slot in the engine's expectation
    /// slab (`expects.rs`).
    Exp(u32),
}

impl Ctl {
    /// The body of a control message (`None` for an expectation, whose
    /// body is in the slab: see `Engine::ctl_body`).
    fn body(self) -> Option<Body> {
        Some(match self {
            Ctl::Ack { from, to } => Body::Ack { from, to },
            Ctl::Nack { from, to } => Body::Nack { from, to },
            Ctl::Resync => Body::Resync,
            Ctl::Alive => Body::Alive,
            Ctl::Exp(_) => return None,
        })
    }
}

/// What the resend queue stores: a flow by its slot in the flow table, or
/// a control message.
#[derive(Clone, Copy, Debug)]
enum Stored {
    Flow(u32),
    Ctl(Ctl),
}

/// The FT-FW protocol engine for one peer. See the module documentation.
pub struct Engine<C: Codec> {
    cfg: EngineConfig,
    /// `None` only while [`Engine::handle_datagram`] runs the decoder.
    codec: Option<C>,
    // --- transmit side (tx.rs) ---
    flows: flows::FlowTable,
    /// Expectation messages pending or in flight (`expects.rs`).
    exps: expects::ExpTable,
    /// Slots of the flows waiting for transmission, in order.
    data_q: VecDeque<u32>,
    /// Control messages and whether each is a retransmission.
    ctl_q: VecDeque<(Ctl, bool)>,
    /// Resend queue keyed by send index (a u64 that never wraps).
    resend: resend::ResendQueue,
    /// Reused buffer for entries taken out of the resend queue.
    taken: Vec<(u64, Stored)>,
    /// Messages sent so far; the next message gets `initial_seq + next_idx`.
    next_idx: u64,
    /// Entries with an index below this may have been dropped unsent.
    dropped_upto: u64,
    /// When the oldest message still queued was queued.
    first_queued: Option<Instant>,
    /// A RESYNC must be queued as soon as the control queue has room.
    resync_pending: bool,
    /// Our handshake reached DONE with a RESYNC request unacknowledged:
    /// at this time, if the peer still has not acknowledged it, it is sent
    /// again (one RESYNC per start: the peer usually got it with our
    /// HELLO, and acknowledges it within an ALIVE interval).
    resync_recheck_at: Option<Instant>,
    /// When an unrecoverable NACK last asked for a re-export.
    last_nack_reexport: Option<Instant>,
    hello: HelloState,
    say_hello_back: bool,
    // --- receive side (rx.rs) ---
    rx: rx::RxTracker,
    // --- timers (timers.rs) ---
    alive_at: Instant,
    /// Prompt ACK deadline (with [`EngineConfig::ack_delay`]).
    ack_at: Option<Instant>,
    /// When the last ACK was queued (prompt ACK: an isolated message is
    /// acknowledged at once, see [`EngineConfig::ack_delay`]).
    last_ack_at: Option<Instant>,
    /// Tail-loss probe deadline and how many probes went out since the
    /// last ACK progress (see [`EngineConfig::probe_after`]).
    probe_at: Option<Instant>,
    probes_since_ack: u32,
    /// Where requeued entries went (see [`Engine::acked_below`]).
    requeue: RequeueHorizon,
    events: VecDeque<Event>,
    /// When the first of the peer's messages rejected as stale since the
    /// last accepted one arrived, and how many there were.
    stale_since: Option<Instant>,
    stale_count: u32,
    /// When a message from the peer was last accepted.
    accepted_at: Option<Instant>,
    needs_reexport: bool,
    /// What NACKs may make us send again (see `budget.rs`).
    budget: budget::ReplyBudget,
    stats: EngineStats,
}

impl<C: Codec> Engine<C> {
    /// A fresh engine (HELLO state INIT, nothing received yet).
    pub fn new(mut cfg: EngineConfig, codec: C, now: Instant) -> Self {
        // Clamped so that deadline arithmetic can never overflow.
        cfg.alive_interval = cfg
            .alive_interval
            .clamp(Duration::from_millis(10), Duration::from_secs(3600));
        cfg.flush_delay = cfg.flush_delay.min(Duration::from_secs(1));
        cfg.ack_delay = cfg.ack_delay.map(|d| d.min(Duration::from_secs(1)));
        cfg.ack_window = cfg.ack_window.max(1);
        cfg.resend_queue_max = cfg.resend_queue_max.max(1);
        cfg.ctl_queue_max = cfg.ctl_queue_max.max(4);
        // The budget must cover at least one message of any size.
        cfg.reply_burst = cfg.reply_burst.max(cfg.mtu as u64);
        let rx = rx::RxTracker::new(cfg.ack_window);
        // The ring spans at most twice the entries kept (see resend.rs).
        let resend_span = cfg.resend_queue_max.saturating_mul(2);
        let budget = budget::ReplyBudget::new(cfg.reply_burst, now);
        Engine {
            alive_at: now + cfg.alive_interval,
            ack_at: None,
            last_ack_at: None,
            probe_at: None,
            probes_since_ack: 0,
            requeue: RequeueHorizon::default(),
            cfg,
            codec: Some(codec),
            flows: flows::FlowTable::new(),
            exps: expects::ExpTable::default(),
            data_q: VecDeque::new(),
            ctl_q: VecDeque::new(),
            resend: resend::ResendQueue::new(resend_span),
            taken: Vec::new(),
            next_idx: 0,
            dropped_upto: 0,
            first_queued: None,
            resync_pending: false,
            resync_recheck_at: None,
            last_nack_reexport: None,
            hello: HelloState::Init,
            say_hello_back: false,
            rx,
            events: VecDeque::new(),
            stale_since: None,
            stale_count: 0,
            accepted_at: None,
            needs_reexport: false,
            budget,
            stats: EngineStats::default(),
        }
    }

    /// Whether ACK/NACK and retransmission are on (FT-FW).
    fn reliable(&self) -> bool {
        self.cfg.reliability == Reliability::Ftfw
    }

    /// The configuration in use (after clamping).
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The next event for the driver, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Counters and queue depths.
    pub fn stats(&self) -> EngineStats {
        let mut s = self.stats;
        s.resend_queue_depth = self.resend.len();
        s.tx_queue_depth = self.data_q.len();
        s.ctl_queue_depth = self.ctl_q.len();
        s.event_queue_depth = self.events.len();
        s
    }

    /// Messages sent so far (a send index that never wraps).
    pub fn sent_index(&self) -> u64 {
        self.next_idx
    }

    /// Whether every message with a send index below `idx` has been
    /// acknowledged by the peer (or dropped from the resend queue by an
    /// overflow, which is counted and repaired by a re-export).
    ///
    /// While anything waits in the transmit queues nothing counts as
    /// acknowledged: a NACK (or a range the peer skipped) takes entries out
    /// of the resend queue and queues them again, and until they are sent
    /// and acknowledged under their new numbers they are not known to have
    /// arrived.
    /// Requeued entries get new send indexes when they go out again, so a
    /// mark above the oldest of them is satisfied only once everything
    /// sent up to their retransmission is acknowledged too.
    pub fn acked_below(&self, idx: u64) -> bool {
        if !(self.data_q.is_empty() && self.ctl_q.is_empty()) {
            return false;
        }
        let Some(need) = self.requeue.need(idx) else {
            return false;
        };
        self.resend.first_index().is_none_or(|first| first >= need)
    }

    /// The sequence number our next message will carry.
    pub fn seq_out(&self) -> u32 {
        self.seq_of(self.next_idx)
    }

    /// The last peer sequence number accepted, if any.
    pub fn last_seq_in(&self) -> Option<u32> {
        self.rx.last()
    }

    /// Our HELLO handshake state.
    pub fn hello_state(&self) -> HelloState {
        self.hello
    }

    /// Whether a queue overflowed in a way only a full re-export (bulk) can
    /// repair; clears the flag.
    pub fn take_needs_reexport(&mut self) -> bool {
        std::mem::take(&mut self.needs_reexport)
    }

    /// How many more distinct flows the transmit queue accepts now.
    pub fn tx_space(&self) -> usize {
        self.cfg.tx_queue_max.saturating_sub(self.data_q.len())
    }

    /// Queues a CTL RESYNC asking the peer for its whole table.
    pub fn request_resync(&mut self, now: Instant) {
        self.push_ctl(now, Ctl::Resync, false);
    }

    fn push_event(&mut self, ev: Event) {
        if self.events.len() >= self.cfg.event_queue_max {
            self.stats.event_overflow += 1;
            self.resync_pending = true;
            return;
        }
        self.events.push_back(ev);
    }
}
