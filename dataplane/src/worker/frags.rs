//! Virtual reassembly: the later fragments of an IP datagram carry no
//! transport header, so they follow the verdict their first fragment got
//! (as Linux's defragmentation before conntrack makes them do) without
//! being buffered or rebuilt.
//!
//! The first fragment is decided like any packet (conntrack and rules see
//! its ports) and its verdict is recorded under the datagram's key
//! (addresses, protocol, identification, zone), with the addresses NAT
//! gave it when its flow is translated: later fragments get the same
//! addresses (their IP header and its checksum; the transport checksum,
//! in the first fragment, was updated for the whole datagram there). A
//! later fragment is
//! forwarded only if its datagram's first fragment was forwarded, it does
//! not overlap what came before (RFC 5722 for IPv6; an overlap is also
//! the classic IPv4 evasion), and it ends within 65,535 bytes. A later
//! fragment whose first fragment was not seen (yet) is dropped: nothing
//! says what it belongs to.
//!
//! Bounded: a fixed table allocated once (`FRAG_SLOTS` datagrams, each
//! with at most `MAX_PIECES` disjoint received ranges; in-order fragments
//! merge into one range), entries expire after `FRAG_TIMEOUT_SECS`, and a
//! datagram is forgotten once complete. A full table is counted and its
//! datagrams' later fragments are dropped.

use crate::flow::{Addr, Tuple};
use crate::meta::{FragFacts, PacketMeta};

/// Datagrams tracked at once per worker.
pub const FRAG_SLOTS: usize = 1024;
/// Disjoint received ranges per datagram.
pub const MAX_PIECES: usize = 8;
/// Seconds a datagram's fragments may take (Linux's `ipfrag_time`).
pub const FRAG_TIMEOUT_SECS: u32 = 30;
/// Slots probed from a key's home slot.
const PROBE: usize = 8;
/// Largest end of a fragment, in bytes of the IP payload.
const MAX_END: u32 = 65_535;

/// What happens to a later fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Later {
    /// Its first fragment was forwarded: forward it too.
    Forward,
    /// Its first fragment was forwarded translated: forward it with
    /// these source and destination addresses.
    Translate {
        /// The translated source address.
        src: Addr,
        /// The translated destination address.
        dst: Addr,
    },
    /// Its first fragment was dropped (or rejected): drop it too.
    Drop,
    /// No first fragment seen for its datagram.
    NoFirst,
    /// It overlaps a fragment received before.
    Overlap,
    /// It would end past 65,535 bytes, or its datagram came in more
    /// scattered pieces than are tracked.
    Oversized,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
struct Key {
    src: Addr,
    dst: Addr,
    ident: u32,
    zone: u16,
    proto: u8,
    v6: bool,
}

#[derive(Clone, Copy, Debug, Default)]
struct Entry {
    key: Key,
    /// 0: free.
    expires: u32,
    forward: bool,
    /// The addresses NAT gave the first fragment (source, destination).
    nat: Option<(Addr, Addr)>,
    /// The first fragment went to this worker (its flow's): so do the
    /// later ones, which that worker judges.
    to: Option<u16>,
    /// Received byte ranges `[start, end)`, disjoint, merged when adjacent.
    pieces: [(u32, u32); MAX_PIECES],
    n: u8,
    /// The end of the datagram, once its last fragment came.
    total: Option<u32>,
}

impl Entry {
    /// Adds `[start, end)`: false if it overlaps or does not fit.
    fn add(&mut self, start: u32, end: u32) -> Result<(), Later> {
        let n = usize::from(self.n);
        if self.pieces[..n].iter().any(|&(s, e)| start < e && s < end) {
            return Err(Later::Overlap);
        }
        // Merge with the pieces it touches.
        let (mut s, mut e) = (start, end);
        let mut kept = 0;
        for i in 0..n {
            let (ps, pe) = self.pieces[i];
            if pe == s || ps == e {
                s = s.min(ps);
                e = e.max(pe);
            } else {
                self.pieces[kept] = (ps, pe);
                kept += 1;
            }
        }
        if kept == MAX_PIECES {
            return Err(Later::Oversized);
        }
        self.pieces[kept] = (s, e);
        self.n = u8::try_from(kept + 1).unwrap_or(u8::MAX);
        Ok(())
    }

    fn complete(&self) -> bool {
        self.total
            .is_some_and(|t| self.n == 1 && self.pieces[0] == (0, t))
    }
}

/// The fragment table of one worker. See the module documentation.
#[derive(Debug)]
pub struct FragTable {
    slots: Box<[Entry]>,
}

impl Default for FragTable {
    fn default() -> Self {
        FragTable::new(FRAG_SLOTS)
    }
}

fn key(t: &Tuple, f: &FragFacts, zone: u16) -> Key {
    Key {
        src: t.src,
        dst: t.dst,
        ident: f.ident,
        zone,
        proto: t.proto,
        v6: t.v6,
    }
}

