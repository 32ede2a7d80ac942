//! Transmit side: the per-flow coalescing transmit queue, the control queue,
//! the resend queue, and datagram batching.
//!
//! The resend queue is keyed by a 64-bit send index that never wraps; a
//! 32-bit sequence number is mapped to its index through the wraparound-safe
//! distance from the next sequence number, so ACK and NACK ranges become
//! plain integer ranges.

use std::time::Instant;

use ftfw_dataplane::flow::FlowState;

use super::flows::{FlowEntry, Slot};
use super::msg::{FlowKind, Msg};
use super::seq;
use super::{Codec, Ctl, Engine, HelloState, Stored};

/// IPv4 + UDP header bytes kept out of every datagram (ftfw-wire.md 2).
const HEADROOM: usize = 28;

/// The kind a pending flow message gets when `new` arrives on top of `old`.
fn merge_kind(old: FlowKind, sent: bool, new: FlowKind) -> FlowKind {
    match (old, new) {
        (FlowKind::New, FlowKind::Update) if !sent => FlowKind::New,
        (_, k) => k,
    }
}

impl<C: Codec> Engine<C> {
    pub(super) fn seq_of(&self, idx: u64) -> u32 {
        // Sequence numbers are the send index modulo 2^32 by definition.
        #[allow(clippy::cast_possible_truncation)]
        let low = idx as u32;
        self.cfg.initial_seq.wrapping_add(low)
    }

    /// The send index of `seq`, relative to the next one (may be negative or
    /// beyond what was sent).
    fn idx_of(&self, s: u32) -> i64 {
        let next = i64::try_from(self.next_idx).unwrap_or(i64::MAX);
        next.saturating_add(i64::from(seq::diff(s, self.seq_of(self.next_idx))))
    }

    /// The sent indexes covered by `[from, to]`, if any.
    fn idx_range(&self, from: u32, to: u32) -> Option<(u64, u64)> {
        if self.next_idx == 0 {
            return None;
        }
        let lo = self.idx_of(from).max(0);
        let hi = self
            .idx_of(to)
            .min(i64::try_from(self.next_idx - 1).unwrap_or(i64::MAX));
        let (lo, hi) = (u64::try_from(lo).ok()?, u64::try_from(hi).ok()?);
        (lo <= hi).then_some((lo, hi))
    }

    pub(super) fn note_queued(&mut self, now: Instant) {
        if self.first_queued.is_none() {
            self.first_queued = Some(now);
        }
    }

    /// Queues one flow delta, coalescing with whatever is pending or in
    /// flight for the same flow (at most one message per flow). O(1): one
    /// probe of the index finds the flow's entry or the place for one.
    ///
    /// If the flow is new to the transmit queue and the queue is full, the
    /// delta is dropped, counted in `tx_overflow`, and the re-export flag is
    /// set.
    #[inline]
    pub fn push_delta(&mut self, now: Instant, kind: FlowKind, state: FlowState) {
        let _ = self.push_flow(now, kind, state, false);
    }

    /// Queues the answer to a RESYNC (or a startup bulk): every state as an
    /// ordinary NEW data message. Stops when the transmit queue is full and
    /// returns how many states it took; feed the rest later (see
    /// [`Engine::tx_space`]). Pass `iter.by_ref()` to keep the remainder.
    pub fn push_bulk(
        &mut self,
        now: Instant,
        states: impl IntoIterator<Item = FlowState>,
    ) -> usize {
        let mut n = 0;
        for st in states {
            if !self.push_flow(now, FlowKind::New, st, true) {
                break;
            }
            n += 1;
        }
        n
    }

    /// Returns false if the delta could not be queued. Inlined: the state
    /// is moved once, not once per call level.
    #[inline]
    fn push_flow(&mut self, now: Instant, kind: FlowKind, state: FlowState, bulk: bool) -> bool {
        let full = self.data_q.len() >= self.cfg.tx_queue_max;
        let h = self.flows.hash(&state.key);
        let slot = match self.flows.entry(h, &state.key) {
            Slot::Taken(slot) => {
                let Some(e) = self.flows.get_mut(slot) else {
                    return false;
                };
                e.kind = merge_kind(e.kind, e.sent, kind);
                e.state = state;
                if e.pending {
                    return true;
                }
                if full {
                    // Keep the newest state for a NACK resend of the message
                    // in flight, but we cannot queue a new one.
                    if bulk {
                        return false;
                    }
                    self.stats.tx_overflow += 1;
                    self.needs_reexport = true;
                    return false;
                }
                // Conntrackd: a changed object leaves the resend queue and
                // goes back to the transmit queue.
                e.pending = true;
                if let Some(idx) = e.inflight.take() {
                    self.resend.remove(idx);
                }
                slot
            }
            Slot::Free(place) => {
                if full {
                    if !bulk {
                        self.stats.tx_overflow += 1;
                        self.needs_reexport = true;
                    }
                    return false;
                }
                place.insert(FlowEntry {
                    state,
                    kind,
                    sent: false,
                    pending: true,
                    retx: false,
                    live: true,
                    inflight: None,
                    hash: h,
                })
            }
        };
        self.data_q.push_back(slot);
        self.note_queued(now);
        true
    }

