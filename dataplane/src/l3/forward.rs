//! Forwarding helpers, all in place or into a caller's buffer, none
//! allocating: MAC rewrite, TTL / hop-limit decrement (IPv4 header checksum
//! updated incrementally, RFC 1624), ICMP / ICMPv6 time exceeded (RFC 792,
//! RFC 4443 3.3) from the ingress port's address, and echo replies to
//! pings of our own addresses.

use std::net::IpAddr;

use crate::meta::{Fragment, L3Kind, PacketMeta};
use crate::packet::checksum;
use crate::packet::ethernet::{EthernetFrame, MacAddr};
use crate::packet::icmp_error::{self, Answer};
use crate::packet::{icmp, icmpv6, ipv4, ipv6, Error, IcmpPacket, Ipv4Packet, Ipv6Packet};

/// TTL of the packets we originate.
pub const OWN_TTL: u8 = 64;

/// Rewrites the Ethernet addresses of `frame`.
#[inline]
pub fn rewrite_macs(frame: &mut [u8], src: MacAddr, dst: MacAddr) -> Result<(), Error> {
    let mut e = EthernetFrame::new_checked(frame)?;
    e.set_src_addr(src);
    e.set_dst_addr(dst);
    Ok(())
}

/// Decrements the TTL (IPv4, header checksum updated incrementally) or
/// hop limit (IPv6) of the IP packet parsed into `meta`. Returns the new
/// value; a packet whose TTL is 0 or 1 is left alone
/// ([`Error::Unsupported`]): it must not be forwarded.
#[inline]
pub fn decrement_ttl(frame: &mut [u8], meta: &PacketMeta) -> Result<u8, Error> {
    let l3 = usize::from(meta.l3_offset);
    match meta.l3 {
        L3Kind::Ipv4 => {
            let h = frame
                .get_mut(l3..l3 + ipv4::HEADER_LEN)
                .ok_or(Error::Truncated)?;
            let mut ip = Ipv4Packet::new_unchecked(h);
            let ttl = ip.ttl();
            if ttl <= 1 {
                return Err(Error::Unsupported);
            }
            ip.set_ttl_update_checksum(ttl - 1);
            Ok(ttl - 1)
        }
        L3Kind::Ipv6 => {
            let h = frame
                .get_mut(l3..l3 + ipv6::HEADER_LEN)
                .ok_or(Error::Truncated)?;
            let mut ip = Ipv6Packet::new_unchecked(h);
            let hl = ip.hop_limit();
            if hl <= 1 {
                return Err(Error::Unsupported);
            }
            ip.set_hop_limit(hl - 1);
            Ok(hl - 1)
        }
        L3Kind::NonIp => Err(Error::Unsupported),
    }
}

/// The ICMP errors a router answers a packet with (as a Linux router
/// does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouterError {
    /// TTL or hop limit ran out: ICMP time exceeded in transit (11/0),
    /// ICMPv6 time exceeded, hop limit (3/0).
    TimeExceeded,
    /// No route to the destination: ICMP network unreachable (3/0),
    /// ICMPv6 no route to destination (1/0).
    NoRoute,
    /// The next hop never answered ARP or neighbour solicitation: ICMP
    /// host unreachable (3/1), ICMPv6 address unreachable (1/3).
    HostUnreachable,
}

impl RouterError {
    /// ICMP (or ICMPv6 with `v6`) type and code.
    fn type_code(self, v6: bool) -> (u8, u8) {
        match (self, v6) {
            (RouterError::TimeExceeded, false) => (icmp::msg_type::TIME_EXCEEDED, 0),
            (RouterError::TimeExceeded, true) => (icmpv6::msg_type::TIME_EXCEEDED, 0),
            (RouterError::NoRoute, false) => (icmp::msg_type::DST_UNREACHABLE, 0),
            (RouterError::NoRoute, true) => (icmpv6::msg_type::DST_UNREACHABLE, 0),
            (RouterError::HostUnreachable, false) => (icmp::msg_type::DST_UNREACHABLE, 1),
            (RouterError::HostUnreachable, true) => (icmpv6::msg_type::DST_UNREACHABLE, 3),
        }
    }
}

