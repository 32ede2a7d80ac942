//! Choosing a new flow's translation so that its reply finds it.
//!
//! A translated flow is one shard entry reached by two tuples: the
//! original and the translated reply. Both must arrive at the worker that
//! owns the entry. AF_PACKET fanout and `mem` ports steer a frame by
//! [`steering_hash`](crate::port::steer::steering_hash), symmetric in the
//! tuple; so the reply reaches the owner exactly when
//! `worker_of(reply) == worker_of(original)`. The allocator keeps the
//! client's port at one of the first [`KEEP_ADDRS`] of the rule's
//! addresses (from a flow-dependent one) if it can, else walks
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

use crate::buckets::{bucket_of_tuple, MAX_BUCKETS};
use crate::flow::{has_ports, Tuple};
use crate::port::steer::{premix, worker_of, MIX};

use super::{NatKind, Target};

/// Source ports (and ICMP identifiers) chosen when a rule names none.
pub const DEFAULT_PORTS: (u16, u16) = (1024, 65535);
/// Addresses of a range tried for one flow.
pub const MAX_ADDRS: u32 = 16;
/// Addresses of a range on which a flow's own source port is tried before
/// ports are walked. Linux tries one; each try is a lookup in the shard's
/// indexes. With 250 clients opening flows from the same port into a pool
/// of 200 addresses (`bench pipeline --nat`), 1 keeps 55 % of ports with
/// 1.6 lookups per flow, 4 keeps 72 % with 2.7, and all 16 kept 78 % with
/// 6.2.
pub const KEEP_ADDRS: u32 = 4;
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
    /// DPDK ports with symmetric RSS: the queue (worker) a tuple reaches
    /// is the NIC's Toeplitz hash's, not `worker_of`'s.
    pub rss: Option<crate::port::rss::RssModel>,
}

