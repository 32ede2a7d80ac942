#![allow(clippy::cast_possible_truncation)]
//! The fanout program run by a classic BPF interpreter (the subset it
//! uses, with the kernel's semantics: big-endian loads, a load out of the
//! packet ends the program with 0) against [`steering_hash`] of the parsed
//! frame, for generated frames of every kind it distinguishes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::*;
use crate::meta::tcp_flags;
use crate::packet::{parse_frame, FrameSpec, L4Spec};

/// Runs `prog` over `pkt` (from the network header) with ethertype `proto`.
pub(super) fn run(prog: &[Insn], pkt: &[u8], proto: u16) -> u32 {
    let (mut a, mut x, mut m) = (0u32, 0u32, [0u32; 16]);
    let load = |at: usize, size: usize| -> Option<u32> {
        let b = pkt.get(at..at + size)?;
        Some(b.iter().fold(0u32, |v, &c| v << 8 | u32::from(c)))
    };
    let mut pc = 0;
    for _ in 0..4096 {
        let i = prog[pc];
        pc += 1;
        let k = i.k as usize;
        match i.code {
            LD_W_ABS if i.k == AD_PROTOCOL => a = u32::from(proto),
            LD_W_ABS => match load(k, 4) {
                Some(v) => a = v,
                None => return 0,
            },
            LD_H_ABS => match load(k, 2) {
                Some(v) => a = v,
                None => return 0,
            },
            LD_B_ABS => match load(k, 1) {
                Some(v) => a = v,
                None => return 0,
            },
            LD_W_IND => match load(x as usize + k, 4) {
                Some(v) => a = v,
                None => return 0,
            },
            LD_H_IND => match load(x as usize + k, 2) {
                Some(v) => a = v,
                None => return 0,
            },
            LD_B_IND => match load(x as usize + k, 1) {
                Some(v) => a = v,
                None => return 0,
            },
            LDX_B_MSH => match load(k, 1) {
                Some(v) => x = 4 * (v & 0xf),
                None => return 0,
            },
            LD_MEM => a = m[k],
            LDX_MEM => x = m[k],
            ST => m[k] = a,
            ALU_MUL_K => a = a.wrapping_mul(i.k),
            ALU_AND_K => a &= i.k,
            ALU_RSH_K => a >>= i.k,
            ALU_XOR_X => a ^= x,
            ALU_RSH_X => a = a.checked_shr(x).unwrap_or(0),
            LD_IMM => a = i.k,
            MISC_TAX => x = a,
            JMP_JA => pc += k,
            JMP_JGE_K => pc += usize::from(if a >= i.k { i.jt } else { i.jf }),
            JMP_JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
            JMP_JSET_K => pc += usize::from(if a & i.k != 0 { i.jt } else { i.jf }),
            RET_K => return i.k,
            RET_A => return a,
            c => panic!("opcode {c:#x} not in the subset"),
        }
    }
    panic!("no return")
}

pub(super) fn frame(src: IpAddr, dst: IpAddr, l4: L4Spec) -> Vec<u8> {
    FrameSpec {
        src_ip: src,
        dst_ip: dst,
        l4,
        payload_len: 8,
        ..FrameSpec::default()
    }
    .to_vec()
    .unwrap()
}

/// The program's value for a whole frame and the parser's tuple.
fn both(f: &[u8]) -> (u32, Tuple) {
    let m = parse_frame(f).unwrap();
    let l3 = usize::from(m.l3_offset);
    (run(&fanout_program(), &f[l3..], m.ethertype), m.tuple)
}

/// Sets the IPv4 header's flags and fragment offset word (and fixes its
/// checksum) of an untagged frame.
pub(super) fn set_frag_word(f: &mut [u8], word: u16) {
    let l3 = 14;
    f[l3 + 6..l3 + 8].copy_from_slice(&word.to_be_bytes());
    f[l3 + 10..l3 + 12].fill(0);
    let sum = f[l3..l3 + 20]
        .chunks(2)
        .fold(0u32, |s, w| s + u32::from(u16::from_be_bytes([w[0], w[1]])));
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
    f[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
}

fn l4_strategy() -> impl Strategy<Value = L4Spec> {
    prop_oneof![
        (any::<u16>(), any::<u16>()).prop_map(|(s, d)| L4Spec::tcp(s, d, tcp_flags::SYN, 1, 0)),
        (any::<u16>(), any::<u16>()).prop_map(|(s, d)| L4Spec::Udp {
            src_port: s,
            dst_port: d
        }),
        any::<u16>().prop_map(|id| L4Spec::Icmp {
            msg_type: 8,
            code: 0,
            ident: id,
            seq_no: 1
        }),
        Just(L4Spec::Raw { proto: 47 }),
    ]
}

fn swap(l4: L4Spec) -> L4Spec {
    match l4 {
        L4Spec::Tcp {
            src_port, dst_port, ..
        } => L4Spec::tcp(dst_port, src_port, tcp_flags::SYN | tcp_flags::ACK, 1, 2),
        L4Spec::Udp { src_port, dst_port } => L4Spec::Udp {
            src_port: dst_port,
            dst_port: src_port,
        },
        L4Spec::Icmp { ident, .. } => L4Spec::Icmp {
            msg_type: 0,
            code: 0,
            ident,
            seq_no: 1,
        },
        other => other,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_kernel_program_computes_the_steering_hash_both_ways(
        v6 in any::<bool>(),
        a in any::<u128>(),
        b in any::<u128>(),
        l4 in l4_strategy(),
        workers in 2usize..9,
    ) {
        let (src, dst) = if v6 {
            (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)))
        } else {
            (
                IpAddr::V4(Ipv4Addr::from(a as u32)),
                IpAddr::V4(Ipv4Addr::from(b as u32)),
            )
        };
        let (fwd, t) = both(&frame(src, dst, l4));
        let (rev, r) = both(&frame(dst, src, swap(l4)));
        prop_assert_eq!(fwd, steering_hash(&t));
        prop_assert_eq!(rev, steering_hash(&r));
        prop_assert_eq!(fwd, rev);
        prop_assert_eq!(worker_of(&t, workers), worker_of(&r, workers));
        prop_assert_eq!(worker_of(&t, workers), (fwd % workers as u32) as usize);
    }
}

