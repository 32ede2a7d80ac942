//! Receive side: receiver sequence tracking (ftfw-wire.md 7.2), the ACK
//! window (7.3), HELLO handling (7.5) and dispatch of received messages.

use std::time::{Duration, Instant};

use super::msg::{Body, Msg};
use super::seq::{after, before};
use super::{Codec, CodecError, Ctl, Engine, Event, HelloState, OUT_OF_SYNC_INTERVALS};

/// Where a sequence number falls relative to the last accepted one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Class {
    /// Nothing accepted yet.
    Unset,
    /// `seq == last + 1`.
    InSync,
    /// `seq` after `last + 1`: `gap` numbers are missing.
    After { gap: u32 },
    /// Old or replayed.
    Before,
}

/// An ACK or NACK range the tracker wants sent.
pub(super) type Range = (u32, u32);

/// Receiver sequence state for one peer.
#[derive(Debug)]
pub(super) struct RxTracker {
    last: Option<u32>,
    ack_from: Option<u32>,
    window: u32,
    window_size: u32,
    /// The peer is still saying HELLO (a HELLO run is going on).
    hello_run: bool,
    /// When the latest HELLO run last showed activity: a HELLO of it was
    /// accepted, or it ended (a message without HELLO was accepted).
    hello_at: Option<Instant>,
}

impl RxTracker {
    pub(super) fn new(window_size: u32) -> Self {
        RxTracker {
            last: None,
            ack_from: None,
            window: window_size,
            window_size,
            hello_run: false,
            hello_at: None,
        }
    }

    pub(super) fn last(&self) -> Option<u32> {
        self.last
    }

    pub(super) fn classify(&self, seq: u32) -> Class {
        let Some(last) = self.last else {
            return Class::Unset;
        };
        let exp = last.wrapping_add(1);
        if seq == exp {
            Class::InSync
        } else if after(seq, exp) {
            Class::After {
                gap: seq.wrapping_sub(exp),
            }
        } else {
            Class::Before
        }
    }

    /// Accepts an in-sync (or first) message; returns an ACK when the window
    /// is used up.
    pub(super) fn accept_in_sync(&mut self, seq: u32) -> Option<Range> {
        self.last = Some(seq);
        let from = *self.ack_from.get_or_insert(seq);
        self.window = self.window.saturating_sub(1);
        if self.window == 0 {
            self.window = self.window_size;
            self.ack_from = None;
            return Some((from, seq));
        }
        None
    }

    /// Accepts a message after a gap: returns the ACK of the open window (if
    /// any), the NACK of the gap, and an ACK if the new window is already
    /// used up (window size 1).
    pub(super) fn accept_gap(&mut self, seq: u32) -> (Option<Range>, Range, Option<Range>) {
        let last = self.last.unwrap_or(seq.wrapping_sub(1));
        let ack = self.ack_from.take().map(|f| (f, last));
        let nack = (last.wrapping_add(1), seq.wrapping_sub(1));
        (ack, nack, self.open_window(seq))
    }

    /// Re-bases onto a new peer incarnation starting at `seq`.
    pub(super) fn rebase(&mut self, seq: u32) -> Option<Range> {
        self.open_window(seq)
    }

    fn open_window(&mut self, seq: u32) -> Option<Range> {
        self.last = Some(seq);
        self.ack_from = Some(seq);
        self.window = self.window_size.saturating_sub(1);
        if self.window == 0 {
            self.window = self.window_size;
            self.ack_from = None;
            return Some((seq, seq));
        }
        None
    }

    /// Whether something accepted is not acknowledged yet.
    pub(super) fn has_pending_ack(&self) -> bool {
        self.ack_from.is_some()
    }

    /// The range to acknowledge when the alive timer fires; closes the
    /// window.
    pub(super) fn take_pending_ack(&mut self) -> Option<Range> {
        let from = self.ack_from.take()?;
        self.window = self.window_size;
        Some((from, self.last.unwrap_or(from)))
    }

    /// Whether a HELLO message at `seq` is a delayed or duplicated copy from
    /// the peer's latest HELLO run: not after `last`, and the run was active
    /// less than `grace` ago. (Network reordering is far shorter than
    /// `grace`; a real restart a second time within `grace` is not.)
    fn is_stale_hello(&self, seq: u32, now: Instant, grace: Duration) -> bool {
        let recent = self.hello_at.is_some_and(|t| now < t + grace);
        recent && self.last.is_some_and(|l| !after(seq, l))
    }

    /// Whether a (non-stale) HELLO message at `seq` starts a new peer
    /// incarnation rather than continuing the running HELLO run.
    fn is_new_incarnation(&self, seq: u32) -> bool {
        !(self.hello_run && self.last.is_some_and(|l| after(seq, l)))
    }

