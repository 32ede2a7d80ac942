//! Root tests: a pair of ftfwd firewalls with replication, in network
//! namespaces that `ftfw_lab::netns_failover` creates and deletes:
//!
//! ```text
//!                  +-- fw1 (node 1, priority 200) --+
//! client --[hub]---+                                +---[hub]-- server
//!                  +-- fw2 (node 2, priority 100) --+
//!                  fw1 <== sync + election: 203.0.113.1 <-> .2 ==> fw2
//! ```
//!
//! The hubs are Linux bridges with ageing 0 (every frame flooded), so both
//! firewalls see every frame and only the active one forwards. Long TCP
//! transfers (the lab's HTTP-like client and server, each paused mid-way)
//! go through fw1; fw1 is killed with SIGKILL; every transfer must complete
//! through fw2 with no reset. With the election, fw1 is then restarted and
//! must rejoin as a backup without disturbing a transfer. The same runs as
//! `ftfw-lab netns failover`.

use std::path::PathBuf;

use ftfw_lab::netns_failover::{run_netns_failover, Detector, NetnsOptions, NetnsReport};

fn options(detector: Detector, routed: bool) -> NetnsOptions {
    let lab = PathBuf::from(env!("CARGO_BIN_EXE_ftfw-lab"));
    NetnsOptions {
        bin_dir: lab.parent().map(PathBuf::from),
        detector,
        rejoin: detector == Detector::Election,
        transfers: 4,
        bytes: 3_000_000,
        routed,
        sync_loss: 0.0,
        sync_transport: ftfw_lab::failover::Transport::Ftfw,
        sync_rate: "1gbit".into(),
        check_interval_ms: 50,
        workers: 1,
        ftp: false,
    }
}

fn check(r: &NetnsReport) {
    eprintln!("{}", serde_json::to_string(r).unwrap_or_default());
    assert_eq!(
        (r.completed, r.broken),
        (r.transfers, 0),
        "transfers broke: {:?}",
        r.errors
    );
    // Every running transfer's flow (and the warm-up's) was committed
    // before fw2 forwarded.
    assert!(r.flows_committed >= r.transfers as u64, "{r:?}");
    let steps: Vec<&str> = r
        .takeover_steps
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert_eq!(&steps[..2], ["commit", "forward"], "{r:?}");
}

#[test]
#[ignore = "needs root: network namespaces, veth, bridges and AF_PACKET"]
fn sigkill_of_the_primary_breaks_no_transfer() {
    let r = run_netns_failover(&options(Detector::Election, false)).unwrap();
    check(&r);
    assert_eq!(r.rejoined_as_backup, Some(true), "{r:?}");
}

/// Three workers per firewall: the takeover commits each flow into the
/// worker the AF_PACKET fanout program steers its packets to (with the
/// kernel's own fanout hash, a committed flow could land in another
/// worker's shard and its packets be dropped as new mid-stream).
#[test]
#[ignore = "needs root: network namespaces, veth, bridges and AF_PACKET"]
fn sigkill_of_a_primary_with_three_workers_breaks_no_transfer() {
    let mut o = options(Detector::Election, false);
    o.workers = 3;
    o.transfers = 12;
    o.rejoin = false;
    let r = run_netns_failover(&o).unwrap();
    check(&r);
}

/// Routed mode: the hosts' gateways are the virtual addresses, which the
/// new primary announces (gratuitous ARP) after its commit.
#[test]
#[ignore = "needs root: network namespaces, veth, bridges and AF_PACKET"]
fn sigkill_of_the_routed_primary_breaks_no_transfer() {
    let r = run_netns_failover(&options(Detector::Election, true)).unwrap();
    check(&r);
    assert_eq!(r.rejoined_as_backup, Some(true), "{r:?}");
    let announced =
        r.takeover_steps.as_array().into_iter().flatten().any(|s| {
            s["step"] == "announce" && s["note"].as_str().is_some_and(|n| n.starts_with('2'))
        });
    assert!(announced, "both virtual addresses announced: {r:?}");
}

/// keepalived as the detector (VRRP on the sync link, notify scripts run
/// `ftfwctl notify`): the whole fw1 node dies (keepalived and ftfwd).
#[test]
#[ignore = "needs root: network namespaces, veth, bridges, AF_PACKET and keepalived"]
fn keepalived_takeover_breaks_no_transfer() {
    let r = run_netns_failover(&options(Detector::Keepalived, false)).unwrap();
    check(&r);
}

/// FTP through source NAT to the virtual address, crashed half-way through
/// every data connection (issue 14): each mode's data connection and its
/// control connection (a PORT or EPRT rewritten to the longer virtual
/// address moves the control connection's sequence numbers) continue
/// through fw2's copy of their translation, two workers per firewall.
#[test]
#[ignore = "needs root: network namespaces, veth, bridges, AF_PACKET and python3"]
fn sigkill_in_the_middle_of_ftp_data_transfers_through_nat_breaks_none() {
    let mut o = options(Detector::Election, true);
    o.ftp = true;
    o.rejoin = false;
    o.transfers = 8;
    o.bytes = 1_000_000;
    o.workers = 2;
    let r = run_netns_failover(&o).unwrap();
    assert_eq!(r.workload, "ftp");
    check(&r);
    // A control and a data connection per transfer, and the warm-up's.
    assert!(r.flows_committed >= 2 * r.transfers as u64, "{r:?}");
}
