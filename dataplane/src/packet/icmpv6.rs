//! ICMPv6 (RFC 4443): type, code, checksum (with the IPv6 pseudo-header),
//! echo identifier and, for error messages, the embedded packet.

use super::{checksum, rd16, rd32, wr16, wr32, Error};
use crate::flow::proto;

/// Message types.
pub mod msg_type {
    /// Destination unreachable.
    pub const DST_UNREACHABLE: u8 = 1;
    /// Packet too big.
    pub const PKT_TOO_BIG: u8 = 2;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Neighbor solicitation.
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbor advertisement.
    pub const NEIGHBOR_ADVERT: u8 = 136;
}

/// Destination-unreachable code: administratively prohibited.
pub const CODE_ADMIN_PROHIBITED: u8 = 1;
/// Destination-unreachable code: port unreachable.
pub const CODE_PORT_UNREACHABLE: u8 = 4;

/// Whether `t` is an error message that embeds the offending packet.
#[inline]
pub fn is_error(t: u8) -> bool {
    matches!(t, 1..=4)
}

/// Whether `t` carries an identifier in bytes 4..6 (echo request/reply).
#[inline]
pub fn is_query(t: u8) -> bool {
    matches!(t, msg_type::ECHO_REQUEST | msg_type::ECHO_REPLY)
}

/// Length of the header (type, code, checksum, 4 bytes of message body).
pub const HEADER_LEN: usize = 8;

/// Zero-copy view of an ICMPv6 message; the whole buffer is the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wraps a buffer without checking it.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Checks the 8-byte header fits.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Icmpv6Packet { buffer })
    }

    /// Returns the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// Message code.
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        rd16(self.buffer.as_ref(), 2)
    }

    /// Identifier (echo messages).
    #[inline]
    pub fn ident(&self) -> u16 {
        rd16(self.buffer.as_ref(), 4)
    }

    /// Sequence number (echo messages).
    #[inline]
    pub fn seq_no(&self) -> u16 {
        rd16(self.buffer.as_ref(), 6)
    }

    /// The four bytes after the checksum (MTU for packet-too-big, pointer
    /// for parameter problem).
    #[inline]
    pub fn rest_of_header(&self) -> u32 {
        rd32(self.buffer.as_ref(), 4)
    }

    /// Data after the 8-byte header.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// For error messages ([`is_error`]), the embedded packet.
    #[inline]
    pub fn embedded(&self) -> Option<&[u8]> {
        is_error(self.msg_type()).then(|| self.data())
    }

    /// Whether the checksum is correct (IPv6 pseudo-header included).
    #[inline]
    pub fn verify_checksum(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        checksum::segment_ok_v6(src, dst, proto::ICMPV6, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    /// Sets the type.
    #[inline]
    pub fn set_msg_type(&mut self, t: u8) {
        self.buffer.as_mut()[0] = t;
    }

    /// Sets the code.
    #[inline]
    pub fn set_msg_code(&mut self, c: u8) {
        self.buffer.as_mut()[1] = c;
    }

    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, c: u16) {
        wr16(self.buffer.as_mut(), 2, c);
    }

    /// Sets the identifier.
    #[inline]
    pub fn set_ident(&mut self, id: u16) {
        wr16(self.buffer.as_mut(), 4, id);
    }

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_no(&mut self, s: u16) {
        wr16(self.buffer.as_mut(), 6, s);
    }

    /// Sets the rest-of-header word.
    #[inline]
    pub fn set_rest_of_header(&mut self, w: u32) {
        wr32(self.buffer.as_mut(), 4, w);
    }

    /// Mutable data after the header.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Computes and stores the checksum (IPv6 pseudo-header included).
    #[inline]
    pub fn fill_checksum(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let c = checksum::l4_v6(src, dst, proto::ICMPV6, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::golden;

    #[test]
    fn deconstruct() {
        let p = Icmpv6Packet::new_checked(&golden::ICMPV6_ECHO[54..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.ident(), 0x0abc);
        assert_eq!(p.seq_no(), 7);
        assert_eq!(p.data(), b"ping");
        assert!(p.embedded().is_none());
        assert!(p.verify_checksum(&golden::V6_A, &golden::V6_B));
        assert!(!p.verify_checksum(&golden::V6_B, &golden::V6_B));
    }

    #[test]
    fn construct() {
        let mut b = golden::ICMPV6_ECHO[54..].to_vec();
        b[..8].fill(0);
        let mut p = Icmpv6Packet::new_unchecked(&mut b[..]);
        p.set_msg_type(msg_type::ECHO_REQUEST);
        p.set_msg_code(0);
        p.set_ident(0x0abc);
        p.set_seq_no(7);
        p.fill_checksum(&golden::V6_A, &golden::V6_B);
        assert_eq!(&b[..], &golden::ICMPV6_ECHO[54..]);
    }

    #[test]
    fn classes() {
        for t in 1..=4 {
            assert!(is_error(t) && !is_query(t));
        }
        assert!(is_query(128) && is_query(129) && !is_error(128));
        assert!(!is_error(135) && !is_query(135));
    }
}
