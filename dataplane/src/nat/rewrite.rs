//! Rewriting frames of translated flows (IPv4), with incremental checksum
//! updates (RFC 1624 eqn. 3, [`crate::packet::checksum::update_u16`]) one
//! 16-bit word at a time: the IPv4 header checksum, the TCP and UDP
//! checksums (their pseudo-header covers the addresses; a UDP checksum of
//! zero means "none" and stays zero, a computed zero is sent as `0xffff`),
//! the ICMP checksum for echo identifiers, and for ICMP errors the embedded
//! packet's header, its checksums as far as the error quotes them, and the
//! ICMP checksum over all of it.

use crate::flow::{proto, Tuple};
use crate::meta::{Fragment, PacketMeta};
use crate::packet::checksum::update_u16;

/// IPv4 header offsets.
const IP_CSUM: usize = 10;
const IP_SRC: usize = 12;
const IP_DST: usize = 16;

fn rd16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Writes `new` at `at`; returns the old value.
fn put(b: &mut [u8], at: usize, new: u16) -> Option<u16> {
    let old = rd16(b, at)?;
    b.get_mut(at..at + 2)?.copy_from_slice(&new.to_be_bytes());
    Some(old)
}

/// A checksum field to keep right while words change.
#[derive(Clone, Copy)]
struct Csum {
    at: usize,
    /// UDP: zero means no checksum; a computed zero is sent as `0xffff`.
    udp: bool,
}

/// Folds one word's change into the checksum `c`; returns the checksum
/// field's old and new value (equal when nothing was written).
fn fix(b: &mut [u8], c: Csum, old: u16, new: u16) -> Option<(u16, u16)> {
    let cur = rd16(b, c.at)?;
    if c.udp && cur == 0 {
        return Some((0, 0));
    }
    let mut n = update_u16(cur, old, new);
    if c.udp && n == 0 {
        n = 0xffff;
    }
    put(b, c.at, n)?;
    Some((cur, n))
}

/// Sets word `at` to `new` and folds the change into `csums`; a change of
/// a checksum in `csums` is folded into `outer` (the ICMP checksum of an
/// error around the words), as is the word's own change.
fn set(b: &mut [u8], at: usize, new: u16, csums: &[Csum], outer: Option<Csum>) -> Option<()> {
    let old = put(b, at, new)?;
    if old == new {
        return Some(());
    }
    for &c in csums {
        let (co, cn) = fix(b, c, old, new)?;
        if let Some(o) = outer {
            fix(b, o, co, cn)?;
        }
    }
    if let Some(o) = outer {
        fix(b, o, old, new)?;
    }
    Some(())
}

/// Sets the IPv4 address at `at` (two words).
fn set_addr(
    b: &mut [u8],
    at: usize,
    new: &[u8; 16],
    csums: &[Csum],
    outer: Option<Csum>,
) -> Option<()> {
    set(b, at, u16::from_be_bytes([new[0], new[1]]), csums, outer)?;
    set(
        b,
        at + 2,
        u16::from_be_bytes([new[2], new[3]]),
        csums,
        outer,
    )
}

/// Where the transport header of an IPv4 packet at `l4` keeps what NAT
/// changes: the checksum (with whether it covers the pseudo-header) and the
/// offset of the first port (TCP/UDP) or the ICMP identifier.
fn l4_layout(p: u8, l4: usize, len: usize) -> Option<(Option<Csum>, bool)> {
    Some(match p {
        proto::TCP if len >= 18 => (
            Some(Csum {
                at: l4 + 16,
                udp: false,
            }),
            true,
        ),
        proto::UDP | proto::UDPLITE if len >= 8 => (
            Some(Csum {
                at: l4 + 6,
                udp: p == proto::UDP,
            }),
            true,
        ),
        proto::ICMP if len >= 4 => (
            Some(Csum {
                at: l4 + 2,
                udp: false,
            }),
            false,
        ),
        // Quoted too short to hold the checksum, or no checksum we know.
        _ => (None, false),
    })
}

/// Rewrites `frame`, whose tuple is `meta.tuple`, so that it carries tuple
/// `to` (addresses; ports or the ICMP identifier). Returns `false`, having
/// changed nothing, if the frame is not an IPv4 packet whose headers hold
/// those fields.
pub fn translate_packet(frame: &mut [u8], meta: &PacketMeta, to: &Tuple) -> bool {
    translate_packet_inner(frame, meta, to).is_some()
}

