//! ICMP and ICMPv6 error messages (RFC 792, RFC 4443 section 3): their
//! [`IcmpErrorRepr`] and [`write_answer`], the one builder of the error
//! answers we send (the ACL's destination unreachable in [`super::reject`],
//! the router's time exceeded in `l3::forward`).

use std::net::IpAddr;

use super::builder::{FrameSpec, L4Spec};
use super::ethernet::{self, EthernetFrame, MacAddr};
use super::icmp::{self, IcmpPacket};
use super::icmpv6::{self, Icmpv6Packet};
use super::{ipv4, ipv6, Error};
use crate::flow::proto;
use crate::meta::{Fragment, PacketMeta};

/// Largest ICMPv4 answer, as an IP packet (RFC 1812 4.3.2.3: 576 bytes).
pub const ICMP_V4_MAX: usize = 576;
/// Largest ICMPv6 answer, as an IP packet (RFC 4443 2.4(c): minimum MTU).
pub const ICMP_V6_MAX: usize = 1280;

const _: () = assert!(ICMP_V4_MAX > ipv4::HEADER_LEN + 8 && ICMP_V6_MAX > ipv6::HEADER_LEN + 8);

/// An ICMP or ICMPv6 error message: type, code, the 4-byte word after the
/// checksum (unused, an MTU or a pointer) and the invoking packet it
/// carries. The family comes from the IP addresses given to
/// [`IcmpErrorRepr::parse`] and [`IcmpErrorRepr::emit`], which the ICMPv6
/// checksum covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpErrorRepr<'a> {
    /// Message type (an error type of the family).
    pub msg_type: u8,
    /// Code.
    pub code: u8,
    /// Rest of the header.
    pub rest: u32,
    /// As much of the invoking IP packet as the message carries.
    pub invoking: &'a [u8],
}

/// Whether `t` is an error type of the family of `v6`.
fn is_error(t: u8, v6: bool) -> bool {
    if v6 {
        icmpv6::is_error(t)
    } else {
        icmp::is_error(t)
    }
}

impl<'a> IcmpErrorRepr<'a> {
    /// Reads the error message `msg` (the whole ICMP payload of an IP
    /// packet from `src` to `dst`). The checksum must be right
    /// ([`Error::BadChecksum`]); a message that is not an error is
    /// [`Error::Unsupported`]; addresses of two families are
    /// [`Error::Malformed`].
    pub fn parse(msg: &'a [u8], src: IpAddr, dst: IpAddr) -> Result<Self, Error> {
        let (ok, v6) = match (src, dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => {
                (IcmpPacket::new_checked(msg)?.verify_checksum(), false)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => (
                Icmpv6Packet::new_checked(msg)?.verify_checksum(&s.octets(), &d.octets()),
                true,
            ),
            _ => return Err(Error::Malformed),
        };
        // Both views have the same 8-byte header.
        let p = IcmpPacket::new_checked(msg)?;
        if !is_error(p.msg_type(), v6) {
            return Err(Error::Unsupported);
        }
        if !ok {
            return Err(Error::BadChecksum);
        }
        Ok(IcmpErrorRepr {
            msg_type: p.msg_type(),
            code: p.msg_code(),
            rest: p.rest_of_header(),
            invoking: msg.get(icmp::HEADER_LEN..).ok_or(Error::Truncated)?,
        })
    }

    /// Length of the message: the 8-byte header and the invoking packet.
    pub fn buffer_len(&self) -> usize {
        icmp::HEADER_LEN + self.invoking.len()
    }

    /// Writes the message into the start of `buf` with its checksum (the
    /// ICMPv6 one over the pseudo-header of `src` and `dst`); returns
    /// [`IcmpErrorRepr::buffer_len`].
    pub fn emit(&self, buf: &mut [u8], src: IpAddr, dst: IpAddr) -> Result<usize, Error> {
        let n = self.buffer_len();
        let msg = buf.get_mut(..n).ok_or(Error::BufferTooSmall)?;
        msg[icmp::HEADER_LEN..].copy_from_slice(self.invoking);
        let mut p = IcmpPacket::new_unchecked(&mut msg[..]);
        p.set_msg_type(self.msg_type);
        p.set_msg_code(self.code);
        p.set_rest_of_header(self.rest);
        match (src, dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => p.fill_checksum(),
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                Icmpv6Packet::new_unchecked(&mut msg[..]).fill_checksum(&s.octets(), &d.octets())
            }
            _ => return Err(Error::Malformed),
        }
        Ok(n)
    }
}

