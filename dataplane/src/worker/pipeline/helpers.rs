//! The pipeline's side of [`crate::helper`]: after a packet of a flow with
//! a helper is forwarded, the helper reads its payload and may add an
//! expectation; a new flow that matches one is RELATED (see
//! [`Pipeline::decide`]).

use std::collections::HashMap;

use crate::flow::{proto, Dir, FlowKey, Tuple};
use crate::helper::ftp::{self, Carry, FtpAnnounce};
use crate::helper::{Expectation, Helper};
use crate::meta::{Fragment, PacketMeta};

use super::Pipeline;

/// Control-connection directions whose line state a worker keeps; a full
/// table is counted (`helper_state_full`) and the segment is read without
/// its carried line.
pub(super) const MAX_HELPER_STATE: usize = 1024;

/// The flow whose helper reads the packet being forwarded.
#[derive(Clone, Copy, Debug)]
pub(super) struct HelperRequest {
    idx: u32,
    dir: Dir,
    helper: Helper,
}

/// Per control-connection direction, where the next segment starts and
/// its unfinished line. Keyed by slab index and direction; the flow key is
/// kept to notice a slot reused by another flow.
#[derive(Debug, Default)]
pub(super) struct HelperState {
    lines: HashMap<(u32, bool), (FlowKey, Carry)>,
    malformed: u64,
    mismatch: u64,
    full: u64,
}

impl Pipeline {
    /// Notes that the helper of the flow at `idx`, if it has one, must read
    /// the packet (one branch for a flow without one).
    #[inline]
    pub(super) fn request_helper(&mut self, idx: u32, dir: Dir) {
        if let Some(helper) = self.shard.helper(idx) {
            self.helper_rq = Some(HelperRequest { idx, dir, helper });
        }
    }

    /// Runs the requested helper over the forwarded packet's payload.
    pub(super) fn run_helper(&mut self, frame: &[u8], meta: &PacketMeta) {
        let Some(rq) = self.helper_rq.take() else {
            return;
        };
        let Some(master) = self.shard.key_at(rq.idx) else {
            return;
        };
        if meta.fragment != Fragment::None || meta.tuple.proto != rq.helper.proto() {
            return;
        }
        let end = usize::from(meta.l3_offset) + usize::from(meta.ip_len);
        match rq.helper {
            Helper::Ftp => {
                let len = meta.tcp.payload_len as usize;
                let Some(payload) = end.checked_sub(len).and_then(|s| frame.get(s..end)) else {
                    return;
                };
                if !payload.is_empty() {
                    self.ftp(rq, master, meta, payload);
                }
            }
            Helper::Tftp => {
                let start = usize::from(meta.l4_offset) + 8;
                let payload = frame.get(start..end).unwrap_or_default();
                if rq.dir == Dir::Original {
                    self.tftp(master, meta, payload);
                }
            }
        }
    }

    fn ftp(&mut self, rq: HelperRequest, master: FlowKey, meta: &PacketMeta, payload: &[u8]) {
        let from_client = rq.dir == Dir::Original;
        let key = (rq.idx, from_client);
        let st = &mut self.helper_state;
        if st.lines.len() >= MAX_HELPER_STATE && !st.lines.contains_key(&key) {
            // Forget the state of flows that ended.
            let shard = &self.shard;
            st.lines
                .retain(|&(idx, _), (k, _)| shard.key_at(idx) == Some(*k));
        }
        let mut scratch = Carry::default();
        let carry = if st.lines.len() < MAX_HELPER_STATE || st.lines.contains_key(&key) {
            let (k, c) = st
                .lines
                .entry(key)
                .or_insert_with(|| (master, Carry::default()));
            if *k != master {
                *k = master;
                *c = Carry::default();
            }
            c
        } else {
            st.full += 1;
            &mut scratch
        };
        let mut found: [Option<FtpAnnounce>; 4] = [None; 4];
        let mut n = 0;
        let r = ftp::lines(carry, meta.tcp.seq, payload, from_client, |a| {
            // A segment announces one connection; four is plenty.
            if let Some(slot) = found.get_mut(n) {
                *slot = Some(a);
            }
            n += 1;
        });
        st.malformed += u64::from(r.malformed);
        let sender = meta.tuple.src_ip();
        for a in found.into_iter().flatten() {
            let addr = a.addr.unwrap_or(sender);
            if addr != sender {
                // Linux's rule: a client or server may only announce
                // itself, so no one opens a hole to a third host.
                self.helper_state.mismatch += 1;
                continue;
            }
            let tuple = Tuple::new(meta.tuple.dst_ip(), addr, proto::TCP, 0, a.port);
            self.expect_insert(master, tuple, Helper::Ftp);
        }
    }

    /// A TFTP read (1) or write (2) request expects the server's answer,
    /// from any port, to the client's port.
    fn tftp(&mut self, master: FlowKey, meta: &PacketMeta, payload: &[u8]) {
        match payload {
            [0, 1 | 2, ..] => {
                let t = &meta.tuple;
                let tuple = Tuple::new(t.dst_ip(), t.src_ip(), proto::UDP, 0, t.src_port);
                self.expect_insert(master, tuple, Helper::Tftp);
            }
            [0, 3..=6, ..] => {}
            _ => self.helper_state.malformed += 1,
        }
    }

    fn expect_insert(&mut self, master: FlowKey, tuple: Tuple, helper: Helper) {
        let e = Expectation {
            master,
            tuple,
            helper,
            expires: self.now.saturating_add(helper.expect_timeout()),
        };
        let now = self.now;
        let (inserted, expired) = self.expect.with(|t| {
            let before = t.stats().expired;
            let ok = t.insert(now, e);
            (ok, t.stats().expired - before)
        });
        self.counters.expectations_expired += expired;
        if inserted {
            self.counters.expectations_created += 1;
        } else {
            self.counters.expectations_table_full += 1;
        }
    }

    /// Takes the expectation a new flow matches (called only while some
    /// connection is expected).
    #[cold]
    pub(super) fn take_expected(&mut self, now: u32, t: &Tuple, zone: u16) -> Option<Expectation> {
        let e = self.expect.with(|x| x.take(now, t, zone));
        if e.is_some() {
            self.counters.expectations_matched += 1;
        }
        e
    }

    /// The waiting expectations at second `now`, each with the seconds it
    /// has left (the console's `expect list`).
    pub fn expectations(&self, now: u32) -> Vec<(Expectation, u32)> {
        self.expect.with(|t| {
            t.iter()
                .filter(|e| e.expires > now)
                .map(|e| (*e, e.expires - now))
                .collect()
        })
    }

    /// Removes expectations that timed out (counted by the worker that
    /// finds them) and copies the helper counters into the worker counters.
    pub(super) fn sync_helper_counters(&mut self) {
        if !self.expect.is_empty() {
            let now = self.now;
            self.counters.expectations_expired += self.expect.with(|t| t.expire(now)) as u64;
        }
        let c = &mut self.counters;
        c.helper_malformed = self.helper_state.malformed;
        c.helper_address_mismatch = self.helper_state.mismatch;
        c.helper_state_full = self.helper_state.full;
    }
}
