//! The per-packet pipeline a worker runs to completion:
//! `parse -> conntrack -> ACL (only when the flow's verdict is not cached) -> decision`.
//!
//! Kept apart from the worker loop so the benchmark and tests can drive it
//! directly on one thread.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::acl::{self, AclInput};
use crate::conntrack::{Shard, Track};
use crate::flow::{proto, CtState, Tuple};
use crate::meta::{Fragment, PacketMeta};
use crate::packet;
use crate::port::PacketBuf;

use super::counters::WorkerCounters;

/// The rule set workers classify with, swapped whole on reload.
#[derive(Debug)]
pub struct ActiveRules {
    /// Bumped on every successful reload; flows remember the generation
    /// they were last checked against and are re-checked when it changes.
    pub generation: u16,
    /// The compiled classifier.
    pub classifier: acl::Classifier,
}

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Send it out of the bridge peer port.
    Forward,
    /// Drop it.
    Drop,
    /// Drop it and answer with a TCP RST or ICMP unreachable.
    Reject,
}

/// One `log` rule hit, handed to the control thread to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Worker that saw the packet.
    pub worker: u16,
    /// Index of the log rule.
    pub rule: u32,
    /// Input port index.
    pub in_port: u16,
    /// The packet's tuple.
    pub tuple: Tuple,
    /// Its conntrack state.
    pub ct: CtState,
    /// What finally happened to it.
    pub decision: Decision,
}

/// The pipeline state one worker owns.
#[derive(Debug)]
pub struct Pipeline {
    /// Worker number (for log records).
    pub worker: u16,
    /// The worker's conntrack shard.
    pub shard: Shard,
    /// The worker's counters.
    pub counters: WorkerCounters,
    logs: Option<Arc<ArrayQueue<LogRecord>>>,
    /// The flow slot of the packet last decided (`u32::MAX`: none) and
    /// whether that packet created it (for deferring first packets).
    last_flow: (u32, bool),
}

impl Pipeline {
    /// A pipeline over `shard`; log records go to `logs` if given.
    pub fn new(worker: u16, shard: Shard, logs: Option<Arc<ArrayQueue<LogRecord>>>) -> Pipeline {
        Pipeline {
            worker,
            shard,
            counters: WorkerCounters::default(),
            logs,
            last_flow: (u32::MAX, false),
        }
    }

    /// Parses a frame into `meta`; returns whether it parsed.
    #[inline]
    pub fn parse(frame: &[u8], meta: &mut PacketMeta) -> bool {
        match packet::parse_frame(frame) {
            Ok(m) => {
                *meta = m;
                true
            }
            Err(_) => false,
        }
    }

