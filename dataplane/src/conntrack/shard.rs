//! One worker's connection-tracking shard.
//!
//! Flows live in a slab preallocated to the shard's capacity; a hashbrown
//! `HashTable<u32>` of slab indices, also preallocated, finds them. The table
//! is keyed by [`symmetric_hash`], so a packet in either direction finds its
//! flow with one probe. Expiry runs through the timing wheel in
//! [`super::wheel`], whose links live in the slab entries. Nothing here
//! allocates after construction except [`FlowExtras`] for the rare flows that
//! carry NAT or master data (imported or added from the console).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use hashbrown::HashTable;

use crate::flow::{status, CtState, Dir, FlowExtras, FlowKey, FlowState, TcpState, Tuple};
use crate::meta::PacketMeta;

use super::delta::{Delta, DeltaKind, DeltaRing};
use super::l4::{icmp_reply_type, reply_of, symmetric_hash, Timeouts, L4};
use super::tcp::{self, TcpConfig, TcpConn, TcpVerdict, TimeoutUpdate};
use super::wheel::{Links, Wheel, WheelStore};

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
}

impl NewFlow {
    /// The flow's identity.
    pub fn key(&self) -> &FlowKey {
        &self.key
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
    },
    /// Fits no flow or breaks its protocol.
    Invalid(InvalidReason),
}

impl Track {
    /// The conntrack state the ACL sees.
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
    /// Deltas lost to a full ring.
    pub ring_full: u64,
}

/// A slab entry. Kept within 128 bytes (checked by a test) and aligned to a
/// cache line, so one flow is exactly two lines.
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
struct Entry {
    key: FlowKey,
    tcp: TcpConn,
    links: Links,
    expires: u32,
    mark: u32,
    bytes: [u64; 2],
    packets: [u32; 2],
    status: u16,
    /// Low byte of the rule-set generation the flow was last checked against.
    acl_gen: u8,
    /// [`IN_USE`] and [`HAS_EXTRAS`].
    flags: u8,
}

/// `Entry::flags`: the slot holds a flow.
const IN_USE: u8 = 1;
/// `Entry::flags`: the flow has [`FlowExtras`] in the side table.
const HAS_EXTRAS: u8 = 2;

impl Entry {
    fn in_use(&self) -> bool {
        self.flags & IN_USE != 0
    }
    fn has_extras(&self) -> bool {
        self.flags & HAS_EXTRAS != 0
    }
}

fn empty_entry() -> Entry {
    Entry {
        key: FlowKey::default(),
        tcp: TcpConn::default(),
        links: Links::default(),
        expires: 0,
        mark: 0,
        bytes: [0; 2],
        packets: [0; 2],
        status: 0,
        acl_gen: 0,
        flags: 0,
    }
}

struct Slab(Vec<Entry>);

impl WheelStore for Slab {
    fn links(&mut self, idx: u32) -> &mut Links {
        &mut self.0[idx as usize].links
    }
}

/// Status bits as an entry stores them: Linux defines only the low 16.
#[allow(clippy::cast_possible_truncation)]
const ST_SEEN_REPLY: u16 = status::SEEN_REPLY as u16;
/// See [`ST_SEEN_REPLY`].
#[allow(clippy::cast_possible_truncation)]
const ST_ASSURED: u16 = status::ASSURED as u16;
/// See [`ST_SEEN_REPLY`].
#[allow(clippy::cast_possible_truncation)]
const ST_CONFIRMED: u16 = status::CONFIRMED as u16;

/// The low byte of a rule-set generation, as entries store it.
fn gen_byte(gen: u16) -> u8 {
    gen.to_le_bytes()[0]
}

/// Entries an early drop looks at before giving up (Linux looks at a few
/// hash buckets; we look at this many slab slots from a pseudo-random start).
const EARLY_DROP_SCAN: usize = 16;

