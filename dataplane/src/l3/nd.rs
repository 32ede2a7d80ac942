//! IPv6 neighbor discovery for routed mode (RFC 4861): neighbor
//! solicitations and advertisements, parsed ([`NdInfo`]: the IPv6
//! addresses, hop limit 255, and the message's [`NdiscRepr`] with its
//! checks) and written into a caller's buffer with [`NdiscRepr::emit`]:
//! solicited answers, solicitations to a solicited-node group, and
//! unsolicited advertisements (override flag set) for takeover.

use crate::flow::proto;
use crate::meta::PacketMeta;
use crate::packet::ethernet::{self, ethertype, EthernetFrame, MacAddr};
use crate::packet::icmpv6::msg_type;
use crate::packet::ipv6::{self, Ipv6Packet};
pub use crate::packet::ndisc::{
    NdiscRepr, BODY_LEN, FLAG_OVERRIDE, FLAG_ROUTER, FLAG_SOLICITED, LLA_OPT_LEN, OPT_SOURCE_LLA,
    OPT_TARGET_LLA,
};
use crate::packet::Error;

/// Length of the frames written here (one link-layer address option).
pub const FRAME_LEN: usize = ethernet::HEADER_LEN + ipv6::HEADER_LEN + BODY_LEN + LLA_OPT_LEN;
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
        if meta.ttl != 255 {
            return Err(Error::Malformed);
        }
        let end = usize::from(meta.l3_offset)
            .checked_add(usize::from(meta.ip_len))
            .ok_or(Error::Truncated)?;
        let msg = frame
            .get(usize::from(meta.l4_offset)..end)
            .ok_or(Error::Truncated)?;
        let nd = NdiscRepr::parse(msg, &t.src, &t.dst)?;
        Ok(NdInfo {
            kind: nd.kind,
            src: t.src,
            dst: t.dst,
            target: nd.target,
            flags: nd.flags,
            lla: nd.lla,
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

/// Writes an NS or NA frame (`nd`, with its link-layer address option)
/// from `src` to `dst`; returns its length ([`FRAME_LEN`]).
fn write_nd(
    out: &mut [u8],
    eth_dst: MacAddr,
    eth_src: MacAddr,
    src: &[u8; 16],
    dst: &[u8; 16],
    nd: &NdiscRepr,
) -> Result<usize, Error> {
    let len = ethernet::HEADER_LEN + ipv6::HEADER_LEN + nd.buffer_len();
    let f = out.get_mut(..len).ok_or(Error::BufferTooSmall)?;
    let mut e = EthernetFrame::new_unchecked(&mut f[..]);
    e.set_dst_addr(eth_dst);
    e.set_src_addr(eth_src);
    e.set_ethertype(ethertype::IPV6);
    let (ip, msg) = f[ethernet::HEADER_LEN..].split_at_mut(ipv6::HEADER_LEN);
    let mut h = Ipv6Packet::new_unchecked(&mut ip[..]);
    h.set_version_tc_flow(0, 0);
    h.set_payload_len(u16::try_from(nd.buffer_len()).map_err(|_| Error::Unsupported)?);
    h.set_next_header(proto::ICMPV6);
    h.set_hop_limit(255);
    h.set_src_addr(*src);
    h.set_dst_addr(*dst);
    let n = nd.emit(msg, src, dst)?;
    Ok(ethernet::HEADER_LEN + ipv6::HEADER_LEN + n)
}

/// The advertisement answering `ns` for `target` (ours, at `at_mac`: our
/// port's `our_mac`, or a cluster's shared MAC for a virtual address), sent
/// from `our_mac`: solicited, override, router. To the solicitor's address
/// and link-layer address (its option, else `eth_src`); a solicitation from
/// the unspecified address (duplicate address detection) is answered to all
/// nodes, unsolicited.
pub fn write_solicited_na(
    out: &mut [u8],
    our_mac: MacAddr,
    at_mac: MacAddr,
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
    let na = NdiscRepr {
        kind: msg_type::NEIGHBOR_ADVERT,
        flags,
        target: ns.target,
        lla: Some(at_mac),
    };
    write_nd(out, eth_dst, our_mac, &ns.target, &dst, &na)
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
    let ns = NdiscRepr {
        kind: msg_type::NEIGHBOR_SOLICIT,
        flags: 0,
        target: *target,
        lla: Some(our_mac),
    };
    write_nd(out, multicast_mac(&group), our_mac, our_ip, &group, &ns)
}

/// An unsolicited advertisement from `our_mac` of `addr` at `at_mac` to all
/// nodes, with the override flag so neighbors replace what they cached
/// (takeover).
pub fn write_unsolicited_na(
    out: &mut [u8],
    our_mac: MacAddr,
    at_mac: MacAddr,
    addr: &[u8; 16],
) -> Result<usize, Error> {
    let na = NdiscRepr {
        kind: msg_type::NEIGHBOR_ADVERT,
        flags: FLAG_ROUTER | FLAG_OVERRIDE,
        target: *addr,
        lla: Some(at_mac),
    };
    write_nd(
        out,
        multicast_mac(&ALL_NODES),
        our_mac,
        addr,
        &ALL_NODES,
        &na,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::icmpv6::Icmpv6Packet;
    use crate::packet::parse_frame;

    const OURS: MacAddr = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];
    const HOST: MacAddr = crate::packet::golden::MAC_A;
    /// 2001:db8:1::1 (ours).
    const OUR_IP: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    /// 2001:db8:1::10 (the host).
    const HOST_IP: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    /// A Linux host's NS for 2001:db8:1::1 from 2001:db8:1::10 with its
    /// source link-layer option.
    const NS: [u8; 86] = crate::packet::golden::ND_NS;

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
        let n = write_solicited_na(&mut out, OURS, OURS, &ns, HOST).unwrap();
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
        let n = write_solicited_na(&mut out, OURS, OURS, &dad, HOST).unwrap();
        let na = info(&out[..n]).unwrap();
        assert_eq!(na.dst, ALL_NODES);
        assert_eq!(&out[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(na.flags & FLAG_SOLICITED, 0);
    }

    #[test]
    fn unsolicited_na_has_override() {
        let mut out = [0u8; 128];
        let n = write_unsolicited_na(&mut out, OURS, OURS, &OUR_IP).unwrap();
        let na = info(&out[..n]).unwrap();
        assert_eq!((na.src, na.dst, na.target), (OUR_IP, ALL_NODES, OUR_IP));
        assert_eq!(na.flags, FLAG_ROUTER | FLAG_OVERRIDE);
        assert_eq!(na.lla, Some(OURS));
        assert_eq!(&out[..6], &[0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(
            write_unsolicited_na(&mut out[..85], OURS, OURS, &OUR_IP),
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
