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
    let r = run(&drain_opts(3, 3));
    assert_nothing_broke(&r);
    assert_one_map_for_the_drain(&r);
}

/// A drain at ftfwd's default failure detection (200 ms): the lab's
/// members share this machine's cores and their coordinators one thread;
/// a member not scheduled must not declare the others dead (the detector
/// forgives its own stalls), or the buckets would move again and again.
fn drain_opts(nodes: usize, victim: u32) -> ClusterLabOpts {
    opts(nodes, victim, Fault::Drain)
}

/// The drain made exactly one new map: no node was declared dead, and
/// the failure detectors say so too.
fn assert_one_map_for_the_drain(r: &ClusterLabReport) {
    assert_eq!(r.map_version_at_end, r.map_version_at_fault + 1, "{r:?}");
    assert_eq!(r.false_deaths, 0, "{r:?}");
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
    let mut o = drain_opts(4, 2);
    o.replicate_all = false;
    let r = run(&o);
    assert_nothing_broke(&r);
    assert_one_map_for_the_drain(&r);
    assert_eq!(r.replicate, "backups");
}

/// `ftfw-lab failover --experiments fig8,fig12,clusters`, tiny: one seed,
/// one object size, a 3-node cluster. Behaviour only (what ran, what was
/// recovered, the tables, targets and plots), no timing.
#[test]
fn the_cluster_experiments_run_and_report() {
    use ftfw_lab::experiments::{self, FigureData, SuiteOpts};
    let _g = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let opts = SuiteOpts {
        experiments: vec!["fig8".into(), "fig12".into(), "clusters".into()],
        concurrency: 32,
        cluster_sizes: vec![20_000],
        cluster_seeds: 1,
        cluster_nodes: vec![3],
        cluster_object_size: 20_000,
        seed: 5,
        ..SuiteOpts::default()
    };
    let r = experiments::run(&opts, true).unwrap();
    let ids: Vec<&str> = r.figures.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, ["fig8", "fig12", "clusters"]);
    let FigureData::ClusterPerf { points, .. } = &r.figures[0].data else {
        panic!("fig8 is a performance figure")
    };
    let settings: Vec<&str> = points.iter().map(|p| p.setting.as_str()).collect();
    assert_eq!(settings, experiments::FIG8_SETTINGS);
    for p in points {
        assert_eq!(p.broken, 0, "{p:?}");
        assert!(p.sessions_per_sec.is_some_and(|s| s.median > 0.0), "{p:?}");
        assert!(
            p.worker_bound_sessions_per_sec
                .is_some_and(|s| s.median > 0.0),
            "{p:?}"
        );
    }
    for f in &r.figures[1..] {
        let FigureData::ClusterRecovery { points, .. } = &f.data else {
            panic!("{} is a recovery figure", f.id)
        };
        for p in points.iter().filter(|p| p.fault == Fault::Crash) {
            assert!(p.established > 0, "{p:?}");
            assert_eq!(p.recovered, p.established, "{p:?}");
            assert_eq!(p.broken, 0, "{p:?}");
            assert!(p.time_to_recover_ms.is_some(), "{p:?}");
            assert!(p.setup_median_ms.is_some(), "{p:?}");
        }
    }
    let FigureData::ClusterRecovery {
        points,
        pair_bytes_per_flow,
        ..
    } = &r.figures[2].data
    else {
        panic!("clusters is a recovery figure")
    };
    // The pair, then 3 nodes replicating to the backups and to every peer.
    let rows: Vec<(usize, &str)> = points
        .iter()
        .map(|p| (p.nodes, p.replicate.as_str()))
        .collect();
    assert_eq!(rows, [(2, "all"), (3, "backups"), (3, "all")]);
    assert!(pair_bytes_per_flow.is_some_and(|b| b.median > 0.0));
    assert!(points[1].expected_bytes_per_flow.is_some());
    assert!(r.targets.iter().any(|t| t
        .measure
        .starts_with("2-node multi-primary vs primary-backup")));
    let text = experiments::render(&r);
    assert!(text.contains("worker-bound"), "{text}");
    let md = experiments::markdown(&r);
    assert!(md.contains("(fig12)") && md.contains("(clusters)"), "{md}");
    let dir = std::env::temp_dir().join(format!("ftfw-lab-clexp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = ftfw_lab::plot::write_all(&r, &dir).unwrap();
    assert_eq!(files.len(), 3);
    for f in files {
        let svg = std::fs::read_to_string(&f).unwrap();
        assert!(svg.contains("</svg>"), "{}", f.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
}
