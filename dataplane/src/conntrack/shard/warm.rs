//! The burst warm-up: the worker runs [`Shard::prefetch`] over a whole
//! burst, then [`Shard::warm_hashed`], then (while some flow is
//! translated) [`Shard::warm_nat`] over the packets left to the NAT index,
//! and only then decides the packets, with the hints these return. The
//! cache misses of a burst's lookups overlap instead of queueing one after
//! another.

use crate::meta::PacketMeta;

use super::{flow_hash, Shard};

/// A warm-up hint that names no flow ([`Shard::warm_hashed`]).
pub const HINT_NONE: u32 = u32::MAX;

/// A warm-up hint that leaves the packet to the NAT index
/// ([`Shard::warm_nat`]). Never a slab index (capacities are below it), so
/// a decision given it looks the flow up in full.
pub const HINT_NAT: u32 = u32::MAX - 1;

impl Shard {
    /// First step of a burst's warm-up: starts loading the index bucket of
    /// the packet's flow and returns the flow's hash for
    /// [`Shard::warm_hashed`]. The worker runs this over the whole burst,
    /// then `warm_hashed` over the whole burst (and [`Shard::warm_nat`]
    /// over the packets it left to the NAT index), then decides the
    /// packets: the cache misses of a burst's lookups overlap instead of
    /// queueing one after another.
    #[inline]
    pub fn prefetch(&self, meta: &PacketMeta, zone: u16) -> u64 {
        let t = meta.icmp_error.as_ref().unwrap_or(&meta.tuple);
        let hash = flow_hash(t, zone);
        self.index.prefetch(hash);
        hash
    }

    /// Second step: reads the (by now cached) bucket of `hash` and the
    /// flow entry its tag points to, and returns that slab index as the
    /// hint for [`Shard::track_hinted`] ([`HINT_NONE`]: no candidate). The
    /// hint is a guess that the decision checks against the entry's key.
    ///
    /// The entry is read, not prefetched: the reads of a burst are
    /// independent, so the CPU overlaps their misses anyway, and on this
    /// project's machines a prefetch here left the entries' misses to the
    /// decisions (`bench pipeline` at 1M flows, stage `decide`).
    ///
    /// A packet without a candidate in its home bucket may be a translated
    /// flow's reply (its tuple is not the original's inverse, so it is not
    /// in the flow index under that hash). While some flow is translated,
    /// it gets [`HINT_NAT`]: its NAT index bucket is started here and
    /// [`Shard::warm_nat`] finishes it in a third pass. Packets whose
    /// candidate is here do not load the NAT index at all (they used to:
    /// a cache line per packet that only replies of translated flows use).
    ///
    /// Without a translated flow, a packet with no candidate in its home
    /// bucket is a new flow's or one further along the probe path: the
    /// decision looks it up in full.
    #[inline]
    pub fn warm_hashed(&self, hash: u64) -> u32 {
        let Some(idx) = self.index.candidate(hash) else {
            if self.nat_len() > 0 {
                self.prefetch_nat(hash);
                return HINT_NAT;
            }
            return HINT_NONE;
        };
        self.warm_entry(idx);
        idx
    }

    /// Third step, for the packets [`Shard::warm_hashed`] marked
    /// [`HINT_NAT`]: reads the NAT index's candidate for `hash` and warms
    /// it as the second step does.
    ///
    /// With `full_probe`, a packet with a candidate in neither home bucket
    /// is looked up in full (routed mode needs the hint of a translated
    /// reply to our own address, wherever its flow lives). Without it the
    /// decision does that lookup, so a new flow's first packet is not
    /// looked up twice.
    #[inline]
    pub fn warm_nat(&self, meta: &PacketMeta, zone: u16, hash: u64, full_probe: bool) -> u32 {
        let Some(idx) = self.nat_candidate(hash) else {
            if !full_probe {
                return HINT_NONE;
            }
            let t = meta.icmp_error.as_ref().unwrap_or(&meta.tuple);
            return self.find(t, zone).map_or(HINT_NONE, |(idx, _)| idx);
        };
        self.warm_entry(idx);
        idx
    }

    /// Reads the entry of the flow at `idx` and, while some flow is
    /// translated, starts loading its reply slot (see `nat.rs`), which
    /// deciding a translated flow's packet reads. The slot is loaded
    /// without looking at the entry's status first: waiting on the entry
    /// for that measured 4 ns per packet slower with every flow translated
    /// (`bench pipeline --nat`, stage `lookup`), and a flow without NAT
    /// only loses the line's bandwidth.
    #[inline]
    fn warm_entry(&self, idx: u32) {
        self.prefetch_nat_slot(idx);
        if let Some(e) = self.slab.0.get(idx as usize) {
            std::hint::black_box(e.touch());
        }
    }

    /// All warm-up steps for one packet (tests and single packets).
    #[inline]
    pub fn warm(&self, meta: &PacketMeta, zone: u16) -> u32 {
        let hash = self.prefetch(meta, zone);
        match self.warm_hashed(hash) {
            HINT_NAT => self.warm_nat(meta, zone, hash, true),
            hint => hint,
        }
    }
}
