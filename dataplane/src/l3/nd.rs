//! IPv6 neighbor discovery for routed mode (RFC 4861): neighbor
//! solicitations and advertisements, parsed ([`NdInfo`], with the RFC's
//! validity checks: hop limit 255, code 0, correct checksum, sane options)
//! and written into a caller's buffer with the ICMPv6 checksum filled:
//! solicited answers, solicitations to a solicited-node group, and
//! unsolicited advertisements (override flag set) for takeover.

use crate::flow::proto;
use crate::meta::PacketMeta;
use crate::packet::ethernet::{self, ethertype, EthernetFrame, MacAddr};
use crate::packet::icmpv6::{msg_type, Icmpv6Packet};
use crate::packet::ipv6::{self, Ipv6Packet};
use crate::packet::Error;

/// ICMPv6 NS/NA body before options: type, code, checksum, flags/reserved,
/// target address.
pub const BODY_LEN: usize = 24;
/// A link-layer address option for Ethernet.
pub const LLA_OPT_LEN: usize = 8;
/// Length of the frames written here.
pub const FRAME_LEN: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN + BODY_LEN + LLA_OPT_LEN;
/// Option type: source link-layer address.
pub const OPT_SOURCE_LLA: u8 = 1;
/// Option type: target link-layer address.
pub const OPT_TARGET_LLA: u8 = 2;
/// NA flag: the sender is a router.
pub const FLAG_ROUTER: u8 = 0x80;
/// NA flag: answer to a solicitation.
pub const FLAG_SOLICITED: u8 = 0x40;
/// NA flag: override an existing cache entry.
pub const FLAG_OVERRIDE: u8 = 0x20;
/// ff02::1, all nodes.
pub const ALL_NODES: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

/// What a received NS or NA says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdInfo {
    /// [`msg_type::NEIGHBOR_SOLICIT`] or [`msg_type::NEIGHBOR_ADVERT`].
    pub kind: u8,
    /// IPv6 source.
    pub src: [u8; 16],
    /// IPv6 destination.
    pub dst: [u8; 16],
    /// The target address.
    pub target: [u8; 16],
    /// NA flags byte (zero for NS).
    pub flags: u8,
    /// The source (NS) or target (NA) link-layer address option.
    pub lla: Option<MacAddr>,
}

impl NdInfo {
    /// Reads an NS or NA from a frame parsed into `meta`. Anything else, or
    /// a message failing RFC 4861's checks (7.1.1, 7.1.2), is an error.
    pub fn parse(frame: &[u8], meta: &PacketMeta) -> Result<NdInfo, Error> {
        let t = &meta.tuple;
        if !t.v6 || t.proto != proto::ICMPV6 {
            return Err(Error::Unsupported);
        }
        let kind = t.icmp_type();
        if kind != msg_type::NEIGHBOR_SOLICIT && kind != msg_type::NEIGHBOR_ADVERT {
            return Err(Error::Unsupported);
        }
        if meta.ttl != 255 || t.icmp_code() != 0 {
            return Err(Error::Malformed);
        }
        let l4 = usize::from(meta.l4_offset);
        let end = usize::from(meta.l3_offset)
            .checked_add(usize::from(meta.ip_len))
            .ok_or(Error::Truncated)?;
        let msg = frame.get(l4..end).ok_or(Error::Truncated)?;
        if msg.len() < BODY_LEN {
            return Err(Error::Truncated);
        }
        let p = Icmpv6Packet::new_checked(msg)?;
        if !p.verify_checksum(&t.src, &t.dst) {
            return Err(Error::BadChecksum);
        }
        let mut target = [0u8; 16];
        target.copy_from_slice(&msg[8..24]);
        if target[0] == 0xff {
            return Err(Error::Malformed);
        }
        let want = if kind == msg_type::NEIGHBOR_SOLICIT {
            OPT_SOURCE_LLA
        } else {
            OPT_TARGET_LLA
        };
        let mut lla = None;
        let mut opts = &msg[BODY_LEN..];
        while !opts.is_empty() {
            let (ty, len) = match opts {
                [ty, len, ..] => (*ty, usize::from(*len) * 8),
                _ => return Err(Error::Malformed),
            };
            if len == 0 || len > opts.len() {
                return Err(Error::Malformed);
            }
            if ty == want && len >= 8 {
                let mut m = [0u8; 6];
                m.copy_from_slice(&opts[2..8]);
                lla = Some(m);
            }
            opts = &opts[len..];
        }
        Ok(NdInfo {
            kind,
            src: t.src,
            dst: t.dst,
            target,
            flags: if kind == msg_type::NEIGHBOR_ADVERT {
                msg[4]
            } else {
                0
            },
            lla,
        })
    }
}

