//! Root test: ftfw's rules mean what nftables makes of them.
//!
//! One rule file is read by ftfwd (af_packet, transparent bridge between a
//! client and a server namespace) and, translated line by line, by nftables
//! (a routed namespace with a `ct state` forward chain: this kernel has no
//! bridge conntrack). The same traffic runs through each, TCP transfers to
//! a few ports, UDP and ping, and every case must end the same way, and as
//! the rules say.
//!
//! A second test kills ftfwd (`kill -9`) in the middle of a download and
//! starts it again with `tcp_loose`: the server's retransmission, the first
//! packet the new process sees, must pick the flow up as the client's
//! connection (the direction the rules let open it), so the download ends.
//!
//! Needs `nft` (Debian package `nftables`) and `python3` (UDP endpoints).
#![allow(clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use ftfw_testkit::netns::{self, sh, sibling_bin, signal, NetnsLab};
use ftfw_testkit::wait_until;

/// The rules under test: rules that only later packets of a flow match
/// come before `ct established`, as in issue 15.
const RULES: &str = "\
policy drop
drop in inside proto tcp sport 8444
drop proto tcp dport 8445 ct established
accept ct established,related
accept in outside proto tcp dport 8080,8444,8445 ct new
accept in outside proto udp dport 5353 ct new
accept in outside proto icmp ct new
";

/// What runs, and whether the rules let it through.
const CASES: &[(&str, bool)] = &[
    ("tcp 8080", true),
    ("tcp 8444", false),
    ("tcp 8445", false),
    ("tcp 9090", false),
    ("udp 5353", true),
    ("udp 5354", false),
    // 4,000-byte datagrams: fragmented both ways at 1280 bytes; the later
    // fragments follow their first fragment's verdict.
    ("udpbig 5353", true),
    ("udpbig 5354", false),
    ("ping", true),
];

fn bin(name: &str) -> PathBuf {
    sibling_bin(Path::new(env!("CARGO_BIN_EXE_ftfw-lab")), name).unwrap()
}

/// The ftfw rule file as an nftables ruleset (the subset [`RULES`] uses):
/// `in outside`/`in inside` are the firewall's interfaces toward the client
/// and the server.
fn to_nft(rules: &str) -> String {
    let mut policy = "drop";
    let mut body = String::new();
    for line in rules.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w[0] == "policy" {
            policy = w[1];
            continue;
        }
        let mut out = Vec::new();
        let mut i = 1;
        while i < w.len() {
            let (k, v) = (w[i], w[i + 1]);
            let set = |v: &str| {
                if v.contains(',') {
                    format!("{{ {} }}", v.replace(',', ", "))
                } else {
                    v.to_string()
                }
            };
            out.push(match k {
                "in" => format!("iifname \"{}\"", if v == "outside" { "c1" } else { "s1" }),
                "proto" => format!("meta l4proto {v}"),
                "sport" => format!("th sport {}", set(v)),
                "dport" => format!("th dport {}", set(v)),
                "ct" => format!("ct state {}", set(v)),
                other => panic!("no nft translation for {other}"),
            });
            i += 2;
        }
        out.push(w[0].to_string());
        body.push_str(&format!("    {}\n", out.join(" ")));
    }
    format!(
        "table inet ftfwtest {{\n  chain forward {{\n    type filter hook forward priority 0; policy {policy};\n{body}  }}\n}}\n"
    )
}

/// Client, firewall and server namespaces joined by two veth pairs
/// ([`NetnsLab::client_firewall_server`]), the client at 192.0.2.1, and
/// the server address the cases use; removed on drop even when the test
/// fails.
struct Lab {
    net: NetnsLab,
    server: &'static str,
}

impl Lab {
    fn ns(&self, role: &str) -> String {
        self.net.ns(role)
    }

    fn new(variant: &str, server: &'static str) -> Lab {
        let net = NetnsLab::client_firewall_server("ftfw", variant).unwrap();
        net.ip(&net.ns("c"), &["addr", "add", "192.0.2.1/24", "dev", "c0"])
            .unwrap();
        // Every link has IPv6's minimum MTU: datagrams travel in fragments
        // of at most 1280 bytes both ways.
        for (role, dev) in [("c", "c0"), ("f", "c1"), ("f", "s1"), ("s", "s0")] {
            net.ip(&net.ns(role), &["link", "set", "dev", dev, "mtu", "1280"])
                .unwrap();
        }
        Lab { net, server }
    }

