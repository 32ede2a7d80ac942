//! Root test: routed mode with real kernel hosts. client namespace
//! (192.0.2.1/24, a route to the server's subnet via the firewall's
//! virtual address 192.0.2.254) <-> ftfwd routed on AF_PACKET (veths, offloads off) <->
//! server namespace (198.51.100.2/24 via 198.51.100.254). The namespaces
//! are created and deleted by the test; processes are stopped by PID.
//!
//! Checks: the hosts resolve the gateways through ftfwd's ARP answers and
//! ftfwd resolves the hosts; TCP transfers work end to end through
//! conntrack and the ACL; `ftfwctl neighbors` and `ftfwctl routes` list
//! them; a ping of the firewall is answered; a TTL-1 ping gets ICMP time
//! exceeded and one to a subnet without a route network unreachable; after `ftfwctl notify backup` nothing is routed and after
//! `notify master` (gratuitous ARPs) traffic flows again.
#![allow(clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ftfw_testkit::netns::{self, run, sibling_bin, NetnsLab};
use ftfw_testkit::wait_until;

fn bin(name: &str) -> PathBuf {
    sibling_bin(Path::new(env!("CARGO_BIN_EXE_ftfw-lab")), name).unwrap()
}

fn ctl_json(sock: &Path, args: &[&str]) -> serde_json::Value {
    netns::ctl_json(&bin("ftfwctl"), sock, args).unwrap()
}

fn fetch(lab: &NetnsLab, bytes: u64, stall_ms: u64) -> serde_json::Value {
    let c = lab.ns("c");
    lab.probe_fetch(
        &c,
        &bin("ftfw-lab"),
        "198.51.100.2:8080",
        bytes,
        stall_ms,
        &[],
    )
    .unwrap()
}

fn counter(stats: &serde_json::Value, name: &str) -> u64 {
    netns::counter(stats, name).unwrap()
}

