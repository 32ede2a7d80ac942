//! NAT tests: rule parsing, frame translation and its checksums (against a
//! from-scratch computation), ICMP errors, the allocator's uniqueness and
//! steering, and whole flows through a pipeline.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use proptest::prelude::*;

use crate::acl::{parse_rules, Reason};
use crate::conntrack::{ConntrackConfig, DeltaRing, Shard};
use crate::flow::{proto, status, Tuple};
use crate::meta::{tcp_flags as f, PacketMeta};
use crate::packet::checksum;
use crate::packet::icmp_error::{write_answer, Answer};
use crate::packet::{FrameSpec, Ipv4Packet, L4Spec};
use crate::port::steer::worker_of;
use crate::worker::{ActiveRules, Decision, Pipeline, SyncPolicy};

use super::alloc::{choose, Steering};
use super::{NatKind, NatRule};

const OUTSIDE: u16 = 0;
const INSIDE: u16 = 1;
const CLIENT: &str = "192.0.2.10";
const SERVER: &str = "198.51.100.20";
const PUBLIC: &str = "203.0.113.1";

fn ports(name: &str) -> Option<u16> {
    match name {
        "outside" => Some(OUTSIDE),
        "inside" => Some(INSIDE),
        _ => None,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn active(text: &str) -> ActiveRules {
    let set = parse_rules(text, "test.rules", 1, &ports).expect("rules parse");
    ActiveRules {
        generation: 1,
        classifier: set.compile(),
        sync: SyncPolicy::new(&set, Vec::new(), crate::flow::SyncLevel::Full),
        nat: set.nat_rules(),
        helpers: crate::helper::HelperPolicy::new(&set, Vec::new()),
    }
}

/// A pipeline bridging outside and inside, and its rules.
struct Rig {
    p: Pipeline,
    rules: ActiveRules,
}

impl Rig {
    fn new(text: &str) -> Rig {
        let shard = Shard::new(
            ConntrackConfig {
                capacity: 256,
                ..Default::default()
            },
            Instant::now(),
            DeltaRing::new(1024),
        );
        let mut p = Pipeline::new(0, shard, None);
        p.set_peer(OUTSIDE, INSIDE);
        p.set_peer(INSIDE, OUTSIDE);
        Rig {
            p,
            rules: active(text),
        }
    }

    /// Decides `frame` arriving on `in_port` and, if forwarded, translates
    /// it in place as the worker does.
    fn send(&mut self, in_port: u16, frame: &mut Vec<u8>) -> Decision {
        let mut m = PacketMeta::default();
        let ok = Pipeline::parse(frame, false, &mut m);
        let hint = if ok && m.is_ip() {
            self.p.shard.warm(&m, 0)
        } else {
            u32::MAX
        };
        let d = self.p.decide(0, &self.rules, in_port, 0, ok, &m, hint);
        if d == Decision::Forward {
            let mut f = crate::port::Frame::from(std::mem::take(frame));
            let ok = self.p.apply_nat(&mut f, &mut m);
            f.swap_vec(frame);
            if !ok {
                return Decision::Drop;
            }
        }
        d
    }
}

/// Parses `frame` and checks every checksum it carries from scratch: the
/// IPv4 header, the L4 checksum, and for an ICMP error the embedded IPv4
/// header (and the embedded UDP checksum when the whole datagram is
/// quoted). Returns the frame's metadata.
fn verified(frame: &[u8]) -> PacketMeta {
    let m = crate::packet::parse_frame(frame).expect("frame parses");
    let l3 = usize::from(m.l3_offset);
    assert_eq!(
        crate::packet::l4_checksum_valid(frame, &m),
        Some(true),
        "L4 checksum of {:?}",
        m.tuple
    );
    if m.tuple.v6 {
        return verified_v6(frame, m);
    }
    let ipp = Ipv4Packet::new_checked(&frame[l3..]).unwrap();
    assert!(ipp.verify_checksum(), "IPv4 header checksum");
    if let Some(inner) = m.icmp_error {
        let e = usize::from(m.l4_offset) + 8;
        let end = l3 + usize::from(m.ip_len);
        let ehl = usize::from(frame[e] & 0x0f) * 4;
        assert_eq!(
            checksum::sum(&frame[e..e + ehl]),
            0xffff,
            "embedded IPv4 header"
        );
        let elen = usize::from(u16::from_be_bytes([frame[e + 2], frame[e + 3]]));
        if inner.proto == proto::UDP && e + elen <= end {
            let seg = &frame[e + ehl..e + elen];
            let (s, d) = (&inner.src, &inner.dst);
            assert!(
                checksum::segment_ok_v4(
                    &[s[0], s[1], s[2], s[3]],
                    &[d[0], d[1], d[2], d[3]],
                    proto::UDP,
                    seg
                ),
                "embedded UDP checksum"
            );
        }
    }
    m
}

/// The rest of [`verified`] for IPv6 (no header checksum; an ICMPv6
/// error's checksum, checked there, covers the quote): an embedded UDP
/// datagram's own checksum when the error quotes all of it.
fn verified_v6(frame: &[u8], m: PacketMeta) -> PacketMeta {
    if let Some(inner) = m.icmp_error {
        let e = usize::from(m.l4_offset) + 8;
        let end = usize::from(m.l3_offset) + usize::from(m.ip_len);
        let plen = usize::from(u16::from_be_bytes([frame[e + 4], frame[e + 5]]));
        if inner.proto == proto::UDP && e + 40 + plen <= end {
            assert!(
                checksum::segment_ok_v6(
                    &inner.src,
                    &inner.dst,
                    proto::UDP,
                    &frame[e + 40..e + 40 + plen]
                ),
                "embedded UDP checksum"
            );
        }
    }
    m
}

fn tcp(src: &str, dst: &str, sp: u16, dp: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    FrameSpec {
        src_ip: ip(src),
        dst_ip: ip(dst),
        l4: L4Spec::tcp(sp, dp, flags, seq, ack),
        payload_len: 11,
        ..FrameSpec::default()
    }
    .to_vec()
    .unwrap()
}

fn udp(src: &str, dst: &str, sp: u16, dp: u16) -> Vec<u8> {
    let spec = FrameSpec {
        src_ip: ip(src),
        dst_ip: ip(dst),
        l4: L4Spec::Udp {
            src_port: sp,
            dst_port: dp,
        },
        ..FrameSpec::default()
    };
    let mut v = vec![0u8; spec.l2_len() + spec.ip_len(13)];
    spec.write_with_payload(b"hello, world!", &mut v).unwrap();
    v
}

fn echo(src: &str, dst: &str, ty: u8, id: u16) -> Vec<u8> {
    FrameSpec {
        src_ip: ip(src),
        dst_ip: ip(dst),
        l4: L4Spec::Icmp {
            msg_type: ty,
            code: 0,
            ident: id,
            seq_no: 1,
        },
        payload_len: 16,
        ..FrameSpec::default()
    }
    .to_vec()
    .unwrap()
}

/// The ICMP error `from` sends about the packet `frame` (port unreachable).
pub(crate) fn icmp_error_about(frame: &[u8], from: &str) -> Vec<u8> {
    let m = crate::packet::parse_frame(frame).unwrap();
    let mut out = vec![0u8; 1600];
    let n = write_answer(
        frame,
        &m,
        &Answer {
            msg_type: 3,
            code: 3,
            src: ip(from),
            ttl: 64,
            eth_src: [2, 0, 0, 0, 0, 9],
            eth_dst: [2, 0, 0, 0, 0, 8],
        },
        &mut out,
    )
    .unwrap();
    out.truncate(n);
    out
}

fn v4(t: &[u8; 16]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(t[0], t[1], t[2], t[3]))
}

const SNAT: &str = "policy drop
accept ct established,related
accept in inside
nat src in inside from 192.0.2.0/24 to 203.0.113.1 ports 1024-65535
";

// ---- parsing ----

#[test]
fn nat_rules_parse_into_their_fields() {
    let text = "policy drop
nat src from 192.0.2.0/24 to 203.0.113.1 ports 1024-65535
nat dst in outside proto tcp daddr 203.0.113.1 dport 80 to 198.51.100.10:8080
nat src out outside proto udp to 203.0.113.1-203.0.113.4:2000-2999 comment \"pool\"
accept in inside
nat masquerade out outside ports 30000-39999
";
    let set = parse_rules(text, "r", 1, &ports).unwrap();
    assert_eq!(set.len(), 1, "nat lines are not filter rules");
    let nat = set.nat_rules();
    let r: Vec<(&NatRule, usize)> = nat.iter().collect();
    assert_eq!(r.len(), 4);
    assert_eq!(r[3].0.kind, NatKind::Masquerade);
    assert_eq!(r[3].1, 6);
    assert_eq!(
        r[3].0.to_string(),
        "nat masquerade out outside ports 30000-39999"
    );
    assert_eq!(r[0].1, 2);
    assert_eq!(r[0].0.kind, NatKind::Src);
    assert_eq!(r[0].0.addr_lo, Ipv4Addr::new(203, 0, 113, 1));
    assert_eq!(r[0].0.addr_count(), 1);
    assert_eq!(r[0].0.ports.map(|p| (p.lo, p.hi)), Some((1024, 65535)));
    assert_eq!(r[1].0.kind, NatKind::Dst);
    assert_eq!(r[1].0.matches.in_port, Some((OUTSIDE, "outside".into())));
    assert_eq!(r[1].0.matches.proto, Some(proto::TCP));
    assert_eq!(r[1].0.matches.dst.len(), 1);
    assert_eq!(r[1].0.ports.map(|p| (p.lo, p.hi)), Some((8080, 8080)));
    assert_eq!(r[2].0.out_port, Some((OUTSIDE, "outside".into())));
    assert_eq!(r[2].0.addr_count(), 4);
    assert_eq!(r[2].0.ports.map(|p| (p.lo, p.hi)), Some((2000, 2999)));
    assert_eq!(
        r[2].0.to_string(),
        "nat src proto udp out outside to 203.0.113.1-203.0.113.4 ports 2000-2999 comment \"pool\""
    );
    assert_eq!(
        r[1].0.to_string(),
        "nat dst in outside proto tcp daddr 203.0.113.1 dport 80 to 198.51.100.10 ports 8080"
    );
    // The canonical form parses back to the same rule.
    for (rule, _) in &r {
        let again = parse_rules(&rule.to_string(), "r", 1, &ports)
            .unwrap()
            .nat_rules();
        assert_eq!(again.iter().next().unwrap().0, *rule, "{rule}");
    }
}

/// NAT66: IPv6 targets as nftables writes them (a bare address or range,
/// in brackets before a port), and rules whose matches are IPv6.
#[test]
fn ipv6_nat_rules_parse_and_print_back() {
    let text = "policy drop
nat src from 2001:db8:1::/64 to 2001:db8:ffff::1-2001:db8:ffff::4 ports 2000-2999
nat dst in outside proto tcp daddr 2001:db8:ffff::1 dport 80 to [2001:db8:2::10]:8080
nat dst in outside proto udp to [2001:db8:2::10-2001:db8:2::11]:53
nat src to 2001:db8:ffff::/64
nat masquerade from 2001:db8:1::/64 out outside
";
    let text = text.replace(
        "to 2001:db8:ffff::/64",
        "to 2001:db8:ffff::-2001:db8:ffff::ffff:ffff:ffff:ffff",
    );
    let set = parse_rules(&text, "r", 1, &ports).unwrap();
    let nat = set.nat_rules();
    let r: Vec<&NatRule> = nat.iter().map(|(r, _)| r).collect();
    assert_eq!(r.len(), 5);
    assert_eq!(r[0].addr_lo, ip("2001:db8:ffff::1"));
    assert_eq!(r[0].addr_count(), 4);
    assert_eq!(r[1].addr_lo, ip("2001:db8:2::10"));
    assert_eq!(r[1].ports.map(|p| (p.lo, p.hi)), Some((8080, 8080)));
    assert_eq!(r[2].addr_count(), 2);
    assert_eq!(r[2].ports.map(|p| (p.lo, p.hi)), Some((53, 53)));
    // A range as large as a /64 is used from its start.
    assert_eq!(r[3].addr_count(), u32::MAX);
    assert_eq!(
        r[1].to_string(),
        "nat dst in outside proto tcp daddr 2001:db8:ffff::1 dport 80 to 2001:db8:2::10 ports 8080"
    );
    for rule in &r {
        let again = parse_rules(&rule.to_string(), "r", 1, &ports)
            .unwrap()
            .nat_rules();
        assert_eq!(again.iter().next().unwrap().0, *rule, "{rule}");
    }
    // A rule translates flows of its own family only; a masquerade, of
    // the family its matches name.
    let v4 = Tuple::new(ip(CLIENT), ip(SERVER), proto::TCP, 1, 80);
    let v6 = Tuple::new(ip("2001:db8:1::5"), ip("2001:db8:2::10"), proto::TCP, 1, 80);
    assert!(!r[3].matches(INSIDE, Some(OUTSIDE), 0, &v4));
    assert!(r[3].matches(INSIDE, Some(OUTSIDE), 0, &v6));
    assert!(r[4].matches(INSIDE, Some(OUTSIDE), 0, &v6));
    assert!(!r[4].matches(INSIDE, Some(OUTSIDE), 0, &v4));
    let v4_rule = parse_rules("nat src to 203.0.113.1", "r", 1, &ports)
        .unwrap()
        .nat_rules();
    let v4_rule = v4_rule.iter().next().unwrap().0;
    assert!(v4_rule.matches(INSIDE, None, 0, &v4));
    assert!(!v4_rule.matches(INSIDE, None, 0, &v6));
}

#[test]
fn bad_nat_lines_are_rejected_with_file_line_and_field() {
    let cases: &[(&str, Reason)] = &[
        ("nat", Reason::NatKind(String::new())),
        ("nat both to 203.0.113.1", Reason::NatKind("both".into())),
        ("nat src from 192.0.2.0/24", Reason::NatNeedsTarget),
        (
            "nat src from 2001:db8::/32 to 203.0.113.1",
            Reason::NatFamily,
        ),
        (
            "nat src from 192.0.2.0/24 to 2001:db8::1",
            Reason::NatFamily,
        ),
        ("nat src to 2001:db8::1-203.0.113.1", Reason::NatFamily),
        ("nat src proto icmpv6 to 203.0.113.1", Reason::NatFamily),
        ("nat src proto icmp to 2001:db8::1", Reason::NatFamily),
        // (The filter rule parser already refuses this one.)
        (
            "nat masquerade from 192.0.2.0/24 daddr 2001:db8::/32",
            Reason::FamilyMismatch("from and to"),
        ),
        (
            "nat src to [2001:db8::1",
            Reason::InvalidNatTarget("[2001:db8::1".into()),
        ),
        (
            "nat src to [2001:db8::1]8080",
            Reason::InvalidNatTarget("[2001:db8::1]8080".into()),
        ),
        (
            "nat src to 2001:db8::9-2001:db8::1",
            Reason::InvalidNatTarget("2001:db8::9-2001:db8::1".into()),
        ),
        (
            "nat src to 203.0.113.9-203.0.113.1",
            Reason::InvalidNatTarget("203.0.113.9-203.0.113.1".into()),
        ),
        (
            "nat src to 203.0.113.1:70000",
            Reason::InvalidNatTarget("203.0.113.1:70000".into()),
        ),
        (
            "nat dst to 198.51.100.10:8080",
            Reason::PortsNeedProto("a nat dst port"),
        ),
        ("nat src ct new to 203.0.113.1", Reason::NatKeyword("ct")),
        (
            "nat src to 203.0.113.1 to 203.0.113.2",
            Reason::DuplicateKeyword("to"),
        ),
        (
            "nat src to 203.0.113.1:2000 ports 3000-4000",
            Reason::DuplicateKeyword("ports"),
        ),
        (
            "nat src out nowhere to 203.0.113.1",
            Reason::UnknownInterface("nowhere".into()),
        ),
        ("nat src to", Reason::MissingValue("to")),
        (
            "nat src ports 9-1 to 203.0.113.1",
            Reason::InvalidPort("9-1".into()),
        ),
        (
            "nat src bogus 1 to 203.0.113.1",
            Reason::UnknownKeyword("bogus".into()),
        ),
    ];
    for (line, want) in cases {
        let text = format!("policy drop\naccept in inside\n{line}\n");
        let e = parse_rules(&text, "nat.rules", 1, &ports).expect_err(line);
        assert_eq!(e.line, 3, "{line}");
        assert_eq!(&e.reason, want, "{line}");
        assert!(e.to_string().starts_with("nat.rules:3: "), "{e}");
    }
}

// ---- translation through a pipeline ----

#[test]
fn snat_tcp_translates_both_directions_and_the_reply_finds_the_flow() {
    let mut rig = Rig::new(SNAT);
    let mut syn = tcp(CLIENT, SERVER, 40000, 80, f::SYN, 1000, 0);
    assert_eq!(rig.send(INSIDE, &mut syn), Decision::Forward);
    let m = verified(&syn);
    assert_eq!(m.tuple.src_ip(), ip(PUBLIC));
    assert_eq!(m.tuple.dst_ip(), ip(SERVER));
    assert_eq!(m.tuple.dst_port, 80);
    // The original port is kept when it is free and in range.
    assert_eq!(m.tuple.src_port, 40000);
    let public_port = m.tuple.src_port;
    // The flow carries its translated reply tuple and NAT status.
    let states: Vec<_> = {
        let mut v = Vec::new();
        rig.p.shard.for_each(0, |s| v.push(s));
        v
    };
    assert_eq!(states.len(), 1);
    let reply = states[0].extras.reply.expect("NAT reply tuple");
    assert_eq!(reply.dst_ip(), ip(PUBLIC));
    assert_ne!(states[0].status & status::SRC_NAT, 0);
    assert_eq!(states[0].status & status::DST_NAT, 0);
    // The server answers the public address: translated back.
    let mut syn_ack = tcp(SERVER, PUBLIC, 80, public_port, f::SYN | f::ACK, 5000, 1001);
    assert_eq!(rig.send(OUTSIDE, &mut syn_ack), Decision::Forward);
    let m = verified(&syn_ack);
    assert_eq!(m.tuple.dst_ip(), ip(CLIENT));
    assert_eq!((m.tuple.src_port, m.tuple.dst_port), (80, 40000));
    // Established both ways, on the cached-verdict path too.
    for _ in 0..2 {
        let mut ack = tcp(CLIENT, SERVER, 40000, 80, f::ACK, 1001, 5001);
        assert_eq!(rig.send(INSIDE, &mut ack), Decision::Forward);
        assert_eq!(verified(&ack).tuple.src_ip(), ip(PUBLIC));
        let mut back = tcp(SERVER, PUBLIC, 80, public_port, f::ACK, 5001, 1001);
        assert_eq!(rig.send(OUTSIDE, &mut back), Decision::Forward);
        assert_eq!(verified(&back).tuple.dst_ip(), ip(CLIENT));
    }
    assert_eq!(rig.p.shard.len(), 1, "one entry for both tuples");
    assert_eq!(rig.p.counters.nat_flows, 1);
    assert_eq!(rig.p.counters.nat_translated, 6);
    // A packet to the client's own address from outside is not a reply.
    let mut direct = tcp(SERVER, CLIENT, 80, 40000, f::ACK, 5001, 1001);
    rig.send(OUTSIDE, &mut direct);
    assert_eq!(
        crate::packet::parse_frame(&direct).unwrap().tuple.dst_ip(),
        ip(CLIENT)
    );
}

#[test]
fn snat_moves_the_port_when_the_original_is_taken_and_removal_frees_the_index() {
    let mut rig = Rig::new(SNAT);
    // Two clients with the same source port to the same server.
    let mut a = udp(CLIENT, SERVER, 5353, 53);
    let mut b = udp("192.0.2.11", SERVER, 5353, 53);
    assert_eq!(rig.send(INSIDE, &mut a), Decision::Forward);
    assert_eq!(rig.send(INSIDE, &mut b), Decision::Forward);
    let (ma, mb) = (verified(&a), verified(&b));
    assert_eq!(ma.tuple.src_port, 5353);
    assert_ne!(mb.tuple.src_port, 5353);
    assert_eq!(ma.tuple.src_ip(), mb.tuple.src_ip());
    // Each reply reaches its own client.
    let mut ra = udp(SERVER, PUBLIC, 53, ma.tuple.src_port);
    let mut rb = udp(SERVER, PUBLIC, 53, mb.tuple.src_port);
    assert_eq!(rig.send(OUTSIDE, &mut ra), Decision::Forward);
    assert_eq!(rig.send(OUTSIDE, &mut rb), Decision::Forward);
    assert_eq!(verified(&ra).tuple.dst_ip(), ip(CLIENT));
    assert_eq!(verified(&rb).tuple.dst_ip(), ip("192.0.2.11"));
    assert_eq!(verified(&rb).tuple.dst_port, 5353);
    assert_eq!(rig.p.shard.nat_len(), 2);
    let key = crate::flow::FlowKey {
        orig: Tuple::new(ip(CLIENT), ip(SERVER), proto::UDP, 5353, 53),
        zone: 0,
    };
    assert!(rig.p.shard.remove(0, &key));
    assert_eq!(rig.p.shard.nat_len(), 1);
    // The removed flow's reply no longer finds anything.
    let mut stale = udp(SERVER, PUBLIC, 53, 5353);
    assert_eq!(rig.send(OUTSIDE, &mut stale), Decision::Drop);
}

#[test]
fn udp_zero_checksum_stays_zero() {
    let mut rig = Rig::new(SNAT);
    let mut pkt = udp(CLIENT, SERVER, 4000, 69);
    let m = crate::packet::parse_frame(&pkt).unwrap();
    let c = usize::from(m.l4_offset) + 6;
    pkt[c..c + 2].copy_from_slice(&[0, 0]);
    assert_eq!(rig.send(INSIDE, &mut pkt), Decision::Forward);
    let m = verified(&pkt);
    assert_eq!(m.tuple.src_ip(), ip(PUBLIC));
    assert_eq!(&pkt[c..c + 2], &[0, 0]);
}

#[test]
fn snat_icmp_echo_translates_the_identifier() {
    let mut rig = Rig::new(
        "policy drop
accept ct established,related
accept in inside
nat src to 203.0.113.1 ports 5000-5000
",
    );
    let mut req = echo(CLIENT, SERVER, 8, 7);
    assert_eq!(rig.send(INSIDE, &mut req), Decision::Forward);
    let m = verified(&req);
    assert_eq!(m.tuple.src_ip(), ip(PUBLIC));
    assert_eq!(m.tuple.icmp_id(), 5000);
    let mut rep = echo(SERVER, PUBLIC, 0, 5000);
    assert_eq!(rig.send(OUTSIDE, &mut rep), Decision::Forward);
    let m = verified(&rep);
    assert_eq!(m.tuple.dst_ip(), ip(CLIENT));
    assert_eq!(m.tuple.icmp_id(), 7);
    // The one identifier is taken: a second ping cannot be translated.
    let mut other = echo("192.0.2.11", SERVER, 8, 7);
    assert_eq!(rig.send(INSIDE, &mut other), Decision::Drop);
    assert_eq!(rig.p.counters.nat_no_port, 1);
}

#[test]
fn dnat_translates_destination_and_replies_come_from_the_public_address() {
    let mut rig = Rig::new(
        "policy drop
accept ct established,related
accept in outside proto tcp dport 80
nat dst in outside proto tcp daddr 203.0.113.1 dport 80 to 198.51.100.10:8080
",
    );
    let client = "192.0.2.77";
    let mut syn = tcp(client, PUBLIC, 33333, 80, f::SYN, 1, 0);
    assert_eq!(rig.send(OUTSIDE, &mut syn), Decision::Forward);
    let m = verified(&syn);
    assert_eq!(m.tuple.dst_ip(), ip("198.51.100.10"));
    assert_eq!(m.tuple.dst_port, 8080);
    assert_eq!((m.tuple.src_ip(), m.tuple.src_port), (ip(client), 33333));
    let mut syn_ack = tcp("198.51.100.10", client, 8080, 33333, f::SYN | f::ACK, 9, 2);
    assert_eq!(rig.send(INSIDE, &mut syn_ack), Decision::Forward);
    let m = verified(&syn_ack);
    assert_eq!((m.tuple.src_ip(), m.tuple.src_port), (ip(PUBLIC), 80));
    let mut st = Vec::new();
    rig.p.shard.for_each(0, |s| st.push(s));
    assert_ne!(st[0].status & status::DST_NAT, 0);
    assert_eq!(st[0].status & status::SRC_NAT, 0);
}

#[test]
fn icmp_errors_about_translated_packets_are_translated_inside_and_out() {
    let mut rig = Rig::new(SNAT);
    let mut out = udp(CLIENT, SERVER, 40001, 53);
    assert_eq!(rig.send(INSIDE, &mut out), Decision::Forward);
    let sent = verified(&out);
    // A router outside answers the translated packet.
    let mut err = icmp_error_about(&out, "198.51.100.1");
    let before = verified(&err);
    assert_eq!(before.tuple.dst_ip(), ip(PUBLIC));
    assert_eq!(rig.send(OUTSIDE, &mut err), Decision::Forward);
    let m = verified(&err);
    assert_eq!(m.tuple.src_ip(), ip("198.51.100.1"), "outer source kept");
    assert_eq!(m.tuple.dst_ip(), ip(CLIENT));
    let inner = m.icmp_error.unwrap();
    assert_eq!((v4(&inner.src), inner.src_port), (ip(CLIENT), 40001));
    assert_eq!((v4(&inner.dst), inner.dst_port), (ip(SERVER), 53));
    // The client answers a translated reply with its own error: it leaves
    // from the public address, quoting the reply as it arrived outside.
    let mut reply = udp(SERVER, PUBLIC, 53, sent.tuple.src_port);
    assert_eq!(rig.send(OUTSIDE, &mut reply), Decision::Forward);
    let mut err2 = icmp_error_about(&reply, CLIENT);
    verified(&err2);
    assert_eq!(rig.send(INSIDE, &mut err2), Decision::Forward);
    let m = verified(&err2);
    assert_eq!(
        (m.tuple.src_ip(), m.tuple.dst_ip()),
        (ip(PUBLIC), ip(SERVER))
    );
    let inner = m.icmp_error.unwrap();
    assert_eq!((v4(&inner.src), inner.src_port), (ip(SERVER), 53));
    assert_eq!(
        (v4(&inner.dst), inner.dst_port),
        (ip(PUBLIC), sent.tuple.src_port)
    );
}

#[test]
fn icmp_error_about_a_translated_tcp_segment_keeps_checksums_right() {
    let mut rig = Rig::new(SNAT);
    let mut syn = tcp(CLIENT, SERVER, 40002, 443, f::SYN, 77, 0);
    assert_eq!(rig.send(INSIDE, &mut syn), Decision::Forward);
    let mut err = icmp_error_about(&syn, "198.51.100.1");
    assert_eq!(rig.send(OUTSIDE, &mut err), Decision::Forward);
    let m = verified(&err);
    assert_eq!(m.tuple.dst_ip(), ip(CLIENT));
    let inner = m.icmp_error.unwrap();
    assert_eq!((v4(&inner.src), inner.src_port), (ip(CLIENT), 40002));
    // The quoted TCP checksum was updated too: recompute it over the
    // whole quoted segment (the error quotes all of it).
    let e = usize::from(m.l4_offset) + 8;
    let seg = &err[e + 20..];
    assert!(checksum::segment_ok_v4(
        &[192, 0, 2, 10],
        &[198, 51, 100, 20],
        proto::TCP,
        seg
    ));
}

#[test]
fn flows_no_nat_rule_matches_pass_unchanged() {
    let mut rig = Rig::new(SNAT);
    let orig = tcp(SERVER, CLIENT, 80, 40000, f::SYN, 1, 0);
    let mut pkt = orig.clone();
    rig.send(OUTSIDE, &mut pkt);
    assert_eq!(pkt, orig);
    let orig = tcp("192.0.3.5", SERVER, 1, 2, f::SYN, 1, 0);
    let mut pkt = orig.clone();
    assert_eq!(rig.send(INSIDE, &mut pkt), Decision::Forward);
    assert_eq!(pkt, orig, "source outside the nat rule's from");
    assert_eq!(rig.p.counters.nat_translated, 0);
}

/// A UDP datagram of `payload` bytes (a pattern, checksum set) from
/// `src`:`sp` to `dst`:`dp`, cut into IPv4 fragments of at most 1,480
/// bytes of IP payload.
pub(crate) fn udp_fragments(
    src: &str,
    dst: &str,
    sp: u16,
    dp: u16,
    payload: usize,
) -> Vec<Vec<u8>> {
    let whole = FrameSpec {
        src_ip: ip(src),
        dst_ip: ip(dst),
        l4: L4Spec::Udp {
            src_port: sp,
            dst_port: dp,
        },
        payload_len: payload,
        ..FrameSpec::default()
    }
    .to_vec()
    .unwrap();
    let (head, body) = whole.split_at(34);
    body.chunks(1480)
        .enumerate()
        .map(|(i, part)| {
            let mut f = head.to_vec();
            f[16..18].copy_from_slice(&u16::try_from(20 + part.len()).unwrap().to_be_bytes());
            f[18..20].copy_from_slice(&0x4242u16.to_be_bytes());
            let more = (i + 1) * 1480 < body.len();
            let flags = u16::try_from(i * 1480 / 8).unwrap() | if more { 0x2000 } else { 0 };
            f[20..22].copy_from_slice(&flags.to_be_bytes());
            f[24..26].fill(0);
            let c = checksum::finish(checksum::sum(&f[14..34]));
            f[24..26].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(part);
            f
        })
        .collect()
}

/// Sends a fragmented datagram through `rig` and reassembles what came
/// out: each fragment's IPv4 header checksum is checked, and the whole
/// datagram's (its transport checksum too, by [`verified`]).
fn through(rig: &mut Rig, in_port: u16, frags: Vec<Vec<u8>>) -> PacketMeta {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for mut fr in frags {
        assert_eq!(rig.send(in_port, &mut fr), Decision::Forward);
        let ipp = Ipv4Packet::new_checked(&fr[14..]).unwrap();
        assert!(ipp.verify_checksum(), "fragment header checksum");
        out.push(fr);
    }
    let mut whole = out[0][..34].to_vec();
    for fr in &out {
        assert_eq!(fr[26..34], out[0][26..34], "every fragment's addresses");
        whole.extend_from_slice(&fr[34..]);
    }
    let len = u16::try_from(whole.len() - 14).unwrap();
    whole[16..18].copy_from_slice(&len.to_be_bytes());
    whole[20..22].fill(0);
    whole[24..26].fill(0);
    let c = checksum::finish(checksum::sum(&whole[14..34]));
    whole[24..26].copy_from_slice(&c.to_be_bytes());
    verified(&whole)
}

#[test]
fn fragments_of_translated_flows_are_translated_like_their_first() {
    let mut rig = Rig::new(SNAT);
    // Out: every fragment leaves from the public address, and the
    // reassembled datagram's UDP checksum (updated in the first
    // fragment for the whole datagram) is right.
    let m = through(
        &mut rig,
        INSIDE,
        udp_fragments(CLIENT, SERVER, 4000, 69, 4000),
    );
    assert_eq!(m.tuple.src_ip(), ip(PUBLIC));
    assert_eq!(m.tuple.dst_ip(), ip(SERVER));
    let public_port = m.tuple.src_port;
    // Back: the server's fragmented answer reaches the client.
    let m = through(
        &mut rig,
        OUTSIDE,
        udp_fragments(SERVER, PUBLIC, 69, public_port, 3500),
    );
    assert_eq!(m.tuple.dst_ip(), ip(CLIENT));
    assert_eq!(m.tuple.dst_port, 4000);
    assert_eq!(rig.p.counters.nat_fragments_dropped, 0);
    // 3 + 3 fragments, each translated.
    assert_eq!(rig.p.counters.nat_translated, 6);
    // An ICMP error about a translated packet that comes in fragments:
    // its later fragments could not follow the rewrite of the quote, so
    // the first is dropped and counted.
    let mut out = udp(CLIENT, SERVER, 4001, 69);
    assert_eq!(rig.send(INSIDE, &mut out), Decision::Forward);
    let mut err = icmp_error_about(&out, "198.51.100.1");
    err[20] |= 0x20;
    err[24..26].fill(0);
    let c = checksum::finish(checksum::sum(&err[14..34]));
    err[24..26].copy_from_slice(&c.to_be_bytes());
    assert_eq!(rig.send(OUTSIDE, &mut err), Decision::Drop);
    assert_eq!(rig.p.counters.nat_fragments_dropped, 1);
}

// ---- properties ----

fn l4_for(p: u8, sp: u16, dp: u16) -> L4Spec {
    match p {
        proto::TCP => L4Spec::tcp(sp, dp, f::ACK, 12345, 678),
        proto::UDP => L4Spec::Udp {
            src_port: sp,
            dst_port: dp,
        },
        _ => L4Spec::Icmp {
            msg_type: 8,
            code: 0,
            ident: sp,
            seq_no: dp,
        },
    }
}

proptest! {
    /// Translating a frame incrementally gives the bytes of the frame
    /// built from scratch with the new tuple (full checksum computation),
    /// IPv4 and IPv6.
    #[test]
    fn incremental_update_equals_full_recomputation(
        p in prop::sample::select(vec![proto::TCP, proto::UDP, proto::ICMP]),
        v6 in any::<bool>(),
        a in any::<[u128; 4]>(),
        ports in any::<[u16; 4]>(),
        payload in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let (sp, dp, nsp, ndp) = (ports[0], ports[1], ports[2], ports[3]);
        let addr = |x: u128| {
            if v6 {
                IpAddr::V6(std::net::Ipv6Addr::from(x))
            } else {
                IpAddr::V4(Ipv4Addr::from(u32::try_from(x >> 96).unwrap_or(0)))
            }
        };
        let build = |s: u128, d: u128, sp: u16, dp: u16| {
            let l4 = match l4_for(p, sp, dp) {
                // ICMPv6's echo request.
                L4Spec::Icmp { code, ident, seq_no, .. } if v6 => L4Spec::Icmp {
                    msg_type: 128,
                    code,
                    ident,
                    seq_no,
                },
                l4 => l4,
            };
            let spec = FrameSpec {
                src_ip: addr(s),
                dst_ip: addr(d),
                l4,
                ..FrameSpec::default()
            };
            let mut v = vec![0u8; spec.l2_len() + spec.ip_len(payload.len())];
            spec.write_with_payload(&payload, &mut v).unwrap();
            v
        };
        let mut frame = build(a[0], a[1], sp, dp);
        let meta = crate::packet::parse_frame(&frame).unwrap();
        // ICMP: only the identifier changes (the sequence stays).
        let icmp = p == proto::ICMP;
        let (nsp2, ndp2) = if icmp { (nsp, dp) } else { (nsp, ndp) };
        let want = build(a[2], a[3], nsp2, ndp2);
        let to = Tuple::new(
            addr(a[2]),
            addr(a[3]),
            meta.tuple.proto,
            nsp2,
            if icmp { meta.tuple.dst_port } else { ndp2 },
        );
        prop_assert!(super::rewrite::translate_packet(&mut frame, &meta, &to));
        prop_assert_eq!(frame, want);
    }

    /// The allocator never gives two live flows the same reply tuple, and
    /// every reply steers to the worker (and bucket) of its original, for
    /// any worker count.
    #[test]
    fn allocated_replies_are_unique_and_stay_on_the_owner(
        workers in 1u16..9,
        buckets in prop::sample::select(vec![0u32, 16, 256]),
        clients in prop::collection::vec((any::<u8>(), 1024u16..2048, any::<bool>()), 1..200),
    ) {
        let rule = active(
            "nat src to 203.0.113.1-203.0.113.2 ports 1024-65535"
        ).nat.iter().next().unwrap().0.target();
        let steer = Steering {
            workers,
            buckets,
            rss: None,
        };
        let mut used: HashSet<Tuple> = HashSet::new();
        for (host, port, ping) in clients {
            // A TCP connection, or a ping with identifier `port`.
            let (p, dport) = if ping { (proto::ICMP, 8 << 8) } else { (proto::TCP, 443) };
            let orig = Tuple::new(
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, host)),
                ip(SERVER),
                p,
                port,
                dport,
            );
            let taken = |t: &Tuple| used.contains(t);
            let Some(c) = choose(&rule, &orig, &steer, &taken) else {
                // Same client and port twice: the flow already exists.
                continue;
            };
            let w = usize::from(workers);
            prop_assert_eq!(worker_of(&c.reply, w), worker_of(&orig, w));
            if buckets != 0 {
                prop_assert_eq!(
                    crate::buckets::bucket_of_tuple(&c.reply, buckets),
                    crate::buckets::bucket_of_tuple(&orig, buckets)
                );
            }
            prop_assert!(used.insert(c.reply), "reply tuple given twice");
            prop_assert!(c.src && !c.dst);
        }
    }
}

