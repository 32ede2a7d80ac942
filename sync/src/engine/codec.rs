//! The boundary between the protocol engine and the byte format.

use ftfw_dataplane::flow::FlowState;

use super::msg::{Body, FlowKind, Msg};

/// Why a message could not be encoded or decoded. Small and `Copy`, for the
/// hot path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The header or framing is invalid (bad type, bad flags, bad length).
    #[error("malformed message header")]
    Malformed,
    /// Fewer bytes left than a message needs; the rest of the datagram is
    /// dropped.
    #[error("truncated message")]
    Truncated,
    /// Protocol version is not the one we speak.
    #[error("wrong protocol version")]
    BadVersion,
    /// A message kind or field this codec cannot represent.
    #[error("unsupported message or field")]
    Unsupported,
    /// The header was valid but the payload was not. The engine still runs
    /// sequence tracking on it (conntrackd acknowledges such a message, 7.2
    /// item 6), so the header fields are reported.
    #[error("malformed payload in message seq {seq}")]
    BadPayload {
        /// Sequence number from the valid header.
        seq: u32,
        /// HELLO flag from the header.
        hello: bool,
        /// HELLO_BACK flag from the header.
        hello_back: bool,
    },
}

/// Turns [`Msg`]s into bytes and back. Implementations must never panic on
/// any input.
pub trait Codec {
    /// Appends the encoding of `msg` to `out`. On error `out` must be left as
    /// it was.
    fn encode(&mut self, msg: &Msg, out: &mut Vec<u8>) -> Result<(), CodecError>;
    /// How many bytes [`Codec::encode`] would append for `msg` (it must not
    /// depend on `msg.seq` or the hello flags).
    fn encoded_len(&mut self, msg: &Msg) -> usize;
    /// Appends the encoding of the flow message `seq`/`kind`/`state` with
    /// these HELLO bits: the same bytes as [`Codec::encode`] of the
    /// corresponding [`Msg`]. The engine's transmit path calls this, so a
    /// codec can encode from a borrowed state; the default builds the `Msg`
    /// (cloning the state) and calls [`Codec::encode`].
    fn encode_flow(
        &mut self,
        seq: u32,
        hello: bool,
        hello_back: bool,
        kind: FlowKind,
        state: &FlowState,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        let msg = Msg {
            seq,
            hello,
            hello_back,
            body: Body::Flow {
                kind,
                state: state.clone(),
            },
        };
        self.encode(&msg, out)
    }
    /// Walks one datagram and reports every message in it, in order, to `f`:
    /// `Ok` for a message, `Err` for one that was rejected. A framing error
    /// is reported once and ends the walk.
    fn decode(&mut self, datagram: &[u8], f: &mut dyn FnMut(Result<Msg, CodecError>));
}
