#![allow(clippy::cast_possible_truncation)]
//! The cluster's bucket filter run by the classic BPF interpreter of
//! `tests.rs` over whole frames, against what a worker decides
//! (`Worker::owns_frame`): it never drops a frame the worker would keep,
//! and it decides exactly the plain frames it claims to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;

use super::tests::{frame, run, set_frag_word};
use super::*;
use crate::buckets::{bucket_of_l2, bucket_of_tuple, BucketSet, MAX_BUCKETS};
use crate::meta::{tcp_flags, Fragment};
use crate::packet::{parse_frame, L4Spec};

/// What a worker in transparent mode decides for `f` (`owns_frame`).
fn worker_owns(f: &[u8], set: &BucketSet) -> bool {
    let b = set.universe();
    match parse_frame(f) {
        Ok(m) if m.fragment == Fragment::Later => true,
        Ok(m) if m.is_ip() => set.contains(bucket_of_tuple(
            m.icmp_error.as_ref().unwrap_or(&m.tuple),
            b,
        )),
        _ => set.contains(bucket_of_l2(f, b)),
    }
}

/// The filter's verdict on a whole frame: kept or not.
fn kept(prog: &[Insn], f: &[u8]) -> bool {
    let ethertype = u16::from_be_bytes([f[12], f[13]]);
    match run(prog, f, ethertype) {
        0 => false,
        u32::MAX => true,
        v => panic!("a filter keeps all of a frame or none, not {v}"),
    }
}

/// A set of `buckets` buckets from a seed: random bits, a few ranges,
/// none or all.
fn set_of(buckets: u32, kind: u8, seed: u64) -> BucketSet {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    match kind % 4 {
        0 => BucketSet::from_iter_in(buckets, (0..buckets).filter(|_| next() & 1 == 1)),
        1 => {
            let mut s = BucketSet::empty(buckets);
            for _ in 0..1 + next() % 6 {
                let lo = (next() % u64::from(buckets)) as u32;
                let len = (next() % u64::from(buckets / 3 + 1)) as u32;
                for b in lo..(lo + len).min(buckets) {
                    s.insert(b);
                }
            }
            s
        }
        2 => BucketSet::empty(buckets),
        _ => BucketSet::full(buckets),
    }
}

fn addrs(v6: bool, a: u128, b: u128) -> (IpAddr, IpAddr) {
    if v6 {
        (IpAddr::V6(Ipv6Addr::from(a)), IpAddr::V6(Ipv6Addr::from(b)))
    } else {
        (
            IpAddr::V4(Ipv4Addr::from(a as u32)),
            IpAddr::V4(Ipv4Addr::from(b as u32)),
        )
    }
}

