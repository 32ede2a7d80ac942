//! Deferred first packets (pfsync's `defer`).
//!
//! With `[sync] defer = true`, while the sync thread says defer is active
//! ([`super::WorkerShared::set_defer_active`]), the first packet of a new
//! flow (a TCP SYN accepted as new, or the first packet of a new UDP, ICMP
//! or other flow: the same mechanism) is not transmitted at once. Its NEW
//! delta goes to the ring as always; the packet waits here, tagged with the
//! ring's push count after that delta (the shard's `deltas` count), until the sync thread publishes a
//! release count at least as large (every delta up to the tag acknowledged
//! by the peer) or until the defer timeout passes (transmitted anyway, as
//! pfsync does). Later packets of a flow whose first packet waits here
//! wait behind it, so a flow is never reordered.
//!
//! Bounded: at most [`DEFER_QUEUE`] packets; a packet that does not fit is
//! transmitted at once and counted (`defer_overflow`). Tags and deadlines
//! only grow along the queue, so releasing is a FIFO walk from the front.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use crate::port::PacketBuf;

/// Packets a worker holds at most.
pub const DEFER_QUEUE: usize = 1024;

/// One held packet.
#[derive(Debug)]
struct Held {
    /// Ring push count after the flow's NEW delta.
    tag: u64,
    /// Transmitted anyway at this instant.
    deadline: Instant,
    /// Position of the output port in the worker's port list.
    port: usize,
    /// Shard slot of the flow (`u32::MAX`: none).
    flow: u32,
    buf: PacketBuf,
}

/// Why a held packet leaves the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Release {
    /// Its tag is covered by the release count.
    Acked,
    /// Its deadline passed, or defer became inactive.
    Timeout,
}

/// A worker's queue of held packets.
#[derive(Debug, Default)]
pub(super) struct DeferQueue {
    held: VecDeque<Held>,
    /// Held packets per flow slot, for the packets that wait behind.
    flows: HashMap<u32, u32>,
    /// Buffers given back by transmissions, reused for holding.
    free: Vec<PacketBuf>,
}

impl DeferQueue {
    pub(super) fn len(&self) -> usize {
        self.held.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    pub(super) fn is_full(&self) -> bool {
        self.held.len() >= DEFER_QUEUE
    }

    /// Whether a packet of flow `slot` waits here.
    pub(super) fn holds_flow(&self, slot: u32) -> bool {
        !self.held.is_empty() && self.flows.contains_key(&slot)
    }

    /// A buffer to swap into the receive burst in place of a held one.
    pub(super) fn spare(&mut self) -> PacketBuf {
        self.free.pop().unwrap_or_default()
    }

    /// Holds `buf` (the caller checked [`DeferQueue::is_full`]). A frame
    /// a DPDK port lent an mbuf is copied out, so held packets never keep
    /// the device's receive pool short.
    pub(super) fn hold(
        &mut self,
        mut buf: PacketBuf,
        tag: u64,
        deadline: Instant,
        port: usize,
        flow: u32,
    ) {
        buf.data.detach();
        if flow != u32::MAX {
            *self.flows.entry(flow).or_insert(0) += 1;
        }
        self.held.push_back(Held {
            tag,
            deadline,
            port,
            flow,
            buf,
        });
    }

    /// The front packet, if it may go now: covered by `released`, past its
    /// deadline, or `force` (defer no longer active).
    pub(super) fn ready(&self, released: u64, now: Instant, force: bool) -> Option<Release> {
        let h = self.held.front()?;
        if h.tag <= released {
            Some(Release::Acked)
        } else if force || now >= h.deadline {
            Some(Release::Timeout)
        } else {
            None
        }
    }

    /// The front packet's output port.
    pub(super) fn front_port(&self) -> Option<usize> {
        self.held.front().map(|h| h.port)
    }

    /// Swaps the front packet's buffer into `out` and removes it; the
    /// buffer that was in `out` is kept for reuse.
    pub(super) fn pop_into(&mut self, out: &mut PacketBuf) {
        let Some(mut h) = self.held.pop_front() else {
            return;
        };
        std::mem::swap(&mut h.buf, out);
        self.forget(h.flow);
        if self.free.len() < DEFER_QUEUE {
            // Kept empty: an mbuf a DPDK port lent it goes back now.
            h.buf.data.clear();
            self.free.push(h.buf);
        }
    }

    /// Drops every held packet; returns how many there were.
    pub(super) fn drop_all(&mut self) -> usize {
        let n = self.held.len();
        for h in self.held.drain(..) {
            if self.free.len() < DEFER_QUEUE {
                self.free.push(h.buf);
            }
        }
        self.flows.clear();
        n
    }

    fn forget(&mut self, flow: u32) {
        if let Some(c) = self.flows.get_mut(&flow) {
            *c -= 1;
            if *c == 0 {
                self.flows.remove(&flow);
            }
        }
    }
}
