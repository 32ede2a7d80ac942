//! [`WireCodec`]: the engine's [`Codec`] over the conntrackd 1.4.7 wire
//! format, so an ftfw node and conntrackd can replicate to each other.
//!
//! Mapping: flow messages are CT_NEW / CT_UPD / CT_DEL with the attributes
//! conntrackd sends ([`EncodeOptions`] picks window scales, TIMEOUT and
//! MARK); ACK, NACK, RESYNC and ALIVE are CTL messages; HELLO and HELLO_BACK
//! ride as flag bits. A message whose header is fine but whose payload is
//! not (a bad attribute, an expectation ftfw cannot hold: an unknown helper,
//! a partial mask) is reported as [`CodecError::BadPayload`] so the engine
//! acknowledges and drops it, as conntrackd does. Expectation messages
//! (EXP_NEW / EXP_UPD / EXP_DEL) map to [`Body::Expect`] both ways
//! (`wire::exp_state`); whether they are used is the driver's choice
//! (`[sync] expectations`).

use ftfw_dataplane::flow::FlowState;

use crate::engine::{Body, Codec, CodecError, FlowKind, Msg};
use crate::wire::datagram::{self, DecodeStats, MessageError, Walk};
use crate::wire::exp_state::{exp_attrs, expectation_of};
use crate::wire::{
    flags, ControlMsg, CtAttrs, EncodeOptions, ExpAttrs, Header, MsgType, WireError,
};

/// The conntrackd-compatible codec.
#[derive(Debug, Default)]
pub struct WireCodec {
    /// What flow messages carry.
    pub opts: EncodeOptions,
    /// Decoder counters (bad version, malformed header, bad attribute, ...).
    pub stats: DecodeStats,
}

impl WireCodec {
    /// A codec with these encode options.
    pub fn new(opts: EncodeOptions) -> WireCodec {
        WireCodec {
            opts,
            stats: DecodeStats::default(),
        }
    }
}

fn hello_bits(m: &Msg) -> u8 {
    (if m.hello { flags::HELLO } else { 0 }) | (if m.hello_back { flags::HELLO_BACK } else { 0 })
}

fn msg_type(kind: FlowKind) -> MsgType {
    match kind {
        FlowKind::New => MsgType::CtNew,
        FlowKind::Update => MsgType::CtUpd,
        FlowKind::Destroy => MsgType::CtDel,
    }
}

fn exp_type(kind: FlowKind) -> MsgType {
    match kind {
        FlowKind::New => MsgType::ExpNew,
        FlowKind::Update => MsgType::ExpUpd,
        FlowKind::Destroy => MsgType::ExpDel,
    }
}

fn control_of(body: &Body) -> Option<ControlMsg> {
    Some(match *body {
        Body::Ack { from, to } => ControlMsg::Ack { from, to },
        Body::Nack { from, to } => ControlMsg::Nack { from, to },
        Body::Resync => ControlMsg::Resync { from: 0, to: 0 },
        Body::Alive => ControlMsg::Alive,
        Body::Flow { .. } | Body::Expect { .. } => return None,
    })
}

fn payload_error(h: &Header) -> CodecError {
    CodecError::BadPayload {
        seq: h.seq,
        hello: h.hello(),
        hello_back: h.hello_back(),
    }
}

impl Codec for WireCodec {
    fn encode(&mut self, msg: &Msg, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let bits = hello_bits(msg);
        match &msg.body {
            Body::Flow { kind, state } => {
                datagram::encode_flow(out, msg_type(*kind), bits, msg.seq, state, &self.opts)
                    .map_err(|_| CodecError::Unsupported)
            }
            Body::Expect { kind, exp } => {
                let attrs = exp_attrs(exp, exp.expires);
                datagram::encode_exp(out, exp_type(*kind), bits, msg.seq, &attrs)
                    .map_err(|_| CodecError::Unsupported)
            }
            body => {
                let c = control_of(body).ok_or(CodecError::Unsupported)?;
                datagram::encode_control(out, &c, bits, msg.seq);
                Ok(())
            }
        }
    }

