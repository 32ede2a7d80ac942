//! A timing wheel with lazy rescheduling over the shard's slab.
//!
//! 4096 one-second slots hold intrusive doubly linked lists of slab indices
//! (the links live in the flow entries, so the wheel allocates nothing after
//! construction). An entry is linked into the slot of its expiry second
//! (modulo the wheel size). Refreshing a flow only moves its expiry later and
//! leaves it where it is; when its slot comes round the wheel looks again and
//! relinks it if it is not due yet. A refresh that moves an expiry *earlier*
//! relinks at once so nothing expires late.

/// Number of slots; one slot per second.
pub(crate) const SLOTS: usize = SLOTS_U32 as usize;
const SLOTS_U32: u32 = 4096;

/// Sentinel for "no entry".
pub(crate) const NIL: u32 = u32::MAX;

/// The links every wheel member carries. Packed to 10 bytes (fields are only
/// ever copied or assigned, never borrowed) so that a flow entry stays
/// within 112 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, packed(2))]
pub(crate) struct Links {
    pub(crate) prev: u32,
    pub(crate) next: u32,
    /// Slot whose list holds the entry, [`PENDING`] or [`UNLINKED`].
    pub(crate) slot: u16,
}

/// `Links::slot` of an entry on the pending list.
const PENDING: u16 = u16::MAX;
/// `Links::slot` of an entry on no list.
const UNLINKED: u16 = u16::MAX - 1;

impl Default for Links {
    fn default() -> Self {
        Links {
            prev: NIL,
            next: NIL,
            slot: UNLINKED,
        }
    }
}

/// Access to the links and expiry of the entries the wheel orders.
pub(crate) trait WheelStore {
    fn links(&mut self, idx: u32) -> &mut Links;
}

/// Slot heads and the cursor of the last processed second.
#[derive(Debug)]
pub(crate) struct Wheel {
    heads: Vec<u32>,
    /// Last second fully processed.
    cursor: u32,
    /// Entries detached from the slot being processed, still to look at.
    pending: u32,
}

impl Wheel {
    pub(crate) fn new(start: u32) -> Wheel {
        Wheel {
            heads: vec![NIL; SLOTS],
            cursor: start,
            pending: NIL,
        }
    }

    /// The last second whose slot has been processed.
    #[cfg(test)]
    pub(crate) fn cursor(&self) -> u32 {
        self.cursor
    }

    fn slot(second: u32) -> u16 {
        // SLOTS is 4096, so the remainder always fits in u16.
        u16::try_from(second % SLOTS_U32).unwrap_or(0)
    }

    /// Links `idx` so that it is looked at no later than second `expires`.
    pub(crate) fn link<S: WheelStore>(&mut self, store: &mut S, idx: u32, expires: u32) {
        let at = expires.max(self.cursor.wrapping_add(1));
        let slot = Self::slot(at);
        let head = self.heads[usize::from(slot)];
        *store.links(idx) = Links {
            prev: NIL,
            next: head,
            slot,
        };
        if head != NIL {
            store.links(head).prev = idx;
        }
        self.heads[usize::from(slot)] = idx;
    }

    /// Unlinks `idx` from whatever list holds it (a slot or the pending list).
    pub(crate) fn unlink<S: WheelStore>(&mut self, store: &mut S, idx: u32) {
        let Links { prev, next, slot } = *store.links(idx);
        if slot == UNLINKED {
            return;
        }
        if prev != NIL {
            store.links(prev).next = next;
        } else if slot == PENDING {
            self.pending = next;
        } else {
            self.heads[usize::from(slot)] = next;
        }
        if next != NIL {
            store.links(next).prev = prev;
        }
        *store.links(idx) = Links::default();
    }

    /// Pops the next entry to look at for seconds up to `now`, advancing the
    /// cursor over empty slots. Returns `None` when everything due has been
    /// handed out. The caller either expires the entry or links it again.
    pub(crate) fn pop_due<S: WheelStore>(&mut self, store: &mut S, now: u32) -> Option<u32> {
        loop {
            if self.pending != NIL {
                let idx = self.pending;
                let next = store.links(idx).next;
                if next != NIL {
                    store.links(next).prev = NIL;
                }
                self.pending = next;
                *store.links(idx) = Links::default();
                return Some(idx);
            }
            if self.cursor >= now {
                return None;
            }
            let second = self.cursor.wrapping_add(1);
            let slot = usize::from(Self::slot(second));
            self.pending = self.heads[slot];
            self.heads[slot] = NIL;
            let mut at = self.pending;
            while at != NIL {
                let l = store.links(at);
                l.slot = PENDING;
                at = l.next;
            }
            self.cursor = second;
        }
    }

    /// Whether a slot list has `idx` as its head.
    #[cfg(test)]
    fn is_head(&self, idx: u32) -> bool {
        self.heads.contains(&idx)
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    struct Store(Vec<Links>);
    impl WheelStore for Store {
        fn links(&mut self, idx: u32) -> &mut Links {
            &mut self.0[idx as usize]
        }
    }

    #[test]
    fn entries_come_due_at_their_second() {
        let mut s = Store(vec![Links::default(); 8]);
        let mut w = Wheel::new(0);
        w.link(&mut s, 0, 5);
        w.link(&mut s, 1, 3);
        w.link(&mut s, 2, 3);
        assert_eq!(w.pop_due(&mut s, 2), None);
        let mut due: Vec<u32> = std::iter::from_fn(|| w.pop_due(&mut s, 3)).collect();
        due.sort();
        assert_eq!(due, vec![1, 2]);
        assert_eq!(w.pop_due(&mut s, 4), None);
        assert_eq!(w.pop_due(&mut s, 10), Some(0));
        assert_eq!(w.pop_due(&mut s, 10), None);
        assert_eq!(w.cursor(), 10);
    }

    #[test]
    fn unlink_from_head_middle_and_pending() {
        let mut s = Store(vec![Links::default(); 8]);
        let mut w = Wheel::new(0);
        for i in 0..4 {
            w.link(&mut s, i, 7);
        }
        w.unlink(&mut s, 3); // head
        w.unlink(&mut s, 1); // middle
        assert!(!w.is_head(3));
        let first = w.pop_due(&mut s, 7).unwrap();
        // The rest of the slot is now pending; unlink one of them.
        let other = if first == 2 { 0 } else { 2 };
        w.unlink(&mut s, other);
        assert_eq!(w.pop_due(&mut s, 7), None);
    }

    #[test]
    fn far_expiry_is_looked_at_early_and_past_expiry_next_second() {
        let mut s = Store(vec![Links::default(); 2]);
        let mut w = Wheel::new(100);
        w.link(&mut s, 0, 100 + SLOTS as u32 + 5); // beyond the horizon
        assert_eq!(w.pop_due(&mut s, 104), None);
        assert_eq!(w.pop_due(&mut s, 105), Some(0)); // lazily looked at
        w.link(&mut s, 1, 50); // already past: due next second
        assert_eq!(w.pop_due(&mut s, 106), Some(1));
    }
}