/// One worker's flow table.
pub struct Shard {
    cfg: ConntrackConfig,
    epoch: Instant,
    slab: Slab,
    free: Vec<u32>,
    table: HashTable<u32>,
    wheel: Wheel,
    extras: HashMap<u32, FlowExtras>,
    ring: Arc<DeltaRing>,
    stats: ShardStats,
    /// Set while applying replicated state: no deltas are emitted, so a
    /// peer's flows are not echoed back to it.
    quiet: bool,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("len", &self.len())
            .field("capacity", &self.cfg.capacity)
            .finish()
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
        // Indices handed out lowest first.
        let free: Vec<u32> = (0..u32::try_from(cap).unwrap_or(u32::MAX - 1))
            .rev()
            .collect();
        Shard {
            cfg,
            epoch,
            slab: Slab(vec![empty_entry(); cap]),
            free,
            table: HashTable::with_capacity(cap),
            wheel: Wheel::new(0),
            extras: HashMap::new(),
            ring,
            stats: ShardStats::default(),
            quiet: false,
        }
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

    /// Bytes of memory per flow slot: the slab entry plus the table's share
    /// (hashbrown keeps a power-of-two number of buckets of one `u32` and
    /// one control byte each, at most 7/8 full).
    pub fn bytes_per_flow(&self) -> usize {
        let buckets = (self.table.capacity() * 8 / 7).next_power_of_two();
        let table = buckets * (std::mem::size_of::<u32>() + 1);
        std::mem::size_of::<Entry>() + table.div_ceil(self.cfg.capacity.max(1))
    }

    /// Bytes of one flow table entry (the slab slot).
    pub const ENTRY_BYTES: usize = std::mem::size_of::<Entry>();

    fn find(&self, t: &Tuple, zone: u16) -> Option<(u32, Dir)> {
        let slab = &self.slab.0;
        let idx = *self.table.find(flow_hash(t, zone), |&i| {
            let e = &slab[i as usize];
            e.key.zone == zone && (e.key.orig == *t || reply_of(&e.key.orig) == *t)
        })?;
        let dir = if slab[idx as usize].key.orig == *t {
            Dir::Original
        } else {
            Dir::Reply
        };
        Some((idx, dir))
    }

