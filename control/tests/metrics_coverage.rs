//! "A counter that nothing ever increments fails a test": two scenarios,
//! a bridged pair under keepalived (accept, reject, drop, INVALID, log,
//! junk frames, a console delete, standby) and a routed node (ARP, ND
//! solicitation, routing, TTL, pings, no route, foreign frames, an
//! expiry, a flow added with too long a timeout), must
//! move every worker counter `ftfwctl stats` and the metrics export,
//! except the short list below of conditions these scenarios cannot
//! reach (each covered elsewhere or an overflow).

use std::net::IpAddr;
use std::time::Duration;

use ftfw_control::config;
use ftfw_control::console::proto::WorkerStats;
use ftfw_control::console::proto::{FlowFilter, NotifyState, Payload, Request};
use ftfw_control::console::ConsoleHandler;
use ftfw_dataplane::l3::derived_mac;
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_dataplane::packet::arp::{OP_REPLY, OP_REQUEST};
use ftfw_dataplane::packet::{FrameSpec, L4Spec};
use ftfw_dataplane::port::{PacketBuf, Port};
use ftfw_testkit::mem::{arp_frame, handshake, ok, recv, send, start_on_mem, tcp};
use ftfw_testkit::wait_until;

#[path = "metrics/rig.rs"]
mod rig;

use rig::{drive, keepalived, rig, snapshot};

const CLIENT_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 2];
const CLIENT: [u8; 4] = [192, 0, 2, 1];
const SERVER: [u8; 4] = [198, 51, 100, 2];
const FW_OUT: [u8; 4] = [192, 0, 2, 253];
const FW_IN: [u8; 4] = [198, 51, 100, 253];

fn frame(macs: ([u8; 6], [u8; 6]), src: [u8; 4], dst: [u8; 4], ttl: u8, l4: L4Spec) -> Vec<u8> {
    FrameSpec {
        src_mac: macs.0,
        dst_mac: macs.1,
        src_ip: IpAddr::from(src),
        dst_ip: IpAddr::from(dst),
        ttl,
        l4,
        payload_len: 8,
        ..FrameSpec::default()
    }
    .to_vec()
    .unwrap()
}

/// An IPv4 fragment of the datagram in `frame` (Ethernet + a 20-byte IPv4
/// header): identification `id`, offset in 8-byte units, more-fragments
/// flag, `len` bytes of its IP payload from that offset (zeros past its
/// end).
fn ipv4_fragment(frame: &[u8], id: u16, offset: usize, more: bool, len: usize) -> Vec<u8> {
    let body = &frame[34..];
    let mut part: Vec<u8> = body.iter().skip(offset * 8).take(len).copied().collect();
    part.resize(len, 0);
    let mut f = frame[..34].to_vec();
    f[16..18].copy_from_slice(&u16::try_from(20 + len).unwrap().to_be_bytes());
    f[18..20].copy_from_slice(&id.to_be_bytes());
    let flags = u16::try_from(offset).unwrap() | if more { 0x2000 } else { 0 };
    f[20..22].copy_from_slice(&flags.to_be_bytes());
    f[24..26].fill(0);
    let sum = f[14..34]
        .chunks(2)
        .fold(0u32, |s, w| s + u32::from(u16::from_be_bytes([w[0], w[1]])));
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !u16::try_from((sum & 0xffff) + (sum >> 16)).unwrap();
    f[24..26].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&part);
    f
}

/// Waits (bounded) until worker counter `name` moved on `n`.
fn ftfwd_counted(n: &mut ftfw_testkit::mem::MemNode, name: &str) {
    ftfw_testkit::wait_until(name, Duration::from_secs(10), || {
        let snap = snapshot(n);
        snap.stats
            .total
            .fields()
            .into_iter()
            .any(|(k, v)| k == name && v > 0)
    });
}

fn worker_total(app: &mut ftfw_control::appliance::Appliance) -> WorkerStats {
    let Payload::Stats(s) = ok(app.handle(Request::Stats)) else {
        panic!("not stats")
    };
    s.total
}

