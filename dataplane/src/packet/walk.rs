//! The header walker: from an Ethernet frame (or a bare IP packet) to the
//! offsets of L3 and L4, the VLAN tags met on the way, the L4 protocol and
//! the range its segment covers.
//!
//! One walk, three users: [`super::parse_frame`] (the per-packet parser, which
//! takes the link layer from [`l2`] and reads the IP headers through the
//! checked views itself), the AF_PACKET backend's checksum completion and
//! the `ftfwctl wire decode` dissector (both through [`walk`] or [`ip`]).
//!
//! The walker checks that every header it reads is in the buffer, with
//! checked arithmetic, and never panics. It does not check the IPv4 header
//! checksum and does not require the IP payload to be complete: [`Ip::end`]
//! is where the IP length says the packet ends, and the caller decides what
//! a packet cut short (a capture's snap length, a bad frame) means.

use std::ops::Range;

use super::ethernet::{self, ethertype};
use super::ipv6_ext::{self, RoutingInfo};
use super::{checksum, ipv4, ipv6, rd16, rd_array, vlan, Error};
use crate::meta::Fragment;

/// Most VLAN tags accepted (802.1ad outer + 802.1Q inner). A frame with more
/// is [`Error::Unsupported`] rather than passed through as non-IP, so that
/// extra tags cannot hide IP traffic from the firewall.
pub const MAX_VLAN_TAGS: usize = 2;

/// The link layer of an Ethernet frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L2 {
    /// Ethertype after the VLAN tags.
    pub ethertype: u16,
    /// Offset of the L3 header (14, 18 or 22).
    pub l3_offset: usize,
    /// VLAN IDs of the tags, outermost first.
    pub vlan: [u16; MAX_VLAN_TAGS],
    /// How many entries of `vlan` are tags of this frame.
    pub tags: usize,
}

impl L2 {
    /// VLAN ID of the outermost tag.
    #[inline]
    pub fn outer_vlan(&self) -> Option<u16> {
        (self.tags > 0).then_some(self.vlan[0])
    }
}

/// Walks the Ethernet header and up to [`MAX_VLAN_TAGS`] VLAN tags (0x8100,
/// 0x88a8, 0x9100).
///
/// Errors: [`Error::Truncated`] when the header or a tag is cut,
/// [`Error::Unsupported`] for a third tag.
#[inline]
pub fn l2(frame: &[u8]) -> Result<L2, Error> {
    if frame.len() < ethernet::HEADER_LEN {
        return Err(Error::Truncated);
    }
    let mut l2 = L2 {
        ethertype: rd16(frame, ethernet::HEADER_LEN - 2),
        l3_offset: ethernet::HEADER_LEN,
        ..L2::default()
    };
    while ethertype::is_vlan(l2.ethertype) {
        if l2.tags == MAX_VLAN_TAGS {
            return Err(Error::Unsupported);
        }
        let off = l2.l3_offset;
        let end = off.checked_add(vlan::HEADER_LEN).ok_or(Error::Truncated)?;
        let tag = frame.get(off..end).ok_or(Error::Truncated)?;
        l2.vlan[l2.tags] = rd16(tag, 0) & 0x0fff;
        l2.ethertype = rd16(tag, 2);
        l2.l3_offset = end;
        l2.tags += 1;
    }
    Ok(l2)
}

/// The IP layer of a packet: addresses, the upper-layer protocol and where
/// its header starts, and where the IP length says the packet ends. All
/// offsets count from the start of the buffer given to [`ip`] or [`walk`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ip {
    /// IPv6 (else IPv4).
    pub v6: bool,
    /// Offset of the IP header.
    pub l3_offset: usize,
    /// Source address; IPv4 in the first 4 bytes, the rest zero.
    pub src: [u8; 16],
    /// Destination address of the fixed header (IPv4 in the first 4 bytes).
    pub dst: [u8; 16],
    /// Upper-layer protocol (after the IPv6 extension headers; for a later
    /// fragment, the protocol the fragment belongs to).
    pub proto: u8,
    /// Offset of the upper-layer header.
    pub l4_offset: usize,
    /// End of the packet by its IP length (may lie beyond the buffer).
    pub end: usize,
    /// Fragment position.
    pub fragment: Fragment,
    /// The last IPv6 routing header, if any.
    pub routing: Option<RoutingInfo>,
}

impl Ip {
    /// The upper-layer segment (header and payload) by the IP length.
    #[inline]
    pub fn l4_range(&self) -> Range<usize> {
        self.l4_offset..self.end
    }

