//! Golden bytes (E1 of ftfw-wire.md, accepted by conntrackd 1.4.7) and the
//! four smoltcp-style tests: deconstruct, construct, parse, emit. Every
//! vector file is covered by `tests/vectors.rs`.

use std::net::IpAddr;

use ftfw_dataplane::flow::{proto, FlowKey, FlowState, TcpState, Tuple};

use super::{
    decode_datagram, encode_ct, encode_flow, Body, CtAttrs, DecodeStats, EncodeOptions, Header,
    MarkPolicy, MsgType,
};

const E1: [u8; 68] = [
    0x10, 0x00, 0x00, 0x44, 0x00, 0x00, 0x03, 0xe8, 0x00, 0x0c, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x01,
    0x0a, 0x00, 0x01, 0x01, 0x00, 0x08, 0x00, 0x05, 0x00, 0x00, 0x00, 0x0e, 0x00, 0x05, 0x00, 0x02,
    0x06, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x03, 0x9c, 0x40, 0x00, 0x50, 0x00, 0x05, 0x00, 0x04,
    0x03, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x06, 0x00, 0x00, 0x01, 0x2c, 0x00, 0x08, 0x00, 0x07,
    0x00, 0x00, 0x00, 0x00,
];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

fn e1_flow() -> FlowState {
    FlowState {
        key: FlowKey {
            orig: Tuple::new(ip("10.0.0.1"), ip("10.0.1.1"), proto::TCP, 40000, 80),
            zone: 0,
        },
        tcp_state: TcpState::Established,
        status: 0x0e,
        timeout_secs: 300,
        mark: 0,
        wscale: [0, 0],
        counters: Default::default(),
        extras: Default::default(),
    }
}

fn e1_attrs() -> CtAttrs {
    CtAttrs {
        ipv4: Some(([10, 0, 0, 1], [10, 0, 1, 1])),
        status: Some(0x0e),
        l4proto: Some(6),
        port: Some((40000, 80)),
        tcp_state: Some(3),
        timeout: Some(300),
        mark: Some(0),
        order: vec![0, 5, 2, 3, 4, 6, 7],
        ..CtAttrs::default()
    }
}

const ALWAYS: EncodeOptions = EncodeOptions {
    tcp_window_tracking: false,
    commit_timeout: false,
    mark: MarkPolicy::Always,
};

#[test]
fn deconstruct() {
    let h = Header::parse(&E1).unwrap();
    assert_eq!(
        (h.version, h.ty, h.flags, h.len, h.seq),
        (1, 0, 0, 68, 1000)
    );
    assert_eq!(CtAttrs::parse(&E1).unwrap(), e1_attrs());
}

#[test]
fn construct() {
    let mut out = Vec::new();
    encode_ct(&mut out, MsgType::CtNew, 0, 1000, &e1_attrs()).unwrap();
    assert_eq!(out, E1);
}

#[test]
fn parse() {
    let mut st = DecodeStats::default();
    let v = decode_datagram(&E1, &mut st);
    let Some(Ok(m)) = v.first() else {
        panic!("{v:?}")
    };
    let Body::Ct(a) = &m.body else { panic!() };
    assert_eq!(a.to_flow().unwrap(), e1_flow());
    assert_eq!((st.messages, st.ok), (1, 1));
}

#[test]
fn emit() {
    let mut out = Vec::new();
    encode_flow(&mut out, MsgType::CtNew, 0, 1000, &e1_flow(), &ALWAYS).unwrap();
    assert_eq!(out, E1);
    // Default policy leaves a zero mark out.
    let mut out = Vec::new();
    encode_flow(
        &mut out,
        MsgType::CtNew,
        0,
        1000,
        &e1_flow(),
        &EncodeOptions::default(),
    )
    .unwrap();
    assert_eq!(out.len(), 60);
}
