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

#[inline]
fn mix(h: u64, w: u64) -> u64 {
    (h.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95)
}

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
    let (a, b, pa, pb) = if t.is_icmp() {
        let ty = icmp_query_of(t.v6, t.icmp_type());
        let ports = u16::from(ty) << 8 | u16::from(t.icmp_code());
        // Ports carry the id and the query type for both directions.
        if t.src <= t.dst {
            (&t.src, &t.dst, t.src_port, ports)
        } else {
            (&t.dst, &t.src, t.src_port, ports)
        }
    } else if (t.src, t.src_port) <= (t.dst, t.dst_port) {
        (&t.src, &t.dst, t.src_port, t.dst_port)
    } else {
        (&t.dst, &t.src, t.dst_port, t.src_port)
    };
    let (a0, a1) = addr_words(a);
    let (b0, b1) = addr_words(b);
    let mut h = u64::from(t.proto) | (u64::from(pa) << 16) | (u64::from(pb) << 32);
    h = mix(h, a0);
    h = mix(h, a1);
    h = mix(h, b0);
    h = mix(h, b1);
    // Final avalanche so the low bits (bucket index) depend on every input bit.
    h ^= h >> 29;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^ (h >> 32)
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
