//! Exercises every checked view, `Repr` and decoder on arbitrary bytes,
//! checking that nothing panics, that what the reject builders emit
//! parses, that every `Repr` round-trips, and that the header walker
//! agrees with the parser.
//! These functions panic when such an invariant breaks: that is what the
//! fuzzer and the property tests report.
//! Shared by the property tests and the fuzz target (`fuzz/`), so both
//! cover exactly the same accessors.

use std::net::IpAddr;

use super::tcp_opt::{TcpOptionIter, TcpOptions};
use super::*;
use crate::flow::proto;

/// Calls every getter of every view on `b`; only checks for panics.
pub fn poke_views(b: &[u8]) {
    if let Ok(e) = EthernetFrame::new_checked(b) {
        let _ = (e.dst_addr(), e.src_addr(), e.ethertype(), e.payload().len());
    }
    if let Ok(v) = VlanTag::new_checked(b) {
        let _ = (
            v.tci(),
            v.pcp(),
            v.dei(),
            v.vid(),
            v.ethertype(),
            v.payload().len(),
        );
    }
    if let Ok(a) = ArpPacket::new_checked(b) {
        let _ = (
            a.hardware_type(),
            a.protocol_type(),
            a.operation(),
            a.sender_hw_addr(),
            a.sender_ip(),
        );
        let _ = (a.target_hw_addr(), a.target_ip());
    }
    if let Ok(p) = Ipv4Packet::new_checked(b) {
        let _ = (
            p.version(),
            p.header_len(),
            p.dscp(),
            p.ecn(),
            p.total_len(),
            p.ident(),
            p.dont_frag(),
        );
        let _ = (
            p.more_frags(),
            p.frag_offset(),
            p.frag_offset_bytes(),
            p.is_fragment(),
            p.ttl(),
            p.protocol(),
        );
        let _ = (
            p.checksum(),
            p.src_addr(),
            p.dst_addr(),
            p.options().len(),
            p.payload().len(),
            p.verify_checksum(),
        );
    }
    if let Ok(p) = Ipv6Packet::new_checked(b) {
        let _ = (
            p.version(),
            p.traffic_class(),
            p.flow_label(),
            p.payload_len(),
            p.total_len(),
        );
        let _ = (
            p.next_header(),
            p.hop_limit(),
            p.src_addr(),
            p.dst_addr(),
            p.payload().len(),
        );
        let _ = ipv6_ext::walk(p.next_header(), p.payload());
    }
    for nh in [0, 43, 51, 60] {
        if let Ok(h) = Ipv6ExtHeader::new_checked(b, nh) {
            let _ = (h.next_header(), h.header_len(), h.data().len());
        }
    }
    if let Ok(f) = Ipv6FragHeader::new_checked(b) {
        let _ = (f.next_header(), f.frag_offset(), f.more_frags(), f.ident());
    }
    let _ = ipv6_ext::walk(b.first().copied().unwrap_or(0), b);
    if let Ok(t) = TcpPacket::new_checked(b) {
        let _ = (
            t.src_port(),
            t.dst_port(),
            t.seq_number(),
            t.ack_number(),
            t.header_len(),
            t.flags(),
        );
        let _ = (
            t.ns(),
            t.syn(),
            t.ack(),
            t.fin(),
            t.rst(),
            t.window_len(),
            t.checksum(),
            t.urgent_ptr(),
        );
        let _ = (
            t.options().len(),
            t.option_iter().count(),
            t.parsed_options(),
            t.payload().len(),
        );
        let _ = (
            t.verify_checksum_v4(&[1; 4], &[2; 4]),
            t.verify_checksum_v6(&[1; 16], &[2; 16]),
        );
    }
    let _ = TcpOptionIter::new(b).count();
    let _ = TcpOptions::parse(b);
    if let Ok(u) = UdpPacket::new_checked(b) {
        let _ = (
            u.src_port(),
            u.dst_port(),
            u.len(),
            u.is_empty(),
            u.checksum(),
            u.payload().len(),
        );
        let _ = (
            u.verify_checksum_v4(&[1; 4], &[2; 4]),
            u.verify_checksum_v6(&[1; 16], &[2; 16]),
        );
    }
    if let Ok(m) = IcmpPacket::new_checked(b) {
        let _ = (
            m.msg_type(),
            m.msg_code(),
            m.checksum(),
            m.ident(),
            m.seq_no(),
            m.rest_of_header(),
        );
        let _ = (
            m.data().len(),
            m.embedded().map(<[u8]>::len),
            m.verify_checksum(),
        );
    }
    if let Ok(m) = Icmpv6Packet::new_checked(b) {
        let _ = (
            m.msg_type(),
            m.msg_code(),
            m.checksum(),
            m.ident(),
            m.seq_no(),
            m.rest_of_header(),
        );
        let _ = (
            m.data().len(),
            m.embedded().map(<[u8]>::len),
            m.verify_checksum(&[1; 16], &[2; 16]),
        );
    }
    poke_reprs(b);
}

