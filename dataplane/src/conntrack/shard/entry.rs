//! The slab entry one flow occupies, and the per-direction verdict cache it
//! carries for the pipeline.

use crate::flow::{status, Dir, FlowKey};

use super::super::tcp::TcpConn;
use super::super::wheel::{Links, WheelStore, NIL};

/// A slab entry: 112 bytes, aligned to 16, so a flow spans two or three
/// cache lines (the warm-up reads one field in each, [`Entry::touch`]) and
/// a flow costs 122 bytes with its share of the index. Fields are laid out
/// in this order (`repr(C)`) without padding; a test checks the size.
///
/// The counters keep their low bits here: 32 of the bytes and 16 of the
/// packets of each direction. When one wraps, the shard adds the carry to
/// the flow's [`Wide`] record, so no count is lost; the conntrack mark,
/// which only a peer's replicated state sets, lives there too.
#[derive(Clone, Copy, Debug)]
#[repr(C, align(16))]
pub(super) struct Entry {
    pub(super) key: FlowKey,
    pub(super) tcp: TcpConn,
    pub(super) expires: u32,
    /// Low 32 bits of each direction's byte count.
    pub(super) bytes: [u32; 2],
    pub(super) links: Links,
    /// Low 16 bits of each direction's packet count.
    pub(super) packets: [u16; 2],
    pub(super) status: u16,
    /// Rule-set generation the cached verdicts were computed under.
    pub(super) acl_gen: u16,
    /// Input port of each direction's cached verdict: original in the low
    /// nibble, reply in the high one ([`NO_PORT`]: none).
    pub(super) acl_ports: u8,
    /// [`IN_USE`], [`HAS_EXTRAS`], the two cached verdicts (bits 2..6)
    /// and the sync level (bits 6..8, [`sync_bits`]).
    pub(super) flags: u8,
}

/// [`Entry::count`]: the packet counter wrapped.
pub(super) const CARRY_PACKETS: u8 = 1;
/// [`Entry::count`]: the byte counter wrapped.
pub(super) const CARRY_BYTES: u8 = 2;

/// What a flow's entry does not hold: the carries of its counters and its
/// conntrack mark. A flow has one only while something is set (a mark, or
/// a counter that wrapped: after 65,536 packets or 4 GiB in a direction).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Wide {
    /// The conntrack mark (0: none).
    pub(super) mark: u32,
    /// Per direction, the packets counted beyond the entry's 16 bits (a
    /// multiple of 65,536).
    pub(super) packets: [u64; 2],
    /// Per direction, the bytes counted beyond the entry's 32 bits (a
    /// multiple of 2^32).
    pub(super) bytes: [u64; 2],
}

impl Wide {
    /// Adds the carries `c` ([`Entry::count`]) of direction `d`.
    pub(super) fn carry(&mut self, d: usize, c: u8) {
        if c & CARRY_PACKETS != 0 {
            self.packets[d] = self.packets[d].wrapping_add(1 << 16);
        }
        if c & CARRY_BYTES != 0 {
            self.bytes[d] = self.bytes[d].wrapping_add(1 << 32);
        }
    }
}

/// The entry's and the [`Wide`] record's shares of full counts: the low
/// bits inline, the rest in the record.
pub(super) fn split_count(packets: u64, bytes: u64) -> (u16, u32, u64, u64) {
    (
        (packets & 0xffff) as u16,
        (bytes & 0xffff_ffff) as u32,
        packets & !0xffff,
        bytes & !0xffff_ffff,
    )
}

/// `Entry::flags`: where the flow's two-bit [`crate::flow::SyncLevel`] sits.
const SYNC_SHIFT: u32 = 6;

/// The flags bits of a sync level.
pub(super) fn sync_bits(l: crate::flow::SyncLevel) -> u8 {
    (l as u8) << SYNC_SHIFT
}

