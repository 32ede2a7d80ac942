//! Answers for the ACL's `reject` action: a TCP RST (RFC 9293 section
//! 3.10.7.1) or an ICMP/ICMPv6 destination unreachable, administratively
//! prohibited, both written into a caller's buffer without allocating.
//!
//! The answer copies the offending frame's L2 header (VLAN tags included)
//! with the MAC addresses swapped, and comes from the offending packet's
//! destination address, as if that host had answered.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::builder::{FrameSpec, L4Spec};
use super::ethernet::EthernetFrame;
use super::icmp_error::{self, Answer};
use super::tcp_opt::TcpOptions;
use super::{icmp, icmpv6, rd_array, Error};
use crate::flow::{proto, Tuple};
use crate::meta::{tcp_flags, Fragment, PacketMeta};

/// TTL / hop limit of the answers.
pub const REPLY_TTL: u8 = 64;
pub use super::icmp_error::{ICMP_V4_MAX, ICMP_V6_MAX};

/// Copies the L2 header of `frame` into `out` with the MACs swapped.
fn copy_l2_swapped(frame: &[u8], meta: &PacketMeta, out: &mut [u8]) -> Result<usize, Error> {
    let e = EthernetFrame::new_checked(frame)?;
    icmp_error::copy_l2(
        frame,
        usize::from(meta.l3_offset),
        e.dst_addr(),
        e.src_addr(),
        out,
    )
}

/// Addresses of the answer: the reverse of the packet's.
fn reversed_addrs(t: &Tuple) -> (IpAddr, IpAddr) {
    if t.v6 {
        (
            IpAddr::V6(Ipv6Addr::from(t.dst)),
            IpAddr::V6(Ipv6Addr::from(t.src)),
        )
    } else {
        let s: [u8; 4] = rd_array(&t.dst, 0);
        let d: [u8; 4] = rd_array(&t.src, 0);
        (IpAddr::V4(Ipv4Addr::from(s)), IpAddr::V4(Ipv4Addr::from(d)))
    }
}

/// Writes a TCP RST answering the TCP packet `frame` (as parsed into `meta`
/// by [`super::parse_frame`]) into `out`; returns the answer's length.
///
/// If the packet carries ACK, the RST has `seq = its ack` and no ACK;
/// otherwise `seq = 0` and RST|ACK acknowledging everything it occupied
/// (payload, SYN and FIN). Never answers a RST, a non-TCP packet or a
/// fragment that is not the first ([`Error::Unsupported`]).
pub fn tcp_rst(frame: &[u8], meta: &PacketMeta, out: &mut [u8]) -> Result<usize, Error> {
    if !meta.is_ip() || meta.tuple.proto != proto::TCP || meta.fragment == Fragment::Later {
        return Err(Error::Unsupported);
    }
    let f = meta.tcp;
    if f.flags & tcp_flags::RST != 0 {
        return Err(Error::Unsupported);
    }
    let (seq, ack, flags) = if f.flags & tcp_flags::ACK != 0 {
        (f.ack, 0, tcp_flags::RST)
    } else {
        let mut len = f.payload_len;
        if f.flags & tcp_flags::SYN != 0 {
            len = len.wrapping_add(1);
        }
        if f.flags & tcp_flags::FIN != 0 {
            len = len.wrapping_add(1);
        }
        (0, f.seq.wrapping_add(len), tcp_flags::RST | tcp_flags::ACK)
    };
    let (src_ip, dst_ip) = reversed_addrs(&meta.tuple);
    let spec = FrameSpec {
        src_ip,
        dst_ip,
        ttl: REPLY_TTL,
        ip_id: 0,
        dont_frag: true,
        l4: L4Spec::Tcp {
            src_port: meta.tuple.dst_port,
            dst_port: meta.tuple.src_port,
            seq,
            ack,
            flags,
            window: 0,
            options: TcpOptions::default(),
        },
        ..FrameSpec::default()
    };
    let l2 = copy_l2_swapped(frame, meta, out)?;
    let n = spec.ip_len(0);
    let ip = out.get_mut(l2..l2 + n).ok_or(Error::BufferTooSmall)?;
    spec.write_ip_headers(ip, 0)?;
    Ok(l2 + n)
}

