//! Translated flows whose replies reach another worker than the flow's own.
//!
//! A worker's own NAT allocator picks reply tuples that steer to the
//! worker of the flow's original tuple ([`crate::nat::alloc::Steering`]),
//! so both directions meet in one shard. A translation chosen elsewhere (a
//! flow a Linux peer's kernel translated, committed at a takeover, or added
//! from the console) usually does not: its original direction reaches the
//! worker its original tuple steers to, which holds the flow, and its reply
//! direction another worker. That worker finds the reply tuple here and
//! hands the frame to the flow's worker (`worker/handoff.rs`).
//!
//! One table shared by the appliance's workers: a shard records a reply
//! tuple when it indexes a translated flow whose reply steers elsewhere,
//! and forgets it when the flow goes. Reads take a read lock only while the
//! table is not empty (one atomic load otherwise) and only for packets
//! that missed their own shard. Bounded: an entry that does not fit is
//! counted (`full`), and the reply direction of that flow is then not
//! handed off.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crate::flow::Tuple;

/// Entries the table holds at most by default.
pub const FOREIGN_REPLIES: usize = 65536;

/// Reply tuples (with zone) of translated flows, and the worker that holds
/// each flow.
#[derive(Debug)]
pub struct ForeignReplies {
    map: RwLock<HashMap<(Tuple, u16), u16>>,
    len: AtomicUsize,
    cap: usize,
    full: AtomicU64,
}

impl ForeignReplies {
    /// An empty table of at most `cap` entries.
    pub fn new(cap: usize) -> Arc<ForeignReplies> {
        Arc::new(ForeignReplies {
            map: RwLock::new(HashMap::new()),
            len: AtomicUsize::new(0),
            cap,
            full: AtomicU64::new(0),
        })
    }

    /// Whether no flow is recorded (the packet path's one check).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len.load(Ordering::Relaxed) == 0
    }

    /// Entries recorded.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Entries refused because the table was full, since creation.
    pub fn full(&self) -> u64 {
        self.full.load(Ordering::Relaxed)
    }

    /// The worker holding the flow whose reply tuple is `t` in `zone`.
    pub fn owner(&self, t: &Tuple, zone: u16) -> Option<u16> {
        if self.is_empty() {
            return None;
        }
        let m = self
            .map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        m.get(&(*t, zone)).copied()
    }

    /// Records that `worker` holds the flow whose reply tuple is `t`;
    /// returns false (counted) when the table is full.
    pub fn insert(&self, t: Tuple, zone: u16, worker: u16) -> bool {
        let mut m = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !m.contains_key(&(t, zone)) && m.len() >= self.cap {
            self.full.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        m.insert((t, zone), worker);
        self.len.store(m.len(), Ordering::Relaxed);
        true
    }

    /// Forgets `t` if `worker` is the one recorded for it.
    pub fn remove(&self, t: &Tuple, zone: u16, worker: u16) {
        let mut m = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if m.get(&(*t, zone)) == Some(&worker) {
            m.remove(&(*t, zone));
            self.len.store(m.len(), Ordering::Relaxed);
        }
    }
}

/// What a shard needs to record its flows' foreign reply tuples.
#[derive(Clone, Debug)]
pub struct ForeignLink {
    /// The shared table.
    pub table: Arc<ForeignReplies>,
    /// This shard's worker.
    pub worker: u16,
    /// Workers sharing the ports (the steering modulus).
    pub workers: u16,
    /// DPDK ports with symmetric RSS: the NIC's queue choice instead.
    pub rss: Option<crate::port::rss::RssModel>,
}

impl ForeignLink {
    /// Whether a reply tuple `t` steers to another worker than this one.
    #[inline]
    pub fn elsewhere(&self, t: &Tuple) -> bool {
        self.workers > 1
            && match &self.rss {
                Some(m) => m.queue_of_tuple(t) != usize::from(self.worker),
                None => {
                    crate::port::steer::worker_of(t, usize::from(self.workers))
                        != usize::from(self.worker)
                }
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(p: u16) -> Tuple {
        Tuple::new(
            "198.51.100.2".parse().unwrap(),
            "192.0.2.100".parse().unwrap(),
            6,
            80,
            p,
        )
    }

    #[test]
    fn entries_are_found_forgotten_by_their_worker_only_and_bounded() {
        let f = ForeignReplies::new(2);
        assert!(f.is_empty() && f.owner(&t(1), 0).is_none());
        assert!(f.insert(t(1), 0, 3));
        assert_eq!((f.owner(&t(1), 0), f.owner(&t(1), 1)), (Some(3), None));
        assert!(f.insert(t(2), 0, 1));
        assert!(!f.insert(t(3), 0, 1), "full");
        assert!(f.insert(t(2), 0, 0), "an entry present is replaced");
        assert_eq!((f.len(), f.full()), (2, 1));
        f.remove(&t(1), 0, 2);
        assert_eq!(f.owner(&t(1), 0), Some(3), "not worker 2's");
        f.remove(&t(1), 0, 3);
        f.remove(&t(2), 0, 0);
        assert!(f.is_empty());
    }
}
