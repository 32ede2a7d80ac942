//! Pipeline tests: nftables rule semantics on later packets of a flow,
//! reloads, checksums, the ethertype policy and RH0, driven with real frames.

use std::net::IpAddr;
use std::time::Instant;

use crate::acl::parse_rules;
use crate::conntrack::{ConntrackConfig, DeltaRing, Shard};
use crate::meta::{tcp_flags as f, PacketMeta};
use crate::packet::{FrameSpec, L4Spec, TcpOptions};

use super::ethertypes::PassEthertypes;
use super::pipeline::{ActiveRules, Decision, Pipeline};

/// Port indices as rules name them.
const OUTSIDE: u16 = 0;
const INSIDE: u16 = 1;

pub(super) fn port_index(name: &str) -> Option<u16> {
    match name {
        "outside" => Some(OUTSIDE),
        "inside" => Some(INSIDE),
        _ => None,
    }
}

pub(super) fn compile(text: &str, generation: u64) -> ActiveRules {
    let set = parse_rules(text, "test.rules", 1, &port_index).expect("rules parse");
    ActiveRules {
        generation,
        classifier: set.compile(),
        sync: super::SyncPolicy::new(&set, Vec::new(), crate::flow::SyncLevel::Full),
        nat: set.nat_rules(),
        helpers: crate::helper::HelperPolicy::new(&set, Vec::new()),
    }
}

/// A pipeline on one shard, its rules, and a reload counter.
pub(super) struct Rig {
    pub(super) p: Pipeline,
    pub(super) rules: ActiveRules,
}

impl Rig {
    pub(super) fn new(text: &str) -> Rig {
        Rig::with_config(
            text,
            ConntrackConfig {
                capacity: 64,
                ..Default::default()
            },
        )
    }

    /// A rig whose shard has this configuration; the two ports are a
    /// bridge pair.
    pub(super) fn with_config(text: &str, cfg: ConntrackConfig) -> Rig {
        let shard = Shard::new(cfg, Instant::now(), DeltaRing::new(1024));
        let mut p = Pipeline::new(0, shard, None);
        p.set_peer(OUTSIDE, INSIDE);
        p.set_peer(INSIDE, OUTSIDE);
        Rig {
            p,
            rules: compile(text, 1),
        }
    }

    /// Swaps in `text` as the next generation.
    pub(super) fn reload(&mut self, text: &str) {
        let g = self.rules.generation + 1;
        self.rules = compile(text, g);
    }

    /// Runs one frame arriving on `in_port` through parse and decide.
    pub(super) fn send(&mut self, in_port: u16, frame: &[u8]) -> Decision {
        let mut m = PacketMeta::default();
        let ok = Pipeline::parse(frame, false, &mut m);
        let hint = if ok && m.is_ip() {
            self.p.shard.warm(&m, 0)
        } else {
            u32::MAX
        };
        self.p.decide(0, &self.rules, in_port, 0, ok, &m, hint)
    }
}

