//! UDP header (RFC 768).

use super::view::{fields, view};
use super::{checksum, rd16, Error};
use crate::flow::proto;

/// Byte offsets of the fields.
pub mod field {
    /// Source port.
    pub const SRC_PORT: usize = 0;
    /// Destination port.
    pub const DST_PORT: usize = 2;
    /// Length (header plus payload).
    pub const LENGTH: usize = 4;
    /// Checksum.
    pub const CHECKSUM: usize = 6;
}

/// Length of the header.
pub const HEADER_LEN: usize = 8;

view! {
    /// Zero-copy view of a UDP datagram.
    ///
    /// After [`UdpPacket::new_checked`]: `8 <= length <= buffer length`; the
    /// payload is cut at the length field.
    UdpPacket
}

fields!(UdpPacket {
    /// Source port.
    src_port / set_src_port: u16 = field::SRC_PORT,
    /// Destination port.
    dst_port / set_dst_port: u16 = field::DST_PORT,
    /// Length field.
    len / set_len: u16 = field::LENGTH,
    /// Checksum field (0 means "none" over IPv4).
    checksum / set_checksum: u16 = field::CHECKSUM,
});

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Checks the header fits and `8 <= length <= buffer length`.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(rd16(b, field::LENGTH));
        if len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len > b.len() {
            return Err(Error::Truncated);
        }
        Ok(UdpPacket { buffer })
    }

    /// Whether the payload is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    /// The datagram as the length field delimits it (empty if it does not
    /// fit; only possible when unchecked).
    #[inline]
    fn datagram(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(..usize::from(self.len()))
            .unwrap_or(&[])
    }

    /// Payload, cut at the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.datagram().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// Whether the checksum is correct over IPv4 (a zero checksum is "not
    /// computed" and accepted).
    #[inline]
    pub fn verify_checksum_v4(&self, src: &[u8; 4], dst: &[u8; 4]) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        checksum::segment_ok_v4(src, dst, proto::UDP, self.datagram())
    }

    /// Whether the checksum is correct over IPv6 (where it is mandatory).
    #[inline]
    pub fn verify_checksum_v6(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        self.checksum() != 0 && checksum::segment_ok_v6(src, dst, proto::UDP, self.datagram())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    /// Mutable payload, cut at the length field.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = usize::from(self.len());
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..len)
            .unwrap_or(&mut [])
    }

    /// Computes and stores the checksum over IPv4 (a computed 0 is sent as
    /// 0xffff).
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: &[u8; 4], dst: &[u8; 4]) {
        self.set_checksum(0);
        let c = checksum::l4_v4(src, dst, proto::UDP, self.datagram());
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }

    /// Computes and stores the checksum over IPv6.
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let c = checksum::l4_v6(src, dst, proto::UDP, self.datagram());
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::golden;

    fn dgram() -> &'static [u8] {
        &golden::UDP_DNS[34..]
    }

    #[test]
    fn deconstruct() {
        let u = UdpPacket::new_checked(dgram()).unwrap();
        assert_eq!(u.src_port(), 53000);
        assert_eq!(u.dst_port(), 53);
        assert_eq!(u.len(), 37);
        assert!(!u.is_empty());
        assert_eq!(u.payload().len(), 29);
        assert_eq!(&u.payload()[..2], &[0xab, 0xcd]);
        assert!(u.verify_checksum_v4(&[10, 0, 0, 2], &[8, 8, 8, 8]));
        assert!(!u.verify_checksum_v4(&[10, 0, 0, 3], &[8, 8, 8, 8]));
    }

    #[test]
    fn construct() {
        let mut b = dgram().to_vec();
        b[..8].fill(0);
        let mut u = UdpPacket::new_unchecked(&mut b[..]);
        u.set_src_port(53000);
        u.set_dst_port(53);
        u.set_len(37);
        u.fill_checksum_v4(&[10, 0, 0, 2], &[8, 8, 8, 8]);
        assert_eq!(&b[..], dgram());
    }

    #[test]
    fn length_checks() {
        assert_eq!(
            UdpPacket::new_checked(&dgram()[..7]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            UdpPacket::new_checked(&dgram()[..36]).unwrap_err(),
            Error::Truncated
        );
        let mut bad = dgram().to_vec();
        bad[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&bad[..]).unwrap_err(),
            Error::Malformed
        );
    }
}
