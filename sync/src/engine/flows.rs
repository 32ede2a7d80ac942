//! The engine's per-flow table: the flows pending or in flight.
//!
//! Entries live in a slab and are named by their slot (a `u32`) everywhere
//! else: the transmit queue and the resend queue hold slots, so sending,
//! committing and acknowledging a message reach the entry directly; only a
//! new delta hashes its key. The index is a `HashTable<u32>` of slots (4
//! bytes a bucket) hashed with the engine's seeded [`KeyState`].
//!
//! An entry keeps its flow as a [`FlowState`], whose rare attributes
//! (`FlowExtras`: NAT reply tuple, master, helper, ...) are boxed only
//! when a flow has any.
//!
//! Invariant kept by the engine (tx.rs): a slot named by the transmit queue
//! is live and pending; a slot named by a resend entry at index `i` is live
//! with `inflight == Some(i)`. A slot is freed only when neither holds.

use ftfw_dataplane::flow::{FlowKey, FlowState};
use hashbrown::HashTable;

use super::hash::KeyState;
use super::msg::FlowKind;

/// One flow waiting for transmission or acknowledgement.
#[derive(Debug)]
pub(super) struct FlowEntry {
    pub(super) state: FlowState,
    pub(super) kind: FlowKind,
    /// Has a message for this entry been sent already?
    pub(super) sent: bool,
    /// In the data transmit queue.
    pub(super) pending: bool,
    /// The next send is a retransmission.
    pub(super) retx: bool,
    /// The slot holds a flow (false: on the free list).
    pub(super) live: bool,
    /// Resend-queue index of the message in flight.
    pub(super) inflight: Option<u64>,
    /// The key's hash (set by [`FlowTable::insert`]): removal and resizing
    /// never hash again.
    pub(super) hash: u64,
}

/// Index capacity below which it is never shrunk (256 KiB of slots and
/// control bytes; the hysteresis keeps shrink and regrowth rare).
const SHRINK_ABOVE: usize = 1 << 16;

/// What [`FlowTable::entry`] found.
pub(super) enum Slot<'a> {
    /// The key's entry is in this slot.
    Taken(u32),
    /// The key is not in the table; [`Vacant::insert`] adds it.
    Free(Vacant<'a>),
}

/// The place for a key that is not in the table.
pub(super) struct Vacant<'a> {
    index: hashbrown::hash_table::VacantEntry<'a, u32>,
    slots: &'a mut Vec<FlowEntry>,
    free: &'a mut Vec<u32>,
    hash: u64,
}

impl Vacant<'_> {
    /// Adds `entry` (whose key is the one looked up) and returns its slot.
    #[inline]
    pub(super) fn insert(self, entry: FlowEntry) -> u32 {
        let slot = store(self.slots, self.free, self.hash, entry);
        self.index.insert(slot);
        slot
    }
}

/// Puts `entry` in a free slot of the slab (or a new one) and returns it.
#[inline]
fn store(slots: &mut Vec<FlowEntry>, free: &mut Vec<u32>, h: u64, mut entry: FlowEntry) -> u32 {
    entry.hash = h;
    match free.pop() {
        Some(s) => {
            if let Some(e) = slots.get_mut(s as usize) {
                *e = entry;
            }
            s
        }
        None => {
            // Entries are bounded by the engine's queues, far below 2^32.
            #[allow(clippy::cast_possible_truncation)]
            let s = slots.len() as u32;
            slots.push(entry);
            s
        }
    }
}

/// Slab plus index; see the module docs.
pub(super) struct FlowTable {
    index: HashTable<u32>,
    slots: Vec<FlowEntry>,
    free: Vec<u32>,
    hasher: KeyState,
}

impl FlowTable {
    pub(super) fn new() -> FlowTable {
        FlowTable {
            index: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            hasher: KeyState::new(),
        }
    }

