//! In-process clusters (no root): N appliances on mem ports behind the
//! lab's hub, each forwarding only its buckets, replicating to every peer
//! over loopback; one member crashes (or is drained) mid-run. Every
//! transfer established at that moment must complete through the others.
//! Runs one at a time (they share loopback ports and the CPU).

use std::sync::Mutex;

use ftfw_lab::failover::{run_cluster, ClusterLabOpts, ClusterLabReport, FailoverOpts, Fault};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run(o: &ClusterLabOpts) -> ClusterLabReport {
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let r = run_cluster(o, |l| eprintln!("{l}")).unwrap();
    eprintln!("{}", serde_json::to_string(&r).unwrap_or_default());
    r
}

fn opts(nodes: usize, victim: u32, fault: Fault) -> ClusterLabOpts {
    ClusterLabOpts {
        nodes,
        victim,
        fault,
        traffic: FailoverOpts {
            transfers: 300,
            object_size: 100_000,
            concurrency: 64,
            ..FailoverOpts::default()
        },
        ..ClusterLabOpts::default()
    }
}

fn assert_nothing_broke(r: &ClusterLabReport) {
    assert!(
        r.flows_established_at_crash > 0,
        "the fault found transfers under way: {r:?}"
    );
    assert_eq!(r.broken_transfers, 0, "{r:?}");
    assert_eq!(r.reset_transfers, 0, "{r:?}");
    assert_eq!(r.flows_recovered, r.flows_established_at_crash, "{r:?}");
    assert_eq!(r.transfers_completed, r.transfers, "{r:?}");
    // Every member owned a share before the fault, and the victim's
    // buckets moved to the others.
    assert!(r.buckets_per_node_at_start.iter().all(|&b| b > 0), "{r:?}");
    assert_eq!(
        r.buckets_per_node_at_start.iter().sum::<u32>(),
        r.buckets,
        "{r:?}"
    );
    assert!(r.buckets_moved > 0, "{r:?}");
    assert!(
        r.time_to_recover_ms.is_some(),
        "every bucket forwarded again: {r:?}"
    );
}

#[test]
fn three_node_multi_primary_loses_no_transfer_when_a_node_crashes() {
    let r = run(&opts(3, 2, Fault::Crash));
    assert_nothing_broke(&r);
    // Every node forwarded a share of the traffic.
    assert!(r.forwarded_per_node.iter().all(|&n| n > 0), "{r:?}");
}

#[test]
fn draining_a_node_moves_its_buckets_with_no_transfer_lost() {
    let r = run(&opts(3, 3, Fault::Drain));
    assert_nothing_broke(&r);
}

#[test]
fn the_coordinator_itself_can_crash() {
    // Node 1 keeps the map (lowest id): its crash needs a new coordinator
    // before its buckets move.
    let r = run(&opts(3, 1, Fault::Crash));
    assert_nothing_broke(&r);
}

#[test]
fn replicating_to_backups_only_loses_nothing_when_a_drained_nodes_buckets_move() {
    // With `replicate = "backups"`, the drain changes owners and backups
    // with flows in flight: each new backup must get the bucket's flows.
    let mut o = opts(4, 2, Fault::Drain);
    o.replicate_all = false;
    let r = run(&o);
    assert_nothing_broke(&r);
    assert_eq!(r.replicate, "backups");
}
