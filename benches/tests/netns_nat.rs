//! Root test: source NAT through real ftfwd (routed, two workers on
//! AF_PACKET fanout) between kernel hosts in namespaces. The client
//! (192.0.2.1/24) routes to the server's subnet via the firewall; the
//! server (198.51.100.2/24) has no route back to the client's subnet at
//! all, so a transfer can only work if the server sees, and answers, the
//! translated address: `nat masquerade out inside` gives it the firewall's
//! inside address 198.51.100.253. The namespaces are created and deleted
//! by the test; processes are stopped by PID.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ftfw_testkit::netns::{self, run, sibling_bin, NetnsLab};

fn bin(name: &str) -> PathBuf {
    sibling_bin(Path::new(env!("CARGO_BIN_EXE_ftfw-lab")), name).unwrap()
}

fn ctl_json(sock: &Path, args: &[&str]) -> serde_json::Value {
    netns::ctl_json(&bin("ftfwctl"), sock, args).unwrap()
}

fn fetch(lab: &NetnsLab, bytes: u64, stall_ms: u64) -> serde_json::Value {
    lab.probe_fetch(
        &lab.ns("c"),
        &bin("ftfw-lab"),
        "198.51.100.2:8080",
        bytes,
        stall_ms,
        &[],
    )
    .unwrap()
}

/// Starts ftfwd in the lab's firewall namespace (routed, two workers)
/// with the outside and inside port addresses given, policy drop, the
/// `icmp` protocol's messages and TCP to 8080 from outside accepted, `nat
/// masquerade out inside`; and the lab's server listening on `listen`.
/// Returns the console socket.
fn start_masquerading_firewall(
    lab: &mut NetnsLab,
    (outside, inside): (&str, &str),
    icmp: &str,
    listen: &str,
) -> PathBuf {
    let sock = lab.dir().join("ftfwd.sock");
    let config = lab.dir().join("ftfwd.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nconsole_socket = \"{}\"\nstate_file = \"\"\n\n\
             [dataplane]\nworkers = 2\nmode = \"routed\"\n\n\
             [[port]]\nname = \"outside\"\nbackend = \"af_packet\"\ninterface = \"c1\"\naddresses = [\"{outside}\"]\n\n\
             [[port]]\nname = \"inside\"\nbackend = \"af_packet\"\ninterface = \"s1\"\naddresses = [\"{inside}\"]\n\n\
             [conntrack]\ncapacity = 4096\n\n[rules]\npolicy = \"drop\"\nrules = [\n  \
             \"accept ct established,related\",\n  \
             \"accept in outside proto tcp dport 8080 ct new\",\n  \
             \"accept proto {icmp}\",\n  \
             \"nat masquerade out inside\",\n]\n",
            sock.display(),
        ),
    )
    .unwrap();
    let (fw, srv) = (lab.ns("f"), lab.ns("s"));
    lab.start_ftfwd(
        &fw,
        (&bin("ftfwd"), &bin("ftfwctl")),
        &config,
        &sock,
        Some("ftfwd"),
    )
    .unwrap();
    lab.spawn(&srv, bin("ftfw-lab"), &["serve", "--listen", listen], None)
        .unwrap();
    sock
}

#[test]
#[ignore = "needs root: network namespaces, veth and AF_PACKET"]
fn client_behind_masquerade_fetches_from_a_server_that_cannot_route_to_it() {
    let mut lab = NetnsLab::client_firewall_server("ftfwn", "n").unwrap();
    let (c, srv) = (lab.ns("c"), lab.ns("s"));
    lab.ip(&c, &["addr", "add", "192.0.2.1/24", "dev", "c0"])
        .unwrap();
    lab.ip(
        &c,
        &["route", "add", "198.51.100.0/24", "via", "192.0.2.253"],
    )
    .unwrap();
    // The server: its own subnet only.
    lab.ip(&srv, &["addr", "add", "198.51.100.2/24", "dev", "s0"])
        .unwrap();
    let sock = start_masquerading_firewall(
        &mut lab,
        ("192.0.2.253/24", "198.51.100.253/24"),
        "icmp",
        "198.51.100.2:8080",
    );
    // Neighbors are resolved on the first packets (dropped meanwhile).
    let mut last = serde_json::Value::Null;
    let first =
        ftfw_testkit::wait::try_wait_until("a first fetch", Duration::from_secs(20), || {
            last = fetch(&lab, 1000, 3000);
            last["ok"] == true
        });
    assert!(first.is_ok(), "fetch never worked: {last}");
    // Transfers on several connections (source ports spread over both
    // workers): every one completes.
    for _ in 0..6 {
        let r = fetch(&lab, 500_000, 5000);
        assert_eq!(r["ok"], true, "{r}");
    }
    // Each flow's reply tuple is the server answering the firewall.
    let flows = ctl_json(&sock, &["flows", "list", "-p", "tcp", "--dport", "8080"]);
    let list = flows["flows"].as_array().cloned().unwrap_or_default();
    assert!(list.len() >= 7, "{flows}");
    for fl in &list {
        assert_eq!(fl["original"]["src"], "192.0.2.1", "{fl}");
        assert_eq!(fl["reply"]["dst"], "198.51.100.253", "{fl}");
        assert!(fl["status_names"].to_string().contains("SRC_NAT"), "{fl}");
    }
    // A ping through is masqueraded and answered too.
    let out = run(Command::new("ip").args([
        "netns",
        "exec",
        &c,
        "ping",
        "-n",
        "-c",
        "1",
        "-W",
        "2",
        "198.51.100.2",
    ]))
    .unwrap();
    assert!(
        out.status.success(),
        "ping through the firewall: {} {}",
        String::from_utf8_lossy(&out.stdout),
        ctl_json(&sock, &["stats"])["total"]
    );
    let st = ctl_json(&sock, &["stats"]);
    let counter = |n: &str| netns::counter(&st, n).unwrap();
    assert!(counter("nat_flows") >= 8, "{st}");
    assert!(counter("nat_translated") > 1000, "{st}");
    assert_eq!(counter("nat_failed"), 0, "{st}");
}

