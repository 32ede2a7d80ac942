//! Rewriting frames of translated flows (IPv4 and IPv6), with incremental
//! checksum updates (RFC 1624 eqn. 3, [`crate::packet::checksum::update_u16`])
//! one 16-bit word at a time: the IPv4 header checksum, the TCP and UDP
//! checksums (their pseudo-header covers the addresses; a UDP checksum of
//! zero means "none" and stays zero, a computed zero is sent as `0xffff`),
//! the ICMP checksum for echo identifiers, and for ICMP errors the embedded
//! packet's header, its checksums as far as the error quotes them, and the
//! ICMP checksum over all of it.
//!
//! IPv6 has no header checksum, and the ICMPv6 checksum covers a
//! pseudo-header like TCP's and UDP's: an address change folds into it,
//! the outer addresses of an ICMPv6 error included. (ftfw makes no IPv6
//! translations of its own, since `nat` rules are IPv4, but it translates
//! the IPv6 flows a peer translated: a conntrackd NAT66 flow committed here,
//! or `flows add` with a reply tuple.)

use crate::flow::{proto, Tuple};
use crate::meta::{Fragment, PacketMeta};
use crate::packet::checksum::update_u16;

/// IPv4 header offsets.
const IP_CSUM: usize = 10;
const IP_SRC: usize = 12;
const IP_DST: usize = 16;
/// IPv6 header offsets and length.
const IP6_NEXT: usize = 6;
const IP6_SRC: usize = 8;
const IP6_DST: usize = 24;
const IP6_LEN: usize = 40;

/// Where a family's header keeps its addresses, and their length.
fn addr_layout(v6: bool) -> (usize, usize, usize) {
    if v6 {
        (IP6_SRC, IP6_DST, 16)
    } else {
        (IP_SRC, IP_DST, 4)
    }
}

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

/// Sets the address at `at` to `new` (an IPv4 address's 4 bytes or an
/// IPv6 address's 16), word by word.
fn set_addr(
    b: &mut [u8],
    at: usize,
    new: &[u8],
    csums: &[Csum],
    outer: Option<Csum>,
) -> Option<()> {
    for (i, w) in new.chunks_exact(2).enumerate() {
        set(
            b,
            at + 2 * i,
            u16::from_be_bytes([w[0], w[1]]),
            csums,
            outer,
        )?;
    }
    Some(())
}

/// The checksums an address change in the IP header at `l3` touches (the
/// first `n` of the array): the IPv4 header's, and the transport's when it
/// covers the pseudo-header (`pseudo_l4`).
fn address_csums(v6: bool, l3: usize, pseudo_l4: Option<Csum>) -> ([Csum; 2], usize) {
    let mut cs = [Csum { at: 0, udp: false }; 2];
    let mut n = 0;
    if !v6 {
        cs[0] = Csum {
            at: l3 + IP_CSUM,
            udp: false,
        };
        n = 1;
    }
    if let Some(c) = pseudo_l4 {
        cs[n] = c;
        n += 1;
    }
    (cs, n)
}

/// Where the transport header of a packet at `l4` keeps what NAT changes:
/// the checksum, and whether it covers the pseudo-header (TCP, UDP and
/// ICMPv6 do; ICMP does not).
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
        proto::ICMP | proto::ICMPV6 if len >= 4 => (
            Some(Csum {
                at: l4 + 2,
                udp: false,
            }),
            p == proto::ICMPV6,
        ),
        // Quoted too short to hold the checksum, or no checksum we know.
        _ => (None, false),
    })
}

/// Rewrites `frame`, whose tuple is `meta.tuple`, so that it carries tuple
/// `to` (addresses; ports or the ICMP identifier). Returns `false`, having
/// changed nothing, if the frame is not an IP packet of `to`'s family whose
/// headers hold those fields.
pub fn translate_packet(frame: &mut [u8], meta: &PacketMeta, to: &Tuple) -> bool {
    translate_packet_inner(frame, meta, to).is_some()
}

