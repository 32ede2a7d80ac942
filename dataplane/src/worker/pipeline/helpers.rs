//! The pipeline's side of [`crate::helper`]: after a packet of a flow with
//! a helper is forwarded, the helper reads its payload and may add an
//! expectation; a new flow that matches one is RELATED (see
//! [`Pipeline::decide`]).
//!
//! Under NAT (the control connection is translated) the FTP helper
//! rewrites the announce to the translated address and port
//! ([`Pipeline::ftp`]), the expectation is for the translated tuple and
//! carries the translation the data connection follows
//! ([`crate::helper::ExpectNat`]); a rewrite that changes the payload's
//! length is recorded as the flow's sequence adjustment, applied to every
//! later packet of both directions ([`crate::nat::seqadj`]).

use std::collections::HashMap;
use std::net::IpAddr;

use crate::flow::{proto, Dir, FlowKey, Tuple};
use crate::helper::ftp::{self, Carry, Form, FtpAnnounce, Span, MAX_ANNOUNCE_TEXT};
use crate::helper::{ExpectNat, Expectation, Helper};
use crate::meta::{Fragment, PacketMeta};

use super::{NatRewrite, Pipeline};

/// Ports tried after the announced one when a translated announce's
/// tuple is already expected for another master.
const PORT_TRIES: u16 = 64;

/// Announces one segment is read for (a segment announces one
/// connection; four is plenty).
const MAX_ANNOUNCES: usize = 4;

/// One rewrite of announce text in a segment's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Edit {
    /// Offsets in the payload of the text replaced.
    start: usize,
    end: usize,
    /// The new text.
    text: [u8; MAX_ANNOUNCE_TEXT],
    len: usize,
}

/// The last rewritten segment of a direction, to rewrite a retransmission
/// of it the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rewritten {
    seq: u32,
    len: u32,
    edits: [Option<Edit>; MAX_ANNOUNCES],
}

/// Control-connection directions whose line state a worker keeps; a full
/// table is counted (`helper_state_full`) and the segment is read without
/// its carried line.
pub(super) const MAX_HELPER_STATE: usize = 1024;

/// The flow whose helper reads the packet being forwarded.
#[derive(Clone, Copy, Debug)]
pub(super) struct HelperRequest {
    idx: u32,
    dir: Dir,
    /// `None`: only the flow's sequence adjustment applies.
    helper: Option<Helper>,
}

/// Per control-connection direction, where the next segment starts and
/// its unfinished line. Keyed by slab index and direction; the flow key is
/// kept to notice a slot reused by another flow.
#[derive(Debug, Default)]
pub(super) struct HelperState {
    lines: HashMap<(u32, bool), (FlowKey, Carry, Option<Rewritten>)>,
    malformed: u64,
    mismatch: u64,
    full: u64,
    rewritten: u64,
    rewrite_failed: u64,
    seq_adjusted: u64,
}

impl Pipeline {
    /// Notes that the helper of the flow at `idx`, if it has one, must read
    /// the packet, or that its sequence numbers move (one branch for a flow
    /// with neither).
    #[inline]
    pub(super) fn request_helper(&mut self, idx: u32, dir: Dir) {
        if self.shard.needs_helper_path(idx) {
            self.helper_rq = Some(HelperRequest {
                idx,
                dir,
                helper: self.shard.helper(idx),
            });
        }
    }