/// NAT66 through real ftfwd: the same lab over IPv6. The client
/// (2001:db8:1::1/64) routes to the server's prefix via the firewall; the
/// server (2001:db8:2::2/64) has no route back, so transfers work only if
/// it sees and answers the firewall's inside address: `nat masquerade out
/// inside` translates IPv6 flows to 2001:db8:2::fd.
#[test]
#[ignore = "needs root: network namespaces, veth and AF_PACKET"]
fn ipv6_client_behind_masquerade_fetches_from_a_server_that_cannot_route_to_it() {
    let mut lab = NetnsLab::client_firewall_server("ftfw6", "6").unwrap();
    let (c, srv) = (lab.ns("c"), lab.ns("s"));
    // No duplicate address detection: the addresses are usable at once.
    lab.ip(
        &c,
        &["addr", "add", "2001:db8:1::1/64", "dev", "c0", "nodad"],
    )
    .unwrap();
    lab.ip(
        &c,
        &[
            "-6",
            "route",
            "add",
            "2001:db8:2::/64",
            "via",
            "2001:db8:1::fd",
        ],
    )
    .unwrap();
    lab.ip(
        &srv,
        &["addr", "add", "2001:db8:2::2/64", "dev", "s0", "nodad"],
    )
    .unwrap();
    let sock = start_masquerading_firewall(
        &mut lab,
        ("2001:db8:1::fd/64", "2001:db8:2::fd/64"),
        "ipv6-icmp",
        "[2001:db8:2::2]:8080",
    );
    let fetch6 = |bytes: u64, stall_ms: u64| {
        lab.probe_fetch(
            &lab.ns("c"),
            &bin("ftfw-lab"),
            "[2001:db8:2::2]:8080",
            bytes,
            stall_ms,
            &[],
        )
        .unwrap()
    };
    // Neighbors are resolved on the first packets.
    let mut last = serde_json::Value::Null;
    let first =
        ftfw_testkit::wait::try_wait_until("a first fetch", Duration::from_secs(20), || {
            last = fetch6(1000, 3000);
            last["ok"] == true
        });
    assert!(
        first.is_ok(),
        "fetch never worked: {last} {}",
        ctl_json(&sock, &["stats"])["total"]
    );
    for _ in 0..4 {
        let r = fetch6(500_000, 5000);
        assert_eq!(r["ok"], true, "{r}");
    }
    let flows = ctl_json(&sock, &["flows", "list", "-p", "tcp", "--dport", "8080"]);
    let list = flows["flows"].as_array().cloned().unwrap_or_default();
    assert!(list.len() >= 5, "{flows}");
    for fl in &list {
        assert_eq!(fl["original"]["src"], "2001:db8:1::1", "{fl}");
        assert_eq!(fl["reply"]["dst"], "2001:db8:2::fd", "{fl}");
        assert!(fl["status_names"].to_string().contains("SRC_NAT"), "{fl}");
    }
    let st = ctl_json(&sock, &["stats"]);
    let counter = |n: &str| netns::counter(&st, n).unwrap();
    assert!(counter("nat_flows") >= 5, "{st}");
    assert!(counter("nat_translated") > 500, "{st}");
    assert_eq!(counter("nat_failed"), 0, "{st}");
}
