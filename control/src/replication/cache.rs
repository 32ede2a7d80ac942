//! The external cache: the peer's flows, kept aside until a commit.
//!
//! Semantics are conntrackd's (`ftfw-wire.md` section 7.6): NEW replaces
//! any entry, UPDATE updates an entry or creates it, DESTROY removes it.
//! Nothing here touches the shards: only a commit moves these flows into
//! the dataplane. Entries do not expire on their own (conntrackd's external
//! cache does not either); a DESTROY, a flush, or a newer state replaces
//! them. The cache is bounded: a new flow that does not fit is refused and
//! counted, and the peer's existing flows keep being updated.

use std::hash::BuildHasher;
use std::time::Instant;

use hashbrown::hash_table::Entry;
use hashbrown::HashTable;

use ftfw_dataplane::flow::{FlowKey, FlowState};
use ftfw_sync::engine::{FlowKind, KeyState};

/// One flow of the peer.
#[derive(Clone, Debug)]
pub struct ExternalEntry {
    /// Its newest state as received.
    pub state: FlowState,
    /// When it was first received (conntrackd's "active since").
    pub since: Instant,
    /// When it was last updated.
    pub updated: Instant,
}

/// Counters of the external cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Flows created (NEW or UPDATE for an unknown flow).
    pub created: u64,
    /// Flows updated in place.
    pub updated: u64,
    /// Flows removed by a DESTROY.
    pub destroyed: u64,
    /// DESTROYs for flows the cache did not have (harmless).
    pub destroy_unknown: u64,
    /// New flows refused because the cache was full.
    pub full: u64,
}

/// The peer's flows. See the module documentation.
///
/// Entries live in slots that never move while they are held (a removed
/// flow leaves a hole the next new flow takes), so a listing can walk the
/// cache a range of slots at a time ([`ExternalCache::page`]) while flows
/// come and go: every flow held through the whole walk is seen exactly
/// once.
#[derive(Debug)]
pub struct ExternalCache {
    slots: Vec<Option<ExternalEntry>>,
    /// Empty slots below `slots.len()`.
    free: Vec<usize>,
    /// Each held flow's key hash and slot: 16 bytes a bucket, the key
    /// itself stays in its slot. A bulk from the peer (a migration of a
    /// million flows) is bound by this table: one lookup per message, the
    /// sync engine's seeded flow-key hash, growth that moves 16 bytes an
    /// entry and rehashes nothing.
    index: HashTable<(u64, usize)>,
    hasher: KeyState,
    capacity: usize,
    stats: CacheStats,
}

impl ExternalCache {
    /// An empty cache holding at most `capacity` flows.
    pub fn new(capacity: usize) -> ExternalCache {
        ExternalCache {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: KeyState::new(),
            capacity: capacity.max(1),
            stats: CacheStats::default(),
        }
    }

    /// The slot of `key`'s entry, if any.
    fn find(&self, key: &FlowKey) -> Option<usize> {
        let h = self.hasher.hash_one(key);
        self.index
            .find(h, names(&self.slots, h, key))
            .map(|&(_, s)| s)
    }

    fn remove(&mut self, key: &FlowKey) -> Option<ExternalEntry> {
        let h = self.hasher.hash_one(key);
        let entry = self.index.find_entry(h, names(&self.slots, h, key)).ok()?;
        let ((_, slot), _) = entry.remove();
        let e = self.slots.get_mut(slot)?.take();
        self.free.push(slot);
        e
    }

