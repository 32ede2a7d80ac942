//! Tests of the TCP tracker: the transition table (snapshot plus key cells),
//! full connections driven segment by segment, and a property test.

use std::fmt::Write as _;

use proptest::prelude::*;

use super::*;
use crate::meta::tcp_flags::{ACK, CWR, ECE, FIN, PSH, RST, SYN, URG};

const O: Dir = Dir::Original;
const R: Dir = Dir::Reply;

fn seg(flags: u8, seq: u32, ack: u32, window: u16, payload_len: u32) -> TcpFacts {
    TcpFacts {
        flags,
        seq,
        ack,
        window,
        payload_len,
        ..TcpFacts::default()
    }
}

fn syn_ws(flags: u8, seq: u32, ack: u32, window: u16, wscale: Option<u8>) -> TcpFacts {
    TcpFacts {
        flags,
        seq,
        ack,
        window,
        wscale,
        sack_perm: true,
        payload_len: 0,
    }
}

fn accept(old: TcpState, new: TcpState) -> TcpVerdict {
    TcpVerdict::Accept {
        old,
        new,
        assured: false,
    }
}

fn accept_assured(old: TcpState, new: TcpState) -> TcpVerdict {
    TcpVerdict::Accept {
        old,
        new,
        assured: true,
    }
}

// ---------------------------------------------------------------- table

fn render_table() -> String {
    let mut out = String::from("# TCP transition table: direction event state -> next\n");
    for dir in [O, R] {
        let d = if dir == O { "ORIGINAL" } else { "REPLY" };
        for ev in TcpEvent::ALL {
            for st in TcpState::ALL {
                let _ = writeln!(
                    out,
                    "{d:<8} {:<7} {:<11} -> {}",
                    ev.name(),
                    st.name(),
                    transition(st, dir, ev).name()
                );
            }
        }
    }
    out
}

/// The whole table, reviewed as a diff of
/// `snapshots/ftfw_dataplane__conntrack__tcp__tests__transitions.snap`
/// (insta) whenever it changes: `cargo insta test -p ftfw-dataplane --lib
/// --review`.
#[test]
fn transition_table_snapshot() {
    insta::assert_snapshot!("transitions", render_table());
}

#[test]
fn transition_table_key_cells() {
    use TcpEvent as E;
    use TcpState as S;
    let next = Transition::Next;
    let cases = [
        (S::None, O, E::Syn, next(S::SynSent)),
        (S::None, O, E::Ack, next(S::Established)),
        (S::None, O, E::SynAck, Transition::Invalid),
        (S::None, R, E::Syn, Transition::Invalid),
        (S::SynSent, O, E::Syn, next(S::SynSent)),
        (S::SynSent, R, E::Syn, next(S::SynSent2)),
        (S::SynSent, R, E::SynAck, next(S::SynRecv)),
        (S::SynSent, R, E::Ack, Transition::Ignore),
        (S::SynSent, O, E::Ack, Transition::Invalid),
        (S::SynSent2, O, E::SynAck, next(S::SynRecv)),
        (S::SynRecv, O, E::Ack, next(S::Established)),
        (S::SynRecv, R, E::SynAck, Transition::Ignore),
        (S::Established, O, E::Syn, Transition::Ignore),
        (S::Established, O, E::Fin, next(S::FinWait)),
        (S::Established, R, E::Fin, next(S::FinWait)),
        (S::FinWait, R, E::Ack, next(S::CloseWait)),
        (S::FinWait, R, E::Fin, next(S::LastAck)),
        (S::CloseWait, R, E::Fin, next(S::LastAck)),
        (S::LastAck, O, E::Ack, next(S::TimeWait)),
        (S::TimeWait, O, E::Syn, next(S::SynSent)),
        (S::TimeWait, R, E::Syn, next(S::SynSent)),
        (S::Close, O, E::Syn, next(S::SynSent)),
        (S::Close, R, E::Syn, Transition::Invalid),
    ];
    for (st, dir, ev, want) in cases {
        assert_eq!(transition(st, dir, ev), want, "{st} {dir:?} {}", ev.name());
    }
    for dir in [O, R] {
        for st in TcpState::ALL {
            let want = if st == S::None {
                Transition::Invalid
            } else {
                next(S::Close)
            };
            assert_eq!(transition(st, dir, E::Rst), want, "RST in {st} {dir:?}");
            assert_eq!(transition(st, dir, E::None), Transition::Invalid);
        }
    }
}