fn translate_packet_inner(frame: &mut [u8], meta: &PacketMeta, to: &Tuple) -> Option<()> {
    let t = &meta.tuple;
    if t.v6 || to.v6 {
        return None;
    }
    let l3 = usize::from(meta.l3_offset);
    let l4 = usize::from(meta.l4_offset);
    let end = (l3 + usize::from(meta.ip_len)).min(frame.len());
    if l4 > end || l3 + 20 > end {
        return None;
    }
    let ip = Csum {
        at: l3 + IP_CSUM,
        udp: false,
    };
    let has_l4 = meta.fragment != Fragment::Later;
    let (l4c, pseudo) = if has_l4 {
        l4_layout(t.proto, l4, end - l4)?
    } else {
        (None, false)
    };
    // Check every field is inside the frame before changing anything.
    let ported = crate::flow::has_ports(t.proto);
    if has_l4 && (ported || t.is_icmp()) && l4 + 8 > end {
        return None;
    }
    let mut with_pseudo = [ip; 2];
    let n = match l4c {
        Some(c) if pseudo => {
            with_pseudo[1] = c;
            2
        }
        _ => 1,
    };
    set_addr(frame, l3 + IP_SRC, &to.src, &with_pseudo[..n], None)?;
    set_addr(frame, l3 + IP_DST, &to.dst, &with_pseudo[..n], None)?;
    if !has_l4 {
        return Some(());
    }
    let l4cs: &[Csum] = match &l4c {
        Some(c) => std::slice::from_ref(c),
        None => &[],
    };
    if ported {
        set(frame, l4, to.src_port, l4cs, None)?;
        set(frame, l4 + 2, to.dst_port, l4cs, None)?;
    } else if t.is_icmp() && meta.icmp_error.is_none() {
        set(frame, l4 + 4, to.src_port, l4cs, None)?;
    }
    Some(())
}

/// Rewrites an ICMP error whose embedded packet (tuple `meta.icmp_error`)
/// belongs to a translated flow: the embedded packet gets tuple `inner_to`
/// (its headers and the checksums they quote), and the outer addresses
/// that were the embedded packet's endpoints follow them (the outer source
/// if it was the embedded destination, the outer destination if it was
/// the embedded source). Returns `false`, having changed nothing that
/// matters, if the frame is not such an IPv4 error.
pub fn translate_error(frame: &mut [u8], meta: &PacketMeta, inner_to: &Tuple) -> bool {
    translate_error_inner(frame, meta, inner_to).is_some()
}

fn translate_error_inner(frame: &mut [u8], meta: &PacketMeta, inner_to: &Tuple) -> Option<()> {
    let from = meta.icmp_error?;
    if meta.tuple.v6 || from.v6 || meta.tuple.proto != proto::ICMP {
        return None;
    }
    let l3 = usize::from(meta.l3_offset);
    let l4 = usize::from(meta.l4_offset);
    let end = (l3 + usize::from(meta.ip_len)).min(frame.len());
    let e = l4 + 8;
    if e + 20 > end {
        return None;
    }
    let ehl = usize::from(frame[e] & 0x0f) * 4;
    let el4 = e + ehl;
    if ehl < 20 || el4 > end {
        return None;
    }
    let icmp = Csum {
        at: l4 + 2,
        udp: false,
    };
    let inner_ip = Csum {
        at: e + IP_CSUM,
        udp: false,
    };
    let later = frame
        .get(e + 6..e + 8)
        .is_some_and(|f| u16::from_be_bytes([f[0], f[1]]) & crate::packet::ipv4::OFFSET_MASK != 0);
    let (l4c, pseudo) = if later {
        (None, false)
    } else {
        l4_layout(from.proto, el4, end - el4)?
    };
    let ported = crate::flow::has_ports(from.proto) && !later;
    let icmp_inner = from.proto == proto::ICMP && !later;
    if (ported && el4 + 4 > end) || (icmp_inner && el4 + 8 > end) {
        return None;
    }
    // Outer addresses that were the embedded packet's endpoints.
    let outer_src = frame.get(l3 + IP_SRC..l3 + IP_SRC + 4)? == &from.dst[..4];
    let outer_dst = frame.get(l3 + IP_DST..l3 + IP_DST + 4)? == &from.src[..4];
    let mut addr_cs = [inner_ip; 2];
    let n = match l4c {
        Some(c) if pseudo => {
            addr_cs[1] = c;
            2
        }
        _ => 1,
    };
    set_addr(frame, e + IP_SRC, &inner_to.src, &addr_cs[..n], Some(icmp))?;
    set_addr(frame, e + IP_DST, &inner_to.dst, &addr_cs[..n], Some(icmp))?;
    let l4cs: &[Csum] = match &l4c {
        Some(c) => std::slice::from_ref(c),
        None => &[],
    };
    if ported {
        set(frame, el4, inner_to.src_port, l4cs, Some(icmp))?;
        set(frame, el4 + 2, inner_to.dst_port, l4cs, Some(icmp))?;
    } else if icmp_inner && from.is_icmp() {
        set(frame, el4 + 4, inner_to.src_port, l4cs, Some(icmp))?;
    }
    let ip = [Csum {
        at: l3 + IP_CSUM,
        udp: false,
    }];
    if outer_src {
        set_addr(frame, l3 + IP_SRC, &inner_to.dst, &ip, None)?;
    }
    if outer_dst {
        set_addr(frame, l3 + IP_DST, &inner_to.src, &ip, None)?;
    }
    Some(())
}
