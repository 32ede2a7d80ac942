//! TCP header (RFC 9293): ports, sequence numbers, data offset, flags,
//! window, checksum. Options are decoded by [`super::tcp_opt`].

use super::tcp_opt::{TcpOptionIter, TcpOptions};
use super::view::{fields, view};
use super::{checksum, Error};
use crate::flow::proto;

/// Byte offsets of the fields.
pub mod field {
    /// Source port.
    pub const SRC_PORT: usize = 0;
    /// Destination port.
    pub const DST_PORT: usize = 2;
    /// Sequence number.
    pub const SEQ: usize = 4;
    /// Acknowledgement number.
    pub const ACK: usize = 8;
    /// Data offset (high nibble) and NS/reserved bits.
    pub const DATA_OFF: usize = 12;
    /// Flags.
    pub const FLAGS: usize = 13;
    /// Window.
    pub const WINDOW: usize = 14;
    /// Checksum.
    pub const CHECKSUM: usize = 16;
    /// Urgent pointer.
    pub const URGENT: usize = 18;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = 20;
/// Largest header (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;

view! {
    /// Zero-copy view of a TCP segment. The buffer should end where the IP
    /// payload ends: the payload and checksum functions use all of it.
    ///
    /// After [`TcpPacket::new_checked`]: data offset `>= 5` and the header
    /// (options included) fits the buffer.
    TcpPacket
}

fields!(TcpPacket {
    /// Source port.
    src_port / set_src_port: u16 = field::SRC_PORT,
    /// Destination port.
    dst_port / set_dst_port: u16 = field::DST_PORT,
    /// Sequence number.
    seq_number / set_seq_number: u32 = field::SEQ,
    /// Acknowledgement number.
    ack_number / set_ack_number: u32 = field::ACK,
    /// Flags byte (CWR ECE URG ACK PSH RST SYN FIN), see
    /// [`crate::meta::tcp_flags`].
    flags / set_flags: u8 = field::FLAGS,
    /// Window (unscaled).
    window_len / set_window_len: u16 = field::WINDOW,
    /// Checksum field.
    checksum / set_checksum: u16 = field::CHECKSUM,
    /// Urgent pointer.
    urgent_ptr / set_urgent_ptr: u16 = field::URGENT,
});

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Checks the fixed header fits, data offset `>= 5` ([`Error::Malformed`]
    /// otherwise) and the whole header fits ([`Error::Truncated`]).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = usize::from(b[field::DATA_OFF] >> 4) * 4;
        if hl < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if hl > b.len() {
            return Err(Error::Truncated);
        }
        Ok(TcpPacket { buffer })
    }

    /// Header length in bytes (data offset times 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The NS (ECN nonce, now reserved) bit.
    #[inline]
    pub fn ns(&self) -> bool {
        self.buffer.as_ref()[field::DATA_OFF] & 1 != 0
    }

