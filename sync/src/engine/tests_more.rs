//! Unit tests of the engine, continued: best-effort mode and later cases.

use super::*;

#[test]
fn resend_overflow_drops_oldest_and_counts() {
    let t0 = Instant::now();
    let mut e = Engine::new(
        EngineConfig {
            resend_queue_max: 4,
            nack_reexport: true,
            ..cfg(100)
        },
        TestCodec,
        t0,
    );
    for i in 0..10 {
        e.push_delta(t0, FlowKind::New, st(i, 0));
    }
    assert_eq!(flat(&mut e, t0 + Duration::from_millis(1)).len(), 10);
    let s = e.stats();
    assert_eq!((s.resend_queue_depth, s.resend_overflow), (4, 6));
    // A NACK into the dropped part cannot be served: re-export (only
    // with `nack_reexport`, see `reply_tests.rs` for the default).
    assert!(!e.take_needs_reexport());
    feed(&mut e, t0, msg(1, Body::Nack { from: 100, to: 101 }));
    assert_eq!(e.stats().nack_unrecoverable, 1);
    assert!(e.take_needs_reexport());
    // A NACK of kept entries resends them.
    feed(&mut e, t0, msg(2, Body::Nack { from: 108, to: 109 }));
    assert_eq!(flat(&mut e, t0 + Duration::from_millis(2)).len(), 2);
    // More NACKs of dropped entries within the hold-off are counted and
    // not answered with another whole table; after it, one is again.
    let holdoff = EngineConfig::default().nack_reexport_holdoff;
    for k in 0..5u32 {
        let at = t0 + Duration::from_millis(3 + u64::from(k));
        feed(&mut e, at, msg(3 + k, Body::Nack { from: 100, to: 101 }));
        assert!(!e.take_needs_reexport());
    }
    assert_eq!(e.stats().nack_reexport_suppressed, 5);
    feed(
        &mut e,
        t0 + holdoff,
        msg(9, Body::Nack { from: 100, to: 101 }),
    );
    assert!(e.take_needs_reexport());
    assert_eq!(e.stats().nack_unrecoverable, 7);
}

#[test]
fn tx_overflow_sets_reexport() {
    let t0 = Instant::now();
    let mut e = Engine::new(
        EngineConfig {
            tx_queue_max: 2,
            ..cfg(1)
        },
        TestCodec,
        t0,
    );
    e.push_delta(t0, FlowKind::New, st(1, 0));
    e.push_delta(t0, FlowKind::New, st(2, 0));
    e.push_delta(t0, FlowKind::Update, st(1, 5)); // coalesces, no overflow
    assert!(!e.take_needs_reexport());
    e.push_delta(t0, FlowKind::New, st(3, 0));
    assert_eq!(e.stats().tx_overflow, 1);
    assert!(e.take_needs_reexport());
    assert!(!e.take_needs_reexport());
    assert_eq!(e.tx_space(), 0);
    assert_eq!(e.push_bulk(t0, vec![st(4, 0), st(5, 0)]), 0);
    assert_eq!(flat(&mut e, t0 + Duration::from_millis(1)).len(), 2);
    assert_eq!(e.push_bulk(t0, vec![st(4, 0), st(5, 0), st(6, 0)]), 2);
}

#[test]
fn received_flows_become_events() {
    let t0 = Instant::now();
    let mut e = eng(1, t0);
    let d = dgram(&[
        msg(
            10,
            Body::Flow {
                kind: FlowKind::New,
                state: st(1, 1),
            },
        ),
        msg(11, Body::Resync),
        msg(
            12,
            Body::Flow {
                kind: FlowKind::Destroy,
                state: st(1, 1),
            },
        ),
    ]);
    e.handle_datagram(t0, &d);
    assert_eq!(
        e.poll_event(),
        Some(Event::Apply {
            kind: FlowKind::New,
            state: st(1, 1)
        })
    );
    assert_eq!(e.poll_event(), Some(Event::ResyncRequested));
    assert!(matches!(
        e.poll_event(),
        Some(Event::Apply {
            kind: FlowKind::Destroy,
            ..
        })
    ));
    assert_eq!(e.stats().msgs_in, 3);
}

