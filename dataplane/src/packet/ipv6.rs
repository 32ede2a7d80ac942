//! IPv6 fixed header (RFC 8200). Extension headers are walked by
//! [`super::ipv6_ext::walk`].

use super::view::{fields, view};
use super::{rd16, rd32, rd_array, wr32, Error};

/// Byte offsets of the fields.
pub mod field {
    /// Version, traffic class, flow label.
    pub const VER_TC_FLOW: usize = 0;
    /// Payload length.
    pub const PAYLOAD_LEN: usize = 4;
    /// Next header.
    pub const NEXT_HEADER: usize = 6;
    /// Hop limit.
    pub const HOP_LIMIT: usize = 7;
    /// Source address.
    pub const SRC: usize = 8;
    /// Destination address.
    pub const DST: usize = 24;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;

view! {
    /// Zero-copy view of an IPv6 packet.
    ///
    /// After [`Ipv6Packet::new_checked`]: the buffer holds the fixed header and
    /// `payload_len` bytes after it; the payload is cut there.
    Ipv6Packet
}

fields!(Ipv6Packet {
    /// Payload length (everything after the fixed header, extension headers
    /// included).
    payload_len / set_payload_len: u16 = field::PAYLOAD_LEN,
    /// Next header of the fixed header.
    next_header / set_next_header: u8 = field::NEXT_HEADER,
    /// Hop limit.
    hop_limit / set_hop_limit: u8 = field::HOP_LIMIT,
});

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Checks version 6 and `40 + payload_len <= buffer length`.
    /// Jumbograms (payload length 0 with a jumbo option) are not supported:
    /// their payload is seen as empty.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[0] >> 4 != 6 {
            return Err(Error::Malformed);
        }
        if HEADER_LEN + usize::from(rd16(b, field::PAYLOAD_LEN)) > b.len() {
            return Err(Error::Truncated);
        }
        Ok(Ipv6Packet { buffer })
    }

    /// IP version (6 after `new_checked`).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 4
    }

    /// Traffic class.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        let w = rd16(self.buffer.as_ref(), 0);
        (w >> 4).to_be_bytes()[1]
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        rd32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }

    /// Total length: 40 plus the payload length.
    #[inline]
    pub fn total_len(&self) -> usize {
        HEADER_LEN + usize::from(self.payload_len())
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 16] {
        rd_array(self.buffer.as_ref(), field::SRC)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 16] {
        rd_array(self.buffer.as_ref(), field::DST)
    }

    /// Payload (extension headers and upper layer), cut at the payload
    /// length; empty if it does not fit (only possible when unchecked).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(HEADER_LEN..self.total_len())
            .unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    /// Sets version 6, traffic class and flow label (masked to 20 bits).
    #[inline]
    pub fn set_version_tc_flow(&mut self, tc: u8, flow: u32) {
        let w = (6u32 << 28) | (u32::from(tc) << 20) | (flow & 0x000f_ffff);
        wr32(self.buffer.as_mut(), field::VER_TC_FLOW, w);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: [u8; 16]) {
        self.buffer.as_mut()[field::SRC..field::SRC + 16].copy_from_slice(&a);
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: [u8; 16]) {
        self.buffer.as_mut()[field::DST..field::DST + 16].copy_from_slice(&a);
    }

    /// Mutable payload (empty if it does not fit the buffer).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.total_len();
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..end)
            .unwrap_or(&mut [])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::golden;

    #[test]
    fn deconstruct() {
        let p = Ipv6Packet::new_checked(&golden::IPV6_HBH_FRAG_UDP[14..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 36);
        assert_eq!(p.next_header(), 0);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), golden::V6_A);
        assert_eq!(p.dst_addr(), golden::V6_B);
        assert_eq!(p.payload().len(), 36);
    }

    #[test]
    fn construct() {
        let mut b = golden::IPV6_HBH_FRAG_UDP[14..].to_vec();
        b[..40].fill(0);
        let mut p = Ipv6Packet::new_unchecked(&mut b[..]);
        p.set_version_tc_flow(0, 0x12345);
        p.set_payload_len(36);
        p.set_next_header(0);
        p.set_hop_limit(64);
        p.set_src_addr(golden::V6_A);
        p.set_dst_addr(golden::V6_B);
        assert_eq!(&b[..], &golden::IPV6_HBH_FRAG_UDP[14..]);
    }

    #[test]
    fn length_checks() {
        let ip = &golden::IPV6_HBH_FRAG_UDP[14..];
        assert_eq!(
            Ipv6Packet::new_checked(&ip[..ip.len() - 1]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Ipv6Packet::new_checked(&ip[..39]).unwrap_err(),
            Error::Truncated
        );
        let mut bad = ip.to_vec();
        bad[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&bad[..]).unwrap_err(),
            Error::Malformed
        );
    }
}
