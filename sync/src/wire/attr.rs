//! TLV attributes (ftfw-wire.md 5.1).
//!
//! ```text
//! nta_len (BE u16, 4 + payload, no padding) | nta_id (BE u16) | payload | zero pad to 4
//! ```
//! The walk mirrors conntrackd's `msg2ct`: it runs while more than 4 bytes
//! are left (so 1-4 trailing bytes are ignored), rejects an `nta_len` below
//! 4 or past the end, and steps by the padded length.

use super::WireError;

/// TLV header length.
pub const ATTR_HDR_LEN: usize = 4;

/// One attribute as found in a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawAttr<'a> {
    /// Offset of the attribute in the message.
    pub at: usize,
    /// `nta_id`.
    pub id: u16,
    /// `nta_len` (4 + payload length).
    pub len: u16,
    /// The payload, without padding.
    pub payload: &'a [u8],
}

/// Walks the attributes of a message body. Yields an error once (for an
/// `nta_len` below 4 or past the end) and then stops.
#[derive(Clone, Debug)]
pub struct AttrIter<'a> {
    msg: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> AttrIter<'a> {
    /// Walks `msg[start..]`; offsets reported are offsets into `msg`.
    pub fn new(msg: &'a [u8], start: usize) -> AttrIter<'a> {
        AttrIter {
            msg,
            pos: start,
            done: false,
        }
    }
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = Result<RawAttr<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.msg.get(self.pos..).unwrap_or(&[]);
        if rest.len() <= ATTR_HDR_LEN {
            self.done = true;
            return None;
        }
        let len = u16::from_be_bytes([rest[0], rest[1]]);
        let id = u16::from_be_bytes([rest[2], rest[3]]);
        let l = usize::from(len);
        if l < ATTR_HDR_LEN || l > rest.len() {
            self.done = true;
            return Some(Err(WireError::AttrLen {
                at: self.pos,
                len,
                left: rest.len(),
            }));
        }
        let at = self.pos;
        let payload = &rest[ATTR_HDR_LEN..l];
        self.pos = self.pos.saturating_add(padded(l));
        Some(Ok(RawAttr {
            at,
            id,
            len,
            payload,
        }))
    }
}

/// `len` rounded up to a multiple of 4.
pub fn padded(len: usize) -> usize {
    len.saturating_add(3) & !3
}

/// Appends one attribute with its padding. The payload must be at most
/// 65531 bytes (all attributes here are at most 1024).
pub fn emit(out: &mut Vec<u8>, id: u16, payload: &[u8]) {
    let len = u16::try_from(payload.len().saturating_add(ATTR_HDR_LEN)).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    let pad = padded(usize::from(len)) - usize::from(len);
    out.extend_from_slice(&[0u8; 3][..pad]);
}

#[cfg(test)]
mod tests {
    use super::*;

    // L4PROTO = 6 then PORT 40000 -> 80 (from E1).
    const BYTES: [u8; 16] = [
        0x00, 0x05, 0x00, 0x02, 0x06, 0, 0, 0, 0x00, 0x08, 0x00, 0x03, 0x9c, 0x40, 0x00, 0x50,
    ];

    #[test]
    fn deconstruct() {
        let v: Vec<_> = AttrIter::new(&BYTES, 0).collect::<Result<_, _>>().unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].id, v[0].len, v[0].payload), (2, 5, &[6u8][..]));
        assert_eq!((v[1].at, v[1].id, v[1].payload), (8, 3, &BYTES[12..]));
    }

    #[test]
    fn construct() {
        let mut out = Vec::new();
        emit(&mut out, 2, &[6]);
        emit(&mut out, 3, &[0x9c, 0x40, 0x00, 0x50]);
        assert_eq!(out, BYTES);
    }

    #[test]
    fn bad_lengths() {
        let b = [0x00, 0x03, 0x00, 0x02, 0x06];
        assert_eq!(
            AttrIter::new(&b, 0).next(),
            Some(Err(WireError::AttrLen {
                at: 0,
                len: 3,
                left: 5
            }))
        );
        let b = [0x00, 0x09, 0x00, 0x02, 0x06, 0, 0, 0];
        assert!(matches!(AttrIter::new(&b, 0).next(), Some(Err(_))));
        // 4 trailing bytes are ignored, as conntrackd does.
        assert_eq!(AttrIter::new(&b[..4], 0).next(), None);
    }
}
