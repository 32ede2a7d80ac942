//! Shard tests: tracking, confirm, expiry, export and import.

#![allow(clippy::cast_possible_truncation, clippy::assertions_on_constants)]

use super::*;
use crate::flow::{proto, FlowState};
use crate::meta::{tcp_flags as f, L3Kind, TcpFacts};

fn shard(cap: usize) -> Shard {
    Shard::new(
        ConntrackConfig {
            capacity: cap,
            ..Default::default()
        },
        Instant::now(),
        DeltaRing::new(1024),
    )
}

fn tuple(sp: u16, dp: u16, p: u8) -> Tuple {
    Tuple::new(
        "192.0.2.1".parse().unwrap(),
        "198.51.100.2".parse().unwrap(),
        p,
        sp,
        dp,
    )
}

fn meta(t: Tuple, flags: u8, seq: u32, ack: u32) -> PacketMeta {
    PacketMeta {
        l3: L3Kind::Ipv4,
        ip_len: 40,
        tuple: t,
        tcp: TcpFacts {
            flags,
            seq,
            ack,
            window: 65535,
            payload_len: 0,
            wscale: None,
            sack_perm: false,
        },
        ..Default::default()
    }
}

fn drain(s: &Shard) -> Vec<DeltaKind> {
    std::iter::from_fn(|| s.ring().pop())
        .map(|d| d.kind)
        .collect()
}

/// Runs a packet through track and, if new, confirms it.
fn pass(s: &mut Shard, now: u32, m: &PacketMeta) -> CtState {
    let t = s.track(now, m, 0);
    if let Track::New(nf) = t {
        s.confirm(now, &nf, 1).unwrap();
    }
    t.ct_state()
}

#[test]
fn a_flow_costs_at_most_128_bytes_with_its_index_share() {
    assert_eq!(Shard::ENTRY_BYTES, 112, "entry size");
    // The index: 64-byte buckets of 10 slots at most 2/3 full, 9.6 bytes
    // per flow; the free list lives in the free slots.
    let s = shard(1 << 16);
    assert_eq!(s.bytes_per_flow(), Shard::ENTRY_BYTES + 10);
    assert!(s.bytes_per_flow() <= 128);
}

/// The warm-up's [`Entry::touch`] reads a field lying whole in each cache
/// line an entry spans, wherever in a line the entry starts.
#[test]
fn the_warm_up_touches_every_line_of_an_entry() {
    let touched = [
        (std::mem::offset_of!(Entry, key.zone), 2),
        (
            std::mem::offset_of!(Entry, tcp),
            std::mem::size_of::<TcpConn>(),
        ),
        (std::mem::offset_of!(Entry, flags), 1),
    ];
    let size = std::mem::size_of::<Entry>();
    for start in (0..64).step_by(std::mem::align_of::<Entry>()) {
        for line in start / 64..=(start + size - 1) / 64 {
            let (lo, hi) = (line * 64, line * 64 + 64);
            assert!(
                touched
                    .iter()
                    .any(|&(o, len)| start + o >= lo && start + o + len <= hi),
                "an entry at {start} spans line {line} and touches nothing whole in it"
            );
        }
    }
}

