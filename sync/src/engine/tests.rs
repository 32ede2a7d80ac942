//! Unit tests of the engine, case by case (ftfw-wire.md 7.2-7.5).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ftfw_dataplane::flow::{proto, FlowKey, FlowState, TcpState, Tuple};
use proptest::prelude::*;

use super::*;

#[path = "../../tests/sim/codec.rs"]
mod test_codec;
use test_codec::{flow, TestCodec};

fn cfg(initial_seq: u32) -> EngineConfig {
    EngineConfig {
        initial_seq,
        ..EngineConfig::default()
    }
}

fn eng(initial_seq: u32, t0: Instant) -> Engine<TestCodec> {
    Engine::new(cfg(initial_seq), TestCodec, t0)
}

fn key(i: u32) -> FlowKey {
    let [_, a, b, c] = i.to_be_bytes();
    FlowKey {
        orig: Tuple::new(
            IpAddr::V4(Ipv4Addr::new(10, a, b, c)),
            IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)),
            proto::TCP,
            40000,
            80,
        ),
        zone: 0,
    }
}

fn st(i: u32, mark: u32) -> FlowState {
    flow(key(i), TcpState::Established, 0xe, 300, mark)
}

fn msg(seq: u32, body: Body) -> Msg {
    Msg {
        seq,
        hello: false,
        hello_back: false,
        body,
    }
}

fn dgram(msgs: &[Msg]) -> Vec<u8> {
    let mut c = TestCodec;
    let mut out = Vec::new();
    for m in msgs {
        c.encode(m, &mut out).unwrap();
    }
    out
}

fn decode(bytes: &[u8]) -> Vec<Msg> {
    let mut v = Vec::new();
    TestCodec.decode(bytes, &mut |r| v.push(r.unwrap()));
    v
}

/// Every datagram the engine wants to send now.
fn drain(e: &mut Engine<TestCodec>, now: Instant) -> Vec<Vec<Msg>> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    while e.poll_transmit(now, &mut buf) {
        out.push(decode(&buf));
    }
    out
}

fn flat(e: &mut Engine<TestCodec>, now: Instant) -> Vec<Msg> {
    drain(e, now).into_iter().flatten().collect()
}

fn feed(e: &mut Engine<TestCodec>, now: Instant, m: Msg) {
    e.handle_datagram(now, &dgram(&[m]));
}

fn bodies(ms: &[Msg]) -> Vec<Body> {
    ms.iter().map(|m| m.body.clone()).collect()
}

#[test]
fn unset_accepts_anything_then_in_sync() {
    let t0 = Instant::now();
    let mut e = eng(1, t0);
    assert_eq!(e.last_seq_in(), None);
    feed(&mut e, t0, msg(0xdead_beef, Body::Alive));
    assert_eq!(e.last_seq_in(), Some(0xdead_beef));
    feed(&mut e, t0, msg(0xdead_bef0, Body::Alive));
    assert_eq!(e.last_seq_in(), Some(0xdead_bef0));
    assert!(flat(&mut e, t0).is_empty());
    assert_eq!(e.stats().lost, 0);
}

#[test]
fn live_example_gap_nacks_at_once_then_acks_later() {
    let t0 = Instant::now();
    let mut e = eng(1, t0);
    for s in 1000..=1006 {
        feed(&mut e, t0, msg(s, Body::Alive));
    }
    // The alive timer acknowledges the open window, closing it.
    let t1 = t0 + Duration::from_secs(1);
    e.handle_timeout(t1);
    assert_eq!(
        bodies(&flat(&mut e, t1)),
        vec![Body::Ack {
            from: 1000,
            to: 1006
        }]
    );
    // Expecting 1007, receiving 1010: NACK 1007..1009 at once.
    feed(&mut e, t1, msg(1010, Body::Alive));
    assert_eq!(e.poll_timeout(), Some(t1), "control is due at once");
    assert_eq!(
        bodies(&flat(&mut e, t1)),
        vec![Body::Nack {
            from: 1007,
            to: 1009
        }]
    );
    assert_eq!(e.stats().lost, 3);
    assert_eq!(e.last_seq_in(), Some(1010));
    // A second later: ACK 1010..1010.
    let t2 = t1 + Duration::from_secs(1);
    assert_eq!(e.poll_timeout(), Some(t2));
    e.handle_timeout(t2);
    assert_eq!(
        bodies(&flat(&mut e, t2)),
        vec![Body::Ack {
            from: 1010,
            to: 1010
        }]
    );
}

