//! Flow ownership by buckets (clusters, issue 12).
//!
//! The steering hash ([`steering_hash`], the one the AF_PACKET fanout
//! program computes) picks one of `B` buckets by its bits 14 to 31 (the
//! low bits pick the worker, so bucket and worker stay independent for
//! power-of-two worker counts); a cluster's bucket map gives every bucket
//! one forwarding owner. Both directions of a flow hash alike, so they land
//! in the same bucket, and the hash has no seed, so every node of a cluster
//! computes the same bucket for a frame. Because classic BPF computes it
//! too, the kernel can drop another member's frames before they reach a
//! worker ([`crate::port::steer::bucket_filter_program`]). Frames that are not IP (ARP, LLDP passed by
//! `pass_ethertypes`) are bucketed by their two MAC addresses, in either
//! order, so exactly one node passes each of them too.
//!
//! [`BucketSet`] is a plain bitset (what the control plane computes with);
//! [`BucketOwnership`] is its atomic mirror that a worker reads per frame
//! (one relaxed load; written only by the control plane). A worker with
//! ownership enabled forwards only the frames of buckets its node owns and
//! drops the others, counted as `not_owner` (in transparent mode every
//! node of the cluster sees every frame, as on the FT-FW paper's hub).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::flow::{FlowKey, Tuple};
use crate::port::steer::steering_hash;

/// Most buckets a map may have.
pub const MAX_BUCKETS: u32 = 16_384;

/// The bucket of a 64-bit hash: its high 32 bits scaled to `buckets`
/// (frames that are not IP, by their MACs).
#[inline]
pub fn bucket_of_hash(hash: u64, buckets: u32) -> u32 {
    // (h_hi * B) >> 32 < B for h_hi < 2^32: the result fits.
    #[allow(clippy::cast_possible_truncation)]
    let b = ((hash >> 32) * u64::from(buckets)) >> 32;
    b as u32
}

/// The bucket of a steering hash: its bits 14 to 31 scaled to `buckets`
/// (at most [`MAX_BUCKETS`], so the product stays within 32 bits, as the
/// kernel's bucket filter computes it).
#[inline]
pub fn bucket_of_steering(hash: u32, buckets: u32) -> u32 {
    ((hash >> 14).wrapping_mul(buckets.min(MAX_BUCKETS))) >> 18
}

/// The bucket of a packet's tuple (either direction).
#[inline]
pub fn bucket_of_tuple(t: &Tuple, buckets: u32) -> u32 {
    bucket_of_steering(steering_hash(t), buckets)
}

/// The bucket of a flow (its original tuple; the zone does not count, so a
/// flow keeps its bucket whatever zone a node files it under).
#[inline]
pub fn bucket_of_key(k: &FlowKey, buckets: u32) -> u32 {
    bucket_of_tuple(&k.orig, buckets)
}

/// The bucket of a frame that is not IP: its two MAC addresses, ordered,
/// hashed (an ARP request and its reply may land in different buckets;
/// each passes through exactly one node). Frames shorter than two MACs go
/// to bucket 0.
pub fn bucket_of_l2(frame: &[u8], buckets: u32) -> u32 {
    let mac = |at: usize| -> u64 {
        frame.get(at..at + 6).map_or(0, |m| {
            m.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
        })
    };
    let (a, b) = (mac(0), mac(6));
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let p = u128::from(lo ^ 0x243f_6a88_85a3_08d3) * u128::from(hi ^ 0x1319_8a2e_0370_7344);
    #[allow(clippy::cast_possible_truncation)]
    let h = (p as u64) ^ ((p >> 64) as u64);
    bucket_of_hash(h, buckets)
}

/// A set of buckets out of `len`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BucketSet {
    len: u32,
    words: Vec<u64>,
}

impl std::fmt::Debug for BucketSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BucketSet({}/{}: {})",
            self.count(),
            self.len,
            self.ranges()
        )
    }
}

impl BucketSet {
    /// No bucket out of `len`.
    pub fn empty(len: u32) -> BucketSet {
        BucketSet {
            len,
            words: vec![0; len.div_ceil(64) as usize],
        }
    }