/// The entry holds 16 bits of each packet counter and 32 of each byte
/// counter; what wraps is carried into the flow's wide record, so the
/// counts stay exact. The record goes with the flow.
#[test]
fn counters_stay_exact_past_the_entry_bits_and_go_with_the_flow() {
    let mut s = shard(8);
    let t = tuple(5353, 53, proto::UDP);
    let mut m = meta(t, 0, 0, 0);
    m.ip_len = 100;
    for _ in 0..70_000 {
        pass(&mut s, 0, &m);
    }
    let mut r = meta(t.inverse(), 0, 0, 0);
    r.ip_len = 1500;
    pass(&mut s, 0, &r);
    let idx = s.lookup(&FlowKey { orig: t, zone: 0 }).unwrap();
    let st = s.flow_state(0, idx).unwrap();
    assert_eq!(st.counters[0].packets, 70_000);
    assert_eq!(st.counters[0].bytes, 7_000_000);
    assert_eq!((st.counters[1].packets, st.counters[1].bytes), (1, 1500));
    assert_eq!(st.mark, 0);
    assert_eq!(s.wide.len(), 1, "the carry of the packet counter");

    // A peer's flow brings counters beyond the entry's bits and a mark.
    let key = FlowKey {
        orig: tuple(40000, 443, proto::TCP),
        zone: 0,
    };
    let mut imported = FlowState::established_tcp(key.orig, 300);
    imported.mark = 7;
    imported.counters[0] = crate::flow::Counters {
        packets: (1 << 40) + 65_535,
        bytes: (5 << 32) - 10,
    };
    let j = s.upsert(1, &imported).unwrap();
    let got = s.flow_state(1, j).unwrap();
    assert_eq!(got.counters, imported.counters);
    assert_eq!(got.mark, 7);
    // One more packet wraps both inline counters of the direction.
    let seg = PacketMeta {
        ip_len: 40,
        tcp: TcpFacts {
            flags: f::ACK,
            seq: 1000,
            ack: 2000,
            window: 1000,
            ..Default::default()
        },
        ..meta(key.orig, 0, 0, 0)
    };
    assert!(matches!(s.track(1, &seg, 0), Track::Established { .. }));
    let got = s.flow_state(1, j).unwrap();
    assert_eq!(got.counters[0].packets, (1 << 40) + 65_536);
    assert_eq!(got.counters[0].bytes, (5 << 32) + 30);
    assert_eq!(got.mark, 7, "the mark survives the carries");
    // A replicated update changes the mark, not the counters.
    imported.mark = 0;
    imported.counters = Default::default();
    s.upsert(2, &imported).unwrap();
    let got = s.flow_state(2, j).unwrap();
    assert_eq!((got.mark, got.counters[0].packets), (0, (1 << 40) + 65_536));

    // Removed flows leave no record; their slots start from zero.
    assert!(s.remove(3, &key));
    assert!(s.remove(3, &FlowKey { orig: t, zone: 0 }));
    assert!(s.wide.is_empty());
    pass(&mut s, 3, &m);
    let k = s.lookup(&FlowKey { orig: t, zone: 0 }).unwrap();
    let st = s.flow_state(3, k).unwrap();
    assert_eq!((st.counters[0].packets, st.counters[0].bytes), (1, 100));
    assert_eq!(st.mark, 0);
}

#[test]
fn tcp_handshake_data_and_close_with_deltas() {
    let mut s = shard(64);
    let c = tuple(40000, 80, proto::TCP);
    let r = c.inverse();
    assert_eq!(pass(&mut s, 0, &meta(c, f::SYN, 100, 0)), CtState::New);
    assert_eq!(
        pass(&mut s, 0, &meta(r, f::SYN | f::ACK, 500, 101)),
        CtState::Established
    );
    assert_eq!(
        pass(&mut s, 0, &meta(c, f::ACK, 101, 501)),
        CtState::Established
    );
    let idx = s.lookup(&FlowKey { orig: c, zone: 0 }).unwrap();
    let st = s.flow_state(0, idx).unwrap();
    assert_eq!(st.tcp_state, TcpState::Established);
    assert_eq!(
        st.status & (status::SEEN_REPLY | status::ASSURED | status::CONFIRMED),
        0xe
    );
    assert_eq!(st.timeout_secs, 432000);
    assert_eq!(st.counters[0].packets, 2);
    assert_eq!(st.counters[1].packets, 1);
    // Created, SYN_RECV, ESTABLISHED+ASSURED.
    assert_eq!(
        drain(&s),
        vec![DeltaKind::Created, DeltaKind::Updated, DeltaKind::Updated]
    );
    // Plain data: no state change, no delta.
    assert_eq!(
        pass(&mut s, 1, &meta(c, f::ACK | f::PSH, 101, 501)),
        CtState::Established
    );
    assert!(drain(&s).is_empty());
    // RST closes; the flow expires after the CLOSE timeout (10 s).
    assert_eq!(
        pass(&mut s, 2, &meta(r, f::RST | f::ACK, 501, 101)),
        CtState::Established
    );
    assert_eq!(s.flow_state(2, idx).unwrap().tcp_state, TcpState::Close);
    assert_eq!(drain(&s), vec![DeltaKind::Updated]);
    s.expire(11, 1000);
    assert_eq!(s.len(), 1);
    s.expire(12, 1000);
    assert_eq!(s.len(), 0);
    assert_eq!(drain(&s), vec![DeltaKind::Destroyed]);
    assert_eq!(s.stats().expired, 1);
}

