//! State deltas: what a shard tells the rest of the appliance about its flows.
//!
//! Every flow created, changed (protocol state, status or mark) or destroyed
//! becomes one [`Delta`] pushed without blocking onto the shard's bounded
//! lock-free ring. A full ring never stalls forwarding: the delta is dropped,
//! counted, and the shard is marked for re-export so that a consumer that
//! needs a complete picture (replication) asks the worker for a full dump.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::flow::{FlowKey, TcpState};

/// What happened to the flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeltaKind {
    /// The flow was created (confirmed) or imported.
    Created,
    /// Its protocol state, status bits or mark changed.
    Updated,
    /// It expired, was early-dropped, or was deleted.
    Destroyed,
}

/// One state change: the newest state of one flow. The ring holds records
/// by value; only flows with extras (NAT reply tuple, helper, ...) carry a
/// boxed copy of them, and the dataplane's own flows never have any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    /// What happened.
    pub kind: DeltaKind,
    /// Which flow.
    pub key: FlowKey,
    /// TCP state after the change.
    pub tcp_state: TcpState,
    /// Status bits after the change.
    pub status: u32,
    /// Seconds left until expiry after the change.
    pub timeout_secs: u32,
    /// Connection mark.
    pub mark: u32,
    /// TCP window scales, original and reply.
    pub wscale: [u8; 2],
    /// NAT reply tuple, helper and the like, for flows that have them
    /// (imported or added by the operator).
    pub extras: Option<Box<crate::flow::FlowExtras>>,
}

impl Delta {
    /// The flow state this delta carries (without packet counters, which
    /// replication does not need). Inlined: the sync thread calls it on a
    /// delta it has just popped, whose fields are still in registers.
    #[inline]
    pub fn state(&self) -> crate::flow::FlowState {
        crate::flow::FlowState {
            key: self.key,
            tcp_state: self.tcp_state,
            status: self.status,
            timeout_secs: self.timeout_secs,
            mark: self.mark,
            wscale: self.wscale,
            counters: Default::default(),
            extras: self.extras.clone().into(),
        }
    }
}

/// The producer and consumer halves share this.
#[derive(Debug)]
pub struct DeltaRing {
    queue: ArrayQueue<Delta>,
    reexport: AtomicBool,
    overflows: AtomicU64,
    /// Deltas taken since creation. The ring is FIFO, so after `n` pops
    /// the consumer has taken exactly the first `n` deltas pushed (the
    /// producer counts those itself: `ShardStats::deltas`).
    popped: AtomicU64,
}

impl DeltaRing {
    /// A ring with `slots` slots (at least 1).
    pub fn new(slots: usize) -> Arc<DeltaRing> {
        Arc::new(DeltaRing {
            queue: ArrayQueue::new(slots.max(1)),
            reexport: AtomicBool::new(false),
            overflows: AtomicU64::new(0),
            popped: AtomicU64::new(0),
        })
    }

    /// Pushes without blocking; on overflow counts it and marks the shard for
    /// re-export. Returns whether the delta was queued.
    pub fn push(&self, d: Delta) -> bool {
        if self.queue.push(d).is_ok() {
            true
        } else {
            self.overflows.fetch_add(1, Ordering::Relaxed);
            self.reexport.store(true, Ordering::Release);
            false
        }
    }

    /// Takes the next delta, if any.
    pub fn pop(&self) -> Option<Delta> {
        let d = self.queue.pop()?;
        self.popped.fetch_add(1, Ordering::Relaxed);
        Some(d)
    }

    /// Deltas taken since creation (read by the consumer itself: the
    /// sync thread's defer bookkeeping).
    pub fn popped(&self) -> u64 {
        self.popped.load(Ordering::Relaxed)
    }

    /// Deltas waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no delta waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    /// Deltas lost because the ring was full, since creation.
    pub fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }

    /// Returns and clears the re-export mark.
    pub fn take_reexport(&self) -> bool {
        self.reexport.swap(false, Ordering::AcqRel)
    }

    /// Whether the shard is marked for re-export.
    pub fn needs_reexport(&self) -> bool {
        self.reexport.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(kind: DeltaKind) -> Delta {
        Delta {
            kind,
            key: FlowKey::default(),
            tcp_state: TcpState::None,
            status: 0,
            timeout_secs: 0,
            mark: 0,
            wscale: [0, 0],
            extras: None,
        }
    }

    #[test]
    fn delta_state_carries_identity_and_protocol_state() {
        let mut x = d(DeltaKind::Updated);
        x.tcp_state = TcpState::Established;
        x.status = 0xe;
        x.timeout_secs = 300;
        x.mark = 7;
        let st = x.state();
        assert_eq!(
            (st.key, st.tcp_state, st.status, st.timeout_secs, st.mark),
            (x.key, TcpState::Established, 0xe, 300, 7)
        );
    }

    #[test]
    fn full_ring_counts_and_marks_reexport() {
        let r = DeltaRing::new(2);
        assert!(r.push(d(DeltaKind::Created)));
        assert!(r.push(d(DeltaKind::Updated)));
        assert!(!r.needs_reexport());
        assert!(!r.push(d(DeltaKind::Destroyed)));
        assert_eq!(r.overflows(), 1);
        assert!(r.take_reexport());
        assert!(!r.needs_reexport());
        assert_eq!(r.pop().map(|x| x.kind), Some(DeltaKind::Created));
        assert_eq!(r.len(), 1);
    }
}