/// Writes an ICMP destination unreachable (code 13, communication
/// administratively prohibited) or ICMPv6 destination unreachable (code 1,
/// administratively prohibited) answering the IP packet `frame` into `out`
/// with [`icmp_error::write_answer`]; returns the answer's length.
///
/// The offending IP packet is embedded, cut so the answer stays within 576
/// (IPv4) or 1280 (IPv6) bytes of IP and within `out`; `out` must hold at
/// least the headers plus 8 bytes of the offending packet's L4 header.
/// Never answers non-IP frames, later fragments or ICMP error messages
/// ([`Error::Unsupported`]).
pub fn icmp_unreachable(frame: &[u8], meta: &PacketMeta, out: &mut [u8]) -> Result<usize, Error> {
    if !meta.is_ip() {
        return Err(Error::Unsupported);
    }
    let e = EthernetFrame::new_checked(frame)?;
    let (src, _) = reversed_addrs(&meta.tuple);
    let (msg_type, code) = if meta.tuple.v6 {
        (
            icmpv6::msg_type::DST_UNREACHABLE,
            icmpv6::CODE_ADMIN_PROHIBITED,
        )
    } else {
        (icmp::msg_type::DST_UNREACHABLE, icmp::CODE_ADMIN_PROHIBITED)
    };
    let answer = Answer {
        msg_type,
        code,
        src,
        ttl: REPLY_TTL,
        eth_src: e.dst_addr(),
        eth_dst: e.src_addr(),
    };
    icmp_error::write_answer(frame, meta, &answer, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{golden, l4_checksum_valid, parse_frame, TcpPacket};

    #[test]
    fn rst_answers_syn() {
        let m = parse_frame(&golden::TCP_SYN).unwrap();
        let mut out = [0u8; 128];
        let n = tcp_rst(&golden::TCP_SYN, &m, &mut out).unwrap();
        assert_eq!(n, 54);
        let r = parse_frame(&out[..n]).unwrap();
        assert_eq!(r.tuple, m.tuple.inverse());
        assert_eq!(r.tcp.flags, tcp_flags::RST | tcp_flags::ACK);
        assert_eq!(r.tcp.seq, 0);
        assert_eq!(r.tcp.ack, 0x1a2b_3c4e);
        assert_eq!(&out[..6], &golden::MAC_A);
        assert_eq!(&out[6..12], &golden::MAC_B);
        assert_eq!(l4_checksum_valid(&out[..n], &r), Some(true));
        assert_eq!(
            tcp_rst(&golden::TCP_SYN, &m, &mut out[..53]),
            Err(Error::BufferTooSmall)
        );
    }

    #[test]
    fn rst_answers_ack_and_not_rst() {
        let mut spec = golden::tcp_syn_spec();
        spec.vlan = Some(42);
        spec.src_ip = "2001:db8::1".parse().unwrap();
        spec.dst_ip = "2001:db8::2".parse().unwrap();
        if let L4Spec::Tcp {
            ref mut flags,
            ref mut ack,
            ..
        } = spec.l4
        {
            *flags = tcp_flags::ACK | tcp_flags::PSH;
            *ack = 777;
        }
        spec.payload_len = 10;
        let f = spec.to_vec().unwrap();
        let m = parse_frame(&f).unwrap();
        let mut out = [0u8; 128];
        let n = tcp_rst(&f, &m, &mut out).unwrap();
        let r = parse_frame(&out[..n]).unwrap();
        assert_eq!(r.vlan, Some(42));
        assert_eq!(r.tuple, m.tuple.inverse());
        assert_eq!((r.tcp.flags, r.tcp.seq), (tcp_flags::RST, 777));
        assert_eq!(l4_checksum_valid(&out[..n], &r), Some(true));
        let t = TcpPacket::new_checked(&out[usize::from(r.l4_offset)..n]).unwrap();
        assert_eq!(t.window_len(), 0);
        // Never answer a RST.
        assert_eq!(
            tcp_rst(&out[..n], &r, &mut [0u8; 128]),
            Err(Error::Unsupported)
        );
        // Not TCP.
        let u = parse_frame(&golden::UDP_DNS).unwrap();
        assert_eq!(
            tcp_rst(&golden::UDP_DNS, &u, &mut out),
            Err(Error::Unsupported)
        );
    }

    #[test]
    fn icmp_unreachable_v4() {
        let m = parse_frame(&golden::UDP_DNS).unwrap();
        let mut out = [0u8; 1500];
        let n = icmp_unreachable(&golden::UDP_DNS, &m, &mut out).unwrap();
        assert_eq!(n, 14 + 20 + 8 + 57);
        let r = parse_frame(&out[..n]).unwrap();
        assert_eq!(r.tuple.proto, proto::ICMP);
        assert_eq!(r.tuple.dst_port, 3 << 8 | 13);
        assert_eq!(r.tuple.src, m.tuple.dst);
        assert_eq!(r.icmp_error, Some(m.tuple));
        assert_eq!(l4_checksum_valid(&out[..n], &r), Some(true));
        // Cut to fit a small buffer, but never below 8 bytes of L4.
        let n = icmp_unreachable(&golden::UDP_DNS, &m, &mut out[..14 + 28 + 28]).unwrap();
        assert_eq!(n, 70);
        assert_eq!(parse_frame(&out[..n]).unwrap().icmp_error, Some(m.tuple));
        assert_eq!(
            icmp_unreachable(&golden::UDP_DNS, &m, &mut out[..14 + 28 + 27]),
            Err(Error::BufferTooSmall)
        );
        // Never answer an ICMP error or a non-IP frame.
        let e = parse_frame(&golden::ICMP_PORT_UNREACH).unwrap();
        assert_eq!(
            icmp_unreachable(&golden::ICMP_PORT_UNREACH, &e, &mut out),
            Err(Error::Unsupported)
        );
        let a = parse_frame(&golden::ARP_REQUEST).unwrap();
        assert_eq!(
            icmp_unreachable(&golden::ARP_REQUEST, &a, &mut out),
            Err(Error::Unsupported)
        );
    }

    #[test]
    fn icmp_unreachable_v6_is_capped() {
        let mut spec = golden::tcp_syn_spec();
        spec.src_ip = "2001:db8::1".parse().unwrap();
        spec.dst_ip = "2001:db8::2".parse().unwrap();
        spec.payload_len = 1400;
        let f = spec.to_vec().unwrap();
        let m = parse_frame(&f).unwrap();
        let mut out = [0u8; 2000];
        let n = icmp_unreachable(&f, &m, &mut out).unwrap();
        assert_eq!(n, 14 + 1280);
        let r = parse_frame(&out[..n]).unwrap();
        assert_eq!(r.tuple.dst_port, 1 << 8 | 1);
        assert_eq!(r.icmp_error, Some(m.tuple));
        assert_eq!(l4_checksum_valid(&out[..n], &r), Some(true));
    }
}
