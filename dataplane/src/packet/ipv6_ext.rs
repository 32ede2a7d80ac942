//! IPv6 extension headers: a generic view, the fragment header, and a
//! bounded walker that finds the upper-layer protocol, its offset and the
//! fragment position.

use super::{rd16, rd32, wr16, wr32, Error};

/// Next-header values of the extension headers the walker understands.
pub mod next_header {
    /// Hop-by-hop options (must come first).
    pub const HOP_BY_HOP: u8 = 0;
    /// Routing header.
    pub const ROUTING: u8 = 43;
    /// Fragment header.
    pub const FRAGMENT: u8 = 44;
    /// Encapsulating security payload (treated as the final protocol).
    pub const ESP: u8 = 50;
    /// Authentication header (length in 4-byte units).
    pub const AH: u8 = 51;
    /// No next header (treated as the final protocol).
    pub const NO_NEXT: u8 = 59;
    /// Destination options.
    pub const DEST_OPTS: u8 = 60;

    /// Whether `nh` is an extension header the walker steps over.
    #[inline]
    pub fn is_ext(nh: u8) -> bool {
        matches!(nh, HOP_BY_HOP | ROUTING | FRAGMENT | AH | DEST_OPTS)
    }
}

/// Most extension headers the walker steps over before giving up with
/// [`Error::Unsupported`]; real traffic has at most three or four.
pub const MAX_EXT_HEADERS: usize = 8;

/// Length of the fragment header.
pub const FRAG_HEADER_LEN: usize = 8;

/// Zero-copy view of a generic extension header (hop-by-hop, routing,
/// destination options, AH): next header and length byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
    ah: bool,
}

/// Length in bytes of an extension header with kind `nh` and length byte `len`.
#[inline]
fn ext_len(nh: u8, len: u8) -> usize {
    if nh == next_header::AH {
        (usize::from(len) + 2) * 4
    } else {
        (usize::from(len) + 1) * 8
    }
}

impl<T: AsRef<[u8]>> Ipv6ExtHeader<T> {
    /// Checks the buffer holds the whole header of kind `nh` (`AH` counts its
    /// length in 4-byte units, the others in 8-byte units).
    #[inline]
    pub fn new_checked(buffer: T, nh: u8) -> Result<Self, Error> {
        let b = buffer.as_ref();
        if b.len() < 2 || ext_len(nh, b[1]) > b.len() {
            return Err(Error::Truncated);
        }
        Ok(Ipv6ExtHeader {
            buffer,
            ah: nh == next_header::AH,
        })
    }

    /// Next header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// Header length in bytes.
    #[inline]
    pub fn header_len(&self) -> usize {
        let nh = if self.ah {
            next_header::AH
        } else {
            next_header::HOP_BY_HOP
        };
        ext_len(nh, self.buffer.as_ref()[1])
    }

    /// Header contents after the two leading bytes (options, routing data...).
    #[inline]
    pub fn data(&self) -> &[u8] {
        self.buffer
            .as_ref()
            .get(2..self.header_len())
            .unwrap_or(&[])
    }
}

/// Zero-copy view of the fragment extension header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6FragHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6FragHeader<T> {
    /// Wraps a buffer without checking it.
    #[inline]
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv6FragHeader { buffer }
    }

    /// Checks the buffer holds 8 bytes.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        if buffer.as_ref().len() < FRAG_HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Ipv6FragHeader { buffer })
    }

    /// Next header.
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    /// Fragment offset in 8-byte units.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        rd16(self.buffer.as_ref(), 2) >> 3
    }

    /// More-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        rd16(self.buffer.as_ref(), 2) & 1 != 0
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u32 {
        rd32(self.buffer.as_ref(), 4)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6FragHeader<T> {
    /// Writes all fields (offset in 8-byte units, masked to 13 bits).
    #[inline]
    pub fn set_fields(&mut self, next_header: u8, offset: u16, more: bool, ident: u32) {
        let b = self.buffer.as_mut();
        b[0] = next_header;
        b[1] = 0;
        wr16(b, 2, ((offset & 0x1fff) << 3) | u16::from(more));
        wr32(b, 4, ident);
    }
}

/// Fragment header contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragInfo {
    /// Offset in 8-byte units.
    pub offset: u16,
    /// More-fragments flag.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

/// Result of walking an extension header chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtChain {
    /// Final (upper-layer) protocol; for a later fragment, the fragment
    /// header's next header.
    pub proto: u8,
    /// Offset of the upper-layer header from the start of the IPv6 payload.
    pub l4_offset: usize,
    /// Fragment header, if one was found.
    pub frag: Option<FragInfo>,
    /// A type-0 routing header was seen (deprecated by RFC 5095: source
    /// routing that lets a packet bounce between hosts behind a firewall).
    pub rh0: bool,
    /// The last routing header met, if any.
    pub routing: Option<RoutingInfo>,
}