#[test]
fn malformed_datagrams_are_counted() {
    let t0 = Instant::now();
    let mut e = eng(1, t0);
    e.handle_datagram(t0, &[1, 2, 3]);
    e.handle_datagram(t0, &[0, 8, 99, 0, 0, 0, 0, 1]); // bad type
                                                       // Bad payload: tracked (seq 7 accepted) but not applied.
    let mut d = dgram(&[msg(
        7,
        Body::Flow {
            kind: FlowKind::New,
            state: st(1, 1),
        },
    )]);
    d[8 + 40] = 200; // tcp state
    e.handle_datagram(t0, &d);
    let s = e.stats();
    assert_eq!((s.malformed, s.malformed_payload), (2, 1));
    assert_eq!(e.last_seq_in(), Some(7));
    assert!(e.poll_event().is_none());
}

#[test]
fn peer_restart_requeues_after_handshake() {
    // A message sent before the peer tracked us is sent again when our
    // handshake completes.
    let t0 = Instant::now();
    let mut e = eng(100, t0);
    e.push_delta(t0, FlowKind::New, st(1, 0));
    let m = flat(&mut e, t0 + Duration::from_millis(1));
    assert!(m[0].hello);
    let mut back = msg(7, Body::Alive);
    back.hello_back = true;
    feed(&mut e, t0, back);
    let m = flat(&mut e, t0 + Duration::from_millis(2));
    assert_eq!(m.len(), 1);
    assert!(!m[0].hello);
    assert_eq!(m[0].seq, 101);
}

fn best_effort(initial_seq: u32, t0: Instant) -> Engine<TestCodec> {
    let cfg = EngineConfig {
        reliability: Reliability::BestEffort,
        ..cfg(initial_seq)
    };
    Engine::new(cfg, TestCodec, t0)
}

fn flow_msg(seq: u32, i: u32, mark: u32) -> Msg {
    msg(
        seq,
        Body::Flow {
            kind: FlowKind::Update,
            state: st(i, mark),
        },
    )
}