/// What an error answer says and where it goes; see [`write_answer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// ICMP or ICMPv6 error type (of the offending packet's family).
    pub msg_type: u8,
    /// Code.
    pub code: u8,
    /// Source address of the answer (same family as the packet).
    pub src: IpAddr,
    /// TTL / hop limit.
    pub ttl: u8,
    /// Ethernet source of the answer.
    pub eth_src: MacAddr,
    /// Ethernet destination of the answer.
    pub eth_dst: MacAddr,
}

/// Copies the L2 header of `frame` (its first `l2_len` bytes, VLAN tags
/// included) into `out` with the given addresses; returns `l2_len`.
pub fn copy_l2(
    frame: &[u8],
    l2_len: usize,
    eth_src: MacAddr,
    eth_dst: MacAddr,
    out: &mut [u8],
) -> Result<usize, Error> {
    if l2_len < ethernet::HEADER_LEN {
        return Err(Error::Truncated);
    }
    let src = frame.get(..l2_len).ok_or(Error::Truncated)?;
    let dst = out.get_mut(..l2_len).ok_or(Error::BufferTooSmall)?;
    dst.copy_from_slice(src);
    let mut e = EthernetFrame::new_unchecked(dst);
    e.set_src_addr(eth_src);
    e.set_dst_addr(eth_dst);
    Ok(l2_len)
}