    fn spawn(&mut self, ns: &str, program: &Path, args: &[&str]) {
        self.net.spawn(ns, program, args, None).unwrap();
    }

    fn exec(&self, ns: &str, program: &Path, args: &[&str]) -> Output {
        self.net.exec(ns, program, args).unwrap()
    }

    /// Starts the TCP and UDP servers and waits until TCP 8080 answers.
    fn start_servers(&mut self) {
        let srv = self.ns("s");
        for port in ["8080", "8444", "8445", "9090"] {
            let listen = format!("{}:{port}", self.server);
            self.spawn(&srv, &bin("ftfw-lab"), &["serve", "--listen", &listen]);
        }
        let echo = format!(
            "import socket, select\n\
             ss = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]\n\
             for s, p in zip(ss, (5353, 5354)): s.bind(('{}', p))\n\
             while True:\n\
             \x20   for s in select.select(ss, [], [])[0]:\n\
             \x20       d, a = s.recvfrom(65536); s.sendto(d, a)\n",
            self.server
        );
        self.spawn(&srv, Path::new("/usr/bin/python3"), &["-c", &echo]);
        wait_until("TCP 8080 to work", Duration::from_secs(10), || {
            self.run_case("tcp 8080")
        });
    }

    /// Runs one case from the client; whether it got through.
    fn run_case(&self, case: &str) -> bool {
        let c = self.ns("c");
        let (kind, port) = case.split_once(' ').unwrap_or((case, ""));
        match kind {
            "tcp" => {
                let addr = format!("{}:{port}", self.server);
                let r = self
                    .net
                    .probe_fetch(&c, &bin("ftfw-lab"), &addr, 300_000, 1500, &[])
                    .unwrap();
                eprintln!("{case} via {}: {r}", self.server);
                r["ok"] == true
            }
            "udp" | "udpbig" => {
                let size = if kind == "udp" { 4 } else { 4000 };
                let script = format!(
                    "import socket, sys\n\
                     s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
                     s.settimeout(0.5)\n\
                     m = b'p' * {size}\n\
                     for _ in range(3):\n\
                     \x20   s.sendto(m, ('{}', {port}))\n\
                     \x20   try:\n\
                     \x20       sys.exit(0 if s.recv(65536) == m else 1)\n\
                     \x20   except socket.timeout:\n\
                     \x20       pass\n\
                     sys.exit(1)\n",
                    self.server
                );
                self.exec(&c, Path::new("/usr/bin/python3"), &["-c", &script])
                    .status
                    .success()
            }
            "ping" => self
                .exec(
                    &c,
                    Path::new("ping"),
                    &["-c", "2", "-W", "1", "-i", "0.2", self.server],
                )
                .status
                .success(),
            other => panic!("unknown case {other}"),
        }
    }
}

/// A lab with client and server in one subnet and the config of an ftfwd
/// bridging them with `rules` (and `conntrack` lines); returns the config.
fn ftfw_lab(variant: &str, rules: &str, conntrack: &str) -> (Lab, PathBuf) {
    let lab = Lab::new(variant, "192.0.2.2");
    lab.net
        .ip(&lab.ns("s"), &["addr", "add", "192.0.2.2/24", "dev", "s0"])
        .unwrap();
    let rules_file = lab.net.dir().join("rules.conf");
    std::fs::write(&rules_file, rules).unwrap();
    let config = lab.net.dir().join("ftfwd.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nconsole_socket = \"{}\"\nstate_file = \"\"\n\n[dataplane]\nworkers = 1\n\n\
             [[port]]\nname = \"outside\"\nbackend = \"af_packet\"\ninterface = \"c1\"\n\n\
             [[port]]\nname = \"inside\"\nbackend = \"af_packet\"\ninterface = \"s1\"\n\n\
             [[bridge]]\nports = [\"outside\", \"inside\"]\n\n\
             [conntrack]\ncapacity = 4096\n{conntrack}\n[rules]\nfile = \"{}\"\n",
            lab.net.dir().join("ftfwd.sock").display(),
            rules_file.display()
        ),
    )
    .unwrap();
    (lab, config)
}

