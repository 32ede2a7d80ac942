//! Sequence adjustment: Linux's bookkeeping (one change point per
//! direction, idempotent for a retransmission), moving seq, ack and SACK
//! edges (word-aligned or not) against frames built from scratch, and
//! payload replacement with its lengths and checksums recomputed whole.

use std::net::IpAddr;

use super::*;
use crate::flow::{proto, Dir};
use crate::meta::tcp_flags as f;
use crate::packet::{checksum, FrameSpec, L4Spec};

/// A TCP/IPv4 frame from scratch with raw `options` (a multiple of 4).
#[allow(clippy::too_many_arguments)]
fn frame(flags: u8, seq: u32, ack: u32, options: &[u8], data: &[u8]) -> Vec<u8> {
    let spec = FrameSpec {
        src_ip: "192.0.2.10".parse::<IpAddr>().unwrap(),
        dst_ip: "198.51.100.20".parse::<IpAddr>().unwrap(),
        l4: L4Spec::tcp(40000, 21, flags, seq, ack),
        ..FrameSpec::default()
    };
    let mut body = options.to_vec();
    body.extend_from_slice(data);
    let mut v = vec![0u8; 2048];
    let n = spec.write_with_payload(&body, &mut v).unwrap();
    v.truncate(n);
    let (l3, l4) = (14, 34);
    v[l4 + 12] = u8::try_from((20 + options.len()) / 4).unwrap() << 4;
    v[l4 + 16..l4 + 18].fill(0);
    let end = l3 + usize::from(u16::from_be_bytes([v[l3 + 2], v[l3 + 3]]));
    let s: [u8; 4] = v[l3 + 12..l3 + 16].try_into().unwrap();
    let d: [u8; 4] = v[l3 + 16..l3 + 20].try_into().unwrap();
    let c = checksum::l4_v4(&s, &d, proto::TCP, &v[l4..end]);
    v[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
    v
}

fn meta(frame: &[u8]) -> PacketMeta {
    crate::packet::parse_frame(frame).unwrap()
}

#[test]
fn one_change_point_per_direction_as_linux_keeps_it() {
    let mut w: Way = [0; 3];
    assert!(!set(&mut w, 100, 0), "no change, nothing recorded");
    assert!(set(&mut w, 100, 3));
    assert_eq!(w, [100, 0, 3]);
    // The same segment rewritten again (a retransmission): unchanged.
    assert!(!set(&mut w, 100, 3));
    assert_eq!(w, [100, 0, 3]);
    // A segment before the change point: unchanged.
    assert!(!set(&mut w, 50, 2));
    // A later change accumulates.
    assert!(set(&mut w, 200, -2));
    assert_eq!(w, [200, 3, 1]);
    // Segments at or before the point move by `before`, after it by `after`.
    assert_eq!(seq_offset(&w, 200), 3);
    assert_eq!(seq_offset(&w, 150), 3);
    assert_eq!(seq_offset(&w, 201), 1);
    // Acknowledgements are in the moved space: 203 is 200 + 3, the
    // change point itself; 204 is past it.
    assert_eq!(ack_unadjusted(&w, 203), 200);
    assert_eq!(ack_unadjusted(&w, 204), 203);
    // Across the wrap of the sequence space.
    let mut w: Way = [0; 3];
    assert!(set(&mut w, u32::MAX - 1, 5));
    assert_eq!(seq_offset(&w, 2), 5);
    assert_eq!(ack_unadjusted(&w, 10), 5);
}

#[test]
fn seq_ack_and_sack_edges_move_with_checksums_kept() {
    let adj = SeqAdj {
        orig: [1001, 0, 1],
        reply: [5001, 0, 0xffff_fffe], // -2
    };
    // A word-aligned SACK block (NOP, NOP, SACK) and one at an odd offset
    // (NOP, SACK, NOP).
    for pad in [&[1u8, 1][..], &[1][..]] {
        let opts = |l: u32, r: u32| {
            let mut o = pad.to_vec();
            o.extend_from_slice(&[5, 10]);
            o.extend_from_slice(&l.to_be_bytes());
            o.extend_from_slice(&r.to_be_bytes());
            while o.len() % 4 != 0 {
                o.push(1);
            }
            o
        };
        // Original direction: seq after the change point moves by +1; the
        // ack and SACK edges (reply data, moved by -2) move back by -2.
        let mut fr = frame(f::ACK, 1010, 5100, &opts(5110, 5120), b"x");
        let m = meta(&fr);
        assert_eq!(adjust(&mut fr, &m, &adj, Dir::Original), Some(true));
        assert_eq!(fr, frame(f::ACK, 1011, 5102, &opts(5112, 5122), b"x"));
        // Reply direction: seq after 5001 moves by -2; the ack of
        // original data past 1001 (+1) moves back by 1.
        let mut fr = frame(f::ACK, 5100, 1012, &opts(1020, 1030), b"");
        let m = meta(&fr);
        assert_eq!(adjust(&mut fr, &m, &adj, Dir::Reply), Some(true));
        assert_eq!(fr, frame(f::ACK, 5098, 1011, &opts(1019, 1029), b""));
    }
    // Without ACK only the sequence number moves; at the change point
    // nothing does.
    let mut fr = frame(f::SYN, 1001, 77, &[], b"");
    let m = meta(&fr);
    assert_eq!(adjust(&mut fr, &m, &adj, Dir::Original), Some(false));
    assert_eq!(fr, frame(f::SYN, 1001, 77, &[], b""));
}

#[test]
fn payload_replacement_recomputes_lengths_and_checksums() {
    let before = b"PORT 192,0,2,10,195,80\r\n";
    // Grow.
    let mut fr = frame(f::ACK | f::PSH, 1001, 5001, &[], before);
    let mut m = meta(&fr);
    let at = fr.len() - before.len() + 5;
    let d = replace_payload(&mut fr, &mut m, at, 10, b"203,0,113,1", 2048);
    assert_eq!(d, Some(1));
    let want = frame(
        f::ACK | f::PSH,
        1001,
        5001,
        &[],
        b"PORT 203,0,113,1,195,80\r\n",
    );
    assert_eq!(fr, want);
    assert_eq!(m.ip_len, meta(&want).ip_len);
    assert_eq!(m.tcp.payload_len, 25);
    // Shrink.
    let d = replace_payload(&mut fr, &mut m, at, 11, b"10,1,1,1", 2048);
    assert_eq!(d, Some(-3));
    assert_eq!(
        fr,
        frame(
            f::ACK | f::PSH,
            1001,
            5001,
            &[],
            b"PORT 10,1,1,1,195,80\r\n"
        )
    );
    // Ethernet padding after a short packet goes with the old tail.
    let mut padded = frame(f::ACK | f::PSH, 1, 1, &[], b"ab");
    padded.resize(60, 0);
    let mut m = meta(&padded);
    let at = 14 + 20 + 20;
    assert_eq!(
        replace_payload(&mut padded, &mut m, at, 1, b"xyz", 2048),
        Some(2)
    );
    assert_eq!(padded, frame(f::ACK | f::PSH, 1, 1, &[], b"xyzb"));
    // Too big for the buffer, or outside the payload: refused, unchanged.
    let mut fr = frame(f::ACK | f::PSH, 1001, 5001, &[], before);
    let orig = fr.clone();
    let mut m = meta(&fr);
    let at = fr.len() - before.len();
    let full = fr.len();
    assert_eq!(replace_payload(&mut fr, &mut m, at, 1, b"xx", full), None);
    assert_eq!(
        replace_payload(&mut fr, &mut m, at - 1, 1, b"x", 2048),
        None
    );
    assert_eq!(replace_payload(&mut fr, &mut m, at, 100, b"x", 2048), None);
    assert_eq!(fr, orig);
}