#[test]
fn dnat_remaps_the_source_port_when_the_reply_would_reach_another_worker() {
    let rule = active("nat dst proto tcp to 198.51.100.10:8080")
        .nat
        .iter()
        .next()
        .unwrap()
        .0
        .target();
    let steer = Steering {
        workers: 4,
        buckets: 0,
        rss: None,
    };
    let mut remapped = 0;
    for port in 1024..1100u16 {
        let orig = Tuple::new(ip("192.0.2.5"), ip(PUBLIC), proto::TCP, port, 80);
        let c = choose(&rule, &orig, &steer, &|_| false).unwrap();
        assert_eq!(worker_of(&c.reply, 4), worker_of(&orig, 4));
        assert_eq!(
            (c.reply.src_ip(), c.reply.src_port),
            (ip("198.51.100.10"), 8080)
        );
        if c.reply.dst_port != port {
            remapped += 1;
            assert!(c.src);
        }
    }
    // With four workers most replies would land elsewhere unremapped.
    assert!(remapped > 0 && remapped < 76, "{remapped}");
}

#[test]
fn pings_with_low_identifiers_get_one_in_range_on_their_worker() {
    let rule = active("nat src to 198.51.100.253")
        .nat
        .iter()
        .next()
        .unwrap()
        .0
        .target();
    for workers in 1..5u16 {
        let steer = Steering {
            workers,
            buckets: 0,
            rss: None,
        };
        for id in [0u16, 5, 1023, 1024, 40000] {
            let orig = Tuple::new(ip("192.0.2.1"), ip("198.51.100.2"), proto::ICMP, id, 8 << 8);
            let c = choose(&rule, &orig, &steer, &|_| false).expect("a translation");
            assert!(c.reply.icmp_id() >= 1024, "{id} -> {}", c.reply.icmp_id());
            let w = usize::from(workers);
            assert_eq!(worker_of(&c.reply, w), worker_of(&orig, w));
        }
    }
}

