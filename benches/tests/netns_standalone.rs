//! Root test: client <-> ftfwd (af_packet or af_xdp, transparent bridge) <-> server,
//! each in a network namespace the test creates and deletes.
//!
//! Checks: an allowed TCP connection works end to end and is listed
//! ESTABLISHED by `ftfwctl flows list --json`; a denied one does not connect;
//! a rejected one is refused at once; an ACK for no connection is counted
//! invalid and dropped; a broken rules file is refused by `ftfwctl rules
//! reload` and traffic keeps flowing. With two workers, the server's ICMP
//! errors (steered by the kernel by their addresses alone) reach the
//! worker of the flow they are about.
//!
//! With the `dpdk` feature the same scenario runs again with ftfwd's ports
//! on DPDK `net_af_packet` vdevs over the same veths (ftfwd must be built
//! with `--features dpdk`: `cargo build -p ftfw-control --features dpdk`).
#![allow(clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ftfw_testkit::netns::{self, run, sibling_bin, NetnsLab};
use ftfw_testkit::wait_until;

fn bin(name: &str) -> PathBuf {
    sibling_bin(Path::new(env!("CARGO_BIN_EXE_ftfw-lab")), name).unwrap()
}

fn ctl(sock: &Path, args: &[&str]) -> Output {
    netns::ctl(&bin("ftfwctl"), sock, args).unwrap()
}

fn ctl_json(sock: &Path, args: &[&str]) -> serde_json::Value {
    netns::ctl_json(&bin("ftfwctl"), sock, args).unwrap()
}

fn fetch(
    lab: &NetnsLab,
    port: u16,
    bytes: u64,
    stall_ms: u64,
    extra: &[&str],
) -> serde_json::Value {
    let addr = format!("192.0.2.2:{port}");
    lab.probe_fetch(
        &lab.ns("c"),
        &bin("ftfw-lab"),
        &addr,
        bytes,
        stall_ms,
        extra,
    )
    .unwrap()
}

fn counter(stats: &serde_json::Value, name: &str) -> u64 {
    netns::counter(stats, name).unwrap()
}

/// How ftfwd reaches the veths.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    AfPacket,
    AfXdp,
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    DpdkAfPacket,
}

impl Backend {
    /// The `[[port]]` lines after `name` for interface `ifname`, number `n`.
    fn port(self, ifname: &str, n: usize) -> String {
        match self {
            Backend::AfPacket => format!("backend = \"af_packet\"\ninterface = \"{ifname}\"\n"),
            Backend::AfXdp => format!("backend = \"af_xdp\"\ninterface = \"{ifname}\"\n"),
            Backend::DpdkAfPacket => {
                format!("backend = \"dpdk\"\ndevice = \"net_af_packet{n},iface={ifname}\"\n")
            }
        }
    }
}

#[test]
#[ignore = "needs root: network namespaces, veth and AF_PACKET"]
fn transparent_firewall_between_namespaces() {
    firewall_scenario(1, Backend::AfPacket);
}

/// The same with two workers: AF_PACKET fanout must keep both directions of
/// every connection on one worker, or the handshakes fail as invalid.
#[test]
#[ignore = "needs root: network namespaces, veth and AF_PACKET"]
fn transparent_firewall_with_two_workers() {
    firewall_scenario(2, Backend::AfPacket);
}

/// The scenario with ftfwd on AF_XDP sockets (XDP in the veth driver).
#[test]
#[ignore = "needs root: network namespaces, veth, BPF and AF_XDP"]
fn transparent_firewall_on_af_xdp() {
    firewall_scenario(1, Backend::AfXdp);
}

/// Two workers on AF_XDP: one socket per worker and veth queue; a flow's
/// frames that arrive on the other worker's queue are handed over.
#[test]
#[ignore = "needs root: network namespaces, veth, BPF and AF_XDP"]
fn transparent_firewall_on_af_xdp_with_two_workers() {
    firewall_scenario(2, Backend::AfXdp);
}

