//! Toeplitz receive-side scaling hash, in software.
//!
//! NICs spread flows over receive queues with the Toeplitz hash of the
//! packet's addresses and ports under a secret key, then pick the queue from
//! a redirection table (RETA). With an arbitrary key the two directions of a
//! connection hash differently and may reach different workers; with a key
//! that repeats with a 16-bit period ([`SYMMETRIC_KEY`], `0x6d5a` repeated)
//! swapping source and destination (32-bit addresses, 16-bit ports) leaves
//! the hash unchanged, so both directions reach the same worker and one
//! shard owns the flow.
//!
//! The DPDK backend programs this key into the NIC; this module computes the
//! same hash so tests (and anything that must predict the worker of a flow)
//! can check it without hardware.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::flow::Tuple;

/// The symmetric Toeplitz key: `0x6d, 0x5a` repeated. 52 bytes, the longest
/// key common NICs take (40 for most 1GbE/10GbE parts, 52 for i40e/ice);
/// a device is given the prefix of the length it reports.
pub const SYMMETRIC_KEY: [u8; 52] = {
    let mut k = [0u8; 52];
    let mut i = 0;
    while i < k.len() {
        k[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    k
};

/// The Toeplitz hash of `input` under `key`.
///
/// For every set bit `i` of the input (most significant bit of byte 0
/// first), XORs in the 32 key bits starting at bit `i`. The key must be at
/// least `input.len() + 4` bytes long; missing key bits count as zero.
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let key_bit = |b: usize| -> u32 {
        key.get(b / 8)
            .map_or(0, |byte| u32::from((byte >> (7 - (b % 8))) & 1))
    };
    // The 32-bit window of the key starting at bit 0, slid one bit per input bit.
    let mut window: u32 = (0..32).fold(0, |w, b| (w << 1) | key_bit(b));
    let mut hash = 0u32;
    for (i, byte) in input.iter().enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            window = (window << 1) | key_bit(i * 8 + bit + 32);
        }
    }
    hash
}

/// The RSS input for IPv4 TCP/UDP: source address, destination address,
/// source port, destination port, in network byte order.
pub fn input_v4(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[0..4].copy_from_slice(&src.octets());
    b[4..8].copy_from_slice(&dst.octets());
    b[8..10].copy_from_slice(&sport.to_be_bytes());
    b[10..12].copy_from_slice(&dport.to_be_bytes());
    b
}

/// The RSS input for IPv6 TCP/UDP (same order as [`input_v4`]).
pub fn input_v6(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16) -> [u8; 36] {
    let mut b = [0u8; 36];
    b[0..16].copy_from_slice(&src.octets());
    b[16..32].copy_from_slice(&dst.octets());
    b[32..34].copy_from_slice(&sport.to_be_bytes());
    b[34..36].copy_from_slice(&dport.to_be_bytes());
    b
}

/// The queue a NIC with the default redirection table (entry `i` is queue
/// `i % queues`, `reta_size` entries, a power of two) picks for `hash`.
pub fn queue_of(hash: u32, reta_size: u32, queues: u16) -> u16 {
    let entry = hash & reta_size.saturating_sub(1);
    u16::try_from(entry % u32::from(queues.max(1))).unwrap_or(0)
}

/// How a device with symmetric RSS (DPDK, several queues) spreads flows
/// over its queues, worker `i` owning queue `i`: what NAT's allocator
/// must agree with for a translated reply to reach its flow's worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RssModel {
    /// Redirection table entries (a power of two), default table.
    pub reta_size: u32,
    /// Receive queues (one per worker).
    pub queues: u16,
}

impl RssModel {
    /// The queue (worker) a packet with tuple `t` reaches: TCP and UDP are
    /// hashed with their ports, every other protocol by its addresses
    /// alone (the `RTE_ETH_RSS_IP | TCP | UDP` hash types ftfw programs).
    pub fn queue_of_tuple(&self, t: &Tuple) -> usize {
        let ported = matches!(t.proto, crate::flow::proto::TCP | crate::flow::proto::UDP);
        let (sp, dp) = if ported {
            (t.src_port, t.dst_port)
        } else {
            (0, 0)
        };
        let hash = if t.v6 {
            let input = input_v6(Ipv6Addr::from(t.src), Ipv6Addr::from(t.dst), sp, dp);
            symmetric_toeplitz(if ported { &input } else { &input[..32] })
        } else {
            let a = |x: &[u8; 16]| Ipv4Addr::new(x[0], x[1], x[2], x[3]);
            let input = input_v4(a(&t.src), a(&t.dst), sp, dp);
            symmetric_toeplitz(if ported { &input } else { &input[..8] })
        };
        usize::from(queue_of(hash, self.reta_size, self.queues))
    }
}

