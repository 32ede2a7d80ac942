//! Frames handed between workers: the reply direction of a translated flow
//! whose reply tuple steers to another worker than the flow's own (see
//! [`crate::conntrack::foreign`]), and frames the kernel steered by other
//! fields than their flow's ([`crate::port::steer::steered_apart`]): the
//! fragments of a datagram (steered by their addresses alone: later ones
//! carry no ports), ICMP errors (steered by their outer addresses, not by
//! the flow they quote) and IPv6 packets with extension headers (steered
//! by addresses alone).
//!
//! Fragments: a first fragment whose flow is not in this shard goes to the
//! worker its tuple (with ports) steers to, or the one recorded for a
//! translated reply; this worker's fragment table remembers where
//! (`FragTable::hand_first`), and the datagram's later fragments follow it
//! there (`FragTable::handed_to`), where they are judged against the first
//! fragment's verdict as usual. ICMP errors and IPv6 packets with
//! extension headers whose flow is not in this shard go the same way (the
//! error's to the worker of the flow it quotes); a new flow's first packet
//! with extension headers goes too, so the flow is created in the shard
//! its later packets reach.
//!
//! A worker that receives a frame whose flow is not in its shard (the burst
//! warm-up found nothing) looks its tuple up in the appliance's table of
//! foreign reply tuples, only while that table is not empty; a hit names the
//! worker that holds the flow, and the frame goes to that worker's bounded
//! queue instead of being judged here (`handed_off`). Each worker takes its
//! queue at the start of every iteration, in runs of frames received on the
//! same port, and decides them as if it had received them itself
//! (`handoff_received`), never handing them on again. A full queue drops
//! the frame (`handoff_full`): it would have been dropped here anyway, as a
//! packet of no flow. Buffers travel with the frames and come back through
//! a shared pool, so nothing is copied or allocated in steady state.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::conntrack::foreign::{ForeignReplies, FOREIGN_REPLIES};
use crate::flow::Tuple;
use crate::meta::Fragment;
use crate::meta::PacketMeta;
use crate::port::steer::{steered_apart, worker_of};
use crate::port::{PacketBuf, BURST};

use super::Worker;

/// Frames a worker's queue holds at most.
pub const HANDOFF_QUEUE: usize = 1024;

/// A frame another worker received, and the position (in the worker's
/// port list, the same for every worker) of the port it came in on.
#[derive(Debug)]
pub(super) struct Handed {
    port: usize,
    buf: PacketBuf,
}

/// The appliance's hand-off queues and the table that routes frames to
/// them; one for all workers (only with several).
#[derive(Debug)]
pub struct HandOff {
    queues: Vec<ArrayQueue<Handed>>,
    spare: ArrayQueue<PacketBuf>,
    foreign: Arc<ForeignReplies>,
}

impl HandOff {
    /// Queues for `workers` workers.
    pub fn new(workers: usize) -> Arc<HandOff> {
        Arc::new(HandOff {
            queues: (0..workers)
                .map(|_| ArrayQueue::new(HANDOFF_QUEUE))
                .collect(),
            spare: ArrayQueue::new(HANDOFF_QUEUE),
            foreign: ForeignReplies::new(FOREIGN_REPLIES),
        })
    }

    /// The table of foreign reply tuples the shards fill.
    pub fn foreign(&self) -> &Arc<ForeignReplies> {
        &self.foreign
    }
}