#[test]
fn a_flow_added_with_a_nat_reply_tuple_translates() {
    let mut rig = Rig::new("policy accept\n");
    // As `ftfwctl flows add` or a commit of the external cache gives it.
    let orig = Tuple::new(ip(CLIENT), ip(SERVER), proto::UDP, 4000, 53);
    let reply = Tuple::new(ip(SERVER), ip(PUBLIC), proto::UDP, 53, 61000);
    let mut st = crate::flow::FlowState::established_tcp(orig, 60);
    st.tcp_state = crate::flow::TcpState::None;
    st.extras.reply = Some(reply);
    rig.p.shard.upsert(0, &st).unwrap();
    assert_eq!(rig.p.shard.nat_len(), 1);
    udp_translates_both_ways(&mut rig, CLIENT, SERVER, PUBLIC);
    // Replacing the flow without the reply tuple ends its translation.
    st.extras.reply = None;
    rig.p.shard.upsert(0, &st).unwrap();
    assert_eq!(rig.p.shard.nat_len(), 0);
    let orig_frame = udp(CLIENT, SERVER, 4000, 53);
    let mut plain = orig_frame.clone();
    assert_eq!(rig.send(INSIDE, &mut plain), Decision::Forward);
    assert_eq!(plain, orig_frame);
}

