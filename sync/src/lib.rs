//! ftfw-sync: state replication between ftfw nodes (and conntrackd peers).
//!
//! Layer: between the dataplane (which owns the flow model,
//! [`ftfw_dataplane::flow::FlowState`]) and the control plane (which owns
//! sockets, threads and the console). This crate is sans-IO: it turns bytes
//! into typed messages and back and never touches a socket or a clock.
//!
//! It owns the FT-FW wire format of conntrackd 1.4.7 ([`wire`]): the 8-byte
//! header, the control bodies, the TLV attributes of conntrack and
//! expectation messages, the conversion between CT attributes and
//! `FlowState`, the datagram walk with its counters and the MTU batching.
//!
//! Invariants:
//! - decoding never panics, whatever the input; lengths use checked
//!   arithmetic, and every error names what was wrong and at which offset;
//! - the encoder emits only what conntrackd 1.4.7 accepts: attribute ids
//!   0-32 (CT) or 0-20 (expectation) with their exact sizes, in the order
//!   conntrackd's own sender uses, SPAT/DPAT/ICMP_ID little-endian;
//! - a framing error drops the rest of a datagram, anything wrong inside one
//!   message rejects only that message; both are counted in
//!   [`wire::DecodeStats`];
//! - a datagram never splits a message and never exceeds MTU - 29 bytes
//!   unless a single message is larger than that by itself.
#![forbid(unsafe_code)]

pub mod wire;