    /// Queues a control message (bounded; see the module docs for overflow).
    pub(super) fn push_ctl(&mut self, now: Instant, body: Ctl, retx: bool) {
        if self.ctl_q.len() >= self.cfg.ctl_queue_max {
            self.stats.ctl_overflow += 1;
            if matches!(body, Ctl::Nack { .. } | Ctl::Resync) {
                self.resync_pending = true;
            }
            return;
        }
        self.ctl_q.push_back((body, retx));
        self.note_queued(now);
    }

    fn queue_pending_resync(&mut self, now: Instant) {
        if self.resync_pending && self.ctl_q.len() < self.cfg.ctl_queue_max {
            self.resync_pending = false;
            self.push_ctl(now, Ctl::Resync, false);
        }
    }

    /// Stores a sent message for retransmission, dropping the oldest entry
    /// when full.
    fn store(&mut self, idx: u64, item: Stored) {
        if self.resend.len() >= self.cfg.resend_queue_max {
            if let Some((old, it)) = self.resend.pop_first() {
                self.stats.resend_overflow += 1;
                self.dropped_upto = self.dropped_upto.max(old + 1);
                match it {
                    Stored::Flow(slot) => self.forget_inflight(slot, old),
                    Stored::Ctl(Ctl::Exp(slot)) => self.forget_exp(slot, old),
                    Stored::Ctl(_) => {}
                }
            }
        }
        self.resend.push(idx, item);
    }

    /// The message at `idx` for the flow in `slot` no longer needs an
    /// acknowledgement.
    fn forget_inflight(&mut self, slot: u32, idx: u64) {
        let Some(e) = self.flows.get_mut(slot) else {
            return;
        };
        if e.inflight == Some(idx) {
            e.inflight = None;
        }
        if !e.pending && e.inflight.is_none() {
            self.flows.remove(slot);
        }
    }

    /// Takes the resend entries in `[lo, hi]` out of the queue, in order,
    /// into `self.taken` (cleared first). O(k) for a range of k indexes.
    fn take_range(&mut self, lo: u64, hi: u64) -> Vec<(u64, Stored)> {
        let mut out = std::mem::take(&mut self.taken);
        out.clear();
        self.resend.take_range(lo, hi, &mut out);
        out
    }

    /// A received ACK: frees the entries in `[from, to]`. Entries before
    /// `from` still stored were skipped by the peer: their message was lost
    /// and so was the NACK the peer sent for it (or only their ACK was
    /// lost). No NACK will ever come for them, and they would keep
    /// [`super::Engine::acked_below`] false until the resend queue
    /// overflows: they go back to the transmit queues, flows with their
    /// current state, as a NACK would send them. Work is bounded by the
    /// entries freed or requeued.
    pub(super) fn on_ack(&mut self, now: Instant, from: u32, to: u32) {
        self.stats.acks_in += 1;
        if !self.reliable() {
            // Best effort: nothing is stored, so nothing to free.
            return;
        }
        let Some((lo, hi)) = self.idx_range(from, to) else {
            return;
        };
        let mut freed = self.take_range(lo, hi);
        self.stats.acked += freed.len() as u64;
        if !freed.is_empty() {
            // The peer got these: it may get as much again (see budget.rs).
            let avg = self.stats.bytes_out / self.stats.msgs_out.max(1);
            self.budget
                .earn(avg.saturating_mul(freed.len() as u64), self.cfg.reply_burst);
            self.requeue.prune(self.resend.first_index());
            // Progress: the probe starts over from the ACK.
            self.probes_since_ack = 0;
            self.probe_at = self.cfg.probe_after.map(|a| now + a);
        }
        for (idx, it) in freed.drain(..) {
            match it {
                Stored::Flow(slot) => self.forget_inflight(slot, idx),
                Stored::Ctl(Ctl::Exp(slot)) => self.forget_exp(slot, idx),
                Stored::Ctl(_) => {}
            }
        }
        self.taken = freed;
        if let Some(first) = self.resend.first_index() {
            if first < lo {
                let n = self.take_reply(now, first, lo - 1);
                self.stats.skipped_requeued += n as u64;
            }
        }
    }

