//! One worker's connection-tracking shard.
//!
//! Flows live in a slab preallocated to the shard's capacity; an index of
//! slab indices in cache-line buckets ([`index`]), also preallocated, finds
//! them. The index is keyed by [`symmetric_hash`], so a packet in either
//! direction finds its flow with one probe, and its bucket addresses are
//! known, so a worker prefetches a whole burst's buckets, then reads their
//! flow entries ([`Shard::prefetch`], [`Shard::warm_hashed`]), before
//! deciding any packet. Expiry runs through the timing wheel in
//! [`super::wheel`], whose links live in the slab entries. Nothing here
//! allocates after construction except [`FlowExtras`] for the rare flows that
//! carry NAT or master data (imported or added from the console).
//!
//! - [`entry`]: the slab entry and the per-direction verdict cache.
//! - [`index`]: the flow index.
//! - `batch`: per-iteration batching of deltas, a flow's changes merged.
//! - `export`: listing, chunked export, upsert/import and removal (console
//!   and replication).
//! - `warm`: the burst warm-up and its hints.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::time::Instant;

use crate::flow::{status, CtState, Dir, FlowExtras, FlowKey, TcpState, Tuple};
use crate::meta::PacketMeta;

use super::delta::{Delta, DeltaKind, DeltaRing};
use super::l4::{icmp_reply_type, reply_of, symmetric_hash, Timeouts, L4};
use super::tcp::{self, TcpConfig, TcpConn, TcpVerdict, TimeoutUpdate};
use super::wheel::{Links, Wheel};

mod batch;
mod entry;
mod export;
mod helper;
mod index;
mod nat;
#[cfg(test)]
mod tests;
mod warm;

pub use entry::FlowVerdict;
use entry::{empty_entry, Entry, FreeSlots, Slab, IN_USE, ST_ASSURED, ST_CONFIRMED, ST_SEEN_REPLY};
pub use helper::Attach;
pub use nat::NatRewrite;
pub use warm::{HINT_NAT, HINT_NONE};

/// Configuration of one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Flows this shard can hold.
    pub capacity: usize,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// TCP tracking switches.
    pub tcp: TcpConfig,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig {
            capacity: 65536,
            timeouts: Timeouts::default(),
            tcp: TcpConfig::default(),
        }
    }
}

/// Why a packet was classified INVALID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidReason {
    /// TCP segment that breaks the state machine or the window.
    Tcp(tcp::TcpInvalid),
    /// First packet of a TCP flow that is not a SYN (pickup is off).
    TcpNotSyn,
    /// ICMP answer, or an ICMP type that cannot open a flow, with no flow.
    IcmpNoFlow,
    /// ICMP error about a flow that is not tracked.
    IcmpErrorNoFlow,
}

/// A flow that does not exist yet: the first packet was valid and the ACL
/// decides whether [`Shard::confirm`] inserts it.
#[derive(Clone, Copy, Debug)]
pub struct NewFlow {
    key: FlowKey,
    tcp: TcpConn,
    bytes: u16,
    /// The packet travels in the flow's reply direction (a pickup oriented
    /// by [`Shard::reversed_pickup`]).
    from_reply: bool,
}

impl NewFlow {
    /// The flow's identity.
    pub fn key(&self) -> &FlowKey {
        &self.key
    }

    /// Whether the packet that opens the flow is its first reply.
    pub fn from_reply(&self) -> bool {
        self.from_reply
    }
}

/// The result of tracking one packet.
#[derive(Clone, Copy, Debug)]
pub enum Track {
    /// A packet of a tracked flow; its state was updated.
    Established {
        /// Slab index of the flow.
        idx: u32,
        /// Direction of the packet.
        dir: Dir,
    },
    /// A valid first packet of an untracked flow.
    New(NewFlow),
    /// An ICMP error about the tracked flow at `idx`.
    Related {
        /// Slab index of the flow the error is about.
        idx: u32,
    },
    /// Packet of a tracked flow that the tracker ignores (passes without
    /// updating state), as netfilter does for some retransmissions.
    Ignored {
        /// Slab index of the flow.
        idx: u32,
        /// Direction of the packet.
        dir: Dir,
    },
    /// Fits no flow or breaks its protocol.
    Invalid(InvalidReason),
}

