//! Golden frames (hand-built, real-looking; checksums computed by an
//! independent script) and the parse / emit tests over whole frames.
//!
//! Frames: a Linux-style TCP SYN with options, a UDP DNS query, an ICMP echo
//! request, an ICMP port unreachable embedding the DNS query, an IPv6 first
//! fragment with hop-by-hop and fragment headers, an ARP request, a QinQ
//! frame, an ICMPv6 echo request, an IPv4 packet with options and
//! Ethernet padding, and an IPv6 neighbor solicitation.

use std::net::IpAddr;

use super::builder::{FrameSpec, L4Spec};
use super::tcp_opt::TcpOptions;
use super::{l4_checksum_valid, parse_frame, Error};
use crate::flow::{proto, Tuple};
use crate::meta::{tcp_flags, Fragment, L3Kind, PacketMeta, TcpFacts};

/// Client MAC.
pub(crate) const MAC_A: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
/// Server / router MAC.
pub(crate) const MAC_B: [u8; 6] = [0x52, 0x54, 0x00, 0x65, 0x43, 0x21];
/// 2001:db8::1.
pub(crate) const V6_A: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
/// 2001:db8::2.
pub(crate) const V6_B: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// TCP_SYN (74 bytes).
pub(crate) const TCP_SYN: [u8; 74] = [
    0x52, 0x54, 0x00, 0x65, 0x43, 0x21, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00, 0x45, 0x00,
    0x00, 0x3c, 0x8c, 0x1d, 0x40, 0x00, 0x40, 0x06, 0xb7, 0x11, 0xc0, 0xa8, 0x01, 0x0a, 0x5d, 0xb8,
    0xd8, 0x22, 0xd4, 0x31, 0x01, 0xbb, 0x1a, 0x2b, 0x3c, 0x4d, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02,
    0xfa, 0xf0, 0x06, 0xd9, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x11,
    0x22, 0x33, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
];

/// UDP_DNS (71 bytes).
pub(crate) const UDP_DNS: [u8; 71] = [
    0x52, 0x54, 0x00, 0x65, 0x43, 0x21, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00, 0x45, 0x00,
    0x00, 0x39, 0x1c, 0x46, 0x00, 0x00, 0x40, 0x11, 0x44, 0x5d, 0x0a, 0x00, 0x00, 0x02, 0x08, 0x08,
    0x08, 0x08, 0xcf, 0x08, 0x00, 0x35, 0x00, 0x25, 0x9b, 0x19, 0xab, 0xcd, 0x01, 0x00, 0x00, 0x01,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63,
    0x6f, 0x6d, 0x00, 0x00, 0x01, 0x00, 0x01,
];

/// ICMP_ECHO (50 bytes).
pub(crate) const ICMP_ECHO: [u8; 50] = [
    0x52, 0x54, 0x00, 0x65, 0x43, 0x21, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00, 0x45, 0x00,
    0x00, 0x24, 0x00, 0x01, 0x40, 0x00, 0x40, 0x01, 0x26, 0xd6, 0x0a, 0x00, 0x00, 0x02, 0x0a, 0x00,
    0x00, 0x01, 0x08, 0x00, 0x54, 0x35, 0x12, 0x34, 0x00, 0x01, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66,
    0x67, 0x68,
];

/// ICMP_PORT_UNREACH (70 bytes).
pub(crate) const ICMP_PORT_UNREACH: [u8; 70] = [
    0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x52, 0x54, 0x00, 0x65, 0x43, 0x21, 0x08, 0x00, 0x45, 0xc0,
    0x00, 0x38, 0x00, 0x02, 0x00, 0x00, 0x40, 0x01, 0x5f, 0xf2, 0x08, 0x08, 0x08, 0x08, 0x0a, 0x00,
    0x00, 0x02, 0x03, 0x03, 0x92, 0x80, 0x00, 0x00, 0x00, 0x00, 0x45, 0x00, 0x00, 0x39, 0x1c, 0x46,
    0x00, 0x00, 0x40, 0x11, 0x44, 0x5d, 0x0a, 0x00, 0x00, 0x02, 0x08, 0x08, 0x08, 0x08, 0xcf, 0x08,
    0x00, 0x35, 0x00, 0x25, 0x9b, 0x19,
];

