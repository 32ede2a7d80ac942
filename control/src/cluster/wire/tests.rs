use super::*;
use crate::cluster::map::{plan, Balance};

const KEY: &[u8] = b"0123456789abcdef-cluster-key";
const NODES: &[NodeId] = &[1, 2, 3];

fn pair() -> (Codec, Codec) {
    (
        Codec::new(1, NODES, KEY, 100).unwrap(),
        Codec::new(2, NODES, KEY, 0).unwrap(),
    )
}

fn sample_map(buckets: u32) -> BucketMap {
    let m = plan(None, &[1, 2, 3], 1, Balance::Full, buckets).unwrap();
    let mut nodes = m.nodes().to_vec();
    nodes[2].dead = true;
    nodes[1].incarnation = 77;
    m.stamped(9, 1, nodes).unwrap()
}

fn bodies() -> Vec<Body> {
    vec![
        Body::Heartbeat(Heartbeat {
            incarnation: 5,
            state: NodeState::Ready,
            map_version: 9,
            applied_version: 8,
            flows: 1234,
            owned: 40,
            release_ack: 7,
        }),
        Body::Map(sample_map(100)),
        Body::Released {
            version: 9,
            buckets: BucketSet::from_iter_in(100, [0, 7, 8, 99]),
        },
        Body::Request(Request::Drain(3)),
        Body::Request(Request::Undrain(2)),
        Body::Request(Request::Rebalance),
    ]
}

#[test]
fn every_body_round_trips() {
    let (mut tx, mut rx) = pair();
    let mut out = Vec::new();
    for body in bodies() {
        tx.encode(&body, &mut out);
        let m = rx.decode(&out).unwrap();
        assert_eq!((m.sender, m.body), (1, body));
    }
    assert_eq!(rx.stats().accepted, 6);
    assert_eq!(rx.stats().rejected(), 0);
}

/// Golden bytes of a request and a released: emit gives exactly these.
#[test]
fn golden_request_and_released() {
    let mut out = Vec::new();
    encode_unsigned(3, 42, &Body::Request(Request::Drain(2)), &mut out);
    assert_eq!(
        out,
        [0x46, 0x43, 2, 4, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 42, 1, 0, 0, 0, 2]
    );
    let body = Body::Released {
        version: 1,
        buckets: BucketSet::from_iter_in(10, [0, 9]),
    };
    encode_unsigned(3, 1, &body, &mut out);
    assert_eq!(
        &out[HEADER_LEN..],
        &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 10, 0b1, 0b10]
    );
    assert_eq!(parse_unsigned(&out).unwrap(), (3, 1, body));
}

#[test]
fn a_map_of_max_buckets_fits_a_datagram() {
    let (mut tx, mut rx) = pair();
    let m = sample_map(MAX_BUCKETS);
    let mut out = Vec::new();
    tx.encode(&Body::Map(m.clone()), &mut out);
    assert!(
        out.len() <= map_datagram_len(MAX_BUCKETS, 1),
        "{}",
        out.len()
    );
    assert!(out.len() <= MAX_DATAGRAM);
    assert_eq!(rx.decode(&out).unwrap().body, Body::Map(m));
}

#[test]
fn rejects_bad_tag_replay_truncation_unknown_and_oversize() {
    let (mut tx, mut rx) = pair();
    let mut out = Vec::new();
    tx.encode(&Body::Request(Request::Rebalance), &mut out);
    let mut other = Codec::new(2, NODES, b"another-key-of-16+", 0).unwrap();
    assert_eq!(other.decode(&out), Err(DecodeError::BadTag));
    let mut flipped = out.clone();
    flipped[HEADER_LEN] ^= 1;
    assert_eq!(rx.decode(&flipped), Err(DecodeError::BadTag));
    assert!(rx.decode(&out).is_ok());
    assert_eq!(rx.decode(&out), Err(DecodeError::Replayed));
    let mut own = Codec::new(1, NODES, KEY, 0).unwrap();
    assert_eq!(own.decode(&out), Err(DecodeError::Replayed));
    for cut in 0..out.len() {
        assert!(rx.decode(&out[..cut]).is_err());
    }
    let mut stranger = Codec::new(9, &[9], KEY, 0).unwrap();
    stranger.encode(&Body::Request(Request::Rebalance), &mut out);
    assert_eq!(rx.decode(&out), Err(DecodeError::UnknownNode(9)));
    let huge = vec![0x46; MAX_DATAGRAM + 1];
    assert_eq!(rx.decode(&huge), Err(DecodeError::NotOurs));
    // A member of another version (1 bucketed flows by another hash).
    for v in [1, 3] {
        let mut other = out.clone();
        other[2] = v;
        assert_eq!(rx.decode(&other), Err(DecodeError::Version(v)));
    }
    let s = rx.stats();
    assert_eq!((s.accepted, s.unknown_node), (1, 1));
    assert!(s.unauthenticated >= 2);
    assert!(s.replayed >= 1 && s.malformed_header >= 3);
    assert!(Codec::new(1, NODES, b"short", 0).is_err());
}