#[test]
fn best_effort_counts_a_gap_as_lost_and_never_acks_or_nacks() {
    let t0 = Instant::now();
    let mut e = best_effort(1, t0);
    feed(&mut e, t0, flow_msg(10, 1, 1));
    feed(&mut e, t0, flow_msg(11, 2, 1));
    // 12..=14 never arrive.
    feed(&mut e, t0, flow_msg(15, 3, 1));
    feed(&mut e, t0, flow_msg(16, 4, 1));
    assert_eq!(e.stats().lost, 3);
    assert_eq!(e.last_seq_in(), Some(16));
    // Nothing goes out at once: FT-FW would NACK 12..14 here.
    assert!(flat(&mut e, t0).is_empty());
    // Every message received, including those after the gap, is applied.
    let applied: Vec<FlowKey> = std::iter::from_fn(|| e.poll_event())
        .map(|ev| match ev {
            Event::Apply { state, .. } => state.key,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(applied, vec![key(1), key(2), key(3), key(4)]);
    // A late copy of 13 is old: dropped, not applied.
    feed(&mut e, t0, flow_msg(13, 5, 1));
    assert_eq!(e.stats().before, 1);
    assert!(e.poll_event().is_none());
    // The alive timer sends ALIVE, never ACK, although four messages were
    // received unacknowledged; and more than an ACK window changes nothing.
    for s in 17..417 {
        feed(&mut e, t0, msg(s, Body::Alive));
    }
    for k in 1..=3u32 {
        let t = t0 + Duration::from_secs(u64::from(k));
        e.handle_timeout(t);
        let m = flat(&mut e, t);
        assert_eq!(bodies(&m), vec![Body::Alive], "tick {k}");
    }
    let st = e.stats();
    assert_eq!(
        (st.lost, st.resend_queue_depth, st.ctl_queue_depth),
        (3, 0, 0)
    );
}

#[test]
fn best_effort_keeps_nothing_and_a_nack_resends_nothing() {
    let t0 = Instant::now();
    let mut e = best_effort(100, t0);
    for i in 0..3 {
        e.push_delta(t0, FlowKind::New, st(i, 0));
    }
    e.request_resync(t0);
    let m = flat(&mut e, t0 + Duration::from_millis(1));
    let seqs: Vec<u32> = m.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, vec![100, 101, 102, 103]);
    assert_eq!(m[0].body, Body::Resync);
    assert!(m.iter().all(|m| m.hello), "HELLO until HELLO_BACK");
    assert_eq!(e.stats().resend_queue_depth, 0);
    // The peer NACKs all of it (a FT-FW peer would): ignored, counted.
    feed(&mut e, t0, msg(5000, Body::Nack { from: 100, to: 103 }));
    feed(&mut e, t0, msg(5001, Body::Ack { from: 100, to: 103 }));
    let t1 = t0 + Duration::from_millis(2);
    assert!(flat(&mut e, t1).is_empty());
    let s = e.stats();
    assert_eq!(
        (
            s.nacks_in,
            s.nacks_ignored,
            s.acks_in,
            s.acked,
            s.retransmitted
        ),
        (1, 1, 1, 0, 0)
    );
    // A changed flow goes out once with its new state and a new number;
    // the flow table does not remember the earlier message.
    e.push_delta(t1, FlowKind::Update, st(1, 9));
    let m = flat(&mut e, t1 + Duration::from_millis(1));
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].seq, 104);
    assert_eq!(
        m[0].body,
        Body::Flow {
            kind: FlowKind::Update,
            state: st(1, 9)
        }
    );
    assert!(e.acked_below(e.sent_index()));
}

#[test]
fn best_effort_keeps_hello_alive_and_resync() {
    let t0 = Instant::now();
    let mut e = best_effort(100, t0);
    // The peer's HELLO re-bases; our next message says HELLO_BACK.
    let mut h = msg(7, Body::Alive);
    h.hello = true;
    feed(&mut e, t0, h);
    assert_eq!(e.poll_event(), Some(Event::PeerRestarted));
    let t1 = t0 + Duration::from_secs(1);
    e.handle_timeout(t1);
    let m = flat(&mut e, t1);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].body, Body::Alive);
    assert!(m[0].hello && m[0].hello_back);
    // Its HELLO_BACK completes our handshake.
    let mut back = msg(8, Body::Alive);
    back.hello_back = true;
    feed(&mut e, t1, back);
    assert_eq!(e.hello_state(), HelloState::Done);
    // A RESYNC from the peer is still an event for the driver.
    feed(&mut e, t1, msg(9, Body::Resync));
    assert_eq!(e.poll_event(), Some(Event::ResyncRequested));
    // A new incarnation (HELLO at a lower number, after the grace) re-bases.
    let t2 = t1 + Duration::from_secs(5);
    let mut h = msg(2, Body::Alive);
    h.hello = true;
    feed(&mut e, t2, h);
    assert_eq!(e.poll_event(), Some(Event::PeerRestarted));
    assert_eq!(e.last_seq_in(), Some(2));
    assert_eq!(e.stats().peer_restarts, 2);
    assert!(flat(&mut e, t2).is_empty(), "no ACK of the HELLO");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn arbitrary_datagrams_never_panic(dgrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..8)) {
        let t0 = Instant::now();
        let mut e = eng(0xffff_fff0, t0);
        e.push_delta(t0, FlowKind::New, st(1, 0));
        let mut buf = Vec::new();
        let mut t = t0;
        for d in &dgrams {
            e.handle_datagram(t, d);
            e.handle_timeout(t);
            while e.poll_transmit(t, &mut buf) {}
            while e.poll_event().is_some() {}
            t += Duration::from_millis(300);
        }
    }

    #[test]
    fn arbitrary_messages_never_panic(ms in proptest::collection::vec((any::<u32>(), any::<bool>(), any::<bool>(), 0u8..5, any::<u32>(), any::<u32>()), 1..40)) {
        let t0 = Instant::now();
        let mut e = eng(0xffff_fff0, t0);
        let mut buf = Vec::new();
        for (i, (seq, hello, hello_back, k, a, b)) in ms.into_iter().enumerate() {
            let body = match k {
                0 => Body::Ack { from: a, to: b },
                1 => Body::Nack { from: a, to: b },
                2 => Body::Resync,
                3 => Body::Alive,
                _ => Body::Flow { kind: FlowKind::Update, state: st(a % 7, b) },
            };
            e.push_delta(t0, FlowKind::Update, st(a % 5, b));
            feed(&mut e, t0, Msg { seq, hello, hello_back, body });
            let t = t0 + Duration::from_millis(10 * i as u64);
            e.handle_timeout(t);
            while e.poll_transmit(t, &mut buf) {}
        }
    }
}

