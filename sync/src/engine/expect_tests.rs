//! Expectation messages through two engines and the conntrackd wire codec.

use std::time::{Duration, Instant};

use ftfw_dataplane::flow::{proto, FlowKey, Tuple};
use ftfw_dataplane::helper::{Expectation, Helper};

use super::*;
use crate::codec::WireCodec;
use crate::wire::{decode_datagram, Body as WireBody, MsgType};

fn ftp(i: u16, left: u32) -> Expectation {
    let c = "192.0.2.10".parse().unwrap();
    let s = "198.51.100.20".parse().unwrap();
    Expectation {
        master: FlowKey {
            orig: Tuple::new(c, s, proto::TCP, 40000 + i, 21),
            zone: 0,
        },
        tuple: Tuple::new(c, s, proto::TCP, 0, 50000 + i),
        helper: Helper::Ftp,
        expires: left,
        nat: None,
    }
}

fn pair(t0: Instant) -> (Engine<WireCodec>, Engine<WireCodec>) {
    let a = Engine::new(
        EngineConfig {
            initial_seq: 100,
            ..EngineConfig::default()
        },
        WireCodec::default(),
        t0,
    );
    let b = Engine::new(
        EngineConfig {
            initial_seq: 9000,
            ..EngineConfig::default()
        },
        WireCodec::default(),
        t0,
    );
    (a, b)
}

/// Datagrams `e` sends now.
fn out(e: &mut Engine<WireCodec>, now: Instant) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    let mut buf = Vec::new();
    while e.poll_transmit(now, &mut buf) {
        v.push(buf.clone());
    }
    v
}

fn expects(e: &mut Engine<WireCodec>) -> Vec<(FlowKind, Expectation)> {
    let mut v = Vec::new();
    while let Some(ev) = e.poll_event() {
        if let Event::Expect { kind, exp } = ev {
            v.push((kind, exp));
        }
    }
    v
}

/// Both engines exchange datagrams and run their timers for `secs`
/// seconds from `t` (handshake done, everything acknowledged).
fn settle(a: &mut Engine<WireCodec>, b: &mut Engine<WireCodec>, t: Instant, secs: u64) -> Instant {
    let mut now = t;
    for _ in 0..secs {
        now += Duration::from_secs(1);
        a.handle_timeout(now);
        b.handle_timeout(now);
        for _ in 0..4 {
            for d in out(a, now) {
                b.handle_datagram(now, &d);
            }
            for d in out(b, now) {
                a.handle_datagram(now, &d);
            }
        }
    }
    now
}

#[test]
fn an_expectation_travels_as_exp_new_and_its_end_as_exp_del() {
    let t = Instant::now();
    let (mut a, mut b) = pair(t);
    let t0 = settle(&mut a, &mut b, t, 3);
    assert_eq!(a.hello_state(), HelloState::Done);
    a.push_expect(t0, FlowKind::New, ftp(1, 280));
    let d = out(&mut a, t0);
    assert_eq!(d.len(), 1, "an expectation message flushes at once");
    let msgs = decode_datagram(&d[0], &mut Default::default());
    let first = msgs.first().and_then(|m| m.as_ref().ok()).unwrap();
    assert_eq!(first.header.msg_type(), Some(MsgType::ExpNew));
    assert!(matches!(first.body, WireBody::Exp(_)));
    b.handle_datagram(t0, &d[0]);
    assert_eq!(expects(&mut b), [(FlowKind::New, ftp(1, 280))]);
    // B acknowledges; A then holds nothing for it.
    let t1 = settle(&mut a, &mut b, t0, 2);
    assert!(expects(&mut b).is_empty(), "nothing sent twice");
    assert_eq!(a.expect_backlog(), 0);
    a.push_expect(t1, FlowKind::Destroy, ftp(1, 0));
    for d in out(&mut a, t1) {
        b.handle_datagram(t1, &d);
    }
    let got = expects(&mut b);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, FlowKind::Destroy);
    assert_eq!(got[0].1.tuple, ftp(1, 0).tuple);
}