    /// The hash of `key`, for [`FlowTable::find`] and [`FlowTable::insert`].
    pub(super) fn hash(&self, key: &FlowKey) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    /// The slot of `key`'s entry, if any; `h` is [`FlowTable::hash`] of it.
    #[cfg(test)]
    pub(super) fn find(&self, h: u64, key: &FlowKey) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(h, |&s| {
                slots
                    .get(s as usize)
                    .is_some_and(|e| e.hash == h && e.state.key == *key)
            })
            .copied()
    }

    /// Adds an entry whose key is not in the table; `h` is
    /// [`FlowTable::hash`] of its key. Returns its slot.
    #[cfg(test)]
    pub(super) fn insert(&mut self, h: u64, entry: FlowEntry) -> u32 {
        let slot = store(&mut self.slots, &mut self.free, h, entry);
        let slots = &self.slots;
        self.index
            .insert_unique(h, slot, |&s| slots.get(s as usize).map_or(0, |e| e.hash));
        slot
    }

    /// `key`'s entry, or the place to add one: one probe of the index for
    /// both (a delta for a flow not in flight, the common case, used to
    /// probe twice: once to miss, once to insert). `h` is
    /// [`FlowTable::hash`] of `key`.
    pub(super) fn entry(&mut self, h: u64, key: &FlowKey) -> Slot<'_> {
        let slots = &self.slots;
        match self.index.entry(
            h,
            |&s| {
                slots
                    .get(s as usize)
                    .is_some_and(|e| e.hash == h && e.state.key == *key)
            },
            |&s| slots.get(s as usize).map_or(0, |e| e.hash),
        ) {
            hashbrown::hash_table::Entry::Occupied(o) => Slot::Taken(*o.get()),
            hashbrown::hash_table::Entry::Vacant(v) => Slot::Free(Vacant {
                index: v,
                slots: &mut self.slots,
                free: &mut self.free,
                hash: h,
            }),
        }
    }

    /// Removes the entry in `slot` (nothing if the slot is free).
    pub(super) fn remove(&mut self, slot: u32) {
        let Some(e) = self.slots.get_mut(slot as usize).filter(|e| e.live) else {
            return;
        };
        e.live = false;
        e.pending = false;
        e.inflight = None;
        e.state.extras = Default::default();
        let h = e.hash;
        if let Ok(o) = self.index.find_entry(h, |&s| s == slot) {
            o.remove();
        }
        self.free.push(slot);
        // After a burst (a bulk, a backlog) give the index back its small,
        // cache-resident size; amortized O(1).
        let (len, cap) = (self.index.len(), self.index.capacity());
        if cap > SHRINK_ABOVE && len < cap / 16 {
            let slots = &self.slots;
            self.index
                .shrink_to(len * 4, |&s| slots.get(s as usize).map_or(0, |e| e.hash));
        }
    }

    /// The live entry in `slot`.
    #[cfg(test)]
    pub(super) fn get(&self, slot: u32) -> Option<&FlowEntry> {
        self.slots.get(slot as usize).filter(|e| e.live)
    }

    /// The live entry in `slot`.
    pub(super) fn get_mut(&mut self, slot: u32) -> Option<&mut FlowEntry> {
        self.slots.get_mut(slot as usize).filter(|e| e.live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftfw_dataplane::flow::{proto, Counters, TcpState, Tuple};
    use std::net::Ipv4Addr;

    fn state(i: u32, helper: bool) -> FlowState {
        let mut s = FlowState {
            key: FlowKey {
                orig: Tuple::new(
                    Ipv4Addr::from(0x0a00_0000 + i).into(),
                    Ipv4Addr::new(192, 0, 2, 1).into(),
                    proto::TCP,
                    40000,
                    443,
                ),
                zone: 0,
            },
            tcp_state: TcpState::Established,
            status: 7,
            timeout_secs: i,
            mark: 3,
            wscale: [1, 2],
            counters: [Counters {
                packets: 1,
                bytes: 2,
            }; 2],
            extras: Default::default(),
        };
        if helper {
            s.extras.helper = Some("ftp".into());
            s.extras.labels = Some([1, 0, 0, 0]);
        }
        s
    }

    fn entry(s: FlowState) -> FlowEntry {
        FlowEntry {
            state: s,
            kind: FlowKind::New,
            sent: false,
            pending: true,
            retx: false,
            live: true,
            inflight: None,
            hash: 0,
        }
    }

    fn ins(t: &mut FlowTable, e: FlowEntry) -> u32 {
        let h = t.hash(&e.state.key);
        t.insert(h, e)
    }

    fn fnd(t: &FlowTable, k: &FlowKey) -> Option<u32> {
        t.find(t.hash(k), k)
    }

    #[test]
    fn entry_finds_the_key_or_its_place() {
        let mut t = FlowTable::new();
        let a = ins(&mut t, entry(state(1, false)));
        let k1 = state(1, false).key;
        let h1 = t.hash(&k1);
        assert!(matches!(t.entry(h1, &k1), Slot::Taken(s) if s == a));
        // A place not taken changes nothing.
        let k2 = state(2, false).key;
        let h2 = t.hash(&k2);
        assert!(matches!(t.entry(h2, &k2), Slot::Free(_)));
        assert_eq!(fnd(&t, &k2), None);
        // A place taken: the entry is found there, under its hash.
        let Slot::Free(place) = t.entry(h2, &k2) else {
            panic!("key 2 is not in the table yet");
        };
        let b = place.insert(entry(state(2, true)));
        assert_ne!(a, b);
        assert_eq!(fnd(&t, &k2), Some(b));
        assert_eq!(t.get(b).map(|e| e.hash), Some(h2));
        assert!(matches!(t.entry(h2, &k2), Slot::Taken(s) if s == b));
        // A freed slot is reused through the place too.
        t.remove(a);
        let Slot::Free(place) = t.entry(h1, &k1) else {
            panic!("key 1 was removed");
        };
        assert_eq!(place.insert(entry(state(1, false))), a);
        assert_eq!(fnd(&t, &k1), Some(a));
        // Many keys: each found in its own slot.
        for i in 100..1100 {
            let k = state(i, false).key;
            let h = t.hash(&k);
            let Slot::Free(place) = t.entry(h, &k) else {
                panic!("key {i} is new");
            };
            let s = place.insert(entry(state(i, false)));
            assert!(matches!(t.entry(h, &k), Slot::Taken(x) if x == s));
        }
        assert_eq!(fnd(&t, &k2), Some(b));
    }

    #[test]
    fn slots_are_found_removed_and_reused() {
        let mut t = FlowTable::new();
        let a = ins(&mut t, entry(state(1, false)));
        let b = ins(&mut t, entry(state(2, true)));
        assert_eq!(fnd(&t, &state(1, false).key), Some(a));
        assert_eq!(fnd(&t, &state(2, false).key), Some(b));
        t.remove(a);
        assert_eq!(fnd(&t, &state(1, false).key), None);
        assert!(t.get(a).is_none());
        t.remove(a);
        let c = ins(&mut t, entry(state(3, false)));
        assert_eq!(c, a);
        assert_eq!(fnd(&t, &state(3, false).key), Some(c));
        assert_eq!(fnd(&t, &state(2, false).key), Some(b));
        for i in 100..1100 {
            ins(&mut t, entry(state(i, false)));
        }
        for i in 100..1100 {
            let s = fnd(&t, &state(i, false).key).unwrap();
            assert_eq!(t.get(s).unwrap().state.key, state(i, false).key);
        }
    }
}
