//! Root test: FTP through real ftfwd (routed, two workers on AF_PACKET
//! fanout) between kernel hosts in namespaces, with Python's ftplib as the
//! client and a small FTP server (`tests/netns_ftp/*.py`). Each mode
//! (PORT, EPRT, PASV, EPSV) retrieves a file and checks its bytes.
//!
//! - Masquerade: the server (198.51.100.2/24) has no route to the
//!   client's subnet, so an active-mode data connection works only if the
//!   PORT/EPRT the client sent (192.0.2.1) reached the server rewritten
//!   to the firewall's inside address, and the firewall routes the data
//!   connection to that address on to the client; passive data
//!   connections follow the control connection's translation.
//! - DNAT: the client reaches the server as 203.0.113.5; the passive
//!   answers announce 198.51.100.2 and must reach the client rewritten
//!   (the client trusts the 227 address), active data connections come
//!   from 203.0.113.5.
//!
//! The namespaces are created and deleted by the test; processes are
//! stopped by PID (the lab's drop).

use std::path::{Path, PathBuf};
use std::time::Duration;

use ftfw_testkit::netns::{self, sibling_bin, NetnsLab};

fn bin(name: &str) -> PathBuf {
    sibling_bin(Path::new(env!("CARGO_BIN_EXE_ftfw-lab")), name).unwrap()
}

fn script(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/netns_ftp")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

const SIZE: &str = "200000";

/// A client-firewall-server lab running ftfwd (routed) with `rules` and
/// the FTP server on 198.51.100.2:2121; `server_default`: the server
/// routes everything through the firewall (else only its own subnet).
fn lab(variant: &str, rules: &[&str], server_default: bool) -> (NetnsLab, PathBuf) {
    let mut lab = NetnsLab::client_firewall_server("ftfwftp", variant).unwrap();
    let (c, srv, fw) = (lab.ns("c"), lab.ns("s"), lab.ns("f"));
    lab.ip(&c, &["addr", "add", "192.0.2.1/24", "dev", "c0"])
        .unwrap();
    lab.ip(&c, &["route", "add", "default", "via", "192.0.2.253"])
        .unwrap();
    lab.ip(&srv, &["addr", "add", "198.51.100.2/24", "dev", "s0"])
        .unwrap();
    if server_default {
        lab.ip(&srv, &["route", "add", "default", "via", "198.51.100.253"])
            .unwrap();
    }
    let sock = lab.dir().join("ftfwd.sock");
    let config = lab.dir().join("ftfwd.toml");
    let rules: String = rules.iter().map(|r| format!("  \"{r}\",\n")).collect();
    std::fs::write(
        &config,
        format!(
            "[daemon]\nconsole_socket = \"{}\"\nstate_file = \"\"\n\n\
             [dataplane]\nworkers = 2\nmode = \"routed\"\n\n\
             [[port]]\nname = \"outside\"\nbackend = \"af_packet\"\ninterface = \"c1\"\naddresses = [\"192.0.2.253/24\"]\n\n\
             [[port]]\nname = \"inside\"\nbackend = \"af_packet\"\ninterface = \"s1\"\naddresses = [\"198.51.100.253/24\"]\n\n\
             [conntrack]\ncapacity = 4096\n\n[rules]\npolicy = \"drop\"\nrules = [\n{rules}]\n",
            sock.display(),
        ),
    )
    .unwrap();
    lab.start_ftfwd(
        &fw,
        (&bin("ftfwd"), &bin("ftfwctl")),
        &config,
        &sock,
        Some("ftfwd"),
    )
    .unwrap();
    lab.spawn(
        &srv,
        "python3",
        &[&script("server.py"), "198.51.100.2", "2121", SIZE],
        Some("server.log"),
    )
    .unwrap();
    (lab, sock)
}

/// One retrieval in `mode` from `host`: the client's JSON report.
fn retrieve(lab: &NetnsLab, host: &str, mode: &str) -> serde_json::Value {
    let out = lab
        .exec(
            &lab.ns("c"),
            "python3",
            &[&script("client.py"), host, "2121", mode, SIZE],
        )
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        serde_json::json!({
            "ok": false,
            "error": String::from_utf8_lossy(&out.stderr).to_string(),
        })
    })
}

/// Every mode retrieves the whole file from `host` (the first attempt is
/// retried while neighbours are resolved); returns ftfwd's stats.
fn every_mode(lab: &NetnsLab, sock: &Path, host: &str) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let first = ftfw_testkit::wait::try_wait_until(
        "a first passive retrieval",
        Duration::from_secs(20),
        || {
            last = retrieve(lab, host, "pasv");
            last["ok"] == true
        },
    );
    assert!(
        first.is_ok(),
        "never worked: {last}\nserver: {}",
        lab.log("server.log")
    );
    for mode in ["port", "eprt", "pasv", "epsv"] {
        let r = retrieve(lab, host, mode);
        assert_eq!(
            r["ok"],
            true,
            "{mode}: {r}\nserver: {}\nftfwd: {}\nstats: {}",
            lab.log("server.log"),
            lab.log("ftfwd"),
            netns::ctl_json(&bin("ftfwctl"), sock, &["stats"]).unwrap()["total"]
        );
    }
    netns::ctl_json(&bin("ftfwctl"), sock, &["stats"]).unwrap()
}

#[test]
#[ignore = "needs root: network namespaces, veth, AF_PACKET and python3"]
fn ftp_every_mode_through_masquerade_to_a_server_that_cannot_route_back() {
    let (lab, sock) = lab(
        "m",
        &[
            "accept ct established,related",
            "accept in outside proto tcp dport 2121 helper ftp",
            "nat masquerade out inside",
        ],
        false,
    );
    let st = every_mode(&lab, &sock, "198.51.100.2");
    let counter = |n: &str| netns::counter(&st, n).unwrap();
    // PORT and EPRT rewritten ("192,0,2,1" to "198,51,100,253": longer,
    // so the sequence numbers after them moved).
    assert!(counter("helper_rewritten") >= 2, "{st}");
    assert!(counter("seq_adjusted") > 0, "{st}");
    assert!(counter("expectations_matched") >= 5, "{st}");
    assert_eq!(counter("helper_rewrite_failed"), 0, "{st}");
    assert_eq!(counter("nat_failed"), 0, "{st}");
}

#[test]
#[ignore = "needs root: network namespaces, veth, AF_PACKET and python3"]
fn ftp_every_mode_to_a_dnated_server() {
    let (lab, sock) = lab(
        "d",
        &[
            "accept ct established,related",
            "accept in outside proto tcp to 203.0.113.5 dport 2121 helper ftp",
            "nat dst in outside proto tcp daddr 203.0.113.5 dport 2121 to 198.51.100.2",
        ],
        true,
    );
    let st = every_mode(&lab, &sock, "203.0.113.5");
    let counter = |n: &str| netns::counter(&st, n).unwrap();
    // The 227 answers rewritten ("198,51,100,2" to "203,0,113,5").
    assert!(counter("helper_rewritten") >= 2, "{st}");
    assert!(counter("expectations_matched") >= 5, "{st}");
    assert_eq!(counter("helper_rewrite_failed"), 0, "{st}");
}
