//! The failure detector: which peers are alive, with two guards against
//! declaring a live member dead (a false death) on a loaded machine.
//!
//! - Our own stall: if this coordinator got no input (neither a timer nor
//!   a datagram) for more than two heartbeats, it was not scheduled, and
//!   what its peers sent meanwhile may still sit unread in its socket.
//!   Their last-heard times move forward by the stall before anyone is
//!   judged (`own_stalls`).
//! - Per-peer patience: each peer has its own dead-after time, first the
//!   configured `dead_after`. A peer heard again after a silence longer
//!   than that, with the incarnation it had (it did not restart: it was
//!   alive, starved or cut off), was falsely dead: its time is doubled, or
//!   set to 1.5 times the silence if that is longer, at most
//!   `dead_after_max` (`false_deaths`). Each `dead_after_relax` after that
//!   it halves, down to `dead_after`, unless the peer's longest silence
//!   over that time, times 1.5, would not fit the halved time (a member
//!   that keeps pausing keeps its patience). A member that
//!   was never falsely dead is judged at `dead_after`, so crash detection
//!   is as fast as configured.

use std::time::{Duration, Instant};

use super::{Coordinator, Peer};
use crate::cluster::msg::Heartbeat;
use crate::cluster::NodeId;

impl Peer {
    /// A peer not heard from yet, judged at `dead_after`.
    pub(super) fn new(dead_after: Duration) -> Peer {
        Peer {
            last_heard: None,
            hb: None,
            map_sent: None,
            dead_after,
            false_deaths: 0,
            adapted_at: None,
            returned_after: None,
            ready_at: None,
            longest_silence: Duration::ZERO,
        }
    }

    /// Heard within its dead-after time.
    pub(super) fn alive(&self, now: Instant) -> bool {
        self.last_heard
            .is_some_and(|t| now.saturating_duration_since(t) < self.dead_after)
    }
}

impl Coordinator {
    /// Every input (timer or datagram) first: our own stall is forgiven,
    /// raised dead-after times relax.
    pub(super) fn note_input(&mut self, now: Instant) {
        let gap = now.saturating_duration_since(self.last_input);
        self.last_input = self.last_input.max(now);
        if gap > self.cfg.heartbeat * 2 {
            // Time we were not running does not count against the peers:
            // a dead peer's takeover is delayed by at most the stall.
            let stall = gap - self.cfg.heartbeat;
            self.counters.own_stalls += 1;
            for p in self.peers.values_mut() {
                if let Some(t) = &mut p.last_heard {
                    *t = (*t + stall).min(now);
                }
            }
        }
        let (base, relax) = (self.cfg.dead_after, self.cfg.dead_after_relax);
        for p in self.peers.values_mut() {
            let due = p
                .adapted_at
                .is_some_and(|t| now.saturating_duration_since(t) >= relax);
            if p.dead_after > base && due {
                let halved = (p.dead_after / 2).max(base);
                if p.longest_silence + p.longest_silence / 2 <= halved {
                    p.dead_after = halved;
                }
                p.adapted_at = Some(now);
                p.longest_silence = Duration::ZERO;
            }
        }
    }

    /// An authenticated datagram from `sender`, before its last-heard time
    /// moves: a peer silent for longer than its dead-after time is back
    /// (whether it was falsely dead shows in its next heartbeat).
    pub(super) fn note_heard(&mut self, now: Instant, sender: NodeId) {
        let Some(p) = self.peers.get_mut(&sender) else {
            return;
        };
        if let Some(t) = p.last_heard {
            let silence = now.saturating_duration_since(t);
            p.longest_silence = p.longest_silence.max(silence);
            if silence >= p.dead_after && p.hb.is_some() {
                p.returned_after = Some(silence);
            }
        }
        p.last_heard = Some(now);
    }

    /// A heartbeat from a peer that came back after a silence: with the
    /// incarnation it had, it was falsely dead; more patience with it.
    pub(super) fn judge_return(&mut self, now: Instant, sender: NodeId, h: &Heartbeat) {
        let max = self.cfg.dead_after_max;
        let Some(p) = self.peers.get_mut(&sender) else {
            return;
        };
        let Some(silence) = p.returned_after.take() else {
            return;
        };
        if p.hb.is_none_or(|old| old.incarnation != h.incarnation) {
            return;
        }
        p.false_deaths += 1;
        self.counters.false_deaths += 1;
        let longer = (p.dead_after * 2).max(silence + silence / 2);
        p.dead_after = longer.min(max).max(p.dead_after);
        p.adapted_at = Some(now);
        p.longest_silence = Duration::ZERO;
    }
}
