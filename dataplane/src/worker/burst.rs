//! The worker loop's transparent-mode burst (routed mode: `routed.rs`):
//! parse, cluster ownership, warm the flow table for the whole burst,
//! decide each frame (or hand it to the worker that holds its flow), then
//! one transmit burst to the bridge peer and one of reject answers back.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{routed, stages, ActiveRules, Decision, Pipeline, Worker};

/// What every burst of one loop iteration shares.
pub(super) struct Iteration<'a> {
    /// The shard clock's second.
    pub(super) now: u32,
    /// The iteration's instant.
    pub(super) at: Instant,
    /// The rules in force.
    pub(super) rules: &'a ActiveRules,
    /// Whether this node forwards.
    pub(super) forwarding: bool,
    /// Defer: when a packet held now is sent anyway (`None`: defer off).
    pub(super) defer_deadline: Option<Instant>,
}

impl Worker {
    /// Handles the `n` frames in the receive burst, received on port
    /// position `i` (or handed over by another worker): forwarded,
    /// answered or dropped.
    pub(super) fn burst(
        &mut self,
        routed: &mut Option<routed::Routed>,
        i: usize,
        n: usize,
        it: &Iteration<'_>,
        mut lap: stages::Lap,
    ) {
        let (now, at, rules, forwarding, defer_deadline) =
            (it.now, it.at, it.rules, it.forwarding, it.defer_deadline);
        if let Some(r) = routed.as_mut() {
            self.routed_burst(r, i, n, now, at, rules, forwarding);
            return;
        }
        if !forwarding {
            // A backup neither forwards nor tracks: the active node
            // owns the flows and replicates them to us.
            self.pipeline.counters.standby_dropped += n as u64;
            return;
        }
        lap.lap(&mut self.stage_times.rx_ns);
        let (index, zone, peer) = (self.ports[i].index, self.ports[i].zone, self.ports[i].peer);
        self.tx.len = 0;
        self.rej.len = 0;
        // Parse the burst, warm the flow table for all of it, then decide:
        // the table's cache misses overlap across the burst.
        let buckets = self.shared.buckets.buckets();
        self.pipeline.nat_steering.buckets = buckets;
        // Outside a cluster every frame is ours: its checksum is verified
        // while its bytes are still in L1 from the parse.
        let verify_now = buckets == 0;
        for k in 0..n {
            let b = &self.rx.bufs[k];
            let m = &mut self.metas[k];
            self.parsed[k] = Pipeline::parse_headers(&b.data, m);
            if verify_now && self.parsed[k] {
                Pipeline::verify_checksum(&b.data, b.csum_verified, m);
            }
        }
        if buckets != 0 {
            // Cluster: frames of buckets another node owns are its to
            // forward; they never reach conntrack here, and their
            // checksums are not ours to verify (behind a hub, every other
            // frame).
            for k in 0..n {
                self.not_ours[k] = !self.owns_frame(k, buckets);
            }
            self.verify_checksums_of_ours(n);
        } else {
            self.not_ours[..n].fill(false);
        }
        lap.lap(&mut self.stage_times.parse_ns);
        if !self.parse_only {
            for k in 0..n {
                self.want[k] = self.parsed[k] && !self.not_ours[k] && self.metas[k].is_ip();
            }
            self.warm_burst(n, zone, false);
        }
        lap.lap(&mut self.stage_times.lookup_ns);
        let every_change =
            defer_deadline.is_some() && self.shared.defer_every_change.load(Ordering::Relaxed);
        for k in 0..n {
            if self.not_ours[k] || self.foreign_later_fragment(k, zone, now) {
                self.pipeline.counters.not_owner += 1;
                continue;
            }
            if self.handoff.is_some() && self.parsed[k] && self.hand_off(k, i, now) {
                continue;
            }
            // Defer needs to know whether this packet pushed a delta
            // (a new flow whose level skips its NEW has nothing to wait
            // for; u64::MAX: never "changed").
            let deltas_before = if defer_deadline.is_some() {
                self.pipeline.shard.delta_events()
            } else {
                u64::MAX
            };
            let d = if self.parse_only {
                self.pipeline.forward_parsed(self.parsed[k])
            } else {
                self.pipeline.decide(
                    now,
                    rules,
                    index,
                    zone,
                    self.parsed[k],
                    &self.metas[k],
                    self.hints[k],
                )
            };
            match d {
                Decision::Forward => {
                    if !self
                        .pipeline
                        .apply_nat(&mut self.rx.bufs[k].data, &mut self.metas[k])
                    {
                        continue;
                    }
                    if let Some(deadline) = defer_deadline {
                        let changed = self.pipeline.shard.delta_events() > deltas_before;
                        if self.try_defer(k, peer, deadline, changed, every_change) {
                            continue;
                        }
                    }
                    std::mem::swap(&mut self.rx.bufs[k], &mut self.tx.bufs[self.tx.len]);
                    self.tx.len += 1;
                }
                Decision::Drop => {}
                Decision::Reject => {
                    let (frame, out) = (&self.rx.bufs[k].data, &mut self.rej.bufs[self.rej.len]);
                    if self.pipeline.build_reject(frame, &self.metas[k], out, at) {
                        self.rej.len += 1;
                    }
                }
            }
        }
        lap.lap(&mut self.stage_times.decide_ns);
        if self.tx.len > 0 {
            let sent = self.ports[peer]
                .port
                .tx_burst(&mut self.tx.bufs[..self.tx.len]);
            self.pipeline.counters.tx += sent as u64;
            self.pipeline.counters.tx_dropped += (self.tx.len - sent) as u64;
        }
        if self.rej.len > 0 {
            let sent = self.ports[i]
                .port
                .tx_burst(&mut self.rej.bufs[..self.rej.len]);
            self.pipeline.counters.tx += sent as u64;
            self.pipeline.counters.tx_dropped += (self.rej.len - sent) as u64;
        }
        lap.lap(&mut self.stage_times.tx_ns);
        if self.stage_timing {
            self.stage_times.packets += n as u64;
        }
    }
}
