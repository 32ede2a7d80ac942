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
    pub(super) fn insert(&mut self, h: u64, mut entry: FlowEntry) -> u32 {
        entry.hash = h;
        let slot = match self.free.pop() {
            Some(s) => {
                if let Some(e) = self.slots.get_mut(s as usize) {
                    *e = entry;
                }
                s
            }
            None => {
                // Entries are bounded by the engine's queues, far below 2^32.
                #[allow(clippy::cast_possible_truncation)]
                let s = self.slots.len() as u32;
                self.slots.push(entry);
                s
            }
        };
        let slots = &self.slots;
        self.index
            .insert_unique(h, slot, |&s| slots.get(s as usize).map_or(0, |e| e.hash));
        slot
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
