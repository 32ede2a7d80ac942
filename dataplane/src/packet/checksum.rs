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

/// Unfolded sum of `data` as big-endian 16-bit words; an odd trailing byte is
/// padded with zero. 32-bit words are added into a u64, which cannot overflow
/// for any slice shorter than 16 GiB.
#[inline]
fn sum_wide(data: &[u8]) -> u64 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(4);
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

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word of the covered
/// data changed from `old` to `new`: `HC' = ~(~HC + ~m + m')`.
#[inline]
pub fn update_u16(csum: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!csum) + u64::from(!old) + u64::from(new))
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
}