#[test]
fn flag_classification() {
    assert_eq!(TcpEvent::classify(SYN), Some(TcpEvent::Syn));
    assert_eq!(
        TcpEvent::classify(SYN | URG | ECE | CWR),
        Some(TcpEvent::Syn)
    );
    assert_eq!(TcpEvent::classify(SYN | ACK), Some(TcpEvent::SynAck));
    assert_eq!(TcpEvent::classify(FIN | ACK | PSH), Some(TcpEvent::Fin));
    assert_eq!(TcpEvent::classify(ACK | PSH), Some(TcpEvent::Ack));
    assert_eq!(TcpEvent::classify(RST), Some(TcpEvent::Rst));
    assert_eq!(TcpEvent::classify(RST | ACK), Some(TcpEvent::Rst));
    for bad in [
        0,
        PSH,
        SYN | FIN,
        SYN | RST,
        FIN,
        FIN | URG,
        SYN | ACK | URG,
        RST | FIN | ACK,
        URG,
        0xff,
    ] {
        assert_eq!(TcpEvent::classify(bad), None, "flags {bad:#04x}");
    }
    assert!(is_syn(SYN | ECE | CWR));
    assert!(!is_syn(SYN | ACK));
}

// ---------------------------------------------------------------- scenarios

/// Client ISN 1000, server ISN 5000, both offer window scale 7.
fn handshake(cfg: &TcpConfig) -> TcpConn {
    let mut c = new_conn(&syn_ws(SYN, 1000, 0, 64240, Some(7)), cfg).unwrap();
    assert_eq!(c.state(), TcpState::SynSent);
    let v = track(
        &mut c,
        R,
        &syn_ws(SYN | ACK, 5000, 1001, 65160, Some(7)),
        cfg,
    );
    assert_eq!(v, accept(TcpState::SynSent, TcpState::SynRecv));
    let v = track(&mut c, O, &seg(ACK, 1001, 5001, 502, 0), cfg);
    assert_eq!(v, accept_assured(TcpState::SynRecv, TcpState::Established));
    assert!(v.becomes_assured());
    c
}

#[test]
fn full_connection_with_window_scaling_and_fin_close() {
    let cfg = TcpConfig::default();
    let t = TcpTimeouts::default();
    let mut c = handshake(&cfg);
    assert_eq!((c.wscale(O), c.wscale(R)), (7, 7));
    let es = TcpState::Established;
    // Data both ways; the client's window is 502 << 7 = 64256 bytes.
    let v = track(&mut c, O, &seg(ACK | PSH, 1001, 5001, 502, 100), &cfg);
    assert_eq!(v, accept(es, es));
    assert_eq!(
        c.timeout(&v, &t, &cfg),
        TimeoutUpdate::Set(t.unacknowledged)
    );
    // 60000 bytes from the server fit the client's scaled window.
    assert_eq!(
        track(&mut c, R, &seg(ACK, 5001, 1101, 509, 60000), &cfg),
        accept(es, es)
    );
    let v = track(&mut c, O, &seg(ACK, 1101, 65001, 502, 0), &cfg);
    assert_eq!(v, accept(es, es));
    assert_eq!(c.timeout(&v, &t, &cfg), TimeoutUpdate::Set(t.established));
    // Client closes.
    assert_eq!(
        track(&mut c, O, &seg(FIN | ACK, 1101, 65001, 502, 0), &cfg),
        accept(es, TcpState::FinWait)
    );
    assert_eq!(
        track(&mut c, R, &seg(ACK, 65001, 1102, 509, 0), &cfg),
        accept(TcpState::FinWait, TcpState::CloseWait)
    );
    assert_eq!(
        track(&mut c, R, &seg(FIN | ACK, 65001, 1102, 509, 0), &cfg),
        accept(TcpState::CloseWait, TcpState::LastAck)
    );
    let v = track(&mut c, O, &seg(ACK, 1102, 65002, 502, 0), &cfg);
    assert_eq!(v, accept(TcpState::LastAck, TcpState::TimeWait));
    assert_eq!(c.timeout(&v, &t, &cfg), TimeoutUpdate::Set(t.time_wait));
    // Retransmitted last ACK stays in TIME_WAIT.
    assert_eq!(
        track(&mut c, O, &seg(ACK, 1102, 65002, 502, 0), &cfg),
        accept(TcpState::TimeWait, TcpState::TimeWait)
    );
    // A new SYN from the client reopens the port.
    assert_eq!(
        track(&mut c, O, &syn_ws(SYN, 90_000, 0, 64240, Some(7)), &cfg),
        TcpVerdict::Reopen
    );
    assert_eq!(c.state(), TcpState::TimeWait);
}