    /// Every bucket out of `len`.
    pub fn full(len: u32) -> BucketSet {
        let mut s = BucketSet::empty(len);
        for b in 0..len {
            s.insert(b);
        }
        s
    }

    /// The buckets `it` yields (ignoring any not below `len`).
    pub fn from_iter_in(len: u32, it: impl IntoIterator<Item = u32>) -> BucketSet {
        let mut s = BucketSet::empty(len);
        for b in it {
            s.insert(b);
        }
        s
    }

    /// How many buckets the universe has.
    pub fn universe(&self) -> u32 {
        self.len
    }

    /// Adds `b`; returns whether it was new. Out of range: ignored, false.
    pub fn insert(&mut self, b: u32) -> bool {
        if b >= self.len {
            return false;
        }
        let (w, bit) = ((b / 64) as usize, b % 64);
        let was = self.words[w] >> bit & 1 == 1;
        self.words[w] |= 1 << bit;
        !was
    }

    /// Removes `b`; returns whether it was there.
    pub fn remove(&mut self, b: u32) -> bool {
        if b >= self.len {
            return false;
        }
        let (w, bit) = ((b / 64) as usize, b % 64);
        let was = self.words[w] >> bit & 1 == 1;
        self.words[w] &= !(1 << bit);
        was
    }

    /// Whether `b` is in the set.
    #[inline]
    pub fn contains(&self, b: u32) -> bool {
        b < self.len && self.words[(b / 64) as usize] >> (b % 64) & 1 == 1
    }

    /// How many buckets are in the set.
    pub fn count(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// The buckets in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let base = u32::try_from(i).unwrap_or(u32::MAX).saturating_mul(64);
            (0..64u32)
                .filter(move |k| w >> k & 1 == 1)
                .map(move |k| base + k)
        })
    }

    /// Buckets in `self` or `other` (same universe; extra ones ignored).
    pub fn union(&self, other: &BucketSet) -> BucketSet {
        let mut s = self.clone();
        for (a, b) in s.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
        s
    }

    /// Buckets in `self` and not in `other`.
    pub fn difference(&self, other: &BucketSet) -> BucketSet {
        let mut s = self.clone();
        for (a, b) in s.words.iter_mut().zip(&other.words) {
            *a &= !b;
        }
        s
    }

    /// Buckets in both.
    pub fn intersection(&self, other: &BucketSet) -> BucketSet {
        let mut s = self.clone();
        for (i, a) in s.words.iter_mut().enumerate() {
            *a &= other.words.get(i).copied().unwrap_or(0);
        }
        s
    }

    /// The set as ranges, `0-99,120,130-131` (for logs and the console).
    pub fn ranges(&self) -> String {
        let mut out = String::new();
        let mut run: Option<(u32, u32)> = None;
        let flush = |r: (u32, u32), out: &mut String| {
            if !out.is_empty() {
                out.push(',');
            }
            if r.0 == r.1 {
                out.push_str(&r.0.to_string());
            } else {
                out.push_str(&format!("{}-{}", r.0, r.1));
            }
        };
        for b in self.iter() {
            run = match run {
                Some((s, e)) if e + 1 == b => Some((s, b)),
                Some(r) => {
                    flush(r, &mut out);
                    Some((b, b))
                }
                None => Some((b, b)),
            };
        }
        if let Some(r) = run {
            flush(r, &mut out);
        }
        out
    }
}

/// The buckets a worker forwards, readable per frame. Disabled (the
/// default) means "every frame is ours": a node outside a cluster, or a
/// primary-backup pair, never pays for the check beyond one load.
#[derive(Debug)]
pub struct BucketOwnership {
    /// Buckets in the map; 0 = ownership off.
    buckets: AtomicU32,
    words: Box<[AtomicU64]>,
    /// Bumped at every change (workers refresh their ports' kernel
    /// filters when it moves).
    generation: AtomicU64,
}

impl Default for BucketOwnership {
    fn default() -> Self {
        BucketOwnership {
            buckets: AtomicU32::new(0),
            words: (0..MAX_BUCKETS / 64).map(|_| AtomicU64::new(0)).collect(),
            generation: AtomicU64::new(0),
        }
    }
}

