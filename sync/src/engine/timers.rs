//! Deadlines: the ALIVE/ACK timer and the flush deadline of a partially
//! filled datagram. Deadlines are data; the driver owns the clock.

use std::time::Instant;

use super::{Codec, Ctl, Engine};

impl<C: Codec> Engine<C> {
    /// The earliest instant at which [`Engine::handle_timeout`] (and then
    /// [`Engine::poll_transmit`]) should be called: the alive timer, or the
    /// flush deadline of queued messages (immediately, for control
    /// messages).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let flush = self.first_queued.map(|q| {
            if self.ctl_q.is_empty() && !self.resync_pending {
                q + self.cfg.flush_delay
            } else {
                q
            }
        });
        let owed = self.budget.next_refill(self.cfg.reply_rate);
        let timer = [self.ack_at, self.probe_at, self.resync_recheck_at, owed]
            .into_iter()
            .flatten()
            .fold(self.alive_at, Instant::min);
        Some(flush.map_or(timer, |f| f.min(timer)))
    }

    /// Runs expired timers. The alive timer (re-armed after every datagram
    /// sent) queues ACK `[ack_from, last]` if something received is still
    /// unacknowledged, else ALIVE (always ALIVE in best effort), and
    /// re-arms. The prompt ACK deadline (see
    /// [`super::EngineConfig::ack_delay`]) queues that ACK early; the
    /// tail-loss probe ([`super::EngineConfig::probe_after`]) queues an
    /// ALIVE. Constant work.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ack_at.is_some_and(|a| now >= a) {
            self.ack_at = None;
            if let Some(r) = self.rx.take_pending_ack() {
                self.queue_ack(now, r);
            }
        }
        if self.probe_at.is_some_and(|p| now >= p) {
            self.probe_at = None;
            if let Some(after) = self.cfg.probe_after.filter(|_| self.reliable()) {
                if self.resend.first_index().is_some() {
                    self.push_ctl(now, Ctl::Alive, false);
                    self.stats.probes += 1;
                    self.probes_since_ack = self.probes_since_ack.saturating_add(1);
                    let backoff = after
                        .saturating_mul(1 << self.probes_since_ack.min(16))
                        .min(self.cfg.alive_interval);
                    self.probe_at = Some(now + backoff);
                }
            }
        }
        self.serve_owed(now);
        if self.resync_recheck_at.is_some_and(|r| now >= r) {
            self.recheck_resync(now);
        }
        if now >= self.alive_at {
            self.ack_at = None;
            match self.rx.take_pending_ack() {
                Some(r) if self.reliable() => self.queue_ack(now, r),
                _ => self.push_ctl(now, Ctl::Alive, false),
            }
            self.alive_at = now + self.cfg.alive_interval;
        }
    }
}
