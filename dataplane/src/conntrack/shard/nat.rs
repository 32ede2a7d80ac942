//! Translated flows in the shard: the reply tuple NAT chose, indexed so
//! that reply packets (and ICMP errors quoting a translated packet) find
//! the flow.
//!
//! A flow without NAT is found through the main table by either direction
//! (its reply is the inverse of its original). A translated flow's reply
//! tuple hashes elsewhere, so it gets a second index, `nat_index` (the
//! same prefetchable cache-line buckets as the main one, keyed by the reply
//! tuple's hash, holding slab indices), and its reply tuple sits in
//! `nat_replies`, an array beside the slab (one [`NatSlot`] per slab
//! index), so that both directions' packets reach it with one access the
//! burst warm-up can start early. Both (about 59 bytes per flow slot: 40
//! for the slot, 19 for the index, sized for twice the slab so that at
//! most a third of its slots are used and few flows live outside their
//! home bucket, where the warm-up does not look) are made when the worker's rules first
//! have `nat` lines, else at the first translated flow (a peer's), and
//! kept from then on. A translated flow's reply tuple is only here: the
//! extras side table holds its other extras, if any. The main table is probed
//! first; the NAT index only when that misses and some flow is
//! translated, so flows without NAT pay one branch (and a packet of a
//! tracked flow one more, on the entry's status bits).

use crate::flow::{status, Dir, FlowExtras, FlowKey, Tuple};
use crate::nat::{translated_original, translated_reply};

use super::super::l4::reply_of;

use super::index::FlowIndex;
use super::{flow_hash, NewFlow, Shard, TableFull};

/// Entry status bits that say a flow is translated.
#[allow(clippy::cast_possible_truncation)]
pub(super) const ST_NAT: u16 = (status::SRC_NAT | status::DST_NAT) as u16;

/// The reply tuple of the flow at one slab index, if it is translated.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct NatSlot {
    reply: Tuple,
    /// The slot holds the flow's reply tuple and `nat_index` has it.
    live: bool,
}

/// The NAT side of a shard, made at its first translated flow.
#[derive(Debug)]
pub(super) struct NatTables {
    /// By slab index.
    replies: crate::huge::HugeSlice<NatSlot>,
    /// Slab indices by reply tuple hash.
    index: FlowIndex,
    /// Translated flows.
    len: usize,
}

impl NatTables {
    fn new(capacity: usize) -> NatTables {
        NatTables {
            replies: crate::huge::HugeSlice::new(capacity, NatSlot::default()),
            // A third full at most (see the module documentation).
            index: FlowIndex::with_capacity(capacity.saturating_mul(2)),
            len: 0,
        }
    }

    /// Bytes the tables take.
    pub(super) fn bytes(&self) -> usize {
        self.replies.len() * std::mem::size_of::<NatSlot>() + self.index.bytes()
    }
}

/// What the pipeline does to a packet of a translated flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatRewrite {
    /// Give the packet this tuple.
    Packet(Tuple),
    /// An ICMP error: give the embedded packet this tuple (the outer
    /// addresses follow it).
    Error(Tuple),
}

impl Shard {
    /// The translated reply tuple of the flow at `idx`, if it is
    /// translated.
    #[inline]
    pub fn nat_reply(&self, idx: u32) -> Option<&Tuple> {
        let e = self.slab.0.get(idx as usize)?;
        if e.status & ST_NAT == 0 {
            return None;
        }
        let slot = self.nat.as_ref()?.replies.get(idx as usize)?;
        slot.live.then_some(&slot.reply)
    }

    /// Starts loading the NAT index bucket of `hash` (only while some flow
    /// is translated).
    #[inline]
    pub(super) fn prefetch_nat(&self, hash: u64) {
        if let Some(n) = self.nat.as_ref().filter(|n| n.len > 0) {
            n.index.prefetch(hash);
        }
    }

    /// The NAT index's guess for `hash` (see [`FlowIndex::candidate`]),
    /// with its reply slot's load started.
    #[inline]
    pub(super) fn nat_candidate(&self, hash: u64) -> Option<u32> {
        let n = self.nat.as_ref().filter(|n| n.len > 0)?;
        n.index.candidate(hash)
    }

    /// Starts loading the reply slot of the flow at `idx` (while some flow
    /// is translated). A 40-byte slot straddles two cache lines half the
    /// time (its `live` flag and the tail of its tuple in the second):
    /// both are loaded. Loading only the first line left half the
    /// translated packets waiting on the second at decision time (`bench
    /// pipeline --nat`).
    #[inline]
    pub(super) fn prefetch_nat_slot(&self, idx: u32) {
        let nat = self.nat.as_ref().filter(|n| n.len > 0);
        if let Some(slot) = nat.and_then(|n| n.replies.get(idx as usize)) {
            crate::huge::prefetch_all(slot);
        }
    }