impl BucketOwnership {
    /// Turns ownership on with exactly the buckets of `set` owned (its
    /// universe is the bucket count; above [`MAX_BUCKETS`] it is clamped).
    /// Buckets are written before the count is published, so a worker that
    /// sees the new count sees the new set; a worker in the middle of a
    /// burst may decide its remaining frames on a mix of old and new bits
    /// (a bucket changes hands only after its old owner stopped, so a mix
    /// can only drop a frame, never forward one twice).
    pub fn set(&self, set: &BucketSet) {
        for (i, w) in self.words.iter().enumerate() {
            w.store(set.words.get(i).copied().unwrap_or(0), Ordering::Relaxed);
        }
        self.buckets
            .store(set.universe().min(MAX_BUCKETS), Ordering::Release);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Turns ownership off: every frame is ours again.
    pub fn disable(&self) {
        self.buckets.store(0, Ordering::Release);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// How many times the set changed (or was set again).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The bucket count, 0 when ownership is off.
    #[inline]
    pub fn buckets(&self) -> u32 {
        self.buckets.load(Ordering::Acquire)
    }

    /// Whether bucket `b` is owned (with ownership on).
    #[inline]
    pub fn owns(&self, b: u32) -> bool {
        self.words
            .get((b / 64) as usize)
            .is_some_and(|w| w.load(Ordering::Relaxed) >> (b % 64) & 1 == 1)
    }

    /// The owned buckets as a set (for the console).
    pub fn snapshot(&self) -> Option<BucketSet> {
        let n = self.buckets();
        (n > 0).then(|| BucketSet::from_iter_in(n, (0..n).filter(|&b| self.owns(b))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Tuple;
    use std::net::{IpAddr, Ipv4Addr};

    fn tuple(sp: u16, dp: u16) -> Tuple {
        Tuple::new(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10)),
            6,
            sp,
            dp,
        )
    }

    #[test]
    fn both_directions_share_a_bucket_and_buckets_spread() {
        let mut seen = BucketSet::empty(64);
        for sp in 1000..3000u16 {
            let t = tuple(sp, 80);
            let r = crate::conntrack::l4::reply_of(&t);
            assert_eq!(bucket_of_tuple(&t, 4096), bucket_of_tuple(&r, 4096));
            assert!(bucket_of_tuple(&t, 4096) < 4096);
            seen.insert(bucket_of_tuple(&t, 64));
        }
        assert_eq!(seen.count(), 64, "2000 flows reach every one of 64 buckets");
    }

    #[test]
    fn l2_buckets_are_symmetric() {
        let mut f = vec![0u8; 14];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        let mut g = f.clone();
        g[..6].copy_from_slice(&f[6..12]);
        g[6..12].copy_from_slice(&f[..6]);
        assert_eq!(bucket_of_l2(&f, 4096), bucket_of_l2(&g, 4096));
        assert_eq!(bucket_of_l2(&[1, 2], 4096), bucket_of_l2(&[], 4096));
    }

    #[test]
    fn set_operations() {
        let a = BucketSet::from_iter_in(100, [1, 2, 3, 50, 99, 200]);
        let b = BucketSet::from_iter_in(100, [2, 3, 4]);
        assert_eq!(a.count(), 5);
        assert!(!a.contains(200) && a.contains(99));
        assert_eq!(a.union(&b).count(), 6);
        assert_eq!(a.difference(&b).iter().collect::<Vec<_>>(), vec![1, 50, 99]);
        assert_eq!(a.intersection(&b).iter().collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(a.ranges(), "1-3,50,99");
        assert_eq!(BucketSet::full(130).count(), 130);
        assert!(BucketSet::empty(7).is_empty());
    }

    #[test]
    fn ownership_mirrors_the_set() {
        let o = BucketOwnership::default();
        assert_eq!(o.buckets(), 0);
        assert!(o.snapshot().is_none());
        let s = BucketSet::from_iter_in(4096, [0, 63, 64, 4095]);
        let g = o.generation();
        o.set(&s);
        assert!(o.generation() > g);
        assert_eq!(o.buckets(), 4096);
        assert!(o.owns(63) && o.owns(4095) && !o.owns(1));
        assert_eq!(o.snapshot().as_ref(), Some(&s));
        o.disable();
        assert_eq!(o.buckets(), 0);
    }
}