#[test]
fn rst_closes_and_out_of_window_rst_is_invalid() {
    let cfg = TcpConfig::default();
    let t = TcpTimeouts::default();
    for be_liberal in [false, true] {
        let cfg = TcpConfig { be_liberal, ..cfg };
        let mut c = handshake(&cfg);
        let before = c;
        // Far beyond the window: invalid, even when liberal.
        assert_eq!(
            track(&mut c, R, &seg(RST, 5001 + 2_000_000_000, 0, 0, 0), &cfg),
            TcpVerdict::Invalid(TcpInvalid::BadRst)
        );
        // Below the window (older than the client's largest window).
        assert_eq!(
            track(
                &mut c,
                R,
                &seg(RST | ACK, 5001u32.wrapping_sub(200_000), 1001, 0, 0),
                &cfg
            ),
            TcpVerdict::Invalid(TcpInvalid::BadRst)
        );
        assert_eq!(c.state(), before.state());
        let v = track(&mut c, R, &seg(RST | ACK, 5001, 1001, 0, 0), &cfg);
        assert_eq!(v, accept(TcpState::Established, TcpState::Close));
        assert_eq!(c.timeout(&v, &t, &cfg), TimeoutUpdate::Set(t.close));
        // After the RST, more RSTs are accepted without window checks.
        assert_eq!(
            track(&mut c, O, &seg(RST, 77, 0, 0, 0), &cfg),
            accept(TcpState::Close, TcpState::Close)
        );
    }
}

#[test]
fn rst_answering_syn_expires_the_flow() {
    let cfg = TcpConfig::default();
    let t = TcpTimeouts::default();
    let mut c = new_conn(&syn_ws(SYN, 1000, 0, 64240, None), &cfg).unwrap();
    let v = track(&mut c, R, &seg(RST | ACK, 0, 1001, 0, 0), &cfg);
    assert_eq!(v, accept(TcpState::SynSent, TcpState::Close));
    assert_eq!(c.timeout(&v, &t, &cfg), TimeoutUpdate::Expire);
}

#[test]
fn simultaneous_open() {
    let cfg = TcpConfig::default();
    let mut c = new_conn(&syn_ws(SYN, 100, 0, 8000, Some(2)), &cfg).unwrap();
    assert_eq!(
        track(&mut c, R, &syn_ws(SYN, 900, 0, 9000, Some(3)), &cfg),
        accept(TcpState::SynSent, TcpState::SynSent2)
    );
    assert_eq!(
        track(&mut c, O, &syn_ws(SYN | ACK, 100, 901, 8000, Some(2)), &cfg),
        accept(TcpState::SynSent2, TcpState::SynRecv)
    );
    // The other side's SYN/ACK is ignored: we are already in SYN_RECV.
    assert_eq!(
        track(&mut c, R, &syn_ws(SYN | ACK, 900, 101, 9000, Some(3)), &cfg),
        TcpVerdict::Ignore
    );
    // Its ACK completes the open (the table alone would stay in SYN_RECV).
    assert_eq!(
        track(&mut c, R, &seg(ACK, 901, 101, 2250, 0), &cfg),
        accept_assured(TcpState::SynRecv, TcpState::Established)
    );
    assert_eq!((c.wscale(O), c.wscale(R)), (2, 3));
}

