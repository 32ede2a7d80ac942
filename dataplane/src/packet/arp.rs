//! ARP for Ethernet/IPv4 (RFC 826). Other hardware/protocol types are
//! rejected by [`ArpPacket::new_checked`] because the field offsets below
//! assume 6-byte hardware and 4-byte protocol addresses.

use super::ethernet::MacAddr;
use super::view::{fields, view};
use super::{rd16, rd_array, wr16, Error};

/// Byte offsets of the fields.
pub mod field {
    /// Hardware type.
    pub const HTYPE: usize = 0;
    /// Protocol type.
    pub const PTYPE: usize = 2;
    /// Hardware address length.
    pub const HLEN: usize = 4;
    /// Protocol address length.
    pub const PLEN: usize = 5;
    /// Operation.
    pub const OPER: usize = 6;
    /// Sender hardware address.
    pub const SHA: usize = 8;
    /// Sender protocol address.
    pub const SPA: usize = 14;
    /// Target hardware address.
    pub const THA: usize = 18;
    /// Target protocol address.
    pub const TPA: usize = 24;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
/// Operation: request.
pub const OP_REQUEST: u16 = 1;
/// Operation: reply.
pub const OP_REPLY: u16 = 2;

view! {
    /// Zero-copy view of an Ethernet/IPv4 ARP packet.
    ArpPacket
}

fields!(ArpPacket {
    /// Operation ([`OP_REQUEST`], [`OP_REPLY`]).
    operation / set_operation: u16 = field::OPER,
});

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Checks the length (28 bytes) and that this is Ethernet/IPv4 ARP
    /// (hardware type 1, protocol 0x0800, lengths 6 and 4); anything else is
    /// [`Error::Unsupported`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let b = buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        if rd16(b, field::HTYPE) != 1
            || rd16(b, field::PTYPE) != 0x0800
            || b[field::HLEN] != 6
            || b[field::PLEN] != 4
        {
            return Err(Error::Unsupported);
        }
        Ok(ArpPacket { buffer })
    }

    /// Hardware type (1 = Ethernet).
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::HTYPE)
    }

    /// Protocol type (0x0800 = IPv4).
    #[inline]
    pub fn protocol_type(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::PTYPE)
    }

    /// Sender MAC.
    #[inline]
    pub fn sender_hw_addr(&self) -> [u8; 6] {
        rd_array(self.buffer.as_ref(), field::SHA)
    }

    /// Sender IPv4 address.
    #[inline]
    pub fn sender_ip(&self) -> [u8; 4] {
        rd_array(self.buffer.as_ref(), field::SPA)
    }

    /// Target MAC.
    #[inline]
    pub fn target_hw_addr(&self) -> [u8; 6] {
        rd_array(self.buffer.as_ref(), field::THA)
    }

    /// Target IPv4 address.
    #[inline]
    pub fn target_ip(&self) -> [u8; 4] {
        rd_array(self.buffer.as_ref(), field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    /// Writes hardware/protocol types and lengths for Ethernet/IPv4.
    #[inline]
    pub fn set_eth_ipv4(&mut self) {
        let b = self.buffer.as_mut();
        wr16(b, field::HTYPE, 1);
        wr16(b, field::PTYPE, 0x0800);
        b[field::HLEN] = 6;
        b[field::PLEN] = 4;
    }

    /// Sets the sender MAC.
    #[inline]
    pub fn set_sender_hw_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::SHA..field::SHA + 6].copy_from_slice(&a);
    }

    /// Sets the sender IPv4 address.
    #[inline]
    pub fn set_sender_ip(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::SPA..field::SPA + 4].copy_from_slice(&a);
    }

    /// Sets the target MAC.
    #[inline]
    pub fn set_target_hw_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::THA..field::THA + 6].copy_from_slice(&a);
    }

    /// Sets the target IPv4 address.
    #[inline]
    pub fn set_target_ip(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::TPA..field::TPA + 4].copy_from_slice(&a);
    }
}

/// A validated Ethernet/IPv4 ARP request or reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpRepr {
    /// [`OP_REQUEST`] or [`OP_REPLY`].
    pub op: u16,
    /// Sender MAC.
    pub sha: MacAddr,
    /// Sender IPv4 address.
    pub spa: [u8; 4],
    /// Target MAC.
    pub tha: MacAddr,
    /// Target IPv4 address.
    pub tpa: [u8; 4],
}