/// `Entry::flags`: the slot holds a flow.
pub(super) const IN_USE: u8 = 1;
/// `Entry::flags`: the flow has [`crate::flow::FlowExtras`] in the side table.
pub(super) const HAS_EXTRAS: u8 = 2;
/// `Entry::flags`: where the two-bit cached verdict of the original
/// direction starts; the reply direction's follows.
const VERDICT_SHIFT: u32 = 2;
/// Both directions' verdict bits.
const VERDICT_MASK: u8 = 0b1111 << VERDICT_SHIFT;
/// Input ports above this are never cached (one nibble per direction).
const MAX_CACHED_PORT: u16 = 14;
/// `Entry::acl_ports` nibble: no port.
const NO_PORT: u8 = 0xf;

/// A rule-set verdict cached for one direction of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowVerdict {
    /// The rules accepted the packet.
    Accept,
    /// The rules dropped it.
    Drop,
    /// The rules rejected it.
    Reject,
}

impl FlowVerdict {
    fn bits(self) -> u8 {
        match self {
            FlowVerdict::Accept => 1,
            FlowVerdict::Drop => 2,
            FlowVerdict::Reject => 3,
        }
    }

    fn from_bits(b: u8) -> Option<FlowVerdict> {
        match b & 0b11 {
            1 => Some(FlowVerdict::Accept),
            2 => Some(FlowVerdict::Drop),
            3 => Some(FlowVerdict::Reject),
            _ => None,
        }
    }
}

fn dir_shift(dir: Dir) -> u32 {
    match dir {
        Dir::Original => VERDICT_SHIFT,
        Dir::Reply => VERDICT_SHIFT + 2,
    }
}

fn port_shift(dir: Dir) -> u32 {
    match dir {
        Dir::Original => 0,
        Dir::Reply => 4,
    }
}

impl Entry {
    /// Counts a packet of `len` bytes in direction `d` (0: original) and
    /// returns the counters that wrapped ([`CARRY_PACKETS`],
    /// [`CARRY_BYTES`]), for the shard to carry into the [`Wide`] record.
    #[inline]
    pub(super) fn count(&mut self, d: usize, len: u16) -> u8 {
        let (p, cp) = self.packets[d].overflowing_add(1);
        let (b, cb) = self.bytes[d].overflowing_add(u32::from(len));
        self.packets[d] = p;
        self.bytes[d] = b;
        (u8::from(cp) * CARRY_PACKETS) | (u8::from(cb) * CARRY_BYTES)
    }

    /// Reads a field in each cache line the entry spans: the key's zone
    /// (at its start), the TCP state (bytes 40..80) and the flags (its last
    /// byte). At 112 bytes aligned to 16, every line the entry touches
    /// holds one of them whole (a test checks the offsets), so the
    /// warm-up's loads cover the whole entry.
    #[inline]
    pub(super) fn touch(&self) -> (u16, crate::flow::TcpState, u8) {
        (self.key.zone, self.tcp.state(), self.flags)
    }

    pub(super) fn in_use(&self) -> bool {
        self.flags & IN_USE != 0
    }

    pub(super) fn has_extras(&self) -> bool {
        self.flags & HAS_EXTRAS != 0
    }

    /// The flow's replication level.
    pub(super) fn sync_level(&self) -> crate::flow::SyncLevel {
        crate::flow::SyncLevel::from_bits(self.flags >> SYNC_SHIFT)
    }

    /// The verdict cached for packets in `dir` arriving on `in_port` under
    /// rule-set generation `gen`, if there is one.
    #[inline]
    pub(super) fn verdict(&self, dir: Dir, in_port: u16, gen: u16) -> Option<FlowVerdict> {
        if self.acl_gen != gen {
            return None;
        }
        let port = (self.acl_ports >> port_shift(dir)) & 0xf;
        if u16::from(port) != in_port {
            return None;
        }
        FlowVerdict::from_bits(self.flags >> dir_shift(dir))
    }