    /// A received NACK: entries in `[from, to]` go back to the transmit
    /// queues, to be sent with new sequence numbers (flows with their current
    /// state), as far as the reply budget covers (the rest is owed).
    pub(super) fn on_nack(&mut self, now: Instant, from: u32, to: u32) {
        self.stats.nacks_in += 1;
        if !self.reliable() {
            // Best effort: counted, never answered.
            self.stats.nacks_ignored += 1;
            return;
        }
        let Some((lo, hi)) = self.idx_range(from, to) else {
            return;
        };
        if lo < self.dropped_upto {
            self.stats.nack_unrecoverable += 1;
            if self.cfg.nack_reexport {
                let due = self.last_nack_reexport.is_none_or(|t| {
                    now.saturating_duration_since(t) >= self.cfg.nack_reexport_holdoff
                });
                if due {
                    self.last_nack_reexport = Some(now);
                    self.needs_reexport = true;
                } else {
                    self.stats.nack_reexport_suppressed += 1;
                }
            }
        }
        self.take_reply(now, lo, hi);
    }

    /// Takes the stored entries of `[lo, hi]` out of the resend queue to be
    /// sent again, oldest first, as far as the reply budget covers; the
    /// rest of the range is owed (see `budget.rs`). Returns how many went
    /// back to the transmit queues.
    fn take_reply(&mut self, now: Instant, lo: u64, hi: u64) -> usize {
        self.budget
            .refill(now, self.cfg.reply_rate, self.cfg.reply_burst);
        let mut out = std::mem::take(&mut self.taken);
        out.clear();
        let rest = self
            .resend
            .take_range_max(lo, hi, self.budget.entries(), &mut out);
        let n = out.len();
        self.budget.spend(n);
        if let Some(r) = rest {
            self.budget.owe(r, hi);
            self.stats.replies_limited += 1;
        }
        // A RESYNC request taken goes again now: no recheck needed.
        if out
            .iter()
            .any(|(_, it)| matches!(it, Stored::Ctl(Ctl::Resync)))
        {
            self.resync_recheck_at = None;
        }
        self.requeue(now, out);
        n
    }

    /// Takes more of what NACKs left owed, as far as the budget refilled.
    pub(super) fn serve_owed(&mut self, now: Instant) {
        let Some((lo, hi)) = self.budget.owed else {
            return;
        };
        self.budget
            .refill(now, self.cfg.reply_rate, self.cfg.reply_burst);
        if self.budget.entries() == 0 {
            return;
        }
        self.budget.owed = None;
        self.take_reply(now, lo, hi);
    }

    /// Moves resend entries back to the transmit queues (and gives the
    /// buffer back for reuse).
    fn requeue(&mut self, now: Instant, mut items: Vec<(u64, Stored)>) {
        if let Some(min) = items.iter().map(|(i, _)| *i).min() {
            self.requeue.add(min);
        }
        for (idx, it) in items.drain(..) {
            match it {
                Stored::Flow(slot) => {
                    let full = self.data_q.len() >= self.cfg.tx_queue_max;
                    let Some(e) = self.flows.get_mut(slot) else {
                        continue;
                    };
                    // Always the case (see flows.rs); a stale entry would
                    // name a reused slot.
                    if e.inflight != Some(idx) {
                        continue;
                    }
                    e.inflight = None;
                    if e.pending {
                        continue;
                    }
                    if full {
                        self.flows.remove(slot);
                        self.stats.tx_overflow += 1;
                        self.needs_reexport = true;
                        continue;
                    }
                    e.pending = true;
                    e.retx = true;
                    self.data_q.push_back(slot);
                    self.note_queued(now);
                }
                Stored::Ctl(Ctl::Exp(slot)) => self.requeue_exp(now, slot, idx),
                Stored::Ctl(b) => self.push_ctl(now, b, true),
            }
        }
        self.taken = items;
    }