impl ArpRepr {
    /// Reads a checked packet; operations other than request and reply are
    /// [`Error::Unsupported`].
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Result<ArpRepr, Error> {
        let op = p.operation();
        if op != OP_REQUEST && op != OP_REPLY {
            return Err(Error::Unsupported);
        }
        Ok(ArpRepr {
            op,
            sha: p.sender_hw_addr(),
            spa: p.sender_ip(),
            tha: p.target_hw_addr(),
            tpa: p.target_ip(),
        })
    }

    /// Length of the packet [`ArpRepr::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet (types and lengths included) into the start of
    /// `buf`; returns [`PACKET_LEN`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let b = buf.get_mut(..PACKET_LEN).ok_or(Error::BufferTooSmall)?;
        let mut p = ArpPacket::new_unchecked(b);
        p.set_eth_ipv4();
        p.set_operation(self.op);
        p.set_sender_hw_addr(self.sha);
        p.set_sender_ip(self.spa);
        p.set_target_hw_addr(self.tha);
        p.set_target_ip(self.tpa);
        Ok(PACKET_LEN)
    }

    /// A gratuitous announcement (sender and target address equal, RFC
    /// 5227 section 3).
    pub fn is_gratuitous(&self) -> bool {
        self.spa == self.tpa
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::L3Kind;
    use crate::packet::{golden, parse_frame};

    #[test]
    fn deconstruct() {
        let a = ArpPacket::new_checked(&golden::ARP_REQUEST[14..]).unwrap();
        assert_eq!(a.hardware_type(), 1);
        assert_eq!(a.protocol_type(), 0x0800);
        assert_eq!(a.operation(), OP_REQUEST);
        assert_eq!(a.sender_hw_addr(), golden::MAC_A);
        assert_eq!(a.sender_ip(), [192, 168, 1, 10]);
        assert_eq!(a.target_hw_addr(), [0; 6]);
        assert_eq!(a.target_ip(), [192, 168, 1, 1]);
    }

    #[test]
    fn construct() {
        let mut b = [0u8; 28];
        let mut a = ArpPacket::new_unchecked(&mut b[..]);
        a.set_eth_ipv4();
        a.set_operation(OP_REQUEST);
        a.set_sender_hw_addr(golden::MAC_A);
        a.set_sender_ip([192, 168, 1, 10]);
        a.set_target_hw_addr([0; 6]);
        a.set_target_ip([192, 168, 1, 1]);
        assert_eq!(&b[..], &golden::ARP_REQUEST[14..42]);
    }

    /// The repr of [`golden::ARP_REQUEST`].
    const REQUEST: ArpRepr = ArpRepr {
        op: OP_REQUEST,
        sha: golden::MAC_A,
        spa: [192, 168, 1, 10],
        tha: [0; 6],
        tpa: [192, 168, 1, 1],
    };

    #[test]
    fn parse() {
        let p = ArpPacket::new_checked(&golden::ARP_REQUEST[14..]).unwrap();
        assert_eq!(ArpRepr::parse(&p), Ok(REQUEST));
        assert!(!REQUEST.is_gratuitous());
        let mut b = golden::ARP_REQUEST;
        b[14 + 7] = 3; // RARP request
        let p = ArpPacket::new_checked(&b[14..]).unwrap();
        assert_eq!(ArpRepr::parse(&p), Err(Error::Unsupported));
    }

    #[test]
    fn emit() {
        let mut b = [0xffu8; 30];
        assert_eq!(REQUEST.buffer_len(), 28);
        assert_eq!(REQUEST.emit(&mut b), Ok(28));
        assert_eq!(&b[..28], &golden::ARP_REQUEST[14..42]);
        assert_eq!(REQUEST.emit(&mut b[..27]), Err(Error::BufferTooSmall));
    }

    #[test]
    fn parse_frame_is_non_ip() {
        let m = parse_frame(&golden::ARP_REQUEST).unwrap();
        assert_eq!(m.l3, L3Kind::NonIp);
        assert_eq!(m.ethertype, 0x0806);
        assert_eq!(m.vlan, None);
    }

    #[test]
    fn rejects_other_types() {
        let mut b = golden::ARP_REQUEST;
        b[14 + 5] = 16;
        assert_eq!(
            ArpPacket::new_checked(&b[14..]).unwrap_err(),
            Error::Unsupported
        );
        assert_eq!(
            ArpPacket::new_checked(&b[14..30]).unwrap_err(),
            Error::Truncated
        );
    }
}
