//! Software completion of TCP/UDP checksums the kernel left partial.
//!
//! A frame whose skb was `CHECKSUM_PARTIAL` (the sender relied on checksum
//! offload, common on veth and on locally generated traffic) reaches the
//! ring with `TP_STATUS_CSUMNOTREADY` set: its L4 checksum field holds only
//! the pseudo-header sum. Forwarding such a frame as-is would put a bad
//! checksum on the wire, so [`complete_l4_checksum`] recomputes it.
//!
//! Private to the AF_PACKET backend; the general checksum code lives in
//! `packet`. Never panics on any input: every offset is checked.

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Offset of the checksum field inside the TCP header.
const TCP_CSUM_OFFSET: usize = 16;
/// Offset of the checksum field inside the UDP header.
const UDP_CSUM_OFFSET: usize = 6;

/// What [`complete_l4_checksum`] did to a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CsumOutcome {
    /// The TCP or UDP checksum was recomputed and written.
    Filled,
    /// The frame is not TCP/UDP over IPv4/IPv6 (or is a fragment, or is
    /// truncated); nothing was changed.
    Skipped,
}

/// Running one's-complement sum (RFC 1071) over big-endian 16-bit words.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct OnesComplement(u64);

impl OnesComplement {
    /// Adds `bytes`, padding an odd final byte with zero. Only the last
    /// chunk added may have odd length.
    pub(crate) fn add_bytes(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(2);
        for c in &mut chunks {
            self.0 += u64::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            self.0 += u64::from(u16::from_be_bytes([*last, 0]));
        }
    }

    /// Adds one 16-bit word.
    pub(crate) fn add_u16(&mut self, word: u16) {
        self.0 += u64::from(word);
    }

    /// Adds a 32-bit value as two words.
    pub(crate) fn add_u32(&mut self, value: u32) {
        self.0 += u64::from(value >> 16) + u64::from(value & 0xffff);
    }

    /// The folded sum, not yet complemented.
    pub(crate) fn fold(self) -> u16 {
        let mut s = self.0;
        while s > 0xffff {
            s = (s & 0xffff) + (s >> 16);
        }
        // The loop leaves s <= 0xffff.
        u16::try_from(s).unwrap_or(0xffff)
    }

    /// The checksum to write: the complement of the folded sum.
    pub(crate) fn finish(self) -> u16 {
        !self.fold()
    }
}

/// One's-complement checksum of `bytes` (the value an IPv4 header carries).
#[cfg(test)]
pub(crate) fn checksum(bytes: &[u8]) -> u16 {
    let mut s = OnesComplement::default();
    s.add_bytes(bytes);
    s.finish()
}

