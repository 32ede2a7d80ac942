//! Root tests: a three-member multi-primary cluster of ftfwd on AF_PACKET
//! ports, in network namespaces that `ftfw_lab::netns_cluster` creates and
//! deletes:
//!
//! ```text
//!                   +-- fw1 --+
//! client --[hub]----+-- fw2 --+----[hub]-- server
//!                   +-- fw3 --+
//!       fw1..fw3 --[sync hub]-- FT-FW + cluster, 203.0.113.1..3
//! ```
//!
//! The hubs are Linux bridges with ageing 0: every member sees every frame
//! and forwards only its buckets. A batch of concurrent TCP transfers (the
//! lab's HTTP-like client and server, each paused mid-way) runs through
//! every member when fw2 is killed (SIGKILL), restarted, or drained: no
//! transfer may break, and the bucket map must end as stated. The same
//! runs as `ftfw-lab netns cluster`. One at a time (they share 2 cores).

use std::path::PathBuf;
use std::sync::Mutex;

use ftfw_lab::netns_cluster::{
    run_netns_cluster, ClusterNetnsOptions, ClusterNetnsReport, Scenario,
};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const NODES: u32 = 3;
const VICTIM: u32 = 2;
/// Concurrent transfers per batch (issue 12 asks for 200).
const TRANSFERS: usize = 200;

fn run(scenario: Scenario) -> ClusterNetnsReport {
    run_in(scenario, false, 1)
}

fn run_in(scenario: Scenario, routed: bool, workers: usize) -> ClusterNetnsReport {
    run_with(options(scenario, routed, workers))
}

/// Three multi-primary members, [`TRANSFERS`] transfers of 300 kB, member
/// `VICTIM` the one the scenario acts on.
fn options(scenario: Scenario, routed: bool, workers: usize) -> ClusterNetnsOptions {
    let lab = PathBuf::from(env!("CARGO_BIN_EXE_ftfw-lab"));
    ClusterNetnsOptions {
        bin_dir: lab.parent().map(PathBuf::from),
        nodes: NODES,
        transfers: TRANSFERS,
        bytes: 300_000,
        pause_ms: 5000,
        victim: VICTIM,
        scenario,
        routed,
        workers,
        primary_backup: false,
        uplinks_down_when_idle: false,
        kernel_filter: true,
    }
}

fn run_with(o: ClusterNetnsOptions) -> ClusterNetnsReport {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = run_netns_cluster(&o).unwrap();
    eprintln!("{}", serde_json::to_string(&r).unwrap_or_default());
    eprint!("{}", r.text());
    r
}

/// Nothing broke, every bucket has a live owner, and no frame looped.
fn check(r: &ClusterNetnsReport) {
    for s in &r.scenarios {
        assert!(s.transfers >= TRANSFERS, "{s:?}");
        assert_eq!(
            (s.completed, s.broken),
            (s.transfers, 0),
            "transfers broke: {:?}",
            s.errors
        );
        assert_eq!(s.owned_before.iter().sum::<u32>(), r.buckets, "{s:?}");
        assert_eq!(s.owned_after.iter().sum::<u32>(), r.buckets, "{s:?}");
        assert!(s.buckets_moved > 0, "{s:?}");
    }
    // Each frame is forwarded once: a member receives it from its hub and
    // the others receive the forwarded copy from the other hub (2N-1
    // receptions per forwarded frame at most, a little more while buckets
    // move); a loop would multiply them and keep the hubs busy when idle.
    // With the kernel's bucket filter (transparent mode) a worker receives
    // about only the frames it forwards.
    let bound = if r.kernel_filter && r.mode == "transparent" {
        1.5
    } else {
        f64::from(2 * NODES - 1) + 0.5
    };
    assert!(
        r.rx_per_forwarded > 0.0 && r.rx_per_forwarded <= bound,
        "{r:?}"
    );
    assert!(r.idle_rx_per_s.iter().all(|&n| n < 100), "{r:?}");
    // Every fragment of every echo went through the member that owned
    // its datagram's first fragment.
    let p = r.fragmented_pings;
    assert!(p.sent > 0 && p.received == p.sent, "{p:?}");
}

#[test]
#[ignore = "needs root: network namespaces, veth, bridges and AF_PACKET"]
fn sigkill_of_a_member_breaks_no_transfer() {
    let r = run(Scenario::Crash);
    check(&r);
    let s = &r.scenarios[0];
    assert_eq!(s.scenario, Scenario::Crash);
    // Every bucket of fw2 is forwarded by a survivor, its flows committed.
    assert_eq!(s.owned_after[VICTIM as usize - 1], 0, "{s:?}");
    assert_eq!(
        s.buckets_moved,
        u64::from(s.owned_before[VICTIM as usize - 1])
    );
    assert!(s.flows_committed > 0, "{s:?}");
}