/// The scenario with ftfwd on DPDK `net_af_packet` vdevs (hugepages reserved).
#[cfg(feature = "dpdk")]
#[test]
#[ignore = "needs root: network namespaces, veth, DPDK EAL and hugepages"]
fn transparent_firewall_on_dpdk_af_packet_vdevs() {
    firewall_scenario(1, Backend::DpdkAfPacket);
}

/// Two workers on DPDK: one queue pair (AF_PACKET socket in the vdev's
/// fanout group) per worker.
#[cfg(feature = "dpdk")]
#[test]
#[ignore = "needs root: network namespaces, veth, DPDK EAL and hugepages"]
fn transparent_firewall_on_dpdk_with_two_workers() {
    firewall_scenario(2, Backend::DpdkAfPacket);
}

fn firewall_scenario(workers: usize, backend: Backend) {
    let tag = match backend {
        Backend::AfPacket => "a",
        Backend::AfXdp => "x",
        Backend::DpdkAfPacket => "d",
    };
    // AF_XDP serves receive queue w with worker w: no more queues.
    let queues = (backend == Backend::AfXdp).then_some(workers);
    let mut lab =
        NetnsLab::client_firewall_server_queues("ftfw", &format!("{tag}{workers}"), queues)
            .unwrap();
    lab.ip(&lab.ns("c"), &["addr", "add", "192.0.2.1/24", "dev", "c0"])
        .unwrap();
    lab.ip(&lab.ns("s"), &["addr", "add", "192.0.2.2/24", "dev", "s0"])
        .unwrap();
    let sock = lab.dir().join("ftfwd.sock");
    let rules = lab.dir().join("rules.conf");
    std::fs::write(
        &rules,
        "policy drop\n\
         accept ct established,related\n\
         accept in outside proto tcp dport 8080 ct new\n\
         reject in outside proto tcp dport 8081 ct new\n\
         accept proto icmp\n",
    )
    .unwrap();
    let config = lab.dir().join("ftfwd.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nconsole_socket = \"{}\"\n\n[dataplane]\nworkers = {workers}\npoll_mode = \"adaptive\"\n\n\
             [[port]]\nname = \"outside\"\n{}\n\
             [[port]]\nname = \"inside\"\n{}\n\
             [[bridge]]\nports = [\"outside\", \"inside\"]\n\n\
             [conntrack]\ncapacity = 4096\n\n[rules]\nfile = \"{}\"\n",
            sock.display(),
            backend.port("c1", 0),
            backend.port("s1", 1),
            rules.display()
        ),
    )
    .unwrap();

    if backend == Backend::DpdkAfPacket {
        // The ftfwd under test must have DPDK, or this would test nothing.
        let out =
            run(Command::new(bin("ftfwd")).args(["--check", "--config", config.to_str().unwrap()]))
                .unwrap();
        assert!(
            out.status.success(),
            "ftfwd rejects a DPDK config; build it with `cargo build -p ftfw-control --features dpdk`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let fw = lab.ns("f");
    let srv = lab.ns("s");
    let fwd_pid = lab
        .start_ftfwd(&fw, (&bin("ftfwd"), &bin("ftfwctl")), &config, &sock, None)
        .unwrap();
    for port in ["8080", "8081", "9090"] {
        let listen = format!("192.0.2.2:{port}");
        lab.spawn(&srv, bin("ftfw-lab"), &["serve", "--listen", &listen], None)
            .unwrap();
    }
    // Let the servers bind (bounded wait: the first allowed fetch retries).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = fetch(&lab, 8080, 1000, 2000, &[]);
        if r["ok"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "allowed fetch never worked: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // An allowed transfer works end to end.
    let r = fetch(&lab, 8080, 2_000_000, 5000, &[]);
    assert_eq!(r["ok"], true, "{r}");

    // While a transfer is paused mid-way, the console lists it ESTABLISHED.
    let c = lab.ns("c");
    let paused = lab
        .spawn_probe_fetch(
            &c,
            &bin("ftfw-lab"),
            "192.0.2.2:8080",
            4_000_000,
            &["--pause-ms", "3000"],
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let flow = loop {
        let list = netns::established_flows(&bin("ftfwctl"), &sock, 8080);
        if let Some(f) = list.into_iter().next() {
            break f;
        }
        assert!(Instant::now() < deadline, "no ESTABLISHED flow listed");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(flow["state"], "ESTABLISHED", "{flow}");
    assert_eq!(flow["original"]["dst"], "192.0.2.2", "{flow}");
    let out = paused.wait_with_output().unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["ok"], true, "paused fetch: {r}");

    // A port no rule allows: dropped, the connect times out. The drop
    // counter proves the SYNs reached the firewall (not just a slow host).
    let before = counter(&ctl_json(&sock, &["stats"]), "dropped_by_rule");
    let r = fetch(&lab, 9090, 1000, 1500, &[]);
    assert_eq!(r["ok"], false, "denied fetch worked: {r}");
    wait_until("the denied SYNs counted", Duration::from_secs(5), || {
        counter(&ctl_json(&sock, &["stats"]), "dropped_by_rule") > before
    });
    // A rejected port: refused by our RST (not a timeout).
    let r = fetch(&lab, 8081, 1000, 5000, &[]);
    assert_eq!(r["ok"], false, "rejected fetch worked: {r}");
    assert!(
        r["error"].as_str().unwrap_or("").contains("refused"),
        "expected connection refused: {r}"
    );

    let before = ctl_json(&sock, &["stats"]);

    // An ACK for no connection: counted invalid and dropped.
    let out = lab
        .exec(
            &c,
            bin("ftfw-lab"),
            &[
                "inject",
                "--interface",
                "c0",
                "--tcp-ack",
                "--from",
                "192.0.2.1:40999",
                "--to",
                "192.0.2.2:8080",
                "--count",
                "3",
            ],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "inject: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let after = ctl_json(&sock, &["stats"]);
        let inv = counter(&after, "invalid") - counter(&before, "invalid");
        let dropped = counter(&after, "dropped_by_rule") - counter(&before, "dropped_by_rule");
        if inv >= 3 && dropped >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "invalid ACKs not counted: before {before} after {after}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // A broken rules file is refused whole; the running rules stay.
    std::fs::write(
        &rules,
        "policy drop\naccept ct established,related\naccept proto tpc dport 8080\n",
    )
    .unwrap();
    let out = ctl(&sock, &["rules", "reload"]);
    assert!(!out.status.success(), "broken rules accepted");
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        msg.contains("rules.conf:3"),
        "error does not name file and line: {msg}"
    );
    let r = fetch(&lab, 8080, 500_000, 5000, &[]);
    assert_eq!(r["ok"], true, "traffic stopped after a refused reload: {r}");
    let shown = ctl_json(&sock, &["rules", "show"]);
    assert!(shown.to_string().contains("dport 8080"), "{shown}");

    // SIGHUP reloads a fixed file.
    std::fs::write(&rules, "policy drop\naccept ct established,related\naccept in outside proto tcp dport 8080,9090 ct new\n").unwrap();
    netns::signal(fwd_pid, "HUP").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let shown = ctl_json(&sock, &["rules", "show"]);
        if shown.to_string().contains("8080,9090") {
            break;
        }
        assert!(Instant::now() < deadline, "SIGHUP did not reload: {shown}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = fetch(&lab, 9090, 100_000, 5000, &[]);
    assert_eq!(r["ok"], true, "port opened by the reload: {r}");

    // SIGTERM stops ftfwd cleanly: exit status 0 and the socket removed.
    netns::signal(fwd_pid, "TERM").unwrap();
    let status = lab
        .wait_exit(fwd_pid, Duration::from_secs(10))
        .expect("ftfwd stops on SIGTERM");
    assert!(status.success(), "ftfwd exit status {status}");
    assert!(!sock.exists(), "console socket left behind");
}

/// With two AF_PACKET workers the kernel steers an ICMP error by its
/// outer addresses alone, so the server's "port unreachable" for a UDP
/// flow often reaches the other worker than the flow's; that worker hands
/// it over (`handed_off`) and the client's socket sees the refusal for
/// every flow, as it would through a Linux bridge.
#[test]
#[ignore = "needs root: network namespaces and AF_PACKET"]
fn icmp_errors_reach_their_flows_worker_with_two_workers() {
    use ftfw_dataplane::flow::{proto, Tuple};
    use ftfw_dataplane::port::steer::worker_of;
    let mut lab = NetnsLab::client_firewall_server("ftfw", "icmp2").unwrap();
    lab.ip(&lab.ns("c"), &["addr", "add", "192.0.2.1/24", "dev", "c0"])
        .unwrap();
    lab.ip(&lab.ns("s"), &["addr", "add", "192.0.2.2/24", "dev", "s0"])
        .unwrap();
    let srv = lab.ns("s");
    // Every datagram gets its answer (no ICMP rate limit in the server).
    let out = lab
        .exec(&srv, "sysctl", &["-w", "net.ipv4.icmp_ratelimit=0"])
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let sock = lab.dir().join("ftfwd.sock");
    let rules = lab.dir().join("rules.conf");
    std::fs::write(
        &rules,
        "policy drop\naccept ct established,related\naccept in outside proto udp dport 9999 ct new\n",
    )
    .unwrap();
    let config = lab.dir().join("ftfwd.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nconsole_socket = \"{}\"\n\n[dataplane]\nworkers = 2\npoll_mode = \"adaptive\"\n\n\
             [[port]]\nname = \"outside\"\nbackend = \"af_packet\"\ninterface = \"c1\"\n\n\
             [[port]]\nname = \"inside\"\nbackend = \"af_packet\"\ninterface = \"s1\"\n\n\
             [[bridge]]\nports = [\"outside\", \"inside\"]\n\n\
             [conntrack]\ncapacity = 4096\n\n[rules]\nfile = \"{}\"\n",
            sock.display(),
            rules.display()
        ),
    )
    .unwrap();
    let fw = lab.ns("f");
    lab.start_ftfwd(&fw, (&bin("ftfwd"), &bin("ftfwctl")), &config, &sock, None)
        .unwrap();
    // Source ports whose flow's worker is not the one the error's
    // addresses steer to.
    let (c, s) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
    let by_addr = worker_of(&Tuple::new(c, s, proto::ICMP, 0, 3 << 8 | 3), 2);
    let ports: Vec<u16> = (40000..40032).collect();
    let apart = ports
        .iter()
        .filter(|&&p| worker_of(&Tuple::new(c, s, proto::UDP, p, 9999), 2) != by_addr)
        .count();
    assert!(
        apart > 0,
        "no flow of these ports lands apart from its errors"
    );
    let script = format!(
        "import json, socket\n\
         refused = timed_out = 0\n\
         for p in range({}, {}):\n\
         \x20   s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         \x20   s.bind(('192.0.2.1', p))\n\
         \x20   s.connect(('192.0.2.2', 9999))\n\
         \x20   s.settimeout(2)\n\
         \x20   s.send(b'ping')\n\
         \x20   try:\n\
         \x20       s.recv(100)\n\
         \x20   except ConnectionRefusedError:\n\
         \x20       refused += 1\n\
         \x20   except socket.timeout:\n\
         \x20       timed_out += 1\n\
         \x20   s.close()\n\
         print(json.dumps({{'refused': refused, 'timed_out': timed_out}}))\n",
        ports[0],
        ports[ports.len() - 1] + 1
    );
    let out = lab.exec(&lab.ns("c"), "python3", &["-c", &script]).unwrap();
    assert!(out.status.success(), "{out:?}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        r["refused"],
        ports.len(),
        "{r} ({apart} flows apart from their errors)"
    );
    let stats = ctl_json(&sock, &["stats"]);
    assert!(
        counter(&stats, "handed_off") >= apart as u64,
        "{apart} errors to hand over: {stats}"
    );
}
