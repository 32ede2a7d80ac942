//! Expectation messages (EXP_NEW / EXP_UPD / EXP_DEL): the engine's side
//! of replicating confirmed expectations (`[sync] expectations`).
//!
//! Expectations are few (a handful per active FTP or TFTP control
//! connection, at most [`EXP_MAX`] pending or in flight), so they travel
//! with the control messages: an expectation message waits in the control
//! queue as [`Ctl::Exp`] naming a slot of a small slab, goes out in the
//! next datagram (control messages flush at once) and is stored in the
//! resend queue like any message, so ACK, NACK and the handshake's
//! requeue treat it exactly like a flow. As with flows there is at most
//! one message per expectation (keyed by master and expected tuple): a
//! newer change replaces a pending one, and an in-flight one is taken out
//! of the resend queue and queued again with the newest kind, so a lost
//! EXP_NEW is never resent after its EXP_DEL.
//!
//! Invariant (as flows.rs): a slot named by the control queue is live and
//! pending; a slot named by a resend entry at index `i` is live with
//! `inflight == Some(i)`; a slot is freed only when neither holds.
//!
//! Bounded: a change that finds the slab or the control queue full is
//! dropped, counted in `tx_overflow` or `ctl_overflow`, and sets the
//! re-export flag (a re-export sends every expectation again).

use std::time::Instant;

use ftfw_dataplane::helper::Expectation;

use super::msg::{Body, FlowKind};
use super::{Codec, Ctl, Engine};

/// Expectation messages pending or in flight, at most.
pub const EXP_MAX: usize = 4096;

/// One expectation message.
#[derive(Clone, Copy, Debug)]
pub(super) struct ExpEntry {
    pub(super) kind: FlowKind,
    pub(super) exp: Expectation,
    /// Sent at least once (a later UPDATE is then not folded into NEW).
    pub(super) sent: bool,
    /// Waiting in the control queue.
    pub(super) pending: bool,
    /// The send index of the copy in the resend queue.
    pub(super) inflight: Option<u64>,
}

/// The slab of expectation messages.
#[derive(Debug, Default)]
pub(super) struct ExpTable {
    slots: Vec<Option<ExpEntry>>,
    free: Vec<u32>,
    live: usize,
}

impl ExpTable {
    fn find(&self, e: &Expectation) -> Option<u32> {
        self.slots
            .iter()
            .position(|s| {
                s.as_ref()
                    .is_some_and(|x| x.exp.master == e.master && x.exp.tuple == e.tuple)
            })
            .and_then(|i| u32::try_from(i).ok())
    }

    fn insert(&mut self, e: ExpEntry) -> u32 {
        self.live += 1;
        if let Some(slot) = self.free.pop() {
            if let Some(s) = self.slots.get_mut(slot as usize) {
                *s = Some(e);
                return slot;
            }
        }
        self.slots.push(Some(e));
        u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
    }

    pub(super) fn get(&self, slot: u32) -> Option<&ExpEntry> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    pub(super) fn get_mut(&mut self, slot: u32) -> Option<&mut ExpEntry> {
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    pub(super) fn remove(&mut self, slot: u32) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            if s.take().is_some() {
                self.live -= 1;
                self.free.push(slot);
            }
        }
    }

    /// Expectation messages pending or in flight.
    pub(super) fn len(&self) -> usize {
        self.live
    }
}

impl<C: Codec> Engine<C> {
    /// Queues an expectation change (NEW when a helper created it, DESTROY
    /// when it was used or timed out; `exp.expires` holds the seconds it
    /// has left). Coalesced per expectation like flow deltas; see the
    /// module docs of `expects.rs` for bounds.
    pub fn push_expect(&mut self, now: Instant, kind: FlowKind, exp: Expectation) {
        if let Some(slot) = self.exps.find(&exp) {
            let Some(e) = self.exps.get_mut(slot) else {
                return;
            };
            e.kind = match (e.kind, kind) {
                (FlowKind::New, FlowKind::Update) if !e.sent => FlowKind::New,
                (_, k) => k,
            };
            e.exp = exp;
            if e.pending {
                return;
            }
            if let Some(idx) = e.inflight.take() {
                self.resend.remove(idx);
            }
            e.pending = true;
            self.queue_exp(now, slot, false);
            return;
        }
        if self.exps.len() >= EXP_MAX {
            self.stats.tx_overflow += 1;
            self.needs_reexport = true;
            return;
        }
        let slot = self.exps.insert(ExpEntry {
            kind,
            exp,
            sent: false,
            pending: true,
            inflight: None,
        });
        self.queue_exp(now, slot, false);
    }

    /// Expectation messages pending or in flight.
    pub fn expect_backlog(&self) -> usize {
        self.exps.len()
    }

    /// Puts the pending slot in the control queue; if that is full the
    /// change is dropped (counted, re-export flagged).
    pub(super) fn queue_exp(&mut self, now: Instant, slot: u32, retx: bool) {
        if self.ctl_q.len() >= self.cfg.ctl_queue_max {
            self.stats.ctl_overflow += 1;
            self.needs_reexport = true;
            self.unqueue_exp(slot);
            return;
        }
        self.ctl_q.push_back((Ctl::Exp(slot), retx));
        self.note_queued(now);
    }

    /// The slot is no longer pending (dropped from the control queue).
    pub(super) fn unqueue_exp(&mut self, slot: u32) {
        if let Some(e) = self.exps.get_mut(slot) {
            e.pending = false;
            if e.inflight.is_none() {
                self.exps.remove(slot);
            }
        }
    }

    /// The message at `idx` for the expectation in `slot` no longer needs
    /// an acknowledgement.
    pub(super) fn forget_exp(&mut self, slot: u32, idx: u64) {
        let Some(e) = self.exps.get_mut(slot) else {
            return;
        };
        if e.inflight == Some(idx) {
            e.inflight = None;
        }
        if !e.pending && e.inflight.is_none() {
            self.exps.remove(slot);
        }
    }

    /// A resend entry at `idx` for `slot` goes back to the control queue.
    pub(super) fn requeue_exp(&mut self, now: Instant, slot: u32, idx: u64) {
        let Some(e) = self.exps.get_mut(slot) else {
            return;
        };
        if e.inflight != Some(idx) {
            return;
        }
        e.inflight = None;
        if e.pending {
            return;
        }
        e.pending = true;
        self.queue_exp(now, slot, true);
    }

    /// The body of a queued control item (`None`: a stale expectation
    /// slot, which cannot happen by the invariant, and is dropped).
    pub(super) fn ctl_body(&self, c: Ctl) -> Option<Body> {
        match c {
            Ctl::Exp(slot) => self.exps.get(slot).map(|e| Body::Expect {
                kind: e.kind,
                exp: e.exp,
            }),
            c => c.body(),
        }
    }

    /// The expectation message in `slot` went out with send index `idx`.
    pub(super) fn sent_exp(&mut self, slot: u32, idx: u64, reliable: bool) -> bool {
        let Some(e) = self.exps.get_mut(slot) else {
            return false;
        };
        e.pending = false;
        e.sent = true;
        if reliable {
            e.inflight = Some(idx);
            true
        } else {
            if e.inflight.is_none() {
                self.exps.remove(slot);
            }
            false
        }
    }
}