#[test]
fn gap_with_open_window_acks_first_then_nacks() {
    let t0 = Instant::now();
    let mut e = eng(1, t0);
    for s in [1000, 1001, 1002, 1005] {
        feed(&mut e, t0, msg(s, Body::Alive));
    }
    assert_eq!(
        bodies(&flat(&mut e, t0)),
        vec![
            Body::Ack {
                from: 1000,
                to: 1002
            },
            Body::Nack {
                from: 1003,
                to: 1004
            }
        ]
    );
    // The new window starts at 1005.
    feed(&mut e, t0, msg(1006, Body::Alive));
    let t1 = t0 + Duration::from_secs(1);
    e.handle_timeout(t1);
    assert_eq!(
        bodies(&flat(&mut e, t1)),
        vec![Body::Ack {
            from: 1005,
            to: 1006
        }]
    );
}

#[test]
fn before_is_dropped_silently_and_counted() {
    let t0 = Instant::now();
    let mut e = eng(1, t0);
    feed(&mut e, t0, msg(1005, Body::Alive));
    feed(&mut e, t0, msg(1003, Body::Alive));
    feed(&mut e, t0, msg(1005, Body::Alive));
    let ev = st(1, 1);
    feed(
        &mut e,
        t0,
        msg(
            1000,
            Body::Flow {
                kind: FlowKind::New,
                state: ev,
            },
        ),
    );
    assert_eq!(e.stats().before, 3);
    assert_eq!(e.last_seq_in(), Some(1005));
    assert!(e.poll_event().is_none());
    assert!(flat(&mut e, t0).is_empty());
}

#[test]
fn wraparound_in_sync_and_gap() {
    let t0 = Instant::now();
    let mut e = eng(1, t0);
    feed(&mut e, t0, msg(0xffff_fffe, Body::Alive));
    feed(&mut e, t0, msg(0xffff_ffff, Body::Alive));
    feed(&mut e, t0, msg(0, Body::Alive));
    assert_eq!(e.stats().lost, 0);
    feed(&mut e, t0, msg(3, Body::Alive));
    assert_eq!(
        bodies(&flat(&mut e, t0)),
        vec![
            Body::Ack {
                from: 0xffff_fffe,
                to: 0
            },
            Body::Nack { from: 1, to: 2 }
        ]
    );
    feed(&mut e, t0, msg(0xffff_ffff, Body::Alive));
    assert_eq!(e.stats().before, 1);
}

#[test]
fn ack_window_emits_ack() {
    let t0 = Instant::now();
    let mut e = Engine::new(
        EngineConfig {
            ack_window: 5,
            ..cfg(1)
        },
        TestCodec,
        t0,
    );
    for s in 10..15 {
        feed(&mut e, t0, msg(s, Body::Alive));
    }
    assert_eq!(
        bodies(&flat(&mut e, t0)),
        vec![Body::Ack { from: 10, to: 14 }]
    );
    for s in 15..19 {
        feed(&mut e, t0, msg(s, Body::Alive));
    }
    assert!(flat(&mut e, t0).is_empty());
}

fn prompt(t0: Instant) -> Engine<TestCodec> {
    Engine::new(
        EngineConfig {
            ack_delay: Some(Duration::from_micros(100)),
            ..cfg(1)
        },
        TestCodec,
        t0,
    )
}

fn new_flow(s: u32) -> Body {
    Body::Flow {
        kind: FlowKind::New,
        state: st(s, 0),
    }
}

