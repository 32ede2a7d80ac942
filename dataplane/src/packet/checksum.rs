//! The Internet checksum (RFC 1071): one's-complement sums over byte slices,
//! IPv4 and IPv6 pseudo-headers, and incremental updates (RFC 1624) so that
//! NAT and TTL rewrites can fix a checksum without recomputing it.
//!
//! Conventions: [`sum`] and the pseudo-header functions return the folded
//! one's-complement *sum* (not complemented); [`finish`] complements a sum into
//! the value that goes on the wire. A buffer whose checksum field is correct
//! sums (together with its pseudo-header) to `0xffff`.

/// Folds a wide accumulator into 16 bits with end-around carry.
#[inline]
fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    low16(s)
}

/// Truncates to the low 16 bits; callers pass values already `<= 0xffff`.
#[inline]
#[allow(clippy::cast_possible_truncation)]
fn low16(x: u64) -> u16 {
    (x & 0xffff) as u16
}

/// A sum of `data` as big-endian 16-bit words whose [`fold`] is the
/// one's-complement sum; an odd trailing byte is padded with zero. Never
/// overflows for any slice shorter than 16 GiB.
///
/// The bulk is summed as native little-endian 32-bit halves of 64-bit
/// words (no byte swap per word, and the compiler vectorizes the loop),
/// then folded and byte-swapped: one's-complement sums do not depend on
/// byte order up to that final swap (RFC 1071, section 2(B)). The tail
/// after the last whole 8 bytes (an even offset) is summed big-endian.
#[inline]
fn sum_wide(data: &[u8]) -> u64 {
    let mut le: u64 = 0;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        le += (w & 0xffff_ffff) + (w >> 32);
    }
    let mut acc = u64::from(fold(le).swap_bytes());
    let mut chunks = words.remainder().chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    match *chunks.remainder() {
        [a] => acc += u64::from(a) << 8,
        [a, b] => acc += u64::from(u16::from_be_bytes([a, b])),
        [a, b, c] => acc += u64::from(u16::from_be_bytes([a, b])) + (u64::from(c) << 8),
        _ => {}
    }
    acc
}

/// One's-complement sum of `data` (16-bit big-endian words, odd length padded
/// with a zero byte), folded to 16 bits, not complemented.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    fold(sum_wide(data))
}

/// One's-complement sum of several partial sums.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// Complements a folded sum into the checksum field value.
#[inline]
pub fn finish(sum: u16) -> u16 {
    !sum
}

/// Sum of the IPv4 pseudo-header (RFC 793/768): addresses, protocol and the
/// L4 length (header plus payload).
#[inline]
pub fn pseudo_header_v4(src: &[u8; 4], dst: &[u8; 4], proto: u8, l4_len: u16) -> u16 {
    let s = u64::from(u32::from_be_bytes(*src))
        + u64::from(u32::from_be_bytes(*dst))
        + u64::from(proto)
        + u64::from(l4_len);
    fold(s)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 section 8.1): addresses, the
/// upper-layer length as 32 bits, and the next-header value.
#[inline]
pub fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, l4_len: u32) -> u16 {
    let s = sum_wide(src) + sum_wide(dst) + u64::from(proto) + u64::from(l4_len);
    fold(s)
}

/// Checksum field value for an L4 segment over IPv4 (`segment` with its
/// checksum field zeroed).
#[inline]
pub fn l4_v4(src: &[u8; 4], dst: &[u8; 4], proto: u8, segment: &[u8]) -> u16 {
    // Segment lengths come from a 16-bit IP total length; saturate otherwise
    // (the result is then simply wrong, never a panic).
    let len = u16::try_from(segment.len()).unwrap_or(u16::MAX);
    finish(combine(&[
        pseudo_header_v4(src, dst, proto, len),
        sum(segment),
    ]))
}

/// Checksum field value for an L4 segment over IPv6 (`segment` with its
/// checksum field zeroed).
#[inline]
pub fn l4_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, segment: &[u8]) -> u16 {
    let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    finish(combine(&[
        pseudo_header_v6(src, dst, proto, len),
        sum(segment),
    ]))
}

/// Whether `segment` (an upper-layer header and payload with its checksum
/// field as received) sums to `0xffff` with the IPv4 pseudo-header. False
/// for a segment longer than an IPv4 length can say.
#[inline]
pub fn segment_ok_v4(src: &[u8; 4], dst: &[u8; 4], proto: u8, segment: &[u8]) -> bool {
    let Ok(len) = u16::try_from(segment.len()) else {
        return false;
    };
    combine(&[pseudo_header_v4(src, dst, proto, len), sum(segment)]) == 0xffff
}