/// A routed node with one worker: what its counters reached.
fn routed_scenario() -> WorkerStats {
    let dir = std::env::temp_dir().join(format!("ftfw-metrics-routed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = "[daemon]\nconsole_socket = \"ftfwd.sock\"\nstate_file = \"\"\n\n\
        [dataplane]\nworkers = 1\nmode = \"routed\"\n\n\
        [[port]]\nname = \"outside\"\nbackend = \"mem\"\naddresses = [\"192.0.2.253/24\"]\n\n\
        [[port]]\nname = \"inside\"\nbackend = \"mem\"\naddresses = [\"198.51.100.253/24\"]\n\n\
        [conntrack]\ncapacity = 65536\n\n[conntrack.timeouts]\ntcp_syn_sent = 1\n\n\
        [rules]\npolicy = \"accept\"\nrules = [\n\
        \"nat src proto udp from 192.0.2.1 dport 9 to 203.0.113.1\",\n\
        \"nat src proto udp from 192.0.2.1 to 203.0.113.1 ports 7000-7000\",\n]\n";
    std::fs::write(dir.join("ftfwd.toml"), text).unwrap();
    let cfg = config::load(&dir.join("ftfwd.toml")).unwrap();
    let (mut app, hosts) = start_on_mem(cfg, "routed", 1024).unwrap();
    let mut it = hosts.into_iter();
    let (mut client, mut server) = (it.next().unwrap(), it.next().unwrap());
    let (out_mac, in_mac) = (derived_mac("outside"), derived_mac("inside"));
    let wait = Duration::from_secs(10);
    // ARP for our address: answered (and the client learned).
    send(
        &mut client,
        &arp_frame(OP_REQUEST, CLIENT_MAC, CLIENT, [0xff; 6], [0; 6], FW_OUT),
    );
    assert!(recv(&mut client, wait).is_some(), "ARP reply");
    // A SYN to an unknown server: a neighbor miss and a solicitation ...
    let syn = frame(
        (CLIENT_MAC, out_mac),
        CLIENT,
        SERVER,
        64,
        L4Spec::tcp(40000, 80, f::SYN, 1, 0),
    );
    send(&mut client, &syn);
    assert!(
        recv(&mut server, wait).is_some(),
        "ARP request for the server"
    );
    // ... its answer taken in, then the SYN is routed.
    send(
        &mut server,
        &arp_frame(OP_REPLY, SERVER_MAC, SERVER, in_mac, in_mac, FW_IN),
    );
    ftfw_testkit::wait_until("server learned", wait, || {
        app.drain(1024);
        send(&mut client, &syn);
        recv(&mut server, Duration::from_millis(50)).is_some()
    });
    // The SYNs held while the server was unknown are routed too.
    while recv(&mut server, Duration::from_millis(200)).is_some() {}
    // Source NAT: a UDP flow translated to the one port the rule has;
    // a second one finds no free port.
    let udp = |sport: u16, dport: u16| {
        frame(
            (CLIENT_MAC, out_mac),
            CLIENT,
            SERVER,
            64,
            L4Spec::Udp {
                src_port: sport,
                dst_port: dport,
            },
        )
    };
    send(&mut client, &udp(6000, 53));
    let got = recv(&mut server, wait).expect("translated datagram");
    assert_eq!(&got[26..30], &[203, 0, 113, 1], "source translated");
    assert_eq!(
        &got[34..36],
        &7000u16.to_be_bytes(),
        "source port translated"
    );
    send(&mut client, &udp(6001, 53));
    // TTL 1: time exceeded back to the client.
    send(
        &mut client,
        &frame(
            (CLIENT_MAC, out_mac),
            CLIENT,
            SERVER,
            1,
            L4Spec::tcp(40001, 80, f::SYN, 1, 0),
        ),
    );
    assert!(recv(&mut client, wait).is_some(), "time exceeded");
    // A ping of the firewall, answered; a SYN to it, dropped.
    let ping = L4Spec::Icmp {
        msg_type: 8,
        code: 0,
        ident: 9,
        seq_no: 1,
    };
    send(
        &mut client,
        &frame((CLIENT_MAC, out_mac), CLIENT, FW_OUT, 64, ping),
    );
    assert!(recv(&mut client, wait).is_some(), "echo reply");
    send(
        &mut client,
        &frame(
            (CLIENT_MAC, out_mac),
            CLIENT,
            FW_OUT,
            64,
            L4Spec::tcp(40002, 22, f::SYN, 1, 0),
        ),
    );
    // No route to 203.0.113.7; a frame for another MAC.
    send(
        &mut client,
        &frame(
            (CLIENT_MAC, out_mac),
            CLIENT,
            [203, 0, 113, 7],
            64,
            L4Spec::tcp(40003, 80, f::SYN, 1, 0),
        ),
    );
    send(
        &mut client,
        &frame(
            (CLIENT_MAC, [0x52, 0x54, 0, 0, 0, 9]),
            CLIENT,
            SERVER,
            64,
            L4Spec::tcp(40004, 80, f::SYN, 1, 0),
        ),
    );
    // An operator's flow with a timeout above the longest: cut to it.
    let mut long = ftfw_testkit::flows::flow(
        "tcp",
        ftfw_testkit::flows::tuple("192.0.2.1", "198.51.100.2", Some(40005), Some(80)),
        Some("ESTABLISHED"),
    );
    long.timeout = u32::MAX;
    ok(app.handle(Request::FlowsAdd { flow: long }));
    // The routed SYN is never answered: its flow expires (tcp_syn_sent 1 s).
    let mut total = WorkerStats::default();
    ftfw_testkit::wait_until("the routed counters and an expiry", wait, || {
        total = worker_total(&mut app);
        total.local_dropped > 0
            && total.no_route > 0
            && total.l3_ignored > 0
            && total.flows_expired > 0
            && total.nat_no_port > 0
    });
    app.stop();
    let _ = std::fs::remove_dir_all(&dir);
    total
}

/// Worker counters the scenarios here cannot move, and why.
const UNREACHED: &[(&str, &str)] = &[
    (
        "neighbor_hold_full",
        "more packets for unresolved next hops than hold slots (routed mode)",
    ),
    (
        "neighbor_hold_expired",
        "a next hop that never answers for 3 s (routed mode)",
    ),
    (
        "icmp_errors_limited",
        "more than 50 ICMP errors at once (worker/pipeline_tests.rs, tests/routed.rs)",
    ),
    (
        "neighbor_unreachable",
        "a next hop that never answers for 3 s (routed mode; tests/routed.rs)",
    ),
    (
        "learn_ring_full",
        "a full neighbor learn ring (routed mode)",
    ),
    (
        "not_owner",
        "cluster bucket ownership (tests/cluster_replication.rs)",
    ),
    (
        "bucket_filter_loads",
        "a cluster member on AF_PACKET ports (dataplane/tests/af_packet.rs, benches/tests/netns_cluster.rs)",
    ),
    (
        "bucket_filter_failures",
        "a kernel that refuses a bucket filter",
    ),
    (
        "handoff_full",
        "a full hand-off queue (worker/handoff_tests.rs)",
    ),
    ("deferred", "[sync.defer] with a live peer (tests/defer.rs)"),
    ("defer_released", "[sync.defer] with a live peer"),
    ("defer_timeouts", "[sync.defer] with a silent peer"),
    ("defer_overflow", "[sync.defer] with a full defer queue"),
    ("sync_skipped", "sync levels need [sync]"),
    (
        "ring_full",
        "a full delta ring (tests/replication.rs overflows one)",
    ),
    ("log_ring_full", "a full log ring (4096 records unread)"),
    (
        "table_full",
        "a full flow table (capacity at least 1024 per shard)",
    ),
    ("early_drops", "a full flow table"),
    ("tx_dropped", "a full port ring"),
    (
        "reject_failed",
        "a reject answer that cannot be built or sent",
    ),
    ("related", "an ICMP error for a tracked flow"),
    (
        "fragment_table_full",
        "1,024 datagrams in fragments at once (dataplane worker::frags tests)",
    ),
    ("rh0_dropped", "an IPv6 type-0 routing header"),
    (
        "nat_fragments_dropped",
        "a fragmented ICMP error about a translated flow (dataplane nat::tests)",
    ),
    (
        "nat_failed",
        "a translated IPv6 flow from a peer (IPv6 is not translated) or headers that cannot be rewritten",
    ),
    (
        "expectations_created",
        "an FTP or TFTP flow with a helper (dataplane worker::helper_tests, control tests/helpers.rs)",
    ),
    (
        "expectations_matched",
        "an announced data connection (dataplane worker::helper_tests, control tests/helpers.rs)",
    ),
    (
        "expectations_expired",
        "five minutes without the announced connection (dataplane worker::helper_tests)",
    ),
    (
        "expectations_table_full",
        "1,024 waiting expectations (dataplane worker::helper_tests)",
    ),
    (
        "helper_malformed",
        "a malformed PORT/EPRT/227/229 line or TFTP request (dataplane worker::helper_tests)",
    ),
    (
        "helper_address_mismatch",
        "an FTP announce of a third host (dataplane worker::helper_tests)",
    ),
    (
        "helper_state_full",
        "1,024 FTP control connections on one worker (a defensive bound)",
    ),
    (
        "helper_rewritten",
        "an FTP announce on a translated control connection (dataplane worker::helper_nat_tests, control tests/helpers.rs)",
    ),
    (
        "helper_rewrite_failed",
        "an FTP announce split over segments on a translated control connection (dataplane worker::helper_nat_tests)",
    ),
    (
        "seq_adjusted",
        "segments after a rewrite that changed a payload's length (dataplane worker::helper_nat_tests, control tests/helpers.rs)",
    ),
];

#[test]
fn traffic_moves_every_worker_counter_but_the_listed_ones() {
    let routed_total = routed_scenario();
    let mut n = rig("moves", &keepalived());
    n.app.handle(Request::Notify {
        state: NotifyState::Master,
    });
    drive(&mut n);
    let (c, s) = ("192.0.2.1", "198.51.100.2");
    // Junk: too short for IPv4, an ARP (passed), a PPPoE discovery
    // (dropped), a bad TCP checksum.
    let mut short = tcp(c, s, 1, 2, f::SYN, 0, 0);
    short.truncate(20);
    send(&mut n.client, &short);
    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
    arp.extend_from_slice(&[
        0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 198, 51, 100, 2,
    ]);
    send(&mut n.client, &arp);
    assert!(
        recv(&mut n.server, Duration::from_secs(10)).is_some(),
        "ARP passed"
    );
    let mut pppoe = arp.clone();
    pppoe[12..14].copy_from_slice(&[0x88, 0x63]);
    send(&mut n.client, &pppoe);
    let mut bad = tcp(c, s, 40010, 80, f::SYN, 7, 0);
    let last = bad.len() - 3;
    bad[last] ^= 0xff; // urgent pointer or options: the checksum no longer matches
    send(&mut n.client, &bad);
    // A second flow, removed by the console (destroyed); data on the
    // first (the fast path); then the node is a backup and drops frames.
    handshake(&mut n, c, s, 40005, 80);
    n.app.handle(Request::FlowsDelete {
        filter: FlowFilter {
            sport: Some(40005),
            ..FlowFilter::default()
        },
    });
    for seq in 0..3 {
        ftfw_testkit::mem::through(
            &mut n,
            true,
            &tcp(c, s, 40000, 80, f::ACK | f::PSH, 101 + seq, 501),
        );
    }
    // Fragments: a later one with no first, an overlapping one, one past
    // 65,535 bytes.
    let udp = FrameSpec {
        src_ip: c.parse().unwrap(),
        dst_ip: s.parse().unwrap(),
        l4: L4Spec::Udp {
            src_port: 5000,
            dst_port: 53,
        },
        payload_len: 3000,
        ..FrameSpec::default()
    }
    .to_vec()
    .unwrap();
    send(&mut n.client, &ipv4_fragment(&udp, 1, 185, true, 1480));
    send(&mut n.client, &ipv4_fragment(&udp, 2, 0, true, 1480));
    send(&mut n.client, &ipv4_fragment(&udp, 2, 180, true, 64));
    send(&mut n.client, &ipv4_fragment(&udp, 3, 0, true, 1480));
    send(&mut n.client, &ipv4_fragment(&udp, 3, 8189, false, 64));
    // Counted before the node turns backup (and drops everything).
    ftfwd_counted(&mut n, "fragments_oversized");
    // A SYN and its RST in one burst: the worker takes both in one loop
    // iteration (nearly always at the first try) and merges the flow's
    // two changes into one delta.
    let mut sport = 40100;
    wait_until("a flow's changes merged", Duration::from_secs(10), || {
        let mut pair = [PacketBuf::new(), PacketBuf::new()];
        pair[0].set(&tcp(c, s, sport, 80, f::SYN, 1, 0));
        pair[1].set(&tcp(c, s, sport, 80, f::RST | f::ACK, 2, 0));
        sport += 1;
        n.client.tx_burst(&mut pair);
        ftfw_testkit::mem::stat(&mut n.app, "deltas_merged") > 0
    });
    n.app.handle(Request::Notify {
        state: NotifyState::Backup,
    });
    send(&mut n.client, &tcp(c, s, 40020, 80, f::SYN, 1, 0));
    // Every counter but the listed ones moves; wait for the last frames
    // to be counted (a worker publishes on request).
    let mut missing = Vec::new();
    let moved =
        ftfw_testkit::wait::try_wait_until("counters moved", Duration::from_secs(10), || {
            let snap = snapshot(&mut n);
            let mut total = routed_total;
            total.add(&snap.stats.workers[0]);
            total.add(&snap.stats.workers[1]);
            missing = total
                .fields()
                .into_iter()
                .filter(|(k, v)| *v == 0 && !UNREACHED.iter().any(|(u, _)| u == k))
                .map(|(k, _)| k)
                .collect();
            missing.is_empty()
        });
    assert!(moved.is_ok(), "worker counters nothing moved: {missing:?}");
    // And the list is honest: nothing listed moved here.
    let snap = snapshot(&mut n);
    let mut total = routed_total;
    total.add(&snap.stats.workers[0]);
    total.add(&snap.stats.workers[1]);
    for (k, v) in total.fields() {
        if let Some((_, why)) = UNREACHED.iter().find(|(u, _)| *u == k) {
            assert_eq!(
                v, 0,
                "{k} is listed as unreached ({why}) but moved: drop it from the list"
            );
        }
    }
}