#[test]
fn prompt_ack_at_once_when_quiet_else_at_the_deadline_not_before() {
    let t0 = Instant::now();
    let mut e = prompt(t0);
    let d = Duration::from_micros(100);
    // No ACK went out lately: the first change is acknowledged at once.
    feed(&mut e, t0, msg(10, new_flow(1)));
    assert_eq!(e.poll_timeout(), Some(t0));
    e.handle_timeout(t0);
    assert_eq!(
        bodies(&flat(&mut e, t0)),
        vec![Body::Ack { from: 10, to: 10 }]
    );
    // The next one, within the delay of that ACK, waits for the deadline
    // (others may follow to share its ACK), and not longer.
    let t1 = t0 + Duration::from_micros(30);
    feed(&mut e, t1, msg(11, new_flow(2)));
    assert_eq!(e.poll_timeout(), Some(t1 + d));
    let early = t1 + Duration::from_micros(99);
    e.handle_timeout(early);
    assert!(flat(&mut e, early).is_empty(), "no ACK before the deadline");
    e.handle_timeout(t1 + d);
    assert_eq!(
        bodies(&flat(&mut e, t1 + d)),
        vec![Body::Ack { from: 11, to: 11 }]
    );
    // Disarmed: the next deadline is the alive timer again.
    assert_eq!(e.poll_timeout(), Some(t1 + d + Duration::from_secs(1)));
    // Quiet again for longer than the delay: at once again.
    let t2 = t1 + d + Duration::from_millis(5);
    feed(&mut e, t2, msg(12, new_flow(3)));
    assert_eq!(e.poll_timeout(), Some(t2));
}

#[test]
fn prompt_ack_coalesces_a_burst() {
    let t0 = Instant::now();
    let mut e = prompt(t0);
    // The burst's first message is acknowledged at once (nothing went
    // out lately); the rest share one ACK at the deadline that counts
    // from the first of them.
    feed(&mut e, t0, msg(20, new_flow(20)));
    e.handle_timeout(t0);
    assert_eq!(
        bodies(&flat(&mut e, t0)),
        vec![Body::Ack { from: 20, to: 20 }]
    );
    for (i, s) in (21..30).enumerate() {
        let at = t0 + Duration::from_micros(5 + i as u64 * 5);
        feed(&mut e, at, msg(s, new_flow(s)));
    }
    let due = t0 + Duration::from_micros(105);
    assert_eq!(e.poll_timeout(), Some(due));
    e.handle_timeout(due);
    assert_eq!(
        bodies(&flat(&mut e, due)),
        vec![Body::Ack { from: 21, to: 29 }]
    );
}

#[test]
fn prompt_ack_is_not_started_by_control_messages() {
    let t0 = Instant::now();
    let mut e = prompt(t0);
    feed(&mut e, t0, msg(5, Body::Alive));
    feed(&mut e, t0, msg(6, Body::Ack { from: 0, to: 0 }));
    assert_eq!(e.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    // Without ack_delay nothing changes either.
    let mut plain = eng(1, t0);
    let body = Body::Flow {
        kind: FlowKind::New,
        state: st(1, 0),
    };
    feed(&mut plain, t0, msg(5, body));
    assert_eq!(plain.poll_timeout(), Some(t0 + Duration::from_secs(1)));
}

#[test]
fn idle_alive_timer_sends_alive() {
    let t0 = Instant::now();
    let mut e = eng(7, t0);
    assert_eq!(e.poll_timeout(), Some(t0 + Duration::from_secs(1)));
    e.handle_timeout(t0 + Duration::from_millis(999));
    assert!(flat(&mut e, t0).is_empty());
    let t1 = t0 + Duration::from_secs(1);
    e.handle_timeout(t1);
    let m = flat(&mut e, t1);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].body, Body::Alive);
    assert_eq!(m[0].seq, 7);
    assert!(m[0].hello, "first message says HELLO");
    assert_eq!(e.hello_state(), HelloState::Say);
    assert_eq!(e.stats().resend_queue_depth, 0, "ALIVE is never stored");
}