impl Steering {
    /// Whether a flow with original tuple `orig` and reply tuple `reply`
    /// is reached on the same worker (and bucket) from both sides.
    #[inline]
    pub fn same_owner(&self, orig: &Tuple, reply: &Tuple) -> bool {
        let w = usize::from(self.workers);
        let same_worker = match &self.rss {
            Some(m) => m.queue_of_tuple(reply) == m.queue_of_tuple(orig),
            None => w <= 1 || worker_of(reply, w) == worker_of(orig, w),
        };
        same_worker
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
    if rule.addr_lo.is_ipv6() != orig.v6 {
        return None;
    }
    let count = rule.addr_count();
    match rule.kind {
        NatKind::Dst => {
            let mut out = *orig;
            rule.write_addr(start % count, &mut out.dst);
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
                rule.write_addr(start.wrapping_add(k) % count, &mut out.src);
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
            for k in 0..count.min(KEEP_ADDRS) {
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
    if steer.buckets != 0 {
        if let Some(found) = solve_ports(orig, out, lo, hi, start, steer, taken) {
            return found;
        }
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

/// Every 16-bit value sorted by its product with the steering hash's
/// multiplier (mod 2^32): 128 KiB, built once.
fn by_product() -> &'static [u16] {
    static TABLE: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t: Vec<u16> = (0..=u16::MAX).collect();
        t.sort_unstable_by_key(|&q| u32::from(q).wrapping_mul(MIX));
        t
    })
}

/// Cluster buckets: the source ports whose reply falls in the original's
/// bucket, solved for instead of tried. A reply's steering hash is
/// `mix(x0 ^ p)` for port `p` (the port's XOR enters the hash; see
/// `steer::premix`), and the top 16 bits of `mix(x)` are those of
/// `x * MIX`, which for the 65,536 ports is a fixed constant plus
/// `q * MIX` with `q = p ^ low16(x0)`. The bucket bounds those top bits to
/// an interval, and the table sorted by `q * MIX` gives the ports there
/// (about 65,536 / B of them) in one binary search: every port of the
/// range whose reply shares the bucket, where a walk would try about B per
/// hit. Each candidate is still checked in full ([`Steering::same_owner`]),
/// and at most [`MAX_PROBES`] are looked up. `None`: the port does not
/// enter the hash (walk instead); `Some(None)`: no port works.
fn solve_ports(
    orig: &Tuple,
    out: Tuple,
    lo: u16,
    hi: u16,
    start: u32,
    steer: &Steering,
    taken: &dyn Fn(&Tuple) -> bool,
) -> Option<Option<Tuple>> {
    let with = |p: u16| {
        let mut o = out;
        o.src_port = p;
        o.reply()
    };
    let x0 = premix(&with(0));
    if premix(&with(1)) != x0 ^ 1 || premix(&with(0x8000)) != x0 ^ 0x8000 {
        return None;
    }
    let buckets = u64::from(steer.buckets.min(MAX_BUCKETS));
    let want = u64::from(bucket_of_tuple(orig, steer.buckets));
    // The values of `h >> 14` in the bucket, then of `h >> 16` (the top
    // 16 bits of `x * MIX`).
    let v_lo = (want << 18).div_ceil(buckets);
    let v_hi = ((want + 1) << 18).div_ceil(buckets).saturating_sub(1);
    let (t_lo, t_hi) = (v_lo >> 2, v_hi >> 2);
    // `x * MIX = c + q * MIX`; q * MIX must fall in [from, from + len).
    let c = (x0 & 0xffff_0000).wrapping_mul(MIX);
    let from = u32::try_from(t_lo << 16)
        .unwrap_or(u32::MAX)
        .wrapping_sub(c);
    let len = (t_hi - t_lo + 1) << 16;
    let table = by_product();
    let product = |q: u16| u64::from(u32::from(q).wrapping_mul(MIX));
    let at = |v: u64| table.partition_point(|&q| product(q) < v);
    let end = u64::from(from) + len;
    // One interval, or two where it wraps past 2^32.
    let (a, b) = if end <= 1 << 32 {
        ((at(u64::from(from)), at(end)), (0, 0))
    } else {
        ((at(u64::from(from)), table.len()), (0, at(end - (1 << 32))))
    };
    let count = (a.1 - a.0) + (b.1 - b.0);
    let x0_lo = u16::try_from(x0 & 0xffff).unwrap_or(0);
    let mut probes = 0;
    for i in 0..count {
        // From a flow-dependent candidate, so flows spread over them.
        let k = (usize::try_from(start).unwrap_or(0) + i) % count;
        let idx = if k < a.1 - a.0 {
            a.0 + k
        } else {
            b.0 + k - (a.1 - a.0)
        };
        let p = table[idx] ^ x0_lo;
        if !(lo..=hi).contains(&p) {
            continue;
        }
        let reply = with(p);
        if !steer.same_owner(orig, &reply) {
            continue;
        }
        if !taken(&reply) {
            return Some(Some(reply));
        }
        probes += 1;
        if probes == MAX_PROBES {
            break;
        }
    }
    Some(None)
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use std::collections::HashSet;
    use std::net::{IpAddr, Ipv4Addr};

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// With cluster buckets the ports are solved for, not walked: the
        /// solver finds a port exactly when trying every port of the range
        /// would, and only ports that keep worker and bucket.
        #[test]
        fn solved_ports_are_found_exactly_when_a_full_walk_finds_one(
            workers in 1u16..5,
            buckets in prop::sample::select(vec![2u32, 16, 1000, 4096, 16384]),
            client in any::<u32>(),
            server in any::<u32>(),
            sport in any::<u16>(),
            dport in any::<u16>(),
            ping in any::<bool>(),
            narrow in any::<bool>(),
            taken_seed in any::<u64>(),
        ) {
            let (proto, dport) = if ping { (1, 8 << 8) } else { (6, dport) };
            let orig = Tuple::new(
                IpAddr::V4(Ipv4Addr::from(client)),
                IpAddr::V4(Ipv4Addr::from(server)),
                proto,
                sport,
                dport,
            );
            let mut out = orig;
            out.src[..4].copy_from_slice(&[203, 0, 113, 7]);
            let (lo, hi) = if narrow { (40_000, 40_999) } else { DEFAULT_PORTS };
            let steer = Steering {
            workers,
            buckets,
            rss: None,
        };
            // Some replies in use (a few of them good ones).
            let good: Vec<Tuple> = (lo..=hi)
                .map(|p| {
                    let mut o = out;
                    o.src_port = p;
                    o.reply()
                })
                .filter(|r| steer.same_owner(&orig, r))
                .collect();
            let used: HashSet<Tuple> = good
                .iter()
                .enumerate()
                .filter(|(i, _)| (taken_seed >> (i % 64)) & 1 == 1 && *i < 40)
                .map(|(_, r)| *r)
                .collect();
            let taken = |t: &Tuple| used.contains(t);
            let free = good.iter().any(|r| !used.contains(r));
            let got = solve_ports(&orig, out, lo, hi, (taken_seed >> 32) as u32, &steer, &taken)
                .expect("the port enters the hash");
            prop_assert_eq!(got.is_some(), free, "{} good ports, {} used", good.len(), used.len());
            if let Some(r) = got {
                prop_assert!(steer.same_owner(&orig, &r) && !used.contains(&r));
                prop_assert!((lo..=hi).contains(&r.reply().src_port));
            }
            // Every good port is among the solutions: with all others in
            // use, the last one is found.
            if (1..100).contains(&good.len()) {
                let last = good[usize::try_from(taken_seed).unwrap_or(0) % good.len()];
                let others: HashSet<Tuple> = good.iter().copied().filter(|r| *r != last).collect();
                let got = solve_ports(&orig, out, lo, hi, 0, &steer, &|t| others.contains(t));
                prop_assert_eq!(got, Some(Some(last)));
            }
        }
    }

    #[test]
    fn protocols_without_ports_are_not_solved() {
        let orig = Tuple::new(
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
            47,
            0,
            0,
        );
        let steer = Steering {
            workers: 1,
            buckets: 4096,
            rss: None,
        };
        assert!(solve_ports(&orig, orig, 1024, 65535, 0, &steer, &|_| false).is_none());
    }
}