/// An engine with the tail-loss probe, past its HELLO, with `n` flows sent
/// at the returned instant and nothing acknowledged.
fn probing(n: u32, probe: Option<Duration>, t0: Instant) -> (Engine<TestCodec>, Instant) {
    let mut e = Engine::new(
        EngineConfig {
            probe_after: probe,
            ..cfg(100)
        },
        TestCodec,
        t0,
    );
    e.handle_timeout(t0 + Duration::from_secs(1));
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(flat(&mut e, t1).len(), 1); // ALIVE|HELLO, seq 100
    let mut back = msg(5000, Body::Alive);
    back.hello_back = true;
    feed(&mut e, t1, back);
    for i in 0..n {
        e.push_delta(t1, FlowKind::New, st(i, 0));
    }
    let t2 = t1 + Duration::from_millis(1);
    assert_eq!(flat(&mut e, t2).len(), n as usize);
    (e, t2)
}

#[test]
fn tail_loss_probe_sends_alive_until_an_ack_makes_progress() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let (mut e, t) = probing(3, Some(ms(1)), t0);
    // Flows 101..=103 are out; no ACK comes. The probe is due 1 ms after.
    assert_eq!(e.poll_timeout(), Some(t + ms(1)));
    e.handle_timeout(t + ms(1) - Duration::from_micros(1));
    assert!(flat(&mut e, t + ms(1) - Duration::from_micros(1)).is_empty());
    e.handle_timeout(t + ms(1));
    let m = flat(&mut e, t + ms(1));
    assert_eq!(bodies(&m), [Body::Alive]);
    assert_eq!(m[0].seq, 104, "the probe carries the next sequence number");
    assert_eq!(e.stats().probes, 1);
    // Then after twice as long, then four times.
    assert_eq!(e.poll_timeout(), Some(t + ms(3)));
    e.handle_timeout(t + ms(3));
    assert_eq!(bodies(&flat(&mut e, t + ms(3))), [Body::Alive]);
    assert_eq!(e.poll_timeout(), Some(t + ms(7)));
    // The peer saw the gap the lost datagram left and NACKs it: the flows
    // go out again; its ACK of everything ends the probing.
    feed(
        &mut e,
        t + ms(4),
        msg(5001, Body::Nack { from: 101, to: 103 }),
    );
    assert_eq!(flat(&mut e, t + ms(5)).len(), 3);
    feed(
        &mut e,
        t + ms(6),
        msg(5002, Body::Ack { from: 104, to: 108 }),
    );
    assert_eq!(e.stats().resend_queue_depth, 0);
    e.handle_timeout(t + ms(7));
    assert!(flat(&mut e, t + ms(7)).is_empty());
    assert_eq!(e.stats().probes, 2);
}

