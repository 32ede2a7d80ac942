//! Whole datagrams: the receiver's walk (ftfw-wire.md section 2), message
//! encoding, and the sender's MTU batching.

use ftfw_dataplane::flow::FlowState;
use thiserror::Error;

use super::control::{needs_range, RANGE_LEN};
use super::{ControlMsg, CtAttrs, EncodeOptions, ExpAttrs, Header, MsgType, WireError, HEADER_LEN};

/// A message body.
// CT is by far the common variant; boxing it would add an allocation per
// message for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// CT_NEW, CT_UPD, CT_DEL.
    Ct(CtAttrs),
    /// EXP_NEW, EXP_UPD, EXP_DEL.
    Exp(ExpAttrs),
    /// CTL.
    Control(ControlMsg),
}

/// One decoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Offset of the message in the datagram.
    pub offset: usize,
    /// Its header.
    pub header: Header,
    /// Its body.
    pub body: Body,
}

/// A message that was rejected (or a framing error that ended the walk).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("message at offset {offset}: {kind}")]
pub struct MessageError {
    /// Offset of the message in the datagram.
    pub offset: usize,
    /// The header, when 8 bytes were there to read (its HELLO bit still
    /// counts for a malformed header, ftfw-wire.md 3.2).
    pub header: Option<Header>,
    /// What was wrong.
    pub kind: WireError,
}

impl MessageError {
    /// Whether this error ended the walk (the rest of the datagram was
    /// dropped).
    pub fn is_framing(&self) -> bool {
        matches!(
            self.kind,
            WireError::Truncated { .. } | WireError::BadSize { .. }
        )
    }
}

/// Receive counters, named after conntrackd's `-s network` where one
/// exists. Plain integers, summed by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
pub struct DecodeStats {
    /// Datagrams walked.
    pub datagrams: u64,
    /// Messages framed (every message whose `len` was sane).
    pub messages: u64,
    /// Messages decoded without error.
    pub ok: u64,
    /// Version not 1 ("Wrong protocol version").
    pub bad_version: u64,
    /// Unknown type, bad flags, CTL without a control bit, ACK/NACK range
    /// reversed ("Malformed header").
    pub malformed_header: u64,
    /// Bad attribute length or size ("Malformed payload").
    pub bad_attr: u64,
    /// Fewer bytes left than a message needs (walk stopped).
    pub truncated: u64,
    /// `len` 0 or past the end (walk stopped, "Bad message size").
    pub bad_size: u64,
    /// Attributes with an unknown id, skipped (conntrackd would reject the
    /// whole message).
    pub unknown_attr: u64,
}

impl DecodeStats {
    fn count(&mut self, e: &WireError) {
        let c = match e {
            WireError::Truncated { .. } => &mut self.truncated,
            WireError::BadSize { .. } => &mut self.bad_size,
            WireError::BadVersion { .. } => &mut self.bad_version,
            WireError::UnknownType { .. }
            | WireError::DataFlags { .. }
            | WireError::NoControlFlag { .. }
            | WireError::BadRange { .. } => &mut self.malformed_header,
            WireError::AttrLen { .. } | WireError::AttrSize { .. } | WireError::TooLong { .. } => {
                &mut self.bad_attr
            }
        };
        *c = c.saturating_add(1);
    }
}

/// Decodes one message (`msg` is exactly `len` bytes, framing already
/// checked).
fn decode_message(header: Header, msg: &[u8]) -> Result<(Body, usize), WireError> {
    let ty = header.validate()?;
    Ok(match ty {
        MsgType::Ctl => (Body::Control(ControlMsg::parse(header.flags, msg)?), 0),
        t if t.is_ct() => {
            let a = CtAttrs::parse(msg)?;
            let u = a.unknown;
            (Body::Ct(a), u)
        }
        _ => {
            let e = ExpAttrs::parse(msg)?;
            let u = e.unknown;
            (Body::Exp(e), u)
        }
    })
}

/// Walks one datagram with conntrackd's rules (ftfw-wire.md section 2):
/// a framing error (fewer than 8 bytes left, `len` 0 or past the end, an
/// ACK/NACK/RESYNC shorter than 16 or any message shorter than 8) is the
/// last item and drops the rest; anything wrong inside one message rejects
/// only that message and the walk goes on. Never panics. Every outcome is
/// counted in `stats`.
pub fn decode_datagram(data: &[u8], stats: &mut DecodeStats) -> Vec<Result<Message, MessageError>> {
    let mut out = Vec::new();
    decode_datagram_with(data, stats, |r| out.push(r));
    out
}

/// [`decode_datagram`] as a visitor: reports every item to `f`, in order,
/// instead of collecting them (same walk, same counters).
pub fn decode_datagram_with(
    data: &[u8],
    stats: &mut DecodeStats,
    mut f: impl FnMut(Result<Message, MessageError>),
) {
    walk(data, stats, |item| match item {
        Walk::Msg {
            offset,
            header,
            msg,
        } => {
            let (body, unknown) = decode_message(header, msg)?;
            f(Ok(Message {
                offset,
                header,
                body,
            }));
            Ok(unknown)
        }
        Walk::Err(e) => {
            f(Err(e));
            Ok(0)
        }
    });
}

