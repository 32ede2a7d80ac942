//! State replication between ftfw nodes with the FT-FW protocol.
//!
//! Layer: between the dataplane (which produces flow-state deltas and owns
//! the flow model, [`ftfw_dataplane::flow`]) and the control plane (which owns
//! sockets, threads, the clock and the external cache). This crate owns the
//! FT-FW protocol as conntrackd 1.4.7 implements it: sequence numbers,
//! receiver tracking, ACK/NACK, the resend queue, HELLO/HELLO_BACK and RESYNC.
//!
//! Invariants:
//! - The protocol engine ([`engine::Engine`]) is sans-IO: time is passed in,
//!   never read; it opens no sockets and spawns no threads; output leaves
//!   through `poll_transmit`, `poll_timeout` and `poll_event`.
//! - Every queue is bounded; an overflow is counted and has a recovery path
//!   (re-export or RESYNC).
//! - No input (datagram bytes, peer sequence numbers, ranges) can make the
//!   engine panic.
//! - The byte-level format is behind the [`engine::Codec`] trait; the engine
//!   never looks at bytes itself.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod engine;

// Lets the test codec shared with tests/ name this crate as `ftfw_sync`.
#[cfg(test)]
extern crate self as ftfw_sync;