#[test]
fn no_probe_when_off_or_best_effort() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let (mut e, t) = probing(3, None, t0);
    e.handle_timeout(t + ms(20));
    assert!(flat(&mut e, t + ms(20)).is_empty());
    assert_eq!(e.stats().probes, 0);
    let mut b = Engine::new(
        EngineConfig {
            probe_after: Some(ms(1)),
            reliability: Reliability::BestEffort,
            ..cfg(100)
        },
        TestCodec,
        t0,
    );
    b.push_delta(t0, FlowKind::New, st(1, 0));
    assert!(!flat(&mut b, t0 + ms(1)).is_empty());
    b.handle_timeout(t0 + ms(5));
    assert!(flat(&mut b, t0 + ms(5)).is_empty());
    assert_eq!(b.stats().probes, 0);
}

#[test]
fn nacked_entries_count_as_unacknowledged_until_acked_again() {
    let t0 = Instant::now();
    let mut e = done_with_flows(3, t0);
    let t = t0 + Duration::from_secs(2);
    let mark = e.sent_index();
    assert!(!e.acked_below(mark));
    // The peer lost 101..=103 and NACKs them: they leave the resend queue
    // for the transmit queue, still unacknowledged.
    feed(&mut e, t, msg(5001, Body::Nack { from: 101, to: 103 }));
    assert_eq!(e.stats().resend_queue_depth, 0);
    assert!(!e.acked_below(mark), "requeued, not acknowledged");
    let again = flat(&mut e, t + Duration::from_millis(1));
    assert_eq!(again.len(), 3);
    assert!(!e.acked_below(mark), "resent, not acknowledged");
    feed(&mut e, t, msg(5002, Body::Ack { from: 104, to: 106 }));
    assert!(e.acked_below(mark));
    assert!(e.acked_below(e.sent_index()));
}

fn new_flow(seq: u32, i: u32, mark: u32) -> Msg {
    msg(
        seq,
        Body::Flow {
            kind: FlowKind::New,
            state: st(i, mark),
        },
    )
}