/// Signs `unsigned` as node 1 would.
fn signed(tx: &Codec, mut unsigned: Vec<u8>) -> Vec<u8> {
    tx.sealer.seal(&mut unsigned);
    unsigned
}

#[test]
fn authentic_but_malformed_bodies_are_counted_and_do_not_move_the_counter() {
    let (tx, mut rx) = pair();
    let mut cases = Vec::new();
    let mut out = Vec::new();
    // Unknown type.
    encode_unsigned(1, 50, &Body::Request(Request::Rebalance), &mut out);
    out[3] = 99;
    cases.push(out.clone());
    // Trailing byte.
    encode_unsigned(1, 50, &Body::Request(Request::Rebalance), &mut out);
    out.push(0);
    cases.push(out.clone());
    // Rebalance with a node.
    encode_unsigned(1, 50, &Body::Request(Request::Drain(5)), &mut out);
    out[HEADER_LEN] = 3;
    cases.push(out.clone());
    // Released: bucket count above MAX_BUCKETS, and a bit past the end.
    let rel = Body::Released {
        version: 1,
        buckets: BucketSet::from_iter_in(10, [1]),
    };
    encode_unsigned(1, 50, &rel, &mut out);
    out[HEADER_LEN + 8..HEADER_LEN + 12].copy_from_slice(&(MAX_BUCKETS + 1).to_be_bytes());
    cases.push(out.clone());
    encode_unsigned(1, 50, &rel, &mut out);
    let last = out.len() - 1;
    out[last] |= 0x80;
    cases.push(out.clone());
    // Map: an owner index past the node table, and a backup equal to owner.
    let m = sample_map(4);
    encode_unsigned(1, 50, &Body::Map(m.clone()), &mut out);
    let owners_at = HEADER_LEN + MAP_FIXED + 3 * MAP_NODE_LEN;
    out[owners_at] = 7;
    cases.push(out.clone());
    encode_unsigned(1, 50, &Body::Map(m.clone()), &mut out);
    let owner0 = out[owners_at];
    out[owners_at + 4] = owner0;
    cases.push(out.clone());
    // Heartbeat with an unknown state.
    encode_unsigned(1, 50, &bodies()[0], &mut out);
    out[HEADER_LEN + 8] = 0;
    cases.push(out.clone());
    let n = cases.len();
    for c in cases {
        assert_eq!(rx.decode(&signed(&tx, c)), Err(DecodeError::Malformed));
    }
    assert_eq!(rx.stats().malformed, n as u64);
    encode_unsigned(1, 10, &Body::Request(Request::Rebalance), &mut out);
    assert!(rx.decode(&signed(&tx, out)).is_ok());
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = ftfw_dataplane::rng::SplitMix64::new(12);
    let (mut tx, mut rx) = pair();
    let mut good = Vec::new();
    for body in bodies() {
        tx.encode(&body, &mut good);
        for _ in 0..200 {
            let mut b = good.clone();
            let flips = 1 + rng.below(4);
            for _ in 0..flips {
                let i = usize::try_from(rng.below(b.len() as u64)).unwrap();
                b[i] ^= 1 << rng.below(8);
            }
            let _ = rx.decode(&b);
            let _ = parse_unsigned(&b[..b.len() - TAG_LEN]);
        }
    }
}