    /// Runs the requested helper over the forwarded packet's payload
    /// (rewriting announces of a translated flow), then moves its sequence
    /// numbers if the flow has an adjustment. `false`: the packet must be
    /// dropped (an announce that had to be rewritten and could not be).
    pub(super) fn run_helper(
        &mut self,
        frame: &mut crate::port::Frame,
        meta: &mut PacketMeta,
    ) -> bool {
        let Some(rq) = self.helper_rq.take() else {
            return true;
        };
        let Some(master) = self.shard.key_at(rq.idx) else {
            return true;
        };
        if meta.fragment != Fragment::None {
            return true;
        }
        let end = usize::from(meta.l3_offset) + usize::from(meta.ip_len);
        match rq.helper {
            Some(h) if meta.tuple.proto != h.proto() => {}
            Some(Helper::Ftp) => {
                let len = meta.tcp.payload_len as usize;
                if let Some(start) = end.checked_sub(len).filter(|_| len > 0) {
                    if !self.ftp(rq, master, frame, meta, start) {
                        return false;
                    }
                }
            }
            Some(Helper::Tftp) => {
                let start = usize::from(meta.l4_offset) + 8;
                let payload = frame.get(start..end).unwrap_or_default();
                if rq.dir == Dir::Original {
                    self.tftp(master, meta, payload);
                }
            }
            None => {}
        }
        if meta.tuple.proto == proto::TCP {
            if let Some(adj) = self.shard.seq_adj(rq.idx) {
                // `meta.tcp.seq` stays as it arrived (the helper state and
                // the tracking are in the sender's own sequence space).
                if crate::nat::seqadj::adjust(frame, meta, &adj, rq.dir) == Some(true) {
                    self.helper_state.seq_adjusted += 1;
                }
            }
        }
        true
    }

    /// The FTP helper over a segment whose payload starts at frame offset
    /// `at`: finds announces, rewrites them under NAT, adds expectations.
    fn ftp(
        &mut self,
        rq: HelperRequest,
        master: FlowKey,
        frame: &mut crate::port::Frame,
        meta: &mut PacketMeta,
        at: usize,
    ) -> bool {
        let from_client = rq.dir == Dir::Original;
        let key = (rq.idx, from_client);
        let st = &mut self.helper_state;
        if st.lines.len() >= MAX_HELPER_STATE && !st.lines.contains_key(&key) {
            // Forget the state of flows that ended.
            let shard = &self.shard;
            st.lines
                .retain(|&(idx, _), (k, _, _)| shard.key_at(idx) == Some(*k));
        }
        let mut scratch = (Carry::default(), None);
        let (carry, last) = if st.lines.len() < MAX_HELPER_STATE || st.lines.contains_key(&key) {
            let (k, c, r) = st
                .lines
                .entry(key)
                .or_insert_with(|| (master, Carry::default(), None));
            if *k != master {
                *k = master;
                *c = Carry::default();
                *r = None;
            }
            (c, r)
        } else {
            st.full += 1;
            (&mut scratch.0, &mut scratch.1)
        };
        let seq = meta.tcp.seq;
        let plen = meta.tcp.payload_len;
        // A retransmission of the last rewritten segment is rewritten the
        // same way (the parser does not read it again).
        if let Some(r) = last.filter(|r| r.seq == seq && plen >= r.len) {
            let edits = r.edits;
            return self.apply_edits(rq, frame, meta, at, &edits, seq);
        }
        let mut found: [Option<(FtpAnnounce, Option<Span>)>; MAX_ANNOUNCES] = [None; MAX_ANNOUNCES];
        let mut n = 0;
        let Some(payload) = frame.get(at..at + plen as usize) else {
            return true;
        };
        let r = ftp::lines_spans(carry, seq, payload, from_client, |a, span| {
            if let Some(slot) = found.get_mut(n) {
                *slot = Some((a, span));
            }
            n += 1;
        });
        st.malformed += u64::from(r.malformed);
        // The translation this packet gets (the tuple it leaves with), if
        // the flow is translated.
        let leaves = match self.nat_rw {
            Some(NatRewrite::Packet(t)) => Some(t),
            _ => None,
        };
        let sender = meta.tuple.src_ip();
        let mut edits: [Option<Edit>; MAX_ANNOUNCES] = [None; MAX_ANNOUNCES];
        for (k, (a, span)) in found.into_iter().flatten().enumerate() {
            let addr = a.addr.unwrap_or(sender);
            if addr != sender {
                // Linux's rule: a client or server may only announce
                // itself, so no one opens a hole to a third host.
                self.helper_state.mismatch += 1;
                continue;
            }
            let Some(l) = leaves else {
                let tuple = Tuple::new(meta.tuple.dst_ip(), addr, proto::TCP, 0, a.port);
                self.expect_insert(master, tuple, Helper::Ftp, None);
                continue;
            };
            match self.translate_announce(master, meta, &l, a, span) {
                Some((tuple, nat, edit)) => {
                    if let (Some(e), Some(slot)) = (edit, edits.get_mut(k)) {
                        *slot = Some(e);
                    }
                    self.expect_insert(master, tuple, Helper::Ftp, nat);
                }
                None => self.helper_state.rewrite_failed += 1,
            }
        }
        if edits.iter().all(Option::is_none) {
            return true;
        }
        if let Some((_, _, r)) = self.helper_state.lines.get_mut(&key) {
            *r = Some(Rewritten {
                seq,
                len: plen,
                edits,
            });
        }
        self.apply_edits(rq, frame, meta, at, &edits, seq)
    }

