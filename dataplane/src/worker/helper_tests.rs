//! Helpers through the pipeline, with real frames: an FTP data connection
//! announced by PASV, EPSV or PORT is RELATED and passes
//! `accept ct established,related` under `policy drop`, one nobody
//! announced is dropped; hostile announces, timeouts, a full expectation
//! table; TFTP.

use std::net::IpAddr;
use std::time::Instant;

use crate::conntrack::{ConntrackConfig, DeltaRing, Shard};
use crate::flow::{proto, CtState, Dir, Tuple};
use crate::helper::{Helper, HelperPolicy, SharedExpect};
use crate::meta::{tcp_flags as f, PacketMeta};
use crate::packet::{FrameSpec, L4Spec};

use super::pipeline::{ActiveRules, Decision, Pipeline};
use super::pipeline_tests::compile;

const OUTSIDE: u16 = 0;
const INSIDE: u16 = 1;
const CLIENT: &str = "192.0.2.10";
const SERVER: &str = "198.51.100.20";

const RULES: &str = "policy drop\n\
                     accept ct established,related\n\
                     accept in outside proto tcp dport 21 helper ftp\n\
                     accept in outside proto udp dport 69 helper tftp\n";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

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

    /// Parse, decide and, when forwarded, the post-decision step the
    /// workers run (helpers, then NAT).
    fn send(&mut self, in_port: u16, frame: Vec<u8>) -> Decision {
        let mut frame = crate::port::Frame::from(frame);
        let mut m = PacketMeta::default();
        let ok = Pipeline::parse(&frame, false, &mut m);
        let hint = self.p.shard.warm(&m, 0);
        let d = self
            .p
            .decide(self.now, &self.rules, in_port, 0, ok, &m, hint);
        if d == Decision::Forward {
            assert!(self.p.apply_nat(&mut frame, &mut m));
        }
        d
    }

    fn counters(&mut self) -> super::counters::WorkerCounters {
        self.p.sync_counters();
        self.p.counters
    }
}

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
    let spec = FrameSpec {
        src_ip: ip(src),
        dst_ip: ip(dst),
        l4: L4Spec::tcp(sp, dp, flags, seq, ack),
        ..FrameSpec::default()
    };
    let mut v = vec![0u8; 2048];
    let n = spec.write_with_payload(data, &mut v).unwrap();
    v.truncate(n);
    v
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

/// An FTP control connection from the client (outside) port `cport` to
/// the server's port 21, past its handshake.
struct Ctl {
    cport: u16,
    c_seq: u32,
    s_seq: u32,
}

impl Ctl {
    fn open(rig: &mut Rig, cport: u16) -> Ctl {
        assert_eq!(
            rig.send(
                OUTSIDE,
                tcp(CLIENT, SERVER, cport, 21, f::SYN, 1000, 0, b"")
            ),
            Decision::Forward
        );
        assert_eq!(
            rig.send(
                INSIDE,
                tcp(SERVER, CLIENT, 21, cport, f::SYN | f::ACK, 5000, 1001, b"")
            ),
            Decision::Forward
        );
        assert_eq!(
            rig.send(
                OUTSIDE,
                tcp(CLIENT, SERVER, cport, 21, f::ACK, 1001, 5001, b"")
            ),
            Decision::Forward
        );
        Ctl {
            cport,
            c_seq: 1001,
            s_seq: 5001,
        }
    }

    fn client_says(&mut self, rig: &mut Rig, line: &[u8]) -> Decision {
        let fr = tcp(
            CLIENT,
            SERVER,
            self.cport,
            21,
            f::ACK | f::PSH,
            self.c_seq,
            self.s_seq,
            line,
        );
        self.c_seq += u32::try_from(line.len()).unwrap();
        rig.send(OUTSIDE, fr)
    }

    fn server_says(&mut self, rig: &mut Rig, line: &[u8]) -> Decision {
        let fr = tcp(
            SERVER,
            CLIENT,
            21,
            self.cport,
            f::ACK | f::PSH,
            self.s_seq,
            self.c_seq,
            line,
        );
        self.s_seq += u32::try_from(line.len()).unwrap();
        rig.send(INSIDE, fr)
    }

