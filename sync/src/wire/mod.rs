//! The FT-FW wire format as spoken by conntrackd 1.4.7 (ftfw-wire.md
//! sections 2-6).
//!
//! Layout, smoltcp style: [`header`] (the 8-byte header), [`control`] (the
//! CTL bodies), [`attr`] (the TLV walk and emit), [`ct`] (the conntrack
//! attribute table and codec, with the conversion to and from
//! [`FlowState`] in its own file; the sender's
//! direct `FlowState` to bytes path is [`emit_flow`]), [`exp`]
//! (expectation attributes), [`datagram`] (the receiver's walk over a whole
//! UDP payload, its counters, and the sender's MTU batching).
//! [`stream`] frames a TCP stream of the same messages.
//!
//! Deviation from conntrackd, on purpose: conntrackd rejects a whole message
//! that carries an attribute id it does not know (>= 33 for CT, >= 21 for
//! expectations). This decoder skips such an attribute by its `nta_len` and
//! counts it ([`DecodeStats::unknown_attr`]); lengths that overrun the
//! message still reject it. Everything else is exactly as strict as
//! conntrackd.
//!
//! [`FlowState`]: ftfw_dataplane::flow::FlowState

pub mod attr;
pub mod control;
pub mod ct;
mod ct_emit;
pub mod datagram;
mod error;
pub mod exp;
pub mod exp_state;
pub mod header;
pub mod hex;
pub mod stream;

#[cfg(test)]
mod golden;

pub use control::ControlMsg;
pub use ct::{CtAttrs, EncodeOptions, FlowError, MarkPolicy};
pub use ct_emit::{emit_flow, flow_attrs_len};
pub use datagram::{
    decode_datagram, decode_datagram_with, encode_control, encode_ct, encode_exp, encode_flow,
    flow_msg_len, Body, DatagramBuilder, DecodeStats, Message, MessageError,
};
pub use error::WireError;
pub use exp::ExpAttrs;
pub use header::{flags, Header, MsgType, HEADER_LEN, VERSION};