impl Track {
    /// The outcome's conntrack state class. For a packet of a tracked flow
    /// this says ESTABLISHED; the state the rules see is finer, NEW in the
    /// original direction until a reply was seen ([`Shard::ct_state`]).
    pub fn ct_state(&self) -> CtState {
        match self {
            Track::Established { .. } | Track::Ignored { .. } => CtState::Established,
            Track::New(_) => CtState::New,
            Track::Related { .. } => CtState::Related,
            Track::Invalid(_) => CtState::Invalid,
        }
    }
}

/// The table is full and no unassured flow could be early-dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("flow table full ({capacity} flows)")]
pub struct TableFull {
    /// The shard's capacity.
    pub capacity: usize,
}

/// Counters a shard keeps; plain integers, published by its worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardStats {
    /// Flows created (confirmed, added or imported).
    pub created: u64,
    /// Flows destroyed for any reason.
    pub destroyed: u64,
    /// Flows destroyed because they timed out.
    pub expired: u64,
    /// Unassured flows dropped to make room.
    pub early_drops: u64,
    /// New flows refused because the table was full.
    pub table_full: u64,
    /// Packets classified INVALID.
    pub invalid: u64,
    /// ICMP errors classified RELATED.
    pub related: u64,
    /// Deltas pushed.
    pub deltas: u64,
    /// Changes merged into a waiting delta of the same flow (batching on,
    /// see [`Shard::set_batching`]): deltas saved.
    #[serde(default)]
    pub deltas_merged: u64,
    /// Deltas lost to a full ring.
    pub ring_full: u64,
    /// Deltas not emitted because of the flow's sync level.
    pub sync_skipped: u64,
    /// Imported or added flows whose timeout was above the longest this
    /// table gives any flow, cut down to it (a peer's TIMEOUT 0xffffffff
    /// would otherwise keep a flow for 136 years).
    pub timeouts_clamped: u64,
}

/// Entries an early drop looks at before giving up (Linux looks at a few
/// hash buckets; we look at this many slab slots from a pseudo-random start).
const EARLY_DROP_SCAN: usize = 16;

/// One worker's flow table.
pub struct Shard {
    cfg: ConntrackConfig,
    epoch: Instant,
    slab: Slab,
    free: FreeSlots,
    index: index::FlowIndex,
    wheel: Wheel,
    extras: HashMap<u32, FlowExtras, BuildHasherDefault<SlotHasher>>,
    /// Flows' counter carries and marks (see [`entry::Wide`]), by slot.
    wide: HashMap<u32, entry::Wide, BuildHasherDefault<SlotHasher>>,
    /// Translated flows' reply tuples and their index (see `nat.rs`),
    /// made at the first translated flow.
    nat: Option<Box<nat::NatTables>>,
    ring: Arc<DeltaRing>,
    stats: ShardStats,
    /// Set while applying replicated state: no deltas are emitted, so a
    /// peer's flows are not echoed back to it.
    quiet: bool,
    /// The expectation table: a helper flow's expectations go with it
    /// (as Linux removes a master's expectations when it is destroyed).
    expect: Option<Arc<crate::helper::SharedExpect>>,
    /// Deltas of the current iteration when batching is on.
    batch: batch::Batch,
    /// Where translated flows whose replies steer to another worker are
    /// recorded (several workers).
    foreign: Option<super::foreign::ForeignLink>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("len", &self.len())
            .field("capacity", &self.cfg.capacity)
            .finish()
    }
}