fn be16(frame: &[u8], at: usize) -> Option<u16> {
    let b = frame.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// Recomputes the TCP or UDP checksum of an Ethernet frame (up to two VLAN
/// tags, IPv4 or IPv6 with hop-by-hop/routing/destination-options extension
/// headers). The L4 length is taken from the IP header, so trailing
/// Ethernet padding is ignored. Fragments are skipped (they never carry a
/// partial checksum). Never panics.
pub(crate) fn complete_l4_checksum(frame: &mut [u8]) -> CsumOutcome {
    fill(frame).unwrap_or(CsumOutcome::Skipped)
}

fn fill(frame: &mut [u8]) -> Option<CsumOutcome> {
    let mut off = 12;
    let mut ethertype = be16(frame, off)?;
    off += 2;
    for _ in 0..2 {
        if matches!(
            ethertype,
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
        ) {
            ethertype = be16(frame, off + 2)?;
            off += 4;
        }
    }
    let mut pseudo = OnesComplement::default();
    let (proto, l4_start, l4_len) = match ethertype {
        ETHERTYPE_IPV4 => {
            let ip = frame.get(off..off.checked_add(20)?)?;
            if ip[0] >> 4 != 4 {
                return None;
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
            let frag = u16::from_be_bytes([ip[6], ip[7]]);
            // More-fragments set or a non-zero offset: not a whole datagram.
            if frag & 0x3fff != 0 || ihl < 20 || total < ihl {
                return None;
            }
            let proto = ip[9];
            pseudo.add_bytes(&ip[12..20]);
            (proto, off + ihl, total - ihl)
        }
        ETHERTYPE_IPV6 => {
            let ip = frame.get(off..off.checked_add(40)?)?;
            if ip[0] >> 4 != 6 {
                return None;
            }
            let payload = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
            pseudo.add_bytes(&ip[8..40]);
            let mut next = ip[6];
            let mut at = off + 40;
            let end = at.checked_add(payload)?;
            // Hop-by-hop (0), routing (43), destination options (60).
            // A routing header with segments left would change the final
            // destination in the pseudo-header; skip those frames.
            for _ in 0..4 {
                match next {
                    0 | 60 => {}
                    43 => {
                        if *frame.get(at + 3)? != 0 {
                            return None;
                        }
                    }
                    _ => break,
                }
                next = *frame.get(at)?;
                let len = (usize::from(*frame.get(at + 1)?) + 1) * 8;
                at = at.checked_add(len)?;
            }
            if at > end {
                return None;
            }
            (next, at, end - at)
        }
        _ => return None,
    };
    let csum_at = match proto {
        IPPROTO_TCP if l4_len >= 20 => l4_start + TCP_CSUM_OFFSET,
        IPPROTO_UDP if l4_len >= 8 => l4_start + UDP_CSUM_OFFSET,
        _ => return None,
    };
    let l4_end = l4_start.checked_add(l4_len)?;
    if l4_end > frame.len() {
        return None;
    }
    pseudo.add_u16(u16::from(proto));
    pseudo.add_u32(u32::try_from(l4_len).ok()?);
    frame[csum_at] = 0;
    frame[csum_at + 1] = 0;
    pseudo.add_bytes(&frame[l4_start..l4_end]);
    let mut csum = pseudo.finish();
    if proto == IPPROTO_UDP && csum == 0 {
        // RFC 768: a computed zero is sent as all ones.
        csum = 0xffff;
    }
    frame[csum_at..csum_at + 2].copy_from_slice(&csum.to_be_bytes());
    Some(CsumOutcome::Filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071 section 3 example.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        let mut s = OnesComplement::default();
        s.add_bytes(&data);
        assert_eq!(s.fold(), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(checksum(&[0xab]), !0xab00);
    }

    /// IPv4 header from Wikipedia's "IPv4 header checksum" article.
    #[test]
    fn ipv4_header_golden() {
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0xb861);
    }

    fn eth(ethertype: u16) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    /// Ethernet + IPv4 + UDP (192.0.2.1:1234 -> 198.51.100.2:5678).
    fn udp4(payload: &[u8]) -> Vec<u8> {
        let mut f = eth(ETHERTYPE_IPV4);
        let total = u16::try_from(20 + 8 + payload.len()).unwrap();
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, IPPROTO_UDP, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[192, 0, 2, 1, 198, 51, 100, 2]);
        let c = checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&1234u16.to_be_bytes());
        f.extend_from_slice(&5678u16.to_be_bytes());
        f.extend_from_slice(&(total - 20).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        f
    }

    /// Verifies the L4 checksum of an IPv4 frame starting at `ip`.
    fn verify4(f: &[u8], ip: usize) -> bool {
        let ihl = usize::from(f[ip] & 0xf) * 4;
        let total = usize::from(u16::from_be_bytes([f[ip + 2], f[ip + 3]]));
        let mut s = OnesComplement::default();
        s.add_bytes(&f[ip + 12..ip + 20]);
        s.add_u16(u16::from(f[ip + 9]));
        s.add_u32(u32::try_from(total - ihl).unwrap());
        s.add_bytes(&f[ip + ihl..ip + total]);
        s.fold() == 0xffff
    }

    #[test]
    fn fills_udp4_and_matches_known_value() {
        let mut f = udp4(b"hello");
        // Put a "partial" value in the field, as the kernel would.
        f[14 + 20 + 6] = 0x12;
        f[14 + 20 + 7] = 0x34;
        assert_eq!(complete_l4_checksum(&mut f), CsumOutcome::Filled);
        assert!(verify4(&f, 14));
        // Idempotent.
        let before = f.clone();
        complete_l4_checksum(&mut f);
        assert_eq!(f, before);
    }

    #[test]
    fn ignores_ethernet_padding_and_handles_vlan() {
        let mut f = udp4(b"");
        f.extend_from_slice(&[0xee; 18]); // padding up to the 60-byte minimum
        let mut tagged = f[..12].to_vec();
        tagged.extend_from_slice(&[0x88, 0xa8, 0, 10, 0x81, 0x00, 0, 20]);
        tagged.extend_from_slice(&f[12..]);
        assert_eq!(complete_l4_checksum(&mut f), CsumOutcome::Filled);
        assert!(verify4(&f, 14));
        assert_eq!(complete_l4_checksum(&mut tagged), CsumOutcome::Filled);
        assert!(verify4(&tagged, 22));
    }

    #[test]
    fn fills_tcp6_with_extension_header() {
        let mut f = eth(ETHERTYPE_IPV6);
        let tcp_len = 20 + 3;
        let payload_len = 8 + tcp_len;
        let mut ip = vec![0x60, 0, 0, 0];
        ip.extend_from_slice(&u16::try_from(payload_len).unwrap().to_be_bytes());
        ip.push(0); // hop-by-hop
        ip.push(64);
        ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        f.extend_from_slice(&ip);
        f.extend_from_slice(&[IPPROTO_TCP, 0, 1, 4, 0, 0, 0, 0]); // HBH with PadN
        let mut tcp = vec![0u8; 20];
        tcp[12] = 5 << 4;
        f.extend_from_slice(&tcp);
        f.extend_from_slice(b"abc");
        assert_eq!(complete_l4_checksum(&mut f), CsumOutcome::Filled);
        let l4 = 14 + 40 + 8;
        let mut s = OnesComplement::default();
        s.add_bytes(&f[14 + 8..14 + 40]);
        s.add_u16(u16::from(IPPROTO_TCP));
        s.add_u32(u32::try_from(tcp_len).unwrap());
        s.add_bytes(&f[l4..]);
        assert_eq!(s.fold(), 0xffff);
    }

    #[test]
    fn skips_fragments_non_ip_and_truncated() {
        let mut frag = udp4(b"x");
        frag[14 + 6] |= 0x20; // more fragments
        let before = frag.clone();
        assert_eq!(complete_l4_checksum(&mut frag), CsumOutcome::Skipped);
        assert_eq!(frag, before);

        let mut arp = eth(0x0806);
        arp.extend_from_slice(&[0; 28]);
        assert_eq!(complete_l4_checksum(&mut arp), CsumOutcome::Skipped);

        let mut f = udp4(b"truncated payload");
        f.truncate(f.len() - 3);
        assert_eq!(complete_l4_checksum(&mut f), CsumOutcome::Skipped);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A deterministic sweep of short and mutated frames.
        let base = udp4(b"0123456789");
        for len in 0..base.len() {
            let mut f = base[..len].to_vec();
            let _ = complete_l4_checksum(&mut f);
        }
        for i in 0..base.len() {
            for v in [0x00, 0x0f, 0x45, 0x60, 0xff] {
                let mut f = base.clone();
                f[i] = v;
                let _ = complete_l4_checksum(&mut f);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn prop_never_panics(mut bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = complete_l4_checksum(&mut bytes);
        }

        #[test]
        fn prop_filled_udp4_verifies(
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            junk in proptest::num::u16::ANY,
        ) {
            let mut f = udp4(&payload);
            f[14 + 26..14 + 28].copy_from_slice(&junk.to_be_bytes());
            proptest::prop_assert_eq!(complete_l4_checksum(&mut f), CsumOutcome::Filled);
            proptest::prop_assert!(verify4(&f, 14));
            proptest::prop_assert_ne!(&f[14 + 26..14 + 28], &[0u8, 0][..]);
        }
    }
}