#[test]
fn stale_or_wrong_hints_never_mislead_tracking() {
    let mut s = shard(16);
    let m = |sp| PacketMeta {
        l3: L3Kind::Ipv4,
        ip_len: 60,
        tuple: tuple(sp, 53, proto::UDP),
        ..Default::default()
    };
    pass(&mut s, 0, &m(1));
    pass(&mut s, 0, &m(2));
    let i1 = s.warm(&m(1), 0);
    let i2 = s.warm(&m(2), 0);
    assert_ne!(i1, u32::MAX);
    assert_ne!(i1, i2);
    // The right hint, a wrong one (another flow's slot), a freed slot
    // and no hint all find flow 1, in the right direction.
    let reply = PacketMeta {
        tuple: tuple(1, 53, proto::UDP).inverse(),
        ..m(1)
    };
    for hint in [i1, i2, 15, u32::MAX] {
        match s.track_hinted(0, &reply, 0, hint) {
            Track::Established { idx, dir } => {
                assert_eq!((idx, dir), (i1, Dir::Reply), "hint {hint}");
            }
            other => panic!("hint {hint}: {other:?}"),
        }
    }
    // After flow 1 is gone and its slot reused by flow 3, the old hint
    // does not make flow 1's packets match flow 3.
    assert!(s.remove(
        0,
        &FlowKey {
            orig: tuple(1, 53, proto::UDP),
            zone: 0
        }
    ));
    pass(&mut s, 0, &m(3));
    assert_eq!(s.warm(&m(3), 0), i1, "slot reused");
    assert!(matches!(s.track_hinted(0, &m(1), 0, i1), Track::New(_)));
}

#[test]
fn ack_without_flow_is_invalid_and_not_inserted() {
    let mut s = shard(8);
    let m = meta(tuple(1, 2, proto::TCP), f::ACK, 1, 1);
    assert!(matches!(
        s.track(0, &m, 0),
        Track::Invalid(InvalidReason::TcpNotSyn)
    ));
    assert_eq!(s.len(), 0);
    assert_eq!(s.stats().invalid, 1);
}

#[test]
fn udp_two_states_and_timeouts() {
    let mut s = shard(8);
    let u = tuple(5353, 53, proto::UDP);
    let m = |t| PacketMeta {
        l3: L3Kind::Ipv4,
        ip_len: 60,
        tuple: t,
        ..Default::default()
    };
    assert_eq!(pass(&mut s, 0, &m(u)), CtState::New);
    let idx = s.lookup(&FlowKey { orig: u, zone: 0 }).unwrap();
    assert_eq!(s.flow_state(0, idx).unwrap().timeout_secs, 30);
    assert_eq!(pass(&mut s, 5, &m(u.inverse())), CtState::Established);
    let st = s.flow_state(5, idx).unwrap();
    assert_ne!(st.status & status::ASSURED, 0);
    assert_eq!(st.timeout_secs, 120);
    // Another zone is another flow.
    assert!(matches!(s.track(5, &m(u), 7), Track::New(_)));
}

