//! The protocol-level message, independent of its byte encoding.

use ftfw_dataplane::flow::FlowState;
use ftfw_dataplane::helper::Expectation;

/// What a data message says happened to a flow (conntrackd CT_NEW, CT_UPD,
/// CT_DEL).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowKind {
    /// The flow is new: a receiver replaces any entry it has.
    New,
    /// The flow changed: a receiver updates its entry or creates it.
    Update,
    /// The flow is gone: a receiver removes its entry if present.
    Destroy,
}

/// The body of one FT-FW message.
// Boxing the state would cost an allocation per flow message.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// A flow-state message.
    Flow {
        /// NEW, UPDATE or DESTROY.
        kind: FlowKind,
        /// The full state of the flow (the last known state for DESTROY).
        state: FlowState,
    },
    /// An expectation message (conntrackd EXP_NEW / EXP_UPD / EXP_DEL,
    /// sent only with `[sync] expectations`).
    Expect {
        /// NEW, UPDATE or DESTROY.
        kind: FlowKind,
        /// The expectation; on the wire `expires` is the seconds it has
        /// left (EXP_TIMEOUT), not a clock value.
        exp: Expectation,
    },
    /// "I received your sequence numbers `from..=to`."
    Ack {
        /// First sequence number covered.
        from: u32,
        /// Last sequence number covered.
        to: u32,
    },
    /// "Send your sequence numbers `from..=to` again."
    Nack {
        /// First missing sequence number.
        from: u32,
        /// Last missing sequence number.
        to: u32,
    },
    /// "Send me your whole table."
    Resync,
    /// Keep-alive, no content.
    Alive,
}

/// One FT-FW message: header fields the engine cares about plus its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Msg {
    /// Sender sequence number.
    pub seq: u32,
    /// HELLO flag: the sender (re)started.
    pub hello: bool,
    /// HELLO_BACK flag: the sender saw our HELLO.
    pub hello_back: bool,
    /// What the message carries.
    pub body: Body,
}