#[test]
fn retransmitted_syn_does_not_refresh() {
    let cfg = TcpConfig::default();
    let t = TcpTimeouts::default();
    let s = syn_ws(SYN, 1000, 0, 64240, Some(7));
    let mut c = new_conn(&s, &cfg).unwrap();
    assert_eq!(c.opening(), accept(TcpState::None, TcpState::SynSent));
    assert_eq!(
        c.timeout(&c.opening(), &t, &cfg),
        TimeoutUpdate::Set(t.syn_sent)
    );
    let v = track(&mut c, O, &s, &cfg);
    assert_eq!(v, accept(TcpState::SynSent, TcpState::SynSent));
    assert_eq!(c.timeout(&v, &t, &cfg), TimeoutUpdate::Keep);
    // The handshake still completes.
    assert_eq!(
        track(
            &mut c,
            R,
            &syn_ws(SYN | ACK, 5000, 1001, 65160, Some(7)),
            &cfg
        ),
        accept(TcpState::SynSent, TcpState::SynRecv)
    );
    // A retransmitted SYN/ACK is ignored.
    assert_eq!(
        track(
            &mut c,
            R,
            &syn_ws(SYN | ACK, 5000, 1001, 65160, Some(7)),
            &cfg
        ),
        TcpVerdict::Ignore
    );
}

#[test]
fn out_of_window_data_rejected_unless_liberal() {
    for be_liberal in [false, true] {
        let cfg = TcpConfig {
            be_liberal,
            ..TcpConfig::default()
        };
        let mut c = handshake(&cfg);
        let far = seg(ACK | PSH, 1001 + 10_000_000, 5001, 502, 100);
        let bad_ack = seg(ACK, 1001, 5001 + 10_000_000, 502, 0);
        let es = TcpState::Established;
        if be_liberal {
            assert_eq!(track(&mut c, O, &far, &cfg), accept(es, es));
            assert_eq!(track(&mut c, O, &bad_ack, &cfg), accept(es, es));
        } else {
            assert_eq!(
                track(&mut c, O, &far, &cfg),
                TcpVerdict::Invalid(TcpInvalid::OutOfWindow)
            );
            assert_eq!(
                track(&mut c, O, &bad_ack, &cfg),
                TcpVerdict::Invalid(TcpInvalid::AckOutOfWindow)
            );
            // The client advertised 502 << 7 = 64256 bytes. A segment
            // overshooting that by less than a window is ignored (netfilter
            // tolerates such stacks); one a full window beyond is invalid.
            assert_eq!(
                track(&mut c, R, &seg(ACK, 5001 + 70_000, 1001, 509, 100), &cfg),
                TcpVerdict::Ignore
            );
            assert_eq!(
                track(&mut c, R, &seg(ACK, 5001 + 140_000, 1001, 509, 100), &cfg),
                TcpVerdict::Invalid(TcpInvalid::OutOfWindow)
            );
        }
    }
}

#[test]
fn old_retransmission_is_ignored() {
    let cfg = TcpConfig::default();
    let mut c = handshake(&cfg);
    let es = TcpState::Established;
    // Server sends 200 KB in chunks the client acknowledges.
    let mut seq = 5001u32;
    for _ in 0..4 {
        assert_eq!(
            track(&mut c, R, &seg(ACK, seq, 1001, 509, 50_000), &cfg),
            accept(es, es)
        );
        seq += 50_000;
        assert_eq!(
            track(&mut c, O, &seg(ACK, 1001, seq, 502, 0), &cfg),
            accept(es, es)
        );
    }
    // A segment older than a whole window is ignored, not invalid.
    assert_eq!(
        track(&mut c, R, &seg(ACK, 5001, 1001, 509, 100), &cfg),
        TcpVerdict::Ignore
    );
}

#[test]
fn retransmissions_cap_the_timeout() {
    let cfg = TcpConfig::default();
    let t = TcpTimeouts::default();
    let mut c = handshake(&cfg);
    let data = seg(ACK | PSH, 1001, 5001, 502, 100);
    let mut last = TcpVerdict::Ignore;
    for _ in 0..=cfg.max_retrans {
        last = track(&mut c, O, &data, &cfg);
    }
    assert_eq!(c.retransmits(), cfg.max_retrans);
    assert_eq!(c.timeout(&last, &t, &cfg), TimeoutUpdate::Set(t.retrans));
    // An answer resets the counter.
    track(&mut c, R, &seg(ACK, 5001, 1101, 509, 0), &cfg);
    assert_eq!(c.retransmits(), 0);
}

