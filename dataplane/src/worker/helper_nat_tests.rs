//! The FTP helper under NAT through the pipeline, with golden frames: each
//! announce (PORT, EPRT, 227, 229) rewritten to the translated address
//! and port, compared byte for byte with a frame built from scratch (so
//! every checksum is checked against a full recomputation); sequence and
//! acknowledgement numbers (and SACK blocks) moved in both directions
//! after a rewrite that changed the payload's length, a retransmission of
//! the rewritten segment rewritten the same way; active mode through
//! SNAT and passive mode to a DNATed server, data connections opening and
//! translating (they follow the control connection's translation).

use std::net::IpAddr;
use std::time::Instant;

use proptest::strategy::Strategy;

use crate::conntrack::{ConntrackConfig, DeltaKind, DeltaRing, Shard};
use crate::flow::{proto, status, FlowKey, Tuple};
use crate::meta::{tcp_flags as f, PacketMeta};
use crate::packet::checksum;
use crate::packet::{FrameSpec, Ipv4Packet, L4Spec};

use super::pipeline::{ActiveRules, Decision, Pipeline};
use super::pipeline_tests::compile;

const OUTSIDE: u16 = 0;
const INSIDE: u16 = 1;
/// Active mode through SNAT: the client inside, the server outside.
const CLIENT: &str = "192.0.2.10";
const SERVER: &str = "198.51.100.20";
const PUBLIC: &str = "203.0.113.1";
/// Passive mode to a DNATed server: the client outside, the server inside
/// behind the public address `VIP`.
const REMOTE: &str = "198.51.100.30";
const VIP: &str = "203.0.113.5";
const INTERNAL: &str = "192.0.2.20";

const SNAT_RULES: &str = "policy drop\n\
    accept ct established,related\n\
    accept in inside proto tcp dport 21 helper ftp\n\
    nat src in inside from 192.0.2.0/24 to 203.0.113.1\n";

