//! The flow table's index: slab indices in cache-line buckets, found by the
//! flow's hash.
//!
//! Each bucket is one 64-byte cache line with ten slots (a 16-bit tag from
//! the hash's top bits and the slab index) and an overflow count. A flow
//! lives in its home bucket (the hash's low bits) or, when that is full,
//! in the next bucket with a free slot; every bucket passed on the way
//! counts it in `overflow`, so a lookup stops at the first bucket without
//! the flow whose `overflow` is 0, and a removal walks the same way back
//! down. The index is sized for a load of at most 2/3 at the shard's
//! capacity, so probes past the home bucket are rare even in a full table.
//!
//! Ten slots with 16-bit tags, at 2/3, take 9.6 bytes per flow, less than
//! seven slots with 32-bit tags at 7/8 (10.5) did, and keep the buckets
//! far emptier. In a simulation of the layout, at 7/8 load a lookup that
//! misses (every new flow's) read 4.4 buckets on average, one after
//! another, and 13% of the flows lived outside their home bucket, where
//! the warm-up gives no hint; at 2/3 with ten slots, 1.1 buckets and 2.5%.
//! A 16-bit tag matches a wrong slot once in 6,500 lookups of a full
//! bucket; the caller's key comparison rejects it.
//!
//! The point of owning the layout (instead of hashbrown's table, whose slot
//! addresses are private) is software prefetching: the worker asks for a
//! whole burst's home buckets ([`FlowIndex::prefetch`]), then reads each
//! bucket's candidate (first tag match, [`FlowIndex::candidate`]) and that
//! flow entry, so a burst's cache misses overlap instead of queueing one
//! lookup after another.

use crate::huge::{prefetch, HugeSlice};

/// Slots per bucket.
const SLOTS: usize = 10;

/// One cache line of the index.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Bucket {
    /// The top 16 bits of each slot's hash.
    tags: [u16; SLOTS],
    /// Slab index + 1 of each slot (0: free).
    slots: [u32; SLOTS],
    /// Flows whose probe passed this bucket (home here or earlier, living
    /// further on).
    overflow: u32,
}

impl Bucket {
    /// Bit `s` set for each slot `s` whose tag is `t`, occupied or not
    /// (an empty slot's tag is 0): all ten compared without a branch, which
    /// the compiler turns into vector compares.
    #[inline]
    fn tag_matches(&self, t: u16) -> u32 {
        let mut m = 0;
        for (s, &x) in self.tags.iter().enumerate() {
            m |= u32::from(x == t) << s;
        }
        m
    }
}

const EMPTY: Bucket = Bucket {
    tags: [0; SLOTS],
    slots: [0; SLOTS],
    overflow: 0,
};

/// Slab indices by flow hash. See the module documentation.
#[derive(Debug)]
pub(super) struct FlowIndex {
    buckets: HugeSlice<Bucket>,
    /// Entries held.
    len: usize,
}

#[inline]
fn tag(hash: u64) -> u16 {
    (hash >> 48) as u16
}

impl FlowIndex {
    /// An index for up to `capacity` flows at a load of at most 2/3.
    pub(super) fn with_capacity(capacity: usize) -> FlowIndex {
        let slots = capacity.max(1).saturating_mul(3).div_ceil(2);
        // Any count (not a power of two): the home bucket is the hash's
        // low half scaled to it, so the index is not rounded up.
        let buckets = slots.div_ceil(SLOTS).clamp(2, u32::MAX as usize);
        FlowIndex {
            buckets: HugeSlice::new(buckets, EMPTY),
            len: 0,
        }
    }

    /// The home bucket: the low 32 bits of the hash scaled to the bucket
    /// count (a multiply and a shift instead of a division).
    #[inline]
    fn home(&self, hash: u64) -> usize {
        (((hash & 0xffff_ffff) * self.buckets.len() as u64) >> 32) as usize
    }

    /// The bucket after `at`, wrapping around.
    #[inline]
    fn next(&self, at: usize) -> usize {
        if at + 1 == self.buckets.len() {
            0
        } else {
            at + 1
        }
    }