/// Starts ftfwd with `config` and waits until its console answers;
/// returns its PID.
fn start_ftfwd(lab: &mut Lab, config: &Path) -> u32 {
    let f = lab.ns("f");
    let sock = lab.net.dir().join("ftfwd.sock");
    lab.net
        .start_ftfwd(&f, (&bin("ftfwd"), &bin("ftfwctl")), config, &sock, None)
        .unwrap()
}

/// ftfwd bridging client and server (one subnet); each case's outcome.
fn through_ftfw() -> Vec<bool> {
    let (mut lab, config) = ftfw_lab("sf", RULES, "");
    start_ftfwd(&mut lab, &config);
    lab.start_servers();
    CASES.iter().map(|(c, _)| lab.run_case(c)).collect()
}

/// The Linux kernel routing between client and server with the rules
/// translated to nftables; each case's outcome.
fn through_nft() -> Vec<bool> {
    let mut lab = Lab::new("sn", "198.51.100.2");
    lab.net.kernel_routed().unwrap();
    let f = lab.ns("f");
    let ruleset = lab.net.dir().join("rules.nft");
    std::fs::write(&ruleset, to_nft(RULES)).unwrap();
    let ruleset = ruleset.to_str().unwrap();
    sh(&["ip", "netns", "exec", &f, "nft", "-f", ruleset]).unwrap();
    lab.start_servers();
    CASES.iter().map(|(c, _)| lab.run_case(c)).collect()
}

#[test]
fn rules_translate_to_nft() {
    let nft = to_nft(RULES);
    assert!(nft.contains("policy drop;"), "{nft}");
    assert!(
        nft.contains("    iifname \"s1\" meta l4proto tcp th sport 8444 drop\n"),
        "{nft}"
    );
    assert!(
        nft.contains("    iifname \"c1\" meta l4proto tcp th dport { 8080, 8444, 8445 } ct state new accept\n"),
        "{nft}"
    );
    assert!(
        nft.contains("    ct state { established, related } accept\n"),
        "{nft}"
    );
}

#[test]
#[ignore = "needs root: network namespaces, veth, AF_PACKET and nft (Debian package nftables)"]
fn ftfw_and_nftables_give_the_same_verdicts() {
    let want: Vec<bool> = CASES.iter().map(|(_, ok)| *ok).collect();
    let nft = through_nft();
    let ftfw = through_ftfw();
    let table: Vec<String> = CASES
        .iter()
        .zip(nft.iter().zip(&ftfw))
        .map(|((c, _), (n, f))| format!("{c}: nft {n} ftfw {f}"))
        .collect();
    assert_eq!(
        nft, want,
        "nftables does not do what the rules say: {table:#?}"
    );
    assert_eq!(ftfw, nft, "ftfw and nftables differ: {table:#?}");
}

#[test]
#[ignore = "needs root: network namespaces, veth and AF_PACKET"]
fn a_download_survives_kill_and_restart_with_loose_pickup() {
    let rules = "policy drop\n\
                 accept ct established,related\n\
                 accept in outside proto tcp dport 8080 ct new\n";
    let (mut lab, config) = ftfw_lab("sk", rules, "tcp_loose = true\n");
    let first = start_ftfwd(&mut lab, &config);
    lab.start_servers();
    let c = lab.ns("c");
    let mut download = lab
        .net
        .spawn_probe_fetch(
            &c,
            &bin("ftfw-lab"),
            "192.0.2.2:8080",
            200_000_000,
            &["--stall-ms", "15000"],
        )
        .unwrap();
    // The download is under way once ftfwd lists it ESTABLISHED.
    let sock = lab.net.dir().join("ftfwd.sock");
    wait_until("the download ESTABLISHED", Duration::from_secs(10), || {
        !netns::established_flows(&bin("ftfwctl"), &sock, 8080).is_empty()
    });
    assert!(
        download.try_wait().unwrap().is_none(),
        "the download ended before the kill: make it longer"
    );
    // kill -9 with no state file (this test is about pickup): the table
    // is lost.
    signal(first, "KILL").unwrap();
    lab.net.wait_exit(first, Duration::from_secs(5)).unwrap();
    let _ = std::fs::remove_file(lab.net.dir().join("ftfwd.sock"));
    start_ftfwd(&mut lab, &config);
    let out = download.wait_with_output().unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("fetch output ({e}): {out:?}"));
    assert_eq!(r["ok"], true, "download did not survive the restart: {r}");
}
