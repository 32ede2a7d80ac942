//! The resend queue: sent messages kept for retransmission, keyed by their
//! 64-bit send index.
//!
//! Send indexes only grow, so the queue is a ring indexed by
//! `idx - base`: storing appends, freeing one entry leaves a hole, and holes
//! at the front are popped. That makes store, remove and the usual ACK of
//! the oldest range O(1) per entry, where a `BTreeMap` paid a tree walk and
//! an allocation per node.
//!
//! Memory stays bounded although holes can pile up behind one old entry
//! (an entry whose ACK was lost stays at the front while everything after
//! it is acknowledged): when the ring spans more than `span_max` indexes,
//! the live entries at its front move to a small ordered side map. The
//! queue still behaves exactly like a map ordered by index (the side map's
//! entries are all older than the ring's), so the engine's semantics do not
//! depend on the representation; a test compares the two.

use std::collections::{BTreeMap, VecDeque};

use super::Stored;

#[derive(Debug)]
pub(super) struct ResendQueue {
    /// Send index of `ring[0]`.
    base: u64,
    ring: VecDeque<Option<Stored>>,
    /// `Some` entries in `ring`.
    ring_live: usize,
    /// Live entries older than `base`, moved out of the ring to bound it.
    old: BTreeMap<u64, Stored>,
    span_max: usize,
}

impl ResendQueue {
    /// A queue whose ring spans at most `span_max` indexes (at least 64).
    pub(super) fn new(span_max: usize) -> ResendQueue {
        ResendQueue {
            base: 0,
            ring: VecDeque::new(),
            ring_live: 0,
            old: BTreeMap::new(),
            span_max: span_max.max(64),
        }
    }

    /// Entries stored.
    pub(super) fn len(&self) -> usize {
        self.old.len() + self.ring_live
    }

    fn end(&self) -> u64 {
        self.base + self.ring.len() as u64
    }

    fn slot(&self, idx: u64) -> Option<usize> {
        let off = usize::try_from(idx.checked_sub(self.base)?).ok()?;
        (off < self.ring.len()).then_some(off)
    }

    /// Pops the holes at the front of the ring.
    fn trim(&mut self) {
        while let Some(None) = self.ring.front() {
            self.ring.pop_front();
            self.base += 1;
        }
        if self.ring.is_empty() {
            // Nothing to keep the base for; the next push sets it.
            self.ring_live = 0;
        }
    }

    /// Stores `item` at `idx`, which must be above every index stored
    /// before (an older or equal index is ignored). O(1) amortized, plus
    /// O(log n) per entry moved to the side map.
    pub(super) fn push(&mut self, idx: u64, item: Stored) {
        if self.ring.is_empty() {
            if self.old.last_key_value().is_some_and(|(&k, _)| k >= idx) {
                return;
            }
            self.base = idx;
        } else if idx < self.end() {
            return;
        }
        while self.end() < idx {
            self.ring.push_back(None);
        }
        self.ring.push_back(Some(item));
        self.ring_live += 1;
        while self.ring.len() > self.span_max {
            if let Some(Some(it)) = self.ring.pop_front() {
                self.ring_live -= 1;
                self.old.insert(self.base, it);
            }
            self.base += 1;
        }
        self.trim();
    }

    /// Removes the entry at `idx`, if stored.
    pub(super) fn remove(&mut self, idx: u64) -> Option<Stored> {
        if idx < self.base {
            return self.old.remove(&idx);
        }
        let off = self.slot(idx)?;
        let it = self.ring.get_mut(off)?.take()?;
        self.ring_live -= 1;
        self.trim();
        Some(it)
    }

    /// Index of the oldest entry.
    pub(super) fn first_index(&self) -> Option<u64> {
        if let Some((&i, _)) = self.old.first_key_value() {
            return Some(i);
        }
        // After `trim` the front, if any, is live.
        self.ring.front().map(|_| self.base)
    }