/// Parses `b` with every `Repr`; whatever parses must emit and parse back
/// to the same repr. Also runs the header walker and the L4 checksum check
/// on it.
fn poke_reprs(b: &[u8]) {
    let (s, d) = ([1u8; 16], [2u8; 16]);
    let mut out = [0u8; 1600];
    if let Ok(a) = ArpPacket::new_checked(b).and_then(|p| arp::ArpRepr::parse(&p)) {
        let n = a.emit(&mut out).unwrap();
        let back = ArpPacket::new_checked(&out[..n]).and_then(|p| arp::ArpRepr::parse(&p));
        assert_eq!(back, Ok(a));
    }
    let v4 = (IpAddr::from([1u8; 4]), IpAddr::from([2u8; 4]));
    round_trip_icmp(b, &s, &d, v4);
    round_trip_icmp(b, &s, &d, (IpAddr::from(s), IpAddr::from(d)));
    if let Ok(h) = walk::walk(b) {
        assert!(h.l2.l3_offset <= b.len() && h.l2.tags <= walk::MAX_VLAN_TAGS);
        if let Some(ip) = h.ip {
            assert!(ip.l4_offset >= ip.l3_offset + ipv4::HEADER_LEN);
            assert!(ip.l4_offset <= b.len());
            let _ = ip.pseudo_header_sum();
        }
    }
    for p in [proto::TCP, proto::UDP, proto::ICMP, proto::ICMPV6] {
        let _ = checksum::verify_l4(p == proto::ICMPV6, &s, &d, p, b);
    }
}

/// An ICMPv6 NS/NA or an ICMP(v6) error message in `msg` (sent from
/// `src` to `dst`) must emit and parse back to the same repr.
fn round_trip_icmp(msg: &[u8], s: &[u8; 16], d: &[u8; 16], (src, dst): (IpAddr, IpAddr)) {
    // As large as the message: a parsed repr is never larger than what it
    // was parsed from (a fixed 1600 bytes failed on a 1643-byte input).
    let mut out = vec![0u8; msg.len().max(64)];
    if let Ok(nd) = ndisc::NdiscRepr::parse(msg, s, d) {
        let n = nd.emit(&mut out, s, d).unwrap();
        assert_eq!(n, nd.buffer_len());
        assert_eq!(ndisc::NdiscRepr::parse(&out[..n], s, d), Ok(nd));
    }
    if let Ok(e) = icmp_error::IcmpErrorRepr::parse(msg, src, dst) {
        let n = e.emit(&mut out, src, dst).unwrap();
        assert_eq!(icmp_error::IcmpErrorRepr::parse(&out[..n], src, dst), Ok(e));
    }
}

/// Parses `b` and, when it parses, exercises the checksum check and the
/// reject builders; only checks for panics and basic consistency.
pub fn poke_parse(b: &[u8]) {
    if let Ok(m) = parse_frame(b) {
        let _ = l4_checksum_valid(b, &m);
        let mut out = [0u8; 1600];
        // Whatever the reject builders emit must parse.
        if let Ok(n) = tcp_rst(b, &m, &mut out) {
            assert!(parse_frame(&out[..n]).is_ok());
        }
        if let Ok(n) = icmp_unreachable(b, &m, &mut out) {
            let r = parse_frame(&out[..n]).unwrap();
            assert_eq!(r.icmp_error, Some(m.tuple));
        }
        if m.is_ip() {
            assert!(usize::from(m.l3_offset) + usize::from(m.ip_len) <= b.len());
            assert!(m.l4_offset >= m.l3_offset);
            // The walker the other paths use agrees with the parser.
            let ip = walk::walk(b).unwrap().ip.unwrap();
            assert_eq!(ip.l3_offset, usize::from(m.l3_offset));
            assert_eq!(ip.l4_offset, usize::from(m.l4_offset));
            assert_eq!(ip.end, usize::from(m.l3_offset) + usize::from(m.ip_len));
            assert_eq!((ip.proto, ip.fragment), (m.tuple.proto, m.fragment));
            // The L4 message with its real addresses.
            let t = &m.tuple;
            if let Some(l4) = b.get(ip.l4_range()) {
                round_trip_icmp(l4, &t.src, &t.dst, (t.src_ip(), t.dst_ip()));
            }
        }
    }
}
