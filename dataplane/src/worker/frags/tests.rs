//! Virtual reassembly through the pipeline, with real fragmented frames.

use std::net::IpAddr;

use super::*;
use crate::packet::{parse_frame, FrameSpec, L4Spec};
use crate::worker::pipeline::Decision;
use crate::worker::pipeline_tests::Rig;

const RULES: &str =
    "policy drop\naccept ct established,related\naccept proto udp dport 53 ct new\n";

fn csum(h: &[u8]) -> u16 {
    let s = h
        .chunks(2)
        .fold(0u32, |s, w| s + u32::from(u16::from_be_bytes([w[0], w[1]])));
    let s = (s & 0xffff) + (s >> 16);
    !u16::try_from((s & 0xffff) + (s >> 16)).unwrap_or(0)
}

/// A UDP datagram from 192.0.2.10 to port `dport` with `payload` bytes and
/// IPv4 identification `id`, cut into fragments of `chunk` bytes of IP
/// payload (a multiple of 8).
fn fragments(dport: u16, payload: usize, id: u16, chunk: usize) -> Vec<Vec<u8>> {
    let frame = FrameSpec {
        src_ip: "192.0.2.10".parse::<IpAddr>().unwrap(),
        dst_ip: "198.51.100.20".parse::<IpAddr>().unwrap(),
        l4: L4Spec::Udp {
            src_port: 40000,
            dst_port: dport,
        },
        payload_len: payload,
        ..FrameSpec::default()
    }
    .to_vec()
    .unwrap();
    let body = &frame[34..];
    body.chunks(chunk)
        .enumerate()
        .map(|(i, part)| {
            piece(
                &frame[..34],
                id,
                i * chunk / 8,
                (i + 1) * chunk < body.len(),
                part,
            )
        })
        .collect()
}

/// One IPv4 fragment: `head` (Ethernet + IPv4 header), offset in 8-byte
/// units, more-fragments flag and payload.
fn piece(head: &[u8], id: u16, offset: usize, more: bool, part: &[u8]) -> Vec<u8> {
    let mut f = head.to_vec();
    f[16..18].copy_from_slice(&u16::try_from(20 + part.len()).unwrap().to_be_bytes());
    f[18..20].copy_from_slice(&id.to_be_bytes());
    let flags = u16::try_from(offset).unwrap() | if more { 0x2000 } else { 0 };
    f[20..22].copy_from_slice(&flags.to_be_bytes());
    f[24..26].fill(0);
    let c = csum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(part);
    f
}

fn counter(r: &Rig, name: &str) -> u64 {
    r.p.counters
        .fields()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .unwrap()
}

#[test]
fn later_fragments_follow_the_first_fragments_verdict() {
    let mut r = Rig::new(RULES);
    // Accepted by the port rule, which only the first fragment can match.
    let frags = fragments(53, 3000, 7, 1480);
    assert_eq!(frags.len(), 3);
    assert_eq!(parse_frame(&frags[1]).unwrap().frag.offset, 185);
    for f in &frags {
        assert_eq!(r.send(0, f), Decision::Forward);
    }
    assert_eq!(counter(&r, "fragments"), 2);
    // Complete: forgotten at once.
    assert!(r.p.frags.is_empty(0));
    // Out of order (the last one before the middle one) works as well.
    let frags = fragments(53, 3000, 8, 1480);
    for i in [0, 2, 1] {
        assert_eq!(r.send(0, &frags[i]), Decision::Forward);
    }
    // Another port: the first fragment is dropped by the policy, and so
    // is the rest of its datagram.
    let before = counter(&r, "dropped_by_rule");
    for f in &fragments(54, 3000, 9, 1480) {
        assert_eq!(r.send(0, f), Decision::Drop);
    }
    assert!(counter(&r, "dropped_by_rule") >= before + 2);
}

#[test]
fn fragments_that_cannot_be_placed_are_dropped_and_counted() {
    let mut r = Rig::new(RULES);
    // No first fragment: nothing says what they belong to.
    let frags = fragments(53, 3000, 11, 1480);
    assert_eq!(r.send(0, &frags[2]), Decision::Drop);
    assert_eq!(counter(&r, "fragments_without_first"), 1);
    // An overlap drops the fragment and the rest of its datagram.
    let frags = fragments(53, 3000, 12, 1480);
    assert_eq!(r.send(0, &frags[0]), Decision::Forward);
    let head = &frags[1][..34];
    let overlap = piece(head, 12, 180, true, &[0u8; 64]);
    assert_eq!(r.send(0, &overlap), Decision::Drop);
    assert_eq!(counter(&r, "fragments_overlapping"), 1);
    assert_eq!(r.send(0, &frags[1]), Decision::Drop);
    // Past 65,535 bytes.
    let frags = fragments(53, 3000, 13, 1480);
    assert_eq!(r.send(0, &frags[0]), Decision::Forward);
    let big = piece(&frags[1][..34], 13, 8189, false, &[0u8; 64]);
    assert_eq!(r.send(0, &big), Decision::Drop);
    assert_eq!(counter(&r, "fragments_oversized"), 1);
    // Too scattered: every other 8-byte block, more pieces than tracked.
    let frags = fragments(53, 3000, 14, 1480);
    assert_eq!(r.send(0, &frags[0]), Decision::Forward);
    let mut d = Vec::new();
    for k in 0..=MAX_PIECES {
        let f = piece(&frags[1][..34], 14, 200 + 2 * k, true, &[0u8; 8]);
        d.push(r.send(0, &f));
    }
    // The first fragment is one piece: MAX_PIECES - 1 more fit.
    let fit = MAX_PIECES - 1;
    assert!(d[..fit].iter().all(|x| *x == Decision::Forward), "{d:?}");
    assert!(d[fit..].iter().all(|x| *x == Decision::Drop), "{d:?}");
    assert_eq!(
        counter(&r, "fragments_oversized"),
        1 + (d.len() - fit) as u64
    );
}

#[test]
fn the_table_is_bounded_and_entries_expire() {
    let meta = |id: u16, k: usize| {
        let f = fragments(53, 3000, id, 1480);
        parse_frame(&f[k]).unwrap()
    };
    let mut t = FragTable::new(1);
    assert!(t.first(&meta(1, 0), 0, 10, true, None));
    // Full: a second datagram is not tracked (its fragments will drop).
    assert!(!t.first(&meta(2, 0), 0, 10, true, None));
    assert_eq!(t.later(&meta(2, 1), 0, 10), Later::NoFirst);
    assert_eq!(t.later(&meta(1, 1), 0, 10), Later::Forward);
    // Expired after FRAG_TIMEOUT_SECS: the slot is free again.
    assert_eq!(
        t.later(&meta(1, 2), 0, 10 + FRAG_TIMEOUT_SECS),
        Later::NoFirst
    );
    assert!(t.first(&meta(2, 0), 0, 10 + FRAG_TIMEOUT_SECS, true, None));
    // Zones are separate datagrams.
    assert_eq!(
        t.later(&meta(2, 1), 5, 10 + FRAG_TIMEOUT_SECS),
        Later::NoFirst
    );
    // Memory: allocated once, bounded per slot.
    let full = FragTable::default();
    assert!(full.bytes() <= FRAG_SLOTS * 160, "{} bytes", full.bytes());
}