/// A datagram client:4000 -> server:53 of a flow translated to
/// public:61000 leaves translated and its answer comes back translated
/// back, checksums verified; returns the translated datagram.
fn udp_translates_both_ways(rig: &mut Rig, client: &str, server: &str, public: &str) -> Vec<u8> {
    let mut out = udp(client, server, 4000, 53);
    assert_eq!(rig.send(INSIDE, &mut out), Decision::Forward);
    let m = verified(&out);
    assert_eq!((m.tuple.src_ip(), m.tuple.src_port), (ip(public), 61000));
    let mut back = udp(server, public, 53, 61000);
    assert_eq!(rig.send(OUTSIDE, &mut back), Decision::Forward);
    let m = verified(&back);
    assert_eq!((m.tuple.dst_ip(), m.tuple.dst_port), (ip(client), 4000));
    out
}

/// An IPv6 flow a peer translated (a conntrackd NAT66 flow committed here,
/// or `flows add` with a reply tuple) translates both ways: UDP, TCP and
/// ICMPv6 echo, and an ICMPv6 error about a translated packet, inside and
/// out; every checksum verified from scratch.
#[test]
fn ipv6_flows_a_peer_translated_translate_both_ways_with_their_errors() {
    let mut rig = Rig::new("policy accept\n");
    let (client, server, public) = ("2001:db8::1", "2001:db8:1::2", "2001:db8::99");
    let add = |rig: &mut Rig, p: u8, cp: u16, sp: u16, pp: u16| {
        let o = Tuple::new(ip(client), ip(server), p, cp, sp);
        let r = if p == proto::ICMPV6 {
            Tuple::new(ip(server), ip(public), p, pp, 129 << 8)
        } else {
            Tuple::new(ip(server), ip(public), p, sp, pp)
        };
        let mut st = crate::flow::FlowState::established_tcp(o, 60);
        if p != proto::TCP {
            st.tcp_state = crate::flow::TcpState::None;
        }
        st.extras.reply = Some(r);
        rig.p.shard.upsert(0, &st).unwrap();
    };
    // UDP, and an ICMPv6 port unreachable about the translated datagram.
    add(&mut rig, proto::UDP, 4000, 53, 61000);
    let out = udp_translates_both_ways(&mut rig, client, server, public);
    let mut err = icmp_error_about(&out, server);
    assert_eq!(rig.send(OUTSIDE, &mut err), Decision::Forward);
    let m = verified(&err);
    assert_eq!(m.tuple.dst_ip(), ip(client));
    let inner = m.icmp_error.unwrap();
    assert_eq!((inner.src_ip(), inner.src_port), (ip(client), 4000));
    assert_eq!((inner.dst_ip(), inner.dst_port), (ip(server), 53));
    // TCP.
    add(&mut rig, proto::TCP, 40000, 443, 50000);
    let mut seg = tcp(client, server, 40000, 443, f::ACK, 1000, 2000);
    assert_eq!(rig.send(INSIDE, &mut seg), Decision::Forward);
    let m = verified(&seg);
    assert_eq!((m.tuple.src_ip(), m.tuple.src_port), (ip(public), 50000));
    let mut seg = tcp(server, public, 443, 50000, f::ACK, 2000, 1011);
    assert_eq!(rig.send(OUTSIDE, &mut seg), Decision::Forward);
    let m = verified(&seg);
    assert_eq!((m.tuple.dst_ip(), m.tuple.dst_port), (ip(client), 40000));
    // ICMPv6 echo: the identifier too.
    add(&mut rig, proto::ICMPV6, 7, 128 << 8, 3000);
    let mut ping = echo(client, server, 128, 7);
    assert_eq!(rig.send(INSIDE, &mut ping), Decision::Forward);
    let m = verified(&ping);
    assert_eq!((m.tuple.src_ip(), m.tuple.icmp_id()), (ip(public), 3000));
    let mut pong = echo(server, public, 129, 3000);
    assert_eq!(rig.send(OUTSIDE, &mut pong), Decision::Forward);
    let m = verified(&pong);
    assert_eq!((m.tuple.dst_ip(), m.tuple.icmp_id()), (ip(client), 7));
    assert_eq!(rig.p.counters.nat_failed, 0);
    assert_eq!(rig.p.counters.nat_translated, 7);
}

