use proptest::prelude::*;

use super::*;

fn loads(m: &BucketMap, nodes: &[NodeId]) -> Vec<u32> {
    nodes.iter().map(|&n| m.owned_by(n).count()).collect()
}

fn balanced(m: &BucketMap, nodes: &[NodeId]) -> bool {
    let n = u32::try_from(nodes.len()).unwrap();
    let floor = m.buckets() / n;
    loads(m, nodes)
        .iter()
        .all(|&l| l == floor || l == floor + u32::from(!m.buckets().is_multiple_of(n)))
}

fn check_invariants(m: &BucketMap, eligible: &[NodeId], per: u8) {
    let want = usize::from(per).min(eligible.len() - 1);
    for b in 0..m.buckets() {
        let o = m.owner_of(b).unwrap();
        assert!(eligible.contains(&o), "bucket {b} owned by {o}");
        let bk = m.backups_of(b);
        assert_eq!(bk.len(), want, "bucket {b} backups {bk:?}");
        for (i, x) in bk.iter().enumerate() {
            assert!(eligible.contains(x) && *x != o && !bk[..i].contains(x));
        }
    }
    let total: u32 = loads(m, eligible).iter().sum();
    assert_eq!(total, m.buckets());
}

#[test]
fn first_map_is_balanced_with_spread_backups() {
    let nodes = [1, 2, 3];
    let m = plan(None, &nodes, 1, Balance::IfUnderFloor, 100).unwrap();
    check_invariants(&m, &nodes, 1);
    assert!(balanced(&m, &nodes));
    assert_eq!(m.version(), 1);
    let bl: Vec<u32> = nodes.iter().map(|&n| m.backed_up_by(n).count()).collect();
    assert!(
        bl.iter().max().unwrap() - bl.iter().min().unwrap() <= 1,
        "{bl:?}"
    );
}

#[test]
fn a_dead_owners_buckets_avoid_members_that_may_lack_its_flows() {
    // 4 joined after 2 was last heard: it backs up some of 2's buckets
    // but cannot hold their flows; they go to the others.
    let m = plan(None, &[1, 2, 3], 1, Balance::IfUnderFloor, 30).unwrap();
    let m = plan(Some(&m), &[1, 2, 3, 4], 1, Balance::IfUnderFloor, 30).unwrap();
    let gone = m.owned_by(2);
    assert!(gone.iter().any(|b| m.backups_of(b) == [4]));
    let avoid = |b: u32, n: NodeId| gone.contains(b) && n == 4;
    let next = plan_avoiding(Some(&m), &[1, 3, 4], 1, Balance::OrphansOnly, 30, avoid).unwrap();
    for b in gone.iter() {
        let o = next.owner_of(b).unwrap();
        assert!(o == 1 || o == 3, "bucket {b} to {o}");
        if m.backups_of(b) != [4] {
            assert_eq!(Some(o), m.backups_of(b).first().copied());
        }
    }
    // Nobody else left: it goes to the avoided member rather than nobody.
    let only = plan_avoiding(Some(&m), &[4], 1, Balance::OrphansOnly, 30, avoid).unwrap();
    assert!(gone.iter().all(|b| only.owner_of(b) == Some(4)));
    check_invariants(&next, &[1, 3, 4], 1);
}

#[test]
fn a_dead_owners_buckets_go_to_their_backups() {
    let m = plan(None, &[1, 2, 3], 1, Balance::IfUnderFloor, 30).unwrap();
    let gone = m.owned_by(2);
    let next = plan(Some(&m), &[1, 3], 1, Balance::OrphansOnly, 30).unwrap();
    for b in gone.iter() {
        assert_eq!(next.owner_of(b), Some(m.backups_of(b)[0]));
    }
    for b in m.owned_by(1).union(&m.owned_by(3)).iter() {
        assert_eq!(next.owner_of(b), m.owner_of(b));
    }
    assert_eq!(next.version(), 2);
}

#[test]
fn no_eligible_node_means_no_map() {
    assert!(plan(None, &[], 1, Balance::Full, 10).is_none());
    assert!(plan(None, &[1], 1, Balance::Full, 0).is_none());
}

#[test]
fn from_parts_rejects_what_does_not_fit() {
    let node = |n| MapNode {
        node: n,
        incarnation: 1,
        eligible: true,
        dead: false,
        drained: false,
    };
    let ok = BucketMap::from_parts(
        1,
        1,
        vec![1, 2],
        vec![vec![2], vec![1]],
        vec![node(1), node(2)],
    );
    assert!(ok.is_ok());
    let unknown = BucketMap::from_parts(
        1,
        1,
        vec![1, 3],
        vec![vec![], vec![]],
        vec![node(1), node(2)],
    );
    assert_eq!(unknown, Err(MapError::Bucket(1)));
    let own_backup = BucketMap::from_parts(1, 1, vec![1], vec![vec![1]], vec![node(1)]);
    assert_eq!(own_backup, Err(MapError::Bucket(0)));
    let unsorted = BucketMap::from_parts(1, 1, vec![1], vec![vec![]], vec![node(2), node(1)]);
    assert_eq!(unsorted, Err(MapError::Nodes));
    assert_eq!(
        BucketMap::from_parts(1, 1, vec![], vec![], vec![node(1)]),
        Err(MapError::Buckets)
    );
}