    fn encoded_len(&mut self, msg: &Msg) -> usize {
        match &msg.body {
            Body::Flow { state, .. } => {
                let n = datagram::flow_msg_len(state, &self.opts);
                // encode() refuses what does not fit the 16-bit length.
                if n > usize::from(u16::MAX) {
                    0
                } else {
                    n
                }
            }
            Body::Expect { .. } => {
                let mut out = Vec::new();
                self.encode(msg, &mut out).map_or(0, |()| out.len())
            }
            body => control_of(body).map_or(0, |c| c.wire_len()),
        }
    }

    fn encode_flow(
        &mut self,
        seq: u32,
        hello: bool,
        hello_back: bool,
        kind: FlowKind,
        state: &FlowState,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        let bits = (if hello { flags::HELLO } else { 0 })
            | (if hello_back { flags::HELLO_BACK } else { 0 });
        datagram::encode_flow(out, msg_type(kind), bits, seq, state, &self.opts)
            .map_err(|_| CodecError::Unsupported)
    }

    /// Allocates nothing for flow and control messages: the datagram is
    /// walked with a visitor and CT attributes are parsed without their
    /// order (only HELPER_NAME and LABELS payloads are copied).
    fn decode(&mut self, datagram: &[u8], f: &mut dyn FnMut(Result<Msg, CodecError>)) {
        datagram::walk(datagram, &mut self.stats, |item| match item {
            Walk::Msg { header, msg, .. } => decode_one(header, msg, f),
            Walk::Err(e) => {
                f(Err(codec_error(&e)));
                Ok(0)
            }
        });
    }
}

/// The engine's error for a rejected message.
fn codec_error(e: &MessageError) -> CodecError {
    match (e.kind, &e.header) {
        (WireError::BadVersion { .. }, _) => CodecError::BadVersion,
        (WireError::Truncated { .. } | WireError::BadSize { .. }, _) => CodecError::Truncated,
        (
            WireError::UnknownType { .. }
            | WireError::DataFlags { .. }
            | WireError::NoControlFlag { .. }
            | WireError::BadRange { .. },
            _,
        ) => CodecError::Malformed,
        (_, Some(h)) => payload_error(h),
        (_, None) => CodecError::Malformed,
    }
}