#[test]
#[ignore = "needs root: network namespaces, veth, bridges and AF_PACKET"]
fn a_restarted_member_rejoins_and_gets_buckets_back() {
    let r = run(Scenario::Rejoin);
    check(&r);
    let s = &r.scenarios[1];
    assert_eq!(s.scenario, Scenario::Rejoin);
    assert_eq!(s.owned_before[VICTIM as usize - 1], 0, "{s:?}");
    // Its share again, by planned hand-offs, the map applied everywhere.
    let share = r.buckets / NODES;
    assert!(s.owned_after.iter().all(|&o| o >= share), "{s:?}");
}

#[test]
#[ignore = "needs root: network namespaces, veth, bridges and AF_PACKET"]
fn draining_a_member_breaks_no_transfer_and_undrain_gives_buckets_back() {
    // The workers drop other members' frames themselves here (the other
    // scenarios run with the kernel's filter).
    let r = run_with(ClusterNetnsOptions {
        kernel_filter: false,
        ..options(Scenario::Drain, false, 1)
    });
    check(&r);
    let not_owner: u64 = r.scenarios[0].counters.iter().map(|c| c.not_owner).sum();
    assert!(r.rx_per_forwarded > 2.0 && not_owner > 0, "{r:?}");
    let s = &r.scenarios[0];
    assert_eq!(s.scenario, Scenario::Drain);
    assert!(s.owned_before[VICTIM as usize - 1] > 0, "{s:?}");
    assert_eq!(s.owned_after[VICTIM as usize - 1], 0, "{s:?}");
    assert!(s.owned_after_undrain.is_some_and(|o| o > 0), "{s:?}");
}

#[test]
#[ignore = "needs root: network namespaces, veth, bridges and AF_PACKET"]
fn a_routed_cluster_at_a_shared_mac_survives_a_sigkill() {
    let r = run_in(Scenario::Crash, true, 1);
    assert_eq!(r.mode, "routed");
    check(&r);
    let s = &r.scenarios[0];
    assert_eq!(s.owned_after[VICTIM as usize - 1], 0, "{s:?}");
    assert!(s.flows_committed > 0, "{s:?}");
}

/// Two workers per member: the flows of the crashed member's buckets are
/// committed into the worker the AF_PACKET steering program sends their
/// packets to.
#[test]
#[ignore = "needs root: network namespaces, veth, bridges and AF_PACKET"]
fn a_cluster_of_two_worker_members_survives_a_sigkill() {
    let r = run_in(Scenario::Crash, false, 2);
    assert_eq!(r.workers, 2);
    check(&r);
    let s = &r.scenarios[0];
    assert_eq!(s.owned_after[VICTIM as usize - 1], 0, "{s:?}");
    assert!(s.flows_committed > 0, "{s:?}");
}

/// Primary-backup with `uplinks_down_when_idle`: the backup's outside link
/// is down (its deactivate script ran `ip link set dev o down` in its
/// namespace; `ftfwctl cluster status` says so too) while the primary
/// forwards; at the primary's SIGKILL the
/// backup brings it up before it forwards, and no transfer breaks.
#[test]
#[ignore = "needs root: network namespaces, veth, bridges and AF_PACKET"]
fn a_backups_uplink_is_down_until_it_takes_over_and_no_transfer_breaks() {
    let r = run_with(ClusterNetnsOptions {
        nodes: 2,
        victim: 1,
        primary_backup: true,
        uplinks_down_when_idle: true,
        ..options(Scenario::Crash, false, 1)
    });
    let s = &r.scenarios[0];
    assert_eq!(s.owned_before, [r.buckets, 0], "{s:?}");
    assert_eq!(s.uplinks_before, ["up/up", "down/down"], "{s:?}");
    assert_eq!(
        (s.completed, s.broken),
        (s.transfers, 0),
        "transfers broke: {:?}",
        s.errors
    );
    assert!(s.transfers >= TRANSFERS, "{s:?}");
    assert_eq!(s.owned_after, [0, r.buckets], "{s:?}");
    assert_eq!(s.uplinks_after, ["-", "up/up"], "{s:?}");
    assert!(s.flows_committed > 0, "{s:?}");
}

/// Multi-primary with `uplinks_down_when_idle`: every member owns a share,
/// so every uplink is up; the drained member's goes down once it forwards
/// nothing, and up again (before it forwards) after `undrain`.
#[test]
#[ignore = "needs root: network namespaces, veth, bridges and AF_PACKET"]
fn a_drained_members_uplink_goes_down_and_comes_back_at_undrain() {
    let r = run_with(ClusterNetnsOptions {
        uplinks_down_when_idle: true,
        ..options(Scenario::Drain, false, 1)
    });
    check(&r);
    let s = &r.scenarios[0];
    assert_eq!(s.uplinks_before, ["up/up", "up/up", "up/up"], "{s:?}");
    assert_eq!(s.owned_after[VICTIM as usize - 1], 0, "{s:?}");
    assert_eq!(s.uplinks_after, ["up/up", "down/down", "up/up"], "{s:?}");
    assert!(s.owned_after_undrain.is_some_and(|o| o > 0), "{s:?}");
    assert_eq!(
        s.uplinks_after_undrain,
        ["up/up", "up/up", "up/up"],
        "{s:?}"
    );
}