/// Writes the ICMP or ICMPv6 error `kind` answering the IP packet `frame`
/// (parsed into `meta`) into `out`; returns its length. The answer comes
/// from `src` (the ingress port's address, same family), goes back to the
/// packet's source from `our_mac` to the MAC it came from, and embeds as
/// much of the packet as fits 576 (IPv4) or 1280 (IPv6) bytes and `out`
/// ([`icmp_error::write_answer`]). Never answers ICMP errors or later
/// fragments ([`Error::Unsupported`]).
pub fn router_error(
    kind: RouterError,
    frame: &[u8],
    meta: &PacketMeta,
    src: IpAddr,
    our_mac: MacAddr,
    out: &mut [u8],
) -> Result<usize, Error> {
    let (msg_type, code) = kind.type_code(meta.tuple.v6);
    let answer = Answer {
        msg_type,
        code,
        src,
        ttl: OWN_TTL,
        eth_src: our_mac,
        eth_dst: EthernetFrame::new_checked(frame)?.src_addr(),
    };
    icmp_error::write_answer(frame, meta, &answer, out)
}

/// Whether the packet is an echo request (ICMP 8 or ICMPv6 128) that is not
/// a later fragment.
#[inline]
pub fn is_echo_request(meta: &PacketMeta) -> bool {
    let t = &meta.tuple;
    meta.fragment == Fragment::None
        && t.is_icmp()
        && meta.icmp_error.is_none()
        && t.icmp_type()
            == if t.v6 {
                icmpv6::msg_type::ECHO_REQUEST
            } else {
                icmp::msg_type::ECHO_REQUEST
            }
}