#[test]
fn hello_startup_exchange_matches_the_wire() {
    // 7.5: B->A ALIVE|HELLO, A->B ACK|HELLO|HELLO_BACK, B->A ACK|HELLO_BACK,
    // A->B ACK.
    let s = 0x6b02_60e2;
    let t0 = Instant::now();
    let mut a = eng(s, t0);
    let mut b = eng(s, t0);
    let t1 = t0 + Duration::from_secs(1);
    let mut buf = Vec::new();

    b.handle_timeout(t1);
    assert!(b.poll_transmit(t1, &mut buf));
    let m = decode(&buf);
    assert_eq!((m[0].seq, m[0].hello, m[0].hello_back), (s, true, false));
    assert_eq!(m[0].body, Body::Alive);
    a.handle_datagram(t1, &buf);
    assert_eq!(a.poll_event(), Some(Event::PeerRestarted));

    let t2 = t1 + Duration::from_millis(1);
    a.handle_timeout(t2);
    assert!(a.poll_transmit(t2, &mut buf));
    let m = decode(&buf);
    assert_eq!((m[0].seq, m[0].hello, m[0].hello_back), (s, true, true));
    assert_eq!(m[0].body, Body::Ack { from: s, to: s });
    b.handle_datagram(t2, &buf);
    assert_eq!(b.hello_state(), HelloState::Done);

    let t3 = t2 + Duration::from_secs(1);
    b.handle_timeout(t3);
    assert!(b.poll_transmit(t3, &mut buf));
    let m = decode(&buf);
    assert_eq!(
        (m[0].seq, m[0].hello, m[0].hello_back),
        (s + 1, false, true)
    );
    assert_eq!(m[0].body, Body::Ack { from: s, to: s });
    a.handle_datagram(t3, &buf);
    assert_eq!(a.hello_state(), HelloState::Done);

    let t4 = t2 + Duration::from_secs(1);
    a.handle_timeout(t4);
    assert!(a.poll_transmit(t4, &mut buf));
    let m = decode(&buf);
    assert_eq!(
        (m[0].seq, m[0].hello, m[0].hello_back),
        (s + 1, false, false)
    );
    assert_eq!(
        m[0].body,
        Body::Ack {
            from: s + 1,
            to: s + 1
        }
    );
    assert_eq!(m.len(), 1);
}

/// An engine whose handshake is DONE, with `n` flows sent and unacknowledged.
fn done_with_flows(n: u32, t0: Instant) -> Engine<TestCodec> {
    let mut e = eng(100, t0);
    e.handle_timeout(t0 + Duration::from_secs(1));
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(flat(&mut e, t1).len(), 1); // ALIVE|HELLO, seq 100
    let mut back = msg(5000, Body::Alive);
    back.hello_back = true;
    feed(&mut e, t1, back);
    assert_eq!(e.hello_state(), HelloState::Done);
    for i in 0..n {
        e.push_delta(t1, FlowKind::New, st(i, 0));
    }
    let sent = flat(&mut e, t1 + Duration::from_millis(1));
    assert_eq!(sent.len(), n as usize);
    assert_eq!(e.stats().resend_queue_depth, n as usize);
    e
}

#[test]
fn hello_rebases_marks_hello_back_and_empties_resend_queue() {
    let t0 = Instant::now();
    let mut e = done_with_flows(3, t0);
    // The old incarnation was last heard at t0 + 1 s: a HELLO below its
    // numbers is a restart once it has been silent for an alive interval.
    let t = t0 + Duration::from_secs(2);
    let mut h = msg(5, Body::Alive);
    h.hello = true;
    feed(&mut e, t, h);
    assert_eq!(e.last_seq_in(), Some(5));
    assert_eq!(e.stats().resend_queue_depth, 0);
    assert_eq!(e.poll_event(), Some(Event::PeerRestarted));
    assert_eq!(e.hello_state(), HelloState::Say, "we say HELLO again");
    // A duplicate of that HELLO shortly after is old, not a new restart.
    let mut h = msg(5, Body::Alive);
    h.hello = true;
    feed(&mut e, t + Duration::from_millis(3), h.clone());
    assert_eq!(e.stats().peer_restarts, 1);
    assert_eq!(e.stats().before, 1);
    assert!(e.poll_event().is_none());
    let t2 = t + Duration::from_secs(2);
    e.handle_timeout(t2);
    let m = flat(&mut e, t2);
    assert_eq!(m.len(), 1);
    assert!(m[0].hello_back);
    assert_eq!(m[0].body, Body::Ack { from: 5, to: 5 });
}