/// Type and segments-left of a routing header (RFC 8200 section 4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutingInfo {
    /// Routing type (0 is the deprecated source route, RFC 5095).
    pub routing_type: u8,
    /// Route segments still to visit: when non-zero, the destination
    /// address of the fixed header is not the final one.
    pub segments_left: u8,
}

/// Walks the extension headers of an IPv6 payload whose first header is
/// `first` (the fixed header's next header).
///
/// Steps over hop-by-hop (first position only), routing, destination
/// options, AH and fragment headers, at most [`MAX_EXT_HEADERS`] of them.
/// Stops at a fragment header with a non-zero offset (what follows is not a
/// header). ESP, "no next header" and any other value end the chain.
///
/// Errors: [`Error::Truncated`] when a header does not fit `payload`,
/// [`Error::Malformed`] for hop-by-hop after the first position or two
/// fragment headers, [`Error::Unsupported`] for chains that are too long.
#[inline]
pub fn walk(first: u8, payload: &[u8]) -> Result<ExtChain, Error> {
    if next_header::is_ext(first) {
        walk_chain(first, payload)
    } else {
        // Most packets: no extension header at all.
        Ok(ExtChain {
            proto: first,
            l4_offset: 0,
            frag: None,
            rh0: false,
            routing: None,
        })
    }
}

