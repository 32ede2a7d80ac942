//! Root test: a NAT flow the Linux kernel made, replicated by conntrackd
//! 1.4.7 to ftfwd, committed (what a takeover does) and translated by
//! ftfwd's dataplane exactly as the kernel's entry says, both ways.
//!
//! ```text
//! c: c0 192.0.2.1 <-> c1 [f: ftfwd, transparent bridge] s1 <-> s0 192.0.2.2 :s
//!                          f: vs0 203.0.113.1 <-sync-> vs1 203.0.113.2 :k (conntrackd)
//! ```
//!
//! In k, `conntrack -I` makes the kernel entry 192.0.2.1:40000 ->
//! 192.0.2.2:5201 with source NAT to 192.0.2.100:61000 (the kernel fills
//! in the reply tuple and the NAT binding); conntrackd sends it to ftfwd.
//! After `ftfwctl commit` a TCP segment of the original tuple injected in c
//! must reach s as 192.0.2.100:61000 (counted by an nftables rule in s;
//! s's TCP then answers it with a reset, which proves the rewritten
//! checksum right), and that reset must reach c translated back to
//! 192.0.2.1:40000 (counted in c). Before the commit ftfwd drops the
//! segment (`policy = "drop"`, no rule admits it), so the translation can
//! only come from the committed flow. Namespaces are created and deleted
//! by the test; processes are stopped by PID.
//!
//! Two workers, and a translated port chosen (as a kernel may choose it,
//! unlike ftfwd's own allocator, which keeps both directions on one worker)
//! so that the reply steers to the worker that does not hold the flow: that
//! worker hands the resets to the flow's worker (`handed_off`), which
//! translates them back. See ARCHITECTURE.md, NAT.
//!
//! The same runs for IPv6 (2001:db8::1 -> 2001:db8::2, source NAT to
//! 2001:db8::100): a kernel NAT66 entry, replicated with SNAT_IPV6.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ftfw_testkit::conntrackd::ConntrackdPeer;
use ftfw_testkit::netns::{self, sibling_bin, NetnsLab};
use ftfw_testkit::try_wait_until;

const WAIT: Duration = Duration::from_secs(20);

fn bin(name: &str) -> PathBuf {
    sibling_bin(Path::new(env!("CARGO_BIN_EXE_ftfw-lab")), name).unwrap()
}

fn conntrackd_conf(dir: &Path) -> PathBuf {
    ConntrackdPeer::default().write_config(dir).unwrap()
}

/// Packets counted by [`nft_counter`]'s rule in `ns`.
fn nft_count(lab: &NetnsLab, ns: &str) -> u64 {
    let out = lab
        .exec(ns, "nft", &["-j", "list", "chain", "inet", "t", "input"])
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["rule"]["expr"].as_array())
        .flatten()
        .filter_map(|x| x["counter"]["packets"].as_u64())
        .sum()
}