    /// A HELLO message was accepted.
    fn hello_accepted(&mut self, now: Instant) {
        self.hello_run = true;
        self.hello_at = Some(now);
    }

    /// A message without HELLO was accepted: the peer's HELLO run is over.
    fn end_hello_run(&mut self, now: Instant) {
        if self.hello_run {
            self.hello_run = false;
            self.hello_at = Some(now);
        }
    }
}

impl<C: Codec> Engine<C> {
    /// Processes one received datagram: decodes it through the codec and
    /// handles every message in it. Work is bounded by the datagram's size
    /// (plus, per ACK/NACK, the resend entries it frees or moves).
    pub fn handle_datagram(&mut self, now: Instant, bytes: &[u8]) {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += bytes.len() as u64;
        self.budget.earn(
            (bytes.len() as u64).saturating_mul(self.cfg.reply_factor),
            self.cfg.reply_burst,
        );
        if bytes.is_empty() {
            // No message at all: malformed (the codec would see nothing).
            self.stats.malformed += 1;
            return;
        }
        // The codec is moved out while it decodes, so each message is
        // handled as it is decoded, without being collected first. Nothing
        // that handles a message encodes.
        let Some(mut codec) = self.codec.take() else {
            return;
        };
        codec.decode(bytes, &mut |r| self.handle_decoded(now, r));
        self.codec = Some(codec);
    }

    fn handle_decoded(&mut self, now: Instant, r: Result<Msg, CodecError>) {
        match r {
            Ok(m) => {
                self.stats.msgs_in += 1;
                let Msg {
                    seq,
                    hello,
                    hello_back,
                    body,
                } = m;
                self.handle_msg(now, seq, hello, hello_back, Some(body));
            }
            Err(CodecError::BadPayload {
                seq,
                hello,
                hello_back,
            }) => {
                self.stats.msgs_in += 1;
                self.stats.malformed_payload += 1;
                self.handle_msg(now, seq, hello, hello_back, None);
            }
            Err(_) => self.stats.malformed += 1,
        }
    }

    /// One message with a valid header; `body` is `None` when its payload
    /// was bad (tracked and acknowledged, not applied).
    fn handle_msg(
        &mut self,
        now: Instant,
        seq: u32,
        hello: bool,
        hello_back: bool,
        body: Option<Body>,
    ) {
        if let Some(Body::Ack { from, to } | Body::Nack { from, to }) = body {
            if before(to, from) {
                self.stats.malformed += 1;
                return;
            }
        }
        let mut restart = false;
        // The peer's messages have all been stale for a while: re-base on
        // this one and ask for the table (see `note_stale`).
        let mut resynced = false;
        if hello {
            if self.rx.is_stale_hello(seq, now, self.cfg.alive_interval)
                || self.is_replayed_hello(seq, now)
            {
                if !self.note_stale(now) {
                    self.stats.before += 1;
                    return;
                }
                resynced = true;
            }
            restart = resynced || self.rx.is_new_incarnation(seq);
            self.say_hello_back = true;
        }
        if restart {
            let had_peer = self.rx.last.is_some();
            self.stats.peer_restarts += 1;
            if let Some(r) = self.rx.rebase(seq) {
                self.queue_ack(now, r);
            }
            if had_peer && self.hello == HelloState::Done {
                self.flush_resend();
                self.hello = HelloState::Say;
            }
            self.push_event(Event::PeerRestarted);
        } else {
            match self.rx.classify(seq) {
                Class::Before => {
                    if !self.note_stale(now) {
                        self.stats.before += 1;
                        return;
                    }
                    resynced = true;
                    if let Some(r) = self.rx.rebase(seq) {
                        self.queue_ack(now, r);
                    }
                }
                Class::Unset | Class::InSync => {
                    if let Some(r) = self.rx.accept_in_sync(seq) {
                        self.queue_ack(now, r);
                    }
                }
                Class::After { gap } => {
                    // A jump no resend queue covers is not "lost
                    // messages": counted once, as a jump.
                    if usize::try_from(gap).unwrap_or(usize::MAX) > self.cfg.resend_queue_max {
                        self.stats.seq_jumps += 1;
                    } else {
                        self.stats.lost += u64::from(gap);
                    }
                    let (ack, nack, ack2) = self.rx.accept_gap(seq);
                    if let Some(r) = ack {
                        self.queue_ack(now, r);
                    }
                    if self.reliable() {
                        self.push_ctl(
                            now,
                            Ctl::Nack {
                                from: nack.0,
                                to: nack.1,
                            },
                            false,
                        );
                    }
                    if let Some(r) = ack2 {
                        self.queue_ack(now, r);
                    }
                }
            }
            if !hello {
                self.rx.end_hello_run(now);
            }
        }
        self.stale_since = None;
        self.stale_count = 0;
        self.accepted_at = Some(now);
        if resynced {
            self.stats.out_of_sync_resyncs += 1;
            self.push_ctl(now, Ctl::Resync, false);
            self.push_event(Event::OutOfSync);
        }
        if hello {
            self.rx.hello_accepted(now);
        }
        self.arm_prompt_ack(now, body.as_ref());
        if hello_back && self.hello == HelloState::Say {
            self.hello = HelloState::Done;
            self.requeue_unacked(now);
        }
        match body {
            Some(Body::Flow { kind, state }) => self.push_event(Event::Apply { kind, state }),
            Some(Body::Expect { kind, exp }) => self.push_event(Event::Expect { kind, exp }),
            Some(Body::Ack { from, to }) => self.on_ack(now, from, to),
            Some(Body::Nack { from, to }) => self.on_nack(now, from, to),
            Some(Body::Resync) => self.push_event(Event::ResyncRequested),
            Some(Body::Alive) | None => {}
        }
    }

