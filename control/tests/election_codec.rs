//! Property tests of the election codec: round trip of every message,
//! decode of random and mutated bytes never panics, and only authentic,
//! fresh, well-formed datagrams are accepted.

use ftfw_control::election::wire::{parse_unsigned, HEADER_LEN, MAX_DATAGRAM, TAG_LEN};
use ftfw_control::election::{
    Body, Codec, DecodeError, Entry, Freshness, NodeId, Role, SelfReport, StatusTable,
};
use proptest::prelude::*;

const KEY: &[u8] = b"proptest-pre-shared-key!";

fn role() -> impl Strategy<Value = Role> {
    prop::sample::select(Role::ALL.to_vec())
}

fn freshness() -> impl Strategy<Value = Freshness> {
    (any::<bool>(), any::<u64>()).prop_map(|(synced, seq)| Freshness { synced, seq })
}

fn report() -> impl Strategy<Value = SelfReport> {
    (any::<u8>(), freshness(), role()).prop_map(|(priority, freshness, role)| SelfReport {
        priority,
        freshness,
        role,
    })
}

fn table() -> impl Strategy<Value = StatusTable> {
    prop::collection::btree_set(any::<u32>(), 0..=32)
        .prop_flat_map(|ids| {
            let ids: Vec<u32> = ids.into_iter().collect();
            let n = ids.len();
            (
                Just(ids),
                prop::collection::vec((any::<u8>(), freshness(), role(), any::<bool>()), n),
                any::<prop::sample::Index>(),
                any::<prop::sample::Index>(),
                any::<bool>(),
                any::<bool>(),
            )
        })
        .prop_map(|(ids, attrs, mi, di, has_m, has_d)| {
            let entries: Vec<Entry> = ids
                .iter()
                .zip(attrs)
                .map(|(&id, (priority, freshness, role, dead))| Entry {
                    node: NodeId(id),
                    priority,
                    freshness,
                    role,
                    dead,
                })
                .collect();
            let pick = |i: prop::sample::Index, on: bool| {
                (on && !ids.is_empty()).then(|| NodeId(ids[i.index(ids.len())]))
            };
            StatusTable::from_parts(entries, pick(mi, has_m), pick(di, has_d))
                .expect("generated table is valid")
        })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (any::<u32>(), report()).prop_map(|(nonce, report)| Body::SvcCheck { nonce, report }),
        (any::<u32>(), any::<bool>(), table()).prop_map(|(nonce, ok, table)| Body::SvcCheckReply {
            nonce,
            ok,
            table
        }),
        table().prop_map(|table| Body::SvcShutdown { table }),
        (any::<u32>(), report())
            .prop_map(|(attempt, report)| Body::DnstrTakeover { attempt, report }),
        any::<u32>().prop_map(|attempt| Body::DnstrTakeoverDeny { attempt }),
        (any::<u32>(), report())
            .prop_map(|(attempt, report)| Body::UpstrTakeover { attempt, report }),
        any::<u32>().prop_map(|attempt| Body::UpstrTakeoverDeny { attempt }),
        table().prop_map(|table| Body::SvcTakeover { table }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip(bodies in prop::collection::vec(body(), 1..6), sender in 1u32..1000, base in any::<u32>()) {
        let mut tx = Codec::new(NodeId(sender), KEY, u64::from(base)).unwrap();
        let mut rx = Codec::new(NodeId(0), KEY, 0).unwrap();
        let mut buf = Vec::new();
        for b in &bodies {
            tx.encode(b, &mut buf);
            prop_assert!(buf.len() <= MAX_DATAGRAM);
            let m = rx.decode(&buf).unwrap();
            prop_assert_eq!(m.sender, NodeId(sender));
            prop_assert_eq!(&m.body, b);
            // The same datagram again is a replay.
            prop_assert_eq!(rx.decode(&buf), Err(DecodeError::Replayed));
        }
        prop_assert_eq!(rx.stats().accepted, bodies.len() as u64);
        prop_assert_eq!(rx.stats().replayed, bodies.len() as u64);
    }

    #[test]
    fn random_bytes_never_panic_and_are_rejected(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
        let mut rx = Codec::new(NodeId(0), KEY, 0).unwrap();
        prop_assert!(rx.decode(&bytes).is_err());
        prop_assert_eq!(rx.stats().rejected(), 1);
        // The unauthenticated body parser on the same bytes, with and
        // without a valid header in front.
        let _ = parse_unsigned(&bytes);
        let mut framed = vec![b'F', b'E', 1];
        framed.extend_from_slice(&bytes);
        let _ = parse_unsigned(&framed);
    }

    #[test]
    fn mutated_datagrams_are_rejected(b in body(), pos in any::<prop::sample::Index>(), xor in 1u8..=255, cut in any::<prop::sample::Index>()) {
        let mut tx = Codec::new(NodeId(1), KEY, 0).unwrap();
        let mut rx = Codec::new(NodeId(0), KEY, 0).unwrap();
        let mut buf = Vec::new();
        tx.encode(&b, &mut buf);
        let mut flipped = buf.clone();
        let i = pos.index(flipped.len());
        flipped[i] ^= xor;
        prop_assert!(rx.decode(&flipped).is_err());
        let truncated = &buf[..cut.index(buf.len())];
        prop_assert!(rx.decode(truncated).is_err());
        // Neither moved the counter: the genuine datagram still passes.
        prop_assert!(rx.decode(&buf).is_ok());
    }

    #[test]
    fn body_parser_survives_structured_garbage(typ in 0u8..12, body in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut d = vec![b'F', b'E', 1, typ, 0, 0, 0, 1];
        d.extend_from_slice(&[0; 8]);
        d.extend_from_slice(&body);
        match parse_unsigned(&d) {
            Ok((sender, _, _)) => prop_assert_eq!(sender, NodeId(1)),
            Err(e) => prop_assert_eq!(e, DecodeError::Malformed),
        }
        prop_assert_eq!(HEADER_LEN + TAG_LEN, 32);
    }
}