#[test]
fn icmp_echo_pairs_and_errors_are_related() {
    let mut s = shard(8);
    let echo = Tuple::new(
        "192.0.2.1".parse().unwrap(),
        "198.51.100.2".parse().unwrap(),
        proto::ICMP,
        77,
        8 << 8,
    );
    let m = |t| PacketMeta {
        l3: L3Kind::Ipv4,
        ip_len: 84,
        tuple: t,
        ..Default::default()
    };
    assert_eq!(pass(&mut s, 0, &m(echo)), CtState::New);
    assert_eq!(pass(&mut s, 0, &m(echo.reply())), CtState::Established);
    // An echo reply nobody asked for is invalid.
    let stray = Tuple {
        src_port: 78,
        ..echo.reply()
    };
    assert_eq!(pass(&mut s, 0, &m(stray)), CtState::Invalid);
    // A port unreachable about a tracked UDP flow is related; about an
    // untracked one, invalid.
    let u = tuple(5353, 53, proto::UDP);
    pass(
        &mut s,
        0,
        &PacketMeta {
            l3: L3Kind::Ipv4,
            ip_len: 60,
            tuple: u,
            ..Default::default()
        },
    );
    let err = Tuple::new(
        "198.51.100.2".parse().unwrap(),
        "192.0.2.1".parse().unwrap(),
        proto::ICMP,
        0,
        3 << 8 | 3,
    );
    let e = PacketMeta {
        icmp_error: Some(u),
        ..m(err)
    };
    assert_eq!(s.track(0, &e, 0).ct_state(), CtState::Related);
    let e2 = PacketMeta {
        icmp_error: Some(tuple(1, 1, proto::UDP)),
        ..m(err)
    };
    assert_eq!(s.track(0, &e2, 0).ct_state(), CtState::Invalid);
}

#[test]
fn full_table_early_drops_unassured_then_refuses() {
    let mut s = shard(4);
    let m = |sp| PacketMeta {
        l3: L3Kind::Ipv4,
        ip_len: 60,
        tuple: tuple(sp, 53, proto::UDP),
        ..Default::default()
    };
    for sp in 0..4 {
        pass(&mut s, 0, &m(sp));
    }
    // All unassured: the fifth early-drops one.
    assert_eq!(pass(&mut s, 0, &m(100)), CtState::New);
    assert_eq!(s.len(), 4);
    assert_eq!(s.stats().early_drops, 1);
    // Make all assured: nothing can go, the next new flow is refused.
    let mut present = Vec::new();
    s.for_each(0, |st| present.push(st.key.orig));
    for t in present {
        let r = PacketMeta {
            tuple: t.inverse(),
            ..m(0)
        };
        assert_eq!(pass(&mut s, 0, &r), CtState::Established);
    }
    let Track::New(nf) = s.track(0, &m(200), 0) else {
        panic!("expected new")
    };
    assert_eq!(s.confirm(0, &nf, 1), Err(TableFull { capacity: 4 }));
    assert_eq!(s.stats().table_full, 1);
    assert_eq!(s.len(), 4);
}

#[test]
fn upsert_lookup_remove_and_extras() {
    let mut s = shard(8);
    let key = FlowKey {
        orig: tuple(40000, 80, proto::TCP),
        zone: 3,
    };
    let mut st = FlowState {
        key,
        tcp_state: TcpState::Established,
        status: status::SEEN_REPLY | status::ASSURED,
        timeout_secs: 300,
        mark: 9,
        wscale: [7, 7],
        counters: Default::default(),
        extras: Default::default(),
    };
    st.extras.reply = Some(Tuple::new(
        "198.51.100.2".parse().unwrap(),
        "203.0.113.5".parse().unwrap(),
        proto::TCP,
        80,
        61000,
    ));
    let idx = s.upsert(10, &st).unwrap();
    let got = s.flow_state(10, idx).unwrap();
    assert_eq!(got.mark, 9);
    assert_eq!(got.timeout_secs, 300);
    assert_eq!(got.status & status::CONFIRMED, status::CONFIRMED);
    assert_eq!(got.extras, st.extras);
    // A mid-stream segment of an imported flow is accepted.
    let m = PacketMeta {
        tcp: TcpFacts {
            flags: f::ACK,
            seq: 12345,
            ack: 999,
            window: 1000,
            ..Default::default()
        },
        ..meta(key.orig, 0, 0, 0)
    };
    assert!(matches!(s.track(10, &m, 3), Track::Established { .. }));
    assert!(s.remove(11, &key));
    assert!(!s.remove(11, &key));
    assert_eq!(s.len(), 0);
}

