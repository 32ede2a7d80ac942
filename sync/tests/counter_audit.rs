//! The counter audit (issue 16 item 6): every field of [`EngineStats`] is
//! driven by a case that feeds the engine (with the real conntrackd wire
//! codec) one specific input and asserts the exact change of every field:
//! the counters it names moved by exactly that much, and no other field
//! moved at all. `every_counter_field_is_driven_by_a_case` fails when a
//! field is added that no case moves.
//!
//! A case is a function run both as its own test (`each::NAME`) and by the
//! guard; it returns the fields it asserted moved.

use std::collections::BTreeSet;
use std::time::Duration;

use ftfw_sync::engine::{Body, EngineConfig, EngineStats, Event, Reliability};
use ftfw_sync::wire::{flags, MsgType};

#[path = "counter_audit/rig.rs"]
mod rig;
use rig::*;

// ------------------------------------------------------------------ cases

/// A datagram of two in-sequence ALIVEs.
fn two_messages_in_one_datagram() -> Vec<&'static str> {
    let mut r = rig();
    let s = r.e.stats();
    let mut d = alive(100);
    d.extend(alive(101));
    r.recv(&d);
    expect(
        "two ALIVEs",
        &s,
        &r,
        &[("datagrams_in", 1), ("bytes_in", len(&d)), ("msgs_in", 2)],
    )
}

/// One flow pushed and sent: one datagram, one message, kept for
/// retransmission.
fn one_flow_sent() -> Vec<&'static str> {
    let mut r = rig();
    let s = r.e.stats();
    let bytes = r.send_flows(1);
    assert_eq!(r.sent.len(), 1);
    expect(
        "one flow sent",
        &s,
        &r,
        &[
            ("msgs_out", 1),
            ("datagrams_out", 1),
            ("bytes_out", i128::from(bytes)),
            ("resend_queue_depth", 1),
        ],
    )
}

/// Two deltas pushed, nothing sent yet.
fn flows_wait_in_the_transmit_queue() -> Vec<&'static str> {
    let mut r = rig();
    let s = r.e.stats();
    r.push(1);
    r.push(2);
    // A second delta of flow 1 coalesces: still two.
    r.push(1);
    expect("two flows queued", &s, &r, &[("tx_queue_depth", 2)])
}

/// A RESYNC request queued, not sent yet.
fn a_resync_request_waits_in_the_control_queue() -> Vec<&'static str> {
    let mut r = rig();
    let s = r.e.stats();
    r.e.request_resync(r.now);
    expect("resync queued", &s, &r, &[("ctl_queue_depth", 1)])
}

/// Two flows from the peer wait in the event queue.
fn peer_flows_wait_in_the_event_queue() -> Vec<&'static str> {
    let mut r = rig();
    let s = r.e.stats();
    let mut d = ct_new(100, 1);
    d.extend(ct_new(101, 2));
    r.recv(&d);
    let m = expect(
        "two CT_NEW",
        &s,
        &r,
        &[
            ("datagrams_in", 1),
            ("bytes_in", len(&d)),
            ("msgs_in", 2),
            ("event_queue_depth", 2),
        ],
    );
    assert!(matches!(r.e.poll_event(), Some(Event::Apply { .. })));
    m
}

/// A gap of three: `lost` is 3 (not conntrackd's +2), and the ACK of
/// what came before and the NACK of the gap are queued.
fn a_gap_counts_its_size() -> Vec<&'static str> {
    let mut r = rig();
    r.recv(&alive(100));
    let s = r.e.stats();
    let d = alive(104);
    r.recv(&d);
    expect(
        "gap 101..=103",
        &s,
        &r,
        &[
            ("datagrams_in", 1),
            ("bytes_in", len(&d)),
            ("msgs_in", 1),
            ("lost", 3),
            ("ctl_queue_depth", 2),
        ],
    )
}

