//! IPv4 header (RFC 791): header length and options, total length, fragment
//! fields and the header checksum.

use super::view::{fields, view};
use super::{checksum, rd16, rd_array, wr16, Error};

/// Byte offsets of the fixed header fields.
pub mod field {
    /// Version and IHL.
    pub const VER_IHL: usize = 0;
    /// DSCP and ECN.
    pub const TOS: usize = 1;
    /// Total length.
    pub const LENGTH: usize = 2;
    /// Identification.
    pub const IDENT: usize = 4;
    /// Flags and fragment offset.
    pub const FLG_OFF: usize = 6;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Protocol.
    pub const PROTOCOL: usize = 9;
    /// Header checksum.
    pub const CHECKSUM: usize = 10;
    /// Source address.
    pub const SRC: usize = 12;
    /// Destination address.
    pub const DST: usize = 16;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = 20;
/// Don't-fragment flag in the flags/offset word.
pub const FLAG_DF: u16 = 0x4000;
/// More-fragments flag in the flags/offset word.
pub const FLAG_MF: u16 = 0x2000;
/// Fragment offset mask (units of 8 bytes).
pub const OFFSET_MASK: u16 = 0x1fff;

view! {
    /// Zero-copy view of an IPv4 packet.
    ///
    /// After [`Ipv4Packet::new_checked`]: the buffer holds the whole header
    /// (options included) and at least `total_len` bytes; the payload is cut at
    /// `total_len`, so Ethernet padding is never taken for payload.
    Ipv4Packet
}

fields!(Ipv4Packet {
    /// Total length (header plus payload).
    total_len / set_total_len: u16 = field::LENGTH,
    /// Identification.
    ident / set_ident: u16 = field::IDENT,
    /// Time to live.
    ttl / set_ttl: u8 = field::TTL,
    /// Protocol number of the payload.
    protocol / set_protocol: u8 = field::PROTOCOL,
    /// Header checksum field.
    checksum / set_checksum: u16 = field::CHECKSUM,
});

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Checks version 4, `20 <= header_len <= total_len <= buffer length`.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(Error::Malformed);
        }
        let hl = usize::from(b[field::VER_IHL] & 0x0f) * 4;
        if hl < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if hl > b.len() {
            return Err(Error::Truncated);
        }
        let tl = usize::from(rd16(b, field::LENGTH));
        if tl < hl {
            return Err(Error::Malformed);
        }
        if tl > b.len() {
            return Err(Error::Truncated);
        }
        Ok(Ipv4Packet { buffer })
    }

    /// IP version (4 after `new_checked`).
    #[inline]
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes, options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    /// DSCP (6 bits).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.buffer.as_ref()[field::TOS] >> 2
    }

    /// ECN (2 bits).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.buffer.as_ref()[field::TOS] & 3
    }

    /// Don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        rd16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }

    /// More-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        rd16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }

    /// Fragment offset in 8-byte units.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        rd16(self.buffer.as_ref(), field::FLG_OFF) & OFFSET_MASK
    }

    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset_bytes(&self) -> u32 {
        u32::from(self.frag_offset()) * 8
    }

    /// Whether the packet is any fragment (MF set or non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        rd16(self.buffer.as_ref(), field::FLG_OFF) & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 4] {
        rd_array(self.buffer.as_ref(), field::SRC)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 4] {
        rd_array(self.buffer.as_ref(), field::DST)
    }

    /// Options (between the fixed header and `header_len`); empty if the
    /// header length exceeds the buffer (only possible when unchecked).
    #[inline]
    pub fn options(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(HEADER_LEN..self.header_len())
            .unwrap_or(&[])
    }

    /// Payload: from `header_len` to `total_len`; empty if those do not fit
    /// (only possible when unchecked).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        b.get(self.header_len()..usize::from(self.total_len()))
            .unwrap_or(&[])
    }

    /// Whether the header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        match self.buffer.as_ref().get(..self.header_len()) {
            Some(h) => checksum::sum(h) == 0xffff,
            None => false,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Sets version 4 and the header length in bytes (rounded down to a
    /// multiple of 4, at most 60).
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let words = u8::try_from(len.min(60) / 4).unwrap_or(15);
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | words;
    }

    /// Sets the DSCP/ECN byte.
    #[inline]
    pub fn set_tos(&mut self, tos: u8) {
        self.buffer.as_mut()[field::TOS] = tos;
    }

    /// Sets DF, MF and the fragment offset (8-byte units, masked to 13 bits).
    #[inline]
    pub fn set_frag(&mut self, dont_frag: bool, more_frags: bool, offset: u16) {
        let mut w = offset & OFFSET_MASK;
        if dont_frag {
            w |= FLAG_DF;
        }
        if more_frags {
            w |= FLAG_MF;
        }
        wr16(self.buffer.as_mut(), field::FLG_OFF, w);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::SRC..field::SRC + 4].copy_from_slice(&a);
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::DST..field::DST + 4].copy_from_slice(&a);
    }

    /// Computes and stores the header checksum (no-op if the header length
    /// exceeds the buffer).
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        if let Some(h) = self.buffer.as_ref().get(..hl) {
            let c = checksum::finish(checksum::sum(h));
            self.set_checksum(c);
        }
    }

    /// Sets the TTL and updates the header checksum incrementally (RFC
    /// 1624; the TTL shares its 16-bit word with the protocol).
    #[inline]
    pub fn set_ttl_update_checksum(&mut self, ttl: u8) {
        let old = u16::from_be_bytes([self.ttl(), self.protocol()]);
        let new = u16::from_be_bytes([ttl, self.protocol()]);
        let c = checksum::update_u16(self.checksum(), old, new);
        self.set_ttl(ttl);
        self.set_checksum(c);
    }

    /// Mutable payload (empty if the lengths do not fit the buffer).
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, tl) = (self.header_len(), usize::from(self.total_len()));
        self.buffer.as_mut().get_mut(hl..tl).unwrap_or(&mut [])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::proto;
    use crate::packet::golden;

    fn syn_ip() -> &'static [u8] {
        &golden::TCP_SYN[14..]
    }

    #[test]
    fn deconstruct() {
        let p = Ipv4Packet::new_checked(syn_ip()).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp(), 0);
        assert_eq!(p.total_len(), 60);
        assert_eq!(p.ident(), 0x8c1d);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), proto::TCP);
        assert_eq!(p.src_addr(), [192, 168, 1, 10]);
        assert_eq!(p.dst_addr(), [93, 184, 216, 34]);
        assert!(p.verify_checksum());
        assert!(p.options().is_empty());
        assert_eq!(p.payload().len(), 40);
    }

    #[test]
    fn construct() {
        let mut b = [0u8; 60];
        b[20..].copy_from_slice(&syn_ip()[20..]);
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.set_header_len(20);
        p.set_tos(0);
        p.set_total_len(60);
        p.set_ident(0x8c1d);
        p.set_frag(true, false, 0);
        p.set_ttl(64);
        p.set_protocol(proto::TCP);
        p.set_src_addr([192, 168, 1, 10]);
        p.set_dst_addr([93, 184, 216, 34]);
        p.fill_checksum();
        assert_eq!(&b[..], syn_ip());
    }

    #[test]
    fn length_checks() {
        let ip = syn_ip();
        // Padding after total length is fine and not payload.
        let mut padded = ip.to_vec();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(
            Ipv4Packet::new_checked(&padded[..])
                .unwrap()
                .payload()
                .len(),
            40
        );
        assert_eq!(
            Ipv4Packet::new_checked(&ip[..59]).unwrap_err(),
            Error::Truncated
        );
        let mut bad = ip.to_vec();
        bad[0] = 0x44; // IHL 4
        assert_eq!(
            Ipv4Packet::new_checked(&bad[..]).unwrap_err(),
            Error::Malformed
        );
        bad[0] = 0x65; // version 6
        assert_eq!(
            Ipv4Packet::new_checked(&bad[..]).unwrap_err(),
            Error::Malformed
        );
        bad[0] = 0x45;
        bad[3] = 19; // total length < header length
        assert_eq!(
            Ipv4Packet::new_checked(&bad[..]).unwrap_err(),
            Error::Malformed
        );
        bad[0] = 0x4f; // 60-byte header in a 60-byte buffer, total length 19
        assert_eq!(
            Ipv4Packet::new_checked(&bad[..]).unwrap_err(),
            Error::Malformed
        );
    }

    #[test]
    fn ttl_rewrite_incremental() {
        let mut b = syn_ip().to_vec();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_ttl_update_checksum(63);
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
        p.set_ttl_update_checksum(0);
        assert!(p.verify_checksum());
    }
}
