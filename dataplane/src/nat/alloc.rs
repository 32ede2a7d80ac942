//! Choosing a new flow's translation so that its reply finds it.
//!
//! A translated flow is one shard entry reached by two tuples: the
//! original and the translated reply. Both must arrive at the worker that
//! owns the entry. AF_PACKET fanout and `mem` ports steer a frame by
//! [`steering_hash`](crate::port::steer::steering_hash), symmetric in the
//! tuple; so the reply reaches the owner exactly when
//! `worker_of(reply) == worker_of(original)`. The allocator keeps the
//! client's port at one of the rule's addresses if it can, else walks
//! candidate source ports (or ICMP identifiers) spread over the rule's
//! range, in a sequence that depends on the flow and the address, and
//! takes the first whose reply tuple
//!
//! 1. steers to the original's worker (for `workers` workers),
//! 2. with cluster buckets on, falls in the original's bucket (so one node
//!    owns both directions whatever the bucket map becomes), and
//! 3. is not in use in this shard (`taken`).
//!
//! Uniqueness across workers follows from 1: a tuple that another worker's
//! flow uses steers to that worker, so it cannot pass 1 here. The steering
//! hash covers ports for port-carrying protocols and the identifier for
//! IPv4 ICMP echo; for other protocols (GRE...), condition 1 is met or not
//! by the address alone, and the allocator tries the rule's other
//! addresses.

use crate::buckets::bucket_of_tuple;
use crate::flow::{has_ports, Tuple};
use crate::port::steer::worker_of;

use super::{NatKind, Target};

/// Source ports (and ICMP identifiers) chosen when a rule names none.
pub const DEFAULT_PORTS: (u16, u16) = (1024, 65535);
/// Addresses of a range tried for one flow.
pub const MAX_ADDRS: u32 = 16;
/// Candidate reply tuples looked up in the shard per address, at most (as
/// Linux bounds its search): a saturated range costs bounded work.
pub const MAX_PROBES: u32 = 128;

/// Step between the candidate ports of one walk (odd, so the walk's low
/// bits cycle; large, so its candidates spread over the range).
const PORT_STRIDE: u32 = 0x9e37_79b1;
/// Step between the walks of a flow's addresses.
const ADDR_STRIDE: u32 = 0x85eb_ca6b;

/// Where flows are steered: what the reply tuple must agree with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Steering {
    /// Workers sharing the ports (fanout group members); 1: any.
    pub workers: u16,
    /// Cluster buckets (0: no cluster).
    pub buckets: u32,
}

impl Steering {
    /// Whether a flow with original tuple `orig` and reply tuple `reply`
    /// is reached on the same worker (and bucket) from both sides.
    #[inline]
    pub fn same_owner(&self, orig: &Tuple, reply: &Tuple) -> bool {
        let w = usize::from(self.workers);
        (w <= 1 || worker_of(reply, w) == worker_of(orig, w))
            && (self.buckets == 0
                || bucket_of_tuple(reply, self.buckets) == bucket_of_tuple(orig, self.buckets))
    }
}

/// A chosen translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The flow's reply tuple after translation.
    pub reply: Tuple,
    /// Whether the source was translated (address or port).
    pub src: bool,
    /// Whether the destination was translated.
    pub dst: bool,
}

/// A 32-bit mix of the original tuple: where the walk starts.
fn start_of(t: &Tuple) -> u32 {
    let h = crate::conntrack::l4::symmetric_hash(t);
    let b = h.to_le_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) ^ u32::from_le_bytes([b[4], b[5], b[6], b[7]])
}

fn v4(t: &mut [u8; 16], a: u32) {
    t[..4].copy_from_slice(&a.to_be_bytes());
}

