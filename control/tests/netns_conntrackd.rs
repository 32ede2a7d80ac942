//! Root test: ftfwd replicating with the real conntrackd 1.4.7 over FT-FW,
//! each in a network namespace the test creates and deletes.
//!
//! ```text
//! ns ftfwN-<tag>: ftfwd, sync on vs0 203.0.113.1/30  <-veth->  vs1 203.0.113.2/30, conntrackd :ns ftfwK-<tag>
//! ```
//!
//! Checks, in both directions:
//! - flows added with `ftfwctl flows add` (TCP, UDP with a mark, ICMP, IPv6,
//!   SNAT, DNAT, a zone) appear in conntrackd's external cache and, after
//!   `conntrackd -c`, in that namespace's kernel table with the NAT reply
//!   tuples, mark, zone and ICMP id intact;
//! - flows inserted with `conntrack -I` next to conntrackd appear in
//!   `ftfwctl external list`, and `conntrack -D` removes them again;
//! - RESYNC works both ways (`ftfwctl resync`, `conntrackd -n`);
//! - neither side counts a malformed message from the other.
//!
//! Needs root, iproute2, conntrackd, conntrack (`.ci/run` installs them).

use std::path::{Path, PathBuf};
use std::time::Duration;

use ftfw_testkit::conntrackd::ConntrackdPeer;
use ftfw_testkit::netns::NetnsLab;
use ftfw_testkit::try_wait_until;

const WAIT: Duration = Duration::from_secs(20);

/// The two namespaces, N (ftfwd, `vs0`, idle dataplane ports `d0`/`d1`)
/// and K (`vs1`), joined by the sync veth.
fn lab(variant: &str) -> NetnsLab {
    let mut lab = NetnsLab::new("ftfw", variant).unwrap();
    let n = lab.add_ns("N").unwrap();
    let k = lab.add_ns("K").unwrap();
    lab.veth((&n, "vs0"), (&k, "vs1")).unwrap();
    // The firewall's own (idle) dataplane ports.
    lab.veth((&n, "d0"), (&n, "d1")).unwrap();
    lab.ip(&n, &["addr", "add", "203.0.113.1/30", "dev", "vs0"])
        .unwrap();
    lab.ip(&k, &["addr", "add", "203.0.113.2/30", "dev", "vs1"])
        .unwrap();
    lab
}

fn conntrackd_conf(dir: &Path, multicast: bool) -> PathBuf {
    ConntrackdPeer {
        multicast,
        ..ConntrackdPeer::default()
    }
    .write_config(dir)
    .unwrap()
}

fn ftfwd_conf(dir: &Path, multicast: bool) -> PathBuf {
    ftfwd_conf_named(dir, "ftfwd", "203.0.113.1", "203.0.113.2", "vs0", multicast)
}