/// Issue 16: a forged number far ahead counted 221,816,098,441 `lost`.
/// It is one jump now, and `lost` does not move.
fn a_far_jump_is_one_seq_jump_not_lost() -> Vec<&'static str> {
    let mut r = rig();
    r.recv(&alive(100));
    let s = r.e.stats();
    let d = alive(100u32.wrapping_add(0x7fff_0000));
    r.recv(&d);
    expect(
        "far jump",
        &s,
        &r,
        &[
            ("datagrams_in", 1),
            ("bytes_in", len(&d)),
            ("msgs_in", 1),
            ("seq_jumps", 1),
            ("ctl_queue_depth", 2),
        ],
    )
}

/// A gap exactly as large as the resend queue is still `lost`; one more
/// is a jump.
fn the_jump_threshold_is_the_resend_queue() -> Vec<&'static str> {
    let mut r = rig();
    r.recv(&alive(100));
    let s = r.e.stats();
    // resend_queue_max is 1024: 101..=1124 missing.
    r.recv(&alive(1125));
    let m = expect(
        "gap of 1024",
        &s,
        &r,
        &[
            ("datagrams_in", 1),
            ("bytes_in", 8),
            ("msgs_in", 1),
            ("lost", 1024),
            ("ctl_queue_depth", 2),
        ],
    );
    let s = r.e.stats();
    r.recv(&alive(1125 + 1026));
    expect(
        "gap of 1025",
        &s,
        &r,
        &[
            ("datagrams_in", 1),
            ("bytes_in", 8),
            ("msgs_in", 1),
            ("seq_jumps", 1),
            ("ctl_queue_depth", 2),
        ],
    );
    m
}

/// A message already seen is stale ("before").
fn a_duplicate_is_before() -> Vec<&'static str> {
    let mut r = rig();
    r.recv(&alive(100));
    r.recv(&alive(101));
    let s = r.e.stats();
    let d = alive(100);
    r.recv(&d);
    expect(
        "duplicate",
        &s,
        &r,
        &[
            ("datagrams_in", 1),
            ("bytes_in", len(&d)),
            ("msgs_in", 1),
            ("before", 1),
        ],
    )
}

/// Issue 16: an empty datagram was not counted. It is one malformed
/// message now.
fn an_empty_datagram_is_malformed() -> Vec<&'static str> {
    let mut r = rig();
    let s = r.e.stats();
    r.recv(&[]);
    expect(
        "empty datagram",
        &s,
        &r,
        &[("datagrams_in", 1), ("malformed", 1)],
    )
}

/// Issue 16: a 9-byte message counted as both `malformed` and
/// `malformed_payload`. Every 9-byte form counts once, in one of them.
fn nine_byte_messages_count_once() -> Vec<&'static str> {
    // (what, bytes, the one count, whether it is a tracked message)
    let forms: [(&str, Vec<u8>, &'static str, bool); 9] = [
        (
            "CT_NEW len 9",
            raw(MsgType::CtNew, 0, 9, 100, 9),
            "malformed_payload",
            true,
        ),
        (
            "CT_UPD len 9",
            raw(MsgType::CtUpd, 0, 9, 100, 9),
            "malformed_payload",
            true,
        ),
        (
            "CT_DEL len 9",
            raw(MsgType::CtDel, 0, 9, 100, 9),
            "malformed_payload",
            true,
        ),
        (
            "EXP_NEW len 9",
            raw(MsgType::ExpNew, 0, 9, 100, 9),
            "malformed_payload",
            true,
        ),
        (
            "ACK len 9",
            raw(MsgType::Ctl, flags::ACK, 9, 100, 9),
            "malformed",
            false,
        ),
        (
            "CTL without a kind",
            raw(MsgType::Ctl, 0, 9, 100, 9),
            "malformed",
            false,
        ),
        (
            "CT_NEW with a CTL flag",
            raw(MsgType::CtNew, flags::ACK, 9, 100, 9),
            "malformed",
            false,
        ),
        (
            "len 10 in 9 bytes",
            raw(MsgType::CtNew, 0, 10, 100, 9),
            "malformed",
            false,
        ),
        (
            "version 2",
            {
                let mut m = raw(MsgType::CtNew, 0, 9, 100, 9);
                m[0] = 0x20 | (m[0] & 0x0f);
                m
            },
            "malformed",
            false,
        ),
    ];
    let mut names = Vec::new();
    for (what, d, count, tracked) in forms {
        let mut r = rig();
        let s = r.e.stats();
        r.recv(&d);
        let mut want = vec![("datagrams_in", 1), ("bytes_in", 9), (count, 1)];
        if tracked {
            want.push(("msgs_in", 1));
        }
        names.extend(expect(what, &s, &r, &want));
        assert_eq!(r.e.last_seq_in(), tracked.then_some(100), "{what}");
    }
    // An 8-byte ALIVE and one byte more: the ALIVE, and a malformed tail.
    let mut r = rig();
    let s = r.e.stats();
    let mut d = alive(100);
    d.push(0);
    r.recv(&d);
    names.extend(expect(
        "ALIVE and one byte",
        &s,
        &r,
        &[
            ("datagrams_in", 1),
            ("bytes_in", 9),
            ("msgs_in", 1),
            ("malformed", 1),
        ],
    ));
    names
}