impl Worker {
    /// Hands frame `k` of the burst (received on port position `i`) to
    /// the worker that holds its flow, if that is another worker: the reply
    /// of another worker's translated flow, or a fragment (steered by its
    /// addresses alone) of a datagram whose flow is another worker's.
    /// Returns whether it went.
    pub(super) fn hand_off(&mut self, k: usize, i: usize, now: u32) -> bool {
        let Some(h) = self.handoff.as_ref() else {
            return false;
        };
        let m = &self.metas[k];
        if self.handing || !m.is_ip() {
            return false;
        }
        let zone = self.ports[i].zone;
        let me = self.shared.id;
        let to = match m.fragment {
            Fragment::Later => self.pipeline.frags.handed_to(m, zone, now),
            // The kernel steered it by other fields than its flow's (an
            // ICMP error by its outer addresses; a first fragment or an
            // IPv6 packet with extension headers by addresses alone) and
            // the flow is not here: the flow's worker (or, for the reply
            // of a translated flow, the worker recorded for it). A new
            // flow's first packet goes there too, where its later packets
            // will arrive.
            // A port that does not steer by flow (AF_XDP queues) brings
            // any flow's frames: each goes to its flow's worker the same way.
            _ if (steered_apart(m) || self.unsteered.get(i).copied().unwrap_or(false))
                && self.hints[k] == crate::conntrack::shard::HINT_NONE
                && !self.pipeline.shard.holds_flow_of(m, zone) =>
            {
                let workers = usize::from(self.pipeline.nat_steering.workers);
                let w = flow_worker(&h.foreign, m, zone, workers).unwrap_or(me);
                if m.fragment == Fragment::First
                    && w != me
                    && !self.pipeline.frags.hand_first(m, zone, now, w)
                {
                    self.pipeline.counters.fragment_table_full += 1;
                }
                Some(w)
            }
            Fragment::None
                if self.hints[k] == crate::conntrack::shard::HINT_NONE && !h.foreign.is_empty() =>
            {
                h.foreign.owner(&m.tuple, zone)
            }
            _ => None,
        };
        let Some(to) = to.filter(|&w| w != me) else {
            return false;
        };
        let Some(q) = h.queues.get(usize::from(to)) else {
            return false;
        };
        let spare = h.spare.pop().unwrap_or_default();
        let mut buf = std::mem::replace(&mut self.rx.bufs[k], spare);
        // Queued frames leave the device's receive pool alone.
        buf.data.detach();
        match q.push(Handed { port: i, buf }) {
            Ok(()) => self.pipeline.counters.handed_off += 1,
            Err(back) => {
                self.pipeline.counters.handoff_full += 1;
                let _ = h.spare.push(back.buf);
            }
        }
        true
    }

    /// Takes up to one burst of frames handed to this worker, all received
    /// on the same port: places them in the receive burst and returns the
    /// port position and how many (`None`: nothing waits).
    pub(super) fn take_handed(&mut self) -> Option<(usize, usize)> {
        let h = self.handoff.clone()?;
        let q = h.queues.get(usize::from(self.shared.id))?;
        let first = self.handed_next.take().or_else(|| q.pop())?;
        let port = first.port;
        let mut n = 0;
        let mut next = Some(first);
        while let Some(f) = next.take() {
            if f.port != port {
                self.handed_next = Some(f);
                break;
            }
            let mut old = std::mem::replace(&mut self.rx.bufs[n], f.buf);
            // Spares are kept empty: an mbuf a DPDK port lent goes back now.
            old.data.clear();
            let _ = h.spare.push(old);
            n += 1;
            if n == BURST {
                break;
            }
            next = q.pop();
        }
        self.pipeline.counters.handoff_received += n as u64;
        Some((port, n))
    }
}

/// The worker that holds the flow of `m` (of an ICMP error: the flow it
/// quotes): the one recorded for a translated flow's reply tuple, else the
/// one its tuple steers to (`None`: the worker count does not fit).
fn flow_worker(foreign: &ForeignReplies, m: &PacketMeta, zone: u16, workers: usize) -> Option<u16> {
    let t: &Tuple = m.icmp_error.as_ref().unwrap_or(&m.tuple);
    // An error quotes a packet as it was sent: the reply direction's
    // packet itself, or the original direction's, whose answer is the
    // reply tuple of a translated flow.
    let recorded = foreign.owner(t, zone).or_else(|| {
        m.icmp_error
            .and_then(|inner| foreign.owner(&inner.reply(), zone))
    });
    recorded.or_else(|| u16::try_from(worker_of(t, workers)).ok())
}

#[cfg(test)]
#[path = "handoff_tests.rs"]
mod tests;
