//! Fuzzes the cluster coordinator's "FC" wire format: `parse_unsigned` on
//! the raw bytes, `Codec::decode` on the raw bytes, and `Codec::decode` on
//! the bytes given the right magic, version and a configured sender and
//! sealed with the codec's key, so the body parser (maps, released sets,
//! requests) is reached behind authentication. A decoded map satisfies the
//! `BucketMap` invariants; an accepted body re-encodes and parses equal.
//!
//! Run with `fuzz/run.sh 60 cluster_wire`.

#![no_main]

use ftfw_control::cluster::msg::Body;
use ftfw_control::cluster::wire::{
    encode_unsigned, parse_unsigned, Codec, MAGIC, MAX_DATAGRAM, VERSION,
};
use ftfw_control::cluster::{BucketMap, NodeId, MAX_NODES};
use ftfw_control::sealed::{Sealer, TAG_LEN};
use ftfw_dataplane::buckets::MAX_BUCKETS;
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzz-cluster-key-0123456789";
const NODES: &[NodeId] = &[1, 2, 3];

fn check_map(m: &BucketMap) {
    let n = m.buckets();
    assert!(n > 0 && n <= MAX_BUCKETS, "bucket count {n}");
    assert_eq!(m.owners().len(), n as usize);
    assert_eq!(m.backups().len(), n as usize);
    let nodes = m.nodes();
    assert!(!nodes.is_empty() && nodes.len() <= MAX_NODES);
    assert!(
        nodes.windows(2).all(|w| w[0].node < w[1].node),
        "node table not sorted"
    );
    let known = |x: NodeId| nodes.iter().any(|e| e.node == x);
    for b in 0..n {
        let owner = m.owner_of(b).expect("every bucket has an owner");
        assert!(known(owner));
        let bk = m.backups_of(b);
        assert!(bk.len() < nodes.len());
        for (i, x) in bk.iter().enumerate() {
            assert!(
                known(*x) && *x != owner && !bk[..i].contains(x),
                "bucket {b} backups {bk:?}"
            );
        }
    }
    for e in nodes {
        let owned = m.owned_by(e.node);
        assert_eq!(
            owned.count() as usize,
            m.owners().iter().filter(|&&o| o == e.node).count()
        );
    }
}

fn check(sender: NodeId, counter: u64, body: &Body) {
    if let Body::Map(m) = body {
        check_map(m);
    }
    let mut again = Vec::new();
    encode_unsigned(sender, counter, body, &mut again);
    let (s, c, b) =
        parse_unsigned(&again).expect("a decoded body re-encodes to a parsable datagram");
    assert_eq!(
        (s, c, &b),
        (sender, counter, body),
        "round trip changed the message"
    );
}

fuzz_target!(|data: &[u8]| {
    if let Ok((sender, counter, body)) = parse_unsigned(data) {
        check(sender, counter, &body);
    }

    let mut codec = Codec::new(3, NODES, KEY, 0).expect("key long enough");
    if let Ok(m) = codec.decode(data) {
        // A datagram sealed with the fuzz key (the seeds are).
        let (sender, counter, body) =
            parse_unsigned(&data[..data.len() - TAG_LEN]).expect("accepted, so parsable");
        assert_eq!((sender, &body), (m.sender, &m.body));
        check(sender, counter, &body);
    }

    // The same bytes as header and body, from a configured node, sealed.
    let mut signed = data.to_vec();
    if signed.len() >= 8 {
        signed[0..2].copy_from_slice(&MAGIC);
        signed[2] = VERSION;
        let sender = u32::from_be_bytes([signed[4], signed[5], signed[6], signed[7]]);
        if !NODES.contains(&sender) {
            signed[4..8].copy_from_slice(&(1 + sender % 2).to_be_bytes());
        }
    }
    let unsigned_len = signed.len();
    let sealer = Sealer::new(1, KEY, 0).expect("key long enough");
    sealer.seal(&mut signed);
    if let Ok(m) = codec.decode(&signed) {
        let (sender, counter, body) =
            parse_unsigned(&signed[..unsigned_len]).expect("accepted, so parsable");
        assert_eq!((sender, &body), (m.sender, &m.body));
        check(sender, counter, &body);
        // An accepted datagram is never longer than the codec takes, nor
        // is its re-encoding (no map grows on the way).
        let mut again = Vec::new();
        encode_unsigned(sender, counter, &body, &mut again);
        assert!(
            again.len() + TAG_LEN <= MAX_DATAGRAM,
            "re-encoded {} bytes",
            again.len()
        );
        assert!(codec.decode(&signed).is_err(), "replay accepted");
    }
});