const DNAT_RULES: &str = "policy drop\n\
    accept ct established,related\n\
    accept in outside proto tcp to 203.0.113.5 dport 21 helper ftp\n\
    nat dst in outside proto tcp daddr 203.0.113.5 dport 21 to 192.0.2.20\n";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A TCP/IPv4 frame built from scratch, with raw TCP `options` (a
/// multiple of four bytes) and `data`; every length and checksum computed
/// whole.
#[allow(clippy::too_many_arguments)]
fn seg(
    src: &str,
    dst: &str,
    sp: u16,
    dp: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    options: &[u8],
    data: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0);
    let spec = FrameSpec {
        src_ip: ip(src),
        dst_ip: ip(dst),
        l4: L4Spec::tcp(sp, dp, flags, seq, ack),
        ..FrameSpec::default()
    };
    let mut body = options.to_vec();
    body.extend_from_slice(data);
    let mut v = vec![0u8; 2048];
    let n = spec.write_with_payload(&body, &mut v).unwrap();
    v.truncate(n);
    if !options.is_empty() {
        // The options become part of the header: data offset and checksum.
        let (l3, l4) = (14, 34);
        v[l4 + 12] = u8::try_from((20 + options.len()) / 4).unwrap() << 4;
        v[l4 + 16..l4 + 18].fill(0);
        let end = l3 + usize::from(u16::from_be_bytes([v[l3 + 2], v[l3 + 3]]));
        let (s, d): ([u8; 4], [u8; 4]) = (
            v[l3 + 12..l3 + 16].try_into().unwrap(),
            v[l3 + 16..l3 + 20].try_into().unwrap(),
        );
        let c = checksum::l4_v4(&s, &d, proto::TCP, &v[l4..end]);
        v[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
    }
    v
}

/// A frame without options.
#[allow(clippy::too_many_arguments)]
fn tcp(
    src: &str,
    dst: &str,
    sp: u16,
    dp: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    data: &[u8],
) -> Vec<u8> {
    seg(src, dst, sp, dp, flags, seq, ack, &[], data)
}

/// Checks the IPv4 header (if IPv4) and TCP checksums of `frame` from
/// scratch.
fn assert_checksums(frame: &[u8]) {
    let m = crate::packet::parse_frame(frame).expect("frame parses");
    if !m.tuple.v6 {
        let ipp = Ipv4Packet::new_checked(&frame[usize::from(m.l3_offset)..]).unwrap();
        assert!(ipp.verify_checksum(), "IPv4 header checksum");
    }
    assert_eq!(
        crate::packet::l4_checksum_valid(frame, &m),
        Some(true),
        "TCP checksum"
    );
}

/// A pipeline bridging outside and inside that returns what it sends.
struct Rig {
    p: Pipeline,
    rules: ActiveRules,
    now: u32,
}

impl Rig {
    fn new(text: &str) -> Rig {
        let shard = Shard::new(
            ConntrackConfig {
                capacity: 64,
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
            rules: compile(text, 1),
            now: 0,
        }
    }

    /// The frame as it leaves, or `None` if it was not forwarded.
    fn pass(&mut self, in_port: u16, frame: Vec<u8>) -> Option<Vec<u8>> {
        let mut frame = crate::port::Frame::from(frame);
        let mut m = PacketMeta::default();
        let ok = Pipeline::parse(&frame, false, &mut m);
        let hint = self.p.shard.warm(&m, 0);
        let d = self
            .p
            .decide(self.now, &self.rules, in_port, 0, ok, &m, hint);
        if d != Decision::Forward || !self.p.apply_nat(&mut frame, &mut m) {
            return None;
        }
        assert_checksums(&frame);
        Some(frame.to_vec())
    }

    /// Sends `frame` in on `in_port` and checks it leaves as `want`.
    fn expect(&mut self, in_port: u16, frame: Vec<u8>, want: &[u8]) {
        let out = self.pass(in_port, frame).expect("forwarded");
        assert_eq!(
            String::from_utf8_lossy(payload(&out)),
            String::from_utf8_lossy(payload(want))
        );
        assert_eq!(out, want, "frame differs from the golden frame");
    }

    fn counters(&mut self) -> super::counters::WorkerCounters {
        self.p.sync_counters();
        self.p.counters
    }
}

fn payload(frame: &[u8]) -> &[u8] {
    let m = crate::packet::parse_frame(frame).unwrap();
    let end = usize::from(m.l3_offset) + usize::from(m.ip_len);
    &frame[end - m.tcp.payload_len as usize..end]
}

/// The SNAT control connection, client port 40000 kept: client seq from
/// 1001, server seq from 5001, handshake done.
fn snat_control(rig: &mut Rig) {
    snat_control_between(rig, CLIENT, SERVER, PUBLIC);
}

/// [`snat_control`] for `client` translated to `public`, to `server`.
fn snat_control_between(rig: &mut Rig, client: &str, server: &str, public: &str) {
    rig.expect(
        INSIDE,
        tcp(client, server, 40000, 21, f::SYN, 1000, 0, b""),
        &tcp(public, server, 40000, 21, f::SYN, 1000, 0, b""),
    );
    rig.expect(
        OUTSIDE,
        tcp(server, public, 21, 40000, f::SYN | f::ACK, 5000, 1001, b""),
        &tcp(server, client, 21, 40000, f::SYN | f::ACK, 5000, 1001, b""),
    );
    rig.expect(
        INSIDE,
        tcp(client, server, 40000, 21, f::ACK, 1001, 5001, b""),
        &tcp(public, server, 40000, 21, f::ACK, 1001, 5001, b""),
    );
}

/// The DNAT control connection from REMOTE:40000 to VIP:21 (the server
/// really at INTERNAL:21), handshake done, the same sequence numbers.
fn dnat_control(rig: &mut Rig, cport: u16) {
    rig.expect(
        OUTSIDE,
        tcp(REMOTE, VIP, cport, 21, f::SYN, 1000, 0, b""),
        &tcp(REMOTE, INTERNAL, cport, 21, f::SYN, 1000, 0, b""),
    );
    rig.expect(
        INSIDE,
        tcp(
            INTERNAL,
            REMOTE,
            21,
            cport,
            f::SYN | f::ACK,
            5000,
            1001,
            b"",
        ),
        &tcp(VIP, REMOTE, 21, cport, f::SYN | f::ACK, 5000, 1001, b""),
    );
    rig.expect(
        OUTSIDE,
        tcp(REMOTE, VIP, cport, 21, f::ACK, 1001, 5001, b""),
        &tcp(REMOTE, INTERNAL, cport, 21, f::ACK, 1001, 5001, b""),
    );
}

/// A SACK option (NOP, NOP, kind 5) with one block.
fn sack(left: u32, right: u32) -> Vec<u8> {
    let mut o = vec![1, 1, 5, 10];
    o.extend_from_slice(&left.to_be_bytes());
    o.extend_from_slice(&right.to_be_bytes());
    o
}

#[test]
fn active_mode_through_snat_rewrites_port_moves_sequence_numbers_and_opens_the_data_connection() {
    let mut rig = Rig::new(SNAT_RULES);
    snat_control(&mut rig);
    // "192,0,2,10" becomes "203,0,113,1": one byte longer.
    let port = b"PORT 192,0,2,10,195,80\r\n";
    let port_out = b"PORT 203,0,113,1,195,80\r\n";
    let sent = tcp(CLIENT, SERVER, 40000, 21, f::ACK | f::PSH, 1001, 5001, port);
    let golden = tcp(
        PUBLIC,
        SERVER,
        40000,
        21,
        f::ACK | f::PSH,
        1001,
        5001,
        port_out,
    );
    rig.expect(INSIDE, sent.clone(), &golden);
    let c = rig.counters();
    assert_eq!(c.helper_rewritten, 1);
    assert_eq!(c.expectations_created, 1);

    // The server acknowledges the 25 bytes it got; the client counts 24.
    let ok = b"200 PORT command successful\r\n";
    rig.expect(
        OUTSIDE,
        tcp(SERVER, PUBLIC, 21, 40000, f::ACK | f::PSH, 5001, 1026, ok),
        &tcp(SERVER, CLIENT, 21, 40000, f::ACK | f::PSH, 5001, 1025, ok),
    );
    // A retransmission of the PORT segment is rewritten the same way and
    // keeps its sequence number (the change comes after its start).
    rig.expect(INSIDE, sent, &golden);

    // The server opens the data connection to the announced (translated)
    // address and port: RELATED, translated to the client's own.
    rig.expect(
        OUTSIDE,
        tcp(SERVER, PUBLIC, 20, 50000, f::SYN, 9000, 0, b""),
        &tcp(SERVER, CLIENT, 20, 50000, f::SYN, 9000, 0, b""),
    );
    rig.expect(
        INSIDE,
        tcp(CLIENT, SERVER, 50000, 20, f::SYN | f::ACK, 7000, 9001, b""),
        &tcp(PUBLIC, SERVER, 50000, 20, f::SYN | f::ACK, 7000, 9001, b""),
    );
    rig.expect(
        OUTSIDE,
        tcp(SERVER, PUBLIC, 20, 50000, f::ACK, 9001, 7001, b"data"),
        &tcp(SERVER, CLIENT, 20, 50000, f::ACK, 9001, 7001, b"data"),
    );
    let c = rig.counters();
    assert_eq!(c.expectations_matched, 1);
    let data = Tuple::new(ip(SERVER), ip(PUBLIC), proto::TCP, 20, 50000);
    let idx = rig
        .p
        .shard
        .lookup(&FlowKey {
            orig: data,
            zone: 0,
        })
        .expect("data flow");
    assert_eq!(
        rig.p.shard.nat_reply(idx),
        Some(&Tuple::new(ip(CLIENT), ip(SERVER), proto::TCP, 50000, 20))
    );

    // Later segments: the client's sequence numbers move forward by one,
    // the server's acknowledgements (and SACK edges) back by one.
    rig.expect(
        INSIDE,
        tcp(
            CLIENT,
            SERVER,
            40000,
            21,
            f::ACK | f::PSH,
            1025,
            5030,
            b"LIST\r\n",
        ),
        &tcp(
            PUBLIC,
            SERVER,
            40000,
            21,
            f::ACK | f::PSH,
            1026,
            5030,
            b"LIST\r\n",
        ),
    );
    rig.expect(
        OUTSIDE,
        seg(
            SERVER,
            PUBLIC,
            21,
            40000,
            f::ACK,
            5030,
            1026,
            &sack(1028, 1032),
            b"",
        ),
        &seg(
            SERVER,
            CLIENT,
            21,
            40000,
            f::ACK,
            5030,
            1025,
            &sack(1027, 1031),
            b"",
        ),
    );
    rig.expect(
        OUTSIDE,
        tcp(
            SERVER,
            PUBLIC,
            21,
            40000,
            f::ACK | f::PSH,
            5030,
            1032,
            b"150 ok\r\n",
        ),
        &tcp(
            SERVER,
            CLIENT,
            21,
            40000,
            f::ACK | f::PSH,
            5030,
            1031,
            b"150 ok\r\n",
        ),
    );
    let c = rig.counters();
    assert!(c.seq_adjusted >= 4, "{}", c.seq_adjusted);
    assert_eq!(c.helper_rewrite_failed, 0);

    // The adjustment is on the flow, replicated with SEQ_ADJUST (the
    // NAT_SEQ_ADJ attribute on the wire): client direction, change at
    // 1001, 0 before, +1 after.
    let ctl = Tuple::new(ip(CLIENT), ip(SERVER), proto::TCP, 40000, 21);
    let idx = rig.p.shard.lookup(&FlowKey { orig: ctl, zone: 0 }).unwrap();
    let st = rig.p.shard.flow_state(0, idx).unwrap();
    assert_ne!(st.status & status::SEQ_ADJUST, 0);
    let adj = st.extras.seq_adj.unwrap();
    assert_eq!(adj.orig, [1001, 0, 1]);
    assert_eq!(adj.reply, [0, 0, 0]);
    let mut replicated = false;
    while let Some(d) = rig.p.shard.ring().pop() {
        if d.kind == DeltaKind::Updated && d.key.orig == ctl {
            replicated |= d.extras.and_then(|x| x.seq_adj) == Some(adj);
        }
    }
    assert!(replicated, "the adjustment goes out as a delta");
}

#[test]
fn eprt_through_snat_is_rewritten() {
    let mut rig = Rig::new(SNAT_RULES);
    snat_control(&mut rig);
    rig.expect(
        INSIDE,
        tcp(
            CLIENT,
            SERVER,
            40000,
            21,
            f::ACK | f::PSH,
            1001,
            5001,
            b"EPRT |1|192.0.2.10|50000|\r\n",
        ),
        &tcp(
            PUBLIC,
            SERVER,
            40000,
            21,
            f::ACK | f::PSH,
            1001,
            5001,
            b"EPRT |1|203.0.113.1|50000|\r\n",
        ),
    );
    rig.expect(
        OUTSIDE,
        tcp(SERVER, PUBLIC, 20, 50000, f::SYN, 9000, 0, b""),
        &tcp(SERVER, CLIENT, 20, 50000, f::SYN, 9000, 0, b""),
    );
    assert_eq!(rig.counters().expectations_matched, 1);
}

#[test]
fn passive_mode_to_a_dnated_server_rewrites_227_and_translates_the_data_connection() {
    let mut rig = Rig::new(DNAT_RULES);
    dnat_control(&mut rig, 40000);
    rig.expect(
        OUTSIDE,
        tcp(
            REMOTE,
            VIP,
            40000,
            21,
            f::ACK | f::PSH,
            1001,
            5001,
            b"PASV\r\n",
        ),
        &tcp(
            REMOTE,
            INTERNAL,
            40000,
            21,
            f::ACK | f::PSH,
            1001,
            5001,
            b"PASV\r\n",
        ),
    );
    // The server announces its internal address: the client must see the
    // public one ("192,0,2,20" to "203,0,113,5", one byte longer).
    let pasv = b"227 Entering Passive Mode (192,0,2,20,195,81).\r\n";
    let pasv_out = b"227 Entering Passive Mode (203,0,113,5,195,81).\r\n";
    rig.expect(
        INSIDE,
        tcp(
            INTERNAL,
            REMOTE,
            21,
            40000,
            f::ACK | f::PSH,
            5001,
            1007,
            pasv,
        ),
        &tcp(
            VIP,
            REMOTE,
            21,
            40000,
            f::ACK | f::PSH,
            5001,
            1007,
            pasv_out,
        ),
    );
    // The client acknowledges one byte more than the server sent.
    let next = 5001 + u32::try_from(pasv.len()).unwrap();
    rig.expect(
        OUTSIDE,
        tcp(
            REMOTE,
            VIP,
            40000,
            21,
            f::ACK | f::PSH,
            1007,
            next + 1,
            b"LIST\r\n",
        ),
        &tcp(
            REMOTE,
            INTERNAL,
            40000,
            21,
            f::ACK | f::PSH,
            1007,
            next,
            b"LIST\r\n",
        ),
    );
    // The server's next segment moves forward by one.
    rig.expect(
        INSIDE,
        tcp(
            INTERNAL,
            REMOTE,
            21,
            40000,
            f::ACK | f::PSH,
            next,
            1013,
            b"150 ok\r\n",
        ),
        &tcp(
            VIP,
            REMOTE,
            21,
            40000,
            f::ACK | f::PSH,
            next + 1,
            1013,
            b"150 ok\r\n",
        ),
    );
    // The data connection to the public address reaches the server.
    rig.expect(
        OUTSIDE,
        tcp(REMOTE, VIP, 45000, 50001, f::SYN, 7000, 0, b""),
        &tcp(REMOTE, INTERNAL, 45000, 50001, f::SYN, 7000, 0, b""),
    );
    rig.expect(
        INSIDE,
        tcp(
            INTERNAL,
            REMOTE,
            50001,
            45000,
            f::SYN | f::ACK,
            9000,
            7001,
            b"",
        ),
        &tcp(VIP, REMOTE, 50001, 45000, f::SYN | f::ACK, 9000, 7001, b""),
    );
    // A data connection nobody announced is still dropped.
    assert!(rig
        .pass(
            OUTSIDE,
            tcp(REMOTE, VIP, 45001, 50009, f::SYN, 7000, 0, b"")
        )
        .is_none());
    let c = rig.counters();
    assert_eq!(c.expectations_matched, 1);
    assert_eq!(c.helper_rewritten, 1);
}

#[test]
fn epsv_port_is_rewritten_when_the_translated_port_is_taken() {
    let mut rig = Rig::new(DNAT_RULES);
    dnat_control(&mut rig, 40000);
    dnat_control(&mut rig, 40001);
    // The first control connection's 229 keeps its port (only a port:
    // nothing to rewrite).
    let first = b"229 Entering Extended Passive Mode (|||9999|)\r\n";
    rig.expect(
        INSIDE,
        tcp(
            INTERNAL,
            REMOTE,
            21,
            40000,
            f::ACK | f::PSH,
            5001,
            1001,
            first,
        ),
        &tcp(VIP, REMOTE, 21, 40000, f::ACK | f::PSH, 5001, 1001, first),
    );
    // The second announces the same port: the client would connect to
    // the same public address and port, so it is moved to the next one
    // (one digit longer).
    rig.expect(
        INSIDE,
        tcp(
            INTERNAL,
            REMOTE,
            21,
            40001,
            f::ACK | f::PSH,
            5001,
            1001,
            first,
        ),
        &tcp(
            VIP,
            REMOTE,
            21,
            40001,
            f::ACK | f::PSH,
            5001,
            1001,
            b"229 Entering Extended Passive Mode (|||10000|)\r\n",
        ),
    );
    // Each data connection reaches the server's announced port 9999.
    rig.expect(
        OUTSIDE,
        tcp(REMOTE, VIP, 45000, 9999, f::SYN, 7000, 0, b""),
        &tcp(REMOTE, INTERNAL, 45000, 9999, f::SYN, 7000, 0, b""),
    );
    rig.expect(
        OUTSIDE,
        tcp(REMOTE, VIP, 45001, 10000, f::SYN, 7000, 0, b""),
        &tcp(REMOTE, INTERNAL, 45001, 9999, f::SYN, 7000, 0, b""),
    );
    let c = rig.counters();
    assert_eq!(c.expectations_matched, 2);
    assert_eq!(c.helper_rewritten, 1);
}

#[test]
fn passive_mode_through_snat_needs_no_rewrite_and_the_data_connection_follows_the_master() {
    let mut rig = Rig::new(SNAT_RULES);
    snat_control(&mut rig);
    let pasv = b"227 Entering Passive Mode (198,51,100,20,195,81).\r\n";
    rig.expect(
        OUTSIDE,
        tcp(SERVER, PUBLIC, 21, 40000, f::ACK | f::PSH, 5001, 1001, pasv),
        &tcp(SERVER, CLIENT, 21, 40000, f::ACK | f::PSH, 5001, 1001, pasv),
    );
    // The data connection leaves from the control connection's public
    // address (Linux's follow-master), port kept.
    rig.expect(
        INSIDE,
        tcp(CLIENT, SERVER, 45000, 50001, f::SYN, 7000, 0, b""),
        &tcp(PUBLIC, SERVER, 45000, 50001, f::SYN, 7000, 0, b""),
    );
    let c = rig.counters();
    assert_eq!(c.helper_rewritten, 0);
    assert_eq!(c.seq_adjusted, 0);
    assert_eq!(c.expectations_matched, 1);
}

#[test]
fn an_announce_split_over_segments_under_nat_is_counted_not_expected() {
    let mut rig = Rig::new(SNAT_RULES);
    snat_control(&mut rig);
    rig.expect(
        INSIDE,
        tcp(
            CLIENT,
            SERVER,
            40000,
            21,
            f::ACK,
            1001,
            5001,
            b"PORT 192,0,",
        ),
        &tcp(
            PUBLIC,
            SERVER,
            40000,
            21,
            f::ACK,
            1001,
            5001,
            b"PORT 192,0,",
        ),
    );
    rig.expect(
        INSIDE,
        tcp(
            CLIENT,
            SERVER,
            40000,
            21,
            f::ACK,
            1012,
            5001,
            b"2,10,195,80\r\n",
        ),
        &tcp(
            PUBLIC,
            SERVER,
            40000,
            21,
            f::ACK,
            1012,
            5001,
            b"2,10,195,80\r\n",
        ),
    );
    let c = rig.counters();
    assert_eq!(c.helper_rewrite_failed, 1);
    assert_eq!(c.expectations_created, 0);
}

fn udp(src: &str, dst: &str, sp: u16, dp: u16, data: &[u8]) -> Vec<u8> {
    let spec = FrameSpec {
        src_ip: ip(src),
        dst_ip: ip(dst),
        l4: L4Spec::Udp {
            src_port: sp,
            dst_port: dp,
        },
        ..FrameSpec::default()
    };
    let mut v = vec![0u8; 2048];
    let n = spec.write_with_payload(data, &mut v).unwrap();
    v.truncate(n);
    v
}

#[test]
fn tftp_through_snat_expects_the_answer_at_the_translated_port_and_translates_it_back() {
    let mut rig = Rig::new(
        "policy drop\n\
         accept ct established,related\n\
         accept in inside proto udp dport 69 helper tftp\n\
         nat src in inside from 192.0.2.0/24 to 203.0.113.1\n",
    );
    let rrq = b"\x00\x01file\x00octet\x00";
    let out = rig
        .pass(INSIDE, udp(CLIENT, SERVER, 3000, 69, rrq))
        .expect("request forwarded");
    assert_eq!(out, udp(PUBLIC, SERVER, 3000, 69, rrq));
    // The server answers from a new port to the public address.
    let data = b"\x00\x03\x00\x01hello";
    let back = rig
        .pass(OUTSIDE, udp(SERVER, PUBLIC, 4711, 3000, data))
        .expect("answer forwarded as related");
    assert_eq!(back, udp(SERVER, CLIENT, 4711, 3000, data));
    let ack = b"\x00\x04\x00\x01";
    assert_eq!(
        rig.pass(INSIDE, udp(CLIENT, SERVER, 3000, 4711, ack)),
        Some(udp(PUBLIC, SERVER, 3000, 4711, ack))
    );
    assert_eq!(rig.counters().expectations_matched, 1);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever a translated control connection carries (announces with
    /// any numbers, junk, lines cut anywhere, retransmissions), every
    /// frame that leaves has valid checksums and lengths (checked whole by
    /// `Rig::pass`), and both directions keep flowing.
    #[test]
    fn any_control_text_under_nat_leaves_consistent_frames(
        lines in proptest::collection::vec(
            proptest::prop_oneof![
                (proptest::prelude::any::<bool>(), 0u16..300, 0u16..300, 0u16..300)
                    .prop_map(|(own, b, p1, p2)| {
                        // Mostly the sender's own address (rewritten),
                        // sometimes another (ignored) or a bad number.
                        let host = if own { "192,0,2,10".to_string() } else { format!("192,0,2,{b}") };
                        format!("PORT {host},{p1},{p2}\r\n").into_bytes()
                    }),
                (0u32..70000).prop_map(|p| format!("EPRT |1|192.0.2.10|{p}|\r\n").into_bytes()),
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            ],
            1..12,
        ),
        cuts in proptest::collection::vec(0usize..120, 12),
        retransmit in proptest::collection::vec(proptest::prelude::any::<bool>(), 12),
    ) {
        let mut rig = Rig::new(SNAT_RULES);
        snat_control(&mut rig);
        let (mut c_seq, s_seq) = (1001u32, 5001u32);
        for (i, l) in lines.iter().enumerate() {
            // Each line in two segments, cut somewhere.
            let cut = cuts[i].min(l.len());
            for part in [&l[..cut], &l[cut..]] {
                if part.is_empty() {
                    continue;
                }
                let fr = tcp(CLIENT, SERVER, 40000, 21, f::ACK | f::PSH, c_seq, s_seq, part);
                let out = rig.pass(INSIDE, fr.clone());
                proptest::prop_assert!(out.is_some() || rig.counters().helper_rewrite_failed > 0);
                if retransmit[i] {
                    let again = rig.pass(INSIDE, fr);
                    proptest::prop_assert_eq!(again, out);
                }
                c_seq = c_seq.wrapping_add(u32::try_from(part.len()).unwrap());
            }
            // The server acknowledges what it got (the moved space): its
            // segment passes conntrack and leaves moved back.
            let idx = rig
                .p
                .shard
                .lookup(&FlowKey {
                    orig: Tuple::new(ip(CLIENT), ip(SERVER), proto::TCP, 40000, 21),
                    zone: 0,
                })
                .unwrap();
            let moved = rig.p.shard.seq_adj(idx).map_or(0, |a| {
                crate::nat::seqadj::seq_offset(&a.orig, c_seq)
            });
            let ack = c_seq.wrapping_add(moved);
            let back = rig
                .pass(OUTSIDE, tcp(SERVER, PUBLIC, 21, 40000, f::ACK, s_seq, ack, b""))
                .expect("the server's acknowledgement passes");
            proptest::prop_assert_eq!(
                back,
                tcp(SERVER, CLIENT, 21, 40000, f::ACK, s_seq, c_seq, b"")
            );
        }
    }
}

/// NAT66 with the FTP helper: the client's EPRT announces its own IPv6
/// address; leaving through source NAT it announces the public one (a
/// longer text), the sequence numbers after it move forward and the
/// server's acknowledgements back, and the server's data connection to
/// the public address reaches the client. Golden frames built from
/// scratch, checksums verified.
#[test]
fn eprt_through_ipv6_source_nat_is_rewritten_and_sequence_numbers_move() {
    const C6: &str = "2001:db8:1::a";
    const S6: &str = "2001:db8:9::20";
    const P6: &str = "2001:db8:ffff::1:1";
    let mut rig = Rig::new(
        "policy drop\n\
         accept ct established,related\n\
         accept in inside proto tcp dport 21 helper ftp\n\
         nat src in inside from 2001:db8:1::/64 to 2001:db8:ffff::1:1\n",
    );
    snat_control_between(&mut rig, C6, S6, P6);
    // "2001:db8:1::a" becomes "2001:db8:ffff::1:1": five bytes longer.
    let eprt = b"EPRT |2|2001:db8:1::a|50000|\r\n";
    let eprt_out = b"EPRT |2|2001:db8:ffff::1:1|50000|\r\n";
    let grow = u32::try_from(eprt_out.len() - eprt.len()).unwrap();
    assert_eq!(grow, 5);
    rig.expect(
        INSIDE,
        tcp(C6, S6, 40000, 21, f::ACK | f::PSH, 1001, 5001, eprt),
        &tcp(P6, S6, 40000, 21, f::ACK | f::PSH, 1001, 5001, eprt_out),
    );
    // The server acknowledges what it got; the client hears its own count.
    let sent = 1001 + u32::try_from(eprt.len()).unwrap();
    let ok = b"200 EPRT command successful\r\n";
    rig.expect(
        OUTSIDE,
        tcp(S6, P6, 21, 40000, f::ACK | f::PSH, 5001, sent + grow, ok),
        &tcp(S6, C6, 21, 40000, f::ACK | f::PSH, 5001, sent, ok),
    );
    let server_next = 5001 + u32::try_from(ok.len()).unwrap();
    // The client's next command moves forward.
    rig.expect(
        INSIDE,
        tcp(
            C6,
            S6,
            40000,
            21,
            f::ACK | f::PSH,
            sent,
            server_next,
            b"LIST\r\n",
        ),
        &tcp(
            P6,
            S6,
            40000,
            21,
            f::ACK | f::PSH,
            sent + grow,
            server_next,
            b"LIST\r\n",
        ),
    );
    // The data connection to the announced public address and port.
    rig.expect(
        OUTSIDE,
        tcp(S6, P6, 20, 50000, f::SYN, 9000, 0, b""),
        &tcp(S6, C6, 20, 50000, f::SYN, 9000, 0, b""),
    );
    let c = rig.counters();
    assert_eq!(c.helper_rewritten, 1);
    assert_eq!(c.expectations_matched, 1);
}
