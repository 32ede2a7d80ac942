//! Exercises every checked view and decoder on arbitrary bytes, checking
//! that nothing panics and that what the reject builders emit parses.
//! These functions panic when such an invariant breaks: that is what the
//! fuzzer and the property tests report.
//! Shared by the property tests and the fuzz target (`fuzz/`), so both
//! cover exactly the same accessors.

use super::tcp_opt::{TcpOptionIter, TcpOptions};
use super::*;

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
        }
    }
}