fn translate_packet_inner(frame: &mut [u8], meta: &PacketMeta, to: &Tuple) -> Option<()> {
    let t = &meta.tuple;
    if t.v6 != to.v6 {
        return None;
    }
    let l3 = usize::from(meta.l3_offset);
    let l4 = usize::from(meta.l4_offset);
    let end = (l3 + usize::from(meta.ip_len)).min(frame.len());
    let hdr = if t.v6 { IP6_LEN } else { 20 };
    if l4 > end || l3 + hdr > end {
        return None;
    }
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
    // Every changed word's difference summed once (one's complement
    // addition is associative), then folded into each checksum once: the
    // addresses' into the IPv4 header's and, through the pseudo-header,
    // the transport's; the ports' (or the echo identifier's) into the
    // transport's.
    let (src, dst, len) = addr_layout(t.v6);
    let mut addr_delta = put_words(frame, l3 + src, &to.src[..len])?;
    addr_delta += put_words(frame, l3 + dst, &to.dst[..len])?;
    if !t.v6 && addr_delta != 0 {
        fold_into(frame, l3 + IP_CSUM, false, addr_delta)?;
    }
    if !has_l4 {
        return Some(());
    }
    let mut l4_delta = if pseudo { addr_delta } else { 0 };
    if ported {
        l4_delta += put_word(frame, l4, to.src_port)?;
        l4_delta += put_word(frame, l4 + 2, to.dst_port)?;
    } else if t.is_icmp() && meta.icmp_error.is_none() {
        l4_delta += put_word(frame, l4 + 4, to.src_port)?;
    }
    if let (Some(c), true) = (l4c, l4_delta != 0) {
        fold_into(frame, c.at, c.udp, l4_delta)?;
    }
    Some(())
}

/// Writes `new` at `at`; returns its difference from the old word for
/// [`fold_into`] (`!old + new`, or 0 when it did not change).
#[inline]
fn put_word(b: &mut [u8], at: usize, new: u16) -> Option<u64> {
    let old = put(b, at, new)?;
    Some(if old == new {
        0
    } else {
        u64::from(!old) + u64::from(new)
    })
}

/// [`put_word`] for each 16-bit word of `new` (an address), from `at`.
#[inline]
fn put_words(b: &mut [u8], at: usize, new: &[u8]) -> Option<u64> {
    let mut d = 0;
    for (i, w) in new.chunks_exact(2).enumerate() {
        d += put_word(b, at + 2 * i, u16::from_be_bytes([w[0], w[1]]))?;
    }
    Some(d)
}

/// Folds the summed word differences `delta` into the checksum at `at`
/// (RFC 1624 eqn. 3 over all of them). `udp`: a zero checksum means none
/// and stays zero; a computed zero is sent as `0xffff`.
#[inline]
fn fold_into(b: &mut [u8], at: usize, udp: bool, delta: u64) -> Option<()> {
    let cur = rd16(b, at)?;
    if udp && cur == 0 {
        return Some(());
    }
    let mut n = crate::packet::checksum::update_sum(cur, delta);
    if udp && n == 0 {
        n = 0xffff;
    }
    put(b, at, n).map(|_| ())
}

/// Rewrites an ICMP error whose embedded packet (tuple `meta.icmp_error`)
/// belongs to a translated flow: the embedded packet gets tuple `inner_to`
/// (its headers and the checksums they quote), and the outer addresses
/// that were the embedded packet's endpoints follow them (the outer source
/// if it was the embedded destination, the outer destination if it was
/// the embedded source). Returns `false`, having changed nothing that
/// matters, if the frame is not such an error (ICMP about IPv4, ICMPv6
/// about IPv6 without extension headers in the quote).
pub fn translate_error(frame: &mut [u8], meta: &PacketMeta, inner_to: &Tuple) -> bool {
    translate_error_inner(frame, meta, inner_to).is_some()
}