#[test]
fn mid_stream_pickup_only_when_loose() {
    let strict = TcpConfig::default();
    let first = seg(ACK | PSH, 123_456, 987_654, 300, 500);
    assert_eq!(new_conn(&first, &strict), Err(TcpInvalid::NotSyn));
    for bad_first in [
        seg(SYN | ACK, 1, 2, 3, 0),
        seg(FIN | ACK, 1, 2, 3, 0),
        seg(RST, 1, 0, 0, 0),
    ] {
        assert_eq!(
            new_conn(&bad_first, &strict),
            Err(TcpInvalid::InvalidTransition)
        );
    }
    assert_eq!(
        new_conn(&seg(SYN | FIN, 1, 0, 3, 0), &strict),
        Err(TcpInvalid::BadFlags)
    );

    let loose = TcpConfig {
        loose: true,
        ..TcpConfig::default()
    };
    let t = TcpTimeouts::default();
    let mut c = new_conn(&first, &loose).unwrap();
    assert_eq!(c.state(), TcpState::Established);
    assert!(c.is_liberal(O) && c.is_liberal(R));
    let es = TcpState::Established;
    let v = track(&mut c, R, &seg(ACK, 987_654, 123_956, 1000, 1400), &loose);
    assert_eq!(v, accept(es, es));
    // Not assured yet: this was the first reply; capped timeout meanwhile.
    assert_eq!(
        c.timeout(&v, &t, &loose),
        TimeoutUpdate::Set(t.unacknowledged)
    );
    let v = track(&mut c, O, &seg(ACK, 123_956, 989_054, 300, 0), &loose);
    assert_eq!(v, accept_assured(es, es));
    // Liberal: traffic far outside what we learnt still passes.
    assert_eq!(
        track(&mut c, O, &seg(ACK, 9_000_000, 989_054, 300, 10), &loose),
        accept(es, es)
    );
}

#[test]
fn replicated_conn_accepts_mid_stream_traffic() {
    let cfg = TcpConfig::default();
    let mut c = TcpConn::from_replicated(TcpState::Established, 7, 9);
    assert_eq!((c.wscale(O), c.wscale(R)), (7, 9));
    assert_eq!(
        TcpConn::from_replicated(TcpState::Established, 200, 0).wscale(O),
        MAX_WSCALE
    );
    let es = TcpState::Established;
    assert_eq!(
        track(
            &mut c,
            R,
            &seg(ACK | PSH, 77_777, 4_000_000, 500, 1400),
            &cfg
        ),
        accept(es, es)
    );
    assert_eq!(
        track(&mut c, O, &seg(ACK, 4_000_000, 79_177, 400, 0), &cfg),
        accept(es, es)
    );
    assert_eq!(
        track(&mut c, O, &seg(FIN | ACK, 4_000_000, 79_177, 400, 0), &cfg),
        accept(es, TcpState::FinWait)
    );
    // Bad flags stay invalid.
    assert_eq!(
        track(&mut c, O, &seg(SYN | FIN, 1, 0, 0, 0), &cfg),
        TcpVerdict::Invalid(TcpInvalid::BadFlags)
    );
}