/// A flow message that can never fit the link MTU is dropped and counted.
fn a_message_too_big_for_the_mtu_is_an_encode_error() -> Vec<&'static str> {
    let mut r = rig_with(EngineConfig { mtu: 60, ..cfg() });
    let s = r.e.stats();
    r.push(1);
    assert_eq!(r.send(), 0, "nothing to send");
    expect("too big", &s, &r, &[("encode_errors", 1)])
}

/// An ACK of three stored messages frees them.
fn an_ack_frees_what_it_covers() -> Vec<&'static str> {
    let mut r = rig();
    r.send_flows(3);
    let s = r.e.stats();
    let d = ack(500, r.first, r.first + 2);
    r.recv(&d);
    expect(
        "ACK of 3",
        &s,
        &r,
        &[
            ("datagrams_in", 1),
            ("bytes_in", len(&d)),
            ("msgs_in", 1),
            ("acks_in", 1),
            ("acked", 3),
            ("resend_queue_depth", -3),
        ],
    )
}

/// An ACK that skips the first stored message: that one is sent again.
fn an_ack_skipping_an_entry_requeues_it() -> Vec<&'static str> {
    let mut r = rig();
    r.send_flows(3);
    let s = r.e.stats();
    let d = ack(500, r.first + 1, r.first + 2);
    r.recv(&d);
    let mut m = expect(
        "ACK skipping one",
        &s,
        &r,
        &[
            ("datagrams_in", 1),
            ("bytes_in", len(&d)),
            ("msgs_in", 1),
            ("acks_in", 1),
            ("acked", 2),
            ("skipped_requeued", 1),
            ("resend_queue_depth", -3),
            ("tx_queue_depth", 1),
        ],
    );
    let s = r.e.stats();
    let bytes = i128::from(r.send());
    m.extend(expect(
        "skipped entry sent again",
        &s,
        &r,
        &[
            ("msgs_out", 1),
            ("datagrams_out", 1),
            ("bytes_out", bytes),
            ("retransmitted", 1),
            ("reply_bytes", bytes),
            ("resend_queue_depth", 1),
            ("tx_queue_depth", -1),
        ],
    ));
    m
}

/// A NACK of one stored message: it goes out again, and its bytes are
/// reply bytes.
fn a_nack_is_answered() -> Vec<&'static str> {
    let mut r = rig();
    r.send_flows(3);
    let s = r.e.stats();
    let d = nack(500, r.first + 1, r.first + 1);
    r.recv(&d);
    let mut m = expect(
        "NACK of 1",
        &s,
        &r,
        &[
            ("datagrams_in", 1),
            ("bytes_in", len(&d)),
            ("msgs_in", 1),
            ("nacks_in", 1),
            ("resend_queue_depth", -1),
            ("tx_queue_depth", 1),
        ],
    );
    let s = r.e.stats();
    let bytes = i128::from(r.send());
    m.extend(expect(
        "NACK answered",
        &s,
        &r,
        &[
            ("msgs_out", 1),
            ("datagrams_out", 1),
            ("bytes_out", bytes),
            ("retransmitted", 1),
            ("reply_bytes", bytes),
            ("resend_queue_depth", 1),
            ("tx_queue_depth", -1),
        ],
    ));
    m
}