    /// Empties the cache and hands out every entry.
    fn drain(&mut self) -> impl Iterator<Item = ExternalEntry> + '_ {
        self.index.clear();
        self.free.clear();
        self.slots.drain(..).flatten()
    }

    /// Removes the entries for which `keep` is false; returns how many.
    fn retain_entries(&mut self, keep: impl Fn(&ExternalEntry) -> bool) -> usize {
        let mut n = 0;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|e| !keep(e)) {
                let key = slot.as_ref().map(|e| e.state.key);
                let h = key.map(|k| self.hasher.hash_one(k));
                if let (Some(h), Some(_)) = (h, slot.take()) {
                    // The index entry naming this slot (the slot is empty now).
                    if let Ok(entry) = self.index.find_entry(h, |&(eh, s)| eh == h && s == i) {
                        entry.remove();
                    }
                    self.free.push(i);
                    n += 1;
                }
            }
        }
        n
    }

    /// The entries in slots `from..from + max` (at most `max` slots
    /// looked at), and the slot to continue from (`None`: the end).
    pub fn page(
        &self,
        from: usize,
        max: usize,
    ) -> (impl Iterator<Item = &ExternalEntry>, Option<usize>) {
        let end = from.saturating_add(max.max(1)).min(self.slots.len());
        let next = (end < self.slots.len()).then_some(end);
        let range = self.slots.get(from..end).unwrap_or(&[]);
        (range.iter().flatten(), next)
    }

    /// Applies one received flow message.
    pub fn apply(&mut self, now: Instant, kind: FlowKind, state: FlowState) {
        match kind {
            FlowKind::Destroy => {
                if self.remove(&state.key).is_some() {
                    self.stats.destroyed += 1;
                } else {
                    self.stats.destroy_unknown += 1;
                }
            }
            FlowKind::New | FlowKind::Update => {
                let full = self.index.len() >= self.capacity;
                // One lookup per message: the entry, or where it goes.
                let h = self.hasher.hash_one(state.key);
                let entry = self
                    .index
                    .entry(h, names(&self.slots, h, &state.key), |&(eh, _)| eh);
                match entry {
                    Entry::Occupied(o) => {
                        if let Some(e) = self.slots.get_mut(o.get().1).and_then(Option::as_mut) {
                            e.state = state;
                            e.updated = now;
                            if kind == FlowKind::New {
                                // NEW replaces: a new incarnation of the flow.
                                e.since = now;
                            }
                            self.stats.updated += 1;
                        }
                    }
                    Entry::Vacant(_) if full => self.stats.full += 1,
                    Entry::Vacant(v) => {
                        let e = ExternalEntry {
                            state,
                            since: now,
                            updated: now,
                        };
                        let slot = match self.free.pop() {
                            Some(i) => {
                                self.slots[i] = Some(e);
                                i
                            }
                            None => {
                                self.slots.push(Some(e));
                                self.slots.len() - 1
                            }
                        };
                        v.insert((h, slot));
                        self.stats.created += 1;
                    }
                }
            }
        }
    }

    /// Flows held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Most flows it may hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Counters.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    /// The entry for a flow.
    pub fn get(&self, key: &FlowKey) -> Option<&ExternalEntry> {
        self.slots.get(self.find(key)?)?.as_ref()
    }

    /// Every entry, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = &ExternalEntry> {
        self.slots.iter().flatten()
    }

    /// Copies of every flow's state with its timeout reduced by the time
    /// since it was received (what a commit imports).
    pub fn snapshot(&self, now: Instant) -> Vec<FlowState> {
        self.iter()
            .map(|e| aged(e.state.clone(), e.updated, now))
            .collect()
    }

    /// Moves every flow's state out (timeouts aged as in
    /// [`ExternalCache::snapshot`]), leaving the cache empty: a takeover's
    /// commit, which needs no copy.
    pub fn take(&mut self, now: Instant) -> Vec<FlowState> {
        self.drain()
            .map(|e| aged(e.state, e.updated, now))
            .collect()
    }

    /// Imports the cache into the shards of `workers` (each flow to the
    /// worker that owns its hash) without replicating it back, streaming:
    /// the walk over the cache overlaps the workers' inserts. With `take`
    /// the cache is emptied (a takeover: the flows now live in the shards)
    /// and nothing is copied; without, it is kept (`ftfwctl commit`, as
    /// `conntrackd -c`). Returns (inserted or replaced, refused because a
    /// table was full).
    pub fn commit_into(
        &mut self,
        now: Instant,
        workers: &[std::sync::Arc<ftfw_dataplane::worker::WorkerShared>],
        take: bool,
    ) -> Result<(usize, usize), crate::import::ImportError> {
        let mut imp = crate::import::Importer::new(workers, false);
        if take {
            for e in self.drain() {
                imp.push(aged(e.state, e.updated, now))?;
            }
        } else {
            for e in self.iter() {
                imp.push(aged(e.state.clone(), e.updated, now))?;
            }
        }
        imp.finish()
    }

    /// Pushes the flows matching `pick` into `imp` (timeouts aged as in
    /// [`ExternalCache::snapshot`]), removing them from the cache when
    /// `take`: a takeover's commit (`pick` takes all) or a cluster
    /// takeover of some buckets of this peer. Returns how many were
    /// pushed. On an error the flows pushed so far stay out of the cache
    /// (with `take`) and the rest stay in.
    ///
    /// One walk over the slots in order: no key is hashed or looked up,
    /// and the index loses the taken flows in one pass at the end (a
    /// million-flow commit was bound by a lookup per flow).
    pub fn commit_matching(
        &mut self,
        now: Instant,
        imp: &mut crate::import::Importer<'_>,
        pick: impl Fn(&FlowState) -> bool,
        take: bool,
    ) -> Result<usize, crate::import::ImportError> {
        self.hand_out(now, pick, take, |st| imp.push(st))
    }

    /// [`ExternalCache::commit_matching`] into any `sink`.
    fn hand_out<E>(
        &mut self,
        now: Instant,
        pick: impl Fn(&FlowState) -> bool,
        take: bool,
        mut sink: impl FnMut(FlowState) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut pushed = 0;
        let mut r = Ok(());
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(e) = slot.as_ref().filter(|e| pick(&e.state)) else {
                continue;
            };
            let st = if take {
                let e = slot.take().expect("a held slot");
                self.free.push(i);
                aged(e.state, e.updated, now)
            } else {
                aged(e.state.clone(), e.updated, now)
            };
            pushed += 1;
            if let Err(err) = sink(st) {
                r = Err(err);
                break;
            }
        }
        if take && pushed > 0 {
            if self.free.len() == self.slots.len() {
                self.flush();
            } else {
                let slots = &self.slots;
                self.index.retain(|&mut (_, s)| slots[s].is_some());
            }
        }
        r.map(|()| pushed)
    }

    /// Keeps only the flows for which `keep` holds; returns how many were
    /// dropped.
    pub fn retain(&mut self, keep: impl Fn(&FlowState) -> bool) -> usize {
        self.retain_entries(|e| keep(&e.state))
    }

    /// Removes the flows last updated before `t` (not refreshed by a
    /// RESYNC answer requested at `t`); returns how many.
    pub fn sweep_older(&mut self, t: Instant) -> usize {
        self.retain_entries(|e| e.updated >= t)
    }

    /// Removes every flow; returns how many there were.
    pub fn flush(&mut self) -> usize {
        let n = self.index.len();
        self.index.clear();
        self.free.clear();
        self.slots.clear();
        n
    }
}

