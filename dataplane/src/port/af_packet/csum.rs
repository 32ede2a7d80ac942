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

use crate::flow::proto;
use crate::meta::Fragment;
use crate::packet::{checksum, tcp, udp, walk};

/// What [`complete_l4_checksum`] did to a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CsumOutcome {
    /// The TCP or UDP checksum was recomputed and written.
    Filled,
    /// The frame is not TCP/UDP over IPv4/IPv6 (or is a fragment, or is
    /// truncated); nothing was changed.
    Skipped,
}

/// Recomputes the TCP or UDP checksum of an Ethernet frame (up to two VLAN
/// tags, IPv4 or IPv6 with extension headers, as [`walk::walk`] reads them).
/// The L4 length is taken from the IP header, so trailing Ethernet padding
/// is ignored. Fragments are skipped (they never carry a partial checksum),
/// and so are IPv6 packets whose routing header has segments left (the
/// pseudo-header would need the final destination). Never panics.
pub(crate) fn complete_l4_checksum(frame: &mut [u8]) -> CsumOutcome {
    fill(frame).unwrap_or(CsumOutcome::Skipped)
}

fn fill(frame: &mut [u8]) -> Option<CsumOutcome> {
    let ip = walk::walk(frame).ok()?.ip?;
    if ip.fragment != Fragment::None || !ip.dst_is_final() {
        return None;
    }
    let field = match ip.proto {
        proto::TCP if ip.l4_len() >= tcp::HEADER_LEN => tcp::field::CHECKSUM,
        proto::UDP if ip.l4_len() >= udp::HEADER_LEN => udp::field::CHECKSUM,
        _ => return None,
    };
    let pseudo = ip.pseudo_header_sum()?;
    let segment = frame.get_mut(ip.l4_range())?;
    segment.get_mut(field..field + 2)?.fill(0);
    let mut csum = checksum::finish(checksum::combine(&[pseudo, checksum::sum(segment)]));
    if ip.proto == proto::UDP && csum == 0 {
        // RFC 768: a computed zero is sent as all ones.
        csum = 0xffff;
    }
    segment[field..field + 2].copy_from_slice(&csum.to_be_bytes());
    Some(CsumOutcome::Filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETHERTYPE_IPV4: u16 = 0x0800;
    const ETHERTYPE_IPV6: u16 = 0x86dd;

    fn checksum(bytes: &[u8]) -> u16 {
        checksum::finish(checksum::sum(bytes))
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
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto::UDP, 0, 0];
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
        let pseudo = checksum::pseudo_header_v4(
            &f[ip + 12..ip + 16].try_into().unwrap(),
            &f[ip + 16..ip + 20].try_into().unwrap(),
            f[ip + 9],
            u16::try_from(total - ihl).unwrap(),
        );
        checksum::combine(&[pseudo, checksum::sum(&f[ip + ihl..ip + total])]) == 0xffff
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
        f.extend_from_slice(&[proto::TCP, 0, 1, 4, 0, 0, 0, 0]); // HBH with PadN
        let mut tcp = vec![0u8; 20];
        tcp[12] = 5 << 4;
        f.extend_from_slice(&tcp);
        f.extend_from_slice(b"abc");
        assert_eq!(complete_l4_checksum(&mut f), CsumOutcome::Filled);
        let l4 = 14 + 40 + 8;
        let pseudo = checksum::pseudo_header_v6(
            &f[14 + 8..14 + 24].try_into().unwrap(),
            &f[14 + 24..14 + 40].try_into().unwrap(),
            proto::TCP,
            u32::try_from(tcp_len).unwrap(),
        );
        assert_eq!(
            checksum::combine(&[pseudo, checksum::sum(&f[l4..])]),
            0xffff
        );
    }

    #[test]
    fn skips_ipv6_with_routing_segments_left() {
        let mut f = eth(ETHERTYPE_IPV6);
        let mut ip = vec![0x60, 0, 0, 0, 0, 8 + 20, 43, 64];
        ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        ip.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        f.extend_from_slice(&ip);
        // Routing header, type 4, one segment left.
        f.extend_from_slice(&[proto::TCP, 0, 4, 1, 0, 0, 0, 0]);
        let mut tcp = vec![0u8; 20];
        tcp[12] = 5 << 4;
        f.extend_from_slice(&tcp);
        let before = f.clone();
        assert_eq!(complete_l4_checksum(&mut f), CsumOutcome::Skipped);
        assert_eq!(f, before);
        // With no segment left the destination is final: filled.
        f[14 + 40 + 3] = 0;
        assert_eq!(complete_l4_checksum(&mut f), CsumOutcome::Filled);
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
