//! Parsing and validation of whole configuration files.

use super::*;

const EXAMPLE: &str = include_str!("../../../configs/standalone.toml");

fn errors(text: &str) -> Vec<String> {
    match parse(text, "ftfw.toml") {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.diagnostics().iter().map(ToString::to_string).collect(),
    }
}

/// A valid two-port base that tests extend line by line; lines are
/// numbered in comments to keep the expected messages readable.
const BASE: &str = "\
[dataplane]
workers = 2
[[port]]
name = \"outside\"
backend = \"af_packet\"
interface = \"veth-out\"
[[port]]
name = \"inside\"
backend = \"mem\"
zone = 3
[[bridge]]
ports = [\"outside\", \"inside\"]
";

#[test]
fn replicated_example_is_valid() {
    let text = include_str!("../../../configs/replicated.toml");
    let c = parse(text, "/etc/ftfw/replicated.toml").unwrap();
    let s = c.sync.expect("sync section");
    assert_eq!(s.mode, SyncMode::ExternalCache);
    assert_eq!(s.local, "198.51.100.1".parse::<std::net::IpAddr>().unwrap());
    assert_eq!(
        s.destination,
        SyncDestination::Unicast("198.51.100.2".parse().unwrap())
    );
    assert_eq!((s.port, s.mtu, s.ack_window), (3780, 1500, 300));
    assert_eq!(s.interface.as_deref(), Some("eth2"));
    assert_eq!(s.alive_interval, std::time::Duration::from_secs(1));
    assert_eq!(s.flush_delay, std::time::Duration::from_micros(200));
    assert_eq!(s.external_capacity, 262144);
    assert!(s.startup_resync);
    assert!(s.udp_offload);
    assert_eq!(s.transport, SyncTransport::Ftfw);
    assert_eq!(c.failover.mode, FailoverMode::None);
    assert!(c.failover.election.is_none());
    // The same file with the election on.
    let el = text.replace("mode = \"none\"", "mode = \"election\"");
    let c = parse(&el, "/etc/ftfw/replicated.toml").unwrap();
    let e = c.failover.election.expect("election settings");
    assert_eq!((e.node, e.priority, e.port), (1, 200, 3781));
    assert_eq!(e.key.len(), 16);
    assert_eq!(e.peers.len(), 1);
    assert_eq!(
        e.peers[0].address,
        "198.51.100.2".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(e.downlinks, ["inside"]);
    e.election_config().validate().unwrap();
    // `enabled = false` keeps the section but turns replication off.
    let off = text.replace("enabled = true", "enabled = false");
    assert!(parse(&off, "r.toml").unwrap().sync.is_none());
}

#[test]
fn sync_errors_name_their_fields() {
    let e = errors(&format!("{BASE}[sync]\nlocal = \"192.0.2.1\"\n"));
    assert_eq!(
        e,
        ["ftfw.toml:13: sync: needs `peer` (unicast) or `multicast_group` to know where to send"]
    );
    let e = errors(&format!(
        "{BASE}[sync]\nlocal = \"192.0.2.1\"\npeer = \"2001:db8::2\"\nport = 0\nmtu = 100\n"
    ));
    assert_eq!(
        e,
        [
            "ftfw.toml:14: sync.local: 192.0.2.1 and 2001:db8::2 are not the same address family",
            "ftfw.toml:16: sync.port: 0 is below the minimum 1",
            "ftfw.toml:17: sync.mtu: 100 is below the minimum 576",
        ]
    );
    let e = errors(&format!(
        "{BASE}[sync]\nlocal = \"192.0.2.1\"\nmulticast_group = \"192.0.2.9\"\n"
    ));
    assert_eq!(
        e,
        ["ftfw.toml:15: sync.multicast_group: 192.0.2.9 is not a multicast address"]
    );
    let e = errors(&format!(
        "{BASE}[sync]\nlocal = \"nope\"\npeer = \"192.0.2.2\"\nmode = \"fast\"\n"
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("ftfw.toml:16: sync.mode"), "{e:?}");
    let e = errors(&format!(
        "{BASE}[sync]\nlocal = \"nope\"\npeer = \"192.0.2.2\"\n"
    ));
    assert_eq!(
        e,
        ["ftfw.toml:14: sync.local: \"nope\" is not an IPv4 or IPv6 address"]
    );
}

#[test]
fn sync_transport_values_and_errors() {
    let sync = "[sync]\nlocal = \"192.0.2.1\"\npeer = \"192.0.2.2\"\n";
    let t = |v: &str| {
        parse(&format!("{BASE}{sync}transport = \"{v}\"\n"), "ftfw.toml")
            .unwrap()
            .sync
            .unwrap()
            .transport
    };
    assert_eq!(t("ftfw"), SyncTransport::Ftfw);
    assert_eq!(t("udp-best-effort"), SyncTransport::UdpBestEffort);
    assert_eq!(t("tcp"), SyncTransport::Tcp);
    let default = parse(&format!("{BASE}{sync}"), "ftfw.toml").unwrap();
    assert_eq!(default.sync.unwrap().transport, SyncTransport::Ftfw);
    // Multicast works with both UDP transports ...
    let mc = "[sync]\nlocal = \"192.0.2.1\"\nmulticast_group = \"225.0.0.50\"\n";
    for v in ["ftfw", "udp-best-effort"] {
        let c = parse(&format!("{BASE}{mc}transport = \"{v}\"\n"), "ftfw.toml").unwrap();
        assert_eq!(c.sync.unwrap().transport.as_str(), v);
    }
    // ... but not with tcp.
    let e = errors(&format!("{BASE}{mc}transport = \"tcp\"\n"));
    assert_eq!(
        e,
        ["ftfw.toml:16: sync.transport: \"tcp\" is unicast only: use `peer` instead of `multicast_group`, or transport \"ftfw\" or \"udp-best-effort\""]
    );
    // An unknown value names the field, its line and the valid values.
    let e = errors(&format!("{BASE}{sync}transport = \"sctp\"\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("ftfw.toml:16: sync.transport"), "{e:?}");
    for v in ["sctp", "ftfw", "udp-best-effort", "tcp"] {
        assert!(e[0].contains(v), "{e:?}");
    }
    let e = errors(&format!("{BASE}{sync}transport = 1\n"));
    assert!(e[0].starts_with("ftfw.toml:16: sync.transport"), "{e:?}");
}

#[test]
fn defer_settings_parse_and_bad_values_name_their_fields() {
    let sync = "[sync]\nlocal = \"192.0.2.1\"\npeer = \"192.0.2.2\"\n";
    let s = parse(&format!("{BASE}{sync}"), "ftfw.toml")
        .unwrap()
        .sync
        .unwrap();
    assert!(!s.defer);
    assert_eq!(s.defer_timeout, std::time::Duration::from_millis(10));
    assert_eq!(s.ack_delay, None);
    let s = parse(&format!("{BASE}{sync}defer = true\n"), "ftfw.toml")
        .unwrap()
        .sync
        .unwrap();
    assert!(s.defer);
    assert_eq!(
        s.ack_delay,
        Some(std::time::Duration::from_micros(DEFAULT_ACK_DELAY_US))
    );
    let s = parse(
        &format!("{BASE}{sync}defer = true\ndefer_timeout_ms = 1000\nack_delay_us = 50\n"),
        "ftfw.toml",
    )
    .unwrap()
    .sync
    .unwrap();
    assert_eq!(s.defer_timeout, std::time::Duration::from_secs(1));
    assert_eq!(s.ack_delay, Some(std::time::Duration::from_micros(50)));
    let e = errors(&format!(
        "{BASE}{sync}defer = true\ndefer_timeout_ms = 0\nack_delay_us = 2000000\n"
    ));
    assert_eq!(
        e,
        [
            "ftfw.toml:17: sync.defer_timeout_ms: 0 is below the minimum 1",
            "ftfw.toml:18: sync.ack_delay_us: 2000000 is above the maximum 1000000",
        ]
    );
    let e = errors(&format!("{BASE}{sync}defer_timeout_ms = 1001\n"));
    assert_eq!(
        e,
        ["ftfw.toml:16: sync.defer_timeout_ms: 1001 is above the maximum 1000"]
    );
    let e = errors(&format!("{BASE}{sync}defer = \"yes\"\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("ftfw.toml:16: sync.defer"), "{e:?}");
}

#[test]
fn election_errors_name_their_fields() {
    let sync = "[sync]\nlocal = \"192.0.2.1\"\npeer = \"192.0.2.2\"\n";
    let e = errors(&format!(
        "{BASE}{sync}[failover]\nmode = \"election\"\nnode = 1\nkey = \"0011\"\n\
         downlinks = [\"dmz\"]\n[[failover.peer]]\nnode = 1\naddress = \"192.0.2.2\"\n\
         [failover.scripts]\nfly = \"/bin/true\"\n"
    ));
    let fields: Vec<&str> = e
        .iter()
        .map(|d| d.split(": ").nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        fields,
        [
            "failover.key",
            "failover.downlinks[0]",
            "failover.peer[0].node",
            "failover.scripts.fly"
        ],
        "{e:?}"
    );
    let e = errors(&format!("{BASE}{sync}[failover]\nmode = \"election\"\n"));
    assert_eq!(e.len(), 3, "{e:?}");
}

#[test]
fn a_key_that_is_not_hex_is_named_with_its_line() {
    let sync = "[sync]\nlocal = \"192.0.2.1\"\npeer = \"192.0.2.2\"\n";
    for key in ["0g11", "001", "+f00", "00 11"] {
        let e = errors(&format!(
            "{BASE}{sync}[failover]\nmode = \"election\"\nnode = 1\nkey = \"{key}\"\n\
             [[failover.peer]]\nnode = 2\naddress = \"192.0.2.2\"\n"
        ));
        assert_eq!(
            e,
            ["ftfw.toml:19: failover.key: is not hex (two digits per byte)"],
            "{key}: {e:?}"
        );
    }
}

#[test]
fn election_bounds_are_checked_in_parse_with_file_and_line() {
    // 32 peers make a cluster of 33, above the machine's 32 nodes.
    let sync = "[sync]\nlocal = \"192.0.2.1\"\npeer = \"192.0.2.2\"\n";
    let mut text = format!(
        "{BASE}{sync}[failover]\nmode = \"election\"\nnode = 1\n\
         key = \"00112233445566778899aabbccddeeff\"\n"
    );
    for n in 2..=33 {
        text.push_str(&format!(
            "[[failover.peer]]\nnode = {n}\naddress = \"192.0.2.{n}\"\n"
        ));
    }
    let e = errors(&text);
    assert_eq!(
        e,
        ["ftfw.toml:20: failover.peer: election: peers: at most 31 peers"],
        "{e:?}"
    );
}

#[test]
fn sync_levels_default_zones_and_errors() {
    let sync = "[sync]\nlocal = \"192.0.2.1\"\npeer = \"192.0.2.2\"\n";
    let c = parse(&format!("{BASE}{sync}"), "ftfw.toml").unwrap();
    let s = c.sync.unwrap();
    assert_eq!(s.level, ftfw_dataplane::flow::SyncLevel::Full);
    assert!(s.zone_levels.is_empty());
    let c = parse(
        &format!(
            "{BASE}{sync}level = \"established\"\n[[sync.zone]]\nzone = 3\nlevel = \"none\"\n"
        ),
        "ftfw.toml",
    )
    .unwrap();
    let s = c.sync.unwrap();
    assert_eq!(s.level, ftfw_dataplane::flow::SyncLevel::Established);
    assert_eq!(
        s.zone_levels,
        vec![(3, ftfw_dataplane::flow::SyncLevel::None)]
    );
    let e = errors(&format!("{BASE}{sync}level = \"most\"\n"));
    assert_eq!(
        e,
        ["ftfw.toml:16: sync.level: unknown level \"most\" (full, established or none)"],
        "{e:?}"
    );
}

#[test]
fn write_modes_async_defer_sync() {
    let sync = "[sync]\nlocal = \"192.0.2.1\"\npeer = \"192.0.2.2\"\n";
    let mode = |extra: &str| {
        let s = parse(&format!("{BASE}{sync}{extra}"), "ftfw.toml")
            .unwrap()
            .sync
            .unwrap();
        (s.defer, s.sync_writes, s.ack_delay.is_some())
    };
    assert_eq!(mode(""), (false, false, false));
    assert_eq!(mode("defer = true\n"), (true, false, true));
    assert_eq!(mode("write = \"defer\"\n"), (true, false, true));
    assert_eq!(mode("write = \"sync\"\n"), (true, true, true));
    assert_eq!(mode("write = \"async\"\n"), (false, false, false));
    let e = errors(&format!("{BASE}{sync}write = \"async\"\ndefer = true\n"));
    assert_eq!(
        e,
        ["ftfw.toml:16: sync.write: \"async\" contradicts defer = true"],
        "{e:?}"
    );
    let e = errors(&format!("{BASE}{sync}write = \"later\"\n"));
    assert_eq!(
        e,
        ["ftfw.toml:16: sync.write: unknown write mode \"later\" (async, defer or sync)"],
        "{e:?}"
    );
}

#[test]
fn failover_health_defaults_and_bounds() {
    let sync = "[sync]\nlocal = \"192.0.2.1\"\npeer = \"192.0.2.2\"\n";
    let election = format!(
        "{BASE}{sync}[failover]\nmode = \"election\"\nnode = 1\n\
         key = \"00112233445566778899aabbccddeeff\"\n\
         [[failover.peer]]\nnode = 2\naddress = \"192.0.2.2\"\n"
    );
    let c = parse(&election, "ftfw.toml").unwrap();
    assert_eq!(c.failover.election.unwrap().health, None);
    let c = parse(
        &format!("{election}[failover.health]\nroot = \"/tmp/fake-sys\"\n"),
        "ftfw.toml",
    )
    .unwrap();
    let h = c.failover.election.unwrap().health.unwrap();
    assert_eq!(h.root, std::path::PathBuf::from("/tmp/fake-sys"));
    assert_eq!(h.max_temp_c, 95);
    assert_eq!(h.interval, std::time::Duration::from_secs(1));
    let e = errors(&format!("{election}[failover.health]\nmax_temp_c = 10\n"));
    assert_eq!(
        e,
        ["ftfw.toml:24: failover.health.max_temp_c: 10 is below the minimum 30"],
        "{e:?}"
    );
}

#[test]
fn election_timer_bounds_name_the_failover_key_and_its_line() {
    // The range of check_interval_ms keeps every timer within the
    // machine's bounds, so break one after parsing and check the bounds
    // the way parse does.
    let sync = "[sync]\nlocal = \"192.0.2.1\"\npeer = \"192.0.2.2\"\n";
    let text = format!(
        "{BASE}{sync}[failover]\nmode = \"election\"\nnode = 1\n\
         key = \"00112233445566778899aabbccddeeff\"\ncheck_interval_ms = 100\n\
         [[failover.peer]]\nnode = 2\naddress = \"192.0.2.2\"\n"
    );
    let mut settings = parse(&text, "ftfw.toml")
        .unwrap()
        .failover
        .election
        .unwrap();
    settings.check_interval = std::time::Duration::ZERO;
    let lines = LineIndex::new(&text);
    let doc = toml_edit::ImDocument::parse(text.as_str()).unwrap();
    let spans = SpanIndex::new(doc.as_table(), &lines);
    let mut cx = Checker {
        file: "ftfw.toml".into(),
        spans: &spans,
        diags: Vec::new(),
    };
    assert_eq!(cx.election_bounds(&settings, false), None);
    let e: Vec<String> = cx.diags.iter().map(ToString::to_string).collect();
    assert_eq!(
        e,
        ["ftfw.toml:20: failover.check_interval_ms: election: check_interval: must be positive"],
        "{e:?}"
    );
}

#[test]
fn keepalived_mode_needs_sync() {
    let e = errors(&format!("{BASE}[failover]\nmode = \"keepalived\"\n"));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("ftfw.toml:14: failover.mode: \"keepalived\" needs a [sync] section"),
        "{e:?}"
    );
    let ok = format!(
        "{BASE}[sync]\nlocal = \"192.0.2.1\"\npeer = \"192.0.2.2\"\n[failover]\nmode = \"keepalived\"\n"
    );
    assert_eq!(
        parse(&ok, "x.toml").unwrap().failover.mode,
        FailoverMode::Keepalived
    );
}

#[test]
fn example_config_is_valid() {
    let c = parse(EXAMPLE, "/etc/ftfw/standalone.toml").unwrap();
    assert_eq!(c.file, PathBuf::from("/etc/ftfw/standalone.toml"));
    assert_eq!(
        c.daemon.console_socket,
        PathBuf::from("/run/ftfw/ftfwd.sock")
    );
    assert_eq!(c.daemon.log_level, LogLevel::Info);
    assert_eq!(c.dataplane.workers, 1);
    assert_eq!(c.dataplane.cores, Some(vec![1]));
    assert_eq!(c.dataplane.poll_mode, PollMode::Adaptive);
    assert_eq!(c.ports.len(), 2);
    assert_eq!(c.ports[0].name, "outside");
    assert_eq!(
        c.ports[0].backend,
        PortBackend::AfPacket {
            interface: "veth-out".into()
        }
    );
    assert_eq!(c.ports[1].backend.interface(), Some("veth-in"));
    assert_eq!(
        c.bridges,
        vec![["outside".to_string(), "inside".to_string()]]
    );
    assert_eq!(c.bridge_peer("inside"), Some("outside"));
    assert_eq!(c.port_index("inside"), Some(1));
    assert_eq!(c.conntrack.capacity, 262144);
    assert_eq!(c.conntrack.delta_ring, 8192);
    assert_eq!(c.conntrack.timeouts, Timeouts::default());
    assert_eq!(c.rules.policy, Policy::Drop);
    assert_eq!(
        c.rules.source,
        RulesSource::File(PathBuf::from("/etc/ftfw/rules.conf"))
    );
}

#[test]
fn defaults_and_inline_rules() {
    let text = format!(
        "{BASE}[rules]\npolicy = \"reject\"\nrules = [\n  \"accept ct established\",\n\n  \"accept proto icmp\",\n]\n[conntrack.timeouts]\nudp = 45\n"
    );
    let c = parse(&text, "ftfw.toml").unwrap();
    assert_eq!(c.dataplane.workers, 2);
    assert_eq!(c.dataplane.cores, None);
    assert_eq!(c.ports[1].zone, 3);
    assert_eq!(c.ports[1].backend, PortBackend::Mem);
    assert_eq!(c.rules.policy, Policy::Reject);
    assert_eq!(
        c.rules.source,
        RulesSource::Inline(vec![
            (16, "accept ct established".into()),
            (18, "accept proto icmp".into())
        ])
    );
    assert_eq!(c.conntrack.timeouts.udp, 45);
    assert_eq!(c.conntrack.timeouts.tcp_established, 432000);
    assert_eq!(
        c.daemon.console_socket,
        PathBuf::from(DEFAULT_CONSOLE_SOCKET)
    );
}

#[test]
fn relative_paths_resolve_against_the_file() {
    let text = format!(
        "{BASE}[daemon]\nconsole_socket = \"run/ftfwd.sock\"\n[rules]\nfile = \"r.conf\"\n"
    );
    let c = parse(&text, "/srv/lab/ftfw.toml").unwrap();
    assert_eq!(
        c.daemon.console_socket,
        PathBuf::from("/srv/lab/run/ftfwd.sock")
    );
    assert_eq!(
        c.rules.source,
        RulesSource::File(PathBuf::from("/srv/lab/r.conf"))
    );
}

#[test]
fn capacity_below_minimum() {
    let text = format!("{BASE}[conntrack]\ncapacity = 100\n");
    assert_eq!(
        errors(&text),
        ["ftfw.toml:14: conntrack.capacity: 100 is below the minimum 1024"]
    );
}

#[test]
fn capacity_too_small_for_workers() {
    let text = format!("{BASE}[conntrack]\ncapacity = 1500\n");
    assert_eq!(
        errors(&text),
        ["ftfw.toml:14: conntrack.capacity: 1500 gives fewer than 1024 flows to each of 2 workers"]
    );
}

#[test]
fn delta_ring_not_power_of_two() {
    let text = format!("{BASE}[conntrack]\ndelta_ring = 1000\n");
    assert_eq!(
        errors(&text),
        ["ftfw.toml:14: conntrack.delta_ring: 1000 is not a power of two"]
    );
}

#[test]
fn timeout_zero() {
    let text = format!("{BASE}[conntrack.timeouts]\nicmp = 30\ntcp_close = 0\n");
    assert_eq!(
        errors(&text),
        ["ftfw.toml:15: conntrack.timeouts.tcp_close: 0 is below the minimum 1"]
    );
}

#[test]
#[cfg(not(feature = "dpdk"))]
fn dpdk_backend_rejected_without_the_feature() {
    let text = BASE.replace(
        "backend = \"mem\"",
        "backend = \"dpdk\"\ndevice = \"net_ring0\"",
    );
    assert_eq!(
        errors(&text),
        [format!("ftfw.toml:9: port[1].backend: {}", dpdk::NOT_BUILT)]
    );
    assert!(dpdk::NOT_BUILT.contains("--features dpdk"));
}

#[test]
#[cfg(feature = "dpdk")]
fn dpdk_ports_and_section() {
    let text = format!(
        "{}[dpdk]\neal_args = [\"--no-huge\"]\nmbufs = 4095\n",
        BASE.replace(
            "backend = \"mem\"",
            "backend = \"dpdk\"\ndevice = \"net_af_packet0,iface=veth-in\""
        )
    );
    let c = parse(&text, "ftfw.toml").unwrap();
    assert_eq!(c.dpdk.eal_args, ["--no-huge"]);
    let PortBackend::Dpdk(p) = &c.ports[1].backend else {
        panic!("{:?}", c.ports[1].backend)
    };
    assert_eq!(p.device, "net_af_packet0,iface=veth-in");
    assert_eq!(p.name(), "net_af_packet0");
    assert_eq!(
        (p.mbufs, p.rx_descriptors, p.tx_descriptors),
        (4095, 1024, 1024)
    );
    assert!(!p.is_pci());

    let missing = BASE.replace("backend = \"mem\"", "backend = \"dpdk\"");
    assert_eq!(
        errors(&missing),
        ["ftfw.toml:7: port[1]: backend \"dpdk\" needs a `device`: a PCI address such as \"0000:03:00.0\" or a vdev such as \"net_af_packet0,iface=eth1\""]
    );
    let bad = BASE.replace("backend = \"mem\"", "backend = \"dpdk\"\ndevice = \"eth0\"");
    assert!(errors(&bad)[0]
        .starts_with("ftfw.toml:10: port[1].device: \"eth0\" is neither a PCI address"));
    let twice = BASE
        .replace(
            "backend = \"af_packet\"\ninterface = \"veth-out\"",
            "backend = \"dpdk\"\ndevice = \"0000:03:00.0\"",
        )
        .replace(
            "backend = \"mem\"",
            "backend = \"dpdk\"\ndevice = \"0000:03:00.0\"",
        );
    assert_eq!(
        errors(&twice),
        ["ftfw.toml:10: port[1].device: device \"0000:03:00.0\" is already used by port[0]"]
    );
    let small = format!("{BASE}[dpdk]\nrx_descriptors = 8\n");
    assert_eq!(
        errors(&small),
        ["ftfw.toml:14: dpdk.rx_descriptors: 8 is below the minimum 64"]
    );
}

#[test]
fn af_packet_without_interface() {
    let text = BASE.replace("interface = \"veth-out\"\n", "");
    assert_eq!(
        errors(&text),
        ["ftfw.toml:3: port[0]: backend \"af_packet\" needs an `interface`"]
    );
}

#[test]
fn workers_and_cores() {
    let text = BASE.replace("workers = 2", "workers = 65");
    assert_eq!(
        errors(&text),
        ["ftfw.toml:2: dataplane.workers: 65 is above the maximum 64"]
    );
    let text = BASE.replace("workers = 2", "workers = 2\ncores = [1]");
    assert_eq!(
        errors(&text),
        ["ftfw.toml:3: dataplane.cores: has 1 entries but dataplane.workers is 2; give one core per worker"]
    );
    let text = BASE.replace("workers = 2", "workers = 2\ncores = [\n  1,\n  1,\n]");
    assert_eq!(
        errors(&text),
        ["ftfw.toml:5: dataplane.cores[1]: core 1 is given to two workers"]
    );
}

#[test]
fn duplicate_and_invalid_port_names() {
    let text = BASE.replace("name = \"inside\"", "name = \"outside\"");
    let e = errors(&text);
    assert!(
        e.contains(
            &"ftfw.toml:8: port[1].name: \"outside\" is already the name of port[0]".to_string()
        ),
        "{e:?}"
    );
    let text = BASE.replace("name = \"inside\"", "name = \"Inside!\"");
    let e = errors(&text);
    assert!(
        e[0].starts_with("ftfw.toml:8: port[1].name: \"Inside!\" is not a valid port name"),
        "{e:?}"
    );
    assert_eq!(
        e[1],
        "ftfw.toml:12: bridge[0].ports[1]: no [[port]] is named \"inside\""
    );
}

#[test]
fn bridge_errors() {
    let text = BASE.replace("[\"outside\", \"inside\"]", "[\"outside\", \"nowhere\"]");
    assert_eq!(
        errors(&text),
        [
            "ftfw.toml:7: port[1]: port \"inside\" is in no [[bridge]]; in transparent mode every port needs a peer",
            "ftfw.toml:12: bridge[0].ports[1]: no [[port]] is named \"nowhere\"",
        ]
    );
    let text = format!("{BASE}[[bridge]]\nports = [\"inside\", \"outside\"]\n");
    assert_eq!(
        errors(&text),
        [
            "ftfw.toml:14: bridge[1].ports[0]: port \"inside\" is already in bridge[0]",
            "ftfw.toml:14: bridge[1].ports[1]: port \"outside\" is already in bridge[0]",
        ]
    );
    let text = BASE.replace("[\"outside\", \"inside\"]", "[\"outside\"]");
    let e = errors(&text);
    assert_eq!(
        e[2],
        "ftfw.toml:12: bridge[0].ports: has 1 ports; a bridge joins exactly two"
    );
}

#[test]
fn both_rules_file_and_inline() {
    let text = format!("{BASE}[rules]\nfile = \"r.conf\"\nrules = [\"accept\"]\n");
    assert_eq!(
        errors(&text),
        ["ftfw.toml:15: rules.rules: give either rules.file or inline rules.rules, not both"]
    );
}

#[test]
fn unknown_key_rejected_with_line() {
    let text = format!("{BASE}[conntrack]\ncapacity = 4096\ncapasity = 4096\n");
    let e = errors(&text);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("ftfw.toml:15: conntrack.capasity: unknown field `capasity`"),
        "{e:?}"
    );
    let text = BASE.replace("zone = 3", "zone = 3\nspeed = 10");
    let e = errors(&text);
    assert!(
        e[0].starts_with("ftfw.toml:11: port[1].speed: unknown field `speed`"),
        "{e:?}"
    );
    let e = errors(&format!("{BASE}[extra]\n"));
    assert!(
        e[0].starts_with("ftfw.toml:13: extra: unknown field `extra`"),
        "{e:?}"
    );
}

#[test]
fn type_errors_name_the_field() {
    let e = errors(&BASE.replace("zone = 3", "zone = \"three\""));
    assert!(
        e[0].starts_with("ftfw.toml:10: port[1].zone: invalid type: string"),
        "{e:?}"
    );
    let e = errors(&format!("{BASE}[dataplane.x]\n").replace(
        "[dataplane]\nworkers = 2",
        "[dataplane]\nworkers = 2\npoll_mode = \"lazy\"",
    ));
    assert!(
        e[0].starts_with("ftfw.toml:3: dataplane.poll_mode: unknown variant `lazy`"),
        "{e:?}"
    );
    let e = errors(&BASE.replace("zone = 3", "zone = 70000"));
    assert_eq!(
        e,
        ["ftfw.toml:10: port[1].zone: 70000 is above the maximum 65535"]
    );
}

#[test]
fn pass_ethertypes_names_hex_and_errors() {
    use ftfw_dataplane::worker::PassEthertypes;
    let c = parse(BASE, "ftfw.toml").unwrap();
    assert_eq!(c.dataplane.pass_ethertypes, PassEthertypes::DEFAULT);
    let text = BASE.replace(
        "[dataplane]\nworkers = 2",
        "[dataplane]\nworkers = 2\npass_ethertypes = [\"arp\", \"0x8864\"]",
    );
    let c = parse(&text, "ftfw.toml").unwrap();
    assert!(c.dataplane.pass_ethertypes.passes(0x8864));
    assert!(!c.dataplane.pass_ethertypes.passes(0x88cc));
    let e = errors(&BASE.replace(
        "[dataplane]\nworkers = 2",
        "[dataplane]\nworkers = 2\npass_ethertypes = [\"ipx\"]",
    ));
    assert_eq!(
        e,
        ["ftfw.toml:3: dataplane.pass_ethertypes: unknown ethertype \"ipx\" (a name such as \"arp\" or \"lldp\", or hex such as \"0x88f7\")"]
    );
}

#[test]
fn state_file_defaults_beside_the_socket_and_can_be_turned_off() {
    let c = parse(BASE, "ftfw.toml").unwrap();
    assert_eq!(
        c.daemon.state_file.as_deref(),
        Some(std::path::Path::new("/run/ftfw/ftfwd.state"))
    );
    let c = parse(&format!("[daemon]\nstate_file = \"\"\n{BASE}"), "ftfw.toml").unwrap();
    assert_eq!(c.daemon.state_file, None);
}

#[test]
fn syntax_error_has_line_and_field() {
    let e = errors(&format!("{BASE}[conntrack]\ncapacity = = 4\n"));
    assert!(
        e[0].starts_with("ftfw.toml:14: conntrack.capacity: syntax error"),
        "{e:?}"
    );
}

#[test]
fn several_errors_are_all_reported() {
    let text = format!("{BASE}[conntrack]\ncapacity = 1\ndelta_ring = 3\n")
        .replace("workers = 2", "workers = 0");
    let e = errors(&text);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].starts_with("ftfw.toml:2: dataplane.workers"));
    assert!(e[1].starts_with("ftfw.toml:14: conntrack.capacity"));
    assert!(e[2].starts_with("ftfw.toml:15: conntrack.delta_ring"));
}

#[test]
fn io_error_names_the_file() {
    let e = load(Path::new("/nonexistent/ftfw.toml")).unwrap_err();
    assert!(e.to_string().starts_with("/nonexistent/ftfw.toml: "), "{e}");
}

#[test]
fn cluster_example_is_valid_and_completes_sync_with_the_peers() {
    let text = include_str!("../../../configs/cluster.toml");
    let c = parse(text, "/etc/ftfw/cluster.toml").unwrap();
    let k = c.cluster.expect("cluster section");
    assert_eq!((k.node, k.buckets, k.backups, k.port), (1, 4096, 1, 3782));
    assert_eq!(k.mode, ClusterMode::MultiPrimary);
    assert_eq!(k.replicate, Replicate::All);
    assert_eq!(k.nodes.len(), 3);
    assert_eq!(k.dead_after, std::time::Duration::from_millis(200));
    assert_eq!(k.dead_after_max, std::time::Duration::from_millis(2000));
    assert_eq!(k.dead_after_relax, std::time::Duration::from_secs(30));
    assert_eq!(k.peers().map(|n| n.id).collect::<Vec<_>>(), vec![2, 3]);
    let s = c.sync.expect("sync section");
    assert_eq!(
        s.peers,
        vec![
            SyncPeer {
                node: 2,
                address: "198.51.100.2".parse().unwrap()
            },
            SyncPeer {
                node: 3,
                address: "198.51.100.3".parse().unwrap()
            },
        ]
    );
    // A pair keeps its one peer and no cluster.
    let pair = parse(include_str!("../../../configs/replicated.toml"), "r.toml").unwrap();
    assert!(pair.cluster.is_none());
    assert!(pair.sync.unwrap().peers.is_empty());
}

#[path = "tests_cluster.rs"]
mod cluster_tests;

#[test]
fn sync_expectations_is_off_by_default_and_checked() {
    let sync = "[sync]\nlocal = \"192.0.2.1\"\npeer = \"192.0.2.2\"\n";
    let c = parse(&format!("{BASE}{sync}"), "ftfw.toml").unwrap();
    assert!(!c.sync.expect("sync").expectations);
    let c = parse(&format!("{BASE}{sync}expectations = true\n"), "ftfw.toml").unwrap();
    assert!(c.sync.expect("sync").expectations);
    let e = errors(&format!("{BASE}{sync}expectations = \"ftp\"\n"));
    assert!(
        e[0].starts_with("ftfw.toml:16: sync.expectations: invalid type: string"),
        "{e:?}"
    );
}

#[test]
fn sync_udp_offload_is_on_by_default_and_checked() {
    let sync = "[sync]\nlocal = \"192.0.2.1\"\npeer = \"192.0.2.2\"\n";
    let c = parse(&format!("{BASE}{sync}"), "ftfw.toml").unwrap();
    assert!(c.sync.expect("sync").udp_offload);
    let c = parse(&format!("{BASE}{sync}udp_offload = false\n"), "ftfw.toml").unwrap();
    assert!(!c.sync.expect("sync").udp_offload);
    let e = errors(&format!("{BASE}{sync}udp_offload = 1\n"));
    assert!(
        e[0].starts_with("ftfw.toml:16: sync.udp_offload: invalid type: integer"),
        "{e:?}"
    );
}

#[test]
fn the_lazy_barrier_grows_to_max_barrier_ms_which_cannot_be_below_it() {
    let sync = "[sync]\nlocal = \"192.0.2.1\"\npeer = \"192.0.2.2\"\n\n[sync.lazy]\n";
    let lazy = |extra: &str| {
        parse(&format!("{BASE}{sync}{extra}"), "ftfw.toml")
            .unwrap()
            .sync
            .expect("sync")
            .lazy
            .expect("lazy")
    };
    let ms = std::time::Duration::from_millis;
    let l = lazy("");
    assert_eq!((l.barrier, l.max_barrier), (ms(200), ms(1000)));
    let l = lazy("barrier_ms = 2000\n");
    assert_eq!((l.barrier, l.max_barrier), (ms(2000), ms(2000)));
    let l = lazy("max_barrier_ms = 200\n");
    assert_eq!((l.barrier, l.max_barrier), (ms(200), ms(200)), "fixed");
    let e = errors(&format!(
        "{BASE}{sync}barrier_ms = 300\nmax_barrier_ms = 250\n"
    ));
    assert!(
        e.iter().any(|x| x.starts_with("ftfw.toml:")
            && x.contains("sync.lazy.max_barrier_ms: 250 is below sync.lazy.barrier_ms (300)")),
        "{e:?}"
    );
}

#[test]
fn af_xdp_ports_need_an_interface_of_their_own() {
    let text = BASE.replace(
        "backend = \"mem\"",
        "backend = \"af_xdp\"\ninterface = \"veth-in\"",
    );
    let c = parse(&text, "ftfw.toml").unwrap();
    assert_eq!(
        c.ports[1].backend,
        PortBackend::AfXdp {
            interface: "veth-in".into(),
            mode: ftfw_dataplane::port::af_xdp::XdpMode::Auto,
        }
    );
    let generic = text.replace(
        "interface = \"veth-in\"",
        "interface = \"veth-in\"\nxdp_mode = \"generic\"",
    );
    assert!(matches!(
        parse(&generic, "ftfw.toml").unwrap().ports[1].backend,
        PortBackend::AfXdp {
            mode: ftfw_dataplane::port::af_xdp::XdpMode::Generic,
            ..
        }
    ));
    let bad = text.replace(
        "interface = \"veth-in\"",
        "interface = \"veth-in\"\nxdp_mode = \"fast\"",
    );
    assert_eq!(
        errors(&bad),
        ["ftfw.toml:11: port[1].xdp_mode: \"fast\" is not an XDP mode (auto, native or generic)"]
    );
    let elsewhere = BASE.replace(
        "interface = \"veth-out\"",
        "interface = \"veth-out\"\nxdp_mode = \"native\"",
    );
    assert_eq!(
        errors(&elsewhere),
        ["ftfw.toml:7: port[0].xdp_mode: only ports with backend \"af_xdp\" have an XDP mode"]
    );
    assert_eq!(c.ports[1].backend.name(), "af_xdp");
    assert_eq!(c.ports[1].backend.interface(), Some("veth-in"));

    let missing = BASE.replace("backend = \"mem\"", "backend = \"af_xdp\"");
    assert_eq!(
        errors(&missing),
        ["ftfw.toml:7: port[1]: backend \"af_xdp\" needs an `interface`"]
    );
    // One interface is one port, whatever the backends.
    let twice = BASE.replace(
        "backend = \"mem\"",
        "backend = \"af_xdp\"\ninterface = \"veth-out\"",
    );
    assert_eq!(
        errors(&twice),
        ["ftfw.toml:10: port[1].interface: \"veth-out\" is already used by port[0]"]
    );
}