/// Retries an allowed fetch until it works (neighbors are resolved on the
/// first packets, which are dropped meanwhile), bounded.
fn fetch_until_ok(lab: &NetnsLab, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = fetch(lab, 1000, 3000);
        if r["ok"] == true {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: fetch never worked: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs root: network namespaces, veth and AF_PACKET"]
fn routed_firewall_between_namespaces() {
    let mut lab = NetnsLab::client_firewall_server("ftfwr", "r").unwrap();
    let (c, srv) = (lab.ns("c"), lab.ns("s"));
    // Hosts: the firewall's virtual addresses are their gateways.
    lab.ip(&c, &["addr", "add", "192.0.2.1/24", "dev", "c0"])
        .unwrap();
    lab.ip(
        &c,
        &["route", "add", "198.51.100.0/24", "via", "192.0.2.254"],
    )
    .unwrap();
    // A subnet the firewall has no route to (for "network unreachable").
    lab.ip(
        &c,
        &["route", "add", "203.0.113.0/24", "via", "192.0.2.254"],
    )
    .unwrap();
    lab.ip(&srv, &["addr", "add", "198.51.100.2/24", "dev", "s0"])
        .unwrap();
    lab.ip(
        &srv,
        &["route", "add", "192.0.2.0/24", "via", "198.51.100.254"],
    )
    .unwrap();
    let sock = lab.dir().join("ftfwd.sock");
    let config = lab.dir().join("ftfwd.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nconsole_socket = \"{}\"\n\n[dataplane]\nworkers = 1\nmode = \"routed\"\n\n\
             [[port]]\nname = \"outside\"\nbackend = \"af_packet\"\ninterface = \"c1\"\naddresses = [\"192.0.2.253/24\"]\n\n\
             [[port]]\nname = \"inside\"\nbackend = \"af_packet\"\ninterface = \"s1\"\naddresses = [\"198.51.100.253/24\"]\n\n\
             [[virtual_address]]\nport = \"outside\"\naddress = \"192.0.2.254/24\"\n\n\
             [[virtual_address]]\nport = \"inside\"\naddress = \"198.51.100.254/24\"\n\n\
             [conntrack]\ncapacity = 4096\n\n[rules]\npolicy = \"drop\"\nrules = [\n  \"accept ct established,related\",\n  \"accept in outside proto tcp dport 8080 ct new\",\n  \"accept proto icmp\",\n]\n",
            sock.display(),
        ),
    )
    .unwrap();
    let fw = lab.ns("f");
    let pid = lab
        .start_ftfwd(&fw, (&bin("ftfwd"), &bin("ftfwctl")), &config, &sock, None)
        .unwrap();
    lab.spawn(
        &srv,
        bin("ftfw-lab"),
        &["serve", "--listen", "198.51.100.2:8080"],
        None,
    )
    .unwrap();
    fetch_until_ok(&lab, "first transfer");

    // A real transfer through the router.
    let r = fetch(&lab, 2_000_000, 5000);
    assert_eq!(r["ok"], true, "{r}");

    // Both hosts are neighbors, learned on their ports.
    let n = ctl_json(&sock, &["neighbors"]);
    let list = n["neighbors"].as_array().cloned().unwrap_or_default();
    let find = |ip: &str| list.iter().find(|e| e["ip"] == ip).cloned();
    assert_eq!(
        find("192.0.2.1").expect("client learned")["port"],
        "outside",
        "{n}"
    );
    assert_eq!(
        find("198.51.100.2").expect("server learned")["port"],
        "inside",
        "{n}"
    );
    let routes = ctl_json(&sock, &["routes"]);
    assert!(routes.to_string().contains("198.51.100.0/24"), "{routes}");
    let st = ctl_json(&sock, &["stats"]);
    assert!(counter(&st, "routed") > 1000, "{st}");

    // Pings: the firewall answers for itself; TTL 1 gets time exceeded.
    let ping = |args: &[&str]| {
        let mut a = vec!["netns", "exec", &c, "ping", "-n", "-c", "1", "-W", "2"];
        a.extend_from_slice(args);
        run(Command::new("ip").args(&a)).unwrap()
    };
    let out = ping(&["192.0.2.253"]);
    assert!(
        out.status.success(),
        "ping of the firewall: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = ping(&["198.51.100.2"]);
    assert!(
        out.status.success(),
        "ping through the firewall: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let before = counter(&ctl_json(&sock, &["stats"]), "ttl_exceeded");
    let out = ping(&["-t", "1", "198.51.100.2"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        text.contains("192.0.2.253") && text.to_lowercase().contains("exceeded"),
        "{text}"
    );
    let after = counter(&ctl_json(&sock, &["stats"]), "ttl_exceeded");
    assert!(after > before, "ttl_exceeded {before} -> {after}");
    // No route: the kernel's ping reports the firewall's network
    // unreachable.
    let before = counter(&ctl_json(&sock, &["stats"]), "no_route");
    let out = ping(&["203.0.113.7"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        !out.status.success()
            && text.contains("192.0.2.253")
            && text.contains("Destination Net Unreachable"),
        "{text}"
    );
    let after = counter(&ctl_json(&sock, &["stats"]), "no_route");
    assert!(after > before, "no_route {before} -> {after}");
    // SIGHUP reloads the static routes of the file: the new one is listed
    // and that subnet is no longer unreachable.
    let text_before_route = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text_before_route.replace(
            "[conntrack]",
            "[[route]]\nto = \"203.0.113.0/24\"\nvia = \"198.51.100.2\"\n\n[conntrack]",
        ),
    )
    .unwrap();
    netns::signal(pid, "HUP").unwrap();
    let listed = || {
        ctl_json(&sock, &["routes"])
            .to_string()
            .contains("203.0.113.0/24")
    };
    wait_until("the reloaded route", Duration::from_secs(5), listed);
    let before = counter(&ctl_json(&sock, &["stats"]), "no_route");
    let out = ping(&["203.0.113.7"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!text.contains("Unreachable"), "{text}");
    assert_eq!(counter(&ctl_json(&sock, &["stats"]), "no_route"), before);
    // `ftfwctl routes reload` does the same from the console: the route
    // taken out of the file again is gone from the table it answers with.
    std::fs::write(&config, &text_before_route).unwrap();
    let reloaded = ctl_json(&sock, &["routes", "reload"]);
    assert!(
        reloaded["routes"].is_array() && !reloaded.to_string().contains("203.0.113.0/24"),
        "{reloaded}"
    );
    assert!(!listed());

    // Backup: nothing is routed; master again: announced, traffic flows.
    let b = ctl_json(&sock, &["notify", "backup"]);
    assert_eq!(b["role"], "backup", "{b}");
    let before = counter(&ctl_json(&sock, &["stats"]), "standby_dropped");
    let r = fetch(&lab, 1000, 1500);
    assert_eq!(r["ok"], false, "a backup routed: {r}");
    // The client's packets reached the backup and were dropped there (not
    // just lost to a slow host).
    wait_until("the backup's standby drops", Duration::from_secs(5), || {
        counter(&ctl_json(&sock, &["stats"]), "standby_dropped") > before
    });
    let m = ctl_json(&sock, &["notify", "master"]);
    let steps = m["steps"].as_array().cloned().unwrap_or_default();
    let announce = steps.iter().find(|s| s["step"] == "announce").cloned();
    assert_eq!(
        announce.map(|a| a["note"].clone()),
        Some(serde_json::json!("2 gratuitous ARP / unsolicited NA sent")),
        "{m}"
    );
    fetch_until_ok(&lab, "after takeover");
}