    /// SYN flag.
    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & crate::meta::tcp_flags::SYN != 0
    }

    /// ACK flag.
    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & crate::meta::tcp_flags::ACK != 0
    }

    /// FIN flag.
    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & crate::meta::tcp_flags::FIN != 0
    }

    /// RST flag.
    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & crate::meta::tcp_flags::RST != 0
    }

    /// Raw options bytes (empty if the header does not fit; only possible
    /// when unchecked).
    #[inline]
    pub fn options(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(HEADER_LEN..self.header_len())
            .unwrap_or(&[])
    }

    /// Iterator over the options.
    #[inline]
    pub fn option_iter(&self) -> TcpOptionIter<'_> {
        TcpOptionIter::new(self.options())
    }

    /// The options the conntrack cares about (stops at a malformed option).
    #[inline]
    pub fn parsed_options(&self) -> TcpOptions {
        TcpOptions::parse(self.options())
    }

    /// Payload: everything after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }

    /// Whether the checksum is correct for a segment carried over IPv4.
    #[inline]
    pub fn verify_checksum_v4(&self, src: &[u8; 4], dst: &[u8; 4]) -> bool {
        checksum::segment_ok_v4(src, dst, proto::TCP, self.buffer.as_ref())
    }

    /// Whether the checksum is correct for a segment carried over IPv6.
    #[inline]
    pub fn verify_checksum_v6(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        checksum::segment_ok_v6(src, dst, proto::TCP, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the header length in bytes (rounded down to a multiple of 4, at
    /// most 60); clears the NS/reserved bits.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let words = u8::try_from(len.min(MAX_HEADER_LEN) / 4).unwrap_or(15);
        self.buffer.as_mut()[field::DATA_OFF] = words << 4;
    }

    /// Mutable options bytes.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..hl)
            .unwrap_or(&mut [])
    }

    /// Mutable payload.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        self.buffer.as_mut().get_mut(hl..).unwrap_or(&mut [])
    }

    /// Computes and stores the checksum for IPv4 (whole buffer is the segment).
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: &[u8; 4], dst: &[u8; 4]) {
        self.set_checksum(0);
        let c = checksum::l4_v4(src, dst, proto::TCP, self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Computes and stores the checksum for IPv6 (whole buffer is the segment).
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: &[u8; 16], dst: &[u8; 16]) {
        self.set_checksum(0);
        let c = checksum::l4_v6(src, dst, proto::TCP, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::tcp_flags;
    use crate::packet::golden;

    fn seg() -> &'static [u8] {
        &golden::TCP_SYN[34..]
    }

    #[test]
    fn deconstruct() {
        let t = TcpPacket::new_checked(seg()).unwrap();
        assert_eq!(t.src_port(), 54321);
        assert_eq!(t.dst_port(), 443);
        assert_eq!(t.seq_number(), 0x1a2b_3c4d);
        assert_eq!(t.ack_number(), 0);
        assert_eq!(t.header_len(), 40);
        assert_eq!(t.flags(), tcp_flags::SYN);
        assert!(t.syn() && !t.ack() && !t.fin() && !t.rst() && !t.ns());
        assert_eq!(t.window_len(), 64240);
        assert_eq!(t.urgent_ptr(), 0);
        assert_eq!(t.options().len(), 20);
        assert!(t.payload().is_empty());
        let o = t.parsed_options();
        assert_eq!(o.mss, Some(1460));
        assert_eq!(o.wscale, Some(7));
        assert!(o.sack_perm);
        assert_eq!(o.timestamps, Some((0x0011_2233, 0)));
        assert!(t.verify_checksum_v4(&[192, 168, 1, 10], &[93, 184, 216, 34]));
        assert!(!t.verify_checksum_v4(&[192, 168, 1, 11], &[93, 184, 216, 34]));
    }

    #[test]
    fn construct() {
        let mut b = [0u8; 40];
        let mut t = TcpPacket::new_unchecked(&mut b[..]);
        t.set_src_port(54321);
        t.set_dst_port(443);
        t.set_seq_number(0x1a2b_3c4d);
        t.set_ack_number(0);
        t.set_header_len(40);
        t.set_flags(tcp_flags::SYN);
        t.set_window_len(64240);
        t.set_urgent_ptr(0);
        let o = TcpOptions {
            mss: Some(1460),
            wscale: Some(7),
            sack_perm: true,
            timestamps: Some((0x0011_2233, 0)),
        };
        assert_eq!(o.emit(t.options_mut()), Ok(20));
        t.fill_checksum_v4(&[192, 168, 1, 10], &[93, 184, 216, 34]);
        assert_eq!(&b[..], seg());
    }

    #[test]
    fn length_checks() {
        assert_eq!(
            TcpPacket::new_checked(&seg()[..19]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            TcpPacket::new_checked(&seg()[..39]).unwrap_err(),
            Error::Truncated
        );
        let mut bad = seg().to_vec();
        bad[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&bad[..]).unwrap_err(),
            Error::Malformed
        );
    }
}