#[test]
fn replicated_syn_sent_completes_its_handshake_at_the_new_primary() {
    // The peer replicated the flow on the SYN and failed before SYN_RECV
    // and ESTABLISHED reached us: the client's ACK carrying its request
    // establishes the flow here, and the server's data passes.
    let cfg = TcpConfig::default();
    let (sr, es) = (TcpState::SynRecv, TcpState::Established);
    let mut c = TcpConn::from_replicated(TcpState::SynSent, 0, 0);
    assert_eq!(
        track(&mut c, O, &seg(ACK | PSH, 1_001, 90_001, 500, 16), &cfg),
        accept_assured(sr, es)
    );
    assert!(track(&mut c, R, &seg(ACK, 90_001, 1_017, 500, 1400), &cfg).passes());
    // Server data first: it passes and the client's next ACK establishes.
    let mut c = TcpConn::from_replicated(TcpState::SynSent, 0, 0);
    assert!(track(&mut c, R, &seg(ACK, 90_001, 1_017, 500, 1400), &cfg).passes());
    assert_eq!(c.state(), sr);
    assert_eq!(
        track(&mut c, O, &seg(ACK, 1_017, 91_401, 500, 0), &cfg),
        accept_assured(sr, es)
    );
    // Only the first segment is adopted this way, and only an ACK: a flow
    // that goes on seeing its handshake tracks it as usual.
    let mut c = TcpConn::from_replicated(TcpState::SynSent, 0, 0);
    assert_eq!(
        track(
            &mut c,
            R,
            &syn_ws(SYN | ACK, 90_000, 1_001, 1000, None),
            &cfg
        ),
        accept(TcpState::SynSent, sr)
    );
    // A flow we tracked from its SYN ourselves is not affected: an ACK
    // from the client in SYN_SENT stays invalid, as in Linux.
    let mut c = TcpConn::default();
    let _ = track(&mut c, O, &syn_ws(SYN, 1_000, 0, 1000, None), &cfg);
    assert!(!track(&mut c, O, &seg(ACK, 1_001, 90_001, 500, 0), &cfg).passes());
}

#[test]
fn syn_in_time_wait_without_close_is_ignored() {
    // A replicated TIME_WAIT flow has no record of who closed: like Linux,
    // a SYN then passes as ignored rather than reopening.
    let cfg = TcpConfig::default();
    let mut c = TcpConn::from_replicated(TcpState::TimeWait, 0, 0);
    assert_eq!(
        track(&mut c, O, &syn_ws(SYN, 5, 0, 1000, None), &cfg),
        TcpVerdict::Ignore
    );
    // The server answers that SYN: we resync to the new connection.
    assert_eq!(
        track(&mut c, R, &syn_ws(SYN | ACK, 700, 6, 1000, None), &cfg),
        accept(TcpState::TimeWait, TcpState::SynRecv)
    );
    assert!(track(&mut c, O, &seg(ACK, 6, 701, 1000, 0), &cfg).passes());
    assert_eq!(c.state(), TcpState::Established);
}

#[test]
fn client_rst_then_syn_reopens() {
    let cfg = TcpConfig::default();
    let mut c = handshake(&cfg);
    assert_eq!(
        track(&mut c, O, &seg(RST, 1001, 0, 0, 0), &cfg),
        accept(TcpState::Established, TcpState::Close)
    );
    assert_eq!(
        track(&mut c, O, &syn_ws(SYN, 50_000, 0, 64240, Some(7)), &cfg),
        TcpVerdict::Reopen
    );
}

#[test]
fn challenge_ack_in_last_ack_is_not_the_last_ack() {
    let cfg = TcpConfig::default();
    let mut c = handshake(&cfg);
    let es = TcpState::Established;
    assert_eq!(
        track(&mut c, R, &seg(FIN | ACK, 5001, 1001, 509, 0), &cfg),
        accept(es, TcpState::FinWait)
    );
    assert_eq!(
        track(&mut c, O, &seg(FIN | ACK, 1001, 5002, 502, 0), &cfg),
        accept(TcpState::FinWait, TcpState::LastAck)
    );
    // The client reuses the port too early: its SYN is ignored and the
    // server answers with a challenge ACK, which must not end the flow.
    assert_eq!(
        track(&mut c, O, &syn_ws(SYN, 70_000, 0, 64240, Some(7)), &cfg),
        TcpVerdict::Ignore
    );
    assert_eq!(
        track(&mut c, R, &seg(ACK, 5002, 1002, 509, 0), &cfg),
        TcpVerdict::Ignore
    );
    assert_eq!(c.state(), TcpState::LastAck);
}

// ---------------------------------------------------------------- property

#[derive(Clone, Debug)]
struct Step {
    reply: bool,
    flags: u8,
    seq: u32,
    ack: u32,
    window: u16,
    len: u32,
    wscale: Option<u8>,
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let flags = prop_oneof![
        Just(SYN),
        Just(SYN | ACK),
        Just(ACK),
        Just(ACK | PSH),
        Just(FIN | ACK),
        Just(RST),
        Just(RST | ACK),
        any::<u8>(),
    ];
    let num = prop_oneof![0u32..200_000, any::<u32>()];
    (
        any::<bool>(),
        flags,
        num.clone(),
        num,
        any::<u16>(),
        0u32..70_000,
        proptest::option::of(any::<u8>()),
    )
        .prop_map(|(reply, flags, seq, ack, window, len, wscale)| Step {
            reply,
            flags,
            seq,
            ack,
            window,
            len,
            wscale,
        })
}