    fn key(&self) -> Tuple {
        Tuple::new(ip(CLIENT), ip(SERVER), proto::TCP, self.cport, 21)
    }
}

fn data_syn(rig: &mut Rig, sport: u16, dport: u16) -> Decision {
    rig.send(
        OUTSIDE,
        tcp(CLIENT, SERVER, sport, dport, f::SYN, 7000, 0, b""),
    )
}

#[test]
fn pasv_announced_data_connection_is_related_and_an_unannounced_one_dropped() {
    let mut rig = Rig::new(RULES);
    let mut ctl = Ctl::open(&mut rig, 40000);
    assert_eq!(ctl.client_says(&mut rig, b"PASV\r\n"), Decision::Forward);
    // 195 * 256 + 80 = 50000.
    assert_eq!(
        ctl.server_says(
            &mut rig,
            b"227 Entering Passive Mode (198,51,100,20,195,80).\r\n"
        ),
        Decision::Forward
    );
    assert_eq!(rig.p.expect.len(), 1);
    // A data connection to a port nobody announced: policy drop.
    assert_eq!(data_syn(&mut rig, 40001, 50001), Decision::Drop);
    // The announced one: RELATED, accepted, and it records its master.
    assert_eq!(data_syn(&mut rig, 40001, 50000), Decision::Forward);
    let (idx, created) = rig.p.last_flow();
    assert!(created);
    assert_eq!(rig.p.shard.master(idx), Some(ctl.key()));
    assert_eq!(rig.p.shard.ct_state(idx, Dir::Original), CtState::Related);
    // Its answer makes it ESTABLISHED.
    assert_eq!(
        rig.send(
            INSIDE,
            tcp(
                SERVER,
                CLIENT,
                50000,
                40001,
                f::SYN | f::ACK,
                9000,
                7001,
                b""
            )
        ),
        Decision::Forward
    );
    assert_eq!(
        rig.p.shard.ct_state(idx, Dir::Original),
        CtState::Established
    );
    // The expectation was used up: a second connection to the port is not
    // related.
    assert_eq!(data_syn(&mut rig, 40002, 50000), Decision::Drop);
    let c = rig.counters();
    assert_eq!(c.expectations_created, 1);
    assert_eq!(c.expectations_matched, 1);
    assert!(rig.p.expect.is_empty());
    assert_eq!(c.helper_malformed, 0);
}

#[test]
fn without_a_helper_the_data_connection_is_dropped() {
    let mut rig = Rig::new(
        "policy drop\naccept ct established,related\naccept in outside proto tcp dport 21\n",
    );
    let mut ctl = Ctl::open(&mut rig, 40000);
    ctl.server_says(
        &mut rig,
        b"227 Entering Passive Mode (198,51,100,20,195,80).\r\n",
    );
    assert!(rig.p.expect.is_empty());
    assert_eq!(data_syn(&mut rig, 40001, 50000), Decision::Drop);
}

#[test]
fn default_port_helpers_attach_without_a_rule_keyword() {
    let mut rig = Rig::new(
        "policy drop\naccept ct established,related\naccept in outside proto tcp dport 21\n",
    );
    let set = crate::acl::parse_rules(
        "policy drop\naccept ct established,related\naccept in outside proto tcp dport 21\n",
        "t",
        1,
        &super::pipeline_tests::port_index,
    )
    .unwrap();
    rig.rules.helpers = HelperPolicy::new(&set, vec![Helper::Ftp]);
    let mut ctl = Ctl::open(&mut rig, 40000);
    ctl.server_says(
        &mut rig,
        b"229 Entering Extended Passive Mode (|||50000|)\r\n",
    );
    assert_eq!(data_syn(&mut rig, 40001, 50000), Decision::Forward);
}

#[test]
fn epsv_split_over_two_segments_is_followed() {
    let mut rig = Rig::new(RULES);
    let mut ctl = Ctl::open(&mut rig, 40000);
    ctl.server_says(&mut rig, b"229 Entering Extended Pas");
    assert!(rig.p.expect.is_empty());
    ctl.server_says(&mut rig, b"sive Mode (|||50000|)\r\n");
    assert_eq!(rig.p.expect.len(), 1);
    assert_eq!(data_syn(&mut rig, 40001, 50000), Decision::Forward);
}

