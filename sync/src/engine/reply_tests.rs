//! The reply budget (issue 16, `budget.rs`): what NACKs can make us send.

use super::*;

/// An engine that sent `n` flows (initial sequence 1000) the peer never
/// acknowledged, and the bytes of those datagrams.
fn sent_unacked(cfg: EngineConfig, n: u32, t0: Instant) -> (Engine<TestCodec>, usize) {
    let mut e = Engine::new(cfg, TestCodec, t0);
    let mut sent = 0;
    let mut buf = Vec::new();
    for i in 0..n {
        e.push_delta(t0, FlowKind::New, st(i, 0));
        while e.poll_transmit(t0 + Duration::from_millis(1), &mut buf) {
            sent += buf.len();
        }
    }
    while e.poll_transmit(t0 + Duration::from_millis(1), &mut buf) {
        sent += buf.len();
    }
    let kept = e.config().resend_queue_max.min(n as usize);
    assert_eq!(e.stats().resend_queue_depth, kept);
    (e, sent)
}

/// Runs the engine's timers from `from` to `to` and returns the bytes of
/// flow messages it sent meanwhile (ALIVE and ACK are not replies).
fn run_until(e: &mut Engine<TestCodec>, from: Instant, to: Instant) -> usize {
    let mut now = from;
    let mut bytes = 0;
    let mut buf = Vec::new();
    for _ in 0..1_000_000 {
        e.handle_timeout(now);
        while e.poll_transmit(now, &mut buf) {
            bytes += decode(&buf)
                .iter()
                .filter(|m| matches!(m.body, Body::Flow { .. }))
                .count()
                * (8 + test_codec::FLOW_LEN);
        }
        let Some(next) = e.poll_timeout() else { break };
        if next > to {
            break;
        }
        now = next.max(now + Duration::from_micros(1));
    }
    bytes
}

#[test]
fn a_nack_of_dropped_entries_exports_nothing_in_plain_mode() {
    let t0 = Instant::now();
    let (mut e, _) = sent_unacked(
        EngineConfig {
            resend_queue_max: 4,
            ..cfg(1000)
        },
        10,
        t0,
    );
    assert_eq!(e.stats().resend_overflow, 6);
    feed(
        &mut e,
        t0,
        msg(
            1,
            Body::Nack {
                from: 1000,
                to: 1001,
            },
        ),
    );
    assert_eq!(e.stats().nack_unrecoverable, 1);
    assert!(!e.take_needs_reexport());
    assert!(flat(&mut e, t0 + Duration::from_millis(2)).is_empty());
}

/// Issue 16's attack: 16-byte NACKs reaching about 131,000 sequence
/// numbers back, against 10,000 flows the peer never acknowledged (the
/// worst case: all of them still in the resend queue). Within a second we
/// send again at most `reply_factor` times what the NACKs weighed, plus
/// the burst and one second of refill; without the budget it would be the
/// whole queue, six times.
#[test]
fn far_reaching_nacks_send_at_most_the_reply_budget() {
    let t0 = Instant::now();
    let c = cfg(1000);
    let (burst, rate, factor) = (c.reply_burst, c.reply_rate, c.reply_factor);
    let (mut e, sent) = sent_unacked(c, 10_000, t0);
    let t1 = t0 + Duration::from_millis(2);
    let mut received = 0usize;
    for k in 0..6u32 {
        let d = dgram(&[msg(
            500 + k,
            Body::Nack {
                from: 1000u32.wrapping_sub(121_000),
                to: 1000 + 10_000,
            },
        )]);
        assert_eq!(d.len(), 16);
        received += d.len();
        e.handle_datagram(t1, &d);
    }
    let window = Duration::from_secs(1);
    let replies = run_until(&mut e, t1, t1 + window);
    let allowed = usize::try_from(factor).unwrap() * received
        + usize::try_from(burst + rate * window.as_secs()).unwrap()
        + 1500;
    assert!(
        replies <= allowed,
        "sent {replies} bytes again for {received} received (allowed {allowed}; table {sent})"
    );
    assert!(
        replies > 0,
        "the NACKed flows are sent again, within the budget"
    );
    assert!(replies * 4 < sent, "not the whole queue");
    let s = e.stats();
    assert!(s.replies_limited >= 1);
    assert_eq!(s.reply_bytes, replies as u64);
}

/// What the budget did not cover is owed: it follows as bytes arrive from
/// the peer (no time refill here), never more than they pay for.
#[test]
fn the_rest_of_a_nack_follows_as_the_peer_sends() {
    let t0 = Instant::now();
    let (mut e, _) = sent_unacked(
        EngineConfig {
            reply_rate: 0,
            reply_burst: 0, // raised to the MTU
            ..cfg(1000)
        },
        100,
        t0,
    );
    let t1 = t0 + Duration::from_millis(2);
    feed(
        &mut e,
        t1,
        msg(
            1,
            Body::Nack {
                from: 1000,
                to: 1099,
            },
        ),
    );
    let first = run_until(&mut e, t1, t1 + Duration::from_millis(1));
    // The budget starts full (1500 bytes, the MTU), charged 96 bytes per
    // entry.
    assert_eq!(first, 1500 / 96 * 61);
    assert_eq!(e.stats().replies_limited, 1);
    let mut received = 16;
    let mut replies = first;
    let mut now = t1;
    for k in 2..200u32 {
        now += Duration::from_millis(1);
        feed(&mut e, now, msg(k, Body::Alive));
        received += 8;
        replies += run_until(&mut e, now, now);
        assert!(replies <= 1500 + 10 * received);
    }
    assert_eq!(replies, 100 * 61, "every NACKed flow went out again");
    assert_eq!(e.stats().retransmitted, 100);
}

/// Loss recovery of a real peer: what it acknowledges pays for what it
/// lost, so a large lossy transfer needs no time refill.
#[test]
fn acknowledged_bytes_pay_for_retransmissions() {
    let t0 = Instant::now();
    let c = EngineConfig {
        reply_rate: 0,
        ..cfg(1000)
    };
    let per = usize::try_from(c.reply_burst).unwrap() / 96;
    let (mut e, _) = sent_unacked(c, 5000, t0);
    let t1 = t0 + Duration::from_millis(2);
    // The peer got four of five: ACK 4000 of them, NACK the rest. The
    // budget holds at most `reply_burst`: that much goes now.
    feed(
        &mut e,
        t1,
        msg(
            1,
            Body::Ack {
                from: 1000,
                to: 4999,
            },
        ),
    );
    feed(
        &mut e,
        t1,
        msg(
            2,
            Body::Nack {
                from: 5000,
                to: 5999,
            },
        ),
    );
    let t2 = t1 + Duration::from_millis(1);
    let first = run_until(&mut e, t1, t2);
    assert_eq!(first, per * 61);
    assert_eq!(e.stats().replies_limited, 1);
    // The peer acknowledges those: the rest follows, with no time passing.
    let to = 6000 + u32::try_from(per).unwrap() - 1;
    feed(&mut e, t2, msg(3, Body::Ack { from: 6000, to }));
    let rest = run_until(&mut e, t2, t2 + Duration::from_millis(1));
    assert_eq!(first + rest, 1000 * 61);
    assert_eq!(e.stats().retransmitted, 1000);
}
