//! A simple, exact test codec (not conntrackd's format).
//!
//! Message: `len: u16 BE` (whole message) | `type: u8` | `flags: u8`
//! (0x01 HELLO, 0x02 HELLO_BACK) | `seq: u32 BE` | body. Types: 0 NEW,
//! 1 UPDATE, 2 DESTROY (body: the flow, 53 bytes), 3 ACK, 4 NACK (body: from,
//! to as u32 BE), 5 RESYNC, 6 ALIVE (no body).
#![allow(dead_code, unreachable_pub)]

use ftfw_dataplane::flow::{FlowKey, FlowState, TcpState, Tuple};
use ftfw_sync::engine::{Body, Codec, CodecError, FlowKind, Msg};

/// The flow body's size.
pub const FLOW_LEN: usize = 53;

/// The test codec.
#[derive(Default)]
pub struct TestCodec;

fn body_len(b: &Body) -> usize {
    match b {
        Body::Flow { .. } => FLOW_LEN,
        Body::Ack { .. } | Body::Nack { .. } => 8,
        Body::Resync | Body::Alive | Body::Expect { .. } => 0,
    }
}

/// The fields the codec carries, as a comparable value.
pub fn carried(st: &FlowState) -> (FlowKey, TcpState, u32, u32, u32) {
    (st.key, st.tcp_state, st.status, st.timeout_secs, st.mark)
}

/// A flow state with only the carried fields set.
pub fn flow(key: FlowKey, tcp: TcpState, status: u32, timeout: u32, mark: u32) -> FlowState {
    FlowState {
        key,
        tcp_state: tcp,
        status,
        timeout_secs: timeout,
        mark,
        wscale: [0; 2],
        counters: Default::default(),
        extras: Default::default(),
    }
}

impl Codec for TestCodec {
    fn encode(&mut self, msg: &Msg, out: &mut Vec<u8>) -> Result<(), CodecError> {
        if matches!(msg.body, Body::Expect { .. }) {
            // Expectations are the wire codec's (tested with it).
            return Err(CodecError::Unsupported);
        }
        let len = u16::try_from(8 + body_len(&msg.body)).map_err(|_| CodecError::Unsupported)?;
        let ty: u8 = match &msg.body {
            Body::Flow { kind, .. } => match kind {
                FlowKind::New => 0,
                FlowKind::Update => 1,
                FlowKind::Destroy => 2,
            },
            Body::Ack { .. } => 3,
            Body::Nack { .. } => 4,
            Body::Resync => 5,
            Body::Alive | Body::Expect { .. } => 6,
        };
        out.extend_from_slice(&len.to_be_bytes());
        out.push(ty);
        out.push(u8::from(msg.hello) | (u8::from(msg.hello_back) << 1));
        out.extend_from_slice(&msg.seq.to_be_bytes());
        match &msg.body {
            Body::Flow { state, .. } => {
                let t = &state.key.orig;
                out.extend_from_slice(&t.src);
                out.extend_from_slice(&t.dst);
                out.extend_from_slice(&t.src_port.to_be_bytes());
                out.extend_from_slice(&t.dst_port.to_be_bytes());
                out.push(t.proto);
                out.push(u8::from(t.v6));
                out.extend_from_slice(&state.key.zone.to_be_bytes());
                out.push(state.tcp_state as u8);
                out.extend_from_slice(&state.status.to_be_bytes());
                out.extend_from_slice(&state.timeout_secs.to_be_bytes());
                out.extend_from_slice(&state.mark.to_be_bytes());
            }
            Body::Ack { from, to } | Body::Nack { from, to } => {
                out.extend_from_slice(&from.to_be_bytes());
                out.extend_from_slice(&to.to_be_bytes());
            }
            Body::Resync | Body::Alive | Body::Expect { .. } => {}
        }
        Ok(())
    }

    fn encoded_len(&mut self, msg: &Msg) -> usize {
        8 + body_len(&msg.body)
    }

    fn decode(&mut self, d: &[u8], f: &mut dyn FnMut(Result<Msg, CodecError>)) {
        let mut rest = d;
        while !rest.is_empty() {
            let Some(h) = rest.get(..8) else {
                f(Err(CodecError::Truncated));
                return;
            };
            let len = usize::from(u16::from_be_bytes([h[0], h[1]]));
            if len < 8 || len > rest.len() {
                f(Err(CodecError::Malformed));
                return;
            }
            let (m, next) = rest.split_at(len);
            rest = next;
            f(parse(m));
        }
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn parse(m: &[u8]) -> Result<Msg, CodecError> {
    let ty = m[2];
    let flags = m[3];
    if flags & !3 != 0 {
        return Err(CodecError::Malformed);
    }
    let seq = be32(m, 4);
    let hello = flags & 1 != 0;
    let hello_back = flags & 2 != 0;
    let b = &m[8..];
    let body = match ty {
        0..=2 => {
            let bad = CodecError::BadPayload {
                seq,
                hello,
                hello_back,
            };
            if b.len() != FLOW_LEN || b[37] > 1 {
                return Err(bad);
            }
            let tcp = TcpState::from_u8(b[40]).ok_or(bad)?;
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&b[0..16]);
            dst.copy_from_slice(&b[16..32]);
            let orig = Tuple {
                src,
                dst,
                src_port: u16::from_be_bytes([b[32], b[33]]),
                dst_port: u16::from_be_bytes([b[34], b[35]]),
                proto: b[36],
                v6: b[37] == 1,
            };
            let zone = u16::from_be_bytes([b[38], b[39]]);
            let kind = match ty {
                0 => FlowKind::New,
                1 => FlowKind::Update,
                _ => FlowKind::Destroy,
            };
            Body::Flow {
                kind,
                state: flow(
                    FlowKey { orig, zone },
                    tcp,
                    be32(b, 41),
                    be32(b, 45),
                    be32(b, 49),
                ),
            }
        }
        3 | 4 if b.len() == 8 => {
            let (from, to) = (be32(b, 0), be32(b, 4));
            if ty == 3 {
                Body::Ack { from, to }
            } else {
                Body::Nack { from, to }
            }
        }
        5 if b.is_empty() => Body::Resync,
        6 if b.is_empty() => Body::Alive,
        _ => return Err(CodecError::Malformed),
    };
    Ok(Msg {
        seq,
        hello,
        hello_back,
        body,
    })
}
