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
        let timer = self.ack_at.map_or(self.alive_at, |a| a.min(self.alive_at));
        Some(flush.map_or(timer, |f| f.min(timer)))
    }

    /// Runs expired timers. The alive timer (re-armed after every datagram
    /// sent) queues ACK `[ack_from, last]` if something received is still
    /// unacknowledged, else ALIVE (always ALIVE in best effort), and
    /// re-arms. The prompt ACK deadline (see
    /// [`super::EngineConfig::ack_delay`]) queues that ACK early. Constant
    /// work.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.ack_at.is_some_and(|a| now >= a) {
            self.ack_at = None;
            if let Some(r) = self.rx.take_pending_ack() {
                self.queue_ack(now, r);
            }
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