/// Chooses the translation of a new flow with original tuple `orig` to
/// `rule` (a rule's [`Target`]); `taken` says whether a reply tuple is already in use in this
/// shard. `None`: no address and port of the range satisfies the
/// conditions (the flow is dropped and counted). Bounded: at most
/// [`MAX_ADDRS`] addresses, each with a walk of at most `64 x workers x
/// buckets` ports of which at most [`MAX_PROBES`] are looked up.
pub fn choose(
    rule: &Target,
    orig: &Tuple,
    steer: &Steering,
    taken: &dyn Fn(&Tuple) -> bool,
) -> Option<Choice> {
    let start = start_of(orig);
    let lo = u32::from(rule.addr_lo);
    let count = rule.addr_count();
    match rule.kind {
        NatKind::Dst => {
            let mut out = *orig;
            v4(&mut out.dst, lo + start % count);
            if let Some(p) = rule.ports {
                if has_ports(orig.proto) {
                    let span = u32::from(p.hi - p.lo) + 1;
                    out.dst_port = p.lo + u16::try_from(start % span).unwrap_or(0);
                }
            }
            let reply = out.reply();
            if steer.same_owner(orig, &reply) && !taken(&reply) {
                return Some(Choice {
                    reply,
                    src: false,
                    dst: true,
                });
            }
            // The reply would reach another worker (or clashes): remap the
            // source port too, as Linux does on a clash.
            let (plo, phi) = DEFAULT_PORTS;
            walk_ports(orig, out, plo, phi, start, steer, taken).map(|reply| Choice {
                reply,
                src: true,
                dst: true,
            })
        }
        NatKind::Src | NatKind::Masquerade => {
            let (plo, phi) = rule.ports.map_or(DEFAULT_PORTS, |p| (p.lo, p.hi));
            let translated = |k: u32| {
                let mut out = *orig;
                v4(&mut out.src, lo + (start.wrapping_add(k)) % count);
                out
            };
            let found = |reply| {
                Some(Choice {
                    reply,
                    src: true,
                    dst: false,
                })
            };
            // Keep the original port (for ICMP queries `src_port` is the
            // identifier) on any of the addresses when it is in range and
            // works; else walk the ports of each address.
            let keeps =
                (plo..=phi).contains(&orig.src_port) || !(has_ports(orig.proto) || orig.is_icmp());
            for k in 0..count.min(MAX_ADDRS) {
                let reply = translated(k).reply();
                if keeps && steer.same_owner(orig, &reply) && !taken(&reply) {
                    return found(reply);
                }
            }
            for k in 0..count.min(MAX_ADDRS) {
                // Each address walks its own sequence of ports.
                let from = start.wrapping_add(k.wrapping_mul(ADDR_STRIDE));
                if let Some(reply) = walk_ports(orig, translated(k), plo, phi, from, steer, taken) {
                    return found(reply);
                }
            }
            None
        }
    }
}

/// The translation of a flow that follows its master's (an expected
/// connection of a translated control connection): `reply` as the
/// expectation gave it, or, if that reply would reach another worker or
/// clashes, the same with the flow's source port remapped (as Linux does
/// on a clash). `None` when no port works (counted as `nat_no_port`).
pub fn follow(
    orig: &Tuple,
    reply: Tuple,
    steer: &Steering,
    taken: &dyn Fn(&Tuple) -> bool,
) -> Option<Tuple> {
    if steer.same_owner(orig, &reply) && !taken(&reply) {
        return Some(reply);
    }
    let (lo, hi) = DEFAULT_PORTS;
    walk_ports(orig, reply.reply(), lo, hi, start_of(orig), steer, taken)
}

/// Walks source ports (ICMP identifiers) `lo..=hi` of the translated
/// original `out` from a flow-dependent point; returns the first reply
/// tuple that satisfies the conditions.
fn walk_ports(
    orig: &Tuple,
    mut out: Tuple,
    lo: u16,
    hi: u16,
    start: u32,
    steer: &Steering,
    taken: &dyn Fn(&Tuple) -> bool,
) -> Option<Tuple> {
    if !(has_ports(orig.proto) || orig.is_icmp()) {
        return None;
    }
    let span = u32::from(hi - lo) + 1;
    // Enough candidates that one steers right with near certainty, and at
    // most MAX_PROBES of those looked up: a nearly full range fails fast
    // (counted) instead of walking all of it for every new flow.
    let owners = u32::from(steer.workers.max(1)).saturating_mul(steer.buckets.max(1));
    let limit = span.min(owners.saturating_mul(64));
    let mut probes = 0;
    for k in 0..limit {
        // Spread over the range, not consecutive: where earlier flows
        // filled a block of ports (clients keeping their own ports fill
        // the low ones densely), a consecutive walk that starts in it
        // finds every candidate taken, at every address.
        let at = start.wrapping_add(k.wrapping_mul(PORT_STRIDE));
        let p = lo + u16::try_from(at % span).unwrap_or(0);
        out.src_port = p;
        let reply = out.reply();
        if !steer.same_owner(orig, &reply) {
            continue;
        }
        if !taken(&reply) {
            return Some(reply);
        }
        probes += 1;
        if probes == MAX_PROBES {
            break;
        }
    }
    None
}
