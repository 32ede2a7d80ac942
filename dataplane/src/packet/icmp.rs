//! ICMP for IPv4 (RFC 792): type, code, checksum, the echo/query identifier
//! and, for error messages, the embedded packet.

use super::checksum;

/// Message types.
pub mod msg_type {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DST_UNREACHABLE: u8 = 3;
    /// Source quench.
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect.
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 12;
    /// Timestamp request.
    pub const TIMESTAMP: u8 = 13;
    /// Timestamp reply.
    pub const TIMESTAMP_REPLY: u8 = 14;
    /// Information request.
    pub const INFO_REQUEST: u8 = 15;
    /// Information reply.
    pub const INFO_REPLY: u8 = 16;
    /// Address mask request.
    pub const ADDR_MASK_REQUEST: u8 = 17;
    /// Address mask reply.
    pub const ADDR_MASK_REPLY: u8 = 18;
}

/// Destination-unreachable code: port unreachable.
pub const CODE_PORT_UNREACHABLE: u8 = 3;
/// Destination-unreachable code: communication administratively prohibited
/// (RFC 1812).
pub const CODE_ADMIN_PROHIBITED: u8 = 13;

/// Whether `t` is an error message that embeds the offending packet
/// (destination unreachable, source quench, redirect, time exceeded,
/// parameter problem).
#[inline]
pub fn is_error(t: u8) -> bool {
    matches!(
        t,
        msg_type::DST_UNREACHABLE
            | msg_type::SOURCE_QUENCH
            | msg_type::REDIRECT
            | msg_type::TIME_EXCEEDED
            | msg_type::PARAM_PROBLEM
    )
}

/// Whether `t` is a query/reply message whose bytes 4..6 are an identifier
/// (echo, timestamp, information, address mask).
#[inline]
pub fn is_query(t: u8) -> bool {
    matches!(
        t,
        msg_type::ECHO_REPLY | msg_type::ECHO_REQUEST | msg_type::TIMESTAMP
            ..=msg_type::ADDR_MASK_REPLY
    )
}

/// Length of the header (type, code, checksum, 4 bytes rest-of-header).
pub const HEADER_LEN: usize = 8;

/// The view of an ICMP or ICMPv6 message, which share the 8-byte header
/// (type, code, checksum, identifier and sequence number or one
/// rest-of-header word) and the data after it; `$is_error` says which
/// types embed the offending packet. Each family adds its checksum.
macro_rules! icmp_view {
    ($(#[$attr:meta])* $name:ident, $is_error:path) => {
        $crate::packet::view::view! {
            $(#[$attr])*
            $name
        }

        $crate::packet::view::fields!($name {
            /// Message type.
            msg_type / set_msg_type: u8 = 0,
            /// Message code.
            msg_code / set_msg_code: u8 = 1,
            /// Checksum field.
            checksum / set_checksum: u16 = 2,
            /// Identifier (bytes 4..6; meaningful for query/echo types).
            ident / set_ident: u16 = 4,
            /// Sequence number (bytes 6..8; meaningful for query/echo types).
            seq_no / set_seq_no: u16 = 6,
            /// The four bytes after the checksum as one word (unused, an
            /// MTU or a pointer in error messages).
            rest_of_header / set_rest_of_header: u32 = 4,
        });

        impl<T: AsRef<[u8]>> $name<T> {
            /// Checks the 8-byte header fits.
            #[inline]
            pub fn new_checked(buffer: T) -> Result<Self, $crate::packet::Error> {
                if buffer.as_ref().len() < $crate::packet::icmp::HEADER_LEN {
                    return Err($crate::packet::Error::Truncated);
                }
                Ok($name { buffer })
            }

            /// Data after the 8-byte header: the echo payload, or for error
            /// messages the embedded IP packet (usually truncated).
            #[inline]
            pub fn data(&self) -> &[u8] {
                &self.buffer.as_ref()[$crate::packet::icmp::HEADER_LEN..]
            }

            /// For error messages, the embedded packet.
            #[inline]
            pub fn embedded(&self) -> Option<&[u8]> {
                $is_error(self.msg_type()).then(|| self.data())
            }
        }

        impl<T: AsRef<[u8]> + AsMut<[u8]>> $name<T> {
            /// Mutable data after the header.
            #[inline]
            pub fn data_mut(&mut self) -> &mut [u8] {
                &mut self.buffer.as_mut()[$crate::packet::icmp::HEADER_LEN..]
            }
        }
    };
}

pub(crate) use icmp_view;

icmp_view!(
    /// Zero-copy view of an ICMP message; the whole buffer is the message.
    IcmpPacket,
    is_error
);

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Whether the checksum over the whole buffer is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::sum(self.buffer.as_ref()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
    /// Computes and stores the checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::finish(checksum::sum(self.buffer.as_ref()));
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::golden;
    use crate::packet::Error;

    #[test]
    fn deconstruct_echo() {
        let p = IcmpPacket::new_checked(&golden::ICMP_ECHO[34..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.ident(), 0x1234);
        assert_eq!(p.seq_no(), 1);
        assert_eq!(p.data(), b"abcdefgh");
        assert!(p.embedded().is_none());
        assert!(p.verify_checksum());
    }

    #[test]
    fn deconstruct_error() {
        let p = IcmpPacket::new_checked(&golden::ICMP_PORT_UNREACH[34..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::DST_UNREACHABLE);
        assert_eq!(p.msg_code(), CODE_PORT_UNREACHABLE);
        assert_eq!(p.rest_of_header(), 0);
        assert_eq!(p.embedded(), Some(&golden::UDP_DNS[14..42]));
        assert!(p.verify_checksum());
    }

    #[test]
    fn construct() {
        let mut b = golden::ICMP_ECHO[34..].to_vec();
        b[..8].fill(0);
        let mut p = IcmpPacket::new_unchecked(&mut b[..]);
        p.set_msg_type(msg_type::ECHO_REQUEST);
        p.set_msg_code(0);
        p.set_ident(0x1234);
        p.set_seq_no(1);
        p.fill_checksum();
        assert_eq!(&b[..], &golden::ICMP_ECHO[34..]);

        let mut b = golden::ICMP_PORT_UNREACH[34..].to_vec();
        b[..8].fill(0xee);
        let mut p = IcmpPacket::new_unchecked(&mut b[..]);
        p.set_msg_type(msg_type::DST_UNREACHABLE);
        p.set_msg_code(CODE_PORT_UNREACHABLE);
        p.set_rest_of_header(0);
        p.fill_checksum();
        assert_eq!(&b[..], &golden::ICMP_PORT_UNREACH[34..]);
    }

    #[test]
    fn classes() {
        for t in [3, 4, 5, 11, 12] {
            assert!(is_error(t) && !is_query(t));
        }
        for t in [0, 8, 13, 14, 15, 16, 17, 18] {
            assert!(is_query(t) && !is_error(t));
        }
        assert!(!is_query(9) && !is_error(9));
        assert_eq!(
            IcmpPacket::new_checked(&[0u8; 7][..]).unwrap_err(),
            Error::Truncated
        );
    }
}