/// Best effort counts a NACK and ignores it.
fn best_effort_ignores_nacks() -> Vec<&'static str> {
    let mut r = rig_with(EngineConfig {
        reliability: Reliability::BestEffort,
        ..cfg()
    });
    r.send_flows(2);
    let s = r.e.stats();
    let d = nack(500, r.first, r.first + 1);
    r.recv(&d);
    let m = expect(
        "best-effort NACK",
        &s,
        &r,
        &[
            ("datagrams_in", 1),
            ("bytes_in", len(&d)),
            ("msgs_in", 1),
            ("nacks_in", 1),
            ("nacks_ignored", 1),
        ],
    );
    assert_eq!(r.send(), 0, "nothing sent again");
    m
}

/// The tail-loss probe: an ALIVE queued when something is unacknowledged
/// for `probe_after`.
fn a_tail_loss_probe_is_counted() -> Vec<&'static str> {
    let mut r = rig_with(EngineConfig {
        probe_after: Some(Duration::from_millis(50)),
        ..cfg()
    });
    r.send_flows(1);
    let s = r.e.stats();
    r.advance(Duration::from_millis(50));
    r.e.handle_timeout(r.now);
    expect("probe", &s, &r, &[("probes", 1), ("ctl_queue_depth", 1)])
}

/// A delta for a new flow when the transmit queue is full.
fn a_full_transmit_queue_drops_a_delta() -> Vec<&'static str> {
    let mut r = rig_with(EngineConfig {
        tx_queue_max: 1,
        ..cfg()
    });
    r.push(1);
    let s = r.e.stats();
    r.push(2);
    let m = expect("tx full", &s, &r, &[("tx_overflow", 1)]);
    assert!(r.e.take_needs_reexport(), "repaired by a re-export");
    m
}

/// A message stored when the resend queue is full drops the oldest.
fn a_full_resend_queue_drops_the_oldest() -> Vec<&'static str> {
    let mut r = rig_with(EngineConfig {
        resend_queue_max: 2,
        ..cfg()
    });
    r.send_flows(2);
    let s = r.e.stats();
    r.push(3);
    let bytes = i128::from(r.send());
    expect(
        "resend full",
        &s,
        &r,
        &[
            ("msgs_out", 1),
            ("datagrams_out", 1),
            ("bytes_out", bytes),
            ("resend_overflow", 1),
        ],
    )
}

/// A control message when the control queue (at least 4) is full.
fn a_full_control_queue_drops_a_message() -> Vec<&'static str> {
    let mut r = rig_with(EngineConfig {
        ctl_queue_max: 4,
        ..cfg()
    });
    for _ in 0..4 {
        r.e.request_resync(r.now);
    }
    let s = r.e.stats();
    r.e.request_resync(r.now);
    expect("ctl full", &s, &r, &[("ctl_overflow", 1)])
}

/// An event when the event queue is full.
fn a_full_event_queue_drops_an_event() -> Vec<&'static str> {
    let mut r = rig_with(EngineConfig {
        event_queue_max: 1,
        ..cfg()
    });
    let s = r.e.stats();
    let mut d = ct_new(100, 1);
    d.extend(ct_new(101, 2));
    r.recv(&d);
    expect(
        "events full",
        &s,
        &r,
        &[
            ("datagrams_in", 1),
            ("bytes_in", len(&d)),
            ("msgs_in", 2),
            ("event_queue_depth", 1),
            ("event_overflow", 1),
        ],
    )
}