    /// The translated announce of `a` in a segment of a translated control
    /// connection that leaves as `l`: the expected tuple (to the address
    /// and port the other end will see), the translation the data
    /// connection follows, and the text to write if it changed. `None`
    /// (counted by the caller): the text had to change but its line began
    /// in an earlier segment, or no port is free.
    fn translate_announce(
        &mut self,
        master: FlowKey,
        meta: &PacketMeta,
        l: &Tuple,
        a: FtpAnnounce,
        span: Option<Span>,
    ) -> Option<(Tuple, Option<ExpectNat>, Option<Edit>)> {
        let arrived = &meta.tuple;
        let to_addr: IpAddr = l.src_ip();
        let mut tuple = Tuple::new(l.dst_ip(), to_addr, proto::TCP, 0, a.port);
        let nat = (arrived.src != l.src || arrived.dst != l.dst).then_some(ExpectNat {
            reply_src: arrived.src,
            reply_src_port: a.port,
            reply_dst: arrived.dst,
        });
        if nat.is_some() {
            // Another master's announce may already wait at this
            // translated address and port: move to the next free one.
            let now = self.now;
            let mut port = a.port;
            let free = self.expect.with(|t| {
                for _ in 0..PORT_TRIES {
                    tuple.dst_port = port;
                    if !t.clashes(now, &tuple, &master) {
                        return true;
                    }
                    port = port.checked_add(1).unwrap_or(1024);
                }
                false
            });
            if !free {
                return None;
            }
        }
        let changed = tuple.dst_port != a.port || a.addr.is_some_and(|x| x != to_addr);
        if !changed {
            return Some((tuple, nat, None));
        }
        let span = span?;
        let mut text = [0u8; MAX_ANNOUNCE_TEXT];
        let addr = match span.form {
            Form::Epsv(_) => None,
            _ => Some(to_addr),
        };
        let len = ftp::write_announce(span.form, addr, tuple.dst_port, &mut text)?;
        Some((
            tuple,
            nat,
            Some(Edit {
                start: span.start,
                end: span.end,
                text,
                len,
            }),
        ))
    }

    /// Writes `edits` into the payload at frame offset `at` (last first,
    /// so earlier offsets hold) and records the change in length as the
    /// flow's sequence adjustment at `seq`. `false` (counted): the frame
    /// could not take it (it would outgrow the buffer).
    fn apply_edits(
        &mut self,
        rq: HelperRequest,
        frame: &mut crate::port::Frame,
        meta: &mut PacketMeta,
        at: usize,
        edits: &[Option<Edit>; MAX_ANNOUNCES],
        seq: u32,
    ) -> bool {
        let mut order: [Option<Edit>; MAX_ANNOUNCES] = *edits;
        order.sort_by_key(|e| std::cmp::Reverse(e.map_or(0, |e| e.start)));
        let mut total = 0i32;
        for e in order.into_iter().flatten() {
            let new = &e.text[..e.len];
            match crate::nat::seqadj::replace_payload(
                frame.vec_mut(),
                meta,
                at + e.start,
                e.end - e.start,
                new,
                crate::port::FRAME_CAPACITY,
            ) {
                Some(d) => {
                    total += d;
                    self.helper_state.rewritten += 1;
                }
                None => {
                    self.helper_state.rewrite_failed += 1;
                    return false;
                }
            }
        }
        let now = self.now;
        self.shard.set_seq_adj(now, rq.idx, rq.dir, seq, total);
        true
    }

