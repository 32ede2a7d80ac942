//! Helpers and expectations in the shard: a flow's helper (status bit
//! `HELPER`, name in its extras) and an expected flow's master (status bit
//! `EXPECTED`, master tuple in its extras). The expectation table itself is
//! the worker's ([`crate::helper::ExpectTable`]).

use crate::flow::{status, Dir, FlowKey, SeqAdj, Tuple};
use crate::helper::Helper;

use super::entry::{HAS_EXTRAS, ST_SEEN_REPLY};
use super::{NewFlow, Shard, TableFull};

/// Entry status bit: a helper is attached.
#[allow(clippy::cast_possible_truncation)]
pub(super) const ST_HELPER: u16 = status::HELPER as u16;
/// Entry status bit: the flow was expected (it is RELATED to a master).
#[allow(clippy::cast_possible_truncation)]
pub(super) const ST_EXPECTED: u16 = status::EXPECTED as u16;

/// Entry status bit: the flow's sequence numbers are adjusted (a helper
/// changed a payload's length).
#[allow(clippy::cast_possible_truncation)]
pub(super) const ST_SEQ_ADJ: u16 = status::SEQ_ADJUST as u16;

/// What a new flow carries besides its tuple: its helper, and the master
/// of an expected flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attach {
    /// The helper the accepting rule (or its port) gives the flow.
    pub helper: Option<Helper>,
    /// The master's original tuple, for a flow that matched an expectation.
    pub master: Option<Tuple>,
}

impl Attach {
    /// Whether there is nothing to attach.
    pub fn is_empty(&self) -> bool {
        self.helper.is_none() && self.master.is_none()
    }
}

impl Shard {
    /// [`Shard::confirm_at`] for a flow that may be translated (`nat`: its
    /// reply tuple) and carries `attach`; the flow's first delta carries
    /// both.
    pub fn confirm_attached(
        &mut self,
        now: u32,
        nf: &NewFlow,
        acl_gen: u16,
        level: crate::flow::SyncLevel,
        nat: Option<Tuple>,
        attach: Attach,
    ) -> Result<u32, TableFull> {
        self.confirm_inner(now, nf, acl_gen, level, nat, attach)
    }

    /// Records `attach` on the newly inserted flow at `idx`.
    pub(super) fn attach_helper(&mut self, idx: u32, attach: Attach) {
        let e = &mut self.slab.0[idx as usize];
        if attach.helper.is_some() {
            e.status |= ST_HELPER;
        }
        if attach.master.is_some() {
            e.status |= ST_EXPECTED;
        }
        e.flags |= HAS_EXTRAS;
        let x = self.extras.entry(idx).or_default();
        if let Some(h) = attach.helper {
            x.helper = Some(h.name().to_owned());
        }
        if attach.master.is_some() {
            x.master = attach.master;
        }
    }

    /// The helper of the flow at `idx`: one branch on the status bits for a
    /// flow without one.
    #[inline]
    pub fn helper(&self, idx: u32) -> Option<Helper> {
        let e = self.slab.0.get(idx as usize)?;
        if e.status & ST_HELPER == 0 {
            return None;
        }
        self.helper_slow(idx)
    }

    #[cold]
    fn helper_slow(&self, idx: u32) -> Option<Helper> {
        Helper::parse(self.extras.get(&idx)?.helper.as_deref()?)
    }

    /// The key of the flow at `idx`, if the slot holds one.
    pub fn key_at(&self, idx: u32) -> Option<FlowKey> {
        let e = self.slab.0.get(idx as usize)?;
        e.in_use().then_some(e.key)
    }

    /// The master's original tuple of an expected flow.
    pub fn master(&self, idx: u32) -> Option<Tuple> {
        let e = self.slab.0.get(idx as usize)?;
        if e.status & ST_EXPECTED == 0 {
            return None;
        }
        self.extras.get(&idx)?.master
    }

    /// Whether a packet in `dir` of the flow at `idx` is RELATED: the
    /// original direction of an expected flow until its first reply (as
    /// netfilter's `IP_CT_RELATED`).
    #[inline]
    pub(super) fn related_before_reply(&self, idx: u32, dir: Dir) -> bool {
        let e = &self.slab.0[idx as usize];
        dir == Dir::Original && e.status & (ST_EXPECTED | ST_SEEN_REPLY) == ST_EXPECTED
    }

    /// Whether a forwarded packet of the flow at `idx` needs the helper
    /// path: a helper reads it, or its sequence numbers move (one branch
    /// for other flows).
    #[inline]
    pub fn needs_helper_path(&self, idx: u32) -> bool {
        self.slab
            .0
            .get(idx as usize)
            .is_some_and(|e| e.status & (ST_HELPER | ST_SEQ_ADJ) != 0)
    }

    /// The sequence adjustment of the flow at `idx` (from a helper's
    /// rewrite, or replicated), if it has one.
    pub fn seq_adj(&self, idx: u32) -> Option<SeqAdj> {
        let e = self.slab.0.get(idx as usize)?;
        if e.status & ST_SEQ_ADJ == 0 {
            return None;
        }
        self.extras.get(&idx)?.seq_adj
    }

    /// Records that the segment of `dir` starting at `seq` of the flow at
    /// `idx` changed length by `off` bytes (see [`crate::nat::seqadj`]);
    /// a change is replicated (status bit SEQ_ADJUST and the adjustment,
    /// the NAT_SEQ_ADJ attribute). Returns whether it changed anything.
    pub fn set_seq_adj(&mut self, now: u32, idx: u32, dir: Dir, seq: u32, off: i32) -> bool {
        let Some(e) = self.slab.0.get_mut(idx as usize).filter(|e| e.in_use()) else {
            return false;
        };
        let x = self.extras.entry(idx).or_default();
        let mut adj = x.seq_adj.unwrap_or_default();
        let way = match dir {
            Dir::Original => &mut adj.orig,
            Dir::Reply => &mut adj.reply,
        };
        if !crate::nat::seqadj::set(way, seq, off) {
            return false;
        }
        x.seq_adj = Some(adj);
        e.status |= ST_SEQ_ADJ;
        e.flags |= HAS_EXTRAS;
        self.emit(now, idx, super::DeltaKind::Updated);
        true
    }

    /// `seg` with its acknowledgement number as the flow's receiver of
    /// `dir`'s data counts it (moved back by the other direction's
    /// adjustment), for the window check of a flow with SEQ_ADJUST.
    #[cold]
    pub(super) fn unadjusted_facts(
        &self,
        idx: u32,
        dir: Dir,
        seg: &crate::meta::TcpFacts,
    ) -> crate::meta::TcpFacts {
        let mut s = *seg;
        if let Some(adj) = self.seq_adj(idx) {
            let (_, other) = crate::nat::seqadj::ways(&adj, dir);
            s.ack = crate::nat::seqadj::ack_unadjusted(other, s.ack);
        }
        s
    }
}