    /// Decides a frame that was already parsed (`parsed` false: it did not
    /// parse and is dropped as malformed). `hint` is what
    /// [`Shard::warm`](crate::conntrack::Shard::warm) returned for it, or
    /// `u32::MAX`. Bounded work: at most two table probes and one
    /// classification; no allocation.
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &mut self,
        now: u32,
        rules: &ActiveRules,
        in_port: u16,
        zone: u16,
        parsed: bool,
        meta: &PacketMeta,
        hint: u32,
    ) -> Decision {
        self.last_flow = (u32::MAX, false);
        if !parsed {
            self.counters.malformed += 1;
            return Decision::Drop;
        }
        if !meta.is_ip() || is_link_control(meta) {
            self.counters.non_ip_passed += 1;
            return Decision::Forward;
        }
        if meta.fragment == Fragment::Later {
            // No L4 header: classified by addresses and protocol alone.
            self.counters.fragments += 1;
            return self.classify(rules, in_port, zone, meta, CtState::New);
        }
        match self.shard.track_hinted(now, meta, zone, hint) {
            Track::Established { idx, .. } | Track::Ignored { idx } => {
                self.last_flow = (idx, false);
                if self.shard.acl_checked(idx, rules.generation) {
                    self.counters.fast_path += 1;
                    return Decision::Forward;
                }
                let d = self.classify(rules, in_port, zone, meta, CtState::Established);
                if d == Decision::Forward {
                    self.shard.set_acl_gen(idx, rules.generation);
                }
                d
            }
            Track::New(nf) => {
                let d = self.classify(rules, in_port, zone, meta, CtState::New);
                if d != Decision::Forward {
                    return d;
                }
                match self.shard.confirm(now, &nf, rules.generation) {
                    Ok(idx) => {
                        self.last_flow = (idx, true);
                        Decision::Forward
                    }
                    // Counted by the shard as table_full.
                    Err(_) => Decision::Drop,
                }
            }
            Track::Related { .. } => self.classify(rules, in_port, zone, meta, CtState::Related),
            Track::Invalid(_) => self.classify(rules, in_port, zone, meta, CtState::Invalid),
        }
    }

    /// The flow slot of the packet last given to [`Pipeline::decide`]
    /// (`u32::MAX`: none) and whether that packet created the flow.
    pub fn last_flow(&self) -> (u32, bool) {
        self.last_flow
    }

    /// The benchmark's null pipeline: forward anything that parsed.
    pub fn forward_parsed(&mut self, parsed: bool) -> Decision {
        if parsed {
            Decision::Forward
        } else {
            self.counters.malformed += 1;
            Decision::Drop
        }
    }

    fn classify(
        &mut self,
        rules: &ActiveRules,
        in_port: u16,
        zone: u16,
        meta: &PacketMeta,
        ct: CtState,
    ) -> Decision {
        let v = rules.classifier.classify(&AclInput {
            in_port,
            zone,
            tuple: &meta.tuple,
            ct,
        });
        let d = match v.action {
            acl::Action::Accept => {
                self.counters.accepted += 1;
                Decision::Forward
            }
            acl::Action::Drop => {
                self.counters.dropped_by_rule += 1;
                Decision::Drop
            }
            acl::Action::Reject => Decision::Reject,
        };
        if let Some(rule) = v.log {
            self.counters.logged += 1;
            if let Some(q) = &self.logs {
                let rec = LogRecord {
                    worker: self.worker,
                    rule,
                    in_port,
                    tuple: meta.tuple,
                    ct,
                    decision: d,
                };
                if q.push(rec).is_err() {
                    self.counters.log_ring_full += 1;
                }
            }
        }
        d
    }

    /// Writes the answer to a rejected frame into `out`; counts the outcome.
    /// Returns whether there is an answer to send.
    pub fn build_reject(&mut self, frame: &[u8], meta: &PacketMeta, out: &mut PacketBuf) -> bool {
        out.data.clear();
        out.data.resize(crate::port::FRAME_CAPACITY, 0);
        let answer = if meta.tuple.proto == proto::TCP {
            packet::tcp_rst(frame, meta, &mut out.data)
        } else {
            packet::icmp_unreachable(frame, meta, &mut out.data)
        };
        match answer {
            Ok(n) => {
                out.data.truncate(n);
                self.counters.rejected += 1;
                true
            }
            Err(_) => {
                out.data.clear();
                self.counters.rejected += 1;
                self.counters.reject_failed += 1;
                false
            }
        }
    }

    /// Copies the shard's counters into the worker counters.
    pub fn sync_counters(&mut self) {
        let s = self.shard.stats();
        let c = &mut self.counters;
        c.invalid = s.invalid;
        c.related = s.related;
        c.table_full = s.table_full;
        c.early_drops = s.early_drops;
        c.deltas = s.deltas;
        c.ring_full = s.ring_full;
        c.flows = self.shard.len() as u64;
        c.capacity = self.shard.capacity() as u64;
        c.flows_created = s.created;
        c.flows_destroyed = s.destroyed;
        c.flows_expired = s.expired;
    }
}

/// ICMPv6 neighbour/router discovery and MLD: passed like ARP in a bridge.
fn is_link_control(meta: &PacketMeta) -> bool {
    meta.tuple.v6
        && meta.tuple.proto == proto::ICMPV6
        && meta.icmp_error.is_none()
        && crate::conntrack::l4::icmpv6_is_link_control(meta.tuple.icmp_type())
}