proptest! {
    #[test]
    fn arbitrary_segments_never_panic(
        first in step_strategy(),
        steps in proptest::collection::vec(step_strategy(), 0..40),
        be_liberal in any::<bool>(),
        loose in any::<bool>(),
        max_retrans in 0u8..5,
    ) {
        let cfg = TcpConfig { be_liberal, loose, max_retrans };
        let t = TcpTimeouts::default();
        let to_facts = |s: &Step| TcpFacts {
            flags: s.flags, seq: s.seq, ack: s.ack, window: s.window,
            payload_len: s.len, wscale: s.wscale, sack_perm: false,
        };
        let mut conn = match new_conn(&to_facts(&first), &cfg) {
            Ok(c) => c,
            Err(_) => TcpConn::from_replicated(TcpState::Established, first.wscale.unwrap_or(0), 3),
        };
        for s in &steps {
            let before = conn.state();
            let dir = if s.reply { R } else { O };
            let v = track(&mut conn, dir, &to_facts(s), &cfg);
            prop_assert!(TcpState::ALL.contains(&conn.state()));
            prop_assert!(conn.wscale(O) <= MAX_WSCALE && conn.wscale(R) <= MAX_WSCALE);
            match v {
                TcpVerdict::Accept { old, new, .. } => {
                    prop_assert_eq!(old, before);
                    prop_assert_eq!(new, conn.state());
                }
                _ => prop_assert_eq!(conn.state(), before),
            }
            let _ = conn.timeout(&v, &t, &cfg);
            if v == TcpVerdict::Reopen {
                conn = new_conn(&to_facts(s), &cfg).unwrap_or_default();
            }
        }
    }
}

#[test]
fn conn_is_small() {
    assert_eq!(std::mem::size_of::<TcpConn>(), 40);
}

/// One endpoint of a simulated, well-behaved connection.
#[derive(Clone, Copy, Debug)]
struct Peer {
    /// Next sequence number to send.
    snd_nxt: u32,
    /// Window scale this side applies to the windows it advertises.
    scale: u8,
    /// Right edge of the window this side last advertised.
    adv_right: u32,
}