/// IPV6_HBH_FRAG_UDP (90 bytes).
pub(crate) const IPV6_HBH_FRAG_UDP: [u8; 90] = [
    0x52, 0x54, 0x00, 0x65, 0x43, 0x21, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x86, 0xdd, 0x60, 0x01,
    0x23, 0x45, 0x00, 0x24, 0x00, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x2c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x11, 0x00,
    0x00, 0x01, 0xde, 0xad, 0xbe, 0xef, 0x12, 0x34, 0x56, 0x78, 0x00, 0x6c, 0x1a, 0x2b, 0x68, 0x65,
    0x6c, 0x6c, 0x6f, 0x20, 0x77, 0x6f, 0x72, 0x6c, 0x64, 0x21,
];

/// ARP_REQUEST (60 bytes).
pub(crate) const ARP_REQUEST: [u8; 60] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, 0x00, 0x01,
    0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xc0, 0xa8, 0x01, 0x0a,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// QINQ_UDP (79 bytes).
pub(crate) const QINQ_UDP: [u8; 79] = [
    0x52, 0x54, 0x00, 0x65, 0x43, 0x21, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x88, 0xa8, 0x00, 0xc8,
    0x81, 0x00, 0x60, 0x64, 0x08, 0x00, 0x45, 0x00, 0x00, 0x39, 0x1c, 0x46, 0x00, 0x00, 0x40, 0x11,
    0x44, 0x5d, 0x0a, 0x00, 0x00, 0x02, 0x08, 0x08, 0x08, 0x08, 0xcf, 0x08, 0x00, 0x35, 0x00, 0x25,
    0x9b, 0x19, 0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x65,
    0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d, 0x00, 0x00, 0x01, 0x00, 0x01,
];

/// ICMPV6_ECHO (66 bytes).
pub(crate) const ICMPV6_ECHO: [u8; 66] = [
    0x52, 0x54, 0x00, 0x65, 0x43, 0x21, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x86, 0xdd, 0x60, 0x00,
    0x00, 0x00, 0x00, 0x0c, 0x3a, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x80, 0x00, 0x3a, 0xb0, 0x0a, 0xbc, 0x00, 0x07, 0x70, 0x69,
    0x6e, 0x67,
];