#[test]
fn active_mode_port_lets_the_server_connect_back() {
    let mut rig = Rig::new(RULES);
    let mut ctl = Ctl::open(&mut rig, 40000);
    // 156 * 256 + 65 = 40001.
    assert_eq!(
        ctl.client_says(&mut rig, b"PORT 192,0,2,10,156,65\r\n"),
        Decision::Forward
    );
    // The server connects from port 20 (any port would do) to the client.
    let syn = tcp(SERVER, CLIENT, 20, 40001, f::SYN, 3000, 0, b"");
    assert_eq!(rig.send(INSIDE, syn.clone()), Decision::Forward);
    // A second one is not expected.
    let other = tcp(SERVER, CLIENT, 21, 40002, f::SYN, 3000, 0, b"");
    assert_eq!(rig.send(INSIDE, other), Decision::Drop);
    // EPRT works the same way.
    ctl.client_says(&mut rig, b"EPRT |1|192.0.2.10|40003|\r\n");
    let syn = tcp(SERVER, CLIENT, 20, 40003, f::SYN, 3000, 0, b"");
    assert_eq!(rig.send(INSIDE, syn), Decision::Forward);
}

#[test]
fn hostile_and_malformed_announces_open_nothing_and_are_counted() {
    let mut rig = Rig::new(RULES);
    let mut ctl = Ctl::open(&mut rig, 40000);
    // The client announces a third host (an FTP bounce): not expected.
    ctl.client_says(&mut rig, b"PORT 203,0,113,5,0,22\r\n");
    // The server announces another server.
    ctl.server_says(
        &mut rig,
        b"227 Entering Passive Mode (203,0,113,5,195,80).\r\n",
    );
    // Garbage.
    ctl.client_says(&mut rig, b"PORT 192,0,2,10,999,1\r\n");
    ctl.server_says(
        &mut rig,
        b"229 Entering Extended Passive Mode (|||70000|)\r\n",
    );
    assert!(rig.p.expect.is_empty());
    let third = tcp(SERVER, "203.0.113.5", 20, 22, f::SYN, 3000, 0, b"");
    assert_eq!(rig.send(INSIDE, third), Decision::Drop);
    let c = rig.counters();
    assert_eq!(c.helper_address_mismatch, 2);
    assert_eq!(c.helper_malformed, 2);
    assert_eq!(c.expectations_created, 0);
}

#[test]
fn an_expectation_times_out() {
    let mut rig = Rig::new(RULES);
    let mut ctl = Ctl::open(&mut rig, 40000);
    ctl.server_says(
        &mut rig,
        b"227 Entering Passive Mode (198,51,100,20,195,80).\r\n",
    );
    assert_eq!(rig.p.expect.len(), 1);
    rig.now = Helper::Ftp.expect_timeout();
    assert_eq!(data_syn(&mut rig, 40001, 50000), Decision::Drop);
    let c = rig.counters();
    assert_eq!(c.expectations_expired, 1);
    assert!(rig.p.expect.is_empty());
}

#[test]
fn a_full_expectation_table_is_counted() {
    let mut rig = Rig::new(RULES);
    rig.p.expect = std::sync::Arc::new(SharedExpect::new(1));
    let mut a = Ctl::open(&mut rig, 40000);
    let mut b = Ctl::open(&mut rig, 40010);
    a.server_says(
        &mut rig,
        b"227 Entering Passive Mode (198,51,100,20,195,80).\r\n",
    );
    b.server_says(
        &mut rig,
        b"227 Entering Passive Mode (198,51,100,20,195,81).\r\n",
    );
    let c = rig.counters();
    assert_eq!(c.expectations_table_full, 1);
    assert_eq!(rig.p.expect.len(), 1);
    assert_eq!(data_syn(&mut rig, 40001, 50001), Decision::Drop);
    assert_eq!(data_syn(&mut rig, 40001, 50000), Decision::Forward);
}