/// Many clients keep the same source ports towards one server (the
/// benchmark's pattern: 250 clients, ports 1024 up): once the rule's 200
/// addresses are used up for a port, further flows walk the port range.
/// A walk that started inside the block of ports the kept ports had filled
/// used to try the same 64 taken ports at each of its 16 addresses and
/// fail (`nat_no_port`, 0.12% of 1M flows in `bench pipeline --nat`).
#[test]
fn a_saturated_block_of_kept_ports_does_not_make_allocation_fail() {
    let rule = active("nat src to 198.51.100.50-198.51.100.249\n")
        .nat
        .iter()
        .next()
        .unwrap()
        .0
        .target();
    for workers in [1u16, 2, 4] {
        let steer = Steering {
            workers,
            buckets: 0,
            rss: None,
        };
        let mut used: HashSet<Tuple> = HashSet::new();
        let mut failed = 0;
        for i in 0..250u32 * 1200 {
            let host = u8::try_from(1 + i % 250).unwrap();
            let port = 1024 + u16::try_from(i / 250).unwrap();
            let orig = Tuple::new(
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, host)),
                ip("198.51.100.1"),
                proto::TCP,
                port,
                80,
            );
            let taken = |t: &Tuple| used.contains(t);
            match choose(&rule, &orig, &steer, &taken) {
                Some(c) => assert!(used.insert(c.reply), "reply tuple given twice"),
                None => failed += 1,
            }
        }
        assert_eq!(
            failed, 0,
            "{workers} workers: {failed} of 150,000 flows got no port"
        );
    }
}