/// Issue 16, item 1: one forged datagram with a sequence number far ahead
/// made every genuine message "before", for good. Now the engine notices
/// (every message stale for `OUT_OF_SYNC_INTERVALS` alive intervals while
/// the peer keeps sending), re-bases on the peer, asks for a RESYNC and
/// counts it; reception resumes.
#[test]
fn forged_future_seq_is_recovered_within_a_few_alive_intervals() {
    let t0 = Instant::now();
    let alive = EngineConfig::default().alive_interval;
    let mut e = eng(1, t0);
    feed(&mut e, t0, new_flow(1000, 1, 1));
    feed(&mut e, t0, msg(1001, Body::Alive));
    assert!(matches!(e.poll_event(), Some(Event::Apply { .. })));
    let _ = flat(&mut e, t0);
    // The forgery: accepted as a gap (as conntrackd would).
    feed(&mut e, t0, msg(1002 + (1 << 30), Body::Alive));
    assert_eq!(e.last_seq_in(), Some(1002 + (1 << 30)));
    let _ = flat(&mut e, t0);
    // The genuine peer goes on: one message per alive interval, all stale.
    let mut seq = 1002;
    let mut t = t0 + Duration::from_millis(10);
    for k in 0..OUT_OF_SYNC_INTERVALS {
        feed(&mut e, t, new_flow(seq, 2, k));
        assert!(e.poll_event().is_none(), "stale at {k}");
        assert_eq!(e.stats().out_of_sync_resyncs, 0);
        assert_eq!(e.out_of_sync(t), k > 0, "at {k}");
        seq += 1;
        t += alive;
    }
    assert_eq!(e.stats().before, u64::from(OUT_OF_SYNC_INTERVALS));
    // The next one, OUT_OF_SYNC_INTERVALS intervals after the first stale
    // one: recovery.
    feed(&mut e, t, new_flow(seq, 3, 7));
    assert_eq!(e.stats().out_of_sync_resyncs, 1);
    assert_eq!(e.last_seq_in(), Some(seq));
    assert!(!e.out_of_sync(t));
    assert_eq!(e.poll_event(), Some(Event::OutOfSync));
    assert!(matches!(e.poll_event(), Some(Event::Apply { state, .. }) if state.key == key(3)));
    let out = bodies(&flat(&mut e, t));
    assert!(out.contains(&Body::Resync), "{out:?}");
    // In sync again.
    feed(&mut e, t, new_flow(seq + 1, 4, 1));
    assert!(matches!(e.poll_event(), Some(Event::Apply { state, .. }) if state.key == key(4)));
    assert_eq!(e.last_seq_in(), Some(seq + 1));
    seq += 2;

    // A second forgery right away cannot make the engine recover (and ask
    // the peer for its table) sooner than OUT_OF_SYNC_INTERVALS later: the
    // streak starts again.
    t += Duration::from_millis(1);
    feed(&mut e, t, msg(seq + (1 << 30), Body::Alive));
    let first_stale = t + Duration::from_millis(1);
    let mut t2 = first_stale;
    let step = alive / 4;
    while t2 < first_stale + alive * OUT_OF_SYNC_INTERVALS {
        feed(&mut e, t2, msg(seq, Body::Alive));
        assert_eq!(e.stats().out_of_sync_resyncs, 1);
        seq += 1;
        t2 += step;
    }
    feed(&mut e, t2, msg(seq, Body::Alive));
    assert_eq!(e.stats().out_of_sync_resyncs, 2);
    assert_eq!(e.last_seq_in(), Some(seq));
}

/// Stale messages alone (old duplicates mixed with accepted ones) never
/// trigger the recovery: an accepted message ends the streak.
#[test]
fn stale_duplicates_among_fresh_messages_are_not_out_of_sync() {
    let t0 = Instant::now();
    let alive = EngineConfig::default().alive_interval;
    let mut e = eng(1, t0);
    let mut t = t0;
    for k in 0..20u32 {
        feed(&mut e, t, msg(1000 + k, Body::Alive));
        feed(&mut e, t + alive / 2, msg(1000, Body::Alive));
        t += alive;
    }
    assert_eq!(e.stats().before, 20);
    assert_eq!(e.stats().out_of_sync_resyncs, 0);
    assert_eq!(e.last_seq_in(), Some(1019));
}

/// Issue 16, item 2: a replayed HELLO datagram of the running incarnation
/// (its sequence number not after the last accepted one) that arrives while
/// that incarnation is evidently alive is dropped as stale: it no longer
/// re-bases and re-applies a flow the peer has since destroyed.
#[test]
fn replayed_hello_while_the_peer_is_alive_does_not_resurrect_a_flow() {
    let t0 = Instant::now();
    let alive = EngineConfig::default().alive_interval;
    let mut e = eng(1, t0);
    let mut hello_new = new_flow(1000, 1, 1);
    hello_new.hello = true;
    feed(&mut e, t0, hello_new.clone());
    feed(&mut e, t0, msg(1001, Body::Alive));
    let mut t = t0;
    let mut seq = 1002;
    for _ in 0..5 {
        t += alive;
        feed(&mut e, t, msg(seq, Body::Alive));
        seq += 1;
    }
    feed(
        &mut e,
        t,
        msg(
            seq,
            Body::Flow {
                kind: FlowKind::Destroy,
                state: st(1, 1),
            },
        ),
    );
    while e.poll_event().is_some() {}
    let restarts = e.stats().peer_restarts;
    // The replay, while the peer keeps talking.
    feed(&mut e, t + alive / 2, hello_new);
    assert!(e.poll_event().is_none(), "a replayed HELLO applied a flow");
    assert_eq!(e.stats().peer_restarts, restarts);
    assert_eq!(e.last_seq_in(), Some(seq));
    feed(&mut e, t + alive / 2, msg(seq + 1, Body::Alive));
    assert_eq!(e.last_seq_in(), Some(seq + 1));
}