/// One step of [`walk`].
pub(crate) enum Walk<'a> {
    /// A framed message (`msg` is its `len` bytes, header included): the
    /// visitor decodes it and reports it itself, and returns how many
    /// unknown attributes it skipped, or why it rejects it (the walk then
    /// counts that and reports it as a `Walk::Err`).
    Msg {
        offset: usize,
        header: Header,
        msg: &'a [u8],
    },
    /// A rejected message or a framing error (already counted); the
    /// visitor's return value is ignored.
    Err(MessageError),
}

/// The datagram walk behind [`decode_datagram`], with the decoding of a
/// framed message left to the visitor (so a decoder can hand each message
/// on without moving it through the walk). Allocates nothing.
pub(crate) fn walk(
    data: &[u8],
    stats: &mut DecodeStats,
    mut visit: impl FnMut(Walk<'_>) -> Result<usize, WireError>,
) {
    stats.datagrams = stats.datagrams.saturating_add(1);
    let mut off = 0usize;
    while off < data.len() {
        let rest = data.get(off..).unwrap_or(&[]);
        let fail =
            |kind: WireError,
             header: Option<Header>,
             stats: &mut DecodeStats,
             visit: &mut dyn FnMut(Walk<'_>) -> Result<usize, WireError>| {
                stats.count(&kind);
                let _ = visit(Walk::Err(MessageError {
                    offset: off,
                    header,
                    kind,
                }));
            };
        let header = match Header::parse(rest) {
            Ok(h) => h,
            Err(kind) => {
                fail(kind, None, stats, &mut visit);
                break;
            }
        };
        let len = usize::from(header.len);
        if len == 0 || len > rest.len() {
            fail(
                WireError::BadSize {
                    len: header.len,
                    left: rest.len(),
                },
                Some(header),
                stats,
                &mut visit,
            );
            break;
        }
        let need = if header.ty == MsgType::Ctl as u8 && needs_range(header.flags) {
            RANGE_LEN
        } else {
            HEADER_LEN
        };
        if len < need {
            fail(
                WireError::Truncated { left: len, need },
                Some(header),
                stats,
                &mut visit,
            );
            break;
        }
        stats.messages = stats.messages.saturating_add(1);
        let msg = rest.get(..len).unwrap_or(rest);
        match visit(Walk::Msg {
            offset: off,
            header,
            msg,
        }) {
            Ok(unknown) => {
                stats.ok = stats.ok.saturating_add(1);
                stats.unknown_attr = stats
                    .unknown_attr
                    .saturating_add(u64::try_from(unknown).unwrap_or(u64::MAX));
            }
            Err(kind) => fail(kind, Some(header), stats, &mut visit),
        }
        off = off.saturating_add(len);
    }
}

fn finish(out: &mut [u8], start: usize) -> Result<(), WireError> {
    let len = out.len().saturating_sub(start);
    let l = u16::try_from(len).map_err(|_| WireError::TooLong { len })?;
    if let Some(b) = out.get_mut(start.saturating_add(2)..start.saturating_add(4)) {
        b.copy_from_slice(&l.to_be_bytes());
    }
    Ok(())
}

fn begin(out: &mut Vec<u8>, ty: MsgType, flags: u8, seq: u32) -> usize {
    let start = out.len();
    out.extend_from_slice(&Header::new(ty, flags, 0, seq).to_bytes());
    start
}

/// Appends a CT message of type `ty` (CT_NEW/UPD/DEL) with `len` filled in.
/// On error `out` is left as it was.
pub fn encode_ct(
    out: &mut Vec<u8>,
    ty: MsgType,
    flags: u8,
    seq: u32,
    attrs: &CtAttrs,
) -> Result<(), WireError> {
    let start = begin(out, ty, flags, seq);
    attrs.emit(out);
    finish(out, start).inspect_err(|_| out.truncate(start))
}

/// Appends the CT message conntrackd would send for `flow`: the same bytes
/// as [`encode_ct`] of [`CtAttrs::from_flow`], written directly (no
/// allocation). On error `out` is left as it was.
pub fn encode_flow(
    out: &mut Vec<u8>,
    ty: MsgType,
    flags: u8,
    seq: u32,
    flow: &FlowState,
    opt: &EncodeOptions,
) -> Result<(), WireError> {
    let start = begin(out, ty, flags, seq);
    super::emit_flow(flow, opt, out);
    finish(out, start).inspect_err(|_| out.truncate(start))
}

/// Length of the message [`encode_flow`] appends for `flow` (header
/// included), computed without encoding.
pub fn flow_msg_len(flow: &FlowState, opt: &EncodeOptions) -> usize {
    HEADER_LEN + super::flow_attrs_len(flow, opt)
}

/// Appends an expectation message.
pub fn encode_exp(
    out: &mut Vec<u8>,
    ty: MsgType,
    flags: u8,
    seq: u32,
    attrs: &ExpAttrs,
) -> Result<(), WireError> {
    let start = begin(out, ty, flags, seq);
    attrs.emit(out);
    finish(out, start).inspect_err(|_| out.truncate(start))
}

/// Appends a control message; `extra_flags` adds HELLO/HELLO_BACK.
pub fn encode_control(out: &mut Vec<u8>, msg: &ControlMsg, extra_flags: u8, seq: u32) {
    let start = begin(out, MsgType::Ctl, msg.flag() | extra_flags, seq);
    msg.emit_body(out);
    // A control message is 8 or 16 bytes: finish cannot fail.
    let _ = finish(out, start);
}

/// Packs whole messages into datagrams the way conntrackd does: a message
/// joins the buffer while `buffered + msglen < mtu - 28` (strictly less),
/// otherwise the buffer is sent first. A message never splits; one larger
/// than the limit goes alone.
#[derive(Clone, Debug)]
pub struct DatagramBuilder {
    limit: usize,
    buf: Vec<u8>,
}

impl DatagramBuilder {
    /// A builder for a link with this MTU (limit MTU - 28).
    pub fn new(mtu: usize) -> DatagramBuilder {
        let limit = mtu.saturating_sub(28);
        DatagramBuilder {
            limit,
            buf: Vec::with_capacity(limit),
        }
    }
    /// The batching limit (MTU - 28).
    pub fn limit(&self) -> usize {
        self.limit
    }
    /// Bytes buffered.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
    /// Adds one whole message; returns the datagram that had to be sent
    /// first to make room, if any.
    pub fn push(&mut self, msg: &[u8]) -> Option<Vec<u8>> {
        let flushed =
            if !self.buf.is_empty() && self.buf.len().saturating_add(msg.len()) >= self.limit {
                self.flush()
            } else {
                None
            };
        self.buf.extend_from_slice(msg);
        flushed
    }
    /// Takes the buffered datagram, if any.
    pub fn flush(&mut self) -> Option<Vec<u8>> {
        if self.buf.is_empty() {
            None
        } else {
            Some(std::mem::replace(
                &mut self.buf,
                Vec::with_capacity(self.limit),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::flags;

    #[test]
    fn walk_rules() {
        let mut st = DecodeStats::default();
        let mut d = Vec::new();
        encode_control(&mut d, &ControlMsg::Alive, 0, 1);
        // Version 2 ALIVE: rejected, the walk goes on.
        d.extend_from_slice(&[0x2a, 0x10, 0, 8, 0, 0, 0, 2]);
        // HELLO-only CTL: malformed header, HELLO still reported.
        d.extend_from_slice(&[0x1a, 0x20, 0, 8, 0, 0, 0, 3]);
        encode_control(&mut d, &ControlMsg::Ack { from: 1, to: 3 }, 0, 4);
        // Truncated tail.
        d.extend_from_slice(&[0x1a, 0x10, 0]);
        let v = decode_datagram(&d, &mut st);
        assert_eq!(v.len(), 5);
        assert!(v[0].is_ok() && v[3].is_ok());
        let e = v[1].clone().unwrap_err();
        assert_eq!(
            (e.offset, e.kind),
            (8, WireError::BadVersion { version: 2 })
        );
        let e = v[2].clone().unwrap_err();
        assert!(e.header.unwrap().hello());
        assert!(v[4].clone().unwrap_err().is_framing());
        assert_eq!(
            (
                st.messages,
                st.ok,
                st.bad_version,
                st.malformed_header,
                st.truncated
            ),
            (4, 2, 1, 1, 1)
        );
        // ACK with len 8: framing error.
        let v = decode_datagram(&[0x1a, flags::ACK, 0, 8, 0, 0, 0, 1], &mut st);
        assert!(v[0].clone().unwrap_err().is_framing());
        // len 0 and len past the end: bad size.
        let v = decode_datagram(&[0x1a, 0x10, 0, 0, 0, 0, 0, 1, 1, 2], &mut st);
        assert_eq!(v.len(), 1);
        let v = decode_datagram(&[0x1a, 0x10, 0, 12, 0, 0, 0, 1], &mut st);
        assert_eq!(v.len(), 1);
        assert_eq!(st.bad_size, 2);
    }

    #[test]
    fn batching_is_strictly_below_limit() {
        let mut b = DatagramBuilder::new(100); // limit 72
        let m = [0u8; 36];
        assert_eq!(b.push(&m), None);
        // 36 + 36 = 72 is not < 72: flush first.
        assert_eq!(b.push(&m).map(|d| d.len()), Some(36));
        assert_eq!(b.push(&m[..32]), None); // 36 + 32 = 68 < 72
        assert_eq!(b.flush().map(|d| d.len()), Some(68));
        assert_eq!(b.flush(), None);
        // Alone it may exceed the limit.
        assert_eq!(b.push(&[0u8; 200]), None);
        assert_eq!(b.flush().map(|d| d.len()), Some(200));
    }
}
