//! ICMPv6 (RFC 4443): type, code, checksum (with the IPv6 pseudo-header),
//! echo identifier and, for error messages, the embedded packet.

use super::checksum;
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

super::icmp::icmp_view!(
    /// Zero-copy view of an ICMPv6 message; the whole buffer is the message.
    Icmpv6Packet,
    is_error
);

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Whether the checksum is correct (IPv6 pseudo-header included).
    #[inline]
    pub fn verify_checksum(&self, src: &[u8; 16], dst: &[u8; 16]) -> bool {
        checksum::segment_ok_v6(src, dst, proto::ICMPV6, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
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