const CLIENT: &str = "192.0.2.10";
const SERVER: &str = "198.51.100.20";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A TCP segment between the client (port 40000) and the server (port
/// 8444); `to_server` picks the direction.
fn seg(to_server: bool, flags: u8, seq: u32, ack: u32, payload: usize) -> Vec<u8> {
    let (src, dst, sp, dp) = if to_server {
        (CLIENT, SERVER, 40000, 8444)
    } else {
        (SERVER, CLIENT, 8444, 40000)
    };
    FrameSpec {
        src_ip: ip(src),
        dst_ip: ip(dst),
        l4: L4Spec::tcp(sp, dp, flags, seq, ack),
        payload_len: payload,
        ..FrameSpec::default()
    }
    .to_vec()
    .unwrap()
}

/// The client is outside, the server inside; `send_up` goes client to
/// server, `send_down` back.
struct Conn {
    c_seq: u32,
    s_seq: u32,
}

impl Conn {
    fn syn(rig: &mut Rig) -> (Conn, Decision) {
        let d = rig.send(OUTSIDE, &seg(true, f::SYN, 1000, 0, 0));
        (
            Conn {
                c_seq: 1001,
                s_seq: 5000,
            },
            d,
        )
    }
    fn syn_ack(&mut self, rig: &mut Rig) -> Decision {
        let d = rig.send(
            INSIDE,
            &seg(false, f::SYN | f::ACK, self.s_seq, self.c_seq, 0),
        );
        self.s_seq += 1;
        d
    }
    fn send_up(&mut self, rig: &mut Rig, len: u32) -> Decision {
        let flags = if len > 0 { f::ACK | f::PSH } else { f::ACK };
        let d = rig.send(
            OUTSIDE,
            &seg(true, flags, self.c_seq, self.s_seq, len as usize),
        );
        self.c_seq += len;
        d
    }
    fn send_down(&mut self, rig: &mut Rig, len: u32) -> Decision {
        let flags = if len > 0 { f::ACK | f::PSH } else { f::ACK };
        let d = rig.send(
            INSIDE,
            &seg(false, flags, self.s_seq, self.c_seq, len as usize),
        );
        self.s_seq += len;
        d
    }
    /// A whole handshake and one exchange; each packet's decision.
    fn open(rig: &mut Rig) -> (Conn, [Decision; 5]) {
        let (mut c, d0) = Conn::syn(rig);
        let d1 = c.syn_ack(rig);
        let d2 = c.send_up(rig, 0);
        let d3 = c.send_up(rig, 100);
        let d4 = c.send_down(rig, 100);
        (c, [d0, d1, d2, d3, d4])
    }
}

use Decision::{Drop, Forward};

const OPEN_8444: &str = "\
accept ct established,related
accept proto tcp dport 8444 ct new
policy drop
";

#[test]
fn sport_rule_before_established_blocks_the_replies() {
    let mut rig = Rig::new(
        "drop in inside proto tcp sport 8444\n\
         accept ct established,related\n\
         accept proto tcp dport 8444 ct new\n\
         policy drop\n",
    );
    let (mut c, d) = Conn::open(&mut rig);
    // The SYN passes; everything the server sends is dropped, so the
    // handshake never completes, as with nftables.
    assert_eq!(d[0], Forward);
    assert_eq!(d[1], Drop, "SYN-ACK");
    assert_eq!(d[4], Drop, "server data");
    assert_eq!(c.send_down(&mut rig, 10), Drop, "cached drop");
    assert_eq!(c.syn_ack(&mut rig), Drop, "retransmitted SYN-ACK");
}

#[test]
fn established_dport_rule_blocks_after_the_syn() {
    let mut rig = Rig::new("drop proto tcp dport 8444 ct established\naccept\n");
    let (_, d) = Conn::open(&mut rig);
    // SYN (NEW) and SYN-ACK (dport 40000) pass; the client's ACK and data
    // are ESTABLISHED to port 8444 and dropped; the server's data passes.
    assert_eq!(d, [Forward, Forward, Drop, Drop, Forward]);
    assert!(rig.p.counters.dropped_by_rule >= 2);
}

#[test]
fn original_direction_is_new_until_a_reply_is_seen() {
    // Only NEW packets to 8444 and established replies are accepted.
    let mut rig = Rig::new("accept proto tcp dport 8444 ct new\naccept in inside ct established\n");
    let (mut c, d0) = Conn::syn(&mut rig);
    assert_eq!(d0, Forward);
    // A retransmitted SYN is still NEW (cached verdict, same answer).
    assert_eq!(rig.send(OUTSIDE, &seg(true, f::SYN, 1000, 0, 0)), Forward);
    assert_eq!(c.syn_ack(&mut rig), Forward);
    // After the reply the client's packets are ESTABLISHED, which no rule
    // accepts from outside: the cached NEW verdict must not be reused.
    assert_eq!(c.send_up(&mut rig, 0), Drop);
    assert_eq!(c.send_down(&mut rig, 10), Forward);
}

#[test]
fn a_server_first_packet_after_reload_does_not_approve_the_client() {
    let mut rig = Rig::new(OPEN_8444);
    let (mut c, d) = Conn::open(&mut rig);
    assert_eq!(d, [Forward; 5]);
    rig.reload("drop proto tcp dport 8444\naccept ct established,related\npolicy drop\n");
    // The server speaks first: its direction is still allowed.
    assert_eq!(c.send_down(&mut rig, 100), Forward);
    assert_eq!(c.send_down(&mut rig, 100), Forward);
    // The client's direction is judged on its own and dropped.
    assert_eq!(c.send_up(&mut rig, 100), Drop);
    assert_eq!(c.send_up(&mut rig, 100), Drop);
    assert_eq!(c.send_down(&mut rig, 100), Forward);
}

#[test]
fn a_flow_idle_across_many_reloads_is_rechecked() {
    for reloads in [256u64, 512, 65_536, 131_072] {
        let mut rig = Rig::new(OPEN_8444);
        let (mut c, d) = Conn::open(&mut rig);
        assert_eq!(d, [Forward; 5]);
        // Generation 1 + n: the same low byte (and, for multiples of
        // 65,536, the same 16 bits a flow keeps) as the verdicts' generation.
        rig.rules = compile("policy drop\n", 1 + reloads);
        assert_eq!(c.send_up(&mut rig, 10), Drop, "{reloads} reloads");
        assert_eq!(c.send_down(&mut rig, 10), Drop, "{reloads} reloads");
    }
}

#[test]
fn a_reload_that_allows_again_reopens_the_flow() {
    let mut rig = Rig::new(OPEN_8444);
    let (mut c, _) = Conn::open(&mut rig);
    rig.reload("policy drop\n");
    assert_eq!(c.send_up(&mut rig, 10), Drop);
    rig.reload(OPEN_8444);
    assert_eq!(c.send_up(&mut rig, 0), Forward);
}

#[test]
fn cached_verdicts_are_per_input_port() {
    let mut rig = Rig::new("accept in outside\naccept in inside proto tcp sport 8444\n");
    let (mut c, d) = Conn::open(&mut rig);
    assert_eq!(d, [Forward; 5]);
    // The client's tuple arriving on the inside port is another matter.
    let spoof = seg(true, f::ACK, c.c_seq, c.s_seq, 0);
    assert_eq!(rig.send(INSIDE, &spoof), Drop);
    assert_eq!(c.send_up(&mut rig, 0), Forward);
}

#[test]
fn matching_log_rules_log_every_packet() {
    let mut rig = Rig::new("log proto tcp sport 8444\naccept\n");
    let (mut c, _) = Conn::open(&mut rig);
    let before = rig.p.counters.logged;
    assert_eq!(before, 2, "SYN-ACK and server data");
    for _ in 0..5 {
        assert_eq!(c.send_down(&mut rig, 10), Forward);
        assert_eq!(c.send_up(&mut rig, 10), Forward);
    }
    assert_eq!(rig.p.counters.logged, before + 5);
    // The client's direction matches no log rule and takes the cache.
    assert!(rig.p.counters.fast_path >= 5);
}

#[test]
fn bad_checksum_syn_then_the_real_syn_completes() {
    let mut rig = Rig::new(OPEN_8444);
    let mut bad = seg(true, f::SYN, 777_777, 0, 0);
    let n = bad.len();
    bad[n - 3] ^= 0x55; // inside the TCP header (urgent pointer)
    assert_eq!(rig.send(OUTSIDE, &bad), Drop);
    assert_eq!(rig.p.counters.bad_checksum, 1);
    assert!(rig.p.shard.is_empty(), "no flow from a corrupt SYN");
    let (c, d) = Conn::open(&mut rig);
    assert_eq!(d, [Forward; 5]);
    let mut c = c;
    assert_eq!(c.send_down(&mut rig, 1000), Forward);
    assert_eq!(c.send_up(&mut rig, 0), Forward);
    // A port's word is taken: the same corrupt frame passes the check.
    let mut m = PacketMeta::default();
    assert!(Pipeline::parse(&bad, true, &mut m));
    assert!(!m.l4_csum_bad);
}

#[test]
fn bad_udp_and_icmp_checksums_are_dropped_v4_and_v6() {
    let mut rig = Rig::new("accept\n");
    let specs = [
        (
            CLIENT,
            SERVER,
            L4Spec::Udp {
                src_port: 5000,
                dst_port: 53,
            },
        ),
        (
            "2001:db8::1",
            "2001:db8::2",
            L4Spec::Udp {
                src_port: 5000,
                dst_port: 53,
            },
        ),
        (
            CLIENT,
            SERVER,
            L4Spec::Icmp {
                msg_type: 8,
                code: 0,
                ident: 1,
                seq_no: 1,
            },
        ),
        (
            "2001:db8::1",
            "2001:db8::2",
            L4Spec::Icmp {
                msg_type: 128,
                code: 0,
                ident: 1,
                seq_no: 1,
            },
        ),
    ];
    for (i, (s, d, l4)) in specs.into_iter().enumerate() {
        let good = FrameSpec {
            src_ip: ip(s),
            dst_ip: ip(d),
            l4,
            payload_len: 8,
            ..FrameSpec::default()
        }
        .to_vec()
        .unwrap();
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 1] ^= 1; // payload byte
        assert_eq!(rig.send(OUTSIDE, &bad), Drop, "spec {i}");
        assert_eq!(rig.p.counters.bad_checksum, i as u64 + 1);
        assert_eq!(rig.send(OUTSIDE, &good), Forward, "spec {i}");
    }
}