/// A genuine restart at a lower sequence number right after the old
/// incarnation was heard (the case the replay rule holds back) is taken
/// once the old incarnation has been silent for an alive interval.
#[test]
fn quick_restart_at_a_lower_seq_is_taken_after_an_alive_interval() {
    let t0 = Instant::now();
    let alive = EngineConfig::default().alive_interval;
    let mut e = eng(1, t0);
    feed(&mut e, t0, msg(5000, Body::Alive));
    let mut t = t0 + alive / 10;
    let mut seq = 1000;
    let mut k = 0;
    while e.stats().peer_restarts == 0 {
        let mut h = new_flow(seq, 9, k);
        h.hello = true;
        feed(&mut e, t, h);
        seq += 1;
        k += 1;
        t += alive / 2;
        assert!(k < 10, "the restart was never taken");
    }
    let taken_at = t - alive / 2;
    assert!(taken_at >= t0 + alive && taken_at < t0 + alive * 2);
    assert_eq!(e.last_seq_in(), Some(seq - 1));
    assert!(std::iter::from_fn(|| e.poll_event()).any(|ev| ev == Event::PeerRestarted));
}

/// Runs A and B against each other on a virtual clock for `ms`
/// milliseconds in 5 ms steps; `drop_a` decides whether A's n-th datagram
/// (0-based) is lost. Returns the RESYNC requests B saw.
fn run_pair(
    a: &mut Engine<TestCodec>,
    b: &mut Engine<TestCodec>,
    t0: Instant,
    ms: u64,
    drop_a: impl Fn(usize) -> bool,
) -> usize {
    let (mut buf, mut sent_a, mut resyncs) = (Vec::new(), 0usize, 0usize);
    for step in 0..=ms / 5 {
        let now = t0 + Duration::from_millis(step * 5);
        for e in [&mut *a, &mut *b] {
            if e.poll_timeout().is_some_and(|t| t <= now) {
                e.handle_timeout(now);
            }
        }
        while a.poll_transmit(now, &mut buf) {
            if !drop_a(sent_a) {
                b.handle_datagram(now, &buf);
            }
            sent_a += 1;
        }
        while b.poll_transmit(now, &mut buf) {
            a.handle_datagram(now, &buf);
        }
        while let Some(ev) = b.poll_event() {
            resyncs += usize::from(ev == Event::ResyncRequested);
        }
        while a.poll_event().is_some() {}
    }
    resyncs
}

#[test]
fn one_resync_per_start() {
    // A starts and asks B for its table (startup resync): B gets one
    // RESYNC, not a second one when A's handshake completes.
    let t0 = Instant::now();
    let mut b = eng(5000, t0);
    let mut a = eng(100, t0);
    a.request_resync(t0);
    assert_eq!(run_pair(&mut a, &mut b, t0, 5000, |_| false), 1);
    assert_eq!(a.hello_state(), HelloState::Done);
    assert_eq!(b.hello_state(), HelloState::Done);
}

#[test]
fn a_lost_startup_resync_is_sent_again_after_the_handshake() {
    // A's first datagram (RESYNC|HELLO) is lost: the peer never tracked
    // that number, so only the recheck after the handshake recovers it.
    let t0 = Instant::now();
    let mut b = eng(5000, t0);
    let mut a = eng(100, t0);
    a.request_resync(t0);
    assert_eq!(run_pair(&mut a, &mut b, t0, 5000, |n| n == 0), 1);
    assert_eq!(a.stats().resend_queue_depth, 0, "everything acknowledged");
}