/// Turns the echo request `frame` (parsed into `meta`, see
/// [`is_echo_request`]) into its echo reply in place: MACs and addresses
/// swapped (the source MAC becomes `our_mac`), TTL [`OWN_TTL`], type
/// changed; checksums updated incrementally (swapping the addresses does
/// not change the pseudo-header sum).
pub fn echo_reply_in_place(
    frame: &mut [u8],
    meta: &PacketMeta,
    our_mac: MacAddr,
) -> Result<(), Error> {
    if !is_echo_request(meta) {
        return Err(Error::Unsupported);
    }
    let peer: MacAddr = EthernetFrame::new_checked(&frame[..])?.src_addr();
    rewrite_macs(frame, our_mac, peer)?;
    let l3 = usize::from(meta.l3_offset);
    let l4 = usize::from(meta.l4_offset);
    let v6 = meta.tuple.v6;
    // Swapping the addresses leaves every checksum as it is.
    if v6 {
        let h = frame
            .get_mut(l3..l3 + ipv6::HEADER_LEN)
            .ok_or(Error::Truncated)?;
        let mut ip = Ipv6Packet::new_unchecked(h);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_hop_limit(OWN_TTL);
    } else {
        let h = frame
            .get_mut(l3..l3 + ipv4::HEADER_LEN)
            .ok_or(Error::Truncated)?;
        let mut ip = Ipv4Packet::new_unchecked(h);
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        ip.set_src_addr(dst);
        ip.set_dst_addr(src);
        ip.set_ttl_update_checksum(OWN_TTL);
    }
    // ICMP and ICMPv6 share the header layout.
    let m = frame
        .get_mut(l4..l4 + icmp::HEADER_LEN)
        .ok_or(Error::Truncated)?;
    let mut msg = IcmpPacket::new_unchecked(m);
    let reply = if v6 {
        icmpv6::msg_type::ECHO_REPLY
    } else {
        icmp::msg_type::ECHO_REPLY
    };
    let old = u16::from_be_bytes([msg.msg_type(), msg.msg_code()]);
    let new = u16::from_be_bytes([reply, msg.msg_code()]);
    let c = checksum::update_u16(msg.checksum(), old, new);
    msg.set_msg_type(reply);
    msg.set_checksum(c);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::builder::{FrameSpec, L4Spec};
    use crate::packet::{l4_checksum_valid, parse_frame, TcpOptions};

    const OURS: MacAddr = [0x02, 0, 0x5e, 0x10, 0, 1];

    fn tcp(src: &str, dst: &str, ttl: u8) -> Vec<u8> {
        FrameSpec {
            src_ip: src.parse().unwrap(),
            dst_ip: dst.parse().unwrap(),
            ttl,
            l4: L4Spec::Tcp {
                src_port: 40000,
                dst_port: 80,
                seq: 1,
                ack: 0,
                flags: 2,
                window: 1000,
                options: TcpOptions::default(),
            },
            payload_len: 100,
            ..FrameSpec::default()
        }
        .to_vec()
        .unwrap()
    }

    #[test]
    fn ttl_decrement_keeps_checksum_valid() {
        for ttl in [2u8, 64, 255] {
            let mut f = tcp("192.0.2.10", "198.51.100.2", ttl);
            let m = parse_frame(&f).unwrap();
            assert_eq!(decrement_ttl(&mut f, &m), Ok(ttl - 1));
            let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
            assert_eq!(ip.ttl(), ttl - 1);
            assert!(ip.verify_checksum(), "ttl {ttl}");
            // Same bytes as a frame built with the lower TTL.
            assert_eq!(f, tcp("192.0.2.10", "198.51.100.2", ttl - 1));
        }
        let mut f = tcp("2001:db8:1::10", "2001:db8:2::2", 64);
        let m = parse_frame(&f).unwrap();
        assert_eq!(decrement_ttl(&mut f, &m), Ok(63));
        assert_eq!(parse_frame(&f).unwrap().ttl, 63);
        for ttl in [0u8, 1] {
            let mut f = tcp("192.0.2.10", "198.51.100.2", ttl);
            let m = parse_frame(&f).unwrap();
            let copy = f.clone();
            assert_eq!(decrement_ttl(&mut f, &m), Err(Error::Unsupported));
            assert_eq!(f, copy, "untouched");
        }
    }

    #[test]
    fn time_exceeded_v4() {
        let f = tcp("192.0.2.10", "198.51.100.2", 1);
        let m = parse_frame(&f).unwrap();
        let mut out = [0u8; 2048];
        let n = router_error(
            RouterError::TimeExceeded,
            &f,
            &m,
            "192.0.2.1".parse().unwrap(),
            OURS,
            &mut out,
        )
        .unwrap();
        let r = parse_frame(&out[..n]).unwrap();
        assert_eq!(r.tuple.src_ip().to_string(), "192.0.2.1");
        assert_eq!(r.tuple.dst_ip().to_string(), "192.0.2.10");
        assert_eq!((r.tuple.icmp_type(), r.tuple.icmp_code()), (11, 0));
        assert_eq!(r.icmp_error, Some(m.tuple));
        assert_eq!(r.ttl, OWN_TTL);
        assert_eq!(l4_checksum_valid(&out[..n], &r), Some(true));
        assert_eq!(&out[..6], &f[6..12], "back to the sender's MAC");
        assert_eq!(&out[6..12], &OURS);
        // The whole offending packet fits 576 bytes.
        assert_eq!(n, 14 + 20 + 8 + (f.len() - 14));
        // Never answer an ICMP error, nor across families.
        let mut e = [0u8; 2048];
        assert_eq!(
            router_error(
                RouterError::TimeExceeded,
                &out[..n],
                &r,
                "192.0.2.1".parse().unwrap(),
                OURS,
                &mut e
            ),
            Err(Error::Unsupported)
        );
        assert_eq!(
            router_error(
                RouterError::TimeExceeded,
                &f,
                &m,
                "2001:db8::1".parse().unwrap(),
                OURS,
                &mut e
            ),
            Err(Error::Unsupported)
        );
    }

    /// No route (IPv4 3/0, ICMPv6 1/0) and a next hop that never answered
    /// (3/1, 1/3): built like time exceeded, quoting the packet, never in
    /// answer to an ICMP error.
    #[test]
    fn unreachable_answers_v4_and_v6() {
        let v4 = tcp("192.0.2.10", "203.0.113.200", 64);
        let v6 = FrameSpec {
            src_ip: "2001:db8:1::10".parse().unwrap(),
            dst_ip: "2001:db8:9::2".parse().unwrap(),
            ..FrameSpec::default()
        }
        .to_vec()
        .unwrap();
        let cases = [
            (RouterError::NoRoute, &v4, "192.0.2.1", (3, 0)),
            (RouterError::NoRoute, &v6, "2001:db8:1::1", (1, 0)),
            (RouterError::HostUnreachable, &v4, "192.0.2.1", (3, 1)),
            (RouterError::HostUnreachable, &v6, "2001:db8:1::1", (1, 3)),
        ];
        for (kind, f, from, type_code) in cases {
            let from: IpAddr = from.parse().unwrap();
            let m = parse_frame(f).unwrap();
            let mut out = [0u8; 2048];
            let n = router_error(kind, f, &m, from, OURS, &mut out).unwrap();
            let r = parse_frame(&out[..n]).unwrap();
            assert_eq!((r.tuple.icmp_type(), r.tuple.icmp_code()), type_code);
            assert_eq!(r.tuple.src_ip(), from);
            assert_eq!(r.tuple.dst_ip(), m.tuple.src_ip());
            assert_eq!(r.icmp_error, Some(m.tuple));
            assert_eq!(l4_checksum_valid(&out[..n], &r), Some(true));
            let mut e = [0u8; 2048];
            assert_eq!(
                router_error(kind, &out[..n], &r, from, OURS, &mut e),
                Err(Error::Unsupported),
                "{kind:?} answered an ICMP error"
            );
        }
    }

    #[test]
    fn time_exceeded_v6_capped() {
        let mut spec = FrameSpec {
            src_ip: "2001:db8:1::10".parse().unwrap(),
            dst_ip: "2001:db8:2::2".parse().unwrap(),
            ttl: 1,
            ..FrameSpec::default()
        };
        spec.payload_len = 1400;
        let f = spec.to_vec().unwrap();
        let m = parse_frame(&f).unwrap();
        let mut out = [0u8; 2048];
        let n = router_error(
            RouterError::TimeExceeded,
            &f,
            &m,
            "2001:db8:1::1".parse().unwrap(),
            OURS,
            &mut out,
        )
        .unwrap();
        assert_eq!(n, 14 + 1280);
        let r = parse_frame(&out[..n]).unwrap();
        assert_eq!((r.tuple.icmp_type(), r.tuple.icmp_code()), (3, 0));
        assert_eq!(r.icmp_error, Some(m.tuple));
        assert_eq!(l4_checksum_valid(&out[..n], &r), Some(true));
    }

    fn ping(src: &str, dst: &str) -> Vec<u8> {
        FrameSpec {
            src_ip: src.parse().unwrap(),
            dst_ip: dst.parse().unwrap(),
            ttl: 63,
            l4: L4Spec::Icmp {
                msg_type: if src.contains(':') { 128 } else { 8 },
                code: 0,
                ident: 0x1234,
                seq_no: 7,
            },
            payload_len: 56,
            ..FrameSpec::default()
        }
        .to_vec()
        .unwrap()
    }

    #[test]
    fn echo_replies() {
        for (a, b) in [
            ("192.0.2.10", "192.0.2.1"),
            ("2001:db8:1::10", "2001:db8:1::1"),
        ] {
            let mut f = ping(a, b);
            let m = parse_frame(&f).unwrap();
            assert!(is_echo_request(&m));
            let peer_mac: [u8; 6] = f[6..12].try_into().unwrap();
            echo_reply_in_place(&mut f, &m, OURS).unwrap();
            let r = parse_frame(&f).unwrap();
            assert_eq!(r.tuple.src_ip().to_string(), b);
            assert_eq!(r.tuple.dst_ip().to_string(), a);
            assert_eq!(r.tuple.icmp_id(), 0x1234);
            assert_eq!(r.tuple.icmp_type(), if m.tuple.v6 { 129 } else { 0 });
            assert_eq!(r.ttl, OWN_TTL);
            assert_eq!(l4_checksum_valid(&f, &r), Some(true));
            assert_eq!((&f[..6], &f[6..12]), (&peer_mac[..], &OURS[..]));
            // A reply is not answered again.
            assert_eq!(
                echo_reply_in_place(&mut f, &r, OURS),
                Err(Error::Unsupported)
            );
        }
    }
}