#[test]
fn a_lost_exp_new_is_resent_as_the_newest_kind_on_nack() {
    let t = Instant::now();
    let (mut a, mut b) = pair(t);
    // B knows A (handshake), so a gap is NACKed.
    let t0 = settle(&mut a, &mut b, t, 3);
    a.push_expect(t0, FlowKind::New, ftp(9, 300));
    for d in out(&mut a, t0) {
        b.handle_datagram(t0, &d);
    }
    assert_eq!(expects(&mut b).len(), 1);
    // The NEW of expectation 2 is lost; then it is used (DESTROY).
    a.push_expect(t0, FlowKind::New, ftp(2, 300));
    assert_eq!(out(&mut a, t0).len(), 1); // lost
    a.push_expect(t0, FlowKind::Destroy, ftp(2, 0));
    a.push_expect(t0, FlowKind::New, ftp(3, 300));
    let d = out(&mut a, t0);
    for d in &d {
        b.handle_datagram(t0, d);
    }
    // B saw a gap: it NACKs it; A resends expectation 2 as DESTROY only
    // (the DESTROY already went, so the NACKed NEW is not sent again).
    let got = expects(&mut b);
    let brief: Vec<_> = got.iter().map(|(k, e)| (*k, e.tuple)).collect();
    assert_eq!(
        brief,
        [
            (FlowKind::Destroy, ftp(2, 0).tuple),
            (FlowKind::New, ftp(3, 300).tuple)
        ]
    );
    for d in out(&mut b, t0) {
        a.handle_datagram(t0, &d);
    }
    for d in out(&mut a, t0) {
        b.handle_datagram(t0, &d);
    }
    assert!(
        expects(&mut b)
            .iter()
            .all(|(k, e)| *k == FlowKind::Destroy || e.master.orig.src_port != 40002),
        "the lost NEW of a used expectation never comes back"
    );
    assert!(b.stats().lost >= 1, "the gap was seen");
}

#[test]
fn a_nacked_expectation_is_sent_again() {
    let t = Instant::now();
    let (mut a, mut b) = pair(t);
    let t0 = settle(&mut a, &mut b, t, 3);
    a.push_expect(t0, FlowKind::New, ftp(1, 300));
    for d in out(&mut a, t0) {
        b.handle_datagram(t0, &d);
    }
    expects(&mut b);
    a.push_expect(t0, FlowKind::New, ftp(2, 300));
    assert_eq!(out(&mut a, t0).len(), 1); // lost
                                          // The next ALIVE shows B the gap.
    let t1 = t0 + Duration::from_secs(1);
    a.handle_timeout(t1);
    for d in out(&mut a, t1) {
        b.handle_datagram(t1, &d);
    }
    for d in out(&mut b, t1) {
        a.handle_datagram(t1, &d);
    }
    for d in out(&mut a, t1) {
        b.handle_datagram(t1, &d);
    }
    assert_eq!(expects(&mut b), [(FlowKind::New, ftp(2, 300))]);
    assert!(a.stats().retransmitted >= 1);
}

#[test]
fn expectation_messages_are_bounded() {
    let t0 = Instant::now();
    let (mut a, _) = pair(t0);
    for i in 0..=EXP_MAX {
        let mut e = ftp(0, 300);
        e.master.orig.src_port = u16::try_from(i % 60000).unwrap() + 1;
        e.tuple.dst_port = u16::try_from(i / 60000).unwrap() + 1;
        a.push_expect(t0, FlowKind::New, e);
    }
    assert_eq!(a.expect_backlog(), EXP_MAX.min(a.config().ctl_queue_max));
    assert!(a.stats().tx_overflow + a.stats().ctl_overflow >= 1);
    assert!(a.take_needs_reexport());
}