    /// Caches `v` for packets in `dir` arriving on `in_port` under generation
    /// `gen`. A new generation forgets the other direction's verdict, so each
    /// direction is judged by the new rules on its own next packet. Ports
    /// that do not fit a nibble are not cached.
    pub(super) fn set_verdict(&mut self, dir: Dir, in_port: u16, gen: u16, v: FlowVerdict) {
        if self.acl_gen != gen {
            self.clear_verdicts();
            self.acl_gen = gen;
        }
        let Some(port) = u8::try_from(in_port)
            .ok()
            .filter(|&p| u16::from(p) <= MAX_CACHED_PORT)
        else {
            self.clear_verdict(dir);
            return;
        };
        let ps = port_shift(dir);
        self.acl_ports = (self.acl_ports & !(0xf << ps)) | (port << ps);
        let ds = dir_shift(dir);
        self.flags = (self.flags & !(0b11 << ds)) | (v.bits() << ds);
    }

    /// Forgets the verdict cached for `dir`.
    pub(super) fn clear_verdict(&mut self, dir: Dir) {
        self.flags &= !(0b11 << dir_shift(dir));
        self.acl_ports |= NO_PORT << port_shift(dir);
    }

    /// Forgets both directions' verdicts.
    pub(super) fn clear_verdicts(&mut self) {
        self.flags &= !VERDICT_MASK;
        self.acl_ports = NO_PORT << 4 | NO_PORT;
    }
}

pub(super) fn empty_entry() -> Entry {
    Entry {
        key: FlowKey::default(),
        tcp: TcpConn::default(),
        links: Links::default(),
        expires: 0,
        bytes: [0; 2],
        packets: [0; 2],
        status: 0,
        acl_gen: 0,
        acl_ports: NO_PORT << 4 | NO_PORT,
        flags: 0,
    }
}

pub(super) struct Slab(pub(super) crate::huge::HugeSlice<Entry>);

/// The slab's free slots, kept in the slots themselves: a freed slot's
/// `links.next` names the slot freed before it (a free slot is on no timer
/// list, so its links are unused), and slots never used yet are those from
/// `fresh` on. So the free list costs no memory per flow (a `Vec<u32>` of
/// every free index cost 4 bytes). Freed slots are handed out again first,
/// the last freed first; then the never-used ones, lowest first.
#[derive(Debug)]
pub(super) struct FreeSlots {
    /// The last freed slot ([`NIL`]: none).
    head: u32,
    /// Freed slots on the chain.
    chained: usize,
    /// The lowest slot never used.
    fresh: u32,
    /// Slots in the slab.
    slots: u32,
}

impl FreeSlots {
    /// Every one of `slots` slots free, none used yet.
    pub(super) fn new(slots: u32) -> FreeSlots {
        FreeSlots {
            head: NIL,
            chained: 0,
            fresh: 0,
            slots,
        }
    }

    /// Free slots.
    pub(super) fn len(&self) -> usize {
        self.chained + (self.slots - self.fresh) as usize
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes a free slot.
    pub(super) fn pop(&mut self, slab: &Slab) -> Option<u32> {
        if self.head != NIL {
            let idx = self.head;
            self.head = slab.0[idx as usize].links.next;
            self.chained -= 1;
            return Some(idx);
        }
        if self.fresh < self.slots {
            self.fresh += 1;
            return Some(self.fresh - 1);
        }
        None
    }

    /// Gives back slot `idx`, already reset to [`empty_entry`] (unlinked).
    pub(super) fn push(&mut self, slab: &mut Slab, idx: u32) {
        slab.0[idx as usize].links.next = self.head;
        self.head = idx;
        self.chained += 1;
    }
}

impl WheelStore for Slab {
    fn links(&mut self, idx: u32) -> &mut Links {
        &mut self.0[idx as usize].links
    }
}

/// Status bits as an entry stores them: Linux defines only the low 16.
#[allow(clippy::cast_possible_truncation)]
pub(super) const ST_SEEN_REPLY: u16 = status::SEEN_REPLY as u16;
/// See [`ST_SEEN_REPLY`].
#[allow(clippy::cast_possible_truncation)]
pub(super) const ST_ASSURED: u16 = status::ASSURED as u16;
/// See [`ST_SEEN_REPLY`].
#[allow(clippy::cast_possible_truncation)]
pub(super) const ST_CONFIRMED: u16 = status::CONFIRMED as u16;