    /// A TFTP read (1) or write (2) request expects the server's answer,
    /// from any port, to the client's port. Under NAT the answer comes to
    /// the translated address and port (the request leaves translated)
    /// and follows the request's translation back to the client.
    fn tftp(&mut self, master: FlowKey, meta: &PacketMeta, payload: &[u8]) {
        match payload {
            [0, 1 | 2, ..] => {
                let a = &meta.tuple;
                let l = match self.nat_rw {
                    Some(NatRewrite::Packet(t)) => t,
                    _ => *a,
                };
                let tuple = Tuple::new(l.dst_ip(), l.src_ip(), proto::UDP, 0, l.src_port);
                let nat = (l != *a).then_some(ExpectNat {
                    reply_src: a.src,
                    reply_src_port: a.src_port,
                    reply_dst: a.dst,
                });
                self.expect_insert(master, tuple, Helper::Tftp, nat);
            }
            [0, 3..=6, ..] => {}
            _ => self.helper_state.malformed += 1,
        }
    }

    fn expect_insert(
        &mut self,
        master: FlowKey,
        tuple: Tuple,
        helper: Helper,
        nat: Option<ExpectNat>,
    ) {
        let e = Expectation {
            master,
            tuple,
            helper,
            expires: self.now.saturating_add(helper.expect_timeout()),
            nat,
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
    /// connection is expected); its `nat` is the translation it follows.
    #[cold]
    pub(super) fn take_expected(&mut self, now: u32, t: &Tuple, zone: u16) -> Option<Expectation> {
        let e = self.expect.with(|x| x.take(now, t, zone));
        if e.is_some() {
            self.counters.expectations_matched += 1;
        }
        e
    }

    /// Routed mode: whether a packet to one of the firewall's addresses
    /// opens a connection a helper announced there (an active-mode FTP
    /// data connection to a masqueraded client): it is then routed, not
    /// taken as local. One atomic load while nothing is expected.
    pub(in crate::worker) fn expects(&self, now: u32, meta: &PacketMeta, zone: u16) -> bool {
        !self.expect.is_empty() && self.expect.with(|t| t.expects(now, &meta.tuple, zone))
    }

    /// The reply tuple of a new flow `orig` that follows its master's
    /// translation `n` (see [`crate::nat::alloc::follow`]); `Err` (counted
    /// as `nat_no_port`) when no source port works.
    pub(super) fn follow_master(
        &mut self,
        orig: &Tuple,
        n: &ExpectNat,
        zone: u16,
    ) -> Result<Option<Tuple>, ()> {
        let mut reply = Tuple {
            src: n.reply_src,
            dst: n.reply_dst,
            src_port: n.reply_src_port,
            dst_port: orig.src_port,
            proto: orig.proto,
            v6: orig.v6,
        };
        if reply == orig.reply() {
            return Ok(None);
        }
        let shard = &self.shard;
        let taken = |t: &Tuple| shard.reply_taken(t, zone);
        match crate::nat::alloc::follow(orig, reply, &self.nat_steering, &taken) {
            Some(r) => {
                reply = r;
                self.counters.nat_flows += 1;
                Ok(Some(reply))
            }
            None => {
                self.counters.nat_no_port += 1;
                Err(())
            }
        }
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
        c.helper_rewritten = self.helper_state.rewritten;
        c.helper_rewrite_failed = self.helper_state.rewrite_failed;
        c.seq_adjusted = self.helper_state.seq_adjusted;
    }
}
