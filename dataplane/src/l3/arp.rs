//! ARP frames for routed mode (RFC 826): requests, replies and gratuitous
//! announcements (RFC 5227 section 3: an ARP request whose sender and
//! target protocol addresses are both the announced address), written into
//! a caller's buffer without allocating with [`ArpRepr::emit`], and
//! [`parse`], what a received ARP frame says.

pub use crate::packet::arp::ArpRepr;
use crate::packet::arp::{self, ArpPacket};
use crate::packet::ethernet::{self, ethertype, EthernetFrame, MacAddr, BROADCAST};
use crate::packet::Error;

/// Length of an Ethernet + ARP frame (without padding).
pub const FRAME_LEN: usize = ethernet::HEADER_LEN + arp::PACKET_LEN;

/// Reads the ARP packet at `l3_offset` of `frame` ([`ArpRepr::parse`]):
/// only Ethernet/IPv4 requests and replies are accepted.
pub fn parse(frame: &[u8], l3_offset: usize) -> Result<ArpRepr, Error> {
    ArpRepr::parse(&ArpPacket::new_checked(
        frame.get(l3_offset..).ok_or(Error::Truncated)?,
    )?)
}

/// Writes an Ethernet + ARP frame from `eth_src` to `eth_dst` carrying
/// `arp` into `out`; returns its length ([`FRAME_LEN`]).
pub fn write_arp(
    out: &mut [u8],
    eth_dst: MacAddr,
    eth_src: MacAddr,
    arp: &ArpRepr,
) -> Result<usize, Error> {
    let f = out.get_mut(..FRAME_LEN).ok_or(Error::BufferTooSmall)?;
    let mut e = EthernetFrame::new_unchecked(&mut f[..]);
    e.set_dst_addr(eth_dst);
    e.set_src_addr(eth_src);
    e.set_ethertype(ethertype::ARP);
    arp.emit(&mut f[ethernet::HEADER_LEN..])?;
    Ok(FRAME_LEN)
}

/// The reply to `req` from `our_mac`, which owns `req.tpa`.
/// `at_mac` is the hardware address announced for it: `our_mac`, or a
/// cluster's shared MAC for a virtual address (never an Ethernet source).
pub fn write_reply(
    out: &mut [u8],
    our_mac: MacAddr,
    at_mac: MacAddr,
    req: &ArpRepr,
) -> Result<usize, Error> {
    let reply = ArpRepr {
        op: arp::OP_REPLY,
        sha: at_mac,
        spa: req.tpa,
        tha: req.sha,
        tpa: req.spa,
    };
    write_arp(out, req.sha, our_mac, &reply)
}

/// A broadcast request for `target` from `our_mac` / `our_ip`.
pub fn write_request(
    out: &mut [u8],
    our_mac: MacAddr,
    our_ip: [u8; 4],
    target: [u8; 4],
) -> Result<usize, Error> {
    let req = ArpRepr {
        op: arp::OP_REQUEST,
        sha: our_mac,
        spa: our_ip,
        tha: [0; 6],
        tpa: target,
    };
    write_arp(out, BROADCAST, our_mac, &req)
}

/// A gratuitous ARP from `our_mac` announcing that `addr` is at `at_mac`
/// (broadcast request with sender and target address `addr`).
pub fn write_gratuitous(
    out: &mut [u8],
    our_mac: MacAddr,
    at_mac: MacAddr,
    addr: [u8; 4],
) -> Result<usize, Error> {
    let req = ArpRepr {
        op: arp::OP_REQUEST,
        sha: at_mac,
        spa: addr,
        tha: [0; 6],
        tpa: addr,
    };
    write_arp(out, BROADCAST, our_mac, &req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::L3Kind;
    use crate::packet::parse_frame;

    const OURS: MacAddr = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];
    const HOST: MacAddr = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    /// A request from 192.0.2.10 (HOST) for 192.0.2.1, as a Linux host
    /// sends it (padded to the Ethernet minimum).
    const REQUEST: [u8; 60] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06, //
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, //
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xc0, 0x00, 0x02, 0x0a, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x02, 0x01, //
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    /// Our reply to it.
    const REPLY: [u8; 42] = [
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, 0x08, 0x06, //
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, //
        0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, 0xc0, 0x00, 0x02, 0x01, //
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xc0, 0x00, 0x02, 0x0a,
    ];

    #[test]
    fn parse_request() {
        let m = parse_frame(&REQUEST).unwrap();
        assert_eq!((m.l3, m.ethertype), (L3Kind::NonIp, ethertype::ARP));
        let a = parse(&REQUEST, usize::from(m.l3_offset)).unwrap();
        assert_eq!(a.op, arp::OP_REQUEST);
        assert_eq!((a.sha, a.spa), (HOST, [192, 0, 2, 10]));
        assert_eq!((a.tha, a.tpa), ([0; 6], [192, 0, 2, 1]));
        assert!(!a.is_gratuitous());
        assert_eq!(parse(&REQUEST[..30], 14), Err(Error::Truncated));
        let mut bad = REQUEST;
        bad[21] = 3; // RARP request
        assert_eq!(parse(&bad, 14), Err(Error::Unsupported));
    }

    #[test]
    fn emit_reply_golden() {
        let a = parse(&REQUEST, 14).unwrap();
        let mut out = [0u8; 64];
        let n = write_reply(&mut out, OURS, OURS, &a).unwrap();
        assert_eq!(&out[..n], &REPLY[..]);
        assert_eq!(
            write_reply(&mut out[..41], OURS, OURS, &a),
            Err(Error::BufferTooSmall)
        );
    }

    #[test]
    fn emit_request_and_gratuitous() {
        let mut out = [0u8; 64];
        let n = write_request(&mut out, OURS, [192, 0, 2, 1], [192, 0, 2, 10]).unwrap();
        let a = parse(&out[..n], 14).unwrap();
        assert_eq!(&out[..6], &BROADCAST);
        assert_eq!(&out[6..12], &OURS);
        assert_eq!(
            a,
            ArpRepr {
                op: arp::OP_REQUEST,
                sha: OURS,
                spa: [192, 0, 2, 1],
                tha: [0; 6],
                tpa: [192, 0, 2, 10]
            }
        );
        let n = write_gratuitous(&mut out, OURS, OURS, [192, 0, 2, 254]).unwrap();
        assert_eq!(n, 42);
        let g = parse(&out[..n], 14).unwrap();
        assert!(g.is_gratuitous());
        assert_eq!(
            (g.op, g.sha, g.spa),
            (arp::OP_REQUEST, OURS, [192, 0, 2, 254])
        );
        // Byte for byte: broadcast, ARP, request, sender = target = VIP.
        assert_eq!(
            &out[12..42],
            &[
                0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x5e, 0x10,
                0x00, 0x01, 0xc0, 0x00, 0x02, 0xfe, 0, 0, 0, 0, 0, 0, 0xc0, 0x00, 0x02, 0xfe
            ]
        );
    }
}