/// Hashes a slab index for the side tables keyed by it: one multiply by
/// an odd constant (the indices are dense and distinct, nobody chooses
/// them, so a keyed hash buys nothing; SipHash was a tenth of a new
/// translated flow's cost).
#[derive(Default)]
struct SlotHasher(u64);

impl std::hash::Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, i: u32) {
        self.0 = (self.0 ^ u64::from(i)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[inline]
fn flow_hash(t: &Tuple, zone: u16) -> u64 {
    symmetric_hash(t) ^ u64::from(zone).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn timeout_for(cfg: &ConntrackConfig, l4: L4, tcp_state: TcpState, st: u16) -> u32 {
    match l4 {
        L4::Tcp => cfg.timeouts.tcp.for_state(tcp_state),
        L4::Udp if u32::from(st) & status::SEEN_REPLY != 0 => cfg.timeouts.udp_stream,
        L4::Udp => cfg.timeouts.udp,
        L4::Icmp => cfg.timeouts.icmp,
        L4::Generic => cfg.timeouts.generic,
    }
}

impl Shard {
    /// A shard with `cfg.capacity` preallocated slots. `epoch` is the instant
    /// second 0 of the shard's clock refers to; `ring` receives its deltas.
    pub fn new(cfg: ConntrackConfig, epoch: Instant, ring: Arc<DeltaRing>) -> Shard {
        let cap = cfg.capacity.clamp(1, u32::MAX as usize - 1);
        let cfg = ConntrackConfig {
            capacity: cap,
            ..cfg
        };
        let free = FreeSlots::new(u32::try_from(cap).unwrap_or(u32::MAX - 1));
        Shard {
            cfg,
            epoch,
            slab: Slab(crate::huge::HugeSlice::new(cap, empty_entry())),
            free,
            index: index::FlowIndex::with_capacity(cap),
            wheel: Wheel::new(0),
            extras: HashMap::default(),
            wide: HashMap::default(),
            nat: None,
            ring,
            stats: ShardStats::default(),
            quiet: false,
            expect: None,
            batch: batch::Batch::default(),
            foreign: None,
        }
    }

    /// The expectation table whose entries die with their master flow
    /// (see [`Shard::destroy`]).
    pub fn set_expect(&mut self, expect: Arc<crate::helper::SharedExpect>) {
        self.expect = Some(expect);
    }

    /// Records translated flows whose reply tuples steer to another worker
    /// in `link`'s table, so that worker hands their replies to us.
    pub fn set_foreign(&mut self, link: super::foreign::ForeignLink) {
        self.foreign = Some(link);
    }

    /// Seconds since the shard's epoch (the unit of every `now` below).
    pub fn secs(&self, now: Instant) -> u32 {
        let s = now.saturating_duration_since(self.epoch).as_secs();
        u32::try_from(s).unwrap_or(u32::MAX)
    }

    /// The configuration in force.
    pub fn config(&self) -> &ConntrackConfig {
        &self.cfg
    }

    /// Replaces the timeouts and TCP switches (capacity cannot change).
    pub fn set_policy(&mut self, timeouts: Timeouts, tcp: TcpConfig) {
        self.cfg.timeouts = timeouts;
        self.cfg.tcp = tcp;
    }

    /// Number of slab slots (capacity is clamped below `u32::MAX` at construction).
    fn slots(&self) -> u32 {
        u32::try_from(self.slab.0.len()).unwrap_or(u32::MAX)
    }

    /// Flows in the table.
    pub fn len(&self) -> usize {
        self.cfg.capacity - self.free.len()
    }

    /// Whether the table holds no flow.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Flows the table can hold.
    pub fn capacity(&self) -> usize {
        self.cfg.capacity
    }

    /// Counters.
    pub fn stats(&self) -> &ShardStats {
        &self.stats
    }

    /// The delta ring this shard feeds.
    pub fn ring(&self) -> &Arc<DeltaRing> {
        &self.ring
    }

    /// Bytes of memory per flow slot: the slab entry plus the shares of
    /// the index (64-byte buckets of ten slots, at most 2/3 full at
    /// capacity; the free list lives in the free slots themselves); and,
    /// once the shard has translated a flow, of the NAT tables (see
    /// `nat.rs`).
    pub fn bytes_per_flow(&self) -> usize {
        let cap = self.cfg.capacity.max(1);
        let nat = self.nat.as_ref().map_or(0, |n| n.bytes());
        let shared = self.index.bytes() + nat;
        std::mem::size_of::<Entry>() + shared.div_ceil(cap)
    }

    /// Whether the slab was mapped with transparent huge pages advised (see
    /// [`crate::huge`]).
    pub fn huge_pages_advised(&self) -> bool {
        self.slab.0.huge_advised()
    }

    /// Bytes of one flow table entry (the slab slot).
    pub const ENTRY_BYTES: usize = std::mem::size_of::<Entry>();

    /// Whether this shard holds the flow of the packet `meta` (of an ICMP
    /// error: the flow it quotes), by its own or its translated tuples.
    pub fn holds_flow_of(&self, meta: &PacketMeta, zone: u16) -> bool {
        let quoted = meta.icmp_error.is_some();
        let t = meta.icmp_error.as_ref().unwrap_or(&meta.tuple);
        self.find(t, zone)
            .or_else(|| self.find_nat(t, zone, quoted))
            .is_some()
    }

    #[inline]
    fn find(&self, t: &Tuple, zone: u16) -> Option<(u32, Dir)> {
        let slab = &self.slab.0;
        let Some(idx) = self.index.find(flow_hash(t, zone), |i| {
            let e = &slab[i as usize];
            e.key.zone == zone && (e.key.orig == *t || reply_of(&e.key.orig) == *t)
        }) else {
            return self.find_nat(t, zone, false);
        };
        let dir = if slab[idx as usize].key.orig == *t {
            Dir::Original
        } else {
            Dir::Reply
        };
        Some((idx, dir))
    }

    /// Finds the flow of `t`, trying the slab index `hint` first. A hint is
    /// only a guess (earlier packets of the burst may have changed the
    /// table): it is used only if that entry holds this flow.
    #[inline]
    fn find_hinted(&self, t: &Tuple, zone: u16, hint: u32) -> Option<(u32, Dir)> {
        if let Some(e) = self.slab.0.get(hint as usize) {
            if e.in_use() && e.key.zone == zone {
                if e.key.orig == *t {
                    return Some((hint, Dir::Original));
                }
                if reply_of(&e.key.orig) == *t {
                    return Some((hint, Dir::Reply));
                }
                if self.nat_reply(hint) == Some(t) {
                    return Some((hint, Dir::Reply));
                }
            }
        }
        self.find(t, zone)
    }

    /// Looks a flow up by its original tuple and zone.
    pub fn lookup(&self, key: &FlowKey) -> Option<u32> {
        self.find(&key.orig, key.zone)
            .filter(|(_, d)| *d == Dir::Original)
            .map(|(i, _)| i)
    }

    /// Tracks one IP packet that arrived in `zone` at second `now`.
    /// Work is O(1): one table probe (two for ICMP errors).
    pub fn track(&mut self, now: u32, meta: &PacketMeta, zone: u16) -> Track {
        self.track_hinted(now, meta, zone, u32::MAX)
    }

    /// [`Shard::track`] with the hint [`Shard::warm`] returned.
    pub fn track_hinted(&mut self, now: u32, meta: &PacketMeta, zone: u16, hint: u32) -> Track {
        let l3_len = meta.ip_len;
        if let Some(inner) = &meta.icmp_error {
            let found = self
                .find_hinted(inner, zone, hint)
                .or_else(|| self.find_nat(inner, zone, true));
            return match found {
                Some((idx, _)) => {
                    self.stats.related += 1;
                    Track::Related { idx }
                }
                None => self.invalid(InvalidReason::IcmpErrorNoFlow),
            };
        }
        let t = &meta.tuple;
        if let Some((idx, dir)) = self.find_hinted(t, zone, hint) {
            return self.update(now, idx, dir, meta);
        }
        self.new_flow(FlowKey { orig: *t, zone }, meta, l3_len)
    }

    fn invalid(&mut self, r: InvalidReason) -> Track {
        self.stats.invalid += 1;
        Track::Invalid(r)
    }

    fn new_flow(&mut self, key: FlowKey, meta: &PacketMeta, bytes: u16) -> Track {
        let mut conn = TcpConn::default();
        match L4::of(&key.orig) {
            L4::Tcp => match tcp::new_conn(&meta.tcp, &self.cfg.tcp) {
                Ok(c) => conn = c,
                Err(_) => return self.invalid(InvalidReason::TcpNotSyn),
            },
            L4::Icmp => {
                if icmp_reply_type(key.orig.v6, key.orig.icmp_type()).is_none() {
                    return self.invalid(InvalidReason::IcmpNoFlow);
                }
            }
            L4::Udp | L4::Generic => {}
        }
        Track::New(NewFlow {
            key,
            tcp: conn,
            bytes,
            from_reply: false,
        })
    }

    fn update(&mut self, now: u32, idx: u32, dir: Dir, meta: &PacketMeta) -> Track {
        let cfg = self.cfg;
        let adjusted;
        let seg = if self.slab.0[idx as usize].status & helper::ST_SEQ_ADJ == 0 {
            &meta.tcp
        } else {
            adjusted = self.unadjusted_facts(idx, dir, &meta.tcp);
            &adjusted
        };
        let e = &mut self.slab.0[idx as usize];
        let l4 = L4::of(&e.key.orig);
        let old_state = e.tcp.state();
        let old_status = e.status;
        let (seen_reply, assured) = (ST_SEEN_REPLY, ST_ASSURED);
        let mut timeout = None;
        match l4 {
            L4::Tcp => {
                let v = tcp::track(&mut e.tcp, dir, seg, &cfg.tcp);
                match v {
                    TcpVerdict::Accept {
                        assured: becomes_assured,
                        ..
                    } => {
                        if dir == Dir::Reply {
                            e.status |= seen_reply;
                        }
                        if becomes_assured {
                            e.status |= assured;
                        }
                        match e.tcp.timeout(&v, &cfg.timeouts.tcp, &cfg.tcp) {
                            TimeoutUpdate::Set(t) => timeout = Some(t),
                            TimeoutUpdate::Keep => {}
                            TimeoutUpdate::Expire => timeout = Some(0),
                        }
                    }
                    TcpVerdict::Ignore => return Track::Ignored { idx, dir },
                    TcpVerdict::Invalid(r) => return self.invalid(InvalidReason::Tcp(r)),
                    TcpVerdict::Reopen => {
                        let zone = e.key.zone;
                        self.destroy(now, idx, false);
                        return self.new_flow(
                            FlowKey {
                                orig: meta.tuple,
                                zone,
                            },
                            meta,
                            meta.ip_len,
                        );
                    }
                }
            }
            L4::Udp | L4::Icmp | L4::Generic => {
                if dir == Dir::Reply {
                    // Two-state model: unreplied, then replied (and assured).
                    e.status |= seen_reply | assured;
                }
                timeout = Some(timeout_for(&cfg, l4, TcpState::None, e.status));
            }
        }
        let d = dir.index();
        let carries = e.count(d, meta.ip_len);
        let new_state = e.tcp.state();
        let mut earlier = false;
        if let Some(t) = timeout {
            let expires = now.saturating_add(t);
            earlier = expires < e.expires;
            e.expires = expires;
        }
        if (e.status ^ old_status) & ST_SEEN_REPLY != 0 {
            // The original direction's packets turn from NEW to ESTABLISHED.
            e.clear_verdict(Dir::Original);
        }
        let changed = new_state != old_state || e.status != old_status;
        if carries != 0 {
            self.wide.entry(idx).or_default().carry(d, carries);
        }
        if earlier {
            let at = self.slab.0[idx as usize].expires;
            self.wheel.unlink(&mut self.slab, idx);
            self.wheel.link(&mut self.slab, idx, at);
        }
        if changed {
            self.emit(now, idx, DeltaKind::Updated);
        }
        Track::Established { idx, dir }
    }

    /// Inserts a flow whose first packet the ACL accepted. When the table is
    /// full, early-drops an unassured flow first, as Linux does; if none can
    /// go, refuses and counts it. `acl_gen` is the rule-set generation that
    /// accepted it; no verdict is cached yet ([`Shard::cache_verdict`]).
    pub fn confirm(&mut self, now: u32, nf: &NewFlow, acl_gen: u16) -> Result<u32, TableFull> {
        self.confirm_at(now, nf, acl_gen, crate::flow::SyncLevel::Full)
    }

    /// [`Shard::confirm`] with the flow's replication level: `established`
    /// emits no delta until the flow is assured (nor its end if it never
    /// was), `none` never emits one. Skipped deltas are counted
    /// (`sync_skipped`).
    pub fn confirm_at(
        &mut self,
        now: u32,
        nf: &NewFlow,
        acl_gen: u16,
        level: crate::flow::SyncLevel,
    ) -> Result<u32, TableFull> {
        self.confirm_inner(now, nf, acl_gen, level, None, Attach::default())
    }

    fn confirm_inner(
        &mut self,
        now: u32,
        nf: &NewFlow,
        acl_gen: u16,
        level: crate::flow::SyncLevel,
        nat: Option<Tuple>,
        attach: Attach,
    ) -> Result<u32, TableFull> {
        // The same burst may carry two first packets of one flow.
        if let Some((idx, dir)) = self.find(&nf.key.orig, nf.key.zone) {
            if dir == Dir::Original {
                return Ok(idx);
            }
        }
        let l4 = L4::of(&nf.key.orig);
        let (bytes, packets, status) = if nf.from_reply {
            (
                [0, u32::from(nf.bytes)],
                [0, 1],
                ST_CONFIRMED | ST_SEEN_REPLY,
            )
        } else {
            ([u32::from(nf.bytes), 0], [1, 0], ST_CONFIRMED)
        };
        let timeout = timeout_for(&self.cfg, l4, nf.tcp.state(), status);
        let entry = Entry {
            key: nf.key,
            tcp: nf.tcp,
            links: Links::default(),
            expires: now.saturating_add(timeout),
            bytes,
            packets,
            status,
            acl_gen,
            flags: IN_USE | entry::sync_bits(level),
            ..empty_entry()
        };
        let idx = self.insert_entry(now, entry)?;
        if let Some(r) = nat {
            self.attach_nat(idx, r);
        }
        if !attach.is_empty() {
            self.attach_helper(idx, attach);
        }
        self.emit(now, idx, DeltaKind::Created);
        Ok(idx)
    }

    fn insert_entry(&mut self, now: u32, entry: Entry) -> Result<u32, TableFull> {
        if self.free.is_empty() && !self.early_drop(now, flow_hash(&entry.key.orig, entry.key.zone))
        {
            self.stats.table_full += 1;
            return Err(TableFull {
                capacity: self.cfg.capacity,
            });
        }
        let Some(idx) = self.free.pop(&self.slab) else {
            self.stats.table_full += 1;
            return Err(TableFull {
                capacity: self.cfg.capacity,
            });
        };
        self.slab.0[idx as usize] = entry;
        let hash = flow_hash(&entry.key.orig, entry.key.zone);
        // Cannot fail: the index holds more slots than the slab.
        let indexed = self.index.insert(hash, idx);
        debug_assert!(indexed, "flow index full below the shard's capacity");
        self.wheel.link(&mut self.slab, idx, entry.expires);
        self.stats.created += 1;
        Ok(idx)
    }

    fn early_drop(&mut self, now: u32, hash: u64) -> bool {
        let cap = self.cfg.capacity;
        let start = usize::try_from(hash % cap as u64).unwrap_or(0);
        let victim = (0..EARLY_DROP_SCAN.min(cap))
            .map(|i| (start + i) % cap)
            .find(|&i| {
                let e = &self.slab.0[i];
                e.in_use() && e.status & ST_ASSURED == 0
            });
        match victim.and_then(|i| u32::try_from(i).ok()) {
            Some(i) => {
                self.destroy(now, i, false);
                self.stats.early_drops += 1;
                true
            }
            None => false,
        }
    }

    fn destroy(&mut self, now: u32, idx: u32, expired: bool) {
        self.emit(now, idx, DeltaKind::Destroyed);
        self.wheel.unlink(&mut self.slab, idx);
        let key = self.slab.0[idx as usize].key;
        // A helper flow's expectations end with it (one status branch for
        // every other flow; the lock only while some are waiting).
        if u32::from(self.slab.0[idx as usize].status) & status::HELPER != 0 {
            if let Some(x) = self.expect.as_ref().filter(|x| !x.is_empty()) {
                x.with(|t| t.remove_with_master(&key));
            }
        }
        self.index.remove(flow_hash(&key.orig, key.zone), idx);
        if self.slab.0[idx as usize].has_extras() {
            self.extras.remove(&idx);
        }
        if !self.wide.is_empty() {
            self.wide.remove(&idx);
        }
        if self.slab.0[idx as usize].status & nat::ST_NAT != 0 {
            self.unindex_nat(idx);
        }
        self.slab.0[idx as usize] = empty_entry();
        self.free.push(&mut self.slab, idx);
        self.stats.destroyed += 1;
        if expired {
            self.stats.expired += 1;
        }
    }

    fn emit(&mut self, now: u32, idx: u32, kind: DeltaKind) {
        if self.quiet {
            return;
        }
        let e = &self.slab.0[idx as usize];
        let skip = match e.sync_level() {
            crate::flow::SyncLevel::Full => false,
            crate::flow::SyncLevel::Established => e.status & ST_ASSURED == 0,
            crate::flow::SyncLevel::None => true,
        };
        if skip {
            self.stats.sync_skipped += 1;
            return;
        }
        let extras = if e.has_extras() || e.status & nat::ST_NAT != 0 {
            self.extras_of(idx).map(Box::new)
        } else {
            None
        };
        let d = Delta {
            kind,
            key: e.key,
            tcp_state: e.tcp.state(),
            status: u32::from(e.status),
            timeout_secs: e.expires.saturating_sub(now),
            mark: self.mark_of(idx),
            wscale: [e.tcp.wscale(Dir::Original), e.tcp.wscale(Dir::Reply)],
            extras,
        };
        self.batch.add(idx, d, &self.ring, &mut self.stats);
    }

    /// Batching on: deltas wait until [`Shard::flush_deltas`] (a worker
    /// calls it at the end of each loop iteration), and a flow's later
    /// changes merge into its waiting delta (see `batch.rs`). Off (the
    /// default): every delta goes to the ring at once. Turning it off
    /// flushes.
    pub fn set_batching(&mut self, on: bool) {
        if !on {
            self.flush_deltas();
        }
        self.batch.on = on;
    }

    /// Hands the waiting deltas to the ring, in order.
    pub fn flush_deltas(&mut self) {
        self.batch.flush(&self.ring, &mut self.stats);
    }

    /// Deltas waiting for [`Shard::flush_deltas`].
    pub fn deltas_waiting(&self) -> usize {
        self.batch.len()
    }

    /// Changes that became deltas since creation, whether pushed, waiting
    /// or merged: whether a packet changed replicated state is whether
    /// this moved.
    pub fn delta_events(&self) -> u64 {
        self.batch.events
    }

    /// Expires flows due by second `now`, looking at no more than `budget`
    /// wheel entries; returns how many it looked at. Call every iteration; a
    /// backlog is worked off over several calls.
    pub fn expire(&mut self, now: u32, budget: usize) -> usize {
        let mut seen = 0;
        while seen < budget {
            let Some(idx) = self.wheel.pop_due(&mut self.slab, now) else {
                break;
            };
            seen += 1;
            let e = &self.slab.0[idx as usize];
            if !e.in_use() {
                continue;
            }
            if e.expires <= now {
                self.destroy(now, idx, true);
            } else {
                let at = e.expires;
                self.wheel.link(&mut self.slab, idx, at);
            }
        }
        seen
    }
    /// For a TCP mid-stream pickup ([`TcpConfig::loose`]) that `track`
    /// returned as `nf`: the same flow oriented the other way, the packet
    /// being its first reply-direction segment. `None` for anything else
    /// (SYNs, other protocols). The caller picks the orientation the rules
    /// would have let open the flow, so that after a restart a flow is
    /// picked up in the direction of its original connection whichever side
    /// speaks first.
    pub fn reversed_pickup(&self, nf: &NewFlow, meta: &PacketMeta) -> Option<NewFlow> {
        if L4::of(&nf.key.orig) != L4::Tcp || nf.from_reply || !self.cfg.tcp.loose {
            return None;
        }
        let tcp = tcp::new_conn_from_reply(&meta.tcp, &self.cfg.tcp).ok()?;
        Some(NewFlow {
            key: FlowKey {
                orig: reply_of(&nf.key.orig),
                zone: nf.key.zone,
            },
            tcp,
            bytes: nf.bytes,
            from_reply: true,
        })
    }

    /// The conntrack state a packet in `dir` of the tracked flow at `idx`
    /// has, as netfilter defines it: NEW in the original direction until a
    /// reply has been seen, ESTABLISHED after that and in the reply direction.
    #[inline]
    pub fn ct_state(&self, idx: u32, dir: Dir) -> CtState {
        let e = &self.slab.0[idx as usize];
        if self.related_before_reply(idx, dir) {
            CtState::Related
        } else if dir == Dir::Original && e.status & ST_SEEN_REPLY == 0 {
            CtState::New
        } else {
            CtState::Established
        }
    }

    /// The rule-set verdict cached for packets in `dir` of the flow at `idx`
    /// that arrive on `in_port` under rule-set generation `gen`. A verdict is
    /// forgotten when the generation changes (both directions), when the
    /// direction's conntrack state changes, and when the flow is replaced.
    #[inline]
    pub fn cached_verdict(
        &self,
        idx: u32,
        dir: Dir,
        in_port: u16,
        gen: u16,
    ) -> Option<FlowVerdict> {
        self.slab.0[idx as usize].verdict(dir, in_port, gen)
    }

    /// Caches the verdict the rules of generation `gen` gave a packet in
    /// `dir` of the flow at `idx` that arrived on `in_port`. The first
    /// verdict under a new generation forgets the other direction's.
    pub fn cache_verdict(&mut self, idx: u32, dir: Dir, in_port: u16, gen: u16, v: FlowVerdict) {
        self.slab.0[idx as usize].set_verdict(dir, in_port, gen, v);
    }

    /// Forgets every cached verdict. For when the generation counter wraps:
    /// a flow idle since exactly a multiple of the counter's period would
    /// otherwise look checked. O(capacity), once per wrap.
    pub fn clear_verdicts(&mut self) {
        for e in self.slab.0.iter_mut() {
            e.clear_verdicts();
        }
    }
}