    /// What to do to a packet in `dir` of the flow at `idx`: `None` for a
    /// flow without NAT (one branch).
    #[inline]
    pub fn nat_rewrite(&self, idx: u32, dir: Dir) -> Option<NatRewrite> {
        let r = self.nat_reply(idx)?;
        let orig = &self.slab.0[idx as usize].key.orig;
        Some(NatRewrite::Packet(match dir {
            Dir::Original => translated_original(orig, r),
            Dir::Reply => translated_reply(orig, r),
        }))
    }

    /// What to do to an ICMP error quoting a packet with tuple `inner` of
    /// the flow at `idx`: a packet that left translated is quoted as it
    /// left and is given back its untranslated tuple, and the other way
    /// round. `None` for a flow without NAT or a quote that is neither.
    pub fn nat_rewrite_error(&self, idx: u32, inner: &Tuple) -> Option<NatRewrite> {
        let r = self.nat_reply(idx)?;
        let orig = &self.slab.0[idx as usize].key.orig;
        if *inner == translated_original(orig, r) {
            Some(NatRewrite::Error(*orig))
        } else if *inner == translated_reply(orig, r) {
            Some(NatRewrite::Error(*r))
        } else {
            None
        }
    }

    /// Whether the NAT tables are made (see [`Shard::make_nat_tables`]).
    #[inline]
    pub fn has_nat_tables(&self) -> bool {
        self.nat.is_some()
    }

    /// Makes the NAT tables (about 59 bytes per flow slot) unless they
    /// exist. Otherwise the first translated flow makes them.
    pub fn make_nat_tables(&mut self) {
        let cap = self.slab.0.len();
        self.nat
            .get_or_insert_with(|| Box::new(NatTables::new(cap)));
    }

    /// Translated flows in the shard.
    pub fn nat_len(&self) -> usize {
        self.nat.as_ref().map_or(0, |n| n.len)
    }

    /// Finds a flow by a translated reply tuple (`Dir::Reply`) or, for
    /// `quoted` (the packet inside an ICMP error), also by the translated
    /// original (`Dir::Original`; the hash is symmetric, so it is filed
    /// under the same hash).
    pub(super) fn find_nat(&self, t: &Tuple, zone: u16, quoted: bool) -> Option<(u32, Dir)> {
        let n = self.nat.as_ref().filter(|n| n.len > 0)?;
        let slab = &self.slab.0;
        let mut dir = Dir::Reply;
        let idx = n.index.find(flow_hash(t, zone), |i| {
            let (k, slot) = (&slab[i as usize].key, &n.replies[i as usize]);
            if k.zone != zone || !slot.live {
                return false;
            }
            if slot.reply == *t {
                dir = Dir::Reply;
                return true;
            }
            if quoted && translated_original(&k.orig, &slot.reply) == *t {
                dir = Dir::Original;
                return true;
            }
            false
        })?;
        Some((idx, dir))
    }

    /// Whether a reply tuple `t` is in use in `zone` (by any flow, as its
    /// original, its reply or its translated reply; or its answer `t.reply()`
    /// is). The allocator asks this for every candidate, so it is one probe
    /// of each index: the hash is symmetric, so `t` and its answer share
    /// their buckets.
    pub fn reply_taken(&self, t: &Tuple, zone: u16) -> bool {
        let r = t.reply();
        let hash = flow_hash(t, zone);
        // The hash is symmetric: only an ICMP tuple that is not a query
        // (which no allocator makes) can hash apart from its answer.
        if t.is_icmp() && hash != flow_hash(&r, zone) {
            return self.find(t, zone).is_some() || self.find(&r, zone).is_some();
        }
        // Both indexes' buckets load at once: two cache misses overlapped,
        // not one after the other.
        self.prefetch_nat(hash);
        let slab = &self.slab.0;
        let uses = |o: &Tuple| {
            *o == *t || *o == r || {
                let p = reply_of(o);
                p == *t || p == r
            }
        };
        let in_main = self
            .index
            .find(hash, |i| {
                let e = &slab[i as usize];
                e.key.zone == zone && uses(&e.key.orig)
            })
            .is_some();
        in_main
            || self.nat.as_ref().filter(|n| n.len > 0).is_some_and(|n| {
                n.index
                    .find(hash, |i| {
                        let slot = &n.replies[i as usize];
                        slot.live
                            && slab[i as usize].key.zone == zone
                            && (slot.reply == *t || slot.reply == r)
                    })
                    .is_some()
            })
    }