/// Frames of every kind the filter tells apart; the flag says whether
/// the filter decides it by bucket (else it must keep it).
fn frames(a: u128, b: u128, sp: u16, dp: u16) -> Vec<(&'static str, Vec<u8>, bool)> {
    let (c4, s4) = addrs(false, a, b);
    let (c6, s6) = addrs(true, a, b);
    let udp = L4Spec::Udp {
        src_port: sp,
        dst_port: dp,
    };
    let tcp = L4Spec::tcp(sp, dp, tcp_flags::SYN, 1, 0);
    let echo = |v6: bool| L4Spec::Icmp {
        msg_type: if v6 { 128 } else { 8 },
        code: 0,
        ident: sp,
        seq_no: dp,
    };
    let udp4 = frame(c4, s4, udp);
    let mut first_fragment = frame(c4, s4, tcp);
    set_frag_word(&mut first_fragment, 0x2000);
    let mut later_fragment = frame(c4, s4, udp);
    set_frag_word(&mut later_fragment, 0x0010);
    let mut ext6 = frame(c6, s6, udp);
    let l3 = 14;
    ext6[l3 + 6] = 60;
    let plen = u16::from_be_bytes([ext6[l3 + 4], ext6[l3 + 5]]) + 8;
    ext6[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
    ext6.splice(l3 + 40..l3 + 40, [17, 0, 1, 4, 0, 0, 0, 0]);
    let mut arp = vec![0u8; 42];
    arp[..6].copy_from_slice(&(a as u64).to_be_bytes()[2..]);
    arp[6..12].copy_from_slice(&(b as u64).to_be_bytes()[2..]);
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    vec![
        ("tcp4", frame(c4, s4, tcp), true),
        ("udp4", udp4.clone(), true),
        ("tcp6", frame(c6, s6, tcp), true),
        ("udp6", frame(c6, s6, udp), true),
        ("echo4", frame(c4, s4, echo(false)), true),
        ("gre4", frame(c4, s4, L4Spec::Raw { proto: 47 }), true),
        (
            "icmp4 error",
            crate::nat::tests::icmp_error_about(&udp4, "198.51.100.77"),
            false,
        ),
        ("echo6", frame(c6, s6, echo(true)), false),
        ("first fragment", first_fragment, false),
        ("later fragment", later_fragment, false),
        ("ipv6 extension header", ext6, false),
        ("arp", arp, false),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_filter_drops_only_what_the_worker_would_and_decides_plain_frames_exactly(
        buckets in prop_oneof![Just(64u32), Just(1000), Just(4096), Just(MAX_BUCKETS)],
        kind in any::<u8>(),
        seed in any::<u64>(),
        routed in any::<bool>(),
        flows in proptest::collection::vec((any::<u128>(), any::<u128>(), any::<u16>(), any::<u16>()), 8),
    ) {
        let set = set_of(buckets, kind, seed);
        let mac = [0x03, 0, 0x5e, 0, 0, 1];
        let prog = bucket_filter_program(&set, routed.then_some(mac)).expect("fits");
        for (a, b, sp, dp) in flows {
            for (what, mut f, decided) in frames(a, b, sp, dp) {
                let mut to_mac = f.clone();
                to_mac[..6].copy_from_slice(&mac);
                if routed {
                    // Frames to other MACs are the worker's to judge.
                    prop_assert!(kept(&prog, &f) || f[..6] == mac, "{what} to another MAC dropped");
                    f = to_mac;
                }
                let (k, owns) = (kept(&prog, &f), worker_owns(&f, &set));
                prop_assert!(k || !owns, "{what}: dropped a frame of an owned bucket ({set:?})");
                if decided {
                    prop_assert_eq!(k, owns, "{} decided by bucket", what);
                } else {
                    prop_assert!(k, "{} must pass to the worker", what);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// `mem` ports model the kernel: [`BucketFilter::keeps`] decides as
    /// the program does, VLAN-tagged frames (whose tag the kernel moves
    /// out before the filter runs) and truncated frames included.
    #[test]
    fn mem_ports_keep_what_the_program_keeps(
        buckets in prop_oneof![Just(64u32), Just(4096), Just(MAX_BUCKETS)],
        kind in any::<u8>(),
        seed in any::<u64>(),
        routed in any::<bool>(),
        flow in (any::<u128>(), any::<u128>(), any::<u16>(), any::<u16>()),
        cut in any::<prop::sample::Index>(),
        vlan in any::<bool>(),
    ) {
        use crate::port::bucket_filter::BucketFilter;
        let set = set_of(buckets, kind, seed);
        let mac = [0x03, 0, 0x5e, 0, 0, 1];
        let filter = BucketFilter::new(set.clone(), routed.then_some(mac));
        let prog = filter.program().expect("fits");
        let (a, b, sp, dp) = flow;
        for (what, mut f, _) in frames(a, b, sp, dp) {
            if routed && kind % 2 == 0 {
                f[..6].copy_from_slice(&mac);
            }
            let ethertype = u16::from_be_bytes([f[12], f[13]]);
            let verdict = run(&prog, &f, ethertype) != 0;
            let mut tagged = f.clone();
            tagged.splice(12..12, [0x81, 0x00, 0x00, 0x64]);
            prop_assert_eq!(filter.keeps(if vlan { &tagged } else { &f }), verdict, "{}", what);
            // The kernel delivers no Ethernet frame shorter than its header.
            let short = &f[..14 + cut.index(f.len() - 14)];
            let verdict = run(&prog, short, ethertype) != 0;
            prop_assert_eq!(filter.keeps(short), verdict, "{} cut at {}", what, short.len());
        }
    }
}

#[test]
fn any_set_of_the_most_buckets_fits_in_a_program() {
    // Alternating words cannot be merged: the largest tree there is.
    let worst = BucketSet::from_iter_in(
        MAX_BUCKETS,
        (0..MAX_BUCKETS)
            .filter(|b| (b / 32) % 2 == 0 && b % 3 == 0 || (b / 32) % 2 == 1 && b % 5 == 0),
    );
    let prog = bucket_filter_program(&worst, None).expect("fits");
    assert!(prog.len() <= MAX_PROGRAM, "{}", prog.len());
    // A contiguous half is a handful of instructions beyond the hash.
    let half = BucketSet::from_iter_in(4096, 0..2048);
    let small = bucket_filter_program(&half, None).unwrap();
    assert!(small.len() < 120, "{}", small.len());
    // Every frame of a member that owns nothing is dropped, and every one
    // of a member that owns everything passes.
    let none = bucket_filter_program(&BucketSet::empty(4096), None).unwrap();
    let all = bucket_filter_program(&BucketSet::full(4096), None).unwrap();
    for sp in 0..200u16 {
        let f = &frames(0xc000_0201, 0xc633_6402, sp, 443)[0].1;
        assert!(!kept(&none, f));
        assert!(kept(&all, f));
    }
    // Jumps stay inside the program and it ends in a return (what the
    // kernel checks before it takes one).
    for p in [&prog, &small, &none, &all] {
        assert!(matches!(p.last().map(|i| i.code), Some(RET_K | RET_A)));
        for (pc, i) in p.iter().enumerate() {
            let rest = p.len() - pc - 1;
            if i.code == JMP_JA {
                assert!((i.k as usize) < rest);
            } else if i.code & 0x07 == 0x05 {
                assert!(usize::from(i.jt) < rest && usize::from(i.jf) < rest);
            }
        }
    }
}

#[test]
fn half_the_buckets_keep_about_half_the_flows() {
    let set = BucketSet::from_iter_in(4096, (0..4096).filter(|b| b % 2 == 0));
    let prog = bucket_filter_program(&set, None).unwrap();
    let kept_flows = (0..4000u16)
        .filter(|&sp| {
            kept(
                &prog,
                &frames(0xc000_0201, 0xc633_6402, 20000 + sp, 443)[0].1,
            )
        })
        .count();
    assert!((1700..2300).contains(&kept_flows), "{kept_flows} of 4000");
}
