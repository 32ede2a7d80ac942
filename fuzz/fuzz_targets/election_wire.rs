//! Fuzzes the election's wire format: `parse_unsigned` on the raw bytes,
//! the authenticating `Codec::decode` on the raw bytes (almost always a
//! bad tag), and `Codec::decode` on the bytes given the right magic and
//! version and sealed with the codec's key, so the body parser is reached
//! behind authentication. An accepted body re-encodes and parses equal.
//!
//! Run with `fuzz/run.sh 60 election_wire`.

#![no_main]

use ftfw_control::election::wire::{encode_unsigned, parse_unsigned, Codec, MAGIC, VERSION};
use ftfw_control::election::NodeId;
use ftfw_control::sealed::{Sealer, TAG_LEN};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzz-election-key-0123456789";

fn round_trip(sender: NodeId, counter: u64, body: &ftfw_control::election::Body) {
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
        round_trip(sender, counter, &body);
    }

    let mut codec = Codec::new(NodeId(u32::MAX), KEY, 0).expect("key long enough");
    let mut calls = 1;
    if let Ok(m) = codec.decode(data) {
        // A datagram sealed with the fuzz key (the seeds are).
        let (sender, counter, body) =
            parse_unsigned(&data[..data.len() - TAG_LEN]).expect("accepted, so parsable");
        assert_eq!((sender, &body), (m.sender, &m.body));
        round_trip(sender, counter, &body);
    }

    // The same bytes as header and body, sealed with the right key.
    let mut signed = data.to_vec();
    if signed.len() >= 3 {
        signed[0..2].copy_from_slice(&MAGIC);
        signed[2] = VERSION;
    }
    let sealer = Sealer::new(1, KEY, 0).expect("key long enough");
    sealer.seal(&mut signed);
    if let Ok(m) = codec.decode(&signed) {
        let (sender, counter, body) =
            parse_unsigned(&signed[..data.len()]).expect("accepted, so parsable");
        assert_eq!((sender, &body), (m.sender, &m.body));
        round_trip(sender, counter, &body);
        // A replay of an accepted datagram is refused.
        assert!(codec.decode(&signed).is_err(), "replay accepted");
        calls += 1;
    }
    calls += 1;
    let stats = codec.stats();
    assert_eq!(
        stats.accepted + stats.rejected(),
        calls,
        "every datagram counted once"
    );
});