/// [`toeplitz`] under [`SYMMETRIC_KEY`], a table lookup per input byte
/// (the allocator asks for every candidate port): entry `[i][v]` is the
/// hash of byte value `v` at position `i` alone (36 x 256 words, built
/// once).
pub fn symmetric_toeplitz(input: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<Vec<[u32; 256]>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        (0..36)
            .map(|i| {
                let mut row = [0u32; 256];
                for (v, cell) in row.iter_mut().enumerate() {
                    let mut one = [0u8; 36];
                    one[i] = u8::try_from(v).unwrap_or(0);
                    *cell = toeplitz(&SYMMETRIC_KEY, &one[..=i]);
                }
                row
            })
            .collect()
    });
    input
        .iter()
        .zip(table.iter())
        .fold(0, |h, (b, row)| h ^ row[usize::from(*b)])
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use crate::rng::splitmix64 as next;

    /// (destination, source, IPv4 hash, IPv4 TCP hash).
    type Vector = ((Ipv4Addr, u16), (Ipv4Addr, u16), u32, u32);

    /// The key of Microsoft's RSS verification suite.
    const MS_KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f,
        0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30,
        0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ];

    #[test]
    fn matches_the_microsoft_verification_vectors() {
        // (destination, source, expected IPv4 hash, expected IPv4 TCP hash):
        // the input is source then destination.
        let cases: [Vector; 3] = [
            (
                (Ipv4Addr::new(161, 142, 100, 80), 1766),
                (Ipv4Addr::new(66, 9, 149, 187), 2794),
                0x323e_8fc2,
                0x51cc_c178,
            ),
            (
                (Ipv4Addr::new(65, 69, 140, 83), 4739),
                (Ipv4Addr::new(199, 92, 111, 2), 14230),
                0xd718_262a,
                0xc626_b0ea,
            ),
            (
                (Ipv4Addr::new(12, 22, 207, 184), 38024),
                (Ipv4Addr::new(24, 19, 198, 95), 12898),
                0xd2d0_a5de,
                0x5c2b_394a,
            ),
        ];
        for ((dst, dport), (src, sport), ip_hash, tcp_hash) in cases {
            let mut ip = [0u8; 8];
            ip[..4].copy_from_slice(&src.octets());
            ip[4..].copy_from_slice(&dst.octets());
            assert_eq!(toeplitz(&MS_KEY, &ip), ip_hash, "{src} -> {dst}");
            assert_eq!(
                toeplitz(&MS_KEY, &input_v4(src, dst, sport, dport)),
                tcp_hash,
                "{src}:{sport} -> {dst}:{dport}"
            );
        }
        // IPv6 TCP: 3ffe:2501:200:1fff::7 port 2794 -> 3ffe:2501:200:3::1 port 1766.
        let src: Ipv6Addr = "3ffe:2501:200:1fff::7".parse().unwrap();
        let dst: Ipv6Addr = "3ffe:2501:200:3::1".parse().unwrap();
        assert_eq!(
            toeplitz(&MS_KEY, &input_v6(src, dst, 2794, 1766)),
            0x4020_7d3d
        );
    }

    #[test]
    fn symmetric_key_hashes_both_directions_alike() {
        let mut s = 7u64;
        let mut queues_seen = [false; 4];
        for _ in 0..10_000 {
            let r = next(&mut s);
            let (a, b) = (Ipv4Addr::from(r as u32), Ipv4Addr::from((r >> 32) as u32));
            let r2 = next(&mut s);
            let (pa, pb) = (r2 as u16, (r2 >> 16) as u16);
            let fwd = toeplitz(&SYMMETRIC_KEY, &input_v4(a, b, pa, pb));
            let rev = toeplitz(&SYMMETRIC_KEY, &input_v4(b, a, pb, pa));
            assert_eq!(fwd, rev, "{a}:{pa} <-> {b}:{pb}");
            // The 40-byte prefix (what most NICs take) is symmetric too.
            let fwd40 = toeplitz(&SYMMETRIC_KEY[..40], &input_v4(a, b, pa, pb));
            assert_eq!(
                fwd40,
                toeplitz(&SYMMETRIC_KEY[..40], &input_v4(b, a, pb, pa))
            );
            queues_seen[usize::from(queue_of(fwd, 128, 4))] = true;

            let r3 = next(&mut s);
            let x = Ipv6Addr::from((u128::from(r) << 64) | u128::from(r3));
            let y = Ipv6Addr::from((u128::from(r3) << 64) | u128::from(r2));
            assert_eq!(
                toeplitz(&SYMMETRIC_KEY, &input_v6(x, y, pa, pb)),
                toeplitz(&SYMMETRIC_KEY, &input_v6(y, x, pb, pa)),
                "{x}:{pa} <-> {y}:{pb}"
            );
        }
        // It still spreads flows: every queue gets some.
        assert!(queues_seen.iter().all(|&q| q), "{queues_seen:?}");
    }

    /// The table-driven hash is the bit-by-bit one, and the model sends
    /// both directions of a flow to one queue, TCP by its ports, ICMP by
    /// its addresses.
    #[test]
    fn the_rss_model_is_the_toeplitz_hash_and_symmetric() {
        let mut seed = 7u64;
        for len in [8usize, 12, 32, 36] {
            for _ in 0..200 {
                let input: Vec<u8> = (0..len).map(|_| next(&mut seed) as u8).collect();
                assert_eq!(symmetric_toeplitz(&input), toeplitz(&SYMMETRIC_KEY, &input));
            }
        }
        let m = RssModel {
            reta_size: 128,
            queues: 3,
        };
        let mut seen = [false; 3];
        for i in 0..300u64 {
            let r = next(&mut seed);
            let v6 = i % 2 == 0;
            let (a, b) = if v6 {
                (
                    std::net::IpAddr::V6(Ipv6Addr::from(u128::from(r) << 64 | 1)),
                    std::net::IpAddr::V6(Ipv6Addr::from(u128::from(r >> 7))),
                )
            } else {
                (
                    std::net::IpAddr::V4(Ipv4Addr::from(r as u32)),
                    std::net::IpAddr::V4(Ipv4Addr::from((r >> 32) as u32)),
                )
            };
            let proto = [6u8, 17, 1][(i % 3) as usize];
            let t = Tuple::new(a, b, proto, (r >> 8) as u16, (r >> 24) as u16);
            let q = m.queue_of_tuple(&t);
            seen[q] = true;
            assert_eq!(q, m.queue_of_tuple(&t.reply()), "{t:?}");
            let bits = if v6 { 32 } else { 8 };
            let mut input = [0u8; 36];
            input[..bits / 2].copy_from_slice(&t.src[..bits / 2]);
            input[bits / 2..bits].copy_from_slice(&t.dst[..bits / 2]);
            if proto != 1 {
                input[bits..bits + 2].copy_from_slice(&t.src_port.to_be_bytes());
                input[bits + 2..bits + 4].copy_from_slice(&t.dst_port.to_be_bytes());
            }
            let n = if proto == 1 { bits } else { bits + 4 };
            let want = queue_of(toeplitz(&SYMMETRIC_KEY, &input[..n]), 128, 3);
            assert_eq!(q, usize::from(want));
        }
        assert_eq!(seen, [true; 3]);
    }

    #[test]
    fn an_asymmetric_key_is_not_symmetric() {
        let a = input_v4(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(198, 51, 100, 2),
            40000,
            80,
        );
        let b = input_v4(
            Ipv4Addr::new(198, 51, 100, 2),
            Ipv4Addr::new(192, 0, 2, 1),
            80,
            40000,
        );
        assert_ne!(toeplitz(&MS_KEY, &a), toeplitz(&MS_KEY, &b));
    }

    #[test]
    fn default_reta_picks_queues_round_robin() {
        assert_eq!(queue_of(0, 128, 4), 0);
        assert_eq!(queue_of(5, 128, 4), 1);
        assert_eq!(queue_of(127 + 128, 128, 3), 1);
        assert_eq!(queue_of(u32::MAX, 512, 1), 0);
    }
}