/// [`segment_ok_v4`] over IPv6.
#[inline]
pub fn segment_ok_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, segment: &[u8]) -> bool {
    let Ok(len) = u32::try_from(segment.len()) else {
        return false;
    };
    combine(&[pseudo_header_v6(src, dst, proto, len), sum(segment)]) == 0xffff
}

/// Verifies the L4 checksum of `segment`, the upper-layer header and
/// payload of an unfragmented IP packet (cut at the IP length) carried from
/// `src` to `dst` (IPv4 addresses in the first 4 bytes when `!v6`) with
/// protocol `proto`.
///
/// `Some(valid)` for TCP, UDP, ICMP over IPv4 and ICMPv6 over IPv6; `None`
/// for other protocols and for a segment too short for its header (or a
/// UDP length beyond it), which the parser rejects anyway. A zero UDP
/// checksum over IPv4 means "none" and counts as valid; over IPv6 it is
/// invalid (RFC 8200 section 8.1). Never panics.
pub fn verify_l4(
    v6: bool,
    src: &[u8; 16],
    dst: &[u8; 16],
    proto: u8,
    segment: &[u8],
) -> Option<bool> {
    use super::{IcmpPacket, Icmpv6Packet, TcpPacket, UdpPacket};
    use crate::flow::proto as p;
    let (s4, d4): ([u8; 4], [u8; 4]) = (super::rd_array(src, 0), super::rd_array(dst, 0));
    Some(match (proto, v6) {
        (p::TCP, false) => TcpPacket::new_checked(segment)
            .ok()?
            .verify_checksum_v4(&s4, &d4),
        (p::TCP, true) => TcpPacket::new_checked(segment)
            .ok()?
            .verify_checksum_v6(src, dst),
        (p::UDP, false) => UdpPacket::new_checked(segment)
            .ok()?
            .verify_checksum_v4(&s4, &d4),
        (p::UDP, true) => UdpPacket::new_checked(segment)
            .ok()?
            .verify_checksum_v6(src, dst),
        (p::ICMP, false) => IcmpPacket::new_checked(segment).ok()?.verify_checksum(),
        (p::ICMPV6, true) => Icmpv6Packet::new_checked(segment)
            .ok()?
            .verify_checksum(src, dst),
        _ => return None,
    })
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word of the covered
/// data changed from `old` to `new`: `HC' = ~(~HC + ~m + m')`.
#[inline]
pub fn update_u16(csum: u16, old: u16, new: u16) -> u16 {
    update_sum(csum, u64::from(!old) + u64::from(new))
}

/// Incremental update of `csum` by `delta`, the sum of `!old + new` over
/// any number of changed 16-bit words (RFC 1624 eqn. 3 applied to all of
/// them at once; the sum of fewer than 2^47 words cannot overflow).
#[inline]
pub fn update_sum(csum: u16, delta: u64) -> u16 {
    !fold(u64::from(!csum) + delta)
}

/// Incremental update for a 32-bit field (e.g. an IPv4 address or a TCP
/// sequence number) aligned on a 16-bit boundary.
#[inline]
pub fn update_u32(csum: u16, old: u32, new: u32) -> u16 {
    let [a, b, c, d] = old.to_be_bytes();
    let [e, f, g, h] = new.to_be_bytes();
    let s = u64::from(!csum)
        + u64::from(!u16::from_be_bytes([a, b]))
        + u64::from(!u16::from_be_bytes([c, d]))
        + u64::from(u16::from_be_bytes([e, f]))
        + u64::from(u16::from_be_bytes([g, h]));
    !fold(s)
}

/// Incremental update for a 16-byte field (an IPv6 address).
#[inline]
pub fn update_addr16(csum: u16, old: &[u8; 16], new: &[u8; 16]) -> u16 {
    update_bytes(csum, old, new)
}

/// Incremental update for an arbitrary run of bytes that changed from `old`
/// to `new`. Both must have the same length and start at an even offset of
/// the checksummed data; an odd length is treated as zero-padded, which is
/// correct only when the run ends the data or the pad byte is unchanged.
#[inline]
pub fn update_bytes(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    !fold(u64::from(!csum) + u64::from(!sum(old)) + u64::from(sum(new)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        assert_eq!(
            sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
        assert_eq!(sum(&[0x00, 0x01, 0xf2]), 0xf201);
        assert_eq!(sum(&[]), 0);
    }

    #[test]
    fn ttl_decrement_update() {
        // A real IPv4 header (checksum b861), TTL 64 -> 63.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let c = finish(sum(&h));
        assert_eq!(c, 0xb861);
        let old = u16::from_be_bytes([h[8], h[9]]);
        h[8] = 63;
        let new = u16::from_be_bytes([h[8], h[9]]);
        assert_eq!(update_u16(c, old, new), finish(sum(&h)));
    }

    /// Addresses of a golden IPv4 frame as 16-byte arrays.
    fn addrs4(f: &[u8]) -> ([u8; 16], [u8; 16]) {
        let (mut s, mut d) = ([0u8; 16], [0u8; 16]);
        s[..4].copy_from_slice(&f[26..30]);
        d[..4].copy_from_slice(&f[30..34]);
        (s, d)
    }

    #[test]
    fn verify_l4_golden_frames() {
        use crate::flow::proto;
        use crate::packet::golden;
        let (s, d) = addrs4(&golden::TCP_SYN);
        assert_eq!(
            verify_l4(false, &s, &d, proto::TCP, &golden::TCP_SYN[34..]),
            Some(true)
        );
        // Wrong pseudo-header (addresses swapped is the same sum: change one).
        let mut d2 = d;
        d2[0] ^= 1;
        assert_eq!(
            verify_l4(false, &s, &d2, proto::TCP, &golden::TCP_SYN[34..]),
            Some(false)
        );
        let (s, d) = addrs4(&golden::UDP_DNS);
        assert_eq!(
            verify_l4(false, &s, &d, proto::UDP, &golden::UDP_DNS[34..]),
            Some(true)
        );
        let mut bad = golden::UDP_DNS;
        bad[60] ^= 0x40;
        assert_eq!(
            verify_l4(false, &s, &d, proto::UDP, &bad[34..]),
            Some(false)
        );
        // A zero UDP checksum: "none" over IPv4, invalid over IPv6.
        let mut none = golden::UDP_DNS;
        none[40..42].fill(0);
        assert_eq!(
            verify_l4(false, &s, &d, proto::UDP, &none[34..]),
            Some(true)
        );
        assert_eq!(
            verify_l4(true, &s, &d, proto::UDP, &none[34..]),
            Some(false)
        );
        let (s, d) = addrs4(&golden::ICMP_PORT_UNREACH);
        let icmp = &golden::ICMP_PORT_UNREACH[34..];
        assert_eq!(verify_l4(false, &s, &d, proto::ICMP, icmp), Some(true));
        // ICMP over IPv6 is not a thing; neither is a short header.
        assert_eq!(verify_l4(true, &s, &d, proto::ICMP, icmp), None);
        assert_eq!(verify_l4(false, &s, &d, proto::TCP, &icmp[..19]), None);
        assert_eq!(verify_l4(false, &s, &d, 47, icmp), None);
        let v6 = &golden::ICMPV6_ECHO[54..];
        assert_eq!(
            verify_l4(true, &golden::V6_A, &golden::V6_B, proto::ICMPV6, v6),
            Some(true)
        );
        assert_eq!(
            verify_l4(true, &golden::V6_B, &golden::V6_B, proto::ICMPV6, v6),
            Some(false)
        );
    }

    /// The plain big-endian 16-bit word sum, as RFC 1071 writes it.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        for pair in data.chunks(2) {
            let hi = u64::from(pair[0]) << 8;
            acc += hi + pair.get(1).map_or(0, |&b| u64::from(b));
        }
        fold(acc)
    }

    proptest::proptest! {
        /// The wide little-endian sum equals the textbook word-by-word
        /// sum for every length and content.
        #[test]
        fn sum_equals_the_reference_sum(data in proptest::collection::vec(proptest::num::u8::ANY, 0..3000)) {
            proptest::prop_assert_eq!(sum(&data), reference_sum(&data));
        }
    }

    proptest::proptest! {
        #[test]
        fn verify_l4_never_panics(
            seg in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            proto in proptest::num::u8::ANY,
            v6 in proptest::bool::ANY,
        ) {
            let _ = verify_l4(v6, &[1; 16], &[2; 16], proto, &seg);
        }
    }
}