#[test]
fn tftp_request_expects_the_servers_answer_from_any_port() {
    let mut rig = Rig::new(RULES);
    let rrq = b"\x00\x01boot.img\x00octet\x00";
    assert_eq!(
        rig.send(OUTSIDE, udp(CLIENT, SERVER, 40000, 69, rrq)),
        Decision::Forward
    );
    // The server answers from a new port.
    let data = b"\x00\x03\x00\x01hello";
    assert_eq!(
        rig.send(INSIDE, udp(SERVER, CLIENT, 50123, 40000, data)),
        Decision::Forward
    );
    let (idx, _) = rig.p.last_flow();
    assert!(rig.p.shard.master(idx).is_some());
    // Another host's datagram to the client's port is not expected.
    assert_eq!(
        rig.send(INSIDE, udp("198.51.100.21", CLIENT, 50123, 40000, data)),
        Decision::Drop
    );
    // A garbage request is counted and expects nothing.
    rig.send(OUTSIDE, udp(CLIENT, SERVER, 40001, 69, b"\x09"));
    assert_eq!(rig.counters().helper_malformed, 1);
    assert!(rig.p.expect.is_empty());
}

#[test]
fn a_control_connection_imported_from_a_peer_keeps_its_helper() {
    // A's control connection, as replication or a state file carries it
    // (status bits and extras: helper "ftp").
    let mut a = Rig::new(RULES);
    let ctl = Ctl::open(&mut a, 40000);
    let (states, _) = a.p.shard.export_from(0, 0, 64);
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].extras.helper.as_deref(), Some("ftp"));
    // B imports it (a commit at takeover); a PASV answered after the
    // takeover opens the data connection on B.
    let mut b = Rig::new(RULES);
    b.p.shard.import(0, &states[0]).unwrap();
    let mut ctl = Ctl {
        cport: ctl.cport,
        c_seq: ctl.c_seq,
        s_seq: ctl.s_seq,
    };
    assert_eq!(
        ctl.server_says(
            &mut b,
            b"227 Entering Passive Mode (198,51,100,20,195,80).\r\n"
        ),
        Decision::Forward
    );
    assert_eq!(data_syn(&mut b, 40001, 50000), Decision::Forward);
    let (idx, _) = b.p.last_flow();
    assert_eq!(b.p.shard.master(idx), Some(ctl.key()));
}

#[test]
fn a_masters_expectations_end_with_it_and_only_its() {
    let mut rig = Rig::new(RULES);
    rig.p.shard.set_expect(rig.p.expect.clone());
    let mut a = Ctl::open(&mut rig, 40010);
    let mut b = Ctl::open(&mut rig, 40011);
    a.server_says(
        &mut rig,
        b"227 Entering Passive Mode (198,51,100,20,195,90).\r\n",
    );
    b.server_says(
        &mut rig,
        b"227 Entering Passive Mode (198,51,100,20,195,91).\r\n",
    );
    assert_eq!(rig.p.expect.len(), 2);
    // A's control connection is reset: it closes and expires (CLOSE 10 s).
    let rst = tcp(CLIENT, SERVER, a.cport, 21, f::RST, a.c_seq, 0, b"");
    assert_eq!(rig.send(OUTSIDE, rst), Decision::Forward);
    rig.now += 11;
    rig.p.shard.expire(rig.now, 1000);
    let master = crate::flow::FlowKey {
        orig: a.key(),
        zone: 0,
    };
    assert!(rig.p.shard.lookup(&master).is_none(), "A's master is gone");
    let left: Vec<u16> = rig
        .p
        .expect
        .with(|t| t.iter().map(|e| e.tuple.dst_port).collect());
    assert_eq!(left, [50011], "only B's expectation is left");
    assert_eq!(rig.p.expect.with(|t| t.stats().master_ended), 1);
    // A data connection to A's announced port is no longer related.
    assert_eq!(data_syn(&mut rig, 41000, 50010), Decision::Drop);
    assert_eq!(data_syn(&mut rig, 41001, 50011), Decision::Forward);
}
