//! Property tests: the datagram decoder never panics, and FlowState ->
//! encode -> decode -> FlowState is the identity for the flows the wire
//! format can carry.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ftfw_dataplane::flow::{
    proto, status, FlowExtras, FlowKey, FlowState, SeqAdj, TcpState, Tuple,
};
use ftfw_sync::codec::WireCodec;
use ftfw_sync::engine::{Codec, FlowKind, Msg};
use ftfw_sync::wire::{
    decode_datagram, encode_ct, encode_flow, flow_msg_len, Body, CtAttrs, DatagramBuilder,
    DecodeStats, EncodeOptions, MarkPolicy, MsgType,
};
use proptest::prelude::*;

fn addr(v6: bool) -> impl Strategy<Value = IpAddr> {
    if v6 {
        any::<[u8; 16]>()
            .prop_map(|b| IpAddr::V6(Ipv6Addr::from(b)))
            .boxed()
    } else {
        any::<[u8; 4]>()
            .prop_map(|b| IpAddr::V4(Ipv4Addr::from(b)))
            .boxed()
    }
}

#[derive(Debug, Clone)]
struct Gen {
    flow: FlowState,
}

fn flow_strategy() -> impl Strategy<Value = Gen> {
    (any::<bool>(), 0u8..5).prop_flat_map(|(v6, kind)| {
        let p = match (kind, v6) {
            (0, _) => proto::TCP,
            (1, _) => proto::UDP,
            (3, _) => proto::SCTP,
            (4, _) => proto::DCCP,
            (_, false) => proto::ICMP,
            (_, true) => proto::ICMPV6,
        };
        (
            addr(v6),
            addr(v6),
            any::<u16>(),
            any::<u16>(),
            0u8..10,
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            any::<u16>(),
            any::<[u8; 2]>(),
            (
                proptest::option::of((addr(v6), any::<u16>())),
                proptest::option::of((addr(v6), any::<u16>())),
            ),
            (
                proptest::option::of(any::<[u32; 3]>()),
                proptest::option::of(any::<[u32; 6]>()),
                proptest::option::of(any::<[u32; 4]>()),
                proptest::option::of("[a-z0-9-]{1,11}"),
                (
                    any::<u8>(),
                    any::<u32>(),
                    any::<u32>(),
                    any::<u8>(),
                    any::<bool>(),
                ),
                proptest::option::of((
                    addr(v6),
                    addr(v6),
                    any::<bool>(),
                    any::<u16>(),
                    any::<u16>(),
                )),
            ),
        )
            .prop_map(
                move |(src, dst, sp, dp, st, stbits, timeout, mark, zone, ws, nat, ext)| {
                    let orig = Tuple::new(src, dst, p, sp, dp);
                    let tcp = p == proto::TCP;
                    let mut status_v = u32::from(stbits);
                    let mut r = orig.reply();
                    if !orig.is_icmp() {
                        if let Some((a, port)) = nat.0 {
                            let t = Tuple::new(a, a, p, 0, 0);
                            r.dst = t.src;
                            r.dst_port = port;
                            status_v |= status::SRC_NAT_DONE;
                        }
                        if let Some((a, port)) = nat.1 {
                            let t = Tuple::new(a, a, p, 0, 0);
                            r.src = t.src;
                            r.src_port = port;
                            status_v |= status::DST_NAT_DONE;
                        }
                    }
                    let (synproxy, seq, labels, helper, (pst, vo, vr, role, has_pst), master) = ext;
                    let master = master.map(|(ms, md, mtcp, msp, mdp)| {
                        Tuple::new(ms, md, if mtcp { proto::TCP } else { proto::UDP }, msp, mdp)
                    });
                    let flow = FlowState {
                        key: FlowKey { orig, zone },
                        tcp_state: if tcp {
                            TcpState::from_u8(st).unwrap_or_default()
                        } else {
                            TcpState::None
                        },
                        status: status_v,
                        timeout_secs: timeout,
                        mark,
                        wscale: if tcp { ws } else { [0, 0] },
                        counters: Default::default(),
                        extras: FlowExtras {
                            reply: (r != orig.reply()).then_some(r),
                            master,
                            seq_adj: seq.map(|w| SeqAdj {
                                orig: [w[0], w[1], w[2]],
                                reply: [w[3], w[4], w[5]],
                            }),
                            helper,
                            labels: labels.filter(|l| l.iter().any(|&w| w != 0)),
                            synproxy,
                            sctp: (p == proto::SCTP && has_pst).then_some((pst, vo, vr)),
                            dccp: (p == proto::DCCP && has_pst).then_some((pst, role)),
                        }
                        .into(),
                    };
                    Gen { flow }
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The sender's direct encoder writes exactly what the `CtAttrs` path
    /// writes, and every length the codec reports is the length written.
    #[test]
    fn direct_flow_encoding_equals_the_ctattrs_path(
        g in flow_strategy(),
        wt in any::<bool>(),
        ct in any::<bool>(),
        mark in 0u8..3,
        seq in any::<u32>(),
        hello in any::<bool>(),
        hello_back in any::<bool>(),
    ) {
        let opts = EncodeOptions {
            tcp_window_tracking: wt,
            commit_timeout: ct,
            mark: [MarkPolicy::NonZero, MarkPolicy::Always, MarkPolicy::Never][usize::from(mark)],
        };
        let mut want = Vec::new();
        encode_ct(&mut want, MsgType::CtUpd, 0x20, seq, &CtAttrs::from_flow(&g.flow, &opts)).unwrap();
        let mut got = Vec::new();
        encode_flow(&mut got, MsgType::CtUpd, 0x20, seq, &g.flow, &opts).unwrap();
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(flow_msg_len(&g.flow, &opts), want.len());
        let mut c = WireCodec::new(opts);
        let msg = Msg { seq, hello, hello_back, body: ftfw_sync::engine::Body::Flow { kind: FlowKind::Destroy, state: g.flow.clone() } };
        let mut a = Vec::new();
        c.encode(&msg, &mut a).unwrap();
        let mut b = vec![1, 2, 3];
        c.encode_flow(seq, hello, hello_back, FlowKind::Destroy, &g.flow, &mut b).unwrap();
        prop_assert_eq!(&b[3..], &a[..]);
        prop_assert_eq!(c.encoded_len(&msg), a.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut st = DecodeStats::default();
        let v = decode_datagram(&data, &mut st);
        // Every framed message is either accepted or counted once.
        let errs = st.bad_version + st.malformed_header + st.bad_attr;
        prop_assert_eq!(st.messages, st.ok + errs);
        prop_assert!(v.len() as u64 >= st.ok);
    }

    #[test]
    fn mutated_valid_datagrams_never_panic(
        g in flow_strategy(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut d = Vec::new();
        encode_flow(&mut d, MsgType::CtNew, 0, 1, &g.flow, &EncodeOptions::default()).unwrap();
        for (i, b) in flips {
            let n = d.len();
            d[i % n] ^= b;
        }
        let mut st = DecodeStats::default();
        for m in decode_datagram(&d, &mut st).into_iter().flatten() {
            if let Body::Ct(a) = m.body {
                let _ = a.to_flow();
            }
        }
    }

    #[test]
    fn flow_roundtrip(g in flow_strategy(), seq in any::<u32>()) {
        let opt = EncodeOptions { tcp_window_tracking: true, ..EncodeOptions::default() };
        let mut d = Vec::new();
        encode_flow(&mut d, MsgType::CtUpd, 0, seq, &g.flow, &opt).unwrap();
        prop_assert_eq!(d.len() % 4, 0);
        let mut st = DecodeStats::default();
        let v = decode_datagram(&d, &mut st);
        prop_assert_eq!(v.len(), 1);
        let m = v.into_iter().next().unwrap().unwrap();
        prop_assert_eq!(m.header.seq, seq);
        let Body::Ct(a) = m.body else { panic!("not CT") };
        prop_assert!(a.order.iter().all(|&i| i < 33));
        prop_assert_eq!(a.to_flow().unwrap(), g.flow);
    }

    #[test]
    fn batching_keeps_messages_whole(
        gs in proptest::collection::vec(flow_strategy(), 1..40),
        mtu in 200usize..1500,
    ) {
        let mut b = DatagramBuilder::new(mtu);
        let mut grams = Vec::new();
        for (i, g) in gs.iter().enumerate() {
            let mut m = Vec::new();
            encode_flow(&mut m, MsgType::CtNew, 0, u32::try_from(i).unwrap(), &g.flow, &EncodeOptions::default()).unwrap();
            grams.extend(b.push(&m));
        }
        grams.extend(b.flush());
        let mut seqs = Vec::new();
        for d in &grams {
            let mut st = DecodeStats::default();
            let v = decode_datagram(d, &mut st);
            prop_assert!(v.len() == 1 || d.len() < mtu - 28);
            for m in v {
                seqs.push(m.unwrap().header.seq);
            }
        }
        prop_assert_eq!(seqs, (0..u32::try_from(gs.len()).unwrap()).collect::<Vec<_>>());
    }
}