/// Decodes one framed message for [`WireCodec::decode`] and reports it to
/// `f`: the same checks and counts as [`datagram::decode_datagram`], but a
/// CT message goes straight to a `FlowState`, without building
/// [`CtAttrs::order`], so nothing is allocated (only HELPER_NAME and LABELS
/// payloads are copied). Returns the unknown attributes skipped, or the
/// error for the walk to count and report.
fn decode_one(
    header: Header,
    msg: &[u8],
    f: &mut dyn FnMut(Result<Msg, CodecError>),
) -> Result<usize, WireError> {
    let ty = header.validate()?;
    let (seq, hello, hello_back) = (header.seq, header.hello(), header.hello_back());
    let (body, unknown) = match ty {
        MsgType::Ctl => {
            let body = match ControlMsg::parse(header.flags, msg)? {
                ControlMsg::Ack { from, to } => Body::Ack { from, to },
                ControlMsg::Nack { from, to } => Body::Nack { from, to },
                ControlMsg::Resync { .. } => Body::Resync,
                ControlMsg::Alive => Body::Alive,
            };
            (body, 0)
        }
        t if t.is_ct() => {
            let a = CtAttrs::parse_unordered(msg)?;
            let kind = match t {
                MsgType::CtNew => FlowKind::New,
                MsgType::CtUpd => FlowKind::Update,
                _ => FlowKind::Destroy,
            };
            match a.to_flow() {
                Ok(state) => (Body::Flow { kind, state }, a.unknown),
                // Acknowledged and dropped (7.2 item 6).
                Err(_) => {
                    f(Err(payload_error(&header)));
                    return Ok(a.unknown);
                }
            }
        }
        t => {
            let a = ExpAttrs::parse(msg)?;
            let kind = match t {
                MsgType::ExpNew => FlowKind::New,
                MsgType::ExpUpd => FlowKind::Update,
                _ => FlowKind::Destroy,
            };
            // `expires` carries the seconds left; conntrackd leaves
            // TIMEOUT out only under CommitTimeout: then a helper's own.
            match expectation_of(&a, 0, 0) {
                Ok(mut exp) => {
                    if a.get(crate::wire::exp::id::TIMEOUT).is_none() {
                        exp.expires = exp.helper.expect_timeout();
                    }
                    (Body::Expect { kind, exp }, a.unknown)
                }
                // An expectation ftfw cannot hold: acknowledged and dropped.
                Err(_) => {
                    f(Err(payload_error(&header)));
                    return Ok(a.unknown);
                }
            }
        }
    };
    f(Ok(Msg {
        seq,
        hello,
        hello_back,
        body,
    }));
    Ok(unknown)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ftfw_dataplane::flow::{proto, FlowState, Tuple};

    fn flow() -> FlowState {
        let orig = Tuple::new(
            "10.0.0.1".parse().unwrap(),
            "10.0.1.1".parse().unwrap(),
            proto::TCP,
            40000,
            80,
        );
        FlowState::established_tcp(orig, 300)
    }

    #[test]
    fn reproduces_the_spec_example_e1_and_decodes_it_back() {
        // E1 of ftfw-wire.md: CT_NEW, TCP ESTABLISHED, seq 1000, with MARK 0.
        let e1 =
            crate::wire::hex::parse_hex(include_str!("../tests/vectors/conntrackd-1.4.7/E1.hex"))
                .unwrap();
        let mut c = WireCodec::new(EncodeOptions {
            mark: crate::wire::MarkPolicy::Always,
            ..EncodeOptions::default()
        });
        let msg = Msg {
            seq: 1000,
            hello: false,
            hello_back: false,
            body: Body::Flow {
                kind: FlowKind::New,
                state: flow(),
            },
        };
        let mut out = Vec::new();
        c.encode(&msg, &mut out).unwrap();
        assert_eq!(out, e1);
        assert_eq!(c.encoded_len(&msg), e1.len());
        let mut got = Vec::new();
        c.decode(&out, &mut |m| got.push(m));
        assert_eq!(got, vec![Ok(msg)]);
    }

    #[test]
    fn control_messages_and_hello_bits_round_trip() {
        let mut c = WireCodec::default();
        let msgs = [
            Msg {
                seq: 5,
                hello: true,
                hello_back: false,
                body: Body::Alive,
            },
            Msg {
                seq: 6,
                hello: true,
                hello_back: true,
                body: Body::Ack { from: 1, to: 9 },
            },
            Msg {
                seq: 7,
                hello: false,
                hello_back: false,
                body: Body::Nack { from: 3, to: 4 },
            },
            Msg {
                seq: 8,
                hello: false,
                hello_back: true,
                body: Body::Resync,
            },
        ];
        let mut out = Vec::new();
        for m in &msgs {
            c.encode(m, &mut out).unwrap();
        }
        let mut got = Vec::new();
        c.decode(&out, &mut |m| got.push(m.unwrap()));
        assert_eq!(got, msgs);
        // The ALIVE|HELLO is conntrackd's startup message: 1a 30 00 08.
        assert_eq!(&out[..4], &[0x1a, 0x30, 0x00, 0x08]);
    }

    #[test]
    fn bad_payload_is_reported_with_its_seq_and_garbage_never_panics() {
        let mut c = WireCodec::default();
        let mut out = Vec::new();
        let m = Msg {
            seq: 42,
            hello: false,
            hello_back: false,
            body: Body::Flow {
                kind: FlowKind::Update,
                state: flow(),
            },
        };
        c.encode(&m, &mut out).unwrap();
        // STATUS (id 5) with a wrong size: whole message rejected, seq kept.
        let at = out.windows(4).position(|w| w == [0, 8, 0, 5]).unwrap();
        out[at + 1] = 7;
        let mut got = Vec::new();
        c.decode(&out, &mut |m| got.push(m));
        assert_eq!(
            got,
            vec![Err(CodecError::BadPayload {
                seq: 42,
                hello: false,
                hello_back: false
            })]
        );
        for len in 0u8..64 {
            let junk: Vec<u8> = (0..len)
                .map(|i: u8| i.wrapping_mul(37).wrapping_add(11))
                .collect();
            c.decode(&junk, &mut |_| {});
        }
    }

    /// The decoder as it was before the visitor walk: `decode_datagram`,
    /// then `CtAttrs::to_flow`. The fast path must report exactly this.
    fn reference(data: &[u8], stats: &mut DecodeStats) -> Vec<Result<Msg, CodecError>> {
        use crate::wire::datagram::Body as WireBody;
        let mut out = Vec::new();
        for r in datagram::decode_datagram(data, stats) {
            match r {
                Ok(m) => {
                    let h = m.header;
                    let body = match m.body {
                        WireBody::Ct(a) => {
                            let kind = match h.msg_type() {
                                Some(MsgType::CtNew) => FlowKind::New,
                                Some(MsgType::CtUpd) => FlowKind::Update,
                                _ => FlowKind::Destroy,
                            };
                            match a.to_flow() {
                                Ok(state) => Body::Flow { kind, state },
                                Err(_) => {
                                    out.push(Err(payload_error(&h)));
                                    continue;
                                }
                            }
                        }
                        WireBody::Exp(_) => {
                            out.push(Err(payload_error(&h)));
                            continue;
                        }
                        WireBody::Control(c) => match c {
                            ControlMsg::Ack { from, to } => Body::Ack { from, to },
                            ControlMsg::Nack { from, to } => Body::Nack { from, to },
                            ControlMsg::Resync { .. } => Body::Resync,
                            ControlMsg::Alive => Body::Alive,
                        },
                    };
                    out.push(Ok(Msg {
                        seq: h.seq,
                        hello: h.hello(),
                        hello_back: h.hello_back(),
                        body,
                    }));
                }
                Err(e) => out.push(Err(codec_error(&e))),
            }
        }
        out
    }

    proptest::proptest! {
        /// Valid datagrams (flows with and without extras, controls) with
        /// random bytes overwritten or cut: the allocation-free decoder
        /// reports and counts exactly what the collecting one does.
        #[test]
        fn fast_decode_equals_the_collecting_decoder(
            nat in proptest::bool::ANY,
            pokes in proptest::collection::vec((0usize..400, proptest::num::u8::ANY), 0..6),
            cut in 0usize..400,
            vectors in proptest::bool::ANY,
        ) {
            let mut c = WireCodec::default();
            let mut d = Vec::new();
            if vectors {
                d = crate::wire::hex::parse_hex(include_str!(
                    "../tests/vectors/conntrackd-1.4.7/E1.hex"
                ))
                .unwrap();
            }
            let mut f = flow();
            if nat {
                f.status |= ftfw_dataplane::flow::status::SRC_NAT_DONE;
                let mut r = f.key.orig.reply();
                r.dst[3] = 99;
                r.dst_port = 1234;
                f.extras.reply = Some(r);
                f.extras.helper = Some("ftp".into());
                f.extras.labels = Some([1, 0, 0, 2]);
            }
            for (seq, kind) in (10u32..).zip([FlowKind::New, FlowKind::Update, FlowKind::Destroy]) {
                c.encode_flow(seq, seq == 10, seq == 11, kind, &f, &mut d).unwrap();
            }
            datagram::encode_control(&mut d, &ControlMsg::Ack { from: 1, to: 5 }, 0, 20);
            datagram::encode_control(&mut d, &ControlMsg::Alive, flags::HELLO, 21);
            for (at, b) in pokes {
                let n = d.len();
                d[at % n] = b;
            }
            d.truncate(d.len().saturating_sub(cut % 64));
            let mut s1 = DecodeStats::default();
            let want = reference(&d, &mut s1);
            let mut got = Vec::new();
            c.decode(&d, &mut |m| got.push(m));
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert_eq!(c.stats, s1);
        }
    }
}