#[test]
fn hello_after_grace_or_after_run_is_a_new_incarnation() {
    let t0 = Instant::now();
    let mut e = eng(1, t0);
    let mut h = msg(1000, Body::Alive);
    h.hello = true;
    feed(&mut e, t0, h.clone());
    // The run continues: HELLO after last is tracked normally.
    h.seq = 1001;
    feed(&mut e, t0, h.clone());
    assert_eq!(e.stats().peer_restarts, 1);
    // The run ends with a message without HELLO.
    feed(&mut e, t0, msg(1002, Body::Alive));
    // A HELLO after last now is a new incarnation...
    h.seq = 2000;
    feed(&mut e, t0, h.clone());
    assert_eq!(e.stats().peer_restarts, 2);
    assert_eq!(e.stats().lost, 0, "a restart is no gap");
    // ...and one before last, once the grace period is over, too.
    h.seq = 7;
    feed(&mut e, t0 + Duration::from_secs(2), h);
    assert_eq!(e.stats().peer_restarts, 3);
    assert_eq!(e.last_seq_in(), Some(7));
}

/// The HELLO sender state machine, transition by transition (7.5 plus our
/// go-back-to-SAY on a peer restart).
#[test]
fn hello_state_table() {
    let t0 = Instant::now();
    let t1 = t0 + Duration::from_millis(1);
    let hello = |seq| Msg {
        hello: true,
        ..msg(seq, Body::Alive)
    };
    let back = |seq| Msg {
        hello_back: true,
        ..msg(seq, Body::Alive)
    };
    let mut rows = Vec::new();
    // Init + HELLO_BACK (never asked for) -> Init; Init + transmit -> Say.
    let mut e = eng(1, t0);
    feed(&mut e, t0, back(10));
    rows.push(("init", "hello_back", e.hello_state()));
    e.request_resync(t0);
    flat(&mut e, t0);
    rows.push(("init", "transmit", e.hello_state()));
    // Say + HELLO (first contact) -> Say; Say + HELLO_BACK -> Done.
    feed(&mut e, t1, hello(11));
    rows.push(("say", "hello", e.hello_state()));
    let mut both = hello(12);
    both.hello_back = true;
    feed(&mut e, t1, both);
    rows.push(("say", "hello_back", e.hello_state()));
    // Done + HELLO continuing the run -> Done; Done + new incarnation -> Say.
    feed(&mut e, t1, hello(13));
    rows.push(("done", "hello_same_run", e.hello_state()));
    feed(&mut e, t1, msg(14, Body::Alive));
    feed(&mut e, t1, hello(900));
    rows.push(("done", "hello_new_peer", e.hello_state()));
    use HelloState::*;
    assert_eq!(
        rows,
        vec![
            ("init", "hello_back", Init),
            ("init", "transmit", Say),
            ("say", "hello", Say),
            ("say", "hello_back", Done),
            ("done", "hello_same_run", Done),
            ("done", "hello_new_peer", Say),
        ]
    );
}

#[test]
fn coalescing_keeps_one_message_with_the_newest_state() {
    let t0 = Instant::now();
    let mut e = eng(1, t0);
    for m in 0..100 {
        e.push_delta(t0, FlowKind::Update, st(1, m));
    }
    e.push_delta(t0, FlowKind::Update, st(2, 0));
    let t1 = t0 + Duration::from_millis(1);
    let m = flat(&mut e, t1);
    assert_eq!(m.len(), 2);
    assert_eq!(
        m[0].body,
        Body::Flow {
            kind: FlowKind::Update,
            state: st(1, 99)
        }
    );
}

