//! Framing of a byte stream (conntrackd's `TCP` channel): the stream is the
//! concatenation of ordinary datagram payloads, so the receiver finds the
//! messages by each header's `len` (ftfw-wire.md 1.4 and 3).
//!
//! Unlike a datagram, a stream cannot skip a bad length: everything after
//! it is unframed. [`frame`] therefore validates every length before it is
//! used and reports a framing error, after which the connection must be
//! closed (the peer reconnects and starts on a message boundary).

use super::control::{needs_range, RANGE_LEN};
use super::{Header, MsgType, HEADER_LEN};

/// The largest message conntrackd builds (its build buffer, ftfw-wire.md 2).
pub const MAX_MESSAGE_LEN: usize = 4096;

/// A length that cannot start a valid message; the stream is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "stream framing error at byte {offset}: message length {len} (need {min}..={MAX_MESSAGE_LEN})"
)]
pub struct FramingError {
    /// Offset of the bad header in the buffer given to [`frame`].
    pub offset: usize,
    /// The length it claims.
    pub len: u16,
    /// The least length its type needs.
    pub min: usize,
}

/// How many leading bytes of `buf` are whole messages, at most `limit`
/// bytes of them (a message that would cross `limit` waits for the next
/// call). The rest is an incomplete message to keep for the next read.
///
/// Every length is checked: below the header (or below 16 for an ACK,
/// NACK or RESYNC, as conntrackd requires) or above [`MAX_MESSAGE_LEN`] is
/// a [`FramingError`]. Messages framed here never make the datagram walk
/// stop early, so handing the whole prefix to the decoder as one datagram
/// is the same as handing each message alone. Work: one header read per
/// message; never panics.
pub fn frame(buf: &[u8], limit: usize) -> Result<usize, FramingError> {
    let mut off = 0usize;
    while let Some(rest) = buf.get(off..) {
        let Ok(h) = Header::parse(rest) else {
            break; // fewer than 8 bytes: wait for more
        };
        let len = usize::from(h.len);
        let min = if h.ty == MsgType::Ctl as u8 && needs_range(h.flags) {
            RANGE_LEN
        } else {
            HEADER_LEN
        };
        if len < min || len > MAX_MESSAGE_LEN {
            return Err(FramingError {
                offset: off,
                len: h.len,
                min,
            });
        }
        let end = off.saturating_add(len);
        if end > buf.len() || end > limit {
            break;
        }
        off = end;
    }
    Ok(off)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode_control, ControlMsg};

    fn ctl(msg: ControlMsg, seq: u32) -> Vec<u8> {
        let mut v = Vec::new();
        encode_control(&mut v, &msg, 0, seq);
        v
    }

    #[test]
    fn whole_messages_only_and_the_tail_waits() {
        let mut s = ctl(ControlMsg::Alive, 1);
        s.extend(ctl(ControlMsg::Ack { from: 1, to: 2 }, 2));
        let whole = s.len();
        s.extend(&ctl(ControlMsg::Resync { from: 0, to: 0 }, 3)[..11]);
        assert_eq!(frame(&s, usize::MAX), Ok(whole));
        // A message that would cross the limit waits.
        assert_eq!(frame(&s, whole - 1), Ok(8));
        assert_eq!(frame(&s[..5], usize::MAX), Ok(0));
        assert_eq!(frame(&[], usize::MAX), Ok(0));
    }

    #[test]
    fn bad_lengths_are_framing_errors() {
        let mut s = ctl(ControlMsg::Alive, 1);
        // len 4: below the header.
        s.extend([0x1a, 0x10, 0x00, 0x04, 0, 0, 0, 2]);
        assert_eq!(
            frame(&s, usize::MAX),
            Err(FramingError {
                offset: 8,
                len: 4,
                min: 8
            })
        );
        // An ACK of 8 bytes (needs 16).
        let e = frame(&[0x1a, 0x08, 0x00, 0x08, 0, 0, 0, 2], usize::MAX).unwrap_err();
        assert_eq!((e.len, e.min), (8, 16));
        // Above the maximum, even before its bytes arrive.
        let e = frame(&[0x10, 0x00, 0x10, 0x04, 0, 0, 0, 2], usize::MAX).unwrap_err();
        assert_eq!(e.len, 4100);
        assert!(e.to_string().contains("4100"), "{e}");
    }

    #[test]
    fn framed_prefix_decodes_as_each_message_alone() {
        use crate::wire::{decode_datagram, DecodeStats};
        // A bad version and an unknown type are decoder matters, not
        // framing: the rest still decodes.
        let mut s = ctl(ControlMsg::Alive, 1);
        s.extend([0x2a, 0x10, 0x00, 0x08, 0, 0, 0, 2]);
        s.extend([0x17, 0x00, 0x00, 0x08, 0, 0, 0, 3]);
        s.extend(ctl(ControlMsg::Nack { from: 5, to: 6 }, 4));
        let n = frame(&s, usize::MAX).unwrap();
        assert_eq!(n, s.len());
        let mut st = DecodeStats::default();
        let all = decode_datagram(&s[..n], &mut st);
        assert_eq!(all.len(), 4);
        assert!(all[0].is_ok() && all[3].is_ok());
        assert!(all[1].is_err() && all[2].is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600), limit in 0usize..700) {
            if let Ok(n) = frame(&bytes, limit) {
                proptest::prop_assert!(n <= bytes.len() && n <= limit);
            }
        }
    }
}