const SNAT66: &str = "policy drop
accept ct established,related
accept in inside
accept in outside proto tcp dport 80
nat src in inside from 2001:db8:1::/64 to 2001:db8:ffff::1
nat dst in outside proto tcp daddr 2001:db8:ffff::1 dport 80 to [2001:db8:2::10]:8080
";
const CLIENT6: &str = "2001:db8:1::5";
const SERVER6: &str = "2001:db8:9::20";
const PUBLIC6: &str = "2001:db8:ffff::1";

/// NAT66 made here by the rules (not only committed from a peer): TCP
/// source NAT keeps the port and translates both ways; a second client on
/// the same port gets another; ICMPv6 echo gets its identifier
/// translated; an ICMPv6 error about a translated datagram is translated
/// inside and out. Every checksum verified from scratch.
#[test]
fn ipv6_source_nat_translates_both_directions_and_its_errors() {
    let mut rig = Rig::new(SNAT66);
    let mut syn = tcp(CLIENT6, SERVER6, 40000, 443, f::SYN, 1000, 0);
    assert_eq!(rig.send(INSIDE, &mut syn), Decision::Forward);
    let m = verified(&syn);
    assert_eq!((m.tuple.src_ip(), m.tuple.src_port), (ip(PUBLIC6), 40000));
    assert_eq!((m.tuple.dst_ip(), m.tuple.dst_port), (ip(SERVER6), 443));
    let mut states = Vec::new();
    rig.p.shard.for_each(0, |s| states.push(s));
    assert_ne!(states[0].status & status::SRC_NAT, 0);
    assert_eq!(states[0].extras.reply.unwrap().dst_ip(), ip(PUBLIC6));
    let mut syn_ack = tcp(SERVER6, PUBLIC6, 443, 40000, f::SYN | f::ACK, 5000, 1001);
    assert_eq!(rig.send(OUTSIDE, &mut syn_ack), Decision::Forward);
    let m = verified(&syn_ack);
    assert_eq!((m.tuple.dst_ip(), m.tuple.dst_port), (ip(CLIENT6), 40000));
    // Another client, same port: another public port, its own replies.
    let other = "2001:db8:1::6";
    let mut a = udp(CLIENT6, SERVER6, 5353, 53);
    let mut b = udp(other, SERVER6, 5353, 53);
    assert_eq!(rig.send(INSIDE, &mut a), Decision::Forward);
    assert_eq!(rig.send(INSIDE, &mut b), Decision::Forward);
    let (ma, mb) = (verified(&a), verified(&b));
    assert_eq!(ma.tuple.src_port, 5353);
    assert_ne!(mb.tuple.src_port, 5353);
    let mut rb = udp(SERVER6, PUBLIC6, 53, mb.tuple.src_port);
    assert_eq!(rig.send(OUTSIDE, &mut rb), Decision::Forward);
    let m = verified(&rb);
    assert_eq!((m.tuple.dst_ip(), m.tuple.dst_port), (ip(other), 5353));
    // The server's port unreachable about b's datagram, as it left.
    let mut err = icmp_error_about(&b, SERVER6);
    assert_eq!(rig.send(OUTSIDE, &mut err), Decision::Forward);
    let m = verified(&err);
    assert_eq!(m.tuple.dst_ip(), ip(other));
    let inner = m.icmp_error.unwrap();
    assert_eq!((inner.src_ip(), inner.src_port), (ip(other), 5353));
    // ICMPv6 echo.
    let mut ping = echo(CLIENT6, SERVER6, 128, 7);
    assert_eq!(rig.send(INSIDE, &mut ping), Decision::Forward);
    let m = verified(&ping);
    assert_eq!(m.tuple.src_ip(), ip(PUBLIC6));
    let id = m.tuple.icmp_id();
    let mut pong = echo(SERVER6, PUBLIC6, 129, id);
    assert_eq!(rig.send(OUTSIDE, &mut pong), Decision::Forward);
    let m = verified(&pong);
    assert_eq!((m.tuple.dst_ip(), m.tuple.icmp_id()), (ip(CLIENT6), 7));
    // IPv4 flows are not translated by IPv6 rules.
    let mut v4 = udp(CLIENT, SERVER, 4000, 53);
    let before = v4.clone();
    rig.send(INSIDE, &mut v4);
    assert_eq!(v4, before);
    assert_eq!(rig.p.counters.nat_flows, 4);
    assert_eq!(rig.p.counters.nat_failed, 0);
}