/// The solicited-node multicast group of `a` (ff02::1:ffXX:XXXX).
pub fn solicited_node(a: &[u8; 16]) -> [u8; 16] {
    let mut g = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0];
    g[13..].copy_from_slice(&a[13..]);
    g
}

/// The Ethernet address of an IPv6 multicast group (33:33 + low 32 bits).
pub fn multicast_mac(group: &[u8; 16]) -> MacAddr {
    [0x33, 0x33, group[12], group[13], group[14], group[15]]
}

/// Writes an NS or NA frame with one link-layer address option (`lla`,
/// source for NS, target for NA); returns its length ([`FRAME_LEN`]).
#[allow(clippy::too_many_arguments)]
fn write_nd(
    out: &mut [u8],
    eth_dst: MacAddr,
    eth_src: MacAddr,
    src: &[u8; 16],
    dst: &[u8; 16],
    kind: u8,
    flags: u8,
    target: &[u8; 16],
    lla: MacAddr,
) -> Result<usize, Error> {
    let f = out.get_mut(..FRAME_LEN).ok_or(Error::BufferTooSmall)?;
    let mut e = EthernetFrame::new_unchecked(&mut f[..]);
    e.set_dst_addr(eth_dst);
    e.set_src_addr(eth_src);
    e.set_ethertype(ethertype::IPV6);
    let (ip, msg) = f[ethernet::HEADER_LEN..].split_at_mut(ipv6::HEADER_LEN);
    let mut h = Ipv6Packet::new_unchecked(&mut ip[..]);
    h.set_version_tc_flow(0, 0);
    // BODY_LEN + LLA_OPT_LEN = 32 fits.
    h.set_payload_len(32);
    h.set_next_header(proto::ICMPV6);
    h.set_hop_limit(255);
    h.set_src_addr(*src);
    h.set_dst_addr(*dst);
    msg.fill(0);
    msg[0] = kind;
    msg[4] = flags;
    msg[8..24].copy_from_slice(target);
    msg[24] = if kind == msg_type::NEIGHBOR_SOLICIT {
        OPT_SOURCE_LLA
    } else {
        OPT_TARGET_LLA
    };
    msg[25] = 1;
    msg[26..32].copy_from_slice(&lla);
    Icmpv6Packet::new_unchecked(&mut msg[..]).fill_checksum(src, dst);
    Ok(FRAME_LEN)
}

/// The advertisement answering `ns` for `target` (ours, at `our_mac`):
/// solicited, override, router. To the solicitor's address and link-layer
/// address (its option, else `eth_src`); a solicitation from the
/// unspecified address (duplicate address detection) is answered to all
/// nodes, unsolicited.
pub fn write_solicited_na(
    out: &mut [u8],
    our_mac: MacAddr,
    ns: &NdInfo,
    eth_src: MacAddr,
) -> Result<usize, Error> {
    let (dst, eth_dst, flags) = if ns.src == [0u8; 16] {
        (
            ALL_NODES,
            multicast_mac(&ALL_NODES),
            FLAG_ROUTER | FLAG_OVERRIDE,
        )
    } else {
        (
            ns.src,
            ns.lla.unwrap_or(eth_src),
            FLAG_ROUTER | FLAG_SOLICITED | FLAG_OVERRIDE,
        )
    };
    write_nd(
        out,
        eth_dst,
        our_mac,
        &ns.target,
        &dst,
        msg_type::NEIGHBOR_ADVERT,
        flags,
        &ns.target,
        our_mac,
    )
}

/// A solicitation for `target` from `our_ip` / `our_mac`, to the target's
/// solicited-node group.
pub fn write_ns(
    out: &mut [u8],
    our_mac: MacAddr,
    our_ip: &[u8; 16],
    target: &[u8; 16],
) -> Result<usize, Error> {
    let group = solicited_node(target);
    write_nd(
        out,
        multicast_mac(&group),
        our_mac,
        our_ip,
        &group,
        msg_type::NEIGHBOR_SOLICIT,
        0,
        target,
        our_mac,
    )
}

