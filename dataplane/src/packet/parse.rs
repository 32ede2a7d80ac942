//! [`parse_frame`]: the hot-path walk from Ethernet to L4 that fills a
//! [`PacketMeta`]. No allocation, no formatting; every length is checked
//! before use. The link layer comes from [`walk::l2`], the one header walker
//! shared with checksum completion and the wire dissector; the IP and L4
//! headers are read through the checked views, which this parser needs
//! anyway for TTL, the IPv4 header checksum and TCP facts.

use super::ethernet::ethertype;
use super::icmp::{self, IcmpPacket};
use super::icmpv6::{self, Icmpv6Packet};
use super::ipv4::{self, Ipv4Packet};
use super::ipv6::{self, Ipv6Packet};
use super::ipv6_ext;
use super::tcp::TcpPacket;
use super::tcp_opt::TcpOptions;
use super::udp::{self, UdpPacket};
use super::walk;
use super::{checksum, rd16, rd_array, Error};
use crate::flow::{proto, Tuple};
use crate::meta::{FragFacts, Fragment, L3Kind, PacketMeta, TcpFacts};

pub use super::walk::MAX_VLAN_TAGS;

/// Offsets in a frame fit a u16 for every frame up to 64 KiB; larger frames
/// are unsupported.
#[inline]
fn off16(x: usize) -> Result<u16, Error> {
    u16::try_from(x).map_err(|_| Error::Unsupported)
}

/// Parses one Ethernet frame into a [`PacketMeta`].
///
/// Walks Ethernet II, up to [`MAX_VLAN_TAGS`] VLAN tags (0x8100, 0x88a8,
/// 0x9100), then IPv4 or IPv6 (with extension headers), then TCP, UDP, ICMP
/// or ICMPv6. Any other ethertype gives `Ok` with `l3 = NonIp`.
///
/// - IPv4: the header checksum is verified ([`Error::BadChecksum`]); total
///   length must be at least the header length and fit the frame (trailing
///   Ethernet padding is ignored). L4 checksums are not verified (offload);
///   see [`l4_checksum_valid`].
/// - Later fragments: `fragment = Later`, ports 0, `proto` = IP protocol.
///   First fragments: the L4 header must be there; UDP's length field is not
///   checked against the fragment. TCP payload length is that of the
///   fragment (no reassembly here).
/// - TCP: data offset `>= 5` and fits; payload length comes from the IP
///   length. UDP: `8 <= length <= IP payload`. UDP-Lite, SCTP and DCCP: ports
///   from the first 4 bytes (8 bytes required). Other protocols: ports 0.
/// - ICMP (over IPv4) / ICMPv6 (over IPv6): `src_port` = identifier for
///   query messages, else 0; `dst_port = type << 8 | code`. Error messages
///   fill `icmp_error` with the embedded packet's tuple; an embedded packet
///   too short to give its addresses and ports is an error.
///
/// Cost: a bounded number of field reads; at most [`MAX_VLAN_TAGS`] tags,
/// [`ipv6_ext::MAX_EXT_HEADERS`] extension headers and 40 bytes of TCP
/// options are examined.
pub fn parse_frame(frame: &[u8]) -> Result<PacketMeta, Error> {
    let mut meta = PacketMeta::default();
    parse_frame_into(frame, &mut meta)?;
    Ok(meta)
}

/// [`parse_frame`] into the caller's `meta` (the worker's per-burst array),
/// saving the copy of a returned `PacketMeta`. On an error `meta` holds
/// part of the frame's facts and must not be used.
#[inline]
pub fn parse_frame_into(frame: &[u8], meta: &mut PacketMeta) -> Result<(), Error> {
    let l2 = walk::l2(frame)?;
    *meta = PacketMeta {
        vlan: l2.outer_vlan(),
        ..PacketMeta::default()
    };
    let (et, off) = (l2.ethertype, l2.l3_offset);
    meta.ethertype = et;
    meta.l3_offset = off16(off)?;
    let l3 = frame.get(off..).ok_or(Error::Truncated)?;
    match et {
        ethertype::IPV4 => parse_ipv4(l3, off, meta),
        ethertype::IPV6 => parse_ipv6(l3, off, meta),
        _ => Ok(()),
    }
}