fn home(k: &Key, len: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in k.src.iter().chain(&k.dst) {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= u64::from(k.ident) << 24 | u64::from(k.zone) << 8 | u64::from(k.proto);
    h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    usize::try_from(h >> 32).unwrap_or(0) % len.max(1)
}

/// The bytes of IP payload a fragment carries, from `meta`.
fn payload(meta: &PacketMeta) -> u32 {
    let hdr = u32::from(meta.l4_offset.saturating_sub(meta.l3_offset));
    u32::from(meta.ip_len).saturating_sub(hdr)
}

impl FragTable {
    /// A table of `slots` datagrams (at least 1), allocated now.
    pub fn new(slots: usize) -> FragTable {
        FragTable {
            slots: vec![Entry::default(); slots.max(1)].into_boxed_slice(),
        }
    }

    fn find(&self, k: &Key, now: u32) -> Option<usize> {
        let len = self.slots.len();
        let h = home(k, len);
        (0..PROBE.min(len))
            .map(|i| (h + i) % len)
            .find(|&i| self.slots[i].expires > now && self.slots[i].key == *k)
    }

    /// Records the verdict of a first fragment (`meta.fragment` is
    /// `First`): forwarded or not, and if forwarded translated, the
    /// (source, destination) addresses it was given. False if the table
    /// had no room.
    pub fn first(
        &mut self,
        meta: &PacketMeta,
        zone: u16,
        now: u32,
        forward: bool,
        nat: Option<(Addr, Addr)>,
    ) -> bool {
        let k = key(&meta.tuple, &meta.frag, zone);
        let end = payload(meta);
        let len = self.slots.len();
        let slot = self.find(&k, now).or_else(|| {
            let h = home(&k, len);
            (0..PROBE.min(len))
                .map(|i| (h + i) % len)
                .find(|&i| self.slots[i].expires <= now)
        });
        let Some(i) = slot else {
            return false;
        };
        let e = &mut self.slots[i];
        if e.expires <= now || e.key != k {
            *e = Entry {
                key: k,
                ..Entry::default()
            };
        }
        e.expires = now.saturating_add(FRAG_TIMEOUT_SECS).max(1);
        e.forward = forward;
        e.nat = nat;
        // A repeated first fragment (a retransmission) adds nothing new.
        if e.add(0, end).is_err() && !e.pieces[..usize::from(e.n)].contains(&(0, end)) {
            e.forward = false;
        }
        true
    }

    /// Records that a first fragment was handed to `worker` (the worker of
    /// its flow; the fragments of a datagram are steered by addresses
    /// alone): its later fragments go there too ([`FragTable::handed_to`]).
    /// False if the table had no room.
    pub fn hand_first(&mut self, meta: &PacketMeta, zone: u16, now: u32, worker: u16) -> bool {
        if !self.first(meta, zone, now, false, None) {
            return false;
        }
        let k = key(&meta.tuple, &meta.frag, zone);
        if let Some(i) = self.find(&k, now) {
            self.slots[i].to = Some(worker);
        }
        true
    }

    /// The worker a later fragment goes to when its first fragment was
    /// handed there; the datagram is forgotten here once all its pieces
    /// went (the worker judges overlaps and sizes).
    pub fn handed_to(&mut self, meta: &PacketMeta, zone: u16, now: u32) -> Option<u16> {
        let k = key(&meta.tuple, &meta.frag, zone);
        let i = self.find(&k, now)?;
        let e = &mut self.slots[i];
        let to = e.to?;
        let start = u32::from(meta.frag.offset) * 8;
        let end = start.saturating_add(payload(meta));
        let _ = e.add(start, end);
        if !meta.frag.more {
            e.total = Some(end);
        }
        if e.complete() {
            *e = Entry::default();
        }
        Some(to)
    }

    /// Whether the datagram of a later fragment is tracked here (its first
    /// fragment was judged here or handed on from here).
    pub fn knows(&self, meta: &PacketMeta, zone: u16, now: u32) -> bool {
        self.find(&key(&meta.tuple, &meta.frag, zone), now)
            .is_some()
    }

    /// Judges a later fragment (`meta.fragment` is `Later`).
    pub fn later(&mut self, meta: &PacketMeta, zone: u16, now: u32) -> Later {
        let k = key(&meta.tuple, &meta.frag, zone);
        let Some(i) = self.find(&k, now) else {
            return Later::NoFirst;
        };
        let start = u32::from(meta.frag.offset) * 8;
        let end = start + payload(meta);
        let e = &mut self.slots[i];
        if end > MAX_END {
            e.forward = false;
            return Later::Oversized;
        }
        if let Err(why) = e.add(start, end) {
            // The whole datagram is suspect from now on.
            e.forward = false;
            return why;
        }
        if !meta.frag.more {
            e.total = Some(end);
        }
        let verdict = match (e.forward, e.nat) {
            (true, Some((src, dst))) => Later::Translate { src, dst },
            (true, None) => Later::Forward,
            (false, _) => Later::Drop,
        };
        if e.complete() {
            *e = Entry::default();
        }
        verdict
    }

    /// Datagrams tracked now (for tests and the console).
    pub fn len(&self, now: u32) -> usize {
        self.slots.iter().filter(|e| e.expires > now).count()
    }

    /// Whether no datagram is tracked.
    pub fn is_empty(&self, now: u32) -> bool {
        self.len(now) == 0
    }

    /// Bytes the table holds (allocated once).
    pub fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
    }
}

#[cfg(test)]
mod tests;