/// An unsolicited advertisement of `addr` at `our_mac` to all nodes, with
/// the override flag so neighbors replace what they cached (takeover).
pub fn write_unsolicited_na(
    out: &mut [u8],
    our_mac: MacAddr,
    addr: &[u8; 16],
) -> Result<usize, Error> {
    write_nd(
        out,
        multicast_mac(&ALL_NODES),
        our_mac,
        addr,
        &ALL_NODES,
        msg_type::NEIGHBOR_ADVERT,
        FLAG_ROUTER | FLAG_OVERRIDE,
        addr,
        our_mac,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::parse_frame;

    const OURS: MacAddr = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];
    const HOST: MacAddr = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    /// 2001:db8:1::1 (ours).
    const OUR_IP: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    /// 2001:db8:1::10 (the host).
    const HOST_IP: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    /// A Linux host's NS for 2001:db8:1::1 from 2001:db8:1::10 with its
    /// source link-layer option (checksum computed independently).
    const NS: [u8; 86] = [
        0x33, 0x33, 0xff, 0x00, 0x00, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x86, 0xdd, //
        0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, //
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, //
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0x00, 0x00, 0x01, //
        0x87, 0x00, 0x97, 0x5c, 0, 0, 0, 0, //
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, //
        0x01, 0x01, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56,
    ];

    fn info(f: &[u8]) -> Result<NdInfo, Error> {
        NdInfo::parse(f, &parse_frame(f).unwrap())
    }

    #[test]
    fn parse_ns_golden() {
        let ns = info(&NS).unwrap();
        assert_eq!(ns.kind, msg_type::NEIGHBOR_SOLICIT);
        assert_eq!((ns.src, ns.target, ns.lla), (HOST_IP, OUR_IP, Some(HOST)));
        assert_eq!(ns.dst, solicited_node(&OUR_IP));
        // Wrong hop limit, wrong checksum, bad option length.
        let mut bad = NS;
        bad[21] = 64;
        assert_eq!(info(&bad), Err(Error::Malformed));
        let mut bad = NS;
        bad[57] ^= 1;
        assert_eq!(info(&bad), Err(Error::BadChecksum));
        let mut bad = NS;
        bad[79] = 0;
        // (Checksum no longer matches either: fix it to reach the option check.)
        let m = parse_frame(&bad).unwrap();
        Icmpv6Packet::new_unchecked(&mut bad[54..]).fill_checksum(&m.tuple.src, &m.tuple.dst);
        assert_eq!(info(&bad), Err(Error::Malformed));
    }

    #[test]
    fn emit_ns_matches_golden() {
        // Our own NS builder, run as the host, gives the same bytes.
        let mut out = [0u8; 128];
        let n = write_ns(&mut out, HOST, &HOST_IP, &OUR_IP).unwrap();
        assert_eq!(&out[..n], &NS[..]);
    }

    #[test]
    fn solicited_na() {
        let ns = info(&NS).unwrap();
        let mut out = [0u8; 128];
        let n = write_solicited_na(&mut out, OURS, &ns, HOST).unwrap();
        assert_eq!(n, 86);
        let m = parse_frame(&out[..n]).unwrap();
        assert_eq!((&out[..6], &out[6..12]), (&HOST[..], &OURS[..]));
        let na = NdInfo::parse(&out[..n], &m).unwrap();
        assert_eq!(na.kind, msg_type::NEIGHBOR_ADVERT);
        assert_eq!((na.src, na.dst, na.target), (OUR_IP, HOST_IP, OUR_IP));
        assert_eq!(na.flags, FLAG_ROUTER | FLAG_SOLICITED | FLAG_OVERRIDE);
        assert_eq!(na.lla, Some(OURS));
        // DAD probe (unspecified source): to all nodes, not solicited.
        let dad = NdInfo {
            src: [0; 16],
            lla: None,
            ..ns
        };
        let n = write_solicited_na(&mut out, OURS, &dad, HOST).unwrap();
        let na = info(&out[..n]).unwrap();
        assert_eq!(na.dst, ALL_NODES);
        assert_eq!(&out[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(na.flags & FLAG_SOLICITED, 0);
    }

    #[test]
    fn unsolicited_na_has_override() {
        let mut out = [0u8; 128];
        let n = write_unsolicited_na(&mut out, OURS, &OUR_IP).unwrap();
        let na = info(&out[..n]).unwrap();
        assert_eq!((na.src, na.dst, na.target), (OUR_IP, ALL_NODES, OUR_IP));
        assert_eq!(na.flags, FLAG_ROUTER | FLAG_OVERRIDE);
        assert_eq!(na.lla, Some(OURS));
        assert_eq!(&out[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(
            write_unsolicited_na(&mut out[..85], OURS, &OUR_IP),
            Err(Error::BufferTooSmall)
        );
    }

    #[test]
    fn groups() {
        assert_eq!(
            solicited_node(&OUR_IP),
            [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 1]
        );
        assert_eq!(
            multicast_mac(&solicited_node(&OUR_IP)),
            [0x33, 0x33, 0xff, 0, 0, 1]
        );
    }
}