proptest! {
    /// A connection whose endpoints respect each other's windows is never
    /// judged invalid or ignored, whatever the ISNs (wrap-around included),
    /// window scales and segment sizes, and closes into TIME_WAIT.
    #[test]
    fn well_behaved_connection_is_always_accepted(
        isn in (any::<u32>(), any::<u32>()),
        ws in (proptest::option::of(0u8..=14), proptest::option::of(0u8..=14)),
        syn_win in (1u16.., 1u16..),
        steps in proptest::collection::vec((any::<bool>(), 0u32..5000, 0u16.., any::<bool>()), 1..60),
    ) {
        let cfg = TcpConfig::default();
        let both = ws.0.is_some() && ws.1.is_some();
        let eff = |w: Option<u8>| if both { w.unwrap_or(0) } else { 0 };
        let mut peers = [
            Peer { snd_nxt: isn.0.wrapping_add(1), scale: eff(ws.0), adv_right: 0 },
            Peer { snd_nxt: isn.1.wrapping_add(1), scale: eff(ws.1), adv_right: 0 },
        ];
        let mut c = new_conn(&syn_ws(SYN, isn.0, 0, syn_win.0, ws.0), &cfg).unwrap();
        let v = track(&mut c, R, &syn_ws(SYN | ACK, isn.1, peers[0].snd_nxt, syn_win.1, ws.1), &cfg);
        prop_assert_eq!(v, accept(TcpState::SynSent, TcpState::SynRecv));
        // Windows in SYN segments are never scaled.
        peers[1].adv_right = peers[0].snd_nxt.wrapping_add(u32::from(syn_win.1));
        let v = track(&mut c, O, &seg(ACK, peers[0].snd_nxt, peers[1].snd_nxt, syn_win.0 >> peers[0].scale, 0), &cfg);
        prop_assert!(matches!(v, TcpVerdict::Accept { new: TcpState::Established, .. }), "{:?}", v);
        peers[0].adv_right = peers[1].snd_nxt.wrapping_add(u32::from(syn_win.0 >> peers[0].scale) << peers[0].scale);

        for (reply, want, raw_win, push) in steps {
            let (s, r) = if reply { (1, 0) } else { (0, 1) };
            let dir = if reply { R } else { O };
            let room = peers[r].adv_right.wrapping_sub(peers[s].snd_nxt);
            let len = if room > 0x8000_0000 { 0 } else { want.min(room) };
            let flags = if push { ACK | PSH } else { ACK };
            let v = track(&mut c, dir, &seg(flags, peers[s].snd_nxt, peers[r].snd_nxt, raw_win, len), &cfg);
            prop_assert_eq!(v, accept(TcpState::Established, TcpState::Established));
            peers[s].snd_nxt = peers[s].snd_nxt.wrapping_add(len);
            peers[s].adv_right = peers[r].snd_nxt.wrapping_add(u32::from(raw_win) << peers[s].scale);
        }

        let (o, r) = (peers[0], peers[1]);
        let v = track(&mut c, O, &seg(FIN | ACK, o.snd_nxt, r.snd_nxt, 100, 0), &cfg);
        prop_assert_eq!(v, accept(TcpState::Established, TcpState::FinWait));
        let v = track(&mut c, R, &seg(FIN | ACK, r.snd_nxt, o.snd_nxt.wrapping_add(1), 100, 0), &cfg);
        prop_assert_eq!(v, accept(TcpState::FinWait, TcpState::LastAck));
        let v = track(&mut c, O, &seg(ACK, o.snd_nxt.wrapping_add(1), r.snd_nxt.wrapping_add(1), 100, 0), &cfg);
        prop_assert_eq!(v, accept(TcpState::LastAck, TcpState::TimeWait));
    }
}

#[test]
fn ignored_syn_answered_by_syn_ack_resyncs() {
    // The client restarted and reuses the port while we still hold the old
    // connection: its SYN is ignored, the server's SYN/ACK for it resyncs.
    let cfg = TcpConfig::default();
    let mut c = handshake(&cfg);
    assert_eq!(
        track(&mut c, O, &syn_ws(SYN, 777, 0, 29200, Some(6)), &cfg),
        TcpVerdict::Ignore
    );
    assert_eq!(c.state(), TcpState::Established);
    let v = track(
        &mut c,
        R,
        &syn_ws(SYN | ACK, 31_000, 778, 28960, Some(6)),
        &cfg,
    );
    assert_eq!(v, accept(TcpState::Established, TcpState::SynRecv));
    assert_eq!((c.wscale(O), c.wscale(R)), (6, 6));
    let v = track(&mut c, O, &seg(ACK, 778, 31_001, 457, 0), &cfg);
    assert_eq!(v, accept(TcpState::SynRecv, TcpState::Established));
    // The new connection's data is tracked with the new numbers.
    assert_eq!(
        track(&mut c, O, &seg(ACK | PSH, 778, 31_001, 457, 500), &cfg),
        accept(TcpState::Established, TcpState::Established)
    );
}

#[test]
fn rst_answering_challenge_ack_in_syn_sent() {
    let cfg = TcpConfig::default();
    let mut c = new_conn(&syn_ws(SYN, 1000, 0, 64240, None), &cfg).unwrap();
    // The server still has an old connection and answers with an ACK.
    assert_eq!(
        track(&mut c, R, &seg(ACK, 9000, 55_555, 500, 0), &cfg),
        TcpVerdict::Ignore
    );
    // A RST with an unrelated sequence number is out of window...
    let mut other = c;
    assert_eq!(
        track(&mut other, O, &seg(RST, 12_345, 0, 0, 0), &cfg),
        TcpVerdict::Invalid(TcpInvalid::OutOfWindow)
    );
    // ...but the client's RST at the challenged sequence number closes.
    assert_eq!(
        track(&mut c, O, &seg(RST, 55_555, 0, 0, 0), &cfg),
        accept(TcpState::SynSent, TcpState::Close)
    );
}