#[test]
fn deltas_carry_extras_and_imports_stay_quiet() {
    let mut s = shard(8);
    let mut st = FlowState {
        key: FlowKey {
            orig: tuple(40001, 443, proto::TCP),
            zone: 0,
        },
        tcp_state: TcpState::Established,
        status: status::SEEN_REPLY,
        timeout_secs: 300,
        mark: 0,
        wscale: [0, 0],
        counters: Default::default(),
        extras: Default::default(),
    };
    st.extras.reply = Some(Tuple::new(
        "198.51.100.2".parse().unwrap(),
        "203.0.113.5".parse().unwrap(),
        proto::TCP,
        443,
        61000,
    ));
    // An operator's upsert is replicated, with its NAT reply tuple.
    s.upsert(10, &st).unwrap();
    let d = s.ring().pop().expect("a delta");
    assert_eq!(d.kind, DeltaKind::Created);
    assert_eq!(d.state().extras, st.extras);
    // State from a peer is not: neither import nor its removal emits.
    let mut other = st.clone();
    other.key.orig = tuple(40002, 443, proto::TCP);
    s.import(10, &other).unwrap();
    assert!(s.remove_imported(11, &other.key));
    assert!(s.ring().pop().is_none());
    // Quiet mode does not stick: a later removal is replicated.
    assert!(s.remove(12, &st.key));
    assert_eq!(drain(&s), vec![DeltaKind::Destroyed]);
}

#[test]
fn bulk_upserts_count_refusals_and_replacing_a_translated_flow_drops_its_nat() {
    let mut s = shard(16);
    let nat_reply = Tuple::new(
        "198.51.100.2".parse().unwrap(),
        "203.0.113.5".parse().unwrap(),
        proto::TCP,
        443,
        61000,
    );
    let states: Vec<FlowState> = (0..20u16)
        .map(|p| {
            let mut st = FlowState::established_tcp(tuple(41000 + p, 443, proto::TCP), 300);
            if p == 0 {
                st.extras.reply = Some(nat_reply);
            }
            st
        })
        .collect();
    // From a peer: quiet, and what does not fit is refused and counted.
    let done = s.upsert_many(10, &states, false);
    assert!(done < states.len(), "the table is full before the end");
    assert_eq!(s.len(), done);
    assert!(s.ring().pop().is_none());
    // The translated flow's reply finds it.
    assert_eq!(s.nat_owner(&nat_reply, 0), Some(states[0].key));
    // The same flow again without its NAT: replaced, the reply index
    // entry gone with the extras, and as an operator's upsert replicated.
    let plain = FlowState::established_tcp(states[0].key.orig, 300);
    assert_eq!(s.upsert_many(11, std::slice::from_ref(&plain), true), 1);
    assert_eq!(s.nat_owner(&nat_reply, 0), None);
    assert_eq!(s.len(), done);
    let d = s.ring().pop().expect("a delta");
    assert_eq!((d.kind, d.extras), (DeltaKind::Updated, None));
    let got = s.export_from(11, 0, 64).0;
    let back = got.iter().find(|x| x.key == plain.key).expect("kept");
    assert!(back.extras.is_empty());
}