/// An nftables table in `ns` counting input packets that match `m`.
fn nft_counter(lab: &NetnsLab, ns: &str, m: &str) {
    let file = lab.dir().join(format!("{ns}.nft"));
    std::fs::write(
        &file,
        format!(
            "table inet t {{\n\tchain input {{\n\t\ttype filter hook input priority 0;\n\t\t{m} counter\n\t}}\n}}\n"
        ),
    )
    .unwrap();
    let out = lab
        .exec(ns, "nft", &["-f", file.to_str().unwrap()])
        .unwrap();
    assert!(
        out.status.success(),
        "nft in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mac_of(lab: &NetnsLab, ns: &str, ifname: &str) -> String {
    let out = lab
        .exec(ns, "cat", &[&format!("/sys/class/net/{ifname}/address")])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The addresses of one run: client, server, translated source.
struct Family {
    client: &'static str,
    server: &'static str,
    public: &'static str,
    /// Prefix length on the hosts' interfaces.
    prefix: u8,
    /// The nftables address match (`ip` or `ip6`).
    nft: &'static str,
}

const V4: Family = Family {
    client: "192.0.2.1",
    server: "192.0.2.2",
    public: "192.0.2.100",
    prefix: 24,
    nft: "ip",
};

const V6: Family = Family {
    client: "2001:db8::1",
    server: "2001:db8::2",
    public: "2001:db8::100",
    prefix: 64,
    nft: "ip6",
};

impl Family {
    /// `addr:port`, bracketed for IPv6.
    fn sock(&self, addr: &str, port: u16) -> String {
        if self.nft == "ip6" {
            format!("[{addr}]:{port}")
        } else {
            format!("{addr}:{port}")
        }
    }
}

/// A translated source port (from 61000) whose reply tuple steers to the
/// other one of two workers than the flow's original tuple.
fn port_steered_elsewhere(fam: &Family) -> u16 {
    use ftfw_dataplane::flow::{proto, Tuple};
    use ftfw_dataplane::port::steer::worker_of;
    let ip = |s: &str| s.parse().unwrap();
    let orig = Tuple::new(ip(fam.client), ip(fam.server), proto::TCP, 40000, 5201);
    (61000..)
        .find(|&p| {
            let reply = Tuple::new(ip(fam.server), ip(fam.public), proto::TCP, 5201, p);
            worker_of(&reply, 2) != worker_of(&orig, 2)
        })
        .unwrap()
}

#[test]
#[ignore = "needs root: network namespaces, AF_PACKET, conntrackd, conntrack, nft"]
fn a_kernel_nat_flow_from_conntrackd_translates_the_same_in_ftfwd_after_a_commit() {
    run(&V4);
}

#[test]
#[ignore = "needs root: network namespaces, AF_PACKET, conntrackd, conntrack, nft"]
fn a_kernel_nat66_flow_from_conntrackd_translates_the_same_in_ftfwd_after_a_commit() {
    run(&V6);
}

fn run(fam: &Family) {
    let nat_port = port_steered_elsewhere(fam);
    let tag = if fam.nft == "ip6" { "m" } else { "n" };
    let mut lab = NetnsLab::client_firewall_server("ftfwx", tag).unwrap();
    let (c, f, s) = (lab.ns("c"), lab.ns("f"), lab.ns("s"));
    let k = lab.add_ns("k").unwrap();
    lab.veth((&f, "vs0"), (&k, "vs1")).unwrap();
    lab.ip(&f, &["addr", "add", "203.0.113.1/30", "dev", "vs0"])
        .unwrap();
    lab.ip(&k, &["addr", "add", "203.0.113.2/30", "dev", "vs1"])
        .unwrap();
    let (ca, sa) = (
        format!("{}/{}", fam.client, fam.prefix),
        format!("{}/{}", fam.server, fam.prefix),
    );
    lab.ip(&c, &["addr", "add", &ca, "dev", "c0", "nodad"])
        .unwrap();
    lab.ip(&s, &["addr", "add", &sa, "dev", "s0", "nodad"])
        .unwrap();
    // s answers the translated address at c's MAC (through the bridge).
    let c_mac = mac_of(&lab, &c, "c0");
    let s_mac = mac_of(&lab, &s, "s0");
    lab.ip(
        &s,
        &[
            "neigh",
            "add",
            fam.public,
            "lladdr",
            &c_mac,
            "dev",
            "s0",
            "nud",
            "permanent",
        ],
    )
    .unwrap();
    let ipm = fam.nft;
    nft_counter(
        &lab,
        &s,
        &format!(
            "{ipm} saddr {} {ipm} daddr {} tcp sport {nat_port} tcp dport 5201",
            fam.public, fam.server
        ),
    );
    nft_counter(
        &lab,
        &c,
        &format!(
            "{ipm} saddr {} {ipm} daddr {} tcp sport 5201 tcp dport 40000 tcp flags rst",
            fam.server, fam.client
        ),
    );

    let dir = lab.dir().to_path_buf();
    let sock = dir.join("ftfwd.sock");
    let config = dir.join("ftfwd.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nconsole_socket = \"{}\"\nstate_file = \"\"\n\n\
             [dataplane]\nworkers = 2\n\n\
             [[port]]\nname = \"outside\"\nbackend = \"af_packet\"\ninterface = \"c1\"\n\n\
             [[port]]\nname = \"inside\"\nbackend = \"af_packet\"\ninterface = \"s1\"\n\n\
             [[bridge]]\nports = [\"outside\", \"inside\"]\n\n\
             [rules]\npolicy = \"drop\"\nrules = [\"accept ct established,related\"]\n\n\
             [sync]\nlocal = \"203.0.113.1\"\npeer = \"203.0.113.2\"\ninterface = \"vs0\"\nport = 3780\n",
            sock.display()
        ),
    )
    .unwrap();
    let conf = conntrackd_conf(&dir);
    lab.spawn(
        &k,
        "conntrackd",
        &["-C", conf.to_str().unwrap()],
        Some("conntrackd.out"),
    )
    .unwrap();
    lab.start_ftfwd(
        &f,
        (&bin("ftfwd"), &bin("ftfwctl")),
        &config,
        &sock,
        Some("ftfwd"),
    )
    .unwrap();
    try_wait_until("conntrackd's socket", WAIT, || {
        dir.join("conntrackd.sock").exists()
    })
    .unwrap();
    let ctl = |args: &[&str]| netns::ctl_json(&bin("ftfwctl"), &sock, args).unwrap();
    try_wait_until("ftfwd to hear conntrackd", WAIT, || {
        ctl(&["sync", "status"])["peer_state"] == "up"
    })
    .unwrap();

    // The kernel's NAT entry, replicated by conntrackd.
    let out = lab
        .exec(
            &k,
            "conntrack",
            &[
                "-I",
                "-p",
                "tcp",
                "-s",
                fam.client,
                "-d",
                fam.server,
                "--sport",
                "40000",
                "--dport",
                "5201",
                "--state",
                "ESTABLISHED",
                "-u",
                "SEEN_REPLY,ASSURED",
                "--timeout",
                "300",
                "--src-nat",
                &fam.sock(fam.public, nat_port),
            ],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "conntrack -I: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let nat_flow = || {
        ctl(&["external", "list"])["flows"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|fl| fl["original"]["sport"] == 40000)
            .cloned()
    };
    try_wait_until(
        "the kernel's NAT flow in ftfwd's external cache",
        WAIT,
        || nat_flow().is_some(),
    )
    .unwrap();
    let fl = nat_flow().unwrap();
    assert_eq!(fl["reply"]["dst"], fam.public, "{fl}");
    assert_eq!(fl["reply"]["dport"], nat_port, "{fl}");

    let inject = |n: u32| {
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
                    &fam.sock(fam.client, 40000),
                    "--to",
                    &fam.sock(fam.server, 5201),
                    "--dst-mac",
                    &s_mac,
                    "--count",
                    &n.to_string(),
                ],
            )
            .unwrap();
        assert!(
            out.status.success(),
            "inject: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };

    // Before the commit: not a flow of ftfwd's, dropped by policy.
    inject(3);
    try_wait_until(
        "ftfwd to drop the uncommitted flow's segments",
        WAIT,
        || netns::counter(&ctl(&["stats"]), "dropped_by_rule").unwrap_or(0) >= 3,
    )
    .unwrap();
    assert_eq!(
        nft_count(&lab, &s),
        0,
        "a segment got through before the commit"
    );

    // After the commit (a takeover's step): translated both ways.
    ctl(&["commit"]);
    try_wait_until("the committed NAT flow in ftfwd's table", WAIT, || {
        ctl(&["flows", "list"])["flows"]
            .as_array()
            .is_some_and(|a| a.iter().any(|fl| fl["original"]["sport"] == 40000))
    })
    .unwrap();
    inject(3);
    try_wait_until(
        "s to see the segments from the translated address",
        WAIT,
        || nft_count(&lab, &s) >= 3,
    )
    .unwrap_or_else(|e| panic!("{e:?}; ftfwd's counters: {}", ctl(&["stats"])));
    try_wait_until(
        "c to see s's resets translated back to the client's port 40000",
        WAIT,
        || nft_count(&lab, &c) >= 1,
    )
    .unwrap();
    let stats = ctl(&["stats"]);
    assert!(
        netns::counter(&stats, "nat_translated").unwrap() >= 4,
        "{stats}"
    );
    assert_eq!(
        netns::counter(&stats, "bad_checksum").unwrap(),
        0,
        "{stats}"
    );
    // The resets reached the worker without the flow and were handed over.
    assert!(
        netns::counter(&stats, "handed_off").unwrap() >= 1,
        "{stats}"
    );
}
