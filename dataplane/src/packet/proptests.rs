//! Property tests: no input makes parsing or any checked view panic;
//! builder output parses back to the same fields; incremental checksum
//! updates equal a full recompute.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::builder::{FrameSpec, L4Spec};
use super::tcp_opt::TcpOptions;
use super::*;
use crate::flow::proto;
use crate::meta::{Fragment, L3Kind};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 2000,
        ..ProptestConfig::default()
    }
}

use super::exercise::{poke_parse, poke_views};

/// Frames that get past the first layers more often than random bytes: a
/// golden frame with some bytes overwritten and a random cut.
fn mutated_golden() -> impl Strategy<Value = Vec<u8>> {
    let goldens: Vec<Vec<u8>> = vec![
        golden::TCP_SYN.to_vec(),
        golden::UDP_DNS.to_vec(),
        golden::ICMP_ECHO.to_vec(),
        golden::ICMP_PORT_UNREACH.to_vec(),
        golden::IPV6_HBH_FRAG_UDP.to_vec(),
        golden::QINQ_UDP.to_vec(),
        golden::ICMPV6_ECHO.to_vec(),
        golden::IPV4_OPT_UDP.to_vec(),
        golden::ARP_REQUEST.to_vec(),
        golden::ND_NS.to_vec(),
    ];
    (
        prop::sample::select(goldens),
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        any::<usize>(),
    )
        .prop_map(|(mut f, muts, cut)| {
            for (i, v) in muts {
                let n = f.len();
                f[i % n] = v;
            }
            let keep = cut % (f.len() + 1);
            f.truncate(keep);
            f
        })
}

fn any_ip(v6: bool) -> BoxedStrategy<IpAddr> {
    if v6 {
        any::<[u8; 16]>()
            .prop_map(|a| IpAddr::V6(Ipv6Addr::from(a)))
            .boxed()
    } else {
        any::<[u8; 4]>()
            .prop_map(|a| IpAddr::V4(Ipv4Addr::from(a)))
            .boxed()
    }
}

fn any_l4() -> impl Strategy<Value = L4Spec> {
    let opts = (
        any::<Option<u16>>(),
        any::<Option<u8>>(),
        any::<bool>(),
        any::<Option<(u32, u32)>>(),
    )
        .prop_map(|(mss, wscale, sack_perm, timestamps)| TcpOptions {
            mss,
            wscale,
            sack_perm,
            timestamps,
        });
    prop_oneof![
        (
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
            any::<u16>(),
            opts
        )
            .prop_map(|(src_port, dst_port, seq, ack, flags, window, options)| {
                L4Spec::Tcp {
                    src_port,
                    dst_port,
                    seq,
                    ack,
                    flags,
                    window,
                    options,
                }
            }),
        (any::<u16>(), any::<u16>())
            .prop_map(|(src_port, dst_port)| L4Spec::Udp { src_port, dst_port }),
        // Error types need an embedded packet; they have their own tests.
        (
            any::<u8>().prop_filter("ICMP error type", |t| !matches!(t, 1..=5 | 11 | 12)),
            any::<u8>(),
            any::<u16>(),
            any::<u16>()
        )
            .prop_map(|(msg_type, code, ident, seq_no)| L4Spec::Icmp {
                msg_type,
                code,
                ident,
                seq_no
            }),
        // Raw protocols other than the parsed ones and the IPv6 extension headers.
        prop::sample::select(vec![proto::GRE, 4, 41, 50, 59, 89, 103, 115])
            .prop_map(|proto| L4Spec::Raw { proto }),
    ]
}