#[inline]
fn parse_ipv4(l3: &[u8], off: usize, meta: &mut PacketMeta) -> Result<(), Error> {
    let ip = Ipv4Packet::new_checked(l3)?;
    if !ip.verify_checksum() {
        return Err(Error::BadChecksum);
    }
    meta.l3 = L3Kind::Ipv4;
    meta.ip_len = ip.total_len();
    meta.ttl = ip.ttl();
    meta.l4_offset = off16(off + ip.header_len())?;
    let p = ip.protocol();
    let mut t = Tuple {
        proto: p,
        v6: false,
        ..Tuple::default()
    };
    t.src[..4].copy_from_slice(&ip.src_addr());
    t.dst[..4].copy_from_slice(&ip.dst_addr());
    meta.tuple = t;
    if ip.frag_offset() != 0 || ip.more_frags() {
        meta.frag = FragFacts {
            ident: u32::from(ip.ident()),
            offset: ip.frag_offset(),
            more: ip.more_frags(),
        };
    }
    if ip.frag_offset() != 0 {
        meta.fragment = Fragment::Later;
        return Ok(());
    }
    if ip.more_frags() {
        meta.fragment = Fragment::First;
    }
    parse_l4(ip.payload(), meta)
}

#[inline]
fn parse_ipv6(l3: &[u8], off: usize, meta: &mut PacketMeta) -> Result<(), Error> {
    let ip = Ipv6Packet::new_checked(l3)?;
    meta.l3 = L3Kind::Ipv6;
    // 40 + a u16 payload length can exceed u16: such packets are unsupported.
    meta.ip_len = off16(ip.total_len())?;
    meta.ttl = ip.hop_limit();
    let payload = ip.payload();
    let chain = ipv6_ext::walk(ip.next_header(), payload)?;
    meta.rh0 = chain.rh0;
    meta.l4_offset = off16(off + ipv6::HEADER_LEN + chain.l4_offset)?;
    meta.tuple = Tuple {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        proto: chain.proto,
        v6: true,
        ..Tuple::default()
    };
    if let Some(f) = chain.frag {
        meta.frag = FragFacts {
            ident: f.ident,
            offset: f.offset,
            more: f.more,
        };
        if f.offset != 0 {
            meta.fragment = Fragment::Later;
            return Ok(());
        }
        if f.more {
            meta.fragment = Fragment::First;
        }
    }
    let l4 = payload.get(chain.l4_offset..).ok_or(Error::Truncated)?;
    parse_l4(l4, meta)
}