/// [`walk`] when there is at least one extension header.
fn walk_chain(first: u8, payload: &[u8]) -> Result<ExtChain, Error> {
    let mut nh = first;
    let mut off = 0usize;
    let mut frag = None;
    let mut rh0 = false;
    let mut routing = None;
    for i in 0..MAX_EXT_HEADERS {
        let rest = payload.get(off..).ok_or(Error::Truncated)?;
        match nh {
            next_header::FRAGMENT => {
                if frag.is_some() {
                    return Err(Error::Malformed);
                }
                let fh = Ipv6FragHeader::new_checked(rest)?;
                let info = FragInfo {
                    offset: fh.frag_offset(),
                    more: fh.more_frags(),
                    ident: fh.ident(),
                };
                nh = fh.next_header();
                off += FRAG_HEADER_LEN;
                frag = Some(info);
                if info.offset != 0 {
                    return Ok(ExtChain {
                        proto: nh,
                        l4_offset: off,
                        frag,
                        rh0,
                        routing,
                    });
                }
            }
            next_header::HOP_BY_HOP
            | next_header::ROUTING
            | next_header::DEST_OPTS
            | next_header::AH => {
                if nh == next_header::HOP_BY_HOP && i != 0 {
                    return Err(Error::Malformed);
                }
                let h = Ipv6ExtHeader::new_checked(rest, nh)?;
                // The routing type is the first byte after next header and length.
                rh0 |= nh == next_header::ROUTING && h.data().first() == Some(&0);
                if nh == next_header::ROUTING {
                    // Every header is at least 8 bytes, so data() has 2+.
                    if let [routing_type, segments_left, ..] = *h.data() {
                        routing = Some(RoutingInfo {
                            routing_type,
                            segments_left,
                        });
                    }
                }
                nh = h.next_header();
                off += h.header_len();
            }
            _ => {
                return Ok(ExtChain {
                    proto: nh,
                    l4_offset: off,
                    frag,
                    rh0,
                    routing,
                })
            }
        }
    }
    if next_header::is_ext(nh) {
        Err(Error::Unsupported)
    } else {
        Ok(ExtChain {
            proto: nh,
            l4_offset: off,
            frag,
            rh0,
            routing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::proto;
    use crate::packet::golden;

    #[test]
    fn deconstruct() {
        let pl = &golden::IPV6_HBH_FRAG_UDP[54..];
        let hbh = Ipv6ExtHeader::new_checked(pl, next_header::HOP_BY_HOP).unwrap();
        assert_eq!(hbh.next_header(), next_header::FRAGMENT);
        assert_eq!(hbh.header_len(), 8);
        assert_eq!(hbh.data(), &[1, 4, 0, 0, 0, 0]);
        let fh = Ipv6FragHeader::new_checked(&pl[8..]).unwrap();
        assert_eq!(fh.next_header(), proto::UDP);
        assert_eq!(fh.frag_offset(), 0);
        assert!(fh.more_frags());
        assert_eq!(fh.ident(), 0xdead_beef);
    }

    #[test]
    fn construct() {
        let mut b = [0u8; 8];
        Ipv6FragHeader::new_unchecked(&mut b[..]).set_fields(proto::UDP, 0, true, 0xdead_beef);
        assert_eq!(&b[..], &golden::IPV6_HBH_FRAG_UDP[62..70]);
    }

    #[test]
    fn walk_chain() {
        let pl = &golden::IPV6_HBH_FRAG_UDP[54..];
        let c = walk(next_header::HOP_BY_HOP, pl).unwrap();
        assert_eq!(c.proto, proto::UDP);
        assert_eq!(c.l4_offset, 16);
        assert_eq!(
            c.frag,
            Some(FragInfo {
                offset: 0,
                more: true,
                ident: 0xdead_beef
            })
        );
        // Truncated chain.
        assert_eq!(
            walk(next_header::HOP_BY_HOP, &pl[..12]).unwrap_err(),
            Error::Truncated
        );
        // Hop-by-hop in second position.
        let twice = [0u8, 0, 1, 4, 0, 0, 0, 0, 17, 0, 1, 4, 0, 0, 0, 0];
        assert_eq!(
            walk(next_header::HOP_BY_HOP, &twice).unwrap_err(),
            Error::Malformed
        );
        // Too many destination-options headers.
        let long = [60u8, 0, 1, 4, 0, 0, 0, 0].repeat(MAX_EXT_HEADERS + 1);
        assert_eq!(
            walk(next_header::DEST_OPTS, &long).unwrap_err(),
            Error::Unsupported
        );
        // AH counts 4-byte units: length 1 = 12 bytes.
        let ah = [6u8, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1];
        assert_eq!(
            walk(next_header::AH, &ah).unwrap(),
            ExtChain {
                proto: 6,
                l4_offset: 12,
                frag: None,
                rh0: false,
                routing: None,
            }
        );
        // A routing header (type 4, 1 segment left) is recorded.
        let rh = [6u8, 0, 4, 1, 0, 0, 0, 0];
        assert_eq!(
            walk(next_header::ROUTING, &rh).unwrap().routing,
            Some(RoutingInfo {
                routing_type: 4,
                segments_left: 1
            })
        );
        // No extension headers at all.
        assert_eq!(
            walk(proto::TCP, &[]).unwrap(),
            ExtChain {
                proto: 6,
                l4_offset: 0,
                frag: None,
                rh0: false,
                routing: None,
            }
        );
    }

    #[test]
    fn type0_routing_header_is_flagged() {
        // Routing header: next TCP, length 2 (24 bytes), type, segments left 1.
        let rh = |ty: u8| {
            let mut h = vec![6u8, 2, ty, 1, 0, 0, 0, 0];
            h.extend_from_slice(&[0; 16]);
            h
        };
        let c = walk(next_header::ROUTING, &rh(0)).unwrap();
        assert_eq!((c.proto, c.l4_offset, c.rh0), (6, 24, true));
        // Type 2 (mobile IPv6) is not type 0.
        assert!(!walk(next_header::ROUTING, &rh(2)).unwrap().rh0);
        // Behind a destination-options header too.
        let mut chain = vec![next_header::ROUTING, 0, 1, 4, 0, 0, 0, 0];
        chain.extend(rh(0));
        assert!(walk(next_header::DEST_OPTS, &chain).unwrap().rh0);
    }
}