fn any_spec() -> impl Strategy<Value = FrameSpec> {
    (any::<bool>())
        .prop_flat_map(|v6| {
            (
                any::<[u8; 6]>(),
                any::<[u8; 6]>(),
                prop::option::of(0u16..4096),
                any_ip(v6),
                any_ip(v6),
                any::<u8>(),
                any::<u16>(),
                any::<bool>(),
                any_l4(),
                0usize..300,
            )
        })
        .prop_map(
            |(src_mac, dst_mac, vlan, src_ip, dst_ip, ttl, ip_id, dont_frag, l4, payload_len)| {
                FrameSpec {
                    src_mac,
                    dst_mac,
                    vlan,
                    src_ip,
                    dst_ip,
                    ttl,
                    ip_id,
                    dont_frag,
                    l4,
                    payload_len,
                }
            },
        )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..200)) {
        poke_parse(&b);
        poke_views(&b);
    }

    #[test]
    fn mutated_frames_never_panic(f in mutated_golden()) {
        poke_parse(&f);
        poke_views(&f);
        if f.len() > 14 {
            poke_views(&f[14..]);
        }
        if f.len() > 34 {
            poke_views(&f[34..]);
        }
    }

    #[test]
    fn builder_roundtrip(spec in any_spec()) {
        let f = spec.to_vec().unwrap();
        prop_assert_eq!(f.len(), spec.frame_len());
        let m = parse_frame(&f).unwrap();
        prop_assert_eq!(m.vlan, spec.vlan);
        prop_assert_eq!(m.l3, if spec.src_ip.is_ipv6() { L3Kind::Ipv6 } else { L3Kind::Ipv4 });
        prop_assert_eq!(m.fragment, Fragment::None);
        prop_assert_eq!(m.ttl, spec.ttl);
        prop_assert_eq!(m.tuple.src_ip(), spec.src_ip);
        prop_assert_eq!(m.tuple.dst_ip(), spec.dst_ip);
        prop_assert_eq!(usize::from(m.l3_offset), spec.l2_len());
        prop_assert_eq!(usize::from(m.ip_len), spec.ip_len(spec.payload_len));
        match spec.l4 {
            L4Spec::Tcp { src_port, dst_port, seq, ack, flags, window, options } => {
                prop_assert_eq!((m.tuple.src_port, m.tuple.dst_port), (src_port, dst_port));
                prop_assert_eq!((m.tcp.seq, m.tcp.ack, m.tcp.flags, m.tcp.window), (seq, ack, flags, window));
                prop_assert_eq!(m.tcp.payload_len, u32::try_from(spec.payload_len).unwrap());
                prop_assert_eq!((m.tcp.wscale, m.tcp.sack_perm), (options.wscale, options.sack_perm));
                let t = TcpPacket::new_checked(&f[usize::from(m.l4_offset)..]).unwrap();
                prop_assert_eq!(t.parsed_options(), options);
            }
            L4Spec::Udp { src_port, dst_port } => {
                prop_assert_eq!((m.tuple.src_port, m.tuple.dst_port), (src_port, dst_port));
            }
            L4Spec::Icmp { msg_type, code, ident, .. } => {
                prop_assert_eq!(m.tuple.dst_port, u16::from_be_bytes([msg_type, code]));
                let query = if m.tuple.v6 { icmpv6::is_query(msg_type) } else { icmp::is_query(msg_type) };
                prop_assert_eq!(m.tuple.src_port, if query { ident } else { 0 });
            }
            L4Spec::Raw { proto } => {
                prop_assert_eq!((m.tuple.proto, m.tuple.src_port, m.tuple.dst_port), (proto, 0, 0));
            }
        }
        if !matches!(spec.l4, L4Spec::Raw { .. }) {
            prop_assert_eq!(l4_checksum_valid(&f, &m), Some(true));
        }
    }

    #[test]
    fn incremental_checksum_matches_recompute(
        mut data in prop::collection::vec(any::<u8>(), 2..128),
        at in any::<usize>(),
        new16 in any::<u16>(),
        new32 in any::<u32>(),
        new128 in any::<[u8; 16]>(),
    ) {
        // A non-zero word keeps the sum away from the all-zero case where
        // 0x0000 and 0xffff are both valid checksums.
        data[0] = 0x45;
        let full = |d: &[u8]| checksum::finish(checksum::sum(d));
        let c0 = full(&data);

        // 16-bit word at an even offset.
        let i = (at % (data.len() / 2)) * 2;
        if i + 2 <= data.len() && i != 0 {
            let mut d = data.clone();
            let old = u16::from_be_bytes([d[i], d[i + 1]]);
            d[i..i + 2].copy_from_slice(&new16.to_be_bytes());
            prop_assert_eq!(checksum::update_u16(c0, old, new16), full(&d));
        }

        // 32-bit word.
        if data.len() >= 6 {
            let j = 2 + ((at / 7) % ((data.len() - 2) / 2)) * 2;
            if j + 4 <= data.len() {
                let mut d = data.clone();
                let old = u32::from_be_bytes([d[j], d[j + 1], d[j + 2], d[j + 3]]);
                d[j..j + 4].copy_from_slice(&new32.to_be_bytes());
                prop_assert_eq!(checksum::update_u32(c0, old, new32), full(&d));
            }
        }

        // 16-byte address.
        if data.len() >= 18 {
            let mut d = data.clone();
            let old: [u8; 16] = d[2..18].try_into().unwrap();
            d[2..18].copy_from_slice(&new128);
            prop_assert_eq!(checksum::update_addr16(c0, &old, &new128), full(&d));
        }
    }

    #[test]
    fn nat_rewrite_keeps_l4_checksum_valid(spec in any_spec(), new_src in any::<[u8; 4]>(), new_port in any::<u16>()) {
        // NAT-style rewrite of IPv4 source address and TCP/UDP source port with
        // incremental fixes of the IP and L4 checksums.
        let mut spec = spec;
        if spec.src_ip.is_ipv6() {
            spec.src_ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
            spec.dst_ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
        }
        if !matches!(spec.l4, L4Spec::Tcp { .. } | L4Spec::Udp { .. }) {
            spec.l4 = L4Spec::Udp { src_port: 1234, dst_port: 53 };
        }
        let mut f = spec.to_vec().unwrap();
        let m = parse_frame(&f).unwrap();
        let (l3, l4) = (usize::from(m.l3_offset), usize::from(m.l4_offset));
        let csum_at = l4 + if m.tuple.proto == proto::TCP { 16 } else { 6 };
        let old_src = u32::from_be_bytes(f[l3 + 12..l3 + 16].try_into().unwrap());
        let new_src_u = u32::from_be_bytes(new_src);
        let old_port = u16::from_be_bytes([f[l4], f[l4 + 1]]);
        f[l3 + 12..l3 + 16].copy_from_slice(&new_src);
        f[l4..l4 + 2].copy_from_slice(&new_port.to_be_bytes());
        let ipc = u16::from_be_bytes([f[l3 + 10], f[l3 + 11]]);
        f[l3 + 10..l3 + 12].copy_from_slice(&checksum::update_u32(ipc, old_src, new_src_u).to_be_bytes());
        let l4c = u16::from_be_bytes([f[csum_at], f[csum_at + 1]]);
        let l4c = checksum::update_u32(l4c, old_src, new_src_u);
        let l4c = checksum::update_u16(l4c, old_port, new_port);
        f[csum_at..csum_at + 2].copy_from_slice(&l4c.to_be_bytes());
        let m2 = parse_frame(&f).unwrap();
        prop_assert_eq!(m2.tuple.src_port, new_port);
        prop_assert_eq!(l4_checksum_valid(&f, &m2), Some(true));
    }
}

/// Found by the fuzzer in CI: a 1643-byte input that parses as an ICMP
/// error whose invoking packet made the exercise's fixed 1600-byte output
/// buffer too small (the exercise's panic, not the parser's:
/// `IcmpErrorRepr::emit` said `BufferTooSmall`).
#[test]
fn fuzz_regression_a_large_icmp_error_round_trips() {
    let b = include_bytes!("fuzz_regressions/parse_frame-icmp-error-1643.bin");
    poke_parse(b);
    poke_views(b);
}