/// Whether an index entry `(hash, slot)` names `key` (hash `h`).
fn names<'a>(
    slots: &'a [Option<ExternalEntry>],
    h: u64,
    key: &'a FlowKey,
) -> impl Fn(&(u64, usize)) -> bool + 'a {
    move |&(eh, s)| {
        eh == h
            && slots
                .get(s)
                .and_then(Option::as_ref)
                .is_some_and(|e| e.state.key == *key)
    }
}

/// `st` with its timeout reduced by the time since `updated`, but never to
/// zero (the flow would expire at once, before its packets refresh it).
fn aged(mut st: FlowState, updated: Instant, now: Instant) -> FlowState {
    let age = now.saturating_duration_since(updated).as_secs();
    let age = u32::try_from(age).unwrap_or(u32::MAX);
    st.timeout_secs = st.timeout_secs.saturating_sub(age).max(1);
    st
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftfw_dataplane::flow::{proto, TcpState, Tuple};
    use std::net::Ipv4Addr;
    use std::time::Duration;

    fn st(port: u16, state: TcpState) -> FlowState {
        FlowState {
            key: FlowKey {
                orig: Tuple::new(
                    Ipv4Addr::new(192, 0, 2, 1).into(),
                    Ipv4Addr::new(198, 51, 100, 1).into(),
                    proto::TCP,
                    port,
                    80,
                ),
                zone: 0,
            },
            tcp_state: state,
            status: 0,
            timeout_secs: 300,
            mark: 0,
            wscale: [0, 0],
            counters: Default::default(),
            extras: Default::default(),
        }
    }

    #[test]
    fn conntrackd_semantics() {
        let t0 = Instant::now();
        let mut c = ExternalCache::new(10);
        // UPDATE for an unknown flow creates it.
        c.apply(t0, FlowKind::Update, st(1, TcpState::Established));
        assert_eq!(c.len(), 1);
        // NEW replaces.
        c.apply(t0, FlowKind::New, st(1, TcpState::SynRecv));
        assert_eq!(
            c.get(&st(1, TcpState::None).key).map(|e| e.state.tcp_state),
            Some(TcpState::SynRecv)
        );
        // DESTROY removes; a second one is counted as unknown.
        c.apply(t0, FlowKind::Destroy, st(1, TcpState::Close));
        c.apply(t0, FlowKind::Destroy, st(1, TcpState::Close));
        assert!(c.is_empty());
        let s = c.stats();
        assert_eq!(
            (s.created, s.updated, s.destroyed, s.destroy_unknown),
            (1, 1, 1, 1)
        );
    }

    #[test]
    fn full_cache_refuses_new_flows_but_updates_known_ones() {
        let t0 = Instant::now();
        let mut c = ExternalCache::new(2);
        for p in 1..=3 {
            c.apply(t0, FlowKind::New, st(p, TcpState::Established));
        }
        assert_eq!((c.len(), c.stats().full), (2, 1));
        c.apply(t0, FlowKind::Update, st(1, TcpState::FinWait));
        assert_eq!(
            c.get(&st(1, TcpState::None).key).map(|e| e.state.tcp_state),
            Some(TcpState::FinWait)
        );
        assert_eq!(c.flush(), 2);
        assert!(c.is_empty());
    }

    #[test]
    fn snapshot_ages_timeouts_but_never_to_zero() {
        let t0 = Instant::now();
        let mut c = ExternalCache::new(4);
        c.apply(t0, FlowKind::New, st(1, TcpState::Established));
        let mut short = st(2, TcpState::TimeWait);
        short.timeout_secs = 5;
        c.apply(t0, FlowKind::New, short);
        let mut snap = c.snapshot(t0 + Duration::from_secs(10));
        snap.sort_by_key(|s| s.key.orig.src_port);
        assert_eq!(snap[0].timeout_secs, 290);
        assert_eq!(snap[1].timeout_secs, 1);
        let mut taken = c.take(t0 + Duration::from_secs(10));
        taken.sort_by_key(|s| s.key.orig.src_port);
        assert_eq!(taken, snap);
        assert!(c.is_empty());
    }

    /// A walk a few slots at a time while flows come and go between the
    /// pieces: every flow held throughout is seen exactly once, removed
    /// slots are reused, and the cache stays consistent.
    #[test]
    fn pages_see_every_flow_held_throughout_once() {
        let t0 = Instant::now();
        let mut c = ExternalCache::new(1000);
        for p in 0..300 {
            c.apply(t0, FlowKind::New, st(p, TcpState::Established));
        }
        let port = |e: &ExternalEntry| e.state.key.orig.src_port;
        let mut seen: Vec<u16> = Vec::new();
        let mut at = Some(0);
        let mut churn = 1000u16;
        while let Some(from) = at {
            let (entries, next) = c.page(from, 7);
            seen.extend(entries.map(port));
            at = next;
            // Flows 0..100 leave during the walk; new ones arrive (some
            // into freed slots behind the walk, some at its end).
            c.apply(t0, FlowKind::Destroy, st(churn % 100, TcpState::None));
            c.apply(t0, FlowKind::New, st(churn, TcpState::Established));
            c.apply(t0, FlowKind::New, st(churn + 5000, TcpState::Established));
            churn += 1;
        }
        let mut held: Vec<u16> = seen
            .iter()
            .copied()
            .filter(|p| (100..300).contains(p))
            .collect();
        held.sort_unstable();
        assert_eq!(held, (100..300).collect::<Vec<_>>(), "each exactly once");
        assert!(seen.iter().any(|&p| p >= 1000), "some new flows seen");
        // The cache is consistent: every index entry names its slot.
        assert_eq!(c.iter().count(), c.len());
        for e in c.iter() {
            assert_eq!(c.get(&e.state.key).map(port), Some(port(e)));
        }
        // A sweep and a retain free slots; new flows take them again.
        let slots = c.slots.len();
        let before = c.len();
        let kept = c.iter().filter(|e| port(e) >= 200).count();
        assert_eq!(c.retain(|s| s.key.orig.src_port >= 200), before - kept);
        assert_eq!(c.len(), kept);
        assert!(before - kept >= 50);
        for p in 2000..2050 {
            c.apply(t0, FlowKind::New, st(p, TcpState::Established));
        }
        assert_eq!(c.slots.len(), slots, "freed slots reused");
        assert_eq!(c.iter().count(), c.len());
    }

    /// A commit hands flows out in one walk over the slots: what it takes
    /// is gone from the index too, what it leaves (not picked, or after
    /// the sink failed) is still found, and freed slots are reused.
    #[test]
    fn commits_take_picked_flows_out_of_slots_and_index() {
        let t0 = Instant::now();
        let flow = |p: u16| {
            let mut s = st(0, TcpState::Established);
            s.key.orig.src_port = p;
            s
        };
        let mut c = ExternalCache::new(100);
        for p in 1000..1040 {
            c.apply(t0, FlowKind::New, flow(p));
        }
        // Without take: copies, nothing leaves.
        let mut got = Vec::new();
        let n = c.hand_out(
            t0,
            |_| true,
            false,
            |st| {
                got.push(st.key.orig.src_port);
                Ok::<(), ()>(())
            },
        );
        assert_eq!((n, got.len(), c.len()), (Ok(40), 40, 40));
        // Take the even ports.
        got.clear();
        let even = |st: &FlowState| st.key.orig.src_port.is_multiple_of(2);
        let n = c.hand_out(t0, even, true, |st| {
            got.push(st.key.orig.src_port);
            Ok::<(), ()>(())
        });
        assert_eq!((n, c.len()), (Ok(20), 20));
        assert!(got.iter().all(|p| p.is_multiple_of(2)));
        for p in 1000..1040u16 {
            assert_eq!(c.get(&flow(p).key).is_some(), !p.is_multiple_of(2), "{p}");
        }
        // A sink that fails on its third flow: two taken, the failed one
        // out as well (as an import error loses it), the rest kept.
        let mut calls = 0;
        let n = c.hand_out(
            t0,
            |_| true,
            true,
            |_| {
                calls += 1;
                if calls == 3 {
                    Err("full")
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!((n, c.len()), (Err("full"), 17));
        assert_eq!(
            c.iter().filter(|e| c.get(&e.state.key).is_some()).count(),
            17
        );
        // Freed slots are reused and found.
        c.apply(t0, FlowKind::New, flow(1000));
        assert!(c.get(&flow(1000).key).is_some());
        // Taking all leaves an empty cache that fills again.
        let n = c.hand_out(t0, |_| true, true, |_| Ok::<(), ()>(()));
        assert_eq!((n, c.len()), (Ok(18), 0));
        assert!(c.get(&flow(1001).key).is_none());
        c.apply(t0, FlowKind::New, flow(1001));
        assert_eq!(c.len(), 1);
        assert!(c.get(&flow(1001).key).is_some());
    }

    /// A bulk through many index growths, then updates, destroys and a
    /// retain: every flow is found in the slot that holds it, and a removed
    /// one is gone (the index names slots, the keys live in the slots).
    #[test]
    fn a_bulk_of_many_flows_stays_consistent_through_growth_and_removal() {
        let t0 = Instant::now();
        let flow = |i: u32| {
            let mut s = st(0, TcpState::Established);
            s.key.orig = Tuple::new(
                Ipv4Addr::from(0xcb00_7100 + i / 60_000).into(),
                Ipv4Addr::new(198, 51, 100, 1).into(),
                proto::TCP,
                u16::try_from(1024 + i % 60_000).unwrap_or(0),
                443,
            );
            s
        };
        let n = 200_000u32;
        let mut c = ExternalCache::new(n as usize);
        for i in 0..n {
            c.apply(t0, FlowKind::New, flow(i));
        }
        assert_eq!(c.len(), n as usize);
        assert_eq!(c.stats().created, u64::from(n));
        // Full: one more new flow is refused, a known one still updates.
        c.apply(t0, FlowKind::New, flow(n));
        assert_eq!((c.len(), c.stats().full), (n as usize, 1));
        for i in (0..n).step_by(3) {
            let mut s = flow(i);
            s.mark = i;
            c.apply(t0, FlowKind::Update, s);
        }
        for i in (0..n).step_by(5) {
            c.apply(t0, FlowKind::Destroy, flow(i));
        }
        let gone = |i: u32| i.is_multiple_of(5);
        assert_eq!(c.len(), (0..n).filter(|&i| !gone(i)).count());
        for i in 0..n {
            let got = c.get(&flow(i).key);
            if gone(i) {
                assert!(got.is_none(), "flow {i} destroyed");
            } else {
                let e = got.unwrap_or_else(|| panic!("flow {i} held"));
                assert_eq!(e.state.key, flow(i).key);
                assert_eq!(e.state.mark, if i.is_multiple_of(3) { i } else { 0 });
            }
        }
        // A retain removes through the index too.
        let before = c.len();
        let dropped = c.retain(|s| s.key.orig.src_port.is_multiple_of(2));
        assert_eq!(c.len(), before - dropped);
        assert!(dropped > 0);
        assert!(c
            .iter()
            .all(|e| e.state.key.orig.src_port.is_multiple_of(2)));
        for e in c.iter() {
            assert!(c.get(&e.state.key).is_some());
        }
        assert!(c.get(&flow(1).key).is_none(), "odd port removed");
        // Freed slots and index entries are taken again.
        c.apply(t0, FlowKind::New, flow(1));
        assert!(c.get(&flow(1).key).is_some());
        assert_eq!(c.iter().count(), c.len());
    }
}