    /// Removes and returns the oldest entry.
    pub(super) fn pop_first(&mut self) -> Option<(u64, Stored)> {
        if let Some(e) = self.old.pop_first() {
            return Some(e);
        }
        // After `trim` the front, if any, is live.
        let it = self.ring.pop_front()??;
        let idx = self.base;
        self.base += 1;
        self.ring_live -= 1;
        self.trim();
        Some((idx, it))
    }

    /// Moves the entries in `[lo, hi]` to `out`, oldest first. Work is
    /// O(entries taken from the side map + indexes of the ring in range).
    pub(super) fn take_range(&mut self, lo: u64, hi: u64, out: &mut Vec<(u64, Stored)>) {
        if lo > hi {
            return;
        }
        if !self.old.is_empty() && lo < self.base {
            let top = hi.min(self.base - 1);
            let mut rest = self.old.split_off(&lo);
            if top < u64::MAX {
                let mut above = rest.split_off(&(top + 1));
                self.old.append(&mut above);
            }
            out.extend(rest);
        }
        let from = lo.max(self.base);
        let to = hi.min(self.end().saturating_sub(1));
        if self.ring.is_empty() || from > to {
            return;
        }
        for idx in from..=to {
            if let Some(off) = self.slot(idx) {
                if let Some(it) = self.ring.get_mut(off).and_then(Option::take) {
                    self.ring_live -= 1;
                    out.push((idx, it));
                }
            }
        }
        self.trim();
    }

    /// Moves at most `max` entries of `[lo, hi]` to `out`, oldest first.
    /// Returns the index to continue from when it stopped at `max` with
    /// entries of the range possibly left (`None`: the range is done).
    /// Work is O(entries taken + ring indexes walked).
    pub(super) fn take_range_max(
        &mut self,
        lo: u64,
        hi: u64,
        max: usize,
        out: &mut Vec<(u64, Stored)>,
    ) -> Option<u64> {
        if lo > hi {
            return None;
        }
        let mut n = 0;
        if !self.old.is_empty() && lo < self.base {
            let top = hi.min(self.base - 1);
            while let Some((&k, _)) = self.old.range(lo..=top).next() {
                if n == max {
                    return Some(k);
                }
                if let Some(it) = self.old.remove(&k) {
                    out.push((k, it));
                    n += 1;
                }
            }
        }
        let from = lo.max(self.base);
        let to = hi.min(self.end().saturating_sub(1));
        if self.ring.is_empty() || from > to {
            return None;
        }
        let mut stopped = None;
        for idx in from..=to {
            let Some(off) = self.slot(idx) else { continue };
            if self.ring.get(off).is_some_and(Option::is_some) {
                if n == max {
                    stopped = Some(idx);
                    break;
                }
                if let Some(it) = self.ring.get_mut(off).and_then(Option::take) {
                    self.ring_live -= 1;
                    out.push((idx, it));
                    n += 1;
                }
            }
        }
        self.trim();
        stopped
    }

    /// Moves every entry for which `pred` holds to `out`, oldest first; the
    /// others stay. O(n).
    pub(super) fn take_matching(
        &mut self,
        mut pred: impl FnMut(&Stored) -> bool,
        out: &mut Vec<(u64, Stored)>,
    ) {
        let old = std::mem::take(&mut self.old);
        for (k, it) in old {
            if pred(&it) {
                out.push((k, it));
            } else {
                self.old.insert(k, it);
            }
        }
        let base = self.base;
        for (idx, slot) in (base..).zip(self.ring.iter_mut()) {
            if slot.as_ref().is_some_and(&mut pred) {
                if let Some(it) = slot.take() {
                    self.ring_live -= 1;
                    out.push((idx, it));
                }
            }
        }
        self.trim();
    }

    /// Moves every entry to `out`, oldest first.
    pub(super) fn take_all(&mut self, out: &mut Vec<(u64, Stored)>) {
        self.take_matching(|_| true, out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Ctl;
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Push(u8),
        Remove(u16),
        PopFirst,
        TakeRange(u16, u16),
        TakeRangeMax(u16, u16, u8),
        TakeMatching(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..4).prop_map(Op::Push),
            2 => any::<u16>().prop_map(Op::Remove),
            1 => Just(Op::PopFirst),
            2 => (any::<u16>(), 0u16..80).prop_map(|(a, n)| Op::TakeRange(a, n)),
            2 => (any::<u16>(), 0u16..80, 0u8..8).prop_map(|(a, n, k)| Op::TakeRangeMax(a, n, k)),
            1 => (1u8..4).prop_map(Op::TakeMatching),
        ]
    }