/// Writes the ICMP / ICMPv6 error `a` answering the IP packet `frame`
/// (parsed into `meta`) into `out`; returns the answer's length.
///
/// The answer keeps the frame's L2 header (VLAN tags included) with
/// `a.eth_src` / `a.eth_dst`, goes from `a.src` to the packet's source, and
/// embeds as much of the packet as fits 576 (IPv4) or 1280 (IPv6) bytes of
/// IP and `out`; `out` must hold at least the headers and 8 bytes of the
/// packet's L4 header ([`Error::BufferTooSmall`]). IP and ICMP lengths and
/// checksums are filled. Never answers non-IP frames, later fragments, ICMP
/// error messages, or across families ([`Error::Unsupported`]).
pub fn write_answer(
    frame: &[u8],
    meta: &PacketMeta,
    a: &Answer,
    out: &mut [u8],
) -> Result<usize, Error> {
    let t = &meta.tuple;
    if !meta.is_ip()
        || meta.fragment == Fragment::Later
        || meta.icmp_error.is_some()
        || a.src.is_ipv6() != t.v6
        || (t.is_icmp() && is_error(t.icmp_type(), t.v6))
    {
        return Err(Error::Unsupported);
    }
    let l3 = usize::from(meta.l3_offset);
    let ip_end = l3
        .checked_add(usize::from(meta.ip_len))
        .ok_or(Error::Truncated)?;
    let orig = frame.get(l3..ip_end).ok_or(Error::Truncated)?;
    let (ip_proto, max) = if t.v6 {
        (proto::ICMPV6, ICMP_V6_MAX)
    } else {
        (proto::ICMP, ICMP_V4_MAX)
    };
    let mut spec = FrameSpec {
        src_ip: a.src,
        dst_ip: t.src_ip(),
        ttl: a.ttl,
        ip_id: 0,
        dont_frag: false,
        l4: L4Spec::Raw { proto: ip_proto },
        ..FrameSpec::default()
    };
    let l2 = copy_l2(frame, l3, a.eth_src, a.eth_dst, out)?;
    let hdrs = spec.ip_len(icmp::HEADER_LEN);
    let room = out
        .len()
        .saturating_sub(l2.saturating_add(hdrs))
        .min(max - hdrs);
    let min_embed = usize::from(meta.l4_offset)
        .saturating_sub(l3)
        .saturating_add(8)
        .min(orig.len());
    if room < min_embed {
        return Err(Error::BufferTooSmall);
    }
    let msg = IcmpErrorRepr {
        msg_type: a.msg_type,
        code: a.code,
        rest: 0,
        invoking: &orig[..orig.len().min(room)],
    };
    spec.payload_len = msg.buffer_len();
    let n = spec.ip_len(spec.payload_len);
    let ip = out.get_mut(l2..l2 + n).ok_or(Error::BufferTooSmall)?;
    spec.write_ip_headers(ip, spec.payload_len)?;
    msg.emit(&mut ip[spec.l3_header_len()..], spec.src_ip, spec.dst_ip)?;
    Ok(l2 + n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{checksum, golden, l4_checksum_valid, parse_frame};
    use std::net::Ipv6Addr;

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::from(a)
    }

    /// The golden port unreachable: 8.8.8.8 to 10.0.0.2.
    const SRC: [u8; 4] = [8, 8, 8, 8];
    const DST: [u8; 4] = [10, 0, 0, 2];
    const MSG: std::ops::RangeFrom<usize> = 34..;

    #[test]
    fn deconstruct() {
        let msg = &golden::ICMP_PORT_UNREACH[MSG];
        let p = IcmpPacket::new_checked(msg).unwrap();
        assert_eq!((p.msg_type(), p.msg_code()), (3, 3));
        assert_eq!(p.embedded().map(<[u8]>::len), Some(28));
        assert_eq!(checksum::sum(msg), 0xffff);
    }

    #[test]
    fn construct() {
        let mut b = golden::ICMP_PORT_UNREACH[MSG].to_vec();
        b[..8].fill(0);
        let mut p = IcmpPacket::new_unchecked(&mut b[..]);
        p.set_msg_type(icmp::msg_type::DST_UNREACHABLE);
        p.set_msg_code(icmp::CODE_PORT_UNREACHABLE);
        p.fill_checksum();
        assert_eq!(&b[..], &golden::ICMP_PORT_UNREACH[MSG]);
    }

    #[test]
    fn parse() {
        let msg = &golden::ICMP_PORT_UNREACH[MSG];
        let r = IcmpErrorRepr::parse(msg, v4(SRC), v4(DST)).unwrap();
        assert_eq!(
            r,
            IcmpErrorRepr {
                msg_type: icmp::msg_type::DST_UNREACHABLE,
                code: icmp::CODE_PORT_UNREACHABLE,
                rest: 0,
                invoking: &golden::UDP_DNS[14..42],
            }
        );
        let mut bad = msg.to_vec();
        bad[10] ^= 1;
        assert_eq!(
            IcmpErrorRepr::parse(&bad, v4(SRC), v4(DST)),
            Err(Error::BadChecksum)
        );
        assert_eq!(
            IcmpErrorRepr::parse(&golden::ICMP_ECHO[34..], v4(SRC), v4(DST)),
            Err(Error::Unsupported)
        );
        assert_eq!(
            IcmpErrorRepr::parse(&msg[..7], v4(SRC), v4(DST)),
            Err(Error::Truncated)
        );
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(
            IcmpErrorRepr::parse(msg, v4(SRC), v6),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn emit() {
        let r = IcmpErrorRepr {
            msg_type: icmp::msg_type::DST_UNREACHABLE,
            code: icmp::CODE_PORT_UNREACHABLE,
            rest: 0,
            invoking: &golden::UDP_DNS[14..42],
        };
        assert_eq!(r.buffer_len(), 36);
        let mut b = [0xaau8; 40];
        assert_eq!(r.emit(&mut b, v4(SRC), v4(DST)), Ok(36));
        assert_eq!(&b[..36], &golden::ICMP_PORT_UNREACH[MSG]);
        assert_eq!(
            r.emit(&mut b[..35], v4(SRC), v4(DST)),
            Err(Error::BufferTooSmall)
        );
    }

    #[test]
    fn emit_v6_round_trips() {
        let (s, d) = (IpAddr::from(golden::V6_B), IpAddr::from(golden::V6_A));
        let r = IcmpErrorRepr {
            msg_type: icmpv6::msg_type::TIME_EXCEEDED,
            code: 0,
            rest: 0,
            invoking: &golden::ICMPV6_ECHO[14..],
        };
        let mut b = [0u8; 128];
        let n = r.emit(&mut b, s, d).unwrap();
        assert!(Icmpv6Packet::new_checked(&b[..n])
            .unwrap()
            .verify_checksum(&golden::V6_B, &golden::V6_A));
        assert_eq!(IcmpErrorRepr::parse(&b[..n], s, d), Ok(r));
    }

    #[test]
    fn answer_copies_l2_and_fills_lengths() {
        let m = parse_frame(&golden::UDP_DNS).unwrap();
        let a = Answer {
            msg_type: icmp::msg_type::DST_UNREACHABLE,
            code: icmp::CODE_PORT_UNREACHABLE,
            src: v4(SRC),
            ttl: 64,
            eth_src: golden::MAC_B,
            eth_dst: golden::MAC_A,
        };
        let mut out = [0u8; 1500];
        let n = write_answer(&golden::UDP_DNS, &m, &a, &mut out).unwrap();
        let r = parse_frame(&out[..n]).unwrap();
        assert_eq!(r.icmp_error, Some(m.tuple));
        assert_eq!(l4_checksum_valid(&out[..n], &r), Some(true));
        assert_eq!(&out[..12], &[golden::MAC_A, golden::MAC_B].concat()[..]);
        // Across families: no answer.
        let b = Answer {
            src: IpAddr::V6(Ipv6Addr::LOCALHOST),
            ..a
        };
        assert_eq!(
            write_answer(&golden::UDP_DNS, &m, &b, &mut out),
            Err(Error::Unsupported)
        );
    }
}