/// A NACK of an entry the resend queue already dropped: counted, not
/// answered (plain mode: no re-export).
fn a_nack_of_a_dropped_entry_is_unrecoverable() -> Vec<&'static str> {
    let mut r = rig_with(EngineConfig {
        resend_queue_max: 1,
        ..cfg()
    });
    r.push(1);
    r.send();
    r.push(2);
    r.send();
    assert_eq!(r.e.stats().resend_overflow, 1);
    let s = r.e.stats();
    let d = nack(500, r.first, r.first);
    r.recv(&d);
    let m = expect(
        "NACK of dropped",
        &s,
        &r,
        &[
            ("datagrams_in", 1),
            ("bytes_in", len(&d)),
            ("msgs_in", 1),
            ("nacks_in", 1),
            ("nack_unrecoverable", 1),
        ],
    );
    assert!(!r.e.take_needs_reexport(), "plain mode: no re-export");
    m
}

/// With `nack_reexport`, the first unrecoverable NACK re-exports; the
/// next one within the hold-off is suppressed.
fn a_second_reexport_within_the_holdoff_is_suppressed() -> Vec<&'static str> {
    let mut r = rig_with(EngineConfig {
        resend_queue_max: 1,
        nack_reexport: true,
        ..cfg()
    });
    r.push(1);
    r.send();
    r.push(2);
    r.send();
    r.recv(&nack(500, r.first, r.first));
    assert!(r.e.take_needs_reexport());
    r.advance(Duration::from_secs(1));
    let s = r.e.stats();
    let d = nack(501, r.first, r.first);
    r.recv(&d);
    let m = expect(
        "second NACK of dropped",
        &s,
        &r,
        &[
            ("datagrams_in", 1),
            ("bytes_in", len(&d)),
            ("msgs_in", 1),
            ("nacks_in", 1),
            ("nack_unrecoverable", 1),
            ("nack_reexport_suppressed", 1),
        ],
    );
    assert!(!r.e.take_needs_reexport());
    m
}

/// A NACK of 40 stored messages answered as far as the reply budget
/// (1500 bytes, no refill) covers.
fn the_reply_budget_limits_a_nack() -> Vec<&'static str> {
    let mut r = rig_with(EngineConfig {
        reply_burst: 1500,
        reply_rate: 0,
        ..cfg()
    });
    r.send_flows(40);
    // Each entry is charged the largest message sent (at least 96 bytes);
    // every flow message here has the same size.
    let one = ct_new(0, 1).len() as u64;
    let covered = i128::from(1500 / one.max(96));
    assert!(covered > 0 && covered < 40, "{covered}");
    let s = r.e.stats();
    let d = nack(500, r.first, r.first + 39);
    r.recv(&d);
    expect(
        "NACK of 40",
        &s,
        &r,
        &[
            ("datagrams_in", 1),
            ("bytes_in", len(&d)),
            ("msgs_in", 1),
            ("nacks_in", 1),
            ("replies_limited", 1),
            ("resend_queue_depth", -covered),
            ("tx_queue_depth", covered),
        ],
    )
}

/// A HELLO starts a peer incarnation.
fn a_hello_is_a_peer_restart() -> Vec<&'static str> {
    let mut r = rig();
    let s = r.e.stats();
    let d = msg(100, true, Body::Alive);
    r.recv(&d);
    let m = expect(
        "HELLO",
        &s,
        &r,
        &[
            ("datagrams_in", 1),
            ("bytes_in", len(&d)),
            ("msgs_in", 1),
            ("peer_restarts", 1),
            ("event_queue_depth", 1),
        ],
    );
    assert_eq!(r.e.poll_event(), Some(Event::PeerRestarted));
    m
}