#[test]
fn supersedes_orders_by_version_then_lower_master() {
    let a = plan(None, &[1, 2], 0, Balance::Full, 4).unwrap();
    let v5m1 = a.clone().stamped(5, 1, a.nodes().to_vec()).unwrap();
    let v5m2 = a.clone().stamped(5, 2, a.nodes().to_vec()).unwrap();
    let v6m2 = a.clone().stamped(6, 2, a.nodes().to_vec()).unwrap();
    assert!(v5m1.supersedes(&v5m2));
    assert!(!v5m2.supersedes(&v5m1));
    assert!(v6m2.supersedes(&v5m1));
    assert!(!v5m1.supersedes(&v5m1));
}

fn node_sets() -> impl Strategy<Value = (Vec<NodeId>, Vec<NodeId>)> {
    (
        proptest::collection::btree_set(1u32..20, 1..10),
        proptest::collection::btree_set(1u32..20, 1..10),
    )
        .prop_map(|(a, b)| (a.into_iter().collect(), b.into_iter().collect()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn plans_are_complete_minimal_and_deterministic(
        (first, second) in node_sets(),
        buckets in 1u32..300,
        per in 0u8..4,
        rebalance in any::<bool>(),
    ) {
        let m1 = plan(None, &first, per, Balance::IfUnderFloor, buckets).unwrap();
        check_invariants(&m1, &first, per);
        prop_assert!(balanced(&m1, &first));
        let balance = if rebalance { Balance::Full } else { Balance::IfUnderFloor };
        let m2 = plan(Some(&m1), &second, per, balance, buckets).unwrap();
        check_invariants(&m2, &second, per);
        prop_assert_eq!(&m2, &plan(Some(&m1), &second, per, balance, buckets).unwrap());
        // Minimal movement: buckets whose owner stayed and that moved anyway
        // are exactly what balance needed.
        let stayed: Vec<u32> = (0..buckets)
            .filter(|&b| second.contains(&m1.owner_of(b).unwrap()))
            .collect();
        let moved = stayed.iter().filter(|&&b| m1.owner_of(b) != m2.owner_of(b)).count();
        let n = u32::try_from(second.len()).unwrap();
        let floor = buckets / n;
        // Rebalanced: floor/ceil everywhere. Otherwise nobody under floor,
        // and if a bucket of a staying owner moved, it was to balance.
        if rebalance || moved > 0 {
            prop_assert!(balanced(&m2, &second));
        }
        prop_assert!(loads(&m2, &second).iter().all(|&l| l >= floor));
        // Balance moves at most what sat above floor plus the orphans.
        let orphans = buckets - u32::try_from(stayed.len()).unwrap();
        let above: u32 = second
            .iter()
            .map(|&x| {
                let kept = stayed.iter().filter(|&&b| m1.owner_of(b) == Some(x)).count();
                u32::try_from(kept).unwrap().saturating_sub(floor)
            })
            .sum();
        prop_assert!(u32::try_from(moved).unwrap() <= above + orphans);
        // Orphans only: nobody who stayed loses a bucket.
        let m3 = plan(Some(&m1), &second, per, Balance::OrphansOnly, buckets).unwrap();
        for &b in &stayed {
            prop_assert_eq!(m3.owner_of(b), m1.owner_of(b));
        }
        // A second full rebalance of a balanced map moves nothing.
        if balanced(&m2, &second) {
            let m4 = plan(Some(&m2), &second, per, Balance::Full, buckets).unwrap();
            prop_assert_eq!(m4.owners(), m2.owners());
        }
    }
}

#[test]
fn each_owners_buckets_are_backed_up_evenly_by_the_others_after_a_join() {
    // Two nodes, then a third joins with a rebalance: the newcomer backs
    // up a share of both others' buckets, and each owner's buckets are
    // spread over both other nodes (a crash then moves them to both).
    let first = plan(None, &[1, 2], 1, Balance::Full, 4096).unwrap();
    let second = plan(Some(&first), &[1, 2, 3], 1, Balance::Full, 4096).unwrap();
    for o in [1u32, 2, 3] {
        let mine: Vec<u32> = (0..4096)
            .filter(|&b| second.owner_of(b) == Some(o))
            .collect();
        for x in [1u32, 2, 3].into_iter().filter(|&x| x != o) {
            let n = mine
                .iter()
                .filter(|&&b| second.backups_of(b).contains(&x))
                .count();
            let half = mine.len() / 2;
            assert!(
                n >= half.saturating_sub(1) && n <= half + 1,
                "owner {o}: node {x} backs up {n} of {}",
                mine.len()
            );
        }
    }
    assert!(second.backed_up_by(3).count() > 1300);
}
