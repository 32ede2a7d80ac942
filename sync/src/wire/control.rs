//! Control message bodies (type 10, ftfw-wire.md section 4).
//!
//! ```text
//! ALIVE (len 8):            1a | fl | 00 08 | seq
//! ACK/NACK/RESYNC (len 16): 1a | fl | 00 10 | seq | from (BE) | to (BE)
//! ```

use super::{flags, WireError, HEADER_LEN};

/// Length of an ACK, NACK or RESYNC message.
pub const RANGE_LEN: usize = 16;

/// A decoded control body. HELLO/HELLO_BACK stay in the header's flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlMsg {
    /// Peer received `[from, to]` (inclusive).
    Ack {
        /// First sequence number covered.
        from: u32,
        /// Last sequence number covered.
        to: u32,
    },
    /// Peer misses `[from, to]` (inclusive).
    Nack {
        /// First missing sequence number.
        from: u32,
        /// Last missing sequence number.
        to: u32,
    },
    /// Peer asks for the whole table; from/to are carried as sent (0/0).
    Resync {
        /// As sent (always 0 from conntrackd).
        from: u32,
        /// As sent (always 0 from conntrackd).
        to: u32,
    },
    /// Keep-alive.
    Alive,
}

/// `before(a, b)` of ftfw-wire.md 7.1: wraparound-safe.
pub fn seq_before(a: u32, b: u32) -> bool {
    // The difference read as signed: the cast is the definition.
    #[allow(clippy::cast_possible_wrap)]
    let d = a.wrapping_sub(b) as i32;
    d < 0
}

/// Whether a CTL with these flags needs the 16-byte body (ACK, NACK or
/// RESYNC by conntrackd's priority order).
pub fn needs_range(fl: u8) -> bool {
    fl & (flags::ACK | flags::NACK | flags::RESYNC) != 0
}

impl ControlMsg {
    /// The flag bit this body is sent with.
    pub fn flag(&self) -> u8 {
        match self {
            ControlMsg::Ack { .. } => flags::ACK,
            ControlMsg::Nack { .. } => flags::NACK,
            ControlMsg::Resync { .. } => flags::RESYNC,
            ControlMsg::Alive => flags::ALIVE,
        }
    }
    /// Message length on the wire (8 or 16).
    pub fn wire_len(&self) -> usize {
        match self {
            ControlMsg::Alive => HEADER_LEN,
            _ => RANGE_LEN,
        }
    }
    /// Decodes a whole CTL message (header included) with these flags, by
    /// conntrackd's order: ACK, then NACK, then RESYNC, then ALIVE.
    pub fn parse(fl: u8, msg: &[u8]) -> Result<ControlMsg, WireError> {
        let range = || -> Result<(u32, u32), WireError> {
            let b = msg.get(HEADER_LEN..RANGE_LEN).ok_or(WireError::Truncated {
                left: msg.len(),
                need: RANGE_LEN,
            })?;
            Ok((
                u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ))
        };
        let checked = |(from, to): (u32, u32)| {
            if seq_before(to, from) {
                Err(WireError::BadRange { from, to })
            } else {
                Ok((from, to))
            }
        };
        if fl & flags::ACK != 0 {
            let (from, to) = checked(range()?)?;
            Ok(ControlMsg::Ack { from, to })
        } else if fl & flags::NACK != 0 {
            let (from, to) = checked(range()?)?;
            Ok(ControlMsg::Nack { from, to })
        } else if fl & flags::RESYNC != 0 {
            let (from, to) = range()?;
            Ok(ControlMsg::Resync { from, to })
        } else if fl & flags::ALIVE != 0 {
            Ok(ControlMsg::Alive)
        } else {
            Err(WireError::NoControlFlag { flags: fl })
        }
    }
    /// Appends the body after the header (nothing for ALIVE).
    pub fn emit_body(&self, out: &mut Vec<u8>) {
        match *self {
            ControlMsg::Ack { from, to }
            | ControlMsg::Nack { from, to }
            | ControlMsg::Resync { from, to } => {
                out.extend_from_slice(&from.to_be_bytes());
                out.extend_from_slice(&to.to_be_bytes());
            }
            ControlMsg::Alive => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_ranges() {
        let m = [0x1a, 0x68, 0, 16, 0, 0, 0, 1, 0, 0, 3, 0xe8, 0, 0, 3, 0xe8];
        assert_eq!(
            ControlMsg::parse(0x68 | flags::ALIVE, &m),
            Ok(ControlMsg::Ack {
                from: 1000,
                to: 1000
            })
        );
        let bad = [0x1a, 0x04, 0, 16, 0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 8];
        assert_eq!(
            ControlMsg::parse(flags::NACK, &bad),
            Err(WireError::BadRange { from: 9, to: 8 })
        );
        assert_eq!(
            ControlMsg::parse(flags::HELLO, &bad[..8]),
            Err(WireError::NoControlFlag {
                flags: flags::HELLO
            })
        );
        assert!(seq_before(u32::MAX, 0));
        assert!(!seq_before(0, u32::MAX));
    }
}
