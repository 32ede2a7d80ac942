//! Exact receive counters (issue 16 item 6), each driven by a datagram:
//! an empty datagram, a 9-byte message, a far-ahead sequence number.

use std::time::{Duration, Instant};

use ftfw_sync::codec::WireCodec;
use ftfw_sync::engine::{Engine, EngineConfig, EngineStats};
use ftfw_sync::wire::{flags, EncodeOptions, Header, MsgType};

fn engine(t0: Instant) -> Engine<WireCodec> {
    let cfg = EngineConfig {
        initial_seq: 1000,
        resend_queue_max: 1024,
        ..EngineConfig::default()
    };
    Engine::new(cfg, WireCodec::new(EncodeOptions::default()), t0)
}

fn alive(seq: u32, hello: bool) -> Vec<u8> {
    let f = flags::ALIVE | if hello { flags::HELLO } else { 0 };
    Header::new(MsgType::Ctl, f, 8, seq).to_bytes().to_vec()
}

/// (malformed, malformed_payload, lost, seq_jumps)
fn counts(s: &EngineStats) -> (u64, u64, u64, u64) {
    (s.malformed, s.malformed_payload, s.lost, s.seq_jumps)
}

#[test]
fn an_empty_datagram_is_counted_malformed() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    e.handle_datagram(t0, &[]);
    assert_eq!(counts(&e.stats()), (1, 0, 0, 0));
    assert_eq!(e.stats().datagrams_in, 1);
}

#[test]
fn a_nine_byte_message_counts_once() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    for (seq, ty) in [
        (6, MsgType::CtNew),
        (7, MsgType::CtUpd),
        (8, MsgType::CtDel),
    ] {
        let mut m = Header::new(ty, 0, 9, seq).to_bytes().to_vec();
        m.push(0);
        e.handle_datagram(t0, &m);
    }
    assert_eq!(counts(&e.stats()), (0, 3, 0, 0), "one count per message");
}

#[test]
fn a_far_jump_counts_once_and_small_gaps_count_their_size() {
    let t0 = Instant::now();
    let mut e = engine(t0);
    e.handle_datagram(t0, &alive(100, true));
    e.handle_datagram(t0, &alive(104, false));
    assert_eq!(counts(&e.stats()), (0, 0, 3, 0), "101..=103");
    let t1 = t0 + Duration::from_millis(1);
    e.handle_datagram(t1, &alive(104u32.wrapping_add(1 << 30), false));
    assert_eq!(counts(&e.stats()), (0, 0, 3, 1), "a jump, not 2^30 lost");
}
