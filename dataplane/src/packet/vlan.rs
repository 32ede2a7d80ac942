//! 802.1Q / 802.1ad VLAN tag: the 4 bytes that follow a VLAN TPID (the TPID
//! itself is the preceding ethertype). The view starts at the TCI.

use super::view::{fields, view};
use super::Error;

/// Length of a tag after its TPID: TCI and the inner ethertype.
pub const HEADER_LEN: usize = 4;

view! {
    /// Zero-copy view of a VLAN tag (TCI + encapsulated ethertype).
    VlanTag
}

fields!(VlanTag {
    /// The whole tag control information word.
    tci / set_tci: u16 = 0,
    /// Ethertype of what the tag encapsulates (may be another TPID).
    ethertype / set_ethertype: u16 = 2,
});

impl<T: AsRef<[u8]>> VlanTag<T> {
    /// Wraps a buffer after checking it holds a full tag.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(VlanTag { buffer })
    }

    /// Priority code point (3 bits).
    #[inline]
    pub fn pcp(&self) -> u8 {
        self.buffer.as_ref()[0] >> 5
    }

    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        self.buffer.as_ref()[0] & 0x10 != 0
    }

    /// VLAN identifier (12 bits).
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// Everything after the tag.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanTag<T> {
    /// Sets PCP, DEI and VID (VID masked to 12 bits, PCP to 3 bits).
    #[inline]
    pub fn set_fields(&mut self, pcp: u8, dei: bool, vid: u16) {
        let tci = (u16::from(pcp & 7) << 13) | (u16::from(dei) << 12) | (vid & 0x0fff);
        self.set_tci(tci);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::ethernet::ethertype;
    use crate::packet::golden;
    use crate::packet::rd16;

    #[test]
    fn deconstruct() {
        // QinQ frame: 88a8 vid 200, then 8100 vid 100 pcp 3, then IPv4.
        let f = &golden::QINQ_UDP[..];
        assert_eq!(rd16(f, 12), ethertype::QINQ);
        let outer = VlanTag::new_checked(&f[14..]).unwrap();
        assert_eq!(outer.vid(), 200);
        assert_eq!(outer.pcp(), 0);
        assert_eq!(outer.ethertype(), ethertype::VLAN);
        let inner = VlanTag::new_checked(outer.payload()).unwrap();
        assert_eq!(inner.vid(), 100);
        assert_eq!(inner.pcp(), 3);
        assert!(!inner.dei());
        assert_eq!(inner.ethertype(), ethertype::IPV4);
    }

    #[test]
    fn construct() {
        let mut b = [0u8; 4];
        let mut t = VlanTag::new_unchecked(&mut b[..]);
        t.set_fields(3, false, 100);
        t.set_ethertype(ethertype::IPV4);
        assert_eq!(b, [0x60, 0x64, 0x08, 0x00]);
        assert_eq!(VlanTag::new_checked(&b[..3]).unwrap_err(), Error::Truncated);
    }
}