/// Fills ports, TCP facts and ICMP fields from the L4 bytes (cut at the IP
/// length). `meta.tuple` already holds addresses and protocol.
#[inline]
fn parse_l4(l4: &[u8], meta: &mut PacketMeta) -> Result<(), Error> {
    let v6 = meta.tuple.v6;
    match meta.tuple.proto {
        proto::TCP => {
            let tcp = TcpPacket::new_checked(l4)?;
            meta.tuple.src_port = tcp.src_port();
            meta.tuple.dst_port = tcp.dst_port();
            let opts = TcpOptions::parse(tcp.options());
            meta.tcp = TcpFacts {
                flags: tcp.flags(),
                seq: tcp.seq_number(),
                ack: tcp.ack_number(),
                window: tcp.window_len(),
                // The header fits l4 (new_checked), so this cannot underflow;
                // l4 is at most 64 KiB, so it fits u32.
                payload_len: u32::try_from(tcp.payload().len()).map_err(|_| Error::Unsupported)?,
                wscale: opts.wscale,
                sack_perm: opts.sack_perm,
            };
        }
        proto::UDP => {
            if meta.fragment == Fragment::None {
                UdpPacket::new_checked(l4)?;
            } else if l4.len() < udp::HEADER_LEN {
                return Err(Error::Truncated);
            }
            meta.tuple.src_port = rd16(l4, 0);
            meta.tuple.dst_port = rd16(l4, 2);
        }
        proto::UDPLITE | proto::SCTP | proto::DCCP => {
            if l4.len() < 8 {
                return Err(Error::Truncated);
            }
            meta.tuple.src_port = rd16(l4, 0);
            meta.tuple.dst_port = rd16(l4, 2);
        }
        proto::ICMP if !v6 => {
            let m = IcmpPacket::new_checked(l4)?;
            let (t, c) = (m.msg_type(), m.msg_code());
            meta.tuple.dst_port = u16::from_be_bytes([t, c]);
            if icmp::is_query(t) {
                meta.tuple.src_port = m.ident();
            } else if icmp::is_error(t) {
                meta.icmp_error = Some(embedded_v4(m.data())?);
            }
        }
        proto::ICMPV6 if v6 => {
            let m = Icmpv6Packet::new_checked(l4)?;
            let (t, c) = (m.msg_type(), m.msg_code());
            meta.tuple.dst_port = u16::from_be_bytes([t, c]);
            if icmpv6::is_query(t) {
                meta.tuple.src_port = m.ident();
            } else if icmpv6::is_error(t) {
                meta.icmp_error = Some(embedded_v6(m.data())?);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Tuple of the IPv4 packet embedded in an ICMP error. The embedded packet
/// is usually truncated, so its total length and checksum are not checked;
/// the header must be complete and enough L4 bytes present for the ports.
fn embedded_v4(data: &[u8]) -> Result<Tuple, Error> {
    if data.len() < ipv4::HEADER_LEN {
        return Err(Error::Truncated);
    }
    if data[ipv4::field::VER_IHL] >> 4 != 4 {
        return Err(Error::Malformed);
    }
    let hl = usize::from(data[ipv4::field::VER_IHL] & 0x0f) * 4;
    if hl < ipv4::HEADER_LEN {
        return Err(Error::Malformed);
    }
    let l4 = data.get(hl..).ok_or(Error::Truncated)?;
    let mut t = Tuple {
        proto: data[ipv4::field::PROTOCOL],
        v6: false,
        ..Tuple::default()
    };
    t.src[..4].copy_from_slice(&data[ipv4::field::SRC..ipv4::field::SRC + 4]);
    t.dst[..4].copy_from_slice(&data[ipv4::field::DST..ipv4::field::DST + 4]);
    if rd16(data, ipv4::field::FLG_OFF) & ipv4::OFFSET_MASK == 0 {
        (t.src_port, t.dst_port) = embedded_ports(l4, t.proto, false)?;
    }
    Ok(t)
}

/// Tuple of the IPv6 packet embedded in an ICMPv6 error (see [`embedded_v4`]).
fn embedded_v6(data: &[u8]) -> Result<Tuple, Error> {
    if data.len() < ipv6::HEADER_LEN {
        return Err(Error::Truncated);
    }
    if data[0] >> 4 != 6 {
        return Err(Error::Malformed);
    }
    let rest = &data[ipv6::HEADER_LEN..];
    let chain = ipv6_ext::walk(data[ipv6::field::NEXT_HEADER], rest)?;
    let mut t = Tuple {
        src: rd_array(data, ipv6::field::SRC),
        dst: rd_array(data, ipv6::field::DST),
        proto: chain.proto,
        v6: true,
        ..Tuple::default()
    };
    if !matches!(chain.frag, Some(f) if f.offset != 0) {
        let l4 = rest.get(chain.l4_offset..).ok_or(Error::Truncated)?;
        (t.src_port, t.dst_port) = embedded_ports(l4, t.proto, true)?;
    }
    Ok(t)
}

/// Ports (or ICMP id and type/code) from the first bytes of an embedded L4
/// header.
#[inline]
fn embedded_ports(l4: &[u8], p: u8, v6: bool) -> Result<(u16, u16), Error> {
    match p {
        proto::TCP | proto::UDP | proto::UDPLITE | proto::SCTP | proto::DCCP => {
            if l4.len() < 4 {
                return Err(Error::Truncated);
            }
            Ok((rd16(l4, 0), rd16(l4, 2)))
        }
        proto::ICMP | proto::ICMPV6 if (p == proto::ICMPV6) == v6 => {
            if l4.len() < 8 {
                return Err(Error::Truncated);
            }
            let (t, c) = (l4[0], l4[1]);
            let query = if v6 {
                icmpv6::is_query(t)
            } else {
                icmp::is_query(t)
            };
            Ok((
                if query { rd16(l4, 4) } else { 0 },
                u16::from_be_bytes([t, c]),
            ))
        }
        _ => Ok((0, 0)),
    }
}

/// Verifies the L4 checksum of a frame [`parse_frame`] accepted, with
/// [`checksum::verify_l4`].
///
/// Returns `None` when it cannot be checked: not IP, a fragment, or a
/// protocol other than TCP, UDP, ICMP and ICMPv6. A UDP-over-IPv4 zero
/// checksum counts as valid.
pub fn l4_checksum_valid(frame: &[u8], meta: &PacketMeta) -> Option<bool> {
    if !meta.is_ip() || meta.fragment != Fragment::None {
        return None;
    }
    let end = usize::from(meta.l3_offset).checked_add(usize::from(meta.ip_len))?;
    let l4 = frame.get(usize::from(meta.l4_offset)..end)?;
    let t = &meta.tuple;
    checksum::verify_l4(t.v6, &t.src, &t.dst, t.proto, l4)
}
