//! Ethernet II frame header: destination, source, ethertype.

use super::view::{fields, view};
use super::{rd_array, Error};

/// Ethertype values the parser knows.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// 802.1Q VLAN tag (C-tag).
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service tag (S-tag, QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
    /// Pre-standard QinQ outer tag still sent by some switches.
    pub const QINQ_OLD: u16 = 0x9100;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// LLDP.
    pub const LLDP: u16 = 0x88cc;

    /// Whether `t` introduces a VLAN tag (802.1Q, 802.1ad or 0x9100).
    #[inline]
    pub fn is_vlan(t: u16) -> bool {
        matches!(t, VLAN | QINQ | QINQ_OLD)
    }
}

/// Byte ranges of the header fields.
pub mod field {
    use std::ops::Range;
    /// Destination MAC.
    pub const DST: Range<usize> = 0..6;
    /// Source MAC.
    pub const SRC: Range<usize> = 6..12;
    /// Ethertype.
    pub const ETHERTYPE: usize = 12;
}

/// Length of the Ethernet II header.
pub const HEADER_LEN: usize = 14;

/// A 6-byte MAC address.
pub type MacAddr = [u8; 6];

/// Broadcast MAC address.
pub const BROADCAST: MacAddr = [0xff; 6];

view! {
    /// Zero-copy view of an Ethernet II frame.
    EthernetFrame
}

fields!(EthernetFrame {
    /// Ethertype (possibly a VLAN TPID).
    ethertype / set_ethertype: u16 = field::ETHERTYPE,
});

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps a buffer after checking it holds a full header.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(EthernetFrame { buffer })
    }

    /// Destination MAC.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        rd_array(self.buffer.as_ref(), field::DST.start)
    }

    /// Source MAC.
    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        rd_array(self.buffer.as_ref(), field::SRC.start)
    }

    /// Everything after the 14-byte header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Sets the destination MAC.
    #[inline]
    pub fn set_dst_addr(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a);
    }

    /// Sets the source MAC.
    #[inline]
    pub fn set_src_addr(&mut self, a: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a);
    }

    /// Mutable payload.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::golden;

    #[test]
    fn deconstruct() {
        let f = EthernetFrame::new_checked(&golden::TCP_SYN[..]).unwrap();
        assert_eq!(f.dst_addr(), golden::MAC_B);
        assert_eq!(f.src_addr(), golden::MAC_A);
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.payload().len(), golden::TCP_SYN.len() - 14);
    }

    #[test]
    fn construct() {
        let mut b = golden::TCP_SYN;
        b[..14].fill(0);
        let mut f = EthernetFrame::new_unchecked(&mut b[..]);
        f.set_dst_addr(golden::MAC_B);
        f.set_src_addr(golden::MAC_A);
        f.set_ethertype(ethertype::IPV4);
        assert_eq!(b, golden::TCP_SYN);
    }

    #[test]
    fn short() {
        assert_eq!(
            EthernetFrame::new_checked(&[0u8; 13][..]).unwrap_err(),
            Error::Truncated
        );
    }
}