#[test]
fn ports_count_for_ported_protocols_only_and_not_in_fragments() {
    let (c, s) = (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
    );
    let tcp = |sport| frame(c, s, L4Spec::tcp(sport, 80, tcp_flags::SYN, 1, 0));
    let spread: std::collections::HashSet<u32> =
        (40000..40064).map(|p| both(&tcp(p)).0 % 4).collect();
    assert_eq!(
        spread.len(),
        4,
        "64 client ports use every one of 4 workers"
    );
    // A first fragment (more fragments set) goes by addresses alone, like
    // any other fragment of the datagram.
    let mut frag = tcp(40000);
    set_frag_word(&mut frag, 0x2000); // MF, offset 0
    let (h, t) = both(&frag);
    let addresses_only = Tuple {
        src_port: 0,
        dst_port: 0,
        ..t
    };
    assert_eq!(h, steering_hash(&addresses_only));
    assert_ne!(h, steering_hash(&t));
    assert_eq!(
        h,
        steering_hash(&kernel_tuple(&parse_frame(&frag).unwrap()))
    );
    // Not IP: worker 0. Truncated IP: 0 as well (the kernel's rule).
    assert_eq!(run(&fanout_program(), &[0u8; 28], 0x0806), 0);
    assert_eq!(run(&fanout_program(), &tcp(1)[14..30], 0x0800), 0);
}

#[test]
fn ipv4_echo_identifiers_count_other_icmp_does_not() {
    let (c, s) = (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
    );
    let icmp = |ty, id| {
        frame(
            c,
            s,
            L4Spec::Icmp {
                msg_type: ty,
                code: 0,
                ident: id,
                seq_no: 1,
            },
        )
    };
    let spread: std::collections::HashSet<u32> =
        (0..64).map(|id| both(&icmp(8, id)).0 % 4).collect();
    assert_eq!(
        spread.len(),
        4,
        "64 echo identifiers use every one of 4 workers"
    );
    // Timestamp requests: addresses alone, as the parser's tuple says.
    let (h, t) = both(&icmp(13, 99));
    assert_eq!(h, steering_hash(&t));
    assert_eq!(h, both(&icmp(13, 7)).0);
}

#[test]
fn one_worker_owns_everything() {
    let t = Tuple::new(
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
        6,
        1,
        2,
    );
    assert_eq!(worker_of(&t, 1), 0);
    assert_eq!(worker_of(&t, 0), 0);
}

/// Frames the kernel steers by other fields than their flow's:
/// [`kernel_tuple`] names what it hashes, [`steered_apart`] flags them.
#[test]
fn the_kernel_tuple_is_what_the_program_hashes_for_frames_steered_apart() {
    let (c, s) = (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)),
    );
    let udp = frame(
        c,
        s,
        L4Spec::Udp {
            src_port: 4000,
            dst_port: 53,
        },
    );
    let m = parse_frame(&udp).unwrap();
    assert!(!steered_apart(&m));
    assert_eq!(kernel_tuple(&m), m.tuple);
    // An ICMP error: its outer addresses, not the flow it quotes.
    for h in 1..=20u8 {
        let err = crate::nat::tests::icmp_error_about(&udp, &format!("198.51.100.{h}"));
        let (v, t) = both(&err);
        let m = parse_frame(&err).unwrap();
        assert!(steered_apart(&m));
        assert_eq!(kernel_tuple(&m), t);
        assert_eq!(v, steering_hash(&kernel_tuple(&m)));
    }
    // IPv6 with a destination options header: addresses alone, though the
    // parser sees the ports.
    let (c6, s6) = (
        IpAddr::V6("2001:db8::1".parse().unwrap()),
        IpAddr::V6("2001:db8:1::2".parse().unwrap()),
    );
    for sport in 4000..4020u16 {
        let mut f = frame(
            c6,
            s6,
            L4Spec::Udp {
                src_port: sport,
                dst_port: 53,
            },
        );
        let l3 = 14;
        f[l3 + 6] = 60;
        let plen = u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]) + 8;
        f[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
        f.splice(l3 + 40..l3 + 40, [17, 0, 1, 4, 0, 0, 0, 0]);
        let (v, t) = both(&f);
        let m = parse_frame(&f).unwrap();
        assert_eq!(t.src_port, sport);
        assert!(steered_apart(&m));
        assert_eq!(v, steering_hash(&kernel_tuple(&m)));
        assert_eq!(kernel_tuple(&m).src_port, 0);
    }
}