#[test]
fn coalesced_kinds() {
    let t0 = Instant::now();
    let mut e = eng(1, t0);
    e.push_delta(t0, FlowKind::New, st(1, 0));
    e.push_delta(t0, FlowKind::Update, st(1, 1));
    e.push_delta(t0, FlowKind::New, st(2, 0));
    e.push_delta(t0, FlowKind::Destroy, st(2, 1));
    let m = flat(&mut e, t0 + Duration::from_millis(1));
    let kinds: Vec<_> = m
        .iter()
        .map(|m| match &m.body {
            Body::Flow { kind, .. } => *kind,
            _ => panic!(),
        })
        .collect();
    assert_eq!(kinds, vec![FlowKind::New, FlowKind::Destroy]);
    // After the NEW went out, an update is an UPDATE.
    e.push_delta(t0, FlowKind::Update, st(1, 2));
    let m = flat(&mut e, t0 + Duration::from_millis(2));
    assert!(matches!(
        m[0].body,
        Body::Flow {
            kind: FlowKind::Update,
            ..
        }
    ));
}

#[test]
fn batching_fills_datagrams_below_mtu_minus_28() {
    let t0 = Instant::now();
    let mut e = eng(1, t0);
    for i in 0..100 {
        e.push_delta(t0, FlowKind::New, st(i, 0));
    }
    let mut buf = Vec::new();
    let mut sizes = Vec::new();
    // Full datagrams go out at once, without waiting for the flush delay.
    while e.poll_transmit(t0, &mut buf) {
        sizes.push(buf.len());
    }
    // 61-byte messages: 24 fit (1464 < 1472), 25 would not (1525).
    assert_eq!(sizes, vec![1464, 1464, 1464, 1464]);
    assert_eq!(e.stats().tx_queue_depth, 4);
    let t1 = t0 + Duration::from_micros(200);
    assert!(e.poll_transmit(t1, &mut buf));
    assert_eq!(buf.len(), 4 * 61);
    assert!(!e.poll_transmit(t1, &mut buf));
    // Strictly less than: a message that would make it exactly mtu-28 waits.
    let mut e = Engine::new(
        EngineConfig {
            mtu: 28 + 61 * 2,
            ..cfg(1)
        },
        TestCodec,
        t0,
    );
    e.push_delta(t0, FlowKind::New, st(1, 0));
    e.push_delta(t0, FlowKind::New, st(2, 0));
    assert_eq!(drain(&mut e, t0).len(), 1);
    assert_eq!(drain(&mut e, t1).len(), 1);
}

#[test]
fn flush_delay_is_honoured() {
    let t0 = Instant::now();
    let mut e = eng(1, t0);
    e.push_delta(t0, FlowKind::New, st(1, 0));
    let mut buf = Vec::new();
    assert!(!e.poll_transmit(t0, &mut buf));
    assert_eq!(e.poll_timeout(), Some(t0 + Duration::from_micros(200)));
    e.push_delta(t0 + Duration::from_micros(150), FlowKind::New, st(2, 0));
    assert!(!e.poll_transmit(t0 + Duration::from_micros(199), &mut buf));
    assert_eq!(e.seq_out(), 1, "no sequence number used while waiting");
    assert!(e.poll_transmit(t0 + Duration::from_micros(200), &mut buf));
    assert_eq!(decode(&buf).len(), 2);
    assert_eq!(e.seq_out(), 3);
    // A pending control message takes the data with it at once.
    e.push_delta(t0, FlowKind::New, st(3, 0));
    e.request_resync(t0);
    let t = t0 + Duration::from_micros(201);
    let m = flat(&mut e, t);
    assert_eq!(m[0].body, Body::Resync);
    assert!(matches!(m[1].body, Body::Flow { .. }));
}

#[test]
fn nack_resends_current_state_with_new_seq() {
    let t0 = Instant::now();
    let mut e = done_with_flows(3, t0);
    let t = t0 + Duration::from_secs(1) + Duration::from_millis(2);
    // Flows went out as 101, 102, 103. Flow 1 changes while in flight.
    e.push_delta(t, FlowKind::Update, st(1, 42));
    let m = flat(&mut e, t + Duration::from_millis(1));
    assert_eq!(m[0].seq, 104);
    // NACK of 101..103: flow 1's old message is gone (superseded), flows 0
    // and 2 are resent with new numbers.
    feed(&mut e, t, msg(5001, Body::Nack { from: 101, to: 103 }));
    let m = flat(&mut e, t + Duration::from_millis(2));
    let got: Vec<_> = m
        .iter()
        .map(|m| match &m.body {
            Body::Flow { state, .. } => (m.seq, state.key),
            _ => panic!("{m:?}"),
        })
        .collect();
    assert_eq!(got, vec![(105, key(0)), (106, key(2))]);
    assert_eq!(e.stats().retransmitted, 2);
    // NACK of 104: the current state (mark 42) again, new seq.
    feed(&mut e, t, msg(5002, Body::Nack { from: 104, to: 104 }));
    let m = flat(&mut e, t + Duration::from_millis(3));
    assert_eq!(m[0].seq, 107);
    assert_eq!(
        m[0].body,
        Body::Flow {
            kind: FlowKind::Update,
            state: st(1, 42)
        }
    );
}

