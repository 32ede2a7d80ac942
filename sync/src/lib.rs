//! ftfw-sync: state replication between ftfw nodes (and conntrackd peers)
//! with the FT-FW protocol.
//!
//! Layer: between the dataplane (which produces flow-state deltas and owns
//! the flow model, [`ftfw_dataplane::flow::FlowState`]) and the control plane
//! (which owns sockets, threads, the clock and the external cache). This
//! crate is sans-IO: it never touches a socket or reads a clock.
//!
//! It owns:
//! - [`engine`]: the FT-FW protocol as conntrackd 1.4.7 implements it:
//!   sequence numbers, receiver tracking, ACK/NACK, the resend queue,
//!   HELLO/HELLO_BACK, RESYNC, per-flow coalescing and MTU batching;
//! - [`wire`]: conntrackd 1.4.7's byte format: the 8-byte header, control
//!   bodies, TLV attributes of conntrack and expectation messages, the
//!   conversion between CT attributes and `FlowState`, the datagram walk
//!   with its counters;
//! - [`codec`]: [`codec::WireCodec`], the engine's codec over that format;
//! - [`lazy`]: hFT-FW's Bayes lazy replication, the predictor that holds
//!   back the changes of flows expected to end before the backup needs them.
//!
//! Invariants:
//! - no input (datagram bytes, peer sequence numbers, ranges) can make
//!   anything here panic; lengths use checked arithmetic and every error
//!   names what was wrong and at which offset;
//! - the encoder emits only what conntrackd 1.4.7 accepts: attribute ids
//!   0-32 (CT) or 0-20 (expectation) with their exact sizes, in conntrackd's
//!   order, SPAT/DPAT/ICMP_ID little-endian;
//! - a framing error drops the rest of a datagram, anything wrong inside one
//!   message rejects only that message; both are counted;
//! - every queue is bounded; an overflow is counted and has a recovery path
//!   (re-export or RESYNC);
//! - the engine is driven by calls with time passed in, and its output
//!   leaves through `poll_transmit`, `poll_timeout` and `poll_event`.
#![forbid(unsafe_code)]

pub mod codec;
pub mod engine;
pub mod lazy;
pub mod wire;

// Lets the test codec shared with tests/ name this crate as `ftfw_sync`.
#[cfg(test)]
extern crate self as ftfw_sync;