#[test]
fn export_walks_the_table_in_chunks() {
    let mut s = shard(64);
    for p in 0..20u16 {
        let st = FlowState {
            key: FlowKey {
                orig: tuple(1000 + p, 80, proto::UDP),
                zone: 0,
            },
            tcp_state: TcpState::None,
            status: 0,
            timeout_secs: 30,
            mark: 0,
            wscale: [0, 0],
            counters: Default::default(),
            extras: Default::default(),
        };
        s.import(1, &st).unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    let mut from = 0;
    let mut chunks = 0;
    loop {
        let (v, next) = s.export_from(1, from, 7);
        assert!(v.len() <= 7);
        chunks += 1;
        seen.extend(v.into_iter().map(|st| st.key.orig.src_port));
        match next {
            Some(n) => from = n,
            None => break,
        }
    }
    assert_eq!(seen.len(), 20);
    assert!(chunks >= 3);
}

#[test]
fn delta_ring_overflow_is_counted_and_marks_reexport() {
    let mut s = Shard::new(
        ConntrackConfig {
            capacity: 16,
            ..Default::default()
        },
        Instant::now(),
        DeltaRing::new(2),
    );
    for sp in 0..4 {
        pass(
            &mut s,
            0,
            &PacketMeta {
                l3: L3Kind::Ipv4,
                ip_len: 60,
                tuple: tuple(sp, 53, proto::UDP),
                ..Default::default()
            },
        );
    }
    assert_eq!(s.stats().deltas, 2);
    assert_eq!(s.stats().ring_full, 2);
    assert!(s.ring().needs_reexport());
}

#[test]
fn expiry_is_bounded_per_call_and_refresh_postpones() {
    let mut s = shard(1000);
    let m = |sp| PacketMeta {
        l3: L3Kind::Ipv4,
        ip_len: 60,
        tuple: tuple(sp, 53, proto::UDP),
        ..Default::default()
    };
    for sp in 0..500 {
        pass(&mut s, 0, &m(sp));
    }
    // Flow 0 refreshed at 20 lives to 50.
    pass(&mut s, 20, &m(0));
    assert_eq!(s.expire(31, 100), 100);
    assert_eq!(s.len(), 400);
    while s.expire(31, 100) > 0 {}
    assert_eq!(s.len(), 1);
    s.expire(50, 100);
    assert_eq!(s.len(), 0);
}

#[test]
fn imported_timeouts_are_cut_to_the_longest_configured_one() {
    let mut s = shard(8);
    let longest = Timeouts::default().longest();
    assert_eq!(
        longest,
        crate::conntrack::tcp::TcpTimeouts::default().established
    );
    let st = |sport: u16, timeout_secs: u32| FlowState {
        key: FlowKey {
            orig: tuple(sport, 443, proto::TCP),
            zone: 0,
        },
        tcp_state: TcpState::Established,
        status: status::SEEN_REPLY,
        timeout_secs,
        mark: 0,
        wscale: [0, 0],
        counters: Default::default(),
        extras: Default::default(),
    };
    // A peer's TIMEOUT 0xffffffff (136 years) and an operator's too.
    s.import(10, &st(40001, u32::MAX)).unwrap();
    s.upsert(10, &st(40002, longest + 1)).unwrap();
    // A sane one is kept as it is.
    s.import(10, &st(40003, 300)).unwrap();
    assert_eq!(s.stats().timeouts_clamped, 2);
    let (v, _) = s.export_from(10, 0, 8);
    let by_port = |p: u16| {
        v.iter()
            .find(|f| f.key.orig.src_port == p)
            .map(|f| f.timeout_secs)
            .unwrap()
    };
    assert_eq!(by_port(40001), longest);
    assert_eq!(by_port(40002), longest);
    assert_eq!(by_port(40003), 300);
}

fn drain_full(s: &Shard) -> Vec<(DeltaKind, u16, TcpState)> {
    std::iter::from_fn(|| s.ring().pop())
        .map(|d| (d.kind, d.key.orig.src_port, d.tcp_state))
        .collect()
}

#[test]
fn batching_merges_a_flows_changes_into_its_newest_state_until_the_flush() {
    let mut s = shard(64);
    s.set_batching(true);
    let (a, b) = (tuple(40000, 80, proto::TCP), tuple(40001, 80, proto::TCP));
    // Flow a's handshake and flow b's SYN in one iteration.
    pass(&mut s, 0, &meta(a, f::SYN, 100, 0));
    pass(&mut s, 0, &meta(b, f::SYN, 300, 0));
    pass(&mut s, 0, &meta(a.inverse(), f::SYN | f::ACK, 500, 101));
    pass(&mut s, 0, &meta(a, f::ACK, 101, 501));
    assert!(
        drain(&s).is_empty(),
        "nothing reaches the ring before the flush"
    );
    assert_eq!((s.deltas_waiting(), s.delta_events()), (2, 4));
    s.flush_deltas();
    // a keeps its place before b, as one NEW with its newest state.
    assert_eq!(
        drain_full(&s),
        vec![
            (DeltaKind::Created, 40000, TcpState::Established),
            (DeltaKind::Created, 40001, TcpState::SynSent),
        ]
    );
    assert_eq!((s.stats().deltas, s.stats().deltas_merged), (2, 2));
    // Next iteration: b's SYN/ACK, then b removed: the update merges into
    // one destroyed delta.
    pass(&mut s, 1, &meta(b.inverse(), f::SYN | f::ACK, 700, 301));
    assert!(s.remove(1, &FlowKey { orig: b, zone: 0 }));
    s.flush_deltas();
    assert_eq!(
        drain_full(&s),
        vec![(DeltaKind::Destroyed, 40001, TcpState::SynRecv)]
    );
    assert_eq!(s.stats().deltas_merged, 3);
}

#[test]
fn batching_sends_a_flow_created_and_destroyed_in_one_iteration_and_its_slots_next_flow() {
    let mut s = shard(1);
    s.set_batching(true);
    let (a, b) = (tuple(40000, 80, proto::TCP), tuple(40001, 80, proto::TCP));
    pass(&mut s, 0, &meta(a, f::SYN, 100, 0));
    assert!(s.remove(0, &FlowKey { orig: a, zone: 0 }));
    // b takes a's slot (capacity 1); its changes are its own.
    pass(&mut s, 0, &meta(b, f::SYN, 300, 0));
    pass(&mut s, 0, &meta(b.inverse(), f::SYN | f::ACK, 700, 301));
    s.flush_deltas();
    assert_eq!(
        drain_full(&s),
        vec![
            (DeltaKind::Created, 40000, TcpState::SynSent),
            (DeltaKind::Destroyed, 40000, TcpState::SynSent),
            (DeltaKind::Created, 40001, TcpState::SynRecv),
        ]
    );
    assert_eq!(s.stats().deltas_merged, 1);
}

#[test]
fn a_full_batch_flushes_itself_and_turning_batching_off_flushes_the_rest() {
    let mut s = shard(1024);
    s.set_batching(true);
    let n = batch::BATCH_MAX as u16 * 2 + 5;
    for p in 0..n {
        pass(
            &mut s,
            0,
            &meta(tuple(10000 + p, 80, proto::TCP), f::SYN, 1, 0),
        );
        assert!(s.deltas_waiting() <= batch::BATCH_MAX);
    }
    assert_eq!(s.ring().len(), 2 * batch::BATCH_MAX);
    s.set_batching(false);
    assert_eq!(s.deltas_waiting(), 0);
    let got = drain_full(&s);
    assert_eq!(got.len(), usize::from(n));
    assert!(got.iter().map(|g| g.1).eq(10000..10000 + n), "in order");
    // Off: each change goes at once.
    pass(&mut s, 0, &meta(tuple(9, 80, proto::TCP), f::SYN, 1, 0));
    assert_eq!(drain(&s), vec![DeltaKind::Created]);
}

/// The NAT side tables: a translated reply is hinted by the warm-up and
/// found; a removed flow's slab slot, reused by a flow with another
/// translation, answers to the new reply tuple only; the count follows.
#[test]
fn translated_replies_are_hinted_and_a_reused_slot_forgets_the_old_reply() {
    let mut s = shard(64);
    assert_eq!(s.nat_len(), 0);
    let plain_bytes = s.bytes_per_flow();
    let reply = |port: u16| {
        Tuple::new(
            "198.51.100.2".parse().unwrap(),
            "203.0.113.5".parse().unwrap(),
            proto::TCP,
            443,
            port,
        )
    };
    let translated = |sport: u16, rport: u16| {
        let mut st = FlowState::established_tcp(tuple(sport, 443, proto::TCP), 300);
        st.extras.reply = Some(reply(rport));
        st
    };
    let a = translated(42000, 61000);
    let ia = s.upsert(10, &a).unwrap();
    assert_eq!(s.nat_len(), 1);
    assert!(
        s.bytes_per_flow() > plain_bytes,
        "the NAT tables are counted"
    );
    let m = meta(reply(61000), f::ACK, 1, 1);
    assert_eq!(s.warm(&m, 0), ia, "the reply's hint is the flow");
    assert!(matches!(s.track(10, &m, 0), Track::Established { .. }));
    assert!(s.remove(11, &a.key));
    assert_eq!(s.nat_len(), 0);
    assert_eq!(s.nat_owner(&reply(61000), 0), None);
    // The freed slot goes to the next flow, translated otherwise.
    let b = translated(42001, 61001);
    let ib = s.upsert(12, &b).unwrap();
    assert_eq!(ib, ia, "the slot is reused");
    assert_eq!(s.nat_owner(&reply(61000), 0), None);
    assert_eq!(s.nat_owner(&reply(61001), 0), Some(b.key));
    assert_eq!(s.nat_reply(ib), Some(&reply(61001)));
    assert_eq!(s.warm(&meta(reply(61000), f::ACK, 1, 1), 0), u32::MAX);
    // Re-translated in place: only the newest reply answers.
    s.upsert(13, &translated(42001, 61002)).unwrap();
    assert_eq!(s.nat_len(), 1);
    assert_eq!(s.nat_owner(&reply(61001), 0), None);
    assert_eq!(s.nat_owner(&reply(61002), 0), Some(b.key));
}

/// `reply_taken`'s one probe per index answers as the two full lookups
/// it replaces (of the tuple and of its answer), for tuples that are
/// originals, replies, translated replies, their answers and unused ones.
#[test]
fn reply_taken_answers_as_two_lookups() {
    let mut s = shard(256);
    let public = |p: u16| {
        Tuple::new(
            "198.51.100.2".parse().unwrap(),
            "203.0.113.5".parse().unwrap(),
            proto::TCP,
            443,
            p,
        )
    };
    for p in 0..64u16 {
        let mut st = FlowState::established_tcp(tuple(43000 + p, 443, proto::TCP), 300);
        if p % 2 == 0 {
            st.extras.reply = Some(public(61000 + p));
        }
        s.upsert(10, &st).unwrap();
    }
    let mut probes = Vec::new();
    for p in 0..80u16 {
        let o = tuple(43000 + p, 443, proto::TCP);
        probes.extend([o, o.reply(), public(61000 + p), public(61000 + p).reply()]);
    }
    let mut taken = 0;
    for t in &probes {
        for zone in [0, 1] {
            let two = s.find(t, zone).is_some() || s.find(&t.reply(), zone).is_some();
            assert_eq!(s.reply_taken(t, zone), two, "{t:?} zone {zone}");
            taken += usize::from(two);
        }
    }
    // 64 flows' originals and replies, 32 translated replies and their
    // answers; none in zone 1.
    assert_eq!(taken, 64 * 2 + 32 * 2);
}

#[test]
fn free_slots_hand_out_freed_ones_last_first_then_unused_ones_lowest_first() {
    use super::entry::{empty_entry, FreeSlots, Slab};
    let mut slab = Slab(crate::huge::HugeSlice::new(4, empty_entry()));
    let mut f = FreeSlots::new(4);
    assert_eq!(f.len(), 4);
    assert_eq!(f.pop(&slab), Some(0));
    assert_eq!(f.pop(&slab), Some(1));
    assert_eq!(f.pop(&slab), Some(2));
    f.push(&mut slab, 0);
    f.push(&mut slab, 2);
    assert_eq!(f.len(), 3);
    assert_eq!(f.pop(&slab), Some(2));
    assert_eq!(f.pop(&slab), Some(0));
    assert_eq!(f.pop(&slab), Some(3));
    assert!(f.is_empty());
    assert_eq!(f.pop(&slab), None);
    f.push(&mut slab, 1);
    assert_eq!((f.len(), f.pop(&slab), f.pop(&slab)), (1, Some(1), None));
}

#[test]
fn a_table_filled_emptied_and_filled_again_reuses_every_slot() {
    let mut s = shard(64);
    let cap = 64u16;
    let m = |p: u16| meta(tuple(10_000 + p, 53, proto::UDP), 0, 0, 0);
    for round in 0..3 {
        for p in 0..cap {
            assert_eq!(
                pass(&mut s, 1, &m(p)),
                CtState::New,
                "round {round}, flow {p}"
            );
        }
        assert_eq!(s.len(), 64);
        for p in 0..cap {
            let key = FlowKey {
                orig: tuple(10_000 + p, 53, proto::UDP),
                zone: 0,
            };
            let idx = s.lookup(&key).expect("tracked");
            assert!(idx < 64);
            assert!(s.remove(2, &key), "round {round}, flow {p}");
        }
        assert!(s.is_empty());
    }
}
