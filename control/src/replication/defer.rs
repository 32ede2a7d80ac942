//! Deferred first packets, the sync thread's side (pfsync's `defer`).
//!
//! Workers hold the first packet of a new flow tagged with their delta
//! ring's push count after the flow's NEW delta (`ftfw_dataplane` worker
//! `defer.rs`). Here, once every delta taken from worker `w`'s ring (its
//! pop count `D_w`) has been sent on every channel, we remember `D_w` with
//! each counted channel's `engine.sent_index()`; once each of those peers
//! has acknowledged every message below its index we publish `D_w` as the
//! worker's release count, and the packets tagged at or below it go out.
//! A pair counts its one channel; a cluster counts the peers that are up
//! with their HELLO done (a dead peer must not hold every first packet
//! until the timeout). With a replica map a peer that does not get a flow
//! is still waited for, which is conservative, never early.
//!
//! Defer is active only while it helps: `[sync] defer = true` with the
//! `ftfw` transport (best effort acknowledges nothing), a peer is
//! up (heard within three alive intervals) and our HELLO handshake with it
//! is done. Otherwise the workers send first packets at once. (A node that
//! does not forward never holds packets: the worker checks that itself.)
//!
//! Bookkeeping is bounded: at most [`WAITING_MAX`] marks per worker; when
//! full, the newest mark is moved forward (a later index covers the
//! earlier deltas too, so nothing is released early).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ftfw_dataplane::worker::WorkerShared;

use super::peer::PeerChannel;

/// Marks kept per worker.
pub(super) const WAITING_MAX: usize = 64;
/// Longest idle sleep of the sync thread while defer is active: a worker's
/// NEW delta does not wake it, so this bounds the wait before it is sent.
pub(super) const DEFER_IDLE_SLEEP: Duration = Duration::from_micros(50);

/// A release mark: a pop count and the `(channel, send index)` pairs the
/// counted peers must acknowledge.
type Mark = (u64, Vec<(usize, u64)>);

/// Release bookkeeping for every worker.
pub(super) struct DeferRelease {
    enabled: bool,
    active: bool,
    /// Per worker: the pop count last marked.
    marked: Vec<u64>,
    /// Per worker: marks waiting for the ACKs, oldest first: a pop count
    /// and the `(channel, send index)` each counted peer must acknowledge.
    waiting: Vec<VecDeque<Mark>>,
}

impl DeferRelease {
    /// Sets the workers' defer timeout; defer starts inactive.
    pub(super) fn new(enabled: bool, timeout: Duration, workers: &[Arc<WorkerShared>]) -> Self {
        for w in workers {
            w.set_defer_timeout(timeout);
            w.set_defer_active(false);
        }
        DeferRelease {
            enabled,
            active: false,
            marked: workers.iter().map(|w| w.deltas.popped()).collect(),
            waiting: workers.iter().map(|_| VecDeque::new()).collect(),
        }
    }

    /// The sync thread failed while the workers run: nobody will release
    /// held packets, so the workers stop deferring (and send what they
    /// hold).
    pub(super) fn stop(&mut self, workers: &[Arc<WorkerShared>]) {
        self.active = false;
        for w in workers {
            w.set_defer_active(false);
        }
    }

    /// `off`, `on` (configured, inactive) or `active`.
    pub(super) fn state(&self) -> &'static str {
        match (self.enabled, self.active) {
            (false, _) => "off",
            (true, false) => "on",
            (true, true) => "active",
        }
    }

    /// Recomputes whether defer is active (`peer_ready`: a peer is up and
    /// our HELLO with it done) and tells the workers when it changes. Constant work unless it changes (then one store per worker).
    pub(super) fn update_active(&mut self, peer_ready: bool, workers: &[Arc<WorkerShared>]) {
        let on = self.enabled && peer_ready;
        if on != self.active {
            self.active = on;
            tracing::info!(active = on, "deferring new flows' first packets");
            for w in workers {
                w.set_defer_active(on);
            }
        }
    }

    /// Whether a worker holds a packet whose release is still to come: then
    /// partly filled datagrams go out at once rather than after the flush
    /// delay.
    pub(super) fn urgent(&self, workers: &[Arc<WorkerShared>]) -> bool {
        self.active
            && workers
                .iter()
                .any(|w| w.deferred_wanted() > w.deferred_released())
    }

    /// The idle sleep cap of the sync thread.
    pub(super) fn idle_sleep(&self, normal: Duration) -> Duration {
        if self.active {
            normal.min(DEFER_IDLE_SLEEP)
        } else {
            normal
        }
    }

    /// After a transmit: marks the deltas taken so far once they are all
    /// sent, and publishes release counts whose marks every peer `counted`
    /// has acknowledged. O(workers x channels + marks released).
    pub(super) fn after_transmit(
        &mut self,
        channels: &[PeerChannel],
        counted: impl Fn(&PeerChannel) -> bool,
        workers: &[Arc<WorkerShared>],
    ) {
        if !self.enabled {
            return;
        }
        // Every delta taken is in a sent message once nothing waits in the
        // transmit queues (a flow's pending message carries its newest
        // state).
        if channels
            .iter()
            .all(|c| c.engine.stats().tx_queue_depth == 0)
        {
            let idx: Vec<(usize, u64)> = channels
                .iter()
                .enumerate()
                .filter(|(_, c)| counted(c))
                .map(|(i, c)| (i, c.engine.sent_index()))
                .collect();
            for (w, shared) in workers.iter().enumerate() {
                let popped = shared.deltas.popped();
                let (Some(marked), Some(q)) = (self.marked.get_mut(w), self.waiting.get_mut(w))
                else {
                    continue;
                };
                if popped <= *marked {
                    continue;
                }
                *marked = popped;
                if q.len() >= WAITING_MAX {
                    if let Some(back) = q.back_mut() {
                        *back = (popped, idx.clone());
                    }
                } else {
                    q.push_back((popped, idx.clone()));
                }
            }
        }
        for (q, shared) in self.waiting.iter_mut().zip(workers) {
            let mut release = None;
            while let Some((count, idx)) = q.front() {
                let acked = idx
                    .iter()
                    .all(|&(c, i)| channels.get(c).is_none_or(|ch| ch.engine.acked_below(i)));
                if !acked {
                    break;
                }
                release = Some(*count);
                q.pop_front();
            }
            if let Some(c) = release {
                shared.release_deferred(c);
            }
        }
    }
}