    /// Whether a HELLO message at `seq`, not after the last accepted
    /// number, comes while the current incarnation of the peer is evidently
    /// alive (a message of it was accepted less than an alive interval ago):
    /// a replay or a late duplicate, not a restart. Such a HELLO is treated
    /// as stale. A genuine restart that falls here (the old incarnation was
    /// heard just before, and the new one starts at a lower number, as
    /// conntrackd's Unix-time start usually does) is taken once the old
    /// incarnation has been silent for an alive interval.
    fn is_replayed_hello(&self, seq: u32, now: Instant) -> bool {
        let alive = self
            .accepted_at
            .is_some_and(|t| now < t + self.cfg.alive_interval);
        alive && self.rx.last().is_some_and(|l| !after(seq, l))
    }

    /// A message from the peer was stale ("before", or a stale HELLO).
    /// Returns true when every message for [`OUT_OF_SYNC_INTERVALS`] alive
    /// intervals (and more than that many messages: the peer is evidently
    /// alive) has been stale with none accepted: our view of the peer's
    /// sequence is wrong (a forged or corrupted far-ahead number was
    /// accepted), and the caller re-bases on this message. The streak
    /// starts again after that, so this happens at most once per
    /// [`OUT_OF_SYNC_INTERVALS`] alive intervals.
    fn note_stale(&mut self, now: Instant) -> bool {
        let since = *self.stale_since.get_or_insert(now);
        self.stale_count = self.stale_count.saturating_add(1);
        let n = OUT_OF_SYNC_INTERVALS;
        now >= since + self.cfg.alive_interval * n && self.stale_count > n
    }

    /// Whether the peer's messages have all been rejected as stale for at
    /// least one alive interval (and none accepted since): our view of its
    /// sequence looks wrong. After [`OUT_OF_SYNC_INTERVALS`] intervals of
    /// this the engine re-bases on the peer and asks for a RESYNC.
    pub fn out_of_sync(&self, now: Instant) -> bool {
        self.stale_since
            .is_some_and(|t| now >= t + self.cfg.alive_interval && self.stale_count > 1)
    }

    /// Prompt ACK ([`super::EngineConfig::ack_delay`]): an accepted flow or
    /// RESYNC message (or one whose payload was bad) arms the deadline if
    /// it is not armed (at once if no ACK went out within the delay);
    /// nothing left to acknowledge disarms it.
    fn arm_prompt_ack(&mut self, now: Instant, body: Option<&Body>) {
        let Some(delay) = self.cfg.ack_delay.filter(|_| self.reliable()) else {
            return;
        };
        if !self.rx.has_pending_ack() {
            self.ack_at = None;
            return;
        }
        let wants_ack = !matches!(
            body,
            Some(Body::Ack { .. } | Body::Nack { .. } | Body::Alive)
        );
        if wants_ack && self.ack_at.is_none() {
            // Nothing to coalesce with: no ACK went out lately.
            let quiet = self.last_ack_at.is_none_or(|t| now >= t + delay);
            self.ack_at = Some(if quiet { now } else { now + delay });
        }
    }

    /// Queues an ACK (FT-FW only: best effort never acknowledges).
    pub(super) fn queue_ack(&mut self, now: Instant, (from, to): Range) {
        if !self.reliable() {
            return;
        }
        self.last_ack_at = Some(now);
        self.push_ctl(now, Ctl::Ack { from, to }, false);
    }
}
