//! The Prometheus endpoint's content against the console's answers: every
//! `ftfwctl stats --json` counter is scraped with its value, the page is
//! valid for `promtool check metrics`, and the traffic scenarios below move
//! every worker counter except an explicit, justified list.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use ftfw_control::console::proto::{FlowFilter, NotifyState, Request};
use ftfw_control::console::ConsoleHandler;
use ftfw_control::metrics::{self, port_metric, worker_metric, Snapshot};
use ftfw_dataplane::meta::tcp_flags as f;
use ftfw_testkit::mem::{handshake, recv, send, start_mem, tcp, MemNode, MEM_BRIDGE};

const RULES: &str = "policy drop\naccept ct established,related\ndrop ct invalid\n\
    log in outside proto tcp dport 8080\n\
    accept in outside proto tcp dport 80 ct new\nreject in outside proto tcp dport 23\n";

fn rig(tag: &str, failover: &str) -> MemNode {
    let dir = std::env::temp_dir().join(format!("ftfw-metrics-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("rules.conf"), RULES).unwrap();
    let text = format!(
        "[daemon]\nconsole_socket = \"ftfwd.sock\"\nstate_file = \"\"\n\n[dataplane]\nworkers = 2\n\n\
         {MEM_BRIDGE}[conntrack]\ncapacity = 65536\n\n[rules]\nfile = \"rules.conf\"\n\n{failover}"
    );
    start_mem(tag, dir, &text)
}

/// Keepalived decides the role; replication to a peer that never
/// answers (the sync metrics are exported all the same).
fn keepalived() -> String {
    format!(
        "[sync]\nlocal = \"127.0.0.1\"\npeer = \"127.0.0.2\"\nport = {}\n\n[failover]\nmode = \"keepalived\"\n",
        ftfw_testkit::mem::free_port()
    )
}

fn snapshot(n: &mut MemNode) -> Snapshot {
    Snapshot::collect(|r| Ok(n.app.handle(r))).unwrap()
}

/// `series -> value` of every sample line.
fn samples(page: &str) -> BTreeMap<String, f64> {
    page.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, v) = l.rsplit_once(' ').unwrap();
            (series.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// Some traffic: a handshake (accepted, fast path), a rejected and a
/// dropped SYN, an INVALID segment, a logged one, junk frames.
fn drive(n: &mut MemNode) {
    let (c, s) = ("192.0.2.1", "198.51.100.2");
    handshake(n, c, s, 40000, 80);
    send(&mut n.client, &tcp(c, s, 40001, 23, f::SYN, 1, 0));
    assert!(
        recv(&mut n.client, Duration::from_secs(10)).is_some(),
        "RST back"
    );
    send(&mut n.client, &tcp(c, s, 40002, 25, f::SYN, 1, 0));
    send(&mut n.client, &tcp(c, s, 40003, 80, f::ACK, 1, 1));
    send(&mut n.client, &tcp(c, s, 40004, 8080, f::SYN, 1, 0));
}

#[test]
fn every_stats_counter_is_scraped_with_its_value() {
    let mut n = rig("values", "");
    drive(&mut n);
    let snap = snapshot(&mut n);
    let page = metrics::encode(&snap);
    let got = samples(&page);
    // What `ftfwctl stats --json` prints is this payload.
    let json = serde_json::to_value(&snap.stats).unwrap();
    let workers = json["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    let mut checked = 0;
    for (i, w) in workers.iter().enumerate() {
        for (field, v) in w.as_object().unwrap() {
            let m = worker_metric(field);
            let series = format!("{}{{worker=\"{i}\"}}", m.name);
            let scraped = got
                .get(&series)
                .unwrap_or_else(|| panic!("{series} not scraped"));
            let want = v.as_u64().unwrap() as f64 * m.scale;
            assert!(
                (scraped - want).abs() <= want.abs() * 1e-12,
                "{series}: {scraped} != {want}"
            );
            checked += 1;
        }
    }
    for p in json["ports"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        for (field, v) in p.as_object().unwrap().iter().filter(|(k, _)| *k != "name") {
            let series = format!("{}{{port=\"{name}\"}}", port_metric(field).name);
            let scraped = got
                .get(&series)
                .unwrap_or_else(|| panic!("{series} not scraped"));
            assert_eq!(*scraped, v.as_u64().unwrap() as f64, "{series}");
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked}");
    // Counters are typed as counters, with help.
    assert!(
        page.contains("# TYPE ftfw_worker_rx_frames_total counter"),
        "{page}"
    );
    assert!(page.contains("# HELP ftfw_worker_rx_frames_total Frames received from all ports."));
    assert!(page.contains("# TYPE ftfw_conntrack_flows gauge"));
    assert!(
        got["ftfw_worker_rejected_total{worker=\"0\"}"]
            + got["ftfw_worker_rejected_total{worker=\"1\"}"]
            >= 1.0
    );
}

/// The scrape over HTTP, from the endpoint's thread.
fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200 OK"), "{head}");
    body.to_string()
}

#[test]
#[ignore = "needs root: promtool from Debian's prometheus package (.ci/run installs it)"]
fn promtool_accepts_the_scrape() {
    let mut n = rig("promtool", &keepalived());
    // Role changes: the step histograms and the takeover gauges.
    n.app.handle(Request::Notify {
        state: NotifyState::Master,
    });
    n.app.handle(Request::Notify {
        state: NotifyState::Backup,
    });
    n.app.handle(Request::Notify {
        state: NotifyState::Master,
    });
    drive(&mut n);
    let snap = snapshot(&mut n);
    let server = metrics::server::MetricsServer::spawn(
        "127.0.0.1:0".parse().unwrap(),
        Box::new(move || Ok(metrics::encode(&snap))),
    )
    .unwrap();
    let page = scrape(server.local_addr());
    assert!(
        page.contains("# TYPE ftfw_role_change_step_duration_seconds histogram"),
        "{page}"
    );
    assert!(
        page.contains(
            "ftfw_role_change_step_duration_seconds_count{role=\"active\",step=\"commit\"} 2"
        ),
        "{page}"
    );
    assert!(
        page.contains("ftfw_role_changes_total{role=\"backup\"} 1"),
        "{page}"
    );
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Worker counters the scenarios here cannot move, and why.
const UNREACHED: &[(&str, &str)] = &[
    // Routed mode (tests/routed.rs drives these): this rig is a bridge.
    ("routed", "routed mode"),
    ("arp_nd_answers", "routed mode"),
    ("arp_nd_solicits", "routed mode"),
    ("neighbor_miss", "routed mode"),
    ("learn_ring_full", "routed mode, a full learn ring"),
    ("no_route", "routed mode"),
    ("ttl_exceeded", "routed mode"),
    ("echo_replies", "routed mode"),
    ("local_dropped", "routed mode"),
    ("l3_consumed", "routed mode"),
    ("l3_ignored", "routed mode"),
    (
        "not_owner",
        "cluster bucket ownership (tests/cluster_replication.rs)",
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
    ("flows_expired", "a flow timeout running out (seconds)"),
    (
        "timeouts_clamped",
        "an imported flow with a timeout above the longest",
    ),
    ("related", "an ICMP error for a tracked flow"),
    ("fragments", "a later IP fragment"),
    ("rh0_dropped", "an IPv6 type-0 routing header"),
];

#[test]
fn traffic_moves_every_worker_counter_but_the_listed_ones() {
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
            let mut total = snap.stats.workers[0];
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
    let mut total = snap.stats.workers[0];
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