    /// Our handshake reached DONE: every flow and RESYNC not yet
    /// acknowledged is sent again (see the module docs). Stored ACK/NACK
    /// entries stay where they are, for the peer to NACK if it lost them.
    ///
    /// A RESYNC request is not sent again at once: the peer that answered
    /// our HELLO most often got it in the same datagram (it is the first
    /// message we send), and asking twice makes it send its whole table
    /// twice. If it is still unacknowledged two ALIVE intervals later (the
    /// peer acknowledges within one), it goes again then
    /// ([`Engine::recheck_resync`]).
    pub(super) fn requeue_unacked(&mut self, now: Instant) {
        let mut again = std::mem::take(&mut self.taken);
        again.clear();
        self.resend.take_matching(
            |it| matches!(it, Stored::Flow(_) | Stored::Ctl(Ctl::Exp(_))),
            &mut again,
        );
        self.requeue(now, again);
        self.resync_recheck_at = Some(now + self.cfg.alive_interval * 2);
    }

    /// Sends again a RESYNC request the peer has not acknowledged by
    /// `resync_recheck_at` (see [`Engine::requeue_unacked`]).
    pub(super) fn recheck_resync(&mut self, now: Instant) {
        self.resync_recheck_at = None;
        let mut again = std::mem::take(&mut self.taken);
        again.clear();
        self.resend
            .take_matching(|it| matches!(it, Stored::Ctl(Ctl::Resync)), &mut again);
        self.requeue(now, again);
    }

    /// A new peer incarnation: forget every message sent so far.
    pub(super) fn flush_resend(&mut self) {
        let mut all = std::mem::take(&mut self.taken);
        all.clear();
        self.resend.take_all(&mut all);
        self.dropped_upto = self.next_idx;
        self.budget.owed = None;
        for (idx, it) in all.drain(..) {
            match it {
                Stored::Flow(slot) => self.forget_inflight(slot, idx),
                Stored::Ctl(Ctl::Exp(slot)) => self.forget_exp(slot, idx),
                Stored::Ctl(_) => {}
            }
        }
        self.taken = all;
    }