    /// Brings the table slots and flow entry a packet will need into cache
    /// and returns a hint for [`Shard::track_hinted`] (the slab index found,
    /// or `u32::MAX`). The worker calls this for a whole burst before
    /// deciding any packet, so the memory accesses of 32 lookups overlap
    /// instead of queueing one after another (software prefetching without
    /// `unsafe`), and the decision then needs no second probe.
    #[inline]
    pub fn warm(&self, meta: &PacketMeta, zone: u16) -> u32 {
        let t = meta.icmp_error.as_ref().unwrap_or(&meta.tuple);
        match self.find(t, zone) {
            Some((idx, _)) => {
                let e = &self.slab.0[idx as usize];
                std::hint::black_box((e.expires, e.tcp.state()));
                idx
            }
            None => u32::MAX,
        }
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
            return match self.find_hinted(inner, zone, hint) {
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
        })
    }

    fn update(&mut self, now: u32, idx: u32, dir: Dir, meta: &PacketMeta) -> Track {
        let cfg = self.cfg;
        let e = &mut self.slab.0[idx as usize];
        let l4 = L4::of(&e.key.orig);
        let old_state = e.tcp.state();
        let old_status = e.status;
        let (seen_reply, assured) = (ST_SEEN_REPLY, ST_ASSURED);
        let mut timeout = None;
        match l4 {
            L4::Tcp => {
                let v = tcp::track(&mut e.tcp, dir, &meta.tcp, &cfg.tcp);
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
                    TcpVerdict::Ignore => return Track::Ignored { idx },
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
        e.packets[d] = e.packets[d].wrapping_add(1);
        e.bytes[d] = e.bytes[d].wrapping_add(u64::from(meta.ip_len));
        let new_state = e.tcp.state();
        let mut earlier = false;
        if let Some(t) = timeout {
            let expires = now.saturating_add(t);
            earlier = expires < e.expires;
            e.expires = expires;
        }
        let changed = new_state != old_state || e.status != old_status;
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
    /// go, refuses and counts it.
    pub fn confirm(&mut self, now: u32, nf: &NewFlow, acl_gen: u16) -> Result<u32, TableFull> {
        let acl_gen = gen_byte(acl_gen);
        // The same burst may carry two first packets of one flow.
        if let Some((idx, dir)) = self.find(&nf.key.orig, nf.key.zone) {
            if dir == Dir::Original {
                return Ok(idx);
            }
        }
        let l4 = L4::of(&nf.key.orig);
        let timeout = timeout_for(&self.cfg, l4, nf.tcp.state(), 0);
        let entry = Entry {
            key: nf.key,
            tcp: nf.tcp,
            links: Links::default(),
            expires: now.saturating_add(timeout),
            mark: 0,
            bytes: [u64::from(nf.bytes), 0],
            packets: [1, 0],
            status: ST_CONFIRMED,
            acl_gen,
            flags: IN_USE,
        };
        let idx = self.insert_entry(now, entry)?;
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
        let Some(idx) = self.free.pop() else {
            self.stats.table_full += 1;
            return Err(TableFull {
                capacity: self.cfg.capacity,
            });
        };
        self.slab.0[idx as usize] = entry;
        let slab = &self.slab.0;
        let hash = flow_hash(&entry.key.orig, entry.key.zone);
        self.table.insert_unique(hash, idx, |&i| {
            let k = &slab[i as usize].key;
            flow_hash(&k.orig, k.zone)
        });
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
        if let Ok(ent) = self
            .table
            .find_entry(flow_hash(&key.orig, key.zone), |&i| i == idx)
        {
            ent.remove();
        }
        if self.slab.0[idx as usize].has_extras() {
            self.extras.remove(&idx);
        }
        self.slab.0[idx as usize] = empty_entry();
        self.free.push(idx);
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
        let extras = if e.has_extras() {
            self.extras.get(&idx).cloned().map(Box::new)
        } else {
            None
        };
        let d = Delta {
            kind,
            key: e.key,
            tcp_state: e.tcp.state(),
            status: u32::from(e.status),
            timeout_secs: e.expires.saturating_sub(now),
            mark: e.mark,
            wscale: [e.tcp.wscale(Dir::Original), e.tcp.wscale(Dir::Reply)],
            extras,
        };
        if self.ring.push(d) {
            self.stats.deltas += 1;
        } else {
            self.stats.ring_full += 1;
        }
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

    /// Whether the flow at `idx` was last checked against rule-set generation `gen`.
    /// Compares the low byte of the generation: a flow checked exactly a
    /// multiple of 256 reloads ago is taken as checked (documented).
    pub fn acl_checked(&self, idx: u32, gen: u16) -> bool {
        self.slab.0[idx as usize].acl_gen == gen_byte(gen)
    }

    /// Records that the flow at `idx` passed the rule set of generation `gen`.
    pub fn set_acl_gen(&mut self, idx: u32, gen: u16) {
        self.slab.0[idx as usize].acl_gen = gen_byte(gen);
    }

    /// The full state of the flow at `idx` as of second `now`.
    pub fn flow_state(&self, now: u32, idx: u32) -> Option<FlowState> {
        let e = self.slab.0.get(idx as usize).filter(|e| e.in_use())?;
        Some(FlowState {
            key: e.key,
            tcp_state: e.tcp.state(),
            status: u32::from(e.status),
            timeout_secs: e.expires.saturating_sub(now),
            mark: e.mark,
            wscale: [e.tcp.wscale(Dir::Original), e.tcp.wscale(Dir::Reply)],
            counters: [
                crate::flow::Counters {
                    packets: u64::from(e.packets[0]),
                    bytes: e.bytes[0],
                },
                crate::flow::Counters {
                    packets: u64::from(e.packets[1]),
                    bytes: e.bytes[1],
                },
            ],
            extras: if e.has_extras() {
                self.extras.get(&idx).cloned().unwrap_or_default()
            } else {
                FlowExtras::default()
            },
        })
    }

    /// Calls `f` with every flow's state (console listing, re-export).
    pub fn for_each(&self, now: u32, mut f: impl FnMut(FlowState)) {
        for i in 0..self.slots() {
            if let Some(s) = self.flow_state(now, i) {
                f(s);
            }
        }
    }

    /// Up to `max` flow states from slab slot `from` on, and the slot to
    /// continue from (`None` when the table has been walked to its end).
    /// A full-table export (replication re-export, RESYNC answer) walks the
    /// table in such chunks so that no single call stalls forwarding.
    pub fn export_from(&self, now: u32, from: u32, max: usize) -> (Vec<FlowState>, Option<u32>) {
        let mut out = Vec::with_capacity(max.min(4096));
        let mut i = from;
        while i < self.slots() {
            if out.len() >= max {
                return (out, Some(i));
            }
            if let Some(s) = self.flow_state(now, i) {
                out.push(s);
            }
            i += 1;
        }
        (out, None)
    }

    /// Inserts or replaces a flow from a complete state (console `flows add`).
    /// The flow is tracked liberally from its current TCP state, as
    /// conntrackd's commit does, and the change is emitted as a delta.
    pub fn upsert(&mut self, now: u32, st: &FlowState) -> Result<u32, TableFull> {
        self.upsert_inner(now, st)
    }

    /// Like [`Shard::upsert`] but emits no delta: for state that came from a
    /// peer (commit of the external cache, direct-mode injection), which
    /// must not be replicated back to where it came from.
    pub fn import(&mut self, now: u32, st: &FlowState) -> Result<u32, TableFull> {
        self.quiet = true;
        let r = self.upsert_inner(now, st);
        self.quiet = false;
        r
    }

    /// Deletes a flow without emitting a delta (a peer's DESTROY in direct
    /// mode); returns whether it existed.
    pub fn remove_imported(&mut self, now: u32, key: &FlowKey) -> bool {
        self.quiet = true;
        let r = self.remove(now, key);
        self.quiet = false;
        r
    }

    fn upsert_inner(&mut self, now: u32, st: &FlowState) -> Result<u32, TableFull> {
        let conn = TcpConn::from_replicated(st.tcp_state, st.wscale[0], st.wscale[1]);
        let status16 = u16::try_from(st.status & 0xffff).unwrap_or(0) | ST_CONFIRMED;
        let expires = now.saturating_add(st.timeout_secs);
        let has_extras = !st.extras.is_empty();
        let (idx, kind) = if let Some(idx) = self.lookup(&st.key) {
            let e = &mut self.slab.0[idx as usize];
            let earlier = expires < e.expires;
            e.tcp = conn;
            e.status = status16;
            e.mark = st.mark;
            e.expires = expires;
            e.flags = if has_extras {
                IN_USE | HAS_EXTRAS
            } else {
                IN_USE
            };
            if earlier {
                self.wheel.unlink(&mut self.slab, idx);
                self.wheel.link(&mut self.slab, idx, expires);
            }
            (idx, DeltaKind::Updated)
        } else {
            let entry = Entry {
                key: st.key,
                tcp: conn,
                links: Links::default(),
                expires,
                mark: st.mark,
                bytes: [st.counters[0].bytes, st.counters[1].bytes],
                packets: [
                    u32::try_from(st.counters[0].packets).unwrap_or(u32::MAX),
                    u32::try_from(st.counters[1].packets).unwrap_or(u32::MAX),
                ],
                status: status16,
                acl_gen: 0,
                flags: if has_extras {
                    IN_USE | HAS_EXTRAS
                } else {
                    IN_USE
                },
            };
            (self.insert_entry(now, entry)?, DeltaKind::Created)
        };
        if has_extras {
            self.extras.insert(idx, st.extras.clone());
        } else {
            self.extras.remove(&idx);
        }
        self.emit(now, idx, kind);
        Ok(idx)
    }

    /// Deletes the flow with this identity; returns whether it existed.
    pub fn remove(&mut self, now: u32, key: &FlowKey) -> bool {
        match self.lookup(key) {
            Some(idx) => {
                self.destroy(now, idx, false);
                true
            }
            None => false,
        }
    }

    /// Deletes every flow for which `pred` is true; returns how many.
    pub fn remove_where(&mut self, now: u32, mut pred: impl FnMut(&FlowState) -> bool) -> usize {
        let mut n = 0;
        for i in 0..self.slots() {
            let del = self.flow_state(now, i).is_some_and(|s| pred(&s));
            if del {
                self.destroy(now, i, false);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation, clippy::assertions_on_constants)]
mod tests {
    use super::*;
    use crate::flow::proto;
    use crate::meta::{tcp_flags as f, L3Kind, TcpFacts};

    fn shard(cap: usize) -> Shard {
        Shard::new(
            ConntrackConfig {
                capacity: cap,
                ..Default::default()
            },
            Instant::now(),
            DeltaRing::new(1024),
        )
    }

    fn tuple(sp: u16, dp: u16, p: u8) -> Tuple {
        Tuple::new(
            "192.0.2.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
            p,
            sp,
            dp,
        )
    }

    fn meta(t: Tuple, flags: u8, seq: u32, ack: u32) -> PacketMeta {
        PacketMeta {
            l3: L3Kind::Ipv4,
            ip_len: 40,
            tuple: t,
            tcp: TcpFacts {
                flags,
                seq,
                ack,
                window: 65535,
                payload_len: 0,
                wscale: None,
                sack_perm: false,
            },
            ..Default::default()
        }
    }

    fn drain(s: &Shard) -> Vec<DeltaKind> {
        std::iter::from_fn(|| s.ring().pop())
            .map(|d| d.kind)
            .collect()
    }

    /// Runs a packet through track and, if new, confirms it.
    fn pass(s: &mut Shard, now: u32, m: &PacketMeta) -> CtState {
        let t = s.track(now, m, 0);
        if let Track::New(nf) = t {
            s.confirm(now, &nf, 1).unwrap();
        }
        t.ct_state()
    }

    #[test]
    fn entry_fits_128_bytes() {
        assert!(
            Shard::ENTRY_BYTES <= 128,
            "entry is {} bytes",
            Shard::ENTRY_BYTES
        );
        // The index adds 5 bytes per bucket: 128 + 10 at a power-of-two capacity.
        let s = shard(1 << 16);
        assert_eq!(s.bytes_per_flow(), Shard::ENTRY_BYTES + 10);
    }

    #[test]
    fn tcp_handshake_data_and_close_with_deltas() {
        let mut s = shard(64);
        let c = tuple(40000, 80, proto::TCP);
        let r = c.inverse();
        assert_eq!(pass(&mut s, 0, &meta(c, f::SYN, 100, 0)), CtState::New);
        assert_eq!(
            pass(&mut s, 0, &meta(r, f::SYN | f::ACK, 500, 101)),
            CtState::Established
        );
        assert_eq!(
            pass(&mut s, 0, &meta(c, f::ACK, 101, 501)),
            CtState::Established
        );
        let idx = s.lookup(&FlowKey { orig: c, zone: 0 }).unwrap();
        let st = s.flow_state(0, idx).unwrap();
        assert_eq!(st.tcp_state, TcpState::Established);
        assert_eq!(
            st.status & (status::SEEN_REPLY | status::ASSURED | status::CONFIRMED),
            0xe
        );
        assert_eq!(st.timeout_secs, 432000);
        assert_eq!(st.counters[0].packets, 2);
        assert_eq!(st.counters[1].packets, 1);
        // Created, SYN_RECV, ESTABLISHED+ASSURED.
        assert_eq!(
            drain(&s),
            vec![DeltaKind::Created, DeltaKind::Updated, DeltaKind::Updated]
        );
        // Plain data: no state change, no delta.
        assert_eq!(
            pass(&mut s, 1, &meta(c, f::ACK | f::PSH, 101, 501)),
            CtState::Established
        );
        assert!(drain(&s).is_empty());
        // RST closes; the flow expires after the CLOSE timeout (10 s).
        assert_eq!(
            pass(&mut s, 2, &meta(r, f::RST | f::ACK, 501, 101)),
            CtState::Established
        );
        assert_eq!(s.flow_state(2, idx).unwrap().tcp_state, TcpState::Close);
        assert_eq!(drain(&s), vec![DeltaKind::Updated]);
        s.expire(11, 1000);
        assert_eq!(s.len(), 1);
        s.expire(12, 1000);
        assert_eq!(s.len(), 0);
        assert_eq!(drain(&s), vec![DeltaKind::Destroyed]);
        assert_eq!(s.stats().expired, 1);
    }

    #[test]
    fn stale_or_wrong_hints_never_mislead_tracking() {
        let mut s = shard(16);
        let m = |sp| PacketMeta {
            l3: L3Kind::Ipv4,
            ip_len: 60,
            tuple: tuple(sp, 53, proto::UDP),
            ..Default::default()
        };
        pass(&mut s, 0, &m(1));
        pass(&mut s, 0, &m(2));
        let i1 = s.warm(&m(1), 0);
        let i2 = s.warm(&m(2), 0);
        assert_ne!(i1, u32::MAX);
        assert_ne!(i1, i2);
        // The right hint, a wrong one (another flow's slot), a freed slot
        // and no hint all find flow 1, in the right direction.
        let reply = PacketMeta {
            tuple: tuple(1, 53, proto::UDP).inverse(),
            ..m(1)
        };
        for hint in [i1, i2, 15, u32::MAX] {
            match s.track_hinted(0, &reply, 0, hint) {
                Track::Established { idx, dir } => {
                    assert_eq!((idx, dir), (i1, Dir::Reply), "hint {hint}");
                }
                other => panic!("hint {hint}: {other:?}"),
            }
        }
        // After flow 1 is gone and its slot reused by flow 3, the old hint
        // does not make flow 1's packets match flow 3.
        assert!(s.remove(
            0,
            &FlowKey {
                orig: tuple(1, 53, proto::UDP),
                zone: 0
            }
        ));
        pass(&mut s, 0, &m(3));
        assert_eq!(s.warm(&m(3), 0), i1, "slot reused");
        assert!(matches!(s.track_hinted(0, &m(1), 0, i1), Track::New(_)));
    }

    #[test]
    fn ack_without_flow_is_invalid_and_not_inserted() {
        let mut s = shard(8);
        let m = meta(tuple(1, 2, proto::TCP), f::ACK, 1, 1);
        assert!(matches!(
            s.track(0, &m, 0),
            Track::Invalid(InvalidReason::TcpNotSyn)
        ));
        assert_eq!(s.len(), 0);
        assert_eq!(s.stats().invalid, 1);
    }

    #[test]
    fn udp_two_states_and_timeouts() {
        let mut s = shard(8);
        let u = tuple(5353, 53, proto::UDP);
        let m = |t| PacketMeta {
            l3: L3Kind::Ipv4,
            ip_len: 60,
            tuple: t,
            ..Default::default()
        };
        assert_eq!(pass(&mut s, 0, &m(u)), CtState::New);
        let idx = s.lookup(&FlowKey { orig: u, zone: 0 }).unwrap();
        assert_eq!(s.flow_state(0, idx).unwrap().timeout_secs, 30);
        assert_eq!(pass(&mut s, 5, &m(u.inverse())), CtState::Established);
        let st = s.flow_state(5, idx).unwrap();
        assert_ne!(st.status & status::ASSURED, 0);
        assert_eq!(st.timeout_secs, 120);
        // Another zone is another flow.
        assert!(matches!(s.track(5, &m(u), 7), Track::New(_)));
    }

    #[test]
    fn icmp_echo_pairs_and_errors_are_related() {
        let mut s = shard(8);
        let echo = Tuple::new(
            "192.0.2.1".parse().unwrap(),
            "198.51.100.2".parse().unwrap(),
            proto::ICMP,
            77,
            8 << 8,
        );
        let m = |t| PacketMeta {
            l3: L3Kind::Ipv4,
            ip_len: 84,
            tuple: t,
            ..Default::default()
        };
        assert_eq!(pass(&mut s, 0, &m(echo)), CtState::New);
        assert_eq!(pass(&mut s, 0, &m(echo.reply())), CtState::Established);
        // An echo reply nobody asked for is invalid.
        let stray = Tuple {
            src_port: 78,
            ..echo.reply()
        };
        assert_eq!(pass(&mut s, 0, &m(stray)), CtState::Invalid);
        // A port unreachable about a tracked UDP flow is related; about an
        // untracked one, invalid.
        let u = tuple(5353, 53, proto::UDP);
        pass(
            &mut s,
            0,
            &PacketMeta {
                l3: L3Kind::Ipv4,
                ip_len: 60,
                tuple: u,
                ..Default::default()
            },
        );
        let err = Tuple::new(
            "198.51.100.2".parse().unwrap(),
            "192.0.2.1".parse().unwrap(),
            proto::ICMP,
            0,
            3 << 8 | 3,
        );
        let e = PacketMeta {
            icmp_error: Some(u),
            ..m(err)
        };
        assert_eq!(s.track(0, &e, 0).ct_state(), CtState::Related);
        let e2 = PacketMeta {
            icmp_error: Some(tuple(1, 1, proto::UDP)),
            ..m(err)
        };
        assert_eq!(s.track(0, &e2, 0).ct_state(), CtState::Invalid);
    }

    #[test]
    fn full_table_early_drops_unassured_then_refuses() {
        let mut s = shard(4);
        let m = |sp| PacketMeta {
            l3: L3Kind::Ipv4,
            ip_len: 60,
            tuple: tuple(sp, 53, proto::UDP),
            ..Default::default()
        };
        for sp in 0..4 {
            pass(&mut s, 0, &m(sp));
        }
        // All unassured: the fifth early-drops one.
        assert_eq!(pass(&mut s, 0, &m(100)), CtState::New);
        assert_eq!(s.len(), 4);
        assert_eq!(s.stats().early_drops, 1);
        // Make all assured: nothing can go, the next new flow is refused.
        let mut present = Vec::new();
        s.for_each(0, |st| present.push(st.key.orig));
        for t in present {
            let r = PacketMeta {
                tuple: t.inverse(),
                ..m(0)
            };
            assert_eq!(pass(&mut s, 0, &r), CtState::Established);
        }
        let Track::New(nf) = s.track(0, &m(200), 0) else {
            panic!("expected new")
        };
        assert_eq!(s.confirm(0, &nf, 1), Err(TableFull { capacity: 4 }));
        assert_eq!(s.stats().table_full, 1);
        assert_eq!(s.len(), 4);
    }

    #[test]
    fn upsert_lookup_remove_and_extras() {
        let mut s = shard(8);
        let key = FlowKey {
            orig: tuple(40000, 80, proto::TCP),
            zone: 3,
        };
        let mut st = FlowState {
            key,
            tcp_state: TcpState::Established,
            status: status::SEEN_REPLY | status::ASSURED,
            timeout_secs: 300,
            mark: 9,
            wscale: [7, 7],
            counters: Default::default(),
            extras: FlowExtras::default(),
        };
        st.extras.reply = Some(Tuple::new(
            "198.51.100.2".parse().unwrap(),
            "203.0.113.5".parse().unwrap(),
            proto::TCP,
            80,
            61000,
        ));
        let idx = s.upsert(10, &st).unwrap();
        let got = s.flow_state(10, idx).unwrap();
        assert_eq!(got.mark, 9);
        assert_eq!(got.timeout_secs, 300);
        assert_eq!(got.status & status::CONFIRMED, status::CONFIRMED);
        assert_eq!(got.extras, st.extras);
        // A mid-stream segment of an imported flow is accepted.
        let m = PacketMeta {
            tcp: TcpFacts {
                flags: f::ACK,
                seq: 12345,
                ack: 999,
                window: 1000,
                ..Default::default()
            },
            ..meta(key.orig, 0, 0, 0)
        };
        assert!(matches!(s.track(10, &m, 3), Track::Established { .. }));
        assert!(s.remove(11, &key));
        assert!(!s.remove(11, &key));
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn deltas_carry_extras_and_imports_stay_quiet() {
        let mut s = shard(8);
        let mut st = FlowState {
            key: FlowKey {
                orig: tuple(40001, 443, proto::TCP),
                zone: 0,
            },
            tcp_state: TcpState::Established,
            status: status::SEEN_REPLY,
            timeout_secs: 300,
            mark: 0,
            wscale: [0, 0],
            counters: Default::default(),
            extras: FlowExtras::default(),
        };
        st.extras.reply = Some(Tuple::new(
            "198.51.100.2".parse().unwrap(),
            "203.0.113.5".parse().unwrap(),
            proto::TCP,
            443,
            61000,
        ));
        // An operator's upsert is replicated, with its NAT reply tuple.
        s.upsert(10, &st).unwrap();
        let d = s.ring().pop().expect("a delta");
        assert_eq!(d.kind, DeltaKind::Created);
        assert_eq!(d.state().extras, st.extras);
        // State from a peer is not: neither import nor its removal emits.
        let mut other = st.clone();
        other.key.orig = tuple(40002, 443, proto::TCP);
        s.import(10, &other).unwrap();
        assert!(s.remove_imported(11, &other.key));
        assert!(s.ring().pop().is_none());
        // Quiet mode does not stick: a later removal is replicated.
        assert!(s.remove(12, &st.key));
        assert_eq!(drain(&s), vec![DeltaKind::Destroyed]);
    }

    #[test]
    fn export_walks_the_table_in_chunks() {
        let mut s = shard(64);
        for p in 0..20u16 {
            let st = FlowState {
                key: FlowKey {
                    orig: tuple(1000 + p, 80, proto::UDP),
                    zone: 0,
                },
                tcp_state: TcpState::None,
                status: 0,
                timeout_secs: 30,
                mark: 0,
                wscale: [0, 0],
                counters: Default::default(),
                extras: FlowExtras::default(),
            };
            s.import(1, &st).unwrap();
        }
        let mut seen = std::collections::HashSet::new();
        let mut from = 0;
        let mut chunks = 0;
        loop {
            let (v, next) = s.export_from(1, from, 7);
            assert!(v.len() <= 7);
            chunks += 1;
            seen.extend(v.into_iter().map(|st| st.key.orig.src_port));
            match next {
                Some(n) => from = n,
                None => break,
            }
        }
        assert_eq!(seen.len(), 20);
        assert!(chunks >= 3);
    }

    #[test]
    fn delta_ring_overflow_is_counted_and_marks_reexport() {
        let mut s = Shard::new(
            ConntrackConfig {
                capacity: 16,
                ..Default::default()
            },
            Instant::now(),
            DeltaRing::new(2),
        );
        for sp in 0..4 {
            pass(
                &mut s,
                0,
                &PacketMeta {
                    l3: L3Kind::Ipv4,
                    ip_len: 60,
                    tuple: tuple(sp, 53, proto::UDP),
                    ..Default::default()
                },
            );
        }
        assert_eq!(s.stats().deltas, 2);
        assert_eq!(s.stats().ring_full, 2);
        assert!(s.ring().needs_reexport());
    }

    #[test]
    fn expiry_is_bounded_per_call_and_refresh_postpones() {
        let mut s = shard(1000);
        let m = |sp| PacketMeta {
            l3: L3Kind::Ipv4,
            ip_len: 60,
            tuple: tuple(sp, 53, proto::UDP),
            ..Default::default()
        };
        for sp in 0..500 {
            pass(&mut s, 0, &m(sp));
        }
        // Flow 0 refreshed at 20 lives to 50.
        pass(&mut s, 20, &m(0));
        assert_eq!(s.expire(31, 100), 100);
        assert_eq!(s.len(), 400);
        while s.expire(31, 100) > 0 {}
        assert_eq!(s.len(), 1);
        s.expire(50, 100);
        assert_eq!(s.len(), 0);
    }
}