    /// Length of the upper-layer segment by the IP length.
    #[inline]
    pub fn l4_len(&self) -> usize {
        self.end.saturating_sub(self.l4_offset)
    }

    /// Whether the fixed header's destination is the final one (no routing
    /// header with segments left), as the L4 pseudo-header needs.
    #[inline]
    pub fn dst_is_final(&self) -> bool {
        !matches!(self.routing, Some(r) if r.segments_left != 0)
    }

    /// One's-complement sum of the L4 pseudo-header (addresses, protocol,
    /// [`Ip::l4_len`]), or `None` when the length does not fit the field.
    #[inline]
    pub fn pseudo_header_sum(&self) -> Option<u16> {
        let len = self.l4_len();
        if self.v6 {
            Some(checksum::pseudo_header_v6(
                &self.src,
                &self.dst,
                self.proto,
                u32::try_from(len).ok()?,
            ))
        } else {
            Some(checksum::pseudo_header_v4(
                &rd_array(&self.src, 0),
                &rd_array(&self.dst, 0),
                self.proto,
                u16::try_from(len).ok()?,
            ))
        }
    }
}

/// Walks the IP header at `l3_offset` of `buf` (IPv4 when `ethertype` is
/// 0x0800, IPv6 when 0x86dd, with its extension headers).
///
/// Errors: [`Error::Unsupported`] for another ethertype,
/// [`Error::Truncated`] when a header is cut, [`Error::Malformed`] for a bad
/// version, header length or extension header chain.
pub fn ip(buf: &[u8], l3_offset: usize, ethertype: u16) -> Result<Ip, Error> {
    let l3 = buf.get(l3_offset..).ok_or(Error::Truncated)?;
    let mut ip = Ip {
        v6: false,
        l3_offset,
        src: [0; 16],
        dst: [0; 16],
        proto: 0,
        l4_offset: 0,
        end: 0,
        fragment: Fragment::None,
        routing: None,
    };
    match ethertype {
        ethertype::IPV4 => {
            if l3.len() < ipv4::HEADER_LEN {
                return Err(Error::Truncated);
            }
            let vihl = l3[ipv4::field::VER_IHL];
            let hl = usize::from(vihl & 0x0f) * 4;
            let total = usize::from(rd16(l3, ipv4::field::LENGTH));
            if vihl >> 4 != 4 || hl < ipv4::HEADER_LEN || total < hl {
                return Err(Error::Malformed);
            }
            if hl > l3.len() {
                return Err(Error::Truncated);
            }
            ip.src[..4].copy_from_slice(&l3[ipv4::field::SRC..ipv4::field::SRC + 4]);
            ip.dst[..4].copy_from_slice(&l3[ipv4::field::DST..ipv4::field::DST + 4]);
            ip.proto = l3[ipv4::field::PROTOCOL];
            ip.l4_offset = l3_offset.checked_add(hl).ok_or(Error::Truncated)?;
            ip.end = l3_offset.checked_add(total).ok_or(Error::Truncated)?;
            let frag = rd16(l3, ipv4::field::FLG_OFF);
            ip.fragment = if frag & ipv4::OFFSET_MASK != 0 {
                Fragment::Later
            } else if frag & ipv4::FLAG_MF != 0 {
                Fragment::First
            } else {
                Fragment::None
            };
        }
        ethertype::IPV6 => {
            if l3.len() < ipv6::HEADER_LEN {
                return Err(Error::Truncated);
            }
            if l3[0] >> 4 != 6 {
                return Err(Error::Malformed);
            }
            ip.v6 = true;
            ip.src = rd_array(l3, ipv6::field::SRC);
            ip.dst = rd_array(l3, ipv6::field::DST);
            let payload_len = usize::from(rd16(l3, ipv6::field::PAYLOAD_LEN));
            let payload_end = ipv6::HEADER_LEN
                .checked_add(payload_len)
                .ok_or(Error::Truncated)?
                .min(l3.len());
            let payload = l3
                .get(ipv6::HEADER_LEN..payload_end)
                .ok_or(Error::Truncated)?;
            let chain = ipv6_ext::walk(l3[ipv6::field::NEXT_HEADER], payload)?;
            ip.proto = chain.proto;
            ip.routing = chain.routing;
            ip.l4_offset = l3_offset
                .checked_add(ipv6::HEADER_LEN)
                .and_then(|o| o.checked_add(chain.l4_offset))
                .ok_or(Error::Truncated)?;
            ip.end = l3_offset
                .checked_add(ipv6::HEADER_LEN)
                .and_then(|o| o.checked_add(payload_len))
                .ok_or(Error::Truncated)?;
            ip.fragment = match chain.frag {
                Some(f) if f.offset != 0 => Fragment::Later,
                Some(f) if f.more => Fragment::First,
                _ => Fragment::None,
            };
        }
        _ => return Err(Error::Unsupported),
    }
    Ok(ip)
}