    fn item(i: u64) -> Stored {
        if i.is_multiple_of(3) {
            Stored::Ctl(Ctl::Resync)
        } else {
            #[allow(clippy::cast_possible_truncation)]
            Stored::Flow(i as u32)
        }
    }

    fn same(a: &[(u64, Stored)], b: &[(u64, Stored)]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.0 == y.0 && format!("{:?}", x.1) == format!("{:?}", y.1))
    }

    proptest! {
        /// The ring behaves exactly like the ordered map it replaced, and
        /// its span stays bounded.
        #[test]
        fn behaves_like_an_ordered_map(ops in proptest::collection::vec(op(), 1..400)) {
            let mut q = ResendQueue::new(64);
            let mut m: BTreeMap<u64, Stored> = BTreeMap::new();
            let mut next = 0u64;
            for o in ops {
                match o {
                    Op::Push(skip) => {
                        next += u64::from(skip);
                        q.push(next, item(next));
                        m.insert(next, item(next));
                        next += 1;
                    }
                    Op::Remove(i) => {
                        let i = u64::from(i) % (next + 1);
                        prop_assert_eq!(q.remove(i).is_some(), m.remove(&i).is_some());
                    }
                    Op::PopFirst => {
                        let a = q.pop_first();
                        let b = m.pop_first();
                        prop_assert_eq!(a.map(|x| x.0), b.map(|x| x.0));
                    }
                    Op::TakeRange(lo, n) => {
                        let lo = u64::from(lo) % (next + 1);
                        let hi = lo + u64::from(n);
                        let mut got = Vec::new();
                        q.take_range(lo, hi, &mut got);
                        let keys: Vec<u64> = m.range(lo..=hi).map(|(k, _)| *k).collect();
                        let want: Vec<(u64, Stored)> =
                            keys.into_iter().filter_map(|k| m.remove(&k).map(|v| (k, v))).collect();
                        prop_assert!(same(&got, &want));
                    }
                    Op::TakeRangeMax(lo, n, max) => {
                        let lo = u64::from(lo) % (next + 1);
                        let hi = lo + u64::from(n);
                        let mut got = Vec::new();
                        let rest = q.take_range_max(lo, hi, usize::from(max), &mut got);
                        let keys: Vec<u64> = m.range(lo..=hi).map(|(k, _)| *k).collect();
                        let left = keys.get(usize::from(max)).copied();
                        let want: Vec<(u64, Stored)> = keys
                            .into_iter()
                            .take(usize::from(max))
                            .filter_map(|k| m.remove(&k).map(|v| (k, v)))
                            .collect();
                        prop_assert!(same(&got, &want));
                        // It stops at the first entry left, if any.
                        prop_assert_eq!(rest, left);
                    }
                    Op::TakeMatching(md) => {
                        let p = |s: &Stored| matches!(s, Stored::Flow(x) if u64::from(*x) % u64::from(md) == 0);
                        let mut got = Vec::new();
                        q.take_matching(p, &mut got);
                        let want: Vec<(u64, Stored)> = m.iter().filter(|(_, v)| p(v)).map(|(k, v)| (*k, *v)).collect();
                        m.retain(|_, v| !p(v));
                        prop_assert!(same(&got, &want));
                    }
                }
                prop_assert_eq!(q.len(), m.len());
                prop_assert!(q.ring.len() <= 64);
            }
            let mut got = Vec::new();
            q.take_all(&mut got);
            let want: Vec<(u64, Stored)> = std::mem::take(&mut m).into_iter().collect();
            prop_assert!(same(&got, &want));
            prop_assert_eq!(q.len(), 0);
        }
    }
}
