//! Console and replication operations on a shard: listing, chunked export,
//! upsert and import of complete flow states, and removal.

use crate::flow::{Counters, Dir, Extras, FlowExtras, FlowKey, FlowState};

use super::super::tcp::TcpConn;
use super::super::wheel::Links;
use super::entry::{empty_entry, split_count, Entry, Wide, HAS_EXTRAS, IN_USE, ST_CONFIRMED};
use super::{flow_hash, DeltaKind, Shard, TableFull};

impl Shard {
    /// The full state of the flow at `idx` as of second `now`.
    pub fn flow_state(&self, now: u32, idx: u32) -> Option<FlowState> {
        let e = self.slab.0.get(idx as usize).filter(|e| e.in_use())?;
        Some(FlowState {
            key: e.key,
            tcp_state: e.tcp.state(),
            status: u32::from(e.status),
            timeout_secs: e.expires.saturating_sub(now),
            mark: self.mark_of(idx),
            wscale: [e.tcp.wscale(Dir::Original), e.tcp.wscale(Dir::Reply)],
            counters: self.counters_of(idx, e),
            extras: self.extras_of(idx).map(Extras::from).unwrap_or_default(),
        })
    }

    /// The flow's [`Wide`] record, if it has one.
    fn wide_of(&self, idx: u32) -> Option<&Wide> {
        if self.wide.is_empty() {
            None
        } else {
            self.wide.get(&idx)
        }
    }

    /// The conntrack mark of the flow at `idx` (0: none).
    pub(super) fn mark_of(&self, idx: u32) -> u32 {
        self.wide_of(idx).map_or(0, |w| w.mark)
    }

    /// The full counters of the flow at `idx` (entry `e`): the entry's low
    /// bits plus the carries.
    fn counters_of(&self, idx: u32, e: &Entry) -> [Counters; 2] {
        let w = self.wide_of(idx).copied().unwrap_or_default();
        [0, 1].map(|d| Counters {
            packets: w.packets[d] + u64::from(e.packets[d]),
            bytes: w.bytes[d] + u64::from(e.bytes[d]),
        })
    }

    /// Sets the mark of the flow at `idx`, and with `counters` its
    /// counters too (a flow imported whole).
    fn set_wide(&mut self, idx: u32, mark: u32, counters: Option<&[Counters; 2]>) {
        let mut w = self.wide_of(idx).copied().unwrap_or_default();
        w.mark = mark;
        if let Some(c) = counters {
            let e = &mut self.slab.0[idx as usize];
            for (d, c) in c.iter().enumerate() {
                let (p, b, wp, wb) = split_count(c.packets, c.bytes);
                (e.packets[d], e.bytes[d], w.packets[d], w.bytes[d]) = (p, b, wp, wb);
            }
        }
        if w == Wide::default() {
            if !self.wide.is_empty() {
                self.wide.remove(&idx);
            }
        } else {
            self.wide.insert(idx, w);
        }
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

    /// [`Shard::upsert`] (`replicate`) or [`Shard::import`] of many flows;
    /// returns how many went in (the rest were refused: table full). The
    /// index bucket of the flow a few places ahead is prefetched, so that
    /// in a bulk (a takeover's commit of a million flows into an empty
    /// table) the lookups' cache misses overlap instead of coming one
    /// after another.
    pub fn upsert_many(&mut self, now: u32, states: &[FlowState], replicate: bool) -> usize {
        const AHEAD: usize = 8;
        for st in states.iter().take(AHEAD) {
            self.index.prefetch(flow_hash(&st.key.orig, st.key.zone));
        }
        let mut done = 0;
        for (i, st) in states.iter().enumerate() {
            if let Some(next) = states.get(i + AHEAD) {
                self.index
                    .prefetch(flow_hash(&next.key.orig, next.key.zone));
            }
            let r = if replicate {
                self.upsert(now, st)
            } else {
                self.import(now, st)
            };
            done += usize::from(r.is_ok());
        }
        done
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
        let longest = self.cfg.timeouts.longest();
        if st.timeout_secs > longest {
            self.stats.timeouts_clamped += 1;
        }
        let expires = now.saturating_add(st.timeout_secs.min(longest));
        // The reply tuple goes to the NAT slot; the side table holds the
        // rest.
        let reply = st.extras.reply;
        let side = FlowExtras {
            reply: None,
            ..(*st.extras).clone()
        };
        let has_extras = !side.is_empty();
        // Whether the side table holds extras for the slot (a replaced
        // flow that had some; a fresh slot never has).
        let mut had_extras = false;
        let (idx, kind) = if let Some(idx) = self.lookup(&st.key) {
            let e = &mut self.slab.0[idx as usize];
            had_extras = e.has_extras();
            let earlier = expires < e.expires;
            e.tcp = conn;
            e.status = status16;
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
                status: status16,
                flags: if has_extras {
                    IN_USE | HAS_EXTRAS
                } else {
                    IN_USE
                },
                ..empty_entry()
            };
            (self.insert_entry(now, entry)?, DeltaKind::Created)
        };
        // An update keeps the flow's own counters; a new flow takes the
        // peer's.
        let counters = (kind == DeltaKind::Created).then_some(&st.counters);
        self.set_wide(idx, st.mark, counters);
        if has_extras {
            self.extras.insert(idx, side);
        } else if had_extras {
            self.extras.remove(&idx);
        }
        self.set_nat(idx, reply);
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