/// NAT66 destination NAT with a port: the client talks to the public
/// address and port, the server sees its own, its answers come from the
/// public ones.
#[test]
fn ipv6_destination_nat_with_a_port_translates_both_directions() {
    let mut rig = Rig::new(SNAT66);
    let mut syn = tcp(SERVER6, PUBLIC6, 50000, 80, f::SYN, 1000, 0);
    assert_eq!(rig.send(OUTSIDE, &mut syn), Decision::Forward);
    let m = verified(&syn);
    assert_eq!(
        (m.tuple.dst_ip(), m.tuple.dst_port),
        (ip("2001:db8:2::10"), 8080)
    );
    assert_eq!((m.tuple.src_ip(), m.tuple.src_port), (ip(SERVER6), 50000));
    let mut syn_ack = tcp(
        "2001:db8:2::10",
        SERVER6,
        8080,
        50000,
        f::SYN | f::ACK,
        7000,
        1001,
    );
    assert_eq!(rig.send(INSIDE, &mut syn_ack), Decision::Forward);
    let m = verified(&syn_ack);
    assert_eq!((m.tuple.src_ip(), m.tuple.src_port), (ip(PUBLIC6), 80));
    assert_eq!(rig.p.counters.nat_flows, 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// NAT66: the allocator's replies are unique and steer to the
    /// original's worker (and bucket) for any worker count, as for IPv4.
    #[test]
    fn ipv6_allocated_replies_are_unique_and_stay_on_the_owner(
        workers in 1u16..9,
        buckets in prop::sample::select(vec![0u32, 16, 256]),
        clients in prop::collection::vec((any::<u16>(), 1024u16..1100), 1..200),
    ) {
        let rule = active("nat src to 2001:db8:ffff::1-2001:db8:ffff::2")
            .nat
            .iter()
            .next()
            .unwrap()
            .0
            .target();
        let steer = Steering {
            workers,
            buckets,
            rss: None,
        };
        let mut used: HashSet<Tuple> = HashSet::new();
        for (host, port) in clients {
            let mut client = [0u8; 16];
            client[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            client[14..].copy_from_slice(&host.to_be_bytes());
            let orig = Tuple::new(
                IpAddr::V6(std::net::Ipv6Addr::from(client)),
                ip(SERVER6),
                proto::UDP,
                port,
                53,
            );
            let Some(c) = choose(&rule, &orig, &steer, &|t| used.contains(t)) else {
                continue;
            };
            let w = usize::from(workers);
            prop_assert!(c.reply.v6);
            let public = c.reply.dst_ip();
            prop_assert!(public == ip("2001:db8:ffff::1") || public == ip("2001:db8:ffff::2"));
            prop_assert_eq!(worker_of(&c.reply, w), worker_of(&orig, w));
            if buckets != 0 {
                prop_assert_eq!(
                    crate::buckets::bucket_of_tuple(&c.reply, buckets),
                    crate::buckets::bucket_of_tuple(&orig, buckets)
                );
            }
            prop_assert!(used.insert(c.reply), "reply tuple given twice");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// DPDK with symmetric RSS: the allocator's replies reach the queue
    /// (worker) of their original under the NIC's hash, not `worker_of`'s,
    /// for any queue count and table size, IPv4 and IPv6.
    #[test]
    fn under_rss_allocated_replies_reach_the_originals_queue(
        queues in 2u16..9,
        reta in prop::sample::select(vec![64u32, 128, 512]),
        v6 in any::<bool>(),
        clients in prop::collection::vec((any::<u16>(), 1024u16..1100, any::<bool>()), 1..100),
    ) {
        let rule = if v6 {
            "nat src to 2001:db8:ffff::1"
        } else {
            "nat src to 203.0.113.1"
        };
        let rule = active(rule).nat.iter().next().unwrap().0.target();
        let model = crate::port::rss::RssModel { reta_size: reta, queues };
        let steer = Steering {
            workers: queues,
            buckets: 0,
            rss: Some(model),
        };
        let mut used: HashSet<Tuple> = HashSet::new();
        for (host, port, udp) in clients {
            let client = if v6 {
                IpAddr::V6(std::net::Ipv6Addr::from(0x2001_0db8_0001_u128 << 80 | u128::from(host)))
            } else {
                IpAddr::V4(Ipv4Addr::from(0xc000_0200 | u32::from(host & 0xff)))
            };
            let server = if v6 { ip(SERVER6) } else { ip(SERVER) };
            let p = if udp { proto::UDP } else { proto::TCP };
            let orig = Tuple::new(client, server, p, port, 443);
            let Some(c) = choose(&rule, &orig, &steer, &|t| used.contains(t)) else {
                continue;
            };
            prop_assert_eq!(model.queue_of_tuple(&c.reply), model.queue_of_tuple(&orig));
            prop_assert!(used.insert(c.reply), "reply tuple given twice");
        }
    }
}

/// Under RSS a ping's queue depends on its addresses alone: when the
/// rule's one address cannot keep the reply on this worker, the flow is
/// still translated, and its reply is recorded as foreign so that the
/// worker RSS gives it hands it back. TCP needs no such help. (Worker 0:
/// only flows whose first packet RSS gives queue 0.)
#[test]
fn under_rss_pings_translate_and_their_replies_are_recorded_for_hand_back() {
    let mut rig = Rig::new(SNAT);
    let model = crate::port::rss::RssModel {
        reta_size: 128,
        queues: 4,
    };
    rig.p.nat_steering.workers = 4;
    rig.p.nat_steering.rss = Some(model);
    let table = crate::conntrack::foreign::ForeignReplies::new(1024);
    rig.p
        .shard
        .set_foreign(crate::conntrack::foreign::ForeignLink {
            table: table.clone(),
            worker: 0,
            workers: 4,
            rss: Some(model),
        });
    let (mut pings, mut elsewhere, mut syns) = (0, 0, 0);
    for host in 1..=250u8 {
        let client = format!("192.0.2.{host}");
        let orig = Tuple::new(ip(&client), ip(SERVER), proto::ICMP, 7, 8 << 8);
        if model.queue_of_tuple(&orig) == 0 {
            pings += 1;
            let mut ping = echo(&client, SERVER, 8, 7);
            assert_eq!(rig.send(INSIDE, &mut ping), Decision::Forward, "{client}");
            let m = verified(&ping);
            assert_eq!(m.tuple.src_ip(), ip(PUBLIC));
            let reply = Tuple::new(ip(SERVER), ip(PUBLIC), proto::ICMP, m.tuple.icmp_id(), 0);
            if model.queue_of_tuple(&reply) != 0 {
                elsewhere += 1;
                assert_eq!(table.owner(&reply, 0), Some(0), "{client}: recorded");
            }
        }
        let orig = Tuple::new(ip(&client), ip(SERVER), proto::TCP, 40000, 80);
        if model.queue_of_tuple(&orig) == 0 {
            syns += 1;
            let mut syn = tcp(&client, SERVER, 40000, 80, f::SYN, 1, 0);
            assert_eq!(rig.send(INSIDE, &mut syn), Decision::Forward);
            let t = verified(&syn).tuple;
            assert_eq!(model.queue_of_tuple(&t), 0, "{client}: TCP stays");
        }
    }
    // Most pings' replies land elsewhere (one address: 3 in 4), and every
    // one of those is recorded; the TCP flows' replies never are.
    assert!(pings > 30 && elsewhere > pings / 2, "{pings} {elsewhere}");
    assert_eq!(table.len(), elsewhere);
    assert_eq!(rig.p.counters.nat_no_port, 0);
    assert_eq!(
        rig.p.counters.nat_flows,
        u64::try_from(pings + syns).unwrap()
    );
}
