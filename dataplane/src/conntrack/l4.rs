//! Per-protocol rules that are small enough not to need a module each:
//! timeouts, the two-state UDP/ICMP/generic model of the FT-FW paper, ICMP
//! query/reply pairing, and the canonical (direction-free) flow hash.

use crate::flow::{proto, Tuple};

use super::tcp::TcpTimeouts;

/// Flow timeouts in seconds. Defaults are Linux's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Per TCP state.
    pub tcp: TcpTimeouts,
    /// UDP flow that has not seen a reply.
    pub udp: u32,
    /// UDP flow that has seen a reply (a stream).
    pub udp_stream: u32,
    /// ICMP and ICMPv6 query flows.
    pub icmp: u32,
    /// Any other protocol.
    pub generic: u32,
}

impl Timeouts {
    /// The longest timeout any flow can get from these settings: the bound
    /// of a timeout that comes from elsewhere (a peer, an import).
    pub fn longest(&self) -> u32 {
        let t = &self.tcp;
        [
            t.syn_sent,
            t.syn_recv,
            t.established,
            t.fin_wait,
            t.close_wait,
            t.last_ack,
            t.time_wait,
            t.close,
            t.syn_sent2,
            t.retrans,
            t.unacknowledged,
            self.udp,
            self.udp_stream,
            self.icmp,
            self.generic,
        ]
        .into_iter()
        .max()
        .unwrap_or(u32::MAX)
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp: TcpTimeouts::default(),
            udp: 30,
            udp_stream: 120,
            icmp: 30,
            generic: 600,
        }
    }
}

pub use crate::flow::{icmp_query_of, icmp_reply_type};

/// ICMPv6 neighbour discovery, router discovery, redirect and multicast
/// listener messages: link-local control traffic a bump in the wire passes
/// without tracking, like ARP.
pub fn icmpv6_is_link_control(t: u8) -> bool {
    matches!(t, 130..=137 | 143)
}

/// The reply tuple the original tuple `orig` implies (no NAT).
#[inline]
pub fn reply_of(orig: &Tuple) -> Tuple {
    orig.reply()
}

/// Folded multiply: the high and low halves of the 128-bit product xored.
/// Every input bit reaches every output bit (the mixer foldhash and
/// wyhash use).
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    // Splitting the product into its halves is the point: truncation intended.
    #[allow(clippy::cast_possible_truncation)]
    let (lo, hi) = (p as u64, (p >> 64) as u64);
    lo ^ hi
}

const SEEDS: [u64; 6] = [
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
    0x4528_21e6_38d0_1377,
    0xbe54_66cf_34e9_0c6c,
];

#[inline]
fn addr_words(a: &[u8; 16]) -> (u64, u64) {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&a[..8]);
    lo.copy_from_slice(&a[8..]);
    (u64::from_le_bytes(hi), u64::from_le_bytes(lo))
}

/// A hash of `t` that is the same for both directions of its flow: the
/// endpoints are ordered before hashing, and ICMP answers hash like their
/// queries. Used for the shard table and for steering flows to workers in
/// software (mem ports), so both directions reach the same worker.
#[inline]
pub fn symmetric_hash(t: &Tuple) -> u64 {
    // The addresses' byte order as numbers: two compares, not a memcmp.
    let (s, d) = (u128::from_be_bytes(t.src), u128::from_be_bytes(t.dst));
    let (a, b, pa, pb) = if t.is_icmp() {
        let ty = icmp_query_of(t.v6, t.icmp_type());
        let ports = u16::from(ty) << 8 | u16::from(t.icmp_code());
        // Ports carry the id and the query type for both directions.
        if s <= d {
            (&t.src, &t.dst, t.src_port, ports)
        } else {
            (&t.dst, &t.src, t.src_port, ports)
        }
    } else if (s, t.src_port) <= (d, t.dst_port) {
        (&t.src, &t.dst, t.src_port, t.dst_port)
    } else {
        (&t.dst, &t.src, t.dst_port, t.src_port)
    };
    let (a0, a1) = addr_words(a);
    let (b0, b1) = addr_words(b);
    let ports = u64::from(t.proto) | (u64::from(pa) << 16) | (u64::from(pb) << 32);
    let h = fold(a0 ^ SEEDS[0], b0 ^ SEEDS[1]) ^ fold(a1 ^ SEEDS[2], b1 ^ SEEDS[3]);
    fold(h ^ SEEDS[4], ports ^ SEEDS[5])
}

/// The protocol family a tracker handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum L4 {
    Tcp,
    Udp,
    Icmp,
    Generic,
}

impl L4 {
    pub(crate) fn of(t: &Tuple) -> L4 {
        match t.proto {
            proto::TCP => L4::Tcp,
            proto::UDP | proto::UDPLITE => L4::Udp,
            _ if t.is_icmp() => L4::Icmp,
            _ => L4::Generic,
        }
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    fn t(s: &str, d: &str, p: u8, sp: u16, dp: u16) -> Tuple {
        Tuple::new(s.parse().unwrap(), d.parse().unwrap(), p, sp, dp)
    }

    #[test]
    fn hash_is_symmetric() {
        let a = t("192.0.2.1", "198.51.100.2", proto::TCP, 40000, 80);
        assert_eq!(symmetric_hash(&a), symmetric_hash(&a.inverse()));
        let b = t("192.0.2.1", "198.51.100.2", proto::TCP, 40001, 80);
        assert_ne!(symmetric_hash(&a), symmetric_hash(&b));
    }

    #[test]
    fn hash_spreads_lab_like_tuples() {
        // Clients differing in the last octet and the port, as a load
        // generator makes them: the flow index's home buckets (the low
        // half, scaled: its top bits count) and its 32-bit tags (the high
        // half) must both spread (an early version xored the port into the
        // address bits and collapsed 1M tuples onto 65536 hashes).
        let mut low = std::collections::HashSet::new();
        let mut tags = std::collections::HashSet::new();
        let mut all = std::collections::HashSet::new();
        for i in 0..200_000u32 {
            let c = std::net::Ipv4Addr::new(192, 0, 2, (1 + i % 250) as u8);
            let t = Tuple::new(
                c.into(),
                "198.51.100.1".parse().unwrap(),
                proto::TCP,
                1024 + (i / 250) as u16,
                80,
            );
            let h = symmetric_hash(&t);
            all.insert(h);
            low.insert((h & 0xffff_ffff) >> 14);
            tags.insert(h >> 32);
        }
        assert_eq!(all.len(), 200_000);
        // A random function fills 1 - e^(-200000/262144) = 53% of the
        // buckets: about 139,900.
        assert!(low.len() > 135_000, "{} distinct bucket indices", low.len());
        // 200,000 random 32-bit tags collide about 5 times.
        assert!(tags.len() > 199_900, "{} distinct tags", tags.len());
        let echo = t("2001:db8::1", "2001:db8::2", proto::ICMPV6, 7, 128 << 8);
        let reply = reply_of(&echo);
        assert_eq!(reply.icmp_type(), 129);
        assert_eq!(reply.icmp_id(), 7);
        assert_eq!(symmetric_hash(&echo), symmetric_hash(&reply));
    }

    #[test]
    fn icmp_pairs() {
        assert_eq!(icmp_reply_type(false, 8), Some(0));
        assert_eq!(icmp_reply_type(false, 0), None);
        assert_eq!(icmp_query_of(false, 0), 8);
        assert_eq!(icmp_query_of(true, 129), 128);
        assert!(icmpv6_is_link_control(135));
        assert!(!icmpv6_is_link_control(128));
    }
}