/// IPV4_OPT_UDP (60 bytes).
pub(crate) const IPV4_OPT_UDP: [u8; 60] = [
    0x52, 0x54, 0x00, 0x65, 0x43, 0x21, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00, 0x46, 0x00,
    0x00, 0x24, 0x00, 0x03, 0x40, 0x00, 0x01, 0x11, 0xd0, 0xbf, 0x0a, 0x00, 0x00, 0x02, 0x0a, 0x00,
    0x00, 0x01, 0x94, 0x04, 0x00, 0x00, 0x03, 0xe8, 0x07, 0xd0, 0x00, 0x0c, 0xdc, 0x15, 0x01, 0x02,
    0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// 2001:db8:1::1, the router's address in [`ND_NS`].
pub(crate) const ND_OUR_IP: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// ND_NS (86 bytes): a Linux host's neighbor solicitation for 2001:db8:1::1
/// from 2001:db8:1::10 (MAC_A) to the solicited-node group, with its source
/// link-layer address option.
pub(crate) const ND_NS: [u8; 86] = [
    0x33, 0x33, 0xff, 0x00, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x86, 0xdd, //
    0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, //
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, //
    0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0x00, 0x00, 0x01, //
    0x87, 0x00, 0x97, 0x5c, 0, 0, 0, 0, //
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, //
    0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The spec that builds [`TCP_SYN`].
pub(crate) fn tcp_syn_spec() -> FrameSpec {
    FrameSpec {
        src_mac: MAC_A,
        dst_mac: MAC_B,
        vlan: None,
        src_ip: ip("192.168.1.10"),
        dst_ip: ip("93.184.216.34"),
        ttl: 64,
        ip_id: 0x8c1d,
        dont_frag: true,
        l4: L4Spec::Tcp {
            src_port: 54321,
            dst_port: 443,
            seq: 0x1a2b_3c4d,
            ack: 0,
            flags: tcp_flags::SYN,
            window: 64240,
            options: TcpOptions {
                mss: Some(1460),
                wscale: Some(7),
                sack_perm: true,
                timestamps: Some((0x0011_2233, 0)),
            },
        },
        payload_len: 0,
    }
}

/// The spec that builds [`UDP_DNS`] (with its DNS payload).
pub(crate) fn udp_dns_spec() -> FrameSpec {
    FrameSpec {
        src_mac: MAC_A,
        dst_mac: MAC_B,
        vlan: None,
        src_ip: ip("10.0.0.2"),
        dst_ip: ip("8.8.8.8"),
        ttl: 64,
        ip_id: 0x1c46,
        dont_frag: false,
        l4: L4Spec::Udp {
            src_port: 53000,
            dst_port: 53,
        },
        payload_len: 29,
    }
}

/// The spec that builds [`ICMP_ECHO`] (with payload `abcdefgh`).
pub(crate) fn icmp_echo_spec() -> FrameSpec {
    FrameSpec {
        src_mac: MAC_A,
        dst_mac: MAC_B,
        vlan: None,
        src_ip: ip("10.0.0.2"),
        dst_ip: ip("10.0.0.1"),
        ttl: 64,
        ip_id: 1,
        dont_frag: true,
        l4: L4Spec::Icmp {
            msg_type: 8,
            code: 0,
            ident: 0x1234,
            seq_no: 1,
        },
        payload_len: 8,
    }
}

/// The spec that builds [`ICMPV6_ECHO`] (with payload `ping`).
pub(crate) fn icmpv6_echo_spec() -> FrameSpec {
    FrameSpec {
        src_mac: MAC_A,
        dst_mac: MAC_B,
        vlan: None,
        src_ip: ip("2001:db8::1"),
        dst_ip: ip("2001:db8::2"),
        ttl: 64,
        ip_id: 0,
        dont_frag: false,
        l4: L4Spec::Icmp {
            msg_type: 128,
            code: 0,
            ident: 0x0abc,
            seq_no: 7,
        },
        payload_len: 4,
    }
}

fn t4(src: &str, dst: &str, p: u8, sp: u16, dp: u16) -> Tuple {
    Tuple::new(ip(src), ip(dst), p, sp, dp)
}

#[test]
fn parse_tcp_syn() {
    let m = parse_frame(&TCP_SYN).unwrap();
    let want = PacketMeta {
        ethertype: 0x0800,
        vlan: None,
        l3: L3Kind::Ipv4,
        l3_offset: 14,
        l4_offset: 34,
        ip_len: 60,
        ttl: 64,
        fragment: Fragment::None,
        frag: crate::meta::FragFacts::default(),
        tuple: t4("192.168.1.10", "93.184.216.34", proto::TCP, 54321, 443),
        tcp: TcpFacts {
            flags: tcp_flags::SYN,
            seq: 0x1a2b_3c4d,
            ack: 0,
            window: 64240,
            payload_len: 0,
            wscale: Some(7),
            sack_perm: true,
        },
        icmp_error: None,
        rh0: false,
        l4_csum_bad: false,
    };
    assert_eq!(m, want);
    assert_eq!(l4_checksum_valid(&TCP_SYN, &m), Some(true));
    let mut bad = TCP_SYN;
    bad[73] ^= 1;
    assert_eq!(
        l4_checksum_valid(&bad, &parse_frame(&bad).unwrap()),
        Some(false)
    );
}

#[test]
fn parse_udp_dns() {
    let m = parse_frame(&UDP_DNS).unwrap();
    assert_eq!(m.l3, L3Kind::Ipv4);
    assert_eq!(
        (m.l3_offset, m.l4_offset, m.ip_len, m.ttl),
        (14, 34, 57, 64)
    );
    assert_eq!(m.tuple, t4("10.0.0.2", "8.8.8.8", proto::UDP, 53000, 53));
    assert_eq!(m.tcp, TcpFacts::default());
    assert_eq!(m.icmp_error, None);
    assert_eq!(l4_checksum_valid(&UDP_DNS, &m), Some(true));
}

#[test]
fn parse_icmp_echo() {
    let m = parse_frame(&ICMP_ECHO).unwrap();
    assert_eq!(
        m.tuple,
        t4("10.0.0.2", "10.0.0.1", proto::ICMP, 0x1234, 8 << 8)
    );
    assert_eq!(m.icmp_error, None);
    assert_eq!(l4_checksum_valid(&ICMP_ECHO, &m), Some(true));
}

#[test]
fn parse_icmp_port_unreachable() {
    let m = parse_frame(&ICMP_PORT_UNREACH).unwrap();
    assert_eq!(
        m.tuple,
        t4("8.8.8.8", "10.0.0.2", proto::ICMP, 0, 3 << 8 | 3)
    );
    assert_eq!(
        m.icmp_error,
        Some(t4("10.0.0.2", "8.8.8.8", proto::UDP, 53000, 53))
    );
    assert_eq!(l4_checksum_valid(&ICMP_PORT_UNREACH, &m), Some(true));
    // Embedded packet cut inside the UDP ports: not enough to relate it.
    let mut short = ICMP_PORT_UNREACH[..14 + 20 + 8 + 20 + 3].to_vec();
    short[17] = 20 + 8 + 20 + 3;
    let csum = crate::packet::checksum::finish(crate::packet::checksum::sum(&{
        let mut h = short[14..34].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    }));
    short[24..26].copy_from_slice(&csum.to_be_bytes());
    assert_eq!(parse_frame(&short), Err(Error::Truncated));
}

#[test]
fn parse_ipv6_hbh_frag() {
    let m = parse_frame(&IPV6_HBH_FRAG_UDP).unwrap();
    assert_eq!(m.l3, L3Kind::Ipv6);
    assert_eq!(m.ethertype, 0x86dd);
    assert_eq!(
        (m.l3_offset, m.l4_offset, m.ip_len, m.ttl),
        (14, 14 + 40 + 16, 76, 64)
    );
    assert_eq!(m.fragment, Fragment::First);
    assert_eq!(
        m.tuple,
        t4("2001:db8::1", "2001:db8::2", proto::UDP, 4660, 22136)
    );
    assert_eq!(l4_checksum_valid(&IPV6_HBH_FRAG_UDP, &m), None);

    // The same packet as a later fragment (offset 2 * 8 bytes, M = 0).
    let mut later = IPV6_HBH_FRAG_UDP;
    later[64..66].copy_from_slice(&(2u16 << 3).to_be_bytes());
    let m = parse_frame(&later).unwrap();
    assert_eq!(m.fragment, Fragment::Later);
    assert_eq!(m.l4_offset, 14 + 40 + 16);
    assert_eq!(m.tuple, t4("2001:db8::1", "2001:db8::2", proto::UDP, 0, 0));
}

#[test]
fn parse_arp() {
    let m = parse_frame(&ARP_REQUEST).unwrap();
    assert_eq!(
        m,
        PacketMeta {
            ethertype: 0x0806,
            l3_offset: 14,
            ..PacketMeta::default()
        }
    );
    assert!(!m.is_ip());
}

#[test]
fn parse_qinq_and_vlan() {
    let m = parse_frame(&QINQ_UDP).unwrap();
    assert_eq!(m.vlan, Some(200));
    assert_eq!(m.ethertype, 0x0800);
    assert_eq!((m.l3_offset, m.l4_offset), (22, 42));
    assert_eq!(m.tuple, t4("10.0.0.2", "8.8.8.8", proto::UDP, 53000, 53));
    // Single 802.1Q tag.
    let mut single = QINQ_UDP[..12].to_vec();
    single.extend_from_slice(&QINQ_UDP[16..]);
    let m = parse_frame(&single).unwrap();
    assert_eq!((m.vlan, m.l3_offset), (Some(100), 18));
    // Three tags are refused rather than passed as non-IP.
    let mut triple = QINQ_UDP[..16].to_vec();
    triple.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    triple.extend_from_slice(&QINQ_UDP[16..]);
    assert_eq!(parse_frame(&triple), Err(Error::Unsupported));
    assert_eq!(parse_frame(&QINQ_UDP[..20]), Err(Error::Truncated));
}

#[test]
fn parse_icmpv6_echo() {
    let m = parse_frame(&ICMPV6_ECHO).unwrap();
    assert_eq!(
        m.tuple,
        t4(
            "2001:db8::1",
            "2001:db8::2",
            proto::ICMPV6,
            0x0abc,
            128 << 8
        )
    );
    assert_eq!((m.ip_len, m.l4_offset), (52, 54));
    assert_eq!(l4_checksum_valid(&ICMPV6_ECHO, &m), Some(true));
}

#[test]
fn parse_ipv4_options_and_padding() {
    let m = parse_frame(&IPV4_OPT_UDP).unwrap();
    assert_eq!((m.l4_offset, m.ip_len, m.ttl), (14 + 24, 36, 1));
    assert_eq!(m.tuple, t4("10.0.0.2", "10.0.0.1", proto::UDP, 1000, 2000));
    assert_eq!(l4_checksum_valid(&IPV4_OPT_UDP, &m), Some(true));
}

#[test]
fn parse_errors() {
    let mut bad = TCP_SYN;
    bad[24] ^= 0xff; // IPv4 header checksum
    assert_eq!(parse_frame(&bad), Err(Error::BadChecksum));
    assert_eq!(parse_frame(&TCP_SYN[..73]), Err(Error::Truncated));
    assert_eq!(parse_frame(&TCP_SYN[..10]), Err(Error::Truncated));
    // TCP data offset 4.
    let mut spec = tcp_syn_spec();
    spec.l4 = L4Spec::Tcp {
        src_port: 1,
        dst_port: 2,
        seq: 0,
        ack: 0,
        flags: 0,
        window: 0,
        options: TcpOptions::default(),
    };
    let mut f = spec.to_vec().unwrap();
    f[46] = 0x40;
    assert_eq!(parse_frame(&f), Err(Error::Malformed));
}

#[test]
fn parse_ipv4_fragments() {
    // First fragment: UDP length covers the whole datagram, not this piece.
    let mut spec = udp_dns_spec();
    spec.payload_len = 100;
    let mut f = spec.to_vec().unwrap();
    f[20] |= 0x20; // MF
    fix_ip_csum(&mut f);
    f.truncate(14 + 20 + 8 + 16);
    f[16..18].copy_from_slice(&(20u16 + 24).to_be_bytes());
    fix_ip_csum(&mut f);
    let m = parse_frame(&f).unwrap();
    assert_eq!(m.fragment, Fragment::First);
    assert_eq!(m.tuple.dst_port, 53);
    // Later fragment.
    f[20..22].copy_from_slice(&3u16.to_be_bytes());
    fix_ip_csum(&mut f);
    let m = parse_frame(&f).unwrap();
    assert_eq!(m.fragment, Fragment::Later);
    assert_eq!(m.tuple, t4("10.0.0.2", "8.8.8.8", proto::UDP, 0, 0));
    assert_eq!(m.l4_offset, 34);
}

#[test]
fn tcp_payload_len_from_ip_length() {
    let mut spec = tcp_syn_spec();
    spec.payload_len = 5;
    let mut f = spec.to_vec().unwrap();
    f.extend_from_slice(&[0; 20]); // trailing padding is not payload
    let m = parse_frame(&f).unwrap();
    assert_eq!(m.tcp.payload_len, 5);
}

#[test]
fn icmpv6_error_embedding_tcp() {
    let mut inner = tcp_syn_spec();
    inner.src_ip = ip("2001:db8::1");
    inner.dst_ip = ip("2001:db8::2");
    let f = inner.to_vec().unwrap();
    let orig = parse_frame(&f).unwrap();
    let err = FrameSpec {
        src_ip: ip("2001:db8::ff"),
        dst_ip: ip("2001:db8::1"),
        l4: L4Spec::Icmp {
            msg_type: 1,
            code: 4,
            ident: 0,
            seq_no: 0,
        },
        ..FrameSpec::default()
    };
    // Embed the IPv6 header and only 8 bytes of TCP.
    let embedded = &f[14..14 + 40 + 8];
    let mut out = [0u8; 200];
    let n = err.write_with_payload(embedded, &mut out).unwrap();
    let m = parse_frame(&out[..n]).unwrap();
    assert_eq!(m.tuple.dst_port, 1 << 8 | 4);
    assert_eq!(m.tuple.src_port, 0);
    assert_eq!(m.icmp_error, Some(orig.tuple));
    assert_eq!(l4_checksum_valid(&out[..n], &m), Some(true));
}

#[test]
fn icmp_error_embedding_icmp_echo() {
    let echo = parse_frame(&ICMP_ECHO).unwrap();
    let err = FrameSpec {
        src_ip: ip("192.0.2.1"),
        dst_ip: ip("10.0.0.2"),
        l4: L4Spec::Icmp {
            msg_type: 11,
            code: 0,
            ident: 0,
            seq_no: 0,
        },
        ..FrameSpec::default()
    };
    let mut out = [0u8; 200];
    let n = err
        .write_with_payload(&ICMP_ECHO[14..14 + 28], &mut out)
        .unwrap();
    let m = parse_frame(&out[..n]).unwrap();
    assert_eq!(m.tuple.dst_port, 11 << 8);
    assert_eq!(m.icmp_error, Some(echo.tuple));
}

/// Emit: builder -> parse gives the same fields, for each L4 kind and family.
#[test]
fn emit_roundtrip() {
    for (src, dst) in [
        ("192.0.2.1", "198.51.100.2"),
        ("2001:db8::1", "2001:db8:1::2"),
    ] {
        for vlan in [None, Some(7)] {
            for l4 in [
                L4Spec::Tcp {
                    src_port: 1,
                    dst_port: 2,
                    seq: 3,
                    ack: 4,
                    flags: tcp_flags::ACK,
                    window: 5,
                    options: TcpOptions::default(),
                },
                L4Spec::Udp {
                    src_port: 6,
                    dst_port: 7,
                },
                L4Spec::Icmp {
                    msg_type: 8,
                    code: 0,
                    ident: 9,
                    seq_no: 10,
                },
                L4Spec::Raw { proto: proto::GRE },
            ] {
                let spec = FrameSpec {
                    src_ip: ip(src),
                    dst_ip: ip(dst),
                    vlan,
                    l4,
                    payload_len: 3,
                    ..FrameSpec::default()
                };
                let f = spec.to_vec().unwrap();
                let m = parse_frame(&f).unwrap();
                assert_eq!(m.vlan, vlan);
                assert_eq!(m.tuple.src_ip(), ip(src));
                assert_eq!(m.tuple.dst_ip(), ip(dst));
                assert_eq!(usize::from(m.l3_offset) + usize::from(m.ip_len), f.len());
                match l4 {
                    L4Spec::Tcp { .. } => assert_eq!((m.tuple.src_port, m.tcp.payload_len), (1, 3)),
                    L4Spec::Udp { .. } => assert_eq!(m.tuple.dst_port, 7),
                    L4Spec::Icmp { .. } => {
                        assert_eq!(m.tuple.src_port, if m.tuple.v6 { 0 } else { 9 })
                    }
                    L4Spec::Raw { .. } => {
                        assert_eq!((m.tuple.proto, m.tuple.src_port), (proto::GRE, 0))
                    }
                }
                if !matches!(l4, L4Spec::Raw { .. }) {
                    assert_eq!(l4_checksum_valid(&f, &m), Some(true));
                }
            }
        }
    }
}

fn fix_ip_csum(f: &mut [u8]) {
    f[24] = 0;
    f[25] = 0;
    let c = crate::packet::checksum::finish(crate::packet::checksum::sum(&f[14..34]));
    f[24..26].copy_from_slice(&c.to_be_bytes());
}