#[test]
fn nack_resends_stored_control_messages() {
    let t0 = Instant::now();
    let mut e = done_with_flows(0, t0);
    let t = t0 + Duration::from_secs(1);
    e.request_resync(t);
    let m = flat(&mut e, t);
    assert_eq!((m[0].seq, &m[0].body), (101, &Body::Resync));
    feed(&mut e, t, msg(5001, Body::Nack { from: 101, to: 101 }));
    let m = flat(&mut e, t);
    // The ACK window of the peer is not full; the resent RESYNC goes alone.
    assert_eq!((m[0].seq, &m[0].body), (102, &Body::Resync));
}

#[test]
fn ack_frees_its_range_and_resends_what_the_peer_skipped() {
    let t0 = Instant::now();
    let mut e = done_with_flows(10, t0);
    let t = t0 + Duration::from_secs(2);
    // Flows are 101..=110. ACK 103..106 frees four; the peer skipped 101
    // and 102 (lost, and no NACK came): they go out again with new
    // sequence numbers, 107..110 stay stored.
    feed(&mut e, t, msg(5001, Body::Ack { from: 103, to: 106 }));
    assert_eq!(e.stats().acked, 4);
    assert_eq!(e.stats().skipped_requeued, 2);
    assert_eq!(e.stats().resend_queue_depth, 4);
    let again = flat(&mut e, t + Duration::from_millis(1));
    let seqs: Vec<u32> = again.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [111, 112]);
    assert!(again.iter().all(|m| matches!(m.body, Body::Flow { .. })));
    assert_eq!(e.stats().resend_queue_depth, 6);
    // An ACK of everything from the start requeues nothing.
    feed(&mut e, t, msg(5002, Body::Ack { from: 107, to: 108 }));
    assert_eq!(e.stats().skipped_requeued, 2);
    assert_eq!(e.stats().resend_queue_depth, 4);
    // Ranges reaching beyond what was sent are clamped.
    feed(
        &mut e,
        t,
        msg(
            5003,
            Body::Ack {
                from: 50,
                to: 0x7000_0000,
            },
        ),
    );
    assert_eq!(e.stats().resend_queue_depth, 0);
    // to before from is malformed and does not touch tracking.
    feed(&mut e, t, msg(5004, Body::Ack { from: 10, to: 5 }));
    assert_eq!(e.stats().malformed, 1);
    assert_eq!(e.last_seq_in(), Some(5003));
}

#[test]
fn ack_across_wraparound() {
    let t0 = Instant::now();
    let mut e = eng(0xffff_fffd, t0);
    for i in 0..6 {
        e.push_delta(t0, FlowKind::New, st(i, 0));
    }
    let m = flat(&mut e, t0 + Duration::from_millis(1));
    assert_eq!(m.first().map(|m| m.seq), Some(0xffff_fffd));
    assert_eq!(m.last().map(|m| m.seq), Some(2));
    feed(
        &mut e,
        t0,
        msg(
            9,
            Body::Ack {
                from: 0xffff_fffe,
                to: 1,
            },
        ),
    );
    // 0xffff_fffe..=1 freed; 0xffff_fffd, skipped, goes out again; 2 stays.
    assert_eq!(e.stats().skipped_requeued, 1);
    assert_eq!(e.stats().resend_queue_depth, 1);
}

#[path = "tests_more.rs"]
mod more;

#[path = "reply_tests.rs"]
mod reply;