fn ftfwd_conf_named(
    dir: &Path,
    name: &str,
    local: &str,
    peer: &str,
    interface: &str,
    multicast: bool,
) -> PathBuf {
    let dest = if multicast {
        "multicast_group = \"225.0.0.50\"".to_string()
    } else {
        format!("peer = \"{peer}\"")
    };
    let text = format!(
        "[daemon]
console_socket = \"{d}/{name}.sock\"
log_level = \"debug\"

[[port]]
name = \"outside\"
backend = \"af_packet\"
interface = \"d0\"

[[port]]
name = \"inside\"
backend = \"af_packet\"
interface = \"d1\"

[[bridge]]
ports = [\"outside\", \"inside\"]

[rules]
policy = \"accept\"

[sync]
local = \"{local}\"
{dest}
interface = \"{interface}\"
port = 3780
",
        d = dir.display()
    );
    let p = dir.join(format!("{name}.toml"));
    std::fs::write(&p, text).unwrap();
    p
}

struct Ctx {
    lab: NetnsLab,
    conf: String,
    sock: String,
}

impl Ctx {
    fn ctl(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--socket", &self.sock, "--json"];
        a.extend_from_slice(args);
        let out = self
            .lab
            .exec(&self.lab.ns("N"), env!("CARGO_BIN_EXE_ftfwctl"), &a)
            .unwrap();
        assert!(
            out.status.success(),
            "ftfwctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "ftfwctl {args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    fn conntrackd(&self, args: &[&str]) -> String {
        let mut a = vec!["-C", &self.conf];
        a.extend_from_slice(args);
        let out = self.lab.exec(&self.lab.ns("K"), "conntrackd", &a).unwrap();
        assert!(
            out.status.success(),
            "conntrackd {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn conntrack(&self, args: &[&str]) -> String {
        let out = self.lab.exec(&self.lab.ns("K"), "conntrack", args).unwrap();
        assert!(
            out.status.success(),
            "conntrack {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // conntrack -L prints the table on stdout and a summary on stderr.
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn external(&self) -> Vec<serde_json::Value> {
        self.ctl(&["external", "list"])["flows"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn wait(&self, what: &str, f: impl FnMut() -> bool) {
        if let Err(e) = try_wait_until(what, WAIT, f) {
            panic!(
                "{e}\n--- ftfwd log:\n{}\n--- conntrackd log:\n{}\n--- conntrackd -s network:\n{}",
                self.lab.log("ftfwd.out"),
                self.lab.log("conntrackd.log"),
                self.conntrackd(&["-s", "network"])
            );
        }
    }
}

/// The flows we add with `ftfwctl flows add`, and a substring of each one's
/// line in conntrackd's external cache and, after a commit, in `conntrack -L`.
const OUR_FLOWS: &[(&[&str], &str, &str)] = &[
    (
        &[
            "-p",
            "tcp",
            "-s",
            "192.0.2.1",
            "-d",
            "198.51.100.1",
            "--sport",
            "40000",
            "--dport",
            "80",
            "-t",
            "300",
            "--status-bits",
            "SEEN_REPLY,ASSURED",
        ],
        "src=192.0.2.1 dst=198.51.100.1 sport=40000 dport=80",
        "src=198.51.100.1 dst=192.0.2.1 sport=80 dport=40000",
    ),
    (
        &[
            "-p",
            "udp",
            "-s",
            "192.0.2.3",
            "-d",
            "198.51.100.53",
            "--sport",
            "5353",
            "--dport",
            "53",
            "-t",
            "120",
            "-m",
            "42",
        ],
        "src=192.0.2.3 dst=198.51.100.53 sport=5353 dport=53",
        "mark=42",
    ),
    (
        &[
            "-p",
            "icmp",
            "-s",
            "192.0.2.6",
            "-d",
            "198.51.100.1",
            "--icmp-type",
            "8",
            "--icmp-code",
            "0",
            "--icmp-id",
            "4660",
            "-t",
            "30",
        ],
        "src=192.0.2.6 dst=198.51.100.1 type=8 code=0 id=4660",
        "src=198.51.100.1 dst=192.0.2.6 type=0 code=0 id=4660",
    ),
    (
        &[
            "-p",
            "tcp",
            "-s",
            "2001:db8::1",
            "-d",
            "2001:db8:1::1",
            "--sport",
            "40003",
            "--dport",
            "22",
            "-t",
            "300",
            "--status-bits",
            "SEEN_REPLY",
        ],
        "src=2001:db8::1 dst=2001:db8:1::1 sport=40003 dport=22",
        "src=2001:db8:1::1 dst=2001:db8::1 sport=22 dport=40003",
    ),
    (
        &[
            "-p",
            "tcp",
            "-s",
            "192.0.2.2",
            "-d",
            "198.51.100.10",
            "--sport",
            "40001",
            "--dport",
            "443",
            "-t",
            "300",
            "--status-bits",
            "SEEN_REPLY,ASSURED",
            "--src-nat",
            "203.0.113.5:61000",
        ],
        "src=192.0.2.2 dst=198.51.100.10 sport=40001 dport=443",
        "src=198.51.100.10 dst=203.0.113.5 sport=443 dport=61000",
    ),
    (
        &[
            "-p",
            "tcp",
            "-s",
            "192.0.2.2",
            "-d",
            "203.0.113.5",
            "--sport",
            "40002",
            "--dport",
            "8080",
            "-t",
            "300",
            "--status-bits",
            "SEEN_REPLY,ASSURED",
            "--dst-nat",
            "192.0.2.99:80",
        ],
        "src=192.0.2.2 dst=203.0.113.5 sport=40002 dport=8080",
        "src=192.0.2.99 dst=192.0.2.2 sport=80 dport=40002",
    ),
    (
        &[
            "-p",
            "udp",
            "-s",
            "192.0.2.5",
            "-d",
            "198.51.100.5",
            "--sport",
            "1000",
            "--dport",
            "2000",
            "-t",
            "120",
            "-w",
            "7",
        ],
        "src=192.0.2.5 dst=198.51.100.5 sport=1000 dport=2000",
        "zone=7",
    ),
];

/// Lines of `text` that mention `needle`.
fn line_with<'a>(text: &'a str, needle: &str) -> Option<&'a str> {
    text.lines().find(|l| l.contains(needle))
}

/// The receive-error counters of `conntrackd -s network` ("Malformed
/// messages:  0", "Wrong protocol version:  0", ...): (lines found, sum).
fn network_errors(stats: &str) -> (usize, u64) {
    let labels = ["Malformed", "Wrong protocol", "Bad message", "Truncated"];
    let mut found = 0;
    let mut sum = 0;
    for line in stats.lines() {
        let line = line.trim();
        if labels.iter().any(|l| line.starts_with(l)) {
            let v = line.rsplit(|c: char| c == ':' || c.is_whitespace()).next();
            if let Some(v) = v.and_then(|v| v.parse::<u64>().ok()) {
                found += 1;
                sum += v;
            }
        }
    }
    (found, sum)
}

#[test]
#[ignore = "needs root: network namespaces, conntrackd and conntrack"]
fn interop_with_conntrackd_unicast() {
    interop(false);
}

/// The same over multicast (225.0.0.50, conntrackd's `Multicast` block).
#[test]
#[ignore = "needs root: network namespaces, conntrackd and conntrack"]
fn interop_with_conntrackd_multicast() {
    interop(true);
}

fn interop(multicast: bool) {
    let mut lab = lab(if multicast { "m" } else { "u" });
    let conf = conntrackd_conf(lab.dir(), multicast);
    let ftfwd = ftfwd_conf(lab.dir(), multicast);
    let (n, k) = (lab.ns("N"), lab.ns("K"));
    lab.spawn(
        &k,
        "conntrackd",
        &["-C", conf.to_str().unwrap()],
        Some("conntrackd.out"),
    )
    .unwrap();
    lab.spawn(
        &n,
        env!("CARGO_BIN_EXE_ftfwd"),
        &["--config", ftfwd.to_str().unwrap()],
        Some("ftfwd.out"),
    )
    .unwrap();
    let ctx = Ctx {
        conf: conf.display().to_string(),
        sock: lab.dir().join("ftfwd.sock").display().to_string(),
        lab,
    };
    // Both daemons up.
    ctx.wait("conntrackd's socket", || {
        ctx.lab.dir().join("conntrackd.sock").exists()
    });
    ctx.wait("ftfwd's console", || {
        ctx.lab
            .exec(
                &n,
                env!("CARGO_BIN_EXE_ftfwctl"),
                &["--socket", &ctx.sock, "status"],
            )
            .is_ok_and(|o| o.status.success())
    });

    // 1. Our flows reach conntrackd's external cache ...
    for (args, _, _) in OUR_FLOWS {
        let mut a = vec!["flows", "add"];
        a.extend_from_slice(args);
        ctx.ctl(&a);
    }
    ctx.wait("our 7 flows in conntrackd's external cache", || {
        let ext = ctx.conntrackd(&["-e"]);
        OUR_FLOWS
            .iter()
            .all(|(_, key, _)| line_with(&ext, key).is_some())
    });
    let ext = ctx.conntrackd(&["-e"]);
    let mark = line_with(&ext, "sport=5353").unwrap();
    assert!(mark.contains("mark=42"), "{mark}");
    let tcp = line_with(&ext, "sport=40000").unwrap();
    assert!(
        tcp.contains("ESTABLISHED") && tcp.contains("[ASSURED]"),
        "{tcp}"
    );

    // ... and, after a commit, its kernel table with NAT, mark, zone, ICMP id.
    ctx.conntrackd(&["-c"]);
    ctx.wait("the committed flows in conntrackd's kernel table", || {
        let table = ctx.conntrack(&["-L"]) + &ctx.conntrack(&["-L", "-f", "ipv6"]);
        OUR_FLOWS
            .iter()
            .all(|(_, key, reply)| line_with(&table, key).is_some_and(|l| l.contains(reply)))
    });

    // 2. Flows inserted next to conntrackd reach our external cache.
    ctx.conntrack(&[
        "-I",
        "-p",
        "tcp",
        "--src",
        "198.51.100.7",
        "--dst",
        "192.0.2.7",
        "--sport",
        "50000",
        "--dport",
        "443",
        "--state",
        "ESTABLISHED",
        "--timeout",
        "300",
        "-u",
        "SEEN_REPLY,ASSURED",
    ]);
    ctx.conntrack(&[
        "-I",
        "-p",
        "udp",
        "--src",
        "198.51.100.8",
        "--dst",
        "192.0.2.8",
        "--sport",
        "5000",
        "--dport",
        "53",
        "--timeout",
        "120",
    ]);
    let has = |flows: &[serde_json::Value], sport: u64| {
        flows
            .iter()
            .any(|f| f["original"]["sport"].as_u64() == Some(sport))
    };
    ctx.wait("conntrack -I flows in our external cache", || {
        let ext = ctx.external();
        has(&ext, 50000) && has(&ext, 5000)
    });
    let ext = ctx.external();
    let t = ext
        .iter()
        .find(|f| f["original"]["sport"].as_u64() == Some(50000))
        .unwrap();
    assert_eq!(t["state"], "ESTABLISHED", "{t}");
    assert_eq!(t["original"]["src"], "198.51.100.7", "{t}");
    // A delete there removes it here.
    ctx.conntrack(&[
        "-D",
        "-p",
        "udp",
        "--src",
        "198.51.100.8",
        "--dst",
        "192.0.2.8",
        "--sport",
        "5000",
        "--dport",
        "53",
    ]);
    ctx.wait("conntrack -D to reach our external cache", || {
        !has(&ctx.external(), 5000)
    });

    // 3. RESYNC, our request: conntrackd sends its whole internal cache.
    ctx.ctl(&["flush", "external"]);
    assert!(!has(&ctx.external(), 50000));
    ctx.ctl(&["resync"]);
    ctx.wait("conntrackd's resync answer", || has(&ctx.external(), 50000));

    // 4. RESYNC, conntrackd's request: we send our whole table.
    ctx.conntrackd(&["-f", "external"]);
    ctx.conntrackd(&["-n"]);
    ctx.wait("our resync answer in conntrackd's external cache", || {
        let ext = ctx.conntrackd(&["-e"]);
        OUR_FLOWS
            .iter()
            .all(|(_, key, _)| line_with(&ext, key).is_some())
    });

    // 5. Clean link both ways.
    let net = ctx.conntrackd(&["-s", "network"]);
    let (found, errors) = network_errors(&net);
    assert!(found >= 7, "conntrackd -s network format changed: {net}");
    assert_eq!(errors, 0, "{net}");
    let s = ctx.ctl(&["sync", "status"]);
    for c in ["malformed", "malformed_payload", "foreign_datagrams"] {
        assert_eq!(s[c].as_u64(), Some(0), "{c}: {s}");
    }
    assert_eq!(s["hello"], "done", "{s}");
    assert!(s["resyncs_in"].as_u64() >= Some(1), "{s}");
    assert!(s["msgs_in"].as_u64() >= Some(3), "{s}");
}

fn ctl_at(lab: &NetnsLab, ns: &str, sock: &str, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--socket", sock, "--json"];
    a.extend_from_slice(args);
    let out = lab.exec(ns, env!("CARGO_BIN_EXE_ftfwctl"), &a).unwrap();
    assert!(
        out.status.success(),
        "ftfwctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ftfwctl {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn wait_for(lab: &NetnsLab, what: &str, f: impl FnMut() -> bool) {
    if let Err(e) = try_wait_until(what, WAIT, f) {
        panic!(
            "{e}\n--- node 1:\n{}\n--- node 2:\n{}",
            lab.log("n1.out"),
            lab.log("n2.out")
        );
    }
}

/// Two ftfwd processes replicate each other's flows both ways, as the
/// daemon runs them (sockets bound to the sync interface).
#[test]
#[ignore = "needs root: network namespaces and AF_PACKET"]
fn two_ftfwd_nodes_replicate_both_ways() {
    two_nodes(false);
}

/// The same with the sync link on IPv6.
#[test]
#[ignore = "needs root: network namespaces and AF_PACKET"]
fn two_ftfwd_nodes_replicate_over_ipv6() {
    two_nodes(true);
}

fn two_nodes(v6: bool) {
    let mut lab = lab(if v6 { "6" } else { "f" });
    let (n, k) = (lab.ns("N"), lab.ns("K"));
    // Node 2 needs idle dataplane ports of its own.
    lab.veth((&k, "d0"), (&k, "d1")).unwrap();
    let (a1, a2) = if v6 {
        for (ns, i, a) in [
            (&n, "vs0", "2001:db8:ff::1/64"),
            (&k, "vs1", "2001:db8:ff::2/64"),
        ] {
            lab.ip(ns, &["addr", "add", a, "dev", i, "nodad"]).unwrap();
        }
        ("2001:db8:ff::1", "2001:db8:ff::2")
    } else {
        ("203.0.113.1", "203.0.113.2")
    };
    let c1 = ftfwd_conf_named(lab.dir(), "n1", a1, a2, "vs0", false);
    let c2 = ftfwd_conf_named(lab.dir(), "n2", a2, a1, "vs1", false);
    let bin = env!("CARGO_BIN_EXE_ftfwd");
    lab.spawn(&n, bin, &["--config", c1.to_str().unwrap()], Some("n1.out"))
        .unwrap();
    lab.spawn(&k, bin, &["--config", c2.to_str().unwrap()], Some("n2.out"))
        .unwrap();
    let s1 = lab.dir().join("n1.sock").display().to_string();
    let s2 = lab.dir().join("n2.sock").display().to_string();
    for (ns, sock) in [(&n, &s1), (&k, &s2)] {
        wait_for(&lab, "a console", || {
            lab.exec(
                ns,
                env!("CARGO_BIN_EXE_ftfwctl"),
                &["--socket", sock, "status"],
            )
            .is_ok_and(|o| o.status.success())
        });
    }
    let ext_total = |ns: &str, sock: &str| -> u64 {
        ctl_at(&lab, ns, sock, &["external", "list"])["total"]
            .as_u64()
            .unwrap_or(0)
    };
    // Node 1 -> node 2: every sample flow, then a commit.
    for (args, _, _) in OUR_FLOWS {
        let mut a = vec!["flows", "add"];
        a.extend_from_slice(args);
        ctl_at(&lab, &n, &s1, &a);
    }
    wait_for(&lab, "node 1's flows at node 2", || {
        ext_total(&k, &s2) == OUR_FLOWS.len() as u64
    });
    let c = ctl_at(&lab, &k, &s2, &["commit"]);
    assert_eq!(c["committed"].as_u64(), Some(OUR_FLOWS.len() as u64), "{c}");
    let listed = ctl_at(&lab, &k, &s2, &["flows", "list"]);
    assert_eq!(
        listed["total"].as_u64(),
        Some(OUR_FLOWS.len() as u64),
        "{listed}"
    );
    // Node 2 -> node 1.
    ctl_at(
        &lab,
        &k,
        &s2,
        &[
            "flows",
            "add",
            "-p",
            "tcp",
            "-s",
            "198.51.100.70",
            "-d",
            "192.0.2.70",
            "--sport",
            "33000",
            "--dport",
            "25",
            "-t",
            "300",
        ],
    );
    // (Node 1's startup RESYNC may also bring node 2's committed flows
    // back, legitimately, so look for this one flow.)
    wait_for(&lab, "node 2's flow at node 1", || {
        ctl_at(&lab, &n, &s1, &["external", "list", "--sport", "33000"])["total"].as_u64()
            == Some(1)
    });
    for (ns, sock) in [(&n, &s1), (&k, &s2)] {
        let s = ctl_at(&lab, ns, sock, &["sync", "status"]);
        assert_eq!(s["malformed"].as_u64(), Some(0), "{s}");
        assert_eq!(s["peer_state"], "up", "{s}");
    }
}