/// Where an error's embedded packet at `e` has its transport header, and
/// whether it is a later fragment (no transport header quoted).
fn embedded_l4(frame: &[u8], e: usize, end: usize, from: &Tuple) -> Option<(usize, bool)> {
    if from.v6 {
        // The quoted header's next header must be the transport itself.
        if e + IP6_LEN > end || frame[e + IP6_NEXT] != from.proto {
            return None;
        }
        return Some((e + IP6_LEN, false));
    }
    if e + 20 > end {
        return None;
    }
    let ehl = usize::from(frame[e] & 0x0f) * 4;
    if ehl < 20 || e + ehl > end {
        return None;
    }
    let later = frame
        .get(e + 6..e + 8)
        .is_some_and(|f| u16::from_be_bytes([f[0], f[1]]) & crate::packet::ipv4::OFFSET_MASK != 0);
    Some((e + ehl, later))
}

fn translate_error_inner(frame: &mut [u8], meta: &PacketMeta, inner_to: &Tuple) -> Option<()> {
    let from = meta.icmp_error?;
    let v6 = meta.tuple.v6;
    if from.v6 != v6 || inner_to.v6 != v6 || !meta.tuple.is_icmp() {
        return None;
    }
    let l3 = usize::from(meta.l3_offset);
    let l4 = usize::from(meta.l4_offset);
    let end = (l3 + usize::from(meta.ip_len)).min(frame.len());
    let e = l4 + 8;
    let (el4, later) = embedded_l4(frame, e, end, &from)?;
    let icmp = Csum {
        at: l4 + 2,
        udp: false,
    };
    let (l4c, pseudo) = if later {
        (None, false)
    } else {
        l4_layout(from.proto, el4, end - el4)?
    };
    let ported = crate::flow::has_ports(from.proto) && !later;
    let icmp_inner = from.is_icmp() && !later;
    if (ported && el4 + 4 > end) || (icmp_inner && el4 + 8 > end) {
        return None;
    }
    let (src, dst, len) = addr_layout(v6);
    // Outer addresses that were the embedded packet's endpoints.
    let outer_src = frame.get(l3 + src..l3 + src + len)? == &from.dst[..len];
    let outer_dst = frame.get(l3 + dst..l3 + dst + len)? == &from.src[..len];
    let (addr_cs, n) = address_csums(v6, e, l4c.filter(|_| pseudo));
    set_addr(
        frame,
        e + src,
        &inner_to.src[..len],
        &addr_cs[..n],
        Some(icmp),
    )?;
    set_addr(
        frame,
        e + dst,
        &inner_to.dst[..len],
        &addr_cs[..n],
        Some(icmp),
    )?;
    let l4cs: &[Csum] = match &l4c {
        Some(c) => std::slice::from_ref(c),
        None => &[],
    };
    if ported {
        set(frame, el4, inner_to.src_port, l4cs, Some(icmp))?;
        set(frame, el4 + 2, inner_to.dst_port, l4cs, Some(icmp))?;
    } else if icmp_inner {
        set(frame, el4 + 4, inner_to.src_port, l4cs, Some(icmp))?;
    }
    // The outer addresses: under the IPv4 header checksum, or (IPv6) the
    // ICMPv6 checksum's pseudo-header.
    let outer: [Csum; 1] = if v6 {
        [icmp]
    } else {
        [Csum {
            at: l3 + IP_CSUM,
            udp: false,
        }]
    };
    if outer_src {
        set_addr(frame, l3 + src, &inner_to.dst[..len], &outer, None)?;
    }
    if outer_dst {
        set_addr(frame, l3 + dst, &inner_to.src[..len], &outer, None)?;
    }
    Some(())
}

/// Where the outer addresses of an IP packet are (source, destination,
/// length), for callers that read them back after a rewrite.
pub fn outer_addresses<'a>(frame: &'a [u8], meta: &PacketMeta) -> Option<(&'a [u8], &'a [u8])> {
    let l3 = usize::from(meta.l3_offset);
    let (src, dst, len) = addr_layout(meta.tuple.v6);
    Some((
        frame.get(l3 + src..l3 + src + len)?,
        frame.get(l3 + dst..l3 + dst + len)?,
    ))
}