/// Every header of a frame up to L4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headers {
    /// Ethernet and VLAN tags.
    pub l2: L2,
    /// The IP layer; `None` for a non-IP ethertype.
    pub ip: Option<Ip>,
}

/// Walks an Ethernet frame: [`l2`], then [`ip`] for IPv4 and IPv6.
pub fn walk(frame: &[u8]) -> Result<Headers, Error> {
    let l2 = l2(frame)?;
    let ip = match l2.ethertype {
        ethertype::IPV4 | ethertype::IPV6 => Some(ip(frame, l2.l3_offset, l2.ethertype)?),
        _ => None,
    };
    Ok(Headers { l2, ip })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::proto;
    use crate::packet::golden;

    #[test]
    fn tcp4_offsets() {
        let h = walk(&golden::TCP_SYN).unwrap();
        assert_eq!(h.l2.ethertype, ethertype::IPV4);
        assert_eq!((h.l2.l3_offset, h.l2.tags), (14, 0));
        let ip = h.ip.unwrap();
        assert!(!ip.v6);
        assert_eq!(ip.proto, proto::TCP);
        assert_eq!(ip.l4_offset, 34);
        assert_eq!(ip.end, golden::TCP_SYN.len());
        assert_eq!(&ip.src[..4], &[192, 168, 1, 10]);
        assert_eq!(ip.fragment, Fragment::None);
    }

    #[test]
    fn vlan_tags_and_ipv6_extension_headers() {
        let h = walk(&golden::IPV6_HBH_FRAG_UDP).unwrap();
        let ip = h.ip.unwrap();
        assert!(ip.v6);
        assert_eq!(ip.proto, proto::UDP);
        assert_eq!(ip.l4_offset, h.l2.l3_offset + 40 + 16);
        assert_eq!(ip.fragment, Fragment::First);

        let mut tagged = golden::TCP_SYN[..12].to_vec();
        tagged.extend_from_slice(&[0x88, 0xa8, 0, 10, 0x81, 0x00, 0x20, 20]);
        tagged.extend_from_slice(&golden::TCP_SYN[12..]);
        let h = walk(&tagged).unwrap();
        assert_eq!(h.l2.vlan[..h.l2.tags], [10, 20]);
        assert_eq!(h.l2.outer_vlan(), Some(10));
        assert_eq!(h.ip.unwrap().l4_offset, 42);

        let mut three = tagged[..12].to_vec();
        three.extend_from_slice(&[0x81, 0x00, 0, 1]);
        three.extend_from_slice(&tagged[12..]);
        assert_eq!(walk(&three).unwrap_err(), Error::Unsupported);
    }

    #[test]
    fn non_ip_and_cut_frames() {
        let h = walk(&golden::ARP_REQUEST).unwrap();
        assert_eq!(h.l2.ethertype, ethertype::ARP);
        assert_eq!(h.ip, None);
        assert_eq!(walk(&golden::TCP_SYN[..13]).unwrap_err(), Error::Truncated);
        assert_eq!(walk(&golden::TCP_SYN[..30]).unwrap_err(), Error::Truncated);
        // Cut inside the payload: the headers are there, `end` says more.
        let ip = walk(&golden::TCP_SYN[..40]).unwrap().ip.unwrap();
        assert_eq!(ip.end, golden::TCP_SYN.len());
    }

    #[test]
    fn pseudo_header_matches_checksum_module() {
        let ip = walk(&golden::TCP_SYN).unwrap().ip.unwrap();
        let seg = &golden::TCP_SYN[ip.l4_range()];
        let total = checksum::combine(&[ip.pseudo_header_sum().unwrap(), checksum::sum(seg)]);
        assert_eq!(total, 0xffff);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            if let Ok(h) = walk(&bytes) {
                if let Some(ip) = h.ip {
                    proptest::prop_assert!(ip.l4_offset > ip.l3_offset);
                    let _ = ip.pseudo_header_sum();
                }
            }
            let _ = ip(&bytes, 0, ethertype::IPV6);
            let _ = ip(&bytes, 0, ethertype::IPV4);
        }
    }
}