    /// Builds the next datagram into `buf` (cleared first) and returns true
    /// if there is one to send.
    ///
    /// Batching: control messages first, then flows, in queue order; a
    /// message is added while `buf.len() + msglen < mtu - 28`, whole
    /// messages only.
    ///
    /// Flush rule: the datagram is sent if (a) the next queued message did
    /// not fit (the datagram is full), or (b) a control message is in it, or
    /// (c) `now >= q + flush_delay`, where `q` is when the oldest message
    /// still queued was queued. Otherwise nothing is sent (a partial data
    /// datagram waits; [`Engine::poll_timeout`] reports when to come back)
    /// and no sequence number is used.
    ///
    /// Work: at most one datagram's worth of messages is encoded per call.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        self.queue_pending_resync(now);
        if self.ctl_q.is_empty() && self.data_q.is_empty() {
            self.first_queued = None;
            return false;
        }
        let limit = self.cfg.mtu.saturating_sub(HEADROOM);
        let hello = self.hello != HelloState::Done;
        let mut n_ctl = 0usize;
        let mut n_data = 0usize;
        let mut full = false;
        // Bytes of retransmissions in this datagram (see budget.rs).
        let mut reply_bytes = 0usize;
        // Control messages.
        while n_ctl < self.ctl_q.len() {
            let i = n_ctl;
            let ctl = self.ctl_q[n_ctl].0;
            let Some(body) = self.ctl_body(ctl) else {
                // Cannot happen (see expects.rs); never send a stale slot.
                self.ctl_q.remove(n_ctl);
                continue;
            };
            let msg = Msg {
                seq: self.seq_of(self.next_idx + i as u64),
                hello,
                hello_back: self.say_hello_back && i == 0,
                body,
            };
            let before = buf.len();
            match self.try_add(&msg, buf, limit) {
                Added::Yes => {
                    if self.ctl_q[n_ctl].1 {
                        reply_bytes += buf.len() - before;
                    }
                    n_ctl += 1;
                }
                Added::Full => {
                    full = true;
                    break;
                }
                Added::Drop => {
                    self.ctl_q.remove(n_ctl);
                    if let Ctl::Exp(slot) = ctl {
                        self.unqueue_exp(slot);
                    }
                }
            }
        }
        // Flow messages.
        while !full && n_data < self.data_q.len() {
            let i = n_ctl + n_data;
            let slot = self.data_q[n_data];
            let seq = self.seq_of(self.next_idx + i as u64);
            let hello_back = self.say_hello_back && i == 0;
            let Some(e) = self.flows.get_mut(slot).filter(|e| e.pending) else {
                // Cannot happen (see flows.rs); never send a stale slot.
                self.data_q.remove(n_data);
                continue;
            };
            let Some(codec) = self.codec.as_mut() else {
                break;
            };
            let kind = e.kind;
            let retx = e.retx;
            let before = buf.len();
            let added = add_within(buf, limit, |b| {
                codec.encode_flow(seq, hello, hello_back, kind, &e.state, b)
            });
            if matches!(added, Added::Drop) {
                self.stats.encode_errors += 1;
            }
            match added {
                Added::Yes => {
                    let len = buf.len() - before;
                    self.budget.saw_message(len);
                    if retx {
                        reply_bytes += len;
                    }
                    n_data += 1;
                }
                Added::Full => full = true,
                Added::Drop => {
                    self.data_q.remove(n_data);
                    if let Some(e) = self.flows.get_mut(slot) {
                        e.pending = false;
                        if e.inflight.is_none() {
                            self.flows.remove(slot);
                        }
                    }
                }
            }
        }
        if n_ctl + n_data == 0 {
            if self.ctl_q.is_empty() && self.data_q.is_empty() {
                self.first_queued = None;
            }
            return false;
        }
        let due = self
            .first_queued
            .is_none_or(|q| now >= q + self.cfg.flush_delay);
        if !(full || n_ctl > 0 || due) {
            buf.clear();
            return false;
        }
        // Commit: assign sequence numbers in the order encoded.
        let reliable = self.reliable();
        for _ in 0..n_ctl {
            let Some((body, retx)) = self.ctl_q.pop_front() else {
                break;
            };
            let idx = self.next_idx;
            self.next_idx += 1;
            if retx {
                self.stats.retransmitted += 1;
            }
            if let Ctl::Exp(slot) = body {
                if self.sent_exp(slot, idx, reliable) {
                    self.store(idx, Stored::Ctl(body));
                }
            } else if body != Ctl::Alive && reliable {
                self.store(idx, Stored::Ctl(body));
            }
        }
        for _ in 0..n_data {
            let Some(slot) = self.data_q.pop_front() else {
                break;
            };
            let idx = self.next_idx;
            self.next_idx += 1;
            if let Some(e) = self.flows.get_mut(slot) {
                e.pending = false;
                e.sent = true;
                if std::mem::take(&mut e.retx) {
                    self.stats.retransmitted += 1;
                }
                if reliable {
                    e.inflight = Some(idx);
                    self.store(idx, Stored::Flow(slot));
                } else if e.inflight.is_none() {
                    // Best effort: sent is done with.
                    self.flows.remove(slot);
                }
            }
        }
        if self.hello == HelloState::Init {
            self.hello = HelloState::Say;
        }
        self.say_hello_back = false;
        if self.ctl_q.is_empty() && self.data_q.is_empty() {
            self.first_queued = None;
        }
        self.stats.msgs_out += (n_ctl + n_data) as u64;
        self.stats.datagrams_out += 1;
        self.stats.bytes_out += buf.len() as u64;
        self.stats.reply_bytes += reply_bytes as u64;
        self.alive_at = now + self.cfg.alive_interval;
        if self.ctl_q.is_empty() && self.data_q.is_empty() {
            // Every requeued entry went out again below this index.
            self.requeue.drained(self.next_idx);
        }
        if self.probe_at.is_none() && self.resend.first_index().is_some() {
            self.probe_at = self.cfg.probe_after.map(|a| now + a);
        }
        true
    }

    fn try_add(&mut self, msg: &Msg, buf: &mut Vec<u8>, limit: usize) -> Added {
        let Some(codec) = self.codec.as_mut() else {
            return Added::Full;
        };
        let added = add_within(buf, limit, |b| codec.encode(msg, b));
        if matches!(added, Added::Drop) {
            self.stats.encode_errors += 1;
        }
        added
    }
}

/// Appends one message with `encode` if the datagram stays strictly below
/// `limit`; otherwise leaves `buf` as it was. `Full`: it did not fit after
/// what is already in `buf`; `Drop`: it can never fit (alone it reaches the
/// limit) or did not encode (counted by the caller as an encode error).
///
/// The message is encoded once, in place, and taken back out if it does not
/// fit: the same decision as checking [`super::Codec::encoded_len`] first,
/// without encoding twice.
fn add_within(
    buf: &mut Vec<u8>,
    limit: usize,
    encode: impl FnOnce(&mut Vec<u8>) -> Result<(), super::CodecError>,
) -> Added {
    let before = buf.len();
    if encode(buf).is_err() {
        buf.truncate(before);
        return Added::Drop;
    }
    if buf.len() >= limit {
        buf.truncate(before);
        if before == 0 {
            // Can never fit: drop it rather than block the queue.
            return Added::Drop;
        }
        return Added::Full;
    }
    Added::Yes
}

enum Added {
    Yes,
    Full,
    Drop,
}