/// Issue 16: one forged datagram far ahead made every real message stale
/// for good. Now the real peer's messages (one per 100 ms, alive interval
/// 1 s) are stale for three intervals, then the engine re-bases on the
/// peer and asks for a RESYNC; `lost` never moves.
fn a_forged_far_number_is_recovered_from() -> Vec<&'static str> {
    let mut r = rig();
    r.recv(&alive(100));
    r.recv(&alive(100u32.wrapping_add(0x4000_0000)));
    let s = r.e.stats();
    let mut bytes = 0;
    for i in 0..31 {
        let d = alive(101 + i);
        bytes += len(&d);
        r.recv(&d);
        r.advance(Duration::from_millis(100));
    }
    let m = expect(
        "forged far number",
        &s,
        &r,
        &[
            ("datagrams_in", 31),
            ("bytes_in", bytes),
            ("msgs_in", 31),
            ("before", 30),
            ("out_of_sync_resyncs", 1),
            ("ctl_queue_depth", 1),
            ("event_queue_depth", 1),
        ],
    );
    assert_eq!(r.e.poll_event(), Some(Event::OutOfSync));
    assert_eq!(r.e.last_seq_in(), Some(131));
    // In sync again: the next message is accepted and nothing is lost.
    let s = r.e.stats();
    r.recv(&alive(132));
    expect(
        "after the recovery",
        &s,
        &r,
        &[("datagrams_in", 1), ("bytes_in", 8), ("msgs_in", 1)],
    );
    m
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        /// Every case, by name.
        const CASES: &[(&str, fn() -> Vec<&'static str>)] = &[$((stringify!($name), $name)),*];

        /// Each case as its own test.
        mod each {
            $(
                #[test]
                fn $name() {
                    super::$name();
                }
            )*
        }
    };
}

cases!(
    two_messages_in_one_datagram,
    one_flow_sent,
    flows_wait_in_the_transmit_queue,
    a_resync_request_waits_in_the_control_queue,
    peer_flows_wait_in_the_event_queue,
    a_gap_counts_its_size,
    a_far_jump_is_one_seq_jump_not_lost,
    the_jump_threshold_is_the_resend_queue,
    a_duplicate_is_before,
    an_empty_datagram_is_malformed,
    nine_byte_messages_count_once,
    a_message_too_big_for_the_mtu_is_an_encode_error,
    an_ack_frees_what_it_covers,
    an_ack_skipping_an_entry_requeues_it,
    a_nack_is_answered,
    best_effort_ignores_nacks,
    a_tail_loss_probe_is_counted,
    a_full_transmit_queue_drops_a_delta,
    a_full_resend_queue_drops_the_oldest,
    a_full_control_queue_drops_a_message,
    a_full_event_queue_drops_an_event,
    a_nack_of_a_dropped_entry_is_unrecoverable,
    a_second_reexport_within_the_holdoff_is_suppressed,
    the_reply_budget_limits_a_nack,
    a_hello_is_a_peer_restart,
    a_forged_far_number_is_recovered_from,
);

/// The guard: every field of [`EngineStats`] is moved (by an exact,
/// asserted amount) by some case, and every case moves something. A new
/// field without a case fails here.
#[test]
fn every_counter_field_is_driven_by_a_case() {
    let all: BTreeSet<String> = fields(&EngineStats::default()).into_keys().collect();
    let mut driven = BTreeSet::new();
    for (name, case) in CASES {
        let moved = case();
        assert!(!moved.is_empty(), "{name} moves nothing");
        driven.extend(moved.into_iter().map(String::from));
    }
    let missing: Vec<_> = all.difference(&driven).collect();
    assert!(missing.is_empty(), "no case drives {missing:?}");
    assert_eq!(driven, all);
}

/// `lost` grows by at most the resend queue's size per message, whatever
/// the peer's numbers: no single datagram can make it absurd.
#[test]
fn lost_grows_by_at_most_the_resend_queue_per_message() {
    let mut r = rig();
    let mut seq = 100u32;
    let mut x = 0x9e37_79b9_u32;
    for _ in 0..5000 {
        // A small xorshift: jumps of every size, forward and back.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        seq = match x % 4 {
            0 => seq.wrapping_add(1),
            1 => seq.wrapping_add(x % 2048),
            2 => seq.wrapping_add(x),
            _ => seq.wrapping_sub(x % 64),
        };
        let before = r.e.stats().lost;
        r.recv(&alive(seq));
        assert!(r.e.stats().lost - before <= 1024, "seq {seq}");
        r.advance(Duration::from_millis(7));
    }
    let s = r.e.stats();
    assert!(s.lost <= s.msgs_in * 1024);
    assert!(s.seq_jumps > 0 && s.lost > 0 && s.before > 0);
}