    /// Bytes the index takes.
    pub(super) fn bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>()
    }

    /// Entries held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Starts loading the home bucket of `hash` into the cache.
    #[inline]
    pub(super) fn prefetch(&self, hash: u64) {
        prefetch(&self.buckets[self.home(hash)]);
    }

    /// The first slab index in the home bucket whose tag matches `hash`
    /// (`None` when there is none, or the flow lives in a later bucket): a
    /// guess, confirmed by the caller's key comparison. Only the home
    /// bucket, which [`FlowIndex::prefetch`] loaded: following the probe
    /// path here measured slower (`bench pipeline` at 1M flows).
    #[inline]
    pub(super) fn candidate(&self, hash: u64) -> Option<u32> {
        let b = &self.buckets[self.home(hash)];
        let mut m = b.tag_matches(tag(hash));
        while m != 0 {
            let s = m.trailing_zeros() as usize;
            if b.slots[s] != 0 {
                return Some(b.slots[s] - 1);
            }
            m &= m - 1;
        }
        None
    }

    /// The slab index of the entry with `hash` for which `eq` holds.
    #[inline]
    pub(super) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let t = tag(hash);
        let mut at = self.home(hash);
        for _ in 0..self.buckets.len() {
            let b = &self.buckets[at];
            let mut m = b.tag_matches(t);
            while m != 0 {
                let s = m.trailing_zeros() as usize;
                if b.slots[s] != 0 && eq(b.slots[s] - 1) {
                    return Some(b.slots[s] - 1);
                }
                m &= m - 1;
            }
            if b.overflow == 0 {
                return None;
            }
            at = self.next(at);
        }
        None
    }

    /// Adds slab index `idx` under `hash` (the caller knows it is not
    /// there yet). False, and nothing changed, when every slot is taken
    /// (never at or below the capacity the index was made for).
    pub(super) fn insert(&mut self, hash: u64, idx: u32) -> bool {
        if self.len >= self.buckets.len() * SLOTS || idx == u32::MAX {
            return false;
        }
        let home = self.home(hash);
        let mut at = home;
        loop {
            let b = &mut self.buckets[at];
            if let Some(s) = b.slots.iter().position(|&x| x == 0) {
                b.slots[s] = idx + 1;
                b.tags[s] = tag(hash);
                break;
            }
            at = self.next(at);
        }
        // Count the flow in every full bucket it passed.
        let mut p = home;
        while p != at {
            self.buckets[p].overflow += 1;
            p = self.next(p);
        }
        self.len += 1;
        true
    }

    /// Removes slab index `idx` stored under `hash`; false when it is not
    /// there.
    pub(super) fn remove(&mut self, hash: u64, idx: u32) -> bool {
        let home = self.home(hash);
        let mut at = home;
        let mut found = None;
        for _ in 0..self.buckets.len() {
            let b = &self.buckets[at];
            if let Some(s) = b.slots.iter().position(|&x| x == idx + 1) {
                found = Some(s);
                break;
            }
            if b.overflow == 0 {
                break;
            }
            at = self.next(at);
        }
        let Some(s) = found else { return false };
        let b = &mut self.buckets[at];
        b.slots[s] = 0;
        b.tags[s] = 0;
        let mut p = home;
        while p != at {
            let o = &mut self.buckets[p].overflow;
            *o = o.saturating_sub(1);
            p = self.next(p);
        }
        self.len -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn a_bucket_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert_eq!(std::mem::align_of::<Bucket>(), 64);
    }

    #[test]
    fn colliding_hashes_overflow_into_the_next_buckets_and_come_back() {
        let mut ix = FlowIndex::with_capacity(64);
        // 25 entries with the same home bucket and tag: three buckets.
        let h = 0x1234_5678_0000_0500;
        let (n, slots) = (25, u32::try_from(SLOTS).unwrap());
        for i in 0..n {
            assert!(ix.insert(h, i));
        }
        for i in 0..n {
            assert_eq!(ix.find(h, |x| x == i), Some(i), "entry {i}");
        }
        assert_eq!(ix.candidate(h), Some(0));
        // Removing from the home bucket leaves the overflowed ones findable.
        for i in 0..slots {
            assert!(ix.remove(h, i));
        }
        for i in slots..n {
            assert_eq!(ix.find(h, |x| x == i), Some(i));
        }
        for i in slots..n {
            assert!(ix.remove(h, i));
        }
        assert!(!ix.remove(h, 3));
        assert_eq!(ix.len(), 0);
        assert!(ix
            .buckets
            .iter()
            .all(|b| b.overflow == 0 && b.slots == [0; SLOTS]));
    }

    #[test]
    fn a_full_index_refuses_and_stays_consistent() {
        let mut ix = FlowIndex::with_capacity(1);
        let n = u32::try_from(ix.buckets.len() * SLOTS).unwrap();
        for i in 0..n {
            assert!(ix.insert(u64::from(i) * 0x9e37_79b9, i));
        }
        assert!(!ix.insert(7, n));
        assert_eq!(ix.len(), n as usize);
        for i in 0..n {
            let h = u64::from(i) * 0x9e37_79b9;
            assert_eq!(ix.find(h, |x| x == i), Some(i));
        }
    }

    proptest! {
        /// Any sequence of inserts and removals, with hashes from a small
        /// set so that buckets collide and overflow, answers like a map.
        #[test]
        fn behaves_like_a_map(ops in prop::collection::vec((any::<bool>(), 0u32..48, 0u64..6), 1..400)) {
            let mut ix = FlowIndex::with_capacity(40);
            let mut model: HashMap<u32, u64> = HashMap::new();
            for (add, idx, h) in ops {
                // Few distinct homes (low bits) and tags (high bits).
                let hash = (h << 48) | ((h % 3) << 30);
                if add {
                    if model.contains_key(&idx) {
                        continue;
                    }
                    let fits = model.len() < ix.buckets.len() * SLOTS;
                    prop_assert_eq!(ix.insert(hash, idx), fits);
                    if fits {
                        model.insert(idx, hash);
                    }
                } else if let Some(hash) = model.remove(&idx) {
                    prop_assert!(ix.remove(hash, idx));
                } else {
                    prop_assert!(!ix.remove(hash, idx));
                }
                prop_assert_eq!(ix.len(), model.len());
                for (&i, &hh) in &model {
                    prop_assert_eq!(ix.find(hh, |x| x == i), Some(i));
                }
                for i in 0..48u32 {
                    if !model.contains_key(&i) {
                        prop_assert_eq!(ix.find(hash, |x| x == i), None);
                    }
                }
            }
        }
    }
}
