//! The wire error type.

use thiserror::Error;

/// What was wrong with a message or a datagram. Small and `Copy`: offsets
/// are relative to the start of the message unless the variant says
/// otherwise; [`super::MessageError`] adds the message's offset in the
/// datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum WireError {
    /// Fewer bytes left than a header (or an ACK/NACK/RESYNC) needs; the
    /// rest of the datagram is dropped.
    #[error("truncated message: {left} bytes left, {need} needed")]
    Truncated {
        /// Bytes left in the datagram.
        left: usize,
        /// Bytes the message needs.
        need: usize,
    },
    /// Header `len` is 0, or more than the bytes left; the rest of the
    /// datagram is dropped.
    #[error("bad message size: len {len} with {left} bytes left")]
    BadSize {
        /// The header's `len`.
        len: u16,
        /// Bytes left in the datagram.
        left: usize,
    },
    /// Protocol version is not 1.
    #[error("wrong protocol version {version} (want 1)")]
    BadVersion {
        /// The version nibble.
        version: u8,
    },
    /// Message type 6-9 or 11-15.
    #[error("malformed header: unknown message type {ty}")]
    UnknownType {
        /// The type nibble.
        ty: u8,
    },
    /// A data message carries flags other than HELLO/HELLO_BACK.
    #[error("malformed header: data message with flags {flags:#04x}")]
    DataFlags {
        /// The flags byte.
        flags: u8,
    },
    /// A CTL message has none of ACK, NACK, RESYNC, ALIVE.
    #[error(
        "malformed header: control message without ACK/NACK/RESYNC/ALIVE (flags {flags:#04x})"
    )]
    NoControlFlag {
        /// The flags byte.
        flags: u8,
    },
    /// ACK or NACK whose `to` is before `from`.
    #[error("malformed header: range to {to:#x} before from {from:#x}")]
    BadRange {
        /// First sequence number.
        from: u32,
        /// Last sequence number.
        to: u32,
    },
    /// An attribute's `nta_len` is below 4 or runs past the message end.
    #[error(
        "malformed payload: attribute at offset {at} has nta_len {len} with {left} bytes left"
    )]
    AttrLen {
        /// Offset of the attribute in the message.
        at: usize,
        /// Its `nta_len`.
        len: u16,
        /// Bytes left in the message from the attribute's start.
        left: usize,
    },
    /// An attribute has a size its id does not allow.
    #[error("malformed payload: attribute id {id} at offset {at} has nta_len {len}")]
    AttrSize {
        /// Offset of the attribute in the message.
        at: usize,
        /// Attribute id.
        id: u16,
        /// Its `nta_len`.
        len: u16,
    },
    /// The message would be longer than a u16 `len` can say (encoder only).
    #[error("message too long: {len} bytes")]
    TooLong {
        /// The length it would have.
        len: usize,
    },
}