/// An Ethernet frame of `ethertype` (after optional VLAN tag) with a payload.
fn l2(ethertype: u16, vlan: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    if let Some(id) = vlan {
        v.extend_from_slice(&0x8100u16.to_be_bytes());
        v.extend_from_slice(&id.to_be_bytes());
    }
    v.extend_from_slice(&ethertype.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

#[test]
fn pppoe_and_unknown_ethertypes_are_dropped_unless_allowed() {
    let mut rig = Rig::new("accept\n");
    // A PPPoE session frame carrying IPv4 (PPP protocol 0x0021).
    let mut pppoe = vec![0x11, 0x00, 0x00, 0x01, 0x00, 0x2a, 0x00, 0x21];
    pppoe.extend_from_slice(&seg(true, f::SYN, 1, 0, 0)[14..]);
    let arp = [0u8; 28];
    assert_eq!(rig.send(OUTSIDE, &l2(0x8864, None, &pppoe)), Drop);
    assert_eq!(rig.send(OUTSIDE, &l2(0x8863, None, &pppoe)), Drop);
    assert_eq!(rig.send(OUTSIDE, &l2(0x1234, None, &[0; 46])), Drop);
    assert_eq!(rig.send(OUTSIDE, &l2(0x8864, Some(7), &pppoe)), Drop);
    assert_eq!(rig.p.counters.non_ip_dropped, 4);
    // ARP and LLDP pass by default, tagged or not.
    assert_eq!(rig.send(OUTSIDE, &l2(0x0806, None, &arp)), Forward);
    assert_eq!(rig.send(OUTSIDE, &l2(0x0806, Some(7), &arp)), Forward);
    assert_eq!(rig.send(OUTSIDE, &l2(0x88cc, None, &[0; 46])), Forward);
    assert_eq!(rig.p.counters.non_ip_passed, 3);
    // Once named, PPPoE passes.
    rig.p
        .set_pass_ethertypes(PassEthertypes::parse(&["arp", "pppoe-session"]).unwrap());
    assert_eq!(rig.send(OUTSIDE, &l2(0x8864, Some(7), &pppoe)), Forward);
    assert_eq!(rig.send(OUTSIDE, &l2(0x88cc, None, &[0; 46])), Drop);
    assert!(rig.p.shard.is_empty(), "non-IP frames create no flows");
}

#[test]
fn ipv6_with_a_type0_routing_header_is_dropped() {
    let mut rig = Rig::new("accept\n");
    let plain = FrameSpec {
        src_ip: ip("2001:db8::1"),
        dst_ip: ip("2001:db8::2"),
        l4: L4Spec::Tcp {
            src_port: 40000,
            dst_port: 22,
            seq: 1,
            ack: 0,
            flags: f::SYN,
            window: 1000,
            options: TcpOptions::default(),
        },
        ..FrameSpec::default()
    }
    .to_vec()
    .unwrap();
    // Insert a routing header (next header TCP, 24 bytes, type 0, one
    // segment left, one address) after the fixed IPv6 header.
    let with_rh = |ty: u8| {
        let mut v = plain.clone();
        let mut rh = vec![6u8, 2, ty, 1, 0, 0, 0, 0];
        rh.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
        v.splice(54..54, rh);
        v[20] = 43;
        let pl = u16::from_be_bytes([v[18], v[19]]) + 24;
        v[18..20].copy_from_slice(&pl.to_be_bytes());
        v
    };
    assert_eq!(rig.send(OUTSIDE, &with_rh(0)), Drop);
    assert_eq!(rig.p.counters.rh0_dropped, 1);
    assert!(rig.p.shard.is_empty());
    // Another routing type is not RH0 (and the checksum still holds: the
    // pseudo-header uses the header's destination here).
    let mut m = PacketMeta::default();
    assert!(Pipeline::parse(&with_rh(2), false, &mut m));
    assert!(!m.rh0);
    assert_eq!(rig.send(OUTSIDE, &plain), Forward);
    assert_eq!(rig.p.counters.rh0_dropped, 1);
}

fn loose_rig(text: &str) -> Rig {
    let mut cfg = ConntrackConfig {
        capacity: 64,
        ..Default::default()
    };
    cfg.tcp.loose = true;
    Rig::with_config(text, cfg)
}

#[test]
fn a_pickup_follows_the_direction_the_rules_allow_to_open() {
    // After a restart the table is empty; the server speaks first.
    let mut rig = loose_rig(OPEN_8444);
    let mut c = Conn {
        c_seq: 1001,
        s_seq: 5001,
    };
    assert_eq!(c.send_down(&mut rig, 1000), Forward, "server's data");
    // The flow is the client's connection to 8444, replied.
    let key = crate::flow::FlowKey {
        orig: crate::flow::Tuple::new(ip(CLIENT), ip(SERVER), crate::flow::proto::TCP, 40000, 8444),
        zone: 0,
    };
    let idx = rig
        .p
        .shard
        .lookup(&key)
        .expect("flow oriented client to server");
    let st = rig.p.shard.flow_state(0, idx).unwrap();
    assert_ne!(st.status & crate::flow::status::SEEN_REPLY, 0);
    assert_eq!(st.counters[1].packets, 1);
    // Both directions go on.
    assert_eq!(c.send_up(&mut rig, 0), Forward);
    assert_eq!(c.send_down(&mut rig, 1000), Forward);
    assert_eq!(c.send_up(&mut rig, 10), Forward);
    // The client speaking first is picked up as it travels.
    let mut rig = loose_rig(OPEN_8444);
    assert_eq!(c.send_up(&mut rig, 10), Forward);
    assert!(rig.p.shard.lookup(&key).is_some());
}

#[test]
fn a_pickup_no_orientation_allows_is_dropped() {
    // A server on a port no rule opens: neither way is allowed.
    let mut rig = loose_rig(
        "accept ct established,related\naccept in outside proto tcp dport 9999 ct new\npolicy drop\n",
    );
    let mut c = Conn {
        c_seq: 1001,
        s_seq: 5001,
    };
    assert_eq!(c.send_down(&mut rig, 100), Drop);
    assert_eq!(c.send_up(&mut rig, 100), Drop);
    assert!(rig.p.shard.is_empty());
    // Without loose pickup nothing is picked up at all.
    let mut rig = Rig::new(OPEN_8444);
    assert_eq!(c.send_down(&mut rig, 100), Drop);
    assert_eq!(c.send_up(&mut rig, 100), Drop);
    assert!(rig.p.shard.is_empty());
}

/// A rig whose delta ring the test can read.
fn rig_with_ring(text: &str) -> (Rig, std::sync::Arc<DeltaRing>) {
    let ring = DeltaRing::new(1024);
    let shard = Shard::new(
        ConntrackConfig {
            capacity: 64,
            ..Default::default()
        },
        Instant::now(),
        ring.clone(),
    );
    let mut p = Pipeline::new(0, shard, None);
    p.set_peer(OUTSIDE, INSIDE);
    p.set_peer(INSIDE, OUTSIDE);
    (
        Rig {
            p,
            rules: compile(text, 1),
        },
        ring,
    )
}

fn drain(ring: &DeltaRing) -> Vec<crate::conntrack::DeltaKind> {
    std::iter::from_fn(|| ring.pop()).map(|d| d.kind).collect()
}

#[test]
fn sync_established_replicates_a_flow_only_once_its_handshake_completes() {
    use crate::conntrack::DeltaKind::{Created, Destroyed, Updated};
    let rules = "policy drop\naccept ct established,related\n\
                 accept in outside proto tcp dport 8444 ct new sync established\n";
    let (mut r, ring) = rig_with_ring(rules);
    // A SYN nobody answers: never replicated.
    assert_eq!(r.send(OUTSIDE, &seg(true, f::SYN, 100, 0, 0)), Forward);
    assert_eq!(drain(&ring), vec![]);
    assert!(r.p.shard.stats().sync_skipped >= 1);
    // The handshake completes: the flow goes out once assured (as an
    // update, which creates it at the peer), and so does its end.
    assert_eq!(
        r.send(INSIDE, &seg(false, f::SYN | f::ACK, 500, 101, 0)),
        Forward
    );
    assert_eq!(r.send(OUTSIDE, &seg(true, f::ACK, 101, 501, 0)), Forward);
    let after_handshake = drain(&ring);
    assert!(
        after_handshake.iter().all(|k| *k == Updated),
        "{after_handshake:?}"
    );
    assert!(
        !after_handshake.is_empty(),
        "the assured flow is replicated"
    );
    assert!(!after_handshake.contains(&Created));
    r.p.shard.remove_where(0, |_| true);
    assert!(drain(&ring).contains(&Destroyed));
}

#[test]
fn sync_none_never_replicates_and_full_replicates_every_change() {
    let (mut none, ring) = rig_with_ring(
        "policy drop\naccept ct established,related\n\
         accept in outside proto tcp dport 8444 ct new sync none\n",
    );
    none.send(OUTSIDE, &seg(true, f::SYN, 100, 0, 0));
    none.send(INSIDE, &seg(false, f::SYN | f::ACK, 500, 101, 0));
    none.send(OUTSIDE, &seg(true, f::ACK, 101, 501, 0));
    assert_eq!(drain(&ring), vec![]);
    let (mut full, ring) = rig_with_ring(
        "policy drop\naccept ct established,related\naccept in outside proto tcp dport 8444 ct new\n",
    );
    full.send(OUTSIDE, &seg(true, f::SYN, 100, 0, 0));
    assert_eq!(drain(&ring), vec![crate::conntrack::DeltaKind::Created]);
}

#[test]
fn sync_levels_come_from_the_rule_then_the_zone_then_the_default() {
    use crate::flow::SyncLevel as L;
    let set = parse_rules(
        "accept proto tcp sync none\naccept proto udp\n",
        "t.rules",
        1,
        &port_index,
    )
    .unwrap();
    let p = super::SyncPolicy::new(&set, vec![(7, L::Established)], L::Full);
    assert_eq!(p.level(Some(0), 7), L::None, "the rule's own");
    assert_eq!(p.level(Some(1), 7), L::Established, "the zone's");
    assert_eq!(p.level(Some(1), 0), L::Full, "the default");
    assert_eq!(p.level(None, 0), L::Full, "decided by the policy");
}

/// ICMP rejects spend the worker's ICMP error budget (a burst of 50, then
/// 1000 a second): past it the packet is still rejected, without an
/// answer, and counted. TCP resets are not limited, as in Linux.
#[test]
fn icmp_rejects_are_rate_limited_and_resets_are_not() {
    use crate::l3::router::{ICMP_ERRORS_BURST, ICMP_ERRORS_PER_DESTINATION_BURST};
    use crate::packet::parse_frame;
    use crate::port::PacketBuf;
    let mut rig = Rig::new("reject\n");
    let udp_from = |src: [u8; 4]| {
        FrameSpec {
            src_ip: std::net::IpAddr::from(src),
            dst_ip: ip(SERVER),
            l4: L4Spec::Udp {
                src_port: 5000,
                dst_port: 53,
            },
            ..FrameSpec::default()
        }
        .to_vec()
        .unwrap()
    };
    let udp = udp_from([192, 0, 2, 1]);
    let tcp = seg(true, f::SYN, 1, 0, 0);
    let (mu, mt) = (parse_frame(&udp).unwrap(), parse_frame(&tcp).unwrap());
    let at = Instant::now();
    let mut out = PacketBuf::new();
    // One sender: its burst, then nothing more within the second.
    let answered = (0..20)
        .filter(|_| rig.p.build_reject(&udp, &mu, &mut out, at))
        .count();
    assert_eq!(
        u32::try_from(answered),
        Ok(ICMP_ERRORS_PER_DESTINATION_BURST)
    );
    assert_eq!(rig.p.counters.icmp_errors_limited, 14);
    assert_eq!(rig.p.counters.rejected, 20);
    assert!(rig.p.build_reject(&tcp, &mt, &mut out, at), "a reset");
    let rst = parse_frame(&out.data).unwrap();
    assert_eq!(rst.tcp.flags & f::RST, f::RST);
    assert_eq!(rig.p.counters.icmp_errors_limited, 14);
    let later = at + std::time::Duration::from_millis(1);
    assert!(!rig.p.build_reject(&udp, &mu, &mut out, later));
    // Many senders, one packet each: the worker's burst in all.
    let limited = rig.p.counters.icmp_errors_limited;
    let answered = (10..110u8)
        .filter(|&i| {
            let u = udp_from([198, 51, 100, i]);
            let m = parse_frame(&u).unwrap();
            let sent = rig.p.build_reject(&u, &m, &mut out, later);
            // An answer is ICMP unreachable to that sender.
            assert!(
                !sent
                    || parse_frame(&out.data)
                        .is_ok_and(|a| a.tuple.proto == 1 && a.tuple.dst[..4] == [198, 51, 100, i])
            );
            sent
        })
        .count() as u64;
    // The first sender's six took six tokens of the first burst, and a
    // millisecond gave one back.
    assert_eq!(answered, ICMP_ERRORS_BURST - 6 + 1);
    assert_eq!(rig.p.counters.icmp_errors_limited - limited, 100 - answered);
}