    /// Indexes the flow at `idx` as translated with reply tuple `reply`
    /// (replacing any earlier one) and sets its NAT status bits from what
    /// differs.
    pub(super) fn index_nat(&mut self, idx: u32, reply: Tuple) {
        self.unindex_nat(idx);
        let e = &mut self.slab.0[idx as usize];
        let orig = e.key.orig;
        let plain = orig.reply();
        if reply == plain {
            e.status &= !ST_NAT;
            return;
        }
        // For ICMP the identifier (`src_port` of both tuples) is the
        // source's.
        let (src, dst) = if orig.is_icmp() {
            (
                reply.dst != plain.dst || reply.src_port != plain.src_port,
                reply.src != plain.src,
            )
        } else {
            (
                reply.dst != plain.dst || reply.dst_port != plain.dst_port,
                reply.src != plain.src || reply.src_port != plain.src_port,
            )
        };
        e.status |= u16::try_from(crate::nat::status_bits(src, dst)).unwrap_or(0);
        let zone = e.key.zone;
        self.make_nat_tables();
        let Some(n) = self.nat.as_mut() else {
            return;
        };
        // Never full: it has room for every slab slot.
        if !n.index.insert(flow_hash(&reply, zone), idx) {
            self.slab.0[idx as usize].status &= !ST_NAT;
            return;
        }
        n.replies[idx as usize] = NatSlot { reply, live: true };
        n.len += 1;
        // A reply that steers to another worker is handed back to us.
        if let Some(f) = self.foreign.as_ref().filter(|f| f.elsewhere(&reply)) {
            f.table.insert(reply, zone, f.worker);
        }
    }

    /// Removes the flow at `idx` from the NAT index, if it is there.
    pub(super) fn unindex_nat(&mut self, idx: u32) {
        let zone = self.slab.0[idx as usize].key.zone;
        let Some(n) = self.nat.as_mut() else {
            return;
        };
        let slot = &mut n.replies[idx as usize];
        if !slot.live {
            return;
        }
        slot.live = false;
        let reply = slot.reply;
        n.index.remove(flow_hash(&reply, zone), idx);
        n.len -= 1;
        if let Some(f) = self.foreign.as_ref().filter(|f| f.elsewhere(&reply)) {
            f.table.remove(&reply, zone, f.worker);
        }
    }

    /// [`Shard::confirm_at`] for a flow translated to reply tuple `reply`:
    /// the flow is created with its NAT (so its first delta carries the
    /// translated reply tuple).
    pub fn confirm_nat(
        &mut self,
        now: u32,
        nf: &NewFlow,
        acl_gen: u16,
        level: crate::flow::SyncLevel,
        reply: Tuple,
    ) -> Result<u32, TableFull> {
        self.confirm_inner(
            now,
            nf,
            acl_gen,
            level,
            Some(reply),
            super::Attach::default(),
        )
    }

    /// Records the NAT of a newly inserted flow: index and status. The
    /// reply tuple lives only in its [`NatSlot`]: a flow whose only extra
    /// is its translation has no entry in the side table (inserting one
    /// cost a new translated flow about a fifth of its time).
    pub(super) fn attach_nat(&mut self, idx: u32, reply: Tuple) {
        self.index_nat(idx, reply);
    }

    /// Sets the translation of the flow at `idx` to `reply` as extras from
    /// outside (a peer's, an import) give it: indexed, or unindexed when
    /// there is none.
    pub(super) fn set_nat(&mut self, idx: u32, reply: Option<Tuple>) {
        match reply {
            Some(r) => self.index_nat(idx, r),
            None => self.unindex_nat(idx),
        }
    }

    /// The flow's extras as the rest of the world sees them: the side
    /// table's, with the reply tuple from the NAT slot. `None`: none.
    pub(super) fn extras_of(&self, idx: u32) -> Option<FlowExtras> {
        let reply = self.nat_reply(idx).copied();
        let mut x = if self.slab.0[idx as usize].has_extras() {
            self.extras.get(&idx).cloned()
        } else {
            None
        };
        if reply.is_some() {
            x.get_or_insert_with(FlowExtras::default).reply = reply;
        }
        x
    }

    /// The flow key a translated reply tuple belongs to (tests, console).
    pub fn nat_owner(&self, reply: &Tuple, zone: u16) -> Option<FlowKey> {
        let (idx, _) = self.find_nat(reply, zone, false)?;
        Some(self.slab.0[idx as usize].key)
    }
}
