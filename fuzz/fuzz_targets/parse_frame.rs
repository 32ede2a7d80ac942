//! Fuzzes `parse_frame`, the L4 checksum check, the reject builders and
//! every checked packet view: none may panic, whatever the input.
//!
//! Run with `cargo +nightly fuzz run parse_frame` from the repository root.

#![no_main]

use ftfw_dataplane::packet::{
    icmp_unreachable, ipv6_ext, l4_checksum_valid, parse_frame, tcp_rst, ArpPacket, EthernetFrame,
    IcmpPacket, Icmpv6Packet, Ipv4Packet, Ipv6ExtHeader, Ipv6FragHeader, Ipv6Packet, TcpOptionIter,
    TcpOptions, TcpPacket, UdpPacket, VlanTag,
};
use libfuzzer_sys::fuzz_target;

/// Calls every getter of every view that accepts `b`.
fn views(b: &[u8]) {
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
        );
        let _ = (
            p.protocol(),
            p.checksum(),
            p.src_addr(),
            p.dst_addr(),
            p.options().len(),
            p.payload().len(),
        );
        let _ = p.verify_checksum();
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
    for nh in [0u8, 43, 51, 60] {
        if let Ok(h) = Ipv6ExtHeader::new_checked(b, nh) {
            let _ = (h.next_header(), h.header_len(), h.data().len());
        }
    }
    if let Ok(f) = Ipv6FragHeader::new_checked(b) {
        let _ = (f.next_header(), f.frag_offset(), f.more_frags(), f.ident());
    }
    if let Some(&first) = b.first() {
        let _ = ipv6_ext::walk(first, &b[1..]);
    }
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

fuzz_target!(|data: &[u8]| {
    if let Ok(meta) = parse_frame(data) {
        let _ = l4_checksum_valid(data, &meta);
        let mut out = [0u8; 1600];
        if let Ok(n) = tcp_rst(data, &meta, &mut out) {
            // What we emit must parse.
            assert!(parse_frame(&out[..n]).is_ok());
        }
        if let Ok(n) = icmp_unreachable(data, &meta, &mut out) {
            assert!(parse_frame(&out[..n]).is_ok());
        }
        if meta.is_ip() {
            let l3 = usize::from(meta.l3_offset);
            views(&data[l3..]);
            if let Some(l4) = data.get(usize::from(meta.l4_offset)..) {
                views(l4);
            }
        }
    }
    views(data);
});
